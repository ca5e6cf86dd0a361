//! `$SYS.REQ.USER.INFO`: who the requesting connection is (user, account,
//! permissions, expiry), as `nats account info` shows it. The reference
//! imports this service into every account and answers from the server
//! the requester is connected to; here each shard subscribes it in every
//! account for its own publishers only (peers are not told), and learns
//! the requester from the publish being delivered.

use std::rc::Rc;
use std::time::SystemTime;

use bytes::Bytes;
use serde_json::{json, Value};

use super::envelope;
use crate::client::Client;
use crate::global::Global;
use crate::shard::sink::Handler;
use crate::shard::Shard;

pub const SUBJECT: &str = "$SYS.REQ.USER.INFO";

pub fn subscribe(shard: &Rc<Shard>) {
    for acc in 0..shard.g.accounts.len() as u32 {
        let w = Rc::downgrade(shard);
        let h: Handler = Rc::new(move |m| {
            let Some(shard) = w.upgrade() else { return };
            let Some(reply) = m.reply else { return };
            // Only a client's own publish names a requester.
            let cid = shard.publisher.get();
            let data = match shard.clients.try_borrow() {
                Ok(clients) => clients.get(&cid).map(|c| user_info(&shard.g, c)),
                Err(_) => None,
            };
            let Some(data) = data else { return };
            let reply = Bytes::copy_from_slice(reply);
            // Published from a task: this runs inside a delivery.
            crate::runtime::spawn_local(async move {
                let v = envelope::data(&shard.g, data);
                super::publish(&shard, acc, &reply, &v);
            })
            .detach();
        });
        shard.subscribe_local_internal(acc, SUBJECT, h);
    }
}

/// The reference's `UserInfo` for connection `c`.
pub fn user_info(g: &Global, c: &Client) -> Value {
    let who = c.who.borrow();
    let account = g.accounts.name(c.account());
    let mut v = json!({
        "user": who.as_ref().map(|w| w.user.as_str()).unwrap_or_default(),
        "account": account,
        "account_name": account,
    });
    if let Some(p) = c.perms.borrow().as_ref() {
        v["permissions"] = p.permissions().public_json();
    }
    // Time left, in nanoseconds, as Go's `time.Duration`.
    if let Some(exp) = who.as_ref().and_then(|w| w.limits.expires) {
        let left = exp.duration_since(SystemTime::now()).unwrap_or_default();
        v["expires"] = json!(left.as_nanos() as u64);
    }
    v
}
