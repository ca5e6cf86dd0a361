//! A connection's outbound buffer. Deliveries append protocol frames here
//! without awaiting; the connection's writer task flushes whatever gathered
//! since its last write in one `send`, so a burst of messages costs one
//! system call.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::task::{Poll, Waker};

#[derive(Default)]
pub struct Outbound {
    buf: RefCell<Vec<u8>>,
    waker: Cell<Option<Waker>>,
    closing: Cell<bool>,
    /// Producers waiting for this buffer to drain (see `below`).
    space: RefCell<Vec<Waker>>,
    /// Bytes of the batch the writer took and is still sending.
    in_flight: Cell<usize>,
    /// Bytes written so far: a producer waiting for this connection can
    /// tell a slow reader (this moves) from a stuck one.
    written: Cell<u64>,
}

impl Outbound {
    pub fn len(&self) -> usize {
        self.buf.borrow().len()
    }

    /// Every byte not yet written: what is queued plus the batch being
    /// sent. This is what `max_pending` bounds.
    pub fn pending(&self) -> usize {
        self.len() + self.in_flight.get()
    }

    pub fn is_empty(&self) -> bool {
        self.buf.borrow().is_empty()
    }

    fn wake(&self) {
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }

    pub fn push(&self, bytes: &[u8]) {
        if self.closing.get() {
            return;
        }
        self.buf.borrow_mut().extend_from_slice(bytes);
        self.wake();
    }

    /// Appends `MSG`/`HMSG` for one delivery.
    pub fn push_msg(
        &self,
        subject: &[u8],
        sid: &[u8],
        reply: Option<&[u8]>,
        hdr_len: Option<usize>,
        msg: &[u8],
    ) {
        if self.closing.get() {
            return;
        }
        let mut b = self.buf.borrow_mut();
        let mut n = itoa::Buffer::new();
        b.reserve(msg.len() + subject.len() + 48);
        b.extend_from_slice(if hdr_len.is_some() { b"HMSG " } else { b"MSG " });
        b.extend_from_slice(subject);
        b.push(b' ');
        b.extend_from_slice(sid);
        b.push(b' ');
        if let Some(r) = reply {
            b.extend_from_slice(r);
            b.push(b' ');
        }
        if let Some(h) = hdr_len {
            b.extend_from_slice(n.format(h).as_bytes());
            b.push(b' ');
        }
        b.extend_from_slice(n.format(msg.len()).as_bytes());
        b.extend_from_slice(b"\r\n");
        b.extend_from_slice(msg);
        b.extend_from_slice(b"\r\n");
        drop(b);
        self.wake();
    }

    /// Stops accepting data; the writer flushes what is queued and exits.
    pub fn close(&self) {
        self.closing.set(true);
        self.wake();
        for w in self.space.borrow_mut().drain(..) {
            w.wake();
        }
    }

    /// Resolves once at most `limit` bytes are queued (or the connection is
    /// closing): how a producer waits for a lagging subscriber.
    pub fn below(&self, limit: usize) -> impl Future<Output = ()> + '_ {
        std::future::poll_fn(move |cx| {
            if self.pending() <= limit || self.closing.get() {
                Poll::Ready(())
            } else {
                self.space.borrow_mut().push(cx.waker().clone());
                Poll::Pending
            }
        })
    }

    /// The writer sent `n` more bytes of the batch it took: producers
    /// waiting for space may go on.
    pub fn wrote(&self, n: usize) {
        self.in_flight.set(self.in_flight.get().saturating_sub(n));
        self.written.set(self.written.get() + n as u64);
        for w in self.space.borrow_mut().drain(..) {
            w.wake();
        }
    }

    /// Bytes written since the connection began.
    pub fn progress(&self) -> u64 {
        self.written.get()
    }

    /// Drops anything queued (the peer is not reading it anyway).
    pub fn discard(&self) {
        self.buf.borrow_mut().clear();
    }

    pub fn is_closing(&self) -> bool {
        self.closing.get()
    }

    /// Waits until there is something to write, then swaps it into `spare`.
    /// Resolves to false once closing with nothing left.
    pub fn take_into<'a>(&'a self, spare: &'a mut Vec<u8>) -> impl Future<Output = bool> + 'a {
        std::future::poll_fn(move |cx| {
            let mut b = self.buf.borrow_mut();
            if !b.is_empty() {
                std::mem::swap(&mut *b, spare);
                drop(b);
                self.in_flight.set(spare.len());
                return Poll::Ready(true);
            }
            if self.closing.get() {
                return Poll::Ready(false);
            }
            self.waker.set(Some(cx.waker().clone()));
            Poll::Pending
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames() {
        let o = Outbound::default();
        o.push_msg(b"foo", b"1", None, None, b"hi");
        o.push_msg(b"foo", b"2", Some(b"r"), Some(12), b"NATS/1.0\r\n\r\nhi");
        let got = String::from_utf8(o.buf.borrow().clone()).unwrap();
        assert_eq!(
            got,
            "MSG foo 1 2\r\nhi\r\nHMSG foo 2 r 12 14\r\nNATS/1.0\r\n\r\nhi\r\n"
        );
        o.close();
        o.push(b"x");
        assert_eq!(o.len(), got.len());
    }
}
