//! A glommio executor for tests and tools that run many short futures on
//! one thread.
//!
//! Dropping a glommio executor frees its reactor while work it handed out
//! may still finish: the blocking-thread pool (where a log makes its spare
//! segments) wakes the reactor through an eventfd whose pending io_uring
//! read then completes into freed memory. Tests that made an executor per
//! proptest case crashed that way under load (heap corruption, SIGSEGV in
//! `malloc`, CI of session 14). So each thread gets one executor that is
//! never dropped, and a panic is caught inside it, leaving it usable for
//! the next case, and re-raised outside.

use std::future::Future;

use futures_lite::FutureExt;
use glommio::{LocalExecutor, LocalExecutorBuilder, Placement};

thread_local! {
    static EXECUTOR: &'static LocalExecutor = Box::leak(Box::new(
        LocalExecutorBuilder::new(Placement::Unbound)
            // Small: RLIMIT_MEMLOCK is low on CI machines.
            .io_memory(512 << 10)
            .make()
            .expect("glommio executor"),
    ));
}

/// Runs `f` to completion on this thread's executor. Tasks `f` spawned
/// and did not wait for keep running in later calls.
pub fn run<T: 'static>(f: impl Future<Output = T> + 'static) -> T {
    let r = EXECUTOR.with(|ex| ex.run(std::panic::AssertUnwindSafe(f).catch_unwind()));
    match r {
        Ok(v) => v,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}
