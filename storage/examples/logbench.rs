//! Storage benchmark: append throughput per record size and durability
//! policy, read throughput (warm/cold maps), recovery time, and the
//! machine's own limits (O_DIRECT sequential write, fdatasync latency) plus
//! the buffered-vs-O_DIRECT coherence cost, all measured in one run.
//!
//!     cargo run --release -p broker-edge-storage --example logbench
//!
//! Environment: LOGBENCH_DIR (default target/logbench), LOGBENCH_SECS per
//! append case (default 2), LOGBENCH_RECOVERY_MSGS (default 10_000_000),
//! LOGBENCH_TASKS, LOGBENCH_SIZES, LOGBENCH_POLICIES, LOGBENCH_MODES (lists),
//! LOGBENCH_SKIP_MACHINE and LOGBENCH_SKIP_TAIL (skip those sections);
//! LOGBENCH_TARGETS=1 runs only the targets as LOGBENCH_ROUNDS (3)
//! interleaved rounds of disk reference and log; LOGBENCH_DISK=1 only the
//! disk reference at 1, 2 and 4 writes in flight, of LOGBENCH_CHUNK bytes
//! (default 1 MiB); LOGBENCH_RECOVERY_ONLY=1 only the read and recovery
//! section; LOGBENCH_SEGMENT_MIB the logs' segment size (64);
//! LOGBENCH_STATS=1 prints group-commit counters per append case;
//! LOGBENCH_MALLOC_DEFAULTS=1 skips `retain_large_allocations`;
//! LOGBENCH_NO_SETTLE=1 skips the `syncfs` after each case's cleanup;
//! LOGBENCH_KV=1 runs only the KV-shaped case (puts to one of N subjects
//! with `max_msgs_per_subject` 1 and 5, last-by-subject reads, a wildcard
//! pending count and `state(true)`) for N in LOGBENCH_KV_SUBJECTS (default
//! 1000,100000,1000000).

use std::cell::Cell;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

use broker_edge_storage::{Durability, Filter, Limits, Log, LogConfig, Start, WriteMode};
use bytes::Bytes;
use glommio::io::{BufferedFile, DmaFile};
use glommio::{LocalExecutorBuilder, Placement};

fn env_u64(k: &str, d: u64) -> u64 {
    std::env::var(k)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(d)
}

/// Lets the filesystem finish with what the last case left: on a
/// filesystem mounted with `discard` (this VM's is), deleting a case's files
/// sends the device discards at the next journal commit, which otherwise
/// land inside the next case's timed span. `syncfs` commits now.
fn settle_disk(dir: &Path) {
    if std::env::var_os("LOGBENCH_NO_SETTLE").is_some() {
        return;
    }
    if let Ok(d) = std::fs::File::open(dir) {
        // SAFETY: plain syscall on a descriptor `d` owns.
        unsafe { libc::syncfs(d.as_raw_fd()) };
    }
}

fn fresh(dir: &Path, name: &str) -> PathBuf {
    let p = dir.join(name);
    let _ = std::fs::remove_dir_all(&p);
    settle_disk(dir);
    std::fs::create_dir_all(&p).expect("bench dir");
    p
}

fn mbps(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / d.as_secs_f64() / 1e6
}

/// Sequential O_DIRECT write bandwidth (1 MiB writes, 4 in flight, final
/// fdatasync included): `total` bytes, or as many as fit in `for_time`.
/// Sequential O_DIRECT writes of 1 MiB with `depth` in flight (1 is what
/// `dd oflag=direct bs=1M` does), then one fdatasync; MB/s.
async fn disk_seq_write(dir: &Path, total: u64, for_time: Option<Duration>, depth: usize) -> f64 {
    let path = dir.join("odirect.bin");
    let f = Rc::new(DmaFile::create(&path).await.expect("create"));
    let chunk = env_u64("LOGBENCH_CHUNK", 1 << 20) as usize;
    let t = Instant::now();
    let mut pos = 0u64;
    let mut inflight = Vec::new();
    while pos < total && for_time.is_none_or(|d| t.elapsed() < d) {
        let mut buf = f.alloc_dma_buffer(chunk);
        buf.as_bytes_mut().fill(0x5a);
        let ff = f.clone();
        let at = pos;
        inflight.push(glommio::spawn_local(
            async move { ff.write_at(buf, at).await },
        ));
        if inflight.len() >= depth {
            inflight.remove(0).await.expect("write");
        }
        pos += chunk as u64;
    }
    for h in inflight {
        h.await.expect("write");
    }
    f.fdatasync().await.expect("sync");
    let d = t.elapsed();
    let _ = std::fs::remove_file(&path);
    settle_disk(dir);
    mbps(pos, d)
}

#[derive(Clone, Copy, Debug)]
enum FileMode {
    /// Each write extends the file.
    Extend,
    /// The file was sized with ftruncate first (sparse holes).
    Sparse,
    /// The file was sized with fallocate first (unwritten extents).
    Fallocated,
    /// Every block was written and synced before (pure overwrite).
    Overwrite,
}

/// p50/p99 of a 4 KiB buffered write + fdatasync, in microseconds.
async fn fsync_latency(dir: &Path, n: usize, mode: FileMode) -> (f64, f64) {
    let path = dir.join("fsync.bin");
    let f = BufferedFile::create(&path).await.expect("create");
    let len = (n * 4096) as u64;
    match mode {
        FileMode::Extend => {}
        FileMode::Sparse => f.truncate(len).await.expect("truncate"),
        FileMode::Fallocated => f.pre_allocate(len, false).await.expect("fallocate"),
        FileMode::Overwrite => {
            f.write_at(vec![0u8; len as usize], 0).await.expect("fill");
        }
    }
    f.fdatasync().await.expect("sync");
    let mut lat = Vec::with_capacity(n);
    for i in 0..n {
        let t = Instant::now();
        f.write_at(vec![7u8; 4096], (i * 4096) as u64)
            .await
            .expect("write");
        f.fdatasync().await.expect("sync");
        lat.push(t.elapsed().as_secs_f64() * 1e6);
    }
    let _ = std::fs::remove_file(&path);
    lat.sort_by(f64::total_cmp);
    (lat[n / 2], lat[n * 99 / 100])
}

/// Writes 16 KiB chunks and reads each back through a shared mapping right
/// away, once with buffered io_uring writes and once with O_DIRECT.
async fn coherence(dir: &Path, total: u64) -> (f64, f64) {
    const CHUNK: usize = 16 << 10;
    let touch = |m: &memmap2::Mmap, at: usize| -> u64 {
        m[at..at + CHUNK]
            .iter()
            .step_by(64)
            .map(|b| *b as u64)
            .sum()
    };
    let mut sink = 0u64;
    // Buffered.
    let p = dir.join("coh-buf.bin");
    let f = BufferedFile::create(&p).await.expect("create");
    std::fs::OpenOptions::new()
        .write(true)
        .open(&p)
        .and_then(|x| x.set_len(total))
        .expect("len");
    let map = unsafe { memmap2::Mmap::map(&std::fs::File::open(&p).expect("open")) }.expect("map");
    let t = Instant::now();
    let mut pos = 0;
    while pos < total as usize {
        f.write_at(vec![1u8; CHUNK], pos as u64).await.expect("w");
        sink += touch(&map, pos);
        pos += CHUNK;
    }
    f.fdatasync().await.expect("sync");
    let buffered = mbps(total, t.elapsed());
    drop(map);
    let _ = std::fs::remove_file(&p);
    // O_DIRECT: every write invalidates the cached pages the map reads.
    let p = dir.join("coh-direct.bin");
    let f = DmaFile::create(&p).await.expect("create");
    f.truncate(total).await.expect("len");
    let map = unsafe { memmap2::Mmap::map(&std::fs::File::open(&p).expect("open")) }.expect("map");
    let t = Instant::now();
    let mut pos = 0;
    while pos < total as usize {
        let mut b = f.alloc_dma_buffer(CHUNK);
        b.as_bytes_mut().fill(2);
        f.write_at(b, pos as u64).await.expect("w");
        sink += touch(&map, pos);
        pos += CHUNK;
    }
    f.fdatasync().await.expect("sync");
    let direct = mbps(total, t.elapsed());
    let _ = std::fs::remove_file(&p);
    std::hint::black_box(sink);
    (buffered, direct)
}

struct AppendResult {
    msgs: u64,
    secs: f64,
}

/// Appends `size`-byte payloads from `tasks` concurrent appenders for
/// `secs`, then flushes (the flush is inside the timed span).
async fn append_case(
    dir: &Path,
    durability: Durability,
    mode: WriteMode,
    size: usize,
    tasks: usize,
    secs: u64,
) -> AppendResult {
    let p = fresh(dir, "append");
    let cfg = LogConfig {
        durability,
        write_mode: mode,
        segment_size: env_u64("LOGBENCH_SEGMENT_MIB", 64) << 20,
        ..Default::default()
    };
    let log = Log::open(&p, cfg).await.expect("open");
    let payload = Bytes::from(vec![0xabu8; size]);
    let subject = Bytes::from_static(b"bench.subject");
    let stop = Rc::new(Cell::new(false));
    let count = Rc::new(Cell::new(0u64));
    let t = Instant::now();
    let runs0 = glommio::executor().executor_stats().scheduler_runs();
    let mut hs = Vec::new();
    for _ in 0..tasks {
        let (log, payload, subject, stop, count) = (
            log.clone(),
            payload.clone(),
            subject.clone(),
            stop.clone(),
            count.clone(),
        );
        hs.push(glommio::spawn_local(async move {
            while !stop.get() {
                log.append_bytes(subject.clone(), Bytes::new(), payload.clone())
                    .await
                    .expect("append");
                count.set(count.get() + 1);
            }
        }));
    }
    glommio::timer::sleep(Duration::from_secs(secs)).await;
    stop.set(true);
    for h in hs {
        h.await;
    }
    log.flush().await.expect("flush");
    let secs = t.elapsed().as_secs_f64();
    if std::env::var("LOGBENCH_STATS").is_ok() {
        let s = log.commit_stats();
        let runs = glommio::executor().executor_stats().scheduler_runs() - runs0;
        eprintln!(
            "commit stats: {} groups ({} pipelined), {:.1} records/group, {:.0} µs/group, {:.1} scheduler runs/group",
            s.groups,
            s.pipelined,
            count.get() as f64 / s.groups.max(1) as f64,
            secs * 1e6 / s.groups.max(1) as f64,
            runs as f64 / s.groups.max(1) as f64
        );
    }
    let r = AppendResult {
        msgs: count.get(),
        secs,
    };
    drop(log);
    let _ = std::fs::remove_dir_all(&p);
    settle_disk(dir);
    r
}

/// Fills a log with `n` records of `size` bytes (Never, 64 appenders).
async fn fill(p: &Path, n: u64, size: usize) {
    let cfg = LogConfig {
        durability: Durability::Never,
        segment_size: env_u64("LOGBENCH_SEGMENT_MIB", 64) << 20,
        ..Default::default()
    };
    let log = Log::open(p, cfg).await.expect("open");
    let payload = Bytes::from(vec![0x11u8; size]);
    let left = Rc::new(Cell::new(n));
    let mut hs = Vec::new();
    for t in 0..64u64 {
        let (log, payload, left) = (log.clone(), payload.clone(), left.clone());
        hs.push(glommio::spawn_local(async move {
            let subject = Bytes::from(format!("fill.{}", t % 8));
            while left.get() > 0 {
                left.set(left.get() - 1);
                log.append_bytes(subject.clone(), Bytes::new(), payload.clone())
                    .await
                    .expect("append");
            }
        }));
    }
    for h in hs {
        h.await;
    }
    log.close().await.expect("close");
}

fn drop_cache(p: &Path) {
    for e in std::fs::read_dir(p).expect("dir").flatten() {
        if let Ok(f) = std::fs::File::open(e.path()) {
            unsafe {
                libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED);
            }
        }
    }
}

/// Scans the whole log touching every payload; returns (msgs/s, MB/s).
fn scan_all(log: &Log) -> (f64, f64, u64) {
    let t = Instant::now();
    let (mut n, mut bytes, mut sink) = (0u64, 0u64, 0u64);
    for m in log.scan(Start::Seq(1), Filter::all()) {
        let m = m.expect("read");
        n += 1;
        bytes += m.payload.len() as u64;
        sink = sink.wrapping_add(m.payload.iter().step_by(64).map(|b| *b as u64).sum());
    }
    std::hint::black_box(sink);
    let d = t.elapsed();
    (n as f64 / d.as_secs_f64(), mbps(bytes, d), n)
}

async fn bench() {
    let dir =
        PathBuf::from(std::env::var("LOGBENCH_DIR").unwrap_or_else(|_| "target/logbench".into()));
    std::fs::create_dir_all(&dir).expect("dir");
    let secs = env_u64("LOGBENCH_SECS", 2);
    let rec_n = env_u64("LOGBENCH_RECOVERY_MSGS", 10_000_000);
    let task_counts: Vec<usize> = std::env::var("LOGBENCH_TASKS")
        .unwrap_or_else(|_| "1,64,512".into())
        .split(',')
        .filter_map(|x| x.trim().parse().ok())
        .collect();
    let sizes: Vec<usize> = std::env::var("LOGBENCH_SIZES")
        .unwrap_or_else(|_| "128,1024,16384".into())
        .split(',')
        .filter_map(|x| x.trim().parse().ok())
        .collect();
    let skip_machine = std::env::var("LOGBENCH_SKIP_MACHINE").is_ok();
    // The log keeps O_DIRECT files on glommio's interrupt-driven ring where
    // the device cannot poll; the disk references below go the same way
    // (`BROKER_EDGE_IOPOLL=1` leaves both to glommio's probe).
    broker_edge_storage::use_interrupt_completions(&dir).await;

    print_pressure("start");
    if std::env::var("LOGBENCH_KV").is_ok() {
        return kv(&dir, secs).await;
    }
    println!("## machine");
    if skip_machine {
        return append_only(&dir, secs, &task_counts, &sizes).await;
    }
    if std::env::var("LOGBENCH_DISK").is_ok() {
        let d = Duration::from_secs(secs);
        for depth in [1usize, 2, 4] {
            let bw = disk_seq_write(&dir, u64::MAX, Some(d), depth).await;
            println!("O_DIRECT sequential write, {depth} in flight: {bw:.0} MB/s");
        }
        return;
    }
    if std::env::var("LOGBENCH_RECOVERY_ONLY").is_ok() {
        return read_and_recovery(&dir, rec_n).await;
    }
    if std::env::var("LOGBENCH_TARGETS").is_ok() {
        return targets(&dir, secs, env_u64("LOGBENCH_ROUNDS", 3)).await;
    }
    let bw = disk_seq_write(&dir, 1 << 30, None, 4).await;
    println!("O_DIRECT sequential write (1 MiB x4 in flight, 1 GiB): {bw:.0} MB/s");
    let bw = disk_seq_write(&dir, 1 << 30, None, 1).await;
    println!("O_DIRECT sequential write (1 MiB x1 in flight, dd-style, 1 GiB): {bw:.0} MB/s");
    for mode in [
        FileMode::Extend,
        FileMode::Sparse,
        FileMode::Fallocated,
        FileMode::Overwrite,
    ] {
        let (p50, p99) = fsync_latency(&dir, 300, mode).await;
        println!("4 KiB write + fdatasync ({mode:?}): p50 {p50:.0} us, p99 {p99:.0} us");
    }
    let (cb, cd) = coherence(&dir, 256 << 20).await;
    println!("write 16 KiB + read back via mmap: buffered {cb:.0} MB/s, O_DIRECT {cd:.0} MB/s");

    append_only(&dir, secs, &task_counts, &sizes).await;
    read_and_recovery(&dir, rec_n).await;
}

/// The storage issue's two append targets, as interleaved rounds (like the
/// core bench): each round measures the disk (O_DIRECT, same duration as an
/// append case) and then the log, and prints the ratios; the medians close.
async fn targets(dir: &Path, secs: u64, rounds: u64) {
    let d = Duration::from_secs(secs);
    let mut bw_ratio: Vec<Vec<f64>> = vec![Vec::new(); 2];
    let mut dd_ratio: Vec<Vec<f64>> = vec![Vec::new(); 2];
    let mut bw256_ratio: Vec<Vec<f64>> = vec![Vec::new(); 2];
    let mut commit_ratio: Vec<Vec<f64>> = vec![Vec::new(); 4];
    let only = std::env::var("LOGBENCH_MODES").unwrap_or_else(|_| "buffered,direct".into());
    let modes: Vec<_> = [
        ("buffered", WriteMode::Buffered),
        ("direct", WriteMode::Direct),
    ]
    .into_iter()
    .filter(|(m, _)| only.split(',').any(|x| x.trim() == *m))
    .collect();
    println!("## targets ({rounds} rounds, {secs}s per case)");
    println!("disk: O_DIRECT 1 MiB writes, 4 in flight; dd: the same, 1 in flight; each the mean of a run just before and just after the log's");
    println!("| round | disk MB/s | dd MB/s | mode | never 16 KiB x64 MB/s | / disk | / dd | never 16 KiB x256 MB/s | / disk | 1 KiB x64 never/always | 1 KiB x512 never/always |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for r in 1..=rounds {
        for (i, (mname, mode)) in modes.iter().enumerate() {
            // The references bracket the log case (disk, dd, log, dd,
            // disk) and are averaged: the virtual disk's speed drifts
            // within seconds, and this keeps the drift out of the ratio.
            let disk_a = disk_seq_write(dir, u64::MAX, Some(d), 4).await;
            let dd_a = disk_seq_write(dir, u64::MAX, Some(d), 1).await;
            let n = append_case(dir, Durability::Never, *mode, 16384, 64, secs).await;
            // 64 appenders of 16 KiB keep at most 1 MiB outstanding, a
            // quarter of the disk reference's 4 MiB; 256 show what the log
            // does when the workload is not the limit.
            let n256 = append_case(dir, Durability::Never, *mode, 16384, 256, secs).await;
            let dd_b = disk_seq_write(dir, u64::MAX, Some(d), 1).await;
            let disk_b = disk_seq_write(dir, u64::MAX, Some(d), 4).await;
            let (disk, dd) = ((disk_a + disk_b) / 2.0, (dd_a + dd_b) / 2.0);
            let mb = n.msgs as f64 * 16384.0 / n.secs / 1e6;
            let mb256 = n256.msgs as f64 * 16384.0 / n256.secs / 1e6;
            bw_ratio[i].push(mb / disk);
            dd_ratio[i].push(mb / dd);
            bw256_ratio[i].push(mb256 / disk);
            let mut cells = Vec::new();
            for (j, tasks) in [64usize, 512].into_iter().enumerate() {
                let a = append_case(dir, Durability::Always, *mode, 1024, tasks, secs).await;
                let nv = append_case(dir, Durability::Never, *mode, 1024, tasks, secs).await;
                let ratio = (nv.msgs as f64 / nv.secs) / (a.msgs as f64 / a.secs);
                commit_ratio[i * 2 + j].push(ratio);
                cells.push(format!(
                    "{:.0}k / {:.0}k = {ratio:.2}",
                    nv.msgs as f64 / nv.secs / 1e3,
                    a.msgs as f64 / a.secs / 1e3
                ));
            }
            println!(
                "| {r} | {disk:.0} | {dd:.0} | {mname} | {mb:.0} | {:.2} | {:.2} | {mb256:.0} | {:.2} | {} | {} |",
                mb / disk,
                mb / dd,
                mb256 / disk,
                cells[0],
                cells[1]
            );
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    for (i, (mname, _)) in modes.iter().enumerate() {
        println!(
            "median {mname}: never 16 KiB x64 / disk {:.2}, / dd {:.2}; x256 / disk {:.2}; never/always 1 KiB: x64 {:.2}, x512 {:.2}",
            median(&mut bw_ratio[i]),
            median(&mut dd_ratio[i]),
            median(&mut bw256_ratio[i]),
            median(&mut commit_ratio[i * 2]),
            median(&mut commit_ratio[i * 2 + 1])
        );
    }
}

async fn append_only(dir: &Path, secs: u64, task_counts: &[usize], sizes: &[usize]) {
    println!("\n## append (timed {secs}s each, flush included)");
    println!("| write mode | policy | appenders | size | msgs/s | MB/s |");
    println!("|---|---|---|---|---|---|");
    let policies = [
        ("always", Durability::Always),
        (
            "interval(10ms)",
            Durability::Interval(Duration::from_millis(10)),
        ),
        ("never", Durability::Never),
    ];
    let only = std::env::var("LOGBENCH_POLICIES").unwrap_or_default();
    let modes = std::env::var("LOGBENCH_MODES").unwrap_or_else(|_| "buffered,direct".into());
    for (mname, mode) in [
        ("buffered", WriteMode::Buffered),
        ("direct", WriteMode::Direct),
    ] {
        if !modes.split(',').any(|m| m == mname) {
            continue;
        }
        for (name, pol) in policies {
            if !only.is_empty() && !only.split(',').any(|o| name.starts_with(o)) {
                continue;
            }
            for &size in sizes {
                for &tasks in task_counts {
                    let r = append_case(dir, pol, mode, size, tasks, secs).await;
                    let rate = r.msgs as f64 / r.secs;
                    println!(
                        "| {mname} | {name} | {tasks} | {size} | {rate:.0} | {:.1} |",
                        rate * size as f64 / 1e6
                    );
                }
            }
        }
        if std::env::var("LOGBENCH_SKIP_TAIL").is_ok() {
            continue;
        }
        let (w, r) = tail_read(dir, mode).await;
        println!("| {mname} | never, read each record right after its append | 1 | 16384 | {w:.0} | {r:.1} |");
        let (w, r) = follow(dir, mode, secs, None).await;
        println!("| {mname} | never, plus one reader following the tail | 64 | 16384 | {w:.0} | {r:.1} (read) |");
        if mode == WriteMode::Direct {
            let (w, r) = follow(dir, mode, secs, Some(0)).await;
            println!(
                "| {mname} | same, recent-writes cache off | 64 | 16384 | {w:.0} | {r:.1} (read) |"
            );
        }
    }
}

/// One appender (Never, 16 KiB) that reads every record back right after
/// its append: the cost of mmap coherence with each write mode.
async fn tail_read(dir: &Path, mode: WriteMode) -> (f64, f64) {
    let p = fresh(dir, "tail");
    let cfg = LogConfig {
        durability: Durability::Never,
        write_mode: mode,
        segment_size: env_u64("LOGBENCH_SEGMENT_MIB", 64) << 20,
        ..Default::default()
    };
    let log = Log::open(&p, cfg).await.expect("open");
    let payload = Bytes::from(vec![0x3cu8; 16384]);
    let n = 20_000u64;
    let mut sink = 0u64;
    let t = Instant::now();
    for _ in 0..n {
        let (seq, _) = log
            .append_bytes(Bytes::from_static(b"t"), Bytes::new(), payload.clone())
            .await
            .expect("append");
        let m = log.get(seq).expect("get");
        sink = sink.wrapping_add(m.payload.iter().step_by(64).map(|b| *b as u64).sum());
    }
    std::hint::black_box(sink);
    let d = t.elapsed();
    drop(log);
    let _ = std::fs::remove_dir_all(&p);
    (n as f64 / d.as_secs_f64(), mbps(n * 16384, d))
}

/// 64 appenders (Never, 16 KiB) and one reader that consumes every
/// record as it appears, like a push consumer at the tail. Returns the
/// append rate and the reader's MB/s. `recent` overrides the
/// recent-writes cache size.
async fn follow(dir: &Path, mode: WriteMode, secs: u64, recent: Option<usize>) -> (f64, f64) {
    let p = fresh(dir, "follow");
    let mut cfg = LogConfig {
        durability: Durability::Never,
        write_mode: mode,
        segment_size: env_u64("LOGBENCH_SEGMENT_MIB", 64) << 20,
        ..Default::default()
    };
    if let Some(r) = recent {
        cfg.recent_bytes = r;
    }
    let log = Log::open(&p, cfg).await.expect("open");
    let payload = Bytes::from(vec![0x5au8; 16384]);
    let stop = Rc::new(Cell::new(false));
    let count = Rc::new(Cell::new(0u64));
    let t = Instant::now();
    let mut hs = Vec::new();
    for _ in 0..64 {
        let (log, payload, stop, count) =
            (log.clone(), payload.clone(), stop.clone(), count.clone());
        hs.push(glommio::spawn_local(async move {
            while !stop.get() {
                log.append_bytes(Bytes::from_static(b"f"), Bytes::new(), payload.clone())
                    .await
                    .expect("append");
                count.set(count.get() + 1);
            }
        }));
    }
    let reader = {
        let (log, stop) = (log.clone(), stop.clone());
        glommio::spawn_local(async move {
            let (mut next, mut bytes, mut sink) = (1u64, 0u64, 0u64);
            loop {
                while let Some(m) = log.next_msg(next, &Filter::all()).expect("read") {
                    sink = sink.wrapping_add(m.payload.iter().step_by(64).map(|b| *b as u64).sum());
                    bytes += m.payload.len() as u64;
                    next = m.seq + 1;
                }
                if stop.get() {
                    break;
                }
                // Caught up: wait a little (a task that only re-wakes itself
                // would keep the reactor, and so the appends, from running).
                glommio::timer::sleep(Duration::from_micros(50)).await;
            }
            std::hint::black_box(sink);
            (bytes, t.elapsed())
        })
    };
    glommio::timer::sleep(Duration::from_secs(secs)).await;
    stop.set(true);
    for h in hs {
        h.await;
    }
    let appended = t.elapsed();
    let (bytes, read_time) = reader.await;
    let n = count.get();
    drop(log);
    let _ = std::fs::remove_dir_all(&p);
    (n as f64 / appended.as_secs_f64(), mbps(bytes, read_time))
}

async fn read_and_recovery(dir: &Path, rec_n: u64) {
    println!("\n## read (1 KiB records)");
    let p = fresh(dir, "read");
    fill(&p, 1_000_000, 1024).await;
    let log = Log::open(&p, LogConfig::default()).await.expect("open");
    let (_, _, n) = scan_all(&log);
    let (r, mb, _) = scan_all(&log);
    println!("warm scan: {n} msgs, {r:.0} msgs/s, {mb:.0} MB/s");
    drop(log);
    drop_cache(&p);
    let log = Log::open(&p, LogConfig::default()).await.expect("open");
    drop_cache(&p);
    let (r, mb, _) = scan_all(&log);
    println!("cold scan (fadvise DONTNEED): {r:.0} msgs/s, {mb:.0} MB/s");
    let t = Instant::now();
    let mut x = 0u64;
    for i in 0..200_000u64 {
        let m = log.get(1 + (i * 7919) % n).expect("get");
        x = x.wrapping_add(m.payload[0] as u64);
    }
    std::hint::black_box(x);
    println!(
        "warm random get: {:.0} gets/s",
        200_000.0 / t.elapsed().as_secs_f64()
    );
    drop(log);
    let _ = std::fs::remove_dir_all(&p);

    println!("\n## recovery ({rec_n} x 128 B)");
    let p = fresh(dir, "recovery");
    let t = Instant::now();
    fill(&p, rec_n, 128).await;
    println!("fill: {:.1}s", t.elapsed().as_secs_f64());
    let t = Instant::now();
    let log = Log::open(&p, LogConfig::default()).await.expect("open");
    let clean = t.elapsed();
    let st = log.state(false);
    assert_eq!(st.msgs, rec_n);
    println!(
        "clean open: {:.0} ms ({} segments, {} indexes loaded, {} rebuilt, report {:?})",
        clean.as_secs_f64() * 1e3,
        log.segment_count(),
        log.recovery_report().indexes_loaded,
        log.recovery_report().indexes_rebuilt.len(),
        log.recovery_report().elapsed
    );
    drop(log);
    // Crash-like: the active segment has no index and is walked; also lose
    // every index file to measure the full-rescan worst case.
    for e in std::fs::read_dir(&p).expect("dir").flatten() {
        if e.path().extension().is_some_and(|x| x == "idx") {
            let _ = std::fs::remove_file(e.path());
        }
    }
    drop_cache(&p);
    let t = Instant::now();
    let log = Log::open(&p, LogConfig::default()).await.expect("open");
    println!(
        "all indexes lost, cold cache (full CRC walk): {:.0} ms",
        t.elapsed().as_secs_f64() * 1e3
    );
    assert_eq!(log.state(false).msgs, rec_n);
    drop(log);
    let t = Instant::now();
    let log = Log::open(&p, LogConfig::default()).await.expect("open");
    println!(
        "reopen after rebuild: {:.0} ms",
        t.elapsed().as_secs_f64() * 1e3
    );
    drop(log);
    let _ = std::fs::remove_dir_all(&p);
}

/// Resident set size of this process in MiB (`VmRSS`), 0 if unreadable.
fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// splitmix64: uniform keys without a `rand` dependency.
fn next_rand(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn kv_subject(i: u64) -> String {
    format!("$KV.b.key{i}")
}

struct KvResult {
    preload_secs: f64,
    rss_mib: f64,
    puts: u64,
    put_secs: f64,
    reads: u64,
    read_secs: f64,
    /// The wildcard count, first call and an immediate repeat (ms).
    count_ms: (f64, f64),
    state_ms: f64,
    msgs: u64,
    deleted: usize,
}

/// One KV-shaped case: N subjects, at most `k` messages each, 64-byte
/// values. Preload one put per subject (untimed), then `secs` of puts from
/// 64 appenders to uniformly random keys (each evicts that key's oldest
/// beyond `k`), then `secs` of `last_for` on random keys from one task, then
/// one wildcard `count_from` (twice) and one `state(true)`.
async fn kv_case(dir: &Path, n: u64, k: u64, durability: Durability, secs: u64) -> KvResult {
    let p = fresh(dir, "kv");
    let cfg = LogConfig {
        durability,
        segment_size: env_u64("LOGBENCH_SEGMENT_MIB", 64) << 20,
        limits: Limits {
            max_msgs_per_subject: Some(k),
            ..Default::default()
        },
        ..Default::default()
    };
    let log = Log::open(&p, cfg).await.expect("open");
    let value = Bytes::from(vec![0x6bu8; 64]);

    // Preload: key i gets one put, keys handed out in order to 64 tasks.
    let t = Instant::now();
    let next = Rc::new(Cell::new(0u64));
    let mut hs = Vec::new();
    for _ in 0..64 {
        let (log, value, next) = (log.clone(), value.clone(), next.clone());
        hs.push(glommio::spawn_local(async move {
            loop {
                let i = next.get();
                if i >= n {
                    break;
                }
                next.set(i + 1);
                log.append_bytes(Bytes::from(kv_subject(i)), Bytes::new(), value.clone())
                    .await
                    .expect("preload put");
            }
        }));
    }
    for h in hs {
        h.await;
    }
    let preload_secs = t.elapsed().as_secs_f64();
    let rss = rss_mib();

    // Timed puts to random keys.
    let stop = Rc::new(Cell::new(false));
    let count = Rc::new(Cell::new(0u64));
    let t = Instant::now();
    let mut hs = Vec::new();
    for task in 0..64u64 {
        let (log, value, stop, count) = (log.clone(), value.clone(), stop.clone(), count.clone());
        hs.push(glommio::spawn_local(async move {
            let mut rng = 0x5eed_0000 + task;
            while !stop.get() {
                let key = next_rand(&mut rng) % n;
                log.append_bytes(Bytes::from(kv_subject(key)), Bytes::new(), value.clone())
                    .await
                    .expect("put");
                count.set(count.get() + 1);
            }
        }));
    }
    glommio::timer::sleep(Duration::from_secs(secs)).await;
    stop.set(true);
    for h in hs {
        h.await;
    }
    let put_secs = t.elapsed().as_secs_f64();
    let puts = count.get();

    // Timed last-by-subject reads from one task.
    let mut rng = 0x0bad_cafe_u64;
    let (mut reads, mut sink) = (0u64, 0u64);
    let limit = Duration::from_secs(secs);
    let t = Instant::now();
    while t.elapsed() < limit {
        for _ in 0..256 {
            let key = next_rand(&mut rng) % n;
            let m = log
                .last_for(&Filter::one(&kv_subject(key)))
                .expect("last_for")
                .expect("every key has a value");
            sink = sink.wrapping_add(m.seq);
        }
        reads += 256;
    }
    let read_secs = t.elapsed().as_secs_f64();
    std::hint::black_box(sink);

    // One wildcard pending count (and a repeat), one state with deletes.
    let wild = Filter::one("$KV.b.>");
    let t = Instant::now();
    let c1 = log.count_from(1, &wild);
    let first = t.elapsed().as_secs_f64() * 1e3;
    let t = Instant::now();
    let c2 = log.count_from(1, &wild);
    let again = t.elapsed().as_secs_f64() * 1e3;
    assert_eq!(c1, c2);
    let t = Instant::now();
    let st = log.state(true);
    let state_ms = t.elapsed().as_secs_f64() * 1e3;
    assert_eq!(st.msgs, c1, "the wildcard matches every message");
    let deleted = st.deleted.as_ref().map_or(0, Vec::len);

    log.close().await.expect("close");
    drop(log);
    let _ = std::fs::remove_dir_all(&p);
    settle_disk(dir);
    KvResult {
        preload_secs,
        rss_mib: rss,
        puts,
        put_secs,
        reads,
        read_secs,
        count_ms: (first, again),
        state_ms,
        msgs: st.msgs,
        deleted,
    }
}

/// The JetStream issue's KV case: do put and last-by-subject cost stay
/// flat from 1k to 1M subjects, and which whole-stream queries grow?
async fn kv(dir: &Path, secs: u64) {
    let subjects: Vec<u64> = std::env::var("LOGBENCH_KV_SUBJECTS")
        .unwrap_or_else(|_| "1000,100000,1000000".into())
        .split(',')
        .filter_map(|x| x.trim().parse().ok())
        .collect();
    println!("\n## KV-shaped (64-byte values, 64 put tasks, 1 read task, {secs}s per phase)");
    println!("| N | K | preload s | RSS MiB | puts/s | µs/put | reads/s | µs/read | wildcard count ms (first / again) | state(deleted) ms |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    let mut notes = Vec::new();
    for &n in &subjects {
        let mut cases = vec![("never", Durability::Never)];
        if n == 1000 {
            cases.push(("always", Durability::Always));
        }
        for (pname, pol) in cases {
            for k in [1u64, 5] {
                let r = kv_case(dir, n, k, pol, secs).await;
                let label = if pname == "never" {
                    format!("{n}")
                } else {
                    format!("{n} (always)")
                };
                let put_rate = r.puts as f64 / r.put_secs;
                let read_rate = r.reads as f64 / r.read_secs;
                println!(
                    "| {label} | {k} | {:.2} | {:.0} | {put_rate:.0} | {:.2} | {read_rate:.0} | {:.2} | {:.1} / {:.1} | {:.1} |",
                    r.preload_secs,
                    r.rss_mib,
                    1e6 / put_rate,
                    1e6 / read_rate,
                    r.count_ms.0,
                    r.count_ms.1,
                    r.state_ms,
                );
                notes.push(format!(
                    "{label} K={k}: {} puts, {} msgs stored after, {} interior deletes listed",
                    r.puts, r.msgs, r.deleted
                ));
            }
        }
    }
    for n in notes {
        println!("{n}");
    }
}

/// Other work on the box skews every figure: print what it was doing.
fn print_pressure(when: &str) {
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let io = std::fs::read_to_string("/proc/pressure/io").unwrap_or_default();
    let io = io.lines().next().unwrap_or("");
    println!("[{when}] loadavg {} | io pressure {io}", load.trim());
}

fn main() {
    // As a program embedding the log should (`LOGBENCH_MALLOC_DEFAULTS=1`
    // leaves glibc's defaults, for comparison).
    if std::env::var_os("LOGBENCH_MALLOC_DEFAULTS").is_none() {
        broker_edge_storage::retain_large_allocations();
    }
    let ex = LocalExecutorBuilder::new(Placement::Unbound)
        .io_memory(4 << 20)
        .make()
        .expect("executor");
    ex.run(bench());
    print_pressure("end");
}
