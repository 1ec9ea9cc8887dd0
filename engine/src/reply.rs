//! The way decided jobs get back to the submitter of their batch: one shared [`Slot`] per
//! submitted batch (the jobs still out, the jobs that came back, the first error) and the
//! [`Reply`] each job carries to it, which reports the shard as failed if it is dropped
//! unanswered.
//!
//! It replaces a fresh unbounded channel per batch: a submitted batch costs one small
//! allocation here, a shard's answer one uncontended lock, and a wake-up only when the
//! submitter is actually asleep in [`Slot::wait`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crossbeam_utils::Backoff;
use parking_lot::{Condvar, Mutex};

use crate::error::{Error, ErrorKind};
use crate::shard::Job;

/// Rounds of [`Backoff::spin`] (1, 2, 4 ... 64 pause instructions) a waiter spends before
/// it sleeps: about 127 pauses in all.
const WAIT_SPINS: usize = 7;

/// Where the jobs of one submitted batch come back.
pub(crate) struct Slot {
    state: Mutex<State>,
    /// Set (under the lock) once nothing more will come: every job is back, or an error
    /// came. Read without the lock by a waiter that spins before it sleeps.
    finished: AtomicBool,
    /// Signalled when `finished` is set and the waiter sleeps.
    ready: Condvar,
}

struct State {
    /// Jobs sent and not yet answered.
    outstanding: usize,
    /// Jobs answered with their decisions.
    jobs: Vec<Job>,
    /// The first error answered (a journal failure, a dead shard).
    error: Option<Error>,
    /// The waiter sleeps on `ready`: a finishing answer must signal it.
    sleeping: bool,
}

impl Slot {
    /// A slot expecting `jobs` answers (none: it is finished already).
    pub(crate) fn new(jobs: usize) -> Arc<Slot> {
        Arc::new(Slot {
            state: Mutex::new(State {
                outstanding: jobs,
                jobs: Vec::with_capacity(jobs),
                error: None,
                sleeping: false,
            }),
            finished: AtomicBool::new(jobs == 0),
            ready: Condvar::new(),
        })
    }

    /// Block until every job is back (`Ok`, in the order they came back) or an error came
    /// (`Err`, the first one). Spins for a microsecond or two first (an answer that is
    /// almost there then costs no sleep and wake-up), but never yields in a loop: on a small
    /// machine the waiter's core is what the shards need, and each yield is a reschedule.
    pub(crate) fn wait(&self) -> Result<Vec<Job>, Error> {
        let backoff = Backoff::new();
        for _ in 0..WAIT_SPINS {
            if self.finished.load(Ordering::Acquire) {
                break;
            }
            backoff.spin();
        }
        let mut state = self.state.lock();
        while state.outstanding > 0 && state.error.is_none() {
            state.sleeping = true;
            self.ready.wait(&mut state);
        }
        match state.error.take() {
            Some(e) => Err(e),
            None => Ok(std::mem::take(&mut state.jobs)),
        }
    }

    /// Nothing more will come (every job is back, or an error came).
    #[cfg(test)]
    pub(crate) fn is_finished(&self) -> bool {
        self.finished.load(Ordering::Acquire)
    }

    fn answer(&self, outcome: Result<Job, Error>) {
        let mut state = self.state.lock();
        debug_assert!(state.outstanding > 0, "more answers than jobs");
        state.outstanding = state.outstanding.saturating_sub(1);
        match outcome {
            Ok(job) => state.jobs.push(job),
            Err(e) => {
                state.error.get_or_insert(e);
            }
        }
        let finished = state.outstanding == 0 || state.error.is_some();
        if !finished {
            return;
        }
        self.finished.store(true, Ordering::Release);
        let wake = std::mem::take(&mut state.sleeping);
        drop(state);
        // The waiter set `sleeping` and went to sleep in one step under the lock (the
        // condvar releases it only once the waiter is queued), so this signal finds it.
        if wake {
            self.ready.notify_one();
        }
    }
}

/// A job's way back to its slot. Answered at most once; dropped unanswered (the shard died
/// with the job queued or in its pass, or its queue was closed), it answers
/// [`ErrorKind::ShardFailed`], so the submitter never waits forever.
#[derive(Default)]
pub(crate) struct Reply(Option<Arc<Slot>>);

impl Reply {
    /// A reply into `slot`.
    pub(crate) fn to(slot: &Arc<Slot>) -> Reply {
        Reply(Some(Arc::clone(slot)))
    }

    /// Hand the decided job back.
    pub(crate) fn send(mut self, job: Job) {
        if let Some(slot) = self.0.take() {
            slot.answer(Ok(job));
        }
    }

    /// Answer the job with an error instead of its decisions.
    pub(crate) fn fail(mut self, error: Error) {
        if let Some(slot) = self.0.take() {
            slot.answer(Err(error));
        }
    }
}

impl Drop for Reply {
    fn drop(&mut self) {
        if let Some(slot) = self.0.take() {
            slot.answer(Err(Error::new(
                ErrorKind::ShardFailed,
                "a shard stopped before deciding the batch (a broken invariant; see its panic \
                 message)",
            )));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{Code, Decision};

    /// A decided job at batch position `pos`.
    fn job(pos: u32) -> Job {
        Job {
            ops: Vec::new(),
            records: Vec::new(),
            positions: vec![pos],
            decisions: vec![Decision {
                request_id: u64::from(pos),
                code: Code::Approved,
            }],
            reply: Reply::default(),
        }
    }

    fn positions(mut jobs: Vec<Job>) -> Vec<u32> {
        jobs.sort_by_key(|j| j.positions[0]);
        jobs.iter().map(|j| j.positions[0]).collect()
    }

    #[test]
    fn a_slot_without_jobs_is_finished() {
        assert!(Slot::new(0).wait().unwrap().is_empty());
    }

    #[test]
    fn every_job_comes_back_whatever_the_timing() {
        // Many slots, each answered by several threads at once while the waiter spins or
        // sleeps: no answer is lost and no wake-up is missed (a lost one hangs the test).
        for round in 0..2_000u32 {
            let jobs = 1 + (round % 4) as usize;
            let slot = Slot::new(jobs);
            let replies: Vec<Reply> = (0..jobs).map(|_| Reply::to(&slot)).collect();
            std::thread::scope(|s| {
                for (k, reply) in replies.into_iter().enumerate() {
                    s.spawn(move || {
                        if (round + k as u32).is_multiple_of(3) {
                            std::thread::yield_now();
                        }
                        reply.send(job(k as u32));
                    });
                }
                let got = slot.wait().unwrap();
                assert_eq!(positions(got), (0..jobs as u32).collect::<Vec<_>>());
            });
        }
    }

    #[test]
    fn a_sleeping_waiter_is_woken() {
        let slot = Slot::new(1);
        let reply = Reply::to(&slot);
        std::thread::scope(|s| {
            let waiter = s.spawn(|| slot.wait());
            // Long enough that the waiter is past its spin and asleep, almost always; the
            // answer must reach it either way.
            std::thread::sleep(std::time::Duration::from_millis(20));
            reply.send(job(7));
            assert_eq!(positions(waiter.join().unwrap().unwrap()), [7]);
        });
    }

    #[test]
    fn an_error_answers_at_once_and_wins() {
        let slot = Slot::new(3);
        let (a, b, c) = (Reply::to(&slot), Reply::to(&slot), Reply::to(&slot));
        a.send(job(0));
        b.fail(Error::new(ErrorKind::Journal, "disk full"));
        // The third job is still out: the waiter does not wait for it.
        let err = slot.wait().err().expect("an error");
        assert_eq!(err.kind(), ErrorKind::Journal);
        // A late answer after the waiter left changes nothing and does not panic.
        c.send(job(2));
    }

    #[test]
    fn a_reply_dropped_unanswered_reports_the_shard_failed() {
        let slot = Slot::new(2);
        let (a, b) = (Reply::to(&slot), Reply::to(&slot));
        a.send(job(0));
        std::thread::spawn(move || drop(b)).join().unwrap();
        assert_eq!(
            slot.wait().err().expect("an error").kind(),
            ErrorKind::ShardFailed
        );
    }

    #[test]
    fn a_detached_reply_and_a_gone_waiter_are_harmless() {
        // A job built but never sent (the batch was refused) answers nothing.
        drop(job(0));
        // The submitter dropped its handle: the shard's answer lands in the slot, which
        // goes away with the last reply, and nothing refers back to it.
        let slot = Slot::new(1);
        let reply = Reply::to(&slot);
        let weak = Arc::downgrade(&slot);
        drop(slot);
        reply.send(job(0));
        assert!(weak.upgrade().is_none(), "the slot outlived its last reply");
    }
}
