//! Engine configuration: every limit the engine runs under, validated once at start.

use crate::api::NS_PER_SEC;
use crate::error::{Error, ErrorKind};
use crate::journal::{Durability, JournalConfig};

/// How the engine is built. Every field has a limit; [`Config::validate`] checks them all.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Owner threads; accounts are partitioned across them. 1..=256. Default: one per core.
    pub shards: usize,
    /// Most requests a shard decides in one pass. 1..=1,048,576. Default 4096.
    pub batch_max: usize,
    /// Batches that may wait in one shard's queue before `try_submit` answers `Full`.
    /// 1..=65,536. Default 64.
    pub queue_depth: usize,
    /// Life of a hold from its authorization (or last increment). Default 7 days.
    pub hold_ttl_ns: i64,
    /// Duplicate window from a record's `ts_ns`. Default 24 hours.
    pub dup_window_ns: i64,
    /// How long a closed or expired hold stays referable. Default 45 days.
    pub retention_ns: i64,
    /// Holds each shard's table is sized for before it must grow (duplicate records get
    /// twice the room). 0..=2^30. Default 65,536.
    ///
    /// Size it for the peak: the holds and the requests of one duplicate window a shard
    /// keeps at once. The tables are allocated and touched at start (about 280-400 bytes
    /// per unit); a table that fills up doubles, copying itself while its shard waits,
    /// which a host sees as one slow pass (tens of ms at millions of entries) each time.
    pub holds_per_shard_hint: usize,
    /// Where and how each shard journals what it decides; `None` (the default) is a pure
    /// in-memory engine whose state dies with it. With a journal, every decision is
    /// released only after its pass is durable (see [`Durability`]); start with
    /// [`crate::Engine::start`] on an empty directory, restart with
    /// [`crate::Engine::recover`]. [`JournalConfig::new`] means [`Durability::Sync`];
    /// [`Durability::None`] is refused here (say `journal: None` instead).
    pub journal: Option<JournalConfig>,
    /// With a journal: each shard writes a snapshot of its state after every this many
    /// journal records (on a background thread; recovery then replays at most about this
    /// many records per shard), and prunes what the two newest snapshots make unnecessary.
    /// 0 = never (recovery replays the whole journal). Default 1,000,000.
    pub snapshot_every_records: u64,
}

/// One day in nanoseconds.
const DAY_NS: i64 = 86_400 * NS_PER_SEC;

impl Default for Config {
    fn default() -> Self {
        Config {
            shards: std::thread::available_parallelism()
                .map_or(1, |n| n.get())
                .min(256),
            batch_max: 4096,
            queue_depth: 64,
            hold_ttl_ns: 7 * DAY_NS,
            dup_window_ns: DAY_NS,
            retention_ns: 45 * DAY_NS,
            holds_per_shard_hint: 1 << 16,
            journal: None,
            snapshot_every_records: 1_000_000,
        }
    }
}

impl Config {
    /// Check every limit; the error names the field and its allowed range.
    pub fn validate(&self) -> Result<(), Error> {
        fn range(name: &str, v: usize, lo: usize, hi: usize) -> Result<(), Error> {
            if v < lo || v > hi {
                return Err(Error::new(
                    ErrorKind::Config,
                    format!("{name} = {v} is outside {lo}..={hi}"),
                ));
            }
            Ok(())
        }
        fn positive(name: &str, v: i64) -> Result<(), Error> {
            if v <= 0 {
                return Err(Error::new(
                    ErrorKind::Config,
                    format!("{name} = {v} must be positive"),
                ));
            }
            Ok(())
        }
        range("shards", self.shards, 1, 256)?;
        range("batch_max", self.batch_max, 1, 1 << 20)?;
        range("queue_depth", self.queue_depth, 1, 1 << 16)?;
        range(
            "holds_per_shard_hint",
            self.holds_per_shard_hint,
            0,
            1 << 30,
        )?;
        positive("hold_ttl_ns", self.hold_ttl_ns)?;
        positive("dup_window_ns", self.dup_window_ns)?;
        if self.retention_ns < 0 {
            return Err(Error::new(
                ErrorKind::Config,
                format!("retention_ns = {} must not be negative", self.retention_ns),
            ));
        }
        if let Some(journal) = &self.journal {
            journal
                .validate()
                .map_err(|m| Error::new(ErrorKind::Config, format!("journal: {m}")))?;
            if journal.durability == Durability::None {
                return Err(Error::new(
                    ErrorKind::Config,
                    "journal durability None journals nothing: for an in-memory engine set \
                     journal = None",
                ));
            }
            if journal.dir.as_os_str().is_empty() {
                return Err(Error::new(
                    ErrorKind::Config,
                    "journal dir is empty: name the state directory",
                ));
            }
        }
        Ok(())
    }
}
