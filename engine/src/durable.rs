//! The engine's use of the journal and snapshots: a fresh start (snapshot 0 of every shard
//! before `state.meta`), each shard's journal handle (commit, pipelined under
//! `Durability::Sync` through a flusher thread that syncs a pass and releases it while the
//! shard decides the next; idle sync; periodic snapshots on a background thread), and
//! recovery (restore the newest snapshot, replay the journal through `rules::decide`, demand
//! the journaled decisions).

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};

use crate::api::{Code, Request};
use crate::config::Config;
use crate::error::{Error, ErrorKind};
use crate::journal::encoding::{set_record_code, RECORD_BYTES};
use crate::journal::{
    prune_shard, shard_dir, Durability, JournalConfig, JournalWriter, Mode, RecoveryError,
    RecoveryErrorKind, RecoveryReport, ShardSink, StateDir, StateMeta, LOCK_NAME,
};
use crate::router::{Directory, Resolved};
use crate::rules::{decide, Routed, Times};
use crate::shard::{refuse_job, release, Job};
use crate::snapshot::{write_snapshot, ShardImage};
use crate::store::Store;

/// Snapshots kept per shard by pruning: the newest, and the one before it (with the journal
/// since), so a damaged newest snapshot can be set aside by hand.
const SNAPSHOTS_KEPT: usize = 2;

/// Under [`Durability::Sync`], how many decided passes may wait for the flusher while it
/// writes and syncs the ones before them; a shard with this many waiting blocks until the
/// flusher takes them (each pass holds its jobs and its encoded records).
const PASSES_WAITING_MAX: usize = 2;

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
    // A lock another engine holds stays held; but a child process the host is spawning
    // holds it too for a moment, between its fork and its exec (it shares this process's
    // open files until then), even after the engine that took it is gone: wait that out.
    let mut attempts = LOCK_ATTEMPTS;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(Arc::new(StateLock { _file: file })),
            Err(std::fs::TryLockError::WouldBlock) if attempts > 1 => {
                attempts -= 1;
                std::thread::sleep(LOCK_RETRY);
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(Error::new(
                    ErrorKind::StateLocked,
                    format!(
                        "{} is open in another engine (it holds the lock on {}): one engine \
                         per state directory; stop the other one first",
                        root.display(),
                        path.display()
                    ),
                ))
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(journal_err(e)),
        }
    }
}

/// How many times [`lock_state`] tries the lock, [`LOCK_RETRY`] apart (about a quarter of a
/// second in all), before it answers [`ErrorKind::StateLocked`].
const LOCK_ATTEMPTS: u32 = 50;
const LOCK_RETRY: std::time::Duration = std::time::Duration::from_millis(5);

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

/// One shard's side of durability, owned by the shard thread: how its passes are committed,
/// and the snapshot schedule.
pub(crate) struct ShardJournal {
    shard: usize,
    root: PathBuf,
    commit: Committer,
    /// Snapshot after this many records since the last one (0: never).
    snapshot_every_records: u64,
    /// Seq of the newest snapshot written or being written.
    snapshot_seq: u64,
    /// The background snapshot writer, while one runs (or until it is joined).
    snapshot_thread: Option<JoinHandle<io::Result<()>>>,
    /// Held for as long as the shard journals: the state directory is this engine's.
    _lock: Arc<StateLock>,
}

/// How a shard's passes reach the disk.
enum Committer {
    /// [`Durability::Async`]: the shard encodes and writes each pass itself (a write into the
    /// page cache), and syncs when the interval is due.
    Inline(JournalWriter),
    /// [`Durability::Sync`]: the shard encodes; a flusher thread writes and fdatasyncs and
    /// then releases the pass, while the shard decides the next one.
    Pipelined(Pipeline),
}

/// The shard's end of a pipelined (group) commit.
///
/// A pass is decided and encoded on the shard thread, then handed, with its jobs, to the
/// shard's flusher thread, which owns the [`JournalWriter`]. The flusher takes every pass
/// waiting for it, writes them as one frame in one write, fdatasyncs once, and only then
/// releases their jobs. So a decision is still released only after its pass is durable, but
/// the fdatasync of one pass (a wait on the disk, not CPU) overlaps with deciding the next,
/// and passes that queue up behind a slow sync share the next one. At most one write is
/// unsynced at any time, as with a commit on the shard thread, so a machine crash leaves at
/// most one torn frame at the tail. After a failed write or sync every later pass is
/// answered with the same error, and the shard learns of it at its next commit and stops.
struct Pipeline {
    /// Seq of the next record pushed.
    next_seq: u64,
    /// To the flusher; `None` once closed.
    to_flusher: Option<Sender<ToFlusher>>,
    /// Job vectors of passes the flusher is done with, to reuse.
    spare: Receiver<Vec<Job>>,
    /// The flusher's failure, set before any job of the failed pass is answered.
    failed: Arc<OnceLock<Error>>,
    flusher: Option<JoinHandle<()>>,
}

/// What the shard hands its flusher.
enum ToFlusher {
    /// A decided pass: its jobs, whose records are journaled and which are released once
    /// they are durable.
    Pass(Vec<Job>),
    /// Answer once everything handed over before is durable (or has failed).
    Barrier(Sender<Result<(), Error>>),
}

impl Pipeline {
    fn start(writer: JournalWriter, shard: usize, lock: Arc<StateLock>) -> Result<Pipeline, Error> {
        let next_seq = writer.next_seq();
        let (to_flusher, from_shard) = crossbeam_channel::bounded(PASSES_WAITING_MAX);
        let (spare_tx, spare) = crossbeam_channel::unbounded();
        let failed = Arc::new(OnceLock::new());
        let flusher_failed = Arc::clone(&failed);
        let flusher = std::thread::Builder::new()
            .name(format!("payauth-flush-{shard}"))
            .spawn(move || {
                // The lock lives as long as anything may still write to the directory.
                let _lock = lock;
                flush_loop(writer, shard, &from_shard, &spare_tx, &flusher_failed);
            })
            .map_err(|e| journal_failure(shard, format!("spawning the journal flusher: {e}")))?;
        Ok(Pipeline {
            next_seq,
            to_flusher: Some(to_flusher),
            spare,
            failed,
            flusher: Some(flusher),
        })
    }

    /// Hand the pass over (`pass` is left empty); its jobs are answered by the flusher.
    fn commit(&mut self, shard: usize, pass: &mut Vec<Job>) -> Result<(), Error> {
        if let Some(e) = self.failed.get() {
            return Err(refuse(pass, e.clone()));
        }
        let Some(to_flusher) = &self.to_flusher else {
            return Err(refuse(pass, flusher_gone(shard)));
        };
        let mut jobs = self.spare.try_recv().unwrap_or_default();
        std::mem::swap(pass, &mut jobs);
        if let Err(returned) = to_flusher.send(ToFlusher::Pass(jobs)) {
            // The flusher is gone (it panicked): nothing of this pass is durable.
            let e = self
                .failed
                .get()
                .cloned()
                .unwrap_or_else(|| flusher_gone(shard));
            if let ToFlusher::Pass(mut jobs) = returned.into_inner() {
                refuse(&mut jobs, e.clone());
            }
            return Err(e);
        }
        Ok(())
    }

    /// Wait until everything handed over is durable.
    fn wait_durable(&mut self, shard: usize) -> Result<(), Error> {
        let Some(to_flusher) = &self.to_flusher else {
            return Err(flusher_gone(shard));
        };
        let (tx, rx) = crossbeam_channel::bounded(1);
        to_flusher
            .send(ToFlusher::Barrier(tx))
            .map_err(|_| flusher_gone(shard))?;
        rx.recv().map_err(|_| flusher_gone(shard))?
    }

    /// Let the flusher finish what it has (answering every job) and stop.
    fn close(&mut self) {
        self.to_flusher = None;
        if let Some(handle) = self.flusher.take() {
            let _ = handle.join();
        }
    }
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        self.close();
    }
}

/// The flusher thread: group commit of the passes the shard hands over, then their release.
fn flush_loop(
    mut writer: JournalWriter,
    shard: usize,
    from_shard: &Receiver<ToFlusher>,
    spare: &Sender<Vec<Job>>,
    failed: &OnceLock<Error>,
) {
    let mut group: Vec<ToFlusher> = Vec::with_capacity(PASSES_WAITING_MAX + 1);
    while let Ok(first) = from_shard.recv() {
        group.push(first);
        // Whatever queued up during the last sync shares this one.
        group.extend(from_shard.try_iter());
        let outcome = match failed.get() {
            Some(e) => Err(e.clone()),
            None => {
                let first_seq = writer.next_seq();
                for msg in &group {
                    if let ToFlusher::Pass(jobs) = msg {
                        for job in jobs {
                            writer.push_encoded(&job.records);
                        }
                    }
                }
                writer.commit().map_err(|e| {
                    let error = journal_failure(
                        shard,
                        format!(
                            "the journal could not make records {first_seq}..{} durable ({e}); \
                             their decisions were not released",
                            writer.next_seq()
                        ),
                    );
                    // Set before any job hears of it, so the shard stops at its next commit.
                    failed.get_or_init(|| error).clone()
                })
            }
        };
        for msg in group.drain(..) {
            match msg {
                ToFlusher::Pass(mut jobs) => {
                    match &outcome {
                        Ok(()) => jobs.drain(..).for_each(release),
                        Err(e) => {
                            refuse(&mut jobs, e.clone());
                        }
                    }
                    let _ = spare.send(jobs);
                }
                ToFlusher::Barrier(reply) => {
                    let _ = reply.send(outcome.clone());
                }
            }
        }
    }
}

/// Answer every job of `jobs` (left empty) with `error`; returns it.
fn refuse(jobs: &mut Vec<Job>, error: Error) -> Error {
    for job in jobs.drain(..) {
        refuse_job(job, error.clone());
    }
    error
}

fn journal_failure(shard: usize, what: String) -> Error {
    Error::new(
        ErrorKind::Journal,
        format!(
            "shard {shard}: {what}; the shard decides nothing more: restart with \
             Engine::recover"
        ),
    )
}

fn flusher_gone(shard: usize) -> Error {
    journal_failure(shard, "the journal flusher stopped".to_string())
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
        let commit = match jc.durability {
            Durability::Sync => {
                Committer::Pipelined(Pipeline::start(writer, shard, Arc::clone(&lock))?)
            }
            Durability::Async { .. } | Durability::None => Committer::Inline(writer),
        };
        Ok(ShardJournal {
            shard,
            root: jc.dir.clone(),
            commit,
            snapshot_every_records: config.snapshot_every_records,
            snapshot_seq,
            snapshot_thread: None,
            _lock: lock,
        })
    }

    /// Journal request `i` of a job with its decision: the router encoded the job's
    /// requests as records (`records`, back to back), so this only fills in the code. The
    /// records are written at the commit.
    #[inline]
    pub fn push(&mut self, records: &mut [u8], i: usize, code: Code) {
        set_record_code(records, i, code);
        if let Committer::Pipelined(pipe) = &mut self.commit {
            pipe.next_seq += 1;
        }
    }

    /// Seq the next pushed record gets: after a commit, the count of records applied.
    fn next_seq(&self) -> u64 {
        match &self.commit {
            Committer::Inline(writer) => writer.next_seq(),
            Committer::Pipelined(pipe) => pipe.next_seq,
        }
    }

    /// Commit the pass whose records were pushed, and release its jobs (`pass` is left
    /// empty) once it is durable: at once here (one write and, under Sync, one fdatasync)
    /// or, pipelined, from the flusher thread when its sync is done. On an error the jobs of
    /// the pass are answered with it instead, and the shard must decide nothing more.
    pub fn commit(&mut self, pass: &mut Vec<Job>) -> Result<(), Error> {
        let writer = match &mut self.commit {
            Committer::Inline(writer) => writer,
            Committer::Pipelined(pipe) => return pipe.commit(self.shard, pass),
        };
        let first = writer.next_seq();
        for job in pass.iter() {
            debug_assert_eq!(job.records.len(), job.ops.len() * RECORD_BYTES);
            writer.push_encoded(&job.records);
        }
        match writer.commit() {
            Ok(()) => {
                pass.drain(..).for_each(release);
                Ok(())
            }
            Err(e) => {
                let what = format!(
                    "the journal could not make records {first}..{} durable ({e}); their \
                     decisions were not released",
                    writer.next_seq()
                );
                Err(refuse(pass, journal_failure(self.shard, what)))
            }
        }
    }

    /// Wait until every pass committed so far is durable (pipelined commits release later;
    /// an export, a snapshot and a clean stop wait for them).
    pub fn wait_durable(&mut self) -> Result<(), Error> {
        match &mut self.commit {
            Committer::Inline(_) => Ok(()),
            Committer::Pipelined(pipe) => pipe.wait_durable(self.shard),
        }
    }

    /// How long the shard may wait for work before it must look at the journal: under
    /// [`Durability::Async`], while written data is unsynced, so an idle shard syncs its
    /// tail within about an interval. `None`: wait as long as it takes.
    pub fn idle_sync_interval(&self) -> Option<Duration> {
        let Committer::Inline(writer) = &self.commit else {
            return None;
        };
        match writer.durability() {
            Durability::Async { interval } if writer.unsynced() => Some(interval),
            Durability::Async { .. } | Durability::Sync | Durability::None => None,
        }
    }

    /// fdatasync a dirty tail whose interval has passed (Async; a no-op otherwise).
    pub fn sync_if_due(&mut self) -> Result<(), Error> {
        let Committer::Inline(writer) = &mut self.commit else {
            return Ok(());
        };
        match writer.sync_if_due() {
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
        let seq = self.next_seq();
        if self.snapshot_every_records == 0
            || self.snapshot_thread.is_some()
            || seq - self.snapshot_seq < self.snapshot_every_records
        {
            return Ok(());
        }
        // A snapshot covers records [0, seq): they must be durable before it can be, or a
        // crash could keep a state whose decisions were never released.
        self.wait_durable()?;
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
        let synced = match &mut self.commit {
            Committer::Inline(writer) => writer.sync().map_err(|e| {
                journal_failure(self.shard, format!("the final journal sync failed ({e})"))
            }),
            Committer::Pipelined(pipe) => {
                let durable = pipe.wait_durable(self.shard);
                pipe.close();
                durable
            }
        };
        let joined = self.join_snapshot();
        synced.and(joined)
    }

    /// After a failure: let the flusher answer what it holds and a running snapshot
    /// finish, ignoring their outcome.
    pub fn abandon(&mut self) {
        if let Committer::Pipelined(pipe) = &mut self.commit {
            pipe.close();
        }
        if let Some(handle) = self.snapshot_thread.take() {
            let _ = handle.join();
        }
    }

    fn failed(&self, what: String) -> Error {
        journal_failure(self.shard, what)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{Currency, Kind};
    use crate::journal::encoding::{decode_record, encode_record};
    use crate::reply::{Reply, Slot};
    use rust_decimal::Decimal;

    /// Every record of a segment file's complete frames, walking them (no checksums: the
    /// reader's tests cover those). A frame still being written when the file is read is
    /// left out.
    fn records_on_file(path: &Path) -> Vec<(Request, Code)> {
        let bytes = std::fs::read(path).unwrap_or_default();
        let mut out = Vec::new();
        let mut at = 32; // segment header
        while at + 8 <= bytes.len() {
            let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
            let Some(body) = bytes.get(at + 8..at + 8 + len) else {
                break;
            };
            for record in body[12..].chunks(RECORD_BYTES) {
                out.push(decode_record(record).unwrap());
            }
            at += 8 + len;
        }
        out
    }

    fn credit(i: u64) -> Request {
        Request::new(Kind::Credit, i, 1_700_000_000_000_000_000 + i as i64)
            .with_account(1 + i % 7)
            .with_amount(Decimal::new(i as i64 + 1, 2), Currency::Cny)
    }

    #[test]
    fn pipelined_passes_are_released_only_once_their_records_are_written_in_order() {
        let root = tempfile::tempdir().unwrap();
        let config = JournalConfig::new(root.path());
        let lock = lock_state(root.path()).unwrap();
        let writer = JournalWriter::open(&config, 0, 0).unwrap();
        let mut pipe = Pipeline::start(writer, 0, lock).unwrap();
        let segment = shard_dir(root.path(), 0).join(crate::journal::segment_name(0));
        // One reply slot per pass, so the test sees which passes are released when.
        // Passes of 1..=5 records; each job's first position says how many records the
        // passes up to and including its own hold.
        let mut pushed = Vec::new();
        let mut slots = Vec::new();
        let passes = 40u64;
        for p in 0..passes {
            let mut records = Vec::new();
            for k in 0..(1 + p % 5) as usize {
                let request = credit(pushed.len() as u64);
                let code = if p % 3 == 0 {
                    Code::Approved
                } else {
                    Code::Duplicate
                };
                // As the router encodes it and the shard then fills in its code.
                encode_record(&mut records, &request, Code::Approved);
                set_record_code(&mut records, k, code);
                pipe.next_seq += 1;
                pushed.push((request, code));
            }
            let slot = Slot::new(1);
            let mut pass = vec![Job {
                ops: Vec::new(),
                records,
                positions: vec![pushed.len() as u32],
                decisions: Vec::new(),
                reply: Reply::to(&slot),
            }];
            slots.push(slot);
            pipe.commit(0, &mut pass).unwrap();
            assert!(pass.is_empty(), "the pass was handed over");
        }
        // Watch the releases as they happen: the passes released at any moment are always
        // the first k, and each is released only once its records (and every earlier one)
        // are on file.
        let mut seen = 0;
        while seen < slots.len() {
            let finished: Vec<bool> = slots.iter().map(|s| s.is_finished()).collect();
            let k = finished.iter().take_while(|&&f| f).count();
            assert!(
                finished[k..].iter().all(|&f| !f),
                "released out of order: {finished:?}"
            );
            if k > seen {
                let on_file = records_on_file(&segment);
                for slot in &slots[seen..k] {
                    let job = slot.wait().unwrap().pop().unwrap();
                    let through = job.positions[0] as usize;
                    assert!(on_file.len() >= through, "{} < {through}", on_file.len());
                }
                seen = k;
            }
            std::thread::yield_now();
        }
        pipe.wait_durable(0).unwrap();
        pipe.close();
        let on_file = records_on_file(&segment);
        assert_eq!(on_file.len(), pushed.len());
        for (got, want) in on_file.iter().zip(&pushed) {
            assert_eq!(got, want);
        }
    }
}
