//! Closed client connections for `/connz?state=closed|any`: a snapshot
//! of each client connection as it closed, newest last, at most
//! `max_closed_clients` for the whole server (10,000 by default, as the
//! reference; a snapshot lists at most
//! [`super::endpoints::MAX_SUBS_PER_CONN`] subscriptions). Shards add to
//! it under a lock: once per closed connection, never per message.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::client::{Client, CloseReason};
use crate::shard::Shard;

use super::gather::{ConnKey, ConnReport, ConnSort};

/// `/connz?state=`: which connections an answer lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ConnState {
    #[default]
    Open,
    Closed,
    Any,
}

impl ConnState {
    /// Parses `state=` as the reference does (any case; `all` = `any`).
    pub fn parse(s: &str) -> Result<ConnState, String> {
        match s.to_ascii_lowercase().as_str() {
            "" | "open" => Ok(ConnState::Open),
            "closed" => Ok(ConnState::Closed),
            "any" | "all" => Ok(ConnState::Any),
            _ => Err(format!("Error decoding state for {s}")),
        }
    }

    pub fn open(self) -> bool {
        self != ConnState::Closed
    }

    pub fn closed(self) -> bool {
        self != ConnState::Open
    }
}

/// A closed connection as it was when it closed.
pub struct Closed {
    /// `stop` and `reason` set.
    pub report: ConnReport,
    reason: CloseReason,
}

impl Closed {
    /// Its place in a `/connz` ordering (the counterpart of
    /// `ConnSort::key` for open connections).
    fn key(&self, sort: ConnSort) -> u128 {
        let r = &self.report;
        let nanos = |t: SystemTime| t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let most_first = |v: u128| u128::MAX - v;
        let stop = r.stop.unwrap_or(r.last_activity);
        match sort {
            ConnSort::Cid => u128::from(r.cid),
            ConnSort::Start => nanos(r.start),
            ConnSort::Subs => most_first(r.subscriptions as u128),
            ConnSort::Pending => most_first(r.pending_bytes as u128),
            ConnSort::MsgsTo => most_first(u128::from(r.out_msgs)),
            ConnSort::MsgsFrom => most_first(u128::from(r.in_msgs)),
            ConnSort::BytesTo => most_first(u128::from(r.out_bytes)),
            ConnSort::BytesFrom => most_first(u128::from(r.in_bytes)),
            ConnSort::Last => most_first(nanos(r.last_activity)),
            ConnSort::Idle => most_first(nanos(stop).saturating_sub(nanos(r.last_activity))),
            // As long as it lived, shortest first (as the reference
            // lists closed connections).
            ConnSort::Uptime => nanos(stop).saturating_sub(nanos(r.start)),
            ConnSort::Stop => most_first(nanos(stop)),
            ConnSort::Reason => self.reason.rank() as u128,
        }
    }
}

/// The reference's default for `max_closed_clients`.
pub const DEFAULT_MAX_CLOSED_CLIENTS: usize = 10_000;

/// Marks a [`ConnKey`] of a closed connection (it is no shard's).
pub const CLOSED: usize = usize::MAX;

/// The server's closed connections, oldest first.
#[derive(Default)]
pub struct ClosedRing(Mutex<VecDeque<Closed>>);

/// Which closed connections a `/connz` lists.
pub struct Filter<'a> {
    pub cid: Option<u64>,
    pub account: Option<&'a str>,
    pub user: Option<&'a str>,
}

impl ClosedRing {
    fn ring(&self) -> std::sync::MutexGuard<'_, VecDeque<Closed>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keeps a snapshot of `client`, which closes for `reason`, dropping
    /// the oldest past `max_closed_clients`.
    pub fn record(&self, shard: &Shard, client: &Client, reason: CloseReason) {
        // 0 is the default, as in the reference (which has no way to
        // keep none).
        let cap = match shard.g.live().max_closed_clients {
            0 => DEFAULT_MAX_CLOSED_CLIENTS,
            n => n,
        };
        let mut report =
            super::gather::conn_report(shard, client, super::endpoints::MAX_SUBS_PER_CONN);
        report.stop = Some(SystemTime::now());
        report.reason = Some(reason.as_str());
        let mut ring = self.ring();
        while ring.len() >= cap {
            ring.pop_front();
        }
        ring.push_back(Closed { report, reason });
    }

    /// How many closed connections match, and the sort keys of the first
    /// `keep` of them in `sort` order.
    pub fn keys(&self, sort: ConnSort, keep: usize, f: &Filter) -> (usize, Vec<ConnKey>) {
        let mut keys: Vec<ConnKey> = self
            .ring()
            .iter()
            .filter(|c| {
                let r = &c.report;
                f.cid.is_none_or(|c| r.cid == c)
                    && f.account.is_none_or(|a| r.account == a)
                    && f.user.is_none_or(|u| r.user == u)
            })
            .map(|c| ConnKey {
                key: c.key(sort),
                cid: c.report.cid,
                subs: c.report.subs.len(),
                shard: CLOSED,
            })
            .collect();
        let n = keys.len();
        super::gather::first_sorted(&mut keys, keep);
        (n, keys)
    }

    /// The snapshots of closed connections `want` (cid, subscriptions to
    /// list), those still kept.
    pub fn reports(&self, want: &[(u64, usize)]) -> Vec<ConnReport> {
        let ring = self.ring();
        want.iter()
            .filter_map(|(cid, subs)| {
                let c = ring.iter().find(|c| c.report.cid == *cid)?;
                let mut r = c.report.clone();
                r.subs.truncate(*subs);
                Some(r)
            })
            .collect()
    }
}
