//! Replay: load and validate a dataset, feed its traffic through the engine's public API, and
//! write the decisions and the final state. [`replay`] goes as fast as the engine takes it (a
//! few batches in flight, order preserved); [`replay_measured`] paces it open or closed loop
//! through [`crate::measure`] and writes the latency reports too.

use std::collections::VecDeque;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use payauth_engine::{
    AccountSpec, Code, Config, Decision, Engine, ErrorKind, JournalConfig, Request, SubmitError,
    TokenSpec,
};

use crate::dataset::Dataset;
use crate::measure::{self, MeasureOptions};
use crate::output::{self, BALANCES_FILE, OUTCOMES_FILE};
use crate::plots;
use crate::provenance::{self, MachineInfo};
use crate::report::{self, DatasetInfo, EngineSettings, Report, ReportContext};
use crate::rows::Meta;

/// Most requests the harness puts in one submitted batch, whatever `batch_max` says.
pub const CHUNK_LEN_MAX: usize = 1 << 20;
/// Most batches the harness keeps in flight, whatever the options say.
pub const IN_FLIGHT_MAX: usize = 1024;

/// How a replay runs. `None` takes the engine's default.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReplayOptions {
    /// Engine shards ([`Config::shards`]).
    pub shards: Option<usize>,
    /// Engine batch size ([`Config::batch_max`]).
    pub batch_max: Option<usize>,
    /// Hold life ([`Config::hold_ttl_ns`]).
    pub hold_ttl_ns: Option<i64>,
    /// Duplicate window ([`Config::dup_window_ns`]).
    pub dup_window_ns: Option<i64>,
    /// Retention of ended holds ([`Config::retention_ns`]).
    pub retention_ns: Option<i64>,
    /// Requests per submitted batch; default `batch_max`.
    pub chunk_len: Option<usize>,
    /// Submitted batches waiting for decisions at once; default `max(4, 2 * shards)`.
    pub in_flight: Option<usize>,
    /// Batches that may wait in one shard's queue ([`Config::queue_depth`]).
    pub queue_depth: Option<usize>,
    /// Holds each shard's tables are sized for before they grow
    /// ([`Config::holds_per_shard_hint`]); duplicate records get twice the room.
    pub holds_per_shard_hint: Option<usize>,
    /// Journal into this state directory ([`Config::journal`]); `None` is in memory. A
    /// replay never snapshots after the start ([`Config::snapshot_every_records`] = 0), so
    /// the journal holds every decision a resume must write out again.
    pub journal: Option<JournalConfig>,
}

/// What a replay did, for the summary line.
#[derive(Clone, Debug)]
pub struct ReplaySummary {
    /// Requests in traffic.csv (= decisions).
    pub requests: usize,
    /// Accounts loaded.
    pub accounts: usize,
    /// Tokens loaded.
    pub tokens: usize,
    /// Decisions per code, every code listed in ascending order, zeros included.
    pub codes: Vec<(Code, u64)>,
    /// Reading and validating the dataset.
    pub load_elapsed: Duration,
    /// From the first submit to the last decision.
    pub replay_elapsed: Duration,
    /// Engine shards.
    pub shards: usize,
    /// Engine batch size.
    pub batch_max: usize,
    /// Requests per submitted batch.
    pub chunk_len: usize,
    /// Batches in flight at most.
    pub in_flight: usize,
    /// Holds each shard's tables were sized for at start ([`size_tables`]).
    pub holds_per_shard_hint: usize,
    /// The instant the final state was taken at.
    pub as_of_ns: i64,
    /// Where the files went.
    pub out_dir: PathBuf,
}

impl ReplaySummary {
    /// Decisions per second of replay time.
    pub fn decisions_per_sec(&self) -> f64 {
        let secs = self.replay_elapsed.as_secs_f64();
        if secs > 0.0 {
            self.requests as f64 / secs
        } else {
            0.0
        }
    }
}

impl fmt::Display for ReplaySummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "replayed {} requests ({} accounts, {} tokens) in {:.3} s: {:.0} decisions/s",
            self.requests,
            self.accounts,
            self.tokens,
            self.replay_elapsed.as_secs_f64(),
            self.decisions_per_sec()
        )?;
        writeln!(
            f,
            "config: shards {}, batch_max {}, chunk {}, in flight {}, tables for {} holds per shard; load {:.3} s",
            self.shards,
            self.batch_max,
            self.chunk_len,
            self.in_flight,
            self.holds_per_shard_hint,
            self.load_elapsed.as_secs_f64()
        )?;
        let codes: Vec<String> = self
            .codes
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(c, n)| format!("{c}={n}"))
            .collect();
        writeln!(f, "codes: {}", codes.join(" "))?;
        write!(
            f,
            "wrote {} and {} (as of ts_ns {})",
            self.out_dir.join(OUTCOMES_FILE).display(),
            self.out_dir.join(BALANCES_FILE).display(),
            self.as_of_ns
        )
    }
}

/// Bytes the pre-faulted tables of a shard take per unit of
/// [`Config::holds_per_shard_hint`], at most: a hold (88) and its reclamation entry (16),
/// and room for two duplicate records (fingerprints 96, reclamation entries 48, key
/// entries 73-146 as the key table's power-of-two capacity rounds up); README
/// "Performance" has the per-component table. `payauth bench` measures about 280.
pub const TABLE_BYTES_PER_HOLD: u64 = 400;

/// Size every shard's tables for a run of `requests` when `--holds-hint` was not given:
/// `requests / shards` holds (every request of a run may leave a duplicate record for the
/// length of the window, and any of them may open a hold), so the engine never grows a
/// table mid-run. A growth copies a table while its shard waits, which a latency
/// measurement would charge to the engine. The tables are touched at start, so they are
/// capped at a quarter of the machine's memory (`MemTotal`; 16 GiB assumed when unknown)
/// across the shards; a bigger run grows them as it goes. Returns the hint set.
pub fn size_tables(config: &mut Config, opts: &ReplayOptions, requests: usize) -> usize {
    size_tables_within(config, opts, requests, MachineInfo::current().memory_bytes)
}

/// [`size_tables`] on a machine with `memory_bytes` of memory.
fn size_tables_within(
    config: &mut Config,
    opts: &ReplayOptions,
    requests: usize,
    memory_bytes: Option<u64>,
) -> usize {
    if opts.holds_per_shard_hint.is_none() {
        let budget = memory_bytes.unwrap_or(16 << 30) / 4;
        let cap = (budget / TABLE_BYTES_PER_HOLD / config.shards as u64) as usize;
        let default = Config::default().holds_per_shard_hint;
        config.holds_per_shard_hint = requests.div_ceil(config.shards).min(cap).max(default);
    }
    config.holds_per_shard_hint
}

/// The engine configuration a replay runs under: the defaults with `opts` applied, validated.
pub fn config(opts: &ReplayOptions) -> Result<Config> {
    let mut config = Config::default();
    if let Some(shards) = opts.shards {
        config.shards = shards;
    }
    if let Some(batch_max) = opts.batch_max {
        config.batch_max = batch_max;
    }
    if let Some(ns) = opts.hold_ttl_ns {
        config.hold_ttl_ns = ns;
    }
    if let Some(ns) = opts.dup_window_ns {
        config.dup_window_ns = ns;
    }
    if let Some(ns) = opts.retention_ns {
        config.retention_ns = ns;
    }
    if let Some(depth) = opts.queue_depth {
        config.queue_depth = depth;
    }
    if let Some(hint) = opts.holds_per_shard_hint {
        config.holds_per_shard_hint = hint;
    }
    if let Some(journal) = &opts.journal {
        config.journal = Some(journal.clone());
        config.snapshot_every_records = 0;
    }
    config.validate()?;
    Ok(config)
}

/// Start an engine for a replay; a state directory that already holds a state gets a hint
/// at `--resume`.
pub fn start_engine(
    config: Config,
    accounts: Vec<AccountSpec>,
    tokens: Vec<TokenSpec>,
) -> Result<Engine> {
    let dir = config.journal.as_ref().map(|j| j.dir.clone());
    Engine::start(config, accounts, tokens).map_err(|e| match (&dir, e.kind()) {
        (Some(dir), ErrorKind::StateExists) => anyhow::anyhow!(
            "{} holds the state of an earlier run: add --resume to continue it, or name an \
                 empty directory",
            dir.display()
        ),
        _ => anyhow::Error::new(e).context("cannot start the engine"),
    })
}

/// The submission pipeline of an unmeasured replay: `(requests per submitted batch,
/// batches in flight)`, from `opts` or the defaults for `config`, checked.
pub fn pipeline(opts: &ReplayOptions, config: &Config) -> Result<(usize, usize)> {
    let chunk_len = opts.chunk_len.unwrap_or(config.batch_max);
    let in_flight = opts.in_flight.unwrap_or((2 * config.shards).max(4));
    ensure!(
        (1..=CHUNK_LEN_MAX).contains(&chunk_len),
        "chunk length {chunk_len} is outside 1..={CHUNK_LEN_MAX}"
    );
    ensure!(
        (1..=IN_FLIGHT_MAX).contains(&in_flight),
        "batches in flight {in_flight} is outside 1..={IN_FLIGHT_MAX}"
    );
    Ok((chunk_len, in_flight))
}

/// Decisions per code, every code listed in ascending order, zeros included.
pub fn code_counts(decisions: &[Decision]) -> Vec<(Code, u64)> {
    let mut codes: Vec<(Code, u64)> = Code::ALL.iter().map(|&c| (c, 0)).collect();
    for d in decisions {
        if let Some(slot) = codes.iter_mut().find(|(c, _)| *c == d.code) {
            slot.1 += 1;
        }
    }
    codes
}

/// Replay the dataset in `dataset_dir` and write `outcomes.csv` and `balances.csv` into
/// `out_dir`. Nothing is written unless the dataset is valid and every request was decided.
pub fn replay(dataset_dir: &Path, out_dir: &Path, opts: &ReplayOptions) -> Result<ReplaySummary> {
    let mut config = config(opts)?;
    let (chunk_len, in_flight) = pipeline(opts, &config)?;

    let load_start = Instant::now();
    let dataset = Dataset::load(dataset_dir).context("invalid dataset")?;
    let load_elapsed = load_start.elapsed();
    size_tables(&mut config, opts, dataset.traffic.len());
    let as_of_ns = dataset.last_ts_ns();
    let (shards, batch_max) = (config.shards, config.batch_max);
    let holds_per_shard_hint = config.holds_per_shard_hint;
    let (accounts, tokens) = (dataset.accounts.len(), dataset.tokens.len());

    let engine = start_engine(config, dataset.accounts, dataset.tokens)?;
    let replay_start = Instant::now();
    let decisions = run(&engine, &dataset.traffic, chunk_len, in_flight)?;
    let replay_elapsed = replay_start.elapsed();
    let state = engine
        .shutdown(as_of_ns)
        .context("cannot shut the engine down")?;

    output::write_replay_files(out_dir, &decisions, &state.accounts)?;

    Ok(ReplaySummary {
        requests: decisions.len(),
        accounts,
        tokens,
        codes: code_counts(&decisions),
        load_elapsed,
        replay_elapsed,
        shards,
        batch_max,
        chunk_len,
        in_flight,
        holds_per_shard_hint,
        as_of_ns,
        out_dir: out_dir.to_path_buf(),
    })
}

/// What a measured replay did: its report (already written to `report.json`).
#[derive(Clone, Debug)]
pub struct MeasuredReplay {
    /// The report.
    pub report: Report,
    /// Where the files went.
    pub out_dir: PathBuf,
    /// Reading and validating the dataset.
    pub load_elapsed: Duration,
}

impl fmt::Display for MeasuredReplay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}", self.report.summary())?;
        let mut files = vec![OUTCOMES_FILE.to_string(), BALANCES_FILE.to_string()];
        files.extend(self.report.files.iter().cloned());
        write!(
            f,
            "wrote into {}: {} (dataset loaded in {:.3} s)",
            self.out_dir.display(),
            files.join(", "),
            self.load_elapsed.as_secs_f64()
        )
    }
}

/// Replay the dataset in `dataset_dir` through the engine, paced and measured as `measure`
/// says, and write `outcomes.csv` and `balances.csv` (the same bytes as [`replay`]: the
/// requests go in once each, in traffic order) plus the reports into `out_dir`.
pub fn replay_measured(
    dataset_dir: &Path,
    out_dir: &Path,
    opts: &ReplayOptions,
    measure: &MeasureOptions,
) -> Result<MeasuredReplay> {
    let mut config = config(opts)?;
    measure.validate()?;
    let load_start = Instant::now();
    let dataset = Dataset::load(dataset_dir).context("invalid dataset")?;
    let load_elapsed = load_start.elapsed();
    size_tables(&mut config, opts, dataset.traffic.len());
    let info = dataset_info(dataset_dir, &dataset)?;
    let as_of_ns = dataset.last_ts_ns();
    let engine_settings = EngineSettings::from(&config);

    let engine = start_engine(config, dataset.accounts, dataset.tokens)?;
    let measurement = measure::drive(&engine, &dataset.traffic, measure)?;
    let state = engine
        .shutdown(as_of_ns)
        .context("cannot shut the engine down")?;

    output::write_replay_files(out_dir, &measurement.decisions, &state.accounts)?;
    let ctx = ReportContext {
        target: "payauth-engine".into(),
        engine: Some(engine_settings),
        dataset: info,
    };
    let mut report = Report::new(ctx, measure, &measurement);
    let plotted = plots::write_plots(out_dir, &report, &measurement)?;
    report::write_files(out_dir, &mut report, &measurement, &plotted)?;
    Ok(MeasuredReplay {
        report,
        out_dir: out_dir.to_path_buf(),
        load_elapsed,
    })
}

/// What a report says of the dataset loaded from `dataset_dir`: counts, time span, digest,
/// and the generator's seed and parameters when it records them.
pub fn dataset_info(dataset_dir: &Path, dataset: &Dataset) -> Result<DatasetInfo> {
    let digest = provenance::digest_dataset(dataset_dir)?;
    let meta = dataset_meta(dataset_dir);
    Ok(DatasetInfo {
        path: dataset_dir.display().to_string(),
        accounts: dataset.accounts.len() as u64,
        tokens: dataset.tokens.len() as u64,
        requests: dataset.traffic.len() as u64,
        first_ts_ns: dataset.traffic.first().map_or(i64::MIN, |r| r.ts_ns),
        last_ts_ns: dataset.last_ts_ns(),
        seed: meta.as_ref().and_then(|m| m.seed),
        generator: meta
            .map(|m| m.params.into_iter().collect())
            .unwrap_or_default(),
        digest: Some(digest),
    })
}

/// The generator metadata (seed and parameters) a dataset records, if any: a binary
/// `traffic.bin` carries it in its header (only the header is read), a CSV dataset in its
/// `traffic.params` sidecar. Unreadable metadata is reported as none: the dataset itself
/// loaded, and the report is no place to refuse it.
pub(crate) fn dataset_meta(dataset_dir: &Path) -> Option<Meta> {
    use std::io::Read;
    let bin = dataset_dir.join(crate::binfmt::TRAFFIC_BIN_FILE);
    let meta = if bin.exists() {
        let mut head = Vec::new();
        std::fs::File::open(bin)
            .ok()?
            .take(HEADER_READ_BYTES)
            .read_to_end(&mut head)
            .ok()?;
        crate::binfmt::read_header(&head).ok()?.0
    } else {
        Meta::read_sidecar(dataset_dir).ok()?
    };
    (!meta.is_empty()).then_some(meta)
}

/// Bytes read from the front of a binary traffic file to find its header (the fixed part
/// plus at most [`crate::rows::META_BYTES_MAX`] of generator parameters).
const HEADER_READ_BYTES: u64 = 1 << 20;

/// Feed `traffic` through `engine` in batches of `chunk_len`, keeping up to `in_flight`
/// batches submitted and undecided, and return the decisions in traffic order.
///
/// Batches go in in traffic order and their decisions are collected oldest first, so the
/// result lines up with `traffic`; each decision's `request_id` is checked against its
/// request.
pub fn run(
    engine: &Engine,
    traffic: &[Request],
    chunk_len: usize,
    in_flight: usize,
) -> Result<Vec<Decision>> {
    let mut decisions: Vec<Decision> = Vec::with_capacity(traffic.len());
    run_streamed(engine, traffic, chunk_len, in_flight, |_, got| {
        decisions.extend_from_slice(got);
        Ok(())
    })?;
    Ok(decisions)
}

/// [`run`], handing each batch's decisions to `sink` as they are released, oldest batch
/// first: `sink(start, decisions)` answers `traffic[start..start + decisions.len()]`,
/// already checked one for one against those requests.
pub fn run_streamed(
    engine: &Engine,
    traffic: &[Request],
    chunk_len: usize,
    in_flight: usize,
    mut sink: impl FnMut(usize, &[Decision]) -> Result<()>,
) -> Result<()> {
    assert!(
        chunk_len > 0 && in_flight > 0,
        "chunk_len and in_flight must be positive"
    );
    // (decisions to come, index of the batch's first request)
    let mut pending = VecDeque::with_capacity(in_flight);
    let mut collect = |p: payauth_engine::Pending, start: usize| -> Result<()> {
        let got = p.wait().context("waiting for decisions failed")?;
        let end = (start + chunk_len).min(traffic.len());
        check(&traffic[start..end], start, &got)?;
        sink(start, &got)
    };
    for (i, chunk) in traffic.chunks(chunk_len).enumerate() {
        let start = i * chunk_len;
        let mut batch = chunk.to_vec();
        loop {
            if pending.len() >= in_flight {
                let (p, at) = pending.pop_front().expect("in_flight > 0");
                collect(p, at)?;
            }
            match engine.try_submit(batch) {
                Ok(p) => {
                    pending.push_back((p, start));
                    break;
                }
                Err(SubmitError::Full(back)) => {
                    batch = back;
                    match pending.pop_front() {
                        Some((p, at)) => collect(p, at)?,
                        None => {
                            // Full with nothing of ours in flight: wait for room.
                            pending.push_back((engine.submit_async(&batch), start));
                            break;
                        }
                    }
                }
                Err(SubmitError::ShutDown(_)) => bail!("the engine shut down during the replay"),
            }
        }
    }
    while let Some((p, at)) = pending.pop_front() {
        collect(p, at)?;
    }
    Ok(())
}

/// Check a batch's decisions answer `reqs` (traffic rows from `start` on), one for one.
fn check(reqs: &[Request], start: usize, got: &[Decision]) -> Result<()> {
    ensure!(
        got.len() == reqs.len(),
        "the engine answered {} decisions to a batch of {} requests",
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
            "decision {} answers request_id {} but the request (seq {}) has {}",
            i,
            d.request_id,
            start + i,
            r.request_id
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sized(opts: &ReplayOptions, requests: usize, memory: Option<u64>) -> usize {
        let mut config = config(opts).unwrap();
        size_tables_within(&mut config, opts, requests, memory)
    }

    #[test]
    fn tables_are_sized_for_the_run_within_a_quarter_of_memory() {
        let two = ReplayOptions {
            shards: Some(2),
            ..ReplayOptions::default()
        };
        let gib = 1u64 << 30;
        // The whole run, split over the shards.
        assert_eq!(sized(&two, 10_000_000, Some(24 * gib)), 5_000_000);
        assert_eq!(sized(&two, 10_000_001, Some(24 * gib)), 5_000_001);
        // Never below the engine's default.
        let floor = Config::default().holds_per_shard_hint;
        assert_eq!(sized(&two, 1_000, Some(24 * gib)), floor);
        // A quarter of the memory across the shards, at most.
        let capped = sized(&two, 1_000_000_000, Some(24 * gib));
        assert_eq!(capped as u64, 6 * gib / TABLE_BYTES_PER_HOLD / 2);
        assert_eq!(
            sized(&two, 1_000_000_000, None) as u64,
            4 * gib / TABLE_BYTES_PER_HOLD / 2
        );
        // --holds-hint wins.
        let given = ReplayOptions {
            holds_per_shard_hint: Some(123_456),
            ..two
        };
        assert_eq!(sized(&given, 10_000_000, Some(24 * gib)), 123_456);
    }
}
