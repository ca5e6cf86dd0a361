//! JSON bodies of the monitoring endpoints.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde_json::{json, Value};

use super::closed::{self, ConnState};
use super::gather::{ConnKey, ConnReport, ConnSort, Query, ShardReport};
use crate::global::{Ctl, Global};
use crate::protocol::info::{NATS_VERSION, PRODUCT_VERSION};

pub(super) fn rfc3339(t: SystemTime) -> String {
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

/// From `t` to `stop` (a closed connection), or to now.
fn until(t: SystemTime, stop: Option<SystemTime>) -> Duration {
    match stop {
        Some(s) => s.duration_since(t).unwrap_or_default(),
        None => since(t),
    }
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
pub(crate) fn online_cpus() -> usize {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    n.max(1) as usize
}

/// The page at `/`: a live dashboard (server figures, throughput, streams,
/// consumers' lag) that only talks to this server, so it works offline.
pub fn index(_g: &Global) -> Value {
    Value::String(include_str!("dashboard.html").to_string())
}

/// The port the leaf listener is bound to, once there is one. Until the
/// leaf links are wired nothing is bound: `None` shows the configured
/// fixed port (and no port for `-1`).
fn leaf_listen_port(g: &Global) -> Option<u16> {
    g.leaf_addr.get().map(|a| a.port())
}

/// Leaf links now up (`/varz` `leafnodes`).
fn leaf_connections(g: &Global) -> u64 {
    g.stats
        .iter()
        .map(|s| s.leafs.load(std::sync::atomic::Ordering::Relaxed) as u64)
        .sum()
}

/// `/varz` `leaf` as nats-server 2.15.3's `LeafNodeOptsVarz` (its
/// `omitempty` fields left out when empty): `{}` without `leafnodes { }`.
pub(super) fn leaf_varz(o: &crate::options::Options, bound: Option<u16>) -> Value {
    use crate::options::{LeafUrl, Port, DEFAULT_LEAF_TLS_TIMEOUT};
    let mut v = serde_json::Map::new();
    let Some(l) = &o.leafnodes else {
        return Value::Object(v);
    };
    let tls_timeout = l.tls.as_ref().and_then(|t| t.timeout);
    if let Some(p) = l.port {
        v.insert("host".into(), json!(l.host));
        match (bound, p) {
            (Some(b), _) => v.insert("port".into(), json!(b)),
            (None, Port::Fixed(n)) => v.insert("port".into(), json!(n)),
            (None, Port::Random) => None,
        };
    }
    // The reference's defaults apply with a listener only.
    let tls_secs = tls_timeout
        .or(l.port.map(|_| crate::tls::DEFAULT_TIMEOUT))
        .map(|d| d.as_secs_f64());
    let auth = l.auth.timeout.map(|d| d.as_secs_f64()).or_else(|| {
        l.port.map(|_| match (&l.tls, tls_secs) {
            (Some(_), Some(t)) => t + 1.0,
            _ => 2.0,
        })
    });
    if let Some(a) = auth.filter(|a| *a != 0.0) {
        v.insert("auth_timeout".into(), json!(a));
    }
    if let Some(t) = tls_secs.filter(|t| *t != 0.0) {
        v.insert("tls_timeout".into(), json!(t));
    }
    if let Some(t) = &l.tls {
        v.insert("tls_required".into(), json!(true));
        if t.verify {
            v.insert("tls_verify".into(), json!(true));
        }
    }
    let remotes: Vec<Value> = l
        .remotes
        .iter()
        .map(|r| {
            let mut m = serde_json::Map::new();
            m.insert(
                "local_account".into(),
                json!(r.account.as_deref().unwrap_or("$G")),
            );
            if let Some(t) = &r.tls {
                let t = t.timeout.unwrap_or(DEFAULT_LEAF_TLS_TIMEOUT);
                m.insert("tls_timeout".into(), json!(t.as_secs_f64()));
            }
            let urls: Vec<String> = r
                .urls
                .iter()
                .filter_map(|u| LeafUrl::parse(u).ok())
                .map(|u| u.host_port())
                .collect();
            if !urls.is_empty() {
                m.insert("urls".into(), json!(urls));
            }
            if !r.deny_imports.is_empty() || !r.deny_exports.is_empty() {
                let mut d = serde_json::Map::new();
                if !r.deny_exports.is_empty() {
                    d.insert("exports".into(), json!(r.deny_exports));
                }
                if !r.deny_imports.is_empty() {
                    d.insert("imports".into(), json!(r.deny_imports));
                }
                m.insert("deny".into(), Value::Object(d));
            }
            Value::Object(m)
        })
        .collect();
    if !remotes.is_empty() {
        v.insert("remotes".into(), Value::Array(remotes));
    }
    Value::Object(v)
}

/// Resident memory (bytes) and CPU use (percent of one core, averaged
/// since start, one decimal), as `/varz` `mem` and `cpu`.
pub(crate) fn process_usage(g: &Global) -> (u64, f64) {
    let (mem, cpu_secs) = proc_usage();
    let up = g.start.elapsed();
    let cpu_pct = if up.as_secs_f64() > 0.0 {
        (cpu_secs / up.as_secs_f64() * 1000.0).round() / 10.0
    } else {
        0.0
    };
    (mem, cpu_pct)
}

pub fn varz(g: &Global) -> Value {
    let o = &g.opts;
    let (mem, cpu_pct) = process_usage(g);
    let up = g.start.elapsed();
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
        "leaf": leaf_varz(o, leaf_listen_port(g)),
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
        "leafnodes": leaf_connections(g),
        "in_msgs": sum(|s| s.in_msgs.load(Ordering::Relaxed)),
        "out_msgs": sum(|s| s.out_msgs.load(Ordering::Relaxed)),
        "in_bytes": sum(|s| s.in_bytes.load(Ordering::Relaxed)),
        "out_bytes": sum(|s| s.out_bytes.load(Ordering::Relaxed)),
        "slow_consumers": sum(|s| s.slow_consumers.load(Ordering::Relaxed)),
        "accept_errors": g.accept_errors.load(Ordering::Relaxed),
        // Broker Edge's own settings (`broker_edge { }`); durations in
        // nanoseconds like the reference's.
        "broker_edge": {
            "shards": g.shards,
            "shard_fill": g.opts.shard_fill,
            "pin_shards": g.opts.tuning.pin_shards,
            "read_spin": g.opts.tuning.read_spin.as_nanos() as u64,
            "spin_turn": g.opts.tuning.spin_turn.as_nanos() as u64,
            "idle_poll": g.opts.tuning.idle_poll,
        },
        "subscriptions": g.stats.iter().map(|s| s.subscriptions.load(Ordering::Relaxed)).sum::<usize>(),
        "http_req_stats": http_stats,
        "config_load_time": rfc3339(g.start_wall),
    })
}

/// Asks every shard `q`; shards that do not answer are left out.
pub(super) async fn gather(g: &Arc<Global>, q: &Query) -> Vec<ShardReport> {
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

/// Asks shard `i` alone.
async fn ask(g: &Arc<Global>, i: usize, q: Query) -> Option<ShardReport> {
    let (reply, rx) = futures_channel::oneshot::channel();
    g.ctl.get(i)?.send(Ctl::Gather(q, reply)).await.ok()?;
    rx.await.ok()
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

/// An integer query parameter as the reference reads it (`strconv.Atoi`:
/// signed; empty is 0).
fn int(params: &HashMap<String, String>, k: &str) -> Result<i64, String> {
    match params.get(k).map(String::as_str) {
        None | Some("") => Ok(0),
        Some(v) => v
            .parse()
            .map_err(|_| format!("Error decoding int for '{k}': invalid value {v:?}")),
    }
}

/// An account filter (`acc=NAME`): an unknown name matches nothing.
fn account_param(g: &Global, params: &HashMap<String, String>, k: &str) -> Option<u32> {
    let name = params.get(k).filter(|a| !a.is_empty())?;
    Some(g.accounts.id(name).unwrap_or(u32::MAX))
}

/// `offset` and `limit` as the reference applies them: a negative offset
/// is 0, a limit of 0 or less is the default (1024).
fn paging(params: &HashMap<String, String>) -> Result<(usize, usize), String> {
    let offset = usize::try_from(int(params, "offset")?.max(0)).unwrap_or(usize::MAX);
    let limit = match int(params, "limit")? {
        l if l <= 0 => DEFAULT_LIST_SIZE,
        l => usize::try_from(l).unwrap_or(usize::MAX),
    };
    Ok((offset, limit))
}

/// The reference's `DefaultConnListSize` and `DefaultSubListSize`.
pub const DEFAULT_LIST_SIZE: usize = 1024;
/// `/connz?subs=1` lists at most this many subscriptions of one
/// connection (its `subscriptions` count stays exact) ...
pub const MAX_SUBS_PER_CONN: usize = 1024;
/// ... and at most this many over the whole answer: connections late in
/// the page get shorter lists once it is spent. The reference lists all.
pub const MAX_SUBS_PER_ANSWER: usize = 64 * 1024;

fn conn_json(c: &ConnReport, subs: bool, detail: bool, auth: bool) -> Value {
    let mut v = json!({
        "cid": c.cid,
        "kind": "Client",
        "type": "nats",
        "ip": c.ip,
        "port": c.port,
        "start": rfc3339(c.start),
        "last_activity": rfc3339(c.last_activity),
        "rtt": "0s",
        "uptime": uptime(until(c.start, c.stop)),
        "idle": uptime(until(c.last_activity, c.stop)),
        "pending_bytes": c.pending_bytes,
        "in_msgs": c.in_msgs,
        "out_msgs": c.out_msgs,
        "in_bytes": c.in_bytes,
        "out_bytes": c.out_bytes,
        "subscriptions": c.subscriptions,
        "shard": c.shard,
    });
    if let (Some(stop), Some(reason)) = (c.stop, c.reason) {
        v["stop"] = json!(rfc3339(stop));
        v["reason"] = json!(reason);
    }
    for (k, val) in [
        ("name", &c.name),
        ("lang", &c.lang),
        ("version", &c.version),
    ] {
        if !val.is_empty() {
            v[k] = json!(val);
        }
    }
    // Who it is, when asked (`auth=1`), as the reference: the account
    // only when it is not the global one.
    if auth {
        if !c.user.is_empty() {
            v["authorized_user"] = json!(c.user);
        }
        if c.account != crate::account::GLOBAL {
            v["account"] = json!(c.account);
        }
        v["name_tag"] = json!(c.account);
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

/// How many subscriptions to list for each connection of a page, in page
/// order, within [`MAX_SUBS_PER_CONN`] and [`MAX_SUBS_PER_ANSWER`].
fn subs_budget(page: &[ConnKey], subs: bool) -> Vec<usize> {
    let mut left = if subs { MAX_SUBS_PER_ANSWER } else { 0 };
    page.iter()
        .map(|k| {
            let n = k.subs.min(MAX_SUBS_PER_CONN).min(left);
            left -= n;
            n
        })
        .collect()
}

/// `/connz`. Each shard sorts its own connections and sends the keys of
/// its first `offset + limit`; the merged page is then fetched in full
/// from the shards that own it, so no shard builds reports (or walks
/// subscriptions) for connections the answer does not show.
pub async fn connz(g: &Arc<Global>, params: &HashMap<String, String>) -> Result<Value, String> {
    let subs = flag(params, "subs")?;
    let detail = params.get("subs").is_some_and(|v| v == "detail");
    let (offset, limit) = paging(params)?;
    let cid = match params.get("cid") {
        Some(v) => Some(v.parse::<u64>().map_err(|_| format!("invalid cid {v:?}"))?),
        None => None,
    };
    let state = ConnState::parse(params.get("state").map_or("", String::as_str))?;
    let sort = params.get("sort").map(String::as_str).unwrap_or("cid");
    let sort = ConnSort::parse(sort).ok_or_else(|| format!("invalid sorting option: {sort}"))?;
    match sort {
        ConnSort::Stop if state != ConnState::Closed => {
            return Err("sort by stop only valid on closed connections".into())
        }
        ConnSort::Reason if state != ConnState::Closed => {
            return Err("sort by reason only valid on closed connections".into())
        }
        _ => {}
    }
    let auth = flag(params, "auth")?;
    let account = account_param(g, params, "acc");
    let user = params.get("user").filter(|u| !u.is_empty()).cloned();
    let keep = offset.saturating_add(limit);
    let mut total = 0;
    let mut keys: Vec<ConnKey> = Vec::new();
    if state.open() {
        let firsts = gather(
            g,
            &Query::ConnKeys {
                sort,
                keep,
                cid,
                account,
                user: user.clone(),
            },
        )
        .await;
        total += firsts.iter().map(|r| r.matched).sum::<usize>();
        keys.extend(firsts.into_iter().flat_map(|r| r.keys));
    }
    if state.closed() {
        let f = closed::Filter {
            cid,
            account: account.map(|a| g.accounts.name(a)),
            user: user.as_deref(),
        };
        let (n, k) = g.closed.keys(sort, keep, &f);
        total += n;
        keys.extend(k);
    }
    keys.sort_unstable();
    let page: Vec<ConnKey> = keys.into_iter().skip(offset).take(limit).collect();
    let budget = subs_budget(&page, subs);
    let mut want: Vec<Vec<(u64, usize)>> = vec![Vec::new(); g.ctl.len()];
    let mut want_closed = Vec::new();
    for (k, n) in page.iter().zip(&budget) {
        if k.shard == closed::CLOSED {
            want_closed.push((k.cid, *n));
        } else if let Some(w) = want.get_mut(k.shard) {
            w.push((k.cid, *n));
        }
    }
    let mut reports: HashMap<u64, ConnReport> = g
        .closed
        .reports(&want_closed)
        .into_iter()
        .map(|c| (c.cid, c))
        .collect();
    for (i, want) in want.into_iter().enumerate() {
        if want.is_empty() {
            continue;
        }
        if let Some(r) = ask(g, i, Query::Conns { want }).await {
            reports.extend(r.conns.into_iter().map(|c| (c.cid, c)));
        }
    }
    // In page order; a connection that closed in between is left out.
    let conns: Vec<Value> = page
        .iter()
        .filter_map(|k| reports.get(&k.cid))
        .map(|c| conn_json(c, subs, detail, auth))
        .collect();
    Ok(json!({
        "server_id": g.server_id,
        "now": rfc3339(SystemTime::now()),
        "num_connections": conns.len(),
        "total": total,
        "offset": offset,
        "limit": limit,
        "connections": conns,
    }))
}

pub async fn subsz(g: &Arc<Global>, params: &HashMap<String, String>) -> Result<Value, String> {
    let subs = flag(params, "subs")?;
    let (offset, limit) = paging(params)?;
    let test = params.get("test").filter(|t| !t.is_empty()).cloned();
    // As the reference: only a subject a message could be published on.
    if let Some(t) = &test {
        if !crate::subject::is_valid_literal(t.as_bytes()) {
            return Err(format!(
                "invalid test subject, must be valid publish subject: {t}"
            ));
        }
    }
    let reports = gather(
        g,
        &Query::Subs {
            list: subs,
            test,
            keep: offset.saturating_add(limit),
            account: account_param(g, params, "acc"),
        },
    )
    .await;
    let mut count = 0;
    let (mut cache, mut inserts, mut removes, mut matches, mut hits) = (0, 0, 0, 0, 0);
    let mut matched = 0;
    let mut list = Vec::new();
    for r in reports {
        count += r.sublist.subscriptions;
        cache += r.sublist.cache_entries;
        inserts += r.sublist.inserts;
        removes += r.sublist.removes;
        matches += r.sublist.matches;
        hits += r.sublist.cache_hits;
        matched += r.matched;
        list.extend(r.subs);
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
        list.sort_by(|a, b| (a.cid, &a.sid).cmp(&(b.cid, &b.sid)));
        v["total"] = json!(matched);
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

/// `/routez`: this build has no routes (clusters are refused), so the
/// reference's shape with none.
/// A boolean parameter as Go's `strconv.ParseBool` reads it, with the
/// reference's words for a bad one.
fn go_bool(params: &HashMap<String, String>, k: &str) -> Result<bool, String> {
    match params.get(k).map(String::as_str) {
        None | Some("") => Ok(false),
        Some("1" | "t" | "T" | "true" | "TRUE" | "True") => Ok(true),
        Some("0" | "f" | "F" | "false" | "FALSE" | "False") => Ok(false),
        Some(v) => Err(format!(
            "Error decoding boolean for '{k}': strconv.ParseBool: parsing {v:?}: invalid syntax"
        )),
    }
}

/// `/accstatz`: each account's connections and traffic, as
/// `$SYS.REQ.ACCOUNT.PING.STATZ` answers (those without connections only
/// with `unused`; over HTTP the reference takes no account filter), but
/// always answered.
pub async fn accstatz(g: &Arc<Global>, params: &HashMap<String, String>) -> Result<Value, String> {
    let unused = go_bool(params, "unused")?;
    Ok(crate::system::account_statz(g, &[], unused)
        .await
        .unwrap_or_else(|| {
            json!({
                "server_id": g.server_id,
                "now": rfc3339(SystemTime::now()),
                "account_statz": [],
            })
        }))
}

pub fn routez(g: &Global) -> Value {
    json!({
        "server_id": g.server_id,
        "server_name": g.server_name,
        "now": rfc3339(SystemTime::now()),
        "num_routes": 0,
        "routes": [],
    })
}

/// `/gatewayz`: no gateways in this build, as the reference shows none.
pub fn gatewayz(g: &Global) -> Value {
    json!({
        "server_id": g.server_id,
        "now": rfc3339(SystemTime::now()),
        "outbound_gateways": {},
        "inbound_gateways": {},
    })
}

/// `/accountz`: the accounts (the system account exists once accounts are
/// configured, as in the reference; without, nats-server lists `$SYS` too).
pub fn accountz(g: &Global) -> Value {
    let mut names: Vec<String> = g.accounts.names().to_vec();
    let system = g.accounts.system_name();
    if !names.iter().any(|n| n == system) {
        names.insert(0, system.to_string());
    }
    json!({
        "server_id": g.server_id,
        "now": rfc3339(SystemTime::now()),
        "system_account": system,
        "accounts": names,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `/varz` `leaf` has the reference's `LeafNodeOptsVarz` keys and
    /// defaults (a remote's URLs as host:port, the default port added).
    #[test]
    fn leaf_varz_shape() {
        use crate::options::{LeafNodeOpts, Options, Port, RemoteLeafOpts, RemoteTls, TlsConfig};
        let mut o = Options::default();
        assert_eq!(leaf_varz(&o, None), json!({}));
        o.leafnodes = Some(LeafNodeOpts {
            port: Some(Port::Fixed(7422)),
            remotes: vec![RemoteLeafOpts {
                urls: vec!["nats://u:p@hub:7000".into(), "tls://h2".into()],
                deny_imports: vec!["a.>".into()],
                tls: Some(RemoteTls::default()),
                ..RemoteLeafOpts::default()
            }],
            ..LeafNodeOpts::default()
        });
        assert_eq!(
            leaf_varz(&o, None),
            json!({
                "host": "0.0.0.0", "port": 7422, "auth_timeout": 2.0, "tls_timeout": 2.0,
                "remotes": [ { "local_account": "$G", "tls_timeout": 2.0,
                               "urls": ["hub:7000", "h2:7422"], "deny": { "imports": ["a.>"] } } ]
            })
        );
        let l = o.leafnodes.as_mut().unwrap();
        l.port = Some(Port::Random);
        l.remotes.clear();
        l.tls = Some(TlsConfig {
            verify: true,
            timeout: Some(Duration::from_secs(3)),
            ..TlsConfig::default()
        });
        assert_eq!(
            leaf_varz(&o, Some(45000)),
            json!({ "host": "0.0.0.0", "port": 45000, "auth_timeout": 4.0, "tls_timeout": 3.0,
                    "tls_required": true, "tls_verify": true })
        );
        // Remotes only: no listener, no defaults.
        let l = o.leafnodes.as_mut().unwrap();
        l.port = None;
        l.tls = None;
        l.remotes = vec![RemoteLeafOpts {
            urls: vec!["nats://h".into()],
            account: Some("A".into()),
            ..RemoteLeafOpts::default()
        }];
        assert_eq!(
            leaf_varz(&o, None),
            json!({ "remotes": [ { "local_account": "A", "urls": ["h:7422"] } ] })
        );
    }

    #[test]
    fn uptime_format() {
        assert_eq!(uptime(Duration::from_secs(5)), "5s");
        assert_eq!(uptime(Duration::from_secs(65)), "1m5s");
        assert_eq!(uptime(Duration::from_secs(3600)), "1h0m0s");
        assert_eq!(uptime(Duration::from_secs(90061)), "1d1h1m1s");
    }

    fn params(q: &[(&str, &str)]) -> HashMap<String, String> {
        q.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn paging_as_the_reference() {
        assert_eq!(paging(&params(&[])), Ok((0, 1024)));
        assert_eq!(paging(&params(&[("limit", "0")])), Ok((0, 1024)));
        assert_eq!(paging(&params(&[("limit", "-3")])), Ok((0, 1024)));
        assert_eq!(
            paging(&params(&[("offset", "-3"), ("limit", "2")])),
            Ok((0, 2))
        );
        assert_eq!(
            paging(&params(&[("offset", "5"), ("limit", "")])),
            Ok((5, 1024))
        );
        assert!(paging(&params(&[("limit", "x")])).is_err());
        assert!(paging(&params(&[("offset", "99999999999999999999")])).is_err());
    }

    #[test]
    fn subscription_lists_are_budgeted_in_page_order() {
        let key = |subs| ConnKey {
            key: 0,
            cid: 1,
            subs,
            shard: 0,
        };
        let page: Vec<ConnKey> = [3, 5000, 0, 70_000, 2_000].map(key).to_vec();
        assert_eq!(subs_budget(&page, false), [0, 0, 0, 0, 0]);
        assert_eq!(subs_budget(&page, true), [3, 1024, 0, 1024, 1024]);
        let many: Vec<ConnKey> = (0..100).map(|_| key(MAX_SUBS_PER_CONN)).collect();
        let b = subs_budget(&many, true);
        assert_eq!(b.iter().sum::<usize>(), MAX_SUBS_PER_ANSWER);
        assert_eq!(b[63], 1024);
        assert_eq!(b[64], 0);
    }
}
