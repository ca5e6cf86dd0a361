//! Per-connection permission state: a small publish-decision cache, the
//! reply permits of `allow_responses`, and whether deliveries must pass the
//! subscribe-deny filter. Owned by one connection, so no locks.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use crate::options::ResponsePermission;

use super::Permissions;

/// nats-server's `maxPermCacheSize`.
const PUB_CACHE_MAX: usize = 128;
/// nats-server's `replyPermLimit`: prune expired permits past this many.
const REPLY_PRUNE_AT: usize = 4096;

/// Reply permits: after a message with reply subject `R` is delivered to
/// the connection, it may publish to `R` up to `max_msgs` times within
/// `expires` (nats' `allow_responses`).
#[derive(Debug)]
pub struct ResponsePermits {
    policy: ResponsePermission,
    permits: HashMap<Box<[u8]>, Permit>,
}

#[derive(Debug, Clone, Copy)]
struct Permit {
    granted: Instant,
    used: u64,
}

impl ResponsePermits {
    pub fn new(policy: ResponsePermission) -> Self {
        ResponsePermits {
            policy,
            permits: HashMap::new(),
        }
    }

    /// A message carrying `reply` was delivered to this connection. A new
    /// request on the same reply subject renews the permit.
    pub fn note_request(&mut self, reply: &[u8], now: Instant) {
        if reply.is_empty() {
            return;
        }
        if self.permits.len() >= REPLY_PRUNE_AT {
            self.prune(now);
        }
        let p = Permit {
            granted: now,
            used: 0,
        };
        self.permits.insert(reply.into(), p);
    }

    /// May the connection publish to `subject` as a response? Consumes one
    /// use of the permit.
    pub fn can_reply(&mut self, subject: &[u8], now: Instant) -> bool {
        let Some(p) = self.permits.get_mut(subject) else {
            return false;
        };
        p.used += 1;
        let over = self.policy.max_msgs.is_some_and(|m| p.used > m);
        let expired = self
            .policy
            .expires
            .is_some_and(|e| now.saturating_duration_since(p.granted) > e);
        let spent = self.policy.max_msgs.is_some_and(|m| p.used >= m);
        if over || expired {
            self.permits.remove(subject);
            return false;
        }
        if spent {
            self.permits.remove(subject);
        }
        true
    }

    /// Outstanding permits.
    pub fn len(&self) -> usize {
        self.permits.len()
    }

    pub fn is_empty(&self) -> bool {
        self.permits.is_empty()
    }

    fn prune(&mut self, now: Instant) {
        let ResponsePermission { max_msgs, expires } = self.policy;
        self.permits.retain(|_, p| {
            !matches!(max_msgs, Some(m) if p.used >= m)
                && !matches!(expires, Some(e) if now.saturating_duration_since(p.granted) > e)
        });
    }
}

/// Everything a connection needs to enforce its user's permissions.
#[derive(Debug)]
pub struct ConnPermissions {
    perms: Arc<Permissions>,
    pub_cache: HashMap<Box<[u8]>, bool>,
    replies: Option<ResponsePermits>,
    filter_deliveries: bool,
}

impl ConnPermissions {
    pub fn new(perms: Arc<Permissions>) -> Self {
        let replies = perms.responses().cloned().map(ResponsePermits::new);
        ConnPermissions {
            perms,
            pub_cache: HashMap::new(),
            replies,
            filter_deliveries: false,
        }
    }

    pub fn permissions(&self) -> &Arc<Permissions> {
        &self.perms
    }

    /// Check a PUB/HPUB subject: the static lists (cached), then reply
    /// permits. `Instant::now()` is only read when a permit is consulted.
    pub fn can_publish(&mut self, subject: &[u8]) -> bool {
        if !self.perms.publish_restricted() {
            return true;
        }
        let allowed = match self.pub_cache.get(subject) {
            Some(&a) => a,
            None => {
                let a = self.perms.can_publish(subject);
                if self.pub_cache.len() >= PUB_CACHE_MAX {
                    self.pub_cache.clear();
                }
                self.pub_cache.insert(subject.into(), a);
                a
            }
        };
        if allowed {
            return true;
        }
        match &mut self.replies {
            Some(r) if !r.is_empty() => r.can_reply(subject, Instant::now()),
            _ => false,
        }
    }

    /// Check a SUB; when allowed, arms the delivery filter if this
    /// subscription can see subjects a deny entry covers.
    pub fn can_subscribe(&mut self, subject: &[u8], queue: Option<&[u8]>) -> bool {
        if !self.perms.can_subscribe(subject, queue) {
            return false;
        }
        if !self.filter_deliveries && self.perms.needs_delivery_filter(subject, queue) {
            self.filter_deliveries = true;
        }
        true
    }

    /// Before delivering a message on `subject` to a subscription of this
    /// connection (in `queue`, if a queue subscription): false means drop it.
    pub fn should_deliver(&self, subject: &[u8], queue: Option<&[u8]>) -> bool {
        !self.filter_deliveries || !self.perms.delivery_denied(subject, queue)
    }

    /// After delivering a message that carries `reply` to this connection.
    pub fn note_delivered(&mut self, reply: &[u8]) {
        if let Some(r) = &mut self.replies {
            r.note_request(reply, Instant::now());
        }
    }

    /// Whether [`ConnPermissions::note_delivered`] does anything (lets the
    /// delivery path skip it).
    pub fn tracks_replies(&self) -> bool {
        self.replies.is_some()
    }

    pub fn reply_permits(&mut self) -> Option<&mut ResponsePermits> {
        self.replies.as_mut()
    }
}
