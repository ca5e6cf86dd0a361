//! Reads of what an O_DIRECT log just wrote come from its recent-writes
//! cache, byte for byte what is on disk.

mod common;

use std::os::unix::fs::FileExt;
use std::rc::Rc;

use broker_edge_storage::{Durability, Filter, Log, LogConfig, Start, WriteMode};
use common::{only_segment, payload, run};

fn direct(recent_bytes: usize) -> LogConfig {
    LogConfig {
        segment_size: 1 << 20,
        durability: Durability::Never,
        write_mode: WriteMode::Direct,
        recent_bytes,
        ..Default::default()
    }
}

/// Record sizes that cross block boundaries in every way.
fn size(i: u64) -> usize {
    [10, 700, 4000, 5000, 12_000, 100][(i % 6) as usize]
}

#[test]
fn concurrent_appends_read_back_exactly_before_and_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().to_path_buf();
    run(async move {
        let log = Rc::new(Log::open(&p, direct(256 << 10)).await.unwrap());
        // Eight appenders, so groups hold several records; each reads its
        // record back as soon as the append returns.
        let mut tasks = Vec::new();
        for t in 0..8u64 {
            let log = log.clone();
            tasks.push(glommio::spawn_local(async move {
                for k in 0..40u64 {
                    let i = t * 1000 + k;
                    let body = payload(i, size(i));
                    let (seq, _) = log.append(&format!("s.{t}"), b"h", &body).await.unwrap();
                    let m = log.get(seq).unwrap();
                    assert_eq!(&m.payload[..], &body[..], "seq {seq}");
                    assert_eq!(&m.subject[..], format!("s.{t}").as_bytes());
                }
            }));
        }
        for t in tasks {
            t.await;
        }
        let before: Vec<_> = log
            .scan(Start::Seq(0), Filter::all())
            .map(|m| m.unwrap())
            .collect();
        assert_eq!(before.len(), 320);
        log.close().await.unwrap();
        drop(log);

        let log = Log::open(&p, direct(256 << 10)).await.unwrap();
        for m in &before {
            let d = log.get(m.seq).unwrap();
            assert_eq!(
                (&d.subject, &d.headers, &d.payload),
                (&m.subject, &m.headers, &m.payload)
            );
        }
    });
}

/// Proves where a read comes from: the segment file is damaged behind the
/// log's back. Records still in the cache read back intact; older ones
/// come from the file and fail their CRC; with the cache off, all fail.
#[test]
fn reads_of_the_latest_groups_do_not_touch_the_file() {
    for recent in [64 << 10, 0] {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().to_path_buf();
        run(async move {
            let log = Log::open(&p, direct(recent)).await.unwrap();
            let mut seqs = Vec::new();
            for i in 0..40u64 {
                let (seq, _) = log.append("x", b"", &payload(i, 3000)).await.unwrap();
                seqs.push(seq);
            }
            // Flip a byte in the payload of every record, through a
            // second descriptor (this also updates the page cache).
            let seg = only_segment(&p);
            let f = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(&seg)
                .unwrap();
            // Every 512th byte: each 3 KiB record is hit several times.
            let end = 40 * 3100;
            for at in (100..end).step_by(512) {
                let mut b = [0u8];
                f.read_exact_at(&mut b, at).unwrap();
                f.write_all_at(&[b[0] ^ 0xff], at).unwrap();
            }
            let ok: Vec<bool> = seqs.iter().map(|&s| log.get(s).is_ok()).collect();
            if recent == 0 {
                assert!(ok.iter().all(|o| !o), "cache off: every read hits the file");
            } else {
                let good = ok.iter().filter(|o| **o).count();
                // 64 KiB holds 9 to 21 one-record groups (3 KiB of record
                // plus up to 4 KiB of the block before it).
                assert!((8..=22).contains(&good), "cached reads: {good}");
                assert!(ok[ok.len() - good..].iter().all(|o| *o), "the newest ones");
                assert!(!ok[0], "the oldest comes from the file");
            }
        });
    }
}

/// tmpfs refuses O_DIRECT: the default (Direct) log must still work there,
/// through the page cache.
#[test]
fn default_mode_works_on_tmpfs() {
    let shm = std::path::Path::new("/dev/shm");
    let is_tmpfs = std::fs::read_to_string("/proc/mounts")
        .unwrap()
        .lines()
        .any(|l| l.split(' ').nth(1) == Some("/dev/shm") && l.split(' ').nth(2) == Some("tmpfs"));
    assert!(is_tmpfs, "this test needs /dev/shm on tmpfs");
    let dir = tempfile::tempdir_in(shm).unwrap();
    let p = dir.path().to_path_buf();
    assert_eq!(LogConfig::default().write_mode, WriteMode::Direct);
    run(async move {
        let log = Log::open(&p, LogConfig::default()).await.unwrap();
        for i in 1..=50u64 {
            log.append("t", b"", &payload(i, 5000)).await.unwrap();
        }
        assert_eq!(&log.get(50).unwrap().payload[..], &payload(50, 5000)[..]);
        log.close().await.unwrap();
        drop(log);
        let log = Log::open(&p, LogConfig::default()).await.unwrap();
        assert_eq!(log.state(false).msgs, 50);
        assert_eq!(&log.get(7).unwrap().payload[..], &payload(7, 5000)[..]);
    });
}
