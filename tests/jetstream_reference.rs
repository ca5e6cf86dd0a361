//! Side-by-side JSON comparison of the `$JS.API` with nats-server 2.15.3.
//!
//! Starts the binary under test and the pinned reference
//! (`target/refs/bin/nats-server-2.15.3`, from `scripts/install-refs`;
//! always that one, whatever `BROKER_EDGE_BIN` says), sends both the same
//! sequence of requests and publishes, and compares the replies:
//!
//! * the key sets of every object, recursively (also keys the reference
//!   treats as optional: the shapes must be identical),
//! * every value, except those that naturally differ between two servers:
//!   timestamps, `cluster`, byte counts of the store, api counters and
//!   levels, the server version in the metadata,
//! * errors (`code`, `err_code`, `description`) exactly, as values.
//!
//! On failure it prints every difference with the step that produced it and
//! both replies.
//!
//!     cargo test -p broker-edge --test jetstream_reference
//!
//! With `BROKER_EDGE_BIN=$PWD/target/refs/bin/nats-server-2.15.3` the
//! reference is compared with itself: that checks that the list of values
//! allowed to differ is complete (the test must pass then).

mod common;

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::time::Duration;

use serde_json::{json, Value};

use common::{js_api, js_publish, ref_server_2_15, server_bin, Server};

/// How long our server gets for one reply before that step is a difference.
const OUR_REPLY: Duration = Duration::from_secs(3);

/// Last path segments whose values differ between any two servers.
const VOLATILE_LEAVES: &[&str] = &["ts", "created", "first_ts", "last_ts", "time", "bytes"];
/// Whole paths (indices dropped) whose values differ between servers.
const VOLATILE_PATHS: &[&str] = &[
    // Account usage in bytes (store overheads differ).
    "memory",
    "storage",
    // API counters include the clients' own internal requests; the level
    // is the server's own.
    "api.total",
    "api.level",
];
/// Metadata keys whose values name the server version.
const VOLATILE_METADATA: &[&str] = &["_nats.ver", "_nats.level"];
/// Subtrees compared only for presence (the server's id and name).
const OPAQUE: &[&str] = &["cluster"];

/// Path without array indices: `streams[1].state.bytes` → `streams.state.bytes`.
fn norm(path: &str) -> String {
    let mut out = String::new();
    let mut skip = false;
    for ch in path.chars() {
        match ch {
            '[' => skip = true,
            ']' => skip = false,
            _ if !skip => out.push(ch),
            _ => {}
        }
    }
    out
}

fn value_is_volatile(path: &str) -> bool {
    let p = norm(path);
    let leaf = p.rsplit('.').next().unwrap_or("");
    if VOLATILE_LEAVES.contains(&leaf) || VOLATILE_PATHS.contains(&p.as_str()) {
        return true;
    }
    VOLATILE_METADATA
        .iter()
        .any(|k| p.ends_with(&format!("metadata.{k}")))
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// Differences between our reply and the reference's, as readable lines.
fn compare(path: &str, ours: &Value, reference: &Value, out: &mut Vec<String>) {
    let leaf = norm(path);
    if OPAQUE.iter().any(|o| leaf == *o) {
        return;
    }
    match (ours, reference) {
        (Value::Object(o), Value::Object(r)) => {
            let ok: BTreeSet<&String> = o.keys().collect();
            let rk: BTreeSet<&String> = r.keys().collect();
            for k in rk.difference(&ok) {
                out.push(format!(
                    "missing key {} (reference: {})",
                    join(path, k),
                    r[*k]
                ));
            }
            for k in ok.difference(&rk) {
                out.push(format!(
                    "extra key {} (ours: {}) that the reference does not send",
                    join(path, k),
                    o[*k]
                ));
            }
            for k in ok.intersection(&rk) {
                compare(&join(path, k), &o[*k], &r[*k], out);
            }
        }
        (Value::Array(o), Value::Array(r)) => {
            if o.len() != r.len() {
                out.push(format!(
                    "{path}: {} elements, reference {}: ours {ours}, reference {reference}",
                    o.len(),
                    r.len()
                ));
                return;
            }
            for (i, (a, b)) in o.iter().zip(r).enumerate() {
                compare(&format!("{path}[{i}]"), a, b, out);
            }
        }
        // Stored headers: the client orders them at random (a hash map),
        // so compare the header lines as a set.
        (Value::String(a), Value::String(b)) if leaf.ends_with("hdrs") && a != b => {
            if header_lines(a) != header_lines(b) {
                out.push(format!(
                    "{path}: ours {:?}, reference {:?} (decoded)",
                    decode(a),
                    decode(b)
                ));
            }
        }
        (a, b) => {
            let same_kind = std::mem::discriminant(a) == std::mem::discriminant(b);
            if !same_kind {
                out.push(format!(
                    "{path}: ours {a}, reference {b} (different JSON types)"
                ));
            } else if a != b && !value_is_volatile(path) {
                out.push(format!("{path}: ours {a}, reference {b}"));
            }
        }
    }
}

fn decode(b64: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map(|v| String::from_utf8_lossy(&v).into_owned())
        .unwrap_or_else(|e| format!("<not base64: {e}>"))
}

fn header_lines(b64: &str) -> Vec<String> {
    let mut v: Vec<String> = decode(b64).split("\r\n").map(str::to_string).collect();
    v.sort();
    v
}

/// One reply from each server for the same step.
enum Reply {
    Json(Value),
    /// A message that is not JSON (direct get): status, description,
    /// headers (name → value), payload.
    Msg(Value),
    /// No reply (time-out, no responders, bad JSON): what happened.
    None(String),
}

impl Reply {
    fn value(&self) -> Value {
        match self {
            Reply::Json(v) | Reply::Msg(v) => v.clone(),
            Reply::None(why) => json!({ "<no reply>": why }),
        }
    }
}

fn msg_as_json(m: &async_nats::Message) -> Value {
    let mut headers = serde_json::Map::new();
    if let Some(h) = &m.headers {
        for (k, vs) in h.iter() {
            let vs: Vec<&str> = vs.iter().map(|v| v.as_str()).collect();
            headers.insert(k.to_string(), json!(vs));
        }
    }
    // The direct-get timestamp header differs between servers.
    if let Some(v) = headers.get_mut("Nats-Time-Stamp") {
        *v = json!("<timestamp>");
    }
    json!({
        "status": m.status.map(|s| s.as_u16()),
        "description": m.description,
        "headers": headers,
        "payload": String::from_utf8_lossy(&m.payload),
    })
}

struct Pair {
    ours: Server,
    reference: Server,
    oc: async_nats::Client,
    rc: async_nats::Client,
    steps: usize,
    report: String,
    failed: usize,
}

impl Pair {
    async fn start() -> Pair {
        let ours = Server::start_js_bin(&server_bin(), &[]);
        let reference = Server::start_js_bin(&ref_server_2_15(), &[]);
        let oc = ours.client().await;
        let rc = reference.client().await;
        Pair {
            ours,
            reference,
            oc,
            rc,
            steps: 0,
            report: String::new(),
            failed: 0,
        }
    }

    fn record(&mut self, what: &str, ours: Reply, reference: Reply) {
        self.steps += 1;
        let mut diffs = Vec::new();
        match (&ours, &reference) {
            (Reply::None(why), _) => diffs.push(format!("ours: no reply ({why})")),
            (_, Reply::None(why)) => panic!("the reference did not answer {what}: {why}"),
            _ => compare("", &ours.value(), &reference.value(), &mut diffs),
        }
        if diffs.is_empty() {
            return;
        }
        self.failed += 1;
        let _ = writeln!(self.report, "\n=== step {}: {what}", self.steps);
        for d in &diffs {
            let _ = writeln!(self.report, "  - {d}");
        }
        let _ = writeln!(self.report, "  ours:      {}", ours.value());
        let _ = writeln!(self.report, "  reference: {}", reference.value());
    }

    /// A `$JS.API` request to both.
    async fn api(&mut self, subject: &str, body: &str) -> Value {
        let r = js_api(&self.rc, subject, body).await;
        let fut = self
            .oc
            .request(subject.to_string(), body.to_string().into());
        let o = match tokio::time::timeout(OUR_REPLY, fut).await {
            Err(_) => Reply::None("time-out".into()),
            Ok(Err(e)) => Reply::None(e.to_string()),
            Ok(Ok(m)) => match serde_json::from_slice(&m.payload) {
                Ok(v) => Reply::Json(v),
                Err(e) => Reply::None(format!(
                    "not JSON ({e}): {:?}",
                    String::from_utf8_lossy(&m.payload)
                )),
            },
        };
        self.record(&format!("{subject} {body}"), o, Reply::Json(r.clone()));
        r
    }

    /// A publish with a reply subject (PubAck) to both.
    async fn publish(&mut self, subject: &str, headers: &[(&str, &str)], payload: &str) {
        let r = js_publish(&self.rc, subject, headers, payload).await;
        let o =
            match tokio::time::timeout(OUR_REPLY, js_publish(&self.oc, subject, headers, payload))
                .await
            {
                Err(_) => Reply::None("time-out".into()),
                Ok(v) => Reply::Json(v),
            };
        self.record(
            &format!("publish {subject} {headers:?} {payload:?}"),
            o,
            Reply::Json(r),
        );
    }

    /// A request whose reply is a message, not JSON (direct get).
    async fn msg(&mut self, subject: &str, body: &str) {
        let r = common::within(
            subject,
            self.rc
                .request(subject.to_string(), body.to_string().into()),
        )
        .await;
        let r = match r {
            Ok(m) => Reply::Msg(msg_as_json(&m)),
            Err(e) => Reply::None(e.to_string()),
        };
        let fut = self
            .oc
            .request(subject.to_string(), body.to_string().into());
        let o = match tokio::time::timeout(OUR_REPLY, fut).await {
            Err(_) => Reply::None("time-out".into()),
            Ok(Err(e)) => Reply::None(e.to_string()),
            Ok(Ok(m)) => Reply::Msg(msg_as_json(&m)),
        };
        self.record(&format!("{subject} {body} (message reply)"), o, r);
    }

    fn finish(self) {
        assert!(
            self.failed == 0,
            "{} of {} steps differ from nats-server 2.15.3:\n{}\n--- our log (tail) ---\n{}",
            self.failed,
            self.steps,
            self.report,
            tail(&self.ours.log(), 40)
        );
        drop(self.reference);
    }
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[test]
fn compare_logic_reports_shapes_and_values() {
    let mut d = Vec::new();
    compare(
        "",
        &json!({"type": "t", "state": {"messages": 1, "bytes": 10, "first_ts": "a"}, "cluster": {"x": 1}}),
        &json!({"type": "t", "state": {"messages": 1, "bytes": 99, "first_ts": "b", "num_deleted": 0}, "cluster": {"leader": "N"}}),
        &mut d,
    );
    assert_eq!(d, ["missing key state.num_deleted (reference: 0)"]);
    let mut d = Vec::new();
    compare(
        "",
        &json!({"error": {"code": 400, "err_code": 1, "description": "x"}, "extra": 1}),
        &json!({"error": {"code": 404, "err_code": 1, "description": "x"}}),
        &mut d,
    );
    assert_eq!(d.len(), 2, "{d:?}");
    assert!(d.iter().any(|l| l.starts_with("extra key extra")), "{d:?}");
    assert!(
        d.iter().any(|l| l.starts_with("error.code: ours 400")),
        "{d:?}"
    );
}

#[tokio::test]
async fn js_api_replies_match_nats_server_2_15() {
    let mut p = Pair::start().await;

    // Account info before anything exists.
    p.api("$JS.API.INFO", "").await;

    // Create: defaults, identical re-create, conflicting re-create.
    p.api(
        "$JS.API.STREAM.CREATE.ORDERS",
        r#"{"name":"ORDERS","subjects":["orders.>"]}"#,
    )
    .await;
    p.api(
        "$JS.API.STREAM.CREATE.ORDERS",
        r#"{"name":"ORDERS","subjects":["orders.>"]}"#,
    )
    .await;
    p.api(
        "$JS.API.STREAM.CREATE.ORDERS",
        r#"{"name":"ORDERS","subjects":["orders.>"],"max_msgs":5}"#,
    )
    .await;
    p.api("$JS.API.STREAM.CREATE.NOSUBJ", r#"{"name":"NOSUBJ"}"#)
        .await;
    p.api(
        "$JS.API.STREAM.CREATE.KV_x",
        r#"{"name":"KV_x","subjects":["$KV.x.>"],"max_msgs_per_subject":1,"allow_direct":true,"allow_rollup_hdrs":true,"deny_delete":true,"storage":"memory","discard":"new","max_msg_size":1024,"duplicate_window":1000000000}"#,
    )
    .await;
    p.api(
        "$JS.API.STREAM.CREATE.WQ",
        r#"{"name":"WQ","subjects":["wq.>"],"retention":"workqueue","max_age":3600000000000}"#,
    )
    .await;

    // Create errors.
    p.api("$JS.API.STREAM.CREATE.a*", r#"{"name":"a*"}"#).await;
    p.api("$JS.API.STREAM.CREATE.X", r#"{"name":"Y"}"#).await;
    p.api("$JS.API.STREAM.CREATE.X", "").await;
    p.api(
        "$JS.API.STREAM.CREATE.X",
        r#"{"name":"X","subjects":["orders.new"]}"#,
    )
    .await;
    p.api("$JS.API.STREAM.CREATE.X", r#"{"name":"X","#).await;
    p.api(
        "$JS.API.STREAM.CREATE.X",
        r#"{"name":"X","subjects":["x"],"num_replicas":3}"#,
    )
    .await;
    p.api(
        "$JS.API.STREAM.CREATE.X",
        r#"{"name":"X","subjects":[">"]}"#,
    )
    .await;
    p.api(
        "$JS.API.STREAM.CREATE.X",
        r#"{"name":"X","subjects":["x"],"storage":"tape"}"#,
    )
    .await;
    p.api(
        "$JS.API.STREAM.CREATE.X",
        r#"{"name":"X","subjects":["x"],"retention":"forever"}"#,
    )
    .await;

    // Publishes and PubAck errors.
    p.publish("orders.new", &[], "one").await;
    p.publish(
        "orders.new",
        &[("Nats-Msg-Id", "m1"), ("X-Trace", "t")],
        "two",
    )
    .await;
    p.publish("orders.new", &[("Nats-Msg-Id", "m1")], "two again")
        .await;
    p.publish("orders.paid", &[("Nats-Expected-Stream", "OTHER")], "x")
        .await;
    p.publish("orders.paid", &[("Nats-Expected-Last-Sequence", "1")], "x")
        .await;
    p.publish(
        "orders.paid",
        &[("Nats-Expected-Last-Subject-Sequence", "1")],
        "x",
    )
    .await;
    p.publish("orders.paid", &[("Nats-Expected-Last-Msg-Id", "zzz")], "x")
        .await;
    p.publish("orders.paid", &[("Nats-Expected-Last-Msg-Id", "m1")], "ok")
        .await;
    p.publish("orders.paid", &[], "three").await;
    p.publish("orders.shipped", &[], "four").await;
    p.publish("$KV.x.a", &[], "1").await;
    p.publish("$KV.x.a", &[], "2").await;
    p.publish("$KV.x.b", &[], &"b".repeat(2000)).await;
    p.publish("wq.job", &[], "work").await;

    // Info forms.
    p.api("$JS.API.STREAM.INFO.ORDERS", "").await;
    p.api("$JS.API.STREAM.INFO.KV_x", r#"{"subjects_filter":">"}"#)
        .await;
    p.api("$JS.API.STREAM.INFO.NOPE", "").await;

    // Message get forms.
    p.api("$JS.API.STREAM.MSG.GET.ORDERS", r#"{"seq":1}"#).await;
    p.api("$JS.API.STREAM.MSG.GET.ORDERS", r#"{"seq":2}"#).await;
    p.api(
        "$JS.API.STREAM.MSG.GET.ORDERS",
        r#"{"last_by_subj":"orders.new"}"#,
    )
    .await;
    p.api(
        "$JS.API.STREAM.MSG.GET.ORDERS",
        r#"{"next_by_subj":"orders.paid","seq":1}"#,
    )
    .await;
    p.api("$JS.API.STREAM.MSG.GET.ORDERS", r#"{"seq":99}"#)
        .await;
    p.api("$JS.API.STREAM.MSG.GET.ORDERS", "{}").await;
    p.api("$JS.API.STREAM.MSG.GET.NOPE", r#"{"seq":1}"#).await;

    // Message delete forms.
    p.api("$JS.API.STREAM.MSG.DELETE.ORDERS", r#"{"seq":2}"#)
        .await;
    p.api(
        "$JS.API.STREAM.MSG.DELETE.ORDERS",
        r#"{"seq":4,"no_erase":true}"#,
    )
    .await;
    p.api("$JS.API.STREAM.MSG.DELETE.ORDERS", r#"{"seq":4}"#)
        .await;
    p.api("$JS.API.STREAM.MSG.DELETE.ORDERS", r#"{"seq":99}"#)
        .await;
    p.api("$JS.API.STREAM.MSG.DELETE.KV_x", r#"{"seq":2}"#)
        .await;
    p.api(
        "$JS.API.STREAM.INFO.ORDERS",
        r#"{"subjects_filter":"orders.*","deleted_details":true}"#,
    )
    .await;

    // Direct get (allow_direct on KV_x).
    p.msg("$JS.API.DIRECT.GET.KV_x", r#"{"seq":2}"#).await;
    p.msg("$JS.API.DIRECT.GET.KV_x.$KV.x.a", "").await;
    p.msg("$JS.API.DIRECT.GET.KV_x", r#"{"seq":99}"#).await;
    p.msg("$JS.API.DIRECT.GET.KV_x", "").await;

    // Names and list.
    p.api("$JS.API.STREAM.NAMES", "").await;
    p.api("$JS.API.STREAM.NAMES", r#"{"offset":1}"#).await;
    p.api("$JS.API.STREAM.NAMES", r#"{"subject":"orders.x"}"#)
        .await;
    p.api("$JS.API.STREAM.LIST", "").await;
    p.api("$JS.API.STREAM.LIST", r#"{"offset":2,"subject":">"}"#)
        .await;

    // Update.
    p.api(
        "$JS.API.STREAM.UPDATE.ORDERS",
        r#"{"name":"ORDERS","subjects":["orders.>","returns.*"],"max_msgs":3}"#,
    )
    .await;
    p.api(
        "$JS.API.STREAM.UPDATE.ORDERS",
        r#"{"name":"ORDERS","subjects":["orders.>"],"storage":"memory"}"#,
    )
    .await;
    p.api(
        "$JS.API.STREAM.UPDATE.NOPE",
        r#"{"name":"NOPE","subjects":["nope"]}"#,
    )
    .await;
    p.publish("returns.r1", &[], "ret").await;

    // Purge forms.
    p.api("$JS.API.STREAM.PURGE.ORDERS", r#"{"filter":"returns.*"}"#)
        .await;
    p.api("$JS.API.STREAM.PURGE.ORDERS", r#"{"keep":1}"#).await;
    p.api("$JS.API.STREAM.PURGE.KV_x", r#"{"seq":3}"#).await;
    p.api("$JS.API.STREAM.PURGE.ORDERS", "").await;
    p.api("$JS.API.STREAM.PURGE.NOPE", "").await;
    p.api("$JS.API.STREAM.INFO.ORDERS", "").await;

    // Delete.
    p.api("$JS.API.STREAM.DELETE.ORDERS", "").await;
    p.api("$JS.API.STREAM.DELETE.ORDERS", "").await;
    p.api("$JS.API.STREAM.INFO.ORDERS", "").await;

    // Account info at the end (streams count, api.errors).
    p.api("$JS.API.INFO", "").await;

    p.finish();
}
