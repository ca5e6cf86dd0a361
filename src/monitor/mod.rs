//! The HTTP monitoring listener: `/healthz`, `/varz`, `/connz`, `/subsz`
//! with nats-server's JSON field names. Requests are served on the shard
//! the router handed the connection to; per-connection data is gathered from
//! every shard over the control channels.

mod endpoints;
pub mod gather;
mod jsz;
pub use jsz::free_disk;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::rc::Rc;

use futures_lite::{AsyncReadExt, AsyncWriteExt};

use crate::runtime;
use crate::shard::Shard;

const MAX_REQUEST: usize = 16 * 1024;

pub fn serve(shard: &Rc<Shard>, fd: OwnedFd, addr: SocketAddr) {
    let shard = shard.clone();
    runtime::spawn_local(async move {
        let Ok((mut r, mut w)) = runtime::bind_socket(fd) else {
            return;
        };
        let mut buf = Vec::with_capacity(1024);
        let mut chunk = [0u8; 2048];
        // One request per connection keeps this simple; clients that
        // keep-alive just reconnect.
        loop {
            let n = match runtime::timeout(std::time::Duration::from_secs(10), r.read(&mut chunk))
                .await
            {
                Some(Ok(n)) if n > 0 => n,
                _ => return,
            };
            buf.extend_from_slice(&chunk[..n]);
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut req = httparse::Request::new(&mut headers);
            match req.parse(&buf) {
                Ok(httparse::Status::Complete(_)) => {
                    let method = req.method.unwrap_or("GET").to_string();
                    let path = req.path.unwrap_or("/").to_string();
                    let resp = respond(&shard, &method, &path).await;
                    let _ = w.write_all(&resp).await;
                    let _ = w.close().await;
                    return;
                }
                Ok(httparse::Status::Partial) if buf.len() < MAX_REQUEST => continue,
                _ => {
                    tracing::debug!("{addr} - bad monitoring request");
                    let _ = w
                        .write_all(&http(400, "text/plain", b"bad request\n"))
                        .await;
                    return;
                }
            }
        }
    })
    .detach();
}

fn http(code: u16, ctype: &str, body: &[u8]) -> Vec<u8> {
    let status = match code {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        503 => "Service Unavailable",
        _ => "Error",
    };
    let mut out = format!(
        "HTTP/1.1 {code} {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

fn parse_query(q: &str) -> HashMap<String, String> {
    q.split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (kv.to_string(), String::new()),
        })
        .collect()
}

async fn respond(shard: &Rc<Shard>, method: &str, target: &str) -> Vec<u8> {
    if method != "GET" && method != "HEAD" {
        return http(405, "text/plain", b"method not allowed\n");
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let params = parse_query(query);
    let path = path.trim_end_matches('/');
    // Only the endpoints served are counted (as the reference counts its
    // handlers): unknown paths must not grow the table `/varz` shows.
    let known = matches!(
        path,
        "" | "/healthz" | "/varz" | "/jsz" | "/connz" | "/subsz" | "/subscriptionsz"
    );
    if known {
        if let Ok(mut stats) = shard.g.http_requests.lock() {
            let key = if path.is_empty() { "/" } else { path };
            *stats.entry(key.to_string()).or_insert(0) += 1;
        }
    }
    let body = match path {
        "" => Ok(endpoints::index(&shard.g)),
        "/healthz" => Ok(serde_json::json!({"status": "ok"})),
        "/varz" => {
            let mut v = endpoints::varz(&shard.g);
            v["jetstream"] = jsz::varz(shard).await;
            Ok(v)
        }
        "/jsz" => jsz::jsz(shard, &params).await,
        "/connz" => endpoints::connz(&shard.g, &params).await,
        "/subsz" | "/subscriptionsz" => endpoints::subsz(&shard.g, &params).await,
        _ => return http(404, "text/plain", b"404 page not found\n"),
    };
    match body {
        Ok(v) if path.is_empty() => {
            let html = v.as_str().unwrap_or_default().as_bytes().to_vec();
            http(200, "text/html; charset=utf-8", &html)
        }
        Ok(v) => {
            let mut b = serde_json::to_vec_pretty(&v).unwrap_or_default();
            b.push(b'\n');
            http(200, "application/json", &b)
        }
        Err(e) => http(400, "text/plain", format!("{e}\n").as_bytes()),
    }
}
