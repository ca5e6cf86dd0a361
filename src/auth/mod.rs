//! Client authentication and authorization, built once from [`Options`]
//! and shared by every shard (`Arc<Authenticator>`; it is `Send + Sync`
//! and immutable, so a reload builds a new one and swaps it in).
//!
//! ```ignore
//! let auth = Arc::new(Authenticator::new(&opts)?);       // ws: new_websocket
//! // INFO: auth_required = auth.required();
//! //       nonce = auth.nonce_required().then(auth::new_nonce) (keep it).
//! // Close with AUTH_TIMEOUT if no CONNECT within auth.timeout().
//! match auth.authenticate(&connect, nonce.as_deref().map(str::as_bytes)) {
//!     Ok(who) => {
//!         // who.account: the subject namespace; who.permissions: None or
//!         let mut perms = who.permissions.map(ConnPermissions::new);
//!         // PUB:   if !perms.can_publish(subj) -> -ERR publish_violation(subj), keep open
//!         // SUB:   if !perms.can_subscribe(subj, queue) -> -ERR subscribe_violation(..)
//!         // deliver: if !perms.should_deliver(subj, sub_queue) -> skip this sub;
//!         //          after writing a MSG with a reply: perms.note_delivered(reply)
//!     }
//!     Err(e) => { /* log `e` with the client address (never a secret),
//!                  send -ERR 'Authorization Violation' (AUTH_VIOLATION), close */ }
//! }
//! ```
//!
//! Modes, checked in nats-server's order: nkey users (the CONNECT names a
//! known `nkey` and signs the INFO nonce), users list (plain or bcrypt
//! passwords; `no_auth_user` stands in for a CONNECT without credentials),
//! token (`authorization { token }`, `--auth`; may be bcrypt), single
//! user/password. Plain secrets are compared in constant time.
//!
//! bcrypt is deliberately slow (cost 11: tens of milliseconds): a CONNECT
//! checked against a bcrypt password blocks its executor for that long.
//! [`Authenticator::is_slow`] tells the caller when to move the check off
//! the shard (e.g. glommio's `spawn_blocking`).
//!
//! Operator mode (`operator`, `resolver: MEMORY`, `resolver_preload`):
//! the CONNECT carries a user JWT and the nonce signed with the user's
//! key; the JWT must chain to a trusted operator through a preloaded
//! account (see [`jwt`]). Users and permissions then come only from JWTs.
//!
//! Deliberate difference: nats-server re-checks a `no_auth_user`'s stored
//! password against itself, which fails for bcrypt-hashed users; here the
//! no_auth_user simply is that user.

mod conn;
pub mod gate;
pub mod jwt;
mod permissions;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;

use crate::options::{Options, PermissionsConfig};
use crate::protocol::info::Connect;

pub use conn::{ConnPermissions, ResponsePermits};
pub use permissions::Permissions;

/// nats-server's global account: users not declared in `accounts`.
pub const GLOBAL_ACCOUNT: &str = "$G";
/// Sent as `-ERR 'Authorization Violation'` before closing.
pub const AUTH_VIOLATION: &str = "Authorization Violation";
/// Sent as `-ERR 'Authentication Timeout'` when CONNECT comes too late.
pub const AUTH_TIMEOUT: &str = "Authentication Timeout";
/// nats-server's default auth timeout (`authorization { timeout }`).
pub const DEFAULT_AUTH_TIMEOUT: Duration = Duration::from_secs(2);

/// `Permissions Violation for Publish to "subj"` (the connection stays).
pub fn publish_violation(subject: &[u8]) -> String {
    format!("Permissions Violation for Publish to {}", go_quote(subject))
}

/// `Permissions Violation for Subscription to "subj"`, with
/// ` using queue "q"` for a queue subscription.
pub fn subscribe_violation(subject: &[u8], queue: Option<&[u8]>) -> String {
    match queue.filter(|q| !q.is_empty()) {
        Some(q) => format!(
            "Permissions Violation for Subscription to {} using queue {}",
            go_quote(subject),
            go_quote(q)
        ),
        None => format!(
            "Permissions Violation for Subscription to {}",
            go_quote(subject)
        ),
    }
}

/// `Permissions Violation for Publish with Reply of "r"` (nats sends it
/// for reply subjects reserved for service imports).
pub fn reply_violation(reply: &[u8]) -> String {
    format!(
        "Permissions Violation for Publish with Reply of {}",
        go_quote(reply)
    )
}

/// Go's `%q` for subjects (printable ASCII in practice).
fn go_quote(s: &[u8]) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for &b in s {
        match b {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            0x20..=0x7e => out.push(b as char),
            _ => out.push_str(&format!("\\x{b:02x}")),
        }
    }
    out.push('"');
    out
}

/// The configuration cannot be enforced.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthConfigError {
    #[error("no_auth_user: \"{0}\" present, but users are not defined")]
    NoAuthUserWithoutUsers(String),
    #[error(
        "no_auth_user: \"{0}\" not present as user in authorization block or account configuration"
    )]
    NoAuthUserUnknown(String),
    #[error("Not a valid public nkey for a user: {0:?}")]
    BadNkey(String),
    #[error("subject {0:?} is not a valid subject")]
    BadSubject(String),
    #[error("Duplicate user {0:?} detected")]
    DuplicateUser(String),
    #[error("operator mode: {0}")]
    Operator(String),
}

/// Why a CONNECT was refused. Every variant goes on the wire as
/// [`AUTH_VIOLATION`]; the text is for the log and never holds a secret.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("no credentials")]
    MissingCredentials,
    #[error("unknown user {0:?}")]
    UnknownUser(String),
    #[error("wrong password for user {0:?}")]
    BadPassword(String),
    #[error("wrong token")]
    BadToken,
    #[error("unknown nkey {0:?}")]
    UnknownNkey(String),
    #[error("nkey {0:?}: signature missing")]
    MissingSignature(String),
    #[error("nkey {0:?}: signature not valid base64")]
    BadSignatureEncoding(String),
    #[error("nkey {0:?}: signature not verified")]
    BadSignature(String),
    #[error("user {user:?} may not connect as {conn_type}")]
    ConnectionTypeNotAllowed { user: String, conn_type: String },
    #[error("user JWT: {0}")]
    Jwt(#[from] jwt::JwtError),
    #[error("user JWT {0:?}: permissions hold an invalid subject")]
    JwtPermissions(String),
    #[error("too many password checks under way from {0}")]
    Busy(std::net::IpAddr),
}

/// Who a connection authenticated as.
#[derive(Debug, Clone)]
pub struct Authed {
    /// User name, public nkey for nkey users, empty for token/anonymous.
    pub user: String,
    pub account: String,
    /// `None`: no restrictions.
    pub permissions: Option<Arc<Permissions>>,
    /// The user's own limits (from a user JWT); `None` means unlimited.
    pub limits: UserLimits,
}

/// Per-user limits a user JWT may set.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UserLimits {
    pub max_subscriptions: Option<usize>,
    pub max_payload: Option<usize>,
    /// When the credentials expire (a user JWT's `exp`): the connection
    /// is closed then.
    pub expires: Option<std::time::SystemTime>,
}

/// A JWT limit: negative means unlimited.
fn jwt_limit(v: Option<i64>) -> Option<usize> {
    v.filter(|&n| n >= 0).map(|n| n as usize)
}

enum Secret {
    Plain(Box<[u8]>),
    Bcrypt(String),
}

impl Secret {
    fn new(s: &str) -> Secret {
        if is_bcrypt(s) {
            Secret::Bcrypt(s.to_string())
        } else {
            Secret::Plain(s.as_bytes().into())
        }
    }

    fn is_slow(&self) -> bool {
        matches!(self, Secret::Bcrypt(_))
    }

    fn check(&self, given: &str) -> bool {
        match self {
            Secret::Plain(p) => ct_eq(p, given.as_bytes()),
            Secret::Bcrypt(h) => bcrypt::verify(given, h).unwrap_or(false),
        }
    }
}

/// nats' `^\$2[abxy]\$\d{2}\$.*`.
fn is_bcrypt(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 7
        && b.starts_with(b"$2")
        && matches!(b[2], b'a' | b'b' | b'x' | b'y')
        && b[3] == b'$'
        && b[4].is_ascii_digit()
        && b[5].is_ascii_digit()
        && b[6] == b'$'
}

/// Equal-length inputs take the same time whatever their contents.
fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = u8::from(a.len() != b.len());
    for (i, x) in a.iter().enumerate() {
        diff |= x ^ b.get(i).copied().unwrap_or(!x);
    }
    diff == 0
}

struct UserEntry {
    secret: Secret,
    account: String,
    permissions: Option<Arc<Permissions>>,
    conn_types: Vec<String>,
}

struct NkeyEntry {
    key: nkeys::KeyPair,
    account: String,
    permissions: Option<Arc<Permissions>>,
    conn_types: Vec<String>,
}

/// Checks CONNECT credentials against the configured users.
pub struct Authenticator {
    users: HashMap<String, UserEntry>,
    nkeys: HashMap<String, NkeyEntry>,
    token: Option<Secret>,
    single: Option<(String, Secret)>,
    no_auth_user: Option<String>,
    timeout: Duration,
    /// Operator mode: trusted operators and preloaded accounts.
    trust: Option<jwt::Trust>,
    /// Operator mode: each account's `default_permissions`, compiled.
    account_defaults: HashMap<String, Arc<Permissions>>,
    /// The costliest bcrypt hash among the users: an unknown user name is
    /// checked against it too, so it costs what a known one does (no user
    /// names leak by timing).
    decoy: Option<Secret>,
    /// The only configured account is the system account (and nothing
    /// else asks for credentials): clients without credentials come into
    /// the global account, as nats-server lets them (it makes up a
    /// `no_auth_user` there), so adding system users locks nobody out.
    anonymous_global: bool,
}

impl std::fmt::Debug for Authenticator {
    // Never prints secrets.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("users", &self.users.len())
            .field("nkeys", &self.nkeys.len())
            .field("token", &self.token.is_some())
            .field("single_user", &self.single.as_ref().map(|(u, _)| u))
            .field("no_auth_user", &self.no_auth_user)
            .field("operator_mode", &self.trust.is_some())
            .finish()
    }
}

fn compile(p: &Option<PermissionsConfig>) -> Result<Option<Arc<Permissions>>, AuthConfigError> {
    p.as_ref()
        .map(|c| Permissions::from_config(c).map(Arc::new))
        .transpose()
}

impl Authenticator {
    pub fn new(opts: &Options) -> Result<Authenticator, AuthConfigError> {
        let mut users = HashMap::new();
        for u in &opts.users {
            let entry = UserEntry {
                secret: Secret::new(&u.password),
                account: u.account.clone().unwrap_or_else(|| GLOBAL_ACCOUNT.into()),
                permissions: compile(&u.permissions)?,
                conn_types: u.allowed_connection_types.clone(),
            };
            if users.insert(u.username.clone(), entry).is_some() {
                return Err(AuthConfigError::DuplicateUser(u.username.clone()));
            }
        }
        let mut nkeys = HashMap::new();
        for u in &opts.nkeys {
            let key = nkeys::KeyPair::from_public_key(&u.nkey)
                .ok()
                .filter(|k| matches!(k.key_pair_type(), nkeys::KeyPairType::User))
                .ok_or_else(|| AuthConfigError::BadNkey(u.nkey.clone()))?;
            let entry = NkeyEntry {
                key,
                account: u.account.clone().unwrap_or_else(|| GLOBAL_ACCOUNT.into()),
                permissions: compile(&u.permissions)?,
                conn_types: u.allowed_connection_types.clone(),
            };
            if nkeys.insert(u.nkey.clone(), entry).is_some() {
                return Err(AuthConfigError::DuplicateUser(u.nkey.clone()));
            }
        }
        if let Some(n) = &opts.no_auth_user {
            if opts.users.is_empty() {
                return Err(AuthConfigError::NoAuthUserWithoutUsers(n.clone()));
            }
            if !users.contains_key(n) {
                return Err(AuthConfigError::NoAuthUserUnknown(n.clone()));
            }
        }
        let trust =
            jwt::Trust::from_options(opts).map_err(|e| AuthConfigError::Operator(e.to_string()))?;
        let mut account_defaults = HashMap::new();
        for acc in trust.iter().flat_map(|t| t.account_configs()) {
            if let Some(p) = compile(&acc.default_permissions)? {
                account_defaults.insert(acc.name, p);
            }
        }
        let decoy = opts
            .users
            .iter()
            .filter(|u| is_bcrypt(&u.password))
            .max_by_key(|u| u.password.get(4..6).and_then(|c| c.parse::<u32>().ok()))
            .map(|u| Secret::new(&u.password));
        Ok(Authenticator {
            trust,
            account_defaults,
            decoy,
            users,
            nkeys,
            token: opts.auth_token.as_deref().map(Secret::new),
            single: opts.username.as_ref().map(|u| {
                let pass = opts.password.as_deref().unwrap_or("");
                (u.clone(), Secret::new(pass))
            }),
            no_auth_user: opts.no_auth_user.clone(),
            timeout: opts.auth_timeout.unwrap_or_else(|| default_timeout(opts)),
            anonymous_global: only_system_account(opts),
        })
    }

    /// The authenticator for WebSocket clients: as nats-server does, a
    /// `websocket { authorization {…} }` or `no_auth_user` with a user, a
    /// token or a no_auth_user replaces the top-level user/password,
    /// token and no_auth_user (the users list stays shared). Without such
    /// an override this is [`Authenticator::new`].
    pub fn new_websocket(opts: &Options) -> Result<Authenticator, AuthConfigError> {
        let Some(ws) = &opts.websocket else {
            return Authenticator::new(opts);
        };
        let set = |s: Option<&str>| s.is_some_and(|s| !s.is_empty());
        if !(set(ws.username.as_deref())
            || set(ws.token.as_deref())
            || set(ws.no_auth_user.as_deref()))
        {
            return Authenticator::new(opts);
        }
        let mut o = opts.clone();
        o.username = ws.username.clone();
        o.password = ws.password.clone();
        o.auth_token = ws.token.clone();
        o.no_auth_user = ws.no_auth_user.clone();
        o.auth_timeout = ws.auth_timeout.or(opts.auth_timeout);
        Authenticator::new(&o)
    }

    /// INFO `auth_required`.
    pub fn required(&self) -> bool {
        self.trust.is_some()
            || !self.users.is_empty()
            || !self.nkeys.is_empty()
            || self.token.is_some()
            || self.single.is_some()
    }

    /// What INFO says in `auth_required`: with a `no_auth_user`, clients
    /// may come without credentials, so the reference does not ask for any.
    pub fn info_auth_required(&self) -> bool {
        self.required() && self.no_auth_user.is_none() && !self.anonymous_global
    }

    /// INFO must carry a nonce (nkey users are configured, or operator
    /// mode: user JWTs come with the nonce signed).
    pub fn nonce_required(&self) -> bool {
        !self.nkeys.is_empty() || self.trust.is_some()
    }

    /// Operator mode: trusted operators and JWT accounts.
    pub fn operator_mode(&self) -> bool {
        self.trust.is_some()
    }

    /// How long a client has to send CONNECT once auth is required.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Would checking this CONNECT involve bcrypt (slow on purpose)?
    pub fn is_slow(&self, c: &Connect) -> bool {
        if self.trust.is_some() {
            return false;
        }
        if c.nkey
            .as_deref()
            .is_some_and(|k| self.nkeys.contains_key(k))
        {
            return false;
        }
        let user = self.effective_user(c);
        match user.and_then(|u| self.users.get(u)) {
            Some(u) if !self.is_no_auth(c) => u.secret.is_slow(),
            Some(_) => false,
            None if user.is_some() && self.decoy.is_some() => true,
            None => {
                self.token.as_ref().is_some_and(Secret::is_slow)
                    || self.single.as_ref().is_some_and(|(_, s)| s.is_slow())
            }
        }
    }

    /// [`Authenticator::authenticate_as`] for a plain TCP client
    /// (connection type `STANDARD`).
    pub fn authenticate(&self, c: &Connect, nonce: Option<&[u8]>) -> Result<Authed, AuthError> {
        self.authenticate_as(c, nonce, "STANDARD")
    }

    /// Check CONNECT `c`; `nonce` is the nonce sent in INFO (as sent, the
    /// bytes a client signs). `conn_type` is checked against users'
    /// `allowed_connection_types` (`STANDARD`, `WEBSOCKET`, …).
    pub fn authenticate_as(
        &self,
        c: &Connect,
        nonce: Option<&[u8]>,
        conn_type: &str,
    ) -> Result<Authed, AuthError> {
        if let Some(trust) = &self.trust {
            return self.authenticate_jwt(trust, c, nonce, conn_type);
        }
        if !self.required() || (self.anonymous_global && no_credentials(c)) {
            return Ok(Authed {
                user: String::new(),
                account: GLOBAL_ACCOUNT.into(),
                permissions: None,
                limits: UserLimits::default(),
            });
        }
        let allowed = |user: &str, types: &[String]| {
            if types.is_empty() || types.iter().any(|t| t == conn_type) {
                Ok(())
            } else {
                Err(AuthError::ConnectionTypeNotAllowed {
                    user: user.to_string(),
                    conn_type: conn_type.to_string(),
                })
            }
        };
        if let Some(key) = c.nkey.as_deref().filter(|k| !k.is_empty()) {
            if !self.nkeys.is_empty() {
                let entry = self
                    .nkeys
                    .get(key)
                    .ok_or_else(|| AuthError::UnknownNkey(key.to_string()))?;
                allowed(key, &entry.conn_types)?;
                verify_nonce(key, &entry.key, c.sig.as_deref(), nonce)?;
                return Ok(Authed {
                    user: key.to_string(),
                    account: entry.account.clone(),
                    permissions: entry.permissions.clone(),
                    limits: UserLimits::default(),
                });
            }
        }
        if !self.users.is_empty() {
            if let Some(name) = self.effective_user(c) {
                let Some(entry) = self.users.get(name) else {
                    if let Some(decoy) = &self.decoy {
                        let _ = decoy.check(c.pass.as_deref().unwrap_or(""));
                    }
                    return Err(AuthError::UnknownUser(name.to_string()));
                };
                allowed(name, &entry.conn_types)?;
                if !self.is_no_auth(c) && !entry.secret.check(c.pass.as_deref().unwrap_or("")) {
                    return Err(AuthError::BadPassword(name.to_string()));
                }
                return Ok(Authed {
                    user: name.to_string(),
                    account: entry.account.clone(),
                    permissions: entry.permissions.clone(),
                    limits: UserLimits::default(),
                });
            }
        }
        let anonymous = |user: &str| Authed {
            user: user.to_string(),
            account: GLOBAL_ACCOUNT.into(),
            permissions: None,
            limits: UserLimits::default(),
        };
        if let Some(token) = &self.token {
            return match token.check(c.auth_token.as_deref().unwrap_or("")) {
                true => Ok(anonymous("")),
                false => Err(AuthError::BadToken),
            };
        }
        if let Some((user, pass)) = &self.single {
            let given = c.user.as_deref().unwrap_or("");
            // Both checks run so a wrong name costs as much as a wrong password.
            let name_ok = ct_eq(user.as_bytes(), given.as_bytes());
            let pass_ok = pass.check(c.pass.as_deref().unwrap_or(""));
            return match (name_ok, pass_ok) {
                (true, true) => Ok(anonymous(user)),
                (false, _) => Err(AuthError::UnknownUser(given.to_string())),
                (true, false) => Err(AuthError::BadPassword(given.to_string())),
            };
        }
        Err(AuthError::MissingCredentials)
    }

    /// Operator mode: the CONNECT's user JWT, then (unless it is a bearer
    /// token) the nonce signed by the user's key, as nats-server checks.
    fn authenticate_jwt(
        &self,
        trust: &jwt::Trust,
        c: &Connect,
        nonce: Option<&[u8]>,
        conn_type: &str,
    ) -> Result<Authed, AuthError> {
        let token = c
            .jwt
            .as_deref()
            .filter(|t| !t.is_empty())
            .ok_or(AuthError::MissingCredentials)?;
        let v = trust.verify_user(token)?;
        let types = &v.limits.allowed_connection_types;
        if !types.is_empty() && !types.iter().any(|t| t.eq_ignore_ascii_case(conn_type)) {
            return Err(AuthError::ConnectionTypeNotAllowed {
                user: v.user,
                conn_type: conn_type.to_string(),
            });
        }
        if !v.limits.bearer_token {
            let key = nkeys::KeyPair::from_public_key(&v.user)
                .map_err(|_| AuthError::UnknownNkey(v.user.clone()))?;
            verify_nonce(&v.user, &key, c.sig.as_deref(), nonce)?;
        }
        let permissions = match v.limits.permissions() {
            Some(p) => Some(Arc::new(
                Permissions::from_config(&p)
                    .map_err(|_| AuthError::JwtPermissions(v.user.clone()))?,
            )),
            None => self.account_defaults.get(&v.account).cloned(),
        };
        let limits = UserLimits {
            max_subscriptions: jwt_limit(v.limits.subs),
            max_payload: jwt_limit(v.limits.payload),
            expires: (v.expires > 0)
                .then(|| std::time::UNIX_EPOCH + std::time::Duration::from_secs(v.expires as u64)),
        };
        Ok(Authed {
            user: v.user,
            account: v.account,
            permissions,
            limits,
        })
    }

    /// A CONNECT with no user, password or token stands for no_auth_user.
    fn is_no_auth(&self, c: &Connect) -> bool {
        let empty = |s: &Option<String>| s.as_deref().unwrap_or("").is_empty();
        self.no_auth_user.is_some() && empty(&c.user) && empty(&c.pass) && empty(&c.auth_token)
    }

    fn effective_user<'a>(&'a self, c: &'a Connect) -> Option<&'a str> {
        if self.is_no_auth(c) {
            return self.no_auth_user.as_deref();
        }
        c.user.as_deref().filter(|u| !u.is_empty())
    }
}

/// Whether the configuration's only account is its system account, with
/// no other credentials (no `authorization` users, user, token or
/// `no_auth_user`) and not in operator mode: nats-server's condition for
/// letting clients without credentials into the global account.
fn only_system_account(opts: &Options) -> bool {
    opts.trusted_operators.is_empty()
        && opts.no_auth_user.is_none()
        && opts.username.is_none()
        && opts.auth_token.is_none()
        && opts.users.iter().all(|u| u.account.is_some())
        && opts.nkeys.iter().all(|u| u.account.is_some())
        && matches!(opts.accounts.as_slice(), [a] if opts.system_account.as_deref() == Some(a.name.as_str()))
}

/// A CONNECT that names nobody: no user, password, token, nkey or JWT.
fn no_credentials(c: &Connect) -> bool {
    let empty = |s: &Option<String>| s.as_deref().unwrap_or("").is_empty();
    empty(&c.user) && empty(&c.pass) && empty(&c.auth_token) && empty(&c.nkey) && empty(&c.jwt)
}

/// nats' `getDefaultAuthTimeout`: 2s, or the TLS handshake timeout plus
/// one second when TLS is configured (its default is 2s too).
fn default_timeout(opts: &Options) -> Duration {
    match &opts.tls {
        Some(t) => t.timeout.unwrap_or(Duration::from_secs(2)) + Duration::from_secs(1),
        None => DEFAULT_AUTH_TIMEOUT,
    }
}

/// CONNECT `sig`: the nonce signed with the user's key, base64url without
/// padding (standard base64 accepted too, as nats does).
fn verify_nonce(
    key_name: &str,
    key: &nkeys::KeyPair,
    sig: Option<&str>,
    nonce: Option<&[u8]>,
) -> Result<(), AuthError> {
    let name = || key_name.to_string();
    let sig = sig
        .filter(|s| !s.is_empty())
        .ok_or_else(|| AuthError::MissingSignature(name()))?;
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(sig)
        .or_else(|_| base64::engine::general_purpose::STANDARD.decode(sig))
        .map_err(|_| AuthError::BadSignatureEncoding(name()))?;
    // Without a nonce there is nothing the signature could prove.
    let nonce = nonce.ok_or_else(|| AuthError::BadSignature(name()))?;
    key.verify(nonce, &raw)
        .map_err(|_| AuthError::BadSignature(name()))
}

/// A fresh nonce for INFO: 11 random bytes, base64url without padding
/// (nats-server's format). Clients sign the string's bytes.
pub fn new_nonce() -> String {
    let bytes: [u8; 11] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}
