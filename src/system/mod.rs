//! The system account's request services, as nats-server 2.15.3 serves
//! them (events.go), so operators' `nats server …` and `nats account info`
//! work:
//!
//! * in the system account (`system_account`, else `$SYS` once accounts
//!   are configured): `$SYS.REQ.SERVER.PING` (STATSZ),
//!   `$SYS.REQ.SERVER.PING.<VERB>` and `$SYS.REQ.SERVER.<id>.<VERB>` for
//!   the monitoring verbs (`server.rs`), `$SYS.REQ.ACCOUNT.<acc>.<VERB>`
//!   and `$SYS.REQ.ACCOUNT.PING.STATZ` (`account.rs`);
//! * in every other account, what the reference imports into it from the
//!   system account: `$SYS.REQ.SERVER.PING.CONNZ` and
//!   `$SYS.REQ.ACCOUNT.PING.CONNZ` (that account's connections),
//!   `$SYS.REQ.ACCOUNT.PING.STATZ` (its figures);
//! * everywhere, `$SYS.REQ.USER.INFO`: who the requester is (`user.rs`);
//! * events, when something listens: client CONNECT/DISCONNECT and the
//!   periodic `$SYS.SERVER.<id>.STATSZ` (`events.rs`).
//!
//! Accounts are isolated subject spaces, so a user outside the system
//! account never reaches the server requests: they get no responders, as
//! from the reference. Requests are subscribed on shard 0 (like the
//! JetStream API) and answered from a task, gathering across shards with
//! the monitoring builders; USER.INFO is subscribed on every shard for
//! that shard's own publishers only, since it answers about the
//! connection that asked.

mod account;
mod envelope;
mod events;
mod request;
mod server;
mod statsz;
mod user;

use std::rc::Rc;

use bytes::Bytes;
use serde_json::Value;

use crate::shard::sink::{Handler, Owned};
use crate::shard::Shard;

pub use events::{connected, disconnected};
pub use statsz::account_statz;

/// Why a request got an error answer; the code is the HTTP status the
/// reference puts in `error.code`.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SystemError {
    /// The request body is not the JSON the verb takes.
    #[error("{0}")]
    BadRequest(String),
    /// The request was understood and failed.
    #[error("{0}")]
    Failed(String),
}

impl SystemError {
    pub fn code(&self) -> u16 {
        match self {
            SystemError::BadRequest(_) => 400,
            SystemError::Failed(_) => 500,
        }
    }
}

/// A request as the handlers see it.
pub(crate) struct Req {
    pub acc: u32,
    pub subject: String,
    pub reply: Option<Bytes>,
    pub body: Bytes,
}

/// Which handler a subscription feeds.
#[derive(Debug, Clone, Copy)]
enum Route {
    /// `$SYS.REQ.SERVER.PING` and `$SYS.REQ.SERVER.{PING,<id>}.<verb>`.
    Server(server::Verb),
    /// `$SYS.REQ.ACCOUNT.<acc>.<verb>` in the system account.
    Account(account::Verb),
    /// `$SYS.REQ.ACCOUNT.PING.STATZ` in the system account: every account.
    AccountsStatz,
    /// What the reference imports into account `.0`: `.1` about it.
    Imported(u32, account::Verb),
}

/// The monitoring verbs the server answers (the reference's `monSrvc`
/// without PROFILEZ, EXPVARZ, IPQUEUESZ and RAFTZ, which have nothing to
/// show here: those get no responders).
const SERVER_VERBS: &[(&str, server::Verb)] = &[
    ("STATSZ", server::Verb::Statsz),
    ("IDZ", server::Verb::Idz),
    ("VARZ", server::Verb::Varz),
    ("CONNZ", server::Verb::Connz),
    ("SUBSZ", server::Verb::Subsz),
    ("JSZ", server::Verb::Jsz),
    ("HEALTHZ", server::Verb::Healthz),
    ("LEAFZ", server::Verb::Leafz),
    ("ACCOUNTZ", server::Verb::Accountz),
    ("ROUTEZ", server::Verb::Routez),
    ("GATEWAYZ", server::Verb::Gatewayz),
];

/// The per-account verbs (`monAccSrvc` without CONNS, which only
/// servers in a cluster ask each other).
const ACCOUNT_VERBS: &[(&str, account::Verb)] = &[
    ("SUBSZ", account::Verb::Subsz),
    ("CONNZ", account::Verb::Connz),
    ("LEAFZ", account::Verb::Leafz),
    ("JSZ", account::Verb::Jsz),
    ("INFO", account::Verb::Info),
    ("STATZ", account::Verb::Statz),
];

/// Subscribes the services (shard 0; USER.INFO on every shard) and
/// returns once every shard knows of them.
pub async fn start(shard: &Rc<Shard>) {
    user::subscribe(shard);
    let g = shard.g.clone();
    if shard.id == 0 {
        let sys = g.accounts.system();
        if let Some(sys) = sys {
            subscribe(
                shard,
                sys,
                "$SYS.REQ.SERVER.PING",
                Route::Server(server::Verb::Statsz),
            );
            for (name, verb) in SERVER_VERBS {
                let route = Route::Server(*verb);
                subscribe(shard, sys, &format!("$SYS.REQ.SERVER.PING.{name}"), route);
                let direct = format!("$SYS.REQ.SERVER.{}.{name}", g.server_id);
                subscribe(shard, sys, &direct, route);
            }
            for (name, verb) in ACCOUNT_VERBS {
                let subject = format!("$SYS.REQ.ACCOUNT.*.{name}");
                subscribe(shard, sys, &subject, Route::Account(*verb));
            }
            subscribe(
                shard,
                sys,
                "$SYS.REQ.ACCOUNT.PING.STATZ",
                Route::AccountsStatz,
            );
        }
        for acc in (0..g.accounts.len() as u32).filter(|a| Some(*a) != sys) {
            let connz = Route::Imported(acc, account::Verb::Connz);
            subscribe(shard, acc, "$SYS.REQ.SERVER.PING.CONNZ", connz);
            subscribe(shard, acc, "$SYS.REQ.ACCOUNT.PING.CONNZ", connz);
            let statz = Route::Imported(acc, account::Verb::Statz);
            subscribe(shard, acc, "$SYS.REQ.ACCOUNT.PING.STATZ", statz);
        }
        events::start_statsz(shard);
        if let Some(b) = shard.barrier() {
            b.wait().await;
        }
        g.system_ready.done();
    }
    g.system_ready.wait().await;
}

fn subscribe(shard: &Rc<Shard>, acc: u32, subject: &str, route: Route) {
    let w = Rc::downgrade(shard);
    let h: Handler = Rc::new(move |m| {
        let Some(shard) = w.upgrade() else { return };
        let o = Owned::of(m);
        let req = Req {
            acc,
            subject: String::from_utf8_lossy(&o.subject).into_owned(),
            reply: o.reply,
            body: o.payload,
        };
        // Answered from a task: this runs inside a delivery.
        crate::runtime::spawn_local(handle(shard, route, req)).detach();
    });
    shard.subscribe_internal(acc, subject, None, h);
}

async fn handle(shard: Rc<Shard>, route: Route, req: Req) {
    let answer = match route {
        Route::Server(verb) => server::handle(&shard, verb, &req).await,
        Route::Account(verb) => account::handle(&shard, verb, &req).await,
        Route::AccountsStatz => account::all_statz(&shard, &req).await,
        Route::Imported(acc, verb) => account::imported(&shard, acc, verb, &req).await,
    };
    let Some((subject, v)) = answer else { return };
    publish(&shard, req.acc, &subject, &v);
}

/// Where an answer goes: the request's reply subject. Without one, only
/// STATSZ answers (on the server's broadcast subject), as the reference.
fn reply_to(req: &Req) -> Option<Bytes> {
    req.reply.clone()
}

fn publish(shard: &Shard, acc: u32, subject: &[u8], v: &Value) {
    let body = serde_json::to_vec(v).unwrap_or_default();
    shard.publish_internal(acc, subject, None, None, &body);
}

/// The JSON answer to a request whose body or work failed.
fn failure(g: &crate::global::Global, e: &SystemError) -> Value {
    envelope::error(g, e.code(), &e.to_string())
}
