//! NATS over WebSocket (RFC 6455), as browsers (nats.ws) and the clients'
//! websocket transports speak it: an HTTP/1.1 upgrade, then the usual NATS
//! protocol inside binary frames. `WsStream` turns the frames back into a
//! byte stream so the connection code is the same as for TCP.
//! Compression is not negotiated (the client then sends plain frames).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use base64::Engine;
use futures_lite::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::options::WebsocketConfig;

const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
const MAX_REQUEST: usize = 8 * 1024;
/// Frames we accept from a client; NATS messages are far below this.
const MAX_FRAME: u64 = 64 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum WsError {
    #[error("websocket handshake: {0}")]
    Handshake(String),
    #[error("websocket handshake: origin {0:?} not allowed")]
    Origin(String),
    #[error("websocket handshake: {0}")]
    Io(#[from] io::Error),
}

fn header<'a>(req: &'a httparse::Request, name: &str) -> Option<&'a str> {
    req.headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case(name))
        .and_then(|h| std::str::from_utf8(h.value).ok())
}

fn accept_key(key: &str) -> String {
    use sha1::Digest;
    let mut h = sha1::Sha1::new();
    h.update(key.trim().as_bytes());
    h.update(GUID.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(h.finalize())
}

/// Checks the `Origin` header against `same_origin` / `allowed_origins`.
fn origin_ok(cfg: &WebsocketConfig, origin: Option<&str>, host: Option<&str>) -> bool {
    let Some(origin) = origin else {
        return true;
    };
    let strip = |s: &str| {
        s.split_once("://")
            .map_or(s, |(_, rest)| rest)
            .trim_end_matches('/')
            .to_ascii_lowercase()
    };
    if cfg.same_origin && host.is_some_and(|h| strip(origin) != h.to_ascii_lowercase()) {
        return false;
    }
    if !cfg.allowed_origins.is_empty() {
        let o = origin.trim_end_matches('/').to_ascii_lowercase();
        return cfg
            .allowed_origins
            .iter()
            .any(|a| a.trim_end_matches('/').to_ascii_lowercase() == o);
    }
    true
}

/// Reads the upgrade request from `s` and answers it. Returns bytes that
/// arrived after the request (the start of the first frame, if any).
pub async fn handshake<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    cfg: &WebsocketConfig,
) -> Result<Vec<u8>, WsError> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    let (key, used) = loop {
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Err(WsError::Handshake("closed before the request".into()));
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&buf) {
            Ok(httparse::Status::Complete(used)) => {
                if req.method != Some("GET") {
                    reject(s, "405 Method Not Allowed").await;
                    return Err(WsError::Handshake("method must be GET".into()));
                }
                let upgrade = header(&req, "Upgrade").unwrap_or_default();
                let version = header(&req, "Sec-WebSocket-Version").unwrap_or_default();
                let Some(key) = header(&req, "Sec-WebSocket-Key") else {
                    reject(s, "400 Bad Request").await;
                    return Err(WsError::Handshake("missing Sec-WebSocket-Key".into()));
                };
                if !upgrade.eq_ignore_ascii_case("websocket") || version.trim() != "13" {
                    reject(s, "400 Bad Request").await;
                    return Err(WsError::Handshake("not a websocket upgrade".into()));
                }
                let origin = header(&req, "Origin").map(str::to_string);
                if !origin_ok(cfg, origin.as_deref(), header(&req, "Host")) {
                    reject(s, "403 Forbidden").await;
                    return Err(WsError::Origin(origin.unwrap_or_default()));
                }
                break (key.to_string(), used);
            }
            Ok(httparse::Status::Partial) if buf.len() < MAX_REQUEST => continue,
            Ok(httparse::Status::Partial) => {
                reject(s, "431 Request Header Fields Too Large").await;
                return Err(WsError::Handshake("request too large".into()));
            }
            Err(e) => {
                reject(s, "400 Bad Request").await;
                return Err(WsError::Handshake(e.to_string()));
            }
        }
    };
    let resp = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
        accept_key(&key)
    );
    s.write_all(resp.as_bytes()).await?;
    Ok(buf.split_off(used))
}

async fn reject<S: AsyncWrite + Unpin>(s: &mut S, status: &str) {
    let body = format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    let _ = s.write_all(body.as_bytes()).await;
}

/// Encodes one unmasked server frame header for `len` payload bytes.
fn frame_header(opcode: u8, len: usize, out: &mut Vec<u8>) {
    out.push(0x80 | opcode);
    if len < 126 {
        out.push(len as u8);
    } else if len <= u16::MAX as usize {
        out.push(126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
}

#[derive(Debug)]
enum ReadState {
    Header,
    Payload {
        left: u64,
        mask: [u8; 4],
        pos: usize,
        data: bool,
    },
    Closed,
}

/// A byte stream over WebSocket frames: reads unmask client frames and
/// yield their payload; each write goes out as one binary frame.
pub struct WsStream<S> {
    inner: S,
    raw: Vec<u8>,
    state: ReadState,
    out: Vec<u8>,
    out_pos: usize,
    out_claimed: usize,
}

impl<S> WsStream<S> {
    /// `early` holds bytes that followed the upgrade request.
    pub fn new(inner: S, early: Vec<u8>) -> WsStream<S> {
        WsStream {
            inner,
            raw: early,
            state: ReadState::Header,
            out: Vec::new(),
            out_pos: 0,
            out_claimed: 0,
        }
    }
}

/// A parsed frame header: its length, the fin/opcode byte, the payload
/// length and the mask.
type FrameHead = (usize, u8, u64, [u8; 4]);

/// Parses a frame header at the start of `raw`, or None if incomplete.
fn parse_header(raw: &[u8]) -> Result<Option<FrameHead>, io::Error> {
    if raw.len() < 2 {
        return Ok(None);
    }
    let b0 = raw[0];
    let masked = raw[1] & 0x80 != 0;
    let mut len = (raw[1] & 0x7f) as u64;
    let mut at = 2;
    if len == 126 {
        if raw.len() < 4 {
            return Ok(None);
        }
        len = u16::from_be_bytes([raw[2], raw[3]]) as u64;
        at = 4;
    } else if len == 127 {
        if raw.len() < 10 {
            return Ok(None);
        }
        let mut b = [0u8; 8];
        b.copy_from_slice(&raw[2..10]);
        len = u64::from_be_bytes(b);
        at = 10;
    }
    if !masked {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "websocket: client frames must be masked",
        ));
    }
    if len > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "websocket: frame too large",
        ));
    }
    if raw.len() < at + 4 {
        return Ok(None);
    }
    let mut mask = [0u8; 4];
    mask.copy_from_slice(&raw[at..at + 4]);
    Ok(Some((at + 4, b0, len, mask)))
}

impl<S: AsyncRead + Unpin> AsyncRead for WsStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        // Nothing fits: the payload branch below would make no progress
        // and spin forever (found by fuzz/fuzz_targets/ws_frame.rs).
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        loop {
            match &mut this.state {
                ReadState::Closed => return Poll::Ready(Ok(0)),
                ReadState::Payload {
                    left,
                    mask,
                    pos,
                    data,
                } if !this.raw.is_empty() || *left == 0 => {
                    if *left == 0 {
                        this.state = ReadState::Header;
                        continue;
                    }
                    let n = (this.raw.len() as u64).min(*left) as usize;
                    let n = if *data { n.min(buf.len()) } else { n };
                    if *data {
                        for (i, b) in this.raw[..n].iter().enumerate() {
                            buf[i] = b ^ mask[(*pos + i) % 4];
                        }
                    }
                    *pos += n;
                    *left -= n as u64;
                    let is_data = *data;
                    this.raw.drain(..n);
                    if is_data && n > 0 {
                        return Poll::Ready(Ok(n));
                    }
                    continue;
                }
                ReadState::Header => {
                    if let Some((hlen, b0, len, mask)) = parse_header(&this.raw)? {
                        this.raw.drain(..hlen);
                        match b0 & 0x0f {
                            // Close: the client is done.
                            0x8 => {
                                this.state = ReadState::Closed;
                                continue;
                            }
                            // Continuation, text and binary carry protocol
                            // bytes; ping/pong bodies are skipped (NATS has
                            // its own keep-alive).
                            op => {
                                this.state = ReadState::Payload {
                                    left: len,
                                    mask,
                                    pos: 0,
                                    data: matches!(op, 0x0..=0x2),
                                };
                                continue;
                            }
                        }
                    }
                }
                ReadState::Payload { .. } => {}
            }
            // Need more bytes from the socket.
            let mut tmp = [0u8; 16 * 1024];
            match Pin::new(&mut this.inner).poll_read(cx, &mut tmp) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Ok(0)),
                Poll::Ready(Ok(n)) => this.raw.extend_from_slice(&tmp[..n]),
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for WsStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.out.is_empty() {
            // Frame this write; callers retry with the same bytes until we
            // report them written.
            frame_header(0x2, buf.len(), &mut this.out);
            this.out.extend_from_slice(buf);
            this.out_pos = 0;
            this.out_claimed = buf.len();
        }
        while this.out_pos < this.out.len() {
            match Pin::new(&mut this.inner).poll_write(cx, &this.out[this.out_pos..]) {
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                Poll::Ready(Ok(n)) => this.out_pos += n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        this.out.clear();
        Poll::Ready(Ok(this.out_claimed))
    }

    /// Also gives back the frame buffers when nothing is in them: the
    /// writer flushes once its connection has gone quiet, and a burst's
    /// frames (up to a whole write slice each) must not stay allocated.
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.out.is_empty() {
            this.out = Vec::new();
        }
        if this.raw.is_empty() {
            this.raw = Vec::new();
        }
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_close(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client_frame(opcode: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
        let mut f = vec![0x80 | opcode];
        if payload.len() < 126 {
            f.push(0x80 | payload.len() as u8);
        } else {
            f.push(0x80 | 126);
            f.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        }
        f.extend_from_slice(&mask);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        f
    }

    #[test]
    fn accept_key_matches_rfc_example() {
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn frames_become_a_byte_stream() {
        let mut wire = client_frame(0x2, b"PING\r\n", [1, 2, 3, 4]);
        wire.extend(client_frame(0x9, b"ping-body", [9, 9, 9, 9]));
        let big = vec![b'x'; 300];
        wire.extend(client_frame(0x2, &big, [7, 0, 7, 0]));
        wire.extend(client_frame(0x8, b"", [0, 0, 0, 0]));
        let mut s = WsStream::new(futures_lite::io::Cursor::new(Vec::new()), wire);
        let mut got = Vec::new();
        futures_lite::future::block_on(s.read_to_end(&mut got)).unwrap();
        let mut want = b"PING\r\n".to_vec();
        want.extend(&big);
        assert_eq!(got, want);
    }

    #[test]
    fn unmasked_client_frame_is_refused() {
        let mut s = WsStream::new(
            futures_lite::io::Cursor::new(Vec::new()),
            vec![0x82, 0x01, b'x'],
        );
        let mut got = Vec::new();
        assert!(futures_lite::future::block_on(s.read_to_end(&mut got)).is_err());
    }

    /// An empty read buffer in the middle of a payload used to spin
    /// forever (fuzz/regressions/ws_frame/empty_read_mid_payload.bin).
    #[test]
    fn empty_read_mid_payload_returns() {
        let wire = client_frame(0x2, b"PING\r\nPONG\r\n", [1, 2, 3, 4]);
        let mut s = WsStream::new(futures_lite::io::Cursor::new(Vec::new()), wire);
        let mut one = [0u8; 1];
        assert_eq!(futures_lite::future::block_on(s.read(&mut one)).unwrap(), 1);
        assert_eq!(futures_lite::future::block_on(s.read(&mut [])).unwrap(), 0);
        let mut rest = Vec::new();
        futures_lite::future::block_on(s.read_to_end(&mut rest)).unwrap();
        assert_eq!([&one[..], &rest[..]].concat(), b"PING\r\nPONG\r\n");
    }

    #[test]
    fn writes_are_binary_frames() {
        let mut s = WsStream::new(futures_lite::io::Cursor::new(Vec::new()), Vec::new());
        futures_lite::future::block_on(s.write_all(b"INFO {}\r\n")).unwrap();
        let wire = s.inner.into_inner();
        assert_eq!(wire[0], 0x82);
        assert_eq!(wire[1] as usize, 9);
        assert_eq!(&wire[2..], b"INFO {}\r\n");
    }

    /// A flush between frames releases the frame buffers (the writer
    /// flushes when its connection went quiet).
    #[test]
    fn flush_releases_frame_buffers() {
        let mut s = WsStream::new(futures_lite::io::Cursor::new(Vec::new()), Vec::new());
        futures_lite::future::block_on(s.write_all(&vec![b'x'; 64 * 1024])).unwrap();
        assert!(s.out.capacity() >= 64 * 1024);
        futures_lite::future::block_on(s.flush()).unwrap();
        assert_eq!(s.out.capacity(), 0);
        assert_eq!(s.raw.capacity(), 0);
        futures_lite::future::block_on(s.write_all(b"PING\r\n")).unwrap();
        let wire = s.inner.into_inner();
        assert_eq!(&wire[wire.len() - 8..], b"\x82\x06PING\r\n");
    }

    #[test]
    fn origins() {
        let cfg = WebsocketConfig {
            no_tls: true,
            same_origin: true,
            ..WebsocketConfig::default()
        };
        assert!(origin_ok(&cfg, Some("http://h:1"), Some("h:1")));
        assert!(!origin_ok(&cfg, Some("http://evil:1"), Some("h:1")));
        let cfg = WebsocketConfig {
            same_origin: false,
            allowed_origins: vec!["https://ok.example".into()],
            ..cfg
        };
        assert!(origin_ok(&cfg, Some("https://ok.example"), None));
        assert!(!origin_ok(&cfg, Some("https://no.example"), None));
    }
}
