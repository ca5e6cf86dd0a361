//! Log configuration: durability policy, segment sizing and retention limits.

use std::time::Duration;

/// When an append's future resolves, relative to the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// Resolve after the record's group commit has been `fdatasync`ed:
    /// survives process crash and power loss.
    #[default]
    Always,
    /// Resolve after the write reached the page cache; `fdatasync` at least
    /// every interval: survives process crash, power loss may lose up to the
    /// interval.
    Interval(Duration),
    /// Resolve after the write reached the page cache; the kernel flushes
    /// when it likes: survives process crash only.
    Never,
}

/// What to do when a limit would be exceeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Discard {
    /// Remove the oldest messages to make room.
    #[default]
    Old,
    /// Refuse the new message with `Error::LimitReached`.
    New,
}

/// Retention limits; `None` means unlimited.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Limits {
    pub max_msgs: Option<u64>,
    pub max_bytes: Option<u64>,
    pub max_age: Option<Duration>,
    pub max_msgs_per_subject: Option<u64>,
    /// Largest record body (subject + headers + payload) accepted.
    pub max_msg_size: Option<usize>,
    pub discard: Discard,
    /// With `Discard::New`, also refuse a message whose subject is at its
    /// per-subject limit (otherwise that limit always drops the oldest).
    pub discard_new_per_subject: bool,
}

#[derive(Debug, Clone)]
pub struct LogConfig {
    pub durability: Durability,
    /// A segment seals once it reaches this many bytes.
    pub segment_size: u64,
    /// ... or once its first record is this old.
    pub segment_max_age: Option<Duration>,
    pub limits: Limits,
    /// Compaction rewrites a sealed segment whose live share of bytes falls
    /// below this fraction.
    pub compact_below: f64,
    /// First sequence of a brand-new log.
    pub first_seq: u64,
    /// O_DIRECT (default; the page cache where the filesystem refuses it)
    /// or buffered segment writes. docs/architecture.md says why.
    pub write_mode: crate::io::WriteMode,
    /// `Direct` mode: bytes of the latest written groups the active segment
    /// keeps in memory for reads (`recent.rs`); 0 turns the cache off.
    pub recent_bytes: usize,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            durability: Durability::Always,
            segment_size: 32 << 20,
            segment_max_age: None,
            limits: Limits::default(),
            compact_below: 0.5,
            first_seq: 1,
            write_mode: crate::io::WriteMode::Direct,
            recent_bytes: 4 << 20,
        }
    }
}
