//! What each client operation does once parsed: CONNECT (credentials,
//! account and limits), PUB/HPUB, SUB/UNSUB, PING/PONG. The connection's
//! tasks (`conn.rs`) read and parse; this acts.

use std::cell::Cell;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;

use super::{Client, CloseReason, Sub, SubRef};
use crate::auth;
use crate::global::ShardStats;
use crate::protocol::info::Connect;
use crate::protocol::ClientOp;
use crate::runtime;
use crate::shard::Shard;
use crate::subject;

/// Checks CONNECT credentials with the authenticator in force; bcrypt runs
/// on a helper thread so one login does not stall the shard. A client's
/// own login (`gated`) takes a slot of the login gate first; the server's
/// re-checks after a reload do not.
pub(super) async fn authenticate(
    client: &Client,
    c: &Connect,
    gated: bool,
) -> Result<auth::Authed, auth::AuthError> {
    let authenticator = if client.websocket {
        client.g.ws_auth()
    } else {
        client.g.auth()
    };
    let nonce = client.nonce.clone();
    let kind = client.connection_type();
    if authenticator.is_slow(c) {
        let ip = client.addr.ip();
        let slot = if gated {
            match client.g.logins.enter(ip) {
                Some(slot) => Some(slot),
                None => return Err(auth::AuthError::Busy(ip)),
            }
        } else {
            None
        };
        let c = c.clone();
        let r = runtime::blocking(move || {
            authenticator.authenticate_as(&c, nonce.as_deref().map(str::as_bytes), kind)
        })
        .await;
        drop(slot);
        r
    } else {
        authenticator.authenticate_as(c, nonce.as_deref().map(str::as_bytes), kind)
    }
}

pub(super) struct Conn<'a> {
    pub(super) shard: &'a Rc<Shard>,
    pub(super) client: &'a Rc<Client>,
    pub(super) verbose: bool,
    pub(super) pedantic: bool,
    /// What is left of this read's allowance for waiting on lagging
    /// subscribers (see `Shard::unstall`).
    pub(super) stall_budget: Cell<Duration>,
    /// A PONG went out already.
    pub(super) ponged: bool,
}

impl Conn<'_> {
    /// After the first PONG, a client of the system account that speaks
    /// protocol 1 is told so in an INFO, as the reference tells every
    /// such client its account (only system-account clients are told
    /// here: nothing else reads it).
    fn connect_info(&self) {
        let client = self.client;
        let g = &client.g;
        if !client.connected.get()
            || client.connect.borrow().protocol < 1
            || g.accounts.system() != Some(client.account())
            || client.leaf.is_some()
        {
            return;
        }
        let mut info = client.info(false);
        info.connect_info = true;
        info.remote_account = Some(g.accounts.name(client.account()).to_string());
        info.acc_is_sys = true;
        client.out.push(&info.to_line());
    }

    fn ok(&self) {
        if self.verbose {
            self.client.out.push(b"+OK\r\n");
        }
    }

    pub(super) async fn handle(
        &mut self,
        data: &Bytes,
        op: ClientOp<'_>,
    ) -> Result<(), CloseReason> {
        let client = self.client;
        if !self.client.authed.get() && !matches!(op, ClientOp::Connect(_)) {
            client.send_err("Authorization Violation");
            return Err(CloseReason::AuthenticationViolation);
        }
        match op {
            ClientOp::Pub {
                subject,
                reply,
                hdr_len,
                msg,
            } => self.publish(data, subject, reply, hdr_len, msg).await,
            ClientOp::Sub {
                subject,
                queue,
                sid,
            } => {
                self.subscribe(subject, queue, sid);
                Ok(())
            }
            ClientOp::Unsub { sid, max } => {
                let existing = client.subs.borrow().get(sid).cloned();
                if let Some(s) = existing {
                    match max {
                        Some(m) if m > s.0.delivered.get() => s.0.max.set(m),
                        _ => {
                            client.drop_sub(sid);
                            self.shard.remove_sub(&s);
                        }
                    }
                }
                self.ok();
                Ok(())
            }
            ClientOp::Ping => {
                self.await_interest().await;
                // Like a single server: once the PONG is out, what we
                // published sits in every subscriber's outbound buffer.
                if client.forwarded.replace(false) {
                    if let Some(b) = self.shard.barrier() {
                        b.wait().await;
                    }
                }
                client.out.push(b"PONG\r\n");
                if !std::mem::replace(&mut self.ponged, true) {
                    self.connect_info();
                }
                Ok(())
            }
            ClientOp::Pong => {
                client.pings_out.set(0);
                Ok(())
            }
            ClientOp::Connect(json) => self.connect(json).await,
            ClientOp::Info | ClientOp::Ok => Ok(()),
            ClientOp::Err(text) => {
                tracing::error!(
                    "{} - cid:{} - Client Error {}",
                    client.addr,
                    client.cid,
                    String::from_utf8_lossy(text).trim_matches('\'')
                );
                Err(CloseReason::ClientClosed)
            }
        }
    }

    /// Waits until every shard knows the subscriptions this connection made
    /// so far. Done before anything the client could observe (a PONG, or a
    /// message it publishes and may receive itself), so "subscribe, then
    /// round trip" means the subscription is live server-wide, as on a single
    /// nats-server. Consecutive SUBs do not wait for each other.
    async fn await_interest(&self) {
        let sync = self.client.sync.borrow_mut().take();
        if let Some(sync) = sync {
            if !sync.is_complete() {
                sync.wait().await;
            }
        }
    }

    async fn connect(&mut self, json: &[u8]) -> Result<(), CloseReason> {
        let client = self.client;
        let c: Connect = match serde_json::from_slice(json) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!("{} - cid:{} - {e}", client.addr, client.cid);
                return Err(CloseReason::ParseError);
            }
        };
        if c.no_responders && !c.headers {
            client.send_err("no responders requires headers support");
            tracing::error!(
                "{} - cid:{} - no responders requires headers support",
                client.addr,
                client.cid
            );
            return Err(CloseReason::ProtocolViolation);
        }
        if !self.client.authed.get() {
            match authenticate(client, &c, true).await {
                Ok(who) => {
                    *client.perms.borrow_mut() =
                        who.permissions.clone().map(auth::ConnPermissions::new);
                    let g = &client.g;
                    let Some(acc) = g.accounts.id(&who.account) else {
                        // Never another account in its place.
                        tracing::error!(
                            "{} - cid:{} - authentication error: account {:?} not found",
                            client.addr,
                            client.cid,
                            who.account
                        );
                        client.send_err(auth::AUTH_VIOLATION);
                        return Err(CloseReason::AuthenticationViolation);
                    };
                    let (max_conns, max_subs, max_payload) = g.accounts.limits(acc);
                    if let (Some(max), Some(n)) = (max_conns, g.account_conns.get(acc as usize)) {
                        if n.load(Ordering::Relaxed) >= max {
                            tracing::error!(
                                "{} - cid:{} - maximum account active connections exceeded",
                                client.addr,
                                client.cid
                            );
                            client.send_err("maximum account active connections exceeded");
                            return Err(CloseReason::MaxConnectionsExceeded);
                        }
                    }
                    if let Some(n) = g.account_conns.get(acc as usize) {
                        n.fetch_add(1, Ordering::Relaxed);
                        client.counted.set(Some(acc));
                    }
                    // The tightest of server, account and user limits.
                    let tightest = |server: usize, more: [Option<usize>; 2]| {
                        more.into_iter()
                            .flatten()
                            .fold(server, |a, b| if a == 0 { b } else { a.min(b) })
                    };
                    client.max_subs.set(tightest(
                        client.max_subs.get(),
                        [max_subs, who.limits.max_subscriptions],
                    ));
                    client.max_payload.set(tightest(
                        client.max_payload.get(),
                        [max_payload, who.limits.max_payload],
                    ));
                    client.set_account(acc);
                    if let Some(at) = who.limits.expires {
                        let left = at
                            .duration_since(std::time::SystemTime::now())
                            .unwrap_or_default();
                        runtime::spawn_local(super::conn::expire(client.clone(), left)).detach();
                    }
                    // As the reference: a user JWT's payload limit is
                    // announced in a fresh INFO.
                    if who.limits.max_payload.is_some()
                        && client.max_payload.get() != g.opts.max_payload
                    {
                        let mut info = client.info(false);
                        info.max_payload = client.max_payload.get();
                        client.out.push(&info.to_line());
                    }
                    *client.who.borrow_mut() = Some(who);
                    client.authed.set(true);
                }
                Err(e) => {
                    // The reason is logged; the client only learns it failed.
                    tracing::error!(
                        "{} - cid:{} - authentication error: {e}",
                        client.addr,
                        client.cid
                    );
                    client.send_err(auth::AUTH_VIOLATION);
                    return Err(CloseReason::AuthenticationViolation);
                }
            }
        }
        let first = !client.connected.replace(true);
        self.verbose = c.verbose;
        self.pedantic = c.pedantic;
        client.update_connect(c);
        if first {
            crate::system::connected(self.shard, client);
        }
        self.ok();
        Ok(())
    }

    async fn publish(
        &mut self,
        data: &Bytes,
        subject: &[u8],
        reply: Option<&[u8]>,
        hdr_len: Option<usize>,
        msg: &[u8],
    ) -> Result<(), CloseReason> {
        if self.client.sync.borrow().is_some() {
            self.await_interest().await;
        }
        self.publish_now(data, subject, reply, hdr_len, msg)?;
        self.after_publish().await;
        Ok(())
    }

    /// Backpressure after a publish; awaits only when there is something
    /// to wait for.
    pub(super) async fn after_publish(&self) {
        if self.shard.has_stalled() {
            self.shard.unstall(&self.stall_budget).await;
        }
        if self.shard.any_congested() {
            self.shard.link_space().await;
        }
    }

    /// The synchronous part of PUB/HPUB: checks, counters, delivery.
    pub(super) fn publish_now(
        &mut self,
        data: &Bytes,
        subject: &[u8],
        reply: Option<&[u8]>,
        hdr_len: Option<usize>,
        msg: &[u8],
    ) -> Result<(), CloseReason> {
        let client = self.client;
        if hdr_len.is_some() && !client.headers() {
            tracing::error!(
                "{} - cid:{} - message headers not supported",
                client.addr,
                client.cid
            );
            return Err(CloseReason::ProtocolViolation);
        }
        let c = &client.counters;
        c.in_msgs.set(c.in_msgs.get() + 1);
        c.in_bytes.set(c.in_bytes.get() + msg.len() as u64);
        let st = self.shard.stats();
        ShardStats::add(&st.in_msgs, 1);
        ShardStats::add(&st.in_bytes, msg.len() as u64);
        if self.pedantic && !subject::is_valid_literal(subject) {
            client.send_err("Invalid Publish Subject");
            self.ok();
            return Ok(());
        }
        let denied = client
            .perms
            .borrow_mut()
            .as_mut()
            .is_some_and(|p| !p.can_publish(subject));
        if denied {
            tracing::error!(
                "{} - cid:{} - Publish Violation - User {:?}, Subject {:?}",
                client.addr,
                client.cid,
                client.user_name(),
                String::from_utf8_lossy(subject)
            );
            client.send_err(&auth::publish_violation(subject));
            return Ok(());
        }
        if subject == crate::crash::PANIC_SUBJECT && crate::crash::faults_enabled() {
            panic!(
                "test fault: publish on {}",
                String::from_utf8_lossy(subject)
            );
        }
        self.ok();
        self.shard
            .publish(client, data, subject, reply, hdr_len, msg);
        Ok(())
    }

    fn subscribe(&mut self, subject: &[u8], queue: Option<&[u8]>, sid: &[u8]) {
        let client = self.client;
        if !subject::is_valid_filter(subject) {
            client.send_err("Invalid Subject");
            return;
        }
        if queue
            .as_ref()
            .is_some_and(|q| !subject::is_valid_literal(q))
        {
            client.send_err("Invalid Queue Name");
            return;
        }
        let denied = client
            .perms
            .borrow_mut()
            .as_mut()
            .is_some_and(|p| !p.can_subscribe(subject, queue));
        if denied {
            tracing::error!(
                "{} - cid:{} - Subscription Violation - User {:?}, Subject {:?}{}",
                client.addr,
                client.cid,
                client.user_name(),
                String::from_utf8_lossy(subject),
                queue.map_or(String::new(), |q| format!(
                    ", Queue {:?}",
                    String::from_utf8_lossy(q)
                ))
            );
            client.send_err(&auth::subscribe_violation(subject, queue));
            return;
        }
        let max = client.max_subs.get();
        if max > 0 && client.subs.borrow().len() >= max {
            tracing::error!(
                "{} - cid:{} - maximum subscriptions exceeded",
                client.addr,
                client.cid
            );
            client.send_err("maximum subscriptions exceeded");
            return;
        }
        if client.subs.borrow().contains_key(sid) {
            self.ok();
            return;
        }
        let sid = Bytes::copy_from_slice(sid);
        let subject = Bytes::copy_from_slice(subject);
        let key = client.g.accounts.key_bytes(client.account(), &subject);
        let sub = SubRef(Rc::new(Sub {
            sink: crate::shard::sink::Sink::Client(client.clone()),
            subject,
            key,
            queue: queue.map(Bytes::copy_from_slice),
            sid: sid.clone(),
            max: Cell::new(0),
            delivered: Cell::new(0),
        }));
        client.subs.borrow_mut().insert(sid, sub.clone());
        self.shard.add_sub(sub);
        *client.sync.borrow_mut() = self.shard.pending_sync();
        self.ok();
    }
}
