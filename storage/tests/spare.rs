//! Rolls take a segment file made ahead of time, and seal the old one in
//! the background (`storage/src/spare.rs`, `roll.rs`).

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use broker_edge_storage::{Durability, Log, LogConfig, WriteMode};
use common::{files_with_ext, run};

/// The spare segment file in `dir`, if any (`spare-<pid>-<n>.seg.tmp`).
fn spare(dir: &Path) -> Option<PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            let n = p.file_name().unwrap().to_str().unwrap();
            n.starts_with("spare-") && n.ends_with(".seg.tmp")
        })
}

fn cfg(durability: Durability, mode: WriteMode) -> LogConfig {
    LogConfig {
        segment_size: 1 << 20,
        durability,
        write_mode: mode,
        ..Default::default()
    }
}

/// Waits (up to 2 s) until the spare exists; its inode.
async fn spare_inode(dir: &Path) -> u64 {
    for _ in 0..2000 {
        if let Some(p) = spare(dir) {
            // Made in the background: let it finish (it is synced last).
            glommio::timer::sleep(Duration::from_millis(20)).await;
            return std::fs::metadata(p).unwrap().ino();
        }
        glommio::timer::sleep(Duration::from_millis(1)).await;
    }
    panic!("no spare segment appeared");
}

fn rolls_onto_the_spare(durability: Durability, mode: WriteMode) {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let p = dir.path().join("log");
    let q = p.clone();
    let n = run(async move {
        let log = Log::open(&q, cfg(durability, mode)).await.unwrap();
        let rec = vec![3u8; 4000];
        let mut n = 0u64;
        // Past half of the first 1 MiB segment: the spare gets made.
        while n < 160 {
            log.append("s.a", b"", &rec).await.unwrap();
            n += 1;
        }
        let ino = spare_inode(&q).await;
        // Fill the segment: the roll renames the spare into place.
        while log.segment_count() < 2 {
            log.append("s.a", b"", &rec).await.unwrap();
            n += 1;
        }
        let segs = files_with_ext(&q, "seg");
        assert_eq!(segs.len(), 2, "{segs:?}");
        assert_eq!(
            std::fs::metadata(&segs[1]).unwrap().ino(),
            ino,
            "the new segment is not the spare"
        );
        // Closing waits for the seal and removes a spare made meanwhile.
        log.close().await.unwrap();
        assert_eq!(spare(&q), None, "spare left after close");
        let sealed = std::fs::metadata(&segs[0]).unwrap().len();
        assert!(
            sealed < 1 << 20 && sealed > 900 << 10,
            "sealed segment not cut: {sealed} bytes"
        );
        assert_eq!(
            files_with_ext(&q, "idx").len(),
            1,
            "the sealed segment has no index file"
        );
        n
    });
    // Reopen: the index is used and every record is there.
    run(async move {
        let log = Log::open(&p, cfg(durability, mode)).await.unwrap();
        let r = log.recovery_report();
        assert_eq!(r.indexes_loaded, 1, "{r:?}");
        assert!(r.removed_files.is_empty(), "{r:?}");
        let st = log.state(false);
        assert_eq!((st.first_seq, st.last_seq, st.msgs), (1, n, n));
        for s in 1..=n {
            assert_eq!(log.get(s).unwrap().payload.len(), 4000);
        }
        log.close().await.unwrap();
    });
}

#[test]
fn a_direct_never_log_rolls_onto_the_spare() {
    rolls_onto_the_spare(Durability::Never, WriteMode::Direct);
}

#[test]
fn a_direct_always_log_rolls_onto_the_spare() {
    rolls_onto_the_spare(Durability::Always, WriteMode::Direct);
}

#[test]
fn a_buffered_interval_log_rolls_onto_the_spare() {
    rolls_onto_the_spare(
        Durability::Interval(Duration::from_millis(5)),
        WriteMode::Buffered,
    );
}

#[test]
fn a_leftover_spare_is_removed_quietly_at_open() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let p = dir.path().join("log");
    std::fs::create_dir_all(&p).unwrap();
    std::fs::write(p.join("spare-1-0.seg.tmp"), vec![0u8; 8192]).unwrap();
    run(async move {
        let log = Log::open(&p, cfg(Durability::Always, WriteMode::Direct))
            .await
            .unwrap();
        assert_eq!(spare(&p), None);
        assert!(log.recovery_report().removed_files.is_empty());
        assert_eq!(log.append("a", b"", b"x").await.unwrap().0, 1);
        log.close().await.unwrap();
    });
}
