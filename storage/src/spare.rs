//! The next segment file, made ready before the roll that needs it.
//!
//! A roll stops every append of the log until the new active segment
//! exists. Creating one (open, size, first block reservation, fsync of the
//! file, fsync of the directory) took ~0.7 ms of a ~1.7 ms roll, measured
//! with 16 KiB `Never` appends into 64 MiB segments (a roll every ~35 ms).
//! So once the active segment is half full, a helper thread (glommio's
//! blocking pool) creates the file under a temporary name, sizes it,
//! reserves its first blocks and fsyncs it; the roll renames it, syncs the
//! directory (not under `Never`) and opens it. Each spare has a name of its
//! own (`spare-<pid>-<n>.seg.tmp`), so a log dropped without `close` while
//! its helper still works cannot touch the spare of a log reopened on the
//! same directory. A leftover spare (a crash) is removed at the next open.
//! A log that stops half way through a segment keeps its spare (sparse but
//! for the first reserved step, `reserve.rs`) until it rolls or closes.

use std::cell::{Cell, RefCell};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::config::Durability;
use crate::io::WriteMode;
use crate::log::Inner;

/// Whether `name` is a spare segment file.
pub(crate) fn is_spare(name: &str) -> bool {
    name.starts_with("spare-") && name.ends_with(".seg.tmp")
}

fn spare_path(dir: &Path) -> PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    dir.join(format!("spare-{}-{n}.seg.tmp", std::process::id()))
}

struct Spare {
    path: PathBuf,
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
        let path = spare_path(&self.dir);
        let weak = Rc::downgrade(self);
        self.background.spawn(async move {
            let p = path.clone();
            let r = glommio::executor()
                .spawn_blocking(move || make(&p, cap))
                .await;
            let Some(me) = weak.upgrade() else {
                let _ = std::fs::remove_file(&path);
                return;
            };
            me.spare.busy.set(false);
            match r {
                Ok(()) if !me.closed.get() => {
                    *me.spare.ready.borrow_mut() = Some(Spare {
                        path,
                        cap,
                        mode,
                        dsync,
                    })
                }
                Ok(()) => {
                    let _ = std::fs::remove_file(&path);
                }
                Err(e) => {
                    let _ = std::fs::remove_file(&path);
                    tracing::debug!(path = ?path, error = %e, "spare segment not made");
                }
            }
        });
    }

    /// Renames the spare to `path` if one is ready and made for a segment
    /// of `cap` bytes written as the log writes now; true if it did.
    pub(crate) fn take_spare(&self, path: &Path, cap: u64, mode: WriteMode, dsync: bool) -> bool {
        let Some(s) = self.spare.ready.borrow_mut().take() else {
            return false;
        };
        if s.cap != cap && s.mode == mode && s.dsync == dsync {
            // A record larger than a segment gets a segment of its own
            // size; the spare waits for the next ordinary roll.
            *self.spare.ready.borrow_mut() = Some(s);
            return false;
        }
        if s.cap != cap || s.mode != mode || s.dsync != dsync {
            let _ = std::fs::remove_file(&s.path);
            return false;
        }
        match std::fs::rename(&s.path, path) {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(path = ?s.path, error = %e, "spare segment not renamed");
                let _ = std::fs::remove_file(&s.path);
                false
            }
        }
    }

    /// Removes a ready spare (at close).
    pub(crate) fn discard_spare(&self) {
        if let Some(s) = self.spare.ready.borrow_mut().take() {
            let _ = std::fs::remove_file(&s.path);
        }
    }
}

/// Creates the spare at full size, reserves its first blocks (best effort,
/// as in `reserve.rs`) and makes that durable. Runs on a helper thread.
fn make(path: &Path, cap: u64) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(path)?;
    f.set_len(cap)?;
    // SAFETY: plain syscall on a descriptor `f` owns.
    let _ = unsafe {
        libc::fallocate(
            f.as_raw_fd(),
            libc::FALLOC_FL_KEEP_SIZE,
            0,
            crate::reserve::STEP.min(cap) as libc::off_t,
        )
    };
    f.sync_all()
}
