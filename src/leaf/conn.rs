//! A leaf link's socket: the accepting side's handshake (INFO with a
//! nonce, then CONNECT with credentials that bind the link to an account)
//! and the read loop both sides run once the link is up.

use std::cell::Cell;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

use bytes::{Bytes, BytesMut};
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use serde::{Deserialize, Serialize};

use super::protocol::{parse, LeafOp, Parsed};
use super::{interest, sid_of, LeafState};
use crate::client::{Client, CloseReason, Sub, SubRef};
use crate::protocol::Limits;
use crate::runtime;
use crate::shard::sink::Sink;
use crate::shard::{Origin, Shard};

/// The reference's default time for a leaf to send CONNECT.
const AUTH_TIMEOUT: Duration = Duration::from_secs(2);

/// INFO on the leaf port, and the INFO answering a leaf's CONNECT.
#[derive(Serialize, Default)]
pub struct LeafInfo {
    pub server_id: String,
    pub server_name: String,
    pub version: String,
    pub proto: i32,
    pub go: String,
    pub host: String,
    pub port: u16,
    pub headers: bool,
    pub auth_required: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub tls_required: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub tls_verify: bool,
    pub max_payload: usize,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub jetstream: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    pub client_id: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub leafnode_urls: Vec<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub connect_info: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remote_account: Option<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub info_on_connect: bool,
}

impl LeafInfo {
    pub fn to_line(&self) -> Vec<u8> {
        let mut v = b"INFO ".to_vec();
        v.extend_from_slice(serde_json::to_string(self).unwrap_or_default().as_bytes());
        v.extend_from_slice(b"\r\n");
        v
    }
}

/// The CONNECT a leaf sends (the fields we use; the rest is ignored).
#[derive(Deserialize, Serialize, Default, Debug, Clone)]
pub struct LeafConnect {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pass: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nkey: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sig: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwt: Option<String>,
    #[serde(
        default,
        rename = "server_id",
        skip_serializing_if = "String::is_empty"
    )]
    pub server_id: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default, rename = "is_hub", skip_serializing_if = "std::ops::Not::not")]
    pub hub: bool,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub cluster: String,
    /// The sender's JetStream domain.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub domain: String,
    #[serde(default)]
    pub headers: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub jetstream: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deny_pub: Vec<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub remote_account: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub gateway: String,
    /// Only clients send this: one on the leaf port is on the wrong port.
    #[serde(default, skip_serializing)]
    pub lang: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proto: Option<i32>,
}

/// INFO as this server sends it on the leaf port.
pub fn info(g: &crate::global::Global, cid: u64, nonce: Option<String>) -> LeafInfo {
    let opts = g.opts.leafnodes.as_ref();
    let port = g.leaf_addr.get().map_or(0, |a| a.port());
    let host = opts.map_or_else(|| "0.0.0.0".to_string(), |o| o.host.clone());
    let advertise = opts.and_then(|o| o.advertise.clone());
    let url = advertise.unwrap_or_else(|| {
        let h = if host == "0.0.0.0" || host.is_empty() {
            "127.0.0.1".to_string()
        } else {
            host.clone()
        };
        format!("{h}:{port}")
    });
    LeafInfo {
        server_id: g.server_id.clone(),
        server_name: g.server_name.clone(),
        version: crate::protocol::info::NATS_VERSION.into(),
        proto: 1,
        go: "go1.21.0".into(),
        host,
        port,
        headers: true,
        auth_required: true,
        tls_required: g.leaf_tls.is_some(),
        tls_verify: g.leaf_tls.as_ref().is_some_and(|t| t.verify),
        max_payload: g.opts.max_payload,
        jetstream: g.jetstream.get().is_some(),
        domain: g.opts.jetstream_domain.clone(),
        client_id: cid,
        nonce,
        leafnode_urls: if opts.is_some_and(|o| o.no_advertise) {
            Vec::new()
        } else {
            vec![url]
        },
        connect_info: false,
        remote_account: None,
        info_on_connect: true,
    }
}

/// Takes over a socket accepted on the leaf port.
pub fn accept(shard: &Rc<Shard>, fd: OwnedFd, addr: SocketAddr) {
    let g = shard.g.clone();
    let cid = g.next_cid.fetch_add(1, Ordering::Relaxed);
    let raw = fd.as_raw_fd();
    let (reader, writer) = match runtime::bind_socket(fd) {
        Ok(x) => x,
        Err(e) => {
            tracing::error!("{addr} - lid:{cid} - could not take over connection: {e}");
            return;
        }
    };
    let state = Rc::new(LeafState::new(
        None,
        Vec::new(),
        Vec::new(),
        g.opts.jetstream_domain.as_deref(),
    ));
    let nonce = crate::auth::new_nonce();
    let c = Rc::new(Client::new(
        shard,
        cid,
        addr,
        false,
        false,
        Some(nonce.clone()),
        Some(state),
    ));
    c.reader_fd.set(Some(raw));
    tracing::info!("{addr} - lid:{cid} - Leafnode connection created");
    let line = info(&g, cid, Some(nonce)).to_line();
    let shard = shard.clone();
    runtime::spawn_local(async move {
        match shard.g.leaf_tls.clone() {
            None => {
                c.out.push(&line);
                runtime::spawn_local(crate::client::write_loop(c.clone(), writer)).detach();
                read_loop(shard, c, reader, BytesMut::new()).await;
            }
            Some(t) => {
                drop(writer);
                let mut stream = reader;
                if stream.write_all(&line).await.is_err() {
                    release(&shard, &c, CloseReason::WriteError);
                    return;
                }
                let acceptor = futures_rustls::TlsAcceptor::from(t.config.clone());
                let fd = c.reader_fd.take();
                match runtime::timeout(t.timeout, acceptor.accept(stream)).await {
                    Some(Ok(s)) => {
                        c.reader_fd.set(fd);
                        let (r, w) = futures_lite::io::split(s);
                        runtime::spawn_local(crate::client::write_loop(c.clone(), w)).detach();
                        read_loop(shard, c, r, BytesMut::new()).await;
                    }
                    Some(Err(e)) => {
                        tracing::error!("{addr} - lid:{cid} - TLS handshake error: {e}");
                        release(&shard, &c, CloseReason::TlsHandshakeError);
                    }
                    None => {
                        tracing::error!("{addr} - lid:{cid} - TLS handshake timeout");
                        release(&shard, &c, CloseReason::TlsHandshakeError);
                    }
                }
            }
        }
    })
    .detach();
}

async fn auth_timer(c: Rc<Client>, after: Duration) {
    runtime::sleep(after).await;
    if !c.authed.get() && !c.is_closed() {
        tracing::error!("{} - lid:{} - Authentication Timeout", c.addr, c.cid);
        c.send_err(crate::auth::AUTH_TIMEOUT);
        c.close(CloseReason::AuthenticationTimeout);
    }
}

async fn ping_loop(c: Rc<Client>) {
    loop {
        runtime::sleep(c.limits.get().ping_interval).await;
        if c.is_closed() {
            return;
        }
        if c.pings_out.get() + 1 > c.limits.get().ping_max {
            c.send_err("Stale Connection");
            c.close(CloseReason::StaleConnection);
            return;
        }
        c.pings_out.set(c.pings_out.get() + 1);
        ping(&c);
    }
}

fn ping(c: &Client) {
    if let Some(l) = &c.leaf {
        if l.ping_at.get().is_none() {
            l.ping_at.set(Some(Instant::now()));
        }
    }
    c.out.push(b"PING\r\n");
}

/// Makes a link whose handshake is done part of the shard: it gets the
/// account's interest and takes part in delivery.
pub fn up(shard: &Shard, c: &Rc<Client>) {
    let Some(l) = &c.leaf else { return };
    l.ready.set(true);
    c.authed.set(true);
    shard.leafs.borrow_mut().push(c.clone());
    shard.stats().leafs.fetch_add(1, Ordering::Relaxed);
    interest::snapshot(shard, c);
    ping(c);
}

/// Reads and applies what the other side sends until the link ends.
pub async fn read_loop<R: futures_lite::AsyncRead + Unpin>(
    shard: Rc<Shard>,
    c: Rc<Client>,
    mut stream: R,
    mut rbuf: BytesMut,
) {
    let _pinger = runtime::spawn_local(ping_loop(c.clone()));
    let timeout = shard
        .g
        .opts
        .leafnodes
        .as_ref()
        .and_then(|o| o.auth.timeout)
        .unwrap_or(AUTH_TIMEOUT)
        .max(
            shard
                .g
                .leaf_tls
                .as_ref()
                .map_or(Duration::ZERO, |t| t.timeout),
        );
    let _auth = (!c.authed.get()).then(|| runtime::spawn_local(auth_timer(c.clone(), timeout)));
    let limits = Limits {
        max_control_line: shard.g.opts.max_control_line.max(4096),
        max_payload: shard.g.opts.max_payload,
    };
    let budget = Cell::new(crate::shard::STALL_TOTAL);
    let mut need = 0usize;
    let reason = 'read: loop {
        if rbuf.len() < need.max(1) || rbuf.is_empty() {
            rbuf.reserve(64 * 1024);
            let len = rbuf.len();
            let spare = rbuf.spare_capacity_mut();
            // SAFETY: the kernel only writes into the spare capacity and
            // only the bytes it reports are exposed.
            let dst = unsafe { &mut *(spare as *mut [std::mem::MaybeUninit<u8>] as *mut [u8]) };
            let n = match stream.read(dst).await {
                Ok(0) => break CloseReason::ClientClosed,
                Ok(n) => n,
                Err(_) => break CloseReason::ReadError,
            };
            // SAFETY: `n` bytes past `len` were just written by the read.
            unsafe { rbuf.set_len(len + n) };
            if c.is_closed() {
                break CloseReason::ClientClosed;
            }
            c.last_activity.set(SystemTime::now());
            if rbuf.len() < need {
                continue;
            }
        }
        let chunk = rbuf.split().freeze();
        budget.set(crate::shard::STALL_TOTAL);
        let mut at = 0;
        need = 0;
        while at < chunk.len() {
            match parse(&chunk[at..], &limits) {
                Ok(Parsed::Op(op, used)) => {
                    at += used;
                    if let Err(reason) = handle(&shard, &c, &chunk, op).await {
                        break 'read reason;
                    }
                }
                Ok(Parsed::Incomplete(n)) => {
                    need = n;
                    break;
                }
                Ok(Parsed::Blank(n)) => at += n,
                Err(e) => {
                    tracing::error!("{} - lid:{} - {e}", c.addr, c.cid);
                    if let Some(text) = e.client_error() {
                        c.send_err(text);
                    }
                    break 'read CloseReason::ParseError;
                }
            }
        }
        if c.is_closed() {
            break 'read c.reason.get().unwrap_or(CloseReason::ClientClosed);
        }
        if shard.has_stalled() {
            shard.unstall(&budget).await;
        }
        if shard.any_congested() {
            shard.link_space().await;
        }
        if at < chunk.len() {
            rbuf.extend_from_slice(&chunk[at..]);
        }
        runtime::yield_now().await;
    };
    c.close(reason);
    c.reader_fd.set(None);
    drop(stream);
    release(&shard, &c, reason);
}

async fn handle(
    shard: &Rc<Shard>,
    c: &Rc<Client>,
    data: &Bytes,
    op: LeafOp<'_>,
) -> Result<(), CloseReason> {
    let Some(l) = c.leaf.clone() else {
        return Err(CloseReason::ProtocolViolation);
    };
    if !l.ready.get() && l.remote.is_some() {
        // We dialed: the hub's INFO answering our CONNECT says it took the
        // link (a refusal comes as -ERR and a close instead).
        match &op {
            LeafOp::Info(json) => {
                let v: serde_json::Value = serde_json::from_slice(json).unwrap_or_default();
                if v["connect_info"].as_bool().unwrap_or(false) {
                    if let Some(acc) = v["remote_account"].as_str() {
                        *l.remote_account.borrow_mut() = acc.to_string();
                    }
                    up(shard, c);
                }
                return Ok(());
            }
            LeafOp::Ping => {
                c.out.push(b"PONG\r\n");
                return Ok(());
            }
            LeafOp::Pong | LeafOp::Ok => return Ok(()),
            LeafOp::Err(_) => {}
            // Anything else means the hub took the link without saying so.
            _ => up(shard, c),
        }
    }
    if !l.ready.get() && l.remote.is_none() {
        // An accepted link: CONNECT first (PINGs are answered).
        return match op {
            LeafOp::Connect(json) => connect(shard, c, &l, json).await,
            LeafOp::Ping => {
                c.out.push(b"PONG\r\n");
                Ok(())
            }
            LeafOp::Info(_) | LeafOp::Pong => Ok(()),
            _ => {
                c.send_err("Authorization Violation");
                Err(CloseReason::AuthenticationViolation)
            }
        };
    }
    match op {
        LeafOp::Msg {
            subject,
            reply,
            queues,
            hdr_len,
            msg,
        } => {
            let n = &c.counters;
            n.in_msgs.set(n.in_msgs.get() + 1);
            n.in_bytes.set(n.in_bytes.get() + msg.len() as u64);
            let st = shard.stats();
            crate::global::ShardStats::add(&st.in_msgs, 1);
            crate::global::ShardStats::add(&st.in_bytes, msg.len() as u64);
            if l.denies_in(subject) {
                return Ok(());
            }
            if !super::may_send(c, subject) {
                c.send_err(&crate::auth::publish_violation(subject));
                tracing::error!(
                    "{} - lid:{} - Publish Violation on {:?} - Check other side configuration",
                    c.addr,
                    c.cid,
                    String::from_utf8_lossy(subject)
                );
                return Err(CloseReason::ProtocolViolation);
            }
            let (reply, shown) = match reply {
                Some(r) => {
                    let (r, shown) = super::split_ack_reply(r);
                    (Some(r), shown)
                }
                None => (None, None),
            };
            let m = crate::shard::Msg {
                data,
                subject,
                shown,
                reply,
                hdr_len,
                msg,
            };
            let o = Origin {
                cid: c.cid,
                echo: false,
                forwarded: None,
                no_responders: false,
                queues: Some(&queues),
                spoke: l.spoke.get(),
            };
            if shard.g.accounts.multi {
                shard.publish_accounts(&o, c.account(), data, &m);
            } else {
                shard.publish_in(&o, c.account(), data, &m);
            }
            Ok(())
        }
        LeafOp::Sub { subject, queue } => {
            subscribe(shard, c, &l, subject, queue);
            Ok(())
        }
        LeafOp::Unsub { subject, queue } => {
            let sid = sid_of(subject, queue);
            l.weights.borrow_mut().remove(&sid);
            if let Some(s) = c.drop_sub(&sid) {
                shard.remove_sub(&s);
            }
            Ok(())
        }
        LeafOp::Ping => {
            c.out.push(b"PONG\r\n");
            Ok(())
        }
        LeafOp::Pong => {
            c.pings_out.set(0);
            if let Some(t) = l.ping_at.take() {
                l.rtt.set(Some(t.elapsed()));
            }
            Ok(())
        }
        LeafOp::Info(_) | LeafOp::Ok | LeafOp::Connect(_) => Ok(()),
        LeafOp::Err(text) => {
            let text = String::from_utf8_lossy(text);
            tracing::error!("{} - lid:{} - Leafnode Error {text}", c.addr, c.cid);
            if text.contains("Loop detected") {
                l.loop_detected.set(true);
            }
            Ok(())
        }
    }
}

fn subscribe(
    shard: &Shard,
    c: &Rc<Client>,
    l: &LeafState,
    subject: &[u8],
    queue: Option<(&[u8], u32)>,
) {
    if subject == super::lds().as_bytes() {
        let acc = shard.g.accounts.name(c.account()).to_string();
        let text = format!(
            "Loop detected for leafnode account={acc:?}. Delaying attempt to reconnect for {:?}",
            super::LOOP_DELAY
        );
        tracing::error!("{} - lid:{} - {text}", c.addr, c.cid);
        c.send_err(&text);
        l.loop_detected.set(true);
        c.close(CloseReason::ProtocolViolation);
        return;
    }
    if !crate::subject::is_valid_filter(subject) {
        tracing::error!(
            "{} - lid:{} - Invalid leafnode subscription {:?}",
            c.addr,
            c.cid,
            String::from_utf8_lossy(subject)
        );
        return;
    }
    // Interest in what we would not send is not recorded (the other side
    // has the same rule, so this only guards against a misconfigured one).
    if l.denies_out(subject) {
        return;
    }
    let sid = sid_of(subject, queue.map(|q| q.0));
    if let Some((_, w)) = queue {
        let old = l.weights.borrow_mut().insert(sid.clone(), w);
        if old.is_some() && c.subs.borrow().contains_key(&sid) {
            // Only the weight changed: tell the other links.
            let key = shard
                .g
                .accounts
                .key_bytes(c.account(), &Bytes::copy_from_slice(subject));
            let q = Bytes::copy_from_slice(queue.map(|q| q.0).unwrap_or_default());
            interest::changed(shard, &key, Some(&q));
            return;
        }
    }
    if c.subs.borrow().contains_key(&sid) {
        return;
    }
    let subject = Bytes::copy_from_slice(subject);
    let key = shard.g.accounts.key_bytes(c.account(), &subject);
    let sub = SubRef(Rc::new(Sub {
        sink: Sink::Client(c.clone()),
        subject,
        key,
        queue: queue.map(|q| Bytes::copy_from_slice(q.0)),
        sid: sid.clone(),
        max: Cell::new(0),
        delivered: Cell::new(0),
    }));
    c.subs.borrow_mut().insert(sid, sub.clone());
    shard.add_sub(sub);
}

/// An accepted link's CONNECT: the right port, valid credentials, the
/// account it binds to; then the link is up.
async fn connect(
    shard: &Rc<Shard>,
    c: &Rc<Client>,
    l: &LeafState,
    json: &[u8],
) -> Result<(), CloseReason> {
    let conn: LeafConnect = match serde_json::from_slice(json) {
        Ok(x) => x,
        Err(e) => {
            tracing::error!("{} - lid:{} - bad leafnode CONNECT: {e}", c.addr, c.cid);
            c.send_err("Invalid Connect Protocol");
            return Err(CloseReason::ProtocolViolation);
        }
    };
    if !conn.lang.is_empty() {
        c.send_err("attempted to connect to leaf node port");
        tracing::error!(
            "{} - lid:{} - attempted to connect to leaf node port",
            c.addr,
            c.cid
        );
        return Err(CloseReason::ProtocolViolation);
    }
    if !conn.gateway.is_empty() {
        let text = format!(
            "Rejecting connection from gateway {:?} on the leafnode port",
            conn.gateway
        );
        c.send_err(&text);
        return Err(CloseReason::ProtocolViolation);
    }
    let Some(acc) = super::auth::authenticate(c, &conn).await else {
        tracing::error!("{} - lid:{} - Authorization Violation", c.addr, c.cid);
        c.send_err("Authorization Violation");
        return Err(CloseReason::AuthenticationViolation);
    };
    c.set_account(acc);
    replace_duplicate(shard, c, acc, &conn);
    l.spoke.set(conn.hub);
    *l.remote_server.borrow_mut() = if conn.name.is_empty() {
        conn.server_id.clone()
    } else {
        conn.name.clone()
    };
    *l.remote_account.borrow_mut() = conn.remote_account.clone();
    l.deny_out
        .borrow_mut()
        .extend(conn.deny_pub.iter().cloned());
    c.update_connect(crate::protocol::info::Connect {
        headers: conn.headers,
        echo: false,
        name: conn.name.clone(),
        ..Default::default()
    });
    let acc_name = shard.g.accounts.name(acc).to_string();
    *l.connect.borrow_mut() = Some(conn);
    let mut answer = info(&shard.g, c.cid, None);
    answer.connect_info = true;
    answer.remote_account = Some(acc_name.clone());
    c.out.push(&answer.to_line());
    tracing::info!(
        "{} - lid:{} - Leafnode connection from {:?} bound to account {acc_name:?}",
        c.addr,
        c.cid,
        l.remote_server.borrow()
    );
    up(shard, c);
    Ok(())
}

/// A server that links again into the same account (its old link not yet
/// gone, e.g. after a network cut) replaces its old link, as in the
/// reference.
fn replace_duplicate(shard: &Shard, c: &Client, acc: u32, conn: &LeafConnect) {
    if conn.remote_account.is_empty() || conn.name.is_empty() {
        return;
    }
    let old = shard
        .leafs
        .borrow()
        .iter()
        .find(|x| {
            x.cid != c.cid
                && x.account() == acc
                && x.leaf.as_ref().is_some_and(|ol| {
                    ol.remote.is_none()
                        && *ol.remote_server.borrow() == conn.name
                        && *ol.remote_account.borrow() == conn.remote_account
                })
        })
        .cloned();
    if let Some(o) = old {
        tracing::warn!(
            "{} - lid:{} - Replacing connection from same server",
            c.addr,
            c.cid
        );
        o.send_err("Duplicate Remote LeafNode Connection");
        o.close(CloseReason::DuplicateRemoteLeafnode);
    }
}

/// Ends a link: it leaves the shard first (its subscriptions going must
/// not be told to itself), then its interest goes from every other link.
pub fn release(shard: &Shard, c: &Client, reason: CloseReason) {
    c.close(reason);
    c.reader_fd.set(None);
    let was_up = {
        let mut leafs = shard.leafs.borrow_mut();
        let before = leafs.len();
        leafs.retain(|x| x.cid != c.cid);
        leafs.len() != before
    };
    if was_up {
        shard.stats().leafs.fetch_sub(1, Ordering::Relaxed);
    }
    let subs: Vec<SubRef> = c.subs.borrow_mut().drain().map(|(_, s)| s).collect();
    for s in &subs {
        shard.remove_sub(s);
    }
    let why = c.reason.get().unwrap_or(reason);
    tracing::info!(
        "{} - lid:{} - Leafnode connection closed: {}",
        c.addr,
        c.cid,
        why.as_str()
    );
}
