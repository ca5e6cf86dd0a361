//! `leafnodes { }`: the typed block, what is refused, and the checks.

use std::path::PathBuf;
use std::time::Duration;

use super::{errs, opts_from};
use crate::options::{
    LeafAuth, LeafNodeOpts, LeafUrl, LeafUser, Port, RemoteLeafOpts, RemoteTls, Sensitive,
};

fn user_seed() -> String {
    nkeys::KeyPair::new_user().seed().unwrap()
}

#[test]
fn full_block_parses() {
    let seed = user_seed();
    let src = format!(
        "accounts {{ HUB: {{}}, LOCAL: {{}} }}\n\
         leafnodes {{\n\
           listen: \"127.0.0.1:7422\"\n\
           advertise: \"leaf.example:7422\"\n\
           no_advertise: true\n\
           reconnect: \"250ms\"\n\
           compression: off\n\
           isolate_leafnode_interest: false\n\
           tls {{ cert_file: c.pem, key_file: k.pem, ca_file: ca.pem, verify: true, timeout: 3 }}\n\
           authorization {{ timeout: 1.5, users: [\n\
             {{ user: a, password: pa, account: HUB }}\n\
             {{ username: b, pass: pb }}\n\
           ] }}\n\
           remotes: [\n\
             {{ url: \"nats://u:p%40ss@hub.example:7422\", account: LOCAL, credentials: \"/etc/leaf.creds\",\n\
                deny_imports: \"secret.>\", deny_exports: [\"a.*\", \"b\"], hub: true, first_info_timeout: \"2s\",\n\
                compression: \"off\",\n\
                tls {{ ca_file: ca.pem, cert_file: lc.pem, key_file: lk.pem, timeout: 0.5, handshake_first: true }} }}\n\
             {{ urls: [\"tls://h1\", \"tls://[::1]:7000\"], nkey: {seed} }}\n\
           ]\n\
         }}\n"
    );
    let o = opts_from(&src).unwrap();
    let l = o.leafnodes.unwrap();
    let tls = l.tls.clone().unwrap();
    assert_eq!(tls.cert_file, Some(PathBuf::from("c.pem")));
    assert!(tls.verify);
    assert_eq!(tls.timeout, Some(Duration::from_secs(3)));
    let want = LeafNodeOpts {
        host: "127.0.0.1".into(),
        port: Some(Port::Fixed(7422)),
        advertise: Some("leaf.example:7422".into()),
        no_advertise: true,
        tls: Some(tls),
        auth: LeafAuth {
            user: None,
            password: None,
            account: None,
            users: vec![
                LeafUser {
                    user: "a".into(),
                    password: Some(Sensitive::from("pa")),
                    account: Some("HUB".into()),
                },
                LeafUser {
                    user: "b".into(),
                    password: Some(Sensitive::from("pb")),
                    account: None,
                },
            ],
            timeout: Some(Duration::from_millis(1500)),
        },
        reconnect: Duration::from_millis(250),
        remotes: vec![
            RemoteLeafOpts {
                urls: vec!["nats://u:p%40ss@hub.example:7422".into()],
                account: Some("LOCAL".into()),
                credentials: Some(PathBuf::from("/etc/leaf.creds")),
                tls: Some(RemoteTls {
                    ca_file: Some("ca.pem".into()),
                    cert_file: Some("lc.pem".into()),
                    key_file: Some("lk.pem".into()),
                    insecure: false,
                    timeout: Some(Duration::from_millis(500)),
                    handshake_first: true,
                }),
                deny_imports: vec!["secret.>".into()],
                deny_exports: vec!["a.*".into(), "b".into()],
                hub: true,
                first_info_timeout: Some(Duration::from_secs(2)),
                ..RemoteLeafOpts::default()
            },
            RemoteLeafOpts {
                urls: vec!["tls://h1".into(), "tls://[::1]:7000".into()],
                nkey: Some(Sensitive::from(seed.as_str())),
                ..RemoteLeafOpts::default()
            },
        ],
    };
    assert_eq!(l, want);
}

#[test]
fn defaults_alias_and_single_user() {
    let o = opts_from(
        "leaf { remotes: [ { url: \"nats://h\" } ], authorization { user: u, password: p, account: \"$G\" } }",
    )
    .unwrap();
    let l = o.leafnodes.unwrap();
    assert_eq!((l.host.as_str(), l.port), ("0.0.0.0", None));
    assert_eq!(l.reconnect, Duration::from_secs(1));
    assert_eq!(l.auth.user.as_deref(), Some("u"));
    assert_eq!(l.auth.password.as_deref(), Some("p"));
    assert_eq!(l.auth.account.as_deref(), Some("$G"));
    assert_eq!(l.remotes[0].urls, ["nats://h"]);
    assert!(l.remotes[0].user.is_none() && l.remotes[0].password.is_none());
    // `port: 0` is no listener, as in nats-server; -1 a random port.
    assert_eq!(
        opts_from("leafnodes { port: 0 }")
            .unwrap()
            .leafnodes
            .unwrap()
            .port,
        None
    );
    assert_eq!(
        opts_from("leafnodes { port: -1 }")
            .unwrap()
            .leafnodes
            .unwrap()
            .port,
        Some(Port::Random)
    );
    assert!(format!("{l:?}").contains("[redacted]") && !format!("{l:?}").contains("\"p\""));
}

/// Every key of nats-server 2.15.3's leafnodes blocks this build does not
/// do is refused at its line, by name.
#[test]
fn unbuilt_leaf_options_are_refused() {
    let remote =
        |kv: &str| format!("leafnodes {{\n remotes: [ {{ url: \"nats://h\"\n {kv} }} ]\n}}");
    let mut cases: Vec<(String, &str, u32)> = Vec::new();
    for (kv, key) in [
        ("min_version: \"2.8.0\"", "min_version"),
        ("minimum_version: \"2.8.0\"", "minimum_version"),
        (
            "isolate_leafnode_interest: true",
            "isolate_leafnode_interest",
        ),
        ("isolate: true", "isolate"),
        ("dial_timeout: \"1s\"", "dial_timeout"),
        ("write_deadline: \"1s\"", "write_deadline"),
        ("write_timeout: close", "write_timeout"),
        ("ping_interval: \"1s\"", "ping_interval"),
        ("ping_max: 3", "ping_max"),
        ("authorization {\n nkey: UABC }", "nkey"),
        ("authorization {\n proxy_required: true }", "proxy_required"),
        (
            "authorization { users: [\n { user: a, proxy_required: true } ] }",
            "proxy_required",
        ),
        ("tls {\n verify_and_map: true }", "verify_and_map"),
        ("tls {\n pinned_certs: [] }", "pinned_certs"),
        ("tls {\n ocsp_peer: true }", "ocsp_peer"),
        (
            "tls {\n verify_cert_and_check_known_urls: true }",
            "verify_cert_and_check_known_urls",
        ),
    ] {
        cases.push((
            format!("leafnodes {{\n {kv}\n}}"),
            key,
            2 + kv.matches('\n').count() as u32,
        ));
    }
    for (kv, key) in [
        ("no_randomize: true", "no_randomize"),
        ("dont_randomize: true", "dont_randomize"),
        ("ws_compression: true", "ws_compression"),
        ("ws_no_masking: true", "ws_no_masking"),
        (
            "jetstream_cluster_migrate: true",
            "jetstream_cluster_migrate",
        ),
        (
            "js_cluster_migrate { leader_migrate_delay: \"1s\" }",
            "js_cluster_migrate",
        ),
        (
            "isolate_leafnode_interest: true",
            "isolate_leafnode_interest",
        ),
        ("request_isolation: true", "request_isolation"),
        ("disabled: true", "disabled"),
        (
            "ignore_discovered_servers: true",
            "ignore_discovered_servers",
        ),
        ("dial_timeout: \"1s\"", "dial_timeout"),
        ("proxy { url: \"http://p:3128\" }", "proxy"),
        ("tls { insecure: true\n verify: true }", "verify"),
        (
            "tls { insecure: true\n min_version: \"1.3\" }",
            "min_version",
        ),
        (
            "tls { insecure: true\n cipher_suites: [x] }",
            "cipher_suites",
        ),
    ] {
        cases.push((remote(kv), key, 3 + kv.matches('\n').count() as u32));
    }
    for (src, key, line) in &cases {
        let e = errs(src);
        assert!(
            e.iter().any(|m| m.starts_with(&format!("t.conf:{line}:"))
                && m.contains(&format!("\"{key}\" is not supported by this build"))),
            "{src}: {e:?}"
        );
    }
    // Compression: off only, at the hub and in remotes.
    for src in [
        "leafnodes {\n compression: s2_auto }".to_string(),
        "leafnodes {\n compression: true }".to_string(),
        "leafnodes {\n compression { mode: s2_fast } }".to_string(),
        remote("compression: accept"),
    ] {
        let e = errs(&src);
        assert!(
            e.iter().any(|m| m.contains(":2:") || m.contains(":3:"))
                && e.iter()
                    .any(|m| m.contains("\"compression\"") && m.contains("only \"off\"")),
            "{src}: {e:?}"
        );
    }
    // The reference's defaults, written out, are accepted.
    opts_from(
        "leafnodes { compression: false, isolate: false, remotes: [ { url: \"nats://h\", compression: { mode: disabled }, \
         dont_randomize: false, ws_compression: false, disabled: false, request_isolation: false } ] }"
    )
    .unwrap();
}

#[test]
fn bad_urls_and_remotes() {
    for (url, why) in [
        (
            "ws://h:7422",
            "websocket leaf connections are not supported",
        ),
        ("wss://h", "websocket leaf connections are not supported"),
        ("http://h", "unsupported scheme"),
        ("h:7422", "needs a scheme"),
        ("nats://h:99999", "invalid port"),
        ("nats://:7422", "no host"),
        ("nats://::1:7422", "IPv6"),
    ] {
        let e = errs(&format!(
            "leafnodes {{\n remotes: [ {{\n url: \"{url}\" }} ] }}"
        ));
        assert!(
            e.iter()
                .any(|m| m.starts_with("t.conf:3:") && m.contains(why)),
            "{url}: {e:?}"
        );
    }
    // In a list, at the element; the password never shown.
    let e = errs("leafnodes { remotes: [ { urls: [\n \"nats://a\",\n \"ws://u:secret@b\" ] } ] }");
    assert!(
        e[0].starts_with("t.conf:3:") && !e[0].contains("secret"),
        "{e:?}"
    );
    let e = errs("leafnodes {\n remotes: [\n { account: A } ] }");
    assert!(
        e.iter()
            .any(|m| m.starts_with("t.conf:3:") && m.contains("needs a url")),
        "{e:?}"
    );
    let e = errs("leafnodes {\n remotes: [\n { url: 5 } ] }");
    assert!(
        e.iter().any(|m| m.contains("Expected remote leafnode url")),
        "{e:?}"
    );
    let e = errs("leafnodes {\n remotes: { url: \"nats://h\" } }");
    assert!(
        e.iter()
            .any(|m| m.contains("Expected remotes field to be an array")),
        "{e:?}"
    );
    let e = errs("leafnodes {\n remotes: [ { url: \"nats://h\" },\n { url: \"nats://h\" } ] }");
    assert!(
        e.iter()
            .any(|m| m.starts_with("t.conf:3:") && m.contains("duplicate remote")),
        "{e:?}"
    );
    // Seeds, credentials, deny lists.
    let e = errs("leafnodes { remotes: [ { url: \"nats://h\",\n nkey: SXXX } ] }");
    assert!(
        e.iter().any(|m| m.starts_with("t.conf:2:")
            && m.contains("not a valid user seed")
            && !m.contains("SXXX")),
        "{e:?}"
    );
    let seed = user_seed();
    let e = errs(&format!(
        "leafnodes {{ remotes: [ {{ url: \"nats://h\", nkey: {seed},\n credentials: /x.creds }} ] }}"
    ));
    assert!(
        e.iter()
            .any(|m| m.starts_with("t.conf:2:") && m.contains("both creds and nkey")),
        "{e:?}"
    );
    let e = errs("leafnodes { remotes: [ { url: \"nats://h\",\n deny_imports: [\"a..b\"] } ] }");
    assert!(
        e.iter()
            .any(|m| m.starts_with("t.conf:2:") && m.contains("not a valid subject")),
        "{e:?}"
    );
    let e = errs(
        "leafnodes { remotes: [ { url: \"nats://h\",\n deny_exports: \"{{account()}}.x\" } ] }",
    );
    assert!(e.iter().any(|m| m.contains("placeholders")), "{e:?}");
    let e = errs("leafnodes { remotes: [ { url: \"nats://h\",\n tls { cert_file: c.pem } } ] }");
    assert!(
        e.iter()
            .any(|m| m.starts_with("t.conf:2:") && m.contains("key_file")),
        "{e:?}"
    );
    let e = errs("leafnodes { remotes: [ { url: \"nats://h\",\n bogus: 1 } ] }");
    assert!(
        e.iter()
            .any(|m| m.starts_with("t.conf:2:") && m.contains("bogus")),
        "{e:?}"
    );
}

#[test]
fn authorization_and_accounts_checked() {
    let e = errs("leafnodes {\n authorization { user: a, password: b, users: [ { user: c } ] } }");
    assert!(e.iter().any(|m| m.starts_with("t.conf:2:") && m.contains("single user/pass and a users array")), "{e:?}");
    let e = errs("leafnodes {\n authorization { users: [ { user: c }, { user: c } ] } }");
    assert!(
        e.iter().any(|m| m.contains("duplicate user \"c\"")),
        "{e:?}"
    );
    let e = errs("leafnodes {\n authorization { users: [ { password: x } ] } }");
    assert!(e.iter().any(|m| m.contains("needs a user")), "{e:?}");
    let e = errs("leafnodes {\n authorization {\n timeout: true } }");
    assert!(
        e.iter()
            .any(|m| m.starts_with("t.conf:3:") && m.contains("'timeout' wrong type")),
        "{e:?}"
    );
    let e = errs("leafnodes {\n port: 7422\n bogus: 1 }");
    assert!(
        e.iter()
            .any(|m| m.starts_with("t.conf:3:") && m.contains("bogus")),
        "{e:?}"
    );
    let e = errs("leafnodes: 5");
    assert!(
        e.iter()
            .any(|m| m.contains("Expected map to define a leafnode")),
        "{e:?}"
    );
    // Accounts a leaf binds to must exist.
    let e = errs("leafnodes {\n remotes: [ { url: \"nats://h\", account: NOPE } ] }");
    assert!(
        e.iter().any(|m| m.starts_with("t.conf:1:")
            && m.contains("cannot find local account \"NOPE\" specified in leafnode remote")),
        "{e:?}"
    );
    let e = errs("leafnodes { authorization { account: X } }");
    assert!(
        e.iter()
            .any(|m| m
                .contains("cannot find local account \"X\" specified in leafnode authorization")),
        "{e:?}"
    );
    opts_from("accounts { X: {} }\nleafnodes { authorization { account: X }, remotes: [ { url: \"nats://h\", account: \"$SYS\" } ] }").unwrap();
}

#[test]
fn leaf_urls_taken_apart() {
    let u = LeafUrl::parse(" nats://u:p%40ss@hub.example ").unwrap();
    assert_eq!(
        (u.tls, u.host.as_str(), u.port),
        (false, "hub.example", 7422)
    );
    assert_eq!(u.user.as_deref(), Some("u"));
    assert_eq!(u.password.as_deref(), Some("p@ss"));
    let u = LeafUrl::parse("TLS://[::1]:7000/").unwrap();
    assert_eq!((u.tls, u.host.as_str(), u.port), (true, "::1", 7000));
    assert_eq!(u.host_port(), "[::1]:7000");
    assert!(u.user.is_none());
    let u = LeafUrl::parse("nats://tok@h:1").unwrap();
    assert_eq!(
        (u.user.as_deref(), u.password.is_none()),
        (Some("tok"), true)
    );
    assert_eq!(
        crate::options::redact_url("nats://u:pw@h:1"),
        "nats://u:xxxxx@h:1"
    );
    assert_eq!(crate::options::redact_url("nats://tok@h"), "nats://xxxxx@h");
}
