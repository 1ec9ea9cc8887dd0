//! `payauth durability-bench` end to end on the sample: every mode runs, the table has a row
//! per mode with the first as the 1.00 baseline, the modes' decisions are checked equal, and
//! the state directories are cleaned up.

use std::process::Command;

const SAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../data/sample");

#[test]
fn every_mode_is_measured_and_cleaned_up() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("states");
    let out = Command::new(env!("CARGO_BIN_EXE_payauth"))
        .args(["durability-bench", SAMPLE, "--modes", "none,sync,async:2ms"])
        .args([
            "--rounds",
            "2",
            "--in-flight",
            "512",
            "--submit-batch",
            "64",
        ])
        .args(["--warmup", "0s"])
        .arg("--state-root")
        .arg(&root)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let row = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("no {name} row in {text}"))
            .split_whitespace()
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    assert_eq!(row("none ")[2], "1.00", "{text}");
    for name in ["none ", "sync ", "async:2ms "] {
        let r = row(name);
        let per_sec: f64 = r[1].parse().unwrap();
        assert!(per_sec > 0.0, "{text}");
    }
    assert!(
        text.contains("every mode made the same 10000 decisions"),
        "{text}"
    );
    assert!(!root.exists(), "the state root was left behind");
}

#[test]
fn bad_modes_are_refused() {
    let out = Command::new(env!("CARGO_BIN_EXE_payauth"))
        .args(["durability-bench", SAMPLE, "--modes", "none,fast"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("fast"));
}
