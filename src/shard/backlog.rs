//! Work an internal sink accepted and has not finished yet: a stream's
//! appends in flight. Producers wait on it the way they wait for a lagging
//! subscriber (`Shard::unstall`). Without it a publisher that never waits
//! for PubAcks queued appends in memory without bound: 3 M × 128 B core
//! publishes into a stream grew the server by 5.5 GB while the disk
//! caught up.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::rc::Rc;
use std::task::{Poll, Waker};

/// Above either mark the sink is backlogged; producers wait until it is
/// back under half of both. Far above what a publisher with a PubAck
/// window keeps in flight (group commit still sees whole windows).
pub const HIGH_MSGS: usize = 16 * 1024;
pub const HIGH_BYTES: usize = 16 << 20;

#[derive(Default)]
pub struct Backlog {
    msgs: Cell<usize>,
    bytes: Cell<usize>,
    /// Work finished since the start: what a waiting producer watches to
    /// tell a slow sink from a stuck one.
    finished: Cell<u64>,
    /// Already on the shard's list of sinks to wait for.
    pub(super) listed: Cell<bool>,
    waiters: RefCell<Vec<Waker>>,
}

impl Backlog {
    /// Counts one accepted item of `bytes`; true when the sink is now over
    /// its high mark (the caller lists it on its shard).
    pub fn add(&self, bytes: usize) -> bool {
        self.msgs.set(self.msgs.get() + 1);
        self.bytes.set(self.bytes.get() + bytes);
        self.over()
    }

    /// One item of `bytes` is done (stored or failed).
    pub fn finish(&self, bytes: usize) {
        self.msgs.set(self.msgs.get().saturating_sub(1));
        self.bytes.set(self.bytes.get().saturating_sub(bytes));
        self.finished.set(self.finished.get() + 1);
        if self.low() {
            for w in self.waiters.borrow_mut().drain(..) {
                w.wake();
            }
        }
    }

    pub fn over(&self) -> bool {
        self.msgs.get() > HIGH_MSGS || self.bytes.get() > HIGH_BYTES
    }

    fn low(&self) -> bool {
        self.msgs.get() <= HIGH_MSGS / 2 && self.bytes.get() <= HIGH_BYTES / 2
    }

    pub fn finished(&self) -> u64 {
        self.finished.get()
    }

    /// Ready once the sink is back under half of its marks.
    pub fn drained(&self) -> impl Future<Output = ()> + '_ {
        std::future::poll_fn(move |cx| {
            if self.low() {
                Poll::Ready(())
            } else {
                self.waiters.borrow_mut().push(cx.waker().clone());
                Poll::Pending
            }
        })
    }

    /// Items in flight (for tests and monitoring).
    pub fn pending(&self) -> (usize, usize) {
        (self.msgs.get(), self.bytes.get())
    }
}

impl super::Shard {
    /// An internal sink went over its backlog mark: the producer of the
    /// current read (or link item) waits for it in `unstall`.
    pub fn backlogged(&self, b: &Rc<Backlog>) {
        if !b.listed.replace(true) {
            self.backlogged.borrow_mut().push(b.clone());
        }
    }

    /// Waits until every backlogged sink is back under half its marks,
    /// for as long as it keeps finishing work: a sink that finishes
    /// nothing for `STALL_MAX` (a stuck disk) is not waited for further.
    pub(super) async fn drain_backlogs(&self) {
        let sinks: Vec<Rc<Backlog>> = std::mem::take(&mut *self.backlogged.borrow_mut());
        for b in sinks {
            b.listed.set(false);
            loop {
                let mark = b.finished();
                if crate::runtime::timeout(super::STALL_MAX, b.drained())
                    .await
                    .is_some()
                    || b.finished() == mark
                {
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn over_the_high_mark_until_back_under_half() {
        let b = Backlog::default();
        for _ in 0..HIGH_MSGS {
            assert!(!b.add(10));
        }
        assert!(b.add(10), "one past the message mark");
        for _ in 0..HIGH_MSGS / 2 {
            b.finish(10);
        }
        assert!(!b.low(), "still above half");
        b.finish(10);
        assert!(b.low());
        assert_eq!(b.finished(), (HIGH_MSGS / 2 + 1) as u64);
        let b = Backlog::default();
        assert!(b.add(HIGH_BYTES + 1), "one large item passes the byte mark");
        b.finish(HIGH_BYTES + 1);
        assert_eq!(b.pending(), (0, 0));
    }
}
