//! Stream `subject_transform` and `republish`, checked against nats-server
//! 2.15.3 as well (`BROKER_EDGE_BIN=target/refs/bin/nats-server-2.15.3`).

mod common;

use common::{js_api, js_publish, Server};
use futures::StreamExt;
use serde_json::json;

#[tokio::test]
async fn subject_transform_stores_the_mapped_subject() {
    let s = Server::start_js(&[]);
    let c = s.client().await;
    let r = js_api(
        &c,
        "$JS.API.STREAM.CREATE.T",
        &json!({"name": "T", "subjects": ["in.*.*"],
                "subject_transform": {"src": "in.*.*", "dest": "stored.{{wildcard(2)}}.{{wildcard(1)}}"}})
        .to_string(),
    )
    .await;
    assert!(r.get("error").is_none(), "{r}");
    let a = js_publish(&c, "in.eu.new", &[], "x").await;
    assert_eq!(a["seq"], 1, "{a}");
    let m = js_api(&c, "$JS.API.STREAM.MSG.GET.T", r#"{"seq":1}"#).await;
    assert_eq!(m["message"]["subject"], "stored.new.eu", "{m}");
}

#[tokio::test]
async fn republish_copies_stored_messages_with_stream_headers() {
    let s = Server::start_js(&[]);
    let c = s.client().await;
    let mut sub = c.subscribe("copy.>").await.unwrap();
    common::sync(&c).await;
    let r = js_api(
        &c,
        "$JS.API.STREAM.CREATE.R",
        &json!({"name": "R", "subjects": ["orig.>"],
                "republish": {"src": "orig.>", "dest": "copy.>"}})
        .to_string(),
    )
    .await;
    assert!(r.get("error").is_none(), "{r}");
    js_publish(&c, "orig.a", &[], "one").await;
    js_publish(&c, "orig.b", &[], "two").await;
    js_publish(&c, "orig.a", &[], "three").await;
    // Nats-Last-Sequence is the subject's previous sequence (0: none).
    for (seq, last, subj, body) in [
        (1, 0, "orig.a", "one"),
        (2, 0, "orig.b", "two"),
        (3, 1, "orig.a", "three"),
    ] {
        let m = common::within("republished message", sub.next())
            .await
            .expect("subscription ended");
        assert_eq!(m.subject.as_str(), format!("copy.{}", &subj[5..]));
        assert_eq!(&m.payload[..], body.as_bytes());
        let h = m.headers.expect("republished message has headers");
        // async-nats keeps well-known names as its own constants: compare
        // by the name's text.
        let get = |name: &str| {
            h.iter()
                .find(|(k, _)| k.to_string() == name)
                .and_then(|(_, v)| v.first())
                .map(|v| v.to_string())
        };
        assert_eq!(get("Nats-Stream").as_deref(), Some("R"));
        assert_eq!(get("Nats-Subject").as_deref(), Some(subj));
        assert_eq!(get("Nats-Sequence"), Some(seq.to_string()));
        assert_eq!(get("Nats-Last-Sequence"), Some(last.to_string()));
        assert!(get("Nats-Time-Stamp").is_some());
    }
    // A destination inside the stream's own subjects is refused.
    let r = js_api(
        &c,
        "$JS.API.STREAM.CREATE.LOOP",
        &json!({"name": "LOOP", "subjects": ["loop.>"],
                "republish": {"src": ">", "dest": "loop.x"}})
        .to_string(),
    )
    .await;
    assert_eq!(r["error"]["err_code"], 10052, "{r}");
    assert_eq!(
        r["error"]["description"], "stream configuration for republish destination forms a cycle",
        "{r}"
    );
}
