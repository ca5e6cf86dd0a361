//! `disk-probe`: what the disk under a JetStream store can do, measured in
//! the same session as the publishes it is compared with.
//!
//! * the latency of one durable append: `pwrite` of 4 KiB at the end of a
//!   file + `fdatasync`, `--iters` times (after a few unrecorded ones) — the
//!   floor under a synchronous publish on a server that syncs every message;
//! * sequential write bandwidth: `--seq-size` in `--seq-block` writes with
//!   `O_DIRECT` where the filesystem takes it (else buffered writes and one
//!   `fdatasync` at the end, inside the timing) — the ceiling for large
//!   publishes.
//!
//! Both files live in `--dir` and are removed afterwards.

use crate::reqrep::new_hist;
use crate::stats::print_rows;
use crate::units::size_label;
use anyhow::{bail, Context, Result};
use serde::Serialize;
use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Instant;

const APPEND: usize = 4096;
const WARMUP: usize = 10;

#[derive(Debug, Clone, Serialize)]
pub struct DiskProbe {
    pub dir: String,
    /// Filesystem type (from statfs) and device (major:minor), to show the
    /// probe ran where the stores live.
    pub fs_type: String,
    pub device: String,
    pub append_bytes: usize,
    pub fdatasync_iters: usize,
    pub fdatasync_p50_us: f64,
    pub fdatasync_p90_us: f64,
    pub fdatasync_p99_us: f64,
    pub fdatasync_max_us: f64,
    pub fdatasync_mean_us: f64,
    pub seq_bytes: u64,
    pub seq_block: usize,
    /// "O_DIRECT" or "buffered+fdatasync".
    pub seq_mode: String,
    pub seq_secs: f64,
    /// 10^6 bytes per second, like the bench's MB/s.
    pub seq_mb_per_s: f64,
    pub seq_mib_per_s: f64,
}

/// Removes the probe's file however the probe ends.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

pub fn run(dir: &Path, iters: usize, seq_bytes: u64, seq_block: usize) -> Result<DiskProbe> {
    let meta = std::fs::metadata(dir).with_context(|| format!("--dir {}", dir.display()))?;
    if !meta.is_dir() {
        bail!("--dir {} is not a directory", dir.display());
    }
    let dev = meta.dev();
    let device = format!("{}:{}", libc::major(dev), libc::minor(dev));
    let pid = std::process::id();

    // Durable appends.
    let scratch = Scratch(dir.join(format!(".bench-disk-probe-{pid}.sync")));
    let f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&scratch.0)
        .with_context(|| format!("creating {}", scratch.0.display()))?;
    let block = vec![0x5au8; APPEND];
    let mut hist = new_hist();
    let iters = iters.max(1);
    for i in 0..WARMUP + iters {
        let t0 = Instant::now();
        f.write_all_at(&block, (i * APPEND) as u64)
            .context("pwrite")?;
        f.sync_data().context("fdatasync")?;
        if i >= WARMUP {
            let ns = t0.elapsed().as_nanos().min(60_000_000_000) as u64;
            let _ = hist.record(ns.max(1));
        }
    }
    drop(f);
    drop(scratch);

    // Sequential bandwidth.
    let scratch = Scratch(dir.join(format!(".bench-disk-probe-{pid}.seq")));
    let seq_block = seq_block.max(APPEND) / APPEND * APPEND;
    let blocks = seq_bytes.div_ceil(seq_block as u64).max(1);
    let (seq_secs, seq_mode) = match sequential(&scratch.0, seq_block, blocks, true)? {
        Some(s) => (s, "O_DIRECT"),
        None => (
            sequential(&scratch.0, seq_block, blocks, false)?.unwrap_or(f64::NAN),
            "buffered+fdatasync",
        ),
    };
    drop(scratch);
    let total = blocks * seq_block as u64;
    let us = |v: u64| v as f64 / 1e3;
    Ok(DiskProbe {
        dir: dir.display().to_string(),
        fs_type: fs_type(dir),
        device,
        append_bytes: APPEND,
        fdatasync_iters: iters,
        fdatasync_p50_us: us(hist.value_at_quantile(0.50)),
        fdatasync_p90_us: us(hist.value_at_quantile(0.90)),
        fdatasync_p99_us: us(hist.value_at_quantile(0.99)),
        fdatasync_max_us: us(hist.max()),
        fdatasync_mean_us: hist.mean() / 1e3,
        seq_bytes: total,
        seq_block,
        seq_mode: seq_mode.into(),
        seq_secs,
        seq_mb_per_s: total as f64 / seq_secs / 1e6,
        seq_mib_per_s: total as f64 / seq_secs / (1 << 20) as f64,
    })
}

/// Writes `blocks` × `block` bytes and syncs; seconds taken, or None when
/// `direct` was asked for and the filesystem refuses O_DIRECT.
fn sequential(path: &Path, block: usize, blocks: u64, direct: bool) -> Result<Option<f64>> {
    let mut o = OpenOptions::new();
    o.write(true).create(true).truncate(true);
    if direct {
        o.custom_flags(libc::O_DIRECT);
    }
    let mut f: File = match o.open(path) {
        Ok(f) => f,
        Err(e) if direct && e.kind() == ErrorKind::InvalidInput => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("creating {}", path.display())),
    };
    // O_DIRECT wants the buffer aligned to the logical block; 4 KiB covers it.
    let mut raw = vec![0xa5u8; block + APPEND];
    let off = raw.as_ptr().align_offset(APPEND);
    let buf = &mut raw[off..off + block];
    let t0 = Instant::now();
    for _ in 0..blocks {
        match f.write_all(buf) {
            Ok(()) => {}
            Err(e) if direct && e.kind() == ErrorKind::InvalidInput => return Ok(None),
            Err(e) => return Err(e).context("sequential write"),
        }
    }
    f.sync_data().context("fdatasync")?;
    Ok(Some(t0.elapsed().as_secs_f64()))
}

/// The filesystem's name from statfs's magic number.
fn fs_type(dir: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return "?".into();
    };
    // SAFETY: statfs writes into the zeroed struct we own; the path is a
    // valid NUL-terminated string for the duration of the call.
    let mut s: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statfs(c.as_ptr(), &mut s) } != 0 {
        return "?".into();
    }
    fs_name(s.f_type as u64)
}

pub fn fs_name(magic: u64) -> String {
    match magic {
        0xEF53 => "ext4".into(),
        0x5846_5342 => "xfs".into(),
        0x9123_683E => "btrfs".into(),
        0x0102_1994 => "tmpfs".into(),
        0x794C_7630 => "overlayfs".into(),
        0x2FC1_2FC1 => "zfs".into(),
        0x6969 => "nfs".into(),
        0x6573_5546 => "fuse".into(),
        0xF2F5_2010 => "f2fs".into(),
        other => format!("0x{other:x}"),
    }
}

pub fn print(p: &DiskProbe) {
    println!(
        "disk probe in {} ({}, device {})",
        p.dir, p.fs_type, p.device
    );
    let rows = vec![
        vec![
            "measure".to_string(),
            "n".into(),
            "p50 µs".into(),
            "p90 µs".into(),
            "p99 µs".into(),
            "max µs".into(),
            "mean µs".into(),
        ],
        vec![
            format!("pwrite {} append + fdatasync", size_label(p.append_bytes)),
            p.fdatasync_iters.to_string(),
            format!("{:.1}", p.fdatasync_p50_us),
            format!("{:.1}", p.fdatasync_p90_us),
            format!("{:.1}", p.fdatasync_p99_us),
            format!("{:.1}", p.fdatasync_max_us),
            format!("{:.1}", p.fdatasync_mean_us),
        ],
    ];
    print_rows(&rows);
    println!(
        "sequential write: {} MiB in {} writes ({}): {:.2} s, {:.0} MB/s ({:.0} MiB/s)",
        p.seq_bytes >> 20,
        size_label(p.seq_block),
        p.seq_mode,
        p.seq_secs,
        p.seq_mb_per_s,
        p.seq_mib_per_s
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_probe_runs_and_cleans_up() {
        let dir = std::env::temp_dir().join(format!("bench-probe-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = run(&dir, 5, 1 << 20, 256 << 10).unwrap();
        assert_eq!(p.fdatasync_iters, 5);
        assert!(p.fdatasync_p50_us > 0.0 && p.fdatasync_p99_us >= p.fdatasync_p50_us);
        assert_eq!(p.seq_bytes, 1 << 20);
        assert!(p.seq_mb_per_s > 0.0);
        assert_eq!(
            std::fs::read_dir(&dir).unwrap().count(),
            0,
            "scratch files left"
        );
        std::fs::remove_dir(&dir).unwrap();
        assert!(run(&dir, 5, 1 << 20, 1 << 20).is_err());
    }

    #[test]
    fn fs_names() {
        assert_eq!(fs_name(0xEF53), "ext4");
        assert_eq!(fs_name(0x01021994), "tmpfs");
        assert_eq!(fs_name(0x1234), "0x1234");
    }
}
