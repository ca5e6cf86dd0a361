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
use crate::stats::{Raw, RunResult};
use anyhow::Result;
use std::sync::atomic::{AtomicU64, Ordering};
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
    let pub_counts: Vec<Arc<AtomicU64>> = (0..pubs).map(|_| Arc::default()).collect();
    let queue = (cfg.scenario == Scenario::Queue).then(|| cfg.queue.clone());

    let mut sub_handles = Vec::new();
    for i in 0..subs {
        let (cfg, t, ctl) = (cfg.clone(), t.clone(), ctl.clone());
        let group = groups[i % groups.len()].clone();
        let count = sub_counts[i].clone();
        let queue = queue.clone();
        sub_handles.push(spawn_worker(format!("sub-{i}"), &tx, move |ready, st| {
            subscriber(&cfg, &t, queue.as_deref(), &group, &ctl, &count, ready, st)
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
    let cpu = probe.finish();
    progress.finish();

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
    Ok(RunResult::from_raw(Raw {
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
    }))
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
    ready: &mut Ready,
    st: &mut SubStats,
) -> Result<()> {
    let mut conn = Conn::connect(&t.url, "bench-sub", cfg.read_buf, cfg.connect_timeout)?;
    subscribe(&mut conn, &cfg.subject, queue, 1, cfg.connect_timeout)?;
    ready.ok();
    let mut mine = 0u64;
    let mut last_data = Instant::now();
    let mut done_seen: Option<Instant> = None;
    loop {
        let mut got = 0u64;
        let r = conn.read_some(&mut |ev| {
            if let Event::Msg { sid: 1, .. } = ev {
                got += 1;
            }
        })?;
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
