//! Capacity planning (`payauth sweep`): open-loop steps of rising offered load against the
//! engine (or a stand-in of known capacity), the highest rate that still meets the latency
//! objectives, the knee, the same search per shard count with a Universal Scalability Law
//! fit, a sizing answer, and the files that carry it all (`capacity.json`, `sweep.csv`, SVG
//! plots).
//!
//! # A step
//! A step offers a fixed rate `R` open loop (the schedule `i / R`, as `replay --rate`) to a
//! fresh target: a new engine started from the dataset's accounts and tokens, fed the first
//! `R × (warmup + step)` requests of its traffic (never cycled: a repeat would be a
//! duplicate and change decisions). A dataset too short for that shortens the measurement
//! (the step is flagged `short`); when less than half the configured step would remain, the
//! step is not run and the search stops there. Latency counts from the intended send time.
//!
//! A step **passes** when all three hold:
//! - **achieved ≥ 99% of offered**: decisions per second over the measured window (first
//!   measured request's intended send to the last one's decision) against `R`;
//! - **every SLO holds**: `pXX` of latency (from intended send) ≤ its bound;
//! - **the backlog is not growing**: the backlog is the number of requests due by the
//!   schedule and not yet decided, read at each interval boundary (`--interval`, default a
//!   tenth of the step) inside the measurement, before the schedule ends. It is growing when
//!   the least-squares slope of those readings against the requests due exceeds 0.5% (one
//!   request in 200 stays behind), and both the trend and the last reading over the first
//!   add more than 16 requests over the measurement (readings count whole batches: below
//!   that it is noise; and a hiccup mid-step tilts the slope but drains away by the end). With fewer than 3
//!   readings it is not judged. A target slowly falling behind can pass the first check for
//!   a while; this one catches it.
//!
//! # The search
//! `--rates auto` ramps geometrically (×2 from `--start-rate`) until a step fails, then
//! bisects between the last passing and the first failing rate until they are within
//! `--precision` of each other; if the very first step fails, it halves first. `--rates
//! LIST` runs each listed rate. A failing step is run once more (`--retries`) before the
//! failure is believed: on a shared machine a hiccup can fail a step well within capacity,
//! while a real overload fails every time. The **capacity** is the highest passing rate; it is then run
//! `--repeats` more times and their spread reported. The **knee** is the lowest offered rate
//! from which p99 stays above `--knee-factor` (default 2) times the p99 of the lowest step
//! at every higher rate.

use std::fmt::Write as _;
use std::fs;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, ensure, Context, Result};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use payauth_engine::{Durability, Engine, Kind, Request};
use serde::{Deserialize, Serialize};

use crate::dataset::Dataset;
use crate::durable::{self, durability_name};
use crate::measure::{self, fmt_ns, MeasureOptions, Measurement, Mode};
use crate::provenance::{BuildInfo, MachineInfo};
use crate::replay::{self, ReplayOptions};
use crate::report::{DatasetInfo, Percentiles};
use crate::sweep_plots;
use crate::target::{StandIn, StandInConfig};
use crate::usl::{self, UslFit};

/// Version of the capacity.json layout.
pub const CAPACITY_VERSION: u32 = 1;
/// The JSON result.
pub const CAPACITY_FILE: &str = "capacity.json";
/// One row per step.
pub const SWEEP_CSV_FILE: &str = "sweep.csv";
/// Most steps one shard count's search may take (ramp, bisection and repeats).
pub const STEPS_MAX: usize = 64;
/// Most repeats of the final point.
pub const REPEATS_MAX: usize = 100;
/// Most retries of a failing step.
pub const RETRIES_MAX: usize = 5;
/// Sizing reads the USL curve only when its fit has at least this R² (and a degree of
/// freedom to judge it by); otherwise the measured shard counts alone.
pub const SIZING_R2_MIN: f64 = 0.9;
/// Most halvings when the first step of an automatic search already fails.
const HALVINGS_MAX: usize = 8;
/// The share of the configured step below which a short dataset's step is not run.
const SHORT_STEP_SHARE_MIN: f64 = 0.5;
/// Fewest backlog readings a trend is judged on.
const BACKLOG_READINGS_MIN: usize = 3;
/// A backlog trend that adds fewer requests than this over the measurement is not growth:
/// readings see whole batches, and at low rates a handful either side of an interval
/// boundary is noise, not a trend.
const BACKLOG_RISE_MIN: f64 = 16.0;
/// The stand-in's bound on batches in flight: generous, so the stand-in queues like an
/// engine with deep queues and an overload shows as backlog and latency.
const STANDIN_QUEUE_BATCHES: usize = 1 << 16;

// ---------------------------------------------------------------------------------------
// Command-line values
// ---------------------------------------------------------------------------------------

/// A latency objective: a percentile of latency from the intended send time, at most a bound.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Slo {
    /// As given, e.g. `p99<=1ms`.
    pub text: String,
    /// `p99`, `p99.9`, `max`.
    pub label: String,
    /// The quantile in 0..=1 (`max` is 1).
    pub quantile: f64,
    /// The bound, ns.
    pub bound_ns: u64,
}

impl Slo {
    /// The percentile this objective reads from a step's latency.
    pub fn value(&self, p: &Percentiles, h: &hdrhistogram::Histogram<u64>) -> u64 {
        if self.quantile >= 1.0 {
            p.max
        } else {
            h.value_at_quantile(self.quantile)
        }
    }
}

/// Parse `p99<=1ms`, `p99.9<=5ms`, `p50<=200us`, `max<=10ms`.
pub fn parse_slo(text: &str) -> std::result::Result<Slo, String> {
    let bad = |why: &str| {
        format!("--slo {text:?}: {why}; write a percentile, <= and a duration, as p99<=1ms, p99.9<=5ms or max<=10ms")
    };
    let (left, right) = text
        .split_once("<=")
        .ok_or_else(|| bad("no \"<=\" found"))?;
    let label = left.trim().to_ascii_lowercase();
    let quantile = if label == "max" {
        1.0
    } else {
        let digits = label
            .strip_prefix('p')
            .ok_or_else(|| bad("the percentile must be pNN or max"))?;
        let p: f64 = digits
            .parse()
            .map_err(|_| bad("the percentile must be pNN or max"))?;
        if !(p > 0.0 && p < 100.0) {
            return Err(bad("the percentile must be above 0 and below 100"));
        }
        p / 100.0
    };
    let right = right.trim();
    if right.is_empty() || right.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return Err(bad("the bound needs a unit (ns, us, ms, s)"));
    }
    let bound = measure::parse_duration(right).map_err(|e| bad(&e))?;
    let bound_ns = u64::try_from(bound.as_nanos()).unwrap_or(u64::MAX);
    if bound_ns == 0 {
        return Err(bad("the bound must be positive"));
    }
    Ok(Slo {
        text: text.trim().to_string(),
        label,
        quantile,
        bound_ns,
    })
}

/// Which rates to offer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Rates {
    /// Ramp then bisect.
    Auto,
    /// These rates, ascending.
    List(Vec<f64>),
}

/// A rate: a positive number, optionally with `k` (thousand) or `M` (million): `2500`,
/// `40k`, `1.5M`.
pub fn parse_rate(text: &str) -> std::result::Result<f64, String> {
    let t = text.trim();
    let (number, scale) = if let Some(n) = t.strip_suffix(['k', 'K']) {
        (n, 1e3)
    } else if let Some(n) = t.strip_suffix('M') {
        (n, 1e6)
    } else {
        (t, 1.0)
    };
    let v: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a rate such as 2500, 40k or 1.5M"))?;
    let v = v * scale;
    if !(v.is_finite() && v > 0.0) {
        return Err(format!("{text:?}: a rate must be positive"));
    }
    Ok(v)
}

/// `auto`, or a comma-separated list of rates (see [`parse_rate`]).
pub fn parse_rates(text: &str) -> std::result::Result<Rates, String> {
    if text.trim().eq_ignore_ascii_case("auto") {
        return Ok(Rates::Auto);
    }
    let mut rates = Vec::new();
    for part in text.split(',') {
        if part.trim().is_empty() {
            return Err(format!(
                "--rates {text:?} has an empty entry: give auto or rates such as 1000,2000,5k"
            ));
        }
        rates.push(parse_rate(part).map_err(|e| format!("--rates: {e}"))?);
    }
    rates.sort_by(f64::total_cmp);
    rates.dedup();
    Ok(Rates::List(rates))
}

/// Comma-separated shard counts, each 1..=256, ascending and distinct.
pub fn parse_shards(text: &str) -> std::result::Result<Vec<usize>, String> {
    let mut shards = Vec::new();
    for part in text.split(',') {
        let n: usize = part
            .trim()
            .parse()
            .map_err(|_| format!("--shards {text:?}: {part:?} is not a shard count"))?;
        if !(1..=256).contains(&n) {
            return Err(format!("--shards {text:?}: {n} is outside 1..=256"));
        }
        shards.push(n);
    }
    shards.sort_unstable();
    shards.dedup();
    Ok(shards)
}

/// A percentage: `30%`, `30` or `12.5%`, within 0..100; returned as a share (0.3).
pub fn parse_percent(text: &str) -> std::result::Result<f64, String> {
    let t = text.trim();
    let v: f64 = t
        .strip_suffix('%')
        .unwrap_or(t)
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a percentage such as 30%"))?;
    if !(0.0..100.0).contains(&v) {
        return Err(format!(
            "{text:?}: a percentage here must be within 0 and 100 (excluded)"
        ));
    }
    Ok(v / 100.0)
}

/// A stand-in of known capacity (`--stand-in REQUEST_TIME:WORKERS`, e.g. `2ms:16`): each
/// request occupies one of `workers` (per shard) for `request_time`.
pub fn parse_stand_in(text: &str) -> std::result::Result<StandInSpec, String> {
    let bad = |why: String| {
        format!("--stand-in {text:?}: {why}; write REQUEST_TIME:WORKERS, e.g. 2ms:16")
    };
    let (time, workers) = text
        .split_once(':')
        .ok_or_else(|| bad("no \":\" found".into()))?;
    let request_time = measure::parse_duration(time).map_err(bad)?;
    if request_time.is_zero() {
        return Err(bad("the request time must be positive".into()));
    }
    let workers: usize = workers
        .trim()
        .parse()
        .map_err(|_| bad(format!("{workers:?} is not a number of workers")))?;
    if !(1..=4096).contains(&workers) {
        return Err(bad(format!("{workers} workers is outside 1..=4096")));
    }
    Ok(StandInSpec {
        request_time,
        workers,
    })
}

/// The stand-in target of a sweep: per shard, `workers` servers of `request_time` each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StandInSpec {
    /// Time one request occupies one worker.
    pub request_time: Duration,
    /// Workers per shard.
    pub workers: usize,
}

impl StandInSpec {
    /// Requests per second `shards` shards of it serve.
    pub fn capacity_per_sec(&self, shards: usize) -> f64 {
        (self.workers * shards) as f64 / self.request_time.as_secs_f64()
    }
}

// ---------------------------------------------------------------------------------------
// Options
// ---------------------------------------------------------------------------------------

/// What `--target-tps` asks.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SizingOptions {
    /// Requests per second to serve.
    pub target_per_sec: f64,
    /// Share of capacity kept free (0.3 = 30%).
    pub headroom: f64,
    /// Cores of one host.
    pub cores_per_host: usize,
    /// Cores per host kept for everything that is not a shard (network, submitting and
    /// collecting threads, the OS).
    pub overhead_cores: usize,
}

/// Everything a sweep needs; see the module docs.
#[derive(Clone, Debug, PartialEq)]
pub struct SweepOptions {
    /// Latency objectives; at least one.
    pub slos: Vec<Slo>,
    /// Rates to offer.
    pub rates: Rates,
    /// Shard counts, ascending.
    pub shards: Vec<usize>,
    /// Engine durability.
    pub durability: Durability,
    /// Leading period of each step left out of the measurement.
    pub warmup: Duration,
    /// Measured period of each step.
    pub step: Duration,
    /// Interval of the backlog readings; default step / 10 (at least 1 ms).
    pub interval: Option<Duration>,
    /// Runs of the final point after the search.
    pub repeats: usize,
    /// Times a failing step of the search is run again before the failure is believed.
    pub retries: usize,
    /// First rate of an automatic search.
    pub start_rate: f64,
    /// Highest rate an automatic search offers.
    pub max_rate: Option<f64>,
    /// Ramp factor of an automatic search (> 1).
    pub growth: f64,
    /// Bisection stops when (fail − pass) / pass is at most this.
    pub precision: f64,
    /// The knee: p99 above this many times the lowest step's p99.
    pub knee_factor: f64,
    /// Achieved over offered a passing step needs.
    pub achieved_share_min: f64,
    /// Backlog growth (share of the requests due) beyond which the backlog is growing.
    pub backlog_growth_max: f64,
    /// Most requests per submitted batch.
    pub submit_batch: usize,
    /// Engine `batch_max`; default the engine's.
    pub batch_max: Option<usize>,
    /// The sizing question, if asked.
    pub sizing: Option<SizingOptions>,
    /// Draw the progress display on stderr.
    pub progress: bool,
    /// Print nothing on stderr (no progress, no step log).
    pub quiet: bool,
}

impl SweepOptions {
    /// The defaults, with these objectives.
    pub fn new(slos: Vec<Slo>) -> SweepOptions {
        SweepOptions {
            slos,
            rates: Rates::Auto,
            shards: vec![default_shards()],
            durability: Durability::None,
            warmup: Duration::from_secs(1),
            step: Duration::from_secs(5),
            interval: None,
            repeats: 3,
            retries: 1,
            start_rate: 1000.0,
            max_rate: None,
            growth: 2.0,
            precision: 0.02,
            knee_factor: 2.0,
            achieved_share_min: 0.99,
            backlog_growth_max: 0.005,
            submit_batch: 256,
            batch_max: None,
            sizing: None,
            progress: std::io::stderr().is_terminal(),
            quiet: false,
        }
    }

    /// Check every value; the message names the option.
    pub fn validate(&self) -> Result<()> {
        ensure!(
            !self.slos.is_empty(),
            "give at least one --slo, e.g. --slo 'p99<=1ms'"
        );
        if let Rates::List(r) = &self.rates {
            ensure!(
                !r.is_empty(),
                "--rates is empty: give auto or a list of rates"
            );
        }
        ensure!(!self.shards.is_empty(), "--shards is empty");
        ensure!(
            self.shards.iter().all(|s| (1..=256).contains(s)),
            "--shards must be within 1..=256"
        );
        ensure!(!self.step.is_zero(), "--step must be positive");
        ensure!(
            self.interval_ns() <= duration_ns(self.step),
            "--interval must not be longer than --step"
        );
        ensure!(
            self.interval_ns() >= duration_ns(measure::INTERVAL_MIN),
            "--interval must be at least {:?}",
            measure::INTERVAL_MIN
        );
        ensure!(
            self.repeats <= REPEATS_MAX,
            "--repeats {} is above {REPEATS_MAX}",
            self.repeats
        );
        ensure!(
            self.retries <= RETRIES_MAX,
            "--retries {} is above {RETRIES_MAX}",
            self.retries
        );
        ensure!(
            self.start_rate.is_finite() && self.start_rate > 0.0,
            "--start-rate must be positive"
        );
        if let Some(m) = self.max_rate {
            ensure!(
                m.is_finite() && m >= self.start_rate,
                "--max-rate must be at least --start-rate"
            );
        }
        ensure!(
            self.growth.is_finite() && self.growth > 1.0 && self.growth <= 100.0,
            "the ramp factor must be above 1 and at most 100"
        );
        ensure!(
            self.precision > 0.0 && self.precision < 1.0,
            "--precision must be above 0% and below 100%"
        );
        ensure!(
            self.knee_factor.is_finite() && self.knee_factor > 1.0,
            "--knee-factor must be above 1"
        );
        ensure!(
            (1..=measure::SUBMIT_BATCH_MAX).contains(&self.submit_batch),
            "--submit-batch is outside 1..={}",
            measure::SUBMIT_BATCH_MAX
        );
        if let Some(s) = &self.sizing {
            ensure!(
                s.target_per_sec.is_finite() && s.target_per_sec > 0.0,
                "--target-tps must be positive"
            );
            ensure!(
                (0.0..1.0).contains(&s.headroom),
                "--headroom must be within 0% and 100% (excluded)"
            );
            ensure!(
                s.cores_per_host > s.overhead_cores,
                "--cores-per-host ({}) must exceed the cores kept for the host's own work \
                 (--overhead-cores {})",
                s.cores_per_host,
                s.overhead_cores
            );
        }
        Ok(())
    }

    fn interval_ns(&self) -> u64 {
        self.interval
            .map(duration_ns)
            .unwrap_or_else(|| (duration_ns(self.step) / 10).max(1_000_000))
    }
}

fn default_shards() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn duration_ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

// ---------------------------------------------------------------------------------------
// What a sweep drives
// ---------------------------------------------------------------------------------------

/// The target of a sweep.
pub enum SweepTarget {
    /// The engine, fed a dataset's traffic.
    Engine {
        /// The dataset folder (for the report).
        path: PathBuf,
        /// The loaded dataset.
        dataset: Box<Dataset>,
        /// Its description for the report.
        info: Box<DatasetInfo>,
    },
    /// A stand-in of known capacity with synthetic traffic.
    StandIn(StandInSpec),
}

impl SweepTarget {
    /// Load and validate a dataset.
    pub fn engine(dataset_dir: &Path) -> Result<SweepTarget> {
        let dataset = Dataset::load(dataset_dir).context("invalid dataset")?;
        let info = replay::dataset_info(dataset_dir, &dataset)?;
        ensure!(
            !dataset.traffic.is_empty(),
            "the dataset {} has no traffic to sweep with",
            dataset_dir.display()
        );
        Ok(SweepTarget::Engine {
            path: dataset_dir.to_path_buf(),
            dataset: Box::new(dataset),
            info: Box::new(info),
        })
    }

    fn describe(&self, opts: &SweepOptions) -> String {
        match self {
            SweepTarget::Engine { path, .. } => format!(
                "payauth-engine on {} (durability {})",
                path.display(),
                durability_name(opts.durability)
            ),
            SweepTarget::StandIn(s) => format!(
                "stand-in: {} workers x {} per request per shard ({:.0}/s per shard)",
                s.workers,
                fmt_ns(duration_ns(s.request_time)),
                s.capacity_per_sec(1)
            ),
        }
    }

    fn rows(&self) -> Option<usize> {
        match self {
            SweepTarget::Engine { dataset, .. } => Some(dataset.traffic.len()),
            SweepTarget::StandIn(_) => None,
        }
    }

    /// Drive `len` requests through a fresh target with `shards` shards.
    fn drive(
        &self,
        shards: usize,
        len: usize,
        m: &MeasureOptions,
        opts: &SweepOptions,
        state_dir: &Path,
    ) -> Result<Measurement> {
        match self {
            SweepTarget::Engine { dataset, .. } => {
                let step_opts = ReplayOptions {
                    shards: Some(shards),
                    batch_max: opts.batch_max,
                    ..ReplayOptions::default()
                };
                let mut config = replay::config(&step_opts)?;
                // Sized for the step, so no step measures a table growing.
                replay::size_tables(&mut config, &step_opts, len);
                config.journal = durable::journal_in(state_dir, opts.durability);
                if config.journal.is_some() {
                    remove_dir(state_dir)?;
                }
                let traffic = &dataset.traffic[..len];
                let engine =
                    Engine::start(config, dataset.accounts.clone(), dataset.tokens.clone())
                        .context("cannot start the engine")?;
                let measured = measure::drive(&engine, traffic, m);
                let as_of_ns = traffic.last().map_or(0, |r| r.ts_ns);
                let stopped = engine.shutdown(as_of_ns);
                if opts.durability != Durability::None {
                    remove_dir(state_dir)?;
                }
                let measured = measured?;
                stopped.context("cannot shut the engine down")?;
                Ok(measured)
            }
            SweepTarget::StandIn(spec) => {
                let standin = StandIn::start(StandInConfig {
                    request_time: spec.request_time,
                    workers: spec.workers * shards,
                    queue_batches: STANDIN_QUEUE_BATCHES,
                    ..StandInConfig::default()
                })?;
                measure::drive(&standin, &synthetic_traffic(len), m)
            }
        }
    }
}

fn remove_dir(dir: &Path) -> Result<()> {
    match fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("cannot remove {}", dir.display())),
    }
}

/// `n` credits with distinct ids, one recorded millisecond apart (the stand-in approves
/// anything; only their number and order matter).
fn synthetic_traffic(n: usize) -> Vec<Request> {
    (0..n)
        .map(|i| {
            Request::new(
                Kind::Credit,
                i as u64 + 1,
                1_700_000_000_000_000_000 + i as i64 * 1_000_000,
            )
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// Steps and their verdicts
// ---------------------------------------------------------------------------------------

/// Why a step was run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// Part of the geometric ramp (or the halving below a failing start).
    Ramp,
    /// Part of the bisection.
    Bisect,
    /// One of the `--rates` list.
    List,
    /// A repeat of the final point.
    Repeat,
}

impl Phase {
    fn name(self) -> &'static str {
        match self {
            Phase::Ramp => "ramp",
            Phase::Bisect => "bisect",
            Phase::List => "list",
            Phase::Repeat => "repeat",
        }
    }
}

/// A step's outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// Every criterion held.
    Pass,
    /// At least one did not.
    Fail,
    /// The dataset is too short for the rate: nothing was measured.
    NotRun,
}

/// The backlog readings of a step (see the module docs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Backlog {
    /// Backlog at the first reading inside the measurement.
    pub first: i64,
    /// Backlog at the last reading before the schedule ends.
    pub last: i64,
    /// Requests due between the two readings.
    pub due: u64,
    /// Least-squares slope of the backlog against the requests due: the share of the
    /// requests due that stayed behind.
    pub growth: f64,
    /// `growth × due`: the backlog the trend added over the measurement, requests.
    pub rise: f64,
    /// The readings taken.
    pub readings: usize,
}

/// One step: what was offered, what came back, and the verdict.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Step {
    /// Engine shards (stand-in: shard multiples of the workers).
    pub shards: usize,
    /// Why it ran.
    pub phase: Phase,
    /// The schedule's rate, per second.
    pub offered_per_sec: f64,
    /// The rate actually submitted (a sender held back by a full queue is below offered).
    pub sent_per_sec: Option<f64>,
    /// Decisions per second over the measured window.
    pub achieved_per_sec: Option<f64>,
    /// Requests replayed (warmup included).
    pub requests: u64,
    /// Requests measured.
    pub measured: u64,
    /// The measured period, s (shorter than `--step` when `short`).
    pub measured_s: f64,
    /// The dataset was too short for the full step.
    pub short: bool,
    /// This failure was not believed at once: the same rate was run again, and the next
    /// step in the table (same rate) decides.
    #[serde(default)]
    pub retried: bool,
    /// Latency from the intended send time, ns.
    pub latency_ns: Percentiles,
    /// p99 of service time (decision − actual submit), ns.
    pub service_p99_ns: u64,
    /// p99 of the sender's lag behind its schedule, ns.
    pub sender_lag_p99_ns: u64,
    /// Times the target answered Full.
    pub full_answers: u64,
    /// The backlog readings, when at least two were taken.
    pub backlog: Option<Backlog>,
    /// The verdict.
    pub verdict: Verdict,
    /// Each failed criterion (or why the step was not run), in plain words.
    pub reasons: Vec<String>,
}

impl Step {
    /// Whether the step passed.
    pub fn passed(&self) -> bool {
        self.verdict == Verdict::Pass
    }

    fn not_run(shards: usize, phase: Phase, rate: f64, why: String) -> Step {
        Step {
            shards,
            phase,
            offered_per_sec: rate,
            sent_per_sec: None,
            achieved_per_sec: None,
            requests: 0,
            measured: 0,
            measured_s: 0.0,
            short: true,
            retried: false,
            latency_ns: Percentiles::default(),
            service_p99_ns: 0,
            sender_lag_p99_ns: 0,
            full_answers: 0,
            backlog: None,
            verdict: Verdict::NotRun,
            reasons: vec![why],
        }
    }

    /// One line for the progress log.
    pub fn line(&self) -> String {
        let verdict = match self.verdict {
            Verdict::Pass => "PASS",
            Verdict::Fail => "FAIL",
            Verdict::NotRun => "NOT RUN",
        };
        if self.verdict == Verdict::NotRun {
            return format!(
                "shards {:>3} {:<6} {:>10}  {verdict}: {}",
                self.shards,
                self.phase.name(),
                fmt_rate(self.offered_per_sec),
                self.reasons.join("; ")
            );
        }
        let mut s = format!(
            "shards {:>3} {:<6} {:>10} achieved {:>10}  p50 {:>9} p99 {:>9} p99.9 {:>9} max {:>9}  {verdict}",
            self.shards,
            self.phase.name(),
            fmt_rate(self.offered_per_sec),
            self.achieved_per_sec.map_or("-".into(), fmt_rate),
            fmt_ns(self.latency_ns.p50),
            fmt_ns(self.latency_ns.p99),
            fmt_ns(self.latency_ns.p99_9),
            fmt_ns(self.latency_ns.max),
        );
        if self.short {
            s.push_str(" (short)");
        }
        if self.retried {
            s.push_str(" (retried)");
        }
        if !self.reasons.is_empty() {
            let _ = write!(s, ": {}", self.reasons.join("; "));
        }
        s
    }
}

/// `12,345/s`.
pub fn fmt_rate(per_sec: f64) -> String {
    let v = per_sec.round();
    if !v.is_finite() || v < 0.0 {
        return format!("{per_sec}/s");
    }
    let digits = format!("{}", v as u64);
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out.push_str("/s");
    out
}

/// Judge a measured step against the criteria (see the module docs).
pub fn judge(
    m: &Measurement,
    shards: usize,
    phase: Phase,
    rate: f64,
    short: bool,
    opts: &SweepOptions,
) -> Step {
    let s = &m.stats;
    let latency = Percentiles::of(&m.latency);
    let achieved = s.throughput_per_sec();
    let mut reasons = Vec::new();
    match achieved {
        Some(a) if a >= opts.achieved_share_min * rate => {}
        Some(a) => reasons.push(format!(
            "achieved {} is {:.1}% of offered {} (< {:.0}%)",
            fmt_rate(a),
            100.0 * a / rate,
            fmt_rate(rate),
            100.0 * opts.achieved_share_min
        )),
        None => reasons.push("nothing was measured".into()),
    }
    for slo in &opts.slos {
        let v = slo.value(&latency, &m.latency);
        if v > slo.bound_ns {
            reasons.push(format!(
                "{} {} > {}",
                slo.label,
                fmt_ns(v),
                fmt_ns(slo.bound_ns)
            ));
        }
    }
    let backlog = backlog(m, rate, opts.interval_ns());
    if let Some(b) = &backlog {
        // The trend and the end agree: a hiccup mid-step tilts the slope but drains away.
        if b.growth > opts.backlog_growth_max
            && b.rise > BACKLOG_RISE_MIN
            && (b.last - b.first) as f64 > BACKLOG_RISE_MIN
        {
            reasons.push(format!(
                "backlog growing: {:+.2}% of the requests due stay behind ({} -> {} behind \
                 schedule over {} due)",
                100.0 * b.growth,
                b.first,
                b.last,
                b.due
            ));
        }
    }
    let measured_ns = s.last_intended_ns.saturating_sub(s.first_intended_ns);
    Step {
        shards,
        phase,
        offered_per_sec: rate,
        sent_per_sec: s.offered_rate_per_sec(),
        achieved_per_sec: achieved,
        requests: s.requests,
        measured: s.measured,
        measured_s: measured_ns as f64 / 1e9,
        short,
        retried: false,
        latency_ns: latency,
        service_p99_ns: Percentiles::of(&m.service).p99,
        sender_lag_p99_ns: if m.sender_lag.is_empty() {
            0
        } else {
            m.sender_lag.value_at_quantile(0.99)
        },
        full_answers: s.full_answers,
        backlog,
        verdict: if reasons.is_empty() {
            Verdict::Pass
        } else {
            Verdict::Fail
        },
        reasons,
    }
}

/// Backlog readings at the interval boundaries from the end of the warmup to the end of the
/// schedule, and their least-squares trend; `None` with fewer than three readings.
fn backlog(m: &Measurement, rate: f64, interval_ns: u64) -> Option<Backlog> {
    let s = &m.stats;
    let n = s.requests;
    if n == 0 || interval_ns == 0 {
        return None;
    }
    let schedule_end_ns = s.last_intended_ns;
    let due_by = |t_ns: u64| -> u64 { (((t_ns as f64) * rate / 1e9).floor() as u64 + 1).min(n) };
    let mut decided: u64 = 0;
    let mut readings: Vec<(u64, i64)> = Vec::new();
    for (k, d) in m.decided_per_interval.iter().enumerate() {
        decided += d;
        let t = (k as u64 + 1) * interval_ns;
        if t > schedule_end_ns {
            break;
        }
        if t < s.warmup_ns {
            continue;
        }
        let due = due_by(t);
        readings.push((due, due as i64 - decided as i64));
    }
    backlog_trend(&readings)
}

/// The least-squares slope of backlog against requests due, over `(due, backlog)` readings.
fn backlog_trend(readings: &[(u64, i64)]) -> Option<Backlog> {
    if readings.len() < BACKLOG_READINGS_MIN {
        return None;
    }
    let k = readings.len() as f64;
    let mx = readings.iter().map(|r| r.0 as f64).sum::<f64>() / k;
    let my = readings.iter().map(|r| r.1 as f64).sum::<f64>() / k;
    let sxx: f64 = readings.iter().map(|r| (r.0 as f64 - mx).powi(2)).sum();
    let sxy: f64 = readings
        .iter()
        .map(|r| (r.0 as f64 - mx) * (r.1 as f64 - my))
        .sum();
    let slope = if sxx > 0.0 { sxy / sxx } else { 0.0 };
    let (due0, first) = readings[0];
    let (due1, last) = *readings.last().expect("readings");
    let due = due1.saturating_sub(due0);
    Some(Backlog {
        first,
        last,
        due,
        growth: slope,
        rise: slope * due as f64,
        readings: readings.len(),
    })
}

// ---------------------------------------------------------------------------------------
// The search
// ---------------------------------------------------------------------------------------

/// Why a search stopped where it did.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Limit {
    /// A failing step bounds the capacity from above.
    Failed {
        /// The lowest failing rate above the capacity.
        rate: f64,
        /// Its failed criteria.
        reasons: Vec<String>,
    },
    /// The dataset is too short to test a higher rate: the capacity is a lower bound.
    DatasetTooShort {
        /// The rate that could not be run.
        rate: f64,
    },
    /// `--max-rate` passed: the capacity is a lower bound.
    MaxRate {
        /// The rate.
        rate: f64,
    },
    /// Every listed rate passed: the capacity is a lower bound.
    AllPassed,
    /// The step budget ran out.
    StepsMax,
    /// No rate passed.
    NonePassed,
}

impl Limit {
    /// Whether the capacity found is only a lower bound (nothing failed above it).
    pub fn is_lower_bound(&self) -> bool {
        matches!(
            self,
            Limit::DatasetTooShort { .. } | Limit::MaxRate { .. } | Limit::AllPassed
        )
    }

    fn describe(&self) -> String {
        match self {
            Limit::Failed { rate, reasons } => {
                format!("{} fails: {}", fmt_rate(*rate), reasons.join("; "))
            }
            Limit::DatasetTooShort { rate } => format!(
                "the dataset is too short to test {}: a lower bound, generate more traffic",
                fmt_rate(*rate)
            ),
            Limit::MaxRate { rate } => {
                format!("--max-rate {} passed: a lower bound", fmt_rate(*rate))
            }
            Limit::AllPassed => "every listed rate passed: a lower bound".into(),
            Limit::StepsMax => format!("the search stopped after {STEPS_MAX} steps"),
            Limit::NonePassed => "no rate passed".into(),
        }
    }
}

/// The search's result for one shard count, before repeats.
#[derive(Clone, Debug, PartialEq)]
pub struct SearchOutcome {
    /// Every step, in the order run.
    pub steps: Vec<Step>,
    /// The highest passing rate.
    pub best: Option<f64>,
    /// Why the search stopped.
    pub limit: Limit,
}

/// Search for the highest passing rate; `run` measures one step at a rate. Pure logic: the
/// tests drive it with a fake `run`.
///
/// A failing step is run again up to `opts.retries` times before the failure is believed
/// (the first run that passes, or the last run, decides; every run is in the table, the
/// overruled ones marked `retried`): on a shared machine a scheduling hiccup can fail a step
/// well within capacity, while a real overload fails every time.
pub fn search(
    opts: &SweepOptions,
    mut run: impl FnMut(f64, Phase) -> Result<Step>,
) -> Result<SearchOutcome> {
    let mut steps: Vec<Step> = Vec::new();
    let budget = STEPS_MAX.saturating_sub(opts.repeats).max(1);
    let mut judge_rate =
        |rate: f64, phase: Phase, steps: &mut Vec<Step>| -> Result<(Verdict, Vec<String>)> {
            let mut retried = 0;
            loop {
                let mut s = run(rate, phase)?;
                let (verdict, reasons) = (s.verdict, s.reasons.clone());
                if verdict == Verdict::Fail && retried < opts.retries {
                    s.retried = true;
                    steps.push(s);
                    retried += 1;
                    continue;
                }
                steps.push(s);
                return Ok((verdict, reasons));
            }
        };
    match &opts.rates {
        Rates::List(rates) => {
            let mut limit = Limit::AllPassed;
            for &r in rates {
                let (verdict, _) = judge_rate(r, Phase::List, &mut steps)?;
                if verdict == Verdict::NotRun {
                    limit = Limit::DatasetTooShort { rate: r };
                    break;
                }
            }
            let decided: Vec<&Step> = steps.iter().filter(|s| !s.retried).collect();
            let best = decided
                .iter()
                .filter(|s| s.passed())
                .map(|s| s.offered_per_sec)
                .fold(None, |m: Option<f64>, r| Some(m.map_or(r, |m| m.max(r))));
            // The limit is the lowest failure above the best pass (a failure below it is a
            // blip the pass above overrules).
            let fail_above = decided
                .iter()
                .find(|s| s.verdict == Verdict::Fail && best.is_none_or(|b| s.offered_per_sec > b));
            if best.is_none() && limit == Limit::AllPassed {
                limit = Limit::NonePassed;
            } else if let Some(f) = fail_above {
                limit = Limit::Failed {
                    rate: f.offered_per_sec,
                    reasons: f.reasons.clone(),
                };
            }
            Ok(SearchOutcome { steps, best, limit })
        }
        Rates::Auto => {
            let mut lo: Option<f64> = None;
            let mut hi: Option<(f64, Vec<String>)> = None;
            let mut limit: Option<Limit> = None;
            let mut r = opts.start_rate;
            // Ramp up.
            loop {
                if steps.len() >= budget {
                    limit = Some(Limit::StepsMax);
                    break;
                }
                match judge_rate(r, Phase::Ramp, &mut steps)? {
                    (Verdict::Pass, _) => {
                        lo = Some(r);
                        match opts.max_rate {
                            Some(m) if r >= m => {
                                limit = Some(Limit::MaxRate { rate: r });
                                break;
                            }
                            Some(m) => r = (r * opts.growth).min(m),
                            None => r *= opts.growth,
                        }
                    }
                    (Verdict::Fail, reasons) => {
                        hi = Some((r, reasons));
                        break;
                    }
                    (Verdict::NotRun, _) => {
                        limit = Some(Limit::DatasetTooShort { rate: r });
                        break;
                    }
                }
            }
            // The first step failed: go down by the ramp factor until one passes.
            let mut halvings = 0;
            while lo.is_none() && limit.is_none() && halvings < HALVINGS_MAX {
                let (h, _) = hi.clone().expect("a failure");
                let r = h / opts.growth;
                halvings += 1;
                match judge_rate(r, Phase::Ramp, &mut steps)? {
                    (Verdict::Pass, _) => lo = Some(r),
                    (_, reasons) => hi = Some((r, reasons)),
                }
            }
            // Bisect.
            while limit.is_none() {
                let (Some(l), Some((h, _))) = (lo, hi.clone()) else {
                    break;
                };
                if (h - l) / l <= opts.precision {
                    break;
                }
                if steps.len() >= budget {
                    limit = Some(Limit::StepsMax);
                    break;
                }
                let mid = (l + h) / 2.0;
                match judge_rate(mid, Phase::Bisect, &mut steps)? {
                    (Verdict::Pass, _) => lo = Some(mid),
                    (Verdict::Fail, reasons) => hi = Some((mid, reasons)),
                    (Verdict::NotRun, _) => limit = Some(Limit::DatasetTooShort { rate: mid }),
                }
            }
            let limit = match (limit, lo, hi) {
                (Some(l), _, _) => l,
                (None, None, _) => Limit::NonePassed,
                (None, Some(_), Some((rate, reasons))) => Limit::Failed { rate, reasons },
                (None, Some(_), None) => Limit::StepsMax,
            };
            Ok(SearchOutcome {
                steps,
                best: lo,
                limit,
            })
        }
    }
}

// ---------------------------------------------------------------------------------------
// Results per shard count
// ---------------------------------------------------------------------------------------

/// Min, max, mean and standard deviation of a few values.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Spread {
    /// Smallest.
    pub min: f64,
    /// Largest.
    pub max: f64,
    /// Mean.
    pub mean: f64,
    /// Sample standard deviation (0 for one value).
    pub stdev: f64,
}

impl Spread {
    /// The spread of `values` (all zero when empty).
    pub fn of(values: &[f64]) -> Spread {
        if values.is_empty() {
            return Spread::default();
        }
        let n = values.len() as f64;
        let mean = values.iter().sum::<f64>() / n;
        let var = if values.len() > 1 {
            values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)
        } else {
            0.0
        };
        Spread {
            min: values.iter().copied().fold(f64::INFINITY, f64::min),
            max: values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            mean,
            stdev: var.sqrt(),
        }
    }
}

/// The final point run again.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Repeats {
    /// The rate repeated.
    pub offered_per_sec: f64,
    /// Runs.
    pub runs: usize,
    /// Runs that passed.
    pub passed: usize,
    /// Achieved rate over the runs, per second.
    pub achieved_per_sec: Spread,
    /// p99 latency over the runs, ns.
    pub p99_ns: Spread,
    /// p99.9 latency over the runs, ns.
    pub p99_9_ns: Spread,
}

/// Where p99 leaves its low-load level.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Knee {
    /// The knee is the first rate whose p99 exceeds this many times the low-load p99.
    pub factor: f64,
    /// The lowest step's rate.
    pub low_load_per_sec: f64,
    /// The lowest step's p99, ns.
    pub low_load_p99_ns: u64,
    /// The lowest offered rate above the threshold, if any.
    pub knee_per_sec: Option<f64>,
    /// Its p99, ns.
    pub knee_p99_ns: Option<u64>,
    /// The highest rate below the knee still within the threshold.
    pub below_knee_per_sec: Option<f64>,
}

/// Find the knee among the steps of one shard count: the lowest offered rate from which
/// every higher step's p99 stays above `factor` times the lowest step's p99. Latency only
/// grows with load, so a single high p99 followed by low ones is a hiccup of the machine,
/// not the knee. Repeats, overruled (`retried`) runs and steps not run are left out.
pub fn knee(steps: &[Step], factor: f64) -> Option<Knee> {
    let by_rate = knee_steps(steps);
    let low = by_rate.first()?;
    let threshold = factor * low.latency_ns.p99 as f64;
    // The start of the run of steps above the threshold that reaches the highest rate.
    let from = by_rate
        .iter()
        .rposition(|s| s.latency_ns.p99 as f64 <= threshold)
        .map_or(0, |i| i + 1);
    let knee_step = by_rate.get(from).copied();
    let below = from.checked_sub(1).map(|j| by_rate[j]);
    Some(Knee {
        factor,
        low_load_per_sec: low.offered_per_sec,
        low_load_p99_ns: low.latency_ns.p99,
        knee_per_sec: knee_step.map(|s| s.offered_per_sec),
        knee_p99_ns: knee_step.map(|s| s.latency_ns.p99),
        below_knee_per_sec: below.map(|s| s.offered_per_sec),
    })
}

/// The steps a knee (and a latency plot) is read from, by rate.
pub fn knee_steps(steps: &[Step]) -> Vec<&Step> {
    let mut by_rate: Vec<&Step> = steps
        .iter()
        .filter(|s| {
            s.phase != Phase::Repeat && !s.retried && s.verdict != Verdict::NotRun && s.measured > 0
        })
        .collect();
    by_rate.sort_by(|a, b| a.offered_per_sec.total_cmp(&b.offered_per_sec));
    by_rate
}

/// The result of one shard count.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ShardResult {
    /// Shards.
    pub shards: usize,
    /// The highest sustainable rate under the SLOs, per second.
    pub capacity_per_sec: Option<f64>,
    /// Whether that is only a lower bound (nothing failed above it).
    pub lower_bound: bool,
    /// Why the search stopped.
    pub limit: Limit,
    /// The same in words.
    pub limit_text: String,
    /// Most repeats of the capacity failed: the machine's noise, not the target, decided
    /// the number, and it should not be relied on.
    #[serde(default)]
    pub unstable: bool,
    /// The knee.
    pub knee: Option<Knee>,
    /// The final point's repeats.
    pub repeats: Option<Repeats>,
    /// Every step, in the order run.
    pub steps: Vec<Step>,
}

// ---------------------------------------------------------------------------------------
// Scaling and sizing
// ---------------------------------------------------------------------------------------

/// Capacity against shards, and the USL fit when one is possible.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Scaling {
    /// (shards, capacity per second) of every shard count that found one.
    pub points: Vec<(usize, f64)>,
    /// The fit.
    pub usl: Option<UslFit>,
    /// Why there is no fit.
    pub no_fit: Option<String>,
}

/// The answer to `--target-tps`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Sizing {
    /// The question.
    pub asked: SizingOptions,
    /// Capacity needed: target / (1 − headroom), per second.
    pub needed_per_sec: f64,
    /// `usl` (the fitted curve) or `measured` (the measured shard counts only).
    pub basis: String,
    /// Shards per host.
    pub shards_per_host: usize,
    /// Hosts.
    pub hosts: usize,
    /// Shards in all.
    pub shards: usize,
    /// Cores in all: hosts × (shards per host + overhead cores).
    pub cores: usize,
    /// Capacity of one host at that shard count, per second.
    pub capacity_per_host_per_sec: f64,
    /// Capacity of all hosts, per second.
    pub capacity_per_sec: f64,
    /// Utilisation at the target: target / capacity.
    pub utilisation: f64,
    /// The capacity this rests on is a lower bound, so the answer may over-provision.
    pub from_lower_bound: bool,
    /// The answer in a sentence.
    pub answer: String,
    /// What the number assumes, written out.
    pub assumptions: Vec<String>,
}

/// Answer the sizing question from the scaling results. Shard counts in `unstable` (most
/// repeats of their capacity failed) are left out of the measured candidates while stable
/// ones remain.
pub fn size(
    ask: &SizingOptions,
    scaling: &Scaling,
    lower_bound: bool,
    target: &str,
    unstable: &[usize],
) -> std::result::Result<Sizing, String> {
    let needed = ask.target_per_sec / (1.0 - ask.headroom);
    let per_host_max = ask.cores_per_host - ask.overhead_cores;
    // Candidate shard counts per host and their capacity.
    let trusted = scaling
        .usl
        .as_ref()
        .filter(|f| f.degrees_of_freedom >= 1 && f.r_squared.is_some_and(|r| r >= SIZING_R2_MIN));
    let (basis, candidates): (&str, Vec<(usize, f64)>) = match trusted {
        Some(f) => (
            "usl",
            (1..=per_host_max.min(256))
                .map(|n| (n, f.at(n as f64)))
                .collect(),
        ),
        None => {
            let fits: Vec<(usize, f64)> = scaling
                .points
                .iter()
                .copied()
                .filter(|(n, _)| *n <= per_host_max)
                .collect();
            let stable: Vec<(usize, f64)> = fits
                .iter()
                .copied()
                .filter(|(n, _)| !unstable.contains(n))
                .collect();
            ("measured", if stable.is_empty() { fits } else { stable })
        }
    };
    if candidates.is_empty() {
        return Err(if scaling.points.is_empty() {
            "no shard count found a capacity under the SLOs, so there is nothing to size from"
                .into()
        } else {
            format!(
                "every measured shard count needs more than the {per_host_max} cores a host of \
                 {} has for shards; measure smaller shard counts",
                ask.cores_per_host
            )
        });
    }
    let (shards_per_host, per_host, hosts) = match candidates.iter().find(|(_, c)| *c >= needed) {
        Some(&(n, c)) => (n, c, 1),
        None => {
            let &(n, c) = candidates
                .iter()
                .max_by(|a, b| a.1.total_cmp(&b.1))
                .expect("not empty");
            (n, c, (needed / c).ceil().max(1.0) as usize)
        }
    };
    let shards = shards_per_host * hosts;
    let cores = hosts * (shards_per_host + ask.overhead_cores);
    let total = per_host * hosts as f64;
    let mut assumptions = vec![
        format!(
            "capacity = the highest rate that met every SLO on this machine ({target}), \
             under this sweep's traffic mix; another mix or machine needs its own sweep"
        ),
        format!(
            "needed = target / (1 - headroom) = {} / (1 - {:.0}%) = {}",
            fmt_rate(ask.target_per_sec),
            100.0 * ask.headroom,
            fmt_rate(needed)
        ),
        format!(
            "a shard is one owner thread that keeps one core busy at capacity; each host keeps \
             {} core(s) for everything else (network, submitting and collecting threads, the \
             OS), so a host of {} cores runs at most {per_host_max} shards",
            ask.overhead_cores, ask.cores_per_host
        ),
    ];
    assumptions.push(match basis {
        "usl" => "shards per host read from the fitted USL curve (interpolated between and \
                  extrapolated beyond the measured shard counts)"
            .into(),
        _ => match &scaling.usl {
            Some(f) => format!(
                "shards per host chosen among the measured shard counts only: the USL fit is \
                 not trusted for sizing (R² {}, {} degree(s) of freedom; sizing needs R² >= \
                 {SIZING_R2_MIN} and at least 1), so nothing is extrapolated",
                f.r_squared.map_or("n/a".into(), |r| format!("{r:.3}")),
                f.degrees_of_freedom
            ),
            None => "shards per host chosen among the measured shard counts only (no USL fit, \
                     so nothing is extrapolated)"
                .into(),
        },
    });
    if hosts > 1 {
        assumptions.push(format!(
            "more than one host: accounts are partitioned across hosts by the engine's shard \
             function (host = payauth_engine::shard_of(account_id, {hosts})), each host runs \
             its own engine on its accounts; every rule touches one account, so hosts share \
             nothing and capacity adds up linearly across hosts, provided the front end routes \
             each request (token -> account) to its host and the traffic spreads evenly"
        ));
    } else {
        assumptions.push(
            "one host suffices; beyond one host, partition accounts across hosts by the same \
             shard function (host = payauth_engine::shard_of(account_id, hosts))"
                .into(),
        );
    }
    if lower_bound {
        assumptions.push(
            "the capacity measured is a lower bound (nothing failed above it), so this may \
             over-provision"
                .into(),
        );
    }
    let answer = format!(
        "{} at {:.0}% headroom: {shards} shard{} ({shards_per_host} per host), {cores} cores, \
         {hosts} host{} of {} cores (capacity {}, utilisation {:.0}% at the target)",
        fmt_rate(ask.target_per_sec),
        100.0 * ask.headroom,
        if shards == 1 { "" } else { "s" },
        if hosts == 1 { "" } else { "s" },
        ask.cores_per_host,
        fmt_rate(total),
        100.0 * ask.target_per_sec / total,
    );
    Ok(Sizing {
        asked: ask.clone(),
        needed_per_sec: needed,
        basis: basis.into(),
        shards_per_host,
        hosts,
        shards,
        cores,
        capacity_per_host_per_sec: per_host,
        capacity_per_sec: total,
        utilisation: ask.target_per_sec / total,
        from_lower_bound: lower_bound,
        answer,
        assumptions,
    })
}

// ---------------------------------------------------------------------------------------
// The whole sweep
// ---------------------------------------------------------------------------------------

/// The settings of a sweep, as capacity.json records them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SweepSettings {
    /// The objectives.
    pub slos: Vec<Slo>,
    /// The rates.
    pub rates: Rates,
    /// Shard counts.
    pub shards: Vec<usize>,
    /// Durability.
    pub durability: String,
    /// Warmup per step, ns.
    pub warmup_ns: u64,
    /// Measured period per step, ns.
    pub step_ns: u64,
    /// Backlog reading interval, ns.
    pub interval_ns: u64,
    /// Repeats of the final point.
    pub repeats: usize,
    /// Retries of a failing step.
    #[serde(default)]
    pub retries: usize,
    /// First rate of an automatic search.
    pub start_rate_per_sec: f64,
    /// Highest rate of an automatic search.
    pub max_rate_per_sec: Option<f64>,
    /// Ramp factor.
    pub growth: f64,
    /// Bisection precision.
    pub precision: f64,
    /// Knee factor.
    pub knee_factor: f64,
    /// Achieved share a pass needs.
    pub achieved_share_min: f64,
    /// Backlog growth share beyond which the backlog is growing.
    pub backlog_growth_max: f64,
    /// Requests per submitted batch at most.
    pub submit_batch: usize,
    /// Engine batch_max (engine default when absent).
    pub batch_max: Option<usize>,
}

/// capacity.json.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CapacityReport {
    /// Layout version.
    pub capacity_version: u32,
    /// `payauth sweep`.
    pub tool: String,
    /// Start of the sweep, s since the Unix epoch.
    pub started_at_unix_s: f64,
    /// What was swept.
    pub target: String,
    /// The dataset, when the engine was swept.
    pub dataset: Option<DatasetInfo>,
    /// Settings.
    pub settings: SweepSettings,
    /// The build.
    pub build: BuildInfo,
    /// The machine.
    pub machine: MachineInfo,
    /// One result per shard count.
    pub results: Vec<ShardResult>,
    /// Capacity against shards.
    pub scaling: Scaling,
    /// The sizing answer, if asked and possible.
    pub sizing: Option<Sizing>,
    /// Why the sizing question has no answer, if asked and impossible.
    pub sizing_impossible: Option<String>,
    /// Files written.
    pub files: Vec<String>,
}

/// Progress on stderr: a spinner with the current step (when drawing is on), and a log line
/// per step (above the spinner, or plain lines when not drawing), unless quiet.
struct Progress {
    bar: Option<ProgressBar>,
    quiet: bool,
}

impl Progress {
    fn new(opts: &SweepOptions) -> Progress {
        let bar = (opts.progress && !opts.quiet).then(|| {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template("{spinner} {elapsed_precise} {wide_msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        Progress {
            bar,
            quiet: opts.quiet,
        }
    }

    fn status(&self, msg: String) {
        if let Some(bar) = &self.bar {
            bar.set_message(msg);
        }
    }

    fn log(&self, line: String) {
        match &self.bar {
            Some(bar) => bar.println(line),
            None if !self.quiet => eprintln!("{line}"),
            None => {}
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// Run a sweep against `target`, write the files into `out`, and return the report.
pub fn run(target: &SweepTarget, opts: &SweepOptions, out: &Path) -> Result<CapacityReport> {
    opts.validate()?;
    fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let started_at = SystemTime::now();
    let progress = Progress::new(opts);
    let description = target.describe(opts);
    progress.log(format!("sweeping {description}"));
    let state_dir = out.join(".sweep-state");
    let mut results = Vec::new();
    let mut steps_run = 0usize;
    for &shards in &opts.shards {
        let mut best_so_far: Option<f64> = None;
        let mut run_step = |rate: f64, phase: Phase| -> Result<Step> {
            steps_run += 1;
            progress.status(format!(
                "shards {shards}: step {steps_run} ({}) at {}; best so far {}",
                phase.name(),
                fmt_rate(rate),
                best_so_far.map_or("none".into(), fmt_rate)
            ));
            let step = measure_step(target, shards, rate, phase, opts, &state_dir)?;
            if step.passed() && phase != Phase::Repeat {
                best_so_far = Some(best_so_far.map_or(rate, |b: f64| b.max(rate)));
            }
            progress.log(step.line());
            Ok(step)
        };
        let found = search(opts, &mut run_step)?;
        let mut steps = found.steps;
        let repeats = match found.best {
            Some(best) if opts.repeats > 0 => {
                let mut runs = Vec::new();
                for _ in 0..opts.repeats {
                    runs.push(run_step(best, Phase::Repeat)?);
                }
                let r = summarise_repeats(best, &runs);
                steps.extend(runs);
                Some(r)
            }
            _ => None,
        };
        let knee = knee(&steps, opts.knee_factor);
        let unstable = repeats.as_ref().is_some_and(|r| 2 * r.passed < r.runs);
        let result = ShardResult {
            shards,
            unstable,
            capacity_per_sec: found.best,
            lower_bound: found.limit.is_lower_bound(),
            limit_text: found.limit.describe(),
            limit: found.limit,
            knee,
            repeats,
            steps,
        };
        progress.log(result_line(&result));
        results.push(result);
    }
    progress.finish();

    let points: Vec<(usize, f64)> = results
        .iter()
        .filter_map(|r| r.capacity_per_sec.map(|c| (r.shards, c)))
        .collect();
    let fit_points: Vec<(f64, f64)> = points.iter().map(|&(n, c)| (n as f64, c)).collect();
    let (usl, no_fit) = match usl::fit(&fit_points) {
        Ok(f) => (Some(f), None),
        Err(why) => (None, Some(why)),
    };
    let scaling = Scaling {
        points,
        usl,
        no_fit,
    };
    let any_lower_bound = results.iter().any(|r| r.lower_bound);
    let unstable: Vec<usize> = results
        .iter()
        .filter(|r| r.unstable)
        .map(|r| r.shards)
        .collect();
    let (sizing, sizing_impossible) = match &opts.sizing {
        Some(ask) => match size(ask, &scaling, any_lower_bound, &description, &unstable) {
            Ok(mut s) => {
                if unstable.contains(&s.shards_per_host) {
                    s.assumptions.push(format!(
                        "UNRELIABLE: this rests on {} shards, where most repeats of the \
                         capacity failed its SLOs: the machine's noise decided that capacity",
                        s.shards_per_host
                    ));
                } else if !unstable.is_empty() {
                    s.assumptions.push(format!(
                        "left out: {unstable:?} shards, where most repeats of the capacity \
                         failed its SLOs"
                    ));
                }
                (Some(s), None)
            }
            Err(why) => (None, Some(why)),
        },
        None => (None, None),
    };
    let mut report = CapacityReport {
        capacity_version: CAPACITY_VERSION,
        tool: format!("payauth {} sweep", env!("CARGO_PKG_VERSION")),
        started_at_unix_s: started_at
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64()),
        target: description,
        dataset: match target {
            SweepTarget::Engine { info, .. } => Some((**info).clone()),
            SweepTarget::StandIn(_) => None,
        },
        settings: settings(opts),
        build: BuildInfo::current(),
        machine: MachineInfo::current(),
        results,
        scaling,
        sizing,
        sizing_impossible,
        files: Vec::new(),
    };
    let mut files = vec![CAPACITY_FILE.to_string(), SWEEP_CSV_FILE.to_string()];
    files.extend(sweep_plots::write_plots(out, &report)?);
    report.files = files;
    write_csv(&out.join(SWEEP_CSV_FILE), &report)?;
    let json = serde_json::to_string_pretty(&report).context("serialising capacity.json")?;
    write_atomically(&out.join(CAPACITY_FILE), json.as_bytes())?;
    Ok(report)
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, bytes).with_context(|| format!("cannot write {}", tmp.display()))?;
    fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
}

fn settings(opts: &SweepOptions) -> SweepSettings {
    SweepSettings {
        slos: opts.slos.clone(),
        rates: opts.rates.clone(),
        shards: opts.shards.clone(),
        durability: durability_name(opts.durability),
        warmup_ns: duration_ns(opts.warmup),
        step_ns: duration_ns(opts.step),
        interval_ns: opts.interval_ns(),
        repeats: opts.repeats,
        retries: opts.retries,
        start_rate_per_sec: opts.start_rate,
        max_rate_per_sec: opts.max_rate,
        growth: opts.growth,
        precision: opts.precision,
        knee_factor: opts.knee_factor,
        achieved_share_min: opts.achieved_share_min,
        backlog_growth_max: opts.backlog_growth_max,
        submit_batch: opts.submit_batch,
        batch_max: opts.batch_max,
    }
}

/// Measure one step at `rate` (or explain why it cannot be run).
fn measure_step(
    target: &SweepTarget,
    shards: usize,
    rate: f64,
    phase: Phase,
    opts: &SweepOptions,
    state_dir: &Path,
) -> Result<Step> {
    let want_s = opts.warmup.as_secs_f64() + opts.step.as_secs_f64();
    let want = (rate * want_s).ceil() as usize + 1;
    let (len, short) = match target.rows() {
        Some(rows) if rows < want => (rows, true),
        _ => (want, false),
    };
    if short {
        let measured_s = (len as f64 - 1.0) / rate - opts.warmup.as_secs_f64();
        if measured_s < SHORT_STEP_SHARE_MIN * opts.step.as_secs_f64() {
            return Ok(Step::not_run(
                shards,
                phase,
                rate,
                format!(
                    "the dataset is too short: {} for {} of warmup and {} of step needs {want} \
                     requests, it has {len} (less than half the step would be measured)",
                    fmt_rate(rate),
                    fmt_ns(duration_ns(opts.warmup)),
                    fmt_ns(duration_ns(opts.step)),
                ),
            ));
        }
    }
    let mut m = MeasureOptions::new(Mode::Rate { per_sec: rate });
    m.warmup = opts.warmup;
    m.interval = Duration::from_nanos(opts.interval_ns());
    m.submit_batch = opts.submit_batch;
    m.progress = false;
    let measured = target
        .drive(shards, len, &m, opts, state_dir)
        .with_context(|| format!("step at {} with {shards} shards", fmt_rate(rate)))?;
    Ok(judge(&measured, shards, phase, rate, short, opts))
}

fn summarise_repeats(rate: f64, runs: &[Step]) -> Repeats {
    let achieved: Vec<f64> = runs.iter().filter_map(|s| s.achieved_per_sec).collect();
    let p99: Vec<f64> = runs.iter().map(|s| s.latency_ns.p99 as f64).collect();
    let p999: Vec<f64> = runs.iter().map(|s| s.latency_ns.p99_9 as f64).collect();
    Repeats {
        offered_per_sec: rate,
        runs: runs.len(),
        passed: runs.iter().filter(|s| s.passed()).count(),
        achieved_per_sec: Spread::of(&achieved),
        p99_ns: Spread::of(&p99),
        p99_9_ns: Spread::of(&p999),
    }
}

fn result_line(r: &ShardResult) -> String {
    let mut s = format!("shards {}: capacity ", r.shards);
    match r.capacity_per_sec {
        Some(c) if r.lower_bound => {
            let _ = write!(s, "at least {}", fmt_rate(c));
        }
        Some(c) => s.push_str(&fmt_rate(c)),
        None => s.push_str("none"),
    }
    let _ = write!(s, " ({})", r.limit_text);
    if r.unstable {
        s.push_str(
            "; UNSTABLE: most repeats at this rate failed, so noise decided it (a quieter \
             machine, longer --step or a looser SLO is needed)",
        );
    }
    s
}

fn knee_text(k: &Option<Knee>) -> String {
    match k {
        None => "no step measured".into(),
        Some(k) => match (k.knee_per_sec, k.knee_p99_ns) {
            (Some(rate), Some(p99)) => format!(
                "{} (p99 {} > {}x the low-load {} at {}{})",
                fmt_rate(rate),
                fmt_ns(p99),
                k.factor,
                fmt_ns(k.low_load_p99_ns),
                fmt_rate(k.low_load_per_sec),
                k.below_knee_per_sec.map_or(String::new(), |b| format!(
                    "; last rate below it {}",
                    fmt_rate(b)
                ))
            ),
            _ => format!(
                "not reached: p99 stayed within {}x the low-load {} up to {}",
                k.factor,
                fmt_ns(k.low_load_p99_ns),
                k.below_knee_per_sec.map_or("-".into(), fmt_rate)
            ),
        },
    }
}

impl CapacityReport {
    /// The terminal summary.
    pub fn summary(&self) -> String {
        let mut s = String::new();
        let slos: Vec<&str> = self.settings.slos.iter().map(|x| x.text.as_str()).collect();
        let _ = writeln!(
            s,
            "capacity sweep of {} under {}",
            self.target,
            slos.join(", ")
        );
        for r in &self.results {
            let _ = writeln!(s, "{}", result_line(r));
            let _ = writeln!(s, "  knee: {}", knee_text(&r.knee));
            if let Some(rep) = &r.repeats {
                let _ = writeln!(
                    s,
                    "  repeats at {}: {}/{} passed; achieved {} .. {} (stdev {:.0}/s); p99 {} .. {}",
                    fmt_rate(rep.offered_per_sec),
                    rep.passed,
                    rep.runs,
                    fmt_rate(rep.achieved_per_sec.min),
                    fmt_rate(rep.achieved_per_sec.max),
                    rep.achieved_per_sec.stdev,
                    fmt_ns(rep.p99_ns.min as u64),
                    fmt_ns(rep.p99_ns.max as u64),
                );
            }
        }
        if self.results.len() > 1 {
            let _ = writeln!(s, "scaling (shards: capacity):");
            for (n, c) in &self.scaling.points {
                let fitted = self.scaling.usl.as_ref().map_or(String::new(), |f| {
                    format!("  (USL {})", fmt_rate(f.at(*n as f64)))
                });
                let _ = writeln!(s, "  {n:>3}: {}{fitted}", fmt_rate(*c));
            }
        }
        match (&self.scaling.usl, &self.scaling.no_fit) {
            (Some(f), _) => {
                let _ =
                    writeln!(
                    s,
                    "USL fit: lambda {} per shard, sigma (contention) {:.4}, kappa (coherency) \
                     {:.6}{}; R² {} with {} degree(s) of freedom, RMSE {}{}",
                    fmt_rate(f.lambda),
                    f.sigma,
                    f.kappa,
                    if f.lambda_fitted { "" } else { " (lambda = measured 1-shard capacity)" },
                    f.r_squared.map_or("n/a".into(), |r| format!("{r:.4}")),
                    f.degrees_of_freedom,
                    fmt_rate(f.rmse),
                    f.peak_n
                        .map_or(String::new(), |p| format!("; peak at {p:.1} shards"))
                );
            }
            (None, Some(why)) => {
                let _ = writeln!(s, "USL: {why}");
            }
            _ => {}
        }
        if let Some(z) = &self.sizing {
            let _ = writeln!(s, "sizing: {}", z.answer);
            for a in &z.assumptions {
                let _ = writeln!(s, "  - {a}");
            }
        }
        if let Some(why) = &self.sizing_impossible {
            let _ = writeln!(s, "sizing: impossible: {why}");
        }
        let _ = write!(s, "wrote: {}", self.files.join(", "));
        s
    }
}

fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}

/// sweep.csv: one row per step, in the order run.
pub fn write_csv(path: &Path, report: &CapacityReport) -> Result<()> {
    let mut s = String::from(
        "shards,phase,offered_per_sec,sent_per_sec,achieved_per_sec,measured,measured_s,\
         p50_ns,p90_ns,p99_ns,p99_9_ns,max_ns,service_p99_ns,sender_lag_p99_ns,backlog_growth,\
         short,retried,pass,verdict,reason\n",
    );
    let opt = |v: Option<f64>| v.map_or(String::new(), |v| format!("{v:.1}"));
    for r in &report.results {
        for st in &r.steps {
            let _ = writeln!(
                s,
                "{},{},{:.1},{},{},{},{:.3},{},{},{},{},{},{},{},{},{},{},{},{},{}",
                st.shards,
                st.phase.name(),
                st.offered_per_sec,
                opt(st.sent_per_sec),
                opt(st.achieved_per_sec),
                st.measured,
                st.measured_s,
                st.latency_ns.p50,
                st.latency_ns.p90,
                st.latency_ns.p99,
                st.latency_ns.p99_9,
                st.latency_ns.max,
                st.service_p99_ns,
                st.sender_lag_p99_ns,
                st.backlog
                    .map_or(String::new(), |b| format!("{:.5}", b.growth)),
                st.short,
                st.retried,
                st.passed(),
                match st.verdict {
                    Verdict::Pass => "pass",
                    Verdict::Fail => "fail",
                    Verdict::NotRun => "not-run",
                },
                csv_field(&st.reasons.join("; ")),
            );
        }
    }
    write_atomically(path, s.as_bytes())
}

/// Read a capacity.json back.
pub fn read_report(path: &Path) -> Result<CapacityReport> {
    let text =
        fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text)
        .with_context(|| format!("{} is not a capacity.json", path.display()))
}

/// Stop a sweep whose options cannot work before anything runs.
pub fn check_target(target: &SweepTarget, opts: &SweepOptions) -> Result<()> {
    if matches!(target, SweepTarget::StandIn(_)) && opts.durability != Durability::None {
        bail!("--durability applies to the engine, not to a --stand-in");
    }
    Ok(())
}

#[cfg(test)]
mod tests;
