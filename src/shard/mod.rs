//! A shard: one executor's connections, subscriptions and the interest its
//! peers announced. Publishing matches locally, delivers locally and hands
//! the message once to each other shard with matching interest.

pub mod backlog;
pub mod bus;
pub mod interest;
pub mod link;
mod run;
pub mod sink;

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::client::{Client, SubRef};
use crate::global::{Global, ShardStats};
use crate::sublist::Sublist;
use interest::{LocalCounts, RemoteInterest};
use link::{Item, Link, MsgRef, QueueName, Span, SyncPoint};

pub use run::run;

pub struct Shard {
    pub id: usize,
    pub g: Arc<Global>,
    pub subs: RefCell<Sublist<SubRef>>,
    pub(crate) remote: RefCell<RemoteInterest>,
    pub(crate) counts: RefCell<LocalCounts>,
    pub clients: RefCell<BTreeMap<u64, Rc<Client>>>,
    /// Leaf links owned here, once their handshake is done (see `leaf`).
    pub leafs: RefCell<Vec<Rc<Client>>>,
    /// Leaf links the current delivery picked (and for which queue group):
    /// each gets one `LMSG` per message, however many of its
    /// subscriptions matched (see `leaf::flush`).
    pub(crate) leaf_out: RefCell<Vec<(Rc<Client>, Option<Bytes>)>>,
    /// Outgoing links by peer id; `None` at our own index.
    links: Vec<Option<Rc<Link>>>,
    last_sync: RefCell<Option<Arc<SyncPoint>>>,
    /// Subscribers whose outbound buffer passed half of max_pending during
    /// the current delivery run; the producer waits for them (see `unstall`).
    pub(crate) stalled: RefCell<Vec<Rc<Client>>>,
    /// Internal sinks (streams) over their backlog mark; producers wait
    /// for them as for stalled clients (see `unstall`).
    backlogged: RefCell<Vec<Rc<backlog::Backlog>>>,
    /// The streams placed here (set at start when JetStream is on).
    pub js: std::cell::OnceCell<Rc<crate::jetstream::JetStream>>,
    /// The client whose publish is being delivered now (0: none), for
    /// shard-local internal subscribers that answer about the requester
    /// (`$SYS.REQ.USER.INFO`, see `system::user`).
    pub(crate) publisher: Cell<u64>,
}

const NO_RESPONDERS: &[u8] = b"NATS/1.0 503\r\n\r\n";

/// A producer's waits for lagging subscribers, as nats-server's: one wait
/// is short (longer once the subscriber is at max_pending), and all of them
/// in one read of a producer, or one stretch of a link from another shard,
/// add up to at most `STALL_TOTAL`.
const STALL_SHORT: Duration = Duration::from_millis(2);
const STALL_LONG: Duration = Duration::from_millis(5);
pub const STALL_TOTAL: Duration = Duration::from_millis(10);
/// The longest a producer waits for one subscriber that keeps reading.
const STALL_MAX: Duration = Duration::from_secs(1);

/// Who published, as delivery needs to know it.
pub struct Origin<'a> {
    pub cid: u64,
    pub echo: bool,
    /// Set when the message went to another shard (the next PONG waits).
    pub forwarded: Option<&'a std::cell::Cell<bool>>,
    /// The publisher wants a 503 status when nobody gets its request.
    pub no_responders: bool,
    /// Only these queue groups may take it (a message from a leaf link
    /// names the groups it was sent for; None: any group).
    pub queues: Option<&'a [&'a [u8]]>,
    /// It came over a leaf link on which we are the spoke: it must not go
    /// on to another such link (hub to hub).
    pub spoke: bool,
}

impl Origin<'_> {
    fn allows(&self, group: &[u8]) -> bool {
        self.queues.is_none_or(|qs| qs.contains(&group))
    }
}

/// Whether a subscription belongs to a leaf link.
pub fn is_leaf(s: &SubRef) -> bool {
    matches!(&s.0.sink, sink::Sink::Client(c) if c.leaf.is_some())
}

/// One message as delivery sees it: slices of wherever it lives.
pub struct Msg<'a> {
    /// The buffer the parts below slice (internal subscribers keep parts
    /// of it without copying).
    pub data: &'a Bytes,
    pub subject: &'a [u8],
    /// The subject subscribers see when it differs from the one it is
    /// routed by (a consumer delivers a stream message to an inbox under
    /// the message's own subject).
    pub shown: Option<&'a [u8]>,
    pub reply: Option<&'a [u8]>,
    pub hdr_len: Option<usize>,
    pub msg: &'a [u8],
}

/// Picks a remote shard by weight among those not in `tried` (bit per id).
fn pick_excluding(r: &[interest::Remote], tried: u64) -> Option<usize> {
    let total: u64 = r
        .iter()
        .filter(|x| tried & (1u64 << x.shard) == 0)
        .map(|x| x.weight as u64)
        .sum();
    if total == 0 {
        return None;
    }
    let mut at = fastrand::u64(..total);
    for x in r.iter().filter(|x| tried & (1u64 << x.shard) == 0) {
        if at < x.weight as u64 {
            return Some(x.shard);
        }
        at -= x.weight as u64;
    }
    None
}

/// Picks the remote shard whose cumulative weight covers `at`.
fn pick_weighted(r: &[interest::Remote], mut at: u64) -> Option<usize> {
    for x in r {
        if at < x.weight as u64 {
            return Some(x.shard);
        }
        at -= x.weight as u64;
    }
    None
}

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
            leafs: RefCell::new(Vec::new()),
            leaf_out: RefCell::new(Vec::new()),
            links,
            last_sync: RefCell::new(None),
            stalled: RefCell::new(Vec::new()),
            backlogged: RefCell::new(Vec::new()),
            js: std::cell::OnceCell::new(),
            publisher: Cell::new(0),
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
            .insert(&sub.0.key, sub.0.queue.as_ref(), sub.clone());
        self.stats().subscriptions.fetch_add(1, Ordering::Relaxed);
        let announce =
            self.counts
                .borrow_mut()
                .add(&sub.0.key, sub.0.queue.as_ref(), is_leaf(&sub));
        if let Some(count) = announce {
            self.announce(&sub.0.key, sub.0.queue.as_ref(), count);
        }
        crate::leaf::interest::changed(self, &sub.0.key, sub.0.queue.as_ref());
    }

    pub fn remove_sub(&self, sub: &SubRef) {
        let removed = self
            .subs
            .borrow_mut()
            .remove(&sub.0.key, sub.0.queue.as_ref(), sub);
        if !removed {
            return;
        }
        self.stats().subscriptions.fetch_sub(1, Ordering::Relaxed);
        let announce =
            self.counts
                .borrow_mut()
                .remove(&sub.0.key, sub.0.queue.as_ref(), is_leaf(sub));
        if let Some(count) = announce {
            self.announce(&sub.0.key, sub.0.queue.as_ref(), count);
        }
        crate::leaf::interest::changed(self, &sub.0.key, sub.0.queue.as_ref());
    }

    fn announce(&self, subject: &Bytes, queue: Option<&Bytes>, count: u32) {
        if self.g.shards < 2 {
            return;
        }
        tracing::trace!(
            "shard {} announces {:?} x{count}",
            self.id,
            String::from_utf8_lossy(subject)
        );
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

    /// Delivers a message published by a local client. `subject`, `reply`
    /// and `msg` are slices of `data`, which travels to other shards as is.
    /// Returns whether anyone was interested.
    #[allow(clippy::too_many_arguments)]
    pub fn publish(
        &self,
        from: &Client,
        data: &Bytes,
        subject: &[u8],
        reply: Option<&[u8]>,
        hdr_len: Option<usize>,
        msg: &[u8],
    ) -> bool {
        let m = Msg {
            data,
            subject,
            shown: None,
            reply,
            hdr_len,
            msg,
        };
        let accounts = &self.g.accounts;
        let acc = from.account();
        let o = Origin {
            cid: from.cid,
            echo: from.echo(),
            forwarded: Some(&from.forwarded),
            no_responders: reply.is_some() && from.wants_no_responders(),
            queues: None,
            spoke: false,
        };
        self.publisher.set(from.cid);
        let any = if accounts.multi {
            self.publish_accounts(&o, acc, data, &m)
        } else {
            self.publish_in(&o, 0, data, &m)
        };
        self.publisher.set(0);
        if !any && reply.is_some() && from.wants_no_responders() {
            if let Some(r) = reply {
                from.no_responders(r, NO_RESPONDERS);
            }
        }
        any
    }

    /// With accounts: the publisher's own account, the accounts importing
    /// this stream, the account serving an imported service, and responses
    /// crossing back to the account that imported a service.
    pub(crate) fn publish_accounts(&self, from: &Origin, acc: u32, data: &Bytes, m: &Msg) -> bool {
        let accounts = &self.g.accounts;
        if crate::account::Responses::is_reply(m.subject) {
            if let Some((importer, reply)) = self.g.responses.route(acc, m.subject) {
                return self.publish_copy(from, importer, &reply, m.reply, m);
            }
        }
        if let Some(t) = accounts.service_target(acc, &String::from_utf8_lossy(m.subject)) {
            // The reply is mapped per request; when too many are open the
            // request still goes, but its answer cannot come back.
            let reply = m.reply.and_then(|r| {
                self.g
                    .responses
                    .open(t.exporter, acc, r, t.response, t.threshold)
            });
            return self.publish_copy(from, t.exporter, t.subject.as_bytes(), reply.as_deref(), m);
        }
        let mut any = self.publish_in(from, acc, data, m);
        for (importer, mapped) in accounts.stream_targets(acc, &String::from_utf8_lossy(m.subject))
        {
            any |= self.publish_copy(from, importer, mapped.as_bytes(), m.reply, m);
        }
        any
    }

    /// Publishes `m` into account `acc` under another subject/reply: the
    /// parts are copied into one new buffer that peers can share.
    fn publish_copy(
        &self,
        from: &Origin,
        acc: u32,
        subject: &[u8],
        reply: Option<&[u8]>,
        m: &Msg,
    ) -> bool {
        let mut buf =
            Vec::with_capacity(subject.len() + reply.map_or(0, |r| r.len()) + m.msg.len());
        buf.extend_from_slice(subject);
        if let Some(r) = reply {
            buf.extend_from_slice(r);
        }
        buf.extend_from_slice(m.msg);
        let data = Bytes::from(buf);
        let s_end = subject.len();
        let r_end = s_end + reply.map_or(0, |r| r.len());
        let copy = Msg {
            data: &data,
            subject: &data[..s_end],
            shown: None,
            reply: reply.map(|_| &data[s_end..r_end]),
            hdr_len: m.hdr_len,
            msg: &data[r_end..],
        };
        self.publish_in(from, acc, &data, &copy)
    }

    /// Delivers `m` within account `acc`: local subscribers, and once to
    /// each peer shard with matching interest.
    pub(crate) fn publish_in(&self, from: &Origin, acc: u32, data: &Bytes, m: &Msg) -> bool {
        let mut key_buf = Vec::new();
        let key = self.g.accounts.key(acc, m.subject, &mut key_buf);
        let local = self.subs.borrow_mut().matches(key);
        let echo = from.echo;
        let mut any = false;
        // Deliveries to leaf links made below (an internal subscriber may
        // publish in between: its own are flushed by its own call).
        let mark = self.leaf_out.borrow().len();
        for s in &local.psubs {
            if !echo && s.0.cid() == from.cid {
                continue;
            }
            any |= self.deliver(s, m);
        }
        if self.g.shards < 2 || self.remote.borrow().is_empty() {
            for (q, members) in &local.qsubs {
                if from.allows(q) {
                    any |= self.deliver_one_of(members, echo, from.cid, m);
                }
            }
        } else {
            any = self.publish_across(from, acc, key, &local, data, m, any);
        }
        if self.leaf_out.borrow().len() > mark {
            crate::leaf::flush(self, mark, m, from.spoke);
        }
        any
    }

    /// Delivers to one member of a queue group: one that is not a leaf
    /// link if there is any (the reference prefers them), tried from a
    /// random one onwards in case one is closing.
    fn deliver_one_of(&self, members: &[SubRef], echo: bool, from: u64, m: &Msg) -> bool {
        for leafs in [false, true] {
            let eligible = |s: &&SubRef| (echo || s.0.cid() != from) && is_leaf(s) == leafs;
            let n = members.iter().filter(eligible).count();
            if n == 0 {
                continue;
            }
            let start = fastrand::usize(..n);
            for s in members.iter().filter(eligible).cycle().skip(start).take(n) {
                if self.deliver(s, m) {
                    return true;
                }
            }
        }
        false
    }

    #[allow(clippy::too_many_arguments)]
    fn publish_across(
        &self,
        from: &Origin,
        acc: u32,
        key: &[u8],
        local: &crate::sublist::Matches<SubRef>,
        data: &Bytes,
        m: &Msg,
        delivered: bool,
    ) -> bool {
        let remote = self.remote.borrow_mut().matches(key);
        if remote.is_empty() {
            // Local plain subscribers count too (a request answered here
            // must not also get a no-responders status).
            let mut any = delivered;
            for (q, members) in &local.qsubs {
                if from.allows(q) {
                    any |= self.deliver_one_of(members, from.echo, from.cid, m);
                }
            }
            return any;
        }
        let echo = from.echo;
        let mut any = delivered;
        // Queue groups: weigh local members against remote shards' counts
        // and pick exactly one member across all shards. The picks for
        // other shards are gathered as (shard, group).
        let mut picks: smallvec::SmallVec<[(usize, &Bytes); 2]> = smallvec::SmallVec::new();
        for (q, members) in &local.qsubs {
            if !from.allows(q) {
                continue;
            }
            let rem = remote.qsubs.iter().find(|(rq, _)| rq == q).map(|(_, r)| r);
            let local_n = members
                .iter()
                .filter(|s| (echo || s.0.cid() != from.cid) && !is_leaf(s))
                .count() as u64;
            let remote_w: u64 = rem.map_or(0, |r| r.iter().map(|x| x.weight as u64).sum());
            if local_n + remote_w == 0 {
                // Only leaf links have members: ours, else a peer's.
                if self.deliver_one_of(members, echo, from.cid, m) {
                    any = true;
                } else if let Some(x) = rem.and_then(|r| r.iter().find(|x| x.leaf)) {
                    picks.push((x.shard, q));
                }
                continue;
            }
            let pick = fastrand::u64(..local_n + remote_w);
            if pick < local_n {
                if self.deliver_one_of(members, echo, from.cid, m) {
                    any = true;
                } else if let Some(shard) = rem.and_then(|r| pick_excluding(r, 0)) {
                    // Every local member just left: a remote one takes it.
                    picks.push((shard, q));
                }
            } else if let Some(r) = rem {
                if let Some(shard) = pick_weighted(r, pick - local_n) {
                    picks.push((shard, q));
                }
            }
        }
        for (q, r) in &remote.qsubs {
            if !from.allows(q) || local.qsubs.iter().any(|(lq, _)| lq == q) {
                continue;
            }
            let total: u64 = r.iter().map(|x| x.weight as u64).sum();
            if total == 0 {
                if let Some(x) = r.iter().find(|x| x.leaf) {
                    picks.push((x.shard, q));
                }
                continue;
            }
            if let Some(shard) = pick_weighted(r, fastrand::u64(..total)) {
                picks.push((shard, q));
            }
        }
        let mut forwards: smallvec::SmallVec<[(usize, MsgRef); 2]> = smallvec::SmallVec::new();
        for (peer, link) in self.links.iter().enumerate() {
            if link.is_none() {
                continue;
            }
            let plain = remote.psubs.iter().any(|r| r.shard == peer);
            let queues: smallvec::SmallVec<[QueueName; 1]> = picks
                .iter()
                .filter(|(s, _)| *s == peer)
                .map(|(_, q)| QueueName::new(q))
                .collect();
            if !plain && queues.is_empty() {
                continue;
            }
            forwards.push((
                peer,
                MsgRef {
                    subject: Span::of(data, m.subject),
                    shown: m.shown.map(|s| Span::of(data, s)),
                    reply: m.reply.map(|r| Span::of(data, r)),
                    hdr_len: m.hdr_len.map(|h| h as u32),
                    msg: Span::of(data, m.msg),
                    plain,
                    queues,
                    tried: 0,
                    account: acc,
                    no_responders: false,
                },
            ));
        }
        // A request whose only taker is on one other shard: if that taker
        // left meanwhile, that shard answers with the 503 status for us.
        if from.no_responders && !any && forwards.len() == 1 {
            forwards[0].1.no_responders = true;
        }
        for (peer, r) in forwards {
            any = true;
            if let Some(f) = from.forwarded {
                f.set(true);
            }
            if let Some(link) = self.link(peer) {
                link.push_msg(data, r);
            }
        }
        any
    }

    pub fn has_stalled(&self) -> bool {
        !self.stalled.borrow().is_empty() || !self.backlogged.borrow().is_empty()
    }

    pub fn any_congested(&self) -> bool {
        self.links.iter().flatten().any(|l| l.is_congested())
    }

    /// Waits for subscribers that fell behind in the last deliveries, as
    /// nats-server stalls a fast producer: a burst then paces itself to its
    /// readers instead of tripping max_pending on a reader that is merely
    /// slower than the producer. The wait lasts while the subscriber makes
    /// progress (up to `STALL_MAX`); one that writes nothing for a short
    /// while is given up, and all such fruitless waits of this read (or
    /// link item) stay within `budget`: a stuck subscriber holds nobody
    /// for long and is left to max_pending.
    pub async fn unstall(&self, budget: &Cell<Duration>) {
        self.drain_backlogs().await;
        if self.stalled.borrow().is_empty() {
            return;
        }
        let stalled: Vec<Rc<Client>> = std::mem::take(&mut *self.stalled.borrow_mut());
        for c in stalled {
            let began = std::time::Instant::now();
            loop {
                let left = budget.get();
                if left.is_zero() {
                    return;
                }
                let limits = c.limits.get();
                let ttl = if c.out.pending() >= limits.max_pending {
                    STALL_LONG
                } else {
                    STALL_SHORT
                };
                let mark = c.out.progress();
                let start = std::time::Instant::now();
                let below = c.out.below(limits.max_pending / 2);
                if crate::runtime::timeout(ttl.min(left), below)
                    .await
                    .is_some()
                {
                    break;
                }
                if c.out.progress() == mark {
                    budget.set(left.saturating_sub(start.elapsed()));
                    break;
                }
                if began.elapsed() >= limits.write_deadline.min(STALL_MAX) {
                    break;
                }
            }
        }
    }

    /// A point that completes once every peer has applied everything this
    /// shard sent it so far.
    pub fn barrier(&self) -> Option<Arc<SyncPoint>> {
        if self.g.shards < 2 {
            return None;
        }
        let sync = SyncPoint::new(self.g.shards - 1);
        for link in self.links.iter().flatten() {
            link.push(Item::Barrier(sync.clone()));
        }
        Some(sync)
    }

    /// A forwarded queue message found no member here (it left after the
    /// sender picked us): hand it to another shard that announced members
    /// and has not tried yet, so queue delivery loses nothing.
    fn pass_on(&self, data: &Bytes, r: &MsgRef, q: &QueueName, m: &Msg) -> bool {
        let tried = r.tried | (1u64 << self.id);
        let mut key_buf = Vec::new();
        let key = self.g.accounts.key(r.account, m.subject, &mut key_buf);
        let remote = self.remote.borrow_mut().matches(key);
        let Some((_, members)) = remote.qsubs.iter().find(|(n, _)| n == q.as_bytes()) else {
            return false;
        };
        let Some(peer) = pick_excluding(members, tried) else {
            return false;
        };
        if let Some(link) = self.link(peer) {
            link.push_msg(
                data,
                MsgRef {
                    subject: r.subject,
                    shown: r.shown,
                    reply: r.reply,
                    hdr_len: r.hdr_len,
                    msg: r.msg,
                    plain: false,
                    queues: smallvec::smallvec![q.clone()],
                    tried,
                    account: r.account,
                    no_responders: r.no_responders,
                },
            );
            return true;
        }
        false
    }

    /// Publishes the no-responders status to `reply` in `acc` (it finds
    /// the requester wherever it is).
    fn no_responders_to(&self, acc: u32, reply: &[u8]) {
        let mut buf = reply.to_vec();
        buf.extend_from_slice(NO_RESPONDERS);
        let data = Bytes::from(buf);
        let m = Msg {
            data: &data,
            subject: &data[..reply.len()],
            shown: None,
            reply: None,
            hdr_len: Some(NO_RESPONDERS.len()),
            msg: &data[reply.len()..],
        };
        let o = Origin {
            cid: 0,
            echo: true,
            forwarded: None,
            no_responders: false,
            queues: None,
            spoke: false,
        };
        self.publish_in(&o, acc, &data, &m);
    }

    /// Resolves once no link to a peer is over its high-water marks, so a
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
                tracing::trace!(
                    "shard {} applies interest {:?} x{count} from shard {origin}",
                    self.id,
                    String::from_utf8_lossy(&subject)
                );
                self.remote
                    .borrow_mut()
                    .apply(origin, subject.clone(), queue.clone(), count);
                crate::leaf::interest::changed(self, &subject, queue.as_ref());
                sync.done();
            }
            Item::Barrier(sync) => sync.done(),
            Item::Msgs { data, msgs } => {
                for r in &msgs {
                    self.receive_msg(&data, r);
                }
            }
        }
    }

    /// Delivers one message a peer forwarded.
    pub fn receive_msg(&self, data: &Bytes, r: &MsgRef) {
        let m = Msg {
            data,
            subject: r.subject.get(data),
            shown: r.shown.map(|s| s.get(data)),
            reply: r.reply.map(|s| s.get(data)),
            hdr_len: r.hdr_len.map(|h| h as usize),
            msg: r.msg.get(data),
        };
        let mut key_buf = Vec::new();
        let key = self.g.accounts.key(r.account, m.subject, &mut key_buf);
        let local = self.subs.borrow_mut().matches(key);
        let mut any = false;
        let mark = self.leaf_out.borrow().len();
        if r.plain {
            for s in &local.psubs {
                any |= self.deliver(s, &m);
            }
        }
        for q in &r.queues {
            let name = q.as_bytes();
            let delivered = local
                .group(name)
                .is_some_and(|members| self.deliver_one_of(members, true, 0, &m));
            if !delivered {
                any |= self.pass_on(data, r, q, &m);
            } else {
                any = true;
            }
        }
        if self.leaf_out.borrow().len() > mark {
            crate::leaf::flush(self, mark, &m, false);
        }
        if r.no_responders && !any {
            if let Some(reply) = m.reply {
                self.no_responders_to(r.account, reply);
            }
        }
    }

    /// Writes one message to one subscription. False if the subscription
    /// could not take it (closed, or past its auto-unsubscribe limit).
    pub fn deliver(&self, sub: &SubRef, m: &Msg) -> bool {
        let s = &sub.0;
        let c = match &s.sink {
            sink::Sink::Client(c) => c,
            sink::Sink::Internal(h) => {
                h(m);
                return true;
            }
        };
        if c.is_closed() {
            return false;
        }
        if c.leaf.is_some() {
            // One LMSG per link and message, naming the groups it is for.
            self.leaf_out
                .borrow_mut()
                .push((c.clone(), s.queue.clone()));
            return true;
        }
        {
            let mut perms = c.perms.borrow_mut();
            if let Some(p) = perms.as_mut() {
                // A subscription wider than what the user may see gets only
                // the allowed subjects; replies it may answer are noted.
                if !p.should_deliver(m.subject, s.queue.as_deref()) {
                    return false;
                }
                if let Some(r) = m.reply {
                    if p.tracks_replies() {
                        p.note_delivered(r);
                    }
                }
            }
        }
        let max = s.max.get();
        let delivered = s.delivered.get() + 1;
        if max > 0 && delivered > max {
            return false;
        }
        s.delivered.set(delivered);
        c.deliver(&s.sid, m);
        if c.is_lagging() {
            self.stalled.borrow_mut().push(c.clone());
        }
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
