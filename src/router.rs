//! The router: accepts on the client and monitoring listeners and hands
//! each socket to a shard — the one with the fewest clients, or in turn for
//! monitoring. It runs on its own thread, blocked in `accept` when idle.

use std::io::Write;
use std::net::TcpListener;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::global::{Ctl, Global};

pub fn spawn_clients(g: Arc<Global>, listener: TcpListener) -> std::io::Result<()> {
    spawn_accept(g, listener, "router", Ctl::NewClient)
}

const ACCEPT_MIN_SLEEP: std::time::Duration = std::time::Duration::from_millis(10);
const ACCEPT_MAX_SLEEP: std::time::Duration = std::time::Duration::from_secs(1);
const ACCEPT_LOG_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// Errors that mean "no resources now", not "this one connection failed".
fn is_resource_error(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

/// Accepts NATS clients (plain or websocket, as `make` says) and hands each
/// to a shard; over `max_connections` the client gets INFO, then the error.
fn spawn_accept(
    g: Arc<Global>,
    listener: TcpListener,
    name: &str,
    make: fn(OwnedFd, std::net::SocketAddr) -> Ctl,
) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            let mut turn = 0usize;
            let mut backoff = ACCEPT_MIN_SLEEP;
            let mut last_log: Option<std::time::Instant> = None;
            for conn in listener.incoming() {
                if g.lame_duck.load(Ordering::Relaxed) {
                    break;
                }
                let mut stream = match conn {
                    Ok(s) => {
                        backoff = ACCEPT_MIN_SLEEP;
                        s
                    }
                    Err(e) if is_resource_error(&e) => {
                        // Out of descriptors or memory: the pending
                        // connection stays queued, so retrying at once
                        // would spin a core. Back off as the reference
                        // does (10 ms doubling to 1 s), log now and then.
                        g.accept_errors.fetch_add(1, Ordering::Relaxed);
                        if last_log.is_none_or(|t| t.elapsed() >= ACCEPT_LOG_EVERY) {
                            tracing::error!(
                                "Temporary Client Accept Error ({e}), sleeping {}ms",
                                backoff.as_millis()
                            );
                            last_log = Some(std::time::Instant::now());
                        }
                        std::thread::sleep(backoff);
                        backoff = (backoff * 2).min(ACCEPT_MAX_SLEEP);
                        continue;
                    }
                    Err(_) => continue,
                };
                let Ok(addr) = stream.peer_addr() else {
                    continue;
                };
                if g.connections() >= g.live().max_connections {
                    // As the reference: the client gets its INFO, then the
                    // error, then the connection closes.
                    let cid = g.next_cid.fetch_add(1, Ordering::Relaxed);
                    tracing::error!("{addr} - cid:{cid} - maximum connections exceeded");
                    let mut out = crate::client::info_for(&g, cid, addr, false).to_line();
                    out.extend_from_slice(b"-ERR 'maximum connections exceeded'\r\n");
                    let _ = stream.write_all(&out);
                    continue;
                }
                let _ = stream.set_nodelay(true);
                let shard = pick_shard(&g, &mut turn);
                let fd: OwnedFd = stream.into();
                if g.ctl[shard].send_blocking(make(fd, addr)).is_err() {
                    break;
                }
            }
        })?;
    Ok(())
}

/// Fewest clients wins, counted in groups of `shard_fill`, so the first
/// few clients share a shard (cheap request/reply between them) and many
/// spread over all. With a fill of 1, ties rotate so that a burst of
/// accepts (before shards have counted them) still spreads evenly.
fn pick_shard(g: &Global, turn: &mut usize) -> usize {
    let fill = g.opts.shard_fill.max(1);
    let load = |i: usize| g.stats[i].connections.load(Ordering::Relaxed) / fill;
    if fill == 1 {
        *turn = turn.wrapping_add(1);
        return (0..g.shards)
            .map(|k| (*turn + k) % g.shards)
            .min_by_key(|&i| load(i))
            .unwrap_or(0);
    }
    (0..g.shards).min_by_key(|&i| (load(i), i)).unwrap_or(0)
}

pub fn spawn_http(g: Arc<Global>, listener: TcpListener) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("router-http".into())
        .spawn(move || {
            let mut next = 0usize;
            for conn in listener.incoming() {
                let Ok(stream) = conn else { continue };
                let Ok(addr) = stream.peer_addr() else {
                    continue;
                };
                let fd: OwnedFd = stream.into();
                next = (next + 1) % g.shards;
                if g.ctl[next].send_blocking(Ctl::NewHttp(fd, addr)).is_err() {
                    break;
                }
            }
        })?;
    Ok(())
}

/// Stops a listener's accept loop (used by lame duck mode).
pub fn stop_listener(listener_fd: i32) {
    // SAFETY: shutting down a listening socket we own only wakes `accept`.
    unsafe {
        libc::shutdown(listener_fd, libc::SHUT_RDWR);
    }
}

pub fn raw(l: &TcpListener) -> i32 {
    l.as_raw_fd()
}

pub fn spawn_websocket(g: Arc<Global>, listener: TcpListener) -> std::io::Result<()> {
    spawn_accept(g, listener, "router-ws", Ctl::NewWebsocket)
}

/// Accepts on the leaf-node port; every link goes to the links' home
/// shard (`leaf::home`).
pub fn spawn_leaf(g: Arc<Global>, listener: TcpListener) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("router-leaf".into())
        .spawn(move || {
            let home = crate::leaf::home(&g);
            for conn in listener.incoming() {
                if g.lame_duck.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(stream) = conn else {
                    std::thread::sleep(ACCEPT_MIN_SLEEP);
                    continue;
                };
                let Ok(addr) = stream.peer_addr() else {
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let fd: OwnedFd = stream.into();
                if g.ctl[home].send_blocking(Ctl::NewLeaf(fd, addr)).is_err() {
                    break;
                }
            }
        })?;
    Ok(())
}
