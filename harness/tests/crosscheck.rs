//! Cross-checks of `payauth replay` against two independent readings of DOMAIN.md: the
//! engine crate's reference model (in process) and the Python implementation in
//! `tools/refimpl/` (a separate program), on adversarial and sample datasets, for shards 1, 2,
//! 4 and batch-max 1, 64, 4096. Outputs must agree byte for byte.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use payauth_engine::model::{Model, ModelConfig};
use payauth_harness::dataset::Dataset;
use payauth_harness::output;

/// (shards, batch-max) of every replay compared.
const CONFIGS: [(usize, usize); 3] = [(1, 1), (2, 64), (4, 4096)];

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("harness/ has a parent")
        .to_path_buf()
}

fn refimpl(script: &str) -> PathBuf {
    repo_root().join("tools/refimpl").join(script)
}

fn python() -> &'static str {
    let ok = Command::new("python3")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "python3 is needed for the cross-check against tools/refimpl (.ci/run installs it)"
    );
    "python3"
}

fn run(cmd: &mut Command) -> std::process::Output {
    let out = cmd.output().expect("spawn");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Replay with the case's own engine settings, if it has an `args` file
/// (`--ttl-ns 10 --window-ns 5 --retention-ns 0`).
fn replay(dataset: &Path, out: &Path, shards: usize, batch_max: usize) {
    let extra = fs::read_to_string(dataset.join("args")).unwrap_or_default();
    run(Command::new(env!("CARGO_BIN_EXE_payauth"))
        .arg("replay")
        .arg(dataset)
        .arg("--out")
        .arg(out)
        .args(["--shards", &shards.to_string()])
        .args(["--batch-max", &batch_max.to_string()])
        .args(extra.split_whitespace()));
}

fn assert_same_files(want: &Path, got: &Path, label: &str) {
    for name in ["outcomes.csv", "balances.csv"] {
        let w = fs::read_to_string(want.join(name)).expect("expected file");
        let g = fs::read_to_string(got.join(name)).expect("replay file");
        if w != g {
            let line = w
                .lines()
                .zip(g.lines())
                .position(|(a, b)| a != b)
                .map_or_else(|| "length".to_string(), |i| format!("line {}", i + 1));
            panic!(
                "{label}: {name} differs at {line}\n want: {:?}\n  got: {:?}",
                w.lines().nth(
                    line.trim_start_matches("line ")
                        .parse::<usize>()
                        .unwrap_or(1)
                        - 1
                ),
                g.lines().nth(
                    line.trim_start_matches("line ")
                        .parse::<usize>()
                        .unwrap_or(1)
                        - 1
                ),
            );
        }
    }
}

/// Every config of `payauth replay` matches the files in `want`.
fn replay_matches(dataset: &Path, want: &Path, work: &Path, label: &str) {
    for (shards, batch_max) in CONFIGS {
        let out = work.join(format!("replay-{shards}-{batch_max}"));
        replay(dataset, &out, shards, batch_max);
        assert_same_files(
            want,
            &out,
            &format!("{label} shards={shards} batch_max={batch_max}"),
        );
    }
}

/// The model's outputs for a dataset, written with the harness's own writers.
fn model_outputs(dataset: &Path, out: &Path) {
    let d = Dataset::load(dataset).expect("dataset loads");
    let mut model =
        Model::new(ModelConfig::default(), &d.accounts, &d.tokens).expect("model loads");
    let decisions: Vec<_> = d.traffic.iter().map(|r| model.apply(r)).collect();
    let state = model.export(d.last_ts_ns());
    output::write_replay_files(out, &decisions, &state.accounts).expect("write model outputs");
}

#[test]
fn replay_matches_the_python_reference_on_adversarial_datasets() {
    let py = python();
    let tmp = tempfile::tempdir().expect("tempdir");
    // Small datasets hit the edges densely; two larger ones let state build up.
    let runs = (1u64..=16)
        .map(|s| (s, 400usize))
        .chain([(1001, 4000), (1002, 4000)]);
    for (seed, requests) in runs {
        let work = tmp.path().join(format!("seed-{seed}"));
        let data = work.join("data");
        let want = work.join("ref");
        run(Command::new(py)
            .arg(refimpl("edgegen.py"))
            .arg(&data)
            .args(["--seed", &seed.to_string()])
            .args(["--requests", &requests.to_string()]));
        run(Command::new(py)
            .arg(refimpl("payauth_ref.py"))
            .arg(&data)
            .arg(&want));
        replay_matches(&data, &want, &work, &format!("edgegen seed {seed}"));
    }
}

#[test]
fn replay_matches_the_python_reference_on_the_sample() {
    let py = python();
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = repo_root().join("data/sample");
    let want = tmp.path().join("ref");
    run(Command::new(py)
        .arg(refimpl("payauth_ref.py"))
        .arg(&data)
        .arg(&want));
    replay_matches(&data, &want, tmp.path(), "data/sample");
}

#[test]
fn replay_matches_the_model_on_the_sample_and_generated_data() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let generated = tmp.path().join("gen");
    payauth_harness::generate::generate(
        &payauth_harness::generate::GenOptions {
            accounts: 50,
            requests: 3000,
            seed: 77,
        },
        &generated,
    )
    .expect("generate");
    for (label, data) in [
        ("data/sample", repo_root().join("data/sample")),
        ("generated seed 77", generated),
    ] {
        let work = tmp.path().join(label.replace(['/', ' '], "_"));
        let want = work.join("model");
        model_outputs(&data, &want);
        replay_matches(&data, &want, &work, label);
    }
}

/// The hand-made cases of tools/refimpl/cases: valid ones have outputs derived by hand from
/// DOMAIN.md; malformed ones must be refused with nothing written.
#[test]
fn replay_agrees_with_the_hand_made_cases() {
    hand_made_cases("cases");
}

/// Cases with their own TTL, window and retention (an `args` file).
#[test]
fn replay_agrees_with_the_hand_made_config_cases() {
    hand_made_cases("cases-config");
}

fn hand_made_cases(folder: &str) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let cases = refimpl(folder);
    let mut names: Vec<_> = fs::read_dir(&cases)
        .expect("cases folder")
        .map(|e| e.expect("entry").file_name().into_string().expect("utf-8"))
        .collect();
    names.sort();
    assert!(!names.is_empty(), "expected hand-made cases in {folder}");
    for name in names {
        let data = cases.join(&name);
        let expected = data.join("expected");
        let error = data.join("expect_error");
        if expected.is_dir() {
            replay_matches(
                &data,
                &expected,
                &tmp.path().join(&name),
                &format!("case {name}"),
            );
        } else if error.is_file() {
            let out = tmp.path().join(&name).join("out");
            let o = Command::new(env!("CARGO_BIN_EXE_payauth"))
                .arg("replay")
                .arg(&data)
                .arg("--out")
                .arg(&out)
                .output()
                .expect("spawn");
            let stderr = String::from_utf8_lossy(&o.stderr);
            assert!(
                !o.status.success(),
                "case {name}: malformed dataset was accepted"
            );
            assert!(
                !out.join("outcomes.csv").exists() && !out.join("balances.csv").exists(),
                "case {name}: output written for a malformed dataset"
            );
            // expect_error's first line names the file ("traffic.csv: line 2: field `kind`").
            let want = fs::read_to_string(&error).expect("expect_error");
            let file = want.split(':').next().unwrap_or_default().trim();
            assert!(
                stderr.contains(file),
                "case {name}: error does not name {file}: {stderr}"
            );
            let first = want.lines().next().unwrap_or_default();
            if let Some(n) = first.split("line ").nth(1) {
                let n: String = n.chars().take_while(char::is_ascii_digit).collect();
                assert!(
                    stderr.contains(&format!("{file}:{n}:")),
                    "case {name}: error does not name line {n}: {stderr}"
                );
            }
            if let Some(f) = first.split('`').nth(1) {
                assert!(
                    stderr.contains(&format!("field {f}")),
                    "case {name}: error does not name field {f}: {stderr}"
                );
            }
            assert!(!stderr.contains("panicked"), "case {name}: {stderr}");
        } else {
            panic!("case {name} has neither expected/ nor expect_error");
        }
    }
}
