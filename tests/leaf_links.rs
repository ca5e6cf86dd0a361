//! Leaf links under stress and policy: authorization, accounts, TLS, hub
//! restarts, loops, remote deny lists, a duplicate link, a path that goes
//! silent — over the hub-leaf pairs of `LEAF_PAIRS` (see `tests/leaf.rs`).

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use async_nats::{ConnectOptions, HeaderMap};
use common::leaf::*;
use common::STEP;

// ---------------------------------------------------------------------------
// 5. authorization on the leafnode port
// ---------------------------------------------------------------------------

#[tokio::test]
async fn leafnode_authorization() {
    for pair in pairs() {
        let ctx = pair.to_string();
        let lp = common::free_port();
        let hub = Node::start(
            &ctx,
            pair.hub,
            "hub",
            &hub_conf(lp, "authorization { user: a, password: b }", ""),
        );
        let good = Node::start(
            &ctx,
            pair.leaf,
            "leaf-good",
            &leaf_conf(&[remote(&format!("nats://a:b@127.0.0.1:{lp}"), "")], ""),
        );
        wait_links(
            &format!("{ctx}: right credentials"),
            &[(&hub, 1), (&good, 1)],
        )
        .await;
        let hc = hub.client().await;
        let gc = good.client().await;
        let mut s = hc.subscribe("auth.x").await.unwrap();
        await_interest(&ctx, &gc, "auth.x", &mut s).await;
        gc.publish("auth.x", "ok".into()).await.unwrap();
        assert_eq!(text(&next_real(&ctx, &mut s).await), "ok", "{ctx}");

        let wrong = Node::start(
            &ctx,
            pair.leaf,
            "leaf-wrong-password",
            &leaf_conf(&[remote(&format!("nats://a:wrong@127.0.0.1:{lp}"), "")], ""),
        );
        let none = Node::start(
            &ctx,
            pair.leaf,
            "leaf-no-credentials",
            &leaf_conf(&[remote(&leaf_url(lp), "")], ""),
        );
        // Each refused leaf logs the hub's -ERR.
        for n in [&wrong, &none] {
            let deadline = Instant::now() + STEP;
            while !n.srv.log().contains("Authorization Violation") {
                if Instant::now() > deadline {
                    panic!(
                        "{ctx}: {} never logged \"Authorization Violation\"\n{}",
                        n.role,
                        logs(&[&hub, n])
                    );
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        // And for a few seconds (several reconnect attempts) neither links.
        let until = Instant::now() + Duration::from_secs(3);
        while Instant::now() < until {
            for (n, want) in [(&hub, 1), (&wrong, 0), (&none, 0), (&good, 1)] {
                let got = n.leaf_count().await;
                assert_eq!(
                    got,
                    want,
                    "{ctx}: {} /leafz counts {got} leaf links, wanted {want}\n{}",
                    n.role,
                    logs(&[&hub, &wrong, &none])
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // They kept trying (the reference retries every second).
        let tries = wrong.srv.log().matches("Authorization Violation").count();
        assert!(
            tries >= 2,
            "{ctx}: the refused leaf retried only {tries} time(s)\n{}",
            wrong.describe()
        );
    }
}

// ---------------------------------------------------------------------------
// 6. accounts mapped over the link
// ---------------------------------------------------------------------------

#[tokio::test]
async fn leaf_binds_to_the_account_of_its_user() {
    for pair in pairs() {
        let ctx = pair.to_string();
        let lp = common::free_port();
        let hub = Node::start(&ctx, pair.hub,
            "hub",
            &hub_conf(
                lp,
                "authorization { users: [ { user: l, password: p, account: A } ] }",
                "accounts {\n  A: { users: [ { user: ua, password: pa } ] }\n  B: { users: [ { user: ub, password: pb } ] }\n}",
            ),
        );
        let leaf = Node::start(
            &ctx,
            pair.leaf,
            "leaf",
            &leaf_conf(&[remote(&format!("nats://l:p@127.0.0.1:{lp}"), "")], ""),
        );
        wait_links(&ctx, &[(&hub, 1), (&leaf, 1)]).await;
        let v = hub.leafz(false).await;
        assert_eq!(
            v["leafs"][0]["account"], "A",
            "{ctx}: the hub binds the link to account A: {v}"
        );
        let v = leaf.leafz(false).await;
        assert_eq!(
            v["leafs"][0]["account"], "$G",
            "{ctx}: the leaf's side is its global account: {v}"
        );

        let ca = hub
            .client_with(ConnectOptions::with_user_and_password(
                "ua".into(),
                "pa".into(),
            ))
            .await;
        let cb = hub
            .client_with(ConnectOptions::with_user_and_password(
                "ub".into(),
                "pb".into(),
            ))
            .await;
        let lc = leaf.client().await;

        // Leaf -> hub: account A's subscriber only.
        let mut sa = ca.subscribe("acct.up").await.unwrap();
        let mut sb = cb.subscribe("acct.up").await.unwrap();
        common::sync(&cb).await;
        await_interest(&ctx, &lc, "acct.up", &mut sa).await;
        for i in 0..5 {
            lc.publish("acct.up", format!("m{i}").into()).await.unwrap();
        }
        for i in 0..5 {
            assert_eq!(
                text(&next_real(&ctx, &mut sa).await),
                format!("m{i}"),
                "{ctx}"
            );
        }
        common::sync(&cb).await;
        assert_nothing(
            &format!("{ctx}: account B received a message from the leaf"),
            &mut sb,
        );

        // Hub -> leaf: account A's publishes cross, account B's do not.
        let mut ls = lc.subscribe("acct.down").await.unwrap();
        await_interest(&ctx, &ca, "acct.down", &mut ls).await;
        cb.publish("acct.down", "from B".into()).await.unwrap();
        common::sync(&cb).await;
        ca.publish("acct.down", "from A".into()).await.unwrap();
        let m = next_real(&ctx, &mut ls).await;
        assert_eq!(
            text(&m),
            "from A",
            "{ctx}: account B's publish crossed the link"
        );
        common::sync(&lc).await;
        assert_nothing_real(&ctx, &mut ls);

        // Account B subscribing to the same subject gets nothing from the
        // leaf; the link's interest shows in account A only.
        let mut sb2 = cb.subscribe("acct.b").await.unwrap();
        let mut sa2 = ca.subscribe("acct.b").await.unwrap();
        await_interest(&ctx, &lc, "acct.b", &mut sa2).await;
        lc.publish("acct.b", "x".into()).await.unwrap();
        assert_eq!(text(&next_real(&ctx, &mut sa2).await), "x", "{ctx}");
        common::sync(&cb).await;
        assert_nothing(
            &format!("{ctx}: account B received a message from the leaf"),
            &mut sb2,
        );
    }
}

// ---------------------------------------------------------------------------
// 7. TLS on the link
// ---------------------------------------------------------------------------

/// A CA and a server certificate for localhost/127.0.0.1 (PEM files).
struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn new() -> Pki {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
        let dir = tempfile::tempdir().unwrap();
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "broker-edge leaf test CA");
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let key = KeyPair::generate().unwrap();
        let mut p =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
        p.distinguished_name.push(DnType::CommonName, "hub");
        let cert = p.signed_by(&key, &ca, &ca_key).unwrap();
        let d = dir.path();
        std::fs::write(d.join("ca.pem"), ca.pem()).unwrap();
        std::fs::write(d.join("hub-cert.pem"), cert.pem()).unwrap();
        std::fs::write(d.join("hub-key.pem"), key.serialize_pem()).unwrap();
        Pki { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

fn q(p: &Path) -> String {
    format!("{:?}", p.to_str().unwrap())
}

#[tokio::test]
async fn tls_link() {
    let pki = Pki::new();
    for pair in pairs() {
        let ctx = pair.to_string();
        let lp = common::free_port();
        let hub = Node::start(
            &ctx,
            pair.hub,
            "hub",
            &hub_conf(
                lp,
                &format!(
                    "tls {{ cert_file: {}, key_file: {} }}",
                    q(&pki.path("hub-cert.pem")),
                    q(&pki.path("hub-key.pem"))
                ),
                "",
            ),
        );
        let leaf = Node::start(
            &ctx,
            pair.leaf,
            "leaf",
            &leaf_conf(
                &[remote(
                    &format!("tls://127.0.0.1:{lp}"),
                    &format!("tls {{ ca_file: {} }}", q(&pki.path("ca.pem"))),
                )],
                "",
            ),
        );
        wait_links(&ctx, &[(&hub, 1), (&leaf, 1)]).await;
        let hc = hub.client().await;
        let lc = leaf.client().await;

        let mut s = hc.subscribe("tls.up").await.unwrap();
        await_interest(&ctx, &lc, "tls.up", &mut s).await;
        let big: Vec<u8> = (0..200 * 1024).map(|i| (i % 253) as u8).collect();
        lc.publish("tls.up", big.clone().into()).await.unwrap();
        let m = next_real(&ctx, &mut s).await;
        assert!(m.payload[..] == big[..], "{ctx}: payload across TLS");

        let mut s = lc.subscribe("tls.down").await.unwrap();
        await_interest(&ctx, &hc, "tls.down", &mut s).await;
        let mut h = HeaderMap::new();
        h.insert("X-Tls", "yes");
        hc.publish_with_headers("tls.down", h, "down".into())
            .await
            .unwrap();
        let m = next_real(&ctx, &mut s).await;
        assert_eq!(text(&m), "down", "{ctx}");
        assert_eq!(
            m.headers
                .as_ref()
                .and_then(|h| h.get("X-Tls"))
                .map(|v| v.as_str()),
            Some("yes"),
            "{ctx}"
        );
    }
}

// ---------------------------------------------------------------------------
// 9. reconnect after the hub restarts
// ---------------------------------------------------------------------------

#[tokio::test]
async fn leaf_reconnects_after_hub_restart() {
    for pair in pairs() {
        let ctx = pair.to_string();
        let (mut hub, leaf) = linked_pair(pair).await;
        let lc = leaf.client().await;
        let mut ls = lc.subscribe("re.down").await.unwrap();
        {
            let hc = hub.client().await;
            await_interest(&ctx, &hc, "re.down", &mut ls).await;
        }

        hub.srv.crash();
        // The leaf notices the link is gone.
        let deadline = Instant::now() + STEP;
        while leaf.leaf_count().await != 0 {
            assert!(
                Instant::now() < deadline,
                "{ctx}: leaf still counts a link after the hub died\n{}",
                leaf.describe()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        hub.srv.restart();
        wait_links(
            &format!("{ctx}: after the hub restarted"),
            &[(&hub, 1), (&leaf, 1)],
        )
        .await;

        // The leaf's existing subscription is sent again on the new link.
        let hc = hub.client().await;
        await_interest(&format!("{ctx}: after restart"), &hc, "re.down", &mut ls).await;
        hc.publish("re.down", "again".into()).await.unwrap();
        assert_eq!(text(&next_real(&ctx, &mut ls).await), "again", "{ctx}");
        // And the other way.
        let mut hs = hc.subscribe("re.up").await.unwrap();
        await_interest(&format!("{ctx}: after restart"), &lc, "re.up", &mut hs).await;
        lc.publish("re.up", "up again".into()).await.unwrap();
        assert_eq!(text(&next_real(&ctx, &mut hs).await), "up again", "{ctx}");
    }
}

// ---------------------------------------------------------------------------
// 11. loop detection
// ---------------------------------------------------------------------------

#[tokio::test]
async fn loop_is_detected() {
    for pair in pairs() {
        let ctx = pair.to_string();
        let pa = common::free_port();
        let pb = common::free_port();
        let conf = |own: u16, other: u16| {
            hub_conf(
                own,
                &format!("remotes: [ {} ]", remote(&leaf_url(other), "")),
                "",
            )
        };
        let a = Node::start(&ctx, pair.hub, "a", &conf(pa, pb));
        let b = Node::start(&ctx, pair.leaf, "b", &conf(pb, pa));
        let deadline = Instant::now() + Duration::from_secs(15);
        while !(a.srv.log().contains("Loop detected") || b.srv.log().contains("Loop detected")) {
            assert!(
                Instant::now() < deadline,
                "{ctx}: neither side logged \"Loop detected\"\n{}",
                logs(&[&a, &b])
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// A remote's `deny_exports` keeps those subjects from going to the hub,
/// its `deny_imports` keeps them from coming in; other subjects flow.
#[tokio::test]
async fn remote_deny_lists_hold_both_ways() {
    for pair in pairs() {
        let ctx = pair.to_string();
        let lp = common::free_port();
        let hub = Node::start(&ctx, pair.hub, "hub", &hub_conf(lp, "", ""));
        let leaf = Node::start(
            &ctx,
            pair.leaf,
            "leaf",
            &leaf_conf(
                &[remote(
                    &leaf_url(lp),
                    "deny_exports: [\"up.secret.>\"]\n deny_imports: [\"down.private.>\"]",
                )],
                "",
            ),
        );
        wait_links(&ctx, &[(&hub, 1), (&leaf, 1)]).await;
        let hc = hub.client().await;
        let lc = leaf.client().await;

        // Leaf → hub: public crosses, secret does not.
        let mut on_hub = hc.subscribe("up.>").await.unwrap();
        await_interest(&ctx, &lc, "up.probe", &mut on_hub).await;
        lc.publish("up.secret.x", "no".into()).await.unwrap();
        lc.publish("up.public.x", "yes".into()).await.unwrap();
        lc.flush().await.unwrap();
        let m = next_real(&ctx, &mut on_hub).await;
        assert_eq!(
            (m.subject.as_str(), text(&m).as_str()),
            ("up.public.x", "yes"),
            "{ctx}: deny_exports let up.secret.x through (or up.public.x was lost)"
        );

        // Hub → leaf: public crosses, private does not.
        let mut on_leaf = lc.subscribe("down.>").await.unwrap();
        await_interest(&ctx, &hc, "down.probe", &mut on_leaf).await;
        hc.publish("down.private.x", "no".into()).await.unwrap();
        hc.publish("down.public.y", "yes".into()).await.unwrap();
        hc.flush().await.unwrap();
        let m = next_real(&ctx, &mut on_leaf).await;
        assert_eq!(
            (m.subject.as_str(), text(&m).as_str()),
            ("down.public.y", "yes"),
            "{ctx}: deny_imports let down.private.x through (or down.public.y was lost)"
        );
        // A last round trip each way: anything denied would be here by now.
        await_interest(&ctx, &lc, "up.fence", &mut on_hub).await;
        await_interest(&ctx, &hc, "down.fence", &mut on_leaf).await;
        assert_nothing_real(&ctx, &mut on_hub);
        assert_nothing_real(&ctx, &mut on_leaf);
    }
}

/// A server that links again into the same account while its old link is
/// still open (say after a network cut the hub has not noticed) replaces
/// it: the old link is told and closed, as the reference does.
#[tokio::test]
async fn a_second_link_from_the_same_server_replaces_the_first() {
    let mut hubs: Vec<Kind> = Vec::new();
    for p in pairs() {
        if !hubs.contains(&p.hub) {
            hubs.push(p.hub);
        }
    }
    for kind in hubs {
        let ctx = format!("hub {}", kind.name());
        let lp = common::free_port();
        let hub = Node::start(&ctx, kind, "hub", &hub_conf(lp, "", ""));
        let addr: std::net::SocketAddr = format!("127.0.0.1:{lp}").parse().unwrap();
        let connect = r#"CONNECT {"server_id":"NFAKELEAF","name":"fake-leaf","headers":true,"remote_account":"$G"}"#;
        let mut first = common::Raw::connect(addr).await;
        assert!(
            first.info["client_id"].as_u64().unwrap_or(0) > 0,
            "{ctx}: {:?}",
            first.info
        );
        first.send(&format!("{connect}\r\nPING\r\n")).await;
        // The link is up once the hub answers PING.
        let deadline = Instant::now() + STEP;
        loop {
            let l = first
                .line()
                .await
                .unwrap_or_else(|| panic!("{ctx}: closed"));
            if l == "PONG" {
                break;
            }
            assert!(Instant::now() < deadline, "{ctx}: no PONG");
        }
        wait_links(&ctx, &[(&hub, 1)]).await;

        let mut second = common::Raw::connect(addr).await;
        second.send(&format!("{connect}\r\nPING\r\n")).await;
        // The first is told why and closed; the second stays.
        let deadline = Instant::now() + STEP;
        let mut told = false;
        while let Ok(Some(l)) = tokio::time::timeout(
            deadline.saturating_duration_since(Instant::now()),
            first.line(),
        )
        .await
        {
            if l.contains("Duplicate Remote LeafNode Connection") {
                told = true;
            }
        }
        assert!(
            told,
            "{ctx}: the first link was not told\n{}",
            hub.describe()
        );
        wait_links(&ctx, &[(&hub, 1)]).await;
        second.send("PING\r\n").await;
        let deadline = Instant::now() + STEP;
        loop {
            let l = second
                .line()
                .await
                .unwrap_or_else(|| panic!("{ctx}: second link closed"));
            if l == "PONG" {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{ctx}: no PONG on the second link"
            );
        }
    }
}

// ---------------------------------------------------------------------------
// A link that goes silent
// ---------------------------------------------------------------------------

/// A TCP relay between a leaf and its hub that can go silent: while cut it
/// neither forwards nor closes anything (a dead network path, not a reset),
/// and new connections hang unanswered; when restored it forwards again.
struct Relay {
    port: u16,
    cut: std::sync::Arc<std::sync::atomic::AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Relay {
    async fn start(to: u16) -> Relay {
        use std::sync::atomic::Ordering;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let cut = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = cut.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((inbound, _)) = listener.accept().await else {
                    return;
                };
                let flag = flag.clone();
                tokio::spawn(async move {
                    // A connection made during the cut is never answered.
                    while flag.load(Ordering::Relaxed) {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    let Ok(outbound) = tokio::net::TcpStream::connect(("127.0.0.1", to)).await
                    else {
                        return;
                    };
                    let (ir, iw) = inbound.into_split();
                    let (or, ow) = outbound.into_split();
                    let pump = |mut r: tokio::net::tcp::OwnedReadHalf,
                                mut w: tokio::net::tcp::OwnedWriteHalf,
                                flag: std::sync::Arc<std::sync::atomic::AtomicBool>| async move {
                        use tokio::io::{AsyncReadExt, AsyncWriteExt};
                        let mut buf = vec![0u8; 64 * 1024];
                        loop {
                            let n = match r.read(&mut buf).await {
                                Ok(0) | Err(_) if flag.load(Ordering::Relaxed) => {
                                    // Silent: the other side hears nothing,
                                    // not even a close.
                                    std::future::pending::<()>().await;
                                    return;
                                }
                                Ok(0) | Err(_) => return,
                                Ok(n) => n,
                            };
                            if flag.load(Ordering::Relaxed) {
                                // Silent: swallow; this connection is dead.
                                continue;
                            }
                            if w.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                        }
                    };
                    let a = tokio::spawn(pump(ir, ow, flag.clone()));
                    let b = tokio::spawn(pump(or, iw, flag));
                    let _ = tokio::join!(a, b);
                });
            }
        });
        Relay { port, cut, task }
    }

    fn set_cut(&self, cut: bool) {
        self.cut.store(cut, std::sync::atomic::Ordering::Relaxed);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The path between leaf and hub goes silent (no reset) for a while: both
/// sides give the link up on missed PINGs, the leaf keeps redialing, and
/// once the path is back there is again exactly one link and messages flow
/// both ways.
#[tokio::test]
async fn a_silent_link_is_dropped_and_comes_back() {
    for pair in pairs() {
        let ctx = pair.to_string();
        let lp = common::free_port();
        let top = "ping_interval: \"1s\"\nping_max: 2";
        let hub = Node::start(&ctx, pair.hub, "hub", &hub_conf(lp, "", top));
        let relay = Relay::start(lp).await;
        let leaf = Node::start(
            &ctx,
            pair.leaf,
            "leaf",
            &leaf_conf(&[remote(&leaf_url(relay.port), "")], top),
        );
        wait_links(&ctx, &[(&hub, 1), (&leaf, 1)]).await;
        let hc = hub.client().await;
        let lc = leaf.client().await;
        let mut on_hub = hc.subscribe("silent.>").await.unwrap();
        await_interest(&ctx, &lc, "silent.probe", &mut on_hub).await;

        relay.set_cut(true);
        // Both sides notice: their link counts drop to zero.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if hub.leaf_count().await == 0 && leaf.leaf_count().await == 0 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{ctx}: the silent link was never given up\n{}",
                logs(&[&hub, &leaf])
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        relay.set_cut(false);
        wait_links(&ctx, &[(&hub, 1), (&leaf, 1)]).await;

        // Interest is back both ways.
        await_interest(&ctx, &lc, "silent.probe", &mut on_hub).await;
        lc.publish("silent.after", "back".into()).await.unwrap();
        let m = next_real(&ctx, &mut on_hub).await;
        assert_eq!(text(&m), "back", "{ctx}");
        let mut on_leaf = lc.subscribe("down.>").await.unwrap();
        await_interest(&ctx, &hc, "down.probe", &mut on_leaf).await;
        // Still exactly one link on each side.
        assert_eq!(hub.leaf_count().await, 1, "{ctx}");
        assert_eq!(leaf.leaf_count().await, 1, "{ctx}");
    }
}

/// A reload that removes the user a leaf link came in as closes the link,
/// and the leaf cannot link again with those credentials. Broker Edge hubs
/// only: nats-server 2.15.3 leaves such a link up until it drops for
/// another reason (checked: the pair with a 2.15.3 hub fails here), where
/// we re-check links as we re-check clients.
#[tokio::test]
async fn a_reload_removing_the_links_user_closes_it() {
    for pair in pairs().into_iter().filter(|p| p.hub == Kind::Ours) {
        if common::is_reference() {
            eprintln!("skipped under the reference server: it keeps such links");
            return;
        }
        let ctx = pair.to_string();
        let lp = common::free_port();
        let users = |with_leaf: bool| {
            let leaf_user = if with_leaf {
                "{user: l, password: p}, "
            } else {
                ""
            };
            format!("authorization {{ users: [ {leaf_user}{{user: c, password: c}} ] }}")
        };
        let hub = Node::start(&ctx, pair.hub, "hub", &hub_conf(lp, "", &users(true)));
        let leaf = Node::start(
            &ctx,
            pair.leaf,
            "leaf",
            &leaf_conf(&[remote(&format!("nats://l:p@127.0.0.1:{lp}"), "")], ""),
        );
        wait_links(&ctx, &[(&hub, 1), (&leaf, 1)]).await;

        std::fs::write(hub.config_path(), hub_conf(lp, "", &users(false))).unwrap();
        hub.srv.signal(libc::SIGHUP);
        let deadline = Instant::now() + STEP;
        while hub.leaf_count().await != 0 {
            assert!(
                Instant::now() < deadline,
                "{ctx}: the link of a removed user stayed up\n{}",
                logs(&[&hub, &leaf])
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // The leaf keeps trying; it does not get in.
        tokio::time::sleep(Duration::from_millis(2500)).await;
        assert_eq!(hub.leaf_count().await, 0, "{ctx}\n{}", logs(&[&hub, &leaf]));
    }
}
