//! Tasks a log runs beside its appends (sealing a rolled segment, making
//! the next one) that [`crate::Log::close`] waits for.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Waker};

/// Whether a task has finished (its handle can go). Polling is the only
/// way to ask: dropping a glommio task handle cancels the task.
pub(crate) fn is_done<T>(t: &mut glommio::Task<T>) -> bool {
    let mut cx = Context::from_waker(Waker::noop());
    Pin::new(t).poll(&mut cx).is_ready()
}

#[derive(Default)]
pub(crate) struct Background(RefCell<Vec<glommio::Task<()>>>);

impl Background {
    /// Runs `f` beside the appends; finished tasks are let go here too.
    pub fn spawn(&self, f: impl Future<Output = ()> + 'static) {
        let mut v = self.0.borrow_mut();
        v.retain_mut(|t| !is_done(t));
        v.push(glommio::spawn_local(f));
    }

    /// Waits until every task spawned so far has finished.
    pub async fn wait_all(&self) {
        loop {
            let t = self.0.borrow_mut().pop();
            match t {
                Some(t) => t.await,
                None => return,
            }
        }
    }
}
