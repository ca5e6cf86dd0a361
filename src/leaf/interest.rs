//! What a leaf link tells the other side about this server's interest:
//! every subscription of the link's account, on any shard (peers'
//! announcements), counted per (subject, queue group) with queue weights,
//! less the link's own subscriptions; a spoke also leaves out what other
//! hubs asked for. `LS+`/`LS-` go out when the count crosses zero (or a
//! queue group's weight changes), as the reference's `smap` does.

use std::rc::Rc;

use bytes::Bytes;

use super::{protocol, sid_of, LeafState};
use crate::client::Client;
use crate::shard::Shard;

/// The interest for `key` (internal subject) and `queue` changed on this
/// shard (a local subscription, or a peer's announcement): tell the links
/// of that account what is new.
pub fn changed(shard: &Shard, key: &Bytes, queue: Option<&Bytes>) {
    if shard.leafs.borrow().is_empty() {
        return;
    }
    let (acc, subject) = shard.g.accounts.split_key(key);
    let links: Vec<Rc<Client>> = shard
        .leafs
        .borrow()
        .iter()
        .filter(|c| c.account() == acc)
        .cloned()
        .collect();
    for c in &links {
        let mut out = Vec::new();
        update(shard, c, key, subject, queue, &mut out);
        if !out.is_empty() {
            c.out.push(&out);
        }
    }
}

/// Tells a link that just came up everything its account has, and this
/// server's loop-detection subject.
pub fn snapshot(shard: &Shard, c: &Client) {
    let acc = c.account();
    let accounts = &shard.g.accounts;
    let mut keys: Vec<(Bytes, Option<Bytes>)> = shard
        .counts
        .borrow()
        .keys()
        .chain(shard.remote.borrow().keys())
        .filter(|(k, _)| accounts.split_key(k).0 == acc)
        .cloned()
        .collect();
    keys.sort();
    keys.dedup();
    let mut out = Vec::new();
    if let Some(l) = &c.leaf {
        let lds = Bytes::from_static(super::lds().as_bytes());
        l.smap.borrow_mut().insert((lds.clone(), None), 1);
        protocol::write_interest(&mut out, &lds, None, 1);
    }
    for (key, queue) in &keys {
        let (_, subject) = accounts.split_key(key);
        update(shard, c, key, subject, queue.as_ref(), &mut out);
    }
    if !out.is_empty() {
        c.out.push(&out);
    }
}

/// How many subscriptions (or queue members, by weight) link `c` should
/// report for (`key`, `queue`).
fn wanted(
    shard: &Shard,
    c: &Client,
    l: &LeafState,
    key: &Bytes,
    subject: &[u8],
    queue: Option<&Bytes>,
) -> u32 {
    let k = (key.clone(), queue.cloned());
    let mut n = shard.counts.borrow().not_leaf(&k) + shard.remote.borrow().total(&k);
    let sid = sid_of(subject, queue.map(|q| &q[..]));
    for other in shard.leafs.borrow().iter() {
        let Some(ol) = &other.leaf else { continue };
        if other.cid == c.cid || other.account() != c.account() {
            continue;
        }
        // Hub to hub: a spoke does not pass one hub's interest to another.
        if l.spoke.get() && ol.spoke.get() {
            continue;
        }
        if other.subs.borrow().contains_key(&sid) {
            n += match queue {
                Some(_) => ol.weights.borrow().get(&sid).copied().unwrap_or(1),
                None => 1,
            };
        }
    }
    n
}

fn update(
    shard: &Shard,
    c: &Client,
    key: &Bytes,
    subject: &[u8],
    queue: Option<&Bytes>,
    out: &mut Vec<u8>,
) {
    let Some(l) = &c.leaf else { return };
    if !l.ready.get() || c.is_closed() {
        return;
    }
    let n = if l.denies_in(subject) || !super::may_send(c, subject) {
        0
    } else {
        wanted(shard, c, l, key, subject, queue)
    };
    let k = (Bytes::copy_from_slice(subject), queue.cloned());
    let mut smap = l.smap.borrow_mut();
    let old = smap.get(&k).copied().unwrap_or(0);
    let send = match queue {
        Some(_) => n != old,
        None => (old == 0) != (n == 0),
    };
    if n == 0 {
        smap.remove(&k);
    } else {
        smap.insert(k, n);
    }
    if send {
        protocol::write_interest(out, subject, queue.map(|q| &q[..]), n);
    }
}
