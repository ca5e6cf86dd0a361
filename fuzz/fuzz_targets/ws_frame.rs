//! Fuzz the WebSocket side of a client connection: the frame decoder
//! (`WsStream`, frames turned back into a byte stream) and, when the
//! first byte asks for it, the upgrade request (`handshake`) in front of
//! the frames. The bytes arrive in arbitrary chunks (with `Pending` in
//! between) and are read with arbitrary buffer sizes. Never panics, never
//! hangs, and what the stream yields is exactly what a plain model of
//! RFC 6455 framing (as the server reads it: masked client frames, data
//! opcodes 0-2 carry bytes, other frames skipped, close ends the stream)
//! yields for the same bytes; the stream fails only where the model does.
//!
//! Input: [mode, chunking, read sizes, stream...]. Mode bit 7: the stream
//! starts with an HTTP upgrade request; bits 0-1 pick the origin policy;
//! bit 2: the socket answers `Pending` before every other read.
#![no_main]

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use broker_edge::client::websocket::{handshake, WsStream};
use broker_edge::options::WebsocketConfig;
use futures_lite::{AsyncRead, AsyncReadExt, AsyncWrite};
use libfuzzer_sys::fuzz_target;

/// The decoder's frame size limit (64 MiB).
const MAX_FRAME: u64 = 64 * 1024 * 1024;

/// The client side of the socket: hands out `data` in chunks of the
/// sizes `chunks` cycles through, now and then `Pending` first; keeps
/// what the server writes.
struct Peer {
    data: Vec<u8>,
    pos: usize,
    chunks: Vec<usize>,
    turn: usize,
    /// Answer `Pending` before every other read.
    pending: bool,
    pend: bool,
    written: Vec<u8>,
}

impl AsyncRead for Peer {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let size = this.chunks[this.turn % this.chunks.len()];
        this.turn += 1;
        if this.pending && !this.pend {
            this.pend = true;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        this.pend = false;
        let n = size.min(buf.len()).min(this.data.len() - this.pos);
        buf[..n].copy_from_slice(&this.data[this.pos..this.pos + n]);
        this.pos += n;
        Poll::Ready(Ok(n))
    }
}

impl AsyncWrite for Peer {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.written.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// What the stream should yield for `raw`, and whether it should fail
/// after that.
fn model(mut raw: &[u8]) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    loop {
        if raw.len() < 2 {
            return (out, false);
        }
        let (b0, b1) = (raw[0], raw[1]);
        let mut len = u64::from(b1 & 0x7f);
        let mut at = 2;
        if len == 126 {
            if raw.len() < 4 {
                return (out, false);
            }
            len = u64::from(u16::from_be_bytes([raw[2], raw[3]]));
            at = 4;
        } else if len == 127 {
            if raw.len() < 10 {
                return (out, false);
            }
            let mut b = [0u8; 8];
            b.copy_from_slice(&raw[2..10]);
            len = u64::from_be_bytes(b);
            at = 10;
        }
        if b1 & 0x80 == 0 || len > MAX_FRAME {
            return (out, true);
        }
        if raw.len() < at + 4 {
            return (out, false);
        }
        let mask = [raw[at], raw[at + 1], raw[at + 2], raw[at + 3]];
        raw = &raw[at + 4..];
        let op = b0 & 0x0f;
        if op == 0x8 {
            return (out, false);
        }
        let n = (raw.len() as u64).min(len) as usize;
        if op <= 0x2 {
            out.extend(raw[..n].iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        }
        raw = &raw[n..];
        if (n as u64) < len {
            return (out, false);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let [mode, chunking, reads, stream @ ..] = data else {
        return;
    };
    // Four chunk sizes and four read buffer sizes, from the two
    // parameter bytes.
    let pick = |b: u8, table: [usize; 4]| -> Vec<usize> {
        (0..4).map(|i| table[(b >> (2 * i)) as usize & 3]).collect()
    };
    let chunks = pick(*chunking, [1, 3, 17, 1024]);
    // (An empty read buffer is allowed: the read answers Ok(0) and the
    // stream goes on.)
    let mut read_sizes = pick(*reads, [0, 1, 5, 16 * 1024]);
    if read_sizes.iter().all(|&s| s == 0) {
        read_sizes[0] = 1;
    }
    let mut peer = Peer {
        data: stream.to_vec(),
        pos: 0,
        chunks,
        turn: 0,
        pending: mode & 4 != 0,
        pend: false,
        written: Vec::new(),
    };
    let early = if mode & 0x80 != 0 {
        let cfg = WebsocketConfig {
            same_origin: mode & 1 != 0,
            allowed_origins: if mode & 2 != 0 {
                vec!["https://ok.example".into()]
            } else {
                Vec::new()
            },
            ..WebsocketConfig::default()
        };
        match futures_lite::future::block_on(handshake(&mut peer, &cfg)) {
            Ok(early) => {
                assert!(
                    peer.written.starts_with(b"HTTP/1.1 101 "),
                    "{:?}",
                    peer.written
                );
                early
            }
            Err(_) => {
                assert!(
                    peer.written.is_empty() || peer.written.starts_with(b"HTTP/1.1 4"),
                    "{:?}",
                    peer.written
                );
                return;
            }
        }
    } else {
        Vec::new()
    };
    let mut frames = early.clone();
    frames.extend_from_slice(&peer.data[peer.pos..]);
    let (want, fails) = model(&frames);

    let mut ws = WsStream::new(peer, early);
    let mut got = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    let mut failed = false;
    for turn in 0.. {
        let size = read_sizes[turn % read_sizes.len()];
        match futures_lite::future::block_on(ws.read(&mut buf[..size])) {
            Ok(0) if size == 0 => continue,
            Ok(0) => break,
            Ok(n) => {
                assert!(n <= size);
                got.extend_from_slice(&buf[..n]);
                assert!(got.len() <= frames.len(), "more bytes out than in");
            }
            Err(_) => {
                failed = true;
                break;
            }
        }
    }
    assert_eq!(failed, fails, "failure differs from the model");
    assert!(
        got == want,
        "stream yielded {} bytes, model {}",
        got.len(),
        want.len()
    );
});
