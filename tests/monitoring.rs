//! Monitoring HTTP endpoints (`-m PORT`): /healthz, /varz, /connz, /subsz
//! with nats-server's JSON field names and query parameters. Counts are
//! compared as deltas where the reference has internal (system account)
//! connections or subscriptions of its own.

mod common;

use std::time::{Duration, Instant};

use common::{sync, Raw, Server};
use serde_json::Value;

const NAMED: &str = r#"{"verbose":false,"pedantic":false,"protocol":1,"name":"alpha","lang":"raw","version":"9.9.9"}"#;
const QUIET: &str = r#"{"verbose":false,"pedantic":false,"protocol":1}"#;

/// Poll `path` until `pred` holds (bounded); counters may be gathered from
/// several shards, but must converge quickly.
async fn json_until(s: &Server, path: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let v = s.json(path).await;
        if pred(&v) {
            return v;
        }
        if Instant::now() > deadline {
            panic!("GET {path}: condition never held; last answer:\n{v:#}");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn u(v: &Value) -> u64 {
    v.as_u64()
        .unwrap_or_else(|| panic!("not an unsigned number: {v}"))
}

#[tokio::test]
async fn healthz_is_ok() {
    let s = Server::start(&[]);
    let (status, body) = s.http("/healthz").await;
    assert_eq!(status, 200);
    let v: Value = serde_json::from_str(&body).expect("healthz JSON");
    assert_eq!(v, serde_json::json!({"status": "ok"}));
}

#[tokio::test]
async fn unknown_path_is_404() {
    let s = Server::start(&[]);
    let (status, _) = s.http("/no-such-endpoint").await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn varz_describes_the_server_and_counts_traffic() {
    let s = Server::start(&[]);
    let mut raw = s.raw().await;
    raw.handshake(QUIET).await;
    // The harness's readiness probe connection may still be closing.
    let v = json_until(&s, "/varz", |v| v["connections"].as_u64() == Some(1)).await;
    assert_eq!(v["server_id"], raw.info["server_id"]);
    assert_eq!(v["version"], raw.info["version"]);
    assert_eq!(v["host"], "127.0.0.1");
    assert_eq!(u(&v["port"]), u64::from(s.port));
    assert_eq!(u(&v["http_port"]), u64::from(s.http_port));
    assert_eq!(u(&v["max_payload"]), 1024 * 1024);
    assert_eq!(u(&v["max_connections"]), 65536);
    assert_eq!(u(&v["max_control_line"]), 4096);
    assert_eq!(u(&v["ping_max"]), 2);
    assert_eq!(u(&v["proto"]), 1);
    for key in ["start", "now", "uptime"] {
        assert!(v[key].is_string(), "varz.{key}: {}", v[key]);
    }
    assert!(u(&v["cores"]) >= 1);
    let before_in = u(&v["in_msgs"]);
    let before_out = u(&v["out_msgs"]);
    let before_in_bytes = u(&v["in_bytes"]);

    // One subscriber on another connection, ten 5-byte messages.
    let mut sub = s.raw().await;
    sub.handshake(QUIET).await;
    sub.send("SUB vz 1\r\nPING\r\n").await;
    assert_eq!(sub.next().await.as_deref(), Some("PONG"));
    for _ in 0..10 {
        raw.send("PUB vz 5\r\nhello\r\n").await;
    }
    raw.send("PING\r\n").await;
    assert_eq!(raw.next().await.as_deref(), Some("PONG"));
    for _ in 0..10 {
        assert_eq!(sub.next().await.as_deref(), Some("MSG vz 1 5"));
        sub.bytes(7).await;
    }
    let v = json_until(&s, "/varz", |v| {
        u(&v["in_msgs"]) >= before_in + 10
            && u(&v["out_msgs"]) >= before_out + 10
            && v["connections"].as_u64() == Some(2)
    })
    .await;
    assert_eq!(u(&v["in_msgs"]), before_in + 10);
    assert_eq!(u(&v["out_msgs"]), before_out + 10);
    assert_eq!(u(&v["in_bytes"]), before_in_bytes + 50);
    assert_eq!(u(&v["connections"]), 2);
    assert!(u(&v["total_connections"]) >= 2);
    assert!(u(&v["subscriptions"]) >= 1);
}

#[tokio::test]
async fn varz_reflects_config_limits() {
    let s = Server::start_with_config(
        "max_payload: 2048\nmax_connections: 77\nping_interval: \"30s\"\nping_max: 3\nwrite_deadline: \"3s\"\nmax_pending: 1000000\nmax_control_line: 1024\n",
        &[],
    );
    let v = s.json("/varz").await;
    assert_eq!(u(&v["max_payload"]), 2048);
    assert_eq!(u(&v["max_connections"]), 77);
    // Durations are Go time.Duration values: nanoseconds.
    assert_eq!(u(&v["ping_interval"]), 30_000_000_000);
    assert_eq!(u(&v["write_deadline"]), 3_000_000_000);
    assert_eq!(u(&v["ping_max"]), 3);
    assert_eq!(u(&v["max_pending"]), 1_000_000);
    assert_eq!(u(&v["max_control_line"]), 1024);
}

/// Three raw connections with known subscriptions.
async fn three_connections(s: &Server) -> (Raw, Raw, Raw) {
    let mut a = s.raw().await;
    a.handshake(NAMED).await;
    a.send("SUB a.b 1\r\nSUB c.* q 2\r\nPING\r\n").await;
    assert_eq!(a.next().await.as_deref(), Some("PONG"));
    let mut b = s.raw().await;
    b.handshake(QUIET).await;
    b.send("SUB x 1\r\nPING\r\n").await;
    assert_eq!(b.next().await.as_deref(), Some("PONG"));
    let mut c = s.raw().await;
    c.handshake(QUIET).await;
    // c publishes one message that a receives.
    c.send("PUB a.b 2\r\nhi\r\nPING\r\n").await;
    assert_eq!(c.next().await.as_deref(), Some("PONG"));
    assert_eq!(a.next().await.as_deref(), Some("MSG a.b 1 2"));
    a.bytes(4).await;
    (a, b, c)
}

fn cid(r: &Raw) -> u64 {
    u(&r.info["client_id"])
}

fn find_conn(connz: &Value, cid: u64) -> &Value {
    connz["connections"]
        .as_array()
        .expect("connections array")
        .iter()
        .find(|c| c["cid"].as_u64() == Some(cid))
        .unwrap_or_else(|| panic!("cid {cid} not in {connz:#}"))
}

#[tokio::test]
async fn connz_lists_connections_with_subscriptions() {
    let s = Server::start(&[]);
    let (a, b, c) = three_connections(&s).await;
    let v = json_until(&s, "/connz?subs=1", |v| {
        v["num_connections"].as_u64() == Some(3)
            && find_conn_opt(v, cid(&c)).is_some_and(|x| x["in_msgs"].as_u64() == Some(1))
    })
    .await;
    assert_eq!(u(&v["total"]), 3);
    assert_eq!(u(&v["offset"]), 0);
    assert_eq!(v["server_id"], a.info["server_id"]);

    let ca = find_conn(&v, cid(&a));
    assert_eq!(ca["name"], "alpha");
    assert_eq!(ca["lang"], "raw");
    assert_eq!(ca["version"], "9.9.9");
    assert_eq!(ca["ip"], "127.0.0.1");
    assert!(u(&ca["port"]) > 0);
    assert_eq!(u(&ca["subscriptions"]), 2);
    assert_eq!(u(&ca["out_msgs"]), 1);
    assert_eq!(u(&ca["out_bytes"]), 2);
    let mut subs: Vec<String> = ca["subscriptions_list"]
        .as_array()
        .expect("subscriptions_list with ?subs=1")
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect();
    subs.sort();
    assert_eq!(subs, ["a.b", "c.*"]);

    let cb = find_conn(&v, cid(&b));
    assert_eq!(u(&cb["subscriptions"]), 1);
    let cc = find_conn(&v, cid(&c));
    assert_eq!(u(&cc["in_msgs"]), 1);
    assert_eq!(u(&cc["in_bytes"]), 2);
    assert_eq!(u(&cc["subscriptions"]), 0);

    // Without ?subs the list is left out.
    let v = s.json("/connz").await;
    assert!(find_conn(&v, cid(&a)).get("subscriptions_list").is_none());

    // Detail form names queue groups.
    let v = s.json(&format!("/connz?subs=detail&cid={}", cid(&a))).await;
    let detail = find_conn(&v, cid(&a))["subscriptions_list_detail"]
        .as_array()
        .expect("subscriptions_list_detail")
        .clone();
    let q = detail
        .iter()
        .find(|d| d["subject"] == "c.*")
        .expect("c.* in detail");
    assert_eq!(q["qgroup"], "q");
    assert_eq!(q["sid"], "2");
}

fn find_conn_opt(connz: &Value, cid: u64) -> Option<&Value> {
    connz["connections"]
        .as_array()?
        .iter()
        .find(|c| c["cid"].as_u64() == Some(cid))
}

#[tokio::test]
async fn connz_paging_sorting_and_cid_filter() {
    let s = Server::start(&[]);
    let (a, b, c) = three_connections(&s).await;
    json_until(&s, "/connz", |v| v["num_connections"].as_u64() == Some(3)).await;
    let mut cids = [cid(&a), cid(&b), cid(&c)];
    cids.sort();

    let v = s.json("/connz?sort=cid&limit=1&offset=1").await;
    assert_eq!(u(&v["limit"]), 1);
    assert_eq!(u(&v["offset"]), 1);
    assert_eq!(u(&v["total"]), 3);
    assert_eq!(u(&v["num_connections"]), 1);
    let conns = v["connections"].as_array().unwrap();
    assert_eq!(conns.len(), 1);
    assert_eq!(u(&conns[0]["cid"]), cids[1]);

    let v = s.json("/connz?sort=cid").await;
    let got: Vec<u64> = v["connections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| u(&c["cid"]))
        .collect();
    assert_eq!(got, cids);

    // Most subscriptions first.
    let v = s.json("/connz?sort=subs").await;
    let conns = v["connections"].as_array().unwrap();
    assert_eq!(u(&conns[0]["cid"]), cid(&a));
    let counts: Vec<u64> = conns.iter().map(|c| u(&c["subscriptions"])).collect();
    assert_eq!(counts, [2, 1, 0]);

    let v = s.json(&format!("/connz?cid={}", cid(&b))).await;
    let conns = v["connections"].as_array().unwrap();
    assert_eq!(conns.len(), 1);
    assert_eq!(u(&conns[0]["cid"]), cid(&b));

    let (status, _) = s.http("/connz?sort=bogus").await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn connz_drops_closed_connections() {
    let s = Server::start(&[]);
    let (a, b, c) = three_connections(&s).await;
    json_until(&s, "/connz", |v| v["num_connections"].as_u64() == Some(3)).await;
    let gone = cid(&b);
    drop(b);
    let v = json_until(&s, "/connz", |v| v["num_connections"].as_u64() == Some(2)).await;
    assert!(find_conn_opt(&v, gone).is_none());
    find_conn(&v, cid(&a));
    find_conn(&v, cid(&c));
}

#[tokio::test]
async fn subsz_counts_and_lists_subscriptions() {
    let s = Server::start(&[]);
    let base = u(&s.json("/subsz").await["num_subscriptions"]);
    let (a, _b, _c) = three_connections(&s).await;
    let v = json_until(&s, "/subsz", |v| {
        v["num_subscriptions"].as_u64() == Some(base + 3)
    })
    .await;
    assert!(v["num_cache"].is_u64());
    assert!(v["num_matches"].is_u64());

    let v = s.json("/subsz?subs=1&test=a.b").await;
    let list = v["subscriptions_list"]
        .as_array()
        .expect("subscriptions_list");
    assert_eq!(list.len(), 1, "{v:#}");
    assert_eq!(list[0]["subject"], "a.b");
    assert_eq!(list[0]["sid"], "1");
    assert_eq!(u(&list[0]["cid"]), cid(&a));
    assert_eq!(u(&list[0]["msgs"]), 1);
    // A test subject must be one a message could be published on (400
    // with the reference's words otherwise).
    let (code, body) = s.http("/subsz?test=a.*").await;
    assert_eq!(code, 400, "{body}");
    assert!(
        body.contains("invalid test subject, must be valid publish subject: a.*"),
        "{body}"
    );

    // A client that goes away takes its subscriptions with it.
    drop(a);
    json_until(&s, "/subsz", |v| {
        v["num_subscriptions"].as_u64() == Some(base + 1)
    })
    .await;
}

#[tokio::test]
async fn varz_connections_follow_async_nats_clients() {
    let s = Server::start(&[]);
    let mut clients = Vec::new();
    for _ in 0..6 {
        let c = s.client().await;
        sync(&c).await;
        clients.push(c);
    }
    json_until(&s, "/varz", |v| v["connections"].as_u64() == Some(6)).await;
    let v = s.json("/connz?limit=2").await;
    assert_eq!(u(&v["total"]), 6);
    assert_eq!(v["connections"].as_array().unwrap().len(), 2);
    for c in &clients {
        let conn = find_conn_opt(&s.json("/connz").await, c.server_info().client_id)
            .cloned()
            .expect("client in connz");
        assert_eq!(conn["lang"], "rust");
    }
}

/// Paging through many connections (spread over shards) with a stable
/// cid order yields every connection exactly once.
#[tokio::test]
async fn connz_paging_over_many_connections() {
    const N: usize = 20;
    let s = Server::start(&[]);
    let mut raws = Vec::new();
    for _ in 0..N {
        let mut r = s.raw().await;
        r.handshake(QUIET).await;
        raws.push(r);
    }
    let mut want: Vec<u64> = raws.iter().map(cid).collect();
    want.sort();
    want.dedup();
    assert_eq!(want.len(), N, "client ids must be unique across shards");
    json_until(&s, "/connz", |v| {
        v["num_connections"].as_u64() == Some(N as u64)
    })
    .await;
    let mut got = Vec::new();
    for offset in (0..N).step_by(7) {
        let v = s
            .json(&format!("/connz?sort=cid&limit=7&offset={offset}"))
            .await;
        assert_eq!(u(&v["total"]), N as u64);
        for c in v["connections"].as_array().unwrap() {
            got.push(u(&c["cid"]));
        }
    }
    assert_eq!(got, want);
}

/// Fan-out counts every delivery in out_msgs, whatever shard delivered it.
#[tokio::test]
async fn varz_counts_fanout_deliveries_across_shards() {
    const SUBS: u64 = 10;
    let s = Server::start(&[]);
    let mut subs = Vec::new();
    for _ in 0..SUBS {
        let mut r = s.raw().await;
        r.handshake(QUIET).await;
        r.send("SUB fan.out 1\r\nPING\r\n").await;
        assert_eq!(r.next().await.as_deref(), Some("PONG"));
        subs.push(r);
    }
    let before = s.json("/varz").await;
    let mut p = s.raw().await;
    p.handshake(QUIET).await;
    p.send("PUB fan.out 3\r\nabc\r\nPUB fan.out 3\r\nabc\r\nPING\r\n")
        .await;
    assert_eq!(p.next().await.as_deref(), Some("PONG"));
    for r in subs.iter_mut() {
        for _ in 0..2 {
            assert_eq!(r.next().await.as_deref(), Some("MSG fan.out 1 3"));
            r.bytes(5).await;
        }
    }
    let (in0, out0) = (u(&before["in_msgs"]), u(&before["out_msgs"]));
    let v = json_until(&s, "/varz", |v| {
        u(&v["in_msgs"]) >= in0 + 2 && u(&v["out_msgs"]) >= out0 + 2 * SUBS
    })
    .await;
    assert_eq!(u(&v["in_msgs"]), in0 + 2);
    assert_eq!(u(&v["out_msgs"]), out0 + 2 * SUBS);
    assert_eq!(u(&v["out_bytes"]), u(&before["out_bytes"]) + 6 * SUBS);
}

fn has_fields(what: &str, v: &Value, fields: &[&str]) {
    let missing: Vec<_> = fields.iter().filter(|f| v.get(**f).is_none()).collect();
    assert!(missing.is_empty(), "{what} lacks {missing:?}:\n{v:#}");
}

/// The JSON documents carry the reference's field names (tools parse them).
#[tokio::test]
async fn json_shapes_have_the_reference_fields() {
    let s = Server::start(&[]);
    let (_a, _b, _c) = three_connections(&s).await;
    let varz = s.json("/varz").await;
    has_fields(
        "varz",
        &varz,
        &[
            "server_id",
            "server_name",
            "version",
            "proto",
            "host",
            "port",
            "max_connections",
            "ping_interval",
            "ping_max",
            "http_host",
            "http_port",
            "auth_timeout",
            "max_control_line",
            "max_payload",
            "max_pending",
            "write_deadline",
            "start",
            "now",
            "uptime",
            "mem",
            "cores",
            "cpu",
            "connections",
            "total_connections",
            "routes",
            "remotes",
            "in_msgs",
            "out_msgs",
            "in_bytes",
            "out_bytes",
            "slow_consumers",
            "subscriptions",
            "config_load_time",
        ],
    );
    let connz = s.json("/connz").await;
    has_fields(
        "connz",
        &connz,
        &[
            "server_id",
            "now",
            "num_connections",
            "total",
            "offset",
            "limit",
            "connections",
        ],
    );
    for c in connz["connections"].as_array().unwrap() {
        has_fields(
            "connz connection",
            c,
            &[
                "cid",
                "ip",
                "port",
                "start",
                "last_activity",
                "uptime",
                "idle",
                "pending_bytes",
                "in_msgs",
                "out_msgs",
                "in_bytes",
                "out_bytes",
                "subscriptions",
            ],
        );
    }
    let subsz = s.json("/subsz").await;
    has_fields(
        "subsz",
        &subsz,
        &[
            "num_subscriptions",
            "num_cache",
            "num_inserts",
            "num_removes",
            "num_matches",
            "cache_hit_rate",
            "max_fanout",
            "avg_fanout",
        ],
    );
    // Timestamps are RFC 3339.
    for key in ["start", "now", "config_load_time"] {
        let t = varz[key].as_str().unwrap();
        assert!(
            t.len() >= 20 && &t[4..5] == "-" && &t[10..11] == "T",
            "varz.{key} = {t:?}"
        );
    }
}

/// Sorting by messages sent to / received from a connection.
#[tokio::test]
async fn connz_sort_by_message_counts() {
    let s = Server::start(&[]);
    let (a, _b, c) = three_connections(&s).await;
    json_until(&s, "/connz", |v| {
        find_conn_opt(v, cid(&c)).is_some_and(|x| x["in_msgs"].as_u64() == Some(1))
            && find_conn_opt(v, cid(&a)).is_some_and(|x| x["out_msgs"].as_u64() == Some(1))
    })
    .await;
    let v = s.json("/connz?sort=msgs_to").await;
    assert_eq!(u(&v["connections"][0]["cid"]), cid(&a), "msgs_to: {v:#}");
    let v = s.json("/connz?sort=msgs_from").await;
    assert_eq!(u(&v["connections"][0]["cid"]), cid(&c), "msgs_from: {v:#}");
}

/// Connection churn leaves nothing behind: connections and subscriptions
/// return to the baseline, and no interest lingers for the churned subjects.
#[tokio::test]
async fn churn_leaves_no_connections_or_subscriptions() {
    let s = Server::start(&[]);
    let base_subs = u(&s.json("/subsz").await["num_subscriptions"]);
    for round in 0..5 {
        let mut conns = Vec::new();
        for i in 0..30 {
            let mut r = s.raw().await;
            r.handshake(QUIET).await;
            r.send(&format!(
                "SUB churn.{round}.{i} 1\r\nSUB churn.> 2\r\nSUB churn.q q 3\r\nPING\r\n"
            ))
            .await;
            assert_eq!(r.next().await.as_deref(), Some("PONG"));
            conns.push(r);
        }
        // Half say goodbye with UNSUB first, half just hang up.
        for (i, mut r) in conns.into_iter().enumerate() {
            if i % 2 == 0 {
                r.send("UNSUB 1\r\nUNSUB 2\r\nUNSUB 3\r\nPING\r\n").await;
                assert_eq!(r.next().await.as_deref(), Some("PONG"));
            }
        }
    }
    json_until(&s, "/varz", |v| v["connections"].as_u64() == Some(0)).await;
    json_until(&s, "/subsz", |v| {
        v["num_subscriptions"].as_u64() == Some(base_subs)
    })
    .await;
    // Nobody is interested any more: a request gets no-responders.
    let c = s.client().await;
    let err = common::within("request", c.request("churn.q", "x".into()))
        .await
        .expect_err("no subscriber is left");
    assert_eq!(err.kind(), async_nats::RequestErrorKind::NoResponders);
}

/// HTTP/1.1 connections are persistent unless the server says otherwise
/// (`Connection: close`); monitoring scrapers reuse them.
#[tokio::test]
async fn http_keep_alive_or_explicit_close() {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
    let s = Server::start(&[]);
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", s.http_port))
        .await
        .unwrap();
    let mut stream = tokio::io::BufReader::new(stream);
    let req = format!(
        "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{}\r\n\r\n",
        s.http_port
    );
    async fn response(r: &mut tokio::io::BufReader<tokio::net::TcpStream>) -> (String, Vec<u8>) {
        let mut head = String::new();
        loop {
            let mut line = String::new();
            let n = common::within("response head", r.read_line(&mut line))
                .await
                .unwrap();
            assert!(n > 0, "connection closed mid-response: {head:?}");
            if line == "\r\n" {
                break;
            }
            head.push_str(&line);
        }
        let len: usize = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().unwrap())
            })
            .expect("Content-Length on a keep-alive response");
        let mut body = vec![0; len];
        common::within("response body", r.read_exact(&mut body))
            .await
            .unwrap();
        (head, body)
    }
    stream.get_mut().write_all(req.as_bytes()).await.unwrap();
    let (head, body) = response(&mut stream).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(
        serde_json::from_slice::<Value>(&body).unwrap()["status"],
        "ok"
    );
    let closes = head.lines().any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("connection:") && l.contains("close")
    });
    if !closes {
        stream.get_mut().write_all(req.as_bytes()).await.unwrap();
        let (head, _) = response(&mut stream).await;
        assert!(head.starts_with("HTTP/1.1 200"), "second response: {head}");
    }
}

/// `subs` takes the forms the reference accepts.
#[tokio::test]
async fn connz_subs_flag_forms() {
    let s = Server::start(&[]);
    let (a, _b, _c) = three_connections(&s).await;
    for q in ["subs=1", "subs=true"] {
        let v = s.json(&format!("/connz?{q}&cid={}", cid(&a))).await;
        let list = find_conn(&v, cid(&a))["subscriptions_list"]
            .as_array()
            .unwrap_or_else(|| panic!("{q}: no subscriptions_list"))
            .len();
        assert_eq!(list, 2, "{q}");
    }
    let v = s.json(&format!("/connz?subs=0&cid={}", cid(&a))).await;
    assert!(find_conn(&v, cid(&a)).get("subscriptions_list").is_none());
}

/// Malformed query values are a 400, not a crash or a silent default;
/// unknown parameters are ignored.
#[tokio::test]
async fn bad_query_values_are_rejected() {
    let s = Server::start(&[]);
    let mut wrong = Vec::new();
    for q in [
        "/connz?limit=abc",
        "/connz?cid=abc",
        "/connz?subs=maybe",
        "/subsz?limit=x",
        "/connz?sort=stop",
    ] {
        let (status, body) = s.http(q).await;
        if status != 400 {
            wrong.push(format!("{q} -> {status}: {body}"));
        }
    }
    assert!(wrong.is_empty(), "expected 400 for:\n{}", wrong.join("\n"));
    for q in ["/varz?x=1", "/healthz?foo=bar"] {
        assert_eq!(s.http(q).await.0, 200, "{q}");
    }
    // Still serving.
    assert_eq!(s.json("/healthz").await["status"], "ok");
}
