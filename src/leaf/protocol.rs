//! The leaf-node wire protocol, what both ends of a leaf link send:
//! `INFO`, `CONNECT`, `PING`/`PONG`, interest (`LS+`/`LS-`, queue groups
//! with a weight) and messages (`LMSG`/`HMSG`, optionally naming the queue
//! groups they are for). Stateless and borrowing, like the client parser:
//! an incomplete operation says how many bytes it needs.

use smallvec::SmallVec;

use crate::protocol::parser::{parse_size, snippet, split_args, trim};
use crate::protocol::{Limits, ParseError};

/// One operation from the other end of a leaf link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeafOp<'a> {
    Info(&'a [u8]),
    Connect(&'a [u8]),
    Ping,
    Pong,
    /// `LS+ subject [queue weight]`.
    Sub {
        subject: &'a [u8],
        queue: Option<(&'a [u8], u32)>,
    },
    /// `LS- subject [queue]`.
    Unsub {
        subject: &'a [u8],
        queue: Option<&'a [u8]>,
    },
    /// `LMSG`/`HMSG`. `queues`: the groups it is for (then plain
    /// subscribers get it too, but no other group); empty for a message
    /// sent for plain interest only.
    Msg {
        subject: &'a [u8],
        reply: Option<&'a [u8]>,
        queues: SmallVec<[&'a [u8]; 2]>,
        hdr_len: Option<usize>,
        msg: &'a [u8],
    },
    Ok,
    Err(&'a [u8]),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed<'a> {
    Op(LeafOp<'a>, usize),
    Incomplete(usize),
    /// Empty lines, consumed.
    Blank(usize),
}

/// Parses the next operation at the start of `buf`.
pub fn parse<'a>(buf: &'a [u8], limits: &Limits) -> Result<Parsed<'a>, ParseError> {
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
        b"LMSG" => msg_op(buf, rest, line_end, false, limits),
        // With headers the reference writes `HMSG` on a leaf link.
        b"HMSG" | b"HLMSG" => msg_op(buf, rest, line_end, true, limits),
        b"LS+" => match split_args(rest, &mut a) {
            1 => done(LeafOp::Sub {
                subject: a[0],
                queue: None,
            }),
            3 => done(LeafOp::Sub {
                subject: a[0],
                // A missing or bad weight counts as one member.
                queue: Some((
                    a[1],
                    parse_size(a[2]).map_or(1, |w| w.clamp(1, u32::MAX as usize) as u32),
                )),
            }),
            _ => Err(ParseError::BadArgs {
                op: "processLeafSub",
                args: lossy(rest),
            }),
        },
        b"LS-" => match split_args(rest, &mut a) {
            1 => done(LeafOp::Unsub {
                subject: a[0],
                queue: None,
            }),
            2 => done(LeafOp::Unsub {
                subject: a[0],
                queue: Some(a[1]),
            }),
            _ => Err(ParseError::BadArgs {
                op: "processLeafUnsub",
                args: lossy(rest),
            }),
        },
        b"INFO" => done(LeafOp::Info(trim(rest))),
        b"CONNECT" => done(LeafOp::Connect(trim(rest))),
        b"PING" => done(LeafOp::Ping),
        b"PONG" => done(LeafOp::Pong),
        b"+OK" => done(LeafOp::Ok),
        b"-ERR" => done(LeafOp::Err(trim(rest))),
        _ => Err(ParseError::UnknownOp(snippet(line))),
    }
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(trim(b)).into_owned()
}

/// `LMSG subject [reply] size`, `LMSG subject + reply q… size`,
/// `LMSG subject | q… size`; HLMSG with the header size before the size.
fn msg_op<'a>(
    buf: &'a [u8],
    rest: &'a [u8],
    line_end: usize,
    headers: bool,
    limits: &Limits,
) -> Result<Parsed<'a>, ParseError> {
    let op = if headers {
        "processLeafHeaderMsgArgs"
    } else {
        "processLeafMsgArgs"
    };
    let args: SmallVec<[&[u8]; 8]> = rest
        .split(|&c| c == b' ' || c == b'\t')
        .filter(|a| !a.is_empty())
        .collect();
    let sizes = if headers { 2 } else { 1 };
    let bad = || ParseError::BadArgs {
        op,
        args: lossy(rest),
    };
    if args.len() < 1 + sizes {
        return Err(bad());
    }
    let subject = args[0];
    let middle = &args[1..args.len() - sizes];
    let (reply, queues): (Option<&[u8]>, SmallVec<[&[u8]; 2]>) = match middle {
        [] => (None, SmallVec::new()),
        [r] => (Some(*r), SmallVec::new()),
        [ind, more @ ..] if *ind == b"+" => match more {
            [r, qs @ ..] => (Some(*r), qs.iter().copied().collect()),
            [] => return Err(bad()),
        },
        [ind, qs @ ..] if *ind == b"|" => (None, qs.iter().copied().collect()),
        _ => {
            return Err(ParseError::BadArgs {
                op,
                args: format!("Bad or Missing Reply Indicator: {}", lossy(rest)),
            })
        }
    };
    let size_of = |b: &[u8]| {
        parse_size(b).ok_or_else(|| ParseError::BadSize {
            op,
            args: lossy(rest),
        })
    };
    let total = size_of(args[args.len() - 1])?;
    let hdr_len = if headers {
        let h = size_of(args[args.len() - 2])?;
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
        return Err(bad());
    }
    Ok(Parsed::Op(
        LeafOp::Msg {
            subject,
            reply,
            queues,
            hdr_len,
            msg: &buf[line_end..end],
        },
        end + 2,
    ))
}

/// Appends `LMSG`/`HMSG` for one message to `b`.
pub fn write_msg(
    b: &mut Vec<u8>,
    subject: &[u8],
    reply: Option<&[u8]>,
    queues: &[&[u8]],
    hdr_len: Option<usize>,
    msg: &[u8],
) {
    let mut n = itoa::Buffer::new();
    b.reserve(msg.len() + subject.len() + 48);
    b.extend_from_slice(if hdr_len.is_some() {
        b"HMSG "
    } else {
        b"LMSG "
    });
    b.extend_from_slice(subject);
    b.push(b' ');
    if !queues.is_empty() {
        match reply {
            Some(r) => {
                b.extend_from_slice(b"+ ");
                b.extend_from_slice(r);
                b.push(b' ');
            }
            None => b.extend_from_slice(b"| "),
        }
        for q in queues {
            b.extend_from_slice(q);
            b.push(b' ');
        }
    } else if let Some(r) = reply {
        b.extend_from_slice(r);
        b.push(b' ');
    }
    if let Some(h) = hdr_len {
        b.extend_from_slice(n.format(h).as_bytes());
        b.push(b' ');
    }
    b.extend_from_slice(n.format(msg.len()).as_bytes());
    b.extend_from_slice(b"\r\n");
    b.extend_from_slice(msg);
    b.extend_from_slice(b"\r\n");
}

/// Appends `LS+`/`LS-` for a subject (and queue group) whose count is now
/// `n` (the weight, for a group).
pub fn write_interest(b: &mut Vec<u8>, subject: &[u8], queue: Option<&[u8]>, n: u32) {
    b.extend_from_slice(if n > 0 { b"LS+ " } else { b"LS- " });
    b.extend_from_slice(subject);
    if let Some(q) = queue {
        b.push(b' ');
        b.extend_from_slice(q);
        if n > 0 {
            b.push(b' ');
            b.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
        }
    }
    b.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const L: Limits = Limits {
        max_control_line: 4096,
        max_payload: 1 << 20,
    };

    fn op(buf: &[u8]) -> LeafOp<'_> {
        match parse(buf, &L).unwrap() {
            Parsed::Op(op, n) => {
                assert_eq!(n, buf.len());
                op
            }
            p => panic!("{p:?}"),
        }
    }

    #[test]
    fn interest() {
        assert_eq!(
            op(b"LS+ foo.*\r\n"),
            LeafOp::Sub {
                subject: b"foo.*",
                queue: None
            }
        );
        assert_eq!(
            op(b"LS+ foo q 3\r\n"),
            LeafOp::Sub {
                subject: b"foo",
                queue: Some((b"q", 3))
            }
        );
        assert_eq!(
            op(b"ls- foo q\r\n"),
            LeafOp::Unsub {
                subject: b"foo",
                queue: Some(b"q")
            }
        );
        assert!(parse(b"LS+ a b\r\n", &L).is_err());
    }

    #[test]
    fn messages() {
        let LeafOp::Msg {
            subject,
            reply,
            queues,
            hdr_len,
            msg,
        } = op(b"LMSG foo + _INBOX.1 q1 q2 5\r\nhello\r\n")
        else {
            panic!()
        };
        assert_eq!(
            (subject, reply, queues.to_vec(), hdr_len, msg),
            (
                &b"foo"[..],
                Some(&b"_INBOX.1"[..]),
                vec![&b"q1"[..], b"q2"],
                None,
                &b"hello"[..]
            )
        );
        let LeafOp::Msg { reply, queues, .. } = op(b"LMSG foo | q 0\r\n\r\n") else {
            panic!()
        };
        assert_eq!((reply, queues.len()), (None, 1));
        let LeafOp::Msg { hdr_len, msg, .. } = op(b"HMSG foo r 12 14\r\nNATS/1.0\r\n\r\nhi\r\n")
        else {
            panic!()
        };
        assert_eq!((hdr_len, msg.len()), (Some(12), 14));
        assert_eq!(
            parse(b"LMSG foo 5\r\nhel", &L).unwrap(),
            Parsed::Incomplete(19)
        );
        assert!(parse(b"LMSG foo ? q 5\r\nhello\r\n", &L).is_err());
        assert!(parse(b"HLMSG foo 9 5\r\nhello\r\n", &L).is_err());
        assert!(parse(b"LMSG foo 5\r\nhelloXX", &L).is_err());
    }

    #[test]
    fn writes_what_it_parses() {
        let mut b = Vec::new();
        write_msg(&mut b, b"a.b", Some(b"r"), &[b"q"], Some(2), b"\r\nxy");
        assert_eq!(&b[..], b"HMSG a.b + r q 2 4\r\n\r\nxy\r\n");
        let mut b = Vec::new();
        write_interest(&mut b, b"a", Some(b"q"), 0);
        write_interest(&mut b, b"a", Some(b"q"), 2);
        write_interest(&mut b, b"a", None, 1);
        assert_eq!(&b[..], b"LS- a q\r\nLS+ a q 2\r\nLS+ a\r\n");
    }

    fn token() -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(
            prop_oneof![b'a'..=b'z', Just(b'.'), Just(b'_'), Just(b'$')],
            1..12,
        )
    }

    proptest! {
        /// Whatever is written parses back to the same parts, also split
        /// across reads at any point.
        #[test]
        fn round_trip(subject in token(), reply in proptest::option::of(token()),
                      queues in proptest::collection::vec(token(), 0..3),
                      hdr in proptest::option::of(0usize..8),
                      payload in proptest::collection::vec(any::<u8>(), 0..64),
                      cut in 0usize..200) {
            let hdr = hdr.map(|h| h.min(payload.len()));
            let qs: Vec<&[u8]> = queues.iter().map(|q| &q[..]).collect();
            let mut b = Vec::new();
            write_msg(&mut b, &subject, reply.as_deref(), &qs, hdr, &payload);
            let cut = cut.min(b.len());
            if cut < b.len() {
                prop_assert!(matches!(parse(&b[..cut], &L), Ok(Parsed::Incomplete(_))));
            }
            let Ok(Parsed::Op(LeafOp::Msg { subject: s, reply: r, queues: q, hdr_len, msg }, n)) = parse(&b, &L) else {
                panic!("no message");
            };
            prop_assert_eq!(n, b.len());
            prop_assert_eq!(s, &subject[..]);
            prop_assert_eq!(r, reply.as_deref());
            prop_assert_eq!(q.to_vec(), qs);
            prop_assert_eq!(hdr_len, hdr);
            prop_assert_eq!(msg, &payload[..]);
        }

        /// Arbitrary bytes never panic the parser.
        #[test]
        fn garbage(data in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = parse(&data, &L);
        }
    }
}
