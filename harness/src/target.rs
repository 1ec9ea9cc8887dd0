//! What a measured replay drives: the [`Target`] trait (submit a batch without blocking, get a
//! completion handle), its implementation for the payauth [`Engine`], and [`StandIn`], a
//! target with a known, fixed service time (per batch, or per request on a pool of workers:
//! a known capacity) and an optional injected stall, for tests, capacity sweeps and for
//! checking the harness itself.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

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
///
/// Two models, chosen by [`StandInConfig::request_time`]:
/// - **per batch** (`request_time` zero, the default): one worker takes batches in order and
///   sleeps `service_time` on each;
/// - **per request** (`request_time` positive): `workers` servers, each request occupying
///   the first free one for exactly `request_time`, first come first served, from the
///   instant its batch was submitted; a batch is answered when its last request is done.
///   The stand-in keeps this schedule in virtual time and sleeps only until each answer is
///   due, so a late wake-up delays that answer but never the schedule: the capacity is
///   exactly `workers / request_time` requests per second, whatever the OS timer does, and
///   the stand-in costs almost no CPU (it is a fixed-service-time queue, D/c in Kendall's
///   notation, that a capacity sweep can be checked against).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StandInConfig {
    /// Per-batch model: time the stand-in's single worker spends on each batch (a sleep; the
    /// OS may add tens of microseconds). Zero answers as fast as the worker can.
    pub service_time: Duration,
    /// Per-request model: time one request occupies one worker; zero selects the per-batch
    /// model.
    pub request_time: Duration,
    /// Per-request model: servers working in parallel; at least 1.
    pub workers: usize,
    /// Per-batch model: batches accepted and not yet started before `try_submit` answers
    /// `Full`. Per-request model: batches accepted and not yet answered. At least 1. Like the
    /// engine's `queue_depth`, this is what turns a stall or an overload into back-pressure.
    pub queue_batches: usize,
    /// An optional one-off stall (in the per-request model, every worker stops).
    pub stall: Option<Stall>,
}

impl Default for StandInConfig {
    fn default() -> Self {
        StandInConfig {
            service_time: Duration::ZERO,
            request_time: Duration::ZERO,
            workers: 1,
            queue_batches: 4,
            stall: None,
        }
    }
}

impl StandInConfig {
    /// The per-request model's capacity, `workers / request_time` requests per second;
    /// `None` in the per-batch model (its capacity depends on the batch sizes).
    pub fn capacity_per_sec(&self) -> Option<f64> {
        (!self.request_time.is_zero())
            .then(|| self.workers as f64 / self.request_time.as_secs_f64())
    }
}

/// A stand-in target that approves everything (`00`) on a known schedule (see
/// [`StandInConfig`]), so tests can tell what a correct measurement must report.
pub struct StandIn {
    queue: Option<SyncSender<Job>>,
    worker: Option<JoinHandle<()>>,
    counters: Arc<Counters>,
    /// Per-request model: batches accepted and not yet answered, and its bound.
    in_flight: Option<(Arc<AtomicU64>, u64)>,
    /// Zero of the per-request model's virtual clock.
    epoch: Instant,
}

/// A batch inside the stand-in: its request ids, when it was submitted, and where to answer.
struct Job {
    request_ids: Vec<u64>,
    submit_ns: u64,
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
        anyhow::ensure!(
            (1..=STANDIN_WORKERS_MAX).contains(&config.workers),
            "stand-in workers {} is outside 1..={STANDIN_WORKERS_MAX}",
            config.workers
        );
        let (queue, jobs) = mpsc::sync_channel::<Job>(config.queue_batches);
        let counters = Arc::new(Counters::default());
        let worker_counters = Arc::clone(&counters);
        let epoch = Instant::now();
        let in_flight = (!config.request_time.is_zero())
            .then(|| (Arc::new(AtomicU64::new(0)), config.queue_batches as u64));
        let worker_in_flight = in_flight.as_ref().map(|(n, _)| Arc::clone(n));
        let worker = std::thread::Builder::new()
            .name("payauth-standin".into())
            .spawn(move || match worker_in_flight {
                Some(in_flight) => {
                    serve_per_request(&config, epoch, &jobs, &worker_counters, &in_flight)
                }
                None => serve(&config, &jobs, &worker_counters),
            })
            .context("spawning the stand-in worker")?;
        Ok(StandIn {
            queue: Some(queue),
            worker: Some(worker),
            counters,
            in_flight,
            epoch,
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

/// Most workers of a per-request stand-in.
pub const STANDIN_WORKERS_MAX: usize = 1 << 16;

fn approve_all(request_ids: &[u64]) -> Vec<Decision> {
    request_ids
        .iter()
        .map(|&request_id| Decision {
            request_id,
            code: Code::Approved,
        })
        .collect()
}

/// The per-request model: plan each batch on the virtual workers as it arrives, answer
/// batches in order once their last request is done. Start times never go down (first come
/// first served on the earliest free worker), so neither do the batches' done times, and one
/// queue in arrival order answers them in time order.
fn serve_per_request(
    config: &StandInConfig,
    epoch: Instant,
    jobs: &Receiver<Job>,
    counters: &Counters,
    in_flight: &AtomicU64,
) {
    let request_ns = u64::try_from(config.request_time.as_nanos()).unwrap_or(u64::MAX);
    // When each worker is next free, ns after `epoch`.
    let mut free: BinaryHeap<Reverse<u64>> = (0..config.workers).map(|_| Reverse(0)).collect();
    let mut planned: VecDeque<(u64, Job)> = VecDeque::new();
    let mut given: u64 = 0;
    let mut stall = config.stall;
    let mut open = true;
    while open || !planned.is_empty() {
        let now = now_ns(epoch);
        // Answer every batch that is done.
        while planned.front().is_some_and(|(done, _)| *done <= now) {
            let (_, job) = planned.pop_front().expect("checked");
            let len = job.request_ids.len() as u64;
            counters.outstanding.fetch_sub(len, Ordering::AcqRel);
            counters.decided.fetch_add(len, Ordering::AcqRel);
            in_flight.fetch_sub(1, Ordering::AcqRel);
            // A dropped handle is the caller's business.
            let _ = job.reply.send(approve_all(&job.request_ids));
        }
        let next = if !open {
            // No more jobs: sleep until the next answer is due.
            if let Some((done, _)) = planned.front() {
                std::thread::sleep(Duration::from_nanos(done.saturating_sub(now)));
            }
            continue;
        } else if let Some((done, _)) = planned.front() {
            match jobs.recv_timeout(Duration::from_nanos(done.saturating_sub(now))) {
                Ok(job) => job,
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => {
                    open = false;
                    continue;
                }
            }
        } else {
            match jobs.recv() {
                Ok(job) => job,
                Err(_) => {
                    open = false;
                    continue;
                }
            }
        };
        let len = next.request_ids.len() as u64;
        let mut arrival = next.submit_ns;
        if let Some(s) = stall {
            if given + len > s.at_request {
                // Every worker stops for the stall from the moment this batch arrives.
                let until = arrival.max(now_ns(epoch))
                    + u64::try_from(s.duration.as_nanos()).unwrap_or(u64::MAX);
                free = free
                    .into_iter()
                    .map(|Reverse(f)| Reverse(f.max(until)))
                    .collect();
                arrival = arrival.max(until);
                stall = None;
            }
        }
        given += len;
        let mut done = arrival;
        for _ in 0..len {
            let Reverse(at) = free.pop().expect("at least one worker");
            let end = at.max(arrival).saturating_add(request_ns);
            done = done.max(end);
            free.push(Reverse(end));
        }
        // Keep answers in arrival order even if a stall made a later plan earlier.
        if let Some((last, _)) = planned.back() {
            done = done.max(*last);
        }
        planned.push_back((done, next));
    }
}

fn now_ns(epoch: Instant) -> u64 {
    u64::try_from(epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
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
        let decisions = approve_all(&job.request_ids);
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
        // Per-request model: the bound is on batches not yet answered (the worker empties
        // the queue as batches arrive, to plan them).
        if let Some((in_flight, max)) = &self.in_flight {
            if in_flight.fetch_add(1, Ordering::AcqRel) >= *max {
                in_flight.fetch_sub(1, Ordering::AcqRel);
                return Err(Refused::Full(batch));
            }
        }
        let (reply, rx) = mpsc::sync_channel(1);
        let len = batch.len() as u64;
        let job = Job {
            request_ids: batch.iter().map(|r| r.request_id).collect(),
            submit_ns: now_ns(self.epoch),
            reply,
        };
        // Count before sending, so the worker never sees more answered than accepted.
        let now = self.counters.outstanding.fetch_add(len, Ordering::AcqRel) + len;
        let refused = |this: &StandIn| {
            this.counters.outstanding.fetch_sub(len, Ordering::AcqRel);
            if let Some((in_flight, _)) = &this.in_flight {
                in_flight.fetch_sub(1, Ordering::AcqRel);
            }
        };
        match queue.try_send(job) {
            Ok(()) => {
                self.counters
                    .outstanding_max
                    .fetch_max(now, Ordering::AcqRel);
                Ok(StandInHandle { reply: rx })
            }
            Err(TrySendError::Full(_)) => {
                refused(self);
                Err(Refused::Full(batch))
            }
            Err(TrySendError::Disconnected(_)) => {
                refused(self);
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
