//! Fuzz the JetStream stream-config parser (`$JS.API.STREAM.CREATE/UPDATE`
//! bodies come straight from clients): no input may panic, and a config
//! that parses and normalizes must survive its own serialization: what
//! the server answers (with or without the dynamic metadata) parses back,
//! normalizes again and is `same_as` the original (idempotent create).
//!
//! `JS_FUZZ_SKIP_KNOWN=1` tolerates the known bug (regressions/
//! js_stream_config/: serde_json without `float_roundtrip` reads a float
//! in `placement` back 1 ulp off), so a run can look past it.
#![no_main]

use broker_edge::jetstream::config::{parse, StreamConfig};
use libfuzzer_sys::fuzz_target;

const MAX_PAYLOAD: usize = 1 << 20;

fn skip_known() -> bool {
    static SKIP: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *SKIP.get_or_init(|| std::env::var_os("JS_FUZZ_SKIP_KNOWN").is_some_and(|v| v == "1"))
}

/// Equal but for floats a few ulps apart.
fn close(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    use serde_json::Value as V;
    match (a, b) {
        (V::Number(x), V::Number(y)) if x.is_f64() || y.is_f64() => {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            x == y || (x - y).abs() <= 4.0 * f64::EPSILON * x.abs().max(y.abs())
        }
        (V::Array(x), V::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(x, y)| close(x, y)),
        (V::Object(x), V::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| close(v, w)))
        }
        _ => a == b,
    }
}

/// The known float bug, and nothing else, tells `a` from `b`.
fn only_float_drift(a: &StreamConfig, b: &StreamConfig) -> bool {
    let (mut a, mut b) = (a.clone(), b.clone());
    let (pa, pb) = (a.placement.take(), b.placement.take());
    let placements = match (&pa, &pb) {
        (Some(x), Some(y)) => close(x, y),
        _ => pa == pb,
    };
    placements && a.same_as(&b)
}

fn reparse(json: &str, strict: bool, orig: &StreamConfig) {
    let mut again = parse(json.as_bytes(), strict)
        .unwrap_or_else(|e| panic!("own serialization refused: {e:?}\n{json}"));
    again
        .normalize(MAX_PAYLOAD)
        .unwrap_or_else(|e| panic!("own serialization does not normalize: {e:?}\n{json}"));
    if !again.same_as(orig) && !(skip_known() && only_float_drift(&again, orig)) {
        panic!("round trip changed the config\n{json}\n{again:?}\n{orig:?}");
    }
    assert_eq!(
        orig.same_as(&again),
        again.same_as(orig),
        "same_as is not symmetric\n{json}"
    );
    let _ = again.log_limits();
}

fuzz_target!(|data: &[u8]| {
    for strict in [false, true] {
        let mut cfg = match parse(data, strict) {
            Ok(c) => c,
            Err(e) => {
                let _ = serde_json::to_string(&e);
                continue;
            }
        };
        // Limits of a config as given (update paths see these too).
        let _ = cfg.log_limits();
        assert!(cfg.same_as(&cfg));
        if cfg.normalize(MAX_PAYLOAD).is_err() {
            continue;
        }
        let _ = cfg.log_limits();
        // normalize is idempotent.
        let mut twice = cfg.clone();
        twice
            .normalize(MAX_PAYLOAD)
            .expect("normalize of a normalized config failed");
        assert!(twice.same_as(&cfg), "normalize is not idempotent");

        let plain = serde_json::to_string(&cfg).expect("serialize");
        reparse(&plain, strict, &cfg);
        // What create/update/info responses show.
        let shown = serde_json::to_string(&cfg.with_dynamic_metadata()).expect("serialize");
        reparse(&shown, strict, &cfg);
    }
});
