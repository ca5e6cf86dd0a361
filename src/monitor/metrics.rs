//! `/metrics`: the monitoring data in Prometheus' text format, named as the
//! prometheus-nats-exporter names it with the prefix `nats`
//! (`nats_varz_*` from `/varz`, `nats_jetstream_*` from `/jsz`), so the
//! alerts and dashboards built on the exporter keep working without it;
//! per shard and per leaf link under `broker_edge_*`.

use std::collections::HashMap;
use std::fmt::Write;
use std::rc::Rc;
use std::sync::atomic::Ordering;

use broker_edge_storage::stats::{Histogram, DURABLE_BUCKETS};
use serde_json::Value;

use crate::shard::Shard;

type Labels = Vec<(&'static str, String)>;

/// One metric family: its samples are written under one HELP/TYPE head.
struct Family {
    name: String,
    help: &'static str,
    kind: &'static str,
    /// (name suffix, labels, value): a histogram's samples are
    /// `_bucket`, `_sum` and `_count`.
    samples: Vec<(&'static str, Labels, f64)>,
}

#[derive(Default)]
struct Out {
    families: Vec<Family>,
}

impl Out {
    fn family(&mut self, name: &str, help: &'static str, kind: &'static str) -> &mut Family {
        let i = match self.families.iter().position(|f| f.name == name) {
            Some(i) => i,
            None => {
                self.families.push(Family {
                    name: name.to_string(),
                    help,
                    kind,
                    samples: Vec::new(),
                });
                self.families.len() - 1
            }
        };
        &mut self.families[i]
    }

    fn add(
        &mut self,
        name: &str,
        help: &'static str,
        kind: &'static str,
        labels: Vec<(&'static str, String)>,
        v: f64,
    ) {
        self.family(name, help, kind).samples.push(("", labels, v));
    }

    /// A latency histogram in seconds (cumulative buckets, `+Inf`, sum
    /// and count).
    fn histogram(
        &mut self,
        name: &str,
        help: &'static str,
        labels: Vec<(&'static str, String)>,
        h: &Histogram,
    ) {
        let f = self.family(name, help, "histogram");
        let mut below = 0;
        for (i, bound) in DURABLE_BUCKETS.iter().enumerate() {
            below += h.counts[i];
            let mut l = labels.clone();
            l.push(("le", bound.to_string()));
            f.samples.push(("_bucket", l, below as f64));
        }
        let mut l = labels.clone();
        l.push(("le", "+Inf".to_string()));
        f.samples.push(("_bucket", l, h.count() as f64));
        f.samples.push(("_sum", labels.clone(), h.sum_seconds));
        f.samples.push(("_count", labels, h.count() as f64));
    }

    fn gauge(
        &mut self,
        name: &str,
        help: &'static str,
        labels: Vec<(&'static str, String)>,
        v: f64,
    ) {
        self.add(name, help, "gauge", labels, v);
    }

    fn counter(
        &mut self,
        name: &str,
        help: &'static str,
        labels: Vec<(&'static str, String)>,
        v: f64,
    ) {
        self.add(name, help, "counter", labels, v);
    }

    fn render(&self) -> String {
        let mut s = String::new();
        for f in &self.families {
            let _ = writeln!(s, "# HELP {} {}", f.name, f.help);
            let _ = writeln!(s, "# TYPE {} {}", f.name, f.kind);
            for (suffix, labels, v) in &f.samples {
                s.push_str(&f.name);
                s.push_str(suffix);
                if !labels.is_empty() {
                    s.push('{');
                    for (i, (k, val)) in labels.iter().enumerate() {
                        if i > 0 {
                            s.push(',');
                        }
                        let _ = write!(s, "{k}=\"{}\"", escape(val));
                    }
                    s.push('}');
                }
                let _ = writeln!(s, " {v}");
            }
        }
        s
    }
}

/// Label values as the text format wants them.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn num(v: &Value) -> f64 {
    v.as_f64().unwrap_or(0.0)
}

pub async fn metrics(shard: &Rc<Shard>) -> Result<String, String> {
    let g = shard.g.clone();
    let mut o = Out::default();
    let server = || {
        vec![
            ("server_id", g.server_id.clone()),
            ("server_name", g.server_name.clone()),
        ]
    };
    let varz = super::endpoints::varz(&g);
    // Gauges, as the exporter has them (its names carry no `_total`).
    for (key, help) in [
        ("connections", "Current number of client connections"),
        ("total_connections", "Client connections since start"),
        ("subscriptions", "Current number of subscriptions"),
        ("in_msgs", "Messages received"),
        ("out_msgs", "Messages sent"),
        ("in_bytes", "Bytes received"),
        ("out_bytes", "Bytes sent"),
        ("slow_consumers", "Connections closed as slow consumers"),
        ("leafnodes", "Leaf node links up"),
        ("mem", "Resident memory in bytes"),
        ("cpu", "CPU use in percent of one core since start"),
    ] {
        o.gauge(&format!("nats_varz_{key}"), help, server(), num(&varz[key]));
    }
    let start = varz["start"].as_str().unwrap_or_default();
    let up = g.start.elapsed().as_secs_f64();
    o.gauge(
        "nats_varz_uptime_seconds",
        "Seconds since the server started",
        {
            let mut l = server();
            l.push(("start", start.to_string()));
            l
        },
        up,
    );

    for (i, st) in g.stats.iter().enumerate() {
        let l = || {
            let mut l = server();
            l.push(("shard", i.to_string()));
            l
        };
        o.gauge(
            "broker_edge_shard_connections",
            "Client connections owned by the shard",
            l(),
            st.connections.load(Ordering::Relaxed) as f64,
        );
        o.gauge(
            "broker_edge_shard_subscriptions",
            "Subscriptions owned by the shard",
            l(),
            st.subscriptions.load(Ordering::Relaxed) as f64,
        );
        o.counter(
            "broker_edge_shard_in_msgs_total",
            "Messages the shard's connections received",
            l(),
            st.in_msgs.load(Ordering::Relaxed) as f64,
        );
        o.counter(
            "broker_edge_shard_out_msgs_total",
            "Messages the shard's connections sent",
            l(),
            st.out_msgs.load(Ordering::Relaxed) as f64,
        );
        o.gauge(
            "broker_edge_shard_leafnodes",
            "Leaf node links owned by the shard",
            l(),
            st.leafs.load(Ordering::Relaxed) as f64,
        );
    }

    for r in super::endpoints::gather(&g, &super::gather::Query::Work).await {
        let Some(w) = r.work else { continue };
        let l = || {
            let mut l = server();
            l.push(("shard", w.shard.to_string()));
            l
        };
        o.counter(
            "broker_edge_shard_busy_seconds_total",
            "Time the shard's loop spent running tasks and polling for I/O (not idle)",
            l(),
            w.busy.as_secs_f64(),
        );
        let st = &w.storage;
        o.counter(
            "broker_edge_storage_groups_total",
            "Group commits the shard's logs wrote",
            l(),
            st.groups as f64,
        );
        o.counter(
            "broker_edge_storage_records_total",
            "Records (messages, deletes, purges) in those group commits",
            l(),
            st.records as f64,
        );
        o.counter(
            "broker_edge_storage_written_bytes_total",
            "Bytes the shard's logs wrote to disk",
            l(),
            st.bytes_written as f64,
        );
        o.histogram(
            "broker_edge_storage_durable_seconds",
            "Time to make a write durable (an O_DSYNC group write or an fdatasync)",
            l(),
            &st.durable,
        );
    }

    let leafz = super::leafz::leafz(shard, &HashMap::new()).await?;
    for link in leafz["leafs"].as_array().into_iter().flatten() {
        let l = || {
            let mut l = server();
            l.push((
                "remote",
                link["name"].as_str().unwrap_or_default().to_string(),
            ));
            l.push((
                "account",
                link["account"].as_str().unwrap_or_default().to_string(),
            ));
            l.push(("ip", link["ip"].as_str().unwrap_or_default().to_string()));
            l.push(("port", link["port"].to_string()));
            l
        };
        for (key, help) in [
            ("in_msgs", "Messages received over the leaf link"),
            ("out_msgs", "Messages sent over the leaf link"),
            ("in_bytes", "Bytes received over the leaf link"),
            ("out_bytes", "Bytes sent over the leaf link"),
        ] {
            o.counter(
                &format!("broker_edge_leaf_{key}_total"),
                help,
                l(),
                num(&link[key]),
            );
        }
        o.gauge(
            "broker_edge_leaf_subscriptions",
            "Interest the other side of the leaf link announced",
            l(),
            num(&link["subscriptions"]),
        );
    }

    let params: HashMap<String, String> = [("consumers".to_string(), "true".to_string())].into();
    let jsz = super::jsz::jsz(shard, &params).await?;
    let domain = jsz["config"]["domain"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let js_server = || {
        let mut l = server();
        l.push(("domain", domain.clone()));
        l
    };
    let disabled = jsz["disabled"].as_bool().unwrap_or(false);
    o.gauge(
        "nats_jetstream_server_jetstream_disabled",
        "JetStream disabled or not",
        js_server(),
        if disabled { 1.0 } else { 0.0 },
    );
    for (key, name, help) in [
        (
            "streams",
            "total_streams",
            "Total number of streams in JetStream",
        ),
        (
            "consumers",
            "total_consumers",
            "Total number of consumers in JetStream",
        ),
        (
            "messages",
            "total_messages",
            "Total number of stored messages in JetStream",
        ),
        (
            "bytes",
            "total_message_bytes",
            "Total number of bytes stored in JetStream",
        ),
    ] {
        o.gauge(
            &format!("nats_jetstream_server_{name}"),
            help,
            js_server(),
            num(&jsz[key]),
        );
    }
    o.gauge(
        "nats_jetstream_server_max_memory",
        "JetStream Max Memory",
        js_server(),
        num(&jsz["config"]["max_memory"]),
    );
    o.gauge(
        "nats_jetstream_server_max_storage",
        "JetStream Max Storage",
        js_server(),
        num(&jsz["config"]["max_storage"]),
    );
    for acc in jsz["account_details"].as_array().into_iter().flatten() {
        let account = acc["name"].as_str().unwrap_or_default().to_string();
        for s in acc["stream_detail"].as_array().into_iter().flatten() {
            let stream = s["name"].as_str().unwrap_or_default().to_string();
            let sl = || {
                let mut l = js_server();
                l.push(("account", account.clone()));
                l.push(("stream_name", stream.clone()));
                l
            };
            let state = &s["state"];
            for (key, name, help) in [
                (
                    "messages",
                    "total_messages",
                    "Total number of messages from a stream",
                ),
                ("bytes", "total_bytes", "Total stored bytes from a stream"),
                ("first_seq", "first_seq", "First sequence from a stream"),
                ("last_seq", "last_seq", "Last sequence from a stream"),
                // The exporter's `consumer_count`: promtool reserves
                // `_count` for histograms and summaries.
                (
                    "consumer_count",
                    "consumers",
                    "Total number of consumers from a stream",
                ),
            ] {
                o.gauge(
                    &format!("nats_jetstream_stream_{name}"),
                    help,
                    sl(),
                    num(&state[key]),
                );
            }
            for c in s["consumer_detail"].as_array().into_iter().flatten() {
                let cl = || {
                    let mut l = sl();
                    l.push((
                        "consumer_name",
                        c["name"].as_str().unwrap_or_default().to_string(),
                    ));
                    l
                };
                for (v, name, help) in [
                    (
                        &c["delivered"]["consumer_seq"],
                        "delivered_consumer_seq",
                        "Latest sequence number of a stream consumer",
                    ),
                    (
                        &c["delivered"]["stream_seq"],
                        "delivered_stream_seq",
                        "Latest sequence number of a stream",
                    ),
                    (
                        &c["num_ack_pending"],
                        "num_ack_pending",
                        "Number of pending acks from a consumer",
                    ),
                    (
                        &c["num_redelivered"],
                        "num_redelivered",
                        "Number of redelivered messages from a consumer",
                    ),
                    (
                        &c["num_waiting"],
                        "num_waiting",
                        "Number of inflight fetch requests from a pull consumer",
                    ),
                    (
                        &c["num_pending"],
                        "num_pending",
                        "Number of pending messages from a consumer",
                    ),
                    (
                        &c["ack_floor"]["consumer_seq"],
                        "ack_floor_consumer_seq",
                        "Ack floor consumer sequence of a consumer",
                    ),
                    (
                        &c["ack_floor"]["stream_seq"],
                        "ack_floor_stream_seq",
                        "Ack floor stream sequence of a consumer",
                    ),
                ] {
                    o.gauge(
                        &format!("nats_jetstream_consumer_{name}"),
                        help,
                        cl(),
                        num(v),
                    );
                }
            }
        }
    }
    Ok(o.render())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_have_one_head_and_escaped_labels() {
        let mut o = Out::default();
        o.gauge("a_b", "help", vec![("x", "q\"\\\n".into())], 1.0);
        o.gauge("a_b", "help", vec![("x", "2".into())], 2.5);
        let t = o.render();
        assert_eq!(
            t,
            "# HELP a_b help\n# TYPE a_b gauge\na_b{x=\"q\\\"\\\\\\n\"} 1\na_b{x=\"2\"} 2.5\n"
        );
    }

    #[test]
    fn histograms_have_cumulative_buckets_sum_and_count() {
        let mut h = Histogram::default();
        h.counts[0] = 2;
        h.counts[3] = 1;
        h.counts[DURABLE_BUCKETS.len()] = 1;
        h.sum_seconds = 1.5;
        let mut o = Out::default();
        o.histogram("d_seconds", "help", vec![("shard", "0".into())], &h);
        let t = o.render();
        let has = |line: &str| assert!(t.contains(&format!("{line}\n")), "{line} in\n{t}");
        assert!(
            t.starts_with("# HELP d_seconds help\n# TYPE d_seconds histogram\n"),
            "{t}"
        );
        has(r#"d_seconds_bucket{shard="0",le="0.00005"} 2"#);
        has(r#"d_seconds_bucket{shard="0",le="0.00025"} 2"#);
        has(r#"d_seconds_bucket{shard="0",le="0.0005"} 3"#);
        has(r#"d_seconds_bucket{shard="0",le="0.25"} 3"#);
        has(r#"d_seconds_bucket{shard="0",le="+Inf"} 4"#);
        has(r#"d_seconds_sum{shard="0"} 1.5"#);
        assert!(t.ends_with("d_seconds_count{shard=\"0\"} 4\n"), "{t}");
    }
}
