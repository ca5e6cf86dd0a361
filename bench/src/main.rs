//! broker-edge-bench: a load generator that speaks the NATS wire protocol
//! itself, so the same binary drives Broker Edge and nats-server and every
//! performance claim can be a side-by-side ratio from one run.

mod compare;
mod conns;
mod consume;
mod diskprobe;
mod js;
mod kv;
mod procstat;
mod proto;
mod reqrep;
mod runner;
mod scenarios;
mod spawn;
mod stats;
mod units;

use anyhow::{bail, Result};
use clap::Parser;
use proto::ServerUrl;
use runner::{RunConfig, Scenario, SubServer, Target};
use stats::RunResult;
use std::time::Duration;

#[derive(Parser, Debug)]
#[command(
    name = "broker-edge-bench",
    version,
    about = "NATS load generator: pub, sub, pubsub, fanout, queue, reqrep, js-pub-async, js-pub-sync, js-consume, kv-put, kv-get, conns; disk-probe",
    after_help = "Examples:\n  \
    broker-edge-bench pubsub --size 16 --msgs 2000000\n  \
    broker-edge-bench fanout --subs 4 --duration 5s --json\n  \
    broker-edge-bench queue --url nats://127.0.0.1:4222 --compare nats://127.0.0.1:4223 --rounds 5\n  \
    broker-edge-bench reqrep --size 128 --msgs 20000\n  \
    broker-edge-bench js-pub-async --size 1KiB --msgs 100000 --window 256\n  \
    broker-edge-bench js-pub-sync --size 128 --msgs 5000\n  \
    broker-edge-bench js-consume --size 128 --msgs 200000 --fetch 100\n  \
    broker-edge-bench kv-put --size 128 --msgs 20000 --keys 1000\n  \
    broker-edge-bench kv-get --size 128 --msgs 20000 --keys 1000\n  \
    broker-edge-bench conns --subs 10000 --msgs 20 --size 32KiB --spawn-a nats-server --compare nats://127.0.0.1:4223 --spawn-b 'broker-edge -p 4223' --rounds 1\n  \
    broker-edge-bench disk-probe --dir /tmp/store\n\n\
    Server CPU per message is read from /proc for a local server (the process\n\
    listening on the URL's port, or --pid-a/--pid-b). Ratios are always B/A."
)]
struct Cli {
    #[arg(value_enum)]
    scenario: Scenario,
    /// Server A.
    #[arg(long, default_value = "nats://127.0.0.1:4222")]
    url: String,
    /// pubsub, fanout, queue: connect the subscribers to this server and
    /// the publishers to --url (e.g. a leaf link's hub and its leaf). The
    /// run waits until probes published through --url reach the
    /// subscribers; server CPU is then the sum of both servers (each one
    /// separately under "servers" in the JSON). Default: --url.
    #[arg(long, value_name = "URL")]
    sub_url: Option<String>,
    /// The --sub-url server's PID for CPU accounting (default: found from
    /// the port).
    #[arg(long, requires = "sub_url")]
    sub_pid: Option<u32>,
    /// Payload size: 16, 128, 1KiB, 1k, … (default 128; conns: 32KiB).
    #[arg(long, value_parser = units::parse_size)]
    size: Option<usize>,
    /// Total messages (requests for reqrep, operations for kv-*), split
    /// across publishers; js-consume: messages filled in and consumed;
    /// conns: messages of the burst per connection (default 20).
    #[arg(long, short = 'n')]
    msgs: Option<u64>,
    /// Run for this long (10s, 500ms, 1m); with --msgs, whichever ends first.
    #[arg(long, value_parser = units::parse_duration)]
    duration: Option<Duration>,
    /// Publishers (requesters for reqrep, clients for kv-*).
    #[arg(long)]
    pubs: Option<usize>,
    /// Subscribers (responders for reqrep, fetchers for js-consume;
    /// conns: the connections, default 10000).
    #[arg(long)]
    subs: Option<usize>,
    #[arg(long, default_value = "bench.subject")]
    subject: String,
    /// Queue group name for `queue` and the reqrep responders.
    #[arg(long, default_value = "bench-q")]
    queue: String,
    /// Bytes per publisher write.
    #[arg(long, default_value = "64KiB", value_parser = units::parse_size)]
    batch: usize,
    /// Bytes per subscriber read.
    #[arg(long, default_value = "1MiB", value_parser = units::parse_size)]
    read_buf: usize,
    /// Give up on silent subscribers this long after publishing ends.
    #[arg(long, default_value = "5s", value_parser = units::parse_duration)]
    idle_timeout: Duration,
    /// Pause after subscribing, before publishing.
    #[arg(long, default_value = "50ms", value_parser = units::parse_duration)]
    settle: Duration,
    /// reqrep: busy-poll the sockets (non-blocking reads, yielding the CPU
    /// between tries) instead of sleeping in `read`, so the generator's own
    /// wake-ups drop out of the measured latency and the servers' remain.
    #[arg(long)]
    spin: bool,
    /// js-*: the file stream created before and deleted after the run.
    #[arg(long, default_value = "BENCH")]
    stream: String,
    /// js-pub-async: PubAcks outstanding per publisher (js-pub-sync: 1;
    /// js-consume: while filling the stream).
    #[arg(long)]
    window: Option<usize>,
    /// js-consume: messages asked for per pull request (gobench's Fetch(100)).
    #[arg(long, default_value_t = 100)]
    fetch: usize,
    /// kv-*: distinct keys, used in turn (kv-get puts one value per key first).
    #[arg(long, default_value_t = 1000)]
    keys: usize,
    /// kv-*: the bucket (stream KV_<bucket>) created before and deleted after the run.
    #[arg(long, default_value = "BENCH")]
    bucket: String,
    /// disk-probe: directory to probe (put it on the stores' filesystem).
    #[arg(long, default_value = ".")]
    dir: std::path::PathBuf,
    /// disk-probe: pwrite(4 KiB) + fdatasync iterations.
    #[arg(long, default_value_t = 500)]
    iters: usize,
    /// disk-probe: bytes for the sequential-write measurement.
    #[arg(long, default_value = "256MiB", value_parser = units::parse_size)]
    seq_size: usize,
    /// disk-probe: bytes per sequential write.
    #[arg(long, default_value = "1MiB", value_parser = units::parse_size)]
    seq_block: usize,
    /// Server B: run A and B in turn and print B/A ratios.
    #[arg(long, value_name = "URL2")]
    compare: Option<String>,
    /// Rounds for --compare (A B A B …).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Skip the unrecorded warm-up run per side in --compare.
    #[arg(long)]
    no_warmup: bool,
    /// Server A's PID for CPU accounting (default: found from the port).
    #[arg(long)]
    pid_a: Option<u32>,
    /// Server B's PID for CPU accounting (default: found from the port).
    #[arg(long)]
    pid_b: Option<u32>,
    /// Start server A with this command (run through sh), stop it after.
    /// conns raises the generator's RLIMIT_NOFILE first (for 2 descriptors
    /// per connection), and spawned servers inherit it.
    #[arg(long)]
    spawn_a: Option<String>,
    /// Start server B with this command, stop it after.
    #[arg(long)]
    spawn_b: Option<String>,
    /// Where spawned servers' output goes (suffixed -a.log / -b.log).
    #[arg(long)]
    spawn_log: Option<String>,
    /// Pin the generator to these CPUs (e.g. `1`, `0-1`), e.g. to keep it off
    /// a server started with `taskset -c 0`.
    #[arg(long)]
    cpus: Option<String>,
    /// Print the results as JSON on stdout instead of the table.
    #[arg(long)]
    json: bool,
    /// No progress line.
    #[arg(long, short = 'q')]
    quiet: bool,
}

/// One run of the configured scenario against one server.
pub fn run_once(cfg: &RunConfig, t: &Target) -> Result<RunResult> {
    match cfg.scenario {
        Scenario::Reqrep => reqrep::run(cfg, t),
        Scenario::JsPubAsync | Scenario::JsPubSync => js::run(cfg, t),
        Scenario::JsConsume => consume::run(cfg, t),
        Scenario::KvPut | Scenario::KvGet => kv::run(cfg, t),
        Scenario::DiskProbe => bail!("disk-probe talks to no server"),
        Scenario::Conns => bail!("conns runs through conns::run"),
        _ => scenarios::run(cfg, t),
    }
}

fn config(cli: &Cli) -> Result<RunConfig> {
    let s = cli.scenario;
    let (dp, ds) = s.default_clients();
    let (mut pubs, mut subs) = (cli.pubs.unwrap_or(dp), cli.subs.unwrap_or(ds));
    let js = matches!(s, Scenario::JsPubAsync | Scenario::JsPubSync);
    let kv = matches!(s, Scenario::KvPut | Scenario::KvGet);
    match s {
        Scenario::Pub => subs = 0,
        Scenario::Sub | Scenario::JsConsume => pubs = 0,
        _ if js || kv => subs = 0,
        _ => {}
    }
    if cli.fetch == 0 {
        bail!("--fetch must be at least 1");
    }
    if cli.keys == 0 {
        bail!("--keys must be at least 1");
    }
    if kv && !kv::valid_bucket(&cli.bucket) {
        bail!(
            "--bucket {:?}: letters, digits, '_' and '-' only",
            cli.bucket
        );
    }
    let window = match (s, cli.window) {
        (Scenario::JsPubSync, Some(w)) if w != 1 => {
            bail!("js-pub-sync waits for every ack (window 1); use js-pub-async --window {w}")
        }
        (Scenario::JsPubSync, _) => 1,
        (_, Some(0)) => bail!("--window must be at least 1"),
        (_, w) => w.unwrap_or(256),
    };
    if !matches!(s, Scenario::Sub | Scenario::JsConsume) && pubs == 0 {
        bail!("{} needs at least one publisher", s.name());
    }
    if s != Scenario::Pub && !js && !kv && subs == 0 {
        bail!("{} needs at least one subscriber", s.name());
    }
    if s == Scenario::Conns {
        pubs = 1;
        if subs > 1_000_000 {
            bail!("conns: at most 1,000,000 connections");
        }
    } else if pubs > 10_000 || subs > 10_000 {
        bail!("at most 10000 publishers and subscribers (one thread each)");
    }
    let msgs = match (cli.msgs, cli.duration) {
        (None, None) => Some(s.default_msgs()),
        // The stream has to be filled with some number of messages.
        (None, Some(_)) if s == Scenario::JsConsume => Some(s.default_msgs()),
        (m, _) => m,
    };
    Ok(RunConfig {
        scenario: s,
        size: cli
            .size
            .unwrap_or(if s == Scenario::Conns { 32 * 1024 } else { 128 }),
        msgs,
        duration: cli.duration,
        pubs,
        subs,
        subject: cli.subject.clone(),
        queue: cli.queue.clone(),
        batch: cli.batch.max(1),
        read_buf: cli.read_buf.max(4096),
        idle_timeout: cli.idle_timeout,
        settle: cli.settle,
        spin: cli.spin,
        stream: cli.stream.clone(),
        window,
        fetch: cli.fetch,
        keys: cli.keys,
        bucket: cli.bucket.clone(),
        connect_timeout: Duration::from_secs(5),
        progress: !cli.quiet,
    })
}

/// Resolves a side's PID: explicit flag, then the spawned child, then
/// whoever listens on the URL's port if it is local.
fn target(
    url: ServerUrl,
    explicit: Option<u32>,
    spawned: Option<&spawn::Spawned>,
    label: &str,
    quiet: bool,
) -> Target {
    let pid = explicit.or(spawned.map(|s| s.pid())).or_else(|| {
        if !url.is_local() {
            return None;
        }
        match procstat::find_listener_pid(url.port) {
            Ok(p) => Some(p),
            Err(e) => {
                if !quiet {
                    let flag = match label {
                        "sub" => "--sub-pid".to_string(),
                        l => format!("--pid-{}", l.to_lowercase()),
                    };
                    eprintln!("{label}: no server CPU figures ({e:#}); pass {flag}");
                }
                None
            }
        }
    });
    Target {
        url,
        pid,
        label: label.to_string(),
        sub: None,
    }
}

/// `--sub-url` with its PID (explicit, else the owner of its local port).
fn sub_server(cli: &Cli) -> Result<Option<SubServer>> {
    let Some(s) = &cli.sub_url else {
        return Ok(None);
    };
    if !matches!(
        cli.scenario,
        Scenario::Pubsub | Scenario::Fanout | Scenario::Queue
    ) {
        bail!(
            "--sub-url applies to pubsub, fanout and queue, not {}",
            cli.scenario.name()
        );
    }
    if cli.compare.is_some() {
        bail!("--sub-url does not combine with --compare (run each pair in turn)");
    }
    let url = ServerUrl::parse(s)?;
    let t = target(url, cli.sub_pid, None, "sub", cli.quiet);
    Ok(Some(SubServer {
        url: t.url,
        pid: t.pid,
    }))
}

fn main() {
    if let Err(e) = real_main() {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn real_main() -> Result<()> {
    let cli = Cli::parse();
    if cli.scenario == Scenario::DiskProbe {
        let p = diskprobe::run(&cli.dir, cli.iters, cli.seq_size as u64, cli.seq_block)?;
        if cli.json {
            println!("{}", serde_json::to_string_pretty(&p)?);
        } else {
            diskprobe::print(&p);
        }
        return Ok(());
    }
    let cfg = config(&cli)?;
    let sub = sub_server(&cli)?;
    let url_a = ServerUrl::parse(&cli.url)?;
    let url_b = cli.compare.as_deref().map(ServerUrl::parse).transpose()?;
    if cfg.scenario == Scenario::Conns {
        // Before spawning: the servers inherit the raised limit.
        if let Some(note) = conns::raise_nofile(cfg.subs)? {
            eprintln!("{note}");
        }
    }
    let log = |side: &str| cli.spawn_log.as_ref().map(|p| format!("{p}-{side}.log"));
    let spawned_a = match &cli.spawn_a {
        Some(cmd) => Some(spawn::spawn(cmd, &url_a, log("a").as_deref())?),
        None => None,
    };
    let spawned_b = match (&cli.spawn_b, &url_b) {
        (Some(cmd), Some(u)) => Some(spawn::spawn(cmd, u, log("b").as_deref())?),
        (Some(_), None) => bail!("--spawn-b needs --compare URL2"),
        _ => None,
    };
    // After spawning, so the servers do not inherit the generator's CPUs.
    if let Some(list) = &cli.cpus {
        procstat::pin_self(&procstat::parse_cpu_list(list)?)?;
    }
    let mut a = target(url_a, cli.pid_a, spawned_a.as_ref(), "A", cli.quiet);
    a.sub = sub;
    if cfg.scenario == Scenario::Conns {
        let b = url_b.map(|ub| target(ub, cli.pid_b, spawned_b.as_ref(), "B", cli.quiet));
        let r = conns::run(&cfg, &a, b.as_ref(), cli.rounds)?;
        if cli.json {
            println!("{}", serde_json::to_string(&r)?);
        } else {
            conns::print(&r);
        }
        drop(spawned_b);
        drop(spawned_a);
        return Ok(());
    }
    match url_b {
        None => {
            let r = run_once(&cfg, &a)?;
            if cli.json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                stats::print_table(std::slice::from_ref(&r));
            }
            if r.lost > 0 {
                bail!("{} of {} messages lost", r.lost, r.expected);
            }
            if !r.errors.is_empty() {
                bail!("the run hit errors (listed above)");
            }
        }
        Some(ub) => {
            let b = target(ub, cli.pid_b, spawned_b.as_ref(), "B", cli.quiet);
            let c = compare::run(&cfg, &a, &b, cli.rounds, !cli.no_warmup)?;
            if cli.json {
                println!("{}", serde_json::to_string_pretty(&c)?);
            } else {
                compare::print(&c);
            }
        }
    }
    // Spawned servers stop here, on drop.
    drop(spawned_b);
    drop(spawned_a);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cli(args: &[&str]) -> Result<Cli> {
        let mut a = vec!["broker-edge-bench"];
        a.extend(args);
        Ok(Cli::try_parse_from(a)?)
    }

    #[test]
    fn sub_url_defaults_to_none() {
        let c = cli(&["pubsub"]).unwrap();
        assert!(c.sub_url.is_none() && c.sub_pid.is_none());
        assert!(sub_server(&c).unwrap().is_none());
    }

    #[test]
    fn sub_url_with_explicit_pid() {
        let c = cli(&[
            "fanout",
            "--url",
            "nats://127.0.0.1:7001",
            "--sub-url",
            "nats://10.0.0.9:7002",
            "--sub-pid",
            "4242",
            "-q",
        ])
        .unwrap();
        let s = sub_server(&c).unwrap().unwrap();
        assert_eq!(s.url, ServerUrl::parse("nats://10.0.0.9:7002").unwrap());
        assert_eq!(s.pid, Some(4242));
        // A remote URL without --sub-pid has no CPU figures, and no error.
        let c = cli(&["queue", "--sub-url", "nats://10.0.0.9:7002", "-q"]).unwrap();
        assert_eq!(sub_server(&c).unwrap().unwrap().pid, None);
    }

    #[test]
    fn sub_url_refused_where_it_has_no_meaning() {
        assert!(
            cli(&["pubsub", "--sub-pid", "1"]).is_err(),
            "--sub-pid needs --sub-url"
        );
        for s in ["pub", "reqrep", "js-pub-async", "kv-put", "conns"] {
            let c = cli(&[s, "--sub-url", "nats://127.0.0.1:1"]).unwrap();
            assert!(sub_server(&c).is_err(), "{s}");
        }
        let c = cli(&[
            "pubsub",
            "--sub-url",
            "nats://127.0.0.1:1",
            "--compare",
            "nats://127.0.0.1:2",
        ])
        .unwrap();
        assert!(sub_server(&c).is_err());
        let c = cli(&["pubsub", "--sub-url", "gopher://x:1"]).unwrap();
        assert!(sub_server(&c).is_err());
    }
}
