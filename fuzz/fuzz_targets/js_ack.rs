//! Fuzz the JetStream ack protocol (clients publish any bytes to a
//! delivered message's `$JS.ACK.…` reply subject): `parse`, `seqs` and
//! `go_duration_ns` never panic; what `parse` returns borrows from the
//! body; `seqs` reads back the sequences of a subject built from them.
#![no_main]

use broker_edge::jetstream::consumer::ack::{go_duration_ns, parse, seqs, Kind};
use libfuzzer_sys::fuzz_target;

fn within(body: &[u8], part: &[u8]) -> bool {
    let r = body.as_ptr_range();
    part.is_empty() || (r.contains(&part.as_ptr()) && part.len() <= body.len())
}

fuzz_target!(|data: &[u8]| {
    // 1. The input as an ack body.
    match parse(data) {
        Some(Kind::Next(rest)) => assert!(within(data, rest), "+NXT rest not from the body"),
        Some(Kind::Term(reason)) => {
            assert!(
                within(data, reason.as_bytes()),
                "+TERM reason not from the body"
            );
            assert_eq!(reason, reason.trim_ascii(), "+TERM reason not trimmed");
        }
        _ => {}
    }
    // 2. As a duration and as an ack subject.
    let _ = go_duration_ns(data);
    let _ = seqs(data);
    // 3. seqs round trip: three u64 from the input in a 9-token subject
    //    and in the 12-token (domain, account hash) form.
    if data.len() >= 24 {
        let w = |i: usize| u64::from_le_bytes(data[i * 8..i * 8 + 8].try_into().unwrap());
        let (dc, sseq, cseq) = (w(0), w(1), w(2));
        let short = format!("$JS.ACK.S.C.{dc}.{sseq}.{cseq}.1700000000000000000.0");
        assert_eq!(seqs(short.as_bytes()), Some((dc, sseq, cseq)), "{short}");
        let long = format!("$JS.ACK.hub.ACCHASH.S.C.{dc}.{sseq}.{cseq}.1700000000000000000.0.r");
        assert_eq!(seqs(long.as_bytes()), Some((dc, sseq, cseq)), "{long}");
    }
});
