//! What every shard can see without asking: immutable server identity and
//! options, the control channels into each shard, and per-shard counters
//! (each written only by its own shard, read by monitoring).

use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Instant, SystemTime};

use crate::auth::Authenticator;
use crate::monitor::gather::{Query, ShardReport};
use crate::options::Options;
use crate::shard::link::Batch;

/// Batches in flight from one shard to another before the sender waits.
const PEER_DEPTH: usize = 256;

/// Control messages into a shard. These cross from plain threads (router,
/// signal handler, monitoring) so they travel on async-channel, whose
/// wake-ups work across executors.
pub enum Ctl {
    NewClient(OwnedFd, SocketAddr),
    NewHttp(OwnedFd, SocketAddr),
    NewWebsocket(OwnedFd, SocketAddr),
    /// A connection on the leaf-node port (to the links' home shard).
    NewLeaf(OwnedFd, SocketAddr),
    Gather(Query, futures_channel::oneshot::Sender<ShardReport>),
    /// Tell clients we are going away and close them over `duration`.
    LameDuck,
    /// Options and credentials changed (`g.live()`, `g.auth()`): apply to
    /// existing connections, closing those no longer allowed. The sender
    /// hears once every connection of the shard runs under them.
    Reload(std::sync::mpsc::Sender<()>),
    /// A shard-bus request (`shard::bus`).
    Run(crate::shard::bus::Job),
    Shutdown,
}

/// Counters of one shard. Padded so shards do not share cache lines.
#[repr(align(128))]
#[derive(Default)]
pub struct ShardStats {
    pub connections: AtomicUsize,
    pub total_connections: AtomicU64,
    pub subscriptions: AtomicUsize,
    pub in_msgs: AtomicU64,
    pub in_bytes: AtomicU64,
    pub out_msgs: AtomicU64,
    pub out_bytes: AtomicU64,
    pub slow_consumers: AtomicU64,
    /// Leaf-node links that are up.
    pub leafs: AtomicUsize,
}

impl ShardStats {
    pub fn add(c: &AtomicU64, n: u64) {
        // Only the owning shard writes, so load+store beats an atomic RMW.
        c.store(c.load(Ordering::Relaxed) + n, Ordering::Relaxed);
    }
}

/// What a reload starts from: the command-line options (before the file)
/// and which of them were set on the command line.
#[derive(Clone)]
pub struct ReloadBase {
    pub cli: Options,
    pub set: Vec<&'static str>,
}

pub struct Global {
    /// Options at start-up; listeners and identity come from here.
    pub opts: Options,
    live: RwLock<Arc<Options>>,
    auth: RwLock<Arc<Authenticator>>,
    pub reload_base: Option<ReloadBase>,
    pub accounts: crate::account::Accounts,
    /// Connections per account (for account connection limits).
    pub account_conns: Vec<AtomicUsize>,
    /// TLS for client connections, when configured.
    pub tls: Option<crate::tls::Tls>,
    /// The websocket listener's settings and TLS, when configured.
    pub websocket: Option<(crate::options::WebsocketConfig, Option<crate::tls::Tls>)>,
    /// The leaf-node listener's address and TLS, when it listens.
    pub leaf_addr: std::sync::OnceLock<SocketAddr>,
    pub leaf_tls: Option<crate::tls::Tls>,
    ws_auth: RwLock<Arc<Authenticator>>,
    pub server_id: String,
    pub server_name: String,
    pub shards: usize,
    pub client_addr: SocketAddr,
    pub http_addr: Option<SocketAddr>,
    pub start: Instant,
    pub start_wall: SystemTime,
    pub next_cid: AtomicU64,
    pub stats: Vec<ShardStats>,
    pub ctl: Vec<async_channel::Sender<Ctl>>,
    pub ctl_rx: Vec<async_channel::Receiver<Ctl>>,
    pub lame_duck: AtomicBool,
    /// Client connections closed lately, for `/connz?state=closed`.
    pub closed: crate::monitor::closed::ClosedRing,
    /// Accepts that failed for want of resources (file descriptors,
    /// memory): the router backed off each time (`/varz` `accept_errors`).
    pub accept_errors: AtomicU64,
    /// Channels between shards, `[from][to]`; `None` on the diagonal.
    pub peer_tx: Vec<Vec<Option<async_channel::Sender<Batch>>>>,
    pub peer_rx: Vec<Vec<Option<async_channel::Receiver<Batch>>>>,
    next_shard: AtomicUsize,
    pub http_requests: std::sync::Mutex<std::collections::BTreeMap<String, u64>>,
    /// JetStream's server-wide settings and what was stored, when enabled
    /// (set once at start-up, before shards run).
    pub jetstream: std::sync::OnceLock<Arc<crate::jetstream::Config>>,
    /// Open requests to imported services (see `account::responses`).
    pub responses: crate::account::Responses,
    /// Slow password checks under way (see `auth::gate`).
    pub logins: crate::auth::gate::LoginGate,
    /// Start-up progress and shard heartbeats for the service manager
    /// (see `notify`).
    pub lifecycle: crate::notify::Lifecycle,
    /// Complete once every shard knows of the system services'
    /// subscriptions (`system`): no shard takes clients before.
    pub system_ready: Arc<crate::shard::link::SyncPoint>,
}

impl Global {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        opts: Options,
        auth: Authenticator,
        accounts: crate::account::Accounts,
        tls: Option<crate::tls::Tls>,
        websocket: Option<(crate::options::WebsocketConfig, Option<crate::tls::Tls>)>,
        ws_auth: Authenticator,
        reload_base: Option<ReloadBase>,
        server_id: String,
        client_addr: SocketAddr,
        http_addr: Option<SocketAddr>,
        shards: usize,
    ) -> Arc<Global> {
        let (ctl, ctl_rx): (Vec<_>, Vec<_>) =
            (0..shards).map(|_| async_channel::unbounded()).unzip();
        let server_name = opts
            .server_name
            .clone()
            .unwrap_or_else(|| server_id.clone());
        let mut peer_tx = Vec::new();
        let mut peer_rx = Vec::new();
        for from in 0..shards {
            let (tx, rx): (Vec<_>, Vec<_>) = (0..shards)
                .map(|to| {
                    if from == to {
                        (None, None)
                    } else {
                        let (t, r) = async_channel::bounded(PEER_DEPTH);
                        (Some(t), Some(r))
                    }
                })
                .unzip();
            peer_tx.push(tx);
            peer_rx.push(rx);
        }
        Arc::new(Global {
            live: RwLock::new(Arc::new(opts.clone())),
            auth: RwLock::new(Arc::new(auth)),
            reload_base,
            account_conns: (0..accounts.len()).map(|_| AtomicUsize::new(0)).collect(),
            accounts,
            tls,
            websocket,
            leaf_addr: std::sync::OnceLock::new(),
            // Checked at start-up (`server::refuse_unbuilt`).
            leaf_tls: opts
                .leafnodes
                .as_ref()
                .filter(|l| l.port.is_some())
                .and_then(|l| l.tls.as_ref())
                .and_then(|t| crate::tls::build(t).ok()),
            ws_auth: RwLock::new(Arc::new(ws_auth)),
            opts,
            server_id,
            server_name,
            shards,
            client_addr,
            http_addr,
            start: Instant::now(),
            start_wall: SystemTime::now(),
            next_cid: AtomicU64::new(1),
            stats: (0..shards).map(|_| ShardStats::default()).collect(),
            ctl,
            ctl_rx,
            lame_duck: AtomicBool::new(false),
            closed: Default::default(),
            accept_errors: AtomicU64::new(0),
            peer_tx,
            peer_rx,
            next_shard: AtomicUsize::new(0),
            http_requests: Default::default(),
            jetstream: Default::default(),
            responses: Default::default(),
            logins: Default::default(),
            lifecycle: crate::notify::Lifecycle::new(shards),
            system_ready: crate::shard::link::SyncPoint::new(1),
        })
    }

    /// The options in force now (changed by reloads).
    pub fn live(&self) -> Arc<Options> {
        match self.live.read() {
            Ok(o) => o.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// The credentials in force now.
    pub fn auth(&self) -> Arc<Authenticator> {
        match self.auth.read() {
            Ok(a) => a.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// The credentials websocket clients are checked against (the
    /// websocket block's own `authorization`, else the server's).
    pub fn ws_auth(&self) -> Arc<Authenticator> {
        match self.ws_auth.read() {
            Ok(a) => a.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Installs reloaded options and credentials.
    pub fn install(&self, opts: Options, auth: Authenticator, ws_auth: Authenticator) {
        if let Ok(mut a) = self.ws_auth.write() {
            *a = Arc::new(ws_auth);
        }
        if let Ok(mut o) = self.live.write() {
            *o = Arc::new(opts);
        }
        if let Ok(mut a) = self.auth.write() {
            *a = Arc::new(auth);
        }
    }

    /// Hands each starting shard its index.
    pub fn claim_shard_id(&self) -> usize {
        self.next_shard.fetch_add(1, Ordering::Relaxed)
    }

    pub fn total(&self, f: impl Fn(&ShardStats) -> u64) -> u64 {
        self.stats.iter().map(f).sum()
    }

    pub fn connections(&self) -> usize {
        self.stats
            .iter()
            .map(|s| s.connections.load(Ordering::Relaxed))
            .sum()
    }

    /// Sends `msg` to every shard; a shard that already stopped is skipped.
    pub fn broadcast(&self, msg: impl Fn() -> Ctl) {
        for tx in &self.ctl {
            let _ = tx.send_blocking(msg());
        }
    }
}
