//! Journal, state directory and recovery tests: round trips through real files, and each
//! kind of damage getting its outcome (cut tail, refusal naming shard/file/offset, fresh
//! start).

use std::fs::{self, OpenOptions};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rust_decimal::Decimal;

use super::codec::tests::same_exactly;
use super::codec::RECORD_BYTES;
use super::files::{list_shard, segment_name, shard_dir, TMP_SUFFIX};
use super::writer::{FRAME_HEADER_BYTES, FRAME_PREFIX_BYTES, SEGMENT_HEADER_BYTES};
use super::*;
use crate::api::{Code, Currency, Dpan, Kind, Request, TokenField};
use crate::snapshot::tests::sample_image;
use crate::snapshot::{write_snapshot, ShardImage};

const DAY_NS: i64 = 86_400_000_000_000;

fn meta(shards: usize) -> StateMeta {
    StateMeta {
        shards,
        hold_ttl_ns: 7 * DAY_NS,
        dup_window_ns: DAY_NS,
        retention_ns: 45 * DAY_NS,
    }
}

fn config(root: &Path, durability: Durability, segment_bytes_max: u64) -> JournalConfig {
    JournalConfig {
        dir: root.to_path_buf(),
        durability,
        segment_bytes_max,
    }
}

/// Deterministic, varied requests: every kind, extreme decimals (scale 28, the 96-bit
/// maximum, trailing zeros), tokens that are DPANs, empty, or other text.
fn request(seed: u64) -> (Request, Code) {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let kind = Kind::ALL[(next() % 12) as usize];
    let mut req = Request::new(kind, next(), (next() >> 1) as i64);
    req.token = match next() % 3 {
        0 => TokenField::Empty,
        1 => {
            TokenField::Dpan(Dpan::from_u64(Dpan::MIN + next() % (Dpan::MAX - Dpan::MIN)).unwrap())
        }
        _ => TokenField::Other(next()),
    };
    if next() % 2 == 0 {
        req.account_id = Some(next());
    }
    req.amount = match next() % 5 {
        0 => None,
        1 => Some(Decimal::MAX),
        2 => Some(Decimal::from_parts(next() as u32, 0, 0, true, 28)),
        3 => Some(Decimal::from_str_exact("12.340").unwrap()),
        _ => Some(Decimal::new(
            (next() % 1_000_000) as i64,
            (next() % 4) as u32,
        )),
    };
    req.currency = [None, Some(Currency::Cny), Some(Currency::Jpy)][(next() % 3) as usize];
    req.mcc = (next() % 2 == 0).then(|| next() % 10_000);
    req.reference = (next() % 2 == 0).then(&mut next);
    req.is_final = next() % 2 == 0;
    (req, Code::ALL[(next() % 13) as usize])
}

/// Records `start..start + n`.
fn batch(start: u64, n: u64) -> Vec<(Request, Code)> {
    (start..start + n).map(request).collect()
}

/// A sink that keeps what it is given.
#[derive(Default)]
struct Collect {
    image: Option<(u64, ShardImage)>,
    records: Vec<(u64, Request, Code)>,
    fail_at: Option<u64>,
}

impl ShardSink for Collect {
    fn restore(&mut self, seq: u64, image: ShardImage) -> Result<(), String> {
        assert!(
            self.image.is_none() && self.records.is_empty(),
            "restore comes first, once"
        );
        self.image = Some((seq, image));
        Ok(())
    }

    fn replay(&mut self, seq: u64, request: &Request, code: Code) -> Result<(), String> {
        if self.fail_at == Some(seq) {
            return Err("journal says 00, replay decided 51".into());
        }
        if let Some(&(last, _, _)) = self.records.last() {
            assert_eq!(seq, last + 1, "records come in seq order");
        }
        self.records.push((seq, *request, code));
        Ok(())
    }
}

fn recover(
    root: &Path,
    shards: usize,
    mode: Mode,
) -> Result<(RecoveryReport, Vec<Collect>), RecoveryError> {
    let state = StateDir::open(root, meta(shards))?;
    let mut sinks: Vec<Collect> = (0..shards).map(|_| Collect::default()).collect();
    let report = state.recover(&mut sinks, mode)?;
    Ok((report, sinks))
}

/// Assert `got` holds exactly records `from..to` as [`request`] makes them.
fn assert_records(got: &[(u64, Request, Code)], from: u64, to: u64) {
    assert_eq!(got.len() as u64, to - from, "record count");
    for (i, (seq, req, code)) in got.iter().enumerate() {
        let want = request(from + i as u64);
        assert_eq!(*seq, from + i as u64);
        assert!(
            same_exactly(req, &want.0),
            "record {seq}: {req:?} != {:?}",
            want.0
        );
        assert_eq!(*code, want.1);
    }
}

/// Write `sizes` as batches through a fresh writer of `shard` starting at `start`; returns
/// the next seq.
fn write_batches(
    cfg: &JournalConfig,
    shard: usize,
    start: u64,
    sizes: &[u64],
) -> (u64, JournalStats) {
    let mut w = JournalWriter::open(cfg, shard, start).unwrap();
    let mut seq = start;
    for &n in sizes {
        w.append_batch(&batch(seq, n)).unwrap();
        seq += n;
        assert_eq!(w.next_seq(), seq);
        assert_eq!(w.pending(), 0);
    }
    w.sync().unwrap();
    (seq, w.stats())
}

fn segments(root: &Path, shard: usize) -> Vec<PathBuf> {
    list_shard(&shard_dir(root, shard))
        .unwrap()
        .segments
        .into_iter()
        .map(|(_, p)| p)
        .collect()
}

/// (offset, total bytes) of each frame of a segment.
fn frames(path: &Path) -> Vec<(u64, u64)> {
    let bytes = fs::read(path).unwrap();
    let mut at = SEGMENT_HEADER_BYTES;
    let mut out = Vec::new();
    while at + FRAME_HEADER_BYTES <= bytes.len() {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        out.push((at as u64, (FRAME_HEADER_BYTES + len) as u64));
        at += FRAME_HEADER_BYTES + len;
    }
    out
}

fn flip(path: &Path, at: u64) {
    let mut bytes = fs::read(path).unwrap();
    bytes[at as usize] ^= 0x10;
    fs::write(path, bytes).unwrap();
}

fn truncate(path: &Path, len: u64) {
    OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(len)
        .unwrap();
}

fn frame_bytes(records: u64) -> u64 {
    (FRAME_HEADER_BYTES + FRAME_PREFIX_BYTES) as u64 + records * RECORD_BYTES as u64
}

/// A state dir with `shards` shards and batches of `sizes` on `shard`.
fn state_with(
    shards: usize,
    shard: usize,
    sizes: &[u64],
    segment_bytes_max: u64,
) -> (tempfile::TempDir, u64) {
    let root = tempfile::tempdir().unwrap();
    StateDir::open(root.path(), meta(shards)).unwrap();
    let cfg = config(root.path(), Durability::Sync, segment_bytes_max);
    let (end, _) = write_batches(&cfg, shard, 0, sizes);
    (root, end)
}

#[test]
fn batches_round_trip_across_segments_and_restarts() {
    let sizes = [
        3, 0, 13, 1, 7, 0, 11, 5, 9, 2, 8, 13, 4, 6, 10, 12, 1, 1, 1, 7,
    ]
    .repeat(3);
    let root = tempfile::tempdir().unwrap();
    StateDir::open(root.path(), meta(1)).unwrap();
    let cfg = config(root.path(), Durability::Sync, 4096);
    let (end, stats) = write_batches(&cfg, 0, 0, &sizes);
    let nonempty = sizes.iter().filter(|&&n| n > 0).count() as u64;
    // Group commit: one fdatasync per non-empty batch, nothing for empty ones.
    assert_eq!(stats.batches, nonempty);
    assert_eq!(stats.syncs, nonempty);
    assert_eq!(stats.records, end);
    assert!(stats.segments >= 3, "{stats:?}");
    let on_disk: u64 = segments(root.path(), 0)
        .iter()
        .map(|p| fs::metadata(p).unwrap().len())
        .sum();
    assert_eq!(on_disk, stats.bytes);
    for p in segments(root.path(), 0) {
        // Segments respect the size limit (no single batch here is larger than it).
        assert!(fs::metadata(&p).unwrap().len() <= 4096);
    }

    let (report, sinks) = recover(root.path(), 1, Mode::Repair).unwrap();
    let r = &report.shards[0];
    assert_eq!(
        (r.snapshot_seq, r.records_replayed, r.next_seq, r.bytes_cut),
        (None, end, end, 0)
    );
    assert_eq!(r.segments_read as u64, stats.segments);
    assert_records(&sinks[0].records, 0, end);

    // A restart continues in a new segment at next_seq; everything comes back in order.
    let (end2, _) = write_batches(&cfg, 0, end, &[4, 9]);
    let (report, sinks) = recover(root.path(), 1, Mode::Repair).unwrap();
    assert_eq!(report.shards[0].next_seq, end2);
    assert_records(&sinks[0].records, 0, end2);
}

#[test]
fn durability_none_touches_no_file() {
    let root = tempfile::tempdir().unwrap();
    let state = root.path().join("state");
    let cfg = config(&state, Durability::None, 4096);
    let (end, stats) = write_batches(&cfg, 0, 0, &[5, 6]);
    assert_eq!(end, 11);
    assert_eq!(stats, JournalStats::default());
    assert!(!state.exists());
}

#[test]
fn async_writes_every_batch_and_syncs_when_due() {
    let root = tempfile::tempdir().unwrap();
    StateDir::open(root.path(), meta(1)).unwrap();
    let lazy = config(
        root.path(),
        Durability::Async {
            interval: Duration::from_secs(3600),
        },
        1 << 20,
    );
    let mut w = JournalWriter::open(&lazy, 0, 0).unwrap();
    w.append_batch(&batch(0, 4)).unwrap();
    w.append_batch(&batch(4, 4)).unwrap();
    assert_eq!(w.stats().syncs, 0);
    assert!(!w.sync_if_due().unwrap());
    // Written (in the page cache): a process crash keeps it, so recovery sees it.
    let (_, sinks) = recover(root.path(), 1, Mode::ReadOnly).unwrap();
    assert_records(&sinks[0].records, 0, 8);
    w.sync().unwrap();
    assert_eq!(w.stats().syncs, 1);
    w.sync().unwrap();
    assert_eq!(w.stats().syncs, 1, "nothing dirty, no sync");
    drop(w);

    let eager = config(
        root.path(),
        Durability::Async {
            interval: Duration::from_nanos(1),
        },
        1 << 20,
    );
    let mut w = JournalWriter::open(&eager, 0, 8).unwrap();
    w.append_batch(&batch(8, 2)).unwrap();
    std::thread::sleep(Duration::from_millis(1));
    w.append_batch(&batch(10, 2)).unwrap();
    assert_eq!(w.stats().syncs, 2);
}

#[test]
fn flipped_byte_mid_file_is_refused_naming_shard_file_and_offset() {
    let (root, _) = state_with(2, 1, &[4, 5, 6, 7], 1 << 20);
    let seg = &segments(root.path(), 1)[0];
    let f = frames(seg);
    assert_eq!(f.len(), 4);
    let (second, _) = f[1];
    flip(seg, second + 30); // inside the second frame's records
    for mode in [Mode::Repair, Mode::ReadOnly] {
        let err = recover(root.path(), 2, mode).err().unwrap();
        assert_eq!(err.kind(), RecoveryErrorKind::Corrupt, "{err}");
        assert_eq!(err.shard(), Some(1));
        assert_eq!(err.path(), Some(seg.as_path()));
        assert_eq!(err.offset(), Some(second));
        let text = err.to_string();
        assert!(
            text.starts_with(&format!("shard 1: {} at byte {second}: ", seg.display())),
            "{text}"
        );
        assert!(text.contains("checksum mismatch"), "{text}");
    }
    // Nothing was cut: the damage is still there to inspect.
    assert_eq!(frames(seg).len(), 4);
}

#[test]
fn flipped_byte_in_the_last_frame_is_a_torn_tail_and_is_cut() {
    let (root, end) = state_with(1, 0, &[4, 5, 6, 7], 1 << 20);
    let seg = &segments(root.path(), 0)[0];
    let len_before = fs::metadata(seg).unwrap().len();
    let (last, last_len) = *frames(seg).last().unwrap();
    assert_eq!(last_len, frame_bytes(7));
    flip(seg, last + last_len - 1);

    // Read-only reports the cut and changes nothing.
    let (report, sinks) = recover(root.path(), 1, Mode::ReadOnly).unwrap();
    assert_eq!(report.shards[0].bytes_cut, last_len);
    assert_records(&sinks[0].records, 0, end - 7);
    assert_eq!(fs::metadata(seg).unwrap().len(), len_before);

    let (report, sinks) = recover(root.path(), 1, Mode::Repair).unwrap();
    let r = &report.shards[0];
    assert_eq!(
        (r.bytes_cut, r.next_seq, r.records_replayed),
        (last_len, end - 7, end - 7)
    );
    assert_eq!(r.cut_at, Some((seg.clone(), last)));
    assert_records(&sinks[0].records, 0, end - 7);
    assert_eq!(fs::metadata(seg).unwrap().len(), last);

    // Clean now; writing resumes at the cut and later recoveries see one sequence.
    let (report, _) = recover(root.path(), 1, Mode::Repair).unwrap();
    assert_eq!(report.shards[0].bytes_cut, 0);
    let cfg = config(root.path(), Durability::Sync, 1 << 20);
    let (end2, _) = write_batches(&cfg, 0, end - 7, &[3]);
    let (_, sinks) = recover(root.path(), 1, Mode::Repair).unwrap();
    assert_records(&sinks[0].records, 0, end2);
}

#[test]
fn truncated_last_frame_is_cut() {
    // Torn anywhere: inside the body, inside the frame header, right after the header.
    for keep in [frame_bytes(7) - 1, 20, 3, 8, 0] {
        let (root, end) = state_with(1, 0, &[4, 5, 6, 7], 1 << 20);
        let seg = &segments(root.path(), 0)[0];
        let (last, _) = *frames(seg).last().unwrap();
        truncate(seg, last + keep);
        let (report, sinks) = recover(root.path(), 1, Mode::Repair).unwrap();
        let r = &report.shards[0];
        assert_eq!(r.bytes_cut, keep, "keep {keep}");
        assert_eq!(r.next_seq, end - 7);
        assert_records(&sinks[0].records, 0, end - 7);
        assert_eq!(fs::metadata(seg).unwrap().len(), last);
    }
}

#[test]
fn damage_at_the_end_of_a_segment_that_is_not_the_last_is_refused() {
    // Each batch of 40 records (2660 bytes) fills a 4 KiB segment: one frame per segment.
    let sizes = [40, 40, 40];
    let (root, _) = state_with(1, 0, &sizes, 4096);
    let segs = segments(root.path(), 0);
    assert_eq!(segs.len(), 3);
    let (frame, len) = frames(&segs[1])[0];
    flip(&segs[1], frame + len - 1);
    let err = recover(root.path(), 1, Mode::Repair).err().unwrap();
    assert_eq!(
        (err.kind(), err.shard(), err.offset()),
        (RecoveryErrorKind::Corrupt, Some(0), Some(frame))
    );
    assert_eq!(err.path(), Some(segs[1].as_path()));

    let (root, _) = state_with(1, 0, &sizes, 4096);
    let segs = segments(root.path(), 0);
    let (frame, len) = frames(&segs[0])[0];
    truncate(&segs[0], frame + len - 5);
    let err = recover(root.path(), 1, Mode::Repair).err().unwrap();
    assert_eq!(
        (err.kind(), err.offset()),
        (RecoveryErrorKind::Corrupt, Some(frame))
    );
    assert!(err.message().contains("not the last"), "{err}");
    assert_eq!(err.path(), Some(segs[0].as_path()));
}

#[test]
fn damaged_segment_header_is_refused() {
    let (root, _) = state_with(1, 0, &[40, 40], 4096);
    let segs = segments(root.path(), 0);
    flip(&segs[1], 17); // the first-seq field
    let err = recover(root.path(), 1, Mode::Repair).err().unwrap();
    assert_eq!(
        (err.kind(), err.offset()),
        (RecoveryErrorKind::Corrupt, Some(28))
    );
    assert!(err.message().contains("header checksum"), "{err}");

    // A segment renamed to another seq is caught by its header.
    let (root, _) = state_with(1, 0, &[40, 40], 4096);
    let segs = segments(root.path(), 0);
    fs::rename(&segs[1], segs[1].with_file_name(segment_name(41))).unwrap();
    let err = recover(root.path(), 1, Mode::Repair).err().unwrap();
    assert_eq!(err.kind(), RecoveryErrorKind::MissingSegment, "{err}");
}

#[test]
fn missing_segments_are_refused() {
    let sizes = [40, 40, 40, 40];
    let (root, _) = state_with(1, 0, &sizes, 4096);
    let segs = segments(root.path(), 0);
    fs::remove_file(&segs[1]).unwrap();
    let err = recover(root.path(), 1, Mode::Repair).err().unwrap();
    assert_eq!(
        (err.kind(), err.shard()),
        (RecoveryErrorKind::MissingSegment, Some(0))
    );
    assert_eq!(err.path(), Some(segs[2].as_path()));
    assert!(
        err.message().contains("records 40..80 are missing"),
        "{err}"
    );

    // The first segment gone (and no snapshot covering it): refused too.
    let (root, _) = state_with(1, 0, &sizes, 4096);
    let segs = segments(root.path(), 0);
    fs::remove_file(&segs[0]).unwrap();
    let err = recover(root.path(), 1, Mode::Repair).err().unwrap();
    assert_eq!(err.kind(), RecoveryErrorKind::MissingSegment);
    assert_eq!(err.path(), Some(segs[1].as_path()));
}

#[test]
fn empty_or_missing_state_dir_is_a_fresh_start() {
    let (missing, empty) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    for root in [missing.path().join("new/state"), empty.path().to_path_buf()] {
        let state = StateDir::open(&root, meta(3)).unwrap();
        assert!(state.is_fresh());
        assert!(root.join("state.meta").is_file());
        for k in 0..3 {
            assert!(shard_dir(&root, k).is_dir());
        }
        let mut sinks: Vec<Collect> = (0..3).map(|_| Collect::default()).collect();
        let report = state.recover(&mut sinks, Mode::Repair).unwrap();
        assert_eq!(report.shards.len(), 3);
        for (k, r) in report.shards.iter().enumerate() {
            assert_eq!(
                (r.shard, r.snapshot_seq, r.next_seq, r.records_replayed),
                (k, None, 0, 0)
            );
        }
        let again = StateDir::open(&root, meta(3)).unwrap();
        assert!(!again.is_fresh());
        assert_eq!(again.meta(), meta(3));
    }

    // Half-created (crash before state.meta): only empty shard dirs, so still fresh.
    let root = tempfile::tempdir().unwrap();
    fs::create_dir(root.path().join("shard-0")).unwrap();
    assert!(StateDir::open(root.path(), meta(2)).unwrap().is_fresh());
}

#[test]
fn other_shard_count_or_time_rules_are_refused_clearly() {
    let root = tempfile::tempdir().unwrap();
    StateDir::open(root.path(), meta(4)).unwrap();
    let err = StateDir::open(root.path(), meta(2)).unwrap_err();
    assert_eq!(err.kind(), RecoveryErrorKind::Mismatch);
    assert!(
        err.message()
            .contains("created with 4 shards; this engine has 2"),
        "{err}"
    );
    assert!(err.message().contains("start with 4 shards"), "{err}");
    let mut other = meta(4);
    other.dup_window_ns += 1;
    let err = StateDir::open(root.path(), other).unwrap_err();
    assert!(err.message().contains("dup_window_ns"), "{err}");
    assert_eq!(err.path(), Some(root.path().join("state.meta").as_path()));

    // A shard directory gone is refused, not recreated empty.
    fs::remove_dir(shard_dir(root.path(), 3)).unwrap();
    let err = StateDir::open(root.path(), meta(4)).unwrap_err();
    assert_eq!(err.shard(), Some(3));

    // Damaged state.meta.
    let root = tempfile::tempdir().unwrap();
    StateDir::open(root.path(), meta(4)).unwrap();
    let path = root.path().join("state.meta");
    let text = fs::read_to_string(&path)
        .unwrap()
        .replace("shards 4", "shards 5");
    fs::write(&path, text).unwrap();
    let err = StateDir::open(root.path(), meta(5)).unwrap_err();
    assert_eq!(err.kind(), RecoveryErrorKind::Corrupt);
}

#[test]
fn a_directory_of_other_files_is_not_taken() {
    let root = tempfile::tempdir().unwrap();
    fs::write(root.path().join("accounts.csv"), "x").unwrap();
    let err = StateDir::open(root.path(), meta(1)).unwrap_err();
    assert_eq!(err.kind(), RecoveryErrorKind::NotAStateDir);
    assert!(err.message().contains("accounts.csv"), "{err}");
    assert!(!root.path().join("state.meta").exists());
}

#[test]
fn snapshot_then_journal_replays_exactly_the_records_after_it() {
    let root = tempfile::tempdir().unwrap();
    StateDir::open(root.path(), meta(2)).unwrap();
    let cfg = config(root.path(), Durability::Sync, 4096);
    // Batches of 5: the snapshot at 12 falls inside the third frame.
    let (end, _) = write_batches(&cfg, 1, 0, &[5, 5, 5, 5, 40, 40]);
    let image = sample_image();
    write_snapshot(root.path(), 1, 12, &image).unwrap();
    let (report, sinks) = recover(root.path(), 2, Mode::Repair).unwrap();
    let r = &report.shards[1];
    assert_eq!(
        (r.snapshot_seq, r.records_replayed, r.next_seq),
        (Some(12), end - 12, end)
    );
    assert_eq!(sinks[1].image.as_ref(), Some(&(12, image)));
    assert_records(&sinks[1].records, 12, end);
    assert!(sinks[0].image.is_none() && sinks[0].records.is_empty());
}

#[test]
fn a_snapshot_ahead_of_the_journal_resumes_at_its_seq() {
    // Async: the snapshot was synced, the journal's last batches were not.
    let (root, end) = state_with(1, 0, &[5, 5], 1 << 20);
    write_snapshot(root.path(), 0, end + 6, &sample_image()).unwrap();
    let (report, sinks) = recover(root.path(), 1, Mode::Repair).unwrap();
    assert_eq!(report.shards[0].next_seq, end + 6);
    assert!(sinks[0].records.is_empty());
    let cfg = config(root.path(), Durability::Sync, 1 << 20);
    let (end2, _) = write_batches(&cfg, 0, end + 6, &[3]);
    let (_, sinks) = recover(root.path(), 1, Mode::Repair).unwrap();
    assert_records(&sinks[0].records, end + 6, end2);
}

#[test]
fn a_damaged_newest_snapshot_is_refused_and_the_previous_one_serves_by_hand() {
    let root = tempfile::tempdir().unwrap();
    StateDir::open(root.path(), meta(1)).unwrap();
    let cfg = config(root.path(), Durability::Sync, 4096);
    let (mid, _) = write_batches(&cfg, 0, 0, &[40, 40]);
    write_snapshot(root.path(), 0, 40, &sample_image()).unwrap();
    let newest = write_snapshot(root.path(), 0, mid, &sample_image()).unwrap();
    let (end, _) = write_batches(&cfg, 0, mid, &[40, 40]);
    let expect_gone = segments_before(root.path(), 40);
    assert_eq!(expect_gone.len(), 1);
    let pruned = prune_shard(root.path(), 0, 2).unwrap();
    assert_eq!(pruned.segments, expect_gone);
    flip(&newest, 70);

    let err = recover(root.path(), 1, Mode::Repair).err().unwrap();
    assert_eq!(
        (err.kind(), err.shard()),
        (RecoveryErrorKind::Corrupt, Some(0))
    );
    assert_eq!(err.path(), Some(newest.as_path()));
    assert!(err.offset().is_some());
    assert!(
        err.message()
            .contains("move this file out of the directory"),
        "{err}"
    );

    // The documented manual fallback: set it aside, recover from the previous snapshot.
    fs::rename(&newest, root.path().join("set-aside.snap")).unwrap();
    let (report, sinks) = recover(root.path(), 1, Mode::Repair).unwrap();
    assert_eq!(report.shards[0].snapshot_seq, Some(40));
    assert_records(&sinks[0].records, 40, end);
}

/// Segments of shard 0 a snapshot at `seq` makes unnecessary (helper for prune checks).
fn segments_before(root: &Path, seq: u64) -> Vec<PathBuf> {
    let files = list_shard(&shard_dir(root, 0)).unwrap();
    files
        .segments
        .windows(2)
        .filter(|w| w[1].0 <= seq)
        .map(|w| w[0].1.clone())
        .collect()
}

#[test]
fn prune_keeps_two_snapshots_and_the_journal_since_the_older() {
    let root = tempfile::tempdir().unwrap();
    StateDir::open(root.path(), meta(1)).unwrap();
    let cfg = config(root.path(), Durability::Sync, 4096);
    let (end, _) = write_batches(&cfg, 0, 0, &[40; 6]);
    assert_eq!(segments(root.path(), 0).len(), 6);
    for seq in [40, 100, 200] {
        write_snapshot(root.path(), 0, seq, &sample_image()).unwrap();
    }
    let expect_gone = segments_before(root.path(), 100);
    let report = prune_shard(root.path(), 0, 2).unwrap();
    assert_eq!(
        report.snapshots,
        vec![shard_dir(root.path(), 0).join(snapshot_name(40))]
    );
    assert_eq!(report.segments, expect_gone);
    // Segments 0 and 40 held records before 100; the one starting at 80 holds record 100.
    assert_eq!(report.segments.len(), 2);
    let (r, sinks) = recover(root.path(), 1, Mode::Repair).unwrap();
    assert_eq!(r.shards[0].snapshot_seq, Some(200));
    assert_records(&sinks[0].records, 200, end);
    // Nothing more to prune; the last segment is never removed.
    assert_eq!(
        prune_shard(root.path(), 0, 2).unwrap(),
        PruneReport::default()
    );
    let report = prune_shard(root.path(), 0, 1).unwrap();
    assert_eq!(report.snapshots.len(), 1);
    // Only the segment holding record 200 on is needed now.
    assert_eq!(
        segments(root.path(), 0),
        [shard_dir(root.path(), 0).join(segment_name(200))]
    );
}

#[test]
fn a_last_segment_without_frames_is_removed_and_writing_continues() {
    for keep in [SEGMENT_HEADER_BYTES as u64, 10, 0] {
        let (root, end) = state_with(1, 0, &[5, 5], 1 << 20);
        // A crash right after the next segment was created (whole, partial or no header).
        let seg = shard_dir(root.path(), 0).join(segment_name(end));
        fs::write(
            &seg,
            &super::writer::segment_header(0, end)[..keep as usize],
        )
        .unwrap();
        let (report, sinks) = recover(root.path(), 1, Mode::Repair).unwrap();
        let r = &report.shards[0];
        assert_eq!(r.next_seq, end);
        assert_eq!(
            r.bytes_cut,
            if keep == SEGMENT_HEADER_BYTES as u64 {
                0
            } else {
                keep
            }
        );
        assert_records(&sinks[0].records, 0, end);
        assert!(!seg.exists(), "keep {keep}");
        let cfg = config(root.path(), Durability::Sync, 1 << 20);
        let (end2, _) = write_batches(&cfg, 0, end, &[2]);
        let (_, sinks) = recover(root.path(), 1, Mode::Repair).unwrap();
        assert_records(&sinks[0].records, 0, end2);
    }
}

#[test]
fn sink_refusals_name_the_shard_and_record() {
    let (root, _) = state_with(1, 0, &[5, 5], 1 << 20);
    let state = StateDir::open(root.path(), meta(1)).unwrap();
    let mut sinks = vec![Collect {
        fail_at: Some(7),
        ..Collect::default()
    }];
    let err = state.recover(&mut sinks, Mode::Repair).unwrap_err();
    assert_eq!(
        (err.kind(), err.shard()),
        (RecoveryErrorKind::Replay, Some(0))
    );
    assert!(
        err.message().starts_with("record 7: journal says 00"),
        "{err}"
    );
    assert_eq!(
        err.offset(),
        Some(SEGMENT_HEADER_BYTES as u64 + frame_bytes(5))
    );
}

#[test]
fn shards_recover_in_parallel_each_reporting() {
    let root = tempfile::tempdir().unwrap();
    StateDir::open(root.path(), meta(4)).unwrap();
    let cfg = config(root.path(), Durability::Sync, 4096);
    let mut ends = Vec::new();
    for k in 0..4 {
        let sizes: Vec<u64> = (0..=k as u64).map(|i| 10 + i).collect();
        ends.push(write_batches(&cfg, k, 0, &sizes).0);
    }
    write_snapshot(root.path(), 2, 5, &sample_image()).unwrap();
    let (report, sinks) = recover(root.path(), 4, Mode::Repair).unwrap();
    assert_eq!(report.records_replayed(), ends.iter().sum::<u64>() - 5);
    assert_eq!(report.bytes_cut(), 0);
    for k in 0..4 {
        let r = &report.shards[k];
        assert_eq!(r.shard, k);
        assert_eq!(r.next_seq, ends[k]);
        let from = if k == 2 { 5 } else { 0 };
        assert_eq!(r.snapshot_seq, (k == 2).then_some(5));
        assert_records(&sinks[k].records, from, ends[k]);
        assert!(r.elapsed <= report.elapsed);
    }
}

#[test]
fn leftover_snapshot_temporaries_are_removed_not_read() {
    let (root, end) = state_with(1, 0, &[5], 1 << 20);
    let tmp = shard_dir(root.path(), 0).join(format!("{}{TMP_SUFFIX}", snapshot_name(3)));
    fs::write(&tmp, b"half a snapshot").unwrap();
    let (report, _) = recover(root.path(), 1, Mode::ReadOnly).unwrap();
    assert_eq!(report.shards[0].snapshot_seq, None);
    assert!(tmp.exists());
    let (report, sinks) = recover(root.path(), 1, Mode::Repair).unwrap();
    assert_eq!(report.shards[0].snapshot_seq, None);
    assert_records(&sinks[0].records, 0, end);
    assert!(!tmp.exists());
}

#[test]
fn config_limits_are_checked() {
    let mut cfg = JournalConfig::new("/nonexistent");
    assert_eq!(cfg.durability, Durability::Sync);
    assert_eq!(cfg.validate(), Ok(()));
    cfg.segment_bytes_max = 100;
    assert!(cfg.validate().unwrap_err().contains("segment_bytes_max"));
    cfg.segment_bytes_max = 4096;
    cfg.durability = Durability::Async {
        interval: Duration::ZERO,
    };
    assert!(cfg.validate().is_err());
    assert!(JournalWriter::open(&cfg, 0, 0).is_err());
}

#[test]
fn a_commit_larger_than_a_frame_is_several_frames_in_one_write_and_one_sync() {
    let root = tempfile::tempdir().unwrap();
    StateDir::open(root.path(), meta(1)).unwrap();
    let cfg = config(root.path(), Durability::Sync, 1 << 20);
    let mut w = JournalWriter::open(&cfg, 0, 0).unwrap();
    w.set_frame_records_max(4);
    w.append_batch(&batch(0, 10)).unwrap();
    w.append_batch(&batch(10, 4)).unwrap();
    assert_eq!((w.stats().batches, w.stats().syncs), (2, 2));
    drop(w);
    let seg = &segments(root.path(), 0)[0];
    let sizes: Vec<u64> = frames(seg).iter().map(|f| f.1).collect();
    assert_eq!(
        sizes,
        [
            frame_bytes(4),
            frame_bytes(4),
            frame_bytes(2),
            frame_bytes(4)
        ]
    );
    let (_, sinks) = recover(root.path(), 1, Mode::Repair).unwrap();
    assert_records(&sinks[0].records, 0, 14);
}

#[test]
fn a_writer_opened_without_recovery_is_refused() {
    let (root, end) = state_with(1, 0, &[5, 5], 1 << 20);
    let cfg = config(root.path(), Durability::Sync, 1 << 20);
    let err = JournalWriter::open(&cfg, 0, 0).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::AlreadyExists);
    assert!(err.to_string().contains("recover the shard"), "{err}");
    assert!(JournalWriter::open(&cfg, 0, end).is_ok());
}

#[test]
fn records_pushed_encoded_make_the_same_file_as_records_pushed_one_by_one() {
    // The pipelined commit encodes on the shard thread and hands the bytes over: the file
    // must not be able to tell, including frames split at the records-per-frame limit and
    // a frame left open by one hand-over and continued by the next.
    let cuts: &[&[u64]] = &[&[10], &[3, 1, 6], &[4, 4, 2], &[0, 7, 0, 3]];
    for &cut in cuts {
        let records = batch(0, 10);
        let by_request = tempfile::tempdir().unwrap();
        let encoded = tempfile::tempdir().unwrap();
        for root in [by_request.path(), encoded.path()] {
            StateDir::open(root, meta(1)).unwrap();
        }
        let cfg = |root: &Path| config(root, Durability::Sync, 1 << 20);
        let mut a = JournalWriter::open(&cfg(by_request.path()), 0, 0).unwrap();
        let mut b = JournalWriter::open(&cfg(encoded.path()), 0, 0).unwrap();
        a.set_frame_records_max(4);
        b.set_frame_records_max(4);
        a.append_batch(&records).unwrap();
        let mut at = 0usize;
        for &n in cut {
            let mut bytes = Vec::new();
            for (req, code) in &records[at..at + n as usize] {
                super::codec::encode_record(&mut bytes, req, *code);
            }
            b.push_encoded(&bytes);
            at += n as usize;
        }
        assert_eq!(b.next_seq(), 10);
        b.commit().unwrap();
        drop((a, b));
        let file = |root: &Path| fs::read(&segments(root, 0)[0]).unwrap();
        assert_eq!(file(by_request.path()), file(encoded.path()), "cut {cut:?}");
        let (_, sinks) = recover(encoded.path(), 1, Mode::Repair).unwrap();
        assert_records(&sinks[0].records, 0, 10);
    }
}
