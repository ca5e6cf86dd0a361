//! The public `Log` handle: open, append, read, delete, purge, state.
//!
//! A `Log` is a cheap `Rc` handle; clones share one log. It is `!Send` by
//! construction and must stay on the glommio executor that opened it.

use std::cell::{Cell, RefCell};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;

use crate::commit::{CommitStats, Expect, Op, Queue, Ticket};
use crate::config::{Durability, Limits, LogConfig};
use crate::error::{Error, Result};
use crate::format;
use crate::io::{FaultInjector, LogFile, WriteMode};
use crate::recovery::{self, RecoveryReport};
use crate::state::{State, StoredMsg};
use crate::subject::Filter;

pub(crate) struct Inner {
    pub dir: PathBuf,
    pub faults: Option<FaultInjector>,
    pub st: RefCell<State>,
    pub q: RefCell<Queue>,
    pub closed: Cell<bool>,
    /// Compactions under way (`compact.rs`), from their first step to
    /// their last write: close waits for them, and none starts once closed,
    /// so a closed log never writes again (its directory may be deleted,
    /// or opened by a new instance that would pick the same file names).
    pub compactions: Cell<u32>,
    /// The next segment file, made ahead of the roll (`spare.rs`).
    pub spare: crate::spare::SpareSlot,
    /// Sealing rolled segments, making the spare: waited for at close.
    pub background: crate::background::Background,
    /// High-water mark writes under `always` (`meta.rs`): appends do not
    /// wait for them; deletes, purges, limit changes and flushes do.
    pub marks: crate::background::Background,
}

/// Handle to one log. See the crate docs for the threading model.
#[derive(Clone)]
pub struct Log {
    pub(crate) inner: Rc<Inner>,
}

/// Where a scan starts.
#[derive(Debug, Clone, Copy)]
pub enum Start {
    Seq(u64),
    /// First message with a timestamp >= this (ns since the epoch).
    Time(u64),
}

/// Purge request; all fields empty purges everything.
#[derive(Debug, Clone, Default)]
pub struct Purge {
    /// Only messages matching this subject filter (wildcards allowed).
    pub subject: Option<String>,
    /// Only messages with a sequence below this.
    pub up_to: Option<u64>,
    /// Keep this many newest (matching) messages.
    pub keep: Option<u64>,
}

/// A snapshot of the log's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogState {
    pub msgs: u64,
    pub bytes: u64,
    pub first_seq: u64,
    pub first_ts: u64,
    pub last_seq: u64,
    pub last_ts: u64,
    pub num_subjects: u64,
    pub num_deleted: u64,
    /// Interior deleted sequences, filled when asked for.
    pub deleted: Option<Vec<u64>>,
}

impl Log {
    /// Opens (recovering) or creates the log in `dir`.
    pub async fn open(dir: impl AsRef<Path>, cfg: LogConfig) -> Result<Log> {
        Self::open_with_faults(dir, cfg, None).await
    }

    /// Like `open`, with a fault-injection layer under every file (tests).
    pub async fn open_with_faults(
        dir: impl AsRef<Path>,
        cfg: LogConfig,
        faults: Option<FaultInjector>,
    ) -> Result<Log> {
        let dir = dir.as_ref().to_path_buf();
        recovery::check_dir(&dir)?;
        std::fs::create_dir_all(&dir)?;
        // glommio opens directories by absolute path only.
        let dir = std::fs::canonicalize(&dir)?;
        let mut cfg = cfg;
        if cfg.write_mode == WriteMode::Direct && !crate::io::direct_supported(&dir)? {
            // tmpfs and some network filesystems refuse O_DIRECT.
            tracing::warn!(dir = ?dir, "O_DIRECT not supported here; writing through the page cache");
            cfg.write_mode = WriteMode::Buffered;
        }
        let rec = recovery::recover(&dir, &cfg)?;
        let need_active = rec.need_active;
        let inner = Rc::new(Inner {
            dir: dir.clone(),
            faults: faults.clone(),
            st: RefCell::new(rec.state),
            q: RefCell::new(Queue::default()),
            closed: Cell::new(false),
            compactions: Cell::new(0),
            spare: Default::default(),
            background: Default::default(),
            marks: Default::default(),
        });
        if need_active {
            inner.new_active(0).await?;
        } else {
            let path = inner.st.borrow().active().path.clone();
            let dsync = cfg.durability == Durability::Always;
            let end = inner.st.borrow().active().len;
            let f = match cfg.write_mode {
                WriteMode::Buffered => LogFile::open_with(&path, faults, false, dsync).await?,
                WriteMode::Direct => LogFile::open_direct(&path, faults, false, dsync, end).await?,
            };
            let capacity = inner.st.borrow().active().capacity;
            f.reserve(capacity).await;
            inner.st.borrow_mut().active_mut().file = Some(Rc::new(f));
        }
        let log = Log { inner };
        {
            let mut st = log.inner.st.borrow_mut();
            st.enforce_all();
        }
        log.inner.kick();
        crate::roll::spawn_maintenance(Rc::downgrade(&log.inner));
        Ok(log)
    }

    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Appends one message; resolves with (sequence, timestamp) once it is
    /// as durable as the log's policy promises.
    pub async fn append(
        &self,
        subject: &str,
        headers: &[u8],
        payload: &[u8],
    ) -> Result<(u64, u64)> {
        self.append_bytes(
            Bytes::copy_from_slice(subject.as_bytes()),
            Bytes::copy_from_slice(headers),
            Bytes::copy_from_slice(payload),
        )
        .await
    }

    /// `append` without copying the caller's buffers before framing.
    pub async fn append_bytes(
        &self,
        subject: Bytes,
        headers: Bytes,
        payload: Bytes,
    ) -> Result<(u64, u64)> {
        self.append_expect(subject, headers, payload, Expect::default())
            .await
    }

    /// Appends only if `expect` holds at the moment the record is framed
    /// (atomic with respect to every other append of this log).
    pub async fn append_expect(
        &self,
        subject: Bytes,
        headers: Bytes,
        payload: Bytes,
        expect: Expect,
    ) -> Result<(u64, u64)> {
        let t = self.stage_msg(subject, headers, payload, expect, None)?;
        t.wait().await;
        t.appended()
    }

    /// Appends a message with its own sequence and timestamp (a mirror
    /// keeps its origin's). `seq` must not be below the log's next
    /// sequence (`Error::SequenceUsed`); the sequences between are used
    /// without a message (gaps, as deleted ones), durably: a skip record
    /// before the message, or for a long gap a new segment starting at
    /// `seq`. `ts` is raised to the newest timestamp stored if older, so
    /// timestamps never go backwards. Resolves with the (seq, ts) stored.
    pub async fn append_at(
        &self,
        seq: u64,
        ts: u64,
        subject: Bytes,
        headers: Bytes,
        payload: Bytes,
    ) -> Result<(u64, u64)> {
        let at = crate::commit::At {
            seq: seq.min(MAX_SEQ),
            ts,
        };
        let t = self.stage_msg(subject, headers, payload, Expect::default(), Some(at))?;
        t.wait().await;
        t.appended()
    }

    /// [`Self::append_expect`] without a future per message: the message
    /// is staged now (framed in staging order) and the ticket tells when
    /// it is as durable as the policy promises, and where it went. A
    /// caller with many appends in flight waits on the oldest ticket only.
    pub fn stage(
        &self,
        subject: Bytes,
        headers: Bytes,
        payload: Bytes,
        expect: Expect,
    ) -> Result<Ticket> {
        self.stage_msg(subject, headers, payload, expect, None)
    }

    fn stage_msg(
        &self,
        subject: Bytes,
        headers: Bytes,
        payload: Bytes,
        expect: Expect,
        at: Option<crate::commit::At>,
    ) -> Result<Ticket> {
        if subject.len() > format::MAX_SUBJECT_LEN {
            return Err(Error::SubjectTooLong(subject.len()));
        }
        let size = subject.len() + headers.len() + payload.len();
        let max = self.inner.st.borrow().cfg.limits.max_msg_size;
        if let Some(max) = max {
            if size > max {
                return Err(Error::MsgTooLarge { size, max });
            }
        }
        // A record must fit a u32-offset segment.
        if size > (u32::MAX as usize) / 2 {
            return Err(Error::MsgTooLarge {
                size,
                max: u32::MAX as usize / 2,
            });
        }
        self.inner.stage(Op::Msg {
            subject,
            headers,
            payload,
            expect,
            at,
        })
    }

    /// The message with this sequence.
    pub fn get(&self, seq: u64) -> Result<StoredMsg> {
        let mut st = self.inner.st.borrow_mut();
        let (si, off) = st.locate(seq).ok_or(Error::NotFound(seq))?;
        st.read(seq, si, off)
    }

    /// First message with sequence >= `from` matching `filter`. Corrupt
    /// records on the way are reported and skipped.
    pub fn next_msg(&self, from: u64, filter: &Filter) -> Result<Option<StoredMsg>> {
        let mut st = self.inner.st.borrow_mut();
        let mut from = from;
        if filter.as_literal().is_some() {
            match st.subject_range(filter) {
                None => return Ok(None),
                Some((first, last, _)) => {
                    if last < from {
                        return Ok(None);
                    }
                    from = from.max(first);
                }
            }
        }
        while let Some((seq, si, off)) = st.next_live(from) {
            from = seq + 1;
            if !filter.matches_all() {
                match st.subject_of(si, off) {
                    Some(s) if filter.matches(s) => {}
                    _ => continue,
                }
            }
            match st.read(seq, si, off) {
                Ok(m) => return Ok(Some(m)),
                Err(Error::Corrupt { .. } | Error::NotFound(_)) => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(None)
    }

    /// Oldest message matching `filter` (wildcards allowed).
    pub fn first_for(&self, filter: &Filter) -> Result<Option<StoredMsg>> {
        let first = self.inner.st.borrow_mut().subject_range(filter);
        match first {
            None => Ok(None),
            Some((f, _, _)) => self.next_msg(f, filter),
        }
    }

    /// Newest message matching `filter` (wildcards allowed).
    pub fn last_for(&self, filter: &Filter) -> Result<Option<StoredMsg>> {
        let range = self.inner.st.borrow_mut().subject_range(filter);
        // For wildcards this is the max over matching subjects, exact once
        // their stale first/last were fixed up by `subject_range`.
        match range {
            None => Ok(None),
            Some((_, last, _)) => self.get(last).map(Some),
        }
    }

    /// First sequence whose timestamp is >= `ts` (ns since the epoch).
    pub fn seq_for_time(&self, ts: u64) -> Option<u64> {
        self.inner.st.borrow().seq_for_time(ts)
    }

    /// Iterates messages from `start` matching `filter`.
    pub fn scan(&self, start: Start, filter: Filter) -> Scan {
        let next = match start {
            Start::Seq(s) => s,
            Start::Time(t) => self.seq_for_time(t).unwrap_or(u64::MAX),
        };
        Scan {
            log: self.clone(),
            next,
            filter,
        }
    }

    /// How many stored messages with sequence >= `from` match `filter`
    /// (JetStream's "num pending").
    pub fn count_from(&self, from: u64, filter: &Filter) -> u64 {
        let mut st = self.inner.st.borrow_mut();
        if filter.matches_all() {
            return st
                .segs
                .iter()
                .map(|s| {
                    if s.base >= from {
                        s.live
                    } else if s.end_seq() > from {
                        let i = (from - s.base) as usize;
                        s.offsets[i..]
                            .iter()
                            .filter(|o| **o != crate::segment::ABSENT)
                            .count() as u64
                    } else {
                        0
                    }
                })
                .sum();
        }
        let keys: Vec<Box<[u8]>> = st
            .subjects
            .keys()
            .filter(|k| filter.matches(k))
            .cloned()
            .collect();
        let mut n = 0;
        for k in keys {
            let Some(info) = st.fix_subject(&k) else {
                continue;
            };
            let (first, last, count) = (info.first, info.last, info.count);
            if first >= from {
                n += count;
            } else if last >= from {
                // Straddling `from`: walk the shorter side, [first, from)
                // (and take it from the count) or [from, last]. A consumer
                // is usually near one end of its subject's messages.
                let (lo, hi, before) = if from - first < last - from {
                    (first, from - 1, true)
                } else {
                    (from, last, false)
                };
                let mut m = 0;
                let mut at = lo;
                while let Some((seq, si, off)) = st.next_live(at) {
                    if seq > hi {
                        break;
                    }
                    if st.subject_of(si, off) == Some(&k[..]) {
                        m += 1;
                    }
                    at = seq + 1;
                }
                n += if before { count.saturating_sub(m) } else { m };
            }
        }
        n
    }

    /// Per-subject message counts for subjects matching `filter`.
    pub fn subjects(&self, filter: &Filter) -> Vec<(Bytes, u64)> {
        let st = self.inner.st.borrow();
        st.subjects
            .iter()
            .filter(|(k, _)| filter.matches(k))
            .map(|(k, i)| (Bytes::copy_from_slice(k), i.count))
            .collect()
    }

    pub fn state(&self, with_deleted: bool) -> LogState {
        let st = self.inner.st.borrow();
        let last_seq = st.next_seq - 1;
        let first_seq = st.first_seq;
        let ts_of = |seq: u64| {
            st.locate(seq)
                .and_then(|(si, off)| st.segs[si].header_at(off).map(|h| h.ts.get()))
                .unwrap_or(0)
        };
        let span = (last_seq + 1).saturating_sub(first_seq);
        let deleted = with_deleted.then(|| {
            (first_seq..=last_seq)
                .filter(|s| st.locate(*s).is_none())
                .collect()
        });
        LogState {
            msgs: st.msgs,
            bytes: st.bytes,
            first_seq,
            first_ts: if st.msgs > 0 { ts_of(first_seq) } else { 0 },
            last_seq,
            last_ts: st.prev_live(last_seq).map_or(0, |(s, _, _)| ts_of(s)),
            num_subjects: st.subjects.len() as u64,
            num_deleted: span - st.msgs,
            deleted,
        }
    }

    /// (last sequence, stored messages), cheaply: `last - msgs` grows by
    /// one with every message removed (by any means) and only then, so a
    /// reader can tell whether anything left since it last looked.
    pub fn last_and_count(&self) -> (u64, u64) {
        let st = self.inner.st.borrow();
        (st.next_seq - 1, st.msgs)
    }

    /// A mark for `removals_since`: how many removals there were so far.
    pub fn removal_mark(&self) -> u64 {
        self.inner.st.borrow().removed_total
    }

    /// Calls `f` with (sequence, subject) of each message removed (by any
    /// means) since `mark`, oldest first, and returns the new mark; `None`
    /// when they are not all remembered any more (then count again). A
    /// subject is `None` when it could not be read.
    pub fn removals_since(&self, mark: u64, mut f: impl FnMut(u64, Option<&[u8]>)) -> Option<u64> {
        let st = self.inner.st.borrow();
        let total = st.removed_total;
        let kept = st.removed.len() as u64;
        if mark > total || total - mark > kept {
            return None;
        }
        let skip = (kept - (total - mark)) as usize;
        for (seq, subj) in st.removed.iter().skip(skip) {
            f(*seq, subj.as_deref());
        }
        Some(total)
    }

    /// Deletes one message. With `erase`, its headers and payload are also
    /// overwritten with zeros on disk once the tombstone is durable.
    /// Returns false when the sequence was not stored.
    pub async fn delete(&self, seq: u64, erase: bool) -> Result<bool> {
        let loc = {
            let mut st = self.inner.st.borrow_mut();
            let loc = st
                .locate(seq)
                .map(|(si, off)| (st.segs[si].base, st.segs[si].gen, off));
            if !st.remove(seq) {
                return Ok(false);
            }
            st.pending_tombs.push(seq);
            st.guard_control = true;
            if erase && st.compacting {
                st.erase_after_compaction.push(seq);
            }
            if !erase {
                st.drop_empty_front();
            }
            loc
        };
        self.inner.submit(Op::Barrier).await?;
        self.marks_durable().await?;
        if let (true, Some((base, gen, off))) = (erase, loc) {
            // Erase before the segment may be dropped, so the bytes go even
            // while a reader keeps the retired file mapped.
            self.inner.erase(seq, base, gen, off).await?;
            self.inner.st.borrow_mut().drop_empty_front();
        }
        Ok(true)
    }

    /// Purges messages; returns how many were removed.
    pub async fn purge(&self, req: Purge) -> Result<u64> {
        let n = {
            let mut st = self.inner.st.borrow_mut();
            st.guard_control = true;
            purge_locked(&mut st, &req)
        };
        self.inner.submit(Op::Barrier).await?;
        self.marks_durable().await?;
        Ok(n)
    }

    /// Waits for the high-water marks written beside the appends: a delete
    /// is reported done once the mark that guards it is durable too.
    async fn marks_durable(&self) -> Result<()> {
        self.inner.marks.wait_all().await;
        match self.inner.st.borrow().poison_error() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Replaces the retention limits and applies them now.
    pub async fn set_limits(&self, limits: Limits) -> Result<()> {
        {
            let mut st = self.inner.st.borrow_mut();
            st.cfg.limits = limits;
            st.guard_control = true;
            st.enforce_all();
        }
        self.inner.submit(Op::Barrier).await?;
        self.marks_durable().await
    }

    /// Applies age limits now (the maintenance task also does this).
    pub async fn expire(&self) -> Result<()> {
        {
            let mut st = self.inner.st.borrow_mut();
            st.guard_control = true;
            st.enforce_global();
        }
        self.inner.submit(Op::Barrier).await?;
        self.marks_durable().await
    }

    /// Waits for everything staged, then makes it durable.
    pub async fn flush(&self) -> Result<()> {
        self.inner.submit(Op::Barrier).await?;
        self.inner.sync_active().await?;
        self.marks_durable().await
    }

    /// Flushes and stops accepting writes. Readers' `Bytes` stay valid.
    pub async fn close(&self) -> Result<()> {
        // Appends staged while the flush waited, and deletes a limit staged
        // as the last group was applied, are written too: once closed the
        // commit loop writes nothing more.
        for _ in 0..4 {
            self.flush().await?;
            let staged = self.inner.q.borrow().has_staged();
            if !staged && !self.inner.st.borrow().control_pending() {
                break;
            }
        }
        self.inner.closed.set(true);
        // The committer may be writing a batch it took before the flag
        // (appends that kept coming), and a background compaction may be
        // mid-copy: let them finish so nothing of this instance writes
        // after close returns. The committer refuses what is left.
        self.inner.kick();
        while self.inner.q.borrow().is_running() || self.inner.compactions.get() > 0 {
            glommio::timer::sleep(Duration::from_millis(1)).await;
        }
        self.inner.background.wait_all().await;
        self.inner.discard_spare();
        Ok(())
    }

    pub fn recovery_report(&self) -> RecoveryReport {
        self.inner.st.borrow().report.clone()
    }

    /// Group-commit counters since the log was opened.
    pub fn commit_stats(&self) -> CommitStats {
        self.inner.q.borrow().stats
    }

    /// Number of segment files (sealed + active).
    pub fn segment_count(&self) -> usize {
        self.inner.st.borrow().segs.len()
    }
}

/// The highest sequence a purge moves the log to (a floor beyond it is
/// capped here): no sequence arithmetic can overflow below it.
pub(crate) const MAX_SEQ: u64 = i64::MAX as u64;

/// Computes and applies a purge in memory; tombstones/floor are staged.
fn purge_locked(st: &mut State, req: &Purge) -> u64 {
    let Some(subject) = &req.subject else {
        let floor = match (req.up_to, req.keep) {
            // A floor beyond the end is also where the log continues: that
            // jump is capped so that sequences never overflow, and such a
            // purge (`u64::MAX` included) always removes everything.
            (Some(s), _) if s > st.next_seq => s.min(MAX_SEQ).max(st.next_seq),
            (Some(s), _) => s,
            (None, Some(k)) => {
                let mut at = st.next_seq;
                let mut kept = 0;
                while kept < k {
                    match st.prev_live(at - 1) {
                        Some((s, _, _)) => {
                            at = s;
                            kept += 1;
                        }
                        None => break,
                    }
                    if at == 0 {
                        break;
                    }
                }
                if kept < k {
                    return 0;
                }
                at
            }
            (None, None) => st.next_seq,
        };
        let n = st.raise_floor(floor);
        if floor > st.next_seq {
            // Purge to a future sequence: the log continues from there.
            st.jump_to = st.jump_to.max(floor);
        }
        return n;
    };
    let filter = Filter::one(subject);
    let Some((first, last, _)) = st.subject_range(&filter) else {
        return 0;
    };
    let mut seqs = Vec::new();
    let mut from = first;
    while let Some((seq, si, off)) = st.next_live(from) {
        if seq > last || req.up_to.is_some_and(|u| seq >= u) {
            break;
        }
        if st.subject_of(si, off).is_some_and(|s| filter.matches(s)) {
            seqs.push(seq);
        }
        from = seq + 1;
    }
    if let Some(k) = req.keep {
        let keep = (k as usize).min(seqs.len());
        seqs.truncate(seqs.len() - keep);
    }
    let mut n = 0;
    for s in seqs {
        if st.remove(s) {
            st.pending_tombs.push(s);
            n += 1;
        }
    }
    st.drop_empty_front();
    n
}

/// Iterator over messages (see `Log::scan`). Holds no borrow between calls,
/// so appends may interleave with a scan.
pub struct Scan {
    log: Log,
    next: u64,
    filter: Filter,
}

impl Iterator for Scan {
    type Item = Result<StoredMsg>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.next == u64::MAX {
            return None;
        }
        match self.log.next_msg(self.next, &self.filter) {
            Ok(Some(m)) => {
                self.next = m.seq + 1;
                Some(Ok(m))
            }
            Ok(None) => None,
            Err(e) => {
                self.next = u64::MAX;
                Some(Err(e))
            }
        }
    }
}
