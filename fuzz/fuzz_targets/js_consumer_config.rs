//! Fuzz the JetStream consumer-config parser (`$JS.API.CONSUMER.CREATE`
//! / `DURABLE.CREATE` bodies come straight from clients): no input may
//! panic, and a config that parses and normalizes against a stream is
//! `same_as` itself, allows an update to itself, and survives its own
//! serialization: what the server answers (with or without the dynamic
//! metadata), sent back in a create request, parses, normalizes again
//! and is `same_as` the original (idempotent create, `nats consumer edit`).
#![no_main]

use broker_edge::jetstream::config::{self as stream_config, StreamConfig};
use broker_edge::jetstream::consumer::config::{parse_request, ConsumerConfig};
use libfuzzer_sys::fuzz_target;

const MAX_PAYLOAD: usize = 1 << 20;

/// The stream the consumers are created on: a plain limits stream.
fn stream() -> &'static StreamConfig {
    static S: std::sync::OnceLock<StreamConfig> = std::sync::OnceLock::new();
    S.get_or_init(|| {
        let mut s = stream_config::parse(br#"{"name":"S","subjects":["s.>"]}"#, false)
            .expect("stream config");
        s.normalize(MAX_PAYLOAD).expect("stream config normalizes");
        s
    })
}

fn reparse(json: &str, strict: bool, orig: &ConsumerConfig) {
    let body = format!(r#"{{"stream_name":"S","config":{json},"action":"create"}}"#);
    let req = parse_request(body.as_bytes(), strict)
        .unwrap_or_else(|e| panic!("own serialization refused: {e:?}\n{body}"));
    let mut again = req.config.expect("config lost");
    again
        .normalize(stream())
        .unwrap_or_else(|e| panic!("own serialization does not normalize: {e:?}\n{json}"));
    assert!(
        again.same_as(orig),
        "round trip changed the config\n{json}\n{again:?}\n{orig:?}"
    );
    assert_eq!(
        orig.same_as(&again),
        again.same_as(orig),
        "same_as is not symmetric\n{json}"
    );
    assert!(
        again.update_error(orig).is_none() && orig.update_error(&again).is_none(),
        "round trip is not an allowed update\n{json}"
    );
}

fuzz_target!(|data: &[u8]| {
    let stream = stream();
    for strict in [false, true] {
        let req = match parse_request(data, strict) {
            Ok(r) => r,
            Err(e) => {
                let _ = serde_json::to_string(&e);
                continue;
            }
        };
        let Some(mut cfg) = req.config else { continue };
        // A config as given (the update path compares these too).
        assert!(cfg.same_as(&cfg));
        let _ = cfg.update_error(&cfg);
        let _ = cfg.is_pull();
        let _ = cfg.filters();
        let _ = cfg.paused_until();
        if let Err(e) = cfg.normalize(stream) {
            let _ = serde_json::to_string(&e);
            continue;
        }
        assert!(cfg.same_as(&cfg), "same_as is not reflexive");
        if let Some(e) = cfg.update_error(&cfg) {
            panic!("update to itself refused: {e:?}");
        }
        // normalize is idempotent.
        let mut twice = cfg.clone();
        twice
            .normalize(stream)
            .expect("normalize of a normalized config failed");
        assert!(twice.same_as(&cfg), "normalize is not idempotent");

        let plain = serde_json::to_string(&cfg).expect("serialize");
        reparse(&plain, strict, &cfg);
        // What create/update/info responses show.
        let shown = serde_json::to_string(&cfg.with_dynamic_metadata()).expect("serialize");
        reparse(&shown, strict, &cfg);
    }
});
