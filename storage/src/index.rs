//! Index file of a sealed segment: sequence → offset table, time range,
//! per-subject summary, tombstone targets and floor. Checksummed as a whole
//! and tied to its segment by length and last-record CRC; anything that
//! does not verify is rebuilt from the segment, never trusted.

use std::path::Path;

use zerocopy::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::segment::ABSENT;

pub const INDEX_MAGIC: u32 = u32::from_le_bytes(*b"BELI");
pub const INDEX_VERSION: u8 = 1;

#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct IndexHeader {
    pub magic: U32,
    /// CRC-32 of the whole file with this field zeroed.
    pub crc: U32,
    pub version: u8,
    pub reserved: [u8; 3],
    pub gen: U32,
    pub base: U64,
    /// Length of the segment's valid bytes (= its file size once sealed).
    pub seg_len: U64,
    /// CRC field of the segment's last record (0 when empty): ties this
    /// index to one exact segment content.
    pub seg_tail_crc: U32,
    pub n_offsets: U32,
    /// Offset of the segment's last record (with `seg_tail_crc`).
    pub tail_off: U64,
    pub first_ts: U64,
    pub last_ts: U64,
    pub floor: U64,
    pub n_tombstones: U32,
    pub n_subjects: U32,
    /// Live message count and bytes at seal time (saves reading headers).
    pub live: U64,
    pub live_bytes: U64,
}

const HDR: usize = std::mem::size_of::<IndexHeader>();
// FORMAT.md documents this layout byte by byte.
const _: () = assert!(HDR == 96);

/// Per-subject summary of the records physically in one segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubjectSummary {
    pub subject: Vec<u8>,
    pub first: u64,
    pub last: u64,
    pub count: u64,
}

/// Decoded index content.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct IndexData {
    pub base: u64,
    pub gen: u32,
    pub seg_len: u64,
    pub seg_tail_crc: u32,
    pub tail_off: u64,
    pub offsets: Vec<u32>,
    pub first_ts: u64,
    pub last_ts: u64,
    pub floor: u64,
    pub tombstones: Vec<u64>,
    pub subjects: Vec<SubjectSummary>,
    pub live: u64,
    pub live_bytes: u64,
}

pub fn encode(d: &IndexData) -> Vec<u8> {
    let subj_bytes: usize = d.subjects.iter().map(|s| 26 + s.subject.len()).sum();
    let mut out =
        Vec::with_capacity(HDR + d.offsets.len() * 4 + d.tombstones.len() * 8 + subj_bytes);
    let h = IndexHeader {
        magic: U32::new(INDEX_MAGIC),
        crc: U32::new(0),
        version: INDEX_VERSION,
        reserved: [0; 3],
        gen: U32::new(d.gen),
        base: U64::new(d.base),
        seg_len: U64::new(d.seg_len),
        seg_tail_crc: U32::new(d.seg_tail_crc),
        n_offsets: U32::new(d.offsets.len() as u32),
        tail_off: U64::new(d.tail_off),
        first_ts: U64::new(d.first_ts),
        last_ts: U64::new(d.last_ts),
        floor: U64::new(d.floor),
        n_tombstones: U32::new(d.tombstones.len() as u32),
        n_subjects: U32::new(d.subjects.len() as u32),
        live: U64::new(d.live),
        live_bytes: U64::new(d.live_bytes),
    };
    out.extend_from_slice(h.as_bytes());
    for o in &d.offsets {
        out.extend_from_slice(&o.to_le_bytes());
    }
    for t in &d.tombstones {
        out.extend_from_slice(&t.to_le_bytes());
    }
    for s in &d.subjects {
        out.extend_from_slice(&(s.subject.len() as u16).to_le_bytes());
        out.extend_from_slice(&s.first.to_le_bytes());
        out.extend_from_slice(&s.last.to_le_bytes());
        out.extend_from_slice(&s.count.to_le_bytes());
        out.extend_from_slice(&s.subject);
    }
    let crc = crc32fast::hash(&out);
    out[4..8].copy_from_slice(&crc.to_le_bytes());
    out
}

/// Decodes and verifies; None for anything malformed.
pub fn decode(buf: &[u8]) -> Option<IndexData> {
    let (h, rest) = IndexHeader::ref_from_prefix(buf).ok()?;
    if h.magic.get() != INDEX_MAGIC || h.version != INDEX_VERSION {
        return None;
    }
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&buf[..4]);
    hasher.update(&[0u8; 4]);
    hasher.update(&buf[8..]);
    if hasher.finalize() != h.crc.get() {
        return None;
    }
    let n_off = h.n_offsets.get() as usize;
    let (offs, rest) = <[U32]>::ref_from_prefix_with_elems(rest, n_off).ok()?;
    let n_t = h.n_tombstones.get() as usize;
    let (tombs, mut rest) = <[U64]>::ref_from_prefix_with_elems(rest, n_t).ok()?;
    let mut subjects = Vec::with_capacity(h.n_subjects.get() as usize);
    for _ in 0..h.n_subjects.get() {
        let (len, r) = U16::ref_from_prefix(rest).ok()?;
        let (nums, r) = <[U64]>::ref_from_prefix_with_elems(r, 3).ok()?;
        let len = len.get() as usize;
        let subject = r.get(..len)?.to_vec();
        rest = &r[len..];
        subjects.push(SubjectSummary {
            subject,
            first: nums[0].get(),
            last: nums[1].get(),
            count: nums[2].get(),
        });
    }
    if !rest.is_empty() {
        return None;
    }
    let offsets: Vec<u32> = offs.iter().map(|o| o.get()).collect();
    if offsets
        .iter()
        .any(|&o| o != ABSENT && o as u64 >= h.seg_len.get())
    {
        return None;
    }
    Some(IndexData {
        base: h.base.get(),
        gen: h.gen.get(),
        seg_len: h.seg_len.get(),
        seg_tail_crc: h.seg_tail_crc.get(),
        tail_off: h.tail_off.get(),
        offsets,
        first_ts: h.first_ts.get(),
        last_ts: h.last_ts.get(),
        floor: h.floor.get(),
        tombstones: tombs.iter().map(|t| t.get()).collect(),
        subjects,
        live: h.live.get(),
        live_bytes: h.live_bytes.get(),
    })
}

/// Reads and verifies an index file; None when absent or bad.
pub fn load(path: &Path) -> Option<IndexData> {
    let buf = std::fs::read(path).ok()?;
    decode(&buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> IndexData {
        IndexData {
            base: 10,
            gen: 1,
            seg_len: 1000,
            seg_tail_crc: 77,
            tail_off: 900,
            offsets: vec![0, 50, ABSENT, 120],
            first_ts: 5,
            last_ts: 9,
            floor: 3,
            tombstones: vec![4, 8],
            subjects: vec![SubjectSummary {
                subject: b"a.b".to_vec(),
                first: 10,
                last: 13,
                count: 3,
            }],
            live: 3,
            live_bytes: 170,
        }
    }

    #[test]
    fn roundtrip() {
        let d = sample();
        assert_eq!(decode(&encode(&d)), Some(d));
    }

    #[test]
    fn any_flip_is_rejected() {
        let buf = encode(&sample());
        for i in 0..buf.len() {
            let mut b = buf.clone();
            b[i] ^= 0x10;
            assert_eq!(decode(&b), None, "flip at {i} accepted");
        }
        assert_eq!(decode(&buf[..buf.len() - 1]), None);
    }
}
