//! `tls { }`, `websocket { }`, and the `cluster { }` block (kept as
//! written, with its listen address typed). `leafnodes { }` is typed in
//! `leafnodes.rs`.

use std::path::PathBuf;
use std::time::Duration;

use super::{bool_of, go_type, listen, port, seconds, str_of, strict_duration, string_list, Cx};
use crate::config::{ConfigError, Entry, ValueKind};
use crate::options::{ListenerConfig, Options, TlsConfig, WebsocketConfig};

fn tls_err(e: &Entry, m: &str) -> ConfigError {
    e.key_pos.err(format!("error parsing tls config, {m}"))
}

/// nats' `parseTLS`: first error wins, worded as nats words it.
pub(super) fn tls(e: &Entry) -> Result<TlsConfig, ConfigError> {
    let m = e.value.as_map().ok_or_else(|| {
        e.key_pos.err(format!(
            "error parsing tls config, expected map, got {}",
            go_type(&e.value)
        ))
    })?;
    let mut t = TlsConfig::default();
    for f in m {
        let key = f.key.to_ascii_lowercase();
        let path = |what: &str| {
            f.value
                .as_str()
                .map(PathBuf::from)
                .ok_or_else(|| tls_err(f, &format!("expected '{what}' to be filename")))
        };
        let flag = |what: &str| {
            f.value
                .as_bool()
                .ok_or_else(|| tls_err(f, &format!("expected '{what}' to be a boolean")))
        };
        match key.as_str() {
            "cert_file" => t.cert_file = Some(path("cert_file")?),
            "key_file" => t.key_file = Some(path("key_file")?),
            "ca_file" => t.ca_file = Some(path("ca_file")?),
            "insecure" => t.insecure = flag("insecure")?,
            "verify" => t.verify = flag("verify")?,
            "verify_and_map" => {
                t.verify_and_map = flag("verify_and_map")?;
                t.verify |= t.verify_and_map;
            }
            "verify_cert_and_check_known_urls" => {
                t.verify |= flag("verify_cert_and_check_known_urls")?
            }
            "handshake_first" | "first" | "immediate" => {
                (t.handshake_first, t.handshake_first_fallback) = handshake_first(f)?
            }
            "cipher_suites" | "curve_preferences" => {
                let list = string_list(f)?;
                if list.is_empty() {
                    return Err(tls_err(f, &format!("'{key}' cannot be empty")));
                }
                if key == "cipher_suites" {
                    t.cipher_suites = list;
                } else {
                    t.curve_preferences = list;
                }
            }
            "timeout" => {
                t.timeout = Some(match &f.value.kind {
                    ValueKind::String(_) => strict_duration(f)
                        .map_err(|m| tls_err(f, &format!("'timeout' {}", m.message())))?,
                    ValueKind::Int(_) | ValueKind::Float(_) => seconds(f)?,
                    _ => return Err(tls_err(f, "'timeout' wrong type")),
                })
            }
            "pinned_certs" => {
                let list = string_list(f).map_err(|_| {
                    tls_err(f, "expected 'pinned_certs' to be a list of hex-encoded sha256 of DER encoded SubjectPublicKeyInfo")
                })?;
                for c in &list {
                    if c.len() != 64 || !c.chars().all(|ch| ch.is_ascii_hexdigit()) {
                        return Err(tls_err(f, &format!("'pinned_certs' key {c} does not look like hex-encoded sha256 of DER encoded SubjectPublicKeyInfo")));
                    }
                }
                t.pinned_certs = list.into_iter().map(|c| c.to_ascii_lowercase()).collect();
            }
            "min_version" => {
                t.min_version = Some(
                    f.value
                        .as_str()
                        .ok_or_else(|| tls_err(f, "expected 'min_version' to be a string"))?
                        .to_string(),
                )
            }
            "connection_rate_limit"
            | "ocsp_peer"
            | "cert_store"
            | "cert_match"
            | "cert_match_by" => t.unsupported.push(key.clone()),
            _ => return Err(tls_err(f, &format!("unknown field [{:?}]", f.key))),
        }
    }
    Ok(t)
}

pub(super) fn websocket(cx: &mut Cx, e: &Entry, o: &mut Options) {
    let Some(m) = e.value.as_map() else {
        return cx.push(e.key_pos.err(format!(
            "Expected websocket to be a map, got {}",
            go_type(&e.value)
        )));
    };
    let mut w = WebsocketConfig::default();
    for f in m {
        match f.key.to_ascii_lowercase().as_str() {
            "listen" => {
                if let Some((h, p)) = cx.ok(listen(f)) {
                    if let Some(h) = h {
                        w.host = h;
                    }
                    w.port = Some(p);
                }
            }
            "port" => w.port = cx.ok(port(f)).or(w.port),
            "host" | "net" => w.host = cx.ok(str_of(f)).unwrap_or(w.host),
            "advertise" => w.advertise = cx.ok(str_of(f)),
            "no_tls" => w.no_tls = cx.ok(bool_of(f)).unwrap_or(w.no_tls),
            "tls" => w.tls = cx.ok(tls(f)),
            "same_origin" => w.same_origin = cx.ok(bool_of(f)).unwrap_or(false),
            "allowed_origins" | "allowed_origin" | "allow_origins" | "allow_origin" | "origins"
            | "origin" => w.allowed_origins = cx.ok(string_list(f)).unwrap_or_default(),
            "handshake_timeout" => {
                w.handshake_timeout = match &f.value.kind {
                    ValueKind::Int(n) => Some(std::time::Duration::from_millis(
                        u64::try_from(*n).unwrap_or(0).saturating_mul(1000),
                    )),
                    ValueKind::String(_) => cx.ok(strict_duration(f)),
                    _ => {
                        cx.push(f.key_pos.err(format!(
                            "error parsing handshake timeout: unsupported type {}",
                            go_type(&f.value)
                        )));
                        None
                    }
                }
            }
            // Permits permessage-deflate; it is not negotiated here, so
            // clients that ask get the uncompressed stream every websocket
            // client must accept (docs/security.md, finding 10).
            "compress" | "compression" => w.compression = cx.ok(bool_of(f)).unwrap_or(false),
            "authorization" | "authentication" => simple_auth(cx, f, &mut w),
            "jwt_cookie" => cx.unsupported(f),
            "no_auth_user" => w.no_auth_user = cx.ok(str_of(f)),
            "user_cookie" | "pass_cookie" | "token_cookie" | "headers" => cx.unsupported(f),
            _ => cx.unknown(f),
        }
    }
    o.websocket = Some(w);
}

/// nats' `handshake_first` (also `first`, `immediate`): a boolean, `true`/
/// `on`/`false`/`off`, `auto` (or `auto_fallback`: a 50ms fallback delay) or
/// a Go duration (that fallback delay): how long the server waits for the
/// client to start TLS before it sends INFO first after all.
fn handshake_first(f: &Entry) -> Result<(bool, Option<Duration>), ConfigError> {
    let s = match &f.value.kind {
        ValueKind::Bool(b) => return Ok((*b, None)),
        ValueKind::String(s) => s,
        _ => {
            return Err(f.key_pos.err(format!(
                "field {:?} should be a boolean or a string, got {}",
                f.key,
                go_type(&f.value)
            )))
        }
    };
    Ok(match s.to_ascii_lowercase().as_str() {
        "true" | "on" => (true, None),
        "false" | "off" => (false, None),
        "auto" | "auto_fallback" => (true, Some(HANDSHAKE_FIRST_FALLBACK)),
        _ => match crate::config::parse_go_duration_nanos(s) {
            // A zero or negative delay is no fallback, as in nats.
            Ok(n) if n > 0 => (true, Some(Duration::from_nanos(n as u64))),
            Ok(_) => (true, None),
            Err(_) => {
                return Err(f
                    .key_pos
                    .err(format!("field {:?}'s value {s:?} is invalid", f.key)))
            }
        },
    })
}

/// nats' `DEFAULT_TLS_HANDSHAKE_FIRST_FALLBACK_DELAY` (`handshake_first: auto`).
const HANDSHAKE_FIRST_FALLBACK: Duration = Duration::from_millis(50);

/// The `authorization` of websocket/mqtt blocks: user, password, token,
/// timeout (nats' `parseSimpleAuth`).
fn simple_auth(cx: &mut Cx, e: &Entry, w: &mut WebsocketConfig) {
    let Some(m) = e.value.as_map() else {
        return cx.push(super::type_err(e, "a map"));
    };
    for f in m {
        match f.key.to_ascii_lowercase().as_str() {
            "user" | "username" => w.username = cx.ok(str_of(f)),
            "pass" | "password" => w.password = cx.ok(str_of(f)).map(Into::into),
            "token" => w.token = cx.ok(str_of(f)).map(Into::into),
            "timeout" => w.auth_timeout = cx.ok(seconds(f)),
            _ => cx.unknown(f),
        }
    }
}

/// `cluster`: the listen address typed, the rest kept raw.
pub(super) fn listener(e: &Entry, what: &str) -> Result<ListenerConfig, ConfigError> {
    let m = e.value.as_map().ok_or_else(|| {
        e.key_pos.err(format!(
            "Expected map to define {what}, got {}",
            go_type(&e.value)
        ))
    })?;
    let mut l = ListenerConfig {
        name: None,
        host: None,
        port: None,
        tls: None,
        raw: e.value.clone(),
    };
    for f in m {
        match f.key.to_ascii_lowercase().as_str() {
            "name" => l.name = Some(str_of(f)?),
            "listen" => {
                let (h, p) = listen(f)?;
                l.host = h.or(l.host);
                l.port = Some(p);
            }
            "port" => l.port = Some(port(f)?),
            "host" | "net" => l.host = Some(str_of(f)?),
            "tls" => l.tls = Some(tls(f)?),
            _ => {}
        }
    }
    Ok(l)
}
