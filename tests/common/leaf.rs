//! The leaf-node test harness shared by `leaf.rs`, `leaf_links.rs` and
//! `leaf_jetstream.rs`: hub-leaf pairs from `LEAF_PAIRS` (kinds `ours`,
//! `ref215`, `ref29`), nodes started from config text, links awaited via
//! `/leafz`, interest awaited with probe messages. See `tests/leaf.rs`.

use std::fmt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use async_nats::{Client, ConnectOptions, Message, Subscriber};
use futures::StreamExt;
use serde_json::Value;

use super::{within, Server, STEP};

// ---------------------------------------------------------------------------
// Servers and pairs
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Kind {
    /// The binary under test (`super::server_bin()`).
    Ours,
    /// nats-server 2.15.3 (`super::ref_server_2_15()`).
    Ref215,
    /// Debian's nats-server 2.9.10.
    Ref29,
}

impl Kind {
    pub fn parse(s: &str) -> Kind {
        match s.trim() {
            "ours" => Kind::Ours,
            "ref215" => Kind::Ref215,
            "ref29" => Kind::Ref29,
            other => panic!("LEAF_PAIRS: unknown server kind {other:?} (ours, ref215, ref29)"),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Kind::Ours => "ours",
            Kind::Ref215 => "ref215",
            Kind::Ref29 => "ref29",
        }
    }

    pub fn bin(self) -> PathBuf {
        match self {
            Kind::Ours => super::server_bin(),
            Kind::Ref215 => super::ref_server_2_15(),
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
pub struct Pair {
    pub hub: Kind,
    pub leaf: Kind,
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

pub const DEFAULT_PAIRS: &str = "ours-ref215,ref215-ours,ours-ref29,ref29-ours,ours-ours";

/// The hub-leaf pairs to run (`LEAF_PAIRS`, else [`DEFAULT_PAIRS`]).
pub fn pairs() -> Vec<Pair> {
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
pub struct Node {
    pub srv: Server,
    /// The pair under test, for messages.
    pub ctx: String,
    pub kind: Kind,
    /// What the node is in the test, for messages ("hub", "leaf1", ...).
    pub role: String,
    _conf_dir: tempfile::TempDir,
}

impl Node {
    /// Start `kind` with the config text `conf`; the harness adds the client
    /// and monitoring ports (`-a 127.0.0.1 -p P -m M`).
    pub fn start(ctx: &str, kind: Kind, role: &str, conf: &str) -> Node {
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

    /// The config file the node was started with (rewrite it, then SIGHUP).
    pub fn config_path(&self) -> PathBuf {
        self._conf_dir.path().join(format!("{}.conf", self.role))
    }

    pub async fn leafz(&self, subs: bool) -> Value {
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

    pub async fn leaf_count(&self) -> u64 {
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

    pub async fn client(&self) -> Client {
        self.srv.client().await
    }

    pub async fn client_with(&self, opts: ConnectOptions) -> Client {
        self.srv.client_with(opts).await
    }

    pub fn describe(&self) -> String {
        format!(
            "--- {} ({}) log ---\n{}",
            self.role,
            self.kind.name(),
            self.srv.log()
        )
    }
}

pub fn logs(nodes: &[&Node]) -> String {
    nodes
        .iter()
        .map(|n| n.describe())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Config of a hub: `leafnodes { host, port, <leaf_extra> }` after `top`.
pub fn hub_conf(leaf_port: u16, leaf_extra: &str, top: &str) -> String {
    format!("{top}\nleafnodes {{\n  host: \"127.0.0.1\"\n  port: {leaf_port}\n  {leaf_extra}\n}}\n")
}

/// One remote: `{ url: "<url>" <extra> }`.
pub fn remote(url: &str, extra: &str) -> String {
    format!("{{ url: \"{url}\"\n {extra} }}")
}

/// Config of a leaf with these remotes, after `top`.
pub fn leaf_conf(remotes: &[String], top: &str) -> String {
    format!(
        "{top}\nleafnodes {{\n  remotes: [\n    {}\n  ]\n}}\n",
        remotes.join(",\n    ")
    )
}

pub fn leaf_url(port: u16) -> String {
    format!("nats://127.0.0.1:{port}")
}

/// Wait until every node's `/leafz` counts exactly its expected number of
/// leaf connections.
pub async fn wait_links(ctx: &str, nodes: &[(&Node, u64)]) {
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
pub async fn linked_pair(pair: Pair) -> (Node, Node) {
    let ctx = pair.to_string();
    let lp = super::free_port();
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
pub const PROBE: &[u8] = b"__leaf_probe__";

/// Publish probes to `subject` from `publisher` until `sub` receives one:
/// the subscription's interest has reached the publisher's server.
pub async fn await_interest(ctx: &str, publisher: &Client, subject: &str, sub: &mut Subscriber) {
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
pub async fn next_real(ctx: &str, sub: &mut Subscriber) -> Message {
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
pub fn assert_nothing_real(ctx: &str, sub: &mut Subscriber) {
    while let Some(m) = super::queued(sub) {
        assert!(
            &m.payload[..] == PROBE,
            "{ctx}: unexpected message on {}: {:?}",
            m.subject,
            String::from_utf8_lossy(&m.payload[..m.payload.len().min(100)])
        );
    }
}

/// Nothing at all is queued for `sub` (not even a probe).
pub fn assert_nothing(ctx: &str, sub: &mut Subscriber) {
    if let Some(m) = super::queued(sub) {
        panic!(
            "{ctx}: unexpected message on {}: {:?}",
            m.subject,
            String::from_utf8_lossy(&m.payload[..m.payload.len().min(100)])
        );
    }
}

pub fn text(m: &Message) -> String {
    String::from_utf8_lossy(&m.payload).into_owned()
}

/// Poll `node`'s `/leafz?subs=1` until `pred` holds for some link's
/// subscription list (all links' lists are given).
pub async fn wait_leafz_subs(
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

pub fn lists_contain(lists: &[Vec<String>], subject: &str) -> bool {
    lists.iter().any(|l| l.iter().any(|s| s == subject))
}

/// A client whose requests give up after `ms` (for polling loops).
pub fn quick_requests(ms: u64) -> ConnectOptions {
    ConnectOptions::new().request_timeout(Some(Duration::from_millis(ms)))
}
