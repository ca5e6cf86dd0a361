//! The system account's request services: `$SYS.REQ.SERVER.PING[.<VERB>]`,
//! `$SYS.REQ.SERVER.<id>.<VERB>`, `$SYS.REQ.ACCOUNT.<acc>.<VERB>`,
//! `$SYS.REQ.USER.INFO`, driven with the pinned `nats` CLI 0.5.0
//! (`server ping/info/list`, `server report connections/jetstream`,
//! `account info`) and with async-nats, beside nats-server 2.15.3 with
//! the same configuration (the same keys in the answers, not the same
//! values). Users outside the system account get no responders.
//!
//!     cargo test -p broker-edge --test system
//!     BROKER_EDGE_BIN=$PWD/target/refs/bin/nats-server-2.15.3 \
//!         cargo test -p broker-edge --test system

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use common::cli::{nats, nats_ok};
use common::{ref_server_2_15, server_bin, Server};

/// A system account with a user, and an application account whose user
/// may not publish on `x.>`.
const CONF: &str = r#"
accounts {
  SYS: { users: [ { user: sys, password: sys } ] }
  APP: {
    users: [ { user: app, password: app, permissions: { publish: { deny: ["x.>"] } } } ]
    jetstream: enabled
  }
}
system_account: SYS
"#;

/// `bin` with `conf` and JetStream on a fresh store; the directory lives
/// as long as the returned guard.
fn start(bin: &Path, conf: &str) -> (Server, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("server.conf");
    std::fs::write(&path, conf).unwrap();
    let store = dir.path().join("store");
    let s = Server::start_bin(
        bin,
        &[
            "-c",
            path.to_str().unwrap(),
            "-js",
            "-sd",
            store.to_str().unwrap(),
        ],
    );
    (s, dir)
}

async fn login(s: &Server, user: &str) -> async_nats::Client {
    s.client_with(async_nats::ConnectOptions::with_user_and_password(
        user.into(),
        user.into(),
    ))
    .await
}

/// A request that must be answered; the answer as JSON.
async fn request(c: &async_nats::Client, subject: &str, body: &str) -> Value {
    let m = tokio::time::timeout(
        Duration::from_secs(10),
        c.request(subject.to_string(), body.to_string().into()),
    )
    .await
    .unwrap_or_else(|_| panic!("no answer to {subject} within 10s"))
    .unwrap_or_else(|e| panic!("request {subject}: {e}"));
    serde_json::from_slice(&m.payload)
        .unwrap_or_else(|e| panic!("{subject}: not JSON ({e}): {:?}", m.payload))
}

/// A request nobody may answer: the 503 status (no responders).
async fn no_responders(c: &async_nats::Client, subject: &str) {
    let r = tokio::time::timeout(
        Duration::from_secs(10),
        c.request(subject.to_string(), "{}".into()),
    )
    .await
    .unwrap_or_else(|_| panic!("{subject}: neither answer nor status within 10s"));
    match r {
        Err(e) if e.kind() == async_nats::RequestErrorKind::NoResponders => {}
        Err(e) => panic!("{subject}: {e}, expected no responders"),
        Ok(m) => panic!(
            "{subject}: answered {:?}, expected no responders",
            String::from_utf8_lossy(&m.payload)
        ),
    }
}

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default()
}

/// Checks the reference's envelope around an answer from `s`.
fn check_envelope(v: &Value, server_id: &str) {
    let server = &v["server"];
    for k in [
        "name",
        "host",
        "id",
        "ver",
        "jetstream",
        "flags",
        "seq",
        "time",
    ] {
        assert!(server.get(k).is_some(), "server.{k} missing in {v}");
    }
    assert_eq!(server["id"], server_id, "{v}");
    assert_eq!(server["jetstream"], true, "{v}");
    assert!(server["seq"].as_u64().is_some_and(|n| n > 0), "{v}");
    assert!(
        chrono::DateTime::parse_from_rfc3339(server["time"].as_str().unwrap()).is_ok(),
        "{v}"
    );
}

#[tokio::test]
async fn varz_over_nats_in_the_envelope() {
    let (s, _d) = start(&server_bin(), CONF);
    let varz = s.json("/varz").await;
    let id = varz["server_id"].as_str().unwrap().to_string();
    let sys = login(&s, "sys").await;

    let a = request(&sys, "$SYS.REQ.SERVER.PING.VARZ", "").await;
    check_envelope(&a, &id);
    assert_eq!(keys(&a), keys(&serde_json::json!({"server": 0, "data": 0})));
    assert_eq!(a["data"]["server_id"], id.as_str());
    assert_eq!(a["data"]["port"], varz["port"]);
    assert!(a["data"]["jetstream"]["config"].is_object(), "{a}");

    // Addressed to this server by id, and filtered by its name.
    let b = request(&sys, &format!("$SYS.REQ.SERVER.{id}.VARZ"), "{}").await;
    check_envelope(&b, &id);
    assert!(
        b["server"]["seq"].as_u64() > a["server"]["seq"].as_u64(),
        "sequence numbers grow: {a} then {b}"
    );
    let name = a["server"]["name"].as_str().unwrap();
    let body = format!(r#"{{"server_name":"{name}","exact_match":true}}"#);
    let c = request(&sys, "$SYS.REQ.SERVER.PING.VARZ", &body).await;
    assert_eq!(c["data"]["server_id"], id.as_str());

    // A body that is not the options' JSON: code 400, no data.
    let e = request(&sys, "$SYS.REQ.SERVER.PING.CONNZ", r#"{"limit":"x"}"#).await;
    assert_eq!(e["error"]["code"], 400, "{e}");
    assert!(e.get("data").is_none(), "{e}");

    // STATSZ: the plain ping and its named form.
    for subject in ["$SYS.REQ.SERVER.PING", "$SYS.REQ.SERVER.PING.STATSZ"] {
        let st = request(&sys, subject, "").await;
        check_envelope(&st, &id);
        let z = &st["statsz"];
        assert!(z["connections"].as_u64().is_some_and(|n| n >= 1), "{st}");
        assert_eq!(z["active_servers"], 1, "{st}");
        assert!(z["jetstream"]["stats"].is_object(), "{st}");
    }
    // IDZ is not enveloped.
    let idz = request(&sys, "$SYS.REQ.SERVER.PING.IDZ", "").await;
    assert_eq!(idz["id"], id.as_str(), "{idz}");
    assert!(idz.get("server").is_none(), "{idz}");

    // CONNZ with the CLI's options: paging and who is connected.
    let _app = login(&s, "app").await;
    let cz = request(
        &sys,
        "$SYS.REQ.SERVER.PING.CONNZ",
        r#"{"auth":true,"subscriptions":true,"limit":1,"sort":"cid"}"#,
    )
    .await;
    let d = &cz["data"];
    assert_eq!(d["limit"], 1, "{cz}");
    assert_eq!(d["num_connections"], 1, "{cz}");
    assert!(d["total"].as_u64().is_some_and(|n| n >= 2), "{cz}");
    let cz = request(&sys, "$SYS.REQ.SERVER.PING.CONNZ", r#"{"auth":true}"#).await;
    let accounts: BTreeSet<&str> = cz["data"]["connections"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["account"].as_str())
        .collect();
    assert!(accounts.contains("SYS") && accounts.contains("APP"), "{cz}");
    let users: BTreeSet<&str> = cz["data"]["connections"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["authorized_user"].as_str())
        .collect();
    assert!(users.contains("sys") && users.contains("app"), "{cz}");

    // The other monitoring verbs answer in the envelope.
    for verb in [
        "SUBSZ", "JSZ", "HEALTHZ", "LEAFZ", "ACCOUNTZ", "ROUTEZ", "GATEWAYZ",
    ] {
        let v = request(&sys, &format!("$SYS.REQ.SERVER.PING.{verb}"), "").await;
        check_envelope(&v, &id);
        assert!(v["data"].is_object(), "{verb}: {v}");
    }
    let az = request(&sys, "$SYS.REQ.SERVER.PING.ACCOUNTZ", "").await;
    assert_eq!(az["data"]["system_account"], "SYS", "{az}");
    let hz = request(&sys, "$SYS.REQ.SERVER.PING.HEALTHZ", "").await;
    assert_eq!(hz["data"]["status"], "ok", "{hz}");
}

#[tokio::test]
async fn account_requests_and_user_info() {
    let (s, _d) = start(&server_bin(), CONF);
    let sys = login(&s, "sys").await;
    let app = login(&s, "app").await;
    common::sync(&app).await;

    // Who am I, from both accounts.
    let me = request(&app, "$SYS.REQ.USER.INFO", "").await;
    let d = &me["data"];
    assert_eq!(d["user"], "app", "{me}");
    assert_eq!(d["account"], "APP", "{me}");
    assert_eq!(
        d["permissions"]["publish"]["deny"],
        serde_json::json!(["x.>"]),
        "{me}"
    );
    let me = request(&sys, "$SYS.REQ.USER.INFO", "").await;
    assert_eq!(me["data"]["user"], "sys", "{me}");
    assert_eq!(me["data"]["account"], "SYS", "{me}");
    assert!(me["data"].get("permissions").is_none(), "{me}");

    // One account's connections, asked from the system account ...
    let cz = request(&sys, "$SYS.REQ.ACCOUNT.APP.CONNZ", r#"{"auth":true}"#).await;
    let conns = cz["data"]["connections"].as_array().unwrap();
    assert_eq!(conns.len(), 1, "{cz}");
    assert_eq!(conns[0]["account"], "APP", "{cz}");
    // ... and by the account itself on the subjects the reference imports.
    for subject in ["$SYS.REQ.SERVER.PING.CONNZ", "$SYS.REQ.ACCOUNT.PING.CONNZ"] {
        let cz = request(&app, subject, r#"{"auth":true}"#).await;
        let conns = cz["data"]["connections"].as_array().unwrap();
        assert_eq!(conns.len(), 1, "{subject}: {cz}");
        assert_eq!(conns[0]["authorized_user"], "app", "{subject}: {cz}");
    }
    let st = request(&app, "$SYS.REQ.ACCOUNT.PING.STATZ", "").await;
    let list = st["data"]["account_statz"].as_array().unwrap();
    assert_eq!(list.len(), 1, "{st}");
    assert_eq!(list[0]["acc"], "APP", "{st}");
    assert_eq!(list[0]["conns"], 1, "{st}");

    let info = request(&sys, "$SYS.REQ.ACCOUNT.APP.INFO", "").await;
    assert_eq!(info["data"]["account_name"], "APP", "{info}");
    assert_eq!(info["data"]["client_connections"], 1, "{info}");
    assert_eq!(info["data"]["jetstream_enabled"], true, "{info}");
    let info = request(&sys, "$SYS.REQ.ACCOUNT.SYS.INFO", "").await;
    assert_eq!(info["data"]["is_system"], true, "{info}");
    let info = request(&sys, "$SYS.REQ.ACCOUNT.NOPE.INFO", "").await;
    assert_eq!(info["error"]["code"], 500, "{info}");

    let st = request(&sys, "$SYS.REQ.ACCOUNT.PING.STATZ", "").await;
    let names: BTreeSet<&str> = st["data"]["account_statz"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a["acc"].as_str())
        .collect();
    assert_eq!(names, BTreeSet::from(["APP", "SYS"]), "{st}");

    let js = request(&sys, "$SYS.REQ.ACCOUNT.APP.JSZ", "").await;
    assert_eq!(js["data"]["name"], "APP", "{js}");
    let js = request(&sys, "$SYS.REQ.ACCOUNT.SYS.JSZ", "").await;
    assert_eq!(js["error"]["code"], 500, "{js}");

    // The application's subscriptions, not the system user's: of the
    // two clients' request inboxes only the application's.
    let sz = request(&sys, "$SYS.REQ.ACCOUNT.APP.SUBSZ", "").await;
    let subs = sz["data"]["subscriptions_list"].as_array().unwrap();
    let inboxes = subs
        .iter()
        .filter(|s| s["subject"].as_str().unwrap().starts_with("_INBOX."))
        .count();
    assert_eq!(inboxes, 1, "{sz}");
}

#[tokio::test]
async fn users_outside_the_system_account_are_denied() {
    let (s, _d) = start(&server_bin(), CONF);
    let sys = login(&s, "sys").await;
    let app = login(&s, "app").await;
    let id = s.json("/varz").await["server_id"]
        .as_str()
        .unwrap()
        .to_string();
    for subject in [
        "$SYS.REQ.SERVER.PING".to_string(),
        "$SYS.REQ.SERVER.PING.VARZ".to_string(),
        "$SYS.REQ.SERVER.PING.JSZ".to_string(),
        format!("$SYS.REQ.SERVER.{id}.VARZ"),
        "$SYS.REQ.ACCOUNT.SYS.CONNZ".to_string(),
        "$SYS.REQ.ACCOUNT.APP.INFO".to_string(),
    ] {
        no_responders(&app, &subject).await;
    }
    let home = tempfile::tempdir().unwrap();
    let out = nats(
        &s,
        home.path(),
        &["--user", "app", "--password", "app", "server", "ping"],
    )
    .await;
    assert!(!out.ok, "{}", out.stdout);
    assert!(
        out.stdout.contains("503 status"),
        "{}\n{}",
        out.stdout,
        out.stderr
    );

    // The system account's traffic is not visible from another account:
    // the application's own marker is the first thing its `$SYS.>`
    // subscription sees, after the system user's request went through.
    let mut spy = app.subscribe("$SYS.>").await.unwrap();
    common::sync(&app).await;
    request(&sys, "$SYS.REQ.SERVER.PING.VARZ", "").await;
    sys.flush().await.unwrap();
    app.publish("$SYS.marker", "m".into()).await.unwrap();
    app.flush().await.unwrap();
    let first = tokio::time::timeout(Duration::from_secs(10), futures::StreamExt::next(&mut spy))
        .await
        .expect("the marker arrives")
        .unwrap();
    assert_eq!(first.subject.as_str(), "$SYS.marker");
}

/// Without accounts there is nobody in the system account: the server
/// requests go unanswered, but anyone may ask who they are.
#[tokio::test]
async fn without_accounts_only_user_info() {
    let s = Server::start(&[]);
    let c = s.client().await;
    let me = request(&c, "$SYS.REQ.USER.INFO", "").await;
    assert_eq!(me["data"]["account"], "$G", "{me}");
    assert_eq!(me["data"]["user"], "", "{me}");
    no_responders(&c, "$SYS.REQ.SERVER.PING").await;
    no_responders(&c, "$SYS.REQ.SERVER.PING.VARZ").await;
    let cz = request(&c, "$SYS.REQ.SERVER.PING.CONNZ", "").await;
    assert!(
        cz["data"]["num_connections"]
            .as_u64()
            .is_some_and(|n| n >= 1),
        "{cz}"
    );
}

fn cli_args<'a>(user: &'a str, args: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec!["--user", user, "--password", user];
    v.extend_from_slice(args);
    v
}

/// What the CLI shows, run against `bin`.
struct CliRun {
    ping: String,
    info: String,
    list: Value,
    conns: String,
    conns_json: Value,
    jetstream: String,
    app_account: String,
    sys_account: String,
}

async fn cli_run(bin: &Path) -> (CliRun, String) {
    let (s, _d) = start(bin, CONF);
    let id = s.json("/varz").await["server_id"]
        .as_str()
        .unwrap()
        .to_string();
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    // An application connection for the reports to show.
    let app = login(&s, "app").await;
    common::sync(&app).await;
    let run = |args: &'static [&'static str], user: &'static str| {
        let s = &s;
        async move { nats_ok(s, h, &cli_args(user, args)).await.stdout }
    };
    let r = CliRun {
        ping: run(&["server", "ping", "1", "--id"], "sys").await,
        info: run(&["server", "info"], "sys").await,
        list: serde_json::from_str(&run(&["server", "list", "1", "--json"], "sys").await)
            .expect("server list --json"),
        conns: run(&["server", "report", "connections"], "sys").await,
        conns_json: serde_json::from_str(
            &run(&["server", "report", "connections", "--json"], "sys").await,
        )
        .expect("report connections --json"),
        jetstream: run(&["server", "report", "jetstream"], "sys").await,
        app_account: run(&["account", "info"], "app").await,
        sys_account: run(&["account", "info"], "sys").await,
    };
    drop(app);
    (r, id)
}

#[tokio::test]
async fn cli_server_commands_beside_the_reference() {
    let (ours, id) = cli_run(&server_bin()).await;
    let (reference, ref_id) = cli_run(&ref_server_2_15()).await;
    for (r, id) in [(&ours, &id), (&reference, &ref_id)] {
        assert!(r.ping.contains(id.as_str()), "{}", r.ping);
        assert!(r.ping.contains("1 replies"), "{}", r.ping);
        assert!(
            r.info.contains(&format!("Server information for {id}")),
            "{}",
            r.info
        );
        assert!(r.info.contains("Process Details"), "{}", r.info);
        assert!(r.info.contains("Storage Directory"), "{}", r.info);
        let list = r.list.as_array().expect("an array");
        assert_eq!(list.len(), 1, "{}", r.list);
        assert_eq!(list[0]["server"]["id"], id.as_str(), "{}", r.list);
        assert!(
            list[0]["statsz"]["connections"]
                .as_u64()
                .is_some_and(|n| n >= 2),
            "{}",
            r.list
        );
        assert!(
            r.conns.contains("APP") && r.conns.contains("SYS"),
            "{}",
            r.conns
        );
        assert!(r.jetstream.contains("JetStream Summary"), "{}", r.jetstream);
        assert!(r.jetstream.contains(id.as_str()), "{}", r.jetstream);
        assert!(r.app_account.contains("User: app"), "{}", r.app_account);
        assert!(
            r.app_account.contains("Account: APP (APP)"),
            "{}",
            r.app_account
        );
        assert!(r.app_account.contains("Deny: x.>"), "{}", r.app_account);
        assert!(
            r.app_account.contains("JetStream Account Information"),
            "{}",
            r.app_account
        );
        assert!(r.sys_account.contains("User: sys"), "{}", r.sys_account);
        assert!(
            r.sys_account.contains("Account: SYS (SYS)"),
            "{}",
            r.sys_account
        );
        assert!(
            r.sys_account.contains("System Account: true"),
            "{}",
            r.sys_account
        );
        assert!(
            r.app_account.contains("System Account: false"),
            "{}",
            r.app_account
        );
    }
    // The decoded statistics and connections have the reference's fields.
    let (o, r) = (&ours.list[0], &reference.list[0]);
    assert_eq!(keys(o), keys(r), "server list --json");
    assert_eq!(
        keys(&o["server"]),
        keys(&r["server"]),
        "server list --json: server"
    );
    assert_eq!(
        keys(&o["statsz"]),
        keys(&r["statsz"]),
        "server list --json: statsz"
    );
    let conn = |v: &Value| v[0]["data"]["connections"][0].clone();
    assert_eq!(
        keys(&ours.conns_json[0]["data"]),
        keys(&reference.conns_json[0]["data"]),
        "report connections --json: data"
    );
    let (oc, rc) = (conn(&ours.conns_json), conn(&reference.conns_json));
    let missing: Vec<_> = keys(&rc).difference(&keys(&oc)).cloned().collect();
    assert!(
        missing.is_empty(),
        "connection fields missing: {missing:?}\nours {oc}\nreference {rc}"
    );
}

/// The raw answers to the same requests from both servers: the same keys
/// in the envelope and in the data (values differ).
#[tokio::test]
async fn raw_answers_have_the_reference_keys() {
    async fn answers(bin: &Path) -> Vec<(String, Value)> {
        let (s, _d) = start(bin, CONF);
        let sys = login(&s, "sys").await;
        let mut events = sys.subscribe("$SYS.ACCOUNT.APP.CONNECT").await.unwrap();
        common::sync(&sys).await;
        let app = login(&s, "app").await;
        common::sync(&app).await;
        let mut out = vec![("CONNECT event".to_string(), next(&mut events).await.1)];
        for (c, subject, body) in [
            (&sys, "$SYS.REQ.SERVER.PING", ""),
            (&sys, "$SYS.REQ.SERVER.PING.VARZ", "{}"),
            (&sys, "$SYS.REQ.SERVER.PING.CONNZ", r#"{"auth":true}"#),
            (&sys, "$SYS.REQ.SERVER.PING.JSZ", "{}"),
            (&sys, "$SYS.REQ.SERVER.PING.HEALTHZ", "{}"),
            (&sys, "$SYS.REQ.SERVER.PING.IDZ", "{}"),
            (&sys, "$SYS.REQ.SERVER.PING.ACCOUNTZ", "{}"),
            (&sys, "$SYS.REQ.SERVER.PING.CONNZ", r#"{"limit":"x"}"#),
            (&sys, "$SYS.REQ.ACCOUNT.APP.STATZ", "{}"),
            (&sys, "$SYS.REQ.ACCOUNT.APP.JSZ", "{}"),
            (&sys, "$SYS.REQ.ACCOUNT.APP.INFO", "{}"),
            (&app, "$SYS.REQ.USER.INFO", ""),
        ] {
            out.push((format!("{subject} {body}"), request(c, subject, body).await));
        }
        out
    }
    let ours = answers(&server_bin()).await;
    let reference = answers(&ref_server_2_15()).await;
    let mut problems = Vec::new();
    for ((what, o), (_, r)) in ours.iter().zip(&reference) {
        for part in ["", "server", "data", "statsz", "error", "client"] {
            let (a, b) = if part.is_empty() {
                (o.clone(), r.clone())
            } else {
                (o[part].clone(), r[part].clone())
            };
            // The data of VARZ, JSZ and account info are the monitoring
            // endpoints' own comparisons' business; here the envelope and
            // the smaller answers.
            let big = what.contains("VARZ") || what.contains("JSZ") || what.contains("INFO {}");
            if big && part == "data" {
                continue;
            }
            let (ka, kb) = (keys(&a), keys(&b));
            if ka != kb {
                problems.push(format!(
                    "{what} [{part}]: ours {ka:?}\n    reference {kb:?}"
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Events in the system account: a client's CONNECT and DISCONNECT, and
/// the periodic STATSZ, each received by a system user who listens.
#[tokio::test]
async fn connect_disconnect_and_statsz_events() {
    let (s, _d) = start(&server_bin(), CONF);
    let id = s.json("/varz").await["server_id"]
        .as_str()
        .unwrap()
        .to_string();
    let sys = login(&s, "sys").await;
    let mut events = sys.subscribe("$SYS.ACCOUNT.APP.*").await.unwrap();
    let mut stats = sys
        .subscribe(format!("$SYS.SERVER.{id}.STATSZ"))
        .await
        .unwrap();
    common::sync(&sys).await;

    let app = login(&s, "app").await;
    app.publish("some.subject", "hello".into()).await.unwrap();
    common::sync(&app).await;
    let (subject, ev) = next(&mut events).await;
    assert_eq!(subject, "$SYS.ACCOUNT.APP.CONNECT", "{ev}");
    assert_eq!(
        ev["type"], "io.nats.server.advisory.v1.client_connect",
        "{ev}"
    );
    check_envelope(&ev, &id);
    assert_eq!(ev["client"]["acc"], "APP", "{ev}");
    assert_eq!(ev["client"]["user"], "app", "{ev}");
    assert_eq!(ev["client"]["kind"], "Client", "{ev}");
    let cid = ev["client"]["id"].clone();
    assert!(cid.as_u64().is_some_and(|n| n > 0), "{ev}");

    drop(app);
    let (subject, ev) = next(&mut events).await;
    assert_eq!(subject, "$SYS.ACCOUNT.APP.DISCONNECT", "{ev}");
    assert_eq!(
        ev["type"], "io.nats.server.advisory.v1.client_disconnect",
        "{ev}"
    );
    assert_eq!(ev["client"]["id"], cid, "{ev}");
    assert!(ev["client"]["stop"].is_string(), "{ev}");
    assert!(ev["sent"]["msgs"].as_u64().is_some_and(|n| n >= 1), "{ev}");
    assert!(ev["reason"].as_str().is_some_and(|r| !r.is_empty()), "{ev}");

    let (_, st) = next(&mut stats).await;
    check_envelope(&st, &id);
    assert!(
        st["statsz"]["connections"].as_u64().is_some_and(|n| n >= 1),
        "{st}"
    );
}

/// The next message of `sub` (within a generous deadline), as JSON.
async fn next(sub: &mut async_nats::Subscriber) -> (String, Value) {
    let m = tokio::time::timeout(Duration::from_secs(30), futures::StreamExt::next(sub))
        .await
        .expect("an event within 30s")
        .expect("subscription open");
    let v: Value = serde_json::from_slice(&m.payload).expect("JSON event");
    (m.subject.to_string(), v)
}

/// Users in the system account and no other credentials: clients without
/// credentials still come in, to the global account (nats-server makes up
/// a `no_auth_user` for them), and cannot reach the server requests.
#[tokio::test]
async fn system_users_alone_leave_the_global_account_open() {
    const SYS_ONLY: &str = r#"
accounts { SYS: { users: [ { user: sys, password: sys } ] } }
system_account: SYS
"#;
    let (s, _d) = start(&server_bin(), SYS_ONLY);
    let anon = s.client().await;
    let me = request(&anon, "$SYS.REQ.USER.INFO", "").await;
    assert_eq!(me["data"]["account"], "$G", "{me}");
    no_responders(&anon, "$SYS.REQ.SERVER.PING").await;
    no_responders(&anon, "$SYS.REQ.SERVER.PING.VARZ").await;

    let sys = login(&s, "sys").await;
    let cz = request(&sys, "$SYS.REQ.SERVER.PING.CONNZ", r#"{"auth":true}"#).await;
    assert_eq!(cz["data"]["num_connections"], 2, "{cz}");
    let me = request(&sys, "$SYS.REQ.USER.INFO", "").await;
    assert_eq!(me["data"]["account"], "SYS", "{me}");

    let wrong = async_nats::ConnectOptions::with_user_and_password("sys".into(), "nope".into())
        .connect(s.url())
        .await;
    assert!(wrong.is_err(), "a wrong password is still refused");
}
