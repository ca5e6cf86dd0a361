mod common;

use broker_edge_storage::{Discard, Error, Filter, LimitKind, Limits, Log, Purge, Start};
use common::{payload, run, small_cfg};

#[test]
fn append_get_restart() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().to_path_buf();
    run(async move {
        let log = Log::open(&p, small_cfg(4096)).await.unwrap();
        for i in 1..=100u64 {
            let (seq, _) = log
                .append(&format!("a.{}", i % 3), b"h", &payload(i, 50))
                .await
                .unwrap();
            assert_eq!(seq, i);
        }
        assert!(log.segment_count() > 1, "small segments must roll");
        let m = log.get(42).unwrap();
        assert_eq!(&m.payload[..], &payload(42, 50)[..]);
        assert_eq!(&m.subject[..], b"a.0");
        assert_eq!(&m.headers[..], b"h");
        let st = log.state(true);
        assert_eq!((st.msgs, st.first_seq, st.last_seq), (100, 1, 100));
        assert_eq!(st.num_subjects, 3);
        log.close().await.unwrap();
        drop(log);

        let log = Log::open(&p, small_cfg(4096)).await.unwrap();
        let r = log.recovery_report();
        assert!(r.torn_tail.is_none() && r.corrupt.is_empty(), "{r:?}");
        assert!(r.indexes_loaded > 0, "{r:?}");
        let st2 = log.state(true);
        assert_eq!(st2.msgs, 100);
        assert_eq!(st2.last_seq, 100);
        assert_eq!(st2.num_subjects, 3);
        for i in 1..=100u64 {
            assert_eq!(&log.get(i).unwrap().payload[..], &payload(i, 50)[..]);
        }
        let (seq, _) = log.append("a.1", b"", b"x").await.unwrap();
        assert_eq!(seq, 101);
    });
}

#[test]
fn subjects_wildcards_scans() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().to_path_buf();
    run(async move {
        let log = Log::open(&p, small_cfg(2048)).await.unwrap();
        let mut mid_ts = 0;
        for i in 1..=60u64 {
            let subj = match i % 3 {
                0 => "orders.eu.new",
                1 => "orders.us.new",
                _ => "audit.x",
            };
            let (_, ts) = log.append(subj, b"", &payload(i, 10)).await.unwrap();
            if i == 30 {
                mid_ts = ts;
            }
        }
        let f = Filter::one("orders.*.new");
        assert_eq!(log.first_for(&f).unwrap().unwrap().seq, 1);
        assert_eq!(log.last_for(&f).unwrap().unwrap().seq, 60);
        let f = Filter::one("audit.>");
        assert_eq!(log.first_for(&f).unwrap().unwrap().seq, 2);
        assert_eq!(log.last_for(&f).unwrap().unwrap().seq, 59);
        assert!(log.first_for(&Filter::one("nope")).unwrap().is_none());
        let eu: Vec<u64> = log
            .scan(Start::Seq(10), Filter::one("orders.eu.new"))
            .map(|m| m.unwrap().seq)
            .collect();
        assert_eq!(eu, (12..=60).step_by(3).collect::<Vec<_>>());
        let multi = log
            .scan(Start::Seq(1), Filter::new(&["audit.x", "orders.us.*"]))
            .count();
        assert_eq!(multi, 40);
        let from_t: Vec<u64> = log
            .scan(Start::Time(mid_ts), Filter::all())
            .map(|m| m.unwrap().seq)
            .collect();
        assert_eq!(from_t.first().copied(), log.seq_for_time(mid_ts));
        assert!(from_t[0] <= 30 && *from_t.last().unwrap() == 60);
        // Deleting a subject's first and last fixes the subject index.
        assert!(log.delete(1, false).await.unwrap());
        assert!(log.delete(58, false).await.unwrap());
        let f = Filter::one("orders.us.new");
        assert_eq!(log.first_for(&f).unwrap().unwrap().seq, 4);
        assert_eq!(log.last_for(&f).unwrap().unwrap().seq, 55);
        let counts = log.subjects(&Filter::one("orders.>"));
        assert_eq!(counts.iter().map(|c| c.1).sum::<u64>(), 38);
    });
}

#[test]
fn deletes_purges_limits() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().to_path_buf();
    run(async move {
        let log = Log::open(&p, small_cfg(1024)).await.unwrap();
        for i in 1..=50u64 {
            log.append(&format!("k.{}", i % 5), b"", &payload(i, 20))
                .await
                .unwrap();
        }
        assert!(log.delete(10, true).await.unwrap());
        assert!(!log.delete(10, false).await.unwrap());
        assert!(matches!(log.get(10), Err(Error::NotFound(10))));
        let st = log.state(true);
        assert_eq!(st.num_deleted, 1);
        assert_eq!(st.deleted, Some(vec![10]));
        // Purge one subject keeping its newest 2.
        let n = log
            .purge(Purge {
                subject: Some("k.1".into()),
                keep: Some(2),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(n, 8);
        // Purge everything below 20.
        let before = log.state(false).msgs;
        let n = log
            .purge(Purge {
                up_to: Some(20),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(log.state(false).first_seq, 20);
        assert_eq!(log.state(false).msgs, before - n);
        // Per-subject limit.
        log.set_limits(Limits {
            max_msgs_per_subject: Some(3),
            ..Default::default()
        })
        .await
        .unwrap();
        for (s, c) in log.subjects(&Filter::all()) {
            assert!(c <= 3, "{s:?} has {c}");
        }
        // Max msgs, discard new.
        let msgs = log.state(false).msgs;
        log.set_limits(Limits {
            max_msgs: Some(msgs),
            discard: Discard::New,
            ..Default::default()
        })
        .await
        .unwrap();
        let e = log.append("k.9", b"", b"x").await.unwrap_err();
        assert!(matches!(e, Error::LimitReached(LimitKind::MaxMsgs)));
        // Max msgs, discard old.
        log.set_limits(Limits {
            max_msgs: Some(5),
            ..Default::default()
        })
        .await
        .unwrap();
        let (last, _) = log.append("k.9", b"", b"x").await.unwrap();
        let st = log.state(false);
        assert_eq!(st.msgs, 5);
        assert_eq!(st.last_seq, last);
        // Max msg size.
        log.set_limits(Limits {
            max_msg_size: Some(10),
            ..Default::default()
        })
        .await
        .unwrap();
        assert!(matches!(
            log.append("k", b"", &[0u8; 20]).await,
            Err(Error::MsgTooLarge { .. })
        ));
        let state_before = log.state(true);
        log.close().await.unwrap();
        drop(log);
        // Deletes and purges survive a restart (limits off now).
        let log = Log::open(&p, small_cfg(1024)).await.unwrap();
        assert_eq!(log.state(true), state_before);
        // Purge all: the log continues after the last sequence.
        log.purge(Purge::default()).await.unwrap();
        let st = log.state(false);
        assert_eq!((st.msgs, st.first_seq), (0, state_before.last_seq + 1));
        let (s, _) = log.append("z", b"", b"1").await.unwrap();
        assert_eq!(s, state_before.last_seq + 1);
        // Purge to a future sequence.
        log.purge(Purge {
            up_to: Some(1000),
            ..Default::default()
        })
        .await
        .unwrap();
        let (s, _) = log.append("z", b"", b"2").await.unwrap();
        assert_eq!(s, 1000);
        log.close().await.unwrap();
        drop(log);
        let log = Log::open(&p, small_cfg(1024)).await.unwrap();
        let st = log.state(false);
        assert_eq!((st.msgs, st.first_seq, st.last_seq), (1, 1000, 1000));
    });
}

#[test]
fn concurrent_appenders_group_commit() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().to_path_buf();
    run(async move {
        let log = Log::open(&p, small_cfg(1 << 20)).await.unwrap();
        let mut tasks = Vec::new();
        for t in 0..8u64 {
            let log = log.clone();
            tasks.push(glommio::spawn_local(async move {
                let mut seqs = Vec::new();
                for i in 0..50u64 {
                    let (s, _) = log
                        .append(&format!("t.{t}"), b"", &payload(t * 1000 + i, 100))
                        .await
                        .unwrap();
                    seqs.push((s, t * 1000 + i));
                }
                seqs
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await);
        }
        all.sort();
        assert_eq!(all.len(), 400);
        for (i, (s, k)) in all.iter().enumerate() {
            assert_eq!(*s, i as u64 + 1);
            assert_eq!(&log.get(*s).unwrap().payload[..], &payload(*k, 100)[..]);
        }
    });
}

#[test]
fn big_record_grows_segment() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().to_path_buf();
    run(async move {
        let log = Log::open(&p, small_cfg(4096)).await.unwrap();
        let big = payload(1, 100_000);
        log.append("a", b"", b"small").await.unwrap();
        let (s, _) = log.append("b", b"", &big).await.unwrap();
        log.append("c", b"", b"after").await.unwrap();
        assert_eq!(&log.get(s).unwrap().payload[..], &big[..]);
        drop(log);
        let log = Log::open(&p, small_cfg(4096)).await.unwrap();
        assert_eq!(&log.get(s).unwrap().payload[..], &big[..]);
        assert_eq!(log.state(false).msgs, 3);
    });
}

#[test]
fn age_limit_drops_whole_segments() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().to_path_buf();
    run(async move {
        let mut cfg = small_cfg(1024);
        cfg.durability = broker_edge_storage::Durability::Never;
        cfg.limits.max_age = Some(std::time::Duration::from_millis(300));
        cfg.segment_max_age = Some(std::time::Duration::from_millis(50));
        let log = Log::open(&p, cfg).await.unwrap();
        for i in 1..=40u64 {
            log.append("old", b"", &payload(i, 60)).await.unwrap();
        }
        let segs_before = log.segment_count();
        assert!(segs_before > 2);
        glommio::timer::sleep(std::time::Duration::from_millis(350)).await;
        let (fresh, _) = log.append("new", b"", b"fresh").await.unwrap();
        log.expire().await.unwrap();
        let st = log.state(false);
        assert_eq!((st.msgs, st.first_seq), (1, fresh));
        assert!(log.segment_count() <= 2, "aged segments must go");
        // Sealed files of dropped segments are unlinked (no reader holds them).
        let n = std::fs::read_dir(&p)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .path()
                    .extension()
                    .is_some_and(|x| x == "seg")
            })
            .count();
        assert_eq!(n, log.segment_count());
    });
}

#[test]
fn erase_overwrites_bytes_and_readers_keep_maps() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().to_path_buf();
    run(async move {
        let log = Log::open(&p, small_cfg(1024)).await.unwrap();
        log.append("s", b"", b"TOP-SECRET-PAYLOAD").await.unwrap();
        for i in 2..=30u64 {
            log.append("s", b"", &payload(i, 50)).await.unwrap();
        }
        // A reader holds a slice of the first segment while it is purged.
        let held = log.get(2).unwrap();
        assert!(log.delete(1, true).await.unwrap());
        let all: Vec<u8> = std::fs::read_dir(&p)
            .unwrap()
            .flat_map(|e| std::fs::read(e.unwrap().path()).unwrap())
            .collect();
        assert!(!all.windows(18).any(|w| w == b"TOP-SECRET-PAYLOAD"));
        log.purge(broker_edge_storage::Purge {
            up_to: Some(20),
            ..Default::default()
        })
        .await
        .unwrap();
        // The mapping stays valid for the holder even though the segment
        // was dropped; its file goes when the last slice does.
        assert_eq!(&held.payload[..], &payload(2, 50)[..]);
        // Retired at once (renamed out of the log), unlinked only later.
        assert!(!p.join("00000000000000000001-0000.seg").exists());
        let first_seg = p.join("00000000000000000001-0000.seg.del");
        assert!(first_seg.exists());
        drop(held);
        assert!(!first_seg.exists());
    });
}

#[test]
fn purge_races_with_inflight_appends() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().to_path_buf();
    run(async move {
        let log = Log::open(&p, small_cfg(4096)).await.unwrap();
        let mut hs = Vec::new();
        for t in 0..4u64 {
            let log = log.clone();
            hs.push(glommio::spawn_local(async move {
                for i in 0..30u64 {
                    log.append("r", b"", &payload(t * 100 + i, 40))
                        .await
                        .unwrap();
                }
            }));
        }
        glommio::yield_if_needed().await;
        glommio::timer::sleep(std::time::Duration::from_millis(2)).await;
        log.purge(Purge {
            up_to: Some(10_000),
            ..Default::default()
        })
        .await
        .unwrap();
        for h in hs {
            h.await;
        }
        let st = log.state(false);
        assert!(st.first_seq >= 10_000, "{st:?}");
        assert_eq!(st.msgs, st.last_seq + 1 - st.first_seq);
        let (s, _) = log.append("r", b"", b"x").await.unwrap();
        assert_eq!(s, st.last_seq + 1);
        drop(log);
        let log = Log::open(&p, small_cfg(4096)).await.unwrap();
        let st2 = log.state(false);
        assert_eq!((st2.first_seq, st2.last_seq), (st.first_seq, s));
    });
}

#[test]
fn compaction_rewrites_sparse_segments() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().to_path_buf();
    run(async move {
        let mut cfg = small_cfg(2048);
        cfg.durability = broker_edge_storage::Durability::Never;
        let log = Log::open(&p, cfg.clone()).await.unwrap();
        for i in 1..=200u64 {
            log.append(&format!("c.{}", i % 4), b"", &payload(i, 60))
                .await
                .unwrap();
        }
        // Keep only every tenth message.
        for i in 1..=200u64 {
            if i % 10 != 0 {
                log.delete(i, false).await.unwrap();
            }
        }
        let before = log.state(true);
        let n = log.compact().await.unwrap();
        assert!(n > 0, "nothing compacted");
        assert_eq!(log.state(true), before);
        let gens = std::fs::read_dir(&p)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .contains("-0001.seg")
            })
            .count();
        assert!(gens > 0);
        for i in (10..=200u64).step_by(10) {
            assert_eq!(&log.get(i).unwrap().payload[..], &payload(i, 60)[..]);
        }
        log.close().await.unwrap();
        drop(log);
        let log = Log::open(&p, cfg).await.unwrap();
        assert_eq!(log.state(true), before);
        for i in (10..=200u64).step_by(10) {
            assert_eq!(&log.get(i).unwrap().payload[..], &payload(i, 60)[..]);
        }
        let f = Filter::one("c.2");
        assert_eq!(log.first_for(&f).unwrap().unwrap().seq, 10);
    });
}

#[test]
fn huge_tombstone_batch_gets_room() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().to_path_buf();
    run(async move {
        let mut cfg = small_cfg(4096);
        cfg.durability = broker_edge_storage::Durability::Never;
        let log = Log::open(&p, cfg.clone()).await.unwrap();
        for i in 1..=3000u64 {
            let s = if i % 2 == 0 { "even" } else { "odd" };
            log.append(s, b"", &payload(i, 8)).await.unwrap();
        }
        // 1500 tombstones = 12 KB of payload: more than a segment holds.
        let n = log
            .purge(Purge {
                subject: Some("even".into()),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(n, 1500);
        let before = log.state(false);
        log.close().await.unwrap();
        drop(log);
        let log = Log::open(&p, cfg).await.unwrap();
        assert_eq!(log.state(false), before);
        assert!(log.first_for(&Filter::one("even")).unwrap().is_none());
        assert_eq!(
            log.last_for(&Filter::one("odd")).unwrap().unwrap().seq,
            2999
        );
    });
}

#[test]
fn count_from_matches_scan() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().to_path_buf();
    run(async move {
        let mut cfg = small_cfg(2048);
        cfg.durability = broker_edge_storage::Durability::Never;
        let log = Log::open(&p, cfg).await.unwrap();
        for i in 1..=300u64 {
            log.append(&format!("n.{}.{}", i % 3, i % 2), b"", &payload(i, 20))
                .await
                .unwrap();
        }
        for i in (5..300u64).step_by(7) {
            log.delete(i, false).await.unwrap();
        }
        for f in ["n.>", "n.1.*", "n.*.0", "n.2.1", "x"] {
            let filter = Filter::one(f);
            for from in [0u64, 1, 50, 151, 299, 400] {
                let want = log.scan(Start::Seq(from), filter.clone()).count() as u64;
                assert_eq!(log.count_from(from, &filter), want, "{f} from {from}");
            }
        }
        let all = Filter::all();
        assert_eq!(
            log.count_from(100, &all),
            log.scan(Start::Seq(100), all).count() as u64
        );
    });
}

#[test]
fn expected_last_sequence_is_atomic() {
    use broker_edge_storage::Expect;
    use bytes::Bytes;
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().to_path_buf();
    run(async move {
        let log = Log::open(&p, small_cfg(1 << 20)).await.unwrap();
        let kv = |s: &'static str| Bytes::from_static(s.as_bytes());
        let put = |log: &Log, key: &'static str, rev: u64| {
            let log = log.clone();
            async move {
                log.append_expect(
                    kv(key),
                    Bytes::new(),
                    kv("v"),
                    Expect {
                        last_subject_seq: Some(rev),
                        ..Default::default()
                    },
                )
                .await
            }
        };
        // Create-only: subject must be empty.
        assert_eq!(put(&log, "kv.a", 0).await.unwrap().0, 1);
        assert!(matches!(
            put(&log, "kv.a", 0).await,
            Err(Error::WrongLastSubjectSequence { actual: 1 })
        ));
        // Two concurrent updates from revision 1: exactly one wins.
        let (a, b) = futures_lite::future::zip(put(&log, "kv.a", 1), put(&log, "kv.a", 1)).await;
        assert!(a.is_ok() ^ b.is_ok(), "{a:?} {b:?}");
        // Expected last sequence of the whole log.
        let last = log.state(false).last_seq;
        let r = log
            .append_expect(
                kv("x"),
                Bytes::new(),
                kv("1"),
                Expect {
                    last_seq: Some(last),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(r.0, last + 1);
        assert!(matches!(
            log.append_expect(
                kv("x"),
                Bytes::new(),
                kv("2"),
                Expect {
                    last_seq: Some(last),
                    ..Default::default()
                }
            )
            .await,
            Err(Error::WrongLastSequence { .. })
        ));
    });
}

#[test]
fn purge_up_to_u64_max_purges_everything() {
    // Issue 18 item 20: the floor of `up_to = u64::MAX` overflowed the
    // next sequence once the log continued from it.
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().to_path_buf();
    run(async move {
        let log = Log::open(&p, small_cfg(1024)).await.unwrap();
        for i in 1..=30u64 {
            log.append("m", b"", &payload(i, 20)).await.unwrap();
        }
        let n = log
            .purge(Purge {
                up_to: Some(u64::MAX),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(n, 30);
        let st = log.state(true);
        assert_eq!((st.msgs, st.bytes, st.num_subjects), (0, 0, 0));
        assert!(log.get(30).is_err());
        assert!(log.scan(Start::Seq(0), Filter::all()).next().is_none());
        let (seq, _) = log.append("m", b"", b"after").await.unwrap();
        assert!(seq > 30 && seq < u64::MAX, "{seq}");
        assert_eq!(&log.get(seq).unwrap().payload[..], b"after");
        log.close().await.unwrap();
        drop(log);
        let log = Log::open(&p, small_cfg(1024)).await.unwrap();
        let st = log.state(false);
        assert_eq!((st.msgs, st.first_seq, st.last_seq), (1, seq, seq));
        let (next, _) = log.append("m", b"", b"again").await.unwrap();
        assert_eq!(next, seq + 1);
        // A second purge of everything is as good as the first.
        let n = log
            .purge(Purge {
                up_to: Some(u64::MAX),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(n, 2);
        assert_eq!(log.state(false).msgs, 0);
    });
}

#[test]
fn kv_history_one_keeps_each_subject_exact() {
    // A KV bucket of history 1: every put evicts the key's previous value.
    // The subject's first/last must stay exact (no stale end to walk to).
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().to_path_buf();
    run(async move {
        let mut cfg = small_cfg(1 << 20);
        cfg.limits.max_msgs_per_subject = Some(1);
        let log = Log::open(&p, cfg).await.unwrap();
        let mut last = std::collections::HashMap::new();
        for i in 0..2000u64 {
            let key = format!("$KV.b.k{}", (i * 7919) % 50);
            let (seq, _) = log.append(&key, b"", &payload(i, 16)).await.unwrap();
            last.insert(key, (seq, i));
        }
        let st = log.state(false);
        assert_eq!(st.msgs, 50);
        assert_eq!(st.num_subjects, 50);
        for (key, (seq, i)) in &last {
            let f = Filter::one(key);
            let l = log.last_for(&f).unwrap().expect("key has its value");
            let first = log.first_for(&f).unwrap().expect("key has its value");
            assert_eq!((l.seq, first.seq), (*seq, *seq), "{key}");
            assert_eq!(&l.payload[..], &payload(*i, 16)[..]);
            assert_eq!(log.count_from(1, &f), 1, "{key}");
        }
        // Deleting the only value of a key leaves nothing for it.
        let (key, (seq, _)) = last.iter().next().unwrap();
        assert!(log.delete(*seq, false).await.unwrap());
        assert!(log.last_for(&Filter::one(key)).unwrap().is_none());
    });
}

/// `removals_since` reports every removal (delete, per-subject limit,
/// purge) with its subject, and says when it no longer remembers them all.
#[test]
fn removals_are_reported_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().to_path_buf();
    run(async move {
        let mut cfg = small_cfg(1 << 20);
        cfg.limits = Limits {
            max_msgs_per_subject: Some(1),
            ..Limits::default()
        };
        let log = Log::open(&p, cfg).await.unwrap();
        let mark = log.removal_mark();
        log.append("k.a", b"", b"1").await.unwrap(); // 1
        log.append("k.b", b"", b"2").await.unwrap(); // 2
        log.append("k.a", b"", b"3").await.unwrap(); // 3 replaces 1
        assert!(log.delete(2, false).await.unwrap());
        let mut seen = Vec::new();
        let mark2 = log
            .removals_since(mark, |q, s| seen.push((q, s.map(|s| s.to_vec()))))
            .unwrap();
        assert_eq!(
            seen,
            vec![(1, Some(b"k.a".to_vec())), (2, Some(b"k.b".to_vec()))]
        );
        assert_eq!(mark2, mark + 2);
        let (last, msgs) = log.last_and_count();
        assert_eq!(last - msgs, 2, "one per removal");
        // Nothing new since mark2.
        let mut n = 0;
        assert_eq!(log.removals_since(mark2, |_, _| n += 1), Some(mark2));
        assert_eq!(n, 0);
        // More removals than remembered: the old mark is refused.
        for i in 0..5000u64 {
            log.append(&format!("x.{i}"), b"", b"v").await.unwrap();
        }
        log.purge(Purge {
            subject: None,
            up_to: None,
            keep: None,
        })
        .await
        .unwrap();
        assert!(log.removals_since(mark2, |_, _| {}).is_none());
        assert!(log.removals_since(log.removal_mark(), |_, _| {}).is_some());
    });
}
