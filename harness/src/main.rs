//! The `payauth` command line: a thin layer over the payauth-harness library (replay a
//! dataset through the engine; generate, convert and inspect datasets).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use clap::{ArgGroup, Parser, Subcommand, ValueEnum};
use payauth_engine::Durability;
use payauth_harness::bench::{self, BenchOptions};
use payauth_harness::measure::{self, MeasureOptions, Mode};
use payauth_harness::replay::{self, ReplayOptions};
use payauth_harness::sweep::{self, SizingOptions, SweepOptions, SweepTarget};
use payauth_harness::traffic_cli::{self, ConvertArgs, GenerateArgs, InspectArgs};
use payauth_harness::{compare, durability_bench, durable, journal_export, report};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// payauth: drive the payauth authorization engine with recorded or generated traffic.
#[derive(Debug, Parser)]
#[command(name = "payauth", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Replay a dataset folder (accounts.csv, tokens.csv, traffic.csv) through the engine and
    /// write outcomes.csv and balances.csv; with --pace, --rate or --closed-loop, also measure
    /// latency and write report.json, .hlog, .hgrm and .svg reports.
    #[command(group(ArgGroup::new("mode").args(["pace", "rate", "closed_loop"])))]
    Replay {
        /// The dataset folder.
        dataset_dir: PathBuf,
        /// Folder for outcomes.csv and balances.csv, and a measured run's reports (created
        /// if missing).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Engine shards (owner threads), 1..=256; default one per core.
        #[arg(long, value_name = "N")]
        shards: Option<usize>,
        /// Most requests a shard decides in one pass, 1..=1048576; default 4096.
        #[arg(long, value_name = "N")]
        batch_max: Option<usize>,
        /// Hold life from its authorization or last increment, ns; default 7 days.
        #[arg(long, value_name = "NS")]
        ttl_ns: Option<i64>,
        /// Duplicate window from a record's ts_ns, ns; default 24 hours.
        #[arg(long, value_name = "NS")]
        window_ns: Option<i64>,
        /// How long a closed or expired hold stays referable, ns; default 45 days.
        #[arg(long, value_name = "NS")]
        retention_ns: Option<i64>,
        /// Batches that may wait in one shard's queue before the engine pushes back
        /// (default 64). An open-loop sender submits small batches, so high rates need more.
        #[arg(long, value_name = "N")]
        queue_depth: Option<usize>,
        /// Holds each shard's tables are sized for before they must grow (duplicate records
        /// get twice the room). Default: the whole run, requests / shards (at least 65536),
        /// capped so the tables, touched at start, take at most a quarter of the memory.
        /// Growing copies a table while its shard waits, which a latency measurement would
        /// charge to the engine.
        #[arg(long, value_name = "N")]
        holds_hint: Option<usize>,
        /// Open loop at the recorded timestamps (`recorded`), --speed times faster.
        #[arg(long, value_enum, value_name = "PACE")]
        pace: Option<Pace>,
        /// With --pace recorded: play the recording X times faster (default 1).
        #[arg(long, value_name = "X", requires = "pace")]
        speed: Option<f64>,
        /// Open loop at a fixed rate of R requests per second.
        #[arg(long, value_name = "R")]
        rate: Option<f64>,
        /// Closed loop: flat out, at most --in-flight requests outstanding.
        #[arg(long)]
        closed_loop: bool,
        /// With --closed-loop: most requests submitted and not yet decided (default 64).
        #[arg(long, value_name = "N", requires = "closed_loop")]
        in_flight: Option<usize>,
        /// Leading period left out of the measurements (`500ms`, `2s`, `1m`).
        #[arg(long, value_name = "DURATION", value_parser = measure::parse_duration, requires = "mode")]
        warmup: Option<Duration>,
        /// Most requests per submitted batch in a measured run (default 256).
        #[arg(long, value_name = "N", requires = "mode")]
        submit_batch: Option<usize>,
        /// Open loop: least time between two submits (default 50us); requests due meanwhile
        /// go in one batch. Longer: bigger batches, less handoff cost, more added latency.
        #[arg(long, value_name = "DURATION", value_parser = measure::parse_duration, requires = "mode")]
        linger: Option<Duration>,
        /// Length of the per-interval histograms (default 1s).
        #[arg(long, value_name = "DURATION", value_parser = measure::parse_duration, requires = "mode")]
        interval: Option<Duration>,
        /// Collector threads waiting for decisions (default 1).
        #[arg(long, value_name = "N", requires = "mode")]
        collectors: Option<usize>,
        /// Journal every decision into this state directory before it is released (missing
        /// or empty for a fresh run; see --resume). Released decisions stream to
        /// outcomes.csv.part in traffic order until the replay completes.
        #[arg(long, value_name = "DIR")]
        state: Option<PathBuf>,
        /// With --state: `sync` (default; one write + fdatasync per batch before its
        /// decisions are released), `async:INTERVAL` (fdatasync at most INTERVAL apart, e.g.
        /// async:5ms), or `none` (in memory, no --state).
        #[arg(long, value_name = "MODE", value_parser = durable::parse_durability)]
        durability: Option<Durability>,
        /// Recover the state in --state (after a crash or kill) and continue from the first
        /// request not yet durable; outcomes.csv and balances.csv then equal an
        /// uninterrupted run's. A missing or empty --state is a fresh start.
        #[arg(long, requires = "state", conflicts_with = "mode")]
        resume: bool,
    },
    /// Put two measured runs' report.json side by side, with B/A ratios.
    Compare {
        /// Report A: a report.json, or the folder holding one.
        a: PathBuf,
        /// Report B: a report.json, or the folder holding one.
        b: PathBuf,
    },
    /// Measure the engine against a plain lock-based baseline of the same rules on a
    /// generated authorize-heavy workload, in one process and one run, and check that both
    /// make the same decisions.
    Bench {
        /// Accounts (one token each), 1..=10000000.
        #[arg(long, value_name = "N", default_value_t = BenchOptions::default().accounts)]
        accounts: usize,
        /// Requests, at most 20000000.
        #[arg(long, value_name = "M", default_value_t = BenchOptions::default().requests)]
        requests: usize,
        /// Zipf exponent of the account choice; 0 is uniform.
        #[arg(long, value_name = "S", default_value_t = BenchOptions::default().zipf)]
        zipf: f64,
        /// Engine shards and baseline worker threads, 1..=256; default one per core.
        #[arg(long, value_name = "N")]
        shards: Option<usize>,
        /// Requests per submitted batch (and per baseline lock hold).
        #[arg(long, value_name = "N", default_value_t = BenchOptions::default().batch)]
        batch: usize,
        /// Batches in flight in the engine's closed loop; default max(4, 2 * shards).
        #[arg(long, value_name = "N")]
        in_flight: Option<usize>,
        /// Workload seed; the same seed gives the same workload.
        #[arg(long, value_name = "S", default_value_t = BenchOptions::default().seed)]
        seed: u64,
    },
    /// Capacity planning: open-loop steps of rising load until the latency objectives break;
    /// the highest sustainable rate, the knee, shard scaling (USL fit) and a sizing answer,
    /// written to capacity.json, sweep.csv and SVG plots.
    Sweep(Box<SweepArgs>),
    /// Generate a dataset folder from a seed: realistic issuer traffic (steady or Singles'
    /// Day) or the scripted coverage dataset.
    Generate(GenerateArgs),
    /// Convert a dataset's traffic between traffic.csv and the binary traffic.bin (both ways,
    /// exactly).
    Convert(ConvertArgs),
    /// Summarise a dataset: counts by kind, rate over time, hottest accounts, repeats.
    Inspect(InspectArgs),
    /// Measure the price of durability in one run: the dataset through a fresh engine per
    /// mode (none, sync, async:INTERVAL), rounds alternating their order; prints each mode's
    /// median throughput and latency percentiles with ratios to the first mode, and checks
    /// every mode decided the same.
    DurabilityBench {
        /// The dataset folder.
        dataset_dir: PathBuf,
        /// Modes to compare, comma-separated; ratios are against the first.
        #[arg(long, value_name = "LIST", value_delimiter = ',', default_value = "none,sync", value_parser = durable::parse_durability)]
        modes: Vec<Durability>,
        /// Rounds of every mode.
        #[arg(long, value_name = "N", default_value_t = 3)]
        rounds: usize,
        /// Engine shards; default one per core.
        #[arg(long, value_name = "N")]
        shards: Option<usize>,
        /// Engine batch size (requests decided and journaled per pass); default 4096.
        #[arg(long, value_name = "N")]
        batch_max: Option<usize>,
        /// Requests per submitted batch.
        #[arg(long, value_name = "N", default_value_t = 1024)]
        submit_batch: usize,
        /// Closed loop: most requests outstanding.
        #[arg(long, value_name = "N", default_value_t = 16384)]
        in_flight: usize,
        /// Open loop at R requests per second instead of closed loop.
        #[arg(long, value_name = "R")]
        rate: Option<f64>,
        /// Leading period left out of the measurements.
        #[arg(long, value_name = "DURATION", value_parser = measure::parse_duration, default_value = "200ms")]
        warmup: Duration,
        /// Where the per-run state directories go (removed after each run): on the disk
        /// being measured, not a tmpfs.
        #[arg(long, value_name = "DIR", default_value = ".payauth-bench-state")]
        state_root: PathBuf,
    },
    /// Turn a state directory's journal back into a dataset (accounts and tokens as of the
    /// oldest snapshot kept, traffic with its original timestamps) plus
    /// expected-outcomes.csv, the decisions the journal recorded. Reads the state in place.
    JournalExport {
        /// The state directory (`payauth replay --state`, or a host's `JournalConfig::dir`).
        state_dir: PathBuf,
        /// Dataset folder to write (created if missing).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
}

/// `payauth sweep`.
#[derive(Debug, clap::Args)]
struct SweepArgs {
    /// The dataset folder whose accounts, tokens and traffic each step replays (a prefix of
    /// the traffic, never cycled); not with --stand-in.
    #[arg(required_unless_present = "stand_in", conflicts_with = "stand_in")]
    dataset_dir: Option<PathBuf>,
    /// Folder for capacity.json, sweep.csv and the plots (created if missing).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// A latency objective on latency from the intended send time: `p99<=1ms`,
    /// `p99.9<=5ms`, `max<=20ms`. Repeat for several; a step must meet all.
    #[arg(long, value_name = "SLO", required = true, value_parser = sweep::parse_slo)]
    slo: Vec<sweep::Slo>,
    /// `auto` (ramp ×2 from --start-rate, then bisect) or rates such as `1000,2000,5k`.
    #[arg(long, value_name = "LIST|auto", default_value = "auto", value_parser = sweep::parse_rates)]
    rates: sweep::Rates,
    /// Shard counts to search, e.g. `1,2,4`; default one per core. With 3 or more, the
    /// Universal Scalability Law is fitted.
    #[arg(long, value_name = "LIST", value_parser = |t: &str| sweep::parse_shards(t).map(ShardList))]
    shards: Option<ShardList>,
    /// Engine durability for every step: `none`, `sync` or `async:INTERVAL` (`async:5ms`). With a journal each
    /// step gets a fresh state directory under --out, deleted after it.
    #[arg(long, value_name = "MODE", default_value = "none", value_parser = durable::parse_durability)]
    durability: Durability,
    /// Leading period of each step not measured.
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = measure::parse_duration)]
    warmup: Duration,
    /// Measured period of each step.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = measure::parse_duration)]
    step: Duration,
    /// Interval of the backlog readings (default: a tenth of --step).
    #[arg(long, value_name = "DURATION", value_parser = measure::parse_duration)]
    interval: Option<Duration>,
    /// Runs of the final point after the search, for its spread.
    #[arg(long, value_name = "N", default_value_t = 3)]
    repeats: usize,
    /// Times a failing step is run again before the failure is believed (a shared
    /// machine's hiccup can fail a step well within capacity).
    #[arg(long, value_name = "N", default_value_t = 1)]
    retries: usize,
    /// First rate of an automatic search (`2000`, `40k`).
    #[arg(long, value_name = "R", default_value = "1000", value_parser = sweep::parse_rate)]
    start_rate: f64,
    /// Highest rate an automatic search offers.
    #[arg(long, value_name = "R", value_parser = sweep::parse_rate)]
    max_rate: Option<f64>,
    /// Stop bisecting when the passing and failing rates are this close (`2%`).
    #[arg(long, value_name = "P%", default_value = "2%", value_parser = sweep::parse_percent)]
    precision: f64,
    /// The knee: the first rate whose p99 exceeds this many times the lowest step's p99.
    #[arg(long, value_name = "K", default_value_t = 2.0)]
    knee_factor: f64,
    /// Most requests per submitted batch.
    #[arg(long, value_name = "N", default_value_t = 256)]
    submit_batch: usize,
    /// Engine batch size (default 4096).
    #[arg(long, value_name = "N")]
    batch_max: Option<usize>,
    /// Size for this many requests per second.
    #[arg(long, value_name = "X", value_parser = sweep::parse_rate)]
    target_tps: Option<f64>,
    /// With --target-tps: capacity kept free (`30%`).
    #[arg(long, value_name = "H%", default_value = "30%", value_parser = sweep::parse_percent, requires = "target_tps")]
    headroom: f64,
    /// With --target-tps: cores of one host.
    #[arg(long, value_name = "K", default_value_t = 16, requires = "target_tps")]
    cores_per_host: usize,
    /// With --target-tps: cores per host kept for everything but shards.
    #[arg(long, value_name = "N", default_value_t = 1, requires = "target_tps")]
    overhead_cores: usize,
    /// Sweep a stand-in of known capacity instead of the engine: `REQUEST_TIME:WORKERS`
    /// (per shard), e.g. `2ms:16` serves 8000/s per shard. Checks the harness itself.
    #[arg(long, value_name = "TIME:WORKERS", value_parser = sweep::parse_stand_in)]
    stand_in: Option<sweep::StandInSpec>,
    /// No progress display and no step log on stderr (the summary still goes to stdout).
    #[arg(long)]
    quiet: bool,
}

/// `--shards 1,2,4` as one value (clap would read a `Vec` as repeated values).
#[derive(Clone, Debug)]
struct ShardList(Vec<usize>);

fn run_sweep(a: SweepArgs) -> Result<()> {
    let mut opts = SweepOptions::new(a.slo);
    opts.rates = a.rates;
    if let Some(ShardList(shards)) = a.shards {
        opts.shards = shards;
    }
    opts.durability = a.durability;
    opts.warmup = a.warmup;
    opts.step = a.step;
    opts.interval = a.interval;
    opts.repeats = a.repeats;
    opts.retries = a.retries;
    opts.start_rate = a.start_rate;
    opts.max_rate = a.max_rate;
    opts.precision = a.precision;
    opts.knee_factor = a.knee_factor;
    opts.submit_batch = a.submit_batch;
    opts.batch_max = a.batch_max;
    opts.quiet = a.quiet;
    opts.sizing = a.target_tps.map(|target_per_sec| SizingOptions {
        target_per_sec,
        headroom: a.headroom,
        cores_per_host: a.cores_per_host,
        overhead_cores: a.overhead_cores,
    });
    opts.validate()?;
    let target = match (a.stand_in, a.dataset_dir) {
        (Some(spec), _) => SweepTarget::StandIn(spec),
        (None, Some(dir)) => SweepTarget::engine(&dir)?,
        (None, None) => anyhow::bail!("give a dataset folder or --stand-in"),
    };
    sweep::check_target(&target, &opts)?;
    let report = sweep::run(&target, &opts, &a.out)?;
    say(format_args!("{}", report.summary()));
    say(format_args!("into {}", a.out.display()));
    Ok(())
}

/// `--pace` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Pace {
    /// The traffic's own `ts_ns`.
    Recorded,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // `{:#}` prints the context chain on one line and never a backtrace.
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Print a line to stdout; a closed pipe (`payauth ... | head`) is not an error worth a
/// panic: the work is done and its files are written.
fn say(args: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let _ = writeln!(std::io::stdout().lock(), "{args}");
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Replay {
            dataset_dir,
            out,
            shards,
            batch_max,
            ttl_ns,
            window_ns,
            retention_ns,
            queue_depth,
            holds_hint,
            pace,
            speed,
            rate,
            closed_loop,
            in_flight,
            warmup,
            submit_batch,
            linger,
            interval,
            collectors,
            state,
            durability,
            resume,
        } => {
            let journal = durable::journal_config(state.as_deref(), durability)?;
            let opts = ReplayOptions {
                shards,
                batch_max,
                hold_ttl_ns: ttl_ns,
                dup_window_ns: window_ns,
                retention_ns,
                holds_per_shard_hint: holds_hint,
                queue_depth,
                journal,
                ..ReplayOptions::default()
            };
            let mode = match (pace, rate, closed_loop) {
                (Some(Pace::Recorded), _, _) => Some(Mode::Recorded {
                    speed: speed.unwrap_or(1.0),
                }),
                (_, Some(per_sec), _) => Some(Mode::Rate { per_sec }),
                (_, _, true) => Some(Mode::ClosedLoop {
                    in_flight: in_flight.unwrap_or(64),
                }),
                _ => None,
            };
            match mode {
                // No mode: as fast as the engine takes it, as before.
                None if opts.journal.is_some() => {
                    let summary = durable::replay_durable(&dataset_dir, &out, &opts, resume)?;
                    say(format_args!("{summary}"));
                }
                None => {
                    let summary = replay::replay(&dataset_dir, &out, &opts)?;
                    say(format_args!("{summary}"));
                }
                Some(mode) => {
                    let mut m = MeasureOptions::new(mode);
                    m.warmup = warmup.unwrap_or(m.warmup);
                    m.submit_batch = submit_batch.unwrap_or(m.submit_batch);
                    m.linger = linger.unwrap_or(m.linger);
                    m.interval = interval.unwrap_or(m.interval);
                    m.collectors = collectors.unwrap_or(m.collectors);
                    let run = replay::replay_measured(&dataset_dir, &out, &opts, &m)?;
                    say(format_args!("{run}"));
                }
            }
        }
        Command::Compare { a, b } => {
            let ra = report::read_report(&a)?;
            let rb = report::read_report(&b)?;
            let c = compare::compare(&a.display().to_string(), &ra, &b.display().to_string(), &rb);
            say(format_args!("{c}"));
        }
        Command::Bench {
            accounts,
            requests,
            zipf,
            shards,
            batch,
            in_flight,
            seed,
        } => {
            let opts = BenchOptions {
                accounts,
                requests,
                zipf,
                shards,
                batch,
                in_flight,
                seed,
            };
            let report = bench::run(&opts)?;
            say(format_args!("{report}"));
            // A faster engine that decides differently is worthless: fail loudly.
            anyhow::ensure!(report.agrees(), "the engine and the baseline disagree");
        }
        Command::Sweep(args) => run_sweep(*args)?,
        Command::Generate(args) => say(format_args!("{}", traffic_cli::generate(&args)?)),
        Command::Convert(args) => say(format_args!("{}", traffic_cli::convert(&args)?)),
        Command::Inspect(args) => say(format_args!("{}", traffic_cli::inspect(&args)?)),
        Command::DurabilityBench {
            dataset_dir,
            modes,
            rounds,
            shards,
            batch_max,
            submit_batch,
            in_flight,
            rate,
            warmup,
            state_root,
        } => {
            let opts = durability_bench::DurabilityBenchOptions {
                dataset: dataset_dir,
                modes,
                rounds,
                shards,
                batch_max,
                submit_batch,
                in_flight,
                rate,
                warmup,
                state_root: state_root.clone(),
            };
            let report = durability_bench::run(&opts);
            // Leave no empty folder behind (a non-empty one is not ours to remove).
            let _ = std::fs::remove_dir(&state_root);
            say(format_args!("{}", report?));
        }
        Command::JournalExport { state_dir, out } => say(format_args!(
            "{}",
            journal_export::export(&state_dir, &out)?
        )),
    }
    Ok(())
}
