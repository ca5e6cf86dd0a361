//! The service-manager side (issue 21, systemd): the real binary started
//! the way systemd starts a `Type=notify` unit, with `NOTIFY_SOCKET`
//! naming a unix datagram socket this test binds. It must send READY=1
//! only once the client port accepts and every stored stream is served,
//! STATUS= lines while it gets there, RELOADING=1 (with MONOTONIC_USEC=)
//! then READY=1 around a SIGHUP reload, STOPPING=1 on SIGTERM and lame
//! duck, WATCHDOG=1 every half `WATCHDOG_USEC`; without `NOTIFY_SOCKET`
//! nothing changes. With stderr on the journal (`JOURNAL_STREAM`) log
//! lines carry no date and time of their own.
//!
//! The server's stderr goes to a file here (not a pipe), so what the log
//! holds when a notification arrives was written before it was sent.

mod common;

use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use common::{free_port, server_bin, shards};

/// A unix datagram socket standing in for systemd's notification socket.
struct NotifySocket {
    sock: UnixDatagram,
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl NotifySocket {
    fn bind() -> NotifySocket {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let sock = UnixDatagram::bind(&path).unwrap();
        NotifySocket {
            sock,
            path,
            _dir: dir,
        }
    }

    fn env(&self) -> (&'static str, String) {
        ("NOTIFY_SOCKET", self.path.to_str().unwrap().to_string())
    }

    /// The next datagram, or `None` after `wait`.
    fn recv(&self, wait: Duration) -> Option<String> {
        self.sock
            .set_read_timeout(Some(wait.max(Duration::from_millis(1))))
            .unwrap();
        let mut buf = vec![0u8; 4096];
        match self.sock.recv(&mut buf) {
            Ok(n) => Some(String::from_utf8_lossy(&buf[..n]).into_owned()),
            Err(_) => None,
        }
    }

    /// Datagrams up to and including the first that has the line `line`;
    /// panics (with what came) if none does within `wait`.
    fn until(&self, line: &str, wait: Duration) -> Vec<String> {
        let deadline = Instant::now() + wait;
        let mut got = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.recv(left) {
                Some(m) => {
                    let done = has(&m, line);
                    got.push(m);
                    if done {
                        return got;
                    }
                }
                None => panic!("no {line:?} within {wait:?}; got {got:#?}"),
            }
        }
    }

    /// Everything that arrives within `wait`.
    fn drain(&self, wait: Duration) -> Vec<String> {
        let deadline = Instant::now() + wait;
        let mut got = Vec::new();
        while let Some(m) = self.recv(deadline.saturating_duration_since(Instant::now())) {
            got.push(m);
            if Instant::now() >= deadline {
                break;
            }
        }
        got
    }
}

/// True when datagram `msg` has the line `line` (or a line starting with
/// `line` when it ends in `=`).
fn has(msg: &str, line: &str) -> bool {
    msg.lines().any(|l| {
        if line.ends_with('=') {
            l.starts_with(line)
        } else {
            l == line
        }
    })
}

fn statuses(msgs: &[String]) -> Vec<String> {
    msgs.iter()
        .flat_map(|m| m.lines())
        .filter_map(|l| l.strip_prefix("STATUS="))
        .map(str::to_string)
        .collect()
}

/// Our server, its stderr in a file, with exactly the environment given
/// (inherited `NOTIFY_SOCKET`, `WATCHDOG_*` and `JOURNAL_STREAM` removed).
struct Proc {
    child: Child,
    port: u16,
    log: PathBuf,
    dir: tempfile::TempDir,
}

impl Proc {
    fn spawn(extra: &[&str], env: &[(&str, String)]) -> Proc {
        Self::spawn_in(tempfile::tempdir().unwrap(), extra, env)
    }

    fn spawn_in(dir: tempfile::TempDir, extra: &[&str], env: &[(&str, String)]) -> Proc {
        let port = free_port();
        let log = dir.path().join(format!("stderr-{port}.log"));
        let child = spawn_logged(port, &log, extra, env);
        Proc {
            child,
            port,
            log,
            dir,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn signal(&self, sig: libc::c_int) {
        let rc = unsafe { libc::kill(self.child.id() as libc::pid_t, sig) };
        assert_eq!(rc, 0, "kill({}, {sig}) failed", self.child.id());
    }

    fn accepts(&self) -> bool {
        std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok()
    }

    fn wait_accepting(&self) {
        let deadline = Instant::now() + common::START_TIMEOUT;
        while !self.accepts() {
            assert!(
                Instant::now() < deadline,
                "server did not accept on {} in time\n--- log ---\n{}",
                self.port,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits (bounded) for the process to exit.
    fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + common::STEP;
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st;
            }
            assert!(
                Instant::now() < deadline,
                "server did not exit\n--- log ---\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn_logged(port: u16, log: &PathBuf, extra: &[&str], env: &[(&str, String)]) -> Child {
    let err = std::fs::File::create(log).unwrap();
    let mut cmd = Command::new(server_bin());
    cmd.args(["-a", "127.0.0.1", "-p", &port.to_string()])
        .args(["--shards", &shards()])
        .args(extra)
        .env_remove("NOTIFY_SOCKET")
        .env_remove("WATCHDOG_USEC")
        .env_remove("WATCHDOG_PID")
        .env_remove("JOURNAL_STREAM")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(err);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn().unwrap()
}

fn n_shards() -> usize {
    shards().parse().unwrap()
}

const READY_WAIT: Duration = Duration::from_secs(20);

#[test]
fn ready_only_once_the_client_port_accepts_with_status_on_the_way() {
    ours_only!("sd_notify");
    let n = NotifySocket::bind();
    let s = Proc::spawn(&[], &[n.env()]);
    let msgs = n.until("READY=1", READY_WAIT);
    assert!(s.accepts(), "READY=1 before the client port accepts");
    assert!(s.log().contains("Server is ready"), "{}", s.log());
    let st = statuses(&msgs);
    let shards = n_shards();
    assert!(
        st.iter()
            .any(|l| l == &format!("starting shards: 0 of {shards} up")),
        "{st:?}"
    );
    let ready = msgs.last().unwrap();
    assert!(has(ready, "STATUS="), "READY without STATUS: {ready:?}");
    assert!(
        statuses(std::slice::from_ref(ready))[0].starts_with("ready: clients on port"),
        "{ready:?}"
    );
    // Sent once, and no watchdog pings unless asked for.
    let after = n.drain(Duration::from_millis(500));
    assert!(!after.iter().any(|m| has(m, "READY=1")), "{after:?}");
    assert!(!after.iter().any(|m| has(m, "WATCHDOG=1")), "{after:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_only_after_stored_streams_are_recovered() {
    ours_only!("sd_notify");
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let store = store.to_str().unwrap().to_string();
    let args = ["-js", "-sd", store.as_str()];
    let mut s = Proc::spawn_in(dir, &args, &[]);
    s.wait_accepting();
    {
        let c = async_nats::connect(s.url()).await.unwrap();
        let js = async_nats::jetstream::new(c.clone());
        js.create_stream(async_nats::jetstream::stream::Config {
            name: "ORDERS".into(),
            subjects: vec!["orders.>".into()],
            ..Default::default()
        })
        .await
        .unwrap();
        for i in 0..3 {
            js.publish(format!("orders.{i}"), "x".into())
                .await
                .unwrap()
                .await
                .unwrap();
        }
    }
    s.signal(libc::SIGTERM);
    assert!(s.wait_exit().success(), "{}", s.log());

    // The same store, now under a service manager.
    let n = NotifySocket::bind();
    let dir = std::mem::replace(&mut s.dir, tempfile::tempdir().unwrap());
    let s = Proc::spawn_in(dir, &args, &[n.env()]);
    let msgs = n.until("READY=1", READY_WAIT);
    // By the time READY=1 was sent the stream was recovered and logged so.
    let log = s.log();
    assert!(log.contains("recovered 1 streams"), "{log}");
    assert!(s.accepts(), "READY=1 before the client port accepts");
    let st = statuses(&msgs);
    let shards = n_shards();
    assert!(
        st.iter()
            .any(|l| l == &format!("recovering streams: 0 of {shards} shards done")),
        "{st:?}"
    );
    if shards > 1 {
        assert!(
            st.iter().any(
                |l| l == &format!("recovering streams: {} of {shards} shards done", shards - 1)
            ),
            "{st:?}"
        );
    }
    assert!(st.last().unwrap().contains("1 streams recovered"), "{st:?}");
    // And it is served at once.
    let c = async_nats::connect(s.url()).await.unwrap();
    let js = async_nats::jetstream::new(c);
    let mut stream = tokio::time::timeout(Duration::from_secs(2), js.get_stream("ORDERS"))
        .await
        .expect("stream info in time")
        .unwrap();
    assert_eq!(stream.info().await.unwrap().state.messages, 3);
}

#[test]
fn reload_sends_reloading_then_ready_and_sigterm_sends_stopping() {
    ours_only!("sd_notify");
    let n = NotifySocket::bind();
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("server.conf");
    std::fs::write(&conf, "debug: false\n").unwrap();
    let conf_arg = conf.to_str().unwrap().to_string();
    let mut s = Proc::spawn_in(dir, &["-c", &conf_arg], &[n.env()]);
    n.until("READY=1", READY_WAIT);

    // A reload that applies.
    std::fs::write(&conf, "debug: true\n").unwrap();
    s.signal(libc::SIGHUP);
    let msgs = n.until("READY=1", common::STEP);
    let first = &msgs[0];
    assert!(has(first, "RELOADING=1"), "{msgs:?}");
    let usec: u64 = first
        .lines()
        .find_map(|l| l.strip_prefix("MONOTONIC_USEC="))
        .unwrap_or_else(|| panic!("RELOADING=1 without MONOTONIC_USEC=: {first:?}"))
        .parse()
        .unwrap();
    assert!(usec > 0);
    assert!(!has(first, "READY=1"), "{first:?}");
    assert!(
        s.log().contains("Reloaded server configuration"),
        "READY=1 before the reload was done\n{}",
        s.log()
    );
    assert!(
        statuses(&msgs).last().unwrap() == "ready: configuration reloaded",
        "{msgs:?}"
    );

    // A reload that is refused: still ready afterwards, and says why.
    std::fs::write(&conf, "this is { not valid\n").unwrap();
    s.signal(libc::SIGHUP);
    let msgs = n.until("READY=1", common::STEP);
    assert!(has(&msgs[0], "RELOADING=1"), "{msgs:?}");
    assert!(
        statuses(&msgs)
            .last()
            .unwrap()
            .starts_with("ready: configuration reload failed"),
        "{msgs:?}"
    );

    s.signal(libc::SIGTERM);
    let msgs = n.until("STOPPING=1", common::STEP);
    assert!(
        statuses(&msgs).last().unwrap().contains("stopping"),
        "{msgs:?}"
    );
    assert!(s.wait_exit().success(), "{}", s.log());
}

#[test]
fn watchdog_pings_while_shards_answer_and_lame_duck_sends_stopping() {
    ours_only!("sd_notify");
    let n = NotifySocket::bind();
    let s = Proc::spawn(&[], &[n.env(), ("WATCHDOG_USEC", "200000".to_string())]);
    n.until("READY=1", READY_WAIT);
    // Every 100 ms: at least 5 in 1.2 s even on a loaded machine.
    let msgs = n.drain(Duration::from_millis(1200));
    let pings = msgs.iter().filter(|m| has(m, "WATCHDOG=1")).count();
    assert!(pings >= 5, "{pings} pings: {msgs:?}");

    s.signal(libc::SIGUSR2);
    let msgs = n.until("STOPPING=1", common::STEP);
    assert!(
        statuses(&msgs).last().unwrap().contains("lame duck"),
        "{msgs:?}"
    );
}

#[test]
fn watchdog_for_another_pid_is_not_ours() {
    ours_only!("sd_notify");
    let n = NotifySocket::bind();
    let _s = Proc::spawn(
        &[],
        &[
            n.env(),
            ("WATCHDOG_USEC", "200000".to_string()),
            ("WATCHDOG_PID", "1".to_string()),
        ],
    );
    n.until("READY=1", READY_WAIT);
    let msgs = n.drain(Duration::from_millis(600));
    assert!(!msgs.iter().any(|m| has(m, "WATCHDOG=1")), "{msgs:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_notify_socket_nothing_changes() {
    ours_only!("sd_notify");
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("server.conf");
    std::fs::write(&conf, "debug: false\n").unwrap();
    let conf_arg = conf.to_str().unwrap().to_string();
    // A watchdog asked for, but nowhere to send to.
    let mut s = Proc::spawn_in(
        dir,
        &["-c", &conf_arg],
        &[("WATCHDOG_USEC", "200000".to_string())],
    );
    s.wait_accepting();
    let c = async_nats::connect(s.url()).await.unwrap();
    common::sync(&c).await;
    s.signal(libc::SIGHUP);
    let deadline = Instant::now() + common::STEP;
    while !s.log().contains("Reloaded server configuration") {
        assert!(Instant::now() < deadline, "{}", s.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    common::sync(&c).await;
    drop(c);
    s.signal(libc::SIGTERM);
    assert!(s.wait_exit().success(), "{}", s.log());
    let log = s.log();
    assert!(!log.contains("[ERR]") && !log.contains("[WRN]"), "{log}");
}

/// Log lines as the journal gets them when stderr is the journal stream,
/// and as nats-server prints them when `JOURNAL_STREAM` names another file.
#[test]
fn journal_lines_drop_the_timestamp_only_on_the_journal_stream() {
    ours_only!("log format");
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let log = dir.path().join("journal.log");
    // Create the file first so its device and inode are known, as systemd
    // knows its stream socket's.
    std::fs::File::create(&log).unwrap();
    let m = std::fs::metadata(&log).unwrap();
    let stream = format!("{}:{}", m.dev(), m.ino());
    let err = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
    let mut child = Command::new(server_bin())
        .args(["-a", "127.0.0.1", "-p", &port.to_string()])
        .args(["--shards", &shards()])
        .env_remove("NOTIFY_SOCKET")
        .env("JOURNAL_STREAM", &stream)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(err)
        .spawn()
        .unwrap();
    let pid = child.id();
    let deadline = Instant::now() + common::START_TIMEOUT;
    let text = loop {
        let t = std::fs::read_to_string(&log).unwrap();
        if t.contains("Server is ready") {
            break t;
        }
        assert!(Instant::now() < deadline, "{t}");
        std::thread::sleep(Duration::from_millis(20));
    };
    let _ = child.kill();
    let _ = child.wait();
    let first = text.lines().next().unwrap();
    assert_eq!(
        first,
        format!("<6>[{pid}] [INF] Starting broker-edge"),
        "{text}"
    );
    for l in text.lines() {
        assert!(
            l.starts_with(&format!("<6>[{pid}] [INF] ")),
            "{l:?}\n{text}"
        );
    }

    // Another file's device and inode: not the journal, timestamps stay.
    let other = Proc::spawn(&[], &[("JOURNAL_STREAM", "1:1".to_string())]);
    other.wait_accepting();
    let deadline = Instant::now() + common::START_TIMEOUT;
    while !other.log().contains("Server is ready") {
        assert!(Instant::now() < deadline, "{}", other.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    let text = other.log();
    let first = text.lines().next().unwrap();
    let prefix = format!("[{}] ", other.child.id());
    assert!(first.starts_with(&prefix), "{first:?}");
    // [pid] 2006/01/02 15:04:05.000000 [INF] Starting broker-edge
    let rest = &first[prefix.len()..];
    assert_eq!(&rest[4..5], "/", "{first:?}");
    assert!(rest.ends_with(" [INF] Starting broker-edge"), "{first:?}");
}

/// The unit passes `systemd-analyze verify` (with ExecStart pointed at the
/// binary under test) and rates "OK" or better in `systemd-analyze
/// security --offline` (issue 21). Skipped where systemd-analyze is not
/// installed.
#[test]
fn unit_verifies_and_rates_ok() {
    ours_only!("the unit is Broker Edge's");
    let Ok(out) = Command::new("systemd-analyze").arg("--version").output() else {
        eprintln!("systemd-analyze not installed: skipped");
        return;
    };
    if !out.status.success() {
        eprintln!("systemd-analyze unusable: skipped");
        return;
    }
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let unit = std::fs::read_to_string(root.join("systemd/broker-edge.service")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broker-edge.service");
    std::fs::write(
        &path,
        unit.replace("/usr/bin/broker-edge", &server_bin().display().to_string()),
    )
    .unwrap();
    let v = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        v.status.success(),
        "verify: {}{}",
        String::from_utf8_lossy(&v.stdout),
        String::from_utf8_lossy(&v.stderr)
    );
    let s = Command::new("systemd-analyze")
        .args(["security", "--offline=true"])
        .arg(&path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&s.stdout).to_string() + &String::from_utf8_lossy(&s.stderr);
    let line = text
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or_else(|| panic!("no rating: {text}"));
    assert!(
        line.contains(" OK") || line.contains("SAFE"),
        "the unit rates {line}"
    );
    // io_uring must stay allowed by the system call filter.
    assert!(unit.contains("io_uring_setup io_uring_enter io_uring_register"));
}
