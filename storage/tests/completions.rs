//! O_DIRECT segment I/O completes by interrupt where the device cannot poll:
//! on glommio's IOPOLL ring the shard could not sleep while a write is in
//! flight (`storage/src/poll_ring.rs`).

mod common;

use std::os::unix::fs::MetadataExt;

use broker_edge_storage::{Durability, Log, LogConfig, WriteMode};
use common::run;

/// `Some(true)` when the device under `dir` reports it can poll.
fn device_polls(dir: &std::path::Path) -> Option<bool> {
    let dev = std::fs::metadata(dir).ok()?.dev();
    let p = format!("/sys/dev/block/{}:0/queue/io_poll", libc::major(dev));
    Some(std::fs::read_to_string(p).ok()?.trim() != "0")
}

#[test]
fn direct_writes_stay_off_the_poll_ring_where_the_device_cannot_poll() {
    // Under target/: /tmp may be a tmpfs, which glommio never polls.
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    if device_polls(dir.path()) != Some(false) {
        eprintln!(
            "skipped: the device under {:?} polls or is not a block device",
            dir.path()
        );
        return;
    }
    let path = dir.path().join("log");
    let (poll, main) = run(async move {
        let cfg = LogConfig {
            segment_size: 1 << 20,
            durability: Durability::Never,
            write_mode: WriteMode::Direct,
            ..Default::default()
        };
        let log = Log::open(&path, cfg).await.unwrap();
        // Reset the counters: opening reads and writes index files.
        let _ = glommio::executor().io_stats();
        for i in 0..32u32 {
            log.append("a.b", b"", &i.to_le_bytes()).await.unwrap();
        }
        log.flush().await.unwrap();
        let s = glommio::executor().io_stats();
        log.close().await.unwrap();
        (s.poll_ring.file_writes().0, s.main_ring.file_writes().0)
    });
    assert_eq!(poll, 0, "segment writes went to the IOPOLL ring");
    assert!(main > 0, "no segment write seen on the main ring");
}
