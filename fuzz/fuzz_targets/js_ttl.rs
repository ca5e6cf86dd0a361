//! Fuzz the per-message TTL parser (`Nats-TTL` header values come from
//! publishers): `ttl::parse` never panics, on any text, and what it
//! accepts is at least one second.
#![no_main]

use broker_edge::jetstream::ttl::parse;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let s = String::from_utf8_lossy(data);
    if let Ok(ns) = parse(&s) {
        assert!(ns >= 1_000_000_000, "{s:?} gave {ns} ns");
    }
});
