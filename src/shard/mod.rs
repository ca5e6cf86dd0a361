//! A shard: one executor's connections, subscriptions and the interest its
//! peers announced. Publishing matches locally, delivers locally and hands
//! the message once to each other shard with matching interest.

pub mod interest;
pub mod link;
mod run;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;

use crate::client::{Client, SubRef};
use crate::global::{Global, ShardStats};
use crate::sublist::Sublist;
use interest::{LocalCounts, RemoteInterest};
use link::{Item, Link, SyncPoint};

pub use run::run;

pub struct Shard {
    pub id: usize,
    pub g: Arc<Global>,
    pub subs: RefCell<Sublist<SubRef>>,
    remote: RefCell<RemoteInterest>,
    counts: RefCell<LocalCounts>,
    pub clients: RefCell<BTreeMap<u64, Rc<Client>>>,
    /// Outgoing links by peer id; `None` at our own index.
    links: Vec<Option<Rc<Link>>>,
    last_sync: RefCell<Option<Arc<SyncPoint>>>,
}

const NO_RESPONDERS: &[u8] = b"NATS/1.0 503\r\n\r\n";

impl Shard {
    pub fn new(id: usize, g: Arc<Global>) -> Shard {
        let links = (0..g.shards)
            .map(|i| (i != id).then(|| Rc::new(Link::default())))
            .collect();
        Shard {
            id,
            g,
            subs: RefCell::new(Sublist::new()),
            remote: RefCell::new(RemoteInterest::default()),
            counts: RefCell::new(LocalCounts::default()),
            clients: RefCell::new(BTreeMap::new()),
            links,
            last_sync: RefCell::new(None),
        }
    }

    pub fn stats(&self) -> &ShardStats {
        &self.g.stats[self.id]
    }

    /// The latest interest change of this shard that peers may not have
    /// applied yet. A PONG waits for it, so after a flush every shard knows
    /// the client's subscriptions.
    pub fn pending_sync(&self) -> Option<Arc<SyncPoint>> {
        let mut s = self.last_sync.borrow_mut();
        if s.as_ref().is_some_and(|p| p.is_complete()) {
            *s = None;
        }
        s.clone()
    }

    pub fn add_sub(&self, sub: SubRef) {
        self.subs
            .borrow_mut()
            .insert(&sub.0.subject, sub.0.queue.as_ref(), sub.clone());
        self.stats().subscriptions.fetch_add(1, Ordering::Relaxed);
        let announce = self
            .counts
            .borrow_mut()
            .add(&sub.0.subject, sub.0.queue.as_ref());
        if let Some(count) = announce {
            self.announce(&sub.0.subject, sub.0.queue.as_ref(), count);
        }
    }

    pub fn remove_sub(&self, sub: &SubRef) {
        let removed = self
            .subs
            .borrow_mut()
            .remove(&sub.0.subject, sub.0.queue.as_ref(), sub);
        if !removed {
            return;
        }
        self.stats().subscriptions.fetch_sub(1, Ordering::Relaxed);
        let announce = self
            .counts
            .borrow_mut()
            .remove(&sub.0.subject, sub.0.queue.as_ref());
        if let Some(count) = announce {
            self.announce(&sub.0.subject, sub.0.queue.as_ref(), count);
        }
    }

    fn announce(&self, subject: &Bytes, queue: Option<&Bytes>, count: u32) {
        if self.g.shards < 2 {
            return;
        }
        let sync = SyncPoint::new(self.g.shards - 1);
        for link in self.links.iter().flatten() {
            link.push(Item::Interest {
                origin: self.id,
                subject: subject.clone(),
                queue: queue.cloned(),
                count,
                sync: sync.clone(),
            });
        }
        *self.last_sync.borrow_mut() = Some(sync);
    }

    /// Delivers a message published by a local client. Returns whether
    /// anyone was interested.
    pub fn publish(
        &self,
        from: &Client,
        subject: &Bytes,
        reply: Option<&Bytes>,
        hdr_len: Option<usize>,
        msg: &Bytes,
    ) -> bool {
        let local = self.subs.borrow_mut().matches(subject);
        let echo = from.echo();
        let mut any = false;
        for s in &local.psubs {
            if !echo && s.0.client.cid == from.cid {
                continue;
            }
            any |= self.deliver(s, subject, reply, hdr_len, msg);
        }
        if self.g.shards < 2 || self.remote.borrow().is_empty() {
            for (_, members) in &local.qsubs {
                any |= self.deliver_one_of(members, echo, from.cid, subject, reply, hdr_len, msg);
            }
        } else {
            any |= self.publish_across(from, &local, subject, reply, hdr_len, msg);
        }
        if !any && reply.is_some() && from.wants_no_responders() {
            if let Some(r) = reply {
                from.no_responders(r, NO_RESPONDERS);
            }
        }
        any
    }

    #[allow(clippy::too_many_arguments)]
    fn deliver_one_of(
        &self,
        members: &[SubRef],
        echo: bool,
        from: u64,
        subject: &Bytes,
        reply: Option<&Bytes>,
        hdr_len: Option<usize>,
        msg: &Bytes,
    ) -> bool {
        let eligible = |s: &&SubRef| echo || s.0.client.cid != from;
        let n = members.iter().filter(eligible).count();
        if n == 0 {
            return false;
        }
        let start = fastrand::usize(..n);
        // Try from a random member onwards, in case one is closing.
        for s in members
            .iter()
            .filter(eligible)
            .cycle()
            .skip(start)
            .take(n)
        {
            if self.deliver(s, subject, reply, hdr_len, msg) {
                return true;
            }
        }
        false
    }

    fn publish_across(
        &self,
        from: &Client,
        local: &crate::sublist::Matches<SubRef>,
        subject: &Bytes,
        reply: Option<&Bytes>,
        hdr_len: Option<usize>,
        msg: &Bytes,
    ) -> bool {
        let remote = self.remote.borrow_mut().matches(subject);
        let echo = from.echo();
        let mut any = false;
        let n = self.g.shards;
        let mut plain = vec![false; n];
        let mut queues: Vec<Vec<Bytes>> = vec![Vec::new(); n];
        for r in &remote.psubs {
            plain[r.shard] = true;
        }
        // Queue groups: weigh local members against remote shards' counts
        // and pick exactly one member across all shards.
        let mut seen: Vec<&Bytes> = Vec::new();
        for (q, members) in &local.qsubs {
            seen.push(q);
            let rem = remote.qsubs.iter().find(|(rq, _)| rq == q).map(|(_, r)| r);
            let local_n = members
                .iter()
                .filter(|s| echo || s.0.client.cid != from.cid)
                .count() as u64;
            let remote_w: u64 = rem.map_or(0, |r| r.iter().map(|x| x.weight as u64).sum());
            if local_n + remote_w == 0 {
                continue;
            }
            let pick = fastrand::u64(..local_n + remote_w);
            if pick < local_n {
                any |= self.deliver_one_of(members, echo, from.cid, subject, reply, hdr_len, msg);
            } else if let Some(r) = rem {
                let mut left = pick - local_n;
                for x in r {
                    if left < x.weight as u64 {
                        queues[x.shard].push(q.clone());
                        break;
                    }
                    left -= x.weight as u64;
                }
            }
        }
        for (q, r) in &remote.qsubs {
            if seen.contains(&q) {
                continue;
            }
            let total: u64 = r.iter().map(|x| x.weight as u64).sum();
            if total == 0 {
                continue;
            }
            let mut left = fastrand::u64(..total);
            for x in r {
                if left < x.weight as u64 {
                    queues[x.shard].push(q.clone());
                    break;
                }
                left -= x.weight as u64;
            }
        }
        for (peer, link) in self.links.iter().enumerate() {
            let Some(link) = link else { continue };
            let qs = std::mem::take(&mut queues[peer]);
            if !plain[peer] && qs.is_empty() {
                continue;
            }
            any = true;
            link.push(Item::Msg {
                subject: subject.clone(),
                reply: reply.cloned(),
                hdr_len,
                msg: msg.clone(),
                plain: plain[peer],
                queues: qs,
            });
        }
        any
    }

    /// Resolves once no link to a peer is over its high-water mark, so a
    /// fast publisher is paced by the slowest shard it feeds.
    pub async fn link_space(&self) {
        for link in self.links.iter().flatten() {
            if link.is_congested() {
                link.space().await;
            }
        }
    }

    /// Applies what a peer sent.
    fn receive(&self, item: Item) {
        match item {
            Item::Interest {
                origin,
                subject,
                queue,
                count,
                sync,
            } => {
                self.remote
                    .borrow_mut()
                    .apply(origin, subject, queue, count);
                sync.done();
            }
            Item::Msg {
                subject,
                reply,
                hdr_len,
                msg,
                plain,
                queues,
            } => {
                let local = self.subs.borrow_mut().matches(&subject);
                if plain {
                    for s in &local.psubs {
                        self.deliver(s, &subject, reply.as_ref(), hdr_len, &msg);
                    }
                }
                for q in &queues {
                    if let Some((_, members)) = local.qsubs.iter().find(|(n, _)| n == q) {
                        self.deliver_one_of(members, true, 0, &subject, reply.as_ref(), hdr_len, &msg);
                    }
                }
            }
        }
    }

    /// Writes one message to one subscription. False if the subscription
    /// could not take it (closed, or past its auto-unsubscribe limit).
    pub fn deliver(
        &self,
        sub: &SubRef,
        subject: &Bytes,
        reply: Option<&Bytes>,
        hdr_len: Option<usize>,
        msg: &Bytes,
    ) -> bool {
        let s = &sub.0;
        let c = &s.client;
        if c.is_closed() {
            return false;
        }
        let max = s.max.get();
        let delivered = s.delivered.get() + 1;
        if max > 0 && delivered > max {
            return false;
        }
        s.delivered.set(delivered);
        c.deliver(&s.sid, subject, reply, hdr_len, msg);
        if max > 0 && delivered == max {
            c.drop_sub(&s.sid);
            self.remove_sub(sub);
        }
        true
    }

    pub fn link(&self, peer: usize) -> Option<&Rc<Link>> {
        self.links.get(peer).and_then(|l| l.as_ref())
    }
}
