//! Source positions and the configuration error type.
//!
//! Every parsed value carries a [`Pos`] so the option-mapping code can say
//! `file:line:col: message` the way nats-server's `configErr` does.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Where a value (or key) starts: file, 1-based line, 1-based column
/// (counted in characters, a tab counts as one).
///
/// nats-server prints column 0 for the first character of line 1 and
/// column 1 on every other line (a quirk of its lexer); we are 1-based
/// everywhere so editors jump to the right place.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Pos {
    /// Shared so that cloning a position (done for every value) is cheap.
    pub file: Arc<Path>,
    pub line: u32,
    pub col: u32,
}

impl Pos {
    pub fn new(file: Arc<Path>, line: u32, col: u32) -> Self {
        Pos { file, line, col }
    }

    /// Build an error located at this position.
    pub fn err(&self, message: impl Into<String>) -> ConfigError {
        ConfigError::At {
            pos: self.clone(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file.display(), self.line, self.col)
    }
}

/// Errors from reading a configuration file or from interpreting its values.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A semantic error (or one nats-server reports outside its lexer) at
    /// a known place: `file:line:col: message`.
    #[error("{pos}: {message}")]
    At { pos: Pos, message: String },
    /// A syntax error, where nats-server's lexer fails. Our position (the
    /// construct at fault, e.g. the `{` of a map never closed) comes first,
    /// then nats-server's own wording, `Parse error on line N: '…'`, with
    /// the line its lexer was on (for an unexpected end of file, the last
    /// line), so tools that match the reference's phrase still do.
    #[error("{pos}: Parse error on line {line}: '{message}'")]
    Syntax {
        pos: Pos,
        line: u32,
        message: String,
    },
    /// The top-level file could not be read; after our prefix, nats-server's
    /// words (`open /etc/nats.conf: no such file or directory`).
    #[error("error opening config file: {}", go_io_error(path, source))]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// An I/O error the way Go's `os` package prints it: `open <path>: no such
/// file or directory` (`read` for a directory), the operating system's
/// message in lower case without Rust's `(os error N)`.
pub fn go_io_error(path: &Path, e: &std::io::Error) -> String {
    let text = e.to_string();
    let text = match text.rfind(" (os error ") {
        Some(i) => &text[..i],
        None => &text[..],
    };
    let mut chars = text.chars();
    let desc: String = match chars.next() {
        Some(c) => c.to_lowercase().chain(chars).collect(),
        None => String::new(),
    };
    let op = if e.kind() == std::io::ErrorKind::IsADirectory {
        "read"
    } else {
        "open"
    };
    format!("{op} {}: {desc}", path.display())
}

/// Go's `filepath.Clean`, lexically: `.` dropped, `..` folded into the
/// component before it, `.` for nothing (how nats names an include path).
pub fn go_clean(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out: Vec<Component<'_>> = Vec::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => match out.last() {
                Some(Component::Normal(_)) => {
                    out.pop();
                }
                Some(Component::RootDir | Component::Prefix(_)) => {}
                _ => out.push(c),
            },
            _ => out.push(c),
        }
    }
    if out.is_empty() {
        return PathBuf::from(".");
    }
    out.iter().collect()
}

impl ConfigError {
    /// The position the error points at, if it has one.
    pub fn pos(&self) -> Option<&Pos> {
        match self {
            ConfigError::At { pos, .. } | ConfigError::Syntax { pos, .. } => Some(pos),
            ConfigError::Io { .. } => None,
        }
    }

    /// The message without the position prefix.
    pub fn message(&self) -> String {
        match self {
            ConfigError::At { message, .. } | ConfigError::Syntax { message, .. } => {
                message.clone()
            }
            ConfigError::Io { path, source } => go_io_error(path, source),
        }
    }
}
