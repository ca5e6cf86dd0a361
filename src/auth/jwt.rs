//! NATS JWTs (nats-io/jwt v2): decoding, signature checks and the chain of
//! trust operator → account → user used in operator mode.
//!
//! A JWT is `header.claims.signature`, each part base64url without
//! padding; the header is `{"typ":"JWT","alg":"ed25519-nkey"}` (v1 tokens
//! say `ed25519`), the signature is ed25519 over `header.claims` by the
//! nkey named in `iss`. Claims carry the NATS part under `nats`.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use serde::de::DeserializeOwned;
use serde::Deserialize;

use crate::options::{
    AccountConfig, AccountJetStream, AccountLimits, ExportConfig, ExportKind, ImportConfig,
    Options, PermissionsConfig, ResponsePermission, SubjectPermission,
};

/// nats' default for `resp` without `max`/`ttl`: one response in 2 minutes.
const DEFAULT_RESP_TTL: Duration = Duration::from_secs(120);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum JwtError {
    #[error("not a JWT")]
    Malformed,
    #[error("JWT header: {0}")]
    Header(String),
    #[error("JWT claims: {0}")]
    Claims(String),
    #[error("JWT issuer {0:?} is not a public nkey")]
    BadIssuer(String),
    #[error("JWT signature does not verify")]
    BadSignature,
    #[error("expected a {want} JWT, got {got:?}")]
    WrongType { want: &'static str, got: String },
    #[error("JWT subject {0:?} is not a public {1} key")]
    BadSubject(String, &'static str),
    #[error("JWT is expired")]
    Expired,
    #[error("JWT is not yet valid")]
    NotYetValid,
    #[error("operator JWT must be self-signed")]
    NotSelfSigned,
    #[error("account {0:?} is not signed by a trusted operator")]
    UntrustedAccount(String),
    #[error(
        "user {user:?} is signed by {issuer:?}, not by account {account:?} or its signing keys"
    )]
    UntrustedUser {
        user: String,
        issuer: String,
        account: String,
    },
    #[error("account {0:?} is not known")]
    UnknownAccount(String),
    #[error("user {0:?} is revoked")]
    Revoked(String),
    #[error("user {0:?}: scoped users require no permissions or limits set")]
    ScopedUserWithLimits(String),
    #[error("user {0:?}: restriction {1:?} is not supported, so the user is refused")]
    Unsupported(String, &'static str),
}

/// The registered claims every NATS JWT has, plus its `nats` section.
#[derive(Debug, Clone, Deserialize)]
pub struct Claims<N> {
    #[serde(default)]
    pub jti: String,
    #[serde(default)]
    pub iat: i64,
    pub iss: String,
    pub sub: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub exp: i64,
    #[serde(default)]
    pub nbf: i64,
    pub nats: N,
}

#[derive(Debug, Deserialize)]
struct Header {
    #[serde(default)]
    typ: String,
    #[serde(default)]
    alg: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct OperatorNats {
    #[serde(rename = "type")]
    pub kind: String,
    pub signing_keys: Vec<String>,
    pub system_account: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct PermissionClaim {
    pub allow: Vec<String>,
    pub deny: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct ResponseClaim {
    #[serde(default)]
    pub max: i64,
    /// Nanoseconds (Go `time.Duration`).
    #[serde(default)]
    pub ttl: i64,
}

/// `pub`, `sub`, `resp`, limits and flags of a user (also a scoped
/// signing key's template).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct UserLimitsClaim {
    #[serde(rename = "pub")]
    pub publish: PermissionClaim,
    #[serde(rename = "sub")]
    pub subscribe: PermissionClaim,
    pub resp: Option<ResponseClaim>,
    pub subs: Option<i64>,
    pub data: Option<i64>,
    pub payload: Option<i64>,
    pub bearer_token: bool,
    pub allowed_connection_types: Vec<String>,
    /// Source networks (`src`, CIDRs) and connect `times`: not checked
    /// here, so a user restricted by them is refused (fail closed).
    pub src: serde_json::Value,
    pub times: serde_json::Value,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct UserNats {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(flatten)]
    pub limits: UserLimitsClaim,
    pub issuer_account: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ExportClaim {
    pub name: String,
    pub subject: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub token_req: bool,
    pub response_type: String,
    /// Nanoseconds.
    pub response_threshold: i64,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ImportClaim {
    pub name: String,
    pub subject: String,
    pub account: String,
    pub token: String,
    pub to: String,
    pub local_subject: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub share: bool,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct AccountLimitsClaim {
    pub subs: Option<i64>,
    pub payload: Option<i64>,
    pub conn: Option<i64>,
    pub leaf: Option<i64>,
    pub mem_storage: Option<i64>,
    pub disk_storage: Option<i64>,
    pub streams: Option<i64>,
    pub consumer: Option<i64>,
}

/// v2 signing keys are a plain key or a scope with a user template.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum SigningKeyClaim {
    Key(String),
    Scoped {
        key: String,
        #[serde(default)]
        template: Box<UserLimitsClaim>,
    },
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct DefaultPermissionsClaim {
    #[serde(rename = "pub")]
    pub publish: PermissionClaim,
    #[serde(rename = "sub")]
    pub subscribe: PermissionClaim,
    pub resp: Option<ResponseClaim>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct AccountNats {
    #[serde(rename = "type")]
    pub kind: String,
    pub imports: Vec<ImportClaim>,
    pub exports: Vec<ExportClaim>,
    pub limits: AccountLimitsClaim,
    pub signing_keys: Vec<SigningKeyClaim>,
    pub default_permissions: DefaultPermissionsClaim,
    /// User public key (or `*` for all) → unix time: user JWTs issued at
    /// or before it are revoked.
    pub revocations: HashMap<String, i64>,
}

/// An export's activation token (`token` of an import of a `token_req`
/// export): the exporter grants the importer (`sub`) a subject.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ActivationNats {
    #[serde(rename = "type")]
    pub kind: String,
    pub subject: String,
    pub issuer_account: String,
}

fn b64(part: &str) -> Result<Vec<u8>, JwtError> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part.trim_end_matches('='))
        .map_err(|_| JwtError::Malformed)
}

/// Decode `token` and check its signature against its own `iss`. Says
/// nothing about whether that issuer is trusted: see [`Trust`].
pub fn decode<N: DeserializeOwned>(token: &str) -> Result<Claims<N>, JwtError> {
    let token = token.trim();
    let mut parts = token.split('.');
    let (Some(h), Some(c), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwtError::Malformed);
    };
    let header: Header =
        serde_json::from_slice(&b64(h)?).map_err(|e| JwtError::Header(e.to_string()))?;
    if !header.typ.eq_ignore_ascii_case("jwt") {
        return Err(JwtError::Header(format!("unknown type {:?}", header.typ)));
    }
    if header.alg != "ed25519-nkey" && header.alg != "ed25519" {
        return Err(JwtError::Header(format!(
            "unsupported algorithm {:?}",
            header.alg
        )));
    }
    let claims: Claims<N> =
        serde_json::from_slice(&b64(c)?).map_err(|e| JwtError::Claims(e.to_string()))?;
    let issuer = nkeys::KeyPair::from_public_key(&claims.iss)
        .map_err(|_| JwtError::BadIssuer(claims.iss.clone()))?;
    let sig = b64(s)?;
    // The signed input is the token text itself, not re-encoded claims.
    let signed = &token[..h.len() + 1 + c.len()];
    issuer
        .verify(signed.as_bytes(), &sig)
        .map_err(|_| JwtError::BadSignature)?;
    Ok(claims)
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

impl<N> Claims<N> {
    /// `exp`/`nbf` against the clock (0 means unset, as in nats).
    pub fn check_time(&self) -> Result<(), JwtError> {
        let now = now_secs();
        if self.exp > 0 && now > self.exp {
            return Err(JwtError::Expired);
        }
        if self.nbf > 0 && now < self.nbf {
            return Err(JwtError::NotYetValid);
        }
        Ok(())
    }
}

fn is_key(key: &str, prefix: char) -> bool {
    key.starts_with(prefix) && nkeys::KeyPair::from_public_key(key).is_ok()
}

fn check_kind(kind: &str, want: &'static str) -> Result<(), JwtError> {
    // v1 tokens have no `type` in `nats`.
    if kind.is_empty() || kind == want {
        Ok(())
    } else {
        Err(JwtError::WrongType {
            want,
            got: kind.to_string(),
        })
    }
}

/// A self-signed operator JWT.
pub fn decode_operator(token: &str) -> Result<Claims<OperatorNats>, JwtError> {
    let c: Claims<OperatorNats> = decode(token)?;
    check_kind(&c.nats.kind, "operator")?;
    if !is_key(&c.sub, 'O') {
        return Err(JwtError::BadSubject(c.sub, "operator"));
    }
    if c.iss != c.sub {
        return Err(JwtError::NotSelfSigned);
    }
    c.check_time()?;
    Ok(c)
}

pub fn decode_account(token: &str) -> Result<Claims<AccountNats>, JwtError> {
    let c: Claims<AccountNats> = decode(token)?;
    check_kind(&c.nats.kind, "account")?;
    if !is_key(&c.sub, 'A') {
        return Err(JwtError::BadSubject(c.sub, "account"));
    }
    Ok(c)
}

pub fn decode_user(token: &str) -> Result<Claims<UserNats>, JwtError> {
    let c: Claims<UserNats> = decode(token)?;
    check_kind(&c.nats.kind, "user")?;
    if !is_key(&c.sub, 'U') {
        return Err(JwtError::BadSubject(c.sub, "user"));
    }
    Ok(c)
}

/// Everything an account claim decides for its users.
#[derive(Debug, Clone)]
pub struct TrustedAccount {
    pub claims: Claims<AccountNats>,
    /// Signing keys; a scoped key carries the template its users get.
    pub signing_keys: HashMap<String, Option<UserLimitsClaim>>,
}

/// The trusted operators and the accounts they signed (`resolver_preload`).
#[derive(Debug, Clone, Default)]
pub struct Trust {
    /// Operator identities and their signing keys.
    operator_keys: Vec<String>,
    pub accounts: HashMap<String, TrustedAccount>,
}

/// A user JWT that passed every check.
#[derive(Debug, Clone)]
pub struct VerifiedUser {
    pub user: String,
    pub account: String,
    /// When the user JWT expires (seconds since the epoch; 0: never).
    pub expires: i64,
    /// The claims that apply: the user's own, or a scoped key's template.
    pub limits: UserLimitsClaim,
}

impl Trust {
    /// From options in operator mode; `None` without `operator`.
    pub fn from_options(opts: &Options) -> Result<Option<Trust>, JwtError> {
        if opts.trusted_operators.is_empty() {
            return Ok(None);
        }
        let mut t = Trust::default();
        for token in &opts.trusted_operators {
            let op = decode_operator(token)?;
            t.operator_keys.push(op.sub.clone());
            t.operator_keys.extend(op.nats.signing_keys.iter().cloned());
        }
        for (key, token) in &opts.resolver_preload {
            let acc = t.verify_account(token)?;
            if &acc.claims.sub != key {
                return Err(JwtError::BadSubject(acc.claims.sub, "account"));
            }
            t.accounts.insert(key.clone(), acc);
        }
        Ok(Some(t))
    }

    /// An account JWT signed by a trusted operator (or its signing key).
    pub fn verify_account(&self, token: &str) -> Result<TrustedAccount, JwtError> {
        let claims = decode_account(token)?;
        if !self.operator_keys.iter().any(|k| k == &claims.iss) {
            return Err(JwtError::UntrustedAccount(claims.sub));
        }
        let signing_keys = claims
            .nats
            .signing_keys
            .iter()
            .map(|k| match k {
                SigningKeyClaim::Key(k) => (k.clone(), None),
                SigningKeyClaim::Scoped { key, template } => {
                    (key.clone(), Some((**template).clone()))
                }
            })
            .collect();
        Ok(TrustedAccount {
            claims,
            signing_keys,
        })
    }

    /// nats' checks for a CONNECT's user JWT: valid, current, issued by a
    /// known account (directly or through one of its signing keys), whose
    /// own claims are current. The nonce signature is the caller's part.
    pub fn verify_user(&self, token: &str) -> Result<VerifiedUser, JwtError> {
        let c = decode_user(token)?;
        c.check_time()?;
        let account = if c.nats.issuer_account.is_empty() {
            c.iss.clone()
        } else {
            c.nats.issuer_account.clone()
        };
        let acc = self
            .accounts
            .get(&account)
            .ok_or_else(|| JwtError::UnknownAccount(account.clone()))?;
        acc.claims.check_time()?;
        let untrusted = || JwtError::UntrustedUser {
            user: c.sub.clone(),
            issuer: c.iss.clone(),
            account: account.clone(),
        };
        let revoked_at = |k: &str| acc.claims.nats.revocations.get(k).copied();
        if let Some(at) = revoked_at(&c.sub).max(revoked_at("*")) {
            if c.iat <= at {
                return Err(JwtError::Revoked(c.sub));
            }
        }
        let limits = if c.iss == account {
            c.nats.limits.clone()
        } else {
            match acc.signing_keys.get(&c.iss) {
                None => return Err(untrusted()),
                Some(None) => c.nats.limits.clone(),
                // A scoped key decides permissions and limits itself; the
                // user JWT must set none (jwt's `ValidateScopedSigner`).
                Some(Some(template)) => {
                    if !c.nats.limits.is_empty() {
                        return Err(JwtError::ScopedUserWithLimits(c.sub));
                    }
                    template.clone()
                }
            }
        };
        if let Some(what) = limits.unsupported() {
            return Err(JwtError::Unsupported(c.sub, what));
        }
        Ok(VerifiedUser {
            user: c.sub.clone(),
            account,
            expires: c.exp,
            limits,
        })
    }

    /// The preloaded accounts as `accounts { }` entries named by public
    /// key. Imports whose export is missing or whose activation token
    /// does not verify are left out (nats-server logs and skips them).
    pub fn account_configs(&self) -> Vec<AccountConfig> {
        let mut keys: Vec<&String> = self.accounts.keys().collect();
        keys.sort();
        keys.into_iter()
            .map(|k| self.account_config(&self.accounts[k]))
            .collect()
    }

    fn account_config(&self, acc: &TrustedAccount) -> AccountConfig {
        let n = &acc.claims.nats;
        let exports = n.exports.iter().filter_map(export_config).collect();
        let imports = n
            .imports
            .iter()
            .filter_map(|i| self.import_config(&acc.claims.sub, i))
            .collect();
        let lim = &n.limits;
        let limit = |v: Option<i64>| v.filter(|n| *n >= 0);
        let js = match (limit(lim.mem_storage), limit(lim.disk_storage)) {
            (Some(0) | None, Some(0) | None) => AccountJetStream::Disabled,
            _ => AccountJetStream::Limits {
                max_memory: limit(lim.mem_storage),
                max_store: limit(lim.disk_storage),
                max_streams: limit(lim.streams),
                max_consumers: limit(lim.consumer),
            },
        };
        AccountConfig {
            name: acc.claims.sub.clone(),
            nkey: Some(acc.claims.sub.clone()),
            jetstream: js,
            exports,
            imports,
            default_permissions: permissions_config(
                &n.default_permissions.publish,
                &n.default_permissions.subscribe,
                n.default_permissions.resp.as_ref(),
            ),
            limits: AccountLimits {
                max_connections: limit(lim.conn),
                max_subscriptions: limit(lim.subs),
                max_payload: limit(lim.payload),
                max_leafnodes: limit(lim.leaf),
            },
            mappings: None,
        }
    }

    fn import_config(&self, importer: &str, i: &ImportClaim) -> Option<ImportConfig> {
        let kind = export_kind(&i.kind)?;
        let some = |s: &str| (!s.is_empty()).then(|| s.to_string());
        // `subject` ends up as the exporter's subject, `to` the local one.
        let (subject, to, prefix) = match kind {
            // v2: `local_subject` maps; the older `to` is a prefix for streams.
            ExportKind::Stream => match some(&i.local_subject) {
                Some(l) => (i.subject.clone(), Some(l), None),
                None => (i.subject.clone(), None, some(&i.to)),
            },
            // nats-server: with `local_subject`, `subject` is the exporter's;
            // otherwise `subject` is local and the older `to` the exporter's.
            ExportKind::Service => match (some(&i.local_subject), some(&i.to)) {
                (Some(l), _) => (i.subject.clone(), Some(l), None),
                (None, Some(remote)) => (remote, Some(i.subject.clone()), None),
                (None, None) => (i.subject.clone(), None, None),
            },
        };
        let exporter = self.accounts.get(&i.account)?;
        let export = exporter.claims.nats.exports.iter().find(|e| {
            export_kind(&e.kind) == Some(kind)
                && crate::subject::filters_overlap(e.subject.as_bytes(), subject.as_bytes())
        })?;
        if export.token_req && !activation_ok(exporter, importer, i, &subject) {
            tracing::warn!(
                "account {importer}: import of {subject:?} from {}: activation token missing or not valid",
                i.account
            );
            return None;
        }
        Some(ImportConfig {
            kind,
            account: i.account.clone(),
            subject,
            to,
            prefix,
            share: i.share,
        })
    }
}

/// An activation token: issued by the exporter (or one of its signing
/// keys) to `importer`, current, for the imported subject.
fn activation_ok(
    exporter: &TrustedAccount,
    importer: &str,
    i: &ImportClaim,
    subject: &str,
) -> bool {
    let Ok(c) = decode::<ActivationNats>(&i.token) else {
        return false;
    };
    let issuer_ok = c.iss == exporter.claims.sub || exporter.signing_keys.contains_key(&c.iss);
    issuer_ok
        && c.sub == importer
        && c.check_time().is_ok()
        && crate::subject::filters_overlap(c.nats.subject.as_bytes(), subject.as_bytes())
}

fn export_kind(s: &str) -> Option<ExportKind> {
    match s {
        "stream" => Some(ExportKind::Stream),
        "service" => Some(ExportKind::Service),
        _ => None,
    }
}

fn export_config(e: &ExportClaim) -> Option<ExportConfig> {
    Some(ExportConfig {
        kind: export_kind(&e.kind)?,
        subject: e.subject.clone(),
        // Token-required exports are checked per import (activation).
        accounts: Vec::new(),
        response_type: (!e.response_type.is_empty()).then(|| e.response_type.to_ascii_lowercase()),
        response_threshold: (e.response_threshold > 0)
            .then(|| Duration::from_nanos(e.response_threshold as u64)),
    })
}

/// nats' `buildPermissionsFromJwt`: `None` when the claim sets nothing.
pub fn permissions_config(
    publish: &PermissionClaim,
    subscribe: &PermissionClaim,
    resp: Option<&ResponseClaim>,
) -> Option<PermissionsConfig> {
    let side = |p: &PermissionClaim| {
        (!p.allow.is_empty() || !p.deny.is_empty()).then(|| SubjectPermission {
            allow: (!p.allow.is_empty()).then(|| p.allow.clone()),
            deny: p.deny.clone(),
        })
    };
    let c = PermissionsConfig {
        publish: side(publish),
        subscribe: side(subscribe),
        allow_responses: resp.map(|r| ResponsePermission {
            // nats' validateResponsePermissions: 0 means the default,
            // negative means unlimited.
            max_msgs: match r.max {
                0 => Some(1),
                n if n < 0 => None,
                n => Some(n as u64),
            },
            expires: match r.ttl {
                0 => Some(DEFAULT_RESP_TTL),
                n if n < 0 => None,
                n => Some(Duration::from_nanos(n as u64)),
            },
        }),
    };
    (c != PermissionsConfig::default()).then_some(c)
}

impl UserLimitsClaim {
    /// Go's zero value: nothing set (0 and absent are the same to Go).
    pub fn is_empty(&self) -> bool {
        let unset = |v: Option<i64>| v.unwrap_or(0) == 0;
        let perm_unset = |p: &PermissionClaim| p.allow.is_empty() && p.deny.is_empty();
        perm_unset(&self.publish)
            && perm_unset(&self.subscribe)
            && self.resp.is_none()
            && unset(self.subs)
            && unset(self.data)
            && unset(self.payload)
            && !self.bearer_token
            && self.allowed_connection_types.is_empty()
            && self.unsupported().is_none()
    }

    /// A restriction this server cannot check (`src`, `times`).
    pub fn unsupported(&self) -> Option<&'static str> {
        let set = |v: &serde_json::Value| match v {
            serde_json::Value::Null => false,
            serde_json::Value::String(s) => !s.is_empty(),
            serde_json::Value::Array(a) => !a.is_empty(),
            _ => true,
        };
        if set(&self.src) {
            Some("src")
        } else if set(&self.times) {
            Some("times")
        } else {
            None
        }
    }

    pub fn permissions(&self) -> Option<PermissionsConfig> {
        permissions_config(&self.publish, &self.subscribe, self.resp.as_ref())
    }
}

/// nats' `ParseDecoratedJWT`: the JWT inside `-----BEGIN … JWT-----`
/// armor (creds and `.jwt` files), or the trimmed text.
pub fn undecorate(text: &str) -> &str {
    let mut lines = text.lines();
    while let Some(l) = lines.next() {
        if l.trim_start().starts_with("-----BEGIN") && l.contains("JWT") {
            if let Some(body) = lines.next() {
                return body.trim();
            }
        }
    }
    text.trim()
}

#[cfg(test)]
#[path = "tests/jwt.rs"]
pub(crate) mod tests;
