//! Operator mode (decentralised JWT auth): `operator`, `resolver: MEMORY`,
//! `resolver_preload`; users come with a user JWT and a signed nonce
//! (creds files). The keys and JWTs are made here with `nkeys`. Runs
//! against the reference too (`BROKER_EDGE_BIN=/usr/sbin/nats-server`).

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use common::{sync, within, Raw, Server};
use futures::StreamExt;
use nkeys::KeyPair;
use serde_json::{json, Value};

fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A NATS JWT: `claims` with `iss`/`iat`/`jti` filled in, signed by `signer`.
fn encode(mut claims: Value, signer: &KeyPair) -> String {
    claims["iss"] = json!(signer.public_key());
    claims["iat"] = json!(now());
    claims["jti"] = json!(b64(&rand::random::<[u8; 16]>()));
    let header = b64(br#"{"typ":"JWT","alg":"ed25519-nkey"}"#);
    let body = b64(claims.to_string().as_bytes());
    let input = format!("{header}.{body}");
    let sig = signer.sign(input.as_bytes()).unwrap();
    format!("{input}.{}", b64(&sig))
}

fn operator_jwt(op: &KeyPair) -> String {
    encode(
        json!({"sub": op.public_key(), "name": "OP",
               "nats": {"type": "operator", "version": 2}}),
        op,
    )
}

fn account_jwt(op: &KeyPair, acc: &KeyPair, name: &str, nats: Value) -> String {
    let mut n = json!({"type": "account", "version": 2,
                       "limits": {"subs": -1, "data": -1, "payload": -1, "imports": -1,
                                  "exports": -1, "wildcards": true, "conn": -1, "leaf": -1}});
    if let (Some(a), Value::Object(b)) = (n.as_object_mut(), nats) {
        a.extend(b);
    }
    encode(
        json!({"sub": acc.public_key(), "name": name, "nats": n}),
        op,
    )
}

fn user_jwt(acc: &KeyPair, user: &KeyPair, nats: Value, exp: Option<i64>) -> String {
    let mut n = json!({"type": "user", "version": 2,
                       "subs": -1, "data": -1, "payload": -1});
    if let (Some(a), Value::Object(b)) = (n.as_object_mut(), nats) {
        a.extend(b);
    }
    let mut c = json!({"sub": user.public_key(), "name": "user", "nats": n});
    if let Some(e) = exp {
        c["exp"] = json!(e);
    }
    encode(c, acc)
}

fn creds(jwt: &str, user: &KeyPair) -> String {
    format!(
        "-----BEGIN NATS USER JWT-----\n{jwt}\n------END NATS USER JWT------\n\n\
         -----BEGIN USER NKEY SEED-----\n{}\n------END USER NKEY SEED------\n",
        user.seed().unwrap()
    )
}

/// An operator, two accounts (A exports `events.>`, B imports it) and
/// the server config that trusts them.
struct Setup {
    a: KeyPair,
    b: KeyPair,
    conf: String,
}

fn setup() -> Setup {
    let op = KeyPair::new_operator();
    let a = KeyPair::new_account();
    let b = KeyPair::new_account();
    let a_jwt = account_jwt(
        &op,
        &a,
        "A",
        json!({"exports": [{"name": "events", "subject": "events.>", "type": "stream"}]}),
    );
    let b_jwt = account_jwt(
        &op,
        &b,
        "B",
        json!({"imports": [{"name": "events", "subject": "events.>",
                            "account": a.public_key(), "type": "stream"}]}),
    );
    let conf = format!(
        "operator: \"{}\"\nresolver: MEMORY\nresolver_preload {{\n  {}: \"{a_jwt}\"\n  {}: \"{b_jwt}\"\n}}\n",
        operator_jwt(&op),
        a.public_key(),
        b.public_key(),
    );
    Setup { a, b, conf }
}

async fn client(s: &Server, jwt: &str, user: &KeyPair) -> async_nats::Client {
    let opts = async_nats::ConnectOptions::with_credentials(&creds(jwt, user)).unwrap();
    s.client_with(opts).await
}

/// A raw connection that sends CONNECT with `jwt`, signing the INFO
/// nonce with `signer`.
async fn raw_connect(s: &Server, jwt: &str, signer: &KeyPair) -> Raw {
    let mut r = s.raw().await;
    let nonce = r.info["nonce"].as_str().expect("INFO carries a nonce");
    let sig = b64(&signer.sign(nonce.as_bytes()).unwrap());
    let connect = json!({"jwt": jwt, "sig": sig, "verbose": false, "pedantic": false,
                         "protocol": 1, "headers": true});
    r.send(&format!("CONNECT {connect}\r\nPING\r\n")).await;
    r
}

async fn expect_auth_violation(mut r: Raw) {
    assert_eq!(
        r.next().await.as_deref(),
        Some("-ERR 'Authorization Violation'")
    );
    r.expect_closed(Duration::from_secs(5)).await;
}

async fn next(sub: &mut async_nats::Subscriber, what: &str) -> async_nats::Message {
    within(what, sub.next())
        .await
        .unwrap_or_else(|| panic!("{what}: subscription ended"))
}

#[tokio::test]
async fn valid_user_connects_and_pub_sub_works() {
    let st = setup();
    let s = Server::start_with_config(&st.conf, &[]);
    let r = s.raw().await;
    assert_eq!(r.info["auth_required"], json!(true));
    assert!(r.info["nonce"].as_str().is_some_and(|n| !n.is_empty()));
    let user = KeyPair::new_user();
    let c = client(&s, &user_jwt(&st.a, &user, json!({}), None), &user).await;
    let mut sub = c.subscribe("greet.>").await.unwrap();
    sync(&c).await;
    c.publish("greet.joe", "hello".into()).await.unwrap();
    let m = next(&mut sub, "own message").await;
    assert_eq!(m.subject.as_str(), "greet.joe");
    assert_eq!(&m.payload[..], b"hello");
    // A user whose JWT expires later is fine, and the raw handshake too.
    let user2 = KeyPair::new_user();
    let jwt = user_jwt(&st.a, &user2, json!({}), Some(now() + 3600));
    let mut r = raw_connect(&s, &jwt, &user2).await;
    assert_eq!(r.next().await.as_deref(), Some("PONG"));
}

#[tokio::test]
async fn unknown_account_expired_jwt_and_bad_signature_are_rejected() {
    let st = setup();
    let s = Server::start_with_config(&st.conf, &[]);
    let user = KeyPair::new_user();
    // Signed by an account the server does not know.
    let stranger = KeyPair::new_account();
    let jwt = user_jwt(&stranger, &user, json!({}), None);
    expect_auth_violation(raw_connect(&s, &jwt, &user).await).await;
    // Expired.
    let jwt = user_jwt(&st.a, &user, json!({}), Some(now() - 60));
    expect_auth_violation(raw_connect(&s, &jwt, &user).await).await;
    // Valid JWT, nonce signed by some other key.
    let jwt = user_jwt(&st.a, &user, json!({}), None);
    expect_auth_violation(raw_connect(&s, &jwt, &KeyPair::new_user()).await).await;
    // No JWT at all.
    let mut r = s.raw().await;
    r.send("CONNECT {\"verbose\":false}\r\nPING\r\n").await;
    expect_auth_violation(r).await;
    // async-nats reports the refusal.
    let jwt = user_jwt(&st.a, &user, json!({}), Some(now() - 60));
    let opts = async_nats::ConnectOptions::with_credentials(&creds(&jwt, &user)).unwrap();
    let res = tokio::time::timeout(Duration::from_secs(10), opts.connect(s.url()))
        .await
        .expect("connect attempt timed out");
    assert!(res.is_err(), "an expired user must not connect");
}

#[tokio::test]
async fn user_permissions_from_the_jwt_are_enforced() {
    let st = setup();
    let s = Server::start_with_config(&st.conf, &[]);
    let user = KeyPair::new_user();
    let perms = json!({"pub": {"allow": ["allowed.>"]},
                       "sub": {"allow": ["allowed.>"], "deny": ["allowed.secret"]}});
    let jwt = user_jwt(&st.a, &user, perms, None);
    let mut r = raw_connect(&s, &jwt, &user).await;
    assert_eq!(r.next().await.as_deref(), Some("PONG"));
    r.send("PUB x 2\r\nhi\r\nPING\r\n").await;
    assert_eq!(
        r.next().await.as_deref(),
        Some("-ERR 'Permissions Violation for Publish to \"x\"'")
    );
    assert_eq!(r.next().await.as_deref(), Some("PONG"));
    r.send("SUB other 1\r\nPING\r\n").await;
    assert_eq!(
        r.next().await.as_deref(),
        Some("-ERR 'Permissions Violation for Subscription to \"other\"'")
    );
    assert_eq!(r.next().await.as_deref(), Some("PONG"));
    r.send("SUB allowed.secret 2\r\nPING\r\n").await;
    assert_eq!(
        r.next().await.as_deref(),
        Some("-ERR 'Permissions Violation for Subscription to \"allowed.secret\"'")
    );
    assert_eq!(r.next().await.as_deref(), Some("PONG"));
    // What is allowed works on the same connection.
    r.send("SUB allowed.x 3\r\nPUB allowed.x 2\r\nok\r\nPING\r\n")
        .await;
    assert_eq!(r.next().await.as_deref(), Some("MSG allowed.x 3 2"));
    assert_eq!(r.next().await.as_deref(), Some("ok"));
    assert_eq!(r.next().await.as_deref(), Some("PONG"));
}

#[tokio::test]
async fn accounts_are_isolated() {
    let st = setup();
    let s = Server::start_with_config(&st.conf, &[]);
    let (ua, ub) = (KeyPair::new_user(), KeyPair::new_user());
    let a = client(&s, &user_jwt(&st.a, &ua, json!({}), None), &ua).await;
    let b = client(&s, &user_jwt(&st.b, &ub, json!({}), None), &ub).await;
    let mut a_all = a.subscribe("orders.>").await.unwrap();
    let mut b_all = b.subscribe("orders.>").await.unwrap();
    sync(&a).await;
    sync(&b).await;
    b.publish("orders.b", "from b".into()).await.unwrap();
    a.publish("orders.a", "from a".into()).await.unwrap();
    assert_eq!(
        next(&mut a_all, "A's own").await.subject.as_str(),
        "orders.a"
    );
    assert_eq!(
        next(&mut b_all, "B's own").await.subject.as_str(),
        "orders.b"
    );
    sync(&a).await;
    sync(&b).await;
    assert!(
        tokio::time::timeout(Duration::from_millis(300), a_all.next())
            .await
            .is_err()
    );
    assert!(
        tokio::time::timeout(Duration::from_millis(300), b_all.next())
            .await
            .is_err()
    );
}

#[tokio::test]
async fn stream_export_import_between_jwt_accounts() {
    let st = setup();
    let s = Server::start_with_config(&st.conf, &[]);
    let (ua, ub) = (KeyPair::new_user(), KeyPair::new_user());
    let a = client(&s, &user_jwt(&st.a, &ua, json!({}), None), &ua).await;
    let b = client(&s, &user_jwt(&st.b, &ub, json!({}), None), &ub).await;
    let mut events = b.subscribe("events.>").await.unwrap();
    let mut other = b.subscribe("private.>").await.unwrap();
    sync(&b).await;
    a.publish("private.x", "not exported".into()).await.unwrap();
    a.publish("events.deploy", "v2".into()).await.unwrap();
    sync(&a).await;
    let m = next(&mut events, "imported event").await;
    assert_eq!(m.subject.as_str(), "events.deploy");
    assert_eq!(&m.payload[..], b"v2");
    // B publishing on events.> stays in B: A's subscribers do not see it.
    let mut a_events = a.subscribe("events.>").await.unwrap();
    sync(&a).await;
    b.publish("events.fake", "from b".into()).await.unwrap();
    sync(&b).await;
    assert_eq!(
        next(&mut events, "B's own publish").await.subject.as_str(),
        "events.fake"
    );
    assert!(
        tokio::time::timeout(Duration::from_millis(300), a_events.next())
            .await
            .is_err()
    );
    assert!(
        tokio::time::timeout(Duration::from_millis(300), other.next())
            .await
            .is_err()
    );
}

#[tokio::test]
async fn operator_jwt_from_a_file_and_bad_resolvers() {
    let op = KeyPair::new_operator();
    let a = KeyPair::new_account();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("op.jwt");
    std::fs::write(
        &path,
        format!(
            "-----BEGIN NATS OPERATOR JWT-----\n{}\n------END NATS OPERATOR JWT------\n",
            operator_jwt(&op)
        ),
    )
    .unwrap();
    let a_jwt = account_jwt(&op, &a, "A", json!({}));
    let conf = format!(
        "operator: \"{}\"\nresolver: MEMORY\nresolver_preload {{\n  {}: \"{a_jwt}\"\n}}\n",
        path.display(),
        a.public_key()
    );
    let s = Server::start_with_config(&conf, &[]);
    let user = KeyPair::new_user();
    let c = client(&s, &user_jwt(&a, &user, json!({}), None), &user).await;
    sync(&c).await;
    ours_only!("the resolver message is Broker Edge's");
    let conf_path = dir.path().join("bad.conf");
    std::fs::write(
        &conf_path,
        format!(
            "operator: \"{}\"\nresolver: {{ type: full, dir: \"/tmp/x\" }}\n",
            path.display()
        ),
    )
    .unwrap();
    let (status, out, err) = common::run_to_exit(
        &["-t", "-c", conf_path.to_str().unwrap()],
        Duration::from_secs(10),
    )
    .await;
    assert!(!status.success());
    assert!(
        format!("{out}{err}").contains("not supported, use resolver: MEMORY"),
        "{out}{err}"
    );
}

#[tokio::test]
async fn service_import_between_jwt_accounts() {
    let op = KeyPair::new_operator();
    let (svc, app) = (KeyPair::new_account(), KeyPair::new_account());
    let svc_jwt = account_jwt(
        &op,
        &svc,
        "SVC",
        json!({"exports": [{"name": "time", "subject": "svc.time", "type": "service"}]}),
    );
    let app_jwt = account_jwt(
        &op,
        &app,
        "APP",
        json!({"imports": [{"name": "time", "subject": "svc.time", "local_subject": "time",
                            "account": svc.public_key(), "type": "service"}]}),
    );
    let conf = format!(
        "operator: \"{}\"\nresolver: MEMORY\nresolver_preload {{\n  {}: \"{svc_jwt}\"\n  {}: \"{app_jwt}\"\n}}\n",
        operator_jwt(&op),
        svc.public_key(),
        app.public_key(),
    );
    let s = Server::start_with_config(&conf, &[]);
    let (us, ua) = (KeyPair::new_user(), KeyPair::new_user());
    let server = client(&s, &user_jwt(&svc, &us, json!({}), None), &us).await;
    let caller = client(&s, &user_jwt(&app, &ua, json!({}), None), &ua).await;
    let mut requests = server.subscribe("svc.time").await.unwrap();
    sync(&server).await;
    let responder = tokio::spawn(async move {
        let m = requests.next().await.expect("a request");
        server
            .publish(m.reply.expect("reply subject"), "noon".into())
            .await
            .unwrap();
        server.flush().await.unwrap();
    });
    let resp = within("service response", caller.request("time", "".into()))
        .await
        .expect("request answered");
    assert_eq!(&resp.payload[..], b"noon");
    responder.await.unwrap();
}

#[tokio::test]
async fn users_signed_by_account_signing_keys() {
    let op = KeyPair::new_operator();
    let acc = KeyPair::new_account();
    let (plain_sk, scoped_sk) = (KeyPair::new_account(), KeyPair::new_account());
    let acc_jwt = account_jwt(
        &op,
        &acc,
        "A",
        json!({"signing_keys": [
            plain_sk.public_key(),
            {"kind": "user_scope", "key": scoped_sk.public_key(), "role": "publisher",
             "template": {"pub": {"allow": ["telemetry.>"]}, "sub": {"allow": ["_INBOX.>"]},
                          "subs": -1, "data": -1, "payload": -1}}]}),
    );
    let conf = format!(
        "operator: \"{}\"\nresolver: MEMORY\nresolver_preload {{\n  {}: \"{acc_jwt}\"\n}}\n",
        operator_jwt(&op),
        acc.public_key(),
    );
    let s = Server::start_with_config(&conf, &[]);
    let issuer = json!({"issuer_account": acc.public_key()});
    // Plain signing key: the user's own (absent) permissions, so anything.
    let u1 = KeyPair::new_user();
    let mut r = raw_connect(&s, &user_jwt(&plain_sk, &u1, issuer.clone(), None), &u1).await;
    assert_eq!(r.next().await.as_deref(), Some("PONG"));
    r.send("SUB x 1\r\nPUB x 2\r\nhi\r\nPING\r\n").await;
    assert_eq!(r.next().await.as_deref(), Some("MSG x 1 2"));
    // Scoped key: the user JWT must set no permissions or limits at all.
    let u2 = KeyPair::new_user();
    let jwt = user_jwt(&scoped_sk, &u2, issuer.clone(), None);
    expect_auth_violation(raw_connect(&s, &jwt, &u2).await).await;
    let bare = json!({"sub": u2.public_key(), "name": "scoped",
                      "nats": {"type": "user", "version": 2,
                               "issuer_account": acc.public_key()}});
    let mut r = raw_connect(&s, &encode(bare, &scoped_sk), &u2).await;
    assert_eq!(r.next().await.as_deref(), Some("PONG"));
    r.send("PUB telemetry.cpu 1\r\n1\r\nPUB x 1\r\n1\r\nPING\r\n")
        .await;
    assert_eq!(
        r.next().await.as_deref(),
        Some("-ERR 'Permissions Violation for Publish to \"x\"'")
    );
    assert_eq!(r.next().await.as_deref(), Some("PONG"));
    // A key that is not the account's, claiming the account.
    let u3 = KeyPair::new_user();
    let jwt = user_jwt(&KeyPair::new_account(), &u3, issuer, None);
    expect_auth_violation(raw_connect(&s, &jwt, &u3).await).await;
}

#[tokio::test]
async fn bearer_tokens_need_no_nonce_signature() {
    let st = setup();
    let s = Server::start_with_config(&st.conf, &[]);
    let user = KeyPair::new_user();
    let jwt = user_jwt(&st.a, &user, json!({"bearer_token": true}), None);
    let mut r = s.raw().await;
    let connect = json!({"jwt": jwt, "verbose": false, "pedantic": false, "protocol": 1});
    r.send(&format!("CONNECT {connect}\r\nPING\r\n")).await;
    assert_eq!(r.next().await.as_deref(), Some("PONG"));
    // Without the flag the signature is required.
    let jwt = user_jwt(&st.a, &user, json!({}), None);
    let mut r = s.raw().await;
    let connect = json!({"jwt": jwt, "verbose": false, "pedantic": false, "protocol": 1});
    r.send(&format!("CONNECT {connect}\r\nPING\r\n")).await;
    expect_auth_violation(r).await;
}

/// The next line that is not an INFO (the reference re-sends INFO with
/// the user's payload limit after CONNECT).
async fn next_non_info(r: &mut Raw) -> Option<String> {
    loop {
        let l = r.next().await?;
        if !l.starts_with("INFO ") {
            return Some(l);
        }
    }
}

/// Limits in the user JWT: subscriptions and payload size.
#[tokio::test]
async fn user_limits_from_the_jwt_are_enforced() {
    let st = setup();
    let s = Server::start_with_config(&st.conf, &[]);
    let user = KeyPair::new_user();
    let jwt = user_jwt(&st.a, &user, json!({"subs": 1, "payload": 64}), None);
    let mut r = raw_connect(&s, &jwt, &user).await;
    assert_eq!(next_non_info(&mut r).await.as_deref(), Some("PONG"));
    r.send("SUB a 1\r\nSUB b 2\r\nPING\r\n").await;
    assert_eq!(
        next_non_info(&mut r).await.as_deref(),
        Some("-ERR 'maximum subscriptions exceeded'")
    );
    assert_eq!(next_non_info(&mut r).await.as_deref(), Some("PONG"));
    let big = "x".repeat(100);
    r.send(&format!("PUB a {}\r\n{big}\r\n", big.len())).await;
    assert_eq!(
        next_non_info(&mut r).await.as_deref(),
        Some("-ERR 'Maximum Payload Violation'")
    );
    r.expect_closed(Duration::from_secs(5)).await;
}

/// An account JWT's connection limit.
#[tokio::test]
async fn account_connection_limit_from_the_jwt() {
    let op = KeyPair::new_operator();
    let a = KeyPair::new_account();
    let a_jwt = account_jwt(
        &op,
        &a,
        "A",
        json!({"limits": {"conn": 1, "subs": -1, "payload": -1, "data": -1,
                                   "leaf": -1, "imports": -1, "exports": -1,
                                   "wildcards": true}}),
    );
    let conf = format!(
        "operator: \"{}\"\nresolver: MEMORY\nresolver_preload {{\n  {}: \"{a_jwt}\"\n}}\n",
        operator_jwt(&op),
        a.public_key(),
    );
    let s = Server::start_with_config(&conf, &[]);
    let user = KeyPair::new_user();
    let jwt = user_jwt(&a, &user, json!({}), None);
    let mut first = raw_connect(&s, &jwt, &user).await;
    assert_eq!(next_non_info(&mut first).await.as_deref(), Some("PONG"));
    let mut second = raw_connect(&s, &jwt, &user).await;
    assert_eq!(
        next_non_info(&mut second).await.as_deref(),
        Some("-ERR 'maximum account active connections exceeded'")
    );
    // The first one is unaffected.
    first.send("PING\r\n").await;
    assert_eq!(next_non_info(&mut first).await.as_deref(), Some("PONG"));
}

/// A connection whose user JWT expires is closed when it does.
#[tokio::test]
async fn connection_closes_when_the_user_jwt_expires() {
    let st = setup();
    let s = Server::start_with_config(&st.conf, &[]);
    let user = KeyPair::new_user();
    let jwt = user_jwt(&st.a, &user, json!({}), Some(now() + 2));
    let mut r = raw_connect(&s, &jwt, &user).await;
    assert_eq!(next_non_info(&mut r).await.as_deref(), Some("PONG"));
    let line = tokio::time::timeout(Duration::from_secs(6), next_non_info(&mut r))
        .await
        .expect("still open after the JWT expired");
    assert_eq!(line.as_deref(), Some("-ERR 'User Authentication Expired'"));
    r.expect_closed(Duration::from_secs(5)).await;
}

/// nats-py with a creds file against operator mode (skips without nats-py).
#[tokio::test]
async fn nats_py_creds_file() {
    let have = std::process::Command::new("python3")
        .args(["-c", "import nats, nkeys"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !have {
        eprintln!("skipped: nats-py/nkeys not installed");
        return;
    }
    let st = setup();
    let s = Server::start_with_config(&st.conf, &[]);
    let user = KeyPair::new_user();
    let jwt = user_jwt(&st.a, &user, json!({}), None);
    let dir = tempfile::tempdir().unwrap();
    let creds_path = dir.path().join("user.creds");
    std::fs::write(&creds_path, creds(&jwt, &user)).unwrap();
    let script = format!("{}/tests/py/test_nkey_creds.py", env!("CARGO_MANIFEST_DIR"));
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new("python3")
            .arg(&script)
            .arg(s.url())
            .arg("--creds")
            .arg(&creds_path)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("python timed out")
    .expect("python3");
    assert!(
        out.status.success(),
        "nats-py creds: {}\n{}\n--- log ---\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        s.log()
    );
}

/// A JWT as nats-io/jwt v1 (older `nsc`) made them: header
/// `{"typ":"jwt","alg":"ed25519"}`, `type` (and a user's
/// `issuer_account`) at the top level of the claims, no `version`, and
/// the signature over the claims part alone.
fn encode_v1(mut claims: Value, signer: &KeyPair) -> String {
    claims["iss"] = json!(signer.public_key());
    claims["iat"] = json!(now());
    claims["jti"] = json!(b64(&rand::random::<[u8; 16]>()));
    let header = b64(br#"{"typ":"jwt","alg":"ed25519"}"#);
    let body = b64(claims.to_string().as_bytes());
    let sig = signer.sign(body.as_bytes()).unwrap();
    format!("{header}.{body}.{}", b64(&sig))
}

/// Hardening #21: a version-1 operator (from a file, with a signing key),
/// two v1 accounts (one signed by the operator's signing key, a stream
/// export/import between them, an account signing key) and v1 user creds
/// files log in and exchange messages. nats-server 2.9.10 accepts the
/// same files (its jwt library migrates v1 claims); a v1 user whose
/// signature covers header.claims (the v2 way) is refused by both.
#[tokio::test]
async fn version_1_jwts_from_older_nsc_log_in() {
    let (op, op_sk) = (KeyPair::new_operator(), KeyPair::new_operator());
    let (a, a_sk, b) = (
        KeyPair::new_account(),
        KeyPair::new_account(),
        KeyPair::new_account(),
    );
    let op_jwt = encode_v1(
        json!({"sub": op.public_key(), "name": "OLD", "type": "operator",
               "nats": {"signing_keys": [op_sk.public_key()]}}),
        &op,
    );
    let unlimited = json!({"subs": -1, "conn": -1, "leaf": -1, "imports": -1, "exports": -1,
                           "data": -1, "payload": -1, "wildcards": true});
    let a_jwt = encode_v1(
        json!({"sub": a.public_key(), "name": "A", "type": "account",
               "nats": {"signing_keys": [a_sk.public_key()], "limits": unlimited,
                        "exports": [{"name": "events", "subject": "events.>",
                                     "type": "stream"}]}}),
        &op_sk,
    );
    let b_jwt = encode_v1(
        json!({"sub": b.public_key(), "name": "B", "type": "account",
               "nats": {"limits": unlimited,
                        "imports": [{"name": "events", "subject": "events.>",
                                     "account": a.public_key(), "to": "",
                                     "type": "stream"}]}}),
        &op,
    );
    let dir = tempfile::tempdir().unwrap();
    let op_path = dir.path().join("OLD.jwt");
    std::fs::write(
        &op_path,
        format!("-----BEGIN NATS OPERATOR JWT-----\n{op_jwt}\n------END NATS OPERATOR JWT------\n"),
    )
    .unwrap();
    let conf = format!(
        "operator: \"{}\"\nresolver: MEMORY\nresolver_preload {{\n  {}: \"{a_jwt}\"\n  {}: \"{b_jwt}\"\n}}\n",
        op_path.display(),
        a.public_key(),
        b.public_key(),
    );
    let s = Server::start_with_config(&conf, &[]);
    // A's user is signed by A's signing key; B's by B itself.
    let (ua, ub) = (KeyPair::new_user(), KeyPair::new_user());
    let ua_jwt = encode_v1(
        json!({"sub": ua.public_key(), "name": "ua", "type": "user",
               "issuer_account": a.public_key(), "nats": {"pub": {}, "sub": {}}}),
        &a_sk,
    );
    let ub_jwt = encode_v1(
        json!({"sub": ub.public_key(), "name": "ub", "type": "user", "nats": {}}),
        &b,
    );
    let mut clients = Vec::new();
    for (name, jwt, key) in [("ua", &ua_jwt, &ua), ("ub", &ub_jwt, &ub)] {
        let path = dir.path().join(format!("{name}.creds"));
        std::fs::write(&path, creds(jwt, key)).unwrap();
        let opts = async_nats::ConnectOptions::with_credentials_file(&path)
            .await
            .unwrap();
        clients.push(s.client_with(opts).await);
    }
    let (ca, cb) = (&clients[0], &clients[1]);
    let mut own = ca.subscribe("events.>").await.unwrap();
    let mut imported = cb.subscribe("events.>").await.unwrap();
    sync(ca).await;
    sync(cb).await;
    ca.publish("events.one", "v1".into()).await.unwrap();
    let m = next(&mut own, "A's own message").await;
    assert_eq!(&m.payload[..], b"v1");
    let m = next(&mut imported, "imported into B").await;
    assert_eq!(m.subject.as_str(), "events.one");
    // Permissions from v1 user claims hold.
    let uc = KeyPair::new_user();
    let uc_jwt = encode_v1(
        json!({"sub": uc.public_key(), "name": "uc", "type": "user",
               "nats": {"pub": {}, "sub": {"allow": ["events.>"]}}}),
        &b,
    );
    let mut r = raw_connect(&s, &uc_jwt, &uc).await;
    // (nats-server 2.10+ sends an INFO after CONNECT.)
    assert_eq!(next_non_info(&mut r).await.as_deref(), Some("PONG"));
    r.send("SUB other 1\r\nPING\r\n").await;
    assert_eq!(
        next_non_info(&mut r).await.as_deref(),
        Some("-ERR 'Permissions Violation for Subscription to \"other\"'")
    );
    // v1 claims signed over header.claims are refused.
    let claims = json!({"sub": ub.public_key(), "iss": b.public_key(), "iat": now(),
                        "type": "user", "nats": {}});
    let input = format!(
        "{}.{}",
        b64(br#"{"typ":"jwt","alg":"ed25519"}"#),
        b64(claims.to_string().as_bytes())
    );
    let forged = format!("{input}.{}", b64(&b.sign(input.as_bytes()).unwrap()));
    expect_auth_violation(raw_connect(&s, &forged, &ub).await).await;
}

/// The operator names the system account: its users reach the server's
/// `$SYS` requests, other accounts' users get no responders and may ask
/// who they are (`$SYS.REQ.USER.INFO`, the account by its public key).
#[tokio::test]
async fn the_operators_system_account_serves_the_sys_requests() {
    let op = KeyPair::new_operator();
    let sys = KeyPair::new_account();
    let a = KeyPair::new_account();
    let op_jwt = encode(
        json!({"sub": op.public_key(), "name": "OP",
               "nats": {"type": "operator", "version": 2,
                        "system_account": sys.public_key()}}),
        &op,
    );
    let sys_jwt = account_jwt(&op, &sys, "SYS", json!({}));
    let a_jwt = account_jwt(&op, &a, "A", json!({}));
    let conf = format!(
        "operator: \"{op_jwt}\"\nresolver: MEMORY\nresolver_preload {{\n  {}: \"{sys_jwt}\"\n  {}: \"{a_jwt}\"\n}}\n",
        sys.public_key(),
        a.public_key(),
    );
    let s = Server::start_with_config(&conf, &[]);
    let sys_user = KeyPair::new_user();
    let c = client(&s, &user_jwt(&sys, &sys_user, json!({}), None), &sys_user).await;
    let m = within(
        "VARZ over NATS",
        c.request("$SYS.REQ.SERVER.PING.VARZ", "".into()),
    )
    .await
    .expect("the system account is answered");
    let v: Value = serde_json::from_slice(&m.payload).unwrap();
    assert!(v["server"]["id"].is_string(), "{v}");
    assert!(v["data"]["server_id"].is_string(), "{v}");

    let a_user = KeyPair::new_user();
    let ca = client(&s, &user_jwt(&a, &a_user, json!({}), None), &a_user).await;
    let r = within(
        "PING from another account",
        ca.request("$SYS.REQ.SERVER.PING.VARZ", "".into()),
    )
    .await;
    assert!(
        matches!(&r, Err(e) if e.kind() == async_nats::RequestErrorKind::NoResponders),
        "{r:?}"
    );
    if ca.server_info().version.starts_with("2.9.") {
        eprintln!("$SYS.REQ.USER.INFO came with nats-server 2.10: not asked of 2.9");
        return;
    }
    let m = within("USER.INFO", ca.request("$SYS.REQ.USER.INFO", "".into()))
        .await
        .expect("anyone may ask who they are");
    let v: Value = serde_json::from_slice(&m.payload).unwrap();
    assert_eq!(v["data"]["account"], a.public_key(), "{v}");
    assert_eq!(v["data"]["user"], a_user.public_key(), "{v}");
}
