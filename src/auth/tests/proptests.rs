//! Permission matching against a brute-force model: filters and subjects
//! over a tiny alphabet, every literal subject enumerated.

use proptest::prelude::*;

use super::super::*;
use crate::options::SubjectPermission;

/// The NATS matching rule, written from its definition on token lists.
fn model_match(f: &[&str], s: &[&str]) -> bool {
    match (f.split_first(), s.split_first()) {
        (None, None) => true,
        (Some((&">", _)), Some(_)) => true,
        (Some((&"*", fr)), Some((_, sr))) => model_match(fr, sr),
        (Some((x, fr)), Some((y, sr))) if x == y => model_match(fr, sr),
        _ => false,
    }
}

fn toks(s: &str) -> Vec<&str> {
    s.split('.').collect()
}

fn any_match(list: &[String], s: &str) -> bool {
    list.iter().any(|f| model_match(&toks(f), &toks(s)))
}

/// Every literal subject of 1..=4 tokens over {a, b, c}.
fn universe() -> Vec<String> {
    let mut out: Vec<String> = vec![String::new()];
    let mut all = Vec::new();
    for _ in 0..4 {
        let mut next = Vec::new();
        for p in &out {
            for t in ["a", "b", "c"] {
                let s = if p.is_empty() {
                    t.to_string()
                } else {
                    format!("{p}.{t}")
                };
                all.push(s.clone());
                next.push(s);
            }
        }
        out = next;
    }
    all
}

fn filter() -> impl Strategy<Value = String> {
    (
        prop::collection::vec(prop::sample::select(vec!["a", "b", "*"]), 1..4),
        any::<bool>(),
    )
        .prop_map(|(mut t, fwc)| {
            if fwc {
                t.push(">");
            }
            t.join(".")
        })
}

fn filters() -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec(filter(), 0..4)
}

fn queue() -> impl Strategy<Value = Option<String>> {
    prop::option::of(prop::sample::select(vec!["q", "r", "*"]).prop_map(str::to_string))
}

fn entries() -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec(
        (filter(), queue()).prop_map(|(f, q)| match q {
            Some(q) => format!("{f} {q}"),
            None => f,
        }),
        0..4,
    )
}

fn split(e: &str) -> (&str, Option<&str>) {
    match e.split_once(' ') {
        Some((s, q)) => (s, Some(q)),
        None => (e, None),
    }
}

/// nats' `canSubscribe`, restated over the model matcher.
fn model_can_subscribe(allow: &[String], deny: &[String], subj: &str, queue: Option<&str>) -> bool {
    let hit = |list: &[String]| {
        let mut plain = false;
        let mut queues = Vec::new();
        for e in list {
            let (s, q) = split(e);
            if model_match(&toks(s), &toks(subj)) {
                match q {
                    None => plain = true,
                    Some(q) => queues.push(q.to_string()),
                }
            }
        }
        (plain, queues)
    };
    // Queue names here are single tokens: "*" covers any queue.
    let qm = |q: &str, qs: &[String]| qs.iter().any(|x| x == q || x == "*");
    let mut ok = true;
    if !allow.is_empty() {
        let (plain, qs) = hit(allow);
        ok = plain;
        if let (Some(q), false) = (queue, qs.is_empty()) {
            ok = qm(q, &qs);
        }
    }
    if ok && !deny.is_empty() {
        let (plain, qs) = hit(deny);
        ok = !plain;
        if let (true, Some(q), false) = (ok, queue, qs.is_empty()) {
            ok = !qm(q, &qs);
        }
    }
    ok
}

fn perm(allow: &[String], deny: &[String]) -> Option<SubjectPermission> {
    Some(SubjectPermission {
        allow: (!allow.is_empty()).then(|| allow.to_vec()),
        deny: deny.to_vec(),
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn publish_matches_model(allow in filters(), deny in filters()) {
        let p = Permissions::from_config(&PermissionsConfig {
            publish: perm(&allow, &deny),
            ..Default::default()
        }).unwrap();
        for s in universe() {
            let want = (allow.is_empty() || any_match(&allow, &s)) && !any_match(&deny, &s);
            prop_assert_eq!(p.can_publish(s.as_bytes()), want, "subject {}", s);
        }
    }

    #[test]
    fn subscribe_matches_model(
        allow in entries(),
        deny in entries(),
        subj in filter(),
        queue in prop::option::of(prop::sample::select(vec!["q", "r", "s"])),
    ) {
        let p = Permissions::from_config(&PermissionsConfig {
            subscribe: perm(&allow, &deny),
            ..Default::default()
        }).unwrap();
        let q = queue.map(str::as_bytes);
        let got = p.can_subscribe(subj.as_bytes(), q);
        prop_assert_eq!(got, model_can_subscribe(&allow, &deny, &subj, queue));
        // When a subscription may see a subject a deny entry covers, the
        // delivery filter must be armed and must drop exactly those.
        if got {
            let plain_deny: Vec<String> =
                deny.iter().filter(|e| !e.contains(' ')).cloned().collect();
            for t in universe().iter().filter(|t| model_match(&toks(&subj), &toks(t))) {
                let denied = any_match(&plain_deny, t);
                if denied {
                    prop_assert!(p.needs_delivery_filter(subj.as_bytes(), q), "{} sees {}", subj, t);
                }
                let queued_deny = queue.is_some_and(|q| {
                    deny.iter().any(|e| {
                        let (s, eq) = split(e);
                        eq.is_some_and(|eq| eq == q || eq == "*")
                            && model_match(&toks(s), &toks(t))
                    })
                });
                prop_assert_eq!(p.delivery_denied(t.as_bytes(), q), denied || queued_deny);
            }
        }
    }
}
