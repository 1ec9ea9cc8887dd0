//! Reports of a measured run, written into the output folder: the terminal summary,
//! `report.json` (every setting, the dataset's digest and seed, the build and the machine,
//! rates, percentiles, per-interval numbers), HdrHistogram interval logs (`latency.hlog`,
//! `service.hlog`, V2 compressed, readable by HistogramLogProcessor and friends) and the
//! classic percentile distributions (`latency.hgrm`, `service.hgrm`).
//!
//! Every latency is recorded in nanoseconds. The `.hgrm` files and the interval logs' max
//! column show milliseconds, as HdrHistogram's own tools do by default for nanosecond data.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use hdrhistogram::serialization::interval_log::IntervalLogWriterBuilder;
use hdrhistogram::serialization::V2DeflateSerializer;
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::measure::{fmt_ns, Interval, MeasureOptions, Measurement, Mode};
use crate::provenance::{BuildInfo, DatasetDigest, MachineInfo};

/// Version of the report.json layout; bumped when a field changes meaning or goes away.
pub const REPORT_VERSION: u32 = 1;
/// File name of the JSON report.
pub const REPORT_FILE: &str = "report.json";
/// Interval log of latencies (from the intended send time).
pub const LATENCY_HLOG_FILE: &str = "latency.hlog";
/// Interval log of service times (from the actual submit).
pub const SERVICE_HLOG_FILE: &str = "service.hlog";
/// Percentile distribution of latencies.
pub const LATENCY_HGRM_FILE: &str = "latency.hgrm";
/// Percentile distribution of service times.
pub const SERVICE_HGRM_FILE: &str = "service.hgrm";
/// Nanoseconds per unit shown in `.hgrm` files and interval-log max columns (milliseconds).
pub const OUTPUT_VALUE_UNIT_RATIO: f64 = 1e6;
/// Percentile ticks per half distance in `.hgrm` files (HistogramLogProcessor's default).
pub const HGRM_TICKS_PER_HALF: u32 = 5;

/// The percentiles every summary shows, in ns.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    /// Values recorded.
    pub count: u64,
    /// Smallest value.
    pub min: u64,
    /// Mean value.
    pub mean: f64,
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    #[serde(rename = "p99.9")]
    pub p99_9: u64,
    /// 99.99th percentile.
    #[serde(rename = "p99.99")]
    pub p99_99: u64,
    /// Largest value.
    pub max: u64,
}

impl Percentiles {
    /// The percentiles of `h` (all zero when it is empty).
    pub fn of(h: &Histogram<u64>) -> Percentiles {
        if h.is_empty() {
            return Percentiles::default();
        }
        Percentiles {
            count: h.len(),
            min: h.min(),
            mean: h.mean(),
            p50: h.value_at_quantile(0.5),
            p90: h.value_at_quantile(0.9),
            p99: h.value_at_quantile(0.99),
            p99_9: h.value_at_quantile(0.999),
            p99_99: h.value_at_quantile(0.9999),
            max: h.max(),
        }
    }

    /// (label, value) for each shown percentile, p50 to max.
    pub fn shown(&self) -> [(&'static str, u64); 6] {
        [
            ("p50", self.p50),
            ("p90", self.p90),
            ("p99", self.p99),
            ("p99.9", self.p99_9),
            ("p99.99", self.p99_99),
            ("max", self.max),
        ]
    }
}

/// Engine settings of a run against the payauth engine.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EngineSettings {
    /// Shards (owner threads).
    pub shards: usize,
    /// Most requests a shard decides in one pass.
    pub batch_max: usize,
    /// Batches a shard queue holds before the engine pushes back.
    pub queue_depth: usize,
    /// Hold life, ns.
    pub hold_ttl_ns: i64,
    /// Duplicate window, ns.
    pub dup_window_ns: i64,
    /// Retention of ended holds, ns.
    pub retention_ns: i64,
    /// Pre-sized holds per shard.
    pub holds_per_shard_hint: usize,
}

impl From<&payauth_engine::Config> for EngineSettings {
    fn from(c: &payauth_engine::Config) -> Self {
        EngineSettings {
            shards: c.shards,
            batch_max: c.batch_max,
            queue_depth: c.queue_depth,
            hold_ttl_ns: c.hold_ttl_ns,
            dup_window_ns: c.dup_window_ns,
            retention_ns: c.retention_ns,
            holds_per_shard_hint: c.holds_per_shard_hint,
        }
    }
}

/// Every setting of a run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    /// `recorded`, `rate` or `closed-loop`.
    pub mode: String,
    /// `--speed` (recorded pace).
    pub speed: Option<f64>,
    /// `--rate` (fixed rate), requests per second.
    pub rate_per_sec: Option<f64>,
    /// `--in-flight` (closed loop), requests.
    pub in_flight: Option<usize>,
    /// `--warmup`, ns.
    pub warmup_ns: u64,
    /// `--submit-batch`: most requests per submitted batch.
    pub submit_batch: usize,
    /// `--linger`: least time between two open-loop submits, ns (0 in reports written
    /// before it existed).
    #[serde(default)]
    pub linger_ns: u64,
    /// `--collectors`: collector threads.
    pub collectors: usize,
    /// `--interval`: length of the per-interval histograms, ns.
    pub interval_ns: u64,
    /// Sender p99 lag above which the schedule counts as not kept, ns.
    pub lag_p99_max_ns: u64,
    /// Offered/target share below which the schedule counts as not kept.
    pub offered_share_min: f64,
    /// What was driven: `payauth-engine`, or a stand-in's description.
    pub target: String,
    /// The engine's configuration, when the target is the engine.
    pub engine: Option<EngineSettings>,
}

/// The dataset that was replayed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatasetInfo {
    /// Path as given on the command line.
    pub path: String,
    /// Accounts loaded.
    pub accounts: u64,
    /// Tokens loaded.
    pub tokens: u64,
    /// Requests in the traffic.
    pub requests: u64,
    /// `ts_ns` of the first request.
    pub first_ts_ns: i64,
    /// `ts_ns` of the last request.
    pub last_ts_ns: i64,
    /// The generator seed, when the dataset records one.
    pub seed: Option<u64>,
    /// The generator's other parameters, when the dataset records them.
    pub generator: BTreeMap<String, String>,
    /// CRC-32C digest of the dataset's files.
    pub digest: Option<DatasetDigest>,
}

/// What the run did, in numbers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunInfo {
    /// Requests replayed.
    pub requests: u64,
    /// Requests measured (after the warmup).
    pub measured: u64,
    /// Batches submitted.
    pub batches: u64,
    /// From the start to the last decision, ns.
    pub elapsed_ns: u64,
    /// What the schedule asked for (open loop), requests per second.
    pub target_rate_per_sec: Option<f64>,
    /// What the sender actually offered, requests per second.
    pub offered_rate_per_sec: Option<f64>,
    /// Decisions per second.
    pub throughput_per_sec: Option<f64>,
    /// Whether the sender kept to its schedule (open loop only).
    pub schedule_kept: Option<bool>,
    /// The verdict on the schedule, in words (open loop only).
    pub schedule_message: Option<String>,
    /// Times the target answered `Full`.
    pub full_answers: u64,
    /// Time the sender waited on a full target, ns.
    pub backpressure_ns: u64,
    /// Most requests outstanding at once.
    pub outstanding_max: u64,
}

/// One interval's numbers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IntervalInfo {
    /// Start, ns after the start of the run.
    pub start_ns: u64,
    /// Requests submitted in the interval (warmup included).
    pub offered: u64,
    /// Requests decided in the interval (warmup included).
    pub decided: u64,
    /// Latency of the measured requests decided in the interval.
    pub latency_ns: Percentiles,
    /// Service time of the same requests.
    pub service_ns: Percentiles,
}

/// Everything `report.json` holds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// [`REPORT_VERSION`].
    pub report_version: u32,
    /// `payauth <version>`.
    pub tool: String,
    /// Wall-clock start of the run, seconds since the Unix epoch.
    pub started_at_unix_s: f64,
    /// Every setting.
    pub settings: Settings,
    /// The dataset.
    pub dataset: DatasetInfo,
    /// The build that ran.
    pub build: BuildInfo,
    /// The machine it ran on.
    pub machine: MachineInfo,
    /// Rates, counts and the schedule verdict.
    pub run: RunInfo,
    /// Latency from the intended send time, ns.
    pub latency_ns: Percentiles,
    /// Service time from the actual submit, ns.
    pub service_ns: Percentiles,
    /// Sender lag behind the schedule, ns (open loop only).
    pub sender_lag_ns: Option<Percentiles>,
    /// Decisions by ISO 8583 code, all requests (warmup included).
    pub codes: BTreeMap<String, u64>,
    /// Per-interval numbers (every interval with a submit or a decision).
    pub intervals: Vec<IntervalInfo>,
    /// Files written next to report.json.
    pub files: Vec<String>,
}

/// What a report needs to know beyond the measurement.
#[derive(Clone, Debug)]
pub struct ReportContext {
    /// What was driven (see [`Settings::target`]).
    pub target: String,
    /// The engine's configuration, when the target is the engine.
    pub engine: Option<EngineSettings>,
    /// The dataset.
    pub dataset: DatasetInfo,
}

impl Report {
    /// Assemble the report of a run.
    pub fn new(ctx: ReportContext, opts: &MeasureOptions, m: &Measurement) -> Report {
        let s = &m.stats;
        let (speed, rate_per_sec, in_flight) = match opts.mode {
            Mode::Recorded { speed } => (Some(speed), None, None),
            Mode::Rate { per_sec } => (None, Some(per_sec), None),
            Mode::ClosedLoop { in_flight } => (None, None, Some(in_flight)),
        };
        let check = m.schedule_check(opts);
        let mut codes = BTreeMap::new();
        for d in &m.decisions {
            *codes.entry(d.code.as_str().to_string()).or_insert(0) += 1;
        }
        let by_start: BTreeMap<u64, &Interval> =
            m.intervals.iter().map(|i| (i.start_ns, i)).collect();
        let slots = m
            .offered_per_interval
            .len()
            .max(m.decided_per_interval.len());
        let intervals = (0..slots)
            .map(|k| {
                let start_ns = k as u64 * s.interval_ns;
                let hist = by_start.get(&start_ns);
                IntervalInfo {
                    start_ns,
                    offered: m.offered_per_interval.get(k).copied().unwrap_or(0),
                    decided: m.decided_per_interval.get(k).copied().unwrap_or(0),
                    latency_ns: hist
                        .map_or_else(Percentiles::default, |i| Percentiles::of(&i.latency)),
                    service_ns: hist
                        .map_or_else(Percentiles::default, |i| Percentiles::of(&i.service)),
                }
            })
            // Idle intervals (a recorded pace's quiet hours) are left out: they would only
            // make the report long.
            .filter(|i| i.offered > 0 || i.decided > 0)
            .collect();
        Report {
            report_version: REPORT_VERSION,
            tool: format!("payauth {}", env!("CARGO_PKG_VERSION")),
            started_at_unix_s: m
                .started_at
                .duration_since(UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64()),
            settings: Settings {
                mode: opts.mode.name().into(),
                speed,
                rate_per_sec,
                in_flight,
                warmup_ns: s.warmup_ns,
                submit_batch: opts.submit_batch,
                linger_ns: u64::try_from(opts.linger.as_nanos()).unwrap_or(u64::MAX),
                collectors: opts.collectors,
                interval_ns: s.interval_ns,
                lag_p99_max_ns: u64::try_from(opts.lag_p99_max.as_nanos()).unwrap_or(u64::MAX),
                offered_share_min: opts.offered_share_min,
                target: ctx.target,
                engine: ctx.engine,
            },
            dataset: ctx.dataset,
            build: BuildInfo::current(),
            machine: MachineInfo::current(),
            run: RunInfo {
                requests: s.requests,
                measured: s.measured,
                batches: s.batches,
                elapsed_ns: s.elapsed_ns,
                target_rate_per_sec: s.target_rate_per_sec(),
                offered_rate_per_sec: s.offered_rate_per_sec(),
                throughput_per_sec: s.throughput_per_sec(),
                schedule_kept: check.as_ref().map(|c| c.kept),
                schedule_message: check.map(|c| c.message),
                full_answers: s.full_answers,
                backpressure_ns: s.backpressure_ns,
                outstanding_max: s.outstanding_max,
            },
            latency_ns: Percentiles::of(&m.latency),
            service_ns: Percentiles::of(&m.service),
            sender_lag_ns: opts
                .mode
                .is_open_loop()
                .then(|| Percentiles::of(&m.sender_lag)),
            codes,
            intervals,
            files: Vec::new(),
        }
    }

    /// The terminal summary: mode, rates, the schedule verdict, percentiles, codes.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        let st = &self.settings;
        let mode = match st.mode.as_str() {
            "recorded" => format!(
                "open loop at the recorded pace x{}",
                st.speed.unwrap_or(1.0)
            ),
            "rate" => format!(
                "open loop at a fixed rate of {}/s",
                st.rate_per_sec.unwrap_or(0.0)
            ),
            _ => format!(
                "closed loop, at most {} requests in flight",
                st.in_flight.unwrap_or(0)
            ),
        };
        let r = &self.run;
        let _ = writeln!(
            out,
            "measured replay of {} against {}: {mode}",
            self.dataset.path, st.target
        );
        let warmup = if st.warmup_ns == 0 {
            "no warmup".to_string()
        } else {
            format!(
                "{} in the {} warmup",
                r.requests - r.measured,
                fmt_ns(st.warmup_ns)
            )
        };
        let _ = writeln!(
            out,
            "requests: {} ({} measured, {warmup}) in {} batches of at most {}; {:.3} s",
            r.requests,
            r.measured,
            r.batches,
            st.submit_batch,
            r.elapsed_ns as f64 / 1e9
        );
        let per_sec = |x: Option<f64>| x.map_or_else(|| "n/a".to_string(), |v| format!("{v:.0}/s"));
        match r.target_rate_per_sec {
            Some(target) => {
                let share = r.offered_rate_per_sec.map_or_else(String::new, |o| {
                    format!(" ({:.1}% of target)", 100.0 * o / target)
                });
                let _ = writeln!(
                    out,
                    "rate: target {}, offered {}{share}, decided {}",
                    per_sec(Some(target)),
                    per_sec(r.offered_rate_per_sec),
                    per_sec(r.throughput_per_sec)
                );
            }
            None => {
                let _ = writeln!(
                    out,
                    "rate: offered {}, decided {} (closed loop: the target sets the pace; at \
                     most {} outstanding, {} reached)",
                    per_sec(r.offered_rate_per_sec),
                    per_sec(r.throughput_per_sec),
                    st.in_flight.unwrap_or(0),
                    r.outstanding_max
                );
            }
        }
        if let Some(msg) = &r.schedule_message {
            let _ = writeln!(out, "schedule: {msg}");
        }
        let _ = writeln!(
            out,
            "{:<34}{:>10}{:>10}{:>10}{:>10}{:>10}{:>10}",
            "ms", "p50", "p90", "p99", "p99.9", "p99.99", "max"
        );
        let mut row = |name: &str, p: &Percentiles| {
            let _ = write!(out, "{name:<34}");
            for (_, v) in p.shown() {
                let _ = write!(out, "{:>10.3}", v as f64 / 1e6);
            }
            out.push('\n');
        };
        let closed = st.mode == "closed-loop";
        row(
            if closed {
                "latency (from submit)"
            } else {
                "latency (from intended send)"
            },
            &self.latency_ns,
        );
        row("service time (from actual submit)", &self.service_ns);
        if let Some(lag) = &self.sender_lag_ns {
            row("sender lag (behind schedule)", lag);
        }
        let codes: Vec<String> = self.codes.iter().map(|(c, n)| format!("{c}={n}")).collect();
        let codes = if codes.is_empty() {
            "none".to_string()
        } else {
            codes.join(" ")
        };
        let _ = writeln!(out, "codes: {codes}");
        let _ = write!(
            out,
            "build {} {} ({}), {} x {}",
            self.build.profile,
            self.build.git_revision,
            self.tool,
            self.machine.cores,
            self.machine.cpu_model
        );
        out
    }
}

/// Write the interval logs, the percentile distributions and, last, `report.json` into `dir`;
/// returns the file names written. The report lists them, itself and `also` (files the caller
/// wrote next to it, such as the plots) included.
pub fn write_files(
    dir: &Path,
    report: &mut Report,
    m: &Measurement,
    also: &[String],
) -> Result<Vec<String>> {
    fs::create_dir_all(dir)
        .with_context(|| format!("cannot create output folder {}", dir.display()))?;
    let mut files = Vec::new();
    let comment = format!(
        "{} {} against {}, dataset {}",
        report.tool, report.settings.mode, report.settings.target, report.dataset.path
    );
    for (name, pick, what) in [
        (
            LATENCY_HLOG_FILE,
            (|i: &Interval| &i.latency) as fn(&Interval) -> &Histogram<u64>,
            "latency from the intended send time",
        ),
        (
            SERVICE_HLOG_FILE,
            |i: &Interval| &i.service,
            "service time from the actual submit",
        ),
    ] {
        let log = interval_log(
            &m.intervals,
            pick,
            m.started_at,
            Duration::from_nanos(m.stats.interval_ns),
            &format!("{comment}: {what}, values in ns"),
        )?;
        write_file(&dir.join(name), &log)?;
        files.push(name.to_string());
    }
    for (name, h) in [
        (LATENCY_HGRM_FILE, &m.latency),
        (SERVICE_HGRM_FILE, &m.service),
    ] {
        write_file(
            &dir.join(name),
            percentile_distribution(h, OUTPUT_VALUE_UNIT_RATIO).as_bytes(),
        )?;
        files.push(name.to_string());
    }
    files.push(REPORT_FILE.to_string());
    report.files.clone_from(&files);
    report.files.extend(also.iter().cloned());
    write_report(&dir.join(REPORT_FILE), report)?;
    Ok(files)
}

/// Write `report` as pretty JSON.
pub fn write_report(path: &Path, report: &Report) -> Result<()> {
    let mut json = serde_json::to_vec_pretty(report).context("cannot encode the report")?;
    json.push(b'\n');
    write_file(path, &json)
}

/// Read a `report.json` back; `path` may be the file or the folder holding it.
pub fn read_report(path: &Path) -> Result<Report> {
    let file: PathBuf = if path.is_dir() {
        path.join(REPORT_FILE)
    } else {
        path.to_path_buf()
    };
    let bytes = fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
    let report: Report = serde_json::from_slice(&bytes)
        .with_context(|| format!("{} is not a payauth report", file.display()))?;
    anyhow::ensure!(
        report.report_version == REPORT_VERSION,
        "{} has report version {}, this payauth reads version {REPORT_VERSION}",
        file.display(),
        report.report_version
    );
    Ok(report)
}

/// Write to a temporary name, then rename: a reader never sees half a file.
fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut tmp = path.as_os_str().to_os_string();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    fs::write(&tmp, bytes).with_context(|| format!("cannot write {}", tmp.display()))?;
    fs::rename(&tmp, path).with_context(|| format!("cannot rename to {}", path.display()))
}

/// An HdrHistogram interval log (format 1.3) of one histogram per interval, V2 compressed:
/// `#[StartTime]` and `#[BaseTime]` are the run's start, each interval's timestamp is its
/// offset from it, and the max column is in milliseconds.
pub fn interval_log(
    intervals: &[Interval],
    pick: fn(&Interval) -> &Histogram<u64>,
    started_at: SystemTime,
    interval: Duration,
    comment: &str,
) -> Result<Vec<u8>> {
    let mut buf = Vec::new();
    let mut serializer = V2DeflateSerializer::new();
    {
        let mut writer = IntervalLogWriterBuilder::new()
            .add_comment(&format!("[Logged with {comment}]"))
            .add_comment("[Histogram log format version 1.3]")
            .with_start_time(started_at)
            .with_base_time(started_at)
            .with_max_value_divisor(OUTPUT_VALUE_UNIT_RATIO)
            .begin_log_with(&mut buf, &mut serializer)
            .context("cannot start an interval log")?;
        for i in intervals {
            writer
                .write_histogram(pick(i), Duration::from_nanos(i.start_ns), interval, None)
                .map_err(|e| anyhow::anyhow!("cannot write an interval histogram: {e}"))?;
        }
    }
    // The Java writer puts a column legend between the header comments and the first
    // interval; the Rust writer has no call for it, so it goes in here.
    let header_end = header_len(&buf);
    let legend =
        b"\"StartTimestamp\",\"Interval_Length\",\"Interval_Max\",\"Interval_Compressed_Histogram\"\n";
    buf.splice(header_end..header_end, legend.iter().copied());
    Ok(buf)
}

/// Bytes of the leading `#` lines.
fn header_len(log: &[u8]) -> usize {
    let mut at = 0;
    while at < log.len() && log[at] == b'#' {
        match log[at..].iter().position(|&b| b == b'\n') {
            Some(nl) => at += nl + 1,
            None => return log.len(),
        }
    }
    at
}

/// The classic percentile distribution text of HdrHistogram's
/// `outputPercentileDistribution` (what HistogramLogProcessor writes to `.hgrm`): columns
/// `Value Percentile TotalCount 1/(1-Percentile)`, values divided by `unit_ratio`, then the
/// Mean/StdDeviation, Max/Total count and Buckets/SubBuckets footer.
pub fn percentile_distribution(h: &Histogram<u64>, unit_ratio: f64) -> String {
    let mut out = String::new();
    let digits = usize::from(h.sigfig());
    let _ = write!(
        out,
        "{:>12} {:>14} {:>10} {:>14}\n\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    );
    if !h.is_empty() {
        let mut total: u64 = 0;
        for v in h.iter_quantiles(HGRM_TICKS_PER_HALF) {
            total += v.count_since_last_iteration();
            let value = v.value_iterated_to() as f64 / unit_ratio;
            let q = v.quantile_iterated_to();
            if q < 1.0 {
                let _ = writeln!(
                    out,
                    "{value:>12.digits$} {q:>2.12} {total:>10} {:>14.2}",
                    1.0 / (1.0 - q)
                );
            } else {
                let _ = writeln!(out, "{value:>12.digits$} {q:>2.12} {total:>10}");
            }
        }
    }
    let (mean, stdev, max) = if h.is_empty() {
        (0.0, 0.0, 0.0)
    } else {
        (
            h.mean() / unit_ratio,
            h.stdev() / unit_ratio,
            h.max() as f64 / unit_ratio,
        )
    };
    let _ = writeln!(
        out,
        "#[Mean    = {mean:>12.digits$}, StdDeviation   = {stdev:>12.digits$}]"
    );
    let _ = writeln!(
        out,
        "#[Max     = {max:>12.digits$}, Total count    = {:>12}]",
        h.len()
    );
    let sub_buckets = 2u64.pow((2.0 * 10f64.powi(i32::from(h.sigfig()))).log2().ceil() as u32);
    let _ = writeln!(
        out,
        "#[Buckets = {:>12}, SubBuckets     = {:>12}]",
        h.buckets(),
        sub_buckets
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_version_1_report_still_reads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(REPORT_FILE);
        fs::write(&path, include_str!("../tests/data/report-v1.json")).unwrap();
        let r = read_report(dir.path()).unwrap();
        assert_eq!(r.settings.rate_per_sec, Some(20000.0));
        assert_eq!(r.dataset.digest.unwrap().files.len(), 3);
        fs::write(&path, b"{\"report_version\": 1}").unwrap();
        let err = format!("{:#}", read_report(&path).unwrap_err());
        assert!(err.contains("is not a payauth report"), "{err}");
    }

    #[test]
    fn hgrm_has_the_classic_layout() {
        let mut h = Histogram::<u64>::new(3).unwrap();
        for v in 1..=1000u64 {
            h.record(v * 1_000).unwrap(); // 1 µs .. 1 ms
        }
        let text = percentile_distribution(&h, 1e6);
        let mut lines = text.lines();
        assert_eq!(
            lines.next().unwrap(),
            "       Value     Percentile TotalCount 1/(1-Percentile)"
        );
        assert_eq!(lines.next().unwrap(), "");
        let first = lines.next().unwrap();
        assert_eq!(
            first,
            "       0.001 0.000000000000          1           1.00"
        );
        let body: Vec<&str> = text.lines().filter(|l| !l.is_empty()).collect();
        let last_value = body.iter().rev().find(|l| !l.starts_with('#')).unwrap();
        assert!(
            last_value.starts_with("       1.000 1.000000000000       1000"),
            "{last_value}"
        );
        assert!(text.contains("#[Mean    =        0.501, StdDeviation   =        0.289]"));
        assert!(text.contains("#[Max     =        1.000, Total count    =         1000]"));
        assert!(text.contains("SubBuckets     =         2048]"));
    }

    #[test]
    fn interval_log_has_header_legend_and_intervals() {
        let mut h = Histogram::<u64>::new(3).unwrap();
        h.record(5_000_000).unwrap();
        let i = Interval {
            start_ns: 2_000_000_000,
            latency: h.clone(),
            service: h,
        };
        let log = interval_log(
            &[i],
            |i| &i.latency,
            UNIX_EPOCH + Duration::from_secs(1_700_000_000),
            Duration::from_secs(1),
            "test",
        )
        .unwrap();
        let text = String::from_utf8(log).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "#[Logged with test]");
        assert_eq!(lines[1], "#[Histogram log format version 1.3]");
        assert!(lines[2].starts_with("#[StartTime: 1700000000.000 "));
        assert!(lines[3].starts_with("#[BaseTime: 1700000000.000 "));
        assert!(lines[5].starts_with("\"StartTimestamp\""), "{text}");
        // Max column in ms: 5 ms is 5.001 ms at three significant figures' resolution.
        assert!(
            lines[6].starts_with("2.000,1.000,5.001,HISTFAA"),
            "{}",
            lines[6]
        );
    }
}
