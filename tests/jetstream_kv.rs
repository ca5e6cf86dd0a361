//! JetStream key-value buckets with the async-nats `kv` API: the bucket and
//! its backing stream, put/get/create/update (CAS)/delete/purge, entries
//! and their operations, keys, history, watchers (every update in order,
//! deletes and purges included, with and without history), bucket status,
//! the deployment's buckets written by one client and watched by another,
//! and persistence across a restart.
//!
//! Every expected value here was checked against nats-server 2.15.3:
//!
//!     BROKER_EDGE_BIN=$PWD/target/refs/bin/nats-server-2.15.3 \
//!         cargo test -p broker-edge --test jetstream_kv

mod common;

use std::time::Duration;

use async_nats::jetstream::{
    self,
    kv::{self, Operation},
};
use futures::StreamExt;
use serde_json::json;

use common::{js_api, within, Server};

const NS: u64 = 1_000_000_000;

async fn connect(s: &Server) -> (async_nats::Client, jetstream::Context) {
    let c = s.client().await;
    let js = jetstream::new(c.clone());
    (c, js)
}

async fn bucket(js: &jetstream::Context, cfg: kv::Config) -> kv::Store {
    let name = cfg.bucket.clone();
    within(&format!("create bucket {name}"), js.create_key_value(cfg))
        .await
        .unwrap_or_else(|e| panic!("create bucket {name}: {e}"))
}

fn cfg(name: &str, history: i64) -> kv::Config {
    kv::Config {
        bucket: name.into(),
        history,
        ..Default::default()
    }
}

async fn put(kv: &kv::Store, key: &str, value: &str) -> u64 {
    within(&format!("put {key}"), kv.put(key, value.to_string().into()))
        .await
        .unwrap_or_else(|e| panic!("put {key}: {e}"))
}

async fn get(kv: &kv::Store, key: &str) -> Option<String> {
    within(&format!("get {key}"), kv.get(key))
        .await
        .unwrap_or_else(|e| panic!("get {key}: {e}"))
        .map(|b| String::from_utf8(b.to_vec()).unwrap())
}

/// Messages in the bucket's stream, history included. (async-nats 0.38's
/// `Store::status` answers from the stream info cached when the bucket was
/// opened, so its `values()` is stale.)
async fn values(c: &async_nats::Client, bucket: &str) -> u64 {
    let r = js_api(c, &format!("$JS.API.STREAM.INFO.KV_{bucket}"), "").await;
    r["state"]["messages"]
        .as_u64()
        .unwrap_or_else(|| panic!("stream info KV_{bucket}: {r}"))
}

/// (key, operation, value, revision) of an entry, for comparisons.
type Seen = (String, Operation, String, u64);

fn seen(e: &kv::Entry) -> Seen {
    (
        e.key.clone(),
        e.operation,
        String::from_utf8_lossy(&e.value).into_owned(),
        e.revision,
    )
}

fn s(key: &str, op: Operation, value: &str, rev: u64) -> Seen {
    (key.into(), op, value.into(), rev)
}

/// The next `n` entries of a watcher.
async fn take(w: &mut kv::Watch, n: usize) -> Vec<Seen> {
    let mut out = Vec::new();
    while out.len() < n {
        let e = within(&format!("watch entry {} of {n}", out.len() + 1), w.next())
            .await
            .unwrap_or_else(|| panic!("watch ended after {out:?}"))
            .unwrap_or_else(|e| panic!("watch error after {out:?}: {e}"));
        out.push(seen(&e));
    }
    out
}

#[tokio::test]
async fn bucket_config_backing_stream_and_status() {
    let srv = Server::start_js(&[]);
    let (c, js) = connect(&srv).await;
    let kv = bucket(
        &js,
        kv::Config {
            bucket: "CFG".into(),
            description: "settings".into(),
            history: 5,
            max_age: Duration::from_secs(3600),
            max_value_size: 1024,
            ..Default::default()
        },
    )
    .await;

    let r = js_api(&c, "$JS.API.STREAM.INFO.KV_CFG", "").await;
    let sc = &r["config"];
    assert_eq!(sc["subjects"], json!(["$KV.CFG.>"]), "{r}");
    assert_eq!(sc["max_msgs_per_subject"], 5, "{r}");
    assert_eq!(sc["max_age"], 3600 * NS, "{r}");
    assert_eq!(sc["max_msg_size"], 1024, "{r}");
    assert_eq!(sc["discard"], "new", "{r}");
    assert_eq!(sc["allow_rollup_hdrs"], true, "{r}");
    assert_eq!(sc["deny_delete"], true, "{r}");
    assert_eq!(sc["allow_direct"], true, "{r}");
    assert_eq!(sc["retention"], "limits", "{r}");
    assert_eq!(sc["description"], "settings", "{r}");

    put(&kv, "a", "1").await;
    put(&kv, "a", "2").await;
    put(&kv, "b", "1").await;
    let st = within("status", kv.status()).await.unwrap();
    assert_eq!(st.bucket(), "CFG");
    assert_eq!(st.history(), 5);
    assert_eq!(st.max_age(), Duration::from_secs(3600));
    assert_eq!(values(&c, "CFG").await, 3);

    // A value over max_value_size is refused.
    let big = "x".repeat(2000);
    let err = within("put too big", kv.put("big", big.into()))
        .await
        .expect_err("value over max_value_size");
    eprintln!("put over max_value_size: {err}");
    assert_eq!(get(&kv, "big").await, None);

    // Opening it again from another context sees the same bucket.
    let js2 = jetstream::new(srv.client().await);
    let again = within("get_key_value", js2.get_key_value("CFG"))
        .await
        .unwrap();
    assert_eq!(get(&again, "a").await.as_deref(), Some("2"));
    let err = within("missing bucket", js2.get_key_value("NOPE")).await;
    assert!(err.is_err(), "missing bucket opened");
}

#[tokio::test]
async fn put_get_create_update_delete_purge() {
    let srv = Server::start_js(&[]);
    let (c, js) = connect(&srv).await;
    let kv = bucket(&js, cfg("OPS", 10)).await;

    assert_eq!(get(&kv, "k").await, None);
    assert!(within("entry", kv.entry("k")).await.unwrap().is_none());
    assert_eq!(put(&kv, "k", "v1").await, 1);
    assert_eq!(get(&kv, "k").await.as_deref(), Some("v1"));
    let e = within("entry", kv.entry("k")).await.unwrap().unwrap();
    assert_eq!(
        (e.bucket.as_str(), e.key.as_str(), e.revision, e.operation),
        ("OPS", "k", 1, Operation::Put)
    );
    assert_eq!(e.value.as_ref(), b"v1");

    // create: only if the key does not exist.
    let err = within("create existing", kv.create("k", "nope".into()))
        .await
        .expect_err("create over an existing key");
    assert_eq!(err.kind(), kv::CreateErrorKind::AlreadyExists, "{err}");
    assert_eq!(
        within("create new", kv.create("n", "fresh".into()))
            .await
            .unwrap(),
        2
    );

    // update: compare-and-set on the key's last revision.
    assert_eq!(
        within("update", kv.update("k", "v2".into(), 1))
            .await
            .unwrap(),
        3
    );
    let err = within("update stale", kv.update("k", "v3".into(), 1))
        .await
        .expect_err("stale revision");
    assert_eq!(err.kind(), kv::UpdateErrorKind::WrongLastRevision, "{err}");
    // The revision of another key is no good either.
    let err = within("update other rev", kv.update("k", "v3".into(), 2))
        .await
        .expect_err("other key's revision");
    assert_eq!(err.kind(), kv::UpdateErrorKind::WrongLastRevision, "{err}");
    assert_eq!(get(&kv, "k").await.as_deref(), Some("v2"));
    let e = within("entry for revision", kv.entry_for_revision("k", 1))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(e.value.as_ref(), b"v1");

    // delete leaves a marker: get is None, the entry says Delete.
    within("delete", kv.delete("k")).await.unwrap();
    assert_eq!(get(&kv, "k").await, None);
    let e = within("entry after delete", kv.entry("k")).await.unwrap();
    if let Some(e) = &e {
        assert_eq!((e.operation, e.revision), (Operation::Delete, 4), "{e:?}");
    }
    // create works again on a deleted key.
    assert_eq!(
        within("create deleted", kv.create("k", "again".into()))
            .await
            .unwrap(),
        5
    );
    let mut keys: Vec<String> = within("keys", kv.keys())
        .await
        .unwrap()
        .map(|k| k.unwrap())
        .collect()
        .await;
    keys.sort();
    assert_eq!(keys, ["k", "n"]);

    // purge drops the key's history, keeping one purge marker.
    put(&kv, "k", "more").await;
    within("purge", kv.purge("k")).await.unwrap();
    assert_eq!(get(&kv, "k").await, None);
    let hist: Vec<Seen> = within("history", kv.history("k"))
        .await
        .unwrap()
        .map(|e| seen(&e.unwrap()))
        .collect()
        .await;
    assert_eq!(hist, [s("k", Operation::Purge, "", 7)]);
    let keys: Vec<String> = within("keys", kv.keys())
        .await
        .unwrap()
        .map(|k| k.unwrap())
        .collect()
        .await;
    assert_eq!(keys, ["n"]);
    assert_eq!(values(&c, "OPS").await, 2, "n and k's purge marker");

    // An update that expects the marker's revision succeeds.
    assert_eq!(
        within("update after purge", kv.update("k", "back".into(), 7))
            .await
            .unwrap(),
        8
    );
    assert_eq!(get(&kv, "k").await.as_deref(), Some("back"));
}

#[tokio::test]
async fn history_keeps_the_last_n() {
    let srv = Server::start_js(&[]);
    let (c, js) = connect(&srv).await;
    let kv = bucket(&js, cfg("HIST", 3)).await;
    for i in 1..=5 {
        put(&kv, "h", &format!("v{i}")).await;
    }
    put(&kv, "other", "x").await;
    within("delete", kv.delete("h")).await.unwrap();
    let hist: Vec<Seen> = within("history", kv.history("h"))
        .await
        .unwrap()
        .map(|e| seen(&e.unwrap()))
        .collect()
        .await;
    assert_eq!(
        hist,
        [
            s("h", Operation::Put, "v4", 4),
            s("h", Operation::Put, "v5", 5),
            s("h", Operation::Delete, "", 7),
        ]
    );
    assert_eq!(values(&c, "HIST").await, 4);
}

#[tokio::test]
async fn watchers_see_every_update_in_order() {
    let srv = Server::start_js(&[]);
    let (_c, js) = connect(&srv).await;
    let kv = bucket(&js, cfg("W", 5)).await;
    put(&kv, "a", "before").await; // 1, not seen by the new-only watchers
    let mut w_a = within("watch a", kv.watch("a")).await.unwrap();
    let mut w_all = within("watch all", kv.watch_all()).await.unwrap();
    let mut w_star = within("watch b.*", kv.watch("b.*")).await.unwrap();

    // Another connection writes.
    let js2 = jetstream::new(srv.client().await);
    let kv2 = within("open", js2.get_key_value("W")).await.unwrap();
    put(&kv2, "a", "1").await; // 2
    put(&kv2, "b.x", "2").await; // 3
    put(&kv2, "a", "3").await; // 4
    within("delete", kv2.delete("b.x")).await.unwrap(); // 5
    put(&kv2, "b.y", "6").await; // 6
    within("purge", kv2.purge("a")).await.unwrap(); // 7
    put(&kv2, "c", "8").await; // 8
    put(&kv2, "a", "9").await; // 9

    let all = [
        s("a", Operation::Put, "1", 2),
        s("b.x", Operation::Put, "2", 3),
        s("a", Operation::Put, "3", 4),
        s("b.x", Operation::Delete, "", 5),
        s("b.y", Operation::Put, "6", 6),
        s("a", Operation::Purge, "", 7),
        s("c", Operation::Put, "8", 8),
        s("a", Operation::Put, "9", 9),
    ];
    assert_eq!(take(&mut w_all, 8).await, all);
    let only_a: Vec<Seen> = all.iter().filter(|e| e.0 == "a").cloned().collect();
    assert_eq!(take(&mut w_a, only_a.len()).await, only_a);
    let only_b: Vec<Seen> = all
        .iter()
        .filter(|e| e.0.starts_with("b."))
        .cloned()
        .collect();
    assert_eq!(take(&mut w_star, only_b.len()).await, only_b);
    // Nothing else is queued.
    let extra = tokio::time::timeout(Duration::from_millis(300), w_all.next()).await;
    assert!(extra.is_err(), "unexpected entry: {extra:?}");
}

#[tokio::test]
async fn watch_with_history_starts_with_current_values() {
    let srv = Server::start_js(&[]);
    let (_c, js) = connect(&srv).await;
    let kv = bucket(&js, cfg("WH", 5)).await;
    put(&kv, "x", "1").await; // 1
    put(&kv, "y", "2").await; // 2
    put(&kv, "x", "3").await; // 3
    within("delete", kv.delete("y")).await.unwrap(); // 4
    put(&kv, "z", "5").await; // 5

    let mut w = within("watch history", kv.watch_with_history("*"))
        .await
        .unwrap();
    // The last entry per key, in stream order (deletes included), then
    // whatever follows.
    let mut first = Vec::new();
    for _ in 0..3 {
        let e = within("history entry", w.next()).await.unwrap().unwrap();
        first.push((seen(&e), e.seen_current));
    }
    assert_eq!(
        first,
        [
            (s("x", Operation::Put, "3", 3), false),
            (s("y", Operation::Delete, "", 4), false),
            (s("z", Operation::Put, "5", 5), true),
        ]
    );
    put(&kv, "y", "6").await;
    let e = within("live entry", w.next()).await.unwrap().unwrap();
    assert_eq!(seen(&e), s("y", Operation::Put, "6", 6));

    // From a revision: everything from it on.
    let mut w = within("watch from 4", kv.watch_all_from_revision(4))
        .await
        .unwrap();
    assert_eq!(
        take(&mut w, 3).await,
        [
            s("y", Operation::Delete, "", 4),
            s("z", Operation::Put, "5", 5),
            s("y", Operation::Put, "6", 6),
        ]
    );
}

/// The appliance's buckets: one client writes, another watches every
/// bucket and sees every update of each in order.
#[tokio::test]
async fn deployment_buckets_written_and_watched() {
    const BUCKETS: [&str; 5] = ["SERVERS", "INTEGRATIONS", "PARSERS", "FILTERS", "EXPORTERS"];
    const UPDATES: usize = 60;
    let srv = Server::start_js(&[]);
    let (_w, writer) = connect(&srv).await;
    let (_r, reader) = connect(&srv).await;
    let mut stores = Vec::new();
    for b in BUCKETS {
        stores.push(bucket(&writer, cfg(b, 5)).await);
    }
    let mut watches = Vec::new();
    for b in BUCKETS {
        let kv = within("open", reader.get_key_value(b)).await.unwrap();
        watches.push(within("watch_all", kv.watch_all()).await.unwrap());
    }
    // Interleaved writes over all buckets: puts, some deletes, a purge.
    let mut expected: Vec<Vec<Seen>> = vec![Vec::new(); BUCKETS.len()];
    for i in 0..UPDATES {
        for (bi, kv) in stores.iter().enumerate() {
            let key = format!("{}.item{}", BUCKETS[bi].to_lowercase(), i % 7);
            let rev = expected[bi].len() as u64 + 1;
            if i % 11 == 10 {
                within("delete", kv.delete(&key)).await.unwrap();
                expected[bi].push(s(&key, Operation::Delete, "", rev));
            } else if i == 30 {
                within("purge", kv.purge(&key)).await.unwrap();
                expected[bi].push(s(&key, Operation::Purge, "", rev));
            } else {
                let value = json!({"bucket": BUCKETS[bi], "n": i}).to_string();
                assert_eq!(put(kv, &key, &value).await, rev);
                expected[bi].push(s(&key, Operation::Put, &value, rev));
            }
        }
    }
    for (bi, w) in watches.iter_mut().enumerate() {
        let got = take(w, UPDATES).await;
        assert_eq!(got, expected[bi], "bucket {}", BUCKETS[bi]);
    }
    let r = js_api(&_r, "$JS.API.STREAM.NAMES", "").await;
    let mut names: Vec<String> = r["streams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    names.sort();
    let mut want: Vec<String> = BUCKETS.iter().map(|b| format!("KV_{b}")).collect();
    want.sort();
    assert_eq!(names, want);
}

#[tokio::test]
async fn kv_persists_across_restart() {
    let mut srv = Server::start_js(&[]);
    {
        let (_c, js) = connect(&srv).await;
        let kv = bucket(&js, cfg("P", 4)).await;
        put(&kv, "keep", "1").await; // 1
        put(&kv, "keep", "2").await; // 2
        put(&kv, "gone", "x").await; // 3
        within("delete", kv.delete("gone")).await.unwrap(); // 4
        put(&kv, "other", "o").await; // 5
    }
    srv.restart();
    let (_c, js) = connect(&srv).await;
    let kv = within("open after restart", js.get_key_value("P"))
        .await
        .unwrap();
    assert_eq!(get(&kv, "keep").await.as_deref(), Some("2"));
    assert_eq!(get(&kv, "gone").await, None);
    assert_eq!(get(&kv, "other").await.as_deref(), Some("o"));
    let e = within("entry", kv.entry("keep")).await.unwrap().unwrap();
    assert_eq!(e.revision, 2);
    let hist: Vec<Seen> = within("history", kv.history("keep"))
        .await
        .unwrap()
        .map(|e| seen(&e.unwrap()))
        .collect()
        .await;
    assert_eq!(
        hist,
        [
            s("keep", Operation::Put, "1", 1),
            s("keep", Operation::Put, "2", 2)
        ]
    );
    let mut keys: Vec<String> = within("keys", kv.keys())
        .await
        .unwrap()
        .map(|k| k.unwrap())
        .collect()
        .await;
    keys.sort();
    assert_eq!(keys, ["keep", "other"]);
    let st = within("status", kv.status()).await.unwrap();
    assert_eq!(st.history(), 4);
    // Revisions continue; CAS against the old revision still works.
    assert_eq!(
        within("update", kv.update("keep", "3".into(), 2))
            .await
            .unwrap(),
        6
    );
}
