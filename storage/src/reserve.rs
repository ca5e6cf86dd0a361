//! Block reservation ahead of an O_DIRECT segment's write position.
//!
//! A write into a hole makes ext4 allocate blocks under the inode's
//! exclusive lock, which io_uring cannot take without blocking: every such
//! write is handed to an io-wq worker thread and the writes queue on that
//! lock. Into reserved (unwritten, `fallocate`d) blocks they go out from the
//! submitting thread and overlap (16 KiB `Never` appends: io-wq workers at
//! 15% of the samples before, 2.5% after). Blocks are reserved a step at a
//! time ahead of the newest framed group, not for the whole segment, so a
//! quiet log holds at most one step of reserved space. Best effort: a failed
//! reservation (a full disk, a filesystem without fallocate) only makes
//! writes slower.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use glommio::io::DmaFile;

/// Blocks are reserved at most this far ahead, in steps up to this size.
pub(crate) const STEP: u64 = 8 << 20;

/// The first step of a segment. Steps double from here up to `STEP` as the
/// segment fills, so a quiet log (an appliance runs hundreds: KV buckets,
/// small streams) holds 64 KiB of reserved blocks, not 8 MiB, while a busy
/// one reaches full steps after a few hundred KiB.
const FIRST_STEP: u64 = 64 << 10;

#[derive(Default)]
pub(crate) struct Reservation {
    /// Reserved (or being reserved) from offset 0 up to here.
    reserved: Cell<u64>,
    /// Never past here (the segment's capacity); 0 until `start`.
    limit: Cell<u64>,
    /// The reservation running in the background, if any.
    pending: RefCell<Option<glommio::Task<()>>>,
    /// The current step (0 until the first reservation).
    step: Cell<u64>,
}

impl Reservation {
    /// Sets the limit and reserves the first step past `end`, waiting for it.
    pub async fn start(&self, file: &Rc<DmaFile>, end: u64, limit: u64) {
        self.limit.set(limit);
        let step = self.next_step(end);
        let want = (end + step).next_multiple_of(step).min(limit);
        if want > self.reserved.get() {
            self.reserved.set(want);
            reserve(file.clone(), want).await;
        }
    }

    /// A group that ends at `end` was framed: once it comes within half a
    /// step of the reserved end, reserve the next step in the background.
    pub fn ahead(&self, file: &Rc<DmaFile>, end: u64) {
        {
            let mut p = self.pending.borrow_mut();
            if p.as_mut().is_some_and(crate::background::is_done) {
                *p = None;
            }
        }
        let (reserved, limit) = (self.reserved.get(), self.limit.get());
        let step = self.step.get().max(FIRST_STEP);
        if reserved >= limit || end + step / 2 <= reserved || self.pending.borrow().is_some() {
            return;
        }
        let step = self.next_step(end);
        let want = (end + step).next_multiple_of(step).min(limit);
        self.reserved.set(want);
        let f = file.clone();
        *self.pending.borrow_mut() = Some(glommio::spawn_local(reserve(f, want)));
    }

    /// The step for a reservation past `end`: doubled each time, and at
    /// least what the data written so far suggests (a reopened full
    /// segment starts at full steps).
    fn next_step(&self, end: u64) -> u64 {
        let doubled = (self.step.get() * 2).max(FIRST_STEP);
        let by_size = end.next_power_of_two().max(FIRST_STEP);
        let step = doubled.max(by_size).min(STEP);
        self.step.set(step);
        step
    }

    /// Waits for a background reservation: call before the file is cut, so
    /// none lands past the new end.
    pub async fn settle(&self) {
        let t = self.pending.borrow_mut().take();
        if let Some(t) = t {
            t.await;
        }
    }
}

async fn reserve(file: Rc<DmaFile>, upto: u64) {
    // KEEP_SIZE: the segment's size is its capacity already; only blocks change.
    if let Err(e) = file.pre_allocate(upto, true).await {
        tracing::debug!(error = %e, upto, "segment block reservation skipped");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_grow_from_small_to_full() {
        let r = Reservation::default();
        assert_eq!(r.next_step(0), FIRST_STEP);
        assert_eq!(r.next_step(100), 2 * FIRST_STEP);
        assert_eq!(r.next_step(3 << 20), 4 << 20);
        for _ in 0..10 {
            r.next_step(0);
        }
        assert_eq!(r.step.get(), STEP);
    }
}
