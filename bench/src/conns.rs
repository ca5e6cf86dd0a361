//! `conns`: memory per connection, idle and around a burst.
//!
//! Opens `--subs` connections (default 10,000), each CONNECT + one SUB on
//! its own subject + PING/PONG, and reads the server's resident memory
//! (VmRSS) before connecting, idle, during a burst, right after the burst
//! has been read, and 10 s and 20 s later. The burst: every connection's
//! subject receives `--msgs` messages (default 20) of `--size` bytes
//! (default 32 KiB), published from one extra connection round by round
//! (one message to every subject per round, at most two rounds ahead of
//! what the subscribers have read, so the burst tests the servers' buffers
//! and not how long they tolerate a reader that cannot keep up). Reader
//! threads (epoll) read every message on every connection.
//!
//! Figures are KiB per connection: (RSS − RSS before connecting) / N.
//!
//! Descriptors: the generator raises its own RLIMIT_NOFILE (soft, and the
//! hard limit too when allowed) before it spawns `--spawn-a/-b` servers,
//! which inherit it; it checks a running server's limit in
//! /proc/PID/limits and says when it is too low for N connections.

use crate::proto::{Conn, Event, Parser, ServerUrl};
use crate::runner::{RunConfig, Target};
use crate::stats::{median, print_rows, ratio};
use anyhow::{anyhow, bail, Context, Result};
use serde::Serialize;
use std::io::{ErrorKind, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// Rounds the publisher may run ahead of the subscribers' reading.
const AHEAD: u64 = 2;
/// Connections opened before their handshakes are read (keeps the
/// servers' accept queues from overflowing).
const OPEN_BATCH: usize = 256;
/// Reader threads (epoll each).
const READERS: usize = 2;
/// Pause between "all subscribed" and the idle reading.
const IDLE_SETTLE: Duration = Duration::from_secs(2);
/// The readings after the burst, counted from the moment it was read.
const AFTER: [Duration; 2] = [Duration::from_secs(10), Duration::from_secs(20)];

/// Descriptors one connection may cost a server (Broker Edge holds two per
/// client socket: its reader's and its writer's).
const FDS_PER_CONN_SERVER: u64 = 2;

/// Raises this process's RLIMIT_NOFILE for `conns` connections, before any
/// server is spawned (spawned servers inherit it). Returns a note to print
/// when the limit stays short of what a server may need.
pub fn raise_nofile(conns: usize) -> Result<Option<String>> {
    let own = conns as u64 + 64;
    let server = conns as u64 * FDS_PER_CONN_SERVER + 1024;
    // SAFETY: getrlimit/setrlimit read and write the struct we own.
    let mut lim: libc::rlimit = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(std::io::Error::last_os_error()).context("getrlimit(RLIMIT_NOFILE)");
    }
    let (soft, hard) = (lim.rlim_cur as u64, lim.rlim_max as u64);
    let (new_soft, new_hard) = nofile_plan(soft, hard, server);
    if new_soft != soft || new_hard != hard {
        let mut want = libc::rlimit {
            rlim_cur: new_soft as libc::rlim_t,
            rlim_max: new_hard as libc::rlim_t,
        };
        // Raising the hard limit needs privilege; fall back to the hard one.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &want) } != 0 {
            want.rlim_max = hard as libc::rlim_t;
            want.rlim_cur = new_soft.min(hard) as libc::rlim_t;
            if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &want) } != 0 {
                return Err(std::io::Error::last_os_error()).context("setrlimit(RLIMIT_NOFILE)");
            }
        }
        lim = want;
    }
    let got = lim.rlim_cur as u64;
    if got < own {
        bail!(
            "RLIMIT_NOFILE is {got} (hard {}): {conns} connections need at least {own} \
             descriptors here; raise the hard limit (ulimit -Hn, LimitNOFILE, or run as root) \
             or lower --subs",
            lim.rlim_max as u64
        );
    }
    Ok((got < server).then(|| {
        format!(
            "note: RLIMIT_NOFILE is {got}; a server spawned from here inherits it, and one \
             that holds {FDS_PER_CONN_SERVER} descriptors per connection needs {server} \
             for {conns} connections"
        )
    }))
}

/// (soft, hard) to ask for: soft up to `need` (never lowered), hard
/// raised to match when it is below.
fn nofile_plan(soft: u64, hard: u64, need: u64) -> (u64, u64) {
    let infinite = hard == libc::RLIM_INFINITY;
    let new_hard = if infinite { hard } else { hard.max(need) };
    (soft.max(need), new_hard)
}

/// The soft "Max open files" of a running process, from /proc/PID/limits.
fn process_nofile(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/limits")).ok()?;
    parse_limits_nofile(&text)
}

fn parse_limits_nofile(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    let soft = line["Max open files".len()..].split_whitespace().next()?;
    if soft == "unlimited" {
        return Some(u64::MAX);
    }
    soft.parse().ok()
}

fn rss_kib(pid: u32) -> Result<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    crate::procstat::parse_status_rss_kib(&text)
        .0
        .ok_or_else(|| anyhow!("no VmRSS in /proc/{pid}/status"))
}

/// KiB per connection at each reading.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct PerConn {
    pub idle: Option<f64>,
    pub burst_peak: Option<f64>,
    pub after_burst: Option<f64>,
    pub after_10s: Option<f64>,
    pub after_20s: Option<f64>,
}

impl PerConn {
    fn of(base: u64, n: usize, r: &Readings) -> PerConn {
        let per = |v: Option<u64>| v.map(|v| (v as f64 - base as f64) / n.max(1) as f64);
        PerConn {
            idle: per(Some(r.idle)),
            burst_peak: per(r.burst_peak),
            after_burst: per(r.after_burst),
            after_10s: per(r.after[0]),
            after_20s: per(r.after[1]),
        }
    }

    fn ratio(b: &PerConn, a: &PerConn) -> PerConn {
        PerConn {
            idle: ratio(b.idle, a.idle),
            burst_peak: ratio(b.burst_peak, a.burst_peak),
            after_burst: ratio(b.after_burst, a.after_burst),
            after_10s: ratio(b.after_10s, a.after_10s),
            after_20s: ratio(b.after_20s, a.after_20s),
        }
    }
}

/// Server RSS in KiB at each point (absolute).
#[derive(Debug, Clone, Default, Serialize)]
struct Readings {
    idle: u64,
    burst_peak: Option<u64>,
    after_burst: Option<u64>,
    after: [Option<u64>; 2],
}

#[derive(Debug, Clone, Serialize)]
pub struct ConnsResult {
    pub label: String,
    pub url: String,
    pub server_pid: u32,
    pub conns: usize,
    pub msgs_per_conn: u64,
    pub size: usize,
    /// Server RSS (KiB) before connecting, idle, peak during the burst,
    /// right after it was read, 10 s and 20 s later.
    pub rss_kib_base: u64,
    pub rss_kib_idle: u64,
    pub rss_kib_burst_peak: Option<u64>,
    pub rss_kib_after_burst: Option<u64>,
    pub rss_kib_after_10s: Option<u64>,
    pub rss_kib_after_20s: Option<u64>,
    /// (RSS − base) / connections, KiB.
    pub kib_per_conn: PerConn,
    /// After 10 s, per connection, relative to idle (the goal: ≤ 2).
    pub after_10s_over_idle: Option<f64>,
    pub setup_s: f64,
    pub burst_s: f64,
    pub received: u64,
    pub expected: u64,
    pub lost: u64,
    pub errors: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ConnsRound {
    pub round: usize,
    pub a: ConnsResult,
    pub b: Option<ConnsResult>,
    /// B/A of the per-connection figures.
    pub ratios: Option<PerConn>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ConnsReport {
    pub scenario: &'static str,
    pub a_url: String,
    pub b_url: Option<String>,
    pub ratio_direction: &'static str,
    pub rounds: Vec<ConnsRound>,
    pub median: Option<PerConn>,
}

/// A or A B A B … (`rounds`), each side measured from its own baseline.
pub fn run(cfg: &RunConfig, a: &Target, b: Option<&Target>, rounds: usize) -> Result<ConnsReport> {
    let mut out = Vec::new();
    for round in 1..=rounds.max(1) {
        let mut ta = a.clone();
        ta.label = format!("A{round}");
        let ra = run_once(cfg, &ta).with_context(|| format!("round {round}, A ({})", a.url))?;
        let rb = match b {
            Some(b) => {
                // Let A's tail (closing 10k sockets) settle first.
                thread::sleep(Duration::from_secs(1));
                let mut tb = b.clone();
                tb.label = format!("B{round}");
                Some(run_once(cfg, &tb).with_context(|| format!("round {round}, B ({})", b.url))?)
            }
            None => None,
        };
        let ratios = rb
            .as_ref()
            .map(|rb| PerConn::ratio(&rb.kib_per_conn, &ra.kib_per_conn));
        out.push(ConnsRound {
            round,
            a: ra,
            b: rb,
            ratios,
        });
        if round < rounds {
            thread::sleep(Duration::from_secs(1));
        }
    }
    let all: Vec<PerConn> = out.iter().filter_map(|r| r.ratios.clone()).collect();
    let med = (!all.is_empty()).then(|| {
        let m = |f: fn(&PerConn) -> Option<f64>| median(&all.iter().map(f).collect::<Vec<_>>());
        PerConn {
            idle: m(|r| r.idle),
            burst_peak: m(|r| r.burst_peak),
            after_burst: m(|r| r.after_burst),
            after_10s: m(|r| r.after_10s),
            after_20s: m(|r| r.after_20s),
        }
    });
    Ok(ConnsReport {
        scenario: "conns",
        a_url: a.url.to_string(),
        b_url: b.map(|b| b.url.to_string()),
        ratio_direction: "B/A",
        rounds: out,
        median: med,
    })
}

/// One subscriber connection, owned by a reader thread.
struct Sub {
    stream: TcpStream,
    parser: Parser,
    got: u64,
    closed: bool,
}

fn connect_line(url: &ServerUrl, name: &str) -> String {
    let mut c = serde_json::json!({
        "verbose": false, "pedantic": false, "tls_required": false,
        "name": name, "lang": "rust-bench", "version": env!("CARGO_PKG_VERSION"),
        "protocol": 1, "echo": true, "headers": false, "no_responders": false,
    });
    match (&url.user, &url.pass) {
        (Some(u), Some(p)) => {
            c["user"] = u.as_str().into();
            c["pass"] = p.as_str().into();
        }
        (Some(t), None) => c["auth_token"] = t.as_str().into(),
        _ => {}
    }
    format!("CONNECT {c}\r\n")
}

fn subject(i: usize) -> String {
    format!("conns.{i}")
}

/// Opens `n` subscribers: connect a batch, send CONNECT + SUB + PING on
/// each, then read each one's PONG (blocking, with a timeout).
fn open_subs(url: &ServerUrl, n: usize, timeout: Duration, progress: bool) -> Result<Vec<Sub>> {
    let addr = url
        .addr()
        .to_socket_addrs()
        .with_context(|| format!("resolving {url}"))?
        .next()
        .ok_or_else(|| anyhow!("{url}: no addresses"))?;
    let hello = connect_line(url, "bench-conns");
    let mut subs = Vec::with_capacity(n);
    let mut buf = vec![0u8; 16 * 1024];
    let mut last_note = Instant::now();
    let mut noted = false;
    while subs.len() < n {
        let from = subs.len();
        let to = (from + OPEN_BATCH).min(n);
        let mut batch = Vec::with_capacity(to - from);
        for i in from..to {
            let mut s = TcpStream::connect_timeout(&addr, timeout)
                .with_context(|| format!("connection {i} of {n} to {url}"))?;
            s.set_nodelay(true)?;
            s.set_read_timeout(Some(timeout))?;
            s.set_write_timeout(Some(timeout))?;
            let line = format!("{hello}SUB {} 1\r\nPING\r\n", subject(i));
            s.write_all(line.as_bytes())
                .with_context(|| format!("connection {i}: sending CONNECT/SUB"))?;
            batch.push(s);
        }
        for (k, mut s) in batch.into_iter().enumerate() {
            let i = from + k;
            let mut parser = Parser::default();
            let mut pong = false;
            let mut err = None;
            while !pong {
                let got = match s.read(&mut buf) {
                    Ok(0) => bail!(
                        "connection {i}: the server closed it{} (its descriptor limit or \
                         max_connections?)",
                        err.as_ref()
                            .map_or(String::new(), |e| format!(" (-ERR {e})"))
                    ),
                    Ok(got) => got,
                    Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                    Err(e) => {
                        return Err(e).with_context(|| format!("connection {i}: waiting for PONG"))
                    }
                };
                parser.feed(&buf[..got], &mut |ev| match ev {
                    Event::Pong => pong = true,
                    Event::Err(t) => err = Some(String::from_utf8_lossy(t).into_owned()),
                    _ => {}
                })?;
                if let Some(e) = &err {
                    bail!("connection {i}: -ERR {e}");
                }
            }
            s.set_nonblocking(true)?;
            subs.push(Sub {
                stream: s,
                parser,
                got: 0,
                closed: false,
            });
        }
        if progress && last_note.elapsed() > Duration::from_secs(2) {
            eprint!("\r  {} of {n} connected", subs.len());
            last_note = Instant::now();
            noted = true;
        }
    }
    if noted {
        eprint!("\r{}\r", " ".repeat(40));
    }
    Ok(subs)
}

/// What a reader thread hands back.
struct ReaderOut {
    subs: Vec<Sub>,
    errors: Vec<String>,
}

/// Reads every subscriber in `subs` until `stop`: counts messages, answers
/// PINGs.
fn reader(mut subs: Vec<Sub>, total: Arc<AtomicU64>, stop: Arc<AtomicBool>) -> ReaderOut {
    let mut errors = Vec::new();
    // SAFETY: plain epoll calls on descriptors owned by `subs`, which
    // outlive the epoll instance (closed at the end of this function).
    let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    if ep < 0 {
        errors.push(format!(
            "epoll_create1: {}",
            std::io::Error::last_os_error()
        ));
        return ReaderOut { subs, errors };
    }
    for (k, s) in subs.iter().enumerate() {
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: k as u64,
        };
        if unsafe { libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, s.stream.as_raw_fd(), &mut ev) } != 0 {
            errors.push(format!("epoll_ctl: {}", std::io::Error::last_os_error()));
        }
    }
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 512];
    let mut buf = vec![0u8; 256 * 1024];
    while !stop.load(Ordering::Relaxed) {
        let n = unsafe { libc::epoll_wait(ep, events.as_mut_ptr(), events.len() as i32, 100) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == ErrorKind::Interrupted {
                continue;
            }
            errors.push(format!("epoll_wait: {e}"));
            break;
        }
        for ev in &events[..n as usize] {
            let k = ev.u64 as usize;
            let s = &mut subs[k];
            if s.closed {
                continue;
            }
            let got = match s.stream.read(&mut buf) {
                Ok(0) => {
                    s.closed = true;
                    errors.push(format!("{}: closed by the server", subject(k)));
                    unsafe {
                        libc::epoll_ctl(
                            ep,
                            libc::EPOLL_CTL_DEL,
                            s.stream.as_raw_fd(),
                            std::ptr::null_mut(),
                        )
                    };
                    continue;
                }
                Ok(got) => got,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => {
                    continue
                }
                Err(e) => {
                    s.closed = true;
                    errors.push(format!("{}: {e}", subject(k)));
                    continue;
                }
            };
            let (mut msgs, mut pings) = (0u64, 0);
            let mut err = None;
            let r = s.parser.feed(&buf[..got], &mut |e| match e {
                Event::Msg { .. } => msgs += 1,
                Event::Ping => pings += 1,
                Event::Err(t) => err = Some(String::from_utf8_lossy(t).into_owned()),
                _ => {}
            });
            if let Err(e) = r {
                errors.push(format!("{}: {e:#}", subject(k)));
            }
            if let Some(e) = err {
                errors.push(format!("{}: -ERR {e}", subject(k)));
            }
            s.got += msgs;
            total.fetch_add(msgs, Ordering::Relaxed);
            for _ in 0..pings {
                // Six bytes on an otherwise idle socket: they fit.
                let _ = s.stream.write(b"PONG\r\n");
            }
        }
    }
    unsafe { libc::close(ep) };
    ReaderOut { subs, errors }
}

/// Samples the server's RSS until `stop`, returning the largest (KiB).
fn sampler(pid: u32, stop: Arc<AtomicBool>) -> Option<u64> {
    let mut peak = None;
    loop {
        if let Ok(v) = rss_kib(pid) {
            peak = Some(peak.map_or(v, |p: u64| p.max(v)));
        }
        if stop.load(Ordering::Relaxed) {
            return peak;
        }
        thread::sleep(Duration::from_millis(50));
    }
}

fn run_once(cfg: &RunConfig, t: &Target) -> Result<ConnsResult> {
    let n = cfg.subs;
    let k = cfg.msgs.unwrap_or(20);
    let Some(pid) = t.pid else {
        bail!(
            "{}: conns reads the server's memory from /proc and needs its PID \
             (a local server, --pid-{} or --spawn-{})",
            t.url,
            t.label.chars().next().unwrap_or('a').to_ascii_lowercase(),
            t.label.chars().next().unwrap_or('a').to_ascii_lowercase()
        );
    };
    if let Some(limit) = process_nofile(pid) {
        if limit < n as u64 + 64 {
            eprintln!(
                "{}: warning: the server's descriptor limit is {limit}, short of {n} connections",
                t.label
            );
        }
    }
    let mut errors = Vec::new();
    let base = rss_kib(pid)?;
    let t0 = Instant::now();
    let subs = open_subs(&t.url, n, cfg.connect_timeout, cfg.progress)?;
    // The publisher: a connection of its own, subscribed to nothing.
    let mut publisher = Conn::connect(&t.url, "bench-conns-pub", 64 * 1024, cfg.connect_timeout)
        .with_context(|| format!("{}: publisher", t.url))?;
    crate::runner::check_payload(&publisher, cfg.size)?;
    let setup_s = t0.elapsed().as_secs_f64();
    // Readers take their share of the subscribers (round robin).
    let total = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut shares: Vec<Vec<Sub>> = (0..READERS).map(|_| Vec::new()).collect();
    for (i, s) in subs.into_iter().enumerate() {
        shares[i % READERS].push(s);
    }
    let readers: Vec<_> = shares
        .into_iter()
        .enumerate()
        .map(|(r, share)| {
            let (total, stop) = (total.clone(), stop.clone());
            thread::Builder::new()
                .name(format!("conns-reader-{r}"))
                .spawn(move || reader(share, total, stop))
                .expect("spawning a reader thread")
        })
        .collect();
    thread::sleep(IDLE_SETTLE);
    let idle = rss_kib(pid)?;
    if cfg.progress {
        eprintln!(
            "{}: {n} connections idle, {:.1} KiB each; burst of {k} × {} B per connection",
            t.label,
            (idle as f64 - base as f64) / n as f64,
            cfg.size
        );
    }
    // The burst, sampled for its peak.
    let sampling = Arc::new(AtomicBool::new(false));
    let sample = {
        let s = sampling.clone();
        thread::spawn(move || sampler(pid, s))
    };
    let expected = n as u64 * k;
    let burst0 = Instant::now();
    let payload: Vec<u8> = (0..cfg.size).map(|i| b'a' + (i % 26) as u8).collect();
    let mut out = Vec::with_capacity(256 * 1024 + cfg.size + 64);
    let mut stalled = None;
    'rounds: for round in 0..k {
        for i in 0..n {
            out.extend_from_slice(format!("PUB {} {}\r\n", subject(i), cfg.size).as_bytes());
            out.extend_from_slice(&payload);
            out.extend_from_slice(b"\r\n");
            if out.len() >= 256 * 1024 {
                publisher.write_all(&out)?;
                out.clear();
            }
        }
        publisher.write_all(&out)?;
        out.clear();
        // At most AHEAD rounds ahead of the readers.
        let floor = (round + 1).saturating_sub(AHEAD) * n as u64;
        if let Err(e) = wait_for(&total, floor, cfg.idle_timeout) {
            stalled = Some(e);
            break 'rounds;
        }
    }
    if stalled.is_none() {
        if let Err(e) = publisher.roundtrip(Duration::from_secs(60)) {
            errors.push(format!("publisher: {e:#}"));
        }
        if let Err(e) = wait_for(&total, expected, cfg.idle_timeout) {
            stalled = Some(e);
        }
    }
    if let Some(e) = stalled {
        errors.push(e);
    }
    let burst_s = burst0.elapsed().as_secs_f64();
    let read_at = Instant::now();
    let after_burst = rss_kib(pid).ok();
    sampling.store(true, Ordering::Relaxed);
    let burst_peak = sample.join().ok().flatten().max(after_burst);
    if cfg.progress {
        eprintln!(
            "{}: burst read in {burst_s:.1} s; waiting {} s for the after-burst readings",
            t.label,
            AFTER[AFTER.len() - 1].as_secs()
        );
    }
    let mut after = [None; 2];
    for (slot, d) in after.iter_mut().zip(AFTER) {
        if let Some(left) = d.checked_sub(read_at.elapsed()) {
            thread::sleep(left);
        }
        *slot = rss_kib(pid).ok();
    }
    stop.store(true, Ordering::Relaxed);
    let mut received = 0;
    let mut short = 0usize;
    for h in readers {
        let r = h.join().map_err(|_| anyhow!("a reader thread panicked"))?;
        for s in &r.subs {
            received += s.got;
            if s.got != k {
                short += 1;
            }
        }
        errors.extend(r.errors.into_iter().take(20));
    }
    if short > 0 {
        errors.push(format!(
            "{short} of {n} connections did not get exactly {k} messages"
        ));
    }
    drop(publisher);
    let readings = Readings {
        idle,
        burst_peak,
        after_burst,
        after,
    };
    let per = PerConn::of(base, n, &readings);
    Ok(ConnsResult {
        label: t.label.clone(),
        url: t.url.to_string(),
        server_pid: pid,
        conns: n,
        msgs_per_conn: k,
        size: cfg.size,
        rss_kib_base: base,
        rss_kib_idle: idle,
        rss_kib_burst_peak: burst_peak,
        rss_kib_after_burst: after_burst,
        rss_kib_after_10s: after[0],
        rss_kib_after_20s: after[1],
        after_10s_over_idle: ratio(per.after_10s, per.idle),
        kib_per_conn: per,
        setup_s,
        burst_s,
        received,
        expected,
        lost: expected.saturating_sub(received),
        errors,
    })
}

/// Waits until `total` reaches `want`, failing after `idle` without progress.
fn wait_for(total: &AtomicU64, want: u64, idle: Duration) -> std::result::Result<(), String> {
    let mut last = total.load(Ordering::Relaxed);
    let mut since = Instant::now();
    while last < want {
        thread::sleep(Duration::from_millis(1));
        let now = total.load(Ordering::Relaxed);
        if now != last {
            last = now;
            since = Instant::now();
        } else if since.elapsed() > idle {
            return Err(format!(
                "subscribers stopped receiving at {last} of {want} messages"
            ));
        }
    }
    Ok(())
}

fn kib(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.1}"))
}

fn x(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.2}"))
}

fn mib(v: Option<u64>) -> String {
    v.map_or("-".into(), |v| format!("{:.0}", v as f64 / 1024.0))
}

pub fn print(r: &ConnsReport) {
    let first = &r.rounds[0].a;
    println!(
        "conns: {} connections, one SUB each; burst of {} × {} B per connection. \
         KiB per connection = (server RSS − RSS before connecting) / connections.",
        first.conns, first.msgs_per_conn, first.size
    );
    let mut rows = vec![[
        "side",
        "idle",
        "burst peak",
        "after burst",
        "+10 s",
        "+20 s",
        "+10 s/idle",
        "base MiB",
        "peak MiB",
        "burst s",
        "lost",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect::<Vec<_>>()];
    let side = |c: &ConnsResult| {
        vec![
            c.label.clone(),
            kib(c.kib_per_conn.idle),
            kib(c.kib_per_conn.burst_peak),
            kib(c.kib_per_conn.after_burst),
            kib(c.kib_per_conn.after_10s),
            kib(c.kib_per_conn.after_20s),
            x(c.after_10s_over_idle),
            mib(Some(c.rss_kib_base)),
            mib(c.rss_kib_burst_peak),
            format!("{:.1}", c.burst_s),
            c.lost.to_string(),
        ]
    };
    for round in &r.rounds {
        rows.push(side(&round.a));
        if let Some(b) = &round.b {
            rows.push(side(b));
        }
    }
    print_rows(&rows);
    for round in &r.rounds {
        for c in std::iter::once(&round.a).chain(round.b.as_ref()) {
            for e in &c.errors {
                println!("{}: {e}", c.label);
            }
        }
    }
    if let Some(b_url) = &r.b_url {
        println!();
        println!(
            "Ratios are B/A of KiB per connection, A = {}, B = {b_url}.",
            r.a_url
        );
        let mut rows = vec![[
            "round",
            "idle",
            "burst peak",
            "after burst",
            "+10 s",
            "+20 s",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect::<Vec<_>>()];
        let line = |name: String, p: &PerConn| {
            vec![
                name,
                x(p.idle),
                x(p.burst_peak),
                x(p.after_burst),
                x(p.after_10s),
                x(p.after_20s),
            ]
        };
        for round in &r.rounds {
            if let Some(p) = &round.ratios {
                rows.push(line(round.round.to_string(), p));
            }
        }
        if let Some(m) = &r.median {
            rows.push(line("median".into(), m));
        }
        print_rows(&rows);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nofile_is_raised_never_lowered() {
        assert_eq!(nofile_plan(1024, 4096, 2048), (2048, 4096));
        assert_eq!(nofile_plan(1024, 4096, 20_000), (20_000, 20_000));
        assert_eq!(nofile_plan(50_000, 60_000, 20_000), (50_000, 60_000));
        let inf = libc::RLIM_INFINITY;
        assert_eq!(nofile_plan(1024, inf, 20_000), (20_000, inf));
    }

    #[test]
    fn limits_file() {
        let t = "Limit                     Soft Limit           Hard Limit           Units     \n\
                 Max cpu time              unlimited            unlimited            seconds   \n\
                 Max open files            20000                20000                files     \n";
        assert_eq!(parse_limits_nofile(t), Some(20_000));
        assert_eq!(
            parse_limits_nofile("Max open files unlimited unlimited files\n"),
            Some(u64::MAX)
        );
        assert_eq!(parse_limits_nofile("nothing\n"), None);
        assert!(process_nofile(std::process::id()).is_some());
    }

    #[test]
    fn per_connection_figures() {
        let r = Readings {
            idle: 10_000 + 14 * 100,
            burst_peak: Some(10_000 + 200 * 100),
            after_burst: Some(10_000 + 78 * 100),
            after: [Some(10_000 + 20 * 100), None],
        };
        let p = PerConn::of(10_000, 100, &r);
        assert_eq!(p.idle, Some(14.0));
        assert_eq!(p.burst_peak, Some(200.0));
        assert_eq!(p.after_burst, Some(78.0));
        assert_eq!(p.after_10s, Some(20.0));
        assert_eq!(p.after_20s, None);
        let half = PerConn::of(10_000, 200, &r);
        let q = PerConn::ratio(&half, &p);
        assert_eq!(q.idle, Some(0.5));
        assert_eq!(q.after_20s, None);
    }
}
