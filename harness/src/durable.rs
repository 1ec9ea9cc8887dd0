//! Durable replays: `payauth replay --state DIR` journals every decision before it is
//! released and streams the released decisions to `outcomes.csv.part`; `--resume` recovers the
//! state after a crash and continues from the first request that was not yet durable, so the
//! finished `outcomes.csv` and `balances.csv` equal an uninterrupted run's.
//!
//! # How a resume finds its place
//! The engine numbers each shard's journal records 0, 1, 2, … in the order the shard applied
//! them, and a replay submits the traffic in order, so shard `k`'s records are the traffic
//! rows routed to `k` ([`Engine::shard_for`]), in traffic order. Recovery hands back every
//! record (a replay never snapshots after the start, so the journal is complete); walking the
//! traffic with one counter per shard marks the first `next_seq` rows of each shard as durable,
//! with their journaled decisions. Every other row is submitted again, in traffic order:
//! rows answered at resolution (`14`/`78`) are never journaled and change nothing, and the
//! other rows reach each shard in the same order as in an uninterrupted run. Each journaled
//! record must equal its traffic row, or the resume is refused: the state came from other
//! traffic.

use std::fmt;
use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use payauth_engine::{
    Code, Decision, Durability, Engine, ErrorKind, JournalConfig, RecoveryReport, Request,
};

use crate::dataset::Dataset;
use crate::measure;
use crate::output::{self, OUTCOMES_HEADER};
use crate::provenance::{self, DatasetDigest};
use crate::replay::{self, ReplayOptions, ReplaySummary};

/// The file decisions are streamed to while a durable replay runs; replaced by
/// `outcomes.csv` when the replay completes.
pub const PARTIAL_OUTCOMES_FILE: &str = "outcomes.csv.part";
/// The file in the state directory naming the dataset the state was written from.
pub const DATASET_STAMP_FILE: &str = "payauth-dataset.json";

/// Parse a `--durability` value: `none`, `sync`, or `async:INTERVAL` (`async:5ms`, `async:1s`;
/// a bare number is milliseconds).
pub fn parse_durability(text: &str) -> std::result::Result<Durability, String> {
    match text {
        "none" => Ok(Durability::None),
        "sync" => Ok(Durability::Sync),
        _ => {
            let Some(interval) = text.strip_prefix("async:") else {
                return Err(format!(
                    "`{text}` is not a durability: say none, sync or async:INTERVAL (e.g. async:5ms)"
                ));
            };
            let interval = if !interval.is_empty() && interval.bytes().all(|b| b.is_ascii_digit()) {
                let ms: u64 = interval
                    .parse()
                    .map_err(|_| format!("async interval `{interval}` does not fit"))?;
                Duration::from_millis(ms)
            } else {
                measure::parse_duration(interval)?
            };
            if interval.is_zero() {
                return Err("an async interval of 0 is sync: say sync".into());
            }
            Ok(Durability::Async { interval })
        }
    }
}

/// A durability mode in the `--durability` grammar, as reports and summaries name it:
/// `none`, `sync`, `async:5ms` (`async:250us` below whole milliseconds);
/// [`parse_durability`] reads it back.
pub fn durability_name(d: Durability) -> String {
    match d {
        Durability::None => "none".into(),
        Durability::Sync => "sync".into(),
        Durability::Async { interval } if interval.subsec_nanos() % 1_000_000 == 0 => {
            format!("async:{}ms", interval.as_millis())
        }
        Durability::Async { interval } => format!("async:{}us", interval.as_micros()),
    }
}

/// A journal into `dir` with durability `d`; `None` for [`Durability::None`] (in memory).
pub fn journal_in(dir: &Path, d: Durability) -> Option<JournalConfig> {
    (d != Durability::None).then(|| JournalConfig {
        durability: d,
        ..JournalConfig::new(dir)
    })
}

/// The journal a replay writes for `--state DIR --durability MODE` (`None` for an in-memory
/// replay). `--durability` without `--state`, or `none` with a state directory, is refused:
/// each means the user expects something that would not happen.
pub fn journal_config(
    state: Option<&Path>,
    durability: Option<Durability>,
) -> Result<Option<JournalConfig>> {
    match (state, durability) {
        (None, None | Some(Durability::None)) => Ok(None),
        (None, Some(_)) => {
            bail!("--durability sync or async journals into a state directory: add --state DIR")
        }
        (Some(_), Some(Durability::None)) => bail!(
            "--durability none journals nothing, so --state would stay empty: drop one of them"
        ),
        (Some(dir), durability) => Ok(journal_in(dir, durability.unwrap_or(Durability::Sync))),
    }
}

/// What a durable replay did: the usual summary, plus what recovery found.
#[derive(Clone, Debug)]
pub struct DurableSummary {
    /// Counts, timings and files, as for an in-memory replay.
    pub replay: ReplaySummary,
    /// The state directory.
    pub state_dir: PathBuf,
    /// The durability mode.
    pub durability: Durability,
    /// What recovery did, when the run resumed a state.
    pub recovery: Option<RecoveryReport>,
    /// Traffic rows whose decisions came from the journal (durable before this run).
    pub rows_durable: u64,
    /// Traffic rows submitted by this run.
    pub rows_submitted: u64,
}

impl fmt::Display for DurableSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mode = durability_name(self.durability);
        match &self.recovery {
            Some(report) => {
                writeln!(
                    f,
                    "resumed {}: recovered {} journal records in {:.3} s ({} bytes of torn tail cut)",
                    self.state_dir.display(),
                    report.records_replayed(),
                    report.elapsed.as_secs_f64(),
                    report.bytes_cut()
                )?;
                for shard in &report.shards {
                    writeln!(f, "  {shard}")?;
                }
                writeln!(
                    f,
                    "{} rows were durable before this run, {} submitted now (durability {mode})",
                    self.rows_durable, self.rows_submitted
                )?;
            }
            None => writeln!(
                f,
                "journaled into {} (durability {mode})",
                self.state_dir.display()
            )?,
        }
        write!(f, "{}", self.replay)
    }
}

/// Replay `dataset_dir` through an engine journaling into `opts.journal`, streaming each
/// released decision (in traffic order) to `out_dir/outcomes.csv.part`, and at the end write
/// `outcomes.csv` and `balances.csv` as [`replay::replay`] does.
///
/// Without `resume` the state directory must be missing or empty. With `resume` an existing
/// state is recovered and the replay continues from the first request that was not durable
/// (see the module documentation); a missing or empty directory is a fresh start.
pub fn replay_durable(
    dataset_dir: &Path,
    out_dir: &Path,
    opts: &ReplayOptions,
    resume: bool,
) -> Result<DurableSummary> {
    let Some(journal) = opts.journal.clone() else {
        bail!("a durable replay needs a state directory (--state DIR)");
    };
    let mut config = replay::config(opts)?;
    let (chunk_len, in_flight) = replay::pipeline(opts, &config)?;
    let state_dir = journal.dir.clone();

    let load_start = Instant::now();
    let dataset = Dataset::load(dataset_dir).context("invalid dataset")?;
    replay::size_tables(&mut config, opts, dataset.traffic.len());
    let digest = provenance::digest_dataset(dataset_dir)?;
    let load_elapsed = load_start.elapsed();
    let as_of_ns = dataset.last_ts_ns();
    let (shards, batch_max) = (config.shards, config.batch_max);
    let holds_per_shard_hint = config.holds_per_shard_hint;
    let (accounts, tokens) = (dataset.accounts.len(), dataset.tokens.len());
    let traffic = dataset.traffic;

    // Journaled records per shard, as recovery hands them back (one thread per shard).
    let journaled: Vec<Mutex<Vec<(Request, Code)>>> =
        (0..shards).map(|_| Mutex::new(Vec::new())).collect();
    let out_of_order: Mutex<Option<String>> = Mutex::new(None);
    let (engine, recovery) = if resume {
        check_stamp(&state_dir, &digest)?;
        let observe = |r: &payauth_engine::ReplayedRecord<'_>| {
            let mut records = journaled[r.shard].lock().unwrap_or_else(|e| e.into_inner());
            if r.seq != records.len() as u64 {
                let mut bad = out_of_order.lock().unwrap_or_else(|e| e.into_inner());
                bad.get_or_insert_with(|| {
                    format!(
                        "shard {}'s journal replays record {} after {} records: the state was \
                         snapshotted after its start (not written by `payauth replay`), so the \
                         decisions before the snapshot are not in the journal",
                        r.shard,
                        r.seq,
                        records.len()
                    )
                });
            }
            records.push((*r.request, r.code));
        };
        match Engine::recover_with(config.clone(), &observe) {
            Ok((engine, report)) => (Some(engine), Some(report)),
            Err(e) if e.kind() == ErrorKind::NoState => (None, None),
            Err(e) => {
                return Err(e).with_context(|| {
                    format!("cannot recover the state in {}", state_dir.display())
                })
            }
        }
    } else {
        (None, None)
    };
    let engine = match engine {
        Some(engine) => engine,
        // Nothing to resume: a fresh start.
        None => start_fresh(
            config,
            dataset.accounts,
            dataset.tokens,
            &state_dir,
            &digest,
        )?,
    };
    if let Some(problem) = out_of_order.into_inner().unwrap_or_else(|e| e.into_inner()) {
        bail!("cannot resume from {}: {problem}", state_dir.display());
    }
    let journaled: Vec<Vec<(Request, Code)>> = journaled
        .into_iter()
        .map(|m| m.into_inner().unwrap_or_else(|e| e.into_inner()))
        .collect();

    // Which rows are durable, with their decisions; the rest go in again, in order.
    let mut decided: Vec<Option<Decision>> = vec![None; traffic.len()];
    let mut cursor = vec![0usize; shards];
    let mut rest_rows = Vec::new();
    for (i, row) in traffic.iter().enumerate() {
        if let Some(k) = engine.shard_for(row) {
            if let Some((request, code)) = journaled[k].get(cursor[k]) {
                ensure!(
                    request == row,
                    "cannot resume from {}: shard {k}'s journal record {} is not traffic row {i} \
                     (request_id {} vs {}): the state was written from other traffic",
                    state_dir.display(),
                    cursor[k],
                    request.request_id,
                    row.request_id
                );
                decided[i] = Some(Decision {
                    request_id: row.request_id,
                    code: *code,
                });
                cursor[k] += 1;
                continue;
            }
        }
        rest_rows.push(i);
    }
    for (k, records) in journaled.iter().enumerate() {
        ensure!(
            cursor[k] == records.len(),
            "cannot resume from {}: shard {k}'s journal holds {} records but the dataset routes \
             only {} requests to it: the state was written from other traffic",
            state_dir.display(),
            records.len(),
            cursor[k]
        );
    }
    let rows_durable = (traffic.len() - rest_rows.len()) as u64;
    let rest: Vec<Request> = rest_rows.iter().map(|&i| traffic[i]).collect();

    fs::create_dir_all(out_dir)
        .with_context(|| format!("cannot create output folder {}", out_dir.display()))?;
    let mut printer = Printer::create(&out_dir.join(PARTIAL_OUTCOMES_FILE), decided)?;
    printer.print_ready()?;
    let replay_start = Instant::now();
    replay::run_streamed(&engine, &rest, chunk_len, in_flight, |start, got| {
        printer.fill(&rest_rows[start..start + got.len()], got)
    })?;
    let replay_elapsed = replay_start.elapsed();
    let state = engine
        .shutdown(as_of_ns)
        .context("cannot shut the engine down")?;
    let decisions = printer.finish()?;

    output::write_replay_files(out_dir, &decisions, &state.accounts)?;
    // The complete outcomes.csv replaces the streamed one.
    let _ = fs::remove_file(out_dir.join(PARTIAL_OUTCOMES_FILE));

    Ok(DurableSummary {
        replay: ReplaySummary {
            requests: decisions.len(),
            accounts,
            tokens,
            codes: replay::code_counts(&decisions),
            load_elapsed,
            replay_elapsed,
            shards,
            batch_max,
            chunk_len,
            in_flight,
            holds_per_shard_hint,
            as_of_ns,
            out_dir: out_dir.to_path_buf(),
        },
        state_dir,
        durability: journal.durability,
        recovery,
        rows_durable,
        rows_submitted: rest.len() as u64,
    })
}

/// Start a fresh journaled engine and stamp the state directory with the dataset's digest
/// (after the engine created the directory: it takes only an empty one).
fn start_fresh(
    config: payauth_engine::Config,
    accounts: Vec<payauth_engine::AccountSpec>,
    tokens: Vec<payauth_engine::TokenSpec>,
    state_dir: &Path,
    digest: &DatasetDigest,
) -> Result<Engine> {
    let engine = replay::start_engine(config, accounts, tokens)?;
    let stamp = state_dir.join(DATASET_STAMP_FILE);
    let json = serde_json::to_vec_pretty(digest).context("cannot encode the dataset digest")?;
    fs::write(&stamp, json).with_context(|| format!("cannot write {}", stamp.display()))?;
    Ok(engine)
}

/// Refuse to resume a state written from another dataset. A state without a stamp (a crash
/// right after the engine created it, before anything was submitted) is taken as it is: the
/// journal check still compares every record with its traffic row.
fn check_stamp(state_dir: &Path, digest: &DatasetDigest) -> Result<()> {
    let stamp = state_dir.join(DATASET_STAMP_FILE);
    let bytes = match fs::read(&stamp) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", stamp.display())),
    };
    let found: DatasetDigest = serde_json::from_slice(&bytes)
        .with_context(|| format!("{} is not a dataset digest", stamp.display()))?;
    ensure!(
        found.combined == digest.combined,
        "cannot resume: the state in {} was written from a dataset with digest {} but this \
         dataset's is {} (see {})",
        state_dir.display(),
        found.combined,
        digest.combined,
        stamp.display()
    );
    Ok(())
}

/// Streams decisions to a file in traffic order as they become known: a row is printed once
/// it and every row before it are decided. Each flush hands the lines to the OS, so a killed
/// process leaves every printed line in the file.
struct Printer {
    out: BufWriter<File>,
    path: PathBuf,
    decided: Vec<Option<Decision>>,
    next: usize,
    line: Vec<u8>,
}

impl Printer {
    fn create(path: &Path, decided: Vec<Option<Decision>>) -> Result<Printer> {
        let file =
            File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
        let mut out = BufWriter::with_capacity(1 << 16, file);
        out.write_all(OUTCOMES_HEADER)
            .with_context(|| format!("cannot write {}", path.display()))?;
        Ok(Printer {
            out,
            path: path.to_path_buf(),
            decided,
            next: 0,
            line: Vec::with_capacity(64),
        })
    }

    /// Record `got[j]` as the decision of traffic row `rows[j]`, then print what is ready.
    fn fill(&mut self, rows: &[usize], got: &[Decision]) -> Result<()> {
        for (&row, d) in rows.iter().zip(got) {
            self.decided[row] = Some(*d);
        }
        self.print_ready()
    }

    fn print_ready(&mut self) -> Result<()> {
        self.line.clear();
        while let Some(Some(d)) = self.decided.get(self.next) {
            output::push_outcome(&mut self.line, self.next as u64, d);
            self.next += 1;
        }
        self.out
            .write_all(&self.line)
            .and_then(|()| self.out.flush())
            .with_context(|| format!("cannot write {}", self.path.display()))
    }

    /// Every row's decision, once all are known.
    fn finish(mut self) -> Result<Vec<Decision>> {
        self.print_ready()?;
        let n = self.decided.len();
        ensure!(self.next == n, "row {} of {n} was never decided", self.next);
        Ok(self.decided.into_iter().flatten().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durability_words() {
        assert_eq!(parse_durability("none"), Ok(Durability::None));
        assert_eq!(parse_durability("sync"), Ok(Durability::Sync));
        assert_eq!(
            parse_durability("async:5"),
            Ok(Durability::Async {
                interval: Duration::from_millis(5)
            })
        );
        assert_eq!(
            parse_durability("async:2s"),
            Ok(Durability::Async {
                interval: Duration::from_secs(2)
            })
        );
        for bad in [
            "", "Sync", "async", "async:", "async:0", "async:-1", "fsync",
        ] {
            assert!(parse_durability(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn durability_names_read_back() {
        for d in [
            Durability::None,
            Durability::Sync,
            Durability::Async {
                interval: Duration::from_millis(5),
            },
            Durability::Async {
                interval: Duration::from_micros(250),
            },
            Durability::Async {
                interval: Duration::from_secs(2),
            },
        ] {
            assert_eq!(parse_durability(&durability_name(d)), Ok(d), "{d:?}");
        }
        assert_eq!(
            durability_name(Durability::Async {
                interval: Duration::from_millis(5)
            }),
            "async:5ms"
        );
    }

    #[test]
    fn state_and_durability_go_together() {
        let dir = Path::new("/tmp/x");
        assert_eq!(journal_config(None, None).unwrap(), None);
        assert_eq!(journal_config(None, Some(Durability::None)).unwrap(), None);
        assert!(journal_config(None, Some(Durability::Sync)).is_err());
        assert!(journal_config(Some(dir), Some(Durability::None)).is_err());
        let j = journal_config(Some(dir), None).unwrap().unwrap();
        assert_eq!((j.dir.as_path(), j.durability), (dir, Durability::Sync));
    }
}
