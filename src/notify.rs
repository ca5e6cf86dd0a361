//! Talking to the service manager (systemd's `sd_notify` protocol, for a
//! `Type=notify` unit): `READY=1` once every listener is bound and every
//! shard has recovered its streams, `STATUS=` lines on the way,
//! `RELOADING=1` / `READY=1` around a SIGHUP reload, `STOPPING=1` on
//! shutdown or lame duck, and `WATCHDOG=1` while all shards answer.
//!
//! Without `NOTIFY_SOCKET` in the environment every call is a no-op (the
//! crate checks the variable on each send), and without `WATCHDOG_USEC`
//! there is no watchdog thread at all.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sd_notify::NotifyState;

use crate::global::{Ctl, Global};

/// Where start-up stands, and a heartbeat per shard (bumped from the
/// shard's control loop, read by the watchdog thread).
pub struct Lifecycle {
    shards: usize,
    started: AtomicUsize,
    ready: AtomicBool,
    stopping: AtomicBool,
    beats: Vec<AtomicU64>,
}

impl Lifecycle {
    pub fn new(shards: usize) -> Lifecycle {
        Lifecycle {
            shards,
            started: AtomicUsize::new(0),
            ready: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            beats: (0..shards).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// True once every shard serves (READY=1 was sent).
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Called by shard `id` from its control loop: it is alive.
    pub fn beat(&self, id: usize) {
        if let Some(b) = self.beats.get(id) {
            b.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn beats(&self) -> Vec<u64> {
        self.beats
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect()
    }
}

fn send(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::debug!("could not notify the service manager: {e}");
    }
}

fn recovering(g: &Global, done: usize) -> String {
    if g.jetstream.get().is_some() {
        format!("recovering streams: {done} of {} shards done", g.shards)
    } else {
        format!("starting shards: {done} of {} up", g.shards)
    }
}

/// Listeners are bound and the shards are about to start.
pub fn starting(g: &Global) {
    send(&[NotifyState::Status(&recovering(g, 0))]);
}

/// A shard has recovered its streams and is about to serve its control
/// loop. The last one to get here tells the service manager the server is ready.
pub fn shard_up(g: &Global) {
    // Shards come up on their own threads: counting and telling happen
    // under one lock, so no "N of M up" can follow the READY.
    static ORDER: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _order = ORDER.lock().unwrap_or_else(|e| e.into_inner());
    let l = &g.lifecycle;
    let done = l.started.fetch_add(1, Ordering::AcqRel) + 1;
    if done < l.shards {
        send(&[NotifyState::Status(&recovering(g, done))]);
        return;
    }
    let streams = g.jetstream.get().map_or(0, |c| c.stored.len());
    let status = format!(
        "ready: clients on port {}, {streams} streams recovered on {} shards",
        g.client_addr.port(),
        g.shards
    );
    l.ready.store(true, Ordering::Release);
    // A shutdown that came first wins: no READY after STOPPING.
    if !l.stopping.load(Ordering::Acquire) {
        send(&[NotifyState::Ready, NotifyState::Status(&status)]);
    }
}

/// A SIGHUP reload starts. Returns whether RELOADING=1 was sent: before
/// READY it is not (a READY=1 after the reload would announce a server
/// still recovering).
pub fn reloading(g: &Global) -> bool {
    let l = &g.lifecycle;
    if !l.is_ready() || l.stopping.load(Ordering::Acquire) {
        return false;
    }
    // systemd ≥ 253 (Type=notify-reload) wants the monotonic time of the
    // reload with RELOADING=1; older ones ignore it.
    let mut states = vec![
        NotifyState::Reloading,
        NotifyState::Status("reloading configuration"),
    ];
    if let Ok(t) = NotifyState::monotonic_usec_now() {
        states.push(t);
    }
    send(&states);
    true
}

/// The reload that [`reloading`] announced is over (applied or refused):
/// the server is ready again either way.
pub fn reloaded(g: &Global, announced: bool, result: &Result<(), String>) {
    if !announced || g.lifecycle.stopping.load(Ordering::Acquire) {
        return;
    }
    let status = match result {
        Ok(()) => "ready: configuration reloaded".to_string(),
        Err(e) => format!("ready: configuration reload failed: {e}"),
    };
    send(&[NotifyState::Ready, NotifyState::Status(&status)]);
}

/// Shutdown or lame duck has begun; the watchdog stops pinging.
pub fn stopping(g: &Global, why: &str) {
    if g.lifecycle.stopping.swap(true, Ordering::AcqRel) {
        return;
    }
    send(&[NotifyState::Stopping, NotifyState::Status(why)]);
}

/// Starts the watchdog thread when the service manager asked for pings
/// (`WATCHDOG_USEC`, for this process if `WATCHDOG_PID` says so).
///
/// Every half period the thread asks each shard, through its control
/// channel, to bump its heartbeat, and pings only if every shard answered
/// the previous request: a shard whose executor is stuck stops the pings
/// and lets systemd restart the service.
pub fn spawn_watchdog(g: Arc<Global>) {
    let Some(timeout) = sd_notify::watchdog_enabled() else {
        return;
    };
    if timeout.is_zero() {
        return;
    }
    let period = (timeout / 2).max(Duration::from_millis(1));
    let spawned = std::thread::Builder::new()
        .name("watchdog".into())
        .spawn(move || watchdog(g, period));
    if let Err(e) = spawned {
        tracing::error!("could not start the watchdog thread: {e}");
    }
}

fn watchdog(g: Arc<Global>, period: Duration) {
    let l = &g.lifecycle;
    let mut seen = l.beats();
    let mut stuck_reported = false;
    loop {
        for (id, tx) in g.ctl.iter().enumerate() {
            // Unbounded: never waits, even on a stuck shard.
            let _ = tx.try_send(Ctl::Run(Box::new(move |shard| shard.g.lifecycle.beat(id))));
        }
        std::thread::sleep(period);
        if l.stopping.load(Ordering::Acquire) {
            return;
        }
        let now = l.beats();
        let stuck: Vec<usize> = (0..now.len()).filter(|&i| now[i] == seen[i]).collect();
        seen = now;
        if !l.is_ready() {
            continue;
        }
        if stuck.is_empty() {
            send(&[NotifyState::Watchdog]);
            stuck_reported = false;
        } else if !stuck_reported {
            tracing::error!(
                "watchdog: shard(s) {stuck:?} did not answer within {period:?}; no longer pinging the service manager"
            );
            stuck_reported = true;
        }
    }
}
