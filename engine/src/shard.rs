//! One shard's owner thread: drain jobs from its queue, decide each request in order,
//! journal the pass, hand the decisions back; also answers state exports and the stop
//! message.

use std::sync::atomic::{fence, AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use crate::api::Kind;
use crate::api::{
    from_minor, AccountState, Decision, HoldState, HoldStatus, StateExport, TokenState,
};
use crate::durable::ShardJournal;
use crate::error::Error;
use crate::reply::Reply;
use crate::rules::{decide_hinted, Hints, Routed, Times};
use crate::store::Store;
use crate::store::NIL;

/// How many requests ahead the decide loop prefetches the op itself: it was written by the
/// submitting thread, so its lines come from another core's cache or from memory.
const OP_PREFETCH_DISTANCE: usize = 24;
/// How many requests ahead the decide loop prefetches an op's account and keys.
const PREFETCH_DISTANCE: usize = 10;
/// How many requests ahead the decide loop looks up a completion's `ref` (its key's entry is
/// in cache by then) and prefetches the hold it names; and, from the account's line, also
/// in by then, a token other than the account's first, the hold an authorize would link
/// its own in front of, and the rest of the op's own key probe.
const HOLD_PREFETCH_DISTANCE: usize = 6;
/// How many requests ahead the decide loop prefetches the neighbours of the hold a
/// completion names (closing it unlinks it), from the hold's lines.
const LINK_PREFETCH_DISTANCE: usize = 3;

/// A slice of a submitted batch bound for one shard, and the place its decisions go.
pub(crate) struct Job {
    /// The requests, in submission order.
    pub ops: Vec<Routed>,
    /// The same requests as they came, encoded by the router as journal records (decision
    /// code left for the shard to fill in), back to back; empty when there is no journal.
    pub records: Vec<u8>,
    /// Positions of `ops` in the submitted batch.
    pub positions: Vec<u32>,
    /// Filled by the shard, one per op.
    pub decisions: Vec<Decision>,
    /// Where the finished job goes, or the error that kept its decisions back. Dropped
    /// unanswered (the shard died), it reports the shard as failed.
    pub reply: Reply,
}

/// What a shard's queue carries.
pub(crate) enum Msg {
    /// Decide these.
    Batch(Job),
    /// Export the state as of the given instant.
    Export(i64, Sender<Result<StateExport, Error>>),
    /// Panic, as a broken invariant would: for tests of how a dead shard is reported.
    #[cfg(test)]
    Crash,
}

/// The shard's side of the queue, and its counters.
pub(crate) struct Shard {
    pub store: Store,
    pub times: Times,
    /// A pass stops draining the queue once it holds this many requests.
    pub batch_max: usize,
    pub rx: Receiver<Msg>,
    /// Batch slots free in the queue; the router reserves one per job, the shard gives it back
    /// when it takes the job.
    pub free_slots: Arc<AtomicUsize>,
    /// Set when the thread dies (a panic), before it drops what is queued; see
    /// `DeathWatch`.
    pub dead: Arc<AtomicBool>,
    /// The journal, when the engine is durable.
    pub journal: Option<ShardJournal>,
}

impl Shard {
    /// Run until every sender is gone, deciding every job already queued.
    ///
    /// Each pass drains queued jobs until it holds `batch_max` requests (or the queue is
    /// empty), decides them in one straight loop in queue order, commits them to the
    /// journal (one write, one fdatasync under `Durability::Sync`), and only then hands each
    /// job back. If the journal fails, the pass is answered with the error instead of its
    /// decisions, and so is everything queued after it: the shard's state is ahead of its
    /// journal, so it must not decide anything more (the host restarts and recovers).
    pub fn run(mut self) -> Result<(), Error> {
        let _watch = DeathWatch {
            rx: self.rx.clone(),
            dead: Arc::clone(&self.dead),
        };
        let result = self.serve();
        if let Err(e) = &result {
            self.refuse_rest(e);
        }
        result
    }

    fn serve(&mut self) -> Result<(), Error> {
        let mut pass: Vec<Job> = Vec::new();
        while let Some(msg) = self.next_msg()? {
            let mut next = Some(msg);
            let mut requests = 0;
            while let Some(msg) = next.take() {
                match msg {
                    Msg::Batch(job) => {
                        self.free_slots.fetch_add(1, Ordering::AcqRel);
                        requests += job.ops.len();
                        pass.push(job);
                    }
                    Msg::Export(as_of_ns, reply) => {
                        // Everything queued before the export is decided (and durable)
                        // before it.
                        self.decide_pass(&mut pass)?;
                        if let Some(journal) = &mut self.journal {
                            if let Err(e) = journal.wait_durable() {
                                let _ = reply.send(Err(e.clone()));
                                return Err(e);
                            }
                        }
                        let _ = reply.send(Ok(self.export(as_of_ns)));
                    }
                    #[cfg(test)]
                    Msg::Crash => panic!("shard crash requested by a test"),
                }
                if requests < self.batch_max {
                    next = self.rx.try_recv().ok();
                }
            }
            self.decide_pass(&mut pass)?;
        }
        match &mut self.journal {
            Some(journal) => journal.finish(),
            None => Ok(()),
        }
    }

    /// The next message, or `None` once the queue is closed and empty. Under
    /// `Durability::Async` an idle shard wakes every interval to sync a dirty tail.
    fn next_msg(&mut self) -> Result<Option<Msg>, Error> {
        let Some(journal) = self.journal.as_mut() else {
            return Ok(self.rx.recv().ok());
        };
        while let Some(interval) = journal.idle_sync_interval() {
            match self.rx.recv_timeout(interval) {
                Ok(msg) => return Ok(Some(msg)),
                Err(RecvTimeoutError::Disconnected) => return Ok(None),
                Err(RecvTimeoutError::Timeout) => journal.sync_if_due()?,
            }
        }
        // Nothing unsynced: nothing to wake up for until work comes.
        Ok(self.rx.recv().ok())
    }

    /// After a journal failure: answer every job and export still coming with `error`,
    /// deciding nothing, until the engine closes the queue.
    fn refuse_rest(&mut self, error: &Error) {
        if let Some(journal) = &mut self.journal {
            journal.abandon();
        }
        while let Ok(msg) = self.rx.recv() {
            match msg {
                Msg::Batch(job) => {
                    self.free_slots.fetch_add(1, Ordering::AcqRel);
                    refuse_job(job, error.clone());
                }
                Msg::Export(_, reply) => {
                    let _ = reply.send(Err(error.clone()));
                }
                #[cfg(test)]
                Msg::Crash => {}
            }
        }
    }

    /// Decide the jobs of one pass in order, make them durable, and hand each back to its
    /// submitter. Without a journal each job goes back as soon as it is decided.
    fn decide_pass(&mut self, pass: &mut Vec<Job>) -> Result<(), Error> {
        let Some(journal) = self.journal.as_mut() else {
            for mut job in pass.drain(..) {
                decide_job(&mut self.store, &self.times, &mut job, None);
                release(job);
            }
            return Ok(());
        };
        if pass.is_empty() {
            return Ok(());
        }
        for job in pass.iter_mut() {
            decide_job(&mut self.store, &self.times, job, Some(&mut *journal));
        }
        // A decision is released only after its pass is durable: the journal releases the
        // jobs then (under Sync from its flusher, while this thread decides on).
        journal.commit(pass)?;
        journal.after_commit(&self.store)
    }

    /// Accounts, holds and tokens as of `as_of_ns`, with the expiry rule applied to the view
    /// (the tables themselves are not changed).
    fn export(&self, as_of_ns: i64) -> StateExport {
        let store = &self.store;
        let mut expired_minor = vec![0i64; store.accounts.len()];
        let mut holds = Vec::with_capacity(store.hold_count());
        for ((account, request_id), h) in store.holds_iter() {
            let acct = &store.accounts[account as usize];
            // The hold as the expiry rule would leave it at `as_of_ns`.
            let mut view = *h;
            if view.status() == HoldStatus::Open && view.expires_at_ns <= as_of_ns {
                expired_minor[account as usize] += h.remaining_minor();
                view.set_status(HoldStatus::Expired);
                view.ended_ns = view.expires_at_ns;
            }
            if !view.referable_at(as_of_ns, self.times.retention_ns) {
                continue;
            }
            let status = view.status();
            let c = acct.currency();
            holds.push(HoldState {
                account_id: store.account_id(account),
                request_id,
                authorized: from_minor(h.authorized_minor, c),
                captured: from_minor(h.captured_minor, c),
                voided: from_minor(h.voided_minor, c),
                refunded: from_minor(h.refunded_minor, c),
                expires_at_ns: h.expires_at_ns,
                status,
            });
        }
        let accounts = store
            .accounts
            .iter()
            .zip(&expired_minor)
            .enumerate()
            .map(|(i, (a, &gone))| {
                let held = a.held_minor - gone;
                let c = a.currency();
                AccountState {
                    account_id: store.account_id(i as u32),
                    currency: c,
                    balance: from_minor(a.balance_minor, c),
                    held: from_minor(held, c),
                    available: from_minor(a.balance_minor.saturating_sub(held), c),
                    status: a.status(),
                }
            })
            .collect();
        let owners = store.token_accounts();
        let tokens = store
            .tokens
            .iter()
            .zip(&owners)
            .map(|(t, &owner)| TokenState {
                token: t.dpan,
                account_id: store.account_id(owner),
                status: t.status(),
            })
            .collect();
        StateExport {
            accounts,
            holds,
            tokens,
        }
    }
}

/// Slots of the decide loop's ring of [`Hints`]: a power of two above the farthest stage.
const HINTS_RING: usize = 16;
const _: () = assert!(HINTS_RING.is_power_of_two() && PREFETCH_DISTANCE < HINTS_RING);

/// Decide a job's requests in order, journaling each with its decision.
fn decide_job(
    store: &mut Store,
    times: &Times,
    job: &mut Job,
    mut journal: Option<&mut ShardJournal>,
) {
    job.decisions.clear();
    job.decisions.reserve(job.ops.len());
    // A software pipeline of prefetches, so the cache misses of a request overlap with
    // deciding the requests before it: the op, then what it names (its account, token and
    // keys, whose hashes the ring keeps for the later stages), then its hold.
    let mut ring = [Hints::NONE; HINTS_RING];
    let ops = &job.ops;
    let stage_keys = |store: &Store, ring: &mut [Hints; HINTS_RING], j: usize| {
        let ahead = &ops[j];
        store.prefetch_account(ahead.account);
        let hints = Hints::of(ahead);
        store.prefetch_key_home(hints.own_hash);
        if ahead.referred().is_some() {
            store.prefetch_key_hashed(hints.ref_hash);
        }
        ring[j % HINTS_RING] = hints;
    };
    for j in 0..PREFETCH_DISTANCE.min(ops.len()) {
        stage_keys(store, &mut ring, j);
    }
    for (i, op) in ops.iter().enumerate() {
        if let Some(ahead) = ops.get(i + OP_PREFETCH_DISTANCE) {
            crate::prefetch::prefetch_value(ahead);
        }
        if i + PREFETCH_DISTANCE < ops.len() {
            stage_keys(store, &mut ring, i + PREFETCH_DISTANCE);
        }
        if let Some(ahead) = ops.get(i + HOLD_PREFETCH_DISTANCE) {
            // The account's line has come in: a token other than its first, and limits,
            // have lines of their own to fetch.
            store.prefetch_account_rest(ahead.account, ahead.token);
            let hints = &mut ring[(i + HOLD_PREFETCH_DISTANCE) % HINTS_RING];
            store.prefetch_key_overflow((ahead.account, ahead.request_id), hints.own_hash);
            if let Some(r) = ahead.referred() {
                (hints.ref_found, hints.ref_hold) =
                    store.prefetch_hold_hashed((ahead.account, r), hints.ref_hash);
            } else if ahead.kind() == Kind::Authorize {
                store.prefetch_link(ahead.account);
            }
        }
        if i + LINK_PREFETCH_DISTANCE < ops.len() {
            let hints = &ring[(i + LINK_PREFETCH_DISTANCE) % HINTS_RING];
            if hints.ref_hold != NIL {
                store.prefetch_unlink(hints.ref_hold);
            }
        }
        let code = decide_hinted(store, times, op, &ring[i % HINTS_RING]);
        if let Some(journal) = journal.as_deref_mut() {
            journal.push(&mut job.records, i, code);
        }
        job.decisions.push(Decision {
            request_id: op.request_id,
            code,
        });
    }
}

/// Drops, when the shard's thread unwinds from a panic, every message queued for it, so each
/// queued job's reply answers `ShardFailed` at once: the engine keeps the queue open (it
/// holds the senders), so they would otherwise wait for the engine to stop.
struct DeathWatch {
    rx: Receiver<Msg>,
    dead: Arc<AtomicBool>,
}

impl Drop for DeathWatch {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        // Flag first, then drain: a submitter sends, then reads the flag (with the same
        // fences), so a job it queued after this drain is drained by the submitter itself.
        self.dead.store(true, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        while self.rx.try_recv().is_ok() {}
    }
}

/// Hand a decided job back. The submitter may have gone away (dropped its Pending); that
/// is fine.
pub(crate) fn release(mut job: Job) {
    std::mem::take(&mut job.reply).send(job);
}

/// Answer a job with `error` instead of its decisions.
pub(crate) fn refuse_job(mut job: Job, error: Error) {
    std::mem::take(&mut job.reply).fail(error);
}
