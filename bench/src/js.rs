//! JetStream publish scenarios: `js-pub-async` and `js-pub-sync`.
//!
//! Before the run a fresh file-storage stream (`--stream`, on `--subject`)
//! is created through the JetStream API (`$JS.API.STREAM.CREATE.<name>`),
//! after it the stream is deleted so the disk is reclaimed. Each publisher
//! connection subscribes to its own inbox wildcard `_INBOX.<token>.*` and
//! publishes `PUB <subject> _INBOX.<token>.<n> <size>` with at most
//! `--window` PubAcks outstanding (1 for `js-pub-sync`), writing as many
//! frames per `write` as the window and `--batch` allow. The `<n>` in the
//! ack's subject says which publish it answers, so the publish → ack latency
//! of every message goes into the histogram however the server orders acks.

use crate::procstat::CpuProbe;
use crate::proto::{parse_u64, Conn, Event, ReadOutcome};
use crate::reqrep::{merge_timed, new_hist, Timed};
use crate::runner::{
    check_payload, join_all, pub_frame, ready_channel, spawn_worker, split, subscribe, sum,
    wait_ready, Ctl, Gate, Progress, Ready, RunConfig, Target,
};
use crate::stats::{Latency, Raw, RunResult};
use anyhow::{bail, Context, Result};
use hdrhistogram::Histogram;
use std::collections::hash_map::RandomState;
use std::collections::VecDeque;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// Stream create and delete can wait on the disk (delete removes every block).
pub const API_TIMEOUT: Duration = Duration::from_secs(30);

/// What one PubAck said.
#[derive(Debug, PartialEq, Eq)]
pub enum PubAck {
    /// `{"stream":"BENCH","seq":N}` (maybe with `"duplicate"`, `"domain"`).
    Stored { seq: u64 },
    /// An ack carrying `"error"`, or something that is not a PubAck at all;
    /// the text is the payload, cut to 300 bytes.
    Failed(String),
}

/// Parses a PubAck payload without a JSON library: it runs once per
/// message, and all the bench needs is "error or not" and the sequence.
pub fn parse_puback(payload: &[u8]) -> PubAck {
    let failed =
        || PubAck::Failed(String::from_utf8_lossy(&payload[..payload.len().min(300)]).into());
    if memchr::memmem::find(payload, b"\"error\"").is_some() {
        return failed();
    }
    let Some(at) = memchr::memmem::find(payload, b"\"seq\"") else {
        return failed();
    };
    let rest = payload[at + 5..].trim_ascii_start();
    let Some(rest) = rest.strip_prefix(b":") else {
        return failed();
    };
    let rest = rest.trim_ascii_start();
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    match parse_u64(&rest[..digits]) {
        Ok(seq) => PubAck::Stored { seq },
        Err(_) => failed(),
    }
}

/// Checks a JetStream API reply: the JSON value, or the server's error.
pub fn check_api_reply(payload: &[u8]) -> Result<serde_json::Value> {
    let v: serde_json::Value = serde_json::from_slice(payload).with_context(|| {
        format!(
            "reply is not JSON: {}",
            String::from_utf8_lossy(&payload[..payload.len().min(300)])
        )
    })?;
    if let Some(e) = v.get("error") {
        let desc = e
            .get("description")
            .and_then(|d| d.as_str())
            .unwrap_or("no description");
        bail!(
            "{desc} (code {}, err_code {})",
            e.get("code").unwrap_or(&serde_json::Value::Null),
            e.get("err_code").unwrap_or(&serde_json::Value::Null)
        );
    }
    Ok(v)
}

/// A random token for inbox subjects, so two benches never share one.
pub fn inbox_token() -> String {
    let mut h = RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    format!("{:016x}", h.finish())
}

/// A connection for JetStream API requests, answered on its own inbox.
pub struct Api {
    conn: Conn,
    prefix: String,
    next: u64,
}

impl Api {
    pub fn connect(cfg: &RunConfig, t: &Target) -> Result<Api> {
        let mut conn = Conn::connect(&t.url, "bench-js-api", 64 * 1024, cfg.connect_timeout)?;
        conn.set_capture(true);
        let prefix = format!("_INBOX.{}.", inbox_token());
        subscribe(
            &mut conn,
            &format!("{prefix}*"),
            None,
            1,
            cfg.connect_timeout,
        )?;
        Ok(Api {
            conn,
            prefix,
            next: 0,
        })
    }

    /// Publishes `body` to `subject` and returns the reply's payload.
    pub fn request(&mut self, subject: &str, body: &[u8], timeout: Duration) -> Result<Vec<u8>> {
        self.next += 1;
        let reply = format!("{}{}", self.prefix, self.next);
        let mut frame = format!("PUB {subject} {reply} {}\r\n", body.len()).into_bytes();
        frame.extend_from_slice(body);
        frame.extend_from_slice(b"\r\n");
        self.conn.write_all(&frame)?;
        let deadline = Instant::now() + timeout;
        let mut got: Option<Vec<u8>> = None;
        while got.is_none() {
            let r = self.conn.read_some(&mut |ev| {
                if let Event::Msg {
                    sid: 1,
                    subject: s,
                    payload,
                    ..
                } = ev
                {
                    if s == reply.as_bytes() {
                        got = Some(payload.to_vec());
                    }
                }
            })?;
            if got.is_some() {
                break;
            }
            if r == ReadOutcome::Closed {
                bail!(
                    "{subject}: server closed the connection{}",
                    self.conn.err_suffix()
                );
            }
            if Instant::now() > deadline {
                bail!("{subject}: no reply within {timeout:?} (is JetStream enabled, -js?)");
            }
        }
        Ok(got.unwrap_or_default())
    }
}

pub fn create_stream(cfg: &RunConfig, t: &Target) -> Result<()> {
    let body = serde_json::json!({
        "name": cfg.stream,
        "subjects": [cfg.subject],
        "storage": "file",
    });
    recreate_stream(cfg, t, &cfg.stream, &body)
        .with_context(|| format!("creating stream {} on {}", cfg.stream, cfg.subject))
}

/// Checks that JetStream answers, deletes stream `name` if an interrupted
/// run left it behind, and creates it with the configuration `body`.
pub fn recreate_stream(
    cfg: &RunConfig,
    t: &Target,
    name: &str,
    body: &serde_json::Value,
) -> Result<()> {
    let mut api = Api::connect(cfg, t)?;
    // Fails fast, and says why, where JetStream is off.
    let info = api.request("$JS.API.INFO", b"", cfg.connect_timeout)?;
    check_api_reply(&info).context("JetStream account info")?;
    // "Not found" is fine.
    let _ = api.request(&format!("$JS.API.STREAM.DELETE.{name}"), b"", API_TIMEOUT);
    let reply = api.request(
        &format!("$JS.API.STREAM.CREATE.{name}"),
        body.to_string().as_bytes(),
        API_TIMEOUT,
    )?;
    check_api_reply(&reply)?;
    Ok(())
}

fn delete_stream(cfg: &RunConfig, t: &Target) -> Result<()> {
    delete_stream_named(cfg, t, &cfg.stream)
}

/// Deletes stream `name`, on a fresh connection (a setup one would have
/// sat unread through the run).
pub fn delete_stream_named(cfg: &RunConfig, t: &Target, name: &str) -> Result<()> {
    let mut api = Api::connect(cfg, t)?;
    let reply = api.request(&format!("$JS.API.STREAM.DELETE.{name}"), b"", API_TIMEOUT)?;
    check_api_reply(&reply).with_context(|| format!("deleting stream {name}"))?;
    Ok(())
}

#[derive(Default)]
struct PubStats {
    hist: Option<Histogram<u64>>,
    /// First publish.
    start: Option<Instant>,
    /// Last PubAck.
    end: Option<Instant>,
    /// PubAcks that carried an error, and the first one's text.
    failed: u64,
    first_failure: Option<String>,
    /// Acks for no outstanding publish (unknown or repeated `<n>`).
    strays: u64,
}

impl Timed for PubStats {
    fn parts(&self) -> (Option<&Histogram<u64>>, Option<Instant>, Option<Instant>) {
        (self.hist.as_ref(), self.start, self.end)
    }
}

/// Creates the stream, runs the publishers, deletes the stream.
pub fn run(cfg: &RunConfig, t: &Target) -> Result<RunResult> {
    create_stream(cfg, t).with_context(|| format!("{}: setting up", t.url))?;
    let r = measure(cfg, t);
    if let Err(e) = delete_stream(cfg, t) {
        eprintln!(
            "{}: warning: stream {} not deleted: {e:#}",
            t.label, cfg.stream
        );
    }
    r
}

/// Fills the (existing) stream with `cfg.msgs` messages of `cfg.size`
/// bytes, `cfg.window` PubAcks outstanding, one publisher, no progress
/// line: the untimed set-up of the consume scenarios. Returns the seconds
/// it took.
pub fn fill(cfg: &RunConfig, t: &Target) -> Result<f64> {
    let mut c = cfg.clone();
    c.pubs = 1;
    c.duration = None;
    c.progress = false;
    c.settle = Duration::ZERO;
    let want = c.msgs.unwrap_or(0);
    let r = measure(&c, t)?;
    if let Some(e) = r.errors.first() {
        bail!("filling stream {}: {e}", cfg.stream);
    }
    if r.received != want {
        bail!(
            "filling stream {}: {} of {want} messages stored",
            cfg.stream,
            r.received
        );
    }
    Ok(r.elapsed_s)
}

fn measure(cfg: &RunConfig, t: &Target) -> Result<RunResult> {
    let ctl = Arc::new(Ctl::default());
    let gate = Gate::new();
    let (tx, rx) = ready_channel();
    let pubs = cfg.pubs.max(1);
    let sent: Vec<Arc<AtomicU64>> = (0..pubs).map(|_| Arc::default()).collect();
    let acked: Vec<Arc<AtomicU64>> = (0..pubs).map(|_| Arc::default()).collect();
    let mut handles = Vec::new();
    for i in 0..pubs {
        let (cfg, t, gate, ctl) = (cfg.clone(), t.clone(), gate.clone(), ctl.clone());
        let (s, a) = (sent[i].clone(), acked[i].clone());
        let n = cfg.msgs.map(|m| split(m, pubs, i));
        handles.push(spawn_worker(
            format!("js-pub-{i}"),
            &tx,
            move |ready, st| publisher(&cfg, &t, n, &gate, &ctl, (&s, &a), ready, st),
        ));
    }
    if let Err(e) = wait_ready(&rx, pubs, cfg.connect_timeout * 2) {
        ctl.abort.store(true, Ordering::Relaxed);
        gate.open(false);
        join_all(handles);
        return Err(e.context("setting up publishers"));
    }
    thread::sleep(cfg.settle);

    let probe = CpuProbe::start(t.pid);
    gate.open(true);
    let mut progress = Progress::new(&t.label, cfg.progress);
    while !handles.iter().all(|h| h.is_finished()) {
        thread::sleep(Duration::from_millis(20));
        let a = sum(&acked);
        progress.tick(sum(&sent), a, a);
    }
    let out = join_all(handles);
    let cpu = probe.finish();
    progress.finish();

    let (hist, elapsed_s) = merge_timed(&out);
    let sent_n = sum(&sent);
    let errors = out.iter().filter_map(|o| o.error.clone()).collect();
    let mut r = RunResult::from_raw(Raw {
        label: t.label.clone(),
        scenario: cfg.scenario.name().into(),
        url: t.url.to_string(),
        server_pid: t.pid,
        size: cfg.size,
        pubs,
        subs: 0,
        sent: sent_n,
        // Stored messages: PubAcks without an error.
        received: sum(&acked),
        expected: sent_n,
        elapsed_s,
        server_cpu_s: cpu.server,
        gen_cpu_s: cpu.generator,
        other_cpu_s: cpu.other,
        server_rss_mib: cpu.server_rss_mib,
        server_peak_rss_mib: cpu.server_peak_rss_mib,
        latency: (!hist.is_empty()).then(|| Latency::from_ns(&hist)),
        errors,
    });
    r.rate_on_received();
    Ok(r)
}

/// Publishes with at most `cfg.window` acks outstanding and reads the acks.
#[allow(clippy::too_many_arguments)]
fn publisher(
    cfg: &RunConfig,
    t: &Target,
    n: Option<u64>,
    gate: &Gate,
    ctl: &Ctl,
    (sent, acked): (&AtomicU64, &AtomicU64),
    ready: &mut Ready,
    st: &mut PubStats,
) -> Result<()> {
    let mut conn = Conn::connect(&t.url, "bench-js-pub", 64 * 1024, cfg.connect_timeout)?;
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
    ready.ok();
    if !gate.wait() {
        return Ok(());
    }
    // Frame = head + <n> + size line + body.
    let head = format!("PUB {} {prefix}", cfg.subject).into_bytes();
    let size_line = format!(" {}\r\n", cfg.size).into_bytes();
    let one = pub_frame("x", None, cfg.size);
    let body = &one[one.len() - cfg.size - 2..];
    let frame_max = head.len() + 20 + size_line.len() + body.len();
    let window = cfg.window.max(1) as u64;
    let total = n.unwrap_or(u64::MAX);
    let mut out: Vec<u8> = Vec::with_capacity(cfg.batch.max(frame_max) + frame_max);
    let mut num = itoa_buf();

    // Publish time of message `base + i` at `pending[i]`; None once acked.
    let mut pending: VecDeque<Option<Instant>> = VecDeque::with_capacity(window as usize * 2);
    let mut base = 0u64;
    let mut next = 0u64;
    let mut outstanding = 0u64;
    let mut ok_acks = 0u64;
    let hist = st.hist.insert(new_hist());
    let start = Instant::now();
    st.start = Some(start);
    let deadline = cfg.duration.map(|d| start + d);
    let mut sending = true;
    let mut last_activity = start;
    loop {
        // Write as many frames as the window allows, `--batch` bytes a write.
        while sending && next < total && outstanding < window {
            if ctl.aborted() || deadline.is_some_and(|d| Instant::now() >= d) {
                sending = false;
                break;
            }
            out.clear();
            let first = next;
            while next < total
                && outstanding < window
                && (out.is_empty() || out.len() + frame_max <= cfg.batch)
            {
                out.extend_from_slice(&head);
                out.extend_from_slice(fmt_u64(&mut num, next));
                out.extend_from_slice(&size_line);
                out.extend_from_slice(body);
                next += 1;
                outstanding += 1;
            }
            let t0 = Instant::now();
            conn.write_all(&out)?;
            pending.extend((first..next).map(|_| Some(t0)));
            sent.store(next, Ordering::Relaxed);
            last_activity = t0;
        }
        if outstanding == 0 && (!sending || next >= total) {
            break;
        }
        let mut now: Option<Instant> = None;
        let mut got = 0u64;
        let r = conn.read_some(&mut |ev| {
            let Event::Msg {
                sid: 1,
                subject,
                payload,
                ..
            } = ev
            else {
                return;
            };
            let at = *now.get_or_insert_with(Instant::now);
            let idx = subject
                .strip_prefix(prefix.as_bytes())
                .and_then(|s| parse_u64(s).ok())
                .and_then(|k| k.checked_sub(base));
            let Some(t0) = idx.and_then(|i| pending.get_mut(i as usize)?.take()) else {
                st.strays += 1;
                return;
            };
            got += 1;
            outstanding -= 1;
            let ns = at
                .saturating_duration_since(t0)
                .as_nanos()
                .min(60_000_000_000) as u64;
            let _ = hist.record(ns.max(1));
            st.end = Some(at);
            match parse_puback(payload) {
                PubAck::Stored { .. } => ok_acks += 1,
                PubAck::Failed(e) => {
                    st.failed += 1;
                    st.first_failure.get_or_insert(e);
                }
            }
            while pending.front().is_some_and(|p| p.is_none()) {
                pending.pop_front();
                base += 1;
            }
        })?;
        if got > 0 {
            acked.store(ok_acks, Ordering::Relaxed);
            last_activity = now.unwrap_or(last_activity);
        }
        if r == ReadOutcome::Closed {
            bail!(
                "server closed the connection after {ok_acks} acks{}",
                conn.err_suffix()
            );
        }
        if got == 0 && last_activity.elapsed() > cfg.idle_timeout {
            bail!(
                "no PubAck for {:?}: {outstanding} outstanding after {ok_acks} acks{}",
                cfg.idle_timeout,
                conn.err_suffix()
            );
        }
    }
    if st.failed > 0 {
        bail!(
            "{} PubAcks carried an error; the first: {}",
            st.failed,
            st.first_failure.as_deref().unwrap_or("")
        );
    }
    if st.strays > 0 {
        bail!("{} acks matched no outstanding publish", st.strays);
    }
    Ok(())
}

/// Scratch space for formatting a u64 without allocating.
fn itoa_buf() -> [u8; 20] {
    [0; 20]
}

fn fmt_u64(buf: &mut [u8; 20], mut v: u64) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    &buf[i..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pubacks() {
        assert_eq!(
            parse_puback(br#"{"stream":"BENCH","seq":1}"#),
            PubAck::Stored { seq: 1 }
        );
        assert_eq!(
            parse_puback(br#"{"stream":"BENCH", "seq" : 9999999999999999999 }"#),
            PubAck::Stored {
                seq: 9_999_999_999_999_999_999
            }
        );
        assert_eq!(
            parse_puback(br#"{"stream":"S","seq":42,"duplicate":true}"#),
            PubAck::Stored { seq: 42 }
        );
        assert_eq!(
            parse_puback(br#"{"stream":"S","domain":"hub","seq":7}"#),
            PubAck::Stored { seq: 7 }
        );
    }

    #[test]
    fn failed_pubacks() {
        let e =
            br#"{"error":{"code":503,"err_code":10077,"description":"maximum messages exceeded"}}"#;
        match parse_puback(e) {
            PubAck::Failed(t) => assert!(t.contains("maximum messages exceeded"), "{t}"),
            other => panic!("{other:?}"),
        }
        // An error wins even beside a sequence.
        assert!(matches!(
            parse_puback(br#"{"stream":"S","seq":3,"error":{"code":500}}"#),
            PubAck::Failed(_)
        ));
        for junk in [
            &b""[..],
            b"{}",
            b"+OK",
            br#"{"stream":"S"}"#,
            br#"{"stream":"S","seq":}"#,
            br#"{"stream":"S","seq":"7"}"#,
            br#"{"stream":"S","seq" 7}"#,
            br#"{"stream":"S","seq":99999999999999999999999}"#,
        ] {
            assert!(
                matches!(parse_puback(junk), PubAck::Failed(_)),
                "{:?}",
                String::from_utf8_lossy(junk)
            );
        }
        let long = [b'x'; 1000];
        match parse_puback(&long) {
            PubAck::Failed(t) => assert_eq!(t.len(), 300),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn api_replies() {
        let ok = br#"{"type":"io.nats.jetstream.api.v1.stream_create_response","config":{"name":"BENCH"}}"#;
        assert_eq!(check_api_reply(ok).unwrap()["config"]["name"], "BENCH");
        let err = br#"{"type":"x","error":{"code":400,"err_code":10058,"description":"stream name already in use with a different configuration"}}"#;
        let e = check_api_reply(err).unwrap_err().to_string();
        assert!(e.contains("already in use") && e.contains("10058"), "{e}");
        assert!(check_api_reply(b"not json").is_err());
        assert!(check_api_reply(br#"{"success":true}"#).is_ok());
    }

    #[test]
    fn numbers() {
        let mut b = itoa_buf();
        for v in [0u64, 7, 10, 255, 1_000_000, u64::MAX] {
            assert_eq!(fmt_u64(&mut b, v), v.to_string().as_bytes());
        }
    }

    #[test]
    fn inbox_tokens_differ() {
        assert_ne!(inbox_token(), inbox_token());
        assert_eq!(inbox_token().len(), 16);
    }
}
