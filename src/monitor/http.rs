//! The monitoring listener's HTTP/1.1 with its limits: the request head
//! (parsed with `httparse`, bounded in size and header count), the query
//! string, and the responses. Plain functions of bytes, so that the fuzzer
//! (`fuzz/fuzz_targets/http_request.rs`) drives exactly what the listener
//! runs.

use std::collections::HashMap;

/// The request head (request line and headers) may be at most this long.
/// The reference (Go's `http.Server` with `MaxHeaderBytes: 1 << 20`)
/// allows 1 MiB; a monitoring request is a few hundred bytes, a browser's
/// a few KiB.
pub const MAX_HEAD: usize = 16 * 1024;
/// Header lines at most (Go counts only bytes; browsers send ~15).
pub const MAX_HEADERS: usize = 64;

/// A request head that could not be taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeadError {
    #[error("request head over {MAX_HEAD} bytes or {MAX_HEADERS} headers")]
    TooLarge,
    #[error("malformed request head: {0}")]
    Malformed(httparse::Error),
    #[error("request head incomplete at the deadline")]
    Incomplete,
}

impl HeadError {
    /// The status the reference's Go server answers with.
    pub fn status(&self) -> u16 {
        match self {
            HeadError::TooLarge => 431,
            HeadError::Malformed(_) | HeadError::Incomplete => 400,
        }
    }
}

/// A complete request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    /// The path without its query and without trailing `/` (`/` is "").
    pub path: String,
    /// The raw query string (after `?`), possibly empty.
    pub query: String,
    /// Bytes the head took (a body, if any, follows and is ignored).
    pub head_len: usize,
}

impl Request {
    pub fn head_only(&self) -> bool {
        self.method == "HEAD"
    }
}

/// Parses what arrived so far: `Ok(None)` while the head is incomplete
/// and still within [`MAX_HEAD`].
pub fn parse_head(buf: &[u8]) -> Result<Option<Request>, HeadError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) if n <= MAX_HEAD => {
            let target = req.path.unwrap_or("/");
            let (path, query) = target.split_once('?').unwrap_or((target, ""));
            Ok(Some(Request {
                method: req.method.unwrap_or_default().to_string(),
                path: path.trim_end_matches('/').to_string(),
                query: query.to_string(),
                head_len: n,
            }))
        }
        Ok(httparse::Status::Complete(_)) => Err(HeadError::TooLarge),
        Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => Ok(None),
        Ok(httparse::Status::Partial) | Err(httparse::Error::TooManyHeaders) => {
            Err(HeadError::TooLarge)
        }
        Err(e) => Err(HeadError::Malformed(e)),
    }
}

/// `a=1&b&c=` as a map (the last of a repeated key wins). Values are
/// taken as they are, without percent-decoding.
pub fn parse_query(q: &str) -> HashMap<String, String> {
    q.split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (kv.to_string(), String::new()),
        })
        .collect()
}

/// A whole response; `Connection: close` (one request per connection).
/// Answers to HEAD carry the headers only.
pub fn response(code: u16, ctype: &str, body: &[u8], head_only: bool) -> Vec<u8> {
    let status = match code {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Error",
    };
    let mut out = format!(
        "HTTP/1.1 {code} {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if !head_only {
        out.extend_from_slice(body);
    }
    out
}

/// The answer to a head that could not be taken, worded as Go's server.
pub fn error_response(e: &HeadError) -> Vec<u8> {
    let body: &[u8] = match e {
        HeadError::TooLarge => b"431 Request Header Fields Too Large",
        HeadError::Malformed(_) | HeadError::Incomplete => b"400 Bad Request",
    };
    response(e.status(), "text/plain; charset=utf-8", body, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn complete_head_with_query() {
        let head = b"GET /connz/?subs=1&limit=2 HTTP/1.1\r\nHost: x\r\n\r\n";
        let r = parse_head(&[&head[..], b"body"].concat()).unwrap().unwrap();
        assert_eq!(r.method, "GET");
        assert_eq!(r.path, "/connz");
        assert_eq!(r.query, "subs=1&limit=2");
        assert_eq!(r.head_len, head.len());
        let q = parse_query(&r.query);
        assert_eq!(q["subs"], "1");
        assert_eq!(q["limit"], "2");
        let r = parse_head(b"HEAD / HTTP/1.0\r\n\r\n").unwrap().unwrap();
        assert_eq!(r.path, "");
        assert!(r.head_only());
    }

    #[test]
    fn partial_heads_wait_within_the_limit() {
        assert_eq!(parse_head(b""), Ok(None));
        assert_eq!(parse_head(b"GET /healthz HTTP/1.1\r\nHos"), Ok(None));
        let mut big = b"GET / HTTP/1.1\r\nX: ".to_vec();
        big.resize(MAX_HEAD - 1, b'a');
        assert_eq!(parse_head(&big), Ok(None));
        big.push(b'a');
        assert_eq!(parse_head(&big), Err(HeadError::TooLarge));
        big.extend_from_slice(b"\r\n\r\n");
        assert_eq!(parse_head(&big), Err(HeadError::TooLarge));
    }

    #[test]
    fn too_many_headers_is_too_large_and_garbage_is_bad() {
        let mut req = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..=MAX_HEADERS {
            req.extend_from_slice(format!("h{i}: v\r\n").as_bytes());
        }
        req.extend_from_slice(b"\r\n");
        assert_eq!(parse_head(&req), Err(HeadError::TooLarge));
        let e = parse_head(b"\x00\x01 junk\r\n\r\n").unwrap_err();
        assert_eq!(e.status(), 400);
        assert!(String::from_utf8_lossy(&error_response(&e))
            .starts_with("HTTP/1.1 400 Bad Request\r\n"));
        assert!(
            String::from_utf8_lossy(&error_response(&HeadError::TooLarge))
                .starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n")
        );
    }

    #[test]
    fn head_answers_carry_no_body() {
        let r = response(200, "application/json", b"{}", true);
        let text = String::from_utf8(r).unwrap();
        assert!(
            text.ends_with("Content-Length: 2\r\nConnection: close\r\n\r\n"),
            "{text}"
        );
    }
}
