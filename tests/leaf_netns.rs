//! A leaf link over a real network path that is dropped and restored: the
//! appliance (Broker Edge, in a network namespace of its own) reaches its
//! hub (Broker Edge, then nats-server 2.15.3, in the test's namespace)
//! over one veth pair, and the test reaches the appliance's clients over a
//! second one. The link's pair goes down long enough for both sides' pings
//! to give the link up, while the appliance keeps storing; after the pair
//! comes back, the hub's sourced and mirrored copies hold every message of
//! the appliance's stream exactly once.
//!
//! Needs root (`ip netns`, veth); skipped with a message otherwise.

mod common;

use common::{js_api, js_publish, Server};
use serde_json::{json, Value};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const NS_LINK_HOST: &str = "10.231.1.1";
const NS_LINK_EDGE: &str = "10.231.1.2";
const NS_MGMT_HOST: &str = "10.231.2.1";
const NS_MGMT_EDGE: &str = "10.231.2.2";

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// A namespace joined to this one by two veth pairs: `link` (the leaf
/// link; the test drops it) and `mgmt` (the test's clients).
struct Netns {
    name: String,
    link: String,
}

impl Netns {
    fn create() -> Result<Netns, String> {
        let id = std::process::id() % 100_000;
        let name = format!("be-edge-{id}");
        let link = format!("bel{id}");
        let mgmt = format!("bem{id}");
        let ns = Netns {
            name: name.clone(),
            link: link.clone(),
        };
        ip(&["netns", "add", &name])?;
        ip(&[
            "link", "add", &link, "type", "veth", "peer", "name", "edgelink",
        ])?;
        ip(&[
            "link", "add", &mgmt, "type", "veth", "peer", "name", "edgemgmt",
        ])?;
        for peer in ["edgelink", "edgemgmt"] {
            ip(&["link", "set", peer, "netns", &name])?;
        }
        ip(&["addr", "add", &format!("{NS_LINK_HOST}/24"), "dev", &link])?;
        ip(&["addr", "add", &format!("{NS_MGMT_HOST}/24"), "dev", &mgmt])?;
        let n = name.as_str();
        ip(&[
            "-n",
            n,
            "addr",
            "add",
            &format!("{NS_LINK_EDGE}/24"),
            "dev",
            "edgelink",
        ])?;
        ip(&[
            "-n",
            n,
            "addr",
            "add",
            &format!("{NS_MGMT_EDGE}/24"),
            "dev",
            "edgemgmt",
        ])?;
        for dev in [&link, &mgmt] {
            ip(&["link", "set", dev, "up"])?;
        }
        for dev in ["lo", "edgelink", "edgemgmt"] {
            ip(&["-n", n, "link", "set", dev, "up"])?;
        }
        Ok(ns)
    }

    fn set_link(&self, up: bool) {
        ip(&["link", "set", &self.link, if up { "up" } else { "down" }]).unwrap();
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Deleting the namespace destroys the pairs with it.
        let _ = ip(&["netns", "del", &self.name]);
    }
}

/// Broker Edge started inside the namespace.
struct Edge {
    child: Child,
    log: std::path::PathBuf,
}

impl Edge {
    fn start(ns: &Netns, conf: &Path, log: std::path::PathBuf) -> Edge {
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", &ns.name])
            .arg(common::server_bin())
            .args(["-a", "0.0.0.0", "-p", "4222", "-m", "8222", "-c"])
            .arg(conf)
            .stdout(Stdio::null())
            .stderr(out)
            .spawn()
            .expect("ip netns exec");
        let deadline = Instant::now() + Duration::from_secs(20);
        let addr = format!("{NS_MGMT_EDGE}:4222").parse().unwrap();
        while std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            assert!(Instant::now() < deadline, "the edge server did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Edge { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Edge {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn leafnodes(url: &str) -> u64 {
    let addr = url.parse().unwrap();
    let (_, body) = common::http_get(addr, "/leafz").await;
    serde_json::from_str::<Value>(&body).unwrap_or_default()["leafnodes"]
        .as_u64()
        .unwrap_or(0)
}

async fn wait_leafnodes(hub: &Server, want: u64, what: &str, edge: &Edge) {
    let hub_http = format!("127.0.0.1:{}", hub.http_port);
    let edge_http = format!("{NS_MGMT_EDGE}:8222");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (h, e) = (leafnodes(&hub_http).await, leafnodes(&edge_http).await);
        if h == want && e == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: hub has {h} links, edge {e}, want {want}\n--- hub ---\n{}\n--- edge ---\n{}",
            hub.log(),
            edge.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn state(v: &Value) -> (u64, u64) {
    (
        v["state"]["messages"].as_u64().unwrap_or(0),
        v["state"]["last_seq"].as_u64().unwrap_or(0),
    )
}

/// Waits until `stream` on the hub holds `n` messages up to sequence
/// `last`.
async fn wait_copy(c: &async_nats::Client, stream: &str, n: u64, last: u64, ctx: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let v = js_api(c, &format!("$JS.API.STREAM.INFO.{stream}"), "").await;
        if state(&v) == (n, last) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{ctx}: {stream} never caught up: {v}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every payload of a stream, by sequence 1..=n.
async fn payloads(c: &async_nats::Client, stream: &str, n: u64) -> Vec<String> {
    let mut out = Vec::new();
    for seq in 1..=n {
        let v = js_api(
            c,
            &format!("$JS.API.STREAM.MSG.GET.{stream}"),
            &json!({ "seq": seq }).to_string(),
        )
        .await;
        let data = v["message"]["data"].as_str().unwrap_or_default();
        let raw = base64_decode(data);
        out.push(String::from_utf8_lossy(&raw).into_owned());
    }
    out
}

fn base64_decode(s: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .unwrap_or_default()
}

/// Publishes `count` messages after the first `from` (payloads `m<i>`,
/// each acked at sequence i+1); the new total.
async fn publish(ec: &async_nats::Client, from: u64, count: u64) -> u64 {
    for i in from..from + count {
        let ack = js_publish(ec, &format!("edge.m.{}", i % 7), &[], &format!("m{i}")).await;
        assert_eq!(ack["seq"], i + 1, "{ack}");
    }
    from + count
}

#[tokio::test]
async fn sourced_and_mirrored_streams_survive_a_dropped_link() {
    ours_only!("the appliance side is Broker Edge; the hub is both servers below");
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: network namespaces need root");
        return;
    }
    let ns = match Netns::create() {
        Ok(ns) => ns,
        Err(e) => {
            eprintln!("skipped: no network namespaces here ({e})");
            return;
        }
    };
    for hub_bin in [common::server_bin(), common::ref_server_2_15()] {
        across_a_dropped_link(&ns, &hub_bin).await;
    }
}

async fn across_a_dropped_link(ns: &Netns, hub_bin: &Path) {
    let ctx = format!("hub {}", hub_bin.display());
    let tmp = tempfile::tempdir().unwrap();
    let lp = common::free_port();
    // Both sides give a silent link up after about three seconds.
    let pings = "ping_interval: \"1s\"\nping_max: 2\n";
    let hub_conf = tmp.path().join("hub.conf");
    std::fs::write(
        &hub_conf,
        format!(
            "{pings}jetstream {{ store_dir: {:?}, domain: hub }}\nleafnodes {{ host: \"{NS_LINK_HOST}\", port: {lp} }}\n",
            tmp.path().join("hub")
        ),
    )
    .unwrap();
    let edge_conf = tmp.path().join("edge.conf");
    std::fs::write(
        &edge_conf,
        format!(
            "{pings}jetstream {{ store_dir: {:?}, domain: edge }}\nleafnodes {{ reconnect: \"1s\", remotes: [ {{ url: \"nats://{NS_LINK_HOST}:{lp}\" }} ] }}\n",
            tmp.path().join("edge")
        ),
    )
    .unwrap();
    let mut hub = Server::start_bin(hub_bin, &["-c", hub_conf.to_str().unwrap()]);
    let edge = Edge::start(ns, &edge_conf, tmp.path().join("edge.log"));
    wait_leafnodes(&hub, 1, &format!("{ctx}: first link"), &edge).await;
    let hc = hub.client().await;
    let ec = async_nats::connect(format!("nats://{NS_MGMT_EDGE}:4222"))
        .await
        .unwrap();

    let r = js_api(
        &ec,
        "$JS.API.STREAM.CREATE.EDGE",
        &json!({"name": "EDGE", "subjects": ["edge.>"]}).to_string(),
    )
    .await;
    assert!(r.get("error").is_none(), "{ctx}: {r}");
    let ext = json!({"api": "$JS.edge.API", "deliver": ""});
    for cfg in [
        json!({"name": "COPY", "sources": [{"name": "EDGE", "external": ext}]}),
        json!({"name": "MIRROR", "mirror": {"name": "EDGE", "external": ext}}),
    ] {
        let name = cfg["name"].as_str().unwrap().to_string();
        let r = js_api(
            &hc,
            &format!("$JS.API.STREAM.CREATE.{name}"),
            &cfg.to_string(),
        )
        .await;
        assert!(r.get("error").is_none(), "{ctx}: {r}");
    }
    let mut n = 0u64;
    n = publish(&ec, n, 50).await;
    wait_copy(&hc, "COPY", 50, 50, &ctx).await;
    wait_copy(&hc, "MIRROR", 50, 50, &ctx).await;

    // The link's path goes dark; the appliance keeps storing.
    ns.set_link(false);
    n = publish(&ec, n, 40).await;
    wait_leafnodes(&hub, 0, &format!("{ctx}: link given up"), &edge).await;
    n = publish(&ec, n, 60).await;
    ns.set_link(true);
    wait_leafnodes(&hub, 1, &format!("{ctx}: link back"), &edge).await;
    n = publish(&ec, n, 10).await;
    wait_copy(&hc, "COPY", n, n, &ctx).await;
    wait_copy(&hc, "MIRROR", n, n, &ctx).await;
    // A late duplicate would show up after the counts matched: give it time.
    tokio::time::sleep(Duration::from_secs(2)).await;
    for stream in ["COPY", "MIRROR"] {
        let v = js_api(&hc, &format!("$JS.API.STREAM.INFO.{stream}"), "").await;
        assert_eq!(state(&v), (n, n), "{ctx}: {stream}: {v}");
    }
    let want: Vec<String> = (0..n).map(|i| format!("m{i}")).collect();
    assert_eq!(
        payloads(&hc, "COPY", n).await,
        want,
        "{ctx}: COPY in order, each once"
    );
    assert_eq!(
        payloads(&hc, "MIRROR", n).await,
        want,
        "{ctx}: MIRROR at the edge's sequences"
    );
    drop((hc, ec));
    drop(edge);
    hub.stop();
}
