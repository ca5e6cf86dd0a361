use base64::Engine as _;
use nkeys::KeyPair;
use serde_json::{json, Value};

use super::*;
use crate::auth::{AuthError, Authenticator};
use crate::protocol::info::Connect;

fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

/// Sign `claims` (iss set to the signer) the way nats-io/jwt encodes.
pub(crate) fn encode(mut claims: Value, signer: &KeyPair) -> String {
    claims["iss"] = json!(signer.public_key());
    claims["iat"] = json!(now_secs());
    let header = b64(br#"{"typ":"JWT","alg":"ed25519-nkey"}"#);
    let body = b64(claims.to_string().as_bytes());
    let input = format!("{header}.{body}");
    let sig = signer.sign(input.as_bytes()).expect("sign");
    format!("{input}.{}", b64(&sig))
}

struct Chain {
    op: KeyPair,
    op_signing: KeyPair,
    acc: KeyPair,
    acc_signing: KeyPair,
    user: KeyPair,
}

impl Chain {
    fn new() -> Chain {
        Chain {
            op: KeyPair::new_operator(),
            op_signing: KeyPair::new_operator(),
            acc: KeyPair::new_account(),
            acc_signing: KeyPair::new_account(),
            user: KeyPair::new_user(),
        }
    }

    fn operator(&self) -> String {
        encode(
            json!({"sub": self.op.public_key(), "name": "O",
                   "nats": {"type": "operator", "version": 2,
                            "signing_keys": [self.op_signing.public_key()]}}),
            &self.op,
        )
    }

    fn account(&self, signer: &KeyPair, extra: Value) -> String {
        let mut nats = json!({"type": "account", "version": 2,
                              "signing_keys": [self.acc_signing.public_key()]});
        merge(&mut nats, extra);
        encode(
            json!({"sub": self.acc.public_key(), "name": "A", "nats": nats}),
            signer,
        )
    }

    fn user(&self, signer: &KeyPair, extra: Value, exp: Option<i64>) -> String {
        let mut nats = json!({"type": "user", "version": 2});
        merge(&mut nats, extra);
        let mut c = json!({"sub": self.user.public_key(), "name": "U", "nats": nats});
        if let Some(e) = exp {
            c["exp"] = json!(e);
        }
        encode(c, signer)
    }

    fn options(&self, account_jwt: String) -> Options {
        Options {
            trusted_operators: vec![self.operator()],
            resolver: Some(crate::options::Resolver::Memory),
            resolver_preload: vec![(self.acc.public_key(), account_jwt)],
            ..Options::default()
        }
    }

    fn trust(&self, account_jwt: String) -> Trust {
        Trust::from_options(&self.options(account_jwt))
            .expect("trust")
            .expect("operator mode")
    }
}

fn merge(into: &mut Value, extra: Value) {
    if let (Some(a), Value::Object(b)) = (into.as_object_mut(), extra) {
        a.extend(b);
    }
}

#[test]
fn decodes_a_good_chain() {
    let ch = Chain::new();
    let t = ch.trust(ch.account(&ch.op, json!({})));
    let v = t
        .verify_user(&ch.user(&ch.acc, json!({"pub": {"allow": ["a.>"]}}), None))
        .expect("valid user");
    assert_eq!(v.user, ch.user.public_key());
    assert_eq!(v.account, ch.acc.public_key());
    let p = v.limits.permissions().expect("permissions");
    assert_eq!(
        p.publish.and_then(|p| p.allow),
        Some(vec!["a.>".to_string()])
    );
    assert!(p.subscribe.is_none());
}

#[test]
fn bad_signature_is_refused() {
    let ch = Chain::new();
    let good = ch.operator();
    let (head, _) = good.rsplit_once('.').unwrap();
    let forged = format!("{head}.{}", b64(&[7u8; 64]));
    assert_eq!(
        decode_operator(&forged).unwrap_err(),
        JwtError::BadSignature
    );
    // Claims changed after signing.
    let parts: Vec<&str> = good.split('.').collect();
    let other = b64(
        json!({"sub": ch.op.public_key(), "iss": ch.op.public_key(), "name": "X",
               "nats": {"type": "operator"}})
        .to_string()
        .as_bytes(),
    );
    let tampered = format!("{}.{other}.{}", parts[0], parts[2]);
    assert_eq!(
        decode_operator(&tampered).unwrap_err(),
        JwtError::BadSignature
    );
    assert_eq!(decode_operator("a.b").unwrap_err(), JwtError::Malformed);
    assert_eq!(
        decode_operator("not a jwt").unwrap_err(),
        JwtError::Malformed
    );
}

#[test]
fn wrong_issuers_are_refused() {
    let ch = Chain::new();
    // Account signed by some other operator.
    let stranger = KeyPair::new_operator();
    let opts = ch.options(ch.account(&stranger, json!({})));
    assert!(matches!(
        Trust::from_options(&opts),
        Err(JwtError::UntrustedAccount(_))
    ));
    // User signed by an account key that is not the account.
    let t = ch.trust(ch.account(&ch.op, json!({})));
    let other_acc = KeyPair::new_account();
    assert!(matches!(
        t.verify_user(&ch.user(&other_acc, json!({}), None)),
        Err(JwtError::UnknownAccount(_))
    ));
    // Claims the account through issuer_account, signed by a key that is
    // not one of its signing keys.
    let claim = json!({"issuer_account": ch.acc.public_key()});
    assert!(matches!(
        t.verify_user(&ch.user(&other_acc, claim, None)),
        Err(JwtError::UntrustedUser { .. })
    ));
    // An operator JWT where a user one is expected.
    assert!(matches!(
        t.verify_user(&ch.operator()),
        Err(JwtError::WrongType { .. })
    ));
}

#[test]
fn expiry_and_not_before() {
    let ch = Chain::new();
    let t = ch.trust(ch.account(&ch.op, json!({})));
    let past = now_secs() - 10;
    assert_eq!(
        t.verify_user(&ch.user(&ch.acc, json!({}), Some(past)))
            .unwrap_err(),
        JwtError::Expired
    );
    assert!(t
        .verify_user(&ch.user(&ch.acc, json!({}), Some(now_secs() + 3600)))
        .is_ok());
    let mut c = json!({"sub": ch.user.public_key(), "nbf": now_secs() + 3600,
                       "nats": {"type": "user"}});
    c["name"] = json!("later");
    assert_eq!(
        t.verify_user(&encode(c, &ch.acc)).unwrap_err(),
        JwtError::NotYetValid
    );
    // An expired account takes its users with it.
    let mut acc = json!({"sub": ch.acc.public_key(), "exp": past, "nats": {"type": "account"}});
    acc["name"] = json!("A");
    let t = ch.trust(encode(acc, &ch.op));
    assert_eq!(
        t.verify_user(&ch.user(&ch.acc, json!({}), None))
            .unwrap_err(),
        JwtError::Expired
    );
}

#[test]
fn signing_keys_at_both_levels() {
    let ch = Chain::new();
    // Account signed by the operator's signing key; user by the
    // account's signing key (with issuer_account).
    let t = ch.trust(ch.account(&ch.op_signing, json!({})));
    let claim = json!({"issuer_account": ch.acc.public_key()});
    let v = t
        .verify_user(&ch.user(&ch.acc_signing, claim, None))
        .expect("signing key user");
    assert_eq!(v.account, ch.acc.public_key());
    // A scoped signing key imposes its template.
    let scoped = KeyPair::new_account();
    let extra = json!({"signing_keys": [
        {"kind": "user_scope", "key": scoped.public_key(), "role": "r",
         "template": {"sub": {"allow": ["only.this"]}}}]});
    let t = ch.trust(ch.account(&ch.op, extra));
    let claim = json!({"issuer_account": ch.acc.public_key(), "pub": {"allow": [">"]}});
    assert!(matches!(
        t.verify_user(&ch.user(&scoped, claim, None)),
        Err(JwtError::ScopedUserWithLimits(_))
    ));
    let claim = json!({"issuer_account": ch.acc.public_key()});
    let v = t
        .verify_user(&ch.user(&scoped, claim, None))
        .expect("scoped user");
    let p = v.limits.permissions().expect("template permissions");
    assert!(p.publish.is_none());
    assert_eq!(
        p.subscribe.and_then(|s| s.allow),
        Some(vec!["only.this".to_string()])
    );
}

#[test]
fn accounts_map_exports_imports_and_limits() {
    let ch = Chain::new();
    let other = KeyPair::new_account();
    let exporter = encode(
        json!({"sub": other.public_key(), "name": "E",
               "nats": {"type": "account",
                        "exports": [{"subject": "ev.>", "type": "stream"},
                                    {"subject": "priv.>", "type": "stream", "token_req": true}]}}),
        &ch.op,
    );
    let importer = ch.account(
        &ch.op,
        json!({"imports": [
            {"subject": "ev.>", "account": other.public_key(), "type": "stream", "local_subject": "in.>"},
            {"subject": "priv.>", "account": other.public_key(), "type": "stream"},
            {"subject": "missing", "account": other.public_key(), "type": "service"}],
               "limits": {"conn": 5, "subs": -1, "payload": 1024}}),
    );
    let mut opts = ch.options(importer);
    opts.resolver_preload.push((other.public_key(), exporter));
    let t = Trust::from_options(&opts).unwrap().unwrap();
    let configs = t.account_configs();
    let imp = configs
        .iter()
        .find(|a| a.name == ch.acc.public_key())
        .unwrap();
    // Only the public stream import survives.
    assert_eq!(imp.imports.len(), 1);
    assert_eq!(imp.imports[0].to.as_deref(), Some("in.>"));
    assert_eq!(imp.limits.max_connections, Some(5));
    assert_eq!(imp.limits.max_subscriptions, None);
    assert_eq!(imp.limits.max_payload, Some(1024));
    let accounts = crate::account::Accounts::new(&opts).expect("accounts");
    let (ie, ii) = (
        accounts.id(&other.public_key()).expect("known account"),
        accounts.id(&ch.acc.public_key()).expect("known account"),
    );
    assert_eq!(
        accounts.stream_targets(ie, "ev.x"),
        vec![(ii, "in.x".to_string())]
    );
}

#[test]
fn activation_tokens_service_imports_and_revocations() {
    let ch = Chain::new();
    let exp_key = KeyPair::new_account();
    let exporter = encode(
        json!({"sub": exp_key.public_key(), "name": "E",
               "nats": {"type": "account",
                        "exports": [{"subject": "priv.>", "type": "stream", "token_req": true},
                                    {"subject": "svc.time", "type": "service"}]}}),
        &ch.op,
    );
    let activation = encode(
        json!({"sub": ch.acc.public_key(), "name": "act",
               "nats": {"type": "activation", "subject": "priv.>", "kind": "stream"}}),
        &exp_key,
    );
    let revoked_user = KeyPair::new_user();
    let importer = ch.account(
        &ch.op,
        json!({"imports": [
            {"subject": "priv.>", "account": exp_key.public_key(), "type": "stream",
             "token": activation},
            {"subject": "time", "to": "svc.time", "account": exp_key.public_key(),
             "type": "service"}],
               "revocations": {revoked_user.public_key(): now_secs() + 60}}),
    );
    let mut opts = ch.options(importer);
    opts.resolver_preload.push((exp_key.public_key(), exporter));
    let t = Trust::from_options(&opts).unwrap().unwrap();
    let accounts = crate::account::Accounts::new(&opts).expect("accounts");
    let (ie, ii) = (
        accounts.id(&exp_key.public_key()).expect("known account"),
        accounts.id(&ch.acc.public_key()).expect("known account"),
    );
    assert_eq!(
        accounts.stream_targets(ie, "priv.x"),
        vec![(ii, "priv.x".to_string())]
    );
    // v1-style service import: `subject` local, `to` the exporter's.
    let svc = accounts.service_target(ii, "time").expect("service import");
    assert_eq!((svc.exporter, svc.subject.as_str()), (ie, "svc.time"));
    let user = encode(
        json!({"sub": revoked_user.public_key(), "nats": {"type": "user"}}),
        &ch.acc,
    );
    assert!(matches!(t.verify_user(&user), Err(JwtError::Revoked(_))));
}

fn connect(jwt: Option<String>, sig: Option<String>) -> Connect {
    let mut c: Connect = serde_json::from_str("{}").expect("connect");
    c.jwt = jwt;
    c.sig = sig;
    c
}

#[test]
fn authenticator_checks_the_nonce_signature() {
    let ch = Chain::new();
    let opts = ch.options(ch.account(
        &ch.op,
        json!({"default_permissions": {"sub": {"deny": ["secret.>"]}}}),
    ));
    let auth = Authenticator::new(&opts).expect("authenticator");
    assert!(auth.required() && auth.nonce_required() && auth.operator_mode());
    let nonce = b"abcdefgh";
    let user = ch.user(&ch.acc, json!({}), None);
    let sig = b64(&ch.user.sign(nonce).unwrap());
    let who = auth
        .authenticate(&connect(Some(user.clone()), Some(sig)), Some(nonce))
        .expect("authenticated");
    assert_eq!(who.account, ch.acc.public_key());
    // Account default permissions apply to a user without its own.
    let p = who.permissions.expect("defaults");
    assert!(!p.can_subscribe(b"secret.x", None));
    assert!(p.can_subscribe(b"public", None));
    // Signed by someone else, or not at all.
    let wrong = b64(&KeyPair::new_user().sign(nonce).unwrap());
    assert!(matches!(
        auth.authenticate(&connect(Some(user.clone()), Some(wrong)), Some(nonce)),
        Err(AuthError::BadSignature(_))
    ));
    assert!(matches!(
        auth.authenticate(&connect(Some(user), None), Some(nonce)),
        Err(AuthError::MissingSignature(_))
    ));
    // Restrictions that cannot be checked here refuse the user.
    let cidr = ch.user(&ch.acc, json!({"src": ["10.0.0.0/8"]}), None);
    let sig = b64(&ch.user.sign(nonce).unwrap());
    assert!(matches!(
        auth.authenticate(&connect(Some(cidr), Some(sig)), Some(nonce)),
        Err(AuthError::Jwt(JwtError::Unsupported(_, "src")))
    ));
    assert_eq!(
        auth.authenticate(&connect(None, None), Some(nonce))
            .unwrap_err(),
        AuthError::MissingCredentials
    );
    // A bearer token needs no signature.
    let bearer = ch.user(&ch.acc, json!({"bearer_token": true}), None);
    assert!(auth
        .authenticate(&connect(Some(bearer), None), Some(nonce))
        .is_ok());
}

#[test]
fn undecorates_armored_jwts() {
    let text =
        "-----BEGIN NATS OPERATOR JWT-----\neyJabc.def.ghi\n------END NATS OPERATOR JWT------\n";
    assert_eq!(undecorate(text), "eyJabc.def.ghi");
    assert_eq!(undecorate("  eyJx.y.z \n"), "eyJx.y.z");
}

/// Sign `claims` the way nats-io/jwt v1 (older `nsc`) did: header
/// `{"typ":"jwt","alg":"ed25519"}`, `type` at the top level of the claims,
/// the signature over the claims part alone.
pub(crate) fn encode_v1(mut claims: Value, signer: &KeyPair) -> String {
    claims["iss"] = json!(signer.public_key());
    claims["iat"] = json!(now_secs());
    let header = b64(br#"{"typ":"jwt","alg":"ed25519"}"#);
    let body = b64(claims.to_string().as_bytes());
    let sig = signer.sign(body.as_bytes()).expect("sign");
    format!("{header}.{body}.{}", b64(&sig))
}

/// A v1 chain: operator (with a signing key), account signed by that
/// key (with its own signing key, an export, limits), users signed by
/// the account and by its signing key (`issuer_account` at the top).
#[test]
fn version_1_chain_is_accepted() {
    let ch = Chain::new();
    let op = encode_v1(
        json!({"sub": ch.op.public_key(), "name": "O", "type": "operator",
               "nats": {"signing_keys": [ch.op_signing.public_key()]}}),
        &ch.op,
    );
    let c = decode_operator(&op).expect("v1 operator");
    assert_eq!(c.nats.kind, "operator");
    assert_eq!(c.nats.signing_keys, vec![ch.op_signing.public_key()]);
    let acc = encode_v1(
        json!({"sub": ch.acc.public_key(), "name": "A", "type": "account",
               "nats": {"signing_keys": [ch.acc_signing.public_key()],
                        "exports": [{"name": "ev", "subject": "ev.>", "type": "stream"}],
                        "limits": {"subs": -1, "conn": 3, "leaf": -1, "imports": -1,
                                   "exports": -1, "data": -1, "payload": 512,
                                   "wildcards": true, "disk_storage": 1000000}}}),
        &ch.op_signing,
    );
    let opts = Options {
        trusted_operators: vec![op],
        resolver: Some(crate::options::Resolver::Memory),
        resolver_preload: vec![(ch.acc.public_key(), acc)],
        ..Options::default()
    };
    let t = Trust::from_options(&opts)
        .expect("trust")
        .expect("operator mode");
    let configs = t.account_configs();
    assert_eq!(configs[0].exports.len(), 1);
    assert_eq!(configs[0].limits.max_connections, Some(3));
    assert_eq!(configs[0].limits.max_payload, Some(512));
    // v1 accounts have no JetStream (jwt's migration zeroes its limits).
    assert!(matches!(configs[0].jetstream, AccountJetStream::Disabled));

    let user = encode_v1(
        json!({"sub": ch.user.public_key(), "name": "U", "type": "user",
               "nats": {"pub": {"allow": ["a.>"]}, "sub": {}, "payload": 100}}),
        &ch.acc,
    );
    let v = t.verify_user(&user).expect("v1 user");
    assert_eq!(v.account, ch.acc.public_key());
    assert_eq!(v.limits.payload, Some(100));
    // Absent limits are unlimited in v1 (jwt's `loadUser`).
    assert_eq!(v.limits.subs, Some(-1));
    assert_eq!(
        v.limits
            .permissions()
            .and_then(|p| p.publish)
            .and_then(|p| p.allow),
        Some(vec!["a.>".to_string()])
    );
    // Signed by the account's signing key, `issuer_account` at the top.
    let user = encode_v1(
        json!({"sub": ch.user.public_key(), "type": "user",
               "issuer_account": ch.acc.public_key(), "nats": {}}),
        &ch.acc_signing,
    );
    assert_eq!(
        t.verify_user(&user).expect("signing key").account,
        ch.acc.public_key()
    );
    // Without `nats` at all.
    let user = encode_v1(
        json!({"sub": ch.user.public_key(), "type": "user"}),
        &ch.acc,
    );
    assert!(t.verify_user(&user).is_ok());
    // A v1 user under a v2 chain is fine too (nats-server mixes them).
    let t2 = ch.trust(ch.account(&ch.op, json!({})));
    assert!(t2.verify_user(&user).is_ok());
}

#[test]
fn version_1_signatures_and_types_are_checked() {
    let ch = Chain::new();
    let claims = json!({"sub": ch.op.public_key(), "name": "O", "type": "operator"});
    // v1 claims signed the v2 way (over header.claims) do not verify.
    let mut c = claims.clone();
    c["iss"] = json!(ch.op.public_key());
    let header = b64(br#"{"typ":"jwt","alg":"ed25519"}"#);
    let input = format!("{header}.{}", b64(c.to_string().as_bytes()));
    let sig = ch.op.sign(input.as_bytes()).unwrap();
    assert_eq!(
        decode_operator(&format!("{input}.{}", b64(&sig))).unwrap_err(),
        JwtError::BadSignature
    );
    // Nor does a v2 token whose signature covers only the claims.
    let v2 = json!({"sub": ch.op.public_key(), "iss": ch.op.public_key(),
                    "nats": {"type": "operator", "version": 2}});
    let body = b64(v2.to_string().as_bytes());
    let sig = ch.op.sign(body.as_bytes()).unwrap();
    let header = b64(br#"{"typ":"JWT","alg":"ed25519-nkey"}"#);
    assert_eq!(
        decode_operator(&format!("{header}.{body}.{}", b64(&sig))).unwrap_err(),
        JwtError::BadSignature
    );
    // Forged v1 signature.
    let good = encode_v1(claims.clone(), &ch.op);
    let (head, _) = good.rsplit_once('.').unwrap();
    assert_eq!(
        decode_operator(&format!("{head}.{}", b64(&[1u8; 64]))).unwrap_err(),
        JwtError::BadSignature
    );
    // The top-level type decides the kind.
    let acc = encode_v1(
        json!({"sub": ch.acc.public_key(), "type": "account"}),
        &ch.op,
    );
    assert!(matches!(
        decode_operator(&acc),
        Err(JwtError::WrongType { .. })
    ));
    assert!(decode_account(&acc).is_ok());
    // A version newer than this code knows.
    let v3 = encode(
        json!({"sub": ch.op.public_key(), "nats": {"type": "operator", "version": 3}}),
        &ch.op,
    );
    assert_eq!(decode_operator(&v3).unwrap_err(), JwtError::NewerVersion(3));
    // Too large.
    let huge = "a".repeat(MAX_TOKEN_SIZE + 1);
    assert!(matches!(decode_operator(&huge), Err(JwtError::TooLarge(_))));
}

/// A v1 activation token: `issuer_account` at the top, the import type
/// in `nats.type`.
#[test]
fn version_1_activation_token() {
    let ch = Chain::new();
    let exp_key = KeyPair::new_account();
    let exp_signing = KeyPair::new_account();
    let exporter = encode_v1(
        json!({"sub": exp_key.public_key(), "name": "E", "type": "account",
               "nats": {"signing_keys": [exp_signing.public_key()],
                        "exports": [{"subject": "priv.>", "type": "stream", "token_req": true}]}}),
        &ch.op,
    );
    let activation = encode_v1(
        json!({"sub": ch.acc.public_key(), "type": "activation",
               "issuer_account": exp_key.public_key(),
               "nats": {"subject": "priv.>", "type": "stream"}}),
        &exp_signing,
    );
    let c: Claims<ActivationNats> = decode(&activation).expect("v1 activation");
    assert_eq!(c.nats.kind, "activation");
    assert_eq!(c.nats.issuer_account, exp_key.public_key());
    let importer = ch.account(
        &ch.op,
        json!({"imports": [{"subject": "priv.>", "account": exp_key.public_key(),
                            "type": "stream", "token": activation}]}),
    );
    let mut opts = ch.options(importer);
    opts.resolver_preload.push((exp_key.public_key(), exporter));
    let t = Trust::from_options(&opts).unwrap().unwrap();
    let configs = t.account_configs();
    let imp = configs
        .iter()
        .find(|a| a.name == ch.acc.public_key())
        .expect("importer");
    // The token-required import survives: its v1 activation verified.
    assert_eq!(imp.imports.len(), 1, "{:?}", imp.imports);
    assert_eq!(imp.imports[0].account, exp_key.public_key());
    assert_eq!(imp.imports[0].subject, "priv.>");
}
