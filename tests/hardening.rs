//! Regression tests for the hardening issue's findings (one test per
//! finding, each failing on the code that had the fault). They pass
//! against nats-server 2.9.10 / 2.15.3 too unless marked broker-edge only.

mod common;

use common::Server;

/// Resident memory of a process (KiB), from /proc.
fn rss_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// #1: a connection sending only blank lines (32 MiB of `\r\n`) must not
/// grow the server's memory (the parser used to skip them without
/// consuming them, so every read re-parsed and carried all of them), and
/// the connection stays usable: a PING afterwards gets its PONG.
/// (nats-server closes such a connection instead, as an unknown
/// operation; Broker Edge keeps tolerating blank lines between
/// operations, as its parser always did.)
#[tokio::test]
async fn blank_line_flood_is_consumed() {
    ours_only!("nats-server closes the connection on blank lines");
    let s = Server::start(&[]);
    let mut raw = s.raw().await;
    raw.handshake(r#"{"verbose":false,"pedantic":false}"#).await;
    let before = rss_kib(s.pid());
    let chunk = b"\r\n".repeat(512 * 1024); // 1 MiB
    for _ in 0..32 {
        raw.send_bytes(&chunk).await;
    }
    raw.send("PING\r\n").await;
    loop {
        let line = raw
            .line()
            .await
            .expect("connection closed during the flood");
        if line.starts_with("PONG") {
            break;
        }
    }
    let grown = rss_kib(s.pid()).saturating_sub(before);
    assert!(
        grown < 16 * 1024,
        "the server grew by {grown} KiB while reading blank lines"
    );
}

/// #10: a `leafnodes { }` or `cluster { }` block this build cannot act on
/// stops start-up with an `[FTL]` line naming it (it used to start without
/// a word, links never made), and a reload that adds one is refused with
/// the old configuration kept.
#[tokio::test]
async fn unbuilt_link_blocks_refused_at_start_and_reload() {
    ours_only!("nats-server implements clusters and leaf nodes");
    for (block, name) in [
        (
            "leafnodes { remotes: [ { url: \"nats://hub.example:7422\" } ] }",
            "leafnodes",
        ),
        ("cluster { name: c1, listen: 127.0.0.1:-1 }", "cluster"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.conf");
        std::fs::write(&path, format!("listen: 127.0.0.1:-1\n{block}\n")).unwrap();
        let (st, out, err) =
            common::run_to_exit(&["-c", path.to_str().unwrap()], common::STEP).await;
        assert!(!st.success(), "started with {name}: {out}{err}");
        let text = format!("{out}{err}");
        assert!(
            text.contains("[FTL]") && text.contains(&format!("{name} {{ }} is not supported")),
            "{text}"
        );
    }
    // Reload adding a leafnodes block: refused, the server keeps running.
    let s = Server::start_with_config("listen: 127.0.0.1:-1\n", &[]);
    let path = s.config_path();
    let port = s.addr().port();
    std::fs::write(
        &path,
        format!("listen: 127.0.0.1:{port}\nleafnodes {{ port: 7422 }}\n"),
    )
    .unwrap();
    s.signal(libc::SIGHUP);
    s.wait_log("Failed to reload server configuration", common::STEP)
        .await;
    assert!(
        s.log().contains("leafnodes { } is not supported"),
        "{}",
        s.log()
    );
    let c = s.client().await;
    common::sync(&c).await;
}

/// utime + stime of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc stat");
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

/// #4: out of file descriptors (`ulimit -n 64`), the accept loop backs off
/// instead of spinning a core, counts it in `/varz` (`accept_errors`), and
/// serves clients again once descriptors are free.
#[tokio::test]
async fn accept_backs_off_when_descriptors_run_out() {
    ours_only!("accept_errors is Broker Edge's /varz field");
    let port = common::free_port();
    let http = common::free_port();
    let mut child = std::process::Command::new("prlimit")
        .arg("--nofile=64:64")
        .arg(common::server_bin())
        .args([
            "-a",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-m",
            &http.to_string(),
        ])
        .args(["--shards", "1"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("prlimit");
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let deadline = std::time::Instant::now() + common::START_TIMEOUT;
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(std::time::Instant::now() < deadline, "server did not start");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let pid = child.id();
    // More connections than descriptors: the server's accepts fail.
    let mut held = Vec::new();
    for _ in 0..120 {
        if let Ok(c) = std::net::TcpStream::connect(addr) {
            held.push(c);
        }
    }
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let before = cpu_ticks(pid);
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let used = cpu_ticks(pid) - before;
    let tps = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    assert!(
        used <= tps * 2 / 5,
        "the server used {used} ticks in 2 s with descriptors exhausted (spinning)"
    );
    drop(held);
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let (code, body) =
        common::http_get(format!("127.0.0.1:{http}").parse().unwrap(), "/varz").await;
    assert_eq!(code, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(
        v["accept_errors"].as_u64().unwrap() > 0,
        "{}",
        v["accept_errors"]
    );
    // Descriptors back: a client is served again.
    let c = async_nats::connect(format!("nats://{addr}")).await.unwrap();
    common::sync(&c).await;
    let _ = child.kill();
    let _ = child.wait();
}

/// #15 (first part): requests for unknown monitoring paths are answered
/// 404 and not counted, so they cannot grow `/varz` (300 unique paths
/// used to add 300 entries to `http_req_stats`).
#[tokio::test]
async fn unknown_monitoring_paths_are_not_counted() {
    let s = Server::start(&[]);
    for i in 0..300 {
        let (code, _) = s.http(&format!("/nope-{i}")).await;
        assert_eq!(code, 404);
    }
    let v = s.json("/varz").await;
    let stats = v["http_req_stats"].as_object().cloned().unwrap_or_default();
    assert!(
        stats.keys().all(|k| !k.starts_with("/nope")),
        "unknown paths counted: {} entries",
        stats.len()
    );
}
