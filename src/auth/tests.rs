use std::path::Path;
use std::time::{Duration, Instant};

use super::*;
use crate::config::options::apply_value;
use crate::config::parse_str_with_env;
use crate::options::{NkeyUser, ResponsePermission, SubjectPermission, User};

mod proptests;

fn opts(src: &str, env: &dyn Fn(&str) -> Option<String>) -> Options {
    let root = parse_str_with_env(src, Path::new("t.conf"), env).expect("parses");
    let mut o = Options::default();
    if let Err(es) = apply_value(&root, &mut o, &[]) {
        panic!("{es:?}");
    }
    o
}

fn no_env(_: &str) -> Option<String> {
    None
}

fn connect(user: Option<&str>, pass: Option<&str>, token: Option<&str>) -> Connect {
    Connect {
        user: user.map(Into::into),
        pass: pass.map(Into::into),
        auth_token: token.map(Into::into),
        ..Connect::default()
    }
}

fn up(user: &str, pass: &str) -> Connect {
    connect(Some(user), Some(pass), None)
}

fn perms(publish: Option<SubjectPermission>, subscribe: Option<SubjectPermission>) -> Permissions {
    let c = PermissionsConfig {
        publish,
        subscribe,
        allow_responses: None,
    };
    Permissions::from_config(&c).expect("valid")
}

fn allow(list: &[&str]) -> Option<SubjectPermission> {
    Some(SubjectPermission {
        allow: Some(list.iter().map(|s| s.to_string()).collect()),
        deny: Vec::new(),
    })
}

fn allow_deny(a: &[&str], d: &[&str]) -> Option<SubjectPermission> {
    Some(SubjectPermission {
        allow: (!a.is_empty()).then(|| a.iter().map(|s| s.to_string()).collect()),
        deny: d.iter().map(|s| s.to_string()).collect(),
    })
}

#[test]
fn no_auth_configured() {
    let a = Authenticator::new(&Options::default()).unwrap();
    assert!(!a.required() && !a.nonce_required());
    let who = a.authenticate(&Connect::default(), None).unwrap();
    assert_eq!(who.account, GLOBAL_ACCOUNT);
    assert!(who.permissions.is_none());
}

#[test]
fn single_user_and_token() {
    let a = Authenticator::new(&opts(
        "authorization { user: u, password: p, timeout: 1.5 }",
        &no_env,
    ))
    .unwrap();
    assert!(a.required());
    assert_eq!(a.timeout(), Duration::from_millis(1500));
    assert_eq!(a.authenticate(&up("u", "p"), None).unwrap().user, "u");
    assert_eq!(
        a.authenticate(&up("u", "x"), None).unwrap_err(),
        AuthError::BadPassword("u".into())
    );
    assert_eq!(
        a.authenticate(&up("v", "p"), None).unwrap_err(),
        AuthError::UnknownUser("v".into())
    );
    assert!(a.authenticate(&Connect::default(), None).is_err());

    let a = Authenticator::new(&opts("authorization { token: s3cret }", &no_env)).unwrap();
    assert!(a
        .authenticate(&connect(None, None, Some("s3cret")), None)
        .is_ok());
    assert_eq!(
        a.authenticate(&connect(None, None, Some("s3cre")), None)
            .unwrap_err(),
        AuthError::BadToken
    );
    assert_eq!(
        a.authenticate(&Connect::default(), None).unwrap_err(),
        AuthError::BadToken
    );

    // Command-line forms land in the same fields.
    let o = Options {
        auth_token: Some("t".into()),
        ..Default::default()
    };
    let a = Authenticator::new(&o).unwrap();
    assert!(a
        .authenticate(&connect(None, None, Some("t")), None)
        .is_ok());
    assert_eq!(a.timeout(), DEFAULT_AUTH_TIMEOUT);
}

#[test]
fn bcrypt_token_and_passwords() {
    let hash = bcrypt::hash("tok", 4).unwrap();
    let o = Options {
        auth_token: Some(hash.into()),
        ..Default::default()
    };
    let a = Authenticator::new(&o).unwrap();
    assert!(a.is_slow(&connect(None, None, Some("tok"))));
    assert!(a
        .authenticate(&connect(None, None, Some("tok")), None)
        .is_ok());
    assert!(a
        .authenticate(&connect(None, None, Some("tik")), None)
        .is_err());

    let h = bcrypt::hash("pw", 4).unwrap().replacen("$2b$", "$2a$", 1);
    let src = format!("authorization {{ users: [ {{user: a, password: \"{h}\"}}, {{user: b, password: plain}} ] }}");
    let a = Authenticator::new(&opts(&src, &no_env)).unwrap();
    assert!(a.is_slow(&up("a", "pw")) && !a.is_slow(&up("b", "plain")));
    assert!(a.authenticate(&up("a", "pw"), None).is_ok());
    assert_eq!(
        a.authenticate(&up("a", h.as_str()), None).unwrap_err(),
        AuthError::BadPassword("a".into())
    );
    assert!(a.authenticate(&up("b", "plain"), None).is_ok());
    assert!(a.authenticate(&up("b", "plai"), None).is_err());
    assert_eq!(
        a.authenticate(&up("c", "plain"), None).unwrap_err(),
        AuthError::UnknownUser("c".into())
    );
    assert_eq!(
        a.authenticate(&Connect::default(), None).unwrap_err(),
        AuthError::MissingCredentials
    );
}

#[test]
fn constant_time_compare() {
    assert!(ct_eq(b"abc", b"abc"));
    assert!(!ct_eq(b"abc", b"abd"));
    assert!(!ct_eq(b"abc", b"ab"));
    assert!(!ct_eq(b"ab", b"abc"));
    assert!(ct_eq(b"", b""));
    assert!(
        is_bcrypt("$2a$11$abc")
            && is_bcrypt("$2b$04$x")
            && !is_bcrypt("$2a$1$x")
            && !is_bcrypt("2a$11$x")
    );
}

#[test]
fn nkey_users() {
    let kp = nkeys::KeyPair::new_user();
    let pk = kp.public_key();
    let src = format!(
        "authorization {{ users: [ {{nkey: {pk}, permissions: {{publish: \"a.>\"}} }}, {{user: x, password: y}} ] }}"
    );
    let a = Authenticator::new(&opts(&src, &no_env)).unwrap();
    assert!(a.required() && a.nonce_required());
    let nonce = new_nonce();
    assert_eq!(nonce.len(), 15);
    let sig = kp.sign(nonce.as_bytes()).unwrap();
    let mut c = Connect {
        nkey: Some(pk.clone()),
        sig: Some(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&sig)),
        ..Connect::default()
    };
    let who = a.authenticate(&c, Some(nonce.as_bytes())).unwrap();
    assert_eq!(who.user, pk);
    assert!(who.permissions.unwrap().can_publish(b"a.b"));
    // Standard base64 is accepted too.
    c.sig = Some(base64::engine::general_purpose::STANDARD.encode(&sig));
    assert!(a.authenticate(&c, Some(nonce.as_bytes())).is_ok());
    // Another nonce, no nonce, no signature, garbage, another key.
    assert_eq!(
        a.authenticate(&c, Some(b"other")).unwrap_err(),
        AuthError::BadSignature(pk.clone())
    );
    assert!(a.authenticate(&c, None).is_err());
    c.sig = None;
    assert_eq!(
        a.authenticate(&c, Some(nonce.as_bytes())).unwrap_err(),
        AuthError::MissingSignature(pk.clone())
    );
    c.sig = Some("!!!".into());
    assert_eq!(
        a.authenticate(&c, Some(nonce.as_bytes())).unwrap_err(),
        AuthError::BadSignatureEncoding(pk.clone())
    );
    let other = nkeys::KeyPair::new_user();
    c.nkey = Some(other.public_key());
    c.sig = Some(
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(other.sign(nonce.as_bytes()).unwrap()),
    );
    assert!(matches!(
        a.authenticate(&c, Some(nonce.as_bytes())),
        Err(AuthError::UnknownNkey(_))
    ));
    // Password users still work beside nkey users.
    assert!(a.authenticate(&up("x", "y"), None).is_ok());
    // An account key is not a user key.
    let acc = nkeys::KeyPair::new_account().public_key();
    let bad = Options {
        nkeys: vec![NkeyUser {
            nkey: acc.clone(),
            permissions: None,
            account: None,
            allowed_connection_types: vec![],
        }],
        ..Default::default()
    };
    assert_eq!(
        Authenticator::new(&bad).unwrap_err(),
        AuthConfigError::BadNkey(acc)
    );
}

#[test]
fn no_auth_user() {
    let h = bcrypt::hash("pw", 4).unwrap();
    let src = format!(
        "authorization {{ users: [ {{user: guest, password: \"{h}\", permissions: {{publish: pub.>}} }}, {{user: admin, password: a}} ] }}\nno_auth_user: guest"
    );
    let a = Authenticator::new(&opts(&src, &no_env)).unwrap();
    assert!(a.required());
    let who = a.authenticate(&Connect::default(), None).unwrap();
    assert_eq!(who.user, "guest");
    assert!(!who.permissions.unwrap().can_publish(b"x"));
    assert!(!a.is_slow(&Connect::default()));
    // Credentials given: checked as usual.
    assert_eq!(
        a.authenticate(&up("admin", "a"), None).unwrap().user,
        "admin"
    );
    assert!(a.authenticate(&up("admin", "b"), None).is_err());
    assert!(a
        .authenticate(&connect(None, Some("x"), None), None)
        .is_err());

    let mut o = opts(
        "authorization { users: [ {user: a, password: b} ] }",
        &no_env,
    );
    o.no_auth_user = Some("zed".into());
    assert_eq!(
        Authenticator::new(&o).unwrap_err().to_string(),
        "no_auth_user: \"zed\" not present as user in authorization block or account configuration"
    );
    let o = Options {
        no_auth_user: Some("zed".into()),
        ..Default::default()
    };
    assert_eq!(
        Authenticator::new(&o).unwrap_err().to_string(),
        "no_auth_user: \"zed\" present, but users are not defined"
    );
}

#[test]
fn connection_types_and_accounts() {
    let src = "accounts { A: { users: [ {user: a, password: a, allowed_connection_types: [\"websocket\"]} ] } }\n\
               authorization { users: [ {user: g, password: g} ] }";
    let a = Authenticator::new(&opts(src, &no_env)).unwrap();
    assert!(matches!(
        a.authenticate(&up("a", "a"), None),
        Err(AuthError::ConnectionTypeNotAllowed { .. })
    ));
    assert_eq!(
        a.authenticate_as(&up("a", "a"), None, "WEBSOCKET")
            .unwrap()
            .account,
        "A"
    );
    assert_eq!(
        a.authenticate(&up("g", "g"), None).unwrap().account,
        GLOBAL_ACCOUNT
    );
}

/// tests/configs/agentic.conf: four users whose passwords come from the
/// environment, permissions of each kind.
#[test]
fn agentic_fixture() {
    let src = include_str!("../../tests/configs/agentic.conf");
    let env = |k: &str| {
        let v = match k {
            "NATS_ADMIN_PASS" => "admin-pw",
            "NATS_TEMPORAL_PASS" => "temporal-pw",
            "NATS_N8N_PASS" => "n8n-pw",
            "NATS_AGIXT_PASS" => "agixt-pw",
            _ => return None,
        };
        Some(v.to_string())
    };
    let o = opts(src, &env);
    assert_eq!(o.server_name.as_deref(), Some("agentic-nats"));
    assert_eq!(o.max_payload, 8 * 1024 * 1024);
    assert_eq!(o.jetstream_max_memory, Some(512 * 1024 * 1024));
    assert_eq!(o.auth_timeout, Some(Duration::from_secs(2)));
    let a = Authenticator::new(&o).unwrap();
    let who = |u: &str, p: &str| a.authenticate(&up(u, p), None);
    assert!(who("admin", "wrong").is_err());
    assert!(who("temporal", "admin-pw").is_err());

    let admin = who("admin", "admin-pw").unwrap().permissions.unwrap();
    assert!(admin.can_publish(b"anything.at.all") && admin.can_subscribe(b">", None));

    let temporal = who("temporal", "temporal-pw").unwrap().permissions.unwrap();
    assert!(temporal.can_publish(b"$JS.API.STREAM.INFO.x") && temporal.can_publish(b"events.e"));
    assert!(!temporal.can_publish(b"tasks.t"));
    assert!(
        temporal.can_subscribe(b"_INBOX.abc", None) && !temporal.can_subscribe(b"events.>", None)
    );

    let n8n = who("n8n", "n8n-pw").unwrap().permissions.unwrap();
    assert!(
        n8n.can_publish(b"tasks.x") && !n8n.can_publish(b"$SYS.x") && !n8n.can_publish(b"agent.x")
    );
    assert_eq!(n8n.responses(), Some(&ResponsePermission::default()));

    let agixt = who("agixt", "agixt-pw").unwrap().permissions.unwrap();
    for s in ["agent.a.b", "tasks.x", "events.y"] {
        assert!(agixt.can_publish(s.as_bytes()), "{s}");
    }
    assert!(!agixt.can_publish(b"temporal.x"));
    let r = agixt.responses().unwrap();
    assert_eq!(
        (r.max_msgs, r.expires),
        (Some(10), Some(Duration::from_secs(60)))
    );
}

/// tests/configs/service-mesh.conf: bcrypt users and their lists.
#[test]
fn service_mesh_fixture() {
    let src = include_str!("../../tests/configs/service-mesh.conf");
    let o = opts(src, &no_env);
    assert_eq!(o.http_port, Some(crate::options::Port::Fixed(8222)));
    let a = Authenticator::new(&o).unwrap();
    assert!(a.is_slow(&up("fluo-bff", "x")));
    assert!(a
        .authenticate(&up("fluo-bff", "fluo-workers-secret"), None)
        .is_err());
    assert!(a
        .authenticate(&up("fluo-workers", "fluo-bff-secret"), None)
        .is_err());

    let bff = a
        .authenticate(&up("fluo-bff", "fluo-bff-secret"), None)
        .unwrap();
    let p = bff.permissions.unwrap();
    assert!(p.can_publish(b"jobs.render") && p.can_publish(b"signals.done"));
    assert!(!p.can_publish(b"other.x") && !p.can_publish(b"jobs"));
    assert!(p.can_subscribe(b"signals.>", None) && p.can_subscribe(b"_INBOX.x.y", None));
    assert!(!p.can_subscribe(b"jobs.>", None) && !p.can_subscribe(b">", None));

    let workers = a
        .authenticate(&up("fluo-workers", "fluo-workers-secret"), None)
        .unwrap();
    let p = workers.permissions.unwrap();
    assert!(p.can_publish(b"signals.progress") && !p.can_publish(b"jobs.render"));
    assert!(p.can_subscribe(b"jobs.>", Some(b"workers")) && p.can_subscribe(b"_INBOX.>", None));
    assert!(!p.can_subscribe(b"signals.>", None));
}

#[test]
fn subscribe_semantics() {
    // Wildcards in the SUB are matched as tokens.
    let p = perms(None, allow(&["foo.*", "bar.baz"]));
    assert!(p.can_subscribe(b"foo.x", None) && p.can_subscribe(b"foo.*", None));
    assert!(p.can_subscribe(b"foo.>", None));
    assert!(!p.can_subscribe(b"bar.*", None) && !p.can_subscribe(b"foo.x.y", None));

    // Deny does not stop a wider wildcard: deliveries are filtered instead.
    let p = perms(None, allow_deny(&[], &["foo.bar"]));
    assert!(!p.can_subscribe(b"foo.bar", None));
    assert!(p.can_subscribe(b"foo.*", None));
    assert!(p.needs_delivery_filter(b"foo.*", None) && !p.needs_delivery_filter(b"baz.*", None));
    assert!(p.delivery_denied(b"foo.bar", None) && !p.delivery_denied(b"foo.baz", None));

    // Queue-qualified entries.
    let p = perms(None, allow(&["jobs.* workers", "jobs.* batch.*", "plain"]));
    assert!(p.can_subscribe(b"jobs.a", Some(b"workers")));
    assert!(p.can_subscribe(b"jobs.a", Some(b"batch.nightly")));
    assert!(!p.can_subscribe(b"jobs.a", Some(b"others")));
    assert!(!p.can_subscribe(b"jobs.a", None));
    assert!(p.can_subscribe(b"plain", Some(b"any")));
    let p = perms(None, allow_deny(&[], &["jobs.* spies"]));
    assert!(!p.can_subscribe(b"jobs.a", Some(b"spies")));
    assert!(p.can_subscribe(b"jobs.a", Some(b"workers")) && p.can_subscribe(b"jobs.a", None));
    assert!(p.needs_delivery_filter(b"jobs.a", Some(b"spies")));
    assert!(p.delivery_denied(b"jobs.a", Some(b"spies")) && !p.delivery_denied(b"jobs.a", None));
}

#[test]
fn publish_semantics() {
    let p = perms(allow_deny(&["a.>"], &["a.secret.>"]), None);
    assert!(p.can_publish(b"a.b") && !p.can_publish(b"a.secret.x") && !p.can_publish(b"b"));
    let p = perms(allow_deny(&[], &["x.*"]), None);
    assert!(p.can_publish(b"y") && !p.can_publish(b"x.y"));
    // An empty allow list in a file means no list (nats).
    let o = opts(
        "authorization { users: [ {user: a, password: b, permissions: {publish: []}} ] }",
        &no_env,
    );
    let p = Permissions::from_config(o.users[0].permissions.as_ref().unwrap()).unwrap();
    assert!(!p.publish_restricted() && p.can_publish(b"any"));
    // allow_responses alone: nothing but replies.
    let c = PermissionsConfig {
        allow_responses: Some(ResponsePermission::default()),
        ..Default::default()
    };
    let p = Permissions::from_config(&c).unwrap();
    assert!(p.publish_restricted() && !p.can_publish(b"any"));
}

#[test]
fn response_permits() {
    let policy = ResponsePermission {
        max_msgs: Some(2),
        expires: Some(Duration::from_secs(10)),
    };
    let mut r = ResponsePermits::new(policy);
    let t0 = Instant::now();
    assert!(!r.can_reply(b"_INBOX.1", t0));
    r.note_request(b"_INBOX.1", t0);
    assert!(r.can_reply(b"_INBOX.1", t0));
    assert!(r.can_reply(b"_INBOX.1", t0));
    assert!(!r.can_reply(b"_INBOX.1", t0));
    assert!(r.is_empty());
    r.note_request(b"_INBOX.2", t0);
    assert!(!r.can_reply(b"_INBOX.2", t0 + Duration::from_secs(11)));
    let mut unlimited = ResponsePermits::new(ResponsePermission {
        max_msgs: None,
        expires: None,
    });
    unlimited.note_request(b"r", t0);
    for i in 0..100 {
        assert!(unlimited.can_reply(b"r", t0 + Duration::from_secs(i * 1000)));
    }
    // Pruning keeps the map bounded by live permits.
    let mut r = ResponsePermits::new(ResponsePermission::default());
    for i in 0..5000 {
        r.note_request(format!("r.{i}").as_bytes(), t0);
    }
    r.note_request(b"late", t0 + Duration::from_secs(300));
    assert!(r.len() < 5000);
}

#[test]
fn conn_permissions() {
    let c = PermissionsConfig {
        publish: allow(&["svc.>"]),
        subscribe: allow_deny(&["svc.>", "_INBOX.>"], &["svc.private"]),
        allow_responses: Some(ResponsePermission::default()),
    };
    let mut cp = ConnPermissions::new(Arc::new(Permissions::from_config(&c).unwrap()));
    assert!(cp.tracks_replies());
    assert!(cp.can_publish(b"svc.a") && cp.can_publish(b"svc.a"));
    assert!(!cp.can_publish(b"_INBOX.x"));
    cp.note_delivered(b"_INBOX.x");
    assert!(cp.can_publish(b"_INBOX.x"));
    assert!(!cp.can_publish(b"_INBOX.x"), "one response by default");
    assert!(cp.should_deliver(b"svc.private", None));
    assert!(!cp.can_subscribe(b"svc.private", None));
    assert!(cp.can_subscribe(b"svc.*", None));
    assert!(!cp.should_deliver(b"svc.private", None) && cp.should_deliver(b"svc.public", None));
    for i in 0..300 {
        cp.can_publish(format!("svc.{i}").as_bytes());
    }
    assert!(cp.can_publish(b"svc.a") && !cp.can_publish(b"nope"));
}

#[test]
fn error_texts() {
    assert_eq!(AUTH_VIOLATION, "Authorization Violation");
    assert_eq!(
        publish_violation(b"a.b"),
        "Permissions Violation for Publish to \"a.b\""
    );
    assert_eq!(
        subscribe_violation(b"a.*", None),
        "Permissions Violation for Subscription to \"a.*\""
    );
    assert_eq!(
        subscribe_violation(b"a", Some(b"q")),
        "Permissions Violation for Subscription to \"a\" using queue \"q\""
    );
    assert_eq!(
        reply_violation(b"$SRV.x"),
        "Permissions Violation for Publish with Reply of \"$SRV.x\""
    );
    let users = vec![User {
        username: "u".into(),
        password: "p".into(),
        permissions: Some(PermissionsConfig {
            publish: allow(&["a..b"]),
            ..Default::default()
        }),
        account: None,
        allowed_connection_types: vec![],
    }];
    let o = Options {
        users,
        ..Default::default()
    };
    assert_eq!(
        Authenticator::new(&o).unwrap_err().to_string(),
        "subject \"a..b\" is not a valid subject"
    );
}

#[test]
fn shareable_and_timeouts() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Authenticator>();
    send_sync::<Permissions>();
    let o = opts(
        "tls { cert_file: c, key_file: k, timeout: 5 }\nauthorization { token: t }",
        &no_env,
    );
    assert_eq!(
        Authenticator::new(&o).unwrap().timeout(),
        Duration::from_secs(6)
    );
}

#[test]
fn websocket_override() {
    let o = opts(
        "authorization { users: [ {user: a, password: a} ] }\n\
         websocket { port: 8080, no_tls: true, authorization { token: wt, timeout: 3 } }",
        &no_env,
    );
    let tcp = Authenticator::new(&o).unwrap();
    assert!(tcp
        .authenticate(&connect(None, None, Some("wt")), None)
        .is_err());
    let ws = Authenticator::new_websocket(&o).unwrap();
    assert!(ws
        .authenticate(&connect(None, None, Some("wt")), None)
        .is_ok());
    assert!(ws.authenticate(&up("a", "a"), None).is_ok());
    assert_eq!(ws.timeout(), Duration::from_secs(3));
    let plain = opts(
        "authorization { token: t }\nwebsocket { port: 1, no_tls: true }",
        &no_env,
    );
    let ws = Authenticator::new_websocket(&plain).unwrap();
    assert!(ws
        .authenticate(&connect(None, None, Some("t")), None)
        .is_ok());
}
