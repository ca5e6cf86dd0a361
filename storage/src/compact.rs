//! Compaction: a sealed segment whose live share of bytes fell low is
//! rewritten as a new generation holding only its live records (copied
//! verbatim, CRCs and all) plus the tombstones and floor that still matter.
//! Appends never wait: the active segment is a different file, and the state
//! is only borrowed to take a snapshot and to swap the result in.

use std::rc::Rc;

use crate::commit::Op;
use crate::error::Result;
use crate::format::{self, Kind};
use crate::index;
use crate::io::{self, LogFile};
use crate::log::{Inner, Log};
use crate::recovery::build_index;
use crate::segment::{self, Segment, ABSENT};

impl Log {
    /// Rewrites every sealed segment below the configured live share;
    /// returns how many were rewritten.
    pub async fn compact(&self) -> Result<usize> {
        self.compact_some(usize::MAX).await
    }

    /// Compacts at most `max` segments.
    pub(crate) async fn compact_some(&self, max: usize) -> Result<usize> {
        if self.inner.closed.get() {
            return Ok(0);
        }
        let candidates: Vec<u64> = {
            let st = self.inner.st.borrow();
            let below = st.cfg.compact_below;
            let n = st.segs.len();
            st.segs[..n.saturating_sub(1)]
                .iter()
                .filter(|s| s.len > 0 && (s.live_bytes as f64) < below * s.len as f64)
                .map(|s| s.base)
                .take(max)
                .collect()
        };
        let mut n = 0;
        for base in candidates {
            if self.inner.compact_one(base).await? {
                n += 1;
            }
        }
        self.inner.st.borrow_mut().drop_empty_front();
        Ok(n)
    }
}

struct Snapshot {
    buf: Vec<u8>,
    seg: Segment,
    tmp: std::path::PathBuf,
}

/// Counts a compaction as under way for as long as it lives.
struct Running<'a>(&'a Inner);

impl<'a> Running<'a> {
    fn new(inner: &'a Inner) -> Self {
        inner.compactions.set(inner.compactions.get() + 1);
        Running(inner)
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.compactions.set(self.0.compactions.get() - 1);
    }
}

impl Inner {
    async fn compact_one(self: &Rc<Self>, base: u64) -> Result<bool> {
        if self.closed.get() {
            return Ok(false);
        }
        let _running = Running::new(self);
        // A tombstone may be left out of the new generation only when the
        // record it deletes cannot come back without it: it lies below a
        // floor, or in a segment that was dropped. Both must be durable
        // before the rewrite without the tombstone is: the floor record is
        // written and synced, the renames of dropped segments are synced
        // with the directory. Only then is the snapshot taken.
        let (floor, first_base) = {
            let st = self.st.borrow();
            if st.compacting {
                return Ok(false);
            }
            (st.floor, st.segs.first().map_or(0, |s| s.base))
        };
        self.submit(Op::Barrier).await?;
        self.sync_active().await?;
        self.synced(io::sync_dir(&self.dir).await)?;
        let Some(snap) = self.snapshot(base, floor.max(first_base))? else {
            return Ok(false);
        };
        let res = self.write_generation(&snap).await;
        let (gen, erase) = match self.swap_in(base, snap, res)? {
            Some(x) => x,
            None => return Ok(false),
        };
        // Records erased while we copied them: erase the new copies too.
        for (seq, off) in erase {
            self.erase(seq, base, gen, off).await?;
        }
        Ok(true)
    }

    /// Puts the written generation in place of the old one (synchronous).
    #[allow(clippy::type_complexity)]
    fn swap_in(
        &self,
        base: u64,
        snap: Snapshot,
        res: Result<()>,
    ) -> Result<Option<(u32, Vec<(u64, usize)>)>> {
        let mut st = self.st.borrow_mut();
        st.compacting = false;
        if let Err(e) = res {
            let _ = std::fs::remove_file(&snap.tmp);
            let _ = std::fs::remove_file(&snap.seg.path);
            return Err(e);
        }
        let Some(si) = st.segs.iter().position(|s| s.base == base) else {
            // Dropped meanwhile (limits, purge): the rewrite is moot.
            let _ = std::fs::remove_file(&snap.seg.path);
            let _ = std::fs::remove_file(st.dir.join(segment::idx_name(base, snap.seg.gen)));
            return Ok(None);
        };
        let mut new = snap.seg;
        let (data, map) = segment::map_file(&new.path, new.len)?;
        new.data = data;
        new.map = map;
        // Deletes that happened while we copied: drop them from the new
        // index too (their tombstones live in later segments).
        let old = &st.segs[si];
        let mut erase = Vec::new();
        for i in 0..new.offsets.len() {
            let seq = new.base + i as u64;
            if new.offsets[i] != ABSENT && old.offset_of(seq).is_none() {
                if st.erase_after_compaction.contains(&seq) {
                    erase.push((seq, new.offsets[i] as usize));
                }
                let len = new
                    .header_at(new.offsets[i] as usize)
                    .map_or(0, |h| h.record_len());
                new.offsets[i] = ABSENT;
                new.live -= 1;
                new.live_bytes -= len as u64;
            }
        }
        let gen = new.gen;
        let old = std::mem::replace(&mut st.segs[si], new);
        let _ = std::fs::remove_file(st.dir.join(segment::idx_name(old.base, old.gen)));
        old.retire();
        st.erase_after_compaction.clear();
        Ok(Some((gen, erase)))
    }

    /// Copies the live content of segment `base` into a buffer, with the
    /// tombstones at or above `gone` (below it they are durably redundant).
    fn snapshot(&self, base: u64, gone: u64) -> Result<Option<Snapshot>> {
        let mut st = self.st.borrow_mut();
        // Closed while the barrier and syncs above were awaited.
        if st.compacting || self.closed.get() {
            return Ok(None);
        }
        let n = st.segs.len();
        let Some(si) = st.segs[..n - 1].iter().position(|s| s.base == base) else {
            return Ok(None);
        };
        let seg = &st.segs[si];
        let mut buf = Vec::with_capacity(seg.live_bytes as usize + 4096);
        let gen = seg.gen + 1;
        let path = st.dir.join(segment::seg_name(base, gen));
        let (data, map) = segment::map_file(&path, 0)?;
        let mut out = Segment::new(base, gen, path.clone(), data, map, 0, st.salt);
        for (i, &o) in seg.offsets.iter().enumerate() {
            if o == ABSENT {
                continue;
            }
            let off = o as usize;
            let Some(h) = seg.header_at(off) else {
                continue;
            };
            let len = h.record_len();
            let Some(rec) = seg.bytes(off, len) else {
                continue;
            };
            out.tail = (buf.len() as u64, h.crc.get());
            out.index_msg(seg.base + i as u64, buf.len(), h.ts.get(), len);
            buf.extend_from_slice(rec);
        }
        // Tombstones still matter only for records that may exist in
        // earlier segments; the ones for this segment were applied above.
        let keep: Vec<u64> = seg
            .tombstones
            .iter()
            .copied()
            .filter(|t| *t >= gone && *t < base)
            .collect();
        for chunk in keep.chunks(65536) {
            let payload: Vec<u8> = chunk.iter().flat_map(|s| s.to_le_bytes()).collect();
            out.tail = (buf.len() as u64, 0);
            format::encode(
                &mut buf,
                &seg.key,
                Kind::Tombstone,
                0,
                0,
                seg.last_ts,
                b"",
                b"",
                &payload,
            );
            out.tail.1 = crc_field(&buf, out.tail.0 as usize);
        }
        out.tombstones = keep;
        if seg.floor > 0 {
            out.tail = (buf.len() as u64, 0);
            format::encode(
                &mut buf,
                &seg.key,
                Kind::Floor,
                0,
                seg.floor,
                seg.last_ts,
                b"",
                b"",
                b"",
            );
            out.tail.1 = crc_field(&buf, out.tail.0 as usize);
            out.floor = seg.floor;
        }
        out.len = buf.len() as u64;
        out.capacity = out.len;
        st.compacting = true;
        let tmp = path.with_extension("seg.tmp");
        Ok(Some(Snapshot { buf, seg: out, tmp }))
    }

    /// Writes the new generation durably: temp file, fsync, rename, index.
    async fn write_generation(&self, snap: &Snapshot) -> Result<()> {
        let f = LogFile::create(&snap.tmp, self.faults.clone()).await?;
        let r = async {
            f.write_all_at(snap.buf.clone(), 0).await?;
            f.sync().await
        }
        .await;
        f.close().await?;
        r?;
        std::fs::rename(&snap.tmp, &snap.seg.path)?;
        // The index is built against the bytes we just wrote.
        let (data, map) = segment::map_file(&snap.seg.path, snap.seg.len)?;
        let salt = self.st.borrow().salt;
        let mut probe = Segment::new(
            snap.seg.base,
            snap.seg.gen,
            snap.seg.path.clone(),
            data,
            map,
            snap.seg.len,
            salt,
        );
        probe.len = snap.seg.len;
        probe.offsets = snap.seg.offsets.clone();
        probe.first_ts = snap.seg.first_ts;
        probe.last_ts = snap.seg.last_ts;
        probe.live = snap.seg.live;
        probe.live_bytes = snap.seg.live_bytes;
        probe.tombstones = snap.seg.tombstones.clone();
        probe.floor = snap.seg.floor;
        probe.tail = snap.seg.tail;
        let d = build_index(&probe);
        let idx_path = self
            .dir
            .join(segment::idx_name(snap.seg.base, snap.seg.gen));
        std::fs::write(idx_path, index::encode(&d))?;
        io::sync_dir(&self.dir).await
    }
}

fn crc_field(buf: &[u8], off: usize) -> u32 {
    u32::from_le_bytes([buf[off + 4], buf[off + 5], buf[off + 6], buf[off + 7]])
}
