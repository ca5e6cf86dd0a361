//! The consumer that feeds one source or a mirror: set up on the origin
//! over the wire, deliveries taken in consumer-sequence order, set up
//! again from the last origin sequence taken after a gap, silence or a
//! failed append (see `mod.rs`).

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::json;

use super::{
    parse_ack, rand_token, source_headers, Source, State, BACKOFF, BACKOFF_MAX, CREATE_WAIT,
    HEARTBEAT, INACTIVE, THROTTLE,
};
use crate::jetstream::config::{now_ns, StreamSource};
use crate::jetstream::errors::ApiError;
use crate::jetstream::headers as h;
use crate::jetstream::stream::Stream;
use crate::jetstream::transform::Transform;
use crate::shard::sink::Owned;
use crate::shard::{Msg, Shard};

impl Source {
    /// The subject a message is stored under: the first of the source's
    /// transforms that applies, else its own.
    pub(super) fn stored_subject(&self, orig: String) -> Bytes {
        let s = self
            .transforms
            .iter()
            .find_map(|t| t.apply(&orig))
            .unwrap_or(orig);
        Bytes::from(s)
    }

    pub(super) fn new(
        cfg: StreamSource,
        stream: &Rc<Stream>,
        sseq: u64,
        mirror: bool,
    ) -> Rc<Source> {
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
            mirror,
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

    pub(super) fn stream_name(&self) -> String {
        self.stream
            .upgrade()
            .map(|s| s.name.clone())
            .unwrap_or_default()
    }

    pub(super) fn info(&self) -> serde_json::Value {
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
        if st.sseq > 0 && !self.mirror {
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
    pub(super) fn retry(self: &Rc<Self>, shard: &Rc<Shard>) {
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
    pub(super) fn schedule(self: &Rc<Self>, shard: &Rc<Shard>, extra: Duration) {
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
            crate::jetstream::config::short_hash(&format!("{} {}", stream.name, self.iname)),
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
        let Some(ack) = parse_ack(reply) else {
            return;
        };
        let (cname, dc, sseq, dseq, pending) =
            (ack.consumer, ack.delivered, ack.sseq, ack.dseq, ack.pending);
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
            // A mirror takes a jump in origin sequences with the next
            // consumer sequence as the origin's gap (deleted, purged,
            // filtered out): it stays a gap here.
            st.lag = pending.saturating_sub(1);
            st.inflight += 1;
        }
        let shown = m.shown.unwrap_or(m.subject);
        let orig = String::from_utf8_lossy(shown).into_owned();
        if self.mirror {
            self.mirror_store(shard, &stream, orig, o, (sseq, ack.ts), pending);
            return;
        }
        let value = format!("{} {sseq} {} {} {orig}", self.hdr.0, self.hdr.1, self.hdr.2);
        let headers = source_headers(&o.headers, &value);
        let msg = Owned {
            subject: self.stored_subject(orig),
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
    pub(super) fn appended(
        self: &Rc<Self>,
        shard: &Rc<Shard>,
        sseq: u64,
        r: Result<u64, ApiError>,
    ) {
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
                // Take it again from the message that failed (a mirror:
                // from its last stored, as the reference does when its
                // sequence no longer fits).
                if st.sseq >= sseq {
                    st.sseq = sseq - 1;
                }
                if self.mirror {
                    if let Some(s) = self.stream.upgrade() {
                        st.sseq = st.sseq.max(s.log.state(false).last_seq);
                    }
                }
                st.err = Some(e);
                st.fails += 1;
            }
            self.retry(shard);
        }
    }

    pub(super) fn stop(&self, shard: &Rc<Shard>) {
        let (cname, acc) = {
            let mut st = self.st.borrow_mut();
            st.stopped = true;
            (
                std::mem::take(&mut st.cname),
                self.stream.upgrade().map(|s| s.acc),
            )
        };
        self.cancel(shard);
        self.direct_off(shard);
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
