//! The command-line arguments and runners of `payauth generate`, `payauth convert` and
//! `payauth inspect`, kept here so the binary's `main.rs` only names them.

use std::fmt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use clap::{Args, ValueEnum};

use crate::convert::{self, ConvertSummary};
use crate::generate::{self, GenOptions};
use crate::inspect::{self, InspectOptions, Inspection};
use crate::traffic::{self, Format, Profile, TrafficOptions};

/// `--profile` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ProfileArg {
    /// A constant request rate (`--rate`).
    Steady,
    /// A quiet evening at `--rate`, then about 10x at midnight China time, decaying over
    /// minutes.
    SinglesDay,
    /// The small scripted dataset that exercises every rule and code (`data/sample`).
    Coverage,
}

/// `--format` / `--to` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum FormatArg {
    /// traffic.csv (with traffic.params).
    Csv,
    /// traffic.bin.
    Bin,
}

impl From<FormatArg> for Format {
    fn from(f: FormatArg) -> Format {
        match f {
            FormatArg::Csv => Format::Csv,
            FormatArg::Bin => Format::Bin,
        }
    }
}

/// `payauth generate`.
#[derive(Clone, Debug, Args)]
pub struct GenerateArgs {
    /// Folder to write accounts.csv, tokens.csv and the traffic into (created if missing).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// The traffic's shape.
    #[arg(long, value_enum, default_value_t = ProfileArg::Steady)]
    pub profile: ProfileArg,
    /// Accounts; default 100000 (coverage: 300).
    #[arg(long, value_name = "N")]
    pub accounts: Option<usize>,
    /// Traffic rows; default 1000000 (coverage: 10000).
    #[arg(long, value_name = "M")]
    pub requests: Option<usize>,
    /// Random seed; the same options and seed give the same bytes.
    #[arg(long, value_name = "S", default_value_t = 1)]
    pub seed: u64,
    /// Requests per second: the steady rate, or the quiet rate before the Singles' Day jump;
    /// default 1000.
    #[arg(long, value_name = "R")]
    pub rate: Option<f64>,
    /// Zipf exponent of account popularity; default 1.0.
    #[arg(long, value_name = "S")]
    pub zipf: Option<f64>,
    /// First instant of the traffic, ns since the epoch; default 2026-03-25 00:00 UTC
    /// (steady) or just before 2025-11-11 00:00 China time (singles-day).
    #[arg(long, value_name = "T")]
    pub start_ns: Option<i64>,
    /// singles-day: the rate just after midnight, as a multiple of --rate; default 10.
    #[arg(long, value_name = "F")]
    pub peak_factor: Option<f64>,
    /// singles-day: time constant of the decay after midnight, seconds; default 600.
    #[arg(long, value_name = "S")]
    pub decay_s: Option<f64>,
    /// singles-day: share of the requests before midnight; default 0.2.
    #[arg(long, value_name = "X")]
    pub quiet_share: Option<f64>,
    /// Traffic file format.
    #[arg(long, value_enum, default_value_t = FormatArg::Csv)]
    pub format: FormatArg,
}

/// `payauth convert`.
#[derive(Clone, Debug, Args)]
pub struct ConvertArgs {
    /// The dataset folder to read (traffic.csv or traffic.bin).
    pub src: PathBuf,
    /// The folder to write (created if missing; may be SRC itself, converting in place).
    pub dst: PathBuf,
    /// The format to write; default the other one.
    #[arg(long, value_enum)]
    pub to: Option<FormatArg>,
}

/// `payauth inspect`.
#[derive(Clone, Debug, Args)]
pub struct InspectArgs {
    /// The dataset folder (traffic.csv or traffic.bin).
    pub dataset_dir: PathBuf,
    /// How many of the hottest accounts to list.
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub top: usize,
    /// Rate bucket width, seconds; default 1 s up to 2 hours of traffic, 1 minute up to 2
    /// days, else 1 hour.
    #[arg(long, value_name = "S")]
    pub bucket_s: Option<u64>,
}

/// What `generate` made, for the summary line.
#[derive(Clone, Debug)]
pub struct GenerateSummary {
    /// The folder.
    pub out: PathBuf,
    /// The profile.
    pub profile: ProfileArg,
    /// Accounts written.
    pub accounts: usize,
    /// Requests written.
    pub requests: usize,
    /// The seed.
    pub seed: u64,
    /// The traffic format.
    pub format: FormatArg,
    /// Generating and writing.
    pub elapsed: Duration,
}

impl fmt::Display for GenerateSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Every generated dataset names the seed that makes it again.
        write!(
            f,
            "generated {}: {} accounts, {} requests, seed {} (profile {}, {}) in {:.3} s",
            self.out.display(),
            self.accounts,
            self.requests,
            self.seed,
            self.profile
                .to_possible_value()
                .map_or_else(String::new, |v| v.get_name().to_owned()),
            match self.format {
                FormatArg::Csv => "traffic.csv",
                FormatArg::Bin => "traffic.bin",
            },
            self.elapsed.as_secs_f64()
        )
    }
}

/// Run `payauth generate`.
pub fn generate(a: &GenerateArgs) -> Result<GenerateSummary> {
    let start = Instant::now();
    let (accounts, requests) = match a.profile {
        ProfileArg::Coverage => {
            let only_realistic = [
                ("--rate", a.rate.is_some()),
                ("--zipf", a.zipf.is_some()),
                ("--start-ns", a.start_ns.is_some()),
                ("--peak-factor", a.peak_factor.is_some()),
                ("--decay-s", a.decay_s.is_some()),
                ("--quiet-share", a.quiet_share.is_some()),
            ];
            if let Some((flag, _)) = only_realistic.iter().find(|(_, given)| *given) {
                bail!("{flag} does not apply to --profile coverage");
            }
            let d = GenOptions::default();
            let opts = GenOptions {
                accounts: a.accounts.unwrap_or(d.accounts),
                requests: a.requests.unwrap_or(d.requests),
                seed: a.seed,
            };
            generate::generate(&opts, &a.out)?;
            if a.format == FormatArg::Bin {
                convert::convert(&a.out, &a.out, Some(Format::Bin))?;
            }
            (opts.accounts, opts.requests)
        }
        ProfileArg::Steady | ProfileArg::SinglesDay => {
            let profile = if a.profile == ProfileArg::Steady {
                Profile::Steady
            } else {
                Profile::SinglesDay
            };
            if profile == Profile::Steady {
                for (flag, given) in [
                    ("--peak-factor", a.peak_factor.is_some()),
                    ("--decay-s", a.decay_s.is_some()),
                    ("--quiet-share", a.quiet_share.is_some()),
                ] {
                    if given {
                        bail!("{flag} applies to --profile singles-day only");
                    }
                }
            }
            let d = TrafficOptions::default();
            let opts = TrafficOptions {
                profile,
                accounts: a.accounts.unwrap_or(d.accounts),
                requests: a.requests.unwrap_or(d.requests),
                seed: a.seed,
                rate_per_s: a.rate.unwrap_or(d.rate_per_s),
                zipf_s: a.zipf.unwrap_or(d.zipf_s),
                start_ns: a.start_ns,
                peak_factor: a.peak_factor.unwrap_or(d.peak_factor),
                decay_s: a.decay_s.unwrap_or(d.decay_s),
                quiet_share: a.quiet_share.unwrap_or(d.quiet_share),
            };
            let gen = traffic::generate(&opts)?;
            traffic::write(&gen, &a.out, a.format.into())?;
            (opts.accounts, opts.requests)
        }
    };
    Ok(GenerateSummary {
        out: a.out.clone(),
        profile: a.profile,
        accounts,
        requests,
        seed: a.seed,
        format: a.format,
        elapsed: start.elapsed(),
    })
}

/// Run `payauth convert`.
pub fn convert(a: &ConvertArgs) -> Result<ConvertSummary> {
    convert::convert(&a.src, &a.dst, a.to.map(Format::from))
}

/// Run `payauth inspect`.
pub fn inspect(a: &InspectArgs) -> Result<Inspection> {
    inspect::inspect(
        &a.dataset_dir,
        &InspectOptions {
            top: a.top,
            bucket_s: a.bucket_s,
        },
    )
}
