//! The next segment file, made ready before the roll that needs it.
//!
//! A roll stops every append of the log until the new active segment
//! exists. Creating one (open, size, first block reservation, fsync of the
//! file, fsync of the directory) took ~0.7 ms of a ~1.7 ms roll, measured
//! with 16 KiB `Never` appends into 64 MiB segments (a roll every ~35 ms).
//! So once the active segment is half full, a background task creates the
//! file under a temporary name; the roll only renames it (and, unless the
//! log is `Never`, syncs the directory). A leftover spare (a crash, a log
//! dropped without `close`) ends in `.tmp` and is removed at the next open.

use std::cell::{Cell, RefCell};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use crate::config::Durability;
use crate::error::Result;
use crate::io::{FaultInjector, LogFile, WriteMode};
use crate::log::Inner;

/// The spare's file name in the log's directory.
pub(crate) const SPARE_NAME: &str = "spare.seg.tmp";

pub(crate) struct Spare {
    pub file: LogFile,
    cap: u64,
    mode: WriteMode,
    dsync: bool,
}

#[derive(Default)]
pub(crate) struct SpareSlot {
    ready: RefCell<Option<Spare>>,
    busy: Cell<bool>,
}

impl Inner {
    /// Once the active segment is half full, starts making the next one.
    pub(crate) fn prepare_spare(self: &Rc<Self>) {
        let slot = &self.spare;
        if slot.busy.get() || slot.ready.borrow().is_some() || self.closed.get() {
            return;
        }
        let (half, cap, mode, dsync) = {
            let st = self.st.borrow();
            let a = st.active();
            (
                a.file.is_some() && a.len * 2 >= a.capacity,
                st.cfg.segment_size,
                st.cfg.write_mode,
                st.cfg.durability == Durability::Always,
            )
        };
        if !half {
            return;
        }
        slot.busy.set(true);
        let me = self.clone();
        self.background.spawn(async move {
            let r = make(&me.dir, me.faults.clone(), cap, mode, dsync).await;
            me.spare.busy.set(false);
            match r {
                Ok(s) if !me.closed.get() => *me.spare.ready.borrow_mut() = Some(s),
                Ok(s) => discard(s).await,
                Err(e) => tracing::debug!(dir = ?me.dir, error = %e, "spare segment not made"),
            }
        });
    }

    /// The spare renamed to `path`, if one is ready and made for a segment
    /// of `cap` bytes written as the log writes now.
    pub(crate) fn take_spare(
        &self,
        path: &Path,
        cap: u64,
        mode: WriteMode,
        dsync: bool,
    ) -> Option<LogFile> {
        let s = self.spare.ready.borrow_mut().take()?;
        if s.cap != cap || s.mode != mode || s.dsync != dsync {
            glommio::spawn_local(discard(s)).detach();
            return None;
        }
        let mut file = s.file;
        match std::fs::rename(file.path(), path) {
            Ok(()) => {
                file.set_path(path.to_path_buf());
                Some(file)
            }
            Err(e) => {
                tracing::warn!(dir = ?self.dir, error = %e, "spare segment not renamed");
                glommio::spawn_local(discard(Spare {
                    file,
                    cap,
                    mode,
                    dsync,
                }))
                .detach();
                None
            }
        }
    }

    /// Removes a ready spare (at close).
    pub(crate) async fn discard_spare(&self) {
        let s = self.spare.ready.borrow_mut().take();
        if let Some(s) = s {
            discard(s).await;
        }
    }
}

async fn make(
    dir: &Path,
    faults: Option<FaultInjector>,
    cap: u64,
    mode: WriteMode,
    dsync: bool,
) -> Result<Spare> {
    let path: PathBuf = dir.join(SPARE_NAME);
    let file = match mode {
        WriteMode::Buffered => LogFile::open_with(&path, faults, true, dsync).await?,
        WriteMode::Direct => LogFile::open_direct(&path, faults, true, dsync, 0).await?,
    };
    file.set_len(cap).await?;
    file.reserve(cap).await;
    // Its size is durable before the roll names it a segment.
    file.sync().await?;
    Ok(Spare {
        file,
        cap,
        mode,
        dsync,
    })
}

async fn discard(s: Spare) {
    let path = s.file.path().to_path_buf();
    let _ = s.file.close().await;
    let _ = std::fs::remove_file(path);
}
