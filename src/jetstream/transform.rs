//! Subject transforms as streams use them (`subject_transform`,
//! `republish`): a source filter and a destination whose `{{wildcard(n)}}`
//! (or legacy `$n`) tokens take the source's n-th wildcard token.

use super::errors::ApiError;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    /// 1-based index of the source wildcard.
    Wildcard(usize),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transform {
    src: String,
    dest: Vec<Part>,
    /// The source ends in `>` and the destination does too: the rest of
    /// the subject is carried over.
    tail: bool,
}

impl Transform {
    /// `src` empty means `>`. Errors name what is wrong, as the reference's
    /// "stream transform" errors do.
    pub fn new(src: &str, dest: &str) -> Result<Transform, String> {
        let src = if src.is_empty() { ">" } else { src };
        if !crate::subject::is_valid_filter(src.as_bytes()) {
            return Err(format!("invalid source subject {src:?}"));
        }
        let wildcards = src.split('.').filter(|t| *t == "*").count();
        let src_tail = src.ends_with('>');
        let mut parts = Vec::new();
        let mut tail = false;
        let tokens: Vec<&str> = dest.split('.').collect();
        for (i, t) in tokens.iter().enumerate() {
            let t = t.trim();
            let n = if let Some(inner) = t.strip_prefix("{{").and_then(|r| r.strip_suffix("}}")) {
                let inner = inner.trim();
                let lower = inner.to_ascii_lowercase();
                let arg = lower
                    .strip_prefix("wildcard(")
                    .and_then(|r| r.strip_suffix(')'))
                    .ok_or_else(|| format!("unsupported transform function {inner:?}"))?;
                Some(
                    arg.trim()
                        .parse::<usize>()
                        .map_err(|_| format!("bad wildcard index in {t:?}"))?,
                )
            } else if let Some(d) = t.strip_prefix('$') {
                Some(
                    d.parse::<usize>()
                        .map_err(|_| format!("bad wildcard index in {t:?}"))?,
                )
            } else {
                None
            };
            match n {
                Some(n) if n == 0 || n > wildcards => {
                    return Err(format!("wildcard index {n} out of range in {dest:?}"));
                }
                Some(n) => parts.push(Part::Wildcard(n)),
                None if t == ">" && i == tokens.len() - 1 && src_tail => tail = true,
                None if t == "*" || t == ">" => {
                    return Err(format!(
                        "destination {dest:?} has wildcards the source does not map"
                    ));
                }
                None if t.is_empty() => return Err(format!("invalid destination {dest:?}")),
                None => parts.push(Part::Literal(t.to_string())),
            }
        }
        Ok(Transform {
            src: src.to_string(),
            dest: parts,
            tail,
        })
    }

    pub fn matches(&self, subject: &str) -> bool {
        crate::subject::matches(self.src.as_bytes(), subject.as_bytes())
    }

    /// The transformed subject, or `None` when `subject` does not match.
    pub fn apply(&self, subject: &str) -> Option<String> {
        if !self.matches(subject) {
            return None;
        }
        let src: Vec<&str> = self.src.split('.').collect();
        let subj: Vec<&str> = subject.split('.').collect();
        let wild: Vec<&str> = src
            .iter()
            .enumerate()
            .filter(|(_, t)| **t == "*")
            .filter_map(|(i, _)| subj.get(i).copied())
            .collect();
        let mut out: Vec<String> = Vec::with_capacity(self.dest.len() + 1);
        for p in &self.dest {
            match p {
                Part::Literal(l) => out.push(l.clone()),
                Part::Wildcard(n) => out.push(wild.get(n - 1)?.to_string()),
            }
        }
        if self.tail {
            let from = src.len() - 1;
            out.extend(subj.get(from..)?.iter().map(|s| s.to_string()));
        }
        Some(out.join("."))
    }
}

/// The `{src, dest}` object of a stream config, checked.
pub fn from_config(v: &serde_json::Value, what: &str) -> Result<Transform, ApiError> {
    let src = v.get("src").and_then(|s| s.as_str()).unwrap_or("");
    let dest = v.get("dest").and_then(|s| s.as_str()).unwrap_or("");
    if dest.is_empty() {
        return Err(ApiError::invalid_config(format!(
            "{what} requires a destination"
        )));
    }
    Transform::new(src, dest)
        .map_err(|e| ApiError::new_pub(400, 10156, format!("stream transform: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_and_tails() {
        let t = Transform::new("orders.*.*", "o.{{wildcard(2)}}.{{ wildcard(1) }}").unwrap();
        assert_eq!(t.apply("orders.eu.new").as_deref(), Some("o.new.eu"));
        assert_eq!(t.apply("other.x.y"), None);
        let t = Transform::new("a.*", "b.$1").unwrap();
        assert_eq!(t.apply("a.x").as_deref(), Some("b.x"));
        let t = Transform::new("in.>", "out.>").unwrap();
        assert_eq!(t.apply("in.a.b").as_deref(), Some("out.a.b"));
        let t = Transform::new("", "copy.>").unwrap();
        assert_eq!(t.apply("x.y").as_deref(), Some("copy.x.y"));
    }

    #[test]
    fn refuses_what_it_cannot_do() {
        assert!(Transform::new("a.*", "b.{{partition(3,1)}}").is_err());
        assert!(Transform::new("a.*", "b.$2").is_err());
        assert!(Transform::new("a.b", "c.*").is_err());
    }
}
