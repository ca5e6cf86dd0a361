//! Events the server publishes in the system account, as nats-server
//! 2.15.3 does, each only when something there listens:
//!
//! * `$SYS.ACCOUNT.<acc>.CONNECT` / `.DISCONNECT` when a client logs in
//!   and when it goes (`ConnectEventMsg` / `DisconnectEventMsg`);
//! * `$SYS.SERVER.<id>.STATSZ`, the server's statistics every so often:
//!   first after 250 ms, the interval doubling up to 10 s. The timer
//!   looks for interest and sends nothing without it; a timer that fires
//!   every 10 s is the only cost of an idle server.

use std::rc::Rc;
use std::time::{Duration, SystemTime};

use serde_json::{json, Value};

use super::envelope::{self, rfc3339};
use crate::client::Client;
use crate::shard::Shard;

const CONNECT_TYPE: &str = "io.nats.server.advisory.v1.client_connect";
const DISCONNECT_TYPE: &str = "io.nats.server.advisory.v1.client_disconnect";

/// The reference's first statistics interval and its cap.
const STATSZ_FIRST: Duration = Duration::from_millis(250);
const STATSZ_EVERY: Duration = Duration::from_secs(10);

/// The `client` object (`ClientInfo`), its empty fields left out.
fn client_info(shard: &Shard, c: &Client, stop: Option<SystemTime>) -> Value {
    let g = &shard.g;
    let connect = c.connect.borrow();
    let account = g.accounts.name(c.account());
    let mut v = json!({
        "start": rfc3339(c.start),
        "host": c.addr.ip().to_string(),
        "id": c.cid,
        "acc": account,
        "name_tag": account,
        "kind": "Client",
        "client_type": if c.websocket { "websocket" } else { "nats" },
    });
    let user = c.user_name();
    for (k, val) in [
        ("user", &user),
        ("name", &connect.name),
        ("lang", &connect.lang),
        ("ver", &connect.version),
    ] {
        if !val.is_empty() {
            v[k] = json!(val);
        }
    }
    if let Some(t) = stop {
        v["stop"] = json!(rfc3339(t));
    }
    v
}

/// The subject of an account event for `c` in the system account, when
/// something there listens to it.
fn wanted(shard: &Shard, c: &Client, what: &str) -> Option<(u32, String)> {
    let g = &shard.g;
    let sys = g.accounts.system()?;
    if c.leaf.is_some() {
        return None;
    }
    let subject = format!("$SYS.ACCOUNT.{}.{what}", g.accounts.name(c.account()));
    shard
        .has_interest(sys, subject.as_bytes())
        .then_some((sys, subject))
}

/// Publishes `v` from a task on `c`'s shard: callers may be inside a
/// delivery.
fn send(c: &Client, acc: u32, subject: String, v: Value) {
    let Some(shard) = c.shard.upgrade() else {
        return;
    };
    crate::runtime::spawn_local(async move {
        super::publish(&shard, acc, subject.as_bytes(), &v);
    })
    .detach();
}

/// A client logged in.
pub fn connected(shard: &Shard, c: &Client) {
    let Some((sys, subject)) = wanted(shard, c, "CONNECT") else {
        return;
    };
    let v = json!({
        "type": CONNECT_TYPE,
        "id": crate::auth::new_nonce(),
        "timestamp": rfc3339(SystemTime::now()),
        "server": envelope::server_info(&shard.g),
        "client": client_info(shard, c, None),
    });
    send(c, sys, subject, v);
}

/// A client that had logged in is gone, for `reason`.
pub fn disconnected(shard: &Shard, c: &Client, reason: &str) {
    if !c.connected.get() {
        return;
    }
    let Some((sys, subject)) = wanted(shard, c, "DISCONNECT") else {
        return;
    };
    let now = SystemTime::now();
    let k = &c.counters;
    let v = json!({
        "type": DISCONNECT_TYPE,
        "id": crate::auth::new_nonce(),
        "timestamp": rfc3339(now),
        "server": envelope::server_info(&shard.g),
        "client": client_info(shard, c, Some(now)),
        // From the client's side, as the reference: what it sent us ...
        "sent": {"msgs": k.in_msgs.get(), "bytes": k.in_bytes.get()},
        // ... and what it was sent.
        "received": {"msgs": k.out_msgs.get(), "bytes": k.out_bytes.get()},
        "reason": reason,
    });
    send(c, sys, subject, v);
}

/// Starts the statistics timer (shard 0, with a system account).
pub fn start_statsz(shard: &Rc<Shard>) {
    let Some(sys) = shard.g.accounts.system() else {
        return;
    };
    let subject = format!("$SYS.SERVER.{}.STATSZ", shard.g.server_id);
    let w = Rc::downgrade(shard);
    crate::runtime::spawn_local(async move {
        let mut every = STATSZ_FIRST;
        loop {
            crate::runtime::sleep(every).await;
            every = (every * 2).min(STATSZ_EVERY);
            let Some(shard) = w.upgrade() else { return };
            if !shard.has_interest(sys, subject.as_bytes()) {
                continue;
            }
            let stats = super::statsz::server(&shard).await;
            let v = envelope::statsz(&shard.g, stats);
            super::publish(&shard, sys, subject.as_bytes(), &v);
        }
    })
    .detach();
}
