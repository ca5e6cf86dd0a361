//! The thin file layer between the log and glommio (io_uring).
//!
//! Every write, sync and hole-punch of the engine goes through [`LogFile`],
//! which is also where the fault-injection layer sits: tests can fail
//! writes/syncs with any errno, tear a write after N bytes, cap the space
//! (ENOSPC), and simulate a power loss by discarding every byte that was
//! written but not yet covered by a successful `fdatasync`.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use glommio::io::{BufferedFile, Directory, DmaBuffer, DmaFile, OpenOptions};

use crate::error::{Error, Result};
use crate::recent::Written;
use crate::reserve::Reservation;

/// Test hook: shared between the test and every file of one log.
#[derive(Clone, Default)]
pub struct FaultInjector(Rc<RefCell<FaultState>>);

#[derive(Default)]
struct FaultState {
    write_errno: Option<i32>,
    sync_errno: Option<i32>,
    tear_next_write: Option<usize>,
    space_left: Option<u64>,
    /// Per file: byte ranges written since the last successful sync.
    unsynced: HashMap<PathBuf, Vec<(u64, u64)>>,
}

impl FaultInjector {
    pub fn new() -> FaultInjector {
        FaultInjector::default()
    }

    /// Every following write fails with `errno` (None: stop failing).
    pub fn fail_writes(&self, errno: Option<i32>) {
        self.0.borrow_mut().write_errno = errno;
    }

    /// Every following fdatasync fails with `errno`.
    pub fn fail_syncs(&self, errno: Option<i32>) {
        self.0.borrow_mut().sync_errno = errno;
    }

    /// The next write stores only its first `keep` bytes, then fails (EIO).
    pub fn tear_next_write(&self, keep: usize) {
        self.0.borrow_mut().tear_next_write = Some(keep);
    }

    /// Only `bytes` more bytes may be written; beyond that writes store what
    /// fits and fail with ENOSPC (like a full filesystem). None: unlimited.
    pub fn set_space(&self, bytes: Option<u64>) {
        self.0.borrow_mut().space_left = bytes;
    }

    /// Simulates losing power: every unsynced range is replaced by zeros
    /// (what a sparse, never-flushed block reads as). With `torn`, the first
    /// half of each file's earliest unsynced range survives, which leaves a
    /// torn record for recovery to find. Call after the log is dropped.
    pub fn power_loss(&self, torn: bool) -> io::Result<()> {
        let mut st = self.0.borrow_mut();
        for (path, ranges) in st.unsynced.drain() {
            let Ok(f) = std::fs::OpenOptions::new().write(true).open(&path) else {
                continue; // unlinked since
            };
            let len = f.metadata()?.len();
            let mut ranges = ranges;
            ranges.sort_unstable();
            for (i, (off, n)) in ranges.into_iter().enumerate() {
                let (off, n) = if torn && i == 0 {
                    (off + n / 2, n - n / 2)
                } else {
                    (off, n)
                };
                if off >= len {
                    continue;
                }
                let n = n.min(len - off);
                f.write_all_at(&vec![0u8; n as usize], off)?;
            }
        }
        Ok(())
    }

    fn before_write(&self, len: usize) -> std::result::Result<usize, (usize, i32)> {
        let mut st = self.0.borrow_mut();
        if let Some(e) = st.write_errno {
            return Err((0, e));
        }
        if let Some(keep) = st.tear_next_write.take() {
            return Err((keep.min(len), libc::EIO));
        }
        if let Some(left) = st.space_left.as_mut() {
            if (len as u64) > *left {
                let fit = *left as usize;
                *left = 0;
                return Err((fit, libc::ENOSPC));
            }
            *left -= len as u64;
        }
        Ok(len)
    }

    fn wrote(&self, path: &Path, off: u64, n: usize) {
        if n > 0 {
            let mut st = self.0.borrow_mut();
            st.unsynced
                .entry(path.to_path_buf())
                .or_default()
                .push((off, n as u64));
        }
    }

    fn synced(&self, path: &Path) -> std::result::Result<(), i32> {
        let mut st = self.0.borrow_mut();
        if let Some(e) = st.sync_errno {
            return Err(e);
        }
        st.unsynced.remove(path);
        Ok(())
    }
}

/// How segment bytes reach the file (see docs/storage.md, "Coherence").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WriteMode {
    /// io_uring writes through the page cache: memory maps see every write.
    Buffered,
    /// io_uring O_DIRECT writes of whole 4 KiB blocks; the partial last block
    /// is kept in memory and rewritten with the next group. The kernel drops
    /// the cached pages of each written range, so maps stay correct but
    /// re-read fresh data from the device, except for the latest groups,
    /// which the active segment keeps in memory (`recent.rs`).
    #[default]
    Direct,
}

pub(crate) const BLOCK: u64 = 4096;
/// O_DIRECT groups are cut into chunks of this size, written concurrently.
const DIRECT_CHUNK: usize = 1 << 20;

/// One group's bytes for an O_DIRECT segment, framed straight into DMA
/// memory: the segment's partial last block first (rewritten with every
/// group), then the new records. Saves copying each group once more.
pub(crate) struct DirectFrame {
    /// The first block in a buffer of its own ([`DirectFrame::split`]):
    /// set when the group is framed behind one still in flight that ends in
    /// this block, which this group may only rewrite once that one is done.
    first: Option<DmaBuffer>,
    /// The bytes (after `first`, when set).
    buf: DmaBuffer,
    /// Bytes filled, `head` included.
    len: usize,
    /// Bytes of the partial last block copied in front.
    head: usize,
    /// File offset of `buf[0]` (block aligned).
    start: u64,
}

impl DirectFrame {
    /// New bytes (records) framed so far.
    pub fn framed(&self) -> usize {
        self.len - self.head
    }

    /// File offset of the first new byte.
    pub fn pos(&self) -> u64 {
        self.start + self.head as u64
    }

    /// Whether the first block is kept apart (see `first`).
    pub fn is_split(&self) -> bool {
        self.first.is_some()
    }

    /// A split frame as two frames written separately: the first block,
    /// then (if the group goes past it) the rest, from the next block on.
    pub fn split(mut self) -> (DirectFrame, Option<DirectFrame>) {
        let Some(first) = self.first.take() else {
            return (self, None);
        };
        let b = BLOCK as usize;
        let rest = (self.len > b).then(|| DirectFrame {
            first: None,
            len: self.len - b,
            head: 0,
            start: self.start + BLOCK,
            buf: self.buf,
        });
        let head = DirectFrame {
            first: None,
            len: self.len.min(b),
            head: self.head,
            start: self.start,
            buf: first,
        };
        (head, rest)
    }

    /// Framed bytes `[from, to)` (offsets from `start`) within one block.
    fn copy_block_range(&self, from: usize, to: usize) -> Vec<u8> {
        let b = BLOCK as usize;
        match &self.first {
            Some(f) if to <= b => f.as_bytes()[from..to].to_vec(),
            Some(_) => self.buf.as_bytes()[from - b..to - b].to_vec(),
            None => self.buf.as_bytes()[from..to].to_vec(),
        }
    }
}

impl crate::format::Sink for DirectFrame {
    fn put(&mut self, mut bytes: &[u8]) {
        // The committer sizes the buffer for every record it may frame
        // (`LogFile::direct_frame`); a miss here is a bug, not bad input.
        let b = BLOCK as usize;
        let mut at = self.len;
        if let Some(f) = &mut self.first {
            if at < b {
                let n = (b - at).min(bytes.len());
                f.as_bytes_mut()[at..at + n].copy_from_slice(&bytes[..n]);
                bytes = &bytes[n..];
                self.len += n;
                if bytes.is_empty() {
                    return;
                }
            }
            at = self.len - b;
        }
        self.buf.as_bytes_mut()[at..at + bytes.len()].copy_from_slice(bytes);
        self.len += bytes.len();
    }
}

/// What one append write carries.
pub(crate) enum Payload {
    Bytes(Vec<u8>),
    Frame(DirectFrame),
}

impl Payload {
    fn len(&self) -> usize {
        match self {
            Payload::Bytes(b) => b.len(),
            Payload::Frame(f) => f.framed(),
        }
    }

    fn truncate(&mut self, keep: usize) {
        match self {
            Payload::Bytes(b) => b.truncate(keep),
            Payload::Frame(f) => f.len = f.len.min(f.head + keep),
        }
    }
}

enum Backend {
    Buffered {
        file: BufferedFile,
        /// A second descriptor opened with O_DSYNC (durable logs only): a
        /// write through it is durable on completion, which saves the
        /// fdatasync round trip for single-write groups.
        dsync: Option<BufferedFile>,
    },
    Direct {
        file: Rc<DmaFile>,
        /// (offset of the partial last block, its bytes up to the end).
        /// Framing a group moves it to where that group will end, before
        /// the group is written, so the next group can be framed while this
        /// one is in flight.
        tail: RefCell<(u64, Vec<u8>)>,
        reservation: Reservation,
    },
}

/// A segment or index file written through io_uring.
pub(crate) struct LogFile {
    backend: Backend,
    path: PathBuf,
    faults: Option<FaultInjector>,
    /// Writes are durable on completion (O_DIRECT opened with O_DSYNC).
    dsync: bool,
    /// An fsync of this file (or the sync step of an O_DSYNC write that
    /// the fault injector failed) returned an error.
    sync_failed: std::cell::Cell<bool>,
}

impl LogFile {
    pub async fn create(path: &Path, faults: Option<FaultInjector>) -> Result<LogFile> {
        Self::open_with(path, faults, true, false).await
    }

    pub async fn open(path: &Path, faults: Option<FaultInjector>) -> Result<LogFile> {
        Self::open_with(path, faults, false, false).await
    }

    pub async fn open_with(
        path: &Path,
        faults: Option<FaultInjector>,
        create: bool,
        dsync: bool,
    ) -> Result<LogFile> {
        let file = Self::options(create, false).buffered_open(path).await?;
        let dsync = if dsync {
            Some(Self::options(false, true).buffered_open(path).await?)
        } else {
            None
        };
        Ok(LogFile {
            backend: Backend::Buffered { file, dsync },
            path: path.to_path_buf(),
            faults,
            dsync: false,
            sync_failed: Default::default(),
        })
    }

    /// Opens a segment for O_DIRECT appends; `end` is its logical length.
    pub async fn open_direct(
        path: &Path,
        faults: Option<FaultInjector>,
        create: bool,
        dsync: bool,
        end: u64,
    ) -> Result<LogFile> {
        if let Some(dir) = path.parent() {
            crate::poll_ring::use_interrupt_completions(dir).await;
        }
        let file = Self::options(create, dsync).dma_open(path).await?;
        let start = end - end % BLOCK;
        let mut bytes = vec![0u8; (end - start) as usize];
        if !bytes.is_empty() {
            std::fs::File::open(path)?.read_exact_at(&mut bytes, start)?;
        }
        Ok(LogFile {
            backend: Backend::Direct {
                file: Rc::new(file),
                tail: RefCell::new((start, bytes)),
                reservation: Reservation::default(),
            },
            path: path.to_path_buf(),
            faults,
            dsync,
            sync_failed: Default::default(),
        })
    }

    fn options(create: bool, dsync: bool) -> OpenOptions {
        let mut o = OpenOptions::new();
        o.read(true).write(true);
        if create {
            o.create(true).truncate(true);
        }
        if dsync {
            o.custom_flags(libc::O_DSYNC);
        }
        o
    }

    /// A DMA buffer for the next group of an O_DIRECT segment, holding the
    /// partial last block and room for `room` more bytes; `None` for
    /// buffered files. `split`: the first block goes in a buffer of its own
    /// when the file ends inside it (the group is framed behind a write in
    /// flight that ends there).
    pub fn direct_frame(&self, room: usize, split: bool) -> Option<DirectFrame> {
        let Backend::Direct { file, tail, .. } = &self.backend else {
            return None;
        };
        let t = tail.borrow();
        let head = t.1.len();
        let b = BLOCK as usize;
        let (first, size) = if split && head > 0 {
            let mut f = file.alloc_dma_buffer(b);
            f.as_bytes_mut()[..head].copy_from_slice(&t.1);
            (Some(f), (head + room).saturating_sub(b))
        } else {
            (None, head + room)
        };
        let mut buf = file.alloc_dma_buffer(size.next_multiple_of(b).max(b));
        if first.is_none() {
            buf.as_bytes_mut()[..head].copy_from_slice(&t.1);
        }
        Some(DirectFrame {
            first,
            buf,
            len: head,
            head,
            start: t.0,
        })
    }

    /// Moves the in-memory partial last block to where `frame` (fully
    /// framed, not yet written) will end the file. Take a
    /// [`LogFile::tail_snapshot`] first: a failed write puts it back.
    pub fn advance_tail(&self, frame: &DirectFrame) {
        let Backend::Direct {
            tail,
            file,
            reservation,
        } = &self.backend
        else {
            return;
        };
        let end = frame.start + frame.len as u64;
        reservation.ahead(file, end);
        let new_start = end - end % BLOCK;
        let keep = frame.copy_block_range((new_start - frame.start) as usize, frame.len);
        *tail.borrow_mut() = (new_start, keep);
    }

    /// Appends `buf` at `pos` and makes it durable: one O_DSYNC write when
    /// the file has such a descriptor, else write then fdatasync. Returns
    /// the written DMA frame, for the recent-writes cache.
    pub async fn write_durable_at(&self, buf: Payload, pos: u64) -> Result<Option<Written>> {
        let t0 = std::time::Instant::now();
        let via_dsync = matches!(&self.backend, Backend::Buffered { dsync: Some(_), .. });
        let w = self.write_inner(buf, pos, via_dsync).await?;
        if !via_dsync && !self.dsync {
            self.sync_counted().await?;
        }
        crate::stats::note_durable(t0.elapsed());
        Ok(w)
    }

    /// The in-memory partial last block of an O_DIRECT segment, to put back
    /// with [`LogFile::restore_tail`] when a group fails after its write.
    pub fn tail_snapshot(&self) -> Option<(u64, Vec<u8>)> {
        match &self.backend {
            Backend::Direct { tail, .. } => Some(tail.borrow().clone()),
            Backend::Buffered { .. } => None,
        }
    }

    /// Puts back a [`LogFile::tail_snapshot`]: the failed group's bytes
    /// are about to be punched out, and the next group must rewrite the
    /// block as it was before it.
    pub fn restore_tail(&self, snap: Option<(u64, Vec<u8>)>) {
        if let (Backend::Direct { tail, .. }, Some(s)) = (&self.backend, snap) {
            *tail.borrow_mut() = s;
        }
    }

    /// True when `write_all_at` alone is durable (O_DIRECT + O_DSYNC).
    pub fn writes_are_durable(&self) -> bool {
        self.dsync
    }

    /// Appends `buf` at `pos` (the current end) in one io_uring write.
    pub async fn write_all_at(&self, buf: Vec<u8>, pos: u64) -> Result<()> {
        self.write_inner(Payload::Bytes(buf), pos, false).await?;
        Ok(())
    }

    /// Appends a group framed by `direct_frame` (or plain bytes) at `pos`;
    /// returns the written DMA frame, for the recent-writes cache.
    pub async fn write_payload_at(&self, buf: Payload, pos: u64) -> Result<Option<Written>> {
        self.write_inner(buf, pos, false).await
    }

    async fn write_inner(
        &self,
        mut buf: Payload,
        pos: u64,
        via_dsync: bool,
    ) -> Result<Option<Written>> {
        let mut injected = None;
        if let Some(f) = &self.faults {
            if let Err((keep, errno)) = f.before_write(buf.len()) {
                buf.truncate(keep);
                injected = Some(errno);
            }
        }
        // glommio takes the buffer by value, so a short write cannot be
        // resumed without a copy; regular files only write short when the
        // filesystem ran out of room, which is what we report (the caller
        // punches the partial range away).
        let want = buf.len();
        let mut written = None;
        if want > 0 {
            let (at, n) = match (&self.backend, buf) {
                (Backend::Buffered { file, dsync }, Payload::Bytes(buf)) => {
                    let f = match (via_dsync, dsync) {
                        (true, Some(d)) => d,
                        _ => file,
                    };
                    (pos, f.write_at(buf, pos).await?)
                }
                (Backend::Direct { file, tail, .. }, Payload::Bytes(buf)) => {
                    Self::direct_append(file, tail, &buf, pos).await?
                }
                (Backend::Direct { file, .. }, Payload::Frame(frame)) => {
                    let (at, n, w) = Self::direct_write_frame(file, frame, pos).await?;
                    written = w;
                    (at, n)
                }
                (Backend::Buffered { .. }, Payload::Frame(_)) => {
                    return Err(Error::Io(io::Error::other("DMA frame for a buffered file")));
                }
            };
            crate::stats::note_written(n);
            if let Some(f) = &self.faults {
                f.wrote(&self.path, at, n);
                if (self.dsync || via_dsync) && injected.is_none() {
                    // O_DSYNC: the write included its own sync.
                    if let Err(e) = f.synced(&self.path) {
                        self.sync_failed.set(true);
                        return Err(Error::from_io(io::Error::from_raw_os_error(e)));
                    }
                }
            }
            if n < want && injected.is_none() {
                return Err(Error::NoSpace);
            }
        }
        match injected {
            Some(e) => Err(Error::from_io(io::Error::from_raw_os_error(e))),
            None => Ok(written),
        }
    }

    /// O_DIRECT append: rewrite the partial tail block plus the new bytes,
    /// padded with zeros to whole blocks. Returns (offset, new bytes written).
    async fn direct_append(
        file: &Rc<DmaFile>,
        tail: &RefCell<(u64, Vec<u8>)>,
        buf: &[u8],
        pos: u64,
    ) -> Result<(u64, usize)> {
        let (start, head) = {
            let t = tail.borrow();
            (t.0, t.1.clone())
        };
        if start + head.len() as u64 != pos {
            return Err(Error::Io(io::Error::other("direct append not at the end")));
        }
        let total = head.len() + buf.len();
        let padded = (total as u64).next_multiple_of(BLOCK) as usize;
        let end = pos + buf.len() as u64;
        let new_start = end - end % BLOCK;
        // Bytes of the virtual run `head ++ buf ++ zeros` at [from, to).
        let fill = |dst: &mut [u8], from: usize| {
            for (i, d) in dst.iter_mut().enumerate() {
                let at = from + i;
                *d = if at < head.len() {
                    head[at]
                } else if at < total {
                    buf[at - head.len()]
                } else {
                    0
                };
            }
        };
        let mut keep = vec![0u8; total - (new_start - start) as usize];
        fill(&mut keep, (new_start - start) as usize);
        // Whole-block chunks in flight together, like the buffered path.
        let mut tasks = Vec::new();
        let mut off = 0usize;
        while off < padded {
            let n = DIRECT_CHUNK.min(padded - off);
            let mut dma = file.alloc_dma_buffer(n);
            let b = dma.as_bytes_mut();
            if off + n <= head.len() || off >= total {
                fill(b, off);
            } else {
                // Fast path: copy slices rather than byte by byte.
                let mut i = 0;
                while i < n {
                    let at = off + i;
                    let (src, len): (&[u8], usize) = if at < head.len() {
                        (&head[at..], head.len() - at)
                    } else if at < total {
                        (&buf[at - head.len()..], total - at)
                    } else {
                        (&[], n - i)
                    };
                    let len = len.min(n - i);
                    if src.is_empty() {
                        b[i..i + len].fill(0);
                    } else {
                        b[i..i + len].copy_from_slice(&src[..len]);
                    }
                    i += len;
                }
            }
            let f = file.clone();
            let at = start + off as u64;
            tasks.push(glommio::spawn_local(
                async move { f.write_at(dma, at).await },
            ));
            off += n;
        }
        let mut written = 0usize;
        let mut err = None;
        for t in tasks {
            match t.await {
                Ok(n) => written += n,
                Err(e) if err.is_none() => err = Some(Error::from(e)),
                Err(_) => {}
            }
        }
        if let Some(e) = err {
            return Err(e);
        }
        if written < total {
            return Ok((pos, written.saturating_sub(head.len())));
        }
        *tail.borrow_mut() = (new_start, keep);
        Ok((pos, buf.len()))
    }

    /// O_DIRECT append of a group framed in place (the in-memory tail was
    /// already advanced past it): pad to whole blocks and write it in one
    /// go. Returns (offset, new bytes written, the buffer as written).
    async fn direct_write_frame(
        file: &Rc<DmaFile>,
        mut frame: DirectFrame,
        pos: u64,
    ) -> Result<(u64, usize, Option<Written>)> {
        if frame.start + frame.head as u64 != pos || frame.first.is_some() {
            return Err(Error::Io(io::Error::other("direct append not at the end")));
        }
        let total = frame.len;
        let padded = total.next_multiple_of(BLOCK as usize);
        frame.buf.as_bytes_mut()[total..padded].fill(0);
        frame.buf.trim_to_size(padded);
        let head = frame.head;
        let buf = Rc::new(frame.buf);
        let n = file.write_rc_at(buf.clone(), frame.start).await?;
        if n < total {
            return Ok((pos, n.saturating_sub(head), None));
        }
        let w = Written {
            start: frame.start,
            len: total,
            buf,
        };
        Ok((pos, total - head, Some(w)))
    }

    /// Rewrites bytes inside the written region (erase).
    pub async fn overwrite_at(&self, buf: Vec<u8>, pos: u64) -> Result<()> {
        match &self.backend {
            Backend::Buffered { .. } => self.write_all_at(buf, pos).await,
            Backend::Direct { file, tail, .. } => {
                let a0 = pos - pos % BLOCK;
                let a1 = (pos + buf.len() as u64).next_multiple_of(BLOCK);
                let mut cur = vec![0u8; (a1 - a0) as usize];
                let f = std::fs::File::open(&self.path)?;
                let got = f.read_at(&mut cur, a0)?;
                cur[got..].fill(0);
                let o = (pos - a0) as usize;
                cur[o..o + buf.len()].copy_from_slice(&buf);
                {
                    // Keep the in-memory tail block in step.
                    let mut t = tail.borrow_mut();
                    let (ts, tb) = (t.0, &mut t.1);
                    for (i, byte) in buf.iter().enumerate() {
                        let at = pos + i as u64;
                        if at >= ts && ((at - ts) as usize) < tb.len() {
                            tb[(at - ts) as usize] = *byte;
                        }
                    }
                }
                let mut dma = file.alloc_dma_buffer((a1 - a0) as usize);
                dma.as_bytes_mut().copy_from_slice(&cur);
                file.write_at(dma, a0).await?;
                if let Some(fi) = &self.faults {
                    fi.wrote(&self.path, a0, (a1 - a0) as usize);
                }
                Ok(())
            }
        }
    }

    pub async fn sync(&self) -> Result<()> {
        let t0 = std::time::Instant::now();
        let r = self.sync_counted().await;
        if r.is_ok() {
            crate::stats::note_durable(t0.elapsed());
        }
        r
    }

    /// fdatasync, remembering a failure (see `sync_failed`).
    async fn sync_counted(&self) -> Result<()> {
        let r = self.sync_inner().await;
        if r.is_err() {
            self.sync_failed.set(true);
        }
        r
    }

    async fn sync_inner(&self) -> Result<()> {
        if let Some(f) = &self.faults {
            if let Err(e) = f.synced(&self.path) {
                return Err(Error::from_io(io::Error::from_raw_os_error(e)));
            }
        }
        match &self.backend {
            Backend::Buffered { file, .. } => file.fdatasync().await?,
            Backend::Direct { file, .. } => file.fdatasync().await?,
        }
        Ok(())
    }

    /// Whether an fsync of this file ever failed (see `sync_failed`).
    pub fn sync_failed(&self) -> bool {
        self.sync_failed.get()
    }

    /// Frees `[off, off+len)`; it reads back as zeros. Works on a full disk.
    pub async fn punch(&self, off: u64, len: u64) -> Result<()> {
        if len > 0 {
            match &self.backend {
                Backend::Buffered { file, .. } => file.deallocate(off, len).await?,
                Backend::Direct { file, tail, .. } => {
                    // Whole blocks only; the partial first block is rewritten
                    // from the in-memory tail by the next append.
                    let a0 = off.next_multiple_of(BLOCK);
                    let a1 = (off + len).next_multiple_of(BLOCK);
                    if a1 > a0 {
                        file.deallocate(a0, a1 - a0).await?;
                    }
                    let rewrite = {
                        let t = tail.borrow();
                        (t.0 < a0 && !t.1.is_empty()).then(|| {
                            let mut dma = file.alloc_dma_buffer(BLOCK as usize);
                            let b = dma.as_bytes_mut();
                            b.fill(0);
                            b[..t.1.len()].copy_from_slice(&t.1);
                            (dma, t.0)
                        })
                    };
                    if let Some((dma, at)) = rewrite {
                        file.write_at(dma, at).await?;
                    }
                }
            }
        }
        Ok(())
    }

    pub async fn set_len(&self, len: u64) -> Result<()> {
        match &self.backend {
            Backend::Buffered { file, .. } => file.truncate(len).await?,
            Backend::Direct {
                file, reservation, ..
            } => {
                reservation.settle().await;
                file.truncate(len).await?
            }
        }
        Ok(())
    }

    /// Lets an O_DIRECT segment reserve its blocks up to `limit` (its
    /// capacity), a step ahead of the writes (`reserve.rs`); reserves the
    /// first step now.
    pub async fn reserve(&self, limit: u64) {
        if let Backend::Direct {
            file,
            tail,
            reservation,
        } = &self.backend
        {
            let end = {
                let t = tail.borrow();
                t.0 + t.1.len() as u64
            };
            reservation.start(file, end, limit).await;
        }
    }

    pub async fn close(self) -> Result<()> {
        match self.backend {
            Backend::Buffered { file, dsync } => {
                if let Some(d) = dsync {
                    d.close().await?;
                }
                file.close().await?
            }
            Backend::Direct { file, .. } => {
                if let Ok(f) = Rc::try_unwrap(file) {
                    f.close().await?;
                }
            }
        }
        Ok(())
    }
}

/// Whether files in `dir` can be opened with O_DIRECT (tmpfs, for one,
/// refuses it with EINVAL).
pub(crate) fn direct_supported(dir: &Path) -> Result<bool> {
    use std::os::unix::fs::OpenOptionsExt;
    let probe = dir.join(".direct-probe");
    let r = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .custom_flags(libc::O_DIRECT)
        .open(&probe);
    let _ = std::fs::remove_file(&probe);
    match r {
        Ok(_) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Ok(false),
        Err(e) => Err(Error::Io(e)),
    }
}

/// Makes directory entries (new, renamed files) durable.
pub(crate) async fn sync_dir(dir: &Path) -> Result<()> {
    let d = Directory::open(dir).await?;
    d.sync().await?;
    d.close().await?;
    Ok(())
}
