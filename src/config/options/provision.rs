//! `provision { }`: the JetStream assets an appliance must have, declared
//! in the configuration with the JetStream API's field names (nats-server
//! has no such block).
//!
//! ```text
//! provision {
//!   variables { APPLIANCE_ID: "box-17" }
//!   streams: [ { name: DATA, subjects: ["$APPLIANCE_ID.data.>"], max_age: "168h" } ]
//!   kv: [ { bucket: SERVERS, history: 5 } ]
//!   consumers: [ { stream: DATA, durable_name: INDEXER, ack_policy: explicit } ]
//! }
//! ```
//!
//! `$NAME` and `${NAME}` in strings take the value of `variables.NAME`
//! (`${NAME}` must be defined; `$NAME` of an undefined name stays as
//! written, so `$KV.…` subjects are left alone). A variable's value may be a
//! nats.conf reference (`APPLIANCE_ID: $APPLIANCE_ID`), resolved from the
//! file or the environment as everywhere else. Durations are Go durations
//! (`"90s"`, `"168h"`, or `2m` unquoted) or nanoseconds (a bare number, the
//! API's unit). A KV bucket becomes its stream (`KV_<bucket>`) as the clients
//! create it. `account` on an entry places it (default `$G`).

use std::collections::BTreeMap;

use serde_json::{json, Map as JsonMap, Value as Json};

use super::{go_type, Cx};
use crate::config::{Entry, Value, ValueKind};
use crate::options::{Declared, Options, Provision};

/// Fields of streams and consumers that are durations (nanoseconds in the
/// API).
const DURATIONS: &[&str] = &[
    "max_age",
    "duplicate_window",
    "ack_wait",
    "idle_heartbeat",
    "inactive_threshold",
    "max_expires",
    "backoff",
    "subject_delete_marker_ttl",
];

pub(super) fn block(cx: &mut Cx, e: &Entry, o: &mut Options) {
    let Some(m) = e.value.as_map() else {
        return cx.push(e.key_pos.err(format!(
            "Expected map to define provision, got {}",
            go_type(&e.value)
        )));
    };
    let mut vars = BTreeMap::new();
    if let Some(v) = m.iter().find(|f| f.key.eq_ignore_ascii_case("variables")) {
        match v.value.as_map() {
            Some(vm) => {
                for f in vm {
                    match scalar(&f.value) {
                        Some(s) => {
                            vars.insert(f.key.clone(), s);
                        }
                        None => cx.push(f.value.err(format!(
                            "provision variable {:?}: expected a string or number, got {}",
                            f.key,
                            go_type(&f.value)
                        ))),
                    }
                }
            }
            None => cx.push(v.key_pos.err("provision variables: expected a map")),
        }
    }
    let mut p = Provision::default();
    for f in m {
        match f.key.to_ascii_lowercase().as_str() {
            "variables" => {}
            "streams" => {
                for item in items(cx, f) {
                    if let Some(d) = declared(cx, item, &vars, "name") {
                        p.streams.push(d);
                    }
                }
            }
            "kv" | "key_value" => {
                for item in items(cx, f) {
                    if let Some(d) = declared(cx, item, &vars, "bucket") {
                        match kv_stream(&d) {
                            Ok(config) => p.streams.push(Declared { config, ..d }),
                            Err(why) => cx.push(item.err(format!("provision kv: {why}"))),
                        }
                    }
                }
            }
            "consumers" => {
                for item in items(cx, f) {
                    if let Some(mut d) = declared(cx, item, &vars, "stream") {
                        let Some(obj) = d.config.as_object_mut() else {
                            continue;
                        };
                        let stream = obj.remove("stream").unwrap_or_default();
                        if obj.get("durable_name").is_none() {
                            if let Some(n) = obj.get("name").cloned() {
                                obj.insert("durable_name".into(), n);
                            }
                        }
                        if !obj.get("durable_name").is_some_and(Json::is_string) {
                            cx.push(item.err(
                                "provision consumers: a declared consumer needs durable_name (only durable consumers outlive a restart)",
                            ));
                            continue;
                        }
                        d.config =
                            json!({"stream_name": stream, "config": Json::Object(obj.clone())});
                        p.consumers.push(d);
                    }
                }
            }
            _ => cx.unknown(f),
        }
    }
    o.provision = Some(p);
}

fn items<'a>(cx: &mut Cx, f: &'a Entry) -> &'a [Value] {
    match f.value.as_array() {
        Some(a) => a,
        None => {
            cx.push(f.key_pos.err(format!(
                "provision {}: expected an array, got {}",
                f.key,
                go_type(&f.value)
            )));
            &[]
        }
    }
}

fn scalar(v: &Value) -> Option<String> {
    match &v.kind {
        ValueKind::String(s) => Some(s.clone()),
        ValueKind::Int(i) => Some(i.to_string()),
        ValueKind::Float(f) => Some(f.to_string()),
        ValueKind::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// One entry of `streams`/`kv`/`consumers` as API JSON; `required` names
/// the field it must have (a string).
fn declared(
    cx: &mut Cx,
    item: &Value,
    vars: &BTreeMap<String, String>,
    required: &str,
) -> Option<Declared> {
    if item.as_map().is_none() {
        cx.push(item.err(format!("provision: expected a map, got {}", go_type(item))));
        return None;
    }
    let mut config = match to_json(item, vars, None) {
        Ok(j) => j,
        Err(e) => {
            cx.push(e);
            return None;
        }
    };
    let obj = config.as_object_mut()?;
    let account = match obj.remove("account") {
        Some(Json::String(a)) => a,
        Some(_) => {
            cx.push(item.err("provision: account must be a string"));
            return None;
        }
        None => crate::account::GLOBAL.to_string(),
    };
    if obj
        .get(required)
        .and_then(Json::as_str)
        .is_none_or(str::is_empty)
    {
        cx.push(item.err(format!("provision: {required} is required")));
        return None;
    }
    Some(Declared {
        config,
        account,
        at: item.pos.to_string(),
    })
}

/// A config value as JSON: variables filled in, durations in nanoseconds.
fn to_json(
    v: &Value,
    vars: &BTreeMap<String, String>,
    key: Option<&str>,
) -> Result<Json, crate::config::ConfigError> {
    let is_duration = key.is_some_and(|k| DURATIONS.contains(&k));
    Ok(match &v.kind {
        ValueKind::Map(m) => {
            let mut o = JsonMap::new();
            for e in m {
                o.insert(e.key.clone(), to_json(&e.value, vars, Some(&e.key))?);
            }
            Json::Object(o)
        }
        ValueKind::Array(a) => Json::Array(
            a.iter()
                .map(|x| to_json(x, vars, key))
                .collect::<Result<_, _>>()?,
        ),
        ValueKind::String(_) | ValueKind::Int(_) if is_duration => {
            if let ValueKind::Int(i) = &v.kind {
                if !v.has_suffix() {
                    return Ok(json!(i));
                }
            }
            json!(v.as_duration()?.as_nanos() as u64)
        }
        ValueKind::String(s) => Json::String(fill(s, vars).map_err(|e| v.err(e))?),
        ValueKind::Int(i) => json!(i),
        ValueKind::Float(f) => json!(f),
        ValueKind::Bool(b) => json!(b),
        ValueKind::Datetime(d) => json!(d),
    })
}

/// `$NAME` / `${NAME}` replaced by the variables' values.
fn fill(s: &str, vars: &BTreeMap<String, String>) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(inner) = after.strip_prefix('{') {
            let end = inner
                .find('}')
                .ok_or_else(|| format!("unclosed ${{ in {s:?}"))?;
            let name = &inner[..end];
            let v = vars
                .get(name)
                .ok_or_else(|| format!("provision variable {name:?} is not defined (in {s:?})"))?;
            out.push_str(v);
            rest = &inner[end + 1..];
            continue;
        }
        let len = after
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(after.len());
        let name = &after[..len];
        match vars.get(name) {
            Some(v) if !name.is_empty() => out.push_str(v),
            _ => {
                out.push('$');
                out.push_str(name);
            }
        }
        rest = &after[len..];
    }
    out.push_str(rest);
    Ok(out)
}

/// A KV bucket's stream, as the NATS clients create it.
fn kv_stream(d: &Declared) -> Result<Json, String> {
    let o = d.config.as_object().ok_or("expected a map")?;
    let bucket = o["bucket"].as_str().unwrap_or_default();
    if !bucket
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(format!("invalid bucket name {bucket:?}"));
    }
    let history = o.get("history").and_then(Json::as_i64).unwrap_or(1);
    if !(1..=64).contains(&history) {
        return Err(format!("history must be 1 to 64, not {history}"));
    }
    let ttl = o.get("ttl").and_then(Json::as_i64).unwrap_or(0);
    let mut s = json!({
        "name": format!("KV_{bucket}"),
        "subjects": [format!("$KV.{bucket}.>")],
        "max_msgs_per_subject": history,
        "max_age": ttl,
        "max_bytes": o.get("max_bytes").cloned().unwrap_or(json!(-1)),
        "max_msg_size": o.get("max_value_size").cloned().unwrap_or(json!(-1)),
        "storage": o.get("storage").cloned().unwrap_or(json!("file")),
        "discard": "new",
        "allow_rollup_hdrs": true,
        "deny_delete": true,
        "allow_direct": true,
        "num_replicas": 1,
        "duplicate_window": if ttl > 0 && ttl < 120_000_000_000 { ttl } else { 120_000_000_000 },
    });
    if let Some(desc) = o.get("description") {
        s["description"] = desc.clone();
    }
    for k in o.keys() {
        if !matches!(
            k.as_str(),
            "bucket"
                | "history"
                | "ttl"
                | "max_bytes"
                | "max_value_size"
                | "storage"
                | "description"
        ) {
            return Err(format!(
                "{k:?} is not a KV bucket setting this build provisions"
            ));
        }
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variables_fill_strings() {
        let vars: BTreeMap<String, String> = [("ID".to_string(), "box-1".to_string())].into();
        assert_eq!(fill("$ID.data.>", &vars).unwrap(), "box-1.data.>");
        assert_eq!(fill("a.${ID}.b", &vars).unwrap(), "a.box-1.b");
        assert_eq!(fill("$KV.X.>", &vars).unwrap(), "$KV.X.>");
        assert!(fill("${NOPE}.x", &vars).is_err());
        assert!(fill("${ID", &vars).is_err());
    }

    #[test]
    fn kv_bucket_as_its_stream() {
        let d = Declared {
            config: json!({"bucket": "SERVERS", "history": 5, "ttl": 60_000_000_000i64}),
            account: "$G".into(),
            at: String::new(),
        };
        let s = kv_stream(&d).unwrap();
        assert_eq!(s["name"], "KV_SERVERS");
        assert_eq!(s["subjects"][0], "$KV.SERVERS.>");
        assert_eq!(s["max_msgs_per_subject"], 5);
        assert_eq!(s["duplicate_window"], 60_000_000_000i64);
        let bad = Declared {
            config: json!({"bucket": "A", "compression": true}),
            ..d
        };
        assert!(kv_stream(&bad).is_err());
    }
}
