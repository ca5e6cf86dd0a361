//! The writing half of a client socket. A write first tries a plain
//! non-blocking `send`: when the socket has room (nearly always) that is
//! one syscall, with no io_uring submission, completion and task wake-up
//! per batch. Only a full socket falls back to glommio's write, which then
//! sees its operation through before the next direct try (two writes of
//! the same bytes in flight would duplicate them).

use std::io;
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_lite::AsyncWrite;
use glommio::net::TcpStream;

pub struct Writer {
    inner: TcpStream,
    /// glommio has a write of ours in flight.
    queued: bool,
}

impl Writer {
    pub(super) fn new(inner: TcpStream) -> Writer {
        Writer {
            inner,
            queued: false,
        }
    }

    /// The socket itself (peeking, addresses).
    pub fn stream(&self) -> &TcpStream {
        &self.inner
    }
}

/// One non-blocking send; None when the socket is full.
fn send_now(fd: i32, buf: &[u8]) -> Option<io::Result<usize>> {
    loop {
        // SAFETY: `buf` is valid for `buf.len()` readable bytes.
        let n = unsafe {
            libc::send(
                fd,
                buf.as_ptr().cast(),
                buf.len(),
                libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
            )
        };
        if n >= 0 {
            return Some(Ok(n as usize));
        }
        let e = io::Error::last_os_error();
        match e.kind() {
            io::ErrorKind::Interrupted => continue,
            io::ErrorKind::WouldBlock => return None,
            _ => return Some(Err(e)),
        }
    }
}

impl AsyncWrite for Writer {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if !this.queued && !buf.is_empty() {
            if let Some(r) = send_now(this.inner.as_raw_fd(), buf) {
                return Poll::Ready(r);
            }
        }
        let r = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.queued = r.is_pending();
        r
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_close(cx)
    }
}
