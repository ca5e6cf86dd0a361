//! Fuzz the consumer journal's decoders (a durable consumer's snapshot
//! and event records are read back from disk at start-up):
//! `State::decode` and `Event::decode_all` never panic; a decoded
//! snapshot encodes and decodes to the same state; decoded events replay
//! (`apply`) into a fresh state, and on top of a decoded snapshot as the
//! journal does, without panicking.
//!
//! Input: the whole of it as a snapshot (acks tracked or not) and as an
//! event batch; then split after `8 * first byte` bytes into a snapshot
//! and the events replayed on top of it.
//!
//! regressions/js_consumer_state/ keeps the two inputs this target found
//! (a snapshot at consumer sequence u64::MAX then a delivery; stream
//! sequence 0 pending): both are handled now (saturating counters,
//! sequence 0 refused as corrupt).
#![no_main]

use broker_edge::jetstream::consumer::state::{Event, State};
use libfuzzer_sys::fuzz_target;

fn round_trip(s: &State, tracks_acks: bool) {
    let again = State::decode(&s.encode(), tracks_acks).expect("own encoding refused");
    assert_eq!(again.pending, s.pending, "pending changed");
    assert_eq!(again.delivered, s.delivered, "delivered changed");
    assert_eq!(again.ack_floor, s.ack_floor, "ack floor changed");
    assert_eq!(again.redelivered, s.redelivered, "redelivered changed");
}

fn replay(s: &mut State, events: &[Event]) {
    for e in events {
        s.apply(*e);
    }
    let _ = s.acked(s.delivered.stream);
    let _ = s.due(u64::MAX);
    let _ = s.encode();
}

fuzz_target!(|data: &[u8]| {
    for tracks_acks in [true, false] {
        if let Some(s) = State::decode(data, tracks_acks) {
            round_trip(&s, tracks_acks);
        }
    }
    let events = Event::decode_all(data);
    if let Some(events) = &events {
        // Each event encodes to what was read.
        let mut out = Vec::new();
        for e in events {
            e.encode(&mut out);
        }
        assert_eq!(out, data, "events do not encode back");
        replay(&mut State::new(true), events);
    }
    // A snapshot with events on top, as the journal replays them.
    if let Some((&n, rest)) = data.split_first() {
        let at = (n as usize * 8).min(rest.len());
        let (snap, evs) = rest.split_at(at);
        if let (Some(mut s), Some(events)) = (State::decode(snap, true), Event::decode_all(evs)) {
            replay(&mut s, &events);
        }
    }
});
