//! The `jetstream {}` block: what the durability and strictness settings
//! do, as `/jsz` reports them and as the API behaves.

mod common;

use common::{js_api, Server};
use serde_json::json;

fn conf(dir: &std::path::Path, body: &str) -> String {
    format!(
        "jetstream {{\n store_dir: {:?}\n {body}\n}}\n",
        dir.join("store").display().to_string()
    )
}

#[tokio::test]
async fn sync_interval_is_honoured_and_reported() {
    ours_only!(
        "the reference reports sync_interval whatever is set; we default to fsync per PubAck"
    );
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start_with_config(&conf(tmp.path(), ""), &[]);
    let j = s.json("/jsz").await;
    assert_eq!(j["config"]["sync_always"], true, "{j}");
    assert!(j["config"].get("sync_interval").is_none(), "{j}");
    drop(s);

    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start_with_config(&conf(tmp.path(), "sync_interval: 2m"), &[]);
    let j = s.json("/jsz").await;
    assert_eq!(j["config"]["sync_interval"], 120_000_000_000u64, "{j}");
    assert!(j["config"].get("sync_always").is_none(), "{j}");
    // Streams work the same.
    let c = s.client().await;
    let r = js_api(
        &c,
        "$JS.API.STREAM.CREATE.S",
        &json!({"name": "S"}).to_string(),
    )
    .await;
    assert!(r.get("error").is_none(), "{r}");
    let a = common::js_publish(&c, "S", &[], "x").await;
    assert_eq!(a["seq"], 1, "{a}");
}

#[tokio::test]
async fn strict_mode_and_unknown_fields() {
    // Strict by default (as nats-server since 2.11).
    let s = Server::start_js(&[]);
    let c = s.client().await;
    let r = js_api(
        &c,
        "$JS.API.STREAM.CREATE.S",
        &json!({"name": "S", "bogus": 1}).to_string(),
    )
    .await;
    assert_eq!(r["error"]["err_code"], 10025, "{r}");
    assert_eq!(
        r["error"]["description"], "invalid JSON: json: unknown field \"bogus\"",
        "{r}"
    );
    drop(s);
    // strict: false lets unknown fields through.
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start_with_config(&conf(tmp.path(), "strict: false"), &[]);
    let c = s.client().await;
    let r = js_api(
        &c,
        "$JS.API.STREAM.CREATE.S",
        &json!({"name": "S", "bogus": 1}).to_string(),
    )
    .await;
    assert!(r.get("error").is_none(), "{r}");
}
