//! Bounds the slow password checks (bcrypt) under way, per client address
//! and in all. Each check costs tens of milliseconds of a shard's helper
//! thread: without a bound, a flood of CONNECTs from one address queues
//! real logins past their auth timeout. A login over the bound is refused
//! at once (`Authorization Violation`), never queued.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

/// Checks one address may have under way at once.
pub const PER_ADDRESS: u32 = 4;
/// Checks the whole server may have under way (or queued) at once.
pub const TOTAL: u32 = 256;

#[derive(Default)]
pub struct LoginGate {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    by_address: HashMap<IpAddr, u32>,
    total: u32,
}

/// A check under way; dropping it frees the slot.
pub struct Ticket<'a> {
    gate: &'a LoginGate,
    ip: IpAddr,
}

impl LoginGate {
    /// A slot for one check from `ip`, or `None` when its address or the
    /// server is at the bound.
    pub fn enter(&self, ip: IpAddr) -> Option<Ticket<'_>> {
        let mut s = self.state.lock().ok()?;
        let n = s.by_address.get(&ip).copied().unwrap_or(0);
        if n >= PER_ADDRESS || s.total >= TOTAL {
            return None;
        }
        s.by_address.insert(ip, n + 1);
        s.total += 1;
        Some(Ticket { gate: self, ip })
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        let Ok(mut s) = self.gate.state.lock() else {
            return;
        };
        s.total = s.total.saturating_sub(1);
        if let Some(n) = s.by_address.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                s.by_address.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_per_address_and_frees_on_drop() {
        let g = LoginGate::default();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let held: Vec<_> = (0..PER_ADDRESS).map(|_| g.enter(a).unwrap()).collect();
        assert!(g.enter(a).is_none(), "a fifth check from one address");
        assert!(g.enter(b).is_some(), "another address is not held up");
        drop(held);
        assert!(g.enter(a).is_some());
        assert!(g.state.lock().unwrap().by_address.is_empty());
    }
}
