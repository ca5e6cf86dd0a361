//! Incremental parser for what clients send (CONNECT, PUB, HPUB, SUB, UNSUB,
//! PING, PONG, ...). It consumes from a `BytesMut` read buffer and hands out
//! `Bytes` that share that buffer, so payloads are never copied here.

use bytes::{Buf, Bytes, BytesMut};

/// One operation from a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientOp {
    Connect(Bytes),
    /// PUB and HPUB. `hdr_len` is `Some` for HPUB; `msg` holds headers
    /// followed by payload.
    Pub {
        subject: Bytes,
        reply: Option<Bytes>,
        hdr_len: Option<usize>,
        msg: Bytes,
    },
    Sub {
        subject: Bytes,
        queue: Option<Bytes>,
        sid: Bytes,
    },
    Unsub {
        sid: Bytes,
        max: Option<u64>,
    },
    Ping,
    Pong,
    Info,
    Ok,
    Err(Bytes),
}

/// Why parsing stopped. Every variant ends the connection; `client_error`
/// says what the client is told first (None: closed without a word, as the
/// reference does for malformed arguments).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("Client parser ERROR: proto={0:?}")]
    UnknownOp(String),
    #[error("maximum control line exceeded: max_control_line {0}")]
    MaxControlLine(usize),
    #[error("maximum payload exceeded: {size} vs {max}")]
    MaxPayload { size: usize, max: usize },
    #[error("{op} Parse Error: {args:?}")]
    BadArgs { op: &'static str, args: String },
    #[error("{op} Bad or Missing Size: {args:?}")]
    BadSize { op: &'static str, args: String },
    #[error("processHeaderPub Header Size larger then TotalSize: {0:?}")]
    HeaderTooLarge(String),
}

impl ParseError {
    pub fn client_error(&self) -> Option<&'static str> {
        match self {
            ParseError::UnknownOp(_) => Some("Unknown Protocol Operation"),
            ParseError::MaxControlLine(_) => Some("maximum control line exceeded"),
            ParseError::MaxPayload { .. } => Some("Maximum Payload Violation"),
            _ => None,
        }
    }
}

#[derive(Debug)]
enum State {
    Line,
    Payload {
        subject: Bytes,
        reply: Option<Bytes>,
        hdr_len: Option<usize>,
        total: usize,
    },
}

pub struct Parser {
    state: State,
    max_control_line: usize,
    max_payload: usize,
}

fn snippet(b: &[u8]) -> String {
    String::from_utf8_lossy(&b[..b.len().min(32)]).into_owned()
}

fn split_args(line: &Bytes) -> Vec<Bytes> {
    let mut out = Vec::with_capacity(4);
    let mut start = None;
    for (i, &c) in line.iter().enumerate() {
        let ws = c == b' ' || c == b'\t';
        match (ws, start) {
            (true, Some(s)) => {
                out.push(line.slice(s..i));
                start = None;
            }
            (false, None) => start = Some(i),
            _ => {}
        }
    }
    if let Some(s) = start {
        out.push(line.slice(s..));
    }
    out
}

fn parse_size(b: &[u8]) -> Option<usize> {
    if b.is_empty() || b.len() > 12 {
        return None;
    }
    let mut n: usize = 0;
    for &c in b {
        if !c.is_ascii_digit() {
            return None;
        }
        n = n * 10 + (c - b'0') as usize;
    }
    Some(n)
}

fn is_op_start(c: u8) -> bool {
    matches!(
        c.to_ascii_uppercase(),
        b'P' | b'S' | b'U' | b'C' | b'H' | b'I' | b'+' | b'-' | b'\r' | b'\n'
    )
}

impl Parser {
    pub fn new(max_control_line: usize, max_payload: usize) -> Self {
        Parser {
            state: State::Line,
            max_control_line,
            max_payload,
        }
    }

    pub fn set_max_payload(&mut self, max: usize) {
        self.max_payload = max;
    }

    /// Returns the next complete operation, `Ok(None)` when more bytes are
    /// needed.
    pub fn next(&mut self, buf: &mut BytesMut) -> Result<Option<ClientOp>, ParseError> {
        loop {
            match &self.state {
                State::Payload { total, .. } => {
                    let total = *total;
                    if buf.len() < total + 2 {
                        return Ok(None);
                    }
                    if &buf[total..total + 2] != b"\r\n" {
                        return Err(ParseError::UnknownOp(snippet(&buf[total..])));
                    }
                    let State::Payload {
                        subject,
                        reply,
                        hdr_len,
                        ..
                    } = std::mem::replace(&mut self.state, State::Line)
                    else {
                        unreachable!("state checked above");
                    };
                    let msg = buf.split_to(total).freeze();
                    buf.advance(2);
                    return Ok(Some(ClientOp::Pub {
                        subject,
                        reply,
                        hdr_len,
                        msg,
                    }));
                }
                State::Line => {
                    if buf.is_empty() {
                        return Ok(None);
                    }
                    // Fail fast on garbage, as the reference does, rather than
                    // waiting for a line end that may never come.
                    if !is_op_start(buf[0]) {
                        return Err(ParseError::UnknownOp(snippet(buf)));
                    }
                    let Some(nl) = memchr::memchr(b'\n', buf) else {
                        if buf.len() > self.max_control_line {
                            return Err(ParseError::MaxControlLine(self.max_control_line));
                        }
                        return Ok(None);
                    };
                    if nl > self.max_control_line {
                        return Err(ParseError::MaxControlLine(self.max_control_line));
                    }
                    let mut line = buf.split_to(nl + 1).freeze();
                    line.truncate(nl);
                    if line.last() == Some(&b'\r') {
                        line.truncate(nl - 1);
                    }
                    if line.is_empty() {
                        continue;
                    }
                    if let Some(op) = self.control_line(line)? {
                        return Ok(Some(op));
                    }
                }
            }
        }
    }

    fn control_line(&mut self, line: Bytes) -> Result<Option<ClientOp>, ParseError> {
        let op_end = line
            .iter()
            .position(|&c| c == b' ' || c == b'\t')
            .unwrap_or(line.len());
        let mut op = [0u8; 8];
        if op_end > op.len() {
            return Err(ParseError::UnknownOp(snippet(&line)));
        }
        for (d, s) in op.iter_mut().zip(&line[..op_end]) {
            *d = s.to_ascii_uppercase();
        }
        let rest = line.slice(op_end..);
        match &op[..op_end] {
            b"PUB" => self.pub_args(rest, false).map(|_| None),
            b"HPUB" => self.pub_args(rest, true).map(|_| None),
            b"SUB" => {
                let a = split_args(&rest);
                let (subject, queue, sid) = match a.len() {
                    2 => (a[0].clone(), None, a[1].clone()),
                    3 => (a[0].clone(), Some(a[1].clone()), a[2].clone()),
                    _ => {
                        return Err(ParseError::BadArgs {
                            op: "processSub",
                            args: trimmed(&rest),
                        })
                    }
                };
                Ok(Some(ClientOp::Sub {
                    subject,
                    queue,
                    sid,
                }))
            }
            b"UNSUB" => {
                let a = split_args(&rest);
                match a.len() {
                    1 => Ok(Some(ClientOp::Unsub {
                        sid: a[0].clone(),
                        max: None,
                    })),
                    // A bad max is ignored by the reference: the sub goes.
                    2 => Ok(Some(ClientOp::Unsub {
                        sid: a[0].clone(),
                        max: parse_size(&a[1]).map(|n| n as u64),
                    })),
                    _ => Err(ParseError::UnknownOp(snippet(&line))),
                }
            }
            b"CONNECT" => Ok(Some(ClientOp::Connect(trim_bytes(rest)))),
            b"PING" => Ok(Some(ClientOp::Ping)),
            b"PONG" => Ok(Some(ClientOp::Pong)),
            b"INFO" => Ok(Some(ClientOp::Info)),
            b"+OK" => Ok(Some(ClientOp::Ok)),
            b"-ERR" => Ok(Some(ClientOp::Err(trim_bytes(rest)))),
            _ => Err(ParseError::UnknownOp(snippet(&line))),
        }
    }

    fn pub_args(&mut self, rest: Bytes, headers: bool) -> Result<(), ParseError> {
        let op = if headers {
            "processHeaderPub"
        } else {
            "processPub"
        };
        let a = split_args(&rest);
        let n_sizes = if headers { 2 } else { 1 };
        if a.len() < 1 + n_sizes || a.len() > 2 + n_sizes {
            return Err(ParseError::BadArgs {
                op,
                args: trimmed(&rest),
            });
        }
        let subject = a[0].clone();
        let reply = (a.len() == 2 + n_sizes).then(|| a[1].clone());
        let sizes: Vec<Option<usize>> = a[a.len() - n_sizes..]
            .iter()
            .map(|s| parse_size(s))
            .collect();
        let bad_size = || ParseError::BadSize {
            op,
            args: trimmed(&rest),
        };
        let total = sizes[n_sizes - 1].ok_or_else(bad_size)?;
        let hdr_len = if headers {
            let h = sizes[0].ok_or_else(bad_size)?;
            if h > total {
                return Err(ParseError::HeaderTooLarge(trimmed(&rest)));
            }
            Some(h)
        } else {
            None
        };
        if total > self.max_payload {
            return Err(ParseError::MaxPayload {
                size: total,
                max: self.max_payload,
            });
        }
        self.state = State::Payload {
            subject,
            reply,
            hdr_len,
            total,
        };
        Ok(())
    }
}

fn trim_bytes(b: Bytes) -> Bytes {
    let start = b
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .unwrap_or(b.len());
    let end = b
        .iter()
        .rposition(|c| !c.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    b.slice(start..end.max(start))
}

fn trimmed(b: &Bytes) -> String {
    String::from_utf8_lossy(&trim_bytes(b.clone())).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse_all(input: &[u8], chunks: &[usize]) -> Result<Vec<ClientOp>, ParseError> {
        let mut p = Parser::new(4096, 1 << 20);
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        let mut pos = 0;
        let mut ci = 0;
        while pos < input.len() {
            let n = chunks
                .get(ci)
                .copied()
                .unwrap_or(input.len())
                .max(1)
                .min(input.len() - pos);
            ci += 1;
            buf.extend_from_slice(&input[pos..pos + n]);
            pos += n;
            while let Some(op) = p.next(&mut buf)? {
                out.push(op);
            }
        }
        Ok(out)
    }

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    #[test]
    fn basic_ops() {
        let ops = parse_all(
            b"CONNECT {\"verbose\":false}\r\nPUB foo 3\r\nabc\r\nsub foo q 1\r\nHPUB a r 12 14\r\nNATS/1.0\r\n\r\nhi\r\nUNSUB 1 5\r\nPING\r\nPONG\n",
            &[],
        )
        .unwrap();
        assert_eq!(
            ops,
            vec![
                ClientOp::Connect(b("{\"verbose\":false}")),
                ClientOp::Pub {
                    subject: b("foo"),
                    reply: None,
                    hdr_len: None,
                    msg: b("abc")
                },
                ClientOp::Sub {
                    subject: b("foo"),
                    queue: Some(b("q")),
                    sid: b("1")
                },
                ClientOp::Pub {
                    subject: b("a"),
                    reply: Some(b("r")),
                    hdr_len: Some(12),
                    msg: b("NATS/1.0\r\n\r\nhi")
                },
                ClientOp::Unsub {
                    sid: b("1"),
                    max: Some(5)
                },
                ClientOp::Ping,
                ClientOp::Pong,
            ]
        );
    }

    #[test]
    fn errors_match_reference() {
        let e = parse_all(b"FOO\r\n", &[]).unwrap_err();
        assert_eq!(e.client_error(), Some("Unknown Protocol Operation"));
        let e = parse_all(b"PUB foo 2\r\nabc\r\n", &[]).unwrap_err();
        assert_eq!(e.client_error(), Some("Unknown Protocol Operation"));
        let e = parse_all(b"PUB foo\r\n", &[]).unwrap_err();
        assert_eq!(e.client_error(), None);
        let e = parse_all(b"PUB foo x\r\n", &[]).unwrap_err();
        assert!(matches!(e, ParseError::BadSize { .. }));
        let e = parse_all(b"PUB foo 2000000\r\n", &[]).unwrap_err();
        assert_eq!(e.client_error(), Some("Maximum Payload Violation"));
        let long = format!("PUB {} 1\r\n", "a".repeat(5000));
        let e = parse_all(long.as_bytes(), &[]).unwrap_err();
        assert_eq!(e.client_error(), Some("maximum control line exceeded"));
        let e = parse_all(&[b'X'; 100], &[]).unwrap_err();
        assert_eq!(e.client_error(), Some("Unknown Protocol Operation"));
        let e = parse_all(b"HPUB a 5 3\r\n", &[]).unwrap_err();
        assert!(matches!(e, ParseError::HeaderTooLarge(_)));
    }

    fn op_strategy() -> impl Strategy<Value = (String, ClientOp)> {
        let subj = "[a-z]{1,5}(\\.[a-z]{1,5}){0,2}";
        prop_oneof![
            (subj, proptest::option::of("[A-Z]{1,4}"), proptest::collection::vec(any::<u8>(), 0..40))
                .prop_map(|(s, r, p)| {
                    let mut text = format!("PUB {s} ");
                    if let Some(r) = &r {
                        text.push_str(&format!("{r} "));
                    }
                    text.push_str(&format!("{}\r\n", p.len()));
                    let mut raw = text.into_bytes();
                    raw.extend_from_slice(&p);
                    raw.extend_from_slice(b"\r\n");
                    (
                        unsafe_latin1(&raw),
                        ClientOp::Pub {
                            subject: b(&s),
                            reply: r.map(|r| b(&r)),
                            hdr_len: None,
                            msg: Bytes::from(p),
                        },
                    )
                }),
            (subj, "[0-9]{1,4}").prop_map(|(s, sid)| (
                format!("SUB {s} {sid}\r\n"),
                ClientOp::Sub { subject: b(&s), queue: None, sid: b(&sid) }
            )),
            Just(("PING\r\n".to_string(), ClientOp::Ping)),
            Just(("PONG\r\n".to_string(), ClientOp::Pong)),
        ]
    }

    /// Keeps arbitrary payload bytes intact through a `String` (one char per
    /// byte) so the strategy can concatenate frames.
    fn unsafe_latin1(raw: &[u8]) -> String {
        raw.iter().map(|&c| c as char).collect()
    }

    proptest! {
        /// However a valid stream is chunked, the same operations come out.
        #[test]
        fn chunking_is_invisible(
            frames in proptest::collection::vec(op_strategy(), 1..20),
            chunks in proptest::collection::vec(1usize..64, 0..200),
        ) {
            let input: Vec<u8> = frames.iter().flat_map(|(t, _)| t.chars().map(|c| c as u8)).collect();
            let want: Vec<ClientOp> = frames.into_iter().map(|(_, op)| op).collect();
            let got = parse_all(&input, &chunks).unwrap();
            prop_assert_eq!(got, want);
        }

        /// Arbitrary bytes never panic the parser.
        #[test]
        fn arbitrary_input_never_panics(input in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse_all(&input, &[7, 3, 100]);
        }
    }
}
