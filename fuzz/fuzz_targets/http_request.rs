//! Fuzz the monitoring listener's request parsing (`monitor::http`): the
//! head as it arrives (prefixes at arbitrary cut points), the query
//! string, and the response built for it. Never panics; a head waits
//! (`Ok(None)`) only while under `MAX_HEAD`; a complete head ends with a
//! line feed inside the limit (the listener parses again only when a read
//! brought one) and stays the same request as more bytes arrive; an error
//! stays an error (so skipping parses between line feeds misses none).
//!
//! Input: [cut step, bytes...].
#![no_main]

use broker_edge::monitor::http::{
    error_response, parse_head, parse_query, response, HeadError, MAX_HEAD,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&step, stream)) = data.split_first() else {
        return;
    };
    let step = usize::from(step) * 16 + 1;
    let mut cuts: Vec<usize> = (1..=stream.len()).step_by(step).collect();
    cuts.extend(
        stream
            .iter()
            .enumerate()
            .filter(|(_, b)| **b == b'\n')
            .map(|(i, _)| i + 1)
            .take(200),
    );
    cuts.push(stream.len());
    cuts.sort_unstable();
    cuts.dedup();
    // The listener never holds more than MAX_HEAD bytes.
    cuts.retain(|&c| c <= MAX_HEAD);

    let mut done: Option<Result<_, HeadError>> = None;
    for cut in cuts {
        let buf = &stream[..cut];
        let r = parse_head(buf);
        match (&done, &r) {
            (None, Ok(None)) => assert!(buf.len() < MAX_HEAD),
            (None, Ok(Some(req))) => {
                assert!(req.head_len <= buf.len() && req.head_len <= MAX_HEAD);
                assert_eq!(buf[req.head_len - 1], b'\n');
                assert!(!req.method.is_empty());
                assert!(!req.path.contains('?'));
                assert!(!req.path.ends_with('/'));
                let q = parse_query(&req.query);
                assert!(q.len() <= req.query.len());
                for (k, v) in &q {
                    assert!(!k.contains('&') && !v.contains('&'));
                }
                let body = req.query.as_bytes();
                let resp = response(200, "application/json", body, req.head_only());
                let text = String::from_utf8_lossy(&resp).into_owned();
                assert!(text.contains(&format!("Content-Length: {}\r\n", body.len())));
                if req.head_only() {
                    assert!(text.ends_with("\r\n\r\n"));
                }
                done = Some(Ok(req.clone()));
            }
            (None, Err(e)) => {
                let resp = error_response(e);
                assert!(resp.starts_with(format!("HTTP/1.1 {} ", e.status()).as_bytes()));
                done = Some(Err(e.clone()));
            }
            (Some(Ok(first)), Ok(Some(req))) => assert_eq!(first, req),
            (Some(Err(_)), Err(_)) => {}
            (Some(before), now) => panic!("at {cut} bytes {now:?} after {before:?}"),
        }
    }
});
