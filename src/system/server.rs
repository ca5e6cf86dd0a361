//! `$SYS.REQ.SERVER.PING[.<VERB>]` and `$SYS.REQ.SERVER.<id>.<VERB>`: the
//! monitoring endpoints over NATS, answered with the same builders as the
//! HTTP listener, in the reference's envelope.

use std::rc::Rc;
use std::time::SystemTime;

use bytes::Bytes;
use serde_json::{json, Value};

use super::request::{self, parse, Filter};
use super::{account, envelope, failure, reply_to, statsz, Req, SystemError};
use crate::monitor::{endpoints, jsz, leafz};
use crate::shard::Shard;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Statsz,
    Idz,
    Varz,
    Connz,
    Subsz,
    Jsz,
    Healthz,
    Leafz,
    Accountz,
    Routez,
    Gatewayz,
}

/// The answer and where it goes; `None` when this server stays silent
/// (no reply subject, or the request's filter leaves it out).
pub async fn handle(shard: &Rc<Shard>, verb: Verb, req: &Req) -> Option<(Bytes, Value)> {
    let g = &shard.g;
    match verb {
        Verb::Statsz => {
            // Without a reply the reference sends its statistics on its
            // broadcast subject.
            let to = reply_to(req)
                .unwrap_or_else(|| Bytes::from(format!("$SYS.SERVER.{}.STATSZ", g.server_id)));
            match parse::<Filter>(&req.body) {
                Err(e) => Some((to, failure(g, &e))),
                Ok(f) if f.excludes(g) => None,
                Ok(_) => Some((to, envelope::statsz(g, statsz::server(shard).await))),
            }
        }
        // Static identity, not enveloped (the reference's `ServerID`).
        Verb::Idz => Some((
            reply_to(req)?,
            json!({"name": g.server_name, "host": g.opts.host, "id": g.server_id}),
        )),
        _ => {
            let to = reply_to(req)?;
            let filter = match parse::<Filter>(&req.body) {
                Ok(f) => f,
                Err(e) => return Some((to, failure(g, &e))),
            };
            if filter.excludes(g) {
                return None;
            }
            let v = match data(shard, verb, &req.body).await {
                Ok(v) => envelope::data(g, v),
                Err(e) => failure(g, &e),
            };
            Some((to, v))
        }
    }
}

async fn data(shard: &Rc<Shard>, verb: Verb, body: &[u8]) -> Result<Value, SystemError> {
    let g = &shard.g;
    let failed = SystemError::Failed;
    Ok(match verb {
        Verb::Varz => {
            let mut v = endpoints::varz(g);
            v["jetstream"] = jsz::varz(shard).await;
            v
        }
        Verb::Connz => {
            let o: request::Connz = parse(body)?;
            let mut v = endpoints::connz(g, &o.params(None)).await.map_err(failed)?;
            closed_only(&mut v, o.state);
            v
        }
        Verb::Subsz => {
            let o: request::Subsz = parse(body)?;
            endpoints::subsz(g, &o.params(None)).await.map_err(failed)?
        }
        Verb::Jsz => {
            let o: request::Jsz = parse(body)?;
            jsz::jsz(shard, &o.params(None)).await.map_err(failed)?
        }
        Verb::Leafz => {
            let o: request::Leafz = parse(body)?;
            leafz::leafz(shard, &o.params(None)).await.map_err(failed)?
        }
        Verb::Healthz => json!({"status": "ok", "status_code": 200}),
        Verb::Accountz => {
            let o: request::Accountz = parse(body)?;
            if o.account.is_empty() {
                endpoints::accountz(g)
            } else {
                json!({
                    "server_id": g.server_id,
                    "now": envelope::rfc3339(SystemTime::now()),
                    "system_account": g.accounts.system_name(),
                    "account_detail": account::info(g, &o.account).await?,
                })
            }
        }
        Verb::Routez => endpoints::routez(g),
        Verb::Gatewayz => endpoints::gatewayz(g),
        // Answered in `handle`.
        Verb::Statsz | Verb::Idz => Value::Null,
    })
}

/// `state: 1` asks for closed connections, which this server does not
/// keep: an empty page.
pub(super) fn closed_only(v: &mut Value, state: i64) {
    if state == 1 {
        v["connections"] = json!([]);
        v["num_connections"] = json!(0);
        v["total"] = json!(0);
    }
}
