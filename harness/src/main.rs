//! The `payauth` command line: a thin layer over the payauth-harness library (replay a
//! dataset through the engine, generate a dataset).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};
use payauth_harness::generate::{self, GenOptions};
use payauth_harness::replay::{self, ReplayOptions};

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
    /// write outcomes.csv and balances.csv.
    Replay {
        /// The dataset folder.
        dataset_dir: PathBuf,
        /// Folder for outcomes.csv and balances.csv (created if missing).
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
    },
    /// Generate a dataset folder from a seed.
    Generate {
        /// Folder to write accounts.csv, tokens.csv and traffic.csv into.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Number of accounts.
        #[arg(long, value_name = "N", default_value_t = GenOptions::default().accounts)]
        accounts: usize,
        /// Number of traffic rows.
        #[arg(long, value_name = "M", default_value_t = GenOptions::default().requests)]
        requests: usize,
        /// Random seed; the same seed gives the same dataset.
        #[arg(long, value_name = "S", default_value_t = GenOptions::default().seed)]
        seed: u64,
    },
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
        } => {
            let opts = ReplayOptions {
                shards,
                batch_max,
                hold_ttl_ns: ttl_ns,
                dup_window_ns: window_ns,
                retention_ns,
                ..ReplayOptions::default()
            };
            let summary = replay::replay(&dataset_dir, &out, &opts)?;
            say(format_args!("{summary}"));
        }
        Command::Generate {
            out,
            accounts,
            requests,
            seed,
        } => {
            let opts = GenOptions {
                accounts,
                requests,
                seed,
            };
            generate::generate(&opts, &out)?;
            // Every generated dataset names the seed that makes it again.
            say(format_args!(
                "generated {}: {accounts} accounts, {requests} requests, seed {seed}",
                out.display()
            ));
        }
    }
    Ok(())
}
