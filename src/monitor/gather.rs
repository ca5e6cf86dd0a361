//! Collecting per-shard state for the monitoring endpoints: each shard
//! answers a `Query` about what it owns.

use std::rc::Rc;
use std::time::SystemTime;

use crate::shard::Shard;
use crate::sublist::SublistStats;

#[derive(Debug, Clone, Default)]
pub struct Query {
    pub subs_detail: bool,
    pub cid: Option<u64>,
}

#[derive(Debug, Clone)]
pub struct SubDetail {
    pub subject: String,
    pub queue: Option<String>,
    pub sid: String,
    pub msgs: u64,
    pub max: u64,
    pub cid: u64,
}

#[derive(Debug, Clone)]
pub struct ConnReport {
    pub cid: u64,
    pub ip: String,
    pub port: u16,
    pub start: SystemTime,
    pub last_activity: SystemTime,
    pub pending_bytes: usize,
    pub in_msgs: u64,
    pub out_msgs: u64,
    pub in_bytes: u64,
    pub out_bytes: u64,
    pub subscriptions: usize,
    pub name: String,
    pub lang: String,
    pub version: String,
    pub subs: Vec<SubDetail>,
    pub shard: usize,
}

#[derive(Debug, Clone, Default)]
pub struct ShardReport {
    pub conns: Vec<ConnReport>,
    pub sublist: SublistStats,
    pub subs: Vec<SubDetail>,
    pub max_fanout: usize,
}

pub fn report(shard: &Rc<Shard>, q: &Query) -> ShardReport {
    let clients = shard.clients.borrow();
    let mut conns = Vec::new();
    for c in clients.values() {
        if q.cid.is_some_and(|cid| cid != c.cid) {
            continue;
        }
        let connect = c.connect.borrow();
        let subs = c.subs.borrow();
        let details = if q.subs_detail {
            subs.values().map(|s| detail(&s.0)).collect()
        } else {
            Vec::new()
        };
        conns.push(ConnReport {
            cid: c.cid,
            ip: c.addr.ip().to_string(),
            port: c.addr.port(),
            start: c.start,
            last_activity: c.last_activity.get(),
            pending_bytes: c.out.len(),
            in_msgs: c.counters.in_msgs.get(),
            out_msgs: c.counters.out_msgs.get(),
            in_bytes: c.counters.in_bytes.get(),
            out_bytes: c.counters.out_bytes.get(),
            subscriptions: subs.len(),
            name: connect.name.clone(),
            lang: connect.lang.clone(),
            version: connect.version.clone(),
            subs: details,
            shard: shard.id,
        });
    }
    let sl = shard.subs.borrow();
    let mut subs = Vec::new();
    if q.subs_detail {
        sl.for_each(|_, _, s| subs.push(detail(&s.0)));
    }
    ShardReport {
        conns,
        sublist: sl.stats(),
        subs,
        max_fanout: 0,
    }
}

fn detail(s: &crate::client::Sub) -> SubDetail {
    SubDetail {
        subject: String::from_utf8_lossy(&s.subject).into_owned(),
        queue: s
            .queue
            .as_ref()
            .map(|q| String::from_utf8_lossy(q).into_owned()),
        sid: String::from_utf8_lossy(&s.sid).into_owned(),
        msgs: s.delivered.get(),
        max: s.max.get(),
        cid: s.cid(),
    }
}
