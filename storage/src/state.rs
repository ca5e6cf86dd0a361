//! The in-memory half of a log: segments, subject index, counters, and the
//! synchronous operations on them (lookups, removals, limit enforcement).
//! Nothing here awaits; the async layer borrows this briefly and never
//! across an await point.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use crate::config::{Discard, LogConfig};
use crate::error::{Error, LimitKind, Result};
use crate::format::{self, HEADER_LEN};
use crate::segment::{self, Segment};
use crate::subject::Filter;
use crate::RecoveryReport;

#[derive(Debug, Clone, Default)]
pub(crate) struct SubjInfo {
    pub first: u64,
    pub last: u64,
    pub count: u64,
    /// `first`/`last` may point at removed records; fixed up lazily on the
    /// next query so deletes stay O(1).
    pub first_stale: bool,
    pub last_stale: bool,
}

pub(crate) type SubjectMap = HashMap<Box<[u8]>, SubjInfo, ahash::RandomState>;

/// A message as returned by reads; every field slices the segment mapping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMsg {
    pub seq: u64,
    /// Nanoseconds since the Unix epoch, assigned by the log.
    pub ts: u64,
    pub subject: Bytes,
    pub headers: Bytes,
    pub payload: Bytes,
}

pub(crate) struct State {
    pub cfg: LogConfig,
    pub dir: PathBuf,
    /// Ascending by base; the last one is the active (writable) segment.
    pub segs: Vec<Segment>,
    pub subjects: SubjectMap,
    /// Lowest live sequence, or `next_seq` when empty.
    pub first_seq: u64,
    pub next_seq: u64,
    pub msgs: u64,
    pub bytes: u64,
    pub last_ts: u64,
    /// Every sequence below this is gone.
    pub floor: u64,
    /// A floor marker must be written with the next commit.
    pub pending_floor: bool,
    /// Tombstones that must be written with the next commit.
    pub pending_tombs: Vec<u64>,
    /// Some pending control record comes from an explicit delete, purge
    /// or limit change: the high-water mark must follow it once durable.
    /// Deletes that limits make on their own as appends land need no
    /// mark (each open applies the limits again), which spares a history-1
    /// KV put a second write and sync per group.
    pub guard_control: bool,
    /// A purge to a future sequence: the committer moves `next_seq` there
    /// before its next group (never while a write is in flight).
    pub jump_to: u64,
    pub dirty: bool,
    pub last_sync: Instant,
    /// An fsync failed: what the kernel still holds of the bytes written
    /// since the last good sync is unknown (a later sync that succeeds
    /// proves nothing about them), so the log acknowledges nothing more
    /// until it is reopened and recovered from what is on disk.
    pub poisoned: Option<(std::io::ErrorKind, String)>,
    /// The log's salt (part of every record's key, `format::Key`).
    pub salt: u64,
    /// `log-<salt>.meta`: the durable high-water mark (`meta.rs`).
    pub meta_path: PathBuf,
    /// The mark last written (or found at open) and its slot counter.
    pub hwm: crate::meta::Hwm,
    pub hwm_counter: u64,
    /// A mark to write once the bytes it covers are durable: set when a
    /// group carrying tombstones or a floor is written.
    pub hwm_want: Option<crate::meta::Hwm>,
    pub report: RecoveryReport,
    pub compacting: bool,
    /// Sequences erased while a compaction copied their segment: the new
    /// generation must be erased too.
    pub erase_after_compaction: Vec<u64>,
    /// The latest removals (sequence, subject when known), for readers
    /// that keep counts up to date instead of recounting.
    pub removed: std::collections::VecDeque<(u64, Option<Box<[u8]>>)>,
    /// Removals ever recorded (`removed` holds the last of them).
    pub removed_total: u64,
}

/// Removals `State::removed` remembers.
pub(crate) const REMOVED_KEPT: usize = 4096;

pub(crate) fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

impl State {
    /// The error every write gets once an fsync failed (`poisoned`).
    pub fn poison_error(&self) -> Option<Error> {
        self.poisoned.as_ref().map(|(kind, msg)| {
            Error::Io(std::io::Error::new(
                *kind,
                format!("an fsync failed ({msg}); the log accepts no writes until it is reopened"),
            ))
        })
    }

    /// Control records wait to be written (never once poisoned: they stay
    /// in memory, nothing more is written).
    pub fn control_pending(&self) -> bool {
        self.poisoned.is_none() && (self.pending_floor || !self.pending_tombs.is_empty())
    }

    /// Stops the log acknowledging anything after a failed fsync.
    pub fn poison(&mut self, e: &Error) {
        if self.poisoned.is_some() {
            return;
        }
        tracing::error!(dir = ?self.dir, error = %e, "fsync failed: the log stops accepting writes until it is reopened");
        let kind = match e {
            Error::Io(io) => io.kind(),
            Error::NoSpace => std::io::ErrorKind::StorageFull,
            _ => std::io::ErrorKind::Other,
        };
        self.poisoned = Some((kind, e.to_string()));
    }

    pub fn active(&self) -> &Segment {
        // A log always has an active segment (open creates one).
        &self.segs[self.segs.len() - 1]
    }

    pub fn active_mut(&mut self) -> &mut Segment {
        let n = self.segs.len() - 1;
        &mut self.segs[n]
    }

    /// Index of the segment whose range would hold `seq`.
    pub fn seg_for(&self, seq: u64) -> Option<usize> {
        let i = self.segs.partition_point(|s| s.base <= seq);
        i.checked_sub(1)
    }

    pub fn locate(&self, seq: u64) -> Option<(usize, usize)> {
        let si = self.seg_for(seq)?;
        Some((si, self.segs[si].offset_of(seq)?))
    }

    /// First live sequence >= `from`.
    pub fn next_live(&self, from: u64) -> Option<(u64, usize, usize)> {
        let from = from.max(self.first_seq);
        let mut si = self.seg_for(from).unwrap_or(0);
        let mut seq = from;
        while si < self.segs.len() {
            let s = &self.segs[si];
            let start = seq.max(s.base);
            for i in (start - s.base) as usize..s.offsets.len() {
                let o = s.offsets[i];
                if o != segment::ABSENT {
                    return Some((s.base + i as u64, si, o as usize));
                }
            }
            si += 1;
            seq = start;
        }
        None
    }

    /// Last live sequence <= `from`.
    pub fn prev_live(&self, from: u64) -> Option<(u64, usize, usize)> {
        if from < self.first_seq {
            return None;
        }
        let mut si = self.seg_for(from)?;
        loop {
            let s = &self.segs[si];
            let top = (from.saturating_sub(s.base) as usize + 1).min(s.offsets.len());
            for i in (0..top).rev() {
                let o = s.offsets[i];
                if o != segment::ABSENT {
                    return Some((s.base + i as u64, si, o as usize));
                }
            }
            si = si.checked_sub(1)?;
        }
    }

    /// The record at a known offset, CRC-checked. A failing record is taken
    /// out of the index (never served) and reported.
    pub fn read(&mut self, seq: u64, si: usize, off: usize) -> Result<StoredMsg> {
        let s = &mut self.segs[si];
        // Erased and still whole (a flipped flag bit is damage, below).
        let erased = s.header_at(off).is_some_and(|h| {
            h.flags.get() & format::FLAG_ERASED != 0
                && s.bytes(off, h.record_len())
                    .is_some_and(|rec| format::crc_ok(rec, &s.key))
        });
        if erased {
            // Erased, so deleted: its tombstone was lost. Delete it again.
            tracing::warn!(seq, path = ?s.path, off, "erased record was indexed as live; deleted");
            self.remove(seq);
            self.pending_tombs.push(seq);
            return Err(Error::NotFound(seq));
        }
        let checked = s.header_at(off).and_then(|h| {
            let len = h.record_len();
            let rec = s.bytes(off, len)?;
            (h.seq.get() == seq && format::crc_ok(rec, &s.key))
                .then(|| (len, h.ts.get(), segment::body(rec, h)))
        });
        let ok = checked.and_then(|(len, ts, (a, b, c))| {
            let rec = s.shared(off, len)?;
            Some(StoredMsg {
                seq,
                ts,
                subject: rec.slice(a..b),
                headers: rec.slice(b..c),
                payload: rec.slice(c..len),
            })
        });
        match ok {
            Some(m) => Ok(m),
            None => {
                let err = s.corrupt(off);
                tracing::error!(seq, path = ?s.path, off, "corrupt record dropped from index");
                self.report.corrupt.push((s.path.clone(), off as u64));
                self.remove(seq);
                self.pending_tombs.push(seq);
                Err(err)
            }
        }
    }

    pub fn subject_of(&self, si: usize, off: usize) -> Option<&[u8]> {
        let s = &self.segs[si];
        let h = s.header_at(off)?;
        s.bytes(off + HEADER_LEN, h.subject_len.get() as usize)
    }

    /// Takes a live sequence out of every index. True when it was live.
    pub fn remove(&mut self, seq: u64) -> bool {
        let Some((si, off)) = self.locate(seq) else {
            return false;
        };
        let subj: Option<Box<[u8]>> = self.subject_of(si, off).map(Into::into);
        let Some(len) = self.segs[si].remove(seq) else {
            return false;
        };
        if self.removed.len() == REMOVED_KEPT {
            self.removed.pop_front();
        }
        self.removed.push_back((seq, subj.clone()));
        self.removed_total += 1;
        self.msgs = self.msgs.saturating_sub(1);
        self.bytes = self.bytes.saturating_sub(len as u64);
        if let Some(subj) = subj {
            if let Some(info) = self.subjects.get_mut(&subj) {
                info.count = info.count.saturating_sub(1);
                if info.count == 0 {
                    self.subjects.remove(&subj);
                } else {
                    info.first_stale |= info.first == seq;
                    info.last_stale |= info.last == seq;
                    // One message left: the end still known names it, so
                    // no walk is needed later. This is every put to a KV
                    // key of history 1 (its old value goes), which would
                    // otherwise walk from the old value to the new one.
                    if info.count == 1 {
                        if info.first_stale && !info.last_stale {
                            info.first = info.last;
                            info.first_stale = false;
                        } else if info.last_stale && !info.first_stale {
                            info.last = info.first;
                            info.last_stale = false;
                        }
                    }
                }
            }
        }
        if seq == self.first_seq {
            self.first_seq = self.next_live(seq + 1).map_or(self.next_seq, |x| x.0);
        }
        true
    }

    /// Removes every live record below `floor` and records the new floor.
    pub fn raise_floor(&mut self, floor: u64) -> u64 {
        let mut n = 0;
        while self.first_seq < floor && self.first_seq < self.next_seq {
            let s = self.first_seq;
            if self.remove(s) {
                n += 1;
            } else {
                break; // index inconsistency; never loop forever
            }
        }
        if floor > self.floor {
            self.floor = floor;
            self.pending_floor = true;
        }
        if self.first_seq < floor {
            self.first_seq = floor.min(self.next_seq);
        }
        self.drop_empty_front();
        n
    }

    /// Drops whole segments at the front that hold nothing live. Their files
    /// are unlinked once the last reader releases the mapping.
    pub fn drop_empty_front(&mut self) {
        while self.segs.len() > 1 && self.segs[0].live == 0 && !self.compacting {
            let seg = self.segs.remove(0);
            let _ = std::fs::remove_file(self.dir.join(segment::idx_name(seg.base, seg.gen)));
            seg.retire();
        }
    }

    /// The subject's (first, last, count) with stale ends fixed up.
    pub fn fix_subject(&mut self, subj: &[u8]) -> Option<SubjInfo> {
        let info = self.subjects.get(subj)?.clone();
        let mut fixed = info.clone();
        if info.first_stale {
            let mut s = info.first;
            while let Some((seq, si, off)) = self.next_live(s) {
                if self.subject_of(si, off) == Some(subj) {
                    fixed.first = seq;
                    break;
                }
                s = seq + 1;
            }
            fixed.first_stale = false;
        }
        if info.last_stale {
            let mut s = info.last;
            while let Some((seq, si, off)) = self.prev_live(s) {
                if self.subject_of(si, off) == Some(subj) {
                    fixed.last = seq;
                    break;
                }
                if seq == 0 {
                    break;
                }
                s = seq - 1;
            }
            fixed.last_stale = false;
        }
        if let Some(i) = self.subjects.get_mut(subj) {
            *i = fixed.clone();
        }
        Some(fixed)
    }

    /// (first, last, count) over every subject matching `filter`.
    pub fn subject_range(&mut self, filter: &Filter) -> Option<(u64, u64, u64)> {
        if let Some(lit) = filter.as_literal() {
            let i = self.fix_subject(lit)?;
            return Some((i.first, i.last, i.count));
        }
        let keys: Vec<Box<[u8]>> = self
            .subjects
            .keys()
            .filter(|k| filter.matches(k))
            .cloned()
            .collect();
        let mut acc: Option<(u64, u64, u64)> = None;
        for k in keys {
            if let Some(i) = self.fix_subject(&k) {
                acc = Some(match acc {
                    None => (i.first, i.last, i.count),
                    Some((f, l, c)) => (f.min(i.first), l.max(i.last), c + i.count),
                });
            }
        }
        acc
    }

    /// Under `Discard::New`, refuses a message that would break a limit.
    /// `extra_*` account for messages accepted earlier in the same batch.
    /// Discard-new limits for one more record; `extra` counts records
    /// framed but not yet applied (messages, bytes, same subject).
    pub fn check_new(&self, subject: &[u8], len: usize, extra: (u64, u64, u64)) -> Result<()> {
        let l = &self.cfg.limits;
        if l.discard != Discard::New {
            return Ok(());
        }
        if l.max_msgs.is_some_and(|m| self.msgs + extra.0 + 1 > m) {
            return Err(Error::LimitReached(LimitKind::MaxMsgs));
        }
        if l.max_bytes
            .is_some_and(|m| self.bytes + extra.1 + len as u64 > m)
        {
            return Err(Error::LimitReached(LimitKind::MaxBytes));
        }
        if l.discard_new_per_subject {
            if let Some(m) = l.max_msgs_per_subject {
                let c = self.subjects.get(subject).map_or(0, |i| i.count);
                if c + extra.2 + 1 > m {
                    return Err(Error::LimitReached(LimitKind::MaxMsgsPerSubject));
                }
            }
        }
        Ok(())
    }

    /// Applies the per-subject limit to `subj` by tombstoning its oldest.
    pub fn enforce_subject(&mut self, subj: &[u8]) {
        let Some(max) = self.cfg.limits.max_msgs_per_subject else {
            return;
        };
        while self.subjects.get(subj).is_some_and(|i| i.count > max) {
            let Some(i) = self.fix_subject(subj) else {
                break;
            };
            if !self.remove(i.first) {
                break;
            }
            self.pending_tombs.push(i.first);
        }
    }

    /// Applies discard-old limits (msgs, bytes, age) by raising the floor.
    pub fn enforce_global(&mut self) {
        let l = self.cfg.limits.clone();
        let mut floor = self.first_seq;
        if l.discard == Discard::Old {
            let over = |st: &State| {
                l.max_msgs.is_some_and(|m| st.msgs > m) || l.max_bytes.is_some_and(|m| st.bytes > m)
            };
            while over(self) && self.msgs > 0 {
                let s = self.first_seq;
                if !self.remove(s) {
                    break;
                }
                floor = s + 1;
            }
        }
        if let Some(age) = l.max_age {
            let cutoff = now_ns().saturating_sub(age.as_nanos() as u64);
            while let Some((seq, si, off)) = self.next_live(self.first_seq) {
                let ts = self.segs[si].header_at(off).map_or(0, |h| h.ts.get());
                if ts >= cutoff || !self.remove(seq) {
                    break;
                }
                floor = seq + 1;
            }
        }
        if floor > self.floor {
            self.raise_floor(floor);
        }
        self.drop_empty_front();
    }

    /// Applies every limit to everything: per-subject first, then global.
    pub fn enforce_all(&mut self) {
        if self.cfg.limits.max_msgs_per_subject.is_some() {
            let subjects: Vec<Box<[u8]>> = self.subjects.keys().cloned().collect();
            for s in subjects {
                self.enforce_subject(&s);
            }
        }
        self.enforce_global();
    }

    /// First live sequence whose timestamp is >= `ts`.
    pub fn seq_for_time(&self, ts: u64) -> Option<u64> {
        let si = self
            .segs
            .iter()
            .position(|s| s.live > 0 && s.last_ts >= ts)?;
        for s in &self.segs[si..] {
            // Timestamps are monotonic, so binary search over slots; absent
            // slots are resolved to the next live one.
            let live_ts = |i: usize| -> Option<(usize, u64)> {
                (i..s.offsets.len()).find_map(|j| {
                    let o = s.offsets[j];
                    (o != segment::ABSENT)
                        .then(|| s.header_at(o as usize).map(|h| (j, h.ts.get())))
                        .flatten()
                })
            };
            let (mut lo, mut hi) = (0usize, s.offsets.len());
            while lo < hi {
                let mid = (lo + hi) / 2;
                match live_ts(mid) {
                    Some((_, t)) if t >= ts => hi = mid,
                    Some((j, _)) => lo = j + 1,
                    None => hi = mid,
                }
            }
            if let Some((j, _)) = live_ts(lo) {
                return Some(s.base + j as u64);
            }
        }
        None
    }

    /// Appends a message record's effects to the indexes (after its write).
    pub fn apply_msg(&mut self, seq: u64, off: usize, ts: u64, len: usize, subject: &[u8]) {
        let a = self.active_mut();
        a.index_msg(seq, off, ts, len);
        a.note_subject(seq, subject);
        self.msgs += 1;
        self.bytes += len as u64;
        if self.msgs == 1 {
            self.first_seq = seq;
        }
        self.next_seq = seq + 1;
        self.last_ts = ts;
        match self.subjects.get_mut(subject) {
            Some(i) => {
                i.count += 1;
                i.last = seq;
                i.last_stale = false;
            }
            None => {
                self.subjects.insert(
                    subject.into(),
                    SubjInfo {
                        first: seq,
                        last: seq,
                        count: 1,
                        ..Default::default()
                    },
                );
            }
        }
    }
}
