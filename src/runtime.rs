//! The one place that knows glommio: executors, tasks, timers and
//! sockets. The rest of the server uses
//! these names, so another io_uring runtime could replace this file.

use std::future::Future;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd};
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_lite::{AsyncRead, AsyncWrite};
use glommio::{CpuSet, LocalExecutorPoolBuilder, PoolPlacement};

pub use glommio::net::TcpStream;
pub use glommio::timer::sleep;
pub use glommio::{spawn_local, Task};

mod idle_poll;
mod writer;

pub use writer::Writer;

/// Memory glommio registers per executor for I/O. Small, so that the
/// default 8 MiB RLIMIT_MEMLOCK is enough for several shards.
const IO_MEMORY: usize = 512 * 1024;

/// The latency policy and pinning in force (`broker_edge { }` in the
/// configuration), set once before the shards start.
static TUNING: OnceLock<crate::options::Tuning> = OnceLock::new();

/// Installs the configured tuning; the first call wins.
pub fn configure(t: crate::options::Tuning) {
    let _ = TUNING.set(t);
}

fn tuning() -> crate::options::Tuning {
    TUNING.get().copied().unwrap_or_default()
}

/// How long a connection that just received data keeps trying to read
/// before it waits for readiness through io_uring (see [`Socket`]); zero
/// turns spinning off.
fn read_spin() -> Duration {
    tuning().read_spin
}

/// How long spinning reads keep the shard's task queue busy before they
/// all step aside for one reactor turn (io_uring completions, timers,
/// wake-ups from other shards). A turn costs ~13 µs here (three
/// io_uring_enter calls).
fn turn_every() -> Duration {
    tuning().spin_turn
}

thread_local! {
    /// When the shard's spinning reads last came back from a reactor turn.
    /// Shared, so that they all nap in the same pass: glommio turns its
    /// reactor only once no task is ready, and a read that napped alone
    /// would sit deaf while the others kept spinning.
    static LAST_TURN: std::cell::Cell<Option<Instant>> = const { std::cell::Cell::new(None) };
    /// This shard's busy time handed out by glommio so far.
    static BUSY: std::cell::Cell<Duration> = const { std::cell::Cell::new(Duration::ZERO) };
}

/// Time this shard's executor has spent running tasks and polling for I/O
/// (not parked) since it started. glommio hands its counters out once and
/// resets them, so they are summed here; nothing else may take them.
pub fn busy_time() -> Duration {
    let d = glommio::executor().executor_stats().total_runtime();
    BUSY.with(|b| {
        b.set(b.get() + d);
        b.get()
    })
}

/// A read at most this long is taken for one message of a conversation
/// (request/reply), the traffic whose every hop wakes a sleeping client.
/// Streams of messages fill the buffer and keep the cores busy anyway.
const SMALL_READ: usize = 512;

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
        // Keeps the reactor turning (without sleeping) while a socket's read
        // spin is live; an executor with no recent work still parks.
        .spin_before_park(read_spin())
        .on_all_shards(move || {
            idle_poll::start_here();
            make()
        })
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    for r in handles.join_all() {
        r.map_err(|e| std::io::Error::other(e.to_string()))?;
    }
    Ok(())
}

/// Makes an accepted socket usable on the current executor. Returns the
/// reading and writing halves (two descriptors of one socket), so a reader
/// task and a writer task each own one.
pub fn bind_socket(fd: OwnedFd) -> std::io::Result<(Socket, Writer)> {
    let dup = fd.try_clone()?;
    // SAFETY: each descriptor is owned exactly once by the stream made here.
    let r = unsafe { TcpStream::from_raw_fd(fd.into_raw_fd()) };
    let w = unsafe { TcpStream::from_raw_fd(dup.into_raw_fd()) };
    let _ = r.set_nodelay(true);
    let mut socket = Socket::new(r);
    socket.same_host = match (socket.inner.local_addr(), socket.inner.peer_addr()) {
        (Ok(l), Ok(p)) => idle_poll::same_host(l.ip(), p.ip()),
        _ => false,
    };
    Ok((socket, Writer::new(w)))
}

/// The reading side of a client socket.
///
/// glommio waits for readability with an io_uring poll and re-arms one
/// after every short read, so each message of a request/reply exchange
/// pays an io_uring completion and, when the shard slept, a thread wake-up
/// (~35 µs per hop here; `docs/architecture.md`). This reads with a plain
/// non-blocking `recv` instead, and after data arrived keeps retrying for
/// [`read_spin`] (yielding to the shard's other tasks in between) before
/// falling back to glommio's readiness wait. A connection with no traffic
/// therefore costs nothing, and an idle shard still parks.
pub struct Socket {
    inner: TcpStream,
    spin: Duration,
    hot_until: Option<Instant>,
    nap: Option<glommio::timer::Timer>,
    /// The peer runs on this machine: its threads are what the idle
    /// pollers help (see `runtime/idle_poll.rs`).
    same_host: bool,
}

impl Socket {
    fn new(inner: TcpStream) -> Socket {
        Socket {
            inner,
            spin: read_spin(),
            hot_until: None,
            nap: None,
            same_host: false,
        }
    }

    fn got_data(&mut self, n: usize) {
        if !self.spin.is_zero() {
            let now = Instant::now();
            self.hot_until = Some(now + self.spin);
            if n <= SMALL_READ && self.same_host && idle_poll::enabled() {
                idle_poll::conversation(now, self.spin);
            }
        }
    }
}

impl AsyncRead for Socket {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        while let Some(until) = this.hot_until {
            if let Some(nap) = &mut this.nap {
                if Pin::new(nap).poll(cx).is_pending() {
                    return Poll::Pending;
                }
                this.nap = None;
                LAST_TURN.set(Some(Instant::now()));
            }
            // SAFETY: `buf` is valid for `buf.len()` writable bytes.
            let n = unsafe {
                libc::recv(
                    this.inner.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    libc::MSG_DONTWAIT,
                )
            };
            if n >= 0 {
                this.got_data(n as usize);
                return Poll::Ready(Ok(n as usize));
            }
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::Interrupted => continue,
                io::ErrorKind::WouldBlock => {}
                _ => return Poll::Ready(Err(e)),
            }
            if Instant::now() >= until {
                this.hot_until = None;
                break;
            }
            // Nothing yet. Let a thread the kernel queued on this core run
            // first: on a small box that is often the peer whose message we
            // wait for (measured: yielding on every try beat yielding only
            // before a reactor turn, BENCHMARKS.md).
            // SAFETY: no arguments, no memory.
            unsafe { libc::sched_yield() };
            // Retry after the shard's other ready tasks ran (writers send
            // what this read produced), until a reactor turn is due: then
            // nap, so that once every spinning read naps the queue empties
            // and glommio serves io_uring completions, timers and wake-ups
            // from other shards (a task that only re-woke itself would
            // starve them).
            let now = Instant::now();
            let last = LAST_TURN.get().unwrap_or_else(|| {
                LAST_TURN.set(Some(now));
                now
            });
            if now.duration_since(last) < turn_every() {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            this.nap = Some(glommio::timer::Timer::new(Duration::from_micros(1)));
        }
        let r = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(n)) = r {
            this.got_data(n);
        }
        r
    }
}

impl AsyncWrite for Socket {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_close(cx)
    }
}

/// Waits at most `d` for `f`.
pub async fn timeout<T>(d: Duration, f: impl Future<Output = T>) -> Option<T> {
    glommio::timer::timeout(d, async move { Ok(f.await) })
        .await
        .ok()
}

/// [`timeout`] whose timer is made only if `f` is not ready at once (a
/// write to a socket with room): no timer armed and cancelled per batch.
pub async fn timeout_lazy<T>(d: Duration, f: impl Future<Output = T>) -> Option<T> {
    let mut f = std::pin::pin!(f);
    if let Some(v) = futures_lite::future::poll_once(f.as_mut()).await {
        return Some(v);
    }
    timeout(d, f).await
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
