//! Per-message TTL (`allow_msg_ttl`, the `Nats-TTL` header), as
//! nats-server 2.15.3 does it (run with BROKER_EDGE_BIN pointing at it).

mod common;

use std::time::{Duration, Instant};

use common::{js_api, js_publish, Server};

async fn msgs(c: &async_nats::Client, stream: &str) -> u64 {
    let info = js_api(c, &format!("$JS.API.STREAM.INFO.{stream}"), "").await;
    info["state"]["messages"].as_u64().unwrap()
}

/// Polls until the stream holds `want` messages (panics after `limit`).
async fn wait_msgs(c: &async_nats::Client, stream: &str, want: u64, limit: Duration) {
    let start = Instant::now();
    loop {
        let n = msgs(c, stream).await;
        if n == want {
            return;
        }
        assert!(
            start.elapsed() < limit,
            "stream {stream} has {n} messages, expected {want}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn messages_with_a_ttl_go_and_survive_restarts_until_due() {
    let mut s = Server::start_js(&[]);
    let c = s.client().await;
    let r = js_api(
        &c,
        "$JS.API.STREAM.CREATE.T",
        r#"{"name":"T","subjects":["t.>"],"allow_msg_ttl":true}"#,
    )
    .await;
    assert!(r.get("error").is_none(), "{r}");
    assert_eq!(r["config"]["allow_msg_ttl"], true);
    let a = js_publish(&c, "t.short", &[("Nats-TTL", "1s")], "short").await;
    assert_eq!(a["seq"], 1, "{a}");
    let a = js_publish(&c, "t.long", &[("Nats-TTL", "4")], "long").await;
    assert_eq!(a["seq"], 2, "{a}");
    let a = js_publish(&c, "t.keep", &[], "keep").await;
    assert_eq!(a["seq"], 3, "{a}");
    assert_eq!(msgs(&c, "T").await, 3);
    wait_msgs(&c, "T", 2, Duration::from_secs(10)).await;
    let gone = js_api(&c, "$JS.API.STREAM.MSG.GET.T", r#"{"seq":1}"#).await;
    assert_eq!(gone["error"]["err_code"], 10037, "{gone}");
    // The 4 s one is still due after a restart.
    drop(c);
    s.restart();
    let c = s.client().await;
    wait_msgs(&c, "T", 1, Duration::from_secs(15)).await;
    let kept = js_api(&c, "$JS.API.STREAM.MSG.GET.T", r#"{"seq":3}"#).await;
    assert_eq!(kept["message"]["subject"], "t.keep", "{kept}");
}

#[tokio::test]
async fn ttl_headers_refused_when_disabled_or_invalid() {
    let s = Server::start_js(&[]);
    let c = s.client().await;
    js_api(
        &c,
        "$JS.API.STREAM.CREATE.N",
        r#"{"name":"N","subjects":["n.>"]}"#,
    )
    .await;
    let a = js_publish(&c, "n.a", &[("Nats-TTL", "1s")], "x").await;
    assert_eq!(a["error"]["err_code"], 10166, "{a}");
    assert_eq!(a["error"]["description"], "per-message TTL is disabled");
    js_api(
        &c,
        "$JS.API.STREAM.CREATE.Y",
        r#"{"name":"Y","subjects":["y.>"],"allow_msg_ttl":true}"#,
    )
    .await;
    let a = js_publish(&c, "y.a", &[("Nats-TTL", "soon")], "x").await;
    assert_eq!(a["error"]["err_code"], 10165, "{a}");
    assert_eq!(a["error"]["description"], "invalid per-message TTL");
    assert_eq!(msgs(&c, "N").await, 0);
    assert_eq!(msgs(&c, "Y").await, 0);
}
