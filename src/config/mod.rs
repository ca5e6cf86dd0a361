//! Reader for nats-server configuration files (`nats.conf`).
//!
//! Produces a tree of [`Value`]s, each with the [`Pos`] it was read from,
//! so the option-mapping code can report `file:line:col: message`:
//!
//! ```ignore
//! let root = config::parse_file(Path::new("nats.conf"))?;
//! for (pos, key) in config::unknown_top_level_keys(&root) {
//!     errors.push(config::unknown_field_error(&pos, &key));
//! }
//! if let Some(v) = root.get_ci("max_payload") {
//!     let n = v.as_int().ok_or_else(|| config::err_at(v, "expected an integer"))?;
//! }
//! ```
//!
//! The syntax and its quirks follow nats-server's `conf` package: see
//! `lexer.rs` and `parser.rs` for the rules. Deliberate differences (checked
//! against nats-server 2.9.10 `-t` on nats' own test configs and on the
//! fuzz corpus):
//! * errors are `file:line:col: message` with 1-based columns everywhere
//!   (nats uses column 0 on line 1); syntax errors, which nats prints as
//!   `Parse error on line N: '...'`, keep that phrase after our position
//!   (`file:2:15: Parse error on line 4: 'Unexpected EOF processing map.'`:
//!   ours points at the construct at fault, N is the line nats' lexer was
//!   on, the last one for an unexpected end of file). The quoted texts are
//!   nats' own, except where nats shows a raw NUL for the end of file
//!   (`Unexpected EOF processing array.` here) and for the refusals below;
//! * refused where nats silently drops or wraps: unknown size suffixes
//!   (`1kbb`), integers that overflow with their suffix (`16EB`), a key with
//!   no value at the end of the file (current nats refuses it too), an
//!   unclosed `{` or `[` at end of file, nesting deeper than 128, variable
//!   expansion beyond a million values, include cycles, including
//!   non-regular files;
//! * accepted where nats errs: `]` ends a number (`[1,2]`), a bare key stops
//!   at `{`/`[` (`auth{`), `$2b$`/`$2y$` bcrypt hashes unquoted, `)\r` ends a
//!   block in CRLF files, NUL bytes are ordinary characters, an absolute
//!   `include` path means itself (nats joins it onto the directory);
//! * `Value::as_duration` reads a bare `2m` (the integer 2,000,000 to nats)
//!   as two minutes.

mod duration;
mod keys;
mod lexer;
pub mod options;
mod parser;
mod pos;
mod value;

#[cfg(test)]
mod tests;

use std::path::Path;
use std::sync::Arc;

pub use duration::{parse_go_duration, parse_go_duration_nanos};
pub use keys::{
    is_known_top_level_key, unknown_field_error, unknown_top_level_keys, TOP_LEVEL_KEYS,
};
pub use parser::EnvLookup;
pub use pos::{ConfigError, Pos};
pub use value::{err_at, Entry, Map, Value, ValueKind};

use parser::{parse_document, read_text, Shared};

fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// Parse a configuration file; `$VARS` not defined in the file come from
/// the process environment. `include`s are relative to `path`'s directory.
pub fn parse_file(path: &Path) -> Result<Value, ConfigError> {
    parse_file_with_env(path, &process_env)
}

/// [`parse_file`] with an explicit environment lookup.
pub fn parse_file_with_env(path: &Path, env: EnvLookup<'_>) -> Result<Value, ConfigError> {
    let text = read_text(path).map_err(|source| ConfigError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut shared = Shared::new(env);
    shared
        .include_stack
        .push(std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf()));
    parse_root(&text, path, &mut shared)
}

/// Parse configuration text as if read from `origin` (used in positions
/// and as the base for `include`); variables fall back to the process env.
pub fn parse_str(src: &str, origin: &Path) -> Result<Value, ConfigError> {
    parse_str_with_env(src, origin, &process_env)
}

/// [`parse_str`] with an explicit environment lookup.
pub fn parse_str_with_env(
    src: &str,
    origin: &Path,
    env: EnvLookup<'_>,
) -> Result<Value, ConfigError> {
    let mut shared = Shared::new(env);
    parse_root(src, origin, &mut shared)
}

fn parse_root(src: &str, origin: &Path, shared: &mut Shared<'_>) -> Result<Value, ConfigError> {
    let file: Arc<Path> = Arc::from(origin);
    let map = parse_document(src, file.clone(), shared)?;
    Ok(Value::new(ValueKind::Map(map), Pos::new(file, 1, 1)))
}
