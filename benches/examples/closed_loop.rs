//! The engine half of `payauth bench` alone, for profilers (`perf record`, callgrind): the
//! same workload, the same closed loop through `submit_async` / `Pending::wait`, no baseline.
//!
//! `cargo run --release -p payauth-benches --example closed_loop -- [accounts] [requests]
//! [zipf] [shards] [batch] [in_flight] [holds_hint]` (defaults: 1000000 5000000 1 2 4096 4, and
//! the hint `payauth bench` uses). With `PAYAUTH_JOURNAL_DIR` set to a missing or empty
//! directory, the engine journals there (`Durability::Sync`; `PAYAUTH_DURABILITY=async` for
//! `Async` with a 10 ms interval); `PAYAUTH_BATCH_MAX` sets `Config::batch_max` (the most
//! requests a shard decides, and journals with one write and one fdatasync, in a pass);
//! `PAYAUTH_WINDOW_NS` sets both the duplicate window and the hold retention, so a short one
//! reclaims records and holds as fast as the run makes them (a host's steady state). It
//! prints the CPU time each side spent per request: steadier than the wall clock on a shared
//! machine.
#![allow(missing_docs)]

use std::time::{Duration, Instant};

use payauth_engine::{Config, Durability, Engine, JournalConfig};
use payauth_harness::bench::{closed_loop, Workload, WorkloadOptions};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, default: f64| -> f64 {
        args.get(i)
            .map(|s| s.parse().expect("numeric argument"))
            .unwrap_or(default)
    };
    let accounts = arg(0, 1e6) as usize;
    let requests = arg(1, 5e6) as usize;
    let zipf = arg(2, 1.0);
    let shards = arg(3, 2.0) as usize;
    let batch = arg(4, 4096.0) as usize;
    let in_flight = arg(5, 4.0) as usize;
    let workload = Workload::generate(&WorkloadOptions {
        accounts,
        requests,
        zipf,
        seed: 1,
    });
    // Tables pre-sized for the run, as `payauth bench` does (0: the default config's).
    let hint = arg(6, (requests / shards * 2 / 3) as f64) as usize;
    let mut config = Config {
        shards,
        ..Config::default()
    };
    if hint > 0 {
        config.holds_per_shard_hint = hint;
    }
    let journal = std::env::var_os("PAYAUTH_JOURNAL_DIR").map(|dir| {
        let mut journal = JournalConfig::new(dir);
        if std::env::var("PAYAUTH_DURABILITY").is_ok_and(|d| d == "async") {
            journal.durability = Durability::Async {
                interval: Duration::from_millis(10),
            };
        }
        journal
    });
    let mode = journal
        .as_ref()
        .map_or("in memory".to_string(), |j| format!("{:?}", j.durability));
    config.journal = journal;
    if let Some(n) = std::env::var("PAYAUTH_BATCH_MAX")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        config.batch_max = n;
    }
    let batch_max = config.batch_max;
    // Snapshots would copy the store mid-run; this measures the journal alone.
    config.snapshot_every_records = 0;
    // A short duplicate window and hold retention make the run reclaim as it goes, as a
    // host does once it has run longer than them (generated traffic spans minutes).
    if let Some(n) = std::env::var("PAYAUTH_WINDOW_NS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        config.dup_window_ns = n;
        config.retention_ns = n;
    }
    let engine = Engine::start(config, workload.accounts.clone(), workload.tokens.clone())
        .expect("engine starts");
    let cpu_before = thread_cpu_ns();
    let start = Instant::now();
    let decisions =
        closed_loop(&engine, &workload.requests, batch, in_flight).expect("closed loop runs");
    let elapsed = start.elapsed();
    let approved = decisions.iter().filter(|d| d.code.is_approved()).count();
    println!(
        "{accounts} accounts, {requests} requests, zipf {zipf}, {shards} shards, batch {batch}, in flight {in_flight}, batch_max {batch_max}, holds hint {hint}, {mode}: {:.3} s = {:.2}M decisions/s ({approved} approved)",
        elapsed.as_secs_f64(),
        requests as f64 / elapsed.as_secs_f64() / 1e6
    );
    // CPU time per request by thread, over the timed loop: steadier than the wall clock on
    // a shared machine, and it says which side (the submitting thread or a shard) costs what.
    let cpu_after = thread_cpu_ns();
    let per_request = |name: &str| {
        let spent = |m: &[(String, u64)]| -> u64 {
            m.iter()
                .filter(|(n, _)| n.starts_with(name))
                .map(|(_, t)| t)
                .sum()
        };
        spent(&cpu_after).saturating_sub(spent(&cpu_before)) as f64 / requests as f64
    };
    println!(
        "cpu ns per request: shards {:.1}, submitting thread {:.1}",
        per_request("payauth-shard"),
        per_request(MAIN)
    );
    drop(engine);
}

/// The name [`thread_cpu_ns`] gives the main thread (the binary's own name may be anything).
const MAIN: &str = "(main)";

/// Each thread of this process by name, with the CPU time it has run (ns, from
/// `/proc/self/task/*/schedstat`); empty where /proc has no such files.
fn thread_cpu_ns() -> Vec<(String, u64)> {
    let main = std::process::id().to_string();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|task| {
            let path = task.path();
            let name = std::fs::read_to_string(path.join("comm")).ok()?;
            let stat = std::fs::read_to_string(path.join("schedstat")).ok()?;
            let ns = stat.split_whitespace().next()?.parse().ok()?;
            let name = if task.file_name().to_str() == Some(main.as_str()) {
                MAIN.to_string()
            } else {
                name.trim().to_string()
            };
            Some((name, ns))
        })
        .collect()
}
