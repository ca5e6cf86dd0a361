//! The one place that knows glommio: executors, tasks, timers and
//! sockets. The rest of the server uses
//! these names, so another io_uring runtime could replace this file.

use std::future::Future;
use std::os::fd::{FromRawFd, IntoRawFd, OwnedFd};
use std::time::Duration;

use glommio::{CpuSet, LocalExecutorPoolBuilder, PoolPlacement};

pub use glommio::net::TcpStream;
pub use glommio::timer::sleep;
pub use glommio::{spawn_local, Task};

/// Memory glommio registers per executor for I/O. Small, so that the
/// default 8 MiB RLIMIT_MEMLOCK is enough for several shards.
const IO_MEMORY: usize = 512 * 1024;

/// How long an executor with nothing to do keeps looking for work before it
/// sleeps in the kernel. Parking and waking costs tens of microseconds of
/// CPU per cycle; a short spin keeps request/reply hops cheap under load
/// while an idle server still sleeps. `BROKER_EDGE_SPIN_US` overrides.
fn spin_before_park() -> Duration {
    let us = std::env::var("BROKER_EDGE_SPIN_US")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    Duration::from_micros(us)
}

/// Runs `make()`'s future on `shards` executors, one per CPU where
/// possible, and waits for all of them to finish.
pub fn run_shards<G, F>(shards: usize, pin: bool, make: G) -> std::io::Result<()>
where
    G: FnOnce() -> F + Clone + Send + 'static,
    F: Future<Output = ()> + 'static,
{
    let cpus = CpuSet::online().ok();
    let placement = match cpus {
        Some(set) if pin && set.len() >= shards => PoolPlacement::MaxSpread(shards, Some(set)),
        _ => PoolPlacement::Unbound(shards),
    };
    let handles = LocalExecutorPoolBuilder::new(placement)
        .name("shard")
        .io_memory(IO_MEMORY)
        .ring_depth(256)
        .spin_before_park(spin_before_park())
        .on_all_shards(make)
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    for r in handles.join_all() {
        r.map_err(|e| std::io::Error::other(e.to_string()))?;
    }
    Ok(())
}

/// Makes an accepted socket usable on the current executor. Returns the
/// reading and writing halves (two descriptors of one socket), so a reader
/// task and a writer task each own one.
pub fn bind_socket(fd: OwnedFd) -> std::io::Result<(TcpStream, TcpStream)> {
    let dup = fd.try_clone()?;
    // SAFETY: each descriptor is owned exactly once by the stream made here.
    let r = unsafe { TcpStream::from_raw_fd(fd.into_raw_fd()) };
    let w = unsafe { TcpStream::from_raw_fd(dup.into_raw_fd()) };
    let _ = r.set_nodelay(true);
    Ok((r, w))
}

/// Waits at most `d` for `f`.
pub async fn timeout<T>(d: Duration, f: impl Future<Output = T>) -> Option<T> {
    glommio::timer::timeout(d, async move { Ok(f.await) })
        .await
        .ok()
}

/// Gives every other ready task on this executor a turn (writers flush
/// what a burst of deliveries queued).
pub async fn yield_now() {
    futures_lite::future::yield_now().await
}

/// Runs a blocking function (bcrypt, say) on a helper thread so the shard
/// keeps serving meanwhile.
pub async fn blocking<F, R>(f: F) -> R
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    glommio::executor().spawn_blocking(f).await
}
