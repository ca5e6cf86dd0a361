//! Stream `sources`: a stream that copies the messages of other streams,
//! here or behind a leaf link (`external.api`, a JetStream domain).
//!
//! Each source is fed by a push consumer on the origin stream, created
//! over the wire like any client would (`<api>.CONSUMER.CREATE.<origin>.…`
//! with the reply on an internal inbox), so the origin may be a stream on
//! this server, or on nats-server or Broker Edge across a link. The
//! consumer acks nothing, sends idle heartbeats and flow-control requests,
//! and starts after the last origin sequence this stream holds; every
//! delivery is appended with a `Nats-Stream-Source` header naming the
//! source and the origin sequence (the reference's format). A gap in the
//! consumer sequence, a heartbeat whose `Nats-Last-Consumer` does not
//! match, or silence for `STALE` recreates the consumer from the last
//! origin sequence stored + 1 (with backoff), so a link outage or a
//! restart of either side neither loses nor duplicates. After a restart
//! of this server the last origin sequence of each source is found in the
//! stream itself, scanning the stored headers from the end.

use std::cell::{Cell, RefCell};
use std::rc::{Rc, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::json;

use super::config::{now_ns, StreamSource};
use super::errors::ApiError;
use super::headers as h;
use super::stream::Stream;
use super::transform::Transform;
use crate::client::SubRef;
use crate::shard::sink::Owned;
use crate::shard::{Msg, Shard};

pub const HEADER: &str = "Nats-Stream-Source";
/// The origin consumer's idle heartbeat (the reference's `sourceHealthHB`).
const HEARTBEAT: Duration = Duration::from_secs(1);
/// Silence after which a source is set up again (five missed heartbeats).
const STALE: Duration = Duration::from_secs(5);
/// The origin drops a consumer nobody listens to after this long (the
/// reference's `sourceHealthCheckInterval`).
const INACTIVE: Duration = Duration::from_secs(10);
/// How long a consumer create may take to be answered.
const CREATE_WAIT: Duration = Duration::from_secs(5);
/// Requests for one source at most this often (the reference's 2 s).
const THROTTLE: Duration = Duration::from_secs(2);
/// Backoff per failed attempt, and its cap.
const BACKOFF: Duration = Duration::from_secs(2);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// The sources of one stream, on the stream's shard.
pub struct Sources {
    list: RefCell<Vec<Rc<Source>>>,
    stopped: Cell<bool>,
}

pub struct Source {
    pub cfg: StreamSource,
    iname: String,
    /// The header's fields besides the sequence: name (with the api hash),
    /// filter, destination.
    hdr: (String, String, String),
    transforms: Vec<Transform>,
    stream: Weak<Stream>,
    st: RefCell<State>,
    /// Wall-clock ns of the last delivery or heartbeat (0: never).
    last: Cell<u64>,
}

#[derive(Default)]
struct State {
    /// The last origin sequence taken (appended or on its way).
    sseq: u64,
    /// The last consumer sequence taken.
    dseq: u64,
    /// The consumer feeding us (empty until known).
    cname: String,
    lag: u64,
    err: Option<ApiError>,
    /// Bumped whenever the consumer is abandoned: older deliveries and
    /// answers are ignored.
    gen: u64,
    deliver: Option<SubRef>,
    setting_up: bool,
    scheduled: bool,
    fails: u32,
    last_req: Option<Instant>,
    stopped: bool,
    /// Appends on their way, and a flow-control reply held until they
    /// are done.
    inflight: u64,
    fc_reply: Option<Bytes>,
}

fn rand_token() -> String {
    let mut s = super::consumer::new_name();
    s.push_str(&super::consumer::new_name());
    s
}

impl Sources {
    /// Starts feeding `stream` from its configured sources.
    pub fn start(stream: &Rc<Stream>, shard: &Rc<Shard>) -> Rc<Sources> {
        let s = Rc::new(Sources {
            list: RefCell::new(Vec::new()),
            stopped: Cell::new(false),
        });
        let cfgs = stream.cfg().sources;
        let recovered = recover(stream, &cfgs);
        for (c, seq) in cfgs.into_iter().zip(recovered) {
            let src = Source::new(c, stream, seq);
            src.schedule(shard, Duration::ZERO);
            s.list.borrow_mut().push(src);
        }
        let w = Rc::downgrade(&s);
        let shard_w = Rc::downgrade(shard);
        crate::runtime::spawn_local(async move {
            loop {
                crate::runtime::sleep(HEARTBEAT).await;
                let (Some(s), Some(shard)) = (w.upgrade(), shard_w.upgrade()) else {
                    return;
                };
                if s.stopped.get() {
                    return;
                }
                s.health(&shard);
            }
        })
        .detach();
        s
    }

    /// Sources silent for too long are set up again.
    fn health(&self, shard: &Rc<Shard>) {
        let now = now_ns();
        let list: Vec<Rc<Source>> = self.list.borrow().clone();
        for src in list {
            let stale = {
                let st = src.st.borrow();
                !st.stopped
                    && !st.setting_up
                    && !st.scheduled
                    && now.saturating_sub(src.last.get()) > STALE.as_nanos() as u64
            };
            if stale {
                tracing::debug!(
                    "JetStream: source {} of stream {} is stale, setting it up again",
                    src.cfg.name,
                    src.stream_name()
                );
                src.retry(shard);
            }
        }
    }

    /// The config changed: sources no longer listed stop, new ones start.
    pub fn reconcile(&self, stream: &Rc<Stream>, shard: &Rc<Shard>, cfgs: &[StreamSource]) {
        let mut list = self.list.borrow_mut();
        let keep: Vec<String> = cfgs.iter().map(|c| c.iname()).collect();
        list.retain(|s| {
            let on = keep.contains(&s.iname);
            if !on {
                s.stop(shard);
            }
            on
        });
        let new: Vec<StreamSource> = cfgs
            .iter()
            .filter(|c| !list.iter().any(|s| s.iname == c.iname()))
            .cloned()
            .collect();
        if new.is_empty() {
            return;
        }
        let recovered = recover(stream, &new);
        for (c, seq) in new.into_iter().zip(recovered) {
            let src = Source::new(c, stream, seq);
            src.schedule(shard, Duration::ZERO);
            list.push(src);
        }
    }

    /// Stops every source and deletes their consumers on the origins.
    pub fn stop(&self, shard: &Rc<Shard>) {
        self.stopped.set(true);
        for s in self.list.borrow_mut().drain(..) {
            s.stop(shard);
        }
    }

    /// `sources` of the stream info.
    pub fn info(&self) -> Vec<serde_json::Value> {
        self.list.borrow().iter().map(|s| s.info()).collect()
    }
}

/// The last origin sequence stored for each source (0: none), from the
/// `Nats-Stream-Source` headers, newest first.
fn recover(stream: &Stream, cfgs: &[StreamSource]) -> Vec<u64> {
    let mut found = vec![0u64; cfgs.len()];
    if cfgs.is_empty() {
        return found;
    }
    let inames: Vec<String> = cfgs.iter().map(|c| c.iname()).collect();
    let state = stream.log.state(false);
    if state.msgs == 0 {
        return found;
    }
    let mut left = cfgs.len();
    let mut seq = state.last_seq;
    while seq >= state.first_seq.max(1) && left > 0 {
        if let Ok(m) = stream.log.get(seq) {
            if let Some((iname, sseq)) = h::get(&m.headers, HEADER).and_then(parse_header) {
                for (i, n) in inames.iter().enumerate() {
                    if found[i] == 0 && *n == iname {
                        found[i] = sseq;
                        left -= 1;
                    }
                }
            }
        }
        seq -= 1;
    }
    found
}

/// `<name> <seq> <filter> <dest> <subject> [<ident>]` → (index name, seq).
pub fn parse_header(v: &str) -> Option<(String, u64)> {
    let f: Vec<&str> = v.split(' ').collect();
    if f.len() < 4 {
        return None;
    }
    let seq = f[1].parse().ok()?;
    Some((format!("{} {} {}", f[0], f[2], f[3]), seq))
}

/// What a `$JS.ACK` reply says: (consumer, delivered count, stream
/// sequence, consumer sequence, pending). Both the 9-token form and the
/// 12-token form with domain and account hash.
pub fn parse_ack(reply: &[u8]) -> Option<(String, u64, u64, u64, u64)> {
    let s = std::str::from_utf8(reply).ok()?;
    let t: Vec<&str> = s.split('.').collect();
    if t.len() < 9 || t[0] != "$JS" || t[1] != "ACK" {
        return None;
    }
    let off = match t.len() {
        9 => 2,
        n if n >= 11 => 4,
        _ => return None,
    };
    let num = |i: usize| t[off + i].parse::<u64>().ok();
    Some((t[off + 1].to_string(), num(2)?, num(3)?, num(4)?, num(6)?))
}

/// `headers` without the source header, `Nats-Expected-*` and
/// `Nats-Batch-*`, plus `Nats-Stream-Source: value`.
fn source_headers(headers: &[u8], value: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(headers.len() + value.len() + 32);
    let text = std::str::from_utf8(headers).unwrap_or("");
    let mut lines = text.split("\r\n");
    match lines.next() {
        Some(first) if first.starts_with("NATS/1.0") => {
            out.extend_from_slice(first.as_bytes());
        }
        _ => out.extend_from_slice(b"NATS/1.0"),
    }
    out.extend_from_slice(b"\r\n");
    for line in lines {
        if line.is_empty() {
            continue;
        }
        let key = line.split_once(':').map_or(line, |(k, _)| k).trim();
        if key == HEADER || key.starts_with("Nats-Expected-") || key.starts_with("Nats-Batch-") {
            continue;
        }
        out.extend_from_slice(line.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(HEADER.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value.as_bytes());
    out.extend_from_slice(b"\r\n\r\n");
    out
}

impl Source {
    fn new(cfg: StreamSource, stream: &Rc<Stream>, sseq: u64) -> Rc<Source> {
        let iname = cfg.iname();
        let mut parts = iname.splitn(3, ' ').map(str::to_string);
        let hdr = (
            parts.next().unwrap_or_default(),
            parts.next().unwrap_or_default(),
            parts.next().unwrap_or_default(),
        );
        let transforms = cfg
            .subject_transforms
            .iter()
            .filter(|t| !t.dest.is_empty())
            .filter_map(|t| Transform::new(&t.src, &t.dest).ok())
            .collect();
        Rc::new(Source {
            cfg,
            iname,
            hdr,
            transforms,
            stream: Rc::downgrade(stream),
            st: RefCell::new(State {
                sseq,
                ..State::default()
            }),
            last: Cell::new(0),
        })
    }

    fn stream_name(&self) -> String {
        self.stream
            .upgrade()
            .map(|s| s.name.clone())
            .unwrap_or_default()
    }

    fn info(&self) -> serde_json::Value {
        let st = self.st.borrow();
        let last = self.last.get();
        let active: i64 = if last == 0 {
            -1
        } else {
            now_ns().saturating_sub(last) as i64
        };
        let mut v = json!({"name": self.cfg.name});
        if let Some(e) = &self.cfg.external {
            v["external"] = json!({"api": e.api, "deliver": e.deliver});
        }
        v["lag"] = json!(st.lag);
        if st.sseq > 0 {
            v["seq"] = json!(st.sseq);
        }
        v["active"] = json!(active);
        if let Some(e) = &st.err {
            v["error"] = json!(e);
        }
        if !self.cfg.filter_subject.is_empty() {
            v["filter_subject"] = json!(self.cfg.filter_subject);
        }
        if !self.cfg.subject_transforms.is_empty() {
            v["subject_transforms"] = json!(self.cfg.subject_transforms);
        }
        v
    }

    /// Abandons the current consumer (its deliveries are ignored from now
    /// on) and schedules a new one from the last sequence taken + 1.
    fn retry(self: &Rc<Self>, shard: &Rc<Shard>) {
        self.cancel(shard);
        self.schedule(shard, Duration::ZERO);
    }

    /// Forgets the consumer; its subscription goes from a task (this may
    /// run inside a delivery to it).
    fn cancel(&self, shard: &Rc<Shard>) {
        let mut st = self.st.borrow_mut();
        st.gen += 1;
        st.cname.clear();
        st.dseq = 0;
        if let Some(s) = st.deliver.take() {
            let shard = shard.clone();
            crate::runtime::spawn_local(async move { shard.remove_sub(&s) }).detach();
        }
    }

    /// Sets the consumer up after the throttle, the backoff and `extra`.
    fn schedule(self: &Rc<Self>, shard: &Rc<Shard>, extra: Duration) {
        let delay = {
            let mut st = self.st.borrow_mut();
            if st.stopped || st.scheduled || st.setting_up {
                return;
            }
            st.scheduled = true;
            let mut d = extra;
            if let Some(at) = st.last_req {
                d += THROTTLE.saturating_sub(at.elapsed());
                if st.fails > 0 {
                    d += (BACKOFF * st.fails).min(BACKOFF_MAX);
                }
            }
            d + Duration::from_millis(fastrand::u64(20..120))
        };
        let me = self.clone();
        let shard = shard.clone();
        crate::runtime::spawn_local(async move {
            crate::runtime::sleep(delay).await;
            me.st.borrow_mut().scheduled = false;
            me.setup(&shard).await;
        })
        .detach();
    }

    /// One attempt at creating the origin consumer.
    async fn setup(self: &Rc<Self>, shard: &Rc<Shard>) {
        let Some(stream) = self.stream.upgrade() else {
            return;
        };
        let acc = stream.acc;
        let (gen, start) = {
            let mut st = self.st.borrow_mut();
            if st.stopped || st.setting_up {
                return;
            }
            st.setting_up = true;
            st.last_req = Some(Instant::now());
            (st.gen, st.sseq + 1)
        };
        self.cancel(shard);
        let gen = gen + 1;
        let deliver = match self.cfg.external.as_ref().map(|e| e.deliver.as_str()) {
            Some(p) if !p.is_empty() => format!("{p}.S.{}", rand_token()).replace("..", "."),
            _ => format!("$JS.S.{}", rand_token()),
        };
        // Deliveries are taken from the start: a consumer that delivered
        // before our interest reached it shows as a gap (retried).
        let w = Rc::downgrade(self);
        let sw = Rc::downgrade(shard);
        let sub = shard.subscribe_internal(
            acc,
            &deliver,
            None,
            Rc::new(move |m: &Msg| {
                if let (Some(src), Some(shard)) = (w.upgrade(), sw.upgrade()) {
                    src.on_deliver(&shard, gen, m);
                }
            }),
        );
        self.st.borrow_mut().deliver = Some(sub);
        let name = format!(
            "JS_SRC_{}_{}",
            super::config::short_hash(&format!("{} {}", stream.name, self.iname)),
            &rand_token()[..8]
        );
        let mut config = json!({
            "name": name,
            "deliver_subject": deliver,
            "ack_policy": "none",
            "ack_wait": 22 * 3600 * 1_000_000_000i64,
            "max_deliver": 1,
            "idle_heartbeat": HEARTBEAT.as_nanos() as i64,
            "flow_control": true,
            "direct": true,
            "inactive_threshold": INACTIVE.as_nanos() as i64,
            "num_replicas": 1,
            "mem_storage": true,
        });
        let mut md = serde_json::Map::new();
        md.insert("_nats.src.stream".into(), json!(stream.name));
        md.insert("_nats.src.acc".into(), json!(shard.g.accounts.name(acc)));
        if let Some(d) = &shard.g.opts.jetstream_domain {
            md.insert("_nats.src.domain".into(), json!(d));
        }
        config["metadata"] = serde_json::Value::Object(md);
        if start > 1 {
            config["deliver_policy"] = json!("by_start_sequence");
            config["opt_start_seq"] = json!(start);
        } else if self.cfg.opt_start_seq > 0 {
            config["deliver_policy"] = json!("by_start_sequence");
            config["opt_start_seq"] = json!(self.cfg.opt_start_seq);
        } else if let Some(t) = &self.cfg.opt_start_time {
            config["deliver_policy"] = json!("by_start_time");
            config["opt_start_time"] = json!(t);
        } else {
            config["deliver_policy"] = json!("all");
        }
        let mut filter = self.cfg.filter_subject.clone();
        let srcs: Vec<String> = self
            .cfg
            .subject_transforms
            .iter()
            .map(|t| {
                if t.src.is_empty() {
                    ">".into()
                } else {
                    t.src.clone()
                }
            })
            .collect();
        if filter.is_empty() && srcs.len() == 1 {
            filter = srcs[0].clone();
        } else if srcs.len() > 1 {
            config["filter_subjects"] = json!(srcs);
        }
        if !filter.is_empty() {
            config["filter_subject"] = json!(filter);
        }
        let prefix = self.cfg.api_prefix();
        let mut subject = format!("{prefix}.CONSUMER.CREATE.{}.{name}", self.cfg.name);
        if !filter.is_empty() {
            subject.push('.');
            subject.push_str(&filter);
        }
        let subject = subject.replace("..", ".");
        let body = json!({"stream_name": self.cfg.name, "config": config}).to_string();
        let reply = format!("$JSC.R.{}", rand_token());
        let (tx, rx) = futures_channel::oneshot::channel::<Bytes>();
        let tx = RefCell::new(Some(tx));
        let rsub = shard.subscribe_internal(
            acc,
            &reply,
            None,
            Rc::new(move |m: &Msg| {
                if let Some(tx) = tx.borrow_mut().take() {
                    let _ = tx.send(Owned::of(m).payload);
                }
            }),
        );
        // Every shard knows of the inbox and the deliver subject before
        // the request leaves.
        if let Some(b) = shard.barrier() {
            b.wait().await;
        }
        let answer = if shard.has_interest(acc, subject.as_bytes()) {
            shard.publish_internal(
                acc,
                subject.as_bytes(),
                Some(reply.as_bytes()),
                None,
                body.as_bytes(),
            );
            crate::runtime::timeout(CREATE_WAIT, rx)
                .await
                .and_then(|r| r.ok())
        } else {
            None
        };
        shard.remove_sub(&rsub);
        let outcome = match answer {
            None => Err(ApiError::new_pub(
                500,
                10045,
                if shard.has_interest(acc, subject.as_bytes()) {
                    "consumer create timed out".to_string()
                } else {
                    format!("no responders for {prefix}")
                },
            )),
            Some(b) => match serde_json::from_slice::<serde_json::Value>(&b) {
                Ok(v) if v.get("error").is_some() => {
                    Err(serde_json::from_value::<ApiError>(v["error"].clone())
                        .unwrap_or_else(|_| ApiError::new_pub(500, 10045, v["error"].to_string())))
                }
                Ok(v) => Ok(v),
                Err(e) => Err(ApiError::new_pub(500, 10045, e.to_string())),
            },
        };
        let retry = {
            let mut st = self.st.borrow_mut();
            st.setting_up = false;
            if st.stopped || st.gen != gen {
                // Stopped or abandoned meanwhile (a delivery saw a gap).
                let abandoned = !st.stopped;
                drop(st);
                if let Ok(v) = &outcome {
                    self.delete_consumer(shard, acc, v["name"].as_str().unwrap_or(&name));
                }
                if abandoned {
                    self.schedule(shard, Duration::ZERO);
                }
                return;
            }
            match outcome {
                Ok(v) => {
                    st.fails = 0;
                    st.err = None;
                    if let Some(n) = v["name"].as_str() {
                        if st.cname.is_empty() {
                            st.cname = n.to_string();
                        }
                    }
                    self.last.set(now_ns());
                    false
                }
                Err(e) => {
                    tracing::warn!(
                        "JetStream: stream {} could not create the consumer for source {}: {e}",
                        stream.name,
                        self.cfg.name
                    );
                    st.err = Some(e);
                    st.fails += 1;
                    true
                }
            }
        };
        if retry {
            self.cancel(shard);
            self.schedule(shard, Duration::ZERO);
        }
    }

    /// A delivery, heartbeat or flow-control request from the consumer.
    fn on_deliver(self: &Rc<Self>, shard: &Rc<Shard>, gen: u64, m: &Msg) {
        let Some(stream) = self.stream.upgrade() else {
            return;
        };
        {
            let st = self.st.borrow();
            if st.stopped || st.gen != gen {
                return;
            }
        }
        let o = Owned::of(m);
        let control = o.payload.is_empty() && o.headers.starts_with(b"NATS/1.0 100");
        if control {
            self.last.set(now_ns());
            if let Some(reply) = o.reply {
                // Flow control: answered once what came before is stored.
                let mut st = self.st.borrow_mut();
                if st.inflight == 0 {
                    drop(st);
                    shard.publish_internal(stream.acc, &reply, None, None, b"");
                } else {
                    st.fc_reply = Some(reply);
                }
                return;
            }
            let last = h::get(&o.headers, "Nats-Last-Consumer").and_then(|v| v.parse::<u64>().ok());
            let dseq = self.st.borrow().dseq;
            if let Some(l) = last.filter(|l| *l > 0) {
                if l != dseq {
                    // We missed deliveries.
                    self.retry(shard);
                    return;
                }
            }
            if let Some(fc) = h::get(&o.headers, "Nats-Consumer-Stalled") {
                shard.publish_internal(stream.acc, fc.as_bytes(), None, None, b"");
            }
            return;
        }
        let Some(reply) = o.reply.as_ref() else {
            return;
        };
        let Some((cname, dc, sseq, dseq, pending)) = parse_ack(reply) else {
            return;
        };
        self.last.set(now_ns());
        if dc > 1 {
            return;
        }
        {
            let mut st = self.st.borrow_mut();
            if !st.cname.is_empty() && st.cname != cname {
                return;
            }
            if sseq <= st.sseq {
                // Already taken (a consumer recreated from further back).
                if dseq == st.dseq + 1 {
                    st.dseq += 1;
                    if st.cname.is_empty() {
                        st.cname = cname;
                    }
                }
                return;
            }
            if dseq != st.dseq + 1 {
                drop(st);
                self.retry(shard);
                return;
            }
            st.dseq = dseq;
            st.sseq = sseq;
            if st.cname.is_empty() {
                st.cname = cname;
            }
            st.lag = pending.saturating_sub(1);
            st.inflight += 1;
        }
        let shown = m.shown.unwrap_or(m.subject);
        let orig = String::from_utf8_lossy(shown).into_owned();
        let value = format!("{} {sseq} {} {} {orig}", self.hdr.0, self.hdr.1, self.hdr.2);
        let headers = source_headers(&o.headers, &value);
        let subject = self
            .transforms
            .iter()
            .find_map(|t| t.apply(&orig))
            .unwrap_or(orig);
        let msg = Owned {
            subject: Bytes::from(subject),
            reply: None,
            headers: Bytes::from(headers),
            payload: o.payload,
        };
        let me = Rc::downgrade(self);
        let sw = Rc::downgrade(shard);
        stream.ingest_with(
            msg,
            Some(Box::new(move |r: Result<u64, ApiError>| {
                let (Some(me), Some(shard)) = (me.upgrade(), sw.upgrade()) else {
                    return;
                };
                me.appended(&shard, sseq, r);
            })),
        );
    }

    /// An append of origin sequence `sseq` finished.
    fn appended(self: &Rc<Self>, shard: &Rc<Shard>, sseq: u64, r: Result<u64, ApiError>) {
        let fc = {
            let mut st = self.st.borrow_mut();
            st.inflight = st.inflight.saturating_sub(1);
            if st.inflight == 0 {
                st.fc_reply.take()
            } else {
                None
            }
        };
        let acc = self.stream.upgrade().map(|s| s.acc);
        if let (Some(fc), Some(acc)) = (&fc, acc) {
            shard.publish_internal(acc, fc, None, None, b"");
        }
        if let Err(e) = r {
            tracing::warn!(
                "JetStream: stream {} could not store message {sseq} of source {}: {e}",
                self.stream_name(),
                self.cfg.name
            );
            {
                let mut st = self.st.borrow_mut();
                if st.stopped {
                    return;
                }
                // Take it again from the message that failed.
                if st.sseq >= sseq {
                    st.sseq = sseq - 1;
                }
                st.err = Some(e);
                st.fails += 1;
            }
            self.retry(shard);
        }
    }

    fn stop(&self, shard: &Rc<Shard>) {
        let (cname, acc) = {
            let mut st = self.st.borrow_mut();
            st.stopped = true;
            (
                std::mem::take(&mut st.cname),
                self.stream.upgrade().map(|s| s.acc),
            )
        };
        self.cancel(shard);
        if let (false, Some(acc)) = (cname.is_empty(), acc) {
            self.delete_consumer(shard, acc, &cname);
        }
    }

    /// Best effort: asks the origin to delete consumer `cname`.
    fn delete_consumer(&self, shard: &Rc<Shard>, acc: u32, cname: &str) {
        let subject = format!(
            "{}.CONSUMER.DELETE.{}.{cname}",
            self.cfg.api_prefix(),
            self.cfg.name
        )
        .replace("..", ".");
        let shard = shard.clone();
        crate::runtime::spawn_local(async move {
            let reply = format!("$JSC.R.{}", rand_token());
            let sub = shard.subscribe_internal(acc, &reply, None, Rc::new(|_m: &Msg| {}));
            if let Some(b) = shard.barrier() {
                b.wait().await;
            }
            shard.publish_internal(acc, subject.as_bytes(), Some(reply.as_bytes()), None, b"");
            crate::runtime::sleep(Duration::from_secs(2)).await;
            shard.remove_sub(&sub);
        })
        .detach();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ack_replies_both_forms() {
        let v1 = b"$JS.ACK.ORDERS.C1.1.42.7.1700000000000000000.3";
        assert_eq!(parse_ack(v1), Some(("C1".into(), 1, 42, 7, 3)));
        let v2 = b"$JS.ACK.hub.ACCHASH.ORDERS.C1.2.42.7.1700000000000000000.0.xyz";
        assert_eq!(parse_ack(v2), Some(("C1".into(), 2, 42, 7, 0)));
        assert_eq!(parse_ack(b"$JS.ACK.A.B"), None);
        assert_eq!(parse_ack(b"_INBOX.x"), None);
    }

    #[test]
    fn headers_and_index_names() {
        let h = source_headers(
            b"NATS/1.0\r\nNats-Msg-Id: a\r\nNats-Expected-Stream: X\r\nNats-Stream-Source: old 1 > > x\r\n\r\n",
            "ORDERS 5 orders.> > orders.new",
        );
        let s = String::from_utf8(h).unwrap();
        assert_eq!(
            s,
            "NATS/1.0\r\nNats-Msg-Id: a\r\nNats-Stream-Source: ORDERS 5 orders.> > orders.new\r\n\r\n"
        );
        let h = source_headers(b"", "A 1 > > a");
        assert_eq!(h, b"NATS/1.0\r\nNats-Stream-Source: A 1 > > a\r\n\r\n");
        assert_eq!(
            parse_header("ORDERS 5 orders.> > orders.new"),
            Some(("ORDERS orders.> >".into(), 5))
        );
        let src = StreamSource {
            name: "ORDERS".into(),
            filter_subject: "orders.>".into(),
            ..Default::default()
        };
        assert_eq!(src.iname(), "ORDERS orders.> >");
    }
}
