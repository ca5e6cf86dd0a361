//! Events a consumer publishes: delivery limits reached, terminated
//! messages, consumer created/deleted, sampled ack metrics. Each is made
//! only when someone listens.

use serde_json::{json, Value};

use crate::jetstream::config::{go_time, now_ns};
use crate::shard::Shard;

fn publish(shard: &Shard, acc: u32, subject: &str, mut v: Value) {
    if !shard.has_interest(acc, subject.as_bytes()) {
        return;
    }
    if let Some(d) = &shard.g.opts.jetstream_domain {
        v["domain"] = json!(d);
    }
    shard.publish_internal(
        acc,
        subject.as_bytes(),
        None,
        None,
        v.to_string().as_bytes(),
    );
}

fn base(kind: &str, stream: &str, consumer: &str) -> Value {
    json!({
        "type": kind,
        "id": crate::auth::new_nonce(),
        "timestamp": go_time(now_ns()),
        "stream": stream,
        "consumer": consumer,
    })
}

/// `$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.<stream>.<consumer>`.
pub fn max_deliveries(shard: &Shard, acc: u32, stream: &str, consumer: &str, sseq: u64, n: u64) {
    let mut v = base(
        "io.nats.jetstream.advisory.v1.max_deliver",
        stream,
        consumer,
    );
    v["stream_seq"] = json!(sseq);
    v["deliveries"] = json!(n);
    let subject = format!("$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{stream}.{consumer}");
    publish(shard, acc, &subject, v);
}

/// `$JS.EVENT.ADVISORY.CONSUMER.MSG_NAKED.<stream>.<consumer>`.
pub fn naked(shard: &Shard, acc: u32, stream: &str, consumer: &str, cseq: u64, sseq: u64, n: u64) {
    let mut v = base("io.nats.jetstream.advisory.v1.nak", stream, consumer);
    v["consumer_seq"] = json!(cseq);
    v["stream_seq"] = json!(sseq);
    v["deliveries"] = json!(n);
    let subject = format!("$JS.EVENT.ADVISORY.CONSUMER.MSG_NAKED.{stream}.{consumer}");
    publish(shard, acc, &subject, v);
}

/// `$JS.EVENT.ADVISORY.CONSUMER.MSG_TERMINATED.<stream>.<consumer>`.
#[allow(clippy::too_many_arguments)]
pub fn terminated(
    shard: &Shard,
    acc: u32,
    stream: &str,
    consumer: &str,
    cseq: u64,
    sseq: u64,
    n: u64,
    reason: &str,
) {
    let mut v = base("io.nats.jetstream.advisory.v1.terminated", stream, consumer);
    v["consumer_seq"] = json!(cseq);
    v["stream_seq"] = json!(sseq);
    v["deliveries"] = json!(n);
    if !reason.is_empty() {
        v["reason"] = json!(reason);
    }
    let subject = format!("$JS.EVENT.ADVISORY.CONSUMER.MSG_TERMINATED.{stream}.{consumer}");
    publish(shard, acc, &subject, v);
}

/// `$JS.EVENT.ADVISORY.CONSUMER.{CREATED,DELETED}.<stream>.<consumer>`.
pub fn action(shard: &Shard, acc: u32, stream: &str, consumer: &str, action: &str) {
    let mut v = base(
        "io.nats.jetstream.advisory.v1.consumer_action",
        stream,
        consumer,
    );
    v["action"] = json!(action);
    let what = if action == "delete" {
        "DELETED"
    } else {
        "CREATED"
    };
    let subject = format!("$JS.EVENT.ADVISORY.CONSUMER.{what}.{stream}.{consumer}");
    publish(shard, acc, &subject, v);
}

/// `$JS.EVENT.METRIC.CONSUMER.ACK.<stream>.<consumer>` (sample_freq).
#[allow(clippy::too_many_arguments)]
pub fn ack_metric(
    shard: &Shard,
    acc: u32,
    stream: &str,
    consumer: &str,
    cseq: u64,
    sseq: u64,
    ack_time_ns: u64,
    n: u64,
) {
    let mut v = base("io.nats.jetstream.metric.v1.consumer_ack", stream, consumer);
    v["consumer_seq"] = json!(cseq);
    v["stream_seq"] = json!(sseq);
    v["ack_time"] = json!(ack_time_ns);
    v["deliveries"] = json!(n);
    let subject = format!("$JS.EVENT.METRIC.CONSUMER.ACK.{stream}.{consumer}");
    publish(shard, acc, &subject, v);
}

/// `sample_freq` ("30%" or "30") as a fraction; `None` when unset or bad.
pub fn sample_fraction(freq: &str) -> Option<f64> {
    let f = freq.trim().trim_end_matches('%');
    let v: f64 = f.parse().ok()?;
    (v > 0.0 && v <= 100.0).then_some(v / 100.0)
}
