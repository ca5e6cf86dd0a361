//! Stream backups as the `nats` CLI takes and restores them: the stream's
//! log files in a tar archive, in Snappy framing (which the client's S2
//! reader checks while it stores the bytes; it never looks inside). The
//! archive is Broker Edge's own: it restores into Broker Edge.
//!
//! Both directions run on a helper thread (blocking file I/O and
//! compression), talking to the shard through bounded channels.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// Archive entries live under this folder (the log directory's name).
const LOG_DIR: &str = "msgs";

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("unexpected archive entry {0:?}")]
    Entry(String),
    #[error("the snapshot was abandoned")]
    Abandoned,
    #[error("the archive unpacks to more than the {0} bytes of storage available")]
    TooLarge(u64),
}

/// Splits what is written into chunks of `size` bytes sent on `tx` (the
/// last one shorter); a closed channel ends the writing.
struct Chunker {
    tx: async_channel::Sender<Vec<u8>>,
    buf: Vec<u8>,
    size: usize,
}

impl Write for Chunker {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let room = self.size - self.buf.len();
        let n = room.min(data.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == self.size {
            let full = std::mem::replace(&mut self.buf, Vec::with_capacity(self.size));
            self.tx
                .send_blocking(full)
                .map_err(|_| std::io::Error::other(SnapshotError::Abandoned))?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Chunker {
    fn finish(self) -> std::io::Result<()> {
        if !self.buf.is_empty() {
            self.tx
                .send_blocking(self.buf)
                .map_err(|_| std::io::Error::other(SnapshotError::Abandoned))?;
        }
        Ok(())
    }
}

/// Writes the archive of `log_dir` (files as they are now) in chunks of
/// `chunk` bytes to `tx`. Blocking: run it on a helper thread.
pub fn write_archive(
    log_dir: &Path,
    chunk: usize,
    tx: async_channel::Sender<Vec<u8>>,
) -> Result<u64, SnapshotError> {
    let chunker = Chunker {
        tx,
        buf: Vec::with_capacity(chunk),
        size: chunk,
    };
    let mut enc = snap::write::FrameEncoder::new(chunker);
    let mut total = 0u64;
    {
        let mut tar = tar::Builder::new(&mut enc);
        // Plain entries: segments are sparse past their end, and the
        // zeros compress to almost nothing.
        tar.sparse(false);
        let mut files: Vec<PathBuf> = std::fs::read_dir(log_dir)?
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_file())
            .collect();
        files.sort();
        for p in files {
            let Some(name) = p.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            // A spare segment made ahead of a roll holds nothing yet.
            if name.contains("spare") {
                continue;
            }
            let mut f = std::fs::File::open(&p)?;
            total += f.metadata()?.len();
            tar.append_file(format!("{LOG_DIR}/{name}"), &mut f)?;
        }
        tar.finish()?;
    }
    let chunker = enc
        .into_inner()
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    chunker.finish()?;
    Ok(total)
}

/// Reads chunks from `rx` as a byte stream (ends when the channel closes).
struct Dechunker {
    rx: async_channel::Receiver<Vec<u8>>,
    cur: Vec<u8>,
    at: usize,
}

impl Read for Dechunker {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.at == self.cur.len() {
            match self.rx.recv_blocking() {
                Ok(c) => {
                    self.cur = c;
                    self.at = 0;
                }
                Err(_) => return Ok(0),
            }
        }
        let n = out.len().min(self.cur.len() - self.at);
        out[..n].copy_from_slice(&self.cur[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// Unpacks an archive arriving as chunks on `rx` into `dir` (which gets
/// `msgs/`), writing at most `max_bytes`. Only plain files directly under
/// `msgs/` are accepted: the bytes come from a client (and a few hundred
/// of them could otherwise describe a file of any size). Blocking: run it
/// on a helper thread.
pub fn read_archive(
    dir: &Path,
    rx: async_channel::Receiver<Vec<u8>>,
    max_bytes: u64,
) -> Result<u64, SnapshotError> {
    let dec = snap::read::FrameDecoder::new(Dechunker {
        rx,
        cur: Vec::new(),
        at: 0,
    });
    let mut tar = tar::Archive::new(dec);
    let out = dir.join(LOG_DIR);
    std::fs::create_dir_all(&out)?;
    let mut total = 0u64;
    for e in tar.entries()? {
        let mut e = e?;
        let path = e.path()?.into_owned();
        let mut parts = path.components();
        let ok_dir = parts.next().and_then(|c| c.as_os_str().to_str()) == Some(LOG_DIR);
        let name = parts
            .next()
            .and_then(|c| c.as_os_str().to_str())
            .map(str::to_string);
        // Our archives hold plain entries only (`sparse(false)`).
        let kind_ok = e.header().entry_type() == tar::EntryType::Regular;
        let Some(name) =
            name.filter(|n| ok_dir && kind_ok && parts.next().is_none() && !n.starts_with('.'))
        else {
            return Err(SnapshotError::Entry(format!(
                "{} ({:?})",
                path.display(),
                e.header().entry_type()
            )));
        };
        let size = e.header().size()?;
        if total.saturating_add(size) > max_bytes {
            return Err(SnapshotError::TooLarge(max_bytes));
        }
        let target = out.join(&name);
        let mut f = std::fs::File::create(&target)?;
        let mut limited = (&mut e).take(max_bytes - total);
        total += std::io::copy(&mut limited, &mut f)?;
        f.sync_all()?;
    }
    super::store::sync_dir(&out).map_err(|e| std::io::Error::other(e.to_string()))?;
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_through_chunks() {
        let src = tempfile::tempdir().unwrap();
        std::fs::write(src.path().join("a.seg"), vec![7u8; 300_000]).unwrap();
        std::fs::write(src.path().join("b.idx"), b"index").unwrap();
        let (tx, rx) = async_channel::bounded(4);
        let dir = src.path().to_path_buf();
        let w = std::thread::spawn(move || write_archive(&dir, 1024, tx));
        let mut chunks = Vec::new();
        while let Ok(c) = rx.recv_blocking() {
            assert!(!c.is_empty() && c.len() <= 1024);
            chunks.push(c);
        }
        assert_eq!(w.join().unwrap().unwrap(), 300_005);
        // Snappy framing, as the client's S2 reader expects.
        assert_eq!(&chunks[0][..4], &[0xff, 0x06, 0x00, 0x00]);
        let dst = tempfile::tempdir().unwrap();
        let (tx, rx) = async_channel::unbounded();
        for c in chunks {
            tx.send_blocking(c).unwrap();
        }
        drop(tx);
        read_archive(dst.path(), rx, u64::MAX).unwrap();
        assert_eq!(
            std::fs::read(dst.path().join("msgs/a.seg")).unwrap(),
            vec![7u8; 300_000]
        );
        assert_eq!(
            std::fs::read(dst.path().join("msgs/b.idx")).unwrap(),
            b"index"
        );
    }

    #[test]
    fn refuses_sparse_entries() {
        // A few hundred bytes of sparse map could describe a file of any
        // size (found by the js_snapshot_archive fuzz target).
        let src = tempfile::tempdir().unwrap();
        let p = src.path().join("holes.seg");
        let f = std::fs::File::create(&p).unwrap();
        f.set_len(8 << 20).unwrap();
        drop(f);
        let mut raw = Vec::new();
        {
            let mut enc = snap::write::FrameEncoder::new(&mut raw);
            let mut b = tar::Builder::new(&mut enc);
            b.sparse(true);
            b.append_path_with_name(&p, "msgs/holes.seg").unwrap();
            b.finish().unwrap();
        }
        let (tx, rx) = async_channel::unbounded();
        tx.send_blocking(raw).unwrap();
        drop(tx);
        let dst = tempfile::tempdir().unwrap();
        assert!(matches!(
            read_archive(dst.path(), rx, u64::MAX),
            Err(SnapshotError::Entry(_))
        ));
    }

    #[test]
    fn refuses_more_than_the_space_given() {
        let src = tempfile::tempdir().unwrap();
        std::fs::write(src.path().join("a.seg"), vec![0u8; 100_000]).unwrap();
        let (tx, rx) = async_channel::unbounded();
        write_archive(src.path(), 4096, tx).unwrap();
        let dst = tempfile::tempdir().unwrap();
        assert!(matches!(
            read_archive(dst.path(), rx, 50_000),
            Err(SnapshotError::TooLarge(50_000))
        ));
    }

    #[test]
    fn refuses_paths_outside_the_log() {
        let mut raw = Vec::new();
        {
            let mut enc = snap::write::FrameEncoder::new(&mut raw);
            let mut b = tar::Builder::new(&mut enc);
            let mut h = tar::Header::new_gnu();
            h.set_size(1);
            h.set_entry_type(tar::EntryType::Regular);
            h.set_cksum();
            b.append_data(&mut h, "etc/passwd", &b"x"[..]).unwrap();
            b.finish().unwrap();
        }
        let (tx, rx) = async_channel::unbounded();
        tx.send_blocking(raw).unwrap();
        drop(tx);
        let dst = tempfile::tempdir().unwrap();
        assert!(matches!(
            read_archive(dst.path(), rx, u64::MAX),
            Err(SnapshotError::Entry(_))
        ));
    }
}
