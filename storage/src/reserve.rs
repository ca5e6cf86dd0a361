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

/// Blocks are reserved this far ahead, in steps of this size.
pub(crate) const STEP: u64 = 8 << 20;

#[derive(Default)]
pub(crate) struct Reservation {
    /// Reserved (or being reserved) from offset 0 up to here.
    reserved: Cell<u64>,
    /// Never past here (the segment's capacity); 0 until `start`.
    limit: Cell<u64>,
    /// The reservation running in the background, if any.
    pending: RefCell<Option<glommio::Task<()>>>,
}

impl Reservation {
    /// Sets the limit and reserves the first step past `end`, waiting for it.
    pub async fn start(&self, file: &Rc<DmaFile>, end: u64, limit: u64) {
        self.limit.set(limit);
        let want = (end + STEP).next_multiple_of(STEP).min(limit);
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
        if reserved >= limit || end + STEP / 2 <= reserved || self.pending.borrow().is_some() {
            return;
        }
        let want = (end + STEP).next_multiple_of(STEP).min(limit);
        self.reserved.set(want);
        let f = file.clone();
        *self.pending.borrow_mut() = Some(glommio::spawn_local(reserve(f, want)));
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
