//! Fuzz the client protocol parser: arbitrary bytes, fed in arbitrary
//! chunkings, never panic, never claim bytes they do not have, and always
//! make progress.
#![no_main]

use libfuzzer_sys::fuzz_target;

// The parser depends only on memchr and thiserror, so it is compiled here
// straight from the server's source tree.
#[path = "../../src/protocol/parser.rs"]
#[allow(dead_code)]
mod parser;

use parser::{parse, Limits, Parsed};

fuzz_target!(|data: &[u8]| {
    let limits = Limits {
        max_control_line: 256,
        max_payload: 4096,
    };
    // The first byte picks a chunk size, the rest is the stream.
    let Some((&k, stream)) = data.split_first() else {
        return;
    };
    let chunk = (k as usize % 17) + 1;
    let mut buf: Vec<u8> = Vec::new();
    for piece in stream.chunks(chunk) {
        buf.extend_from_slice(piece);
        let mut at = 0;
        loop {
            match parse(&buf[at..], &limits) {
                Ok(Parsed::Op(_, used)) => {
                    assert!(used > 0 && at + used <= buf.len());
                    at += used;
                }
                Ok(Parsed::Incomplete(need)) => {
                    assert!(need > buf.len() - at);
                    break;
                }
                Ok(Parsed::Blank(used)) => {
                    assert!(used > 0 && at + used <= buf.len());
                    at += used;
                }
                Err(_) => return,
            }
        }
        buf.drain(..at);
    }
});
