//! Publish/subscribe permissions of one user, with nats-server's semantics
//! (`client.go`: `pubAllowedFullCheck`, `canSubscribe`, `checkDenySub`).
//!
//! * Publish: allowed when an allow entry matches (or there is no allow
//!   list) and no deny entry matches.
//! * Subscribe: the subscription's subject is matched *as a subject*
//!   against the entries, its `*`/`>` tokens standing for themselves: an
//!   allow `foo.*` admits `foo.bar`, `foo.*` and `foo.>`; an allow `foo.bar`
//!   does not admit `foo.*`. Entries may name a queue (`"foo.* workers"`,
//!   the queue may itself use wildcards); a queue entry only decides for
//!   subscriptions in a matching queue group.
//! * A deny entry does not stop a wider wildcard subscription (`deny:
//!   foo.bar` lets `foo.*` through); instead messages on denied subjects
//!   are dropped when delivered ([`Permissions::delivery_denied`]).

use crate::options::{PermissionsConfig, ResponsePermission, SubjectPermission};
use crate::subject::{filters_overlap, has_wildcard, is_valid_filter, matches};

use super::AuthConfigError;

/// Compiled permissions, shared (`Arc`) by every connection of the user.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Permissions {
    /// `None`: no allow list. `Some(empty)`: nothing (only responses, see
    /// `allow_responses`).
    pub_allow: Option<Vec<Box<[u8]>>>,
    pub_deny: Vec<Box<[u8]>>,
    sub_allow: Option<Vec<SubEntry>>,
    sub_deny: Vec<SubEntry>,
    responses: Option<ResponsePermission>,
}

#[derive(Debug, Clone, PartialEq)]
struct SubEntry {
    subject: Box<[u8]>,
    queue: Option<Box<[u8]>>,
}

impl Permissions {
    /// Compile the configured lists; invalid subjects are refused (the
    /// config reader already refuses them; `Options` may be built in code).
    pub fn from_config(c: &PermissionsConfig) -> Result<Permissions, AuthConfigError> {
        let (pub_allow, pub_deny) = match &c.publish {
            Some(p) => (
                p.allow.as_ref().map(|l| subjects(l)).transpose()?,
                subjects(&p.deny)?,
            ),
            None => (None, Vec::new()),
        };
        let (sub_allow, sub_deny) = match &c.subscribe {
            Some(SubjectPermission { allow, deny }) => (
                // An empty subscribe allow list means no list (nats).
                match allow {
                    Some(l) if !l.is_empty() => Some(sub_entries(l)?),
                    _ => None,
                },
                sub_entries(deny)?,
            ),
            None => (None, Vec::new()),
        };
        let mut p = Permissions {
            pub_allow,
            pub_deny,
            sub_allow,
            sub_deny,
            responses: c.allow_responses.clone(),
        };
        // Response permissions switch off the blanket publish allow.
        if p.responses.is_some() && p.pub_allow.is_none() {
            p.pub_allow = Some(Vec::new());
        }
        Ok(p)
    }

    /// Does any publish rule apply? When not, every publish is allowed.
    pub fn publish_restricted(&self) -> bool {
        self.pub_allow.is_some() || !self.pub_deny.is_empty()
    }

    /// The static publish decision (reply permits are per connection: see
    /// [`super::ConnPermissions::can_publish`]).
    pub fn can_publish(&self, subject: &[u8]) -> bool {
        let allowed = match &self.pub_allow {
            Some(list) => list.iter().any(|f| matches(f, subject)),
            None => true,
        };
        allowed && !self.pub_deny.iter().any(|f| matches(f, subject))
    }

    /// May a SUB on `subject` (optionally in `queue`) be made?
    pub fn can_subscribe(&self, subject: &[u8], queue: Option<&[u8]>) -> bool {
        let queue = queue.filter(|q| !q.is_empty());
        let mut allowed = true;
        if let Some(allow) = &self.sub_allow {
            let (plain, queued) = hits(allow, subject);
            allowed = plain;
            if let (Some(q), false) = (queue, queued.is_empty()) {
                allowed = queue_matches(q, &queued);
            }
        }
        if allowed && !self.sub_deny.is_empty() {
            let (plain, queued) = hits(&self.sub_deny, subject);
            allowed = !plain;
            if let (true, Some(q), false) = (allowed, queue, queued.is_empty()) {
                allowed = !queue_matches(q, &queued);
            }
        }
        allowed
    }

    /// Must deliveries to this (allowed) subscription be checked with
    /// [`Permissions::delivery_denied`]? True when it is a wildcard or
    /// queue subscription that some deny entry overlaps.
    pub fn needs_delivery_filter(&self, subject: &[u8], queue: Option<&[u8]>) -> bool {
        let queued = queue.is_some_and(|q| !q.is_empty());
        (queued || has_wildcard(subject))
            && self
                .sub_deny
                .iter()
                .any(|d| filters_overlap(&d.subject, subject))
    }

    /// Should a message on the literal `subject`, matched by a subscription
    /// in `queue`, be dropped instead of delivered?
    pub fn delivery_denied(&self, subject: &[u8], queue: Option<&[u8]>) -> bool {
        // On the delivery path: no allocation.
        let queue = queue.filter(|q| !q.is_empty());
        let mut queued_hit = false;
        for e in self
            .sub_deny
            .iter()
            .filter(|e| matches(&e.subject, subject))
        {
            match (&e.queue, queue) {
                (None, _) => return true,
                (Some(eq), Some(q)) => queued_hit |= queue_matches(q, &[&eq[..]]),
                (Some(_), None) => {}
            }
        }
        queued_hit
    }

    /// `allow_responses`, if set: reply subjects of messages delivered to
    /// the connection may be published to within these limits.
    pub fn responses(&self) -> Option<&ResponsePermission> {
        self.responses.as_ref()
    }

    /// The lists as nats-server shows them to their user (`$SYS.REQ.USER.INFO`
    /// `permissions`): subjects as strings, a queue entry as "subject queue",
    /// `responses` with `max` and `ttl` (nanoseconds).
    pub fn public_json(&self) -> serde_json::Value {
        use serde_json::{json, Map, Value};
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        let entry = |e: &SubEntry| match &e.queue {
            Some(q) => format!("{} {}", text(&e.subject), text(q)),
            None => text(&e.subject),
        };
        let side = |allow: Option<Vec<String>>, deny: Vec<String>| {
            let mut m = Map::new();
            if let Some(a) = allow.filter(|a| !a.is_empty()) {
                m.insert("allow".into(), json!(a));
            }
            if !deny.is_empty() {
                m.insert("deny".into(), json!(deny));
            }
            Value::Object(m)
        };
        let mut v = json!({
            "publish": side(
                self.pub_allow.as_ref().map(|l| l.iter().map(|s| text(s)).collect()),
                self.pub_deny.iter().map(|s| text(s)).collect(),
            ),
            "subscribe": side(
                self.sub_allow.as_ref().map(|l| l.iter().map(entry).collect()),
                self.sub_deny.iter().map(entry).collect(),
            ),
        });
        if let Some(r) = &self.responses {
            // Unlimited shows as -1, as the reference keeps it.
            v["responses"] = json!({
                "max": r.max_msgs.map_or(-1, |m| m as i64),
                "ttl": r.expires.map_or(-1, |t| t.as_nanos() as i64),
            });
        }
        v
    }
}

/// Which entries match `subject`: whether a queue-less one did, and the
/// queue names of matching queue entries.
fn hits<'a>(entries: &'a [SubEntry], subject: &[u8]) -> (bool, Vec<&'a [u8]>) {
    let mut plain = false;
    let mut queued = Vec::new();
    for e in entries.iter().filter(|e| matches(&e.subject, subject)) {
        match &e.queue {
            None => plain = true,
            Some(q) => queued.push(&q[..]),
        }
    }
    (plain, queued)
}

/// nats' `queueMatches`: the queue equals an entry's queue, or lies within
/// an entry queue that has wildcards.
fn queue_matches(queue: &[u8], entries: &[&[u8]]) -> bool {
    entries
        .iter()
        .any(|q| *q == queue || (has_wildcard(q) && is_subset_match(queue, q)))
}

/// nats' `subjectIsSubsetMatch`: is everything `subject` matches also
/// matched by `test`?
pub(crate) fn is_subset_match(subject: &[u8], test: &[u8]) -> bool {
    let s: Vec<&[u8]> = subject.split(|&b| b == b'.').collect();
    let t: Vec<&[u8]> = test.split(|&b| b == b'.').collect();
    for (i, t2) in t.iter().enumerate() {
        let Some(t1) = s.get(i) else { return false };
        if t2.is_empty() {
            return false;
        }
        if *t2 == b">" {
            return true;
        }
        if t1.is_empty() || *t1 == b">" {
            return false;
        }
        if *t1 == b"*" {
            if *t2 != b"*" {
                return false;
            }
            continue;
        }
        if *t2 != b"*" && t1 != t2 {
            return false;
        }
    }
    s.len() == t.len()
}

fn subjects(list: &[String]) -> Result<Vec<Box<[u8]>>, AuthConfigError> {
    list.iter()
        .map(|s| {
            if is_valid_filter(s.as_bytes()) {
                Ok(s.as_bytes().into())
            } else {
                Err(AuthConfigError::BadSubject(s.clone()))
            }
        })
        .collect()
}

/// Subscribe entries: a subject, or `"subject queue"`.
fn sub_entries(list: &[String]) -> Result<Vec<SubEntry>, AuthConfigError> {
    list.iter()
        .map(|s| {
            let parts: Vec<&str> = s.split_whitespace().collect();
            let (subject, queue) = match parts[..] {
                [subject] => (subject, None),
                [subject, queue] => (subject, Some(queue.as_bytes().into())),
                _ => return Err(AuthConfigError::BadSubject(s.clone())),
            };
            if !is_valid_filter(subject.as_bytes()) {
                return Err(AuthConfigError::BadSubject(subject.to_string()));
            }
            Ok(SubEntry {
                subject: subject.as_bytes().into(),
                queue,
            })
        })
        .collect()
}
