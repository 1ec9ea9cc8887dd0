//! criterion benches of the engine through its public batch API: decisions per second for
#![allow(missing_docs)] // criterion_group! generates an undocumented function
//! a stream of authorize/capture pairs over a table of accounts, by batch size.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use payauth_benches::{accounts_and_tokens, auth_capture_traffic};
use payauth_engine::{Config, Engine};

fn submit_batches(c: &mut Criterion) {
    let accounts_n = 10_000;
    let (accounts, tokens) = accounts_and_tokens(accounts_n);
    let mut group = c.benchmark_group("engine_submit");
    for batch in [16usize, 256, 4096] {
        group.throughput(Throughput::Elements(batch as u64));
        group.bench_with_input(BenchmarkId::from_parameter(batch), &batch, |b, &batch| {
            let engine = Engine::start(
                Config {
                    shards: 2,
                    batch_max: batch,
                    ..Config::default()
                },
                accounts.clone(),
                tokens.clone(),
            )
            .unwrap();
            let mut next_id = 0u64;
            b.iter(|| {
                let traffic = auth_capture_traffic(&tokens, next_id, batch);
                next_id += batch as u64;
                engine.submit(&traffic).unwrap()
            });
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default();
    targets = submit_batches
}
criterion_main!(benches);
