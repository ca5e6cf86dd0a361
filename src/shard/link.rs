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

pub type Batch = Vec<Item>;

impl Item {
    /// Roughly how many bytes applying this item delivers.
    pub fn weight(&self) -> usize {
        match self {
            Item::Msgs { msgs, .. } => msgs.iter().map(|m| m.msg.len as usize + 64).sum(),
            _ => 64,
        }
    }
}

/// Publishers wait once this many items are queued for one peer.
const HIGH_WATER: usize = 8192;

#[derive(Default)]
pub struct Link {
    queue: RefCell<Vec<Item>>,
    queued: Cell<usize>,
    sender_waker: Cell<Option<Waker>>,
    space_wakers: RefCell<Vec<Waker>>,
    closed: Cell<bool>,
}

impl Link {
    pub fn push(&self, item: Item) {
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

    pub fn is_congested(&self) -> bool {
        self.queued.get() >= HIGH_WATER
    }

    /// Resolves when the queue is below the high-water mark.
    pub fn space(&self) -> impl Future<Output = ()> + '_ {
        std::future::poll_fn(move |cx| {
            if !self.is_congested() || self.closed.get() {
                Poll::Ready(())
            } else {
                self.space_wakers.borrow_mut().push(cx.waker().clone());
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
            let batch = std::mem::take(&mut *q);
            drop(q);
            self.link.queued.set(0);
            for w in self.link.space_wakers.borrow_mut().drain(..) {
                w.wake();
            }
            return Poll::Ready(Some(batch));
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
