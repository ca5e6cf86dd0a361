//! Group commit. Callers stage operations and await their slot; one
//! committer task per log takes everything staged, frames it into one
//! buffer, issues one io_uring write and (per policy) one `fdatasync`, then
//! publishes the records to the indexes and resolves every slot. Whatever is
//! staged while that I/O is in flight forms the next group.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::Instant;

use bytes::Bytes;

use crate::config::Durability;
use crate::error::{Error, Result};
use crate::format::Sink;
use crate::format::{self, Kind};
use crate::io::{DirectFrame, LogFile, Payload, WriteMode};
use crate::log::Inner;
use crate::state::{now_ns, State};

/// Optimistic-concurrency conditions checked atomically with the append
/// (when its group is framed), as JetStream's expected-last-sequence headers
/// and KV updates need.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Expect {
    /// The log's last sequence must be this.
    pub last_seq: Option<u64>,
    /// The last sequence stored on this message's subject must be this
    /// (0: the subject must have no message).
    pub last_subject_seq: Option<u64>,
}

pub(crate) enum Op {
    Msg {
        subject: Bytes,
        headers: Bytes,
        payload: Bytes,
        expect: Expect,
    },
    /// Resolves once every control record staged before it is durable.
    Barrier,
}

#[derive(Debug)]
pub(crate) enum Outcome {
    Appended { seq: u64, ts: u64 },
    Done,
}

#[derive(Default)]
pub(crate) struct Batch {
    results: RefCell<Vec<Option<Result<Outcome>>>>,
    wakers: RefCell<Vec<Waker>>,
    done: Cell<bool>,
}

#[derive(Default)]
pub(crate) struct Queue {
    ops: Vec<Op>,
    batch: Rc<Batch>,
    running: bool,
}

/// Most sequences per tombstone record (keeps records well under a MiB).
const TOMBS_PER_RECORD: usize = 65536;

impl Inner {
    /// Stages `op` and waits for the group that carries it.
    pub(crate) async fn submit(self: &Rc<Self>, op: Op) -> Result<Outcome> {
        if self.closed.get() {
            return Err(Error::Closed);
        }
        let (batch, idx) = {
            let mut q = self.q.borrow_mut();
            q.ops.push(op);
            let b = q.batch.clone();
            let mut r = b.results.borrow_mut();
            r.push(None);
            let idx = r.len() - 1;
            drop(r);
            (b, idx)
        };
        self.kick();
        futures_lite::future::poll_fn(|cx| {
            if batch.done.get() {
                if let Some(r) = batch
                    .results
                    .borrow_mut()
                    .get_mut(idx)
                    .and_then(Option::take)
                {
                    return Poll::Ready(r);
                }
                return Poll::Ready(Err(Error::Closed));
            }
            batch.wakers.borrow_mut().push(cx.waker().clone());
            Poll::Pending
        })
        .await
    }

    /// Starts the committer unless it is already running.
    pub(crate) fn kick(self: &Rc<Self>) {
        let start = {
            let mut q = self.q.borrow_mut();
            !std::mem::replace(&mut q.running, true)
        };
        if start {
            glommio::spawn_local(commit_loop(self.clone())).detach();
        }
    }
}

async fn commit_loop(inner: Rc<Inner>) {
    loop {
        let (ops, batch) = {
            let mut q = inner.q.borrow_mut();
            let st = inner.st.borrow();
            if q.ops.is_empty() && st.pending_tombs.is_empty() && !st.pending_floor {
                q.running = false;
                return;
            }
            (std::mem::take(&mut q.ops), std::mem::take(&mut q.batch))
        };
        let results = run_batch(&inner, ops).await;
        *batch.results.borrow_mut() = results.into_iter().map(Some).collect();
        batch.done.set(true);
        for w in batch.wakers.take() {
            w.wake();
        }
    }
}

struct Entry {
    slot: usize,
    seq: u64,
    ts: u64,
    off: usize,
    len: usize,
    subject: Bytes,
}

/// Groups larger than this are written as several concurrent io_uring
/// writes (split at record boundaries): the kernel copies buffered writes
/// into the page cache on io-wq workers, so chunks copy on all cores.
const SPLIT: usize = 256 << 10;

/// What one write of the group will carry.
struct Plan {
    /// The framed records, in chunks of about `split` bytes (buffered).
    bufs: Vec<Vec<u8>>,
    /// The framed records in DMA memory (O_DIRECT segments).
    frame: Option<DirectFrame>,
    /// Bytes in all chunks but the last.
    done: usize,
    split: usize,
    tail_crc: u32,
    pos: u64,
    file: Option<Rc<LogFile>>,
    entries: Vec<Entry>,
    tombs: Vec<u64>,
    floor: bool,
    last_off: usize,
    /// Roll (or grow) the active segment before the next message; the
    /// value is the room the next record needs.
    roll: Option<usize>,
}

/// A group's framed bytes on their way to the file.
enum Framed {
    Chunks(Vec<Vec<u8>>),
    Frame(DirectFrame),
}

impl Plan {
    fn len(&self) -> usize {
        match &self.frame {
            Some(f) => f.framed(),
            None => self.done + self.bufs.last().map_or(0, Vec::len),
        }
    }

    /// Frames one record with `f` (which returns its CRC) into the DMA
    /// frame or the current chunk.
    fn push(&mut self, f: impl FnOnce(&mut dyn Sink) -> u32) {
        if let Some(frame) = &mut self.frame {
            self.last_off = frame.framed();
            self.tail_crc = f(frame);
            return;
        }
        if self.bufs.last().is_none_or(|b| b.len() >= self.split) {
            self.done += self.bufs.last().map_or(0, Vec::len);
            self.bufs.push(Vec::new());
        }
        self.last_off = self.len();
        let n = self.bufs.len();
        self.tail_crc = f(&mut self.bufs[n - 1]);
    }

    fn take_framed(&mut self) -> Framed {
        match self.frame.take() {
            Some(f) => Framed::Frame(f),
            None => Framed::Chunks(std::mem::take(&mut self.bufs)),
        }
    }
}

async fn run_batch(inner: &Rc<Inner>, ops: Vec<Op>) -> Vec<Result<Outcome>> {
    let n = ops.len();
    let mut results: Vec<Option<Result<Outcome>>> = (0..n).map(|_| None).collect();
    let mut barriers = Vec::new();
    let mut failure: Option<Error> = None;
    let mut i = 0;
    loop {
        let mut plan = {
            let mut st = inner.st.borrow_mut();
            plan(&mut st, &ops, &mut i, &mut results, &mut barriers)
        };
        if plan.len() > 0 {
            let tail_crc = plan.tail_crc;
            let buf_len = plan.len();
            let framed = plan.take_framed();
            if let Err(e) = write_plan(inner, &plan, framed, buf_len as u64).await {
                for e2 in &plan.entries {
                    results[e2.slot] = Some(Err(e.duplicate()));
                }
                let mut st = inner.st.borrow_mut();
                st.pending_tombs.extend_from_slice(&plan.tombs);
                st.pending_floor |= plan.floor;
                failure = Some(e);
            } else {
                apply(inner, buf_len, tail_crc, &plan, &mut results);
            }
        }
        if let Some(room) = plan.roll {
            if let Err(e) = inner.roll(room).await {
                tracing::error!(error = %e, "segment roll failed");
                for (j, r) in results.iter_mut().enumerate().skip(i) {
                    if matches!(ops[j], Op::Msg { .. }) && r.is_none() {
                        *r = Some(Err(e.duplicate()));
                    }
                }
                failure = Some(e);
                break;
            }
            continue;
        }
        if i >= n {
            break;
        }
    }
    for b in barriers {
        results[b] = Some(match &failure {
            Some(e) => Err(e.duplicate()),
            None => Ok(Outcome::Done),
        });
    }
    results
        .into_iter()
        .map(|r| r.unwrap_or(Err(Error::Closed)))
        .collect()
}

fn plan(
    st: &mut State,
    ops: &[Op],
    i: &mut usize,
    results: &mut [Option<Result<Outcome>>],
    barriers: &mut Vec<usize>,
) -> Plan {
    if st.jump_to > st.next_seq {
        st.next_seq = st.jump_to;
        if st.msgs == 0 {
            st.first_seq = st.next_seq;
        }
    }
    st.jump_to = 0;
    let active = st.active();
    let mut p = Plan {
        pos: active.len,
        file: active.file.clone(),
        entries: Vec::new(),
        tombs: Vec::new(),
        floor: false,
        last_off: 0,
        roll: None,
        bufs: Vec::new(),
        frame: None,
        done: 0,
        split: match st.cfg.write_mode {
            WriteMode::Buffered => SPLIT,
            // O_DIRECT appends rewrite the tail block: one write at a time.
            WriteMode::Direct => usize::MAX,
        },
        tail_crc: 0,
    };
    let cap = active.capacity as usize;
    let start = active.len as usize;
    let ts0 = now_ns().max(st.last_ts);

    // Control records first: they are small and must not wait behind a roll.
    let ctl_len = if st.pending_floor {
        format::HEADER_LEN
    } else {
        0
    } + st.pending_tombs.len().div_ceil(TOMBS_PER_RECORD) * format::HEADER_LEN
        + st.pending_tombs.len() * 8;
    if ctl_len > 0 && start + ctl_len > cap {
        p.roll = Some(ctl_len);
        return p;
    }
    if st.cfg.write_mode == WriteMode::Direct {
        // Room for everything staged, bounded by the segment: framing stops
        // (rolls) before a record would pass the segment's end.
        let msgs: usize = ops[*i..]
            .iter()
            .map(|o| match o {
                Op::Msg {
                    subject,
                    headers,
                    payload,
                    ..
                } => format::record_len(subject.len(), headers.len(), payload.len()),
                Op::Barrier => 0,
            })
            .sum();
        let room = (ctl_len + msgs).min(cap.saturating_sub(start));
        p.frame = p.file.as_ref().and_then(|f| f.direct_frame(room));
    }
    if st.pending_floor {
        st.pending_floor = false;
        p.floor = true;
        let floor = st.floor;
        p.push(|b| format::encode(b, Kind::Floor, 0, floor, ts0, b"", b"", b""));
    }
    if !st.pending_tombs.is_empty() {
        p.tombs = std::mem::take(&mut st.pending_tombs);
        let tombs = std::mem::take(&mut p.tombs);
        for chunk in tombs.chunks(TOMBS_PER_RECORD) {
            let payload: Vec<u8> = chunk.iter().flat_map(|s| s.to_le_bytes()).collect();
            p.push(|b| format::encode(b, Kind::Tombstone, 0, 0, ts0, b"", b"", &payload));
        }
        p.tombs = tombs;
    }

    let active = st.active();
    let jumped = active.end_seq() != st.next_seq;
    let aged = st.cfg.segment_max_age.is_some_and(|a| {
        active.live > 0 && ts0.saturating_sub(active.first_ts) > a.as_nanos() as u64
    });
    let (mut acc_msgs, mut acc_bytes) = (0u64, 0u64);
    while *i < ops.len() {
        match &ops[*i] {
            Op::Barrier => barriers.push(*i),
            Op::Msg {
                subject,
                headers,
                payload,
                expect,
            } => {
                let len = format::record_len(subject.len(), headers.len(), payload.len());
                if let Err(e) = check_expect(st, &p, subject, expect) {
                    results[*i] = Some(Err(e));
                    *i += 1;
                    continue;
                }
                if let Err(e) = st.check_new(subject, len, (acc_msgs, acc_bytes)) {
                    results[*i] = Some(Err(e));
                    *i += 1;
                    continue;
                }
                if jumped || aged || start + p.len() + len > cap {
                    // Roll before this record (a fresh empty segment grows
                    // instead, so oversized records always find a home).
                    p.roll = Some(len);
                    return p;
                }
                let seq = st.next_seq + p.entries.len() as u64;
                p.entries.push(Entry {
                    slot: *i,
                    seq,
                    ts: ts0,
                    off: start + p.len(),
                    len,
                    subject: subject.clone(),
                });
                p.push(|b| format::encode(b, Kind::Msg, 0, seq, ts0, subject, headers, payload));
                acc_msgs += 1;
                acc_bytes += len as u64;
            }
        }
        *i += 1;
    }
    p
}

/// Evaluates `expect` against the state plus the records already framed in
/// this group (they precede this one).
fn check_expect(st: &mut State, p: &Plan, subject: &[u8], expect: &Expect) -> Result<()> {
    if let Some(want) = expect.last_seq {
        let actual = st.next_seq - 1 + p.entries.len() as u64;
        if actual != want {
            return Err(Error::WrongLastSequence { actual });
        }
    }
    if let Some(want) = expect.last_subject_seq {
        let in_group = p
            .entries
            .iter()
            .rev()
            .find(|e| &e.subject[..] == subject)
            .map(|e| e.seq);
        let actual = match in_group {
            Some(s) => s,
            None => st.fix_subject(subject).map_or(0, |i| i.last),
        };
        if actual != want {
            return Err(Error::WrongLastSubjectSequence { actual });
        }
    }
    Ok(())
}

async fn write_plan(inner: &Rc<Inner>, p: &Plan, framed: Framed, len: u64) -> Result<()> {
    let Some(file) = p.file.clone() else {
        return Err(Error::Closed);
    };
    let snap = file.tail_snapshot();
    let res = async {
        let policy = inner.st.borrow().cfg.durability;
        if policy == Durability::Always {
            // One chunk: a single durable write. Several: write them all
            // concurrently, then one fdatasync (measured faster than a
            // durable write per chunk).
            match framed {
                Framed::Frame(f) => file.write_durable_at(Payload::Frame(f), p.pos).await?,
                Framed::Chunks(bufs) if bufs.len() == 1 => {
                    let buf = bufs.into_iter().next().unwrap_or_default();
                    file.write_durable_at(Payload::Bytes(buf), p.pos).await?;
                }
                Framed::Chunks(bufs) => {
                    write_chunks(&file, bufs, p.pos).await?;
                    if !file.writes_are_durable() {
                        file.sync().await?;
                    }
                }
            }
            return Ok(());
        }
        match framed {
            Framed::Frame(f) => file.write_payload_at(Payload::Frame(f), p.pos).await?,
            Framed::Chunks(bufs) => write_chunks(&file, bufs, p.pos).await?,
        }
        let sync = match policy {
            Durability::Interval(d) => inner.st.borrow().last_sync.elapsed() >= d,
            _ => false,
        };
        if sync {
            file.sync().await?;
            let mut st = inner.st.borrow_mut();
            st.last_sync = Instant::now();
            st.dirty = false;
        } else {
            inner.st.borrow_mut().dirty = true;
        }
        Ok(())
    }
    .await;
    if res.is_err() {
        // Its bytes are going away: keep them out of the read cache, and
        // let the next group rewrite the last block as it was before.
        let _ = file.take_written();
        file.restore_tail(snap);
        // Nothing of a failed group may survive: free the range (works even
        // on a full disk) so recovery cannot resurrect a refused record.
        if let Err(e) = file.punch(p.pos, len).await {
            tracing::warn!(error = %e, "could not punch failed write range");
        }
    }
    res
}

/// Issues every chunk at once and waits for all; the first error wins.
async fn write_chunks(file: &Rc<LogFile>, mut bufs: Vec<Vec<u8>>, pos: u64) -> Result<()> {
    if bufs.len() == 1 {
        let buf = bufs.pop().unwrap_or_default();
        return file.write_all_at(buf, pos).await;
    }
    let mut at = pos;
    let mut tasks = Vec::with_capacity(bufs.len());
    for b in bufs {
        let (f, off) = (file.clone(), at);
        at += b.len() as u64;
        tasks.push(glommio::spawn_local(
            async move { f.write_all_at(b, off).await },
        ));
    }
    let mut first = Ok(());
    for t in tasks {
        let r = t.await;
        if first.is_ok() {
            first = r;
        }
    }
    first
}

fn apply(
    inner: &Rc<Inner>,
    buf_len: usize,
    crc: u32,
    p: &Plan,
    results: &mut [Option<Result<Outcome>>],
) {
    let mut st = inner.st.borrow_mut();
    for e in &p.entries {
        st.apply_msg(e.seq, e.off, e.ts, e.len, &e.subject);
        results[e.slot] = Some(Ok(Outcome::Appended {
            seq: e.seq,
            ts: e.ts,
        }));
    }
    let floor = st.floor;
    let budget = st.cfg.recent_bytes;
    let a = st.active_mut();
    a.tail = (p.pos + p.last_off as u64, crc);
    a.len += buf_len as u64;
    if let Some(w) = p.file.as_ref().and_then(|f| f.take_written()) {
        // Only this group's own frame, ending where the segment now ends.
        if w.start + w.len as u64 == a.len {
            a.recent.push(w, budget);
        }
    }
    a.tombstones.extend_from_slice(&p.tombs);
    if p.floor {
        a.floor = a.floor.max(floor);
    }
    // A purge that ran while this group was in flight covers it too.
    if st.floor > st.first_seq {
        let f = st.floor;
        st.raise_floor(f);
    }
    if st.cfg.limits.max_msgs_per_subject.is_some() {
        for e in &p.entries {
            st.enforce_subject(&e.subject);
        }
    }
    st.enforce_global();
}
