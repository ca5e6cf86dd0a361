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
    pub weight: u32,
}

/// One entry per (shard, filter, queue): equality ignores the weight.
impl PartialEq for Remote {
    fn eq(&self, other: &Self) -> bool {
        self.shard == other.shard
    }
}

type Key = (Bytes, Option<Bytes>);

#[derive(Default)]
pub struct RemoteInterest {
    list: Sublist<Remote>,
    weights: HashMap<(usize, Key), u32>,
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
        if old > 0 {
            self.list
                .remove(subject, queue.as_ref(), &Remote { shard, weight: 0 });
        }
        if count > 0 {
            self.list.insert(
                subject,
                queue.as_ref(),
                Remote {
                    shard,
                    weight: count,
                },
            );
            self.weights.insert(key, count);
        } else {
            self.weights.remove(&key);
        }
    }

    pub fn matches(&mut self, subject: &[u8]) -> Rc<Matches<Remote>> {
        self.list.matches(subject)
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }
}

/// Per-shard counts of local subscriptions by (filter, queue), to know when
/// to announce a change to peers.
#[derive(Default)]
pub struct LocalCounts {
    counts: HashMap<Key, u32>,
}

impl LocalCounts {
    /// Adds one; returns the count to announce, if any.
    pub fn add(&mut self, subject: &Bytes, queue: Option<&Bytes>) -> Option<u32> {
        let c = self
            .counts
            .entry((subject.clone(), queue.cloned()))
            .or_insert(0);
        *c += 1;
        (queue.is_some() || *c == 1).then_some(*c)
    }

    /// Removes one; returns the count to announce, if any.
    pub fn remove(&mut self, subject: &Bytes, queue: Option<&Bytes>) -> Option<u32> {
        let key = (subject.clone(), queue.cloned());
        let c = self.counts.get_mut(&key)?;
        *c -= 1;
        let now = *c;
        if now == 0 {
            self.counts.remove(&key);
        }
        (queue.is_some() || now == 0).then_some(now)
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
        r.apply(1, s.clone(), q, 0);
        r.apply(2, s.clone(), None, 0);
        assert!(r.matches(&s).is_empty());
        assert!(r.is_empty());
    }

    #[test]
    fn local_counts_announce_transitions() {
        let mut c = LocalCounts::default();
        let s = Bytes::from_static(b"foo");
        assert_eq!(c.add(&s, None), Some(1));
        assert_eq!(c.add(&s, None), None);
        assert_eq!(c.remove(&s, None), None);
        assert_eq!(c.remove(&s, None), Some(0));
        let q = Bytes::from_static(b"q");
        assert_eq!(c.add(&s, Some(&q)), Some(1));
        assert_eq!(c.add(&s, Some(&q)), Some(2));
        assert_eq!(c.remove(&s, Some(&q)), Some(1));
    }
}
