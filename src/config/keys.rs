//! Top-level option names nats-server knows, so unknown ones can be
//! reported the way it does.
//!
//! nats-server (`server/opts.go`, `processConfigFileLine`) lower-cases each
//! top-level key and, when no option matches, records an *error* (not a
//! warning; pedantic mode or not) printed as
//! `nats.conf:2:1: unknown field "foo"`. A key that was referenced as
//! a `$variable` somewhere is a variable definition and is not reported.
//! Errors are collected for every key, then all are printed together.

use super::pos::{ConfigError, Pos};
use super::value::Value;

/// Every top-level option name of nats-server (current source, a superset
/// of 2.9.10), lower case, aliases included.
pub const TOP_LEVEL_KEYS: &[&str] = &[
    "listen",
    "client_advertise",
    "port",
    "server_name",
    "host",
    "net",
    "debug",
    "trace",
    "trace_verbose",
    "trace_headers",
    "logtime",
    "logtime_utc",
    "mappings",
    "maps",
    "disable_sublist_cache",
    "no_sublist_cache",
    "accounts",
    "default_sentinel",
    "authorization",
    "http",
    "https",
    "http_port",
    "monitor_port",
    "https_port",
    "http_base_path",
    "cluster",
    "gateway",
    "leaf",
    "leafnodes",
    "store_dir",
    "storedir",
    "jetstream",
    "logfile",
    "log_file",
    "logfile_size_limit",
    "log_size_limit",
    "logfile_max_num",
    "log_max_num",
    "syslog",
    "remote_syslog",
    "pidfile",
    "pid_file",
    "ports_file_dir",
    "prof_port",
    "prof_block_rate",
    "max_control_line",
    "max_payload",
    "max_pending",
    "proxy_protocol",
    "max_connections",
    "max_conn",
    "max_traced_msg_len",
    "max_subscriptions",
    "max_subs",
    "max_sub_tokens",
    "max_subscription_tokens",
    "ping_interval",
    "ping_max",
    "tls",
    "ocsp",
    "allow_non_tls",
    "write_deadline",
    "write_timeout",
    "lame_duck_duration",
    "lame_duck_grace_period",
    "operator",
    "operators",
    "roots",
    "root",
    "root_operators",
    "root_operator",
    "resolver",
    "account_resolver",
    "accounts_resolver",
    "resolver_tls",
    "resolver_preload",
    "resolver_pinned_accounts",
    "no_auth_user",
    "system_account",
    "system",
    "no_system_account",
    "no_system",
    "no_sys_acc",
    "no_header_support",
    "trusted",
    "trusted_keys",
    "connect_error_reports",
    "reconnect_error_reports",
    "websocket",
    "ws",
    "mqtt",
    "server_tags",
    "server_metadata",
    "feature_flags",
    "default_js_domain",
    "ocsp_cache",
    "no_fast_producer_stall",
    "max_closed_clients",
    "proxies",
    // Broker Edge's own blocks.
    "broker_edge",
    "provision",
];

/// Is `key` a top-level option of nats-server (case-insensitive)?
pub fn is_known_top_level_key(key: &str) -> bool {
    TOP_LEVEL_KEYS.iter().any(|k| k.eq_ignore_ascii_case(key))
}

/// Top-level keys nats-server would reject, with the key's position, in
/// file order. Keys used as `$variables` are skipped, as nats does.
/// Returns nothing for a non-map value.
pub fn unknown_top_level_keys(root: &Value) -> Vec<(Pos, String)> {
    let Some(map) = root.as_map() else {
        return Vec::new();
    };
    map.iter()
        .filter(|e| !e.used_as_variable && !is_known_top_level_key(&e.key))
        .map(|e| (e.key_pos.clone(), e.key.clone()))
        .collect()
}

/// The error nats-server reports for an unknown field:
/// `file:line:col: unknown field "foo"`.
pub fn unknown_field_error(pos: &Pos, key: &str) -> ConfigError {
    pos.err(format!("unknown field {}", go_quote(key)))
}

/// Go's `%q` for the printable strings keys are made of (close enough for
/// others: escapes quotes, backslashes and control characters).
fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
