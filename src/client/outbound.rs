//! A connection's outbound buffer. Deliveries append protocol frames here
//! without awaiting; the connection's writer task flushes whatever gathered
//! since its last write in one `send`, so a burst of messages costs one
//! system call.
//!
//! Buffers grow with traffic and shrink when it stops: a buffer that grew
//! past [`SMALL`] is watched by a [`Quiet`] timer, armed only while it is
//! grown, and once [`QUIET`] passed without a large batch both the queue
//! and the writer's spare are dropped (the next message allocates again).
//! Sustained traffic keeps its buffers: nothing is re-allocated per
//! message or per write while large batches keep coming.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use crate::runtime;

/// What a connection's buffer may keep while quiet: below this nothing is
/// watched (a buffer this small costs less than the timer would).
pub const SMALL: usize = 16 * 1024;
/// A batch (or read) larger than this counts as traffic that needs a grown
/// buffer: it keeps a grown buffer from shrinking.
pub const BUSY: usize = SMALL / 4;
/// How long a grown buffer waits without a large batch before it shrinks.
pub const QUIET: Duration = Duration::from_secs(4);
/// After a connection shrank its buffers, how long the shard waits for the
/// rest of the wave before asking the allocator to give free pages back.
const TRIM_AFTER: Duration = Duration::from_secs(1);

/// Tracks whether a grown buffer is still needed. The owner reports large
/// reads or writes ([`Quiet::busy`]); the first report starts a watch task
/// ([`Quiet::watch`]) that sleeps until [`QUIET`] passed since the last
/// report, then marks the buffer due to shrink, wakes the owner and ends.
/// An idle connection with small buffers has no timer at all.
#[derive(Default)]
pub struct Quiet {
    last_busy: Cell<Option<Instant>>,
    armed: Cell<bool>,
    due: Cell<bool>,
    waker: Cell<Option<Waker>>,
}

impl Quiet {
    /// A large read or write happened `now`. Returns true when no watch is
    /// running: the caller then starts one with [`Quiet::watch`].
    pub fn busy(&self, now: Instant) -> bool {
        self.last_busy.set(Some(now));
        self.due.set(false);
        !self.armed.replace(true)
    }

    /// A watch is running (the buffer is grown).
    pub fn armed(&self) -> bool {
        self.armed.get()
    }

    /// Sleeps until `quiet` passed without a [`Quiet::busy`], then marks the
    /// buffer due and wakes its owner. The timer exists only while armed.
    pub async fn watch(self: Rc<Self>, quiet: Duration) {
        let mut wait = quiet;
        loop {
            runtime::sleep(wait).await;
            let since = self.last_busy.get().map_or(quiet, |t| t.elapsed());
            if since >= quiet {
                break;
            }
            wait = quiet - since;
        }
        self.armed.set(false);
        self.due.set(true);
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }

    /// Consumes the "due to shrink" mark.
    pub fn take_due(&self) -> bool {
        self.due.replace(false)
    }

    /// Resolves once the buffer is due to shrink (the mark stays for
    /// [`Quiet::take_due`]).
    pub fn due(&self) -> impl Future<Output = ()> + '_ {
        std::future::poll_fn(move |cx| {
            if self.due.get() {
                Poll::Ready(())
            } else {
                self.waker.set(Some(cx.waker().clone()));
                Poll::Pending
            }
        })
    }
}

/// What the writer gets from [`Outbound::take_into`].
#[derive(Debug, PartialEq, Eq)]
pub enum Take {
    /// A batch to write is in the spare buffer.
    Batch,
    /// The connection was quiet: the queue and the spare buffer were
    /// dropped; the transport may release its own buffers too.
    Shrunk,
    /// Closing and nothing is left to write.
    Closed,
}

thread_local! {
    static TRIM_ARMED: Cell<bool> = const { Cell::new(false) };
}

/// A connection gave buffers back. Freed memory stays resident in the
/// allocator's arenas unless it is told to return it, so once the wave of
/// shrinking connections on this shard has passed ([`TRIM_AFTER`]), free
/// pages are returned to the system, on a helper thread. One timer per
/// shard, armed only by a release.
pub fn released() {
    if TRIM_ARMED.with(|a| a.replace(true)) {
        return;
    }
    runtime::spawn_local(async {
        runtime::sleep(TRIM_AFTER).await;
        TRIM_ARMED.with(|a| a.set(false));
        runtime::blocking(trim).await;
    })
    .detach();
}

/// Returns the allocator's free pages to the system.
fn trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[derive(Default)]
pub struct Outbound {
    buf: RefCell<Vec<u8>>,
    /// Whether the queue and the writer's spare are grown (see [`Quiet`]).
    quiet: Rc<Quiet>,
    waker: Cell<Option<Waker>>,
    closing: Cell<bool>,
    /// Producers waiting for this buffer to drain (see `below`).
    space: RefCell<Vec<Waker>>,
    /// Bytes of the batch the writer took and is still sending.
    in_flight: Cell<usize>,
    /// Bytes written so far: a producer waiting for this connection can
    /// tell a slow reader (this moves) from a stuck one.
    written: Cell<u64>,
}

impl Outbound {
    pub fn len(&self) -> usize {
        self.buf.borrow().len()
    }

    /// Every byte not yet written: what is queued plus the batch being
    /// sent. This is what `max_pending` bounds.
    pub fn pending(&self) -> usize {
        self.len() + self.in_flight.get()
    }

    pub fn is_empty(&self) -> bool {
        self.buf.borrow().is_empty()
    }

    fn wake(&self) {
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }

    pub fn push(&self, bytes: &[u8]) {
        if self.closing.get() {
            return;
        }
        self.buf.borrow_mut().extend_from_slice(bytes);
        self.wake();
    }

    /// Appends whatever `f` writes (a leaf link's `LMSG`).
    pub fn push_with(&self, f: impl FnOnce(&mut Vec<u8>)) {
        if self.closing.get() {
            return;
        }
        f(&mut self.buf.borrow_mut());
        self.wake();
    }

    /// Appends `MSG`/`HMSG` for one delivery.
    pub fn push_msg(
        &self,
        subject: &[u8],
        sid: &[u8],
        reply: Option<&[u8]>,
        hdr_len: Option<usize>,
        msg: &[u8],
    ) {
        if self.closing.get() {
            return;
        }
        let mut b = self.buf.borrow_mut();
        let mut n = itoa::Buffer::new();
        b.reserve(msg.len() + subject.len() + 48);
        b.extend_from_slice(if hdr_len.is_some() { b"HMSG " } else { b"MSG " });
        b.extend_from_slice(subject);
        b.push(b' ');
        b.extend_from_slice(sid);
        b.push(b' ');
        if let Some(r) = reply {
            b.extend_from_slice(r);
            b.push(b' ');
        }
        if let Some(h) = hdr_len {
            b.extend_from_slice(n.format(h).as_bytes());
            b.push(b' ');
        }
        b.extend_from_slice(n.format(msg.len()).as_bytes());
        b.extend_from_slice(b"\r\n");
        b.extend_from_slice(msg);
        b.extend_from_slice(b"\r\n");
        drop(b);
        self.wake();
    }

    /// Stops accepting data; the writer flushes what is queued and exits.
    pub fn close(&self) {
        self.closing.set(true);
        self.wake();
        for w in self.space.borrow_mut().drain(..) {
            w.wake();
        }
    }

    /// Resolves once at most `limit` bytes are queued (or the connection is
    /// closing): how a producer waits for a lagging subscriber.
    pub fn below(&self, limit: usize) -> impl Future<Output = ()> + '_ {
        std::future::poll_fn(move |cx| {
            if self.pending() <= limit || self.closing.get() {
                Poll::Ready(())
            } else {
                self.space.borrow_mut().push(cx.waker().clone());
                Poll::Pending
            }
        })
    }

    /// The writer sent `n` more bytes of the batch it took: producers
    /// waiting for space may go on.
    pub fn wrote(&self, n: usize) {
        self.in_flight.set(self.in_flight.get().saturating_sub(n));
        self.written.set(self.written.get() + n as u64);
        for w in self.space.borrow_mut().drain(..) {
            w.wake();
        }
    }

    /// Bytes written since the connection began.
    pub fn progress(&self) -> u64 {
        self.written.get()
    }

    /// Drops anything queued (the peer is not reading it anyway).
    pub fn discard(&self) {
        self.buf.borrow_mut().clear();
    }

    pub fn is_closing(&self) -> bool {
        self.closing.get()
    }

    /// Waits until there is something to write, then swaps it into `spare`
    /// (which the writer hands back empty). If the buffers are due to
    /// shrink meanwhile, drops both and says so.
    pub fn take_into<'a>(&'a self, spare: &'a mut Vec<u8>) -> impl Future<Output = Take> + 'a {
        std::future::poll_fn(move |cx| {
            let mut b = self.buf.borrow_mut();
            if !b.is_empty() {
                std::mem::swap(&mut *b, spare);
                drop(b);
                self.in_flight.set(spare.len());
                return Poll::Ready(Take::Batch);
            }
            if self.closing.get() {
                return Poll::Ready(Take::Closed);
            }
            if self.quiet.take_due() {
                *b = Vec::new();
                if spare.is_empty() {
                    *spare = Vec::new();
                }
                return Poll::Ready(Take::Shrunk);
            }
            self.waker.set(Some(cx.waker().clone()));
            if self.quiet.armed() {
                self.quiet.waker.set(Some(cx.waker().clone()));
            }
            Poll::Pending
        })
    }

    /// The writer wrote a batch of `len` bytes from its spare buffer of
    /// `capacity` and is about to hand it back: if the buffers are grown,
    /// notes whether it was a large batch. Returns the watch to start when
    /// none runs yet.
    pub fn wrote_batch(&self, len: usize, capacity: usize) -> Option<Rc<Quiet>> {
        if capacity <= SMALL && self.buf.borrow().capacity() <= SMALL {
            return None;
        }
        let q = &self.quiet;
        // A small batch re-arms a watch that ended, unless it ended with
        // the buffers due to shrink (the writer shrinks them next).
        if (len > BUSY || (!q.armed() && !q.due.get())) && q.busy(Instant::now()) {
            return Some(q.clone());
        }
        None
    }

    /// Capacity held by the queue (for tests and monitoring).
    pub fn capacity(&self) -> usize {
        self.buf.borrow().capacity()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A buffer that grew past `SMALL` gives its memory back once the
    /// connection went quiet; small traffic afterwards arms no timer.
    #[test]
    fn grown_buffers_shrink_once_quiet() {
        runtime::run_shards(1, false, || async {
            let o = Outbound::default();
            let mut spare = Vec::new();
            for _ in 0..2 {
                o.push(&vec![b'x'; 100 * 1024]);
                assert_eq!(o.take_into(&mut spare).await, Take::Batch);
                o.wrote(spare.len());
                let watch = o.wrote_batch(spare.len(), spare.capacity());
                spare.clear();
                if let Some(w) = watch {
                    // Short for the test; the server waits `QUIET`.
                    runtime::spawn_local(w.watch(Duration::from_millis(20))).detach();
                }
            }
            // Both buffers (the queue and the spare) are grown now.
            assert!(o.capacity() > SMALL && spare.capacity() > SMALL);
            assert!(o.quiet.armed());
            assert_eq!(o.take_into(&mut spare).await, Take::Shrunk);
            assert_eq!(o.capacity(), 0);
            assert_eq!(spare.capacity(), 0);
            assert!(!o.quiet.armed());
            o.push(b"PING\r\n");
            assert_eq!(o.take_into(&mut spare).await, Take::Batch);
            assert!(o.wrote_batch(spare.len(), spare.capacity()).is_none());
            assert!(spare.capacity() <= SMALL);
        })
        .unwrap();
    }

    /// One watch at a time, and a large batch after the watch ended keeps
    /// the buffers (sustained traffic never re-allocates).
    #[test]
    fn large_batches_keep_buffers() {
        let o = Outbound::default();
        o.push(&vec![b'x'; 100 * 1024]);
        let cap = o.capacity();
        assert!(o.wrote_batch(100 * 1024, cap).is_some());
        assert!(o.wrote_batch(100 * 1024, cap).is_none());
        assert!(o.wrote_batch(10, cap).is_none());
        // The watch ended with the buffers due to shrink...
        o.quiet.armed.set(false);
        o.quiet.due.set(true);
        // ...a small batch does not postpone that...
        assert!(o.wrote_batch(10, cap).is_none());
        assert!(o.quiet.due.get());
        // ...but a large one does, and starts a new watch.
        assert!(o.wrote_batch(100 * 1024, cap).is_some());
        assert!(!o.quiet.due.get());
        // Small buffers are never watched.
        let small = Outbound::default();
        small.push(b"PING\r\n");
        assert!(small.wrote_batch(6, 64).is_none());
    }

    #[test]
    fn frames() {
        let o = Outbound::default();
        o.push_msg(b"foo", b"1", None, None, b"hi");
        o.push_msg(b"foo", b"2", Some(b"r"), Some(12), b"NATS/1.0\r\n\r\nhi");
        let got = String::from_utf8(o.buf.borrow().clone()).unwrap();
        assert_eq!(
            got,
            "MSG foo 1 2\r\nhi\r\nHMSG foo 2 r 12 14\r\nNATS/1.0\r\n\r\nhi\r\n"
        );
        o.close();
        o.push(b"x");
        assert_eq!(o.len(), got.len());
    }
}
