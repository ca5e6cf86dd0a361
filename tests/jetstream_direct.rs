//! Direct get batches and multi-last (2.11 semantics), compared with
//! nats-server 2.15.3 (run with BROKER_EDGE_BIN pointing at it).

mod common;

use common::{js_api, js_publish, Server};
use futures::StreamExt;
use serde_json::json;

/// Sends a direct-get request and collects replies up to and including
/// the first status-only one (EOB or error): (status, headers, payload).
async fn direct_all(
    c: &async_nats::Client,
    subject: &str,
    body: &str,
) -> Vec<(Option<String>, Vec<(String, String)>, String)> {
    let inbox = c.new_inbox();
    let mut sub = c.subscribe(inbox.clone()).await.unwrap();
    c.publish_with_reply(subject.to_string(), inbox, body.to_string().into())
        .await
        .unwrap();
    let mut out = Vec::new();
    loop {
        let m = common::within("direct get reply", sub.next())
            .await
            .expect("subscription ended");
        let status = m.status.map(|s| s.as_u16().to_string());
        let headers: Vec<(String, String)> = m
            .headers
            .as_ref()
            .map(|h| {
                h.iter()
                    .flat_map(|(k, vs)| vs.iter().map(move |v| (k.to_string(), v.to_string())))
                    .collect()
            })
            .unwrap_or_default();
        let end = status.is_some();
        out.push((
            status,
            headers,
            String::from_utf8_lossy(&m.payload).into_owned(),
        ));
        if end {
            return out;
        }
    }
}

fn header<'a>(h: &'a [(String, String)], k: &str) -> Option<&'a str> {
    h.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
}

async fn setup(c: &async_nats::Client) {
    let r = js_api(
        c,
        "$JS.API.STREAM.CREATE.D",
        &json!({"name": "D", "subjects": ["d.>"], "allow_direct": true}).to_string(),
    )
    .await;
    assert!(r.get("error").is_none(), "{r}");
    for (s, p) in [
        ("d.a", "1"),
        ("d.b", "2"),
        ("d.a", "3"),
        ("d.c", "4"),
        ("d.b", "5"),
    ] {
        js_publish(c, s, &[], p).await;
    }
}

#[tokio::test]
async fn direct_get_batch() {
    let s = Server::start_js(&[]);
    let c = s.client().await;
    setup(&c).await;
    let r = direct_all(&c, "$JS.API.DIRECT.GET.D", r#"{"seq":2,"batch":3}"#).await;
    assert_eq!(r.len(), 4, "{r:?}");
    let seqs: Vec<&str> = r[..3]
        .iter()
        .map(|(_, h, _)| header(h, "Nats-Sequence").unwrap())
        .collect();
    assert_eq!(seqs, ["2", "3", "4"]);
    assert_eq!(header(&r[0].1, "Nats-Num-Pending"), Some("3"));
    assert_eq!(header(&r[0].1, "Nats-Last-Sequence"), Some("0"));
    assert_eq!(header(&r[2].1, "Nats-Num-Pending"), Some("1"));
    assert_eq!(header(&r[2].1, "Nats-Last-Sequence"), Some("3"));
    assert_eq!(r[3].0.as_deref(), Some("204"));
    assert_eq!(header(&r[3].1, "Nats-Num-Pending"), Some("1"), "{r:?}");
    assert_eq!(header(&r[3].1, "Nats-Last-Sequence"), Some("4"), "{r:?}");

    // With a subject filter.
    let r = direct_all(
        &c,
        "$JS.API.DIRECT.GET.D",
        r#"{"seq":1,"batch":10,"next_by_subj":"d.b"}"#,
    )
    .await;
    let got: Vec<&str> = r
        .iter()
        .filter(|x| x.0.is_none())
        .map(|x| x.2.as_str())
        .collect();
    assert_eq!(got, ["2", "5"], "{r:?}");
    assert_eq!(r.last().unwrap().0.as_deref(), Some("204"));
}

#[tokio::test]
async fn direct_get_multi_last() {
    let s = Server::start_js(&[]);
    let c = s.client().await;
    setup(&c).await;
    let r = direct_all(
        &c,
        "$JS.API.DIRECT.GET.D",
        r#"{"multi_last":["d.a","d.b"]}"#,
    )
    .await;
    let got: Vec<(&str, &str)> = r
        .iter()
        .filter(|x| x.0.is_none())
        .map(|x| (header(&x.1, "Nats-Subject").unwrap(), x.2.as_str()))
        .collect();
    assert_eq!(got, [("d.a", "3"), ("d.b", "5")], "{r:?}");
    let eob = r.last().unwrap();
    assert_eq!(eob.0.as_deref(), Some("204"), "{r:?}");
    assert_eq!(header(&eob.1, "Nats-UpTo-Sequence"), Some("5"), "{r:?}");
    // Nothing matches.
    let r = direct_all(&c, "$JS.API.DIRECT.GET.D", r#"{"multi_last":["zzz"]}"#).await;
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].0.as_deref(), Some("404"), "{r:?}");
}

/// Direct gets follow `allow_direct` through updates: nobody answers
/// while it is off (503 no responders), the stream does once it is on.
#[tokio::test]
async fn direct_get_follows_allow_direct_updates() {
    let s = Server::start_js(&[]);
    let c = s.client().await;
    let cfg =
        |on: bool| json!({"name": "DG", "subjects": ["dg.>"], "allow_direct": on}).to_string();
    let r = js_api(&c, "$JS.API.STREAM.CREATE.DG", &cfg(false)).await;
    assert!(r.get("error").is_none(), "{r}");
    js_publish(&c, "dg.a", &[], "one").await;
    let get = || c.request("$JS.API.DIRECT.GET.DG.dg.a".to_string(), "".into());
    let e = common::within("direct get while off", get()).await;
    assert!(
        matches!(&e, Err(err) if err.kind() == async_nats::RequestErrorKind::NoResponders),
        "expected no responders, got {e:?}"
    );
    let r = js_api(&c, "$JS.API.STREAM.UPDATE.DG", &cfg(true)).await;
    assert!(r.get("error").is_none(), "{r}");
    let m = common::within("direct get while on", get()).await.unwrap();
    assert_eq!(&m.payload[..], b"one");
    let r = js_api(&c, "$JS.API.STREAM.UPDATE.DG", &cfg(false)).await;
    assert!(r.get("error").is_none(), "{r}");
    let e = common::within("direct get off again", get()).await;
    assert!(
        matches!(&e, Err(err) if err.kind() == async_nats::RequestErrorKind::NoResponders),
        "expected no responders, got {e:?}"
    );
}
