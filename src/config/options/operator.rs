//! Operator mode: `operator`, `resolver`, `resolver_preload`
//! (nats-server's `opts.go`: `operator(s)`, `resolver`, `resolver_preload`).

use std::path::{Path, PathBuf};

use super::{go_type, Cx};
use crate::auth::jwt;
use crate::config::{ConfigError, Entry, Map, Value, ValueKind};
use crate::options::{Options, Resolver};

/// `operator: <JWT | file>` or a list of them.
pub(super) fn operator(cx: &mut Cx, e: &Entry, o: &mut Options) {
    let items: Vec<&Value> = match &e.value.kind {
        ValueKind::String(_) => vec![&e.value],
        ValueKind::Array(a) => a.iter().collect(),
        _ => {
            return cx.push(e.key_pos.err(format!(
                "error parsing operators: unsupported type {}",
                go_type(&e.value)
            )))
        }
    };
    for v in items {
        let Some(s) = v.as_str() else {
            cx.push(v.err(format!(
                "error parsing operators: unsupported type in array {}",
                go_type(v)
            )));
            continue;
        };
        if let Some((token, system)) = cx.ok(operator_jwt(s, o.config_file.as_deref(), v)) {
            o.trusted_operators.push(token);
            // nats: the operator's system account unless the file sets one.
            if o.system_account.is_none() && !system.is_empty() {
                o.system_account = Some(system);
            }
        }
    }
}

/// nats' `readOperatorJWT`: a file (armored or bare), else the value
/// itself when it looks like a JWT (`eyJ…`).
fn operator_jwt(
    s: &str,
    config: Option<&Path>,
    at: &Value,
) -> Result<(String, String), ConfigError> {
    let text = match read_relative(s, config) {
        Ok(t) => t,
        Err(_) if s.trim_start().starts_with("eyJ") => s.to_string(),
        Err(err) => return Err(at.err(format!("error parsing operator JWT: open {s}: {err}"))),
    };
    let token = jwt::undecorate(&text).to_string();
    let claims = jwt::decode_operator(&token)
        .map_err(|err| at.err(format!("error parsing operator JWT: {err}")))?;
    Ok((token, claims.nats.system_account))
}

/// A path as given, else relative to the configuration file's folder.
fn read_relative(s: &str, config: Option<&Path>) -> std::io::Result<String> {
    match std::fs::read_to_string(s) {
        Ok(t) => Ok(t),
        Err(first) => {
            let dir = config
                .and_then(Path::parent)
                .filter(|_| Path::new(s).is_relative());
            match dir {
                Some(d) => std::fs::read_to_string(PathBuf::from(d).join(s)).map_err(|_| first),
                None => Err(first),
            }
        }
    }
}

/// `resolver: MEMORY`; the directory and URL resolvers are not built.
pub(super) fn resolver(cx: &mut Cx, e: &Entry, o: &mut Options) {
    let unsupported = |what: &str| {
        e.key_pos.err(format!(
            "resolver {what} is not supported, use resolver: MEMORY with resolver_preload"
        ))
    };
    match &e.value.kind {
        ValueKind::String(s) if s.eq_ignore_ascii_case("memory") => {
            o.resolver = Some(Resolver::Memory)
        }
        ValueKind::String(s) => cx.push(unsupported(&format!("{s:?}"))),
        ValueKind::Map(m) => {
            let kind = m
                .get_ci("type")
                .and_then(Value::as_str)
                .unwrap_or("full")
                .to_string();
            cx.push(unsupported(&format!("type {kind:?}")))
        }
        _ => cx.push(e.key_pos.err(format!(
            "error parsing resolver: unsupported type {}",
            go_type(&e.value)
        ))),
    }
}

/// `resolver_preload { <account public key>: <account JWT> }`.
pub(super) fn resolver_preload(cx: &mut Cx, e: &Entry, o: &mut Options) {
    let Some(m) = e.value.as_map() else {
        return cx.push(e.key_pos.err(format!(
            "preload should be a map of account_public_key:account_jwt, got {}",
            go_type(&e.value)
        )));
    };
    for f in m {
        let Some(token) = f.value.as_str() else {
            cx.push(f.key_pos.err(format!(
                "preload map value should be a string JWT, got {}",
                go_type(&f.value)
            )));
            continue;
        };
        let token = jwt::undecorate(token);
        match jwt::decode_account(token) {
            Ok(c) if c.sub == f.key => o.resolver_preload.push((f.key.clone(), token.into())),
            Ok(c) => cx.push(f.key_pos.err(format!(
                "preload account error for {:?}: JWT is for account {:?}",
                f.key, c.sub
            ))),
            Err(err) => cx.push(
                f.key_pos
                    .err(format!("preload account error for {:?}: {err}", f.key)),
            ),
        }
    }
}

/// nats' `validateTrustedOperators`, plus the chain of every preloaded
/// account to a trusted operator.
pub(super) fn validate(map: &Map, o: &Options) -> Result<(), ConfigError> {
    let at = |keys: &[&str]| {
        keys.iter()
            .find_map(|k| map.entry_ci(k))
            .map(|e| e.key_pos.clone())
    };
    // Without an operator nats-server ignores a resolver; so does this.
    if o.trusted_operators.is_empty() {
        return Ok(());
    }
    let Some(pos) = at(&["operator", "operators", "root_operator", "root_operators"]) else {
        return Ok(());
    };
    if o.resolver.is_none() {
        return Err(pos.err("operators require an account resolver to be present"));
    }
    if !o.users.is_empty() {
        return Err(pos.err("operators do not allow users to be configured directly"));
    }
    if !o.nkeys.is_empty() {
        return Err(pos.err("operators do not allow nkeys to be configured directly"));
    }
    if !o.accounts.is_empty() {
        return Err(pos.err("operators do not allow Accounts to be configured directly"));
    }
    jwt::Trust::from_options(o).map_err(|e| pos.err(e.to_string()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use nkeys::KeyPair;
    use serde_json::json;

    use crate::auth::jwt::tests::encode;
    use crate::config::parse_str;
    use crate::options::{Options, Resolver};

    fn apply(conf: &str) -> Result<Options, String> {
        let root = parse_str(conf, Path::new("op.conf")).map_err(|e| e.to_string())?;
        let mut o = Options::default();
        super::super::apply_value(&root, &mut o, &[])
            .map(|_| o)
            .map_err(|e| {
                e.iter()
                    .map(|e| e.to_string())
                    .collect::<Vec<_>>()
                    .join("; ")
            })
    }

    fn keys() -> (String, KeyPair, String) {
        let op = KeyPair::new_operator();
        let sys = KeyPair::new_account();
        let op_jwt = encode(
            json!({"sub": op.public_key(), "nats": {"type": "operator",
                   "system_account": sys.public_key()}}),
            &op,
        );
        let acc = KeyPair::new_account();
        let acc_jwt = encode(
            json!({"sub": acc.public_key(), "nats": {"type": "account"}}),
            &op,
        );
        (op_jwt, acc, acc_jwt)
    }

    #[test]
    fn operator_mode_options() {
        let (op, acc, acc_jwt) = keys();
        let pk = acc.public_key();
        let o = apply(&format!(
            "operator: \"{op}\"\nresolver: MEMORY\nresolver_preload {{ {pk}: \"{acc_jwt}\" }}\n"
        ))
        .expect("valid");
        assert_eq!(o.trusted_operators, vec![op.clone()]);
        assert_eq!(o.resolver, Some(Resolver::Memory));
        assert_eq!(o.resolver_preload, vec![(pk.clone(), acc_jwt.clone())]);
        // The operator names the system account unless the file does.
        assert!(o
            .system_account
            .as_deref()
            .is_some_and(|s| s.starts_with('A')));
        let o = apply(&format!(
            "system_account: {pk}\noperator: [\"{op}\"]\nresolver: memory\n"
        ))
        .expect("valid");
        assert_eq!(o.system_account.as_deref(), Some(pk.as_str()));
    }

    #[test]
    fn operator_mode_errors() {
        let (op, acc, acc_jwt) = keys();
        let pk = acc.public_key();
        let err = apply(&format!(
            "operator: \"{op}\"\nresolver: {{ type: full, dir: \"/tmp\" }}\n"
        ))
        .unwrap_err();
        assert!(
            err.starts_with("op.conf:2:1: resolver type \"full\" is not supported"),
            "{err}"
        );
        let err = apply(&format!("operator: \"{op}\"\n")).unwrap_err();
        assert!(
            err.contains("operators require an account resolver"),
            "{err}"
        );
        let err = apply(&format!(
            "operator: \"{op}\"\nresolver: MEMORY\nauthorization {{ users: [ {{user: a, password: b}} ] }}\n"
        ))
        .unwrap_err();
        assert!(err.contains("operators do not allow users"), "{err}");
        let err = apply(&format!(
            "operator: \"{op}\"\nresolver: MEMORY\nresolver_preload {{ {pk}: \"garbage\" }}\n"
        ))
        .unwrap_err();
        assert!(
            err.starts_with("op.conf:3:20: preload account error"),
            "{err}"
        );
        // An account signed by another operator.
        let (op2, _, _) = keys();
        let err = apply(&format!(
            "operator: \"{op2}\"\nresolver: MEMORY\nresolver_preload {{ {pk}: \"{acc_jwt}\" }}\n"
        ))
        .unwrap_err();
        assert!(err.contains("not signed by a trusted operator"), "{err}");
        let err = apply("operator: \"/nonexistent/op.jwt\"\nresolver: MEMORY\n").unwrap_err();
        assert!(err.contains("error parsing operator JWT"), "{err}");
    }
}
