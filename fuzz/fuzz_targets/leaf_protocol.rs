//! Fuzz the leaf-node protocol parser (what another server sends over a
//! leaf link): arbitrary bytes in arbitrary chunkings never panic, never
//! claim bytes they do not have, and always make progress; a message that
//! parses is written back and parses to the same parts.
#![no_main]

use libfuzzer_sys::fuzz_target;

use broker_edge::leaf::protocol::{parse, write_msg, LeafOp, Parsed};
use broker_edge::protocol::Limits;

fuzz_target!(|data: &[u8]| {
    let limits = Limits {
        max_control_line: 256,
        max_payload: 4096,
    };
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
                Ok(Parsed::Op(op, used)) => {
                    assert!(used > 0 && at + used <= buf.len());
                    if let LeafOp::Msg {
                        subject,
                        reply,
                        queues,
                        hdr_len,
                        msg,
                    } = op
                    {
                        let mut out = Vec::new();
                        write_msg(&mut out, subject, reply, &queues, hdr_len, msg);
                        let again = parse(&out, &limits);
                        if let Ok(Parsed::Op(LeafOp::Msg { msg: m2, .. }, n)) = &again {
                            assert_eq!(*n, out.len());
                            assert_eq!(*m2, msg);
                        }
                    }
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
