//! Parser for what clients send (CONNECT, PUB, HPUB, SUB, UNSUB, PING,
//! PONG, ...). It is stateless and borrows from the read buffer: an
//! operation comes out as slices of the bytes the socket delivered, so the
//! hot path neither allocates nor touches reference counts. When an
//! operation is incomplete it says how many bytes it needs, so the reader can
//! wait for a large payload without re-parsing it chunk by chunk.

/// One operation from a client, borrowing the read buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientOp<'a> {
    Connect(&'a [u8]),
    /// PUB and HPUB. `hdr_len` is `Some` for HPUB; `msg` holds headers
    /// followed by payload.
    Pub {
        subject: &'a [u8],
        reply: Option<&'a [u8]>,
        hdr_len: Option<usize>,
        msg: &'a [u8],
    },
    Sub {
        subject: &'a [u8],
        queue: Option<&'a [u8]>,
        sid: &'a [u8],
    },
    Unsub {
        sid: &'a [u8],
        max: Option<u64>,
    },
    Ping,
    Pong,
    Info,
    Ok,
    Err(&'a [u8]),
}

/// The result of one parse step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed<'a> {
    /// An operation and how many bytes it used.
    Op(ClientOp<'a>, usize),
    /// Nothing complete yet; at least this many bytes (from the start of the
    /// buffer) are needed.
    Incomplete(usize),
    /// This many bytes of empty lines, and nothing complete after them:
    /// they are consumed, so what is carried to the next read never holds
    /// them (a stream of blank lines must not grow it).
    Blank(usize),
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

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_control_line: usize,
    pub max_payload: usize,
}

pub(crate) fn snippet(b: &[u8]) -> String {
    String::from_utf8_lossy(&b[..b.len().min(32)]).into_owned()
}

/// Splits on spaces/tabs into at most 5 arguments without allocating;
/// returns the count (6 means "too many").
pub(crate) fn split_args<'a>(line: &'a [u8], out: &mut [&'a [u8]; 5]) -> usize {
    let mut n = 0;
    let mut start = None;
    for (i, &c) in line.iter().enumerate() {
        let ws = c == b' ' || c == b'\t';
        match (ws, start) {
            (true, Some(s)) => {
                if n == out.len() {
                    return n + 1;
                }
                out[n] = &line[s..i];
                n += 1;
                start = None;
            }
            (false, None) => start = Some(i),
            _ => {}
        }
    }
    if let Some(s) = start {
        if n == out.len() {
            return n + 1;
        }
        out[n] = &line[s..];
        n += 1;
    }
    n
}

pub(crate) fn parse_size(b: &[u8]) -> Option<usize> {
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

pub(crate) fn trim(b: &[u8]) -> &[u8] {
    let start = b
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .unwrap_or(b.len());
    let end = b
        .iter()
        .rposition(|c| !c.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    &b[start..end.max(start)]
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(trim(b)).into_owned()
}

/// The common case, `PUB <subject> [reply] <size>\r\n` in upper case with
/// single spaces, parsed without the general tokenizer. `None` means "not
/// this simple": the general path decides (and reports errors).
fn fast_pub<'a>(buf: &'a [u8], limits: &Limits) -> Option<Parsed<'a>> {
    let rest = buf.strip_prefix(b"PUB ")?;
    let nl = memchr::memchr(b'\n', rest)?;
    if nl + 4 > limits.max_control_line {
        return None;
    }
    let line = rest[..nl].strip_suffix(b"\r")?;
    // Size: the digits after the last space.
    let sp = memchr::memrchr(b' ', line)?;
    let digits = &line[sp + 1..];
    if digits.is_empty() || digits.len() > 12 {
        return None;
    }
    let mut total = 0usize;
    for &c in digits {
        if !c.is_ascii_digit() {
            return None;
        }
        total = total * 10 + (c - b'0') as usize;
    }
    let head = &line[..sp];
    let (subject, reply) = match memchr::memchr(b' ', head) {
        None => (head, None),
        Some(i) => (&head[..i], Some(&head[i + 1..])),
    };
    let clean = |t: &[u8]| !t.is_empty() && !t.iter().any(|&c| c == b' ' || c == b'\t');
    if !clean(subject) || reply.is_some_and(|r| !clean(r)) || total > limits.max_payload {
        return None;
    }
    let line_end = 4 + nl + 1;
    let end = line_end + total;
    if buf.len() < end + 2 {
        return Some(Parsed::Incomplete(end + 2));
    }
    if &buf[end..end + 2] != b"\r\n" {
        return None;
    }
    Some(Parsed::Op(
        ClientOp::Pub {
            subject,
            reply,
            hdr_len: None,
            msg: &buf[line_end..end],
        },
        end + 2,
    ))
}

/// Parses the next operation at the start of `buf`.
pub fn parse<'a>(buf: &'a [u8], limits: &Limits) -> Result<Parsed<'a>, ParseError> {
    if let Some(p) = fast_pub(buf, limits) {
        return Ok(p);
    }
    let mut at = 0;
    loop {
        let rest = &buf[at..];
        if rest.is_empty() {
            return Ok(if at > 0 {
                Parsed::Blank(at)
            } else {
                Parsed::Incomplete(1)
            });
        }
        // Fail fast on garbage, as the reference does, rather than waiting
        // for a line end that may never come.
        if !is_op_start(rest[0]) {
            return Err(ParseError::UnknownOp(snippet(rest)));
        }
        let Some(nl) = memchr::memchr(b'\n', rest) else {
            if at > 0 {
                return Ok(Parsed::Blank(at));
            }
            if rest.len() > limits.max_control_line {
                return Err(ParseError::MaxControlLine(limits.max_control_line));
            }
            return Ok(Parsed::Incomplete(buf.len() + 1));
        };
        if nl > limits.max_control_line {
            return Err(ParseError::MaxControlLine(limits.max_control_line));
        }
        let mut line = &rest[..nl];
        if line.last() == Some(&b'\r') {
            line = &line[..nl - 1];
        }
        let line_end = at + nl + 1;
        if line.is_empty() {
            at = line_end;
            continue;
        }
        return control_line(buf, line, line_end, limits);
    }
}

fn control_line<'a>(
    buf: &'a [u8],
    line: &'a [u8],
    line_end: usize,
    limits: &Limits,
) -> Result<Parsed<'a>, ParseError> {
    let op_end = line
        .iter()
        .position(|&c| c == b' ' || c == b'\t')
        .unwrap_or(line.len());
    let mut op = [0u8; 8];
    if op_end > op.len() {
        return Err(ParseError::UnknownOp(snippet(line)));
    }
    for (d, s) in op.iter_mut().zip(&line[..op_end]) {
        *d = s.to_ascii_uppercase();
    }
    let rest = &line[op_end..];
    let done = |op| Ok(Parsed::Op(op, line_end));
    let mut a: [&[u8]; 5] = [&[]; 5];
    match &op[..op_end] {
        b"PUB" => pub_op(buf, rest, line_end, false, limits),
        b"HPUB" => pub_op(buf, rest, line_end, true, limits),
        b"SUB" => match split_args(rest, &mut a) {
            2 => done(ClientOp::Sub {
                subject: a[0],
                queue: None,
                sid: a[1],
            }),
            3 => done(ClientOp::Sub {
                subject: a[0],
                queue: Some(a[1]),
                sid: a[2],
            }),
            _ => Err(ParseError::BadArgs {
                op: "processSub",
                args: lossy(rest),
            }),
        },
        b"UNSUB" => match split_args(rest, &mut a) {
            1 => done(ClientOp::Unsub {
                sid: a[0],
                max: None,
            }),
            // A bad max is ignored by the reference: the sub goes.
            2 => done(ClientOp::Unsub {
                sid: a[0],
                max: parse_size(a[1]).map(|n| n as u64),
            }),
            _ => Err(ParseError::UnknownOp(snippet(line))),
        },
        b"CONNECT" => done(ClientOp::Connect(trim(rest))),
        b"PING" => done(ClientOp::Ping),
        b"PONG" => done(ClientOp::Pong),
        b"INFO" => done(ClientOp::Info),
        b"+OK" => done(ClientOp::Ok),
        b"-ERR" => done(ClientOp::Err(trim(rest))),
        _ => Err(ParseError::UnknownOp(snippet(line))),
    }
}

fn pub_op<'a>(
    buf: &'a [u8],
    rest: &'a [u8],
    line_end: usize,
    headers: bool,
    limits: &Limits,
) -> Result<Parsed<'a>, ParseError> {
    let op = if headers {
        "processHeaderPub"
    } else {
        "processPub"
    };
    let mut a: [&[u8]; 5] = [&[]; 5];
    let n = split_args(rest, &mut a);
    let n_sizes = if headers { 2 } else { 1 };
    if n < 1 + n_sizes || n > 2 + n_sizes {
        return Err(ParseError::BadArgs {
            op,
            args: lossy(rest),
        });
    }
    let subject = a[0];
    let reply = (n == 2 + n_sizes).then_some(a[1]);
    let bad_size = || ParseError::BadSize {
        op,
        args: lossy(rest),
    };
    let total = parse_size(a[n - 1]).ok_or_else(bad_size)?;
    let hdr_len = if headers {
        let h = parse_size(a[n - 2]).ok_or_else(bad_size)?;
        if h > total {
            return Err(ParseError::HeaderTooLarge(lossy(rest)));
        }
        Some(h)
    } else {
        None
    };
    if total > limits.max_payload {
        return Err(ParseError::MaxPayload {
            size: total,
            max: limits.max_payload,
        });
    }
    let end = line_end + total;
    if buf.len() < end + 2 {
        return Ok(Parsed::Incomplete(end + 2));
    }
    if &buf[end..end + 2] != b"\r\n" {
        return Err(ParseError::UnknownOp(snippet(&buf[end..])));
    }
    Ok(Parsed::Op(
        ClientOp::Pub {
            subject,
            reply,
            hdr_len,
            msg: &buf[line_end..end],
        },
        end + 2,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const LIMITS: Limits = Limits {
        max_control_line: 4096,
        max_payload: 1 << 20,
    };

    /// Owned form of an operation, for comparing across buffers.
    #[derive(Debug, Clone, PartialEq, Eq)]
    enum Owned {
        Connect(Vec<u8>),
        Pub(Vec<u8>, Option<Vec<u8>>, Option<usize>, Vec<u8>),
        Sub(Vec<u8>, Option<Vec<u8>>, Vec<u8>),
        Unsub(Vec<u8>, Option<u64>),
        Ping,
        Pong,
        Other,
    }

    fn own(op: &ClientOp) -> Owned {
        match op {
            ClientOp::Connect(c) => Owned::Connect(c.to_vec()),
            ClientOp::Pub {
                subject,
                reply,
                hdr_len,
                msg,
            } => Owned::Pub(
                subject.to_vec(),
                reply.map(|r| r.to_vec()),
                *hdr_len,
                msg.to_vec(),
            ),
            ClientOp::Sub {
                subject,
                queue,
                sid,
            } => Owned::Sub(subject.to_vec(), queue.map(|q| q.to_vec()), sid.to_vec()),
            ClientOp::Unsub { sid, max } => Owned::Unsub(sid.to_vec(), *max),
            ClientOp::Ping => Owned::Ping,
            ClientOp::Pong => Owned::Pong,
            _ => Owned::Other,
        }
    }

    /// Feeds `input` in the given chunk sizes the way the reader does:
    /// parse what is complete, carry the tail.
    fn parse_all(input: &[u8], chunks: &[usize]) -> Result<Vec<Owned>, ParseError> {
        let mut buf: Vec<u8> = Vec::new();
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
            let mut at = 0;
            loop {
                match parse(&buf[at..], &LIMITS)? {
                    Parsed::Op(op, used) => {
                        out.push(own(&op));
                        at += used;
                    }
                    Parsed::Incomplete(need) => {
                        assert!(need > buf.len() - at, "asks for bytes it has");
                        break;
                    }
                    Parsed::Blank(used) => at += used,
                }
            }
            buf.drain(..at);
        }
        Ok(out)
    }

    fn v(s: &str) -> Vec<u8> {
        s.as_bytes().to_vec()
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
                Owned::Connect(v("{\"verbose\":false}")),
                Owned::Pub(v("foo"), None, None, v("abc")),
                Owned::Sub(v("foo"), Some(v("q")), v("1")),
                Owned::Pub(v("a"), Some(v("r")), Some(12), v("NATS/1.0\r\n\r\nhi")),
                Owned::Unsub(v("1"), Some(5)),
                Owned::Ping,
                Owned::Pong,
            ]
        );
    }

    #[test]
    fn incomplete_payload_reports_need() {
        let Parsed::Incomplete(need) = parse(b"PUB foo 10\r\nabc", &LIMITS).unwrap() else {
            panic!("expected incomplete");
        };
        assert_eq!(need, "PUB foo 10\r\n".len() + 10 + 2);
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
        let e = parse_all(b"SUB a b c d e f g\r\n", &[]).unwrap_err();
        assert!(matches!(e, ParseError::BadArgs { .. }));
    }

    fn op_strategy() -> impl Strategy<Value = (Vec<u8>, Owned)> {
        let subj = "[a-z]{1,5}(\\.[a-z]{1,5}){0,2}";
        prop_oneof![
            (
                subj,
                proptest::option::of("[A-Z]{1,4}"),
                proptest::collection::vec(any::<u8>(), 0..40)
            )
                .prop_map(|(s, r, p)| {
                    let mut text = format!("PUB {s} ");
                    if let Some(r) = &r {
                        text.push_str(&format!("{r} "));
                    }
                    text.push_str(&format!("{}\r\n", p.len()));
                    let mut raw = text.into_bytes();
                    raw.extend_from_slice(&p);
                    raw.extend_from_slice(b"\r\n");
                    (raw, Owned::Pub(v(&s), r.map(|r| v(&r)), None, p))
                }),
            (subj, "[0-9]{1,4}").prop_map(|(s, sid)| (
                format!("SUB {s} {sid}\r\n").into_bytes(),
                Owned::Sub(v(&s), None, v(&sid))
            )),
            Just((b"PING\r\n".to_vec(), Owned::Ping)),
            Just((b"PONG\r\n".to_vec(), Owned::Pong)),
        ]
    }

    proptest! {
        /// However a valid stream is chunked, the same operations come out.
        #[test]
        fn chunking_is_invisible(
            frames in proptest::collection::vec(op_strategy(), 1..20),
            chunks in proptest::collection::vec(1usize..64, 0..200),
        ) {
            let input: Vec<u8> = frames.iter().flat_map(|(t, _)| t.iter().copied()).collect();
            let want: Vec<Owned> = frames.into_iter().map(|(_, op)| op).collect();
            let got = parse_all(&input, &chunks).unwrap();
            prop_assert_eq!(got, want);
        }

        /// The fast PUB path and the general one read the same operation.
        #[test]
        fn fast_pub_agrees_with_general(
            subj in "[a-z]{1,5}(\\.[a-z]{1,5}){0,2}",
            reply in proptest::option::of("[A-Z]{1,4}"),
            payload in proptest::collection::vec(any::<u8>(), 0..40),
        ) {
            let mut raw = format!("PUB {subj} ");
            if let Some(r) = &reply {
                raw.push_str(&format!("{r} "));
            }
            raw.push_str(&format!("{}\r\n", payload.len()));
            let mut bytes = raw.into_bytes();
            bytes.extend_from_slice(&payload);
            bytes.extend_from_slice(b"\r\n");
            let fast = fast_pub(&bytes, &LIMITS);
            prop_assert!(fast.is_some());
            // The general path, reached by hiding the fast one's prefix.
            let mut lower = bytes.clone();
            lower[..3].copy_from_slice(b"pub");
            let general = parse(&lower, &LIMITS).unwrap();
            let (Some(Parsed::Op(a, ua)), Parsed::Op(b, ub)) = (fast, general) else {
                panic!("both should parse");
            };
            prop_assert_eq!(own(&a), own(&b));
            prop_assert_eq!(ua, ub);
        }

        /// Arbitrary bytes never panic the parser.
        #[test]
        fn arbitrary_input_never_panics(input in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse_all(&input, &[7, 3, 100]);
        }
    }

    #[test]
    fn blank_lines_are_consumed_not_carried() {
        // Only blank lines: all of them are used up.
        let buf = b"\r\n\r\n\n\r\n";
        let Parsed::Blank(n) = parse(buf, &LIMITS).unwrap() else {
            panic!("blank lines must be consumed");
        };
        assert_eq!(n, buf.len());
        // Blank lines before an incomplete line: the blanks go first.
        let buf = b"\r\n\r\nPUB fo";
        let Parsed::Blank(n) = parse(buf, &LIMITS).unwrap() else {
            panic!("blank lines must be consumed");
        };
        assert_eq!(n, 4);
        // Blank lines before a complete op: the op, past them.
        let buf = b"\r\nPING\r\n";
        let Parsed::Op(ClientOp::Ping, used) = parse(buf, &LIMITS).unwrap() else {
            panic!("PING expected");
        };
        assert_eq!(used, buf.len());
    }
}
