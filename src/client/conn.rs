//! The tasks behind one connection: a reader that parses and executes
//! operations, a writer that flushes the outbound buffer, and timers for
//! keep-alive and authentication.

use std::cell::Cell;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use bytes::{Bytes, BytesMut};
use futures_lite::{AsyncReadExt, AsyncWriteExt};

use super::outbound::{self, Quiet, Take};
use super::{Client, CloseReason, Sub, SubRef};
use crate::auth;
use crate::global::ShardStats;
use crate::protocol::info::Connect;
use crate::protocol::{parse, ClientOp, Limits, ParseError, Parsed};
use crate::runtime::{self, Socket, TcpStream};
use crate::shard::Shard;
use crate::subject;

/// A read's room once traffic flows (a read that filled the buffer).
const READ_CHUNK: usize = 64 * 1024;
/// A read's room on a connection that has been quiet: what arrives is
/// usually one small operation, and this is what the buffer shrinks back
/// to ([`outbound::QUIET`] after the last large read).
const READ_SMALL: usize = 4 * 1024;
/// Largest single write of a batch.
const WRITE_SLICE: usize = 64 * 1024;

pub fn start(shard: Rc<Shard>, client: Rc<Client>, reader: Socket, writer: TcpStream) {
    if client.websocket {
        drop(writer);
        runtime::spawn_local(ws_start(shard, client, reader)).detach();
        return;
    }
    match client.g.tls.clone() {
        None => {
            client.send_info(false);
            runtime::spawn_local(write_loop(client.clone(), writer)).detach();
            runtime::spawn_local(read_loop(shard, client, reader)).detach();
        }
        Some(tls) => {
            // One TLS session cannot be driven from two descriptors (the
            // second only peeks, for `handshake_first` with a fallback).
            runtime::spawn_local(tls_start(shard, client, reader, writer, tls)).detach();
        }
    }
}

/// TLS: INFO in the clear and the client upgrades (or, with
/// `handshake_first`, the handshake comes before INFO), within the TLS
/// timeout; then the same reader and writer run over the TLS stream.
///
/// `handshake_first` with a fallback delay (`300ms`, `auto`): nats'
/// "TLS first fallback". The server waits that long for the client's first
/// bytes; if any come, the handshake comes first (the bytes are not judged
/// here: a client that is not speaking TLS fails the handshake, as in
/// nats); if none, INFO is sent in the clear and the client upgrades as
/// usual.
async fn tls_start(
    shard: Rc<Shard>,
    client: Rc<Client>,
    mut stream: Socket,
    peeker: TcpStream,
    tls: crate::tls::Tls,
) {
    let mut first = tls.handshake_first;
    if let (true, Some(wait)) = (first, tls.fallback) {
        // Peeking leaves the ClientHello for the handshake to read.
        let mut byte = [0u8; 1];
        first = runtime::timeout(wait, peeker.peek(&mut byte))
            .await
            .is_some();
    }
    drop(peeker);
    if !first {
        let info = client.info(false).to_line();
        if stream.write_all(&info).await.is_err() {
            release(&shard, &client, CloseReason::WriteError);
            return;
        }
    }
    let acceptor = futures_rustls::TlsAcceptor::from(tls.config.clone());
    // The handshake owns the socket (and closes it on failure), so the
    // descriptor is not ours to shut down until it succeeds.
    let fd = client.reader_fd.take();
    let reason = match runtime::timeout(tls.timeout, acceptor.accept(stream)).await {
        Some(Ok(tls_stream)) => {
            client.reader_fd.set(fd);
            if first {
                client.send_info(false);
            }
            let (r, w) = futures_lite::io::split(tls_stream);
            runtime::spawn_local(write_loop(client.clone(), w)).detach();
            read_loop(shard, client, r).await;
            return;
        }
        Some(Err(e)) => {
            tracing::error!(
                "{} - cid:{} - TLS handshake error: {e}",
                client.addr,
                client.cid
            );
            CloseReason::TlsHandshakeError
        }
        None => {
            tracing::error!(
                "{} - cid:{} - TLS handshake timeout",
                client.addr,
                client.cid
            );
            CloseReason::TlsHandshakeError
        }
    };
    release(&shard, &client, reason);
}

/// WebSocket: (TLS, then) the HTTP upgrade within the handshake timeout;
/// then INFO and the usual reader and writer over the frames.
async fn ws_start(shard: Rc<Shard>, client: Rc<Client>, stream: Socket) {
    let Some((cfg, tls)) = client.g.websocket.clone() else {
        release(&shard, &client, CloseReason::ProtocolViolation);
        return;
    };
    let limit = cfg.handshake_timeout.unwrap_or(crate::tls::DEFAULT_TIMEOUT);
    // The handshake owns the socket until it succeeds (see tls_start).
    let fd = client.reader_fd.take();
    let result = match tls {
        Some(tls) => {
            let acceptor = futures_rustls::TlsAcceptor::from(tls.config.clone());
            match runtime::timeout(limit, acceptor.accept(stream)).await {
                Some(Ok(s)) => ws_upgrade(&shard, &client, s, &cfg, limit, fd).await,
                Some(Err(e)) => Err(format!("TLS handshake error: {e}")),
                None => Err("TLS handshake timeout".into()),
            }
        }
        None => ws_upgrade(&shard, &client, stream, &cfg, limit, fd).await,
    };
    if let Err(e) = result {
        tracing::error!("{} - wid:{} - {e}", client.addr, client.cid);
        release(&shard, &client, CloseReason::ProtocolViolation);
    }
}

async fn ws_upgrade<S>(
    shard: &Rc<Shard>,
    client: &Rc<Client>,
    mut s: S,
    cfg: &crate::options::WebsocketConfig,
    limit: Duration,
    fd: Option<std::os::fd::RawFd>,
) -> Result<(), String>
where
    S: futures_lite::AsyncRead + futures_lite::AsyncWrite + Unpin + 'static,
{
    let early = match runtime::timeout(limit, super::websocket::handshake(&mut s, cfg)).await {
        Some(Ok(early)) => early,
        Some(Err(e)) => return Err(e.to_string()),
        None => return Err("websocket handshake timeout".into()),
    };
    client.reader_fd.set(fd);
    client.send_info(false);
    let (r, w) = futures_lite::io::split(super::websocket::WsStream::new(s, early));
    runtime::spawn_local(write_loop(client.clone(), w)).detach();
    read_loop(shard.clone(), client.clone(), r).await;
    Ok(())
}

async fn write_loop<W: futures_lite::AsyncWrite + Unpin>(client: Rc<Client>, mut stream: W) {
    // Grows with the batches it carries (see `outbound::Quiet`).
    let mut spare: Vec<u8> = Vec::new();
    loop {
        match client.out.take_into(&mut spare).await {
            Take::Batch => {}
            Take::Closed => break,
            Take::Shrunk => {
                // The transport may hold a copy buffer of its own
                // (`WsStream` frames each write): flushing lets it go.
                let _ = runtime::timeout(Duration::from_secs(1), stream.flush()).await;
                outbound::released();
                continue;
            }
        }
        let deadline = client.limits.get().write_deadline;
        // Once closing, do not let a stuck peer hold the socket for long.
        let limit = if client.out.is_closing() {
            deadline.min(Duration::from_secs(2))
        } else {
            deadline
        };
        // One deadline for the batch, written in slices so that waiting
        // producers see a slow reader's progress (see `Shard::unstall`).
        let until = std::time::Instant::now() + limit;
        let mut failed = None;
        for part in spare.chunks(WRITE_SLICE) {
            let left = until.saturating_duration_since(std::time::Instant::now());
            match runtime::timeout(left, stream.write_all(part)).await {
                Some(Ok(())) => client.out.wrote(part.len()),
                Some(Err(_)) => {
                    failed = Some(CloseReason::WriteError);
                    break;
                }
                None => {
                    failed = Some(CloseReason::SlowConsumerWriteDeadline);
                    break;
                }
            }
        }
        match failed {
            Some(CloseReason::SlowConsumerWriteDeadline) => {
                client.slow_consumer(CloseReason::SlowConsumerWriteDeadline);
                break;
            }
            Some(reason) => {
                client.close(reason);
                break;
            }
            None => {}
        }
        if let Some(watch) = client.out.wrote_batch(spare.len(), spare.capacity()) {
            runtime::spawn_local(watch.watch(outbound::QUIET)).detach();
        }
        spare.clear();
        if spare.capacity() > 4 * 1024 * 1024 {
            spare = Vec::new();
        }
    }
    // Wakes the reader if it is still waiting, then ends our direction.
    client.close(CloseReason::WriteError);
    let _ = runtime::timeout(Duration::from_secs(1), stream.close()).await;
}

async fn ping_loop(client: Rc<Client>) {
    loop {
        runtime::sleep(client.limits.get().ping_interval).await;
        if client.is_closed() {
            return;
        }
        if client.pings_out.get() + 1 > client.limits.get().ping_max {
            client.send_err("Stale Connection");
            tracing::debug!(
                "{} - cid:{} - Stale Client Connection - Closing",
                client.addr,
                client.cid
            );
            client.close(CloseReason::StaleConnection);
            return;
        }
        client.pings_out.set(client.pings_out.get() + 1);
        client.out.push(b"PING\r\n");
    }
}

async fn auth_timer(client: Rc<Client>, after: Duration) {
    runtime::sleep(after).await;
    if !client.authed.get() && !client.is_closed() {
        tracing::error!(
            "{} - cid:{} - Authentication Timeout",
            client.addr,
            client.cid
        );
        client.send_err(auth::AUTH_TIMEOUT);
        client.close(CloseReason::AuthenticationTimeout);
    }
}

/// Closes a connection when its user JWT expires, as the reference does.
async fn expire(client: Rc<Client>, after: Duration) {
    runtime::sleep(after).await;
    if !client.is_closed() {
        tracing::info!("{} - cid:{} - User JWT expired", client.addr, client.cid);
        client.send_err("User Authentication Expired");
        client.close(CloseReason::AuthenticationViolation);
    }
}

fn reason_for(e: &ParseError) -> CloseReason {
    match e {
        ParseError::MaxPayload { .. } => CloseReason::MaxPayload,
        ParseError::MaxControlLine(_) => CloseReason::MaxControlLine,
        _ => CloseReason::ProtocolViolation,
    }
}

async fn read_loop<R: futures_lite::AsyncRead + Unpin>(
    shard: Rc<Shard>,
    client: Rc<Client>,
    mut stream: R,
) {
    let opts = &client.g.opts;
    let _pinger = runtime::spawn_local(ping_loop(client.clone()));
    let authenticator = if client.websocket {
        client.g.ws_auth()
    } else {
        client.g.auth()
    };
    let _auth = (!client.authed.get())
        .then(|| runtime::spawn_local(auth_timer(client.clone(), authenticator.timeout())));
    drop(authenticator);
    let mut limits = Limits {
        max_control_line: opts.max_control_line,
        max_payload: opts.max_payload,
    };
    // Protocol tracing (-V) is decided once per connection, so the hot path
    // pays one branch for it.
    let trace = tracing::enabled!(tracing::Level::TRACE);
    let mut rbuf = BytesMut::new();
    // Room for the next read: small until a read fills it, back to small
    // once the connection was quiet for a while (`quiet`).
    let mut want = READ_SMALL;
    let quiet = Rc::new(Quiet::default());
    // Bytes the next operation needs before parsing is worth trying.
    let mut need = 0usize;
    let mut conn = Conn {
        shard: &shard,
        client: &client,
        verbose: true,
        pedantic: true,
        stall_budget: Cell::new(crate::shard::STALL_TOTAL),
    };
    let reason = 'read: loop {
        rbuf.reserve(want.max(need.saturating_sub(rbuf.len())));
        let len = rbuf.len();
        let spare = rbuf.spare_capacity_mut();
        // SAFETY: the kernel only writes into this spare capacity and we only
        // expose the bytes it reports as read.
        let dst = unsafe { &mut *(spare as *mut [std::mem::MaybeUninit<u8>] as *mut [u8]) };
        let room = dst.len();
        // While the buffer is grown, a quiet spell ends the wait for data
        // (every reader here is poll-based, so dropping a pending read
        // loses nothing).
        let read = if quiet.armed() {
            futures_lite::future::or(async { Some(stream.read(dst).await) }, async {
                quiet.due().await;
                None
            })
            .await
        } else {
            Some(stream.read(dst).await)
        };
        let n = match read {
            Some(Ok(0)) => break CloseReason::ClientClosed,
            Some(Ok(n)) => n,
            Some(Err(_)) => break CloseReason::ReadError,
            None => {
                // Quiet: keep only what an incomplete operation carried
                // over, in a buffer of its own (the grown one may be shared
                // with chunks still travelling; it goes with the last).
                quiet.take_due();
                let mut small = BytesMut::with_capacity(READ_SMALL.max(rbuf.len()));
                small.extend_from_slice(&rbuf);
                rbuf = small;
                want = READ_SMALL;
                outbound::released();
                continue;
            }
        };
        // SAFETY: `n` bytes past `len` were just initialised by the read.
        unsafe { rbuf.set_len(len + n) };
        if n == room {
            want = READ_CHUNK;
        }
        if n > outbound::BUSY && quiet.busy(std::time::Instant::now()) {
            runtime::spawn_local(quiet.clone().watch(outbound::QUIET)).detach();
        }
        if client.is_closed() {
            break CloseReason::ClientClosed;
        }
        client.last_activity.set(SystemTime::now());
        if rbuf.len() < need {
            continue;
        }
        // Freeze what arrived: operations borrow it, and messages for other
        // shards share it with one reference count per read.
        let chunk = rbuf.split().freeze();
        conn.stall_budget.set(crate::shard::STALL_TOTAL);
        let mut at = 0;
        need = 0;
        limits.max_payload = client.max_payload.get();
        while at < chunk.len() {
            match parse(&chunk[at..], &limits) {
                Ok(Parsed::Op(op, used)) => {
                    at += used;
                    if trace {
                        tracing::trace!(
                            "{} - cid:{} - <<- [{}]",
                            client.addr,
                            client.cid,
                            describe(&op)
                        );
                    }
                    // PUB, the hot path, runs without entering the generic
                    // (async) handler unless something has to be waited for.
                    let done = match op {
                        ClientOp::Pub {
                            subject,
                            reply,
                            hdr_len,
                            msg,
                        } if client.authed.get() && client.sync.borrow().is_none() => {
                            let r = conn.publish_now(&chunk, subject, reply, hdr_len, msg);
                            if r.is_ok() && (shard.has_stalled() || shard.any_congested()) {
                                conn.after_publish().await;
                            }
                            r
                        }
                        op => conn.handle(&chunk, op).await,
                    };
                    if let Err(reason) = done {
                        break 'read reason;
                    }
                }
                Ok(Parsed::Incomplete(n)) => {
                    need = n;
                    break;
                }
                Ok(Parsed::Blank(n)) => at += n,
                Err(e) => {
                    tracing::error!("{} - cid:{} - {e}", client.addr, client.cid);
                    if let Some(text) = e.client_error() {
                        client.send_err(text);
                    }
                    break 'read reason_for(&e);
                }
            }
        }
        // What this read made the server say (PONG, +OK, -ERR, INFO)
        // counts against max_pending like messages: a peer that sends but
        // never reads must not grow the server's memory.
        client.check_pending();
        if client.is_closed() {
            break 'read CloseReason::SlowConsumerPendingBytes;
        }
        // Carry an incomplete operation over to the next read.
        if at < chunk.len() {
            rbuf.extend_from_slice(&chunk[at..]);
        }
        // Let subscribers' writers drain what this read delivered before
        // reading more: a burst from one publisher must not pile up in a
        // fast subscriber's buffer (and trip max_pending) only because the
        // writer never got a turn.
        runtime::yield_now().await;
    };
    client.close(reason);
    // The socket goes with `stream`: nobody may shut it down after this.
    client.reader_fd.set(None);
    drop(stream);
    release(&shard, &client, reason);
}

/// An operation as the protocol trace shows it (payloads by size only;
/// CONNECT without credentials).
fn describe(op: &ClientOp) -> String {
    let t = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    match op {
        ClientOp::Connect(_) => "CONNECT".into(),
        ClientOp::Pub {
            subject,
            reply,
            hdr_len,
            msg,
        } => {
            let verb = if hdr_len.is_some() { "HPUB" } else { "PUB" };
            let reply = reply.map(|r| format!(" {}", t(r))).unwrap_or_default();
            let hdr = hdr_len.map(|h| format!(" {h}")).unwrap_or_default();
            format!("{verb} {}{reply}{hdr} {}", t(subject), msg.len())
        }
        ClientOp::Sub {
            subject,
            queue,
            sid,
        } => match queue {
            Some(q) => format!("SUB {} {} {}", t(subject), t(q), t(sid)),
            None => format!("SUB {} {}", t(subject), t(sid)),
        },
        ClientOp::Unsub { sid, max } => match max {
            Some(m) => format!("UNSUB {} {m}", t(sid)),
            None => format!("UNSUB {}", t(sid)),
        },
        ClientOp::Ping => "PING".into(),
        ClientOp::Pong => "PONG".into(),
        ClientOp::Info => "INFO".into(),
        ClientOp::Ok => "+OK".into(),
        ClientOp::Err(e) => format!("-ERR {}", t(e)),
    }
}

/// Ends a connection for good: nobody may shut its socket down after this;
/// its subscriptions go and the shard forgets it.
fn release(shard: &Shard, client: &Client, reason: CloseReason) {
    client.close(reason);
    if let Some(acc) = client.counted.take() {
        if let Some(n) = client.g.account_conns.get(acc as usize) {
            n.fetch_sub(1, Ordering::Relaxed);
        }
    }
    client.reader_fd.set(None);
    let subs: Vec<SubRef> = client.subs.borrow_mut().drain().map(|(_, s)| s).collect();
    for s in &subs {
        shard.remove_sub(s);
    }
    shard.clients.borrow_mut().remove(&client.cid);
    shard.stats().connections.fetch_sub(1, Ordering::Relaxed);
    let why = client.reason.get().unwrap_or(reason);
    tracing::debug!(
        "{} - cid:{} - Client connection closed: {}",
        client.addr,
        client.cid,
        why.as_str()
    );
}

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

struct Conn<'a> {
    shard: &'a Rc<Shard>,
    client: &'a Rc<Client>,
    verbose: bool,
    pedantic: bool,
    /// What is left of this read's allowance for waiting on lagging
    /// subscribers (see `Shard::unstall`).
    stall_budget: Cell<Duration>,
}

impl Conn<'_> {
    fn ok(&self) {
        if self.verbose {
            self.client.out.push(b"+OK\r\n");
        }
    }

    async fn handle(&mut self, data: &Bytes, op: ClientOp<'_>) -> Result<(), CloseReason> {
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
                        runtime::spawn_local(expire(client.clone(), left)).detach();
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
        client.connected.set(true);
        self.verbose = c.verbose;
        self.pedantic = c.pedantic;
        client.update_connect(c);
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
    async fn after_publish(&self) {
        if self.shard.has_stalled() {
            self.shard.unstall(&self.stall_budget).await;
        }
        if self.shard.any_congested() {
            self.shard.link_space().await;
        }
    }

    /// The synchronous part of PUB/HPUB: checks, counters, delivery.
    fn publish_now(
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
