//! Keeps the shards' cores awake while a conversation is under way.
//!
//! A request/reply exchange on one box wakes a blocked client thread at
//! every hop, and the kernel puts it on an idle core. When that core has
//! halted, waking it is costly: on the 2-vCPU VM that the benchmarks run on
//! (guest halt polling off) each such wake-up took ~35 µs, two per round
//! trip, and set Broker Edge's request/reply latency at ~100 µs whatever
//! the server did (BENCHMARKS.md, "Session 9: idle pollers"). The
//! kernel's own cure is to poll for a while before halting (cpuidle
//! haltpoll, `idle=poll`); this does the same from user space, and only
//! while a conversation lasts.
//!
//! Each shard gets one poller thread on its core with the `SCHED_IDLE`
//! policy: it runs only when nothing else wants the core, any other
//! thread woken there preempts it at once, and the scheduler still counts
//! the core as idle when it places a woken thread. While a socket has just
//! read a small message (see [`conversation`]) the pollers spin; when the
//! read spin would have lapsed they park again, so an idle broker still
//! costs nothing.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::Thread;
use std::time::{Duration, Instant};

/// Microseconds since [`epoch`] until which the pollers keep spinning; 0
/// (or any past instant) when no conversation is live.
static TALK_UNTIL: AtomicU64 = AtomicU64::new(0);

/// One shard's poller.
struct Poller {
    thread: Thread,
    /// Until when this poller's own shard spins on a conversation: its
    /// core is awake then, and the poller keeps out of its way.
    own_until: AtomicU64,
}

/// The poller threads, to unpark when a conversation starts.
static POLLERS: Mutex<Vec<Arc<Poller>>> = Mutex::new(Vec::new());

thread_local! {
    /// The poller on this shard's core.
    static MINE: std::cell::RefCell<Option<Arc<Poller>>> = const { std::cell::RefCell::new(None) };
}

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn now_us() -> u64 {
    epoch().elapsed().as_micros() as u64
}

/// Whether the pollers are on: `BROKER_EDGE_IDLE_POLL=0` turns them off.
pub(super) fn enabled() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var("BROKER_EDGE_IDLE_POLL").map_or(true, |v| v != "0"))
}

/// Starts this core's poller. Called on a shard's thread before its
/// executor runs: the new thread inherits the shard's CPU pinning.
pub(super) fn start_here() {
    if !enabled() {
        return;
    }
    epoch();
    let (tx, rx) = std::sync::mpsc::channel::<Arc<Poller>>();
    let spawned = std::thread::Builder::new()
        .name("idle-poll".into())
        .spawn(move || {
            if let Ok(me) = rx.recv() {
                poll_loop(&me);
            }
        });
    match spawned {
        Ok(h) => {
            let me = Arc::new(Poller {
                thread: h.thread().clone(),
                own_until: AtomicU64::new(0),
            });
            MINE.with(|m| *m.borrow_mut() = Some(me.clone()));
            if let Ok(mut p) = POLLERS.lock() {
                p.push(me.clone());
            }
            let _ = tx.send(me);
        }
        Err(e) => tracing::debug!("no idle poller for this shard: {e}"),
    }
}

/// A socket read a small message: keep the cores awake for `window`.
pub(super) fn conversation(window: Duration) {
    let now = now_us();
    let until = now + window.as_micros() as u64;
    MINE.with(|m| {
        if let Some(me) = &*m.borrow() {
            me.own_until.store(until, Ordering::Relaxed);
        }
    });
    let prev = TALK_UNTIL.load(Ordering::Relaxed);
    // Several shards may write; the window only needs to be roughly right,
    // and skipping tiny extensions keeps the cache line quiet.
    if until < prev + 8 {
        return;
    }
    TALK_UNTIL.store(until, Ordering::Relaxed);
    if prev <= now {
        // Our own poller too: it waits out our window, then covers our
        // core if another shard still talks.
        if let Ok(p) = POLLERS.lock() {
            for t in p.iter() {
                t.thread.unpark();
            }
        }
    }
}

fn poll_loop(me: &Poller) {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: sets this thread's own policy; `param` outlives the call.
    if unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) } != 0 {
        // Without SCHED_IDLE the spin would compete with real work.
        tracing::debug!(
            "idle poller off: SCHED_IDLE refused: {}",
            std::io::Error::last_os_error()
        );
        return;
    }
    loop {
        let now = now_us();
        if now >= TALK_UNTIL.load(Ordering::Relaxed) {
            std::thread::park();
            continue;
        }
        let own = me.own_until.load(Ordering::Relaxed);
        if own > now {
            // Our shard spins on the conversation itself.
            std::thread::park_timeout(Duration::from_micros(own - now));
            continue;
        }
        // SAFETY: no arguments, no memory.
        unsafe { libc::sched_yield() };
    }
}
