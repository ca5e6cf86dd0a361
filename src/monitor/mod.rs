//! The HTTP monitoring listener: `/healthz`, `/varz`, `/connz`, `/subsz`
//! with nats-server's JSON field names. Requests are served on the shard
//! the router handed the connection to; per-connection data is gathered from
//! every shard over the control channels.
//!
//! Everything a client can make it hold is bounded: the request head in
//! size ([`http::MAX_HEAD`]) and time ([`HEAD_DEADLINE`]), the answer in
//! time ([`ANSWER_DEADLINE`], [`WRITE_DEADLINE`]), the connections open
//! at once ([`MAX_CONNECTIONS_PER_SHARD`]), and what one `/connz` makes a
//! shard walk (`gather.rs`).

pub mod closed;
pub(crate) mod endpoints;
pub mod gather;
pub mod http;
pub(crate) mod jsz;
pub(crate) mod leafz;
mod metrics;
pub use jsz::free_disk;

use std::cell::RefCell;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::rc::Rc;
use std::time::Duration;

use futures_lite::{AsyncReadExt, AsyncWriteExt};

use crate::runtime;
use crate::shard::Shard;
use http::{parse_head, parse_query, HeadError, Request, MAX_HEAD};

/// Reading a request's whole head must end within this from the accept,
/// as the reference's `ReadHeaderTimeout` (5 s): a client trickling bytes
/// is answered 400 and cut then (as Go does; one that sent nothing is
/// just closed).
pub const HEAD_DEADLINE: Duration = Duration::from_secs(5);
/// Gathering an answer from the shards must end within this, else 503.
pub const ANSWER_DEADLINE: Duration = Duration::from_secs(10);
/// Writing the answer must end within this. The reference sets no write
/// timeout; a client that never reads would hold its connection forever.
pub const WRITE_DEADLINE: Duration = Duration::from_secs(10);
/// After an error answer, what the client still sends is read and dropped
/// for at most this long (and [`DRAIN_BYTES`]), so that closing does not
/// reset the connection before the client read the answer (Go waits the
/// same way).
const DRAIN_TIME: Duration = Duration::from_millis(500);
const DRAIN_BYTES: usize = 4 << 20;
/// Monitoring connections open at once on one shard (the router hands
/// them out in turn). A new one past this closes the oldest connection
/// still sending its request head; when none is, it is refused with 503.
/// The reference has no cap.
pub const MAX_CONNECTIONS_PER_SHARD: usize = 32;

/// The shard's open monitoring connections.
#[derive(Default)]
struct Slots {
    open: usize,
    next: u64,
    /// Those still reading their head, oldest first, with what ends them.
    reading: VecDeque<(u64, futures_channel::oneshot::Sender<()>)>,
}

thread_local! {
    static SLOTS: RefCell<Slots> = RefCell::default();
}

/// A monitoring connection's place among [`MAX_CONNECTIONS_PER_SHARD`];
/// given back when its task ends, however it ends.
struct Slot(u64);

impl Slot {
    /// A place for a new connection, and the signal that it was evicted.
    fn take() -> Option<(Slot, futures_channel::oneshot::Receiver<()>)> {
        SLOTS.with_borrow_mut(|s| {
            if s.open >= MAX_CONNECTIONS_PER_SHARD {
                // Dropping the sender wakes the evicted task, which ends
                // (and frees its place) at its next turn.
                s.reading.pop_front()?;
            }
            s.open += 1;
            s.next += 1;
            let (tx, rx) = futures_channel::oneshot::channel();
            s.reading.push_back((s.next, tx));
            Some((Slot(s.next), rx))
        })
    }

    /// The head is in: no longer one to evict.
    fn head_done(&self) {
        SLOTS.with_borrow_mut(|s| s.reading.retain(|(id, _)| *id != self.0));
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        SLOTS.with_borrow_mut(|s| {
            s.open = s.open.saturating_sub(1);
            s.reading.retain(|(id, _)| *id != self.0);
        });
    }
}

/// Serves one monitoring connection (one request, then close), every
/// step under a deadline.
pub fn serve(shard: &Rc<Shard>, fd: OwnedFd, addr: SocketAddr) {
    let Some((slot, evicted)) = Slot::take() else {
        refuse(fd);
        return;
    };
    let shard = shard.clone();
    runtime::spawn_local(async move {
        let Ok((mut r, mut w)) = runtime::bind_socket(fd) else {
            return;
        };
        let mut buf = Vec::with_capacity(1024);
        let head = runtime::timeout(HEAD_DEADLINE, read_head(&mut r, &mut buf));
        let evicted = async {
            let _ = evicted.await;
            tracing::debug!("{addr} - monitoring connection evicted (too many open)");
            Some(Ok(None))
        };
        let head = futures_lite::future::or(head, evicted).await;
        slot.head_done();
        let err = match head {
            Some(Ok(Some(req))) => Ok(req),
            Some(Err(e)) => Err(e),
            // Past the deadline with part of a head: a 400, as Go's
            // server answers then (and nothing if nothing came).
            None if !buf.is_empty() => Err(HeadError::Incomplete),
            // Closed, failed or evicted: no answer.
            _ => return,
        };
        let req = match err {
            Ok(req) => req,
            Err(e) => {
                tracing::debug!("{addr} - bad monitoring request: {e}");
                let resp = http::error_response(&e);
                let _ = runtime::timeout(WRITE_DEADLINE, async {
                    w.write_all(&resp).await?;
                    w.close().await
                })
                .await;
                drain(&mut r).await;
                return;
            }
        };
        let params = parse_query(&req.query);
        let resp = runtime::timeout(ANSWER_DEADLINE, respond(&shard, &req, &params))
            .await
            .unwrap_or_else(|| {
                http::response(
                    503,
                    "text/plain",
                    b"monitoring answer timed out\n",
                    req.head_only(),
                )
            });
        let _ = runtime::timeout(WRITE_DEADLINE, async {
            w.write_all(&resp).await?;
            w.close().await
        })
        .await;
    })
    .detach();
}

/// Reads until a whole head is in. `Ok(None)`: the peer closed first.
async fn read_head(
    r: &mut runtime::Socket,
    buf: &mut Vec<u8>,
) -> Result<Option<Request>, HeadError> {
    let mut chunk = [0u8; 2048];
    loop {
        let room = MAX_HEAD.saturating_sub(buf.len()).clamp(1, chunk.len());
        let n = match r.read(&mut chunk[..room]).await {
            Ok(n) if n > 0 => n,
            _ => return Ok(None),
        };
        buf.extend_from_slice(&chunk[..n]);
        // A head ends with an empty line: parse again only when a line
        // ended (so a head trickled byte by byte is not parsed per byte).
        if !chunk[..n].contains(&b'\n') && buf.len() < MAX_HEAD {
            continue;
        }
        if let Some(req) = parse_head(buf)? {
            return Ok(Some(req));
        }
    }
}

/// Reads and drops what the client still sends, briefly (see
/// [`DRAIN_TIME`]).
async fn drain(r: &mut runtime::Socket) {
    let mut chunk = [0u8; 16 * 1024];
    let mut left = DRAIN_BYTES;
    let _ = runtime::timeout(DRAIN_TIME, async {
        while left > 0 {
            match r.read(&mut chunk).await {
                Ok(n) if n > 0 => left = left.saturating_sub(n),
                _ => break,
            }
        }
    })
    .await;
}

/// Past the cap with nobody to evict: a best-effort 503 without waiting,
/// then close.
fn refuse(fd: OwnedFd) {
    let mut s = std::net::TcpStream::from(fd);
    if s.set_nonblocking(true).is_ok() {
        let resp = http::response(
            503,
            "text/plain",
            b"too many monitoring connections\n",
            false,
        );
        let _ = std::io::Write::write(&mut s, &resp);
    }
}

async fn respond(
    shard: &Rc<Shard>,
    req: &Request,
    params: &std::collections::HashMap<String, String>,
) -> Vec<u8> {
    let head_only = req.head_only();
    if req.method != "GET" && !head_only {
        return http::response(405, "text/plain", b"method not allowed\n", false);
    }
    let path = req.path.as_str();
    // Only the endpoints served are counted (as the reference counts its
    // handlers): unknown paths must not grow the table `/varz` shows.
    let known = matches!(
        path,
        "" | "/healthz"
            | "/varz"
            | "/jsz"
            | "/connz"
            | "/leafz"
            | "/subsz"
            | "/subscriptionsz"
            | "/accstatz"
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
        "/jsz" => jsz::jsz(shard, params).await,
        "/leafz" => leafz::leafz(shard, params).await,
        "/routez" => Ok(endpoints::routez(&shard.g)),
        "/gatewayz" => Ok(endpoints::gatewayz(&shard.g)),
        "/accountz" => Ok(endpoints::accountz(&shard.g)),
        "/accstatz" => endpoints::accstatz(&shard.g, params).await,
        "/metrics" => {
            return match metrics::metrics(shard).await {
                Ok(text) => http::response(
                    200,
                    "text/plain; version=0.0.4; charset=utf-8",
                    text.as_bytes(),
                    head_only,
                ),
                Err(e) => http::response(500, "text/plain", format!("{e}\n").as_bytes(), head_only),
            };
        }
        "/connz" => endpoints::connz(&shard.g, params).await,
        "/subsz" | "/subscriptionsz" => endpoints::subsz(&shard.g, params).await,
        _ => {
            return http::response(404, "text/plain", b"404 page not found\n", head_only);
        }
    };
    match body {
        Ok(v) if path.is_empty() => {
            let html = v.as_str().unwrap_or_default().as_bytes().to_vec();
            http::response(200, "text/html; charset=utf-8", &html, head_only)
        }
        Ok(v) => {
            let mut b = serde_json::to_vec_pretty(&v).unwrap_or_default();
            b.push(b'\n');
            http::response(200, "application/json", &b, head_only)
        }
        Err(e) => http::response(400, "text/plain", format!("{e}\n").as_bytes(), head_only),
    }
}
