//! A system request's body: the reference's `EventFilterOptions` (which
//! servers should answer) and each verb's options, read into the query
//! parameters the monitoring builders take, so `$SYS.REQ.SERVER.PING.CONNZ`
//! with `{"sort": "subs", "limit": 5}` answers what `/connz?sort=subs&limit=5`
//! does.
//!
//! As the reference's `json.Unmarshal`, unknown fields are ignored and a
//! field of the wrong type is an error (answered with code 400).

use std::collections::HashMap;

use serde::Deserialize;

use super::SystemError;
use crate::global::Global;

/// Which servers a request is for (`EventFilterOptions`).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Filter {
    server_name: String,
    cluster: String,
    host: String,
    exact_match: bool,
    tags: Vec<String>,
    domain: String,
}

impl Filter {
    /// Whether this server should stay silent (the reference's
    /// `filterRequest`). There is no cluster here: a cluster filter
    /// matches only when empty (exact) or contained in "" (never, unless
    /// empty).
    pub fn excludes(&self, g: &Global) -> bool {
        self.excludes_server(
            &g.server_name,
            &g.opts.host,
            &g.opts.server_tags,
            g.opts.jetstream_domain.as_deref(),
        )
    }

    fn excludes_server(
        &self,
        name: &str,
        host: &str,
        tags: &[String],
        domain: Option<&str>,
    ) -> bool {
        let cluster = "";
        let differs = |want: &str, have: &str| {
            !want.is_empty()
                && if self.exact_match {
                    want != have
                } else {
                    !have.contains(want)
                }
        };
        if differs(&self.server_name, name)
            || differs(&self.host, host)
            || differs(&self.cluster, cluster)
        {
            return true;
        }
        if self.tags.iter().any(|t| !tags.contains(t)) {
            return true;
        }
        !self.domain.is_empty() && domain != Some(self.domain.as_str())
    }
}

/// A request body: empty (or blank) means no options.
pub fn parse<T: for<'de> Deserialize<'de> + Default>(body: &[u8]) -> Result<T, SystemError> {
    let b = body.trim_ascii();
    if b.is_empty() {
        return Ok(T::default());
    }
    serde_json::from_slice(b).map_err(|e| SystemError::BadRequest(e.to_string()))
}

pub type Params = HashMap<String, String>;

fn set(p: &mut Params, k: &str, v: impl ToString) {
    p.insert(k.to_string(), v.to_string());
}

fn set_flag(p: &mut Params, k: &str, on: bool) {
    if on {
        set(p, k, "1");
    }
}

fn set_nonempty(p: &mut Params, k: &str, v: &str) {
    if !v.is_empty() {
        set(p, k, v);
    }
}

/// `ConnzOptions`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Connz {
    sort: String,
    auth: bool,
    subscriptions: bool,
    subscriptions_detail: bool,
    offset: i64,
    limit: i64,
    cid: u64,
    /// 0 open, 1 closed, 2 all (closed connections are not kept here).
    pub state: i64,
    user: String,
    acc: String,
}

impl Connz {
    /// `account` replaces `acc` (an account's own CONNZ).
    pub fn params(&self, account: Option<&str>) -> Params {
        let mut p = Params::new();
        set_nonempty(&mut p, "sort", &self.sort);
        set_flag(&mut p, "auth", self.auth);
        if self.subscriptions_detail {
            set(&mut p, "subs", "detail");
        } else {
            set_flag(&mut p, "subs", self.subscriptions);
        }
        set(&mut p, "offset", self.offset);
        set(&mut p, "limit", self.limit);
        if self.cid != 0 {
            set(&mut p, "cid", self.cid);
        }
        set_nonempty(&mut p, "user", &self.user);
        set_nonempty(&mut p, "acc", account.unwrap_or(&self.acc));
        p
    }
}

/// `SubszOptions`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Subsz {
    offset: i64,
    limit: i64,
    subscriptions: bool,
    account: String,
    test: String,
}

impl Subsz {
    /// An account's own SUBSZ lists its subscriptions, as the reference.
    pub fn params(&self, account: Option<&str>) -> Params {
        let mut p = Params::new();
        set(&mut p, "offset", self.offset);
        set(&mut p, "limit", self.limit);
        set_flag(&mut p, "subs", self.subscriptions || account.is_some());
        set_nonempty(&mut p, "acc", account.unwrap_or(&self.account));
        set_nonempty(&mut p, "test", &self.test);
        p
    }
}

/// `JSzOptions` (`raft`, `leader_only` and the like have nothing to do
/// on a server without clustering).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Jsz {
    account: String,
    accounts: bool,
    streams: bool,
    consumer: bool,
    config: bool,
    offset: i64,
    limit: i64,
}

impl Jsz {
    pub fn params(&self, account: Option<&str>) -> Params {
        let mut p = Params::new();
        set_nonempty(&mut p, "acc", account.unwrap_or(&self.account));
        set_flag(&mut p, "accounts", self.accounts);
        set_flag(&mut p, "streams", self.streams);
        set_flag(&mut p, "consumers", self.consumer);
        set_flag(&mut p, "config", self.config);
        if self.offset > 0 {
            set(&mut p, "offset", self.offset);
        }
        if self.limit > 0 {
            set(&mut p, "limit", self.limit);
        }
        p
    }
}

/// `LeafzOptions`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Leafz {
    subscriptions: bool,
    account: String,
}

impl Leafz {
    pub fn params(&self, account: Option<&str>) -> Params {
        let mut p = Params::new();
        set_flag(&mut p, "subs", self.subscriptions);
        set_nonempty(&mut p, "acc", account.unwrap_or(&self.account));
        p
    }
}

/// `AccountzOptions`: one account's details when named.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Accountz {
    pub account: String,
}

/// `AccountStatzOptions`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct AccountStatz {
    pub accounts: Vec<String>,
    pub include_unused: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_like_the_reference() {
        let f = |body: &str| parse::<Filter>(body.as_bytes()).unwrap();
        let tags = ["edge".to_string()];
        let ex = |body: &str| f(body).excludes_server("srv-a1", "0.0.0.0", &tags, Some("hub"));
        assert!(!ex(""));
        assert!(!ex(r#"{"server_name":"a1"}"#), "contains");
        assert!(ex(r#"{"server_name":"a1","exact_match":true}"#));
        assert!(!ex(r#"{"server_name":"srv-a1","exact_match":true}"#));
        assert!(ex(r#"{"server_name":"b"}"#));
        assert!(ex(r#"{"cluster":"c"}"#), "no cluster here");
        assert!(!ex(r#"{"tags":["edge"]}"#));
        assert!(ex(r#"{"tags":["edge","core"]}"#));
        assert!(!ex(r#"{"domain":"hub"}"#));
        assert!(ex(r#"{"domain":"leaf"}"#));
        assert!(parse::<Filter>(b"[1]").is_err());
    }

    #[test]
    fn bodies_parse_like_the_reference() {
        let c: Connz =
            parse(br#"{"sort":"subs","subscriptions":true,"limit":5,"auth":true,"extra":1}"#)
                .unwrap();
        let p = c.params(None);
        assert_eq!(p["sort"], "subs");
        assert_eq!(p["subs"], "1");
        assert_eq!(p["limit"], "5");
        assert_eq!(p["auth"], "1");
        assert!(!p.contains_key("acc"));
        assert_eq!(c.params(Some("A"))["acc"], "A");
        let c: Connz = parse(b"  ").unwrap();
        assert!(!c.params(None).contains_key("subs"));
        assert!(matches!(
            parse::<Connz>(br#"{"limit":"x"}"#),
            Err(SystemError::BadRequest(_))
        ));
        assert!(parse::<Connz>(b"{").is_err());
        let j: Jsz = parse(br#"{"account":"A","streams":true,"consumer":true}"#).unwrap();
        let p = j.params(None);
        assert_eq!((p["acc"].as_str(), p["consumers"].as_str()), ("A", "1"));
        let s: Subsz = parse(b"{}").unwrap();
        assert_eq!(s.params(Some("B"))["subs"], "1");
    }
}
