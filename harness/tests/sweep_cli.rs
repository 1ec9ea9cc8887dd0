//! `payauth sweep` through the binary, in the reduced form CI can afford: the committed
//! sample dataset, tiny steps, explicit rates, two shard counts. It checks that the files
//! appear and parse and that their numbers are consistent with each other and with the
//! command line; it claims nothing about speed. Also the refusals of bad input.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use payauth_harness::sweep::{self, Limit, Phase, Verdict};

fn sample() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/sample")
}

fn payauth(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_payauth"))
        .args(args)
        .output()
        .expect("the payauth binary runs")
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn reduced_sweep_on_the_sample_writes_consistent_files() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("sweep");
    let sample = sample();
    let o = payauth(&[
        "sweep",
        sample.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--slo",
        "p99<=50ms",
        "--slo",
        "p99.9<=100ms",
        "--rates",
        "500,1000,2000",
        "--warmup",
        "50ms",
        "--step",
        "300ms",
        "--shards",
        "1,2",
        "--repeats",
        "2",
        "--target-tps",
        "5000",
        "--headroom",
        "30%",
        "--cores-per-host",
        "4",
        "--quiet",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        stdout.contains("capacity sweep of payauth-engine"),
        "{stdout}"
    );
    assert!(
        o.stderr.is_empty(),
        "--quiet prints nothing on stderr: {}",
        text(&o)
    );

    let report = sweep::read_report(&out.join(sweep::CAPACITY_FILE)).unwrap();
    assert_eq!(report.settings.shards, [1, 2]);
    assert_eq!(report.settings.slos.len(), 2);
    assert_eq!(report.dataset.as_ref().unwrap().requests, 10_000);
    assert_eq!(report.results.len(), 2);
    let mut steps = 0;
    for r in &report.results {
        let listed: Vec<f64> = r
            .steps
            .iter()
            .filter(|s| s.phase == Phase::List)
            .map(|s| s.offered_per_sec)
            .collect();
        let mut distinct = listed.clone();
        distinct.dedup(); // a failing rate is run again before the failure is believed
        assert_eq!(distinct, [500.0, 1000.0, 2000.0]);
        for s in &r.steps {
            assert_eq!(s.shards, r.shards);
            assert_ne!(s.verdict, Verdict::NotRun, "the sample holds these steps");
            assert!(!s.short);
            let achieved = s.achieved_per_sec.unwrap();
            assert!(
                achieved > 0.0 && achieved <= s.offered_per_sec * 1.05,
                "{s:?}"
            );
            let l = &s.latency_ns;
            assert!(l.p50 <= l.p90 && l.p90 <= l.p99 && l.p99 <= l.p99_9 && l.p99_9 <= l.max);
            // A warmup of 50 ms and a step of 300 ms at R: about R * 0.3 measured.
            let expected = s.offered_per_sec * 0.3;
            assert!(
                (s.measured as f64 - expected).abs() <= 0.05 * expected + 2.0,
                "{s:?}"
            );
            assert_eq!(s.passed(), s.reasons.is_empty());
        }
        // The capacity is the highest passing listed rate, repeated twice.
        let best = r
            .steps
            .iter()
            .filter(|s| s.phase == Phase::List && s.passed() && !s.retried)
            .map(|s| s.offered_per_sec)
            .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))));
        assert_eq!(r.capacity_per_sec, best);
        match (best, &r.repeats) {
            (Some(b), Some(rep)) => {
                assert_eq!((rep.offered_per_sec, rep.runs), (b, 2));
                assert!(rep.achieved_per_sec.min <= rep.achieved_per_sec.max);
                assert_eq!(
                    r.steps.iter().filter(|s| s.phase == Phase::Repeat).count(),
                    2
                );
            }
            (None, None) => assert_eq!(r.limit, Limit::NonePassed),
            other => panic!("capacity and repeats disagree: {other:?}"),
        }
        let k = r.knee.as_ref().expect("steps were measured");
        assert_eq!(k.low_load_per_sec, 500.0);
        steps += r.steps.len();
    }
    // Two shard counts: no USL fit, and it says so.
    assert!(report.scaling.usl.is_none());
    let found = report.scaling.points.len();
    if found < 3 {
        let why = report.scaling.no_fit.as_deref().unwrap();
        assert!(
            why.contains(&format!("no fit possible with {found} point")),
            "{why}"
        );
    }
    // Sizing: answered whenever a capacity was found, with its assumptions.
    if report.scaling.points.is_empty() {
        assert!(report.sizing.is_none() && report.sizing_impossible.is_some());
    } else {
        let z = report.sizing.as_ref().unwrap();
        assert!(z.capacity_per_sec * (1.0 - 0.3) >= 5000.0 - 1e-6, "{z:?}");
        assert!(z.shards_per_host <= 3 && z.hosts >= 1);
        assert_eq!(z.cores, z.hosts * (z.shards_per_host + 1));
        assert!(z.assumptions.iter().any(|a| a.contains("shard_of")));
        assert!(stdout.contains("sizing: "), "{stdout}");
    }

    // sweep.csv: a header and one row per step.
    let csv = fs::read_to_string(out.join(sweep::SWEEP_CSV_FILE)).unwrap();
    let mut lines = csv.lines();
    let header = lines.next().unwrap();
    assert!(
        header.starts_with("shards,phase,offered_per_sec,"),
        "{header}"
    );
    assert!(header.ends_with(",pass,verdict,reason"), "{header}");
    assert_eq!(lines.count(), steps);
    for f in &report.files {
        let path = out.join(f);
        assert!(path.is_file(), "{f} listed but missing");
        if f.ends_with(".svg") {
            let svg = fs::read_to_string(&path).unwrap();
            assert!(svg.contains("<svg") && svg.contains("</svg>"), "{f}");
        }
    }
    for f in [
        "capacity.json",
        "sweep.csv",
        "sweep-latency-1-shards.svg",
        "sweep-latency-2-shards.svg",
        "sweep-achieved.svg",
        "sweep-scaling.svg",
    ] {
        assert!(report.files.iter().any(|x| x == f), "{f} not written");
    }
}

#[test]
fn a_dataset_too_short_for_a_rate_is_said_so_and_durable_steps_clean_up() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("short");
    let sample = sample();
    // 500/s is measurable (under a sync journal), 100k/s for 350 ms needs 35,000 requests:
    // the sample has 10,000.
    let o = payauth(&[
        "sweep",
        sample.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--slo",
        "p99<=1s",
        "--rates",
        "500,100k",
        "--warmup",
        "50ms",
        "--step",
        "300ms",
        "--shards",
        "1",
        "--repeats",
        "0",
        "--durability",
        "sync",
        "--quiet",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let report = sweep::read_report(&out.join(sweep::CAPACITY_FILE)).unwrap();
    let r = &report.results[0];
    assert_eq!(report.settings.durability, "sync");
    let last = r.steps.last().unwrap();
    assert_eq!(last.verdict, Verdict::NotRun);
    assert!(last.reasons[0].contains("too short"), "{:?}", last.reasons);
    assert_eq!(
        r.limit,
        Limit::DatasetTooShort { rate: 100_000.0 },
        "{:#?}",
        r.steps
    );
    if r.capacity_per_sec.is_some() {
        assert!(r.lower_bound);
        let stdout = String::from_utf8_lossy(&o.stdout);
        assert!(stdout.contains("at least"), "{stdout}");
    }
    // Each durable step's state directory is gone after it.
    let left: Vec<_> = fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn bad_input_is_refused_with_a_message() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x");
    let sample = sample();
    let s = sample.to_str().unwrap();
    let o = out.to_str().unwrap();
    for (args, expect) in [
        (vec!["sweep", s, "--out", o, "--slo", "p99<1ms"], "--slo"),
        (vec!["sweep", s, "--out", o, "--slo", "p99<=1"], "unit"),
        (vec!["sweep", s, "--out", o], "--slo"),
        (
            vec!["sweep", s, "--out", o, "--slo", "p99<=1ms", "--rates", ""],
            "rates",
        ),
        (
            vec![
                "sweep", s, "--out", o, "--slo", "p99<=1ms", "--rates", "1k,,2k",
            ],
            "empty",
        ),
        (
            vec!["sweep", s, "--out", o, "--slo", "p99<=1ms", "--shards", "0"],
            "1..=256",
        ),
        (
            vec![
                "sweep",
                s,
                "--out",
                o,
                "--slo",
                "p99<=1ms",
                "--durability",
                "later",
            ],
            "async:INTERVAL",
        ),
        (
            vec![
                "sweep",
                s,
                "--out",
                o,
                "--slo",
                "p99<=1ms",
                "--headroom",
                "30%",
            ],
            "target-tps",
        ),
        (
            vec![
                "sweep",
                s,
                "--out",
                o,
                "--slo",
                "p99<=1ms",
                "--target-tps",
                "1k",
                "--cores-per-host",
                "1",
            ],
            "cores",
        ),
        (
            vec![
                "sweep",
                "/nonexistent/dataset",
                "--out",
                o,
                "--slo",
                "p99<=1ms",
            ],
            "dataset",
        ),
        (
            vec![
                "sweep",
                "--stand-in",
                "1ms:4",
                "--out",
                o,
                "--slo",
                "p99<=1ms",
                "--durability",
                "sync",
            ],
            "stand-in",
        ),
    ] {
        let run = payauth(&args);
        let err = String::from_utf8_lossy(&run.stderr);
        assert!(!run.status.success(), "{args:?} was accepted");
        assert!(err.contains(expect), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
    assert!(!out.join(sweep::CAPACITY_FILE).exists());
}
