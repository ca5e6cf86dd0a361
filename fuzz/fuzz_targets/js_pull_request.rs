//! Fuzz the JetStream pull-request parser (`$JS.API.CONSUMER.MSG.NEXT`
//! bodies come straight from clients): `NextRequest::parse` never panics
//! and what it accepts asks for at least one message.
#![no_main]

use broker_edge::jetstream::consumer::pull::NextRequest;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = NextRequest::parse(data) {
        assert!(r.batch >= 1, "batch {} accepted", r.batch);
    }
});
