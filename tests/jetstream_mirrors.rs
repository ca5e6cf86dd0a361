//! Stream mirrors: a stream that holds another stream's messages at the
//! origin's sequences, with its timestamps, subjects and headers, gaps
//! kept as gaps; stream info `mirror`; the reference's refusals; restarts;
//! across a leaf link by JetStream domain; KV bucket mirrors made by the
//! `nats` CLI.
//!
//!     cargo test -p broker-edge --test jetstream_mirrors
//!
//! The local scenario runs against the binary under test and nats-server
//! 2.15.3 and compares the refusals (codes and words) and the key sets of
//! the info replies. The leaf test runs a nats-server 2.15.3 hub and a
//! Broker Edge hub, each with a Broker Edge leaf.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use async_nats::Client;
use serde_json::{json, Value};

use common::cli::{nats, nats_ok};
use common::retry::{api, info, publish_with};
use common::{js_api, Server};

/// How long mirroring may take to catch up after an outage (the reference
/// notices a silent origin after 10 s and backs off between attempts).
const CATCH_UP: Duration = Duration::from_secs(90);

/// Publishes with a header of its own (kept by the mirror as it is).
async fn publish(c: &Client, subject: &str, payload: &str) -> u64 {
    publish_with(c, subject, payload, |id, h| {
        h.insert("X-Mine", format!("h{id}").as_str());
    })
    .await
}

/// Every stored message of `stream`, by sequence (each the next one at
/// or after a sequence, so gaps cost nothing).
async fn all(c: &Client, prefix: &str, stream: &str) -> Vec<Value> {
    let mut out: Vec<Value> = Vec::new();
    let mut seq = 1;
    loop {
        let v = api(
            c,
            &format!("{prefix}.STREAM.MSG.GET.{stream}"),
            &json!({ "seq": seq, "next_by_subj": ">" }).to_string(),
        )
        .await;
        let Some(m) = v.get("message") else {
            assert_eq!(v["error"]["code"], 404, "{stream} from {seq}: {v}");
            return out;
        };
        seq = m["seq"].as_u64().unwrap() + 1;
        out.push(m.clone());
    }
}

fn seqs(msgs: &[Value]) -> Vec<u64> {
    msgs.iter().map(|m| m["seq"].as_u64().unwrap()).collect()
}

/// Waits until `stream`'s last sequence is `last` (failing if it passes
/// it); its info then.
async fn wait_last(c: &Client, prefix: &str, stream: &str, last: u64, within: Duration) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let v = info(c, prefix, stream).await;
        let got = v["state"]["last_seq"].as_u64().unwrap();
        assert!(got <= last, "{stream}: last {got}, beyond {last}: {v}");
        if got == last {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "{stream}: last {got} after {within:?}, wanted {last}: {v}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The mirror holds exactly the origin's messages from `from` on (those
/// `keep` accepts), byte for byte, at the same sequences and times.
async fn assert_mirrors(
    c: &Client,
    prefixes: (&str, &str),
    origin: &str,
    mirror: &str,
    from: u64,
    keep: impl Fn(&Value) -> bool,
    ctx: &str,
) {
    let want: Vec<Value> = all(c, prefixes.0, origin)
        .await
        .into_iter()
        .filter(|m| m["seq"].as_u64().unwrap() >= from && keep(m))
        .collect();
    let got: Vec<Value> = all(c, prefixes.1, mirror)
        .await
        .into_iter()
        .filter(|m| m["seq"].as_u64().unwrap() >= from)
        .collect();
    assert_eq!(
        seqs(&got),
        seqs(&want),
        "{ctx}: sequences of {mirror} against {origin}"
    );
    assert_eq!(got, want, "{ctx}: messages of {mirror} against {origin}");
}

fn keys(path: &str, v: &Value, out: &mut BTreeSet<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                let p = format!("{path}.{k}");
                out.insert(p.clone());
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

async fn create(c: &Client, prefix: &str, cfg: Value) -> Value {
    let name = cfg["name"].as_str().unwrap().to_string();
    let v = api(
        c,
        &format!("{prefix}.STREAM.CREATE.{name}"),
        &cfg.to_string(),
    )
    .await;
    assert!(v.get("error").is_none(), "create {name}: {v}");
    v
}

/// The local scenario on one server; returns the replies to compare.
async fn local_scenario(srv: &Server) -> Vec<(String, Value)> {
    let c = srv.client().await;
    let mut out = Vec::new();
    create(
        &c,
        "$JS.API",
        json!({"name": "ORIG", "subjects": ["o.>"], "allow_direct": true}),
    )
    .await;
    for i in 1..=10 {
        publish(&c, &format!("o.{}", i % 3), &format!("m{i}")).await;
    }
    // Gaps before the mirror exists: a delete and a subject purge.
    let v = js_api(&c, "$JS.API.STREAM.MSG.DELETE.ORIG", r#"{"seq":3}"#).await;
    assert_eq!(v["success"], true, "{v}");
    let v = js_api(&c, "$JS.API.STREAM.PURGE.ORIG", r#"{"filter":"o.2"}"#).await;
    assert_eq!(v["success"], true, "{v}");

    // An origin with a size limit: a mirror may not have a smaller one.
    create(
        &c,
        "$JS.API",
        json!({"name": "ORIG_BIG", "subjects": ["big"], "max_msg_size": 1000}),
    )
    .await;
    // Refused configurations, with the reference's codes and words.
    let m = json!({"name": "ORIG"});
    for (what, cfg) in [
        (
            "subjects",
            json!({"name": "E1", "mirror": m, "subjects": ["e1"]}),
        ),
        (
            "sources",
            json!({"name": "E2", "mirror": m, "sources": [{"name": "ORIG"}]}),
        ),
        (
            "first seq",
            json!({"name": "E3", "mirror": m, "first_seq": 5}),
        ),
        ("bad name", json!({"name": "E4", "mirror": {"name": "a.b"}})),
        (
            "filter and transforms",
            json!({"name": "E5", "mirror": {"name": "ORIG", "filter_subject": "o.1",
                "subject_transforms": [{"src": "o.*", "dest": "x.$1"}]}}),
        ),
        (
            "overlapping transforms",
            json!({"name": "E6", "mirror": {"name": "ORIG", "subject_transforms": [
                {"src": "o.*", "dest": "x.$1"}, {"src": "o.1", "dest": "y"}]}}),
        ),
        (
            "message size",
            json!({"name": "E7", "mirror": {"name": "ORIG_BIG"}, "max_msg_size": 10}),
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

    let v = create(
        &c,
        "$JS.API",
        json!({"name": "M", "mirror": {"name": "ORIG"}}),
    )
    .await;
    assert!(v["config"].get("subjects").is_none(), "{v}");
    // Direct gets are inherited from the origin.
    assert_eq!(v["config"]["mirror_direct"], true, "{v}");
    out.push(("create M".into(), v));
    create(
        &c,
        "$JS.API",
        json!({"name": "M_FROM", "mirror": {"name": "ORIG", "opt_start_seq": 6}}),
    )
    .await;
    create(
        &c,
        "$JS.API",
        json!({"name": "M_ONE", "mirror": {"name": "ORIG", "filter_subject": "o.1"}}),
    )
    .await;
    let v = wait_last(&c, "$JS.API", "M", 10, Duration::from_secs(20)).await;
    assert_eq!(v["state"]["first_seq"], 1, "{v}");
    // 3 deleted, 2, 5, 8 purged (o.2).
    assert_eq!(v["state"]["messages"], 6, "{v}");
    assert_eq!(v["state"]["num_deleted"], 4, "{v}");
    // Subjects, headers (the msg id, ours), data and times as stored.
    assert_mirrors(&c, ("$JS.API", "$JS.API"), "ORIG", "M", 1, |_| true, "M").await;
    // Gaps after the mirror caught up: a delete on the origin leaves the
    // mirror's copy; a purge moves the origin's next sequence on.
    publish(&c, "o.1", "m11").await;
    let v = js_api(&c, "$JS.API.STREAM.MSG.DELETE.ORIG", r#"{"seq":10}"#).await;
    assert_eq!(v["success"], true, "{v}");
    let v = js_api(&c, "$JS.API.STREAM.PURGE.ORIG", r#"{"seq":15}"#).await;
    assert_eq!(v["success"], true, "{v}");
    let s = publish(&c, "o.1", "m15").await;
    assert_eq!(s, 15);
    wait_last(&c, "$JS.API", "M", 15, Duration::from_secs(20)).await;
    wait_last(&c, "$JS.API", "M_FROM", 15, Duration::from_secs(20)).await;
    wait_last(&c, "$JS.API", "M_ONE", 15, Duration::from_secs(20)).await;
    let got = all(&c, "$JS.API", "M").await;
    assert_eq!(seqs(&got), vec![1, 4, 6, 7, 9, 10, 11, 15], "{got:#?}");
    assert!(got.iter().all(|m| m["hdrs"].is_string()), "{got:#?}");
    let from = all(&c, "$JS.API", "M_FROM").await;
    assert_eq!(seqs(&from), vec![6, 7, 9, 10, 11, 15], "{from:#?}");
    let one = all(&c, "$JS.API", "M_ONE").await;
    assert_eq!(seqs(&one), vec![1, 4, 7, 10, 11, 15], "{one:#?}");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let v = info(&c, "$JS.API", "M").await;
    assert_eq!(v["mirror"]["name"], "ORIG", "{v}");
    assert_eq!(v["mirror"]["lag"], 0, "{v}");
    assert!(v["mirror"]["active"].as_i64().unwrap() >= 0, "{v}");
    assert!(v.get("sources").is_none(), "{v}");
    out.push(("info M".into(), v));
    let v = info(&c, "$JS.API", "M_ONE").await;
    out.push(("info M_ONE".into(), v));

    // Nothing publishes into a mirror: it captures no subject.
    let r = c.request("M", "direct".into()).await;
    assert!(
        matches!(&r, Err(e) if e.kind() == async_nats::RequestErrorKind::NoResponders),
        "publish to M: {r:?}"
    );
    // The mirror config does not change; removing it promotes the stream.
    let v = js_api(
        &c,
        "$JS.API.STREAM.UPDATE.M",
        &json!({"name": "M", "mirror": {"name": "ORIG", "filter_subject": "o.1"}}).to_string(),
    )
    .await;
    out.push(("error: update".into(), v["error"].clone()));
    let v = js_api(
        &c,
        "$JS.API.STREAM.UPDATE.M_FROM",
        &json!({"name": "M_FROM", "subjects": ["promoted"]}).to_string(),
    )
    .await;
    assert!(v.get("error").is_none(), "{v}");
    assert!(v["config"].get("mirror").is_none(), "{v}");
    let s = publish(&c, "promoted", "own").await;
    assert_eq!(s, 16, "the promoted stream goes on after the origin's last");
    // Deleting the mirror takes its consumer off the origin.
    for name in ["M", "M_ONE"] {
        let v = js_api(&c, &format!("$JS.API.STREAM.DELETE.{name}"), "").await;
        assert_eq!(v["success"], true, "{v}");
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while info(&c, "$JS.API", "ORIG").await["state"]["consumer_count"] != 0 {
        assert!(Instant::now() < deadline, "ORIG keeps mirror consumers");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    out
}

/// Mirrors of a stream with gaps (a delete and a subject purge before,
/// a delete and a purge to a later sequence after), from the start, from
/// a sequence and of one subject: exactly the origin's messages at its
/// sequences, with its subjects, headers and times. Refusals as nats-server
/// 2.15.3 words them, info key sets as it shows them.
#[tokio::test]
async fn mirror_keeps_origin_sequences_like_the_reference() {
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

/// The server restarts between publishes, and once after the origin
/// jumped far ahead (a purge to a later sequence: a new segment in the
/// mirror's log): the mirror goes on after its last sequence, nothing
/// twice, nothing missing.
#[tokio::test]
async fn mirror_catches_up_after_restarts() {
    let mut srv = Server::start_js(&[]);
    let c = srv.client().await;
    create(&c, "$JS.API", json!({"name": "SRC", "subjects": ["s.>"]})).await;
    create(
        &c,
        "$JS.API",
        json!({"name": "COPY", "mirror": {"name": "SRC"}}),
    )
    .await;
    for i in 1..=5 {
        publish(&c, &format!("s.{i}"), "x").await;
    }
    wait_last(&c, "$JS.API", "COPY", 5, Duration::from_secs(20)).await;
    drop(c);
    srv.restart();
    let c = srv.client().await;
    for i in 6..=10 {
        publish(&c, &format!("s.{i}"), "y").await;
    }
    wait_last(&c, "$JS.API", "COPY", 10, Duration::from_secs(30)).await;
    // Deletes and purges on the origin after the copy took the messages
    // leave the copy as it is.
    js_api(&c, "$JS.API.STREAM.MSG.DELETE.SRC", r#"{"seq":8}"#).await;
    let v = js_api(&c, "$JS.API.STREAM.PURGE.SRC", r#"{"seq":40000}"#).await;
    assert_eq!(v["success"], true, "{v}");
    assert_eq!(publish(&c, "s.far", "far").await, 40000);
    publish(&c, "s.next", "next").await;
    wait_last(&c, "$JS.API", "COPY", 40001, Duration::from_secs(30)).await;
    drop(c);
    srv.restart();
    let c = srv.client().await;
    publish(&c, "s.after", "z").await;
    wait_last(&c, "$JS.API", "COPY", 40002, Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let v = wait_last(&c, "$JS.API", "COPY", 40002, Duration::from_secs(1)).await;
    // 1..=10 (gone from SRC, kept here) and the three after the jump.
    assert_eq!(v["state"]["messages"], 13, "{v}");
    let got = seqs(&all(&c, "$JS.API", "COPY").await);
    let mut want: Vec<u64> = (1..=10).collect();
    want.extend([40000, 40001, 40002]);
    assert_eq!(got, want);
    assert_mirrors(
        &c,
        ("$JS.API", "$JS.API"),
        "SRC",
        "COPY",
        11,
        |_| true,
        "after restarts",
    )
    .await;
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

/// Hub (domain `hub`) and Broker Edge leaf (domain `edge`): HUB_MIRROR on
/// the hub mirrors the appliance's EDGE_ORDERS by `$JS.edge.API`,
/// LEAF_MIRROR on the leaf mirrors HUB_ORDERS by `$JS.hub.API`. The
/// origins get gaps (deletes), the leaf stops (publishes on the hub
/// meanwhile) and the hub stops (publishes on the leaf meanwhile): both
/// mirrors end with exactly their origin's messages at its sequences.
#[tokio::test]
async fn mirror_across_a_leaf_link_through_restarts() {
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
    let ext = |api: &str| json!({"api": api, "deliver": ""});
    create(
        &hc,
        "$JS.API",
        json!({"name": "HUB_MIRROR", "mirror": {"name": "EDGE_ORDERS", "external": ext("$JS.edge.API")}}),
    )
    .await;
    create(
        &lc,
        "$JS.API",
        json!({"name": "LEAF_MIRROR", "mirror": {"name": "HUB_ORDERS", "external": ext("$JS.hub.API")}}),
    )
    .await;
    let (mut edge_last, mut hub_last) = (0, 0);
    for i in 0..6 {
        edge_last = publish(&lc, &format!("edge.orders.{i}"), "e").await;
        hub_last = publish(&hc, &format!("hub.orders.{i}"), "h").await;
    }
    wait_last(&hc, "$JS.API", "HUB_MIRROR", edge_last, CATCH_UP).await;
    wait_last(&lc, "$JS.API", "LEAF_MIRROR", hub_last, CATCH_UP).await;
    let v = info(&hc, "$JS.API", "HUB_MIRROR").await;
    assert_eq!(v["mirror"]["external"]["api"], "$JS.edge.API", "{ctx}: {v}");
    assert_eq!(v["mirror"]["lag"], 0, "{ctx}: {v}");

    // The leaf goes away: gaps and publishes on the hub meanwhile.
    drop(lc);
    leaf.srv.stop();
    for i in 6..10 {
        hub_last = publish(&hc, &format!("hub.orders.{i}"), "h").await;
    }
    for seq in [7, 8] {
        let v = js_api(
            &hc,
            "$JS.API.STREAM.MSG.DELETE.HUB_ORDERS",
            &json!({ "seq": seq }).to_string(),
        )
        .await;
        assert_eq!(v["success"], true, "{ctx}: {v}");
    }
    leaf.srv.restart();
    let lc = leaf.srv.client().await;
    wait_linked(&hub, &leaf).await;
    // The hub goes away: gaps and publishes on the edge meanwhile.
    drop(hc);
    hub.srv.stop();
    for i in 6..10 {
        edge_last = publish(&lc, &format!("edge.orders.{i}"), "e").await;
    }
    let v = js_api(&lc, "$JS.API.STREAM.MSG.DELETE.EDGE_ORDERS", r#"{"seq":8}"#).await;
    assert_eq!(v["success"], true, "{ctx}: {v}");
    hub.srv.restart();
    let hc = hub.srv.client().await;
    wait_linked(&hub, &leaf).await;
    wait_last(&hc, "$JS.API", "HUB_MIRROR", edge_last, CATCH_UP).await;
    wait_last(&lc, "$JS.API", "LEAF_MIRROR", hub_last, CATCH_UP).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    // Both through the hub's client: the edge's streams by its domain.
    assert_mirrors(
        &hc,
        ("$JS.edge.API", "$JS.API"),
        "EDGE_ORDERS",
        "HUB_MIRROR",
        1,
        |_| true,
        &ctx,
    )
    .await;
    assert_mirrors(
        &hc,
        ("$JS.API", "$JS.edge.API"),
        "HUB_ORDERS",
        "LEAF_MIRROR",
        1,
        |_| true,
        &ctx,
    )
    .await;
    let got = seqs(&all(&hc, "$JS.API", "HUB_MIRROR").await);
    assert_eq!(got, vec![1, 2, 3, 4, 5, 6, 7, 9, 10], "{ctx}");
    let got = seqs(&all(&lc, "$JS.API", "LEAF_MIRROR").await);
    assert_eq!(got, vec![1, 2, 3, 4, 5, 6, 9, 10], "{ctx}");
    drop((hc, lc));
    leaf.srv.stop();
    hub.srv.stop();
}

// ---------------------------------------------------------------------------
// KV bucket mirrors (the nats CLI)
// ---------------------------------------------------------------------------

/// What the CLI does with `nats kv add B --mirror A`, on one server.
async fn kv_scenario(srv: &Server) -> Vec<(String, Value)> {
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let c = srv.client().await;
    let mut out = Vec::new();
    nats_ok(srv, h, &["kv", "add", "A", "--history", "3"]).await;
    nats_ok(srv, h, &["kv", "put", "A", "k", "v1"]).await;
    nats_ok(srv, h, &["kv", "put", "A", "k", "v2"]).await;
    nats_ok(srv, h, &["kv", "put", "A", "j", "w1"]).await;
    nats_ok(srv, h, &["kv", "del", "A", "j", "-f"]).await;
    let o = nats_ok(
        srv,
        h,
        &["kv", "add", "B", "--mirror", "A", "--history", "3"],
    )
    .await;
    assert!(o.stdout.contains("Origin Bucket: A"), "{}", o.stdout);
    // Puts through the mirror's bucket go to the origin.
    nats_ok(srv, h, &["kv", "put", "B", "k", "v3"]).await;
    let v = wait_last(&c, "$JS.API", "KV_B", 5, Duration::from_secs(20)).await;
    assert_eq!(v["config"]["mirror"]["name"], "KV_A", "{v}");
    assert!(v["config"].get("subjects").is_none(), "{v}");
    out.push(("info KV_B".into(), v));
    let o = nats_ok(srv, h, &["kv", "get", "A", "k", "--raw"]).await;
    assert_eq!(o.stdout.trim(), "v3");
    // The mirror holds the origin's subjects and revisions.
    assert_mirrors(
        &c,
        ("$JS.API", "$JS.API"),
        "KV_A",
        "KV_B",
        1,
        |_| true,
        "kv",
    )
    .await;
    let v = js_api(
        &c,
        "$JS.API.STREAM.MSG.GET.KV_B",
        r#"{"last_by_subj":"$KV.A.k"}"#,
    )
    .await;
    assert_eq!(v["message"]["seq"], 5, "{v}");
    // The client reads bucket B under `$KV.B.`: nothing there (the
    // reference answers the same).
    let o = nats(srv, h, &["kv", "get", "B", "k", "--raw"]).await;
    assert!(
        !o.ok && o.stderr.contains("key not found"),
        "{}\n{}",
        o.stdout,
        o.stderr
    );
    let o = nats_ok(srv, h, &["kv", "status", "B"]).await;
    assert!(o.stdout.contains("Mirror Information"), "{}", o.stdout);
    // With the origin gone, the mirror answers direct gets for it.
    let v = js_api(&c, "$JS.API.STREAM.DELETE.KV_A", "").await;
    assert_eq!(v["success"], true, "{v}");
    let m = c
        .request("$JS.API.DIRECT.GET.KV_A.$KV.A.k", "".into())
        .await
        .expect("direct get answered by the mirror");
    assert_eq!(&m.payload[..], b"v3");
    let seq = m
        .headers
        .as_ref()
        .and_then(|h| h.get(async_nats::header::NATS_SEQUENCE))
        .map(|v| v.to_string());
    assert_eq!(seq.as_deref(), Some("5"), "{:?}", m.headers);
    out
}

#[tokio::test]
async fn kv_mirror_made_by_the_cli() {
    let mut ours = Server::start_js(&[]);
    let ours_out = kv_scenario(&ours).await;
    let mut reference = Server::start_js_bin(&common::ref_server_2_15(), &[]);
    let ref_out = kv_scenario(&reference).await;
    for ((what, o), (_, r)) in ours_out.iter().zip(&ref_out) {
        same_keys(what, o, r);
    }
    ours.stop();
    reference.stop();
}
