//! CPU accounting from /proc: the server's utime+stime (found by PID, or by
//! the port it listens on) and the generator's own rusage. On a small box
//! the generator steals CPU from the server, so CPU per message is the
//! steadier figure next to msgs/s.

use anyhow::{bail, Context, Result};
use std::fs;

/// Clock ticks per second for /proc/PID/stat times.
fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// (utime, stime) in ticks from the text of /proc/PID/stat.
pub fn parse_stat_ticks(stat: &str) -> Option<(u64, u64)> {
    // comm may contain spaces and parentheses: fields resume after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut f = rest.split_ascii_whitespace();
    // rest starts at field 3 (state); utime and stime are fields 14 and 15.
    let utime = f.nth(11)?.parse().ok()?;
    let stime = f.next()?.parse().ok()?;
    Some((utime, stime))
}

/// Server CPU seconds (user+system, all threads, dead ones included).
pub fn process_cpu_seconds(pid: u32) -> Result<f64> {
    let path = format!("/proc/{pid}/stat");
    let text = fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    let (u, s) = parse_stat_ticks(&text).with_context(|| format!("parsing {path}"))?;
    Ok((u + s) as f64 / clock_ticks())
}

/// This process's CPU seconds, microsecond resolution.
pub fn self_cpu_seconds() -> f64 {
    // SAFETY: getrusage writes into the zeroed struct we own.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    if rc != 0 {
        return 0.0;
    }
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Socket inodes listening on `port` in the text of /proc/net/tcp{,6}.
pub fn listening_inodes(table: &str, port: u16) -> Vec<u64> {
    let mut out = Vec::new();
    for line in table.lines().skip(1) {
        let f: Vec<&str> = line.split_ascii_whitespace().collect();
        if f.len() < 10 || f[3] != "0A" {
            continue; // 0A = TCP_LISTEN
        }
        let Some((_, p)) = f[1].rsplit_once(':') else {
            continue;
        };
        if u16::from_str_radix(p, 16).ok() == Some(port) {
            if let Ok(inode) = f[9].parse::<u64>() {
                if inode != 0 {
                    out.push(inode);
                }
            }
        }
    }
    out
}

/// The PID of the local process listening on `port`, via the socket inode
/// and a scan of /proc/*/fd. Only our own processes are readable, which is
/// the case that matters (a server we or the user started).
pub fn find_listener_pid(port: u16) -> Result<u32> {
    let mut inodes = Vec::new();
    for t in ["/proc/net/tcp", "/proc/net/tcp6"] {
        if let Ok(text) = fs::read_to_string(t) {
            inodes.extend(listening_inodes(&text, port));
        }
    }
    if inodes.is_empty() {
        bail!("nothing listens on port {port}");
    }
    let wanted: Vec<String> = inodes.iter().map(|i| format!("socket:[{i}]")).collect();
    for entry in fs::read_dir("/proc")?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(fds) = fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if let Ok(target) = fs::read_link(fd.path()) {
                if wanted.iter().any(|w| target.as_os_str() == w.as_str()) {
                    return Ok(pid);
                }
            }
        }
    }
    bail!("port {port} is listening but its process is not visible to us")
}

/// (VmRSS, VmHWM) in KiB from the text of /proc/PID/status.
pub fn parse_status_rss_kib(status: &str) -> (Option<u64>, Option<u64>) {
    let field = |name: &str| {
        status.lines().find_map(|l| {
            let rest = l.strip_prefix(name)?.strip_prefix(':')?;
            rest.split_ascii_whitespace().next()?.parse().ok()
        })
    };
    (field("VmRSS"), field("VmHWM"))
}

/// The server's resident and peak resident memory in MiB, where readable.
pub fn process_rss_mib(pid: u32) -> (Option<f64>, Option<f64>) {
    let Ok(text) = fs::read_to_string(format!("/proc/{pid}/status")) else {
        return (None, None);
    };
    let (rss, hwm) = parse_status_rss_kib(&text);
    (
        rss.map(|k| k as f64 / 1024.0),
        hwm.map(|k| k as f64 / 1024.0),
    )
}

/// Parses a CPU list like `1`, `0-1`, `0,2-3`.
pub fn parse_cpu_list(s: &str) -> Result<Vec<usize>> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        let (a, b): (usize, usize) = (
            a.trim()
                .parse()
                .with_context(|| format!("bad CPU list {s:?}"))?,
            b.trim()
                .parse()
                .with_context(|| format!("bad CPU list {s:?}"))?,
        );
        if a > b || b >= libc::CPU_SETSIZE as usize {
            bail!("bad CPU range {part:?}");
        }
        out.extend(a..=b);
    }
    if out.is_empty() {
        bail!("empty CPU list {s:?}");
    }
    Ok(out)
}

/// Pins this process (and the threads it starts later) to `cpus`, to keep
/// the generator off the server's cores in an isolation experiment.
pub fn pin_self(cpus: &[usize]) -> Result<()> {
    // SAFETY: cpu_set_t is plain data; CPU_SET stays in bounds (checked above);
    // sched_setaffinity reads the set we pass.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for &c in cpus {
            libc::CPU_SET(c, &mut set);
        }
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(std::io::Error::last_os_error()).context("sched_setaffinity");
        }
    }
    Ok(())
}

/// Busy ticks of the whole machine from the first line of /proc/stat:
/// user, nice, system, irq, softirq (idle, iowait and steal left out).
pub fn parse_machine_busy_ticks(stat: &str) -> Option<u64> {
    let line = stat.lines().next()?;
    let mut f = line.split_ascii_whitespace();
    if f.next()? != "cpu" {
        return None;
    }
    let v: Vec<u64> = f.take(7).map(|x| x.parse().ok()).collect::<Option<_>>()?;
    if v.len() < 7 {
        return None;
    }
    Some(v[0] + v[1] + v[2] + v[5] + v[6])
}

fn machine_busy_seconds() -> Option<f64> {
    let text = fs::read_to_string("/proc/stat").ok()?;
    Some(parse_machine_busy_ticks(&text)? as f64 / clock_ticks())
}

/// CPU seconds spent during one run.
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuUse {
    pub server: Option<f64>,
    pub generator: f64,
    /// Everything else on the box (other builds, tests): the noise gauge.
    pub other: Option<f64>,
    /// Server memory at the end of the run, and its peak so far (MiB).
    pub server_rss_mib: Option<f64>,
    pub server_peak_rss_mib: Option<f64>,
}

/// CPU readings around one run.
pub struct CpuProbe {
    pid: Option<u32>,
    server0: Option<f64>,
    gen0: f64,
    machine0: Option<f64>,
}

impl CpuProbe {
    pub fn start(pid: Option<u32>) -> CpuProbe {
        CpuProbe {
            pid,
            server0: pid.and_then(|p| process_cpu_seconds(p).ok()),
            gen0: self_cpu_seconds(),
            machine0: machine_busy_seconds(),
        }
    }

    pub fn finish(&self) -> CpuUse {
        let server = match (self.pid, self.server0) {
            (Some(p), Some(s0)) => process_cpu_seconds(p).ok().map(|s1| s1 - s0),
            _ => None,
        };
        let generator = self_cpu_seconds() - self.gen0;
        let other = match (self.machine0, machine_busy_seconds()) {
            (Some(m0), Some(m1)) => Some((m1 - m0 - generator - server.unwrap_or(0.0)).max(0.0)),
            _ => None,
        };
        let (server_rss_mib, server_peak_rss_mib) = match self.pid {
            Some(p) => process_rss_mib(p),
            None => (None, None),
        };
        CpuUse {
            server,
            generator,
            other,
            server_rss_mib,
            server_peak_rss_mib,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields() {
        let s =
            "1234 (nats server) S 1 1234 1234 0 -1 4194560 1000 0 0 0 250 75 0 0 20 0 8 0 100 0 0";
        assert_eq!(parse_stat_ticks(s), Some((250, 75)));
        let odd = "99 (a) b) (c) R 1 2 3 4 5 6 7 8 9 10 11 12 0 0 0";
        assert_eq!(parse_stat_ticks(odd), Some((11, 12)));
        assert_eq!(parse_stat_ticks("garbage"), None);
        assert_eq!(parse_stat_ticks("1 (x) S 1 2"), None);
    }

    #[test]
    fn status_rss() {
        let s = "Name:\tnats-server\nVmHWM:\t   20480 kB\nVmRSS:\t   10240 kB\n";
        assert_eq!(parse_status_rss_kib(s), (Some(10240), Some(20480)));
        assert_eq!(parse_status_rss_kib("Name: x\n"), (None, None));
        let (rss, _) = process_rss_mib(std::process::id());
        assert!(rss.unwrap() > 0.0);
    }

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpu_list("1").unwrap(), vec![1]);
        assert_eq!(parse_cpu_list("0-1").unwrap(), vec![0, 1]);
        assert_eq!(parse_cpu_list("0,2-3").unwrap(), vec![0, 2, 3]);
        assert!(parse_cpu_list("").is_err());
        assert!(parse_cpu_list("3-1").is_err());
        assert!(parse_cpu_list("x").is_err());
        assert!(parse_cpu_list("99999").is_err());
    }

    #[test]
    fn machine_stat() {
        let s = "cpu  100 5 50 1000 20 3 2 7 0 0\ncpu0 50 2 25 500 10 1 1 3 0 0\n";
        assert_eq!(parse_machine_busy_ticks(s), Some(160));
        assert_eq!(parse_machine_busy_ticks("cpu 1 2\n"), None);
        assert_eq!(parse_machine_busy_ticks("intr 1 2 3 4 5 6 7 8\n"), None);
        assert!(machine_busy_seconds().is_some());
    }

    #[test]
    fn net_tcp_table() {
        let t = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
   0: 0100007F:37AE 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 55501 1 0000000000000000 100 0 0 10 0\n\
   1: 0100007F:37AE 0100007F:D2A4 01 00000000:00000000 00:00000000 00000000  1000        0 55777 1 0000000000000000 20 4 30 10 -1\n\
   2: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1 0000000000000000 100 0 0 10 0\n";
        assert_eq!(listening_inodes(t, 0x37AE), vec![55501]);
        assert_eq!(listening_inodes(t, 8080), vec![4242]);
        assert!(listening_inodes(t, 1).is_empty());
    }

    #[test]
    fn own_process_is_measurable() {
        let me = std::process::id();
        assert!(process_cpu_seconds(me).unwrap() >= 0.0);
        let mut x = 0u64;
        for i in 0..2_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        assert!(self_cpu_seconds() > 0.0);
    }

    #[test]
    fn finds_our_own_listener() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        assert_eq!(find_listener_pid(port).unwrap(), std::process::id());
    }
}
