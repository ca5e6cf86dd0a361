//! Request/reply latency. Each requester keeps one request in flight on its
//! own inbox and times the round trip; responders (part of the bench) sit
//! in one queue group and answer every request with a same-sized payload,
//! batching the replies to one read into one write.

use crate::procstat::CpuProbe;
use crate::proto::{Conn, Event, ReadOutcome};
use crate::runner::{
    check_payload, join_all, pub_frame, ready_channel, spawn_worker, split, subscribe, sum,
    wait_ready, Ctl, Gate, Outcome, Progress, Ready, RunConfig, Target,
};
use crate::stats::{Latency, Raw, RunResult};
use anyhow::{bail, Result};
use hdrhistogram::Histogram;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

#[derive(Default)]
struct ReqStats {
    hist: Option<Histogram<u64>>,
    start: Option<Instant>,
    end: Option<Instant>,
}

impl Timed for ReqStats {
    fn parts(&self) -> (Option<&Histogram<u64>>, Option<Instant>, Option<Instant>) {
        (self.hist.as_ref(), self.start, self.end)
    }
}

pub fn new_hist() -> Histogram<u64> {
    // 1 ns .. 60 s at 3 significant digits.
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("static histogram bounds")
}

/// A worker's latency record and the span of its measured work.
pub trait Timed {
    fn parts(&self) -> (Option<&Histogram<u64>>, Option<Instant>, Option<Instant>);
}

/// Every worker's latencies in one histogram, and the seconds from the
/// first worker's start to the last one's end.
pub fn merge_timed<T: Timed>(out: &[Outcome<T>]) -> (Histogram<u64>, f64) {
    let mut hist = new_hist();
    let (mut from, mut to): (Option<Instant>, Option<Instant>) = (None, None);
    for o in out {
        let (h, start, end) = o.stats.parts();
        if let Some(h) = h {
            // Same bounds everywhere, so adding cannot fail.
            let _ = hist.add(h);
        }
        from = match (from, start) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        to = to.max(end);
    }
    let elapsed_s = match (from, to) {
        (Some(a), Some(b)) => b.saturating_duration_since(a).as_secs_f64(),
        _ => 0.0,
    };
    (hist, elapsed_s)
}

pub fn run(cfg: &RunConfig, t: &Target) -> Result<RunResult> {
    let ctl = Arc::new(Ctl::default());
    let gate = Gate::new();
    let (tx, rx) = ready_channel();
    let (pubs, subs) = (cfg.pubs.max(1), cfg.subs.max(1));
    let served: Vec<Arc<AtomicU64>> = (0..subs).map(|_| Arc::default()).collect();
    let sent: Vec<Arc<AtomicU64>> = (0..pubs).map(|_| Arc::default()).collect();
    let replied: Vec<Arc<AtomicU64>> = (0..pubs).map(|_| Arc::default()).collect();

    let mut resp_handles = Vec::new();
    for (i, count) in served.iter().enumerate() {
        let (cfg, t, ctl, count) = (cfg.clone(), t.clone(), ctl.clone(), count.clone());
        resp_handles.push(spawn_worker::<(), _>(
            format!("resp-{i}"),
            &tx,
            move |ready, _| responder(&cfg, &t, &ctl, &count, ready),
        ));
    }
    if let Err(e) = wait_ready(&rx, subs, cfg.connect_timeout * 2) {
        ctl.abort.store(true, Ordering::Relaxed);
        join_all(resp_handles);
        return Err(e.context("setting up responders"));
    }
    let msgs = cfg.msgs;
    let mut req_handles = Vec::new();
    for i in 0..pubs {
        let (cfg, t, gate, ctl) = (cfg.clone(), t.clone(), gate.clone(), ctl.clone());
        let (s, r) = (sent[i].clone(), replied[i].clone());
        let n = msgs.map(|m| split(m, pubs, i));
        req_handles.push(spawn_worker(format!("req-{i}"), &tx, move |ready, st| {
            requester(&cfg, &t, i, n, &gate, &ctl, (&s, &r), ready, st)
        }));
    }
    if let Err(e) = wait_ready(&rx, pubs, cfg.connect_timeout * 2) {
        ctl.abort.store(true, Ordering::Relaxed);
        gate.open(false);
        join_all(req_handles);
        join_all(resp_handles);
        return Err(e.context("setting up requesters"));
    }
    thread::sleep(cfg.settle);

    let probe = CpuProbe::start(t.pid);
    gate.open(true);
    let mut progress = Progress::new(&t.label, cfg.progress);
    while !req_handles.iter().all(|h| h.is_finished()) {
        thread::sleep(Duration::from_millis(20));
        let r = sum(&replied);
        progress.tick(sum(&sent), r, r);
    }
    let req_out = join_all(req_handles);
    let cpu = probe.finish();
    ctl.abort.store(true, Ordering::Relaxed);
    let resp_out = join_all(resp_handles);
    progress.finish();

    let (hist, elapsed_s) = merge_timed(&req_out);
    let sent_n = sum(&sent);
    let errors = req_out
        .iter()
        .filter_map(|o| o.error.clone())
        .chain(resp_out.iter().filter_map(|o| o.error.clone()))
        .collect();
    Ok(RunResult::from_raw(Raw {
        label: t.label.clone(),
        scenario: cfg.scenario.name().into(),
        url: t.url.to_string(),
        server_pid: t.pid,
        size: cfg.size,
        pubs,
        subs,
        sent: sent_n,
        received: sum(&replied),
        expected: sent_n,
        elapsed_s,
        server_cpu_s: cpu.server,
        gen_cpu_s: cpu.generator,
        other_cpu_s: cpu.other,
        server_rss_mib: cpu.server_rss_mib,
        server_peak_rss_mib: cpu.server_peak_rss_mib,
        latency: (!hist.is_empty()).then(|| Latency::from_ns(&hist)),
        errors,
    }))
}

fn responder(
    cfg: &RunConfig,
    t: &Target,
    ctl: &Ctl,
    count: &AtomicU64,
    ready: &mut Ready,
) -> Result<()> {
    let mut conn = Conn::connect(&t.url, "bench-responder", cfg.read_buf, cfg.connect_timeout)?;
    check_payload(&conn, cfg.size)?;
    subscribe(
        &mut conn,
        &cfg.subject,
        Some(&cfg.queue),
        1,
        cfg.connect_timeout,
    )?;
    if cfg.spin {
        conn.set_spin()?;
    }
    ready.ok();
    let payload = pub_frame("x", None, cfg.size);
    // Just the payload and its CRLF, appended after each reply's PUB line.
    let body = &payload[payload.len() - cfg.size - 2..];
    let size_line = format!(" {}\r\n", cfg.size);
    let mut out = Vec::with_capacity(64 * 1024);
    let mut n = 0u64;
    while !ctl.aborted() {
        let r = conn.read_some(&mut |ev| {
            if let Event::Msg {
                sid: 1,
                reply: Some(reply),
                ..
            } = ev
            {
                out.extend_from_slice(b"PUB ");
                out.extend_from_slice(reply);
                out.extend_from_slice(size_line.as_bytes());
                out.extend_from_slice(body);
                n += 1;
            }
        })?;
        if !out.is_empty() {
            conn.write_all(&out)?;
            out.clear();
            count.store(n, Ordering::Relaxed);
        }
        if r == ReadOutcome::Closed {
            if ctl.aborted() {
                break;
            }
            bail!("server closed the connection{}", conn.err_suffix());
        }
        if r == ReadOutcome::Timeout && cfg.spin {
            // Lets a requester pinned to the same CPU run.
            thread::yield_now();
        }
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn requester(
    cfg: &RunConfig,
    t: &Target,
    idx: usize,
    n: Option<u64>,
    gate: &Gate,
    ctl: &Ctl,
    (sent, replied): (&AtomicU64, &AtomicU64),
    ready: &mut Ready,
    st: &mut ReqStats,
) -> Result<()> {
    let mut conn = Conn::connect(&t.url, "bench-requester", 64 * 1024, cfg.connect_timeout)?;
    check_payload(&conn, cfg.size)?;
    let inbox = format!("_INBOX.bench.{}.{idx}", std::process::id());
    subscribe(&mut conn, &inbox, None, 1, cfg.connect_timeout)?;
    if cfg.spin {
        conn.set_spin()?;
    }
    ready.ok();
    if !gate.wait() {
        return Ok(());
    }
    let frame = pub_frame(&cfg.subject, Some(&inbox), cfg.size);
    let hist = st.hist.insert(new_hist());
    let start = Instant::now();
    st.start = Some(start);
    let deadline = cfg.duration.map(|d| start + d);
    let mut left = n.unwrap_or(u64::MAX);
    let mut done = 0u64;
    while left > 0 && !ctl.aborted() {
        if deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
        let t0 = Instant::now();
        conn.write_all(&frame)?;
        sent.store(done + 1, Ordering::Relaxed);
        let mut got = false;
        while !got {
            let r = conn.read_some(&mut |ev| {
                if let Event::Msg { sid: 1, .. } = ev {
                    got = true;
                }
            })?;
            if got {
                break;
            }
            if r == ReadOutcome::Closed {
                bail!(
                    "server closed the connection after {done} replies{}",
                    conn.err_suffix()
                );
            }
            if t0.elapsed() > cfg.idle_timeout {
                bail!(
                    "no reply within {:?} after {done} replies",
                    cfg.idle_timeout
                );
            }
            if r == ReadOutcome::Timeout && cfg.spin {
                thread::yield_now();
            }
        }
        let ns = t0.elapsed().as_nanos().min(60_000_000_000) as u64;
        let _ = hist.record(ns.max(1));
        done += 1;
        left -= 1;
        replied.store(done, Ordering::Relaxed);
    }
    st.end = Some(Instant::now());
    Ok(())
}
