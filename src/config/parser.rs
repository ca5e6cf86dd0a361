//! Structure of a configuration file: the implicit top-level map, nested
//! maps and arrays, `include`, and `$VARIABLE` references. Follows the
//! behaviour of nats-server's `conf/parse.go` (and the state machine in
//! `conf/lex.go`); deliberate differences are noted where they happen.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::lexer::{is_inline_ws, show, Cursor, Token};
use super::pos::{go_clean, go_io_error, ConfigError, Pos};
use super::value::{Entry, Map, Value, ValueKind};

/// Deepest nesting of maps/arrays accepted; keeps hostile input from
/// exhausting the stack (nats has no limit, real configs use < 10).
const MAX_DEPTH: usize = 128;
/// Longest chain of includes (and of env variables expanding to variables).
const MAX_INCLUDE_DEPTH: usize = 32;
/// Most values `$VARIABLE` references may copy in one parse: nested
/// variables can grow a file exponentially ("billion laughs").
const MAX_EXPANDED_VALUES: usize = 1_000_000;

/// Environment lookup; injectable so tests need not touch the process env.
pub type EnvLookup<'e> = &'e dyn Fn(&str) -> Option<String>;

/// State shared by a file, the files it includes and env re-parses.
pub(crate) struct Shared<'e> {
    pub(crate) env: EnvLookup<'e>,
    /// Variables currently being expanded from the environment (cycles).
    env_refs: Vec<String>,
    /// Files currently being parsed, canonicalized (include cycles).
    pub(crate) include_stack: Vec<PathBuf>,
    /// Values copied by variable references so far.
    expanded: usize,
}

impl<'e> Shared<'e> {
    pub(crate) fn new(env: EnvLookup<'e>) -> Self {
        Shared {
            env,
            env_refs: Vec::new(),
            include_stack: Vec::new(),
            expanded: 0,
        }
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Ctx {
    Top,
    Map,
}

struct Parser<'a, 's, 'e> {
    cur: Cursor<'a>,
    /// Maps under construction, outermost first: the scopes searched for
    /// `$NAME` (arrays are not scopes, as in nats).
    scopes: Vec<Map>,
    depth: usize,
    shared: &'s mut Shared<'e>,
}

/// Parse a whole document (the implicit top-level map).
pub(crate) fn parse_document(
    src: &str,
    file: Arc<Path>,
    shared: &mut Shared<'_>,
) -> Result<Map, ConfigError> {
    let mut p = Parser {
        cur: Cursor::new(src, file),
        scopes: vec![Map::new()],
        depth: 0,
        shared,
    };
    p.document()?;
    Ok(p.scopes.pop().unwrap_or_default())
}

impl Parser<'_, '_, '_> {
    fn document(&mut self) -> Result<(), ConfigError> {
        // The top level may be wrapped in braces (JSON form); nats even
        // accepts several such blocks, so we count them.
        let mut braces: Vec<Pos> = Vec::new();
        loop {
            self.cur.skip_ws_and_comments();
            let pos = self.cur.pos();
            match self.cur.peek() {
                None => {
                    return match braces.last() {
                        // nats accepts a missing final '}'; a truncated file
                        // is more likely than intent, so we refuse it.
                        Some(open) => Err(self
                            .cur
                            .syntax(open, "Unexpected EOF: this '{' is never closed.")),
                        None => Ok(()),
                    };
                }
                Some('{') => {
                    self.cur.bump();
                    braces.push(pos);
                }
                Some('}') if !braces.is_empty() => {
                    self.cur.bump();
                    braces.pop();
                }
                Some(c @ (':' | '=')) => {
                    return Err(self
                        .cur
                        .syntax(&pos, format!("Unexpected key separator '{c}'")));
                }
                Some('}') => {
                    // nats tolerates one stray '}' closing the file (JSON
                    // written without the opening brace); nothing may follow.
                    self.cur.bump();
                    self.cur.skip_ws_and_comments();
                    if self.cur.peek().is_some() {
                        return Err(self.cur.syntax(&pos, "Unexpected '}' at top level"));
                    }
                }
                Some('/') if !self.cur.at_comment() => {
                    return Err(self.cur.syntax(
                        &pos,
                        "Unexpected '/' at top level (comments start with '//')",
                    ));
                }
                Some(_) => {
                    self.entry(Ctx::Top)?;
                    self.top_value_end(!braces.is_empty())?;
                }
            }
        }
    }

    /// After a top-level value: only a comment, new line, `;`, `,`, `}`
    /// or EOF may follow on the same line.
    fn top_value_end(&mut self, in_braces: bool) -> Result<(), ConfigError> {
        self.cur.skip_inline_ws();
        if self.cur.at_comment() {
            self.cur.skip_comment();
            return Ok(());
        }
        match self.cur.peek() {
            None => Ok(()),
            Some('}') if in_braces => Ok(()),
            Some('\n' | '\r' | ';' | ',' | '}') => {
                // A stray '}' after a top-level value is ignored by nats.
                self.cur.bump();
                Ok(())
            }
            c => Err(self.cur.syntax_here(format!(
                "Expected a top-level value to end with a new line, comment or EOF, \
                 but got '{}' instead.",
                show(c)
            ))),
        }
    }

    /// One `key [=|:] value`, or `include path`, stored into the innermost
    /// scope.
    fn entry(&mut self, ctx: Ctx) -> Result<(), ConfigError> {
        let (key, key_pos, bare) = self.cur.lex_key(ctx == Ctx::Map)?;
        if bare
            && key.eq_ignore_ascii_case("include")
            && self.cur.peek().is_some_and(char::is_whitespace)
        {
            return self.include();
        }
        // Between key and separator nats skips any white space, new lines
        // included (`foo\n= 1` is foo = 1).
        self.cur.skip_all_ws();
        let has_sep = matches!(self.cur.peek(), Some(':' | '='));
        if has_sep {
            self.cur.bump();
        } else if self.cur.peek().is_none() {
            return Err(key_pos.err(format!("config is invalid: key '{key}' has no value")));
        }
        // Inside a map the value may start on a later line; at the top
        // level only after a key without separator (as in nats).
        if ctx == Ctx::Map || !has_sep {
            self.cur.skip_all_ws();
        }
        if ctx == Ctx::Map {
            match self.cur.peek() {
                Some(',') => {
                    return Err(self
                        .cur
                        .syntax_here("Unexpected map value terminator \",\"."))
                }
                Some('}') => {
                    return Err(key_pos.err(format!("config is invalid: key '{key}' has no value")))
                }
                _ => {}
            }
        }
        let value = self.value()?;
        self.scope().insert(Entry {
            key,
            key_pos,
            value,
            used_as_variable: false,
        });
        Ok(())
    }

    fn scope(&mut self) -> &mut Map {
        if self.scopes.is_empty() {
            self.scopes.push(Map::new());
        }
        let last = self.scopes.len() - 1;
        &mut self.scopes[last]
    }

    fn value(&mut self) -> Result<Value, ConfigError> {
        let (tok, pos) = self.cur.lex_value()?;
        match tok {
            Token::ArrayStart => self.array(pos),
            Token::MapStart => self.map(pos),
            Token::Scalar(kind, literal) => Ok(Value { kind, pos, literal }),
            Token::Variable(name) => self.resolve(name, pos),
        }
    }

    fn enter(&mut self, pos: &Pos) -> Result<(), ConfigError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(pos.err(format!("maps and arrays nested deeper than {MAX_DEPTH}")));
        }
        Ok(())
    }

    /// Contents of `{ ... }`; the `{` is consumed. The map is a new scope.
    fn map(&mut self, pos: Pos) -> Result<Value, ConfigError> {
        self.enter(&pos)?;
        self.scopes.push(Map::new());
        loop {
            self.cur.skip_ws_and_comments();
            match self.cur.peek() {
                Some('}') => {
                    self.cur.bump();
                    break;
                }
                Some(']') => {
                    return Err(self
                        .cur
                        .syntax_here("Unexpected array end ']' processing map."))
                }
                Some(c @ (':' | '=')) => {
                    return Err(self
                        .cur
                        .syntax_here(format!("Unexpected key separator '{c}'.")))
                }
                None => return Err(self.cur.syntax(&pos, "Unexpected EOF processing map.")),
                Some(_) => {
                    self.entry(Ctx::Map)?;
                    self.map_value_end()?;
                }
            }
        }
        self.depth -= 1;
        let map = self.scopes.pop().unwrap_or_default();
        Ok(Value::new(ValueKind::Map(map), pos))
    }

    fn map_value_end(&mut self) -> Result<(), ConfigError> {
        self.cur.skip_inline_ws();
        if self.cur.at_comment() {
            self.cur.skip_comment();
            return Ok(());
        }
        match self.cur.peek() {
            Some('\n' | '\r' | ';' | ',') => {
                self.cur.bump();
                Ok(())
            }
            // The map loop reports EOF with the map's position.
            Some('}') | None => Ok(()),
            c => Err(self.cur.syntax_here(format!(
                "Expected a map value terminator \",\" or a map terminator \"}}\", \
                 but got '{}' instead.",
                show(c)
            ))),
        }
    }

    /// Contents of `[ ... ]`; the `[` is consumed.
    fn array(&mut self, pos: Pos) -> Result<Value, ConfigError> {
        self.enter(&pos)?;
        let mut items = Vec::new();
        loop {
            self.cur.skip_ws_and_comments();
            match self.cur.peek() {
                Some(']') => {
                    self.cur.bump();
                    break;
                }
                Some(',') => {
                    return Err(self
                        .cur
                        .syntax_here("Unexpected array value terminator ','."))
                }
                None => return Err(self.cur.syntax(&pos, "Unexpected EOF processing array.")),
                Some(_) => {
                    items.push(self.value()?);
                    self.array_value_end()?;
                }
            }
        }
        self.depth -= 1;
        Ok(Value::new(ValueKind::Array(items), pos))
    }

    fn array_value_end(&mut self) -> Result<(), ConfigError> {
        self.cur.skip_inline_ws();
        if self.cur.at_comment() {
            self.cur.skip_comment();
            return Ok(());
        }
        match self.cur.peek() {
            Some('\n' | '\r' | ',') => {
                self.cur.bump();
                Ok(())
            }
            Some(']') | None => Ok(()),
            c => Err(self.cur.syntax_here(format!(
                "Expected an array value terminator \",\" or an array terminator \"]\", \
                 but got '{}' instead.",
                show(c)
            ))),
        }
    }

    /// `$NAME`: the nearest enclosing map that already defines NAME, else
    /// the environment variable NAME (parsed as a value), else an error.
    fn resolve(&mut self, name: String, pos: Pos) -> Result<Value, ConfigError> {
        // Unquoted bcrypt hashes ($2a$11$...) look like variables; nats
        // special-cases "2a$". We also accept the 2b/2y variants.
        if ["2a$", "2b$", "2y$"].iter().any(|p| name.starts_with(p)) {
            return Ok(Value::new(ValueKind::String(format!("${name}")), pos));
        }
        for scope in self.scopes.iter_mut().rev() {
            if let Some(e) = scope.entry_mut(&name) {
                e.used_as_variable = true;
                self.shared.expanded = self.shared.expanded.saturating_add(e.value.node_count());
                if self.shared.expanded > MAX_EXPANDED_VALUES {
                    return Err(pos.err(format!(
                        "variable reference for '{name}': variables expand to more than \
                         {MAX_EXPANDED_VALUES} values"
                    )));
                }
                let mut v = e.value.clone();
                v.pos = pos;
                return Ok(v);
            }
        }
        if self.shared.env_refs.contains(&name) {
            return Err(pos.err(format!("variable reference cycle for '{name}'")));
        }
        if self.shared.env_refs.len() >= MAX_INCLUDE_DEPTH {
            return Err(pos.err(format!(
                "variable reference for '{name}' nests environment variables too deeply"
            )));
        }
        let Some(raw) = (self.shared.env)(&name) else {
            return Err(pos.err(format!("variable reference for '{name}' can not be found")));
        };
        // Like nats, parse the variable's text as the value of a key, so
        // NATS_PORT=4222 is an integer and may itself name a variable.
        self.shared.env_refs.push(name.clone());
        let origin: Arc<Path> = Arc::from(PathBuf::from(format!("${name}")));
        let parsed = parse_document(&format!("pk={raw}"), origin, self.shared);
        self.shared.env_refs.pop();
        let map = parsed.map_err(|e| {
            pos.err(format!(
                "variable reference for '{name}' could not be parsed: {}",
                e.message()
            ))
        })?;
        let mut v = map
            .get("pk")
            .cloned()
            .ok_or_else(|| pos.err(format!("variable reference for '{name}' can not be found")))?;
        v.set_pos_recursive(&pos);
        Ok(v)
    }

    /// `include path`: parse the file (relative to the including file's
    /// directory) on its own and merge its keys into the current map.
    /// Variables of the including file are not visible inside it (as in
    /// nats); errors inside it name the included file.
    fn include(&mut self) -> Result<(), ConfigError> {
        let (rel, pos) = self.cur.lex_include_path()?;
        let base = self.cur.file().parent().unwrap_or(Path::new(""));
        // nats joins even absolute paths onto the directory; we let an
        // absolute path mean itself (Path::join does that).
        let full = base.join(&rel);
        let canon = std::fs::canonicalize(&full).unwrap_or_else(|_| full.clone());
        if self.shared.include_stack.contains(&canon) {
            return Err(pos.err(format!("error parsing include file '{rel}', include cycle")));
        }
        if self.shared.include_stack.len() >= MAX_INCLUDE_DEPTH {
            return Err(pos.err(format!(
                "error parsing include file '{rel}', includes nested deeper than {MAX_INCLUDE_DEPTH}"
            )));
        }
        // Only regular files: `include /dev/zero` must not read forever.
        if std::fs::metadata(&full).is_ok_and(|m| !m.is_file()) {
            return Err(pos.err(format!(
                "error parsing include file '{rel}', not a regular file"
            )));
        }
        // nats' words: `error parsing include file 'x.conf', open
        // dir/x.conf: no such file or directory`.
        let text = read_text(&full).map_err(|e| {
            pos.err(format!(
                "error parsing include file '{rel}', {}",
                go_io_error(&go_clean(&full), &e)
            ))
        })?;
        self.shared.include_stack.push(canon);
        let parsed = parse_document(&text, Arc::from(full), self.shared);
        self.shared.include_stack.pop();
        for e in parsed?.into_entries() {
            self.scope().insert(e);
        }
        // The include path itself must be followed by a proper value end;
        // the caller checks that. Trailing blanks are fine.
        while self.cur.peek().is_some_and(is_inline_ws) {
            self.cur.bump();
        }
        Ok(())
    }
}

/// Read a file as text; invalid UTF-8 is replaced rather than rejected,
/// as Go would carry such bytes through.
pub(crate) fn read_text(path: &Path) -> std::io::Result<String> {
    let bytes = std::fs::read(path)?;
    Ok(match String::from_utf8(bytes) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    })
}
