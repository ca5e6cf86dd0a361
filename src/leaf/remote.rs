//! The leaf role: dialing a hub from `leafnodes { remotes }`, again and
//! again while the server runs. A URL is picked at random from the
//! configured ones and those the hub advertised (`leafnode_urls`); after a
//! link ends the next attempt waits `reconnect` (30 s after the hub
//! reported a loop).

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::rc::Rc;
use std::time::Duration;

use bytes::BytesMut;
use futures_lite::AsyncReadExt;

use super::conn::{self, LeafConnect};
use super::LeafState;
use crate::client::Client;
use crate::runtime;
use crate::shard::Shard;

const DIAL_TIMEOUT: Duration = Duration::from_secs(2);

/// Keeps remote `index` linked for as long as the server runs.
pub async fn run(shard: Rc<Shard>, index: usize) {
    let Some(r) = shard
        .g
        .opts
        .leafnodes
        .as_ref()
        .and_then(|o| o.remotes.get(index))
    else {
        return;
    };
    let reconnect = shard
        .g
        .opts
        .leafnodes
        .as_ref()
        .map_or(Duration::from_secs(1), |o| o.reconnect);
    let mut urls: Vec<String> = r.urls.clone();
    let mut at = fastrand::usize(..urls.len().max(1));
    loop {
        if shard.g.lame_duck.load(std::sync::atomic::Ordering::Relaxed) {
            return;
        }
        let url = urls[at % urls.len()].clone();
        at += 1;
        let mut looped = false;
        match dial(&shard, index, &url).await {
            Ok((learned, l)) => {
                looped = l;
                for u in learned {
                    if !urls.contains(&u) {
                        urls.push(u);
                    }
                }
            }
            Err(e) => {
                tracing::error!(
                    "Error trying to connect as leafnode to remote server {:?}: {e}",
                    crate::options::redact_url(&url)
                );
            }
        }
        runtime::sleep(if looped { super::LOOP_DELAY } else { reconnect }).await;
    }
}

/// One link: dial, INFO, (TLS,) CONNECT, then run it until it ends.
/// Returns the URLs the hub advertised and whether it reported a loop.
async fn dial(shard: &Rc<Shard>, index: usize, url: &str) -> Result<(Vec<String>, bool), String> {
    let g = shard.g.clone();
    let r = g
        .opts
        .leafnodes
        .as_ref()
        .and_then(|o| o.remotes.get(index))
        .ok_or("remote gone")?
        .clone();
    let t = crate::options::LeafUrl::parse(url)?;
    let url_user = t
        .user
        .clone()
        .map(|u| (u, t.password.as_deref().map(str::to_string)));
    let acc_name = r
        .account
        .clone()
        .unwrap_or_else(|| crate::account::GLOBAL.into());
    let acc = g
        .accounts
        .id(&acc_name)
        .ok_or_else(|| format!("no local account {acc_name:?}"))?;
    let (host, port) = (t.host.clone(), t.port);
    let addrs = runtime::blocking(move || {
        std::net::ToSocketAddrs::to_socket_addrs(&(host.as_str(), port))
            .map(|a| a.collect::<Vec<_>>())
    })
    .await
    .map_err(|e| e.to_string())?;
    let addr = *addrs.first().ok_or("no address")?;
    let stream = runtime::TcpStream::connect_timeout(addr, DIAL_TIMEOUT)
        .await
        .map_err(|e| e.to_string())?;
    // SAFETY: dup returns a new descriptor that only this OwnedFd owns.
    let fd = unsafe { libc::dup(stream.as_raw_fd()) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error().to_string());
    }
    drop(stream);
    // SAFETY: `fd` was just created by dup and is owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let raw = fd.as_raw_fd();
    let (mut reader, writer) = runtime::bind_socket(fd).map_err(|e| e.to_string())?;
    // The hub speaks first: INFO.
    let wait = r
        .first_info_timeout
        .unwrap_or(crate::options::DEFAULT_LEAF_FIRST_INFO_TIMEOUT);
    let mut buf = BytesMut::with_capacity(4096);
    let line_end = loop {
        if let Some(i) = memchr::memchr(b'\n', &buf) {
            break i;
        }
        if buf.len() > 64 * 1024 {
            return Err("INFO too long".into());
        }
        let mut chunk = [0u8; 4096];
        let n = runtime::timeout(wait, reader.read(&mut chunk))
            .await
            .ok_or("timeout waiting for the hub's INFO")?
            .map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("connection closed before INFO".into());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let line = buf.split_to(line_end + 1);
    let json = std::str::from_utf8(&line)
        .ok()
        .and_then(|l| l.trim().strip_prefix("INFO "))
        .ok_or("the other side did not send INFO")?;
    let info: serde_json::Value =
        serde_json::from_str(json).map_err(|e| format!("bad INFO: {e}"))?;
    let has = |k: &str| info.get(k).is_some_and(|v| !v.is_null());
    if info.get("client_id").and_then(|v| v.as_u64()).unwrap_or(0) == 0
        || (!has("leafnode_urls") && !info["info_on_connect"].as_bool().unwrap_or(false))
    {
        return Err("attempted to connect to a port that is not a leafnode port".into());
    }
    let learned: Vec<String> = info["leafnode_urls"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|u| u.as_str())
                .map(|u| format!("{}://{u}", if t.tls { "tls" } else { "nats" }))
                .collect()
        })
        .unwrap_or_default();
    let hub_name = info["server_name"]
        .as_str()
        .or(info["server_id"].as_str())
        .unwrap_or_default()
        .to_string();
    let nonce = info["nonce"].as_str().map(str::to_string);
    let mut conn = LeafConnect {
        version: crate::protocol::info::NATS_VERSION.into(),
        server_id: g.server_id.clone(),
        name: g.server_name.clone(),
        hub: r.hub,
        headers: true,
        jetstream: g.jetstream.get().is_some(),
        domain: g.opts.jetstream_domain.clone().unwrap_or_default(),
        deny_pub: r.deny_imports.clone(),
        remote_account: acc_name.clone(),
        proto: Some(1),
        ..Default::default()
    };
    super::auth::credentials(&r, url_user, nonce.as_deref(), &mut conn)?;
    let state = Rc::new(LeafState::new(
        Some(index),
        r.deny_imports.clone(),
        r.deny_exports.clone(),
        g.opts.jetstream_domain.as_deref(),
    ));
    *state.remote_server.borrow_mut() = hub_name;
    let cid = g
        .next_cid
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let c = Rc::new(Client::new(
        shard,
        cid,
        addr,
        false,
        true,
        None,
        Some(state.clone()),
    ));
    c.set_account(acc);
    c.update_connect(crate::protocol::info::Connect {
        headers: info["headers"].as_bool().unwrap_or(false),
        echo: false,
        ..Default::default()
    });
    let mut connect = b"CONNECT ".to_vec();
    connect.extend_from_slice(serde_json::to_string(&conn).unwrap_or_default().as_bytes());
    connect.extend_from_slice(b"\r\n");
    tracing::info!(
        "Leafnode connection created for account: {acc_name} ({}:{})",
        t.host,
        t.port
    );
    // A hub that answers CONNECT with an INFO (`info_on_connect`) accepted
    // the link only once that INFO comes; older hubs say nothing.
    let wait_accept = info["info_on_connect"].as_bool().unwrap_or(false);
    let tls_wanted = t.tls || r.tls.is_some() || info["tls_required"].as_bool().unwrap_or(false);
    if tls_wanted {
        drop(writer);
        let cfg = crate::tls::client_config(&r.tls.clone().unwrap_or_default())?;
        let name = rustls::pki_types::ServerName::try_from(t.host.clone())
            .map_err(|e| format!("bad TLS server name {:?}: {e}", t.host))?;
        let limit = r
            .tls
            .as_ref()
            .and_then(|x| x.timeout)
            .unwrap_or(crate::tls::DEFAULT_TIMEOUT);
        let connector = futures_rustls::TlsConnector::from(cfg);
        let s = runtime::timeout(limit, connector.connect(name, reader))
            .await
            .ok_or("TLS handshake timeout")?
            .map_err(|e| format!("TLS handshake error: {e}"))?;
        let (rd, wr) = futures_lite::io::split(s);
        c.out.push(&connect);
        c.reader_fd.set(Some(raw));
        runtime::spawn_local(crate::client::write_loop(c.clone(), wr)).detach();
        if !wait_accept {
            conn::up(shard, &c);
        }
        conn::read_loop(shard.clone(), c.clone(), rd, buf).await;
    } else {
        c.reader_fd.set(Some(raw));
        c.out.push(&connect);
        runtime::spawn_local(crate::client::write_loop(c.clone(), writer)).detach();
        if !wait_accept {
            conn::up(shard, &c);
        }
        conn::read_loop(shard.clone(), c.clone(), reader, buf).await;
    }
    Ok((learned, state.loop_detected.get()))
}
