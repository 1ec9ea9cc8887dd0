//! criterion benches of the engine through its public API: the decide-and-apply step per batch
//! size, account count and account-choice law; routing; CSV loading and binary decoding; the
//! journal.
//!
//! - `decide/{accounts}/{uniform|zipf1}/{batch}`: `Engine::submit` of `batch` requests of the
//!   `payauth bench` workload (authorize-heavy: authorizations, then captures and voids of
//!   earlier holds, top-ups, retransmissions; time advancing 100 µs per request on average),
//!   one batch in flight, default config (one shard per core). A fresh engine per bench;
//!   request ids and time keep advancing across iterations (see `payauth_benches::Stream`).
//!   10M accounts only with `PAYAUTH_BENCH_10M=1` (setup takes a while and a few GB).
//! - `routing/shard_of`: the partition function over 4096 account ids.
//! - `routing/unknown_token`: `Engine::submit` of 4096 authorizations whose tokens are
//!   unknown: answered `14` by the router without reaching a shard (and not remembered, so
//!   repeating them measures the same thing every time).
//! - `csv/load`: `Dataset::load` of a `payauth generate` dataset (10,000 accounts, 200,000
//!   traffic rows) from a temporary folder.
//! - `binary/decode`: `binfmt::decode` of the same traffic in the binary format, in memory.
//! - `journal/{sync|async}/4096`: `Engine::submit` of 4096 requests of the decide stream
//!   (10,000 accounts, Zipf 1) to an engine that journals them in a temporary state
//!   directory: deciding plus the journal append, the commit (one write per shard pass) and,
//!   under `sync`, one fdatasync per pass. Snapshots off.
//!
//! Setup (workload generation, engine start, dataset files) stays outside the timed loop.
//! Under `cargo test --benches` each bench runs once on small fixtures.
#![allow(missing_docs)] // criterion_group! generates undocumented functions

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use payauth_benches::{quick_mode, Stream, Workload, WorkloadOptions};
use payauth_engine::{
    shard_of, Config, Currency, Dpan, Durability, Engine, JournalConfig, Kind, Request,
};
use payauth_harness::binfmt;
use payauth_harness::convert::read_traffic_rows;
use payauth_harness::dataset::Dataset;
use payauth_harness::generate::{generate, GenOptions};
use rust_decimal::Decimal;

/// Requests in one pass of a decide stream (generated once per account count and law).
const STREAM_LEN: usize = 1 << 20;
/// The same under `cargo test --benches`.
const STREAM_LEN_QUICK: usize = 20_000;

fn decide(c: &mut Criterion) {
    let quick = quick_mode();
    let mut account_counts = vec![10_000usize, 1_000_000];
    if std::env::var_os("PAYAUTH_BENCH_10M").is_some_and(|v| v == "1") {
        account_counts.push(10_000_000);
    }
    for accounts in account_counts {
        for (law, zipf) in [("uniform", 0.0), ("zipf1", 1.0)] {
            let workload = Workload::generate(&WorkloadOptions {
                accounts,
                requests: if quick { STREAM_LEN_QUICK } else { STREAM_LEN },
                zipf,
                seed: 1,
            });
            let start_engine = || {
                Engine::start(
                    Config::default(),
                    workload.accounts.clone(),
                    workload.tokens.clone(),
                )
                .expect("engine starts")
            };
            // Measuring: a fresh engine per bench, so each starts from the same state and
            // memory does not pile up. Testing: one engine for the group (starts are slow in
            // the test profile).
            let shared = quick.then(start_engine);
            // One stream per group, so ids keep advancing on a shared engine too.
            let mut stream = Stream::of(&workload);
            let mut group = c.benchmark_group(format!("decide/{accounts}/{law}"));
            for batch in [1usize, 16, 256, 4096] {
                group.throughput(Throughput::Elements(batch as u64));
                let fresh;
                let engine = match &shared {
                    Some(engine) => engine,
                    None => {
                        fresh = start_engine();
                        &fresh
                    }
                };
                let mut buf = Vec::with_capacity(batch);
                group.bench_function(BenchmarkId::from_parameter(batch), |b| {
                    b.iter_custom(|iters| {
                        let mut timed = Duration::ZERO;
                        for _ in 0..iters {
                            stream.fill(&mut buf, batch);
                            let start = Instant::now();
                            let decisions = engine.submit(&buf).expect("decided");
                            timed += start.elapsed();
                            black_box(decisions);
                        }
                        timed
                    });
                });
            }
            group.finish();
        }
    }
}

fn routing(c: &mut Criterion) {
    let mut group = c.benchmark_group("routing");
    let ids: Vec<u64> = (0..4096u64)
        .map(|i| 2_088_100_000_000_001 + i * 7919)
        .collect();
    group.throughput(Throughput::Elements(ids.len() as u64));
    group.bench_function("shard_of", |b| {
        b.iter(|| {
            let mut sum = 0usize;
            for &id in &ids {
                sum += shard_of(black_box(id), 2);
            }
            sum
        });
    });

    let workload = Workload::generate(&WorkloadOptions {
        accounts: 10_000,
        requests: 0,
        zipf: 0.0,
        seed: 1,
    });
    let engine = Engine::start(Config::default(), workload.accounts, workload.tokens)
        .expect("engine starts");
    let t0 = payauth_harness::bench::START_NS;
    let unknown: Vec<Request> = (0..4096u64)
        .map(|i| {
            let token = Dpan::from_u64(6_290_000_000_000_000 + i * 13).expect("16 digits");
            Request::new(Kind::Authorize, i + 1, t0 + i as i64)
                .with_token(token)
                .with_amount(Decimal::new(10_00, 2), Currency::Cny)
                .with_mcc(5411)
        })
        .collect();
    group.throughput(Throughput::Elements(unknown.len() as u64));
    group.bench_function("unknown_token", |b| {
        b.iter(|| engine.submit(black_box(&unknown)).expect("decided"));
    });
    group.finish();
}

fn csv(c: &mut Criterion) {
    let requests = if quick_mode() { 2_000 } else { 200_000 };
    let dir = tempfile::tempdir().expect("temp dir");
    generate(
        &GenOptions {
            accounts: 10_000,
            requests,
            seed: 1,
        },
        dir.path(),
    )
    .expect("dataset written");
    let mut group = c.benchmark_group("csv");
    group.throughput(Throughput::Elements(requests as u64));
    group.bench_function("load", |b| {
        b.iter(|| Dataset::load(black_box(dir.path())).expect("valid dataset"));
    });
    group.finish();

    let (rows, meta, _) = read_traffic_rows(dir.path()).expect("traffic rows");
    let bytes = binfmt::encode(&rows, &meta).expect("encodes");
    let mut group = c.benchmark_group("binary");
    group.throughput(Throughput::Elements(requests as u64));
    group.bench_function("decode", |b| {
        b.iter(|| binfmt::decode(black_box(&bytes)).expect("valid traffic"));
    });
    group.finish();
}

fn journal(c: &mut Criterion) {
    let quick = quick_mode();
    let workload = Workload::generate(&WorkloadOptions {
        accounts: 10_000,
        requests: if quick { STREAM_LEN_QUICK } else { STREAM_LEN },
        zipf: 1.0,
        seed: 1,
    });
    let mut group = c.benchmark_group("journal");
    let batch = 4096;
    group.throughput(Throughput::Elements(batch as u64));
    for (name, durability) in [
        ("sync", Durability::Sync),
        (
            "async",
            Durability::Async {
                interval: Duration::from_millis(10),
            },
        ),
    ] {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut journal = JournalConfig::new(dir.path().join("state"));
        journal.durability = durability;
        let config = Config {
            journal: Some(journal),
            snapshot_every_records: 0,
            ..Config::default()
        };
        let engine = Engine::start(config, workload.accounts.clone(), workload.tokens.clone())
            .expect("engine starts");
        let mut stream = Stream::of(&workload);
        let mut buf = Vec::with_capacity(batch);
        group.bench_function(BenchmarkId::new(name, batch), |b| {
            b.iter_custom(|iters| {
                let mut timed = Duration::ZERO;
                for _ in 0..iters {
                    stream.fill(&mut buf, batch);
                    let start = Instant::now();
                    let decisions = engine.submit(&buf).expect("decided");
                    timed += start.elapsed();
                    black_box(decisions);
                }
                timed
            });
        });
        drop(engine);
    }
    group.finish();
}

criterion_group! {
    name = benches;
    // Modest samples: a full `cargo bench` takes a few minutes on two cores.
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = decide, routing, csv, journal
}
criterion_main!(benches);
