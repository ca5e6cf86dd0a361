//! Segment lifecycle on the write side (creating, growing, sealing the
//! active segment, erasing in place) and the background maintenance task.

use std::rc::{Rc, Weak};
use std::time::{Duration, Instant};

use crate::config::Durability;
use crate::error::{Error, Result};
use crate::format;
use crate::index;
use crate::io::{self, LogFile, WriteMode};
use crate::log::{Inner, Log};
use crate::meta::{self, Hwm};
use crate::recovery::build_index;
use crate::segment::{self, Segment};

impl Inner {
    pub(crate) async fn sync_active(&self) -> Result<()> {
        if let Some(e) = self.st.borrow().poison_error() {
            return Err(e);
        }
        let file = self.st.borrow().active().file.clone();
        if let Some(f) = file {
            let want = self.st.borrow_mut().hwm_want.take();
            self.synced(f.sync().await)?;
            {
                let mut st = self.st.borrow_mut();
                st.last_sync = Instant::now();
                st.dirty = false;
            }
            if let Some(h) = want {
                self.write_hwm(h).await?;
            }
        }
        Ok(())
    }

    /// Moves the durable high-water mark forward to `h` (which must cover
    /// only bytes already durable): the older of the two slots of the meta
    /// file is overwritten and synced.
    pub(crate) async fn write_hwm(&self, h: Hwm) -> Result<()> {
        let (slot, at, path) = {
            let mut st = self.st.borrow_mut();
            let next = st.hwm.max(h);
            if next == st.hwm {
                return Ok(());
            }
            st.hwm = next;
            st.hwm_counter += 1;
            let c = st.hwm_counter;
            let at = (c % 2) * meta::SLOT as u64;
            (meta::encode_slot(c, next), at, st.meta_path.clone())
        };
        let f = LogFile::open(&path, self.faults.clone()).await?;
        let r = async {
            f.write_all_at(slot.to_vec(), at).await?;
            f.sync().await
        }
        .await;
        let _ = f.close().await;
        self.synced(r)
    }

    /// Passes on the result of an fsync of a segment (or the directory);
    /// a failure stops the log acknowledging writes (`State::poisoned`).
    pub(crate) fn synced(&self, r: Result<()>) -> Result<()> {
        if let Err(e) = &r {
            self.st.borrow_mut().poison(e);
        }
        r
    }

    /// Creates a fresh active segment at `next_seq` with room for `room`.
    pub(crate) async fn new_active(&self, room: usize) -> Result<()> {
        let (base, cap, dsync, mode, never, salt) = {
            let st = self.st.borrow();
            (
                st.next_seq,
                fit(st.cfg.segment_size, room),
                st.cfg.durability == Durability::Always,
                st.cfg.write_mode,
                st.cfg.durability == Durability::Never,
                st.salt,
            )
        };
        let path = self.dir.join(segment::seg_name(base, 0));
        // A spare was made, sized and synced ahead (`spare.rs`); its rename
        // is durable with the directory. Under `Never` nothing is promised
        // across a power loss: a lost rename leaves a `.tmp` that the next
        // open removes, and ext4 commits renames in order.
        let spare = self.take_spare(&path, cap, mode, dsync);
        let faults = self.faults.clone();
        let f = match mode {
            WriteMode::Buffered => LogFile::open_with(&path, faults, !spare, dsync).await?,
            WriteMode::Direct => LogFile::open_direct(&path, faults, !spare, dsync, 0).await?,
        };
        if !spare {
            // Sparse preallocation: the mapping covers the whole segment
            // and later fdatasyncs need not change the file size.
            f.set_len(cap).await?;
        }
        f.reserve(cap).await;
        if !spare {
            self.synced(f.sync().await)?;
        }
        if !spare || !never {
            self.synced(io::sync_dir(&self.dir).await)?;
        }
        let (data, map) = segment::map_file(&path, cap)?;
        let mut seg = Segment::new(base, 0, path, data, map, cap, salt);
        seg.file = Some(Rc::new(f));
        self.st.borrow_mut().segs.push(seg);
        Ok(())
    }

    /// Seals the active segment (sync, trim, index file) and starts a new
    /// one; an empty active segment is just replaced.
    pub(crate) async fn roll(&self, room: usize) -> Result<()> {
        let (file, len, empty, same_base) = {
            let st = self.st.borrow();
            let a = st.active();
            (a.file.clone(), a.len, a.len == 0, a.base == st.next_seq)
        };
        if same_base {
            // No message has a sequence here yet: the segment is empty or
            // holds only deletes and purges. A new one would get the same
            // base, so the same file name, and replace this file with its
            // records (deletes came back after a restart). It grows.
            return self.grow(room).await;
        }
        if empty {
            // Nothing written here (the sequence jumped): replace it.
            self.new_active(room).await?;
            let mut st = self.st.borrow_mut();
            let n = st.segs.len();
            let old = st.segs.remove(n - 2);
            old.retire();
            return Ok(());
        }
        let durability = self.st.borrow().cfg.durability;
        if let (Some(f), Durability::Interval(_)) = (&file, durability) {
            // The interval's sync promise covers the sealed segment's last
            // writes; `Always` synced every group already, and under `Never`
            // the kernel writes it back (syncing here halved `Never`
            // throughput). Recovery checks sealed segments either way.
            let want = self.st.borrow_mut().hwm_want.take();
            self.synced(f.sync().await)?;
            if let Some(h) = want {
                self.write_hwm(h).await?;
            }
        }
        let (data, path, seg_path) = {
            let mut st = self.st.borrow_mut();
            let a = st.active_mut();
            a.file = None;
            a.capacity = a.len;
            let d = build_index(a);
            // Sealed: the index file now holds the subject summary.
            a.names = Default::default();
            // Only the active segment keeps recent writes in memory.
            a.recent.clear();
            let seg_path = a.path.clone();
            (
                index::encode(&d),
                st.dir.join(segment::idx_name(d.base, d.gen)),
                seg_path,
            )
        };
        // Cutting the file to its records and writing its index file hold
        // up no append: they run beside the next segment's appends, and
        // `close` waits for them. A crash before they finish leaves zeros
        // past the sealed segment's end and no index file, which the next
        // open cuts and rebuilds.
        let faults = self.faults.clone();
        let sync = durability != Durability::Never;
        self.background.spawn(async move {
            if let Err(e) = seal_files(file, len, sync, data, &path, &seg_path, faults).await {
                tracing::warn!(path = ?seg_path, error = %e, "sealing a segment's files failed; the next open redoes it");
            }
        });
        let r = self.new_active(room).await;
        self.st.borrow_mut().drop_empty_front();
        r
    }

    /// Enlarges the active segment so a record of `room` fits after what
    /// it holds: an empty one just enough for that record, one holding
    /// records by another segment's worth (so a run of deletes does not
    /// grow it record by record).
    async fn grow(&self, room: usize) -> Result<()> {
        let (file, path, cap) = {
            let st = self.st.borrow();
            let a = st.active();
            let cap = if a.len == 0 {
                fit(a.capacity, room)
            } else {
                (a.len + room as u64)
                    .max(a.capacity + st.cfg.segment_size)
                    .next_multiple_of(4096)
            };
            (a.file.clone(), a.path.clone(), cap)
        };
        let Some(file) = file else {
            return Err(Error::Closed);
        };
        file.set_len(cap).await?;
        file.reserve(cap).await;
        self.synced(file.sync().await)?;
        let (data, map) = segment::map_file(&path, cap)?;
        let mut st = self.st.borrow_mut();
        let a = st.active_mut();
        a.data = data;
        a.map = map;
        a.capacity = cap;
        Ok(())
    }

    /// Overwrites a deleted record's headers and payload with zeros.
    pub(crate) async fn erase(
        self: &Rc<Self>,
        seq: u64,
        base: u64,
        gen: u32,
        off: usize,
    ) -> Result<()> {
        let _file_to_ourselves = self.exclusive().await;
        let (rec, file, path) = {
            let st = self.st.borrow();
            // Same generation only: a compaction may have moved records (and
            // did not copy this one, which was already deleted).
            let Some(seg) = st.segs.iter().find(|s| s.base == base && s.gen == gen) else {
                return Ok(());
            };
            let Some(h) = seg.header_at(off) else {
                return Ok(());
            };
            if h.seq.get() != seq || h.kind() != Some(format::Kind::Msg) {
                return Ok(());
            }
            let len = h.record_len();
            let rec = seg
                .bytes(off, len)
                .and_then(|r| format::erased_copy(r, &seg.key));
            (rec, seg.file.clone(), seg.path.clone())
        };
        let Some(rec) = rec else { return Ok(()) };
        if file.is_none() {
            // A sealed segment's index file lists the record as live; with
            // it gone, the next open walks the segment and sees the erased
            // flag even if the tombstone is lost.
            let _ = std::fs::remove_file(self.dir.join(segment::idx_name(base, gen)));
        }
        let file = match file {
            Some(f) => f,
            None => match LogFile::open(&path, self.faults.clone()).await {
                Ok(f) => Rc::new(f),
                // Dropped (and renamed away) meanwhile: its file goes with
                // the last reader, bytes and all.
                Err(Error::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
                Err(e) => return Err(e),
            },
        };
        let len = rec.len();
        file.overwrite_at(rec, off as u64).await?;
        // Erased bytes must not live on in the recent-writes cache.
        if let Some(seg) = self
            .st
            .borrow_mut()
            .segs
            .iter_mut()
            .find(|s| s.base == base && s.gen == gen)
        {
            seg.recent.invalidate(off as u64, len);
        }
        if self.st.borrow().cfg.durability != Durability::Never {
            self.synced(file.sync().await)?;
        }
        Ok(())
    }
}

/// Segment capacity: the configured size, or more for one oversized record.
fn fit(size: u64, room: usize) -> u64 {
    if room as u64 > size {
        (room as u64).next_multiple_of(4096)
    } else {
        size
    }
}

/// The file work of a seal: cut the segment to its records (then sync
/// it, unless `Never`) and write its index file. Index files need no
/// fsync: a lost or stale one is detected and rebuilt at the next open.
async fn seal_files(
    file: Option<Rc<LogFile>>,
    len: u64,
    sync: bool,
    index: Vec<u8>,
    idx_path: &std::path::Path,
    seg_path: &std::path::Path,
    faults: Option<io::FaultInjector>,
) -> Result<()> {
    if let Some(f) = file {
        f.set_len(len).await?;
        if sync {
            f.sync().await?;
        }
    }
    // Retention may have dropped the segment meanwhile.
    if !seg_path.exists() {
        return Ok(());
    }
    let idx = LogFile::create(idx_path, faults).await?;
    idx.write_all_at(index, 0).await?;
    idx.close().await
}

/// Background duties: interval fsync and age expiry. Holds only a weak
/// reference so dropping every `Log` handle ends it.
pub(crate) fn spawn_maintenance(weak: Weak<Inner>) {
    glommio::spawn_local(async move {
        loop {
            let tick = {
                let Some(inner) = weak.upgrade() else { return };
                let st = inner.st.borrow();
                match st.cfg.durability {
                    Durability::Interval(d) => {
                        d.clamp(Duration::from_millis(1), Duration::from_secs(1))
                    }
                    _ => Duration::from_secs(1),
                }
            };
            glommio::timer::sleep(tick).await;
            let Some(inner) = weak.upgrade() else { return };
            if inner.closed.get() {
                return;
            }
            let (sync, expire) = {
                let st = inner.st.borrow();
                let sync = st.poisoned.is_none()
                    && matches!(st.cfg.durability, Durability::Interval(d)
                    if st.dirty && st.last_sync.elapsed() >= d);
                (sync, st.cfg.limits.max_age.is_some())
            };
            if sync {
                if let Err(e) = inner.sync_active().await {
                    tracing::warn!(error = %e, "interval fsync failed");
                }
                if inner.closed.get() {
                    return;
                }
            }
            let candidate = {
                let st = inner.st.borrow();
                let below = st.cfg.compact_below;
                let n = st.segs.len();
                !st.compacting
                    && st.segs[..n.saturating_sub(1)]
                        .iter()
                        .any(|s| s.len > 0 && (s.live_bytes as f64) < below * s.len as f64)
            };
            if candidate {
                let log = Log {
                    inner: inner.clone(),
                };
                if let Err(e) = log.compact_some(1).await {
                    tracing::warn!(error = %e, "background compaction failed");
                }
            }
            if inner.closed.get() {
                return;
            }
            if expire {
                inner.st.borrow_mut().enforce_global();
                let pending = {
                    let st = inner.st.borrow();
                    st.control_pending()
                };
                if pending {
                    inner.kick();
                }
            }
        }
    })
    .detach();
}
