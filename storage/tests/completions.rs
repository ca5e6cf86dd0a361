//! O_DIRECT segment I/O completes by interrupt where the device cannot poll:
//! on glommio's IOPOLL ring the shard could not sleep while a write is in
//! flight (`storage/src/poll_ring.rs`).

mod common;

use std::os::unix::fs::MetadataExt;

use broker_edge_storage::{Durability, Log, LogConfig, WriteMode};
use common::{files_with_ext, run};

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

/// Bytes of disk a file holds (allocated blocks, reserved ones included).
fn allocated(path: &std::path::Path) -> u64 {
    std::fs::metadata(path).unwrap().blocks() * 512
}

#[test]
fn segments_reserve_blocks_a_step_ahead_and_sealed_ones_keep_none_past_their_end() {
    const MIB: u64 = 1 << 20;
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let path = dir.path().join("log");
    let p = path.clone();
    run(async move {
        let cfg = LogConfig {
            segment_size: 32 * MIB,
            durability: Durability::Never,
            write_mode: WriteMode::Direct,
            ..Default::default()
        };
        let log = Log::open(&p, cfg).await.unwrap();
        log.append("a.b", b"", &[7u8; 1024]).await.unwrap();
        log.flush().await.unwrap();
        // A quiet log: one small first step reserved (64 KiB; steps
        // double as the segment fills), not the 32 MiB segment.
        let seg = files_with_ext(&p, "seg").pop().unwrap();
        let held = allocated(&seg);
        assert!(held >= 64 * 1024, "nothing reserved: {held} bytes");
        assert!(held <= 256 * 1024, "quiet segment holds {held} bytes");
        // 40 MiB from 16 appenders: the first segment fills and seals.
        let mut hs = Vec::new();
        for _ in 0..16 {
            let log = log.clone();
            hs.push(glommio::spawn_local(async move {
                for _ in 0..160 {
                    log.append("a.b", b"", &[9u8; 16 << 10]).await.unwrap();
                }
            }));
        }
        for h in hs {
            h.await;
        }
        log.flush().await.unwrap();
        let segs = files_with_ext(&p, "seg");
        assert!(segs.len() >= 2, "no roll: {segs:?}");
        let sealed = &segs[0];
        let len = std::fs::metadata(sealed).unwrap().len();
        let held = allocated(sealed);
        assert!(len > 30 * MIB, "sealed segment is {len} bytes");
        assert!(
            held <= len.next_multiple_of(4096) + 256 * 1024,
            "sealed segment of {len} bytes holds {held}"
        );
        let active = segs.last().unwrap();
        let held = allocated(active);
        assert!(held <= 24 * MIB, "active segment holds {held} bytes");
        log.close().await.unwrap();
    });
}
