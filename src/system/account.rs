//! `$SYS.REQ.ACCOUNT.<acc>.<VERB>` in the system account, and the same
//! answers for the requests the reference imports into every other
//! account (its own CONNZ and STATZ).

use std::rc::Rc;

use bytes::Bytes;
use serde_json::{json, Value};

use super::request::{self, parse, Filter};
use super::{envelope, failure, reply_to, server, statsz, Req, SystemError};
use crate::global::Global;
use crate::monitor::{endpoints, jsz, leafz};
use crate::shard::Shard;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Subsz,
    Connz,
    Leafz,
    Jsz,
    Info,
    Statz,
}

/// The account token of `$SYS.REQ.ACCOUNT.<acc>.<VERB>`.
fn account_token(subject: &str) -> Result<&str, SystemError> {
    let t: Vec<&str> = subject.split('.').collect();
    match t.as_slice() {
        ["$SYS", "REQ", "ACCOUNT", acc, _] => Ok(acc),
        _ => Err(SystemError::Failed(format!(
            "subject {subject:?} is malformed"
        ))),
    }
}

/// A request in the system account about the account its subject names.
pub async fn handle(shard: &Rc<Shard>, verb: Verb, req: &Req) -> Option<(Bytes, Value)> {
    let to = reply_to(req)?;
    let g = &shard.g;
    let name = match account_token(&req.subject) {
        Ok(n) => n,
        Err(e) => return Some((to, failure(g, &e))),
    };
    // `$SYS.REQ.ACCOUNT.PING.STATZ` has its own subscription.
    if verb == Verb::Statz && name == "PING" {
        return None;
    }
    answer(shard, name, verb, req, to).await
}

/// A request account `acc` made on a subject the reference imports into
/// it from the system account: answered about `acc`, in `acc`.
pub async fn imported(
    shard: &Rc<Shard>,
    acc: u32,
    verb: Verb,
    req: &Req,
) -> Option<(Bytes, Value)> {
    let to = reply_to(req)?;
    let name = shard.g.accounts.name(acc).to_string();
    answer(shard, &name, verb, req, to).await
}

/// `$SYS.REQ.ACCOUNT.PING.STATZ` in the system account: every account in
/// use (or those the body names).
pub async fn all_statz(shard: &Rc<Shard>, req: &Req) -> Option<(Bytes, Value)> {
    let to = reply_to(req)?;
    let g = &shard.g;
    let (filter, o) = match parse::<Filter>(&req.body)
        .and_then(|f| Ok((f, parse::<request::AccountStatz>(&req.body)?)))
    {
        Ok(x) => x,
        Err(e) => return Some((to, failure(g, &e))),
    };
    if filter.excludes(g) {
        return None;
    }
    let v = statsz::account_statz(g, &o.accounts, o.include_unused).await?;
    Some((to, envelope::data(g, v)))
}

async fn answer(
    shard: &Rc<Shard>,
    name: &str,
    verb: Verb,
    req: &Req,
    to: Bytes,
) -> Option<(Bytes, Value)> {
    let g = &shard.g;
    let filter = match parse::<Filter>(&req.body) {
        Ok(f) => f,
        Err(e) => return Some((to, failure(g, &e))),
    };
    if filter.excludes(g) {
        return None;
    }
    let v = match data(shard, name, verb, &req.body).await {
        Ok(Some(v)) => envelope::data(g, v),
        // Nothing to say (STATZ of an account without connections).
        Ok(None) => return None,
        Err(e) => failure(g, &e),
    };
    Some((to, v))
}

async fn data(
    shard: &Rc<Shard>,
    name: &str,
    verb: Verb,
    body: &[u8],
) -> Result<Option<Value>, SystemError> {
    let g = &shard.g;
    let failed = SystemError::Failed;
    Ok(Some(match verb {
        Verb::Connz => {
            let o: request::Connz = parse(body)?;
            let mut v = endpoints::connz(g, &o.params(Some(name)))
                .await
                .map_err(failed)?;
            server::closed_only(&mut v, o.state);
            v
        }
        Verb::Subsz => {
            let o: request::Subsz = parse(body)?;
            endpoints::subsz(g, &o.params(Some(name)))
                .await
                .map_err(failed)?
        }
        Verb::Leafz => {
            let o: request::Leafz = parse(body)?;
            leafz::leafz(shard, &o.params(Some(name)))
                .await
                .map_err(failed)?
        }
        Verb::Jsz => {
            let o: request::Jsz = parse(body)?;
            jsz_account(shard, name, &o).await?
        }
        Verb::Info => info(g, name).await?,
        Verb::Statz => {
            let o: request::AccountStatz = parse(body)?;
            let names = [name.to_string()];
            match statsz::account_statz(g, &names, o.include_unused).await {
                Some(v) => v,
                None => return Ok(None),
            }
        }
    }))
}

/// One account's JetStream details (the reference's `JszAccount`).
async fn jsz_account(
    shard: &Rc<Shard>,
    name: &str,
    o: &request::Jsz,
) -> Result<Value, SystemError> {
    let g = &shard.g;
    let Some(cfg) = g.jetstream.get() else {
        return Err(SystemError::Failed("jetstream not enabled".into()));
    };
    let Some(id) = g.accounts.id(name) else {
        return Err(SystemError::Failed(format!("account {name:?} not found")));
    };
    let not_enabled = || SystemError::Failed(format!("account {name:?} not jetstream enabled"));
    if !cfg.enabled.get(id as usize).copied().unwrap_or(false) {
        return Err(not_enabled());
    }
    let mut v = jsz::jsz(shard, &o.params(Some(name)))
        .await
        .map_err(SystemError::Failed)?;
    match v.get_mut("account_details").and_then(|d| d.get_mut(0)) {
        Some(d) => Ok(d.take()),
        None => Err(not_enabled()),
    }
}

/// `AccountInfo`: what the server knows of account `name` (imports,
/// exports and claims are not listed).
pub async fn info(g: &Global, name: &str) -> Result<Value, SystemError> {
    let Some(id) = g.accounts.id(name) else {
        return Err(SystemError::Failed(format!(
            "Account {name} does not exist"
        )));
    };
    let figures = statsz::accounts(g).await;
    let f = figures.get(id as usize).copied().unwrap_or_default();
    let js = g
        .jetstream
        .get()
        .is_some_and(|c| c.enabled.get(id as usize).copied().unwrap_or(false));
    let mut v = json!({
        "account_name": name,
        "update_time": envelope::rfc3339(g.start_wall),
        "expired": false,
        "complete": true,
        "jetstream_enabled": js,
        "leafnode_connections": f.leafs,
        "client_connections": f.conns,
        "subscriptions": f.subs,
    });
    if Some(id) == g.accounts.system() {
        v["is_system"] = json!(true);
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_tokens() {
        assert_eq!(account_token("$SYS.REQ.ACCOUNT.A.CONNZ"), Ok("A"));
        assert!(account_token("$SYS.REQ.ACCOUNT.CONNZ").is_err());
        assert!(account_token("$SYS.REQ.ACCOUNT.A.B.CONNZ").is_err());
    }
}
