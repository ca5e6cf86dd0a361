//! JetStream advisories: the API audit and the stream actions, as
//! nats-server 2.15.3 sends them (also run against it).

mod common;

use common::{js_api, Server};
use futures::StreamExt;
use serde_json::{json, Value};

async fn next_json(sub: &mut async_nats::Subscriber) -> (String, Value) {
    let m = common::within("advisory", sub.next())
        .await
        .expect("subscription ended");
    let v: Value = serde_json::from_slice(&m.payload).expect("advisory is JSON");
    (m.subject.to_string(), v)
}

#[tokio::test]
async fn api_audit_and_stream_actions() {
    let s = Server::start_js(&[]);
    let c = s.client().await;
    let mut audit = c.subscribe("$JS.EVENT.ADVISORY.API").await.unwrap();
    let mut actions = c.subscribe("$JS.EVENT.ADVISORY.STREAM.*.*").await.unwrap();
    common::sync(&c).await;
    let body = json!({"name": "ADV", "subjects": ["adv"]}).to_string();
    let r = js_api(&c, "$JS.API.STREAM.CREATE.ADV", &body).await;
    assert!(r.get("error").is_none(), "{r}");

    let (subj, a) = next_json(&mut audit).await;
    assert_eq!(subj, "$JS.EVENT.ADVISORY.API");
    assert_eq!(a["type"], "io.nats.jetstream.advisory.v1.api_audit", "{a}");
    assert_eq!(a["subject"], "$JS.API.STREAM.CREATE.ADV", "{a}");
    assert_eq!(a["request"], body.as_str(), "{a}");
    let resp: Value = serde_json::from_str(a["response"].as_str().unwrap()).unwrap();
    assert_eq!(
        resp["type"],
        "io.nats.jetstream.api.v1.stream_create_response"
    );
    assert_eq!(a["client"]["acc"], "$G", "{a}");

    let (subj, a) = next_json(&mut actions).await;
    assert_eq!(subj, "$JS.EVENT.ADVISORY.STREAM.CREATED.ADV");
    assert_eq!(
        a["type"], "io.nats.jetstream.advisory.v1.stream_action",
        "{a}"
    );
    assert_eq!(a["stream"], "ADV");
    assert_eq!(a["action"], "create");

    let r = js_api(&c, "$JS.API.STREAM.DELETE.ADV", "").await;
    assert_eq!(r["success"], true, "{r}");
    let (subj, a) = next_json(&mut actions).await;
    assert_eq!(subj, "$JS.EVENT.ADVISORY.STREAM.DELETED.ADV");
    assert_eq!(a["action"], "delete");
    let (_, a) = next_json(&mut audit).await;
    assert_eq!(a["subject"], "$JS.API.STREAM.DELETE.ADV", "{a}");
}
