//! `$JS.API.STREAM.*`: create, update, delete, names, list (on shard 0),
//! info and purge (on the owning shard).

use std::rc::Rc;

use serde::Deserialize;
use serde_json::{json, Value};

use super::{error, typed, Answer, Req};
use crate::jetstream::config::{self, go_time, now_ns, StreamConfig};
use crate::jetstream::errors::ApiError;
use crate::jetstream::store::{self, StreamMeta};
use crate::jetstream::stream::Stream;
use crate::jetstream::{placement, JetStream};
use crate::shard::Shard;

const CREATE: &str = "stream_create_response";
const UPDATE: &str = "stream_update_response";
const DELETE: &str = "stream_delete_response";
const NAMES: &str = "stream_names_response";
const LIST: &str = "stream_list_response";
const INFO: &str = "stream_info_response";
const PURGE: &str = "stream_purge_response";

const NAMES_LIMIT: usize = 1024;
const LIST_LIMIT: usize = 256;

fn parse_config(js: &JetStream, req: &Req, name: &str) -> Result<StreamConfig, ApiError> {
    if name.contains('/') || name.contains('\\') {
        return Err(ApiError::name_path_separators());
    }
    // An empty body is an empty config, whose (missing) name does not
    // match the subject's, as the reference answers.
    let cfg = match req.json() {
        Some(body) => config::parse(body, js.cfg.strict)?,
        None => config::parse(b"{}", false)?,
    };
    if cfg.name != name {
        return Err(ApiError::stream_mismatch());
    }
    Ok(cfg)
}

pub async fn create(shard: &Rc<Shard>, js: &JetStream, req: &Req, name: &str) -> Answer {
    answer(CREATE, try_create(shard, js, req, name).await)
}

/// The response, or the error in a response of `kind`.
fn answer(kind: &str, r: Result<Value, ApiError>) -> Answer {
    match r {
        Ok(v) => Answer::Json(v),
        Err(e) => error(kind, e),
    }
}

async fn try_create(
    shard: &Rc<Shard>,
    js: &JetStream,
    req: &Req,
    name: &str,
) -> Result<Value, ApiError> {
    let meta = js.meta.as_ref().ok_or_else(ApiError::stream_not_found)?;
    let mut cfg = parse_config(js, req, name)?;
    if cfg.sealed {
        return Err(ApiError::invalid_config(
            "stream configuration for create can not be sealed",
        ));
    }
    cfg.normalize(shard.g.opts.max_payload)?;
    mirror_origin(meta, req.acc, &mut cfg)?;
    let key = (req.acc, name.to_string());
    let existing = meta
        .registry
        .borrow()
        .get(&key)
        .map(|e| (e.shard, e.config.clone()));
    if let Some((owner, old)) = existing {
        if !old.same_as(&cfg) {
            return Err(ApiError::stream_name_exist());
        }
        // The same config again: answer as a create, change nothing.
        return on_stream(shard, owner, req.acc, name, |s, st| {
            let mut v = info_value(&s, &st, true, None, false);
            v["did_create"] = json!(true);
            Ok(typed(CREATE, v))
        })
        .await;
    }
    if meta.creating.borrow().contains(&key) {
        return Err(ApiError::stream_name_exist());
    }
    check_limits(js, meta, req.acc, name, &cfg)?;
    if meta.source_cycle(req.acc, &cfg) {
        return Err(ApiError::invalid_config("detected cycle"));
    }
    if meta.overlaps(req.acc, name, &cfg.subjects) {
        return Err(ApiError::subject_overlap());
    }
    let owner = placement::choose(&meta.counts());
    meta.creating.borrow_mut().insert(key.clone());
    let account = shard.g.accounts.name(req.acc).to_string();
    let (acc, cfg2) = (req.acc, cfg.clone());
    let r = crate::shard::bus::call(&shard.g, owner, move |s: Rc<Shard>| async move {
        let Some(js) = s.js.get().cloned() else {
            return Err(ApiError::create_failed("JetStream is not running here"));
        };
        let dir = store::stream_dir(&js.cfg.root, &account, &cfg2.name);
        let meta = StreamMeta {
            account,
            config: cfg2,
            created: now_ns(),
            shard: s.id,
        };
        // A leftover directory of a create that never finished goes first.
        let _ = std::fs::remove_dir_all(&dir);
        store::save_meta(&dir, &meta).map_err(ApiError::create_failed)?;
        let name = meta.config.name.clone();
        let st = match Stream::open(&s, acc, dir.clone(), meta, js.cfg.durability).await {
            Ok(st) => st,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(ApiError::create_failed(e));
            }
        };
        js.streams.borrow_mut().insert((acc, name), st.clone());
        // Every shard knows the new subjects before the creator hears back.
        if let Some(b) = s.barrier() {
            b.wait().await;
        }
        let mut v = info_value(&s, &st, true, None, false);
        v["did_create"] = json!(true);
        Ok(typed(CREATE, v))
    })
    .await
    .unwrap_or_else(|| Err(ApiError::create_failed("shard unavailable")));
    meta.creating.borrow_mut().remove(&key);
    if r.is_ok() {
        meta.registry.borrow_mut().insert(
            key,
            crate::jetstream::meta::Entry {
                shard: owner,
                config: cfg,
            },
        );
        advisory(shard, req.acc, name, "create", "CREATED");
    }
    r
}

/// A mirror of a stream in this account: checked against the origin's
/// config when it exists here.
fn mirror_origin(
    meta: &crate::jetstream::meta::Meta,
    acc: u32,
    cfg: &mut StreamConfig,
) -> Result<(), ApiError> {
    let Some(m) = cfg.mirror.as_ref().filter(|m| m.external.is_none()) else {
        return Ok(());
    };
    let origin = meta
        .registry
        .borrow()
        .get(&(acc, m.name.clone()))
        .map(|e| e.config.clone());
    crate::jetstream::source::mirror::check_origin(cfg, origin.as_ref())
}

/// The account's stream count and the reservations (`max_bytes`) of the
/// server and the account, for a stream `name` with `cfg` (an update
/// replaces its own old reservation).
pub fn check_limits(
    js: &JetStream,
    meta: &crate::jetstream::meta::Meta,
    acc: u32,
    name: &str,
    cfg: &StreamConfig,
) -> Result<(), ApiError> {
    let reg = meta.registry.borrow();
    let exists = reg.contains_key(&(acc, name.to_string()));
    if !exists {
        let count = reg.keys().filter(|(a, _)| *a == acc).count() as u64;
        let max = js
            .cfg
            .account_limits
            .get(acc as usize)
            .and_then(|l| l.max_streams);
        if max.is_some_and(|m| count >= m) {
            return Err(ApiError::max_streams());
        }
    }
    let mut server = 0u64;
    let mut account = 0u64;
    for ((a, n), e) in reg.iter() {
        if n == name && *a == acc {
            continue;
        }
        if e.config.storage == cfg.storage && e.config.max_bytes > 0 {
            server += e.config.max_bytes as u64;
            if *a == acc {
                account += e.config.max_bytes as u64;
            }
        }
    }
    let reserve = cfg.max_bytes.max(0) as u64;
    if !crate::jetstream::limits::fits(&js.cfg, acc, cfg.storage, reserve, (server, account)) {
        return Err(match cfg.storage {
            crate::jetstream::config::StorageType::File => ApiError::storage_exceeded(),
            crate::jetstream::config::StorageType::Memory => ApiError::memory_exceeded(),
        });
    }
    Ok(())
}

pub async fn update(shard: &Rc<Shard>, js: &JetStream, req: &Req, name: &str) -> Answer {
    answer(UPDATE, try_update(shard, js, req, name).await)
}

async fn try_update(
    shard: &Rc<Shard>,
    js: &JetStream,
    req: &Req,
    name: &str,
) -> Result<Value, ApiError> {
    let meta = js.meta.as_ref().ok_or_else(ApiError::stream_not_found)?;
    let mut cfg = parse_config(js, req, name)?;
    let key = (req.acc, name.to_string());
    let Some((owner, old)) = meta
        .registry
        .borrow()
        .get(&key)
        .map(|e| (e.shard, e.config.clone()))
    else {
        return Err(ApiError::stream_not_found());
    };
    cfg.normalize(shard.g.opts.max_payload)?;
    mirror_origin(meta, req.acc, &mut cfg)?;
    cfg.check_update(&old)?;
    check_limits(js, meta, req.acc, name, &cfg)?;
    if meta.source_cycle(req.acc, &cfg) {
        return Err(ApiError::invalid_config("detected cycle"));
    }
    if meta.overlaps(req.acc, name, &cfg.subjects) {
        return Err(ApiError::subject_overlap());
    }
    let (cfg2, acc, n) = (cfg.clone(), req.acc, name.to_string());
    let v = crate::shard::bus::call(&shard.g, owner, move |s: Rc<Shard>| async move {
        let st =
            s.js.get()
                .and_then(|js| js.stream(acc, &n))
                .ok_or_else(ApiError::stream_not_found)?;
        let resubscribe = st.cfg().subjects != cfg2.subjects;
        let previous = st.cfg();
        st.set_config(cfg2.clone());
        if let Err(e) = st.save() {
            st.set_config(previous);
            return Err(ApiError::update_failed(e));
        }
        st.log
            .set_limits(cfg2.log_limits())
            .await
            .map_err(ApiError::update_failed)?;
        if resubscribe {
            st.unsubscribe(&s);
            st.subscribe(&s);
            if let Some(b) = s.barrier() {
                b.wait().await;
            }
        }
        Ok(typed(UPDATE, info_value(&s, &st, true, None, false)))
    })
    .await
    .unwrap_or_else(|| Err(ApiError::stream_not_found()))?;
    if let Some(e) = meta.registry.borrow_mut().get_mut(&key) {
        e.config = cfg;
    }
    advisory(shard, req.acc, name, "modify", "UPDATED");
    Ok(v)
}

pub async fn delete(shard: &Rc<Shard>, js: &JetStream, req: &Req, name: &str) -> Answer {
    let meta = match js.meta.as_ref() {
        Some(m) => m,
        None => return Answer::None,
    };
    if let Some(b) = req.json() {
        let empty_obj = serde_json::from_slice::<Value>(b)
            .ok()
            .and_then(|v| v.as_object().map(|o| o.is_empty()))
            .unwrap_or(false);
        if !empty_obj {
            return error(DELETE, ApiError::not_empty_request());
        }
    }
    let key = (req.acc, name.to_string());
    let Some(owner) = meta.owner(req.acc, name) else {
        return error(DELETE, ApiError::stream_not_found());
    };
    let (acc, n) = (req.acc, name.to_string());
    let r = crate::shard::bus::call(&shard.g, owner, move |s: Rc<Shard>| async move {
        let Some(js) = s.js.get().cloned() else {
            return Err(ApiError::stream_not_found());
        };
        let Some(st) = js.streams.borrow_mut().remove(&(acc, n)) else {
            return Err(ApiError::stream_not_found());
        };
        st.unsubscribe(&s);
        st.stop_sources();
        st.stop_consumers(true).await;
        st.forget_usage();
        let _ = st.log.close().await;
        std::fs::remove_dir_all(&st.dir).map_err(ApiError::delete_failed)?;
        if let Some(parent) = st.dir.parent() {
            let _ = store::sync_dir(parent);
        }
        Ok(())
    })
    .await
    .unwrap_or_else(|| Err(ApiError::delete_failed("shard unavailable")));
    match r {
        Ok(()) => {
            meta.registry.borrow_mut().remove(&key);
            advisory(shard, req.acc, name, "delete", "DELETED");
            Answer::Json(typed(DELETE, json!({"success": true})))
        }
        Err(e) => error(DELETE, e),
    }
}

#[derive(Deserialize, Default)]
struct ListReq {
    #[serde(default)]
    offset: i64,
    #[serde(default)]
    subject: Option<String>,
}

fn page<T: Clone>(all: &[T], offset: i64, limit: usize) -> (usize, Vec<T>) {
    let off = (offset.max(0) as usize).min(all.len());
    (off, all[off..(off + limit).min(all.len())].to_vec())
}

/// The account's stream names matching the request's subject filter:
/// (total, offset, this page).
fn listed(
    meta: &crate::jetstream::meta::Meta,
    req: &Req,
    limit: usize,
) -> Result<(usize, usize, Vec<String>), ApiError> {
    let r: ListReq = req.optional()?;
    let all = meta.names(req.acc, r.subject.as_deref().filter(|s| !s.is_empty()));
    let (off, names) = page(&all, r.offset, limit);
    Ok((all.len(), off, names))
}

pub fn names(js: &JetStream, req: &Req) -> Answer {
    let Some(meta) = js.meta.as_ref() else {
        return Answer::None;
    };
    let (total, off, names) = match listed(meta, req, NAMES_LIMIT) {
        Ok(x) => x,
        Err(e) => return error(NAMES, e),
    };
    let streams = if names.is_empty() {
        Value::Null
    } else {
        json!(names)
    };
    Answer::Json(typed(
        NAMES,
        json!({"total": total, "offset": off, "limit": NAMES_LIMIT, "streams": streams}),
    ))
}

pub async fn list(shard: &Rc<Shard>, js: &JetStream, req: &Req) -> Answer {
    let Some(meta) = js.meta.as_ref() else {
        return Answer::None;
    };
    let (total, off, names) = match listed(meta, req, LIST_LIMIT) {
        Ok(x) => x,
        Err(e) => return error(LIST, e),
    };
    // Ask every owner at once, then collect in name order.
    let calls: Vec<_> = names
        .iter()
        .filter_map(|n| meta.owner(req.acc, n).map(|o| (n.clone(), o)))
        .map(|(n, o)| {
            let acc = req.acc;
            crate::shard::bus::call(&shard.g, o, move |s: Rc<Shard>| async move {
                let js = s.js.get()?;
                let st = js.stream(acc, &n)?;
                Some(info_value(&s, &st, false, None, false))
            })
        })
        .collect();
    let mut infos = Vec::new();
    for c in calls {
        if let Some(Some(v)) = c.await {
            infos.push(v);
        }
    }
    Answer::Json(typed(
        LIST,
        json!({"total": total, "offset": off, "limit": LIST_LIMIT, "streams": infos}),
    ))
}

#[derive(Deserialize, Default)]
struct InfoReq {
    #[serde(default)]
    deleted_details: bool,
    #[serde(default)]
    subjects_filter: Option<String>,
    #[serde(default)]
    offset: i64,
}

/// `STREAM.INFO` on the owning shard.
pub fn info(shard: &Shard, st: &Stream, body: &bytes::Bytes) -> Value {
    let req = Req {
        acc: st.acc,
        subject: String::new(),
        reply: bytes::Bytes::new(),
        body: body.clone(),
    };
    let r: InfoReq = match req.optional() {
        Ok(r) => r,
        Err(e) => return super::error_json(INFO, e),
    };
    let mut v = info_value(
        shard,
        st,
        true,
        r.subjects_filter.as_deref().filter(|s| !s.is_empty()),
        r.deleted_details,
    );
    let subjects = v["state"]
        .get("subjects")
        .and_then(|s| s.as_object())
        .map_or(0, |m| m.len());
    let _ = r.offset;
    v["total"] = json!(subjects);
    v["offset"] = json!(0);
    v["limit"] = json!(if subjects > 0 { 100_000 } else { 0 });
    v["cluster"] = json!({"leader": shard.g.server_name});
    if let Some(d) = &shard.g.opts.jetstream_domain {
        v["domain"] = json!(d);
    }
    typed(INFO, v)
}

/// The StreamInfo object: config (with the server's metadata keys when
/// `dynamic`), created, state, ts.
pub fn info_value(
    _shard: &Shard,
    st: &Stream,
    dynamic: bool,
    subjects_filter: Option<&str>,
    deleted: bool,
) -> Value {
    let m = st.meta.borrow();
    let cfg = if dynamic {
        m.config.with_dynamic_metadata()
    } else {
        m.config.clone()
    };
    let mut v = json!({
        "config": cfg,
        "created": go_time(m.created),
        "state": state_value(st, subjects_filter, deleted),
        "ts": go_time(now_ns()),
    });
    drop(m);
    match st.sources_info() {
        Some((true, mut m)) if !m.is_empty() => v["mirror"] = m.swap_remove(0),
        Some((false, s)) => v["sources"] = json!(s),
        _ => {}
    }
    v
}

pub fn state_value(st: &Stream, subjects_filter: Option<&str>, deleted: bool) -> Value {
    let s = st.log.state(deleted);
    let empty = s.msgs == 0;
    let first_seq = if empty && s.last_seq == 0 {
        0
    } else {
        s.first_seq
    };
    let mut v = json!({
        "messages": s.msgs,
        "bytes": s.bytes,
        "first_seq": first_seq,
        "first_ts": go_time(if empty { 0 } else { s.first_ts }),
        "last_seq": s.last_seq,
        "last_ts": go_time(s.last_ts),
        "consumer_count": st.consumers.borrow().len(),
    });
    if s.num_subjects > 0 {
        v["num_subjects"] = json!(s.num_subjects);
    }
    if let Some(f) = subjects_filter {
        let subjects = st.log.subjects(&broker_edge_storage::Filter::one(f));
        if !subjects.is_empty() {
            let map: serde_json::Map<String, Value> = subjects
                .into_iter()
                .map(|(k, n)| (String::from_utf8_lossy(&k).into_owned(), json!(n)))
                .collect();
            v["subjects"] = Value::Object(map);
        }
    }
    if s.num_deleted > 0 {
        v["num_deleted"] = json!(s.num_deleted);
    }
    if let Some(d) = s.deleted.filter(|d| !d.is_empty()) {
        v["deleted"] = json!(d);
    }
    v
}

#[derive(Deserialize, Default)]
struct PurgeReq {
    #[serde(default)]
    filter: Option<String>,
    #[serde(default)]
    seq: u64,
    #[serde(default)]
    keep: u64,
}

/// `STREAM.PURGE` on the owning shard.
pub async fn purge(st: &Stream, body: &bytes::Bytes) -> Value {
    let fail = |e: ApiError| typed(PURGE, json!({"error": e, "purged": 0}));
    let req = Req {
        acc: st.acc,
        subject: String::new(),
        reply: bytes::Bytes::new(),
        body: body.clone(),
    };
    let r: PurgeReq = match req.optional() {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    if r.seq > 0 && r.keep > 0 {
        return fail(ApiError::bad_request());
    }
    let cfg = st.cfg();
    if cfg.sealed {
        return fail(ApiError::sealed());
    }
    if cfg.deny_purge {
        return fail(ApiError::purge_failed("stream purge not permitted"));
    }
    let p = broker_edge_storage::Purge {
        subject: r.filter.filter(|f| !f.is_empty()),
        up_to: (r.seq > 0).then_some(r.seq),
        keep: (r.keep > 0).then_some(r.keep),
    };
    match st.log.purge(p).await {
        Ok(n) => {
            st.report_usage();
            st.after_purge();
            typed(PURGE, json!({"success": true, "purged": n}))
        }
        Err(e) => fail(ApiError::general(e)),
    }
}

/// Runs `f` with the stream on its owning shard.
async fn on_stream<T, F>(
    shard: &Rc<Shard>,
    owner: usize,
    acc: u32,
    name: &str,
    f: F,
) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: FnOnce(Rc<Shard>, Rc<Stream>) -> Result<T, ApiError> + Send + 'static,
{
    let n = name.to_string();
    crate::shard::bus::call(&shard.g, owner, move |s: Rc<Shard>| async move {
        let st =
            s.js.get()
                .and_then(|js| js.stream(acc, &n))
                .ok_or_else(ApiError::stream_not_found)?;
        f(s, st)
    })
    .await
    .unwrap_or_else(|| Err(ApiError::stream_not_found()))
}

/// `$JS.EVENT.ADVISORY.STREAM.<what>.<stream>`.
fn advisory(shard: &Shard, acc: u32, name: &str, action: &str, what: &str) {
    let mut v = json!({
        "type": "io.nats.jetstream.advisory.v1.stream_action",
        "id": crate::auth::new_nonce(),
        "timestamp": go_time(now_ns()),
        "stream": name,
        "action": action,
    });
    if let Some(d) = &shard.g.opts.jetstream_domain {
        v["domain"] = json!(d);
    }
    let subject = format!("$JS.EVENT.ADVISORY.STREAM.{what}.{name}");
    shard.publish_internal(
        acc,
        subject.as_bytes(),
        None,
        None,
        v.to_string().as_bytes(),
    );
}
