//! The ack protocol: what a client publishes to a delivered message's
//! reply subject (`$JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.
//! <consumer seq>.<ts>.<pending>`), and what each kind does.

use bytes::Bytes;

use super::config::AckPolicy;
use super::state::Event;
use super::{advisory, Consumer};
use crate::jetstream::config::now_ns;
use crate::shard::Msg;

#[derive(Debug, PartialEq, Eq)]
pub enum Kind<'a> {
    Ack,
    /// Redeliver, after a delay (ns) when given.
    Nak(Option<u64>),
    Progress,
    /// Ack, then a pull request for this many.
    Next(&'a [u8]),
    Term(&'a str),
}

/// Parses an ack body; `None` for something that is not an ack.
pub fn parse(body: &[u8]) -> Option<Kind<'_>> {
    let b = body.trim_ascii();
    if b.is_empty() || b == b"+ACK" {
        return Some(Kind::Ack);
    }
    let (word, rest) = match b.iter().position(|c| c.is_ascii_whitespace()) {
        Some(i) => (&b[..i], b[i..].trim_ascii()),
        None => (b, &b[..0]),
    };
    match word {
        b"+ACK" => Some(Kind::Ack),
        b"-NAK" => {
            if rest.is_empty() {
                return Some(Kind::Nak(None));
            }
            #[derive(serde::Deserialize)]
            struct Delay {
                #[serde(default)]
                delay: i64,
            }
            if rest.starts_with(b"{") {
                let d = serde_json::from_slice::<Delay>(rest).ok();
                let d = d.map_or(0, |d| d.delay);
                return Some(Kind::Nak((d > 0).then_some(d as u64)));
            }
            // A Go duration ("1s", "500ms"); anything else is a plain nak.
            Some(Kind::Nak(go_duration_ns(rest)))
        }
        b"+WPI" => Some(Kind::Progress),
        b"+NXT" => Some(Kind::Next(rest)),
        b"+TERM" => Some(Kind::Term(std::str::from_utf8(rest).unwrap_or(""))),
        _ => None,
    }
}

/// Parses a Go duration of one unit ("1s", "1.5s", "250ms", "2m").
pub fn go_duration_ns(b: &[u8]) -> Option<u64> {
    let s = std::str::from_utf8(b).ok()?;
    let split = s.find(|c: char| c.is_ascii_alphabetic())?;
    let (num, unit) = s.split_at(split);
    let v: f64 = num.parse().ok()?;
    let mult = match unit {
        "ns" => 1.0,
        "us" | "µs" => 1e3,
        "ms" => 1e6,
        "s" => 1e9,
        "m" => 60e9,
        "h" => 3600e9,
        _ => return None,
    };
    let ns = v * mult;
    (ns > 0.0).then_some(ns as u64)
}

/// (deliveries, stream seq, consumer seq) from an ack subject, in either
/// the 9-token or the 11/12-token (domain and account hash) form.
pub fn seqs(subject: &[u8]) -> Option<(u64, u64, u64)> {
    // Runs once per ack: tokens into a fixed array, no allocation.
    let mut t: [&[u8]; 12] = [&[]; 12];
    let mut n = 0;
    for tok in subject.split(|b| *b == b'.') {
        if n == t.len() {
            return None;
        }
        t[n] = tok;
        n += 1;
    }
    let at = match n {
        9 => 4,
        11 | 12 => 6,
        _ => return None,
    };
    let num = |i: usize| -> Option<u64> {
        let b = t[i];
        if b.is_empty() || b.len() > 20 || !b.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(b).ok()?.parse().ok()
    };
    Some((num(at)?, num(at + 1)?, num(at + 2)?))
}

impl Consumer {
    pub(crate) fn on_ack(&self, m: &Msg) {
        let Some((dc, sseq, cseq)) = seqs(m.subject) else {
            return;
        };
        let payload = match m.hdr_len {
            Some(h) if h <= m.msg.len() => &m.msg[h..],
            _ => m.msg,
        };
        let Some(kind) = parse(payload) else {
            tracing::debug!(
                "JetStream: consumer {} > {}: unknown ack {:?}",
                self.stream_name,
                self.name,
                String::from_utf8_lossy(payload)
            );
            return;
        };
        let reply = m.reply.map(Bytes::copy_from_slice);
        // Acks of what was never delivered get no confirmation.
        let delivered = sseq <= self.state.borrow().delivered.stream;
        let mut confirm = reply.clone().filter(|_| delivered);
        match kind {
            Kind::Ack => {
                self.ack(sseq, cseq, dc, true);
            }
            Kind::Term(reason) => {
                if self.ack(sseq, cseq, dc, false) {
                    if let Some(shard) = self.shard.upgrade() {
                        advisory::terminated(
                            &shard,
                            self.acc,
                            &self.stream_name,
                            &self.name,
                            cseq,
                            sseq,
                            dc,
                            reason,
                        );
                    }
                }
            }
            Kind::Nak(delay) => {
                if self.state.borrow().pending.contains_key(&sseq) {
                    if let Some(shard) = self.shard.upgrade() {
                        advisory::naked(
                            &shard,
                            self.acc,
                            &self.stream_name,
                            &self.name,
                            cseq,
                            sseq,
                            dc,
                        );
                    }
                    match delay {
                        Some(d) => {
                            self.nak_until.borrow_mut().insert(sseq, now_ns() + d);
                            self.arm(
                                std::time::Instant::now() + std::time::Duration::from_nanos(d),
                            );
                        }
                        None => {
                            self.redeliver.borrow_mut().insert(sseq);
                            self.kick();
                        }
                    }
                }
            }
            Kind::Progress => {
                if let Some(p) = self.state.borrow_mut().pending.get_mut(&sseq) {
                    p.ts = now_ns();
                }
            }
            Kind::Next(body) => {
                let _ = self.ack(sseq, cseq, dc, true);
                if let Some(r) = &reply {
                    let body = if body.is_empty() { b"1" as &[u8] } else { body };
                    self.pull_request(r.clone(), body);
                }
                confirm = None;
            }
        }
        if let Some(r) = confirm {
            self.confirm(r);
        }
    }

    /// Acks `sseq` (all up to it under `ack_policy: all`); true when
    /// something was pending.
    fn ack(&self, sseq: u64, cseq: u64, dc: u64, metric: bool) -> bool {
        let policy = self.with_cfg(|c| c.ack_policy);
        let acked: smallvec::SmallVec<[u64; 1]> = match policy {
            AckPolicy::None => return false,
            AckPolicy::Explicit => {
                if !self.state.borrow_mut().ack(sseq) {
                    return false;
                }
                self.record(Event::Ack { sseq });
                smallvec::smallvec![sseq]
            }
            AckPolicy::All => {
                let done = self.state.borrow_mut().ack_all(sseq);
                if done.is_empty() {
                    return false;
                }
                self.record(Event::AckAll { sseq });
                done.into()
            }
        };
        let ts = now_ns();
        self.last_ack.set(ts);
        {
            let mut r = self.redeliver.borrow_mut();
            if !r.is_empty() {
                r.retain(|q| !acked.contains(q));
            }
        }
        let freq = self.with_cfg(|c| advisory::sample_fraction(&c.sample_freq));
        if let (Some(f), Some(shard), true) = (freq, self.shard.upgrade(), metric) {
            if fastrand::f64() < f {
                let sent = self.state.borrow().pending.get(&sseq).map_or(ts, |p| p.ts);
                advisory::ack_metric(
                    &shard,
                    self.acc,
                    &self.stream_name,
                    &self.name,
                    cseq,
                    sseq,
                    ts.saturating_sub(sent),
                    dc,
                );
            }
        }
        if let Some(stream) = self.stream.upgrade() {
            stream.acked(&acked);
        }
        self.kick();
        true
    }

    /// Answers a double ack once what it changed is durable.
    fn confirm(&self, reply: Bytes) {
        let Some(shard) = self.shard.upgrade() else {
            return;
        };
        let acc = self.acc;
        match self.durable() {
            None => {
                shard.publish_internal(acc, &reply, None, None, b"");
            }
            Some(rx) => {
                crate::runtime::spawn_local(async move {
                    if rx.await.is_ok() {
                        shard.publish_internal(acc, &reply, None, None, b"");
                    }
                })
                .detach();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ack_bodies() {
        assert_eq!(parse(b""), Some(Kind::Ack));
        assert_eq!(parse(b"+ACK"), Some(Kind::Ack));
        assert_eq!(parse(b"-NAK"), Some(Kind::Nak(None)));
        assert_eq!(
            parse(br#"-NAK {"delay": 2000000000}"#),
            Some(Kind::Nak(Some(2_000_000_000)))
        );
        assert_eq!(parse(b"+WPI"), Some(Kind::Progress));
        assert_eq!(
            parse(b"+NXT {\"batch\":2}"),
            Some(Kind::Next(b"{\"batch\":2}"))
        );
        assert_eq!(parse(b"+TERM bad input"), Some(Kind::Term("bad input")));
        assert_eq!(parse(b"-NAK 1s"), Some(Kind::Nak(Some(1_000_000_000))));
        assert_eq!(parse(b"-NAK 250ms"), Some(Kind::Nak(Some(250_000_000))));
        assert_eq!(parse(b"-NAK soon"), Some(Kind::Nak(None)));
        assert_eq!(parse(b"?"), None);
    }

    #[test]
    fn ack_subjects() {
        assert_eq!(seqs(b"$JS.ACK.S.C.2.10.12.1700000000.5"), Some((2, 10, 12)));
        assert_eq!(
            seqs(b"$JS.ACK.hub.ACCHASH.S.C.2.10.12.1700000000.5.tok"),
            Some((2, 10, 12))
        );
        assert_eq!(seqs(b"$JS.ACK.S.C.x.10.12.1.5"), None);
        assert_eq!(seqs(b"$JS.ACK.S"), None);
    }
}
