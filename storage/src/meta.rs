//! The log's identity and durable high-water mark: one small file,
//! `log-<salt:016x>.meta` (layout in `storage/FORMAT.md`).
//!
//! The salt is part of the file's **name**: it is as durable as the
//! directory entry, made once when the log is created, and no damage to
//! file contents can lose it (without it no record validates). The content
//! is two 512-byte slots, each checksummed, written alternately: the newest
//! valid one holds the high-water mark, the end of the log as it was when
//! its last delete or purge (tombstone or floor record) was known durable.
//! Recovery compares the log with it, which catches what looks like a
//! clean end but is not: a segment cut exactly at a record boundary.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

pub(crate) const META_MAGIC: u32 = u32::from_le_bytes(*b"BELM");
pub(crate) const META_VERSION: u8 = 2;
/// Bytes between slot starts (one sector each, so a torn write of one
/// slot cannot damage the other).
pub(crate) const SLOT: usize = 512;
/// Bytes of a slot that carry data.
const SLOT_USED: usize = 64;

/// Durable high-water mark: the log's last segment had base `base` (or a
/// later one) and, while it had that base, held at least `len` bytes of
/// records; every sequence below `floor` was durably deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Hwm {
    pub base: u64,
    pub len: u64,
    pub floor: u64,
}

impl Hwm {
    /// The later of two marks (marks only ever move forward).
    pub fn max(self, o: Hwm) -> Hwm {
        let (base, len) = (self.base, self.len).max((o.base, o.len));
        Hwm {
            base,
            len,
            floor: self.floor.max(o.floor),
        }
    }
}

pub(crate) fn meta_name(salt: u64) -> String {
    format!("log-{salt:016x}.meta")
}

/// Parses `log-<salt>.meta`.
pub(crate) fn parse_meta_name(name: &str) -> Option<u64> {
    let hex = name.strip_prefix("log-")?.strip_suffix(".meta")?;
    if hex.len() != 16 {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

/// One slot's bytes.
pub(crate) fn encode_slot(counter: u64, h: Hwm) -> [u8; SLOT_USED] {
    let mut b = [0u8; SLOT_USED];
    b[0..4].copy_from_slice(&META_MAGIC.to_le_bytes());
    b[8] = META_VERSION;
    b[16..24].copy_from_slice(&counter.to_le_bytes());
    b[24..32].copy_from_slice(&h.base.to_le_bytes());
    b[32..40].copy_from_slice(&h.len.to_le_bytes());
    b[40..48].copy_from_slice(&h.floor.to_le_bytes());
    let crc = crc32fast::hash(&b[8..]);
    b[4..8].copy_from_slice(&crc.to_le_bytes());
    b
}

enum Slot {
    Good(u64, Hwm),
    /// Never written, or written and lost with a power failure.
    Zeros,
    Bad,
}

fn decode_slot(b: &[u8]) -> Slot {
    if b.len() < SLOT_USED {
        return Slot::Bad;
    }
    let b = &b[..SLOT_USED];
    if b.iter().all(|&x| x == 0) {
        return Slot::Zeros;
    }
    let u64_at = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().unwrap_or_default());
    let magic = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    let crc = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
    if magic != META_MAGIC || b[8] != META_VERSION || crc32fast::hash(&b[8..]) != crc {
        return Slot::Bad;
    }
    Slot::Good(
        u64_at(16),
        Hwm {
            base: u64_at(24),
            len: u64_at(32),
            floor: u64_at(40),
        },
    )
}

/// What opening found of the meta file.
pub(crate) struct Loaded {
    pub salt: u64,
    pub path: PathBuf,
    /// The newest valid slot (counter, mark).
    pub newest: Option<(u64, Hwm)>,
    /// Offsets of damaged slots (reported as corrupt).
    pub damaged: Vec<u64>,
}

/// Finds the meta file; creates it for a new log (`empty`: the directory
/// holds no segment). A log with segments and no meta file was written by
/// format version 1 (or lost its identity): refused.
pub(crate) fn open(dir: &Path, names: &[String], empty: bool) -> Result<Loaded> {
    let found: Vec<u64> = names.iter().filter_map(|n| parse_meta_name(n)).collect();
    let salt = match found[..] {
        [salt] => salt,
        [] if empty => return create(dir),
        [] => {
            return Err(Error::Layout(format!(
                "{} holds segments but no log-<salt>.meta file: written by storage format \
                 version 1 (not readable by this release) or its identity file was removed",
                dir.display()
            )))
        }
        _ => {
            return Err(Error::Layout(format!(
                "{} holds more than one log-<salt>.meta file",
                dir.display()
            )))
        }
    };
    let path = dir.join(meta_name(salt));
    let mut buf = Vec::new();
    fs::File::open(&path)?.read_to_end(&mut buf)?;
    let mut newest: Option<(u64, Hwm)> = None;
    let mut damaged = Vec::new();
    for i in 0..2 {
        let at = i * SLOT;
        match decode_slot(buf.get(at..).unwrap_or(&[])) {
            Slot::Good(c, h) => {
                if newest.is_none_or(|(nc, _)| c > nc) {
                    newest = Some((c, h));
                }
            }
            Slot::Zeros => {}
            Slot::Bad => damaged.push(at as u64),
        }
    }
    Ok(Loaded {
        salt,
        path,
        newest,
        damaged,
    })
}

fn create(dir: &Path) -> Result<Loaded> {
    let salt = random_salt();
    let path = dir.join(meta_name(salt));
    let mut buf = vec![0u8; 2 * SLOT];
    buf[..SLOT_USED].copy_from_slice(&encode_slot(0, Hwm::default()));
    let tmp = dir.join(format!("{}.tmp", meta_name(salt)));
    fs::write(&tmp, &buf)?;
    fs::File::open(&tmp)?.sync_all()?;
    fs::rename(&tmp, &path)?;
    fs::File::open(dir)?.sync_all()?;
    Ok(Loaded {
        salt,
        path,
        newest: Some((0, Hwm::default())),
        damaged: Vec::new(),
    })
}

fn random_salt() -> u64 {
    let mut b = [0u8; 8];
    if fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .is_ok()
    {
        return u64::from_le_bytes(b);
    }
    // No urandom: still different per log and per run.
    use std::hash::{BuildHasher, Hasher};
    let mut h = ahash::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.write_u32(std::process::id());
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_roundtrip_and_reject_flips() {
        let h = Hwm {
            base: 5,
            len: 900,
            floor: 3,
        };
        let b = encode_slot(7, h);
        assert!(matches!(decode_slot(&b), Slot::Good(7, x) if x == h));
        for i in 0..b.len() {
            let mut x = b;
            x[i] ^= 4;
            assert!(matches!(decode_slot(&x), Slot::Bad), "flip at {i}");
        }
        assert_eq!(parse_meta_name(&meta_name(0xabc)), Some(0xabc));
    }
}
