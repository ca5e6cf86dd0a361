//! JetStream: streams on the shard-owned log, and the `$JS.API`.
//!
//! Each stream lives on one shard (`placement`), which owns its log and
//! captures its subjects with internal subscriptions, so a publish on a
//! captured subject is forwarded there like any message. The API is
//! served by shard 0 (`meta`): it holds the account-wide registry (names,
//! subjects, placement) and hands stream-specific requests to the owner
//! over the shard bus. Metadata files: `store`.

pub mod api;
pub mod config;
pub mod consumer;
pub mod dedup;
pub mod errors;
pub mod headers;
pub mod limits;
pub mod meta;
pub mod placement;
pub mod provision;
pub mod retention;
pub mod snapshot;
pub mod source;
pub mod store;
pub mod stream;
pub mod transform;
pub mod ttl;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;

use broker_edge_storage::Durability;

use crate::shard::Shard;
use stream::Stream;

/// JetStream as the whole server sees it (immutable after start-up).
pub struct Config {
    /// `<store_dir>/jetstream`.
    pub root: PathBuf,
    /// When an append counts as done (the PubAck waits for it).
    pub durability: Durability,
    pub strict: bool,
    pub domain: Option<String>,
    pub max_memory: i64,
    pub max_store: i64,
    /// By account id: JetStream enabled there.
    pub enabled: Vec<bool>,
    /// Streams found on disk at start-up.
    pub stored: Vec<(PathBuf, store::StreamMeta)>,
    /// By account id: its JetStream limits.
    pub account_limits: Vec<limits::AccountLimits>,
    /// Bytes stored, kept up to date by each shard for its streams.
    pub usage: limits::Usage,
    /// Any limit is set (usage is tracked only then).
    pub limited: bool,
    /// Complete once every shard knows of the API subscription: no shard
    /// takes clients before, so a first request never finds no responders.
    pub api_ready: Arc<crate::shard::link::SyncPoint>,
    _lock: store::StoreLock,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error("account {0:?} of stream in {1} is not configured")]
    UnknownAccount(String, PathBuf),
}

impl Config {
    /// Locks the store directory and reads what is stored there.
    pub fn load(
        opts: &crate::options::Options,
        accounts: &crate::account::Accounts,
        base: PathBuf,
        shards: usize,
    ) -> Result<Config, StartError> {
        let root = base.join("jetstream");
        let lock = store::lock(&root)?;
        // Restores that did not finish before the last stop.
        let _ = std::fs::remove_dir_all(root.join(".restore"));
        let mut stored = store::scan(&root)?;
        // Memory streams do not outlive the process (nats-server keeps no
        // definition of them either): what a previous run left goes.
        stored.retain(|(dir, m)| {
            if m.config.storage != config::StorageType::Memory {
                return true;
            }
            if let Err(e) = std::fs::remove_dir_all(dir) {
                tracing::warn!(
                    "JetStream: could not remove memory stream {}: {e}",
                    dir.display()
                );
            }
            false
        });
        let mut enabled = vec![false; accounts.len()];
        // Accounts of the config file and of preloaded account JWTs.
        let jwt_accounts = crate::auth::jwt::Trust::from_options(opts)
            .ok()
            .flatten()
            .map(|t| t.account_configs())
            .unwrap_or_default();
        let configured: Vec<&crate::options::AccountConfig> =
            opts.accounts.iter().chain(&jwt_accounts).collect();
        let explicit: Vec<&str> = configured
            .iter()
            .filter(|a| a.jetstream != crate::options::AccountJetStream::Disabled)
            .map(|a| a.name.as_str())
            .collect();
        let mut account_limits = vec![limits::AccountLimits::default(); accounts.len()];
        for a in &configured {
            let id = accounts.id(&a.name).map(|i| i as usize);
            if let Some(l) = id.and_then(|id| account_limits.get_mut(id)) {
                *l = limits::AccountLimits::from(&a.jetstream);
            }
        }
        for (id, e) in enabled.iter_mut().enumerate() {
            let name = accounts.name(id as u32);
            // As the reference: with no account naming JetStream, every
            // account but the system account has it.
            *e = if explicit.is_empty() {
                Some(id as u32) != accounts.system()
            } else {
                explicit.contains(&name)
            };
        }
        for (dir, m) in &stored {
            if !(0..accounts.len()).any(|i| accounts.name(i as u32) == m.account) {
                return Err(StartError::UnknownAccount(m.account.clone(), dir.clone()));
            }
        }
        let max_memory = opts.jetstream_max_memory.unwrap_or(-1);
        let max_store = opts.jetstream_max_store.unwrap_or(-1);
        let limited = max_memory > 0
            || max_store > 0
            || account_limits
                .iter()
                .any(|l| l.max_memory.is_some() || l.max_store.is_some());
        Ok(Config {
            account_limits,
            usage: limits::Usage::new(shards, accounts.len()),
            limited,
            root,
            durability: opts.jetstream_sync.unwrap_or(Durability::Always),
            // Strict by default, as nats-server since 2.11.
            strict: opts.jetstream_strict.unwrap_or(true),
            domain: opts.jetstream_domain.clone(),
            max_memory,
            max_store,
            enabled,
            stored,
            api_ready: crate::shard::link::SyncPoint::new(1),
            _lock: lock,
        })
    }
}

/// One shard's JetStream: the streams placed here (and, on shard 0, the
/// registry that answers the API).
pub struct JetStream {
    pub cfg: Arc<Config>,
    pub streams: RefCell<BTreeMap<(u32, String), Rc<Stream>>>,
    pub meta: Option<meta::Meta>,
}

impl JetStream {
    pub fn stream(&self, acc: u32, name: &str) -> Option<Rc<Stream>> {
        self.streams.borrow().get(&(acc, name.to_string())).cloned()
    }
}

/// Recomputes this shard's usage by account and storage type.
pub fn refresh_usage(shard: &Shard) {
    let Some(js) = shard.js.get() else { return };
    if !js.cfg.limited {
        return;
    }
    let n = shard.g.accounts.len();
    let mut sums = vec![[0u64; 2]; n];
    for ((acc, _), st) in js.streams.borrow().iter() {
        let i = match st.cfg().storage {
            config::StorageType::Memory => 0,
            config::StorageType::File => 1,
        };
        if let Some(s) = sums.get_mut(*acc as usize) {
            s[i] += st.log.state(false).bytes;
        }
    }
    for (acc, s) in sums.iter().enumerate() {
        js.cfg
            .usage
            .set(shard.id, acc as u32, config::StorageType::Memory, s[0]);
        js.cfg
            .usage
            .set(shard.id, acc as u32, config::StorageType::File, s[1]);
    }
}

/// Brings up JetStream on this shard: opens the streams placed here and,
/// on shard 0, starts serving the API. Runs before the shard takes
/// connections, so nothing sees a stream half-recovered.
pub async fn start(shard: &Rc<Shard>) {
    let Some(cfg) = shard.g.jetstream.get().cloned() else {
        return;
    };
    let n = shard.g.shards;
    let js = Rc::new(JetStream {
        cfg: cfg.clone(),
        streams: RefCell::new(BTreeMap::new()),
        meta: (shard.id == 0).then(|| meta::Meta::new(n)),
    });
    if let Some(m) = &js.meta {
        m.register_stored(&cfg, &shard.g.accounts);
    }
    let _ = shard.js.set(js.clone());
    let mut opened = 0usize;
    for (dir, m) in &cfg.stored {
        if placement::owner(m.shard, n) != shard.id {
            continue;
        }
        let Some(acc) = shard.g.accounts.id(&m.account) else {
            // Its account is gone from the configuration: left on disk,
            // never served under another account.
            tracing::warn!(
                "JetStream: stream {} of account {:?} not loaded: no such account",
                m.config.name,
                m.account
            );
            continue;
        };
        let mut m = m.clone();
        if m.shard != shard.id {
            // A changed shard count: record where the stream lives now.
            m.shard = shard.id;
            if let Err(e) = store::save_meta(dir, &m) {
                tracing::error!(
                    "JetStream: could not record placement of {}: {e}",
                    dir.display()
                );
            }
        }
        let name = m.config.name.clone();
        match Stream::open(shard, acc, dir.clone(), m, cfg.durability).await {
            Ok(s) => {
                js.streams.borrow_mut().insert((acc, name), s);
                opened += 1;
            }
            Err(e) => tracing::error!(
                "JetStream: could not open stream {name} in {}: {e}",
                dir.display()
            ),
        }
    }
    if opened > 0 {
        tracing::info!("JetStream: shard {} recovered {opened} streams", shard.id);
    }
    if cfg.limited {
        refresh_usage(shard);
        // Age limits and purges change usage without a publish: a slow
        // refresh keeps the figures honest (only when limits are set).
        let w = Rc::downgrade(shard);
        crate::runtime::spawn_local(async move {
            loop {
                crate::runtime::sleep(std::time::Duration::from_secs(1)).await;
                let Some(s) = w.upgrade() else { return };
                refresh_usage(&s);
            }
        })
        .detach();
    }
    if let Some(b) = shard.barrier() {
        b.wait().await;
    }
    if shard.id == 0 {
        api::subscribe(shard, &js);
        if let Some(b) = shard.barrier() {
            b.wait().await;
        }
        cfg.api_ready.done();
    }
    cfg.api_ready.wait().await;
}

/// Closes the streams of this shard at shutdown: what is staged becomes
/// durable (whatever the sync policy), consumer journals close, and no
/// log still has work on glommio's blocking pool when the executor goes
/// (see `broker_edge_storage::testing` for why that matters).
pub async fn stop(shard: &Rc<Shard>) {
    let Some(js) = shard.js.get().cloned() else {
        return;
    };
    let streams: Vec<Rc<Stream>> = std::mem::take(&mut *js.streams.borrow_mut())
        .into_values()
        .collect();
    for st in streams {
        st.stop_sources();
        st.stop_consumers(false).await;
        if let Err(e) = st.log.close().await {
            tracing::error!("JetStream: stream {} not closed cleanly: {e}", st.name);
        }
    }
}
