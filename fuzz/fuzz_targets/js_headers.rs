//! Fuzz the JetStream header-block reader (publishes carry client header
//! blocks): `get` never panics on any bytes, returns trimmed values from
//! the block, and a block `build` makes from printable pairs reads back.
#![no_main]

use broker_edge::jetstream::headers::{
    build, get, EXPECTED_LAST_MSG_ID, EXPECTED_LAST_SEQ, EXPECTED_LAST_SUBJ_SEQ,
    EXPECTED_STREAM, MSG_ID, ROLLUP,
};
use libfuzzer_sys::fuzz_target;

fn check(block: &[u8], name: &str) {
    if let Some(v) = get(block, name) {
        assert_eq!(v, v.trim(), "value not trimmed");
        assert!(!v.contains("\r\n"), "value spans lines: {v:?}");
        // The value is a slice of the block.
        let r = block.as_ptr_range();
        assert!(r.contains(&v.as_ptr()) || v.is_empty());
    }
}

/// A header name: printable ASCII, no ':' and no spaces.
fn key(b: &[u8]) -> String {
    b.iter()
        .copied()
        .filter(|c| c.is_ascii_graphic() && *c != b':')
        .map(char::from)
        .collect()
}

/// A header value: printable ASCII (spaces and ':' allowed).
fn value(b: &[u8]) -> String {
    b.iter()
        .copied()
        .filter(|c| (0x20..0x7f).contains(c))
        .map(char::from)
        .collect()
}

fuzz_target!(|data: &[u8]| {
    // 1. The whole input as a header block.
    for name in [
        MSG_ID,
        EXPECTED_STREAM,
        EXPECTED_LAST_SEQ,
        EXPECTED_LAST_SUBJ_SEQ,
        EXPECTED_LAST_MSG_ID,
        ROLLUP,
    ] {
        check(data, name);
    }
    // 2. A name taken from the input, looked up in the rest.
    if let Some((&n, rest)) = data.split_first() {
        let n = (n as usize % 48).min(rest.len());
        if let Ok(name) = std::str::from_utf8(&rest[..n]) {
            check(&rest[n..], name);
            check(data, name);
        }
    }
    // 3. build -> get round trip: lines of the input are `key=value`
    //    pairs; the first byte says whether a status line is added.
    let (status, body) = match data.split_first() {
        Some((&s, rest)) if s & 1 == 1 => (Some("404 No Messages"), rest),
        Some((_, rest)) => (None, rest),
        None => (None, data),
    };
    let owned: Vec<(String, String)> = body
        .split(|&c| c == b'\n')
        .filter_map(|line| {
            let at = line.iter().position(|&c| c == b'=')?;
            let k = key(&line[..at]);
            (!k.is_empty()).then(|| (k, value(&line[at + 1..])))
        })
        .take(16)
        .collect();
    let pairs: Vec<(&str, &str)> = owned.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let block = build(status, &pairs);
    for (k, _) in &pairs {
        let first = pairs.iter().find(|(k2, _)| k2 == k).unwrap().1;
        assert_eq!(
            get(&block, k),
            Some(first.trim()),
            "built block does not read back {k:?}: {:?}",
            String::from_utf8_lossy(&block)
        );
    }
    for name in [MSG_ID, EXPECTED_STREAM, EXPECTED_LAST_SEQ, ROLLUP] {
        if !pairs.iter().any(|(k, _)| *k == name) {
            assert_eq!(get(&block, name), None, "phantom {name}");
        }
    }
});
