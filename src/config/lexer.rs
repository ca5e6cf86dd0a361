//! Character-level lexing of the nats-server configuration syntax.
//!
//! The syntax is context sensitive (a bare word ends at different
//! characters as a key, a value or an include path), so rather than a
//! separate token stream the parser drives this cursor and asks it for
//! "a key", "a value" or "an include path" where it expects one. The rules
//! follow nats-server's `conf/lex.go`; deliberate differences are noted.

use std::path::Path;
use std::sync::Arc;

use super::pos::{ConfigError, Pos};
use super::value::ValueKind;

/// What the value lexer found. Arrays and maps are only opened here; the
/// parser reads their contents.
#[derive(Debug)]
pub(crate) enum Token {
    ArrayStart,
    MapStart,
    /// A scalar; the literal is kept for integers written with a suffix.
    Scalar(ValueKind, Option<Box<str>>),
    /// `$NAME` (the name without `$`).
    Variable(String),
}

pub(crate) struct Cursor<'a> {
    src: &'a str,
    off: usize,
    line: u32,
    col: u32,
    file: Arc<Path>,
}

/// Render a character for an error message (nats escapes new lines).
pub(crate) fn show(c: Option<char>) -> String {
    match c {
        None => "EOF".to_string(),
        Some('\n') => "\\n".to_string(),
        Some('\r') => "\\r".to_string(),
        Some('\t') => "\\t".to_string(),
        Some(c) => c.to_string(),
    }
}

fn is_nl(c: char) -> bool {
    c == '\n' || c == '\r'
}

/// nats "whitespace" on a line: only space and tab (new lines separate).
pub(crate) fn is_inline_ws(c: char) -> bool {
    c == ' ' || c == '\t'
}

/// Size suffix letters: kilo, mega, giga, tera, peta, exa.
fn is_size_suffix(c: char) -> bool {
    matches!(
        c,
        'k' | 'K' | 'm' | 'M' | 'g' | 'G' | 't' | 'T' | 'p' | 'P' | 'e' | 'E'
    )
}

/// Characters that end a number. nats-server does not list `]` here, which
/// turns the `2` of `[1, 2]` into the string "2"; we end the number there.
fn ends_number(c: Option<char>) -> bool {
    match c {
        None => true,
        Some(c) => is_nl(c) || is_inline_ws(c) || matches!(c, '}' | ']' | ';' | ','),
    }
}

/// Characters that end a bare (unquoted) string value.
fn ends_bare_string(c: Option<char>) -> bool {
    match c {
        None => true,
        Some(c) => is_nl(c) || is_inline_ws(c) || matches!(c, ';' | ',' | ']' | '}'),
    }
}

const BOOL_WORDS: [(&str, bool); 6] = [
    ("true", true),
    ("yes", true),
    ("on", true),
    ("false", false),
    ("no", false),
    ("off", false),
];

/// Multiplier for an integer suffix: single letters are decimal (`1k` =
/// 1000), `b`/`i`/`ib` forms are binary (`1kb` = `1ki` = `1kib` = 1024),
/// exactly as nats-server's parser maps them.
fn suffix_multiplier(suffix: &str) -> Option<i64> {
    let lower = suffix.to_ascii_lowercase();
    let (letter, rest) = lower.split_at(lower.len().min(1));
    let exp = match letter {
        "" => return Some(1),
        "k" => 1,
        "m" => 2,
        "g" => 3,
        "t" => 4,
        "p" => 5,
        "e" => 6,
        _ => return None,
    };
    let base: i64 = match rest {
        "" => 1000,
        "b" | "i" | "ib" => 1024,
        _ => return None,
    };
    Some(base.pow(exp))
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(src: &'a str, file: Arc<Path>) -> Self {
        // A leading byte-order mark is invisible to users; skip it.
        let off = if src.starts_with('\u{feff}') { 3 } else { 0 };
        Cursor {
            src,
            off,
            line: 1,
            col: 1,
            file,
        }
    }

    pub(crate) fn file(&self) -> &Arc<Path> {
        &self.file
    }

    pub(crate) fn pos(&self) -> Pos {
        Pos::new(self.file.clone(), self.line, self.col)
    }

    pub(crate) fn err(&self, msg: impl Into<String>) -> ConfigError {
        self.pos().err(msg)
    }

    /// A syntax error about the construct at `at`, reported as nats-server's
    /// lexer does (`Parse error on line N: '…'`, N the line the cursor is
    /// on now) after our `file:line:col`.
    pub(crate) fn syntax(&self, at: &Pos, msg: impl Into<String>) -> ConfigError {
        ConfigError::Syntax {
            pos: at.clone(),
            line: self.line,
            message: msg.into(),
        }
    }

    /// A syntax error at the cursor.
    pub(crate) fn syntax_here(&self, msg: impl Into<String>) -> ConfigError {
        self.syntax(&self.pos(), msg)
    }

    pub(crate) fn peek(&self) -> Option<char> {
        self.src.get(self.off..).and_then(|s| s.chars().next())
    }

    fn peek2(&self) -> Option<char> {
        self.src.get(self.off..).and_then(|s| s.chars().nth(1))
    }

    pub(crate) fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.off += c.len_utf8();
        if c == '\n' {
            self.line = self.line.saturating_add(1);
            self.col = 1;
        } else {
            self.col = self.col.saturating_add(1);
        }
        Some(c)
    }

    pub(crate) fn skip_inline_ws(&mut self) {
        while self.peek().is_some_and(is_inline_ws) {
            self.bump();
        }
    }

    /// Skip every kind of white space, new lines included.
    pub(crate) fn skip_all_ws(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.bump();
        }
    }

    /// `#` or `//` starts a comment that runs to the end of the line.
    pub(crate) fn at_comment(&self) -> bool {
        match self.peek() {
            Some('#') => true,
            Some('/') => self.peek2() == Some('/'),
            _ => false,
        }
    }

    /// Consume a comment up to (not including) the end of line.
    pub(crate) fn skip_comment(&mut self) {
        while self.peek().is_some_and(|c| !is_nl(c)) {
            self.bump();
        }
    }

    pub(crate) fn skip_ws_and_comments(&mut self) {
        loop {
            self.skip_all_ws();
            if self.at_comment() {
                self.skip_comment();
            } else {
                return;
            }
        }
    }

    /// Read a key: `"quoted"`, `'quoted'` (no escapes, as in nats) or bare.
    /// Returns the key, its position and whether it was bare.
    pub(crate) fn lex_key(&mut self, in_map: bool) -> Result<(String, Pos, bool), ConfigError> {
        let pos = self.pos();
        if let Some(q @ ('"' | '\'')) = self.peek() {
            self.bump();
            let start = self.off;
            loop {
                match self.peek() {
                    None => {
                        // nats' words differ by place and quote.
                        let msg = match (in_map, q) {
                            (false, _) => "Unexpected EOF.",
                            (true, '"') => "Unexpected EOF processing double quoted map key.",
                            (true, _) => "Unexpected EOF processing quoted map key.",
                        };
                        return Err(self.syntax(&pos, msg));
                    }
                    Some(c) if c == q => break,
                    Some(_) => {
                        self.bump();
                    }
                }
            }
            let key = self.src[start..self.off].to_string();
            self.bump();
            return Ok((key, pos, false));
        }
        let start = self.off;
        // A bare key ends at white space or a separator. nats-server would
        // also swallow `{`/`[` into the key (`auth{` is key "auth{"); we stop
        // there, which only accepts more input.
        while let Some(c) = self.peek() {
            if c.is_whitespace() || matches!(c, '=' | ':' | '{' | '[') {
                break;
            }
            self.bump();
        }
        if self.off == start {
            return Err(self.syntax(
                &pos,
                format!("expected a key but got '{}'", show(self.peek())),
            ));
        }
        Ok((self.src[start..self.off].to_string(), pos, true))
    }

    /// Read the path after `include ` (quoted or bare, no escapes).
    pub(crate) fn lex_include_path(&mut self) -> Result<(String, Pos), ConfigError> {
        self.skip_inline_ws();
        let pos = self.pos();
        let what = match self.peek() {
            Some(q @ ('"' | '\'')) => {
                self.bump();
                let start = self.off;
                while self.peek().is_some_and(|c| c != q) {
                    self.bump();
                }
                if self.peek().is_none() {
                    let msg = if q == '"' {
                        "Unexpected EOF in double quoted include"
                    } else {
                        "Unexpected EOF in quoted include"
                    };
                    return Err(self.syntax(&pos, msg));
                }
                let path = self.src[start..self.off].to_string();
                self.bump();
                return Ok((path, pos));
            }
            Some('[') => "start of an array",
            Some('{') => "start of a map",
            Some('(') => "start of a block",
            Some(c) if c.is_ascii_digit() || c == '-' => "start of a number",
            Some('\\') => "escape sequence",
            Some(c) if is_nl(c) => "new line",
            None => "EOF",
            Some(_) => {
                let start = self.off;
                while let Some(c) = self.peek() {
                    if is_nl(c) || is_inline_ws(c) || matches!(c, ';' | '}' | '\'') {
                        break;
                    }
                    self.bump();
                }
                let path = self.src[start..self.off].to_string();
                // nats ends a bare include path at a quote and drops it.
                if self.peek() == Some('\'') {
                    self.bump();
                }
                return Ok((path, pos));
            }
        };
        Err(self.syntax(&pos, format!("Expected include value but found {what}")))
    }

    /// Read one value. Leading spaces/tabs are skipped; a new line before
    /// the value is an error (arrays and maps skip new lines themselves).
    pub(crate) fn lex_value(&mut self) -> Result<(Token, Pos), ConfigError> {
        self.skip_inline_ws();
        let pos = self.pos();
        let tok = match self.peek() {
            Some('[') => {
                self.bump();
                Token::ArrayStart
            }
            Some('{') => {
                self.bump();
                Token::MapStart
            }
            Some('\'') => self.lex_single_quoted(&pos)?,
            Some('"') => self.lex_double_quoted(&pos)?,
            Some('(') => self.lex_block(&pos)?,
            Some(c) if c == '-' || c.is_ascii_digit() => self.lex_number()?,
            Some('.') => return Err(self.syntax(&pos, "Floats must start with a digit")),
            // nats' lexer is past the new line when it says so.
            Some(c) if is_nl(c) => {
                return Err(ConfigError::Syntax {
                    pos,
                    line: self.line + 1,
                    message: "Expected value but found new line".into(),
                })
            }
            // Includes EOF: nats reads `key =` at the end as an empty string.
            _ => self.lex_bare(self.off, Vec::new(), false)?,
        };
        Ok((tok, pos))
    }

    fn lex_single_quoted(&mut self, pos: &Pos) -> Result<Token, ConfigError> {
        self.bump();
        let start = self.off;
        while self.peek().is_some_and(|c| c != '\'') {
            self.bump();
        }
        if self.peek().is_none() {
            return Err(self.syntax(pos, "Unexpected EOF."));
        }
        let s = self.src[start..self.off].to_string();
        self.bump();
        Ok(Token::Scalar(ValueKind::String(s), None))
    }

    fn lex_double_quoted(&mut self, pos: &Pos) -> Result<Token, ConfigError> {
        self.bump();
        let mut buf = Vec::new();
        loop {
            match self.peek() {
                None => return Err(self.syntax(pos, "Unexpected EOF.")),
                Some('"') => {
                    self.bump();
                    break;
                }
                Some('\\') => self.lex_escape(&mut buf)?,
                Some(c) => {
                    self.bump();
                    push_char(&mut buf, c);
                }
            }
        }
        Ok(Token::Scalar(ValueKind::String(into_string(buf)), None))
    }

    /// One escape sequence at the cursor (which is on the backslash).
    fn lex_escape(&mut self, buf: &mut Vec<u8>) -> Result<(), ConfigError> {
        let at = self.pos();
        self.bump();
        let c = self.bump();
        let decoded = match c {
            Some('t') => b'\t',
            Some('n') => b'\n',
            Some('r') => b'\r',
            Some('"') => b'"',
            Some('\\') => b'\\',
            Some('x') => {
                let hi = self.bump();
                let lo = if hi.is_some_and(is_nl) {
                    hi
                } else {
                    self.bump()
                };
                if hi.is_some_and(is_nl) || lo.is_some_and(is_nl) {
                    return Err(self.syntax(
                        &at,
                        "Expected two hexadecimal digits after '\\x', but hit end of line",
                    ));
                }
                match (
                    hi.and_then(|h| h.to_digit(16)),
                    lo.and_then(|l| l.to_digit(16)),
                ) {
                    // Both digits are < 16, so the byte cannot overflow.
                    (Some(h), Some(l)) => (h * 16 + l) as u8,
                    _ => {
                        return Err(self.syntax(
                            &at,
                            format!(
                                "Expected two hexadecimal digits after '\\x', but got '{}{}'",
                                show(hi),
                                show(lo)
                            ),
                        ))
                    }
                }
            }
            other => {
                return Err(self.syntax(
                    &at,
                    format!(
                        "Invalid escape character '{}'. Only the following escape characters \
                     are allowed: \\xXX, \\t, \\n, \\r, \\\", \\\\.",
                        show(other)
                    ),
                ))
            }
        };
        buf.push(decoded);
        Ok(())
    }

    /// `(` ... `)`: raw multi-line text ending at a `)` alone at the start
    /// of a line. As in nats, the text keeps the new line before the `)`.
    fn lex_block(&mut self, pos: &Pos) -> Result<Token, ConfigError> {
        self.bump();
        let start = self.off;
        let mut prev = None;
        loop {
            let here = self.off;
            match self.bump() {
                None => return Err(self.syntax(pos, "Unexpected EOF processing block.")),
                Some(')')
                    if prev == Some('\n') && matches!(self.peek(), None | Some('\n' | '\r')) =>
                {
                    let s = self.src[start..here].to_string();
                    return Ok(Token::Scalar(ValueKind::String(s), None));
                }
                c => prev = c,
            }
        }
    }

    /// A value starting with a digit or `-`: integer (with optional size
    /// suffix), float, datetime, IP-like string (`127.0.0.1:4222`), or a
    /// bare string that merely starts with a digit (`30s`).
    fn lex_number(&mut self) -> Result<Token, ConfigError> {
        let start = self.off;
        let neg = self.peek() == Some('-');
        if neg {
            self.bump();
            match self.peek() {
                Some(c) if c.is_ascii_digit() => {}
                Some('.') => {
                    return Err(self.syntax_here("Floats must start with a digit, not '.'."))
                }
                c => {
                    return Err(self.syntax_here(format!("Expected a digit but got '{}'.", show(c))))
                }
            }
        }
        let digits_start = self.off;
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.bump();
        }
        let ndigits = self.off - digits_start;
        match self.peek() {
            Some('-') if !neg => {
                if ndigits != 4 {
                    return Err(self.syntax_here("All ISO8601 dates must be in full Zulu form."));
                }
                self.lex_datetime(start)
            }
            Some('.') => {
                self.bump();
                if !self.peek().is_some_and(|c| c.is_ascii_digit()) {
                    return Err(self.syntax_here(format!(
                        "Floats must have a digit after the '.', but got '{}' instead.",
                        show(self.peek())
                    )));
                }
                while self.peek().is_some_and(|c| c.is_ascii_digit()) {
                    self.bump();
                }
                if self.peek() == Some('.') {
                    // A second dot: an address such as 127.0.0.1:4222.
                    while self
                        .peek()
                        .is_some_and(|c| c.is_ascii_digit() || matches!(c, '.' | ':' | '-'))
                    {
                        self.bump();
                    }
                    let s = self.src[start..self.off].to_string();
                    return Ok(Token::Scalar(ValueKind::String(s), None));
                }
                let text = &self.src[start..self.off];
                let f: f64 = text
                    .parse()
                    .map_err(|_| self.err(format!("expected float, but got '{text}'")))?;
                Ok(Token::Scalar(ValueKind::Float(f), None))
            }
            Some(c) if is_size_suffix(c) => {
                self.bump();
                while self
                    .peek()
                    .is_some_and(|c| matches!(c, 'b' | 'B' | 'i' | 'I'))
                {
                    self.bump();
                }
                // As in nats, a digit right after the suffix ends the number
                // too (`1k5` is 1000 followed by a stray 5, an error later).
                if ends_number(self.peek()) || self.peek().is_some_and(|c| c.is_ascii_digit()) {
                    self.int_token(start, digits_start + ndigits)
                } else {
                    // Not a size after all (`500ms`, `1kx`): a bare string.
                    self.lex_bare(start, Vec::new(), false)
                }
            }
            c if neg || ends_number(c) => self.int_token(start, digits_start + ndigits),
            _ => self.lex_bare(start, Vec::new(), false),
        }
    }

    fn int_token(&self, start: usize, digits_end: usize) -> Result<Token, ConfigError> {
        let text = &self.src[start..self.off];
        let at = Pos::new(self.file.clone(), self.line, self.col);
        let out_of_range = || at.err(format!("integer '{text}' is out of the range"));
        let n: i64 = self.src[start..digits_end]
            .parse()
            .map_err(|_| out_of_range())?;
        let suffix = &self.src[digits_end..self.off];
        let mult = suffix_multiplier(suffix)
            .ok_or_else(|| at.err(format!("invalid size suffix '{suffix}' in '{text}'")))?;
        let v = n.checked_mul(mult).ok_or_else(out_of_range)?;
        let literal = (!suffix.is_empty()).then(|| Box::from(text));
        Ok(Token::Scalar(ValueKind::Int(v), literal))
    }

    /// `YYYY-MM-DDTHH:MM:SSZ`; the year has been consumed.
    fn lex_datetime(&mut self, start: usize) -> Result<Token, ConfigError> {
        for want in "-00-00T00:00:00Z".chars() {
            let c = self.peek();
            let ok = if want == '0' {
                c.is_some_and(|c| c.is_ascii_digit())
            } else {
                c == Some(want)
            };
            if !ok {
                let expected = if want == '0' {
                    "digit".to_string()
                } else {
                    format!("'{want}'")
                };
                return Err(self.syntax_here(format!(
                    "Expected {expected} in ISO8601 datetime, but found '{}' instead.",
                    show(c)
                )));
            }
            self.bump();
        }
        let text = &self.src[start..self.off];
        // Only ASCII digits were accepted above, so these slices exist.
        let field = |r: std::ops::Range<usize>| text.get(r).and_then(|s| s.parse::<u32>().ok());
        let valid = matches!(field(5..7), Some(1..=12))
            && matches!(field(8..10), Some(1..=31))
            && matches!(field(11..13), Some(0..=23))
            && matches!(field(14..16), Some(0..=59))
            && matches!(field(17..19), Some(0..=59));
        if !valid {
            return Err(self.err(format!(
                "expected Zulu formatted DateTime, but got '{text}'"
            )));
        }
        Ok(Token::Scalar(ValueKind::Datetime(text.to_string()), None))
    }

    /// A bare string from `start` (some of it may already be consumed) up to
    /// a terminator; escapes are processed. Then, as in nats, an unescaped
    /// `true/false/yes/no/on/off` is a boolean and `$NAME` a variable.
    fn lex_bare(
        &mut self,
        start: usize,
        mut buf: Vec<u8>,
        mut escaped: bool,
    ) -> Result<Token, ConfigError> {
        buf.extend_from_slice(&self.src.as_bytes()[start..self.off]);
        loop {
            let c = self.peek();
            if ends_bare_string(c) {
                break;
            }
            match c {
                // nats ends a bare string at a single quote and drops it.
                Some('\'') => {
                    self.bump();
                    break;
                }
                Some('\\') => {
                    self.lex_escape(&mut buf)?;
                    escaped = true;
                }
                Some(c) => {
                    self.bump();
                    push_char(&mut buf, c);
                }
                None => break,
            }
        }
        let s = into_string(buf);
        if !escaped {
            if let Some((_, b)) = BOOL_WORDS.iter().find(|(w, _)| s.eq_ignore_ascii_case(w)) {
                return Ok(Token::Scalar(ValueKind::Bool(*b), None));
            }
            if let Some(name) = s.strip_prefix('$') {
                return Ok(Token::Variable(name.to_string()));
            }
        }
        Ok(Token::Scalar(ValueKind::String(s), None))
    }
}

fn push_char(buf: &mut Vec<u8>, c: char) {
    let mut tmp = [0u8; 4];
    buf.extend_from_slice(c.encode_utf8(&mut tmp).as_bytes());
}

/// `\xHH` escapes can produce bytes that are not UTF-8; keep what we can
/// rather than fail (Go strings are bytes and would accept them).
fn into_string(buf: Vec<u8>) -> String {
    match String::from_utf8(buf) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lex(src: &str) -> Result<Token, ConfigError> {
        let mut c = Cursor::new(src, Arc::from(Path::new("t.conf")));
        c.lex_value().map(|(t, _)| t)
    }

    fn scalar(src: &str) -> ValueKind {
        match lex(src) {
            Ok(Token::Scalar(k, _)) => k,
            other => panic!("{src:?}: {other:?}"),
        }
    }

    #[test]
    fn size_suffixes_match_nats() {
        let cases = [
            ("1k", 1000),
            ("1K", 1000),
            ("1kb", 1024),
            ("1KB", 1024),
            ("1Ki", 1024),
            ("1KiB", 1024),
            ("2m", 2_000_000),
            ("2MB", 2 * 1024 * 1024),
            ("512mb", 512 * 1024 * 1024),
            ("1g", 1_000_000_000),
            ("1GB", 1 << 30),
            ("1t", 1_000_000_000_000),
            ("1TB", 1 << 40),
            ("1p", 1_000_000_000_000_000),
            ("1PiB", 1 << 50),
            ("1e", 1_000_000_000_000_000_000),
            ("1EB", 1 << 60),
            ("-1k", -1000),
            ("-2KB", -2048),
        ];
        for (src, want) in cases {
            assert_eq!(scalar(src), ValueKind::Int(want), "{src}");
        }
    }

    #[test]
    fn numbers_that_are_strings() {
        for s in [
            "30s",
            "500ms",
            "1h",
            "1kx",
            "4222abc",
            "127.0.0.1:4222",
            "0.0.0.0",
            "1.2.3",
        ] {
            assert_eq!(scalar(s), ValueKind::String(s.to_string()), "{s}");
        }
    }

    #[test]
    fn number_errors() {
        for s in [
            "8EB",
            "9223372036854775808",
            "1kbb",
            "1.",
            "-x",
            "-.5",
            "12-1",
            "2020-13-01T00:00:00Z",
        ] {
            assert!(lex(s).is_err(), "{s} should fail");
        }
    }
}
