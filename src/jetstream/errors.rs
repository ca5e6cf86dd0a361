//! JetStream API errors with nats-server's codes and wording
//! (`server/errors.json`): clients and the `nats` CLI branch on `err_code`.

use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
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
}
