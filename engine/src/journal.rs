//! Durability: each shard's write-ahead journal (group commit, one write and at most one
//! fdatasync per commit), the state directory, and crash recovery (newest snapshot plus the
//! journal after it, all shards in parallel). Snapshots themselves are in `crate::snapshot`.
//!
//! # The promise
//! With [`Durability::Sync`], a shard appends what it applied in a pass (each request with
//! its decision code) and fdatasyncs it *before* it releases that pass's decisions. So every
//! decision a host has received is on disk; after a crash, recovery rebuilds each shard as of
//! its last durable record, and a retransmission of any request applied before the crash
//! answers exactly as before (its duplicate record is part of the rebuilt state).
//!
//! # State directory
//! ```text
//! STATE/state.meta                               shard count and time rules (text, crc32c)
//! STATE/lock                                     exclusively locked by the engine using it
//! STATE/shard-{k}/journal-{first_seq:020}.log    journal segments, named by first record seq
//! STATE/shard-{k}/snapshot-{seq:020}.snap        snapshots covering records [0, seq)
//! ```
//! Records of a shard are numbered 0, 1, 2, … in the order the shard applied them.
//!
//! # Segment file (`journal-*.log`), all integers little-endian
//! A 32-byte header, then frames back to back:
//!
//! | offset | size | header field |
//! |---|---|---|
//! | 0 | 8 | magic `PAYAUTHJ` |
//! | 8 | 2 | format version, 1 |
//! | 10 | 2 | record size, 66 |
//! | 12 | 4 | shard |
//! | 16 | 8 | seq of the segment's first record (equals the number in the file name) |
//! | 24 | 4 | zero |
//! | 28 | 4 | crc32c of bytes 0..28 |
//!
//! One frame per committed batch (a batch larger than [`writer::FRAME_RECORDS_MAX`] records is
//! several frames in the same write):
//!
//! | offset | size | frame field |
//! |---|---|---|
//! | 0 | 4 | `len`: bytes of the body |
//! | 4 | 4 | crc32c of the 4 `len` bytes followed by the body |
//! | 8 | 8 | body: seq of the frame's first record |
//! | 16 | 4 | body: record count `n` (`len = 12 + 66 n`) |
//! | 20 | 66 n | body: records, each laid out as documented on `codec::RECORD_BYTES` |
//!
//! A batch is one frame because a crash can tear it anywhere (pages of one write reach the
//! disk in any order): a frame's checksum covers the whole batch, so recovery keeps a batch
//! entirely or cuts it entirely, and a batch is cut only when its decisions were never
//! released.
//!
//! # Recovery rules
//! - A torn tail is cut (the file is truncated at the frame's start) and reported: in the
//!   last segment only, a frame whose header or body runs past the end of the file, or the
//!   last frame, ending exactly at the end of the file, with a bad checksum. A last segment
//!   left with no frame (or shorter than its header) is removed.
//! - Anything else is damage and is refused with the shard, file and byte offset: a bad
//!   checksum with data after it, a frame that runs past the end of a segment that is not the
//!   last, a bad segment header, a gap or overlap in the sequence of segments, a first
//!   segment that starts after the records recovery needs, a checksummed frame that does not
//!   decode.
//! - The newest snapshot must be valid: a damaged one is refused (see `crate::snapshot` for
//!   why and for the manual fallback to the one before it).
//!
//! These rules err on the side of refusing. Two crash outcomes they refuse although nothing
//! promised was lost, both needing a machine crash (a killed process leaves the page cache
//! to finish every write): under [`Durability::Async`], unsynced batches whose pages reached
//! the disk out of order (a hole, then a later batch); and under [`Durability::Sync`], a
//! last batch whose first page (with the frame header) was lost while a later page of the
//! same write survived. Cutting there by rule would also cut synced data if the same bytes
//! came from media damage, so the refusal names the offset and a person decides (truncating
//! the segment at that offset is the repair when the crash explains it).
//!
//! # Hooking into the shard loop
//! See [`JournalWriter`] for where `commit` goes relative to releasing decisions and
//! [`StateDir::recover`] for how records come back.

mod codec;
mod files;
mod reader;
mod state;
mod writer;

#[cfg(test)]
mod tests;

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[cfg(test)]
pub(crate) use files::segment_name;
pub(crate) use files::{shard_dir, snapshot_name, sync_dir, tmp_path};
pub use state::{prune_shard, Mode, RecoveryReport, ShardReport, ShardSink, StateDir, StateMeta};
pub(crate) use state::{Start, LOCK_NAME};
pub use writer::JournalWriter;
#[cfg(test)]
use {state::PruneReport, writer::JournalStats};

/// The binary codecs, shared with `crate::snapshot`.
pub(crate) mod encoding {
    pub(crate) use super::codec::*;
}

/// When the journal makes a committed batch durable.
///
/// Decisions never depend on the mode: only what survives a crash does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// Journal nothing: nothing survives a restart. [`crate::Config::validate`] refuses it
    /// inside a [`JournalConfig`] (an in-memory engine says `journal: None`); it is here so
    /// a host setting can name all three modes.
    None,
    /// One write and one fdatasync per batch, before the batch's decisions are released:
    /// every released decision survives a crash of the process or of the machine.
    Sync,
    /// One write per batch; fdatasync once `interval` has passed since the last one (checked
    /// at each commit, and every `interval` while a shard is idle). Released decisions
    /// survive a crash of the process (the writes are in the OS page cache); a crash of the
    /// machine may lose up to about `interval` of them.
    Async {
        /// Longest time written data may stay unsynced while batches keep coming.
        interval: Duration,
    },
}

impl Default for Durability {
    /// [`Durability::Sync`]: the safe default for a host that embeds the engine.
    fn default() -> Self {
        Durability::Sync
    }
}

/// Where and how each shard journals.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JournalConfig {
    /// The state directory (holds `state.meta` and one `shard-{k}` directory per shard).
    pub dir: PathBuf,
    /// When committed batches become durable.
    pub durability: Durability,
    /// A segment is closed and a new one started before a commit would take it past this
    /// many bytes; a single commit larger than this gets a segment of its own.
    /// [`SEGMENT_BYTES_MIN`]..=[`SEGMENT_BYTES_MAX`]. Default 64 MiB.
    pub segment_bytes_max: u64,
}

/// Smallest allowed [`JournalConfig::segment_bytes_max`] (4 KiB).
pub const SEGMENT_BYTES_MIN: u64 = 4 << 10;
/// Largest allowed [`JournalConfig::segment_bytes_max`] (1 TiB).
pub const SEGMENT_BYTES_MAX: u64 = 1 << 40;

impl JournalConfig {
    /// A config with the default durability ([`Durability::Sync`]) and segment size.
    pub fn new(dir: impl Into<PathBuf>) -> JournalConfig {
        JournalConfig {
            dir: dir.into(),
            durability: Durability::Sync,
            segment_bytes_max: 64 << 20,
        }
    }

    /// Check the limits; the message names the field and its allowed range.
    pub fn validate(&self) -> Result<(), String> {
        if !(SEGMENT_BYTES_MIN..=SEGMENT_BYTES_MAX).contains(&self.segment_bytes_max) {
            return Err(format!(
                "segment_bytes_max = {} is outside {SEGMENT_BYTES_MIN}..={SEGMENT_BYTES_MAX}",
                self.segment_bytes_max
            ));
        }
        if let Durability::Async { interval } = self.durability {
            if interval.is_zero() {
                return Err("durability async interval must be positive (use sync)".into());
            }
        }
        Ok(())
    }
}

/// What kind of problem stopped recovery; the message has the details.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RecoveryErrorKind {
    /// Reading, writing or listing a file failed.
    Io,
    /// A file is damaged before its tail (or a snapshot or `state.meta` is damaged).
    Corrupt,
    /// A journal segment the sequence needs is not there.
    MissingSegment,
    /// A shard has no snapshot, so there is nothing to replay its journal onto.
    MissingSnapshot,
    /// The state directory was created with another shard count or other time rules.
    Mismatch,
    /// The directory holds files but is not a payauth state directory.
    NotAStateDir,
    /// A snapshot could not be restored, or a journal record replayed to another decision
    /// than the one it recorded (the rules, the build or the config changed since it was
    /// written) or to no account of its shard.
    Replay,
}

/// Why a state directory could not be opened or recovered: names the shard, file and byte
/// offset where they are known. Never a silent skip.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecoveryError {
    kind: RecoveryErrorKind,
    shard: Option<usize>,
    path: Option<PathBuf>,
    offset: Option<u64>,
    message: String,
}

impl RecoveryError {
    pub(crate) fn new(kind: RecoveryErrorKind, message: impl Into<String>) -> RecoveryError {
        RecoveryError {
            kind,
            shard: None,
            path: None,
            offset: None,
            message: message.into(),
        }
    }

    pub(crate) fn io(path: &Path, err: &std::io::Error) -> RecoveryError {
        RecoveryError::new(RecoveryErrorKind::Io, err.to_string()).at_path(path)
    }

    pub(crate) fn in_shard(mut self, shard: usize) -> RecoveryError {
        self.shard = Some(shard);
        self
    }

    pub(crate) fn at_path(mut self, path: &Path) -> RecoveryError {
        self.path = Some(path.to_path_buf());
        self
    }

    pub(crate) fn at_offset(mut self, offset: u64) -> RecoveryError {
        self.offset = Some(offset);
        self
    }

    /// The broad kind.
    pub fn kind(&self) -> RecoveryErrorKind {
        self.kind
    }

    /// The shard whose files failed, if one did.
    pub fn shard(&self) -> Option<usize> {
        self.shard
    }

    /// The file at fault, if one is.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The byte offset in [`RecoveryError::path`] where the damage starts, if known.
    pub fn offset(&self) -> Option<u64> {
        self.offset
    }

    /// The detail, without the shard, file and offset prefix.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for RecoveryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(shard) = self.shard {
            write!(f, "shard {shard}: ")?;
        }
        if let Some(path) = &self.path {
            write!(f, "{}", path.display())?;
            if let Some(offset) = self.offset {
                write!(f, " at byte {offset}")?;
            }
            write!(f, ": ")?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for RecoveryError {}
