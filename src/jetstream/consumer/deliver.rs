//! The delivery engine: picks the next message for a consumer (due
//! redeliveries first, then the stream past the delivered position) and
//! sends it to a waiting pull request or the push subject, within
//! `max_ack_pending`, flow control, rate limit and replay pacing. One
//! timer per consumer covers ack waits, nak delays, request expiries,
//! heartbeats and inactivity; it sleeps until the earliest of them and
//! not at all when nothing is due (idle means idle).

use std::time::{Duration, Instant};

use bytes::Bytes;

use broker_edge_storage::StoredMsg;

use super::config::{AckPolicy, ConsumerConfig, ReplayPolicy};
use super::pull;
use super::state::Event;
use super::{advisory, Consumer};
use crate::jetstream::config::now_ns;
use crate::jetstream::stream::Stream;
use crate::shard::Shard;

/// The first flow-control window (it doubles up to 16 times this).
const FC_WINDOW: u64 = 2 << 20;
/// How often an unbound push consumer with work looks for a subscriber.
const UNBOUND_POLL: Duration = Duration::from_millis(250);

#[derive(Default)]
pub struct PushState {
    /// Delivered and not yet covered by an answered flow-control request.
    fc_bytes: u64,
    /// `fc_bytes` when the outstanding request went out.
    fc_at_request: u64,
    /// The window is `FC_WINDOW << fc_window_shift`.
    fc_window_shift: u32,
    /// The reply subject of the flow-control request not yet answered.
    fc_pending: Option<String>,
    /// Last message or heartbeat sent (idle heartbeats count from it).
    last_send: Option<Instant>,
    /// Rate limit: (window start, bytes in it).
    rate: Option<(Instant, u64)>,
    /// Replay original: (stored time of the last message, when sent).
    replay: Option<(u64, Instant)>,
    /// When the push subject was last seen bound.
    bound_at: Option<Instant>,
}

impl PushState {
    fn fc_window(&self) -> u64 {
        FC_WINDOW << self.fc_window_shift
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Redelivery,
    LastPerSubject,
    New,
}

impl Consumer {
    /// Schedules a delivery pass (coalesced: many kicks, one pass).
    pub fn kick(&self) {
        if self.deleted.get() || self.kicked.replace(true) {
            return;
        }
        let Some(me) = self.this.upgrade() else {
            return;
        };
        crate::runtime::spawn_local(async move {
            me.kicked.set(false);
            me.pump();
        })
        .detach();
    }

    pub(crate) fn push_bound(&self) -> bool {
        let Some(shard) = self.shard.upgrade() else {
            return false;
        };
        let bound = self.with_cfg(|c| {
            let subject = c.deliver_subject.as_bytes();
            if subject.is_empty() {
                false
            } else if c.deliver_group.is_empty() {
                shard.has_interest(self.acc, subject)
            } else {
                // Only members of its group bind a grouped push consumer.
                shard.has_queue_interest(self.acc, subject, c.deliver_group.as_bytes())
            }
        });
        if bound {
            self.push.borrow_mut().bound_at = Some(Instant::now());
        }
        bound
    }

    /// Delivers what can be delivered now.
    fn pump(&self) {
        let (Some(stream), Some(shard)) = (self.stream.upgrade(), self.shard.upgrade()) else {
            return;
        };
        if self.deleted.get() {
            return;
        }
        let cfg = self.cfg();
        let now = Instant::now();
        if cfg.is_pull() {
            self.expire_requests(&shard, &stream, now);
        }
        if let Some(until) = cfg.paused_until() {
            let wait = Duration::from_nanos(until.saturating_sub(now_ns()));
            self.arm(now + wait);
            return;
        }
        if cfg.is_pull() {
        } else if !self.push_bound() {
            self.arm_if_idle();
            return;
        }
        let tracks = cfg.ack_policy != AckPolicy::None;
        let filter = self.filter();
        loop {
            if self.deleted.get() {
                break;
            }
            let target: Bytes = if cfg.is_pull() {
                let front = self
                    .waiting
                    .borrow()
                    .q
                    .front()
                    .map(|w| (w.reply.clone(), w.checked));
                match front {
                    None => break,
                    Some((reply, true)) => reply,
                    Some((reply, false)) => {
                        // A requester that went away takes nothing.
                        if !shard.has_interest(self.acc, &reply) {
                            self.waiting.borrow_mut().q.pop_front();
                            continue;
                        }
                        if let Some(w) = self.waiting.borrow_mut().q.front_mut() {
                            w.checked = true;
                        }
                        reply
                    }
                }
            } else {
                if self.push_stalled(&cfg, now) {
                    break;
                }
                Bytes::copy_from_slice(cfg.deliver_subject.as_bytes())
            };
            let room = !tracks
                || cfg.max_ack_pending <= 0
                || (self.state.borrow().pending.len() as i64) < cfg.max_ack_pending;
            let Some((m, kind)) = self.next_message(&stream, &shard, &cfg, &filter, room) else {
                if cfg.is_pull() {
                    self.end_no_wait(&shard, &stream);
                }
                break;
            };
            if kind != Kind::Redelivery && cfg.replay_policy == ReplayPolicy::Original {
                if let Some((prev_ts, sent)) = self.push.borrow().replay {
                    let gap = Duration::from_nanos(m.ts.saturating_sub(prev_ts));
                    if sent.elapsed() < gap {
                        self.arm(sent + gap);
                        break;
                    }
                }
            }
            let size = (m.subject.len() + m.headers.len() + m.payload.len()) as u64;
            if cfg.is_pull() {
                let mut q = self.waiting.borrow_mut();
                let Some(w) = q.q.front_mut() else { break };
                if w.max_bytes && size > w.bytes_left {
                    let w = q.q.pop_front().expect("front exists");
                    drop(q);
                    let st = pull::status(
                        409,
                        "Message Size Exceeds MaxBytes",
                        Some((w.left, w.bytes_left)),
                    );
                    shard.publish_internal(self.acc, &w.reply, None, Some(&st), b"");
                    continue;
                }
            }
            if cfg.rate_limit > 0 {
                let mut p = self.push.borrow_mut();
                let (start, used) = p.rate.get_or_insert((now, 0));
                if now.duration_since(*start) >= Duration::from_secs(1) {
                    *start = now;
                    *used = 0;
                }
                if *used > 0 && (*used + size) * 8 > cfg.rate_limit {
                    let at = *start + Duration::from_secs(1);
                    drop(p);
                    self.arm(at);
                    break;
                }
                *used += size;
            }
            self.send(&shard, &stream, &cfg, &target, &m, kind, size);
        }
        self.arm_if_idle();
    }

    /// The next message to send: a due redelivery, then (with room under
    /// max_ack_pending) the next one in the stream. Nothing is taken off
    /// a queue here; `send` does that.
    fn next_message(
        &self,
        stream: &Stream,
        shard: &Shard,
        cfg: &ConsumerConfig,
        filter: &broker_edge_storage::Filter,
        room: bool,
    ) -> Option<(StoredMsg, Kind)> {
        loop {
            let Some(sseq) = self.redeliver.borrow().first().copied() else {
                break;
            };
            let pending = self.state.borrow().pending.contains_key(&sseq);
            if !pending {
                self.redeliver.borrow_mut().remove(&sseq);
                continue;
            }
            let dc = self.state.borrow().deliveries(sseq);
            match stream.log.get(sseq) {
                Ok(m) if cfg.max_deliver <= 0 || (dc as i64) < cfg.max_deliver => {
                    return Some((m, Kind::Redelivery));
                }
                Ok(_) => {
                    // Delivered as often as allowed: it leaves pending
                    // (unacked), and whoever listens is told.
                    self.redeliver.borrow_mut().remove(&sseq);
                    self.state.borrow_mut().ack(sseq);
                    self.record(Event::Ack { sseq });
                    advisory::max_deliveries(
                        shard,
                        self.acc,
                        &self.stream_name,
                        &self.name,
                        sseq,
                        dc,
                    );
                }
                Err(_) => {
                    // Gone from the stream (deleted, purged, aged out).
                    self.redeliver.borrow_mut().remove(&sseq);
                    self.state.borrow_mut().ack(sseq);
                    self.record(Event::Ack { sseq });
                }
            }
        }
        if !room {
            return None;
        }
        loop {
            let Some(sseq) = self.lps.borrow().front().copied() else {
                break;
            };
            if sseq > self.state.borrow().delivered.stream {
                if let Ok(m) = stream.log.get(sseq) {
                    return Some((m, Kind::LastPerSubject));
                }
            }
            self.lps.borrow_mut().pop_front();
        }
        let from = self.state.borrow().delivered.stream + 1;
        match stream.log.next_msg(from, filter) {
            Ok(Some(m)) => Some((m, Kind::New)),
            _ => None,
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn send(
        &self,
        shard: &Shard,
        stream: &Stream,
        cfg: &ConsumerConfig,
        target: &[u8],
        m: &StoredMsg,
        kind: Kind,
        size: u64,
    ) {
        let ts = now_ns();
        match kind {
            Kind::Redelivery => {
                self.redeliver.borrow_mut().remove(&m.seq);
            }
            Kind::LastPerSubject => {
                self.lps.borrow_mut().pop_front();
            }
            Kind::New => {}
        }
        self.nak_until.borrow_mut().remove(&m.seq);
        let before = self.state.borrow().delivered.stream;
        let (cseq, dc) = self.state.borrow_mut().deliver(m.seq, ts);
        match kind {
            Kind::New => self.pending_delivered(stream, before, m.seq),
            Kind::LastPerSubject => self.pending.set(None),
            Kind::Redelivery => {}
        }
        let pending = self.num_pending(stream, &self.state.borrow());
        self.record(Event::Deliver { sseq: m.seq, ts });
        self.last_delivery.set(ts);
        // `$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>`,
        // built without the formatting machinery (once per message).
        let mut reply = String::with_capacity(self.ack_prefix.len() + 64);
        reply.push_str(&self.ack_prefix);
        let mut num = itoa::Buffer::new();
        for (i, v) in [dc, m.seq, cseq, m.ts, pending].into_iter().enumerate() {
            if i > 0 {
                reply.push('.');
            }
            reply.push_str(num.format(v));
        }
        let mut hdr_buf;
        let (headers, payload): (Option<&[u8]>, &[u8]) = if cfg.headers_only {
            hdr_buf = if m.headers.len() >= 4 && m.headers.ends_with(b"\r\n\r\n") {
                m.headers[..m.headers.len() - 2].to_vec()
            } else {
                b"NATS/1.0\r\n".to_vec()
            };
            hdr_buf.extend_from_slice(
                format!("Nats-Msg-Size: {}\r\n\r\n", m.payload.len()).as_bytes(),
            );
            (Some(&hdr_buf), b"")
        } else {
            (
                (!m.headers.is_empty()).then_some(&m.headers[..]),
                &m.payload[..],
            )
        };
        let mut completed = None;
        if cfg.is_pull() {
            let mut q = self.waiting.borrow_mut();
            if let Some(w) = q.q.front_mut() {
                w.left = w.left.saturating_sub(1);
                w.delivered += 1;
                w.bytes_left = w.bytes_left.saturating_sub(size);
                if w.left == 0 || (w.max_bytes && w.bytes_left == 0) {
                    if let Some(w) = q.q.pop_front() {
                        // A byte-limited batch that ended on its count
                        // says so, with the bytes it had left.
                        if w.max_bytes && w.bytes_left > 0 {
                            completed = Some((w.reply, w.bytes_left));
                        }
                    }
                }
            }
        }
        if !cfg.is_pull() || cfg.replay_policy == ReplayPolicy::Original {
            let now = Instant::now();
            let mut p = self.push.borrow_mut();
            p.last_send = Some(now);
            if cfg.replay_policy == ReplayPolicy::Original && kind != Kind::Redelivery {
                p.replay = Some((m.ts, now));
            }
        }
        shard.publish_internal_as(
            self.acc,
            target,
            Some(&m.subject),
            Some(reply.as_bytes()),
            headers,
            payload,
        );
        if let Some((to, bytes)) = completed {
            let st = pull::status(409, "Batch Completed", Some((0, bytes)));
            shard.publish_internal(self.acc, &to, None, Some(&st), b"");
        }
        if !cfg.is_pull() && cfg.flow_control {
            // What went out (headers only, when so configured).
            let sent = (m.subject.len() + headers.map_or(0, |h| h.len()) + payload.len()) as u64;
            self.count_for_flow_control(shard, cfg, sent);
        }
        if cfg.ack_policy == AckPolicy::None {
            // Delivered is acked: interest retention may let it go.
            if let Some(stream) = self.stream.upgrade() {
                stream.acked(&[m.seq]);
            }
        }
    }

    fn push_stalled(&self, cfg: &ConsumerConfig, _now: Instant) -> bool {
        if !cfg.flow_control {
            return false;
        }
        let p = self.push.borrow();
        p.fc_bytes > p.fc_window()
    }

    /// Flow control as the reference does it: a window that starts at
    /// 2 MiB and doubles with each answer (up to 32 MiB); a request goes
    /// out past half the window, delivery stops past all of it.
    fn count_for_flow_control(&self, shard: &Shard, cfg: &ConsumerConfig, size: u64) {
        let request = {
            let mut p = self.push.borrow_mut();
            p.fc_bytes += size;
            if p.fc_pending.is_none() && p.fc_bytes > p.fc_window() / 2 {
                let reply = format!(
                    "$JS.FC.{}.{}.{}",
                    self.stream_name,
                    self.name,
                    &super::new_name()[..4]
                );
                p.fc_pending = Some(reply.clone());
                p.fc_at_request = p.fc_bytes;
                Some(reply)
            } else {
                None
            }
        };
        if let Some(reply) = request {
            shard.publish_internal(
                self.acc,
                cfg.deliver_subject.as_bytes(),
                Some(reply.as_bytes()),
                Some(b"NATS/1.0 100 FlowControl Request\r\n\r\n"),
                b"",
            );
        }
    }

    /// A client answered a flow-control request.
    pub(crate) fn on_flow_control(&self, subject: &[u8]) {
        let mut p = self.push.borrow_mut();
        if p.fc_pending.as_deref().map(str::as_bytes) == Some(subject) {
            p.fc_pending = None;
            p.fc_bytes = p.fc_bytes.saturating_sub(p.fc_at_request);
            p.fc_window_shift = (p.fc_window_shift + 1).min(4);
            drop(p);
            self.kick();
        }
    }

    /// Pull requests that expired get 408 with what is still pending.
    fn expire_requests(&self, shard: &Shard, stream: &Stream, now: Instant) {
        let expired: Vec<pull::Waiting> = {
            let mut q = self.waiting.borrow_mut();
            let (gone, keep): (Vec<_>, Vec<_>) =
                q.q.drain(..)
                    .partition(|w| w.expires.is_some_and(|e| e <= now));
            q.q = keep.into();
            gone
        };
        if !expired.is_empty() {
            self.last_active.set(now);
        }
        for w in expired {
            if !shard.has_interest(self.acc, &w.reply) {
                continue;
            }
            let _ = stream;
            let st = pull::status(
                408,
                "Request Timeout",
                Some((w.left, if w.max_bytes { w.bytes_left } else { 0 })),
            );
            shard.publish_internal(self.acc, &w.reply, None, Some(&st), b"");
        }
        // Heartbeats to requests still waiting.
        let due: Vec<Bytes> = {
            let mut q = self.waiting.borrow_mut();
            let mut v = Vec::new();
            for w in q.q.iter_mut() {
                if let (Some(at), Some(every)) = (w.next_heartbeat, w.heartbeat) {
                    if at <= now {
                        w.next_heartbeat = Some(now + every);
                        v.push(w.reply.clone());
                    }
                }
            }
            v
        };
        for reply in due {
            let st = pull::status(100, "Idle Heartbeat", None);
            shard.publish_internal(self.acc, &reply, None, Some(&st), b"");
        }
    }

    /// No message for the request at the front: a no_wait request ends
    /// with 404 (one with an expiry that got nothing waits for it).
    fn end_no_wait(&self, shard: &Shard, _stream: &Stream) {
        loop {
            let w = {
                let mut q = self.waiting.borrow_mut();
                match q.q.front() {
                    Some(w) if w.no_wait && (w.delivered > 0 || w.expires.is_none()) => {
                        q.q.pop_front()
                    }
                    _ => None,
                }
            };
            let Some(w) = w else { break };
            let st = pull::status(404, "No Messages", None);
            shard.publish_internal(self.acc, &w.reply, None, Some(&st), b"");
        }
    }

    /// The ack wait of the `n`th delivery (backoff, when set).
    pub(crate) fn ack_wait(&self, cfg: &ConsumerConfig, n: u64) -> u64 {
        if !cfg.backoff.is_empty() {
            let i = (n.max(1) - 1) as usize;
            let b = cfg.backoff[i.min(cfg.backoff.len() - 1)];
            return b.max(1) as u64;
        }
        cfg.ack_wait.max(1) as u64
    }

    /// Everything time-driven, then a delivery pass.
    fn on_timer(&self) {
        let Some(shard) = self.shard.upgrade() else {
            return;
        };
        if self.deleted.get() {
            return;
        }
        let cfg = self.cfg();
        let now_wall = now_ns();
        let now = Instant::now();
        if cfg.ack_policy != AckPolicy::None {
            let due: Vec<u64> = {
                let s = self.state.borrow();
                let naks = self.nak_until.borrow();
                s.pending
                    .iter()
                    .filter(|(q, p)| match naks.get(q) {
                        Some(until) => *until <= now_wall,
                        None => p.ts + self.ack_wait(&cfg, s.deliveries(**q)) <= now_wall,
                    })
                    .map(|(q, _)| *q)
                    .collect()
            };
            if !due.is_empty() {
                let mut r = self.redeliver.borrow_mut();
                let mut naks = self.nak_until.borrow_mut();
                for q in due {
                    naks.remove(&q);
                    r.insert(q);
                }
            }
        }
        if !cfg.is_pull() && cfg.idle_heartbeat > 0 {
            let every = Duration::from_nanos(cfg.idle_heartbeat as u64);
            let last = self.push.borrow().last_send;
            let idle = last.is_none_or(|t| now.duration_since(t) >= every);
            if idle && self.push_bound() {
                self.heartbeat(&shard, &cfg);
            }
        }
        if self.inactive(&cfg, now) {
            if let Some(stream) = self.stream.upgrade() {
                let name = self.name.clone();
                crate::runtime::spawn_local(async move {
                    stream.remove_consumer(&name, true).await;
                })
                .detach();
            }
            return;
        }
        self.pump();
    }

    fn heartbeat(&self, shard: &Shard, cfg: &ConsumerConfig) {
        let (c, s) = {
            let st = self.state.borrow();
            (st.delivered.consumer, st.delivered.stream)
        };
        let mut h = format!(
            "NATS/1.0 100 Idle Heartbeat\r\nNats-Last-Consumer: {c}\r\nNats-Last-Stream: {s}\r\n"
        );
        if let Some(fc) = &self.push.borrow().fc_pending {
            h.push_str(&format!("Nats-Consumer-Stalled: {fc}\r\n"));
        }
        h.push_str("\r\n");
        self.push.borrow_mut().last_send = Some(Instant::now());
        shard.publish_internal(
            self.acc,
            cfg.deliver_subject.as_bytes(),
            None,
            Some(h.as_bytes()),
            b"",
        );
    }

    /// Past `inactive_threshold` without interest (no pull requests
    /// waiting, or no subscriber on the push subject).
    fn inactive(&self, cfg: &ConsumerConfig, now: Instant) -> bool {
        if cfg.inactive_threshold <= 0 {
            return false;
        }
        let limit = Duration::from_nanos(cfg.inactive_threshold as u64);
        if cfg.is_pull() {
            if !self.waiting.borrow().is_empty() {
                self.last_active.set(now);
                return false;
            }
            now.duration_since(self.last_active.get()) >= limit
        } else {
            if self.push_bound() {
                return false;
            }
            let since = self
                .push
                .borrow()
                .bound_at
                .unwrap_or(self.last_active.get());
            now.duration_since(since) >= limit
        }
    }

    /// Arms the timer for the earliest thing due, unless it is armed:
    /// an armed timer looks again when it fires, and what arrives in
    /// between is due later (new deliveries) or arms itself (pull request
    /// expiries, nak delays). This keeps the scan of pending messages off
    /// the delivery path.
    pub(crate) fn arm_if_idle(&self) {
        if self.timer.borrow().is_some() {
            return;
        }
        if let Some(at) = self.next_wake() {
            self.arm(at);
        }
    }

    fn next_wake(&self) -> Option<Instant> {
        if self.deleted.get() {
            return None;
        }
        let cfg = self.cfg();
        let now = Instant::now();
        let now_wall = now_ns();
        let at_wall = |ns: u64| now + Duration::from_nanos(ns.saturating_sub(now_wall));
        let mut next: Option<Instant> = None;
        let mut consider = |t: Instant| {
            if next.is_none_or(|n| t < n) {
                next = Some(t);
            }
        };
        if cfg.ack_policy != AckPolicy::None {
            let s = self.state.borrow();
            let naks = self.nak_until.borrow();
            let redeliver = self.redeliver.borrow();
            let earliest = s
                .pending
                .iter()
                .filter(|(q, _)| !redeliver.contains(q))
                .map(|(q, p)| match naks.get(q) {
                    Some(until) => *until,
                    None => p.ts + self.ack_wait(&cfg, s.deliveries(*q)),
                })
                .min();
            if let Some(t) = earliest {
                consider(at_wall(t));
            }
        }
        if let Some(t) = self.waiting.borrow().next_deadline() {
            consider(t);
        }
        if !cfg.is_pull() {
            let bound = self.push_bound();
            if cfg.idle_heartbeat > 0 {
                if bound {
                    let every = Duration::from_nanos(cfg.idle_heartbeat as u64);
                    let last = self.push.borrow().last_send.unwrap_or(now);
                    consider(last + every);
                } else {
                    // No heartbeats without a listener (a deadline long
                    // past would fire at once, again and again): look
                    // for one to come back.
                    consider(now + UNBOUND_POLL);
                }
            }
            if !bound {
                let work = !self.redeliver.borrow().is_empty()
                    || self
                        .stream
                        .upgrade()
                        .is_some_and(|st| self.num_pending(&st, &self.state.borrow()) > 0);
                if work {
                    consider(now + UNBOUND_POLL);
                }
            }
        }
        if cfg.inactive_threshold > 0 {
            let limit = Duration::from_nanos(cfg.inactive_threshold as u64);
            let since = if cfg.is_pull() {
                self.last_active.get()
            } else {
                self.push
                    .borrow()
                    .bound_at
                    .unwrap_or(self.last_active.get())
            };
            // Checked again (not assumed) when it fires.
            consider((since + limit).max(now + Duration::from_millis(50)));
        }
        next
    }

    /// Wakes the timer at `at` unless it is already due earlier. A
    /// superseded sleep finds a newer generation and ends.
    pub(crate) fn arm(&self, at: Instant) {
        // Never due at once: a sleep of zero completes inside the spawn,
        // and a pass that arms again would recurse.
        let at = at.max(Instant::now() + Duration::from_millis(1));
        {
            let t = self.timer.borrow();
            if let Some((cur, _)) = &*t {
                if *cur <= at && *cur > Instant::now() {
                    return;
                }
            }
        }
        let w = self.this.clone();
        let gen = fastrand::u64(..);
        *self.timer.borrow_mut() = Some((at, gen));
        crate::runtime::spawn_local(async move {
            let wait = at.saturating_duration_since(Instant::now());
            crate::runtime::sleep(wait).await;
            let Some(c) = w.upgrade() else { return };
            let current = c.timer.borrow().as_ref().map(|(_, g)| *g);
            if current != Some(gen) {
                return;
            }
            c.timer.borrow_mut().take();
            c.on_timer();
        })
        .detach();
    }
}
