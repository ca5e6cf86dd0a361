//! JetStream consumers over `$JS.API` (raw JSON) and the async-nats
//! JetStream client: create/info/names/list/delete and their errors, pull
//! fetch/batch/`messages()`, push consumers (plain and to a queue group),
//! ordered consumers, every ack kind, redelivery after `ack_wait`, backoff,
//! `max_deliver` with its advisory and the dead-letter flow, ack policies,
//! filters, deliver policies, workqueue and interest retention, durable
//! state across a restart and a SIGKILL, ephemeral clean-up, and a storm of
//! 50 consumers over 10 streams.
//!
//! Every expected value here was checked against nats-server 2.15.3:
//!
//!     BROKER_EDGE_BIN=$PWD/target/refs/bin/nats-server-2.15.3 \
//!         cargo test -p broker-edge --test jetstream_consumers
//!
//! No test asserts a timing tightly: waits are polling loops with generous
//! deadlines, and `ack_wait` is 1–2 s.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::future::IntoFuture;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream::{
    self,
    consumer::{self, pull, push, AckPolicy, DeliverPolicy},
    stream, AckKind,
};
use futures::StreamExt;
use serde_json::{json, Value};

use common::{js_api, within, Server};

const NS: u64 = 1_000_000_000;

type PullConsumer = consumer::Consumer<pull::Config>;

async fn connect(s: &Server) -> (async_nats::Client, jetstream::Context) {
    let c = s.client().await;
    let js = jetstream::new(c.clone());
    (c, js)
}

/// Create a stream with `subjects` (file storage, limits retention).
async fn mk_stream(js: &jetstream::Context, name: &str, subjects: &[&str]) -> stream::Stream {
    mk_stream_cfg(
        js,
        stream::Config {
            name: name.into(),
            subjects: subjects.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        },
    )
    .await
}

async fn mk_stream_cfg(js: &jetstream::Context, cfg: stream::Config) -> stream::Stream {
    let name = cfg.name.clone();
    within(&format!("create stream {name}"), js.create_stream(cfg))
        .await
        .unwrap_or_else(|e| panic!("create stream {name}: {e}"))
}

/// A durable pull consumer with explicit acks and the given `ack_wait`.
fn pull_cfg(name: &str, ack_wait: Duration) -> pull::Config {
    pull::Config {
        durable_name: Some(name.into()),
        ack_policy: AckPolicy::Explicit,
        ack_wait,
        ..Default::default()
    }
}

async fn mk_pull(st: &stream::Stream, cfg: pull::Config) -> PullConsumer {
    within("create consumer", st.create_consumer(cfg))
        .await
        .unwrap_or_else(|e| panic!("create consumer: {e}"))
}

/// Publish and wait for the PubAck; returns the stream sequence.
async fn publish(js: &jetstream::Context, subject: &str, payload: &str) -> u64 {
    let ack = within(
        &format!("publish {subject}"),
        js.publish(subject.to_string(), payload.to_string().into()),
    )
    .await
    .unwrap_or_else(|e| panic!("publish {subject}: {e}"));
    within("PubAck", ack.into_future())
        .await
        .unwrap_or_else(|e| panic!("PubAck {subject}: {e}"))
        .sequence
}

/// Up to `n` messages, waiting at most `expires` (server-side) for them.
async fn fetch(cons: &PullConsumer, n: usize, expires: Duration) -> Vec<jetstream::Message> {
    let mut batch = within(
        "pull request",
        cons.batch().max_messages(n).expires(expires).messages(),
    )
    .await
    .unwrap_or_else(|e| panic!("pull request: {e}"));
    let mut out = Vec::new();
    let fut = async {
        while let Some(m) = batch.next().await {
            out.push(m.unwrap_or_else(|e| panic!("pull batch: {e}")));
        }
    };
    tokio::time::timeout(expires + Duration::from_secs(10), fut)
        .await
        .expect("pull batch did not end");
    out
}

/// What is there right now (`no_wait`): ends on the server's 404.
async fn fetch_now(cons: &PullConsumer, n: usize) -> Vec<jetstream::Message> {
    let mut batch = within("fetch", cons.fetch().max_messages(n).messages())
        .await
        .unwrap_or_else(|e| panic!("fetch: {e}"));
    let mut out = Vec::new();
    within("fetch batch end", async {
        while let Some(m) = batch.next().await {
            out.push(m.unwrap_or_else(|e| panic!("fetch batch: {e}")));
        }
    })
    .await;
    out
}

fn seq(m: &jetstream::Message) -> u64 {
    m.info().expect("JetStream reply subject").stream_sequence
}

fn delivered(m: &jetstream::Message) -> i64 {
    m.info().expect("JetStream reply subject").delivered
}

fn seqs(ms: &[jetstream::Message]) -> Vec<u64> {
    ms.iter().map(seq).collect()
}

async fn ack(m: &jetstream::Message) {
    within("double ack", m.double_ack())
        .await
        .unwrap_or_else(|e| panic!("double ack: {e}"));
}

/// Raw consumer info (must succeed).
async fn cinfo(c: &async_nats::Client, stream: &str, cons: &str) -> Value {
    let r = js_api(c, &format!("$JS.API.CONSUMER.INFO.{stream}.{cons}"), "").await;
    assert!(
        r.get("error").is_none(),
        "consumer info {stream}.{cons}: {r}"
    );
    r
}

async fn stream_msgs(c: &async_nats::Client, stream: &str) -> u64 {
    let r = js_api(c, &format!("$JS.API.STREAM.INFO.{stream}"), "").await;
    r["state"]["messages"]
        .as_u64()
        .unwrap_or_else(|| panic!("stream info {stream}: {r}"))
}

#[track_caller]
fn assert_error(r: &Value, code: u64, err_code: u64, description: &str) {
    let e = &r["error"];
    assert!(e.is_object(), "expected an error, got {r}");
    assert_eq!(e["code"], code, "code in {r}");
    assert_eq!(e["err_code"], err_code, "err_code in {r}");
    assert_eq!(e["description"], description, "description in {r}");
}

/// Poll `f` (every 50 ms) until it returns true; panic after `limit`.
async fn eventually<F, Fut>(what: &str, limit: Duration, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !f().await {
        assert!(Instant::now() < deadline, "not within {limit:?}: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn next_json(sub: &mut async_nats::Subscriber, what: &str) -> (String, Value) {
    let m = within(what, sub.next())
        .await
        .unwrap_or_else(|| panic!("{what}: subscription ended"));
    let v: Value = serde_json::from_slice(&m.payload)
        .unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {:?}", m.payload));
    (m.subject.to_string(), v)
}

// ---------------------------------------------------------------------------
// Management over $JS.API and async-nats.
// ---------------------------------------------------------------------------

#[tokio::test]
async fn raw_create_info_names_list_delete() {
    let s = Server::start_js(&[]);
    let (c, js) = connect(&s).await;
    mk_stream(&js, "S", &["s.>"]).await;
    for i in 1..=3 {
        publish(&js, &format!("s.{i}"), "x").await;
    }

    let body =
        json!({"stream_name": "S", "config": {"durable_name": "C", "ack_policy": "explicit"}});
    let r = js_api(&c, "$JS.API.CONSUMER.CREATE.S.C", &body.to_string()).await;
    assert_eq!(
        r["type"],
        "io.nats.jetstream.api.v1.consumer_create_response"
    );
    assert_eq!(r["stream_name"], "S", "{r}");
    assert_eq!(r["name"], "C", "{r}");
    assert!(
        r["created"].as_str().is_some_and(|t| t.ends_with('Z')),
        "{r}"
    );
    let cfg = &r["config"];
    assert_eq!(cfg["durable_name"], "C", "{r}");
    assert_eq!(cfg["name"], "C", "{r}");
    assert_eq!(cfg["deliver_policy"], "all", "{r}");
    assert_eq!(cfg["ack_policy"], "explicit", "{r}");
    assert_eq!(cfg["ack_wait"], 30 * NS, "{r}");
    assert_eq!(cfg["max_deliver"], -1, "{r}");
    assert_eq!(cfg["replay_policy"], "instant", "{r}");
    assert_eq!(cfg["max_waiting"], 512, "{r}");
    assert_eq!(cfg["max_ack_pending"], 1000, "{r}");
    assert_eq!(cfg["num_replicas"], 0, "{r}");
    assert!(cfg.get("deliver_subject").is_none(), "pull: {r}");
    assert!(cfg.get("inactive_threshold").is_none(), "durable: {r}");
    for k in ["delivered", "ack_floor"] {
        assert_eq!(
            r[k],
            json!({"consumer_seq": 0, "stream_seq": 0}),
            "{k}: {r}"
        );
    }
    assert_eq!(r["num_ack_pending"], 0, "{r}");
    assert_eq!(r["num_redelivered"], 0, "{r}");
    assert_eq!(r["num_waiting"], 0, "{r}");
    assert_eq!(r["num_pending"], 3, "{r}");

    // The same config again: success, the same consumer.
    let again = js_api(&c, "$JS.API.CONSUMER.CREATE.S.C", &body.to_string()).await;
    assert!(again.get("error").is_none(), "{again}");
    assert_eq!(again["created"], r["created"], "{again}");

    let i = cinfo(&c, "S", "C").await;
    assert_eq!(i["type"], "io.nats.jetstream.api.v1.consumer_info_response");
    assert_eq!(i["config"]["ack_wait"], 30 * NS, "{i}");
    assert_eq!(i["num_pending"], 3, "{i}");

    // A push consumer has a deliver_subject and no max_waiting.
    let r = js_api(
        &c,
        "$JS.API.CONSUMER.CREATE.S.P",
        &json!({"stream_name": "S", "config": {"durable_name": "P", "deliver_subject": "dlv.p", "ack_policy": "explicit"}}).to_string(),
    )
    .await;
    assert_eq!(r["config"]["deliver_subject"], "dlv.p", "{r}");
    assert!(r["config"].get("max_waiting").is_none(), "{r}");

    // An ephemeral: a generated name and a 5 s inactive threshold.
    let r = js_api(
        &c,
        "$JS.API.CONSUMER.CREATE.S",
        &json!({"stream_name": "S", "config": {"ack_policy": "explicit"}}).to_string(),
    )
    .await;
    assert!(r.get("error").is_none(), "{r}");
    let eph = r["name"].as_str().unwrap().to_string();
    assert_eq!(eph.len(), 8, "generated name {r}");
    assert!(r["config"].get("durable_name").is_none(), "{r}");
    assert_eq!(r["config"]["inactive_threshold"], 5 * NS, "{r}");

    let names = js_api(&c, "$JS.API.CONSUMER.NAMES.S", "").await;
    assert_eq!(
        names["type"],
        "io.nats.jetstream.api.v1.consumer_names_response"
    );
    assert_eq!(names["total"], 3, "{names}");
    assert_eq!(names["offset"], 0, "{names}");
    assert_eq!(names["limit"], 1024, "{names}");
    let mut got: Vec<String> = names["consumers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    got.sort();
    let mut want = vec!["C".to_string(), "P".to_string(), eph.clone()];
    want.sort();
    assert_eq!(got, want, "{names}");

    let list = js_api(&c, "$JS.API.CONSUMER.LIST.S", "").await;
    assert_eq!(
        list["type"],
        "io.nats.jetstream.api.v1.consumer_list_response"
    );
    assert_eq!(list["total"], 3, "{list}");
    assert_eq!(list["limit"], 256, "{list}");
    let infos = list["consumers"].as_array().unwrap();
    assert_eq!(infos.len(), 3, "{list}");
    for i in infos {
        assert_eq!(i["stream_name"], "S", "{i}");
        assert!(i["config"]["ack_policy"] == "explicit", "{i}");
        assert_eq!(i["num_pending"], 3, "{i}");
    }

    let d = js_api(&c, "$JS.API.CONSUMER.DELETE.S.C", "").await;
    assert_eq!(
        d["type"],
        "io.nats.jetstream.api.v1.consumer_delete_response"
    );
    assert_eq!(d["success"], true, "{d}");
    let names = js_api(&c, "$JS.API.CONSUMER.NAMES.S", "").await;
    assert_eq!(names["total"], 2, "{names}");
    let si = js_api(&c, "$JS.API.STREAM.INFO.S", "").await;
    assert_eq!(si["state"]["consumer_count"], 2, "{si}");
}

#[tokio::test]
async fn raw_error_codes() {
    let s = Server::start_js(&[]);
    let (c, js) = connect(&s).await;
    mk_stream(&js, "S", &["s.>"]).await;
    let cfg = |extra: Value| {
        let mut c = json!({"durable_name": "C", "ack_policy": "explicit"});
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        c
    };

    let r = js_api(
        &c,
        "$JS.API.CONSUMER.CREATE.NOPE.C",
        &json!({"stream_name": "NOPE", "config": cfg(json!({}))}).to_string(),
    )
    .await;
    assert_error(&r, 404, 10059, "stream not found");

    for api in ["INFO", "DELETE"] {
        let r = js_api(&c, &format!("$JS.API.CONSUMER.{api}.S.MISSING"), "").await;
        assert_error(&r, 404, 10014, "consumer not found");
    }
    let r = js_api(&c, "$JS.API.CONSUMER.NAMES.NOPE", "").await;
    assert_error(&r, 404, 10059, "stream not found");

    // action "update" on a consumer that does not exist.
    let r = js_api(
        &c,
        "$JS.API.CONSUMER.CREATE.S.C",
        &json!({"stream_name": "S", "config": cfg(json!({})), "action": "update"}).to_string(),
    )
    .await;
    assert_error(&r, 400, 10149, "consumer does not exist");

    let r = js_api(
        &c,
        "$JS.API.CONSUMER.CREATE.S.C",
        &json!({"stream_name": "S", "config": cfg(json!({})), "action": "create"}).to_string(),
    )
    .await;
    assert!(r.get("error").is_none(), "{r}");
    // action "create" again with the same config: fine (idempotent).
    let r = js_api(
        &c,
        "$JS.API.CONSUMER.CREATE.S.C",
        &json!({"stream_name": "S", "config": cfg(json!({})), "action": "create"}).to_string(),
    )
    .await;
    assert!(r.get("error").is_none(), "{r}");
    // action "create" with a different config.
    let r = js_api(
        &c,
        "$JS.API.CONSUMER.CREATE.S.C",
        &json!({"stream_name": "S", "config": cfg(json!({"max_deliver": 5})), "action": "create"})
            .to_string(),
    )
    .await;
    assert_error(&r, 400, 10148, "consumer already exists");
    // Without an action a different but editable config is an update...
    let r = js_api(
        &c,
        "$JS.API.CONSUMER.CREATE.S.C",
        &json!({"stream_name": "S", "config": cfg(json!({"max_deliver": 5}))}).to_string(),
    )
    .await;
    assert!(r.get("error").is_none(), "{r}");
    assert_eq!(r["config"]["max_deliver"], 5, "{r}");
    // ... and "update" too.
    let r = js_api(
        &c,
        "$JS.API.CONSUMER.CREATE.S.C",
        &json!({"stream_name": "S", "config": cfg(json!({"max_deliver": 7})), "action": "update"})
            .to_string(),
    )
    .await;
    assert_eq!(r["config"]["max_deliver"], 7, "{r}");
    // A field that cannot change.
    let r = js_api(
        &c,
        "$JS.API.CONSUMER.CREATE.S.C",
        &json!({"stream_name": "S", "config": cfg(json!({"ack_policy": "none"}))}).to_string(),
    )
    .await;
    assert_error(&r, 500, 10012, "ack policy can not be updated");
}

#[tokio::test]
async fn async_nats_management() {
    let s = Server::start_js(&[]);
    let (_c, js) = connect(&s).await;
    let st = mk_stream(&js, "M", &["m.>"]).await;
    publish(&js, "m.1", "one").await;

    let mut cons = mk_pull(&st, pull_cfg("D1", Duration::from_secs(2))).await;
    let info = within("info", cons.info()).await.unwrap().clone();
    assert_eq!(info.name, "D1");
    assert_eq!(info.stream_name, "M");
    assert_eq!(info.config.ack_wait, Duration::from_secs(2));
    assert_eq!(info.config.max_deliver, -1);
    assert_eq!(info.config.max_ack_pending, 1000);
    assert_eq!(info.config.max_waiting, 512);
    assert_eq!(info.num_pending, 1);
    mk_pull(
        &st,
        pull::Config {
            durable_name: Some("D2".into()),
            filter_subject: "m.2".into(),
            ..Default::default()
        },
    )
    .await;

    let mut names: Vec<String> = st
        .consumer_names()
        .map(|r| r.expect("consumer name"))
        .collect()
        .await;
    names.sort();
    assert_eq!(names, ["D1", "D2"]);
    let infos: Vec<consumer::Info> = st
        .consumers()
        .map(|r| r.expect("consumer info"))
        .collect()
        .await;
    assert_eq!(infos.len(), 2);
    let d2 = infos.iter().find(|i| i.name == "D2").expect("D2 listed");
    assert_eq!(d2.config.filter_subject, "m.2");
    assert_eq!(d2.num_pending, 0);

    let got: PullConsumer = within("get", st.get_consumer("D1")).await.unwrap();
    assert_eq!(got.cached_info().name, "D1");
    let err = within("get missing", st.get_consumer::<pull::Config>("NOPE"))
        .await
        .expect_err("missing consumer");
    assert!(err.to_string().contains("10014"), "{err}");

    within("delete", st.delete_consumer("D1")).await.unwrap();
    let Err(err) = within("delete again", st.delete_consumer("D1")).await else {
        panic!("deleted already");
    };
    assert!(err.to_string().contains("10014"), "{err}");
    let err = within("info deleted", st.consumer_info("D1"))
        .await
        .expect_err("deleted");
    assert!(err.to_string().contains("consumer not found"), "{err}");
}

// ---------------------------------------------------------------------------
// Pull.
// ---------------------------------------------------------------------------

#[tokio::test]
async fn pull_fetch_batch_expires_no_wait() {
    let s = Server::start_js(&[]);
    let (c, js) = connect(&s).await;
    let st = mk_stream(&js, "P", &["p.>"]).await;
    for i in 1..=5 {
        publish(&js, &format!("p.{i}"), &format!("m{i}")).await;
    }
    let cons = mk_pull(&st, pull_cfg("C", Duration::from_secs(30))).await;

    let first = fetch(&cons, 3, Duration::from_secs(2)).await;
    assert_eq!(seqs(&first), [1, 2, 3]);
    assert_eq!(first[0].payload.as_ref(), b"m1");
    assert_eq!(first[0].subject.as_str(), "p.1");
    let i0 = first[0].info().unwrap();
    assert_eq!((i0.stream, i0.consumer), ("P", "C"));
    assert_eq!((i0.consumer_sequence, i0.delivered, i0.pending), (1, 1, 4));
    // no_wait: what is left (2 of the 10 asked for), then the 404 ends it.
    let rest = fetch_now(&cons, 10).await;
    assert_eq!(seqs(&rest), [4, 5]);
    assert!(fetch_now(&cons, 10).await.is_empty());
    // With expires and nothing to deliver: the 408 ends an empty batch.
    assert!(fetch(&cons, 5, Duration::from_millis(500)).await.is_empty());

    let i = cinfo(&c, "P", "C").await;
    assert_eq!(i["num_pending"], 0, "{i}");
    assert_eq!(i["num_ack_pending"], 5, "{i}");
    assert_eq!(i["delivered"]["consumer_seq"], 5, "{i}");
    assert_eq!(i["delivered"]["stream_seq"], 5, "{i}");

    // The statuses on the wire, with a raw pull request.
    let inbox = c.new_inbox();
    let mut sub = c.subscribe(inbox.clone()).await.unwrap();
    common::sync(&c).await;
    c.publish_with_reply(
        "$JS.API.CONSUMER.MSG.NEXT.P.C",
        inbox.clone(),
        json!({"batch": 1, "no_wait": true}).to_string().into(),
    )
    .await
    .unwrap();
    let m = within("404", sub.next()).await.unwrap();
    assert_eq!(m.status.map(|s| s.as_u16()), Some(404), "{m:?}");
    assert_eq!(m.description.as_deref(), Some("No Messages"), "{m:?}");
    assert!(m.payload.is_empty(), "{m:?}");
    c.publish_with_reply(
        "$JS.API.CONSUMER.MSG.NEXT.P.C",
        inbox.clone(),
        json!({"batch": 1, "expires": 300_000_000u64})
            .to_string()
            .into(),
    )
    .await
    .unwrap();
    let m = within("408", sub.next()).await.unwrap();
    assert_eq!(m.status.map(|s| s.as_u16()), Some(408), "{m:?}");
    assert_eq!(m.description.as_deref(), Some("Request Timeout"), "{m:?}");

    // A waiting request is served by a later publish; the message carries
    // the $JS.ACK reply subject (stream, consumer, delivered, seqs).
    c.publish_with_reply(
        "$JS.API.CONSUMER.MSG.NEXT.P.C",
        inbox.clone(),
        json!({"batch": 1, "expires": 5_000_000_000u64})
            .to_string()
            .into(),
    )
    .await
    .unwrap();
    eventually("request waiting", Duration::from_secs(5), || async {
        cinfo(&c, "P", "C").await["num_waiting"] == 1
    })
    .await;
    publish(&js, "p.6", "late").await;
    let m = within("late message", sub.next()).await.unwrap();
    assert_eq!(m.subject.as_str(), "p.6");
    assert_eq!(m.payload.as_ref(), b"late");
    let reply = m.reply.as_ref().unwrap().to_string();
    assert!(reply.starts_with("$JS.ACK.P.C.1.6.6."), "{reply}");
}

#[tokio::test]
async fn pull_messages_stream_consumes_everything() {
    let s = Server::start_js(&[]);
    let (c, js) = connect(&s).await;
    let st = mk_stream(&js, "PM", &["pm"]).await;
    for i in 0..20 {
        publish(&js, "pm", &format!("{i}")).await;
    }
    let cons = mk_pull(&st, pull_cfg("C", Duration::from_secs(30))).await;
    let mut msgs = within(
        "messages()",
        cons.stream().max_messages_per_batch(7).messages(),
    )
    .await
    .unwrap();
    let js2 = js.clone();
    let publisher = tokio::spawn(async move {
        for i in 20..40 {
            publish(&js2, "pm", &format!("{i}")).await;
        }
    });
    for want in 1..=40u64 {
        let m = within("next message", msgs.next())
            .await
            .expect("stream ended")
            .expect("message");
        assert_eq!(seq(&m), want);
        assert_eq!(m.payload, format!("{}", want - 1).as_bytes());
        m.ack().await.unwrap();
    }
    publisher.await.unwrap();
    eventually("all acked", Duration::from_secs(10), || async {
        let i = cinfo(&c, "PM", "C").await;
        i["num_ack_pending"] == 0 && i["ack_floor"]["stream_seq"] == 40
    })
    .await;
}

// ---------------------------------------------------------------------------
// Push and ordered.
// ---------------------------------------------------------------------------

#[tokio::test]
async fn push_consumer_with_deliver_subject() {
    let s = Server::start_js(&[]);
    let (c, js) = connect(&s).await;
    let st = mk_stream(&js, "PU", &["pu.>"]).await;
    for i in 1..=5 {
        publish(&js, &format!("pu.{i}"), "x").await;
    }
    let cons: consumer::Consumer<push::Config> = within(
        "create push",
        st.create_consumer(push::Config {
            durable_name: Some("PUSH".into()),
            deliver_subject: "deliver.push".into(),
            ack_policy: AckPolicy::Explicit,
            ..Default::default()
        }),
    )
    .await
    .unwrap();
    let mut msgs = within("push messages", cons.messages()).await.unwrap();
    for want in 1..=10u64 {
        if want == 6 {
            for i in 6..=10 {
                publish(&js, &format!("pu.{i}"), "y").await;
            }
        }
        let m = within("push message", msgs.next())
            .await
            .expect("ended")
            .expect("message");
        assert_eq!(seq(&m), want);
        assert_eq!(m.subject.as_str(), format!("pu.{want}"));
        ack(&m).await;
    }
    let i = cinfo(&c, "PU", "PUSH").await;
    assert_eq!(i["push_bound"], true, "{i}");
    assert_eq!(i["num_ack_pending"], 0, "{i}");
    assert_eq!(i["num_pending"], 0, "{i}");
    assert_eq!(i["delivered"]["stream_seq"], 10, "{i}");
}

#[tokio::test]
async fn push_consumer_to_queue_group_each_message_once() {
    let s = Server::start_js(&[]);
    let (c, js) = connect(&s).await;
    let st = mk_stream(&js, "Q", &["q"]).await;
    let members: Vec<async_nats::Client> = vec![s.client().await, s.client().await];
    let mut subs = Vec::new();
    for m in &members {
        subs.push(
            m.queue_subscribe("deliver.q", "workers".into())
                .await
                .unwrap(),
        );
        common::sync(m).await;
    }
    within(
        "create push with group",
        st.create_consumer(push::Config {
            durable_name: Some("QG".into()),
            deliver_subject: "deliver.q".into(),
            deliver_group: Some("workers".into()),
            ack_policy: AckPolicy::Explicit,
            ..Default::default()
        }),
    )
    .await
    .unwrap();
    const N: u64 = 60;
    for _ in 0..N {
        publish(&js, "q", "work").await;
    }
    let seen: Arc<Mutex<Vec<(usize, u64)>>> = Default::default();
    let mut tasks = Vec::new();
    for (idx, (mut sub, client)) in subs.into_iter().zip(members).enumerate() {
        let seen = seen.clone();
        tasks.push(tokio::spawn(async move {
            while let Ok(Some(m)) = tokio::time::timeout(Duration::from_secs(2), sub.next()).await {
                let reply = m.reply.clone().expect("ack subject");
                let s: u64 = reply.split('.').nth(5).unwrap().parse().unwrap();
                seen.lock().unwrap().push((idx, s));
                client.publish(reply, "+ACK".into()).await.unwrap();
            }
            client.flush().await.unwrap();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let seen = seen.lock().unwrap().clone();
    let all: BTreeSet<u64> = seen.iter().map(|(_, s)| *s).collect();
    assert_eq!(seen.len() as u64, N, "each message exactly once: {seen:?}");
    assert_eq!(all, (1..=N).collect::<BTreeSet<_>>());
    for idx in 0..2 {
        assert!(
            seen.iter().any(|(i, _)| *i == idx),
            "member {idx} got nothing: {seen:?}"
        );
    }
    eventually("group acked", Duration::from_secs(10), || async {
        cinfo(&c, "Q", "QG").await["num_ack_pending"] == 0
    })
    .await;
}

#[tokio::test]
async fn ordered_consumers_see_every_message_in_order() {
    let s = Server::start_js(&[]);
    let (_c, js) = connect(&s).await;
    let st = mk_stream(&js, "ORD", &["ord.>"]).await;
    for i in 1..=50 {
        publish(&js, &format!("ord.{}", i % 3), &format!("{i}")).await;
    }
    let pull_ordered = within(
        "ordered pull",
        st.create_consumer(pull::OrderedConfig::default()),
    )
    .await
    .unwrap();
    let mut pulled = within("ordered messages", pull_ordered.messages())
        .await
        .unwrap();
    let push_ordered = within(
        "ordered push",
        st.create_consumer(push::OrderedConfig {
            deliver_subject: "deliver.ordered".into(),
            filter_subject: "ord.1".into(),
            ..Default::default()
        }),
    )
    .await
    .unwrap();
    let mut pushed = within("ordered push messages", push_ordered.messages())
        .await
        .unwrap();
    let js2 = js.clone();
    let publisher = tokio::spawn(async move {
        for i in 51..=100 {
            publish(&js2, &format!("ord.{}", i % 3), &format!("{i}")).await;
        }
    });
    for want in 1..=100u64 {
        let m = within("ordered pull message", pulled.next())
            .await
            .expect("ended")
            .expect("message");
        assert_eq!(seq(&m), want);
        assert_eq!(m.payload, format!("{want}").as_bytes());
    }
    for want in (1..=100u64).filter(|i| i % 3 == 1) {
        let m = within("ordered push message", pushed.next())
            .await
            .expect("ended")
            .expect("message");
        assert_eq!(seq(&m), want);
        assert_eq!(m.subject.as_str(), "ord.1");
    }
    publisher.await.unwrap();
}

// ---------------------------------------------------------------------------
// Acks and redelivery.
// ---------------------------------------------------------------------------

#[tokio::test]
async fn ack_kinds_ack_double_nak_delay_term() {
    let s = Server::start_js(&[]);
    let (c, js) = connect(&s).await;
    let st = mk_stream(&js, "AK", &["ak"]).await;
    for i in 1..=5 {
        publish(&js, "ak", &format!("{i}")).await;
    }
    let cons = mk_pull(&st, pull_cfg("C", Duration::from_secs(30))).await;
    let mut term_adv = c
        .subscribe("$JS.EVENT.ADVISORY.CONSUMER.MSG_TERMINATED.AK.C")
        .await
        .unwrap();
    common::sync(&c).await;

    let ms = fetch(&cons, 5, Duration::from_secs(2)).await;
    assert_eq!(seqs(&ms), [1, 2, 3, 4, 5]);
    within("ack", ms[0].ack_with(AckKind::Ack)).await.unwrap();
    within("double ack", ms[1].double_ack()).await.unwrap();
    within("nak", ms[2].ack_with(AckKind::Nak(None)))
        .await
        .unwrap();
    within(
        "nak delay",
        ms[3].ack_with(AckKind::Nak(Some(Duration::from_secs(2)))),
    )
    .await
    .unwrap();
    within("term", ms[4].ack_with(AckKind::Term)).await.unwrap();

    // The plain nak comes back at once; the delayed one not yet.
    let again = fetch(&cons, 5, Duration::from_secs(1)).await;
    assert_eq!(seqs(&again), [3], "only the plain nak is back");
    assert_eq!(delivered(&again[0]), 2);
    ack(&again[0]).await;
    // The delayed nak, later.
    let later = fetch(&cons, 5, Duration::from_secs(8)).await;
    assert_eq!(seqs(&later), [4]);
    assert_eq!(delivered(&later[0]), 2);
    ack(&later[0]).await;

    let (subj, a) = next_json(&mut term_adv, "terminated advisory").await;
    assert_eq!(subj, "$JS.EVENT.ADVISORY.CONSUMER.MSG_TERMINATED.AK.C");
    assert_eq!(a["type"], "io.nats.jetstream.advisory.v1.terminated", "{a}");
    assert_eq!(a["stream"], "AK", "{a}");
    assert_eq!(a["consumer"], "C", "{a}");
    assert_eq!(a["stream_seq"], 5, "{a}");
    assert_eq!(a["consumer_seq"], 5, "{a}");
    assert_eq!(a["deliveries"], 1, "{a}");

    // Nothing more: the terminated message is never redelivered.
    assert!(fetch(&cons, 5, Duration::from_millis(1500))
        .await
        .is_empty());
    let i = cinfo(&c, "AK", "C").await;
    assert_eq!(i["num_ack_pending"], 0, "{i}");
    assert_eq!(i["num_pending"], 0, "{i}");
    assert_eq!(i["num_redelivered"], 0, "after all acked: {i}");
    assert_eq!(i["ack_floor"]["stream_seq"], 5, "{i}");
    assert_eq!(
        i["delivered"]["consumer_seq"], 7,
        "5 + two redeliveries: {i}"
    );
}

#[tokio::test]
async fn progress_keeps_a_message_from_redelivery() {
    let s = Server::start_js(&[]);
    let (c, js) = connect(&s).await;
    let st = mk_stream(&js, "WPI", &["wpi"]).await;
    publish(&js, "wpi", "slow work").await;
    let cons = mk_pull(&st, pull_cfg("C", Duration::from_secs(2))).await;
    let ms = fetch(&cons, 1, Duration::from_secs(2)).await;
    assert_eq!(seqs(&ms), [1]);
    // Twice ack_wait in all, a +WPI every quarter of it.
    for _ in 0..8 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        within("progress", ms[0].ack_with(AckKind::Progress))
            .await
            .unwrap();
    }
    let i = cinfo(&c, "WPI", "C").await;
    assert_eq!(i["num_redelivered"], 0, "{i}");
    assert_eq!(i["num_ack_pending"], 1, "{i}");
    assert_eq!(i["delivered"]["consumer_seq"], 1, "{i}");
    ack(&ms[0]).await;
    assert!(fetch(&cons, 1, Duration::from_secs(3)).await.is_empty());
    let i = cinfo(&c, "WPI", "C").await;
    assert_eq!(i["num_ack_pending"], 0, "{i}");
    assert_eq!(i["ack_floor"]["stream_seq"], 1, "{i}");
}

#[tokio::test]
async fn redelivery_after_ack_wait_counts() {
    let s = Server::start_js(&[]);
    let (c, js) = connect(&s).await;
    let st = mk_stream(&js, "RD", &["rd"]).await;
    publish(&js, "rd", "a").await;
    publish(&js, "rd", "b").await;
    let cons = mk_pull(&st, pull_cfg("C", Duration::from_secs(1))).await;
    let ms = fetch(&cons, 2, Duration::from_secs(2)).await;
    assert_eq!(seqs(&ms), [1, 2]);
    assert_eq!(delivered(&ms[0]), 1);
    ack(&ms[1]).await;
    // Seq 1 is not acked: it comes back after ack_wait, delivered twice.
    let again = fetch(&cons, 1, Duration::from_secs(6)).await;
    assert_eq!(seqs(&again), [1]);
    let info = again[0].info().unwrap();
    assert_eq!(info.delivered, 2);
    assert_eq!(info.consumer_sequence, 3);
    assert_eq!(info.pending, 0);
    let i = cinfo(&c, "RD", "C").await;
    assert_eq!(i["num_redelivered"], 1, "{i}");
    assert_eq!(i["num_ack_pending"], 1, "{i}");
    assert_eq!(i["num_pending"], 0, "{i}");
    assert_eq!(i["ack_floor"]["stream_seq"], 0, "seq 1 still pending: {i}");
    ack(&again[0]).await;
    let i = cinfo(&c, "RD", "C").await;
    assert_eq!(i["num_ack_pending"], 0, "{i}");
    assert_eq!(i["num_redelivered"], 0, "{i}");
    assert_eq!(i["ack_floor"]["stream_seq"], 2, "{i}");
    assert_eq!(i["ack_floor"]["consumer_seq"], 3, "{i}");
}

#[tokio::test]
async fn backoff_and_max_deliveries_advisory() {
    let s = Server::start_js(&[]);
    let (c, js) = connect(&s).await;
    let st = mk_stream(&js, "BO", &["bo"]).await;
    let mut adv = c
        .subscribe("$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.BO.C")
        .await
        .unwrap();
    common::sync(&c).await;
    let mut cfg = pull_cfg("C", Duration::ZERO);
    cfg.backoff = vec![Duration::from_secs(1), Duration::from_secs(2)];
    cfg.max_deliver = 3;
    let mut cons = mk_pull(&st, cfg).await;
    let ci = within("info", cons.info()).await.unwrap();
    // ack_wait is taken from the first backoff step.
    assert_eq!(ci.config.ack_wait, Duration::from_secs(1));
    assert_eq!(
        ci.config.backoff,
        [Duration::from_secs(1), Duration::from_secs(2)]
    );
    publish(&js, "bo", "x").await;

    let start = Instant::now();
    let mut deliveries = Vec::new();
    while deliveries.len() < 3 && start.elapsed() < Duration::from_secs(20) {
        for m in fetch(&cons, 1, Duration::from_secs(4)).await {
            deliveries.push((seq(&m), delivered(&m), start.elapsed()));
        }
    }
    let counts: Vec<i64> = deliveries.iter().map(|d| d.1).collect();
    assert_eq!(counts, [1, 2, 3], "{deliveries:?}");
    assert!(deliveries.iter().all(|d| d.0 == 1), "{deliveries:?}");
    // The third delivery follows the second by the second step (2 s),
    // not by ack_wait; generous bound.
    let gap = deliveries[2].2 - deliveries[1].2;
    assert!(gap >= Duration::from_millis(1500), "{deliveries:?}");

    // No fourth delivery. (The reference sends the advisory when it would
    // redeliver, i.e. while a pull request waits, so pull first.)
    assert!(fetch(&cons, 1, Duration::from_secs(4)).await.is_empty());
    let (subj, a) = next_json(&mut adv, "max deliveries advisory").await;
    assert_eq!(subj, "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.BO.C");
    assert_eq!(
        a["type"], "io.nats.jetstream.advisory.v1.max_deliver",
        "{a}"
    );
    assert_eq!(a["stream"], "BO", "{a}");
    assert_eq!(a["consumer"], "C", "{a}");
    assert_eq!(a["stream_seq"], 1, "{a}");
    assert_eq!(a["deliveries"], 3, "{a}");
    let i = cinfo(&c, "BO", "C").await;
    assert_eq!(i["num_pending"], 0, "{i}");
}

#[tokio::test]
async fn dead_letter_flow_via_max_deliveries() {
    let s = Server::start_js(&[]);
    let (c, js) = connect(&s).await;
    let orders = mk_stream(&js, "ORDERS", &["orders.>"]).await;
    let dlq = mk_stream(
        &js,
        "DLQ",
        &["$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.>"],
    )
    .await;
    let mut term_adv = c
        .subscribe("$JS.EVENT.ADVISORY.CONSUMER.MSG_TERMINATED.ORDERS.WORKER")
        .await
        .unwrap();
    common::sync(&c).await;
    let mut cfg = pull_cfg("WORKER", Duration::from_secs(1));
    cfg.max_deliver = 2;
    let worker = mk_pull(&orders, cfg).await;
    publish(&js, "orders.ok", "fine").await;
    publish(&js, "orders.poison", "poison").await;
    publish(&js, "orders.bad", "terminate me").await;

    let deadline = Instant::now() + Duration::from_secs(20);
    let mut poison_deliveries = 0;
    while Instant::now() < deadline {
        let ms = fetch(&worker, 3, Duration::from_secs(2)).await;
        if ms.is_empty() && poison_deliveries == 2 {
            break;
        }
        for m in ms {
            match m.subject.as_str() {
                "orders.ok" => ack(&m).await,
                "orders.bad" => m.ack_with(AckKind::Term).await.unwrap(),
                "orders.poison" => {
                    poison_deliveries += 1;
                    m.ack_with(AckKind::Nak(None)).await.unwrap();
                }
                other => panic!("unexpected {other}"),
            }
        }
    }
    assert_eq!(poison_deliveries, 2);

    let (_, t) = next_json(&mut term_adv, "terminated advisory").await;
    assert_eq!(t["stream_seq"], 3, "{t}");

    // The advisory landed in the DLQ stream; the original is fetched by seq.
    eventually("advisory stored", Duration::from_secs(10), || async {
        stream_msgs(&c, "DLQ").await == 1
    })
    .await;
    let dl = mk_pull(&dlq, pull_cfg("DL", Duration::from_secs(30))).await;
    let ms = fetch(&dl, 5, Duration::from_secs(1)).await;
    assert_eq!(ms.len(), 1);
    assert_eq!(
        ms[0].subject.as_str(),
        "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.ORDERS.WORKER"
    );
    let a: Value = serde_json::from_slice(&ms[0].payload).unwrap();
    assert_eq!(
        a["type"], "io.nats.jetstream.advisory.v1.max_deliver",
        "{a}"
    );
    assert_eq!(a["deliveries"], 2, "{a}");
    let orig_seq = a["stream_seq"].as_u64().expect("stream_seq");
    assert_eq!(orig_seq, 2, "{a}");
    let orig = within("get original", orders.get_raw_message(orig_seq))
        .await
        .unwrap();
    assert_eq!(orig.subject.as_str(), "orders.poison");
    assert_eq!(orig.payload.as_ref(), b"poison");
    ack(&ms[0]).await;
}

#[tokio::test]
async fn ack_policy_all_and_none() {
    let s = Server::start_js(&[]);
    let (c, js) = connect(&s).await;
    let st = mk_stream(&js, "AP", &["ap"]).await;
    for i in 1..=5 {
        publish(&js, "ap", &format!("{i}")).await;
    }
    let mut all_cfg = pull_cfg("ALL", Duration::from_secs(30));
    all_cfg.ack_policy = AckPolicy::All;
    let all = mk_pull(&st, all_cfg).await;
    let ms = fetch(&all, 5, Duration::from_secs(2)).await;
    assert_eq!(seqs(&ms), [1, 2, 3, 4, 5]);
    let i = cinfo(&c, "AP", "ALL").await;
    assert_eq!(i["config"]["ack_policy"], "all", "{i}");
    assert_eq!(i["num_ack_pending"], 5, "{i}");
    // Acking the third acks the first three.
    ack(&ms[2]).await;
    let i = cinfo(&c, "AP", "ALL").await;
    assert_eq!(i["num_ack_pending"], 2, "{i}");
    assert_eq!(i["ack_floor"]["stream_seq"], 3, "{i}");
    ack(&ms[4]).await;
    let i = cinfo(&c, "AP", "ALL").await;
    assert_eq!(i["num_ack_pending"], 0, "{i}");
    assert_eq!(i["ack_floor"]["stream_seq"], 5, "{i}");

    let mut none_cfg = pull_cfg("NONE", Duration::from_secs(1));
    none_cfg.ack_policy = AckPolicy::None;
    let none = mk_pull(&st, none_cfg).await;
    let ms = fetch(&none, 5, Duration::from_secs(2)).await;
    assert_eq!(seqs(&ms), [1, 2, 3, 4, 5]);
    let i = cinfo(&c, "AP", "NONE").await;
    assert_eq!(i["config"]["ack_policy"], "none", "{i}");
    assert_eq!(i["num_ack_pending"], 0, "{i}");
    assert_eq!(i["ack_floor"]["stream_seq"], 5, "{i}");
    assert_eq!(i["num_pending"], 0, "{i}");
    // Nothing is ever redelivered, past ack_wait too.
    assert!(fetch(&none, 5, Duration::from_secs(2)).await.is_empty());
}

#[tokio::test]
async fn filter_subject_and_filter_subjects() {
    let s = Server::start_js(&[]);
    let (c, js) = connect(&s).await;
    let st = mk_stream(&js, "F", &["f.>"]).await;
    for subj in ["f.a", "f.b", "f.c.x", "f.a", "f.c.y", "f.b"] {
        publish(&js, subj, subj).await;
    }
    let mut one = pull_cfg("ONE", Duration::from_secs(30));
    one.filter_subject = "f.a".into();
    let one = mk_pull(&st, one).await;
    let mut many = pull_cfg("MANY", Duration::from_secs(30));
    many.filter_subjects = vec!["f.b".into(), "f.c.>".into()];
    let many = mk_pull(&st, many).await;

    let i = cinfo(&c, "F", "ONE").await;
    assert_eq!(i["config"]["filter_subject"], "f.a", "{i}");
    assert_eq!(i["num_pending"], 2, "{i}");
    let i = cinfo(&c, "F", "MANY").await;
    assert_eq!(
        i["config"]["filter_subjects"],
        json!(["f.b", "f.c.>"]),
        "{i}"
    );
    assert_eq!(i["num_pending"], 4, "{i}");

    assert_eq!(seqs(&fetch(&one, 10, Duration::from_secs(1)).await), [1, 4]);
    let ms = fetch(&many, 10, Duration::from_secs(1)).await;
    assert_eq!(seqs(&ms), [2, 3, 5, 6]);
    let subjects: Vec<&str> = ms.iter().map(|m| m.subject.as_str()).collect();
    assert_eq!(subjects, ["f.b", "f.c.x", "f.c.y", "f.b"]);
    // The stream-wide pending count in each message's reply subject.
    assert_eq!(ms[0].info().unwrap().pending, 3);
    // Messages published later follow the filters too.
    publish(&js, "f.c.z", "later").await;
    publish(&js, "f.z", "nobody").await;
    assert!(fetch_now(&one, 10).await.is_empty());
    assert_eq!(seqs(&fetch_now(&many, 10).await), [7]);
}

#[tokio::test]
async fn deliver_policies_and_exact_num_pending() {
    let s = Server::start_js(&[]);
    let (c, js) = connect(&s).await;
    let st = mk_stream(&js, "DP", &["dp.>"]).await;
    publish(&js, "dp.a", "1").await;
    publish(&js, "dp.b", "2").await;
    publish(&js, "dp.a", "3").await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    publish(&js, "dp.c", "4").await;
    publish(&js, "dp.b", "5").await;
    let t4 = within("get 4", st.get_raw_message(4)).await.unwrap().time;

    let cases: Vec<(&str, DeliverPolicy, u64, Vec<u64>)> = vec![
        ("ALL", DeliverPolicy::All, 5, vec![1, 2, 3, 4, 5]),
        ("LAST", DeliverPolicy::Last, 1, vec![5]),
        (
            "BYSEQ",
            DeliverPolicy::ByStartSequence { start_sequence: 3 },
            3,
            vec![3, 4, 5],
        ),
        (
            "BYTIME",
            DeliverPolicy::ByStartTime { start_time: t4 },
            2,
            vec![4, 5],
        ),
        ("LPS", DeliverPolicy::LastPerSubject, 3, vec![3, 4, 5]),
        ("NEW", DeliverPolicy::New, 0, vec![]),
    ];
    let mut consumers = Vec::new();
    for (name, policy, pending, _) in &cases {
        let mut cfg = pull_cfg(name, Duration::from_secs(30));
        cfg.deliver_policy = *policy;
        if *name == "LPS" {
            // last_per_subject needs a filter (10094 without one).
            cfg.filter_subject = "dp.>".into();
        }
        consumers.push(mk_pull(&st, cfg).await);
        let i = cinfo(&c, "DP", name).await;
        assert_eq!(i["num_pending"], *pending, "{name}: {i}");
    }
    let i = cinfo(&c, "DP", "BYSEQ").await;
    assert_eq!(i["config"]["deliver_policy"], "by_start_sequence", "{i}");
    assert_eq!(i["config"]["opt_start_seq"], 3, "{i}");
    let i = cinfo(&c, "DP", "LPS").await;
    assert_eq!(i["config"]["deliver_policy"], "last_per_subject", "{i}");

    for ((name, _, _, want), cons) in cases.iter().zip(&consumers) {
        let got = fetch(cons, 10, Duration::from_millis(500)).await;
        assert_eq!(&seqs(&got), want, "{name}");
    }
    // After one more message every consumer has exactly it pending.
    publish(&js, "dp.a", "6").await;
    for (name, _, _, _) in &cases {
        let i = cinfo(&c, "DP", name).await;
        assert_eq!(i["num_pending"], 1, "{name}: {i}");
    }
    let got = fetch(consumers.last().unwrap(), 10, Duration::from_millis(500)).await;
    assert_eq!(seqs(&got), [6], "NEW");
}

// ---------------------------------------------------------------------------
// Retention.
// ---------------------------------------------------------------------------

#[tokio::test]
async fn workqueue_retention() {
    let s = Server::start_js(&[]);
    let (c, js) = connect(&s).await;
    let st = mk_stream_cfg(
        &js,
        stream::Config {
            name: "WQ".into(),
            subjects: vec!["wq.>".into()],
            retention: stream::RetentionPolicy::WorkQueue,
            ..Default::default()
        },
    )
    .await;
    for i in 1..=3 {
        publish(&js, &format!("wq.{i}"), "job").await;
    }
    let cons = mk_pull(&st, pull_cfg("W", Duration::from_secs(30))).await;
    let ms = fetch(&cons, 3, Duration::from_secs(2)).await;
    assert_eq!(seqs(&ms), [1, 2, 3]);
    assert_eq!(stream_msgs(&c, "WQ").await, 3, "delivered is not acked");
    ack(&ms[0]).await;
    ack(&ms[2]).await;
    eventually("acked jobs gone", Duration::from_secs(10), || async {
        stream_msgs(&c, "WQ").await == 1
    })
    .await;
    let err = within("get acked", st.get_raw_message(1)).await;
    assert!(err.is_err(), "seq 1 is gone");
    within("get unacked", st.get_raw_message(2)).await.unwrap();

    // A second consumer without a filter is refused.
    let r = js_api(
        &c,
        "$JS.API.CONSUMER.CREATE.WQ.W2",
        &json!({"stream_name": "WQ", "config": {"durable_name": "W2", "ack_policy": "explicit"}})
            .to_string(),
    )
    .await;
    assert_error(
        &r,
        400,
        10099,
        "multiple non-filtered consumers not allowed on workqueue stream",
    );
    // Pull consumers must ack explicitly on a workqueue.
    let r = js_api(
        &c,
        "$JS.API.CONSUMER.CREATE.WQ.W3",
        &json!({"stream_name": "WQ", "config": {"durable_name": "W3", "ack_policy": "none", "filter_subject": "wq.9"}})
            .to_string(),
    )
    .await;
    assert_error(
        &r,
        400,
        10084,
        "consumer in pull mode requires explicit ack policy on workqueue stream",
    );
    ack(&ms[1]).await;
    eventually("queue empty", Duration::from_secs(10), || async {
        stream_msgs(&c, "WQ").await == 0
    })
    .await;
}

#[tokio::test]
async fn interest_retention() {
    let s = Server::start_js(&[]);
    let (c, js) = connect(&s).await;
    let st = mk_stream_cfg(
        &js,
        stream::Config {
            name: "INT".into(),
            subjects: vec!["int".into()],
            retention: stream::RetentionPolicy::Interest,
            ..Default::default()
        },
    )
    .await;
    // With no consumer, nothing is kept.
    publish(&js, "int", "nobody").await;
    eventually("no interest, not kept", Duration::from_secs(10), || async {
        stream_msgs(&c, "INT").await == 0
    })
    .await;
    let a = mk_pull(&st, pull_cfg("A", Duration::from_secs(30))).await;
    let b = mk_pull(&st, pull_cfg("B", Duration::from_secs(30))).await;
    publish(&js, "int", "x").await;
    publish(&js, "int", "y").await;
    assert_eq!(stream_msgs(&c, "INT").await, 2);
    let ams = fetch(&a, 2, Duration::from_secs(2)).await;
    assert_eq!(seqs(&ams), [2, 3]);
    ack(&ams[0]).await;
    ack(&ams[1]).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(stream_msgs(&c, "INT").await, 2, "B has not acked");
    let bms = fetch(&b, 2, Duration::from_secs(2)).await;
    assert_eq!(seqs(&bms), [2, 3]);
    ack(&bms[0]).await;
    eventually("acked by both", Duration::from_secs(10), || async {
        stream_msgs(&c, "INT").await == 1
    })
    .await;
    ack(&bms[1]).await;
    eventually("all acked by both", Duration::from_secs(10), || async {
        stream_msgs(&c, "INT").await == 0
    })
    .await;
}

// ---------------------------------------------------------------------------
// Durable state across restarts and crashes.
// ---------------------------------------------------------------------------

/// Publish 10, take 6, double-ack 1, 2 and 4, leave 3, 5 and 6 unacked;
/// stop the server (`crash`: SIGKILL) and start it again. The restarted
/// server delivers 3, 5, 6 (second delivery) and 7..10 (first), and never
/// an acked one.
async fn durable_state_survives(crash: bool) {
    let mut s = Server::start_js(&[]);
    {
        let (c, js) = connect(&s).await;
        let st = mk_stream(&js, "DUR", &["dur.>"]).await;
        for i in 1..=10 {
            publish(&js, &format!("dur.{i}"), &format!("{i}")).await;
        }
        let cons = mk_pull(&st, pull_cfg("C", Duration::from_secs(1))).await;
        let ms = fetch(&cons, 6, Duration::from_secs(2)).await;
        assert_eq!(seqs(&ms), [1, 2, 3, 4, 5, 6]);
        for i in [0, 1, 3] {
            ack(&ms[i]).await;
        }
        let i = cinfo(&c, "DUR", "C").await;
        assert_eq!(i["num_ack_pending"], 3, "{i}");
        assert_eq!(i["num_pending"], 4, "{i}");
        assert_eq!(i["ack_floor"]["stream_seq"], 2, "{i}");
    }
    if crash {
        s.crash();
    }
    s.restart();
    // nats-server 2.15.3 writes consumer state lazily: acks taken just
    // before a SIGKILL are lost (observed: ack_floor 0 and num_ack_pending
    // 6 after the restart, and 1, 2, 4 delivered again; with 3 s between
    // the acks and the kill they survive). broker-edge must keep them.
    let acks_may_be_lost = crash && common::is_reference();

    let (c, js) = connect(&s).await;
    let i = cinfo(&c, "DUR", "C").await;
    assert_eq!(i["num_pending"], 4, "after restart: {i}");
    assert_eq!(i["delivered"]["stream_seq"], 6, "after restart: {i}");
    if !acks_may_be_lost {
        assert_eq!(i["ack_floor"]["stream_seq"], 2, "after restart: {i}");
        assert_eq!(i["num_ack_pending"], 3, "after restart: {i}");
    }
    let st = within("get stream", js.get_stream("DUR")).await.unwrap();
    let cons: PullConsumer = within("get consumer", st.get_consumer("C")).await.unwrap();
    let mut got: BTreeMap<u64, i64> = BTreeMap::new();
    let mut redelivered_acked = BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while got.len() < 7 && Instant::now() < deadline {
        // Ack each message as it arrives (ack_wait is 1 s).
        let mut batch = within(
            "pull",
            cons.batch()
                .max_messages(10)
                .expires(Duration::from_secs(2))
                .messages(),
        )
        .await
        .unwrap();
        while let Some(m) = within("batch", batch.next()).await {
            let m = m.unwrap();
            let sq = seq(&m);
            ack(&m).await;
            if [1, 2, 4].contains(&sq) {
                assert!(acks_may_be_lost, "acked seq {sq} delivered again");
                redelivered_acked.insert(sq);
                continue;
            }
            assert!(
                got.insert(sq, delivered(&m)).is_none(),
                "seq {sq} twice after the restart"
            );
        }
    }
    if acks_may_be_lost {
        eprintln!(
            "the reference redelivered these acked seqs after SIGKILL: {redelivered_acked:?}"
        );
    }
    let want: BTreeMap<u64, i64> = [(3, 2), (5, 2), (6, 2), (7, 1), (8, 1), (9, 1), (10, 1)].into();
    assert_eq!(got, want, "(seq, delivery count) after restart");
    assert!(fetch(&cons, 10, Duration::from_secs(2)).await.is_empty());
    let i = cinfo(&c, "DUR", "C").await;
    assert_eq!(i["num_ack_pending"], 0, "{i}");
    assert_eq!(i["num_pending"], 0, "{i}");
    assert_eq!(i["ack_floor"]["stream_seq"], 10, "{i}");

    // And once more: all acked state comes back too.
    s.restart();
    let (c, _js) = connect(&s).await;
    let i = cinfo(&c, "DUR", "C").await;
    assert_eq!(i["num_ack_pending"], 0, "{i}");
    assert_eq!(i["num_pending"], 0, "{i}");
    assert_eq!(i["ack_floor"]["stream_seq"], 10, "{i}");
}

#[tokio::test]
async fn durable_consumer_state_across_restart() {
    durable_state_survives(false).await;
}

#[tokio::test]
async fn durable_consumer_state_across_sigkill() {
    durable_state_survives(true).await;
}

#[tokio::test]
async fn ephemeral_removed_after_inactive_threshold() {
    let s = Server::start_js(&[]);
    let (c, js) = connect(&s).await;
    let st = mk_stream(&js, "EPH", &["eph"]).await;
    publish(&js, "eph", "x").await;
    let mut cons = mk_pull(
        &st,
        pull::Config {
            ack_policy: AckPolicy::Explicit,
            inactive_threshold: Duration::from_secs(1),
            ..Default::default()
        },
    )
    .await;
    let info = within("info", cons.info()).await.unwrap().clone();
    assert_eq!(info.config.durable_name, None);
    assert_eq!(info.config.inactive_threshold, Duration::from_secs(1));
    let name = info.name.clone();
    let ms = fetch(&cons, 1, Duration::from_secs(1)).await;
    assert_eq!(seqs(&ms), [1]);
    ack(&ms[0]).await;
    eventually("ephemeral gone", Duration::from_secs(15), || async {
        let r = js_api(&c, &format!("$JS.API.CONSUMER.INFO.EPH.{name}"), "").await;
        r["error"]["err_code"] == 10014
    })
    .await;
    let si = js_api(&c, "$JS.API.STREAM.INFO.EPH", "").await;
    assert_eq!(si["state"]["consumer_count"], 0, "{si}");
}

// ---------------------------------------------------------------------------
// Storm.
// ---------------------------------------------------------------------------

/// 10 streams, 5 pull consumers each (explicit ack), a task per consumer
/// that randomly acks (plain or double) or naks what it gets, while 200
/// messages per stream are published. Every consumer must see every
/// message of its stream until it acked it, and never after.
#[tokio::test]
async fn storm_of_consumers() {
    use rand::Rng;
    const STREAMS: usize = 10;
    const PER_STREAM: usize = 5;
    const MSGS: u64 = 200;
    let s = Server::start_js(&[]);
    let (c, js) = connect(&s).await;
    let mut consumers = Vec::new();
    for si in 0..STREAMS {
        let st = mk_stream(&js, &format!("STORM{si}"), &[&format!("storm.{si}")]).await;
        for ci in 0..PER_STREAM {
            // ack_wait stays long: redelivery comes from naks only, so an
            // acked message showing up again is always a bug.
            let cons = mk_pull(&st, pull_cfg(&format!("C{ci}"), Duration::from_secs(30))).await;
            consumers.push((si, ci, cons));
        }
    }
    let violations: Arc<Mutex<Vec<String>>> = Default::default();
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut tasks = Vec::new();
    for (si, ci, cons) in consumers {
        let violations = violations.clone();
        tasks.push(tokio::spawn(async move {
            let mut acked: HashSet<u64> = HashSet::new();
            let mut deliveries: HashMap<u64, i64> = HashMap::new();
            while (acked.len() as u64) < MSGS && Instant::now() < deadline {
                let mut batch = match cons
                    .batch()
                    .max_messages(50)
                    .expires(Duration::from_millis(500))
                    .messages()
                    .await
                {
                    Ok(b) => b,
                    Err(e) => panic!("STORM{si}.C{ci}: pull: {e}"),
                };
                while let Ok(Some(m)) =
                    tokio::time::timeout(Duration::from_secs(10), batch.next()).await
                {
                    let m = m.unwrap_or_else(|e| panic!("STORM{si}.C{ci}: {e}"));
                    let info = m.info().unwrap();
                    let (sq, n) = (info.stream_sequence, info.delivered);
                    if acked.contains(&sq) {
                        violations.lock().unwrap().push(format!(
                            "STORM{si}.C{ci}: seq {sq} again after its ack (delivery {n})"
                        ));
                        continue;
                    }
                    let prev = deliveries.insert(sq, n).unwrap_or(0);
                    if n != prev + 1 {
                        violations.lock().unwrap().push(format!(
                            "STORM{si}.C{ci}: seq {sq} delivery {n} after delivery {prev}"
                        ));
                    }
                    let roll: u32 = rand::thread_rng().gen_range(0..10);
                    if roll < 3 && n < 4 {
                        m.ack_with(AckKind::Nak(None)).await.unwrap();
                    } else if roll < 6 {
                        m.ack().await.unwrap();
                        acked.insert(sq);
                    } else {
                        m.double_ack()
                            .await
                            .unwrap_or_else(|e| panic!("STORM{si}.C{ci}: double ack: {e}"));
                        acked.insert(sq);
                    }
                }
            }
            (si, ci, acked.len() as u64)
        }));
    }
    // Publishers: one task per stream, interleaved with the consumers.
    let mut pubs = Vec::new();
    for si in 0..STREAMS {
        let js = js.clone();
        pubs.push(tokio::spawn(async move {
            let mut acks = Vec::new();
            for i in 0..MSGS {
                let ack = js
                    .publish(format!("storm.{si}"), format!("{si}/{i}").into())
                    .await
                    .unwrap();
                acks.push(ack);
            }
            for a in acks {
                within("storm PubAck", a.into_future()).await.unwrap();
            }
        }));
    }
    for p in pubs {
        p.await.unwrap();
    }
    let mut short = Vec::new();
    for t in tasks {
        let (si, ci, n) = t.await.unwrap();
        if n != MSGS {
            short.push(format!("STORM{si}.C{ci}: {n} of {MSGS} acked"));
        }
    }
    let violations = violations.lock().unwrap().clone();
    assert!(violations.is_empty(), "{violations:#?}");
    assert!(short.is_empty(), "not done within the deadline: {short:#?}");
    for si in 0..STREAMS {
        for ci in 0..PER_STREAM {
            let stream = format!("STORM{si}");
            let name = format!("C{ci}");
            eventually(
                "storm consumer settled",
                Duration::from_secs(10),
                || async {
                    let i = cinfo(&c, &stream, &name).await;
                    i["num_ack_pending"] == 0
                        && i["num_pending"] == 0
                        && i["ack_floor"]["stream_seq"] == MSGS
                },
            )
            .await;
        }
    }
}

/// `num_pending` (info and the ack subject's last token) stays exact while
/// messages arrive, are delivered, are replaced (history 1, as a KV bucket)
/// and are deleted underneath the consumer: it always equals the number
/// of stored messages past the delivered position that match the filter.
#[tokio::test]
async fn num_pending_exact_through_appends_replacements_and_deletes() {
    let s = Server::start_js(&[]);
    let (c, js) = connect(&s).await;
    let st = mk_stream_cfg(
        &js,
        stream::Config {
            name: "NP".into(),
            subjects: vec!["np.>".into()],
            max_messages_per_subject: 1,
            ..Default::default()
        },
    )
    .await;
    let cons = mk_pull(
        &st,
        pull::Config {
            durable_name: Some("F".into()),
            filter_subject: "np.a.*".into(),
            ack_policy: AckPolicy::Explicit,
            ..Default::default()
        },
    )
    .await;
    // The model: subject -> its one stored sequence.
    let mut stored: BTreeMap<String, u64> = BTreeMap::new();
    let mut delivered_to = 0u64;
    let expect = |stored: &BTreeMap<String, u64>, after: u64| {
        stored
            .iter()
            .filter(|(k, q)| k.starts_with("np.a.") && **q > after)
            .count() as u64
    };
    for round in 0..6u64 {
        for i in 0..10u64 {
            let subj = if i % 3 == 0 {
                format!("np.b.{}", (round + i) % 4)
            } else {
                format!("np.a.{}", (round * 7 + i) % 5)
            };
            let q = publish(&js, &subj, "v").await;
            stored.insert(subj, q);
        }
        if round % 2 == 1 {
            // Delete one undelivered matching message, if any.
            if let Some((k, q)) = stored
                .iter()
                .find(|(k, q)| k.starts_with("np.a.") && **q > delivered_to)
                .map(|(k, q)| (k.clone(), *q))
            {
                let r = js_api(
                    &c,
                    "$JS.API.STREAM.MSG.DELETE.NP",
                    &json!({"seq": q}).to_string(),
                )
                .await;
                assert_eq!(r["success"], true, "{r}");
                stored.remove(&k);
            }
        }
        let info = cinfo(&c, "NP", "F").await;
        assert_eq!(
            info["num_pending"].as_u64().unwrap(),
            expect(&stored, delivered_to),
            "round {round} before fetch: {info}"
        );
        let got = fetch_now(&cons, 2).await;
        for m in &got {
            delivered_to = seq(m);
            let pending = m.info().unwrap().pending;
            assert_eq!(
                pending,
                expect(&stored, delivered_to),
                "ack subject pending at {delivered_to}"
            );
            ack(m).await;
        }
        let info = cinfo(&c, "NP", "F").await;
        assert_eq!(
            info["num_pending"].as_u64().unwrap(),
            expect(&stored, delivered_to),
            "round {round} after fetch: {info}"
        );
    }
}

/// A push consumer with a deliver group binds only to members of that
/// group (a plain subscriber on its subject gets nothing), and a pull
/// request to a push consumer is refused with 409.
#[tokio::test]
async fn deliver_group_binds_only_its_group_and_push_refuses_pulls() {
    let s = Server::start_js(&[]);
    let (c, js) = connect(&s).await;
    mk_stream(&js, "DGQ", &["dgq.>"]).await;
    for i in 0..3 {
        publish(&js, &format!("dgq.{i}"), "m").await;
    }
    let mut plain = c.subscribe("dq.deliver").await.unwrap();
    common::sync(&c).await;
    let r = js_api(
        &c,
        "$JS.API.CONSUMER.CREATE.DGQ.G",
        &json!({"stream_name": "DGQ", "config": {"durable_name": "G", "deliver_subject": "dq.deliver",
            "deliver_group": "grp", "ack_policy": "explicit"}})
        .to_string(),
    )
    .await;
    assert!(r.get("error").is_none(), "{r}");
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(
        common::queued(&mut plain).is_none(),
        "a plain subscriber must not bind a grouped push consumer"
    );
    let info = cinfo(&c, "DGQ", "G").await;
    assert!(info.get("push_bound").is_none(), "{info}");
    let mut member = c
        .queue_subscribe("dq.deliver", "grp".to_string())
        .await
        .unwrap();
    for want in 1..=3u64 {
        let m = within("grouped push delivery", member.next())
            .await
            .unwrap();
        let reply = m.reply.clone().unwrap();
        let tokens: Vec<&str> = reply.split('.').collect();
        assert_eq!(tokens[5], want.to_string(), "stream seq in {reply}");
    }
    let info = cinfo(&c, "DGQ", "G").await;
    assert_eq!(info["push_bound"], true, "{info}");
    // A pull request to a push consumer.
    let inbox = c.new_inbox();
    let mut sub = c.subscribe(inbox.clone()).await.unwrap();
    c.publish_with_reply("$JS.API.CONSUMER.MSG.NEXT.DGQ.G", inbox, "1".into())
        .await
        .unwrap();
    let m = within("409 for a pull on push", sub.next()).await.unwrap();
    let status = m.status.map(|s| s.as_u16());
    assert_eq!(status, Some(409), "{m:?}");
    assert_eq!(m.description.as_deref(), Some("Consumer is push based"));
}

/// A storm with server kills: 4 streams × 3 pull consumers double-ack or
/// nak at random while the server is SIGKILLed and restarted twice. A
/// message whose double ack was confirmed is never delivered again, and
/// every message is delivered until it is acked. (broker-edge only: the
/// reference confirms double acks before its consumer state is on disk,
/// so after a SIGKILL it delivers confirmed messages again.)
#[tokio::test]
async fn storm_with_server_kills() {
    use rand::Rng;
    ours_only!("nats-server can lose confirmed acks on SIGKILL");
    const STREAMS: usize = 4;
    const PER_STREAM: usize = 3;
    const MSGS: u64 = 150;
    let mut s = Server::start_js(&[]);
    let url = s.url();
    let (_c, js) = connect(&s).await;
    for si in 0..STREAMS {
        let st = mk_stream(&js, &format!("KS{si}"), &[&format!("ks.{si}")]).await;
        for ci in 0..PER_STREAM {
            mk_pull(&st, pull_cfg(&format!("C{ci}"), Duration::from_secs(2))).await;
        }
        for i in 0..MSGS {
            publish(&js, &format!("ks.{si}"), &format!("{si}/{i}")).await;
        }
    }
    let violations: Arc<Mutex<Vec<String>>> = Default::default();
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut tasks = Vec::new();
    for si in 0..STREAMS {
        for ci in 0..PER_STREAM {
            let violations = violations.clone();
            let url = url.clone();
            tasks.push(tokio::spawn(async move {
                let c = async_nats::ConnectOptions::new()
                    .retry_on_initial_connect()
                    .connect(url)
                    .await
                    .unwrap();
                let js = jetstream::new(c);
                let mut confirmed: HashSet<u64> = HashSet::new();
                // Done when the server has everything acked: an ack whose
                // confirmation was lost in a kill may still have been made
                // durable, and then it is (rightly) not delivered again.
                let done = |js: jetstream::Context| async move {
                    let Ok(mut cons) = js
                        .get_consumer_from_stream::<pull::Config, _, _>(
                            format!("C{ci}"),
                            format!("KS{si}"),
                        )
                        .await
                    else {
                        return false;
                    };
                    cons.info().await.is_ok_and(|i| {
                        i.num_ack_pending == 0
                            && i.num_pending == 0
                            && i.ack_floor.stream_sequence == MSGS
                    })
                };
                while Instant::now() < deadline {
                    if (confirmed.len() as u64) >= MSGS || done(js.clone()).await {
                        break;
                    }
                    let cons: PullConsumer = match js
                        .get_consumer_from_stream(format!("C{ci}"), format!("KS{si}"))
                        .await
                    {
                        Ok(c) => c,
                        Err(_) => {
                            tokio::time::sleep(Duration::from_millis(200)).await;
                            continue;
                        }
                    };
                    let Ok(mut batch) = cons
                        .batch()
                        .max_messages(20)
                        .expires(Duration::from_millis(500))
                        .messages()
                        .await
                    else {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        continue;
                    };
                    while let Ok(Some(Ok(m))) =
                        tokio::time::timeout(Duration::from_secs(3), batch.next()).await
                    {
                        let Ok(info) = m.info() else { continue };
                        let sq = info.stream_sequence;
                        if confirmed.contains(&sq) {
                            violations.lock().unwrap().push(format!(
                                "KS{si}.C{ci}: seq {sq} delivered after its confirmed ack"
                            ));
                            continue;
                        }
                        if rand::thread_rng().gen_range(0..10) < 3 {
                            let _ = m.ack_with(AckKind::Nak(None)).await;
                        } else if m.double_ack().await.is_ok() {
                            confirmed.insert(sq);
                        }
                    }
                }
            }));
        }
    }
    for _ in 0..2 {
        tokio::time::sleep(Duration::from_millis(700)).await;
        s.crash();
        s.restart();
    }
    for t in tasks {
        t.await.unwrap();
    }
    let violations = violations.lock().unwrap().clone();
    assert!(violations.is_empty(), "{violations:#?}");
    let c = s.client().await;
    for si in 0..STREAMS {
        for ci in 0..PER_STREAM {
            let i = cinfo(&c, &format!("KS{si}"), &format!("C{ci}")).await;
            assert!(
                i["num_ack_pending"] == 0
                    && i["num_pending"] == 0
                    && i["ack_floor"]["stream_seq"] == MSGS,
                "KS{si}.C{ci} not fully acked: {i}"
            );
        }
    }
}

/// `pause_until`: nothing is delivered before it (info says paused, with
/// the time remaining); afterwards delivery resumes by itself.
#[tokio::test]
async fn paused_consumer_resumes_at_pause_until() {
    let s = Server::start_js(&[]);
    let (c, js) = connect(&s).await;
    let st = mk_stream(&js, "PAU", &["pau.>"]).await;
    publish(&js, "pau.a", "x").await;
    let until = chrono::Utc::now() + chrono::Duration::seconds(3);
    let r = js_api(
        &c,
        "$JS.API.CONSUMER.CREATE.PAU.P",
        &json!({"stream_name": "PAU", "config": {"durable_name": "P", "ack_policy": "explicit",
            "pause_until": until.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)}})
        .to_string(),
    )
    .await;
    assert!(r.get("error").is_none(), "{r}");
    let info = cinfo(&c, "PAU", "P").await;
    assert_eq!(info["paused"], true, "{info}");
    assert!(info["pause_remaining"].as_u64().unwrap() > 0, "{info}");
    let cons: PullConsumer = st.get_consumer("P").await.unwrap();
    let got = fetch(&cons, 1, Duration::from_millis(800)).await;
    assert!(got.is_empty(), "delivered while paused");
    let start = Instant::now();
    let mut got = Vec::new();
    while got.is_empty() && start.elapsed() < Duration::from_secs(10) {
        got = fetch(&cons, 1, Duration::from_secs(1)).await;
    }
    assert_eq!(
        seqs(&got),
        vec![1],
        "delivery did not resume after pause_until"
    );
}

/// Push delivery details as clients see them: `headers_only` (stored
/// headers plus `Nats-Msg-Size`, no payload), idle heartbeats with the
/// consumer's position, flow-control requests that hold delivery until
/// answered; and `sample_freq` ack metrics.
#[tokio::test]
async fn push_headers_only_heartbeats_flow_control_and_ack_metrics() {
    let s = Server::start_js(&[]);
    let (c, js) = connect(&s).await;
    let st = mk_stream(&js, "HO", &["ho.>"]).await;
    let mut h = async_nats::HeaderMap::new();
    h.insert("X-Kind", "first");
    within("publish", async {
        js.publish_with_headers("ho.a", h, "hello".into())
            .await
            .unwrap()
            .await
            .unwrap()
    })
    .await;
    let mut sub = c.subscribe("dlv.ho").await.unwrap();
    common::sync(&c).await;
    let r = js_api(
        &c,
        "$JS.API.CONSUMER.CREATE.HO.PH",
        &json!({"stream_name": "HO", "config": {"durable_name": "PH", "deliver_subject": "dlv.ho",
            "ack_policy": "explicit", "headers_only": true, "idle_heartbeat": 200_000_000u64,
            "flow_control": true}})
        .to_string(),
    )
    .await;
    assert!(r.get("error").is_none(), "{r}");
    let m = within("headers-only delivery", sub.next()).await.unwrap();
    assert!(m.payload.is_empty(), "payload with headers_only: {m:?}");
    let hs = m.headers.clone().unwrap();
    assert_eq!(hs.get("X-Kind").map(|v| v.as_str()), Some("first"));
    assert_eq!(hs.get("Nats-Msg-Size").map(|v| v.as_str()), Some("5"));
    // Idle: a heartbeat naming the consumer's position.
    let hb = within("idle heartbeat", sub.next()).await.unwrap();
    assert_eq!(hb.status.map(|s| s.as_u16()), Some(100), "{hb:?}");
    let hh = hb.headers.clone().unwrap();
    let last = |n| {
        hh.get(n)
            .map(|v: &async_nats::HeaderValue| v.as_str().to_string())
    };
    assert_eq!(
        last(async_nats::header::NATS_LAST_CONSUMER).as_deref(),
        Some("1"),
        "{hb:?}"
    );
    assert_eq!(
        last(async_nats::header::NATS_LAST_STREAM).as_deref(),
        Some("1"),
        "{hb:?}"
    );
    // Volume, on a consumer delivering whole messages and bound while they
    // are published: a flow-control request comes, and delivery waits for
    // its answer.
    let mut sub = c.subscribe("dlv.fc").await.unwrap();
    common::sync(&c).await;
    let r = js_api(
        &c,
        "$JS.API.CONSUMER.CREATE.HO.FC",
        &json!({"stream_name": "HO", "config": {"durable_name": "FC", "deliver_subject": "dlv.fc",
            "ack_policy": "explicit", "filter_subject": "ho.b", "idle_heartbeat": 1_000_000_000u64,
            "flow_control": true}})
        .to_string(),
    )
    .await;
    assert!(r.get("error").is_none(), "{r}");
    let pubs = {
        let js = js.clone();
        tokio::spawn(async move {
            let big = vec![b'x'; 100_000];
            for _ in 0..40 {
                js.publish("ho.b", big.clone().into())
                    .await
                    .unwrap()
                    .await
                    .unwrap();
            }
        })
    };
    let mut data = 0;
    let mut fc = 0;
    while data < 40 {
        let m = within("push delivery under flow control", sub.next())
            .await
            .unwrap();
        match m.status.map(|s| s.as_u16()) {
            Some(100) if m.reply.is_some() => {
                fc += 1;
                c.publish(m.reply.unwrap(), "".into()).await.unwrap();
            }
            Some(100) => {}
            _ => data += 1,
        }
    }
    assert!(fc >= 1, "no flow-control request for 4 MB");
    pubs.await.unwrap();
    // Ack metrics, sampled at 100%.
    let mut metrics = c
        .subscribe("$JS.EVENT.METRIC.CONSUMER.ACK.HO.M")
        .await
        .unwrap();
    common::sync(&c).await;
    let cons = mk_pull(
        &st,
        pull::Config {
            durable_name: Some("M".into()),
            ack_policy: AckPolicy::Explicit,
            sample_frequency: 100,
            ..Default::default()
        },
    )
    .await;
    let got = fetch(&cons, 1, Duration::from_secs(2)).await;
    ack(&got[0]).await;
    let (_, v) = next_json(&mut metrics, "ack metric").await;
    assert_eq!(v["type"], "io.nats.jetstream.metric.v1.consumer_ack", "{v}");
    assert_eq!(v["stream_seq"], 1, "{v}");
    assert_eq!(v["deliveries"], 1, "{v}");
}

/// `replay_policy: original` keeps the stored spacing of messages, and
/// `rate_limit_bps` paces a push consumer. Only lower bounds are checked
/// (a loaded machine can only make delivery slower).
#[tokio::test]
async fn replay_original_and_rate_limit_pace_delivery() {
    let s = Server::start_js(&[]);
    let (c, js) = connect(&s).await;
    mk_stream(&js, "RP", &["rp.>"]).await;
    for i in 0..3 {
        if i > 0 {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        publish(&js, "rp.t", &format!("t{i}")).await;
    }
    let push = |name: &str, subject: &str, extra: Value| {
        let mut cfg = json!({"durable_name": name, "deliver_subject": subject,
            "ack_policy": "none", "filter_subject": "rp.t"});
        if let (Some(m), Some(e)) = (cfg.as_object_mut(), extra.as_object()) {
            m.extend(e.clone());
        }
        json!({"stream_name": "RP", "config": cfg}).to_string()
    };
    let mut sub = c.subscribe("dlv.rp").await.unwrap();
    common::sync(&c).await;
    let r = js_api(
        &c,
        "$JS.API.CONSUMER.CREATE.RP.O",
        &push("O", "dlv.rp", json!({"replay_policy": "original"})),
    )
    .await;
    assert!(r.get("error").is_none(), "{r}");
    let start = Instant::now();
    for i in 0..3 {
        let m = within("replayed message", sub.next()).await.unwrap();
        assert_eq!(&m.payload[..], format!("t{i}").as_bytes());
    }
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(700),
        "replay original delivered 3 messages 500 ms apart in {took:?}"
    );
    // 4 × 1000 B at 16000 bit/s. (nats-server lets a burst of up to the
    // maximum payload through before it paces; Broker Edge paces from the
    // first second, so this part is broker-edge only.)
    ours_only!("nats-server's rate limit starts with a 1 MB burst");
    for _ in 0..4 {
        publish(&js, "rp.big", &"y".repeat(1000)).await;
    }
    let mut sub = c.subscribe("dlv.rl").await.unwrap();
    common::sync(&c).await;
    let r = js_api(
        &c,
        "$JS.API.CONSUMER.CREATE.RP.L",
        &json!({"stream_name": "RP", "config": {"durable_name": "L", "deliver_subject": "dlv.rl",
            "ack_policy": "none", "filter_subject": "rp.big", "rate_limit_bps": 16000}})
        .to_string(),
    )
    .await;
    assert!(r.get("error").is_none(), "{r}");
    let start = Instant::now();
    for _ in 0..4 {
        within("rate-limited message", sub.next()).await.unwrap();
    }
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(800),
        "4000 bytes at 16000 bit/s arrived in {took:?}"
    );
}
