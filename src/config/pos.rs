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
    /// A syntax or semantic error at a known place: `file:line:col: message`.
    #[error("{pos}: {message}")]
    At { pos: Pos, message: String },
    /// The top-level file could not be read (nats-server words it the same).
    #[error("error opening config file: {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl ConfigError {
    /// The position the error points at, if it has one.
    pub fn pos(&self) -> Option<&Pos> {
        match self {
            ConfigError::At { pos, .. } => Some(pos),
            ConfigError::Io { .. } => None,
        }
    }

    /// The message without the position prefix.
    pub fn message(&self) -> String {
        match self {
            ConfigError::At { message, .. } => message.clone(),
            ConfigError::Io { source, .. } => source.to_string(),
        }
    }
}
