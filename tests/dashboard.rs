//! The dashboard at `/` on the monitoring port, in headless Chromium
//! (Debian's `chromium`, installed by `scripts/test`): it loads without
//! console errors, shows the server's streams and consumers, and its
//! figures move while a publisher runs. A phone-sized screenshot is kept in
//! `target/ci-artifacts/dashboard.png`.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use common::{js_api, Server};

/// Chromium's view of the page after it ran for a while (virtual time:
/// timers fire at once, fetches take real time), and what it logged.
fn render(url: &str, extra: &[&str]) -> (String, String) {
    let mut args = vec![
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--enable-logging=stderr",
        "--v=0",
        "--virtual-time-budget=7000",
    ];
    args.extend_from_slice(extra);
    args.push(url);
    let out = Command::new("chromium")
        .args(&args)
        .output()
        .expect("chromium (Debian package; scripts/test installs it)");
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The text of the element with id `id` in a dumped DOM.
fn text_of(dom: &str, id: &str) -> String {
    let at = dom
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no #{id} in the page"));
    let rest = &dom[at..];
    let start = rest.find('>').unwrap() + 1;
    let end = rest[start..].find('<').unwrap() + start;
    rest[start..end].to_string()
}

#[tokio::test]
async fn dashboard_is_live_in_a_browser() {
    ours_only!("the dashboard is Broker Edge's");
    let s = Server::start_js(&[]);
    let c = s.client().await;
    let r = js_api(
        &c,
        "$JS.API.STREAM.CREATE.ORDERS",
        r#"{"name":"ORDERS","subjects":["orders.>"]}"#,
    )
    .await;
    assert!(r.get("error").is_none(), "{r}");
    let r = js_api(
        &c,
        "$JS.API.CONSUMER.DURABLE.CREATE.ORDERS.BILLING",
        r#"{"stream_name":"ORDERS","config":{"durable_name":"BILLING","ack_policy":"explicit"}}"#,
    )
    .await;
    assert!(r.get("error").is_none(), "{r}");

    // A publisher keeps going while the browser looks.
    let publisher = {
        let c = c.clone();
        tokio::spawn(async move {
            loop {
                for _ in 0..200 {
                    if c.publish("orders.new", "x".into()).await.is_err() {
                        return;
                    }
                }
                let _ = c.flush().await;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let url = format!("http://127.0.0.1:{}/", s.http_port);
    let (dom, log) = tokio::task::spawn_blocking({
        let url = url.clone();
        move || render(&url, &["--dump-dom"])
    })
    .await
    .unwrap();
    let errors: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("CONSOLE") && (l.contains("ERROR") || l.contains("Uncaught")))
        .collect();
    assert!(errors.is_empty(), "console errors: {errors:?}");
    assert!(text_of(&dom, "status").starts_with("live"), "{dom}");
    assert!(dom.contains("<td>ORDERS</td>"), "{dom}");
    assert!(dom.contains("ORDERS / BILLING"), "{dom}");
    let first: u64 = text_of(&dom, "conns").parse().unwrap_or(0);
    assert!(first >= 1, "connections shown: {first}");
    let rate = text_of(&dom, "in-rate");
    assert!(
        rate != "–" && rate != "0",
        "msgs in / s while publishing: {rate:?}"
    );
    // Later, the stream count has moved on.
    let count = |dom: &str| -> String {
        let at = dom.find("<td>ORDERS</td><td class=\"n\">").unwrap() + 26;
        dom[at..at + dom[at..].find('<').unwrap()].to_string()
    };
    let before = count(&dom);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (dom2, _) = tokio::task::spawn_blocking({
        let url = url.clone();
        move || render(&url, &["--dump-dom"])
    })
    .await
    .unwrap();
    assert_ne!(
        before,
        count(&dom2),
        "the stream's message count did not move"
    );

    // A phone-sized screenshot for the CI artefacts.
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/ci-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    let shot = dir.join("dashboard.png");
    let arg = format!("--screenshot={}", shot.display());
    tokio::task::spawn_blocking(move || render(&url, &[&arg, "--window-size=412,915"]))
        .await
        .unwrap();
    let png = std::fs::read(&shot).expect("screenshot written");
    assert!(png.starts_with(b"\x89PNG"), "not a PNG");
    publisher.abort();
}
