//! Configuration reload (SIGHUP and `--signal reload=PID`) of the
//! authorization section: users added and removed, passwords and
//! permissions changed, and a broken file that must leave the running
//! configuration alone.
//!
//! Reference behaviour (nats-server 2.9.10), which these tests encode:
//! * a connection whose password changed is sent
//!   `-ERR 'Authorization Violation'` and closed;
//! * a connection whose user was removed altogether is closed; 2.9.10
//!   closes it without a `-ERR` (its log says "Client Closed"), broker-edge
//!   sends `-ERR 'Authorization Violation'` first — checked for ours only;
//! * connections whose user is unchanged stay open; their new permissions
//!   apply at once, and a subscription that is no longer permitted is
//!   removed with `-ERR 'Permissions Violation for Subscription to "s"
//!   (sid "N")'` while the connection stays;
//! * a file that does not parse is logged as
//!   `Failed to reload server configuration: ...` and the old one stays.

mod common;

use std::time::{Duration, Instant};

use async_nats::{ConnectErrorKind, ConnectOptions};
use common::{is_reference, within, Raw, Server, STEP};
use futures::StreamExt;

const AUTH_VIOLATION: &str = "-ERR 'Authorization Violation'";
const RELOADED: &str = "Reloaded server configuration";
const RELOAD_FAILED: &str = "Failed to reload server configuration";

fn up(user: &str, pass: &str) -> ConnectOptions {
    ConnectOptions::with_user_and_password(user.into(), pass.into())
}

fn users_conf(users: &[(&str, &str)]) -> String {
    let mut s = String::from("authorization {\n  users = [\n");
    for (u, p) in users {
        s.push_str(&format!("    {{ user: {u}, password: \"{p}\" }}\n"));
    }
    s.push_str("  ]\n}\n");
    s
}

async fn assert_rejected(s: &Server, opts: ConnectOptions, what: &str) {
    let res = tokio::time::timeout(STEP, opts.connect(s.url()))
        .await
        .unwrap_or_else(|_| panic!("{what}: connect neither failed nor succeeded"));
    match res {
        Ok(_) => panic!("{what}: connect succeeded but must be rejected"),
        Err(e) => assert_eq!(
            e.kind(),
            ConnectErrorKind::AuthorizationViolation,
            "{what}: {e}"
        ),
    }
}

async fn raw_login(s: &Server, user: &str, pass: &str) -> Raw {
    let mut r = s.raw().await;
    r.handshake(&serde_json::json!({"user": user, "pass": pass, "verbose": false}).to_string())
        .await;
    r
}

/// The connection answers a PING (it is open and logged in).
async fn assert_open(r: &mut Raw, who: &str) {
    r.send("PING\r\n").await;
    assert_eq!(
        r.next().await.as_deref(),
        Some("PONG"),
        "{who}'s connection must stay open"
    );
}

/// Lines the server sends until it closes the connection (bounded).
async fn lines_until_closed(r: &mut Raw, who: &str) -> Vec<String> {
    let deadline = Instant::now() + STEP;
    let mut lines = Vec::new();
    loop {
        assert!(
            Instant::now() < deadline,
            "{who}'s connection was not closed; got {lines:?}"
        );
        match r.next().await {
            Some(l) => lines.push(l),
            None => return lines,
        }
    }
}

/// Waits until `needle` occurs at least `n` times in the log.
async fn wait_log_count(s: &Server, needle: &str, n: usize) {
    let deadline = Instant::now() + STEP;
    while s.log().matches(needle).count() < n {
        assert!(
            Instant::now() < deadline,
            "log never had {n}x {needle:?}\n--- log ---\n{}",
            s.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn rewrite(s: &Server, conf: &str) {
    std::fs::write(s.config_path(), conf).unwrap();
}

#[tokio::test]
async fn sighup_adds_a_user_and_removes_another() {
    let s = Server::start_with_config(
        &users_conf(&[("alice", "alice-Pw-1"), ("carol", "carol-Pw-1")]),
        &[],
    );
    let mut alice = raw_login(&s, "alice", "alice-Pw-1").await;
    let mut carol = raw_login(&s, "carol", "carol-Pw-1").await;
    let carol_client = s.client_with(up("carol", "carol-Pw-1")).await;
    let mut carol_sub = carol_client.subscribe("news").await.unwrap();
    common::sync(&carol_client).await;
    assert_rejected(&s, up("bob", "bob-Pw-1"), "bob before the reload").await;

    rewrite(
        &s,
        &users_conf(&[("bob", "bob-Pw-1"), ("carol", "carol-Pw-1")]),
    );
    s.signal(libc::SIGHUP);
    s.wait_log(RELOADED, STEP).await;

    // Alice was removed: her connection is closed.
    let lines = lines_until_closed(&mut alice, "alice").await;
    assert!(
        lines.iter().all(|l| l == AUTH_VIOLATION),
        "alice got {lines:?}"
    );
    if !is_reference() {
        assert_eq!(lines, [AUTH_VIOLATION], "broker-edge tells alice why");
    }
    assert_rejected(&s, up("alice", "alice-Pw-1"), "alice after the reload").await;

    // Bob is new and can log in and talk to carol, who was never cut off.
    let bob = s.client_with(up("bob", "bob-Pw-1")).await;
    bob.publish("news", "bob is here".into()).await.unwrap();
    let m = within("carol gets bob's news", carol_sub.next())
        .await
        .unwrap();
    assert_eq!(m.payload.as_ref(), b"bob is here");
    assert_open(&mut carol, "carol").await;
    common::sync(&carol_client).await;
    assert!(
        !s.log().contains("alice-Pw-1") && !s.log().contains("bob-Pw-1"),
        "{}",
        s.log()
    );
}

#[tokio::test]
async fn signal_flag_reload_with_a_changed_password() {
    let s = Server::start_with_config(
        &users_conf(&[("alice", "alice-Pw-1"), ("carol", "carol-Pw-1")]),
        &[],
    );
    let mut alice = raw_login(&s, "alice", "alice-Pw-1").await;
    let mut carol = raw_login(&s, "carol", "carol-Pw-1").await;

    rewrite(
        &s,
        &users_conf(&[("alice", "alice-Pw-2"), ("carol", "carol-Pw-1")]),
    );
    let pid = s.pid().to_string();
    let (status, out, err) =
        common::run_to_exit(&["--signal", &format!("reload={pid}")], STEP).await;
    assert!(
        status.success(),
        "--signal reload failed: {status}\n{out}\n{err}"
    );
    s.wait_log(RELOADED, STEP).await;

    // Alice's password changed: told and closed, in both servers.
    let lines = lines_until_closed(&mut alice, "alice").await;
    assert_eq!(lines, [AUTH_VIOLATION]);
    assert_open(&mut carol, "carol").await;
    assert_rejected(&s, up("alice", "alice-Pw-1"), "old password").await;
    let a = s.client_with(up("alice", "alice-Pw-2")).await;
    common::sync(&a).await;
}

#[tokio::test]
async fn reload_with_a_broken_file_keeps_the_old_configuration() {
    let s = Server::start_with_config(&users_conf(&[("alice", "alice-Pw-1")]), &[]);
    let mut alice = raw_login(&s, "alice", "alice-Pw-1").await;

    // Adds bob, but the file does not parse.
    rewrite(
        &s,
        "authorization {\n  users = [\n    { user: bob, password: \"bob-Pw-1\" }\n",
    );
    s.signal(libc::SIGHUP);
    s.wait_log(RELOAD_FAILED, STEP).await;
    let log = s.log();
    let line = log.lines().find(|l| l.contains(RELOAD_FAILED)).unwrap();
    assert!(line.contains("[ERR]"), "reload failure is an error: {line}");
    assert!(!log.contains(RELOADED), "{log}");

    assert_open(&mut alice, "alice").await;
    let a = s.client_with(up("alice", "alice-Pw-1")).await;
    common::sync(&a).await;
    assert_rejected(&s, up("bob", "bob-Pw-1"), "bob from the broken file").await;

    // Once the file is fixed, the next reload takes it.
    rewrite(
        &s,
        &users_conf(&[("alice", "alice-Pw-1"), ("bob", "bob-Pw-1")]),
    );
    s.signal(libc::SIGHUP);
    s.wait_log(RELOADED, STEP).await;
    let b = s.client_with(up("bob", "bob-Pw-1")).await;
    common::sync(&b).await;
    assert_open(&mut alice, "alice").await;
}

#[tokio::test]
async fn reload_changes_permissions_of_open_connections() {
    let perms = |allow: &str| {
        format!(
            "authorization {{\n  users = [\n    {{ user: app, password: \"app-Pw-1\", permissions: {{ publish: \"{allow}\" }} }}\n  ]\n}}\n"
        )
    };
    let s = Server::start_with_config(&perms("before.>"), &[]);
    let mut app = raw_login(&s, "app", "app-Pw-1").await;
    app.send("PUB after.x 1\r\nx\r\nPING\r\n").await;
    assert_eq!(
        app.next().await.as_deref(),
        Some("-ERR 'Permissions Violation for Publish to \"after.x\"'")
    );
    assert_eq!(app.next().await.as_deref(), Some("PONG"));

    rewrite(&s, &perms("after.>"));
    s.signal(libc::SIGHUP);
    wait_log_count(&s, RELOADED, 1).await;

    // Same connection, new permissions.
    app.send("PUB after.x 1\r\nx\r\nPUB before.x 1\r\nx\r\nPING\r\n")
        .await;
    assert_eq!(
        app.next().await.as_deref(),
        Some("-ERR 'Permissions Violation for Publish to \"before.x\"'")
    );
    assert_eq!(app.next().await.as_deref(), Some("PONG"));
}

#[tokio::test]
async fn reload_drops_subscriptions_no_longer_permitted() {
    let conf = |sub: &str| {
        format!(
            "authorization {{\n  users = [\n    {{ user: s, password: \"s-Pw-1\", permissions: {{ subscribe: {sub} }} }}\n    {{ user: adm, password: \"adm-Pw-1\" }}\n  ]\n}}\n"
        )
    };
    let s = Server::start_with_config(&conf("\"a.>\""), &[]);
    let mut sub = raw_login(&s, "s", "s-Pw-1").await;
    sub.send("SUB a.x 1\r\nSUB a.y 2\r\nPING\r\n").await;
    assert_eq!(sub.next().await.as_deref(), Some("PONG"));

    rewrite(&s, &conf("[\"b.>\", \"a.y\"]"));
    s.signal(libc::SIGHUP);
    s.wait_log(RELOADED, STEP).await;

    // The subscription that lost its permission is removed and the client
    // told so (with its sid); the connection and the other one stay.
    assert_eq!(
        sub.next().await.as_deref(),
        Some("-ERR 'Permissions Violation for Subscription to \"a.x\" (sid \"1\")'")
    );
    let mut adm = raw_login(&s, "adm", "adm-Pw-1").await;
    adm.send("PUB a.x 2\r\nhi\r\nPUB a.y 2\r\nyo\r\nPING\r\n")
        .await;
    assert_eq!(adm.next().await.as_deref(), Some("PONG"));
    assert_eq!(sub.next().await.as_deref(), Some("MSG a.y 2 2"));
    assert_eq!(sub.next().await.as_deref(), Some("yo"));
    assert_open(&mut sub, "s").await;
}

#[tokio::test]
async fn reload_with_a_changed_token() {
    let s = Server::start_with_config("authorization {\n  token: \"tok-Old-1\"\n}\n", &[]);
    let mut old = s.raw().await;
    old.handshake(r#"{"auth_token":"tok-Old-1","verbose":false}"#)
        .await;
    rewrite(&s, "authorization {\n  token: \"tok-New-2\"\n}\n");
    s.signal(libc::SIGHUP);
    s.wait_log(RELOADED, STEP).await;
    let lines = lines_until_closed(&mut old, "old token").await;
    assert_eq!(lines, [AUTH_VIOLATION]);
    let c = s
        .client_with(ConnectOptions::with_token("tok-New-2".into()))
        .await;
    common::sync(&c).await;
    assert_rejected(
        &s,
        ConnectOptions::with_token("tok-Old-1".into()),
        "old token",
    )
    .await;
}

#[tokio::test]
async fn reload_removes_an_nkey_user() {
    let gone = nkeys::KeyPair::new_user();
    let kept = nkeys::KeyPair::new_user();
    let conf = |keys: &[&nkeys::KeyPair]| {
        let mut s = String::from("authorization {\n  users = [\n");
        for k in keys {
            s.push_str(&format!("    {{ nkey: {} }}\n", k.public_key()));
        }
        s.push_str("  ]\n}\n");
        s
    };
    let s = Server::start_with_config(&conf(&[&gone, &kept]), &[]);
    let login = |kp: &nkeys::KeyPair, r: &Raw| {
        use base64::Engine;
        let nonce = r.info["nonce"].as_str().expect("nonce in INFO");
        let sig = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(kp.sign(nonce.as_bytes()).unwrap());
        serde_json::json!({"nkey": kp.public_key(), "sig": sig, "verbose": false}).to_string()
    };
    let mut g = s.raw().await;
    let json = login(&gone, &g);
    g.handshake(&json).await;
    let mut k = s.raw().await;
    let json = login(&kept, &k);
    k.handshake(&json).await;

    rewrite(&s, &conf(&[&kept]));
    s.signal(libc::SIGHUP);
    s.wait_log(RELOADED, STEP).await;

    let lines = lines_until_closed(&mut g, "removed nkey").await;
    assert!(
        lines.iter().all(|l| l == AUTH_VIOLATION),
        "removed nkey got {lines:?}"
    );
    assert_open(&mut k, "kept nkey").await;
    assert_rejected(
        &s,
        ConnectOptions::with_nkey(gone.seed().unwrap()),
        "removed nkey",
    )
    .await;
    let c = s
        .client_with(ConnectOptions::with_nkey(kept.seed().unwrap()))
        .await;
    common::sync(&c).await;
}

#[tokio::test]
async fn reload_rereads_included_files() {
    // The users live in an included file next to the main one; editing
    // only that file and reloading takes effect.
    let dir = tempfile::tempdir().unwrap();
    let main = dir.path().join("main.conf");
    let users = dir.path().join("users.conf");
    std::fs::write(&users, users_conf(&[("alice", "alice-Pw-1")])).unwrap();
    std::fs::write(&main, "include users.conf\n").unwrap();
    let s = Server::start(&["-c", main.to_str().unwrap()]);
    let mut alice = raw_login(&s, "alice", "alice-Pw-1").await;
    assert_rejected(&s, up("bob", "bob-Pw-1"), "bob before").await;

    std::fs::write(
        &users,
        users_conf(&[("alice", "alice-Pw-1"), ("bob", "bob-Pw-1")]),
    )
    .unwrap();
    s.signal(libc::SIGHUP);
    s.wait_log(RELOADED, STEP).await;
    let b = s.client_with(up("bob", "bob-Pw-1")).await;
    common::sync(&b).await;
    assert_open(&mut alice, "alice").await;
}

/// Reload applies logging settings: `debug: true` turns on [DBG] lines.
#[tokio::test]
async fn reload_turns_on_debug_logging() {
    let s = Server::start_with_config("debug: false\n", &[]);
    let c = s.client().await;
    common::sync(&c).await;
    assert!(!s.log().contains("[DBG]"), "debug lines before the reload");
    rewrite(&s, "debug: true\n");
    s.signal(libc::SIGHUP);
    s.wait_log(RELOADED, STEP).await;
    let c2 = s.client().await;
    common::sync(&c2).await;
    s.wait_log("[DBG]", STEP).await;
}
