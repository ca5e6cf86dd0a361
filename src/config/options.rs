//! Maps a parsed configuration tree onto [`Options`], the way nats-server's
//! `ProcessConfigFile` does: option names are case-insensitive, every error
//! is collected (not just the first) and printed as `file:line:col: message`
//! at the option's key, unknown top-level keys are errors, and options given
//! on the command line win over the file.
//!
//! ```ignore
//! let mut opts = cli.opts.clone();
//! config::options::apply_file(path, &mut opts, &cli.set)?;   // server start
//! let opts = config::options::check_file(path)?;              // `-t`
//! ```
//!
//! Wording follows nats-server 2.9.10 for its own checks (`max_payload value
//! is too big`, `Cannot have a user/pass and token`, `unknown field "x"`…).
//! A value of the wrong type is a Go runtime panic text in nats
//! (`interface conversion: interface {} is string, not int64`); here it is
//! `port: expected an integer, got string`, at the same position.

mod auth;
mod leafnodes;
mod listeners;
mod operator;
mod provision;
mod tuning;

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{
    parse_file, parse_go_duration, unknown_field_error, ConfigError, Entry, Map, Pos, Value,
    ValueKind,
};
use crate::options::{Options, Port};

/// Things nats-server accepts but warns about (`ping_interval: 30`, an
/// integer taken as seconds). A server prints them and starts; `-t` fails.
pub type Warnings = Vec<ConfigError>;

/// Read `path` and apply it to `opts`. `cli_set` names the options given
/// on the command line (`Cli::set`); those keep their command-line values.
/// On success, returns the warnings to print.
pub fn apply_file(
    path: &Path,
    opts: &mut Options,
    cli_set: &[&str],
) -> Result<Warnings, Vec<ConfigError>> {
    let root = parse_file(path).map_err(|e| vec![e])?;
    opts.config_file = Some(path.to_path_buf());
    apply_value(&root, opts, cli_set)
}

/// [`apply_file`] for an already parsed tree (tests, reload).
pub fn apply_value(
    root: &Value,
    opts: &mut Options,
    cli_set: &[&str],
) -> Result<Warnings, Vec<ConfigError>> {
    let before = opts.clone();
    // Lists only a file fills: start them afresh so applying twice (reload)
    // does not duplicate users.
    opts.users.clear();
    opts.nkeys.clear();
    opts.accounts.clear();
    opts.server_tags.clear();
    opts.trusted_operators.clear();
    opts.resolver = None;
    opts.resolver_preload.clear();
    let mut cx = Cx::default();
    match root.as_map() {
        Some(map) => {
            for e in map {
                top_level(&mut cx, e, opts);
            }
            if cx.errors.is_empty() {
                if let Err(e) = validate(map, opts) {
                    cx.errors.push(e);
                }
            }
        }
        None => cx.errors.push(root.err("configuration must be a map")),
    }
    restore_cli(&before, opts, cli_set);
    if cx.errors.is_empty() {
        Ok(cx.warnings)
    } else {
        Err(cx.errors)
    }
}

/// `broker-edge -t -c FILE`: the options the file gives on top of the
/// defaults, or every error found. As with `nats-server -t`, warnings
/// count as errors here. Also checks what nats only checks at start-up
/// (lame duck periods, max_payload vs max_pending, no_auth_user).
pub fn check_file(path: &Path) -> Result<Options, Vec<ConfigError>> {
    let mut opts = Options::default();
    let warnings = apply_file(path, &mut opts, &[])?;
    if !warnings.is_empty() {
        return Err(warnings);
    }
    Ok(opts)
}

/// Errors collected while walking the tree, plus state nats keeps between
/// options (a `store_dir` set twice is an error).
#[derive(Default)]
pub(super) struct Cx {
    pub errors: Vec<ConfigError>,
    pub warnings: Vec<ConfigError>,
    store_dir_set: bool,
    /// `authorization` set a single user / a token (the command line's
    /// do not count: nats checks the file's own).
    pub file_user: bool,
    pub file_token: bool,
}

impl Cx {
    pub fn push(&mut self, e: ConfigError) {
        self.errors.push(e);
    }
    /// Keep the value, or record the error and give `None`.
    pub fn ok<T>(&mut self, r: Result<T, ConfigError>) -> Option<T> {
        r.map_err(|e| self.errors.push(e)).ok()
    }
    pub fn unknown(&mut self, e: &Entry) {
        if !e.used_as_variable {
            self.errors.push(unknown_field_error(&e.key_pos, &e.key));
        }
    }

    /// A nats-server option this build does not act on: refused at load
    /// rather than accepted and ignored (an operator must not believe,
    /// say, that the store is encrypted when it is not).
    pub fn unsupported(&mut self, e: &Entry) {
        if !e.used_as_variable {
            self.errors.push(e.key_pos.err(format!(
                "{:?} is not supported by this build of Broker Edge: remove it",
                e.key
            )));
        }
    }
}

fn top_level(cx: &mut Cx, e: &Entry, o: &mut Options) {
    let key = e.key.to_ascii_lowercase();
    match key.as_str() {
        "listen" => {
            if let Some((host, port)) = cx.ok(listen(e)) {
                if let Some(h) = host {
                    o.host = h;
                }
                o.port = port;
            }
        }
        "port" => {
            if let Some(p) = cx.ok(port(e)) {
                o.port = p;
            }
        }
        "host" | "net" => set(cx, str_of(e), &mut o.host),
        "server_name" => set_opt(cx, str_of(e), &mut o.server_name),
        "debug" => set(cx, bool_of(e), &mut o.debug),
        "trace" | "trace_verbose" => set(cx, bool_of(e), &mut o.trace),
        "logtime" => set(cx, bool_of(e), &mut o.logtime),
        "http" => {
            if let Some((host, port)) = cx.ok(listen(e)) {
                o.http_host = host;
                o.http_port = Some(port);
            }
        }
        "http_port" | "monitor_port" => {
            if let Some(p) = cx.ok(port(e)) {
                o.http_port = Some(p);
            }
        }
        "max_connections" | "max_conn" => set(cx, usize_of(e), &mut o.max_connections),
        "max_payload" | "max_control_line" => {
            let Some(n) = cx.ok(int_of(e)) else { return };
            if n > i64::from(i32::MAX) {
                return cx.push(e.key_pos.err(format!("{} value is too big", e.key)));
            }
            let n = cx.ok(non_negative(e, n));
            if key == "max_payload" {
                set_some(n, &mut o.max_payload);
            } else {
                set_some(n, &mut o.max_control_line);
            }
        }
        "max_pending" => set(cx, usize_of(e), &mut o.max_pending),
        "max_closed_clients" => set(cx, usize_of(e), &mut o.max_closed_clients),
        "max_subscriptions" | "max_subs" => set(cx, usize_of(e), &mut o.max_subscriptions),
        "ping_interval" => {
            warn_int_duration(cx, e);
            set(cx, duration(e), &mut o.ping_interval)
        }
        "ping_max" => {
            let n = cx.ok(int_of(e).and_then(|n| {
                u32::try_from(n).map_err(|_| e.key_pos.err(format!("invalid {} value {n}", e.key)))
            }));
            set_some(n, &mut o.ping_max);
        }
        "write_deadline" | "write_timeout" => {
            warn_int_duration(cx, e);
            set(cx, duration(e), &mut o.write_deadline)
        }
        "lame_duck_duration" => {
            let Some(d) = cx.ok(strict_duration(e)) else {
                return;
            };
            if d < Duration::from_secs(30) {
                return cx.push(e.key_pos.err(format!(
                    "invalid lame_duck_duration of {}, minimum is 30 seconds",
                    go_duration(d)
                )));
            }
            o.lame_duck_duration = d;
        }
        "lame_duck_grace_period" => {
            // Go durations may be negative; nats refuses those here.
            let neg =
                matches!(&e.value.kind, ValueKind::String(s) if s.trim_start().starts_with('-'));
            if neg {
                return cx.push(
                    e.key_pos
                        .err("invalid lame_duck_grace_period, needs to be positive"),
                );
            }
            set(cx, strict_duration(e), &mut o.lame_duck_grace_period);
        }
        "logfile" | "log_file" => set_opt(cx, str_of(e).map(PathBuf::from), &mut o.log_file),
        "pidfile" | "pid_file" => set_opt(cx, str_of(e).map(PathBuf::from), &mut o.pid_file),
        "ports_file_dir" => set_opt(cx, str_of(e).map(PathBuf::from), &mut o.ports_file_dir),
        "store_dir" | "storedir" => {
            if cx.store_dir_set {
                return cx.push(e.key_pos.err("Duplicate 'store_dir' configuration"));
            }
            cx.store_dir_set = true;
            set_opt(cx, str_of(e).map(PathBuf::from), &mut o.store_dir);
        }
        "jetstream" => jetstream(cx, e, o),
        "authorization" => auth::authorization(cx, e, o),
        "accounts" => auth::accounts(cx, e, o),
        "no_auth_user" => set_opt(cx, str_of(e), &mut o.no_auth_user),
        "system_account" | "system" => set_opt(cx, str_of(e), &mut o.system_account),
        "operator" | "operators" | "root_operator" | "root_operators" => {
            operator::operator(cx, e, o)
        }
        "resolver" | "account_resolver" | "accounts_resolver" => operator::resolver(cx, e, o),
        "resolver_preload" => operator::resolver_preload(cx, e, o),
        "tls" => {
            if let Some(t) = cx.ok(listeners::tls(e)) {
                o.tls = Some(t);
            }
        }
        "websocket" | "ws" => listeners::websocket(cx, e, o),
        "cluster" => o.cluster = cx.ok(listeners::listener(e, "cluster")),
        "leaf" | "leafnodes" => leafnodes::leafnodes(cx, e, o),
        "broker_edge" => tuning::block(cx, e, o),
        "provision" => provision::block(cx, e, o),
        "server_tags" => {
            if let Some(tags) = cx.ok(server_tags(e)) {
                o.server_tags.extend(tags);
            }
        }
        // How often link errors are logged, and a speed hint (the
        // sublist cache): nothing an operator relies on.
        "client_advertise"
        | "connect_error_reports"
        | "reconnect_error_reports"
        | "disable_sublist_cache"
        | "no_sublist_cache" => {}
        // Known to nats-server, not built here.
        k if super::is_known_top_level_key(k) => cx.unsupported(e),
        _ => cx.unknown(e),
    }
}

/// nats-server checks these after reading the file (`validateOptions`);
/// reported at the key that set the offending value.
fn validate(map: &Map, o: &Options) -> Result<(), ConfigError> {
    let at = |keys: &[&str]| {
        keys.iter()
            .find_map(|k| map.entry_ci(k))
            .map(|e| e.key_pos.clone())
    };
    if !o.lame_duck_duration.is_zero() && o.lame_duck_grace_period >= o.lame_duck_duration {
        if let Some(pos) = at(&["lame_duck_grace_period", "lame_duck_duration"]) {
            return Err(pos.err(format!(
                "lame duck grace period ({}) should be strictly lower than lame duck duration ({})",
                go_duration(o.lame_duck_grace_period),
                go_duration(o.lame_duck_duration)
            )));
        }
    }
    operator::validate(map, o)?;
    leafnodes::validate(map, o)?;
    if let Err(err) = crate::auth::Authenticator::new(o) {
        let pos = at(&["no_auth_user", "authorization", "accounts"]).unwrap_or_else(|| {
            map.iter().next().map_or_else(
                || Pos::new(Path::new("").into(), 1, 1),
                |e| e.key_pos.clone(),
            )
        });
        return Err(pos.err(err.to_string()));
    }
    if o.max_payload > o.max_pending {
        if let Some(pos) = at(&["max_payload", "max_pending"]) {
            return Err(pos.err(format!(
                "max_payload ({}) cannot be higher than max_pending ({})",
                o.max_payload, o.max_pending
            )));
        }
    }
    Ok(())
}

/// Put back what the command line set: the reference merges flags over
/// the file the same way (`MergeOptions`).
fn restore_cli(cli: &Options, o: &mut Options, set: &[&str]) {
    for name in set {
        match *name {
            "addr" => o.host = cli.host.clone(),
            "port" => o.port = cli.port,
            "name" => o.server_name = cli.server_name.clone(),
            "pid" => o.pid_file = cli.pid_file.clone(),
            "http_port" => o.http_port = cli.http_port,
            "ports_file_dir" => o.ports_file_dir = cli.ports_file_dir.clone(),
            "log" => o.log_file = cli.log_file.clone(),
            "logtime" => o.logtime = cli.logtime,
            "debug" => o.debug = cli.debug,
            "trace" | "trace_verbose" => o.trace = cli.trace,
            "debug_trace" => {
                o.debug = cli.debug;
                o.trace = cli.trace;
            }
            "jetstream" => o.jetstream = cli.jetstream,
            "store_dir" => o.store_dir = cli.store_dir.clone(),
            "user" => o.username = cli.username.clone(),
            "pass" => o.password = cli.password.clone(),
            "auth" => o.auth_token = cli.auth_token.clone(),
            "shards" => o.shards = cli.shards,
            "shard_fill" => o.shard_fill = cli.shard_fill,
            _ => {}
        }
    }
}

fn jetstream(cx: &mut Cx, e: &Entry, o: &mut Options) {
    match &e.value.kind {
        ValueKind::Bool(b) => o.jetstream = *b,
        ValueKind::String(s) => match s.to_ascii_lowercase().as_str() {
            "enabled" | "enable" => o.jetstream = true,
            "disabled" | "disable" => o.jetstream = false,
            _ => cx.push(e.key_pos.err(format!(
                "Expected 'enabled' or 'disabled' for string value, got '{s}'"
            ))),
        },
        ValueKind::Map(m) => {
            let mut enable = true;
            for f in m {
                match f.key.to_ascii_lowercase().as_str() {
                    "store" | "store_dir" | "storedir" => {
                        if cx.store_dir_set {
                            cx.push(f.key_pos.err("Duplicate 'store_dir' configuration"));
                            continue;
                        }
                        cx.store_dir_set = true;
                        set_opt(cx, str_of(f).map(PathBuf::from), &mut o.store_dir);
                    }
                    "max_memory_store" | "max_mem_store" | "max_mem" => {
                        o.jetstream_max_memory = cx.ok(storage_size(f, "max_mem_store"))
                    }
                    "max_file_store" | "max_file" => {
                        o.jetstream_max_store = cx.ok(storage_size(f, "max_file_store"))
                    }
                    "domain" => set_opt(cx, str_of(f), &mut o.jetstream_domain),
                    // nats-server: a duration between fsyncs, or `always`.
                    // Without it Broker Edge fsyncs before every PubAck.
                    "sync_interval" | "sync" => {
                        let always = matches!(&f.value.kind, ValueKind::String(s) if s.eq_ignore_ascii_case("always"));
                        if always {
                            o.jetstream_sync = Some(broker_edge_storage::Durability::Always);
                        } else if let Some(d) = cx.ok(duration(f)) {
                            o.jetstream_sync = Some(broker_edge_storage::Durability::Interval(d));
                        }
                    }
                    "sync_always" => {
                        if let Some(true) = cx.ok(bool_of(f)) {
                            o.jetstream_sync = Some(broker_edge_storage::Durability::Always);
                        }
                    }
                    "enable" | "enabled" => set(cx, bool_of(f), &mut enable),
                    "strict" => match f.value.as_bool() {
                        Some(b) => o.jetstream_strict = Some(b),
                        None => cx.push(f.key_pos.err(format!(
                            "Expected 'true' or 'false' for bool value, got '{}'",
                            go_value(&f.value)
                        ))),
                    },
                    // Replication settings: a single server has no
                    // replicas to place or catch up, as nats-server alone.
                    "unique_tag"
                    | "max_outstanding_catchup"
                    | "max_buffered_msgs"
                    | "max_buffered_size"
                    | "max_catchup" => {}
                    // Encryption at rest, API limits and the rest: not
                    // built, so refused (never a store believed encrypted).
                    "key"
                    | "ek"
                    | "encryption_key"
                    | "cipher"
                    | "extension_hint"
                    | "limits"
                    | "request_queue_limit"
                    | "tpm" => cx.unsupported(f),
                    _ => cx.unknown(f),
                }
            }
            o.jetstream = enable;
        }
        _ => cx.push(e.key_pos.err(format!(
            "Expected map, bool or string to define JetStream, got {}",
            go_type(&e.value)
        ))),
    }
}

/// nats' `getStorageSize`: an integer (size suffixes already applied by
/// the parser) or a string `"<n>K|M|G|T"` (powers of 1024).
fn storage_size(e: &Entry, what: &str) -> Result<i64, ConfigError> {
    let bad = |m: &str| e.key_pos.err(format!("{what} {m}"));
    match &e.value.kind {
        ValueKind::Int(n) => Ok(*n),
        ValueKind::String(s) if s.is_empty() => Ok(0),
        ValueKind::String(s) => {
            let (num, suffix) = s.split_at(s.len() - s.chars().last().map_or(0, char::len_utf8));
            let n: i64 = num.parse().map_err(|_| {
                bad(&format!(
                    "strconv.ParseInt: parsing {num:?}: invalid syntax"
                ))
            })?;
            let shift = match suffix {
                "K" => 10,
                "M" => 20,
                "G" => 30,
                "T" => 40,
                _ => return Err(bad("sizes defined as strings must end in K, M, G, T")),
            };
            n.checked_mul(1 << shift)
                .ok_or_else(|| bad("value is too big"))
        }
        _ => Err(bad("must be int64 or string")),
    }
}

fn server_tags(e: &Entry) -> Result<Vec<String>, ConfigError> {
    match &e.value.kind {
        ValueKind::String(s) => Ok(vec![s.clone()]),
        ValueKind::Array(a) => a
            .iter()
            .map(|v| {
                v.as_str().map(str::to_string).ok_or_else(|| {
                    e.key_pos.err(format!(
                        "error parsing tags: unsupported type {} where string is expected",
                        go_type(v)
                    ))
                })
            })
            .collect(),
        _ => Err(e.key_pos.err(format!(
            "error parsing tags: unsupported type {}",
            go_type(&e.value)
        ))),
    }
}

/// `listen`/`http`: `port`, or `"host:port"` (nats' `parseListen`).
pub(super) fn listen(e: &Entry) -> Result<(Option<String>, Port), ConfigError> {
    match &e.value.kind {
        ValueKind::Int(n) => Ok((None, port_num(e, *n)?)),
        ValueKind::String(s) => {
            let bad = || {
                e.key_pos
                    .err(format!("could not parse address string {s:?}"))
            };
            let (host, p) = split_host_port(s).ok_or_else(bad)?;
            let n: i64 = p
                .parse()
                .map_err(|_| e.key_pos.err(format!("could not parse port {p:?}")))?;
            Ok((Some(host.to_string()), port_num(e, n)?))
        }
        _ => Err(e.key_pos.err(format!(
            "expected port or host:port, got {}",
            go_type(&e.value)
        ))),
    }
}

/// Go's `net.SplitHostPort` for the forms config files use:
/// `host:port`, `[v6]:port`, `:port`.
fn split_host_port(s: &str) -> Option<(&str, &str)> {
    if let Some(rest) = s.strip_prefix('[') {
        let (host, tail) = rest.split_once(']')?;
        return Some((host, tail.strip_prefix(':')?));
    }
    let (host, port) = s.rsplit_once(':')?;
    if host.contains(':') {
        return None;
    }
    Some((host, port))
}

pub(super) fn port(e: &Entry) -> Result<Port, ConfigError> {
    let n = int_of(e)?;
    port_num(e, n)
}

fn port_num(e: &Entry, n: i64) -> Result<Port, ConfigError> {
    match n {
        -1 => Ok(Port::Random),
        0..=65535 => Ok(Port::Fixed(n as u16)),
        _ => Err(e.key_pos.err(format!("invalid port {n} for {}", e.key))),
    }
}

// ---- typed accessors: errors point at the key, as nats-server does ----

pub(super) fn type_err(e: &Entry, want: &str) -> ConfigError {
    e.key_pos.err(format!(
        "{}: expected {want}, got {}",
        e.key,
        e.value.type_name()
    ))
}

pub(super) fn str_of(e: &Entry) -> Result<String, ConfigError> {
    e.value
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| type_err(e, "a string"))
}

pub(super) fn int_of(e: &Entry) -> Result<i64, ConfigError> {
    e.value.as_int().ok_or_else(|| type_err(e, "an integer"))
}

pub(super) fn bool_of(e: &Entry) -> Result<bool, ConfigError> {
    e.value.as_bool().ok_or_else(|| type_err(e, "a boolean"))
}

fn non_negative(e: &Entry, n: i64) -> Result<usize, ConfigError> {
    usize::try_from(n).map_err(|_| e.key_pos.err(format!("{} can not be negative", e.key)))
}

pub(super) fn usize_of(e: &Entry) -> Result<usize, ConfigError> {
    non_negative(e, int_of(e)?)
}

/// nats' `parseDuration`: a Go duration string, or an integer meaning
/// seconds (nats warns that it "should be converted to a duration").
pub(super) fn duration(e: &Entry) -> Result<Duration, ConfigError> {
    match &e.value.kind {
        ValueKind::String(_) => strict_duration(e),
        ValueKind::Int(_) => e.value.as_duration().map_err(|m| {
            e.key_pos
                .err(format!("error parsing {}: {}", e.key, m.message()))
        }),
        _ => Err(type_err(e, "a duration")),
    }
}

/// nats' warning for a duration written as an integer of seconds.
pub(super) fn warn_int_duration(cx: &mut Cx, e: &Entry) {
    if matches!(e.value.kind, ValueKind::Int(_)) && !e.value.has_suffix() {
        cx.warnings.push(e.key_pos.err(format!(
            "invalid use of field {:?}: {} should be converted to a duration",
            e.key, e.key
        )));
    }
}

/// A duration that must be a string (`lame_duck_duration` and friends).
pub(super) fn strict_duration(e: &Entry) -> Result<Duration, ConfigError> {
    let s = str_of(e)?;
    parse_go_duration(&s).map_err(|m| e.key_pos.err(format!("error parsing {}: {m}", e.key)))
}

/// nats' auth/TLS `timeout`: seconds as an integer or a float.
pub(super) fn seconds(e: &Entry) -> Result<Duration, ConfigError> {
    let secs = e.value.as_float().ok_or_else(|| type_err(e, "a number"))?;
    Duration::try_from_secs_f64(secs)
        .map_err(|_| e.key_pos.err(format!("invalid {} value {secs}", e.key)))
}

/// A string or an array of strings.
pub(super) fn string_list(e: &Entry) -> Result<Vec<String>, ConfigError> {
    match &e.value.kind {
        ValueKind::String(s) => Ok(vec![s.clone()]),
        ValueKind::Array(a) => a
            .iter()
            .map(|v| {
                v.as_str().map(str::to_string).ok_or_else(|| {
                    v.err(format!(
                        "error parsing {}: unsupported type in array {}",
                        e.key,
                        go_type(v)
                    ))
                })
            })
            .collect(),
        _ => Err(e.key_pos.err(format!(
            "error parsing {}: unsupported type {}",
            e.key,
            go_type(&e.value)
        ))),
    }
}

fn set<T>(cx: &mut Cx, r: Result<T, ConfigError>, slot: &mut T) {
    set_some(cx.ok(r), slot);
}

fn set_some<T>(v: Option<T>, slot: &mut T) {
    if let Some(v) = v {
        *slot = v;
    }
}

fn set_opt<T>(cx: &mut Cx, r: Result<T, ConfigError>, slot: &mut Option<T>) {
    if let Some(v) = cx.ok(r) {
        *slot = Some(v);
    }
}

/// Go's `%T` of a config value, for messages copied from nats-server.
pub(super) fn go_type(v: &Value) -> &'static str {
    match v.kind {
        ValueKind::Map(_) => "map[string]interface {}",
        ValueKind::Array(_) => "[]interface {}",
        ValueKind::String(_) => "string",
        ValueKind::Int(_) => "int64",
        ValueKind::Float(_) => "float64",
        ValueKind::Bool(_) => "bool",
        ValueKind::Datetime(_) => "time.Time",
    }
}

/// Roughly Go's `%v` of a config value.
pub(super) fn go_value(v: &Value) -> String {
    match &v.kind {
        ValueKind::String(s) | ValueKind::Datetime(s) => s.clone(),
        ValueKind::Int(n) => n.to_string(),
        ValueKind::Float(f) => f.to_string(),
        ValueKind::Bool(b) => b.to_string(),
        ValueKind::Array(a) => {
            let items: Vec<String> = a.iter().map(go_value).collect();
            format!("[{}]", items.join(" "))
        }
        ValueKind::Map(m) => {
            let items: Vec<String> = m
                .iter()
                .map(|e| format!("{}:{}", e.key, go_value(&e.value)))
                .collect();
            format!("map[{}]", items.join(" "))
        }
    }
}

/// Go's `Duration.String()` for the whole-second values in messages.
fn go_duration(d: Duration) -> String {
    let secs = d.as_secs();
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    let frac = d.subsec_nanos();
    let sec = if frac == 0 {
        format!("{s}s")
    } else {
        let f = format!("{:.9}", f64::from(frac) / 1e9);
        format!("{s}{}s", f.trim_start_matches('0').trim_end_matches('0'))
    };
    match (h, m) {
        (0, 0) => sec,
        (0, m) => format!("{m}m{sec}"),
        (h, m) => format!("{h}h{m}m{sec}"),
    }
}

#[cfg(test)]
mod tests;
