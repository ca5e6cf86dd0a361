//! Model-based property test: random appends, deletes, purges, limit
//! changes, compactions and restarts, checked after every step against a
//! plain in-memory model.

mod common;

use std::collections::BTreeMap;

use broker_edge_storage::{Discard, Filter, Limits, Log, LogConfig, Purge, Start};
use common::run;
use proptest::prelude::*;

const SUBJECTS: [&str; 4] = ["a.x", "a.y", "b.x", "c"];

#[derive(Debug, Clone)]
enum Op {
    Append(usize, usize),
    Delete(usize, bool),
    PurgeAll,
    PurgeSubject(usize, Option<u64>),
    PurgeUpTo(u64),
    PurgeKeep(u64),
    Limits(Option<u64>, Option<u64>, bool),
    Compact,
    Restart,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        10 => (0..4usize, 0..120usize).prop_map(|(s, l)| Op::Append(s, l)),
        3 => (any::<usize>(), any::<bool>()).prop_map(|(i, e)| Op::Delete(i, e)),
        1 => Just(Op::PurgeAll),
        1 => (0..4usize, proptest::option::of(0..3u64)).prop_map(|(s, k)| Op::PurgeSubject(s, k)),
        1 => (0..8u64).prop_map(Op::PurgeUpTo),
        1 => (0..6u64).prop_map(Op::PurgeKeep),
        1 => (proptest::option::of(1..12u64), proptest::option::of(1..4u64), any::<bool>())
            .prop_map(|(m, p, n)| Op::Limits(m, p, n)),
        1 => Just(Op::Compact),
        2 => Just(Op::Restart),
    ]
}

#[derive(Default)]
struct Model {
    msgs: BTreeMap<u64, (usize, Vec<u8>)>,
    next: u64,
    limits: Limits,
}

impl Model {
    fn remove_oldest_of(&mut self, s: usize) {
        if let Some(k) = self.msgs.iter().find(|(_, v)| v.0 == s).map(|(k, _)| *k) {
            self.msgs.remove(&k);
        }
    }
    fn count(&self, s: usize) -> u64 {
        self.msgs.values().filter(|v| v.0 == s).count() as u64
    }
    fn enforce_subject(&mut self, s: usize) {
        if let Some(m) = self.limits.max_msgs_per_subject {
            while self.count(s) > m {
                self.remove_oldest_of(s);
            }
        }
    }
    fn enforce_global(&mut self) {
        if self.limits.discard == Discard::Old {
            if let Some(m) = self.limits.max_msgs {
                while self.msgs.len() as u64 > m {
                    self.msgs.pop_first();
                }
            }
        }
    }
    fn first(&self) -> u64 {
        self.msgs.keys().next().copied().unwrap_or(self.next)
    }
}

fn cfg(limits: &Limits, direct: bool) -> LogConfig {
    common::model_cfg(600, limits, direct)
}

async fn check(log: &Log, m: &Model) {
    let st = log.state(true);
    assert_eq!(st.msgs, m.msgs.len() as u64, "msgs");
    assert_eq!(st.last_seq, m.next - 1, "last_seq");
    assert_eq!(st.first_seq, m.first(), "first_seq");
    let deleted: Vec<u64> = (st.first_seq..=st.last_seq)
        .filter(|s| !m.msgs.contains_key(s))
        .collect();
    assert_eq!(st.deleted.as_ref(), Some(&deleted), "deleted list");
    let got: Vec<(u64, Vec<u8>, Vec<u8>)> = log
        .scan(Start::Seq(0), Filter::all())
        .map(|r| {
            let r = r.unwrap();
            (r.seq, r.subject.to_vec(), r.payload.to_vec())
        })
        .collect();
    let want: Vec<(u64, Vec<u8>, Vec<u8>)> = m
        .msgs
        .iter()
        .map(|(k, (s, p))| (*k, SUBJECTS[*s].as_bytes().to_vec(), p.clone()))
        .collect();
    assert_eq!(got, want, "content");
    for (i, s) in SUBJECTS.iter().enumerate() {
        let f = Filter::one(s);
        let first = m.msgs.iter().find(|v| v.1 .0 == i).map(|v| *v.0);
        let last = m.msgs.iter().rev().find(|v| v.1 .0 == i).map(|v| *v.0);
        assert_eq!(
            log.first_for(&f).unwrap().map(|x| x.seq),
            first,
            "first {s}"
        );
        assert_eq!(log.last_for(&f).unwrap().map(|x| x.seq), last, "last {s}");
        // Pending counts from every position (both walking directions).
        for from in st.first_seq.saturating_sub(1)..=st.last_seq + 1 {
            let want = m.msgs.range(from..).filter(|v| v.1 .0 == i).count() as u64;
            assert_eq!(log.count_from(from, &f), want, "count_from({from}) {s}");
        }
    }
    let wf = Filter::one("a.*");
    let wfirst = m.msgs.iter().find(|v| v.1 .0 < 2).map(|v| *v.0);
    assert_eq!(
        log.first_for(&wf).unwrap().map(|x| x.seq),
        wfirst,
        "first a.*"
    );
    assert_eq!(
        st.num_subjects,
        (0..4).filter(|s| m.count(*s) > 0).count() as u64
    );
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
        let trace = std::env::var("MODEL_TRACE").is_ok();
        for (step, op) in ops.into_iter().enumerate() {
            if trace {
                eprintln!("step {step}: {op:?}");
            }
            match op {
                Op::Append(s, len) => {
                    let body: Vec<u8> = (0..len).map(|i| (i + step) as u8).collect();
                    let full = m.limits.discard == Discard::New
                        && m.limits.max_msgs.is_some_and(|x| m.msgs.len() as u64 >= x);
                    let r = log.append(SUBJECTS[s], b"", &body).await;
                    if full {
                        assert!(r.is_err(), "discard new must refuse");
                    } else {
                        let (seq, _) = r.unwrap();
                        assert_eq!(seq, m.next);
                        m.msgs.insert(seq, (s, body));
                        m.next += 1;
                        m.enforce_subject(s);
                        m.enforce_global();
                    }
                }
                Op::Delete(i, erase) => {
                    if m.msgs.is_empty() {
                        assert!(!log.delete(m.next + 3, erase).await.unwrap());
                    } else {
                        let k = *m.msgs.keys().nth(i % m.msgs.len()).unwrap();
                        assert!(log.delete(k, erase).await.unwrap());
                        m.msgs.remove(&k);
                    }
                }
                Op::PurgeAll => {
                    log.purge(Purge::default()).await.unwrap();
                    m.msgs.clear();
                }
                Op::PurgeSubject(s, keep) => {
                    let n = log
                        .purge(Purge {
                            subject: Some(SUBJECTS[s].into()),
                            keep,
                            ..Default::default()
                        })
                        .await
                        .unwrap();
                    let mine: Vec<u64> = m
                        .msgs
                        .iter()
                        .filter(|v| v.1 .0 == s)
                        .map(|v| *v.0)
                        .collect();
                    let k = keep.unwrap_or(0) as usize;
                    let cut = mine.len().saturating_sub(k);
                    for x in &mine[..cut] {
                        m.msgs.remove(x);
                    }
                    assert_eq!(n, cut as u64);
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
                Op::PurgeKeep(k) => {
                    log.purge(Purge {
                        keep: Some(k),
                        ..Default::default()
                    })
                    .await
                    .unwrap();
                    while m.msgs.len() as u64 > k {
                        m.msgs.pop_first();
                    }
                }
                Op::Limits(max, per, new) => {
                    m.limits = Limits {
                        max_msgs: max,
                        max_msgs_per_subject: per,
                        discard: if new { Discard::New } else { Discard::Old },
                        ..Default::default()
                    };
                    log.set_limits(m.limits.clone()).await.unwrap();
                    for s in 0..4 {
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
            check(&log, &m).await;
        }
        log.close().await.unwrap();
    });
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]
    #[test]
    fn log_matches_model(ops in proptest::collection::vec(op(), 1..60), direct in any::<bool>()) {
        run_case(ops, direct);
    }
}
