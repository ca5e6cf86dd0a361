//! O_DIRECT group commit pipelines: the next group is framed while the
//! previous one is in flight. Everything decided at framing time
//! (sequences, expected-last-sequence checks, discard-new limits) must
//! count the group in flight, and a failed group must take the one framed
//! behind it down with it.

mod common;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

use broker_edge_storage::{
    Discard, Durability, Error, Expect, FaultInjector, Filter, LimitKind, Limits, Log, LogConfig,
    Start, WriteMode,
};
use bytes::Bytes;
use common::{only_segment, run};

fn direct(durability: Durability) -> LogConfig {
    LogConfig {
        segment_size: 4 << 20,
        durability,
        write_mode: WriteMode::Direct,
        ..Default::default()
    }
}

/// Payload: the expectation the append was made under, then filler so
/// groups span many blocks.
fn body(expected: u64, fill: usize) -> Bytes {
    let mut v = expected.to_le_bytes().to_vec();
    v.resize(8 + fill, 0x5a);
    Bytes::from(v)
}

fn expected_of(payload: &[u8]) -> u64 {
    u64::from_le_bytes(payload[..8].try_into().unwrap())
}

fn chained_case(durability: Durability) {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().to_path_buf();
    run(async move {
        let log = Rc::new(Log::open(&p, direct(durability)).await.unwrap());
        let mut tasks = Vec::new();
        for t in 0..48u64 {
            let log = log.clone();
            tasks.push(glommio::spawn_local(async move {
                let subject = Bytes::from(format!("kv.{}", t % 4));
                let by_log = t % 6 == 0;
                let mut guess = 0u64;
                let mut stored = 0;
                while stored < 25 {
                    let expect = if by_log {
                        Expect {
                            last_seq: Some(guess),
                            ..Default::default()
                        }
                    } else {
                        Expect {
                            last_subject_seq: Some(guess),
                            ..Default::default()
                        }
                    };
                    let r = log
                        .append_expect(subject.clone(), Bytes::new(), body(guess, 6000), expect)
                        .await;
                    match r {
                        Ok((seq, _)) => {
                            stored += 1;
                            guess = seq;
                        }
                        Err(Error::WrongLastSequence { actual })
                        | Err(Error::WrongLastSubjectSequence { actual }) => guess = actual,
                        Err(e) => panic!("append: {e}"),
                    }
                }
            }));
        }
        for t in tasks {
            t.await;
        }
        let stats = log.commit_stats();
        if durability == Durability::Always {
            // `always` waits for each group's sync before framing the next.
            assert_eq!(stats.pipelined, 0, "{stats:?}");
        } else {
            assert!(
                stats.pipelined > 0,
                "no group was framed behind another: {stats:?}"
            );
        }

        let check = |log: &Log| {
            let mut last_on: BTreeMap<Bytes, u64> = BTreeMap::new();
            let mut n = 0;
            for m in log.scan(Start::Seq(0), Filter::all()) {
                let m = m.unwrap();
                let want = expected_of(&m.payload);
                let prev_subject = last_on.insert(m.subject.clone(), m.seq).unwrap_or(0);
                // Each record satisfied exactly one of the two conditions
                // when it was framed; both chains are checked by the one
                // that fits (subject chains use 0 for the first).
                assert!(
                    want == prev_subject || want == m.seq - 1,
                    "seq {} on {:?} was appended expecting {want}, but the subject's \
                     previous was {prev_subject}",
                    m.seq,
                    m.subject
                );
                n += 1;
            }
            assert_eq!(n, 48 * 25);
        };
        check(&log);
        log.close().await.unwrap();
        drop(log);
        let log = Log::open(&p, direct(durability)).await.unwrap();
        check(&log);
    });
}

#[test]
fn expectations_hold_across_groups_in_flight() {
    chained_case(Durability::Never);
    chained_case(Durability::Always);
}

/// Under `always`, the appenders a group acknowledges stage their next
/// records before the next group is framed, so concurrent appenders share
/// one write and one sync instead of splitting into cohorts that take
/// turns (each half the size) behind each other's syncs.
#[test]
fn always_gathers_every_waiting_appender_into_one_group() {
    const TASKS: u64 = 64;
    const EACH: u64 = 20;
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().to_path_buf();
    run(async move {
        let log = Rc::new(Log::open(&p, direct(Durability::Always)).await.unwrap());
        let mut tasks = Vec::new();
        for t in 0..TASKS {
            let log = log.clone();
            tasks.push(glommio::spawn_local(async move {
                for i in 0..EACH {
                    log.append(&format!("t.{t}"), b"", &body(i, 1000))
                        .await
                        .unwrap();
                }
            }));
        }
        for t in tasks {
            t.await;
        }
        let stats = log.commit_stats();
        assert_eq!(stats.pipelined, 0, "{stats:?}");
        let per_group = (TASKS * EACH) as f64 / stats.groups as f64;
        assert!(
            per_group > TASKS as f64 * 0.75,
            "{per_group:.1} records per group with {TASKS} appenders: {stats:?}"
        );
        assert_eq!(log.state(false).msgs, TASKS * EACH);
    });
}

/// A crowd of appenders whose records add up to several MiB is split into
/// groups of about a MiB (cohorts that write and resolve on their own);
/// under `always` the crowd stays one group per sync. Every record lands,
/// each appender's in its order.
#[test]
fn crowds_split_into_bounded_groups_unless_always() {
    const TASKS: u64 = 256;
    const EACH: u64 = 6;
    const FILL: usize = 16 << 10;
    for durability in [Durability::Never, Durability::Always] {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().to_path_buf();
        run(async move {
            let cfg = LogConfig {
                segment_size: 64 << 20,
                ..direct(durability)
            };
            let log = Rc::new(Log::open(&p, cfg.clone()).await.unwrap());
            let mut tasks = Vec::new();
            for t in 0..TASKS {
                let log = log.clone();
                tasks.push(glommio::spawn_local(async move {
                    for i in 0..EACH {
                        log.append(&format!("t.{t}"), b"", &body(i, FILL))
                            .await
                            .unwrap();
                    }
                }));
            }
            for t in tasks {
                t.await;
            }
            let stats = log.commit_stats();
            let per_group = (TASKS * EACH) as f64 / stats.groups as f64;
            // A batch closes at 768 KiB, 48 such records; the whole crowd
            // is 256.
            if durability == Durability::Always {
                assert!(per_group > 128.0, "{per_group:.1} per group: {stats:?}");
            } else {
                assert!(per_group <= 48.5, "{per_group:.1} per group: {stats:?}");
                assert!(stats.pipelined > 0, "{stats:?}");
            }
            let check = |log: &Log| {
                let mut next: BTreeMap<Bytes, u64> = BTreeMap::new();
                let mut n = 0;
                for m in log.scan(Start::Seq(0), Filter::all()) {
                    let m = m.unwrap();
                    let want = next.entry(m.subject.clone()).or_insert(0);
                    assert_eq!(expected_of(&m.payload), *want, "order on {:?}", m.subject);
                    assert_eq!(m.payload.len(), 8 + FILL);
                    *want += 1;
                    n += 1;
                }
                assert_eq!(n, TASKS * EACH);
            };
            check(&log);
            log.close().await.unwrap();
            drop(log);
            let log = Log::open(&p, cfg).await.unwrap();
            check(&log);
        });
    }
}

#[test]
fn subject_expectations_are_exact_under_pipelining() {
    // Only per-subject expectations: every stored record must name the
    // subject's previous record exactly, so a check that ignored the group
    // in flight would let two records claim the same predecessor.
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().to_path_buf();
    run(async move {
        let log = Rc::new(Log::open(&p, direct(Durability::Never)).await.unwrap());
        let mut tasks = Vec::new();
        for t in 0..64u64 {
            let log = log.clone();
            tasks.push(glommio::spawn_local(async move {
                let subject = Bytes::from(format!("cfg.{}", t % 3));
                let mut guess = 0u64;
                for _ in 0..40 {
                    let expect = Expect {
                        last_subject_seq: Some(guess),
                        ..Default::default()
                    };
                    let r = log
                        .append_expect(subject.clone(), Bytes::new(), body(guess, 9000), expect)
                        .await;
                    match r {
                        Ok((seq, _)) => guess = seq,
                        Err(Error::WrongLastSubjectSequence { actual }) => guess = actual,
                        Err(e) => panic!("append: {e}"),
                    }
                }
            }));
        }
        for t in tasks {
            t.await;
        }
        assert!(log.commit_stats().pipelined > 0);
        let mut last_on: BTreeMap<Bytes, u64> = BTreeMap::new();
        for m in log.scan(Start::Seq(0), Filter::all()) {
            let m = m.unwrap();
            let prev = last_on.insert(m.subject.clone(), m.seq).unwrap_or(0);
            assert_eq!(expected_of(&m.payload), prev, "seq {}", m.seq);
        }
    });
}

#[test]
fn discard_new_limits_count_the_group_in_flight() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().to_path_buf();
    run(async move {
        let mut cfg = direct(Durability::Never);
        cfg.limits = Limits {
            max_msgs: Some(500),
            discard: Discard::New,
            ..Default::default()
        };
        let log = Rc::new(Log::open(&p, cfg).await.unwrap());
        let oks = Rc::new(RefCell::new(0u64));
        let mut tasks = Vec::new();
        for _ in 0..64 {
            let (log, oks) = (log.clone(), oks.clone());
            tasks.push(glommio::spawn_local(async move {
                loop {
                    let r = log
                        .append_bytes(Bytes::from_static(b"q"), Bytes::new(), body(0, 16 << 10))
                        .await;
                    match r {
                        Ok(_) => *oks.borrow_mut() += 1,
                        Err(Error::LimitReached(LimitKind::MaxMsgs)) => break,
                        Err(e) => panic!("append: {e}"),
                    }
                }
            }));
        }
        for t in tasks {
            t.await;
        }
        assert!(log.commit_stats().pipelined > 0);
        assert_eq!(*oks.borrow(), 500);
        assert_eq!(log.state(false).msgs, 500);

        // Per subject: exactly the limit on each subject, however the
        // appends fall into groups.
        let p2 = p.join("per-subject");
        let mut cfg = direct(Durability::Never);
        cfg.limits = Limits {
            max_msgs_per_subject: Some(7),
            discard: Discard::New,
            discard_new_per_subject: true,
            ..Default::default()
        };
        let log = Rc::new(Log::open(&p2, cfg).await.unwrap());
        let mut tasks = Vec::new();
        for t in 0..64u64 {
            let log = log.clone();
            tasks.push(glommio::spawn_local(async move {
                let subject = Bytes::from(format!("s.{}", t % 4));
                let mut ok = 0;
                for _ in 0..6 {
                    match log
                        .append_bytes(subject.clone(), Bytes::new(), body(0, 8000))
                        .await
                    {
                        Ok(_) => ok += 1,
                        Err(Error::LimitReached(LimitKind::MaxMsgsPerSubject)) => {}
                        Err(e) => panic!("append: {e}"),
                    }
                }
                ok
            }));
        }
        let mut total = 0;
        for t in tasks {
            total += t.await;
        }
        assert_eq!(total, 28);
        for (subject, count) in log.subjects(&Filter::all()) {
            assert_eq!(count, 7, "{subject:?}");
        }
    });
}

#[test]
fn a_failed_group_fails_the_group_framed_behind_it() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().to_path_buf();
    run(async move {
        let f = FaultInjector::new();
        let log = Rc::new(
            Log::open_with_faults(&p, direct(Durability::Never), Some(f.clone()))
                .await
                .unwrap(),
        );
        let acked = Rc::new(RefCell::new(BTreeMap::new()));
        let failed = Rc::new(RefCell::new(0u64));
        let stop = Rc::new(std::cell::Cell::new(false));
        let mut tasks = Vec::new();
        for t in 0..32u64 {
            let (log, acked, failed, stop) =
                (log.clone(), acked.clone(), failed.clone(), stop.clone());
            tasks.push(glommio::spawn_local(async move {
                let mut k = 0u64;
                while !stop.get() {
                    let tag = t * 1_000_000 + k;
                    k += 1;
                    match log
                        .append_bytes(Bytes::from_static(b"w"), Bytes::new(), body(tag, 5000))
                        .await
                    {
                        Ok((seq, _)) => {
                            acked.borrow_mut().insert(seq, tag);
                        }
                        Err(_) => *failed.borrow_mut() += 1,
                    }
                }
            }));
        }
        // Single writes tear (a group fails alone, with the next one
        // likely framed behind it), then writes fail for a while.
        for _ in 0..6 {
            glommio::timer::sleep(Duration::from_millis(25)).await;
            f.tear_next_write(1000);
        }
        glommio::timer::sleep(Duration::from_millis(25)).await;
        f.fail_writes(Some(libc::EIO));
        glommio::timer::sleep(Duration::from_millis(20)).await;
        f.fail_writes(None);
        glommio::timer::sleep(Duration::from_millis(60)).await;
        stop.set(true);
        for t in tasks {
            t.await;
        }
        assert!(*failed.borrow() > 0, "no append failed");
        assert!(log.commit_stats().pipelined > 0);
        log.close().await.unwrap();
        drop(log);

        // After a restart exactly the acknowledged records are there, each
        // with its own payload; nothing refused came back.
        let log = Log::open(&p, direct(Durability::Never)).await.unwrap();
        let report = log.recovery_report();
        assert!(report.corrupt.is_empty(), "{report:?}");
        let stored: BTreeMap<u64, u64> = log
            .scan(Start::Seq(0), Filter::all())
            .map(|m| {
                let m = m.unwrap();
                (m.seq, expected_of(&m.payload))
            })
            .collect();
        let acked = acked.borrow();
        let diff: Vec<_> = stored
            .iter()
            .filter(|(s, t)| acked.get(s) != Some(t))
            .chain(acked.iter().filter(|(s, t)| stored.get(s) != Some(t)))
            .take(5)
            .collect();
        assert!(
            diff.is_empty(),
            "{} stored, {} acked; first differences (seq, tag): {diff:?}",
            stored.len(),
            acked.len()
        );
    });
}

/// Pipelined groups land in the recent-writes cache too (a split group in
/// two parts, the record straddling them kept whole): with the segment
/// file damaged behind the log's back, every read still comes back intact.
#[test]
fn pipelined_groups_are_served_from_memory() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().to_path_buf();
    run(async move {
        let log = Rc::new(Log::open(&p, direct(Durability::Never)).await.unwrap());
        let mut tasks = Vec::new();
        for t in 0..32u64 {
            let log = log.clone();
            tasks.push(glommio::spawn_local(async move {
                let mut seqs = Vec::new();
                for k in 0..20u64 {
                    let b = body(t * 100 + k, 3000);
                    let (seq, _) = log
                        .append_bytes(Bytes::from_static(b"m"), Bytes::new(), b)
                        .await
                        .unwrap();
                    seqs.push(seq);
                }
                seqs
            }));
        }
        let mut seqs = Vec::new();
        for t in tasks {
            seqs.extend(t.await);
        }
        let stats = log.commit_stats();
        assert!(stats.pipelined > 0, "{stats:?}");
        let seg = only_segment(&p);
        let f = std::fs::OpenOptions::new().write(true).open(&seg).unwrap();
        use std::os::unix::fs::FileExt;
        for at in (100..seqs.len() as u64 * 3100).step_by(512) {
            f.write_all_at(&[0xee], at).unwrap();
        }
        let bad: Vec<u64> = seqs
            .iter()
            .copied()
            .filter(|&s| log.get(s).is_err())
            .collect();
        assert!(
            bad.is_empty(),
            "{} of {} read from the damaged file ({stats:?}): {:?}",
            bad.len(),
            seqs.len(),
            &bad[..bad.len().min(10)]
        );
    });
}

/// Erasing a record rewrites the blocks it lies in. Near the tail those are
/// blocks that groups in flight rewrite too (a group's first block starts
/// with the bytes before it): neither may undo the other. Every other
/// acknowledged record must survive intact under its own sequence, and no
/// erased payload may remain in the file, before and after a restart.
/// Without `erase` the same churn checks plain deletes of the newest
/// record while groups are in flight.
fn delete_near_tail_case(durability: Durability, erase: bool) {
    const WRITERS: u64 = 12;
    const EACH: u64 = 150;
    const DELETED: u64 = 120;
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().to_path_buf();
    run(async move {
        let log = Rc::new(Log::open(&p, direct(durability)).await.unwrap());
        let kept: Rc<RefCell<BTreeMap<u64, Bytes>>> = Rc::default();
        let mut tasks = Vec::new();
        for t in 0..WRITERS {
            let (log, kept) = (log.clone(), kept.clone());
            tasks.push(glommio::spawn_local(async move {
                for i in 0..EACH {
                    let body = Bytes::from(format!("keep-{t}-{i}-").repeat(9));
                    let (seq, _) = log
                        .append_bytes(Bytes::from_static(b"k"), Bytes::new(), body.clone())
                        .await
                        .unwrap();
                    let twice = kept.borrow_mut().insert(seq, body);
                    assert!(twice.is_none(), "sequence {seq} given twice");
                }
            }));
        }
        let deleter = {
            let log = log.clone();
            glommio::spawn_local(async move {
                let mut gone = Vec::new();
                for i in 0..DELETED {
                    let body = Bytes::from(format!("SECRET{i:04}").repeat(12));
                    let (seq, _) = log
                        .append_bytes(Bytes::from_static(b"e"), Bytes::new(), body)
                        .await
                        .unwrap();
                    assert!(log.delete(seq, erase).await.unwrap());
                    gone.push(seq);
                }
                gone
            })
        };
        for t in tasks {
            t.await;
        }
        let gone = deleter.await;
        let kept = kept.borrow().clone();
        assert_eq!(kept.len() as u64, WRITERS * EACH);

        let check = |log: &Log| {
            for (seq, body) in &kept {
                let m = log
                    .get(*seq)
                    .unwrap_or_else(|e| panic!("seq {seq} lost: {e}"));
                assert_eq!(&m.payload, body, "seq {seq}");
            }
            for seq in &gone {
                assert!(log.get(*seq).is_err(), "deleted seq {seq} is served");
            }
            assert_eq!(log.state(false).msgs, WRITERS * EACH);
        };
        check(&log);
        if erase {
            let file = std::fs::read(only_segment(&p)).unwrap();
            assert!(
                !file.windows(6).any(|w| w == b"SECRET"),
                "an erased payload is back in the segment"
            );
        }
        log.close().await.unwrap();
        drop(log);
        let log = Log::open(&p, direct(durability)).await.unwrap();
        check(&log);
    });
}

#[test]
fn deleting_the_newest_record_leaves_groups_in_flight_intact() {
    delete_near_tail_case(Durability::Never, false);
    delete_near_tail_case(Durability::Always, false);
}

#[test]
fn erase_near_the_tail_leaves_groups_in_flight_intact() {
    delete_near_tail_case(Durability::Never, true);
    delete_near_tail_case(Durability::Always, true);
}

/// Record header fields the test reads straight from the segment file
/// (layout in `storage/FORMAT.md`): (kind, record length, seq).
fn header_at(seg: &[u8], off: usize) -> (u8, usize, u64) {
    let h = &seg[off..off + 40];
    assert_eq!(&h[0..4], b"BELR", "no record at {off}");
    let u16_at = |i: usize| u16::from_le_bytes(h[i..i + 2].try_into().unwrap()) as usize;
    let u32_at = |i: usize| u32::from_le_bytes(h[i..i + 4].try_into().unwrap()) as usize;
    let len = 40 + u16_at(12) + u32_at(16) + u32_at(20);
    (h[9], len, u64::from_le_bytes(h[24..32].try_into().unwrap()))
}

#[test]
fn large_groups_end_on_a_block_boundary_unless_always() {
    // 16 appenders staged together make one or two groups of at least
    // 64 KiB. On a pipelining log each ends with a pad record up to the
    // next 4 KiB boundary, so the group after it starts a block of its own
    // (and, framed behind it, needs no separate head-block write); under
    // `always` records stay back to back. Either way the pad is invisible.
    const TASKS: u64 = 16;
    const FILL: usize = 16 << 10;
    for durability in [Durability::Never, Durability::Always] {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().to_path_buf();
        run(async move {
            let log = Rc::new(Log::open(&p, direct(durability)).await.unwrap());
            let mut tasks = Vec::new();
            for t in 0..TASKS {
                let log = log.clone();
                tasks.push(glommio::spawn_local(async move {
                    log.append(&format!("t.{t}"), b"", &body(t, FILL))
                        .await
                        .unwrap()
                }));
            }
            for t in tasks {
                t.await;
            }
            let groups = log.commit_stats().groups;
            assert!(groups <= 2, "the crowd staged together: {groups} groups");
            let (last, _) = log.append("after", b"", &body(99, FILL)).await.unwrap();
            assert_eq!(last, TASKS + 1);
            log.close().await.unwrap();
            drop(log);

            // Walk the file: every message in order, pads only where a
            // large group ended, each up to a block boundary.
            let seg = std::fs::read(only_segment(&p)).unwrap();
            let (mut off, mut seq, mut pads) = (0, 1, 0);
            while seq <= TASKS + 1 {
                let (kind, len, s) = header_at(&seg, off);
                match kind {
                    0 => {
                        assert_eq!(s, seq, "record at {off}");
                        seq += 1;
                    }
                    3 => {
                        pads += 1;
                        assert_eq!((off + len) % 4096, 0, "pad at {off} ends mid-block");
                        assert!(off >= 64 << 10, "pad after a small group at {off}");
                    }
                    // The floor a fresh log starts with.
                    2 => assert_eq!(off, 0, "floor at {off}"),
                    k => panic!("kind {k} at {off}"),
                }
                off += len;
            }
            if durability == Durability::Never {
                assert!(pads >= 1, "no pad record");
            } else {
                assert_eq!(pads, 0, "pads under always");
            }

            let log = Log::open(&p, direct(durability)).await.unwrap();
            let st = log.state(false);
            assert_eq!(
                (st.first_seq, st.last_seq, st.msgs),
                (1, TASKS + 1, TASKS + 1)
            );
            let mut n = 0;
            for m in log.scan(Start::Seq(0), Filter::all()) {
                let m = m.unwrap();
                assert_eq!(m.payload.len(), 8 + FILL);
                n += 1;
            }
            assert_eq!(n, TASKS + 1);
            let (seq, _) = log.append("reopened", b"", &body(7, 100)).await.unwrap();
            assert_eq!(seq, TASKS + 2);
        });
    }
}

/// `Log::stage`: appends staged back to back without a task each, waited
/// on oldest first, end in staging order with consecutive sequences, and
/// an expectation is judged at framing time per ticket, in every mode.
#[test]
fn staged_tickets_complete_in_order() {
    for durability in [
        Durability::Always,
        Durability::Interval(Duration::from_millis(5)),
        Durability::Never,
    ] {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().to_path_buf();
        run(async move {
            let log = Log::open(&p, direct(durability)).await.unwrap();
            let mut tickets = std::collections::VecDeque::new();
            // 3,000 × 2 KiB: several cohorts, so groups pipeline.
            for i in 0..3000u64 {
                let expect = if i % 500 == 499 {
                    // Right for the odd ones (each even one before was
                    // refused), wrong for the even ones.
                    let k = i / 500;
                    Expect {
                        last_seq: Some(if k % 2 == 1 { i - k.div_ceil(2) } else { i + 7 }),
                        ..Default::default()
                    }
                } else {
                    Expect::default()
                };
                let t = log
                    .stage(Bytes::from("s"), Bytes::new(), body(i, 2040), expect)
                    .unwrap();
                tickets.push_back((i, t));
            }
            let mut next_seq = 1;
            let mut refused = 0;
            while let Some((i, t)) = tickets.pop_front() {
                t.wait().await;
                // Everything staged before it is done too.
                assert!(t.is_done());
                match t.appended() {
                    Ok((seq, _)) => {
                        assert_eq!(seq, next_seq, "append {i}");
                        let m = log.get(seq).unwrap();
                        assert_eq!(expected_of(&m.payload), i);
                        next_seq += 1;
                    }
                    Err(Error::WrongLastSequence { actual }) => {
                        assert_eq!(actual, next_seq - 1);
                        assert_eq!(i % 500, 499);
                        refused += 1;
                    }
                    Err(e) => panic!("append {i}: {e}"),
                }
            }
            assert_eq!(refused, 3);
            assert_eq!(log.state(false).msgs, 2997);
            log.close().await.unwrap();
        });
    }
}
