//! Running the pinned `nats` CLI against a test server, with an empty home
//! (no contexts), bounded in time.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;

use super::{nats_cli, Server};

/// Upper bound for one CLI run.
pub const CLI_TIMEOUT: Duration = Duration::from_secs(30);

pub struct Out {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}\n{}", self.stdout, self.stderr))
    }
}

/// `nats --server URL args...` with an empty home, ready to spawn.
pub fn command(s: &Server, home: &Path, args: &[&str]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(nats_cli());
    cmd.arg("--server")
        .arg(s.url())
        .args(args)
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join(".config"))
        .env_remove("NATS_CONTEXT")
        .env_remove("NATS_URL")
        .current_dir(home)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// Runs the CLI; panics if it does not finish within [`CLI_TIMEOUT`].
pub async fn nats(s: &Server, home: &Path, args: &[&str]) -> Out {
    let child = command(s, home, args).spawn().expect("spawn nats");
    let out = tokio::time::timeout(CLI_TIMEOUT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| {
            panic!(
                "nats {args:?} did not finish within {CLI_TIMEOUT:?}\n--- server log ---\n{}",
                s.log()
            )
        })
        .expect("wait for nats");
    Out {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// [`nats`] that must succeed.
pub async fn nats_ok(s: &Server, home: &Path, args: &[&str]) -> Out {
    let out = nats(s, home, args).await;
    assert!(
        out.ok,
        "nats {args:?} failed\n--- stdout ---\n{}\n--- stderr ---\n{}\n--- server log ---\n{}",
        out.stdout,
        out.stderr,
        s.log()
    );
    out
}
