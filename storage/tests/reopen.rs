//! What a reopened log finds is what the closed one held.
//!
//! * Deletes that fill a segment with nothing but tombstones: the next
//!   segment used to get the same base, so the same file name, and its
//!   file replaced the one holding those tombstones. After a restart the
//!   deleted messages were back (in a work queue: acked messages delivered
//!   again). Found through SIGBUS and NotFound flakes of `model.rs`.
//! * A closed log never writes again: its directory may be deleted next,
//!   or opened by a new instance that picks the same file names. A
//!   compaction still in its first steps at close used to carry on
//!   afterwards.

mod common;

use std::path::Path;
use std::time::Duration;

use broker_edge_storage::{Durability, Filter, Log, LogConfig, Start, WriteMode};
use common::run;

fn listing(dir: &Path) -> Vec<(String, u64)> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let len = e.metadata().map(|m| m.len()).unwrap_or(0);
            (e.file_name().to_string_lossy().into_owned(), len)
        })
        .collect();
    v.sort();
    v
}

fn cfg(durability: Durability, write_mode: WriteMode) -> LogConfig {
    LogConfig {
        // Five 60-byte messages, or a dozen tombstones, per segment.
        segment_size: 600,
        durability,
        write_mode,
        compact_below: 0.6,
        ..Default::default()
    }
}

/// 40 messages, then 23 of the first 30 deleted one by one (more
/// tombstones than a segment holds, with no message after them).
/// Returns the sequences left.
async fn fill_and_delete(log: &Log) -> Vec<u64> {
    for i in 0..40u8 {
        log.append("a", b"", &[i; 60]).await.unwrap();
    }
    let mut left: Vec<u64> = (1..=40).collect();
    for seq in (1..=30u64).filter(|s| s % 4 != 0) {
        assert!(log.delete(seq, false).await.unwrap());
        left.retain(|s| *s != seq);
    }
    left
}

fn seqs(log: &Log) -> Vec<u64> {
    log.scan(Start::Seq(1), Filter::all())
        .map(|m| m.unwrap().seq)
        .collect()
}

fn deletes_survive(durability: Durability, mode: WriteMode) {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().to_path_buf();
    run(async move {
        let log = Log::open(&p, cfg(durability, mode)).await.unwrap();
        let left = fill_and_delete(&log).await;
        assert_eq!(seqs(&log), left);
        // And a message after the run of deletes lands behind them.
        let (seq, _) = log.append("a", b"", b"after").await.unwrap();
        assert_eq!(seq, 41);
        log.close().await.unwrap();

        let log = Log::open(&p, cfg(durability, mode)).await.unwrap();
        let r = log.recovery_report();
        assert!(r.corrupt.is_empty() && r.torn_tail.is_none(), "{r:?}");
        let mut want = left.clone();
        want.push(41);
        assert_eq!(seqs(&log), want, "deleted messages came back");
        assert_eq!(log.state(false).msgs, want.len() as u64);
        log.close().await.unwrap();
    });
}

#[test]
fn deletes_filling_a_segment_survive_a_restart() {
    deletes_survive(Durability::Always, WriteMode::Buffered);
}

#[test]
fn deletes_filling_a_direct_segment_survive_a_restart() {
    deletes_survive(Durability::Always, WriteMode::Direct);
}

#[test]
fn deletes_filling_a_segment_survive_a_restart_with_interval_sync() {
    deletes_survive(
        Durability::Interval(Duration::from_millis(5)),
        WriteMode::Direct,
    );
}

fn compaction_racing_close(durability: Durability) {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().to_path_buf();
    run(async move {
        let log = Log::open(&p, cfg(durability, WriteMode::Buffered))
            .await
            .unwrap();
        // Three of every four early messages go: those segments become
        // compaction candidates.
        let left = fill_and_delete(&log).await;
        let busy = log.clone();
        let compaction = glommio::spawn_local(async move { busy.compact().await });
        // Let the compaction take its first steps, then close under it.
        futures_lite::future::yield_now().await;
        log.close().await.unwrap();
        let at_close = listing(&p);
        let _ = compaction.await;
        glommio::timer::sleep(Duration::from_millis(50)).await;
        assert_eq!(listing(&p), at_close, "files changed after close returned");

        let log = Log::open(&p, cfg(durability, WriteMode::Buffered))
            .await
            .unwrap();
        let r = log.recovery_report();
        assert!(r.corrupt.is_empty() && r.torn_tail.is_none(), "{r:?}");
        assert_eq!(seqs(&log), left);
        log.close().await.unwrap();
    });
}

#[test]
fn a_compaction_under_way_does_not_outlive_close() {
    compaction_racing_close(Durability::Always);
}

#[test]
fn a_compaction_under_way_does_not_outlive_close_with_interval_sync() {
    compaction_racing_close(Durability::Interval(Duration::from_millis(5)));
}

/// Appends racing `close`: each one is either acknowledged, and then
/// found after a reopen, or refused with `Closed`; nothing is written after
/// `close` returns.
fn appends_racing_close(durability: Durability, mode: WriteMode) {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().to_path_buf();
    run(async move {
        let log = Log::open(&p, cfg(durability, mode)).await.unwrap();
        let acked = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
        let mut writers = Vec::new();
        for w in 0..4u8 {
            let (log, acked) = (log.clone(), acked.clone());
            writers.push(glommio::spawn_local(async move {
                for i in 0..200u8 {
                    match log.append("a", b"", &[w, i]).await {
                        Ok((seq, _)) => acked.borrow_mut().push(seq),
                        Err(broker_edge_storage::Error::Closed) => return,
                        Err(e) => panic!("append: {e}"),
                    }
                }
            }));
        }
        // Let the writers get going, then close under them.
        glommio::timer::sleep(Duration::from_millis(2)).await;
        log.close().await.unwrap();
        let at_close = listing(&p);
        for w in writers {
            w.await;
        }
        glommio::timer::sleep(Duration::from_millis(50)).await;
        assert_eq!(listing(&p), at_close, "files changed after close returned");

        let log = Log::open(&p, cfg(durability, mode)).await.unwrap();
        let r = log.recovery_report();
        assert!(r.corrupt.is_empty() && r.torn_tail.is_none(), "{r:?}");
        let mut want = acked.borrow().clone();
        want.sort_unstable();
        let got = seqs(&log);
        // Every acknowledged append is there; an unacknowledged one may be
        // too (written by the flush that close did, its answer refused).
        assert!(want.iter().all(|s| got.contains(s)), "lost acked appends");
        assert!(!want.is_empty());
        log.close().await.unwrap();
    });
}

#[test]
fn appends_racing_close_are_stored_or_refused() {
    appends_racing_close(Durability::Always, WriteMode::Buffered);
    appends_racing_close(
        Durability::Interval(Duration::from_millis(5)),
        WriteMode::Direct,
    );
}

/// Deletes a limit makes (a key's older revision under a per-subject limit
/// of 1, the floor of a log at max_msgs) ride with the next group instead
/// of costing a write and a sync of their own, so a stream of acknowledged
/// puts costs one group each (it cost two), and no high-water mark write
/// (another sync) follows them. Left unwritten by a log that
/// is dropped without `close` (a crash), they are made again at the next
/// open from the limits.
#[test]
fn limit_deletes_ride_with_the_next_group_and_are_remade_at_open() {
    for (per_subject, max_msgs) in [(Some(1), None), (None, Some(3))] {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().to_path_buf();
        run(async move {
            let cfg = LogConfig {
                durability: Durability::Always,
                write_mode: WriteMode::Direct,
                limits: broker_edge_storage::Limits {
                    max_msgs_per_subject: per_subject,
                    max_msgs,
                    ..Default::default()
                },
                ..Default::default()
            };
            let log = Log::open(&p, cfg.clone()).await.unwrap();
            let meta = || -> Vec<u8> {
                let f = std::fs::read_dir(&p)
                    .unwrap()
                    .flatten()
                    .find(|e| e.file_name().to_string_lossy().ends_with(".meta"))
                    .expect("the log's meta file");
                std::fs::read(f.path()).unwrap()
            };
            let mark = meta();
            let before = log.commit_stats().groups;
            for i in 0..40u32 {
                log.append("kv.key", b"", &i.to_le_bytes()).await.unwrap();
                // The next put comes after a network round trip, not at
                // once: the committer has long looked for work by then.
                glommio::timer::sleep(Duration::from_millis(1)).await;
            }
            let groups = log.commit_stats().groups - before;
            assert!(groups <= 41, "{groups} groups for 40 appends");
            let keep = if per_subject.is_some() { 1 } else { 3 };
            assert_eq!(log.state(false).msgs, keep);
            // No high-water mark was written for them (a second sync).
            assert!(meta() == mark, "the mark moved for limit deletes");
            // A crash: nothing more is written.
            drop(log);
            let log = Log::open(&p, cfg).await.unwrap();
            let st = log.state(false);
            assert_eq!(st.msgs, keep, "limits applied again at open");
            assert_eq!(st.last_seq, 40);
            let last = log.get(40).unwrap();
            assert_eq!(&last.payload[..], &39u32.to_le_bytes());
            assert!(log.get(40 - keep).is_err(), "the older ones stay gone");
            // An explicit delete does move the mark.
            let mark = meta();
            assert!(log.delete(40, false).await.unwrap());
            assert!(meta() != mark, "an explicit delete is guarded by the mark");
            log.close().await.unwrap();
        });
    }
}
