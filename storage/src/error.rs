//! Typed errors the caller can map onto publisher-visible replies.

use std::io;
use std::path::PathBuf;

/// Which limit refused an append under `Discard::New`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitKind {
    MaxMsgs,
    MaxBytes,
    MaxMsgsPerSubject,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The filesystem is full; nothing was stored, retry when space returns.
    #[error("no space left on device")]
    NoSpace,
    /// Any other I/O failure; nothing from the failed operation is visible.
    #[error("storage I/O error: {0}")]
    Io(#[source] io::Error),
    #[error("message size {size} exceeds maximum {max}")]
    MsgTooLarge { size: usize, max: usize },
    #[error("subject too long ({0} bytes)")]
    SubjectTooLong(usize),
    /// Discard-new policy refused the message.
    #[error("maximum {0:?} exceeded")]
    LimitReached(LimitKind),
    /// An `Expect::last_seq` condition failed.
    #[error("wrong last sequence: {actual}")]
    WrongLastSequence { actual: u64 },
    /// An `Expect::last_subject_seq` condition failed.
    #[error("wrong last sequence for subject: {actual}")]
    WrongLastSubjectSequence { actual: u64 },
    /// `Log::append_at` asked for a sequence the log has already used.
    #[error("sequence {seq} is below the next sequence {next}")]
    SequenceUsed { seq: u64, next: u64 },
    /// The sequence is not (or no longer) stored.
    #[error("sequence {0} not found")]
    NotFound(u64),
    /// A stored record failed its checksum; it is never served.
    #[error("corrupt record at {path:?} offset {offset}")]
    Corrupt { path: PathBuf, offset: u64 },
    #[error("log is closed")]
    Closed,
    #[error("invalid log directory content: {0}")]
    Layout(String),
}

impl Error {
    /// Maps an io::Error, lifting ENOSPC/EDQUOT into `NoSpace`.
    pub fn from_io(e: io::Error) -> Error {
        // glommio reports io_uring failures as errors that keep the kind
        // but not the errno.
        let full = matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
            || matches!(
                e.kind(),
                io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
            );
        if full {
            Error::NoSpace
        } else {
            Error::Io(e)
        }
    }

    /// Errors carry an io::Error which is not Clone; a batch failure is
    /// reported to every op of the batch, so we rebuild equivalent values.
    pub(crate) fn duplicate(&self) -> Error {
        match self {
            Error::NoSpace => Error::NoSpace,
            Error::Io(e) => Error::Io(io::Error::new(e.kind(), e.to_string())),
            Error::MsgTooLarge { size, max } => Error::MsgTooLarge {
                size: *size,
                max: *max,
            },
            Error::SubjectTooLong(n) => Error::SubjectTooLong(*n),
            Error::LimitReached(k) => Error::LimitReached(*k),
            Error::NotFound(s) => Error::NotFound(*s),
            Error::SequenceUsed { seq, next } => Error::SequenceUsed {
                seq: *seq,
                next: *next,
            },
            Error::WrongLastSequence { actual } => Error::WrongLastSequence { actual: *actual },
            Error::WrongLastSubjectSequence { actual } => {
                Error::WrongLastSubjectSequence { actual: *actual }
            }
            Error::Corrupt { path, offset } => Error::Corrupt {
                path: path.clone(),
                offset: *offset,
            },
            Error::Closed => Error::Closed,
            Error::Layout(s) => Error::Layout(s.clone()),
        }
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Error {
        Error::from_io(e)
    }
}

impl<T> From<glommio::GlommioError<T>> for Error {
    fn from(e: glommio::GlommioError<T>) -> Error {
        Error::from_io(io::Error::from(e))
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
