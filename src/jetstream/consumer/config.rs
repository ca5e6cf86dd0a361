//! Consumer configuration as the JetStream API carries it: nats-server's
//! field names, order and defaults, and the checks a create gets (with
//! the reference's error codes, which clients branch on).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::jetstream::config::{Retention, StreamConfig};
use crate::jetstream::errors::ApiError;

/// nats-server's defaults.
pub const DEFAULT_ACK_WAIT: i64 = 30_000_000_000;
pub const DEFAULT_MAX_ACK_PENDING: i64 = 1000;
pub const DEFAULT_MAX_WAITING: i64 = 512;
/// Ephemerals go after this long without interest (5 s).
pub const DEFAULT_INACTIVE: i64 = 5_000_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum DeliverPolicy {
    #[default]
    #[serde(rename = "all")]
    All,
    #[serde(rename = "last")]
    Last,
    #[serde(rename = "new")]
    New,
    #[serde(rename = "by_start_sequence")]
    ByStartSequence,
    #[serde(rename = "by_start_time")]
    ByStartTime,
    #[serde(rename = "last_per_subject")]
    LastPerSubject,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum AckPolicy {
    #[default]
    None,
    All,
    Explicit,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ReplayPolicy {
    #[default]
    Instant,
    Original,
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
fn is_empty(s: &str) -> bool {
    s.is_empty()
}

/// `ConsumerConfig` in nats-server's JSON order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ConsumerConfig {
    #[serde(default, rename = "durable_name", skip_serializing_if = "is_empty")]
    pub durable: String,
    #[serde(default, skip_serializing_if = "is_empty")]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default)]
    pub deliver_policy: DeliverPolicy,
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub opt_start_seq: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opt_start_time: Option<String>,
    #[serde(default)]
    pub ack_policy: AckPolicy,
    #[serde(default, skip_serializing_if = "is_zero_i64")]
    pub ack_wait: i64,
    #[serde(default, skip_serializing_if = "is_zero_i64")]
    pub max_deliver: i64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub backoff: Vec<i64>,
    #[serde(default, skip_serializing_if = "is_empty")]
    pub filter_subject: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub filter_subjects: Vec<String>,
    #[serde(default)]
    pub replay_policy: ReplayPolicy,
    #[serde(
        default,
        rename = "rate_limit_bps",
        skip_serializing_if = "is_zero_u64"
    )]
    pub rate_limit: u64,
    #[serde(default, skip_serializing_if = "is_empty")]
    pub sample_freq: String,
    #[serde(default, skip_serializing_if = "is_zero_i64")]
    pub max_waiting: i64,
    #[serde(default, skip_serializing_if = "is_zero_i64")]
    pub max_ack_pending: i64,
    #[serde(default, skip_serializing_if = "is_zero_i64")]
    pub idle_heartbeat: i64,
    #[serde(default, skip_serializing_if = "is_false")]
    pub flow_control: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    pub headers_only: bool,
    #[serde(default, skip_serializing_if = "is_zero_i64")]
    pub max_batch: i64,
    #[serde(default, skip_serializing_if = "is_zero_i64")]
    pub max_expires: i64,
    #[serde(default, skip_serializing_if = "is_zero_i64")]
    pub max_bytes: i64,
    #[serde(default, skip_serializing_if = "is_empty")]
    pub deliver_subject: String,
    #[serde(default, skip_serializing_if = "is_empty")]
    pub deliver_group: String,
    #[serde(default, skip_serializing_if = "is_zero_i64")]
    pub inactive_threshold: i64,
    #[serde(default)]
    pub num_replicas: i64,
    #[serde(default, skip_serializing_if = "is_false")]
    pub mem_storage: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    pub direct: bool,
    /// Made by a sourcing stream (nats-server 2.12+ marks them).
    #[serde(default, skip_serializing_if = "is_false")]
    pub sourcing: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause_until: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority_groups: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority_policy: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority_timeout: Option<serde_json::Value>,
}

/// What a create request carries besides the config.
#[derive(Debug, Deserialize)]
pub struct CreateRequest {
    #[serde(default)]
    pub stream_name: String,
    #[serde(default)]
    pub config: Option<ConsumerConfig>,
    #[serde(default)]
    pub action: String,
    #[serde(default)]
    pub pedantic: bool,
}

const KNOWN_REQ: &[&str] = &["stream_name", "config", "action", "pedantic"];
const KNOWN: &[&str] = &[
    "durable_name",
    "name",
    "description",
    "deliver_policy",
    "opt_start_seq",
    "opt_start_time",
    "ack_policy",
    "ack_wait",
    "max_deliver",
    "backoff",
    "filter_subject",
    "filter_subjects",
    "replay_policy",
    "rate_limit_bps",
    "sample_freq",
    "max_waiting",
    "max_ack_pending",
    "idle_heartbeat",
    "flow_control",
    "headers_only",
    "max_batch",
    "max_expires",
    "max_bytes",
    "deliver_subject",
    "deliver_group",
    "inactive_threshold",
    "num_replicas",
    "mem_storage",
    "direct",
    "sourcing",
    "metadata",
    "pause_until",
    "priority_groups",
    "priority_policy",
    "priority_timeout",
];

/// Parses a create body (`strict`: unknown fields refused).
pub fn parse_request(body: &[u8], strict: bool) -> Result<CreateRequest, ApiError> {
    use crate::jetstream::config::json_error;
    let v: serde_json::Value = serde_json::from_slice(body).map_err(json_error)?;
    if strict {
        let unknown = |obj: &serde_json::Map<String, serde_json::Value>, known: &[&str]| {
            obj.keys()
                .find(|k| !known.contains(&k.as_str()))
                .map(|k| ApiError::invalid_json(format!("json: unknown field \"{k}\"")))
        };
        if let Some(obj) = v.as_object() {
            if let Some(e) = unknown(obj, KNOWN_REQ) {
                return Err(e);
            }
            if let Some(c) = obj.get("config").and_then(|c| c.as_object()) {
                if let Some(e) = unknown(c, KNOWN) {
                    return Err(e);
                }
            }
        }
    }
    let r: CreateRequest = serde_json::from_value(v).map_err(json_error)?;
    if r.pedantic {
        return Err(ApiError::not_supported("pedantic mode"));
    }
    Ok(r)
}

/// A consumer name as the reference accepts it (`what`: "name" or
/// "durable name").
pub fn check_name(name: &str, what: &str) -> Result<(), ApiError> {
    if name
        .chars()
        .any(|c| c.is_whitespace() || matches!(c, '.' | '*' | '>' | '/' | '\\') || c.is_control())
    {
        return Err(ApiError::invalid_config(format!(
            "consumer {what} can not contain '.', '*', '>', '\\', '/'"
        )));
    }
    Ok(())
}

/// The policy as the reference's messages name it.
fn policy_words(p: DeliverPolicy) -> &'static str {
    match p {
        DeliverPolicy::All => "all",
        DeliverPolicy::Last => "last",
        DeliverPolicy::New => "new",
        DeliverPolicy::ByStartSequence => "by start sequence",
        DeliverPolicy::ByStartTime => "by start time",
        DeliverPolicy::LastPerSubject => "last per subject",
    }
}

const DYNAMIC_KEYS: [&str; 2] = ["_nats.ver", "_nats.level"];
const REQ_LEVEL: &str = "_nats.req.level";

impl ConsumerConfig {
    pub fn is_pull(&self) -> bool {
        self.deliver_subject.is_empty()
    }

    pub fn is_durable(&self) -> bool {
        !self.durable.is_empty()
    }

    /// Paused until this time (ns), when in the future.
    pub fn paused_until(&self) -> Option<u64> {
        let t = crate::jetstream::config::parse_time(self.pause_until.as_deref()?)?;
        (t > crate::jetstream::config::now_ns()).then_some(t)
    }

    /// Every filter (one, several, or none = everything).
    pub fn filters(&self) -> Vec<String> {
        if !self.filter_subject.is_empty() {
            vec![self.filter_subject.clone()]
        } else {
            self.filter_subjects.clone()
        }
    }

    /// Fills nats-server's defaults and checks the config against the
    /// stream (`setConsumerConfigDefaults` and `checkConsumerCfg`, in
    /// their order, with their wording).
    pub fn normalize(&mut self, stream: &StreamConfig) -> Result<(), ApiError> {
        if self.name.is_empty() && !self.durable.is_empty() {
            self.name = self.durable.clone();
        }
        // Defaults.
        let limits = &stream.consumer_limits;
        if self.max_deliver == 0 || self.max_deliver < -1 {
            self.max_deliver = -1;
        }
        if self.ack_policy != AckPolicy::None && self.ack_wait == 0 {
            self.ack_wait = DEFAULT_ACK_WAIT;
        }
        if let Some(b) = self.backoff.first() {
            self.ack_wait = *b;
        }
        if self.is_pull() && self.max_waiting <= 0 {
            self.max_waiting = DEFAULT_MAX_WAITING;
        }
        if self.max_ack_pending < -1 {
            self.max_ack_pending = -1;
        }
        if self.max_ack_pending == 0 {
            self.max_ack_pending = limits.max_ack_pending.max(0);
            if self.max_ack_pending == 0 && self.ack_policy != AckPolicy::None {
                self.max_ack_pending = DEFAULT_MAX_ACK_PENDING;
            }
        }
        if self.inactive_threshold < 0 {
            self.inactive_threshold = 0;
        }
        if self.inactive_threshold == 0 && limits.inactive_threshold > 0 {
            self.inactive_threshold = limits.inactive_threshold;
        }
        if self.durable.is_empty() && self.inactive_threshold == 0 {
            self.inactive_threshold = DEFAULT_INACTIVE;
        }
        for v in [
            &mut self.max_batch,
            &mut self.max_expires,
            &mut self.max_bytes,
        ] {
            if *v < 0 {
                *v = 0;
            }
        }
        let md = self.metadata.get_or_insert_with(BTreeMap::new);
        for k in DYNAMIC_KEYS {
            md.remove(k);
        }
        md.insert(
            REQ_LEVEL.into(),
            crate::jetstream::config::API_LEVEL.to_string(),
        );
        self.check(stream)
    }

    /// The config as responses show it: with the server's version and API
    /// level in `metadata`.
    pub fn with_dynamic_metadata(&self) -> ConsumerConfig {
        let mut c = self.clone();
        let md = c.metadata.get_or_insert_with(BTreeMap::new);
        md.insert(
            "_nats.ver".into(),
            crate::protocol::info::NATS_VERSION.to_string(),
        );
        md.insert(
            "_nats.level".into(),
            crate::jetstream::config::API_LEVEL.to_string(),
        );
        c
    }

    fn check(&self, stream: &StreamConfig) -> Result<(), ApiError> {
        if !self.durable.is_empty() {
            check_name(&self.durable, "durable name")?;
        }
        if !self.name.is_empty() {
            check_name(&self.name, "name")?;
        }
        if self.num_replicas > 1 {
            return Err(ApiError::replicas_not_supported());
        }
        if self.num_replicas < 0 {
            return Err(ApiError::replicas_negative());
        }
        if self.backoff.iter().any(|b| *b < 0) {
            return Err(ApiError::consumer_create(
                "backoff values can not be negative",
            ));
        }
        if self.ack_wait < 0 {
            return Err(ApiError::new_pub(
                400,
                10183,
                "consumer ack wait needs to be positive",
            ));
        }
        if !self.backoff.is_empty()
            && self.max_deliver != -1
            && self.max_deliver <= self.backoff.len() as i64
        {
            return Err(ApiError::max_deliver_backoff());
        }
        if let Some(d) = &self.description {
            if d.len() > 4096 {
                return Err(ApiError::description_too_long());
            }
        }
        if !self.is_pull() {
            if crate::subject::has_wildcard(self.deliver_subject.as_bytes()) {
                return Err(ApiError::deliver_wildcard());
            }
            if !crate::subject::is_valid_literal(self.deliver_subject.as_bytes())
                || self.deliver_subject.starts_with("$JS.API.")
            {
                return Err(ApiError::new_pub(
                    400,
                    10112,
                    "invalid push consumer deliver subject",
                ));
            }
            if stream
                .subjects
                .iter()
                .any(|s| crate::subject::matches(s.as_bytes(), self.deliver_subject.as_bytes()))
            {
                return Err(ApiError::deliver_cycle());
            }
            if self.max_waiting != 0 {
                return Err(ApiError::push_max_waiting());
            }
            if self.ack_policy == AckPolicy::None && self.max_ack_pending > 0 {
                return Err(ApiError::new_pub(
                    400,
                    10082,
                    "consumer requires ack policy for max ack pending",
                ));
            }
            if self.idle_heartbeat > 0 && self.idle_heartbeat < 100_000_000 {
                return Err(ApiError::new_pub(
                    400,
                    10083,
                    "consumer idle heartbeat needs to be >= 100ms",
                ));
            }
        } else {
            if stream.retention == Retention::WorkQueue && self.ack_policy == AckPolicy::None {
                return Err(ApiError::new_pub(
                    400,
                    10084,
                    "consumer in pull mode requires explicit ack policy on workqueue stream",
                ));
            }
            if self.rate_limit > 0 {
                return Err(ApiError::new_pub(
                    400,
                    10086,
                    "consumer in pull mode can not have rate limit set",
                ));
            }
            if self.idle_heartbeat > 0 {
                return Err(ApiError::pull_heartbeat());
            }
            if self.flow_control {
                return Err(ApiError::pull_flow_control());
            }
            if self.max_expires != 0 && self.max_expires < 1_000_000 {
                return Err(ApiError::max_request_expires_small());
            }
        }
        let limits = &stream.consumer_limits;
        if limits.max_ack_pending > 0 && self.max_ack_pending > limits.max_ack_pending {
            return Err(ApiError::new_pub(
                400,
                10121,
                format!(
                    "consumer max ack pending exceeds system limit of {}",
                    limits.max_ack_pending
                ),
            ));
        }
        if limits.inactive_threshold > 0 && self.inactive_threshold > limits.inactive_threshold {
            return Err(ApiError::new_pub(
                400,
                10153,
                format!(
                    "consumer inactive threshold exceeds system limit of {}",
                    super::pull::go_duration(limits.inactive_threshold)
                ),
            ));
        }
        if self.direct && self.is_pull() {
            return Err(ApiError::new_pub(
                400,
                10090,
                "consumer direct requires a push based consumer",
            ));
        }
        if !self.filter_subject.is_empty() && !self.filter_subjects.is_empty() {
            return Err(ApiError::duplicate_filter_subjects_conflict());
        }
        let filters = self.filters();
        let mut seen: Vec<&str> = Vec::new();
        for f in &filters {
            if f.is_empty() {
                return Err(ApiError::empty_filter());
            }
            if !crate::subject::is_valid_filter(f.as_bytes()) {
                return Err(ApiError::invalid_config("invalid subject"));
            }
            if seen
                .iter()
                .any(|s| crate::subject::filters_overlap(s.as_bytes(), f.as_bytes()))
            {
                return Err(ApiError::filter_overlap());
            }
            seen.push(f);
        }
        let policy = policy_words(self.deliver_policy);
        let bad = |what: &str| {
            Err(ApiError::invalid_consumer_policy(format!(
                "consumer delivery policy is deliver {policy}, but optional {what}"
            )))
        };
        match self.deliver_policy {
            DeliverPolicy::ByStartSequence => {
                if self.opt_start_seq == 0 {
                    return bad("start sequence is not set");
                }
                if self.opt_start_time.is_some() {
                    return bad("start time is also set");
                }
            }
            DeliverPolicy::ByStartTime => {
                if self.opt_start_time.is_none() {
                    return bad("start time is not set");
                }
                if self.opt_start_seq != 0 {
                    return bad("start start sequence is also set");
                }
            }
            other => {
                if self.opt_start_seq != 0 {
                    return bad("start sequence is also set");
                }
                if self.opt_start_time.is_some() {
                    return bad("start time is also set");
                }
                if other == DeliverPolicy::LastPerSubject && filters.is_empty() {
                    return bad("filter subject is not set");
                }
            }
        }
        for t in [&self.opt_start_time, &self.pause_until]
            .into_iter()
            .flatten()
        {
            if crate::jetstream::config::parse_time(t).is_none() {
                return Err(ApiError::invalid_json(format!(
                    "parsing time {t:?}: cannot parse"
                )));
            }
        }
        if !self.sample_freq.is_empty() {
            let digits = self.sample_freq.trim_end_matches('%');
            if digits.parse::<u32>().is_err() {
                return Err(ApiError::new_pub(
                    400,
                    10095,
                    format!(
                        "failed to parse consumer sampling configuration: strconv.Atoi: parsing {:?}: invalid syntax",
                        digits
                    ),
                ));
            }
        }
        if self.flow_control && self.idle_heartbeat <= 0 {
            return Err(ApiError::flow_control_heartbeat());
        }
        if !self.durable.is_empty() && !self.name.is_empty() && self.durable != self.name {
            return Err(ApiError::durable_and_name_mismatch());
        }
        let groups = self
            .priority_groups
            .as_ref()
            .is_some_and(|g| g.as_array().is_none_or(|a| !a.is_empty()));
        let policy = self
            .priority_policy
            .as_ref()
            .is_some_and(|p| p.as_str().is_none_or(|s| !s.is_empty() && s != "none"));
        if groups || policy {
            return Err(ApiError::not_supported("consumer priority groups"));
        }
        if stream.retention == Retention::WorkQueue && self.ack_policy != AckPolicy::Explicit {
            return Err(ApiError::wq_requires_explicit_ack());
        }
        Ok(())
    }

    /// Equal for an idempotent create (server-owned metadata aside).
    pub fn same_as(&self, other: &ConsumerConfig) -> bool {
        let strip = |c: &ConsumerConfig| {
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

    /// The fields an update may not change (the reference's
    /// `updateConfig`), in its words; `None` when the change is allowed.
    pub fn update_error(&self, old: &ConsumerConfig) -> Option<ApiError> {
        let bad = |what: &str| Some(ApiError::consumer_create(what.to_string()));
        if self.deliver_policy != old.deliver_policy {
            return bad("deliver policy can not be updated");
        }
        if self.mem_storage != old.mem_storage {
            return bad("storage type can not be updated");
        }
        if self.direct != old.direct {
            return bad("direct can not be updated");
        }
        if self.opt_start_seq != old.opt_start_seq {
            return bad("start sequence can not be updated");
        }
        if self.opt_start_time != old.opt_start_time {
            return bad("start time can not be updated");
        }
        if self.ack_policy != old.ack_policy {
            return bad("ack policy can not be updated");
        }
        if self.replay_policy != old.replay_policy {
            return bad("replay policy can not be updated");
        }
        if self.idle_heartbeat != old.idle_heartbeat {
            return bad("heart beats can not be updated");
        }
        if self.flow_control != old.flow_control {
            return bad("flow control can not be updated");
        }
        if self.is_pull() && !old.is_pull() {
            return bad("can not update push consumer to pull based");
        }
        if !self.is_pull() && old.is_pull() {
            return bad("can not update pull consumer to push based");
        }
        if self.max_waiting != old.max_waiting {
            return bad("max waiting can not be updated");
        }
        None
    }
}
