//! The state directory: its `state.meta` (shard count and time rules, fixed at creation),
//! fresh start, parallel recovery of every shard (newest snapshot + journal after it), and
//! pruning of snapshots and segments a newer snapshot has made unnecessary.

use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::api::{Code, Request};
use crate::snapshot::{read_snapshot, ShardImage};

use super::files::{list_shard, shard_dir, sync_dir, write_atomically};
use super::reader::{scan_journal, RecordAt};
use super::{RecoveryError, RecoveryErrorKind};

/// Name of the metadata file in the state directory.
pub(crate) const META_NAME: &str = "state.meta";
/// The lock file an engine holds an exclusive lock on while it has the directory open.
pub(crate) const LOCK_NAME: &str = "lock";
const META_FIRST_LINE: &str = "payauth-state 1";

/// What a state directory is created with and must be reopened with: the shard count (a
/// journal is partitioned by `shard_of(account_id, shards)`) and the time rules (replaying a
/// journal under other rules could decide differently).
///
/// Stored as `state.meta`, a small text file:
/// ```text
/// payauth-state 1
/// shards 4
/// hold_ttl_ns 604800000000000
/// dup_window_ns 86400000000000
/// retention_ns 3888000000000000
/// crc32c 0x1a2b3c4d
/// ```
/// (the checksum covers every byte before the `crc32c` line).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StateMeta {
    /// Shards of the engine (`Config::shards`).
    pub shards: usize,
    /// `Config::hold_ttl_ns`.
    pub hold_ttl_ns: i64,
    /// `Config::dup_window_ns`.
    pub dup_window_ns: i64,
    /// `Config::retention_ns`.
    pub retention_ns: i64,
}

impl StateMeta {
    fn encode(&self) -> String {
        let body = format!(
            "{META_FIRST_LINE}\nshards {}\nhold_ttl_ns {}\ndup_window_ns {}\nretention_ns {}\n",
            self.shards, self.hold_ttl_ns, self.dup_window_ns, self.retention_ns
        );
        let crc = crc32c::crc32c(body.as_bytes());
        format!("{body}crc32c {crc:#010x}\n")
    }

    fn decode(text: &str) -> Result<StateMeta, String> {
        let Some(crc_at) = text.rfind("crc32c ") else {
            return Err("no crc32c line".into());
        };
        let (body, crc_line) = text.split_at(crc_at);
        let stored = crc_line
            .trim_end_matches('\n')
            .strip_prefix("crc32c 0x")
            .and_then(|h| u32::from_str_radix(h, 16).ok())
            .ok_or("the crc32c line does not parse")?;
        let actual = crc32c::crc32c(body.as_bytes());
        if stored != actual {
            return Err(format!(
                "checksum mismatch (stored {stored:#010x}, computed {actual:#010x})"
            ));
        }
        let mut lines = body.lines();
        if lines.next() != Some(META_FIRST_LINE) {
            return Err(format!("first line is not `{META_FIRST_LINE}`"));
        }
        let mut field = |name: &str| -> Result<&str, String> {
            let line = lines.next().ok_or(format!("missing `{name}`"))?;
            line.strip_prefix(name)
                .and_then(|v| v.strip_prefix(' '))
                .ok_or(format!("expected `{name} VALUE`, found `{line}`"))
        };
        let int = |name: &str, v: &str| -> Result<i64, String> {
            v.parse()
                .map_err(|_| format!("`{name}` value `{v}` does not parse"))
        };
        let shards = field("shards")?;
        let shards: usize = shards
            .parse()
            .map_err(|_| format!("`shards` value `{shards}` does not parse"))?;
        let hold_ttl_ns = int("hold_ttl_ns", field("hold_ttl_ns")?)?;
        let dup_window_ns = int("dup_window_ns", field("dup_window_ns")?)?;
        let retention_ns = int("retention_ns", field("retention_ns")?)?;
        if lines.next().is_some() {
            return Err("unexpected lines before crc32c".into());
        }
        Ok(StateMeta {
            shards,
            hold_ttl_ns,
            dup_window_ns,
            retention_ns,
        })
    }
}

/// Whether recovery may change files.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Cut a torn tail (truncate), remove an empty last segment and leftover temporaries:
    /// what a restart does before the writers continue.
    Repair,
    /// Change nothing; report what Repair would cut (for tools that read a state directory
    /// in place, such as `crate::archive`, which turns a journal back into traffic).
    ReadOnly,
}

/// Which snapshot of each shard recovery starts from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Start {
    /// The newest: the shortest replay (what the engine does).
    Newest,
    /// The oldest kept: the longest stretch of journal (what an archive reader wants).
    Oldest,
}

/// Where recovery delivers one shard's state; implemented by the engine (restore into a
/// `Store`, replay through `rules::decide`) and by tools that read journals.
///
/// Calls for one shard come from one thread, in order: at most one `restore`, then
/// `replay` for each journaled record after the snapshot, in seq order. Shards run in
/// parallel, each on its own sink. An `Err` stops recovery with
/// [`RecoveryErrorKind::Replay`], naming the shard, file and record.
pub trait ShardSink: Send {
    /// The newest snapshot, covering records `[0, seq)`.
    fn restore(&mut self, seq: u64, image: ShardImage) -> Result<(), String>;
    /// One record the shard applied, `request` exactly as it arrived and the `code` it was
    /// answered with.
    fn replay(&mut self, seq: u64, request: &Request, code: Code) -> Result<(), String>;
}

/// What recovery did for one shard.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardReport {
    /// The shard.
    pub shard: usize,
    /// The snapshot restored (it covers records `[0, seq)`), if there was one.
    pub snapshot_seq: Option<u64>,
    /// Journal records replayed after it.
    pub records_replayed: u64,
    /// Number of the shard's next record: it holds records `0..next_seq`, which are the
    /// first `next_seq` requests a host routed to this shard (`Engine::shard_for`), in the
    /// order it submitted them.
    pub next_seq: u64,
    /// Journal segments read.
    pub segments_read: usize,
    /// Bytes of torn tail cut (read-only: that would be cut).
    pub bytes_cut: u64,
    /// The file and offset of the cut, if any.
    pub cut_at: Option<(PathBuf, u64)>,
    /// Wall time this shard took.
    pub elapsed: Duration,
}

/// What recovery did, per shard (sorted by shard), plus the wall time of the whole.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecoveryReport {
    /// One per shard.
    pub shards: Vec<ShardReport>,
    /// Wall time of the whole recovery (shards run in parallel).
    pub elapsed: Duration,
}

impl RecoveryReport {
    /// Records replayed over all shards.
    pub fn records_replayed(&self) -> u64 {
        self.shards.iter().map(|s| s.records_replayed).sum()
    }

    /// Torn-tail bytes cut over all shards.
    pub fn bytes_cut(&self) -> u64 {
        self.shards.iter().map(|s| s.bytes_cut).sum()
    }
}

impl fmt::Display for ShardReport {
    /// One line: `shard 2: snapshot at record 1000 + 345 records replayed from 1 segment,
    /// 66 bytes of torn tail cut at FILE:OFFSET, next record 1345, 1.2 ms`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "shard {}: ", self.shard)?;
        match self.snapshot_seq {
            Some(seq) => write!(f, "snapshot at record {seq}")?,
            None => f.write_str("no snapshot")?,
        }
        write!(
            f,
            " + {} records replayed from {} segment{}",
            self.records_replayed,
            self.segments_read,
            if self.segments_read == 1 { "" } else { "s" }
        )?;
        if let Some((path, offset)) = &self.cut_at {
            write!(
                f,
                ", {} bytes of torn tail cut at {}:{offset}",
                self.bytes_cut,
                path.display()
            )?;
        }
        write!(
            f,
            ", next record {}, {:.1} ms",
            self.next_seq,
            self.elapsed.as_secs_f64() * 1e3
        )
    }
}

impl fmt::Display for RecoveryReport {
    /// A summary line, then one indented line per shard.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "recovered {} shard{} in {:.1} ms: {} records replayed, {} bytes of torn tail cut",
            self.shards.len(),
            if self.shards.len() == 1 { "" } else { "s" },
            self.elapsed.as_secs_f64() * 1e3,
            self.records_replayed(),
            self.bytes_cut()
        )?;
        for s in &self.shards {
            write!(f, "\n  {s}")?;
        }
        Ok(())
    }
}

/// An opened state directory whose `state.meta` matches the engine's.
#[derive(Debug)]
pub struct StateDir {
    root: PathBuf,
    meta: StateMeta,
    fresh: bool,
}

impl StateDir {
    /// Open `root` for an engine with `meta`.
    ///
    /// - Missing or empty (or left by a creation that crashed before `state.meta` was
    ///   written: only empty `shard-*` directories and temporaries): a fresh start. The shard
    ///   directories are created, then `state.meta` (its atomic rename is the commit point).
    /// - With `state.meta`: the shard count and time rules must equal `meta`'s, else
    ///   [`RecoveryErrorKind::Mismatch`] says what differs and what to do; every shard
    ///   directory must exist.
    /// - Anything else (files but no `state.meta`): [`RecoveryErrorKind::NotAStateDir`].
    pub fn open(root: &Path, meta: StateMeta) -> Result<StateDir, RecoveryError> {
        StateDir::open_with(root, meta, |_| Ok(()))
    }

    /// True when `root` holds a state directory (its `state.meta` exists); false when it is
    /// missing, empty or half-created (what [`StateDir::open`] would take as a fresh start).
    /// Reads only.
    pub fn has_state(root: &Path) -> Result<bool, RecoveryError> {
        let meta_path = root.join(META_NAME);
        match fs::symlink_metadata(&meta_path) {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(RecoveryError::io(&meta_path, &e)),
        }
    }

    /// [`StateDir::open`], with `init(root)` run on a fresh start after the shard
    /// directories exist and before `state.meta` is written: what `init` writes (the
    /// engine's snapshot 0 of each shard) is part of the creation, whose commit point is
    /// `state.meta`'s atomic rename. A crash before it leaves a half-created directory,
    /// which the next fresh start takes (clearing the leftover snapshots) instead of
    /// refusing. Not called when the directory already holds a state.
    pub fn open_with(
        root: &Path,
        meta: StateMeta,
        init: impl FnOnce(&Path) -> Result<(), RecoveryError>,
    ) -> Result<StateDir, RecoveryError> {
        let io = |e: io::Error| RecoveryError::io(root, &e);
        if meta.shards == 0 {
            return Err(RecoveryError::new(
                RecoveryErrorKind::Mismatch,
                "zero shards",
            ));
        }
        let meta_path = root.join(META_NAME);
        match fs::read(&meta_path) {
            Ok(bytes) => {
                let text = String::from_utf8(bytes).map_err(|_| {
                    RecoveryError::new(RecoveryErrorKind::Corrupt, "not UTF-8 text")
                        .at_path(&meta_path)
                })?;
                let found = StateMeta::decode(&text).map_err(|m| {
                    RecoveryError::new(RecoveryErrorKind::Corrupt, m).at_path(&meta_path)
                })?;
                check_same(root, &found, &meta)?;
                for k in 0..meta.shards {
                    let dir = shard_dir(root, k);
                    if !dir.is_dir() {
                        return Err(RecoveryError::new(
                            RecoveryErrorKind::MissingSegment,
                            "the shard directory is missing",
                        )
                        .in_shard(k)
                        .at_path(&dir));
                    }
                }
                return Ok(StateDir {
                    root: root.to_path_buf(),
                    meta,
                    fresh: false,
                });
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(RecoveryError::io(&meta_path, &e)),
        }
        // No state.meta: only a fresh (or half-created) directory may be taken. A
        // half-created one has `shard-*` directories holding nothing but snapshots (the
        // creation's own snapshot 0s; no journal, so nothing was ever decided), and perhaps
        // a temporary of state.meta. Its leftovers are removed before the creation reruns.
        let mut leftovers = Vec::new();
        if root.exists() {
            for entry in fs::read_dir(root).map_err(io)? {
                let entry = entry.map_err(io)?;
                let path = entry.path();
                let name = entry.file_name();
                let name = name.to_string_lossy();
                let mut half_created =
                    name == format!("{META_NAME}{}", super::files::TMP_SUFFIX) || name == LOCK_NAME;
                if name.starts_with("shard-") && path.is_dir() {
                    let files = list_shard(&path).map_err(|e| RecoveryError::io(&path, &e))?;
                    let listed = files.snapshots.len() + files.temporaries.len();
                    let all = fs::read_dir(&path).map_err(io)?.count();
                    if files.segments.is_empty() && listed == all {
                        half_created = true;
                        leftovers.extend(files.snapshots.into_iter().map(|(_, p)| p));
                        leftovers.extend(files.temporaries);
                    }
                }
                if !half_created {
                    return Err(RecoveryError::new(
                        RecoveryErrorKind::NotAStateDir,
                        format!(
                            "the directory holds `{name}` but no {META_NAME}: it is not a \
                             payauth state directory; refusing to write into it"
                        ),
                    )
                    .at_path(root));
                }
            }
        }
        for path in &leftovers {
            fs::remove_file(path).map_err(|e| RecoveryError::io(path, &e))?;
        }
        fs::create_dir_all(root).map_err(io)?;
        for k in 0..meta.shards {
            let dir = shard_dir(root, k);
            fs::create_dir_all(&dir).map_err(|e| RecoveryError::io(&dir, &e))?;
            if !leftovers.is_empty() {
                sync_dir(&dir).map_err(|e| RecoveryError::io(&dir, &e))?;
            }
        }
        sync_dir(root).map_err(io)?;
        init(root)?;
        write_atomically(&meta_path, meta.encode().as_bytes())
            .map_err(|e| RecoveryError::io(&meta_path, &e))?;
        Ok(StateDir {
            root: root.to_path_buf(),
            meta,
            fresh: true,
        })
    }

    /// Open an existing state directory as it is, with the `state.meta` it holds, creating
    /// and changing nothing: [`RecoveryErrorKind::NotAStateDir`] when there is no
    /// `state.meta`.
    pub(crate) fn open_existing(root: &Path) -> Result<StateDir, RecoveryError> {
        let meta_path = root.join(META_NAME);
        let bytes = match fs::read(&meta_path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(RecoveryError::new(
                    RecoveryErrorKind::NotAStateDir,
                    format!("no {META_NAME}: not a payauth state directory (or an empty one)"),
                )
                .at_path(root))
            }
            Err(e) => return Err(RecoveryError::io(&meta_path, &e)),
        };
        let text = String::from_utf8(bytes).map_err(|_| {
            RecoveryError::new(RecoveryErrorKind::Corrupt, "not UTF-8 text").at_path(&meta_path)
        })?;
        let meta = StateMeta::decode(&text)
            .map_err(|m| RecoveryError::new(RecoveryErrorKind::Corrupt, m).at_path(&meta_path))?;
        StateDir::open(root, meta)
    }

    /// True when `open` created the directory: nothing to recover.
    pub fn is_fresh(&self) -> bool {
        self.fresh
    }

    /// What it was created with.
    pub fn meta(&self) -> StateMeta {
        self.meta
    }

    /// Recover every shard in parallel (at most one thread per core): for shard `k`, hand
    /// `sinks[k]` the newest snapshot (if any), then every journal record after it, in order.
    /// Torn tails are cut (in [`Mode::Repair`]); any other damage stops recovery with an
    /// error naming shard, file and offset. When several shards fail, the lowest shard's
    /// error is returned.
    ///
    /// Feeding the engine: `restore` rebuilds the shard's `Store` from the image; `replay`
    /// resolves the request to its account and token index (as the router does) and applies
    /// it with `rules::decide`, which must answer the journaled `code` (a difference means
    /// the code or the rules changed since the journal was written: refuse, don't guess).
    /// Then open each shard's `JournalWriter` at [`ShardReport::next_seq`].
    pub fn recover<S: ShardSink>(
        &self,
        sinks: &mut [S],
        mode: Mode,
    ) -> Result<RecoveryReport, RecoveryError> {
        self.recover_from(sinks, mode, Start::Newest)
    }

    /// [`StateDir::recover`] from the snapshot `start` names.
    pub(crate) fn recover_from<S: ShardSink>(
        &self,
        sinks: &mut [S],
        mode: Mode,
        start: Start,
    ) -> Result<RecoveryReport, RecoveryError> {
        assert_eq!(sinks.len(), self.meta.shards, "one sink per shard");
        let started = Instant::now();
        let workers = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(sinks.len());
        let queue = Mutex::new(sinks.iter_mut().enumerate());
        let mut results: Vec<(usize, Result<ShardReport, RecoveryError>)> =
            std::thread::scope(|scope| {
                let handles: Vec<_> = (0..workers)
                    .map(|_| {
                        scope.spawn(|| {
                            let mut done = Vec::new();
                            loop {
                                // The lock only hands out the next shard; it is never held
                                // while a shard is read.
                                let next = queue.lock().unwrap_or_else(|p| p.into_inner()).next();
                                let Some((k, sink)) = next else { break };
                                done.push((k, recover_shard(&self.root, k, sink, mode, start)));
                            }
                            done
                        })
                    })
                    .collect();
                handles
                    .into_iter()
                    .flat_map(|h| h.join().expect("a recovery worker panicked"))
                    .collect()
            });
        results.sort_by_key(|(k, _)| *k);
        let mut shards = Vec::with_capacity(results.len());
        for (_, result) in results {
            shards.push(result?);
        }
        Ok(RecoveryReport {
            shards,
            elapsed: started.elapsed(),
        })
    }
}

fn check_same(root: &Path, found: &StateMeta, want: &StateMeta) -> Result<(), RecoveryError> {
    let meta_path = root.join(META_NAME);
    if found.shards != want.shards {
        return Err(RecoveryError::new(
            RecoveryErrorKind::Mismatch,
            format!(
                "the state was created with {} shards; this engine has {}. Journals and \
                 snapshots are partitioned by shard_of(account_id, shards), so the shard \
                 count cannot change in place: start with {} shards",
                found.shards, want.shards, found.shards
            ),
        )
        .at_path(&meta_path));
    }
    for (name, a, b) in [
        ("hold_ttl_ns", found.hold_ttl_ns, want.hold_ttl_ns),
        ("dup_window_ns", found.dup_window_ns, want.dup_window_ns),
        ("retention_ns", found.retention_ns, want.retention_ns),
    ] {
        if a != b {
            return Err(RecoveryError::new(
                RecoveryErrorKind::Mismatch,
                format!(
                    "the state was created with {name} = {a}; this engine has {b}. Replaying \
                     its journal under other time rules could decide differently: start with \
                     {name} = {a}"
                ),
            )
            .at_path(&meta_path));
        }
    }
    Ok(())
}

/// Recover one shard into `sink`.
fn recover_shard<S: ShardSink>(
    root: &Path,
    shard: usize,
    sink: &mut S,
    mode: Mode,
    start: Start,
) -> Result<ShardReport, RecoveryError> {
    let started = Instant::now();
    let dir = shard_dir(root, shard);
    let io = |p: &Path, e: io::Error| RecoveryError::io(p, &e).in_shard(shard);
    let files = list_shard(&dir).map_err(|e| io(&dir, e))?;
    if mode == Mode::Repair {
        for tmp in &files.temporaries {
            fs::remove_file(tmp).map_err(|e| io(tmp, e))?;
        }
    }
    let mut snapshot_seq = None;
    let chosen = match start {
        Start::Newest => files.snapshots.last(),
        Start::Oldest => files.snapshots.first(),
    };
    if let Some((seq, path)) = chosen {
        let (header_seq, image) = read_snapshot(path, shard).map_err(|e| {
            let hint = match files.snapshots.len() {
                1 => String::new(),
                n => format!(
                    " (the previous snapshot, {}, is still here, and pruning keeps the \
                     journal since it: to recover from it with a longer replay, move this \
                     file out of the directory)",
                    files.snapshots[n - 2].1.display()
                ),
            };
            e.in_shard(shard).with_suffix(&hint)
        })?;
        if header_seq != *seq {
            return Err(RecoveryError::new(
                RecoveryErrorKind::Corrupt,
                format!("snapshot header says record {header_seq}, its name says {seq}"),
            )
            .in_shard(shard)
            .at_path(path)
            .at_offset(16));
        }
        sink.restore(*seq, image).map_err(|m| {
            RecoveryError::new(RecoveryErrorKind::Replay, m)
                .in_shard(shard)
                .at_path(path)
        })?;
        snapshot_seq = Some(*seq);
    }
    let from_seq = snapshot_seq.unwrap_or(0);
    let mut on_record =
        |at: &RecordAt, request: &Request, code: Code| sink.replay(at.seq, request, code);
    let scan = scan_journal(shard, &files.segments, from_seq, mode, &mut on_record)?;
    Ok(ShardReport {
        shard,
        snapshot_seq,
        records_replayed: scan.records,
        next_seq: scan.end_seq,
        segments_read: scan.segments_read,
        bytes_cut: scan.bytes_cut,
        cut_at: scan.cut_at,
        elapsed: started.elapsed(),
    })
}

impl RecoveryError {
    fn with_suffix(mut self, suffix: &str) -> RecoveryError {
        self.message.push_str(suffix);
        self
    }
}

/// What [`prune_shard`] removed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PruneReport {
    /// Snapshots removed.
    pub snapshots: Vec<PathBuf>,
    /// Journal segments removed.
    pub segments: Vec<PathBuf>,
}

/// After a snapshot is written: keep the newest `keep_snapshots` (at least 1) snapshots of
/// `shard`, remove older ones, and remove journal segments wholly before the oldest snapshot
/// kept (a segment is wholly before seq `s` when the next segment starts at or before `s`).
///
/// With `keep_snapshots = 2` (recommended) a damaged newest snapshot can be set aside by
/// hand and the shard recovered from the previous one plus the journal since. Safe to run
/// on another thread while the shard's writer appends: the writer's segment is always the
/// last, and the last segment is never removed.
pub fn prune_shard(root: &Path, shard: usize, keep_snapshots: usize) -> io::Result<PruneReport> {
    let keep = keep_snapshots.max(1);
    let dir = shard_dir(root, shard);
    let files = list_shard(&dir)?;
    let mut report = PruneReport::default();
    let cut = files.snapshots.len().saturating_sub(keep);
    for (_, path) in &files.snapshots[..cut] {
        fs::remove_file(path)?;
        report.snapshots.push(path.clone());
    }
    if let Some(&(oldest_kept, _)) = files.snapshots.get(cut) {
        for pair in files.segments.windows(2) {
            let (_, path) = &pair[0];
            let (next_first, _) = pair[1];
            if next_first <= oldest_kept {
                fs::remove_file(path)?;
                report.segments.push(path.clone());
            }
        }
    }
    if !report.snapshots.is_empty() || !report.segments.is_empty() {
        sync_dir(&dir)?;
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_round_trips_and_refuses_damage() {
        let meta = StateMeta {
            shards: 4,
            hold_ttl_ns: 7,
            dup_window_ns: 8,
            retention_ns: 0,
        };
        let text = meta.encode();
        assert_eq!(StateMeta::decode(&text), Ok(meta));
        let damaged = text.replace("shards 4", "shards 5");
        assert!(StateMeta::decode(&damaged)
            .unwrap_err()
            .contains("checksum"));
        assert!(StateMeta::decode("shards 4\n").is_err());
    }
}
