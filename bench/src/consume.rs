//! `js-consume`: pull-consume a pre-filled stream with explicit acks, the
//! way the Go client's `Fetch` + `Ack` loop does (gobench's `js-consume`).
//!
//! Set-up, not timed: a fresh file stream `--stream` on `--subject` filled
//! with `--msgs` messages of `--size` bytes (`--window` PubAcks
//! outstanding, the `js-pub-async` publisher), and a durable pull consumer
//! `BENCH_C` with explicit acks from the first message. Timed: each of the
//! `--subs` fetchers (1) keeps one pull request outstanding,
//! `$JS.API.CONSUMER.MSG.NEXT.<stream>.BENCH_C` with
//! `{"batch":<--fetch>,"expires":5s}` to its own inbox, acks every message
//! it gets by publishing an empty payload to the message's `$JS.ACK…` reply
//! subject, and asks again once the batch is complete or a 404/408 status
//! says the request ended, until `--msgs` messages were consumed. The acks
//! for one read go out in one write, together with the next request.
//! Latency is per fetch: request → batch complete. Afterwards the consumer
//! must show no pending acks, and the stream is deleted.

use crate::js::{self, check_api_reply, inbox_token, Api, API_TIMEOUT};
use crate::procstat::CpuProbe;
use crate::proto::{parse_u64, Conn, Event, ReadOutcome};
use crate::reqrep::{merge_timed, new_hist, Timed};
use crate::runner::{
    join_all, ready_channel, spawn_worker, subscribe, wait_ready, Ctl, Gate, Progress, Ready,
    RunConfig, Target,
};
use crate::stats::{Latency, Raw, RunResult};
use anyhow::{bail, Context, Result};
use hdrhistogram::Histogram;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// The durable consumer's name.
pub const CONSUMER: &str = "BENCH_C";
/// Pull requests expire after this long (ns), as the brief for both tools says.
const EXPIRES_NS: u64 = 5_000_000_000;

/// A JetStream status carried by a header-only HMSG: `NATS/1.0 408 Request Timeout`.
#[derive(Debug, PartialEq, Eq)]
pub struct Status<'a> {
    pub code: u16,
    pub text: &'a str,
}

/// The status on the first line of a header block, None for a plain
/// `NATS/1.0` (a message that merely has headers) or no header block.
pub fn parse_status(headers: &[u8]) -> Option<Status<'_>> {
    let line = headers.split(|b| *b == b'\n').next()?;
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let rest = line.strip_prefix(b"NATS/1.0")?.trim_ascii_start();
    if rest.len() < 3 || !rest[..3].iter().all(u8::is_ascii_digit) {
        return None;
    }
    if rest.len() > 3 && !rest[3].is_ascii_whitespace() {
        return None;
    }
    let code = rest[..3]
        .iter()
        .fold(0u16, |a, d| a * 10 + u16::from(d - b'0'));
    let text = std::str::from_utf8(rest[3..].trim_ascii()).unwrap_or("");
    Some(Status { code, text })
}

/// The pull request body: `batch` messages, the request expiring after `expires_ns`.
pub fn pull_request_body(batch: usize, expires_ns: u64) -> String {
    format!("{{\"batch\":{batch},\"expires\":{expires_ns}}}")
}

/// `$JS.API.CONSUMER.CREATE` body for the durable pull consumer. Ack wait,
/// max ack pending and max waiting are gobench's, so both tools ask the
/// servers for the same consumer.
pub fn consumer_create_body(
    stream: &str,
    name: &str,
    fetch: usize,
    fetchers: usize,
) -> serde_json::Value {
    serde_json::json!({
        "stream_name": stream,
        "config": {
            "durable_name": name,
            "ack_policy": "explicit",
            "deliver_policy": "all",
            "ack_wait": 60_000_000_000u64,
            "max_ack_pending": (fetch * 4 * fetchers).max(1000),
            "max_waiting": 512,
        },
        "action": "create",
    })
}

/// Creates and fills the stream, creates the consumer, runs the fetchers,
/// deletes the stream.
pub fn run(cfg: &RunConfig, t: &Target) -> Result<RunResult> {
    let setup = || -> Result<()> {
        js::create_stream(cfg, t)?;
        js::fill(cfg, t)?;
        let mut api = Api::connect(cfg, t)?;
        let body = consumer_create_body(&cfg.stream, CONSUMER, cfg.fetch, cfg.subs.max(1));
        let reply = api.request(
            &format!("$JS.API.CONSUMER.CREATE.{}.{CONSUMER}", cfg.stream),
            body.to_string().as_bytes(),
            API_TIMEOUT,
        )?;
        check_api_reply(&reply).context("creating the pull consumer")?;
        Ok(())
    };
    let r = match setup().with_context(|| format!("{}: setting up", t.url)) {
        Ok(()) => measure(cfg, t),
        Err(e) => Err(e),
    };
    if let Err(e) = js::delete_stream_named(cfg, t, &cfg.stream) {
        eprintln!(
            "{}: warning: stream {} not deleted: {e:#}",
            t.label, cfg.stream
        );
    }
    r
}

#[derive(Default)]
struct FetchStats {
    hist: Option<Histogram<u64>>,
    /// First pull request.
    start: Option<Instant>,
    /// Acks for the last message written.
    end: Option<Instant>,
    /// Requests ended by a 404/408 status rather than a full batch.
    cut_short: u64,
}

impl Timed for FetchStats {
    fn parts(&self) -> (Option<&Histogram<u64>>, Option<Instant>, Option<Instant>) {
        (self.hist.as_ref(), self.start, self.end)
    }
}

fn measure(cfg: &RunConfig, t: &Target) -> Result<RunResult> {
    let ctl = Arc::new(Ctl::default());
    let gate = Gate::new();
    let (tx, rx) = ready_channel();
    let fetchers = cfg.subs.max(1);
    let target = cfg.msgs.unwrap_or(0);
    let consumed = Arc::new(AtomicU64::new(0));
    let fetches = Arc::new(AtomicU64::new(0));
    let timed_out = Arc::new(AtomicBool::new(false));
    let mut handles = Vec::new();
    for i in 0..fetchers {
        let (cfg, t, gate, ctl) = (cfg.clone(), t.clone(), gate.clone(), ctl.clone());
        let shared = (consumed.clone(), fetches.clone(), timed_out.clone());
        handles.push(spawn_worker(
            format!("js-fetch-{i}"),
            &tx,
            move |ready, st| {
                let (c, f, to) = (&*shared.0, &*shared.1, &*shared.2);
                fetcher(&cfg, &t, target, &gate, &ctl, (c, f, to), ready, st)
            },
        ));
    }
    if let Err(e) = wait_ready(&rx, fetchers, cfg.connect_timeout * 2) {
        ctl.abort.store(true, Ordering::Relaxed);
        gate.open(false);
        join_all(handles);
        return Err(e.context("setting up fetchers"));
    }
    thread::sleep(cfg.settle);

    let probe = CpuProbe::start(t.pid);
    gate.open(true);
    let mut progress = Progress::new(&t.label, cfg.progress);
    while !handles.iter().all(|h| h.is_finished()) {
        thread::sleep(Duration::from_millis(20));
        let c = consumed.load(Ordering::Relaxed);
        progress.tick(fetches.load(Ordering::Relaxed), c, c);
    }
    let out = join_all(handles);
    let cpu = probe.finish();
    progress.finish();

    let (hist, elapsed_s) = merge_timed(&out);
    let got = consumed.load(Ordering::Relaxed);
    let mut errors: Vec<String> = out.iter().filter_map(|o| o.error.clone()).collect();
    let stopped_early = timed_out.load(Ordering::Relaxed);
    if errors.is_empty() && !stopped_early {
        if let Err(e) = check_acked(cfg, t) {
            errors.push(format!("after the run: {e:#}"));
        }
    }
    let cut: u64 = out.iter().map(|o| o.stats.cut_short).sum();
    if cut > 0 && cfg.progress {
        eprintln!("{}: {cut} pull requests ended by a 404/408 status", t.label);
    }
    let mut r = RunResult::from_raw(Raw {
        label: t.label.clone(),
        scenario: cfg.scenario.name().into(),
        url: t.url.to_string(),
        server_pid: t.pid,
        size: cfg.size,
        pubs: 0,
        subs: fetchers,
        // The messages stored in the stream before the run.
        sent: target,
        received: got,
        // A --duration run consumes what it can in the time.
        expected: if stopped_early { got } else { target },
        elapsed_s,
        server_cpu_s: cpu.server,
        gen_cpu_s: cpu.generator,
        other_cpu_s: cpu.other,
        server_rss_mib: cpu.server_rss_mib,
        server_peak_rss_mib: cpu.server_peak_rss_mib,
        latency: (!hist.is_empty()).then(|| Latency::from_ns(&hist)),
        errors,
    });
    r.rate_on_received();
    Ok(r)
}

/// Every ack reached the server: the consumer shows none pending (acks
/// are processed asynchronously, so it gets a few seconds).
fn check_acked(cfg: &RunConfig, t: &Target) -> Result<()> {
    let mut api = Api::connect(cfg, t)?;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let reply = api.request(
            &format!("$JS.API.CONSUMER.INFO.{}.{CONSUMER}", cfg.stream),
            b"",
            API_TIMEOUT,
        )?;
        let info = check_api_reply(&reply).context("consumer info")?;
        let pending = info["num_ack_pending"].as_u64().unwrap_or(0);
        if pending == 0 {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{pending} messages still unacknowledged by the server 5 s after the run");
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// One fetcher: one pull request outstanding, every message acked.
#[allow(clippy::too_many_arguments)]
fn fetcher(
    cfg: &RunConfig,
    t: &Target,
    target: u64,
    gate: &Gate,
    ctl: &Ctl,
    (consumed, fetches, timed_out): (&AtomicU64, &AtomicU64, &AtomicBool),
    ready: &mut Ready,
    st: &mut FetchStats,
) -> Result<()> {
    // Headers on: the 404/408 statuses are header-only HMSGs.
    let mut conn = Conn::connect_opts(
        &t.url,
        "bench-js-fetch",
        cfg.read_buf,
        cfg.connect_timeout,
        true,
    )?;
    conn.set_capture(true);
    let prefix = format!("_INBOX.{}.", inbox_token());
    subscribe(
        &mut conn,
        &format!("{prefix}*"),
        None,
        1,
        cfg.connect_timeout,
    )?;
    ready.ok();
    if !gate.wait() {
        return Ok(());
    }
    let next_subject = format!("$JS.API.CONSUMER.MSG.NEXT.{}.{CONSUMER}", cfg.stream);
    let body = pull_request_body(cfg.fetch, EXPIRES_NS);
    let batch = cfg.fetch as u64;
    // Longest wait for a message before giving up: a whole empty request, and then some.
    let silence = cfg.idle_timeout + Duration::from_nanos(EXPIRES_NS);
    let hist = st.hist.insert(new_hist());
    let start = Instant::now();
    st.start = Some(start);
    let deadline = cfg.duration.map(|d| start + d);
    let mut out: Vec<u8> = Vec::with_capacity(64 * 1024);
    let mut req = 0u64;
    let mut last_msg = start;
    let mut mine = 0u64;
    'fetching: while consumed.load(Ordering::Relaxed) < target && !ctl.aborted() {
        if deadline.is_some_and(|d| Instant::now() >= d) {
            timed_out.store(true, Ordering::Relaxed);
            break;
        }
        // The request, after the previous batch's last acks.
        req += 1;
        let reply = format!("{prefix}{req}");
        out.extend_from_slice(
            format!("PUB {next_subject} {reply} {}\r\n{body}\r\n", body.len()).as_bytes(),
        );
        let t0 = Instant::now();
        conn.write_all(&out)?;
        out.clear();
        fetches.fetch_add(1, Ordering::Relaxed);
        let mut in_batch = 0u64;
        let mut ended = false;
        while !ended {
            let mut got = 0u64;
            let mut fatal: Option<String> = None;
            let r = conn.read_some(&mut |ev| {
                let Event::Msg {
                    sid: 1,
                    subject,
                    reply: r,
                    payload,
                    hdr,
                    ..
                } = ev
                else {
                    return;
                };
                if let Some(ack) = r.filter(|r| r.starts_with(b"$JS.ACK.")) {
                    out.extend_from_slice(b"PUB ");
                    out.extend_from_slice(ack);
                    out.extend_from_slice(b" 0\r\n\r\n");
                    got += 1;
                    return;
                }
                // A status for this request ends it; one for an earlier
                // (already complete) request is of no interest.
                let Some(s) = parse_status(&payload[..hdr]) else {
                    fatal.get_or_insert_with(|| "a message without an ack subject".into());
                    return;
                };
                let this = subject
                    .strip_prefix(prefix.as_bytes())
                    .and_then(|n| parse_u64(n).ok())
                    == Some(req);
                match s.code {
                    404 | 408 if this => ended = true,
                    404 | 408 | 100 => {}
                    _ => {
                        fatal.get_or_insert_with(|| format!("status {} {}", s.code, s.text));
                    }
                }
            })?;
            let now = Instant::now();
            if ended {
                st.cut_short += 1;
            }
            if got > 0 {
                mine += got;
                in_batch += got;
                consumed.fetch_add(got, Ordering::Relaxed);
                last_msg = now;
                ended |= in_batch >= batch;
            }
            let done = consumed.load(Ordering::Relaxed) >= target;
            // Like gobench: fetches that brought messages, request → last one.
            if (ended || done) && in_batch > 0 {
                let ns = now.saturating_duration_since(t0).as_nanos();
                let _ = hist.record((ns.min(60_000_000_000) as u64).max(1));
            }
            if !out.is_empty() && (!ended || done) {
                // Acks go now unless the next request can carry them.
                conn.write_all(&out)?;
                out.clear();
                st.end = Some(Instant::now());
            } else if got > 0 {
                st.end = Some(Instant::now());
            }
            if let Some(f) = fatal {
                bail!("{f} after {mine} messages");
            }
            if done {
                break 'fetching;
            }
            if r == ReadOutcome::Closed {
                bail!(
                    "server closed the connection after {mine} messages{}",
                    conn.err_suffix()
                );
            }
            if ctl.aborted() {
                break 'fetching;
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                timed_out.store(true, Ordering::Relaxed);
                break 'fetching;
            }
            if last_msg.elapsed() > silence {
                bail!(
                    "no message for {silence:?} after {mine} (all fetchers: {} of {target}){}",
                    consumed.load(Ordering::Relaxed),
                    conn.err_suffix()
                );
            }
        }
    }
    if !out.is_empty() {
        conn.write_all(&out)?;
        st.end = Some(Instant::now());
    }
    // Every ack written has been read by the server.
    conn.roundtrip(cfg.connect_timeout)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses() {
        assert_eq!(
            parse_status(b"NATS/1.0 408 Request Timeout\r\nNats-Pending-Messages: 5\r\n\r\n"),
            Some(Status {
                code: 408,
                text: "Request Timeout"
            })
        );
        assert_eq!(
            parse_status(b"NATS/1.0 404 No Messages\r\n\r\n"),
            Some(Status {
                code: 404,
                text: "No Messages"
            })
        );
        assert_eq!(
            parse_status(b"NATS/1.0 409 Exceeded MaxWaiting\r\n\r\n").map(|s| s.code),
            Some(409)
        );
        assert_eq!(
            parse_status(b"NATS/1.0 100\r\n\r\n"),
            Some(Status {
                code: 100,
                text: ""
            })
        );
        // Headers without a status, and things that are not headers.
        for none in [
            &b"NATS/1.0\r\nNats-Stream: KV_BENCH\r\n\r\n"[..],
            b"NATS/1.0\r\n\r\n",
            b"",
            b"hello",
            b"NATS/1.0 40\r\n\r\n",
            b"NATS/1.0 4085 x\r\n\r\n",
            b"NATS/1.0 abc\r\n\r\n",
        ] {
            assert_eq!(
                parse_status(none),
                None,
                "{:?}",
                String::from_utf8_lossy(none)
            );
        }
    }

    #[test]
    fn request_bodies() {
        let b = pull_request_body(100, EXPIRES_NS);
        assert_eq!(b, r#"{"batch":100,"expires":5000000000}"#);
        let v: serde_json::Value = serde_json::from_str(&b).unwrap();
        assert_eq!(v["batch"], 100);

        let c = consumer_create_body("BENCH", CONSUMER, 100, 1);
        assert_eq!(c["stream_name"], "BENCH");
        assert_eq!(c["action"], "create");
        assert_eq!(c["config"]["durable_name"], "BENCH_C");
        assert_eq!(c["config"]["ack_policy"], "explicit");
        assert_eq!(c["config"]["deliver_policy"], "all");
        assert_eq!(c["config"]["max_ack_pending"], 1000);
        assert_eq!(
            consumer_create_body("S", "C", 500, 2)["config"]["max_ack_pending"],
            4000
        );
    }
}
