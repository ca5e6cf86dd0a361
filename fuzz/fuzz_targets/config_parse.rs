//! Fuzz the nats.conf parser: no input may panic, hang or recurse without
//! bound. Parsed trees are also walked through every accessor.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

// The config module used to be compiled here straight from src/config,
// but it now reaches into the rest of the server (options, auth, storage),
// so the target links the server library like the js_* targets.
use broker_edge::config;
use config::{Value, ValueKind};

fn walk(v: &Value) {
    let _ = v.as_duration();
    let _ = v.expect_int();
    let _ = v.err("x").to_string();
    match &v.kind {
        ValueKind::Map(m) => {
            for e in m {
                let _ = v.get_ci(&e.key);
                walk(&e.value);
            }
        }
        ValueKind::Array(a) => a.iter().for_each(walk),
        ValueKind::String(s) => {
            let _ = config::parse_go_duration(s);
        }
        _ => {}
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(src) = std::str::from_utf8(data) else {
        return;
    };
    // No environment, and a base directory that does not exist, so runs
    // are deterministic (relative includes simply fail).
    let env = |_: &str| None;
    let origin = Path::new("/nonexistent-broker-edge-fuzz/fuzz.conf");
    match config::parse_str_with_env(src, origin, &env) {
        Ok(root) => {
            let _ = config::unknown_top_level_keys(&root);
            walk(&root);
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
