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

/// Connections that just carried traffic keep reading for a moment (the
/// read spin); once traffic stops the broker must go quiet again.
#[tokio::test]
async fn broker_stops_spinning_after_traffic() {
    use futures::StreamExt;
    let s = Server::start(&[]);
    let responder = s.client().await;
    let mut sub = responder.subscribe("spin.req").await.unwrap();
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
    for i in 0..2000u32 {
        let got = requester
            .request("spin.req", i.to_string().into())
            .await
            .unwrap();
        assert_eq!(got.payload, i.to_string().as_bytes());
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_quiet(s.pid(), "server after traffic stopped").await;
    task.abort();
}
