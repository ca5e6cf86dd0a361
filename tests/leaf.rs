//! Leaf nodes: a hub (`leafnodes { port }`) and a leaf
//! (`leafnodes { remotes: [...] }`), each side broker-edge or a nats-server
//! reference, talking the leafnode protocol to each other.
//!
//! Every test runs over the hub-leaf pairs in `LEAF_PAIRS` (a comma list of
//! `HUB-LEAF` with the kinds `ours`, `ref215` (nats-server 2.15.3 from
//! `target/refs/bin`) and `ref29` (Debian's nats-server 2.9.10 at
//! `/usr/sbin/nats-server`)). Unset, it is the five pairs with broker-edge
//! on at least one side:
//! `ours-ref215,ref215-ours,ours-ref29,ref29-ours,ours-ours`.
//! "ours" is the binary under test (`BROKER_EDGE_BIN`, like every other
//! file here), so
//!
//!     BROKER_EDGE_BIN=$PWD/target/refs/bin/nats-server-2.15.3 cargo test -p broker-edge --test leaf
//!
//! checks that the tests encode the references' behaviour (2.15.3 against
//! itself and against 2.9.10, both ways).
//!
//! Synchronisation never rests on fixed sleeps: a link is up when both
//! sides' `/leafz` count it; interest has crossed the link when probe
//! messages (payload [`PROBE`], skipped by the assertions) published on the
//! other side arrive, or when the other side's `/leafz?subs=1` lists the
//! subject.

mod common;

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use async_nats::{Client, ConnectOptions, HeaderMap, Message, RequestErrorKind, Subscriber};
use common::{within, Server, STEP};
use futures::StreamExt;
use serde_json::Value;

// ---------------------------------------------------------------------------
// Servers and pairs
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    /// The binary under test (`common::server_bin()`).
    Ours,
    /// nats-server 2.15.3 (`common::ref_server_2_15()`).
    Ref215,
    /// Debian's nats-server 2.9.10.
    Ref29,
}

impl Kind {
    fn parse(s: &str) -> Kind {
        match s.trim() {
            "ours" => Kind::Ours,
            "ref215" => Kind::Ref215,
            "ref29" => Kind::Ref29,
            other => panic!("LEAF_PAIRS: unknown server kind {other:?} (ours, ref215, ref29)"),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Kind::Ours => "ours",
            Kind::Ref215 => "ref215",
            Kind::Ref29 => "ref29",
        }
    }

    fn bin(self) -> PathBuf {
        match self {
            Kind::Ours => common::server_bin(),
            Kind::Ref215 => common::ref_server_2_15(),
            Kind::Ref29 => {
                let p = PathBuf::from("/usr/sbin/nats-server");
                assert!(
                    p.is_file(),
                    "{} is missing (Debian's nats-server 2.9.10)",
                    p.display()
                );
                p
            }
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Pair {
    hub: Kind,
    leaf: Kind,
}

impl fmt::Display for Pair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "pair {}-{} (hub {}, leaf {})",
            self.hub.name(),
            self.leaf.name(),
            self.hub.name(),
            self.leaf.name()
        )
    }
}

const DEFAULT_PAIRS: &str = "ours-ref215,ref215-ours,ours-ref29,ref29-ours,ours-ours";

/// The hub-leaf pairs to run (`LEAF_PAIRS`, else [`DEFAULT_PAIRS`]).
fn pairs() -> Vec<Pair> {
    let spec = std::env::var("LEAF_PAIRS")
        .ok()
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_PAIRS.to_string());
    spec.split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|p| {
            let (h, l) = p
                .trim()
                .split_once('-')
                .unwrap_or_else(|| panic!("LEAF_PAIRS: {p:?} is not HUB-LEAF"));
            Pair {
                hub: Kind::parse(h),
                leaf: Kind::parse(l),
            }
        })
        .collect()
}

/// A server started from a config file (kept in `conf_dir` for restarts).
struct Node {
    srv: Server,
    /// The pair under test, for messages.
    ctx: String,
    kind: Kind,
    /// What the node is in the test, for messages ("hub", "leaf1", ...).
    role: String,
    _conf_dir: tempfile::TempDir,
}

impl Node {
    /// Start `kind` with the config text `conf`; the harness adds the client
    /// and monitoring ports (`-a 127.0.0.1 -p P -m M`).
    fn start(ctx: &str, kind: Kind, role: &str, conf: &str) -> Node {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(format!("{role}.conf"));
        std::fs::write(&path, conf).unwrap();
        let bin = kind.bin();
        let arg = path.to_str().unwrap().to_string();
        let srv = std::panic::catch_unwind(|| Server::start_bin(&bin, &["-c", &arg]))
            .unwrap_or_else(|e| {
                let msg = e
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                panic!(
                    "{ctx}: the {role} ({}) did not start: {msg}\n--- config ---\n{conf}",
                    kind.name()
                )
            });
        Node {
            srv,
            ctx: ctx.to_string(),
            kind,
            role: role.to_string(),
            _conf_dir: dir,
        }
    }

    async fn leafz(&self, subs: bool) -> Value {
        let path = if subs { "/leafz?subs=1" } else { "/leafz" };
        let (status, body) = self.srv.http(path).await;
        assert_eq!(
            status,
            200,
            "{}: {} ({}): GET {path} -> {status}: {body}",
            self.ctx,
            self.role,
            self.kind.name()
        );
        serde_json::from_str(&body).unwrap_or_else(|e| {
            panic!(
                "{}: {} ({}): GET {path}: not JSON ({e}): {body}",
                self.ctx,
                self.role,
                self.kind.name()
            )
        })
    }

    async fn leaf_count(&self) -> u64 {
        let v = self.leafz(false).await;
        v["leafnodes"].as_u64().unwrap_or_else(|| {
            panic!(
                "{}: {} ({}): /leafz has no numeric \"leafnodes\": {v}",
                self.ctx,
                self.role,
                self.kind.name()
            )
        })
    }

    async fn client(&self) -> Client {
        self.srv.client().await
    }

    async fn client_with(&self, opts: ConnectOptions) -> Client {
        self.srv.client_with(opts).await
    }

    fn describe(&self) -> String {
        format!(
            "--- {} ({}) log ---\n{}",
            self.role,
            self.kind.name(),
            self.srv.log()
        )
    }
}

fn logs(nodes: &[&Node]) -> String {
    nodes
        .iter()
        .map(|n| n.describe())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Config of a hub: `leafnodes { host, port, <leaf_extra> }` after `top`.
fn hub_conf(leaf_port: u16, leaf_extra: &str, top: &str) -> String {
    format!("{top}\nleafnodes {{\n  host: \"127.0.0.1\"\n  port: {leaf_port}\n  {leaf_extra}\n}}\n")
}

/// One remote: `{ url: "<url>" <extra> }`.
fn remote(url: &str, extra: &str) -> String {
    format!("{{ url: \"{url}\"\n {extra} }}")
}

/// Config of a leaf with these remotes, after `top`.
fn leaf_conf(remotes: &[String], top: &str) -> String {
    format!(
        "{top}\nleafnodes {{\n  remotes: [\n    {}\n  ]\n}}\n",
        remotes.join(",\n    ")
    )
}

fn leaf_url(port: u16) -> String {
    format!("nats://127.0.0.1:{port}")
}

/// Wait until every node's `/leafz` counts exactly its expected number of
/// leaf connections.
async fn wait_links(ctx: &str, nodes: &[(&Node, u64)]) {
    let deadline = Instant::now() + STEP;
    loop {
        let mut counts = Vec::new();
        for (n, _) in nodes {
            counts.push(n.leaf_count().await);
        }
        if nodes
            .iter()
            .zip(&counts)
            .all(|((_, want), got)| got == want)
        {
            return;
        }
        if Instant::now() > deadline {
            let want: Vec<_> = nodes
                .iter()
                .map(|(n, w)| format!("{}={w}", n.role))
                .collect();
            let all: Vec<&Node> = nodes.iter().map(|(n, _)| *n).collect();
            panic!(
                "{ctx}: leaf links never came up: /leafz counts {counts:?}, wanted {want:?}\n{}",
                logs(&all)
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A hub and a leaf with one plain remote, linked.
async fn linked_pair(pair: Pair) -> (Node, Node) {
    let ctx = pair.to_string();
    let lp = common::free_port();
    let hub = Node::start(&ctx, pair.hub, "hub", &hub_conf(lp, "", ""));
    let leaf = Node::start(
        &ctx,
        pair.leaf,
        "leaf",
        &leaf_conf(&[remote(&leaf_url(lp), "")], ""),
    );
    wait_links(&ctx, &[(&hub, 1), (&leaf, 1)]).await;
    (hub, leaf)
}

// ---------------------------------------------------------------------------
// Messages across the link
// ---------------------------------------------------------------------------

/// Payload of the probe messages that show interest has crossed a link;
/// [`next_real`] and [`assert_nothing_real`] skip them.
const PROBE: &[u8] = b"__leaf_probe__";

/// Publish probes to `subject` from `publisher` until `sub` receives one:
/// the subscription's interest has reached the publisher's server.
async fn await_interest(ctx: &str, publisher: &Client, subject: &str, sub: &mut Subscriber) {
    let deadline = Instant::now() + STEP;
    loop {
        publisher
            .publish(subject.to_string(), PROBE.into())
            .await
            .unwrap();
        publisher.flush().await.unwrap();
        match tokio::time::timeout(Duration::from_millis(100), sub.next()).await {
            Ok(Some(m)) if &m.payload[..] == PROBE => return,
            Ok(Some(m)) => panic!(
                "{ctx}: waiting for probes on {subject}, got another message first: {} {:?}",
                m.subject,
                String::from_utf8_lossy(&m.payload[..m.payload.len().min(100)])
            ),
            Ok(None) => panic!("{ctx}: subscription ended while probing {subject}"),
            Err(_) => {}
        }
        if Instant::now() > deadline {
            panic!("{ctx}: interest in {subject} never crossed the link (no probe arrived within {STEP:?})");
        }
    }
}

/// The next message that is not a probe (bounded).
async fn next_real(ctx: &str, sub: &mut Subscriber) -> Message {
    loop {
        let m = within(&format!("{ctx}: next message"), sub.next())
            .await
            .unwrap_or_else(|| panic!("{ctx}: subscription ended"));
        if &m.payload[..] != PROBE {
            return m;
        }
    }
}

/// Nothing but probes is queued for `sub` right now.
fn assert_nothing_real(ctx: &str, sub: &mut Subscriber) {
    while let Some(m) = common::queued(sub) {
        assert!(
            &m.payload[..] == PROBE,
            "{ctx}: unexpected message on {}: {:?}",
            m.subject,
            String::from_utf8_lossy(&m.payload[..m.payload.len().min(100)])
        );
    }
}

/// Nothing at all is queued for `sub` (not even a probe).
fn assert_nothing(ctx: &str, sub: &mut Subscriber) {
    if let Some(m) = common::queued(sub) {
        panic!(
            "{ctx}: unexpected message on {}: {:?}",
            m.subject,
            String::from_utf8_lossy(&m.payload[..m.payload.len().min(100)])
        );
    }
}

fn text(m: &Message) -> String {
    String::from_utf8_lossy(&m.payload).into_owned()
}

/// Poll `node`'s `/leafz?subs=1` until `pred` holds for some link's
/// subscription list (all links' lists are given).
async fn wait_leafz_subs(
    ctx: &str,
    node: &Node,
    what: &str,
    pred: impl Fn(&[Vec<String>]) -> bool,
) {
    let deadline = Instant::now() + STEP;
    loop {
        let v = node.leafz(true).await;
        let lists: Vec<Vec<String>> = v["leafs"]
            .as_array()
            .unwrap_or_else(|| panic!("{ctx}: /leafz has no \"leafs\" array: {v}"))
            .iter()
            .map(|l| {
                l["subscriptions_list"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|s| s.as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default()
            })
            .collect();
        if pred(&lists) {
            return;
        }
        if Instant::now() > deadline {
            panic!(
                "{ctx}: {} ({}) /leafz?subs=1 never showed {what} within {STEP:?}: {v}",
                node.role,
                node.kind.name()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn lists_contain(lists: &[Vec<String>], subject: &str) -> bool {
    lists.iter().any(|l| l.iter().any(|s| s == subject))
}

/// A client whose requests give up after `ms` (for polling loops).
fn quick_requests(ms: u64) -> ConnectOptions {
    ConnectOptions::new().request_timeout(Some(Duration::from_millis(ms)))
}

// ---------------------------------------------------------------------------
// 1. pub/sub both ways
// ---------------------------------------------------------------------------

async fn check_one_way(ctx: &str, publisher: &Client, subscriber: &Client, prefix: &str) {
    // `>`: every depth below the prefix.
    let mut all = subscriber.subscribe(format!("{prefix}.>")).await.unwrap();
    await_interest(ctx, publisher, &format!("{prefix}.probe"), &mut all).await;

    publisher
        .publish(format!("{prefix}.a.b.c"), "one".into())
        .await
        .unwrap();
    let m = next_real(ctx, &mut all).await;
    assert_eq!(m.subject.as_str(), format!("{prefix}.a.b.c"), "{ctx}");
    assert_eq!(text(&m), "one", "{ctx}");
    assert!(m.reply.is_none(), "{ctx}: no reply subject was sent");

    // Reply subject carried across.
    publisher
        .publish_with_reply(format!("{prefix}.r"), "answer.here", "two".into())
        .await
        .unwrap();
    let m = next_real(ctx, &mut all).await;
    assert_eq!(
        m.reply.as_deref(),
        Some("answer.here"),
        "{ctx}: reply subject"
    );
    assert_eq!(text(&m), "two", "{ctx}");

    // Headers (HMSG across the link), one repeated.
    let mut h = HeaderMap::new();
    h.insert("X-Leaf", "v1");
    h.append("X-Multi", "a");
    h.append("X-Multi", "b");
    publisher
        .publish_with_headers(format!("{prefix}.h"), h, "with headers".into())
        .await
        .unwrap();
    let m = next_real(ctx, &mut all).await;
    assert_eq!(m.subject.as_str(), format!("{prefix}.h"), "{ctx}");
    assert_eq!(text(&m), "with headers", "{ctx}");
    let hdrs = m
        .headers
        .as_ref()
        .unwrap_or_else(|| panic!("{ctx}: headers lost across the link"));
    assert_eq!(
        hdrs.get("X-Leaf").map(|v| v.as_str()),
        Some("v1"),
        "{ctx}: {hdrs:?}"
    );
    let multi: Vec<&str> = hdrs.get_all("X-Multi").map(|v| v.as_str()).collect();
    assert_eq!(multi, vec!["a", "b"], "{ctx}: repeated header");

    // Headers with an empty payload.
    let mut h = HeaderMap::new();
    h.insert("X-Empty", "yes");
    publisher
        .publish_with_headers(format!("{prefix}.he"), h, "".into())
        .await
        .unwrap();
    let m = next_real(ctx, &mut all).await;
    assert!(m.payload.is_empty(), "{ctx}: empty payload with headers");
    assert_eq!(
        m.headers
            .as_ref()
            .and_then(|h| h.get("X-Empty"))
            .map(|v| v.as_str()),
        Some("yes"),
        "{ctx}"
    );

    // A large payload (512 KiB, under the default max_payload of 1 MiB).
    let big: Vec<u8> = (0..512 * 1024).map(|i| (i % 251) as u8).collect();
    publisher
        .publish(format!("{prefix}.big"), big.clone().into())
        .await
        .unwrap();
    let m = next_real(ctx, &mut all).await;
    assert_eq!(m.payload.len(), big.len(), "{ctx}: large payload length");
    assert!(m.payload[..] == big[..], "{ctx}: large payload content");

    // Many in order.
    for i in 0..100 {
        publisher
            .publish(format!("{prefix}.seq"), format!("{i}").into())
            .await
            .unwrap();
    }
    for i in 0..100 {
        let m = next_real(ctx, &mut all).await;
        assert_eq!(text(&m), format!("{i}"), "{ctx}: order across the link");
    }

    // `*`: one token only; non-matching subjects are not delivered.
    let mut star = subscriber
        .subscribe(format!("{prefix}star.*.x"))
        .await
        .unwrap();
    await_interest(ctx, publisher, &format!("{prefix}star.probe.x"), &mut star).await;
    for (subj, body) in [
        (format!("{prefix}star.a.x"), "match 1"),
        (format!("{prefix}star.a.y"), "no"),
        (format!("{prefix}star.a.b.x"), "no"),
        (format!("{prefix}star.x"), "no"),
        (format!("{prefix}star.b.x"), "match 2"),
    ] {
        publisher.publish(subj, body.into()).await.unwrap();
    }
    let m = next_real(ctx, &mut star).await;
    assert_eq!(
        (m.subject.as_str(), text(&m).as_str()),
        (format!("{prefix}star.a.x").as_str(), "match 1"),
        "{ctx}"
    );
    let m = next_real(ctx, &mut star).await;
    assert_eq!(
        (m.subject.as_str(), text(&m).as_str()),
        (format!("{prefix}star.b.x").as_str(), "match 2"),
        "{ctx}"
    );
    common::sync(subscriber).await;
    assert_nothing_real(ctx, &mut star);
    assert_nothing_real(ctx, &mut all);
}

#[tokio::test]
async fn pubsub_both_ways() {
    for pair in pairs() {
        let (hub, leaf) = linked_pair(pair).await;
        let hc = hub.client().await;
        let lc = leaf.client().await;
        check_one_way(&format!("{pair}: sub on hub, pub on leaf"), &lc, &hc, "up").await;
        check_one_way(
            &format!("{pair}: sub on leaf, pub on hub"),
            &hc,
            &lc,
            "down",
        )
        .await;
    }
}

// ---------------------------------------------------------------------------
// 2. request/reply
// ---------------------------------------------------------------------------

/// Answers every request on `subject` with "echo:<payload>" until `stop`,
/// then unsubscribes.
fn spawn_responder(
    c: Client,
    mut sub: Subscriber,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = &mut stop => break,
                m = sub.next() => {
                    let Some(m) = m else { break };
                    if let Some(reply) = m.reply {
                        let mut body = b"echo:".to_vec();
                        body.extend_from_slice(&m.payload);
                        c.publish(reply, body.into()).await.unwrap();
                    }
                }
            }
        }
        sub.unsubscribe().await.unwrap();
        common::sync(&c).await;
    })
}

#[tokio::test]
async fn request_reply_across_the_link() {
    for pair in pairs() {
        let (hub, leaf) = linked_pair(pair).await;
        let hc = hub.client_with(quick_requests(500)).await;
        let lc = leaf.client_with(quick_requests(500)).await;
        for (responder, requester, label) in [
            (&hc, &lc, "responder on hub, requester on leaf"),
            (&lc, &hc, "responder on leaf, requester on hub"),
        ] {
            let ctx = format!("{pair}: {label}");
            let subject = "svc.echo";
            let sub = responder.subscribe(subject).await.unwrap();
            common::sync(responder).await;
            let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
            let task = spawn_responder(responder.clone(), sub, stop_rx);

            // Until the interest has crossed, the requester's server has
            // nobody to send to (no responders) or the request times out.
            let deadline = Instant::now() + STEP;
            loop {
                match requester.request(subject, "ping".into()).await {
                    Ok(m) => {
                        assert_eq!(text(&m), "echo:ping", "{ctx}");
                        break;
                    }
                    Err(e)
                        if matches!(
                            e.kind(),
                            RequestErrorKind::NoResponders | RequestErrorKind::TimedOut
                        ) && Instant::now() < deadline =>
                    {
                        tokio::time::sleep(Duration::from_millis(50)).await
                    }
                    Err(e) => panic!(
                        "{ctx}: request never answered: {e}\n{}",
                        logs(&[&hub, &leaf])
                    ),
                }
            }
            for i in 0..20 {
                let m = within(&ctx, requester.request(subject, format!("q{i}").into()))
                    .await
                    .unwrap_or_else(|e| panic!("{ctx}: request {i}: {e}"));
                assert_eq!(text(&m), format!("echo:q{i}"), "{ctx}");
            }
            // With headers on the request.
            let mut h = HeaderMap::new();
            h.insert("X-Req", "1");
            let m = within(
                &ctx,
                requester.request_with_headers(subject, h, "hdr".into()),
            )
            .await
            .unwrap_or_else(|e| panic!("{ctx}: request with headers: {e}"));
            assert_eq!(text(&m), "echo:hdr", "{ctx}");

            // The responder goes away: once its interest is withdrawn across
            // the link, the requester's server answers no-responders (503).
            stop_tx.send(()).unwrap();
            within(&ctx, task).await.unwrap();
            let deadline = Instant::now() + STEP;
            loop {
                match requester.request(subject, "anyone?".into()).await {
                    Err(e) if e.kind() == RequestErrorKind::NoResponders => break,
                    Err(e)
                        if e.kind() == RequestErrorKind::TimedOut && Instant::now() < deadline => {}
                    Err(e) => panic!(
                        "{ctx}: expected no responders after the responder left, got {e}\n{}",
                        logs(&[&hub, &leaf])
                    ),
                    Ok(m) => panic!("{ctx}: answered after the responder left: {:?}", text(&m)),
                }
            }
            // And it stays that way.
            for _ in 0..3 {
                let e = requester
                    .request(subject, "anyone?".into())
                    .await
                    .expect_err("nobody should answer");
                assert_eq!(e.kind(), RequestErrorKind::NoResponders, "{ctx}: {e}");
            }
        }
    }
}

// ---------------------------------------------------------------------------
// 3. queue groups
// ---------------------------------------------------------------------------

#[tokio::test]
async fn queue_groups_prefer_local_members() {
    for pair in pairs() {
        let ctx = pair.to_string();
        let (hub, leaf) = linked_pair(pair).await;
        let hc = hub.client().await;
        let lc = leaf.client().await;
        let mut hq = hc.queue_subscribe("work", "q".into()).await.unwrap();
        let mut lq = lc.queue_subscribe("work", "q".into()).await.unwrap();
        // Fences: plain subscriptions on the members' connections; once a
        // fence published after a batch arrives, anything of the batch that
        // crossed the link would have arrived before it.
        let mut hfence = hc.subscribe("fence.h").await.unwrap();
        let mut lfence = lc.subscribe("fence.l").await.unwrap();
        await_interest(&ctx, &lc, "fence.h", &mut hfence).await;
        await_interest(&ctx, &hc, "fence.l", &mut lfence).await;
        // The queue subscriptions were sent before the fences on the same
        // connections, but check the other side knows them anyway.
        wait_leafz_subs(&ctx, &hub, "\"work\" from the leaf", |l| {
            lists_contain(l, "work")
        })
        .await;
        wait_leafz_subs(&ctx, &leaf, "\"work\" from the hub", |l| {
            lists_contain(l, "work")
        })
        .await;

        // Published on the hub: all to the hub's member.
        for i in 0..20 {
            hc.publish("work", format!("h{i}").into()).await.unwrap();
        }
        hc.publish("fence.l", "f1".into()).await.unwrap();
        for i in 0..20 {
            let m = next_real(&ctx, &mut hq).await;
            assert_eq!(
                text(&m),
                format!("h{i}"),
                "{ctx}: hub publishes go to the hub member"
            );
        }
        assert_eq!(text(&next_real(&ctx, &mut lfence).await), "f1", "{ctx}");
        assert_nothing_real(&format!("{ctx}: leaf member got a hub publish"), &mut lq);

        // Published on the leaf: all to the leaf's member.
        for i in 0..20 {
            lc.publish("work", format!("l{i}").into()).await.unwrap();
        }
        lc.publish("fence.h", "f2".into()).await.unwrap();
        for i in 0..20 {
            let m = next_real(&ctx, &mut lq).await;
            assert_eq!(
                text(&m),
                format!("l{i}"),
                "{ctx}: leaf publishes go to the leaf member"
            );
        }
        assert_eq!(text(&next_real(&ctx, &mut hfence).await), "f2", "{ctx}");
        assert_nothing_real(&format!("{ctx}: hub member got a leaf publish"), &mut hq);

        // The hub's member leaves: hub publishes cross to the leaf's member.
        hq.unsubscribe().await.unwrap();
        common::sync(&hc).await;
        for i in 0..10 {
            hc.publish("work", format!("x{i}").into()).await.unwrap();
        }
        for i in 0..10 {
            let m = next_real(&format!("{ctx}: hub member gone"), &mut lq).await;
            assert_eq!(text(&m), format!("x{i}"), "{ctx}: hub member gone");
        }

        // A new hub member, and the leaf's member leaves: leaf publishes
        // cross to the hub.
        let mut hq2 = hc.queue_subscribe("work", "q".into()).await.unwrap();
        common::sync(&hc).await;
        lq.unsubscribe().await.unwrap();
        common::sync(&lc).await;
        await_interest(&format!("{ctx}: leaf member gone"), &lc, "work", &mut hq2).await;
        for i in 0..10 {
            lc.publish("work", format!("y{i}").into()).await.unwrap();
        }
        for i in 0..10 {
            let m = next_real(&format!("{ctx}: leaf member gone"), &mut hq2).await;
            assert_eq!(text(&m), format!("y{i}"), "{ctx}: leaf member gone");
        }
    }
}

// ---------------------------------------------------------------------------
// 4. interest removal
// ---------------------------------------------------------------------------

#[tokio::test]
async fn unsubscribe_withdraws_interest_across_the_link() {
    for pair in pairs() {
        let ctx = pair.to_string();
        let (hub, leaf) = linked_pair(pair).await;
        let hc = hub.client_with(quick_requests(300)).await;
        let lc = leaf.client().await;
        let mut gone = lc.subscribe("gone").await.unwrap();
        let mut still = lc.subscribe("still").await.unwrap();
        await_interest(&ctx, &hc, "gone", &mut gone).await;
        await_interest(&ctx, &hc, "still", &mut still).await;
        wait_leafz_subs(&ctx, &hub, "\"gone\" and \"still\"", |l| {
            lists_contain(l, "gone") && lists_contain(l, "still")
        })
        .await;

        gone.unsubscribe().await.unwrap();
        common::sync(&lc).await;

        // The hub's view of the link drops the subject, keeps the other.
        wait_leafz_subs(&ctx, &hub, "\"gone\" removed (\"still\" kept)", |l| {
            !lists_contain(l, "gone") && lists_contain(l, "still")
        })
        .await;
        // The hub knows nobody is interested: no responders at once.
        let deadline = Instant::now() + STEP;
        loop {
            match hc.request("gone", "?".into()).await {
                Err(e) if e.kind() == RequestErrorKind::NoResponders => break,
                Err(e) if e.kind() == RequestErrorKind::TimedOut && Instant::now() < deadline => {}
                other => panic!("{ctx}: expected no responders for \"gone\", got {other:?}"),
            }
        }

        // A publish on the hub to the withdrawn subject does not cross: the
        // link's out_msgs grows by one for the two publishes below.
        let out_msgs = |v: &Value| -> u64 {
            let leafs = v["leafs"].as_array().cloned().unwrap_or_default();
            assert_eq!(leafs.len(), 1, "{ctx}: one link on the hub: {v}");
            leafs[0]["out_msgs"]
                .as_u64()
                .unwrap_or_else(|| panic!("{ctx}: no out_msgs in /leafz: {v}"))
        };
        let before = out_msgs(&hub.leafz(false).await);
        hc.publish("gone", "not delivered".into()).await.unwrap();
        hc.publish("still", "delivered".into()).await.unwrap();
        let m = next_real(&ctx, &mut still).await;
        assert_eq!(text(&m), "delivered", "{ctx}");
        let after = out_msgs(&hub.leafz(false).await);
        assert_eq!(
            after - before,
            1,
            "{ctx}: hub /leafz out_msgs grew by {} for one publish with interest and one without",
            after - before
        );

        // Subscribing again brings it back.
        let mut again = lc.subscribe("gone").await.unwrap();
        await_interest(&ctx, &hc, "gone", &mut again).await;
        hc.publish("gone", "back".into()).await.unwrap();
        assert_eq!(text(&next_real(&ctx, &mut again).await), "back", "{ctx}");

        // The other way: a hub subscription leaving is withdrawn at the leaf.
        let lc2 = leaf.client_with(quick_requests(300)).await;
        let mut hsub = hc.subscribe("hubside").await.unwrap();
        await_interest(&ctx, &lc2, "hubside", &mut hsub).await;
        wait_leafz_subs(&ctx, &leaf, "\"hubside\"", |l| lists_contain(l, "hubside")).await;
        hsub.unsubscribe().await.unwrap();
        common::sync(&hc).await;
        wait_leafz_subs(&ctx, &leaf, "\"hubside\" removed", |l| {
            !lists_contain(l, "hubside")
        })
        .await;
        let deadline = Instant::now() + STEP;
        loop {
            match lc2.request("hubside", "?".into()).await {
                Err(e) if e.kind() == RequestErrorKind::NoResponders => break,
                Err(e) if e.kind() == RequestErrorKind::TimedOut && Instant::now() < deadline => {}
                other => panic!(
                    "{ctx}: expected no responders for \"hubside\" on the leaf, got {other:?}"
                ),
            }
        }
    }
}

// ---------------------------------------------------------------------------
// 5. authorization on the leafnode port
// ---------------------------------------------------------------------------

#[tokio::test]
async fn leafnode_authorization() {
    for pair in pairs() {
        let ctx = pair.to_string();
        let lp = common::free_port();
        let hub = Node::start(
            &ctx,
            pair.hub,
            "hub",
            &hub_conf(lp, "authorization { user: a, password: b }", ""),
        );
        let good = Node::start(
            &ctx,
            pair.leaf,
            "leaf-good",
            &leaf_conf(&[remote(&format!("nats://a:b@127.0.0.1:{lp}"), "")], ""),
        );
        wait_links(
            &format!("{ctx}: right credentials"),
            &[(&hub, 1), (&good, 1)],
        )
        .await;
        let hc = hub.client().await;
        let gc = good.client().await;
        let mut s = hc.subscribe("auth.x").await.unwrap();
        await_interest(&ctx, &gc, "auth.x", &mut s).await;
        gc.publish("auth.x", "ok".into()).await.unwrap();
        assert_eq!(text(&next_real(&ctx, &mut s).await), "ok", "{ctx}");

        let wrong = Node::start(
            &ctx,
            pair.leaf,
            "leaf-wrong-password",
            &leaf_conf(&[remote(&format!("nats://a:wrong@127.0.0.1:{lp}"), "")], ""),
        );
        let none = Node::start(
            &ctx,
            pair.leaf,
            "leaf-no-credentials",
            &leaf_conf(&[remote(&leaf_url(lp), "")], ""),
        );
        // Each refused leaf logs the hub's -ERR.
        for n in [&wrong, &none] {
            let deadline = Instant::now() + STEP;
            while !n.srv.log().contains("Authorization Violation") {
                if Instant::now() > deadline {
                    panic!(
                        "{ctx}: {} never logged \"Authorization Violation\"\n{}",
                        n.role,
                        logs(&[&hub, n])
                    );
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        // And for a few seconds (several reconnect attempts) neither links.
        let until = Instant::now() + Duration::from_secs(3);
        while Instant::now() < until {
            for (n, want) in [(&hub, 1), (&wrong, 0), (&none, 0), (&good, 1)] {
                let got = n.leaf_count().await;
                assert_eq!(
                    got,
                    want,
                    "{ctx}: {} /leafz counts {got} leaf links, wanted {want}\n{}",
                    n.role,
                    logs(&[&hub, &wrong, &none])
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // They kept trying (the reference retries every second).
        let tries = wrong.srv.log().matches("Authorization Violation").count();
        assert!(
            tries >= 2,
            "{ctx}: the refused leaf retried only {tries} time(s)\n{}",
            wrong.describe()
        );
    }
}

// ---------------------------------------------------------------------------
// 6. accounts mapped over the link
// ---------------------------------------------------------------------------

#[tokio::test]
async fn leaf_binds_to_the_account_of_its_user() {
    for pair in pairs() {
        let ctx = pair.to_string();
        let lp = common::free_port();
        let hub = Node::start(&ctx, pair.hub,
            "hub",
            &hub_conf(
                lp,
                "authorization { users: [ { user: l, password: p, account: A } ] }",
                "accounts {\n  A: { users: [ { user: ua, password: pa } ] }\n  B: { users: [ { user: ub, password: pb } ] }\n}",
            ),
        );
        let leaf = Node::start(
            &ctx,
            pair.leaf,
            "leaf",
            &leaf_conf(&[remote(&format!("nats://l:p@127.0.0.1:{lp}"), "")], ""),
        );
        wait_links(&ctx, &[(&hub, 1), (&leaf, 1)]).await;
        let v = hub.leafz(false).await;
        assert_eq!(
            v["leafs"][0]["account"], "A",
            "{ctx}: the hub binds the link to account A: {v}"
        );
        let v = leaf.leafz(false).await;
        assert_eq!(
            v["leafs"][0]["account"], "$G",
            "{ctx}: the leaf's side is its global account: {v}"
        );

        let ca = hub
            .client_with(ConnectOptions::with_user_and_password(
                "ua".into(),
                "pa".into(),
            ))
            .await;
        let cb = hub
            .client_with(ConnectOptions::with_user_and_password(
                "ub".into(),
                "pb".into(),
            ))
            .await;
        let lc = leaf.client().await;

        // Leaf -> hub: account A's subscriber only.
        let mut sa = ca.subscribe("acct.up").await.unwrap();
        let mut sb = cb.subscribe("acct.up").await.unwrap();
        common::sync(&cb).await;
        await_interest(&ctx, &lc, "acct.up", &mut sa).await;
        for i in 0..5 {
            lc.publish("acct.up", format!("m{i}").into()).await.unwrap();
        }
        for i in 0..5 {
            assert_eq!(
                text(&next_real(&ctx, &mut sa).await),
                format!("m{i}"),
                "{ctx}"
            );
        }
        common::sync(&cb).await;
        assert_nothing(
            &format!("{ctx}: account B received a message from the leaf"),
            &mut sb,
        );

        // Hub -> leaf: account A's publishes cross, account B's do not.
        let mut ls = lc.subscribe("acct.down").await.unwrap();
        await_interest(&ctx, &ca, "acct.down", &mut ls).await;
        cb.publish("acct.down", "from B".into()).await.unwrap();
        common::sync(&cb).await;
        ca.publish("acct.down", "from A".into()).await.unwrap();
        let m = next_real(&ctx, &mut ls).await;
        assert_eq!(
            text(&m),
            "from A",
            "{ctx}: account B's publish crossed the link"
        );
        common::sync(&lc).await;
        assert_nothing_real(&ctx, &mut ls);

        // Account B subscribing to the same subject gets nothing from the
        // leaf; the link's interest shows in account A only.
        let mut sb2 = cb.subscribe("acct.b").await.unwrap();
        let mut sa2 = ca.subscribe("acct.b").await.unwrap();
        await_interest(&ctx, &lc, "acct.b", &mut sa2).await;
        lc.publish("acct.b", "x".into()).await.unwrap();
        assert_eq!(text(&next_real(&ctx, &mut sa2).await), "x", "{ctx}");
        common::sync(&cb).await;
        assert_nothing(
            &format!("{ctx}: account B received a message from the leaf"),
            &mut sb2,
        );
    }
}

// ---------------------------------------------------------------------------
// 7. TLS on the link
// ---------------------------------------------------------------------------

/// A CA and a server certificate for localhost/127.0.0.1 (PEM files).
struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn new() -> Pki {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
        let dir = tempfile::tempdir().unwrap();
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "broker-edge leaf test CA");
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let key = KeyPair::generate().unwrap();
        let mut p =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
        p.distinguished_name.push(DnType::CommonName, "hub");
        let cert = p.signed_by(&key, &ca, &ca_key).unwrap();
        let d = dir.path();
        std::fs::write(d.join("ca.pem"), ca.pem()).unwrap();
        std::fs::write(d.join("hub-cert.pem"), cert.pem()).unwrap();
        std::fs::write(d.join("hub-key.pem"), key.serialize_pem()).unwrap();
        Pki { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

fn q(p: &Path) -> String {
    format!("{:?}", p.to_str().unwrap())
}

#[tokio::test]
async fn tls_link() {
    let pki = Pki::new();
    for pair in pairs() {
        let ctx = pair.to_string();
        let lp = common::free_port();
        let hub = Node::start(
            &ctx,
            pair.hub,
            "hub",
            &hub_conf(
                lp,
                &format!(
                    "tls {{ cert_file: {}, key_file: {} }}",
                    q(&pki.path("hub-cert.pem")),
                    q(&pki.path("hub-key.pem"))
                ),
                "",
            ),
        );
        let leaf = Node::start(
            &ctx,
            pair.leaf,
            "leaf",
            &leaf_conf(
                &[remote(
                    &format!("tls://127.0.0.1:{lp}"),
                    &format!("tls {{ ca_file: {} }}", q(&pki.path("ca.pem"))),
                )],
                "",
            ),
        );
        wait_links(&ctx, &[(&hub, 1), (&leaf, 1)]).await;
        let hc = hub.client().await;
        let lc = leaf.client().await;

        let mut s = hc.subscribe("tls.up").await.unwrap();
        await_interest(&ctx, &lc, "tls.up", &mut s).await;
        let big: Vec<u8> = (0..200 * 1024).map(|i| (i % 253) as u8).collect();
        lc.publish("tls.up", big.clone().into()).await.unwrap();
        let m = next_real(&ctx, &mut s).await;
        assert!(m.payload[..] == big[..], "{ctx}: payload across TLS");

        let mut s = lc.subscribe("tls.down").await.unwrap();
        await_interest(&ctx, &hc, "tls.down", &mut s).await;
        let mut h = HeaderMap::new();
        h.insert("X-Tls", "yes");
        hc.publish_with_headers("tls.down", h, "down".into())
            .await
            .unwrap();
        let m = next_real(&ctx, &mut s).await;
        assert_eq!(text(&m), "down", "{ctx}");
        assert_eq!(
            m.headers
                .as_ref()
                .and_then(|h| h.get("X-Tls"))
                .map(|v| v.as_str()),
            Some("yes"),
            "{ctx}"
        );
    }
}

// ---------------------------------------------------------------------------
// 8. two leafs through one hub
// ---------------------------------------------------------------------------

async fn exactly_once(
    ctx: &str,
    publisher: &Client,
    sub: &mut Subscriber,
    subscriber: &Client,
    subject: &str,
) {
    await_interest(ctx, publisher, subject, sub).await;
    for i in 0..10 {
        publisher
            .publish(subject.to_string(), format!("n{i}").into())
            .await
            .unwrap();
    }
    publisher
        .publish(subject.to_string(), "end".into())
        .await
        .unwrap();
    for i in 0..10 {
        assert_eq!(
            text(&next_real(ctx, sub).await),
            format!("n{i}"),
            "{ctx}: each message once, in order"
        );
    }
    assert_eq!(
        text(&next_real(ctx, sub).await),
        "end",
        "{ctx}: a duplicate arrived"
    );
    common::sync(subscriber).await;
    assert_nothing_real(ctx, sub);
}

#[tokio::test]
async fn leaf_to_leaf_through_the_hub() {
    for pair in pairs() {
        let ctx = pair.to_string();
        let lp = common::free_port();
        let hub = Node::start(&ctx, pair.hub, "hub", &hub_conf(lp, "", ""));
        let leaf1 = Node::start(
            &ctx,
            pair.leaf,
            "leaf1",
            &leaf_conf(&[remote(&leaf_url(lp), "")], ""),
        );
        let leaf2 = Node::start(
            &ctx,
            pair.leaf,
            "leaf2",
            &leaf_conf(&[remote(&leaf_url(lp), "")], ""),
        );
        wait_links(&ctx, &[(&hub, 2), (&leaf1, 1), (&leaf2, 1)]).await;
        let c1 = leaf1.client().await;
        let c2 = leaf2.client().await;
        let hc = hub.client().await;

        let mut s1 = c1.subscribe("chain.a").await.unwrap();
        exactly_once(
            &format!("{ctx}: leaf2 -> leaf1"),
            &c2,
            &mut s1,
            &c1,
            "chain.a",
        )
        .await;
        let mut s2 = c2.subscribe("chain.b").await.unwrap();
        exactly_once(
            &format!("{ctx}: leaf1 -> leaf2"),
            &c1,
            &mut s2,
            &c2,
            "chain.b",
        )
        .await;

        // Subscribers on both leafs and the hub: one copy each.
        let mut h = hc.subscribe("chain.all").await.unwrap();
        let mut a = c1.subscribe("chain.all").await.unwrap();
        let mut b = c2.subscribe("chain.all").await.unwrap();
        await_interest(&ctx, &c2, "chain.all", &mut a).await;
        await_interest(&ctx, &c1, "chain.all", &mut b).await;
        await_interest(&ctx, &c1, "chain.all", &mut h).await;
        await_interest(&ctx, &hc, "chain.all", &mut a).await;
        await_interest(&ctx, &hc, "chain.all", &mut b).await;
        c1.publish("chain.all", "from leaf1".into()).await.unwrap();
        c1.publish("chain.all", "end".into()).await.unwrap();
        for (name, sub) in [("hub", &mut h), ("leaf1", &mut a), ("leaf2", &mut b)] {
            assert_eq!(
                text(&next_real(&ctx, sub).await),
                "from leaf1",
                "{ctx}: at {name}"
            );
            assert_eq!(
                text(&next_real(&ctx, sub).await),
                "end",
                "{ctx}: duplicate at {name}"
            );
        }
        common::sync(&hc).await;
        common::sync(&c1).await;
        common::sync(&c2).await;
        assert_nothing_real(&ctx, &mut h);
        assert_nothing_real(&ctx, &mut a);
        assert_nothing_real(&ctx, &mut b);
    }
}

// ---------------------------------------------------------------------------
// 9. reconnect after the hub restarts
// ---------------------------------------------------------------------------

#[tokio::test]
async fn leaf_reconnects_after_hub_restart() {
    for pair in pairs() {
        let ctx = pair.to_string();
        let (mut hub, leaf) = linked_pair(pair).await;
        let lc = leaf.client().await;
        let mut ls = lc.subscribe("re.down").await.unwrap();
        {
            let hc = hub.client().await;
            await_interest(&ctx, &hc, "re.down", &mut ls).await;
        }

        hub.srv.crash();
        // The leaf notices the link is gone.
        let deadline = Instant::now() + STEP;
        while leaf.leaf_count().await != 0 {
            assert!(
                Instant::now() < deadline,
                "{ctx}: leaf still counts a link after the hub died\n{}",
                leaf.describe()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        hub.srv.restart();
        wait_links(
            &format!("{ctx}: after the hub restarted"),
            &[(&hub, 1), (&leaf, 1)],
        )
        .await;

        // The leaf's existing subscription is sent again on the new link.
        let hc = hub.client().await;
        await_interest(&format!("{ctx}: after restart"), &hc, "re.down", &mut ls).await;
        hc.publish("re.down", "again".into()).await.unwrap();
        assert_eq!(text(&next_real(&ctx, &mut ls).await), "again", "{ctx}");
        // And the other way.
        let mut hs = hc.subscribe("re.up").await.unwrap();
        await_interest(&format!("{ctx}: after restart"), &lc, "re.up", &mut hs).await;
        lc.publish("re.up", "up again".into()).await.unwrap();
        assert_eq!(text(&next_real(&ctx, &mut hs).await), "up again", "{ctx}");
    }
}

// ---------------------------------------------------------------------------
// 10. many leaf connections
// ---------------------------------------------------------------------------

/// Links in the many-leafs test: one leaf server with this many remotes to
/// the same hub. Each remote binds its own local account (nats-server 2.15
/// refuses two remotes with the same URL and account at start-up:
/// "duplicate remote urls") and logs in as its own hub user bound to its own
/// hub account (a 2.9.10 hub closes a second link from the same server into
/// the same account: "Duplicate Remote LeafNode Connection").
const MANY: usize = 50;

#[tokio::test]
async fn fifty_leaf_links() {
    for pair in pairs() {
        let ctx = pair.to_string();
        let lp = common::free_port();
        let hub_accounts: Vec<String> = (0..MANY)
            .map(|i| format!("  H{i}: {{ users: [ {{ user: h{i}, password: p }} ] }}"))
            .collect();
        let leaf_users: Vec<String> = (0..MANY)
            .map(|i| format!("{{ user: l{i}, password: p, account: H{i} }}"))
            .collect();
        let hub = Node::start(
            &ctx,
            pair.hub,
            "hub",
            &hub_conf(
                lp,
                &format!(
                    "authorization {{ users: [\n    {}\n  ] }}",
                    leaf_users.join(",\n    ")
                ),
                &format!("accounts {{\n{}\n}}", hub_accounts.join("\n")),
            ),
        );
        let accounts: Vec<String> = (0..MANY)
            .map(|i| format!("  L{i}: {{ users: [ {{ user: u{i}, password: p }} ] }}"))
            .collect();
        let remotes: Vec<String> = (0..MANY)
            .map(|i| {
                remote(
                    &format!("nats://l{i}:p@127.0.0.1:{lp}"),
                    &format!("account: L{i}"),
                )
            })
            .collect();
        let leaf = Node::start(
            &ctx,
            pair.leaf,
            "leaf",
            &leaf_conf(
                &remotes,
                &format!("accounts {{\n{}\n}}", accounts.join("\n")),
            ),
        );
        wait_links(&ctx, &[(&hub, MANY as u64), (&leaf, MANY as u64)]).await;
        let v = hub.leafz(false).await;
        let mut bound: Vec<String> = v["leafs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["account"].as_str().unwrap_or("?").to_string())
            .collect();
        bound.sort();
        let mut want: Vec<String> = (0..MANY).map(|i| format!("H{i}")).collect();
        want.sort();
        assert_eq!(
            bound, want,
            "{ctx}: the hub's /leafz accounts, one link each"
        );

        let mut hubc = Vec::new();
        let mut leafc = Vec::new();
        let mut down = Vec::new();
        let mut up = Vec::new();
        for i in 0..MANY {
            let h = hub
                .client_with(ConnectOptions::with_user_and_password(
                    format!("h{i}"),
                    "p".into(),
                ))
                .await;
            let l = leaf
                .client_with(ConnectOptions::with_user_and_password(
                    format!("u{i}"),
                    "p".into(),
                ))
                .await;
            down.push(l.subscribe("fan.down").await.unwrap());
            up.push(h.subscribe("fan.up").await.unwrap());
            hubc.push(h);
            leafc.push(l);
        }
        // Probe every link both ways until each probe has come through.
        let mut ready = [(false, false); MANY];
        let deadline = Instant::now() + STEP;
        while ready.iter().any(|r| !(r.0 && r.1)) {
            assert!(
                Instant::now() < deadline,
                "{ctx}: interest never crossed on links (down, up): {:?}",
                ready
                    .iter()
                    .enumerate()
                    .filter(|(_, r)| !(r.0 && r.1))
                    .collect::<Vec<_>>()
            );
            for i in 0..MANY {
                if !ready[i].0 {
                    hubc[i].publish("fan.down", PROBE.into()).await.unwrap();
                }
                if !ready[i].1 {
                    leafc[i].publish("fan.up", PROBE.into()).await.unwrap();
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            for i in 0..MANY {
                while let Some(m) = common::queued(&mut down[i]) {
                    assert!(
                        &m.payload[..] == PROBE,
                        "{ctx}: link {i}: unexpected {:?}",
                        text(&m)
                    );
                    ready[i].0 = true;
                }
                while let Some(m) = common::queued(&mut up[i]) {
                    assert!(
                        &m.payload[..] == PROBE,
                        "{ctx}: link {i}: unexpected {:?}",
                        text(&m)
                    );
                    ready[i].1 = true;
                }
            }
        }
        // One message per account each way: it reaches that link's
        // subscriber only, once.
        for i in 0..MANY {
            hubc[i]
                .publish("fan.down", format!("down {i}").into())
                .await
                .unwrap();
            leafc[i]
                .publish("fan.up", format!("up {i}").into())
                .await
                .unwrap();
        }
        for i in 0..MANY {
            hubc[i].publish("fan.down", "end".into()).await.unwrap();
            leafc[i].publish("fan.up", "end".into()).await.unwrap();
        }
        for i in 0..MANY {
            let c = format!("{ctx}: link {i}");
            assert_eq!(
                text(&next_real(&c, &mut down[i]).await),
                format!("down {i}"),
                "{c}"
            );
            assert_eq!(text(&next_real(&c, &mut down[i]).await), "end", "{c}");
            assert_eq!(
                text(&next_real(&c, &mut up[i]).await),
                format!("up {i}"),
                "{c}"
            );
            assert_eq!(text(&next_real(&c, &mut up[i]).await), "end", "{c}");
        }
    }
}

// ---------------------------------------------------------------------------
// 11. loop detection
// ---------------------------------------------------------------------------

#[tokio::test]
async fn loop_is_detected() {
    for pair in pairs() {
        let ctx = pair.to_string();
        let pa = common::free_port();
        let pb = common::free_port();
        let conf = |own: u16, other: u16| {
            hub_conf(
                own,
                &format!("remotes: [ {} ]", remote(&leaf_url(other), "")),
                "",
            )
        };
        let a = Node::start(&ctx, pair.hub, "a", &conf(pa, pb));
        let b = Node::start(&ctx, pair.leaf, "b", &conf(pb, pa));
        let deadline = Instant::now() + Duration::from_secs(15);
        while !(a.srv.log().contains("Loop detected") || b.srv.log().contains("Loop detected")) {
            assert!(
                Instant::now() < deadline,
                "{ctx}: neither side logged \"Loop detected\"\n{}",
                logs(&[&a, &b])
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

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

/// A remote's `deny_exports` keeps those subjects from going to the hub,
/// its `deny_imports` keeps them from coming in; other subjects flow.
#[tokio::test]
async fn remote_deny_lists_hold_both_ways() {
    for pair in pairs() {
        let ctx = pair.to_string();
        let lp = common::free_port();
        let hub = Node::start(&ctx, pair.hub, "hub", &hub_conf(lp, "", ""));
        let leaf = Node::start(
            &ctx,
            pair.leaf,
            "leaf",
            &leaf_conf(
                &[remote(
                    &leaf_url(lp),
                    "deny_exports: [\"up.secret.>\"]\n deny_imports: [\"down.private.>\"]",
                )],
                "",
            ),
        );
        wait_links(&ctx, &[(&hub, 1), (&leaf, 1)]).await;
        let hc = hub.client().await;
        let lc = leaf.client().await;

        // Leaf → hub: public crosses, secret does not.
        let mut on_hub = hc.subscribe("up.>").await.unwrap();
        await_interest(&ctx, &lc, "up.probe", &mut on_hub).await;
        lc.publish("up.secret.x", "no".into()).await.unwrap();
        lc.publish("up.public.x", "yes".into()).await.unwrap();
        lc.flush().await.unwrap();
        let m = next_real(&ctx, &mut on_hub).await;
        assert_eq!(
            (m.subject.as_str(), text(&m).as_str()),
            ("up.public.x", "yes"),
            "{ctx}: deny_exports let up.secret.x through (or up.public.x was lost)"
        );

        // Hub → leaf: public crosses, private does not.
        let mut on_leaf = lc.subscribe("down.>").await.unwrap();
        await_interest(&ctx, &hc, "down.probe", &mut on_leaf).await;
        hc.publish("down.private.x", "no".into()).await.unwrap();
        hc.publish("down.public.y", "yes".into()).await.unwrap();
        hc.flush().await.unwrap();
        let m = next_real(&ctx, &mut on_leaf).await;
        assert_eq!(
            (m.subject.as_str(), text(&m).as_str()),
            ("down.public.y", "yes"),
            "{ctx}: deny_imports let down.private.x through (or down.public.y was lost)"
        );
        // A last round trip each way: anything denied would be here by now.
        await_interest(&ctx, &lc, "up.fence", &mut on_hub).await;
        await_interest(&ctx, &hc, "down.fence", &mut on_leaf).await;
        assert_nothing_real(&ctx, &mut on_hub);
        assert_nothing_real(&ctx, &mut on_leaf);
    }
}

/// A server that links again into the same account while its old link is
/// still open (say after a network cut the hub has not noticed) replaces
/// it: the old link is told and closed, as the reference does.
#[tokio::test]
async fn a_second_link_from_the_same_server_replaces_the_first() {
    let mut hubs: Vec<Kind> = Vec::new();
    for p in pairs() {
        if !hubs.contains(&p.hub) {
            hubs.push(p.hub);
        }
    }
    for kind in hubs {
        let ctx = format!("hub {}", kind.name());
        let lp = common::free_port();
        let hub = Node::start(&ctx, kind, "hub", &hub_conf(lp, "", ""));
        let addr: std::net::SocketAddr = format!("127.0.0.1:{lp}").parse().unwrap();
        let connect = r#"CONNECT {"server_id":"NFAKELEAF","name":"fake-leaf","headers":true,"remote_account":"$G"}"#;
        let mut first = common::Raw::connect(addr).await;
        assert!(
            first.info["client_id"].as_u64().unwrap_or(0) > 0,
            "{ctx}: {:?}",
            first.info
        );
        first.send(&format!("{connect}\r\nPING\r\n")).await;
        // The link is up once the hub answers PING.
        let deadline = Instant::now() + STEP;
        loop {
            let l = first
                .line()
                .await
                .unwrap_or_else(|| panic!("{ctx}: closed"));
            if l == "PONG" {
                break;
            }
            assert!(Instant::now() < deadline, "{ctx}: no PONG");
        }
        wait_links(&ctx, &[(&hub, 1)]).await;

        let mut second = common::Raw::connect(addr).await;
        second.send(&format!("{connect}\r\nPING\r\n")).await;
        // The first is told why and closed; the second stays.
        let deadline = Instant::now() + STEP;
        let mut told = false;
        while let Ok(Some(l)) = tokio::time::timeout(
            deadline.saturating_duration_since(Instant::now()),
            first.line(),
        )
        .await
        {
            if l.contains("Duplicate Remote LeafNode Connection") {
                told = true;
            }
        }
        assert!(
            told,
            "{ctx}: the first link was not told\n{}",
            hub.describe()
        );
        wait_links(&ctx, &[(&hub, 1)]).await;
        second.send("PING\r\n").await;
        let deadline = Instant::now() + STEP;
        loop {
            let l = second
                .line()
                .await
                .unwrap_or_else(|| panic!("{ctx}: second link closed"));
            if l == "PONG" {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{ctx}: no PONG on the second link"
            );
        }
    }
}

// ---------------------------------------------------------------------------
// A link that goes silent
// ---------------------------------------------------------------------------

/// A TCP relay between a leaf and its hub that can go silent: while cut it
/// neither forwards nor closes anything (a dead network path, not a reset),
/// and new connections hang unanswered; when restored it forwards again.
struct Relay {
    port: u16,
    cut: std::sync::Arc<std::sync::atomic::AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Relay {
    async fn start(to: u16) -> Relay {
        use std::sync::atomic::Ordering;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let cut = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = cut.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((inbound, _)) = listener.accept().await else {
                    return;
                };
                let flag = flag.clone();
                tokio::spawn(async move {
                    // A connection made during the cut is never answered.
                    while flag.load(Ordering::Relaxed) {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    let Ok(outbound) = tokio::net::TcpStream::connect(("127.0.0.1", to)).await
                    else {
                        return;
                    };
                    let (ir, iw) = inbound.into_split();
                    let (or, ow) = outbound.into_split();
                    let pump = |mut r: tokio::net::tcp::OwnedReadHalf,
                                mut w: tokio::net::tcp::OwnedWriteHalf,
                                flag: std::sync::Arc<std::sync::atomic::AtomicBool>| async move {
                        use tokio::io::{AsyncReadExt, AsyncWriteExt};
                        let mut buf = vec![0u8; 64 * 1024];
                        loop {
                            let n = match r.read(&mut buf).await {
                                Ok(0) | Err(_) if flag.load(Ordering::Relaxed) => {
                                    // Silent: the other side hears nothing,
                                    // not even a close.
                                    std::future::pending::<()>().await;
                                    return;
                                }
                                Ok(0) | Err(_) => return,
                                Ok(n) => n,
                            };
                            if flag.load(Ordering::Relaxed) {
                                // Silent: swallow; this connection is dead.
                                continue;
                            }
                            if w.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                        }
                    };
                    let a = tokio::spawn(pump(ir, ow, flag.clone()));
                    let b = tokio::spawn(pump(or, iw, flag));
                    let _ = tokio::join!(a, b);
                });
            }
        });
        Relay { port, cut, task }
    }

    fn set_cut(&self, cut: bool) {
        self.cut.store(cut, std::sync::atomic::Ordering::Relaxed);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The path between leaf and hub goes silent (no reset) for a while: both
/// sides give the link up on missed PINGs, the leaf keeps redialing, and
/// once the path is back there is again exactly one link and messages flow
/// both ways.
#[tokio::test]
async fn a_silent_link_is_dropped_and_comes_back() {
    for pair in pairs() {
        let ctx = pair.to_string();
        let lp = common::free_port();
        let top = "ping_interval: \"1s\"\nping_max: 2";
        let hub = Node::start(&ctx, pair.hub, "hub", &hub_conf(lp, "", top));
        let relay = Relay::start(lp).await;
        let leaf = Node::start(
            &ctx,
            pair.leaf,
            "leaf",
            &leaf_conf(&[remote(&leaf_url(relay.port), "")], top),
        );
        wait_links(&ctx, &[(&hub, 1), (&leaf, 1)]).await;
        let hc = hub.client().await;
        let lc = leaf.client().await;
        let mut on_hub = hc.subscribe("silent.>").await.unwrap();
        await_interest(&ctx, &lc, "silent.probe", &mut on_hub).await;

        relay.set_cut(true);
        // Both sides notice: their link counts drop to zero.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if hub.leaf_count().await == 0 && leaf.leaf_count().await == 0 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{ctx}: the silent link was never given up\n{}",
                logs(&[&hub, &leaf])
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        relay.set_cut(false);
        wait_links(&ctx, &[(&hub, 1), (&leaf, 1)]).await;

        // Interest is back both ways.
        await_interest(&ctx, &lc, "silent.probe", &mut on_hub).await;
        lc.publish("silent.after", "back".into()).await.unwrap();
        let m = next_real(&ctx, &mut on_hub).await;
        assert_eq!(text(&m), "back", "{ctx}");
        let mut on_leaf = lc.subscribe("down.>").await.unwrap();
        await_interest(&ctx, &hc, "down.probe", &mut on_leaf).await;
        // Still exactly one link on each side.
        assert_eq!(hub.leaf_count().await, 1, "{ctx}");
        assert_eq!(leaf.leaf_count().await, 1, "{ctx}");
    }
}
