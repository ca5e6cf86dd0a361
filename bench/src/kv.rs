//! `kv-put` and `kv-get`: a JetStream key/value bucket driven the way the
//! Go client's `kv.Put` and `kv.Get` do it (gobench's `kv-put`/`kv-get`).
//!
//! Set-up, not timed: a fresh bucket `--bucket` (`BENCH`), i.e. the stream
//! `KV_<bucket>` on `$KV.<bucket>.>` configured as `nats.go`'s
//! `CreateKeyValue` does (history 1, rollups allowed, deletes denied, direct
//! gets allowed, discard new, file storage, one replica); for `kv-get` one
//! put per key. Timed: each of the `--pubs` clients (1) does one operation
//! at a time on key `k%07d` = `(client·7919 + i) mod --keys` (gobench's key
//! names and order): a put is a request to `$KV.<bucket>.<key>` answered by
//! a PubAck, a get a request with an empty body to
//! `$JS.API.DIRECT.GET.KV_<bucket>.$KV.<bucket>.<key>` answered by an HMSG
//! whose payload must be `--size` bytes. Every operation's latency goes
//! into the histogram. The bucket is deleted afterwards.

use crate::consume::parse_status;
use crate::js::{self, inbox_token, parse_puback, PubAck};
use crate::procstat::CpuProbe;
use crate::proto::{parse_u64, Conn, Event, ReadOutcome};
use crate::reqrep::{merge_timed, new_hist, Timed};
use crate::runner::{
    check_payload, join_all, pub_frame, ready_channel, spawn_worker, split, subscribe, sum,
    wait_ready, Ctl, Gate, Progress, Ready, RunConfig, Scenario, Target,
};
use crate::stats::{Latency, Raw, RunResult};
use anyhow::{bail, Context, Result};
use hdrhistogram::Histogram;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// The stream behind bucket `bucket`.
pub fn bucket_stream(bucket: &str) -> String {
    format!("KV_{bucket}")
}

/// Bucket names the clients accept: letters, digits, `_` and `-`.
pub fn valid_bucket(bucket: &str) -> bool {
    !bucket.is_empty()
        && bucket
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// The stream configuration `nats.go` sends for `CreateKeyValue` with
/// history 1, file storage and one replica.
pub fn bucket_stream_config(bucket: &str) -> serde_json::Value {
    serde_json::json!({
        "name": bucket_stream(bucket),
        "subjects": [format!("$KV.{bucket}.>")],
        "retention": "limits",
        "max_consumers": -1,
        "max_msgs": -1,
        "max_bytes": -1,
        "max_age": 0,
        "max_msgs_per_subject": 1,
        "max_msg_size": -1,
        "discard": "new",
        "storage": "file",
        "num_replicas": 1,
        "duplicate_window": 120_000_000_000u64,
        "allow_rollup_hdrs": true,
        "deny_delete": true,
        "allow_direct": true,
        "mirror_direct": false,
    })
}

/// Gobench's key names: `k0000042`.
pub fn key(i: usize) -> String {
    format!("k{i:07}")
}

/// The subject of every key, put (`$KV.B.k…`) or direct get.
fn key_subjects(cfg: &RunConfig) -> Vec<String> {
    let b = &cfg.bucket;
    (0..cfg.keys.max(1))
        .map(|i| match cfg.scenario {
            Scenario::KvGet => format!("$JS.API.DIRECT.GET.KV_{b}.$KV.{b}.{}", key(i)),
            _ => format!("$KV.{b}.{}", key(i)),
        })
        .collect()
}

/// A connection doing one request at a time on its own inbox.
struct Client {
    conn: Conn,
    prefix: String,
    next: u64,
    /// ` <size>\r\n<payload>\r\n`, or ` 0\r\n\r\n` for a get.
    tail: Vec<u8>,
    frame: Vec<u8>,
    size: usize,
    get: bool,
}

impl Client {
    fn connect(cfg: &RunConfig, t: &Target, get: bool) -> Result<Client> {
        // Direct gets answer with headers: the client must take HMSG.
        let mut conn =
            Conn::connect_opts(&t.url, "bench-kv", 64 * 1024, cfg.connect_timeout, true)?;
        check_payload(&conn, cfg.size)?;
        conn.set_capture(true);
        let prefix = format!("_INBOX.{}.", inbox_token());
        subscribe(
            &mut conn,
            &format!("{prefix}*"),
            None,
            1,
            cfg.connect_timeout,
        )?;
        let tail = if get {
            b" 0\r\n\r\n".to_vec()
        } else {
            let f = pub_frame("x", None, cfg.size);
            let mut t = format!(" {}\r\n", cfg.size).into_bytes();
            t.extend_from_slice(&f[f.len() - cfg.size - 2..]);
            t
        };
        Ok(Client {
            conn,
            prefix,
            next: 0,
            tail,
            frame: Vec::with_capacity(256 + cfg.size),
            size: cfg.size,
            get,
        })
    }

    /// One put or get on `subject`, checked; returns when the reply is in.
    fn op(&mut self, subject: &str, timeout: Duration) -> Result<()> {
        self.next += 1;
        let n = self.next;
        self.frame.clear();
        self.frame.extend_from_slice(b"PUB ");
        self.frame.extend_from_slice(subject.as_bytes());
        self.frame.push(b' ');
        self.frame.extend_from_slice(self.prefix.as_bytes());
        self.frame.extend_from_slice(n.to_string().as_bytes());
        self.frame.extend_from_slice(&self.tail);
        self.conn.write_all(&self.frame)?;
        let t0 = Instant::now();
        let (prefix, size, get) = (self.prefix.as_bytes(), self.size, self.get);
        let mut answer: Option<Result<()>> = None;
        while answer.is_none() {
            let r = self.conn.read_some(&mut |ev| {
                let Event::Msg {
                    sid: 1,
                    subject: s,
                    payload,
                    hdr,
                    ..
                } = ev
                else {
                    return;
                };
                let to = s.strip_prefix(prefix).and_then(|x| parse_u64(x).ok());
                if to != Some(n) {
                    answer.get_or_insert_with(|| Err(anyhow::anyhow!("a reply to no request")));
                    return;
                }
                answer.get_or_insert_with(|| check_reply(get, size, hdr, payload));
            })?;
            if answer.is_some() {
                break;
            }
            if r == ReadOutcome::Closed {
                bail!("server closed the connection{}", self.conn.err_suffix());
            }
            if t0.elapsed() > timeout {
                bail!("{subject}: no reply within {timeout:?}");
            }
        }
        answer.unwrap_or(Ok(()))
    }
}

/// A put's PubAck must carry no error; a get's reply must be the value
/// (no status) of `size` bytes.
pub fn check_reply(get: bool, size: usize, hdr: usize, payload: &[u8]) -> Result<()> {
    if !get {
        return match parse_puback(payload) {
            PubAck::Stored { .. } => Ok(()),
            PubAck::Failed(e) => bail!("put failed: {e}"),
        };
    }
    if let Some(s) = parse_status(&payload[..hdr.min(payload.len())]) {
        bail!("get failed: status {} {}", s.code, s.text);
    }
    if hdr == 0 {
        bail!("get: reply without headers (not a direct get answer)");
    }
    let value = payload.len().saturating_sub(hdr);
    if value != size {
        bail!("get: value of {value} bytes, expected {size}");
    }
    Ok(())
}

/// Creates the bucket (and fills it for kv-get), runs the clients, deletes it.
pub fn run(cfg: &RunConfig, t: &Target) -> Result<RunResult> {
    let stream = bucket_stream(&cfg.bucket);
    let setup = || -> Result<()> {
        js::recreate_stream(cfg, t, &stream, &bucket_stream_config(&cfg.bucket))
            .with_context(|| format!("creating bucket {}", cfg.bucket))?;
        if cfg.scenario == Scenario::KvGet {
            let mut c = Client::connect(cfg, t, false)?;
            let b = &cfg.bucket;
            for i in 0..cfg.keys.max(1) {
                c.op(&format!("$KV.{b}.{}", key(i)), cfg.idle_timeout)
                    .context("filling the bucket")?;
            }
        }
        Ok(())
    };
    let r = match setup().with_context(|| format!("{}: setting up", t.url)) {
        Ok(()) => measure(cfg, t),
        Err(e) => Err(e),
    };
    if let Err(e) = js::delete_stream_named(cfg, t, &stream) {
        eprintln!(
            "{}: warning: bucket {} not deleted: {e:#}",
            t.label, cfg.bucket
        );
    }
    r
}

#[derive(Default)]
struct KvStats {
    hist: Option<Histogram<u64>>,
    start: Option<Instant>,
    end: Option<Instant>,
}

impl Timed for KvStats {
    fn parts(&self) -> (Option<&Histogram<u64>>, Option<Instant>, Option<Instant>) {
        (self.hist.as_ref(), self.start, self.end)
    }
}

fn measure(cfg: &RunConfig, t: &Target) -> Result<RunResult> {
    let ctl = Arc::new(Ctl::default());
    let gate = Gate::new();
    let (tx, rx) = ready_channel();
    let clients = cfg.pubs.max(1);
    let subjects = Arc::new(key_subjects(cfg));
    let sent: Vec<Arc<AtomicU64>> = (0..clients).map(|_| Arc::default()).collect();
    let done: Vec<Arc<AtomicU64>> = (0..clients).map(|_| Arc::default()).collect();
    let mut handles = Vec::new();
    for i in 0..clients {
        let (cfg, t, gate, ctl) = (cfg.clone(), t.clone(), gate.clone(), ctl.clone());
        let (s, d, subjects) = (sent[i].clone(), done[i].clone(), subjects.clone());
        let n = cfg.msgs.map(|m| split(m, clients, i));
        handles.push(spawn_worker(format!("kv-{i}"), &tx, move |ready, st| {
            worker(
                &cfg,
                &t,
                i,
                n,
                &subjects[..],
                &gate,
                &ctl,
                (&s, &d),
                ready,
                st,
            )
        }));
    }
    if let Err(e) = wait_ready(&rx, clients, cfg.connect_timeout * 2) {
        ctl.abort.store(true, Ordering::Relaxed);
        gate.open(false);
        join_all(handles);
        return Err(e.context("setting up KV clients"));
    }
    thread::sleep(cfg.settle);

    let probe = CpuProbe::start(t.pid);
    gate.open(true);
    let mut progress = Progress::new(&t.label, cfg.progress);
    while !handles.iter().all(|h| h.is_finished()) {
        thread::sleep(Duration::from_millis(20));
        let d = sum(&done);
        progress.tick(sum(&sent), d, d);
    }
    let out = join_all(handles);
    let cpu = probe.finish();
    progress.finish();

    let (hist, elapsed_s) = merge_timed(&out);
    let sent_n = sum(&sent);
    let mut r = RunResult::from_raw(Raw {
        label: t.label.clone(),
        scenario: cfg.scenario.name().into(),
        url: t.url.to_string(),
        server_pid: t.pid,
        size: cfg.size,
        pubs: clients,
        subs: 0,
        sent: sent_n,
        // Operations that succeeded (put stored, get returned the value).
        received: sum(&done),
        expected: sent_n,
        elapsed_s,
        server_cpu_s: cpu.server,
        gen_cpu_s: cpu.generator,
        other_cpu_s: cpu.other,
        server_rss_mib: cpu.server_rss_mib,
        server_peak_rss_mib: cpu.server_peak_rss_mib,
        latency: (!hist.is_empty()).then(|| Latency::from_ns(&hist)),
        errors: out.iter().filter_map(|o| o.error.clone()).collect(),
    });
    r.rate_on_received();
    Ok(r)
}

#[allow(clippy::too_many_arguments)]
fn worker(
    cfg: &RunConfig,
    t: &Target,
    idx: usize,
    n: Option<u64>,
    subjects: &[String],
    gate: &Gate,
    ctl: &Ctl,
    (sent, done): (&AtomicU64, &AtomicU64),
    ready: &mut Ready,
    st: &mut KvStats,
) -> Result<()> {
    let mut c = Client::connect(cfg, t, cfg.scenario == Scenario::KvGet)?;
    ready.ok();
    if !gate.wait() {
        return Ok(());
    }
    let hist = st.hist.insert(new_hist());
    let start = Instant::now();
    st.start = Some(start);
    let deadline = cfg.duration.map(|d| start + d);
    let total = n.unwrap_or(u64::MAX);
    let mut k = idx.wrapping_mul(7919) % subjects.len();
    let mut ok = 0u64;
    while ok < total && !ctl.aborted() {
        if deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
        let t0 = Instant::now();
        sent.store(ok + 1, Ordering::Relaxed);
        c.op(&subjects[k], cfg.idle_timeout)
            .with_context(|| format!("after {ok} operations"))?;
        let now = Instant::now();
        let ns = now.saturating_duration_since(t0).as_nanos();
        let _ = hist.record((ns.min(60_000_000_000) as u64).max(1));
        ok += 1;
        done.store(ok, Ordering::Relaxed);
        st.end = Some(now);
        k += 1;
        if k == subjects.len() {
            k = 0;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_config() {
        let c = bucket_stream_config("BENCH");
        assert_eq!(c["name"], "KV_BENCH");
        assert_eq!(c["subjects"][0], "$KV.BENCH.>");
        assert_eq!(c["max_msgs_per_subject"], 1);
        assert_eq!(c["allow_rollup_hdrs"], true);
        assert_eq!(c["deny_delete"], true);
        assert_eq!(c["allow_direct"], true);
        assert_eq!(c["discard"], "new");
        assert_eq!(c["storage"], "file");
        assert_eq!(c["num_replicas"], 1);
        assert!(valid_bucket("BENCH") && valid_bucket("a-b_9"));
        assert!(
            !valid_bucket("")
                && !valid_bucket("a.b")
                && !valid_bucket("a*")
                && !valid_bucket("a b")
        );
    }

    #[test]
    fn keys() {
        assert_eq!(key(0), "k0000000");
        assert_eq!(key(999), "k0000999");
    }

    #[test]
    fn replies() {
        assert!(check_reply(false, 3, 0, br#"{"stream":"KV_BENCH","seq":4}"#).is_ok());
        let e = check_reply(false, 3, 0, br#"{"error":{"code":503,"description":"x"}}"#);
        assert!(e.unwrap_err().to_string().contains("put failed"));

        let h = b"NATS/1.0\r\nNats-Stream: KV_BENCH\r\nNats-Subject: $KV.BENCH.k0000001\r\nNats-Sequence: 2\r\n\r\n";
        let mut msg = h.to_vec();
        msg.extend_from_slice(b"abc");
        assert!(check_reply(true, 3, h.len(), &msg).is_ok());
        let e = check_reply(true, 4, h.len(), &msg).unwrap_err().to_string();
        assert!(e.contains("3 bytes, expected 4"), "{e}");
        let nf = b"NATS/1.0 404 Message Not Found\r\n\r\n";
        let e = check_reply(true, 3, nf.len(), nf).unwrap_err().to_string();
        assert!(e.contains("404"), "{e}");
        assert!(check_reply(true, 3, 0, b"abc").is_err());
    }
}
