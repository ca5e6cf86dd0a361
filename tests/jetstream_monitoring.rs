//! JetStream in the monitoring endpoints: `/jsz` (plain and with
//! `accounts`, `streams`, `config`) and the `jetstream` object of `/varz`
//! compared side by side with nats-server 2.15.3 (the pinned reference,
//! whatever `BROKER_EDGE_BIN` says), `/healthz` with JetStream on, and
//! `/varz`/`/jsz` with JetStream off.
//!
//! The comparison is of key sets, recursively (the shapes must be the
//! same), and of the values that two servers holding the same streams must
//! agree on: counts, names, stream state sequences, the store directory's
//! last component. Sizes (memory, storage, max_*, bytes), ids and times
//! naturally differ.
//!
//!     cargo test -p broker-edge --test jetstream_monitoring
//!     BROKER_EDGE_BIN=$PWD/target/refs/bin/nats-server-2.15.3 \
//!         cargo test -p broker-edge --test jetstream_monitoring

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use common::{js_api, js_publish, ref_server_2_15, server_bin, Server};

/// Keys of `config` objects that may differ: broker-edge fsyncs before
/// every PubAck on purpose and reports `sync_always: true`, where the
/// reference by default syncs on a timer and reports `sync_interval`.
const SYNC_KEYS: &[&str] = &["sync_always", "sync_interval"];

/// Values that must be equal, by path (`[]` walks every array element).
const SAME_VALUES: &[&str] = &[
    "streams",
    "messages",
    "consumers",
    "accounts",
    "total",
    "disabled",
    "account_details[].name",
    "account_details[].id",
    "account_details[].stream_detail[].name",
    "account_details[].stream_detail[].state.messages",
    "account_details[].stream_detail[].state.first_seq",
    "account_details[].stream_detail[].state.last_seq",
    "account_details[].stream_detail[].config.name",
    "account_details[].stream_detail[].config.subjects",
    // /varz jetstream
    "stats.accounts",
];

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// Key-set differences between `ours` and `reference`, recursively.
fn compare_keys(path: &str, ours: &Value, reference: &Value, out: &mut Vec<String>) {
    match (ours, reference) {
        (Value::Object(o), Value::Object(r)) => {
            let is_config = path == "config" || path.ends_with(".config");
            let allowed = |k: &str| is_config && SYNC_KEYS.contains(&k);
            let ok: BTreeSet<&String> = o.keys().collect();
            let rk: BTreeSet<&String> = r.keys().collect();
            for k in rk.difference(&ok).filter(|k| !allowed(k)) {
                out.push(format!(
                    "missing key {} (reference: {})",
                    join(path, k),
                    r[*k]
                ));
            }
            for k in ok.difference(&rk).filter(|k| !allowed(k)) {
                out.push(format!(
                    "extra key {} (ours: {}) that the reference does not send",
                    join(path, k),
                    o[*k]
                ));
            }
            for k in ok.intersection(&rk) {
                compare_keys(&join(path, k), &o[*k], &r[*k], out);
            }
        }
        (Value::Array(o), Value::Array(r)) => {
            if o.len() != r.len() {
                out.push(format!(
                    "{path}: {} elements, reference {}",
                    o.len(),
                    r.len()
                ));
                return;
            }
            for (i, (a, b)) in o.iter().zip(r).enumerate() {
                compare_keys(&format!("{path}[{i}]"), a, b, out);
            }
        }
        (a, b) => {
            if std::mem::discriminant(a) != std::mem::discriminant(b) {
                out.push(format!(
                    "{path}: ours {a}, reference {b} (different JSON types)"
                ));
            }
        }
    }
}

/// Every value at `path` (`a[].b`: field b of each element of array a),
/// with its concrete path.
fn values_at(v: &Value, path: &str) -> Vec<(String, Value)> {
    let mut cur = vec![(String::new(), v.clone())];
    for seg in path.split('.') {
        let (key, each) = match seg.strip_suffix("[]") {
            Some(k) => (k, true),
            None => (seg, false),
        };
        let mut next = Vec::new();
        for (p, x) in cur {
            let Some(y) = x.get(key) else { continue };
            let p = join(&p, key);
            if each {
                for (i, e) in y.as_array().into_iter().flatten().enumerate() {
                    next.push((format!("{p}[{i}]"), e.clone()));
                }
            } else {
                next.push((p, y.clone()));
            }
        }
        cur = next;
    }
    cur
}

/// Value differences at the [`SAME_VALUES`] paths, and `store_dir`s that
/// do not end in `jetstream`.
fn compare_values(ours: &Value, reference: &Value, out: &mut Vec<String>) {
    for path in SAME_VALUES {
        let o = values_at(ours, path);
        let r = values_at(reference, path);
        if o.len() != r.len() {
            // A shape difference, reported by the key comparison.
            continue;
        }
        for ((p, a), (_, b)) in o.iter().zip(&r) {
            if a != b {
                out.push(format!("{p}: ours {a}, reference {b}"));
            }
        }
    }
    for (who, v) in [("ours", ours), ("reference", reference)] {
        for (p, d) in values_at(v, "config.store_dir") {
            if !d.as_str().is_some_and(|d| d.ends_with("jetstream")) {
                out.push(format!("{p} ({who}): {d} does not end in jetstream"));
            }
        }
    }
}

fn diff(ours: &Value, reference: &Value) -> Vec<String> {
    let mut out = Vec::new();
    compare_keys("", ours, reference, &mut out);
    compare_values(ours, reference, &mut out);
    out
}

#[test]
fn comparison_reports_shapes_values_and_allows_sync_keys() {
    let d = diff(
        &json!({"streams": 1, "memory": 5, "config": {"store_dir": "/a/jetstream", "sync_always": true},
                "account_details": [{"name": "$G", "stream_detail": [{"name": "A", "state": {"messages": 3, "bytes": 1}}]}]}),
        &json!({"streams": 1, "memory": 9, "config": {"store_dir": "/b/jetstream", "sync_interval": 1},
                "account_details": [{"name": "$G", "stream_detail": [{"name": "A", "state": {"messages": 3, "bytes": 2}}]}]}),
    );
    assert!(d.is_empty(), "{d:?}");
    let d = diff(
        &json!({"streams": 2, "limits": {}, "config": {"store_dir": "/a/js"},
                "account_details": [{"name": "$G", "stream_detail": [{"name": "A", "state": {"last_seq": 4}}]}]}),
        &json!({"streams": 1, "limits": {"x": 1}, "config": {"store_dir": "/b/jetstream"},
                "account_details": [{"name": "$G", "stream_detail": [{"name": "A", "state": {"last_seq": 3}}]}]}),
    );
    assert_eq!(
        d,
        [
            "missing key limits.x (reference: 1)",
            "streams: ours 2, reference 1",
            "account_details[0].stream_detail[0].state.last_seq: ours 4, reference 3",
            "config.store_dir (ours): \"/a/js\" does not end in jetstream",
        ]
    );
}

/// GET `path` until `pred` holds (bounded): the counters are gathered from
/// the shards and must converge quickly.
async fn json_until(s: &Server, path: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let v = s.json(path).await;
        if pred(&v) {
            return v;
        }
        if Instant::now() > deadline {
            panic!("GET {path}: condition never held; last answer:\n{v:#}");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// GET `path` once the 3 messages show (the `jetstream` object of
/// `/varz`, the whole document otherwise).
async fn fetch(s: &Server, path: &str) -> Value {
    if path == "/varz" {
        let v = json_until(s, path, |v| {
            v["jetstream"]["stats"]["storage"].as_u64() > Some(0)
        })
        .await;
        return v["jetstream"].clone();
    }
    json_until(s, path, |v| v["messages"] == 3).await
}

#[tokio::test]
async fn jsz_and_varz_jetstream_match_nats_server_2_15() {
    let ours = Server::start_js_bin(&server_bin(), &[]);
    let reference = Server::start_js_bin(&ref_server_2_15(), &[]);
    for s in [&ours, &reference] {
        let c = s.client().await;
        let r = js_api(
            &c,
            "$JS.API.STREAM.CREATE.MON",
            r#"{"name":"MON","subjects":["mon.>"]}"#,
        )
        .await;
        assert!(r.get("error").is_none(), "create MON: {r}");
        for (i, subject) in ["mon.a", "mon.b", "mon.a"].iter().enumerate() {
            let ack = js_publish(&c, subject, &[], &format!("m{i}")).await;
            assert_eq!(ack["seq"], i as u64 + 1, "{ack}");
        }
    }

    let mut report = String::new();
    for path in [
        "/jsz",
        "/jsz?accounts=true&streams=true&config=true",
        "/varz",
    ] {
        let o = fetch(&ours, path).await;
        let r = fetch(&reference, path).await;
        let d = diff(&o, &r);
        if !d.is_empty() {
            report.push_str(&format!("\n=== GET {path}\n"));
            for line in &d {
                report.push_str(&format!("  - {line}\n"));
            }
            report.push_str(&format!("  ours:      {o}\n  reference: {r}\n"));
        }
    }
    // The detailed /jsz names the stream on both (not only equal: present).
    let detailed = ours
        .json("/jsz?accounts=true&streams=true&config=true")
        .await;
    let names: Vec<Value> = values_at(&detailed, "account_details[].stream_detail[].name")
        .into_iter()
        .map(|(_, v)| v)
        .collect();
    assert_eq!(names, [json!("MON")], "{detailed:#}");
    assert!(
        report.is_empty(),
        "JetStream monitoring differs from nats-server 2.15.3:{report}"
    );
}

#[tokio::test]
async fn healthz_varz_jsz_with_jetstream_on_and_off() {
    let on = Server::start_js(&[]);
    let (status, body) = on.http("/healthz").await;
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).expect("healthz JSON");
    assert_eq!(v, json!({"status": "ok"}));
    let varz = on.json("/varz").await;
    let dir = &varz["jetstream"]["config"]["store_dir"];
    assert_eq!(
        dir.as_str(),
        Some(on.store_dir().join("jetstream").to_str().unwrap()),
        "varz.jetstream: {}",
        varz["jetstream"]
    );
    let jsz = on.json("/jsz").await;
    assert!(jsz.get("disabled").is_none(), "{jsz}");
    assert_eq!(jsz["config"]["store_dir"], *dir, "{jsz}");

    let off = Server::start(&[]);
    let (status, body) = off.http("/healthz").await;
    assert_eq!(status, 200, "{body}");
    let varz = off.json("/varz").await;
    assert_eq!(
        varz["jetstream"],
        json!({}),
        "varz.jetstream with JetStream off"
    );
    let jsz = off.json("/jsz").await;
    assert_eq!(jsz["disabled"], true, "{jsz}");
    for k in [
        "streams",
        "consumers",
        "messages",
        "bytes",
        "accounts",
        "total",
    ] {
        assert_eq!(jsz[k], 0, "/jsz {k} with JetStream off: {jsz}");
    }
    assert!(jsz["config"].get("store_dir").is_none(), "{jsz}");
}

/// `/routez`, `/gatewayz` and `/accountz` beside nats-server 2.15.3: the
/// same keys (no routes or gateways on either; the same accounts).
#[tokio::test]
async fn routez_gatewayz_accountz_match_nats_server_2_15() {
    let ours = Server::start_bin(&server_bin(), &[]);
    let reference = Server::start_bin(&ref_server_2_15(), &[]);
    let mut report = Vec::new();
    for path in ["/routez", "/gatewayz", "/accountz"] {
        let a = ours.json(path).await;
        let b = reference.json(path).await;
        compare_keys(path, &a, &b, &mut report);
        if path == "/routez" {
            assert_eq!(a["num_routes"], 0, "{a}");
        }
        if path == "/accountz" {
            // The reference lists them in map order: compare as sets.
            let set = |v: &Value| -> BTreeSet<String> {
                v["accounts"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|x| x.as_str().map(String::from))
                    .collect()
            };
            assert_eq!(set(&a), set(&b), "{a}\n{b}");
            assert_eq!(a["system_account"], b["system_account"]);
        }
    }
    assert!(report.is_empty(), "key differences:\n{}", report.join("\n"));
}
