#![allow(dead_code)]
use broker_edge_storage::{Durability, Limits, LogConfig, WriteMode};

pub use broker_edge_storage::testing::run;

/// The model tests' log: small segments; direct mode with an interval
/// sync, or buffered writes never synced.
pub fn model_cfg(segment_size: u64, limits: &Limits, direct: bool) -> LogConfig {
    LogConfig {
        segment_size,
        durability: if direct {
            Durability::Interval(std::time::Duration::from_millis(20))
        } else {
            Durability::Never
        },
        write_mode: if direct {
            WriteMode::Direct
        } else {
            WriteMode::Buffered
        },
        limits: limits.clone(),
        compact_below: 0.6,
        // Small, so reads mix the recent-writes cache and the mapping and
        // the cache evicts.
        recent_bytes: 1024,
        ..Default::default()
    }
}

pub fn small_cfg(seg: u64) -> LogConfig {
    LogConfig {
        segment_size: seg,
        durability: Durability::Always,
        ..Default::default()
    }
}

pub fn payload(seq: u64, len: usize) -> Vec<u8> {
    (0..len).map(|i| (seq as usize * 31 + i) as u8).collect()
}

/// The log's one segment file.
pub fn only_segment(dir: &std::path::Path) -> std::path::PathBuf {
    let mut segs: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    assert_eq!(segs.len(), 1, "{segs:?}");
    segs.pop().unwrap()
}

/// Files in `dir` with extension `ext`, sorted (segments sort by sequence).
pub fn files_with_ext(dir: &std::path::Path, ext: &str) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == ext))
        .collect();
    v.sort();
    v
}
