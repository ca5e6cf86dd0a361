//! JetStream durability when the server dies: SIGKILL in the middle of a
//! publish storm over several streams and connections (every PubAck'd
//! message is there after a restart, nothing stored is corrupt or foreign,
//! sequences continue), the store-directory lock refusing a second server,
//! and (broker-edge only) streams spread over shards on disk.
//!
//! broker-edge fsyncs before it sends a PubAck, so it promises every acked
//! message across a crash. nats-server 2.15.3 acks before it syncs (its
//! default `sync_interval` is 2 minutes) and may lose acked messages that
//! were still buffered in the process when it was killed; under the
//! reference the storm test asserts only what it promises (what it stored
//! is intact and what was sent, sequences continue) and prints the loss:
//!
//!     BROKER_EDGE_BIN=$PWD/target/refs/bin/nats-server-2.15.3 \
//!         cargo test -p broker-edge --test jetstream_crash

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use futures::stream::FuturesUnordered;
use futures::StreamExt;
use serde_json::{json, Value};

use common::{is_reference, js_api, js_publish, run_to_exit, Server};

const STREAMS: usize = 4;
const PUBLISHERS: usize = 4;
/// PubAcks awaited at once per connection.
const WINDOW: usize = 128;

/// The payload publisher `p` sends as its `c`-th message, to stream `s`:
/// a readable header and a filler whose length and bytes depend on all
/// three, so that a torn or shifted record cannot pass for another.
fn payload(s: usize, p: usize, c: u64) -> String {
    let mut out = format!("crash|s{s}|p{p}|c{c}|");
    let len = 8 + ((c as usize * 7 + p * 13 + s) % 200);
    for i in 0..len {
        out.push((b'a' + ((s * 31 + p * 17 + c as usize + i) % 26) as u8) as char);
    }
    out
}

/// Which stream publisher `p` sends its `c`-th message to.
fn stream_of(p: usize, c: u64) -> usize {
    (p + c as usize) % STREAMS
}

/// (stream, publisher, counter) if `data` is exactly a payload of ours.
fn decode(data: &str) -> Option<(usize, usize, u64)> {
    let mut f = data.splitn(5, '|');
    if f.next()? != "crash" {
        return None;
    }
    let s: usize = f.next()?.strip_prefix('s')?.parse().ok()?;
    let p: usize = f.next()?.strip_prefix('p')?.parse().ok()?;
    let c: u64 = f.next()?.strip_prefix('c')?.parse().ok()?;
    (s < STREAMS && p < PUBLISHERS && payload(s, p, c) == data).then_some((s, p, c))
}

fn unb64(v: &Value) -> String {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(v.as_str().unwrap_or_else(|| panic!("not a string: {v}")))
        .unwrap_or_else(|e| panic!("not base64 ({e}): {v}"));
    String::from_utf8_lossy(&bytes).into_owned()
}

/// What the publishers saw, shared with the test body (the publisher tasks
/// are aborted when the server dies, so they cannot hand back results).
#[derive(Default)]
struct Record {
    /// Per stream: seq → payload, from every PubAck received.
    acked: Vec<BTreeMap<u64, String>>,
    /// PubAcks naming the wrong stream, duplicates, reused seqs.
    bad_acks: Vec<String>,
    /// Publish errors seen before the kill.
    errors_before_kill: Vec<String>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_publish_storm_keeps_every_acked_message() {
    let strict = !is_reference();
    let extra: &[&str] = if strict {
        &["--shards", "4", "--shard_fill", "1"]
    } else {
        &[]
    };
    storm(Server::start_js(extra), strict).await;
}

/// The same storm with `sync_interval` (the reference's promise: acked
/// once in the OS, fsynced on an interval): a process kill loses nothing
/// either, since what reached the OS outlives the process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_publish_storm_with_sync_interval() {
    ours_only!("the reference's storm above already runs with its interval sync");
    let tmp = tempfile::tempdir().unwrap();
    let conf = format!(
        "jetstream {{ store_dir: {:?}, sync_interval: 2m }}\n",
        tmp.path().join("store").display().to_string()
    );
    let s = Server::start_with_config(&conf, &["--shards", "4", "--shard_fill", "1"]);
    storm(s, true).await;
    drop(tmp);
}

async fn storm(mut s: Server, strict: bool) {
    let admin = s.client().await;
    for i in 0..STREAMS {
        let r = js_api(
            &admin,
            &format!("$JS.API.STREAM.CREATE.S{i}"),
            &json!({"name": format!("S{i}"), "subjects": [format!("crash.{i}.>")]}).to_string(),
        )
        .await;
        assert!(r.get("error").is_none(), "create S{i}: {r}");
    }
    drop(admin);

    let record = Arc::new(Mutex::new(Record {
        acked: vec![BTreeMap::new(); STREAMS],
        ..Default::default()
    }));
    // Counters handed out per publisher: every payload with a smaller
    // counter may have reached the server.
    let attempted: Arc<Vec<AtomicU64>> =
        Arc::new((0..PUBLISHERS).map(|_| AtomicU64::new(0)).collect());
    let killed = Arc::new(AtomicBool::new(false));

    let mut tasks = Vec::new();
    for p in 0..PUBLISHERS {
        // Once the server is killed these clients must never reconnect:
        // they would publish what is still queued to the restarted server.
        let k = killed.clone();
        let opts = async_nats::ConnectOptions::new().reconnect_delay_callback(move |_| {
            if k.load(Ordering::SeqCst) {
                Duration::from_secs(3600)
            } else {
                Duration::ZERO
            }
        });
        let client = s.client_with(opts).await;
        let js = async_nats::jetstream::new(client);
        let record = record.clone();
        let attempted = attempted.clone();
        let killed = killed.clone();
        tasks.push(tokio::spawn(async move {
            let mut inflight = FuturesUnordered::new();
            let mut c = 0u64;
            loop {
                while inflight.len() < WINDOW {
                    let st = stream_of(p, c);
                    let data = payload(st, p, c);
                    attempted[p].store(c + 1, Ordering::SeqCst);
                    let subject = format!("crash.{st}.p{p}");
                    match js.publish(subject, data.clone().into()).await {
                        Ok(fut) => inflight.push(async move { (st, data, fut.await) }),
                        Err(e) => {
                            if !killed.load(Ordering::SeqCst) {
                                record
                                    .lock()
                                    .unwrap()
                                    .errors_before_kill
                                    .push(format!("publish p{p} c{c}: {e}"));
                            }
                        }
                    }
                    c += 1;
                }
                let Some((st, data, res)) = inflight.next().await else {
                    continue;
                };
                let mut r = record.lock().unwrap();
                match res {
                    Ok(ack) => {
                        if ack.stream != format!("S{st}") || ack.duplicate {
                            r.bad_acks.push(format!("{data}: {ack:?}"));
                        } else if let Some(old) = r.acked[st].insert(ack.sequence, data.clone()) {
                            r.bad_acks.push(format!(
                                "S{st} seq {} acked twice: {old} and {data}",
                                ack.sequence
                            ));
                        }
                    }
                    Err(e) => {
                        if !killed.load(Ordering::SeqCst) {
                            r.errors_before_kill.push(format!("ack for {data}: {e}"));
                        }
                    }
                }
            }
        }));
    }

    // Storm for ~1.5 s, and until a fair number of PubAcks came back.
    let started = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let acked: usize = record.lock().unwrap().acked.iter().map(|m| m.len()).sum();
        if started.elapsed() >= Duration::from_millis(1500) && acked >= 200 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "only {acked} PubAcks within 20 s; errors: {:?}\n--- log ---\n{}",
            record.lock().unwrap().errors_before_kill,
            s.log()
        );
    }
    let handed_out_at_kill: u64 = attempted.iter().map(|a| a.load(Ordering::SeqCst)).sum();
    killed.store(true, Ordering::SeqCst);
    let status = s.crash();
    assert!(
        !status.success(),
        "the server should have died of SIGKILL: {status}"
    );
    // The publishers were still going: stop them where they are.
    for t in &tasks {
        t.abort();
    }
    for t in tasks {
        let _ = t.await;
    }
    let record = std::mem::take(&mut *record.lock().unwrap());
    let attempted: Vec<u64> = attempted.iter().map(|a| a.load(Ordering::SeqCst)).collect();
    let acked_total: usize = record.acked.iter().map(|m| m.len()).sum();
    eprintln!(
        "killed after {:?}: {acked_total} PubAcks, {handed_out_at_kill} publishes handed out at the kill ({} when the tasks stopped), {} errors before the kill",
        started.elapsed(),
        attempted.iter().sum::<u64>(),
        record.errors_before_kill.len()
    );
    assert!(
        record.bad_acks.is_empty(),
        "PubAcks that cannot be right: {:#?}",
        record.bad_acks
    );
    assert!(
        (acked_total as u64) < attempted.iter().sum::<u64>(),
        "the kill should have come while publishes were unacknowledged"
    );
    if !record.errors_before_kill.is_empty() {
        eprintln!(
            "publish errors before the kill (first 5): {:?}",
            &record.errors_before_kill[..record.errors_before_kill.len().min(5)]
        );
    }

    s.restart();
    let c = s.client().await;
    let mut failures = Vec::new();
    for st in 0..STREAMS {
        let name = format!("S{st}");
        let info = js_api(&c, &format!("$JS.API.STREAM.INFO.{name}"), "").await;
        assert!(
            info.get("error").is_none(),
            "info {name} after restart: {info}"
        );
        let first = info["state"]["first_seq"].as_u64().unwrap();
        let last = info["state"]["last_seq"].as_u64().unwrap();
        let messages = info["state"]["messages"].as_u64().unwrap();
        let acked = &record.acked[st];
        let max_acked = acked.keys().next_back().copied().unwrap_or(0);

        // Every stored message, by sequence (a few requests at a time).
        let gets = futures::stream::iter(first.max(1)..=last)
            .map(|seq| {
                let c = c.clone();
                let name = name.clone();
                async move {
                    let r = js_api(
                        &c,
                        &format!("$JS.API.STREAM.MSG.GET.{name}"),
                        &json!({ "seq": seq }).to_string(),
                    )
                    .await;
                    (seq, r)
                }
            })
            .buffered(16)
            .collect::<Vec<_>>()
            .await;
        let mut stored: BTreeMap<u64, String> = BTreeMap::new();
        let mut seen: HashMap<String, u64> = HashMap::new();
        for (seq, r) in gets {
            if r["error"]["err_code"] == 10037 {
                continue; // a gap: nothing stored there
            }
            if r.get("error").is_some() {
                failures.push(format!("{name} seq {seq}: {r}"));
                continue;
            }
            let m = &r["message"];
            let data = unb64(&m["data"]);
            match decode(&data) {
                None => failures.push(format!("{name} seq {seq}: not a payload we sent: {data:?}")),
                Some((s2, p, k)) => {
                    if s2 != st || stream_of(p, k) != st || k >= attempted[p] {
                        failures.push(format!(
                            "{name} seq {seq}: {data:?} was never sent to {name}"
                        ));
                    }
                    if m["subject"] != format!("crash.{st}.p{p}").as_str() {
                        failures.push(format!(
                            "{name} seq {seq}: subject {} for {data:?}",
                            m["subject"]
                        ));
                    }
                }
            }
            if let Some(other) = seen.insert(data.clone(), seq) {
                failures.push(format!(
                    "{name}: {data:?} stored twice, at {other} and {seq}"
                ));
            }
            stored.insert(seq, data);
        }
        if stored.len() as u64 != messages {
            failures.push(format!(
                "{name}: state.messages {messages} but {} messages readable in {first}..={last}",
                stored.len()
            ));
        }

        // The acked messages, exactly as acked.
        let mut lost = BTreeSet::new();
        for (seq, data) in acked {
            match stored.get(seq) {
                Some(got) if got == data => {}
                Some(got) => failures.push(format!(
                    "{name} seq {seq}: acked {data:?} but stored {got:?}"
                )),
                None => {
                    lost.insert(*seq);
                }
            }
        }
        eprintln!(
            "{name}: {} acked (max seq {max_acked}), stored {messages} in {first}..={last}, {} acked lost",
            acked.len(),
            lost.len()
        );
        if strict {
            if !lost.is_empty() {
                failures.push(format!(
                    "{name}: {} acked messages missing after the crash (fsync before ack): seqs {:?}",
                    lost.len(),
                    lost.iter().take(20).collect::<Vec<_>>()
                ));
            }
            if last < max_acked {
                failures.push(format!(
                    "{name}: state.last_seq {last} < highest acked seq {max_acked}"
                ));
            }
        }

        // Publishing continues right after what is stored.
        let ack = js_publish(&c, &format!("crash.{st}.after"), &[], "after").await;
        if ack["seq"] != last + 1 || ack["stream"] != name.as_str() {
            failures.push(format!(
                "{name}: publish after restart got {ack}, expected seq {}",
                last + 1
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} problems after SIGKILL and restart:\n{}\n--- log (tail) ---\n{}",
        failures.len(),
        failures.join("\n"),
        tail(&s.log(), 40)
    );
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A second server on a store directory in use exits with a fatal error.
///
/// nats-server 2.15.3 takes no lock: a second server on the same store
/// directory starts normally (restores the streams it finds there and
/// serves them beside the first one), so this is broker-edge only.
#[tokio::test]
async fn store_dir_lock_refuses_second_server() {
    ours_only!("nats-server 2.15.3 does not lock the store directory");
    let first = Server::start_js(&[]);
    let c = first.client().await;
    let r = js_api(
        &c,
        "$JS.API.STREAM.CREATE.L",
        r#"{"name":"L","subjects":["lock.>"]}"#,
    )
    .await;
    assert!(r.get("error").is_none(), "{r}");

    let store = first.store_dir();
    let port = common::free_port().to_string();
    let (status, stdout, stderr) = run_to_exit(
        &[
            "-a",
            "127.0.0.1",
            "-p",
            &port,
            "-js",
            "-sd",
            store.to_str().unwrap(),
        ],
        Duration::from_secs(10),
    )
    .await;
    let log = format!("{stderr}{stdout}");
    assert!(
        !status.success(),
        "second server exited with {status}\n{log}"
    );
    let ftl: Vec<&str> = log.lines().filter(|l| l.contains("[FTL]")).collect();
    assert_eq!(ftl.len(), 1, "one [FTL] line expected\n{log}");
    let line = ftl[0].to_lowercase();
    assert!(
        line.contains("lock") || line.contains("in use"),
        "[FTL] line should name the lock or the directory in use: {}",
        ftl[0]
    );
    assert!(
        ftl[0].contains(store.to_str().unwrap()),
        "[FTL] line should name the store directory {}: {}",
        store.display(),
        ftl[0]
    );
    // The first server is unaffected.
    let ack = js_publish(&c, "lock.x", &[], "still here").await;
    assert_eq!(ack["seq"], 1, "{ack}");
}

/// Streams are placed over the shards: each stream's `meta.json` records
/// its shard, and 8 streams over 4 shards use at least 3 of them.
#[tokio::test]
async fn streams_spread_over_shards() {
    ours_only!("--shards and stream placement over shards");
    let s = Server::start_js(&["--shards", "4", "--shard_fill", "1"]);
    let c = s.client().await;
    for i in 0..8 {
        let r = js_api(
            &c,
            &format!("$JS.API.STREAM.CREATE.P{i}"),
            &json!({"name": format!("P{i}"), "subjects": [format!("place.{i}.>")]}).to_string(),
        )
        .await;
        assert!(r.get("error").is_none(), "create P{i}: {r}");
    }
    let mut shards = BTreeMap::new();
    for i in 0..8 {
        let path = s
            .store_dir()
            .join("jetstream/$G/streams")
            .join(format!("P{i}"))
            .join("meta.json");
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let meta: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{} is not JSON ({e}): {text}", path.display()));
        let shard = meta["shard"]
            .as_u64()
            .unwrap_or_else(|| panic!("{}: no numeric shard field: {text}", path.display()));
        assert!(shard < 4, "P{i} on shard {shard} of 4");
        assert_eq!(meta["config"]["name"], format!("P{i}").as_str(), "{text}");
        shards.insert(format!("P{i}"), shard);
    }
    let distinct: BTreeSet<u64> = shards.values().copied().collect();
    assert!(
        distinct.len() >= 3,
        "8 streams on only {} shards: {shards:?}",
        distinct.len()
    );
}
