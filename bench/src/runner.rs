//! What every scenario shares: the run configuration, the start gate, the
//! ready handshake between worker threads and the main thread, and the
//! progress line.

use crate::proto::{Conn, ServerUrl};
use crate::units::human;
use anyhow::{anyhow, bail, Result};
use clap::ValueEnum;
use serde::Serialize;
use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    /// Publishers only.
    Pub,
    /// Subscribers only (publish from elsewhere).
    Sub,
    /// One publisher, one subscriber.
    Pubsub,
    /// One publisher, N subscribers each receiving every message.
    Fanout,
    /// One publisher, N subscribers in one queue group.
    Queue,
    /// Request/reply latency; the responders are part of the bench.
    Reqrep,
    /// JetStream publishes to a fresh file stream, `--window` acks outstanding.
    JsPubAsync,
    /// JetStream publishes, each waiting for its PubAck; latency percentiles.
    JsPubSync,
    /// Pull-consume a pre-filled stream, `--fetch` per request, ack each.
    JsConsume,
    /// KV puts, each waiting for its PubAck; latency percentiles.
    KvPut,
    /// KV direct gets of `--keys` pre-filled keys; latency percentiles.
    KvGet,
    /// No server: fdatasync latency and sequential write bandwidth of `--dir`.
    DiskProbe,
    /// Memory per connection: `--subs` connections (default 10,000) with
    /// one subscription each, idle, then a burst of `--msgs` messages
    /// (default 20) of `--size` (default 32 KiB) to every one; the
    /// server's RSS idle, at the burst's peak, after it and 10 s / 20 s later.
    Conns,
}

impl Scenario {
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Pub => "pub",
            Scenario::Sub => "sub",
            Scenario::Pubsub => "pubsub",
            Scenario::Fanout => "fanout",
            Scenario::Queue => "queue",
            Scenario::Reqrep => "reqrep",
            Scenario::JsPubAsync => "js-pub-async",
            Scenario::JsPubSync => "js-pub-sync",
            Scenario::JsConsume => "js-consume",
            Scenario::KvPut => "kv-put",
            Scenario::KvGet => "kv-get",
            Scenario::DiskProbe => "disk-probe",
            Scenario::Conns => "conns",
        }
    }

    /// (publishers, subscribers) when not given on the command line.
    pub fn default_clients(self) -> (usize, usize) {
        match self {
            Scenario::Pub => (1, 0),
            Scenario::Sub => (0, 1),
            Scenario::Pubsub | Scenario::Reqrep => (1, 1),
            Scenario::Fanout | Scenario::Queue => (1, 4),
            Scenario::JsPubAsync | Scenario::JsPubSync => (1, 0),
            Scenario::JsConsume => (0, 1),
            Scenario::KvPut | Scenario::KvGet => (1, 0),
            Scenario::DiskProbe => (0, 0),
            Scenario::Conns => (1, 10_000),
        }
    }

    /// Message count when neither --msgs nor --duration is given: long
    /// enough for tick-granular CPU figures, short enough to repeat.
    pub fn default_msgs(self) -> u64 {
        match self {
            Scenario::Pub => 10_000_000,
            Scenario::Sub | Scenario::Fanout | Scenario::Queue => 1_000_000,
            Scenario::Pubsub => 2_000_000,
            Scenario::Reqrep => 20_000,
            Scenario::JsPubAsync => 200_000,
            Scenario::JsPubSync => 10_000,
            Scenario::JsConsume => 200_000,
            Scenario::KvPut | Scenario::KvGet => 20_000,
            Scenario::DiskProbe => 0,
            // Per connection.
            Scenario::Conns => 20,
        }
    }
}

/// One scenario's parameters, identical for both sides of a comparison.
#[derive(Clone, Debug)]
pub struct RunConfig {
    pub scenario: Scenario,
    pub size: usize,
    pub msgs: Option<u64>,
    pub duration: Option<Duration>,
    pub pubs: usize,
    pub subs: usize,
    pub subject: String,
    pub queue: String,
    /// Bytes per publisher write.
    pub batch: usize,
    /// Bytes per subscriber read.
    pub read_buf: usize,
    /// Give up on a subscriber that has been silent this long after the
    /// publishers finished.
    pub idle_timeout: Duration,
    /// Pause between "all subscribed" and the first publish, so interest
    /// can spread inside a multi-shard server.
    pub settle: Duration,
    /// Busy-poll instead of blocking reads (reqrep).
    pub spin: bool,
    /// JetStream stream the js-* scenarios create and delete.
    pub stream: String,
    /// JetStream PubAcks outstanding per publisher (1 for js-pub-sync).
    pub window: usize,
    /// js-consume: messages asked for per pull request.
    pub fetch: usize,
    /// kv-*: distinct keys, and the bucket (stream `KV_<bucket>`).
    pub keys: usize,
    pub bucket: String,
    pub connect_timeout: Duration,
    pub progress: bool,
}

/// The server one run talks to.
#[derive(Clone, Debug)]
pub struct Target {
    pub url: ServerUrl,
    pub pid: Option<u32>,
    pub label: String,
    /// `--sub-url`: subscribers connect here instead (pubsub, fanout,
    /// queue), e.g. the hub of a leaf link whose leaf takes the publishers.
    pub sub: Option<SubServer>,
}

/// The second server of a split run: where the subscribers are.
#[derive(Clone, Debug)]
pub struct SubServer {
    pub url: ServerUrl,
    pub pid: Option<u32>,
}

impl Target {
    /// Where subscribers connect: `--sub-url`, else the main URL.
    pub fn sub_url(&self) -> &ServerUrl {
        self.sub.as_ref().map_or(&self.url, |s| &s.url)
    }
}

/// Flags shared by a run's threads.
#[derive(Default)]
pub struct Ctl {
    pub abort: AtomicBool,
    pub pubs_done: AtomicBool,
}

impl Ctl {
    pub fn aborted(&self) -> bool {
        self.abort.load(Ordering::Relaxed)
    }
}

/// Holds publishers until every client is connected and subscribed.
pub struct Gate {
    state: Mutex<Option<bool>>,
    cv: Condvar,
}

impl Gate {
    pub fn new() -> Arc<Gate> {
        Arc::new(Gate {
            state: Mutex::new(None),
            cv: Condvar::new(),
        })
    }

    /// `go = false` releases the waiters with the news that the run is off.
    pub fn open(&self, go: bool) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        *s = Some(go);
        self.cv.notify_all();
    }

    pub fn wait(&self) -> bool {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(go) = *s {
                return go;
            }
            s = self.cv.wait(s).unwrap_or_else(|e| e.into_inner());
        }
    }
}

/// A worker's one-shot "I am connected and subscribed" (or why not).
pub struct Ready {
    tx: Option<Sender<ReadyMsg>>,
}

impl Ready {
    pub fn ok(&mut self) {
        if let Some(tx) = self.tx.take() {
            let _ = tx.send(Ok(()));
        }
    }

    fn fail(&mut self, e: &anyhow::Error) {
        if let Some(tx) = self.tx.take() {
            let _ = tx.send(Err(format!("{e:#}")));
        }
    }
}

/// A worker's stats plus the error that ended it early, if any.
pub struct Outcome<T> {
    pub stats: T,
    pub error: Option<String>,
}

/// Runs `body` on a named thread. Stats gathered before an error survive
/// it, so a run that fails half-way still reports what it measured.
pub fn spawn_worker<T, F>(name: String, tx: &Sender<ReadyMsg>, body: F) -> JoinHandle<Outcome<T>>
where
    T: Default + Send + 'static,
    F: FnOnce(&mut Ready, &mut T) -> Result<()> + Send + 'static,
{
    let mut ready = Ready {
        tx: Some(tx.clone()),
    };
    let label = name.clone();
    thread::Builder::new()
        .name(name)
        .spawn(move || {
            let mut stats = T::default();
            let r = body(&mut ready, &mut stats);
            let error = r.err().map(|e| {
                ready.fail(&e);
                format!("{label}: {e:#}")
            });
            ready.ok();
            Outcome { stats, error }
        })
        .expect("spawning a thread")
}

/// What a worker reports once: ready, or the reason it is not.
pub type ReadyMsg = Result<(), String>;

pub fn ready_channel() -> (Sender<ReadyMsg>, Receiver<ReadyMsg>) {
    mpsc::channel()
}

/// Waits for `n` workers to report ready; the first failure wins.
pub fn wait_ready(rx: &Receiver<ReadyMsg>, n: usize, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    for _ in 0..n {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(anyhow!(e)),
            Err(RecvTimeoutError::Timeout) => bail!("clients not ready within {timeout:?}"),
            Err(RecvTimeoutError::Disconnected) => bail!("a client thread vanished"),
        }
    }
    Ok(())
}

/// Joins whatever threads are still there; used on the way out of a failed run.
pub fn join_all<T>(handles: Vec<JoinHandle<Outcome<T>>>) -> Vec<Outcome<T>> {
    handles.into_iter().filter_map(|h| h.join().ok()).collect()
}

/// Sum of per-thread counters (one atomic per thread, so the hot paths
/// never share a cache line).
pub fn sum(counters: &[Arc<AtomicU64>]) -> u64 {
    counters.iter().map(|c| c.load(Ordering::Relaxed)).sum()
}

/// Share of `total` for worker `i` of `n`, remainder to the first ones.
pub fn split(total: u64, n: usize, i: usize) -> u64 {
    let n = n.max(1) as u64;
    total / n + u64::from((i as u64) < total % n)
}

/// Sends SUB and waits for the PONG that proves it is registered.
pub fn subscribe(
    conn: &mut Conn,
    subject: &str,
    queue: Option<&str>,
    sid: u64,
    timeout: Duration,
) -> Result<()> {
    let line = match queue {
        Some(q) => format!("SUB {subject} {q} {sid}\r\n"),
        None => format!("SUB {subject} {sid}\r\n"),
    };
    conn.write_all(line.as_bytes())?;
    conn.roundtrip(timeout)?;
    Ok(())
}

/// Fails early, with a clear reason, where the server would reject the size.
pub fn check_payload(conn: &Conn, size: usize) -> Result<()> {
    match conn.max_payload {
        Some(m) if size as u64 > m => bail!("--size {size} exceeds the server's max_payload {m}"),
        _ => Ok(()),
    }
}

/// One PUB frame with a payload of `size` bytes.
pub fn pub_frame(subject: &str, reply: Option<&str>, size: usize) -> Vec<u8> {
    let mut f = match reply {
        Some(r) => format!("PUB {subject} {r} {size}\r\n").into_bytes(),
        None => format!("PUB {subject} {size}\r\n").into_bytes(),
    };
    f.extend((0..size).map(|i| b'a' + (i % 26) as u8));
    f.extend_from_slice(b"\r\n");
    f
}

/// The progress line on stderr: rewritten in place on a terminal, one line
/// per second otherwise.
pub struct Progress {
    label: String,
    enabled: bool,
    tty: bool,
    start: Instant,
    last: Instant,
    last_count: u64,
    printed: bool,
}

impl Progress {
    pub fn new(label: &str, enabled: bool) -> Progress {
        let now = Instant::now();
        Progress {
            label: label.to_string(),
            enabled,
            tty: std::io::stderr().is_terminal(),
            start: now,
            last: now,
            last_count: 0,
            printed: false,
        }
    }

    /// `rate_count` is what the rate is computed from (deliveries, or sends).
    pub fn tick(&mut self, sent: u64, recv: u64, rate_count: u64) {
        let now = Instant::now();
        let dt = now.duration_since(self.last).as_secs_f64();
        if !self.enabled || dt < 1.0 {
            return;
        }
        let rate = rate_count.saturating_sub(self.last_count) as f64 / dt;
        self.last = now;
        self.last_count = rate_count;
        let line = format!(
            "[{}] {:>5.1}s  sent {:>8}  recv {:>8}  {:>8}/s",
            self.label,
            now.duration_since(self.start).as_secs_f64(),
            human(sent as f64),
            human(recv as f64),
            human(rate)
        );
        let mut e = std::io::stderr().lock();
        if self.tty {
            let _ = write!(e, "\r{line}\x1b[K");
        } else {
            let _ = writeln!(e, "{line}");
        }
        self.printed = true;
    }

    pub fn finish(&mut self) {
        if self.enabled && self.tty && self.printed {
            let _ = write!(std::io::stderr(), "\r\x1b[K");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_cover_total() {
        for (total, n) in [(10u64, 3usize), (2, 4), (0, 2), (1_000_000, 7)] {
            let parts: Vec<u64> = (0..n).map(|i| split(total, n, i)).collect();
            assert_eq!(parts.iter().sum::<u64>(), total);
            let (mn, mx) = (parts.iter().min().unwrap(), parts.iter().max().unwrap());
            assert!(mx - mn <= 1);
        }
    }

    #[test]
    fn frames() {
        assert_eq!(pub_frame("a.b", None, 3), b"PUB a.b 3\r\nabc\r\n");
        assert_eq!(pub_frame("s", Some("r"), 0), b"PUB s r 0\r\n\r\n");
    }

    #[test]
    fn gate_releases_waiters() {
        let g = Gate::new();
        let g2 = g.clone();
        let h = thread::spawn(move || g2.wait());
        g.open(true);
        assert!(h.join().unwrap());
    }

    #[test]
    fn worker_errors_reach_the_ready_channel() {
        let (tx, rx) = ready_channel();
        let h = spawn_worker::<u64, _>("w".into(), &tx, |_, st| {
            *st = 7;
            bail!("boom")
        });
        let err = wait_ready(&rx, 1, Duration::from_secs(5)).unwrap_err();
        assert!(err.to_string().contains("boom"));
        let o = h.join().unwrap();
        assert_eq!(o.stats, 7);
        assert!(o.error.unwrap().contains("boom"));
    }
}
