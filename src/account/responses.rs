//! Replies to imported services. A request that crosses into the exporting
//! account through a service import gets a reply subject of its own there,
//! `_R_.<token>` with a random token, mapped back to the requester's reply
//! in the importing account. The mapping holds for one response (the
//! default, `singleton`) or, for `stream` and `chunked` exports, until the
//! export's response threshold passes without a response. Only the
//! exporting account can answer, and only through a live token: a client
//! there cannot address another account by guessing.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;

/// How many responses one request may get (the export's `response_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseKind {
    Singleton,
    Stream,
    Chunked,
}

impl ResponseKind {
    /// From the configuration's spelling (`single`/`singleton`, `stream`,
    /// `chunked`); `None` for anything else.
    pub fn parse(s: &str) -> Option<ResponseKind> {
        match s.to_ascii_lowercase().as_str() {
            "" | "single" | "singleton" => Some(ResponseKind::Singleton),
            "stream" | "streamed" => Some(ResponseKind::Stream),
            "chunk" | "chunked" => Some(ResponseKind::Chunked),
            _ => None,
        }
    }
}

/// The reference's default response threshold.
pub const DEFAULT_THRESHOLD: Duration = Duration::from_secs(120);

/// Open requests past this many are refused a reply mapping (their
/// responses cannot come back), so a requester that never gets answers
/// cannot grow the table without bound.
const MAX_OPEN: usize = 1 << 20;

const PREFIX: &[u8] = b"_R_.";

struct Open {
    exporter: u32,
    importer: u32,
    reply: Bytes,
    kind: ResponseKind,
    threshold: Duration,
    expires: Instant,
}

#[derive(Default)]
struct Table {
    open: HashMap<u64, Open, ahash::RandomState>,
    /// Size at which expired entries are swept next (amortised).
    sweep_at: usize,
}

/// The open requests of every account, shared by all shards (a response
/// may be published on any shard).
#[derive(Default)]
pub struct Responses {
    table: Mutex<Table>,
}

impl Responses {
    /// Opens a mapping for a request from `importer` (reply `reply`) into
    /// `exporter`; returns the reply subject to use there, or `None` when
    /// too many requests are open.
    pub fn open(
        &self,
        exporter: u32,
        importer: u32,
        reply: &[u8],
        kind: ResponseKind,
        threshold: Duration,
    ) -> Option<Vec<u8>> {
        let now = Instant::now();
        let mut t = self.table.lock().ok()?;
        if t.open.len() >= t.sweep_at {
            t.open.retain(|_, o| o.expires > now);
            t.sweep_at = (t.open.len() * 2).max(1024);
        }
        if t.open.len() >= MAX_OPEN {
            return None;
        }
        let mut token: u64 = rand::random();
        while token == 0 || t.open.contains_key(&token) {
            token = rand::random();
        }
        t.open.insert(
            token,
            Open {
                exporter,
                importer,
                reply: Bytes::copy_from_slice(reply),
                kind,
                threshold,
                expires: now + threshold,
            },
        );
        drop(t);
        let mut subject = PREFIX.to_vec();
        subject.extend_from_slice(format!("{token:016x}").as_bytes());
        Some(subject)
    }

    /// Whether `subject` has the shape of a mapped reply subject.
    pub fn is_reply(subject: &[u8]) -> bool {
        subject.starts_with(PREFIX)
    }

    /// A response published in account `acc` on `subject`: the importing
    /// account and the reply it goes to, if `subject` is a live mapping of
    /// `acc`'s. A singleton mapping is used up; others live on for another
    /// threshold.
    pub fn route(&self, acc: u32, subject: &[u8]) -> Option<(u32, Bytes)> {
        let token = token_of(subject)?;
        let now = Instant::now();
        let mut t = self.table.lock().ok()?;
        let o = t.open.get_mut(&token)?;
        if o.exporter != acc {
            return None;
        }
        if o.expires <= now {
            t.open.remove(&token);
            return None;
        }
        let to = (o.importer, o.reply.clone());
        match o.kind {
            ResponseKind::Singleton => {
                t.open.remove(&token);
            }
            ResponseKind::Stream | ResponseKind::Chunked => o.expires = now + o.threshold,
        }
        Some(to)
    }

    /// Requests still waiting for a response (for tests and monitoring).
    pub fn len(&self) -> usize {
        self.table.lock().map(|t| t.open.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn token_of(subject: &[u8]) -> Option<u64> {
    let hex = subject.strip_prefix(PREFIX)?;
    if hex.len() != 16 {
        return None;
    }
    u64::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn singleton_answers_once_and_only_from_the_exporter() {
        let r = Responses::default();
        let s = r
            .open(
                1,
                2,
                b"_INBOX.a",
                ResponseKind::Singleton,
                DEFAULT_THRESHOLD,
            )
            .unwrap();
        assert!(Responses::is_reply(&s));
        assert_eq!(r.route(3, &s), None, "another account cannot answer");
        assert_eq!(r.route(1, &s), Some((2, Bytes::from_static(b"_INBOX.a"))));
        assert_eq!(r.route(1, &s), None, "used up");
        assert!(r.is_empty());
    }

    #[test]
    fn guessed_and_malformed_tokens_go_nowhere() {
        let r = Responses::default();
        let _ = r.open(1, 2, b"x", ResponseKind::Singleton, DEFAULT_THRESHOLD);
        for s in [
            &b"_R_.2.x"[..],
            b"_R_.0000000000000001",
            b"_R_.",
            b"_R_.zzzzzzzzzzzzzzzz",
        ] {
            assert_eq!(r.route(1, s), None, "{}", String::from_utf8_lossy(s));
        }
    }

    #[test]
    fn streams_live_until_the_threshold() {
        let r = Responses::default();
        let s = r
            .open(1, 2, b"in", ResponseKind::Stream, Duration::from_millis(30))
            .unwrap();
        assert!(r.route(1, &s).is_some());
        assert!(r.route(1, &s).is_some());
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(r.route(1, &s), None, "expired");
    }

    #[test]
    fn kinds_parse() {
        assert_eq!(ResponseKind::parse("single"), Some(ResponseKind::Singleton));
        assert_eq!(ResponseKind::parse("Stream"), Some(ResponseKind::Stream));
        assert_eq!(ResponseKind::parse("chunked"), Some(ResponseKind::Chunked));
        assert_eq!(ResponseKind::parse("many"), None);
    }
}
