//! One segment file: its memory map, its in-memory sequence index, and the
//! walker that validates records (used by recovery and index rebuilds).

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use memmap2::{Mmap, MmapOptions};

use crate::error::{Error, Result};
use crate::format::{self, Key, Kind, Probe, RecordHeader, HEADER_LEN};
use crate::io::LogFile;

/// Marks a sequence that the segment does not (or no longer) hold.
pub(crate) const ABSENT: u32 = u32::MAX;

/// File name of a segment: first sequence (20 digits, sorts by name) and a
/// generation that compaction bumps.
pub(crate) fn seg_name(base: u64, gen: u32) -> String {
    format!("{base:020}-{gen:04}.seg")
}

pub(crate) fn idx_name(base: u64, gen: u32) -> String {
    format!("{base:020}-{gen:04}.idx")
}

/// Parses `<base>-<gen>.<ext>`.
pub(crate) fn parse_name(name: &str) -> Option<(u64, u32, &str)> {
    let (stem, ext) = name.split_once('.')?;
    let (b, g) = stem.split_once('-')?;
    if b.len() != 20 || g.len() != 4 {
        return None;
    }
    Some((b.parse().ok()?, g.parse().ok()?, ext))
}

/// Owns a mapping. `Bytes` handed to readers keep it alive; when the last one
/// goes, the map is released and, if the segment was retired meanwhile, its
/// file is unlinked only then.
pub(crate) struct MapInner {
    map: Mmap,
    unlink_on_release: OnceLock<PathBuf>,
}

impl Drop for MapInner {
    fn drop(&mut self) {
        if let Some(p) = self.unlink_on_release.get() {
            match std::fs::remove_file(p) {
                Ok(()) => {}
                // A later open may already have cleaned it up.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => tracing::warn!(path = ?p, error = %e, "unlink of retired segment failed"),
            }
        }
    }
}

struct MapRef(Arc<MapInner>);

impl AsRef<[u8]> for MapRef {
    fn as_ref(&self) -> &[u8] {
        &self.0.map
    }
}

/// Maps `len` bytes of `path` read-only (shared, so writes are visible).
pub(crate) fn map_file(path: &Path, len: u64) -> Result<(Bytes, Arc<MapInner>)> {
    if len == 0 {
        let inner = Arc::new(MapInner {
            map: MmapOptions::new().len(1).map_anon()?.make_read_only()?,
            unlink_on_release: OnceLock::new(),
        });
        return Ok((Bytes::new(), inner));
    }
    let f = File::open(path)?;
    // SAFETY: the log is the only writer of its files, appends only past the
    // published end and never shrinks a file below bytes it has handed out.
    let map = unsafe { MmapOptions::new().len(len as usize).map(&f)? };
    let inner = Arc::new(MapInner {
        map,
        unlink_on_release: OnceLock::new(),
    });
    let bytes = Bytes::from_owner(MapRef(inner.clone()));
    Ok((bytes, inner))
}

pub(crate) struct Segment {
    pub base: u64,
    pub gen: u32,
    /// Binds the segment's records to it (the log's salt and `base`).
    pub key: Key,
    pub path: PathBuf,
    /// The whole mapping; reads slice it.
    pub data: Bytes,
    pub map: Arc<MapInner>,
    /// Bytes of valid records (the write position of the active segment).
    pub len: u64,
    /// Mapped (and, for the active segment, preallocated) size.
    pub capacity: u64,
    /// `offsets[seq - base]` = record offset, or ABSENT.
    pub offsets: Vec<u32>,
    pub first_ts: u64,
    pub last_ts: u64,
    pub live: u64,
    pub live_bytes: u64,
    /// Targets of tombstone records stored in this segment.
    pub tombstones: Vec<u64>,
    /// Highest floor marker stored in this segment (0: none).
    pub floor: u64,
    /// Offset and CRC field of the last record (ties the index file to us).
    pub tail: (u64, u32),
    /// Open for writing (active segment only).
    pub file: Option<Rc<LogFile>>,
    /// Subjects of the records this process appended here (active segment
    /// only), so sealing can summarise subjects without reading the
    /// mapping back (after O_DIRECT writes that read comes from the device).
    pub names: Names,
    /// The last groups written, kept for reads (O_DIRECT active segment).
    pub recent: crate::recent::Recent,
}

/// Interned subjects of a segment's records, by sequence slot.
#[derive(Default)]
pub(crate) struct Names {
    ids: HashMap<Bytes, u32, ahash::RandomState>,
    list: Vec<Bytes>,
    /// `by_slot[seq - base]`: index into `list`, or `UNKNOWN`.
    by_slot: Vec<u32>,
}

impl Names {
    const UNKNOWN: u32 = u32::MAX;

    fn note(&mut self, slot: usize, subject: &[u8]) {
        let id = match self.ids.get(subject) {
            Some(&id) => id,
            None => {
                let id = self.list.len() as u32;
                let b = Bytes::copy_from_slice(subject);
                self.list.push(b.clone());
                self.ids.insert(b, id);
                id
            }
        };
        if self.by_slot.len() <= slot {
            self.by_slot.resize(slot + 1, Self::UNKNOWN);
        }
        self.by_slot[slot] = id;
    }

    /// The subject noted for `slot`, if any.
    pub fn get(&self, slot: usize) -> Option<&[u8]> {
        let id = *self.by_slot.get(slot)?;
        self.list.get(id as usize).map(|b| &b[..])
    }
}

impl Segment {
    pub fn new(
        base: u64,
        gen: u32,
        path: PathBuf,
        data: Bytes,
        map: Arc<MapInner>,
        capacity: u64,
        salt: u64,
    ) -> Segment {
        Segment {
            base,
            gen,
            key: Key::new(salt, base),
            path,
            data,
            map,
            len: 0,
            capacity,
            offsets: Vec::new(),
            first_ts: 0,
            last_ts: 0,
            live: 0,
            live_bytes: 0,
            tombstones: Vec::new(),
            floor: 0,
            tail: (0, 0),
            file: None,
            names: Names::default(),
            recent: Default::default(),
        }
    }

    /// One past the highest sequence slot this segment indexes.
    pub fn end_seq(&self) -> u64 {
        self.base + self.offsets.len() as u64
    }

    pub fn offset_of(&self, seq: u64) -> Option<usize> {
        let i = seq.checked_sub(self.base)?;
        match self.offsets.get(i as usize) {
            Some(&o) if o != ABSENT => Some(o as usize),
            _ => None,
        }
    }

    /// Header of the record at `off` (must be a known-valid offset).
    pub fn header_at(&self, off: usize) -> Option<&RecordHeader> {
        format::header(self.bytes(off, HEADER_LEN)?)
    }

    /// The segment's bytes at `[off, off + len)`: from the recent-writes
    /// cache when it holds them, else from the mapping.
    pub fn bytes(&self, off: usize, len: usize) -> Option<&[u8]> {
        match self.recent.get(off as u64, len) {
            Some(b) => Some(b),
            None => self.data.get(off..off.checked_add(len)?),
        }
    }

    /// Like [`Segment::bytes`], as shared memory to hand out.
    pub fn shared(&mut self, off: usize, len: usize) -> Option<Bytes> {
        if let Some(b) = self.recent.get_shared(off as u64, len) {
            return Some(b);
        }
        let end = off.checked_add(len)?;
        (end <= self.data.len()).then(|| self.data.slice(off..end))
    }

    /// Indexes a message record (sequence order is guaranteed by the caller).
    /// Remembers the subject of a record appended by this process.
    pub fn note_subject(&mut self, seq: u64, subject: &[u8]) {
        self.names.note((seq - self.base) as usize, subject);
    }

    /// Makes `seq` part of the segment's range without a record (an
    /// erased message: its sequence was used).
    pub fn note_slot(&mut self, seq: u64) {
        let i = (seq - self.base) as usize;
        if self.offsets.len() <= i {
            self.offsets.resize(i + 1, ABSENT);
        }
    }

    pub fn index_msg(&mut self, seq: u64, off: usize, ts: u64, len: usize) {
        let i = (seq - self.base) as usize;
        if self.offsets.len() <= i {
            self.offsets.resize(i + 1, ABSENT);
        }
        self.offsets[i] = off as u32;
        if self.live == 0 && self.first_ts == 0 {
            self.first_ts = ts;
        }
        self.last_ts = ts;
        self.live += 1;
        self.live_bytes += len as u64;
    }

    /// Forgets `seq`; returns (record length) when it was live.
    pub fn remove(&mut self, seq: u64) -> Option<usize> {
        let off = self.offset_of(seq)?;
        let len = self.header_at(off).map(|h| h.record_len()).unwrap_or(0);
        self.offsets[(seq - self.base) as usize] = ABSENT;
        // Saturating: a header damaged after indexing can report a length
        // other than the one counted; accounting must not panic on it.
        self.live = self.live.saturating_sub(1);
        self.live_bytes = self.live_bytes.saturating_sub(len as u64);
        Some(len)
    }

    /// Takes the segment out of the log: renamed to `*.seg.del` now (so no
    /// later open sees it; mappings are unaffected) and unlinked once every
    /// reader released its map.
    pub fn retire(self) {
        let del = self.path.with_extension("seg.del");
        let target = match std::fs::rename(&self.path, &del) {
            Ok(()) => del,
            Err(_) => self.path.clone(),
        };
        let _ = self.map.unlink_on_release.set(target);
    }

    pub fn corrupt(&self, off: usize) -> Error {
        Error::Corrupt {
            path: self.path.clone(),
            offset: off as u64,
        }
    }
}

/// What a walk over a segment's bytes found.
#[derive(Debug, Default)]
pub(crate) struct WalkEnd {
    /// End of the last good record.
    pub end: usize,
    /// Bytes after `end` that were neither records nor clean zeros.
    pub torn: bool,
    /// Corrupt records skipped in the middle: (offset, length).
    pub corrupt: Vec<(usize, usize)>,
}

/// Walks every valid record (under `key`) in `buf` from offset 0, calling
/// `f(offset, header, record bytes)`. Stops at the clean end (zeros) or at a
/// torn tail; skips a corrupt record when a valid one follows it. A damaged
/// record whose header is sound is skipped by its declared length: nothing
/// inside it (its payload may hold anything) is ever taken for a record.
/// `active`: the log's last segment, whose end may hold writes that did not
/// complete (see `unwritten_block`).
pub(crate) fn walk(
    buf: &[u8],
    active: bool,
    key: &Key,
    mut f: impl FnMut(usize, &RecordHeader, &[u8]),
) -> WalkEnd {
    let mut off = 0usize;
    let mut out = WalkEnd::default();
    while off < buf.len() {
        let from = match format::probe(&buf[off..], key) {
            Probe::Valid { len } => {
                if let Some(h) = format::header(&buf[off..]) {
                    f(off, h, &buf[off..off + len]);
                }
                off += len;
                out.end = off;
                continue;
            }
            Probe::End => return out,
            // The record ends past the data: nothing can follow it.
            Probe::BadCrc { len } if off + len >= buf.len() => {
                out.torn = true;
                return out;
            }
            Probe::BadCrc { len } => off + len,
            Probe::Garbage => off + 1,
        };
        match resync(buf, from, key) {
            Some(next) if !(active && unwritten_block(buf, off, next)) => {
                out.corrupt.push((off, next - off));
                off = next;
            }
            _ => {
                out.torn = true;
                return out;
            }
        }
    }
    out
}

/// Does `[from, to)` hold a whole 4 KiB block of zeros? In the active
/// segment that is a group write that never landed (the committer writes
/// the group behind one in flight at the same time, so valid records can
/// follow it). None of those later records was acknowledged: a group is
/// acknowledged only after every group before it is written. So this is a
/// torn tail, not a corrupt record in the middle; bit rot does not zero
/// whole aligned blocks.
fn unwritten_block(buf: &[u8], from: usize, to: usize) -> bool {
    const BLOCK: usize = 4096;
    let mut at = from.next_multiple_of(BLOCK);
    while at + BLOCK <= to.min(buf.len()) {
        if buf[at..at + BLOCK].iter().all(|&b| b == 0) {
            return true;
        }
        at += BLOCK;
    }
    false
}

/// Finds the next offset >= `from` holding a valid record under `key`.
fn resync(buf: &[u8], from: usize, key: &Key) -> Option<usize> {
    let magic = format::RECORD_MAGIC.to_le_bytes();
    let hay = buf.get(from..)?;
    memchr::memmem::find_iter(hay, &magic)
        .map(|i| from + i)
        .find(|&at| matches!(format::probe(&buf[at..], key), Probe::Valid { .. }))
}

/// The kind of a record header (msg/tombstone/floor), tolerant of unknowns.
pub(crate) fn kind_of(h: &RecordHeader) -> Option<Kind> {
    h.kind()
}

/// Body slices of a complete record: (subject, headers, payload).
pub(crate) fn body(rec: &[u8], h: &RecordHeader) -> (usize, usize, usize) {
    let s = HEADER_LEN;
    let hd = s + h.subject_len.get() as usize;
    let p = hd + h.headers_len.get() as usize;
    debug_assert!(p + h.payload_len.get() as usize <= rec.len());
    (s, hd, p)
}

#[cfg(test)]
mod tests {
    use super::*;

    const K: Key = Key::ZERO;

    #[allow(clippy::too_many_arguments)]
    fn encode(
        buf: &mut Vec<u8>,
        kind: Kind,
        flags: u16,
        seq: u64,
        ts: u64,
        s: &[u8],
        h: &[u8],
        p: &[u8],
    ) -> u32 {
        crate::format::encode(buf, &K, kind, flags, seq, ts, s, h, p)
    }

    #[test]
    fn names() {
        assert_eq!(parse_name(&seg_name(42, 3)), Some((42, 3, "seg")));
        assert_eq!(parse_name("foo.seg"), None);
    }

    #[test]
    fn walk_finds_torn_tail_and_mid_corruption() {
        let mut buf = Vec::new();
        for i in 1..=3u64 {
            encode(&mut buf, Kind::Msg, 0, i, i, b"s", b"", b"abcdef");
        }
        let rec = buf.len() / 3;
        let mut seen = Vec::new();
        let end = walk(&buf, false, &K, |o, h, _| seen.push((o, h.seq.get())));
        assert_eq!(seen.len(), 3);
        assert_eq!(end.end, buf.len());
        assert!(!end.torn);

        // Corrupt the middle record: skipped and reported.
        let mut mid = buf.clone();
        mid[rec + HEADER_LEN + 2] ^= 0xff;
        let mut seqs = Vec::new();
        let e = walk(&mid, true, &K, |_, h, _| seqs.push(h.seq.get()));
        assert_eq!(seqs, vec![1, 3]);
        assert_eq!(e.corrupt, vec![(rec, rec)]);

        // Torn tail: half of the last record, then zeros.
        let mut torn = buf[..rec * 2 + rec / 2].to_vec();
        torn.extend_from_slice(&[0u8; 100]);
        let e = walk(&torn, false, &K, |_, _, _| {});
        assert!(e.torn);
        assert_eq!(e.end, rec * 2);
    }

    #[test]
    fn unwritten_blocks_before_later_records_end_the_active_segment() {
        // Records, then a record whose last blocks never landed (zeros),
        // then records of a group written beside it, from a block boundary.
        let mut buf = Vec::new();
        encode(&mut buf, Kind::Msg, 0, 1, 1, b"s", b"", &[7u8; 100]);
        let torn_at = buf.len();
        encode(&mut buf, Kind::Msg, 0, 2, 2, b"s", b"", &[7u8; 9000]);
        buf.truncate(4096);
        buf.resize(3 * 4096, 0);
        encode(&mut buf, Kind::Msg, 0, 3, 3, b"s", b"", &[7u8; 100]);
        let mut seqs = Vec::new();
        let e = walk(&buf, true, &K, |_, h, _| seqs.push(h.seq.get()));
        assert_eq!(seqs, vec![1]);
        assert!(e.torn);
        assert_eq!(e.end, torn_at);
        // The same bytes in a sealed segment: a corrupt record, skipped.
        let mut seqs = Vec::new();
        let e = walk(&buf, false, &K, |_, h, _| seqs.push(h.seq.get()));
        assert_eq!(seqs, vec![1, 3]);
        assert_eq!(e.corrupt.len(), 1);
    }

    #[test]
    fn names_intern_subjects_by_slot() {
        let mut n = Names::default();
        n.note(0, b"a.b");
        n.note(2, b"c");
        n.note(3, b"a.b");
        assert_eq!(n.get(0), Some(&b"a.b"[..]));
        assert_eq!(n.get(1), None, "a slot never noted is unknown");
        assert_eq!(n.get(2), Some(&b"c"[..]));
        assert_eq!(n.get(3), Some(&b"a.b"[..]));
        assert_eq!(n.get(9), None);
        assert_eq!(n.list.len(), 2, "one copy per distinct subject");
    }
}
