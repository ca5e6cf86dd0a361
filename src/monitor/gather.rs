//! Collecting per-shard state for the monitoring endpoints: each shard
//! answers a `Query` about what it owns.
//!
//! A shard answers synchronously (it holds its tables while it walks
//! them), so every answer is bounded: `/connz` asks first for the sort keys
//! of each shard's best `offset + limit` connections, then for the full
//! reports (and bounded subscription lists) of only the page it shows;
//! `/subsz` gets each shard's first `offset + limit` matches in
//! (cid, sid) order.

use std::rc::Rc;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::client::Client;
use crate::shard::Shard;
use crate::sublist::SublistStats;

/// `/connz?sort=` orders, named as the reference names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ConnSort {
    #[default]
    Cid,
    Start,
    Subs,
    Pending,
    MsgsTo,
    MsgsFrom,
    BytesTo,
    BytesFrom,
    Last,
    Idle,
    Uptime,
    /// Closed connections only: most recently closed first.
    Stop,
    /// Closed connections only: by the reason's text.
    Reason,
}

impl ConnSort {
    /// The order a `sort=` value names; `None` for one the reference
    /// does not take.
    pub fn parse(s: &str) -> Option<ConnSort> {
        Some(match s {
            "cid" | "" => ConnSort::Cid,
            "start" => ConnSort::Start,
            "subs" => ConnSort::Subs,
            "pending" => ConnSort::Pending,
            "msgs_to" => ConnSort::MsgsTo,
            "msgs_from" => ConnSort::MsgsFrom,
            "bytes_to" => ConnSort::BytesTo,
            "bytes_from" => ConnSort::BytesFrom,
            "last" => ConnSort::Last,
            "idle" => ConnSort::Idle,
            "uptime" => ConnSort::Uptime,
            "stop" => ConnSort::Stop,
            "reason" => ConnSort::Reason,
            _ => return None,
        })
    }

    /// A key that sorts ascending in this order (ties are broken by cid).
    fn key(self, c: &Client) -> u128 {
        let nanos = |t: SystemTime| t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let most_first = |v: u128| u128::MAX - v;
        match self {
            ConnSort::Cid => u128::from(c.cid),
            ConnSort::Start | ConnSort::Uptime => nanos(c.start),
            ConnSort::Subs => most_first(c.subs.borrow().len() as u128),
            ConnSort::Pending => most_first(c.out.len() as u128),
            ConnSort::MsgsTo => most_first(u128::from(c.counters.out_msgs.get())),
            ConnSort::MsgsFrom => most_first(u128::from(c.counters.in_msgs.get())),
            ConnSort::BytesTo => most_first(u128::from(c.counters.out_bytes.get())),
            ConnSort::BytesFrom => most_first(u128::from(c.counters.in_bytes.get())),
            ConnSort::Last => most_first(nanos(c.last_activity.get())),
            ConnSort::Idle => nanos(c.last_activity.get()),
            // Closed connections only (refused for others before).
            ConnSort::Stop | ConnSort::Reason => u128::from(c.cid),
        }
    }
}

/// What a shard is asked.
#[derive(Debug, Clone)]
pub enum Query {
    /// `/connz`, first step: how many connections match, and the sort
    /// keys of the first `keep` of them in `sort` order.
    ConnKeys {
        sort: ConnSort,
        keep: usize,
        cid: Option<u64>,
        /// Only connections of this account (`acc=`) ...
        account: Option<u32>,
        /// ... and of this user (`user=`).
        user: Option<String>,
    },
    /// `/connz`, second step: full reports of these connections, each
    /// with at most `.1` of its subscriptions listed.
    Conns { want: Vec<(u64, usize)> },
    /// `/metrics`: the shard's storage counters and busy time.
    Work,
    /// `/subsz`: sublist statistics and, when `list`, how many
    /// subscriptions match `test` and the first `keep` in (cid, sid) order.
    Subs {
        list: bool,
        test: Option<String>,
        keep: usize,
        /// Only subscriptions in this account.
        account: Option<u32>,
    },
}

/// A connection's place in a `/connz` ordering.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ConnKey {
    pub key: u128,
    pub cid: u64,
    /// Its subscription count (to budget the lists asked for next).
    pub subs: usize,
    /// The shard that owns it.
    pub shard: usize,
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
    /// The authenticated user (empty without one) and the account's name.
    pub user: String,
    pub account: String,
    /// Closed connections: when, and why.
    pub stop: Option<SystemTime>,
    pub reason: Option<&'static str>,
}

#[derive(Debug, Clone, Default)]
pub struct ShardReport {
    /// Connections (or subscriptions) that matched, before paging.
    pub matched: usize,
    pub keys: Vec<ConnKey>,
    pub conns: Vec<ConnReport>,
    pub sublist: SublistStats,
    pub subs: Vec<SubDetail>,
    pub max_fanout: usize,
    pub work: Option<Work>,
}

/// What a shard has done (`/metrics`).
#[derive(Debug, Clone)]
pub struct Work {
    pub shard: usize,
    /// Storage counters of the shard's logs.
    pub storage: broker_edge_storage::stats::StorageStats,
    /// Its executor's busy time since start.
    pub busy: std::time::Duration,
}

/// Sorts `items` and keeps the first `keep`, touching each once more
/// than a full sort would only when it is kept.
pub fn first_sorted<T: Ord>(items: &mut Vec<T>, keep: usize) {
    if keep == 0 {
        items.clear();
        return;
    }
    if items.len() > keep {
        items.select_nth_unstable(keep - 1);
        items.truncate(keep);
    }
    items.sort_unstable();
}

pub fn report(shard: &Rc<Shard>, q: &Query) -> ShardReport {
    match q {
        Query::ConnKeys {
            sort,
            keep,
            cid,
            account,
            user,
        } => {
            let clients = shard.clients.borrow();
            let key = |c: &Rc<Client>| conn_key(shard, c, *sort);
            let wanted = |c: &&Rc<Client>| {
                account.is_none_or(|a| c.account() == a)
                    && user.as_ref().is_none_or(|u| *u == c.user_name())
            };
            let mut keys: Vec<ConnKey> = match cid {
                Some(cid) => clients
                    .get(cid)
                    .into_iter()
                    .filter(wanted)
                    .map(key)
                    .collect(),
                None => clients.values().filter(wanted).map(key).collect(),
            };
            let matched = keys.len();
            first_sorted(&mut keys, *keep);
            ShardReport {
                matched,
                keys,
                ..Default::default()
            }
        }
        Query::Conns { want } => {
            let clients = shard.clients.borrow();
            let conns = want
                .iter()
                .filter_map(|(cid, subs)| Some(conn_report(shard, clients.get(cid)?, *subs)))
                .collect();
            ShardReport {
                conns,
                ..Default::default()
            }
        }
        Query::Work => ShardReport {
            work: Some(Work {
                shard: shard.id,
                storage: broker_edge_storage::stats::thread_stats(),
                busy: crate::runtime::busy_time(),
            }),
            ..Default::default()
        },
        Query::Subs {
            list,
            test,
            keep,
            account,
        } => {
            let sl = shard.subs.borrow();
            let mut report = ShardReport {
                sublist: sl.stats(),
                ..Default::default()
            };
            if *list {
                let mut found = Vec::new();
                let accounts = &shard.g.accounts;
                sl.for_each(|_, _, s| {
                    let s = &s.0;
                    if test
                        .as_ref()
                        .is_none_or(|t| crate::subject::matches(&s.subject, t.as_bytes()))
                        && account.is_none_or(|a| accounts.split_key(&s.key).0 == a)
                    {
                        found.push(SubOrder(s.cid(), s.sid.clone(), s.clone()));
                    }
                });
                report.matched = found.len();
                first_sorted(&mut found, *keep);
                report.subs = found.iter().map(|o| detail(&o.2)).collect();
            }
            report
        }
    }
}

/// A subscription ordered by (cid, sid) for `/subsz` paging.
struct SubOrder(u64, bytes::Bytes, Rc<crate::client::Sub>);

impl PartialEq for SubOrder {
    fn eq(&self, other: &Self) -> bool {
        (self.0, &self.1) == (other.0, &other.1)
    }
}
impl Eq for SubOrder {}
impl PartialOrd for SubOrder {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for SubOrder {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.0, &self.1).cmp(&(other.0, &other.1))
    }
}

fn conn_key(shard: &Shard, c: &Client, sort: ConnSort) -> ConnKey {
    ConnKey {
        key: sort.key(c),
        cid: c.cid,
        subs: c.subs.borrow().len(),
        shard: shard.id,
    }
}

pub(crate) fn conn_report(shard: &Shard, c: &Client, list_subs: usize) -> ConnReport {
    let connect = c.connect.borrow();
    let subs = c.subs.borrow();
    ConnReport {
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
        user: c.user_name(),
        account: shard.g.accounts.name(c.account()).to_string(),
        subs: subs
            .values()
            .take(list_subs)
            .map(|s| detail(&s.0))
            .collect(),
        shard: shard.id,
        stop: None,
        reason: None,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_sorted_keeps_the_smallest_in_order() {
        let mut v: Vec<u32> = (0..100).rev().collect();
        first_sorted(&mut v, 5);
        assert_eq!(v, [0, 1, 2, 3, 4]);
        let mut v = vec![3, 1, 2];
        first_sorted(&mut v, 10);
        assert_eq!(v, [1, 2, 3]);
        first_sorted(&mut v, 0);
        assert!(v.is_empty());
    }

    /// Merging each shard's first `offset + limit` and paging the merge
    /// gives the page a global sort would.
    #[test]
    fn per_shard_paging_matches_a_global_sort() {
        let shards: Vec<Vec<u32>> = vec![
            (0..50).map(|i| i * 3).collect(),
            (0..50).map(|i| i * 7 % 101).collect(),
            vec![5, 5, 5, 200],
        ];
        let mut all: Vec<u32> = shards.concat();
        all.sort_unstable();
        for (offset, limit) in [(0, 10), (7, 3), (40, 100), (150, 5)] {
            let mut merged = Vec::new();
            for s in &shards {
                let mut s = s.clone();
                first_sorted(&mut s, offset + limit);
                merged.extend(s);
            }
            merged.sort_unstable();
            let page: Vec<u32> = merged.into_iter().skip(offset).take(limit).collect();
            let want: Vec<u32> = all.iter().copied().skip(offset).take(limit).collect();
            assert_eq!(page, want, "offset {offset} limit {limit}");
        }
    }
}
