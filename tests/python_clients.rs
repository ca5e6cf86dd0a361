//! The Python client (nats-py) against the real binary: each test starts
//! the server(s) with the harness and runs a script from `tests/py/`, which
//! exits 0 when all its checks pass. When nats-py is not installed the
//! tests print a skip message and pass (scripts/test and CI install it).

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::Server;

/// Upper bound for one script run.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(60);

/// True when `python3 -c 'import nats'` works.
fn have_nats_py() -> bool {
    std::process::Command::new("python3")
        .args(["-c", "import nats"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

macro_rules! need_nats_py {
    () => {
        if !have_nats_py() {
            eprintln!("skipped: nats-py is not installed (python3 -m pip install nats-py)");
            return;
        }
    };
}

/// Runs `tests/py/<script>` with `args` within [`SCRIPT_TIMEOUT`] (see
/// `common::run_py_script`).
async fn run_script(script: &str, args: &[String], servers: &[&Server]) {
    common::run_py_script(script, args, servers, SCRIPT_TIMEOUT).await
}

#[tokio::test]
async fn nats_py_user_password_and_token() {
    need_nats_py!();
    let users = Server::start_with_config(
        r#"
authorization {
  users = [
    { user: py, password: "py-Pw-1" }
    { user: lim, password: "lim-Pw-1", permissions: { publish: "py.ok", subscribe: "py.ok" } }
  ]
}
"#,
        &[],
    );
    let token = Server::start(&["--auth", "py-Token-1"]);
    let args: Vec<String> = [
        "--userpass-url",
        &users.url(),
        "--user",
        "py",
        "--password",
        "py-Pw-1",
        "--limited-user",
        "lim",
        "--limited-password",
        "lim-Pw-1",
        "--token-url",
        &token.url(),
        "--token",
        "py-Token-1",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    run_script("test_auth.py", &args, &[&users, &token]).await;
}

#[tokio::test]
async fn nats_py_service_mesh_fixture() {
    need_nats_py!();
    // The fixture's port 4222 / monitor_port 8222 are overridden by the
    // harness's -p/-m flags.
    let s = Server::start_with_config(include_str!("configs/service-mesh.conf"), &[]);
    run_script("test_service_mesh.py", &[s.url()], &[&s]).await;
}

#[tokio::test]
async fn nats_py_nkey_user() {
    need_nats_py!();
    let user = nkeys::KeyPair::new_user();
    let dir = tempfile::tempdir().unwrap();
    let seed = dir.path().join("user.nk");
    std::fs::write(&seed, user.seed().unwrap()).unwrap();
    let s = Server::start_with_config(
        &format!(
            "authorization {{\n  users = [ {{ nkey: {} }} ]\n}}\n",
            user.public_key()
        ),
        &[],
    );
    let args = vec![s.url(), "--seed".to_string(), seed.display().to_string()];
    run_script("test_nkey_creds.py", &args, &[&s]).await;
}
