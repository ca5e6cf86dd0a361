//! JetStream across leaf links by domain, over the hub-leaf pairs of
//! `LEAF_PAIRS` (see `tests/leaf.rs`).

mod common;

use std::time::{Duration, Instant};

use async_nats::Client;
use common::leaf::*;
use common::{within, STEP};
use futures::StreamExt;
use serde_json::Value;

// ---------------------------------------------------------------------------
// JetStream across the link, by domain
// ---------------------------------------------------------------------------

/// A JetStream API request and its JSON answer (the first one).
async fn js_request(ctx: &str, c: &Client, subject: &str, body: &str) -> Value {
    let m = within(
        &format!("{ctx}: {subject}"),
        c.request(subject.to_string(), body.to_string().into()),
    )
    .await
    .unwrap_or_else(|e| panic!("{ctx}: {subject}: {e}"));
    serde_json::from_slice(&m.payload)
        .unwrap_or_else(|e| panic!("{ctx}: {subject}: not JSON ({e}): {:?}", m.payload))
}

/// How many answers one request gets within `wait` (a JetStream API that
/// crossed the link by mistake answers twice).
async fn answers(c: &Client, subject: &str, wait: Duration) -> usize {
    let inbox = c.new_inbox();
    let mut sub = c.subscribe(inbox.clone()).await.unwrap();
    c.publish_with_reply(subject.to_string(), inbox, "".into())
        .await
        .unwrap();
    c.flush().await.unwrap();
    let deadline = Instant::now() + wait;
    let mut n = 0;
    while let Ok(Some(_)) = tokio::time::timeout(
        deadline.saturating_duration_since(Instant::now()),
        sub.next(),
    )
    .await
    {
        n += 1;
    }
    n
}

/// Hub (domain `hub`) and leaf (domain `edge`), both with JetStream: a hub
/// client creates a stream on the leaf by its domain, publishes into it
/// across the link and reads it back; a leaf client reaches the hub's
/// JetStream by domain; the plain `$JS.API` stays each side's own (one
/// answer, from the local server).
#[tokio::test]
async fn jetstream_domains_across_the_link() {
    for pair in pairs() {
        let ctx = pair.to_string();
        let store = tempfile::tempdir().unwrap();
        let lp = common::free_port();
        let hub_js = format!(
            "jetstream {{ store_dir: {:?}, domain: hub }}",
            store.path().join("hub")
        );
        let leaf_js = format!(
            "jetstream {{ store_dir: {:?}, domain: edge }}",
            store.path().join("leaf")
        );
        let hub = Node::start(&ctx, pair.hub, "hub", &hub_conf(lp, "", &hub_js));
        let leaf = Node::start(
            &ctx,
            pair.leaf,
            "leaf",
            &leaf_conf(&[remote(&leaf_url(lp), "")], &leaf_js),
        );
        wait_links(&ctx, &[(&hub, 1), (&leaf, 1)]).await;
        let hc = hub.client().await;
        let lc = leaf.client().await;

        // The leaf's API by its domain, from the hub (once its interest
        // crossed the link).
        let deadline = Instant::now() + STEP;
        let info = loop {
            let r = tokio::time::timeout(
                Duration::from_millis(500),
                hc.request("$JS.edge.API.INFO", "".into()),
            )
            .await;
            if let Ok(Ok(m)) = r {
                if !m.payload.is_empty() {
                    break serde_json::from_slice::<Value>(&m.payload).unwrap();
                }
            }
            assert!(
                Instant::now() < deadline,
                "{ctx}: $JS.edge.API.INFO never answered from the hub\n{}",
                logs(&[&hub, &leaf])
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert_eq!(info["domain"], "edge", "{ctx}: {info}");

        let created = js_request(
            &ctx,
            &hc,
            "$JS.edge.API.STREAM.CREATE.EDGE",
            r#"{"name":"EDGE","subjects":["edge.>"],"storage":"file"}"#,
        )
        .await;
        assert!(created.get("error").is_none(), "{ctx}: {created}");
        assert_eq!(created["config"]["name"], "EDGE", "{ctx}: {created}");

        // Published on the hub, stored on the leaf (the PubAck comes back
        // across the link once the stream's interest crossed it).
        let deadline = Instant::now() + STEP;
        let ack = loop {
            let r = tokio::time::timeout(
                Duration::from_millis(500),
                hc.request("edge.data", "from the hub".into()),
            )
            .await;
            if let Ok(Ok(m)) = r {
                if !m.payload.is_empty() {
                    break serde_json::from_slice::<Value>(&m.payload).unwrap();
                }
            }
            assert!(
                Instant::now() < deadline,
                "{ctx}: no PubAck for edge.data from the hub\n{}",
                logs(&[&hub, &leaf])
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert_eq!(ack["stream"], "EDGE", "{ctx}: {ack}");
        assert_eq!(ack["domain"], "edge", "{ctx}: {ack}");
        let seq = ack["seq"].as_u64().unwrap();

        let got = js_request(
            &ctx,
            &hc,
            "$JS.edge.API.STREAM.MSG.GET.EDGE",
            &format!(r#"{{"seq":{seq}}}"#),
        )
        .await;
        assert_eq!(got["message"]["subject"], "edge.data", "{ctx}: {got}");
        let data = got["message"]["data"].as_str().unwrap_or_default();
        use base64::Engine;
        let data = base64::engine::general_purpose::STANDARD
            .decode(data)
            .unwrap();
        assert_eq!(data, b"from the hub", "{ctx}: {got}");

        // The same stream seen from the leaf's own API.
        let local = js_request(&ctx, &lc, "$JS.API.STREAM.INFO.EDGE", "").await;
        assert_eq!(local["state"]["messages"], 1, "{ctx}: {local}");

        // The hub's API by its domain, from the leaf.
        let hub_info = js_request(&ctx, &lc, "$JS.hub.API.INFO", "").await;
        assert_eq!(hub_info["domain"], "hub", "{ctx}: {hub_info}");

        // `$JS.API` does not cross: one answer on each side, its own.
        for (c, side, domain) in [(&hc, "hub", "hub"), (&lc, "leaf", "edge")] {
            let n = answers(c, "$JS.API.INFO", Duration::from_millis(500)).await;
            assert_eq!(n, 1, "{ctx}: $JS.API.INFO on the {side} answered {n} times");
            let v = js_request(&ctx, c, "$JS.API.INFO", "").await;
            assert_eq!(v["domain"], domain, "{ctx}: {side}: {v}");
        }
    }
}
