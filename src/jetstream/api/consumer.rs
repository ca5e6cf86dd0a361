//! `$JS.API.CONSUMER.*`: create (both subject forms and the legacy
//! durable form), info, delete, names and list. Every verb runs on the
//! shard that owns the stream, where its consumers live. `MSG.NEXT` is
//! subscribed by each pull consumer itself.

use std::rc::Rc;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{error, typed, Answer, Req};
use crate::jetstream::config::{now_ns, Retention};
use crate::jetstream::consumer::config::{self as ccfg, ConsumerConfig, DeliverPolicy};
use crate::jetstream::consumer::{self, Consumer};
use crate::jetstream::errors::ApiError;
use crate::jetstream::stream::Stream;
use crate::jetstream::JetStream;
use crate::shard::Shard;

const CREATE: &str = "consumer_create_response";
const INFO: &str = "consumer_info_response";
const DELETE: &str = "consumer_delete_response";
const NAMES: &str = "consumer_names_response";
const LIST: &str = "consumer_list_response";

const NAMES_LIMIT: usize = 1024;
const LIST_LIMIT: usize = 256;

/// How the create was addressed.
#[derive(Clone)]
pub struct Addr {
    /// `CONSUMER.CREATE.<stream>.<name>[.<filter>]`.
    pub name: Option<String>,
    pub filter: Option<String>,
    /// `CONSUMER.DURABLE.CREATE.<stream>.<durable>`.
    pub legacy_durable: bool,
}

/// Dispatches a consumer verb (the tokens after `CONSUMER.`).
pub async fn handle(shard: &Rc<Shard>, js: &JetStream, req: &Req, t: &[&str]) -> Answer {
    match t {
        ["CREATE", stream] => create(shard, js, req, stream, Addr::plain()).await,
        ["CREATE", stream, name] => {
            let a = Addr {
                name: Some(name.to_string()),
                filter: None,
                legacy_durable: false,
            };
            create(shard, js, req, stream, a).await
        }
        ["CREATE", stream, name, filter @ ..] => {
            let a = Addr {
                name: Some(name.to_string()),
                filter: Some(filter.join(".")),
                legacy_durable: false,
            };
            create(shard, js, req, stream, a).await
        }
        ["DURABLE", "CREATE", stream, durable] => {
            let a = Addr {
                name: Some(durable.to_string()),
                filter: None,
                legacy_durable: true,
            };
            create(shard, js, req, stream, a).await
        }
        ["DURABLE", "CREATE", ..] => error(CREATE, ApiError::durable_not_in_subject()),
        ["INFO", stream, name] => {
            let name = name.to_string();
            on_stream(shard, js, req, stream, INFO, move |_s, st| {
                let c = st
                    .consumer(&name)
                    .ok_or_else(ApiError::consumer_not_found)?;
                Ok(c.info(&st, true))
            })
            .await
        }
        ["DELETE", stream, name] => {
            let name = name.to_string();
            let r = on_stream_async(shard, js, req, stream, move |_s, st| async move {
                if st.remove_consumer(&name, true).await {
                    Ok(json!({"success": true}))
                } else {
                    Err(ApiError::consumer_not_found())
                }
            })
            .await;
            answer(DELETE, r)
        }
        ["NAMES", stream] => names_or_list(shard, js, req, stream, false).await,
        ["LIST", stream] => names_or_list(shard, js, req, stream, true).await,
        // Pull requests go to the consumer's own subscription; with no
        // such consumer nobody answers (as with the reference).
        ["MSG", "NEXT", ..] => {
            if shard.has_exact_interest(req.acc, req.subject.as_bytes()) {
                Answer::None
            } else {
                Answer::NoResponders
            }
        }
        _ => error(
            "system_response",
            ApiError::not_supported(&format!("CONSUMER.{}", t.join("."))),
        ),
    }
}

impl Addr {
    fn plain() -> Addr {
        Addr {
            name: None,
            filter: None,
            legacy_durable: false,
        }
    }
}

fn answer(kind: &str, r: Result<Value, ApiError>) -> Answer {
    match r {
        Ok(v) => Answer::Json(typed(kind, v)),
        Err(e) => error(kind, e),
    }
}

async fn create(shard: &Rc<Shard>, js: &JetStream, req: &Req, stream: &str, a: Addr) -> Answer {
    let strict = js.cfg.strict;
    let body = req.body.clone();
    let stream_name = stream.to_string();
    let r = on_stream_async(shard, js, req, stream, move |s, st| async move {
        try_create(&s, &st, &stream_name, &body, &a, strict).await
    })
    .await;
    answer(CREATE, r)
}

async fn try_create(
    shard: &Rc<Shard>,
    st: &Rc<Stream>,
    stream_name: &str,
    body: &Bytes,
    a: &Addr,
    strict: bool,
) -> Result<Value, ApiError> {
    let body = body.trim_ascii();
    // An empty body names no stream: the mismatch error, as the reference.
    let body: &[u8] = if body.is_empty() { b"{}" } else { body };
    let r = ccfg::parse_request(body, strict)?;
    if r.stream_name != stream_name {
        return Err(ApiError::stream_mismatch());
    }
    if !matches!(r.action.as_str(), "" | "create" | "update") {
        return Err(ApiError::invalid_json(format!(
            "unknown consumer action: {:?}",
            r.action
        )));
    }
    let mut cfg = r.config.unwrap_or_default();
    if let Some(n) = &a.name {
        if n.contains('/') || n.contains('\\') {
            return Err(ApiError::consumer_name_path());
        }
    }
    if a.legacy_durable {
        let n = a.name.clone().unwrap_or_default();
        if cfg.durable.is_empty() {
            return Err(ApiError::durable_not_set());
        }
        if cfg.durable != n {
            return Err(ApiError::durable_subject_mismatch());
        }
        if !cfg.name.is_empty() && cfg.name != cfg.durable {
            return Err(ApiError::durable_and_name_mismatch());
        }
    } else if let Some(n) = &a.name {
        if !cfg.durable.is_empty() && &cfg.durable != n {
            return Err(ApiError::durable_subject_mismatch());
        }
        cfg.name = n.clone();
    } else if !cfg.durable.is_empty() {
        return Err(ApiError::new_pub(
            400,
            10020,
            "consumer expected to be ephemeral but a durable name was set in request",
        ));
    }
    if let Some(f) = &a.filter {
        if !cfg.filter_subjects.is_empty() {
            return Err(ApiError::new_pub(
                400,
                10137,
                "consumer with multiple subject filters cannot use subject based API",
            ));
        }
        if &cfg.filter_subject != f {
            return Err(ApiError::create_filter_mismatch());
        }
    }
    let scfg = st.cfg();
    cfg.normalize(&scfg)?;
    if cfg.name.is_empty() {
        cfg.name = consumer::new_name();
    } else if cfg.direct && cfg.sourcing {
        // A sourcing stream asks under a stable name each time it sets
        // its consumer up: each gets a name of its own (the reference
        // appends a random suffix too), the old one fades out inactive.
        cfg.name = format!("{}-{}", cfg.name, consumer::new_name());
    }
    let action = r.action.as_str();
    if let Some(existing) = st.consumer(&cfg.name) {
        let old = existing.cfg();
        if old.same_as(&cfg) {
            return Ok(existing.info(st, true));
        }
        if action == "create" {
            return Err(ApiError::consumer_exists());
        }
        if let Some(e) = cfg.update_error(&old) {
            return Err(e);
        }
        if scfg.retention == Retention::WorkQueue {
            check_work_queue(st, &cfg, Some(&cfg.name))?;
        }
        existing.update(cfg)?;
        return Ok(existing.info(st, true));
    }
    if action == "update" {
        return Err(ApiError::consumer_does_not_exist());
    }
    check_stream_rules(st, &scfg, &cfg)?;
    let c = Consumer::open(st, shard, cfg.clone(), now_ns(), st.durability, true).await?;
    st.consumers
        .borrow_mut()
        .insert(cfg.name.clone(), c.clone());
    consumer::advisory::action(shard, st.acc, &st.name, &cfg.name, "create");
    Ok(c.info(st, true))
}

/// Limits and retention rules a new consumer must meet.
fn check_stream_rules(
    st: &Stream,
    scfg: &crate::jetstream::config::StreamConfig,
    cfg: &ConsumerConfig,
) -> Result<(), ApiError> {
    let count = st.consumers.borrow().len() as i64;
    if scfg.max_consumers > 0 && count >= scfg.max_consumers {
        return Err(ApiError::max_consumers());
    }
    if let Some(shard) = st.shard() {
        if let Some(js) = shard.js.get() {
            let max = js
                .cfg
                .account_limits
                .get(st.acc as usize)
                .and_then(|l| l.max_consumers);
            // Per stream, as the reference applies the account's limit.
            if max.is_some_and(|m| count as u64 >= m) {
                return Err(ApiError::max_consumers());
            }
        }
    }
    if scfg.retention == Retention::WorkQueue {
        if cfg.deliver_policy != DeliverPolicy::All {
            return Err(ApiError::new_pub(
                400,
                10101,
                "consumer must be deliver all on workqueue stream",
            ));
        }
        check_work_queue(st, cfg, None)?;
    }
    Ok(())
}

/// A work queue's consumers must not share subjects: one unfiltered
/// consumer at most, filters disjoint (`except`: the one being updated).
fn check_work_queue(
    st: &Stream,
    cfg: &ConsumerConfig,
    except: Option<&str>,
) -> Result<(), ApiError> {
    let mine = cfg.filters();
    for other in st.consumers.borrow().values() {
        if Some(other.name.as_str()) == except {
            continue;
        }
        let theirs = other.cfg().filters();
        if mine.is_empty() {
            return Err(ApiError::wq_multiple_unfiltered());
        }
        if theirs.is_empty() {
            return Err(ApiError::wq_not_unique());
        }
        let overlap = mine.iter().any(|a| {
            theirs
                .iter()
                .any(|b| crate::subject::filters_overlap(a.as_bytes(), b.as_bytes()))
        });
        if overlap {
            return Err(ApiError::wq_not_unique());
        }
    }
    Ok(())
}

#[derive(Deserialize, Default)]
struct ListReq {
    #[serde(default)]
    offset: i64,
}

async fn names_or_list(
    shard: &Rc<Shard>,
    js: &JetStream,
    req: &Req,
    stream: &str,
    list: bool,
) -> Answer {
    let kind = if list { LIST } else { NAMES };
    let r: ListReq = match req.optional() {
        Ok(r) => r,
        Err(e) => return error(kind, e),
    };
    let r = on_stream(shard, js, req, stream, kind, move |_s, st| {
        let all: Vec<Rc<Consumer>> = st.consumers.borrow().values().cloned().collect();
        let limit = if list { LIST_LIMIT } else { NAMES_LIMIT };
        let off = (r.offset.max(0) as usize).min(all.len());
        let page = &all[off..(off + limit).min(all.len())];
        let mut v = json!({"total": all.len(), "offset": off, "limit": limit});
        if list {
            v["consumers"] = json!(page.iter().map(|c| c.info(&st, true)).collect::<Vec<_>>());
        } else {
            v["consumers"] = json!(page.iter().map(|c| c.name.clone()).collect::<Vec<_>>());
        }
        Ok(v)
    });
    r.await
}

/// Runs `f` with the stream on its owner and answers with `kind`.
async fn on_stream<F>(
    shard: &Rc<Shard>,
    js: &JetStream,
    req: &Req,
    stream: &str,
    kind: &str,
    f: F,
) -> Answer
where
    F: FnOnce(Rc<Shard>, Rc<Stream>) -> Result<Value, ApiError> + Send + 'static,
{
    let r = on_stream_async(shard, js, req, stream, move |s, st| async move { f(s, st) }).await;
    answer(kind, r)
}

async fn on_stream_async<F, Fut>(
    shard: &Rc<Shard>,
    js: &JetStream,
    req: &Req,
    stream: &str,
    f: F,
) -> Result<Value, ApiError>
where
    F: FnOnce(Rc<Shard>, Rc<Stream>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<Value, ApiError>> + 'static,
{
    let meta = js.meta.as_ref().ok_or_else(ApiError::stream_not_found)?;
    let owner = meta
        .owner(req.acc, stream)
        .ok_or_else(ApiError::stream_not_found)?;
    let (acc, name) = (req.acc, stream.to_string());
    crate::shard::bus::call(&shard.g, owner, move |s: Rc<Shard>| async move {
        let st =
            s.js.get()
                .and_then(|js| js.stream(acc, &name))
                .ok_or_else(ApiError::stream_not_found)?;
        f(s, st).await
    })
    .await
    .unwrap_or_else(|| Err(ApiError::general("shard unavailable")))
}
