//! Statistics the system requests answer with: the server's STATSZ
//! (`ServerStats`) and per-account STATZ (`AccountStat`), each gathered
//! from every shard over the shard bus.

use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::SystemTime;

use serde_json::{json, Value};

use super::envelope::rfc3339;
use crate::global::Global;
use crate::shard::{bus, Shard};

/// One account's figures on one shard (summed over shards), from the
/// connections open now: a closed connection's traffic is not kept per
/// account.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AccountFigures {
    pub conns: u64,
    pub leafs: u64,
    pub subs: u64,
    pub in_msgs: u64,
    pub in_bytes: u64,
    pub out_msgs: u64,
    pub out_bytes: u64,
}

impl AccountFigures {
    fn add(&mut self, o: &AccountFigures) {
        self.conns += o.conns;
        self.leafs += o.leafs;
        self.subs += o.subs;
        self.in_msgs += o.in_msgs;
        self.in_bytes += o.in_bytes;
        self.out_msgs += o.out_msgs;
        self.out_bytes += o.out_bytes;
    }

    /// Whether the reference would count it as in use here.
    pub fn used(&self) -> bool {
        self.conns > 0 || self.leafs > 0
    }
}

/// Every account's figures, indexed by account id.
pub async fn accounts(g: &Global) -> Vec<AccountFigures> {
    let n = g.accounts.len();
    let per_shard = bus::gather(g, move |shard: Rc<Shard>| async move {
        let mut v = vec![AccountFigures::default(); n];
        let mut count = |c: &crate::client::Client, leaf: bool| {
            let Some(f) = v.get_mut(c.account() as usize) else {
                return;
            };
            if leaf {
                f.leafs += 1;
            } else {
                f.conns += 1;
            }
            f.subs += c.subs.borrow().len() as u64;
            f.in_msgs += c.counters.in_msgs.get();
            f.in_bytes += c.counters.in_bytes.get();
            f.out_msgs += c.counters.out_msgs.get();
            f.out_bytes += c.counters.out_bytes.get();
        };
        for c in shard.clients.borrow().values() {
            // Only connections that logged in belong to an account.
            if c.connected.get() {
                count(c, false);
            }
        }
        for c in shard.leafs.borrow().iter() {
            count(c, true);
        }
        v
    })
    .await;
    let mut total = vec![AccountFigures::default(); n];
    for shard in per_shard {
        for (t, f) in total.iter_mut().zip(&shard) {
            t.add(f);
        }
    }
    total
}

fn msg_bytes(msgs: u64, bytes: u64) -> Value {
    let zero = json!({"msgs": 0, "bytes": 0});
    json!({
        "msgs": msgs, "bytes": bytes,
        "gateways": zero, "routes": zero, "leafs": zero,
    })
}

/// One `AccountStat`.
pub fn account_stat(name: &str, f: &AccountFigures) -> Value {
    json!({
        "acc": name,
        "name": name,
        "conns": f.conns,
        "leafnodes": f.leafs,
        "total_conns": f.conns + f.leafs,
        "num_subscriptions": f.subs,
        // The account's view: what its clients were sent, and what they
        // published.
        "sent": msg_bytes(f.out_msgs, f.out_bytes),
        "received": msg_bytes(f.in_msgs, f.in_bytes),
        "slow_consumers": 0,
    })
}

/// `AccountStatz` for `names` (every account when empty), leaving out
/// accounts without connections unless `unused`. `None` when that leaves
/// nothing and `unused` is off: the reference does not answer then.
pub async fn account_statz(g: &Global, names: &[String], unused: bool) -> Option<Value> {
    let figures = accounts(g).await;
    let ids: Vec<u32> = if names.is_empty() {
        (0..g.accounts.len() as u32).collect()
    } else {
        names.iter().filter_map(|n| g.accounts.id(n)).collect()
    };
    let list: Vec<Value> = ids
        .into_iter()
        .filter_map(|id| Some((id, figures.get(id as usize)?)))
        .filter(|(_, f)| unused || f.used())
        .map(|(id, f)| account_stat(g.accounts.name(id), f))
        .collect();
    if list.is_empty() && !unused {
        return None;
    }
    Some(json!({
        "server_id": g.server_id,
        "now": rfc3339(SystemTime::now()),
        "account_statz": list,
    }))
}

/// The server's `ServerStats`.
pub async fn server(shard: &Rc<Shard>) -> Value {
    let g = &shard.g;
    let (mem, cpu) = crate::monitor::endpoints::process_usage(g);
    let sum = |f: fn(&crate::global::ShardStats) -> u64| g.total(f);
    let in_msgs = sum(|s| s.in_msgs.load(Ordering::Relaxed));
    let in_bytes = sum(|s| s.in_bytes.load(Ordering::Relaxed));
    let out_msgs = sum(|s| s.out_msgs.load(Ordering::Relaxed));
    let out_bytes = sum(|s| s.out_bytes.load(Ordering::Relaxed));
    let active = accounts(g).await.iter().filter(|f| f.used()).count();
    let subs: usize = g
        .stats
        .iter()
        .map(|s| s.subscriptions.load(Ordering::Relaxed))
        .sum();
    let mb = |m: u64, b: u64| json!({"msgs": m, "bytes": b});
    let mut v = json!({
        "start": rfc3339(g.start_wall),
        "mem": mem,
        "cores": crate::monitor::endpoints::online_cpus(),
        "cpu": cpu,
        "connections": g.connections(),
        "total_connections": sum(|s| s.total_connections.load(Ordering::Relaxed)),
        "active_accounts": active,
        "subscriptions": subs,
        "sent": mb(out_msgs, out_bytes),
        "sent_to_clients": mb(out_msgs, out_bytes),
        "received": mb(in_msgs, in_bytes),
        "received_from_clients": mb(in_msgs, in_bytes),
        "slow_consumers": sum(|s| s.slow_consumers.load(Ordering::Relaxed)),
        // Ourselves: no routes, so no other servers known.
        "active_servers": 1,
        "gomaxprocs": g.shards,
    });
    if g.jetstream.get().is_some() {
        let mut js = crate::monitor::jsz::varz(shard).await;
        // As the reference: the store directory is not sent around.
        if let Some(c) = js.get_mut("config").and_then(Value::as_object_mut) {
            c.remove("store_dir");
        }
        v["jetstream"] = js;
    }
    v
}
