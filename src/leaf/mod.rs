//! Leaf-node links: this server as a hub that other servers' leaf nodes
//! connect to (`leafnodes { port }`), and as a leaf that connects to hubs
//! (`leafnodes { remotes }`), speaking nats-server's leaf protocol.
//!
//! A link is a [`Client`] with [`LeafState`]: the other server's interest
//! (`LS+`) becomes subscriptions of the link in its account, so messages
//! reach it from every shard like they reach a client; deliveries go out
//! as one `LMSG` per message (`flush`). What the other side is told
//! (`interest`) is every subscription of the account on any shard, kept
//! up to date as they come and go. Every link lives on one shard
//! ([`home`]): the links' own interest, queue preference and the
//! hub-to-hub rule are then decisions of that shard alone, while clients
//! on other shards reach the links through the usual cross-shard
//! forwarding.

pub mod auth;
pub mod conn;
pub mod interest;
pub mod protocol;
pub mod remote;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use bytes::Bytes;
use smallvec::SmallVec;

use crate::client::Client;
use crate::global::{Global, ShardStats};
use crate::shard::{Msg, Shard};

/// Subjects a leaf link never carries in either direction, as the
/// reference's default for accounts that are not the system account:
/// JetStream's API and the KV/object-store subjects belong to each side's
/// own JetStream (domains, which would bridge them, are not built).
pub const JS_DENY: [&str; 3] = ["$JS.API.>", "$KV.>", "$OBJ.>"];

/// Loop detection: each server subscribes across its links to a subject of
/// its own; seeing it come back over a link means the links form a loop.
pub const LDS_PREFIX: &str = "$LDS.";

/// How long a soliciting side waits before trying again after the other
/// end reported a loop (the reference's delay).
pub const LOOP_DELAY: Duration = Duration::from_secs(30);

/// The shard that owns every leaf link: the last one, which clients fill
/// last (`shard_fill`), so links and busy local clients rarely compete.
pub fn home(g: &Global) -> usize {
    g.shards.saturating_sub(1)
}

/// This server's loop-detection subject.
pub fn lds() -> &'static str {
    static LDS: OnceLock<String> = OnceLock::new();
    LDS.get_or_init(|| {
        let id: [u8; 12] = rand::random();
        let mut s = String::from(LDS_PREFIX);
        for b in id {
            s.push(char::from(
                b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"[b as usize % 36],
            ));
        }
        s
    })
}

/// What a client connection needs to be a leaf link.
pub struct LeafState {
    /// Index into `leafnodes.remotes` when we dialed; None when accepted.
    pub remote: Option<usize>,
    /// The reference's "spoke": we dialed a hub (or the other side said it
    /// is one). A spoke tells the hub only about its own clients and
    /// accepted links, and never relays between two hubs.
    pub spoke: Cell<bool>,
    /// The CONNECT (accepted) or INFO (dialed) was processed: messages and
    /// interest flow.
    pub ready: Cell<bool>,
    pub remote_server: RefCell<String>,
    pub remote_account: RefCell<String>,
    /// Subjects not taken from the other side (dropped; their interest not
    /// announced to it).
    pub deny_in: RefCell<Vec<String>>,
    /// Subjects not sent to the other side (its interest in them ignored).
    pub deny_out: RefCell<Vec<String>>,
    /// What the other side was told: (subject, queue) → count or weight.
    pub smap: RefCell<HashMap<(Bytes, Option<Bytes>), u32>>,
    /// The other side's queue subscriptions' weights, by sid.
    pub weights: RefCell<HashMap<Bytes, u32>>,
    pub rtt: Cell<Option<Duration>>,
    pub ping_at: Cell<Option<Instant>>,
    /// Set when the other side reported a loop: wait longer to redial.
    pub loop_detected: Cell<bool>,
    /// An accepted link's CONNECT, checked again when a reload changes the
    /// server's users.
    pub connect: RefCell<Option<conn::LeafConnect>>,
}

impl LeafState {
    pub fn new(
        remote: Option<usize>,
        deny_in: Vec<String>,
        mut deny_out: Vec<String>,
        domain: Option<&str>,
    ) -> LeafState {
        let with_js = |mut v: Vec<String>| {
            v.extend(JS_DENY.iter().map(|s| s.to_string()));
            v
        };
        // Requests for our own domain are ours to answer, never the other
        // side's (as the reference).
        if let Some(d) = domain {
            deny_out.push(format!("$JS.{d}.API.>"));
        }
        LeafState {
            remote,
            spoke: Cell::new(remote.is_some()),
            ready: Cell::new(false),
            remote_server: RefCell::new(String::new()),
            remote_account: RefCell::new(String::new()),
            deny_in: RefCell::new(with_js(deny_in)),
            deny_out: RefCell::new(with_js(deny_out)),
            smap: RefCell::new(HashMap::new()),
            weights: RefCell::new(HashMap::new()),
            rtt: Cell::new(None),
            ping_at: Cell::new(None),
            loop_detected: Cell::new(false),
            connect: RefCell::new(None),
        }
    }

    /// A message on `subject` may not go out on this link.
    pub fn denies_out(&self, subject: &[u8]) -> bool {
        denied(&self.deny_out.borrow(), subject)
    }

    /// A message on `subject` from the other side is dropped.
    pub fn denies_in(&self, subject: &[u8]) -> bool {
        denied(&self.deny_in.borrow(), subject)
    }
}

/// Whether any of `list` matches `subject` (a filter counts as denied when
/// one of the list covers it as written, e.g. `$JS.API.>` covers
/// `$JS.API.STREAM.*`).
fn denied(list: &[String], subject: &[u8]) -> bool {
    list.iter()
        .any(|d| crate::subject::matches(d.as_bytes(), subject))
}

/// The `sid` under which a link keeps the other side's subscription.
pub fn sid_of(subject: &[u8], queue: Option<&[u8]>) -> Bytes {
    let mut v = subject.to_vec();
    if let Some(q) = queue {
        v.push(b' ');
        v.extend_from_slice(q);
    }
    Bytes::from(v)
}

/// Sends the message being delivered to the leaf links that delivery
/// picked since `mark`: one `LMSG` per link, naming the queue groups it
/// was picked for. `from_spoke`: it came from a hub over a spoke link, so
/// it does not go on to another hub.
pub fn flush(shard: &Shard, mark: usize, m: &Msg, from_spoke: bool) {
    // In place (no allocation per message); nothing is picked meanwhile.
    let all = shard.leaf_out.borrow();
    let picked = &all[mark.min(all.len())..];
    let subject = m.subject;
    // A consumer delivery routed by its deliver subject but shown under
    // the stored subject carries that subject after its ack reply, as the
    // reference sends it between servers (`$JS.ACK.…@<subject>`).
    let with_shown;
    let reply = match (m.shown, m.reply) {
        (Some(shown), Some(r)) if r.starts_with(b"$JS.ACK.") && !r.contains(&b'@') => {
            with_shown = [r, &b"@"[..], shown].concat();
            Some(&with_shown[..])
        }
        _ => m.reply,
    };
    for (i, (c, _)) in picked.iter().enumerate() {
        if picked[..i].iter().any(|(o, _)| o.cid == c.cid) {
            continue;
        }
        let Some(l) = &c.leaf else { continue };
        if from_spoke && l.spoke.get() {
            continue;
        }
        if l.denies_out(subject) || !may_receive(c, subject) {
            continue;
        }
        let queues: SmallVec<[&[u8]; 2]> = picked[i..]
            .iter()
            .filter(|(o, _)| o.cid == c.cid)
            .filter_map(|(_, q)| q.as_deref())
            .collect();
        let (hdr_len, body) = match m.hdr_len {
            Some(h) if !c.headers() => (None, &m.msg[h.min(m.msg.len())..]),
            h => (h, m.msg),
        };
        c.out
            .push_with(|b| protocol::write_msg(b, subject, reply, &queues, hdr_len, body));
        let n = &c.counters;
        n.out_msgs.set(n.out_msgs.get() + 1);
        n.out_bytes.set(n.out_bytes.get() + body.len() as u64);
        let st: &ShardStats = shard.stats();
        ShardStats::add(&st.out_msgs, 1);
        ShardStats::add(&st.out_bytes, body.len() as u64);
        c.check_pending();
        // A link whose peer reads slowly holds up producers like a client
        // (`Shard::unstall`), rather than growing until max_pending.
        if c.is_lagging() {
            shard.stalled.borrow_mut().push(c.clone());
        }
    }
    drop(all);
    shard.leaf_out.borrow_mut().truncate(mark);
}

/// `$JS.ACK.…@<subject>` (a consumer delivery from another server): the
/// ack reply and the subject to show, else the reply as it is.
pub fn split_ack_reply(reply: &[u8]) -> (&[u8], Option<&[u8]>) {
    if !reply.starts_with(b"$JS.ACK.") {
        return (reply, None);
    }
    let mut dots = 0;
    for (i, &b) in reply.iter().enumerate() {
        match b {
            b'.' => dots += 1,
            b'@' if dots >= 8 && i + 1 < reply.len() => {
                return (&reply[..i], Some(&reply[i + 1..]));
            }
            _ => {}
        }
    }
    (reply, None)
}

/// An accepted link whose user has permissions: what it may receive is
/// what the user may subscribe to.
fn may_receive(c: &Client, subject: &[u8]) -> bool {
    match c.who.borrow().as_ref().and_then(|w| w.permissions.clone()) {
        Some(p) => p.can_subscribe(subject, None),
        None => true,
    }
}

/// An accepted link whose user has permissions: what it may send is what
/// the user may publish.
pub fn may_send(c: &Client, subject: &[u8]) -> bool {
    match c.who.borrow().as_ref().and_then(|w| w.permissions.clone()) {
        Some(p) => p.can_publish(subject),
        None => true,
    }
}

/// Starts the links this server dials (on the home shard).
pub fn start(shard: &Rc<Shard>) {
    if shard.id != home(&shard.g) {
        return;
    }
    let Some(opts) = shard.g.opts.leafnodes.as_ref() else {
        return;
    };
    for i in 0..opts.remotes.len() {
        crate::runtime::spawn_local(remote::run(shard.clone(), i)).detach();
    }
}
