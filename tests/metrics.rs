//! `/metrics`: Prometheus' text format with the prometheus-nats-exporter's
//! names (`nats_varz_*`, `nats_jetstream_*`), figures that follow what the
//! server holds, and `promtool check metrics` (Debian's prometheus package,
//! installed by `scripts/test`) finding nothing to say.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::{js_api, Server};

/// The value of the sample of `name` whose labels contain all of `labels`.
fn sample(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .find(|l| labels.iter().all(|want| l.contains(want)))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// The sum of a per-shard family's samples.
fn sum_of(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn metrics_follow_the_server_and_pass_promtool() {
    ours_only!("nats-server has no /metrics (the exporter makes them)");
    let s = Server::start_js(&[]);
    let c = s.client().await;
    let created = js_api(
        &c,
        "$JS.API.STREAM.CREATE.ORDERS",
        r#"{"name":"ORDERS","subjects":["orders.>"]}"#,
    )
    .await;
    assert!(created.get("error").is_none(), "{created}");
    let consumer = js_api(
        &c,
        "$JS.API.CONSUMER.DURABLE.CREATE.ORDERS.C1",
        r#"{"stream_name":"ORDERS","config":{"durable_name":"C1","ack_policy":"explicit"}}"#,
    )
    .await;
    assert!(consumer.get("error").is_none(), "{consumer}");
    for i in 0..3 {
        let ack = c.request(format!("orders.{i}"), "x".into()).await.unwrap();
        assert!(!ack.payload.is_empty());
    }

    let (status, text) = s.http("/metrics").await;
    assert_eq!(status, 200, "{text}");
    let stream = ["stream_name=\"ORDERS\"", "account=\"$G\""];
    assert_eq!(
        sample(&text, "nats_jetstream_stream_total_messages", &stream),
        Some(3.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "nats_jetstream_stream_last_seq", &stream),
        Some(3.0)
    );
    assert_eq!(
        sample(&text, "nats_jetstream_stream_consumers", &stream),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &text,
            "nats_jetstream_consumer_num_pending",
            &["consumer_name=\"C1\""]
        ),
        Some(3.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "nats_jetstream_server_total_streams", &[]),
        Some(1.0)
    );
    assert!(sample(&text, "nats_varz_connections", &[]).is_some_and(|v| v >= 1.0));
    assert!(sample(&text, "nats_varz_in_msgs", &[]).is_some_and(|v| v >= 3.0));
    let shards: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("broker_edge_shard_connections{"))
        .collect();
    assert_eq!(shards.len().to_string(), common::shards(), "{text}");

    // Storage work per shard: every acknowledged publish was a group
    // commit made durable before its ack (the default policy).
    let groups = sum_of(&text, "broker_edge_storage_groups_total");
    assert!(groups >= 3.0, "{text}");
    assert!(
        sum_of(&text, "broker_edge_storage_records_total") >= 3.0,
        "{text}"
    );
    assert!(
        sum_of(&text, "broker_edge_storage_written_bytes_total") > 0.0,
        "{text}"
    );
    assert!(
        sum_of(&text, "broker_edge_storage_durable_seconds_count") >= 3.0,
        "{text}"
    );
    let inf = text
        .lines()
        .filter(|l| {
            l.starts_with("broker_edge_storage_durable_seconds_bucket{")
                && l.contains("le=\"+Inf\"")
        })
        .count();
    assert_eq!(inf.to_string(), common::shards(), "{text}");
    assert!(
        sum_of(&text, "broker_edge_shard_busy_seconds_total") > 0.0,
        "{text}"
    );

    // More messages show up at the next scrape.
    c.request("orders.more", "y".into()).await.unwrap();
    let (_, text2) = s.http("/metrics").await;
    assert_eq!(
        sample(&text2, "nats_jetstream_stream_total_messages", &stream),
        Some(4.0)
    );
    assert!(
        sum_of(&text2, "broker_edge_storage_groups_total") > groups,
        "{text2}"
    );

    let promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus; scripts/test installs it)");
    let mut p = promtool;
    p.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = p.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
