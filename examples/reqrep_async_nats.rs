//! Request/reply latency as an async-nats user sees it: one responder
//! connection, one requester connection, one request outstanding at a
//! time. Prints one JSON line (microseconds). Part of the latency-policy
//! comparison (`bench/scripts/latency-policy.sh`):
//!   cargo build --release --example reqrep_async_nats
//!   target/release/examples/reqrep_async_nats nats://127.0.0.1:4222 5000 16

use std::time::Instant;

use futures::StreamExt;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let url = args.get(1).map_or("nats://127.0.0.1:4222", String::as_str);
    let n: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(5000);
    let size: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(16);
    let responder = async_nats::connect(url).await?;
    let requester = async_nats::connect(url).await?;
    let mut sub = responder.subscribe("bench.reqrep").await?;
    responder.flush().await?;
    let answer = responder.clone();
    tokio::spawn(async move {
        while let Some(m) = sub.next().await {
            if let Some(r) = m.reply {
                let _ = answer.publish(r, m.payload).await;
            }
        }
    });
    let body = bytes::Bytes::from(vec![b'x'; size]);
    for _ in 0..100 {
        requester.request("bench.reqrep", body.clone()).await?;
    }
    let mut took = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        requester.request("bench.reqrep", body.clone()).await?;
        took.push(t.elapsed().as_micros() as u64);
    }
    took.sort_unstable();
    let q = |p: f64| took[((took.len() as f64 * p) as usize).min(took.len() - 1)];
    println!(
        "{{\"client\":\"async-nats\",\"msgs\":{n},\"p50_us\":{},\"p90_us\":{},\"p99_us\":{},\"max_us\":{}}}",
        q(0.50),
        q(0.90),
        q(0.99),
        took[took.len() - 1]
    );
    Ok(())
}
