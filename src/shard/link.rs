//! The link from one shard to another: an ordered outgoing queue drained in
//! batches onto the channel mesh.
//!
//! Everything a shard tells a peer (interest changes, forwarded messages)
//! is pushed here synchronously, so the peer sees it in exactly the order it
//! happened on this shard: a subscription announced before a request is
//! always known before the reply comes back. One mesh message carries a
//! whole batch, which amortises the cross-core hand-off.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;

/// A point that completes once every peer has applied one interest change.
/// Several connections may wait on the same point (their subscriptions
/// rode on one announcement), so it keeps every waiter's waker.
pub struct SyncPoint {
    remaining: AtomicUsize,
    wakers: std::sync::Mutex<Vec<Waker>>,
}

impl SyncPoint {
    pub fn new(peers: usize) -> Arc<SyncPoint> {
        Arc::new(SyncPoint {
            remaining: AtomicUsize::new(peers),
            wakers: std::sync::Mutex::new(Vec::new()),
        })
    }

    pub fn done(&self) {
        if self.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
            let wakers = match self.wakers.lock() {
                Ok(mut w) => std::mem::take(&mut *w),
                Err(_) => return,
            };
            for w in wakers {
                w.wake();
            }
        }
    }

    pub fn is_complete(&self) -> bool {
        self.remaining.load(Ordering::Acquire) == 0
    }

    pub fn wait(self: &Arc<Self>) -> impl Future<Output = ()> + '_ {
        std::future::poll_fn(move |cx| {
            if self.is_complete() {
                return Poll::Ready(());
            }
            if let Ok(mut w) = self.wakers.lock() {
                if !w.iter().any(|x| x.will_wake(cx.waker())) {
                    w.push(cx.waker().clone());
                }
            }
            // Checked again under the registration: `done` may have run
            // between the first check and the push.
            if self.is_complete() {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
    }
}

/// What crosses between shards.
pub enum Item {
    /// `origin` now has `count` local subscribers on `subject` (in `queue`).
    /// For plain subscriptions only 0/1 transitions are sent; for queue
    /// groups the count is the group's weight on that shard.
    Interest {
        origin: usize,
        subject: Bytes,
        queue: Option<Bytes>,
        count: u32,
        sync: Arc<SyncPoint>,
    },
    /// Completes `sync` once everything queued before it was applied.
    Barrier(Arc<SyncPoint>),
    /// Published messages that all live in `data` (one read from a
    /// publisher's socket): one reference count per batch, not per message.
    Msgs { data: Bytes, msgs: Vec<MsgRef> },
}

/// A byte range inside an `Item::Msgs` buffer.
#[derive(Debug, Clone, Copy)]
pub struct Span {
    start: u32,
    len: u32,
}

impl Span {
    /// The position of `part` inside `data`; `part` must be a sub-slice.
    pub fn of(data: &[u8], part: &[u8]) -> Span {
        let start = (part.as_ptr() as usize).wrapping_sub(data.as_ptr() as usize);
        debug_assert!(start + part.len() <= data.len());
        Span {
            start: start as u32,
            len: part.len() as u32,
        }
    }

    pub fn get<'a>(&self, data: &'a [u8]) -> &'a [u8] {
        let s = self.start as usize;
        data.get(s..s + self.len as usize).unwrap_or_default()
    }
}

/// One forwarded message. `plain`: deliver to all matching plain
/// subscribers; `queues`: pick one local member of each named group.
pub struct MsgRef {
    pub subject: Span,
    pub shown: Option<Span>,
    pub reply: Option<Span>,
    pub hdr_len: Option<u32>,
    pub msg: Span,
    pub plain: bool,
    pub queues: smallvec::SmallVec<[QueueName; 1]>,
    /// Shards (bit per id) that already found no member for `queues`: a
    /// queue message whose chosen member left meanwhile is passed on to
    /// another shard with members, never back to one of these.
    pub tried: u64,
    /// The account whose subscribers get it.
    pub account: u32,
    /// Nobody else got this request and its publisher wants a 503 status
    /// if nobody here does either.
    pub no_responders: bool,
}

/// A queue group's name as it crosses to another shard: copied inline when
/// short (the usual case), so no reference count is shared between cores.
#[derive(Debug, Clone)]
pub enum QueueName {
    Inline { len: u8, buf: [u8; 30] },
    Shared(Bytes),
}

impl QueueName {
    pub fn new(name: &Bytes) -> QueueName {
        if name.len() <= 30 {
            let mut buf = [0u8; 30];
            buf[..name.len()].copy_from_slice(name);
            QueueName::Inline {
                len: name.len() as u8,
                buf,
            }
        } else {
            QueueName::Shared(name.clone())
        }
    }

    pub fn as_bytes(&self) -> &[u8] {
        match self {
            QueueName::Inline { len, buf } => &buf[..*len as usize],
            QueueName::Shared(b) => b,
        }
    }
}

/// What one hand-off to a peer carries. Dropping it (once applied)
/// returns its bytes to the sender's allowance.
pub struct Batch {
    pub items: Vec<Item>,
    bytes: usize,
    credit: Arc<Credit>,
}

impl Drop for Batch {
    fn drop(&mut self) {
        self.credit.release(self.bytes);
    }
}

/// Bytes a shard handed to one peer that the peer has not applied yet:
/// the link's limit covers them too, so queued batches in the channel
/// between the two cores cannot add up to gigabytes of large messages.
#[derive(Default)]
pub struct Credit {
    bytes: AtomicUsize,
    /// Publishers on the sending shard waiting for the peer to catch up.
    wakers: std::sync::Mutex<Vec<Waker>>,
}

impl Credit {
    fn wake_all(&self) {
        let wakers = match self.wakers.lock() {
            Ok(mut w) => std::mem::take(&mut *w),
            Err(_) => return,
        };
        for w in wakers {
            w.wake();
        }
    }

    fn release(&self, n: usize) {
        let before = self.bytes.fetch_sub(n, Ordering::AcqRel);
        if before >= HIGH_WATER_BYTES && before - n < HIGH_WATER_BYTES {
            self.wake_all();
        }
    }

    fn in_flight(&self) -> usize {
        self.bytes.load(Ordering::Relaxed)
    }

    fn wait(&self, cx: &Context<'_>) {
        if let Ok(mut w) = self.wakers.lock() {
            if !w.iter().any(|x| x.will_wake(cx.waker())) {
                w.push(cx.waker().clone());
            }
        }
    }
}

impl Item {
    /// Roughly how many bytes applying this item delivers.
    pub fn weight(&self) -> usize {
        match self {
            Item::Msgs { msgs, .. } => msgs.iter().map(|m| m.msg.len as usize + 64).sum(),
            _ => 64,
        }
    }
}

/// Publishers wait once this many items are queued for one peer...
const HIGH_WATER: usize = 8192;
/// ...or this many bytes are queued or on their way (messages count by
/// their size: 8,192 one-MiB messages would be 8 GiB).
const HIGH_WATER_BYTES: usize = 8 << 20;

#[derive(Default)]
pub struct Link {
    queue: RefCell<Vec<Item>>,
    queued: Cell<usize>,
    queued_bytes: Cell<usize>,
    credit: Arc<Credit>,
    sender_waker: Cell<Option<Waker>>,
    space_wakers: RefCell<Vec<Waker>>,
    closed: Cell<bool>,
}

impl Link {
    pub fn push(&self, item: Item) {
        self.queued_bytes
            .set(self.queued_bytes.get() + item.weight());
        let mut q = self.queue.borrow_mut();
        q.push(item);
        self.queued.set(self.queued.get() + 1);
        if q.len() == 1 {
            if let Some(w) = self.sender_waker.take() {
                w.wake();
            }
        }
    }

    /// Queues a message from `data`, joining the previous batch entry when
    /// it came from the same buffer.
    pub fn push_msg(&self, data: &Bytes, m: MsgRef) {
        {
            let mut q = self.queue.borrow_mut();
            if let Some(Item::Msgs { data: d, msgs }) = q.last_mut() {
                if d.as_ptr() == data.as_ptr() && d.len() == data.len() {
                    self.queued_bytes
                        .set(self.queued_bytes.get() + m.msg.len as usize + 64);
                    msgs.push(m);
                    self.queued.set(self.queued.get() + 1);
                    return;
                }
            }
        }
        self.push(Item::Msgs {
            data: data.clone(),
            msgs: vec![m],
        });
    }

    /// Over a high-water mark (items queued, or bytes queued or not yet
    /// applied by the peer): publishers should wait.
    pub fn is_congested(&self) -> bool {
        self.queued.get() >= HIGH_WATER
            || self.queued_bytes.get() + self.credit.in_flight() >= HIGH_WATER_BYTES
    }

    /// Resolves when the link is below its high-water marks.
    pub fn space(&self) -> impl Future<Output = ()> + '_ {
        std::future::poll_fn(move |cx| {
            if !self.is_congested() || self.closed.get() {
                return Poll::Ready(());
            }
            self.space_wakers.borrow_mut().push(cx.waker().clone());
            // The peer frees bytes from its core: checked again after
            // registering, so a release in between is not missed.
            self.credit.wait(cx);
            if !self.is_congested() {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
    }

    fn take_batch(&self) -> TakeBatch<'_> {
        TakeBatch { link: self }
    }

    pub fn close(&self) {
        self.closed.set(true);
        if let Some(w) = self.sender_waker.take() {
            w.wake();
        }
        for w in self.space_wakers.borrow_mut().drain(..) {
            w.wake();
        }
    }
}

struct TakeBatch<'a> {
    link: &'a Link,
}

impl Future for TakeBatch<'_> {
    type Output = Option<Batch>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Batch>> {
        let mut q = self.link.queue.borrow_mut();
        if !q.is_empty() {
            let items = std::mem::take(&mut *q);
            drop(q);
            let link = self.link;
            let bytes = link.queued_bytes.replace(0);
            link.credit.bytes.fetch_add(bytes, Ordering::AcqRel);
            link.queued.set(0);
            for w in link.space_wakers.borrow_mut().drain(..) {
                w.wake();
            }
            return Poll::Ready(Some(Batch {
                items,
                bytes,
                credit: link.credit.clone(),
            }));
        }
        if self.link.closed.get() {
            return Poll::Ready(None);
        }
        self.link.sender_waker.set(Some(cx.waker().clone()));
        Poll::Pending
    }
}

/// Drains `link` into the channel towards its peer until the link closes.
pub async fn run_sender(link: std::rc::Rc<Link>, tx: async_channel::Sender<Batch>) {
    while let Some(batch) = link.take_batch().await {
        if tx.send(batch).await.is_err() {
            break;
        }
    }
}
