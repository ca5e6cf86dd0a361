//! A stream on its owning shard: the log, the capture subscriptions, and
//! the publish path (header rules, de-duplication, the PubAck once the
//! record is as durable as the stream's policy promises).

use std::cell::RefCell;
use std::path::PathBuf;
use std::rc::{Rc, Weak};

use bytes::Bytes;

use broker_edge_storage::{Durability, Error as LogError, LimitKind, Log, LogConfig};

use super::config::{now_ns, StorageType, StreamConfig};
use super::consumer::{self, Consumer};
use super::dedup::Dedup;
use super::errors::ApiError;
use super::headers as h;
use super::store::{self, StreamMeta};
use super::transform::Transform;
use crate::client::SubRef;
use crate::shard::sink::{Handler, Owned};
use crate::shard::Shard;

mod ingest;

pub use ingest::Done;
pub(crate) use ingest::Rollup;

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
    /// Staged appends waiting for their groups.
    acks: ingest::Acks,
    /// What every PubAck of this stream starts with.
    ack_prefix: String,
}

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
        let name = cfg.name.clone();
        let log = Log::open(store::log_dir(&dir), lc).await?;
        let s = Rc::new(Stream {
            acc,
            ack_prefix: ingest::ack_prefix(&name, shard.g.opts.jetstream_domain.as_deref()),
            name,
            dir,
            log,
            dedup: RefCell::new(Dedup::default()),
            last_msg_id: RefCell::new(String::new()),
            capture: RefCell::new(Vec::new()),
            direct: RefCell::new(Vec::new()),
            shard: Rc::downgrade(shard),
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
            acks: Default::default(),
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

    pub fn consumer(&self, name: &str) -> Option<Rc<Consumer>> {
        self.consumers.borrow().get(name).cloned()
    }

    /// A message was stored: every consumer may have something to send.
    pub fn appended(&self, seq: u64, subject: &[u8]) {
        if self.consumers.borrow().is_empty() {
            return;
        }
        // Collected first: a consumer's delivery may add or remove one.
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
