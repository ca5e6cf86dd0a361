//! Subject syntax: validation and wildcard matching.
//!
//! A subject is a non-empty sequence of non-empty tokens separated by `.`.
//! Filters may use `*` (exactly one token) and `>` (one or more trailing
//! tokens, last position only). Whitespace is never allowed inside a subject.

/// True if `s` is a valid subscription filter (wildcards allowed).
pub fn is_valid_filter(s: &[u8]) -> bool {
    if s.is_empty() {
        return false;
    }
    let mut tokens = s.split(|&b| b == b'.').peekable();
    while let Some(tok) = tokens.next() {
        if tok.is_empty() || tok.iter().any(|b| b.is_ascii_whitespace()) {
            return false;
        }
        if tok == b">" && tokens.peek().is_some() {
            return false;
        }
    }
    true
}

/// True if `s` is a valid literal subject (what a publish may target).
pub fn is_valid_literal(s: &[u8]) -> bool {
    is_valid_filter(s) && s.split(|&b| b == b'.').all(|t| t != b"*" && t != b">")
}

/// True if `s` contains a wildcard token.
pub fn has_wildcard(s: &[u8]) -> bool {
    s.split(|&b| b == b'.').any(|t| t == b"*" || t == b">")
}

/// Does the literal `subject` match `filter`?
pub fn matches(filter: &[u8], subject: &[u8]) -> bool {
    let mut f = filter.split(|&b| b == b'.');
    let mut s = subject.split(|&b| b == b'.');
    loop {
        match (f.next(), s.next()) {
            (None, None) => return true,
            (Some(b">"), Some(_)) => return true,
            (Some(b"*"), Some(_)) => {}
            (Some(ft), Some(st)) if ft == st => {}
            _ => return false,
        }
    }
}

/// Could some literal subject match both filters? Used for permission and
/// interest overlap checks.
pub fn filters_overlap(a: &[u8], b: &[u8]) -> bool {
    let mut x = a.split(|&c| c == b'.');
    let mut y = b.split(|&c| c == b'.');
    loop {
        match (x.next(), y.next()) {
            (None, None) => return true,
            (Some(b">"), Some(_)) | (Some(_), Some(b">")) => return true,
            (Some(b"*"), Some(_)) | (Some(_), Some(b"*")) => {}
            (Some(p), Some(q)) if p == q => {}
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation() {
        for ok in ["a", "a.b", "a.*", "a.>", ">", "*", "*.*.c", "foo-bar_baz.1"] {
            assert!(is_valid_filter(ok.as_bytes()), "{ok}");
        }
        for bad in ["", ".", "a.", ".a", "a..b", "a.>.b", "a b", "a\tb", ">.a"] {
            assert!(!is_valid_filter(bad.as_bytes()), "{bad}");
        }
        assert!(is_valid_literal(b"a.b"));
        assert!(!is_valid_literal(b"a.*"));
        assert!(!is_valid_literal(b">"));
        // A token that merely contains '*' is literal in NATS.
        assert!(is_valid_literal(b"a*b.c"));
    }

    #[test]
    fn matching() {
        assert!(matches(b"a.*", b"a.b"));
        assert!(!matches(b"a.*", b"a.b.c"));
        assert!(matches(b"a.>", b"a.b.c"));
        assert!(!matches(b"a.>", b"a"));
        assert!(matches(b">", b"a"));
        assert!(matches(b"*.b", b"a.b"));
        assert!(!matches(b"a.b", b"a.c"));
    }

    #[test]
    fn overlap() {
        assert!(filters_overlap(b"a.*", b"a.b"));
        assert!(filters_overlap(b"a.>", b"*.b.c"));
        assert!(!filters_overlap(b"a.*", b"b.*"));
        assert!(!filters_overlap(b"a.*", b"a.b.c"));
    }
}
