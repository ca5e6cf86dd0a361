//! Interest other shards have announced, kept like routes keep a remote
//! server's interest: per subject filter and queue group, which shard, and
//! for queue groups how many members (the weight used to pick one).

use std::collections::HashMap;
use std::rc::Rc;

use bytes::Bytes;

use crate::sublist::{Matches, Sublist};

#[derive(Debug, Clone, Copy)]
pub struct Remote {
    pub shard: usize,
    /// Members that are not leaf links (a plain subscription: 1).
    pub weight: u32,
    /// Leaf links have members of this queue group there: they take a
    /// message only when no other member exists anywhere (the reference
    /// prefers local members over leaf nodes).
    pub leaf: bool,
}

/// The bit of an announced queue count saying leaf links have members too.
pub const LEAF_MEMBERS: u32 = 1 << 31;

/// One entry per (shard, filter, queue): equality ignores the weight.
impl PartialEq for Remote {
    fn eq(&self, other: &Self) -> bool {
        self.shard == other.shard
    }
}

pub type Key = (Bytes, Option<Bytes>);

#[derive(Default)]
pub struct RemoteInterest {
    list: Sublist<Remote>,
    weights: HashMap<(usize, Key), u32>,
    /// Per (filter, queue): plain subscriptions (shards that have one) or
    /// queue members over all peers, leaf members not counted. What a
    /// leaf link is told about this shard's peers.
    totals: HashMap<Key, u32>,
}

impl RemoteInterest {
    /// Whether a peer announced exactly `filter`.
    pub fn has_exact(&self, filter: &[u8]) -> bool {
        self.list.has_exact(filter)
    }

    /// Applies an announcement from `shard`.
    pub fn apply(&mut self, shard: usize, subject: Bytes, queue: Option<Bytes>, count: u32) {
        let key = (shard, (subject, queue));
        let old = self.weights.get(&key).copied().unwrap_or(0);
        if old == count {
            return;
        }
        let (subject, queue) = &key.1;
        let members = |c: u32| match queue {
            Some(_) => c & !LEAF_MEMBERS,
            None => u32::from(c > 0),
        };
        let total = self.totals.entry(key.1.clone()).or_insert(0);
        *total = (*total + members(count)).saturating_sub(members(old));
        if *total == 0 {
            self.totals.remove(&key.1);
        }
        if old > 0 {
            self.list.remove(
                subject,
                queue.as_ref(),
                &Remote {
                    shard,
                    weight: 0,
                    leaf: false,
                },
            );
        }
        if count > 0 {
            self.list.insert(
                subject,
                queue.as_ref(),
                Remote {
                    shard,
                    weight: count & !LEAF_MEMBERS,
                    leaf: queue.is_some() && count & LEAF_MEMBERS != 0,
                },
            );
            self.weights.insert(key, count);
        } else {
            self.weights.remove(&key);
        }
    }

    /// Peers' members of (filter, queue), leaf links' not counted.
    pub fn total(&self, key: &Key) -> u32 {
        self.totals.get(key).copied().unwrap_or(0)
    }

    /// Every (filter, queue) some peer announced.
    pub fn keys(&self) -> impl Iterator<Item = &Key> {
        self.totals.keys()
    }

    pub fn matches(&mut self, subject: &[u8]) -> Rc<Matches<Remote>> {
        self.list.matches(subject)
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }
}

/// Per-shard counts of local subscriptions by (filter, queue), to know when
/// to announce a change to peers: (all, of them leaf links').
#[derive(Default)]
pub struct LocalCounts {
    counts: HashMap<Key, (u32, u32)>,
}

/// What peers are told about a queue group: members that are not leaf
/// links, and whether leaf links have some.
fn announced(all: u32, leaf: u32) -> u32 {
    (all - leaf) | if leaf > 0 { LEAF_MEMBERS } else { 0 }
}

impl LocalCounts {
    /// Adds one (a leaf link's when `leaf`); returns the count to
    /// announce, if any.
    pub fn add(&mut self, subject: &Bytes, queue: Option<&Bytes>, leaf: bool) -> Option<u32> {
        let c = self
            .counts
            .entry((subject.clone(), queue.cloned()))
            .or_insert((0, 0));
        let before = announced(c.0, c.1);
        c.0 += 1;
        c.1 += u32::from(leaf);
        let now = announced(c.0, c.1);
        match queue {
            Some(_) => (now != before).then_some(now),
            None => (c.0 == 1).then_some(1),
        }
    }

    /// Removes one; returns the count to announce, if any.
    pub fn remove(&mut self, subject: &Bytes, queue: Option<&Bytes>, leaf: bool) -> Option<u32> {
        let key = (subject.clone(), queue.cloned());
        let c = self.counts.get_mut(&key)?;
        let before = announced(c.0, c.1);
        c.0 = c.0.saturating_sub(1);
        c.1 = c.1.saturating_sub(u32::from(leaf));
        let (all, now) = (c.0, announced(c.0, c.1));
        if all == 0 {
            self.counts.remove(&key);
        }
        match queue {
            Some(_) => (now != before).then_some(now),
            None => (all == 0).then_some(0),
        }
    }

    /// Local subscriptions on (filter, queue) that are not leaf links'.
    pub fn not_leaf(&self, key: &Key) -> u32 {
        self.counts.get(key).map_or(0, |c| c.0 - c.1)
    }

    pub fn keys(&self) -> impl Iterator<Item = &Key> {
        self.counts.keys()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_follow_announcements() {
        let mut r = RemoteInterest::default();
        let s = Bytes::from_static(b"foo");
        let q = Some(Bytes::from_static(b"q"));
        r.apply(1, s.clone(), q.clone(), 2);
        r.apply(1, s.clone(), q.clone(), 3);
        r.apply(2, s.clone(), None, 1);
        let m = r.matches(&s);
        assert_eq!(m.psubs.len(), 1);
        assert_eq!(m.qsubs[0].1[0].weight, 3);
        assert_eq!(r.total(&(s.clone(), q.clone())), 3);
        r.apply(2, s.clone(), q.clone(), 1 | LEAF_MEMBERS);
        assert_eq!(r.total(&(s.clone(), q.clone())), 4);
        assert!(r.matches(&s).qsubs[0].1.iter().any(|x| x.leaf));
        r.apply(2, s.clone(), q.clone(), 0);
        r.apply(1, s.clone(), q, 0);
        r.apply(2, s.clone(), None, 0);
        assert!(r.matches(&s).is_empty());
        assert!(r.is_empty());
    }

    #[test]
    fn local_counts_announce_transitions() {
        let mut c = LocalCounts::default();
        let s = Bytes::from_static(b"foo");
        assert_eq!(c.add(&s, None, false), Some(1));
        assert_eq!(c.add(&s, None, true), None);
        assert_eq!(c.remove(&s, None, false), None);
        assert_eq!(c.remove(&s, None, true), Some(0));
        let q = Bytes::from_static(b"q");
        assert_eq!(c.add(&s, Some(&q), false), Some(1));
        assert_eq!(c.add(&s, Some(&q), false), Some(2));
        assert_eq!(c.remove(&s, Some(&q), false), Some(1));
        // A leaf link's member is flagged, not counted.
        assert_eq!(c.add(&s, Some(&q), true), Some(1 | LEAF_MEMBERS));
        assert_eq!(c.add(&s, Some(&q), true), None);
        assert_eq!(c.not_leaf(&(s.clone(), Some(q.clone()))), 1);
        assert_eq!(c.remove(&s, Some(&q), false), Some(LEAF_MEMBERS));
    }
}
