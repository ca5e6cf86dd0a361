#![recursion_limit = "256"]
//! Broker Edge: a NATS-compatible, thread-per-core message broker.
//!
//! The module tree follows the data path: `router` hands sockets to a
//! `shard`; a shard runs `client` connections speaking the `protocol`,
//! matches `subject`s in its `sublist`, and forwards to peer shards;
//! `jetstream` stores what streams capture in the `storage` crate's log.

pub mod account;
pub mod auth;
pub mod cli;
pub mod client;
pub mod config;
pub mod crash;
pub mod global;
pub mod jetstream;
pub mod leaf;
pub mod logging;
pub mod monitor;
pub mod notify;
pub mod options;
pub mod protocol;
pub mod router;
pub mod runtime;
pub mod server;
pub mod shard;
pub mod signal;
pub mod subject;
pub mod sublist;
pub mod system;
pub mod tls;
