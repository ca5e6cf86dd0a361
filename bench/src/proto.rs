//! The client side of the NATS wire protocol, just as much as load
//! generation needs: URL parsing, the INFO/CONNECT/PING handshake, and an
//! incremental parser for what servers send (MSG, HMSG, PING, PONG, +OK,
//! -ERR, INFO). Payloads are skipped, never copied: the bench only counts —
//! except on a connection that asked for them ([`Conn::set_capture`]), which
//! JetStream publishers use to read their PubAcks.

use anyhow::{anyhow, bail, Context, Result};
use std::fmt;
use std::io::{ErrorKind, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

/// Longest control line accepted; INFO can be long, MSG lines are short.
const MAX_LINE: usize = 1 << 20;

/// `nats://[user[:pass]@]host[:port]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerUrl {
    pub host: String,
    pub port: u16,
    pub user: Option<String>,
    pub pass: Option<String>,
}

impl ServerUrl {
    pub fn parse(s: &str) -> Result<Self> {
        let rest = match s.split_once("://") {
            Some((scheme, rest)) => match scheme.to_ascii_lowercase().as_str() {
                "nats" | "tcp" => rest,
                other => bail!("URL {s:?}: unsupported scheme {other:?} (plain nats:// only)"),
            },
            None => s,
        };
        let rest = rest.trim_end_matches('/');
        let (auth, hostport) = match rest.rsplit_once('@') {
            Some((a, h)) => (Some(a), h),
            None => (None, rest),
        };
        let (user, pass) = match auth {
            Some(a) => match a.split_once(':') {
                Some((u, p)) => (Some(u.to_string()), Some(p.to_string())),
                None => (Some(a.to_string()), None),
            },
            None => (None, None),
        };
        let parse_port =
            |p: &str| -> Result<u16> { p.parse().with_context(|| format!("URL {s:?}: bad port")) };
        let (host, port) = if let Some(h) = hostport.strip_prefix('[') {
            let (h, after) = h
                .split_once(']')
                .with_context(|| format!("URL {s:?}: unterminated [ipv6]"))?;
            let port = match after.strip_prefix(':') {
                Some(p) => parse_port(p)?,
                None if after.is_empty() => 4222,
                None => bail!("URL {s:?}: junk after ]"),
            };
            (h.to_string(), port)
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), parse_port(p)?),
                None => (hostport.to_string(), 4222),
            }
        };
        if host.is_empty() {
            bail!("URL {s:?}: missing host");
        }
        Ok(ServerUrl {
            host,
            port,
            user,
            pass,
        })
    }

    /// `host:port` for connecting, with brackets around IPv6 literals.
    pub fn addr(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// Loopback or unspecified host: the server may be a process on this box.
    pub fn is_local(&self) -> bool {
        matches!(
            self.host.as_str(),
            "localhost" | "::1" | "0.0.0.0" | "::" | "ip6-localhost"
        ) || self.host.starts_with("127.")
    }
}

impl fmt::Display for ServerUrl {
    // Never prints credentials.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "nats://{}", self.addr())
    }
}

/// One thing the server said. Borrowed slices are valid only in the callback.
#[derive(Debug, PartialEq, Eq)]
pub enum Event<'a> {
    /// A MSG or HMSG whose payload has fully arrived. `subject` and
    /// `payload` (headers included, for HMSG) are empty unless the parser
    /// captures ([`Parser::capture`]).
    Msg {
        sid: u64,
        reply: Option<&'a [u8]>,
        len: usize,
        /// Header bytes at the start of `payload` (0 for MSG).
        hdr: usize,
        subject: &'a [u8],
        payload: &'a [u8],
    },
    Ping,
    Pong,
    Ok,
    Err(&'a [u8]),
    Info(&'a [u8]),
}

/// Incremental parser: feed it whatever `read` returned, in any chunking.
#[derive(Default)]
pub struct Parser {
    /// A control line split across reads (empty on the fast path).
    line: Vec<u8>,
    /// Payload bytes plus CRLF still to pass over.
    skip: usize,
    /// The MSG whose payload is being skipped: (sid, has reply, len, hdr).
    pending: Option<(u64, bool, usize, usize)>,
    reply: Vec<u8>,
    /// Keep each message's subject and payload for the event.
    pub capture: bool,
    subject: Vec<u8>,
    payload: Vec<u8>,
}

impl Parser {
    pub fn feed<F: FnMut(Event<'_>)>(&mut self, data: &[u8], f: &mut F) -> Result<()> {
        let mut i = 0;
        while i < data.len() {
            if self.skip > 0 {
                let n = self.skip.min(data.len() - i);
                if self.capture {
                    self.payload.extend_from_slice(&data[i..i + n]);
                }
                self.skip -= n;
                i += n;
                if self.skip == 0 {
                    self.emit_pending(f);
                }
                continue;
            }
            match memchr::memchr(b'\n', &data[i..]) {
                None => {
                    if self.line.len() + (data.len() - i) > MAX_LINE {
                        bail!("protocol line longer than {MAX_LINE} bytes");
                    }
                    self.line.extend_from_slice(&data[i..]);
                    break;
                }
                Some(pos) => {
                    let end = i + pos;
                    if self.line.is_empty() {
                        self.handle_line(&data[i..end], f)?;
                    } else {
                        // Reassemble, then hand the buffer back for reuse.
                        let mut line = std::mem::take(&mut self.line);
                        line.extend_from_slice(&data[i..end]);
                        let r = self.handle_line(&line, f);
                        line.clear();
                        self.line = line;
                        r?;
                    }
                    i = end + 1;
                }
            }
        }
        Ok(())
    }

    fn emit_pending<F: FnMut(Event<'_>)>(&mut self, f: &mut F) {
        if let Some((sid, has_reply, len, hdr)) = self.pending.take() {
            let reply = if has_reply {
                Some(&self.reply[..])
            } else {
                None
            };
            // The captured bytes end with the payload's CRLF.
            let payload = &self.payload[..len.min(self.payload.len())];
            f(Event::Msg {
                sid,
                reply,
                len,
                hdr,
                subject: &self.subject,
                payload,
            });
        }
    }

    fn handle_line<F: FnMut(Event<'_>)>(&mut self, line: &[u8], f: &mut F) -> Result<()> {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            return Ok(());
        }
        let (op, args) = match line.iter().position(|b| *b == b' ' || *b == b'\t') {
            Some(p) => (&line[..p], &line[p + 1..]),
            None => (line, &line[line.len()..]),
        };
        if op.eq_ignore_ascii_case(b"MSG") {
            let (t, n) = tokens(args)?;
            let (sid, reply, len) = match n {
                3 => (t[1], None, t[2]),
                4 => (t[1], Some(t[2]), t[3]),
                _ => bail!("malformed MSG line: {}", lossy(line)),
            };
            self.start_msg(t[0], sid, reply, None, len)
        } else if op.eq_ignore_ascii_case(b"HMSG") {
            let (t, n) = tokens(args)?;
            // The total length covers headers and payload alike.
            let (sid, reply, hdr, len) = match n {
                4 => (t[1], None, t[2], t[3]),
                5 => (t[1], Some(t[2]), t[3], t[4]),
                _ => bail!("malformed HMSG line: {}", lossy(line)),
            };
            self.start_msg(t[0], sid, reply, Some(hdr), len)
        } else if op.eq_ignore_ascii_case(b"PING") {
            f(Event::Ping);
            Ok(())
        } else if op.eq_ignore_ascii_case(b"PONG") {
            f(Event::Pong);
            Ok(())
        } else if op.eq_ignore_ascii_case(b"+OK") {
            f(Event::Ok);
            Ok(())
        } else if op.eq_ignore_ascii_case(b"-ERR") {
            f(Event::Err(args.trim_ascii()));
            Ok(())
        } else if op.eq_ignore_ascii_case(b"INFO") {
            f(Event::Info(args.trim_ascii()));
            Ok(())
        } else {
            bail!("unexpected line from server: {}", lossy(line))
        }
    }

    fn start_msg(
        &mut self,
        subject: &[u8],
        sid: &[u8],
        reply: Option<&[u8]>,
        hdr: Option<&[u8]>,
        len: &[u8],
    ) -> Result<()> {
        let sid = parse_u64(sid)?;
        let len = usize::try_from(parse_u64(len)?).map_err(|_| anyhow!("MSG size overflows"))?;
        let hdr = match hdr {
            Some(h) => {
                usize::try_from(parse_u64(h)?).map_err(|_| anyhow!("HMSG size overflows"))?
            }
            None => 0,
        };
        if hdr > len {
            bail!("HMSG header size {hdr} exceeds its total size {len}");
        }
        self.reply.clear();
        if let Some(r) = reply {
            self.reply.extend_from_slice(r);
        }
        if self.capture {
            self.subject.clear();
            self.subject.extend_from_slice(subject);
            self.payload.clear();
        }
        self.pending = Some((sid, reply.is_some(), len, hdr));
        self.skip = len + 2;
        Ok(())
    }
}

/// Splits arguments on spaces/tabs without allocating; at most 5 tokens.
fn tokens(args: &[u8]) -> Result<([&[u8]; 5], usize)> {
    let mut t: [&[u8]; 5] = [&[]; 5];
    let mut n = 0;
    for tok in args
        .split(|b| *b == b' ' || *b == b'\t')
        .filter(|t| !t.is_empty())
    {
        if n == t.len() {
            bail!("too many arguments: {}", lossy(args));
        }
        t[n] = tok;
        n += 1;
    }
    Ok((t, n))
}

pub fn parse_u64(s: &[u8]) -> Result<u64> {
    if s.is_empty() || s.len() > 19 {
        bail!("bad number {:?}", lossy(s));
    }
    let mut v: u64 = 0;
    for &b in s {
        if !b.is_ascii_digit() {
            bail!("bad number {:?}", lossy(s));
        }
        v = v * 10 + u64::from(b - b'0');
    }
    Ok(v)
}

fn lossy(b: &[u8]) -> String {
    let s = String::from_utf8_lossy(&b[..b.len().min(200)]);
    s.into_owned()
}

/// What one `read` produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadOutcome {
    Data,
    Timeout,
    Closed,
}

/// A connected, handshaken client connection.
pub struct Conn {
    stream: TcpStream,
    parser: Parser,
    buf: Vec<u8>,
    pub max_payload: Option<u64>,
    /// The most recent -ERR text, kept to explain a close.
    pub last_err: Option<String>,
    /// Non-blocking, busy-polled ([`Conn::set_spin`]).
    spin: bool,
}

impl Conn {
    /// Connects, reads INFO, sends CONNECT and waits for the PONG that
    /// proves the server accepted it.
    pub fn connect(
        url: &ServerUrl,
        name: &str,
        read_buf: usize,
        timeout: Duration,
    ) -> Result<Conn> {
        Conn::connect_opts(url, name, read_buf, timeout, false)
    }

    /// [`Conn::connect`], announcing header support when `headers` is set:
    /// the server then delivers HMSG (JetStream status messages and direct
    /// gets need it) instead of stripping headers.
    pub fn connect_opts(
        url: &ServerUrl,
        name: &str,
        read_buf: usize,
        timeout: Duration,
        headers: bool,
    ) -> Result<Conn> {
        let addrs: Vec<_> = url
            .addr()
            .to_socket_addrs()
            .with_context(|| format!("resolving {url}"))?
            .collect();
        let mut last = None;
        let mut stream = None;
        for a in addrs {
            match TcpStream::connect_timeout(&a, timeout) {
                Ok(s) => {
                    stream = Some(s);
                    break;
                }
                Err(e) => last = Some(e),
            }
        }
        let stream = match (stream, last) {
            (Some(s), _) => s,
            (None, Some(e)) => return Err(e).with_context(|| format!("connecting to {url}")),
            (None, None) => bail!("{url}: no addresses"),
        };
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_millis(100)))?;
        stream.set_write_timeout(Some(Duration::from_secs(30)))?;
        let mut conn = Conn {
            stream,
            parser: Parser::default(),
            buf: vec![0; read_buf.max(4096)],
            max_payload: None,
            last_err: None,
            spin: false,
        };
        let deadline = Instant::now() + timeout;
        let mut info: Option<Vec<u8>> = None;
        while info.is_none() {
            let r = conn.read_some(&mut |ev| {
                if let Event::Info(j) = ev {
                    info = Some(j.to_vec());
                }
            })?;
            if r == ReadOutcome::Closed {
                bail!("{url} closed the connection before INFO");
            }
            if info.is_none() && Instant::now() > deadline {
                bail!("{url} sent no INFO within {timeout:?}");
            }
        }
        let info: serde_json::Value = serde_json::from_slice(info.as_deref().unwrap_or(b"{}"))
            .with_context(|| format!("{url}: INFO is not JSON"))?;
        if info.get("tls_required").and_then(|v| v.as_bool()) == Some(true) {
            bail!("{url} requires TLS, which the bench does not speak");
        }
        conn.max_payload = info.get("max_payload").and_then(|v| v.as_u64());
        let mut connect = serde_json::json!({
            "verbose": false, "pedantic": false, "tls_required": false,
            "name": name, "lang": "rust-bench", "version": env!("CARGO_PKG_VERSION"),
            "protocol": 1, "echo": true, "headers": headers, "no_responders": false,
        });
        match (&url.user, &url.pass) {
            (Some(u), Some(p)) => {
                connect["user"] = u.as_str().into();
                connect["pass"] = p.as_str().into();
            }
            (Some(t), None) => connect["auth_token"] = t.as_str().into(),
            _ => {}
        }
        let line = format!("CONNECT {connect}\r\n");
        conn.write_all(line.as_bytes())?;
        conn.roundtrip(timeout)
            .with_context(|| format!("{url}: handshake"))?;
        Ok(conn)
    }

    pub fn write_all(&mut self, b: &[u8]) -> Result<()> {
        let mut b = b;
        while !b.is_empty() {
            match self.stream.write(b) {
                Ok(0) => bail!("writing to server: connection closed"),
                Ok(n) => b = &b[n..],
                // A non-blocking (spinning) connection whose socket buffer is full.
                Err(e) if e.kind() == ErrorKind::WouldBlock && self.spin => {
                    std::thread::yield_now()
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e).context("writing to server"),
            }
        }
        Ok(())
    }

    /// Hand each message's subject and payload to the reader (see [`Event::Msg`]).
    pub fn set_capture(&mut self, on: bool) {
        self.parser.capture = on;
    }

    /// Non-blocking reads: [`Conn::read_some`] returns `Timeout` at once
    /// when nothing is there, for callers that busy-poll.
    pub fn set_spin(&mut self) -> Result<()> {
        self.stream
            .set_nonblocking(true)
            .context("making the socket non-blocking")?;
        self.spin = true;
        Ok(())
    }

    /// One `read` into the large buffer, handing every event to `f`.
    /// PINGs are answered here so no caller can forget.
    pub fn read_some<F: FnMut(Event<'_>)>(&mut self, f: &mut F) -> Result<ReadOutcome> {
        let n = match self.stream.read(&mut self.buf) {
            Ok(0) => return Ok(ReadOutcome::Closed),
            Ok(n) => n,
            Err(e) => {
                return match e.kind() {
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted => {
                        Ok(ReadOutcome::Timeout)
                    }
                    ErrorKind::ConnectionReset
                    | ErrorKind::ConnectionAborted
                    | ErrorKind::BrokenPipe => Ok(ReadOutcome::Closed),
                    _ => Err(e).context("reading from server"),
                }
            }
        };
        let mut pings = 0;
        let last_err = &mut self.last_err;
        self.parser.feed(&self.buf[..n], &mut |ev| {
            match ev {
                Event::Ping => pings += 1,
                Event::Err(t) => *last_err = Some(lossy(t)),
                _ => {}
            }
            f(ev)
        })?;
        for _ in 0..pings {
            self.write_all(b"PONG\r\n")?;
        }
        Ok(ReadOutcome::Data)
    }

    /// PING and wait for PONG: everything sent before has been processed.
    /// Returns how many messages arrived meanwhile.
    pub fn roundtrip(&mut self, timeout: Duration) -> Result<u64> {
        self.write_all(b"PING\r\n")?;
        let deadline = Instant::now() + timeout;
        let mut pong = false;
        let mut msgs = 0;
        while !pong {
            let r = self.read_some(&mut |ev| match ev {
                Event::Pong => pong = true,
                Event::Msg { .. } => msgs += 1,
                _ => {}
            })?;
            if r == ReadOutcome::Closed {
                bail!("server closed the connection{}", self.err_suffix());
            }
            if !pong && Instant::now() > deadline {
                bail!("no PONG within {timeout:?}{}", self.err_suffix());
            }
        }
        if let Some(e) = self.last_err.take() {
            bail!("server error: {e}");
        }
        Ok(msgs)
    }

    pub fn err_suffix(&self) -> String {
        match &self.last_err {
            Some(e) => format!(" (-ERR {e})"),
            None => String::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Eq)]
    enum Own {
        Msg(u64, Option<Vec<u8>>, usize),
        Ping,
        Pong,
        Ok,
        Err(Vec<u8>),
        Info(Vec<u8>),
    }

    fn collect(chunks: &[&[u8]]) -> Result<Vec<Own>> {
        let mut p = Parser::default();
        let mut out = Vec::new();
        for c in chunks {
            p.feed(c, &mut |ev| {
                out.push(match ev {
                    Event::Msg {
                        sid, reply, len, ..
                    } => Own::Msg(sid, reply.map(|r| r.to_vec()), len),
                    Event::Ping => Own::Ping,
                    Event::Pong => Own::Pong,
                    Event::Ok => Own::Ok,
                    Event::Err(e) => Own::Err(e.to_vec()),
                    Event::Info(i) => Own::Info(i.to_vec()),
                })
            })?;
        }
        Ok(out)
    }

    const STREAM: &[u8] = b"INFO {\"max_payload\":1048576}\r\n+OK\r\nPING\r\n\
MSG foo 1 5\r\nhello\r\nMSG foo.bar 22 _INBOX.x 0\r\n\r\n\
HMSG h 3 12 17\r\nNATS/1.0\r\n\r\nhello\r\nmsg a 4 reply 3\r\nabc\r\n\
PONG\r\n-ERR 'Slow Consumer'\r\n";

    fn expected() -> Vec<Own> {
        vec![
            Own::Info(b"{\"max_payload\":1048576}".to_vec()),
            Own::Ok,
            Own::Ping,
            Own::Msg(1, None, 5),
            Own::Msg(22, Some(b"_INBOX.x".to_vec()), 0),
            Own::Msg(3, None, 17),
            Own::Msg(4, Some(b"reply".to_vec()), 3),
            Own::Pong,
            Own::Err(b"'Slow Consumer'".to_vec()),
        ]
    }

    #[test]
    fn whole_stream() {
        assert_eq!(collect(&[STREAM]).unwrap(), expected());
    }

    #[test]
    fn every_split_point() {
        // Any two-way split must give the same events.
        for i in 0..=STREAM.len() {
            let (a, b) = STREAM.split_at(i);
            assert_eq!(collect(&[a, b]).unwrap(), expected(), "split at {i}");
        }
    }

    #[test]
    fn byte_at_a_time() {
        let chunks: Vec<&[u8]> = STREAM.chunks(1).collect();
        assert_eq!(collect(&chunks).unwrap(), expected());
    }

    #[test]
    fn three_way_splits() {
        for i in (0..STREAM.len()).step_by(3) {
            for j in (i..STREAM.len()).step_by(5) {
                let chunks = [&STREAM[..i], &STREAM[i..j], &STREAM[j..]];
                assert_eq!(collect(&chunks).unwrap(), expected(), "{i} {j}");
            }
        }
    }

    #[test]
    fn message_not_emitted_before_payload_ends() {
        let mut p = Parser::default();
        let mut n = 0;
        p.feed(b"MSG s 1 10\r\n01234", &mut |_| n += 1).unwrap();
        assert_eq!(n, 0);
        p.feed(b"56789\r", &mut |_| n += 1).unwrap();
        assert_eq!(n, 0);
        p.feed(b"\n", &mut |_| n += 1).unwrap();
        assert_eq!(n, 1);
    }

    #[test]
    fn capture_gives_subject_and_payload_in_any_chunking() {
        let data: &[u8] = b"MSG _INBOX.t.7 1 23\r\n{\"stream\":\"S\",\"seq\":12}\r\n\
PING\r\nMSG _INBOX.t.8 1 0\r\n\r\nHMSG h.x 2 r 12 14\r\nNATS/1.0\r\n\r\nhi\r\n";
        let want: Vec<(u64, Vec<u8>, Vec<u8>)> = vec![
            (
                1,
                b"_INBOX.t.7".to_vec(),
                br#"{"stream":"S","seq":12}"#.to_vec(),
            ),
            (1, b"_INBOX.t.8".to_vec(), b"".to_vec()),
            (2, b"h.x".to_vec(), b"NATS/1.0\r\n\r\nhi".to_vec()),
        ];
        for i in 0..=data.len() {
            let mut p = Parser {
                capture: true,
                ..Parser::default()
            };
            let mut got = Vec::new();
            for part in [&data[..i], &data[i..]] {
                p.feed(part, &mut |ev| {
                    if let Event::Msg {
                        sid,
                        subject,
                        payload,
                        hdr,
                        ..
                    } = ev
                    {
                        assert_eq!(hdr, if sid == 2 { 12 } else { 0 });
                        got.push((sid, subject.to_vec(), payload.to_vec()));
                    }
                })
                .unwrap();
            }
            assert_eq!(got, want, "split at {i}");
        }
        // Without capture the parser hands out no bytes.
        let mut p = Parser::default();
        p.feed(data, &mut |ev| {
            if let Event::Msg {
                subject, payload, ..
            } = ev
            {
                assert!(subject.is_empty() && payload.is_empty());
            }
        })
        .unwrap();
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        for bad in [
            &b"BOGUS\r\n"[..],
            b"MSG foo\r\n",
            b"MSG foo x 5\r\n",
            b"MSG foo 1 -5\r\n",
            b"MSG foo 1 99999999999999999999999\r\n",
            b"MSG a b c d e f g\r\n",
            b"HMSG a 1 2\r\n",
            b"HMSG a 1 5 4\r\n",
        ] {
            assert!(
                collect(&[bad]).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let long = vec![b'x'; MAX_LINE + 10];
        assert!(collect(&[&long]).is_err());
    }

    #[test]
    fn urls() {
        let u = ServerUrl::parse("nats://127.0.0.1:14222").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("127.0.0.1", 14222));
        assert!(u.is_local());
        let u = ServerUrl::parse("localhost").unwrap();
        assert_eq!(u.port, 4222);
        let u = ServerUrl::parse("nats://bob:secret@example.com:4333/").unwrap();
        assert_eq!(u.user.as_deref(), Some("bob"));
        assert_eq!(u.pass.as_deref(), Some("secret"));
        assert!(!u.is_local());
        assert_eq!(u.to_string(), "nats://example.com:4333");
        let u = ServerUrl::parse("nats://[::1]:4223").unwrap();
        assert_eq!(u.addr(), "[::1]:4223");
        assert!(ServerUrl::parse("tls://x:1").is_err());
        assert!(ServerUrl::parse("nats://:1").is_err());
        assert!(ServerUrl::parse("nats://h:99999").is_err());
    }
}
