//! `Nats-Msg-Id` de-duplication within a stream's duplicate window.
//! An id is claimed when its message arrives (so a duplicate that arrives
//! while the first is still being written is recognised) and gets its
//! sequence once the write is done.

use std::collections::{HashMap, VecDeque};

use futures_channel::oneshot;

enum Entry {
    /// Being written; these duplicates wait for its sequence.
    Pending(Vec<oneshot::Sender<Option<u64>>>),
    Stored(u64),
}

#[derive(Default)]
pub struct Dedup {
    ids: HashMap<String, (Entry, u64)>,
    /// (arrival ns, id) oldest first, for expiry.
    order: VecDeque<(u64, String)>,
}

/// What a new message's id means.
pub enum Check {
    /// Not seen in the window: the id is now claimed for this message.
    New,
    /// A duplicate of a stored message.
    Duplicate(u64),
    /// A duplicate of a message still being written: its sequence (or
    /// `None` if that write failed) arrives here.
    Wait(oneshot::Receiver<Option<u64>>),
}

impl Dedup {
    pub fn check(&mut self, id: &str, now: u64, window_ns: u64) -> Check {
        self.expire(now, window_ns);
        match self.ids.get_mut(id) {
            Some((Entry::Stored(seq), _)) => Check::Duplicate(*seq),
            Some((Entry::Pending(w), _)) => {
                let (tx, rx) = oneshot::channel();
                w.push(tx);
                Check::Wait(rx)
            }
            None => {
                self.ids
                    .insert(id.to_string(), (Entry::Pending(Vec::new()), now));
                self.order.push_back((now, id.to_string()));
                Check::New
            }
        }
    }

    /// The claimed id's message was stored as `seq` (or failed: `None`).
    pub fn resolve(&mut self, id: &str, seq: Option<u64>) {
        let Some((entry, _)) = self.ids.get_mut(id) else {
            return;
        };
        if let Entry::Pending(waiters) = entry {
            for w in waiters.drain(..) {
                let _ = w.send(seq);
            }
        }
        match seq {
            Some(s) => *entry = Entry::Stored(s),
            None => {
                self.ids.remove(id);
            }
        }
    }

    /// Records an id found in the log at start-up.
    pub fn remember(&mut self, id: &str, seq: u64, ts: u64) {
        self.ids.insert(id.to_string(), (Entry::Stored(seq), ts));
        self.order.push_back((ts, id.to_string()));
    }

    fn expire(&mut self, now: u64, window_ns: u64) {
        while let Some((t, _)) = self.order.front() {
            if now.saturating_sub(*t) <= window_ns {
                break;
            }
            let (t, id) = self.order.pop_front().unwrap_or_default();
            // Only drop the entry this queue slot was made for.
            if matches!(self.ids.get(&id), Some((Entry::Stored(_), at)) if *at == t) {
                self.ids.remove(&id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_and_pending() {
        let mut d = Dedup::default();
        assert!(matches!(d.check("a", 0, 10), Check::New));
        let Check::Wait(_rx) = d.check("a", 1, 10) else {
            panic!("pending duplicate not recognised");
        };
        d.resolve("a", Some(7));
        assert!(matches!(d.check("a", 5, 10), Check::Duplicate(7)));
        // Outside the window the id is new again.
        assert!(matches!(d.check("a", 20, 10), Check::New));
    }

    #[test]
    fn failed_write_frees_the_id() {
        let mut d = Dedup::default();
        assert!(matches!(d.check("x", 0, 10), Check::New));
        d.resolve("x", None);
        assert!(matches!(d.check("x", 1, 10), Check::New));
    }
}
