//! Runs the bench binary against a real nats-server on a random port (and
//! against a fake server that swallows messages, to check loss reporting).

use serde_json::Value;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

const NATS_SERVER: &str = "/usr/sbin/nats-server";
const BENCH: &str = env!("CARGO_BIN_EXE_broker-edge-bench");

struct Server {
    child: Child,
    port: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A free port below the kernel's ephemeral range (32768+), so no client
/// socket's local port can take it before the server binds it (and a
/// readiness probe cannot connect to itself there, which an ephemeral
/// port allows on loopback). Each candidate is checked by binding it.
fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let base = 20_000 + (std::process::id() % 6000) as u16;
    for _ in 0..2000 {
        let port = base + NEXT.fetch_add(1, Ordering::Relaxed) % 6000;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port found");
}

fn start_nats_server() -> Option<Server> {
    start_nats_server_with(&[])
}

fn start_nats_server_with(extra: &[&str]) -> Option<Server> {
    if !Path::new(NATS_SERVER).exists() {
        eprintln!("skipping: {NATS_SERVER} is not installed");
        return None;
    }
    // A port another process takes between the check and nats-server's
    // bind lets the readiness probe reach that process while ours has
    // exited: make sure ours is still alive, else try another port.
    for _ in 0..5 {
        let port = free_port();
        let child = Command::new(NATS_SERVER)
            .args(["-a", "127.0.0.1", "-p", &port.to_string()])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting nats-server");
        let mut s = Server { child, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut up = false;
        while Instant::now() < deadline {
            if s.child.try_wait().ok().flatten().is_some() {
                break;
            }
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                up = true;
                break;
            }
            thread::sleep(Duration::from_millis(20));
        }
        thread::sleep(Duration::from_millis(100));
        if up && s.child.try_wait().ok().flatten().is_none() {
            return Some(s);
        }
        eprintln!("nats-server did not stay up on port {port}; trying another");
    }
    panic!("nats-server did not start");
}

/// Runs the bench with `--json -q`; returns (exit success, parsed stdout).
fn bench(args: &[&str]) -> (bool, Value) {
    let out = Command::new(BENCH)
        .args(args)
        .args(["--json", "-q"])
        .output()
        .expect("running the bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let v: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "bad JSON ({e}) from {args:?}: {stdout}\nstderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.success(), v)
}

fn url(port: u16) -> String {
    format!("nats://127.0.0.1:{port}")
}

#[test]
fn scenarios_against_nats_server() {
    let Some(s) = start_nats_server() else {
        return;
    };
    let u = url(s.port);
    let cases: [(&[&str], u64, u64); 6] = [
        (&["pub", "--msgs", "5000"], 5000, 0),
        (&["pubsub", "--msgs", "5000", "--size", "16"], 5000, 5000),
        (
            &["fanout", "--msgs", "3000", "--subs", "3", "--size", "1k"],
            3000,
            9000,
        ),
        (
            &["queue", "--msgs", "4000", "--subs", "3", "--pubs", "2"],
            4000,
            4000,
        ),
        (&["reqrep", "--msgs", "300", "--size", "128"], 300, 300),
        // Busy-polling requesters and responders (two of each).
        (
            &[
                "reqrep", "--msgs", "300", "--spin", "--pubs", "2", "--subs", "2",
            ],
            300,
            300,
        ),
    ];
    for (args, sent, received) in cases {
        let mut a = args.to_vec();
        a.extend(["--url", &u]);
        let (ok, v) = bench(&a);
        assert!(ok, "{a:?}: {v}");
        assert_eq!(v["sent"], sent, "{a:?}: {v}");
        assert_eq!(v["received"], received, "{a:?}: {v}");
        assert_eq!(v["lost"], 0, "{a:?}: {v}");
        // The server is our child on loopback: its PID is found from the port.
        assert_eq!(v["server_pid"], s.child.id(), "{a:?}: {v}");
        assert!(v["server_us_per_msg"].is_number(), "{a:?}: {v}");
        if args[0] == "reqrep" {
            let p50 = v["latency"]["p50_us"].as_f64().unwrap();
            let p99 = v["latency"]["p99_us"].as_f64().unwrap();
            assert!(p50 > 0.0 && p99 >= p50, "{v}");
        }
    }
}

#[test]
fn compare_two_nats_servers() {
    let (Some(a), Some(b)) = (start_nats_server(), start_nats_server()) else {
        return;
    };
    let (ua, ub) = (url(a.port), url(b.port));
    let (ok, v) = bench(&[
        "pubsub",
        "--msgs",
        "3000",
        "--url",
        &ua,
        "--compare",
        &ub,
        "--rounds",
        "2",
    ]);
    assert!(ok, "{v}");
    assert_eq!(v["ratio_direction"], "B/A");
    let rounds = v["rounds"].as_array().unwrap();
    assert_eq!(rounds.len(), 2);
    for r in rounds {
        assert_eq!(r["a"]["received"], 3000);
        assert_eq!(r["b"]["received"], 3000);
        assert_eq!(r["a"]["server_pid"], a.child.id());
        assert_eq!(r["b"]["server_pid"], b.child.id());
        assert!(r["ratios"]["msgs_per_s"].as_f64().unwrap() > 0.0);
    }
    assert!(v["median"]["msgs_per_s"].as_f64().unwrap() > 0.0);
}

/// Speaks just enough NATS to handshake (INFO, PONG for PING) and delivers
/// nothing, like a server that loses every message.
fn black_hole() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    thread::spawn(move || {
        for c in l.incoming().flatten() {
            thread::spawn(move || serve_black_hole(c));
        }
    });
    port
}

fn serve_black_hole(mut c: TcpStream) {
    if c.write_all(b"INFO {\"max_payload\":1048576}\r\n").is_err() {
        return;
    }
    let mut buf = vec![0u8; 65536];
    // Keeps the tail of the previous read so a PING split across reads is seen.
    let mut tail: Vec<u8> = Vec::new();
    loop {
        let n = match c.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        tail.extend_from_slice(&buf[..n]);
        let pings = tail.windows(6).filter(|w| w == b"PING\r\n").count();
        for _ in 0..pings {
            if c.write_all(b"PONG\r\n").is_err() {
                return;
            }
        }
        let keep = tail.len().min(5);
        tail.drain(..tail.len() - keep);
    }
}

#[test]
fn loss_is_reported_not_hung() {
    let port = black_hole();
    let started = Instant::now();
    let (ok, v) = bench(&[
        "pubsub",
        "--msgs",
        "2000",
        "--idle-timeout",
        "300ms",
        "--url",
        &url(port),
    ]);
    assert!(!ok, "a run with lost messages must fail: {v}");
    assert_eq!(v["sent"], 2000);
    assert_eq!(v["received"], 0);
    assert_eq!(v["lost"], 2000);
    assert!(!v["errors"].as_array().unwrap().is_empty(), "{v}");
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[test]
fn spawned_server_is_measured_and_stopped() {
    if !Path::new(NATS_SERVER).exists() {
        eprintln!("skipping: {NATS_SERVER} is not installed");
        return;
    }
    let port = free_port();
    let u = url(port);
    let cmd = format!("{NATS_SERVER} -a 127.0.0.1 -p {port}");
    let (ok, v) = bench(&["pubsub", "--msgs", "2000", "--url", &u, "--spawn-a", &cmd]);
    assert!(ok, "{v}");
    assert_eq!(v["received"], 2000);
    assert!(v["server_pid"].is_u64(), "{v}");
    assert!(v["server_peak_rss_mib"].as_f64().unwrap() > 0.0, "{v}");
    // The bench stops what it started.
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
}

#[test]
fn jetstream_publishes_against_nats_server() {
    let dir = std::env::temp_dir().join(format!("bench-js-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let Some(s) = start_nats_server_with(&["-js", "-sd", dir.to_str().unwrap()]) else {
        return;
    };
    let u = url(s.port);
    for (args, n) in [
        (
            &["js-pub-async", "--msgs", "3000", "--size", "1k"][..],
            3000,
        ),
        (
            &[
                "js-pub-async",
                "--msgs",
                "2000",
                "--pubs",
                "2",
                "--window",
                "7",
            ],
            2000,
        ),
        (&["js-pub-sync", "--msgs", "200", "--stream", "OTHER"], 200),
    ] {
        let mut a = args.to_vec();
        a.extend(["--url", &u]);
        let (ok, v) = bench(&a);
        assert!(ok, "{a:?}: {v}");
        assert_eq!(v["sent"], n, "{v}");
        assert_eq!(v["received"], n, "{v}");
        assert_eq!(v["lost"], 0, "{v}");
        assert_eq!(v["latency"]["count"], n, "{v}");
        assert!(v["msgs_per_s"].as_f64().unwrap() > 0.0, "{v}");
        assert_eq!(v["server_pid"], s.child.id(), "{v}");
    }
    // Every stream was deleted after its run.
    let streams = dir.join("jetstream/$G/streams");
    let left: Vec<_> = std::fs::read_dir(&streams)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "streams left behind: {left:?}");
    drop(s);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn jetstream_consume_and_kv_against_nats_server() {
    let dir = std::env::temp_dir().join(format!("bench-jskv-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let Some(s) = start_nats_server_with(&["-js", "-sd", dir.to_str().unwrap()]) else {
        return;
    };
    let u = url(s.port);
    for (args, n) in [
        (&["js-consume", "--msgs", "3000", "--fetch", "64"][..], 3000),
        (&["js-consume", "--msgs", "1001", "--subs", "2"][..], 1001),
        (&["kv-put", "--msgs", "300", "--keys", "50"][..], 300),
        (
            &["kv-get", "--msgs", "300", "--keys", "50", "--size", "1k"][..],
            300,
        ),
        (
            &["kv-get", "--msgs", "200", "--pubs", "2", "--bucket", "B2"][..],
            200,
        ),
    ] {
        let mut a = args.to_vec();
        a.extend(["--url", &u]);
        let (ok, v) = bench(&a);
        assert!(ok, "{a:?}: {v}");
        assert_eq!(v["received"], n, "{v}");
        assert_eq!(v["lost"], 0, "{v}");
        assert!(v["errors"].as_array().unwrap().is_empty(), "{v}");
        assert!(v["msgs_per_s"].as_f64().unwrap() > 0.0, "{v}");
        if args[0] != "js-consume" {
            // One latency sample per operation (js-consume: per fetch).
            assert_eq!(v["latency"]["count"], n, "{v}");
        }
    }
    // Every stream and bucket was deleted after its run.
    let streams = dir.join("jetstream/$G/streams");
    let left: Vec<_> = std::fs::read_dir(&streams)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "streams left behind: {left:?}");
    drop(s);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A fake JetStream server: API requests succeed, and every fifth publish
/// gets a PubAck carrying an error.
fn fake_jetstream() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    thread::spawn(move || {
        for c in l.incoming().flatten() {
            thread::spawn(move || {
                let _ = serve_fake_jetstream(c);
            });
        }
    });
    port
}

fn serve_fake_jetstream(c: TcpStream) -> std::io::Result<()> {
    use std::io::BufRead;
    let mut w = c.try_clone()?;
    let mut r = std::io::BufReader::new(c);
    w.write_all(b"INFO {\"max_payload\":1048576,\"jetstream\":true}\r\n")?;
    let (mut line, mut n) = (String::new(), 0u64);
    loop {
        line.clear();
        if r.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let t: Vec<&str> = line.split_whitespace().collect();
        match t.first().copied() {
            Some("PING") => w.write_all(b"PONG\r\n")?,
            Some("PUB") if t.len() == 4 => {
                let mut body = vec![0u8; t[3].parse::<usize>().unwrap() + 2];
                r.read_exact(&mut body)?;
                let reply: &[u8] = if t[1].starts_with("$JS.API.") {
                    br#"{"type":"io.nats.jetstream.api.v1.ok","success":true}"#
                } else {
                    n += 1;
                    if n % 5 == 0 {
                        br#"{"error":{"code":503,"err_code":10077,"description":"fake failure"}}"#
                    } else {
                        br#"{"stream":"BENCH","seq":1}"#
                    }
                };
                let mut m = format!("MSG {} 1 {}\r\n", t[2], reply.len()).into_bytes();
                m.extend_from_slice(reply);
                m.extend_from_slice(b"\r\n");
                w.write_all(&m)?;
            }
            _ => {}
        }
    }
}

#[test]
fn pubacks_with_errors_are_counted_and_fail_the_run() {
    let port = fake_jetstream();
    let (ok, v) = bench(&["js-pub-async", "--msgs", "1000", "--url", &url(port)]);
    assert!(!ok, "error acks must fail the run: {v}");
    assert_eq!(v["sent"], 1000, "{v}");
    assert_eq!(v["received"], 800, "{v}");
    assert_eq!(v["lost"], 200, "{v}");
    let errors = v["errors"].to_string();
    assert!(
        errors.contains("200 PubAcks carried an error") && errors.contains("fake failure"),
        "{v}"
    );
}

/// `--sub-url`: publisher on a leaf, subscribers on its hub (two
/// nats-servers joined by a leaf link); server CPU covers both.
#[test]
fn sub_url_across_a_leaf_link() {
    if !Path::new(NATS_SERVER).exists() {
        eprintln!("skipping: {NATS_SERVER} is not installed");
        return;
    }
    let dir = std::env::temp_dir().join(format!("bench-leaf-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let leaf_port = free_port();
    let hub_conf = dir.join("hub.conf");
    std::fs::write(
        &hub_conf,
        format!("leafnodes {{ listen: \"127.0.0.1:{leaf_port}\" }}\n"),
    )
    .unwrap();
    let leaf_conf = dir.join("leaf.conf");
    std::fs::write(
        &leaf_conf,
        format!("leafnodes {{ remotes: [ {{ url: \"nats://127.0.0.1:{leaf_port}\" }} ] }}\n"),
    )
    .unwrap();
    let Some(hub) = start_nats_server_with(&["-c", hub_conf.to_str().unwrap()]) else {
        return;
    };
    let leaf = start_nats_server_with(&["-c", leaf_conf.to_str().unwrap()]).unwrap();
    for (scen, subs, received) in [
        ("pubsub", "1", 3000),
        ("fanout", "2", 6000),
        ("queue", "2", 3000),
    ] {
        let (ok, v) = bench(&[
            scen,
            "--msgs",
            "3000",
            "--subs",
            subs,
            "--url",
            &url(leaf.port),
            "--sub-url",
            &url(hub.port),
        ]);
        assert!(ok, "{scen}: {v}");
        assert_eq!(v["received"], received, "{scen}: {v}");
        let s = &v["servers"];
        assert_eq!(s["pub_server_pid"], leaf.child.id(), "{v}");
        assert_eq!(s["sub_server_pid"], hub.child.id(), "{v}");
        let (p, q) = (
            s["pub_server_cpu_s"].as_f64().unwrap(),
            s["sub_server_cpu_s"].as_f64().unwrap(),
        );
        let total = v["server_cpu_s"].as_f64().unwrap();
        assert!((total - (p + q)).abs() < 1e-9, "{v}");
    }
    // Without --sub-url the JSON is as before: no "servers".
    let (ok, v) = bench(&["pubsub", "--msgs", "1000", "--url", &url(hub.port)]);
    assert!(ok && v.get("servers").is_none(), "{v}");
    let _ = std::fs::remove_dir_all(&dir);
}
