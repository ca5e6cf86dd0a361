//! JetStream requests that retry while nobody answers: an API across a
//! leaf link that is not up yet, a server restarting, a stream being
//! recovered. Used by the sources and mirrors tests.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_nats::{Client, HeaderMap};
use serde_json::Value;

/// A `$JS.API`-style request, retried for up to 30 s while nobody
/// answers; the JSON reply.
pub async fn api(c: &Client, subject: &str, body: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = tokio::time::timeout(
            Duration::from_secs(2),
            c.request(subject.to_string(), body.to_string().into()),
        )
        .await;
        if let Ok(Ok(m)) = r {
            if !m.payload.is_empty() {
                return serde_json::from_slice(&m.payload)
                    .unwrap_or_else(|e| panic!("{subject}: not JSON ({e}): {:?}", m.payload));
            }
        }
        assert!(
            Instant::now() < deadline,
            "{subject} {body}: never answered"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `STREAM.INFO` under the API prefix `prefix`; fails on an API error.
pub async fn info(c: &Client, prefix: &str, stream: &str) -> Value {
    let v = api(c, &format!("{prefix}.STREAM.INFO.{stream}"), "").await;
    assert!(v.get("error").is_none(), "info {stream}: {v}");
    v
}

static MSG_IDS: AtomicU64 = AtomicU64::new(0);

/// Publishes and waits for the PubAck, retried while nobody answers, with
/// a `Nats-Msg-Id` so a retry never stores twice; `tag` may add headers
/// (it gets the message's number). The sequence.
pub async fn publish_with(
    c: &Client,
    subject: &str,
    payload: &str,
    tag: impl Fn(u64, &mut HeaderMap),
) -> u64 {
    let id = MSG_IDS.fetch_add(1, Ordering::Relaxed);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut h = HeaderMap::new();
        h.insert("Nats-Msg-Id", format!("m{id}").as_str());
        tag(id, &mut h);
        let r = tokio::time::timeout(
            Duration::from_secs(2),
            c.request_with_headers(subject.to_string(), h, payload.to_string().into()),
        )
        .await;
        if let Ok(Ok(m)) = r {
            let v: Value = serde_json::from_slice(&m.payload).unwrap();
            assert!(v.get("error").is_none(), "publish {subject}: {v}");
            return v["seq"].as_u64().unwrap();
        }
        assert!(Instant::now() < deadline, "publish {subject}: no PubAck");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
