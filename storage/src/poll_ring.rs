//! Keeps O_DIRECT segment I/O off glommio's IOPOLL ring on devices that
//! cannot poll.
//!
//! glommio sends the reads and writes of a `DmaFile` to an `IORING_SETUP_IOPOLL`
//! ring when a probe read through that ring succeeds, and remembers the answer
//! per thread and device. The probe dates from kernels that refused IOPOLL on
//! devices without poll queues; current kernels accept it and complete the I/O
//! by interrupt as usual, but the completions on an IOPOLL ring can only be
//! reaped by polling it. The executor then cannot sleep while a write is in
//! flight: it turns its reactor over and over, arming and cancelling glommio's
//! preemption timers each time. Measured on this project's VM (virtio disk,
//! `io_poll` 0), 16 KiB `Never` appends from 64 appenders: 18 reactor turns per
//! group commit and 0.84 CPU busy, against 2.3 turns and 0.36 CPU on the
//! interrupt-driven ring for the same MB/s.
//!
//! So before the first O_DIRECT file of a device is opened on a thread, and
//! only if the device's `queue/io_poll` says it cannot poll, a FIFO in the same
//! directory is opened through `DmaFile`: glommio probes with it, the kernel
//! answers EOPNOTSUPP (a FIFO has no `iopoll`), and glommio keeps that device
//! on its main ring for the life of the thread. Nothing here is needed for
//! correctness; any failure leaves glommio's own choice in place, and so does
//! `BROKER_EDGE_IOPOLL=1` in the environment (for comparisons).

use std::cell::RefCell;
use std::collections::HashSet;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use glommio::io::OpenOptions;

thread_local! {
    /// Devices (st_dev) this thread has settled.
    static SETTLED: RefCell<HashSet<u64>> = RefCell::new(HashSet::new());
}

/// Whether the block device behind `dev` can complete I/O by polling;
/// `None` when it has no block device entry (tmpfs, overlays), which glommio
/// never polls anyway. glommio looks at the whole disk (minor 0), as here.
fn device_polls(dev: u64) -> Option<bool> {
    let path = format!("/sys/dev/block/{}:0/queue/io_poll", libc::major(dev));
    let text = std::fs::read_to_string(path).ok()?;
    Some(text.trim() != "0")
}

/// Makes glommio use interrupt-driven completions for O_DIRECT files in
/// `dir` when the device cannot poll (see the module docs). Cheap after the
/// first call per thread and device. The log calls it before opening a
/// segment; benchmarks that open their own O_DIRECT files beside a log
/// call it to get the same completion path.
pub async fn use_interrupt_completions(dir: &Path) {
    let Ok(meta) = std::fs::metadata(dir) else {
        return;
    };
    let dev = meta.dev();
    if std::env::var_os("BROKER_EDGE_IOPOLL").is_some_and(|v| v == "1") {
        return;
    }
    if !SETTLED.with(|s| s.borrow_mut().insert(dev)) {
        return;
    }
    if device_polls(dev) != Some(false) {
        return;
    }
    let fifo = dir.join(format!(".poll-probe-{}", std::process::id()));
    let _ = std::fs::remove_file(&fifo);
    let Ok(c) = CString::new(fifo.as_os_str().as_bytes()) else {
        return;
    };
    // SAFETY: `c` is a valid NUL-terminated path that outlives the call.
    if unsafe { libc::mkfifo(c.as_ptr(), 0o600) } != 0 {
        tracing::debug!(dir = ?dir, error = %std::io::Error::last_os_error(), "poll-ring probe FIFO not created");
        return;
    }
    // Read-write so the open does not wait for the FIFO's other end.
    match OpenOptions::new()
        .read(true)
        .write(true)
        .dma_open(&fifo)
        .await
    {
        Ok(f) => {
            let _ = f.close().await;
        }
        Err(e) => tracing::debug!(dir = ?dir, error = %e, "poll-ring probe FIFO not opened"),
    }
    let _ = std::fs::remove_file(&fifo);
}
