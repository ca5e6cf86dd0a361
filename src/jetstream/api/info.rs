//! `$JS.API.INFO`: the account's JetStream usage and limits, gathered
//! from every shard.

use std::rc::Rc;

use serde_json::json;

use super::{typed, Answer, Req};
use crate::jetstream::config::{StorageType, API_LEVEL};
use crate::jetstream::JetStream;
use crate::shard::Shard;

/// (memory bytes, file bytes, reserved memory, reserved file, streams,
/// consumers)
/// of one account on one shard.
#[derive(Default, Clone, Copy)]
pub struct Usage {
    pub memory: u64,
    pub storage: u64,
    pub reserved_memory: u64,
    pub reserved_storage: u64,
    pub streams: u64,
    pub consumers: u64,
}

/// This shard's usage by account `acc` (`None`: every account).
pub fn usage_here(shard: &Shard, acc: Option<u32>) -> Usage {
    let mut u = Usage::default();
    let Some(js) = shard.js.get() else { return u };
    for ((a, _), st) in js.streams.borrow().iter() {
        if acc.is_some_and(|x| x != *a) {
            continue;
        }
        let c = st.cfg();
        let bytes = st.log.state(false).bytes;
        let reserved = c.max_bytes.max(0) as u64;
        match c.storage {
            StorageType::Memory => {
                u.memory += bytes;
                u.reserved_memory += reserved;
            }
            StorageType::File => {
                u.storage += bytes;
                u.reserved_storage += reserved;
            }
        }
        u.streams += 1;
        u.consumers += st.consumers.borrow().len() as u64;
    }
    u
}

/// Sums usage over every shard.
pub async fn usage(shard: &Rc<Shard>, acc: Option<u32>) -> Usage {
    let parts = crate::shard::bus::gather(&shard.g, move |s: Rc<Shard>| async move {
        let u = usage_here(&s, acc);
        (
            u.memory,
            u.storage,
            u.reserved_memory,
            u.reserved_storage,
            u.streams,
            u.consumers,
        )
    })
    .await;
    let mut u = Usage::default();
    for p in parts {
        u.memory += p.0;
        u.storage += p.1;
        u.reserved_memory += p.2;
        u.reserved_storage += p.3;
        u.streams += p.4;
        u.consumers += p.5;
    }
    u
}

pub async fn account(shard: &Rc<Shard>, js: &JetStream, req: &Req) -> Answer {
    let u = usage(shard, Some(req.acc)).await;
    let lim = js.cfg.account_limits.get(req.acc as usize);
    let (total, errors) = js
        .meta
        .as_ref()
        .and_then(|m| m.api.borrow().get(&req.acc).copied())
        .unwrap_or_default();
    let mut v = json!({
        "memory": u.memory,
        "storage": u.storage,
        "reserved_memory": u.reserved_memory,
        "reserved_storage": u.reserved_storage,
        "streams": u.streams,
        "consumers": u.consumers,
        "limits": {
            "max_memory": js.cfg.max_memory,
            "max_storage": js.cfg.max_store,
            "max_streams": lim.and_then(|l| l.max_streams).map_or(-1, |m| m as i64),
            "max_consumers": lim.and_then(|l| l.max_consumers).map_or(-1, |m| m as i64),
            "max_ack_pending": -1,
            "memory_max_stream_bytes": -1,
            "storage_max_stream_bytes": -1,
            "max_bytes_required": false,
        },
        "api": {"level": API_LEVEL, "total": total, "errors": errors},
    });
    if let Some(d) = &js.cfg.domain {
        v["domain"] = json!(d);
    }
    Answer::Json(typed("account_info_response", v))
}
