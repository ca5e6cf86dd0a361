//! Model-based property test of `Log::append_at` (what a mirror uses):
//! appends at given sequences with gaps short (a skip record) and long (a
//! new segment), refused appends behind the log, deletes, purges, limits,
//! compactions and restarts, checked after every step against a plain
//! in-memory model. Plus crash cases: a log dropped without `close`, and
//! a torn tail after a skip record.

mod common;

use std::collections::BTreeMap;

use broker_edge_storage::{
    Discard, Durability, Error, Filter, Limits, Log, LogConfig, Purge, Start, WriteMode,
};
use bytes::Bytes;
use common::run;
use proptest::prelude::*;

const SUBJECTS: [&str; 3] = ["a.x", "a.y", "b"];
/// Longer than the log's in-segment skip (16 Ki sequences): a new segment.
const LONG: u64 = 16 * 1024 + 7;

#[derive(Debug, Clone)]
enum Op {
    /// Append at the next sequence + gap.
    At(u64, usize, usize),
    /// Append at a sequence already used (refused).
    Behind(u64),
    Delete(usize),
    PurgeAll,
    PurgeUpTo(u64),
    Limits(Option<u64>, Option<u64>),
    Compact,
    Restart,
}

fn gap() -> impl Strategy<Value = u64> {
    prop_oneof![6 => Just(0u64), 3 => 1..4u64, 1 => 4..200u64, 1 => Just(LONG)]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        12 => (gap(), 0..3usize, 0..90usize).prop_map(|(g, s, l)| Op::At(g, s, l)),
        1 => (1..5u64).prop_map(Op::Behind),
        3 => any::<usize>().prop_map(Op::Delete),
        1 => Just(Op::PurgeAll),
        1 => (0..6u64).prop_map(Op::PurgeUpTo),
        1 => (proptest::option::of(2..12u64), proptest::option::of(1..4u64))
            .prop_map(|(m, p)| Op::Limits(m, p)),
        1 => Just(Op::Compact),
        3 => Just(Op::Restart),
    ]
}

#[derive(Default)]
struct Model {
    /// seq → (subject, payload, ts)
    msgs: BTreeMap<u64, (usize, Vec<u8>, u64)>,
    next: u64,
    limits: Limits,
}

impl Model {
    fn first(&self) -> u64 {
        self.msgs.keys().next().copied().unwrap_or(self.next)
    }
    /// Per-subject limit on `s`, then the global one (as the log does).
    fn enforce(&mut self, s: usize) {
        self.enforce_subject(s);
        self.enforce_global();
    }
    fn enforce_subject(&mut self, s: usize) {
        if let Some(m) = self.limits.max_msgs_per_subject {
            while self.msgs.values().filter(|v| v.0 == s).count() as u64 > m {
                let k = self.msgs.iter().find(|v| v.1 .0 == s).map(|v| *v.0);
                if let Some(k) = k {
                    self.msgs.remove(&k);
                }
            }
        }
    }
    fn enforce_global(&mut self) {
        if let Some(m) = self.limits.max_msgs {
            while self.msgs.len() as u64 > m {
                self.msgs.pop_first();
            }
        }
    }
}

fn cfg(limits: &Limits, direct: bool) -> LogConfig {
    common::model_cfg(700, limits, direct)
}

fn check(log: &Log, m: &Model) {
    let st = log.state(false);
    assert_eq!(st.msgs, m.msgs.len() as u64, "msgs");
    assert_eq!(st.last_seq, m.next - 1, "last_seq");
    assert_eq!(st.first_seq, m.first(), "first_seq");
    let span = (st.last_seq + 1).saturating_sub(st.first_seq);
    assert_eq!(st.num_deleted, span - st.msgs, "num_deleted");
    let got: Vec<(u64, Vec<u8>, Vec<u8>, u64)> = log
        .scan(Start::Seq(0), Filter::all())
        .map(|r| {
            let r = r.unwrap();
            (r.seq, r.subject.to_vec(), r.payload.to_vec(), r.ts)
        })
        .collect();
    let want: Vec<(u64, Vec<u8>, Vec<u8>, u64)> = m
        .msgs
        .iter()
        .map(|(k, (s, p, ts))| (*k, SUBJECTS[*s].as_bytes().to_vec(), p.clone(), *ts))
        .collect();
    assert_eq!(got, want, "content");
    // Lookups around every stored message and the ends.
    let mut probes: Vec<u64> = vec![0, st.first_seq, m.next, m.next + 1];
    for k in m.msgs.keys() {
        probes.extend([k - 1, *k, k + 1]);
    }
    for (i, s) in SUBJECTS.iter().enumerate() {
        let f = Filter::one(s);
        let last = m.msgs.iter().rev().find(|v| v.1 .0 == i).map(|v| *v.0);
        assert_eq!(log.last_for(&f).unwrap().map(|x| x.seq), last, "last {s}");
        for from in &probes {
            let want = m.msgs.range(from..).filter(|v| v.1 .0 == i).count() as u64;
            assert_eq!(log.count_from(*from, &f), want, "count_from({from}) {s}");
        }
    }
    for p in &probes {
        assert_eq!(log.get(*p).is_ok(), m.msgs.contains_key(p), "get({p})");
    }
}

fn run_case(ops: Vec<Op>, direct: bool) {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().to_path_buf();
    run(async move {
        let mut m = Model {
            next: 1,
            ..Default::default()
        };
        let mut log = Log::open(&p, cfg(&m.limits, direct)).await.unwrap();
        let mut ts = 1_000_000u64;
        for (step, op) in ops.into_iter().enumerate() {
            match op {
                Op::At(gap, s, len) => {
                    let seq = m.next + gap;
                    ts += 1 + (step as u64 % 3) * 1000;
                    let body: Vec<u8> = (0..len).map(|i| (i + step) as u8).collect();
                    let r = log
                        .append_at(
                            seq,
                            ts,
                            Bytes::from_static(SUBJECTS[s].as_bytes()),
                            Bytes::new(),
                            Bytes::from(body.clone()),
                        )
                        .await
                        .unwrap();
                    assert_eq!(r, (seq, ts));
                    m.msgs.insert(seq, (s, body, ts));
                    m.next = seq + 1;
                    m.enforce(s);
                }
                Op::Behind(back) => {
                    let seq = m.next.saturating_sub(back);
                    let r = log
                        .append_at(
                            seq,
                            ts,
                            Bytes::from_static(b"b"),
                            Bytes::new(),
                            Bytes::new(),
                        )
                        .await;
                    match r {
                        Err(Error::SequenceUsed { seq: s, next }) => {
                            assert_eq!((s, next), (seq, m.next));
                        }
                        other => panic!("append behind the log: {other:?}"),
                    }
                }
                Op::Delete(i) => {
                    if !m.msgs.is_empty() {
                        let k = *m.msgs.keys().nth(i % m.msgs.len()).unwrap();
                        assert!(log.delete(k, i % 2 == 0).await.unwrap());
                        m.msgs.remove(&k);
                    }
                }
                Op::PurgeAll => {
                    log.purge(Purge::default()).await.unwrap();
                    m.msgs.clear();
                }
                Op::PurgeUpTo(d) => {
                    let to = m.first() + d;
                    log.purge(Purge {
                        up_to: Some(to),
                        ..Default::default()
                    })
                    .await
                    .unwrap();
                    m.msgs.retain(|k, _| *k >= to);
                    m.next = m.next.max(to);
                }
                Op::Limits(max, per) => {
                    m.limits = Limits {
                        max_msgs: max,
                        max_msgs_per_subject: per,
                        discard: Discard::Old,
                        ..Default::default()
                    };
                    log.set_limits(m.limits.clone()).await.unwrap();
                    for s in 0..SUBJECTS.len() {
                        m.enforce_subject(s);
                    }
                    m.enforce_global();
                }
                Op::Compact => {
                    log.compact().await.unwrap();
                }
                Op::Restart => {
                    log.close().await.unwrap();
                    drop(log);
                    log = Log::open(&p, cfg(&m.limits, direct)).await.unwrap();
                    let r = log.recovery_report();
                    assert!(r.corrupt.is_empty() && r.torn_tail.is_none(), "{r:?}");
                }
            }
            check(&log, &m);
        }
        log.close().await.unwrap();
    });
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]
    #[test]
    fn append_at_matches_model(ops in proptest::collection::vec(op(), 1..50), direct in any::<bool>()) {
        run_case(ops, direct);
    }
}

/// Under `always` an acknowledged `append_at` survives a process that
/// never closed the log, gaps included (short and long).
#[test]
fn gaps_survive_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().to_path_buf();
    run(async move {
        let c = || LogConfig {
            segment_size: 4096,
            durability: Durability::Always,
            ..Default::default()
        };
        let log = Log::open(&p, c()).await.unwrap();
        let b = |s: &'static str| Bytes::from_static(s.as_bytes());
        log.append_at(5, 10, b("a"), b(""), b("five"))
            .await
            .unwrap();
        log.append_at(6, 11, b("a"), b(""), b("six")).await.unwrap();
        log.append_at(9, 12, b("b"), b(""), b("nine"))
            .await
            .unwrap();
        log.append_at(9 + LONG, 13, b("b"), b(""), b("far"))
            .await
            .unwrap();
        // Older than the newest timestamp: raised to it.
        let (seq, ts) = log
            .append_at(20 + LONG, 3, b("c"), b(""), b("late"))
            .await
            .unwrap();
        assert_eq!((seq, ts), (20 + LONG, 13));
        drop(log);
        let log = Log::open(&p, c()).await.unwrap();
        let r = log.recovery_report();
        assert!(r.corrupt.is_empty(), "{r:?}");
        let st = log.state(false);
        assert_eq!((st.first_seq, st.last_seq, st.msgs), (5, 20 + LONG, 5));
        let seqs: Vec<(u64, u64)> = log
            .scan(Start::Seq(0), Filter::all())
            .map(|m| {
                let m = m.unwrap();
                (m.seq, m.ts)
            })
            .collect();
        assert_eq!(
            seqs,
            vec![(5, 10), (6, 11), (9, 12), (9 + LONG, 13), (20 + LONG, 13)]
        );
        // The log goes on after the last sequence, never into a gap.
        assert!(matches!(
            log.append_at(7, 20, b("a"), b(""), b("x")).await,
            Err(Error::SequenceUsed { seq: 7, .. })
        ));
        let (seq, _) = log.append("a", b"", b"next").await.unwrap();
        assert_eq!(seq, 21 + LONG);
        log.close().await.unwrap();
    });
}

/// A message torn after its skip record: the skipped sequences stay used
/// (the log continues at the torn message's sequence), nothing is served
/// from the torn bytes, and the record before is intact.
#[test]
fn torn_message_after_a_skip() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().to_path_buf();
    run(async move {
        let c = || LogConfig {
            segment_size: 1 << 20,
            durability: Durability::Always,
            write_mode: WriteMode::Buffered,
            ..Default::default()
        };
        let log = Log::open(&p, c()).await.unwrap();
        let b = |s: &'static str| Bytes::from_static(s.as_bytes());
        log.append_at(1, 10, b("a"), b(""), b("one")).await.unwrap();
        log.append_at(4, 11, b("a"), b(""), Bytes::from(vec![7u8; 200]))
            .await
            .unwrap();
        log.close().await.unwrap();
        drop(log);
        // Cut the last record (the message after the skip) in half.
        let seg = common::only_segment(&p);
        let f = std::fs::OpenOptions::new().write(true).open(&seg).unwrap();
        let data = std::fs::read(&seg).unwrap();
        let end = data.len() - data.iter().rev().take_while(|b| **b == 0).count();
        f.set_len((end - 100) as u64).unwrap();
        drop(f);
        let log = Log::open(&p, c()).await.unwrap();
        assert!(log.recovery_report().torn_tail.is_some());
        let st = log.state(false);
        assert_eq!((st.msgs, st.last_seq), (1, 3));
        assert_eq!(&log.get(1).unwrap().payload[..], b"one");
        let (seq, _) = log.append("a", b"", b"again").await.unwrap();
        assert_eq!(seq, 4);
    });
}

/// Found by `append_at_matches_model`: the last append before a restart
/// let the message limit stage a purge that `close` did not wait for; the
/// closed instance wrote it later, rolling into a segment file beside the
/// reopened log's, whose next two messages recovery then took for damage.
#[test]
fn a_limit_applied_at_close_is_written_before_close_returns() {
    use Op::*;
    run_case(
        vec![
            At(0, 0, 0),
            Limits(Some(5), None),
            At(0, 0, 0),
            At(16391, 0, 71),
            At(0, 0, 73),
            At(1, 0, 18),
            At(1, 0, 80),
            At(0, 0, 28),
            Restart,
            At(0, 1, 40),
            At(0, 1, 47),
            Restart,
        ],
        true,
    );
}
