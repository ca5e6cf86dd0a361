//! Runtime behaviour visible from outside: an idle broker does not spin.

mod common;

use std::time::Duration;

use common::{sync, Server};

/// utime + stime of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc stat");
    // Fields after the parenthesised command name; utime and stime are the
    // 14th and 15th fields of the whole line.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

fn ticks_per_second() -> u64 {
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as u64
    } else {
        100
    }
}

/// Over a 2 s window the whole process (all shards) uses at most a tenth
/// of one core.
async fn assert_quiet(pid: u32, what: &str) {
    let before = cpu_ticks(pid);
    let window = Duration::from_secs(2);
    tokio::time::sleep(window).await;
    let used = cpu_ticks(pid) - before;
    let budget = ticks_per_second() * window.as_secs() / 10;
    eprintln!("{what}: {used} ticks of CPU in {window:?}");
    assert!(
        used <= budget,
        "{what} used {used} ticks of CPU in {window:?} (budget {budget}, {} ticks/s)",
        ticks_per_second()
    );
}

/// With clients connected but no traffic, the whole process (all shards)
/// uses well under a tenth of one core.
#[tokio::test]
async fn idle_broker_uses_almost_no_cpu() {
    let s = Server::start(&[]);
    let mut clients = Vec::new();
    for _ in 0..8 {
        let c = s.client().await;
        let _sub = c.subscribe("idle.x").await.unwrap();
        sync(&c).await;
        clients.push((c, _sub));
    }
    // Let start-up work settle, then measure a quiet window.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_quiet(s.pid(), "idle server").await;
    // Still responsive after idling.
    for (c, _) in &clients {
        sync(c).await;
    }
}

/// With the latency policy on, connections that just carried traffic keep
/// reading for a moment (the read spin) and the idle pollers run; once
/// traffic stops the broker must go quiet again.
#[tokio::test]
async fn broker_stops_spinning_after_traffic() {
    let s = if common::is_reference() {
        Server::start(&[])
    } else {
        Server::start_with_config(
            "broker_edge { idle_poll: true, read_spin: \"100us\" }\n",
            &[],
        )
    };
    converse(&s, 2000).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_quiet(s.pid(), "server after traffic stopped").await;
}

/// `n` request/reply round trips through `s`, one at a time, between two
/// clients on this machine; the responder echoes.
async fn converse(s: &Server, n: u32) {
    use futures::StreamExt;
    let responder = s.client().await;
    let mut sub = responder.subscribe("echo.req").await.unwrap();
    let r = responder.clone();
    let task = tokio::spawn(async move {
        while let Some(m) = sub.next().await {
            if let Some(reply) = m.reply {
                r.publish(reply, m.payload).await.unwrap();
            }
        }
    });
    sync(&responder).await;
    let requester = s.client().await;
    for i in 0..n {
        let got = requester.request("echo.req", i.to_string().into()).await;
        assert_eq!(got.unwrap().payload, i.to_string().as_bytes());
    }
    task.abort();
}

/// CPU time in ns (first field of `/proc/PID/task/TID/schedstat`) of each
/// thread of `pid` called `name`.
fn thread_run_ns(pid: u32, name: &str) -> Vec<u64> {
    let mut out = Vec::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for t in tasks.flatten() {
        let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
        if comm.trim_end() != name {
            continue;
        }
        let stat = std::fs::read_to_string(t.path().join("schedstat")).unwrap_or_default();
        let ns = stat.split_whitespace().next().and_then(|f| f.parse().ok());
        out.push(ns.unwrap_or(0));
    }
    out
}

/// With `broker_edge { idle_poll: true }` each shard has an idle poller;
/// they run while a client on this machine converses with the broker (and
/// park afterwards: the test above). By default there are none (the
/// latency policy is opt-in), and `/varz` says which policy is in force.
#[tokio::test]
async fn idle_pollers_run_during_a_local_conversation() {
    ours_only!("the idle pollers are Broker Edge's");
    // Three shards, connections on the first (the default fill): the
    // other two shards' pollers are the ones that spin.
    let s = Server::start_with_config(
        "broker_edge { idle_poll: true, read_spin: \"100us\" }\n",
        &["--shards", "3"],
    );
    let mut before = Vec::new();
    for _ in 0..40 {
        before = thread_run_ns(s.pid(), "idle-poll");
        if before.len() == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(before.len(), 3, "one idle-poll thread per shard");
    // Let them finish starting and park before taking the baseline.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = thread_run_ns(s.pid(), "idle-poll");
    converse(&s, 500).await;
    let after = thread_run_ns(s.pid(), "idle-poll");
    let spun: u64 = after.iter().sum::<u64>() - before.iter().sum::<u64>();
    eprintln!("idle pollers ran {spun} ns during 500 requests");
    assert!(
        spun > 0,
        "the idle pollers never ran: {before:?} → {after:?}"
    );

    let v = s.json("/varz").await;
    assert_eq!(v["broker_edge"]["idle_poll"], true, "{v}");
    assert_eq!(v["broker_edge"]["read_spin"], 100_000, "{v}");
    // The defaults: neither.
    let off = Server::start(&["--shards", "3"]);
    sync(&off.client().await).await;
    assert!(thread_run_ns(off.pid(), "idle-poll").is_empty());
    let v = off.json("/varz").await;
    assert_eq!(v["broker_edge"]["idle_poll"], false, "{v}");
    assert_eq!(v["broker_edge"]["read_spin"], 0, "{v}");
    assert_eq!(v["broker_edge"]["shards"], 3, "{v}");
}
