//! The publish path into a stream: header rules and de-duplication, the
//! append staged in the log, and once its group is durable the PubAck
//! (or error PubAck), republish, TTL, rollup and the consumers' turn.
//!
//! Appends are staged synchronously in arrival order (so they are framed
//! in that order) and queued here with what their completion needs; one
//! task per stream waits on the oldest only. A task and a future per
//! message cost more than the rest of the path together (BENCHMARKS.md).

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;

use bytes::Bytes;

use broker_edge_storage::{Error as LogError, Expect, Ticket};

use super::super::config::{now_ns, Retention};
use super::super::dedup::Check;
use super::super::errors::ApiError;
use super::super::headers as h;
use super::{store_error, Stream};
use crate::shard::sink::Owned;

/// Told how an append ended: the sequence stored (or of the duplicate),
/// or why not.
pub type Done = Box<dyn FnOnce(Result<u64, ApiError>)>;

/// One append counted in a stream's backlog until it ends.
struct InFlight(Rc<crate::shard::backlog::Backlog>, usize);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.finish(self.1);
    }
}

/// `Nats-Rollup`: purge the subject's or the whole stream's earlier
/// messages once this one is stored.
#[derive(Clone, Copy)]
pub(crate) enum Rollup {
    Subject,
    All,
}

impl Rollup {
    /// The header's value ("sub" or "all", any case); None when neither.
    pub(crate) fn of(v: &str) -> Option<Rollup> {
        if v.eq_ignore_ascii_case("sub") {
            Some(Rollup::Subject)
        } else if v.eq_ignore_ascii_case("all") {
            Some(Rollup::All)
        } else {
            None
        }
    }
}

/// A staged append and what its completion needs.
struct Pending {
    ticket: Ticket,
    reply: Option<Bytes>,
    subject: Bytes,
    headers: Bytes,
    payload: Bytes,
    msg_id: Option<String>,
    ttl: Option<u64>,
    rollup: Option<Rollup>,
    /// The subject's last stored sequence before this append (republish).
    prev_stored: u64,
    done: Option<Done>,
    _in_flight: InFlight,
}

/// The stream's appends waiting for their groups, oldest first.
#[derive(Default)]
pub(crate) struct Acks {
    queue: RefCell<VecDeque<Pending>>,
    /// The task completing them runs.
    running: Cell<bool>,
}

fn tell(done: Option<Done>, r: Result<u64, ApiError>) {
    if let Some(f) = done {
        f(r);
    }
}

impl Stream {
    /// One captured message: checks, then append; the PubAck (or error
    /// PubAck) goes to its reply subject when the append resolves.
    pub fn ingest(self: &Rc<Self>, m: Owned) {
        self.ingest_with(m, None)
    }

    /// [`Self::ingest`], telling `done` how it ended (sourced messages).
    pub fn ingest_with(self: &Rc<Self>, m: Owned, done: Option<Done>) {
        let (sealed, max_size, window, rollup_ok, no_ack, allow_ttl) = {
            let meta = self.meta.borrow();
            let c = &meta.config;
            (
                c.sealed,
                c.max_msg_size,
                c.duplicate_window,
                c.allow_rollup_hdrs && !c.deny_purge,
                c.no_ack,
                c.allow_msg_ttl,
            )
        };
        let reply = if no_ack { None } else { m.reply.clone() };
        let refuse = |done: Option<Done>, e: ApiError| {
            tell(done, Err(e.clone()));
            self.nak(reply.as_ref(), e)
        };
        if sealed {
            return refuse(done, ApiError::sealed());
        }
        let hdrs = &m.headers;
        if let Some(es) = h::get(hdrs, h::EXPECTED_STREAM) {
            if es != self.name {
                return refuse(done, ApiError::stream_not_match());
            }
        }
        let mut expect = Expect::default();
        if let Some(v) = h::get(hdrs, h::EXPECTED_LAST_SUBJ_SEQ) {
            expect.last_subject_seq = Some(v.parse().unwrap_or(u64::MAX));
        } else if h::get(hdrs, "Nats-Expected-Last-Subject-Sequence-Subject").is_some() {
            return refuse(done, ApiError::missing_last_seq_per_subject());
        }
        if let Some(v) = h::get(hdrs, h::EXPECTED_LAST_SEQ) {
            expect.last_seq = Some(v.parse().unwrap_or(u64::MAX));
        }
        let header_id = h::get(hdrs, h::MSG_ID);
        // Tracked in the duplicate window only while there is one.
        let msg_id = header_id.filter(|_| window > 0).map(str::to_string);
        if let Some(id) = &msg_id {
            match self.dedup.borrow_mut().check(id, now_ns(), window as u64) {
                Check::New => {}
                Check::Duplicate(seq) => {
                    tell(done, Ok(seq));
                    return self.ack(reply.as_ref(), seq, true);
                }
                Check::Wait(rx) => {
                    let me = self.clone();
                    crate::runtime::spawn_local(async move {
                        match rx.await {
                            Ok(Some(seq)) => {
                                tell(done, Ok(seq));
                                me.ack(reply.as_ref(), seq, true)
                            }
                            _ => {
                                let e = ApiError::duplicate_in_process();
                                tell(done, Err(e.clone()));
                                me.nak(reply.as_ref(), e)
                            }
                        }
                    })
                    .detach();
                    return;
                }
            }
        }
        // Past this point the id is pending in the window: every refusal
        // releases it.
        let release = |done: Option<Done>, e: ApiError| {
            if let Some(id) = &msg_id {
                self.dedup.borrow_mut().resolve(id, None);
            }
            refuse(done, e)
        };
        if let Some(want) = h::get(hdrs, h::EXPECTED_LAST_MSG_ID) {
            let last = self.last_msg_id.borrow().clone();
            if want != last {
                return release(done, ApiError::wrong_last_msg_id(&last));
            }
        }
        let rollup = match h::get(hdrs, h::ROLLUP) {
            None => None,
            Some(_) if !rollup_ok => {
                return release(done, ApiError::rollup_failed("rollup not permitted"));
            }
            Some(v) if Rollup::of(v).is_some() => Rollup::of(v),
            Some(v) => {
                let v = v.to_ascii_lowercase();
                return release(
                    done,
                    ApiError::rollup_failed(format!("rollup value invalid: {v:?}")),
                );
            }
        };
        let ttl = match h::get(hdrs, super::super::ttl::HEADER) {
            None => None,
            Some(_) if !allow_ttl => {
                return release(
                    done,
                    ApiError::new_pub(400, 10166, "per-message TTL is disabled"),
                );
            }
            Some(v) => match super::super::ttl::parse(v) {
                Ok(ns) => Some(ns),
                Err(e) => return release(done, e),
            },
        };
        if max_size >= 0
            && (hdrs.len() as i64 > max_size
                || m.payload.len() as i64 > max_size - hdrs.len() as i64)
        {
            return release(done, ApiError::msg_too_large());
        }
        if hdrs.len() > 65535 {
            return release(done, ApiError::header_too_large());
        }
        if let Err(e) = self.check_resources() {
            return release(done, e);
        }
        let subject = match &self.derived.borrow().transform {
            Some(t) => match t.apply(&String::from_utf8_lossy(&m.subject)) {
                Some(s) => Bytes::from(s),
                None => m.subject.clone(),
            },
            None => m.subject.clone(),
        };
        // The subject's last sequence among stored messages, for a
        // republish when no append on it completed since the start.
        let prev_stored = if self.derived.borrow().republish.is_some() {
            self.log
                .last_for(&broker_edge_storage::Filter::one(&String::from_utf8_lossy(
                    &subject,
                )))
                .ok()
                .flatten()
                .map_or(0, |m| m.seq)
        } else {
            0
        };
        let ticket = match self.log.stage(
            subject.clone(),
            m.headers.clone(),
            m.payload.clone(),
            expect,
        ) {
            Ok(t) => t,
            Err(e) => return release(done, store_error(&e)),
        };
        // Optimistic: an append that fails later puts the stored one back.
        *self.last_msg_id.borrow_mut() = header_id.unwrap_or_default().to_string();
        // Counted until the append ends, however it ends; past the mark
        // the producer of this message waits (Shard::unstall).
        let size = subject.len() + m.headers.len() + m.payload.len();
        if self.backlog.add(size) {
            if let Some(shard) = self.shard.upgrade() {
                shard.backlogged(&self.backlog);
            }
        }
        self.acks.queue.borrow_mut().push_back(Pending {
            ticket,
            reply,
            subject,
            headers: m.headers,
            payload: m.payload,
            msg_id,
            ttl,
            rollup,
            prev_stored,
            done,
            _in_flight: InFlight(self.backlog.clone(), size),
        });
        if !self.acks.running.replace(true) {
            let me = self.clone();
            crate::runtime::spawn_local(async move { me.complete_appends().await }).detach();
        }
    }

    /// Completes staged appends in order as their groups are published;
    /// ends when none is left.
    async fn complete_appends(self: Rc<Self>) {
        loop {
            futures_lite::future::poll_fn(|cx| match self.acks.queue.borrow().front() {
                Some(p) => p.ticket.poll_done(cx),
                None => std::task::Poll::Ready(()),
            })
            .await;
            loop {
                let p = {
                    let mut q = self.acks.queue.borrow_mut();
                    match q.front() {
                        Some(p) if p.ticket.is_done() => q.pop_front(),
                        _ => None,
                    }
                };
                let Some(p) = p else { break };
                self.completed(p).await;
            }
            if self.acks.queue.borrow().is_empty() {
                self.acks.running.set(false);
                return;
            }
        }
    }

    async fn completed(self: &Rc<Self>, p: Pending) {
        let (seq, ts) = match p.ticket.appended() {
            Ok(r) => r,
            Err(e) => return self.append_failed(p, &e),
        };
        if let Some(ns) = p.ttl {
            self.expire_at(ts + ns, seq);
        }
        self.republish(&p.subject, &p.headers, &p.payload, (seq, ts), p.prev_stored);
        if let Some(id) = &p.msg_id {
            self.dedup.borrow_mut().resolve(id, Some(seq));
        }
        if let Some(kind) = p.rollup {
            self.rollup(kind, &p.subject, seq).await;
        }
        self.report_usage();
        let interest = self.meta.borrow().config.retention == Retention::Interest;
        if interest
            && !self
                .consumers
                .borrow()
                .values()
                .any(|c| c.wants(&p.subject))
        {
            // No consumer has interest: the sequence is used, nothing is
            // kept, as in the reference.
            let _ = self.log.delete(seq, false).await;
        }
        self.ack(p.reply.as_ref(), seq, false);
        self.appended(seq, &p.subject);
        tell(p.done, Ok(seq));
    }

    fn append_failed(&self, p: Pending, e: &LogError) {
        if let Some(id) = &p.msg_id {
            self.dedup.borrow_mut().resolve(id, None);
        }
        // The optimistic last id did not make it.
        let last = self.log.state(false).last_seq;
        let id = self
            .log
            .get(last)
            .ok()
            .and_then(|m| h::get(&m.headers, h::MSG_ID).map(str::to_string))
            .unwrap_or_default();
        *self.last_msg_id.borrow_mut() = id;
        tell(p.done, Err(store_error(e)));
        self.nak(p.reply.as_ref(), store_error(e));
    }

    /// Publishes a stored message to the republish destination with the
    /// stream's headers (only those, and the size, when headers_only).
    fn republish(
        &self,
        subject: &Bytes,
        headers: &Bytes,
        payload: &Bytes,
        (seq, ts): (u64, u64),
        prev_stored: u64,
    ) {
        let mut d = self.derived.borrow_mut();
        if d.republish.is_none() {
            return;
        }
        let prev = d
            .last_by_subject
            .insert(subject.clone(), seq)
            .unwrap_or(prev_stored);
        let Some((t, headers_only)) = &d.republish else {
            return;
        };
        let subj = String::from_utf8_lossy(subject).into_owned();
        let Some(dest) = t.apply(&subj) else {
            return;
        };
        let headers_only = *headers_only;
        // Delivery may reach other streams' handlers: no borrow held.
        drop(d);
        let (seq_s, last_s, ts_s, size_s) = (
            seq.to_string(),
            prev.to_string(),
            super::super::config::go_time(ts),
            payload.len().to_string(),
        );
        let mut pairs = vec![
            ("Nats-Stream", self.name.as_str()),
            ("Nats-Subject", subj.as_str()),
            ("Nats-Sequence", seq_s.as_str()),
            ("Nats-Time-Stamp", ts_s.as_str()),
            ("Nats-Last-Sequence", last_s.as_str()),
        ];
        if headers_only {
            pairs.push(("Nats-Msg-Size", size_s.as_str()));
        }
        let block = if headers.len() >= 4 && headers.ends_with(b"\r\n\r\n") {
            let mut out = headers[..headers.len() - 2].to_vec();
            for (k, v) in &pairs {
                out.extend_from_slice(format!("{k}: {v}\r\n").as_bytes());
            }
            out.extend_from_slice(b"\r\n");
            out
        } else {
            h::build(None, &pairs)
        };
        let body: &[u8] = if headers_only { b"" } else { payload };
        if let Some(shard) = self.shard.upgrade() {
            shard.publish_internal(self.acc, dest.as_bytes(), None, Some(&block), body);
        }
    }

    pub(crate) async fn rollup(&self, kind: Rollup, subject: &Bytes, seq: u64) {
        let req = broker_edge_storage::Purge {
            subject: matches!(kind, Rollup::Subject)
                .then(|| String::from_utf8_lossy(subject).into_owned()),
            up_to: Some(seq),
            keep: None,
        };
        if let Err(e) = self.log.purge(req).await {
            tracing::warn!("JetStream: rollup in stream {} failed: {e}", self.name);
        }
    }

    /// The PubAck, from the stream's fixed prefix (name, domain).
    pub(super) fn ack(&self, reply: Option<&Bytes>, seq: u64, duplicate: bool) {
        let Some(reply) = reply else { return };
        let mut body = Vec::with_capacity(self.ack_prefix.len() + 40);
        body.extend_from_slice(self.ack_prefix.as_bytes());
        body.extend_from_slice(itoa::Buffer::new().format(seq).as_bytes());
        if duplicate {
            body.extend_from_slice(b",\"duplicate\": true");
        }
        body.push(b'}');
        self.reply(reply, &body);
    }

    pub(super) fn nak(&self, reply: Option<&Bytes>, e: ApiError) {
        let Some(reply) = reply else {
            tracing::debug!("JetStream: stream {} refused a message: {e}", self.name);
            return;
        };
        let body = serde_json::json!({"error": e, "stream": self.name, "seq": 0});
        self.reply(reply, body.to_string().as_bytes());
    }

    fn reply(&self, to: &[u8], body: &[u8]) {
        if let Some(shard) = self.shard.upgrade() {
            shard.publish_internal(self.acc, to, None, None, body);
        }
    }
}

/// `{"stream":<name>[,"domain":<domain>],"seq":` — what every PubAck of a
/// stream starts with.
pub(super) fn ack_prefix(name: &str, domain: Option<&str>) -> String {
    let q = |s: &str| serde_json::to_string(s).unwrap_or_default();
    let mut p = format!("{{\"stream\":{}", q(name));
    if let Some(d) = domain {
        p.push_str(",\"domain\":");
        p.push_str(&q(d));
    }
    p.push_str(",\"seq\":");
    p
}
