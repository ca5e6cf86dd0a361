//! Lame-duck mode (SIGUSR2 or `--signal ldm=PID`): the listener stops
//! accepting, connected clients get an INFO with `"ldm":true`, and are then
//! closed over `lame_duck_duration`, after which the server exits. Also the
//! other `--signal` commands.

mod common;

use std::time::{Duration, Instant};

use common::{run_to_exit, sync, Raw, Server};

/// nats-server 2.9 refuses a lame_duck_duration under 30 s; with a 1 s grace
/// period and few clients it still closes them (at most one per second) and
/// exits within a few seconds.
const LDM_CONF: &str = "lame_duck_duration: \"30s\"\nlame_duck_grace_period: \"1s\"\n";
const CLIENT: &str = r#"{"verbose":false,"pedantic":false,"protocol":1}"#;

async fn raw_clients(s: &Server, n: usize) -> Vec<Raw> {
    let mut v = Vec::new();
    for _ in 0..n {
        let mut r = s.raw().await;
        r.handshake(CLIENT).await;
        v.push(r);
    }
    v
}

/// The next line is an INFO announcing lame-duck mode.
async fn expect_ldm_info(r: &mut Raw) {
    let line = r.next().await.expect("closed before the lame-duck INFO");
    let info = common::parse_info(&line);
    assert_eq!(info["ldm"], true, "INFO without ldm: {line}");
    assert_eq!(info["server_id"], r.info["server_id"]);
}

/// Poll until connecting to the client port is refused.
async fn expect_listener_closed(s: &Server) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match tokio::net::TcpStream::connect(s.addr()).await {
            Err(_) => return,
            Ok(_) if Instant::now() > deadline => panic!(
                "still accepting connections in lame-duck mode\n--- log ---\n{}",
                s.log()
            ),
            Ok(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

async fn lame_duck_run(
    mut s: Server,
    mut clients: Vec<Raw>,
    trigger: impl std::future::Future<Output = ()>,
) {
    trigger.await;
    for r in clients.iter_mut() {
        expect_ldm_info(r).await;
    }
    expect_listener_closed(&s).await;
    s.wait_log("Entering lame duck mode", Duration::from_secs(5))
        .await;
    // Clients are closed by the server, then it exits on its own.
    for r in clients.iter_mut() {
        r.expect_closed(Duration::from_secs(15)).await;
    }
    let status = s.wait_exit(Duration::from_secs(15)).await;
    assert!(
        status.success(),
        "exit after lame duck: {status}\n{}",
        s.log()
    );
}

#[tokio::test]
async fn sigusr2_enters_lame_duck_mode() {
    let s = Server::start_with_config(LDM_CONF, &[]);
    let clients = raw_clients(&s, 3).await;
    let pid = s.pid();
    let trigger = async move {
        let rc = unsafe { libc::kill(pid as libc::pid_t, libc::SIGUSR2) };
        assert_eq!(rc, 0);
    };
    lame_duck_run(s, clients, trigger).await;
}

#[tokio::test]
async fn signal_flag_ldm_enters_lame_duck_mode() {
    let s = Server::start_with_config(LDM_CONF, &[]);
    let clients = raw_clients(&s, 2).await;
    let arg = format!("ldm={}", s.pid());
    let trigger = async move {
        let (status, out, err) = run_to_exit(&["--signal", &arg], Duration::from_secs(10)).await;
        assert!(status.success(), "--signal {arg}: {status}\n{out}{err}");
    };
    lame_duck_run(s, clients, trigger).await;
}

#[tokio::test]
async fn async_nats_client_is_told_about_lame_duck_mode() {
    let s = Server::start_with_config(LDM_CONF, &[]);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let opts = async_nats::ConnectOptions::new().event_callback(move |e| {
        let tx = tx.clone();
        async move {
            let _ = tx.send(e.to_string());
        }
    });
    let c = s.client_with(opts).await;
    sync(&c).await;
    s.signal(libc::SIGUSR2);
    let want = async_nats::Event::LameDuckMode.to_string();
    common::within("lame duck event", async {
        while let Some(e) = rx.recv().await {
            if e == want {
                return;
            }
        }
        panic!("event stream ended");
    })
    .await;
}

#[tokio::test]
async fn lame_duck_without_clients_exits_promptly() {
    let mut s = Server::start_with_config(LDM_CONF, &[]);
    s.signal(libc::SIGUSR2);
    let status = s.wait_exit(Duration::from_secs(10)).await;
    assert!(status.success(), "exit: {status}\n{}", s.log());
}

/// `--signal quit=PID` shuts the server down (SIGINT semantics).
#[tokio::test]
async fn signal_flag_quit_stops_the_server() {
    let mut s = Server::start(&[]);
    let c = s.client().await;
    sync(&c).await;
    let arg = format!("quit={}", s.pid());
    let (status, out, err) = run_to_exit(&["--signal", &arg], Duration::from_secs(10)).await;
    assert!(status.success(), "--signal {arg}: {status}\n{out}{err}");
    let st = s.wait_exit(Duration::from_secs(10)).await;
    assert!(st.success(), "exit after quit: {st}\n{}", s.log());
}

/// `--signal reload=PID` with a config file: the server reloads it (the
/// reference logs "Reloaded server configuration") and keeps serving.
#[tokio::test]
async fn signal_flag_reload_keeps_serving() {
    let mut s = Server::start_with_config("max_payload: 4096\n", &[]);
    let arg = format!("reload={}", s.pid());
    let (status, out, err) = run_to_exit(&["--signal", &arg], Duration::from_secs(10)).await;
    assert!(status.success(), "--signal {arg}: {status}\n{out}{err}");
    s.wait_log("Reloaded", Duration::from_secs(5)).await;
    let c = s.client().await;
    sync(&c).await;
    assert!(
        s.child.try_wait().unwrap().is_none(),
        "server exited on reload"
    );
}

/// With the default durations (no config file): the announcement and the
/// closed listener come at once; the server keeps existing clients for now.
#[tokio::test]
async fn lame_duck_with_defaults_announces_and_stops_accepting() {
    let s = Server::start(&[]);
    let mut clients = raw_clients(&s, 2).await;
    s.signal(libc::SIGUSR2);
    for r in clients.iter_mut() {
        expect_ldm_info(r).await;
    }
    expect_listener_closed(&s).await;
    // Within the default 10 s grace period, existing clients still work,
    // including messages between them.
    for r in clients.iter_mut() {
        r.send("PING\r\n").await;
        assert_eq!(r.next().await.as_deref(), Some("PONG"));
    }
    clients[0].send("SUB ldm.live 1\r\nPING\r\n").await;
    assert_eq!(clients[0].next().await.as_deref(), Some("PONG"));
    clients[1].send("PUB ldm.live 2\r\nok\r\nPING\r\n").await;
    assert_eq!(clients[1].next().await.as_deref(), Some("PONG"));
    assert_eq!(clients[0].next().await.as_deref(), Some("MSG ldm.live 1 2"));
    assert_eq!(clients[0].bytes(4).await, b"ok\r\n");
    s.wait_log("Entering lame duck mode", Duration::from_secs(5))
        .await;
}

/// Bad `--signal` uses fail with a message and a non-zero exit.
#[tokio::test]
async fn signal_flag_errors() {
    // A pid that cannot exist (above the kernel's pid_max limit).
    for (arg, needle) in [
        ("ldm=4194305", "no such process"),
        ("bogus=1", "unknown signal"),
        // 2.9 says "invalid pid"; newer releases also accept a pid file
        // path here, so only require that the bad value is named.
        ("ldm=abc", "abc"),
    ] {
        let (status, out, err) = run_to_exit(&["--signal", arg], Duration::from_secs(10)).await;
        let text = format!("{out}{err}");
        assert!(!status.success(), "--signal {arg} succeeded: {text}");
        // Wording may differ in case; the reason must be there.
        assert!(
            text.to_lowercase().contains(needle),
            "--signal {arg}: {text:?}"
        );
    }
}

/// `--signal stop=PID` kills the server outright; `--signal term=PID`
/// asks it to shut down.
#[tokio::test]
async fn signal_flag_stop_and_term() {
    for cmd in ["stop", "term"] {
        let mut s = Server::start(&[]);
        let arg = format!("{cmd}={}", s.pid());
        let (status, out, err) = run_to_exit(&["--signal", &arg], Duration::from_secs(10)).await;
        assert!(status.success(), "--signal {arg}: {status}\n{out}{err}");
        s.wait_exit(Duration::from_secs(10)).await;
        assert!(
            std::net::TcpStream::connect(s.addr()).is_err(),
            "{cmd}: still listening"
        );
    }
}
