//! A stream on its owning shard: the log, the capture subscriptions, and
//! the publish path (header rules, de-duplication, the PubAck once the
//! record is as durable as the stream's policy promises).

use std::cell::RefCell;
use std::path::PathBuf;
use std::rc::{Rc, Weak};

use bytes::Bytes;

use broker_edge_storage::{Durability, Error as LogError, Expect, LimitKind, Log, LogConfig};

use super::config::{now_ns, StorageType, StreamConfig};
use super::consumer::{self, Consumer};
use super::dedup::{Check, Dedup};
use super::errors::ApiError;
use super::headers as h;
use super::store::{self, StreamMeta};
use super::transform::Transform;
use crate::client::SubRef;
use crate::shard::sink::{Handler, Owned};
use crate::shard::Shard;

pub struct Stream {
    pub acc: u32,
    pub name: String,
    pub dir: PathBuf,
    pub meta: RefCell<StreamMeta>,
    pub log: Log,
    dedup: RefCell<Dedup>,
    /// The last stored message's `Nats-Msg-Id` ("" when it had none).
    last_msg_id: RefCell<String>,
    capture: RefCell<Vec<SubRef>>,
    /// `$JS.API.DIRECT.GET.<stream>[.>]`, while `allow_direct` is on.
    direct: RefCell<Vec<SubRef>>,
    shard: Weak<Shard>,
    domain: Option<String>,
    /// Set when resource limits are configured: usage is tracked then.
    limits: Option<std::sync::Arc<super::Config>>,
    /// Bytes this stream last reported to the usage table.
    reported: std::cell::Cell<u64>,
    /// From the config: how captured subjects are stored, and where
    /// stored messages are republished (with headers only?).
    derived: RefCell<Derived>,
    /// The consumers of this stream, by name (they live here too).
    pub consumers: RefCell<std::collections::BTreeMap<String, Rc<Consumer>>>,
    /// The server's durability policy (consumer journals follow it).
    pub durability: Durability,
    /// Messages with a `Nats-TTL`, by due time.
    pub(crate) ttl: RefCell<super::ttl::Due>,
    /// The consumers on other streams feeding this one (`sources`).
    sources: RefCell<Option<Rc<super::source::Sources>>>,
    /// Appends in flight: producers wait while it is over its mark.
    backlog: Rc<crate::shard::backlog::Backlog>,
}

/// One append counted in a stream's backlog until it ends (or its task
/// is dropped).
struct InFlight(Rc<crate::shard::backlog::Backlog>, usize);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.finish(self.1);
    }
}

/// Told how an append ended: the sequence stored (or of the duplicate),
/// or why not.
pub type Done = Box<dyn FnOnce(Result<u64, ApiError>)>;

#[derive(Default)]
struct Derived {
    transform: Option<Transform>,
    republish: Option<(Transform, bool)>,
    /// With republish: each subject's last sequence, for the
    /// `Nats-Last-Sequence` header (appends complete in order).
    last_by_subject: std::collections::HashMap<Bytes, u64>,
}

impl Derived {
    fn of(c: &StreamConfig) -> Derived {
        let t = |v: &Option<serde_json::Value>, what| {
            v.as_ref()
                .and_then(|v| super::transform::from_config(v, what).ok())
        };
        Derived {
            transform: t(&c.subject_transform, "subject transform"),
            republish: t(&c.republish, "republish").map(|tr| {
                let headers_only = c
                    .republish
                    .as_ref()
                    .and_then(|r| r.get("headers_only"))
                    .and_then(|h| h.as_bool())
                    .unwrap_or(false);
                (tr, headers_only)
            }),
            last_by_subject: Default::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error("opening the log: {0}")]
    Log(#[from] LogError),
}

impl Stream {
    pub fn cfg(&self) -> StreamConfig {
        self.meta.borrow().config.clone()
    }

    /// Replaces the config (an update): derived settings follow.
    pub fn set_config(&self, c: StreamConfig) {
        *self.derived.borrow_mut() = Derived::of(&c);
        let direct = c.allow_direct;
        self.meta.borrow_mut().config = c;
        if let (Some(shard), Some(me)) = (self.shard.upgrade(), self.this()) {
            me.subscribe_direct(&shard, direct);
            me.start_sources(&shard);
        }
    }

    /// Starts, changes or stops the feeds from `sources` or the mirror
    /// (a mirror only ever goes away: the stream is promoted).
    fn start_sources(self: &Rc<Self>, shard: &Rc<Shard>) {
        let c = self.cfg();
        let current = self.sources.borrow().clone();
        let mirror = c.mirror.is_some();
        let none = !mirror && c.sources.is_empty();
        match current {
            Some(s) if none || s.mirror != mirror => {
                s.stop(shard);
                *self.sources.borrow_mut() = None;
                if !none {
                    let s = super::source::Sources::start(self, shard);
                    *self.sources.borrow_mut() = Some(s);
                }
            }
            Some(_) if mirror => {}
            Some(s) => s.reconcile(self, shard, &c.sources),
            None if none => {}
            None => {
                let s = super::source::Sources::start(self, shard);
                *self.sources.borrow_mut() = Some(s);
            }
        }
    }

    /// Stops the feeds (the stream is being deleted).
    pub fn stop_sources(&self) {
        let s = self.sources.borrow_mut().take();
        if let (Some(s), Some(shard)) = (s, self.shard.upgrade()) {
            s.stop(&shard);
        }
    }

    /// `sources` of the stream info (None without sources), or
    /// `[mirror]` (with `true`) for a mirror.
    pub fn sources_info(&self) -> Option<(bool, Vec<serde_json::Value>)> {
        self.sources.borrow().as_ref().map(|s| (s.mirror, s.info()))
    }

    /// The account and server resource limits allow one more message.
    pub(crate) fn check_resources(&self) -> Result<(), ApiError> {
        let Some(cfg) = &self.limits else {
            return Ok(());
        };
        let t = self.meta.borrow().config.storage;
        match super::limits::check_publish(cfg, self.acc, t) {
            Ok(()) => Ok(()),
            Err(super::limits::Exceeded::Server) => Err(ApiError::insufficient_resources()),
            Err(super::limits::Exceeded::Account) => Err(ApiError::account_resources_exceeded()),
        }
    }

    /// Direct gets are answered here, on the owner, straight from the
    /// log (no hop through shard 0), as the reference's stream answers
    /// them itself.
    fn subscribe_direct(self: &Rc<Self>, shard: &Shard, on: bool) {
        let mut subs = self.direct.borrow_mut();
        if !on {
            for s in subs.drain(..) {
                shard.remove_sub(&s);
            }
            return;
        }
        if !subs.is_empty() {
            return;
        }
        for subject in [
            format!("$JS.API.DIRECT.GET.{}", self.name),
            format!("$JS.API.DIRECT.GET.{}.>", self.name),
        ] {
            let w = Rc::downgrade(self);
            let handler: Handler = Rc::new(move |m| {
                let Some(st) = w.upgrade() else { return };
                let Some(reply) = m.reply else { return };
                let o = Owned::of(m);
                let subject = String::from_utf8_lossy(&o.subject);
                let Some(msgs) = super::api::direct_replies(&st, &subject, &o.payload) else {
                    return;
                };
                if let Some(shard) = st.shard.upgrade() {
                    for (headers, payload) in msgs {
                        let h = (!headers.is_empty()).then_some(&headers[..]);
                        shard.publish_internal(st.acc, reply, None, h, &payload);
                    }
                }
            });
            // A queue group shared with the mirrors that answer for this
            // stream (`mirror_direct`): one of them answers.
            let group = Some(super::source::mirror::DIRECT_GROUP);
            subs.push(shard.subscribe_internal(self.acc, &subject, group, handler));
        }
    }

    /// Opens (recovering) the stream stored in `dir` and starts capturing
    /// its subjects on `shard`.
    pub async fn open(
        shard: &Rc<Shard>,
        acc: u32,
        dir: PathBuf,
        meta: StreamMeta,
        durability: Durability,
    ) -> Result<Rc<Stream>, OpenError> {
        let cfg = &meta.config;
        let durability = match cfg.storage {
            // Memory streams keep the same semantics but are not made
            // durable (and are emptied at start-up).
            StorageType::Memory => Durability::Never,
            StorageType::File => durability,
        };
        let lc = LogConfig {
            durability,
            // Without an fsync per ack, an ack waits for the page cache
            // rather than a device write (see docs/architecture.md).
            write_mode: match durability {
                Durability::Always => broker_edge_storage::WriteMode::Direct,
                _ => broker_edge_storage::WriteMode::Buffered,
            },
            limits: cfg.log_limits(),
            first_seq: cfg.first_seq.max(1),
            // Small segments: an appliance runs hundreds of small streams.
            segment_size: 4 << 20,
            recent_bytes: 256 << 10,
            ..LogConfig::default()
        };
        let lc_durability = lc.durability;
        let log = Log::open(store::log_dir(&dir), lc).await?;
        let s = Rc::new(Stream {
            acc,
            name: cfg.name.clone(),
            dir,
            log,
            dedup: RefCell::new(Dedup::default()),
            last_msg_id: RefCell::new(String::new()),
            capture: RefCell::new(Vec::new()),
            direct: RefCell::new(Vec::new()),
            shard: Rc::downgrade(shard),
            domain: shard.g.opts.jetstream_domain.clone(),
            limits: shard
                .js
                .get()
                .filter(|j| j.cfg.limited)
                .map(|j| j.cfg.clone()),
            reported: std::cell::Cell::new(0),
            derived: RefCell::new(Derived::of(&meta.config)),
            meta: RefCell::new(meta),
            consumers: RefCell::new(Default::default()),
            durability: lc_durability,
            ttl: RefCell::new(Default::default()),
            sources: RefCell::new(None),
            backlog: Rc::default(),
        });
        s.report_usage();
        s.load_dedup();
        s.load_ttls();
        s.subscribe(shard);
        let direct = s.meta.borrow().config.allow_direct;
        s.subscribe_direct(shard, direct);
        s.start_sources(shard);
        for m in consumer::scan(&s.dir) {
            let name = m.config.name.clone();
            match Consumer::open(&s, shard, m.config, m.created, lc_durability, false).await {
                Ok(c) => {
                    s.consumers.borrow_mut().insert(name, c);
                }
                Err(e) => tracing::error!(
                    "JetStream: could not open consumer {name} of stream {}: {e}",
                    s.name
                ),
            }
        }
        Ok(s)
    }

    /// Brings this stream's share of the usage table up to date (only
    /// when limits are configured).
    pub fn report_usage(&self) {
        let (Some(cfg), Some(shard)) = (&self.limits, self.shard.upgrade()) else {
            return;
        };
        let now = self.log.state(false).bytes;
        let before = self.reported.replace(now);
        let t = self.meta.borrow().config.storage;
        cfg.usage
            .add(shard.id, self.acc, t, now as i64 - before as i64);
    }

    /// Takes this stream's usage out of the table (it is being deleted).
    pub fn forget_usage(&self) {
        let (Some(cfg), Some(shard)) = (&self.limits, self.shard.upgrade()) else {
            return;
        };
        let before = self.reported.replace(0);
        let t = self.meta.borrow().config.storage;
        cfg.usage.add(shard.id, self.acc, t, -(before as i64));
    }

    /// Rebuilds the duplicate window and the last message id from the log.
    fn load_dedup(&self) {
        let window = self.meta.borrow().config.duplicate_window.max(0) as u64;
        let st = self.log.state(false);
        if st.msgs == 0 {
            return;
        }
        if let Ok(m) = self.log.get(st.last_seq) {
            *self.last_msg_id.borrow_mut() = h::get(&m.headers, h::MSG_ID)
                .unwrap_or_default()
                .to_string();
        }
        if window == 0 {
            return;
        }
        let since = now_ns().saturating_sub(window);
        let mut d = self.dedup.borrow_mut();
        let scan = self.log.scan(
            broker_edge_storage::Start::Time(since),
            broker_edge_storage::Filter::all(),
        );
        for m in scan.flatten() {
            if let Some(id) = h::get(&m.headers, h::MSG_ID) {
                d.remember(id, m.seq, m.ts);
            }
        }
    }

    /// Captures the stream's subjects: peers forward matching messages here.
    pub fn subscribe(self: &Rc<Self>, shard: &Shard) {
        let subjects = self.meta.borrow().config.subjects.clone();
        let mut subs = self.capture.borrow_mut();
        for s in subjects {
            let w = Rc::downgrade(self);
            let handler: Handler = Rc::new(move |m| {
                if let Some(stream) = w.upgrade() {
                    stream.ingest(Owned::of(m));
                }
            });
            subs.push(shard.subscribe_internal(self.acc, &s, None, handler));
        }
    }

    pub fn unsubscribe(&self, shard: &Shard) {
        for s in self.capture.borrow_mut().drain(..) {
            shard.remove_sub(&s);
        }
        for s in self.direct.borrow_mut().drain(..) {
            shard.remove_sub(&s);
        }
    }

    /// One captured message: checks, then append; the PubAck (or error
    /// PubAck) goes to its reply subject when the append resolves.
    pub fn ingest(self: &Rc<Self>, m: Owned) {
        self.ingest_with(m, None)
    }

    /// [`Self::ingest`], telling `done` how it ended (sourced messages).
    pub fn ingest_with(self: &Rc<Self>, m: Owned, done: Option<Done>) {
        let done = Rc::new(RefCell::new(done));
        let finish = {
            let d = done.clone();
            move |r: Result<u64, ApiError>| {
                let f = d.borrow_mut().take();
                if let Some(f) = f {
                    f(r);
                }
            }
        };
        let finish = Rc::new(finish);
        let reply = m.reply.clone();
        let (name, cfg_checks) = {
            let meta = self.meta.borrow();
            let c = &meta.config;
            (
                c.name.clone(),
                (
                    c.sealed,
                    c.max_msg_size,
                    c.duplicate_window,
                    c.allow_rollup_hdrs && !c.deny_purge,
                    c.no_ack,
                ),
            )
        };
        let (sealed, max_size, window, rollup_ok, no_ack) = cfg_checks;
        let reply = if no_ack { None } else { reply };
        let fail = |e: ApiError| {
            finish(Err(e.clone()));
            self.nak(reply.as_ref(), e)
        };
        if sealed {
            return fail(ApiError::sealed());
        }
        let hdrs = &m.headers;
        if let Some(es) = h::get(hdrs, h::EXPECTED_STREAM) {
            if es != name {
                return fail(ApiError::stream_not_match());
            }
        }
        let mut expect = Expect::default();
        if let Some(v) = h::get(hdrs, h::EXPECTED_LAST_SUBJ_SEQ) {
            expect.last_subject_seq = Some(v.parse().unwrap_or(u64::MAX));
        } else if h::get(hdrs, "Nats-Expected-Last-Subject-Sequence-Subject").is_some() {
            return fail(ApiError::missing_last_seq_per_subject());
        }
        if let Some(v) = h::get(hdrs, h::EXPECTED_LAST_SEQ) {
            expect.last_seq = Some(v.parse().unwrap_or(u64::MAX));
        }
        let msg_id = h::get(hdrs, h::MSG_ID).map(str::to_string);
        if let (Some(id), true) = (&msg_id, window > 0) {
            match self.dedup.borrow_mut().check(id, now_ns(), window as u64) {
                Check::New => {}
                Check::Duplicate(seq) => {
                    finish(Ok(seq));
                    return self.ack(reply.as_ref(), seq, true);
                }
                Check::Wait(rx) => {
                    let me = self.clone();
                    let finish = finish.clone();
                    crate::runtime::spawn_local(async move {
                        match rx.await {
                            Ok(Some(seq)) => {
                                finish(Ok(seq));
                                me.ack(reply.as_ref(), seq, true)
                            }
                            _ => {
                                finish(Err(ApiError::duplicate_in_process()));
                                me.nak(reply.as_ref(), ApiError::duplicate_in_process())
                            }
                        }
                    })
                    .detach();
                    return;
                }
            }
        }
        let release = |me: &Stream| {
            if let (Some(id), true) = (&msg_id, window > 0) {
                me.dedup.borrow_mut().resolve(id, None);
            }
        };
        if let Some(want) = h::get(hdrs, h::EXPECTED_LAST_MSG_ID) {
            let last = self.last_msg_id.borrow().clone();
            if want != last {
                release(self);
                return fail(ApiError::wrong_last_msg_id(&last));
            }
        }
        let rollup = match h::get(hdrs, h::ROLLUP).map(|v| v.to_ascii_lowercase()) {
            None => None,
            Some(_) if !rollup_ok => {
                release(self);
                return fail(ApiError::rollup_failed("rollup not permitted"));
            }
            Some(v) if v == "sub" || v == "all" => Some(v),
            Some(v) => {
                release(self);
                return fail(ApiError::rollup_failed(format!(
                    "rollup value invalid: {v:?}"
                )));
            }
        };
        let ttl = match h::get(hdrs, super::ttl::HEADER) {
            None => None,
            Some(_) if !self.meta.borrow().config.allow_msg_ttl => {
                release(self);
                return fail(ApiError::new_pub(400, 10166, "per-message TTL is disabled"));
            }
            Some(v) => match super::ttl::parse(v) {
                Ok(ns) => Some(ns),
                Err(e) => {
                    release(self);
                    return fail(e);
                }
            },
        };
        if max_size >= 0
            && (hdrs.len() as i64 > max_size
                || m.payload.len() as i64 > max_size - hdrs.len() as i64)
        {
            release(self);
            return fail(ApiError::msg_too_large());
        }
        if hdrs.len() > 65535 {
            release(self);
            return fail(ApiError::header_too_large());
        }
        if let Err(e) = self.check_resources() {
            release(self);
            return fail(e);
        }
        *self.last_msg_id.borrow_mut() = msg_id.clone().unwrap_or_default();
        let me = self.clone();
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
        // Counted until the append ends, however it ends; past the mark
        // the producer of this message waits (Shard::unstall).
        let size = subject.len() + m.headers.len() + m.payload.len();
        if self.backlog.add(size) {
            if let Some(shard) = self.shard.upgrade() {
                shard.backlogged(&self.backlog);
            }
        }
        let in_flight = InFlight(self.backlog.clone(), size);
        // Spawned in arrival order; the first poll stages the record, so
        // records are framed in the order messages arrived.
        let finish = finish.clone();
        crate::runtime::spawn_local(async move {
            let _in_flight = in_flight;
            let r = me
                .log
                .append_expect(
                    subject.clone(),
                    m.headers.clone(),
                    m.payload.clone(),
                    expect,
                )
                .await;
            match r {
                Ok((seq, ts)) => {
                    if let Some(ns) = ttl {
                        me.expire_at(ts + ns, seq);
                    }
                    me.republish(&subject, &m.headers, &m.payload, (seq, ts), prev_stored);
                    if let (Some(id), true) = (&msg_id, window > 0) {
                        me.dedup.borrow_mut().resolve(id, Some(seq));
                    }
                    if let Some(kind) = rollup {
                        me.rollup(&kind, &subject, seq).await;
                    }
                    me.report_usage();
                    let interest =
                        me.meta.borrow().config.retention == super::config::Retention::Interest;
                    if interest && !me.consumers.borrow().values().any(|c| c.wants(&subject)) {
                        // No consumer has interest: the sequence is used,
                        // nothing is kept, as in the reference.
                        let _ = me.log.delete(seq, false).await;
                    }
                    me.ack(reply.as_ref(), seq, false);
                    me.appended(seq, &subject);
                    finish(Ok(seq));
                }
                Err(e) => {
                    if let (Some(id), true) = (&msg_id, window > 0) {
                        me.dedup.borrow_mut().resolve(id, None);
                    }
                    {
                        // The optimistic last id did not make it.
                        let last = me.log.state(false).last_seq;
                        let id = me
                            .log
                            .get(last)
                            .ok()
                            .and_then(|m| h::get(&m.headers, h::MSG_ID).map(str::to_string))
                            .unwrap_or_default();
                        *me.last_msg_id.borrow_mut() = id;
                    }
                    finish(Err(store_error(&e)));
                    me.nak(reply.as_ref(), store_error(&e));
                }
            }
        })
        .detach();
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
            super::config::go_time(ts),
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

    pub(crate) async fn rollup(&self, kind: &str, subject: &Bytes, seq: u64) {
        let req = broker_edge_storage::Purge {
            subject: (kind == "sub").then(|| String::from_utf8_lossy(subject).into_owned()),
            up_to: Some(seq),
            keep: None,
        };
        if let Err(e) = self.log.purge(req).await {
            tracing::warn!("JetStream: rollup in stream {} failed: {e}", self.name);
        }
    }

    pub fn consumer(&self, name: &str) -> Option<Rc<Consumer>> {
        self.consumers.borrow().get(name).cloned()
    }

    /// A message was stored: every consumer may have something to send.
    pub fn appended(&self, seq: u64, subject: &[u8]) {
        let cs: Vec<Rc<Consumer>> = self.consumers.borrow().values().cloned().collect();
        for c in cs {
            c.on_append(self, seq, subject);
        }
    }

    /// Stops and forgets a consumer (its files too when `remove`); the
    /// deletion advisory goes out. False when there was none.
    pub async fn remove_consumer(&self, name: &str, remove: bool) -> bool {
        let Some(c) = self.consumers.borrow_mut().remove(name) else {
            return false;
        };
        c.stop(remove).await;
        if let Some(shard) = self.shard.upgrade() {
            consumer::advisory::action(&shard, self.acc, &self.name, name, "delete");
        }
        if self.meta.borrow().config.retention == super::config::Retention::Interest {
            self.drop_uninterested().await;
        }
        true
    }

    /// Stops every consumer (the stream is going away or closing).
    pub async fn stop_consumers(&self, remove: bool) {
        let cs: Vec<Rc<Consumer>> = std::mem::take(&mut *self.consumers.borrow_mut())
            .into_values()
            .collect();
        for c in cs {
            c.stop(remove).await;
        }
    }

    pub fn shard(&self) -> Option<Rc<Shard>> {
        self.shard.upgrade()
    }

    pub(crate) fn this(&self) -> Option<Rc<Stream>> {
        let shard = self.shard.upgrade()?;
        shard.js.get()?.stream(self.acc, &self.name)
    }

    fn ack(&self, reply: Option<&Bytes>, seq: u64, duplicate: bool) {
        let Some(reply) = reply else { return };
        let name = serde_json::to_string(&self.name).unwrap_or_default();
        let mut body = format!("{{\"stream\":{name}");
        if let Some(d) = &self.domain {
            body.push_str(&format!(
                ",\"domain\":{}",
                serde_json::to_string(d).unwrap_or_default()
            ));
        }
        body.push_str(&format!(",\"seq\":{seq}"));
        if duplicate {
            body.push_str(",\"duplicate\": true");
        }
        body.push('}');
        self.reply(reply, body.as_bytes());
    }

    fn nak(&self, reply: Option<&Bytes>, e: ApiError) {
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

    /// Writes the stream's metadata file (after a config change).
    pub fn save(&self) -> Result<(), store::StoreError> {
        store::save_meta(&self.dir, &self.meta.borrow())
    }
}

/// The error PubAck for a failed append, in the reference's words.
pub fn store_error(e: &LogError) -> ApiError {
    match e {
        LogError::WrongLastSequence { actual } | LogError::WrongLastSubjectSequence { actual } => {
            ApiError::wrong_last_sequence(*actual)
        }
        LogError::LimitReached(LimitKind::MaxMsgs) => {
            ApiError::store_failed("maximum messages exceeded")
        }
        LogError::LimitReached(LimitKind::MaxBytes) => {
            ApiError::store_failed("maximum bytes exceeded")
        }
        LogError::LimitReached(LimitKind::MaxMsgsPerSubject) => {
            ApiError::store_failed("maximum messages per subject exceeded")
        }
        LogError::NoSpace => ApiError::storage_exceeded(),
        LogError::MsgTooLarge { .. } => ApiError::store_failed("message too large"),
        other => ApiError::store_failed(other),
    }
}
