//! Throughput scenarios: pub, sub, pubsub, fanout, queue.
//!
//! Publishers write pre-built batches of PUB frames in large writes (one
//! syscall per `--batch` bytes); subscribers read with large buffers and
//! only count. Per message the generator does a memchr and a few integer
//! parses, so on a 2-core box most of the CPU stays with the server.

use crate::procstat::CpuProbe;
use crate::proto::{Conn, Event, ReadOutcome};
use crate::runner::{
    check_payload, join_all, pub_frame, ready_channel, spawn_worker, split, subscribe, sum,
    wait_ready, Ctl, Gate, Outcome, Progress, Ready, RunConfig, Scenario, Target,
};
use crate::stats::{Raw, RunResult, SplitServers};
use anyhow::{bail, Result};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// Subscribers that share an expected total: one per fan-out subscriber,
/// one for a whole queue group.
struct Group {
    recv: AtomicU64,
    /// u64::MAX until the publishers' total is known.
    expected: AtomicU64,
}

#[derive(Default)]
struct PubStats {
    start: Option<Instant>,
    end: Option<Instant>,
}

#[derive(Default)]
struct SubStats {
    first: Option<Instant>,
    last: Option<Instant>,
}

/// Long enough for a busy server to drain its queues before our PONG.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(60);

/// Reply subject of the interest probes of a `--sub-url` run; subscribers
/// count only messages without a reply, so probes never enter the figures.
const PROBE_REPLY: &str = "_BENCH_PROBE";

/// How long a `--sub-url` run waits for the subscribers' interest to reach
/// the publishers' server (across a leaf link, a route, …).
const INTEREST_TIMEOUT: Duration = Duration::from_secs(15);

/// Publishes probes (a reply subject marks them) on the subject through
/// the publishers' server until the subscribers have seen them: every
/// subscriber for pubsub/fanout, any member for a queue group.
fn await_interest(cfg: &RunConfig, t: &Target, seen: &[Arc<AtomicBool>]) -> Result<()> {
    let mut conn = Conn::connect(&t.url, "bench-probe", 64 * 1024, cfg.connect_timeout)?;
    let frame = pub_frame(&cfg.subject, Some(PROBE_REPLY), 0);
    let deadline = Instant::now() + INTEREST_TIMEOUT;
    let all = cfg.scenario != Scenario::Queue;
    loop {
        conn.write_all(&frame)?;
        conn.roundtrip(cfg.connect_timeout)?;
        thread::sleep(Duration::from_millis(10));
        let ok = |f: &Arc<AtomicBool>| f.load(Ordering::Relaxed);
        if (all && seen.iter().all(ok)) || (!all && seen.iter().any(ok)) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!(
                "the subscribers' interest did not reach {} from {} within {INTEREST_TIMEOUT:?}",
                t.url,
                t.sub_url()
            );
        }
    }
}

pub fn run(cfg: &RunConfig, t: &Target) -> Result<RunResult> {
    let ctl = Arc::new(Ctl::default());
    let gate = Gate::new();
    let (tx, rx) = ready_channel();
    let (pubs, subs) = (cfg.pubs, cfg.subs);
    let msgs = cfg.msgs;
    let initial = msgs.unwrap_or(u64::MAX);
    let group_count = if cfg.scenario == Scenario::Queue {
        subs.min(1)
    } else {
        subs
    };
    let groups: Vec<Arc<Group>> = (0..group_count)
        .map(|_| {
            Arc::new(Group {
                recv: AtomicU64::new(0),
                expected: AtomicU64::new(initial),
            })
        })
        .collect();
    let sub_counts: Vec<Arc<AtomicU64>> = (0..subs).map(|_| Arc::default()).collect();
    let probe_seen: Vec<Arc<AtomicBool>> = (0..subs).map(|_| Arc::default()).collect();
    let pub_counts: Vec<Arc<AtomicU64>> = (0..pubs).map(|_| Arc::default()).collect();
    let queue = (cfg.scenario == Scenario::Queue).then(|| cfg.queue.clone());

    let mut sub_handles = Vec::new();
    for i in 0..subs {
        let (cfg, t, ctl) = (cfg.clone(), t.clone(), ctl.clone());
        let group = groups[i % groups.len()].clone();
        let count = sub_counts[i].clone();
        let seen = probe_seen[i].clone();
        let queue = queue.clone();
        sub_handles.push(spawn_worker(format!("sub-{i}"), &tx, move |ready, st| {
            subscriber(
                &cfg,
                &t,
                queue.as_deref(),
                &group,
                &ctl,
                &count,
                &seen,
                ready,
                st,
            )
        }));
    }
    let abort = |subs: Vec<JoinHandle<Outcome<SubStats>>>,
                 pubs: Vec<JoinHandle<Outcome<PubStats>>>| {
        ctl.abort.store(true, Ordering::Relaxed);
        gate.open(false);
        join_all(subs);
        join_all(pubs);
    };
    if let Err(e) = wait_ready(&rx, subs, cfg.connect_timeout * 2) {
        abort(sub_handles, Vec::new());
        return Err(e.context("setting up subscribers"));
    }
    if t.sub.is_some() && subs > 0 && pubs > 0 {
        if let Err(e) = await_interest(cfg, t, &probe_seen) {
            abort(sub_handles, Vec::new());
            return Err(e);
        }
    }
    let mut pub_handles = Vec::new();
    for (i, count) in pub_counts.iter().enumerate() {
        let (cfg, t, gate, ctl) = (cfg.clone(), t.clone(), gate.clone(), ctl.clone());
        let count = count.clone();
        let n = msgs.map(|m| split(m, pubs, i));
        pub_handles.push(spawn_worker(format!("pub-{i}"), &tx, move |ready, st| {
            publisher(&cfg, &t, n, &gate, &ctl, &count, ready, st)
        }));
    }
    if let Err(e) = wait_ready(&rx, pubs, cfg.connect_timeout * 2) {
        abort(sub_handles, pub_handles);
        return Err(e.context("setting up publishers"));
    }
    thread::sleep(cfg.settle);

    let probe = CpuProbe::start(t.pid);
    let sub_probe = t.sub.as_ref().map(|s| CpuProbe::start(s.pid));
    let start = Instant::now();
    gate.open(true);
    let mut progress = Progress::new(&t.label, cfg.progress);
    let mut pub_out: Vec<Outcome<PubStats>> = Vec::new();
    let mut pubs_running = pub_handles.into_iter().map(Some).collect::<Vec<_>>();
    loop {
        thread::sleep(Duration::from_millis(20));
        let (sent, recv) = (sum(&pub_counts), sum(&sub_counts));
        progress.tick(sent, recv, if subs > 0 { recv } else { sent });
        for h in pubs_running.iter_mut() {
            if h.as_ref().is_some_and(|h| h.is_finished()) {
                if let Some(Ok(o)) = h.take().map(|h| h.join()) {
                    pub_out.push(o);
                }
            }
        }
        let pubs_done = pubs_running.iter().all(Option::is_none);
        if pubs_done && pubs > 0 && !ctl.pubs_done.load(Ordering::Relaxed) {
            // Now the real total is known (a duration run, or a failed publisher).
            let total = sum(&pub_counts);
            for g in &groups {
                g.expected.store(total, Ordering::Relaxed);
            }
            ctl.pubs_done.store(true, Ordering::Relaxed);
        }
        if pubs == 0 {
            if let Some(d) = cfg.duration {
                if start.elapsed() >= d {
                    ctl.abort.store(true, Ordering::Relaxed);
                }
            }
        }
        if pubs_done && sub_handles.iter().all(|h| h.is_finished()) {
            break;
        }
    }
    let sub_out = join_all(sub_handles);
    let mut cpu = probe.finish();
    let sub_cpu = sub_probe.map(|p| p.finish());
    progress.finish();
    // With --sub-url the server figures are both servers' sum.
    let pub_cpu = cpu;
    if let Some(sc) = &sub_cpu {
        cpu.server = match (pub_cpu.server, sc.server) {
            (Some(a), Some(b)) => Some(a + b),
            _ => None,
        };
        cpu.other = cpu.other.map(|o| (o - sc.server.unwrap_or(0.0)).max(0.0));
        cpu.server_rss_mib = add(pub_cpu.server_rss_mib, sc.server_rss_mib);
        cpu.server_peak_rss_mib = add(pub_cpu.server_peak_rss_mib, sc.server_peak_rss_mib);
    }

    let sent = sum(&pub_counts);
    let received = sum(&sub_counts);
    let pub_start = pub_out.iter().filter_map(|o| o.stats.start).min();
    let pub_end = pub_out.iter().filter_map(|o| o.stats.end).max();
    let sub_first = sub_out.iter().filter_map(|o| o.stats.first).min();
    let sub_last = sub_out.iter().filter_map(|o| o.stats.last).max();
    let (from, to) = match cfg.scenario {
        Scenario::Pub => (pub_start, pub_end),
        Scenario::Sub => (sub_first, sub_last),
        _ => (pub_start, sub_last.max(pub_end)),
    };
    let elapsed_s = match (from, to) {
        (Some(a), Some(b)) => b.saturating_duration_since(a).as_secs_f64(),
        _ => 0.0,
    };
    let expected = match cfg.scenario {
        Scenario::Pub => 0,
        Scenario::Sub => msgs.map_or(received, |m| m * subs as u64),
        Scenario::Queue => sent,
        _ => sent * subs as u64,
    };
    let errors = pub_out
        .iter()
        .filter_map(|o| o.error.clone())
        .chain(sub_out.iter().filter_map(|o| o.error.clone()))
        .collect();
    let mut r = RunResult::from_raw(Raw {
        label: t.label.clone(),
        scenario: cfg.scenario.name().into(),
        url: t.url.to_string(),
        server_pid: t.pid,
        size: cfg.size,
        pubs,
        subs,
        sent,
        received,
        expected,
        elapsed_s,
        server_cpu_s: cpu.server,
        gen_cpu_s: cpu.generator,
        other_cpu_s: cpu.other,
        server_rss_mib: cpu.server_rss_mib,
        server_peak_rss_mib: cpu.server_peak_rss_mib,
        latency: None,
        errors,
    });
    if let (Some(s), Some(sc)) = (&t.sub, &sub_cpu) {
        let per = |c: Option<f64>| c.and_then(|c| (sent > 0).then(|| c * 1e6 / sent as f64));
        r.servers = Some(SplitServers {
            pub_url: t.url.to_string(),
            pub_server_pid: t.pid,
            pub_server_cpu_s: pub_cpu.server,
            pub_server_us_per_msg: per(pub_cpu.server),
            pub_server_rss_mib: pub_cpu.server_rss_mib,
            sub_url: s.url.to_string(),
            sub_server_pid: s.pid,
            sub_server_cpu_s: sc.server,
            sub_server_us_per_msg: per(sc.server),
            sub_server_rss_mib: sc.server_rss_mib,
        });
    }
    Ok(r)
}

fn add(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    Some(a? + b?)
}

#[allow(clippy::too_many_arguments)]
fn publisher(
    cfg: &RunConfig,
    t: &Target,
    n: Option<u64>,
    gate: &Gate,
    ctl: &Ctl,
    count: &AtomicU64,
    ready: &mut Ready,
    st: &mut PubStats,
) -> Result<()> {
    let mut conn = Conn::connect(&t.url, "bench-pub", 64 * 1024, cfg.connect_timeout)?;
    check_payload(&conn, cfg.size)?;
    ready.ok();
    if !gate.wait() {
        return Ok(());
    }
    let one = pub_frame(&cfg.subject, None, cfg.size);
    let per = (cfg.batch / one.len()).max(1);
    let batch = one.repeat(per);
    let start = Instant::now();
    let deadline = cfg.duration.map(|d| start + d);
    st.start = Some(start);
    let mut left = n.unwrap_or(u64::MAX);
    while left > 0 {
        if deadline.is_some_and(|d| Instant::now() >= d) || ctl.aborted() {
            break;
        }
        let k = left.min(per as u64) as usize;
        conn.write_all(&batch[..k * one.len()])?;
        left -= k as u64;
        count.fetch_add(k as u64, Ordering::Relaxed);
    }
    // The PONG proves the server has taken in every message we wrote.
    conn.roundtrip(FLUSH_TIMEOUT)?;
    st.end = Some(Instant::now());
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn subscriber(
    cfg: &RunConfig,
    t: &Target,
    queue: Option<&str>,
    group: &Group,
    ctl: &Ctl,
    count: &AtomicU64,
    probe_seen: &AtomicBool,
    ready: &mut Ready,
    st: &mut SubStats,
) -> Result<()> {
    let mut conn = Conn::connect(t.sub_url(), "bench-sub", cfg.read_buf, cfg.connect_timeout)?;
    subscribe(&mut conn, &cfg.subject, queue, 1, cfg.connect_timeout)?;
    ready.ok();
    let mut mine = 0u64;
    let mut last_data = Instant::now();
    let mut done_seen: Option<Instant> = None;
    loop {
        let mut got = 0u64;
        let mut probe = false;
        let r = conn.read_some(&mut |ev| {
            if let Event::Msg { sid: 1, reply, .. } = ev {
                // Only interest probes carry a reply subject.
                if reply.is_none() {
                    got += 1;
                } else {
                    probe = true;
                }
            }
        })?;
        if probe {
            probe_seen.store(true, Ordering::Relaxed);
        }
        let now = Instant::now();
        if got > 0 {
            st.first.get_or_insert(now);
            st.last = Some(now);
            last_data = now;
            mine += got;
            count.store(mine, Ordering::Relaxed);
            let total = group.recv.fetch_add(got, Ordering::Relaxed) + got;
            if total >= group.expected.load(Ordering::Relaxed) || ctl.aborted() {
                return Ok(());
            }
            continue;
        }
        match r {
            ReadOutcome::Closed => {
                anyhow::bail!(
                    "server closed the connection after {mine} messages{}",
                    conn.err_suffix()
                )
            }
            ReadOutcome::Data | ReadOutcome::Timeout => {}
        }
        if ctl.aborted()
            || group.recv.load(Ordering::Relaxed) >= group.expected.load(Ordering::Relaxed)
        {
            return Ok(());
        }
        // Silence counts only once nothing more is coming: after the
        // publishers finished, or (for `sub`) once traffic has started.
        let waiting_on = if ctl.pubs_done.load(Ordering::Relaxed) {
            Some(*done_seen.get_or_insert(now))
        } else if cfg.scenario == Scenario::Sub && st.first.is_some() {
            Some(last_data)
        } else {
            None
        };
        if let Some(since) = waiting_on {
            if now.duration_since(since.max(last_data)) > cfg.idle_timeout {
                anyhow::bail!(
                    "no messages for {:?}; giving up with {} of {} in its group",
                    cfg.idle_timeout,
                    group.recv.load(Ordering::Relaxed),
                    group.expected.load(Ordering::Relaxed)
                );
            }
        }
    }
}
