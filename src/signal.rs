//! `--signal CMD[=PID|PIDFILE]`: send a running server a command, as
//! `nats-server --signal` does.

use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum SignalError {
    #[error("unknown signal {0:?}")]
    UnknownCommand(String),
    #[error("could not read pid from {path}: {why}")]
    PidFile { path: String, why: String },
    #[error("no broker-edge process running")]
    NoProcess,
    #[error("multiple broker-edge processes running:\n{0}")]
    Ambiguous(String),
    #[error("failed to signal pid {pid}: {why}")]
    Kill { pid: i32, why: String },
    /// 0 and negative pids mean process groups or every process to kill(2).
    #[error("invalid pid {0}: a process id is a positive number")]
    BadPid(i32),
}

fn signal_for(cmd: &str) -> Option<i32> {
    Some(match cmd {
        "stop" => libc::SIGKILL,
        "quit" => libc::SIGINT,
        "term" => libc::SIGTERM,
        "reopen" => libc::SIGUSR1,
        "reload" => libc::SIGHUP,
        "ldm" => libc::SIGUSR2,
        _ => return None,
    })
}

fn find_pids() -> Vec<i32> {
    let me = std::process::id() as i32;
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| pid != me)
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|c| c.trim() == "broker-edge")
        })
        .collect()
}

pub fn send(command: &str, target: Option<&str>) -> Result<(), SignalError> {
    let sig = signal_for(command).ok_or_else(|| SignalError::UnknownCommand(command.into()))?;
    let pid = match target {
        Some(t) => match t.parse::<i32>() {
            Ok(p) => p,
            Err(_) => {
                let text =
                    std::fs::read_to_string(Path::new(t)).map_err(|e| SignalError::PidFile {
                        path: t.into(),
                        why: e.to_string(),
                    })?;
                text.trim()
                    .parse()
                    .map_err(|e: std::num::ParseIntError| SignalError::PidFile {
                        path: t.into(),
                        why: e.to_string(),
                    })?
            }
        },
        None => {
            let pids = find_pids();
            match pids.as_slice() {
                [] => return Err(SignalError::NoProcess),
                [p] => *p,
                many => {
                    return Err(SignalError::Ambiguous(
                        many.iter()
                            .map(|p| p.to_string())
                            .collect::<Vec<_>>()
                            .join("\n"),
                    ))
                }
            }
        }
    };
    if pid <= 0 {
        return Err(SignalError::BadPid(pid));
    }
    // SAFETY: plain kill(2) of one process (pid > 0) with a validated
    // signal number.
    if unsafe { libc::kill(pid, sig) } != 0 {
        return Err(SignalError::Kill {
            pid,
            why: std::io::Error::last_os_error().to_string(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_pids_that_name_groups_or_everyone() {
        for bad in ["0", "-1", "-42"] {
            assert!(
                matches!(send("stop", Some(bad)), Err(SignalError::BadPid(_))),
                "{bad}"
            );
        }
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("pid");
        std::fs::write(&f, "-1\n").unwrap();
        assert!(matches!(
            send("term", Some(f.to_str().unwrap())),
            Err(SignalError::BadPid(-1))
        ));
    }
}
