//! `payauth inspect`: a summary of a dataset (CSV or binary traffic): where it came from, its
//! accounts and tokens, the time span, counts by kind, the request rate over time, the hottest
//! accounts, retransmissions and reused ids, and authorization amounts by merchant category.

use std::collections::HashMap;
use std::fmt::{self, Write as _};
use std::path::{Path, PathBuf};

use anyhow::{ensure, Context, Result};
use payauth_engine::api::{CHINA_OFFSET_NS, NS_PER_DAY, NS_PER_SEC};
use payauth_engine::{AccountStatus, Currency, Kind, Request, TokenField, TokenStatus};
use rayon::prelude::*;

use crate::binfmt::{self, TRAFFIC_BIN_FILE};
use crate::convert::traffic_format;
use crate::dataset::{self, ACCOUNTS_FILE, TOKENS_FILE, TRAFFIC_FILE};
use crate::rows::Meta;
use crate::traffic::population::civil_from_days;
use crate::traffic::Format;

/// Columns of the rate sparkline.
const SPARK_COLUMNS: usize = 64;
/// The sparkline's levels, lowest first.
const SPARKS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

/// What to show.
#[derive(Clone, Debug)]
pub struct InspectOptions {
    /// How many of the hottest accounts to list.
    pub top: usize,
    /// Width of a rate bucket, seconds; `None` picks one from the span (1 s up to 2 hours,
    /// 1 minute up to 2 days, else 1 hour).
    pub bucket_s: Option<u64>,
}

impl Default for InspectOptions {
    fn default() -> Self {
        InspectOptions {
            top: 10,
            bucket_s: None,
        }
    }
}

/// The request rate, bucketed.
#[derive(Clone, Debug, Default)]
pub struct Rate {
    /// Bucket width, seconds.
    pub bucket_s: u64,
    /// Requests per bucket, from the first request's bucket on.
    pub counts: Vec<u64>,
}

impl Rate {
    /// The complete buckets (all but the last, unless there is only one).
    fn full(&self) -> &[u64] {
        match self.counts.len() {
            0 | 1 => &self.counts,
            n => &self.counts[..n - 1],
        }
    }

    /// (min, mean, max) requests per second over the complete buckets.
    pub fn min_mean_max_per_s(&self) -> (f64, f64, f64) {
        let full = self.full();
        if full.is_empty() {
            return (0.0, 0.0, 0.0);
        }
        let w = self.bucket_s as f64;
        let min = *full.iter().min().expect("not empty") as f64 / w;
        let max = *full.iter().max().expect("not empty") as f64 / w;
        let mean = full.iter().sum::<u64>() as f64 / full.len() as f64 / w;
        (min, mean, max)
    }

    /// A text sparkline of at most 64 columns, each the mean of its buckets.
    pub fn sparkline(&self) -> String {
        let n = self.counts.len();
        if n == 0 {
            return String::new();
        }
        let cols = n.min(SPARK_COLUMNS);
        let means: Vec<f64> = (0..cols)
            .map(|c| {
                let (lo, hi) = (c * n / cols, ((c + 1) * n / cols).max(c * n / cols + 1));
                self.counts[lo..hi].iter().sum::<u64>() as f64 / (hi - lo) as f64
            })
            .collect();
        let top = means.iter().copied().fold(0.0, f64::max);
        means
            .iter()
            .map(|&m| {
                if top <= 0.0 {
                    SPARKS[0]
                } else {
                    SPARKS[((m / top) * 7.0).round() as usize]
                }
            })
            .collect()
    }
}

/// Amounts of authorizations on CNY accounts under one merchant category.
#[derive(Clone, Debug)]
pub struct MccAmounts {
    /// The merchant category code.
    pub mcc: u64,
    /// Authorizations counted.
    pub count: usize,
    /// Median amount, CNY.
    pub median_cny: f64,
    /// 90th percentile, CNY.
    pub p90_cny: f64,
}

/// A dataset summary (`Display` prints the report).
#[derive(Clone, Debug)]
pub struct Inspection {
    /// The dataset folder.
    pub dir: PathBuf,
    /// The traffic file.
    pub traffic_file: PathBuf,
    /// Its size, bytes.
    pub traffic_bytes: u64,
    /// Reading and validating it.
    pub traffic_load: std::time::Duration,
    /// Seed and generator parameters, if known.
    pub meta: Meta,
    /// Accounts by currency (CNY, HKD, JPY, USD) and by status (active, frozen, closed).
    pub accounts: usize,
    /// See `accounts`.
    pub accounts_by_currency: [usize; 4],
    /// See `accounts`.
    pub accounts_by_status: [usize; 3],
    /// Tokens, and by status (active, suspended, deactivated).
    pub tokens: usize,
    /// See `tokens`.
    pub tokens_by_status: [usize; 3],
    /// Requests.
    pub requests: usize,
    /// First and last `ts_ns`.
    pub first_ts_ns: Option<i64>,
    /// See `first_ts_ns`.
    pub last_ts_ns: Option<i64>,
    /// Requests by kind, in `Kind::ALL` order.
    pub by_kind: [u64; 12],
    /// The rate over time.
    pub rate: Rate,
    /// The hottest accounts: (account_id, requests addressed to it).
    pub hottest: Vec<(u64, u64)>,
    /// Share of requests going to the hottest 1% and 10% of accounts.
    pub top_1pct_share: f64,
    /// See `top_1pct_share`.
    pub top_10pct_share: f64,
    /// Requests whose token or account_id names nothing in the dataset.
    pub unresolved: u64,
    /// Requests repeating an earlier request's `request_id`, and of those the exact copies
    /// (every field but `ts_ns` equal: network retransmissions).
    pub repeats: u64,
    /// See `repeats`.
    pub exact_repeats: u64,
    /// Authorization amounts by merchant category (CNY accounts), busiest first.
    pub amounts: Vec<MccAmounts>,
}

/// Summarise the dataset in `dir`.
pub fn inspect(dir: &Path, opts: &InspectOptions) -> Result<Inspection> {
    ensure!(opts.top <= 1_000, "--top must be at most 1000");
    let accounts = dataset::read_accounts(&dir.join(ACCOUNTS_FILE))?;
    let tokens = dataset::read_tokens(&dir.join(TOKENS_FILE), &accounts)?;
    let format = traffic_format(dir)?;
    let traffic_file = dir.join(match format {
        Format::Csv => TRAFFIC_FILE,
        Format::Bin => TRAFFIC_BIN_FILE,
    });
    let load_start = std::time::Instant::now();
    // Only the requests and the metadata matter here (not the texts of non-DPAN tokens).
    let (traffic, meta) = match format {
        Format::Csv => (
            dataset::read_traffic(&traffic_file)?,
            Meta::read_sidecar(dir)?,
        ),
        Format::Bin => {
            let (rows, meta) = binfmt::read_file(&traffic_file)
                .with_context(|| traffic_file.display().to_string())?;
            (rows.requests, meta)
        }
    };
    let traffic_load = load_start.elapsed();
    let traffic = &traffic;

    let mut accounts_by_currency = [0; 4];
    let mut accounts_by_status = [0; 3];
    for a in &accounts {
        accounts_by_currency[Currency::ALL
            .iter()
            .position(|c| *c == a.currency)
            .unwrap_or(0)] += 1;
        accounts_by_status[match a.status {
            AccountStatus::Active => 0,
            AccountStatus::Frozen => 1,
            AccountStatus::Closed => 2,
        }] += 1;
    }
    let mut tokens_by_status = [0; 3];
    for t in &tokens {
        tokens_by_status[match t.status {
            TokenStatus::Active => 0,
            TokenStatus::Suspended => 1,
            TokenStatus::Deactivated => 2,
        }] += 1;
    }

    let mut by_kind = [0u64; 12];
    for r in traffic {
        by_kind[Kind::ALL.iter().position(|k| *k == r.kind).unwrap_or(0)] += 1;
    }

    let rate = rate(traffic, opts.bucket_s);

    // Resolve every request to an account index.
    let index_of_account: HashMap<u64, u32> = accounts
        .iter()
        .enumerate()
        .map(|(i, a)| (a.account_id, i as u32))
        .collect();
    let account_of_token: HashMap<u64, u32> = tokens
        .iter()
        .map(|t| (t.token.get(), index_of_account[&t.account_id]))
        .collect();
    let resolved: Vec<Option<u32>> = traffic
        .par_iter()
        .map(|r| {
            if r.kind.addressed_by_token() {
                match r.token {
                    TokenField::Dpan(d) => account_of_token.get(&d.get()).copied(),
                    _ => None,
                }
            } else {
                r.account_id.and_then(|a| index_of_account.get(&a).copied())
            }
        })
        .collect();
    let mut per_account = vec![0u64; accounts.len()];
    let mut unresolved = 0;
    for a in &resolved {
        match a {
            Some(i) => per_account[*i as usize] += 1,
            None => unresolved += 1,
        }
    }
    let mut ranked: Vec<u32> = (0..accounts.len() as u32).collect();
    ranked.par_sort_unstable_by_key(|&i| (std::cmp::Reverse(per_account[i as usize]), i));
    let hottest = ranked
        .iter()
        .take(opts.top)
        .map(|&i| (accounts[i as usize].account_id, per_account[i as usize]))
        .collect();
    let share_of_top = |fraction: f64| {
        let k = ((accounts.len() as f64 * fraction).ceil() as usize).max(1);
        let sum: u64 = ranked
            .iter()
            .take(k)
            .map(|&i| per_account[i as usize])
            .sum();
        if traffic.is_empty() {
            0.0
        } else {
            sum as f64 / traffic.len() as f64
        }
    };

    let (repeats, exact_repeats) = repeats(traffic);
    let amounts = amounts_by_mcc(traffic, &resolved, &accounts);
    Ok(Inspection {
        dir: dir.to_path_buf(),
        traffic_bytes: std::fs::metadata(&traffic_file).map_or(0, |m| m.len()),
        traffic_file,
        traffic_load,
        meta,
        accounts: accounts.len(),
        accounts_by_currency,
        accounts_by_status,
        tokens: tokens.len(),
        tokens_by_status,
        requests: traffic.len(),
        first_ts_ns: traffic.first().map(|r| r.ts_ns),
        last_ts_ns: traffic.last().map(|r| r.ts_ns),
        by_kind,
        rate,
        hottest,
        top_1pct_share: share_of_top(0.01),
        top_10pct_share: share_of_top(0.10),
        unresolved,
        repeats,
        exact_repeats,
        amounts,
    })
}

/// Requests per bucket of `bucket_s` seconds (chosen from the span when `None`).
pub fn rate(traffic: &[Request], bucket_s: Option<u64>) -> Rate {
    let (Some(first), Some(last)) = (traffic.first(), traffic.last()) else {
        return Rate::default();
    };
    let span_s = (last.ts_ns - first.ts_ns) as f64 / 1e9;
    let bucket_s = bucket_s.unwrap_or(if span_s <= 7_200.0 {
        1
    } else if span_s <= 172_800.0 {
        60
    } else {
        3_600
    });
    let width = bucket_s.max(1) as i64 * NS_PER_SEC;
    // Buckets on whole multiples of the width, so per-second buckets are calendar seconds.
    let origin = first.ts_ns.div_euclid(width) * width;
    let n = ((last.ts_ns - origin) / width + 1) as usize;
    let mut counts = vec![0u64; n];
    for r in traffic {
        counts[((r.ts_ns - origin) / width) as usize] += 1;
    }
    Rate {
        bucket_s: bucket_s.max(1),
        counts,
    }
}

/// (requests repeating an earlier `request_id`, of those exact copies of the first).
fn repeats(traffic: &[Request]) -> (u64, u64) {
    let mut by_id: Vec<(u64, u32)> = traffic
        .par_iter()
        .enumerate()
        .map(|(i, r)| (r.request_id, i as u32))
        .collect();
    by_id.par_sort_unstable();
    let mut repeats = 0;
    let mut exact = 0;
    let same = |a: &Request, b: &Request| Request { ts_ns: 0, ..*a } == Request { ts_ns: 0, ..*b };
    for group in by_id.chunk_by(|a, b| a.0 == b.0) {
        let first = &traffic[group[0].1 as usize];
        for &(_, i) in &group[1..] {
            repeats += 1;
            if same(first, &traffic[i as usize]) {
                exact += 1;
            }
        }
    }
    (repeats, exact)
}

fn amounts_by_mcc(
    traffic: &[Request],
    resolved: &[Option<u32>],
    accounts: &[payauth_engine::AccountSpec],
) -> Vec<MccAmounts> {
    let mut by_mcc: HashMap<u64, Vec<f64>> = HashMap::new();
    for (r, a) in traffic.iter().zip(resolved) {
        let (Kind::Authorize, Some(a), Some(mcc), Some(amount)) = (r.kind, a, r.mcc, r.amount)
        else {
            continue;
        };
        if accounts[*a as usize].currency != Currency::Cny || r.currency != Some(Currency::Cny) {
            continue;
        }
        if let Ok(v) = f64::try_from(amount) {
            if v > 0.0 {
                by_mcc.entry(mcc).or_default().push(v);
            }
        }
    }
    let mut out: Vec<MccAmounts> = by_mcc
        .into_iter()
        .map(|(mcc, mut v)| {
            v.sort_by(f64::total_cmp);
            let q = |p: f64| v[((v.len() - 1) as f64 * p).round() as usize];
            MccAmounts {
                mcc,
                count: v.len(),
                median_cny: q(0.5),
                p90_cny: q(0.9),
            }
        })
        .collect();
    out.sort_by_key(|m| (std::cmp::Reverse(m.count), m.mcc));
    out
}

/// `YYYY-MM-DD hh:mm:ss.mmm` of an instant in UTC shifted by `offset_ns`.
pub fn format_time(ts_ns: i64, offset_ns: i64) -> String {
    let t = ts_ns + offset_ns;
    let days = t.div_euclid(NS_PER_DAY);
    let ns = t.rem_euclid(NS_PER_DAY);
    let (y, m, d) = civil_from_days(days);
    let s = ns / NS_PER_SEC;
    let ms = (ns % NS_PER_SEC) / 1_000_000;
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}.{ms:03}",
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

fn pct(part: u64, whole: usize) -> f64 {
    if whole == 0 {
        0.0
    } else {
        100.0 * part as f64 / whole as f64
    }
}

impl fmt::Display for Inspection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "dataset {}: traffic in {} ({} bytes, read and validated in {:.3} s)",
            self.dir.display(),
            self.traffic_file
                .file_name()
                .unwrap_or_default()
                .to_string_lossy(),
            self.traffic_bytes,
            self.traffic_load.as_secs_f64()
        )?;
        if !self.meta.is_empty() {
            writeln!(f, "made with: {}", self.meta)?;
        }
        let [cny, hkd, jpy, usd] = self.accounts_by_currency;
        let [active, frozen, closed] = self.accounts_by_status;
        writeln!(
            f,
            "accounts: {} (CNY {cny}, HKD {hkd}, JPY {jpy}, USD {usd}; active {active}, frozen {frozen}, closed {closed})",
            self.accounts
        )?;
        let [t_active, suspended, deactivated] = self.tokens_by_status;
        writeln!(
            f,
            "tokens: {} (active {t_active}, suspended {suspended}, deactivated {deactivated})",
            self.tokens
        )?;
        let (Some(first), Some(last)) = (self.first_ts_ns, self.last_ts_ns) else {
            return write!(f, "requests: 0");
        };
        let span_s = (last - first) as f64 / 1e9;
        writeln!(
            f,
            "requests: {} from {} to {} UTC ({:.3} s; China time {} to {})",
            self.requests,
            format_time(first, 0),
            format_time(last, 0),
            span_s,
            &format_time(first, CHINA_OFFSET_NS)[11..19],
            &format_time(last, CHINA_OFFSET_NS)[11..19],
        )?;
        writeln!(f, "by kind:")?;
        for (k, n) in Kind::ALL.iter().zip(self.by_kind) {
            if n > 0 {
                writeln!(
                    f,
                    "  {:<17} {n:>12} {:>7.3}%",
                    k.as_str(),
                    pct(n, self.requests)
                )?;
            }
        }
        let (min, mean, max) = self.rate.min_mean_max_per_s();
        let unit = match self.rate.bucket_s {
            1 => "second".to_owned(),
            60 => "minute".to_owned(),
            3600 => "hour".to_owned(),
            s => format!("{s} s"),
        };
        writeln!(
            f,
            "rate, requests/s per {unit} ({} buckets): min {min:.1}, mean {mean:.1}, max {max:.1}",
            self.rate.counts.len()
        )?;
        writeln!(f, "  {}", self.rate.sparkline())?;
        writeln!(
            f,
            "hottest accounts (requests by token or account_id; top 1% of accounts {:.1}%, top 10% {:.1}%):",
            100.0 * self.top_1pct_share,
            100.0 * self.top_10pct_share
        )?;
        for (i, (id, n)) in self.hottest.iter().enumerate() {
            writeln!(
                f,
                "  {:>3}. {id:<20} {n:>12} {:>7.3}%",
                i + 1,
                pct(*n, self.requests)
            )?;
        }
        writeln!(
            f,
            "  unresolved (token or account_id names nothing): {} ({:.3}%)",
            self.unresolved,
            pct(self.unresolved, self.requests)
        )?;
        writeln!(
            f,
            "repeated request_ids: {} ({:.3}%), of which exact retransmissions {} ({:.3}%)",
            self.repeats,
            pct(self.repeats, self.requests),
            self.exact_repeats,
            pct(self.exact_repeats, self.requests)
        )?;
        if !self.amounts.is_empty() {
            let mut line = String::new();
            for m in self.amounts.iter().take(16) {
                let _ = write!(
                    line,
                    "\n  mcc {:<5} {:>10} median {:>10.2} p90 {:>10.2}",
                    m.mcc, m.count, m.median_cny, m.p90_cny
                );
            }
            write!(
                f,
                "authorization amounts on CNY accounts, by mcc (CNY):{line}"
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_format_in_utc_and_china() {
        let t = 1_762_790_400 * NS_PER_SEC + 5_000_000;
        assert_eq!(format_time(t, 0), "2025-11-10 16:00:00.005");
        assert_eq!(format_time(t, CHINA_OFFSET_NS), "2025-11-11 00:00:00.005");
    }

    #[test]
    fn rate_buckets_and_sparkline() {
        let reqs: Vec<Request> = [0i64, 100, 1_000_000_000, 1_500_000_000, 3_000_000_000]
            .iter()
            .map(|&t| Request::new(Kind::Credit, 1, t))
            .collect();
        let r = rate(&reqs, Some(1));
        assert_eq!(r.counts, vec![2, 2, 0, 1]);
        assert_eq!(r.min_mean_max_per_s(), (0.0, 4.0 / 3.0, 2.0));
        assert_eq!(r.sparkline().chars().count(), 4);
    }
}
