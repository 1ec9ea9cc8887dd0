//! The `Engine` handle a host holds: start from a Config (or recover from its state
//! directory), submit batches, export, shut down.

use std::sync::atomic::{fence, AtomicBool, AtomicUsize, Ordering};
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
use crate::reply::{Reply, Slot};
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
    /// Per shard: set when its thread died; then `drains` empties its queue after a send.
    dead: Vec<Arc<AtomicBool>>,
    /// A receiving end of each shard's queue, to drop what is sent to a dead shard.
    drains: Vec<Receiver<Msg>>,
    threads: Vec<JoinHandle<Result<(), Error>>>,
}

/// Decisions of an accepted batch; [`Pending::wait`] blocks until they are all made.
#[must_use = "the decisions are only delivered through wait()"]
pub struct Pending {
    slot: Arc<Slot>,
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
        for job in self.slot.wait()? {
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
        let mut dead = Vec::with_capacity(config.shards);
        let mut drains = Vec::with_capacity(config.shards);
        let mut threads = Vec::with_capacity(config.shards);
        for (i, (store, journal)) in stores.into_iter().zip(journals).enumerate() {
            let (tx, rx) = crossbeam_channel::bounded(config.queue_depth + EXPORT_ROOM);
            let slots = Arc::new(AtomicUsize::new(config.queue_depth));
            let shard_dead = Arc::new(AtomicBool::new(false));
            let rx_drain = rx.clone();
            let shard = Shard {
                store,
                times,
                batch_max: config.batch_max,
                rx,
                free_slots: Arc::clone(&slots),
                dead: Arc::clone(&shard_dead),
                journal,
            };
            let handle = std::thread::Builder::new()
                .name(format!("payauth-shard-{i}"))
                .spawn(move || shard.run())
                .map_err(|e| Error::new(ErrorKind::Config, format!("spawning shard {i}: {e}")))?;
            queues.push(tx);
            free_slots.push(slots);
            dead.push(shard_dead);
            drains.push(rx_drain);
            threads.push(handle);
        }
        Ok(Engine {
            directory,
            journaled: config.journal.is_some(),
            queues,
            free_slots,
            dead,
            drains,
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
        for (shard, job) in split.per_shard.iter().enumerate() {
            if job.is_some() && !try_reserve(&self.free_slots[shard]) {
                // Give back what this batch reserved before the full shard.
                for (s, j) in split.per_shard[..shard].iter().enumerate() {
                    if j.is_some() {
                        self.free_slots[s].fetch_add(1, Ordering::AcqRel);
                    }
                }
                return Err(SubmitError::Full(batch));
            }
        }
        Ok(self.send(split))
    }

    /// Submit a batch, waiting for queue room, and return a handle to its decisions.
    pub fn submit_async(&self, batch: &[Request]) -> Pending {
        let split = self.split(batch);
        for (shard, _) in split
            .per_shard
            .iter()
            .enumerate()
            .filter(|(_, j)| j.is_some())
        {
            let backoff = Backoff::new();
            while !try_reserve(&self.free_slots[shard]) {
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
        for (shard, q) in self.queues.iter().enumerate() {
            let (tx, rx) = crossbeam_channel::bounded(1);
            q.send(Msg::Export(as_of_ns, tx)).map_err(|_| failed())?;
            self.drain_if_dead(shard);
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

    /// After a send to `shard`: if its thread has died, drop what is queued there (the job
    /// just sent among them), so each job's reply answers `ShardFailed` now rather than when
    /// the engine stops. The shard flags its death, then drains its queue itself; this reads
    /// the flag after the send, so one of the two drains sees every job.
    fn drain_if_dead(&self, shard: usize) {
        fence(Ordering::SeqCst);
        if self.dead[shard].load(Ordering::SeqCst) {
            while self.drains[shard].try_recv().is_ok() {}
        }
    }

    fn stop(&mut self) -> Result<(), Error> {
        self.drains.clear();
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
                        // Connected to the batch's slot when it is sent.
                        reply: Reply::default(),
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
        Split {
            per_shard,
            decisions,
        }
    }

    fn send(&self, split: Split) -> Pending {
        let slot = Slot::new(split.per_shard.iter().flatten().count());
        for (shard, job) in split.per_shard.into_iter().enumerate() {
            let Some(mut job) = job else { continue };
            job.reply = Reply::to(&slot);
            // Room is reserved, and the queue is open while the engine is.
            let _ = self.queues[shard].send(Msg::Batch(job));
            self.drain_if_dead(shard);
        }
        Pending {
            slot,
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
    /// Indexed by shard: the job for it, if the batch has requests there.
    per_shard: Vec<Option<Job>>,
    /// One per request, in batch order: the answers given at resolution, and placeholders
    /// the shards' decisions overwrite.
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{AccountStatus, Currency, Kind};
    use rust_decimal::Decimal;

    const TS_NS: i64 = 1_790_000_000_000_000_000;

    fn engine(shards: usize, accounts: u64) -> Engine {
        let specs = (1..=accounts)
            .map(|id| AccountSpec {
                account_id: id,
                currency: Currency::Cny,
                balance: Decimal::ZERO,
                status: AccountStatus::Active,
                per_txn_limit: None,
                daily_limit: None,
                daily_count_limit: None,
            })
            .collect();
        let config = Config {
            shards,
            queue_depth: 4,
            ..Config::default()
        };
        Engine::start(config, specs, Vec::new()).unwrap()
    }

    /// A top-up of 1.00 to `account`, or `14` for an account that does not exist.
    fn credit(id: u64, account: u64) -> Request {
        Request::new(Kind::Credit, id, TS_NS)
            .with_account(account)
            .with_amount(Decimal::new(1_00, 2), Currency::Cny)
    }

    #[test]
    fn concurrent_submitters_get_their_own_decisions_in_order() {
        let engine = engine(2, 16);
        std::thread::scope(|s| {
            for t in 0..4u64 {
                let engine = &engine;
                s.spawn(move || {
                    for b in 0..500u64 {
                        // Batches of 1..=9 requests over both shards and unknown accounts
                        // (answered at resolution), some through try_submit, some waited
                        // for later, some dropped unwaited.
                        let len = 1 + (b % 9);
                        let batch: Vec<Request> = (0..len)
                            .map(|k| {
                                let id = (t << 32) | (b << 8) | k;
                                credit(id, 1 + (id * 7 + k) % 18)
                            })
                            .collect();
                        let pending = match b % 3 {
                            0 => engine.submit_async(&batch),
                            _ => loop {
                                match engine.try_submit(batch.clone()) {
                                    Ok(p) => break p,
                                    Err(SubmitError::Full(back)) => {
                                        assert_eq!(back, batch, "a refused batch comes back");
                                        std::thread::yield_now();
                                    }
                                    Err(e) => panic!("{e}"),
                                }
                            },
                        };
                        if b % 50 == 49 {
                            drop(pending);
                            continue;
                        }
                        let got = pending.wait().unwrap();
                        let ids: Vec<u64> = got.iter().map(|d| d.request_id).collect();
                        let want: Vec<u64> = batch.iter().map(|r| r.request_id).collect();
                        assert_eq!(ids, want);
                        for (d, r) in got.iter().zip(&batch) {
                            let known = r.account_id.is_some_and(|a| a <= 16);
                            assert_eq!(d.code == Code::Approved, known, "{d:?}");
                        }
                    }
                });
            }
        });
        // Every request to a known account was applied exactly once, waited for or not.
        let state = engine.shutdown(TS_NS).unwrap();
        let applied: Decimal = state.accounts.iter().map(|a| a.balance).sum();
        let mut want = 0i64;
        for t in 0..4u64 {
            for b in 0..500u64 {
                for k in 0..1 + (b % 9) {
                    let id = (t << 32) | (b << 8) | k;
                    want += i64::from((id * 7 + k) % 18 < 16);
                }
            }
        }
        assert_eq!(applied, Decimal::new(want * 1_00, 2));
    }

    #[test]
    fn a_dead_shard_is_reported_as_failed() {
        let engine = engine(2, 64);
        let on_shard = |shard: usize| {
            (1..=64)
                .map(|a| credit(a, a))
                .find(|r| engine.shard_for(r) == Some(shard))
                .unwrap()
        };
        let (zero, one) = (on_shard(0), on_shard(1));
        // A batch queued behind the crash, and one sent after it.
        let _ = engine.queues[0].send(Msg::Crash);
        let queued = engine.submit_async(&[zero, one]);
        assert_eq!(queued.wait().unwrap_err().kind(), ErrorKind::ShardFailed);
        let after = engine.submit(&[one, zero]).unwrap_err();
        assert_eq!(after.kind(), ErrorKind::ShardFailed);
        // The other shard still answers.
        assert_eq!(engine.submit(&[one]).unwrap()[0].code, Code::Approved);
        assert_eq!(
            engine.shutdown(TS_NS).unwrap_err().kind(),
            ErrorKind::ShardFailed
        );
    }
}
