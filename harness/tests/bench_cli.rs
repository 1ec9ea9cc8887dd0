//! `payauth bench` end to end, through the binary: a tiny workload runs through the engine and
//! the lock-based baseline, both throughputs are printed, and the two agree.

use std::process::Command;

fn bench(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_payauth"))
        .arg("bench")
        .args(args)
        .output()
        .expect("payauth runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn tiny_workload_agrees_and_reports_both_sides() {
    for zipf in ["1.0", "0"] {
        let (ok, stdout, stderr) = bench(&[
            "--accounts",
            "1000",
            "--requests",
            "20000",
            "--zipf",
            zipf,
            "--batch",
            "512",
            "--shards",
            "2",
        ]);
        assert!(ok, "zipf {zipf}: {stdout}\n{stderr}");
        assert!(
            stdout.contains("agreement: identical: 20000 decisions; final state of 1000 accounts"),
            "{stdout}"
        );
        for line in [
            "engine  : 20000 decisions",
            "baseline: 20000 decisions",
            "ratio: ",
        ] {
            assert!(stdout.contains(line), "{line:?} missing from {stdout}");
        }
        assert!(stdout.contains("machine: "), "{stdout}");
    }
}

#[test]
fn refuses_bad_options() {
    for args in [
        &["--accounts", "0"][..],
        &["--zipf", "-1"],
        &["--batch", "0"],
        &["--shards", "0"],
    ] {
        let (ok, _, stderr) = bench(args);
        assert!(!ok, "{args:?} accepted");
        assert!(stderr.starts_with("error: "), "{args:?}: {stderr}");
    }
}
