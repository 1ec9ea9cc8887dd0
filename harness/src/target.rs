//! What a measured replay drives: the [`Target`] trait (submit a batch without blocking, get a
//! completion handle), its implementation for the payauth [`Engine`], and [`StandIn`], a
//! target with a known, fixed service time and an optional injected stall, for tests and for
//! checking the harness itself.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use payauth_engine::{Code, Decision, Engine, Pending, Request, SubmitError};

/// Something that decides batches of requests: the engine, or a stand-in with known timing.
///
/// The driver calls [`Target::try_submit`] from one sender thread, in traffic order, and
/// waits on the handles from collector threads. A target must decide the requests of every
/// accepted batch and answer them in batch order.
pub trait Target: Sync {
    /// The handle of an accepted batch.
    type Handle: Completion;

    /// Offer a batch without blocking. A target that has no room hands the batch back
    /// untouched in [`Refused::Full`] (back-pressure); the driver retries it later.
    fn try_submit(&self, batch: Vec<Request>) -> std::result::Result<Self::Handle, Refused>;
}

/// The decisions of one accepted batch, to come.
pub trait Completion: Send {
    /// Block until every decision of the batch is made; they come in batch order.
    fn wait(self) -> Result<Vec<Decision>>;
}

/// Why a target did not take a batch.
#[derive(Debug)]
pub enum Refused {
    /// No room now (a full queue): the batch comes back untouched; try again.
    Full(Vec<Request>),
    /// The target cannot take batches any more (shut down, failed).
    Failed(anyhow::Error),
}

impl Target for Engine {
    type Handle = Pending;

    fn try_submit(&self, batch: Vec<Request>) -> std::result::Result<Pending, Refused> {
        match Engine::try_submit(self, batch) {
            Ok(pending) => Ok(pending),
            Err(SubmitError::Full(batch)) => Err(Refused::Full(batch)),
            Err(SubmitError::ShutDown(_)) => Err(Refused::Failed(anyhow!(
                "the engine shut down during the replay"
            ))),
        }
    }
}

impl Completion for Pending {
    fn wait(self) -> Result<Vec<Decision>> {
        Pending::wait(self).context("waiting for decisions failed")
    }
}

/// An injected stall: the stand-in stops for `duration` before deciding the batch that
/// holds its request number `at_request` (0-based, counting every request it was given).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stall {
    /// The request, counted from 0 in submission order, whose batch waits for the stall.
    pub at_request: u64,
    /// How long the stand-in stops.
    pub duration: Duration,
}

/// How a [`StandIn`] behaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StandInConfig {
    /// Time the stand-in's single worker spends on each batch (a sleep; the OS may add tens
    /// of microseconds). Zero answers as fast as the worker can.
    pub service_time: Duration,
    /// Batches accepted and not yet started before `try_submit` answers `Full`; at least 1.
    /// Like the engine's `queue_depth`, this is what turns a stall into back-pressure.
    pub queue_batches: usize,
    /// An optional one-off stall.
    pub stall: Option<Stall>,
}

impl Default for StandInConfig {
    fn default() -> Self {
        StandInConfig {
            service_time: Duration::ZERO,
            queue_batches: 4,
            stall: None,
        }
    }
}

/// A stand-in target: one worker thread takes batches from a bounded queue in order, sleeps
/// [`StandInConfig::service_time`] per batch (and the stall once, if configured), and
/// approves everything (`00`). Its timing is known, so tests can tell what a correct
/// measurement must report.
pub struct StandIn {
    queue: Option<SyncSender<Job>>,
    worker: Option<JoinHandle<()>>,
    counters: Arc<Counters>,
}

/// A batch inside the stand-in: its request ids and where to answer.
struct Job {
    request_ids: Vec<u64>,
    reply: SyncSender<Vec<Decision>>,
}

#[derive(Default)]
struct Counters {
    /// Requests accepted and not yet answered.
    outstanding: AtomicU64,
    /// The most `outstanding` ever was.
    outstanding_max: AtomicU64,
    /// Requests answered.
    decided: AtomicU64,
}

/// The handle of a batch accepted by a [`StandIn`].
pub struct StandInHandle {
    reply: Receiver<Vec<Decision>>,
}

impl Completion for StandInHandle {
    fn wait(self) -> Result<Vec<Decision>> {
        self.reply
            .recv()
            .map_err(|_| anyhow!("the stand-in target stopped before answering"))
    }
}

impl StandIn {
    /// Start the worker thread.
    pub fn start(config: StandInConfig) -> Result<StandIn> {
        anyhow::ensure!(
            config.queue_batches >= 1,
            "a stand-in needs room for at least one batch"
        );
        let (queue, jobs) = mpsc::sync_channel::<Job>(config.queue_batches);
        let counters = Arc::new(Counters::default());
        let worker_counters = Arc::clone(&counters);
        let worker = std::thread::Builder::new()
            .name("payauth-standin".into())
            .spawn(move || serve(&config, &jobs, &worker_counters))
            .context("spawning the stand-in worker")?;
        Ok(StandIn {
            queue: Some(queue),
            worker: Some(worker),
            counters,
        })
    }

    /// The most requests that were ever accepted and not yet answered at once.
    pub fn outstanding_max(&self) -> u64 {
        self.counters.outstanding_max.load(Ordering::Acquire)
    }

    /// Requests answered so far.
    pub fn decided(&self) -> u64 {
        self.counters.decided.load(Ordering::Acquire)
    }
}

fn serve(config: &StandInConfig, jobs: &Receiver<Job>, counters: &Counters) {
    let mut given: u64 = 0;
    let mut stall = config.stall;
    for job in jobs {
        let len = job.request_ids.len() as u64;
        if let Some(s) = stall {
            if given + len > s.at_request {
                std::thread::sleep(s.duration);
                stall = None;
            }
        }
        given += len;
        if !config.service_time.is_zero() {
            std::thread::sleep(config.service_time);
        }
        let decisions = job
            .request_ids
            .iter()
            .map(|&request_id| Decision {
                request_id,
                code: Code::Approved,
            })
            .collect();
        counters.outstanding.fetch_sub(len, Ordering::AcqRel);
        counters.decided.fetch_add(len, Ordering::AcqRel);
        // A dropped handle is the caller's business.
        let _ = job.reply.send(decisions);
    }
}

impl Target for StandIn {
    type Handle = StandInHandle;

    fn try_submit(&self, batch: Vec<Request>) -> std::result::Result<StandInHandle, Refused> {
        let Some(queue) = &self.queue else {
            return Err(Refused::Failed(anyhow!("the stand-in is stopped")));
        };
        let (reply, rx) = mpsc::sync_channel(1);
        let len = batch.len() as u64;
        let job = Job {
            request_ids: batch.iter().map(|r| r.request_id).collect(),
            reply,
        };
        // Count before sending, so the worker never sees more answered than accepted.
        let now = self.counters.outstanding.fetch_add(len, Ordering::AcqRel) + len;
        match queue.try_send(job) {
            Ok(()) => {
                self.counters
                    .outstanding_max
                    .fetch_max(now, Ordering::AcqRel);
                Ok(StandInHandle { reply: rx })
            }
            Err(TrySendError::Full(_)) => {
                self.counters.outstanding.fetch_sub(len, Ordering::AcqRel);
                Err(Refused::Full(batch))
            }
            Err(TrySendError::Disconnected(_)) => {
                self.counters.outstanding.fetch_sub(len, Ordering::AcqRel);
                Err(Refused::Failed(anyhow!("the stand-in worker stopped")))
            }
        }
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        self.queue = None; // the worker finishes what is queued, then sees the queue close
        if let Some(worker) = self.worker.take() {
            let _ = worker.join();
        }
    }
}
