//! The tasks behind one connection: a reader that parses operations (and
//! hands them to `ops.rs`), a writer that flushes the outbound buffer, and
//! timers for keep-alive and authentication.

use std::cell::Cell;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use bytes::BytesMut;
use futures_lite::{AsyncReadExt, AsyncWriteExt};

use super::ops::Conn;
use super::outbound::{self, Quiet, Take};
use super::{Client, CloseReason, SubRef};
use crate::auth;
use crate::protocol::{parse, ClientOp, Limits, ParseError, Parsed};
use crate::runtime::{self, Socket, Writer};
use crate::shard::Shard;

/// A read's room once traffic flows (a read that filled the buffer).
const READ_CHUNK: usize = 64 * 1024;
/// A read's room on a connection that has been quiet: what arrives is
/// usually one small operation, and this is what the buffer shrinks back
/// to ([`outbound::QUIET`] after the last large read).
const READ_SMALL: usize = 4 * 1024;
/// Largest single write of a batch.
const WRITE_SLICE: usize = 64 * 1024;

pub fn start(shard: Rc<Shard>, client: Rc<Client>, reader: Socket, writer: Writer) {
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
    peeker: Writer,
    tls: crate::tls::Tls,
) {
    let mut first = tls.handshake_first;
    if let (true, Some(wait)) = (first, tls.fallback) {
        // Peeking leaves the ClientHello for the handshake to read.
        let mut byte = [0u8; 1];
        first = runtime::timeout(wait, peeker.stream().peek(&mut byte))
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

pub(crate) async fn write_loop<W: futures_lite::AsyncWrite + Unpin>(
    client: Rc<Client>,
    mut stream: W,
) {
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
            match runtime::timeout_lazy(left, stream.write_all(part)).await {
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
        // Kept while busy, up to a max_pending's worth (the quiet watch
        // gives both buffers back once traffic stops): dropping it past
        // 4 MiB made a fast fan-out regrow it by reallocation and fresh
        // page faults on every batch (13% of server CPU, Go client).
        if spare.capacity() > 64 * 1024 * 1024 {
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
pub(super) async fn expire(client: Rc<Client>, after: Duration) {
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
        ponged: false,
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
    let why = client.reason.get().unwrap_or(reason);
    // Snapshot for `/connz?state=closed`, subscriptions and all.
    shard.g.closed.record(shard, client, why);
    let subs: Vec<SubRef> = client.subs.borrow_mut().drain().map(|(_, s)| s).collect();
    for s in &subs {
        shard.remove_sub(s);
    }
    shard.clients.borrow_mut().remove(&client.cid);
    shard.stats().connections.fetch_sub(1, Ordering::Relaxed);
    crate::system::disconnected(shard, client, why.as_str());
    tracing::debug!(
        "{} - cid:{} - Client connection closed: {}",
        client.addr,
        client.cid,
        why.as_str()
    );
}
