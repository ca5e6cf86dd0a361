//! Reading and writing the NATS header block (`NATS/1.0\r\nKey: v\r\n\r\n`)
//! for the JetStream headers a publish may carry.

pub const MSG_ID: &str = "Nats-Msg-Id";
pub const EXPECTED_STREAM: &str = "Nats-Expected-Stream";
pub const EXPECTED_LAST_SEQ: &str = "Nats-Expected-Last-Sequence";
pub const EXPECTED_LAST_SUBJ_SEQ: &str = "Nats-Expected-Last-Subject-Sequence";
pub const EXPECTED_LAST_MSG_ID: &str = "Nats-Expected-Last-Msg-Id";
pub const ROLLUP: &str = "Nats-Rollup";

/// The value of header `name` (first occurrence, exact key as the
/// reference matches it), trimmed.
pub fn get<'a>(block: &'a [u8], name: &str) -> Option<&'a str> {
    if block.is_empty() {
        return None;
    }
    let text = std::str::from_utf8(block).ok()?;
    let mut lines = text.split("\r\n");
    lines.next()?; // NATS/1.0 [status]
    for line in lines {
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            if k.trim() == name {
                return Some(v.trim());
            }
        }
    }
    None
}

/// Builds a header block from (key, value) pairs, with an optional
/// status line (`NATS/1.0 404 No Messages`).
pub fn build(status: Option<&str>, pairs: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(b"NATS/1.0");
    if let Some(s) = status {
        out.push(b' ');
        out.extend_from_slice(s.as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    for (k, v) in pairs {
        out.extend_from_slice(k.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(v.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_values() {
        let b = b"NATS/1.0\r\nNats-Msg-Id: abc\r\nX: y\r\n\r\n";
        assert_eq!(get(b, MSG_ID), Some("abc"));
        assert_eq!(get(b, "X"), Some("y"));
        assert_eq!(get(b, "Nope"), None);
        assert_eq!(get(b"", MSG_ID), None);
    }

    #[test]
    fn builds_blocks() {
        assert_eq!(
            build(Some("404 No Messages"), &[]),
            b"NATS/1.0 404 No Messages\r\n\r\n"
        );
        let b = build(None, &[("Nats-Stream", "S")]);
        assert_eq!(get(&b, "Nats-Stream"), Some("S"));
    }
}
