//! Keeps the shards' cores awake while a client on this machine is in a
//! conversation with the broker.
//!
//! A request/reply exchange with clients on the same box wakes a blocked
//! client thread at every hop. The kernel puts a woken thread on an idle
//! core when it can, and an idle core has usually halted: on the 2-vCPU VM
//! the benchmarks run on (guest halt polling off) each such wake-up cost
//! tens of µs, two per round trip, and held Broker Edge's request/reply
//! latency at ~100 µs whatever the server did (BENCHMARKS.md, "Session 9:
//! idle pollers").
//!
//! So each shard starts one poller thread on its core. For the read-spin
//! window after a socket whose peer is on this machine reads a small
//! message (see [`conversation`]), the pollers on the other shards' cores
//! spin, calling `sched_yield` on every turn. No core halts, and since no
//! core looks idle the kernel hands the client thread that the shard wakes
//! to the shard's own core (the wake-up is synchronous: the waker is about
//! to wait), where the shard's next yield lets it run: no cross-core
//! wake-up at all. The pollers keep normal priority for that reason; at
//! `SCHED_IDLE` the cores still looked idle, the client went to another
//! core, and round trips were ~30% slower (measured, BENCHMARKS.md). A
//! yielding poller takes almost nothing from other work on its core: each
//! yield hands the core over for a full time slice, and a poller whose
//! yield kept it waiting (the core is busy anyway) parks until the next
//! conversation. The poller on the conversing shard's own core stays
//! parked, and when the window lapses they all park, so an idle broker
//! costs nothing.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::Thread;
use std::time::{Duration, Instant};

/// Microseconds since [`epoch`] until which the pollers keep spinning; 0
/// (or any past instant) when no conversation is live.
static TALK_UNTIL: AtomicU64 = AtomicU64::new(0);

/// A `sched_yield` that kept the poller off its core for longer than this
/// means other threads want the core (measured: 30 µs also caught a lone
/// conversation's client threads and lost most of the gain).
const BUSY_US: u64 = 100;

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
    static MINE: std::cell::OnceCell<Arc<Poller>> = const { std::cell::OnceCell::new() };
}

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn now_us() -> u64 {
    micros(Instant::now())
}

/// `at` in microseconds since [`epoch`].
fn micros(at: Instant) -> u64 {
    at.saturating_duration_since(epoch()).as_micros() as u64
}

/// Whether the pollers are on (`broker_edge { idle_poll }`).
pub(super) fn enabled() -> bool {
    super::tuning().idle_poll
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
            MINE.with(|m| m.set(me.clone()).ok());
            if let Ok(mut p) = POLLERS.lock() {
                p.push(me.clone());
            }
            let _ = tx.send(me);
        }
        Err(e) => tracing::debug!("no idle poller for this shard: {e}"),
    }
}

/// A socket read a small message at `at`: keep the cores awake for
/// `window`. (The caller's clock reading: this runs on every small read.)
pub(super) fn conversation(at: Instant, window: Duration) {
    let now = micros(at);
    let until = now + window.as_micros() as u64;
    MINE.with(|m| {
        if let Some(me) = m.get() {
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
        // Our own poller too: it parks again at once (see `poll_loop`).
        // If our window lapses while another shard still talks, it stays
        // parked until the next conversation starts.
        if let Ok(p) = POLLERS.lock() {
            for t in p.iter() {
                t.thread.unpark();
            }
        }
    }
}

fn poll_loop(me: &Poller) {
    loop {
        let now = now_us();
        if now >= TALK_UNTIL.load(Ordering::Relaxed) {
            std::thread::park();
            continue;
        }
        if me.own_until.load(Ordering::Relaxed) > now {
            // Our shard converses itself, so its core is awake. Park until
            // the next conversation starts: waking up to check again would
            // preempt the shard every window (under many clients, that
            // cost a quarter of request/reply throughput, BENCHMARKS.md).
            std::thread::park();
            continue;
        }
        // SAFETY: no arguments, no memory.
        unsafe { libc::sched_yield() };
        if now_us() - now > BUSY_US {
            // Other threads had this core for a while: it is not idle, and
            // polling only steers wake-ups away from it. Sit out until the
            // next conversation starts (many busy clients lost ~10% of
            // their request rate otherwise).
            std::thread::park();
        }
    }
}

/// Whether a peer at `peer` talking to us at `local` runs on this machine:
/// loopback, or our own address on the interface it came in on.
pub(super) fn same_host(local: IpAddr, peer: IpAddr) -> bool {
    let peer = peer.to_canonical();
    peer.is_loopback() || peer == local.to_canonical()
}

#[cfg(test)]
mod tests {
    use super::same_host;

    #[test]
    fn peers_on_this_machine() {
        let ip = |s: &str| s.parse().unwrap();
        assert!(same_host(ip("127.0.0.1"), ip("127.0.0.1")));
        assert!(same_host(ip("127.0.0.1"), ip("127.0.0.53")));
        assert!(same_host(ip("::1"), ip("::1")));
        assert!(same_host(ip("::ffff:127.0.0.1"), ip("::ffff:127.0.0.1")));
        assert!(same_host(ip("192.168.1.5"), ip("192.168.1.5")));
        assert!(same_host(ip("::ffff:10.0.0.2"), ip("10.0.0.2")));
        assert!(!same_host(ip("192.168.1.5"), ip("192.168.1.6")));
        assert!(!same_host(ip("::ffff:10.0.0.2"), ip("::ffff:10.0.0.3")));
        assert!(!same_host(ip("fe80::1"), ip("fe80::2")));
    }
}
