//! `/jsz` and the `jetstream` object of `/varz`, in nats-server's shape.
//! Streams live on their shards: the figures are gathered over the shard
//! bus (API counters from shard 0, which serves the API).

use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;

use serde_json::{json, Value};

use crate::jetstream::api::stream::{info_value, state_value};
use crate::jetstream::config::{go_time, now_ns, StorageType, API_LEVEL};
use crate::shard::Shard;

/// The reference's default cap on consumers per stream, which it reports
/// under `limits`.
const DEFAULT_MAX_CONSUMERS: u32 = 1000;

/// One stream as a shard reports it.
struct Detail {
    acc: u32,
    name: String,
    created: String,
    config: Value,
    state: Value,
    storage: StorageType,
    bytes: u64,
    msgs: u64,
    reserved: u64,
    /// ConsumerInfo of each consumer.
    consumers: Vec<Value>,
}

async fn details(shard: &Rc<Shard>) -> Vec<Detail> {
    let parts = crate::shard::bus::gather(&shard.g, |s: Rc<Shard>| async move {
        let Some(js) = s.js.get() else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for ((acc, name), st) in js.streams.borrow().iter() {
            let info = info_value(&s, st, false, None, false);
            let ls = st.log.state(false);
            let cfg = st.cfg();
            out.push((
                *acc,
                name.clone(),
                info["created"].as_str().unwrap_or_default().to_string(),
                info["config"].clone(),
                state_value(st, None, false),
                cfg.storage == StorageType::Memory,
                ls.bytes,
                ls.msgs,
                cfg.max_bytes.max(0) as u64,
                st.consumers
                    .borrow()
                    .values()
                    .map(|c| c.info(st, false))
                    .collect::<Vec<_>>(),
            ));
        }
        out
    })
    .await;
    parts
        .into_iter()
        .flatten()
        .map(|p| Detail {
            acc: p.0,
            name: p.1,
            created: p.2,
            config: p.3,
            state: p.4,
            storage: if p.5 {
                StorageType::Memory
            } else {
                StorageType::File
            },
            bytes: p.6,
            msgs: p.7,
            reserved: p.8,
            consumers: p.9,
        })
        .collect()
}

/// API counters by account (from shard 0).
async fn api_counts(shard: &Rc<Shard>) -> BTreeMap<u32, (u64, u64)> {
    crate::shard::bus::call(&shard.g, 0, |s: Rc<Shard>| async move {
        s.js.get()
            .and_then(|js| js.meta.as_ref().map(|m| m.api.borrow().clone()))
            .unwrap_or_default()
    })
    .await
    .unwrap_or_default()
}

/// The `config` object: configured limits, or what the machine offers
/// (75% of memory and of the store's free disk, as the reference).
fn config_value(shard: &Shard) -> Value {
    let Some(c) = shard.g.jetstream.get() else {
        return json!({"max_memory": 0, "max_storage": 0});
    };
    let max_memory = if c.max_memory > 0 {
        c.max_memory
    } else {
        (total_memory() as f64 * 0.75) as i64
    };
    let max_storage = if c.max_store > 0 {
        c.max_store
    } else {
        (free_disk(&c.root) as f64 * 0.75) as i64
    };
    let mut v = json!({
        "max_memory": max_memory,
        "max_storage": max_storage,
        "store_dir": c.root.display().to_string(),
    });
    match c.durability {
        broker_edge_storage::Durability::Always => v["sync_always"] = json!(true),
        broker_edge_storage::Durability::Interval(d) => {
            v["sync_interval"] = json!(d.as_nanos() as u64)
        }
        broker_edge_storage::Durability::Never => {}
    }
    if let Some(d) = &c.domain {
        v["domain"] = json!(d);
    }
    if c.strict {
        v["strict"] = json!(true);
    }
    v
}

fn total_memory() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

pub fn free_disk(dir: &std::path::Path) -> u64 {
    use std::os::unix::ffi::OsStrExt;
    let Ok(path) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return 0;
    };
    // SAFETY: statvfs fills the struct we own from a valid C string.
    unsafe {
        let mut st: libc::statvfs = std::mem::zeroed();
        if libc::statvfs(path.as_ptr(), &mut st) != 0 {
            return 0;
        }
        st.f_bavail as u64 * st.f_frsize as u64
    }
}

fn enabled_accounts(shard: &Shard) -> Vec<u32> {
    shard
        .g
        .jetstream
        .get()
        .map(|c| {
            c.enabled
                .iter()
                .enumerate()
                .filter(|(_, on)| **on)
                .map(|(i, _)| i as u32)
                .collect()
        })
        .unwrap_or_default()
}

/// `stats` of `/varz`'s `jetstream` and the head of `/jsz`.
fn stats(shard: &Shard, ds: &[Detail], api: &BTreeMap<u32, (u64, u64)>) -> Value {
    let (mut memory, mut storage, mut rmem, mut rsto) = (0u64, 0u64, 0u64, 0u64);
    for d in ds {
        match d.storage {
            StorageType::Memory => {
                memory += d.bytes;
                rmem += d.reserved;
            }
            StorageType::File => {
                storage += d.bytes;
                rsto += d.reserved;
            }
        }
    }
    let (total, errors) = api.values().fold((0, 0), |(t, e), (a, b)| (t + a, e + b));
    json!({
        "memory": memory,
        "storage": storage,
        "reserved_memory": rmem,
        "reserved_storage": rsto,
        "accounts": enabled_accounts(shard).len(),
        "ha_assets": 0,
        "api": {"level": API_LEVEL, "total": total, "errors": errors},
    })
}

/// The `jetstream` object of `/varz` (`{}` when JetStream is off).
pub async fn varz(shard: &Rc<Shard>) -> Value {
    if shard.g.jetstream.get().is_none() {
        return json!({});
    }
    let ds = details(shard).await;
    let api = api_counts(shard).await;
    json!({
        "config": config_value(shard),
        "stats": stats(shard, &ds, &api),
        "limits": {"default_max_consumers": DEFAULT_MAX_CONSUMERS},
    })
}

fn flag(params: &HashMap<String, String>, k: &str) -> bool {
    params
        .get(k)
        .is_some_and(|v| v.is_empty() || v == "true" || v == "1")
}

pub async fn jsz(shard: &Rc<Shard>, params: &HashMap<String, String>) -> Result<Value, String> {
    let g = &shard.g;
    if g.jetstream.get().is_none() {
        return Ok(json!({
            "memory": 0, "storage": 0, "reserved_memory": 0, "reserved_storage": 0,
            "accounts": 0, "ha_assets": 0, "api": {"level": 0, "total": 0, "errors": 0},
            "server_id": g.server_id, "now": go_time(now_ns()), "disabled": true,
            "config": {"max_memory": 0, "max_storage": 0},
            "streams": 0, "consumers": 0, "messages": 0, "bytes": 0, "total": 0,
        }));
    }
    let offset: usize = params
        .get("offset")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let limit: usize = params
        .get("limit")
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    let consumers = flag(params, "consumers");
    let streams = flag(params, "streams") || consumers;
    let with_config = flag(params, "config");
    let acc_filter = params.get("acc").filter(|a| !a.is_empty()).cloned();
    let accounts =
        flag(params, "accounts") || (streams && acc_filter.is_none()) || acc_filter.is_some();

    let ds = details(shard).await;
    let api = api_counts(shard).await;
    let mut v = stats(shard, &ds, &api);
    v["server_id"] = json!(g.server_id);
    v["now"] = json!(go_time(now_ns()));
    v["config"] = config_value(shard);
    v["limits"] = json!({"default_max_consumers": DEFAULT_MAX_CONSUMERS});
    v["streams"] = json!(ds.len());
    v["consumers"] = json!(ds.iter().map(|d| d.consumers.len()).sum::<usize>());
    v["messages"] = json!(ds.iter().map(|d| d.msgs).sum::<u64>());
    v["bytes"] = json!(ds.iter().map(|d| d.bytes).sum::<u64>());
    let enabled = enabled_accounts(shard);
    v["total"] = json!(enabled.len());
    if accounts {
        let mut list: Vec<(String, u32)> = enabled
            .iter()
            .map(|a| (g.accounts.name(*a).to_string(), *a))
            .filter(|(n, _)| acc_filter.as_ref().is_none_or(|f| f == n))
            .collect();
        list.sort();
        let mut out = Vec::new();
        for (name, acc) in list.into_iter().skip(offset).take(limit) {
            let mine: Vec<&Detail> = ds.iter().filter(|d| d.acc == acc).collect();
            let (t, e) = api.get(&acc).copied().unwrap_or_default();
            let mut a = json!({
                "name": name,
                "id": name,
                "memory": mine.iter().filter(|d| d.storage == StorageType::Memory).map(|d| d.bytes).sum::<u64>(),
                "storage": mine.iter().filter(|d| d.storage == StorageType::File).map(|d| d.bytes).sum::<u64>(),
                "reserved_memory": u64::MAX,
                "reserved_storage": u64::MAX,
                "accounts": 0,
                "ha_assets": 0,
                "api": {"level": 0, "total": t, "errors": e},
            });
            if streams && !mine.is_empty() {
                let sd: Vec<Value> = mine
                    .iter()
                    .map(|d| {
                        let mut s = json!({
                            "name": d.name,
                            "created": d.created,
                            "cluster": {"leader": g.server_name},
                            "state": d.state,
                        });
                        if with_config {
                            s["config"] = d.config.clone();
                        }
                        if consumers && !d.consumers.is_empty() {
                            let cd: Vec<Value> = d
                                .consumers
                                .iter()
                                .map(|c| {
                                    let mut c = c.clone();
                                    if !with_config {
                                        if let Some(o) = c.as_object_mut() {
                                            o.remove("config");
                                        }
                                    }
                                    c
                                })
                                .collect();
                            s["consumer_detail"] = json!(cd);
                        }
                        s
                    })
                    .collect();
                a["stream_detail"] = json!(sd);
            }
            out.push(a);
        }
        if !out.is_empty() {
            v["account_details"] = json!(out);
        }
    }
    Ok(v)
}
