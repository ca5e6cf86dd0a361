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
//!
//! A `mirror` is the same machinery with one feed (`mirror.rs`): its
//! deliveries are stored at the origin's sequence and time, without a
//! source header, and its last origin sequence is the stream's own last.

mod feed;
pub mod mirror;

use std::cell::{Cell, RefCell};
use std::rc::{Rc, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::config::{now_ns, parse_time, valid_asset_name, ExternalStream, StreamSource};
use super::errors::ApiError;
use super::headers as h;
use super::stream::Stream;
use super::transform::Transform;
use crate::client::SubRef;
use crate::shard::Shard;

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

/// The sources (or the mirror) of one stream, on the stream's shard.
pub struct Sources {
    list: RefCell<Vec<Rc<Source>>>,
    stopped: Cell<bool>,
    /// Feeding a mirror (one feed, `cfg.mirror`), not `sources`.
    pub mirror: bool,
}

pub struct Source {
    pub cfg: StreamSource,
    /// A mirror's feed: origin sequences and times are kept.
    mirror: bool,
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
    /// A mirror's direct-get subscriptions for its origin.
    direct: Vec<SubRef>,
}

fn rand_token() -> String {
    let mut s = super::consumer::new_name();
    s.push_str(&super::consumer::new_name());
    s
}

impl Sources {
    /// Starts feeding `stream` from its configured sources.
    pub fn start(stream: &Rc<Stream>, shard: &Rc<Shard>) -> Rc<Sources> {
        let cfg = stream.cfg();
        let mirror = cfg.mirror.is_some();
        let s = Rc::new(Sources {
            list: RefCell::new(Vec::new()),
            stopped: Cell::new(false),
            mirror,
        });
        let (cfgs, recovered) = match cfg.mirror {
            // A mirror holds the origin's sequences: it goes on after its
            // own last one.
            Some(m) => (vec![m], vec![stream.log.state(false).last_seq]),
            None => {
                let r = recover(stream, &cfg.sources);
                (cfg.sources, r)
            }
        };
        for (c, seq) in cfgs.into_iter().zip(recovered) {
            let src = Source::new(c, stream, seq, mirror);
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
            let src = Source::new(c, stream, seq, false);
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

    /// `sources` of the stream info (or `[mirror]`).
    pub fn info(&self) -> Vec<serde_json::Value> {
        self.list.borrow().iter().map(|s| s.info()).collect()
    }

    /// The mirror's feed.
    pub fn first(&self) -> Option<Rc<Source>> {
        self.list.borrow().first().cloned()
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

/// What a `$JS.ACK` reply says of a delivery.
#[derive(Debug, PartialEq, Eq)]
pub struct Ack {
    pub consumer: String,
    pub delivered: u64,
    pub sseq: u64,
    pub dseq: u64,
    /// The message's time on the origin (ns).
    pub ts: u64,
    pub pending: u64,
}

/// Parses a `$JS.ACK` reply: the 9-token form and the 12-token form with
/// domain and account hash.
pub fn parse_ack(reply: &[u8]) -> Option<Ack> {
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
    Some(Ack {
        consumer: t[off + 1].to_string(),
        delivered: num(2)?,
        sseq: num(3)?,
        dseq: num(4)?,
        ts: num(5)?,
        pending: num(6)?,
    })
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

/// The checks nats-server makes of `sources` on their own (the cycle check
/// needs the other streams: `Meta::source_cycle`).
pub fn check_sources(sources: &[StreamSource]) -> Result<(), ApiError> {
    let mut inames = std::collections::HashSet::new();
    for s in sources {
        if !valid_asset_name(&s.name) {
            return Err(ApiError::new_pub(
                400,
                10141,
                "sourced stream name is invalid",
            ));
        }
        if !inames.insert(s.iname()) {
            return Err(ApiError::new_pub(
                400,
                10140,
                "duplicate source configuration detected",
            ));
        }
        if !s.filter_subject.is_empty() && !s.subject_transforms.is_empty() {
            return Err(ApiError::new_pub(
                400,
                10144,
                "source with multiple subject transforms cannot also have a single subject filter",
            ));
        }
        if !s.filter_subject.is_empty()
            && !crate::subject::is_valid_filter(s.filter_subject.as_bytes())
        {
            return Err(ApiError::new_pub(
                400,
                10145,
                format!(
                    "source transform source: invalid subject {}",
                    s.filter_subject
                ),
            ));
        }
        for t in &s.subject_transforms {
            if !t.src.is_empty() && !crate::subject::is_valid_filter(t.src.as_bytes()) {
                return Err(ApiError::new_pub(
                    400,
                    10145,
                    format!("source transform source: invalid subject {}", t.src),
                ));
            }
            if !t.dest.is_empty() {
                if let Err(e) = crate::jetstream::transform::Transform::new(&t.src, &t.dest) {
                    return Err(ApiError::new_pub(
                        400,
                        10146,
                        format!("source transform: {e}"),
                    ));
                }
            }
        }
        for (i, a) in s.subject_transforms.iter().enumerate() {
            for (j, b) in s.subject_transforms.iter().enumerate() {
                let (a, b) = (or_gt(&a.src), or_gt(&b.src));
                if i != j && crate::subject::matches(b.as_bytes(), a.as_bytes()) {
                    return Err(ApiError::new_pub(
                        400,
                        10147,
                        "source filters can not overlap",
                    ));
                }
            }
        }
        if let Some(t) = &s.opt_start_time {
            if parse_time(t).is_none() {
                return Err(ApiError::invalid_json(format!(
                    "parsing time {t:?} as RFC3339: cannot parse"
                )));
            }
        }
        if let Some(e) = &s.external {
            check_external(e)?;
        }
    }
    Ok(())
}

/// An `external` block's prefixes (sources and mirrors alike).
pub(crate) fn check_external(e: &ExternalStream) -> Result<(), ApiError> {
    if !e.deliver.is_empty() && !crate::subject::is_valid_literal(e.deliver.as_bytes()) {
        return Err(ApiError::new_pub(
            400,
            10024,
            format!(
                "stream external delivery prefix {} must not contain wildcards",
                e.deliver
            ),
        ));
    }
    if !e.api.is_empty() {
        if !crate::subject::is_valid_literal(e.api.as_bytes()) {
            return Err(ApiError::invalid_config(format!(
                "stream external api prefix {:?} must be a valid subject without wildcards",
                e.api
            )));
        }
        if crate::subject::filters_overlap(e.api.as_bytes(), b"$JS.API") {
            return Err(ApiError::new_pub(
                400,
                10021,
                format!(
                    "stream external api prefix {} must not overlap with $JS.API",
                    e.api
                ),
            ));
        }
    }
    Ok(())
}

fn or_gt(s: &str) -> &str {
    if s.is_empty() {
        ">"
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ack_replies_both_forms() {
        let ack = |consumer: &str, delivered, pending| Ack {
            consumer: consumer.into(),
            delivered,
            sseq: 42,
            dseq: 7,
            ts: 1_700_000_000_000_000_000,
            pending,
        };
        let v1 = b"$JS.ACK.ORDERS.C1.1.42.7.1700000000000000000.3";
        assert_eq!(parse_ack(v1), Some(ack("C1", 1, 3)));
        let v2 = b"$JS.ACK.hub.ACCHASH.ORDERS.C1.2.42.7.1700000000000000000.0.xyz";
        assert_eq!(parse_ack(v2), Some(ack("C1", 2, 0)));
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
