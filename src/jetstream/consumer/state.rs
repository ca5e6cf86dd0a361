//! A consumer's delivery and acknowledgement state, as plain data: what
//! was delivered (with its consumer sequence and delivery count), what is
//! still waiting for an ack, and the ack floor. No I/O and no clocks here:
//! the consumer drives it, the journal replays it.

use std::collections::{BTreeMap, HashMap};

/// A (consumer, stream) sequence pair as the API shows it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Seqs {
    pub consumer: u64,
    pub stream: u64,
}

/// A delivered message waiting for its ack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pending {
    /// Consumer sequence of its latest delivery.
    pub cseq: u64,
    /// Wall-clock time (ns) of its latest delivery.
    pub ts: u64,
}

/// One change, as the journal records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// `sseq` delivered at `ts` (a redelivery when already pending).
    Deliver { sseq: u64, ts: u64 },
    /// Explicit ack (or term) of one message.
    Ack { sseq: u64 },
    /// Everything up to and including `sseq`.
    AckAll { sseq: u64 },
    /// Skip ahead: the next delivery comes after `sseq` (deliver
    /// policies, purges under the consumer).
    Skip { sseq: u64 },
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct State {
    pub delivered: Seqs,
    pub ack_floor: Seqs,
    /// By stream sequence.
    pub pending: BTreeMap<u64, Pending>,
    /// Pending by consumer sequence (its minimum is the consumer's ack floor).
    by_cseq: BTreeMap<u64, u64>,
    /// Deliveries of pending messages delivered more than once.
    pub redelivered: HashMap<u64, u64>,
    /// Acks need tracking (`ack_policy` is not `none`).
    pub tracks_acks: bool,
}

impl State {
    pub fn new(tracks_acks: bool) -> State {
        State {
            tracks_acks,
            ..Default::default()
        }
    }

    /// How many times `sseq` has been delivered (1 for a first delivery).
    pub fn deliveries(&self, sseq: u64) -> u64 {
        self.redelivered.get(&sseq).copied().unwrap_or(1)
    }

    pub fn num_redelivered(&self) -> usize {
        self.redelivered.len()
    }

    /// Whether `sseq` was delivered and is no longer waiting for an ack.
    pub fn acked(&self, sseq: u64) -> bool {
        if sseq <= self.ack_floor.stream {
            return true;
        }
        sseq <= self.delivered.stream && !self.pending.contains_key(&sseq)
    }

    pub fn apply(&mut self, e: Event) -> Option<(u64, u64)> {
        match e {
            // Sequence 0 is never a message: a corrupt record.
            Event::Deliver { sseq: 0, .. } | Event::Ack { sseq: 0 } => None,
            Event::Deliver { sseq, ts } => Some(self.deliver(sseq, ts)),
            Event::Ack { sseq } => {
                self.ack(sseq);
                None
            }
            Event::AckAll { sseq } => {
                self.ack_all(sseq);
                None
            }
            Event::Skip { sseq } => {
                self.skip(sseq);
                None
            }
        }
    }

    /// Records a delivery; returns (consumer sequence, delivery count).
    pub fn deliver(&mut self, sseq: u64, ts: u64) -> (u64, u64) {
        self.delivered.consumer = self.delivered.consumer.saturating_add(1);
        let cseq = self.delivered.consumer;
        let mut count = 1;
        if let Some(old) = self.pending.get(&sseq).copied() {
            self.by_cseq.remove(&old.cseq);
            let c = self.redelivered.entry(sseq).or_insert(1);
            *c = c.saturating_add(1);
            count = *c;
        } else if sseq <= self.delivered.stream && self.redelivered.contains_key(&sseq) {
            count = self.redelivered[&sseq] + 1;
            self.redelivered.insert(sseq, count);
        }
        if sseq > self.delivered.stream {
            self.delivered.stream = sseq;
        }
        if self.tracks_acks {
            self.pending.insert(sseq, Pending { cseq, ts });
            self.by_cseq.insert(cseq, sseq);
        } else {
            self.ack_floor = self.delivered;
        }
        (cseq, count)
    }

    /// Removes `sseq` from pending; false when it was not pending.
    pub fn ack(&mut self, sseq: u64) -> bool {
        let Some(p) = self.pending.remove(&sseq) else {
            return false;
        };
        self.by_cseq.remove(&p.cseq);
        self.redelivered.remove(&sseq);
        self.update_floor();
        true
    }

    /// Acks every pending message up to `sseq`; returns those acked.
    pub fn ack_all(&mut self, sseq: u64) -> Vec<u64> {
        let done: Vec<u64> = self.pending.range(..=sseq).map(|(s, _)| *s).collect();
        for s in &done {
            if let Some(p) = self.pending.remove(s) {
                self.by_cseq.remove(&p.cseq);
            }
            self.redelivered.remove(s);
        }
        self.update_floor();
        done
    }

    /// Moves delivery past `sseq` without delivering (nothing pending is
    /// touched).
    pub fn skip(&mut self, sseq: u64) {
        if sseq > self.delivered.stream {
            self.delivered.stream = sseq;
        }
        self.update_floor();
    }

    fn update_floor(&mut self) {
        match self.pending.first_key_value() {
            None => self.ack_floor = self.delivered,
            Some((&sseq, _)) => {
                let min_c = self.by_cseq.first_key_value().map_or(0, |(c, _)| *c);
                self.ack_floor = Seqs {
                    consumer: min_c.saturating_sub(1).max(self.ack_floor.consumer),
                    stream: sseq.saturating_sub(1).max(self.ack_floor.stream),
                };
            }
        }
    }

    /// Pending messages whose latest delivery was at or before `cutoff`
    /// (ns), oldest first.
    pub fn due(&self, cutoff: u64) -> Vec<u64> {
        let mut v: Vec<(u64, u64)> = self
            .pending
            .iter()
            .filter(|(_, p)| p.ts <= cutoff)
            .map(|(s, p)| (p.ts, *s))
            .collect();
        v.sort_unstable();
        v.into_iter().map(|(_, s)| s).collect()
    }

    /// Drops pending entries below `first` (purged or deleted from the
    /// stream underneath the consumer).
    pub fn forget_below(&mut self, first: u64) -> usize {
        let gone: Vec<u64> = self.pending.range(..first).map(|(s, _)| *s).collect();
        for s in &gone {
            if let Some(p) = self.pending.remove(s) {
                self.by_cseq.remove(&p.cseq);
            }
            self.redelivered.remove(s);
        }
        if self.delivered.stream < first.saturating_sub(1) {
            self.delivered.stream = first - 1;
        }
        self.update_floor();
        gone.len()
    }

    /// The whole state in the journal's snapshot encoding (little endian):
    /// delivered, floor, then (sseq, cseq, ts, deliveries) per pending.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(40 + self.pending.len() * 32);
        for v in [
            self.delivered.consumer,
            self.delivered.stream,
            self.ack_floor.consumer,
            self.ack_floor.stream,
            self.pending.len() as u64,
        ] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        for (s, p) in &self.pending {
            for v in [*s, p.cseq, p.ts, self.deliveries(*s)] {
                out.extend_from_slice(&v.to_le_bytes());
            }
        }
        out
    }

    /// The inverse of `encode`; `None` for a malformed snapshot.
    pub fn decode(b: &[u8], tracks_acks: bool) -> Option<State> {
        let mut words = b.chunks_exact(8).map(|c| {
            let mut a = [0u8; 8];
            a.copy_from_slice(c);
            u64::from_le_bytes(a)
        });
        if !b.len().is_multiple_of(8) {
            return None;
        }
        let mut s = State::new(tracks_acks);
        s.delivered = Seqs {
            consumer: words.next()?,
            stream: words.next()?,
        };
        s.ack_floor = Seqs {
            consumer: words.next()?,
            stream: words.next()?,
        };
        let n = words.next()?;
        if n > (b.len() as u64) / 32 {
            return None;
        }
        for _ in 0..n {
            let (sseq, cseq, ts, dc) = (words.next()?, words.next()?, words.next()?, words.next()?);
            if sseq == 0 {
                return None;
            }
            s.pending.insert(sseq, Pending { cseq, ts });
            s.by_cseq.insert(cseq, sseq);
            if dc > 1 {
                s.redelivered.insert(sseq, dc);
            }
        }
        if words.next().is_some() {
            return None;
        }
        Some(s)
    }
}

impl Event {
    const DELIVER: u8 = 1;
    const ACK: u8 = 2;
    const ACK_ALL: u8 = 3;
    const SKIP: u8 = 4;

    pub fn encode(&self, out: &mut Vec<u8>) {
        let (tag, a, b) = match *self {
            Event::Deliver { sseq, ts } => (Self::DELIVER, sseq, ts),
            Event::Ack { sseq } => (Self::ACK, sseq, 0),
            Event::AckAll { sseq } => (Self::ACK_ALL, sseq, 0),
            Event::Skip { sseq } => (Self::SKIP, sseq, 0),
        };
        out.push(tag);
        out.extend_from_slice(&a.to_le_bytes());
        if tag == Self::DELIVER {
            out.extend_from_slice(&b.to_le_bytes());
        }
    }

    /// Decodes a batch; `None` when it is malformed.
    pub fn decode_all(mut b: &[u8]) -> Option<Vec<Event>> {
        let mut out = Vec::new();
        let word = |b: &[u8]| -> Option<u64> {
            let mut a = [0u8; 8];
            a.copy_from_slice(b.get(..8)?);
            Some(u64::from_le_bytes(a))
        };
        while let Some((&tag, rest)) = b.split_first() {
            let sseq = word(rest)?;
            b = &rest[8..];
            out.push(match tag {
                Self::DELIVER => {
                    let ts = word(b)?;
                    b = &b[8..];
                    Event::Deliver { sseq, ts }
                }
                Self::ACK => Event::Ack { sseq },
                Self::ACK_ALL => Event::AckAll { sseq },
                Self::SKIP => Event::Skip { sseq },
                _ => return None,
            });
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn floor_follows_acks() {
        let mut s = State::new(true);
        for q in 1..=3 {
            s.deliver(q, 0);
        }
        s.ack(2);
        assert_eq!(s.ack_floor, Seqs::default());
        s.ack(1);
        assert_eq!(
            s.ack_floor,
            Seqs {
                consumer: 2,
                stream: 2
            }
        );
        s.ack(3);
        assert_eq!(
            s.ack_floor,
            Seqs {
                consumer: 3,
                stream: 3
            }
        );
        assert!(s.acked(2) && !s.acked(4));
    }

    #[test]
    fn redelivery_counts() {
        let mut s = State::new(true);
        assert_eq!(s.deliver(5, 0), (1, 1));
        assert_eq!(s.deliver(5, 1), (2, 2));
        assert_eq!(s.num_redelivered(), 1);
        s.ack(5);
        assert_eq!(s.num_redelivered(), 0);
        assert_eq!(
            s.ack_floor,
            Seqs {
                consumer: 2,
                stream: 5
            }
        );
    }

    #[test]
    fn ack_none_moves_the_floor() {
        let mut s = State::new(false);
        s.deliver(3, 0);
        assert_eq!(
            s.ack_floor,
            Seqs {
                consumer: 1,
                stream: 3
            }
        );
        assert!(s.pending.is_empty());
    }

    #[derive(Debug, Clone)]
    enum Op {
        Deliver(u64),
        Ack(u64),
        AckAll(u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (1u64..40).prop_map(Op::Deliver),
            (1u64..40).prop_map(Op::Ack),
            (1u64..40).prop_map(Op::AckAll),
        ]
    }

    proptest! {
        /// Against a model: pending is what was delivered and not acked;
        /// replaying the journal or decoding a snapshot gives the same
        /// state; the floor never passes a pending message.
        #[test]
        fn matches_model_and_replays(ops in proptest::collection::vec(op(), 0..80)) {
            let mut s = State::new(true);
            let mut model: std::collections::BTreeSet<u64> = Default::default();
            let mut journal = Vec::new();
            for (i, o) in ops.iter().enumerate() {
                let e = match *o {
                    // Deliveries are new (past the delivered position, with
                    // gaps as filters make) or redeliveries of pending ones.
                    Op::Deliver(q) => {
                        let q = if model.contains(&q) { q } else { s.delivered.stream + 1 + q % 3 };
                        model.insert(q);
                        Event::Deliver { sseq: q, ts: i as u64 }
                    }
                    Op::Ack(q) => { model.remove(&q); Event::Ack { sseq: q } }
                    Op::AckAll(q) => { model.retain(|x| *x > q); Event::AckAll { sseq: q } }
                };
                e.encode(&mut journal);
                s.apply(e);
                let pending: std::collections::BTreeSet<u64> = s.pending.keys().copied().collect();
                prop_assert_eq!(&pending, &model);
                if let Some(min) = model.first() {
                    prop_assert!(s.ack_floor.stream < *min);
                }
            }
            let mut r = State::new(true);
            for e in Event::decode_all(&journal).unwrap() {
                r.apply(e);
            }
            prop_assert_eq!(&r.pending, &s.pending);
            prop_assert_eq!(r.delivered, s.delivered);
            let d = State::decode(&s.encode(), true).unwrap();
            prop_assert_eq!(&d.pending, &s.pending);
            prop_assert_eq!(&d.redelivered, &s.redelivered);
            prop_assert_eq!(d.delivered, s.delivered);
            prop_assert_eq!(d.ack_floor, s.ack_floor);
        }

        #[test]
        fn decoders_never_panic(b in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = Event::decode_all(&b);
            let _ = State::decode(&b, true);
        }
    }
}
