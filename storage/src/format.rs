//! On-disk record framing (see `storage/FORMAT.md` for the byte-by-byte layout).
//!
//! A record is a fixed 40-byte little-endian header followed by the subject,
//! the headers block and the payload. The CRC-32 (IEEE, crc32fast) covers
//! the record's [`Key`] (the log's salt and the segment's base) and every
//! byte of the record from offset 8 to its end, so a torn or flipped byte
//! anywhere except the magic is caught, and a record copied from another
//! log or segment (or framed inside a payload by someone who does not know
//! the salt) does not validate; the magic itself is compared. A 16-bit
//! header check, keyed the same way, says whether the header alone (and so
//! the record's length) can be trusted when the record's CRC fails.

use zerocopy::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// "BELR" (Broker Edge Log Record) read as a little-endian u32.
pub const RECORD_MAGIC: u32 = u32::from_le_bytes(*b"BELR");
/// Record format version written (and the only one read) by this release.
pub const FORMAT_VERSION: u8 = 2;
/// Size of [`RecordHeader`] in bytes.
pub const HEADER_LEN: usize = 40;
/// Byte offset at which the CRC coverage starts.
const CRC_START: usize = 8;

/// Largest subject we accept (the header field is a u16).
pub const MAX_SUBJECT_LEN: usize = u16::MAX as usize;

/// What a record carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// A stored message: `seq` is its sequence.
    Msg = 0,
    /// Deletion of the sequences listed in the payload (u64 LE each).
    Tombstone = 1,
    /// Every sequence below `seq` is gone (purge / limits floor).
    Floor = 2,
    /// Filler up to a block boundary; its payload means nothing (see
    /// `commit::pad`).
    Pad = 3,
    /// Sequences used without a message (an append at a later sequence,
    /// `Log::append_at`): `seq` is the last of them, the payload (u64 LE)
    /// the first. Always framed right before the message that follows them.
    Skip = 4,
}

impl Kind {
    fn from_u8(v: u8) -> Option<Kind> {
        match v {
            0 => Some(Kind::Msg),
            1 => Some(Kind::Tombstone),
            2 => Some(Kind::Floor),
            3 => Some(Kind::Pad),
            4 => Some(Kind::Skip),
            _ => None,
        }
    }
}

/// Flag bit: the headers and payload were overwritten with zeros (erase).
pub const FLAG_ERASED: u16 = 1;

/// What binds a record to its place: the log's random salt and the base of
/// the segment holding it. Both seed every record and header checksum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Key([u8; 16]);

impl Key {
    #[cfg(test)]
    pub const ZERO: Key = Key([0; 16]);

    pub fn new(salt: u64, base: u64) -> Key {
        let mut k = [0u8; 16];
        k[..8].copy_from_slice(&salt.to_le_bytes());
        k[8..].copy_from_slice(&base.to_le_bytes());
        Key(k)
    }

    fn hasher(&self) -> crc32fast::Hasher {
        let mut h = crc32fast::Hasher::new();
        h.update(&self.0);
        h
    }

    /// The header check of a header whose `hcheck` field is zero.
    fn header_check(&self, hdr: &[u8]) -> u16 {
        let mut h = self.hasher();
        h.update(&hdr[CRC_START..HCHECK]);
        h.update(&[0, 0]);
        h.update(&hdr[HCHECK + 2..HEADER_LEN]);
        h.finalize() as u16
    }
}

/// Byte offset of the header check (the field version 1 had reserved).
const HCHECK: usize = 14;

#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct RecordHeader {
    pub magic: U32,
    pub crc: U32,
    pub version: u8,
    pub kind: u8,
    pub flags: U16,
    pub subject_len: U16,
    /// Header check: low 16 bits of the keyed CRC-32 of bytes 8..40 with
    /// this field zero.
    pub hcheck: U16,
    pub headers_len: U32,
    pub payload_len: U32,
    pub seq: U64,
    pub ts: U64,
}

const _: () = assert!(std::mem::size_of::<RecordHeader>() == HEADER_LEN);
const _: () = assert!(RECORD_MAGIC == 0x524C_4542);

impl RecordHeader {
    /// Total on-disk length of the record this header frames.
    pub fn record_len(&self) -> usize {
        HEADER_LEN
            + self.subject_len.get() as usize
            + self.headers_len.get() as usize
            + self.payload_len.get() as usize
    }

    pub fn kind(&self) -> Option<Kind> {
        Kind::from_u8(self.kind)
    }
}

/// Length of a record with the given body parts.
pub fn record_len(subject: usize, headers: usize, payload: usize) -> usize {
    HEADER_LEN + subject + headers + payload
}

/// Where framed records go: a `Vec` for buffered writes, DMA memory for
/// O_DIRECT ones (so a group is framed once, not framed then copied).
pub(crate) trait Sink {
    fn put(&mut self, bytes: &[u8]);
}

impl Sink for Vec<u8> {
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

/// Appends one framed record to `out`; returns its CRC.
#[allow(clippy::too_many_arguments)]
pub(crate) fn encode<S: Sink + ?Sized>(
    out: &mut S,
    key: &Key,
    kind: Kind,
    flags: u16,
    seq: u64,
    ts: u64,
    subject: &[u8],
    headers: &[u8],
    payload: &[u8],
) -> u32 {
    let mut hdr = RecordHeader {
        magic: U32::new(RECORD_MAGIC),
        crc: U32::new(0),
        version: FORMAT_VERSION,
        kind: kind as u8,
        flags: U16::new(flags),
        subject_len: U16::new(subject.len() as u16),
        hcheck: U16::new(0),
        headers_len: U32::new(headers.len() as u32),
        payload_len: U32::new(payload.len() as u32),
        seq: U64::new(seq),
        ts: U64::new(ts),
    };
    hdr.hcheck = U16::new(key.header_check(hdr.as_bytes()));
    // The CRC covers everything after its own field, so it is computed
    // from the parts before anything is written.
    let mut h = key.hasher();
    h.update(&hdr.as_bytes()[CRC_START..]);
    h.update(subject);
    h.update(headers);
    h.update(payload);
    let crc = h.finalize();
    hdr.crc = U32::new(crc);
    out.put(hdr.as_bytes());
    out.put(subject);
    out.put(headers);
    out.put(payload);
    crc
}

/// Result of looking at the bytes at some offset of a segment.
#[derive(Debug, PartialEq, Eq)]
pub enum Probe {
    /// A complete record whose CRC matches.
    Valid { len: usize },
    /// All-zero header: the clean end of the written part of a segment.
    End,
    /// The header is sound (magic, version, kind, header check) but the
    /// record's CRC does not match, or the record runs past `avail`: a torn
    /// write or a flipped bit in its body. Its length can be trusted.
    BadCrc { len: usize },
    /// Not a sound record header: nothing it says can be trusted.
    Garbage,
}

/// Parses a header from the front of `buf` without checking the CRC.
pub fn header(buf: &[u8]) -> Option<&RecordHeader> {
    let bytes = buf.get(..HEADER_LEN)?;
    RecordHeader::ref_from_bytes(bytes).ok()
}

/// Checks the record at the front of `buf` (which holds everything up to the
/// end of the written region) against `key`.
pub fn probe(buf: &[u8], key: &Key) -> Probe {
    let Some(h) = header(buf) else {
        return if buf.iter().all(|b| *b == 0) {
            Probe::End
        } else {
            Probe::Garbage
        };
    };
    if h.magic.get() != RECORD_MAGIC {
        return if buf[..HEADER_LEN].iter().all(|b| *b == 0) {
            Probe::End
        } else {
            Probe::Garbage
        };
    }
    if h.version != FORMAT_VERSION
        || h.kind().is_none()
        || h.hcheck.get() != key.header_check(&buf[..HEADER_LEN])
    {
        return Probe::Garbage;
    }
    let len = h.record_len();
    if len <= buf.len() && crc_ok(&buf[..len], key) {
        Probe::Valid { len }
    } else {
        Probe::BadCrc { len }
    }
}

/// True when the stored CRC of the complete record `rec` matches its bytes
/// under `key`.
pub fn crc_ok(rec: &[u8], key: &Key) -> bool {
    if rec.len() < HEADER_LEN {
        return false;
    }
    let stored = u32::from_le_bytes([rec[4], rec[5], rec[6], rec[7]]);
    let mut h = key.hasher();
    h.update(&rec[CRC_START..]);
    h.finalize() == stored
}

/// Builds the erased form of a record: same header (with `FLAG_ERASED`),
/// same subject, headers and payload bytes replaced by zeros, new checks.
pub fn erased_copy(rec: &[u8], key: &Key) -> Option<Vec<u8>> {
    let h = header(rec)?;
    let subj_end = HEADER_LEN + h.subject_len.get() as usize;
    let len = h.record_len();
    if rec.len() < len {
        return None;
    }
    let mut out = rec[..len].to_vec();
    out[subj_end..].fill(0);
    let flags = h.flags.get() | FLAG_ERASED;
    out[10..12].copy_from_slice(&flags.to_le_bytes());
    let hc = key.header_check(&out[..HEADER_LEN]);
    out[HCHECK..HCHECK + 2].copy_from_slice(&hc.to_le_bytes());
    let mut hs = key.hasher();
    hs.update(&out[CRC_START..]);
    let crc = hs.finalize();
    out[4..8].copy_from_slice(&crc.to_le_bytes());
    Some(out)
}

/// Parses a tombstone payload (a packed array of u64 LE sequences).
pub fn tombstone_seqs(payload: &[u8]) -> impl Iterator<Item = u64> + '_ {
    payload.chunks_exact(8).map(|c| {
        let mut a = [0u8; 8];
        a.copy_from_slice(c);
        u64::from_le_bytes(a)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const K: Key = Key([7; 16]);

    #[test]
    fn roundtrip_and_crc() {
        let mut buf = Vec::new();
        encode(&mut buf, &K, Kind::Msg, 0, 7, 99, b"a.b", b"H", b"payload");
        assert_eq!(buf.len(), record_len(3, 1, 7));
        assert_eq!(probe(&buf, &K), Probe::Valid { len: buf.len() });
        let h = header(&buf).unwrap();
        assert_eq!(h.seq.get(), 7);
        assert_eq!(h.ts.get(), 99);
        assert_eq!(h.kind(), Some(Kind::Msg));
        // Flip a payload byte: CRC must catch it, the header stays sound.
        let mut bad = buf.clone();
        let n = bad.len();
        bad[n - 1] ^= 1;
        assert_eq!(probe(&bad, &K), Probe::BadCrc { len: n });
        // Truncated record: the header is sound, the body runs past the end.
        assert_eq!(probe(&buf[..n - 1], &K), Probe::BadCrc { len: n });
        // A flipped header byte makes the header untrustworthy.
        for i in 8..HEADER_LEN {
            let mut bad = buf.clone();
            bad[i] ^= 0x20;
            assert_eq!(probe(&bad, &K), Probe::Garbage, "flip at {i}");
        }
        // Zeros mean the clean end.
        assert_eq!(probe(&[0u8; 64], &K), Probe::End);
        assert_eq!(probe(&[0u8; 3], &K), Probe::End);
    }

    #[test]
    fn records_are_bound_to_their_key() {
        let mut buf = Vec::new();
        encode(&mut buf, &K, Kind::Msg, 0, 7, 99, b"a.b", b"H", b"payload");
        // Another log (salt) or another segment (base): not a record.
        for other in [Key::new(1, 7), Key::new(u64::from_le_bytes([7; 8]), 8)] {
            assert_eq!(probe(&buf, &other), Probe::Garbage);
            assert!(!crc_ok(&buf, &other));
        }
    }

    #[test]
    fn erase_keeps_frame_valid() {
        let mut buf = Vec::new();
        encode(&mut buf, &K, Kind::Msg, 0, 1, 2, b"s", b"hh", b"secret");
        let e = erased_copy(&buf, &K).unwrap();
        assert_eq!(probe(&e, &K), Probe::Valid { len: e.len() });
        assert!(!e.windows(6).any(|w| w == b"secret"));
        assert_eq!(header(&e).unwrap().flags.get() & FLAG_ERASED, FLAG_ERASED);
    }

    #[test]
    fn tombstone_payload() {
        let mut p = Vec::new();
        for s in [3u64, 5, 1 << 40] {
            p.extend_from_slice(&s.to_le_bytes());
        }
        assert_eq!(tombstone_seqs(&p).collect::<Vec<_>>(), vec![3, 5, 1 << 40]);
    }
}
