//! A small subject matcher: tokens separated by `.`, `*` matches exactly one
//! token, `>` (last token only) matches one or more remaining tokens. The log
//! only needs matching, not a full subscription trie.

/// One or more subject filters, any of which may match. An empty list, or a
/// list holding `>`, matches everything.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    patterns: Vec<Pattern>,
    all: bool,
}

#[derive(Debug, Clone)]
struct Pattern {
    raw: Box<[u8]>,
    literal: bool,
}

impl Filter {
    /// Matches every subject.
    pub fn all() -> Filter {
        Filter {
            patterns: Vec::new(),
            all: true,
        }
    }

    /// Builds a filter from patterns; empty strings are ignored.
    pub fn new<S: AsRef<str>>(patterns: &[S]) -> Filter {
        let mut f = Filter::default();
        for p in patterns {
            let p = p.as_ref();
            if p.is_empty() {
                continue;
            }
            if p == ">" {
                f.all = true;
            }
            f.patterns.push(Pattern {
                raw: p.as_bytes().into(),
                literal: is_literal(p.as_bytes()),
            });
        }
        if f.patterns.is_empty() {
            f.all = true;
        }
        f
    }

    pub fn one(pattern: &str) -> Filter {
        Filter::new(&[pattern])
    }

    pub fn matches_all(&self) -> bool {
        self.all
    }

    /// The single literal subject this filter names, if that is what it is.
    pub fn as_literal(&self) -> Option<&[u8]> {
        match self.patterns.as_slice() {
            [p] if p.literal && !self.all => Some(&p.raw),
            _ => None,
        }
    }

    pub fn matches(&self, subject: &[u8]) -> bool {
        self.all
            || self.patterns.iter().any(|p| {
                if p.literal {
                    *p.raw == *subject
                } else {
                    matches(&p.raw, subject)
                }
            })
    }
}

/// True when `subject` has no wildcard tokens.
pub fn is_literal(subject: &[u8]) -> bool {
    !subject
        .split(|b| *b == b'.')
        .any(|t| t == b"*" || t == b">")
}

/// Does the (possibly wildcarded) `pattern` match the literal `subject`?
pub fn matches(pattern: &[u8], subject: &[u8]) -> bool {
    let mut pt = pattern.split(|b| *b == b'.');
    let mut st = subject.split(|b| *b == b'.');
    loop {
        match (pt.next(), st.next()) {
            (None, None) => return true,
            (Some(b">"), Some(_)) => return pt.next().is_none(),
            (Some(b"*"), Some(_)) => {}
            (Some(p), Some(s)) if p == s => {}
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_matching() {
        assert!(matches(b"a.b", b"a.b"));
        assert!(!matches(b"a.b", b"a.c"));
        assert!(matches(b"a.*", b"a.c"));
        assert!(!matches(b"a.*", b"a.c.d"));
        assert!(matches(b"a.>", b"a.c.d"));
        assert!(!matches(b"a.>", b"a"));
        assert!(matches(b">", b"x"));
        assert!(matches(b"*.b.>", b"x.b.y.z"));
        assert!(!matches(b"*.b.>", b"x.c.y"));
        assert!(!matches(b"a.b", b"a.b.c"));
        assert!(!matches(b"a.b.c", b"a.b"));
        // A `*` inside a token is a literal character, not a wildcard.
        assert!(!matches(b"a*", b"ab"));
    }

    #[test]
    fn filters() {
        let f = Filter::new(&["a.*", "b.>"]);
        assert!(f.matches(b"a.x"));
        assert!(f.matches(b"b.x.y"));
        assert!(!f.matches(b"c"));
        assert!(Filter::new::<&str>(&[]).matches_all());
        assert!(Filter::one(">").matches_all());
        assert_eq!(Filter::one("a.b").as_literal(), Some(&b"a.b"[..]));
        assert_eq!(Filter::one("a.*").as_literal(), None);
    }
}
