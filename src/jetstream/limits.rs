//! JetStream resource limits: the server's `max_memory_store` /
//! `max_file_store` and each account's `jetstream { max_mem, max_file,
//! max_streams, max_consumers }` (config or account JWT; max_consumers
//! caps each stream's consumers, as the reference applies it). Usage is kept per shard and
//! account in atomics that each shard writes for its own streams, so a
//! publish checks the whole server without asking anyone.

use std::sync::atomic::{AtomicU64, Ordering};

use super::config::StorageType;
use crate::options::AccountJetStream;

/// An account's limits (`None`: unlimited).
#[derive(Debug, Clone, Copy, Default)]
pub struct AccountLimits {
    pub max_memory: Option<u64>,
    pub max_store: Option<u64>,
    pub max_streams: Option<u64>,
    pub max_consumers: Option<u64>,
}

impl AccountLimits {
    pub fn from(js: &AccountJetStream) -> AccountLimits {
        let pos = |v: &Option<i64>| v.filter(|n| *n >= 0).map(|n| n as u64);
        match js {
            AccountJetStream::Limits {
                max_memory,
                max_store,
                max_streams,
                max_consumers,
            } => AccountLimits {
                max_memory: pos(max_memory),
                max_store: pos(max_store),
                max_streams: pos(max_streams),
                max_consumers: pos(max_consumers),
            },
            _ => AccountLimits::default(),
        }
    }

    fn max(&self, t: StorageType) -> Option<u64> {
        match t {
            StorageType::Memory => self.max_memory,
            StorageType::File => self.max_store,
        }
    }
}

/// Bytes stored, by shard, account and storage type.
pub struct Usage {
    cells: Vec<AtomicU64>,
    accounts: usize,
}

fn slot(t: StorageType) -> usize {
    match t {
        StorageType::Memory => 0,
        StorageType::File => 1,
    }
}

impl Usage {
    pub fn new(shards: usize, accounts: usize) -> Usage {
        Usage {
            cells: (0..shards * accounts * 2)
                .map(|_| AtomicU64::new(0))
                .collect(),
            accounts,
        }
    }

    fn at(&self, shard: usize, acc: u32, t: StorageType) -> Option<&AtomicU64> {
        self.cells
            .get((shard * self.accounts + acc as usize) * 2 + slot(t))
    }

    /// Sets what `shard` holds for `acc` (only that shard writes it).
    pub fn set(&self, shard: usize, acc: u32, t: StorageType, bytes: u64) {
        if let Some(c) = self.at(shard, acc, t) {
            c.store(bytes, Ordering::Relaxed);
        }
    }

    /// Adds `delta` to what `shard` holds for `acc` (only that shard
    /// writes its cells, so load and store do).
    pub fn add(&self, shard: usize, acc: u32, t: StorageType, delta: i64) {
        if let Some(c) = self.at(shard, acc, t) {
            let v = c.load(Ordering::Relaxed) as i64 + delta;
            c.store(v.max(0) as u64, Ordering::Relaxed);
        }
    }

    /// Over every shard: one account's, or (`None`) everyone's bytes.
    pub fn total(&self, acc: Option<u32>, t: StorageType) -> u64 {
        let shards = self.cells.len() / (self.accounts * 2).max(1);
        let mut n = 0;
        for s in 0..shards {
            for a in 0..self.accounts as u32 {
                if acc.is_some_and(|x| x != a) {
                    continue;
                }
                n += self.at(s, a, t).map_or(0, |c| c.load(Ordering::Relaxed));
            }
        }
        n
    }
}

/// Which limit a publish would pass.
#[derive(Debug, PartialEq, Eq)]
pub enum Exceeded {
    Server,
    Account,
}

/// Checks the limits before a message of `t` storage is stored.
pub fn check_publish(cfg: &super::Config, acc: u32, t: StorageType) -> Result<(), Exceeded> {
    let server_max = match t {
        StorageType::Memory => cfg.max_memory,
        StorageType::File => cfg.max_store,
    };
    if server_max > 0 && cfg.usage.total(None, t) >= server_max as u64 {
        return Err(Exceeded::Server);
    }
    if let Some(max) = cfg.account_limits.get(acc as usize).and_then(|l| l.max(t)) {
        if cfg.usage.total(Some(acc), t) >= max {
            return Err(Exceeded::Account);
        }
    }
    Ok(())
}

/// Whether a stream reserving `reserve` bytes (its max_bytes) fits next to
/// the reservations `others` already made, under the server and account
/// limits of its storage type.
pub fn fits(
    cfg: &super::Config,
    acc: u32,
    t: StorageType,
    reserve: u64,
    others: (u64, u64),
) -> bool {
    if reserve == 0 {
        return true;
    }
    let server_max = match t {
        StorageType::Memory => cfg.max_memory,
        StorageType::File => cfg.max_store,
    };
    if server_max > 0 && others.0 + reserve > server_max as u64 {
        return false;
    }
    match cfg.account_limits.get(acc as usize).and_then(|l| l.max(t)) {
        Some(max) => others.1 + reserve <= max,
        None => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_sums_over_shards() {
        let u = Usage::new(2, 3);
        u.set(0, 1, StorageType::File, 10);
        u.set(1, 1, StorageType::File, 5);
        u.set(1, 2, StorageType::Memory, 7);
        assert_eq!(u.total(Some(1), StorageType::File), 15);
        assert_eq!(u.total(None, StorageType::File), 15);
        assert_eq!(u.total(None, StorageType::Memory), 7);
        assert_eq!(u.total(Some(0), StorageType::File), 0);
    }
}
