//! Opening a log directory: sealed segments come back from their index files
//! (verified by checksum and tied to the exact segment content), anything
//! without a good index and the active segment are walked record by record
//! with CRC checks. A torn tail is cut off; a corrupt record in the middle
//! is skipped and reported.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::config::LogConfig;
use crate::error::{Error, Result};
use crate::format::{self, Kind};
use crate::index::{self, IndexData, SubjectSummary};
use crate::segment::{self, Segment, ABSENT};
use crate::state::{State, SubjInfo, SubjectMap};

/// What recovery found; `Log::recovery_report` returns it.
#[derive(Debug, Clone, Default)]
pub struct RecoveryReport {
    pub segments: usize,
    pub indexes_loaded: usize,
    /// Segments whose index was missing or bad and was rebuilt by a walk.
    pub indexes_rebuilt: Vec<PathBuf>,
    /// A torn tail was cut at (segment, offset of the first bad byte).
    pub torn_tail: Option<(PathBuf, u64)>,
    /// Corrupt records skipped (segment, offset); also read-time failures.
    pub corrupt: Vec<(PathBuf, u64)>,
    /// Leftovers removed: temp files, superseded compaction generations.
    pub removed_files: Vec<PathBuf>,
    pub elapsed: Duration,
}

/// Builds the index content of a segment from its live records.
pub(crate) fn build_index(seg: &Segment) -> IndexData {
    let mut subj: HashMap<&[u8], (u64, u64, u64), ahash::RandomState> = HashMap::default();
    for (i, &o) in seg.offsets.iter().enumerate() {
        if o == ABSENT {
            continue;
        }
        let name = match seg.names.get(i) {
            Some(n) => n,
            None => {
                let off = o as usize;
                let Some(h) = seg.header_at(off) else {
                    continue;
                };
                let at = format::HEADER_LEN + off;
                let Some(name) = seg.bytes(at, h.subject_len.get() as usize) else {
                    continue;
                };
                name
            }
        };
        let seq = seg.base + i as u64;
        let e = subj.entry(name).or_insert((seq, seq, 0));
        e.1 = seq;
        e.2 += 1;
    }
    IndexData {
        base: seg.base,
        gen: seg.gen,
        seg_len: seg.len,
        seg_tail_crc: seg.tail.1,
        tail_off: seg.tail.0,
        offsets: seg.offsets.clone(),
        first_ts: seg.first_ts,
        last_ts: seg.last_ts,
        floor: seg.floor,
        tombstones: seg.tombstones.clone(),
        subjects: subj
            .into_iter()
            .map(|(k, (first, last, count))| SubjectSummary {
                subject: k.to_vec(),
                first,
                last,
                count,
            })
            .collect(),
        live: seg.live,
        live_bytes: seg.live_bytes,
    }
}

/// Does the index describe exactly this segment file?
fn index_matches(d: &IndexData, base: u64, gen: u32, data: &[u8]) -> bool {
    if d.base != base || d.gen != gen || d.seg_len != data.len() as u64 {
        return false;
    }
    if d.seg_len == 0 {
        return true;
    }
    let off = d.tail_off as usize;
    match format::header(data.get(off..).unwrap_or(&[])) {
        Some(h) => h.crc.get() == d.seg_tail_crc && off + h.record_len() == data.len(),
        None => false,
    }
}

/// Result of recovery, before the active segment file is (re)opened.
pub(crate) struct Recovered {
    pub state: State,
    /// The last segment is sealed (or there is none): create a new active.
    pub need_active: bool,
}

pub(crate) fn recover(dir: &Path, cfg: &LogConfig) -> Result<Recovered> {
    let t0 = Instant::now();
    fs::create_dir_all(dir)?;
    let mut report = RecoveryReport::default();
    // base -> (gen, has index)
    let mut found: BTreeMap<u64, (u32, bool)> = BTreeMap::new();
    let mut idx_gens: Vec<(u64, u32)> = Vec::new();
    let mut names: Vec<String> = Vec::new();
    for ent in fs::read_dir(dir)? {
        let ent = ent?;
        let name = ent.file_name();
        let Some(name) = name.to_str() else { continue };
        names.push(name.to_string());
        // A segment made ahead of a roll and never used: not data.
        if crate::spare::is_spare(name) {
            let _ = fs::remove_file(ent.path());
            continue;
        }
        // Unfinished compactions and retired segments of an earlier run.
        if name.ends_with(".tmp") || name.ends_with(".del") {
            let _ = fs::remove_file(ent.path());
            report.removed_files.push(ent.path());
            continue;
        }
        match segment::parse_name(name) {
            Some((base, gen, "seg")) => {
                let e = found.entry(base).or_insert((gen, false));
                if gen > e.0 {
                    // A finished compaction: the older generation is garbage.
                    remove_gen(dir, base, e.0, &mut report);
                    *e = (gen, false);
                } else if gen < e.0 {
                    remove_gen(dir, base, gen, &mut report);
                }
            }
            Some((base, gen, "idx")) => idx_gens.push((base, gen)),
            _ => {}
        }
    }
    for (base, gen) in idx_gens {
        match found.get_mut(&base) {
            Some(e) if e.0 == gen => e.1 = true,
            _ => {
                let p = dir.join(segment::idx_name(base, gen));
                let _ = fs::remove_file(&p);
                report.removed_files.push(p);
            }
        }
    }

    let meta = crate::meta::open(dir, &names, found.is_empty())?;
    for at in &meta.damaged {
        tracing::warn!(path = ?meta.path, at, "damaged high-water mark slot");
        report.corrupt.push((meta.path.clone(), *at));
    }
    let hwm = meta.newest.map(|(_, h)| h).unwrap_or_default();
    let bases: Vec<u64> = found.keys().copied().collect();

    let mut segs: Vec<Segment> = Vec::with_capacity(found.len());
    let mut subjects: SubjectMap = SubjectMap::default();
    let mut max_seq = 0u64;
    let mut need_active = true;
    let n = found.len();
    for (k, (&base, &(gen, has_idx))) in found.iter().enumerate() {
        let last = k + 1 == n;
        let path = dir.join(segment::seg_name(base, gen));
        let idx_path = dir.join(segment::idx_name(base, gen));
        let file_len = fs::metadata(&path)?.len();
        if has_idx {
            if let Some(d) = index::load(&idx_path) {
                let (data, map) = segment::map_file(&path, file_len)?;
                if index_matches(&d, base, gen, &data) {
                    let mut seg = Segment::new(base, gen, path, data, map, file_len, meta.salt);
                    seg.len = file_len;
                    seg.offsets = d.offsets;
                    seg.first_ts = d.first_ts;
                    seg.last_ts = d.last_ts;
                    seg.live = d.live;
                    seg.live_bytes = d.live_bytes;
                    seg.tombstones = d.tombstones;
                    seg.floor = d.floor;
                    seg.tail = (d.tail_off, d.seg_tail_crc);
                    max_seq = max_seq.max(seg.end_seq().saturating_sub(1));
                    for s in d.subjects {
                        merge_subject(&mut subjects, s);
                    }
                    report.indexes_loaded += 1;
                    segs.push(seg);
                    continue;
                }
            }
            let _ = fs::remove_file(&idx_path);
        }
        // Walk the segment. The last one stays active (mapped at capacity).
        let capacity = if last {
            file_len.max(cfg.segment_size)
        } else {
            file_len
        };
        if last && capacity != file_len {
            fs::OpenOptions::new()
                .write(true)
                .open(&path)?
                .set_len(capacity)?;
        }
        let (data, map) = segment::map_file(&path, capacity)?;
        let mut seg = Segment::new(
            base,
            gen,
            path.clone(),
            data.clone(),
            map,
            capacity,
            meta.salt,
        );
        let key = seg.key;
        let mut summ: HashMap<Vec<u8>, (u64, u64, u64)> = HashMap::new();
        // Sequences a message here may have: from the base, below the next
        // segment's base, increasing. In a segment as written (generation
        // 0) they are consecutive, so a message may skip only as many
        // sequences as records fit in the damaged bytes before it (each at
        // least a header); compaction leaves gaps of any size.
        let next_base = bases.get(k + 1).copied().unwrap_or(u64::MAX);
        let mut prev: Option<u64> = None;
        let mut prev_end = 0usize;
        let mut bad_order = Vec::new();
        let walked = segment::walk(&data, last, &key, |off, h, rec| {
            let gap = off.saturating_sub(prev_end);
            prev_end = off + rec.len();
            match segment::kind_of(h) {
                Some(Kind::Msg) => {
                    let seq = h.seq.get();
                    let lowest = prev.map_or(base, |p| p.saturating_add(1));
                    let highest = if gen == 0 {
                        lowest.saturating_add((gap / format::HEADER_LEN) as u64)
                    } else {
                        u64::MAX
                    };
                    if seq < lowest || seq > highest || seq >= next_base {
                        bad_order.push(off);
                        return;
                    }
                    prev = Some(seq);
                    seg.tail = (off as u64, h.crc.get());
                    if h.flags.get() & format::FLAG_ERASED != 0 {
                        // Erased: deleted, whether or not its tombstone
                        // survived. Its sequence was used all the same.
                        seg.note_slot(seq);
                        return;
                    }
                    seg.index_msg(seq, off, h.ts.get(), rec.len());
                    let (a, b, _) = segment::body(rec, h);
                    let e = summ.entry(rec[a..b].to_vec()).or_insert((seq, seq, 0));
                    e.1 = seq;
                    e.2 += 1;
                    seg.tail = (off as u64, h.crc.get());
                }
                Some(Kind::Tombstone) => {
                    let (_, _, p) = segment::body(rec, h);
                    seg.tombstones.extend(format::tombstone_seqs(&rec[p..]));
                    seg.tail = (off as u64, h.crc.get());
                }
                Some(Kind::Floor) => {
                    seg.floor = seg.floor.max(h.seq.get());
                    seg.tail = (off as u64, h.crc.get());
                }
                Some(Kind::Pad) => seg.tail = (off as u64, h.crc.get()),
                Some(Kind::Skip) => {
                    // Sequences `first..=last` used without a message: the
                    // first takes the place a message would have.
                    let (_, _, p) = segment::body(rec, h);
                    let last = h.seq.get();
                    let first = rec
                        .get(p..)
                        .filter(|b| b.len() == 8)
                        .and_then(|b| b.try_into().ok())
                        .map(u64::from_le_bytes);
                    let lowest = prev.map_or(base, |p| p.saturating_add(1));
                    let highest = if gen == 0 {
                        lowest.saturating_add((gap / format::HEADER_LEN) as u64)
                    } else {
                        u64::MAX
                    };
                    match first {
                        Some(f) if f >= lowest && f <= highest && last >= f && last < next_base => {
                            prev = Some(last);
                            seg.note_slot(last);
                            seg.tail = (off as u64, h.crc.get());
                        }
                        _ => bad_order.push(off),
                    }
                }
                None => {}
            }
        });
        seg.len = walked.end as u64;
        for (off, _) in &walked.corrupt {
            tracing::warn!(path = ?path, off, "corrupt record skipped");
            report.corrupt.push((path.clone(), *off as u64));
        }
        for off in bad_order {
            tracing::warn!(path = ?path, off, "out-of-order record skipped");
            report.corrupt.push((path.clone(), off as u64));
        }
        if walked.torn {
            tracing::warn!(path = ?path, off = walked.end, "torn tail truncated");
            report.torn_tail = Some((path.clone(), walked.end as u64));
        }
        for (subject, (first, last, count)) in summ {
            merge_subject(
                &mut subjects,
                SubjectSummary {
                    subject,
                    first,
                    last,
                    count,
                },
            );
        }
        max_seq = max_seq.max(seg.end_seq().saturating_sub(1));
        let f = fs::OpenOptions::new().write(true).open(&path)?;
        if last {
            // Zero everything past the last good record (cut, then regrow
            // sparse) so stale bytes can never be parsed as a later record.
            if (walked.end as u64) < capacity {
                f.set_len(walked.end as u64)?;
                f.set_len(capacity)?;
                f.sync_all()?;
            }
            need_active = false;
        } else {
            if (walked.end as u64) != file_len {
                f.set_len(walked.end as u64)?;
                f.sync_all()?;
            }
            seg.capacity = seg.len;
            let d = build_index(&seg);
            if let Err(e) = fs::write(&idx_path, index::encode(&d)) {
                tracing::warn!(error = %e, "could not rewrite index");
            }
        }
        report.indexes_rebuilt.push(path);
        segs.push(seg);
    }
    report.segments = segs.len();

    // The high-water mark: the log ended at least there when its last
    // delete or purge was durable. A shorter log lost records that a clean
    // end cannot explain (a cut at a record boundary).
    if hwm.len > 0 {
        let short = match segs.last() {
            None => true,
            Some(s) => s.base < hwm.base || (s.base == hwm.base && s.len < hwm.len),
        };
        if short {
            let (path, at) = segs
                .last()
                .map_or((meta.path.clone(), 0), |s| (s.path.clone(), s.len));
            tracing::error!(path = ?path, at, hwm = ?hwm, "log ends before its durable high-water mark");
            if report.torn_tail.is_none() {
                report.torn_tail = Some((path, at));
            } else {
                report.corrupt.push((path, at));
            }
        }
    }

    let floor = segs
        .iter()
        .map(|s| s.floor)
        .max()
        .unwrap_or(0)
        .max(hwm.floor);
    let last_base = segs.last().map_or(cfg.first_seq, |s| s.base);
    let next_seq = last_base.max(max_seq + 1).max(floor).max(1);
    let msgs = segs.iter().map(|s| s.live).sum();
    let bytes = segs.iter().map(|s| s.live_bytes).sum();
    let tombs: Vec<u64> = segs.iter().flat_map(|s| s.tombstones.clone()).collect();
    let mut st = State {
        cfg: cfg.clone(),
        dir: dir.to_path_buf(),
        segs,
        subjects,
        first_seq: 0,
        next_seq,
        msgs,
        bytes,
        last_ts: 0,
        floor,
        pending_floor: false,
        pending_tombs: Vec::new(),
        guard_control: false,
        jump_to: 0,
        dirty: false,
        last_sync: Instant::now(),
        poisoned: None,
        salt: meta.salt,
        meta_path: meta.path.clone(),
        hwm,
        hwm_counter: meta.newest.map_or(0, |(c, _)| c),
        hwm_want: None,
        report,
        compacting: false,
        erase_after_compaction: Vec::new(),
        removed: Default::default(),
        removed_total: 0,
    };
    st.first_seq = st.next_live(0).map_or(next_seq, |x| x.0);
    st.last_ts = st.segs.iter().map(|s| s.last_ts).max().unwrap_or(0);
    for t in tombs {
        st.remove(t);
    }
    st.raise_floor(floor);
    st.pending_floor = false;
    if st.segs.is_empty() && floor > 0 {
        st.next_seq = st.next_seq.max(floor);
    }
    st.report.elapsed = t0.elapsed();
    Ok(Recovered {
        state: st,
        need_active,
    })
}

fn merge_subject(map: &mut SubjectMap, s: SubjectSummary) {
    match map.get_mut(s.subject.as_slice()) {
        Some(i) => {
            i.first = i.first.min(s.first);
            i.last = i.last.max(s.last);
            i.count += s.count;
        }
        None => {
            map.insert(
                s.subject.into_boxed_slice(),
                SubjInfo {
                    first: s.first,
                    last: s.last,
                    count: s.count,
                    ..Default::default()
                },
            );
        }
    }
}

fn remove_gen(dir: &Path, base: u64, gen: u32, report: &mut RecoveryReport) {
    for p in [
        dir.join(segment::seg_name(base, gen)),
        dir.join(segment::idx_name(base, gen)),
    ] {
        if fs::remove_file(&p).is_ok() {
            report.removed_files.push(p);
        }
    }
}

/// Layout sanity for callers that pass a file instead of a directory.
pub(crate) fn check_dir(dir: &Path) -> Result<()> {
    if dir.exists() && !dir.is_dir() {
        return Err(Error::Layout(format!(
            "{} is not a directory",
            dir.display()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::format::{self, Key, Kind};
    use crate::{Filter, Log, LogConfig, Start};

    use crate::testing::run;

    const EVIL: u64 = 1_000_000;

    /// Issue 18 item 16: a message whose payload frames valid records (here
    /// framed with the log's own salt, as only someone who read the meta
    /// file's name could) and then one damaged byte. Recovery must not take
    /// anything inside the damaged record for a record.
    /// `header`: the damage hits the record's header, so its length cannot
    /// be trusted and the walk searches on from the next byte; then the
    /// sequence bound must reject the message found in the payload (a
    /// forged floor would need the salt, see `foreign_salt`).
    /// `foreign_salt`: the embedded records were framed for another log.
    fn hidden_records_case(header: bool, foreign_salt: bool) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().to_path_buf();
        run(async move {
            let cfg = LogConfig {
                segment_size: 1 << 20,
                ..Default::default()
            };
            let log = Log::open(&p, cfg.clone()).await.unwrap();
            for _ in 1..=3 {
                log.append("a", b"", b"before").await.unwrap();
            }
            let (key, salt) = {
                let st = log.inner.st.borrow();
                (st.active().key, st.salt)
            };
            let key = if foreign_salt {
                Key::new(salt ^ 1, 1)
            } else {
                key
            };
            let mut evil = Vec::new();
            evil.extend_from_slice(&[b'x'; 64]);
            format::encode(&mut evil, &key, Kind::Msg, 0, EVIL, 1, b"a", b"", b"evil");
            if !header || foreign_salt {
                format::encode(&mut evil, &key, Kind::Floor, 0, EVIL, 1, b"", b"", b"");
            }
            evil.extend_from_slice(&[b'y'; 64]);
            let (s, _) = log.append("a", b"", &evil).await.unwrap();
            assert_eq!(s, 4);
            log.append("a", b"", b"after").await.unwrap();
            log.append("a", b"", b"after").await.unwrap();
            let seg = log.inner.st.borrow().active().path.clone();
            let real = log.inner.st.borrow().active().key;
            log.close().await.unwrap();
            drop(log);

            let mut bytes = std::fs::read(&seg).unwrap();
            let mut at = None;
            crate::segment::walk(&bytes, true, &real, |off, h, rec| {
                if h.seq.get() == 4 && h.kind() == Some(Kind::Msg) {
                    at = Some((off, rec.len()));
                }
            });
            let (off, len) = at.unwrap();
            if header {
                bytes[off + 20] ^= 0x01; // payload_len
            } else {
                bytes[off + len - 1] ^= 0x01; // the last 'y'
            }
            std::fs::write(&seg, &bytes).unwrap();

            let log = Log::open(&p, cfg).await.unwrap();
            let st = log.state(false);
            assert_eq!(
                (st.msgs, st.first_seq, st.last_seq),
                (5, 1, 6),
                "header {header} foreign {foreign_salt}: {:?}",
                log.recovery_report()
            );
            assert!(log.get(EVIL).is_err());
            let seqs: Vec<u64> = log
                .scan(Start::Seq(0), Filter::all())
                .map(|m| m.unwrap().seq)
                .collect();
            assert_eq!(seqs, vec![1, 2, 3, 5, 6]);
            assert!(!log.recovery_report().corrupt.is_empty());
            let (s, _) = log.append("a", b"", b"next").await.unwrap();
            assert_eq!(s, 7);
        });
    }

    #[test]
    fn a_version_1_directory_is_refused_clearly() {
        // Segments but no `log-<salt>.meta`: written by format version 1.
        let dir = tempfile::tempdir().unwrap();
        let seg = dir.path().join(crate::segment::seg_name(1, 0));
        let mut v1 = Vec::new();
        format::encode(
            &mut v1,
            &Key::default(),
            Kind::Msg,
            0,
            1,
            1,
            b"a",
            b"",
            b"x",
        );
        v1[8] = 1;
        std::fs::write(&seg, &v1).unwrap();
        match super::recover(dir.path(), &LogConfig::default()) {
            Err(crate::Error::Layout(msg)) => assert!(msg.contains("version 1"), "{msg}"),
            Err(e) => panic!("{e}"),
            Ok(_) => panic!("a version-1 log was opened"),
        }
        assert_eq!(
            std::fs::read(&seg).unwrap(),
            v1,
            "refusing must not touch it"
        );
    }

    #[test]
    fn records_hidden_in_a_damaged_payload_are_never_recovered() {
        hidden_records_case(false, false);
        hidden_records_case(true, false);
        hidden_records_case(false, true);
        hidden_records_case(true, true);
    }
}
