//! Consumers: a view of one stream with its own delivery position and
//! acknowledgement state, living on the stream's shard.
//!
//! * `config`: the API's consumer config, defaults and checks.
//! * `state`: delivered / pending / ack floor as plain data.
//! * `journal`: a durable consumer's state on disk.
//! * `deliver`: picking the next message and sending it (pull or push),
//!   timers (ack wait, expiries, heartbeats, inactivity).
//! * `pull`: waiting pull requests; `ack`: the ack protocol;
//!   `advisory`: the events consumers publish.

pub mod ack;
pub mod advisory;
pub mod config;
pub mod deliver;
pub mod journal;
pub mod pull;
pub mod state;

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::{Path, PathBuf};
use std::rc::{Rc, Weak};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use broker_edge_storage::{Durability, Filter};

use super::config::{go_time, now_ns, StorageType};
use super::errors::ApiError;
use super::stream::Stream;
use crate::client::SubRef;
use crate::shard::Shard;
use config::{AckPolicy, ConsumerConfig, DeliverPolicy};
use journal::Journal;
use state::{Event, State};

/// What `meta.json` of a durable consumer holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConsumerMeta {
    pub config: ConsumerConfig,
    /// Creation time (ns).
    pub created: u64,
}

pub struct Consumer {
    /// Itself, for the tasks it spawns.
    pub(crate) this: Weak<Consumer>,
    pub name: String,
    /// `$JS.ACK.<stream>.<consumer>.`, the start of every reply subject.
    pub(crate) ack_prefix: String,
    pub acc: u32,
    pub stream: Weak<Stream>,
    pub stream_name: String,
    pub created: u64,
    /// Shared, so a delivery pass holds it without copying it.
    cfg: RefCell<Rc<ConsumerConfig>>,
    filter: RefCell<Filter>,
    pub(crate) state: RefCell<State>,
    dir: Option<PathBuf>,
    journal: Option<Journal>,
    /// Events not yet handed to the journal, and who waits for them to be
    /// durable (double acks).
    unsaved: RefCell<(Vec<u8>, Vec<futures_channel::oneshot::Sender<()>>)>,
    saving: Cell<bool>,
    pub(crate) waiting: RefCell<pull::Queue>,
    /// Due for redelivery (by stream sequence).
    pub(crate) redeliver: RefCell<BTreeSet<u64>>,
    /// `-NAK` with a delay: not before this time (ns).
    pub(crate) nak_until: RefCell<BTreeMap<u64, u64>>,
    /// `last_per_subject`: the sequences to deliver first.
    pub(crate) lps: RefCell<VecDeque<u64>>,
    subs: RefCell<Vec<SubRef>>,
    pub(crate) shard: Weak<Shard>,
    pub(crate) deleted: Cell<bool>,
    pub(crate) kicked: Cell<bool>,
    pub(crate) timer: RefCell<Option<(Instant, u64)>>,
    /// Last time a client showed interest (pull request, bound push).
    pub(crate) last_active: Cell<Instant>,
    /// Last delivery (ns), for `last_active` in info.
    pub(crate) last_delivery: Cell<u64>,
    pub(crate) last_ack: Cell<u64>,
    pub(crate) push: RefCell<deliver::PushState>,
    /// `num_pending` kept up to date between recounts.
    pub(crate) pending: Cell<Option<PendingCount>>,
}

/// Matching messages in (`at`, `seen`], valid while the delivered position
/// is `at`. Appends add to it, deliveries take from it, removals reported
/// by the log (`Log::removals_since` from `mark`) take from it; when the
/// log cannot account for every removal (`gone`, see
/// `Log::last_and_count`), the next read counts again.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PendingCount {
    pub at: u64,
    pub seen: u64,
    pub count: u64,
    pub gone: u64,
    pub mark: u64,
}

/// Random 8-character names for ephemerals, as the reference makes.
pub fn new_name() -> String {
    const ALPHA: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    (0..8)
        .map(|_| ALPHA[fastrand::usize(..ALPHA.len())] as char)
        .collect()
}

pub fn consumers_dir(stream_dir: &Path) -> PathBuf {
    stream_dir.join("consumers")
}

impl Consumer {
    pub fn cfg(&self) -> Rc<ConsumerConfig> {
        self.cfg.borrow().clone()
    }

    pub(crate) fn with_cfg<T>(&self, f: impl FnOnce(&ConsumerConfig) -> T) -> T {
        f(&self.cfg.borrow())
    }

    pub(crate) fn filter(&self) -> Filter {
        self.filter.borrow().clone()
    }

    pub fn tracks_acks(&self) -> bool {
        self.with_cfg(|c| c.ack_policy != AckPolicy::None)
    }

    /// Does this consumer's filter take `subject`?
    pub fn wants(&self, subject: &[u8]) -> bool {
        self.filter.borrow().matches(subject)
    }

    /// Creates a consumer on `stream` (new: `restored` is `None`) or
    /// reopens a durable one from its directory.
    pub async fn open(
        stream: &Rc<Stream>,
        shard: &Rc<Shard>,
        cfg: ConsumerConfig,
        created: u64,
        durability: Durability,
        is_new: bool,
    ) -> Result<Rc<Consumer>, ApiError> {
        let memory = stream.cfg().storage == StorageType::Memory || cfg.mem_storage;
        let persist = cfg.is_durable() && !memory;
        let tracks = cfg.ack_policy != AckPolicy::None;
        let name = cfg.name.clone();
        let dir = persist.then(|| consumers_dir(&stream.dir).join(&name));
        let mut journal = None;
        let mut restored = None;
        if let Some(d) = &dir {
            if is_new {
                // A leftover of an earlier consumer with this name.
                let _ = std::fs::remove_dir_all(d);
                std::fs::create_dir_all(d).map_err(ApiError::consumer_create)?;
                let meta = ConsumerMeta {
                    config: cfg.clone(),
                    created,
                };
                save_meta(d, &meta).map_err(ApiError::consumer_create)?;
            }
            let (j, s) = Journal::open(&d.join("journal"), durability, tracks)
                .await
                .map_err(ApiError::consumer_create)?;
            journal = Some(j);
            restored = s;
        }
        let filter = Filter::new(&cfg.filters());
        let c = Rc::new_cyclic(|this| Consumer {
            this: this.clone(),
            ack_prefix: format!("$JS.ACK.{}.{}.", stream.name, name),
            name,
            acc: stream.acc,
            stream: Rc::downgrade(stream),
            stream_name: stream.name.clone(),
            created,
            filter: RefCell::new(filter),
            state: RefCell::new(State::new(tracks)),
            dir,
            journal,
            unsaved: RefCell::new((Vec::new(), Vec::new())),
            saving: Cell::new(false),
            waiting: RefCell::new(pull::Queue::default()),
            redeliver: RefCell::new(BTreeSet::new()),
            nak_until: RefCell::new(BTreeMap::new()),
            lps: RefCell::new(VecDeque::new()),
            subs: RefCell::new(Vec::new()),
            shard: Rc::downgrade(shard),
            deleted: Cell::new(false),
            kicked: Cell::new(false),
            timer: RefCell::new(None),
            last_active: Cell::new(Instant::now()),
            last_delivery: Cell::new(0),
            last_ack: Cell::new(0),
            push: RefCell::new(deliver::PushState::default()),
            pending: Cell::new(None),
            cfg: RefCell::new(Rc::new(cfg)),
        });
        match restored {
            Some(s) => {
                *c.state.borrow_mut() = s;
                // Everything pending is due once its ack wait has passed.
            }
            None => c.position(stream),
        }
        c.subscribe(shard);
        c.kick();
        c.arm_if_idle();
        Ok(c)
    }

    /// Sets the starting point from the deliver policy.
    fn position(&self, stream: &Stream) {
        let (policy, start_seq, start_time) =
            self.with_cfg(|c| (c.deliver_policy, c.opt_start_seq, c.opt_start_time.clone()));
        let st = stream.log.state(false);
        let filter = self.filter();
        let start = match policy {
            DeliverPolicy::All => st.first_seq.max(1),
            DeliverPolicy::New => st.last_seq + 1,
            DeliverPolicy::Last => match stream.log.last_for(&filter) {
                Ok(Some(m)) => m.seq,
                _ => st.last_seq + 1,
            },
            DeliverPolicy::ByStartSequence => start_seq.max(1),
            DeliverPolicy::ByStartTime => start_time
                .as_deref()
                .and_then(super::config::parse_time)
                .and_then(|t| stream.log.seq_for_time(t))
                .unwrap_or(st.last_seq + 1),
            DeliverPolicy::LastPerSubject => {
                let mut seqs: Vec<u64> = Vec::new();
                for (subj, _) in stream.log.subjects(&filter) {
                    let f = Filter::one(&String::from_utf8_lossy(&subj));
                    if let Ok(Some(m)) = stream.log.last_for(&f) {
                        seqs.push(m.seq);
                    }
                }
                seqs.sort_unstable();
                let first = seqs.first().copied().unwrap_or(st.last_seq + 1);
                *self.lps.borrow_mut() = seqs.into();
                first
            }
        };
        let skip_to = start.saturating_sub(1);
        {
            let mut s = self.state.borrow_mut();
            s.skip(skip_to);
            s.ack_floor.stream = skip_to;
        }
        self.record(Event::Skip { sseq: skip_to });
    }

    fn subscribe(self: &Rc<Self>, shard: &Shard) {
        let mut subs = self.subs.borrow_mut();
        let w = Rc::downgrade(self);
        let ack_subject = format!("$JS.ACK.{}.{}.>", self.stream_name, self.name);
        subs.push(shard.subscribe_internal(
            self.acc,
            &ack_subject,
            None,
            Rc::new(move |m| {
                if let Some(c) = w.upgrade() {
                    c.on_ack(m);
                }
            }),
        ));
        // Pull requests (a push consumer answers them with 409).
        let w = Rc::downgrade(self);
        let next = format!(
            "$JS.API.CONSUMER.MSG.NEXT.{}.{}",
            self.stream_name, self.name
        );
        subs.push(shard.subscribe_internal(
            self.acc,
            &next,
            None,
            Rc::new(move |m| {
                if let Some(c) = w.upgrade() {
                    c.on_next(m);
                }
            }),
        ));
        if self.with_cfg(|c| !c.is_pull() && c.flow_control) {
            let w = Rc::downgrade(self);
            let fc = format!("$JS.FC.{}.{}.>", self.stream_name, self.name);
            subs.push(shard.subscribe_internal(
                self.acc,
                &fc,
                None,
                Rc::new(move |m| {
                    if let Some(c) = w.upgrade() {
                        c.on_flow_control(m.subject);
                    }
                }),
            ));
        }
    }

    /// Applies an update (the fields an update may change).
    pub fn update(self: &Rc<Self>, cfg: ConsumerConfig) -> Result<(), ApiError> {
        if let Some(d) = &self.dir {
            save_meta(
                d,
                &ConsumerMeta {
                    config: cfg.clone(),
                    created: self.created,
                },
            )
            .map_err(ApiError::consumer_create)?;
        }
        *self.filter.borrow_mut() = Filter::new(&cfg.filters());
        *self.cfg.borrow_mut() = Rc::new(cfg);
        self.pending.set(None);
        self.kick();
        Ok(())
    }

    /// Stops the consumer; pull requests waiting get 409 Consumer Deleted.
    pub async fn stop(&self, remove_files: bool) {
        if self.deleted.replace(true) {
            return;
        }
        self.timer.borrow_mut().take();
        if let Some(shard) = self.shard.upgrade() {
            for s in self.subs.borrow_mut().drain(..) {
                shard.unsubscribe_internal(&s);
            }
            let waiting: Vec<_> = self.waiting.borrow_mut().q.drain(..).collect();
            let st = pull::status(409, "Consumer Deleted", None);
            for w in waiting {
                shard.publish_internal(self.acc, &w.reply, None, Some(&st), b"");
            }
        }
        if let Some(j) = &self.journal {
            j.close().await;
        }
        if remove_files {
            if let Some(d) = &self.dir {
                let _ = std::fs::remove_dir_all(d);
            }
        }
    }

    /// Records a state change for the journal (durable consumers).
    pub(crate) fn record(&self, e: Event) {
        if self.journal.is_none() {
            return;
        }
        e.encode(&mut self.unsaved.borrow_mut().0);
        self.save_soon();
    }

    /// Resolves once everything recorded so far is durable.
    pub(crate) fn durable(&self) -> Option<futures_channel::oneshot::Receiver<()>> {
        self.journal.as_ref()?;
        let (tx, rx) = futures_channel::oneshot::channel();
        self.unsaved.borrow_mut().1.push(tx);
        self.save_soon();
        Some(rx)
    }

    fn save_soon(&self) {
        if self.saving.replace(true) {
            return;
        }
        let Some(me) = self.this.upgrade() else {
            self.saving.set(false);
            return;
        };
        crate::runtime::spawn_local(async move {
            loop {
                // Let this tick's events gather into one record.
                crate::runtime::yield_now().await;
                let (batch, waiters) = std::mem::take(&mut *me.unsaved.borrow_mut());
                if batch.is_empty() && waiters.is_empty() {
                    break;
                }
                if let Some(j) = &me.journal {
                    if !batch.is_empty() {
                        let snap = || me.state.borrow().encode();
                        if let Err(e) = j.append(batch, snap).await {
                            tracing::error!(
                                "JetStream: consumer {} > {}: saving state failed: {e}",
                                me.stream_name,
                                me.name
                            );
                        }
                    }
                }
                for w in waiters {
                    let _ = w.send(());
                }
            }
            me.saving.set(false);
        })
        .detach();
    }

    /// `ConsumerInfo` as the API answers it.
    pub fn info(&self, stream: &Stream, full: bool) -> Value {
        let cfg = self.cfg();
        let s = self.state.borrow();
        let seqs = |q: state::Seqs, last: u64| {
            let mut v = json!({"consumer_seq": q.consumer, "stream_seq": q.stream});
            if last > 0 {
                v["last_active"] = json!(go_time(last));
            }
            v
        };
        let num_pending = self.num_pending(stream, &s);
        let mut v = json!({
            "stream_name": self.stream_name,
            "name": self.name,
            "created": go_time(self.created),
            "config": if full { cfg.with_dynamic_metadata() } else { (*cfg).clone() },
            "delivered": seqs(s.delivered, self.last_delivery.get()),
            "ack_floor": seqs(s.ack_floor, self.last_ack.get()),
            "num_ack_pending": s.pending.len(),
            "num_redelivered": s.num_redelivered(),
            "num_waiting": self.waiting.borrow().len(),
            "num_pending": num_pending,
        });
        if !cfg.is_pull() && self.push_bound() {
            v["push_bound"] = json!(true);
        }
        if let Some(until) = cfg.paused_until() {
            v["paused"] = json!(true);
            v["pause_remaining"] = json!(until.saturating_sub(now_ns()));
        }
        v["ts"] = json!(go_time(now_ns()));
        v
    }

    /// Messages matching the filter past the delivered position.
    pub fn num_pending(&self, stream: &Stream, s: &State) -> u64 {
        let lps = self.lps.borrow();
        if !lps.is_empty() {
            return lps.len() as u64
                + stream
                    .log
                    .count_from(lps.back().copied().unwrap_or(0) + 1, &self.filter());
        }
        self.sync_removals(stream);
        if let Some(c) = self.pending.get() {
            if c.at == s.delivered.stream {
                return c.count;
            }
        }
        let (last, msgs) = stream.log.last_and_count();
        let mark = stream.log.removal_mark();
        let count = stream
            .log
            .count_from(s.delivered.stream + 1, &self.filter());
        self.pending.set(Some(PendingCount {
            at: s.delivered.stream,
            seen: last,
            count,
            gone: last.saturating_sub(msgs),
            mark,
        }));
        count
    }

    /// Applies the removals the log reports since the count was taken;
    /// drops the count when they do not account for everything removed.
    fn sync_removals(&self, stream: &Stream) {
        let Some(mut c) = self.pending.get() else {
            return;
        };
        let (last, msgs) = stream.log.last_and_count();
        let gone = last.saturating_sub(msgs);
        if gone == c.gone {
            return;
        }
        let (mut n, mut unknown) = (0u64, false);
        let mark = stream.log.removals_since(c.mark, |seq, subject| {
            n += 1;
            match subject {
                None => unknown = true,
                Some(subj) => {
                    if seq > c.at && seq <= c.seen && self.wants(subj) {
                        c.count = c.count.saturating_sub(1);
                    }
                }
            }
        });
        match mark {
            Some(m) if !unknown && gone.checked_sub(c.gone) == Some(n) => {
                c.mark = m;
                c.gone = gone;
                self.pending.set(Some(c));
            }
            _ => self.pending.set(None),
        }
    }

    /// A message was appended to the stream.
    pub fn on_append(&self, stream: &Stream, seq: u64, subject: &[u8]) {
        self.sync_removals(stream);
        if let Some(mut c) = self.pending.get() {
            if seq > c.seen {
                c.seen = seq;
                if self.wants(subject) {
                    c.count += 1;
                }
                self.pending.set(Some(c));
            }
        }
        self.kick();
    }

    /// A new message (`seq`, past the delivered position `before`) was
    /// delivered.
    pub(crate) fn pending_delivered(&self, stream: &Stream, before: u64, seq: u64) {
        self.sync_removals(stream);
        if let Some(mut c) = self.pending.get() {
            if c.at != before {
                self.pending.set(None);
                return;
            }
            if seq <= c.seen {
                c.count = c.count.saturating_sub(1);
            } else {
                // Nothing matched between: next_msg found this one first.
                c.count = 0;
                c.seen = seq;
            }
            c.at = seq;
            self.pending.set(Some(c));
        }
    }
}

pub fn save_meta(dir: &Path, m: &ConsumerMeta) -> std::io::Result<()> {
    let body = serde_json::to_vec_pretty(m).map_err(std::io::Error::other)?;
    super::store::write_atomic(&dir.join("meta.json"), &body).map_err(std::io::Error::other)
}

/// The durable consumers stored under a stream's directory.
pub fn scan(stream_dir: &Path) -> Vec<ConsumerMeta> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(consumers_dir(stream_dir)) else {
        return out;
    };
    for e in rd.flatten() {
        let p = e.path().join("meta.json");
        match std::fs::read(&p)
            .ok()
            .and_then(|b| serde_json::from_slice::<ConsumerMeta>(&b).ok())
        {
            Some(m) => out.push(m),
            None => tracing::warn!(
                "JetStream: consumer metadata {} is missing or unreadable; skipped",
                p.display()
            ),
        }
    }
    out.sort_by(|a, b| a.config.name.cmp(&b.config.name));
    out
}

impl Consumer {
    /// The stream's first sequence moved (purge): what is below it is no
    /// longer pending or due.
    pub fn forget_below(&self, first: u64) {
        let gone: Vec<u64> = self
            .state
            .borrow()
            .pending
            .range(..first)
            .map(|(q, _)| *q)
            .collect();
        self.state.borrow_mut().forget_below(first);
        for q in gone {
            self.record(Event::Ack { sseq: q });
        }
        self.record(Event::Skip {
            sseq: first.saturating_sub(1),
        });
        self.redeliver.borrow_mut().retain(|q| *q >= first);
        self.nak_until.borrow_mut().retain(|q, _| *q >= first);
        self.lps.borrow_mut().retain(|q| *q >= first);
        self.kick();
    }
}
