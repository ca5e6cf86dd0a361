//! A client connection: its state, its subscriptions, and how a shard
//! delivers to it or closes it. The tasks that drive the socket are in
//! `conn`.

mod conn;
mod ops;
pub(crate) use conn::write_loop;
pub mod outbound;
pub mod websocket;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::rc::{Rc, Weak};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;

use crate::global::ShardStats;
use crate::protocol::info::{Connect, Info, NATS_VERSION, PRODUCT_VERSION};
use crate::shard::link::SyncPoint;
use crate::shard::Shard;
use outbound::Outbound;

/// Why a connection ended, with the reference's wording for `/connz`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    ClientClosed,
    ProtocolViolation,
    ParseError,
    MaxPayload,
    MaxControlLine,
    SlowConsumerPendingBytes,
    SlowConsumerWriteDeadline,
    StaleConnection,
    AuthenticationViolation,
    AuthenticationTimeout,
    MaxConnectionsExceeded,
    ServerShutdown,
    WriteError,
    ReadError,
    TlsHandshakeError,
    /// A leaf link replaced by a newer one from the same server.
    DuplicateRemoteLeafnode,
}

impl CloseReason {
    const ALL: [CloseReason; 16] = [
        CloseReason::ClientClosed,
        CloseReason::ProtocolViolation,
        CloseReason::ParseError,
        CloseReason::MaxPayload,
        CloseReason::MaxControlLine,
        CloseReason::SlowConsumerPendingBytes,
        CloseReason::SlowConsumerWriteDeadline,
        CloseReason::StaleConnection,
        CloseReason::AuthenticationViolation,
        CloseReason::AuthenticationTimeout,
        CloseReason::MaxConnectionsExceeded,
        CloseReason::ServerShutdown,
        CloseReason::WriteError,
        CloseReason::ReadError,
        CloseReason::TlsHandshakeError,
        CloseReason::DuplicateRemoteLeafnode,
    ];

    /// Its place among the reasons ordered by their text (`/connz` sorts
    /// closed connections by reason that way).
    pub fn rank(self) -> usize {
        let me = self.as_str();
        Self::ALL.iter().filter(|r| r.as_str() < me).count()
    }

    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::ClientClosed => "Client Closed",
            CloseReason::ProtocolViolation => "Protocol Violation",
            CloseReason::ParseError => "Parse Error",
            CloseReason::MaxPayload => "Maximum Message Payload Exceeded",
            CloseReason::MaxControlLine => "Maximum Control Line Exceeded",
            CloseReason::SlowConsumerPendingBytes => "Slow Consumer (Pending Bytes)",
            CloseReason::SlowConsumerWriteDeadline => "Slow Consumer (Write Deadline)",
            CloseReason::StaleConnection => "Stale Connection",
            CloseReason::AuthenticationViolation => "Authentication Failure",
            CloseReason::AuthenticationTimeout => "Authentication Timeout",
            CloseReason::MaxConnectionsExceeded => "Maximum Connections Exceeded",
            CloseReason::ServerShutdown => "Server Shutdown",
            CloseReason::WriteError => "Write Error",
            CloseReason::ReadError => "Read Error",
            CloseReason::TlsHandshakeError => "TLS Handshake Failure",
            CloseReason::DuplicateRemoteLeafnode => "Duplicate Remote LeafNode Connection",
        }
    }
}

pub struct Sub {
    /// Who receives: a client connection or a server-side handler.
    pub sink: crate::shard::sink::Sink,
    pub subject: Bytes,
    /// `subject` in the sublist's terms (with the account's token when
    /// accounts are configured).
    pub key: Bytes,
    pub queue: Option<Bytes>,
    pub sid: Bytes,
    /// Auto-unsubscribe after this many deliveries; 0 = never.
    pub max: Cell<u64>,
    pub delivered: Cell<u64>,
}

impl Sub {
    /// The owning connection's id (0 for internal subscribers), for echo.
    pub fn cid(&self) -> u64 {
        self.sink.cid()
    }
}

/// A subscription as the sublist stores it: compared by identity.
#[derive(Clone)]
pub struct SubRef(pub Rc<Sub>);

impl PartialEq for SubRef {
    fn eq(&self, other: &Self) -> bool {
        Rc::ptr_eq(&self.0, &other.0)
    }
}

#[derive(Default)]
pub struct Counters {
    pub in_msgs: Cell<u64>,
    pub in_bytes: Cell<u64>,
    pub out_msgs: Cell<u64>,
    pub out_bytes: Cell<u64>,
}

/// Per-connection copies of the limits that reloads may change, so the hot
/// path reads a `Cell` instead of shared options.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_pending: usize,
    pub write_deadline: std::time::Duration,
    pub ping_interval: std::time::Duration,
    pub ping_max: u32,
}

impl Limits {
    pub fn from(o: &crate::options::Options) -> Limits {
        Limits {
            max_pending: o.max_pending,
            write_deadline: o.write_deadline,
            ping_interval: o.ping_interval,
            ping_max: o.ping_max,
        }
    }
}

pub struct Client {
    pub cid: u64,
    /// Came in on the websocket listener.
    pub websocket: bool,
    /// Its credentials checked, or none were needed when it connected
    /// (operations other than CONNECT are refused until then).
    pub authed: Cell<bool>,
    /// The account this connection's subjects live in.
    account: Cell<u32>,
    /// Counted against its account's connection limit (released on close).
    pub counted: Cell<Option<u32>>,
    /// Subscriptions allowed (server, account and user limits; 0 = no limit).
    pub max_subs: Cell<usize>,
    /// Largest message accepted (server, account and user limits).
    pub max_payload: Cell<usize>,
    pub limits: Cell<Limits>,
    /// Set when the server sent a nonce (nkey users sign it in CONNECT).
    pub nonce: Option<String>,
    /// Who CONNECT authenticated as (None: not yet, or no auth configured).
    pub who: RefCell<Option<crate::auth::Authed>>,
    pub perms: RefCell<Option<crate::auth::ConnPermissions>>,
    /// CONNECT was processed.
    pub connected: Cell<bool>,
    pub addr: SocketAddr,
    pub shard: Weak<Shard>,
    pub g: Arc<crate::global::Global>,
    pub out: Outbound,
    pub connect: RefCell<Connect>,
    echo: Cell<bool>,
    headers: Cell<bool>,
    no_responders: Cell<bool>,
    pub subs: RefCell<HashMap<Bytes, SubRef>>,
    pub counters: Counters,
    pub start: SystemTime,
    pub last_activity: Cell<SystemTime>,
    pub pings_out: Cell<u32>,
    closed: Cell<bool>,
    pub reason: Cell<Option<CloseReason>>,
    /// The reader's descriptor while the reader owns it; used to wake the
    /// reader when someone else closes the connection.
    pub(crate) reader_fd: Cell<Option<RawFd>>,
    pub sync: RefCell<Option<Arc<SyncPoint>>>,
    /// Set when a message of ours went to another shard since the last
    /// PONG: the next PONG waits until peers delivered it.
    pub forwarded: Cell<bool>,
    /// Set for a leaf-node link (`leaf`): its subscriptions are the other
    /// server's interest, and deliveries go out as `LMSG`.
    pub leaf: Option<Rc<crate::leaf::LeafState>>,
}

impl Client {
    pub fn echo(&self) -> bool {
        self.echo.get()
    }

    pub fn headers(&self) -> bool {
        self.headers.get()
    }

    pub fn wants_no_responders(&self) -> bool {
        self.no_responders.get() && self.headers.get()
    }

    pub fn account(&self) -> u32 {
        self.account.get()
    }

    pub fn set_account(&self, id: u32) {
        self.account.set(id);
    }

    /// The authenticated user's name, for log lines (never a secret).
    pub fn user_name(&self) -> String {
        self.who
            .borrow()
            .as_ref()
            .map(|w| w.user.clone())
            .unwrap_or_default()
    }

    /// Its kind for users' `allowed_connection_types`.
    pub fn connection_type(&self) -> &'static str {
        if self.websocket {
            "WEBSOCKET"
        } else {
            "STANDARD"
        }
    }

    pub fn is_closed(&self) -> bool {
        self.closed.get()
    }

    fn stats(&self) -> Option<Rc<Shard>> {
        self.shard.upgrade()
    }

    pub fn info(&self, ldm: bool) -> Info {
        let mut i = info_for(&self.g, self.cid, self.addr, ldm);
        i.nonce = self.nonce.clone();
        if self.websocket {
            // TLS (if any) was the websocket listener's business.
            i.tls_required = false;
            i.tls_verify = false;
            i.auth_required = self.g.ws_auth().info_auth_required();
        }
        i
    }

    pub fn send_info(&self, ldm: bool) {
        self.out.push(&self.info(ldm).to_line());
    }

    pub fn send_err(&self, text: &str) {
        self.out.push(format!("-ERR '{text}'\r\n").as_bytes());
    }

    /// Queues one delivery and enforces max_pending.
    pub fn deliver(&self, sid: &[u8], m: &crate::shard::Msg) {
        let (hdr_len, body) = match m.hdr_len {
            Some(h) if !self.headers.get() => (None, &m.msg[h.min(m.msg.len())..]),
            h => (h, m.msg),
        };
        self.out
            .push_msg(m.shown.unwrap_or(m.subject), sid, m.reply, hdr_len, body);
        let c = &self.counters;
        c.out_msgs.set(c.out_msgs.get() + 1);
        c.out_bytes.set(c.out_bytes.get() + body.len() as u64);
        if let Some(shard) = self.stats() {
            let st: &ShardStats = shard.stats();
            ShardStats::add(&st.out_msgs, 1);
            ShardStats::add(&st.out_bytes, body.len() as u64);
        }
        self.check_pending();
    }

    /// More than half of `max_pending` waits to be written: producers
    /// should pause for it (see `Shard::unstall`).
    pub fn is_lagging(&self) -> bool {
        self.out.pending() > self.limits.get().max_pending / 2 && !self.is_closed()
    }

    /// Closes the connection as a slow consumer once more than
    /// `max_pending` bytes wait to be written, whatever they are (messages,
    /// PONGs, `+OK`, `-ERR`, INFO, statuses).
    pub fn check_pending(&self) {
        if self.out.pending() > self.limits.get().max_pending {
            self.slow_consumer(CloseReason::SlowConsumerPendingBytes);
        }
    }

    /// Sends the no-responders status to the requester's own subscription
    /// that matches `reply`.
    pub fn no_responders(&self, reply: &[u8], status: &[u8]) {
        let sid = self
            .subs
            .borrow()
            .values()
            .find(|s| crate::subject::matches(&s.0.subject, reply))
            .map(|s| s.0.sid.clone());
        if let Some(sid) = sid {
            self.out
                .push_msg(reply, &sid, None, Some(status.len()), status);
            self.check_pending();
        }
    }

    /// Forgets a subscription on the client side (the shard removes it from
    /// the sublist).
    pub fn drop_sub(&self, sid: &[u8]) -> Option<SubRef> {
        self.subs.borrow_mut().remove(sid)
    }

    pub fn slow_consumer(&self, reason: CloseReason) {
        if self.closed.get() {
            return;
        }
        if let Some(shard) = self.stats() {
            shard.stats().slow_consumers.fetch_add(1, Ordering::Relaxed);
        }
        tracing::warn!(
            "{} - cid:{} - Slow Consumer Detected: {}",
            self.addr,
            self.cid,
            match reason {
                CloseReason::SlowConsumerWriteDeadline => format!(
                    "WriteDeadline of {:?} exceeded",
                    self.limits.get().write_deadline
                ),
                _ => format!("MaxPending of {} Exceeded", self.limits.get().max_pending),
            }
        );
        // The peer is not reading: drop the backlog and cut the socket in
        // both directions, so a writer blocked on it lets go now rather
        // than at its deadline. As in the reference, nothing more is sent.
        self.out.discard();
        self.close(reason);
        if let Some(fd) = self.reader_fd.get() {
            // SAFETY: as in `close`: the reader still owns `fd`.
            unsafe {
                libc::shutdown(fd, libc::SHUT_RDWR);
            }
        }
    }

    /// Ends the connection: queued output is flushed (with a deadline), the
    /// reader is woken, and the reader task then releases everything.
    pub fn close(&self, reason: CloseReason) {
        if self.closed.replace(true) {
            return;
        }
        self.reason.set(Some(reason));
        self.out.close();
        if let Some(fd) = self.reader_fd.get() {
            // SAFETY: the reader still owns `fd` (it clears this cell before
            // dropping its socket); shutdown only wakes its pending read.
            unsafe {
                libc::shutdown(fd, libc::SHUT_RD);
            }
        }
    }

    pub fn update_connect(&self, c: Connect) {
        self.echo.set(c.echo);
        self.headers.set(c.headers);
        self.no_responders.set(c.no_responders);
        *self.connect.borrow_mut() = c;
    }
}

/// The INFO a client with id `cid` from `addr` is sent.
pub fn info_for(g: &crate::global::Global, cid: u64, addr: SocketAddr, ldm: bool) -> Info {
    Info {
        server_id: g.server_id.clone(),
        server_name: g.server_name.clone(),
        version: NATS_VERSION.into(),
        proto: 1,
        go: "go1.21.0".into(),
        host: g.opts.host.clone(),
        port: g.client_addr.port(),
        headers: true,
        auth_required: g.auth().info_auth_required(),
        tls_required: g.tls.is_some(),
        tls_verify: g.tls.as_ref().is_some_and(|t| t.verify),
        max_payload: g.opts.max_payload,
        jetstream: g.jetstream.get().is_some(),
        client_id: cid,
        client_ip: addr.ip().to_string(),
        connect_urls: Vec::new(),
        ldm,
        nonce: None,
        broker_edge_version: PRODUCT_VERSION.into(),
        connect_info: false,
        remote_account: None,
        acc_is_sys: false,
    }
}

/// Checks a connection's CONNECT credentials again (after a reload).
pub async fn reauthenticate(
    c: &Client,
    connect: &Connect,
) -> Result<crate::auth::Authed, crate::auth::AuthError> {
    ops::authenticate(c, connect, false).await
}

/// Takes over an accepted socket on this shard.
pub fn accept(shard: &Rc<Shard>, fd: OwnedFd, addr: SocketAddr, websocket: bool) {
    let g = shard.g.clone();
    let cid = g.next_cid.fetch_add(1, Ordering::Relaxed);
    let raw = fd.as_raw_fd();
    let (reader, writer) = match crate::runtime::bind_socket(fd) {
        Ok(x) => x,
        Err(e) => {
            tracing::error!("{addr} - cid:{cid} - could not take over connection: {e}");
            return;
        }
    };
    let authenticator = if websocket { g.ws_auth() } else { g.auth() };
    let nonce = authenticator.nonce_required().then(crate::auth::new_nonce);
    let client = Rc::new(Client::new(
        shard,
        cid,
        addr,
        websocket,
        !authenticator.required(),
        nonce,
        None,
    ));
    let st = shard.stats();
    st.connections.fetch_add(1, Ordering::Relaxed);
    st.total_connections.fetch_add(1, Ordering::Relaxed);
    shard.clients.borrow_mut().insert(cid, client.clone());
    client.reader_fd.set(Some(raw));
    tracing::debug!("{addr} - cid:{cid} - Client connection created");
    conn::start(shard.clone(), client, reader, writer);
}

impl Client {
    /// A connection's state before anything was said on it (`reader_fd` is
    /// set by whoever owns the socket).
    pub fn new(
        shard: &Rc<Shard>,
        cid: u64,
        addr: SocketAddr,
        websocket: bool,
        authed: bool,
        nonce: Option<String>,
        leaf: Option<Rc<crate::leaf::LeafState>>,
    ) -> Client {
        let g = shard.g.clone();
        let now = SystemTime::now();
        Client {
            cid,
            websocket,
            authed: Cell::new(authed),
            account: Cell::new(0),
            counted: Cell::new(None),
            max_subs: Cell::new(g.live().max_subscriptions),
            max_payload: Cell::new(g.opts.max_payload),
            limits: Cell::new(Limits::from(&g.live())),
            nonce,
            who: RefCell::new(None),
            perms: RefCell::new(None),
            connected: Cell::new(false),
            addr,
            shard: Rc::downgrade(shard),
            g: g.clone(),
            out: Outbound::default(),
            connect: RefCell::new(Connect::default()),
            echo: Cell::new(true),
            headers: Cell::new(false),
            no_responders: Cell::new(false),
            subs: RefCell::new(HashMap::new()),
            counters: Counters::default(),
            start: now,
            last_activity: Cell::new(now),
            pings_out: Cell::new(0),
            closed: Cell::new(false),
            reason: Cell::new(None),
            reader_fd: Cell::new(None),
            sync: RefCell::new(None),
            forwarded: Cell::new(false),
            leaf,
        }
    }
}
