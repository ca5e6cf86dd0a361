//! JetStream streams over the `$JS.API` (raw JSON requests) and the
//! async-nats JetStream client: create/info/update/delete, publishing with
//! PubAcks and the expectation headers, limits, purge, message get/delete,
//! direct get, persistence across restarts, the deployment's streams, and
//! (broker-edge only) streams spread over shards.
//!
//! Every expected value here was checked against nats-server 2.15.3:
//!
//!     BROKER_EDGE_BIN=$PWD/target/refs/bin/nats-server-2.15.3 \
//!         cargo test -p broker-edge --test jetstream_streams

mod common;

use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{json, Value};

use common::{js_api, js_publish, Server};

const NS_PER_SEC: i64 = 1_000_000_000;
const HOUR: i64 = 3600 * NS_PER_SEC;
const DAY: i64 = 24 * HOUR;

/// Create a stream from a JSON config; panics unless it succeeds.
async fn create(c: &async_nats::Client, cfg: Value) -> Value {
    let name = cfg["name"].as_str().unwrap().to_string();
    let r = js_api(
        c,
        &format!("$JS.API.STREAM.CREATE.{name}"),
        &cfg.to_string(),
    )
    .await;
    assert!(r.get("error").is_none(), "create {name} failed: {r}");
    assert_eq!(r["type"], "io.nats.jetstream.api.v1.stream_create_response");
    r
}

async fn info(c: &async_nats::Client, name: &str) -> Value {
    let r = js_api(c, &format!("$JS.API.STREAM.INFO.{name}"), "").await;
    assert!(r.get("error").is_none(), "info {name} failed: {r}");
    r
}

async fn info_with(c: &async_nats::Client, name: &str, body: Value) -> Value {
    let r = js_api(c, &format!("$JS.API.STREAM.INFO.{name}"), &body.to_string()).await;
    assert!(r.get("error").is_none(), "info {name} {body} failed: {r}");
    r
}

/// Publish and expect a successful PubAck from `stream`; returns the seq.
async fn publish_ok(c: &async_nats::Client, subject: &str, payload: &str, stream: &str) -> u64 {
    let ack = js_publish(c, subject, &[], payload).await;
    assert!(ack.get("error").is_none(), "publish {subject}: {ack}");
    assert_eq!(ack["stream"], stream, "PubAck {ack}");
    ack["seq"]
        .as_u64()
        .unwrap_or_else(|| panic!("no seq in {ack}"))
}

/// Assert an `error` object with exactly these values.
#[track_caller]
fn assert_error(r: &Value, code: u64, err_code: u64, description: &str) {
    let e = &r["error"];
    assert!(e.is_object(), "expected an error, got {r}");
    assert_eq!(e["code"], code, "code in {r}");
    assert_eq!(e["err_code"], err_code, "err_code in {r}");
    assert_eq!(e["description"], description, "description in {r}");
}

/// Poll `f` (every 50 ms) until it returns true; panic after 10 s.
async fn eventually<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f().await {
        assert!(Instant::now() < deadline, "not within 10 s: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn unb64(v: &Value) -> String {
    let raw = base64::engine::general_purpose::STANDARD
        .decode(v.as_str().unwrap_or_else(|| panic!("not a string: {v}")))
        .unwrap();
    String::from_utf8(raw).unwrap()
}

#[tokio::test]
async fn account_info_shape_and_stream_count() {
    let s = Server::start_js(&[]);
    let c = s.client().await;
    let r = js_api(&c, "$JS.API.INFO", "").await;
    assert_eq!(r["type"], "io.nats.jetstream.api.v1.account_info_response");
    for k in ["memory", "storage", "streams", "consumers"] {
        assert_eq!(r[k], 0, "{k} in {r}");
    }
    let l = &r["limits"];
    for k in [
        "max_memory",
        "max_storage",
        "max_streams",
        "max_consumers",
        "max_ack_pending",
        "memory_max_stream_bytes",
        "storage_max_stream_bytes",
    ] {
        assert_eq!(l[k], -1, "limits.{k} in {r}");
    }
    assert_eq!(l["max_bytes_required"], false, "{r}");
    assert!(r["api"]["total"].is_u64(), "api.total in {r}");
    assert_eq!(r["api"]["errors"], 0, "{r}");
    let total0 = r["api"]["total"].as_u64().unwrap();

    create(&c, json!({"name": "ONE", "subjects": ["one.>"]})).await;
    create(
        &c,
        json!({"name": "TWO", "subjects": ["two"], "storage": "memory"}),
    )
    .await;
    publish_ok(&c, "one.x", "hello", "ONE").await;
    publish_ok(&c, "two", "hello", "TWO").await;
    // An error counts in api.errors.
    let e = js_api(&c, "$JS.API.STREAM.INFO.NOPE", "").await;
    assert_error(&e, 404, 10059, "stream not found");

    let r = js_api(&c, "$JS.API.INFO", "").await;
    assert_eq!(r["streams"], 2, "{r}");
    assert_eq!(r["consumers"], 0, "{r}");
    assert!(r["storage"].as_u64().unwrap() > 0, "file bytes used: {r}");
    assert!(r["memory"].as_u64().unwrap() > 0, "memory bytes used: {r}");
    // INFO, two creates, one stream info error, and this INFO.
    assert!(
        r["api"]["total"].as_u64().unwrap() >= total0 + 4,
        "api.total grew: {r}"
    );
    assert_eq!(r["api"]["errors"], 1, "{r}");
}

#[tokio::test]
async fn create_with_defaults_and_idempotent_recreate() {
    let s = Server::start_js(&[]);
    let c = s.client().await;
    let r = create(&c, json!({"name": "ORDERS"})).await;
    let cfg = &r["config"];
    // Subjects default to the stream's name.
    assert_eq!(cfg["subjects"], json!(["ORDERS"]), "{r}");
    assert_eq!(cfg["name"], "ORDERS");
    assert_eq!(cfg["retention"], "limits");
    assert_eq!(cfg["storage"], "file");
    assert_eq!(cfg["discard"], "old");
    assert_eq!(cfg["num_replicas"], 1);
    assert_eq!(cfg["duplicate_window"], 120 * NS_PER_SEC);
    for k in [
        "max_consumers",
        "max_msgs",
        "max_bytes",
        "max_msgs_per_subject",
        "max_msg_size",
    ] {
        assert_eq!(cfg[k], -1, "config.{k} in {r}");
    }
    assert_eq!(cfg["max_age"], 0);
    for k in [
        "allow_direct",
        "mirror_direct",
        "sealed",
        "deny_delete",
        "deny_purge",
        "allow_rollup_hdrs",
    ] {
        assert_eq!(cfg[k], false, "config.{k} in {r}");
    }
    let st = &r["state"];
    for k in [
        "messages",
        "bytes",
        "first_seq",
        "last_seq",
        "consumer_count",
    ] {
        assert_eq!(st[k], 0, "state.{k} in {r}");
    }
    assert_eq!(st["first_ts"], "0001-01-01T00:00:00Z");
    assert!(
        r["created"].as_str().is_some_and(|t| t.ends_with('Z')),
        "created: {r}"
    );
    assert_eq!(r["did_create"], true, "{r}");

    // The same config again: success, same stream.
    let again = create(&c, json!({"name": "ORDERS"})).await;
    assert_eq!(again["config"]["subjects"], json!(["ORDERS"]));
    assert_eq!(again["created"], r["created"], "same stream: {again}");
    // The async-nats client sees it.
    let js = async_nats::jetstream::new(c.clone());
    let mut stream = js.get_stream("ORDERS").await.unwrap();
    let i = stream.info().await.unwrap();
    assert_eq!(i.config.subjects, vec!["ORDERS".to_string()]);
    assert_eq!(i.state.messages, 0);
}

#[tokio::test]
async fn create_errors() {
    let s = Server::start_js(&[]);
    let c = s.client().await;
    create(&c, json!({"name": "S1", "subjects": ["s1.>"]})).await;

    // Same name, different config.
    let r = js_api(
        &c,
        "$JS.API.STREAM.CREATE.S1",
        &json!({"name": "S1", "subjects": ["s1.>"], "max_msgs": 5}).to_string(),
    )
    .await;
    assert_eq!(r["type"], "io.nats.jetstream.api.v1.stream_create_response");
    assert_error(
        &r,
        400,
        10058,
        "stream name already in use with a different configuration",
    );

    // Invalid names (a name with '.' cannot even be addressed: nobody
    // answers the longer subject).
    for name in ["a*", "a>"] {
        let r = js_api(
            &c,
            &format!("$JS.API.STREAM.CREATE.{name}"),
            &json!({ "name": name }).to_string(),
        )
        .await;
        assert_error(
            &r,
            500,
            10052,
            "stream name is required and can not contain '.', '*', '>', '\\', '/'",
        );
    }
    // nats-server listens on all of `$JS.API.>` and leaves this one
    // unanswered (a time-out); no responders would do as well.
    let r = tokio::time::timeout(
        Duration::from_secs(1),
        c.request("$JS.API.STREAM.CREATE.a.b", r#"{"name":"a.b"}"#.into()),
    )
    .await;
    match r {
        Err(_) => {}
        Ok(Err(e)) if e.kind() == async_nats::RequestErrorKind::NoResponders => {}
        Ok(other) => panic!("$JS.API.STREAM.CREATE.a.b answered: {other:?}"),
    }

    // The name in the subject must match the body ("a b" cannot be in a
    // subject at all).
    for body in [r#"{"name":"a b"}"#, r#"{"name":"OTHER"}"#, "{}", ""] {
        let r = js_api(&c, "$JS.API.STREAM.CREATE.ab", body).await;
        assert_error(
            &r,
            400,
            10056,
            "stream name in subject does not match request",
        );
    }

    // Overlapping subjects.
    for subjects in [
        json!(["s1.x"]),
        json!(["s1.>"]),
        json!(["s1.*.z"]),
        json!(["other", "s1.y.z"]),
    ] {
        let r = js_api(
            &c,
            "$JS.API.STREAM.CREATE.S2",
            &json!({"name": "S2", "subjects": subjects}).to_string(),
        )
        .await;
        assert_error(&r, 400, 10065, "subjects overlap with an existing stream");
    }

    // ">" alone is refused before any overlap check.
    let r = js_api(
        &c,
        "$JS.API.STREAM.CREATE.S2",
        &json!({"name": "S2", "subjects": [">"]}).to_string(),
    )
    .await;
    assert_error(
        &r,
        500,
        10052,
        "capturing all subjects requires no-ack to be true",
    );
    // A leading wildcard could capture `$JS.>` subjects.
    let r = js_api(
        &c,
        "$JS.API.STREAM.CREATE.S2",
        &json!({"name": "S2", "subjects": ["*.x"]}).to_string(),
    )
    .await;
    assert_error(
        &r,
        500,
        10052,
        "subjects that overlap with jetstream api require no-ack to be true",
    );

    // Bad JSON.
    let r = js_api(&c, "$JS.API.STREAM.CREATE.S2", r#"{"name":"S2","#).await;
    assert_error(&r, 400, 10025, "invalid JSON: unexpected EOF");

    // Replicas on a single server.
    let r = js_api(
        &c,
        "$JS.API.STREAM.CREATE.S3",
        &json!({"name": "S3", "subjects": ["s3"], "num_replicas": 3}).to_string(),
    )
    .await;
    assert_error(
        &r,
        500,
        10074,
        "replicas > 1 not supported in non-clustered mode",
    );

    // None of the failures created anything.
    let names = js_api(&c, "$JS.API.STREAM.NAMES", "").await;
    assert_eq!(names["streams"], json!(["S1"]), "{names}");
}

#[tokio::test]
async fn publish_pub_acks() {
    let s = Server::start_js(&[]);
    let c = s.client().await;
    create(&c, json!({"name": "EV", "subjects": ["ev.>"]})).await;

    let js = async_nats::jetstream::new(c.clone());
    for expected in 1..=3u64 {
        let ack = js
            .publish(format!("ev.{expected}"), "payload".into())
            .await
            .unwrap()
            .await
            .unwrap();
        assert_eq!(ack.stream, "EV");
        assert_eq!(ack.sequence, expected);
        assert!(!ack.duplicate);
    }
    // Raw PubAck JSON.
    let ack = js_publish(&c, "ev.raw", &[], "x").await;
    assert_eq!(ack, json!({"stream": "EV", "seq": 4}));

    // Without a reply subject: stored all the same.
    c.publish("ev.noreply", "quiet".into()).await.unwrap();
    c.flush().await.unwrap();
    eventually("the reply-less publish is stored", || async {
        info(&c, "EV").await["state"]["messages"] == 5
    })
    .await;
    let i = info(&c, "EV").await;
    assert_eq!(i["state"]["last_seq"], 5, "{i}");
    assert_eq!(i["state"]["first_seq"], 1, "{i}");
    let m = js_api(&c, "$JS.API.STREAM.MSG.GET.EV", r#"{"seq":5}"#).await;
    assert_eq!(m["message"]["subject"], "ev.noreply", "{m}");
    assert_eq!(unb64(&m["message"]["data"]), "quiet");

    // A subject no stream captures: no responders for a JetStream publish.
    let err = js
        .publish("elsewhere", "x".into())
        .await
        .unwrap()
        .await
        .expect_err("no stream for this subject");
    assert_eq!(
        err.kind(),
        async_nats::jetstream::context::PublishErrorKind::StreamNotFound
    );
}

#[tokio::test]
async fn msg_id_dedup_within_window() {
    let s = Server::start_js(&[]);
    let c = s.client().await;
    create(&c, json!({"name": "D", "subjects": ["d.>"]})).await;
    publish_ok(&c, "d.a", "zero", "D").await;
    let a1 = js_publish(&c, "d.a", &[("Nats-Msg-Id", "m1")], "one").await;
    assert_eq!(a1, json!({"stream": "D", "seq": 2}));
    let a2 = js_publish(&c, "d.a", &[("Nats-Msg-Id", "m1")], "one again").await;
    assert_eq!(a2["stream"], "D", "{a2}");
    assert_eq!(a2["seq"], 2, "{a2}");
    assert_eq!(a2["duplicate"], true, "{a2}");
    assert!(a2.get("error").is_none(), "{a2}");
    // Same id on another subject of the stream: still a duplicate.
    let a3 = js_publish(&c, "d.b", &[("Nats-Msg-Id", "m1")], "other").await;
    assert_eq!(a3["seq"], 2, "{a3}");
    assert_eq!(a3["duplicate"], true, "{a3}");
    let a4 = js_publish(&c, "d.a", &[("Nats-Msg-Id", "m2")], "two").await;
    assert_eq!(a4, json!({"stream": "D", "seq": 3}));

    let i = info(&c, "D").await;
    assert_eq!(i["state"]["messages"], 3, "{i}");
    // The stored message is the first one.
    let m = js_api(&c, "$JS.API.STREAM.MSG.GET.D", r#"{"seq":2}"#).await;
    assert_eq!(unb64(&m["message"]["data"]), "one", "{m}");

    // The async-nats view of a duplicate.
    let js = async_nats::jetstream::new(c.clone());
    let mut h = async_nats::HeaderMap::new();
    h.insert("Nats-Msg-Id", "m2");
    let ack = js
        .publish_with_headers("d.a", h, "dup".into())
        .await
        .unwrap()
        .await
        .unwrap();
    assert!(ack.duplicate);
    assert_eq!(ack.sequence, 3);
}

#[tokio::test]
async fn msg_id_dedup_window_expires() {
    let s = Server::start_js(&[]);
    let c = s.client().await;
    create(
        &c,
        json!({"name": "DW", "subjects": ["dw"], "duplicate_window": NS_PER_SEC}),
    )
    .await;
    let i = info(&c, "DW").await;
    assert_eq!(i["config"]["duplicate_window"], NS_PER_SEC, "{i}");
    let a = js_publish(&c, "dw", &[("Nats-Msg-Id", "x")], "1").await;
    assert_eq!(a["seq"], 1, "{a}");
    // After the window a repeated id is a new message.
    let deadline = Instant::now() + Duration::from_secs(10);
    let seq = loop {
        let a = js_publish(&c, "dw", &[("Nats-Msg-Id", "x")], "again").await;
        if a.get("duplicate").is_none() {
            break a["seq"].as_u64().unwrap();
        }
        assert_eq!(a["seq"], 1, "{a}");
        assert!(
            Instant::now() < deadline,
            "the duplicate window never expired"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(seq, 2);
}

#[tokio::test]
async fn expectation_headers() {
    let s = Server::start_js(&[]);
    let c = s.client().await;
    create(&c, json!({"name": "P", "subjects": ["p.>"]})).await;
    publish_ok(&c, "p.a", "one", "P").await; // 1
    let a = js_publish(&c, "p.a", &[("Nats-Msg-Id", "m1")], "two").await; // 2
    assert_eq!(a["seq"], 2);

    let bad = |code, desc: &str| json!({"error": {"code": 400, "err_code": code, "description": desc}, "stream": "P", "seq": 0});

    let r = js_publish(&c, "p.b", &[("Nats-Expected-Stream", "OTHER")], "x").await;
    assert_eq!(r, bad(10060, "expected stream does not match"));
    let r = js_publish(&c, "p.b", &[("Nats-Expected-Last-Sequence", "1")], "x").await;
    assert_eq!(r, bad(10071, "wrong last sequence: 2"));
    // p.b has no message yet: its last sequence is 0.
    let r = js_publish(
        &c,
        "p.b",
        &[("Nats-Expected-Last-Subject-Sequence", "1")],
        "x",
    )
    .await;
    assert_eq!(r, bad(10071, "wrong last sequence: 0"));
    let r = js_publish(&c, "p.b", &[("Nats-Expected-Last-Msg-Id", "zzz")], "x").await;
    assert_eq!(r, bad(10070, "wrong last msg ID: m1"));

    // Matching expectations pass.
    let r = js_publish(&c, "p.b", &[("Nats-Expected-Last-Msg-Id", "m1")], "ok").await;
    assert_eq!(r, json!({"stream": "P", "seq": 3}));
    let r = js_publish(
        &c,
        "p.b",
        &[
            ("Nats-Expected-Last-Sequence", "3"),
            ("Nats-Expected-Stream", "P"),
        ],
        "ok",
    )
    .await;
    assert_eq!(r, json!({"stream": "P", "seq": 4}));
    let r = js_publish(
        &c,
        "p.a",
        &[("Nats-Expected-Last-Subject-Sequence", "2")],
        "ok",
    )
    .await;
    assert_eq!(r, json!({"stream": "P", "seq": 5}));
    let r = js_publish(
        &c,
        "p.a",
        &[("Nats-Expected-Last-Subject-Sequence", "0")],
        "x",
    )
    .await;
    assert_eq!(r, bad(10071, "wrong last sequence: 5"));
    // 0 means "no message on this subject yet".
    let r = js_publish(
        &c,
        "p.new",
        &[("Nats-Expected-Last-Subject-Sequence", "0")],
        "x",
    )
    .await;
    assert_eq!(r, json!({"stream": "P", "seq": 6}));

    // Failed expectations stored nothing.
    let i = info(&c, "P").await;
    assert_eq!(i["state"]["messages"], 6, "{i}");
    assert_eq!(i["state"]["last_seq"], 6, "{i}");
}

#[tokio::test]
async fn limit_max_msgs_discard_old() {
    let s = Server::start_js(&[]);
    let c = s.client().await;
    create(&c, json!({"name": "M", "subjects": ["m.*"], "max_msgs": 3})).await;
    for i in 1..=10 {
        assert_eq!(publish_ok(&c, "m.x", &format!("msg{i}"), "M").await, i);
    }
    let i = info(&c, "M").await;
    assert_eq!(i["state"]["messages"], 3, "{i}");
    assert_eq!(i["state"]["first_seq"], 8, "{i}");
    assert_eq!(i["state"]["last_seq"], 10, "{i}");
    let m = js_api(&c, "$JS.API.STREAM.MSG.GET.M", r#"{"seq":8}"#).await;
    assert_eq!(unb64(&m["message"]["data"]), "msg8", "{m}");
    let m = js_api(&c, "$JS.API.STREAM.MSG.GET.M", r#"{"seq":7}"#).await;
    assert_error(&m, 404, 10037, "no message found");
}

#[tokio::test]
async fn limit_max_msgs_per_subject_kv_shape() {
    let s = Server::start_js(&[]);
    let c = s.client().await;
    create(
        &c,
        json!({"name": "KV_cfg", "subjects": ["$KV.cfg.>"], "max_msgs_per_subject": 1,
               "allow_rollup_hdrs": true, "deny_delete": true, "allow_direct": true}),
    )
    .await;
    publish_ok(&c, "$KV.cfg.a", "1", "KV_cfg").await;
    publish_ok(&c, "$KV.cfg.b", "1", "KV_cfg").await;
    publish_ok(&c, "$KV.cfg.a", "2", "KV_cfg").await;
    publish_ok(&c, "$KV.cfg.a", "3", "KV_cfg").await;
    let i = info_with(&c, "KV_cfg", json!({"subjects_filter": ">"})).await;
    assert_eq!(i["state"]["messages"], 2, "{i}");
    assert_eq!(i["state"]["first_seq"], 2, "{i}");
    assert_eq!(i["state"]["last_seq"], 4, "{i}");
    assert_eq!(i["state"]["num_subjects"], 2, "{i}");
    assert_eq!(
        i["state"]["subjects"],
        json!({"$KV.cfg.a": 1, "$KV.cfg.b": 1})
    );
    let m = js_api(
        &c,
        "$JS.API.STREAM.MSG.GET.KV_cfg",
        r#"{"last_by_subj":"$KV.cfg.a"}"#,
    )
    .await;
    assert_eq!(m["message"]["seq"], 4, "{m}");
    assert_eq!(unb64(&m["message"]["data"]), "3");
    // deny_delete: message deletes are refused.
    let r = js_api(&c, "$JS.API.STREAM.MSG.DELETE.KV_cfg", r#"{"seq":2}"#).await;
    assert_error(&r, 500, 10057, "message delete not permitted");
}

#[tokio::test]
async fn limit_max_bytes_discard_old() {
    let s = Server::start_js(&[]);
    let c = s.client().await;
    create(
        &c,
        json!({"name": "B", "subjects": ["b"], "max_bytes": 1000}),
    )
    .await;
    let payload = "x".repeat(100);
    for i in 1..=30 {
        assert_eq!(publish_ok(&c, "b", &payload, "B").await, i);
    }
    let i = info(&c, "B").await;
    let st = &i["state"];
    let bytes = st["bytes"].as_u64().unwrap();
    let msgs = st["messages"].as_u64().unwrap();
    assert!(bytes <= 1000, "{i}");
    assert!(
        (5..=9).contains(&msgs),
        "about 1000/(100+overhead) kept: {i}"
    );
    assert_eq!(st["last_seq"], 30, "{i}");
    assert_eq!(st["first_seq"].as_u64().unwrap(), 30 - msgs + 1, "{i}");
}

#[tokio::test]
async fn limits_discard_new_errors() {
    let s = Server::start_js(&[]);
    let c = s.client().await;
    create(
        &c,
        json!({"name": "DN", "subjects": ["dn.>"], "max_msgs": 1, "discard": "new"}),
    )
    .await;
    publish_ok(&c, "dn.a", "1", "DN").await;
    let r = js_publish(&c, "dn.a", &[], "2").await;
    assert_eq!(
        r,
        json!({"error": {"code": 503, "err_code": 10077, "description": "maximum messages exceeded"},
               "stream": "DN", "seq": 0})
    );

    create(
        &c,
        json!({"name": "DB", "subjects": ["db.>"], "max_bytes": 100, "discard": "new"}),
    )
    .await;
    publish_ok(&c, "db.a", "1", "DB").await;
    let r = js_publish(&c, "db.a", &[], &"2".repeat(90)).await;
    assert_error(&r, 503, 10077, "maximum bytes exceeded");

    create(
        &c,
        json!({"name": "DS", "subjects": ["ds.>"], "max_msgs_per_subject": 1,
               "discard": "new", "discard_new_per_subject": true}),
    )
    .await;
    publish_ok(&c, "ds.a", "1", "DS").await;
    publish_ok(&c, "ds.b", "1", "DS").await;
    let r = js_publish(&c, "ds.a", &[], "2").await;
    assert_error(&r, 503, 10077, "maximum messages per subject exceeded");

    // Nothing over the limits was stored.
    assert_eq!(info(&c, "DN").await["state"]["messages"], 1);
    assert_eq!(info(&c, "DB").await["state"]["messages"], 1);
    assert_eq!(info(&c, "DS").await["state"]["messages"], 2);
}

#[tokio::test]
async fn limit_max_msg_size() {
    let s = Server::start_js(&[]);
    let c = s.client().await;
    create(
        &c,
        json!({"name": "SZ", "subjects": ["sz"], "max_msg_size": 100}),
    )
    .await;
    publish_ok(&c, "sz", &"a".repeat(100), "SZ").await;
    let r = js_publish(&c, "sz", &[], &"a".repeat(101)).await;
    assert_eq!(
        r,
        json!({"error": {"code": 400, "err_code": 10054, "description": "message size exceeds maximum allowed"},
               "stream": "SZ", "seq": 0})
    );
    assert_eq!(info(&c, "SZ").await["state"]["messages"], 1);
}

#[tokio::test]
async fn limit_max_age_expires_messages() {
    let s = Server::start_js(&[]);
    let c = s.client().await;
    let r = create(
        &c,
        json!({"name": "AGE", "subjects": ["age"], "max_age": NS_PER_SEC}),
    )
    .await;
    assert_eq!(r["config"]["max_age"], NS_PER_SEC);
    for _ in 0..3 {
        publish_ok(&c, "age", "short-lived", "AGE").await;
    }
    assert_eq!(info(&c, "AGE").await["state"]["messages"], 3);
    eventually("messages older than max_age are removed", || async {
        info(&c, "AGE").await["state"]["messages"] == 0
    })
    .await;
    let i = info(&c, "AGE").await;
    assert_eq!(i["state"]["last_seq"], 3, "{i}");
    assert_eq!(i["state"]["first_seq"], 4, "{i}");
    // The stream keeps working after expiry.
    assert_eq!(publish_ok(&c, "age", "again", "AGE").await, 4);
}

#[tokio::test]
async fn stream_info_subjects_and_deleted() {
    let s = Server::start_js(&[]);
    let c = s.client().await;
    create(&c, json!({"name": "I", "subjects": ["i.>"]})).await;
    for subj in ["i.a", "i.a", "i.b", "i.c.x", "i.c.y", "i.a"] {
        publish_ok(&c, subj, "v", "I").await;
    }
    for seq in [2, 4] {
        let r = js_api(
            &c,
            "$JS.API.STREAM.MSG.DELETE.I",
            &json!({ "seq": seq }).to_string(),
        )
        .await;
        assert_eq!(r["success"], true, "{r}");
    }
    // Plain info: counts but no maps.
    let i = info(&c, "I").await;
    assert_eq!(i["type"], "io.nats.jetstream.api.v1.stream_info_response");
    let st = &i["state"];
    assert_eq!(st["messages"], 4, "{i}");
    // i.c.x lost its only message.
    assert_eq!(st["num_subjects"], 3, "{i}");
    assert_eq!(st["num_deleted"], 2, "{i}");
    assert!(st.get("subjects").is_none(), "{i}");
    assert!(st.get("deleted").is_none(), "{i}");

    let i = info_with(
        &c,
        "I",
        json!({"subjects_filter": ">", "deleted_details": true}),
    )
    .await;
    let st = &i["state"];
    assert_eq!(
        st["subjects"],
        json!({"i.a": 2, "i.b": 1, "i.c.y": 1}),
        "{i}"
    );
    assert_eq!(st["deleted"], json!([2, 4]), "{i}");
    assert_eq!(i["total"], 3, "{i}");

    let i = info_with(&c, "I", json!({"subjects_filter": "i.c.*"})).await;
    assert_eq!(i["state"]["subjects"], json!({"i.c.y": 1}), "{i}");
    assert!(i["state"].get("deleted").is_none(), "{i}");
    let i = info_with(&c, "I", json!({"subjects_filter": "i.zzz"})).await;
    assert!(i["state"].get("subjects").is_none(), "{i}");
}

#[tokio::test]
async fn stream_names_and_list() {
    let s = Server::start_js(&[]);
    let c = s.client().await;
    for (name, subj) in [("C", "c.>"), ("A", "a.>"), ("B", "b.*")] {
        create(&c, json!({"name": name, "subjects": [subj]})).await;
    }
    let r = js_api(&c, "$JS.API.STREAM.NAMES", "").await;
    assert_eq!(r["type"], "io.nats.jetstream.api.v1.stream_names_response");
    assert_eq!(r["total"], 3, "{r}");
    assert_eq!(r["offset"], 0, "{r}");
    assert_eq!(r["limit"], 1024, "{r}");
    assert_eq!(r["streams"], json!(["A", "B", "C"]), "sorted: {r}");

    let r = js_api(&c, "$JS.API.STREAM.NAMES", r#"{"offset":1}"#).await;
    assert_eq!(r["total"], 3, "{r}");
    assert_eq!(r["offset"], 1, "{r}");
    assert_eq!(r["streams"], json!(["B", "C"]), "{r}");

    let r = js_api(&c, "$JS.API.STREAM.NAMES", r#"{"subject":"b.x"}"#).await;
    assert_eq!(r["streams"], json!(["B"]), "{r}");
    assert_eq!(r["total"], 1, "{r}");
    let r = js_api(&c, "$JS.API.STREAM.NAMES", r#"{"subject":"zzz"}"#).await;
    assert_eq!(r["total"], 0, "{r}");
    assert!(
        r["streams"].is_null() || r["streams"] == json!([]),
        "no streams: {r}"
    );

    let r = js_api(&c, "$JS.API.STREAM.LIST", "").await;
    assert_eq!(r["type"], "io.nats.jetstream.api.v1.stream_list_response");
    assert_eq!(r["total"], 3, "{r}");
    assert_eq!(r["limit"], 256, "{r}");
    let names: Vec<&str> = r["streams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["config"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["A", "B", "C"], "{r}");
    for s in r["streams"].as_array().unwrap() {
        assert!(s["state"]["messages"].is_u64(), "{s}");
        assert!(s["created"].is_string(), "{s}");
    }
    let r = js_api(&c, "$JS.API.STREAM.LIST", r#"{"offset":2}"#).await;
    assert_eq!(r["streams"].as_array().unwrap().len(), 1, "{r}");
    assert_eq!(r["streams"][0]["config"]["name"], "C", "{r}");
    assert_eq!(r["offset"], 2, "{r}");
    let r = js_api(&c, "$JS.API.STREAM.LIST", r#"{"subject":"a.>"}"#).await;
    assert_eq!(r["total"], 1, "{r}");
    assert_eq!(r["streams"][0]["config"]["name"], "A", "{r}");
}

#[tokio::test]
async fn stream_update() {
    let s = Server::start_js(&[]);
    let c = s.client().await;
    create(&c, json!({"name": "U", "subjects": ["u.a"]})).await;
    for _ in 0..5 {
        publish_ok(&c, "u.a", "v", "U").await;
    }
    // Lower max_msgs: the oldest go.
    let r = js_api(
        &c,
        "$JS.API.STREAM.UPDATE.U",
        &json!({"name": "U", "subjects": ["u.a"], "max_msgs": 2}).to_string(),
    )
    .await;
    assert_eq!(r["type"], "io.nats.jetstream.api.v1.stream_update_response");
    assert!(r.get("error").is_none(), "{r}");
    assert_eq!(r["config"]["max_msgs"], 2, "{r}");
    assert_eq!(r["state"]["messages"], 2, "{r}");
    assert_eq!(r["state"]["first_seq"], 4, "{r}");

    // New subjects: the new one captures, the dropped one no longer does.
    let r = js_api(
        &c,
        "$JS.API.STREAM.UPDATE.U",
        &json!({"name": "U", "subjects": ["u.b", "u.c.>"], "max_msgs": 2}).to_string(),
    )
    .await;
    assert!(r.get("error").is_none(), "{r}");
    assert_eq!(r["config"]["subjects"], json!(["u.b", "u.c.>"]), "{r}");
    assert_eq!(publish_ok(&c, "u.c.x", "new", "U").await, 6);
    let err = common::within("publish to a dropped subject", c.request("u.a", "x".into()))
        .await
        .expect_err("u.a is no stream's subject any more");
    assert_eq!(err.kind(), async_nats::RequestErrorKind::NoResponders);

    // Storage cannot change.
    let r = js_api(
        &c,
        "$JS.API.STREAM.UPDATE.U",
        &json!({"name": "U", "subjects": ["u.b"], "storage": "memory"}).to_string(),
    )
    .await;
    assert_error(
        &r,
        500,
        10052,
        "stream configuration update can not change storage type",
    );
    // Unknown stream.
    let r = js_api(
        &c,
        "$JS.API.STREAM.UPDATE.NOPE",
        &json!({"name": "NOPE", "subjects": ["nope"]}).to_string(),
    )
    .await;
    assert_error(&r, 404, 10059, "stream not found");
    // The failed update changed nothing.
    let i = info(&c, "U").await;
    assert_eq!(i["config"]["storage"], "file", "{i}");
    assert_eq!(i["config"]["subjects"], json!(["u.b", "u.c.>"]), "{i}");
}

#[tokio::test]
async fn stream_delete() {
    let s = Server::start_js(&[]);
    let c = s.client().await;
    create(&c, json!({"name": "GONE", "subjects": ["gone"]})).await;
    create(&c, json!({"name": "KEPT", "subjects": ["kept"]})).await;
    publish_ok(&c, "gone", "v", "GONE").await;
    let r = js_api(&c, "$JS.API.STREAM.DELETE.GONE", "").await;
    assert_eq!(
        r,
        json!({"type": "io.nats.jetstream.api.v1.stream_delete_response", "success": true})
    );
    let r = js_api(&c, "$JS.API.STREAM.INFO.GONE", "").await;
    assert_error(&r, 404, 10059, "stream not found");
    let r = js_api(&c, "$JS.API.STREAM.DELETE.GONE", "").await;
    assert_error(&r, 404, 10059, "stream not found");
    let r = js_api(&c, "$JS.API.STREAM.NAMES", "").await;
    assert_eq!(r["streams"], json!(["KEPT"]), "{r}");
    // Its subject is free again.
    let err = common::within("publish after delete", c.request("gone", "x".into()))
        .await
        .expect_err("no stream captures 'gone'");
    assert_eq!(err.kind(), async_nats::RequestErrorKind::NoResponders);
    let r = create(&c, json!({"name": "GONE2", "subjects": ["gone"]})).await;
    assert_eq!(r["state"]["messages"], 0);
}

#[tokio::test]
async fn stream_purge_variants() {
    let s = Server::start_js(&[]);
    let c = s.client().await;
    create(&c, json!({"name": "PG", "subjects": ["pg.>"]})).await;
    // 1..=10: a at odd seqs, b at even.
    for i in 1..=10 {
        let subj = if i % 2 == 1 { "pg.a" } else { "pg.b" };
        publish_ok(&c, subj, &format!("{i}"), "PG").await;
    }
    let purge = |body: Value| {
        let c = c.clone();
        async move { js_api(&c, "$JS.API.STREAM.PURGE.PG", &body.to_string()).await }
    };
    // Filter: all of pg.a (5 messages).
    let r = purge(json!({"filter": "pg.a"})).await;
    assert_eq!(
        r,
        json!({"type": "io.nats.jetstream.api.v1.stream_purge_response", "success": true, "purged": 5})
    );
    let st = info(&c, "PG").await["state"].clone();
    assert_eq!(st["messages"], 5, "{st}");
    assert_eq!(st["first_seq"], 2, "{st}");
    // Up to (not including) seq 6: 2 and 4.
    let r = purge(json!({"seq": 6})).await;
    assert_eq!(r["purged"], 2, "{r}");
    assert_eq!(info(&c, "PG").await["state"]["first_seq"], 6);
    // Keep the newest 1 of pg.b: 6 and 8 go.
    let r = purge(json!({"filter": "pg.b", "keep": 1})).await;
    assert_eq!(r["purged"], 2, "{r}");
    let st = info(&c, "PG").await["state"].clone();
    assert_eq!(st["messages"], 1, "{st}");
    assert_eq!(st["first_seq"], 10, "{st}");
    // Everything.
    publish_ok(&c, "pg.a", "11", "PG").await;
    let r = js_api(&c, "$JS.API.STREAM.PURGE.PG", "").await;
    assert_eq!(r["purged"], 2, "{r}");
    let st = info(&c, "PG").await["state"].clone();
    assert_eq!(st["messages"], 0, "{st}");
    assert_eq!(st["bytes"], 0, "{st}");
    assert_eq!(st["first_seq"], 12, "{st}");
    assert_eq!(st["last_seq"], 11, "{st}");
    // Sequences go on after a purge.
    assert_eq!(publish_ok(&c, "pg.a", "12", "PG").await, 12);

    let r = js_api(&c, "$JS.API.STREAM.PURGE.NOPE", "").await;
    assert_error(&r, 404, 10059, "stream not found");
    assert_eq!(r["purged"], 0, "{r}");
}

#[tokio::test]
async fn msg_get_forms_and_headers() {
    let s = Server::start_js(&[]);
    let c = s.client().await;
    create(&c, json!({"name": "G", "subjects": ["g.>"]})).await;
    publish_ok(&c, "g.a", "one", "G").await; // 1
    let a = js_publish(
        &c,
        "g.b",
        &[("X-Trace", "t-1"), ("Nats-Msg-Id", "id2")],
        "two",
    )
    .await;
    assert_eq!(a["seq"], 2);
    publish_ok(&c, "g.a", "three", "G").await; // 3
    publish_ok(&c, "g.b", "four", "G").await; // 4

    let get = |body: &'static str| {
        let c = c.clone();
        async move { js_api(&c, "$JS.API.STREAM.MSG.GET.G", body).await }
    };
    let r = get(r#"{"seq":1}"#).await;
    assert_eq!(
        r["type"],
        "io.nats.jetstream.api.v1.stream_msg_get_response"
    );
    let m = &r["message"];
    assert_eq!(m["subject"], "g.a");
    assert_eq!(m["seq"], 1);
    assert_eq!(m["data"], b64("one"));
    assert!(m.get("hdrs").is_none(), "no headers: {r}");
    assert!(m["time"].as_str().is_some_and(|t| t.ends_with('Z')), "{r}");

    // Headers round trip as base64 of the NATS/1.0 block.
    let r = get(r#"{"seq":2}"#).await;
    let hdrs = unb64(&r["message"]["hdrs"]);
    assert!(hdrs.starts_with("NATS/1.0\r\n"), "{hdrs:?}");
    assert!(hdrs.contains("X-Trace: t-1\r\n"), "{hdrs:?}");
    assert!(hdrs.contains("Nats-Msg-Id: id2\r\n"), "{hdrs:?}");
    assert!(hdrs.ends_with("\r\n\r\n"), "{hdrs:?}");
    assert_eq!(unb64(&r["message"]["data"]), "two");

    let r = get(r#"{"last_by_subj":"g.a"}"#).await;
    assert_eq!(r["message"]["seq"], 3, "{r}");
    assert_eq!(unb64(&r["message"]["data"]), "three");
    let r = get(r#"{"last_by_subj":"g.*"}"#).await;
    assert_eq!(r["message"]["seq"], 4, "wildcard last: {r}");
    let r = get(r#"{"next_by_subj":"g.b","seq":1}"#).await;
    assert_eq!(r["message"]["seq"], 2, "{r}");
    let r = get(r#"{"next_by_subj":"g.b","seq":3}"#).await;
    assert_eq!(r["message"]["seq"], 4, "{r}");
    // seq is inclusive for next_by_subj.
    let r = get(r#"{"next_by_subj":"g.a","seq":3}"#).await;
    assert_eq!(r["message"]["seq"], 3, "{r}");

    for missing in [
        r#"{"seq":99}"#,
        r#"{"last_by_subj":"g.none"}"#,
        r#"{"next_by_subj":"g.a","seq":4}"#,
    ] {
        assert_error(&get(missing).await, 404, 10037, "no message found");
    }
    for bad in ["{}", ""] {
        assert_error(&get(bad).await, 400, 10003, "bad request");
    }
    let r = js_api(&c, "$JS.API.STREAM.MSG.GET.NOPE", r#"{"seq":1}"#).await;
    assert_error(&r, 404, 10059, "stream not found");

    // async-nats's direct_get-free path: Stream::get_raw_message.
    let js = async_nats::jetstream::new(c.clone());
    let stream = js.get_stream("G").await.unwrap();
    let raw = stream.get_raw_message(2).await.unwrap();
    assert_eq!(raw.subject.as_str(), "g.b");
    assert_eq!(&raw.payload[..], b"two");
    assert_eq!(raw.headers.get("X-Trace").map(|v| v.as_str()), Some("t-1"));
}

#[tokio::test]
async fn msg_delete_erase_and_no_erase() {
    let s = Server::start_js(&[]);
    let c = s.client().await;
    create(&c, json!({"name": "MD", "subjects": ["md"]})).await;
    for i in 1..=4 {
        publish_ok(&c, "md", &format!("{i}"), "MD").await;
    }
    let del = |body: Value| {
        let c = c.clone();
        async move { js_api(&c, "$JS.API.STREAM.MSG.DELETE.MD", &body.to_string()).await }
    };
    let r = del(json!({"seq": 2})).await;
    assert_eq!(
        r,
        json!({"type": "io.nats.jetstream.api.v1.stream_msg_delete_response", "success": true})
    );
    let r = del(json!({"seq": 3, "no_erase": true})).await;
    assert_eq!(r["success"], true, "{r}");
    for seq in [2, 3] {
        let r = js_api(
            &c,
            "$JS.API.STREAM.MSG.GET.MD",
            &json!({ "seq": seq }).to_string(),
        )
        .await;
        assert_error(&r, 404, 10037, "no message found");
    }
    let r = del(json!({"seq": 3})).await;
    assert_error(&r, 400, 10043, "sequence 3 not found");
    let r = del(json!({"seq": 99})).await;
    assert_error(&r, 500, 10057, "stream store EOF");
    let i = info_with(&c, "MD", json!({"deleted_details": true})).await;
    assert_eq!(i["state"]["messages"], 2, "{i}");
    assert_eq!(i["state"]["deleted"], json!([2, 3]), "{i}");
    // Deleting the first message moves first_seq (no interior gap).
    assert_eq!(del(json!({"seq": 1})).await["success"], true);
    let i = info_with(&c, "MD", json!({"deleted_details": true})).await;
    assert_eq!(i["state"]["first_seq"], 4, "{i}");
    assert_eq!(i["state"]["messages"], 1, "{i}");
    assert!(i["state"].get("deleted").is_none(), "{i}");
}

#[tokio::test]
async fn direct_get() {
    let s = Server::start_js(&[]);
    let c = s.client().await;
    create(
        &c,
        json!({"name": "DG", "subjects": ["dg.>"], "allow_direct": true}),
    )
    .await;
    create(&c, json!({"name": "NODIRECT", "subjects": ["nd"]})).await;
    publish_ok(&c, "dg.a", "one", "DG").await;
    let a = js_publish(&c, "dg.b", &[("X-Trace", "t-2")], "two").await;
    assert_eq!(a["seq"], 2);
    publish_ok(&c, "dg.a", "three", "DG").await;
    publish_ok(&c, "nd", "x", "NODIRECT").await;

    let req = |subject: &'static str, body: &'static str| {
        let c = c.clone();
        async move {
            common::within(
                &format!("direct get {subject}"),
                c.request(subject, body.into()),
            )
            .await
        }
    };
    let hdr = |m: &async_nats::Message, k: &str| {
        m.headers
            .as_ref()
            // A &str key is always a custom header name in async-nats;
            // parse it so that standard names (Nats-Stream) match.
            .and_then(|h| h.get(k.parse::<async_nats::HeaderName>().unwrap()))
            .map(|v| v.as_str().to_string())
    };

    // By sequence (JSON body).
    let m = req("$JS.API.DIRECT.GET.DG", r#"{"seq":2}"#).await.unwrap();
    assert_eq!(&m.payload[..], b"two");
    assert_eq!(m.status, None, "{m:?}");
    assert_eq!(hdr(&m, "Nats-Stream").as_deref(), Some("DG"), "{m:?}");
    assert_eq!(hdr(&m, "Nats-Sequence").as_deref(), Some("2"));
    assert_eq!(hdr(&m, "Nats-Subject").as_deref(), Some("dg.b"));
    assert!(hdr(&m, "Nats-Time-Stamp").is_some(), "{m:?}");
    // The message's own headers come along.
    assert_eq!(hdr(&m, "X-Trace").as_deref(), Some("t-2"));

    // Last by subject in the request subject (empty body).
    let m = req("$JS.API.DIRECT.GET.DG.dg.a", "").await.unwrap();
    assert_eq!(&m.payload[..], b"three");
    assert_eq!(hdr(&m, "Nats-Sequence").as_deref(), Some("3"));
    assert_eq!(hdr(&m, "Nats-Subject").as_deref(), Some("dg.a"));
    // Last by subject in the body.
    let m = req("$JS.API.DIRECT.GET.DG", r#"{"last_by_subj":"dg.b"}"#)
        .await
        .unwrap();
    assert_eq!(hdr(&m, "Nats-Sequence").as_deref(), Some("2"));
    let m = req(
        "$JS.API.DIRECT.GET.DG",
        r#"{"next_by_subj":"dg.a","seq":2}"#,
    )
    .await
    .unwrap();
    assert_eq!(hdr(&m, "Nats-Sequence").as_deref(), Some("3"));

    // Missing: a 404 status message, no payload.
    for (subject, body) in [
        ("$JS.API.DIRECT.GET.DG", r#"{"seq":99}"#),
        ("$JS.API.DIRECT.GET.DG.dg.none", ""),
    ] {
        let m = req(subject, body).await.unwrap();
        assert_eq!(m.status, Some(async_nats::StatusCode::NOT_FOUND), "{m:?}");
        assert_eq!(m.description.as_deref(), Some("Message Not Found"));
        assert!(m.payload.is_empty());
    }
    // An empty request is a 408.
    let m = req("$JS.API.DIRECT.GET.DG", "").await.unwrap();
    assert_eq!(m.status.map(|s| s.as_u16()), Some(408), "{m:?}");
    assert_eq!(m.description.as_deref(), Some("Empty Request"));

    // Without allow_direct nobody answers.
    let err = req("$JS.API.DIRECT.GET.NODIRECT", r#"{"seq":1}"#)
        .await
        .expect_err("allow_direct is false");
    assert_eq!(err.kind(), async_nats::RequestErrorKind::NoResponders);

    // async-nats's direct get.
    let js = async_nats::jetstream::new(c.clone());
    let stream = js.get_stream("DG").await.unwrap();
    let m = stream.direct_get(1).await.unwrap();
    assert_eq!(&m.payload[..], b"one");
    let m = stream.direct_get_last_for_subject("dg.a").await.unwrap();
    assert_eq!(&m.payload[..], b"three");
}

#[tokio::test]
async fn streams_persist_across_restart() {
    let mut s = Server::start_js(&[]);
    let c = s.client().await;
    create(
        &c,
        json!({"name": "FILE", "subjects": ["f.>"], "max_msgs_per_subject": 2}),
    )
    .await;
    create(
        &c,
        json!({"name": "MEM", "subjects": ["mem"], "storage": "memory"}),
    )
    .await;
    for i in 1..=5u64 {
        let subj = if i % 2 == 0 { "f.even" } else { "f.odd" };
        assert_eq!(publish_ok(&c, subj, &format!("v{i}"), "FILE").await, i);
    }
    let a = js_publish(
        &c,
        "f.hdr",
        &[("Nats-Msg-Id", "persist-1"), ("X-K", "v")],
        "h",
    )
    .await;
    assert_eq!(a["seq"], 6);
    let r = js_api(&c, "$JS.API.STREAM.MSG.DELETE.FILE", r#"{"seq":4}"#).await;
    assert_eq!(r["success"], true);
    publish_ok(&c, "mem", "gone after restart", "MEM").await;
    let before = info(&c, "FILE").await;
    drop(c);

    s.restart();
    let c = s.client().await;
    let after = info(&c, "FILE").await;
    assert_eq!(after["config"], before["config"], "config survives");
    assert_eq!(after["created"], before["created"], "created survives");
    for k in ["messages", "bytes", "first_seq", "last_seq", "num_deleted"] {
        assert_eq!(after["state"][k], before["state"][k], "state.{k}: {after}");
    }
    assert_eq!(after["state"]["messages"], 4, "{after}");
    // 1 was dropped by max_msgs_per_subject (f.odd 1,3,5), 4 deleted.
    for (seq, data) in [(2, "v2"), (3, "v3"), (5, "v5"), (6, "h")] {
        let r = js_api(
            &c,
            "$JS.API.STREAM.MSG.GET.FILE",
            &json!({ "seq": seq }).to_string(),
        )
        .await;
        assert_eq!(unb64(&r["message"]["data"]), data, "seq {seq}: {r}");
    }
    let r = js_api(&c, "$JS.API.STREAM.MSG.GET.FILE", r#"{"seq":6}"#).await;
    assert!(unb64(&r["message"]["hdrs"]).contains("X-K: v\r\n"), "{r}");
    let r = js_api(&c, "$JS.API.STREAM.MSG.GET.FILE", r#"{"seq":4}"#).await;
    assert_error(&r, 404, 10037, "no message found");
    // The dedup window survives too.
    let a = js_publish(&c, "f.hdr", &[("Nats-Msg-Id", "persist-1")], "h").await;
    assert_eq!(a["duplicate"], true, "{a}");
    assert_eq!(a["seq"], 6, "{a}");
    // Sequences continue.
    assert_eq!(publish_ok(&c, "f.new", "v7", "FILE").await, 7);

    // A memory stream does not survive a restart at all (nats-server keeps
    // no definition of it on disk).
    let r = js_api(&c, "$JS.API.STREAM.INFO.MEM", "").await;
    assert_error(&r, 404, 10059, "stream not found");
    let r = js_api(&c, "$JS.API.STREAM.NAMES", "").await;
    assert_eq!(r["streams"], json!(["FILE"]), "{r}");
}

/// The appliance's streams as deployed, with distinct subjects per stream.
fn deployment_streams() -> Vec<Value> {
    let data_subjects: Vec<String> = ["raw", "parsed", "enriched", "final", "unknown"]
        .iter()
        .map(|k| format!("app1.data.artifacts.{k}"))
        .collect();
    vec![
        json!({"name": "DATA", "subjects": data_subjects}),
        json!({"name": "EVENTS", "subjects": ["app1.events.>"], "retention": "limits", "max_age": 30 * DAY}),
        json!({"name": "LOGS", "subjects": ["app1.logs.>"]}),
        json!({"name": "METRICS", "subjects": ["app1.metrics.>"]}),
        json!({"name": "STATUSES", "subjects": ["app1.statuses.>"]}),
        json!({"name": "WORKFLOWS", "subjects": ["app1.workflows.>"], "retention": "workqueue", "max_age": 7 * DAY}),
        json!({"name": "COMMANDS", "subjects": ["app1.commands.>"], "retention": "workqueue", "max_age": HOUR}),
        json!({"name": "NOTIFICATIONS", "subjects": ["app1.notifications.>"], "retention": "interest", "max_age": DAY}),
        json!({"name": "JOBS", "subjects": ["jobs.>"], "retention": "workqueue", "max_age": DAY, "discard": "old"}),
        json!({"name": "SIGNALS", "subjects": ["signals.>"], "retention": "interest", "max_age": 7 * DAY}),
    ]
}

/// A subject inside each deployment stream.
fn sample_subject(cfg: &Value) -> String {
    let s = cfg["subjects"][0].as_str().unwrap();
    s.replace('>', "sample")
}

#[tokio::test]
async fn deployment_streams_as_written() {
    let s = Server::start_js(&[]);
    let c = s.client().await;
    for cfg in deployment_streams() {
        let r = create(&c, cfg.clone()).await;
        let got = &r["config"];
        for (k, v) in cfg.as_object().unwrap() {
            assert_eq!(&got[k], v, "{}: config.{k} in {r}", cfg["name"]);
        }
    }
    let names = js_api(&c, "$JS.API.STREAM.NAMES", "").await;
    assert_eq!(names["total"], 10, "{names}");

    for cfg in deployment_streams() {
        let name = cfg["name"].as_str().unwrap();
        let subject = sample_subject(&cfg);
        let payload = format!("{name} payload");
        let seq = publish_ok(&c, &subject, &payload, name).await;
        assert_eq!(seq, 1, "{name}");
        let r = js_api(
            &c,
            &format!("$JS.API.STREAM.MSG.GET.{name}"),
            r#"{"seq":1}"#,
        )
        .await;
        if cfg["retention"] == "interest" {
            // Interest retention with no consumers keeps nothing.
            assert_error(&r, 404, 10037, "no message found");
            assert_eq!(info(&c, name).await["state"]["messages"], 0);
        } else {
            assert_eq!(r["message"]["subject"], subject.as_str(), "{name}: {r}");
            assert_eq!(unb64(&r["message"]["data"]), payload, "{name}");
            assert_eq!(info(&c, name).await["state"]["messages"], 1, "{name}");
        }
    }
    // Every DATA subject lands in DATA.
    for (i, k) in ["raw", "parsed", "enriched", "final", "unknown"]
        .iter()
        .enumerate()
    {
        let seq = publish_ok(&c, &format!("app1.data.artifacts.{k}"), k, "DATA").await;
        assert_eq!(seq, i as u64 + 2);
    }
    // Workqueue streams refuse a second unfiltered consumer only later;
    // here: a subject overlapping a workqueue stream is refused too.
    let r = js_api(
        &c,
        "$JS.API.STREAM.CREATE.JOBS2",
        &json!({"name": "JOBS2", "subjects": ["jobs.x"]}).to_string(),
    )
    .await;
    assert_error(&r, 400, 10065, "subjects overlap with an existing stream");
}

#[tokio::test]
async fn streams_across_shards_survive_reshard() {
    ours_only!("--shards and stream placement over shards");
    let mut s = Server::start_js(&["--shards", "4", "--shard_fill", "1"]);
    let admin = s.client().await;
    let names = ["S0", "S1", "S2", "S3", "S4", "S5"];
    for (i, n) in names.iter().enumerate() {
        create(
            &admin,
            json!({"name": n, "subjects": [format!("sh.{i}.>")]}),
        )
        .await;
    }
    // Several connections (on different shards with --shard_fill 1), each
    // publishing into every stream.
    let mut clients = Vec::new();
    for _ in 0..4 {
        clients.push(s.client().await);
    }
    let mut tasks = Vec::new();
    for (ci, c) in clients.iter().enumerate() {
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            let mut acks = Vec::new();
            for round in 0..5 {
                for (i, n) in ["S0", "S1", "S2", "S3", "S4", "S5"].iter().enumerate() {
                    let ack =
                        js_publish(&c, &format!("sh.{i}.c{ci}"), &[], &format!("{ci}-{round}"))
                            .await;
                    assert!(ack.get("error").is_none(), "{ack}");
                    assert_eq!(ack["stream"], *n, "{ack}");
                    acks.push((i, ack["seq"].as_u64().unwrap()));
                }
            }
            acks
        }));
    }
    let mut seqs: Vec<Vec<u64>> = vec![Vec::new(); names.len()];
    for t in tasks {
        for (i, seq) in t.await.unwrap() {
            seqs[i].push(seq);
        }
    }
    // Per stream: 20 distinct seqs 1..=20.
    for (i, mut v) in seqs.into_iter().enumerate() {
        v.sort_unstable();
        assert_eq!(v, (1..=20).collect::<Vec<u64>>(), "stream {}", names[i]);
    }
    let mut before = Vec::new();
    for n in names {
        let i = info(&admin, n).await;
        assert_eq!(i["state"]["messages"], 20, "{i}");
        before.push(i);
    }
    drop(clients);
    drop(admin);

    s.restart_edit(|args| {
        let at = args.iter().position(|a| a == "--shards").unwrap();
        args[at + 1] = "2".into();
    });
    let c = s.client().await;
    let r = js_api(&c, "$JS.API.STREAM.NAMES", "").await;
    assert_eq!(r["streams"], json!(names), "{r}");
    for (n, b) in names.iter().zip(&before) {
        let i = info(&c, n).await;
        assert_eq!(i["config"], b["config"], "{n}");
        for k in ["messages", "bytes", "first_seq", "last_seq"] {
            assert_eq!(i["state"][k], b["state"][k], "{n} state.{k}");
        }
    }
    // Readable and writable from connections on both shards.
    let c2 = s.client().await;
    for (i, n) in names.iter().enumerate() {
        let cl = if i % 2 == 0 { &c } else { &c2 };
        let r = js_api(cl, &format!("$JS.API.STREAM.MSG.GET.{n}"), r#"{"seq":20}"#).await;
        assert!(r["message"]["subject"].is_string(), "{n}: {r}");
        assert_eq!(publish_ok(cl, &format!("sh.{i}.after"), "x", n).await, 21);
    }
}
