//! A durable consumer's state on disk: a small log of its own (the
//! storage crate's, so torn tails, checksums and the durability policy
//! are the stream's), holding batches of state events and, now and then,
//! a snapshot of the whole state after which older records are purged.

use std::path::Path;

use bytes::Bytes;

use broker_edge_storage::{Durability, Filter, Log, LogConfig, Start};

use super::state::{Event, State};

const EVENTS: &str = "e";
const SNAPSHOT: &str = "s";
/// Records between snapshots.
const SNAPSHOT_EVERY: u64 = 512;

pub struct Journal {
    log: Log,
    since_snapshot: std::cell::Cell<u64>,
}

impl Journal {
    /// Opens the journal in `dir` and rebuilds the state it holds
    /// (`None`: nothing recorded yet).
    pub async fn open(
        dir: &Path,
        durability: Durability,
        tracks_acks: bool,
    ) -> Result<(Journal, Option<State>), broker_edge_storage::Error> {
        let cfg = LogConfig {
            durability,
            segment_size: 1 << 20,
            recent_bytes: 0,
            ..LogConfig::default()
        };
        let log = Log::open(dir, cfg).await?;
        let mut state: Option<State> = None;
        let mut from = 1;
        if let Ok(Some(snap)) = log.last_for(&Filter::one(SNAPSHOT)) {
            match State::decode(&snap.payload, tracks_acks) {
                Some(s) => {
                    state = Some(s);
                    from = snap.seq + 1;
                }
                None => tracing::warn!(
                    "JetStream: consumer snapshot in {} is malformed; replaying events",
                    dir.display()
                ),
            }
        }
        let mut n = 0;
        for m in log.scan(Start::Seq(from), Filter::one(EVENTS)).flatten() {
            let Some(events) = Event::decode_all(&m.payload) else {
                tracing::warn!(
                    "JetStream: skipping a malformed consumer journal record in {}",
                    dir.display()
                );
                continue;
            };
            let s = state.get_or_insert_with(|| State::new(tracks_acks));
            for e in events {
                s.apply(e);
            }
            n += 1;
        }
        Ok((
            Journal {
                log,
                since_snapshot: std::cell::Cell::new(n),
            },
            state,
        ))
    }

    /// Appends one batch of events; resolves once it is as durable as the
    /// policy promises. Takes a snapshot of `state` (the state after the
    /// batch) every so often and drops what it covers.
    pub async fn append(
        &self,
        batch: Vec<u8>,
        state: impl FnOnce() -> Vec<u8>,
    ) -> Result<(), broker_edge_storage::Error> {
        let n = self.since_snapshot.get() + 1;
        if n < SNAPSHOT_EVERY {
            self.since_snapshot.set(n);
            self.log
                .append_bytes(
                    Bytes::from_static(EVENTS.as_bytes()),
                    Bytes::new(),
                    batch.into(),
                )
                .await?;
            return Ok(());
        }
        self.since_snapshot.set(0);
        // The snapshot already includes this batch.
        let (seq, _) = self
            .log
            .append_bytes(
                Bytes::from_static(SNAPSHOT.as_bytes()),
                Bytes::new(),
                state().into(),
            )
            .await?;
        self.log
            .purge(broker_edge_storage::Purge {
                subject: None,
                up_to: Some(seq),
                keep: None,
            })
            .await?;
        Ok(())
    }

    pub async fn close(&self) {
        let _ = self.log.close().await;
    }
}
