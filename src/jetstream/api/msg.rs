//! `$JS.API.STREAM.MSG.GET|DELETE` and `$JS.API.DIRECT.GET`, on the
//! owning shard. Direct get answers with the stored message itself (its
//! payload `Bytes` slices the log's mapping; no copy until the reply).

use base64::Engine;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{json, Value};

use super::typed;
use crate::jetstream::config::go_time;
use crate::jetstream::errors::ApiError;
use crate::jetstream::headers;
use crate::jetstream::stream::Stream;
use broker_edge_storage::{Filter, StoredMsg};

const GET: &str = "stream_msg_get_response";
const DELETE: &str = "stream_msg_delete_response";

#[derive(Deserialize, Default)]
struct GetReq {
    #[serde(default)]
    seq: u64,
    #[serde(default)]
    last_by_subj: Option<String>,
    #[serde(default)]
    next_by_subj: Option<String>,
    #[serde(default)]
    start_time: Option<String>,
    #[serde(default)]
    batch: i64,
    #[serde(default)]
    max_bytes: i64,
    #[serde(default)]
    multi_last: Option<Vec<String>>,
    #[serde(default)]
    no_hdr: bool,
}

impl GetReq {
    fn conflicting(&self) -> bool {
        let last = self.last_by_subj.as_deref().is_some_and(|s| !s.is_empty());
        let next = self.next_by_subj.as_deref().is_some_and(|s| !s.is_empty());
        let time = self.start_time.is_some();
        let seq = self.seq > 0;
        let options = [seq && last, seq && time, time && last, last && next];
        options.contains(&true) || !(seq || last || next || time)
    }
}

/// Finds the message a get request names.
fn lookup(st: &Stream, r: &GetReq) -> Option<StoredMsg> {
    if let Some(s) = r.last_by_subj.as_deref().filter(|s| !s.is_empty()) {
        return st.log.last_for(&Filter::one(s)).ok().flatten();
    }
    let mut from = r.seq;
    if let Some(t) = &r.start_time {
        let ns = crate::jetstream::config::parse_time(t)?;
        from = st.log.seq_for_time(ns)?;
    }
    if let Some(s) = r.next_by_subj.as_deref().filter(|s| !s.is_empty()) {
        return st.log.next_msg(from.max(1), &Filter::one(s)).ok().flatten();
    }
    if r.start_time.is_some() {
        return st.log.next_msg(from, &Filter::all()).ok().flatten();
    }
    st.log.get(from).ok()
}

pub fn get(st: &Stream, body: &Bytes) -> Value {
    let fail = |e: ApiError| typed(GET, json!({ "error": e }));
    let b = body.trim_ascii();
    if b.is_empty() {
        return fail(ApiError::bad_request());
    }
    let r: GetReq = match serde_json::from_slice(b) {
        Ok(r) => r,
        Err(e) => return fail(ApiError::invalid_json(e)),
    };
    if r.batch != 0 || r.max_bytes != 0 || r.multi_last.is_some() || r.conflicting() {
        return fail(ApiError::bad_request());
    }
    let Some(m) = lookup(st, &r) else {
        return fail(ApiError::no_message_found());
    };
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut msg = json!({
        "subject": String::from_utf8_lossy(&m.subject),
        "seq": m.seq,
        "time": go_time(m.ts),
    });
    if !m.headers.is_empty() {
        msg["hdrs"] = json!(b64.encode(&m.headers));
    }
    if !m.payload.is_empty() {
        msg["data"] = json!(b64.encode(&m.payload));
    }
    typed(GET, json!({ "message": msg }))
}

#[derive(Deserialize, Default)]
struct DeleteReq {
    #[serde(default)]
    seq: u64,
    #[serde(default)]
    no_erase: bool,
}

pub async fn delete(st: &Stream, body: &Bytes) -> Value {
    let fail = |e: ApiError| typed(DELETE, json!({ "error": e }));
    let b = body.trim_ascii();
    if b.is_empty() {
        return fail(ApiError::bad_request());
    }
    let r: DeleteReq = match serde_json::from_slice(b) {
        Ok(r) => r,
        Err(e) => return fail(ApiError::invalid_json(e)),
    };
    if r.seq == 0 {
        return fail(ApiError::bad_request());
    }
    let cfg = st.cfg();
    if cfg.sealed {
        return fail(ApiError::sealed());
    }
    if cfg.deny_delete {
        return fail(ApiError::msg_delete_failed("message delete not permitted"));
    }
    if r.seq > st.log.state(false).last_seq {
        return fail(ApiError::msg_delete_failed("stream store EOF"));
    }
    match st.log.delete(r.seq, !r.no_erase).await {
        Ok(true) => {
            st.report_usage();
            typed(DELETE, json!({ "success": true }))
        }
        Ok(false) => fail(ApiError::sequence_not_found(r.seq)),
        Err(e) => fail(ApiError::msg_delete_failed(e)),
    }
}

/// Messages of a direct-get answer, in order: (header block, payload).
pub type Replies = Vec<(Vec<u8>, Bytes)>;

/// Bytes a direct-get batch may carry (nats-server's default max_pending).
const BATCH_MAX_BYTES: usize = 64 << 20;

/// Most messages a multi-last request may answer with.
const MULTI_LAST_MAX: usize = 1024;

/// `$JS.API.DIRECT.GET.<stream>[.<subject>]`: the message(s) with the
/// stream headers, or a status. `None`: the stream does not serve direct
/// gets (no responder, as with the reference). Batches (`batch`) and
/// `multi_last` end with a `204 EOB` status.
pub fn direct(st: &Stream, subject: &str, body: &Bytes) -> Option<Replies> {
    // Addressed to this stream (`allow_direct`), or to the origin of
    // this mirror (`mirror_direct`).
    let name = {
        let m = st.meta.borrow();
        let c = &m.config;
        let addressed = |n: &str| {
            subject
                .strip_prefix("$JS.API.DIRECT.GET.")
                .and_then(|r| r.strip_prefix(n))
                .is_some_and(|r| r.is_empty() || r.starts_with('.'))
        };
        match &c.mirror {
            _ if c.allow_direct && addressed(&st.name) => st.name.clone(),
            Some(o) if c.mirror_direct && addressed(&o.name) => o.name.clone(),
            _ => return None,
        }
    };
    let status = |s: &str| Some(vec![(headers::build(Some(s), &[]), Bytes::new())]);
    let prefix = format!("$JS.API.DIRECT.GET.{name}");
    let key = subject
        .strip_prefix(&prefix)
        .and_then(|r| r.strip_prefix('.'))
        .filter(|r| !r.is_empty());
    let b = body.trim_ascii();
    let mut r: GetReq = if b.is_empty() {
        GetReq::default()
    } else {
        match serde_json::from_slice(b) {
            Ok(r) => r,
            Err(_) => return status("408 Malformed Request"),
        }
    };
    match key {
        Some(k) => {
            if r.seq > 0
                || r.last_by_subj.is_some()
                || r.next_by_subj.is_some()
                || r.batch > 0
                || r.start_time.is_some()
                || r.multi_last.is_some()
            {
                return status("408 Bad Request");
            }
            r.last_by_subj = Some(k.to_string());
        }
        None => {
            if b.is_empty() {
                return status("408 Empty Request");
            }
            if let Some(filters) = r.multi_last.take() {
                let last = r.last_by_subj.as_deref().is_some_and(|s| !s.is_empty());
                if last || r.next_by_subj.is_some() {
                    return status("408 Bad Request");
                }
                return Some(multi_last(st, &filters, r.no_hdr));
            }
            if r.conflicting() {
                let none = r.seq == 0
                    && r.last_by_subj.is_none()
                    && r.next_by_subj.is_none()
                    && r.start_time.is_none();
                return status(if none {
                    "408 Empty Request"
                } else {
                    "408 Bad Request"
                });
            }
            if r.batch > 0 {
                if r.last_by_subj.is_some() {
                    return status("408 Bad Request");
                }
                return Some(batch(st, &r));
            }
        }
    }
    let Some(m) = lookup(st, &r) else {
        return status("404 Message Not Found");
    };
    Some(vec![reply_for(st, &m, r.no_hdr, &[])])
}

/// One stored message as a direct-get reply, with extra headers.
fn reply_for(st: &Stream, m: &StoredMsg, no_hdr: bool, extra: &[(&str, &str)]) -> (Vec<u8>, Bytes) {
    if no_hdr {
        return (Vec::new(), m.payload.clone());
    }
    let seq = m.seq.to_string();
    let ts = go_time(m.ts);
    let subj = String::from_utf8_lossy(&m.subject).into_owned();
    let mut pairs = vec![
        ("Nats-Stream", st.name.as_str()),
        ("Nats-Subject", subj.as_str()),
        ("Nats-Sequence", seq.as_str()),
        ("Nats-Time-Stamp", ts.as_str()),
    ];
    pairs.extend_from_slice(extra);
    let h = if m.headers.len() >= 4 && m.headers.ends_with(b"\r\n\r\n") {
        // The stored block with ours appended before its final blank line.
        let mut out = m.headers[..m.headers.len() - 2].to_vec();
        for (k, v) in pairs {
            out.extend_from_slice(format!("{k}: {v}\r\n").as_bytes());
        }
        out.extend_from_slice(b"\r\n");
        out
    } else {
        headers::build(None, &pairs)
    };
    (h, m.payload.clone())
}

fn eob(pending: u64, last: u64, upto: Option<u64>) -> (Vec<u8>, Bytes) {
    let (p, l) = (pending.to_string(), last.to_string());
    let mut pairs = vec![
        ("Nats-Num-Pending", p.as_str()),
        ("Nats-Last-Sequence", l.as_str()),
    ];
    let u = upto.map(|u| u.to_string());
    if let Some(u) = &u {
        pairs.push(("Nats-UpTo-Sequence", u.as_str()));
    }
    (headers::build(Some("204 EOB"), &pairs), Bytes::new())
}

/// Up to `batch` messages from `seq` (optionally matching `next_by_subj`),
/// each telling how many more match and which sequence came before it.
fn batch(st: &Stream, r: &GetReq) -> Replies {
    let filter = match r.next_by_subj.as_deref().filter(|s| !s.is_empty()) {
        Some(f) => Filter::one(f),
        None => Filter::all(),
    };
    let mut from = r.seq.max(1);
    if let Some(ns) = r
        .start_time
        .as_deref()
        .and_then(crate::jetstream::config::parse_time)
    {
        match st.log.seq_for_time(ns) {
            Some(s) => from = s,
            None => {
                return vec![(
                    headers::build(Some("404 Message Not Found"), &[]),
                    Bytes::new(),
                )]
            }
        }
    }
    // The reference bounds a batch by the server's max_pending (64 MiB by
    // default) unless the request asks for less.
    let max_bytes = if r.max_bytes > 0 {
        (r.max_bytes as usize).min(BATCH_MAX_BYTES)
    } else {
        BATCH_MAX_BYTES
    };
    let mut out = Vec::new();
    let (mut last, mut bytes) = (0u64, 0usize);
    // Counted once: each message sent leaves one fewer pending.
    let mut pending = st.log.count_from(from, &filter);
    while out.len() < r.batch as usize {
        let Ok(Some(m)) = st.log.next_msg(from, &filter) else {
            break;
        };
        // Our headers count too: a batch of empty messages stays bounded.
        bytes += m.payload.len() + m.headers.len() + 128;
        if bytes > max_bytes && !out.is_empty() {
            break;
        }
        pending = pending.saturating_sub(1);
        let (p, l) = (pending.to_string(), last.to_string());
        out.push(reply_for(
            st,
            &m,
            r.no_hdr,
            &[
                ("Nats-Num-Pending", p.as_str()),
                ("Nats-Last-Sequence", l.as_str()),
            ],
        ));
        last = m.seq;
        from = m.seq + 1;
    }
    if out.is_empty() {
        return vec![(
            headers::build(Some("404 Message Not Found"), &[]),
            Bytes::new(),
        )];
    }
    let pending = st.log.count_from(from, &filter);
    out.push(eob(pending, last, None));
    out
}

/// The last message of every subject matching one of `filters`, by
/// sequence.
fn multi_last(st: &Stream, filters: &[String], no_hdr: bool) -> Replies {
    let f = Filter::new(filters);
    let mut subjects = st.log.subjects(&f);
    if subjects.len() > MULTI_LAST_MAX {
        return vec![(
            headers::build(Some("413 Too Many Results"), &[]),
            Bytes::new(),
        )];
    }
    subjects.sort();
    let mut msgs: Vec<StoredMsg> = subjects
        .iter()
        .filter_map(|(s, _)| {
            st.log
                .last_for(&Filter::one(&String::from_utf8_lossy(s)))
                .ok()
                .flatten()
        })
        .collect();
    if msgs.is_empty() {
        return vec![(headers::build(Some("404 No Results"), &[]), Bytes::new())];
    }
    msgs.sort_by_key(|m| m.seq);
    let upto = st.log.state(false).last_seq;
    let mut out = Vec::new();
    let mut last = 0;
    let n = msgs.len();
    for (i, m) in msgs.iter().enumerate() {
        let (p, l) = ((n - i - 1).to_string(), last.to_string());
        out.push(reply_for(
            st,
            m,
            no_hdr,
            &[
                ("Nats-Num-Pending", p.as_str()),
                ("Nats-Last-Sequence", l.as_str()),
            ],
        ));
        last = m.seq;
    }
    out.push(eob(0, last, Some(upto)));
    out
}
