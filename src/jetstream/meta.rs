//! The account-wide view shard 0 keeps: every stream's name, subjects and
//! placement (for overlap checks, names, placement of new streams), and
//! the API counters `$JS.API.INFO` reports.

use std::cell::RefCell;
use std::collections::BTreeMap;

use super::config::StreamConfig;
use super::Config;

pub struct Entry {
    pub shard: usize,
    pub config: StreamConfig,
}

pub struct Meta {
    pub registry: RefCell<BTreeMap<(u32, String), Entry>>,
    /// Names being created right now (a second create waits its turn).
    pub creating: RefCell<std::collections::BTreeSet<(u32, String)>>,
    /// By account id: (requests answered, of which errors).
    pub api: RefCell<BTreeMap<u32, (u64, u64)>>,
    shards: usize,
}

impl Meta {
    pub fn new(shards: usize) -> Meta {
        Meta {
            registry: RefCell::new(BTreeMap::new()),
            creating: RefCell::new(Default::default()),
            api: RefCell::new(BTreeMap::new()),
            shards,
        }
    }

    /// Records the streams found at start-up.
    pub fn register_stored(&self, cfg: &Config, accounts: &crate::account::Accounts) {
        let mut r = self.registry.borrow_mut();
        for (_, m) in &cfg.stored {
            let Some(acc) = accounts.id(&m.account) else {
                continue;
            };
            r.insert(
                (acc, m.config.name.clone()),
                Entry {
                    shard: super::placement::owner(m.shard, self.shards),
                    config: m.config.clone(),
                },
            );
        }
    }

    pub fn owner(&self, acc: u32, name: &str) -> Option<usize> {
        self.registry
            .borrow()
            .get(&(acc, name.to_string()))
            .map(|e| e.shard)
    }

    /// Streams per shard, for placing a new one.
    pub fn counts(&self) -> Vec<usize> {
        let mut c = vec![0; self.shards];
        for e in self.registry.borrow().values() {
            if let Some(x) = c.get_mut(e.shard) {
                *x += 1;
            }
        }
        c
    }

    /// Whether `subjects` overlap those of another stream of `acc`.
    pub fn overlaps(&self, acc: u32, name: &str, subjects: &[String]) -> bool {
        self.registry.borrow().iter().any(|((a, n), e)| {
            *a == acc
                && n != name
                && e.config.subjects.iter().any(|x| {
                    subjects
                        .iter()
                        .any(|s| crate::subject::filters_overlap(x.as_bytes(), s.as_bytes()))
                })
        })
    }

    /// Names of `acc`'s streams, sorted, optionally only those whose
    /// subjects overlap `filter`.
    pub fn names(&self, acc: u32, filter: Option<&str>) -> Vec<String> {
        self.registry
            .borrow()
            .iter()
            .filter(|((a, _), e)| {
                *a == acc
                    && filter.is_none_or(|f| {
                        e.config
                            .subjects
                            .iter()
                            .any(|s| crate::subject::filters_overlap(s.as_bytes(), f.as_bytes()))
                    })
            })
            .map(|((_, n), _)| n.clone())
            .collect()
    }

    /// nats-server's source cycle check: following local sources from
    /// `cfg` leads back to a stream already seen, through a filter its
    /// subjects overlap (a stream sourcing itself is the shortest cycle).
    pub fn source_cycle(&self, acc: u32, cfg: &StreamConfig) -> bool {
        let reg = self.registry.borrow();
        let mut to_visit: Vec<StreamConfig> = vec![cfg.clone()];
        let mut visited = std::collections::HashSet::new();
        while !to_visit.is_empty() {
            let c = to_visit.remove(0);
            visited.insert(c.name.clone());
            // Cycles hiding behind mirrors count too.
            for src in c.sources.iter().chain(c.mirror.iter()) {
                if src.external.is_some() {
                    continue;
                }
                if visited.contains(&src.name) {
                    let overlaps = src.filter_subject.is_empty()
                        || c.subjects.iter().any(|s| {
                            crate::subject::filters_overlap(
                                s.as_bytes(),
                                src.filter_subject.as_bytes(),
                            )
                        });
                    if overlaps {
                        return true;
                    }
                } else if let Some(e) = reg.get(&(acc, src.name.clone())) {
                    // The stream being checked is seen as it will be.
                    if e.config.name != cfg.name && visited.len() < 1024 {
                        to_visit.push(e.config.clone());
                    }
                }
            }
        }
        false
    }

    pub fn count_api(&self, acc: u32, error: bool) {
        let mut api = self.api.borrow_mut();
        let e = api.entry(acc).or_default();
        e.0 += 1;
        if error {
            e.1 += 1;
        }
    }
}
