//! `--spawn-a/--spawn-b`: start a server for the run and stop it after.

use crate::proto::ServerUrl;
use anyhow::{bail, Context, Result};
use std::net::{TcpStream, ToSocketAddrs};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// A server process we started; killed and reaped on drop.
pub struct Spawned {
    child: Child,
}

impl Spawned {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        // SIGTERM first so the server can shut down cleanly, then make sure.
        // SAFETY: kill(2) on our own child's PID.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `cmd` through `sh -c "exec …"` (so the PID is the server's own) and
/// waits until `url` accepts connections.
pub fn spawn(cmd: &str, url: &ServerUrl, log: Option<&str>) -> Result<Spawned> {
    let (out, err) = match log {
        Some(path) => {
            let f = std::fs::File::create(path).with_context(|| format!("creating {path}"))?;
            (Stdio::from(f.try_clone()?), Stdio::from(f))
        }
        None => (Stdio::null(), Stdio::null()),
    };
    let child = Command::new("sh")
        .arg("-c")
        .arg(format!("exec {cmd}"))
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .with_context(|| format!("starting {cmd:?}"))?;
    let mut s = Spawned { child };
    let addrs: Vec<_> = url.addr().to_socket_addrs()?.collect();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Ok(Some(status)) = s.child.try_wait() {
            bail!("{cmd:?} exited with {status} before accepting connections");
        }
        if addrs
            .iter()
            .any(|a| TcpStream::connect_timeout(a, Duration::from_millis(200)).is_ok())
        {
            return Ok(s);
        }
        if Instant::now() > deadline {
            bail!("{cmd:?} did not accept connections on {url} within 15 s");
        }
        thread::sleep(Duration::from_millis(50));
    }
}
