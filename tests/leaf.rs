//! Leaf nodes: a hub (`leafnodes { port }`) and a leaf
//! (`leafnodes { remotes: [...] }`), each side broker-edge or a nats-server
//! reference, talking the leafnode protocol to each other.
//!
//! Every test runs over the hub-leaf pairs in `LEAF_PAIRS` (a comma list of
//! `HUB-LEAF` with the kinds `ours`, `ref215` (nats-server 2.15.3 from
//! `target/refs/bin`) and `ref29` (Debian's nats-server 2.9.10 at
//! `/usr/sbin/nats-server`)). Unset, it is the five pairs with broker-edge
//! on at least one side:
//! `ours-ref215,ref215-ours,ours-ref29,ref29-ours,ours-ours`.
//! "ours" is the binary under test (`BROKER_EDGE_BIN`, like every other
//! file here), so
//!
//!     BROKER_EDGE_BIN=$PWD/target/refs/bin/nats-server-2.15.3 cargo test -p broker-edge --test leaf
//!
//! checks that the tests encode the references' behaviour (2.15.3 against
//! itself and against 2.9.10, both ways).
//!
//! Synchronisation never rests on fixed sleeps: a link is up when both
//! sides' `/leafz` count it; interest has crossed the link when probe
//! messages (payload [`PROBE`], skipped by the assertions) published on the
//! other side arrive, or when the other side's `/leafz?subs=1` lists the
//! subject.

mod common;

use std::time::{Duration, Instant};

use async_nats::{Client, ConnectOptions, HeaderMap, RequestErrorKind, Subscriber};
use common::leaf::*;
use common::{within, STEP};
use futures::StreamExt;
use serde_json::Value;

// ---------------------------------------------------------------------------
// 1. pub/sub both ways
// ---------------------------------------------------------------------------

async fn check_one_way(ctx: &str, publisher: &Client, subscriber: &Client, prefix: &str) {
    // `>`: every depth below the prefix.
    let mut all = subscriber.subscribe(format!("{prefix}.>")).await.unwrap();
    await_interest(ctx, publisher, &format!("{prefix}.probe"), &mut all).await;

    publisher
        .publish(format!("{prefix}.a.b.c"), "one".into())
        .await
        .unwrap();
    let m = next_real(ctx, &mut all).await;
    assert_eq!(m.subject.as_str(), format!("{prefix}.a.b.c"), "{ctx}");
    assert_eq!(text(&m), "one", "{ctx}");
    assert!(m.reply.is_none(), "{ctx}: no reply subject was sent");

    // Reply subject carried across.
    publisher
        .publish_with_reply(format!("{prefix}.r"), "answer.here", "two".into())
        .await
        .unwrap();
    let m = next_real(ctx, &mut all).await;
    assert_eq!(
        m.reply.as_deref(),
        Some("answer.here"),
        "{ctx}: reply subject"
    );
    assert_eq!(text(&m), "two", "{ctx}");

    // Headers (HMSG across the link), one repeated.
    let mut h = HeaderMap::new();
    h.insert("X-Leaf", "v1");
    h.append("X-Multi", "a");
    h.append("X-Multi", "b");
    publisher
        .publish_with_headers(format!("{prefix}.h"), h, "with headers".into())
        .await
        .unwrap();
    let m = next_real(ctx, &mut all).await;
    assert_eq!(m.subject.as_str(), format!("{prefix}.h"), "{ctx}");
    assert_eq!(text(&m), "with headers", "{ctx}");
    let hdrs = m
        .headers
        .as_ref()
        .unwrap_or_else(|| panic!("{ctx}: headers lost across the link"));
    assert_eq!(
        hdrs.get("X-Leaf").map(|v| v.as_str()),
        Some("v1"),
        "{ctx}: {hdrs:?}"
    );
    let multi: Vec<&str> = hdrs.get_all("X-Multi").map(|v| v.as_str()).collect();
    assert_eq!(multi, vec!["a", "b"], "{ctx}: repeated header");

    // Headers with an empty payload.
    let mut h = HeaderMap::new();
    h.insert("X-Empty", "yes");
    publisher
        .publish_with_headers(format!("{prefix}.he"), h, "".into())
        .await
        .unwrap();
    let m = next_real(ctx, &mut all).await;
    assert!(m.payload.is_empty(), "{ctx}: empty payload with headers");
    assert_eq!(
        m.headers
            .as_ref()
            .and_then(|h| h.get("X-Empty"))
            .map(|v| v.as_str()),
        Some("yes"),
        "{ctx}"
    );

    // A large payload (512 KiB, under the default max_payload of 1 MiB).
    let big: Vec<u8> = (0..512 * 1024).map(|i| (i % 251) as u8).collect();
    publisher
        .publish(format!("{prefix}.big"), big.clone().into())
        .await
        .unwrap();
    let m = next_real(ctx, &mut all).await;
    assert_eq!(m.payload.len(), big.len(), "{ctx}: large payload length");
    assert!(m.payload[..] == big[..], "{ctx}: large payload content");

    // Many in order.
    for i in 0..100 {
        publisher
            .publish(format!("{prefix}.seq"), format!("{i}").into())
            .await
            .unwrap();
    }
    for i in 0..100 {
        let m = next_real(ctx, &mut all).await;
        assert_eq!(text(&m), format!("{i}"), "{ctx}: order across the link");
    }

    // `*`: one token only; non-matching subjects are not delivered.
    let mut star = subscriber
        .subscribe(format!("{prefix}star.*.x"))
        .await
        .unwrap();
    await_interest(ctx, publisher, &format!("{prefix}star.probe.x"), &mut star).await;
    for (subj, body) in [
        (format!("{prefix}star.a.x"), "match 1"),
        (format!("{prefix}star.a.y"), "no"),
        (format!("{prefix}star.a.b.x"), "no"),
        (format!("{prefix}star.x"), "no"),
        (format!("{prefix}star.b.x"), "match 2"),
    ] {
        publisher.publish(subj, body.into()).await.unwrap();
    }
    let m = next_real(ctx, &mut star).await;
    assert_eq!(
        (m.subject.as_str(), text(&m).as_str()),
        (format!("{prefix}star.a.x").as_str(), "match 1"),
        "{ctx}"
    );
    let m = next_real(ctx, &mut star).await;
    assert_eq!(
        (m.subject.as_str(), text(&m).as_str()),
        (format!("{prefix}star.b.x").as_str(), "match 2"),
        "{ctx}"
    );
    common::sync(subscriber).await;
    assert_nothing_real(ctx, &mut star);
    assert_nothing_real(ctx, &mut all);
}

#[tokio::test]
async fn pubsub_both_ways() {
    for pair in pairs() {
        let (hub, leaf) = linked_pair(pair).await;
        let hc = hub.client().await;
        let lc = leaf.client().await;
        check_one_way(&format!("{pair}: sub on hub, pub on leaf"), &lc, &hc, "up").await;
        check_one_way(
            &format!("{pair}: sub on leaf, pub on hub"),
            &hc,
            &lc,
            "down",
        )
        .await;
    }
}

// ---------------------------------------------------------------------------
// 2. request/reply
// ---------------------------------------------------------------------------

/// Answers every request on `subject` with "echo:<payload>" until `stop`,
/// then unsubscribes.
fn spawn_responder(
    c: Client,
    mut sub: Subscriber,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = &mut stop => break,
                m = sub.next() => {
                    let Some(m) = m else { break };
                    if let Some(reply) = m.reply {
                        let mut body = b"echo:".to_vec();
                        body.extend_from_slice(&m.payload);
                        c.publish(reply, body.into()).await.unwrap();
                    }
                }
            }
        }
        sub.unsubscribe().await.unwrap();
        common::sync(&c).await;
    })
}

#[tokio::test]
async fn request_reply_across_the_link() {
    for pair in pairs() {
        let (hub, leaf) = linked_pair(pair).await;
        let hc = hub.client_with(quick_requests(500)).await;
        let lc = leaf.client_with(quick_requests(500)).await;
        for (responder, requester, label) in [
            (&hc, &lc, "responder on hub, requester on leaf"),
            (&lc, &hc, "responder on leaf, requester on hub"),
        ] {
            let ctx = format!("{pair}: {label}");
            let subject = "svc.echo";
            let sub = responder.subscribe(subject).await.unwrap();
            common::sync(responder).await;
            let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
            let task = spawn_responder(responder.clone(), sub, stop_rx);

            // Until the interest has crossed, the requester's server has
            // nobody to send to (no responders) or the request times out.
            let deadline = Instant::now() + STEP;
            loop {
                match requester.request(subject, "ping".into()).await {
                    Ok(m) => {
                        assert_eq!(text(&m), "echo:ping", "{ctx}");
                        break;
                    }
                    Err(e)
                        if matches!(
                            e.kind(),
                            RequestErrorKind::NoResponders | RequestErrorKind::TimedOut
                        ) && Instant::now() < deadline =>
                    {
                        tokio::time::sleep(Duration::from_millis(50)).await
                    }
                    Err(e) => panic!(
                        "{ctx}: request never answered: {e}\n{}",
                        logs(&[&hub, &leaf])
                    ),
                }
            }
            for i in 0..20 {
                let m = within(&ctx, requester.request(subject, format!("q{i}").into()))
                    .await
                    .unwrap_or_else(|e| panic!("{ctx}: request {i}: {e}"));
                assert_eq!(text(&m), format!("echo:q{i}"), "{ctx}");
            }
            // With headers on the request.
            let mut h = HeaderMap::new();
            h.insert("X-Req", "1");
            let m = within(
                &ctx,
                requester.request_with_headers(subject, h, "hdr".into()),
            )
            .await
            .unwrap_or_else(|e| panic!("{ctx}: request with headers: {e}"));
            assert_eq!(text(&m), "echo:hdr", "{ctx}");

            // The responder goes away: once its interest is withdrawn across
            // the link, the requester's server answers no-responders (503).
            stop_tx.send(()).unwrap();
            within(&ctx, task).await.unwrap();
            let deadline = Instant::now() + STEP;
            loop {
                match requester.request(subject, "anyone?".into()).await {
                    Err(e) if e.kind() == RequestErrorKind::NoResponders => break,
                    Err(e)
                        if e.kind() == RequestErrorKind::TimedOut && Instant::now() < deadline => {}
                    Err(e) => panic!(
                        "{ctx}: expected no responders after the responder left, got {e}\n{}",
                        logs(&[&hub, &leaf])
                    ),
                    Ok(m) => panic!("{ctx}: answered after the responder left: {:?}", text(&m)),
                }
            }
            // And it stays that way.
            for _ in 0..3 {
                let e = requester
                    .request(subject, "anyone?".into())
                    .await
                    .expect_err("nobody should answer");
                assert_eq!(e.kind(), RequestErrorKind::NoResponders, "{ctx}: {e}");
            }
        }
    }
}

// ---------------------------------------------------------------------------
// 3. queue groups
// ---------------------------------------------------------------------------

#[tokio::test]
async fn queue_groups_prefer_local_members() {
    for pair in pairs() {
        let ctx = pair.to_string();
        let (hub, leaf) = linked_pair(pair).await;
        let hc = hub.client().await;
        let lc = leaf.client().await;
        let mut hq = hc.queue_subscribe("work", "q".into()).await.unwrap();
        let mut lq = lc.queue_subscribe("work", "q".into()).await.unwrap();
        // Fences: plain subscriptions on the members' connections; once a
        // fence published after a batch arrives, anything of the batch that
        // crossed the link would have arrived before it.
        let mut hfence = hc.subscribe("fence.h").await.unwrap();
        let mut lfence = lc.subscribe("fence.l").await.unwrap();
        await_interest(&ctx, &lc, "fence.h", &mut hfence).await;
        await_interest(&ctx, &hc, "fence.l", &mut lfence).await;
        // The queue subscriptions were sent before the fences on the same
        // connections, but check the other side knows them anyway.
        wait_leafz_subs(&ctx, &hub, "\"work\" from the leaf", |l| {
            lists_contain(l, "work")
        })
        .await;
        wait_leafz_subs(&ctx, &leaf, "\"work\" from the hub", |l| {
            lists_contain(l, "work")
        })
        .await;

        // Published on the hub: all to the hub's member.
        for i in 0..20 {
            hc.publish("work", format!("h{i}").into()).await.unwrap();
        }
        hc.publish("fence.l", "f1".into()).await.unwrap();
        for i in 0..20 {
            let m = next_real(&ctx, &mut hq).await;
            assert_eq!(
                text(&m),
                format!("h{i}"),
                "{ctx}: hub publishes go to the hub member"
            );
        }
        assert_eq!(text(&next_real(&ctx, &mut lfence).await), "f1", "{ctx}");
        assert_nothing_real(&format!("{ctx}: leaf member got a hub publish"), &mut lq);

        // Published on the leaf: all to the leaf's member.
        for i in 0..20 {
            lc.publish("work", format!("l{i}").into()).await.unwrap();
        }
        lc.publish("fence.h", "f2".into()).await.unwrap();
        for i in 0..20 {
            let m = next_real(&ctx, &mut lq).await;
            assert_eq!(
                text(&m),
                format!("l{i}"),
                "{ctx}: leaf publishes go to the leaf member"
            );
        }
        assert_eq!(text(&next_real(&ctx, &mut hfence).await), "f2", "{ctx}");
        assert_nothing_real(&format!("{ctx}: hub member got a leaf publish"), &mut hq);

        // The hub's member leaves: hub publishes cross to the leaf's member.
        hq.unsubscribe().await.unwrap();
        common::sync(&hc).await;
        for i in 0..10 {
            hc.publish("work", format!("x{i}").into()).await.unwrap();
        }
        for i in 0..10 {
            let m = next_real(&format!("{ctx}: hub member gone"), &mut lq).await;
            assert_eq!(text(&m), format!("x{i}"), "{ctx}: hub member gone");
        }

        // A new hub member, and the leaf's member leaves: leaf publishes
        // cross to the hub.
        let mut hq2 = hc.queue_subscribe("work", "q".into()).await.unwrap();
        common::sync(&hc).await;
        lq.unsubscribe().await.unwrap();
        common::sync(&lc).await;
        await_interest(&format!("{ctx}: leaf member gone"), &lc, "work", &mut hq2).await;
        for i in 0..10 {
            lc.publish("work", format!("y{i}").into()).await.unwrap();
        }
        for i in 0..10 {
            let m = next_real(&format!("{ctx}: leaf member gone"), &mut hq2).await;
            assert_eq!(text(&m), format!("y{i}"), "{ctx}: leaf member gone");
        }
    }
}

// ---------------------------------------------------------------------------
// 4. interest removal
// ---------------------------------------------------------------------------

#[tokio::test]
async fn unsubscribe_withdraws_interest_across_the_link() {
    for pair in pairs() {
        let ctx = pair.to_string();
        let (hub, leaf) = linked_pair(pair).await;
        let hc = hub.client_with(quick_requests(300)).await;
        let lc = leaf.client().await;
        let mut gone = lc.subscribe("gone").await.unwrap();
        let mut still = lc.subscribe("still").await.unwrap();
        await_interest(&ctx, &hc, "gone", &mut gone).await;
        await_interest(&ctx, &hc, "still", &mut still).await;
        wait_leafz_subs(&ctx, &hub, "\"gone\" and \"still\"", |l| {
            lists_contain(l, "gone") && lists_contain(l, "still")
        })
        .await;

        gone.unsubscribe().await.unwrap();
        common::sync(&lc).await;

        // The hub's view of the link drops the subject, keeps the other.
        wait_leafz_subs(&ctx, &hub, "\"gone\" removed (\"still\" kept)", |l| {
            !lists_contain(l, "gone") && lists_contain(l, "still")
        })
        .await;
        // The hub knows nobody is interested: no responders at once.
        let deadline = Instant::now() + STEP;
        loop {
            match hc.request("gone", "?".into()).await {
                Err(e) if e.kind() == RequestErrorKind::NoResponders => break,
                Err(e) if e.kind() == RequestErrorKind::TimedOut && Instant::now() < deadline => {}
                other => panic!("{ctx}: expected no responders for \"gone\", got {other:?}"),
            }
        }

        // A publish on the hub to the withdrawn subject does not cross: the
        // link's out_msgs grows by one for the two publishes below.
        let out_msgs = |v: &Value| -> u64 {
            let leafs = v["leafs"].as_array().cloned().unwrap_or_default();
            assert_eq!(leafs.len(), 1, "{ctx}: one link on the hub: {v}");
            leafs[0]["out_msgs"]
                .as_u64()
                .unwrap_or_else(|| panic!("{ctx}: no out_msgs in /leafz: {v}"))
        };
        let before = out_msgs(&hub.leafz(false).await);
        hc.publish("gone", "not delivered".into()).await.unwrap();
        hc.publish("still", "delivered".into()).await.unwrap();
        let m = next_real(&ctx, &mut still).await;
        assert_eq!(text(&m), "delivered", "{ctx}");
        let after = out_msgs(&hub.leafz(false).await);
        assert_eq!(
            after - before,
            1,
            "{ctx}: hub /leafz out_msgs grew by {} for one publish with interest and one without",
            after - before
        );

        // Subscribing again brings it back.
        let mut again = lc.subscribe("gone").await.unwrap();
        await_interest(&ctx, &hc, "gone", &mut again).await;
        hc.publish("gone", "back".into()).await.unwrap();
        assert_eq!(text(&next_real(&ctx, &mut again).await), "back", "{ctx}");

        // The other way: a hub subscription leaving is withdrawn at the leaf.
        let lc2 = leaf.client_with(quick_requests(300)).await;
        let mut hsub = hc.subscribe("hubside").await.unwrap();
        await_interest(&ctx, &lc2, "hubside", &mut hsub).await;
        wait_leafz_subs(&ctx, &leaf, "\"hubside\"", |l| lists_contain(l, "hubside")).await;
        hsub.unsubscribe().await.unwrap();
        common::sync(&hc).await;
        wait_leafz_subs(&ctx, &leaf, "\"hubside\" removed", |l| {
            !lists_contain(l, "hubside")
        })
        .await;
        let deadline = Instant::now() + STEP;
        loop {
            match lc2.request("hubside", "?".into()).await {
                Err(e) if e.kind() == RequestErrorKind::NoResponders => break,
                Err(e) if e.kind() == RequestErrorKind::TimedOut && Instant::now() < deadline => {}
                other => panic!(
                    "{ctx}: expected no responders for \"hubside\" on the leaf, got {other:?}"
                ),
            }
        }
    }
}

// ---------------------------------------------------------------------------
// 8. two leafs through one hub
// ---------------------------------------------------------------------------

async fn exactly_once(
    ctx: &str,
    publisher: &Client,
    sub: &mut Subscriber,
    subscriber: &Client,
    subject: &str,
) {
    await_interest(ctx, publisher, subject, sub).await;
    for i in 0..10 {
        publisher
            .publish(subject.to_string(), format!("n{i}").into())
            .await
            .unwrap();
    }
    publisher
        .publish(subject.to_string(), "end".into())
        .await
        .unwrap();
    for i in 0..10 {
        assert_eq!(
            text(&next_real(ctx, sub).await),
            format!("n{i}"),
            "{ctx}: each message once, in order"
        );
    }
    assert_eq!(
        text(&next_real(ctx, sub).await),
        "end",
        "{ctx}: a duplicate arrived"
    );
    common::sync(subscriber).await;
    assert_nothing_real(ctx, sub);
}

#[tokio::test]
async fn leaf_to_leaf_through_the_hub() {
    for pair in pairs() {
        let ctx = pair.to_string();
        let lp = common::free_port();
        let hub = Node::start(&ctx, pair.hub, "hub", &hub_conf(lp, "", ""));
        let leaf1 = Node::start(
            &ctx,
            pair.leaf,
            "leaf1",
            &leaf_conf(&[remote(&leaf_url(lp), "")], ""),
        );
        let leaf2 = Node::start(
            &ctx,
            pair.leaf,
            "leaf2",
            &leaf_conf(&[remote(&leaf_url(lp), "")], ""),
        );
        wait_links(&ctx, &[(&hub, 2), (&leaf1, 1), (&leaf2, 1)]).await;
        let c1 = leaf1.client().await;
        let c2 = leaf2.client().await;
        let hc = hub.client().await;

        let mut s1 = c1.subscribe("chain.a").await.unwrap();
        exactly_once(
            &format!("{ctx}: leaf2 -> leaf1"),
            &c2,
            &mut s1,
            &c1,
            "chain.a",
        )
        .await;
        let mut s2 = c2.subscribe("chain.b").await.unwrap();
        exactly_once(
            &format!("{ctx}: leaf1 -> leaf2"),
            &c1,
            &mut s2,
            &c2,
            "chain.b",
        )
        .await;

        // Subscribers on both leafs and the hub: one copy each.
        let mut h = hc.subscribe("chain.all").await.unwrap();
        let mut a = c1.subscribe("chain.all").await.unwrap();
        let mut b = c2.subscribe("chain.all").await.unwrap();
        await_interest(&ctx, &c2, "chain.all", &mut a).await;
        await_interest(&ctx, &c1, "chain.all", &mut b).await;
        await_interest(&ctx, &c1, "chain.all", &mut h).await;
        await_interest(&ctx, &hc, "chain.all", &mut a).await;
        await_interest(&ctx, &hc, "chain.all", &mut b).await;
        c1.publish("chain.all", "from leaf1".into()).await.unwrap();
        c1.publish("chain.all", "end".into()).await.unwrap();
        for (name, sub) in [("hub", &mut h), ("leaf1", &mut a), ("leaf2", &mut b)] {
            assert_eq!(
                text(&next_real(&ctx, sub).await),
                "from leaf1",
                "{ctx}: at {name}"
            );
            assert_eq!(
                text(&next_real(&ctx, sub).await),
                "end",
                "{ctx}: duplicate at {name}"
            );
        }
        common::sync(&hc).await;
        common::sync(&c1).await;
        common::sync(&c2).await;
        assert_nothing_real(&ctx, &mut h);
        assert_nothing_real(&ctx, &mut a);
        assert_nothing_real(&ctx, &mut b);
    }
}

// ---------------------------------------------------------------------------
// 10. many leaf connections
// ---------------------------------------------------------------------------

/// Links in the many-leafs test: one leaf server with this many remotes to
/// the same hub. Each remote binds its own local account (nats-server 2.15
/// refuses two remotes with the same URL and account at start-up:
/// "duplicate remote urls") and logs in as its own hub user bound to its own
/// hub account (a 2.9.10 hub closes a second link from the same server into
/// the same account: "Duplicate Remote LeafNode Connection").
const MANY: usize = 50;

#[tokio::test]
async fn fifty_leaf_links() {
    for pair in pairs() {
        let ctx = pair.to_string();
        let lp = common::free_port();
        let hub_accounts: Vec<String> = (0..MANY)
            .map(|i| format!("  H{i}: {{ users: [ {{ user: h{i}, password: p }} ] }}"))
            .collect();
        let leaf_users: Vec<String> = (0..MANY)
            .map(|i| format!("{{ user: l{i}, password: p, account: H{i} }}"))
            .collect();
        let hub = Node::start(
            &ctx,
            pair.hub,
            "hub",
            &hub_conf(
                lp,
                &format!(
                    "authorization {{ users: [\n    {}\n  ] }}",
                    leaf_users.join(",\n    ")
                ),
                &format!("accounts {{\n{}\n}}", hub_accounts.join("\n")),
            ),
        );
        let accounts: Vec<String> = (0..MANY)
            .map(|i| format!("  L{i}: {{ users: [ {{ user: u{i}, password: p }} ] }}"))
            .collect();
        let remotes: Vec<String> = (0..MANY)
            .map(|i| {
                remote(
                    &format!("nats://l{i}:p@127.0.0.1:{lp}"),
                    &format!("account: L{i}"),
                )
            })
            .collect();
        let leaf = Node::start(
            &ctx,
            pair.leaf,
            "leaf",
            &leaf_conf(
                &remotes,
                &format!("accounts {{\n{}\n}}", accounts.join("\n")),
            ),
        );
        wait_links(&ctx, &[(&hub, MANY as u64), (&leaf, MANY as u64)]).await;
        let v = hub.leafz(false).await;
        let mut bound: Vec<String> = v["leafs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["account"].as_str().unwrap_or("?").to_string())
            .collect();
        bound.sort();
        let mut want: Vec<String> = (0..MANY).map(|i| format!("H{i}")).collect();
        want.sort();
        assert_eq!(
            bound, want,
            "{ctx}: the hub's /leafz accounts, one link each"
        );

        let mut hubc = Vec::new();
        let mut leafc = Vec::new();
        let mut down = Vec::new();
        let mut up = Vec::new();
        for i in 0..MANY {
            let h = hub
                .client_with(ConnectOptions::with_user_and_password(
                    format!("h{i}"),
                    "p".into(),
                ))
                .await;
            let l = leaf
                .client_with(ConnectOptions::with_user_and_password(
                    format!("u{i}"),
                    "p".into(),
                ))
                .await;
            down.push(l.subscribe("fan.down").await.unwrap());
            up.push(h.subscribe("fan.up").await.unwrap());
            hubc.push(h);
            leafc.push(l);
        }
        // Probe every link both ways until each probe has come through.
        let mut ready = [(false, false); MANY];
        let deadline = Instant::now() + STEP;
        while ready.iter().any(|r| !(r.0 && r.1)) {
            assert!(
                Instant::now() < deadline,
                "{ctx}: interest never crossed on links (down, up): {:?}",
                ready
                    .iter()
                    .enumerate()
                    .filter(|(_, r)| !(r.0 && r.1))
                    .collect::<Vec<_>>()
            );
            for i in 0..MANY {
                if !ready[i].0 {
                    hubc[i].publish("fan.down", PROBE.into()).await.unwrap();
                }
                if !ready[i].1 {
                    leafc[i].publish("fan.up", PROBE.into()).await.unwrap();
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            for i in 0..MANY {
                while let Some(m) = common::queued(&mut down[i]) {
                    assert!(
                        &m.payload[..] == PROBE,
                        "{ctx}: link {i}: unexpected {:?}",
                        text(&m)
                    );
                    ready[i].0 = true;
                }
                while let Some(m) = common::queued(&mut up[i]) {
                    assert!(
                        &m.payload[..] == PROBE,
                        "{ctx}: link {i}: unexpected {:?}",
                        text(&m)
                    );
                    ready[i].1 = true;
                }
            }
        }
        // One message per account each way: it reaches that link's
        // subscriber only, once.
        for i in 0..MANY {
            hubc[i]
                .publish("fan.down", format!("down {i}").into())
                .await
                .unwrap();
            leafc[i]
                .publish("fan.up", format!("up {i}").into())
                .await
                .unwrap();
        }
        for i in 0..MANY {
            hubc[i].publish("fan.down", "end".into()).await.unwrap();
            leafc[i].publish("fan.up", "end".into()).await.unwrap();
        }
        for i in 0..MANY {
            let c = format!("{ctx}: link {i}");
            assert_eq!(
                text(&next_real(&c, &mut down[i]).await),
                format!("down {i}"),
                "{c}"
            );
            assert_eq!(text(&next_real(&c, &mut down[i]).await), "end", "{c}");
            assert_eq!(
                text(&next_real(&c, &mut up[i]).await),
                format!("up {i}"),
                "{c}"
            );
            assert_eq!(text(&next_real(&c, &mut up[i]).await), "end", "{c}");
        }
    }
}
