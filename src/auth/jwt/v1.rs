//! Version-1 tokens (older `nsc`, jwt v1.x): how to tell them apart and
//! how their claims become the v2 shape, as nats-io/jwt v2's decoder does.

use super::JwtError;

/// jwt's `identifier`: a `type` at the top level makes a v1 token,
/// otherwise `nats.version` decides (absent: 0).
pub(super) fn claims_version(value: &serde_json::Value) -> Result<i64, JwtError> {
    let Some(obj) = value.as_object() else {
        return Err(JwtError::Claims("claims are not a JSON object".into()));
    };
    match obj.get("type") {
        None | Some(serde_json::Value::Null) => {}
        Some(serde_json::Value::String(t)) if t.is_empty() => {}
        Some(serde_json::Value::String(_)) => return Ok(1),
        Some(other) => {
            return Err(JwtError::Claims(format!(
                "type must be a string, got {other}"
            )))
        }
    }
    match obj.get("nats").and_then(|n| n.get("version")) {
        None | Some(serde_json::Value::Null) => Ok(0),
        Some(v) => v
            .as_i64()
            .ok_or_else(|| JwtError::Claims(format!("version must be an integer, got {v}"))),
    }
}

/// jwt v2's `migrateV1` for each claim type, on the JSON: the top-level
/// `type` (and `issuer_account` of users and activations) moves into
/// `nats`, and only what v1 had there is kept.
pub(super) fn migrate_v1(value: &mut serde_json::Value) -> Result<(), JwtError> {
    use serde_json::{Map, Value};
    let Some(obj) = value.as_object_mut() else {
        return Err(JwtError::Claims("claims are not a JSON object".into()));
    };
    let kind = match obj.remove("type") {
        Some(Value::String(k)) => k,
        _ => String::new(),
    };
    obj.remove("tags");
    let issuer_account = obj.remove("issuer_account");
    let mut old = match obj.remove("nats") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m,
        Some(other) => {
            return Err(JwtError::Claims(format!(
                "nats must be an object, got {other}"
            )))
        }
    };
    let keep = |old: &mut Map<String, Value>, keys: &[&str]| -> Map<String, Value> {
        keys.iter()
            .filter_map(|k| old.remove(*k).map(|v| (k.to_string(), v)))
            .collect()
    };
    let mut nats = match kind.as_str() {
        "operator" => keep(
            &mut old,
            &[
                "signing_keys",
                "account_server_url",
                "operator_service_urls",
                "system_account",
            ],
        ),
        "account" => {
            let mut n = keep(
                &mut old,
                &[
                    "imports",
                    "exports",
                    "limits",
                    "signing_keys",
                    "revocations",
                ],
            );
            // v1 accounts have no JetStream: its limits are zeroed.
            if let Some(Value::Object(l)) = n.get_mut("limits") {
                for k in [
                    "mem_storage",
                    "disk_storage",
                    "streams",
                    "consumer",
                    "tiered_limits",
                ] {
                    l.remove(k);
                }
            }
            n
        }
        "user" => {
            let mut n = keep(
                &mut old,
                &[
                    "pub",
                    "sub",
                    "resp",
                    "src",
                    "times",
                    "times_location",
                    "subs",
                    "data",
                    "payload",
                    "bearer_token",
                ],
            );
            // jwt's `loadUser` starts v1 users unlimited.
            for k in ["subs", "data", "payload"] {
                n.entry(k).or_insert(Value::from(-1));
            }
            n
        }
        // The v1 `type` inside `nats` is the import's type.
        "activation" => {
            let mut n = keep(&mut old, &["subject"]);
            if let Some(t) = old.remove("type") {
                n.insert("import_type".into(), t);
            }
            n
        }
        _ => old,
    };
    if matches!(kind.as_str(), "user" | "activation") {
        if let Some(ia) = issuer_account {
            nats.insert("issuer_account".into(), ia);
        }
    }
    nats.insert("type".into(), Value::String(kind));
    nats.insert("version".into(), Value::from(1));
    obj.insert("nats".into(), Value::Object(nats));
    Ok(())
}
