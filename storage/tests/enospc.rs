//! A real full filesystem: a 2 MiB tmpfs (where the log writes through the
//! page cache) and a 16 MiB loop-mounted ext4 (O_DIRECT), both skipped
//! where mounting is not permitted. Appends fail with `NoSpace`, reads keep
//! working, and appends work again once a purge frees space.

mod common;

use std::path::PathBuf;
use std::process::Command;

use broker_edge_storage::{Durability, Error, Log, LogConfig, Purge};
use common::{payload, run};

struct Mount(PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        // Lazy: glommio may close the log's descriptors only when the
        // process exits, and a busy mount would otherwise stay behind.
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        let _ = std::fs::remove_dir(&self.0);
    }
}

fn mount_small_tmpfs() -> Option<Mount> {
    let dir = std::env::temp_dir().join(format!("be-enospc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).ok()?;
    let ok = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=2m", "tmpfs"])
        .arg(&dir)
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        let _ = std::fs::remove_dir(&dir);
        return None;
    }
    Some(Mount(dir))
}

/// A 16 MiB ext4 image, loop-mounted: O_DIRECT works there.
fn mount_small_ext4() -> Option<Mount> {
    let base = std::env::temp_dir().join(format!("be-enospc-ext4-{}", std::process::id()));
    let img = base.with_extension("img");
    std::fs::create_dir_all(&base).ok()?;
    let made = std::fs::File::create(&img)
        .and_then(|f| f.set_len(16 << 20))
        .is_ok()
        && Command::new("mkfs.ext4")
            .args(["-q", "-F"])
            .arg(&img)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
    let ok = made
        && Command::new("mount")
            .args(["-o", "loop"])
            .arg(&img)
            .arg(&base)
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
    // Mounted or not, the image is no longer needed by name.
    let _ = std::fs::remove_file(&img);
    if !ok {
        let _ = std::fs::remove_dir(&base);
        return None;
    }
    Some(Mount(base))
}

#[test]
fn full_tmpfs_fails_appends_then_recovers() {
    on_full_fs(mount_small_tmpfs(), "a tmpfs");
}

#[test]
fn full_ext4_fails_direct_appends_then_recovers() {
    on_full_fs(mount_small_ext4(), "an ext4 image");
}

fn on_full_fs(mount: Option<Mount>, what: &str) {
    let Some(m) = mount else {
        eprintln!("skipped: cannot mount {what} here");
        return;
    };
    fill_then_recover(m.0.join("log"));
    drop(m);
}

fn fill_then_recover(p: PathBuf) {
    run(async move {
        let cfg = LogConfig {
            durability: Durability::Always,
            segment_size: 256 << 10,
            ..Default::default()
        };
        let log = Log::open(&p, cfg.clone()).await.unwrap();
        let mut acked = Vec::new();
        let err = loop {
            let n = acked.len() as u64 + 1;
            match log.append("fill", b"", &payload(n, 4000)).await {
                Ok((s, _)) => acked.push(s),
                Err(e) => break e,
            }
            assert!(acked.len() < 10_000, "filesystem never filled");
        };
        assert!(matches!(err, Error::NoSpace), "{err:?}");
        assert!(acked.len() > 100);
        // Reads still work, and the state did not move.
        let st = log.state(false);
        assert_eq!(st.msgs, acked.len() as u64);
        for s in &acked {
            assert_eq!(&log.get(*s).unwrap().payload[..], &payload(*s, 4000)[..]);
        }
        // Still full. Space the log set aside before the disk filled (the
        // next segment, made ahead, and blocks reserved ahead of the
        // writes) may take a few more records; then appends are refused
        // again, cleanly.
        let first_refusal = acked.len();
        loop {
            let n = acked.len() as u64 + 1;
            match log.append("fill", b"", &payload(n, 4000)).await {
                Ok((s, _)) => acked.push(s),
                Err(e) => {
                    assert!(matches!(e, Error::NoSpace), "{e:?}");
                    break;
                }
            }
            assert!(
                acked.len() - first_refusal < 200,
                "a full filesystem kept taking appends"
            );
        }
        assert_eq!(log.state(false).msgs, acked.len() as u64);
        // Free space by purging the older half; appends work again.
        let half = acked[acked.len() / 2];
        log.purge(Purge {
            up_to: Some(half),
            ..Default::default()
        })
        .await
        .unwrap();
        let (s, _) = log
            .append("fill", b"", &payload(acked.len() as u64 + 1, 4000))
            .await
            .unwrap();
        assert_eq!(s, acked.last().unwrap() + 1);
        drop(log);
        let log = Log::open(&p, cfg).await.unwrap();
        let r = log.recovery_report();
        assert!(r.corrupt.is_empty(), "{r:?}");
        for q in half..=s {
            assert_eq!(&log.get(q).unwrap().payload[..], &payload(q, 4000)[..]);
        }
        assert_eq!(log.state(false).first_seq, half);
    });
}
