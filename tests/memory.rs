//! Memory per connection: buffers grow with a burst and are given back
//! once the connections are quiet (broker-edge only: nats-server keeps
//! them). Structural, with a generous bound: the server's RSS after a
//! burst falls back most of the way to the idle figure. Figures belong in
//! BENCHMARKS.md (`broker-edge-bench conns`).

mod common;

use std::time::{Duration, Instant};

use common::{within, Server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const CONNS: usize = 64;
const MSGS: usize = 8;
const SIZE: usize = 64 * 1024;

fn rss_kib(pid: u32) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS")
}

/// Reads until `want` bytes arrived after the PONG of the handshake.
async fn drain(mut s: tokio::net::TcpStream, want: usize) -> tokio::net::TcpStream {
    let mut buf = vec![0u8; 256 * 1024];
    let mut got = 0;
    while got < want {
        let n = within("burst delivery", s.read(&mut buf)).await.unwrap();
        assert!(n > 0, "server closed a subscriber");
        got += n;
    }
    assert_eq!(got, want, "exactly the burst");
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn burst_buffers_are_given_back_when_quiet() {
    ours_only!("nats-server keeps a burst's buffers");
    let s = Server::start(&[]);
    let pid = s.pid();
    let mut subs = Vec::new();
    for i in 0..CONNS {
        let mut c = tokio::net::TcpStream::connect(s.addr()).await.unwrap();
        c.set_nodelay(true).unwrap();
        c.write_all(
            format!("CONNECT {{\"verbose\":false}}\r\nSUB mem.{i} 1\r\nPING\r\n").as_bytes(),
        )
        .await
        .unwrap();
        // INFO, then PONG.
        let mut seen = Vec::new();
        let mut b = [0u8; 4096];
        while !seen.ends_with(b"PONG\r\n") {
            let n = within("handshake", c.read(&mut b)).await.unwrap();
            assert!(n > 0);
            seen.extend_from_slice(&b[..n]);
        }
        subs.push(c);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle = rss_kib(pid);

    let readers: Vec<_> = subs
        .into_iter()
        .enumerate()
        .map(|(i, c)| {
            let frame = format!("MSG mem.{i} 1 {SIZE}\r\n").len() + SIZE + 2;
            tokio::spawn(drain(c, frame * MSGS))
        })
        .collect();
    let publisher = s.client().await;
    let body = bytes::Bytes::from(vec![b'm'; SIZE]);
    for _ in 0..MSGS {
        for i in 0..CONNS {
            publisher
                .publish(format!("mem.{i}"), body.clone())
                .await
                .unwrap();
        }
    }
    publisher.flush().await.unwrap();
    let mut subs = Vec::new();
    for r in readers {
        subs.push(r.await.unwrap());
    }
    let burst = rss_kib(pid);
    let grown = burst.saturating_sub(idle);
    // Each subscriber's buffers held at least a message or two.
    assert!(
        grown >= (CONNS * SIZE / 1024) as u64,
        "the burst grew the server by {grown} KiB only (idle {idle} KiB)"
    );
    // Quiet now: within a generous time the server gives most of it back.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut now = burst;
    while now > idle + grown / 3 {
        assert!(
            Instant::now() < deadline,
            "RSS stayed at {now} KiB (idle {idle} KiB, after the burst {burst} KiB)"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
        now = rss_kib(pid);
    }
    eprintln!("RSS idle {idle} KiB, after the burst {burst} KiB, quiet {now} KiB");
    // The connections still work (the buffers grow again).
    publisher.publish("mem.0", body.clone()).await.unwrap();
    publisher.flush().await.unwrap();
    let c = subs.swap_remove(0);
    drain(c, format!("MSG mem.0 1 {SIZE}\r\n").len() + SIZE + 2).await;
}
