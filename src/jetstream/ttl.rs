//! Per-message TTL (`allow_msg_ttl` and the `Nats-TTL` header): each
//! message with a TTL is deleted once it has lived that long. The due
//! times live in memory and are rebuilt from the headers at start-up;
//! one sleeping task per stream wakes at the earliest.

use std::collections::BTreeSet;
use std::rc::Rc;

use super::errors::ApiError;

pub const HEADER: &str = "Nats-TTL";

/// A `Nats-TTL` value: a Go duration ("10s", "1h30m") or whole seconds,
/// at least one second, in ns.
pub fn parse(v: &str) -> Result<u64, ApiError> {
    let v = v.trim();
    let invalid = || ApiError::new_pub(400, 10165, "invalid per-message TTL");
    let ns = if let Ok(secs) = v.parse::<u64>() {
        secs.checked_mul(1_000_000_000).ok_or_else(invalid)?
    } else {
        go_duration(v).ok_or_else(invalid)?
    };
    if ns < 1_000_000_000 {
        return Err(invalid());
    }
    Ok(ns)
}

/// A Go duration with one or more units ("1h30m", "2.5s", "500ms").
fn go_duration(s: &str) -> Option<u64> {
    let mut total = 0f64;
    let mut rest = s;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let num_end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
        let (num, tail) = rest.split_at(num_end);
        let unit_end = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_end);
        let n: f64 = num.parse().ok()?;
        let mult = match unit {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        total += n * mult;
        rest = tail;
    }
    (total.is_finite() && total >= 0.0).then_some(total as u64)
}

/// Due times of a stream's messages with a TTL.
#[derive(Default)]
pub struct Due {
    set: BTreeSet<(u64, u64)>,
    /// The wake-up armed now: (due ns, generation).
    pub armed: Option<(u64, u64)>,
}

impl Due {
    pub fn add(&mut self, at: u64, seq: u64) {
        self.set.insert((at, seq));
    }

    pub fn set_first(&self) -> Option<&(u64, u64)> {
        self.set.first()
    }

    pub fn earliest(&self) -> Option<u64> {
        self.set.first().map(|(t, _)| *t)
    }

    /// Takes what is due at `now` (ns).
    pub fn take_due(&mut self, now: u64) -> Vec<u64> {
        let mut out = Vec::new();
        while let Some(&(t, seq)) = self.set.first() {
            if t > now {
                break;
            }
            self.set.pop_first();
            out.push(seq);
        }
        out
    }
}

impl crate::jetstream::stream::Stream {
    /// Rebuilds the TTL due times from the stored headers.
    pub(crate) fn load_ttls(self: &Rc<Self>) {
        if !self.meta.borrow().config.allow_msg_ttl {
            return;
        }
        let scan = self.log.scan(
            broker_edge_storage::Start::Seq(1),
            broker_edge_storage::Filter::all(),
        );
        for m in scan.flatten() {
            if let Some(ns) =
                crate::jetstream::headers::get(&m.headers, HEADER).and_then(|v| parse(v).ok())
            {
                self.expire_at(m.ts + ns, m.seq);
            }
        }
    }

    /// Deletes `seq` at `at` (ns, wall clock).
    pub(crate) fn expire_at(self: &Rc<Self>, at: u64, seq: u64) {
        let mut d = self.ttl.borrow_mut();
        d.add(at, seq);
        let earliest = d.earliest().unwrap_or(at);
        if d.armed.is_some_and(|(t, _)| t <= earliest) {
            return;
        }
        let gen = fastrand::u64(..);
        d.armed = Some((earliest, gen));
        drop(d);
        let w = Rc::downgrade(self);
        crate::runtime::spawn_local(async move {
            let wait = earliest.saturating_sub(crate::jetstream::config::now_ns());
            crate::runtime::sleep(std::time::Duration::from_nanos(wait)).await;
            let Some(me) = w.upgrade() else { return };
            if me.ttl.borrow().armed.map(|(_, g)| g) != Some(gen) {
                return;
            }
            me.ttl.borrow_mut().armed = None;
            let due = me
                .ttl
                .borrow_mut()
                .take_due(crate::jetstream::config::now_ns());
            for seq in due {
                let _ = me.log.delete(seq, false).await;
            }
            me.report_usage();
            // Re-arms for what is left (adding an entry that is already
            // there changes nothing).
            let next = me.ttl.borrow().set_first().copied();
            if let Some((at, seq)) = next {
                me.expire_at(at, seq);
            }
        })
        .detach();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_values() {
        assert_eq!(parse("5").unwrap(), 5_000_000_000);
        assert_eq!(parse("2s").unwrap(), 2_000_000_000);
        assert_eq!(parse("1h30m").unwrap(), 5_400_000_000_000);
        assert_eq!(parse("500ms").unwrap_err().err_code, 10165);
        assert_eq!(parse("never").unwrap_err().err_code, 10165);
        assert_eq!(parse("x").unwrap_err().err_code, 10165);
    }

    #[test]
    fn due_in_order() {
        let mut d = Due::default();
        d.add(30, 3);
        d.add(10, 1);
        d.add(20, 2);
        assert_eq!(d.earliest(), Some(10));
        assert_eq!(d.take_due(20), vec![1, 2]);
        assert_eq!(d.take_due(25), Vec::<u64>::new());
    }
}
