//! Results of one run, the summary table, and the ratio/median math used
//! by `--compare`.

use crate::units::{human, size_label};
use hdrhistogram::Histogram;
use serde::Serialize;

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Latency {
    pub count: u64,
    pub min_us: f64,
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub max_us: f64,
    pub mean_us: f64,
}

impl Latency {
    /// From a histogram recorded in nanoseconds.
    pub fn from_ns(h: &Histogram<u64>) -> Latency {
        let us = |v: u64| v as f64 / 1e3;
        Latency {
            count: h.len(),
            min_us: us(h.min()),
            p50_us: us(h.value_at_quantile(0.50)),
            p90_us: us(h.value_at_quantile(0.90)),
            p99_us: us(h.value_at_quantile(0.99)),
            p999_us: us(h.value_at_quantile(0.999)),
            max_us: us(h.max()),
            mean_us: h.mean() / 1e3,
        }
    }
}

/// Everything measured in one run against one server.
#[derive(Debug, Clone, Serialize)]
pub struct RunResult {
    pub label: String,
    pub scenario: String,
    pub url: String,
    pub server_pid: Option<u32>,
    pub size: usize,
    pub pubs: usize,
    pub subs: usize,
    /// Messages published (requests, for reqrep).
    pub sent: u64,
    /// Messages delivered to subscribers, all of them counted.
    pub received: u64,
    /// Deliveries that should have happened.
    pub expected: u64,
    pub lost: u64,
    pub elapsed_s: f64,
    /// Published messages per second (received, for `sub`).
    pub msgs_per_s: f64,
    pub deliveries_per_s: f64,
    /// Payload megabytes per second, published side (MB = 10^6 bytes).
    pub mb_per_s: f64,
    pub server_cpu_s: Option<f64>,
    /// Server CPU per published message.
    pub server_us_per_msg: Option<f64>,
    /// Server CPU per delivered message.
    pub server_us_per_delivery: Option<f64>,
    pub gen_cpu_s: f64,
    pub gen_us_per_msg: f64,
    /// CPU used by everything else on the machine during the run.
    pub other_cpu_s: Option<f64>,
    /// Server memory after the run and its peak since it started (MiB).
    pub server_rss_mib: Option<f64>,
    pub server_peak_rss_mib: Option<f64>,
    pub latency: Option<Latency>,
    pub errors: Vec<String>,
    /// With `--sub-url`: each server's share; `server_*` above are their sum.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub servers: Option<SplitServers>,
}

/// Per-server CPU of a run whose publishers and subscribers use different
/// servers (`--sub-url`); "per msg" is per published message.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SplitServers {
    pub pub_url: String,
    pub pub_server_pid: Option<u32>,
    pub pub_server_cpu_s: Option<f64>,
    pub pub_server_us_per_msg: Option<f64>,
    pub pub_server_rss_mib: Option<f64>,
    pub sub_url: String,
    pub sub_server_pid: Option<u32>,
    pub sub_server_cpu_s: Option<f64>,
    pub sub_server_us_per_msg: Option<f64>,
    pub sub_server_rss_mib: Option<f64>,
}

/// The raw counts a scenario hands over; derived rates are computed here.
pub struct Raw {
    pub label: String,
    pub scenario: String,
    pub url: String,
    pub server_pid: Option<u32>,
    pub size: usize,
    pub pubs: usize,
    pub subs: usize,
    pub sent: u64,
    pub received: u64,
    pub expected: u64,
    pub elapsed_s: f64,
    pub server_cpu_s: Option<f64>,
    pub gen_cpu_s: f64,
    pub other_cpu_s: Option<f64>,
    pub server_rss_mib: Option<f64>,
    pub server_peak_rss_mib: Option<f64>,
    pub latency: Option<Latency>,
    pub errors: Vec<String>,
}

impl RunResult {
    pub fn from_raw(r: Raw) -> RunResult {
        let el = if r.elapsed_s > 0.0 {
            r.elapsed_s
        } else {
            f64::NAN
        };
        // `sub` has no publisher of its own: rate what it received.
        let base = if r.pubs == 0 { r.received } else { r.sent };
        let per = |cpu: f64, n: u64| (n > 0).then(|| cpu * 1e6 / n as f64);
        RunResult {
            msgs_per_s: base as f64 / el,
            deliveries_per_s: r.received as f64 / el,
            mb_per_s: base as f64 * r.size as f64 / el / 1e6,
            server_us_per_msg: r.server_cpu_s.and_then(|c| per(c, base)),
            server_us_per_delivery: r.server_cpu_s.and_then(|c| per(c, r.received)),
            gen_us_per_msg: per(r.gen_cpu_s, base).unwrap_or(0.0),
            lost: r.expected.saturating_sub(r.received),
            label: r.label,
            scenario: r.scenario,
            url: r.url,
            server_pid: r.server_pid,
            size: r.size,
            pubs: r.pubs,
            subs: r.subs,
            sent: r.sent,
            received: r.received,
            expected: r.expected,
            elapsed_s: r.elapsed_s,
            server_cpu_s: r.server_cpu_s,
            gen_cpu_s: r.gen_cpu_s,
            other_cpu_s: r.other_cpu_s,
            server_rss_mib: r.server_rss_mib,
            server_peak_rss_mib: r.server_peak_rss_mib,
            latency: r.latency,
            errors: r.errors,
            servers: None,
        }
    }
}

impl RunResult {
    /// Rates over the messages received rather than sent: for JetStream
    /// publishes, "received" counts the messages the server acked as stored.
    pub fn rate_on_received(&mut self) {
        let el = if self.elapsed_s > 0.0 {
            self.elapsed_s
        } else {
            f64::NAN
        };
        let n = self.received;
        let per = |cpu: f64| (n > 0).then(|| cpu * 1e6 / n as f64);
        self.msgs_per_s = n as f64 / el;
        self.mb_per_s = n as f64 * self.size as f64 / el / 1e6;
        self.server_us_per_msg = self.server_cpu_s.and_then(per);
        self.gen_us_per_msg = per(self.gen_cpu_s).unwrap_or(0.0);
    }
}

fn opt(v: Option<f64>) -> String {
    match v {
        Some(v) => format!("{v:.3}"),
        None => "-".into(),
    }
}

/// Prints runs as one aligned table (stdout).
pub fn print_table(runs: &[RunResult]) {
    let latency = runs.iter().any(|r| r.latency.is_some());
    let mut head = vec![
        "run",
        "scenario",
        "size",
        "pubs",
        "subs",
        "sent",
        "recv",
        "lost",
        "secs",
        "msgs/s",
        "deliv/s",
        "MB/s",
        "srv µs/msg",
        "srv µs/dlv",
        "gen µs/msg",
        "other cpu s",
        "srv peak MiB",
    ];
    if latency {
        head.extend(["p50 µs", "p90 µs", "p99 µs", "p999 µs"]);
    }
    let mut rows: Vec<Vec<String>> = vec![head.iter().map(|s| s.to_string()).collect()];
    for r in runs {
        let mut row = vec![
            r.label.clone(),
            r.scenario.clone(),
            size_label(r.size),
            r.pubs.to_string(),
            r.subs.to_string(),
            human(r.sent as f64),
            human(r.received as f64),
            r.lost.to_string(),
            format!("{:.2}", r.elapsed_s),
            human(r.msgs_per_s),
            human(r.deliveries_per_s),
            format!("{:.1}", r.mb_per_s),
            opt(r.server_us_per_msg),
            opt(r.server_us_per_delivery),
            format!("{:.3}", r.gen_us_per_msg),
            r.other_cpu_s.map_or("-".into(), |v| format!("{v:.2}")),
            r.server_peak_rss_mib
                .map_or("-".into(), |v| format!("{v:.0}")),
        ];
        if latency {
            match &r.latency {
                Some(l) => {
                    row.extend([l.p50_us, l.p90_us, l.p99_us, l.p999_us].map(|v| format!("{v:.1}")))
                }
                None => row.extend((0..4).map(|_| "-".to_string())),
            }
        }
        rows.push(row);
    }
    print_rows(&rows);
    for r in runs {
        for e in &r.errors {
            println!("{}: {e}", r.label);
        }
    }
}

/// Left-aligns the first column, right-aligns the rest.
pub fn print_rows(rows: &[Vec<String>]) {
    let cols = rows.iter().map(|r| r.len()).max().unwrap_or(0);
    let width: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for r in rows {
        let mut line = String::new();
        for (c, cell) in r.iter().enumerate() {
            let pad = width[c].saturating_sub(cell.chars().count());
            if c == 0 {
                line.push_str(cell);
                line.push_str(&" ".repeat(pad));
            } else {
                line.push_str("  ");
                line.push_str(&" ".repeat(pad));
                line.push_str(cell);
            }
        }
        println!("{}", line.trim_end());
    }
}

/// `num / den`, or None when either is missing, zero or not finite.
pub fn ratio(num: Option<f64>, den: Option<f64>) -> Option<f64> {
    let (n, d) = (num?, den?);
    let r = n / d;
    (d != 0.0 && r.is_finite()).then_some(r)
}

/// Median of the values present; the mean of the middle two for even counts.
pub fn median(values: &[Option<f64>]) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().flatten().copied().collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    Some(if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw() -> Raw {
        Raw {
            label: "A".into(),
            scenario: "fanout".into(),
            url: "nats://127.0.0.1:4222".into(),
            server_pid: None,
            size: 16,
            pubs: 1,
            subs: 4,
            sent: 1_000_000,
            received: 3_999_000,
            expected: 4_000_000,
            elapsed_s: 2.0,
            server_cpu_s: Some(2.0),
            gen_cpu_s: 1.0,
            other_cpu_s: None,
            server_rss_mib: None,
            server_peak_rss_mib: None,
            latency: None,
            errors: vec![],
        }
    }

    #[test]
    fn derived_rates() {
        let r = RunResult::from_raw(raw());
        assert_eq!(r.msgs_per_s, 500_000.0);
        assert_eq!(r.deliveries_per_s, 1_999_500.0);
        assert_eq!(r.lost, 1000);
        assert_eq!(r.server_us_per_msg, Some(2.0));
        assert!((r.server_us_per_delivery.unwrap() - 0.50012503).abs() < 1e-6);
        assert_eq!(r.gen_us_per_msg, 1.0);
        assert_eq!(r.mb_per_s, 8.0);
    }

    #[test]
    fn sub_only_rates_received() {
        let mut x = raw();
        x.pubs = 0;
        x.sent = 0;
        x.server_cpu_s = None;
        let r = RunResult::from_raw(x);
        assert_eq!(r.msgs_per_s, 1_999_500.0);
        assert_eq!(r.server_us_per_msg, None);
    }

    #[test]
    fn rated_on_received() {
        let mut x = raw();
        x.sent = 1000;
        x.received = 500;
        x.expected = 1000;
        x.elapsed_s = 0.5;
        x.server_cpu_s = Some(0.001);
        x.gen_cpu_s = 0.0005;
        let mut r = RunResult::from_raw(x);
        r.rate_on_received();
        assert_eq!(r.msgs_per_s, 1000.0);
        assert_eq!(r.mb_per_s, 0.016);
        assert_eq!(r.server_us_per_msg, Some(2.0));
        assert_eq!(r.gen_us_per_msg, 1.0);
        assert_eq!(r.lost, 500);
    }

    #[test]
    fn ratios() {
        assert_eq!(ratio(Some(3.0), Some(2.0)), Some(1.5));
        assert_eq!(ratio(Some(3.0), Some(0.0)), None);
        assert_eq!(ratio(None, Some(2.0)), None);
        assert_eq!(ratio(Some(1.0), None), None);
        assert_eq!(ratio(Some(0.0), Some(2.0)), Some(0.0));
    }

    #[test]
    fn medians() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[None, None]), None);
        assert_eq!(median(&[Some(2.0)]), Some(2.0));
        assert_eq!(median(&[Some(3.0), Some(1.0), Some(2.0)]), Some(2.0));
        assert_eq!(
            median(&[Some(4.0), Some(1.0), Some(2.0), Some(3.0)]),
            Some(2.5)
        );
        assert_eq!(median(&[Some(5.0), None, Some(1.0)]), Some(3.0));
    }

    #[test]
    fn latency_from_histogram() {
        let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).unwrap();
        for i in 1..=1000u64 {
            h.record(i * 1000).unwrap();
        }
        let l = Latency::from_ns(&h);
        assert_eq!(l.count, 1000);
        assert!((l.p50_us - 500.0).abs() < 1.0);
        assert!((l.p99_us - 990.0).abs() < 1.0);
        assert!((l.max_us - 1000.0).abs() < 1.0);
    }
}
