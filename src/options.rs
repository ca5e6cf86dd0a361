//! Server options: nats-server's defaults, filled from the command line and
//! (later) the configuration file.

use std::path::PathBuf;
use std::time::Duration;

pub const DEFAULT_PORT: u16 = 4222;
pub const DEFAULT_MAX_PAYLOAD: usize = 1024 * 1024;
pub const DEFAULT_MAX_CONTROL_LINE: usize = 4096;
pub const DEFAULT_MAX_PENDING: usize = 64 * 1024 * 1024;
pub const DEFAULT_MAX_CONNECTIONS: usize = 64 * 1024;
/// A few clients share a shard before the next one is used: request/reply
/// between them then needs no hop between cores, while many clients still
/// spread over every shard.
pub const DEFAULT_SHARD_FILL: usize = 16;

/// A port setting as nats-server reads it: `-1` asks for a random port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Port {
    Fixed(u16),
    Random,
}

impl Port {
    pub fn bind_port(self) -> u16 {
        match self {
            Port::Fixed(p) => p,
            Port::Random => 0,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Options {
    pub host: String,
    pub port: Port,
    pub server_name: Option<String>,
    pub http_host: Option<String>,
    pub http_port: Option<Port>,
    pub max_connections: usize,
    pub max_payload: usize,
    pub max_pending: usize,
    /// Closed client connections `/connz` keeps (0: the default).
    pub max_closed_clients: usize,
    pub max_control_line: usize,
    /// 0 means unlimited.
    pub max_subscriptions: usize,
    pub ping_interval: Duration,
    pub ping_max: u32,
    pub write_deadline: Duration,
    pub lame_duck_duration: Duration,
    pub lame_duck_grace_period: Duration,
    pub debug: bool,
    pub trace: bool,
    pub logtime: bool,
    pub log_file: Option<PathBuf>,
    pub pid_file: Option<PathBuf>,
    pub ports_file_dir: Option<PathBuf>,
    pub jetstream: bool,
    pub store_dir: Option<PathBuf>,
    pub username: Option<String>,
    pub password: Option<Sensitive>,
    pub auth_token: Option<Sensitive>,
    pub config_file: Option<PathBuf>,
    /// Broker Edge's own: executor count (default: online CPUs).
    pub shards: Option<usize>,
    /// Broker Edge's own: clients a shard takes before the next shard is
    /// used (1 = spread evenly from the first client).
    pub shard_fill: usize,
    /// Broker Edge's own runtime settings (`broker_edge { }`).
    pub tuning: Tuning,
    /// `authorization { timeout }` (nats: seconds, may be fractional).
    pub auth_timeout: Option<Duration>,
    /// `authorization { users }` and users defined inside `accounts`.
    pub users: Vec<User>,
    /// Users that authenticate with a signed nonce.
    pub nkeys: Vec<NkeyUser>,
    pub no_auth_user: Option<String>,
    pub accounts: Vec<AccountConfig>,
    pub system_account: Option<String>,
    /// `jetstream { max_memory_store }`, bytes.
    pub jetstream_max_memory: Option<i64>,
    /// `jetstream { max_file_store }`, bytes.
    pub jetstream_max_store: Option<i64>,
    pub jetstream_domain: Option<String>,
    pub jetstream_strict: Option<bool>,
    /// `jetstream { sync_interval }`: when a stored message counts as
    /// written (its PubAck waits for this). Unset: fsync before the ack.
    pub jetstream_sync: Option<broker_edge_storage::Durability>,
    pub tls: Option<TlsConfig>,
    pub websocket: Option<WebsocketConfig>,
    /// `leafnodes { }` (also `leaf { }`): the hub listener and the remotes
    /// this server solicits.
    pub leafnodes: Option<LeafNodeOpts>,
    /// `provision { }`: JetStream streams, KV buckets and consumers that
    /// must exist (created at start, reconciled on reload).
    pub provision: Option<Provision>,
    pub cluster: Option<ListenerConfig>,
    pub server_tags: Vec<String>,
    /// `operator`: trusted operator JWTs (read from files when given a
    /// path). Non-empty means operator mode.
    pub trusted_operators: Vec<String>,
    /// `resolver`: where account JWTs come from.
    pub resolver: Option<Resolver>,
    /// `resolver_preload { <account public key>: <account JWT> }`, in
    /// file order.
    pub resolver_preload: Vec<(String, String)>,
}

/// `resolver: MEMORY` is the only account resolver supported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolver {
    Memory,
}

/// How the shards run: CPU pinning and the latency policy (see
/// docs/architecture.md, "Latency policy", for the measurements behind the
/// defaults).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tuning {
    /// Each shard on its own CPU when there are enough.
    pub pin_shards: bool,
    /// How long a connection that just received a small message keeps
    /// reading before it waits on io_uring (zero: never).
    pub read_spin: Duration,
    /// How long spinning reads keep a shard busy before a reactor turn.
    pub spin_turn: Duration,
    /// A helper thread per core that keeps it awake briefly during a
    /// conversation.
    pub idle_poll: bool,
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning {
            pin_shards: true,
            // Off: their gain depends on how the host wakes threads, their
            // CPU cost does not (docs/architecture.md, "Latency policy").
            read_spin: Duration::ZERO,
            spin_turn: Duration::from_micros(8),
            idle_poll: false,
        }
    }
}

/// A password or token from the configuration or the command line. Its
/// `Debug` form is `"[redacted]"`, so dumping options never shows it.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Sensitive(String);

impl Sensitive {
    pub fn new(s: impl Into<String>) -> Sensitive {
        Sensitive(s.into())
    }
}

impl std::ops::Deref for Sensitive {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl From<String> for Sensitive {
    fn from(s: String) -> Sensitive {
        Sensitive(s)
    }
}

impl From<&str> for Sensitive {
    fn from(s: &str) -> Sensitive {
        Sensitive(s.to_string())
    }
}

impl std::fmt::Debug for Sensitive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("\"[redacted]\"")
    }
}

/// A user with a password (plain or bcrypt `$2a$…`).
#[derive(Debug, Clone, PartialEq)]
pub struct User {
    pub username: String,
    pub password: Sensitive,
    pub permissions: Option<PermissionsConfig>,
    /// The account the user was declared in; `None` is the global account.
    pub account: Option<String>,
    /// Upper-cased (`STANDARD`, `WEBSOCKET`, …); empty means any.
    pub allowed_connection_types: Vec<String>,
}

/// A user identified by a public user nkey (`U…`).
#[derive(Debug, Clone, PartialEq)]
pub struct NkeyUser {
    pub nkey: String,
    pub permissions: Option<PermissionsConfig>,
    pub account: Option<String>,
    pub allowed_connection_types: Vec<String>,
}

/// `permissions { publish, subscribe, allow_responses }` as written.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PermissionsConfig {
    pub publish: Option<SubjectPermission>,
    pub subscribe: Option<SubjectPermission>,
    pub allow_responses: Option<ResponsePermission>,
}

/// `allow`/`deny` lists. `allow: None` means no allow list (everything
/// not denied); subscribe entries may carry a queue: `"foo.* workers"`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SubjectPermission {
    pub allow: Option<Vec<String>>,
    pub deny: Vec<String>,
}

/// `allow_responses`: `None` fields mean unlimited (nats: negative).
#[derive(Debug, Clone, PartialEq)]
pub struct ResponsePermission {
    pub max_msgs: Option<u64>,
    pub expires: Option<Duration>,
}

impl Default for ResponsePermission {
    /// nats-server's defaults: one response within two minutes.
    fn default() -> Self {
        ResponsePermission {
            max_msgs: Some(1),
            expires: Some(Duration::from_secs(120)),
        }
    }
}

/// One `accounts { NAME: { … } }` entry. Its users are in
/// [`Options::users`]/[`Options::nkeys`] with `account` set to `name`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AccountConfig {
    pub name: String,
    pub nkey: Option<String>,
    pub jetstream: AccountJetStream,
    pub exports: Vec<ExportConfig>,
    pub imports: Vec<ImportConfig>,
    pub default_permissions: Option<PermissionsConfig>,
    /// `limits { max_connections, max_subscriptions, max_payload, max_leafnodes }`.
    pub limits: AccountLimits,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub enum AccountJetStream {
    #[default]
    Disabled,
    /// `enabled`/`true`: dynamic limits.
    Enabled,
    /// A limits map; `-1` (nats' "unlimited") is `None`.
    Limits {
        max_memory: Option<i64>,
        max_store: Option<i64>,
        max_streams: Option<i64>,
        max_consumers: Option<i64>,
    },
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccountLimits {
    pub max_connections: Option<i64>,
    pub max_subscriptions: Option<i64>,
    pub max_payload: Option<i64>,
    pub max_leafnodes: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportKind {
    Stream,
    Service,
}

/// `{stream|service: SUBJECT, accounts: [...], response_type: …}`.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportConfig {
    pub kind: ExportKind,
    pub subject: String,
    /// Empty means public.
    pub accounts: Vec<String>,
    /// `single` (default), `stream` or `chunked`, lower case.
    pub response_type: Option<String>,
    pub response_threshold: Option<Duration>,
}

/// `{stream|service: {account, subject}, to: …, prefix: …, share: …}`.
#[derive(Debug, Clone, PartialEq)]
pub struct ImportConfig {
    pub kind: ExportKind,
    pub account: String,
    pub subject: String,
    pub to: Option<String>,
    pub prefix: Option<String>,
    pub share: bool,
}

/// `provision { }`, ready for the JetStream API: KV buckets already turned
/// into their streams, variables filled in, durations in nanoseconds.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Provision {
    pub streams: Vec<Declared>,
    pub consumers: Vec<Declared>,
}

/// One declared stream or consumer: its API configuration (a consumer's
/// with `stream_name`), its account, and where it was written (for logs).
#[derive(Debug, Clone, PartialEq)]
pub struct Declared {
    pub config: serde_json::Value,
    pub account: String,
    pub at: String,
}

/// `tls { … }` (client listener, websocket, leafnodes, cluster).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TlsConfig {
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub ca_file: Option<PathBuf>,
    pub verify: bool,
    pub verify_and_map: bool,
    pub insecure: bool,
    /// Handshake timeout (nats default 2s when unset).
    pub timeout: Option<Duration>,
    pub handshake_first: bool,
    /// `handshake_first: 300ms` / `auto` (nats' `TLSHandshakeFirstFallback`):
    /// wait this long for the client to start TLS, then send INFO and go on
    /// as without `handshake_first`. `None`: TLS first only.
    pub handshake_first_fallback: Option<Duration>,
    pub cipher_suites: Vec<String>,
    pub curve_preferences: Vec<String>,
    pub pinned_certs: Vec<String>,
    /// `min_version` ("1.2" or "1.3").
    pub min_version: Option<String>,
    /// Options given that this build does not implement (refused when the
    /// listener is built).
    pub unsupported: Vec<String>,
}

/// `websocket { … }`.
#[derive(Debug, Clone, PartialEq)]
pub struct WebsocketConfig {
    pub host: String,
    pub port: Option<Port>,
    pub advertise: Option<String>,
    pub no_tls: bool,
    pub tls: Option<TlsConfig>,
    pub compression: bool,
    pub same_origin: bool,
    pub allowed_origins: Vec<String>,
    pub handshake_timeout: Option<Duration>,
    pub jwt_cookie: Option<String>,
    pub no_auth_user: Option<String>,
    pub username: Option<String>,
    pub password: Option<Sensitive>,
    pub token: Option<Sensitive>,
    pub auth_timeout: Option<Duration>,
}

impl Default for WebsocketConfig {
    fn default() -> Self {
        WebsocketConfig {
            host: "0.0.0.0".into(),
            port: None,
            advertise: None,
            no_tls: false,
            tls: None,
            compression: false,
            same_origin: false,
            allowed_origins: Vec::new(),
            handshake_timeout: None,
            jwt_cookie: None,
            no_auth_user: None,
            username: None,
            password: None,
            token: None,
            auth_timeout: None,
        }
    }
}

/// `cluster { … }`: where it listens, plus the whole block as written for
/// the issue that implements it.
#[derive(Debug, Clone, PartialEq)]
pub struct ListenerConfig {
    pub name: Option<String>,
    pub host: Option<String>,
    pub port: Option<Port>,
    pub tls: Option<TlsConfig>,
    pub raw: crate::config::Value,
}

/// nats-server's `DEFAULT_LEAFNODE_PORT`: the port of a remote leaf URL
/// that names none.
pub const DEFAULT_LEAFNODE_PORT: u16 = 7422;
/// nats-server's `DEFAULT_LEAF_NODE_RECONNECT`.
pub const DEFAULT_LEAF_RECONNECT: Duration = Duration::from_secs(1);
/// nats-server's `DEFAULT_LEAF_TLS_TIMEOUT` (a remote's TLS handshake).
pub const DEFAULT_LEAF_TLS_TIMEOUT: Duration = Duration::from_secs(2);
/// nats-server's `DEFAULT_LEAFNODE_INFO_WAIT` (a remote's first INFO).
pub const DEFAULT_LEAF_FIRST_INFO_TIMEOUT: Duration = Duration::from_secs(1);

/// `leafnodes { … }` (nats-server's `LeafNodeOpts`, the parts built here;
/// every other key of the reference is refused at load).
#[derive(Debug, Clone, PartialEq)]
pub struct LeafNodeOpts {
    /// Listen address for accepted leaf connections (hub role).
    pub host: String,
    /// `Port::Fixed(n)` or `Port::Random` (-1) as for the client port;
    /// `None` when neither `port` nor `listen` is given, or `port: 0` (as
    /// in nats-server: no listener, only remotes).
    pub port: Option<Port>,
    pub advertise: Option<String>,
    pub no_advertise: bool,
    /// Server-side TLS for accepted leafs (the client `tls { }` type).
    pub tls: Option<TlsConfig>,
    pub auth: LeafAuth,
    /// `reconnect` / `reconnect_delay` / `reconnect_interval`: delay
    /// between attempts of a remote ([`DEFAULT_LEAF_RECONNECT`]).
    pub reconnect: Duration,
    pub remotes: Vec<RemoteLeafOpts>,
}

impl Default for LeafNodeOpts {
    fn default() -> Self {
        LeafNodeOpts {
            host: "0.0.0.0".into(),
            port: None,
            advertise: None,
            no_advertise: false,
            tls: None,
            auth: LeafAuth::default(),
            reconnect: DEFAULT_LEAF_RECONNECT,
            remotes: Vec::new(),
        }
    }
}

/// `leafnodes { authorization { … } }`: one user, or a `users` list.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LeafAuth {
    pub user: Option<String>,
    pub password: Option<Sensitive>,
    /// The account the single user (or an unauthenticated leaf) binds to.
    pub account: Option<String>,
    pub users: Vec<LeafUser>,
    /// Auth timeout; `None`: the reference's default (TLS timeout + 1s
    /// with TLS, else 2s).
    pub timeout: Option<Duration>,
}

/// One `leafnodes { authorization { users: [ … ] } }` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct LeafUser {
    pub user: String,
    pub password: Option<Sensitive>,
    /// `None`: the global account.
    pub account: Option<String>,
}

/// One `leafnodes { remotes: [ … ] }` entry: a hub this server solicits.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RemoteLeafOpts {
    /// From `url` and/or `urls`, as written (trimmed; userinfo kept):
    /// `nats://` or `tls://` (checked at load; [`LeafUrl::parse`] splits one).
    pub urls: Vec<String>,
    /// `account` / `local`: local account to bind (`None`: `$G`).
    pub account: Option<String>,
    /// `credentials` / `creds` (`~` and `$VAR` expanded).
    pub credentials: Option<PathBuf>,
    /// `nkey` / `seed`: a user seed (`SU…`), checked at load.
    pub nkey: Option<Sensitive>,
    /// The reference has no such key; always `None` from a file (a URL's
    /// userinfo is in the URL).
    pub user: Option<String>,
    pub password: Option<Sensitive>,
    pub tls: Option<RemoteTls>,
    pub deny_imports: Vec<String>,
    pub deny_exports: Vec<String>,
    pub hub: bool,
    /// `None`: [`DEFAULT_LEAF_FIRST_INFO_TIMEOUT`].
    pub first_info_timeout: Option<Duration>,
}

/// A remote's `tls { }`: the client side of a soliciting leaf.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RemoteTls {
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// No verification of the hub's certificate.
    pub insecure: bool,
    /// Handshake timeout; `None`: [`DEFAULT_LEAF_TLS_TIMEOUT`].
    pub timeout: Option<Duration>,
    pub handshake_first: bool,
}

/// A remote leaf URL taken apart: `nats://[user[:pass]@]host[:port]` or
/// `tls://…` (the port defaults to [`DEFAULT_LEAFNODE_PORT`]).
#[derive(Debug, Clone, PartialEq)]
pub struct LeafUrl {
    /// `tls://`: TLS is required even without a `tls { }` block.
    pub tls: bool,
    /// Without brackets for IPv6.
    pub host: String,
    pub port: u16,
    pub user: Option<String>,
    pub password: Option<Sensitive>,
}

impl LeafUrl {
    /// Why `s` is not a leaf URL this build can dial, in words for a log.
    pub fn parse(s: &str) -> Result<LeafUrl, String> {
        let s = s.trim();
        let (scheme, rest) = s.split_once("://").ok_or_else(|| {
            format!(
                "leafnode url {:?} needs a scheme (nats:// or tls://)",
                redact_url(s)
            )
        })?;
        let tls = match scheme.to_ascii_lowercase().as_str() {
            "nats" => false,
            "tls" => true,
            "ws" | "wss" => {
                return Err(format!(
                    "leafnode url {:?}: websocket leaf connections are not supported by this build of Broker Edge (use nats:// or tls://)",
                    redact_url(s)
                ))
            }
            _ => {
                return Err(format!(
                    "leafnode url {:?}: unsupported scheme {scheme:?} (nats:// or tls://)",
                    redact_url(s)
                ))
            }
        };
        let bad = |why: &str| format!("leafnode url {:?}: {why}", redact_url(s));
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        let (user, password) = match userinfo {
            None => (None, None),
            Some(u) => {
                let (name, pass) = match u.split_once(':') {
                    Some((n, p)) => (n, Some(p)),
                    None => (u, None),
                };
                let name = percent_decode(name).ok_or_else(|| bad("bad escape in user"))?;
                let pass = match pass {
                    Some(p) => Some(Sensitive::new(
                        percent_decode(p).ok_or_else(|| bad("bad escape in password"))?,
                    )),
                    None => None,
                };
                (Some(name), pass)
            }
        };
        let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
            let (h, tail) = v6.split_once(']').ok_or_else(|| bad("missing ']'"))?;
            let port = match tail {
                "" => None,
                t => Some(t.strip_prefix(':').ok_or_else(|| bad("bad port"))?),
            };
            (h, port)
        } else {
            match hostport.rsplit_once(':') {
                Some((h, _)) if h.contains(':') => {
                    return Err(bad("IPv6 addresses must be in brackets"))
                }
                Some((h, p)) => (h, Some(p)),
                None => (hostport, None),
            }
        };
        if host.is_empty() {
            return Err(bad("no host"));
        }
        let port = match port {
            None | Some("") => DEFAULT_LEAFNODE_PORT,
            Some(p) => match p.parse::<u16>() {
                Ok(n) if n > 0 => n,
                _ => return Err(bad(&format!("invalid port {p:?}"))),
            },
        };
        Ok(LeafUrl {
            tls,
            host: host.to_string(),
            port,
            user,
            password,
        })
    }

    /// `host:port` (brackets around IPv6), as the reference's `/varz` shows
    /// a remote's URLs.
    pub fn host_port(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// `s` with the password of its userinfo replaced, for messages.
pub fn redact_url(s: &str) -> String {
    let Some((scheme, rest)) = s.split_once("://") else {
        return s.to_string();
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..end].rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or_default();
            let masked = if userinfo.contains(':') {
                format!("{user}:xxxxx")
            } else {
                "xxxxx".to_string()
            };
            format!("{scheme}://{masked}@{host}{}", &rest[end..])
        }
        None => s.to_string(),
    }
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

impl Default for Options {
    fn default() -> Self {
        Options {
            host: "0.0.0.0".into(),
            port: Port::Fixed(DEFAULT_PORT),
            server_name: None,
            http_host: None,
            http_port: None,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_payload: DEFAULT_MAX_PAYLOAD,
            max_pending: DEFAULT_MAX_PENDING,
            max_closed_clients: crate::monitor::closed::DEFAULT_MAX_CLOSED_CLIENTS,
            max_control_line: DEFAULT_MAX_CONTROL_LINE,
            max_subscriptions: 0,
            ping_interval: Duration::from_secs(120),
            ping_max: 2,
            write_deadline: Duration::from_secs(10),
            lame_duck_duration: Duration::from_secs(120),
            lame_duck_grace_period: Duration::from_secs(10),
            debug: false,
            trace: false,
            logtime: true,
            log_file: None,
            pid_file: None,
            ports_file_dir: None,
            jetstream: false,
            store_dir: None,
            username: None,
            password: None,
            auth_token: None,
            config_file: None,
            shards: None,
            shard_fill: DEFAULT_SHARD_FILL,
            tuning: Tuning::default(),
            auth_timeout: None,
            users: Vec::new(),
            nkeys: Vec::new(),
            no_auth_user: None,
            accounts: Vec::new(),
            system_account: None,
            jetstream_max_memory: None,
            jetstream_max_store: None,
            jetstream_domain: None,
            jetstream_strict: None,
            jetstream_sync: None,
            tls: None,
            websocket: None,
            leafnodes: None,
            provision: None,
            cluster: None,
            server_tags: Vec::new(),
            trusted_operators: Vec::new(),
            resolver: None,
            resolver_preload: Vec::new(),
        }
    }
}

/// Parses a Go-style duration ("2m", "1h30m", "500ms", "1.5s").
pub fn parse_go_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    if s == "0" {
        return Some(Duration::ZERO);
    }
    let mut total = 0f64;
    let mut rest = s;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_end == 0 {
            return None;
        }
        let n: f64 = rest[..num_end].parse().ok()?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = &rest[..unit_end];
        rest = &rest[unit_end..];
        let mult = match unit {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        total += n * mult;
    }
    Some(Duration::from_secs_f64(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_go_duration("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_go_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_go_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_go_duration("10"), None);
        assert_eq!(parse_go_duration("x"), None);
    }
}
