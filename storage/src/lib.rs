//! `broker-edge-storage`: a segmented, append-only message log.
//!
//! Knows nothing of NATS. One [`Log`] lives in one directory and belongs to
//! one glommio executor (it is `!Send`, uses no locks). Appends go through
//! io_uring with group commit; reads hand out `bytes::Bytes` slices of
//! memory-mapped segments. See `storage/FORMAT.md` for the file format and
//! `docs/storage.md` for the design and the durability contract.
//!
//! ```no_run
//! use broker_edge_storage::{Filter, Log, LogConfig, Start};
//!
//! # async fn demo() -> broker_edge_storage::Result<()> {
//! // Inside a glommio executor:
//! let log = Log::open("/var/lib/broker-edge/streams/ORDERS", LogConfig::default()).await?;
//! let (seq, _ts) = log.append("orders.eu.new", b"", b"{\"id\":1}").await?; // durable now
//! let msg = log.get(seq)?; // zero-copy slices of the segment mapping
//! assert_eq!(&msg.payload[..], b"{\"id\":1}");
//! for m in log.scan(Start::Seq(1), Filter::one("orders.*.new")) {
//!     let _m = m?;
//! }
//! let _last = log.last_for(&Filter::one("orders.>"))?;
//! log.close().await?;
//! # Ok(())
//! # }
//! ```

mod background;
mod commit;
mod compact;
mod config;
mod error;
mod format;
mod index;
mod io;
mod log;
mod memory;
mod meta;
mod poll_ring;
mod recent;
mod recovery;
mod reserve;
mod roll;
mod segment;
mod spare;
mod state;
pub mod stats;
mod subject;
#[doc(hidden)]
pub mod testing;

pub use commit::{CommitStats, Expect, Ticket};
pub use config::{Discard, Durability, Limits, LogConfig};
pub use error::{Error, LimitKind, Result};
pub use io::{FaultInjector, WriteMode};
pub use log::{Log, LogState, Purge, Scan, Start};
pub use memory::retain_large_allocations;
pub use poll_ring::use_interrupt_completions;
pub use recovery::RecoveryReport;
pub use state::StoredMsg;
pub use subject::{matches as subject_matches, Filter};

/// Format constants, for tools and tests that inspect files directly.
pub mod layout {
    pub use crate::format::{FORMAT_VERSION, HEADER_LEN, RECORD_MAGIC};
}
