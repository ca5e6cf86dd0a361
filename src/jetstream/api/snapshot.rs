//! `$JS.API.STREAM.SNAPSHOT` and `RESTORE`, the protocol of `nats stream
//! backup/restore`: chunks with flow-control acks one way, chunks each
//! answered the other way (`jetstream::snapshot` makes and reads the
//! archive).

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::{json, Value};

use super::stream::{info_value, state_value};
use super::{error, typed, Answer, Req};
use crate::jetstream::config::{self, now_ns, StreamConfig};
use crate::jetstream::errors::ApiError;
use crate::jetstream::snapshot;
use crate::jetstream::store::{self, StreamMeta};
use crate::jetstream::stream::Stream;
use crate::jetstream::{placement, JetStream};
use crate::shard::sink::{Handler, Owned};
use crate::shard::Shard;

const SNAPSHOT: &str = "stream_snapshot_response";
const RESTORE: &str = "stream_restore_response";
const CREATE: &str = "stream_create_response";

/// The reference's limits and timers.
const CHUNK_DEFAULT: usize = 128 << 10;
const WINDOW_DEFAULT: usize = 8 << 20;
const ACK_TIMEOUT: Duration = Duration::from_secs(5);
const INTEREST_WAIT: Duration = Duration::from_secs(2);
const RESTORE_STALL: Duration = Duration::from_secs(5);

#[derive(Deserialize)]
struct SnapReq {
    #[serde(default)]
    deliver_subject: String,
    #[serde(default)]
    chunk_size: usize,
    #[serde(default)]
    window_size: usize,
    #[serde(default)]
    no_consumers: bool,
    #[serde(default)]
    jsck: bool,
}

fn snapshot_error(e: ApiError) -> Answer {
    error(SNAPSHOT, e)
}

pub async fn snapshot(shard: &Rc<Shard>, js: &JetStream, req: &Req, name: &str) -> Answer {
    let Some(meta) = js.meta.as_ref() else {
        return Answer::None;
    };
    let Some(body) = req.json() else {
        return snapshot_error(ApiError::bad_request());
    };
    let Some(owner) = meta.owner(req.acc, name) else {
        return snapshot_error(ApiError::stream_not_found());
    };
    let r: SnapReq = match serde_json::from_slice(body) {
        Ok(r) => r,
        Err(e) => return snapshot_error(config::json_error(e)),
    };
    let _ = (r.no_consumers, r.jsck); // no consumers yet; health is checked by recovery
    let ds = r.deliver_subject.clone();
    if !crate::subject::is_valid_literal(ds.as_bytes()) {
        return snapshot_error(ApiError::new_pub(400, 10015, "deliver subject not valid"));
    }
    let chunk = if r.chunk_size == 0 {
        CHUNK_DEFAULT
    } else {
        r.chunk_size.clamp(1024, 1 << 20)
    };
    let window = if r.window_size == 0 {
        WINDOW_DEFAULT
    } else {
        r.window_size.clamp(1024, 32 << 20)
    }
    .max(chunk);
    let (acc, n) = (req.acc, name.to_string());
    let r = crate::shard::bus::call(&shard.g, owner, move |s: Rc<Shard>| async move {
        let st =
            s.js.get()
                .and_then(|js| js.stream(acc, &n))
                .ok_or_else(ApiError::stream_not_found)?;
        // What is acknowledged is in the files before they are copied.
        st.log
            .flush()
            .await
            .map_err(|e| ApiError::new_pub(500, 10064, format!("snapshot failed: {e}")))?;
        let resp = typed(
            SNAPSHOT,
            json!({"config": st.cfg(), "state": state_value(&st, None, false)}),
        );
        crate::runtime::spawn_local(send_chunks(s.clone(), st, ds, chunk, window / chunk)).detach();
        Ok(resp)
    })
    .await
    .unwrap_or_else(|| Err(ApiError::stream_not_found()));
    match r {
        Ok(v) => Answer::Json(v),
        Err(e) => snapshot_error(e),
    }
}

/// Streams the archive to `deliver` with at most `slots` unacknowledged
/// chunks, then the end-of-stream status.
async fn send_chunks(
    shard: Rc<Shard>,
    st: Rc<Stream>,
    deliver: String,
    chunk: usize,
    slots: usize,
) {
    let acc = st.acc;
    let status = |s: &str| {
        let h = format!("NATS/1.0 {s}\r\n\r\n");
        shard.publish_internal(acc, deliver.as_bytes(), None, Some(h.as_bytes()), b"");
    };
    // The client subscribes once it has the API response (its inbox
    // wildcard, already there, would swallow the chunks).
    let start = Instant::now();
    while !shard.has_exact_interest(acc, deliver.as_bytes()) {
        if start.elapsed() > INTEREST_WAIT {
            return;
        }
        crate::runtime::sleep(Duration::from_millis(5)).await;
    }
    let id = crate::auth::new_nonce();
    let ack_base = format!("$JS.SNAPSHOT.ACK.{}.{id}", st.name);
    let (ack_tx, ack_rx) = async_channel::unbounded::<()>();
    let h: Handler = Rc::new(move |_m| {
        let _ = ack_tx.try_send(());
    });
    let sub = shard.subscribe_internal(acc, &format!("{ack_base}.>"), None, h);
    if let Some(b) = shard.barrier() {
        b.wait().await;
    }
    let (tx, rx) = async_channel::bounded::<Vec<u8>>(4);
    let (done_tx, done_rx) = futures_channel::oneshot::channel();
    let dir = store::log_dir(&st.dir);
    std::thread::Builder::new()
        .name("snapshot".into())
        .spawn(move || {
            let _ = done_tx.send(snapshot::write_archive(&dir, chunk, tx));
        })
        .ok();
    let mut credits = slots.max(1);
    let mut idx = 0u64;
    let mut held: Option<Vec<u8>> = None;
    let outcome: Result<(), &str> = async {
        loop {
            let next = rx.recv().await.ok();
            let Some(c) = held.take() else {
                match next {
                    Some(c) => {
                        held = Some(c);
                        continue;
                    }
                    None => return Ok(()),
                }
            };
            let last = next.is_none();
            if last && c.len() < chunk {
                // The last, partial chunk goes without an ack subject.
                shard.publish_internal(acc, deliver.as_bytes(), None, None, &c);
                return Ok(());
            }
            while let Ok(()) = ack_rx.try_recv() {
                credits += 1;
            }
            while credits == 0 {
                match crate::runtime::timeout(ACK_TIMEOUT, ack_rx.recv()).await {
                    Some(Ok(())) => credits += 1,
                    _ => return Err("408 No Flow Response"),
                }
            }
            if !shard.has_interest(acc, deliver.as_bytes()) {
                return Err("408 No Interest");
            }
            credits -= 1;
            idx += 1;
            let reply = format!("{ack_base}.{}.{idx}", c.len());
            shard.publish_internal(acc, deliver.as_bytes(), Some(reply.as_bytes()), None, &c);
            match next {
                Some(n) => held = Some(n),
                None => return Ok(()),
            }
        }
    }
    .await;
    // Ends the producer if it is still writing.
    drop(rx);
    shard.unsubscribe_internal(&sub);
    match outcome {
        Err(s) => status(s),
        Ok(()) => match done_rx.await {
            Ok(Ok(_)) => status("204"),
            Ok(Err(e)) => status(&format!("500 {e}")),
            Err(_) => status("500 snapshot failed"),
        },
    }
}

#[derive(Deserialize)]
struct RestoreReq {
    #[serde(default)]
    config: Option<Value>,
}

fn restore_error(e: ApiError) -> Answer {
    error(RESTORE, e)
}

pub async fn restore(shard: &Rc<Shard>, js: &JetStream, req: &Req, name: &str) -> Answer {
    let Some(meta) = js.meta.as_ref() else {
        return Answer::None;
    };
    let Some(body) = req.json() else {
        return restore_error(ApiError::bad_request());
    };
    let r: RestoreReq = match serde_json::from_slice(body) {
        Ok(r) => r,
        Err(e) => return restore_error(config::json_error(e)),
    };
    let mut cfg: StreamConfig = match r.config.map(serde_json::from_value).transpose() {
        Ok(Some(c)) => c,
        Ok(None) => match config::parse(b"{}", false) {
            Ok(c) => c,
            Err(e) => return restore_error(e),
        },
        Err(e) => return restore_error(config::json_error(e)),
    };
    if cfg.name.is_empty() {
        cfg.name = name.to_string();
    }
    if cfg.name != name {
        return restore_error(ApiError::stream_mismatch());
    }
    if name.contains('/') || name.contains('\\') {
        return restore_error(ApiError::name_path_separators());
    }
    if let Err(e) = cfg.normalize(shard.g.opts.max_payload) {
        return restore_error(e);
    }
    let key = (req.acc, name.to_string());
    if meta.registry.borrow().contains_key(&key) || meta.creating.borrow().contains(&key) {
        return restore_error(ApiError::new_pub(
            400,
            10130,
            "stream name already in use, cannot restore",
        ));
    }
    if let Err(e) = super::stream::check_limits(js, meta, req.acc, name, &cfg) {
        return restore_error(e);
    }
    if meta.overlaps(req.acc, name, &cfg.subjects) {
        return restore_error(ApiError::subject_overlap());
    }
    let owner = placement::choose(&meta.counts());
    meta.creating.borrow_mut().insert(key.clone());
    let acc = req.acc;
    let account = shard.g.accounts.name(acc).to_string();
    let r = crate::shard::bus::call(&shard.g, owner, move |s: Rc<Shard>| async move {
        start_restore(&s, acc, account, cfg)
    })
    .await;
    match r {
        Some(Ok(deliver)) => Answer::Json(typed(RESTORE, json!({"deliver_subject": deliver}))),
        Some(Err(e)) => {
            meta.creating.borrow_mut().remove(&key);
            restore_error(e)
        }
        None => {
            meta.creating.borrow_mut().remove(&key);
            restore_error(ApiError::create_failed("shard unavailable"))
        }
    }
}

/// A restore in progress on the owning shard.
struct Restoring {
    tx: Option<async_channel::Sender<Vec<u8>>>,
    sub: Option<crate::client::SubRef>,
    last: Cell<Instant>,
    done: Cell<bool>,
}

/// Subscribes the deliver subject and starts unpacking; returns the
/// subject the client sends chunks to.
fn start_restore(
    shard: &Rc<Shard>,
    acc: u32,
    account: String,
    cfg: StreamConfig,
) -> Result<String, ApiError> {
    let js = shard
        .js
        .get()
        .cloned()
        .ok_or_else(|| ApiError::create_failed("JetStream is not running here"))?;
    let id = crate::auth::new_nonce();
    let deliver = format!("$JS.SNAPSHOT.RESTORE.{}.{id}", cfg.name);
    let tmp = js.cfg.root.join(".restore").join(&id);
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(restore_failed)?;
    let (tx, rx) = async_channel::unbounded::<Vec<u8>>();
    let (done_tx, done_rx) = futures_channel::oneshot::channel();
    let t = tmp.clone();
    let max_bytes = restore_room(&js.cfg);
    std::thread::Builder::new()
        .name("restore".into())
        .spawn(move || {
            let _ = done_tx.send(snapshot::read_archive(&t, rx, max_bytes));
        })
        .map_err(restore_failed)?;
    let state = Rc::new(RefCell::new(Restoring {
        tx: Some(tx),
        sub: None,
        last: Cell::new(Instant::now()),
        done: Cell::new(false),
    }));
    let done_rx = Rc::new(RefCell::new(Some(done_rx)));
    let w = Rc::downgrade(shard);
    let st2 = state.clone();
    let (tmp2, cfg2, account2) = (tmp.clone(), cfg.clone(), account.clone());
    let h: Handler = Rc::new(move |m| {
        let Some(shard) = w.upgrade() else { return };
        let o = Owned::of(m);
        let r = st2.borrow();
        r.last.set(Instant::now());
        if !o.payload.is_empty() {
            if let Some(tx) = &r.tx {
                let _ = tx.try_send(o.payload.to_vec());
            }
            if let Some(reply) = &o.reply {
                shard.publish_internal(acc, reply, None, None, b"");
            }
            return;
        }
        // The end: finish on the shard, answer the empty request.
        drop(r);
        let mut r = st2.borrow_mut();
        if r.done.replace(true) {
            return;
        }
        r.tx = None;
        if let Some(sub) = r.sub.take() {
            shard.unsubscribe_internal(&sub);
        }
        let Some(done) = done_rx.borrow_mut().take() else {
            return;
        };
        let (tmp, cfg, account) = (tmp2.clone(), cfg2.clone(), account2.clone());
        crate::runtime::spawn_local(async move {
            let answer = match done.await {
                Ok(Ok(_)) => finish_restore(&shard, acc, account, cfg, &tmp).await,
                Ok(Err(e)) => Err(restore_failed(e)),
                Err(_) => Err(restore_failed("the archive reader stopped")),
            };
            let _ = std::fs::remove_dir_all(&tmp);
            let v = match answer {
                Ok(v) => v,
                Err(e) => typed(CREATE, json!({ "error": e })),
            };
            if let Some(reply) = o.reply {
                shard.publish_internal(acc, &reply, None, None, v.to_string().as_bytes());
            }
        })
        .detach();
    });
    let sub = shard.subscribe_internal(acc, &deliver, None, h);
    state.borrow_mut().sub = Some(sub);
    // Abandon a restore whose client went quiet, as the reference does.
    let w = Rc::downgrade(shard);
    let name = cfg.name.clone();
    crate::runtime::spawn_local(async move {
        loop {
            crate::runtime::sleep(Duration::from_secs(1)).await;
            let Some(shard) = w.upgrade() else { return };
            let mut r = state.borrow_mut();
            if r.done.get() {
                return;
            }
            if r.last.get().elapsed() > RESTORE_STALL {
                tracing::warn!("JetStream: restore of stream {name} is stalled; abandoned");
                r.done.set(true);
                r.tx = None;
                if let Some(sub) = r.sub.take() {
                    shard.unsubscribe_internal(&sub);
                }
                let _ = std::fs::remove_dir_all(&tmp);
                let key_name = name.clone();
                crate::runtime::spawn_local(release_name(shard.clone(), acc, key_name)).detach();
                return;
            }
        }
    })
    .detach();
    Ok(deliver)
}

/// How many bytes a restore may unpack: what the server's file store
/// limit leaves, or 90% of the store volume's free space.
fn restore_room(cfg: &crate::jetstream::Config) -> u64 {
    let free = crate::monitor::free_disk(&cfg.root) / 10 * 9;
    if cfg.max_store > 0 {
        let used = cfg
            .usage
            .total(None, crate::jetstream::config::StorageType::File);
        (cfg.max_store as u64).saturating_sub(used).min(free)
    } else {
        free
    }
}

fn restore_failed(e: impl std::fmt::Display) -> ApiError {
    ApiError::new_pub(500, 10062, format!("restore failed: {e}"))
}

/// Moves the unpacked log into place, opens the stream, registers it.
async fn finish_restore(
    shard: &Rc<Shard>,
    acc: u32,
    account: String,
    cfg: StreamConfig,
    tmp: &std::path::Path,
) -> Result<Value, ApiError> {
    let js = shard
        .js
        .get()
        .cloned()
        .ok_or_else(|| restore_failed("JetStream is not running here"))?;
    let name = cfg.name.clone();
    let dir = store::stream_dir(&js.cfg.root, &account, &name);
    let opened: Result<Rc<Stream>, ApiError> = async {
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(restore_failed)?;
        std::fs::rename(tmp.join("msgs"), store::log_dir(&dir)).map_err(restore_failed)?;
        let meta = StreamMeta {
            account,
            config: cfg.clone(),
            created: now_ns(),
            shard: shard.id,
        };
        store::save_meta(&dir, &meta).map_err(restore_failed)?;
        Stream::open(shard, acc, dir.clone(), meta, js.cfg.durability)
            .await
            .map_err(restore_failed)
    }
    .await;
    let st = match opened {
        Ok(st) => st,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&dir);
            release_name(shard.clone(), acc, name).await;
            return Err(e);
        }
    };
    js.streams
        .borrow_mut()
        .insert((acc, name.clone()), st.clone());
    if let Some(b) = shard.barrier() {
        b.wait().await;
    }
    let owner = shard.id;
    let c = cfg.clone();
    crate::shard::bus::call(&shard.g, 0, move |s: Rc<Shard>| async move {
        if let Some(m) = s.js.get().and_then(|j| j.meta.as_ref()) {
            m.creating.borrow_mut().remove(&(acc, c.name.clone()));
            m.registry.borrow_mut().insert(
                (acc, c.name.clone()),
                crate::jetstream::meta::Entry {
                    shard: owner,
                    config: c,
                },
            );
        }
    })
    .await;
    Ok(typed(CREATE, info_value(shard, &st, true, None, false)))
}

/// Frees a name reserved for a restore that did not complete.
async fn release_name(shard: Rc<Shard>, acc: u32, name: String) {
    crate::shard::bus::call(&shard.g, 0, move |s: Rc<Shard>| async move {
        if let Some(m) = s.js.get().and_then(|j| j.meta.as_ref()) {
            m.creating.borrow_mut().remove(&(acc, name));
        }
    })
    .await;
}
