//! What every system response is wrapped in, as nats-server 2.15.3's
//! `ServerAPIResponse`: `{"server": {…}, "data": {…}}`, or `"error"` in
//! place of `data`. STATSZ answers carry the same `server` beside
//! `"statsz"` instead.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use serde_json::{json, Map, Value};

use crate::global::Global;
use crate::protocol::info::NATS_VERSION;

/// The reference's capability flags (`ServerCapability`): JetStream on.
/// `BinaryStreamSnapshot` (2) is not claimed: our backups are our own
/// archive format.
const FLAG_JETSTREAM: u64 = 1;

/// Every system message gets the next number, as the reference's
/// `sys.seq` (shared by the whole process).
static SEQ: AtomicU64 = AtomicU64::new(0);

/// The `server` object (`ServerInfo`): who answered, with a fresh
/// sequence number and time.
pub fn server_info(g: &Global) -> Value {
    let js = g.jetstream.get().is_some();
    let mut m = Map::new();
    m.insert("name".into(), json!(g.server_name));
    m.insert("host".into(), json!(g.opts.host));
    m.insert("id".into(), json!(g.server_id));
    if let Some(d) = g.opts.jetstream_domain.as_ref().filter(|_| js) {
        m.insert("domain".into(), json!(d));
    }
    m.insert("ver".into(), json!(NATS_VERSION));
    if !g.opts.server_tags.is_empty() {
        m.insert("tags".into(), json!(g.opts.server_tags));
    }
    // The reference's feature flags, all off there by default; the v1
    // formats they switch from are the ones this server speaks.
    m.insert(
        "feature_flags".into(),
        json!({
            "js_ack_fc_v2": false,
            "js_api_reply_v2": false,
            "js_raft_delete_range": false,
            "js_snapshot_sources": false,
        }),
    );
    m.insert("jetstream".into(), json!(js));
    m.insert("flags".into(), json!(if js { FLAG_JETSTREAM } else { 0 }));
    m.insert("seq".into(), json!(SEQ.fetch_add(1, Ordering::Relaxed) + 1));
    m.insert("time".into(), json!(rfc3339(SystemTime::now())));
    Value::Object(m)
}

/// A successful answer.
pub fn data(g: &Global, data: Value) -> Value {
    json!({ "server": server_info(g), "data": data })
}

/// A failed one: `code` is an HTTP status (400 for a request body that
/// does not parse, 500 for a request that failed), as the reference.
pub fn error(g: &Global, code: u16, description: &str) -> Value {
    json!({
        "server": server_info(g),
        "error": { "code": code, "description": description },
    })
}

/// A STATSZ answer (`ServerStatsMsg`).
pub fn statsz(g: &Global, stats: Value) -> Value {
    json!({ "server": server_info(g), "statsz": stats })
}

pub fn rfc3339(t: SystemTime) -> String {
    let dt: chrono::DateTime<chrono::Utc> = t.into();
    dt.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}
