//! Stream `sources`: a stream fed by other streams, here and across a leaf
//! link by JetStream domain (`external.api`), with the reference's
//! `Nats-Stream-Source` header and stream info `sources`.
//!
//!     cargo test -p broker-edge --test jetstream_sources
//!
//! The local tests run against the binary under test (`BROKER_EDGE_BIN`
//! may name nats-server 2.15.3 to check them there); the first one also
//! sends the same requests to the pinned 2.15.3 reference and compares the
//! key sets of the create and info replies and the validation errors. The
//! leaf test runs a nats-server 2.15.3 hub and a Broker Edge hub, each with
//! a Broker Edge leaf; streams on each side source a stream of the other
//! side by its domain, through a leaf restart and a hub restart.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use async_nats::Client;
use base64::Engine;
use serde_json::{json, Value};

use common::retry::{api, info, publish_with};
use common::{js_api, Server};

/// How long sourcing may take to catch up after an outage (the reference
/// notices a silent source after 10 s and backs off between attempts).
const CATCH_UP: Duration = Duration::from_secs(90);

async fn publish(c: &Client, subject: &str, payload: &str) -> u64 {
    publish_with(c, subject, payload, |_, _| {}).await
}

/// One stored message: subject, payload, `Nats-Stream-Source`.
#[derive(Debug, Clone)]
struct Stored {
    subject: String,
    data: String,
    source: Option<String>,
}

async fn get(c: &Client, api_prefix: &str, stream: &str, seq: u64) -> Option<Stored> {
    let v = api(
        c,
        &format!("{api_prefix}.STREAM.MSG.GET.{stream}"),
        &json!({ "seq": seq }).to_string(),
    )
    .await;
    let m = v.get("message")?;
    let b64 = |k: &str| {
        m.get(k)
            .and_then(|x| x.as_str())
            .map(|s| base64::engine::general_purpose::STANDARD.decode(s).unwrap())
            .unwrap_or_default()
    };
    let hdrs = String::from_utf8(b64("hdrs")).unwrap();
    let source = hdrs
        .split("\r\n")
        .find_map(|l| l.strip_prefix("Nats-Stream-Source:"))
        .map(|v| v.trim().to_string());
    Some(Stored {
        subject: m["subject"].as_str().unwrap().to_string(),
        data: String::from_utf8(b64("data")).unwrap(),
        source,
    })
}

/// Every message of `stream`.
async fn all(c: &Client, api_prefix: &str, stream: &str) -> Vec<Stored> {
    let v = info(c, api_prefix, stream).await;
    let (first, last) = (
        v["state"]["first_seq"].as_u64().unwrap(),
        v["state"]["last_seq"].as_u64().unwrap(),
    );
    let mut out = Vec::new();
    for seq in first.max(1)..=last {
        if let Some(m) = get(c, api_prefix, stream, seq).await {
            out.push(m);
        }
    }
    out
}

/// Waits until `stream` holds `n` messages (failing if it ever holds more).
async fn wait_count(c: &Client, api_prefix: &str, stream: &str, n: u64, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let v = info(c, api_prefix, stream).await;
        let got = v["state"]["messages"].as_u64().unwrap();
        assert!(got <= n, "{stream}: {got} messages, more than {n}: {v}");
        if got == n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{stream}: {got} messages after {within:?}, wanted {n}: {v}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The origin sequences in the source headers of `msgs` for origin
/// `name` (the header's first field, without an api hash): each once, in
/// order, exactly `1..=n`.
fn assert_exactly(msgs: &[Stored], name: &str, n: u64, ctx: &str) {
    let seqs: Vec<u64> = msgs
        .iter()
        .filter_map(|m| {
            let h = m.source.as_deref()?;
            let f: Vec<&str> = h.split(' ').collect();
            (f[0].split(':').next() == Some(name)).then(|| f[1].parse().unwrap())
        })
        .collect();
    let want: Vec<u64> = (1..=n).collect();
    assert_eq!(seqs, want, "{ctx}: origin sequences from {name}: {msgs:#?}");
}

/// The source header's first five fields (nats-server 2.15.3 adds the
/// origin stream's identity as a sixth when the origin reports one).
fn head(m: &Stored) -> String {
    let h = m.source.as_deref().unwrap_or_default();
    h.split(' ').take(5).collect::<Vec<_>>().join(" ")
}

fn keys(path: &str, v: &Value, out: &mut BTreeSet<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                let p = format!("{path}.{k}");
                out.insert(p.clone());
                // Metadata keys name the server's version and level.
                if k != "metadata" {
                    keys(&p, x, out);
                }
            }
        }
        Value::Array(a) => {
            for x in a {
                keys(&format!("{path}[]"), x, out);
            }
        }
        _ => {}
    }
}

fn same_keys(what: &str, ours: &Value, reference: &Value) {
    let (mut a, mut b) = (BTreeSet::new(), BTreeSet::new());
    keys("", ours, &mut a);
    keys("", reference, &mut b);
    let missing: Vec<_> = b.difference(&a).collect();
    let extra: Vec<_> = a.difference(&b).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{what}: keys missing {missing:?}, extra {extra:?}\nours: {ours}\nreference: {reference}"
    );
}

/// The local scenario on one server; returns the replies to compare.
async fn local_scenario(srv: &Server) -> Vec<(String, Value)> {
    let c = srv.client().await;
    let mut out = Vec::new();
    for (name, subj) in [("ORDERS_A", "orders.a.>"), ("ORDERS_B", "orders.b.>")] {
        let v = js_api(
            &c,
            &format!("$JS.API.STREAM.CREATE.{name}"),
            &json!({"name": name, "subjects": [subj]}).to_string(),
        )
        .await;
        assert!(v.get("error").is_none(), "{v}");
    }
    // Refused configurations, with the reference's codes and words.
    for (what, cfg) in [
        (
            "itself",
            json!({"name": "SELF", "sources": [{"name": "SELF"}]}),
        ),
        (
            "duplicate",
            json!({"name": "DUP", "sources": [{"name": "ORDERS_A"}, {"name": "ORDERS_A"}]}),
        ),
        (
            "bad name",
            json!({"name": "BAD", "sources": [{"name": "a.b"}]}),
        ),
        (
            "filter and transforms",
            json!({"name": "FT", "sources": [{"name": "ORDERS_A", "filter_subject": "orders.a.x",
                "subject_transforms": [{"src": "orders.a.*", "dest": "x.$1"}]}]}),
        ),
        (
            "api overlap",
            json!({"name": "EXT", "sources": [{"name": "ORDERS_A",
                "external": {"api": "$JS.API", "deliver": ""}}]}),
        ),
    ] {
        let name = cfg["name"].as_str().unwrap().to_string();
        let v = js_api(
            &c,
            &format!("$JS.API.STREAM.CREATE.{name}"),
            &cfg.to_string(),
        )
        .await;
        assert!(v.get("error").is_some(), "{what}: accepted: {v}");
        out.push((format!("error: {what}"), v["error"].clone()));
    }
    let v = js_api(
        &c,
        "$JS.API.STREAM.CREATE.ALL",
        &json!({"name": "ALL", "sources": [
            {"name": "ORDERS_A", "filter_subject": "orders.a.>"},
            {"name": "ORDERS_B", "filter_subject": "orders.b.new"},
        ]})
        .to_string(),
    )
    .await;
    assert!(v.get("error").is_none(), "{v}");
    assert_eq!(v["config"]["sources"][0]["name"], "ORDERS_A", "{v}");
    assert!(v["config"].get("subjects").is_none(), "{v}");
    out.push(("create ALL".into(), v));
    for i in 1..=5 {
        publish(&c, &format!("orders.a.{i}"), &format!("a{i}")).await;
        publish(&c, "orders.b.new", &format!("b{i}")).await;
        publish(&c, "orders.b.other", "filtered out").await;
    }
    wait_count(&c, "$JS.API", "ALL", 10, Duration::from_secs(20)).await;
    let msgs = all(&c, "$JS.API", "ALL").await;
    assert_exactly(&msgs, "ORDERS_A", 5, "ALL");
    let b: Vec<&Stored> = msgs
        .iter()
        .filter(|m| m.subject == "orders.b.new")
        .collect();
    assert_eq!(b.len(), 5, "{msgs:#?}");
    for (i, m) in b.iter().enumerate() {
        assert_eq!(m.data, format!("b{}", i + 1));
        // ORDERS_B stored b<i> at 2i-1 (each round also stores "other").
        assert_eq!(
            head(m),
            format!("ORDERS_B {} orders.b.new > orders.b.new", 2 * i + 1),
            "{m:?}"
        );
    }
    let a1 = msgs.iter().find(|m| m.subject == "orders.a.1").unwrap();
    assert_eq!(head(a1), "ORDERS_A 1 orders.a.> > orders.a.1");
    assert_eq!(a1.data, "a1");
    // Nothing more arrives.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    wait_count(&c, "$JS.API", "ALL", 10, Duration::from_secs(1)).await;
    let v = info(&c, "$JS.API", "ALL").await;
    let sources = v["sources"].as_array().expect("sources in info");
    assert_eq!(sources.len(), 2, "{v}");
    for s in sources {
        assert_eq!(s["lag"], 0, "{v}");
        assert!(s["active"].as_i64().unwrap() >= 0, "{v}");
    }
    let names: BTreeSet<&str> = sources
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, BTreeSet::from(["ORDERS_A", "ORDERS_B"]));
    out.push(("info ALL".into(), v));

    // A source removed by an update stops feeding; deleting the stream
    // tears the last one down (its consumer goes from the origin).
    let v = js_api(
        &c,
        "$JS.API.STREAM.UPDATE.ALL",
        &json!({"name": "ALL", "sources": [{"name": "ORDERS_A", "filter_subject": "orders.a.>"}]})
            .to_string(),
    )
    .await;
    assert!(v.get("error").is_none(), "{v}");
    out.push(("update ALL".into(), v));
    publish(&c, "orders.b.new", "after").await;
    publish(&c, "orders.a.6", "a6").await;
    wait_count(&c, "$JS.API", "ALL", 11, Duration::from_secs(20)).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let v = info(&c, "$JS.API", "ORDERS_B").await;
        if v["state"]["consumer_count"] == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "ORDERS_B keeps its source consumer: {v}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let v = js_api(&c, "$JS.API.STREAM.DELETE.ALL", "").await;
    assert_eq!(v["success"], true, "{v}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let v = info(&c, "$JS.API", "ORDERS_A").await;
        if v["state"]["consumer_count"] == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "ORDERS_A keeps its source consumer: {v}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    out
}

/// ALL aggregates ORDERS_A (filtered) and ORDERS_B (one subject): exactly
/// the messages, in each source's order, with the source header; info
/// shows both sources caught up; an update and a delete tear consumers
/// down. Key sets and errors as nats-server 2.15.3 answers them.
#[tokio::test]
async fn sources_aggregate_local_streams_like_the_reference() {
    let mut ours = Server::start_js(&[]);
    let ours_out = local_scenario(&ours).await;
    let mut reference = Server::start_js_bin(&common::ref_server_2_15(), &[]);
    let ref_out = local_scenario(&reference).await;
    assert_eq!(ours_out.len(), ref_out.len());
    for ((what, o), (_, r)) in ours_out.iter().zip(&ref_out) {
        if what.starts_with("error") {
            assert_eq!(o, r, "{what}");
        } else {
            same_keys(what, o, r);
        }
    }
    ours.stop();
    reference.stop();
}

/// The sourcing server restarts between publishes: the sources resume
/// after the last origin sequence stored, nothing twice, nothing missing.
#[tokio::test]
async fn sources_resume_after_a_restart() {
    let mut srv = Server::start_js(&[]);
    let c = srv.client().await;
    for (name, subj) in [("SRC1", "one.>"), ("SRC2", "two.>")] {
        let v = js_api(
            &c,
            &format!("$JS.API.STREAM.CREATE.{name}"),
            &json!({"name": name, "subjects": [subj]}).to_string(),
        )
        .await;
        assert!(v.get("error").is_none(), "{v}");
    }
    let v = js_api(
        &c,
        "$JS.API.STREAM.CREATE.AGG",
        &json!({"name": "AGG", "subjects": ["agg.>"], "sources": [{"name": "SRC1"}, {"name": "SRC2"}]})
            .to_string(),
    )
    .await;
    assert!(v.get("error").is_none(), "{v}");
    for i in 1..=5 {
        publish(&c, &format!("one.{i}"), "x").await;
        publish(&c, &format!("two.{i}"), "y").await;
    }
    publish(&c, "agg.own", "own").await;
    wait_count(&c, "$JS.API", "AGG", 11, Duration::from_secs(20)).await;
    drop(c);
    srv.restart();
    let c = srv.client().await;
    for i in 6..=10 {
        publish(&c, &format!("one.{i}"), "x").await;
        publish(&c, &format!("two.{i}"), "y").await;
    }
    wait_count(&c, "$JS.API", "AGG", 21, Duration::from_secs(30)).await;
    // A second restart with nothing new: still nothing twice.
    drop(c);
    srv.restart();
    let c = srv.client().await;
    publish(&c, "one.11", "x").await;
    wait_count(&c, "$JS.API", "AGG", 22, Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    wait_count(&c, "$JS.API", "AGG", 22, Duration::from_secs(1)).await;
    let msgs = all(&c, "$JS.API", "AGG").await;
    assert_exactly(&msgs, "SRC1", 11, "AGG");
    assert_exactly(&msgs, "SRC2", 10, "AGG");
    assert_eq!(msgs.iter().filter(|m| m.source.is_none()).count(), 1);
    srv.stop();
}

// ---------------------------------------------------------------------------
// Across a leaf link
// ---------------------------------------------------------------------------

/// A server from a config file (kept for restarts).
struct Node {
    srv: Server,
    _dir: tempfile::TempDir,
}

impl Node {
    fn start(bin: &Path, conf: &str) -> Node {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("server.conf");
        std::fs::write(&path, conf).unwrap();
        let srv = Server::start_bin(bin, &["-c", path.to_str().unwrap()]);
        Node { srv, _dir: dir }
    }
}

async fn leafz(n: &Node) -> u64 {
    n.srv.json("/leafz").await["leafnodes"]
        .as_u64()
        .unwrap_or(0)
}

async fn wait_linked(hub: &Node, leaf: &Node) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while leafz(hub).await != 1 || leafz(leaf).await != 1 {
        assert!(
            Instant::now() < deadline,
            "the leaf link never came up\n--- hub ---\n{}\n--- leaf ---\n{}",
            hub.srv.log(),
            leaf.srv.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn create(c: &Client, api_prefix: &str, cfg: Value) {
    let name = cfg["name"].as_str().unwrap().to_string();
    let v = api(
        c,
        &format!("{api_prefix}.STREAM.CREATE.{name}"),
        &cfg.to_string(),
    )
    .await;
    assert!(v.get("error").is_none(), "create {name}: {v}");
}

/// Hub (domain `hub`) and Broker Edge leaf (domain `edge`): HUB_COPY on
/// the hub sources EDGE_ORDERS by `$JS.edge.API` (our consumers over the
/// link when the hub is nats-server), LEAF_COPY on the leaf sources
/// HUB_ORDERS by `$JS.hub.API`. Then the leaf stops (publishes on the hub
/// meanwhile, on the leaf after its restart) and the hub stops
/// (publishes on the leaf meanwhile, on the hub after): both copies catch
/// up with every origin sequence exactly once.
#[tokio::test]
async fn sources_across_a_leaf_link_through_restarts() {
    for hub_bin in [common::ref_server_2_15(), common::server_bin()] {
        across_a_leaf_link(&hub_bin).await;
    }
}

async fn across_a_leaf_link(hub_bin: &Path) {
    let ctx = format!("hub {}", hub_bin.display());
    let store = tempfile::tempdir().unwrap();
    let lp = common::free_port();
    let hub_conf = format!(
        "jetstream {{ store_dir: {:?}, domain: hub }}\nleafnodes {{ host: \"127.0.0.1\", port: {lp} }}\n",
        store.path().join("hub")
    );
    let leaf_conf = format!(
        "jetstream {{ store_dir: {:?}, domain: edge }}\nleafnodes {{ remotes: [ {{ url: \"nats://127.0.0.1:{lp}\" }} ] }}\n",
        store.path().join("leaf")
    );
    let mut hub = Node::start(hub_bin, &hub_conf);
    let mut leaf = Node::start(&common::server_bin(), &leaf_conf);
    wait_linked(&hub, &leaf).await;
    let hc = hub.srv.client().await;
    let lc = leaf.srv.client().await;
    create(
        &lc,
        "$JS.API",
        json!({"name": "EDGE_ORDERS", "subjects": ["edge.orders.>"]}),
    )
    .await;
    create(
        &hc,
        "$JS.API",
        json!({"name": "HUB_ORDERS", "subjects": ["hub.orders.>"]}),
    )
    .await;
    create(
        &hc,
        "$JS.API",
        json!({"name": "HUB_COPY", "sources": [
            {"name": "EDGE_ORDERS", "external": {"api": "$JS.edge.API", "deliver": ""}}]}),
    )
    .await;
    create(
        &lc,
        "$JS.API",
        json!({"name": "LEAF_COPY", "sources": [
            {"name": "HUB_ORDERS", "filter_subject": "hub.orders.>",
             "external": {"api": "$JS.hub.API", "deliver": ""}}]}),
    )
    .await;
    let (mut edge_n, mut hub_n) = (0u64, 0u64);
    for i in 0..5 {
        publish(&lc, &format!("edge.orders.{i}"), "e").await;
        publish(&hc, &format!("hub.orders.{i}"), "h").await;
        edge_n += 1;
        hub_n += 1;
    }
    wait_count(&hc, "$JS.API", "HUB_COPY", edge_n, CATCH_UP).await;
    wait_count(&lc, "$JS.API", "LEAF_COPY", hub_n, CATCH_UP).await;
    let v = info(&hc, "$JS.API", "HUB_COPY").await;
    assert_eq!(
        v["sources"][0]["external"]["api"], "$JS.edge.API",
        "{ctx}: {v}"
    );
    assert_eq!(v["sources"][0]["lag"], 0, "{ctx}: {v}");
    let v = info(&lc, "$JS.API", "LEAF_COPY").await;
    assert_eq!(v["sources"][0]["lag"], 0, "{ctx}: {v}");
    assert!(
        v["sources"][0]["active"].as_i64().unwrap() >= 0,
        "{ctx}: {v}"
    );

    // The leaf goes away: the hub keeps taking publishes; after the leaf
    // is back the edge takes more.
    drop(lc);
    leaf.srv.stop();
    for i in 5..8 {
        publish(&hc, &format!("hub.orders.{i}"), "h").await;
        hub_n += 1;
    }
    leaf.srv.restart();
    let lc = leaf.srv.client().await;
    wait_linked(&hub, &leaf).await;
    for i in 5..8 {
        publish(&lc, &format!("edge.orders.{i}"), "e").await;
        edge_n += 1;
    }
    wait_count(&hc, "$JS.API", "HUB_COPY", edge_n, CATCH_UP).await;
    wait_count(&lc, "$JS.API", "LEAF_COPY", hub_n, CATCH_UP).await;

    // The hub goes away: the edge keeps taking publishes; after the hub
    // is back it takes more.
    drop(hc);
    hub.srv.stop();
    for i in 8..11 {
        publish(&lc, &format!("edge.orders.{i}"), "e").await;
        edge_n += 1;
    }
    hub.srv.restart();
    let hc = hub.srv.client().await;
    wait_linked(&hub, &leaf).await;
    for i in 8..11 {
        publish(&hc, &format!("hub.orders.{i}"), "h").await;
        hub_n += 1;
    }
    wait_count(&hc, "$JS.API", "HUB_COPY", edge_n, CATCH_UP).await;
    wait_count(&lc, "$JS.API", "LEAF_COPY", hub_n, CATCH_UP).await;
    // Settled: nothing more comes, every origin sequence once, in order.
    tokio::time::sleep(Duration::from_secs(3)).await;
    wait_count(&hc, "$JS.API", "HUB_COPY", edge_n, Duration::from_secs(1)).await;
    wait_count(&lc, "$JS.API", "LEAF_COPY", hub_n, Duration::from_secs(1)).await;
    let msgs = all(&hc, "$JS.API", "HUB_COPY").await;
    assert_exactly(&msgs, "EDGE_ORDERS", edge_n, &ctx);
    assert!(
        msgs.iter().all(|m| m.subject.starts_with("edge.orders.")),
        "{ctx}: {msgs:#?}"
    );
    let msgs = all(&lc, "$JS.API", "LEAF_COPY").await;
    assert_exactly(&msgs, "HUB_ORDERS", hub_n, &ctx);
    assert!(
        msgs.iter().all(|m| m.subject.starts_with("hub.orders.")),
        "{ctx}: {msgs:#?}"
    );
    // The copies read from the other side by domain, too.
    let v = info(&hc, "$JS.edge.API", "LEAF_COPY").await;
    assert_eq!(v["state"]["messages"], hub_n, "{ctx}: {v}");
    drop((hc, lc));
    leaf.srv.stop();
    hub.srv.stop();
}
