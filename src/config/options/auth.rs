//! `authorization { }`, user lists, permissions and `accounts { }`, with
//! nats-server's checks and wording (`parseAuthorization`, `parseUsers`,
//! `parseUserPermissions`, `parseAccounts`).

use std::collections::HashSet;
use std::time::Duration;

use super::{bool_of, go_type, go_value, int_of, seconds, str_of, string_list, Cx};
use crate::config::{ConfigError, Entry, Pos, Value, ValueKind};
use crate::options::{
    AccountConfig, AccountJetStream, AccountLimits, ExportConfig, ExportKind, ImportConfig,
    NkeyUser, Options, PermissionsConfig, ResponsePermission, SubjectPermission, User,
};

/// nats' global account; not a name an `accounts` block may use.
const GLOBAL_ACCOUNT: &str = "$G";

#[derive(Default)]
struct Users {
    users: Vec<User>,
    nkeys: Vec<NkeyUser>,
}

pub(super) fn authorization(cx: &mut Cx, e: &Entry, o: &mut Options) {
    let Some(m) = e.value.as_map() else {
        return cx.push(super::type_err(e, "a map"));
    };
    let (mut user, mut pass, mut token) = (None, None, None);
    let mut listed: Option<Users> = None;
    let mut default_perms = None;
    for f in m {
        match f.key.to_ascii_lowercase().as_str() {
            "user" | "username" => user = cx.ok(str_of(f)),
            "pass" | "password" => pass = cx.ok(str_of(f)),
            "token" => token = cx.ok(str_of(f)),
            // nats: a value of another type means the default, one second.
            "timeout" => {
                o.auth_timeout = Some(seconds(f).unwrap_or(Duration::from_secs(1)));
            }
            "users" => listed = Some(users(cx, f, None).unwrap_or_default()),
            "default_permission" | "default_permissions" | "permissions" => {
                default_perms = permissions(cx, f)
            }
            _ => cx.unknown(f),
        }
    }
    cx.file_user = user.is_some();
    cx.file_token = token.is_some();
    o.username = user.clone();
    o.password = pass.clone().map(Into::into);
    o.auth_token = token.clone().map(Into::into);
    if (user.is_some() || pass.is_some()) && token.is_some() {
        return cx.push(e.key_pos.err("Cannot have a user/pass and token"));
    }
    let mut names = known_names(o);
    if listed.is_some() || !names.is_empty() {
        if user.is_some() {
            return cx.push(
                e.key_pos
                    .err("Can not have a single user/pass and a users array"),
            );
        }
        if token.is_some() {
            return cx.push(e.key_pos.err("Can not have a token and a users array"));
        }
    }
    let Some(mut listed) = listed else { return };
    apply_default_permissions(&mut listed, &default_perms);
    for u in listed.users {
        if !names.insert(u.username.clone()) {
            return cx.push(
                e.key_pos
                    .err(format!("Duplicate user {:?} detected", u.username)),
            );
        }
        o.users.push(u);
    }
    for u in listed.nkeys {
        if !names.insert(u.nkey.clone()) {
            return cx.push(
                e.key_pos
                    .err(format!("Duplicate nkey {:?} detected", u.nkey)),
            );
        }
        o.nkeys.push(u);
    }
}

fn known_names(o: &Options) -> HashSet<String> {
    let users = o.users.iter().map(|u| u.username.clone());
    users
        .chain(o.nkeys.iter().map(|u| u.nkey.clone()))
        .collect()
}

fn apply_default_permissions(u: &mut Users, p: &Option<PermissionsConfig>) {
    let Some(p) = p else { return };
    for user in &mut u.users {
        user.permissions.get_or_insert_with(|| p.clone());
    }
    for user in &mut u.nkeys {
        user.permissions.get_or_insert_with(|| p.clone());
    }
}

/// nats' `parseUsers`. `Err` is a structural error that voids the list.
fn users(cx: &mut Cx, e: &Entry, account: Option<&str>) -> Result<Users, ()> {
    let Some(list) = e.value.as_array() else {
        cx.push(e.key_pos.err(format!(
            "Expected users field to be an array, got {}",
            go_value(&e.value)
        )));
        return Err(());
    };
    let mut out = Users::default();
    for item in list {
        let Some(m) = item.as_map() else {
            cx.push(item.err(format!(
                "Expected user entry to be a map/struct, got {}",
                go_value(item)
            )));
            continue;
        };
        let (mut name, mut pass, mut nkey, mut perms, mut types) = (None, None, None, None, vec![]);
        let mut last = item.pos.clone();
        for f in m {
            last = f.key_pos.clone();
            match f.key.to_ascii_lowercase().as_str() {
                "nkey" => nkey = cx.ok(str_of(f)),
                "user" | "username" => name = cx.ok(str_of(f)),
                "pass" | "password" => pass = cx.ok(str_of(f)),
                "permission" | "permissions" | "authorization" => perms = permissions(cx, f),
                "allowed_connection_types" | "connection_types" | "clients" => {
                    types = cx.ok(connection_types(f)).unwrap_or_default()
                }
                _ => cx.unknown(f),
            }
        }
        let account = account.map(str::to_string);
        match (nkey, name) {
            (None, None) => {
                cx.push(last.err("User entry requires a user"));
                return Err(());
            }
            (Some(nkey), name) => {
                if !is_public_user_nkey(&nkey) {
                    cx.push(last.err("Not a valid public nkey for a user"));
                    return Err(());
                }
                if name.is_some() || pass.is_some() {
                    cx.push(last.err("Nkey users do not take usernames or passwords"));
                    return Err(());
                }
                out.nkeys.push(NkeyUser {
                    nkey,
                    permissions: perms,
                    account,
                    allowed_connection_types: types,
                });
            }
            (None, Some(username)) => out.users.push(User {
                username,
                password: pass.unwrap_or_default().into(),
                permissions: perms,
                account,
                allowed_connection_types: types,
            }),
        }
    }
    Ok(out)
}

pub(crate) fn is_public_user_nkey(s: &str) -> bool {
    s.starts_with('U')
        && nkeys::KeyPair::from_public_key(s)
            .map(|k| matches!(k.key_pair_type(), nkeys::KeyPairType::User))
            .unwrap_or(false)
}

fn connection_types(e: &Entry) -> Result<Vec<String>, ConfigError> {
    const KNOWN: &[&str] = &[
        "STANDARD",
        "WEBSOCKET",
        "LEAFNODE",
        "LEAFNODE_WS",
        "MQTT",
        "MQTT_WS",
        "IN_PROCESS",
    ];
    let list = string_list(e)?;
    list.into_iter()
        .map(|t| {
            let up = t.to_ascii_uppercase();
            if KNOWN.contains(&up.as_str()) {
                Ok(up)
            } else {
                Err(e.key_pos.err(format!("unknown connection type {t:?}")))
            }
        })
        .collect()
}

/// nats' `parseUserPermissions`. Errors are recorded; `None` when the
/// value is not a map.
fn permissions(cx: &mut Cx, e: &Entry) -> Option<PermissionsConfig> {
    let Some(m) = e.value.as_map() else {
        cx.push(e.key_pos.err(format!(
            "Expected permissions to be a map/struct, got {}",
            go_value(&e.value)
        )));
        return None;
    };
    let mut p = PermissionsConfig::default();
    for f in m {
        match f.key.to_ascii_lowercase().as_str() {
            "pub" | "publish" | "import" => p.publish = subject_permission(cx, f),
            "sub" | "subscribe" | "export" => p.subscribe = subject_permission(cx, f),
            "publish_allow_responses" | "allow_responses" => {
                p.allow_responses = match &f.value.kind {
                    ValueKind::Bool(true) => Some(ResponsePermission::default()),
                    ValueKind::Bool(false) => None,
                    _ => allow_responses(cx, f),
                }
            }
            _ if f.used_as_variable => {}
            _ => cx.push(
                f.key_pos
                    .err(format!("Unknown field {:?} parsing permissions", f.key)),
            ),
        }
    }
    Some(p)
}

/// A subject list, or `{allow, deny}`.
fn subject_permission(cx: &mut Cx, e: &Entry) -> Option<SubjectPermission> {
    let Some(m) = e.value.as_map() else {
        let allow = cx.ok(perm_subjects(&e.value, &e.key_pos))?;
        return Some(SubjectPermission {
            allow: none_if_empty(allow),
            deny: Vec::new(),
        });
    };
    if m.is_empty() {
        return None;
    }
    let mut p = SubjectPermission::default();
    for f in m {
        match f.key.to_ascii_lowercase().as_str() {
            "allow" => {
                if let Some(s) = cx.ok(perm_subjects(&f.value, &f.key_pos)) {
                    p.allow = none_if_empty(s);
                }
            }
            "deny" => {
                if let Some(s) = cx.ok(perm_subjects(&f.value, &f.key_pos)) {
                    p.deny = s;
                }
            }
            _ if f.used_as_variable => {}
            _ => cx.push(f.key_pos.err(format!(
                "Unknown field name {:?} parsing subject permissions, only 'allow' or 'deny' are permitted",
                f.key
            ))),
        }
    }
    Some(p)
}

/// nats reads an empty list as no list at all (everything allowed).
fn none_if_empty(v: Vec<String>) -> Option<Vec<String>> {
    if v.is_empty() {
        None
    } else {
        Some(v)
    }
}

/// nats' `parsePermSubjects` + `checkPermSubjectArray`: a subject, or a
/// list; each a valid subject, or `"subject queue"`.
fn perm_subjects(v: &Value, at: &Pos) -> Result<Vec<String>, ConfigError> {
    let list = match &v.kind {
        ValueKind::String(s) => vec![s.clone()],
        ValueKind::Array(a) => a
            .iter()
            .map(|i| {
                i.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| i.err("Subject in permissions array cannot be cast to string"))
            })
            .collect::<Result<_, _>>()?,
        _ => {
            return Err(at.err(format!(
                "Expected subject permissions to be a subject, or array of subjects, got {}",
                go_type(v)
            )))
        }
    };
    for s in &list {
        if !crate::subject::is_valid_filter(s.as_bytes()) {
            let parts: Vec<&str> = s.split_whitespace().collect();
            if parts.len() != 2 {
                return Err(at.err(format!("subject {s:?} is not a valid subject")));
            }
            if !crate::subject::is_valid_filter(parts[0].as_bytes()) {
                return Err(at.err(format!("subject {:?} is not a valid subject", parts[0])));
            }
        }
    }
    Ok(list)
}

/// `allow_responses { max, expires }`; zero means the default, negative
/// means unlimited.
fn allow_responses(cx: &mut Cx, e: &Entry) -> Option<ResponsePermission> {
    let Some(m) = e.value.as_map() else {
        cx.push(
            e.key_pos
                .err("error parsing response permissions, expected a boolean or a map"),
        );
        return None;
    };
    let mut rp = ResponsePermission::default();
    for f in m {
        match f.key.to_ascii_lowercase().as_str() {
            "max" | "max_msgs" | "max_messages" | "max_responses" => {
                let n = cx.ok(int_of(f))?;
                if n != 0 {
                    rp.max_msgs = u64::try_from(n).ok();
                }
            }
            "expires" | "expiration" | "ttl" => {
                let Some(s) = f.value.as_str() else {
                    cx.push(
                        f.key_pos
                            .err("error parsing expires, not a duration string"),
                    );
                    return None;
                };
                match crate::config::parse_go_duration_nanos(s) {
                    Ok(0) => {}
                    Ok(n) if n < 0 => rp.expires = None,
                    Ok(n) => rp.expires = Some(Duration::from_nanos(n.unsigned_abs())),
                    Err(m) => {
                        cx.push(f.key_pos.err(format!("error parsing expires: {m}")));
                        return None;
                    }
                }
            }
            _ if f.used_as_variable => {}
            _ => cx.push(
                f.key_pos
                    .err(format!("Unknown field {:?} parsing permissions", f.key)),
            ),
        }
    }
    Some(rp)
}

/// `accounts`: a list of names, or a map of account blocks.
pub(super) fn accounts(cx: &mut Cx, e: &Entry, o: &mut Options) {
    match &e.value.kind {
        ValueKind::Array(list) => {
            let mut seen = HashSet::new();
            for v in list {
                let Some(name) = v.as_str() else {
                    cx.push(v.err(format!("expected an account name, got {}", v.type_name())));
                    continue;
                };
                if name == GLOBAL_ACCOUNT {
                    cx.push(v.err(format!("{name:?} is a Reserved Account")));
                } else if !seen.insert(name) {
                    cx.push(v.err(format!("Duplicate Account Entry: {name}")));
                } else {
                    o.accounts.push(AccountConfig {
                        name: name.to_string(),
                        ..Default::default()
                    });
                }
            }
        }
        ValueKind::Map(m) => {
            let before = cx.errors.len();
            for a in m {
                if a.used_as_variable {
                    continue;
                }
                account(cx, a, o);
            }
            if cx.errors.len() == before {
                check_references(cx, e, o);
            }
        }
        _ => cx.push(super::type_err(e, "a map or an array")),
    }
}

fn account(cx: &mut Cx, a: &Entry, o: &mut Options) {
    let Some(m) = a.value.as_map() else {
        return cx.push(a.key_pos.err("Expected map entries for accounts"));
    };
    if a.key == GLOBAL_ACCOUNT {
        return cx.push(a.key_pos.err(format!("{:?} is a Reserved Account", a.key)));
    }
    let mut acc = AccountConfig {
        name: a.key.clone(),
        ..Default::default()
    };
    let mut listed = Users::default();
    let mut users_at = a.key_pos.clone();
    for f in m {
        match f.key.to_ascii_lowercase().as_str() {
            "nkey" => match f.value.as_str() {
                Some(k) if k.starts_with('A') && nkeys::KeyPair::from_public_key(k).is_ok() => {
                    acc.nkey = Some(k.to_string())
                }
                _ => cx.push(f.key_pos.err(format!(
                    "Not a valid public nkey for an account: {:?}",
                    go_value(&f.value)
                ))),
            },
            "users" => {
                users_at = f.key_pos.clone();
                listed = users(cx, f, Some(&a.key)).unwrap_or_default();
            }
            "jetstream" => acc.jetstream = cx.ok(account_jetstream(f)).unwrap_or_default(),
            "exports" => acc.exports = list_of(cx, f, "Exports", export),
            "imports" => acc.imports = list_of(cx, f, "Imports", import),
            "default_permissions" => acc.default_permissions = permissions(cx, f),
            "limits" => acc.limits = cx.ok(limits(f)).unwrap_or_default(),
            "mappings" | "maps" => cx.unsupported(f),
            _ => cx.unknown(f),
        }
    }
    if !listed.users.is_empty() || !listed.nkeys.is_empty() {
        if cx.file_user {
            cx.push(users_at.err("Can not have a single user/pass and accounts"));
            return o.accounts.push(acc);
        }
        if cx.file_token {
            cx.push(users_at.err("Can not have a token and accounts"));
            return o.accounts.push(acc);
        }
    }
    apply_default_permissions(&mut listed, &acc.default_permissions);
    let mut names = known_names(o);
    for u in listed.nkeys {
        if names.insert(u.nkey.clone()) {
            o.nkeys.push(u);
        } else {
            cx.push(users_at.err(format!("Duplicate nkey {:?} detected", u.nkey)));
        }
    }
    for u in listed.users {
        if names.insert(u.username.clone()) {
            o.users.push(u);
        } else {
            cx.push(users_at.err(format!("Duplicate user {:?} detected", u.username)));
        }
    }
    o.accounts.push(acc);
}

/// Imports and exports name accounts that must exist.
fn check_references(cx: &mut Cx, e: &Entry, o: &Options) {
    let known: HashSet<&str> = o.accounts.iter().map(|a| a.name.as_str()).collect();
    for acc in &o.accounts {
        for x in &acc.exports {
            for an in x.accounts.iter().filter(|an| !known.contains(an.as_str())) {
                let kind = kind_name(x.kind);
                cx.push(
                    e.key_pos
                        .err(format!("{an:?} account not defined for {kind} export")),
                );
            }
        }
        for i in acc
            .imports
            .iter()
            .filter(|i| !known.contains(i.account.as_str()))
        {
            let kind = kind_name(i.kind);
            cx.push(e.key_pos.err(format!(
                "{:?} account not defined for {kind} import",
                i.account
            )));
        }
    }
}

fn kind_name(k: ExportKind) -> &'static str {
    match k {
        ExportKind::Stream => "stream",
        ExportKind::Service => "service",
    }
}

fn list_of<T>(
    cx: &mut Cx,
    e: &Entry,
    what: &str,
    item: fn(&mut Cx, &Value) -> Option<T>,
) -> Vec<T> {
    match e.value.as_array() {
        Some(list) => list.iter().filter_map(|v| item(cx, v)).collect(),
        None => {
            cx.push(e.key_pos.err(format!(
                "{what} should be an array, got {}",
                go_type(&e.value)
            )));
            Vec::new()
        }
    }
}

/// `stream` or `service`, the entry keys that say what an export or import
/// is.
fn kind_of(key: &str) -> ExportKind {
    if key == "stream" {
        ExportKind::Stream
    } else {
        ExportKind::Service
    }
}

fn export(cx: &mut Cx, v: &Value) -> Option<ExportConfig> {
    let Some(m) = v.as_map() else {
        cx.push(v.err(format!(
            "Export Items should be a map with type entry, got {}",
            go_type(v)
        )));
        return None;
    };
    let mut x = ExportConfig {
        kind: ExportKind::Stream,
        subject: String::new(),
        accounts: Vec::new(),
        response_type: None,
        response_threshold: None,
    };
    let mut seen_kind = false;
    for f in m {
        match f.key.to_ascii_lowercase().as_str() {
            k @ ("stream" | "service") => {
                let kind = kind_of(k);
                if seen_kind && x.kind != kind {
                    cx.push(f.key_pos.err(format!(
                        "Detected {k} {:?} but already saw a {}",
                        go_value(&f.value),
                        kind_name(x.kind)
                    )));
                    return None;
                }
                let Some(s) = f.value.as_str() else {
                    cx.push(f.key_pos.err(format!(
                        "Expected {k} name to be string, got {}",
                        go_type(&f.value)
                    )));
                    return None;
                };
                seen_kind = true;
                x.kind = kind;
                x.subject = s.to_string();
            }
            "accounts" => x.accounts = cx.ok(string_list(f))?,
            "response" | "response_type" => {
                let s = cx.ok(str_of(f))?.to_ascii_lowercase();
                let t = match s.as_str() {
                    "single" | "singleton" => "single",
                    "stream" => "stream",
                    "chunk" | "chunked" => "chunked",
                    _ => {
                        cx.push(f.key_pos.err(format!("Unknown response type: {s:?}")));
                        return None;
                    }
                };
                x.response_type = Some(t.to_string());
            }
            "threshold" | "response_threshold" | "response_max_time" | "response_time" => {
                x.response_threshold = Some(cx.ok(super::strict_duration(f))?)
            }
            // Descriptive only; message tracing is not built, so nothing
            // is traced across either way.
            "description" | "info_url" | "allow_trace" => {}
            "latency" | "account_token_position" => cx.unsupported(f),
            _ => cx.unknown(f),
        }
    }
    if !seen_kind {
        return None;
    }
    if x.kind == ExportKind::Stream && (x.response_type.is_some() || x.response_threshold.is_some())
    {
        cx.push(v.err("Detected response directive on non-service"));
        return None;
    }
    Some(x)
}

fn import(cx: &mut Cx, v: &Value) -> Option<ImportConfig> {
    let Some(m) = v.as_map() else {
        cx.push(v.err(format!(
            "Import Items should be a map with type entry, got {}",
            go_type(v)
        )));
        return None;
    };
    let mut i = ImportConfig {
        kind: ExportKind::Stream,
        account: String::new(),
        subject: String::new(),
        to: None,
        prefix: None,
        share: false,
    };
    let mut seen_kind = false;
    for f in m {
        match f.key.to_ascii_lowercase().as_str() {
            k @ ("stream" | "service") => {
                let kind = kind_of(k);
                if seen_kind && i.kind != kind {
                    let other = kind_name(i.kind);
                    cx.push(
                        f.key_pos
                            .err(format!("Detected {k} but already saw a {other}")),
                    );
                    return None;
                }
                let Some(am) = f.value.as_map() else {
                    let title = if k == "stream" { "Stream" } else { "Service" };
                    cx.push(f.key_pos.err(format!(
                        "{title} entry should be an account map, got {}",
                        go_type(&f.value)
                    )));
                    return None;
                };
                for g in am {
                    match g.key.to_ascii_lowercase().as_str() {
                        "account" => i.account = cx.ok(str_of(g))?,
                        "subject" => i.subject = cx.ok(str_of(g))?,
                        _ => cx.unknown(g),
                    }
                }
                if i.account.is_empty() || i.subject.is_empty() {
                    cx.push(f.key_pos.err("Expect an account name and a subject"));
                    return None;
                }
                seen_kind = true;
                i.kind = kind;
            }
            "prefix" => i.prefix = Some(cx.ok(str_of(f))?),
            "to" => i.to = Some(cx.ok(str_of(f))?),
            "share" => i.share = cx.ok(bool_of(f))?,
            "allow_trace" => {}
            _ => cx.unknown(f),
        }
    }
    if i.kind == ExportKind::Stream && i.prefix.is_some() && i.to.is_some() {
        cx.push(v.err("Stream import can not have a 'prefix' and a 'to' property"));
        return None;
    }
    seen_kind.then_some(i)
}

fn account_jetstream(e: &Entry) -> Result<AccountJetStream, ConfigError> {
    match &e.value.kind {
        ValueKind::Bool(true) => Ok(AccountJetStream::Enabled),
        ValueKind::Bool(false) => Ok(AccountJetStream::Disabled),
        ValueKind::String(s) => match s.to_ascii_lowercase().as_str() {
            "enabled" | "enable" => Ok(AccountJetStream::Enabled),
            "disabled" | "disable" => Ok(AccountJetStream::Disabled),
            _ => Err(e.key_pos.err(format!(
                "Expected 'enabled' or 'disabled' for string value, got '{s}'"
            ))),
        },
        ValueKind::Map(m) => {
            let (mut mem, mut store, mut streams, mut consumers) = (None, None, None, None);
            for f in m {
                let slot = match f.key.to_ascii_lowercase().as_str() {
                    "max_memory" | "max_mem" | "mem" | "memory" => &mut mem,
                    "max_store" | "max_file" | "max_disk" | "store" | "disk" => &mut store,
                    "max_streams" | "streams" => &mut streams,
                    "max_consumers" | "consumers" => &mut consumers,
                    _ => continue,
                };
                let n = int_of(f)?;
                *slot = (n >= 0).then_some(n);
            }
            Ok(AccountJetStream::Limits {
                max_memory: mem,
                max_store: store,
                max_streams: streams,
                max_consumers: consumers,
            })
        }
        _ => Err(e.key_pos.err(format!(
            "Expected map, bool or string to define JetStream, got {}",
            go_type(&e.value)
        ))),
    }
}

fn limits(e: &Entry) -> Result<AccountLimits, ConfigError> {
    let m = e.value.as_map().ok_or_else(|| {
        e.key_pos.err(format!(
            "Expected account limits to be a map/struct, got {}",
            go_value(&e.value)
        ))
    })?;
    let mut l = AccountLimits::default();
    for f in m {
        let slot = match f.key.to_ascii_lowercase().as_str() {
            "max_connections" | "max_conn" => &mut l.max_connections,
            "max_subscriptions" | "max_subs" => &mut l.max_subscriptions,
            "max_payload" | "max_pay" => &mut l.max_payload,
            "max_leafnodes" | "max_leafs" => &mut l.max_leafnodes,
            _ if f.used_as_variable => continue,
            _ => {
                return Err(f
                    .key_pos
                    .err(format!("Unknown field {:?} parsing account limits", f.key)))
            }
        };
        *slot = Some(int_of(f)?);
    }
    Ok(l)
}
