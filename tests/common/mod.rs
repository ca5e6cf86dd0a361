//! Shared harness for the integration tests.
//!
//! Every test starts the real server binary on random ports and talks to it
//! over TCP. The binary is `BROKER_EDGE_BIN` when set (for example
//! `/usr/sbin/nats-server`, to check that a test encodes the reference's
//! behaviour), else the `broker-edge` binary Cargo built for this package.
//!
//! Not every test file uses every helper.
#![allow(dead_code)]

pub mod cli;
pub mod leaf;
pub mod retry;

use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};

/// How long a server gets to start accepting connections.
pub const START_TIMEOUT: Duration = Duration::from_secs(10);
/// Upper bound for any single network step of a test.
pub const STEP: Duration = Duration::from_secs(10);
/// Shard count given to our binary so that cross-shard paths are exercised
/// (`BROKER_EDGE_SHARDS` overrides the default of 4).
pub fn shards() -> String {
    std::env::var("BROKER_EDGE_SHARDS").unwrap_or_else(|_| "4".into())
}

/// Path of the server binary under test.
pub fn server_bin() -> PathBuf {
    match std::env::var_os("BROKER_EDGE_BIN") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from(env!("CARGO_BIN_EXE_broker-edge")),
    }
}

/// True when the binary under test is the reference nats-server.
pub fn is_reference() -> bool {
    is_reference_bin(&server_bin())
}

/// True when `bin` is a nats-server (by its file name).
pub fn is_reference_bin(bin: &Path) -> bool {
    bin.file_name()
        .map(|n| n.to_string_lossy().contains("nats-server"))
        .unwrap_or(false)
}

/// Skip the rest of a test that needs a feature only broker-edge has.
#[macro_export]
macro_rules! ours_only {
    ($why:expr) => {
        if $crate::common::is_reference() {
            eprintln!("skipped under the reference server: {}", $why);
            return;
        }
    };
}

/// A free TCP port on 127.0.0.1, never the same twice in this process.
///
/// Ports come from below the kernel's ephemeral range (32768+ here), so the
/// local ports of client sockets can never take one between the check and
/// the server's bind; each candidate is checked by binding it.
pub fn free_port() -> u16 {
    use rand::Rng;
    static USED: Mutex<Option<std::collections::HashSet<u16>>> = Mutex::new(None);
    let mut used = USED.lock().unwrap();
    let used = used.get_or_insert_with(Default::default);
    let mut rng = rand::thread_rng();
    for _ in 0..1000 {
        let port = rng.gen_range(20_000..32_000);
        if used.contains(&port) {
            continue;
        }
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            used.insert(port);
            return port;
        }
    }
    panic!("no free port found");
}

/// Inodes of TCP sockets in LISTEN state on local `port` (any address).
fn listening_inodes_on(port: u16) -> Vec<u64> {
    let mut out = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 10 || f[3] != "0A" {
                continue;
            }
            let local_port = f[1].rsplit(':').next().unwrap_or("");
            if u16::from_str_radix(local_port, 16).ok() == Some(port) {
                if let Ok(inode) = f[9].parse() {
                    out.push(inode);
                }
            }
        }
    }
    out
}

/// Socket inodes held open by process `pid`.
fn listening_inodes_of(pid: u32) -> std::collections::HashSet<u64> {
    let mut out = std::collections::HashSet::new();
    if let Ok(rd) = std::fs::read_dir(format!("/proc/{pid}/fd")) {
        for e in rd.flatten() {
            if let Ok(target) = std::fs::read_link(e.path()) {
                let t = target.to_string_lossy();
                if let Some(n) = t.strip_prefix("socket:[").and_then(|r| r.strip_suffix(']')) {
                    if let Ok(inode) = n.parse() {
                        out.insert(inode);
                    }
                }
            }
        }
    }
    out
}

/// Captured output of a child process, filled by a reader thread.
#[derive(Clone, Default)]
pub struct Captured(Arc<Mutex<String>>);

impl Captured {
    fn attach<R: Read + Send + 'static>(&self, r: R) -> std::thread::JoinHandle<()> {
        let buf = self.0.clone();
        std::thread::spawn(move || {
            let mut r = BufReader::new(r);
            let mut line = Vec::new();
            loop {
                line.clear();
                match r.read_until(b'\n', &mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => buf
                        .lock()
                        .unwrap()
                        .push_str(&String::from_utf8_lossy(&line)),
                }
            }
        })
    }

    pub fn text(&self) -> String {
        self.0.lock().unwrap().clone()
    }
}

/// A running server process; killed on drop.
pub struct Server {
    pub child: Child,
    pub port: u16,
    pub http_port: u16,
    /// Everything the process wrote to stderr (the reference logs there).
    pub stderr: Captured,
    /// Everything the process wrote to stdout.
    pub stdout: Captured,
    /// Directory for config files etc.; lives as long as the server.
    pub dir: tempfile::TempDir,
    pub args: Vec<String>,
    /// The binary this server runs (see [`Server::start_bin`]).
    pub bin: PathBuf,
    readers: Vec<std::thread::JoinHandle<()>>,
}

impl Server {
    /// Start on `127.0.0.1` with a random client port and a random
    /// monitoring port, plus `extra` arguments.
    pub fn start(extra: &[&str]) -> Server {
        Self::start_in(tempfile::tempdir().unwrap(), extra)
    }

    /// Like [`Server::start`], with a config file holding `conf` (`-c`).
    pub fn start_with_config(conf: &str, extra: &[&str]) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("server.conf");
        std::fs::write(&path, conf).unwrap();
        let mut args = vec!["-c", path.to_str().unwrap()];
        args.extend_from_slice(extra);
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let args: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
        Self::start_in(dir, &args)
    }

    fn start_in(dir: tempfile::TempDir, extra: &[&str]) -> Server {
        Self::start_in_bin(&server_bin(), dir, extra)
    }

    fn start_in_bin(bin: &Path, dir: tempfile::TempDir, extra: &[&str]) -> Server {
        let mut dir = dir;
        let mut attempt = 0;
        loop {
            let port = free_port();
            let http_port = free_port();
            let mut args = listen_args(port, http_port);
            args.extend(extra.iter().map(|s| s.to_string()));
            match Self::launch_bin(bin, dir, args, Some(port), http_port, &[]) {
                Ok(server) => return server,
                // Another process (other test runs share this machine) took
                // a port between our check and the server's bind: new ports.
                Err((d, msg)) if attempt < 3 && msg.to_lowercase().contains("in use") => {
                    dir = d;
                    attempt += 1;
                }
                Err((_, msg)) => panic!("{msg}"),
            }
        }
    }

    /// Spawn the binary with exactly `args` (plus `--shards` for ours) and
    /// wait until `port` on 127.0.0.1 accepts connections. With `port`
    /// `None` (random port, `-p -1`), the port is read from the log line
    /// `Listening for client connections on HOST:PORT`.
    pub fn launch(
        dir: tempfile::TempDir,
        args: Vec<String>,
        port: Option<u16>,
        http_port: u16,
    ) -> Server {
        Self::launch_inner(dir, args, port, http_port, &[])
            .unwrap_or_else(|(_, msg)| panic!("{msg}"))
    }

    /// [`Server::launch`], handing back the directory and the failure
    /// instead of panicking when the server does not come up.
    fn launch_inner(
        dir: tempfile::TempDir,
        args: Vec<String>,
        port: Option<u16>,
        http_port: u16,
        env: &[(&str, &str)],
    ) -> Result<Server, (tempfile::TempDir, String)> {
        Self::launch_bin(&server_bin(), dir, args, port, http_port, env)
    }

    /// [`Server::launch_inner`] for a given binary.
    fn launch_bin(
        bin: &Path,
        dir: tempfile::TempDir,
        mut args: Vec<String>,
        port: Option<u16>,
        http_port: u16,
        env: &[(&str, &str)],
    ) -> Result<Server, (tempfile::TempDir, String)> {
        let has_shards = args
            .iter()
            .any(|a| a.trim_start_matches('-').starts_with("shards"));
        if !is_reference_bin(bin) && !has_shards {
            args.push("--shards".into());
            args.push(shards());
            // Spread clients from the first one, so that few-client tests
            // cross shards too.
            args.push("--shard_fill".into());
            args.push("1".into());
        }
        let mut child = Command::new(bin)
            .args(&args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {bin:?}: {e}"));
        let stderr = Captured::default();
        let stdout = Captured::default();
        let readers = vec![
            stderr.attach(child.stderr.take().unwrap()),
            stdout.attach(child.stdout.take().unwrap()),
        ];
        let mut server = Server {
            child,
            port: port.unwrap_or(0),
            http_port,
            stderr,
            stdout,
            dir,
            args,
            bin: bin.to_path_buf(),
            readers,
        };
        if port.is_none() {
            server.port = server.port_from_log();
        }
        match server.wait_accepting(server.port) {
            Ok(()) => Ok(server),
            Err(msg) => {
                let dir = std::mem::replace(&mut server.dir, tempfile::tempdir().unwrap());
                Err((dir, msg))
            }
        }
    }

    fn port_from_log(&mut self) -> u16 {
        let needle = "Listening for client connections on ";
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let log = self.log();
            if let Some(line) = log.lines().find(|l| l.contains(needle)) {
                let addr = line.split(needle).nth(1).unwrap().trim();
                let port = addr.rsplit(':').next().unwrap();
                return port
                    .parse()
                    .unwrap_or_else(|_| panic!("no port in log line {line:?}"));
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                self.drain_output();
                panic!(
                    "server exited early ({status})\n--- log ---\n{}",
                    self.log()
                );
            }
            if Instant::now() > deadline {
                panic!("no listening line in the log\n--- log ---\n{log}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Wait until this child process itself listens on `port` (and on the
    /// monitoring port, when one was given). Checking socket ownership in
    /// /proc, rather than just connecting, means a stray listener from
    /// another process can never pass for our server, and leaves no probe
    /// connection behind to skew connection counts.
    fn wait_accepting(&mut self, port: u16) -> Result<(), String> {
        let deadline = Instant::now() + START_TIMEOUT;
        let mut ports = vec![port];
        if self.http_port != 0 {
            ports.push(self.http_port);
        }
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                self.drain_output();
                return Err(format!(
                    "server exited early ({status}) with args {:?}\n--- log ---\n{}",
                    self.args,
                    self.log()
                ));
            }
            let owned = listening_inodes_of(self.pid());
            if ports
                .iter()
                .all(|p| listening_inodes_on(*p).iter().any(|i| owned.contains(i)))
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "server did not listen on {ports:?} within {START_TIMEOUT:?}; args {:?}\n--- log ---\n{}",
                    self.args,
                    self.log()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// After the process has exited: wait for the output readers to reach
    /// end of file, so that the log is complete.
    fn drain_output(&mut self) {
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
    }

    /// stderr and stdout so far (stderr first).
    pub fn log(&self) -> String {
        let mut s = self.stderr.text();
        s.push_str(&self.stdout.text());
        s
    }

    /// Wait (bounded) until the log contains `needle`; panics with the log.
    pub async fn wait_log(&self, needle: &str, within: Duration) {
        let deadline = Instant::now() + within;
        while !self.log().contains(needle) {
            if Instant::now() > deadline {
                panic!(
                    "log never contained {needle:?} within {within:?}; args {:?}\n--- log ---\n{}",
                    self.args,
                    self.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Wait (bounded) for the process to exit.
    pub async fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                self.drain_output();
                return st;
            }
            if Instant::now() > deadline {
                panic!(
                    "server did not exit within {within:?}\n--- log ---\n{}",
                    self.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub fn addr(&self) -> SocketAddr {
        ([127, 0, 0, 1], self.port).into()
    }

    /// Connect the async-nats client with default options.
    pub async fn client(&self) -> async_nats::Client {
        self.client_with(async_nats::ConnectOptions::new()).await
    }

    pub async fn client_with(&self, opts: async_nats::ConnectOptions) -> async_nats::Client {
        tokio::time::timeout(STEP, opts.connect(self.url()))
            .await
            .unwrap_or_else(|_| panic!("connect timed out\n--- log ---\n{}", self.log()))
            .unwrap_or_else(|e| panic!("connect failed: {e}\n--- log ---\n{}", self.log()))
    }

    /// Open a raw protocol connection (INFO already read).
    pub async fn raw(&self) -> Raw {
        Raw::connect(self.addr()).await
    }

    /// GET a monitoring path; returns (status, body).
    pub async fn http(&self, path: &str) -> (u16, String) {
        http_get(([127, 0, 0, 1], self.http_port).into(), path).await
    }

    /// GET a monitoring path that must answer 200 with JSON.
    pub async fn json(&self, path: &str) -> serde_json::Value {
        let (status, body) = self.http(path).await;
        assert_eq!(status, 200, "GET {path} -> {status}: {body}");
        serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("GET {path}: body is not JSON ({e}): {body}"))
    }

    /// Send a signal to the server process.
    pub fn signal(&self, sig: libc::c_int) {
        let rc = unsafe { libc::kill(self.pid() as libc::pid_t, sig) };
        assert_eq!(rc, 0, "kill({}, {sig}) failed", self.pid());
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Run the server binary to completion (for `-v`, `-h`, `--signal`, fatal
/// startup errors). Returns (status, stdout, stderr); bounded by `within`.
pub async fn run_to_exit(args: &[&str], within: Duration) -> (ExitStatus, String, String) {
    let mut cmd = tokio::process::Command::new(server_bin());
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let child = cmd.spawn().expect("spawn server binary");
    let out = tokio::time::timeout(within, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{:?} {args:?} did not exit within {within:?}", server_bin()))
        .unwrap();
    (
        out.status,
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Minimal HTTP/1.1 GET with `Connection: close`; handles chunked bodies.
pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let fut = async {
        let mut s = tokio::net::TcpStream::connect(addr).await?;
        let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await?;
        Ok::<_, std::io::Error>(buf)
    };
    let buf = tokio::time::timeout(STEP, fut)
        .await
        .unwrap_or_else(|_| panic!("GET {path} on {addr} timed out"))
        .unwrap_or_else(|e| panic!("GET {path} on {addr}: {e}"));
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("GET {path}: no header end in {text:?}"));
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("GET {path}: bad status line in {head:?}"));
    let chunked = head.lines().any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_string()
    };
    (status, body)
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let size = usize::from_str_radix(size.split(';').next().unwrap().trim(), 16).unwrap_or(0);
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        s = rest[size..].trim_start_matches("\r\n");
    }
    out
}

/// A raw client-protocol connection for wire-level tests.
pub struct Raw {
    pub reader: tokio::io::BufReader<tokio::net::tcp::OwnedReadHalf>,
    pub writer: tokio::net::tcp::OwnedWriteHalf,
    /// The INFO JSON the server greeted with.
    pub info: serde_json::Value,
    /// Tail of what was sent and received, for failure messages.
    trail: String,
}

impl Raw {
    pub async fn connect(addr: SocketAddr) -> Raw {
        let s = tokio::time::timeout(STEP, tokio::net::TcpStream::connect(addr))
            .await
            .expect("raw connect timed out")
            .expect("raw connect");
        s.set_nodelay(true).unwrap();
        let (r, w) = s.into_split();
        let mut raw = Raw {
            reader: tokio::io::BufReader::new(r),
            writer: w,
            info: serde_json::Value::Null,
            trail: String::new(),
        };
        let line = raw.line().await.expect("connection closed before INFO");
        raw.info = parse_info(&line);
        raw
    }

    pub async fn send(&mut self, data: &str) {
        self.send_bytes(data.as_bytes()).await
    }

    pub async fn send_bytes(&mut self, data: &[u8]) {
        self.note(">> ", data);
        tokio::time::timeout(STEP, self.writer.write_all(data))
            .await
            .expect("raw write timed out")
            .expect("raw write");
    }

    /// Next protocol line without CRLF; `None` on EOF or connection error.
    pub async fn line(&mut self) -> Option<String> {
        let mut buf = Vec::new();
        match tokio::time::timeout(STEP, self.reader.read_until(b'\n', &mut buf)).await {
            Err(_) => panic!(
                "no line from server within {STEP:?}; recent traffic:\n{}",
                self.trail
            ),
            Ok(Err(_)) | Ok(Ok(0)) => None,
            Ok(Ok(_)) => {
                self.note("<< ", &buf);
                let s = String::from_utf8_lossy(&buf);
                Some(s.trim_end_matches(['\r', '\n']).to_string())
            }
        }
    }

    fn note(&mut self, dir: &str, data: &[u8]) {
        let text = String::from_utf8_lossy(&data[..data.len().min(200)]);
        self.trail.push_str(dir);
        self.trail.push_str(&text.escape_debug().to_string());
        self.trail.push('\n');
        if self.trail.len() > 2000 {
            let cut = self.trail.len() - 2000;
            let cut = (cut..self.trail.len())
                .find(|&i| self.trail.is_char_boundary(i))
                .unwrap();
            self.trail.drain(..cut);
        }
    }

    /// Next line that is not a PING (answers PINGs with PONG).
    pub async fn next(&mut self) -> Option<String> {
        loop {
            let l = self.line().await?;
            if l == "PING" {
                self.send("PONG\r\n").await;
                continue;
            }
            return Some(l);
        }
    }

    /// Read exactly `n` bytes (a message payload plus CRLF, say).
    pub async fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut buf = vec![0; n];
        tokio::time::timeout(STEP, self.reader.read_exact(&mut buf))
            .await
            .expect("payload read timed out")
            .expect("payload read");
        buf
    }

    /// Send `CONNECT {json}` then PING, and expect the PONG (skipping +OK).
    pub async fn handshake(&mut self, connect_json: &str) {
        self.send(&format!("CONNECT {connect_json}\r\nPING\r\n"))
            .await;
        loop {
            match self.next().await.as_deref() {
                Some("PONG") => return,
                Some("+OK") => continue,
                other => panic!("expected PONG after CONNECT, got {other:?}"),
            }
        }
    }

    /// True once the server has closed the connection (reads and discards
    /// whatever is still buffered). Panics if it stays open past `within`.
    pub async fn expect_closed(&mut self, within: Duration) {
        let fut = async {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                match self.reader.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => continue,
                }
            }
        };
        tokio::time::timeout(within, fut)
            .await
            .expect("server did not close the connection");
    }
}

pub fn parse_info(line: &str) -> serde_json::Value {
    let json = line
        .strip_prefix("INFO ")
        .unwrap_or_else(|| panic!("expected INFO line, got {line:?}"));
    serde_json::from_str(json).unwrap_or_else(|e| panic!("INFO is not JSON ({e}): {json}"))
}

/// Read a ports file or pid file path helper: files in `dir` ending in `suffix`.
pub fn files_ending(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| p.to_string_lossy().ends_with(suffix))
                .collect()
        })
        .unwrap_or_default()
}

/// Await a future with the standard step timeout and a label.
pub async fn within<T>(what: &str, fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(STEP, fut)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}

static SYNC_SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// A real round trip through the server for an echo-on client: everything
/// the client sent before (SUB, UNSUB, PUB) has been processed once this
/// returns. (`async_nats::Client::flush` only flushes the socket.)
pub async fn sync(c: &async_nats::Client) {
    use futures::StreamExt;
    let n = SYNC_SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let subject = format!("_sync.{}.{n}", std::process::id());
    let mut sub = c.subscribe(subject.clone()).await.expect("sync subscribe");
    c.publish(subject, "sync".into())
        .await
        .expect("sync publish");
    within("round trip (sync)", sub.next())
        .await
        .expect("sync subscription ended");
    sub.unsubscribe().await.expect("sync unsubscribe");
}

/// Round trip for a client that may have echo off: a request that nobody
/// answers comes back as a no-responders status from the server itself.
pub async fn sync_no_echo(c: &async_nats::Client) {
    let n = SYNC_SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let subject = format!("_sync_nobody.{}.{n}", std::process::id());
    let err = within("round trip (no responders)", c.request(subject, "".into()))
        .await
        .expect_err("nobody should answer");
    assert_eq!(err.kind(), async_nats::RequestErrorKind::NoResponders);
}

/// Next message from a subscription if one is already queued client-side
/// (ignores tokio's cooperative budget, which would fake "nothing queued").
pub fn queued<S: futures::Stream + Unpin>(s: &mut S) -> Option<S::Item> {
    use futures::{FutureExt, StreamExt};
    tokio::task::unconstrained(s.next())
        .now_or_never()
        .flatten()
}

// ---------------------------------------------------------------------------
// Helpers added for tests/auth.rs, tests/reload.rs, tests/python_clients.rs.
// ---------------------------------------------------------------------------

/// Client and monitoring listeners on loopback at the given ports.
fn listen_args(port: u16, http_port: u16) -> Vec<String> {
    vec![
        "-a".into(),
        "127.0.0.1".into(),
        "-p".into(),
        port.to_string(),
        "-m".into(),
        http_port.to_string(),
    ]
}

impl Server {
    /// Like [`Server::start_with_config`], with extra environment variables
    /// for the server process (config files read `$VAR` from the
    /// environment when no variable of that name is defined in the file).
    pub fn start_with_config_env(conf: &str, env: &[(&str, &str)], extra: &[&str]) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("server.conf");
        std::fs::write(&path, conf).unwrap();
        let port = free_port();
        let http_port = free_port();
        let mut args = listen_args(port, http_port);
        args.extend(["-c".into(), path.to_str().unwrap().into()]);
        args.extend(extra.iter().map(|s| s.to_string()));
        Self::launch_env(dir, args, Some(port), http_port, env)
    }

    /// Like [`Server::start`], with extra environment variables for the
    /// server process.
    pub fn start_env(extra: &[&str], env: &[(&str, &str)]) -> Server {
        let port = free_port();
        let http_port = free_port();
        let mut args = listen_args(port, http_port);
        args.extend(extra.iter().map(|s| s.to_string()));
        Self::launch_env(
            tempfile::tempdir().unwrap(),
            args,
            Some(port),
            http_port,
            env,
        )
    }

    /// [`Server::launch`] with extra environment variables for the child.
    pub fn launch_env(
        dir: tempfile::TempDir,
        args: Vec<String>,
        port: Option<u16>,
        http_port: u16,
        env: &[(&str, &str)],
    ) -> Server {
        Self::launch_inner(dir, args, port, http_port, env)
            .unwrap_or_else(|(_, msg)| panic!("{msg}"))
    }

    /// Path of the config file written by `start_with_config*`.
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("server.conf")
    }
}

// ---------------------------------------------------------------------------
// Helpers added for the JetStream tests (jetstream_*.rs, python_clients.rs).
// ---------------------------------------------------------------------------

/// A tool installed by `scripts/install-refs` under `target/refs/bin`.
fn ref_tool(name: &str) -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target/refs/bin")
        .join(name);
    assert!(
        p.is_file(),
        "{} is missing: run scripts/install-refs (builds the pinned nats-server 2.15.3 and nats CLI 0.5.0)",
        p.display()
    );
    p
}

/// The pinned reference server, nats-server v2.15.3 (JetStream behaviour
/// is checked against this one, not Debian's 2.9).
pub fn ref_server_2_15() -> PathBuf {
    ref_tool("nats-server-2.15.3")
}

/// The pinned `nats` CLI (natscli v0.5.0).
pub fn nats_cli() -> PathBuf {
    ref_tool("nats")
}

/// The broker-edge binary Cargo built, whatever `BROKER_EDGE_BIN` says.
pub fn our_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_broker-edge"))
}

impl Server {
    /// [`Server::start`] with a specific binary, regardless of
    /// `BROKER_EDGE_BIN` (our binary still gets `--shards`).
    pub fn start_bin(bin: &Path, extra: &[&str]) -> Server {
        Self::start_in_bin(bin, tempfile::tempdir().unwrap(), extra)
    }

    /// [`Server::start`] with JetStream on a fresh store directory
    /// (`-js -sd <dir>/store`, inside the server's own temp dir).
    pub fn start_js(extra: &[&str]) -> Server {
        Self::start_js_bin(&server_bin(), extra)
    }

    /// [`Server::start_js`] with a specific binary.
    pub fn start_js_bin(bin: &Path, extra: &[&str]) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("store");
        let store = store.to_str().unwrap().to_string();
        let mut args = vec!["-js", "-sd", store.as_str()];
        args.extend_from_slice(extra);
        Self::start_in_bin(bin, dir, &args)
    }

    /// The JetStream store directory given by [`Server::start_js`].
    pub fn store_dir(&self) -> PathBuf {
        self.dir.path().join("store")
    }

    /// Stop the process with SIGTERM (bounded wait, then SIGKILL) and wait
    /// for it to exit.
    pub fn stop(&mut self) -> ExitStatus {
        if let Some(st) = self.child.try_wait().unwrap() {
            self.drain_output();
            return st;
        }
        self.signal(libc::SIGTERM);
        let deadline = Instant::now() + STEP;
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                self.drain_output();
                return st;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!(
                    "server did not exit within {STEP:?} of SIGTERM\n--- log ---\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stop (SIGTERM) and start the same binary again with the same
    /// arguments: same ports, same config and store directory. The log
    /// keeps the earlier run's output.
    pub fn restart(&mut self) {
        self.restart_edit(|_| {});
    }

    /// [`Server::restart`] with the argument list changed by `edit` first
    /// (for example another `--shards` count).
    pub fn restart_edit(&mut self, edit: impl FnOnce(&mut Vec<String>)) {
        self.stop();
        edit(&mut self.args);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let mut child = Command::new(&self.bin)
                .args(&self.args)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap_or_else(|e| panic!("spawn {:?}: {e}", self.bin));
            self.readers = vec![
                self.stderr.attach(child.stderr.take().unwrap()),
                self.stdout.attach(child.stdout.take().unwrap()),
            ];
            self.child = child;
            match self.wait_accepting(self.port) {
                Ok(()) => return,
                // The old socket can linger briefly: try again while the
                // new process failed to bind.
                Err(msg) if Instant::now() < deadline && msg.to_lowercase().contains("in use") => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    self.drain_output();
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(msg) => panic!("restart failed: {msg}"),
            }
        }
    }
}

/// A `$JS.API` request with a JSON (or empty) body; the reply parsed as
/// JSON. Panics on no responders, time-out or a non-JSON reply.
pub async fn js_api(c: &async_nats::Client, subject: &str, body: &str) -> serde_json::Value {
    let msg = within(
        &format!("JS API request {subject}"),
        c.request(subject.to_string(), body.to_string().into()),
    )
    .await
    .unwrap_or_else(|e| panic!("JS API request {subject} {body}: {e}"));
    serde_json::from_slice(&msg.payload).unwrap_or_else(|e| {
        panic!(
            "JS API reply to {subject} is not JSON ({e}): {:?}",
            String::from_utf8_lossy(&msg.payload)
        )
    })
}

/// Publish with a reply subject (and optional headers) to a stream subject
/// and return the PubAck JSON (`{"stream":..,"seq":..}` or `{"error":..}`).
pub async fn js_publish(
    c: &async_nats::Client,
    subject: &str,
    headers: &[(&str, &str)],
    payload: &str,
) -> serde_json::Value {
    let fut = async {
        if headers.is_empty() {
            return c
                .request(subject.to_string(), payload.to_string().into())
                .await;
        }
        let mut h = async_nats::HeaderMap::new();
        for (k, v) in headers {
            h.insert(*k, *v);
        }
        c.request_with_headers(subject.to_string(), h, payload.to_string().into())
            .await
    };
    let msg = within(&format!("publish to {subject}"), fut)
        .await
        .unwrap_or_else(|e| panic!("publish to {subject}: {e}"));
    serde_json::from_slice(&msg.payload).unwrap_or_else(|e| {
        panic!(
            "PubAck for {subject} is not JSON ({e}): {:?}",
            String::from_utf8_lossy(&msg.payload)
        )
    })
}

/// True when `python3 -c 'import nats'` works (nats-py is installed).
pub fn have_nats_py() -> bool {
    Command::new("python3")
        .args(["-c", "import nats"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Runs `tests/py/<script>` with `args`; panics with its output and the
/// servers' logs unless it exits 0 within `limit`.
pub async fn run_py_script(script: &str, args: &[String], servers: &[&Server], limit: Duration) {
    let path = format!("{}/tests/py/{script}", env!("CARGO_MANIFEST_DIR"));
    let child = tokio::process::Command::new("python3")
        .arg(&path)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn python3");
    let logs = || {
        servers
            .iter()
            .map(|s| s.log())
            .collect::<Vec<_>>()
            .join("\n--- next server ---\n")
    };
    let out = tokio::time::timeout(limit, child.wait_with_output())
        .await
        .unwrap_or_else(|_| {
            panic!(
                "{script} did not finish within {limit:?}\n--- server log ---\n{}",
                logs()
            )
        })
        .expect("wait for python3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{script} {args:?} failed ({})\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}\n--- server log ---\n{}",
        out.status,
        logs()
    );
    eprintln!("{stdout}");
}

// ---------------------------------------------------------------------------
// Helpers added for tests/jetstream_crash.rs.
// ---------------------------------------------------------------------------

impl Server {
    /// Kill the process with SIGKILL (no shutdown of any kind) and reap it.
    /// A following [`Server::restart`] starts it again on the same ports and
    /// store directory without sending anything else to the dead process.
    pub fn crash(&mut self) -> ExitStatus {
        if let Some(st) = self.child.try_wait().unwrap() {
            self.drain_output();
            return st;
        }
        self.signal(libc::SIGKILL);
        let st = self.child.wait().expect("wait for the killed server");
        self.drain_output();
        st
    }
}
