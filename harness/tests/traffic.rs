//! The realistic traffic generator, checked statistically against the distributions it
//! states (README.md, "Generate"), for determinism by seed on any thread count, and end to end
//! through the engine. Each tolerance is written next to its check with the reason for it.

use std::collections::HashMap;
use std::path::Path;

use payauth_engine::api::{CHINA_OFFSET_NS, NS_PER_DAY, NS_PER_SEC};
use payauth_engine::{Currency, Kind, Request, TokenField};
use payauth_harness::csvout;
use payauth_harness::dataset::Dataset;
use payauth_harness::replay::{self, ReplayOptions};
use payauth_harness::traffic::stories::{self, MCCS, RETRANSMIT_SHARE};
use payauth_harness::traffic::{self, Format, Generated, Profile, TrafficOptions};

fn steady(accounts: usize, requests: usize, seed: u64) -> TrafficOptions {
    TrafficOptions {
        accounts,
        requests,
        seed,
        rate_per_s: 2_000.0,
        ..TrafficOptions::default()
    }
}

fn kind_index(k: Kind) -> usize {
    Kind::ALL.iter().position(|x| *x == k).unwrap()
}

/// The account index each request is addressed to (by token or account_id), if any.
fn payers(g: &Generated) -> Vec<Option<usize>> {
    let by_id: HashMap<u64, usize> = g
        .accounts
        .iter()
        .enumerate()
        .map(|(i, a)| (a.account_id, i))
        .collect();
    let by_token: HashMap<u64, usize> = g
        .tokens
        .iter()
        .map(|t| (t.token.get(), by_id[&t.account_id]))
        .collect();
    g.traffic
        .requests
        .iter()
        .map(|r| match (r.token, r.account_id) {
            (TokenField::Dpan(d), _) => by_token.get(&d.get()).copied(),
            (_, Some(a)) => by_id.get(&a).copied(),
            _ => None,
        })
        .collect()
}

/// Bytes of all three CSV files and of the binary traffic.
fn bytes_of(g: &Generated) -> Vec<u8> {
    let mut out = Vec::new();
    csvout::write_accounts_csv(&mut out, &g.accounts).unwrap();
    csvout::write_tokens_csv(&mut out, &g.tokens).unwrap();
    csvout::write_traffic_csv(&mut out, &g.traffic).unwrap();
    out.extend(payauth_harness::binfmt::encode(&g.traffic, &g.meta).unwrap());
    out
}

#[test]
fn steady_traffic_has_the_stated_shape() {
    let opts = steady(5_000, 300_000, 11);
    let g = traffic::generate(&opts).unwrap();
    let reqs = &g.traffic.requests;
    assert_eq!(g.accounts.len(), 5_000);
    assert_eq!(reqs.len(), 300_000);
    assert!(reqs.windows(2).all(|w| w[0].ts_ns <= w[1].ts_ns));
    assert_eq!(
        reqs[0].ts_ns / NS_PER_SEC,
        traffic::STEADY_START_NS / NS_PER_SEC
    );

    // Tokens: 1 to 3 per account, 1.5 on average (60/30/10%).
    let mut per_account: HashMap<u64, usize> = HashMap::new();
    for t in &g.tokens {
        *per_account.entry(t.account_id).or_default() += 1;
    }
    assert_eq!(per_account.len(), 5_000);
    assert!(per_account.values().all(|&n| (1..=3).contains(&n)));
    let mean_tokens = g.tokens.len() as f64 / 5_000.0;
    assert!(
        (mean_tokens - 1.5).abs() < 0.05,
        "tokens per account {mean_tokens}"
    );

    // Rate: exactly `requests` arrivals of a Poisson process over requests / rate seconds.
    // The mean is exact up to the gap after the last arrival. Counts per 0.1 s of a Poisson
    // process have variance equal to their mean: 1,500 buckets give the ratio within 0.15 at
    // 4 standard deviations.
    let span_s = (reqs[reqs.len() - 1].ts_ns - reqs[0].ts_ns) as f64 / 1e9;
    let mean_rate = reqs.len() as f64 / span_s;
    assert!(
        (mean_rate / 2_000.0 - 1.0).abs() < 0.005,
        "mean rate {mean_rate}"
    );
    let mut per_bucket = vec![0f64; (span_s * 10.0) as usize];
    for r in reqs {
        let b = ((r.ts_ns - traffic::STEADY_START_NS) / (NS_PER_SEC / 10)) as usize;
        if b < per_bucket.len() {
            per_bucket[b] += 1.0;
        }
    }
    let n = per_bucket.len() as f64;
    let m = per_bucket.iter().sum::<f64>() / n;
    let var = per_bucket.iter().map(|c| (c - m).powi(2)).sum::<f64>() / (n - 1.0);
    assert!((0.85..1.15).contains(&(var / m)), "dispersion {}", var / m);

    // Kind mix, in the middle 60% of the file (the first and last stretches are short of
    // completions: the file starts cold and ends mid-lifecycle). Each kind's count is within
    // 4 standard deviations of its expected count E, taking the variance as 2E (rows come in
    // stories of 1 to 4, which doubles the variance of a plain count at most), plus 1% of E
    // for the model's approximations.
    let expected = stories::expected_kind_shares();
    let middle = &reqs[reqs.len() / 5..reqs.len() * 4 / 5];
    let mut counts = [0f64; 12];
    for r in middle {
        counts[kind_index(r.kind)] += 1.0;
    }
    for (i, k) in Kind::ALL.iter().enumerate() {
        let want = expected[i] * middle.len() as f64;
        let tol = 4.0 * (2.0 * want).sqrt() + 0.01 * want;
        assert!(
            (counts[i] - want).abs() <= tol,
            "{k}: {} requests, expected {want:.0} +- {tol:.0}",
            counts[i]
        );
    }

    // Zipf popularity: authorizations per account, sorted, against rank on log-log axes.
    // The least-squares slope over ranks 1..=100 estimates -s; the sampling noise of 140k
    // authorizations keeps it within 0.06 of s = 1.0.
    let pay = payers(&g);
    let mut auths = vec![0f64; g.accounts.len()];
    for (r, p) in reqs.iter().zip(&pay) {
        if let (Kind::Authorize, Some(a)) = (r.kind, p) {
            auths[*a] += 1.0;
        }
    }
    let slope = zipf_slope(&mut auths, 100);
    assert!(
        (-slope - 1.0).abs() < 0.06,
        "fitted Zipf exponent {}",
        -slope
    );

    // Amounts: the median authorization on CNY accounts of each merchant category with at
    // least 2,000 samples is its table median within 6% (the sample median of a log-normal
    // has a relative standard error of about 1.25 sigma / sqrt(n) <= 2.5% here).
    let mut by_mcc: HashMap<u64, Vec<f64>> = HashMap::new();
    for (r, p) in reqs.iter().zip(&pay) {
        if let (Kind::Authorize, Some(a), Some(mcc), Some(amount)) = (r.kind, p, r.mcc, r.amount) {
            if g.accounts[*a].currency == Currency::Cny && r.currency == Some(Currency::Cny) {
                let v: f64 = amount.to_string().parse().unwrap();
                if v > 0.0 {
                    by_mcc.entry(mcc).or_default().push(v);
                }
            }
        }
    }
    let mut checked = 0;
    for m in MCCS {
        let Some(v) = by_mcc.get_mut(&u64::from(m.code)) else {
            continue;
        };
        if v.len() < 2_000 {
            continue;
        }
        v.sort_by(f64::total_cmp);
        let median = v[v.len() / 2];
        assert!(
            (median / m.median_cny - 1.0).abs() < 0.06,
            "mcc {} ({}): median {median:.2}, table {}",
            m.code,
            m.name,
            m.median_cny
        );
        checked += 1;
    }
    assert!(checked >= 8, "only {checked} categories had enough samples");

    // Retransmissions: exact copies (same id, every field but ts_ns) make up
    // RETRANSMIT_SHARE / (1 + RETRANSMIT_SHARE) of the rows; 300k rows give it within 15%.
    let (repeats, exact) = repeats(reqs);
    assert_eq!(
        repeats, exact,
        "every repeated id is an exact retransmission"
    );
    let share = exact as f64 / reqs.len() as f64;
    let want = RETRANSMIT_SHARE / (1.0 + RETRANSMIT_SHARE);
    assert!(
        (share / want - 1.0).abs() < 0.15,
        "retransmissions {share:.5}, expected {want:.5}"
    );

    // Lifecycles hang together: every ref names an earlier authorization on the same
    // account, except the deliberate unknown refs (bad requests).
    let first_of: HashMap<u64, usize> = reqs
        .iter()
        .enumerate()
        .rev()
        .map(|(i, r)| (r.request_id, i))
        .collect();
    let mut unknown_refs = 0;
    for (i, r) in reqs.iter().enumerate() {
        let Some(id) = r.reference else { continue };
        match first_of.get(&id) {
            Some(&j) => {
                assert!(j < i, "row {i} refers forward");
                assert_eq!(reqs[j].kind, Kind::Authorize);
                assert_eq!(pay[j], pay[i], "row {i} refers to another account");
            }
            None => unknown_refs += 1,
        }
    }
    assert!(unknown_refs > 0 && unknown_refs < reqs.len() / 500);
}

/// Least-squares slope of log(count) against log(rank) over the `top` largest counts.
fn zipf_slope(counts: &mut [f64], top: usize) -> f64 {
    counts.sort_by(|a, b| b.total_cmp(a));
    let pts: Vec<(f64, f64)> = counts[..top]
        .iter()
        .enumerate()
        .map(|(i, c)| (((i + 1) as f64).ln(), c.ln()))
        .collect();
    let n = pts.len() as f64;
    let (mx, my) = (
        pts.iter().map(|p| p.0).sum::<f64>() / n,
        pts.iter().map(|p| p.1).sum::<f64>() / n,
    );
    let sxy: f64 = pts.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let sxx: f64 = pts.iter().map(|p| (p.0 - mx).powi(2)).sum();
    sxy / sxx
}

/// (rows repeating an earlier request_id, of those exact copies).
fn repeats(reqs: &[Request]) -> (usize, usize) {
    let mut first: HashMap<u64, &Request> = HashMap::new();
    let (mut repeats, mut exact) = (0, 0);
    for r in reqs {
        match first.get(&r.request_id) {
            None => {
                first.insert(r.request_id, r);
            }
            Some(f) => {
                repeats += 1;
                let same = Request { ts_ns: 0, ..**f } == Request { ts_ns: 0, ..*r };
                if same {
                    exact += 1;
                }
            }
        }
    }
    (repeats, exact)
}

#[test]
fn zipf_exponent_follows_the_option() {
    // A steeper law on fewer accounts: the fitted exponent tracks --zipf.
    let opts = TrafficOptions {
        zipf_s: 1.4,
        ..steady(2_000, 120_000, 5)
    };
    let g = traffic::generate(&opts).unwrap();
    let pay = payers(&g);
    let mut auths = vec![0f64; g.accounts.len()];
    for (r, p) in g.traffic.requests.iter().zip(&pay) {
        if let (Kind::Authorize, Some(a)) = (r.kind, p) {
            auths[*a] += 1.0;
        }
    }
    // Ranks 1..=30 have at least ~50 authorizations each at s = 1.4.
    let slope = zipf_slope(&mut auths, 30);
    assert!(
        (-slope - 1.4).abs() < 0.08,
        "fitted Zipf exponent {}",
        -slope
    );
}

#[test]
fn singles_day_jumps_tenfold_at_china_midnight_and_decays() {
    let opts = TrafficOptions {
        profile: Profile::SinglesDay,
        rate_per_s: 1_000.0,
        decay_s: 10.0,
        ..steady(3_000, 200_000, 3)
    };
    let g = traffic::generate(&opts).unwrap();
    let reqs = &g.traffic.requests;
    let midnight = traffic::SINGLES_DAY_MIDNIGHT_NS;
    assert_eq!(
        (midnight + CHINA_OFFSET_NS).rem_euclid(NS_PER_DAY),
        0,
        "the jump is at 00:00 China time"
    );
    let count = |lo_s: f64, hi_s: f64| {
        let lo = midnight + (lo_s * 1e9) as i64;
        let hi = midnight + (hi_s * 1e9) as i64;
        reqs.iter()
            .filter(|r| r.ts_ns >= lo && r.ts_ns < hi)
            .count() as f64
    };
    // The quiet evening: 20% of the requests at 1000/s, so it starts 40 s before midnight.
    assert!((reqs[0].ts_ns - (midnight - 40 * NS_PER_SEC)).abs() < NS_PER_SEC / 10);
    let quiet = count(-39.0, -1.0) / 38.0;
    assert!((quiet / 1_000.0 - 1.0).abs() < 0.03, "quiet rate {quiet}");
    // The first half second after midnight averages 1 + 9 e^(-x/10) = 9.78 times the quiet
    // rate; 4,890 expected requests have a standard deviation of 70 (1.4%).
    let peak = count(0.0, 0.5) / 0.5;
    let ratio = peak / quiet;
    assert!((ratio / 9.78 - 1.0).abs() < 0.06, "peak/quiet {ratio:.2}");
    assert!(count(-0.5, 0.0) / 0.5 < 1_200.0, "no jump before midnight");
    // One decay time later the rate is 1 + 9/e = 4.31 times the quiet rate.
    let later = count(9.5, 10.5);
    assert!(
        (later / 4_311.0 - 1.0).abs() < 0.06,
        "rate at +10 s {later}"
    );
    // Every window of the profile holds its expected count within 4 standard deviations.
    let curve = opts.curve();
    let start_s = -40.0;
    for (lo, hi) in [
        (-40.0, -20.0),
        (0.0, 2.0),
        (2.0, 5.0),
        (5.0, 20.0),
        (20.0, 40.0),
    ] {
        let want = curve.cum(hi - start_s) - curve.cum(lo - start_s);
        let got = count(lo, hi);
        assert!(
            (got - want).abs() < 4.0 * want.sqrt() + 0.002 * want,
            "[{lo}, {hi}) s: {got} requests, expected {want:.0}"
        );
    }
}

#[test]
fn same_seed_same_bytes_on_one_or_two_threads() {
    let pool = |n| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build()
            .unwrap()
    };
    for profile in [Profile::Steady, Profile::SinglesDay] {
        let opts = TrafficOptions {
            profile,
            ..steady(3_000, 150_000, 42)
        };
        let one = pool(1).install(|| bytes_of(&traffic::generate(&opts).unwrap()));
        let two = pool(2).install(|| bytes_of(&traffic::generate(&opts).unwrap()));
        assert!(one == two, "{profile:?}: 1 and 2 threads differ");
        let again = pool(3).install(|| bytes_of(&traffic::generate(&opts).unwrap()));
        assert!(one == again, "{profile:?}: 3 threads differ");
        let other = TrafficOptions {
            seed: 43,
            ..opts.clone()
        };
        assert!(
            bytes_of(&traffic::generate(&other).unwrap()) != one,
            "seed 43 = seed 42"
        );
    }
}

fn codes_of(outcomes: &Path) -> HashMap<String, usize> {
    let text = std::fs::read_to_string(outcomes).unwrap();
    let mut codes = HashMap::new();
    for line in text.lines().skip(1) {
        *codes
            .entry(line.rsplit(',').next().unwrap().to_owned())
            .or_default() += 1;
    }
    codes
}

#[test]
fn generated_traffic_replays_with_a_sensible_code_mix_from_csv_or_binary() {
    let tmp = tempfile::tempdir().unwrap();
    let g = traffic::generate(&steady(3_000, 80_000, 9)).unwrap();
    let (csv, bin) = (tmp.path().join("csv"), tmp.path().join("bin"));
    traffic::write(&g, &csv, Format::Csv).unwrap();
    traffic::write(&g, &bin, Format::Bin).unwrap();
    assert!(csv.join("traffic.params").exists() && !csv.join("traffic.bin").exists());
    assert!(bin.join("traffic.bin").exists() && !bin.join("traffic.csv").exists());
    let ds = Dataset::load(&csv).unwrap();
    assert_eq!(ds, Dataset::load(&bin).unwrap());
    assert_eq!(ds.traffic, g.traffic.requests);

    let opts = ReplayOptions::default();
    let (out_csv, out_bin) = (tmp.path().join("out-csv"), tmp.path().join("out-bin"));
    replay::replay(&csv, &out_csv, &opts).unwrap();
    replay::replay(&bin, &out_bin, &opts).unwrap();
    for f in ["outcomes.csv", "balances.csv"] {
        assert_eq!(
            std::fs::read(out_csv.join(f)).unwrap(),
            std::fs::read(out_bin.join(f)).unwrap(),
            "{f} differs between the CSV and the binary dataset"
        );
    }
    let codes = codes_of(&out_csv.join("outcomes.csv"));
    let total: usize = codes.values().sum();
    assert_eq!(total, 80_000);
    let share = |c: &str| *codes.get(c).unwrap_or(&0) as f64 / total as f64;
    // Mostly approved; the declines the model plants all show up, none dominates.
    assert!(share("00") > 0.90, "codes {codes:?}");
    for c in ["12", "13", "14", "25", "51", "54", "62"] {
        assert!(share(c) > 0.0 && share(c) < 0.03, "code {c}: {codes:?}");
    }
}

/// `generate`, `convert` and `inspect` through the binary: the seed is named, the formats
/// convert both ways, and the summary reads either.
#[test]
fn generate_convert_inspect_through_the_binary() {
    let tmp = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_payauth"))
            .args(args)
            .current_dir(tmp.path())
            .output()
            .expect("run payauth");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, stdout, stderr) = run(&[
        "generate",
        "--profile",
        "singles-day",
        "--accounts",
        "200",
        "--requests",
        "20000",
        "--rate",
        "500",
        "--seed",
        "8",
        "--format",
        "bin",
        "--out",
        "a",
    ]);
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("seed 8") && stdout.contains("traffic.bin"),
        "{stdout}"
    );
    let (ok, _, stderr) = run(&["convert", "a", "b"]);
    assert!(ok, "{stderr}");
    let (ok, _, stderr) = run(&["convert", "b", "c", "--to", "bin"]);
    assert!(ok, "{stderr}");
    let read = |p: &str| std::fs::read(tmp.path().join(p)).unwrap();
    assert!(read("a/traffic.bin") == read("c/traffic.bin"));
    assert!(String::from_utf8(read("b/traffic.params"))
        .unwrap()
        .starts_with("seed=8\n"));
    for dir in ["a", "b"] {
        let (ok, stdout, stderr) = run(&["inspect", dir, "--top", "3"]);
        assert!(ok, "{stderr}");
        for want in [
            "seed=8",
            "profile=singles-day",
            "requests: 20000",
            "authorize",
            "hottest accounts",
            "    3. ",
            "exact retransmissions",
        ] {
            assert!(stdout.contains(want), "{dir}: no {want:?} in\n{stdout}");
        }
    }
    // Mistakes are one-line errors.
    let (ok, _, stderr) = run(&[
        "generate",
        "--profile",
        "coverage",
        "--zipf",
        "2",
        "--out",
        "d",
    ]);
    assert!(
        !ok && stderr.starts_with("error: ") && stderr.contains("--zipf"),
        "{stderr}"
    );
    let (ok, _, stderr) = run(&["inspect", "nowhere"]);
    assert!(!ok && stderr.trim_end().lines().count() == 1, "{stderr}");
}
