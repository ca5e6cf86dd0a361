//! Declared JetStream assets (`provision { }`): what is missing is created
//! once every shard has recovered its streams, and a reload reconciles
//! again. Everything goes through the JetStream API as a client would send
//! it (the same checks, errors and advisories); an update that would drop
//! stored messages (a tighter limit, fewer subjects) is refused and logged,
//! and nothing that is not declared is ever deleted.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use serde_json::{json, Value};

use crate::options::{Declared, Provision};
use crate::shard::sink::{Handler, Owned};
use crate::shard::Shard;

/// How long one API request may take (a stream create fsyncs its metadata).
const REQUEST_WAIT: Duration = Duration::from_secs(10);

/// Reconciles the declared assets from shard 0, once the server is up.
pub fn spawn(shard: &Rc<Shard>) {
    if shard.id != 0 || shard.g.jetstream.get().is_none() {
        return;
    }
    let Some(p) = shard.g.live().provision.clone() else {
        return;
    };
    let shard = shard.clone();
    crate::runtime::spawn_local(async move {
        // Streams on other shards must be recovered before asking for them.
        for _ in 0..6000 {
            if shard.g.lifecycle.is_ready() {
                break;
            }
            crate::runtime::sleep(Duration::from_millis(10)).await;
        }
        apply(&shard, &p).await;
    })
    .detach();
}

async fn apply(shard: &Rc<Shard>, p: &Provision) {
    let mut done = 0usize;
    for d in &p.streams {
        done += usize::from(stream(shard, d).await);
    }
    for d in &p.consumers {
        done += usize::from(consumer(shard, d).await);
    }
    tracing::info!(
        "provision: {done} of {} declared streams and consumers in place",
        p.streams.len() + p.consumers.len()
    );
}

/// One JetStream API request in `acc`; the decoded answer.
async fn request(shard: &Rc<Shard>, acc: u32, subject: &str, body: &Value) -> Option<Value> {
    let inbox = format!("_INBOX.provision.{}", crate::auth::new_nonce());
    let (tx, rx) = futures_channel::oneshot::channel::<Owned>();
    let tx = RefCell::new(Some(tx));
    let h: Handler = Rc::new(move |m| {
        if let Some(tx) = tx.borrow_mut().take() {
            let _ = tx.send(Owned::of(m));
        }
    });
    let sub = shard.subscribe_internal(acc, &inbox, None, h);
    let payload = if body.is_null() {
        Vec::new()
    } else {
        body.to_string().into_bytes()
    };
    shard.publish_internal(
        acc,
        subject.as_bytes(),
        Some(inbox.as_bytes()),
        None,
        &payload,
    );
    let answer = crate::runtime::timeout(REQUEST_WAIT, rx).await;
    shard.unsubscribe_internal(&sub);
    let m = answer?.ok()?;
    serde_json::from_slice(&m.payload).ok()
}

fn account(shard: &Shard, d: &Declared) -> Option<u32> {
    let acc = shard.g.accounts.id(&d.account);
    if acc.is_none() {
        tracing::error!("provision ({}): no account {:?}", d.at, d.account);
    }
    acc
}

fn error_of(v: &Value) -> Option<(u64, String)> {
    let e = v.get("error")?;
    Some((
        e["err_code"].as_u64().unwrap_or(0),
        e["description"].as_str().unwrap_or_default().to_string(),
    ))
}

/// `declared` laid over `existing`: what an update would send.
fn merged(existing: &Value, declared: &Value) -> Value {
    let mut m = existing.clone();
    if let (Some(m), Some(d)) = (m.as_object_mut(), declared.as_object()) {
        for (k, v) in d {
            m.insert(k.clone(), v.clone());
        }
    }
    m
}

/// Why an update from `old` to `new` would drop stored messages.
fn loses_data(old: &Value, new: &Value) -> Option<String> {
    for k in [
        "max_msgs",
        "max_bytes",
        "max_age",
        "max_msgs_per_subject",
        "max_msg_size",
    ] {
        let (o, n) = (old[k].as_i64().unwrap_or(-1), new[k].as_i64().unwrap_or(-1));
        let unlimited = |v: i64| v <= 0;
        if !unlimited(n) && (unlimited(o) || n < o) {
            return Some(format!("{k} {o} → {n}"));
        }
    }
    let subjects = |v: &Value| -> Vec<String> {
        v["subjects"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    let now = subjects(new);
    let gone: Vec<String> = subjects(old)
        .into_iter()
        .filter(|s| !now.contains(s))
        .collect();
    if !gone.is_empty() {
        return Some(format!("subjects {gone:?} removed"));
    }
    None
}

/// Makes a declared stream exist as declared. True when it does.
async fn stream(shard: &Rc<Shard>, d: &Declared) -> bool {
    let Some(acc) = account(shard, d) else {
        return false;
    };
    let name = d.config["name"].as_str().unwrap_or_default();
    let Some(info) = request(
        shard,
        acc,
        &format!("$JS.API.STREAM.INFO.{name}"),
        &Value::Null,
    )
    .await
    else {
        tracing::error!(
            "provision ({}): stream {name}: no answer from the API",
            d.at
        );
        return false;
    };
    match error_of(&info) {
        Some((10059, _)) => {
            let r = request(
                shard,
                acc,
                &format!("$JS.API.STREAM.CREATE.{name}"),
                &d.config,
            )
            .await;
            match r.as_ref().and_then(error_of) {
                None if r.is_some() => {
                    tracing::info!("provision: stream {name} created");
                    true
                }
                Some((code, e)) => {
                    tracing::error!(
                        "provision ({}): stream {name} not created: {e} ({code})",
                        d.at
                    );
                    false
                }
                None => false,
            }
        }
        Some((code, e)) => {
            tracing::error!("provision ({}): stream {name}: {e} ({code})", d.at);
            false
        }
        None => {
            let existing = &info["config"];
            let want = merged(existing, &d.config);
            if &want == existing {
                return true;
            }
            if let Some(why) = loses_data(existing, &want) {
                tracing::error!(
                    "provision ({}): stream {name} not updated: {why} would drop stored messages (change it with the API if that is meant)",
                    d.at
                );
                return false;
            }
            let r = request(shard, acc, &format!("$JS.API.STREAM.UPDATE.{name}"), &want).await;
            match r.as_ref().and_then(error_of) {
                None if r.is_some() => {
                    tracing::info!("provision: stream {name} updated");
                    true
                }
                Some((code, e)) => {
                    tracing::error!(
                        "provision ({}): stream {name} not updated: {e} ({code})",
                        d.at
                    );
                    false
                }
                None => false,
            }
        }
    }
}

/// Makes a declared durable consumer exist as declared.
async fn consumer(shard: &Rc<Shard>, d: &Declared) -> bool {
    let Some(acc) = account(shard, d) else {
        return false;
    };
    let stream = d.config["stream_name"].as_str().unwrap_or_default();
    let cfg = &d.config["config"];
    let name = cfg["durable_name"].as_str().unwrap_or_default();
    let info = request(
        shard,
        acc,
        &format!("$JS.API.CONSUMER.INFO.{stream}.{name}"),
        &Value::Null,
    )
    .await;
    let Some(info) = info else {
        tracing::error!("provision ({}): consumer {stream}/{name}: no answer", d.at);
        return false;
    };
    let (action, body) = match error_of(&info) {
        Some((10014, _)) => ("create", cfg.clone()),
        Some((code, e)) => {
            tracing::error!(
                "provision ({}): consumer {stream}/{name}: {e} ({code})",
                d.at
            );
            return false;
        }
        None => {
            let want = merged(&info["config"], cfg);
            if want == info["config"] {
                return true;
            }
            ("update", want)
        }
    };
    let req = json!({"stream_name": stream, "config": body, "action": action});
    let r = request(
        shard,
        acc,
        &format!("$JS.API.CONSUMER.CREATE.{stream}.{name}"),
        &req,
    )
    .await;
    match r.as_ref().and_then(error_of) {
        None if r.is_some() => {
            tracing::info!("provision: consumer {stream}/{name} {action}d");
            true
        }
        Some((code, e)) => {
            tracing::error!(
                "provision ({}): consumer {stream}/{name} not {action}d: {e} ({code})",
                d.at
            );
            false
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tighter_limits_and_fewer_subjects_lose_data() {
        let old = json!({"max_msgs": -1, "max_age": 0, "subjects": ["a", "b"]});
        assert!(loses_data(
            &old,
            &json!({"max_msgs": 10, "max_age": 0, "subjects": ["a", "b"]})
        )
        .is_some());
        assert!(loses_data(
            &old,
            &json!({"max_msgs": -1, "max_age": 0, "subjects": ["a"]})
        )
        .is_some());
        assert!(loses_data(
            &old,
            &json!({"max_msgs": -1, "max_age": 0, "subjects": ["a", "b", "c"]})
        )
        .is_none());
        let limited = json!({"max_msgs": 10, "subjects": ["a"]});
        assert!(loses_data(&limited, &json!({"max_msgs": 20, "subjects": ["a"]})).is_none());
        assert!(loses_data(&limited, &json!({"max_msgs": -1, "subjects": ["a"]})).is_none());
    }
}
