//! `--compare`: the same scenario against server A and server B in turn
//! (A B A B …), with B/A ratios per round and their median. Alternating
//! spreads slow drift of the box (thermal, other builds) over both sides.

use crate::runner::{RunConfig, Scenario, Target};
use crate::stats::{median, print_rows, print_table, ratio, RunResult};
use anyhow::{Context, Result};
use serde::Serialize;
use std::time::Duration;

/// Every ratio is B divided by A.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Ratios {
    pub msgs_per_s: Option<f64>,
    pub deliveries_per_s: Option<f64>,
    pub server_us_per_msg: Option<f64>,
    pub gen_us_per_msg: Option<f64>,
    pub p50_us: Option<f64>,
    pub p99_us: Option<f64>,
}

impl Ratios {
    /// B/A for a round; nothing at all when either side lost messages or
    /// hit an error, since a rate over a broken run compares nothing.
    pub fn of(a: &RunResult, b: &RunResult) -> Ratios {
        if !clean(a) || !clean(b) {
            return Ratios::default();
        }
        let lat = |r: &RunResult, f: fn(&crate::stats::Latency) -> f64| r.latency.as_ref().map(f);
        Ratios {
            msgs_per_s: ratio(Some(b.msgs_per_s), Some(a.msgs_per_s)),
            deliveries_per_s: ratio(Some(b.deliveries_per_s), Some(a.deliveries_per_s)),
            server_us_per_msg: ratio(b.server_us_per_msg, a.server_us_per_msg),
            gen_us_per_msg: ratio(Some(b.gen_us_per_msg), Some(a.gen_us_per_msg)),
            p50_us: ratio(lat(b, |l| l.p50_us), lat(a, |l| l.p50_us)),
            p99_us: ratio(lat(b, |l| l.p99_us), lat(a, |l| l.p99_us)),
        }
    }

    pub fn median_of(all: &[Ratios]) -> Ratios {
        let m = |f: fn(&Ratios) -> Option<f64>| median(&all.iter().map(f).collect::<Vec<_>>());
        Ratios {
            msgs_per_s: m(|r| r.msgs_per_s),
            deliveries_per_s: m(|r| r.deliveries_per_s),
            server_us_per_msg: m(|r| r.server_us_per_msg),
            gen_us_per_msg: m(|r| r.gen_us_per_msg),
            p50_us: m(|r| r.p50_us),
            p99_us: m(|r| r.p99_us),
        }
    }
}

/// A run that delivered everything it should and hit no error.
pub fn clean(r: &RunResult) -> bool {
    r.lost == 0 && r.errors.is_empty()
}

#[derive(Debug, Clone, Serialize)]
pub struct Round {
    pub round: usize,
    /// False when a side lost messages or failed: its ratios are left out.
    pub valid: bool,
    pub a: RunResult,
    pub b: RunResult,
    pub ratios: Ratios,
}

#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    pub scenario: String,
    pub a_url: String,
    pub b_url: String,
    pub ratio_direction: &'static str,
    pub rounds: Vec<Round>,
    pub median: Ratios,
}

pub fn run(
    cfg: &RunConfig,
    a: &Target,
    b: &Target,
    rounds: usize,
    warmup: bool,
) -> Result<Comparison> {
    // `sub` waits on an outside publisher, so it has nothing to warm up with.
    if warmup && cfg.scenario != Scenario::Sub {
        // A short unrecorded run per side, so neither pays for first-touch
        // costs (buffer growth, page faults, lazy init) in a recorded round.
        let mut w = cfg.clone();
        w.msgs = Some((cfg.msgs.unwrap_or(100_000) / 10).max(1000));
        w.duration = cfg
            .duration
            .map(|d| (d / 10).max(Duration::from_millis(200)));
        w.progress = false;
        for t in [a, b] {
            let mut t = t.clone();
            t.label = format!("{}-warmup", t.label);
            crate::run_once(&w, &t).with_context(|| format!("warm-up run against {}", t.url))?;
        }
    }
    let mut out = Vec::new();
    for round in 1..=rounds.max(1) {
        let mut ta = a.clone();
        ta.label = format!("A{round}");
        let ra =
            crate::run_once(cfg, &ta).with_context(|| format!("round {round}, A ({})", a.url))?;
        // A short pause so one side's tail does not land in the other's CPU sample.
        std::thread::sleep(Duration::from_millis(300));
        let mut tb = b.clone();
        tb.label = format!("B{round}");
        let rb =
            crate::run_once(cfg, &tb).with_context(|| format!("round {round}, B ({})", b.url))?;
        std::thread::sleep(Duration::from_millis(300));
        let ratios = Ratios::of(&ra, &rb);
        out.push(Round {
            round,
            valid: clean(&ra) && clean(&rb),
            a: ra,
            b: rb,
            ratios,
        });
    }
    let median = Ratios::median_of(&out.iter().map(|r| r.ratios.clone()).collect::<Vec<_>>());
    Ok(Comparison {
        scenario: cfg.scenario.name().into(),
        a_url: a.url.to_string(),
        b_url: b.url.to_string(),
        ratio_direction: "B/A",
        rounds: out,
        median,
    })
}

fn cell(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.3}"))
}

pub fn print(c: &Comparison) {
    let runs: Vec<RunResult> = c
        .rounds
        .iter()
        .flat_map(|r| [r.a.clone(), r.b.clone()])
        .collect();
    print_table(&runs);
    println!();
    println!("Ratios are B/A, A = {}, B = {}.", c.a_url, c.b_url);
    println!(
        "msgs/s > 1: B is faster; srv µs/msg < 1: B spends less server CPU per message; p50/p99 < 1: B answers sooner."
    );
    let latency = c.rounds.iter().any(|r| r.a.latency.is_some());
    let mut head = vec![
        "round",
        "B/A msgs/s",
        "B/A deliv/s",
        "B/A srv µs/msg",
        "B/A gen µs/msg",
    ];
    if latency {
        head.extend(["B/A p50", "B/A p99"]);
    }
    let mut rows: Vec<Vec<String>> = vec![head.iter().map(|s| s.to_string()).collect()];
    let line = |name: String, r: &Ratios| {
        let mut row = vec![
            name,
            cell(r.msgs_per_s),
            cell(r.deliveries_per_s),
            cell(r.server_us_per_msg),
            cell(r.gen_us_per_msg),
        ];
        if latency {
            row.extend([cell(r.p50_us), cell(r.p99_us)]);
        }
        row
    };
    for r in &c.rounds {
        let name = if r.valid {
            r.round.to_string()
        } else {
            format!("{} (loss/error: excluded)", r.round)
        };
        rows.push(line(name, &r.ratios));
    }
    rows.push(line("median".into(), &c.median));
    print_rows(&rows);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::{Latency, Raw};

    fn result(rate_s: f64, cpu: Option<f64>, p50: Option<f64>) -> RunResult {
        RunResult::from_raw(Raw {
            label: "x".into(),
            scenario: "pubsub".into(),
            url: "nats://127.0.0.1:1".into(),
            server_pid: None,
            size: 16,
            pubs: 1,
            subs: 1,
            sent: 1000,
            received: 1000,
            expected: 1000,
            elapsed_s: 1000.0 / rate_s,
            server_cpu_s: cpu,
            gen_cpu_s: 0.001,
            other_cpu_s: None,
            server_rss_mib: None,
            server_peak_rss_mib: None,
            latency: p50.map(|p| Latency {
                count: 1000,
                min_us: 1.0,
                p50_us: p,
                p90_us: p,
                p99_us: 2.0 * p,
                p999_us: 3.0 * p,
                max_us: 4.0 * p,
                mean_us: p,
            }),
            errors: vec![],
        })
    }

    #[test]
    fn ratios_are_b_over_a() {
        let a = result(1000.0, Some(0.002), Some(100.0));
        let b = result(1500.0, Some(0.001), Some(50.0));
        let r = Ratios::of(&a, &b);
        assert!((r.msgs_per_s.unwrap() - 1.5).abs() < 1e-9);
        assert!((r.server_us_per_msg.unwrap() - 0.5).abs() < 1e-9);
        assert!((r.p50_us.unwrap() - 0.5).abs() < 1e-9);
        assert!((r.p99_us.unwrap() - 0.5).abs() < 1e-9);
        assert!((r.gen_us_per_msg.unwrap() - 1.0).abs() < 1e-9);
    }

    #[test]
    fn lossy_round_has_no_ratios() {
        let a = result(1000.0, Some(0.002), None);
        let mut b = result(1500.0, Some(0.001), None);
        b.lost = 10;
        assert_eq!(Ratios::of(&a, &b), Ratios::default());
        let mut b = result(1500.0, Some(0.001), None);
        b.errors.push("sub-0: -ERR 'Slow Consumer'".into());
        assert_eq!(Ratios::of(&b, &a), Ratios::default());
        let med = Ratios::median_of(&[Ratios::default(), Ratios::of(&a, &a)]);
        assert_eq!(med.msgs_per_s, Some(1.0));
    }

    #[test]
    fn missing_cpu_gives_no_ratio() {
        let a = result(1000.0, None, None);
        let b = result(1000.0, Some(0.001), None);
        let r = Ratios::of(&a, &b);
        assert_eq!(r.server_us_per_msg, None);
        assert_eq!(r.p50_us, None);
    }

    #[test]
    fn median_of_rounds() {
        let mk = |m| Ratios {
            msgs_per_s: Some(m),
            server_us_per_msg: None,
            ..Default::default()
        };
        let med = Ratios::median_of(&[mk(1.2), mk(2.0), mk(1.5)]);
        assert_eq!(med.msgs_per_s, Some(1.5));
        assert_eq!(med.server_us_per_msg, None);
        let med = Ratios::median_of(&[mk(1.0), mk(2.0)]);
        assert_eq!(med.msgs_per_s, Some(1.5));
    }
}
