//! Accounts: isolated subject spaces, and the stream and service
//! imports/exports that connect them.
//!
//! Isolation costs nothing in the sublist: when accounts are configured,
//! every subject is stored and matched under a first token naming its
//! account (`$A<id>`), so a `>` subscription in one account can never see
//! another's messages. Clients never see that token. Without accounts the
//! subjects are used as they are.

use std::collections::HashMap;

use bytes::Bytes;

use crate::options::{ExportKind, Options};
use crate::subject;

pub mod responses;

pub use responses::{ResponseKind, Responses};

pub const GLOBAL: &str = "$G";
pub const SYSTEM: &str = "$SYS";

/// How an imported subject appears in the importing account.
#[derive(Debug, Clone, PartialEq)]
enum Mapping {
    Same,
    Prefix(String),
    To(String),
}

/// Account `importer` sees messages published in the exporting account on
/// `filter`, mapped.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamImport {
    pub importer: u32,
    filter: String,
    map: Mapping,
}

/// Account `exporter` serves requests that the importer publishes on
/// `local` (mapped back to the exporter's `remote` subject).
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceImport {
    pub exporter: u32,
    local: String,
    remote: String,
    /// The export's response type and threshold.
    pub response: ResponseKind,
    pub threshold: std::time::Duration,
}

/// Where an imported service request goes.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceTarget {
    pub exporter: u32,
    pub subject: String,
    pub response: ResponseKind,
    pub threshold: std::time::Duration,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum AccountError {
    #[error("import of {subject:?} from account {from:?}: no such account")]
    NoAccount { from: String, subject: String },
    #[error("system account {0:?} is not a configured account")]
    NoSystemAccount(String),
    #[error("account {importer:?} is not allowed to import {subject:?} from account {from:?}")]
    NotExported {
        importer: String,
        from: String,
        subject: String,
    },
}

/// Equal when the names (so the ids), imports, exports and limits are: a
/// reload may change users but not this (see `server::reload`).
#[derive(Debug, Default, PartialEq)]
pub struct Accounts {
    names: Vec<String>,
    by_name: HashMap<String, u32>,
    /// Prefix subjects with the account token (more than one account).
    pub multi: bool,
    /// By exporting account: who imports its streams.
    streams: Vec<Vec<StreamImport>>,
    /// By importing account: the services it imports.
    services: Vec<Vec<ServiceImport>>,
    /// By account: its limits (config `limits {}` or account JWT).
    limits: Vec<crate::options::AccountLimits>,
    /// The system account (`system_account`, else `$SYS` when accounts
    /// are configured); `None` with no accounts: nobody can be in it.
    system: Option<u32>,
}

/// An account limit: absent or negative means unlimited.
fn limit(v: Option<i64>) -> Option<usize> {
    v.filter(|&n| n >= 0).map(|n| n as usize)
}

/// Replaces the wildcards of `to` with the tokens of `subject` that
/// `filter`'s wildcards matched (in order); `>` takes the rest.
fn map_to(filter: &str, to: &str, subject: &str) -> String {
    let f: Vec<&str> = filter.split('.').collect();
    let s: Vec<&str> = subject.split('.').collect();
    let mut captured: Vec<String> = Vec::new();
    for (i, t) in f.iter().enumerate() {
        match *t {
            "*" => captured.push(s.get(i).copied().unwrap_or_default().to_string()),
            ">" => captured.push(s.get(i..).map(|r| r.join(".")).unwrap_or_default()),
            _ => {}
        }
    }
    if captured.is_empty() || !subject::has_wildcard(to.as_bytes()) {
        return to.to_string();
    }
    let mut it = captured.into_iter();
    to.split('.')
        .map(|t| match t {
            "*" | ">" => it.next().unwrap_or_default(),
            other => other.to_string(),
        })
        .collect::<Vec<_>>()
        .join(".")
}

impl Accounts {
    pub fn new(opts: &Options) -> Result<Accounts, AccountError> {
        let mut a = Accounts::default();
        a.add(GLOBAL);
        // Operator mode: preloaded account JWTs are accounts named by
        // their public key (a bad chain fails in `Authenticator::new`).
        let jwt_accounts = crate::auth::jwt::Trust::from_options(opts)
            .ok()
            .flatten()
            .map(|t| t.account_configs())
            .unwrap_or_default();
        let all: Vec<_> = opts.accounts.iter().chain(&jwt_accounts).collect();
        for acc in &all {
            a.add(&acc.name);
        }
        // With accounts, the system account exists too (as in the
        // reference): the one `system_account` names, else `$SYS`.
        let named = opts.system_account.as_deref().filter(|n| *n != SYSTEM);
        if let Some(n) = named {
            if !a.by_name.contains_key(n) {
                // The reference will not start; in operator mode the
                // operator names it, and an account it did not preload
                // leaves the default in place.
                if opts.trusted_operators.is_empty() {
                    return Err(AccountError::NoSystemAccount(n.to_string()));
                }
            }
        }
        let named = named.filter(|n| a.by_name.contains_key(*n));
        if a.names.len() > 1 && named.is_none() {
            a.add(SYSTEM);
        }
        a.system = match named {
            Some(n) => a.by_name.get(n).copied(),
            None => a.by_name.get(SYSTEM).copied(),
        };
        a.multi = a.names.len() > 1;
        a.limits = vec![Default::default(); a.names.len()];
        for acc in &all {
            a.limits[a.by_name[&acc.name] as usize] = acc.limits.clone();
        }
        a.streams = vec![Vec::new(); a.names.len()];
        a.services = vec![Vec::new(); a.names.len()];
        for acc in &all {
            let importer = a.by_name[&acc.name];
            for imp in &acc.imports {
                let Some(&from) = a.by_name.get(&imp.account) else {
                    return Err(AccountError::NoAccount {
                        from: imp.account.clone(),
                        subject: imp.subject.clone(),
                    });
                };
                let exporter = all.iter().find(|x| x.name == imp.account);
                let export = exporter.and_then(|x| {
                    x.exports.iter().find(|e| {
                        e.kind == imp.kind
                            && subject::filters_overlap(
                                e.subject.as_bytes(),
                                imp.subject.as_bytes(),
                            )
                            && (e.accounts.is_empty() || e.accounts.contains(&acc.name))
                    })
                });
                let Some(export) = export else {
                    return Err(AccountError::NotExported {
                        importer: acc.name.clone(),
                        from: imp.account.clone(),
                        subject: imp.subject.clone(),
                    });
                };
                match imp.kind {
                    ExportKind::Stream => {
                        let map = match (&imp.prefix, &imp.to) {
                            (Some(p), _) => Mapping::Prefix(p.clone()),
                            (None, Some(t)) => Mapping::To(t.clone()),
                            _ => Mapping::Same,
                        };
                        a.streams[from as usize].push(StreamImport {
                            importer,
                            filter: imp.subject.clone(),
                            map,
                        });
                    }
                    ExportKind::Service => {
                        a.services[importer as usize].push(ServiceImport {
                            exporter: from,
                            local: imp.to.clone().unwrap_or_else(|| imp.subject.clone()),
                            remote: imp.subject.clone(),
                            // Checked when the configuration was read.
                            response: ResponseKind::parse(
                                export.response_type.as_deref().unwrap_or(""),
                            )
                            .unwrap_or(ResponseKind::Singleton),
                            threshold: export
                                .response_threshold
                                .unwrap_or(responses::DEFAULT_THRESHOLD),
                        });
                    }
                }
            }
        }
        Ok(a)
    }

    fn add(&mut self, name: &str) {
        if !self.by_name.contains_key(name) {
            self.by_name
                .insert(name.to_string(), self.names.len() as u32);
            self.names.push(name.to_string());
        }
    }

    /// The system account's id (see [`Accounts::new`]).
    pub fn system(&self) -> Option<u32> {
        self.system
    }

    /// The system account's name as `/accountz` shows it (`$SYS` when
    /// there is none to log into, as the reference's default).
    pub fn system_name(&self) -> &str {
        self.system.map_or(SYSTEM, |id| self.name(id))
    }

    /// Every account's name, in id order.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// (max connections, max subscriptions per connection, max payload)
    /// of account `id`; `None` is unlimited.
    pub fn limits(&self, id: u32) -> (Option<usize>, Option<usize>, Option<usize>) {
        match self.limits.get(id as usize) {
            Some(l) => (
                limit(l.max_connections),
                limit(l.max_subscriptions),
                limit(l.max_payload),
            ),
            None => (None, None, None),
        }
    }

    /// The id of account `name`; an unknown name is never mapped to
    /// another account.
    pub fn id(&self, name: &str) -> Option<u32> {
        self.by_name.get(name).copied()
    }

    pub fn name(&self, id: u32) -> &str {
        self.names.get(id as usize).map_or(GLOBAL, String::as_str)
    }

    /// The internal subject for `subject` in account `acc`, written to `out`.
    pub fn key<'a>(&self, acc: u32, subject: &'a [u8], out: &'a mut Vec<u8>) -> &'a [u8] {
        if !self.multi {
            return subject;
        }
        out.clear();
        out.extend_from_slice(b"$A");
        out.extend_from_slice(itoa::Buffer::new().format(acc).as_bytes());
        out.push(b'.');
        out.extend_from_slice(subject);
        out
    }

    /// The account and subject an internal subject (a `key`) stands for.
    pub fn split_key<'a>(&self, key: &'a [u8]) -> (u32, &'a [u8]) {
        if !self.multi {
            return (0, key);
        }
        let parsed = key.strip_prefix(b"$A").and_then(|rest| {
            let dot = rest.iter().position(|&c| c == b'.')?;
            let id = std::str::from_utf8(&rest[..dot]).ok()?.parse().ok()?;
            Some((id, &rest[dot + 1..]))
        });
        parsed.unwrap_or((u32::MAX, key))
    }

    /// `key` as an owned value (for subscriptions).
    pub fn key_bytes(&self, acc: u32, subject: &Bytes) -> Bytes {
        if !self.multi {
            return subject.clone();
        }
        let mut out = Vec::new();
        Bytes::copy_from_slice(self.key(acc, subject, &mut out))
    }

    /// Where a message published in `acc` on `subject` is also delivered:
    /// (importing account, subject as it sees it).
    pub fn stream_targets(&self, acc: u32, subject: &str) -> Vec<(u32, String)> {
        let Some(list) = self.streams.get(acc as usize) else {
            return Vec::new();
        };
        list.iter()
            .filter(|i| subject::matches(i.filter.as_bytes(), subject.as_bytes()))
            .map(|i| {
                let mapped = match &i.map {
                    Mapping::Same => subject.to_string(),
                    Mapping::Prefix(p) => format!("{p}.{subject}"),
                    Mapping::To(t) => map_to(&i.filter, t, subject),
                };
                (i.importer, mapped)
            })
            .collect()
    }

    /// A request published in `acc` on `subject` that a service import
    /// sends to another account.
    pub fn service_target(&self, acc: u32, subject: &str) -> Option<ServiceTarget> {
        let list = self.services.get(acc as usize)?;
        list.iter()
            .find(|i| subject::matches(i.local.as_bytes(), subject.as_bytes()))
            .map(|i| ServiceTarget {
                exporter: i.exporter,
                subject: map_to(&i.local, &i.remote, subject),
                response: i.response,
                threshold: i.threshold,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::{AccountConfig, ExportConfig, ImportConfig};

    fn acc(name: &str, exports: Vec<ExportConfig>, imports: Vec<ImportConfig>) -> AccountConfig {
        AccountConfig {
            name: name.into(),
            nkey: None,
            jetstream: Default::default(),
            exports,
            imports,
            default_permissions: None,
            limits: Default::default(),
        }
    }

    fn export(kind: ExportKind, subject: &str) -> ExportConfig {
        ExportConfig {
            kind,
            subject: subject.into(),
            accounts: vec![],
            response_type: None,
            response_threshold: None,
        }
    }

    fn import(
        kind: ExportKind,
        from: &str,
        subject: &str,
        to: Option<&str>,
        prefix: Option<&str>,
    ) -> ImportConfig {
        ImportConfig {
            kind,
            account: from.into(),
            subject: subject.into(),
            to: to.map(Into::into),
            prefix: prefix.map(Into::into),
            share: false,
        }
    }

    #[test]
    fn keys_isolate_accounts() {
        let opts = Options {
            accounts: vec![acc("A", vec![], vec![]), acc("B", vec![], vec![])],
            ..Options::default()
        };
        let a = Accounts::new(&opts).unwrap();
        assert!(a.multi);
        let (ia, ib) = (a.id("A").unwrap(), a.id("B").unwrap());
        assert_ne!(ia, ib);
        assert_eq!(a.name(a.id(SYSTEM).unwrap()), SYSTEM);
        assert_ne!(a.id(SYSTEM), Some(0));
        assert_eq!(a.id("nope"), None, "unknown names map to no account");
        let mut buf = Vec::new();
        let ka = a.key(ia, b"foo", &mut buf).to_vec();
        let kb = a.key(ib, b"foo", &mut buf).to_vec();
        assert_ne!(ka, kb);
        let filter = a.key_bytes(ia, &Bytes::from_static(b">"));
        assert!(subject::matches(&filter, &ka));
        assert!(!subject::matches(&filter, &kb));
        let single = Accounts::new(&Options::default()).unwrap();
        assert!(!single.multi);
        assert_eq!(single.key(0, b"foo", &mut buf), b"foo");
    }

    #[test]
    fn imports_need_a_matching_export() {
        let opts = Options {
            accounts: vec![
                acc(
                    "A",
                    vec![
                        export(ExportKind::Stream, "events.>"),
                        export(ExportKind::Service, "svc.>"),
                    ],
                    vec![],
                ),
                acc(
                    "B",
                    vec![],
                    vec![
                        import(ExportKind::Stream, "A", "events.>", None, Some("a")),
                        import(ExportKind::Service, "A", "svc.time", Some("time"), None),
                    ],
                ),
            ],
            ..Options::default()
        };
        let a = Accounts::new(&opts).unwrap();
        let (ia, ib) = (a.id("A").unwrap(), a.id("B").unwrap());
        assert_eq!(
            a.stream_targets(ia, "events.x"),
            vec![(ib, "a.events.x".to_string())]
        );
        assert!(a.stream_targets(ia, "other").is_empty());
        let t = a.service_target(ib, "time").unwrap();
        assert_eq!((t.exporter, t.subject.as_str()), (ia, "svc.time"));
        assert_eq!(t.response, ResponseKind::Singleton);
        assert_eq!(t.threshold, responses::DEFAULT_THRESHOLD);
        let bad = Options {
            accounts: vec![
                acc("A", vec![], vec![]),
                acc(
                    "B",
                    vec![],
                    vec![import(ExportKind::Stream, "A", "x", None, None)],
                ),
            ],
            ..Options::default()
        };
        assert!(matches!(
            Accounts::new(&bad),
            Err(AccountError::NotExported { .. })
        ));
    }

    #[test]
    fn the_system_account() {
        let mut opts = Options {
            accounts: vec![acc("A", vec![], vec![]), acc("SYS", vec![], vec![])],
            ..Options::default()
        };
        let a = Accounts::new(&opts).unwrap();
        assert_eq!(a.system(), a.id(SYSTEM), "the default, beside the others");
        opts.system_account = Some("SYS".into());
        let a = Accounts::new(&opts).unwrap();
        assert_eq!(a.system(), a.id("SYS"));
        assert_eq!(a.system_name(), "SYS");
        assert_eq!(a.id(SYSTEM), None, "no $SYS beside a named system account");
        opts.system_account = Some("NOPE".into());
        assert_eq!(
            Accounts::new(&opts),
            Err(AccountError::NoSystemAccount("NOPE".into()))
        );
        let single = Accounts::new(&Options::default()).unwrap();
        assert_eq!(single.system(), None);
        assert_eq!(single.system_name(), SYSTEM);
    }

    #[test]
    fn mappings() {
        assert_eq!(map_to("a.*.c", "x.*", "a.b.c"), "x.b");
        assert_eq!(map_to("a.>", "z.>", "a.b.c"), "z.b.c");
        assert_eq!(map_to("a.b", "lit", "a.b"), "lit");
    }
}
