//! The engine's use of the journal and snapshots: a fresh start (snapshot 0 of every shard
//! before `state.meta`), each shard's journal handle (commit, idle sync, periodic snapshots
//! on a background thread), and recovery (restore the newest snapshot, replay the journal
//! through `rules::decide`, demand the journaled decisions).

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::api::{Code, Request};
use crate::config::Config;
use crate::error::{Error, ErrorKind};
use crate::journal::{
    prune_shard, shard_dir, Durability, JournalConfig, JournalWriter, Mode, RecoveryError,
    RecoveryErrorKind, RecoveryReport, ShardSink, StateDir, StateMeta, LOCK_NAME,
};
use crate::router::{Directory, Resolved};
use crate::rules::{decide, Routed, Times};
use crate::snapshot::{write_snapshot, ShardImage};
use crate::store::Store;

/// Snapshots kept per shard by pruning: the newest, and the one before it (with the journal
/// since), so a damaged newest snapshot can be set aside by hand.
const SNAPSHOTS_KEPT: usize = 2;

/// One journaled record as [`crate::Engine::recover_with`] replays it.
///
/// Records of a shard are numbered 0, 1, 2, … in the order the shard applied them; the
/// first `next_seq` requests a host routed to shard `k` (in submission order) are exactly
/// the records `0..next_seq` of shard `k` (see [`crate::ShardReport::next_seq`]).
#[derive(Clone, Copy, Debug)]
pub struct ReplayedRecord<'a> {
    /// The shard that applied it.
    pub shard: usize,
    /// Its number in the shard's journal.
    pub seq: u64,
    /// The request exactly as it arrived.
    pub request: &'a Request,
    /// The decision the host received (recovery checked that replaying gives it again).
    pub code: Code,
}

/// The `state.meta` an engine with `config` must find (or creates).
fn meta(config: &Config) -> StateMeta {
    StateMeta {
        shards: config.shards,
        hold_ttl_ns: config.hold_ttl_ns,
        dup_window_ns: config.dup_window_ns,
        retention_ns: config.retention_ns,
    }
}

fn times(config: &Config) -> Times {
    Times {
        hold_ttl_ns: config.hold_ttl_ns,
        dup_window_ns: config.dup_window_ns,
        retention_ns: config.retention_ns,
    }
}

/// The journal config, which the caller has checked is there.
fn journal_config(config: &Config) -> &JournalConfig {
    config
        .journal
        .as_ref()
        .expect("the caller checked config.journal")
}

/// True when the configured state directory holds a state to recover.
pub(crate) fn has_state(config: &Config) -> Result<bool, Error> {
    StateDir::has_state(&journal_config(config).dir).map_err(Error::from_recovery)
}

/// The exclusive lock on a state directory's `lock` file; released when the last shard
/// journal holding it is dropped (or the process dies: the OS drops the lock with it).
#[derive(Debug)]
pub(crate) struct StateLock {
    _file: std::fs::File,
}

/// Take the state directory `root` (created if missing) for this engine alone.
fn lock_state(root: &Path) -> Result<Arc<StateLock>, Error> {
    let path = root.join(LOCK_NAME);
    let journal_err = |e: io::Error| {
        Error::new(
            ErrorKind::Journal,
            format!("locking the state directory: {}: {e}", path.display()),
        )
    };
    std::fs::create_dir_all(root).map_err(journal_err)?;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(journal_err)?;
    match file.try_lock() {
        Ok(()) => Ok(Arc::new(StateLock { _file: file })),
        Err(std::fs::TryLockError::WouldBlock) => Err(Error::new(
            ErrorKind::StateLocked,
            format!(
                "{} is open in another engine (it holds the lock on {}): one engine per \
                 state directory; stop the other one first",
                root.display(),
                path.display()
            ),
        )),
        Err(std::fs::TryLockError::Error(e)) => Err(journal_err(e)),
    }
}

/// Create the state directory for a fresh start of `stores`: snapshot 0 of every shard,
/// then `state.meta` (the commit point), then one writer per shard at record 0. Refuses a
/// directory that already holds a state.
pub(crate) fn create(config: &Config, stores: &[Store]) -> Result<Vec<ShardJournal>, Error> {
    let jc = journal_config(config);
    let root = &jc.dir;
    let lock = lock_state(root)?;
    if has_state(config)? {
        return Err(Error::new(
            ErrorKind::StateExists,
            format!(
                "{} already holds an engine's state: recover it with Engine::recover (or \
                 Engine::open), or start in an empty directory",
                root.display()
            ),
        ));
    }
    let state = StateDir::open_with(root, meta(config), |root| {
        for (k, store) in stores.iter().enumerate() {
            write_snapshot(root, k, 0, &store.to_image())
                .map_err(|e| RecoveryError::io(&shard_dir(root, k), &e).in_shard(k))?;
        }
        Ok(())
    })
    .map_err(|e| {
        Error::new(
            ErrorKind::Journal,
            format!("creating the state directory: {e}"),
        )
    })?;
    if !state.is_fresh() {
        return Err(Error::new(
            ErrorKind::StateExists,
            format!(
                "{} was created by another engine while this one started",
                root.display()
            ),
        ));
    }
    (0..config.shards)
        .map(|k| ShardJournal::open(config, k, 0, 0, Arc::clone(&lock)))
        .collect()
}

/// Recover every shard of the configured state directory: restore its newest snapshot,
/// replay its journal (cutting a torn tail), hand each replayed record to `observe`. Returns
/// the stores, one journal per shard opened where its journal ends, and the report.
pub(crate) fn recover(
    config: &Config,
    observe: &(dyn Fn(&ReplayedRecord<'_>) + Sync),
) -> Result<(Vec<Store>, Vec<ShardJournal>, RecoveryReport), Error> {
    let root = &journal_config(config).dir;
    if !has_state(config)? {
        return Err(no_state(root));
    }
    let lock = lock_state(root)?;
    let state = StateDir::open(root, meta(config)).map_err(Error::from_recovery)?;
    if state.is_fresh() {
        // state.meta vanished between the two looks; open created an empty state.
        return Err(no_state(root));
    }
    let times = times(config);
    let mut sinks: Vec<EngineSink<'_>> = (0..config.shards)
        .map(|shard| EngineSink {
            shard,
            times,
            holds_hint: config.holds_per_shard_hint,
            restored: None,
            observe,
        })
        .collect();
    let report = state
        .recover(&mut sinks, Mode::Repair)
        .map_err(Error::from_recovery)?;
    let mut stores = Vec::with_capacity(sinks.len());
    for sink in sinks {
        let Some((store, _)) = sink.restored else {
            return Err(Error::from_recovery(
                RecoveryError::new(
                    RecoveryErrorKind::MissingSnapshot,
                    "the shard has no snapshot, so its accounts are unknown (a complete start \
                     writes snapshot 0 of every shard before state.meta)",
                )
                .in_shard(sink.shard)
                .at_path(&shard_dir(root, sink.shard)),
            ));
        };
        stores.push(store);
    }
    let journals = report
        .shards
        .iter()
        .map(|s| {
            ShardJournal::open(
                config,
                s.shard,
                s.next_seq,
                s.snapshot_seq.unwrap_or(0),
                Arc::clone(&lock),
            )
        })
        .collect::<Result<Vec<_>, Error>>()?;
    Ok((stores, journals, report))
}

fn no_state(root: &Path) -> Error {
    Error::new(
        ErrorKind::NoState,
        format!(
            "{} holds no engine state (no state.meta): start the engine fresh with \
             Engine::start, or use Engine::open",
            root.display()
        ),
    )
}

/// Where recovery delivers one shard: the store restored from the snapshot, then every
/// journaled record decided again, as the shard first decided it.
struct EngineSink<'a> {
    shard: usize,
    times: Times,
    holds_hint: usize,
    /// The store and a directory of this shard alone (to resolve records as the router did).
    restored: Option<(Store, Directory)>,
    observe: &'a (dyn Fn(&ReplayedRecord<'_>) + Sync),
}

impl ShardSink for EngineSink<'_> {
    fn restore(&mut self, _seq: u64, image: ShardImage) -> Result<(), String> {
        let store = Store::from_image(&image, self.holds_hint)?;
        let directory = Directory::for_shard(self.shard, &store)?;
        self.restored = Some((store, directory));
        Ok(())
    }

    fn replay(&mut self, seq: u64, request: &Request, code: Code) -> Result<(), String> {
        let Some((store, directory)) = &mut self.restored else {
            return Err("the shard has journal records but no snapshot to apply them to".into());
        };
        let (account, token) = match directory.resolve(request) {
            Resolved::Shard { account, token, .. } => (account, token),
            Resolved::Answer(answer) => {
                return Err(format!(
                    "request {} resolves to no account of this shard (it would be answered \
                     {answer} at resolution, which is never journaled): the journal does not \
                     belong to this state",
                    request.request_id
                ))
            }
        };
        let op = Routed::new(request, account, token);
        let again = decide(store, &self.times, &op);
        if again != code {
            return Err(format!(
                "request {} ({}) was answered {code} but replays as {again}: the engine's rules \
                 or configuration changed since the journal was written; recover with the \
                 build and config that wrote it",
                request.request_id, request.kind
            ));
        }
        (self.observe)(&ReplayedRecord {
            shard: self.shard,
            seq,
            request,
            code,
        });
        Ok(())
    }
}

/// One shard's side of durability, owned by the shard thread: the journal writer, and the
/// snapshot schedule.
pub(crate) struct ShardJournal {
    shard: usize,
    root: PathBuf,
    writer: JournalWriter,
    /// Snapshot after this many records since the last one (0: never).
    snapshot_every_records: u64,
    /// Seq of the newest snapshot written or being written.
    snapshot_seq: u64,
    /// The background snapshot writer, while one runs (or until it is joined).
    snapshot_thread: Option<JoinHandle<io::Result<()>>>,
    /// Held for as long as the shard journals: the state directory is this engine's.
    _lock: Arc<StateLock>,
}

impl ShardJournal {
    /// The journal of `shard`, continuing at record `next_seq`, whose newest snapshot is at
    /// `snapshot_seq`.
    fn open(
        config: &Config,
        shard: usize,
        next_seq: u64,
        snapshot_seq: u64,
        lock: Arc<StateLock>,
    ) -> Result<ShardJournal, Error> {
        let jc = journal_config(config);
        let writer = JournalWriter::open(jc, shard, next_seq).map_err(|e| {
            Error::new(
                ErrorKind::Journal,
                format!("shard {shard}: opening the journal at record {next_seq}: {e}"),
            )
        })?;
        Ok(ShardJournal {
            shard,
            root: jc.dir.clone(),
            writer,
            snapshot_every_records: config.snapshot_every_records,
            snapshot_seq,
            snapshot_thread: None,
            _lock: lock,
        })
    }

    /// Encode one applied request and its decision into the pass being built (no I/O).
    #[inline]
    pub fn push(&mut self, request: &Request, code: Code) {
        self.writer.push(request, code);
    }

    /// Make the pass durable: one write and (Sync) one fdatasync. On an error the pass's
    /// decisions must not be released.
    pub fn commit(&mut self) -> Result<(), Error> {
        let first = self.writer.next_seq() - self.writer.pending();
        self.writer.commit().map_err(|e| {
            self.failed(format!(
                "the journal could not make records {first}..{} durable ({e}); their decisions \
                 were not released",
                self.writer.next_seq()
            ))
        })
    }

    /// How long the shard may wait for work before it must look at the journal: under
    /// [`Durability::Async`], while written data is unsynced, so an idle shard syncs its
    /// tail within about an interval. `None`: wait as long as it takes.
    pub fn idle_sync_interval(&self) -> Option<Duration> {
        match self.writer.durability() {
            Durability::Async { interval } if self.writer.unsynced() => Some(interval),
            Durability::Async { .. } | Durability::Sync | Durability::None => None,
        }
    }

    /// fdatasync a dirty tail whose interval has passed (Async; a no-op otherwise).
    pub fn sync_if_due(&mut self) -> Result<(), Error> {
        match self.writer.sync_if_due() {
            Ok(_) => Ok(()),
            Err(e) => Err(self.failed(format!("the journal could not be synced ({e})"))),
        }
    }

    /// After a commit whose decisions are released: reap a finished snapshot, and start
    /// the next one when `snapshot_every_records` records have been applied since the last
    /// and none is running (one at a time per shard; a busy writer just delays the next).
    ///
    /// The state is frozen here, on the shard thread, between passes, so it is exactly that
    /// after records `[0, next_seq)`: by cloning the store (plain tables, close to a
    /// memcpy; measured well under the time `Store::to_image` takes). The image is built,
    /// written, fsynced and pruned on a background thread while the shard decides on.
    pub fn after_commit(&mut self, store: &Store) -> Result<(), Error> {
        if self
            .snapshot_thread
            .as_ref()
            .is_some_and(JoinHandle::is_finished)
        {
            self.join_snapshot()?;
        }
        let seq = self.writer.next_seq();
        if self.snapshot_every_records == 0
            || self.snapshot_thread.is_some()
            || seq - self.snapshot_seq < self.snapshot_every_records
        {
            return Ok(());
        }
        // A copy of the tables (close to a memcpy) is the only work done on the shard
        // thread; the image is built from it, written and pruned in the background.
        let frozen = store.clone();
        let (root, shard) = (self.root.clone(), self.shard);
        let handle = std::thread::Builder::new()
            .name(format!("payauth-snapshot-{shard}"))
            .spawn(move || {
                let image = frozen.to_image();
                drop(frozen);
                write_snapshot(&root, shard, seq, &image)?;
                prune_shard(&root, shard, SNAPSHOTS_KEPT).map(|_| ())
            })
            .map_err(|e| self.failed(format!("spawning the snapshot writer: {e}")))?;
        self.snapshot_seq = seq;
        self.snapshot_thread = Some(handle);
        Ok(())
    }

    /// Wait for the running snapshot, if any; its failure is the shard's.
    fn join_snapshot(&mut self) -> Result<(), Error> {
        let Some(handle) = self.snapshot_thread.take() else {
            return Ok(());
        };
        let seq = self.snapshot_seq;
        match handle.join() {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(self.failed(format!(
                "writing the snapshot at record {seq} failed ({e}); the journal still holds \
                 every record, but the shard stops rather than let it grow unseen"
            ))),
            Err(_) => Err(self.failed(format!("the snapshot writer for record {seq} panicked"))),
        }
    }

    /// At a clean stop: make an Async tail durable and let a running snapshot finish.
    pub fn finish(&mut self) -> Result<(), Error> {
        let synced = self
            .writer
            .sync()
            .map_err(|e| self.failed(format!("the final journal sync failed ({e})")));
        let joined = self.join_snapshot();
        synced.and(joined)
    }

    /// After a failure: let a running snapshot finish, ignoring its outcome.
    pub fn abandon(&mut self) {
        if let Some(handle) = self.snapshot_thread.take() {
            let _ = handle.join();
        }
    }

    fn failed(&self, what: String) -> Error {
        Error::new(
            ErrorKind::Journal,
            format!(
                "shard {}: {what}; the shard decides nothing more: restart with \
                 Engine::recover",
                self.shard
            ),
        )
    }
}
