//! `payauth durability-bench`: the price of durability, measured in one run. The same
//! dataset goes through a fresh engine per durability mode (in memory, then journaled into a
//! fresh state directory), closed loop or open loop at a fixed rate, rounds alternating the
//! order of the modes; it reports each mode's median throughput and latency percentiles, their
//! ratios to in-memory, and checks that every mode made the same decisions.

use std::fmt;
use std::fs;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use payauth_engine::{Decision, Durability, Engine};

use crate::dataset::Dataset;
use crate::durable::{self, durability_name};
use crate::measure::{self, fmt_ns, MeasureOptions, Mode};
use crate::replay::{self, ReplayOptions};
use crate::report::Percentiles;

/// How the benchmark runs.
#[derive(Clone, Debug)]
pub struct DurabilityBenchOptions {
    /// The dataset folder.
    pub dataset: PathBuf,
    /// The modes compared; the first is the baseline the ratios are against.
    pub modes: Vec<Durability>,
    /// Rounds; each runs every mode once, the order rotated per round.
    pub rounds: usize,
    /// Engine shards; `None` is one per core.
    pub shards: Option<usize>,
    /// Engine batch size (most requests a shard decides and journals in one pass).
    pub batch_max: Option<usize>,
    /// Most requests per submitted batch.
    pub submit_batch: usize,
    /// Closed loop: most requests outstanding.
    pub in_flight: usize,
    /// Open loop at this rate instead of closed loop.
    pub rate: Option<f64>,
    /// Leading period left out of the measurements.
    pub warmup: Duration,
    /// Where the state directories go (each run's is removed after it); must be on the disk
    /// being measured.
    pub state_root: PathBuf,
}

/// One mode's runs.
#[derive(Clone, Debug)]
pub struct ModeResult {
    /// The mode.
    pub mode: Durability,
    /// Decisions per second of each round.
    pub throughput: Vec<f64>,
    /// Latency percentiles of each round, ns.
    pub latency: Vec<Percentiles>,
}

impl ModeResult {
    /// The median round by throughput: (throughput, its latency percentiles).
    pub fn median(&self) -> (f64, Percentiles) {
        let mut order: Vec<usize> = (0..self.throughput.len()).collect();
        order.sort_by(|&a, &b| self.throughput[a].total_cmp(&self.throughput[b]));
        let m = order[order.len() / 2];
        (self.throughput[m], self.latency[m])
    }
}

/// What the benchmark measured.
#[derive(Clone, Debug)]
pub struct DurabilityBenchReport {
    /// Requests per run.
    pub requests: usize,
    /// Shards and batch size used.
    pub shards: usize,
    /// Engine batch size.
    pub batch_max: usize,
    /// How it was driven, for the header.
    pub driven: String,
    /// One per mode, in the order asked.
    pub modes: Vec<ModeResult>,
}

impl fmt::Display for DurabilityBenchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} requests, shards {}, batch_max {}, tables pre-sized for the run, {}; median of \
             {} round(s) (rounds alternate the order of the modes)",
            self.requests,
            self.shards,
            self.batch_max,
            self.driven,
            self.modes.first().map_or(0, |m| m.throughput.len())
        )?;
        writeln!(
            f,
            "{:<12} {:>14} {:>8} {:>10} {:>10} {:>10} {:>10} {:>10}",
            "durability", "decisions/s", "ratio", "p50", "p99", "p99.9", "max", "p99 ratio"
        )?;
        let (base_tp, base_lat) = self.modes[0].median();
        for m in &self.modes {
            let (tp, lat) = m.median();
            writeln!(
                f,
                "{:<12} {:>14.0} {:>8.2} {:>10} {:>10} {:>10} {:>10} {:>10.2}",
                durability_name(m.mode),
                tp,
                tp / base_tp,
                fmt_ns(lat.p50),
                fmt_ns(lat.p99),
                fmt_ns(lat.p99_9),
                fmt_ns(lat.max),
                lat.p99 as f64 / base_lat.p99.max(1) as f64
            )?;
        }
        write!(
            f,
            "every mode made the same {} decisions; latency counts from the intended send \
             (closed loop: the submit), percentiles above p99.9 carry the VM's scheduling pauses",
            self.requests
        )
    }
}

/// Run the benchmark.
pub fn run(opts: &DurabilityBenchOptions) -> Result<DurabilityBenchReport> {
    ensure!(!opts.modes.is_empty(), "name at least one durability mode");
    ensure!(
        (1..=100).contains(&opts.rounds),
        "rounds {} is outside 1..=100",
        opts.rounds
    );
    let dataset = Dataset::load(&opts.dataset).context("invalid dataset")?;
    let base = ReplayOptions {
        shards: opts.shards,
        batch_max: opts.batch_max,
        ..ReplayOptions::default()
    };
    let mut config = replay::config(&base)?;
    // Tables sized for the whole run, so no mode pays for growing them mid-run (the cost
    // compared is the journal's, not a rehash's).
    replay::size_tables(&mut config, &base, dataset.traffic.len());
    let mode = match opts.rate {
        Some(per_sec) => Mode::Rate { per_sec },
        None => Mode::ClosedLoop {
            in_flight: opts.in_flight,
        },
    };
    let mut measure_opts = MeasureOptions::new(mode);
    measure_opts.submit_batch = opts.submit_batch;
    measure_opts.warmup = opts.warmup;
    measure_opts.progress = false;
    measure_opts.validate()?;
    fs::create_dir_all(&opts.state_root)
        .with_context(|| format!("cannot create {}", opts.state_root.display()))?;

    let mut results: Vec<ModeResult> = opts
        .modes
        .iter()
        .map(|&mode| ModeResult {
            mode,
            throughput: Vec::new(),
            latency: Vec::new(),
        })
        .collect();
    let mut reference: Option<Vec<Decision>> = None;
    for round in 0..opts.rounds {
        for i in 0..opts.modes.len() {
            let which = (i + round) % opts.modes.len();
            let durability = opts.modes[which];
            let state = opts
                .state_root
                .join(format!("bench-state-{}-{round}", std::process::id()));
            let _ = fs::remove_dir_all(&state);
            let mut config = config.clone();
            config.journal = durable::journal_in(&state, durability);
            // Snapshots are not what is measured here.
            config.snapshot_every_records = 0;
            let engine = Engine::start(config, dataset.accounts.clone(), dataset.tokens.clone())
                .context("cannot start the engine")?;
            let m = measure::drive(&engine, &dataset.traffic, &measure_opts)?;
            engine
                .shutdown(dataset.last_ts_ns())
                .context("cannot shut the engine down")?;
            let _ = fs::remove_dir_all(&state);
            ensure!(
                m.stats.measured > 0,
                "the {} run ended within the warmup ({}), so nothing was measured: lower \
                 --warmup or use a larger dataset",
                durability_name(durability),
                fmt_ns(opts.warmup.as_nanos() as u64)
            );
            match &reference {
                None => reference = Some(m.decisions.clone()),
                Some(r) => ensure!(
                    *r == m.decisions,
                    "durability {} decided differently from {}: decisions must not depend on \
                     the durability mode",
                    durability_name(durability),
                    durability_name(opts.modes[0])
                ),
            }
            let r = &mut results[which];
            r.throughput
                .push(m.stats.throughput_per_sec().unwrap_or(0.0));
            r.latency.push(Percentiles::of(&m.latency));
        }
    }
    Ok(DurabilityBenchReport {
        requests: dataset.traffic.len(),
        shards: config.shards,
        batch_max: config.batch_max,
        driven: match mode {
            Mode::Rate { per_sec } => format!("open loop at {per_sec:.0}/s"),
            _ => format!(
                "closed loop, {} in flight, submit batches of {}",
                opts.in_flight, opts.submit_batch
            ),
        },
        modes: results,
    })
}
