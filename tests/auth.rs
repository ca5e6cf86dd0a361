//! Authentication and authorization, driven with async-nats and raw
//! sockets: user/password (config and `--user/--pass`), token (config and
//! `--auth`), users lists with plain and bcrypt passwords, nkey users,
//! `no_auth_user`, the auth timeout, and per-user publish/subscribe
//! permissions (allow/deny, wildcards, `allow_responses`), plus the two
//! deployment fixtures in `tests/configs/` (service mesh, agentic system).
//!
//! Every test here passes against the reference nats-server 2.9.10
//! (`BROKER_EDGE_BIN=/usr/sbin/nats-server`).

mod common;

use std::time::{Duration, Instant};

use async_nats::{ConnectErrorKind, ConnectOptions};
use base64::Engine;
use common::{within, Raw, Server, STEP};
use futures::StreamExt;

const AUTH_VIOLATION: &str = "-ERR 'Authorization Violation'";

fn up(user: &str, pass: &str) -> ConnectOptions {
    ConnectOptions::with_user_and_password(user.into(), pass.into())
}

/// Connecting with `opts` must fail with an authorization violation.
async fn assert_rejected(s: &Server, opts: ConnectOptions, what: &str) {
    let res = tokio::time::timeout(STEP, opts.connect(s.url()))
        .await
        .unwrap_or_else(|_| panic!("{what}: connect neither failed nor succeeded"));
    match res {
        Ok(_) => panic!("{what}: connect succeeded but must be rejected"),
        Err(e) => assert_eq!(
            e.kind(),
            ConnectErrorKind::AuthorizationViolation,
            "{what}: unexpected error {e}\n--- log ---\n{}",
            s.log()
        ),
    }
}

/// Raw connection logged in with `connect_json` (PONG received).
async fn raw_login(s: &Server, connect_json: &str) -> Raw {
    let mut r = s.raw().await;
    r.handshake(connect_json).await;
    r
}

fn creds_json(user: &str, pass: &str) -> String {
    serde_json::json!({"user": user, "pass": pass, "verbose": false, "headers": true}).to_string()
}

/// Sends CONNECT with `connect_json`; the server must answer
/// `-ERR 'Authorization Violation'` and close the connection.
async fn assert_raw_rejected(s: &Server, connect_json: &str) -> Raw {
    let mut r = raw_auth_required(s).await;
    rejected_after_connect(&mut r, connect_json).await;
    r
}

async fn rejected_after_connect(r: &mut Raw, connect_json: &str) {
    r.send(&format!("CONNECT {connect_json}\r\nPING\r\n")).await;
    assert_eq!(r.next().await.as_deref(), Some(AUTH_VIOLATION));
    r.expect_closed(STEP).await;
}

/// A raw connection to a server that requires authentication.
async fn raw_auth_required(s: &Server) -> Raw {
    let r = s.raw().await;
    assert_eq!(
        r.info["auth_required"],
        serde_json::json!(true),
        "INFO must say auth_required: {}",
        r.info
    );
    r
}

/// Sends `cmds` then PING: the server must answer exactly `errs` (in
/// order) and then PONG, with nothing else in between; the connection
/// stays open.
async fn expect_errs_then_pong(r: &mut Raw, cmds: &str, errs: &[String]) {
    r.send(&format!("{cmds}PING\r\n")).await;
    for e in errs {
        assert_eq!(
            r.next().await.as_deref(),
            Some(e.as_str()),
            "after {cmds:?}"
        );
    }
    assert_eq!(
        r.next().await.as_deref(),
        Some("PONG"),
        "after {cmds:?}: connection must stay open and answer PING"
    );
}

fn pub_violation(subject: &str) -> String {
    format!("-ERR 'Permissions Violation for Publish to \"{subject}\"'")
}

fn sub_violation(subject: &str) -> String {
    format!("-ERR 'Permissions Violation for Subscription to \"{subject}\"'")
}

/// Publishes `subject` from `c` and waits until `sub` (on the same
/// connection, which must be allowed both ways) has it back: the
/// server has processed everything `c` sent before.
async fn sync_on(c: &async_nats::Client, sub: &mut async_nats::Subscriber, subject: &str) {
    c.publish(subject.to_string(), "sync".into()).await.unwrap();
    loop {
        let m = within("sync message", sub.next())
            .await
            .expect("subscription ended");
        if m.subject.as_str() == subject {
            return;
        }
    }
}

/// A message that must arrive on `sub` within the step timeout.
async fn recv(sub: &mut async_nats::Subscriber, what: &str) -> async_nats::Message {
    within(what, sub.next())
        .await
        .unwrap_or_else(|| panic!("{what}: subscription ended"))
}

/// Like [`recv`], skipping the harness's own `_sync.*` round trips (for
/// subscriptions on `>`).
async fn recv_app(sub: &mut async_nats::Subscriber, what: &str) -> async_nats::Message {
    loop {
        let m = recv(sub, what).await;
        if !m.subject.starts_with("_sync") {
            return m;
        }
    }
}

// ---------------------------------------------------------------------------
// Single user / password, token, command-line flags
// ---------------------------------------------------------------------------

const SINGLE_USER: &str = r#"
authorization {
  user: alice
  password: "pw-Alice-7f3a"
}
"#;

#[tokio::test]
async fn user_password_right_connects_wrong_is_rejected() {
    let s = Server::start_with_config(SINGLE_USER, &[]);
    let c = s.client_with(up("alice", "pw-Alice-7f3a")).await;
    let mut sub = c.subscribe("greet").await.unwrap();
    common::sync(&c).await;
    c.publish("greet", "hi".into()).await.unwrap();
    assert_eq!(recv(&mut sub, "greet").await.payload.as_ref(), b"hi");

    assert_rejected(&s, up("alice", "wrong-Pass-91c2"), "wrong password").await;
    assert_rejected(&s, up("mallory", "pw-Alice-7f3a"), "wrong user").await;
    assert_rejected(&s, ConnectOptions::new(), "no credentials").await;
    // The authenticated client is unaffected by the failures.
    common::sync(&c).await;
}

#[tokio::test]
async fn wrong_password_raw_gets_violation_then_close_and_is_logged_without_secret() {
    let s = Server::start_with_config(SINGLE_USER, &[]);
    let r = assert_raw_rejected(&s, &creds_json("alice", "wrong-Pass-91c2")).await;
    let local = r.writer.local_addr().unwrap();
    // A log line names the client's address (IP:port as the server saw it).
    let needle = format!("{}:{}", local.ip(), local.port());
    let deadline = Instant::now() + STEP;
    let line = loop {
        if let Some(l) = s.log().lines().find(|l| l.contains(&needle)) {
            break l.to_string();
        }
        assert!(
            Instant::now() < deadline,
            "no log line names the client {needle}\n--- log ---\n{}",
            s.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        line.to_ascii_lowercase().contains("auth"),
        "the line naming the client should be about authentication: {line}"
    );
    // A failed CONNECT without PING, and one with a bad user, too.
    let mut r = s.raw().await;
    r.send(&format!(
        "CONNECT {}\r\n",
        creds_json("nobody", "other-Secret-55d0")
    ))
    .await;
    assert_eq!(r.next().await.as_deref(), Some(AUTH_VIOLATION));
    r.expect_closed(STEP).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let log = s.log();
    for secret in ["wrong-Pass-91c2", "other-Secret-55d0", "pw-Alice-7f3a"] {
        assert!(
            !log.contains(secret),
            "the log must never contain a password ({secret})\n--- log ---\n{log}"
        );
    }
}

#[tokio::test]
async fn command_before_connect_is_an_authorization_violation() {
    let s = Server::start_with_config(SINGLE_USER, &[]);
    let mut r = s.raw().await;
    r.send("SUB foo 1\r\n").await;
    assert_eq!(r.next().await.as_deref(), Some(AUTH_VIOLATION));
    r.expect_closed(STEP).await;
}

#[tokio::test]
async fn user_and_pass_flags() {
    let s = Server::start(&["--user", "flaguser", "--pass", "flag-Pass-3b"]);
    let c = s.client_with(up("flaguser", "flag-Pass-3b")).await;
    common::sync(&c).await;
    assert_rejected(&s, up("flaguser", "nope"), "wrong password").await;
    assert_rejected(&s, ConnectOptions::new(), "no credentials").await;
    assert_raw_rejected(&s, &creds_json("flaguser", "nope")).await;
}

#[tokio::test]
async fn user_and_pass_flags_override_the_file() {
    let s = Server::start_with_config(
        SINGLE_USER,
        &["--user", "flaguser", "--pass", "flag-Pass-3b"],
    );
    let c = s.client_with(up("flaguser", "flag-Pass-3b")).await;
    common::sync(&c).await;
    assert_rejected(&s, up("alice", "pw-Alice-7f3a"), "user from the file").await;
}

#[tokio::test]
async fn auth_token_flag() {
    let s = Server::start(&["--auth", "flag-Token-a1"]);
    let c = s
        .client_with(ConnectOptions::with_token("flag-Token-a1".into()))
        .await;
    common::sync(&c).await;
    assert_rejected(
        &s,
        ConnectOptions::with_token("bad-token".into()),
        "wrong token",
    )
    .await;
    assert_rejected(&s, ConnectOptions::new(), "no token").await;
    assert_raw_rejected(&s, r#"{"auth_token":"bad-token","verbose":false}"#).await;
    let mut r = raw_login(&s, r#"{"auth_token":"flag-Token-a1","verbose":false}"#).await;
    expect_errs_then_pong(&mut r, "PUB any.subject 1\r\nx\r\n", &[]).await;
}

#[tokio::test]
async fn token_in_config() {
    let s = Server::start_with_config(
        "authorization {\n  token: \"conf-Token-s3cr3t\"\n  timeout: 5\n}\n",
        &[],
    );
    let a = s
        .client_with(ConnectOptions::with_token("conf-Token-s3cr3t".into()))
        .await;
    let b = s
        .client_with(ConnectOptions::with_token("conf-Token-s3cr3t".into()))
        .await;
    let mut sub = b.subscribe("t.>").await.unwrap();
    common::sync(&b).await;
    a.publish("t.x", "tok".into()).await.unwrap();
    assert_eq!(recv(&mut sub, "t.x").await.payload.as_ref(), b"tok");
    assert_rejected(
        &s,
        ConnectOptions::with_token("conf-Token-wrong".into()),
        "wrong token",
    )
    .await;
    assert_rejected(&s, up("conf-Token-s3cr3t", "x"), "token as user name").await;
    assert_raw_rejected(&s, r#"{"auth_token":"conf-Token-wrong","verbose":false}"#).await;
    assert!(!s.log().contains("conf-Token-wrong"), "{}", s.log());
}

// ---------------------------------------------------------------------------
// Users lists: plain, bcrypt (service mesh fixture), env (agentic fixture)
// ---------------------------------------------------------------------------

const SERVICE_MESH: &str = include_str!("configs/service-mesh.conf");
const BFF: (&str, &str) = ("fluo-bff", "fluo-bff-secret");
const WORKERS: (&str, &str) = ("fluo-workers", "fluo-workers-secret");

#[tokio::test]
async fn service_mesh_bcrypt_users_log_in() {
    // The fixture sets port 4222 / monitor_port 8222; the harness's -p/-m
    // flags win, as in the reference.
    let s = Server::start_with_config(SERVICE_MESH, &[]);
    let bff = s.client_with(up(BFF.0, BFF.1)).await;
    let workers = s.client_with(up(WORKERS.0, WORKERS.1)).await;
    assert_eq!(bff.server_info().max_payload, 1024 * 1024);
    assert_rejected(&s, up(BFF.0, WORKERS.1), "bff with the workers' password").await;
    assert_rejected(&s, up(WORKERS.0, "fluo-workers-secreT"), "near miss").await;
    // The hash itself is not a password.
    assert_rejected(
        &s,
        up(
            BFF.0,
            "$2a$11$RAECBSBYdig2ZUURlJi0MOCXh3RK1WhBwlP2atQP/zMlwEzI9sSZG",
        ),
        "the bcrypt hash",
    )
    .await;
    assert_raw_rejected(&s, &creds_json(WORKERS.0, "nope")).await;
    drop((bff, workers));
    let log = s.log();
    assert!(
        !log.contains("fluo-bff-secret")
            && !log.contains("fluo-workers-secret")
            && !log.contains("fluo-workers-secreT"),
        "{log}"
    );
}

#[tokio::test]
async fn service_mesh_jobs_flow_from_bff_to_workers_and_signals_back() {
    let s = Server::start_with_config(SERVICE_MESH, &[]);
    let bff = s.client_with(up(BFF.0, BFF.1)).await;
    let workers = s.client_with(up(WORKERS.0, WORKERS.1)).await;

    // Workers take jobs. They may publish signals.> and nobody listens
    // there yet, so a request is a round trip (no responders).
    let mut jobs = workers.subscribe("jobs.>").await.unwrap();
    let err = within(
        "workers round trip",
        workers.request("signals.sync.workers", "".into()),
    )
    .await
    .expect_err("nobody listens on signals yet");
    assert_eq!(err.kind(), async_nats::RequestErrorKind::NoResponders);

    bff.publish("jobs.build", "job-1".into()).await.unwrap();
    let m = recv(&mut jobs, "job at the workers").await;
    assert_eq!(m.subject.as_str(), "jobs.build");
    assert_eq!(m.payload.as_ref(), b"job-1");

    // Signals go back to the BFF.
    let mut signals = bff.subscribe("signals.>").await.unwrap();
    sync_on(&bff, &mut signals, "signals.sync.bff").await;
    workers
        .publish("signals.done", "job-1 done".into())
        .await
        .unwrap();
    let m = recv(&mut signals, "signal at the bff").await;
    assert_eq!(m.subject.as_str(), "signals.done");
    assert_eq!(m.payload.as_ref(), b"job-1 done");
}

#[tokio::test]
async fn service_mesh_permissions_are_enforced() {
    let s = Server::start_with_config(SERVICE_MESH, &[]);

    // Workers: may subscribe jobs.>, may not publish there (not even to
    // themselves), nor reply into _INBOX (no allow_responses).
    let mut w = raw_login(&s, &creds_json(WORKERS.0, WORKERS.1)).await;
    expect_errs_then_pong(&mut w, "SUB jobs.> 1\r\n", &[]).await;
    expect_errs_then_pong(
        &mut w,
        "PUB jobs.evil 4\r\nevil\r\nPUB _INBOX.abc 2\r\nhi\r\n",
        &[pub_violation("jobs.evil"), pub_violation("_INBOX.abc")],
    )
    .await;
    expect_errs_then_pong(
        &mut w,
        "SUB signals.> 2\r\nSUB other 3\r\n",
        &[sub_violation("signals.>"), sub_violation("other")],
    )
    .await;

    // BFF: may publish jobs.> and signals.>, may not subscribe jobs.>.
    let mut b = raw_login(&s, &creds_json(BFF.0, BFF.1)).await;
    expect_errs_then_pong(
        &mut b,
        "SUB jobs.> 1\r\nPUB audit.x 1\r\nx\r\n",
        &[sub_violation("jobs.>"), pub_violation("audit.x")],
    )
    .await;
    // The worker's subscription (SID 1) still gets the BFF's job, and
    // nothing was delivered for the denied publishes.
    expect_errs_then_pong(&mut b, "PUB jobs.ok 2\r\nok\r\n", &[]).await;
    assert_eq!(w.next().await.as_deref(), Some("MSG jobs.ok 1 2"));
    assert_eq!(w.next().await.as_deref(), Some("ok"));
}

/// The agentic fixture with its store directory moved into a tempdir
/// (nats-server refuses `-sd` together with a file `store_dir`).
fn agentic_server(store: &tempfile::TempDir) -> Server {
    let conf = include_str!("configs/agentic.conf");
    assert!(conf.contains("/var/lib/nats/jetstream"));
    let conf = conf.replace(
        "/var/lib/nats/jetstream",
        store.path().join("js").to_str().unwrap(),
    );
    Server::start_with_config_env(
        &conf,
        &[
            ("NATS_ADMIN_PASS", "env-Admin-0a1"),
            ("NATS_TEMPORAL_PASS", "env-Temporal-2b3"),
            ("NATS_N8N_PASS", "env-N8n-4c5"),
            ("NATS_AGIXT_PASS", "env-Agixt-6d7"),
        ],
        &[],
    )
}

#[tokio::test]
async fn agentic_passwords_come_from_the_environment() {
    let store = tempfile::tempdir().unwrap();
    let s = agentic_server(&store);
    for (user, pass) in [
        ("admin", "env-Admin-0a1"),
        ("temporal", "env-Temporal-2b3"),
        ("n8n", "env-N8n-4c5"),
        ("agixt", "env-Agixt-6d7"),
    ] {
        let c = s.client_with(up(user, pass)).await;
        assert_eq!(c.server_info().max_payload, 8 * 1024 * 1024, "{user}");
        drop(c);
        assert_rejected(&s, up(user, "$NATS_ADMIN_PASS"), "variable name").await;
    }
    assert_rejected(&s, up("admin", "env-Temporal-2b3"), "other user's pass").await;
    assert_rejected(&s, ConnectOptions::new(), "no credentials").await;
    let log = s.log();
    assert!(!log.contains("env-Admin-0a1"), "{log}");
}

#[tokio::test]
async fn agentic_permissions() {
    let store = tempfile::tempdir().unwrap();
    let s = agentic_server(&store);
    let admin = s.client_with(up("admin", "env-Admin-0a1")).await;
    let mut all = admin.subscribe(">").await.unwrap();
    common::sync(&admin).await;

    // temporal: publish temporal.>, events.>, $JS.API.>
    let mut t = raw_login(&s, &creds_json("temporal", "env-Temporal-2b3")).await;
    expect_errs_then_pong(
        &mut t,
        "PUB agent.x 1\r\nx\r\nPUB temporal.wf 2\r\nwf\r\nSUB agent.> 1\r\n",
        &[pub_violation("agent.x"), sub_violation("agent.>")],
    )
    .await;

    // n8n: deny $SYS.> on publish; allow tasks.>
    let mut n = raw_login(&s, &creds_json("n8n", "env-N8n-4c5")).await;
    expect_errs_then_pong(
        &mut n,
        "PUB $SYS.x 1\r\nx\r\nPUB temporal.y 1\r\ny\r\nPUB tasks.t1 2\r\nt1\r\n",
        &[pub_violation("$SYS.x"), pub_violation("temporal.y")],
    )
    .await;

    // agixt: publish list from the $AGENT_SUBJECTS variable
    let mut a = raw_login(&s, &creds_json("agixt", "env-Agixt-6d7")).await;
    expect_errs_then_pong(
        &mut a,
        "PUB agent.a1.out 3\r\nout\r\nPUB temporal.z 1\r\nz\r\nPUB events.e 1\r\ne\r\n",
        &[pub_violation("temporal.z")],
    )
    .await;

    // The admin (subscribed to >) saw exactly the allowed ones, in order
    // per publisher.
    let mut got = Vec::new();
    while got.len() < 4 {
        let m = recv_app(&mut all, "allowed publishes at the admin").await;
        got.push(m.subject.to_string());
    }
    got.sort();
    assert_eq!(got, ["agent.a1.out", "events.e", "tasks.t1", "temporal.wf"]);
    common::sync(&admin).await;
    while let Some(m) = common::queued(&mut all) {
        assert!(m.subject.starts_with("_sync"), "unexpected {}", m.subject);
    }
}

#[tokio::test]
async fn users_list_with_plain_passwords() {
    let conf = r#"
authorization {
  users = [
    { user: u1, password: "plain-One-1" }
    { user: u2, password: "plain-Two-2" }
  ]
}
"#;
    let s = Server::start_with_config(conf, &[]);
    let c1 = s.client_with(up("u1", "plain-One-1")).await;
    let c2 = s.client_with(up("u2", "plain-Two-2")).await;
    let mut sub = c2.subscribe("x").await.unwrap();
    common::sync(&c2).await;
    c1.publish("x", "from u1".into()).await.unwrap();
    assert_eq!(recv(&mut sub, "x").await.payload.as_ref(), b"from u1");
    assert_rejected(&s, up("u1", "plain-Two-2"), "u1 with u2's password").await;
    assert_rejected(&s, up("u3", "plain-One-1"), "unknown user").await;
}

// ---------------------------------------------------------------------------
// NKeys
// ---------------------------------------------------------------------------

#[tokio::test]
async fn nkey_user_signs_the_nonce() {
    let kp = nkeys::KeyPair::new_user();
    let other = nkeys::KeyPair::new_user();
    let conf = format!(
        "authorization {{\n  users = [\n    {{ nkey: {} }}\n    {{ user: plain, password: \"plain-Pw-9\" }}\n  ]\n}}\n",
        kp.public_key()
    );
    let s = Server::start_with_config(&conf, &[]);

    // The client library signs the nonce from INFO.
    let c = s
        .client_with(ConnectOptions::with_nkey(kp.seed().unwrap()))
        .await;
    let mut sub = c.subscribe("nk").await.unwrap();
    common::sync(&c).await;
    c.publish("nk", "signed".into()).await.unwrap();
    assert_eq!(recv(&mut sub, "nk").await.payload.as_ref(), b"signed");
    // A user/password user lives next to it.
    let p = s.client_with(up("plain", "plain-Pw-9")).await;
    common::sync(&p).await;
    // An unknown key is rejected.
    assert_rejected(
        &s,
        ConnectOptions::with_nkey(other.seed().unwrap()),
        "unknown nkey",
    )
    .await;

    // Raw: INFO carries a nonce; a valid signature logs in, a signature
    // by another key or over other bytes does not.
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut r = s.raw().await;
    let nonce = r.info["nonce"]
        .as_str()
        .unwrap_or_else(|| panic!("INFO must carry a nonce: {}", r.info))
        .to_string();
    assert!(!nonce.is_empty());
    let sig = b64.encode(kp.sign(nonce.as_bytes()).unwrap());
    r.handshake(
        &serde_json::json!({"nkey": kp.public_key(), "sig": sig, "verbose": false}).to_string(),
    )
    .await;
    expect_errs_then_pong(&mut r, "SUB a 1\r\n", &[]).await;

    let r2 = s.raw().await;
    let nonce2 = r2.info["nonce"].as_str().unwrap().to_string();
    assert_ne!(nonce, nonce2, "every connection gets a fresh nonce");
    drop(r2);
    // Signature over a different nonce (the previous connection's).
    assert_raw_rejected(
        &s,
        &serde_json::json!({"nkey": kp.public_key(), "sig": sig, "verbose": false}).to_string(),
    )
    .await;
    // Signed by another key.
    let mut r3 = s.raw().await;
    let n3 = r3.info["nonce"].as_str().unwrap().to_string();
    let bad = b64.encode(other.sign(n3.as_bytes()).unwrap());
    r3.send(&format!(
        "CONNECT {}\r\nPING\r\n",
        serde_json::json!({"nkey": kp.public_key(), "sig": bad, "verbose": false})
    ))
    .await;
    assert_eq!(r3.next().await.as_deref(), Some(AUTH_VIOLATION));
    r3.expect_closed(STEP).await;
    // No signature at all.
    assert_raw_rejected(
        &s,
        &serde_json::json!({"nkey": kp.public_key(), "verbose": false}).to_string(),
    )
    .await;
}

// ---------------------------------------------------------------------------
// no_auth_user, auth timeout
// ---------------------------------------------------------------------------

#[tokio::test]
async fn no_auth_user_applies_to_clients_without_credentials() {
    let conf = r#"
authorization {
  users = [
    { user: guest, password: "guest-Pw-1", permissions: { publish: "public.>", subscribe: "public.>" } }
    { user: admin, password: "admin-Pw-2" }
  ]
}
no_auth_user: guest
"#;
    let s = Server::start_with_config(conf, &[]);
    // No credentials: logged in as guest.
    let anon = s.client().await;
    let admin = s.client_with(up("admin", "admin-Pw-2")).await;
    let mut sub = anon.subscribe("public.news").await.unwrap();
    sync_on(&anon, &mut sub, "public.news").await;
    admin.publish("public.news", "extra".into()).await.unwrap();
    assert_eq!(
        recv(&mut sub, "public.news").await.payload.as_ref(),
        b"extra"
    );

    // ... with guest's permissions.
    let mut r = raw_login(&s, r#"{"verbose":false}"#).await;
    expect_errs_then_pong(
        &mut r,
        "PUB private.x 1\r\nx\r\nSUB private.> 1\r\nPUB public.ok 1\r\nx\r\n",
        &[pub_violation("private.x"), sub_violation("private.>")],
    )
    .await;
    // Wrong credentials are still wrong.
    assert_rejected(&s, up("admin", "guest-Pw-1"), "wrong password").await;
    let mut r = s.raw().await;
    rejected_after_connect(&mut r, &creds_json("guest", "nope")).await;
}

#[tokio::test]
async fn auth_timeout_closes_silent_connections() {
    let conf = "authorization {\n  user: u\n  password: \"to-Pw-1\"\n  timeout: 1\n}\n";
    let s = Server::start_with_config(conf, &[]);
    let start = Instant::now();
    let mut r = s.raw().await;
    assert_eq!(r.info["auth_required"], serde_json::json!(true));
    assert_eq!(
        r.next().await.as_deref(),
        Some("-ERR 'Authentication Timeout'")
    );
    let waited = start.elapsed();
    r.expect_closed(STEP).await;
    assert!(
        waited >= Duration::from_millis(700) && waited < Duration::from_secs(5),
        "timeout of 1s fired after {waited:?}"
    );
    // A client that logs in in time is not affected.
    let mut ok = raw_login(&s, &creds_json("u", "to-Pw-1")).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    expect_errs_then_pong(&mut ok, "", &[]).await;
}

// ---------------------------------------------------------------------------
// Permissions
// ---------------------------------------------------------------------------

const PERMS: &str = r#"
authorization {
  users = [
    { user: admin, password: "adm-1" }
    {
      user: app, password: "app-1"
      permissions: {
        publish: { allow: ["orders.*", "logs.>"], deny: ["orders.secret"] }
        subscribe: { allow: ["updates.>", "_INBOX.>"], deny: ["updates.private.>"] }
      }
    }
    { user: plainlist, password: "pl-1", permissions: { publish: ["a", "b.*"], subscribe: "c.>" } }
    { user: denier, password: "dn-1", permissions: { publish: { deny: ["forbidden.>", "x"] }, subscribe: { deny: "forbidden.>" } } }
    { user: resp, password: "rs-1", permissions: { subscribe: "svc.>", allow_responses: true } }
    { user: resp2, password: "rs-2", permissions: { subscribe: "svc2.>", allow_responses: { max: 2, expires: "1m" } } }
  ]
}
"#;

#[tokio::test]
async fn publish_denied_keeps_the_connection_and_delivers_nothing() {
    let s = Server::start_with_config(PERMS, &[]);
    let admin = s.client_with(up("admin", "adm-1")).await;
    let mut all = admin.subscribe(">").await.unwrap();
    common::sync(&admin).await;

    let mut r = raw_login(&s, &creds_json("app", "app-1")).await;
    expect_errs_then_pong(
        &mut r,
        "PUB orders.secret 1\r\nx\r\nPUB orders.a.b 1\r\nx\r\nPUB other 1\r\nx\r\nHPUB logs 12 13\r\nNATS/1.0\r\n\r\nx\r\n",
        &[
            pub_violation("orders.secret"),
            pub_violation("orders.a.b"),
            pub_violation("other"),
            pub_violation("logs"),
        ],
    )
    .await;
    // Allowed: orders.<one token>, logs.> (with headers too).
    expect_errs_then_pong(
        &mut r,
        "PUB orders.new 2\r\nok\r\nHPUB logs.app.1 12 14\r\nNATS/1.0\r\n\r\nok\r\n",
        &[],
    )
    .await;
    let m = recv_app(&mut all, "first allowed").await;
    assert_eq!(m.subject.as_str(), "orders.new", "denied publishes leaked");
    let m = recv_app(&mut all, "second allowed").await;
    assert_eq!(m.subject.as_str(), "logs.app.1");
    assert_eq!(m.payload.as_ref(), b"ok");
}

#[tokio::test]
async fn subscribe_denied_keeps_the_connection() {
    let s = Server::start_with_config(PERMS, &[]);
    let mut r = raw_login(&s, &creds_json("app", "app-1")).await;
    expect_errs_then_pong(
        &mut r,
        "SUB orders.new 1\r\nSUB updates.private.x 2\r\nSUB updates.private.* q 3\r\nSUB > 4\r\n",
        &[
            sub_violation("orders.new"),
            sub_violation("updates.private.x"),
            "-ERR 'Permissions Violation for Subscription to \"updates.private.*\" using queue \"q\"'"
                .to_string(),
            sub_violation(">"),
        ],
    )
    .await;
    // Allowed subscriptions work; a denied SID got no subscription.
    expect_errs_then_pong(
        &mut r,
        "SUB updates.public 5\r\nSUB updates.* grp 6\r\n",
        &[],
    )
    .await;
    let admin = s.client_with(up("admin", "adm-1")).await;
    admin.publish("updates.public", "u".into()).await.unwrap();
    let mut got = vec![r.next().await.unwrap(), r.next().await.unwrap()];
    got.extend([r.next().await.unwrap(), r.next().await.unwrap()]);
    let mut heads: Vec<&String> = got.iter().filter(|l| l.starts_with("MSG")).collect();
    heads.sort();
    assert_eq!(
        heads,
        ["MSG updates.public 5 1", "MSG updates.public 6 1"],
        "{got:?}"
    );
    expect_errs_then_pong(&mut r, "", &[]).await;
}

#[tokio::test]
async fn plain_list_means_allow() {
    let s = Server::start_with_config(PERMS, &[]);
    let mut r = raw_login(&s, &creds_json("plainlist", "pl-1")).await;
    expect_errs_then_pong(
        &mut r,
        "PUB a 1\r\nx\r\nPUB b.c 1\r\nx\r\nPUB b 1\r\nx\r\nPUB b.c.d 1\r\nx\r\nSUB c.d.e 1\r\nSUB a 2\r\n",
        &[
            pub_violation("b"),
            pub_violation("b.c.d"),
            sub_violation("a"),
        ],
    )
    .await;
}

#[tokio::test]
async fn deny_lists_and_wildcard_subscriptions() {
    let s = Server::start_with_config(PERMS, &[]);
    let mut r = raw_login(&s, &creds_json("denier", "dn-1")).await;
    expect_errs_then_pong(
        &mut r,
        "PUB forbidden.a.b 1\r\nx\r\nPUB x 1\r\nx\r\nPUB x.y 1\r\nx\r\nSUB forbidden.a 1\r\n",
        &[
            pub_violation("forbidden.a.b"),
            pub_violation("x"),
            sub_violation("forbidden.a"),
        ],
    )
    .await;
    // A wildcard subscription that overlaps the deny list is accepted,
    // but messages on denied subjects are not delivered to it.
    expect_errs_then_pong(&mut r, "SUB > 2\r\n", &[]).await;
    let admin = s.client_with(up("admin", "adm-1")).await;
    admin.publish("forbidden.news", "no".into()).await.unwrap();
    admin.publish("open.news", "yes".into()).await.unwrap();
    assert_eq!(r.next().await.as_deref(), Some("MSG open.news 2 3"));
    assert_eq!(r.next().await.as_deref(), Some("yes"));

    // The app's updates.> subscription likewise skips updates.private.>.
    let mut app = raw_login(&s, &creds_json("app", "app-1")).await;
    expect_errs_then_pong(&mut app, "SUB updates.> 7\r\n", &[]).await;
    admin
        .publish("updates.private.salary", "no".into())
        .await
        .unwrap();
    admin
        .publish("updates.weather", "sun".into())
        .await
        .unwrap();
    assert_eq!(app.next().await.as_deref(), Some("MSG updates.weather 7 3"));
    assert_eq!(app.next().await.as_deref(), Some("sun"));
}

#[tokio::test]
async fn allow_responses_lets_a_responder_reply_once_and_nothing_else() {
    let s = Server::start_with_config(PERMS, &[]);
    let mut resp = raw_login(&s, &creds_json("resp", "rs-1")).await;
    expect_errs_then_pong(&mut resp, "SUB svc.echo 1\r\n", &[]).await;
    // Without a request to answer, it may publish nowhere.
    expect_errs_then_pong(
        &mut resp,
        "PUB svc.echo 1\r\nx\r\nPUB _INBOX.guess 1\r\nx\r\n",
        &[pub_violation("svc.echo"), pub_violation("_INBOX.guess")],
    )
    .await;

    let admin = s.client_with(up("admin", "adm-1")).await;
    let mut replies = admin.subscribe("reply.here").await.unwrap();
    common::sync(&admin).await;
    admin
        .publish_with_reply("svc.echo", "reply.here", "ping".into())
        .await
        .unwrap();
    assert_eq!(
        resp.next().await.as_deref(),
        Some("MSG svc.echo 1 reply.here 4")
    );
    assert_eq!(resp.next().await.as_deref(), Some("ping"));
    // One reply is allowed (max 1 by default), a second one is not.
    expect_errs_then_pong(
        &mut resp,
        "PUB reply.here 4\r\npong\r\nPUB reply.here 5\r\nagain\r\nPUB elsewhere 1\r\nx\r\n",
        &[pub_violation("reply.here"), pub_violation("elsewhere")],
    )
    .await;
    let m = recv(&mut replies, "the reply").await;
    assert_eq!(m.payload.as_ref(), b"pong");
    common::sync(&admin).await;
    assert!(
        common::queued(&mut replies).is_none(),
        "second reply leaked"
    );

    // A real request/reply through the client library.
    let svc = s.client_with(up("resp", "rs-1")).await;
    let mut reqs = svc.subscribe("svc.time").await.unwrap();
    svc.flush().await.unwrap();
    let responder = tokio::spawn(async move {
        let m = within("request at the responder", reqs.next())
            .await
            .unwrap();
        svc.publish(m.reply.unwrap(), "12:00".into()).await.unwrap();
        svc.flush().await.unwrap();
        svc
    });
    // The responder (which may publish nowhere) cannot announce that its
    // subscription is in place, so retry while nobody is there yet.
    let deadline = Instant::now() + STEP;
    let answer = loop {
        match within("request", admin.request("svc.time", "now?".into())).await {
            Ok(m) => break m,
            Err(e) if e.kind() == async_nats::RequestErrorKind::NoResponders => {
                assert!(Instant::now() < deadline, "the responder never subscribed");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("request failed: {e}"),
        }
    };
    assert_eq!(answer.payload.as_ref(), b"12:00");
    within("responder", responder).await.unwrap();
}

#[tokio::test]
async fn allow_responses_with_max() {
    let s = Server::start_with_config(PERMS, &[]);
    let mut resp = raw_login(&s, &creds_json("resp2", "rs-2")).await;
    expect_errs_then_pong(&mut resp, "SUB svc2.x 1\r\n", &[]).await;
    let mut req = raw_login(&s, &creds_json("admin", "adm-1")).await;
    expect_errs_then_pong(
        &mut req,
        "SUB inbox.1 9\r\nPUB svc2.x inbox.1 1\r\nq\r\n",
        &[],
    )
    .await;
    assert_eq!(resp.next().await.as_deref(), Some("MSG svc2.x 1 inbox.1 1"));
    assert_eq!(resp.next().await.as_deref(), Some("q"));
    expect_errs_then_pong(
        &mut resp,
        "PUB inbox.1 2\r\nr1\r\nPUB inbox.1 2\r\nr2\r\nPUB inbox.1 2\r\nr3\r\n",
        &[pub_violation("inbox.1")],
    )
    .await;
    for want in ["r1", "r2"] {
        assert_eq!(req.next().await.as_deref(), Some("MSG inbox.1 9 2"));
        assert_eq!(req.next().await.as_deref(), Some(want));
    }
    expect_errs_then_pong(&mut req, "", &[]).await;
}

// ---------------------------------------------------------------------------
// More cases: INFO with no_auth_user, queue permissions, bcrypt hashes made
// here, violation log lines, response permits that expire, default
// permissions, servers without auth, verbose clients, odd passwords
// ---------------------------------------------------------------------------

#[tokio::test]
async fn no_auth_user_info_does_not_ask_for_credentials() {
    let conf = r#"
authorization {
  users = [ { user: guest, password: "guest-Pw-1" } ]
}
no_auth_user: guest
"#;
    let s = Server::start_with_config(conf, &[]);
    // The reference leaves auth_required out of INFO when a no_auth_user
    // is set (server.go: "auth_required set but we also have a
    // no_auth_user ... set back to false"), so that clients without
    // credentials do not give up before trying.
    let r = s.raw().await;
    assert_ne!(
        r.info["auth_required"],
        serde_json::json!(true),
        "INFO with a no_auth_user: {}",
        r.info
    );
}

#[tokio::test]
async fn queue_permissions() {
    let conf = r#"
authorization {
  users = [
    { user: admin, password: "adm-1" }
    {
      user: q, password: "q-1"
      permissions: {
        subscribe: { allow: ["jobs.* workers", "plain.>"], deny: ["plain.secret.* spies"] }
      }
    }
  ]
}
"#;
    let s = Server::start_with_config(conf, &[]);
    let mut r = raw_login(&s, &creds_json("q", "q-1")).await;
    let queue_violation = |subj: &str, q: &str| {
        format!("-ERR 'Permissions Violation for Subscription to \"{subj}\" using queue \"{q}\"'")
    };
    expect_errs_then_pong(
        &mut r,
        "SUB jobs.a workers 1\r\nSUB jobs.a 2\r\nSUB jobs.a others 3\r\nSUB plain.x 4\r\nSUB plain.x grp 5\r\nSUB plain.secret.x 6\r\nSUB plain.secret.x spies 7\r\nSUB plain.secret.x friends 8\r\n",
        &[
            sub_violation("jobs.a"),
            queue_violation("jobs.a", "others"),
            queue_violation("plain.secret.x", "spies"),
        ],
    )
    .await;
    // The allowed queue subscription receives.
    let admin = s.client_with(up("admin", "adm-1")).await;
    admin.publish("jobs.a", "j".into()).await.unwrap();
    assert_eq!(r.next().await.as_deref(), Some("MSG jobs.a 1 1"));
    assert_eq!(r.next().await.as_deref(), Some("j"));
}

fn bcrypt_2a(secret: &str) -> String {
    bcrypt::hash_with_result(secret, 4)
        .unwrap()
        .format_for_version(bcrypt::Version::TwoA)
}

#[tokio::test]
async fn bcrypt_single_user_and_users_list() {
    let single = format!(
        "authorization {{\n  user: solo\n  password: \"{}\"\n}}\n",
        bcrypt_2a("solo-Secret-1")
    );
    let s = Server::start_with_config(&single, &[]);
    let c = s.client_with(up("solo", "solo-Secret-1")).await;
    common::sync(&c).await;
    assert_rejected(&s, up("solo", "solo-Secret-2"), "wrong password").await;

    // $2a$ and $2b$ hashes, next to a plain password.
    let list = format!(
        "authorization {{\n  users = [\n    {{ user: a, password: \"{}\" }}\n    {{ user: b, password: \"{}\" }}\n    {{ user: p, password: \"plain-Pw\" }}\n  ]\n}}\n",
        bcrypt_2a("a-Secret"),
        bcrypt::hash("b-Secret", 4).unwrap()
    );
    assert!(list.contains("$2b$"));
    let s = Server::start_with_config(&list, &[]);
    for (u, p) in [("a", "a-Secret"), ("b", "b-Secret"), ("p", "plain-Pw")] {
        let c = s.client_with(up(u, p)).await;
        common::sync(&c).await;
    }
    assert_rejected(&s, up("a", "b-Secret"), "a with b's password").await;
    assert_rejected(&s, up("b", "a-Secret"), "b with a's password").await;
    assert_raw_rejected(&s, &creds_json("b", "b-secret")).await;
}

#[tokio::test]
async fn bcrypt_token() {
    let conf = format!(
        "authorization {{\n  token: \"{}\"\n}}\n",
        bcrypt_2a("hashed-Token-1")
    );
    let s = Server::start_with_config(&conf, &[]);
    let c = s
        .client_with(ConnectOptions::with_token("hashed-Token-1".into()))
        .await;
    common::sync(&c).await;
    assert_rejected(
        &s,
        ConnectOptions::with_token("hashed-Token-2".into()),
        "wrong token",
    )
    .await;
}

#[tokio::test]
async fn permission_violations_are_logged_with_client_user_and_subject() {
    let s = Server::start_with_config(PERMS, &[]);
    let mut r = raw_login(&s, &creds_json("app", "app-1")).await;
    let local = r.writer.local_addr().unwrap();
    expect_errs_then_pong(
        &mut r,
        "PUB nope.pub 1\r\nx\r\nSUB nope.sub 1\r\n",
        &[pub_violation("nope.pub"), sub_violation("nope.sub")],
    )
    .await;
    let addr = format!("{}:{}", local.ip(), local.port());
    let deadline = Instant::now() + STEP;
    loop {
        let log = s.log();
        let lines: Vec<&str> = log.lines().filter(|l| l.contains(&addr)).collect();
        // The reference's wording is `Publish Violation - User "app",
        // Subject "nope.pub"`; required here: address, user, subject.
        let names = |l: &&str, subject: &str| {
            l.contains("Violation") && l.contains(subject) && l.contains("\"app\"")
        };
        let publish = lines.iter().any(|l| names(l, "\"nope.pub\""));
        let subscribe = lines.iter().any(|l| names(l, "\"nope.sub\""));
        if publish && subscribe {
            assert!(!log.contains("app-1"), "password in the log\n{log}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "expected `{addr} - cid:N - Publish Violation - User \"app\", Subject \"nope.pub\"` and the Subscription one\n--- log ---\n{log}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn allow_responses_expire() {
    let conf = r#"
authorization {
  users = [
    { user: admin, password: "adm-1" }
    { user: slow, password: "slow-1", permissions: { subscribe: "svc.>", allow_responses: { max: 5, expires: "1s" } } }
  ]
}
"#;
    let s = Server::start_with_config(conf, &[]);
    let mut resp = raw_login(&s, &creds_json("slow", "slow-1")).await;
    expect_errs_then_pong(&mut resp, "SUB svc.x 1\r\n", &[]).await;
    let mut req = raw_login(&s, &creds_json("admin", "adm-1")).await;
    expect_errs_then_pong(&mut req, "SUB in.1 9\r\nPUB svc.x in.1 1\r\nq\r\n", &[]).await;
    assert_eq!(resp.next().await.as_deref(), Some("MSG svc.x 1 in.1 1"));
    assert_eq!(resp.next().await.as_deref(), Some("q"));
    // In time: allowed.
    expect_errs_then_pong(&mut resp, "PUB in.1 2\r\nr1\r\n", &[]).await;
    assert_eq!(req.next().await.as_deref(), Some("MSG in.1 9 2"));
    assert_eq!(req.next().await.as_deref(), Some("r1"));
    // After the permit expired: denied, although max is not reached.
    tokio::time::sleep(Duration::from_millis(1600)).await;
    expect_errs_then_pong(&mut resp, "PUB in.1 2\r\nr2\r\n", &[pub_violation("in.1")]).await;
    expect_errs_then_pong(&mut req, "", &[]).await;
}

#[tokio::test]
async fn agentic_auth_timeout_is_two_seconds() {
    let store = tempfile::tempdir().unwrap();
    let s = agentic_server(&store);
    let start = Instant::now();
    let mut r = raw_auth_required(&s).await;
    assert_eq!(
        r.next().await.as_deref(),
        Some("-ERR 'Authentication Timeout'")
    );
    let waited = start.elapsed();
    r.expect_closed(STEP).await;
    assert!(
        waited >= Duration::from_millis(1700) && waited < Duration::from_secs(6),
        "timeout: 2 fired after {waited:?}"
    );
}

#[tokio::test]
async fn default_permissions_apply_to_users_without_their_own() {
    let kp = nkeys::KeyPair::new_user();
    let conf = format!(
        r#"
authorization {{
  default_permissions: {{ publish: "pub.>", subscribe: {{ deny: "secret.>" }} }}
  users = [
    {{ user: plain, password: "plain-Pw-1" }}
    {{ user: own, password: "own-Pw-1", permissions: {{ publish: "own.>" }} }}
    {{ nkey: {} }}
  ]
}}
"#,
        kp.public_key()
    );
    let s = Server::start_with_config(&conf, &[]);
    let mut plain = raw_login(&s, &creds_json("plain", "plain-Pw-1")).await;
    expect_errs_then_pong(
        &mut plain,
        "PUB pub.a 1\r\nx\r\nPUB own.a 1\r\nx\r\nSUB secret.a 1\r\nSUB other 2\r\n",
        &[pub_violation("own.a"), sub_violation("secret.a")],
    )
    .await;
    // Own permissions replace the defaults entirely (subscribe included).
    let mut own = raw_login(&s, &creds_json("own", "own-Pw-1")).await;
    expect_errs_then_pong(
        &mut own,
        "PUB own.a 1\r\nx\r\nPUB pub.a 1\r\nx\r\nSUB secret.a 1\r\n",
        &[pub_violation("pub.a")],
    )
    .await;
    // nkey users get the defaults too.
    let mut nk = s.raw().await;
    let nonce = nk.info["nonce"].as_str().unwrap().to_string();
    let sig =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(kp.sign(nonce.as_bytes()).unwrap());
    nk.handshake(
        &serde_json::json!({"nkey": kp.public_key(), "sig": sig, "verbose": false}).to_string(),
    )
    .await;
    expect_errs_then_pong(
        &mut nk,
        "PUB pub.n 1\r\nx\r\nPUB own.n 1\r\nx\r\n",
        &[pub_violation("own.n")],
    )
    .await;
}

#[tokio::test]
async fn credentials_are_ignored_when_no_auth_is_configured() {
    let s = Server::start(&[]);
    let r = s.raw().await;
    assert_ne!(
        r.info["auth_required"],
        serde_json::json!(true),
        "{}",
        r.info
    );
    let c = s.client_with(up("anyone", "anything")).await;
    common::sync(&c).await;
    let t = s
        .client_with(ConnectOptions::with_token("any-token".into()))
        .await;
    common::sync(&t).await;
}

#[tokio::test]
async fn verbose_client_gets_only_the_error_on_bad_credentials() {
    let s = Server::start_with_config(SINGLE_USER, &[]);
    let mut r = raw_auth_required(&s).await;
    r.send("CONNECT {\"user\":\"alice\",\"pass\":\"bad\",\"verbose\":true}\r\nPING\r\n")
        .await;
    assert_eq!(r.next().await.as_deref(), Some(AUTH_VIOLATION));
    r.expect_closed(STEP).await;
    // And +OK for the good one.
    let mut ok = s.raw().await;
    ok.send("CONNECT {\"user\":\"alice\",\"pass\":\"pw-Alice-7f3a\",\"verbose\":true}\r\nPING\r\n")
        .await;
    assert_eq!(ok.next().await.as_deref(), Some("+OK"));
    assert_eq!(ok.next().await.as_deref(), Some("PONG"));
}

#[tokio::test]
async fn passwords_with_special_characters() {
    // Quoted strings keep spaces, comment markers, braces, quotes and
    // dollar signs literally (no variable lookup inside quotes).
    let users = [
        ("spacey", "pass with  spaces"),
        ("hashy", "p#not-a-comment//nor-this"),
        ("bracey", "{[p:a=s,s]}"),
        ("dollar", "$NOT_A_VARIABLE"),
        ("quote", "it's \\\"quoted\\\""),
        ("unicode", "pässwörd-✓"),
    ];
    let mut conf = String::from("authorization {\n  users = [\n");
    for (u, p) in users {
        conf.push_str(&format!("    {{ user: \"{u}\", password: \"{p}\" }}\n"));
    }
    conf.push_str("  ]\n}\n");
    let s = Server::start_with_config(&conf, &[]);
    for (u, p) in users {
        let p = p.replace("\\\"", "\"");
        let c = s.client_with(up(u, &p)).await;
        common::sync(&c).await;
        assert_rejected(&s, up(u, &format!("{p}x")), "one character more").await;
    }
}

#[tokio::test]
async fn commands_pipelined_after_a_bad_connect_are_not_processed() {
    let s = Server::start_with_config(SINGLE_USER, &[]);
    let c = s.client_with(up("alice", "pw-Alice-7f3a")).await;
    let mut sub = c.subscribe("leak").await.unwrap();
    common::sync(&c).await;

    let mut r = raw_auth_required(&s).await;
    r.send(&format!(
        "CONNECT {}\r\nSUB leak 1\r\nPUB leak 6\r\nleaked\r\nPING\r\n",
        creds_json("alice", "wrong")
    ))
    .await;
    let lines = {
        let mut v = Vec::new();
        while let Some(l) = r.next().await {
            v.push(l);
        }
        v
    };
    assert_eq!(lines, [AUTH_VIOLATION], "only the error, then close");
    common::sync(&c).await;
    assert!(
        common::queued(&mut sub).is_none(),
        "a publish from an unauthenticated connection was delivered"
    );
}
