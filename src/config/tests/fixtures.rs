//! The configuration files of real deployments in `tests/configs/` parse to
//! the expected trees (nats-server 2.9.10 `-t` accepts them too).

use std::path::{Path, PathBuf};

use super::super::*;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/configs")
        .join(name)
}

fn strs(v: &Value) -> Vec<&str> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_str().expect("string"))
        .collect()
}

fn find_user<'a>(users: &'a [Value], name: &str) -> &'a Value {
    users
        .iter()
        .find(|u| u.get("user").and_then(Value::as_str) == Some(name))
        .unwrap_or_else(|| panic!("user {name} missing"))
}

#[test]
fn agentic_system() {
    let env = |k: &str| match k {
        "NATS_ADMIN_PASS" => Some("admin-pw".to_string()),
        "NATS_TEMPORAL_PASS" => Some("temporal-pw".to_string()),
        "NATS_N8N_PASS" => Some("n8n-pw".to_string()),
        "NATS_AGIXT_PASS" => Some("agixt-pw".to_string()),
        _ => None,
    };
    let root = parse_file_with_env(&fixture("agentic.conf"), &env).expect("parses");
    assert_eq!(
        root.get("server_name").unwrap().as_str(),
        Some("agentic-nats")
    );
    assert_eq!(root.get("listen").unwrap().as_str(), Some("0.0.0.0:4222"));
    assert_eq!(root.get("http_port").unwrap().as_int(), Some(8222));
    assert_eq!(root.get("max_payload").unwrap().as_int(), Some(8 << 20));
    assert_eq!(
        root.get("ping_interval").unwrap().as_duration().unwrap(),
        std::time::Duration::from_secs(20)
    );
    assert_eq!(root.get("logtime").unwrap().as_bool(), Some(true));
    let js = root.get("jetstream").unwrap();
    assert_eq!(
        js.get("store_dir").unwrap().as_str(),
        Some("/var/lib/nats/jetstream")
    );
    assert_eq!(
        js.get("max_memory_store").unwrap().as_int(),
        Some(512 << 20)
    );
    assert_eq!(js.get("max_file_store").unwrap().as_int(), Some(10 << 30));

    let auth = root.get("authorization").unwrap();
    assert_eq!(auth.get("timeout").unwrap().as_int(), Some(2));
    let users = auth.get("users").unwrap().as_array().unwrap();
    let names: Vec<_> = users
        .iter()
        .map(|u| u.get("user").unwrap().as_str().unwrap())
        .collect();
    assert_eq!(names, ["admin", "temporal", "n8n", "agixt"]);
    for (name, pw) in [
        ("admin", "admin-pw"),
        ("temporal", "temporal-pw"),
        ("n8n", "n8n-pw"),
        ("agixt", "agixt-pw"),
    ] {
        let u = find_user(users, name);
        assert_eq!(u.get("password").unwrap().as_str(), Some(pw), "{name}");
    }
    let admin = find_user(users, "admin").get("permissions").unwrap();
    assert_eq!(admin.get("publish").unwrap().as_str(), Some(">"));
    let temporal = find_user(users, "temporal").get("permissions").unwrap();
    assert_eq!(
        strs(temporal.get("publish").unwrap()),
        ["temporal.>", "events.>", "$JS.API.>"]
    );
    assert_eq!(
        strs(temporal.get("subscribe").unwrap()),
        ["temporal.>", "_INBOX.>"]
    );
    let n8n = find_user(users, "n8n").get("permissions").unwrap();
    let publish = n8n.get("publish").unwrap();
    assert_eq!(strs(publish.get("allow").unwrap()), ["tasks.>", "events.>"]);
    assert_eq!(strs(publish.get("deny").unwrap()), ["$SYS.>"]);
    assert_eq!(n8n.get("allow_responses").unwrap().as_bool(), Some(true));
    let agixt = find_user(users, "agixt").get("permissions").unwrap();
    // Taken from the AGENT_SUBJECTS variable.
    assert_eq!(
        strs(agixt.get("publish").unwrap()),
        ["agent.>", "tasks.>", "events.>"]
    );
    let ar = agixt.get("allow_responses").unwrap();
    assert_eq!(ar.get("max").unwrap().as_int(), Some(10));
    assert_eq!(
        ar.get("expires").unwrap().as_duration().unwrap(),
        std::time::Duration::from_secs(60)
    );

    // AGENT_SUBJECTS is a used variable: not an unknown field.
    assert!(unknown_top_level_keys(&root).is_empty());

    // A password pointing at the environment is positioned in the file.
    let pw = find_user(users, "temporal").get("password").unwrap();
    assert!(pw.pos.file.ends_with("agentic.conf"));
    assert_eq!((pw.pos.line, pw.pos.col), (41, 17));
}

#[test]
fn agentic_system_without_env_names_the_missing_variable() {
    let none = |_: &str| None;
    let e = parse_file_with_env(&fixture("agentic.conf"), &none).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.ends_with(
            "agentic.conf:33:17: variable reference for 'NATS_ADMIN_PASS' can not be found"
        ),
        "{msg}"
    );
}

#[test]
fn service_mesh() {
    let none = |_: &str| None;
    let root = parse_file_with_env(&fixture("service-mesh.conf"), &none).expect("parses");
    assert_eq!(root.get("port").unwrap().as_int(), Some(4222));
    assert_eq!(root.get("monitor_port").unwrap().as_int(), Some(8222));
    assert_eq!(root.get("max_payload").unwrap().as_int(), Some(1 << 20));
    assert_eq!(root.get("max_pending").unwrap().as_int(), Some(64 << 20));
    let users = root
        .get("authorization")
        .unwrap()
        .get("users")
        .unwrap()
        .as_array()
        .unwrap();
    assert_eq!(users.len(), 2);

    let bff = find_user(users, "fluo-bff");
    assert_eq!(
        bff.get("password").unwrap().as_str(),
        Some("$2a$11$RAECBSBYdig2ZUURlJi0MOCXh3RK1WhBwlP2atQP/zMlwEzI9sSZG")
    );
    let perms = bff.get("permissions").unwrap();
    assert_eq!(strs(perms.get("publish").unwrap()), ["jobs.>", "signals.>"]);
    assert_eq!(
        strs(perms.get("subscribe").unwrap()),
        ["signals.>", "_INBOX.>"]
    );

    let workers = find_user(users, "fluo-workers");
    assert_eq!(
        workers.get("password").unwrap().as_str(),
        Some("$2a$11$jLMcUIBKikWqXABO5lfbSuSFAPkyu5MFbms4UJviKcRJmiaojZG9i")
    );
    let perms = workers.get("permissions").unwrap();
    assert_eq!(
        strs(perms.get("publish").unwrap().get("allow").unwrap()),
        ["signals.>"]
    );
    assert_eq!(
        strs(perms.get("subscribe").unwrap().get("allow").unwrap()),
        ["jobs.>", "_INBOX.>"]
    );
    assert!(unknown_top_level_keys(&root).is_empty());
}

#[test]
fn json_fixture() {
    let none = |_: &str| None;
    let root = parse_file_with_env(&fixture("json.conf"), &none).expect("parses");
    assert_eq!(root.get("port").unwrap().as_int(), Some(4567));
    assert_eq!(root.get("jetstream").unwrap().as_bool(), Some(true));
    assert_eq!(root.get("server_name").unwrap().as_str(), Some("json-node"));
    assert!(unknown_top_level_keys(&root).is_empty());
}
