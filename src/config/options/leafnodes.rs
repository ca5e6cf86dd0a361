//! `leafnodes { }` (also `leaf { }`): nats-server's leaf node options, typed
//! (its `parseLeafNodes`, `parseLeafAuthorization`, `parseLeafUsers`,
//! `parseRemoteLeafNodes`, and the checks of `validateLeafNode`).
//!
//! What the reference accepts but this build does not do is refused at the
//! key (`cx.unsupported`): an operator must not believe that a link is
//! compressed, isolated or proxied when it is not. A boolean feature set to
//! `false` (the reference's default) and `compression: off` are accepted.

use std::path::PathBuf;

use super::{
    bool_of, duration, go_type, go_value, listen, port, str_of, type_err, warn_int_duration, Cx,
};
use crate::config::{ConfigError, Entry, Map, Value, ValueKind};
use crate::options::{
    redact_url, LeafAuth, LeafNodeOpts, LeafUrl, LeafUser, Options, Port, RemoteLeafOpts,
    RemoteTls, Sensitive, TlsConfig,
};

pub(super) fn leafnodes(cx: &mut Cx, e: &Entry, o: &mut Options) {
    let Some(m) = e.value.as_map() else {
        return cx.push(e.key_pos.err(format!(
            "Expected map to define a leafnode, got {}",
            go_type(&e.value)
        )));
    };
    let mut l = LeafNodeOpts::default();
    for f in m {
        match f.key.to_ascii_lowercase().as_str() {
            "listen" => {
                if let Some((h, p)) = cx.ok(listen(f)) {
                    if let Some(h) = h {
                        l.host = h;
                    }
                    l.port = listener_port(p);
                }
            }
            "port" => {
                if let Some(p) = cx.ok(port(f)) {
                    l.port = listener_port(p);
                }
            }
            "host" | "net" => l.host = cx.ok(str_of(f)).unwrap_or(l.host),
            "authorization" => authorization(cx, f, &mut l.auth),
            "remotes" => l.remotes = remotes(cx, f),
            "reconnect" | "reconnect_delay" | "reconnect_interval" => {
                warn_int_duration(cx, f);
                l.reconnect = cx.ok(duration(f)).unwrap_or(l.reconnect);
            }
            "tls" => l.tls = server_tls(cx, f),
            "leafnode_advertise" | "advertise" => l.advertise = cx.ok(str_of(f)),
            "no_advertise" => l.no_advertise = cx.ok(bool_of(f)).unwrap_or(false),
            "compression" => compression_off(cx, f),
            "isolate_leafnode_interest" | "isolate" => only_false(cx, f),
            // Leaf-specific timers and the peer version floor: not built
            // (the links use the server's own settings).
            "min_version" | "minimum_version" | "dial_timeout" | "write_deadline"
            | "write_timeout" | "ping_interval" | "ping_max" => cx.unsupported(f),
            _ => cx.unknown(f),
        }
    }
    o.leafnodes = Some(l);
}

/// nats-server listens for leafs only on a non-zero port.
fn listener_port(p: Port) -> Option<Port> {
    (p != Port::Fixed(0)).then_some(p)
}

/// A boolean feature this build does not have: `false` (the reference's
/// default) is accepted, anything else refused.
fn only_false(cx: &mut Cx, f: &Entry) {
    if !matches!(f.value.kind, ValueKind::Bool(false)) {
        cx.unsupported(f);
    }
}

/// `compression`: only off (`false`, `"off"`, `"disabled"`, `{mode: off}`).
fn compression_off(cx: &mut Cx, f: &Entry) {
    let off = |v: &Value| match &v.kind {
        ValueKind::Bool(b) => !b,
        ValueKind::String(s) => matches!(
            s.to_ascii_lowercase().as_str(),
            "off" | "disabled" | "false"
        ),
        _ => false,
    };
    let ok = match &f.value.kind {
        ValueKind::Bool(_) | ValueKind::String(_) => off(&f.value),
        ValueKind::Map(m) => {
            !m.is_empty()
                && m.iter()
                    .all(|x| x.key.eq_ignore_ascii_case("mode") && off(&x.value))
        }
        _ => {
            return cx.push(f.key_pos.err(format!(
                "field {:?} should be a boolean or a structure, got {}",
                f.key,
                go_type(&f.value)
            )))
        }
    };
    if !ok && !f.used_as_variable {
        cx.push(f.key_pos.err(format!(
            "{:?}: {} is not supported by this build of Broker Edge (only \"off\"): remove it",
            f.key,
            go_value(&f.value)
        )));
    }
}

/// TLS keys a leaf listener would refuse at start-up (`crate::tls::build`)
/// or that only make sense with routes: refused here, at their line.
const SERVER_TLS_REFUSED: &[&str] = &[
    "verify_and_map",
    "verify_cert_and_check_known_urls",
    "pinned_certs",
    "cipher_suites",
    "curve_preferences",
    "connection_rate_limit",
    "ocsp_peer",
    "cert_store",
    "cert_match",
    "cert_match_by",
];

/// The hub side's `tls { }`: the client listener's block, minus what the
/// listener cannot do.
fn server_tls(cx: &mut Cx, f: &Entry) -> Option<TlsConfig> {
    let t = cx.ok(super::listeners::tls(f))?;
    let mut refused = false;
    for k in f.value.as_map().into_iter().flat_map(Map::iter) {
        if SERVER_TLS_REFUSED.contains(&k.key.to_ascii_lowercase().as_str()) {
            cx.unsupported(k);
            refused = true;
        }
    }
    (!refused).then_some(t)
}

/// A remote's `tls { }`: the client side. The keys of [`RemoteTls`] only.
fn remote_tls(cx: &mut Cx, f: &Entry) -> Option<RemoteTls> {
    let t = cx.ok(super::listeners::tls(f))?;
    let mut refused = false;
    for k in f.value.as_map().into_iter().flat_map(Map::iter) {
        let built = matches!(
            k.key.to_ascii_lowercase().as_str(),
            "ca_file"
                | "cert_file"
                | "key_file"
                | "insecure"
                | "timeout"
                | "handshake_first"
                | "first"
                | "immediate"
        );
        if !built {
            cx.unsupported(k);
            refused = true;
        }
    }
    if t.cert_file.is_some() != t.key_file.is_some() {
        cx.push(f.key_pos.err(
            "error parsing tls config, a remote leafnode's cert_file and key_file go together",
        ));
        refused = true;
    }
    (!refused).then_some(RemoteTls {
        ca_file: t.ca_file,
        cert_file: t.cert_file,
        key_file: t.key_file,
        insecure: t.insecure,
        timeout: t.timeout,
        handshake_first: t.handshake_first,
    })
}

/// nats' `parseLeafAuthorization` and `validateLeafNodeAuthOptions`.
fn authorization(cx: &mut Cx, e: &Entry, a: &mut LeafAuth) {
    let Some(m) = e.value.as_map() else {
        return cx.push(type_err(e, "a map"));
    };
    for f in m {
        match f.key.to_ascii_lowercase().as_str() {
            "user" | "username" => a.user = cx.ok(str_of(f)),
            "pass" | "password" => a.password = cx.ok(str_of(f)).map(Sensitive::from),
            "account" => a.account = cx.ok(str_of(f)),
            "timeout" => {
                let t = auth_timeout(cx, f);
                a.timeout = cx.ok(t);
            }
            "users" => a.users = users(cx, f),
            // An nkey for the whole listener, and PROXY-protocol checks.
            "nkey" => cx.unsupported(f),
            "proxy_required" => only_false(cx, f),
            _ => cx.unknown(f),
        }
    }
    if a.users.is_empty() {
        return;
    }
    if a.user.is_some() {
        return cx.push(
            e.key_pos
                .err("can not have a single user/pass and a users array"),
        );
    }
    let mut seen = std::collections::HashSet::new();
    for u in &a.users {
        if !seen.insert(u.user.as_str()) {
            return cx.push(e.key_pos.err(format!(
                "duplicate user {:?} detected in leafnode authorization",
                u.user
            )));
        }
    }
}

/// Seconds (integer or float) or a Go duration string; over a minute is
/// a warning, as in nats.
fn auth_timeout(cx: &mut Cx, f: &Entry) -> Result<std::time::Duration, ConfigError> {
    let bad = |m: String| {
        f.key_pos
            .err(format!("error parsing leafnode authorization config, {m}"))
    };
    let d = match &f.value.kind {
        ValueKind::Int(_) | ValueKind::Float(_) => {
            let secs = f.value.as_float().unwrap_or_default();
            std::time::Duration::try_from_secs_f64(secs)
                .map_err(|_| bad(format!("'timeout' invalid value {secs}")))?
        }
        ValueKind::String(s) => {
            crate::config::parse_go_duration(s).map_err(|m| bad(format!("'timeout' {m}")))?
        }
        _ => return Err(bad("'timeout' wrong type".into())),
    };
    if d.as_secs_f64() > 60.0 {
        cx.warnings.push(f.key_pos.err(format!(
            "invalid use of field {:?}: timeout of {} ({:.6} seconds) is high, consider keeping it under 60 seconds. possibly caused by unquoted duration; use '1m' instead of 1m, for example",
            f.key,
            go_value(&f.value),
            d.as_secs_f64()
        )));
    }
    Ok(d)
}

/// nats' `parseLeafUsers`.
fn users(cx: &mut Cx, e: &Entry) -> Vec<LeafUser> {
    let Some(list) = e.value.as_array() else {
        cx.push(e.key_pos.err(format!(
            "Expected users field to be an array, got {}",
            go_value(&e.value)
        )));
        return Vec::new();
    };
    let mut out = Vec::new();
    for v in list {
        let Some(m) = v.as_map() else {
            cx.push(v.err(format!(
                "Expected user entry to be a map/struct, got {}",
                go_value(v)
            )));
            continue;
        };
        let mut user = None;
        let mut u = LeafUser {
            user: String::new(),
            password: None,
            account: None,
        };
        for f in m {
            match f.key.to_ascii_lowercase().as_str() {
                "user" | "username" => user = cx.ok(str_of(f)),
                "pass" | "password" => u.password = cx.ok(str_of(f)).map(Sensitive::from),
                "account" => u.account = cx.ok(str_of(f)),
                "proxy_required" => only_false(cx, f),
                _ => cx.unknown(f),
            }
        }
        match user {
            Some(name) => {
                u.user = name;
                out.push(u);
            }
            None => cx.push(v.err("leafnode authorization user entry needs a user")),
        }
    }
    out
}

/// nats' `parseRemoteLeafNodes`.
fn remotes(cx: &mut Cx, e: &Entry) -> Vec<RemoteLeafOpts> {
    let Some(list) = e.value.as_array() else {
        cx.push(e.key_pos.err(format!(
            "Expected remotes field to be an array, got {}",
            go_type(&e.value)
        )));
        return Vec::new();
    };
    let mut out: Vec<RemoteLeafOpts> = Vec::new();
    for v in list {
        let Some(m) = v.as_map() else {
            cx.push(v.err(format!(
                "Expected remote leafnode entry to be a map/struct, got {}",
                go_value(v)
            )));
            continue;
        };
        let Some(r) = remote(cx, v, m) else { continue };
        if out.iter().any(|o| same_remote(o, &r)) {
            cx.push(v.err(format!("duplicate remote {}", remote_name(&r))));
            continue;
        }
        out.push(r);
    }
    out
}

fn remote(cx: &mut Cx, at: &Value, m: &Map) -> Option<RemoteLeafOpts> {
    let mut r = RemoteLeafOpts::default();
    let errors = cx.errors.len();
    for f in m {
        match f.key.to_ascii_lowercase().as_str() {
            "url" | "urls" => urls(cx, f, &mut r.urls),
            "account" | "local" => r.account = cx.ok(str_of(f)),
            "creds" | "credentials" => {
                let Some(p) = cx.ok(str_of(f)) else { continue };
                if r.nkey.is_some() {
                    cx.push(
                        f.key_pos
                            .err("Remote leafnode can not have both creds and nkey defined"),
                    );
                    continue;
                }
                r.credentials = Some(expand_path(&p));
            }
            "nkey" | "seed" => {
                let Some(seed) = cx.ok(str_of(f)) else {
                    continue;
                };
                let user_seed = nkeys::KeyPair::from_seed(&seed)
                    .is_ok_and(|k| matches!(k.key_pair_type(), nkeys::KeyPairType::User));
                if !user_seed {
                    cx.push(
                        f.key_pos
                            .err("Remote leafnode nkey is not a valid user seed"),
                    );
                    continue;
                }
                if r.credentials.is_some() {
                    cx.push(
                        f.key_pos
                            .err("Remote leafnode can not have both creds and nkey defined"),
                    );
                    continue;
                }
                r.nkey = Some(Sensitive::new(seed));
            }
            "tls" => r.tls = remote_tls(cx, f),
            "hub" => r.hub = cx.ok(bool_of(f)).unwrap_or(false),
            "deny_imports" | "deny_import" => r.deny_imports = deny_subjects(cx, f),
            "deny_exports" | "deny_export" => r.deny_exports = deny_subjects(cx, f),
            "first_info_timeout" => {
                warn_int_duration(cx, f);
                r.first_info_timeout = cx.ok(duration(f));
            }
            "compression" => compression_off(cx, f),
            // Features of the reference's links not built here.
            "no_randomize"
            | "dont_randomize"
            | "ws_compress"
            | "ws_compression"
            | "websocket_compress"
            | "websocket_compression"
            | "ws_no_masking"
            | "websocket_no_masking"
            | "jetstream_cluster_migrate"
            | "js_cluster_migrate"
            | "isolate_leafnode_interest"
            | "isolate"
            | "request_isolation"
            | "disabled"
            | "ignore_discovered_servers" => only_false(cx, f),
            "dial_timeout" | "proxy" => cx.unsupported(f),
            _ => cx.unknown(f),
        }
    }
    if cx.errors.len() > errors {
        return None;
    }
    if r.urls.is_empty() {
        cx.push(at.err("remote leafnode needs a url (url or urls)"));
        return None;
    }
    Some(r)
}

/// `url`/`urls`: a string or a list; each a `nats://` or `tls://` URL.
/// A repeated URL is a warning and kept once, as in nats.
fn urls(cx: &mut Cx, f: &Entry, out: &mut Vec<String>) {
    let items: Vec<&Value> = match &f.value.kind {
        ValueKind::String(_) => vec![&f.value],
        ValueKind::Array(a) => a.iter().collect(),
        _ => {
            return cx.push(f.key_pos.err(format!(
                "Expected remote leafnode url to be an array or string, got {}",
                go_value(&f.value)
            )))
        }
    };
    for v in items {
        let at = if matches!(f.value.kind, ValueKind::String(_)) {
            &f.key_pos
        } else {
            &v.pos
        };
        let Some(s) = v.as_str() else {
            cx.push(at.err(format!(
                "error parsing {}: unsupported type in array {}",
                f.key,
                go_type(v)
            )));
            continue;
        };
        let s = s.trim().to_string();
        if let Err(m) = LeafUrl::parse(&s) {
            cx.push(at.err(m));
            continue;
        }
        if out.contains(&s) {
            cx.warnings.push(at.err(format!(
                "invalid use of field {:?}: Duplicate leafnode entry detected",
                redact_url(&s)
            )));
            continue;
        }
        out.push(s);
    }
}

/// `deny_imports`/`deny_exports`: a subject or a list (no queue groups).
fn deny_subjects(cx: &mut Cx, f: &Entry) -> Vec<String> {
    let list: Vec<String> = match &f.value.kind {
        ValueKind::String(s) => vec![s.clone()],
        ValueKind::Array(a) => {
            let mut out = Vec::new();
            for v in a {
                match v.as_str() {
                    Some(s) => out.push(s.to_string()),
                    None => {
                        cx.push(v.err("Subject in permissions array cannot be cast to string"));
                        return Vec::new();
                    }
                }
            }
            out
        }
        _ => {
            cx.push(f.key_pos.err(format!(
                "Expected subject permissions to be a subject, or array of subjects, got {}",
                go_type(&f.value)
            )));
            return Vec::new();
        }
    };
    for s in &list {
        if s.contains("{{") {
            cx.push(f.key_pos.err(format!(
                "{:?}: subject placeholders ({s:?}) are not supported by this build of Broker Edge: remove them",
                f.key
            )));
            return Vec::new();
        }
        if !crate::subject::is_valid_filter(s.as_bytes()) {
            cx.push(
                f.key_pos
                    .err(format!("subject {s:?} is not a valid subject")),
            );
            return Vec::new();
        }
    }
    list
}

/// Go's `os.ExpandEnv` then a leading `~` (nats' `expandPath`).
fn expand_path(p: &str) -> PathBuf {
    let mut out = String::new();
    let mut rest = p;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let (name, len) = if let Some(braced) = after.strip_prefix('{') {
            match braced.find('}') {
                Some(j) => (&braced[..j], j + 2),
                None => ("", 0),
            }
        } else {
            let n = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            (&after[..n], n)
        };
        if len == 0 {
            out.push('$');
            rest = after;
            continue;
        }
        out.push_str(&std::env::var(name).unwrap_or_default());
        rest = &after[len..];
    }
    out.push_str(rest);
    if let Some(tail) = out.strip_prefix('~') {
        if let Ok(home) = std::env::var("HOME") {
            return PathBuf::from(format!("{home}{tail}"));
        }
    }
    PathBuf::from(out)
}

/// nats' `RemoteLeafOpts.name()`: the URLs, the account and the
/// credentials say which remote it is.
fn same_remote(a: &RemoteLeafOpts, b: &RemoteLeafOpts) -> bool {
    a.urls == b.urls
        && a.account.as_deref().unwrap_or("$G") == b.account.as_deref().unwrap_or("$G")
        && a.credentials == b.credentials
        && a.nkey == b.nkey
}

/// nats' `safeName()`: passwords and seeds redacted.
fn remote_name(r: &RemoteLeafOpts) -> String {
    let urls: Vec<String> = r.urls.iter().map(|u| redact_url(u)).collect();
    let mut s = format!(
        "urls={urls:?}, account={:?}",
        r.account.as_deref().unwrap_or("$G")
    );
    if let Some(c) = &r.credentials {
        s.push_str(&format!(", credentials={:?}", c.display().to_string()));
    } else if r.nkey.is_some() {
        s.push_str(", nkey=\"[REDACTED]\"");
    }
    s
}

/// nats' `validateLeafNode` checks that need the whole file: the accounts
/// leafs bind to exist (or, in operator mode, are account public keys).
pub(super) fn validate(map: &Map, o: &Options) -> Result<(), ConfigError> {
    let Some(l) = &o.leafnodes else {
        return Ok(());
    };
    let Some(at) = map.entry_ci("leafnodes").or_else(|| map.entry_ci("leaf")) else {
        return Ok(());
    };
    let err = |m: String| Err(at.key_pos.err(m));
    let is_account_key = |k: &str| {
        k.starts_with('A')
            && nkeys::KeyPair::from_public_key(k)
                .is_ok_and(|p| matches!(p.key_pair_type(), nkeys::KeyPairType::Account))
    };
    if o.trusted_operators.is_empty() {
        let known = |name: &str| {
            name == "$G"
                || o.accounts.iter().any(|a| a.name == name)
                || (o.system_account.is_none() && name == "$SYS")
        };
        let check = |name: Option<&str>, what: &str| match name {
            Some(n) if !known(n) => Err(at.key_pos.err(format!(
                "cannot find local account {n:?} specified in leafnode {what}"
            ))),
            _ => Ok(()),
        };
        check(l.auth.account.as_deref(), "authorization")?;
        for u in &l.auth.users {
            check(u.account.as_deref(), "authorization")?;
        }
        for r in &l.remotes {
            check(r.account.as_deref(), "remote")?;
        }
    } else {
        if !l.auth.users.is_empty() {
            return err("operator mode does not allow specifying users in leafnode config".into());
        }
        if l.remotes
            .iter()
            .any(|r| !r.account.as_deref().is_some_and(is_account_key))
        {
            return err("operator mode requires account nkeys in remotes. Please add an `account` key to each remote in your `leafnodes` section, to assign it to an account. Each account value should be a 56 character public key, starting with the letter 'A'".into());
        }
        if l.port.is_some()
            && l.auth
                .account
                .as_deref()
                .is_some_and(|a| !is_account_key(a))
        {
            return err("operator mode and non account nkeys are incompatible".into());
        }
    }
    Ok(())
}
