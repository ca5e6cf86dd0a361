//! Group commit. Callers stage operations and await their slot; one
//! committer task per log takes everything staged, frames it into one
//! buffer, issues one io_uring write and (per policy) one `fdatasync`, then
//! publishes the records to the indexes and resolves every slot. Whatever is
//! staged while that I/O is in flight forms the next group.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::Future;
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::config::Durability;
use crate::error::{Error, Result};
use crate::format::Sink;
use crate::format::{self, Kind};
use crate::io::{DirectFrame, LogFile, Payload, WriteMode};
use crate::log::Inner;
use crate::recent::Written;
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

/// A message's own sequence and timestamp (`Log::append_at`): a mirror
/// keeps its origin's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct At {
    pub seq: u64,
    pub ts: u64,
}

/// Most sequences one skip record covers inside a segment: the segment's
/// index holds a slot per sequence (4 bytes each), so a longer gap starts
/// a new segment at the message's sequence instead (a sequence jump).
pub(crate) const MAX_SKIP: u64 = 16 * 1024;

/// Bytes of a skip record (header and the first skipped sequence).
const SKIP_LEN: usize = format::HEADER_LEN + 8;

pub(crate) enum Op {
    Msg {
        subject: Bytes,
        headers: Bytes,
        payload: Bytes,
        expect: Expect,
        at: Option<At>,
    },
    /// Resolves once every control record staged before it is durable.
    Barrier,
}

impl Op {
    /// Bytes the op frames (records only).
    fn bytes(&self) -> usize {
        match self {
            Op::Msg {
                subject,
                headers,
                payload,
                at,
                ..
            } => {
                format::record_len(subject.len(), headers.len(), payload.len())
                    + if at.is_some() { SKIP_LEN } else { 0 }
            }
            Op::Barrier => 0,
        }
    }
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

/// One staged operation: done once the group that carries it is
/// published (groups are published in staging order).
pub struct Ticket {
    batch: Rc<Batch>,
    idx: usize,
}

impl Ticket {
    /// The group carrying it has been published.
    pub fn is_done(&self) -> bool {
        self.batch.done.get()
    }

    /// Ready once done; otherwise wakes `cx` when the group is published.
    pub fn poll_done(&self, cx: &mut std::task::Context<'_>) -> Poll<()> {
        if self.batch.done.get() {
            return Poll::Ready(());
        }
        self.batch.wakers.borrow_mut().push(cx.waker().clone());
        Poll::Pending
    }

    /// Resolves once done.
    pub async fn wait(&self) {
        futures_lite::future::poll_fn(|cx| self.poll_done(cx)).await
    }

    /// How it ended (once done; `Closed` if taken before, or twice).
    pub(crate) fn outcome(&self) -> Result<Outcome> {
        if !self.batch.done.get() {
            return Err(Error::Closed);
        }
        self.batch
            .results
            .borrow_mut()
            .get_mut(self.idx)
            .and_then(Option::take)
            .unwrap_or(Err(Error::Closed))
    }

    /// The (sequence, timestamp) of an appended message, once done.
    pub fn appended(&self) -> Result<(u64, u64)> {
        match self.outcome()? {
            Outcome::Appended { seq, ts } => Ok((seq, ts)),
            Outcome::Done => Err(Error::Closed),
        }
    }
}

#[derive(Default)]
pub(crate) struct Queue {
    ops: Vec<Op>,
    batch: Rc<Batch>,
    /// Bytes of the records in `ops`.
    staged_bytes: usize,
    /// Batches closed at the cap, oldest first, taken before `ops`.
    sealed: VecDeque<(Vec<Op>, Rc<Batch>)>,
    running: bool,
    /// The committer, parked while a group is in flight and nothing is
    /// staged.
    waiter: Option<Waker>,
    /// Erases that want the file to themselves ([`Inner::exclusive`]):
    /// while any wait or run, the committer publishes what is in flight
    /// and stops, and nothing starts it.
    hold: usize,
    /// An erase is rewriting blocks.
    erasing: bool,
    /// Erases waiting for the committer to stop or for the erase before.
    held: Vec<Waker>,
    pub stats: CommitStats,
}

impl Queue {
    /// Operations wait to be framed.
    pub(crate) fn has_staged(&self) -> bool {
        !self.ops.is_empty() || !self.sealed.is_empty()
    }

    /// The committer runs (it stops once nothing is staged or in flight).
    pub(crate) fn is_running(&self) -> bool {
        self.running
    }
}

/// The file to oneself: no group in flight and no other erase
/// ([`Inner::exclusive`]). Restarts the committer when the last one goes.
pub(crate) struct Exclusive {
    inner: Rc<Inner>,
    /// Got the file (not dropped while still waiting for it).
    acquired: bool,
}

impl Drop for Exclusive {
    fn drop(&mut self) {
        let (waiting, last) = {
            let mut q = self.inner.q.borrow_mut();
            if self.acquired {
                q.erasing = false;
            }
            q.hold -= 1;
            (std::mem::take(&mut q.held), q.hold == 0)
        };
        for w in waiting {
            w.wake();
        }
        if last {
            // Appends staged meanwhile waited for this.
            self.inner.kick();
        }
    }
}

/// Counters of the group commit (`Log::commit_stats`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CommitStats {
    /// Group writes issued.
    pub groups: u64,
    /// Of those, groups framed while the previous one was in flight.
    pub pipelined: u64,
}

/// Staged records close a batch at this many bytes when groups pipeline
/// (O_DIRECT, not `always`): the next appends start the next batch, so a
/// crowd of appenders becomes several groups whose writes and acks move
/// independently instead of one group the device finishes before the crowd
/// can frame again (256 appenders of 16 KiB: +8% MB/s, BENCHMARKS.md).
/// Under `always` one sync per group makes bigger groups cheaper, so
/// batches stay whole. With groups padded to whole blocks (`pad`), 640–896
/// KiB beat 1 MiB for 64 and 256 appenders of 16 KiB (+10–20% MB/s, same
/// runs; 256 KiB and 512 KiB lost): a crowd of 64 splits into two unequal
/// groups that the device finishes apart, where at a MiB it split into 63
/// records and a straggler.
const COHORT_BYTES: usize = 768 << 10;

/// Most sequences per tombstone record (keeps records well under a MiB).
const TOMBS_PER_RECORD: usize = 65536;

impl Inner {
    /// Stages `op` and waits for the group that carries it.
    pub(crate) async fn submit(self: &Rc<Self>, op: Op) -> Result<Outcome> {
        let t = self.stage(op)?;
        t.wait().await;
        t.outcome()
    }

    /// Stages `op` for the committer; the ticket resolves with the group
    /// that carries it. Staging order is framing order.
    pub(crate) fn stage(self: &Rc<Self>, op: Op) -> Result<Ticket> {
        if self.closed.get() {
            return Err(Error::Closed);
        }
        if let Some(e) = self.st.borrow().poison_error() {
            return Err(e);
        }
        let (batch, idx) = {
            let mut q = self.q.borrow_mut();
            q.staged_bytes += op.bytes();
            q.ops.push(op);
            let b = q.batch.clone();
            let mut r = b.results.borrow_mut();
            r.push(None);
            let idx = r.len() - 1;
            drop(r);
            if q.staged_bytes >= COHORT_BYTES && self.pipelines() {
                let ops = std::mem::take(&mut q.ops);
                let batch = std::mem::take(&mut q.batch);
                q.sealed.push_back((ops, batch));
                q.staged_bytes = 0;
            }
            (b, idx)
        };
        self.kick();
        Ok(Ticket { batch, idx })
    }

    /// Groups of this log can be framed behind one in flight (O_DIRECT,
    /// not `always`; `follows` decides per group).
    fn pipelines(&self) -> bool {
        let st = self.st.borrow();
        st.cfg.durability != Durability::Always && st.cfg.write_mode == WriteMode::Direct
    }

    /// Waits until no group is in flight and no other erase runs, and keeps
    /// it so while the guard lives. An erase rewrites whole blocks (O_DIRECT)
    /// from what it reads of them, and near the tail a group in flight
    /// writes the same blocks: whichever landed second would undo the other
    /// (an acknowledged record lost, or an erased one back).
    pub(crate) async fn exclusive(self: &Rc<Self>) -> Exclusive {
        self.q.borrow_mut().hold += 1;
        // Made before waiting, so a wait that is dropped still gives back
        // its hold.
        let mut guard = Exclusive {
            inner: self.clone(),
            acquired: false,
        };
        futures_lite::future::poll_fn(|cx| {
            let mut q = self.q.borrow_mut();
            if !q.running && !q.erasing {
                q.erasing = true;
                return Poll::Ready(());
            }
            // A committer parked on a group in flight comes back to stop.
            if let Some(w) = q.waiter.take() {
                w.wake();
            }
            q.held.push(cx.waker().clone());
            Poll::Pending
        })
        .await;
        guard.acquired = true;
        guard
    }

    /// Starts the committer unless it is already running (or an erase
    /// holds the file: the guard starts it when it goes).
    pub(crate) fn kick(self: &Rc<Self>) {
        let start = {
            let mut q = self.q.borrow_mut();
            if let Some(w) = q.waiter.take() {
                w.wake();
            }
            q.hold == 0 && !std::mem::replace(&mut q.running, true)
        };
        if start {
            glommio::spawn_local(commit_loop(self.clone())).detach();
        }
    }
}

async fn commit_loop(inner: Rc<Inner>) {
    // Groups whose writes are in flight, oldest first.
    let mut ahead: VecDeque<Group> = VecDeque::new();
    loop {
        if !ahead.is_empty() && inner.st.borrow().cfg.durability == Durability::Always {
            // Under `always` the next group waits for this one's sync, and
            // the appenders it acks get one turn to stage again: a second
            // synced write in flight only queues behind the first in the
            // filesystem journal, and it would split the appenders into two
            // half-sized cohorts that never merge.
            publish_all(&inner, &mut ahead).await;
            futures_lite::future::yield_now().await;
        }
        if inner.q.borrow().hold > 0 {
            // An erase wants the file: publish what is in flight and stop.
            publish_all(&inner, &mut ahead).await;
            let waiting = {
                let mut q = inner.q.borrow_mut();
                q.running = false;
                std::mem::take(&mut q.held)
            };
            for w in waiting {
                w.wake();
            }
            return;
        }
        if inner.closed.get() {
            // `close` flushed what was staged before it. A closed log
            // writes nothing more (a new instance may own its directory by
            // now): groups already written are published, anything staged
            // since is refused, and a delete a limit staged is left to the
            // next open, which applies the limit again.
            publish_all(&inner, &mut ahead).await;
            let refused = {
                let mut q = inner.q.borrow_mut();
                q.running = false;
                q.staged_bytes = 0;
                let mut v: Vec<Rc<Batch>> = q.sealed.drain(..).map(|(_, b)| b).collect();
                if !q.ops.is_empty() {
                    q.ops.clear();
                    v.push(std::mem::take(&mut q.batch));
                }
                v
            };
            for b in refused {
                b.done.set(true);
                for w in b.wakers.take() {
                    w.wake();
                }
            }
            return;
        }
        let staged = {
            let mut q = inner.q.borrow_mut();
            // Deletes that limits made as a group was applied (a KV key's
            // older revision, the floor of a full stream) ride with the
            // next group rather than costing a write and a sync of their
            // own: each open applies the limits again, so they need not
            // be durable before anything else. Explicit deletes and
            // purges stage a barrier, which is an op.
            if let Some(sealed) = q.sealed.pop_front() {
                Some(sealed)
            } else if !q.ops.is_empty() {
                q.staged_bytes = 0;
                Some((std::mem::take(&mut q.ops), std::mem::take(&mut q.batch)))
            } else if ahead.is_empty() {
                q.running = false;
                return;
            } else {
                None
            }
        };
        match staged {
            Some((ops, batch)) => run_batch(&inner, ops, batch, &mut ahead).await,
            None => {
                // Whatever is staged while groups are in flight gets framed
                // behind them; with nothing staged, publish the oldest.
                let Some(front) = ahead.front_mut() else {
                    continue;
                };
                if !wait_or_staged(&inner, front).await {
                    // Every group left over from a batch carries its batch.
                    let _ = publish_front(&inner, &mut ahead, &mut []).await;
                }
            }
        }
    }
}

/// Publishes every group in flight. Each group left over from a batch
/// carries its batch, so failures reach their appenders.
async fn publish_all(inner: &Rc<Inner>, ahead: &mut VecDeque<Group>) {
    while !ahead.is_empty() {
        let _ = publish_front(inner, ahead, &mut []).await;
    }
}

/// Waits until `g`'s write is done (false) or something is staged (true).
async fn wait_or_staged(inner: &Rc<Inner>, g: &mut Group) -> bool {
    // Nothing is ahead of it any more.
    g.issue_rest();
    futures_lite::future::poll_fn(|cx| {
        if g.poll_io(cx) {
            return Poll::Ready(false);
        }
        let mut q = inner.q.borrow_mut();
        let st = inner.st.borrow();
        if !q.ops.is_empty() || !q.sealed.is_empty() || st.control_pending() || q.hold > 0 {
            return Poll::Ready(true);
        }
        q.waiter = Some(cx.waker().clone());
        Poll::Pending
    })
    .await
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
    /// Its control records include an explicit one (`State::guard_control`).
    guard: bool,
    /// The floor a floor record in this group carries.
    floor_seq: u64,
    /// The key of the segment the group is written to.
    key: format::Key,
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

/// What a write task returns: the DMA frame as written, for the
/// recent-writes cache.
type WriteResult = Result<Option<Written>>;

/// A framed group: its write, once issued, and what it publishes after.
///
/// O_DIRECT groups pipeline: while one group's write is in flight, the
/// next one is framed behind it (sequences, offsets and expectations
/// planned on top of the first) and written at once, except for the block
/// the first one ends in: both groups write that block, so the second
/// writes it in a separate write issued once the first is done. Groups are
/// published strictly in order; if one fails, the group behind it is
/// dropped and its bytes punched away.
struct Group {
    inner: Rc<Inner>,
    plan: Plan,
    /// Bytes of records in the write.
    len: usize,
    /// The file's in-memory tail before this group (O_DIRECT).
    snap: Option<(u64, Vec<u8>)>,
    /// Framed into DMA memory (can have a group framed behind it).
    direct: bool,
    /// Framed behind a group in flight.
    behind: bool,
    /// Framed, nothing issued yet.
    idle: Option<Framed>,
    /// The first block of a split frame, waiting for the group ahead.
    head: Option<DirectFrame>,
    /// Written in two parts, so the policy's sync step runs after both.
    split: bool,
    tasks: Vec<glommio::Task<WriteResult>>,
    written: Vec<Written>,
    error: Option<Error>,
    /// The batch this group is the last of: resolved when it is published.
    owner: Option<Ctx>,
    /// Later batches that framed nothing, resolved right after `owner`.
    riders: Vec<Ctx>,
}

impl Group {
    fn new(inner: &Rc<Inner>, mut plan: Plan, behind: bool) -> Group {
        let len = plan.len();
        let framed = plan.take_framed();
        let (mut snap, mut direct) = (None, false);
        if let (Some(file), Framed::Frame(f)) = (&plan.file, &framed) {
            snap = file.tail_snapshot();
            file.advance_tail(f);
            direct = true;
        }
        Group {
            inner: inner.clone(),
            plan,
            len,
            snap,
            direct,
            behind,
            idle: Some(framed),
            head: None,
            split: false,
            tasks: Vec::new(),
            written: Vec::new(),
            error: None,
            owner: None,
            riders: Vec::new(),
        }
    }

    fn spawn(&mut self, framed: Framed, pos: u64, settle: bool) {
        let (inner, file) = (self.inner.clone(), self.plan.file.clone());
        self.tasks.push(glommio::spawn_local(async move {
            write_group(&inner, file, framed, pos, settle).await
        }));
    }

    /// Issues what may be written now: everything, or for a split frame
    /// all but its first block.
    fn start(&mut self) {
        let Some(framed) = self.idle.take() else {
            return;
        };
        {
            let stats = &mut self.inner.q.borrow_mut().stats;
            stats.groups += 1;
            stats.pipelined += u64::from(self.behind);
        }
        match framed {
            Framed::Frame(f) if f.is_split() => {
                let (head, rest) = f.split();
                self.split = true;
                self.head = Some(head);
                if let Some(r) = rest {
                    let pos = r.pos();
                    self.spawn(Framed::Frame(r), pos, false);
                }
            }
            framed => {
                let pos = self.plan.pos;
                self.spawn(framed, pos, true);
            }
        }
    }

    /// Issues everything left; call once the group ahead is written.
    fn issue_rest(&mut self) {
        self.start();
        if let Some(h) = self.head.take() {
            let pos = h.pos();
            self.spawn(Framed::Frame(h), pos, false);
        }
    }

    /// Polls the writes issued; true once all are done.
    fn poll_io(&mut self, cx: &mut std::task::Context<'_>) -> bool {
        while let Some(t) = self.tasks.first_mut() {
            match std::pin::Pin::new(t).poll(cx) {
                Poll::Ready(r) => {
                    drop(self.tasks.remove(0));
                    match r {
                        Ok(w) => self.written.extend(w),
                        Err(e) => {
                            self.error.get_or_insert(e);
                        }
                    }
                }
                Poll::Pending => return false,
            }
        }
        true
    }

    async fn settle_io(&mut self) {
        futures_lite::future::poll_fn(|cx| {
            if self.poll_io(cx) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await;
    }

    /// Issues whatever is left (the group ahead is published) and waits
    /// for the writes and the policy's sync step.
    async fn wait(&mut self) -> Result<Vec<Written>> {
        self.issue_rest();
        self.settle_io().await;
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        if self.split && self.inner.st.borrow().cfg.durability != Durability::Always {
            if let Some(file) = &self.plan.file {
                after_write(&self.inner, file).await?;
            }
        }
        Ok(std::mem::take(&mut self.written))
    }

    /// Drops a group framed behind one that failed: nothing more is
    /// issued, what was written is punched away, its appends fail.
    async fn abandon(mut self, e: &Error, local: &mut [Option<Result<Outcome>>]) {
        self.idle = None;
        self.head = None;
        let wrote = !self.tasks.is_empty();
        self.settle_io().await;
        if let (true, Some(file)) = (wrote, &self.plan.file) {
            if let Err(pe) = file.punch(self.plan.pos, self.len as u64).await {
                tracing::warn!(error = %pe, "could not punch dropped write range");
            }
        }
        {
            // Groups behind carry no control records (`follows`); kept
            // for the next group all the same should that ever change.
            let mut st = self.inner.st.borrow_mut();
            st.pending_tombs.extend_from_slice(&self.plan.tombs);
            st.pending_floor |= self.plan.floor;
            st.guard_control |= self.plan.guard;
        }
        let mut owner = self.owner.take();
        let results = match &mut owner {
            Some(o) => &mut o.results[..],
            None => local,
        };
        for en in &self.plan.entries {
            set(results, en.slot, Err(e.duplicate()));
        }
        for mut o in owner.into_iter().chain(self.riders.drain(..)) {
            o.failure.get_or_insert(e.duplicate());
            o.resolve();
        }
    }
}

/// One batch's results, resolved together.
struct Ctx {
    batch: Rc<Batch>,
    results: Vec<Option<Result<Outcome>>>,
    barriers: Vec<usize>,
    failure: Option<Error>,
}

impl Ctx {
    fn resolve(mut self) {
        for &b in &self.barriers {
            self.results[b] = Some(match &self.failure {
                Some(e) => Err(e.duplicate()),
                None => Ok(Outcome::Done),
            });
        }
        let results = self
            .results
            .into_iter()
            .map(|r| Some(r.unwrap_or(Err(Error::Closed))))
            .collect();
        *self.batch.results.borrow_mut() = results;
        self.batch.done.set(true);
        for w in self.batch.wakers.take() {
            w.wake();
        }
    }
}

fn set(results: &mut [Option<Result<Outcome>>], slot: usize, r: Result<Outcome>) {
    if let Some(x) = results.get_mut(slot) {
        *x = Some(r);
    }
}

/// Can the next group be framed behind `g` while `g` is in flight?
/// Only plain appends to the same O_DIRECT segment: control records,
/// sequence jumps and rolls wait until everything before is published.
fn follows(inner: &Inner, g: &Group) -> bool {
    // `always` does not pipeline (see `commit_loop`).
    if !inner.pipelines() {
        return false;
    }
    if !g.direct || g.plan.roll.is_some() || g.error.is_some() {
        return false;
    }
    let st = inner.st.borrow();
    let same_file = match (&g.plan.file, &st.active().file) {
        (Some(a), Some(b)) => Rc::ptr_eq(a, b),
        _ => false,
    };
    same_file && st.jump_to == 0 && !st.pending_floor && st.pending_tombs.is_empty()
}

/// Most groups in flight at once: two keep the device busy while the
/// next group is framed and let the second write go out while the first
/// one completes.
const DEPTH: usize = 2;

async fn run_batch(inner: &Rc<Inner>, ops: Vec<Op>, batch: Rc<Batch>, ahead: &mut VecDeque<Group>) {
    let n = ops.len();
    let mut ctx = Ctx {
        batch,
        results: (0..n).map(|_| None).collect(),
        barriers: Vec::new(),
        failure: None,
    };
    let mut i = 0;
    loop {
        let poisoned = inner.st.borrow().poison_error();
        if let Some(e) = poisoned {
            // An fsync failed: nothing staged may be acknowledged.
            for (j, r) in ctx.results.iter_mut().enumerate().skip(i) {
                if matches!(ops[j], Op::Msg { .. }) && r.is_none() {
                    *r = Some(Err(e.duplicate()));
                }
            }
            drain(inner, ahead, &mut ctx).await;
            ctx.failure.get_or_insert(e);
            break;
        }
        if ahead.back().is_some_and(|g| follows(inner, g)) {
            // Framing takes a while: let the reactor submit the writes in
            // flight first (glommio submits between task passes).
            glommio::timer::sleep(Duration::from_nanos(1)).await;
        }
        // Checked after the yield: a delete or purge meanwhile stages
        // control records, which never go behind a group in flight.
        if ahead.back().is_some_and(|g| !follows(inner, g)) {
            drain(inner, ahead, &mut ctx).await;
        }
        // A group is planned on top of one group in flight at most
        // (sequences, expectations and limits count that one only).
        while ahead.len() > 1 {
            if let Err(e) = publish_front(inner, ahead, &mut ctx.results).await {
                ctx.failure.get_or_insert(e);
            }
        }
        let plan = {
            let mut st = inner.st.borrow_mut();
            let behind = ahead.back().map(|g| (&g.plan, g.len));
            plan(
                &mut st,
                &ops,
                &mut i,
                &mut ctx.results,
                &mut ctx.barriers,
                behind,
            )
        };
        let roll = plan.roll;
        inner.prepare_spare();
        if plan.len() > 0 {
            let mut c = Group::new(inner, plan, !ahead.is_empty());
            // All that does not touch the group ahead goes to the device now.
            c.start();
            ahead.push_back(c);
        }
        while ahead.len() > DEPTH {
            if let Err(e) = publish_front(inner, ahead, &mut ctx.results).await {
                ctx.failure.get_or_insert(e);
            }
        }
        if let Some(room) = roll {
            drain(inner, ahead, &mut ctx).await;
            if let Err(e) = inner.roll(room).await {
                tracing::error!(error = %e, "segment roll failed");
                for (j, r) in ctx.results.iter_mut().enumerate().skip(i) {
                    if matches!(ops[j], Op::Msg { .. }) && r.is_none() {
                        *r = Some(Err(e.duplicate()));
                    }
                }
                ctx.failure.get_or_insert(e);
                break;
            }
            continue;
        }
        if i >= n {
            // The batch resolves with the last group in flight (its own, or
            // one before it that its barriers must not overtake).
            match ahead.back_mut() {
                Some(g) if g.owner.is_none() => g.owner = Some(ctx),
                Some(g) => g.riders.push(ctx),
                None => ctx.resolve(),
            }
            return;
        }
    }
    ctx.resolve();
}

/// Publishes every group in flight.
async fn drain(inner: &Rc<Inner>, ahead: &mut VecDeque<Group>, ctx: &mut Ctx) {
    while !ahead.is_empty() {
        if let Err(e) = publish_front(inner, ahead, &mut ctx.results).await {
            ctx.failure.get_or_insert(e);
        }
    }
}

/// Waits for the oldest group in flight and publishes it; the next one
/// gets its first block issued as soon as this one's write is done. If it
/// failed, every group behind it (planned on top of it) is dropped.
async fn publish_front(
    inner: &Rc<Inner>,
    ahead: &mut VecDeque<Group>,
    local: &mut [Option<Result<Outcome>>],
) -> Result<()> {
    let Some(mut g) = ahead.pop_front() else {
        return Ok(());
    };
    let res = g.wait().await;
    if res.is_ok() {
        // The device first, then the bookkeeping.
        if let Some(next) = ahead.front_mut() {
            next.issue_rest();
        }
    }
    let out = finish(inner, g, res, local).await;
    if let Err(e) = &out {
        // The groups behind were planned on top of it (it put the file's
        // tail back).
        while let Some(c) = ahead.pop_front() {
            c.abandon(e, local).await;
        }
    }
    out
}

/// Publishes a group whose write finished (or failed): the records go to
/// the indexes and their slots resolve; a failed group's bytes are punched
/// away and its control records staged again. Resolves the group's batch
/// if it is its last. `local` holds the slots of a group without a batch.
async fn finish(
    inner: &Rc<Inner>,
    mut g: Group,
    res: Result<Vec<Written>>,
    local: &mut [Option<Result<Outcome>>],
) -> Result<()> {
    let mut owner = g.owner.take();
    let results = match &mut owner {
        Some(o) => &mut o.results[..],
        None => local,
    };
    let out = match res {
        Ok(w) => {
            apply(inner, g.len, &g.plan, w, results);
            let want = {
                let mut st = inner.st.borrow_mut();
                if st.cfg.durability == Durability::Always {
                    st.hwm_want.take()
                } else {
                    None
                }
            };
            // Under `always` the group is durable now: so are its deletes.
            // The mark that records it is written beside the appends: the
            // group's appenders are answered without waiting for a second
            // sync (a history-1 KV put deletes the old value in every
            // group). A failed mark write poisons the log like any sync.
            if let Some(h) = want {
                let me = inner.clone();
                inner.marks.spawn(async move {
                    if let Err(e) = me.write_hwm(h).await {
                        tracing::error!(error = %e, "writing the high-water mark failed");
                    }
                });
            }
            Ok(())
        }
        Err(e) => {
            for en in &g.plan.entries {
                set(results, en.slot, Err(e.duplicate()));
            }
            if g.plan.file.as_ref().is_some_and(|f| f.sync_failed()) {
                inner.st.borrow_mut().poison(&e);
            }
            {
                let mut st = inner.st.borrow_mut();
                st.pending_tombs.extend_from_slice(&g.plan.tombs);
                st.pending_floor |= g.plan.floor;
                st.guard_control |= g.plan.guard;
            }
            if let Some(file) = &g.plan.file {
                // The next group must rewrite the last block as it was
                // before; nothing of this one may survive (punching works
                // even on a full disk), so recovery cannot resurrect a
                // refused record.
                file.restore_tail(g.snap.take());
                if let Err(pe) = file.punch(g.plan.pos, g.len as u64).await {
                    tracing::warn!(error = %pe, "could not punch failed write range");
                }
            }
            Err(e)
        }
    };
    for mut o in owner.into_iter().chain(g.riders.drain(..)) {
        if let Err(e) = &out {
            o.failure.get_or_insert(e.duplicate());
        }
        o.resolve();
    }
    out
}

fn plan(
    st: &mut State,
    ops: &[Op],
    i: &mut usize,
    results: &mut [Option<Result<Outcome>>],
    barriers: &mut Vec<usize>,
    behind: Option<(&Plan, usize)>,
) -> Plan {
    // Framing behind a group in flight (`follows` holds): sequences,
    // offsets and limits continue from that group rather than the state.
    let ahead: &[Entry] = behind.map_or(&[], |(b, _)| &b.entries);
    if st.jump_to > st.next_seq {
        st.next_seq = st.jump_to;
        if st.msgs == 0 {
            st.first_seq = st.next_seq;
        }
    }
    st.jump_to = 0;
    let active = st.active();
    let mut p = Plan {
        pos: behind.map_or(active.len, |(b, len)| b.pos + len as u64),
        file: active.file.clone(),
        entries: Vec::new(),
        tombs: Vec::new(),
        floor: false,
        guard: false,
        floor_seq: 0,
        key: active.key,
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
    let start = p.pos as usize;
    // Timestamps never go backwards: `ts_floor` is the newest given so
    // far (messages appended `at` a sequence bring their own, older).
    let mut ts_floor = st.last_ts.max(ahead.last().map_or(0, |e| e.ts));
    let ts0 = now_ns().max(ts_floor);
    // The next sequence: after the group in flight (whose records may
    // skip sequences), else the log's.
    let mut next = ahead.last().map_or(st.next_seq, |e| e.seq + 1);

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
        let msgs: usize = ops[*i..].iter().map(Op::bytes).sum();
        let pad_room = if may_pad(st, ctl_len + msgs) {
            PAD_ROOM
        } else {
            0
        };
        let room = (ctl_len + msgs + pad_room).min(cap.saturating_sub(start));
        p.frame = p
            .file
            .as_ref()
            .and_then(|f| f.direct_frame(room, behind.is_some()));
    }
    if st.pending_floor || !st.pending_tombs.is_empty() {
        p.guard = std::mem::take(&mut st.guard_control);
    }
    if st.pending_floor {
        st.pending_floor = false;
        p.floor = true;
        let floor = st.floor;
        p.floor_seq = floor;
        let key = p.key;
        p.push(|b| format::encode(b, &key, Kind::Floor, 0, floor, ts0, b"", b"", b""));
    }
    if !st.pending_tombs.is_empty() {
        p.tombs = std::mem::take(&mut st.pending_tombs);
        let tombs = std::mem::take(&mut p.tombs);
        for chunk in tombs.chunks(TOMBS_PER_RECORD) {
            let payload: Vec<u8> = chunk.iter().flat_map(|s| s.to_le_bytes()).collect();
            let key = p.key;
            p.push(|b| format::encode(b, &key, Kind::Tombstone, 0, 0, ts0, b"", b"", &payload));
        }
        p.tombs = tombs;
    }

    let active = st.active();
    let jumped = active.end_seq() != st.next_seq;
    let aged = st.cfg.segment_max_age.is_some_and(|a| {
        active.live > 0 && ts0.saturating_sub(active.first_ts) > a.as_nanos() as u64
    });
    let (mut acc_msgs, mut acc_bytes) = (
        ahead.len() as u64,
        ahead.iter().map(|e| e.len as u64).sum::<u64>(),
    );
    while *i < ops.len() {
        match &ops[*i] {
            Op::Barrier => barriers.push(*i),
            Op::Msg {
                subject,
                headers,
                payload,
                expect,
                at,
            } => {
                let mut len = format::record_len(subject.len(), headers.len(), payload.len());
                if let Err(e) = check_expect(st, next, ahead, &p, subject, expect) {
                    results[*i] = Some(Err(e));
                    *i += 1;
                    continue;
                }
                // Sequences an append `at` a later sequence skips.
                let mut skip = None;
                if let Some(at) = at {
                    if at.seq < next {
                        results[*i] = Some(Err(Error::SequenceUsed { seq: at.seq, next }));
                        *i += 1;
                        continue;
                    }
                    if at.seq - next > MAX_SKIP {
                        // A long gap: the log continues at `at.seq` in a
                        // new segment (gen-0 segments hold consecutive
                        // sequences; see `storage/FORMAT.md`). The next
                        // plan, with everything ahead published, rolls.
                        st.jump_to = st.jump_to.max(at.seq);
                        return p;
                    }
                    if at.seq > next {
                        skip = Some((next, at.seq - 1));
                        len += SKIP_LEN;
                    }
                }
                let same = |es: &[Entry]| es.iter().filter(|e| e.subject == *subject).count();
                let pending_same = if st.cfg.limits.discard_new_per_subject {
                    (same(ahead) + same(&p.entries)) as u64
                } else {
                    0
                };
                if let Err(e) = st.check_new(subject, len, (acc_msgs, acc_bytes, pending_same)) {
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
                let ts = match at {
                    Some(a) => a.ts.max(ts_floor),
                    None => ts0.max(ts_floor),
                };
                let key = p.key;
                if let Some((first, last)) = skip {
                    // Framed right before its message, in the same write.
                    len -= SKIP_LEN;
                    let first = first.to_le_bytes();
                    p.push(|b| format::encode(b, &key, Kind::Skip, 0, last, ts, b"", b"", &first));
                }
                let seq = at.map_or(next, |a| a.seq);
                p.entries.push(Entry {
                    slot: *i,
                    seq,
                    ts,
                    off: start + p.len(),
                    len,
                    subject: subject.clone(),
                });
                p.push(|b| {
                    format::encode(b, &key, Kind::Msg, 0, seq, ts, subject, headers, payload)
                });
                next = seq + 1;
                ts_floor = ts;
                acc_msgs += 1;
                acc_bytes += len as u64;
            }
        }
        *i += 1;
    }
    if may_pad(st, p.len()) {
        pad(&mut p, start, cap, ts0);
    }
    p
}

/// Whether a group of `len` framed bytes gets a pad record (`pad`).
fn may_pad(st: &State, len: usize) -> bool {
    st.cfg.durability != Durability::Always && len >= PAD_FROM
}

/// O_DIRECT block size, as `usize`.
const BLOCK: usize = crate::io::BLOCK as usize;
/// Framed groups of at least this many bytes end on a block boundary.
const PAD_FROM: usize = 64 << 10;
/// Most bytes a pad record takes (a block, plus a header that did not fit
/// in what was left of the one before).
const PAD_ROOM: usize = BLOCK + format::HEADER_LEN;

/// Ends a large O_DIRECT group on a block boundary with a pad record, so
/// the group framed behind it while it is in flight starts on a block of
/// its own: otherwise both would write the block this one ends in, and the
/// second could only issue that block once the first is done, a device
/// round trip between every two groups (`Group::issue_rest`). Costs at
/// most 4 KiB per group of at least 64 KiB; small groups (one appender, a
/// few records) keep sharing blocks. Not under `always`, which never frames
/// behind a group in flight.
fn pad(p: &mut Plan, start: usize, cap: usize, ts: u64) {
    if p.frame.is_none() {
        return;
    }
    let end = start + p.len();
    let rem = (BLOCK - end % BLOCK) % BLOCK;
    if rem == 0 {
        return;
    }
    let n = if rem >= format::HEADER_LEN {
        rem
    } else {
        rem + BLOCK
    };
    if end + n > cap {
        return;
    }
    static ZEROS: [u8; BLOCK] = [0; BLOCK];
    let body = &ZEROS[..n - format::HEADER_LEN];
    let key = p.key;
    p.push(|b| format::encode(b, &key, Kind::Pad, 0, 0, ts, b"", b"", body));
}

/// Evaluates `expect` against the state plus the records framed before
/// this one (`ahead`: the group in flight; `p`: this group so far).
fn check_expect(
    st: &mut State,
    next: u64,
    ahead: &[Entry],
    p: &Plan,
    subject: &[u8],
    expect: &Expect,
) -> Result<()> {
    if let Some(want) = expect.last_seq {
        let actual = next - 1;
        if actual != want {
            return Err(Error::WrongLastSequence { actual });
        }
    }
    if let Some(want) = expect.last_subject_seq {
        let in_group = p
            .entries
            .iter()
            .rev()
            .chain(ahead.iter().rev())
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

/// Writes one group (or one part of a split one) and, with `settle`, takes
/// the policy's step after it.
async fn write_group(
    inner: &Rc<Inner>,
    file: Option<Rc<LogFile>>,
    framed: Framed,
    pos: u64,
    settle: bool,
) -> WriteResult {
    let Some(file) = file else {
        return Err(Error::Closed);
    };
    let policy = inner.st.borrow().cfg.durability;
    if policy == Durability::Always {
        // One chunk: a single durable write. Several: write them all
        // concurrently, then one fdatasync (measured faster than a
        // durable write per chunk).
        return match framed {
            Framed::Frame(f) => file.write_durable_at(Payload::Frame(f), pos).await,
            Framed::Chunks(bufs) if bufs.len() == 1 => {
                let buf = bufs.into_iter().next().unwrap_or_default();
                file.write_durable_at(Payload::Bytes(buf), pos).await
            }
            Framed::Chunks(bufs) => {
                write_chunks(&file, bufs, pos).await?;
                if !file.writes_are_durable() {
                    file.sync().await?;
                }
                Ok(None)
            }
        };
    }
    let w = match framed {
        Framed::Frame(f) => file.write_payload_at(Payload::Frame(f), pos).await?,
        Framed::Chunks(bufs) => {
            write_chunks(&file, bufs, pos).await?;
            None
        }
    };
    if settle {
        after_write(inner, &file).await?;
    }
    Ok(w)
}

/// After a group's bytes are written under `interval` or `never`: sync if
/// the interval is up, else note that the file has unsynced bytes.
async fn after_write(inner: &Rc<Inner>, file: &LogFile) -> Result<()> {
    let sync = match inner.st.borrow().cfg.durability {
        Durability::Interval(d) => inner.st.borrow().last_sync.elapsed() >= d,
        _ => false,
    };
    if sync {
        let want = inner.st.borrow_mut().hwm_want.take();
        inner.synced(file.sync().await)?;
        {
            let mut st = inner.st.borrow_mut();
            st.last_sync = Instant::now();
            st.dirty = false;
        }
        if let Some(h) = want {
            inner.write_hwm(h).await?;
        }
    } else {
        inner.st.borrow_mut().dirty = true;
    }
    Ok(())
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
    p: &Plan,
    written: Vec<Written>,
    results: &mut [Option<Result<Outcome>>],
) {
    let mut st = inner.st.borrow_mut();
    for e in &p.entries {
        st.apply_msg(e.seq, e.off, e.ts, e.len, &e.subject);
        let out = Outcome::Appended {
            seq: e.seq,
            ts: e.ts,
        };
        set(results, e.slot, Ok(out));
    }
    crate::stats::note_group(
        p.entries.len() + p.tombs.len().div_ceil(TOMBS_PER_RECORD) + usize::from(p.floor),
    );
    let budget = st.cfg.recent_bytes;
    let a = st.active_mut();
    a.tail = (p.pos + p.last_off as u64, p.tail_crc);
    a.len += buf_len as u64;
    // Only this group's own frame (one or two parts, in file order),
    // ending where the segment now ends.
    let mut written = written;
    written.sort_by_key(|w| w.start);
    if let [first, rest] = &mut written[..] {
        // A split group: the record that straddles its two parts is kept
        // whole in the first, so no read of it falls through to the map
        // (a fault there reads ahead into blocks about to be written).
        let cut = rest.start as usize;
        let straddles = |e: &&Entry| e.off < cut && e.off + e.len > cut;
        if let Some(e) = p.entries.iter().find(straddles) {
            *first = first.bridged(rest, (e.off + e.len) as u64);
        }
    }
    if written
        .last()
        .is_some_and(|w| w.start + w.len as u64 == a.len)
    {
        for w in written {
            a.recent.push(w, budget);
        }
    }
    a.tombstones.extend_from_slice(&p.tombs);
    if p.floor {
        a.floor = a.floor.max(p.floor_seq);
    }
    if p.guard && (p.floor || !p.tombs.is_empty()) {
        // Deletes were written: once durable, the high-water mark moves
        // to here (`meta.rs`).
        let h = crate::meta::Hwm {
            base: a.base,
            len: a.len,
            floor: p.floor_seq,
        };
        st.hwm_want = Some(st.hwm_want.map_or(h, |w| w.max(h)));
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
