//! Accounts: isolated subject spaces, and stream/service exports and
//! imports between them. Runs against the reference too
//! (`BROKER_EDGE_BIN=/usr/sbin/nats-server`).

mod common;

use std::time::Duration;

use common::{sync, Server};
use futures::StreamExt;

const CONF: &str = r#"
accounts {
  ENG: {
    users: [ { user: eng, password: eng-Pw-1 } ]
    exports: [
      { stream: "events.>" }
      { service: "time.now" }
    ]
  }
  OPS: {
    users: [ { user: ops, password: ops-Pw-1 } ]
    imports: [
      { stream: { account: ENG, subject: "events.>" }, prefix: "eng" }
      { service: { account: ENG, subject: "time.now" }, to: "eng.time" }
    ]
  }
  SALES: {
    users: [ { user: sales, password: sales-Pw-1 } ]
  }
}
"#;

fn login(user: &str, pass: &str) -> async_nats::ConnectOptions {
    async_nats::ConnectOptions::new().user_and_password(user.into(), pass.into())
}

async fn next(sub: &mut async_nats::Subscriber, what: &str) -> async_nats::Message {
    tokio::time::timeout(Duration::from_secs(5), sub.next())
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
        .expect("subscription closed")
}

#[tokio::test]
async fn accounts_do_not_see_each_other() {
    let s = Server::start_with_config(CONF, &[]);
    let eng = s.client_with(login("eng", "eng-Pw-1")).await;
    let sales = s.client_with(login("sales", "sales-Pw-1")).await;
    let mut eng_all = eng.subscribe(">").await.unwrap();
    let mut sales_all = sales.subscribe(">").await.unwrap();
    sync(&eng).await;
    sync(&sales).await;
    // Drain the sync messages each saw of its own account.
    while tokio::time::timeout(Duration::from_millis(200), eng_all.next())
        .await
        .is_ok()
    {}
    while tokio::time::timeout(Duration::from_millis(200), sales_all.next())
        .await
        .is_ok()
    {}
    sales.publish("deal.closed", "secret".into()).await.unwrap();
    eng.publish("build.done", "ok".into()).await.unwrap();
    sales.flush().await.unwrap();
    eng.flush().await.unwrap();
    let m = next(&mut sales_all, "sales' own message").await;
    assert_eq!(m.subject.as_str(), "deal.closed");
    let m = next(&mut eng_all, "eng's own message").await;
    assert_eq!(m.subject.as_str(), "build.done");
    // Nothing crossed over.
    assert!(
        tokio::time::timeout(Duration::from_millis(500), eng_all.next())
            .await
            .is_err()
    );
    assert!(
        tokio::time::timeout(Duration::from_millis(500), sales_all.next())
            .await
            .is_err()
    );
}

#[tokio::test]
async fn stream_import_with_prefix() {
    let s = Server::start_with_config(CONF, &[]);
    let eng = s.client_with(login("eng", "eng-Pw-1")).await;
    let ops = s.client_with(login("ops", "ops-Pw-1")).await;
    let mut got = ops.subscribe("eng.events.>").await.unwrap();
    sync(&ops).await;
    eng.publish("events.deploy", "v2".into()).await.unwrap();
    eng.publish("private.x", "no".into()).await.unwrap();
    eng.flush().await.unwrap();
    let m = next(&mut got, "imported event").await;
    assert_eq!(m.subject.as_str(), "eng.events.deploy");
    assert_eq!(m.payload.as_ref(), b"v2");
    // The exporter's other subjects stay private.
    let mut leak = ops.subscribe(">").await.unwrap();
    sync(&ops).await;
    while tokio::time::timeout(Duration::from_millis(200), leak.next())
        .await
        .is_ok()
    {}
    eng.publish("private.y", "no".into()).await.unwrap();
    eng.flush().await.unwrap();
    assert!(
        tokio::time::timeout(Duration::from_millis(500), leak.next())
            .await
            .is_err()
    );
}

#[tokio::test]
async fn service_import_answers_across_accounts() {
    let s = Server::start_with_config(CONF, &[]);
    let eng = s.client_with(login("eng", "eng-Pw-1")).await;
    let ops = s.client_with(login("ops", "ops-Pw-1")).await;
    let mut svc = eng.subscribe("time.now").await.unwrap();
    sync(&eng).await;
    let responder = eng.clone();
    tokio::spawn(async move {
        while let Some(m) = svc.next().await {
            if let Some(r) = m.reply {
                responder.publish(r, "12:00".into()).await.unwrap();
                responder.flush().await.unwrap();
            }
        }
    });
    let resp = tokio::time::timeout(Duration::from_secs(5), ops.request("eng.time", "".into()))
        .await
        .expect("request timed out")
        .expect("request failed");
    assert_eq!(resp.payload.as_ref(), b"12:00");
    // SALES imports nothing: nobody answers there.
    let sales = s.client_with(login("sales", "sales-Pw-1")).await;
    let err = tokio::time::timeout(Duration::from_secs(5), sales.request("eng.time", "".into()))
        .await
        .expect("no answer at all")
        .expect_err("sales should get no responders");
    assert_eq!(err.kind(), async_nats::RequestErrorKind::NoResponders);
}

#[tokio::test]
async fn import_without_export_is_a_startup_error() {
    if common::is_reference() {
        // nats-server 2.9 starts anyway (and keeps running), logging the
        // import as invalid; Broker Edge refuses the file.
        eprintln!("skipped against the reference");
        return;
    }
    let conf = r#"
accounts {
  A: { users: [ { user: a, password: a } ] }
  B: {
    users: [ { user: b, password: b } ]
    imports: [ { stream: { account: A, subject: "x.>" } } ]
  }
}
"#;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.conf");
    std::fs::write(&path, conf).unwrap();
    let out = std::process::Command::new(common::server_bin())
        .args(["-c", path.to_str().unwrap(), "-a", "127.0.0.1", "-p", "-1"])
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "started with a bad import: {text}");
    assert!(text.contains("not allowed to import"), "{text}");
}

#[tokio::test]
async fn account_limits_connections_subscriptions_payload() {
    let conf = r#"
accounts {
  SMALL: {
    users: [ { user: small, password: small-Pw-1 } ]
    limits: { max_connections: 1, max_subscriptions: 2, max_payload: 100 }
  }
}
"#;
    let s = Server::start_with_config(conf, &[]);
    let login = r#"{"verbose":false,"pedantic":false,"user":"small","pass":"small-Pw-1"}"#;
    let mut first = s.raw().await;
    first.handshake(login).await;
    // A second connection of the same account is one too many.
    let mut second = s.raw().await;
    second.send(&format!("CONNECT {login}\r\nPING\r\n")).await;
    let line = tokio::time::timeout(Duration::from_secs(5), second.next())
        .await
        .expect("no answer");
    assert_eq!(
        line.as_deref(),
        Some("-ERR 'maximum account active connections exceeded'")
    );
    // Subscriptions past the account's limit are refused; the connection stays.
    first
        .send("SUB a 1\r\nSUB b 2\r\nSUB c 3\r\nPING\r\n")
        .await;
    assert_eq!(
        first.next().await.as_deref(),
        Some("-ERR 'maximum subscriptions exceeded'")
    );
    assert_eq!(first.next().await.as_deref(), Some("PONG"));
    // A payload over the account's limit ends the connection.
    let big = "x".repeat(200);
    first
        .send(&format!("PUB a {}\r\n{big}\r\n", big.len()))
        .await;
    assert_eq!(
        first.next().await.as_deref(),
        Some("-ERR 'Maximum Payload Violation'")
    );
}

/// Hardening #12: replies to an imported service are mapped per request.
/// A client of the exporting account can no longer reach the importing
/// account by publishing on `_R_.<importer-id>.<subject>` (account ids
/// were sequential), the mapping carries exactly one response by default,
/// and `response_type: stream` lets several through. nats-server behaves
/// the same way.
#[tokio::test]
async fn service_replies_are_mapped_per_request() {
    let conf = r#"
accounts {
  ENG: {
    users: [ { user: eng, password: eng-Pw-1 } ]
    exports: [
      { service: "time.now" }
      { service: "ticks", response_type: stream }
    ]
  }
  OPS: {
    users: [ { user: ops, password: ops-Pw-1 } ]
    imports: [
      { service: { account: ENG, subject: "time.now" } }
      { service: { account: ENG, subject: "ticks" } }
    ]
  }
}
"#;
    let s = Server::start_with_config(conf, &[]);
    let eng = s.client_with(login("eng", "eng-Pw-1")).await;
    let ops = s.client_with(login("ops", "ops-Pw-1")).await;
    // OPS listens on a plain subject and on inboxes.
    let mut victim = ops.subscribe("secret.>").await.unwrap();
    let mut inbox = ops.subscribe("reply.>").await.unwrap();
    sync(&ops).await;
    // The old injection: every small account id, by hand.
    for id in 0..8 {
        eng.publish(format!("_R_.{id}.secret.x"), "forged".into())
            .await
            .unwrap();
    }
    eng.publish("_R_.0000000000000001", "guessed".into())
        .await
        .unwrap();
    sync(&eng).await;
    // A real request: its mapped reply subject works once.
    let mut svc = eng.subscribe("time.now").await.unwrap();
    let mut ticks = eng.subscribe("ticks").await.unwrap();
    sync(&eng).await;
    ops.publish_with_reply("time.now", "reply.one", "".into())
        .await
        .unwrap();
    ops.flush().await.unwrap();
    let req = next(&mut svc, "the request in ENG").await;
    let mapped = req.reply.clone().expect("a reply subject");
    assert!(
        !mapped.as_str().starts_with("reply."),
        "the importer's reply leaked into the exporting account: {mapped}"
    );
    eng.publish(mapped.clone(), "first".into()).await.unwrap();
    eng.publish(mapped.clone(), "second".into()).await.unwrap();
    sync(&eng).await;
    let got = next(&mut inbox, "the response").await;
    assert_eq!(got.subject.as_str(), "reply.one");
    assert_eq!(got.payload.as_ref(), b"first");
    // A stream export lets several responses through.
    ops.publish_with_reply("ticks", "reply.ticks", "".into())
        .await
        .unwrap();
    ops.flush().await.unwrap();
    let req = next(&mut ticks, "the ticks request").await;
    let mapped_ticks = req.reply.clone().expect("a reply subject");
    for i in 0..3 {
        eng.publish(mapped_ticks.clone(), format!("tick {i}").into())
            .await
            .unwrap();
    }
    sync(&eng).await;
    for i in 0..3 {
        let got = next(&mut inbox, "a tick").await;
        assert_eq!(got.payload, format!("tick {i}").as_bytes());
    }
    sync(&ops).await;
    assert!(
        common::queued(&mut victim).is_none(),
        "a forged response reached OPS"
    );
    assert!(
        common::queued(&mut inbox).is_none(),
        "a second response to a singleton request reached OPS"
    );
}
