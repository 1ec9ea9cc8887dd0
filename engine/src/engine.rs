//! The `Engine` handle a host holds: start from a Config (or recover from its state
//! directory), submit batches, export, shut down.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender};
use crossbeam_utils::Backoff;

use crate::api::{AccountSpec, Code, Decision, Request, StateExport, TokenSpec};
use crate::config::Config;
use crate::durable::{self, ReplayedRecord, ShardJournal};
use crate::error::{Error, ErrorKind, SubmitError};
use crate::journal::encoding::{encode_record, RECORD_BYTES};
use crate::journal::RecoveryReport;
use crate::router::{Directory, Resolved};
use crate::rules::{Routed, Times};
use crate::shard::{Job, Msg, Shard};
use crate::store::Store;

/// Extra queue room, beyond `queue_depth` batches, for state exports (a cold path).
const EXPORT_ROOM: usize = 64;

/// How many requests ahead `split` prefetches the directory.
const RESOLVE_PREFETCH_DISTANCE: usize = 8;
/// How many requests ahead `split` prefetches the request itself (both of its cache lines).
const REQUEST_PREFETCH_DISTANCE: usize = 24;

/// A running engine: shard threads, each the only owner of its partition of the accounts.
///
/// `Engine` is `Send + Sync`: several host threads may submit at once. Requests of one
/// account are applied in the order their batches were accepted.
///
/// With [`Config::journal`] set, the engine is durable: a decision is released (returned by
/// [`Pending::wait`]) only after the shard's pass that made it is in the journal, so every
/// decision a host has received survives a crash, and [`Engine::recover`] rebuilds the
/// engine as of its last durable pass.
pub struct Engine {
    directory: Directory,
    /// The shards journal what they decide, so jobs carry the requests as they came.
    journaled: bool,
    queues: Vec<Sender<Msg>>,
    free_slots: Vec<Arc<AtomicUsize>>,
    threads: Vec<JoinHandle<Result<(), Error>>>,
}

/// Decisions of an accepted batch; [`Pending::wait`] blocks until they are all made.
#[must_use = "the decisions are only delivered through wait()"]
pub struct Pending {
    replies: Receiver<Result<Job, Error>>,
    jobs: usize,
    decisions: Vec<Decision>,
}

impl Pending {
    /// Wait for every decision, in the order of the submitted batch.
    ///
    /// Fails with [`ErrorKind::ShardFailed`] when a shard died (a broken invariant), and
    /// with [`ErrorKind::Journal`] when a shard could not make its pass durable: then the
    /// decisions of that pass are withheld (they may or may not survive a crash), and the
    /// shard decides nothing more until the engine is recovered.
    pub fn wait(mut self) -> Result<Vec<Decision>, Error> {
        for _ in 0..self.jobs {
            let job = self.replies.recv().map_err(|_| {
                Error::new(
                    ErrorKind::ShardFailed,
                    "a shard stopped before deciding the batch (a broken invariant; see its panic message)",
                )
            })??;
            for (&pos, &d) in job.positions.iter().zip(&job.decisions) {
                self.decisions[pos as usize] = d;
            }
        }
        Ok(self.decisions)
    }
}

impl Engine {
    /// Validate `config`, load accounts and tokens, and start one owner thread per shard.
    ///
    /// Fails with [`ErrorKind::Config`] for a bad config and [`ErrorKind::Load`] for
    /// inconsistent accounts or tokens (duplicates, a token of an unknown account, an amount
    /// with more decimals than its currency, a negative limit).
    ///
    /// With [`Config::journal`], this is a *fresh* start: the state directory must be missing
    /// or empty ([`ErrorKind::StateExists`] otherwise: a state is recovered with
    /// [`Engine::recover`], never overwritten). It is created with snapshot 0 of every shard
    /// (the loaded accounts and tokens) before its `state.meta`, so a crash during the start
    /// leaves a directory the next start takes again; [`ErrorKind::Journal`] when it cannot
    /// be written.
    pub fn start(
        config: Config,
        accounts: Vec<AccountSpec>,
        tokens: Vec<TokenSpec>,
    ) -> Result<Engine, Error> {
        config.validate()?;
        let (directory, stores) = Directory::build(
            config.shards,
            &accounts,
            &tokens,
            config.holds_per_shard_hint,
        )?;
        let journals = match config.journal {
            Some(_) => durable::create(&config, &stores)?
                .into_iter()
                .map(Some)
                .collect(),
            None => (0..config.shards).map(|_| None).collect(),
        };
        Engine::launch(&config, directory, stores, journals)
    }

    /// Rebuild a durable engine from its state directory ([`Config::journal`], required)
    /// after a crash or a stop, and start it.
    ///
    /// Each shard, in parallel: restore its newest snapshot, then replay every journal
    /// record after it through the same decision code, demanding the decision the journal
    /// recorded (the one the host received). A torn tail (the last pass of a crash, whose
    /// decisions were never released under [`crate::Durability::Sync`]) is cut and reported;
    /// anything else that is damaged or missing is refused with [`ErrorKind::Recovery`],
    /// naming the shard, file and byte offset ([`Error::recovery`]): so is a different shard
    /// count or different time rules than the directory was created with, and a record that
    /// replays to another decision (the rules or the build changed). Nothing is skipped.
    ///
    /// [`ErrorKind::NoState`] when the directory is missing or empty, without touching it:
    /// start fresh with [`Engine::start`] ([`Engine::open`] does either).
    ///
    /// After recovery, every decision a host received before the crash is part of the
    /// state, so retransmissions of requests applied before the crash answer exactly as
    /// before (exact repeats inside the duplicate window return the recorded decision and
    /// change nothing). The accounts and tokens are the directory's own (as loaded at the
    /// first start, plus everything applied since).
    pub fn recover(config: Config) -> Result<(Engine, RecoveryReport), Error> {
        Engine::recover_with(config, &|_| {})
    }

    /// [`Engine::recover`], handing every replayed journal record to `observe` (from the
    /// recovery threads, one per shard in parallel; each shard's records in order). A tool
    /// that resumes feeding a dataset learns from it the decisions of the requests that were
    /// durable before the crash. Only records after each shard's newest snapshot are
    /// replayed; with [`Config::snapshot_every_records`] = 0 that is the whole journal.
    pub fn recover_with(
        config: Config,
        observe: &(dyn Fn(&ReplayedRecord<'_>) + Sync),
    ) -> Result<(Engine, RecoveryReport), Error> {
        config.validate()?;
        if config.journal.is_none() {
            return Err(Error::new(
                ErrorKind::Config,
                "recovery needs config.journal: the state directory to recover",
            ));
        }
        let (stores, journals, report) = durable::recover(&config, observe)?;
        let directory = Directory::from_stores(&stores)?;
        let journals = journals.into_iter().map(Some).collect();
        let engine = Engine::launch(&config, directory, stores, journals)?;
        Ok((engine, report))
    }

    /// Start or resume: [`Engine::recover`] when the configured state directory holds a
    /// state (the report is `Some`; `accounts` and `tokens` are then ignored, since the
    /// state has its own), else [`Engine::start`] with `accounts` and `tokens`. Without a
    /// journal, always a fresh in-memory start.
    pub fn open(
        config: Config,
        accounts: Vec<AccountSpec>,
        tokens: Vec<TokenSpec>,
    ) -> Result<(Engine, Option<RecoveryReport>), Error> {
        config.validate()?;
        if config.journal.is_some() && durable::has_state(&config)? {
            let (engine, report) = Engine::recover(config)?;
            return Ok((engine, Some(report)));
        }
        Ok((Engine::start(config, accounts, tokens)?, None))
    }

    /// Start one owner thread per store.
    fn launch(
        config: &Config,
        directory: Directory,
        stores: Vec<Store>,
        journals: Vec<Option<ShardJournal>>,
    ) -> Result<Engine, Error> {
        let times = Times {
            hold_ttl_ns: config.hold_ttl_ns,
            dup_window_ns: config.dup_window_ns,
            retention_ns: config.retention_ns,
        };
        let mut queues = Vec::with_capacity(config.shards);
        let mut free_slots = Vec::with_capacity(config.shards);
        let mut threads = Vec::with_capacity(config.shards);
        for (i, (store, journal)) in stores.into_iter().zip(journals).enumerate() {
            let (tx, rx) = crossbeam_channel::bounded(config.queue_depth + EXPORT_ROOM);
            let slots = Arc::new(AtomicUsize::new(config.queue_depth));
            let shard = Shard {
                store,
                times,
                batch_max: config.batch_max,
                rx,
                free_slots: Arc::clone(&slots),
                journal,
            };
            let handle = std::thread::Builder::new()
                .name(format!("payauth-shard-{i}"))
                .spawn(move || shard.run())
                .map_err(|e| Error::new(ErrorKind::Config, format!("spawning shard {i}: {e}")))?;
            queues.push(tx);
            free_slots.push(slots);
            threads.push(handle);
        }
        Ok(Engine {
            directory,
            journaled: config.journal.is_some(),
            queues,
            free_slots,
            threads,
        })
    }

    /// The shard that decides (and journals) `request`, or `None` when it is answered at
    /// resolution (an unknown token or account: `14`/`78`, never journaled). A host resuming
    /// a stream after [`Engine::recover`] uses it with [`crate::ShardReport::next_seq`]: the
    /// first `next_seq` requests it had sent to shard `k` are applied and durable.
    pub fn shard_for(&self, request: &Request) -> Option<usize> {
        self.directory.shard_for(request)
    }

    /// Number of shards.
    pub fn shards(&self) -> usize {
        self.queues.len()
    }

    /// Submit a batch without blocking. When a shard queue it needs is full, the batch comes
    /// back untouched in [`SubmitError::Full`] and nothing of it has been applied.
    pub fn try_submit(&self, batch: Vec<Request>) -> Result<Pending, SubmitError> {
        let split = self.split(&batch);
        let mut reserved = Vec::with_capacity(split.jobs.len());
        for (shard, _) in &split.jobs {
            if try_reserve(&self.free_slots[*shard]) {
                reserved.push(*shard);
            } else {
                for &s in &reserved {
                    self.free_slots[s].fetch_add(1, Ordering::AcqRel);
                }
                return Err(SubmitError::Full(batch));
            }
        }
        Ok(self.send(split))
    }

    /// Submit a batch, waiting for queue room, and return a handle to its decisions.
    pub fn submit_async(&self, batch: &[Request]) -> Pending {
        let split = self.split(batch);
        for (shard, _) in &split.jobs {
            let backoff = Backoff::new();
            while !try_reserve(&self.free_slots[*shard]) {
                if backoff.is_completed() {
                    std::thread::yield_now();
                } else {
                    backoff.snooze();
                }
            }
        }
        self.send(split)
    }

    /// Submit a batch, waiting for queue room, and wait for its decisions (in batch order).
    pub fn submit(&self, batch: &[Request]) -> Result<Vec<Decision>, Error> {
        self.submit_async(batch).wait()
    }

    /// The state after everything accepted before this call, as of `as_of_ns`: holds still
    /// open with `expires_at_ns <= as_of_ns` are shown expired and out of `held` (the
    /// tables are not changed). Sorted by account id, (account id, request id), token.
    pub fn export(&self, as_of_ns: i64) -> Result<StateExport, Error> {
        let mut replies = Vec::with_capacity(self.queues.len());
        for q in &self.queues {
            let (tx, rx) = crossbeam_channel::bounded(1);
            q.send(Msg::Export(as_of_ns, tx)).map_err(|_| failed())?;
            replies.push(rx);
        }
        let mut all = StateExport::default();
        for rx in replies {
            let part = rx.recv().map_err(|_| failed())??;
            all.accounts.extend(part.accounts);
            all.holds.extend(part.holds);
            all.tokens.extend(part.tokens);
        }
        all.accounts.sort_unstable_by_key(|a| a.account_id);
        all.holds
            .sort_unstable_by_key(|h| (h.account_id, h.request_id));
        all.tokens.sort_unstable_by_key(|t| t.token);
        Ok(all)
    }

    /// Decide everything already accepted, stop the shard threads, and return the final
    /// state as of `as_of_ns`. With a journal, each shard first makes its tail durable
    /// (an Async tail is synced) and lets a running snapshot finish. Dropping the engine
    /// does the same, without the state.
    pub fn shutdown(mut self, as_of_ns: i64) -> Result<StateExport, Error> {
        let state = self.export(as_of_ns);
        self.stop()?;
        state
    }

    fn stop(&mut self) -> Result<(), Error> {
        self.queues.clear(); // the shards drain what is queued, then see the queue close
        let mut result = Ok(());
        for t in self.threads.drain(..) {
            let outcome = t.join().unwrap_or_else(|_| Err(failed()));
            if result.is_ok() {
                result = outcome;
            }
        }
        result
    }

    /// Resolve each request to its shard (or answer `14`/`78` at once) and group by shard.
    fn split(&self, batch: &[Request]) -> Split {
        let (reply_tx, replies) = crossbeam_channel::unbounded();
        let mut per_shard: Vec<Option<Job>> = (0..self.queues.len()).map(|_| None).collect();
        let mut decisions = Vec::with_capacity(batch.len());
        // Room for an even share plus slack, so the common case never regrows.
        let share = batch.len() / self.queues.len() + batch.len() / 8 + 8;
        for (pos, req) in batch.iter().enumerate() {
            // Start loading the directory slot of a request a few ahead, so its cache miss
            // overlaps with resolving the ones in between.
            if let Some(ahead) = batch.get(pos + RESOLVE_PREFETCH_DISTANCE) {
                self.directory.prefetch(ahead);
            }
            if let Some(ahead) = batch.get(pos + REQUEST_PREFETCH_DISTANCE) {
                crate::prefetch::prefetch_read(ahead);
                crate::prefetch::prefetch_read(
                    (ahead as *const Request)
                        .wrapping_add(1)
                        .cast::<u8>()
                        .wrapping_sub(1),
                );
            }
            let code = match self.directory.resolve(req) {
                Resolved::Answer(code) => code,
                Resolved::Shard {
                    shard,
                    account,
                    token,
                } => {
                    let journaled = self.journaled;
                    let job = per_shard[shard].get_or_insert_with(|| Job {
                        ops: Vec::with_capacity(share),
                        records: Vec::with_capacity(if journaled {
                            share * RECORD_BYTES
                        } else {
                            0
                        }),
                        positions: Vec::with_capacity(share),
                        decisions: Vec::with_capacity(share),
                        reply: reply_tx.clone(),
                    });
                    job.ops.push(Routed::new(req, account, token));
                    if self.journaled {
                        // Encoded here, off the shard thread; the shard adds its code.
                        encode_record(&mut job.records, req, Code::Approved);
                    }
                    job.positions.push(pos as u32);
                    // Placeholder, overwritten by the shard's decision.
                    Code::Approved
                }
            };
            decisions.push(Decision {
                request_id: req.request_id,
                code,
            });
        }
        let jobs: Vec<(usize, Job)> = per_shard
            .into_iter()
            .enumerate()
            .filter_map(|(s, j)| j.map(|j| (s, j)))
            .collect();
        Split {
            jobs,
            replies,
            decisions,
        }
    }

    fn send(&self, split: Split) -> Pending {
        let jobs = split.jobs.len();
        for (shard, job) in split.jobs {
            // Room is reserved; a failed send means the shard died, which wait() reports.
            let _ = self.queues[shard].send(Msg::Batch(job));
        }
        Pending {
            replies: split.replies,
            jobs,
            decisions: split.decisions,
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

/// A batch resolved and grouped by shard, not yet sent.
struct Split {
    jobs: Vec<(usize, Job)>,
    replies: Receiver<Result<Job, Error>>,
    decisions: Vec<Decision>,
}

fn try_reserve(slots: &AtomicUsize) -> bool {
    slots
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
        .is_ok()
}

fn failed() -> Error {
    Error::new(
        ErrorKind::ShardFailed,
        "a shard thread stopped (a broken invariant; see its panic message)",
    )
}
