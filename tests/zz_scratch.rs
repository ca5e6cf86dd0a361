//! Server limits set in a config file: max_payload, max_connections,
//! max_subscriptions, ping_interval/ping_max (stale connections) and
//! max_pending (slow consumers), with the reference's errors and closes.

mod common;

use std::time::Duration;

use common::{sync, within, Server};
use futures::StreamExt;

const QUIET: &str = r#"{"verbose":false,"pedantic":false,"protocol":1}"#;

#[tokio::test]
async fn slow_consumer_does_not_hurt_fast_subscribers() {
    const MSGS: usize = 256;
    let s = Server::start_with_config(
        "max_payload: 65536\nmax_pending: 262144\nwrite_deadline: \"2s\"\n",
        &[],
    );
    let mut slow = s.raw().await;
    slow.handshake(QUIET).await;
    slow.send("SUB flood2 1\r\nPING\r\n").await;
    assert_eq!(slow.next().await.as_deref(), Some("PONG"));
    let fast_c = s
        .client_with(async_nats::ConnectOptions::new().subscription_capacity(MSGS + 8))
        .await;
    let mut fast = fast_c.subscribe("flood2").await.unwrap();
    sync(&fast_c).await;
    let publisher = s.client().await;
    let reader = tokio::spawn(async move {
        for i in 0..MSGS {
            let m = within(&format!("fast delivery of message {i}"), fast.next())
                .await
                .unwrap();
            assert_eq!(m.payload.len(), 64 * 1024);
            assert_eq!(&m.payload[..8], format!("{i:08}").as_bytes(), "order");
        }
    });
    for i in 0..MSGS {
        let mut body = vec![b'.'; 64 * 1024];
        body[..8].copy_from_slice(format!("{i:08}").as_bytes());
        within("publish", publisher.publish("flood2", body.into()))
            .await
            .unwrap();
    }
    publisher.flush().await.unwrap();
    reader.await.expect("fast subscriber");
    let t0 = std::time::Instant::now();
    let mut buf = vec![0u8; 64 * 1024];
    let mut n = 0usize;
    loop {
        use tokio::io::AsyncReadExt;
        match tokio::time::timeout(Duration::from_secs(30), slow.reader.read(&mut buf)).await {
            Ok(Ok(0)) => {
                eprintln!("EOF after {n} bytes {:?}", t0.elapsed());
                break;
            }
            Ok(Ok(k)) => {
                n += k;
                if n % (1 << 20) < k {
                    eprintln!("{n} bytes at {:?}", t0.elapsed());
                }
            }
            Ok(Err(e)) => {
                eprintln!("ERR {e} after {n} {:?}", t0.elapsed());
                break;
            }
            Err(_) => {
                eprintln!("TIMEOUT after {n} {:?}", t0.elapsed());
                break;
            }
        }
    }
}
