//! Differential property tests: random traffic of every kind through the reference model and
//! the sharded engine (shards 1, 2, 4; batch_max 1, 7, 4096; random submission sizes) must
//! give identical decisions and final state, and DOMAIN.md's invariants must hold.

mod common;

use common::{assert_invariants, assert_same_state, run_model, traffic, universe};
use payauth_engine::{
    AccountSpec, Code, Config, Decision, Engine, Request, StateExport, TokenSpec,
};
use proptest::prelude::*;

fn run_engine(
    accounts: &[AccountSpec],
    tokens: &[TokenSpec],
    traffic: &[Request],
    shards: usize,
    batch_max: usize,
    chunks: &[usize],
) -> (Vec<Decision>, StateExport) {
    let config = Config {
        shards,
        batch_max,
        queue_depth: 4,
        holds_per_shard_hint: 16,
        ..Config::default()
    };
    let engine = Engine::start(config, accounts.to_vec(), tokens.to_vec()).expect("engine start");
    let mut decisions = Vec::with_capacity(traffic.len());
    let mut rest = traffic;
    let mut pending = std::collections::VecDeque::new();
    let mut i = 0;
    while !rest.is_empty() {
        let n = chunks[i % chunks.len()].clamp(1, rest.len());
        i += 1;
        let (head, tail) = rest.split_at(n);
        rest = tail;
        // Keep up to three batches in flight to exercise queueing across submissions.
        pending.push_back(engine.submit_async(head));
        if pending.len() > 3 {
            decisions.extend(pending.pop_front().unwrap().wait().expect("wait"));
        }
    }
    for p in pending {
        decisions.extend(p.wait().expect("wait"));
    }
    let as_of = traffic.last().map_or(i64::MIN, |r| r.ts_ns);
    let state = engine.shutdown(as_of).expect("shutdown");
    (decisions, state)
}

fn check(traffic: &[Request], chunks: &[usize]) {
    let (accounts, tokens) = universe();
    let (want, want_state) = run_model(&accounts, &tokens, traffic);
    assert_invariants(&accounts, traffic, &want, &want_state);
    for (shards, batch_max) in [(1, 1), (2, 7), (4, 4096)] {
        let (got, got_state) = run_engine(&accounts, &tokens, traffic, shards, batch_max, chunks);
        let label = format!("shards={shards} batch_max={batch_max}");
        for (i, (w, g)) in want.iter().zip(&got).enumerate() {
            assert_eq!(w, g, "{label}: decision {i} differs for {:?}", traffic[i]);
        }
        assert_eq!(want.len(), got.len(), "{label}: decision count");
        assert_same_state(&want_state, &got_state, &label);
        assert_invariants(&accounts, traffic, &got, &got_state);
    }
}

fn cases() -> u32 {
    std::env::var("PAYAUTH_PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1024)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn engine_matches_model(traffic in traffic(), chunks in prop::collection::vec(1usize..64, 1..6)) {
        check(&traffic, &chunks);
    }
}

/// The random traffic must actually reach the interesting codes, or the property above
/// proves little: run a fixed sample through the model and demand every code appears.
#[test]
fn generator_reaches_every_code() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let (accounts, tokens) = universe();
    let mut runner = TestRunner::deterministic();
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..300 {
        let t = traffic().new_tree(&mut runner).unwrap().current();
        let (d, _) = run_model(&accounts, &tokens, &t);
        seen.extend(d.iter().map(|d| d.code));
    }
    let missing: Vec<Code> = Code::ALL
        .iter()
        .copied()
        .filter(|c| !seen.contains(c))
        .collect();
    assert!(missing.is_empty(), "codes never produced: {missing:?}");
}
