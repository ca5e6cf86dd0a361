//! `provision { }` (Broker Edge only; nats-server has no such block):
//! declared streams, KV buckets and durable consumers exist once the server
//! is up, variables fill in per-appliance subjects, a restart changes
//! nothing, a reload creates what is new and applies what is safe, refuses
//! (and logs) what would drop stored messages, and deletes nothing.

mod common;

use std::time::{Duration, Instant};

use common::{js_api, Server, STEP};

fn conf(store: &str, id: &str, streams: &str) -> String {
    format!(
        "jetstream {{ store_dir: {store:?} }}\n\
         APPLIANCE_ID: {id:?}\n\
         provision {{\n\
           variables {{ APPLIANCE_ID: $APPLIANCE_ID }}\n\
           streams: [\n{streams}\n]\n\
           kv: [ {{ bucket: SERVERS, history: 5 }} ]\n\
           consumers: [ {{ stream: DATA, durable_name: INDEXER, ack_policy: explicit }} ]\n\
         }}\n"
    )
}

const STREAMS: &str = r#"
  { name: DATA, subjects: ["$APPLIANCE_ID.data.>"], max_age: "168h" }
  { name: EVENTS, subjects: ["${APPLIANCE_ID}.events.>"], max_msgs: 1000 }
"#;

/// Stream info once the stream exists (provisioning runs just after start).
async fn stream_info(c: &async_nats::Client, name: &str) -> serde_json::Value {
    let deadline = Instant::now() + STEP;
    loop {
        let v = js_api(c, &format!("$JS.API.STREAM.INFO.{name}"), "").await;
        if v.get("error").is_none() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "stream {name} never appeared: {v}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn declared_assets_are_created_kept_and_reconciled() {
    ours_only!("provision { } is Broker Edge's");
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("js");
    let store = store.to_str().unwrap();
    let mut s = Server::start_with_config(&conf(store, "box-17", STREAMS), &[]);
    let c = s.client().await;

    let data = stream_info(&c, "DATA").await;
    assert_eq!(data["config"]["subjects"][0], "box-17.data.>", "{data}");
    assert_eq!(data["config"]["max_age"], 168u64 * 3600 * 1_000_000_000);
    let events = stream_info(&c, "EVENTS").await;
    assert_eq!(events["config"]["subjects"][0], "box-17.events.>");
    let kv = stream_info(&c, "KV_SERVERS").await;
    assert_eq!(kv["config"]["max_msgs_per_subject"], 5, "{kv}");
    let deadline = Instant::now() + STEP;
    loop {
        let ci = js_api(&c, "$JS.API.CONSUMER.INFO.DATA.INDEXER", "").await;
        if ci.get("error").is_none() {
            assert_eq!(ci["config"]["ack_policy"], "explicit", "{ci}");
            break;
        }
        assert!(Instant::now() < deadline, "consumer never appeared: {ci}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The bucket is a working KV bucket for a client.
    let js = async_nats::jetstream::new(c.clone());
    let bucket = js.get_key_value("SERVERS").await.unwrap();
    bucket.put("edge-1", "10.0.0.1".into()).await.unwrap();
    assert_eq!(
        bucket.get("edge-1").await.unwrap().as_deref(),
        Some(&b"10.0.0.1"[..])
    );
    c.request("box-17.events.boot", "up".into()).await.unwrap();
    drop(c);

    // A restart: everything is there already, nothing is recreated.
    s.restart();
    // (The log keeps the first run's lines: wait for the second report.)
    let deadline = Instant::now() + STEP;
    while s
        .log()
        .matches("provision: 4 of 4 declared streams and consumers in place")
        .count()
        < 2
    {
        assert!(Instant::now() < deadline, "{}", s.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let c = s.client().await;
    assert_eq!(stream_info(&c, "EVENTS").await["state"]["messages"], 1);
    let log = s.log();
    assert_eq!(
        log.matches("provision: stream EVENTS created").count(),
        1,
        "{log}"
    );

    // A reload: LOGS is new (created), DATA gains a subject (applied),
    // EVENTS' tighter limit would drop messages (refused, logged), and
    // nothing undeclared goes (the bucket and consumer are no longer
    // declared, yet stay).
    let reloaded = r#"
  { name: DATA, subjects: ["$APPLIANCE_ID.data.>", "$APPLIANCE_ID.artifacts.>"], max_age: "168h" }
  { name: EVENTS, subjects: ["${APPLIANCE_ID}.events.>"], max_msgs: 10 }
  { name: LOGS, subjects: ["$APPLIANCE_ID.logs.>"] }
"#;
    let text = conf(store, "box-17", reloaded)
        .replace("kv: [ { bucket: SERVERS, history: 5 } ]\n", "")
        .replace(
            "consumers: [ { stream: DATA, durable_name: INDEXER, ack_policy: explicit } ]\n",
            "",
        );
    std::fs::write(s.config_path(), text).unwrap();
    s.signal(libc::SIGHUP);
    s.wait_log("would drop stored messages", STEP).await;
    let logs = stream_info(&c, "LOGS").await;
    assert_eq!(logs["config"]["subjects"][0], "box-17.logs.>");
    let data = stream_info(&c, "DATA").await;
    assert_eq!(
        data["config"]["subjects"][1], "box-17.artifacts.>",
        "{data}"
    );
    let events = stream_info(&c, "EVENTS").await;
    assert_eq!(events["config"]["max_msgs"], 1000, "{events}");
    assert_eq!(events["state"]["messages"], 1);
    assert!(js_api(&c, "$JS.API.STREAM.INFO.KV_SERVERS", "")
        .await
        .get("error")
        .is_none());
    assert!(js_api(&c, "$JS.API.CONSUMER.INFO.DATA.INDEXER", "")
        .await
        .get("error")
        .is_none());
}

#[tokio::test]
async fn a_bad_declaration_stops_start_up_at_its_line() {
    ours_only!("provision { } is Broker Edge's");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.conf");
    std::fs::write(
        &path,
        "jetstream: enabled\nprovision {\n  streams: [\n    { name: A, subjects: [\"${NOPE}.x\"] }\n  ]\n}\n",
    )
    .unwrap();
    let (status, out, err) = common::run_to_exit(&["-c", path.to_str().unwrap()], STEP).await;
    assert!(!status.success());
    let text = format!("{out}{err}");
    assert!(text.contains("bad.conf:4:"), "{text}");
    assert!(text.contains("NOPE"), "{text}");

    std::fs::write(
        &path,
        "jetstream: enabled\nprovision {\n  consumers: [ { stream: A, ack_policy: explicit } ]\n}\n",
    )
    .unwrap();
    let (status, out, err) = common::run_to_exit(&["-c", path.to_str().unwrap()], STEP).await;
    assert!(!status.success());
    let text = format!("{out}{err}");
    assert!(text.contains("durable_name"), "{text}");
}
