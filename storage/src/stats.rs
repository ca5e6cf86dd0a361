//! Counters of the storage work done on this thread: every log of a shard
//! lives on the shard's thread, so these are the shard's. Plain cells, no
//! atomics; [`thread_stats`] reads them (the server asks each shard).

use std::cell::RefCell;
use std::time::Duration;

/// Upper bounds (seconds) of the buckets of [`StorageStats::durable`]:
/// from a fast NVMe flush to a stalled device.
pub const DURABLE_BUCKETS: [f64; 12] = [
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
];

/// A latency histogram with the [`DURABLE_BUCKETS`] bounds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Histogram {
    /// Observations at or below each bound (not cumulative); the last
    /// element counts those above every bound.
    pub counts: [u64; DURABLE_BUCKETS.len() + 1],
    pub sum_seconds: f64,
}

impl Histogram {
    fn observe(&mut self, d: Duration) {
        let s = d.as_secs_f64();
        let i = DURABLE_BUCKETS
            .iter()
            .position(|b| s <= *b)
            .unwrap_or(DURABLE_BUCKETS.len());
        self.counts[i] += 1;
        self.sum_seconds += s;
    }

    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct StorageStats {
    /// Group commits written (each one write, and one sync under
    /// `always`).
    pub groups: u64,
    /// Records those groups carried (messages, deletes, purges).
    pub records: u64,
    /// Bytes written to log files (segments, indexes, compactions).
    pub bytes_written: u64,
    /// How long making writes durable took: an O_DSYNC group write, or an
    /// fdatasync.
    pub durable: Histogram,
}

thread_local! {
    static STATS: RefCell<StorageStats> = RefCell::new(StorageStats::default());
}

/// This thread's counters since it started.
pub fn thread_stats() -> StorageStats {
    STATS.with(|s| s.borrow().clone())
}

pub(crate) fn note_group(records: usize) {
    STATS.with(|s| {
        let mut s = s.borrow_mut();
        s.groups += 1;
        s.records += records as u64;
    });
}

pub(crate) fn note_written(bytes: usize) {
    STATS.with(|s| s.borrow_mut().bytes_written += bytes as u64);
}

pub(crate) fn note_durable(d: Duration) {
    STATS.with(|s| s.borrow_mut().durable.observe(d));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_their_bucket() {
        let mut h = Histogram::default();
        h.observe(Duration::from_micros(50));
        h.observe(Duration::from_micros(300));
        h.observe(Duration::from_secs(2));
        assert_eq!(h.counts[0], 1);
        assert_eq!(h.counts[3], 1);
        assert_eq!(h.counts[DURABLE_BUCKETS.len()], 1);
        assert_eq!(h.count(), 3);
        assert!((h.sum_seconds - 2.00035).abs() < 1e-9);
    }
}
