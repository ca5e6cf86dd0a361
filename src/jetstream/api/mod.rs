//! `$JS.API`: one internal subscription per JetStream account on shard 0,
//! which answers account-wide requests itself and hands stream requests
//! to the owning shard over the shard bus. One module per verb group.

mod consumer;
mod info;
mod msg;
mod snapshot;
pub mod stream;

use std::rc::Rc;

use bytes::Bytes;
use serde_json::Value;

use super::errors::ApiError;
use super::JetStream;
use crate::shard::sink::{Handler, Owned};
use crate::shard::Shard;

/// A direct get's replies (`None`: the stream does not serve them).
pub fn direct_replies(
    st: &super::stream::Stream,
    subject: &str,
    body: &Bytes,
) -> Option<msg::Replies> {
    msg::direct(st, subject, body)
}

/// A request as handlers see it.
pub struct Req {
    pub acc: u32,
    pub subject: String,
    pub reply: Bytes,
    pub body: Bytes,
}

impl Req {
    /// The body, or `None` when empty (whitespace only counts as empty).
    pub fn json(&self) -> Option<&[u8]> {
        let b = self.body.trim_ascii();
        (!b.is_empty()).then_some(b)
    }

    /// Optional request JSON: parsed only when it is an object or array,
    /// as the reference does for info/names/list/purge.
    pub fn optional<T: serde::de::DeserializeOwned + Default>(&self) -> Result<T, ApiError> {
        match self.json() {
            Some(b) if b[0] == b'{' || b[0] == b'[' => {
                serde_json::from_slice(b).map_err(ApiError::invalid_json)
            }
            _ => Ok(T::default()),
        }
    }
}

/// What a handler answers: a JSON response (with its `type`), or a raw
/// message (direct get: headers and payload).
pub enum Answer {
    Json(Value),
    /// Messages in order: (header block, payload).
    Raw(msg::Replies),
    /// The 503 status a request gets when nothing serves its subject.
    NoResponders,
    None,
}

/// `body` with the response `type` of `kind` added.
pub fn typed(kind: &str, mut body: Value) -> Value {
    if let Value::Object(m) = &mut body {
        m.insert(
            "type".into(),
            Value::String(format!("io.nats.jetstream.api.v1.{kind}")),
        );
    }
    body
}

pub fn error_json(kind: &str, e: ApiError) -> Value {
    typed(kind, serde_json::json!({ "error": e }))
}

pub fn error(kind: &str, e: ApiError) -> Answer {
    Answer::Json(error_json(kind, e))
}

const NO_RESPONDERS: &[u8] = b"NATS/1.0 503\r\n\r\n";

/// Subscribes the API in every account with JetStream (shard 0 only).
pub fn subscribe(shard: &Rc<Shard>, js: &Rc<JetStream>) {
    for (acc, on) in js.cfg.enabled.iter().enumerate() {
        if !on {
            continue;
        }
        let acc = acc as u32;
        let w = Rc::downgrade(shard);
        let jsw = Rc::downgrade(js);
        let h: Handler = Rc::new(move |m| {
            let (Some(shard), Some(js)) = (w.upgrade(), jsw.upgrade()) else {
                return;
            };
            let o = Owned::of(m);
            let Some(reply) = o.reply else {
                return;
            };
            let req = Req {
                acc,
                subject: String::from_utf8_lossy(&o.subject).into_owned(),
                reply,
                body: o.payload,
            };
            crate::runtime::spawn_local(handle(shard, js, req)).detach();
        });
        shard.subscribe_internal(acc, "$JS.API.>", None, h);
        if let Some(d) = &shard.g.opts.jetstream_domain {
            subscribe_domain(shard, acc, d);
        }
    }
}

/// With `jetstream { domain }`, `$JS.<domain>.API.…` is this server's API
/// too: what servers across leaf links use to reach it by its domain.
fn subscribe_domain(shard: &Rc<Shard>, acc: u32, domain: &str) {
    let prefix = format!("$JS.{domain}.API.");
    let w = Rc::downgrade(shard);
    let h: Handler = Rc::new(move |m| {
        let Some(shard) = w.upgrade() else { return };
        let o = Owned::of(m);
        let Some(rest) = o.subject.strip_prefix(prefix.as_bytes()) else {
            return;
        };
        let subject = [&b"$JS.API."[..], rest].concat();
        // Published from a task: this runs inside a delivery.
        crate::runtime::spawn_local(async move {
            let h = (!o.headers.is_empty()).then_some(&o.headers[..]);
            shard.publish_internal(acc, &subject, o.reply.as_deref(), h, &o.payload);
        })
        .detach();
    });
    shard.subscribe_internal(acc, &format!("$JS.{domain}.API.>"), None, h);
}

async fn handle(shard: Rc<Shard>, js: Rc<JetStream>, req: Req) {
    let Some(meta) = js.meta.as_ref() else { return };
    let rest = req.subject.strip_prefix("$JS.API.").unwrap_or_default();
    let t: Vec<&str> = rest.split('.').collect();
    let answer = match t.as_slice() {
        ["INFO"] => info::account(&shard, &js, &req).await,
        ["STREAM", "CREATE", name] => stream::create(&shard, &js, &req, name).await,
        ["STREAM", "UPDATE", name] => stream::update(&shard, &js, &req, name).await,
        ["STREAM", "DELETE", name] => stream::delete(&shard, &js, &req, name).await,
        ["STREAM", "NAMES"] => stream::names(&js, &req),
        ["STREAM", "SNAPSHOT", name] => snapshot::snapshot(&shard, &js, &req, name).await,
        ["STREAM", "RESTORE", name] => snapshot::restore(&shard, &js, &req, name).await,
        ["STREAM", "LIST"] => stream::list(&shard, &js, &req).await,
        ["STREAM", "INFO", name] => on_owner(&shard, &js, &req, name, "stream_info_response").await,
        ["STREAM", "PURGE", name] => {
            on_owner(&shard, &js, &req, name, "stream_purge_response").await
        }
        ["STREAM", "MSG", "GET", name] => {
            on_owner(&shard, &js, &req, name, "stream_msg_get_response").await
        }
        ["STREAM", "MSG", "DELETE", name] => {
            on_owner(&shard, &js, &req, name, "stream_msg_delete_response").await
        }
        ["DIRECT", "GET", name, ..] => {
            // The stream answers on its own subscription when it allows
            // direct gets, and so do its mirrors with `mirror_direct`
            // (even with the origin gone); otherwise nobody does.
            let direct = {
                let reg = meta.registry.borrow();
                reg.get(&(req.acc, name.to_string()))
                    .is_some_and(|e| e.config.allow_direct)
                    || reg.iter().any(|((a, _), e)| {
                        *a == req.acc
                            && e.config.mirror_direct
                            && e.config.mirror.as_ref().is_some_and(|m| m.name == *name)
                    })
            };
            if direct {
                Answer::None
            } else {
                Answer::NoResponders
            }
        }
        ["CONSUMER", rest @ ..] => consumer::handle(&shard, &js, &req, rest).await,
        _ => {
            // Unknown verbs: nobody serves them, as with the reference.
            Answer::NoResponders
        }
    };
    send(&shard, meta, &req, answer);
}

fn send(shard: &Shard, meta: &super::meta::Meta, req: &Req, a: Answer) {
    match a {
        Answer::Json(v) => {
            // Purge and message-delete failures of the operation itself
            // count as answers, not API errors, in the reference.
            let op = req.subject.starts_with("$JS.API.STREAM.PURGE.")
                || req.subject.starts_with("$JS.API.STREAM.MSG.DELETE.");
            let code = v["error"]["err_code"].as_u64();
            let refused = v["error"]["description"]
                .as_str()
                .is_some_and(|d| d.ends_with("not permitted"));
            let err =
                code.is_some_and(|c| !op || refused || matches!(c, 10059 | 10003 | 10025 | 10109));
            // Successful message gets are not counted (nor audited), as
            // in the reference.
            let counted = err || !req.subject.starts_with("$JS.API.STREAM.MSG.GET.");
            if counted {
                meta.count_api(req.acc, err);
            }
            let body = v.to_string();
            shard.publish_internal(req.acc, &req.reply, None, None, body.as_bytes());
            if counted {
                audit(shard, req, &body);
            }
        }
        Answer::Raw(msgs) => {
            for (headers, payload) in msgs {
                let h = (!headers.is_empty()).then_some(&headers[..]);
                shard.publish_internal(req.acc, &req.reply, None, h, &payload);
            }
        }
        Answer::NoResponders => {
            shard.publish_internal(req.acc, &req.reply, None, Some(NO_RESPONDERS), b"");
        }
        Answer::None => {}
    }
}

const AUDIT_SUBJECT: &str = "$JS.EVENT.ADVISORY.API";

/// The API audit advisory, made only when someone listens for it.
fn audit(shard: &Shard, req: &Req, response: &str) {
    if !shard.has_interest(req.acc, AUDIT_SUBJECT.as_bytes()) {
        return;
    }
    let mut v = serde_json::json!({
        "type": "io.nats.jetstream.advisory.v1.api_audit",
        "id": crate::auth::new_nonce(),
        "timestamp": super::config::go_time(super::config::now_ns()),
        "server": shard.g.server_name,
        "client": {"acc": shard.g.accounts.name(req.acc)},
        "subject": req.subject,
        "response": response,
    });
    if !req.body.is_empty() {
        v["request"] = serde_json::json!(String::from_utf8_lossy(&req.body));
    }
    if let Some(d) = &shard.g.opts.jetstream_domain {
        v["domain"] = serde_json::json!(d);
    }
    shard.publish_internal(
        req.acc,
        AUDIT_SUBJECT.as_bytes(),
        None,
        None,
        v.to_string().as_bytes(),
    );
}

/// Runs a stream request on the shard that owns the stream.
async fn on_owner(shard: &Rc<Shard>, js: &JetStream, req: &Req, name: &str, kind: &str) -> Answer {
    let Some(meta) = js.meta.as_ref() else {
        return Answer::None;
    };
    let Some(owner) = meta.owner(req.acc, name) else {
        if kind == "direct" {
            return Answer::NoResponders;
        }
        return owner_error(kind, ApiError::stream_not_found());
    };
    let (acc, name, subject, body) = (
        req.acc,
        name.to_string(),
        req.subject.clone(),
        req.body.clone(),
    );
    let kind_s = kind.to_string();
    let r = crate::shard::bus::call(&shard.g, owner, move |s: Rc<Shard>| async move {
        let Some(st) = s.js.get().and_then(|js| js.stream(acc, &name)) else {
            return Err(ApiError::stream_not_found());
        };
        Ok(match kind_s.as_str() {
            "stream_info_response" => Owned2::Json(stream::info(&s, &st, &body)),
            "stream_purge_response" => Owned2::Json(stream::purge(&st, &body).await),
            "stream_msg_get_response" => Owned2::Json(msg::get(&st, &body)),
            "stream_msg_delete_response" => Owned2::Json(msg::delete(&st, &body).await),
            _ => match msg::direct(&st, &subject, &body) {
                Some(msgs) => Owned2::Raw(msgs),
                None => Owned2::NoResponders,
            },
        })
    })
    .await;
    match r {
        Some(Ok(Owned2::Json(v))) => Answer::Json(v),
        Some(Ok(Owned2::Raw(msgs))) => Answer::Raw(msgs),
        Some(Ok(Owned2::NoResponders)) => Answer::NoResponders,
        None => Answer::None,
        Some(Err(e)) => owner_error(kind, e),
    }
}

/// An error answer; purge responses always carry `purged`.
fn owner_error(kind: &str, e: ApiError) -> Answer {
    match kind {
        "stream_purge_response" => {
            Answer::Json(typed(kind, serde_json::json!({"error": e, "purged": 0})))
        }
        "stream_info_response" => Answer::Json(typed(
            kind,
            serde_json::json!({"error": e, "total": 0, "offset": 0, "limit": 0}),
        )),
        _ => error(kind, e),
    }
}

/// An answer as it crosses back from the owning shard.
enum Owned2 {
    Json(Value),
    Raw(msg::Replies),
    NoResponders,
}
