//! `payauth replay` in its measured modes and `payauth compare`, through the binary: each
//! mode decides data/sample exactly as the unpaced replay (byte-identical outcomes.csv and
//! balances.csv), writes every report, and the command line refuses mixed modes.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn sample() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("harness/ has a parent")
        .join("data/sample")
}

fn payauth(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_payauth"))
        .args(args)
        .output()
        .expect("spawn payauth")
}

fn ok(args: &[&str]) -> String {
    let out = payauth(args);
    assert!(
        out.status.success(),
        "payauth {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

const REPORT_FILES: [&str; 10] = [
    "outcomes.csv",
    "balances.csv",
    "report.json",
    "latency.hlog",
    "service.hlog",
    "latency.hgrm",
    "service.hgrm",
    "latency-spectrum.svg",
    "latency-over-time.svg",
    "throughput-over-time.svg",
];

#[test]
fn every_mode_decides_like_the_unpaced_replay_and_writes_its_reports() {
    let tmp = tempfile::tempdir().unwrap();
    let data = sample();
    let data = data.to_str().unwrap();
    let base = tmp.path().join("base");
    ok(&["replay", data, "--out", base.to_str().unwrap()]);
    // The unpaced replay writes only its two files.
    assert!(!base.join("report.json").exists());

    let modes: [&[&str]; 3] = [
        &["--rate", "50000", "--warmup", "20ms", "--interval", "50ms"],
        &["--pace", "recorded", "--speed", "4000000"],
        &["--closed-loop", "--in-flight", "64", "--collectors", "2"],
    ];
    for (i, mode) in modes.iter().enumerate() {
        let out = tmp.path().join(format!("m{i}"));
        let mut args = vec![
            "replay",
            data,
            "--out",
            out.to_str().unwrap(),
            "--shards",
            "2",
        ];
        args.extend_from_slice(mode);
        let stdout = ok(&args);
        for f in ["outcomes.csv", "balances.csv"] {
            assert_eq!(
                fs::read(base.join(f)).unwrap(),
                fs::read(out.join(f)).unwrap(),
                "{f} differs under {mode:?}"
            );
        }
        for f in REPORT_FILES {
            assert!(out.join(f).is_file(), "{f} missing under {mode:?}");
        }
        for f in [
            "latency-spectrum.svg",
            "latency-over-time.svg",
            "throughput-over-time.svg",
        ] {
            let svg = fs::read_to_string(out.join(f)).unwrap();
            assert!(svg.starts_with("<svg"), "{f}");
            assert!(svg.contains("<text"), "{f} has no labels");
            assert!(svg.contains("<polyline"), "{f} has no series");
        }
        assert!(stdout.contains("p99.99"), "{stdout}");
        assert!(stdout.contains("codes: 00="), "{stdout}");
        let report: serde_json::Value =
            serde_json::from_slice(&fs::read(out.join("report.json")).unwrap()).unwrap();
        assert_eq!(report["run"]["requests"], 10_000);
        assert_eq!(
            report["dataset"]["digest"]["files"]
                .as_array()
                .unwrap()
                .len(),
            3
        );
        assert_eq!(report["settings"]["engine"]["shards"], 2);
        assert_eq!(
            report["build"]["profile"],
            if cfg!(debug_assertions) {
                "debug"
            } else {
                "release"
            }
        );
    }

    // compare: a report against itself is all ones; the folder or the file both work.
    let a = tmp.path().join("m0");
    let b = tmp.path().join("m0/report.json");
    let text = ok(&["compare", a.to_str().unwrap(), b.to_str().unwrap()]);
    let line = text
        .lines()
        .find(|l| l.starts_with("latency p99 ms"))
        .expect(&text);
    assert!(line.trim_end().ends_with("1.000"), "{line}");
    let text = ok(&[
        "compare",
        tmp.path().join("m0").to_str().unwrap(),
        tmp.path().join("m2").to_str().unwrap(),
    ]);
    assert!(text.contains("settings that differ"), "{text}");
}

#[test]
fn modes_do_not_mix_and_mode_options_need_a_mode() {
    let tmp = tempfile::tempdir().unwrap();
    let data = sample();
    let data = data.to_str().unwrap();
    let out = tmp.path().join("o");
    let out = out.to_str().unwrap();
    for args in [
        vec![
            "replay",
            data,
            "--out",
            out,
            "--rate",
            "10",
            "--closed-loop",
        ],
        vec![
            "replay", data, "--out", out, "--rate", "10", "--pace", "recorded",
        ],
        vec!["replay", data, "--out", out, "--warmup", "1s"],
        vec!["replay", data, "--out", out, "--speed", "2"],
        vec!["replay", data, "--out", out, "--in-flight", "8"],
        vec!["replay", data, "--out", out, "--rate", "0"],
        vec![
            "replay", data, "--out", out, "--rate", "10", "--warmup", "soon",
        ],
    ] {
        let o = payauth(&args);
        assert!(!o.status.success(), "{args:?} was accepted");
        assert!(!tmp.path().join("o").exists(), "{args:?} wrote output");
    }
    let o = payauth(&["compare", out, out]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.starts_with("error: cannot read"), "{err}");
}
