//! Measured replay: drives a [`Target`] open loop (on a schedule computed from the recorded
//! timestamps or a fixed rate) or closed loop (a bounded number of requests outstanding),
//! and measures each request's latency from its *intended* send time, its service time from
//! its actual submit, and the sender's lag behind the schedule, in HdrHistograms kept per
//! thread and per interval and merged at the end.
//!
//! # How a run goes
//! - **The schedule** is a pure function of the request's position, fixed before the run:
//!   `--pace recorded` sends request `i` at `(ts_ns[i] - ts_ns[0]) / speed` after the start,
//!   `--rate R` at `i / R`. It never moves when the target is slow: that is what keeps
//!   coordinated omission out of the numbers.
//! - **The sender** (the calling thread) submits in traffic order. Open loop, it sleeps until
//!   the next request is due, then submits every request whose intended time has arrived as
//!   one batch of at most `submit_batch` requests. A target that pushes back
//!   ([`Refused::Full`]) gets the same batch again after a short back-off; the time spent so
//!   is counted as back-pressure, and the requests' latencies keep counting from their
//!   intended times. Closed loop, it submits as soon as fewer than `in_flight` requests are
//!   outstanding, at most `min(submit_batch, room)` at a time, so `in_flight` is never
//!   exceeded; a closed loop's intended time is its actual submit time.
//! - **Collectors** (`collectors` threads, batches dealt round robin) wait on the completion
//!   handles in submission order and take the decision time when a handle completes; every
//!   request of a batch shares its batch's decision and submit times. Each collector records
//!   into its own histograms; they are merged after the run.
//! - **Warmup**: requests intended (closed loop: submitted) before `warmup` after the start
//!   are replayed and decided but not recorded in any latency histogram, interval or rate.
//! - **Intervals** are cut by decision time, `interval` long, from the start of the run.
//!
//! Latency (decision − intended) includes the time a request waited for the sender; service
//! time (decision − actual submit) does not. Their difference is what a closed-loop or
//! coordinated-omission-prone client would hide.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, ensure, Context, Result};
use hdrhistogram::serialization::{Deserializer, Serializer, V2DeflateSerializer};
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};
use payauth_engine::{Decision, Request};

use crate::target::{Completion, Refused, Target};

/// Significant decimal digits every histogram keeps (0.1% value resolution).
pub const SIGFIG: u8 = 3;
/// Most requests the sender puts in one submitted batch, whatever the options say.
pub const SUBMIT_BATCH_MAX: usize = 1 << 20;
/// Most requests a closed loop may keep outstanding.
pub const IN_FLIGHT_MAX: usize = 1 << 24;
/// Most collector threads.
pub const COLLECTORS_MAX: usize = 64;
/// The shortest interval the per-interval histograms may be cut into.
pub const INTERVAL_MIN: Duration = Duration::from_millis(1);

/// The longest `linger`.
pub const LINGER_MAX: Duration = Duration::from_millis(10);
/// The default `linger`: a quarter of the 200 µs p99 the engine is held to; at 1M/s about
/// 50 requests a batch. Each submit costs the sender a sleep and the engine a wake-up or two
/// (several microseconds each on a VM), so a shorter one spends more CPU than it saves
/// latency.
pub const DEFAULT_LINGER: Duration = Duration::from_micros(50);

/// Below this much time to wait, the sender yields in a loop instead of sleeping: a sleep
/// costs a timer and a wake-up, and overshoots by the timer slack (see [`timer_slack`]).
/// Spinning longer would take a core from the engine on a small machine.
const SPIN_BELOW: Duration = Duration::from_micros(5);
/// The sender's back-off after a `Full` answer. The shard queues then hold `queue_depth`
/// batches each, far more work than this, so there is no hurry; yielding in a loop instead
/// cost more CPU (a reschedule each) on a busy machine.
const FULL_BACKOFF: Duration = Duration::from_micros(50);
/// How long a waiting closed-loop sender sleeps before it looks for a failed collector.
const WAIT_SLICE: Duration = Duration::from_millis(10);

/// How the sender paces the requests.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Mode {
    /// Open loop at the recorded `ts_ns`, `speed` times faster (`--pace recorded --speed X`).
    Recorded {
        /// Time compression: 2.0 plays one recorded second in half a second.
        speed: f64,
    },
    /// Open loop at a fixed rate, whatever the recorded timestamps (`--rate R`).
    Rate {
        /// Requests per second.
        per_sec: f64,
    },
    /// Closed loop: as fast as the target answers, with at most `in_flight` requests
    /// submitted and not yet decided (`--closed-loop --in-flight N`).
    ClosedLoop {
        /// Most requests outstanding at once.
        in_flight: usize,
    },
}

impl Mode {
    /// The mode's name in reports: `recorded`, `rate` or `closed-loop`.
    pub fn name(&self) -> &'static str {
        match self {
            Mode::Recorded { .. } => "recorded",
            Mode::Rate { .. } => "rate",
            Mode::ClosedLoop { .. } => "closed-loop",
        }
    }

    /// Whether requests are sent on a schedule (open loop).
    pub fn is_open_loop(&self) -> bool {
        !matches!(self, Mode::ClosedLoop { .. })
    }
}

/// How a measured run goes; see the module docs.
#[derive(Clone, Debug, PartialEq)]
pub struct MeasureOptions {
    /// Pacing.
    pub mode: Mode,
    /// Leading period not recorded.
    pub warmup: Duration,
    /// Most requests per submitted batch. Default 256.
    pub submit_batch: usize,
    /// Open loop: the least time between two submits (unless `submit_batch` requests are
    /// due): requests due meanwhile wait and go in one batch. Longer means fewer, bigger
    /// batches (less handoff cost per request) for at most this much added latency.
    /// Default 50 µs.
    pub linger: Duration,
    /// Collector threads. Default 1.
    pub collectors: usize,
    /// Length of the per-interval histograms. Default 1 s.
    pub interval: Duration,
    /// Show a progress bar on stderr. Default: when stdout and stderr are both terminals.
    pub progress: bool,
    /// The sender is behind its schedule when its p99 lag exceeds this. Default 1 ms.
    pub lag_p99_max: Duration,
    /// ... or when it offered less than this share of the target rate. Default 0.99.
    pub offered_share_min: f64,
}

impl MeasureOptions {
    /// The defaults for `mode`.
    pub fn new(mode: Mode) -> MeasureOptions {
        MeasureOptions {
            mode,
            warmup: Duration::ZERO,
            submit_batch: 256,
            linger: DEFAULT_LINGER,
            collectors: 1,
            interval: Duration::from_secs(1),
            progress: std::io::stdout().is_terminal() && std::io::stderr().is_terminal(),
            lag_p99_max: Duration::from_millis(1),
            offered_share_min: 0.99,
        }
    }

    /// Check every limit; the message names the option.
    pub fn validate(&self) -> Result<()> {
        match self.mode {
            Mode::Recorded { speed } => ensure!(
                speed.is_finite() && speed > 0.0,
                "--speed must be a positive number, not {speed}"
            ),
            Mode::Rate { per_sec } => ensure!(
                per_sec.is_finite() && per_sec > 0.0,
                "--rate must be a positive number of requests per second, not {per_sec}"
            ),
            Mode::ClosedLoop { in_flight } => ensure!(
                (1..=IN_FLIGHT_MAX).contains(&in_flight),
                "--in-flight {in_flight} is outside 1..={IN_FLIGHT_MAX}"
            ),
        }
        ensure!(
            (1..=SUBMIT_BATCH_MAX).contains(&self.submit_batch),
            "--submit-batch {} is outside 1..={SUBMIT_BATCH_MAX}",
            self.submit_batch
        );
        ensure!(
            self.linger <= LINGER_MAX,
            "--linger must be at most {LINGER_MAX:?}"
        );
        ensure!(
            (1..=COLLECTORS_MAX).contains(&self.collectors),
            "--collectors {} is outside 1..={COLLECTORS_MAX}",
            self.collectors
        );
        ensure!(
            self.interval >= INTERVAL_MIN,
            "--interval must be at least {INTERVAL_MIN:?}"
        );
        ensure!(
            (0.0..=1.0).contains(&self.offered_share_min),
            "the offered share threshold must be within 0..=1"
        );
        Ok(())
    }
}

/// When each request should be sent, in ns after the start of the run.
#[derive(Clone, Copy, Debug)]
enum Schedule {
    Recorded { ts0_ns: i64, speed: f64 },
    Rate { per_sec: f64 },
    None,
}

impl Schedule {
    fn new(mode: Mode, traffic: &[Request]) -> Schedule {
        match mode {
            Mode::Recorded { speed } => Schedule::Recorded {
                ts0_ns: traffic.first().map_or(0, |r| r.ts_ns),
                speed,
            },
            Mode::Rate { per_sec } => Schedule::Rate { per_sec },
            Mode::ClosedLoop { .. } => Schedule::None,
        }
    }

    /// Intended send time of request `i`, or `None` in a closed loop.
    fn at(&self, traffic: &[Request], i: usize) -> Option<u64> {
        match *self {
            // ts_ns never goes down (DOMAIN.md), so the difference is not negative.
            Schedule::Recorded { ts0_ns, speed } => {
                let since = traffic[i].ts_ns.saturating_sub(ts0_ns).max(0);
                Some((since as f64 / speed) as u64)
            }
            Schedule::Rate { per_sec } => Some((i as f64 * 1e9 / per_sec) as u64),
            Schedule::None => None,
        }
    }
}

/// One interval's histograms (measured requests only, by decision time).
#[derive(Clone, Debug)]
pub struct Interval {
    /// Start of the interval, ns after the start of the run.
    pub start_ns: u64,
    /// Latency (decision − intended send), ns.
    pub latency: Histogram<u64>,
    /// Service time (decision − actual submit), ns.
    pub service: Histogram<u64>,
}

/// What a measured run saw; rates and the schedule verdict are derived from it.
#[derive(Clone, Debug)]
pub struct Measurement {
    /// The decisions, in traffic order (one per request).
    pub decisions: Vec<Decision>,
    /// Latency of every measured request (decision − intended send), ns.
    pub latency: Histogram<u64>,
    /// Service time of every measured request (decision − actual submit), ns.
    pub service: Histogram<u64>,
    /// Sender lag of every measured request (actual submit − intended send), ns; empty in a
    /// closed loop.
    pub sender_lag: Histogram<u64>,
    /// Per-interval histograms, in time order; intervals with no measured decision are
    /// left out.
    pub intervals: Vec<Interval>,
    /// Requests submitted per interval (all of them, warmup included), by submit time.
    pub offered_per_interval: Vec<u64>,
    /// Requests decided per interval (all of them, warmup included), by decision time.
    pub decided_per_interval: Vec<u64>,
    /// Counters and instants of the run.
    pub stats: RunStats,
    /// Wall-clock time of the start of the run (zero of every `*_ns` offset).
    pub started_at: SystemTime,
}

/// Counters and instants of a run; every `*_ns` is ns after the start of the run, over the
/// measured requests.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RunStats {
    /// The mode the run used.
    pub mode: Option<Mode>,
    /// Requests replayed.
    pub requests: u64,
    /// Requests measured (not in the warmup).
    pub measured: u64,
    /// The warmup, ns.
    pub warmup_ns: u64,
    /// The interval, ns.
    pub interval_ns: u64,
    /// Batches submitted.
    pub batches: u64,
    /// Intended send time of the first measured request.
    pub first_intended_ns: u64,
    /// Intended send time of the last measured request.
    pub last_intended_ns: u64,
    /// Actual submit time of the first measured request.
    pub first_submit_ns: u64,
    /// Actual submit time of the last measured request.
    pub last_submit_ns: u64,
    /// Decision time of the last measured request to be decided.
    pub last_decided_ns: u64,
    /// End of the run (every request decided).
    pub elapsed_ns: u64,
    /// Times the target answered `Full`.
    pub full_answers: u64,
    /// Time the sender spent waiting for a target that answered `Full`, ns.
    pub backpressure_ns: u64,
    /// The most requests submitted and not yet seen decided at once.
    pub outstanding_max: u64,
}

impl RunStats {
    /// The rate the schedule asked for, over the measured requests: the configured rate, or
    /// the recorded traffic's mean rate times the speed; `None` in a closed loop.
    pub fn target_rate_per_sec(&self) -> Option<f64> {
        match self.mode? {
            Mode::Rate { per_sec } => Some(per_sec),
            Mode::Recorded { .. } => {
                rate(self.measured, self.first_intended_ns, self.last_intended_ns)
            }
            Mode::ClosedLoop { .. } => None,
        }
    }

    /// The rate actually offered: measured requests over the time from the first one's
    /// intended send (closed loop: its submit) to the last one's actual submit. A sender
    /// that fell behind shows here, not in the target rate.
    pub fn offered_rate_per_sec(&self) -> Option<f64> {
        rate(self.measured, self.window_start_ns(), self.last_submit_ns)
    }

    /// Decisions per second: measured requests over the time from the first one's intended
    /// send (closed loop: its submit) to the last one's decision.
    pub fn throughput_per_sec(&self) -> Option<f64> {
        let span_ns = self.last_decided_ns.saturating_sub(self.window_start_ns());
        (self.measured > 0 && span_ns > 0).then(|| self.measured as f64 * 1e9 / span_ns as f64)
    }

    fn window_start_ns(&self) -> u64 {
        if self.mode.is_some_and(|m| m.is_open_loop()) {
            self.first_intended_ns
        } else {
            self.first_submit_ns
        }
    }
}

/// `n` events from the first at `first_ns` to the last at `last_ns`: `n - 1` gaps.
fn rate(n: u64, first_ns: u64, last_ns: u64) -> Option<f64> {
    let span_ns = last_ns.saturating_sub(first_ns);
    (n > 1 && span_ns > 0).then(|| (n - 1) as f64 * 1e9 / span_ns as f64)
}

/// Drive `traffic` through `target` as `opts` says and measure it.
///
/// Every request is submitted exactly once, in traffic order, so a target that applies
/// accepted batches in order (the engine does) decides exactly as an unmeasured replay.
pub fn drive<T: Target>(
    target: &T,
    traffic: &[Request],
    opts: &MeasureOptions,
) -> Result<Measurement> {
    opts.validate()?;
    let schedule = Schedule::new(opts.mode, traffic);
    let warmup_ns = duration_ns(opts.warmup);
    // Open loop, the measured requests are the suffix intended at or after the warmup.
    let measured_from = match schedule {
        Schedule::None => Some(0),
        _ => (0..traffic.len()).find(|&i| schedule.at(traffic, i) >= Some(warmup_ns)),
    }
    .unwrap_or(traffic.len());
    ensure!(
        traffic.is_empty() || measured_from < traffic.len(),
        "the warmup of {:?} covers the whole schedule: no request would be measured",
        opts.warmup
    );

    let progress = progress_bar(opts.progress, traffic.len() as u64);
    let shared = Shared {
        traffic,
        schedule,
        warmup_ns,
        interval_ns: duration_ns(opts.interval),
        outstanding: AtomicU64::new(0),
        abort: AtomicBool::new(false),
        room: (Mutex::new(()), Condvar::new()),
        closed_loop: !opts.mode.is_open_loop(),
        progress: progress.clone(),
    };
    let started_at = SystemTime::now();
    let start = Instant::now();

    let (sent, collected) = std::thread::scope(|scope| {
        let mut queues = Vec::with_capacity(opts.collectors);
        let mut collectors = Vec::with_capacity(opts.collectors);
        for c in 0..opts.collectors {
            let (tx, rx) = mpsc::channel::<Job<T::Handle>>();
            queues.push(tx);
            let shared = &shared;
            let handle = std::thread::Builder::new()
                .name(format!("payauth-collector-{c}"))
                .spawn_scoped(scope, move || {
                    let result = collect(shared, start, rx);
                    if result.is_err() {
                        shared.abort.store(true, Ordering::Release);
                        shared.notify_room();
                    }
                    result
                })
                .context("spawning a collector thread");
            collectors.push(handle);
        }
        let sent = if collectors.iter().all(|c| c.is_ok()) {
            send(target, &shared, start, opts, measured_from, queues)
        } else {
            drop(queues);
            Err(anyhow::anyhow!("could not start the collectors"))
        };
        let collected: Vec<Result<Collected>> = collectors
            .into_iter()
            .map(|c| match c {
                Ok(h) => h
                    .join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("a collector thread panicked"))),
                Err(e) => Err(e),
            })
            .collect();
        (sent, collected)
    });
    let elapsed_ns = duration_ns(start.elapsed());
    progress.finish_and_clear();

    // A collector's failure is the cause; the sender's error is then only a consequence.
    let mut parts = Vec::with_capacity(collected.len());
    for c in collected {
        parts.push(c?);
    }
    let sent = sent?;
    merge(traffic.len(), opts, sent, parts, elapsed_ns, started_at)
}

/// State the sender and the collectors share.
struct Shared<'a> {
    traffic: &'a [Request],
    schedule: Schedule,
    warmup_ns: u64,
    interval_ns: u64,
    /// Requests submitted and not yet seen decided by a collector.
    outstanding: AtomicU64,
    /// A collector failed: the sender stops.
    abort: AtomicBool,
    /// A closed-loop sender waits here for room.
    room: (Mutex<()>, Condvar),
    closed_loop: bool,
    progress: ProgressBar,
}

impl Shared<'_> {
    fn notify_room(&self) {
        let (lock, cv) = &self.room;
        let _guard = lock.lock().unwrap_or_else(|e| e.into_inner());
        cv.notify_all();
    }

    fn interval_of(&self, ns: u64) -> usize {
        (ns / self.interval_ns) as usize
    }
}

/// A submitted batch on its way to a collector.
struct Job<H> {
    /// Traffic index of the batch's first request.
    first: usize,
    len: usize,
    submit_ns: u64,
    handle: H,
}

/// What the sender saw.
struct Sent {
    lag: Histogram<u64>,
    offered_per_interval: Vec<u64>,
    batches: u64,
    measured: u64,
    first_intended_ns: u64,
    last_intended_ns: u64,
    first_submit_ns: u64,
    last_submit_ns: u64,
    full_answers: u64,
    backpressure_ns: u64,
    outstanding_max: u64,
}

/// What one collector saw.
struct Collected {
    /// (traffic index of the batch's first request, its decisions)
    decisions: Vec<(usize, Vec<Decision>)>,
    latency: Histogram<u64>,
    service: Histogram<u64>,
    /// (interval index, V2 deflate latency histogram, V2 deflate service histogram): closed
    /// intervals are kept compressed, so a long run costs little memory.
    intervals: Vec<(usize, Vec<u8>, Vec<u8>)>,
    decided_per_interval: Vec<u64>,
    measured: u64,
    last_decided_ns: u64,
}

fn histogram() -> Histogram<u64> {
    Histogram::new(SIGFIG).expect("3 significant figures is a valid histogram")
}

/// Record `n` of `value`, growing the histogram as needed (its `saturating_*` calls would
/// clamp to the current top instead); a value beyond what any histogram holds (2^62 ns, a
/// century) is clamped.
fn record_n(h: &mut Histogram<u64>, value: u64, n: u64) {
    if h.record_n(value, n).is_err() {
        h.saturating_record_n(value, n);
    }
}

fn duration_ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

fn now_ns(start: Instant) -> u64 {
    duration_ns(start.elapsed())
}

fn bump(counts: &mut Vec<u64>, index: usize, n: u64) {
    if counts.len() <= index {
        counts.resize(index + 1, 0);
    }
    counts[index] += n;
}

/// Sleep (or, close to the time, yield) until `due_ns` after `start`. The sender's timer
/// slack is set to [`crate::timerslack::SENDER_SLACK_NS`] (see [`send`]), so a sleep ends within
/// microseconds of its time rather than the default 50 µs later.
fn wait_until(start: Instant, due_ns: u64) {
    loop {
        let now = now_ns(start);
        if now >= due_ns {
            return;
        }
        let left = Duration::from_nanos(due_ns - now);
        if left < SPIN_BELOW {
            std::thread::yield_now();
        } else {
            std::thread::sleep(left);
        }
    }
}

/// The sender: the calling thread.
fn send<T: Target>(
    target: &T,
    shared: &Shared<'_>,
    start: Instant,
    opts: &MeasureOptions,
    measured_from: usize,
    queues: Vec<mpsc::Sender<Job<T::Handle>>>,
) -> Result<Sent> {
    let traffic = shared.traffic;
    let n = traffic.len();
    let mut sent = Sent {
        lag: histogram(),
        offered_per_interval: Vec::new(),
        batches: 0,
        measured: 0,
        first_intended_ns: 0,
        last_intended_ns: 0,
        first_submit_ns: 0,
        last_submit_ns: 0,
        full_answers: 0,
        backpressure_ns: 0,
        outstanding_max: 0,
    };
    let in_flight = match opts.mode {
        Mode::ClosedLoop { in_flight } => in_flight as u64,
        _ => u64::MAX,
    };
    // Open loop, the sender sleeps for tens of microseconds at a time: with the default
    // timer slack each sleep would overshoot by about 50 µs, more than the linger.
    if !shared.closed_loop {
        crate::timerslack::set(crate::timerslack::SENDER_SLACK_NS);
    }
    let linger_ns = duration_ns(opts.linger);
    let mut last_submit_ns: Option<u64> = None;
    let mut i = 0;
    while i < n {
        if shared.abort.load(Ordering::Acquire) {
            bail!("the run stopped: a collector failed");
        }
        // How many to send now.
        let len = if shared.closed_loop {
            let out = shared.outstanding.load(Ordering::Acquire);
            if out >= in_flight {
                let (lock, cv) = &shared.room;
                let guard = lock.lock().unwrap_or_else(|e| e.into_inner());
                if shared.outstanding.load(Ordering::Acquire) >= in_flight {
                    let _ = cv.wait_timeout(guard, WAIT_SLICE);
                }
                continue;
            }
            ((in_flight - out) as usize)
                .min(opts.submit_batch)
                .min(n - i)
        } else {
            // Go when the next request is due, but not sooner than `linger` after the last
            // submit, unless a full batch (or the rest of the traffic) is due by then.
            let at = |k: usize| shared.schedule.at(traffic, k).expect("open loop");
            let cap = (n - i).min(opts.submit_batch);
            let due = at(i);
            let go = match last_submit_ns {
                Some(last) => due.max((last + linger_ns).min(at(i + cap - 1))),
                None => due,
            };
            let now = now_ns(start);
            if go > now {
                wait_until(start, go);
                continue;
            }
            // Everything already due, up to the batch cap.
            let mut len = 1;
            while len < cap && shared.schedule.at(traffic, i + len).expect("open loop") <= now {
                len += 1;
            }
            len
        };

        let mut batch = traffic[i..i + len].to_vec();
        let mut full_since: Option<u64> = None;
        let (handle, submit_ns) = loop {
            let attempt_ns = now_ns(start);
            match target.try_submit(batch) {
                Ok(h) => break (h, attempt_ns),
                Err(Refused::Full(back)) => {
                    batch = back;
                    sent.full_answers += 1;
                    full_since.get_or_insert(attempt_ns);
                    if shared.abort.load(Ordering::Acquire) {
                        bail!("the run stopped: a collector failed");
                    }
                    std::thread::sleep(FULL_BACKOFF);
                }
                Err(Refused::Failed(e)) => return Err(e),
            }
        };
        if let Some(since) = full_since {
            sent.backpressure_ns += submit_ns.saturating_sub(since);
        }
        last_submit_ns = Some(submit_ns);
        let before = shared.outstanding.fetch_add(len as u64, Ordering::AcqRel);
        sent.outstanding_max = sent.outstanding_max.max(before + len as u64);
        sent.batches += 1;
        bump(
            &mut sent.offered_per_interval,
            shared.interval_of(submit_ns),
            len as u64,
        );

        // Sender statistics over the measured requests.
        for k in i..i + len {
            let (measured, intended) = match shared.schedule.at(traffic, k) {
                Some(at) => (k >= measured_from, at),
                None => (submit_ns >= shared.warmup_ns, submit_ns),
            };
            if !measured {
                continue;
            }
            if sent.measured == 0 {
                sent.first_intended_ns = intended;
                sent.first_submit_ns = submit_ns;
            }
            sent.measured += 1;
            sent.last_intended_ns = intended;
            sent.last_submit_ns = submit_ns;
            if !shared.closed_loop {
                record_n(&mut sent.lag, submit_ns.saturating_sub(intended), 1);
            }
        }

        let job = Job {
            first: i,
            len,
            submit_ns,
            handle,
        };
        let c = (sent.batches - 1) as usize % queues.len();
        if queues[c].send(job).is_err() {
            bail!("the run stopped: a collector failed");
        }
        i += len;
    }
    Ok(sent)
}

/// A collector: wait on each handle in turn, timestamp, record.
fn collect<H: Completion>(
    shared: &Shared<'_>,
    start: Instant,
    jobs: mpsc::Receiver<Job<H>>,
) -> Result<Collected> {
    let mut out = Collected {
        decisions: Vec::new(),
        latency: histogram(),
        service: histogram(),
        intervals: Vec::new(),
        decided_per_interval: Vec::new(),
        measured: 0,
        last_decided_ns: 0,
    };
    let mut current: Option<(usize, Histogram<u64>, Histogram<u64>)> = None;
    let mut serializer = V2DeflateSerializer::new();
    for job in jobs {
        let got = job.handle.wait()?;
        let done_ns = now_ns(start);
        let reqs = &shared.traffic[job.first..job.first + job.len];
        check(reqs, &got, job.first)?;
        shared
            .outstanding
            .fetch_sub(job.len as u64, Ordering::AcqRel);
        if shared.closed_loop {
            shared.notify_room();
        }
        shared.progress.inc(job.len as u64);

        let index = shared.interval_of(done_ns);
        bump(&mut out.decided_per_interval, index, job.len as u64);
        if current.as_ref().is_some_and(|(at, _, _)| *at != index) {
            let (at, lat, svc) = current.take().expect("checked");
            close_interval(&mut out, &mut serializer, at, &lat, &svc)?;
        }
        let (_, lat_i, svc_i) = current.get_or_insert_with(|| (index, histogram(), histogram()));

        let service_ns = done_ns.saturating_sub(job.submit_ns);
        let mut measured = 0;
        for k in job.first..job.first + job.len {
            let intended = match shared.schedule.at(shared.traffic, k) {
                Some(at) if at >= shared.warmup_ns => at,
                Some(_) => continue,
                None if job.submit_ns >= shared.warmup_ns => job.submit_ns,
                None => continue,
            };
            // Into the interval's histogram only: the run's total is the sum of its
            // intervals, added up once per interval (one record per request, not two).
            record_n(lat_i, done_ns.saturating_sub(intended), 1);
            measured += 1;
        }
        if measured > 0 {
            record_n(svc_i, service_ns, measured);
            out.measured += measured;
            out.last_decided_ns = out.last_decided_ns.max(done_ns);
        }
        out.decisions.push((job.first, got));
    }
    if let Some((at, lat, svc)) = current {
        close_interval(&mut out, &mut serializer, at, &lat, &svc)?;
    }
    Ok(out)
}

/// Add a finished interval's histograms to the collector's totals and keep them compressed.
fn close_interval(
    out: &mut Collected,
    serializer: &mut V2DeflateSerializer,
    at: usize,
    latency: &Histogram<u64>,
    service: &Histogram<u64>,
) -> Result<()> {
    out.latency.add(latency).context("merging histograms")?;
    out.service.add(service).context("merging histograms")?;
    out.intervals
        .push(compress(serializer, at, latency, service)?);
    Ok(())
}

fn compress(
    serializer: &mut V2DeflateSerializer,
    at: usize,
    latency: &Histogram<u64>,
    service: &Histogram<u64>,
) -> Result<(usize, Vec<u8>, Vec<u8>)> {
    let mut lat = Vec::new();
    let mut svc = Vec::new();
    serializer
        .serialize(latency, &mut lat)
        .map_err(|e| anyhow::anyhow!("compressing an interval histogram: {e:?}"))?;
    serializer
        .serialize(service, &mut svc)
        .map_err(|e| anyhow::anyhow!("compressing an interval histogram: {e:?}"))?;
    Ok((at, lat, svc))
}

fn decompress(deserializer: &mut Deserializer, bytes: &[u8]) -> Result<Histogram<u64>> {
    deserializer
        .deserialize(&mut &bytes[..])
        .map_err(|e| anyhow::anyhow!("reading back an interval histogram: {e:?}"))
}

/// A batch's decisions must answer its requests one for one.
fn check(reqs: &[Request], got: &[Decision], first: usize) -> Result<()> {
    ensure!(
        got.len() == reqs.len(),
        "the target answered {} decisions to a batch of {} requests",
        got.len(),
        reqs.len()
    );
    if let Some((i, (r, d))) = reqs
        .iter()
        .zip(got)
        .enumerate()
        .find(|(_, (r, d))| r.request_id != d.request_id)
    {
        bail!(
            "a decision answers request_id {} but the request (seq {}) has {}",
            d.request_id,
            first + i,
            r.request_id
        );
    }
    Ok(())
}

/// Put the sender's and the collectors' views together.
fn merge(
    requests: usize,
    opts: &MeasureOptions,
    sent: Sent,
    parts: Vec<Collected>,
    elapsed_ns: u64,
    started_at: SystemTime,
) -> Result<Measurement> {
    let mut latency = histogram();
    let mut service = histogram();
    let mut decided_per_interval: Vec<u64> = Vec::new();
    let mut by_interval: std::collections::BTreeMap<usize, (Histogram<u64>, Histogram<u64>)> =
        std::collections::BTreeMap::new();
    let mut batches = Vec::new();
    let mut measured = 0;
    let mut last_decided_ns = 0;
    let mut deserializer = Deserializer::new();
    for part in parts {
        latency.add(&part.latency).context("merging histograms")?;
        service.add(&part.service).context("merging histograms")?;
        for (i, n) in part.decided_per_interval.iter().enumerate() {
            bump(&mut decided_per_interval, i, *n);
        }
        for (at, lat, svc) in &part.intervals {
            let entry = by_interval
                .entry(*at)
                .or_insert_with(|| (histogram(), histogram()));
            entry
                .0
                .add(decompress(&mut deserializer, lat)?)
                .context("merging interval histograms")?;
            entry
                .1
                .add(decompress(&mut deserializer, svc)?)
                .context("merging interval histograms")?;
        }
        measured += part.measured;
        last_decided_ns = last_decided_ns.max(part.last_decided_ns);
        batches.extend(part.decisions);
    }
    ensure!(
        measured == sent.measured,
        "the collectors measured {measured} requests but the sender {}",
        sent.measured
    );
    batches.sort_unstable_by_key(|(first, _)| *first);
    let mut decisions = Vec::with_capacity(requests);
    for (first, got) in batches {
        ensure!(
            first == decisions.len(),
            "decisions missing before seq {first}"
        );
        decisions.extend(got);
    }
    ensure!(
        decisions.len() == requests,
        "{} decisions for {requests} requests",
        decisions.len()
    );
    let interval_ns = duration_ns(opts.interval);
    let intervals = by_interval
        .into_iter()
        .filter(|(_, (lat, _))| !lat.is_empty())
        .map(|(at, (latency, service))| Interval {
            start_ns: at as u64 * interval_ns,
            latency,
            service,
        })
        .collect();
    Ok(Measurement {
        decisions,
        latency,
        service,
        sender_lag: sent.lag,
        intervals,
        offered_per_interval: sent.offered_per_interval,
        decided_per_interval,
        stats: RunStats {
            mode: Some(opts.mode),
            requests: requests as u64,
            measured,
            warmup_ns: duration_ns(opts.warmup),
            interval_ns,
            batches: sent.batches,
            first_intended_ns: sent.first_intended_ns,
            last_intended_ns: sent.last_intended_ns,
            first_submit_ns: sent.first_submit_ns,
            last_submit_ns: sent.last_submit_ns,
            last_decided_ns,
            elapsed_ns,
            full_answers: sent.full_answers,
            backpressure_ns: sent.backpressure_ns,
            outstanding_max: sent.outstanding_max,
        },
        started_at,
    })
}

fn progress_bar(show: bool, len: u64) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
    let style = ProgressStyle::with_template(
        "{elapsed_precise} [{bar:40}] {human_pos}/{human_len} decided, {rate}, eta {eta}",
    )
    .map(|s| {
        s.progress_chars("=> ").with_key(
            "rate",
            |state: &ProgressState, w: &mut dyn std::fmt::Write| {
                let _ = write!(w, "{:.0}/s", state.per_sec());
            },
        )
    })
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar
}

/// Whether the sender kept to its schedule, and if not, why; open loop only.
#[derive(Clone, Debug, PartialEq)]
pub struct ScheduleCheck {
    /// The sender kept up: p99 lag within the limit and the offered rate at least the
    /// required share of the target.
    pub kept: bool,
    /// A plain sentence for the summary and the report.
    pub message: String,
}

impl Measurement {
    /// Judge the sender against its schedule (`None` in a closed loop, which has none).
    pub fn schedule_check(&self, opts: &MeasureOptions) -> Option<ScheduleCheck> {
        if !opts.mode.is_open_loop() {
            return None;
        }
        let s = &self.stats;
        let lag_p99_ns = self.sender_lag.value_at_quantile(0.99);
        let lag_max_ns = duration_ns(opts.lag_p99_max);
        let target = s.target_rate_per_sec();
        let offered = s.offered_rate_per_sec();
        let share = match (target, offered) {
            (Some(t), Some(o)) if t > 0.0 => Some(o / t),
            _ => None,
        };
        let lag_ok = lag_p99_ns <= lag_max_ns;
        let rate_ok = share.is_none_or(|x| x >= opts.offered_share_min);
        if lag_ok && rate_ok {
            return Some(ScheduleCheck {
                kept: true,
                message: format!(
                    "the sender kept to its schedule (p99 lag {} <= {})",
                    fmt_ns(lag_p99_ns),
                    fmt_ns(lag_max_ns)
                ),
            });
        }
        let mut why = Vec::new();
        if !lag_ok {
            why.push(format!(
                "p99 lag {} > {}",
                fmt_ns(lag_p99_ns),
                fmt_ns(lag_max_ns)
            ));
        }
        if let (Some(t), Some(o), Some(x)) = (target, offered, share) {
            if !rate_ok {
                why.push(format!(
                    "offered {o:.0}/s is {:.1}% of the target {t:.0}/s",
                    x * 100.0
                ));
            }
        }
        let cause = if s.backpressure_ns > 0 {
            format!(
                "the target pushed back (queue full) {} times for {} in all: it did not take \
                 the load as offered",
                s.full_answers,
                fmt_ns(s.backpressure_ns)
            )
        } else {
            "the target never pushed back, so the harness itself could not keep up \
             (CPU starved or too slow)"
                .to_string()
        };
        let consequence = if rate_ok {
            "The target rate was offered on average, but late; latencies still count from \
             the intended send times, so the lateness is in them."
        } else {
            "The target rate was NOT offered: read the offered rate, not the target. \
             Latencies still count from the intended send times."
        };
        Some(ScheduleCheck {
            kept: false,
            message: format!(
                "THE SENDER FELL BEHIND ITS SCHEDULE ({}); {cause}. {consequence}",
                why.join("; ")
            ),
        })
    }
}

/// Parse a duration as given on the command line: a number and a unit, `ns`, `us`, `ms`,
/// `s`, `m` or `h` (`500ms`, `2s`, `1.5m`); a bare number is seconds.
pub fn parse_duration(text: &str) -> std::result::Result<Duration, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration such as 500ms, 2s or 1m"))?;
    let ns_per_unit = match unit.trim() {
        "ns" => 1.0,
        "us" | "µs" => 1e3,
        "ms" => 1e6,
        "" | "s" => 1e9,
        "m" | "min" => 60e9,
        "h" => 3600e9,
        other => return Err(format!("{other:?} is not a unit (ns, us, ms, s, m, h)")),
    };
    let ns = value * ns_per_unit;
    if !ns.is_finite() || ns < 0.0 || ns > u64::MAX as f64 {
        return Err(format!("{text:?} is out of range"));
    }
    Ok(Duration::from_nanos(ns.round() as u64))
}

/// A duration in ns, for people: `850 ns`, `12.3 µs`, `4.56 ms`, `1.20 s`.
pub fn fmt_ns(ns: u64) -> String {
    let x = ns as f64;
    if ns < 1_000 {
        format!("{ns} ns")
    } else if ns < 1_000_000 {
        format!("{:.1} µs", x / 1e3)
    } else if ns < 1_000_000_000 {
        format!("{:.2} ms", x / 1e6)
    } else {
        format!("{:.2} s", x / 1e9)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use payauth_engine::Kind;

    fn traffic(ts: &[i64]) -> Vec<Request> {
        ts.iter()
            .enumerate()
            .map(|(i, &t)| Request::new(Kind::Credit, i as u64, t))
            .collect()
    }

    #[test]
    fn schedules() {
        let t = traffic(&[1_000, 1_000, 3_000, 11_000]);
        let rec = Schedule::new(Mode::Recorded { speed: 2.0 }, &t);
        let at: Vec<_> = (0..4).map(|i| rec.at(&t, i)).collect();
        assert_eq!(at, [Some(0), Some(0), Some(1_000), Some(5_000)]);
        let rate = Schedule::new(Mode::Rate { per_sec: 1000.0 }, &t);
        assert_eq!(rate.at(&t, 3), Some(3_000_000));
        let closed = Schedule::new(Mode::ClosedLoop { in_flight: 4 }, &t);
        assert_eq!(closed.at(&t, 3), None);
    }

    #[test]
    fn rates() {
        let s = RunStats {
            mode: Some(Mode::Rate { per_sec: 100.0 }),
            measured: 11,
            first_intended_ns: 0,
            last_intended_ns: 100_000_000,
            first_submit_ns: 1_000,
            last_submit_ns: 200_000_000,
            last_decided_ns: 220_000_000,
            ..RunStats::default()
        };
        assert_eq!(s.target_rate_per_sec(), Some(100.0));
        assert_eq!(s.offered_rate_per_sec(), Some(50.0));
        assert_eq!(s.throughput_per_sec(), Some(50.0));
        let rec = RunStats {
            mode: Some(Mode::Recorded { speed: 1.0 }),
            ..s.clone()
        };
        assert_eq!(rec.target_rate_per_sec(), Some(100.0));
        let closed = RunStats {
            mode: Some(Mode::ClosedLoop { in_flight: 1 }),
            ..s
        };
        assert_eq!(closed.target_rate_per_sec(), None);
        assert!((closed.offered_rate_per_sec().unwrap() - 1e10 / 199_999_000.0).abs() < 1e-9);
    }

    #[test]
    fn options_are_checked() {
        let mut o = MeasureOptions::new(Mode::Rate { per_sec: 0.0 });
        assert!(o.validate().is_err());
        o.mode = Mode::Recorded { speed: f64::NAN };
        assert!(o.validate().is_err());
        o.mode = Mode::ClosedLoop { in_flight: 0 };
        assert!(o.validate().is_err());
        o.mode = Mode::ClosedLoop { in_flight: 8 };
        assert!(o.validate().is_ok());
        o.submit_batch = 0;
        assert!(o.validate().is_err());
    }

    #[test]
    fn durations_from_people() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("1.5m"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("250us"), Ok(Duration::from_micros(250)));
        assert!(parse_duration("fast").is_err());
        assert!(parse_duration("3 parsecs").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn durations_for_people() {
        assert_eq!(fmt_ns(850), "850 ns");
        assert_eq!(fmt_ns(12_340), "12.3 µs");
        assert_eq!(fmt_ns(4_560_000), "4.56 ms");
        assert_eq!(fmt_ns(1_200_000_000), "1.20 s");
    }
}
