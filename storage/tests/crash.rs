//! Crash test: a child process (this test binary, re-executed) appends under
//! `Durability::Always` and prints every acknowledged sequence; the parent
//! kills it with SIGKILL at a random moment, reopens the log and checks that
//! every acknowledged record is present and intact and that everything
//! present passes its checksum. Repeated over several rounds on one log.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use broker_edge_storage::{Filter, Log, Start};
use common::{payload, run, small_cfg};

const CHILD_ENV: &str = "BROKER_EDGE_STORAGE_CRASH_CHILD";

fn len_for(key: u64) -> usize {
    64 + (key as usize * 37) % 900
}

/// The child side: only does something when re-executed by the parent.
#[test]
fn crash_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let round: u64 = std::env::var("ROUND").unwrap().parse().unwrap();
    run(async move {
        let log = Log::open(&dir, small_cfg(64 << 10)).await.unwrap();
        let mut tasks = Vec::new();
        for t in 0..4u64 {
            let log = log.clone();
            tasks.push(glommio::spawn_local(async move {
                let mut out = std::io::stdout();
                for i in 0.. {
                    let key = (round << 40) | (t << 32) | i;
                    let (s, _) = log
                        .append(&format!("c.{t}"), b"", &payload(key, len_for(key)))
                        .await
                        .unwrap();
                    writeln!(out, "{s} {key}").unwrap();
                    out.flush().unwrap();
                }
            }));
        }
        for t in tasks {
            t.await;
        }
    });
}

#[test]
fn sigkill_keeps_every_acked_record() {
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut rng = Instant::now().elapsed().as_nanos() as u64 | 1;
    let mut acked: Vec<(u64, u64)> = Vec::new();
    for round in 0..5u64 {
        let mut child = Command::new(&exe)
            .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, dir.path())
            .env("ROUND", round.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        // The kill lands at a random time after the child's first ack, not
        // after its start: a loaded machine may take longer than the
        // window just to start the child.
        let (first_tx, first_rx) = std::sync::mpsc::channel::<()>();
        let reader = std::thread::spawn(move || {
            let mut v = Vec::new();
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let mut it = line.split(' ');
                if let (Some(Ok(s)), Some(Ok(k))) = (
                    it.next().map(str::parse::<u64>),
                    it.next().map(str::parse::<u64>),
                ) {
                    v.push((s, k));
                    let _ = first_tx.send(());
                }
            }
            v
        });
        let _ = first_rx.recv_timeout(Duration::from_secs(60));
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        std::thread::sleep(Duration::from_millis(150 + rng % 400));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let got = reader.join().unwrap();
        assert!(!got.is_empty() || round > 0, "child acked nothing");
        acked.extend(got);

        let p = dir.path().to_path_buf();
        let acked_now = acked.clone();
        run(async move {
            let log = Log::open(&p, small_cfg(64 << 10)).await.unwrap();
            for (s, key) in &acked_now {
                let m = log
                    .get(*s)
                    .unwrap_or_else(|e| panic!("acked seq {s} missing: {e}"));
                assert_eq!(&m.payload[..], &payload(*key, len_for(*key))[..]);
            }
            let st = log.state(false);
            let n = log
                .scan(Start::Seq(1), Filter::all())
                .filter(|m| {
                    m.as_ref()
                        .map_err(|e| panic!("present but bad: {e}"))
                        .is_ok()
                })
                .count();
            assert_eq!(n as u64, st.msgs);
            let rep = log.recovery_report();
            assert!(
                rep.corrupt.is_empty(),
                "{rep:?} acked max {:?}",
                acked_now.iter().map(|a| a.0).max()
            );
        });
    }
    assert!(acked.len() > 20, "only {} acks", acked.len());
}
