//! JetStream API errors with nats-server's codes and wording
//! (`server/errors.json`): clients and the `nats` CLI branch on `err_code`.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{description} ({err_code})")]
pub struct ApiError {
    pub code: u16,
    pub err_code: u16,
    pub description: String,
}

impl ApiError {
    /// An error not named below (rare ones, used in one place).
    pub fn new_pub(code: u16, err_code: u16, d: impl Into<String>) -> ApiError {
        Self::new(code, err_code, d)
    }

    fn new(code: u16, err_code: u16, d: impl Into<String>) -> ApiError {
        ApiError {
            code,
            err_code,
            description: d.into(),
        }
    }

    pub fn stream_not_found() -> Self {
        Self::new(404, 10059, "stream not found")
    }
    pub fn stream_name_exist() -> Self {
        Self::new(
            400,
            10058,
            "stream name already in use with a different configuration",
        )
    }
    pub fn subject_overlap() -> Self {
        Self::new(400, 10065, "subjects overlap with an existing stream")
    }
    pub fn invalid_config(err: impl std::fmt::Display) -> Self {
        Self::new(500, 10052, err.to_string())
    }
    pub fn bad_request() -> Self {
        Self::new(400, 10003, "bad request")
    }
    pub fn invalid_json(err: impl std::fmt::Display) -> Self {
        Self::new(400, 10025, format!("invalid JSON: {err}"))
    }
    pub fn not_enabled_for_account() -> Self {
        Self::new(503, 10039, "JetStream not enabled for account")
    }
    pub fn no_message_found() -> Self {
        Self::new(404, 10037, "no message found")
    }
    pub fn stream_mismatch() -> Self {
        Self::new(400, 10056, "stream name in subject does not match request")
    }
    pub fn replicas_not_supported() -> Self {
        Self::new(
            500,
            10074,
            "replicas > 1 not supported in non-clustered mode",
        )
    }
    pub fn name_path_separators() -> Self {
        Self::new(400, 10128, "Stream name can not contain path separators")
    }
    pub fn wrong_last_sequence(seq: u64) -> Self {
        Self::new(400, 10071, format!("wrong last sequence: {seq}"))
    }
    pub fn wrong_last_msg_id(id: &str) -> Self {
        Self::new(400, 10070, format!("wrong last msg ID: {id}"))
    }
    pub fn stream_not_match() -> Self {
        Self::new(400, 10060, "expected stream does not match")
    }
    pub fn msg_too_large() -> Self {
        Self::new(400, 10054, "message size exceeds maximum allowed")
    }
    pub fn store_failed(err: impl std::fmt::Display) -> Self {
        Self::new(503, 10077, err.to_string())
    }
    pub fn storage_exceeded() -> Self {
        Self::new(500, 10047, "insufficient storage resources available")
    }
    pub fn insufficient_resources() -> Self {
        Self::new(503, 10023, "insufficient resources")
    }
    pub fn account_resources_exceeded() -> Self {
        Self::new(400, 10002, "resource limits exceeded for account")
    }
    pub fn memory_exceeded() -> Self {
        Self::new(500, 10028, "insufficient memory resources available")
    }
    pub fn max_streams() -> Self {
        Self::new(400, 10027, "maximum number of streams reached")
    }
    pub fn sealed() -> Self {
        Self::new(400, 10109, "invalid operation on sealed stream")
    }
    pub fn msg_delete_failed(err: impl std::fmt::Display) -> Self {
        Self::new(500, 10057, err.to_string())
    }
    pub fn purge_failed(err: impl std::fmt::Display) -> Self {
        Self::new(500, 10110, err.to_string())
    }
    pub fn rollup_failed(err: impl std::fmt::Display) -> Self {
        Self::new(500, 10111, err.to_string())
    }
    pub fn update_failed(err: impl std::fmt::Display) -> Self {
        Self::new(500, 10069, err.to_string())
    }
    pub fn create_failed(err: impl std::fmt::Display) -> Self {
        Self::new(500, 10049, err.to_string())
    }
    pub fn delete_failed(err: impl std::fmt::Display) -> Self {
        Self::new(500, 10050, err.to_string())
    }
    pub fn general(err: impl std::fmt::Display) -> Self {
        Self::new(500, 10051, err.to_string())
    }
    pub fn sequence_not_found(seq: u64) -> Self {
        Self::new(400, 10043, format!("sequence {seq} not found"))
    }
    pub fn not_empty_request() -> Self {
        Self::new(400, 10038, "expected an empty request payload")
    }
    pub fn replicas_negative() -> Self {
        Self::new(400, 10133, "replicas count cannot be negative")
    }
    pub fn duplicate_in_process() -> Self {
        Self::new(409, 10158, "duplicate message id is in process")
    }
    pub fn missing_last_seq_per_subject() -> Self {
        Self::new(
            400,
            10193,
            "missing sequence for expected last sequence per subject",
        )
    }
    pub fn header_too_large() -> Self {
        Self::new(400, 10097, "header size exceeds maximum allowed of 64k")
    }
    /// Status-like errors for things not supported here, worded so that an
    /// operator sees why.
    pub fn not_supported(what: &str) -> Self {
        Self::new(
            500,
            10052,
            format!("{what} is not supported by this server yet"),
        )
    }

    // Consumers.
    pub fn consumer_not_found() -> Self {
        Self::new(404, 10014, "consumer not found")
    }
    pub fn consumer_exists() -> Self {
        Self::new(400, 10148, "consumer already exists")
    }
    pub fn consumer_does_not_exist() -> Self {
        Self::new(400, 10149, "consumer does not exist")
    }
    pub fn consumer_name_exist() -> Self {
        Self::new(400, 10013, "consumer name already in use")
    }
    pub fn consumer_create(err: impl std::fmt::Display) -> Self {
        Self::new(500, 10012, err.to_string())
    }
    pub fn consumer_config_required() -> Self {
        Self::new(400, 10078, "consumer config required")
    }
    pub fn consumer_name_too_long(max: usize) -> Self {
        Self::new(
            400,
            10102,
            format!("consumer name is too long, maximum allowed is {max}"),
        )
    }
    pub fn durable_name_bad() -> Self {
        Self::new(400, 10103, "durable name can not contain '.', '*', '>'")
    }
    pub fn consumer_name_bad() -> Self {
        Self::new(400, 10147, "consumer name can not contain '.', '*', '>'")
    }
    pub fn consumer_name_path() -> Self {
        Self::new(400, 10127, "Consumer name can not contain path separators")
    }
    pub fn durable_subject_mismatch() -> Self {
        Self::new(
            400,
            10017,
            "consumer name in subject does not match durable name in request",
        )
    }
    pub fn durable_and_name_mismatch() -> Self {
        Self::new(
            400,
            10132,
            "Consumer Durable and Name have to be equal if both are provided",
        )
    }
    pub fn create_filter_mismatch() -> Self {
        Self::new(
            400,
            10131,
            "Consumer create request did not match filtered subject from create subject",
        )
    }
    pub fn durable_not_in_subject() -> Self {
        Self::new(
            400,
            10016,
            "consumer expected to be durable but no durable name set in subject",
        )
    }
    pub fn durable_not_set() -> Self {
        Self::new(
            400,
            10018,
            "consumer expected to be durable but a durable name was not set",
        )
    }
    pub fn invalid_consumer_policy(err: impl std::fmt::Display) -> Self {
        Self::new(400, 10094, err.to_string())
    }
    pub fn max_deliver_backoff() -> Self {
        Self::new(
            400,
            10116,
            "max deliver is required to be > length of backoff values",
        )
    }
    pub fn wq_requires_explicit_ack() -> Self {
        Self::new(400, 10098, "workqueue stream requires explicit ack")
    }
    pub fn wq_multiple_unfiltered() -> Self {
        Self::new(
            400,
            10099,
            "multiple non-filtered consumers not allowed on workqueue stream",
        )
    }
    pub fn wq_not_unique() -> Self {
        Self::new(
            400,
            10100,
            "filtered consumer not unique on workqueue stream",
        )
    }
    pub fn push_max_waiting() -> Self {
        Self::new(400, 10080, "consumer in push mode can not set max waiting")
    }
    pub fn push_request_batch() -> Self {
        Self::new(
            400,
            10113,
            "consumer in push mode can not set max request batch",
        )
    }
    pub fn push_request_expires() -> Self {
        Self::new(
            400,
            10112,
            "consumer in push mode can not set max request expires",
        )
    }
    pub fn push_request_max_bytes() -> Self {
        Self::new(400, 10135, "consumer in push mode can not set max bytes")
    }
    pub fn max_request_batch_negative() -> Self {
        Self::new(400, 10114, "consumer max request batch needs to be > 0")
    }
    pub fn max_request_expires_small() -> Self {
        Self::new(
            400,
            10115,
            "consumer max request expires needs to be >= 1ms",
        )
    }
    pub fn max_waiting_negative() -> Self {
        Self::new(400, 10087, "consumer max waiting needs to be positive")
    }
    pub fn pull_flow_control() -> Self {
        Self::new(
            400,
            10089,
            "consumer flow control requires a push based consumer",
        )
    }
    pub fn pull_heartbeat() -> Self {
        Self::new(
            400,
            10088,
            "consumer idle heartbeat requires a push based consumer",
        )
    }
    pub fn pull_deliver_group() -> Self {
        Self::new(
            400,
            10090,
            "consumer in pull mode can not have a deliver group",
        )
    }
    pub fn flow_control_heartbeat() -> Self {
        Self::new(
            400,
            10108,
            "consumer with flow control also needs heartbeats",
        )
    }
    pub fn deliver_wildcard() -> Self {
        Self::new(400, 10079, "consumer deliver subject has wildcards")
    }
    pub fn deliver_cycle() -> Self {
        Self::new(400, 10081, "consumer deliver subject forms a cycle")
    }
    pub fn description_too_long() -> Self {
        Self::new(
            400,
            10107,
            "consumer description is too long, maximum allowed is 4096",
        )
    }
    pub fn empty_filter() -> Self {
        Self::new(
            400,
            10139,
            "consumer filter in FilterSubjects cannot be empty",
        )
    }
    pub fn invalid_filter() -> Self {
        Self::new(
            400,
            10093,
            "consumer filter subject is not a valid subset of the interest subjects",
        )
    }
    pub fn filter_overlap() -> Self {
        Self::new(400, 10138, "consumer subject filters cannot overlap")
    }
    pub fn duplicate_filter_subjects_conflict() -> Self {
        Self::new(
            400,
            10136,
            "consumer cannot have both FilterSubject and FilterSubjects specified",
        )
    }
    pub fn max_consumers() -> Self {
        Self::new(400, 10026, "maximum consumers limit reached")
    }
}
