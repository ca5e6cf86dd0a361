//! The typed shard bus: request/response between shards. A request is a
//! closure that runs on the target shard and makes a future there; its
//! output comes back through a one-shot channel. Values cross shards by
//! move (a stored message's `Bytes` is not copied). Used for account-wide
//! answers (stream lists, account info, `/jsz`) and for handing a
//! JetStream API request to the shard that owns the stream.

use std::future::Future;
use std::rc::Rc;

use super::Shard;
use crate::global::{Ctl, Global};

/// Work sent to a shard: runs there with the shard in hand.
pub type Job = Box<dyn FnOnce(Rc<Shard>) + Send>;

/// Runs `f` on shard `target` and resolves to what its future yields
/// (`None` when the shard is gone, e.g. during shutdown). The request is
/// sent at once, so several calls run concurrently before any is awaited.
pub fn call<T, F, Fut>(g: &Global, target: usize, f: F) -> impl Future<Output = Option<T>>
where
    T: Send + 'static,
    F: FnOnce(Rc<Shard>) -> Fut + Send + 'static,
    Fut: Future<Output = T> + 'static,
{
    let (tx, rx) = futures_channel::oneshot::channel();
    let job: Job = Box::new(move |shard| {
        crate::runtime::spawn_local(async move {
            let _ = tx.send(f(shard).await);
        })
        .detach();
    });
    // Control channels are unbounded: sending never waits.
    let sent = g
        .ctl
        .get(target)
        .is_some_and(|c| c.try_send(Ctl::Run(job)).is_ok());
    async move {
        if !sent {
            return None;
        }
        rx.await.ok()
    }
}

/// Runs `f` on every shard and collects the answers in shard order.
pub async fn gather<T, F, Fut>(g: &Global, f: F) -> Vec<T>
where
    T: Send + 'static,
    F: FnOnce(Rc<Shard>) -> Fut + Send + Clone + 'static,
    Fut: Future<Output = T> + 'static,
{
    // Every request is on its way before the first answer is awaited.
    let calls: Vec<_> = (0..g.shards).map(|i| call(g, i, f.clone())).collect();
    let mut out = Vec::with_capacity(calls.len());
    for c in calls {
        if let Some(v) = c.await {
            out.push(v);
        }
    }
    out
}
