//! Unit tests of the sweep's parsing, search, knee, backlog trend and sizing: pure logic,
//! driven by fake steps (no timing).

use super::*;

fn slos() -> Vec<Slo> {
    vec![parse_slo("p99<=1ms").unwrap()]
}

fn fake(shards: usize, phase: Phase, rate: f64, pass: bool, p99_ns: u64) -> Step {
    Step {
        shards,
        phase,
        offered_per_sec: rate,
        sent_per_sec: Some(rate),
        achieved_per_sec: Some(if pass { rate } else { rate * 0.9 }),
        requests: 100,
        measured: 90,
        measured_s: 1.0,
        short: false,
        retried: false,
        latency_ns: Percentiles {
            count: 90,
            p99: p99_ns,
            ..Percentiles::default()
        },
        service_p99_ns: 0,
        sender_lag_p99_ns: 0,
        full_answers: 0,
        backlog: None,
        verdict: if pass { Verdict::Pass } else { Verdict::Fail },
        reasons: if pass {
            Vec::new()
        } else {
            vec!["too slow".into()]
        },
    }
}

/// A target that passes exactly up to `capacity` (and cannot be run above `rows_rate`).
fn threshold(capacity: f64, rows_rate: Option<f64>) -> impl FnMut(f64, Phase) -> Result<Step> {
    move |rate, phase| {
        if rows_rate.is_some_and(|r| rate > r) {
            return Ok(Step::not_run(1, phase, rate, "too short".into()));
        }
        Ok(fake(1, phase, rate, rate <= capacity, 1000))
    }
}

#[test]
fn slos_parse() {
    let s = parse_slo("p99<=1ms").unwrap();
    assert_eq!(
        (s.label.as_str(), s.quantile, s.bound_ns),
        ("p99", 0.99, 1_000_000)
    );
    let s = parse_slo(" p99.9 <= 5ms ").unwrap();
    assert_eq!(s.label, "p99.9");
    assert!((s.quantile - 0.999).abs() < 1e-12);
    assert_eq!(parse_slo("max<=250us").unwrap().quantile, 1.0);
    assert_eq!(parse_slo("P50<=2s").unwrap().bound_ns, 2_000_000_000);
    for bad in [
        "",
        "p99",
        "p99<1ms",
        "p99<=",
        "p99<=1",
        "q99<=1ms",
        "p100<=1ms",
        "p0<=1ms",
        "p99<=0ms",
        "p99<=fast",
        "pxx<=1ms",
    ] {
        let e = parse_slo(bad).unwrap_err();
        assert!(e.contains("--slo"), "{bad}: {e}");
    }
}

#[test]
fn rates_and_other_values_parse() {
    assert_eq!(parse_rates("auto"), Ok(Rates::Auto));
    assert_eq!(
        parse_rates("5k,1000, 2000,1000"),
        Ok(Rates::List(vec![1000.0, 2000.0, 5000.0]))
    );
    assert_eq!(parse_rate("1.5M"), Ok(1_500_000.0));
    for bad in ["", ",", "1000,", "0", "-5", "fast", "1e999"] {
        assert!(parse_rates(bad).is_err(), "{bad}");
    }
    assert_eq!(parse_shards("4,1,2,2"), Ok(vec![1, 2, 4]));
    for bad in ["", "0", "257", "1,,2", "two"] {
        assert!(parse_shards(bad).is_err(), "{bad}");
    }
    assert_eq!(parse_percent("30%"), Ok(0.3));
    assert_eq!(parse_percent("12.5"), Ok(0.125));
    for bad in ["100%", "-1%", "x"] {
        assert!(parse_percent(bad).is_err(), "{bad}");
    }
    let async5 = crate::durable::parse_durability("async:5").unwrap();
    let j = crate::durable::journal_in(Path::new("/x"), async5).unwrap();
    assert_eq!(
        j.durability,
        Durability::Async {
            interval: Duration::from_millis(5)
        }
    );
    assert_eq!(j.dir, Path::new("/x"));
    assert!(crate::durable::journal_in(Path::new("/x"), Durability::None).is_none());
    assert_eq!(durability_name(async5), "async:5ms");
    let fine = crate::durable::parse_durability("async:250us").unwrap();
    assert_eq!(durability_name(fine), "async:250us");
    assert_eq!(durability_name(Durability::Sync), "sync");
    let s = parse_stand_in("2ms:16").unwrap();
    assert_eq!(s.capacity_per_sec(2), 16_000.0);
    for bad in ["2ms", "0ms:4", "2ms:0", "2ms:x", ":4"] {
        assert!(parse_stand_in(bad).is_err(), "{bad}");
    }
}

#[test]
fn options_are_checked() {
    assert!(SweepOptions::new(Vec::new()).validate().is_err());
    let mut o = SweepOptions::new(slos());
    assert!(o.validate().is_ok());
    o.rates = Rates::List(Vec::new());
    assert!(o.validate().is_err());
    let mut o = SweepOptions::new(slos());
    o.interval = Some(Duration::from_micros(100));
    assert!(o.validate().is_err());
    o.interval = Some(Duration::from_secs(60));
    assert!(o.validate().is_err());
    let mut o = SweepOptions::new(slos());
    o.sizing = Some(SizingOptions {
        target_per_sec: 1000.0,
        headroom: 0.3,
        cores_per_host: 1,
        overhead_cores: 1,
    });
    assert!(o.validate().is_err());
}

#[test]
fn auto_search_finds_the_threshold_within_precision() {
    for capacity in [1000.0, 2345.0, 40_000.0, 999_999.0] {
        let mut o = SweepOptions::new(slos());
        o.start_rate = 1000.0;
        let out = search(&o, threshold(capacity, None)).unwrap();
        let best = out.best.unwrap();
        assert!(
            best <= capacity && best >= capacity / (1.0 + o.precision),
            "{capacity}: {best}"
        );
        match &out.limit {
            Limit::Failed { rate, .. } => {
                assert!(*rate > capacity && (*rate - best) / best <= o.precision)
            }
            other => panic!("{other:?}"),
        }
        assert!(out.steps.len() < 30, "{}", out.steps.len());
        // Ramp steps come first, then bisection.
        let first_bisect = out.steps.iter().position(|s| s.phase == Phase::Bisect);
        if let Some(i) = first_bisect {
            assert!(out.steps[..i].iter().all(|s| s.phase == Phase::Ramp));
        }
    }
}

#[test]
fn a_failing_start_halves_first() {
    let mut o = SweepOptions::new(slos());
    o.start_rate = 10_000.0;
    o.retries = 0;
    let out = search(&o, threshold(1500.0, None)).unwrap();
    let rates: Vec<f64> = out.steps.iter().map(|s| s.offered_per_sec).collect();
    assert_eq!(&rates[..4], [10_000.0, 5000.0, 2500.0, 1250.0]);
    let best = out.best.unwrap();
    assert!((1500.0 / 1.02..=1500.0).contains(&best));
    // Nothing passes at all.
    let out = search(&o, threshold(0.0, None)).unwrap();
    assert_eq!(out.best, None);
    assert_eq!(out.limit, Limit::NonePassed);
    assert_eq!(out.steps.len(), 1 + HALVINGS_MAX);
}

#[test]
fn a_short_dataset_gives_a_lower_bound() {
    let o = SweepOptions::new(slos());
    let out = search(&o, threshold(1e9, Some(5000.0))).unwrap();
    assert_eq!(out.best, Some(4000.0));
    assert_eq!(out.limit, Limit::DatasetTooShort { rate: 8000.0 });
    assert!(out.limit.is_lower_bound());
}

#[test]
fn max_rate_stops_the_ramp() {
    let mut o = SweepOptions::new(slos());
    o.max_rate = Some(3000.0);
    let out = search(&o, threshold(1e9, None)).unwrap();
    let rates: Vec<f64> = out.steps.iter().map(|s| s.offered_per_sec).collect();
    assert_eq!(rates, [1000.0, 2000.0, 3000.0]);
    assert_eq!(out.limit, Limit::MaxRate { rate: 3000.0 });
}

#[test]
fn listed_rates_run_in_order_and_report_the_first_failure_above_the_best() {
    let mut o = SweepOptions::new(slos());
    o.retries = 0;
    o.rates = Rates::List(vec![100.0, 200.0, 300.0, 400.0]);
    // 200 fails (a blip), 300 passes, 400 fails: capacity 300, limited by 400.
    let out = search(&o, |rate, phase| {
        Ok(fake(1, phase, rate, rate != 200.0 && rate != 400.0, 1000))
    })
    .unwrap();
    assert_eq!(out.steps.len(), 4);
    assert!(out.steps.iter().all(|s| s.phase == Phase::List));
    assert_eq!(out.best, Some(300.0));
    assert!(matches!(out.limit, Limit::Failed { rate, .. } if rate == 400.0));
    let out = search(&o, |rate, phase| Ok(fake(1, phase, rate, true, 1000))).unwrap();
    assert_eq!(out.limit, Limit::AllPassed);
    let out = search(&o, |rate, phase| Ok(fake(1, phase, rate, false, 1000))).unwrap();
    assert_eq!((out.best, out.limit), (None, Limit::NonePassed));
}

#[test]
fn knee_is_where_p99_stays_above_k_times_the_low_load_p99() {
    let steps = vec![
        fake(1, Phase::Ramp, 4000.0, true, 2_100),
        fake(1, Phase::Ramp, 1000.0, true, 1_000),
        fake(1, Phase::Ramp, 2000.0, true, 2_500), // a hiccup: lower rates come back
        fake(1, Phase::Bisect, 3000.0, true, 1_900),
        fake(1, Phase::Bisect, 5000.0, false, 50_000),
        fake(1, Phase::Repeat, 3500.0, true, 9_000), // repeats do not count
    ];
    let k = knee(&steps, 2.0).unwrap();
    assert_eq!(k.low_load_per_sec, 1000.0);
    assert_eq!(k.low_load_p99_ns, 1000);
    assert_eq!(k.knee_per_sec, Some(4000.0));
    assert_eq!(k.knee_p99_ns, Some(2_100));
    assert_eq!(k.below_knee_per_sec, Some(3000.0));
    // An overruled (retried) failure does not count either.
    let mut blip = fake(1, Phase::Bisect, 3000.0, false, 80_000);
    blip.retried = true;
    let mut with_blip = steps.clone();
    with_blip.push(blip);
    assert_eq!(knee(&with_blip, 2.0).unwrap().knee_per_sec, Some(4000.0));
    // Never above: not reached, the highest rate is below the knee.
    let k = knee(&steps[1..4], 2.0).unwrap();
    assert_eq!((k.knee_per_sec, k.below_knee_per_sec), (None, Some(3000.0)));
    assert_eq!(knee(&[], 2.0), None);
}

#[test]
fn a_failure_is_retried_before_it_is_believed() {
    // 4000/s fails once (a hiccup), then passes: the ramp goes on. 8000/s fails twice.
    let mut runs_at_4000 = 0;
    let o = SweepOptions::new(slos());
    let out = search(&o, |rate, phase| {
        let pass = if rate == 4000.0 {
            runs_at_4000 += 1;
            runs_at_4000 > 1
        } else {
            rate <= 6000.0
        };
        Ok(fake(1, phase, rate, pass, 1000))
    })
    .unwrap();
    let table: Vec<(f64, bool, bool)> = out
        .steps
        .iter()
        .map(|s| (s.offered_per_sec, s.passed(), s.retried))
        .collect();
    assert_eq!(
        &table[..6],
        [
            (1000.0, true, false),
            (2000.0, true, false),
            (4000.0, false, true),
            (4000.0, true, false),
            (8000.0, false, true),
            (8000.0, false, false),
        ]
    );
    let best = out.best.unwrap();
    assert!((6000.0 / 1.02..=6000.0).contains(&best), "{best}");
    // No retries: the hiccup ends the ramp.
    let mut o = SweepOptions::new(slos());
    o.retries = 0;
    let mut first = true;
    let out = search(&o, |rate, phase| {
        let pass = !(rate == 4000.0 && std::mem::take(&mut first)) && rate <= 6000.0;
        Ok(fake(1, phase, rate, pass, 1000))
    })
    .unwrap();
    assert!(out.best.unwrap() < 4000.0);
}

#[test]
fn backlog_trend_is_a_slope() {
    // Flat, with noise: no growth.
    let flat: Vec<(u64, i64)> = (1..=10).map(|i| (i * 1000, 40 + (i as i64 % 3))).collect();
    let b = backlog_trend(&flat).unwrap();
    assert!(b.growth.abs() < 0.001, "{b:?}");
    // 1% of what is due stays behind.
    let growing: Vec<(u64, i64)> = (1..=10).map(|i| (i * 1000, 40 + i as i64 * 10)).collect();
    let b = backlog_trend(&growing).unwrap();
    assert!((b.growth - 0.01).abs() < 1e-9, "{b:?}");
    assert!((b.rise - 90.0).abs() < 1e-6);
    assert_eq!((b.first, b.last, b.due, b.readings), (50, 140, 9000, 10));
    assert_eq!(backlog_trend(&growing[..2]), None);
}

#[test]
fn spread_of_values() {
    let s = Spread::of(&[1.0, 2.0, 3.0]);
    assert_eq!((s.min, s.max, s.mean), (1.0, 3.0, 2.0));
    assert!((s.stdev - 1.0).abs() < 1e-12);
    assert_eq!(Spread::of(&[5.0]).stdev, 0.0);
    assert_eq!(Spread::of(&[]), Spread::default());
}

fn ask(target: f64, headroom: f64, cores: usize) -> SizingOptions {
    SizingOptions {
        target_per_sec: target,
        headroom,
        cores_per_host: cores,
        overhead_cores: 1,
    }
}

#[test]
fn sizing_from_measured_points() {
    let scaling = Scaling {
        points: vec![(1, 10_000.0), (2, 18_000.0)],
        usl: None,
        no_fit: Some("no fit possible with 2 points".into()),
    };
    // 12,000/s at 25% headroom needs 16,000/s: two shards on one host.
    let z = size(&ask(12_000.0, 0.25, 8), &scaling, false, "t", &[]).unwrap();
    assert_eq!(
        (z.basis.as_str(), z.shards, z.hosts, z.cores),
        ("measured", 2, 1, 3)
    );
    assert!((z.needed_per_sec - 16_000.0).abs() < 1e-9);
    // 50,000/s needs 66,667/s: hosts of 2 shards at 18,000/s each -> 4 hosts.
    let z = size(&ask(50_000.0, 0.25, 8), &scaling, true, "t", &[]).unwrap();
    assert_eq!(
        (z.shards_per_host, z.hosts, z.shards, z.cores),
        (2, 4, 8, 12)
    );
    assert!(z.from_lower_bound);
    assert!(z
        .assumptions
        .iter()
        .any(|a| a.contains("shard_of(account_id, 4)")));
    // A host of 2 cores fits 1 shard: 10,000/s each.
    let z = size(&ask(15_000.0, 0.0, 2), &scaling, false, "t", &[]).unwrap();
    assert_eq!((z.shards_per_host, z.hosts), (1, 2));
    // An unstable shard count is left out while a stable one remains.
    let z = size(&ask(12_000.0, 0.25, 8), &scaling, false, "t", &[2]).unwrap();
    assert_eq!((z.shards_per_host, z.hosts), (1, 2));
    let z = size(&ask(12_000.0, 0.25, 8), &scaling, false, "t", &[1, 2]).unwrap();
    assert_eq!((z.shards_per_host, z.hosts), (2, 1));
    let none = Scaling {
        points: Vec::new(),
        usl: None,
        no_fit: None,
    };
    assert!(size(&ask(1.0, 0.0, 4), &none, false, "t", &[]).is_err());
}

#[test]
fn a_poor_usl_fit_is_not_used_for_sizing() {
    let pts = [
        (1.0, 10_000.0),
        (2.0, 3_000.0),
        (3.0, 25_000.0),
        (4.0, 4_000.0),
    ];
    let f = usl::fit(&pts).unwrap();
    assert!(f.r_squared.unwrap() < SIZING_R2_MIN, "{f:?}");
    let scaling = Scaling {
        points: pts.iter().map(|&(n, c)| (n as usize, c)).collect(),
        usl: Some(f),
        no_fit: None,
    };
    let z = size(&ask(20_000.0, 0.0, 8), &scaling, false, "t", &[]).unwrap();
    assert_eq!(
        (z.basis.as_str(), z.shards_per_host, z.hosts),
        ("measured", 3, 1)
    );
    assert!(z.assumptions.iter().any(|a| a.contains("not trusted")));
}

#[test]
fn sizing_from_the_usl_curve() {
    let pts: Vec<(f64, f64)> = [1.0, 2.0, 4.0, 8.0]
        .iter()
        .map(|&n| (n, usl::throughput(10_000.0, 0.05, 0.001, n)))
        .collect();
    let f = usl::fit(&pts).unwrap();
    let scaling = Scaling {
        points: pts.iter().map(|&(n, c)| (n as usize, c)).collect(),
        usl: Some(f.clone()),
        no_fit: None,
    };
    // 50,000/s at 0% headroom: the smallest N with X(N) >= 50,000 on a 16-core host.
    let z = size(&ask(50_000.0, 0.0, 16), &scaling, false, "t", &[]).unwrap();
    let want = (1..=15).find(|&n| f.at(n as f64) >= 50_000.0).unwrap();
    assert_eq!(
        (z.basis.as_str(), z.shards_per_host, z.hosts),
        ("usl", want, 1)
    );
    // Beyond what one host reaches: the best N per host, several hosts.
    let z = size(&ask(1e6, 0.0, 16), &scaling, false, "t", &[]).unwrap();
    let best = (1..=15)
        .max_by(|&a, &b| f.at(a as f64).total_cmp(&f.at(b as f64)))
        .unwrap();
    assert_eq!(z.shards_per_host, best);
    assert_eq!(z.hosts, (1e6 / f.at(best as f64)).ceil() as usize);
}
