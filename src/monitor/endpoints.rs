//! JSON bodies of the monitoring endpoints.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde_json::{json, Value};

use super::gather::{ConnReport, Query, ShardReport};
use crate::global::{Ctl, Global};
use crate::protocol::info::{NATS_VERSION, PRODUCT_VERSION};

fn rfc3339(t: SystemTime) -> String {
    let dt: chrono::DateTime<chrono::Utc> = t.into();
    dt.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

/// Go-style compact duration as nats-server prints uptimes: `1d2h3m4s`.
pub fn uptime(d: Duration) -> String {
    let mut s = d.as_secs();
    let days = s / 86400;
    s %= 86400;
    let (h, m, sec) = (s / 3600, (s % 3600) / 60, s % 60);
    let mut out = String::new();
    if days > 0 {
        out.push_str(&format!("{days}d"));
    }
    if days > 0 || h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if days > 0 || h > 0 || m > 0 {
        out.push_str(&format!("{m}m"));
    }
    out.push_str(&format!("{sec}s"));
    out
}

fn since(t: SystemTime) -> Duration {
    SystemTime::now().duration_since(t).unwrap_or_default()
}

/// Resident memory and CPU seconds of this process, from /proc.
fn proc_usage() -> (u64, f64) {
    let page = 4096u64;
    let rss = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |p| p * page);
    let cpu = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            let rest = s.rsplit_once(')')?.1;
            let f: Vec<&str> = rest.split_whitespace().collect();
            let ut: f64 = f.get(11)?.parse().ok()?;
            let st: f64 = f.get(12)?.parse().ok()?;
            Some((ut + st) / 100.0)
        })
        .unwrap_or(0.0);
    (rss, cpu)
}

/// CPUs online in the machine (a shard thread's own affinity is one CPU).
fn online_cpus() -> usize {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    n.max(1) as usize
}

pub fn index(g: &Global) -> Value {
    let links = ["varz", "connz", "subsz", "jsz", "healthz"]
        .iter()
        .map(|p| format!("<a href=\"/{p}\">{p}</a><br/>"))
        .collect::<String>();
    Value::String(format!(
        "<html><body><h1>Broker Edge {PRODUCT_VERSION}</h1><p>{}</p>{links}</body></html>",
        g.server_id
    ))
}

pub fn varz(g: &Global) -> Value {
    let o = &g.opts;
    let (mem, cpu_secs) = proc_usage();
    let up = g.start.elapsed();
    let cpu_pct = if up.as_secs_f64() > 0.0 {
        (cpu_secs / up.as_secs_f64() * 1000.0).round() / 10.0
    } else {
        0.0
    };
    let sum = |f: fn(&crate::global::ShardStats) -> u64| g.total(f);
    let http_stats: serde_json::Map<String, Value> = g
        .http_requests
        .lock()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), json!(v))).collect())
        .unwrap_or_default();
    json!({
        "server_id": g.server_id,
        "server_name": g.server_name,
        "version": NATS_VERSION,
        "broker_edge_version": PRODUCT_VERSION,
        "proto": 1,
        "go": "go1.21.0",
        "host": o.host,
        "port": g.client_addr.port(),
        "auth_required": o.username.is_some() || o.auth_token.is_some(),
        "max_connections": o.max_connections,
        "ping_interval": o.ping_interval.as_nanos() as u64,
        "ping_max": o.ping_max,
        "http_host": g.http_addr.map(|a| a.ip().to_string()).unwrap_or_default(),
        "http_port": g.http_addr.map(|a| a.port()).unwrap_or(0),
        "http_base_path": "",
        "https_port": 0,
        "auth_timeout": 2.0,
        "max_control_line": o.max_control_line,
        "max_payload": o.max_payload,
        "max_pending": o.max_pending,
        "cluster": {},
        "gateway": {},
        "leaf": {},
        "mqtt": {},
        "websocket": {},
        "jetstream": {},
        "tls_timeout": 2.0,
        "write_deadline": o.write_deadline.as_nanos() as u64,
        "start": rfc3339(g.start_wall),
        "now": rfc3339(SystemTime::now()),
        "uptime": uptime(up),
        "mem": mem,
        "cores": online_cpus(),
        "gomaxprocs": g.shards,
        "shards": g.shards,
        "cpu": cpu_pct,
        "connections": g.connections(),
        "total_connections": sum(|s| s.total_connections.load(Ordering::Relaxed)),
        "routes": 0,
        "remotes": 0,
        "leafnodes": 0,
        "in_msgs": sum(|s| s.in_msgs.load(Ordering::Relaxed)),
        "out_msgs": sum(|s| s.out_msgs.load(Ordering::Relaxed)),
        "in_bytes": sum(|s| s.in_bytes.load(Ordering::Relaxed)),
        "out_bytes": sum(|s| s.out_bytes.load(Ordering::Relaxed)),
        "slow_consumers": sum(|s| s.slow_consumers.load(Ordering::Relaxed)),
        "accept_errors": g.accept_errors.load(Ordering::Relaxed),
        "subscriptions": g.stats.iter().map(|s| s.subscriptions.load(Ordering::Relaxed)).sum::<usize>(),
        "http_req_stats": http_stats,
        "config_load_time": rfc3339(g.start_wall),
    })
}

async fn gather(g: &Arc<Global>, q: &Query) -> Vec<ShardReport> {
    let mut waits = Vec::new();
    for tx in &g.ctl {
        let (reply, rx) = futures_channel::oneshot::channel();
        if tx.send(Ctl::Gather(q.clone(), reply)).await.is_ok() {
            waits.push(rx);
        }
    }
    let mut out = Vec::new();
    for w in waits {
        if let Ok(r) = w.await {
            out.push(r);
        }
    }
    out
}

/// A boolean query parameter; anything but the forms the reference takes
/// is a bad request.
fn flag(params: &HashMap<String, String>, k: &str) -> Result<bool, String> {
    match params.get(k).map(String::as_str) {
        None | Some("0") | Some("false") => Ok(false),
        Some("1") | Some("true") | Some("detail") | Some("") => Ok(true),
        Some(v) => Err(format!("invalid value {v:?} for {k}")),
    }
}

fn num(params: &HashMap<String, String>, k: &str, default: usize) -> Result<usize, String> {
    match params.get(k) {
        None => Ok(default),
        Some(v) => v
            .parse()
            .map_err(|_| format!("invalid value {v:?} for {k}")),
    }
}

fn conn_json(c: &ConnReport, subs: bool, detail: bool) -> Value {
    let mut v = json!({
        "cid": c.cid,
        "kind": "Client",
        "type": "nats",
        "ip": c.ip,
        "port": c.port,
        "start": rfc3339(c.start),
        "last_activity": rfc3339(c.last_activity),
        "rtt": "0s",
        "uptime": uptime(since(c.start)),
        "idle": uptime(since(c.last_activity)),
        "pending_bytes": c.pending_bytes,
        "in_msgs": c.in_msgs,
        "out_msgs": c.out_msgs,
        "in_bytes": c.in_bytes,
        "out_bytes": c.out_bytes,
        "subscriptions": c.subscriptions,
        "shard": c.shard,
    });
    for (k, val) in [
        ("name", &c.name),
        ("lang", &c.lang),
        ("version", &c.version),
    ] {
        if !val.is_empty() {
            v[k] = json!(val);
        }
    }
    if subs && !c.subs.is_empty() {
        if detail {
            v["subscriptions_list_detail"] = c
                .subs
                .iter()
                .map(|s| json!({"subject": s.subject, "qgroup": s.queue, "sid": s.sid, "msgs": s.msgs, "max": s.max, "cid": s.cid}))
                .collect();
        } else {
            v["subscriptions_list"] = c.subs.iter().map(|s| json!(s.subject)).collect();
        }
    }
    v
}

pub async fn connz(g: &Arc<Global>, params: &HashMap<String, String>) -> Result<Value, String> {
    let subs = flag(params, "subs")?;
    let detail = params.get("subs").is_some_and(|v| v == "detail");
    let offset = num(params, "offset", 0)?;
    let limit = num(params, "limit", 1024)?;
    let cid = match params.get("cid") {
        Some(v) => Some(v.parse::<u64>().map_err(|_| format!("invalid cid {v:?}"))?),
        None => None,
    };
    let q = Query {
        subs_detail: subs,
        cid,
    };
    let mut conns: Vec<ConnReport> = gather(g, &q)
        .await
        .into_iter()
        .flat_map(|r| r.conns)
        .collect();
    let sort = params.get("sort").map(String::as_str).unwrap_or("cid");
    match sort {
        "cid" | "" => conns.sort_by_key(|c| c.cid),
        "start" => conns.sort_by_key(|c| c.start),
        "subs" => conns.sort_by_key(|c| std::cmp::Reverse(c.subscriptions)),
        "pending" => conns.sort_by_key(|c| std::cmp::Reverse(c.pending_bytes)),
        "msgs_to" => conns.sort_by_key(|c| std::cmp::Reverse(c.out_msgs)),
        "msgs_from" => conns.sort_by_key(|c| std::cmp::Reverse(c.in_msgs)),
        "bytes_to" => conns.sort_by_key(|c| std::cmp::Reverse(c.out_bytes)),
        "bytes_from" => conns.sort_by_key(|c| std::cmp::Reverse(c.in_bytes)),
        "last" => conns.sort_by_key(|c| std::cmp::Reverse(c.last_activity)),
        "idle" => conns.sort_by_key(|c| c.last_activity),
        "uptime" => conns.sort_by_key(|c| c.start),
        other => return Err(format!("invalid sorting option: {other}")),
    }
    let total = conns.len();
    let page: Vec<Value> = conns
        .iter()
        .skip(offset)
        .take(limit)
        .map(|c| conn_json(c, subs, detail))
        .collect();
    Ok(json!({
        "server_id": g.server_id,
        "now": rfc3339(SystemTime::now()),
        "num_connections": page.len(),
        "total": total,
        "offset": offset,
        "limit": limit,
        "connections": page,
    }))
}

pub async fn subsz(g: &Arc<Global>, params: &HashMap<String, String>) -> Result<Value, String> {
    let subs = flag(params, "subs")?;
    let offset = num(params, "offset", 0)?;
    let limit = num(params, "limit", 1024)?;
    let test = params.get("test").cloned();
    let reports = gather(
        g,
        &Query {
            subs_detail: subs,
            cid: None,
        },
    )
    .await;
    let mut count = 0;
    let (mut cache, mut inserts, mut removes, mut matches, mut hits) = (0, 0, 0, 0, 0);
    let mut list = Vec::new();
    for r in &reports {
        count += r.sublist.subscriptions;
        cache += r.sublist.cache_entries;
        inserts += r.sublist.inserts;
        removes += r.sublist.removes;
        matches += r.sublist.matches;
        hits += r.sublist.cache_hits;
        list.extend(r.subs.iter().cloned());
    }
    let mut v = json!({
        "server_id": g.server_id,
        "now": rfc3339(SystemTime::now()),
        "num_subscriptions": count,
        "num_cache": cache,
        "num_inserts": inserts,
        "num_removes": removes,
        "num_matches": matches,
        "cache_hit_rate": if matches > 0 { hits as f64 / matches as f64 } else { 0.0 },
        "max_fanout": 0,
        "avg_fanout": 0.0,
    });
    if subs {
        if let Some(t) = &test {
            list.retain(|s| crate::subject::matches(s.subject.as_bytes(), t.as_bytes()));
        }
        list.sort_by(|a, b| (a.cid, &a.sid).cmp(&(b.cid, &b.sid)));
        v["total"] = json!(list.len());
        v["offset"] = json!(offset);
        v["limit"] = json!(limit);
        v["subscriptions_list"] = list
            .iter()
            .skip(offset)
            .take(limit)
            .map(|s| json!({"subject": s.subject, "qgroup": s.queue, "sid": s.sid, "msgs": s.msgs, "max": s.max, "cid": s.cid}))
            .collect();
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uptime_format() {
        assert_eq!(uptime(Duration::from_secs(5)), "5s");
        assert_eq!(uptime(Duration::from_secs(65)), "1m5s");
        assert_eq!(uptime(Duration::from_secs(3600)), "1h0m0s");
        assert_eq!(uptime(Duration::from_secs(90061)), "1d1h1m1s");
    }
}
