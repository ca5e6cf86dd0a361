//! Who a subscription delivers to: a client connection, or a handler inside
//! the server (stream capture, the JetStream API, later consumer acks and
//! links). Both live in the same sublist and cross shards the same way, so
//! account isolation and forwarding need no second code path.

use std::rc::Rc;

use bytes::Bytes;

use crate::client::Client;

use super::Msg;

/// A server-side subscriber. It runs on the shard that owns the
/// subscription, synchronously inside delivery: it must not block, and
/// does its slow work (storage, replies) in tasks it spawns.
pub type Handler = Rc<dyn Fn(&Msg)>;

#[derive(Clone)]
pub enum Sink {
    Client(Rc<Client>),
    Internal(Handler),
}

impl Sink {
    pub fn cid(&self) -> u64 {
        match self {
            Sink::Client(c) => c.cid,
            Sink::Internal(_) => 0,
        }
    }
}

/// An owned copy of a delivered message's parts, sharing the buffer they
/// came in when possible (no copy on the way into a stream).
#[derive(Debug, Clone)]
pub struct Owned {
    pub subject: Bytes,
    pub reply: Option<Bytes>,
    /// Header block (`NATS/1.0…\r\n\r\n`), empty when none.
    pub headers: Bytes,
    pub payload: Bytes,
}

impl Owned {
    pub fn of(m: &Msg) -> Owned {
        let part = |s: &[u8]| slice_of(m.data, s);
        let (h, p) = match m.hdr_len {
            Some(h) if h <= m.msg.len() => m.msg.split_at(h),
            _ => (&m.msg[..0], m.msg),
        };
        Owned {
            subject: part(m.subject),
            reply: m.reply.map(part),
            headers: part(h),
            payload: part(p),
        }
    }
}

/// `s` as a slice of `data` when it lies inside it, else a copy.
fn slice_of(data: &Bytes, s: &[u8]) -> Bytes {
    let base = data.as_ptr() as usize;
    let at = s.as_ptr() as usize;
    if s.is_empty() {
        return Bytes::new();
    }
    if at >= base && at + s.len() <= base + data.len() {
        data.slice_ref(s)
    } else {
        Bytes::copy_from_slice(s)
    }
}

impl super::Shard {
    /// Subscribes a server-side handler to `subject` (optionally in a
    /// queue group) in account `acc`. Peers learn of it like of a client's
    /// subscription. Keep the returned reference to unsubscribe.
    pub fn subscribe_internal(
        &self,
        acc: u32,
        subject: &str,
        queue: Option<&str>,
        h: Handler,
    ) -> crate::client::SubRef {
        let subject = Bytes::copy_from_slice(subject.as_bytes());
        let key = self.g.accounts.key_bytes(acc, &subject);
        let sub = crate::client::SubRef(Rc::new(crate::client::Sub {
            sink: Sink::Internal(h),
            subject,
            key,
            queue: queue.map(|q| Bytes::copy_from_slice(q.as_bytes())),
            sid: Bytes::new(),
            max: std::cell::Cell::new(0),
            delivered: std::cell::Cell::new(0),
        }));
        self.add_sub(sub.clone());
        sub
    }

    /// [`Self::subscribe_internal`] for this shard's own publishers only:
    /// peers are not told, so a message published on another shard never
    /// comes here (the reference's "internal only" subscriptions, for
    /// requests this shard answers about its own connection). It stays for
    /// the shard's life.
    pub fn subscribe_local_internal(&self, acc: u32, subject: &str, h: Handler) {
        let subject = Bytes::copy_from_slice(subject.as_bytes());
        let key = self.g.accounts.key_bytes(acc, &subject);
        let sub = crate::client::SubRef(Rc::new(crate::client::Sub {
            sink: Sink::Internal(h),
            subject,
            key,
            queue: None,
            sid: Bytes::new(),
            max: std::cell::Cell::new(0),
            delivered: std::cell::Cell::new(0),
        }));
        self.subs.borrow_mut().insert(&sub.0.key, None, sub.clone());
    }

    /// Publishes a message the server itself makes (API replies, PubAcks,
    /// advisories) into account `acc`; it reaches subscribers on every
    /// shard like a client's publish, imports and service responses
    /// included.
    pub fn publish_internal(
        &self,
        acc: u32,
        subject: &[u8],
        reply: Option<&[u8]>,
        headers: Option<&[u8]>,
        payload: &[u8],
    ) -> bool {
        self.publish_internal_as(acc, subject, None, reply, headers, payload)
    }

    /// [`Self::publish_internal`] routed by `subject` but shown to
    /// subscribers under `shown` (consumer deliveries: the inbox routes,
    /// the stream message's subject is what the client reads).
    pub fn publish_internal_as(
        &self,
        acc: u32,
        subject: &[u8],
        shown: Option<&[u8]>,
        reply: Option<&[u8]>,
        headers: Option<&[u8]>,
        payload: &[u8],
    ) -> bool {
        let slen = shown.map_or(0, |s| s.len());
        let rlen = reply.map_or(0, |r| r.len());
        let hlen = headers.map_or(0, |h| h.len());
        let mut buf = Vec::with_capacity(subject.len() + slen + rlen + hlen + payload.len());
        buf.extend_from_slice(subject);
        if let Some(s) = shown {
            buf.extend_from_slice(s);
        }
        if let Some(r) = reply {
            buf.extend_from_slice(r);
        }
        if let Some(h) = headers {
            buf.extend_from_slice(h);
        }
        buf.extend_from_slice(payload);
        let data = Bytes::from(buf);
        let s_end = subject.len();
        let sh_end = s_end + slen;
        let r_end = sh_end + rlen;
        let m = Msg {
            data: &data,
            subject: &data[..s_end],
            shown: shown.map(|_| &data[s_end..sh_end]),
            reply: reply.map(|_| &data[sh_end..r_end]),
            hdr_len: headers.map(|_| hlen),
            msg: &data[r_end..],
        };
        let o = super::Origin {
            cid: 0,
            echo: true,
            forwarded: None,
            no_responders: false,
            queues: None,
            spoke: false,
        };
        if self.g.accounts.multi {
            self.publish_accounts(&o, acc, &data, &m)
        } else {
            self.publish_in(&o, acc, &data, &m)
        }
    }
}

impl super::Shard {
    /// Whether anything, on any shard, subscribes to `subject` in `acc`.
    pub fn has_interest(&self, acc: u32, subject: &[u8]) -> bool {
        let mut buf = Vec::new();
        let key = self.g.accounts.key(acc, subject, &mut buf);
        !self.subs.borrow_mut().matches(key).is_empty()
            || !self.remote.borrow_mut().matches(key).is_empty()
    }

    /// Whether a member of queue group `group`, on any shard, subscribes to
    /// `subject` in `acc` (a push consumer with a deliver group is bound
    /// only then).
    pub fn has_queue_interest(&self, acc: u32, subject: &[u8], group: &[u8]) -> bool {
        let mut buf = Vec::new();
        let key = self.g.accounts.key(acc, subject, &mut buf);
        let local = self.subs.borrow_mut().matches(key);
        if local.qsubs.iter().any(|(q, m)| q == group && !m.is_empty()) {
            return true;
        }
        let remote = self.remote.borrow_mut().matches(key);
        remote
            .qsubs
            .iter()
            .any(|(q, r)| q == group && !r.is_empty())
    }

    /// Whether some subscription, on any shard, names exactly `subject` in
    /// `acc` (a wildcard that covers it does not count: a client's inbox
    /// wildcard is there before its own subscription for a reply stream).
    pub fn has_exact_interest(&self, acc: u32, subject: &[u8]) -> bool {
        let mut buf = Vec::new();
        let key = self.g.accounts.key(acc, subject, &mut buf);
        self.subs.borrow().has_exact(key) || self.remote.borrow().has_exact(key)
    }

    /// Removes a subscription made with `subscribe_internal`.
    pub fn unsubscribe_internal(&self, sub: &crate::client::SubRef) {
        self.remove_sub(sub);
    }
}
