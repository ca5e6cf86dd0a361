//! Fuzz the stream-restore path (`$JS.API.STREAM.RESTORE` chunks come
//! from a client): `read_archive` never panics, never creates anything
//! but regular files directly under `<dir>/msgs/`, never writes outside
//! `<dir>`, and never turns a small input into a large file.
//!
//! Input: the first byte is a mode, the rest the payload.
//!   bit 0   0: the payload is the raw Snappy-framed stream (exercises the
//!              frame decoder); 1: the payload is a tar archive that the
//!              target frames with Snappy itself (exercises the tar
//!              reader and the entry checks).
//!   bits 1-7 chunk size the stream is sent in (0 = one chunk).
//!
//! `JS_FUZZ_SKIP_KNOWN=1` skips the size checks, which fail on the known
//! bug (regressions/js_snapshot_archive/: GNU sparse entries expand to
//! files of any size), so a run can look past it; the path and file-type
//! checks stay.
#![no_main]

use std::path::Path;
use std::sync::Once;

use broker_edge::jetstream::snapshot::{read_archive, SnapshotError};
use libfuzzer_sys::fuzz_target;

/// Files over this size fail with EFBIG instead of filling the disk.
const FILE_CAP: u64 = 64 << 20;

fn skip_known() -> bool {
    static SKIP: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *SKIP.get_or_init(|| std::env::var_os("JS_FUZZ_SKIP_KNOWN").is_some_and(|v| v == "1"))
}

fn setup() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
        let lim = libc::rlimit {
            rlim_cur: FILE_CAP,
            rlim_max: FILE_CAP,
        };
        libc::setrlimit(libc::RLIMIT_FSIZE, &lim);
    });
}

/// Where sandboxes live: tmpfs if there is one (read_archive fsyncs).
fn scratch() -> &'static Path {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        shm
    } else {
        Path::new("/tmp")
    }
}

/// Every entry under `root`, without following links.
fn walk(root: &Path, out: &mut Vec<(std::path::PathBuf, std::fs::FileType)>) {
    for e in std::fs::read_dir(root).unwrap() {
        let e = e.unwrap();
        let t = e.file_type().unwrap();
        out.push((e.path(), t));
        if t.is_dir() {
            walk(&e.path(), out);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    setup();
    let Some((&mode, payload)) = data.split_first() else {
        return;
    };
    let stream = if mode & 1 == 1 {
        let mut framed = Vec::new();
        {
            use std::io::Write;
            let mut enc = snap::write::FrameEncoder::new(&mut framed);
            enc.write_all(payload).unwrap();
            enc.flush().unwrap();
        }
        framed
    } else {
        payload.to_vec()
    };
    let chunk = match (mode >> 1) as usize {
        0 => stream.len().max(1),
        n => n,
    };

    // <outer>/dest is the restore dir; <outer>/canary must stay alone
    // beside it, so `../` escapes show.
    let outer = tempfile::Builder::new()
        .prefix("js-restore-fuzz")
        .tempdir_in(scratch())
        .unwrap();
    let dest = outer.path().join("dest");
    std::fs::create_dir(&dest).unwrap();
    std::fs::write(outer.path().join("canary"), b"c").unwrap();

    let (tx, rx) = async_channel::unbounded();
    for c in stream.chunks(chunk) {
        tx.send_blocking(c.to_vec()).unwrap();
    }
    drop(tx);
    // The cap a restore gets from storage left; generous here.
    let res = read_archive(&dest, rx, 1 << 30);

    // Checked in a closure so the sandbox is removed before a panic
    // (libFuzzer aborts: no destructor would run).
    let check = || -> Result<(), String> {
        let sized = !skip_known();
        if let (true, Err(SnapshotError::Io(e))) = (sized, &res) {
            // EFBIG: a file grew past FILE_CAP from a few KiB of input.
            if e.raw_os_error() == Some(libc::EFBIG) {
                return Err(format!(
                    "{} input bytes expand to a file over {FILE_CAP} bytes",
                    data.len()
                ));
            }
        }
        if let (true, Ok(total)) = (sized, &res) {
            // Snappy expands at most ~21x (a 64 KiB chunk of copies);
            // tar adds nothing: what is written is bounded by what was
            // sent.
            if *total > 32 * stream.len() as u64 + 65536 {
                return Err(format!(
                    "{} stream bytes restored as {total} bytes",
                    stream.len()
                ));
            }
        }
        let mut all = Vec::new();
        walk(outer.path(), &mut all);
        let msgs = dest.join("msgs");
        let canary = outer.path().join("canary");
        for (p, t) in &all {
            if p == &dest || p == &msgs {
                if !t.is_dir() {
                    return Err(format!("not a directory: {}", p.display()));
                }
            } else if p == &canary {
                if !t.is_file() || std::fs::read(p).ok().as_deref() != Some(b"c") {
                    return Err("file beside the restore dir was replaced".into());
                }
            } else if p.parent() != Some(msgs.as_path()) {
                return Err(format!("entry outside <dir>/msgs: {}", p.display()));
            } else if !t.is_file() {
                return Err(format!("not a regular file: {} ({t:?})", p.display()));
            }
        }
        if !all.iter().any(|(p, _)| p == &canary) {
            return Err("file beside the restore dir was removed".into());
        }
        Ok(())
    };
    let verdict = check();
    drop(outer);
    if let Err(m) = verdict {
        panic!("{m} (result: {res:?})");
    }
});
