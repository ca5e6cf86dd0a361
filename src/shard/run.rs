//! A shard's life: start the links to its peers, then serve control
//! messages (new connections, monitoring queries, lame duck, shutdown).

use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use super::link::run_sender;
use super::Shard;
use crate::global::{Ctl, Global};
use crate::runtime;

/// Bytes of forwarded messages a shard delivers before letting its
/// writers run.
const YIELD_BYTES: usize = 256 * 1024;

pub async fn run(g: Arc<Global>) {
    let id = g.claim_shard_id();
    let shard = Rc::new(Shard::new(id, g.clone()));
    let mut tasks = Vec::new();
    for peer in 0..g.shards {
        if let (Some(link), Some(tx)) = (shard.link(peer), g.peer_tx[id][peer].clone()) {
            tasks.push(runtime::spawn_local(run_sender(link.clone(), tx)));
        }
        if let Some(rx) = g.peer_rx[peer][id].clone() {
            let shard = shard.clone();
            tasks.push(runtime::spawn_local(async move {
                // An item of messages is one read of one publisher: like
                // the publisher's own read, it waits here for subscribers
                // that fell behind while they catch up, but for one that
                // makes no progress at most STALL_TOTAL: whatever else this
                // link carries waits behind it that long at most.
                let budget = std::cell::Cell::new(super::STALL_TOTAL);
                while let Ok(mut batch) = rx.recv().await {
                    // Yield every so often so writers drain a large batch.
                    let mut since_yield = 0usize;
                    for item in std::mem::take(&mut batch.items) {
                        since_yield += item.weight();
                        budget.set(super::STALL_TOTAL);
                        match item {
                            // Paced message by message, as a publisher on
                            // this shard would be.
                            super::link::Item::Msgs { data, msgs } => {
                                for r in &msgs {
                                    shard.receive_msg(&data, r);
                                    if shard.has_stalled() {
                                        shard.unstall(&budget).await;
                                    }
                                }
                            }
                            other => shard.receive(other),
                        }
                        if since_yield >= YIELD_BYTES {
                            since_yield = 0;
                            runtime::yield_now().await;
                        }
                    }
                }
            }));
        }
    }
    // Streams are recovered before the shard serves anything.
    crate::jetstream::start(&shard).await;
    // The system account's services, subscribed before clients come.
    crate::system::start(&shard).await;
    // Links to hubs start once the streams they might feed are here.
    crate::leaf::start(&shard);
    // Declared streams, buckets and consumers (shard 0, once all are up).
    crate::jetstream::provision::spawn(&shard);
    // The last shard to get here tells the service manager we are ready.
    crate::notify::shard_up(&g);
    let ctl = g.ctl_rx[id].clone();
    while let Ok(msg) = ctl.recv().await {
        match msg {
            Ctl::NewClient(fd, addr) => crate::client::accept(&shard, fd, addr, false),
            Ctl::NewWebsocket(fd, addr) => crate::client::accept(&shard, fd, addr, true),
            Ctl::NewHttp(fd, addr) => crate::monitor::serve(&shard, fd, addr),
            Ctl::NewLeaf(fd, addr) => crate::leaf::conn::accept(&shard, fd, addr),
            Ctl::Gather(q, reply) => {
                let _ = reply.send(crate::monitor::gather::report(&shard, &q));
            }
            Ctl::LameDuck => lame_duck(&shard),
            Ctl::Reload(done) => reload(&shard, done),
            Ctl::Run(job) => job(shard.clone()),
            Ctl::Shutdown => break,
        }
    }
    let clients: Vec<_> = shard.clients.borrow().values().cloned().collect();
    for c in clients {
        c.close(crate::client::CloseReason::ServerShutdown);
    }
    // Give writers a moment to flush and sockets to close.
    runtime::sleep(Duration::from_millis(50)).await;
    crate::jetstream::stop(&shard).await;
    for link in (0..g.shards).filter_map(|p| shard.link(p)) {
        link.close();
    }
    drop(tasks);
}

/// Tells every client we are going away (INFO with `ldm`), then closes them
/// spread over the lame-duck duration, after the grace period.
fn lame_duck(shard: &Rc<Shard>) {
    let clients: Vec<_> = shard.clients.borrow().values().cloned().collect();
    for c in &clients {
        c.send_info(true);
    }
    // Reloaded settings apply (the reference reloads lame-duck settings).
    let opts = shard.g.live();
    let grace = opts.lame_duck_grace_period;
    let window = opts.lame_duck_duration.saturating_sub(grace);
    runtime::spawn_local(async move {
        runtime::sleep(grace).await;
        // Spread the closes over the window, but never more than a second
        // apart (as the reference does), so a few clients go quickly.
        let n = clients.len().max(1) as u32;
        let step = (window / n).min(Duration::from_secs(1));
        for c in clients {
            c.close(crate::client::CloseReason::ServerShutdown);
            if !step.is_zero() {
                runtime::sleep(step).await;
            }
        }
    })
    .detach();
}

/// Applies reloaded options to this shard's connections: new limits, and
/// credentials checked again; a connection whose user is gone (or whose
/// password changed) is told `Authorization Violation` and closed.
/// `done` hears when every connection has been checked again.
fn reload(shard: &Rc<Shard>, done: std::sync::mpsc::Sender<()>) {
    crate::jetstream::provision::spawn(shard);
    let g = &shard.g;
    let limits = crate::client::Limits::from(&g.live());
    let required = g.auth().required();
    let ws_required = g.ws_auth().required();
    let clients: Vec<_> = shard.clients.borrow().values().cloned().collect();
    let mut checks = Vec::new();
    for c in clients {
        c.limits.set(limits);
        let now_required = if c.websocket { ws_required } else { required };
        if !c.connected.get() {
            // Admitted without credentials and still before CONNECT: once
            // auth is on it has none to check, so it goes as in the
            // reference (it could otherwise go on publishing and
            // receiving unauthenticated).
            if now_required && c.authed.get() {
                tracing::info!(
                    "{} - cid:{} - closed after reload: authentication now required",
                    c.addr,
                    c.cid
                );
                c.send_err(crate::auth::AUTH_VIOLATION);
                c.close(crate::client::CloseReason::AuthenticationViolation);
            }
            continue;
        }
        if !now_required {
            *c.perms.borrow_mut() = None;
            *c.who.borrow_mut() = None;
            continue;
        }
        let shard = shard.clone();
        let task = runtime::spawn_local(async move {
            let connect = c.connect.borrow().clone();
            match crate::client::reauthenticate(&c, &connect).await {
                // A user now in another account (or one that came in
                // before auth, in the global account): its subscriptions
                // live in the old account's subject space, so it goes.
                Ok(who) if shard.g.accounts.id(&who.account) != Some(c.account()) => {
                    tracing::info!(
                        "{} - cid:{} - closed after reload: user now in account {:?}",
                        c.addr,
                        c.cid,
                        who.account
                    );
                    c.send_err(crate::auth::AUTH_VIOLATION);
                    c.close(crate::client::CloseReason::AuthenticationViolation);
                }
                Ok(who) => {
                    *c.perms.borrow_mut() = who
                        .permissions
                        .clone()
                        .map(crate::auth::ConnPermissions::new);
                    *c.who.borrow_mut() = Some(who);
                    drop_forbidden_subs(&shard, &c);
                }
                Err(e) => {
                    tracing::info!("{} - cid:{} - closed after reload: {e}", c.addr, c.cid);
                    c.send_err(crate::auth::AUTH_VIOLATION);
                    c.close(crate::client::CloseReason::AuthenticationViolation);
                }
            }
        });
        checks.push(task);
    }
    // Leaf links that came in as one of the server's users: that user may
    // be gone or moved (`leafnodes { }` itself cannot change on reload).
    let links: Vec<_> = shard.leafs.borrow().iter().cloned().collect();
    for c in links {
        let Some(conn) = c
            .leaf
            .as_ref()
            .filter(|l| l.remote.is_none())
            .and_then(|l| l.connect.borrow().clone())
        else {
            continue;
        };
        checks.push(runtime::spawn_local(async move {
            if crate::leaf::auth::authenticate(&c, &conn).await != Some(c.account()) {
                tracing::info!(
                    "{} - lid:{} - leaf link closed after reload: its credentials no longer bind it to its account",
                    c.addr,
                    c.cid
                );
                c.send_err(crate::auth::AUTH_VIOLATION);
                c.close(crate::client::CloseReason::AuthenticationViolation);
            }
        }));
    }
    runtime::spawn_local(async move {
        for t in checks {
            t.await;
        }
        let _ = done.send(());
    })
    .detach();
}

/// After a reload, subscriptions the user may no longer make are removed
/// and the client is told which (by subject and sid), as the reference does.
fn drop_forbidden_subs(shard: &Shard, c: &crate::client::Client) {
    let subs: Vec<crate::client::SubRef> = c.subs.borrow().values().cloned().collect();
    for s in subs {
        let allowed = c
            .perms
            .borrow_mut()
            .as_mut()
            .is_none_or(|p| p.can_subscribe(&s.0.subject, s.0.queue.as_deref()));
        if allowed {
            continue;
        }
        c.drop_sub(&s.0.sid);
        shard.remove_sub(&s);
        c.send_err(&format!(
            "{} (sid {:?})",
            crate::auth::subscribe_violation(&s.0.subject, s.0.queue.as_deref()),
            String::from_utf8_lossy(&s.0.sid)
        ));
    }
}
