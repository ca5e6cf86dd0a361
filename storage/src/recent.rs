//! The recent-writes cache of an O_DIRECT segment.
//!
//! An O_DIRECT write drops the page cache of the range it wrote, so a
//! reader of the segment's mapping would fetch a record it just appended
//! back from the device (52 MB/s against 236 MB/s through the page cache
//! for one appender reading each 16 KiB record, BENCHMARKS.md). A broker
//! reads what it just wrote all the time: push consumers, KV watchers,
//! mirrors. So the active segment keeps the DMA buffers of its last groups
//! after they were written and serves reads of those bytes from memory.
//!
//! A buffer is kept as written (no copy on the append path). The first read
//! that needs `Bytes` out of it copies it once into a shared buffer, which
//! later reads slice without copying. Buffers hold exactly the bytes on
//! disk, so a read from here and one from the mapping agree; whatever is
//! not here is read from the mapping.

use std::collections::VecDeque;
use std::rc::Rc;

use bytes::Bytes;

/// One written group: its buffer and the file range it holds.
pub(crate) struct Written {
    /// File offset of the buffer's first byte (block aligned).
    pub start: u64,
    /// Bytes of the buffer that are records (the rest is block padding).
    pub len: usize,
    /// The buffer as written (a glommio `DmaBuffer` in the log).
    pub buf: Rc<dyn AsRef<[u8]>>,
}

impl Written {
    /// A group written in two parts (its first block, then the rest): the
    /// first part extended with the rest's bytes up to file offset `upto`,
    /// so a record that straddles the two parts is served from one chunk.
    pub fn bridged(&self, rest: &Written, upto: u64) -> Written {
        let first = &(*self.buf).as_ref()[..self.len];
        let more = upto.saturating_sub(rest.start) as usize;
        let mut v = Vec::with_capacity(first.len() + more);
        v.extend_from_slice(first);
        v.extend_from_slice(&(*rest.buf).as_ref()[..more.min(rest.len)]);
        Written {
            start: self.start,
            len: v.len(),
            buf: Rc::new(v),
        }
    }
}

enum Data {
    Dma(Rc<dyn AsRef<[u8]>>),
    Shared(Bytes),
}

struct Chunk {
    start: u64,
    len: usize,
    data: Data,
}

impl Chunk {
    fn bytes(&self) -> &[u8] {
        match &self.data {
            Data::Dma(b) => &(**b).as_ref()[..self.len],
            Data::Shared(b) => b,
        }
    }

    /// The chunk's bytes at `[off, off + len)` of the file, if it holds
    /// them all.
    fn range(&self, off: u64, len: usize) -> Option<std::ops::Range<usize>> {
        let from = usize::try_from(off.checked_sub(self.start)?).ok()?;
        let to = from.checked_add(len)?;
        (to <= self.len).then_some(from..to)
    }
}

/// The last groups written to a segment, oldest first, within a byte
/// budget.
#[derive(Default)]
pub(crate) struct Recent {
    chunks: VecDeque<Chunk>,
    bytes: usize,
}

impl Recent {
    /// Keeps a written group, dropping the oldest ones beyond `budget`.
    pub fn push(&mut self, w: Written, budget: usize) {
        if budget == 0 || w.len > budget {
            self.clear();
            return;
        }
        self.bytes += w.len;
        self.chunks.push_back(Chunk {
            start: w.start,
            len: w.len,
            data: Data::Dma(w.buf),
        });
        while self.bytes > budget {
            match self.chunks.pop_front() {
                Some(c) => self.bytes -= c.len,
                None => break,
            }
        }
    }

    pub fn clear(&mut self) {
        self.chunks.clear();
        self.bytes = 0;
    }

    /// Forgets every chunk that overlaps `[off, off + len)` (a rewrite).
    pub fn invalidate(&mut self, off: u64, len: usize) {
        let end = off.saturating_add(len as u64);
        self.chunks
            .retain(|c| c.start >= end || c.start + c.len as u64 <= off);
        self.bytes = self.chunks.iter().map(|c| c.len).sum();
    }

    /// The newest chunk that starts at or before `off`. Groups are written
    /// in file order and each one repeats the partial block before it, so
    /// a record that a cached group wrote lies wholly in this chunk.
    fn find(&self, off: u64) -> Option<usize> {
        let n = self.chunks.partition_point(|c| c.start <= off);
        n.checked_sub(1)
    }

    /// The file's bytes at `[off, off + len)`, when cached.
    pub fn get(&self, off: u64, len: usize) -> Option<&[u8]> {
        let c = &self.chunks[self.find(off)?];
        Some(&c.bytes()[c.range(off, len)?])
    }

    /// The file's bytes at `[off, off + len)` as shared `Bytes`, when
    /// cached. Converts the chunk to shared memory on first use.
    pub fn get_shared(&mut self, off: u64, len: usize) -> Option<Bytes> {
        let i = self.find(off)?;
        let c = &mut self.chunks[i];
        let r = c.range(off, len)?;
        if let Data::Dma(b) = &c.data {
            let shared = Bytes::copy_from_slice(&(**b).as_ref()[..c.len]);
            c.data = Data::Shared(shared);
        }
        match &c.data {
            Data::Shared(b) => Some(b.slice(r)),
            Data::Dma(_) => None,
        }
    }

    #[cfg(test)]
    pub fn cached_bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A group of `len` bytes at `start`, byte i = (start + i) % 251.
    fn group(start: u64, len: usize) -> Written {
        let buf: Vec<u8> = (0..len.next_multiple_of(4096))
            .map(|i| ((start + i as u64) % 251) as u8)
            .collect();
        Written {
            start,
            len,
            buf: Rc::new(buf),
        }
    }

    fn expect(off: u64, len: usize) -> Vec<u8> {
        (0..len).map(|i| ((off + i as u64) % 251) as u8).collect()
    }

    #[test]
    fn serves_ranges_of_overlapping_groups() {
        let mut r = Recent::default();
        // Each group starts at the block holding the previous one's end.
        r.push(group(0, 5000), 1 << 20);
        r.push(group(4096, 9000 - 4096), 1 << 20);
        r.push(group(8192, 20000 - 8192), 1 << 20);
        for (off, len) in [
            (0, 100),
            (4100, 800),
            (4990, 10),
            (5000, 3000),
            (8200, 11000),
        ] {
            assert_eq!(r.get(off, len), Some(&expect(off, len)[..]), "{off}+{len}");
            assert_eq!(
                r.get_shared(off, len).as_deref(),
                Some(&expect(off, len)[..])
            );
        }
        // Past what was written: not cached.
        assert_eq!(r.get(19990, 20), None);
        assert_eq!(r.get_shared(19990, 20), None);
    }

    #[test]
    fn a_bridged_first_part_serves_the_straddling_record() {
        let mut r = Recent::default();
        // A group split at 8192: first block [4096, 8192), rest from 8192.
        let whole = group(4096, 20_000 - 4096);
        let first = Written {
            start: 4096,
            len: 4096,
            buf: Rc::new((*whole.buf).as_ref()[..4096].to_vec()),
        };
        let rest = Written {
            start: 8192,
            len: 20_000 - 8192,
            buf: Rc::new((*whole.buf).as_ref()[4096..].to_vec()),
        };
        // The record at [7000, 9500) straddles the two parts.
        assert!(r.get(7000, 2500).is_none());
        r.push(first.bridged(&rest, 9500), 1 << 20);
        r.push(rest, 1 << 20);
        assert_eq!(r.get(7000, 2500), Some(&expect(7000, 2500)[..]));
        assert_eq!(r.get(9500, 3000), Some(&expect(9500, 3000)[..]));
        assert_eq!(
            r.get_shared(7000, 2500).as_deref(),
            Some(&expect(7000, 2500)[..])
        );
    }

    #[test]
    fn budget_drops_the_oldest_groups() {
        let mut r = Recent::default();
        r.push(group(0, 4000), 10_000);
        r.push(group(0, 8000), 10_000);
        r.push(group(4096, 9000), 10_000);
        assert!(r.cached_bytes() <= 10_000);
        assert_eq!(r.get(100, 10), None, "the oldest groups went");
        assert_eq!(r.get(5000, 100), Some(&expect(5000, 100)[..]));
        // A group bigger than the budget empties the cache.
        r.push(group(12288, 20_000), 10_000);
        assert_eq!(r.cached_bytes(), 0);
        assert_eq!(r.get(13000, 10), None);
    }

    #[test]
    fn invalidate_forgets_overlapping_groups() {
        let mut r = Recent::default();
        r.push(group(0, 4000), 1 << 20);
        r.push(group(0, 8000), 1 << 20);
        r.push(group(8192, 4000), 1 << 20);
        r.invalidate(3000, 10);
        assert_eq!(r.get(3000, 10), None);
        assert_eq!(r.get(9000, 10), Some(&expect(9000, 10)[..]));
        assert_eq!(r.cached_bytes(), 4000);
    }
}
