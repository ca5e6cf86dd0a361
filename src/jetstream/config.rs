//! Stream configuration as the JetStream API carries it: nats-server's
//! field names, order and defaults, and the validation a create or an
//! update gets.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::errors::ApiError;

/// Two minutes, nats-server's default duplicate window (ns).
pub const DEFAULT_DUPLICATE_WINDOW: i64 = 120_000_000_000;

/// The API level this server implements (2.10 semantics), as reported in
/// `_nats.level` and `$JS.API.INFO`.
pub const API_LEVEL: u32 = 0;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Retention {
    #[default]
    Limits,
    Interest,
    #[serde(rename = "workqueue")]
    WorkQueue,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Discard {
    #[default]
    Old,
    New,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum StorageType {
    #[default]
    File,
    Memory,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    #[default]
    None,
    S2,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ConsumerLimits {
    #[serde(default, skip_serializing_if = "is_zero_i64")]
    pub inactive_threshold: i64,
    #[serde(default, skip_serializing_if = "is_zero_i64")]
    pub max_ack_pending: i64,
}

/// A field some clients send as `null` (async-nats): the default then.
pub fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

fn neg1() -> i64 {
    -1
}
fn one() -> i64 {
    1
}
fn is_zero_i64(v: &i64) -> bool {
    *v == 0
}
fn is_zero_u64(v: &u64) -> bool {
    *v == 0
}
fn is_false(v: &bool) -> bool {
    !*v
}

/// `StreamConfig` in nats-server's JSON order. Features this server does
/// not implement yet are kept as raw JSON so they can be refused clearly.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StreamConfig {
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subjects: Vec<String>,
    #[serde(default)]
    pub retention: Retention,
    #[serde(default = "neg1")]
    pub max_consumers: i64,
    #[serde(default = "neg1")]
    pub max_msgs: i64,
    #[serde(default = "neg1")]
    pub max_bytes: i64,
    #[serde(default)]
    pub max_age: i64,
    #[serde(default = "neg1")]
    pub max_msgs_per_subject: i64,
    #[serde(default = "neg1")]
    pub max_msg_size: i64,
    #[serde(default)]
    pub discard: Discard,
    #[serde(default)]
    pub storage: StorageType,
    #[serde(default = "one")]
    pub num_replicas: i64,
    #[serde(default, skip_serializing_if = "is_false")]
    pub no_ack: bool,
    #[serde(default, skip_serializing_if = "is_zero_i64")]
    pub duplicate_window: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror: Option<StreamSource>,
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_default"
    )]
    pub sources: Vec<StreamSource>,
    #[serde(default)]
    pub compression: Compression,
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub first_seq: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject_transform: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub republish: Option<serde_json::Value>,
    #[serde(default)]
    pub allow_direct: bool,
    #[serde(default)]
    pub mirror_direct: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    pub discard_new_per_subject: bool,
    #[serde(default)]
    pub sealed: bool,
    #[serde(default)]
    pub deny_delete: bool,
    #[serde(default)]
    pub deny_purge: bool,
    #[serde(default)]
    pub allow_rollup_hdrs: bool,
    #[serde(default, deserialize_with = "null_default")]
    pub consumer_limits: ConsumerLimits,
    #[serde(default)]
    pub allow_msg_ttl: bool,
    #[serde(default, skip_serializing_if = "is_zero_i64")]
    pub subject_delete_marker_ttl: i64,
    #[serde(default, skip_serializing_if = "is_false")]
    pub allow_msg_counter: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    pub allow_atomic: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    pub allow_msg_schedules: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persist_mode: Option<String>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub allow_batched: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<BTreeMap<String, String>>,
}

/// One entry of `sources` (nats-server's `StreamSource`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct StreamSource {
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub opt_start_seq: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opt_start_time: Option<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub filter_subject: String,
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_default"
    )]
    pub subject_transforms: Vec<SourceTransform>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external: Option<ExternalStream>,
    /// Durable sourcing (refused: not built).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumer: Option<serde_json::Value>,
}

/// A source's `{src, dest}` subject transform.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct SourceTransform {
    #[serde(default)]
    pub src: String,
    #[serde(default)]
    pub dest: String,
}

/// Where an external source's API and deliveries are (another domain or
/// account): `{api: "$JS.hub.API", deliver: ""}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ExternalStream {
    #[serde(default)]
    pub api: String,
    #[serde(default)]
    pub deliver: String,
}

impl StreamSource {
    /// The reference's index name: `<name>[:<hash of api>] <filters> <dests>`
    /// (what the `Nats-Stream-Source` header carries to find the source
    /// again).
    pub fn iname(&self) -> String {
        let mut n = self.name.clone();
        if let Some(e) = &self.external {
            n.push(':');
            n.push_str(&short_hash(&e.api));
        }
        let or_all = |s: &str| {
            if s.is_empty() {
                ">".to_string()
            } else {
                s.to_string()
            }
        };
        let (src, dest) = if self.subject_transforms.is_empty() {
            (or_all(&self.filter_subject), ">".to_string())
        } else {
            let srcs: Vec<String> = self
                .subject_transforms
                .iter()
                .map(|t| or_all(&t.src))
                .collect();
            let dests: Vec<String> = self
                .subject_transforms
                .iter()
                .map(|t| or_all(&t.dest))
                .collect();
            (srcs.join("\u{c}"), dests.join("\u{c}"))
        };
        format!("{n} {src} {dest}")
    }

    /// The API prefix requests for this source go to.
    pub fn api_prefix(&self) -> &str {
        match &self.external {
            Some(e) if !e.api.is_empty() => &e.api,
            _ => "$JS.API",
        }
    }
}

/// nats-server's `getHash`: base64url (no padding) of SHA-256, 8 chars.
pub fn short_hash(s: &str) -> String {
    use base64::Engine;
    use sha2::Digest;
    let d = sha2::Sha256::digest(s.as_bytes());
    let b = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(d);
    b[..8].to_string()
}

/// nats-server's asset name rule.
pub(crate) fn valid_asset_name(n: &str) -> bool {
    !n.is_empty() && !n.contains([' ', '\t', '\r', '\n', '\u{c}', '.', '*', '>', '\\', '/'])
}

/// Keys the server owns in `metadata`.
const DYNAMIC_KEYS: [&str; 2] = ["_nats.ver", "_nats.level"];
const REQ_LEVEL: &str = "_nats.req.level";

/// Fields a create/update request may carry beyond the config.
#[derive(Debug, Deserialize)]
struct Request {
    #[serde(flatten)]
    pub config: StreamConfig,
    #[serde(default)]
    pub pedantic: bool,
}

/// Every field a request may hold (for `strict` mode's unknown-field check).
const KNOWN: &[&str] = &[
    "name",
    "description",
    "subjects",
    "retention",
    "max_consumers",
    "max_msgs",
    "max_bytes",
    "max_age",
    "max_msgs_per_subject",
    "max_msg_size",
    "discard",
    "storage",
    "num_replicas",
    "no_ack",
    "duplicate_window",
    "placement",
    "mirror",
    "sources",
    "compression",
    "first_seq",
    "subject_transform",
    "republish",
    "allow_direct",
    "mirror_direct",
    "discard_new_per_subject",
    "sealed",
    "deny_delete",
    "deny_purge",
    "allow_rollup_hdrs",
    "consumer_limits",
    "allow_msg_ttl",
    "subject_delete_marker_ttl",
    "allow_msg_counter",
    "allow_atomic",
    "allow_msg_schedules",
    "persist_mode",
    "allow_batched",
    "metadata",
    "pedantic",
    "template_owner",
];

/// Parses a create/update body. `strict` refuses unknown fields, as
/// `jetstream { strict: true }` does in the reference.
pub fn parse(body: &[u8], strict: bool) -> Result<StreamConfig, ApiError> {
    let v: serde_json::Value = serde_json::from_slice(body).map_err(json_error)?;
    if strict {
        if let Some(obj) = v.as_object() {
            if let Some(k) = obj.keys().find(|k| !KNOWN.contains(&k.as_str())) {
                return Err(ApiError::invalid_json(format!(
                    "json: unknown field \"{k}\""
                )));
            }
        }
    }
    let r: Request = serde_json::from_value(v).map_err(json_error)?;
    if r.pedantic {
        return Err(ApiError::not_supported("pedantic mode"));
    }
    Ok(r.config)
}

/// A JSON error in Go's words where they are known (clients and tests
/// match on them), else serde's.
pub fn json_error(e: serde_json::Error) -> ApiError {
    if e.is_eof() {
        return ApiError::invalid_json("unexpected EOF");
    }
    let text = e.to_string();
    if let Some(rest) = text.strip_prefix("unknown variant `") {
        if let Some((value, _)) = rest.split_once('`') {
            let quoted = serde_json::to_string(value).unwrap_or_default();
            return ApiError::invalid_json(format!(
                "can not unmarshal {}",
                serde_json::to_string(&quoted).unwrap_or_default()
            ));
        }
    }
    ApiError::invalid_json(e)
}

/// A stream name as nats-server accepts it: not empty, no whitespace,
/// wildcards, dots or path separators.
pub fn check_name(name: &str) -> Result<(), ApiError> {
    if name.contains('/') || name.contains('\\') {
        return Err(ApiError::name_path_separators());
    }
    if name.is_empty()
        || name.len() > 255
        || name
            .chars()
            .any(|c| c.is_whitespace() || matches!(c, '.' | '*' | '>') || c.is_control())
    {
        return Err(ApiError::invalid_config(
            "stream name is required and can not contain '.', '*', '>', '\\', '/'",
        ));
    }
    Ok(())
}

impl StreamConfig {
    /// Fills the defaults nats-server fills on create and checks what this
    /// server can honour. `name` is the stream named by the API subject.
    pub fn normalize(&mut self, max_msg_payload: usize) -> Result<(), ApiError> {
        check_name(&self.name)?;
        if self.num_replicas < 0 {
            return Err(ApiError::replicas_negative());
        }
        if self.num_replicas == 0 {
            self.num_replicas = 1;
        }
        if self.num_replicas > 1 {
            return Err(ApiError::replicas_not_supported());
        }
        if self.max_consumers == 0 || self.max_consumers < -1 {
            self.max_consumers = -1;
        }
        for v in [
            &mut self.max_msgs,
            &mut self.max_bytes,
            &mut self.max_msgs_per_subject,
            &mut self.max_msg_size,
        ] {
            if *v == 0 || *v < -1 {
                *v = -1;
            }
        }
        if self.max_age < 0 {
            return Err(ApiError::invalid_config("max age needs to be >= 0"));
        }
        if self.duplicate_window < 0 {
            return Err(ApiError::invalid_config(
                "duplicates window can not be negative",
            ));
        }
        if self.max_msg_size > max_msg_payload as i64 {
            return Err(ApiError::invalid_config(
                "max message size larger than max payload size",
            ));
        }
        if self.duplicate_window == 0 && self.mirror.is_none() && self.sources.is_empty() {
            self.duplicate_window = DEFAULT_DUPLICATE_WINDOW;
        }
        if self.max_age != 0 && self.duplicate_window > self.max_age {
            if self.duplicate_window != DEFAULT_DUPLICATE_WINDOW {
                return Err(ApiError::invalid_config(
                    "duplicates window can not be larger then max age",
                ));
            }
            self.duplicate_window = self.max_age;
        }
        if self.subjects.is_empty() && self.mirror.is_none() && self.sources.is_empty() {
            self.subjects = vec![self.name.clone()];
        }
        for s in &self.subjects {
            if !crate::subject::is_valid_filter(s.as_bytes()) {
                return Err(ApiError::invalid_config(format!("invalid subject: {s}")));
            }
            if self.no_ack {
                continue;
            }
            if s == ">" {
                return Err(ApiError::invalid_config(
                    "capturing all subjects requires no-ack to be true",
                ));
            }
            let over = |f: &[u8]| crate::subject::filters_overlap(s.as_bytes(), f);
            let under = |f: &[u8]| crate::subject::matches(f, s.as_bytes());
            if (over(b"$JS.>") || over(b"$JSC.>") || over(b"$NRG.>")) && !under(b"$JS.EVENT.>") {
                return Err(ApiError::invalid_config(
                    "subjects that overlap with jetstream api require no-ack to be true",
                ));
            }
            if over(b"$SYS.>") && !under(b"$SYS.ACCOUNT.>") {
                return Err(ApiError::invalid_config(
                    "subjects that overlap with system api require no-ack to be true",
                ));
            }
        }
        for (i, a) in self.subjects.iter().enumerate() {
            if self.subjects[..i]
                .iter()
                .any(|b| crate::subject::filters_overlap(a.as_bytes(), b.as_bytes()))
            {
                return Err(ApiError::invalid_config(format!(
                    "duplicate subjects detected: {a}"
                )));
            }
        }
        if let Some(t) = &self.subject_transform {
            super::transform::from_config(t, "subject transform")?;
        }
        if let Some(r) = &self.republish {
            let t = super::transform::from_config(r, "republish")?;
            let _ = t;
            let dest = r.get("dest").and_then(|d| d.as_str()).unwrap_or("");
            if self
                .subjects
                .iter()
                .any(|s| crate::subject::filters_overlap(s.as_bytes(), dest.as_bytes()))
            {
                return Err(ApiError::invalid_config(
                    "stream configuration for republish destination forms a cycle",
                ));
            }
        }
        super::source::check_sources(&self.sources)?;
        super::source::mirror::check_config(self)?;
        // Honour or refuse: what is not built yet is named, not ignored.
        let unsupported = [
            (
                "mirror with a durable consumer",
                self.mirror.as_ref().is_some_and(|m| m.consumer.is_some()),
            ),
            (
                "sources with a durable consumer",
                self.sources.iter().any(|s| s.consumer.is_some()),
            ),
            ("compression s2", self.compression == Compression::S2),
            (
                "subject_delete_marker_ttl",
                self.subject_delete_marker_ttl != 0,
            ),
            ("allow_msg_counter", self.allow_msg_counter),
            ("allow_atomic", self.allow_atomic),
            ("allow_msg_schedules", self.allow_msg_schedules),
            ("allow_batched", self.allow_batched),
            ("persist_mode", self.persist_mode.is_some()),
        ];
        if let Some((what, _)) = unsupported.iter().find(|(_, on)| *on) {
            return Err(ApiError::not_supported(what));
        }
        let md = self.metadata.get_or_insert_with(BTreeMap::new);
        for k in DYNAMIC_KEYS {
            md.remove(k);
        }
        md.insert(REQ_LEVEL.into(), API_LEVEL.to_string());
        Ok(())
    }

    /// The config as responses to create/update/info show it: with the
    /// server's version and API level in `metadata`.
    pub fn with_dynamic_metadata(&self) -> StreamConfig {
        let mut c = self.clone();
        let md = c.metadata.get_or_insert_with(BTreeMap::new);
        md.insert(
            "_nats.ver".into(),
            crate::protocol::info::NATS_VERSION.to_string(),
        );
        md.insert("_nats.level".into(), API_LEVEL.to_string());
        c
    }

    /// Equal for the purpose of an idempotent create (server-owned
    /// metadata keys aside).
    pub fn same_as(&self, other: &StreamConfig) -> bool {
        let strip = |c: &StreamConfig| {
            let mut c = c.clone();
            if let Some(md) = c.metadata.as_mut() {
                for k in DYNAMIC_KEYS.iter().chain([&REQ_LEVEL]) {
                    md.remove(*k);
                }
                if md.is_empty() {
                    c.metadata = None;
                }
            }
            c
        };
        strip(self) == strip(other)
    }

    /// Checks an update against the stream's current config: what can
    /// not change is refused with the reference's wording.
    pub fn check_update(&self, old: &StreamConfig) -> Result<(), ApiError> {
        if self.storage != old.storage {
            return Err(ApiError::invalid_config(
                "stream configuration update can not change storage type",
            ));
        }
        if self.retention != old.retention {
            return Err(ApiError::update_failed(
                "stream configuration update can not change retention policy",
            ));
        }
        if old.sealed && !self.sealed {
            return Err(ApiError::update_failed(
                "stream configuration update can not unseal a sealed stream",
            ));
        }
        if old.deny_delete && !self.deny_delete {
            return Err(ApiError::update_failed(
                "stream configuration update can not cancel deny message deletes",
            ));
        }
        if old.deny_purge && !self.deny_purge {
            return Err(ApiError::update_failed(
                "stream configuration update can not cancel deny purge",
            ));
        }
        // A mirror may be removed (the stream is promoted to a normal
        // one), never changed.
        if self.mirror.is_some() && self.mirror != old.mirror {
            return Err(ApiError::new_pub(
                400,
                10055,
                "stream mirror configuration can not be updated",
            ));
        }
        Ok(())
    }

    /// The storage engine's retention limits for this config.
    pub fn log_limits(&self) -> broker_edge_storage::Limits {
        let pos = |v: i64| (v > 0).then_some(v as u64);
        broker_edge_storage::Limits {
            max_msgs: pos(self.max_msgs),
            max_bytes: pos(self.max_bytes),
            max_age: (self.max_age > 0)
                .then(|| std::time::Duration::from_nanos(self.max_age as u64)),
            max_msgs_per_subject: pos(self.max_msgs_per_subject),
            // Checked by the stream (headers + payload, as the reference).
            max_msg_size: None,
            discard: match self.discard {
                Discard::Old => broker_edge_storage::Discard::Old,
                Discard::New => broker_edge_storage::Discard::New,
            },
            discard_new_per_subject: self.discard_new_per_subject,
        }
    }
}

/// A time as Go's RFC3339Nano prints it (UTC, trailing zeros trimmed);
/// 0 is Go's zero time.
pub fn go_time(ns: u64) -> String {
    if ns == 0 {
        return "0001-01-01T00:00:00Z".into();
    }
    let secs = (ns / 1_000_000_000) as i64;
    let frac = (ns % 1_000_000_000) as u32;
    let t = chrono::DateTime::from_timestamp(secs, frac).unwrap_or_default();
    let mut s = t.format("%Y-%m-%dT%H:%M:%S").to_string();
    if frac > 0 {
        let f = format!("{frac:09}");
        s.push('.');
        s.push_str(f.trim_end_matches('0'));
    }
    s.push('Z');
    s
}

/// Parses a time in the format above (and RFC3339 generally) into ns.
pub fn parse_time(s: &str) -> Option<u64> {
    let t = chrono::DateTime::parse_from_rfc3339(s).ok()?;
    // Before the epoch (Go's zero time included, which `go_time(0)`
    // prints) is the epoch: the log has nothing older.
    if t.timestamp() < 0 {
        return Some(0);
    }
    let ns = t.timestamp_nanos_opt()?;
    Some(ns as u64)
}

pub fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_like_the_reference() {
        let mut c = parse(br#"{"name":"ORDERS"}"#, false).unwrap();
        c.normalize(1 << 20).unwrap();
        let v = serde_json::to_value(&c).unwrap();
        assert_eq!(v["subjects"], serde_json::json!(["ORDERS"]));
        assert_eq!(v["max_msgs"], -1);
        assert_eq!(v["duplicate_window"], 120_000_000_000i64);
        assert_eq!(v["retention"], "limits");
        assert_eq!(v["storage"], "file");
        assert_eq!(v["consumer_limits"], serde_json::json!({}));
        assert_eq!(v["metadata"]["_nats.req.level"], "0");
    }

    #[test]
    fn names_and_replicas() {
        assert_eq!(check_name("a.b").unwrap_err().err_code, 10052);
        assert_eq!(check_name("a/b").unwrap_err().err_code, 10128);
        let mut c = parse(br#"{"name":"X","num_replicas":3}"#, false).unwrap();
        assert_eq!(c.normalize(1024).unwrap_err().err_code, 10074);
    }

    #[test]
    fn strict_refuses_unknown_fields() {
        assert!(parse(br#"{"name":"X","bogus":1}"#, false).is_ok());
        assert_eq!(
            parse(br#"{"name":"X","bogus":1}"#, true)
                .unwrap_err()
                .err_code,
            10025
        );
        assert_eq!(parse(b"{", false).unwrap_err().err_code, 10025);
    }

    #[test]
    fn go_times() {
        assert_eq!(go_time(0), "0001-01-01T00:00:00Z");
        assert_eq!(go_time(1_500_000_000), "1970-01-01T00:00:01.5Z");
        assert_eq!(parse_time(&go_time(0)), Some(0));
        assert_eq!(parse_time("1969-12-31T23:59:59Z"), Some(0));
        assert_eq!(
            parse_time(&go_time(1_700_000_000_123_000_000)),
            Some(1_700_000_000_123_000_000)
        );
    }
}
