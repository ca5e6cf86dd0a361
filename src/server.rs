//! Start-up and lifetime of the whole server: bind listeners (so errors are
//! reported before anything runs), write pid/ports files, start the router
//! and the shards, and turn signals into shutdown or lame duck.

use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use crate::auth::Authenticator;
use crate::global::{Ctl, Global, ReloadBase};
use crate::options::Options;
use crate::protocol::info::{NATS_VERSION, PRODUCT_VERSION};
use crate::{router, runtime, shard};

/// A start-up failure, printed as `[FTL]` by the caller.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("Error listening on port: {addr}, {detail:?}")]
    Listen { addr: String, detail: String },
    #[error("{0}")]
    Other(String),
}

fn bind(host: &str, port: u16) -> Result<TcpListener, StartError> {
    let addr = format!("{host}:{port}");
    let fail = |e: std::io::Error| StartError::Listen {
        addr: addr.clone(),
        detail: format!("listen tcp {addr}: {e}"),
    };
    let sa: SocketAddr = (host, port)
        .to_socket_addrs()
        .map_err(fail)?
        .next()
        .ok_or_else(|| fail(std::io::Error::other("no address")))?;
    TcpListener::bind(sa).map_err(|e| {
        let text = if e.kind() == std::io::ErrorKind::AddrInUse {
            std::io::Error::other("bind: address already in use")
        } else {
            e
        };
        fail(text)
    })
}

fn url_host(host: &str) -> String {
    match host {
        "0.0.0.0" | "" => "127.0.0.1".into(),
        "::" => "[::1]".into(),
        h if h.contains(':') => format!("[{h}]"),
        h => h.into(),
    }
}

/// Blocks this build parses but cannot act on yet: starting with them
/// would let an operator believe the box is linked when it is not.
fn refuse_unbuilt(opts: &Options) -> Result<(), String> {
    if opts.cluster.is_some() {
        return Err(
            "cluster { } is not supported by this build of Broker Edge yet (no routes): remove the block"
                .into(),
        );
    }
    if let Some(l) = &opts.leafnodes {
        check_leaf_tls(l)?;
    }
    Ok(())
}

/// The leaf TLS configurations build (files readable, keys matching), so
/// a bad one stops start-up (or a reload) rather than the first link.
fn check_leaf_tls(l: &crate::options::LeafNodeOpts) -> Result<(), String> {
    if let (Some(t), Some(_)) = (&l.tls, l.port) {
        crate::tls::build(t).map_err(|e| format!("leafnodes: {e}"))?;
    }
    for r in &l.remotes {
        let tls_url = r
            .urls
            .iter()
            .any(|u| crate::options::LeafUrl::parse(u).is_ok_and(|u| u.tls));
        if r.tls.is_some() || tls_url {
            let t = r.tls.clone().unwrap_or_default();
            crate::tls::client_config(&t).map_err(|e| {
                format!(
                    "leafnodes remote {}: {e}",
                    crate::options::redact_url(r.urls.first().map_or("", String::as_str))
                )
            })?;
        }
    }
    Ok(())
}

pub fn run(opts: Options, reload_base: Option<ReloadBase>) -> Result<(), StartError> {
    refuse_unbuilt(&opts).map_err(StartError::Other)?;
    let auth = Authenticator::new(&opts).map_err(|e| StartError::Other(e.to_string()))?;
    let tls = match &opts.tls {
        Some(t) => Some(crate::tls::build(t).map_err(|e| StartError::Other(e.to_string()))?),
        None => None,
    };
    let ws_auth =
        Authenticator::new_websocket(&opts).map_err(|e| StartError::Other(e.to_string()))?;
    let accounts =
        crate::account::Accounts::new(&opts).map_err(|e| StartError::Other(e.to_string()))?;
    let (websocket, ws_listener) = match &opts.websocket {
        Some(w) => {
            let ws_tls =
                match (&w.tls, w.no_tls) {
                    (Some(t), _) => Some(
                        crate::tls::build(t)
                            .map_err(|e| StartError::Other(format!("websocket: {e}")))?,
                    ),
                    (None, true) => None,
                    (None, false) => return Err(StartError::Other(
                        "websocket requires TLS configuration; set no_tls: true to run it without"
                            .into(),
                    )),
                };
            let host = if w.host.is_empty() {
                opts.host.clone()
            } else {
                w.host.clone()
            };
            let port = w.port.unwrap_or(crate::options::Port::Fixed(80));
            let l = bind(&host, port.bind_port())?;
            (Some((w.clone(), ws_tls)), Some((l, host)))
        }
        None => (None, None),
    };
    let server_id = nkeys::KeyPair::new_server().public_key();
    let name = opts
        .server_name
        .clone()
        .unwrap_or_else(|| server_id.clone());
    tracing::info!("Starting broker-edge");
    tracing::info!("  Version:  {PRODUCT_VERSION} (NATS {NATS_VERSION})");
    tracing::info!("  Name:     {name}");
    tracing::info!("  ID:       {server_id}");
    let js_config = if opts.jetstream {
        // nats-server's default: a "nats" folder in the temporary directory;
        // the data goes under "jetstream" inside the store directory.
        let base = opts
            .store_dir
            .clone()
            .unwrap_or_else(|| std::env::temp_dir().join("nats"));
        let shards = opts
            .shards
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        let c = crate::jetstream::Config::load(&opts, &accounts, base.clone(), shards)
            .map_err(|e| StartError::Other(format!("JetStream: {e}")))?;
        tracing::info!("Starting JetStream");
        tracing::info!("  Store directory: \"{}\"", base.display());
        tracing::info!(
            "  Durability: {}",
            match c.durability {
                broker_edge_storage::Durability::Always => "fsync before every PubAck".to_string(),
                broker_edge_storage::Durability::Interval(d) => format!("fsync every {d:?}"),
                broker_edge_storage::Durability::Never => "left to the kernel".to_string(),
            }
        );
        if !c.stored.is_empty() {
            tracing::info!("  Recovering {} streams", c.stored.len());
        }
        Some(Arc::new(c))
    } else {
        None
    };
    let shards = opts
        .shards
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));

    let client = bind(&opts.host, opts.port.bind_port())?;
    let client_addr = client
        .local_addr()
        .map_err(|e| StartError::Other(e.to_string()))?;
    let http = match opts.http_port {
        Some(p) => {
            let host = opts.http_host.clone().unwrap_or_else(|| opts.host.clone());
            Some(bind(&host, p.bind_port())?)
        }
        None => None,
    };
    let http_addr = http.as_ref().and_then(|l| l.local_addr().ok());
    let g = Global::new(
        opts.clone(),
        auth,
        accounts,
        tls,
        websocket,
        ws_auth,
        reload_base,
        server_id,
        client_addr,
        http_addr,
        shards,
    );
    if let Some(c) = js_config {
        let _ = g.jetstream.set(c);
    }

    if let Some(l) = http {
        if let Some(a) = http_addr {
            tracing::info!(
                "Listening for monitoring connections on http://{}:{}",
                url_host(&a.ip().to_string()),
                a.port()
            );
        }
        router::spawn_http(g.clone(), l).map_err(|e| StartError::Other(e.to_string()))?;
    }
    let ws_addr = match ws_listener {
        Some((l, host)) => {
            let a = l
                .local_addr()
                .map_err(|e| StartError::Other(e.to_string()))?;
            let scheme = if g.websocket.as_ref().is_some_and(|(_, t)| t.is_some()) {
                "wss"
            } else {
                "ws"
            };
            tracing::info!(
                "Listening for websocket clients on {scheme}://{}:{}",
                host,
                a.port()
            );
            router::spawn_websocket(g.clone(), l).map_err(|e| StartError::Other(e.to_string()))?;
            Some((scheme, a))
        }
        None => None,
    };
    if let Some(l) = &opts.leafnodes {
        if let Some(p) = l.port {
            let listener = bind(&l.host, p.bind_port())?;
            let a = listener
                .local_addr()
                .map_err(|e| StartError::Other(e.to_string()))?;
            let _ = g.leaf_addr.set(a);
            tracing::info!(
                "Listening for leafnode connections on {}:{}",
                url_host(&l.host),
                a.port()
            );
            router::spawn_leaf(g.clone(), listener)
                .map_err(|e| StartError::Other(e.to_string()))?;
        }
    }
    let client_fd = router::raw(&client);
    // Handlers go in before anyone can see the port: a signal sent as soon
    // as the server accepts must not hit the default action.
    spawn_signal_handler(g.clone(), client_fd);
    router::spawn_clients(g.clone(), client).map_err(|e| StartError::Other(e.to_string()))?;
    tracing::info!(
        "Listening for client connections on {}:{}",
        opts.host,
        client_addr.port()
    );
    let files = write_files(&opts, client_addr, http_addr, ws_addr)?;
    tracing::info!("Server is ready");
    // READY=1 follows once every shard has recovered its streams
    // (`notify::shard_up`); until then the service manager sees progress.
    crate::notify::starting(&g);
    crate::notify::spawn_watchdog(g.clone());
    let gs = g.clone();
    // Pinned by default (thread-per-core); `pin_shards: false` lets the
    // kernel place the shard threads.
    runtime::configure(opts.tuning);
    runtime::run_shards(shards, opts.tuning.pin_shards, move || shard::run(gs))
        .map_err(|e| StartError::Other(format!("shard runtime failed: {e}")))?;
    for f in files {
        let _ = std::fs::remove_file(f);
    }
    tracing::info!("Server Exiting..");
    Ok(())
}

fn write_files(
    opts: &Options,
    client: SocketAddr,
    http: Option<SocketAddr>,
    ws: Option<(&str, SocketAddr)>,
) -> Result<Vec<PathBuf>, StartError> {
    let mut made = Vec::new();
    let pid = std::process::id();
    if let Some(p) = &opts.pid_file {
        std::fs::write(p, pid.to_string()).map_err(|e| {
            StartError::Other(format!("Could not write pidfile {}: {e}", p.display()))
        })?;
        made.push(p.clone());
    }
    if let Some(dir) = &opts.ports_file_dir {
        let exe = std::env::args()
            .next()
            .map(PathBuf::from)
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "broker-edge".into());
        let path = dir.join(format!("{exe}_{pid}.ports"));
        let mut ports = serde_json::json!({
            "nats": [format!("nats://{}:{}", url_host(&opts.host), client.port())],
        });
        if let Some(h) = http {
            ports["monitoring"] = serde_json::json!([format!(
                "http://{}:{}",
                url_host(&h.ip().to_string()),
                h.port()
            )]);
        }
        if let Some((scheme, a)) = ws {
            ports["websocket"] = serde_json::json!([format!(
                "{scheme}://{}:{}",
                url_host(&a.ip().to_string()),
                a.port()
            )]);
        }
        std::fs::write(&path, ports.to_string()).map_err(|e| {
            StartError::Other(format!("Error writing ports file {}: {e}", path.display()))
        })?;
        made.push(path);
    }
    Ok(made)
}

fn spawn_signal_handler(g: Arc<Global>, client_fd: i32) {
    use signal_hook::consts::*;
    let Ok(mut signals) =
        signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGQUIT, SIGUSR1, SIGUSR2, SIGHUP])
    else {
        tracing::error!("could not install signal handlers");
        return;
    };
    let spawned = std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for sig in signals.forever() {
                match sig {
                    SIGINT | SIGTERM | SIGQUIT => {
                        let name = match sig {
                            SIGINT => "interrupt",
                            SIGTERM => "terminated",
                            _ => "quit",
                        };
                        tracing::info!("Trapped {name:?} signal");
                        crate::notify::stopping(&g, &format!("stopping: trapped {name:?} signal"));
                        g.lame_duck.store(true, Ordering::Relaxed);
                        router::stop_listener(client_fd);
                        g.broadcast(|| Ctl::Shutdown);
                        return;
                    }
                    SIGUSR2 => {
                        if g.lame_duck.swap(true, Ordering::Relaxed) {
                            continue;
                        }
                        tracing::info!("Entering lame duck mode, stop accepting new clients");
                        crate::notify::stopping(
                            &g,
                            "stopping: lame duck mode, closing clients",
                        );
                        router::stop_listener(client_fd);
                        g.broadcast(|| Ctl::LameDuck);
                        // Shards close their clients after the grace period;
                        // leave as soon as none is left (at once if none
                        // were there), at the latest after the duration.
                        let deadline = std::time::Instant::now()
                            + g.live().lame_duck_duration
                            + Duration::from_secs(1);
                        while g.connections() > 0 && std::time::Instant::now() < deadline {
                            std::thread::sleep(Duration::from_millis(50));
                        }
                        g.broadcast(|| Ctl::Shutdown);
                        return;
                    }
                    SIGHUP => {
                        let announced = crate::notify::reloading(&g);
                        let result = reload(&g);
                        match &result {
                            Ok(()) => tracing::info!("Reloaded server configuration"),
                            Err(e) => tracing::error!("Failed to reload server configuration: {e}"),
                        }
                        crate::notify::reloaded(&g, announced, &result);
                    }
                    SIGUSR1 => {
                        tracing::info!("Log reopen requested; log files are opened in append mode and need no reopen");
                    }
                    _ => {}
                }
            }
        });
    if let Err(e) = spawned {
        tracing::error!("could not start the signal thread: {e}");
    }
}

/// Re-reads the configuration file on top of the command line and hands
/// the result to every shard. Nothing changes if the file has errors.
fn reload(g: &Global) -> Result<(), String> {
    let Some(base) = &g.reload_base else {
        return Err("can only reload config when a file is provided using -c or --config".into());
    };
    let Some(path) = base.cli.config_file.clone() else {
        return Err("can only reload config when a file is provided using -c or --config".into());
    };
    let mut opts = base.cli.clone();
    let warnings =
        crate::config::options::apply_file(&path, &mut opts, &base.set).map_err(|errs| {
            errs.iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("; ")
        })?;
    for w in warnings {
        tracing::warn!("{w}");
    }
    refuse_unbuilt(&opts)?;
    // Shards and their runtime are set up once, at start.
    if opts.tuning != g.opts.tuning
        || opts.shard_fill != g.opts.shard_fill
        || opts.shards.is_some_and(|n| n != g.shards)
    {
        return Err("broker_edge { } settings changed: they apply at start; restart the server to apply them".into());
    }
    // Links are set up at start, on options read then.
    if opts.leafnodes != g.opts.leafnodes {
        return Err(
            "leafnodes { } changed: leaf node links are set up at start; \
             restart the server to apply the change"
                .into(),
        );
    }
    // Account ids are baked into every subscription key and stream
    // placement, so accounts are fixed for a run: a changed set is refused
    // whole rather than half applied (users may still move between the
    // existing accounts; their connections are re-checked below).
    let accounts = crate::account::Accounts::new(&opts).map_err(|e| e.to_string())?;
    if accounts != g.accounts {
        return Err("accounts, their imports, exports or limits changed: \
             account changes are not applied by a reload; restart the server to apply them"
            .into());
    }
    let auth = Authenticator::new(&opts).map_err(|e| e.to_string())?;
    let ws_auth = Authenticator::new_websocket(&opts).map_err(|e| e.to_string())?;
    crate::logging::set_levels(opts.debug, opts.trace);
    g.install(opts, auth, ws_auth);
    // Logged as done (which tools and tests wait for) only once every open
    // connection runs under the new options, as with the reference.
    let (tx, rx) = std::sync::mpsc::channel();
    g.broadcast(|| Ctl::Reload(tx.clone()));
    drop(tx);
    let deadline = std::time::Instant::now() + RELOAD_WAIT;
    for _ in 0..g.shards {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if rx.recv_timeout(left).is_err() {
            tracing::warn!("reload: not every shard has re-checked its connections yet");
            break;
        }
    }
    Ok(())
}

/// Longest a reload waits for shards to re-check their connections
/// (password hashes are checked again for each one).
const RELOAD_WAIT: Duration = Duration::from_secs(10);
