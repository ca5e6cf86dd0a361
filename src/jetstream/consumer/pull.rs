//! Pull requests waiting on a consumer (`$JS.API.CONSUMER.MSG.NEXT`):
//! their parsing, limits and the status messages that end them.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::Deserialize;

use super::config::ConsumerConfig;

/// A request as clients send it: a bare batch size, or JSON.
#[derive(Debug, Default, Deserialize)]
pub struct NextRequest {
    #[serde(default)]
    pub batch: i64,
    /// ns
    #[serde(default)]
    pub expires: i64,
    #[serde(default)]
    pub no_wait: bool,
    #[serde(default)]
    pub max_bytes: i64,
    /// ns
    #[serde(default)]
    pub idle_heartbeat: i64,
}

impl NextRequest {
    pub fn parse(body: &[u8]) -> Result<NextRequest, String> {
        let b = body.trim_ascii();
        if b.is_empty() {
            return Ok(NextRequest {
                batch: 1,
                ..Default::default()
            });
        }
        if b[0] == b'{' {
            let mut r: NextRequest = serde_json::from_slice(b).map_err(|e| e.to_string())?;
            if r.batch <= 0 {
                r.batch = 1;
            }
            return Ok(r);
        }
        let n: i64 = std::str::from_utf8(b)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| "bad batch".to_string())?;
        Ok(NextRequest {
            batch: n.max(1),
            ..Default::default()
        })
    }
}

/// A request waiting for messages.
pub struct Waiting {
    pub reply: Bytes,
    pub left: u64,
    /// Bytes left (0: no limit).
    pub bytes_left: u64,
    pub max_bytes: bool,
    pub delivered: u64,
    pub expires: Option<Instant>,
    pub no_wait: bool,
    /// The requester's interest was seen in this delivery pass.
    pub checked: bool,
    pub heartbeat: Option<Duration>,
    pub next_heartbeat: Option<Instant>,
}

/// A 4xx/1xx status message to a request's reply subject.
pub fn status(code: u16, text: &str, pending: Option<(u64, u64)>) -> Vec<u8> {
    let mut h = format!("NATS/1.0 {code} {text}\r\n");
    if let Some((msgs, bytes)) = pending {
        h.push_str(&format!(
            "Nats-Pending-Messages: {msgs}\r\nNats-Pending-Bytes: {bytes}\r\n"
        ));
    }
    h.push_str("\r\n");
    h.into_bytes()
}

/// The error status for a request this consumer will not take, if any.
pub fn refuse(cfg: &ConsumerConfig, r: &NextRequest, waiting: usize) -> Option<String> {
    if cfg.max_batch > 0 && r.batch > cfg.max_batch {
        return Some(format!("Exceeded MaxRequestBatch of {}", cfg.max_batch));
    }
    if cfg.max_expires > 0 && r.expires > cfg.max_expires {
        return Some(format!(
            "Exceeded MaxRequestExpires of {}",
            go_duration(cfg.max_expires)
        ));
    }
    if cfg.max_bytes > 0 && r.max_bytes > cfg.max_bytes {
        return Some(format!("Exceeded MaxRequestMaxBytes of {}", cfg.max_bytes));
    }
    if cfg.max_waiting > 0 && waiting as i64 >= cfg.max_waiting {
        return Some("Exceeded MaxWaiting".into());
    }
    if r.idle_heartbeat > 0 && (r.expires <= 0 || r.idle_heartbeat.saturating_mul(2) > r.expires) {
        return Some("Bad Request - heartbeat value too large".into());
    }
    None
}

/// A duration as Go's `time.Duration.String` prints it (common cases).
pub fn go_duration(ns: i64) -> String {
    let d = Duration::from_nanos(ns.max(0) as u64);
    let s = d.as_secs_f64();
    if ns % 1_000_000_000 == 0 {
        let secs = ns / 1_000_000_000;
        let (h, m, sec) = (secs / 3600, (secs % 3600) / 60, secs % 60);
        if h > 0 {
            return format!("{h}h{m}m{sec}s");
        }
        if m > 0 {
            return format!("{m}m{sec}s");
        }
        return format!("{sec}s");
    }
    if ns < 1_000_000_000 && ns % 1_000_000 == 0 {
        return format!("{}ms", ns / 1_000_000);
    }
    format!("{s}s")
}

#[derive(Default)]
pub struct Queue {
    pub q: VecDeque<Waiting>,
}

impl Queue {
    pub fn len(&self) -> usize {
        self.q.len()
    }

    pub fn is_empty(&self) -> bool {
        self.q.is_empty()
    }

    pub fn push(&mut self, r: &NextRequest, reply: Bytes, now: Instant) -> &Waiting {
        let hb = (r.idle_heartbeat > 0).then(|| Duration::from_nanos(r.idle_heartbeat as u64));
        self.q.push_back(Waiting {
            reply,
            left: r.batch.max(1) as u64,
            bytes_left: r.max_bytes.max(0) as u64,
            max_bytes: r.max_bytes > 0,
            delivered: 0,
            expires: (r.expires > 0).then(|| now + Duration::from_nanos(r.expires as u64)),
            no_wait: r.no_wait,
            checked: false,
            heartbeat: hb,
            next_heartbeat: hb.map(|d| now + d),
        });
        self.q.back().expect("just pushed")
    }

    /// Earliest time something here needs attention.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.q
            .iter()
            .flat_map(|w| [w.expires, w.next_heartbeat])
            .flatten()
            .min()
    }
}

impl super::Consumer {
    /// `$JS.API.CONSUMER.MSG.NEXT.<stream>.<consumer>`: queue the request
    /// (or refuse it with a 4xx status) and try to fill it.
    pub(crate) fn on_next(&self, m: &crate::shard::Msg) {
        let Some(reply) = m.reply else { return };
        let reply = Bytes::copy_from_slice(reply);
        let o = crate::shard::sink::Owned::of(m);
        self.pull_request(reply, &o.payload);
    }

    pub(crate) fn pull_request(&self, reply: Bytes, body: &[u8]) {
        let Some(shard) = self.shard.upgrade() else {
            return;
        };
        if !self.with_cfg(|c| c.is_pull()) {
            let st = status(409, "Consumer is push based", None);
            shard.publish_internal(self.acc, &reply, None, Some(&st), b"");
            return;
        }
        let now = Instant::now();
        self.last_active.set(now);
        let r = match NextRequest::parse(body) {
            Ok(r) => r,
            Err(_) => {
                let st = status(400, "Bad Request", None);
                shard.publish_internal(self.acc, &reply, None, Some(&st), b"");
                return;
            }
        };
        let refusal = self.with_cfg(|c| refuse(c, &r, self.waiting.borrow().len()));
        if let Some(text) = refusal {
            let st = if text.starts_with("Bad Request") {
                status(400, &text, None)
            } else {
                status(409, &text, None)
            };
            shard.publish_internal(self.acc, &reply, None, Some(&st), b"");
            return;
        }
        let due = {
            let mut q = self.waiting.borrow_mut();
            let w = q.push(&r, reply, now);
            [w.expires, w.next_heartbeat].into_iter().flatten().min()
        };
        self.kick();
        match due {
            Some(at) => self.arm(at),
            None => self.arm_if_idle(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_forms() {
        assert_eq!(NextRequest::parse(b"").unwrap().batch, 1);
        assert_eq!(NextRequest::parse(b" 5 ").unwrap().batch, 5);
        let r = NextRequest::parse(br#"{"batch":3,"expires":1000000000,"no_wait":true}"#).unwrap();
        assert_eq!((r.batch, r.expires, r.no_wait), (3, 1_000_000_000, true));
        assert!(NextRequest::parse(b"x").is_err());
        assert!(NextRequest::parse(b"{").is_err());
    }

    #[test]
    fn durations_as_go_prints_them() {
        assert_eq!(go_duration(30_000_000_000), "30s");
        assert_eq!(go_duration(90_000_000_000), "1m30s");
        assert_eq!(go_duration(500_000_000), "500ms");
    }
}
