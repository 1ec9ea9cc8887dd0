//! Realistic issuer traffic (`payauth generate --profile steady|singles-day`): a population of
//! accounts and tokens, Zipf account popularity, log-normal amounts by merchant category,
//! purchase lifecycles, network retransmissions and a few bad requests, arriving as a Poisson
//! process whose rate follows the profile. Same options, same bytes, on any thread count.
//!
//! How a dataset is made:
//! 1. the rate curve fixes the period `T` in which `requests` arrivals are expected;
//! 2. the population (accounts, tokens) is drawn in parallel chunks, sized by the demand
//!    each account's popularity brings;
//! 3. stories start as a Poisson process in *nominal* time (rate = request rate / requests per
//!    story) and lay out their rows at nominal delays; they are made in slices of nominal time,
//!    in parallel, each slice with its own PRNG stream, until the first `requests` rows in
//!    nominal order are known;
//! 4. those rows, in nominal order, get the real arrival times of the profile's Poisson
//!    process (conditioned on exactly `requests` arrivals in `[0, T]`): a monotone time warp
//!    that keeps every lifecycle in order and makes the request rate exactly the profile's;
//! 5. `request_id`s follow the final order (a retransmission keeps its original's id).
//!
//! The tables and distributions are in [`stories`] and [`population`]; README.md ("Generate")
//! lists them with their parameters.

pub mod population;
pub mod profile;
pub mod sample;
pub mod stories;

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::Path;

use anyhow::{ensure, Context, Result};
use payauth_engine::api::NS_PER_SEC;
use payauth_engine::{AccountSpec, Dpan, Kind, Request, TokenField, TokenSpec};
use rayon::prelude::*;
use rust_decimal::Decimal;

use crate::binfmt;
use crate::csvout;
use crate::dataset::{ACCOUNTS_FILE, TOKENS_FILE, TRAFFIC_FILE};
use crate::rows::{Meta, TrafficRows};

use population::{Demand, Population};
use profile::{RateCurve, Shape};
use sample::{Rng, Zipf};
use stories::{AmountMode, DelayScale, Model, NomRow, TokenMode, MALFORMED_TOKENS, NONE};

/// The first `request_id`; ids rise with time.
pub const REQUEST_ID_BASE: u64 = 300_000_000_001;
/// Steady traffic starts here by default: 2026-03-25 00:00:00 UTC (08:00 China time).
pub const STEADY_START_NS: i64 = 1_774_396_800 * NS_PER_SEC;
/// Singles' Day traffic jumps here by default: 2025-11-11 00:00:00 China time
/// (2025-11-10 16:00:00 UTC).
pub const SINGLES_DAY_MIDNIGHT_NS: i64 = 1_762_790_400 * NS_PER_SEC;
/// Most accounts a dataset may have.
pub const ACCOUNTS_MAX: usize = 10_000_000;
/// Most requests a dataset may have (every row is planned in memory, about 170 bytes each).
pub const REQUESTS_MAX: usize = 50_000_000;

/// Earliest and latest start: token expiries (`YYMM`, years 20YY) must fit around the traffic.
const START_MIN_NS: i64 = 978_307_200 * NS_PER_SEC; // 2001-01-01
const START_MAX_NS: i64 = 3_786_912_000 * NS_PER_SEC; // 2090-01-01
/// Nominal request units per slice of story generation (one PRNG stream each).
const SLICE_UNITS: f64 = 8192.0;
/// PRNG domains.
const DOMAIN_STORY_STARTS: u64 = 0x7374_6172_7473; // "starts"
const DOMAIN_STORIES: u64 = 0x0073_746f_7269_6573; // "stories"

/// The arrival-rate profile.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Profile {
    /// A constant rate: `rate_per_s` requests per second.
    Steady,
    /// Singles' Day: a quiet evening at `rate_per_s`, then at midnight China time the rate
    /// jumps to `peak_factor` times that and decays back with time constant `decay_s`.
    SinglesDay,
}

impl Profile {
    /// The name used on the command line and in the metadata.
    pub const fn as_str(self) -> &'static str {
        match self {
            Profile::Steady => "steady",
            Profile::SinglesDay => "singles-day",
        }
    }
}

/// What to generate.
#[derive(Clone, Debug, PartialEq)]
pub struct TrafficOptions {
    /// The rate profile.
    pub profile: Profile,
    /// Accounts (1..=[`ACCOUNTS_MAX`]).
    pub accounts: usize,
    /// Requests (0..=[`REQUESTS_MAX`]).
    pub requests: usize,
    /// The seed: same options, same bytes.
    pub seed: u64,
    /// Requests per second: the steady rate, or the quiet rate before the Singles' Day jump.
    pub rate_per_s: f64,
    /// Zipf exponent of account popularity (> 0; 1.0 is classic Zipf).
    pub zipf_s: f64,
    /// The first instant of the traffic; `None` for the profile's default (steady:
    /// [`STEADY_START_NS`]; singles-day: the quiet part before [`SINGLES_DAY_MIDNIGHT_NS`]).
    pub start_ns: Option<i64>,
    /// Singles' Day: the rate just after midnight, as a multiple of `rate_per_s`.
    pub peak_factor: f64,
    /// Singles' Day: time constant of the decay after midnight, seconds.
    pub decay_s: f64,
    /// Singles' Day: share of the requests expected before midnight (the quiet evening).
    pub quiet_share: f64,
}

impl Default for TrafficOptions {
    fn default() -> Self {
        TrafficOptions {
            profile: Profile::Steady,
            accounts: 100_000,
            requests: 1_000_000,
            seed: 1,
            rate_per_s: 1_000.0,
            zipf_s: 1.0,
            start_ns: None,
            peak_factor: 10.0,
            decay_s: 600.0,
            quiet_share: 0.2,
        }
    }
}

impl TrafficOptions {
    /// Check every option (the messages name the command-line flag).
    pub fn validate(&self) -> Result<()> {
        ensure!(
            (1..=ACCOUNTS_MAX).contains(&self.accounts),
            "--accounts must be 1..={ACCOUNTS_MAX}"
        );
        ensure!(
            self.requests <= REQUESTS_MAX,
            "--requests must be at most {REQUESTS_MAX}"
        );
        ensure!(
            self.rate_per_s.is_finite() && self.rate_per_s > 0.0 && self.rate_per_s <= 1e9,
            "--rate must be above 0 and at most 1e9 requests per second"
        );
        ensure!(
            self.zipf_s.is_finite() && self.zipf_s > 0.0 && self.zipf_s <= 10.0,
            "--zipf must be above 0 and at most 10"
        );
        ensure!(
            self.peak_factor.is_finite() && (1.0..=1000.0).contains(&self.peak_factor),
            "--peak-factor must be 1..=1000"
        );
        ensure!(
            self.decay_s.is_finite() && self.decay_s > 0.0 && self.decay_s <= 1e7,
            "--decay-s must be above 0 and at most 1e7"
        );
        ensure!(
            self.quiet_share.is_finite() && self.quiet_share > 0.0 && self.quiet_share < 1.0,
            "--quiet-share must be between 0 and 1"
        );
        let start = self.start_ns();
        ensure!(
            (START_MIN_NS..=START_MAX_NS).contains(&start),
            "--start-ns must be from 2001-01-01 to 2090-01-01 ({START_MIN_NS}..={START_MAX_NS})"
        );
        let span_ns = self.curve().cum_inv(self.requests as f64) * 1e9;
        ensure!(
            span_ns < 5e17,
            "the traffic would last {:.0} days; raise --rate",
            span_ns / 8.64e13
        );
        Ok(())
    }

    /// The quiet part before the Singles' Day jump, seconds.
    fn quiet_s(&self) -> f64 {
        self.quiet_share * self.requests.max(1) as f64 / self.rate_per_s
    }

    /// The rate curve.
    pub fn curve(&self) -> RateCurve {
        let shape = match self.profile {
            Profile::Steady => Shape::Steady,
            Profile::SinglesDay => Shape::SinglesDay {
                quiet_s: self.quiet_s(),
                peak_factor: self.peak_factor,
                decay_s: self.decay_s,
            },
        };
        RateCurve {
            base_per_s: self.rate_per_s,
            shape,
        }
    }

    /// The first instant of the traffic.
    pub fn start_ns(&self) -> i64 {
        self.start_ns.unwrap_or(match self.profile {
            Profile::Steady => STEADY_START_NS,
            Profile::SinglesDay => SINGLES_DAY_MIDNIGHT_NS - (self.quiet_s() * 1e9).round() as i64,
        })
    }

    /// The options as metadata (kept in traffic.bin's header or traffic.params).
    pub fn meta(&self) -> Meta {
        let mut params = vec![
            ("generator".to_owned(), "payauth-traffic/1".to_owned()),
            ("profile".to_owned(), self.profile.as_str().to_owned()),
            ("accounts".to_owned(), self.accounts.to_string()),
            ("requests".to_owned(), self.requests.to_string()),
            ("rate_per_s".to_owned(), self.rate_per_s.to_string()),
            ("zipf".to_owned(), self.zipf_s.to_string()),
            ("start_ns".to_owned(), self.start_ns().to_string()),
        ];
        if self.profile == Profile::SinglesDay {
            params.push(("peak_factor".to_owned(), self.peak_factor.to_string()));
            params.push(("decay_s".to_owned(), self.decay_s.to_string()));
            params.push(("quiet_share".to_owned(), self.quiet_share.to_string()));
        }
        Meta {
            seed: Some(self.seed),
            params,
        }
    }
}

/// A generated dataset in memory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Generated {
    /// accounts.csv.
    pub accounts: Vec<AccountSpec>,
    /// tokens.csv.
    pub tokens: Vec<TokenSpec>,
    /// The traffic.
    pub traffic: TrafficRows,
    /// The seed and parameters.
    pub meta: Meta,
}

/// How the traffic is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// traffic.csv (and traffic.params beside it).
    Csv,
    /// traffic.bin (see [`crate::binfmt`]).
    Bin,
}

/// Generate a dataset in memory.
pub fn generate(opts: &TrafficOptions) -> Result<Generated> {
    opts.validate()?;
    let curve = opts.curve();
    let start_ns = opts.start_ns();
    let m = opts.requests;
    let span_s = curve.cum_inv(m.max(1) as f64);
    let shares = stories::expected_kind_shares();
    let demand = Demand {
        requests: m as f64,
        span_s,
        spend_per_request_cny: stories::spend_per_request_cny(),
        authorize_share: shares[0],
    };
    let pop = Population::generate(opts.accounts, opts.zipf_s, &demand, start_ns, opts.seed);
    let zipf = Zipf::new(opts.accounts as u64, opts.zipf_s).context("zipf parameters")?;
    let model = Model {
        pop: &pop,
        zipf: &zipf,
        scale: DelayScale {
            median_cap_s: span_s / stories::SPAN_PER_MEDIAN,
        },
    };

    let (slices, order) = plan(&model, &curve, m, opts.seed);
    let times = profile::arrival_times_s(&curve, m, opts.seed);
    // Rank of every planned row in the final order (NONE past the cut), slice by slice.
    let mut rank_of: Vec<Vec<u32>> = slices.iter().map(|s| vec![NONE; s.len()]).collect();
    for (rank, &key) in order.iter().enumerate() {
        let (slice, local) = split_key(key);
        rank_of[slice][local] = rank as u32;
    }
    let requests: Vec<Request> = order
        .par_iter()
        .enumerate()
        .map(|(rank, &key)| {
            let (slice, local) = split_key(key);
            let ts_ns = start_ns + (times[rank] * 1e9).round() as i64;
            to_request(&slices[slice][local], ts_ns, &rank_of[slice], &pop)
        })
        .collect();
    let token_texts = order
        .iter()
        .enumerate()
        .filter_map(|(rank, &key)| {
            let (slice, local) = split_key(key);
            let row = &slices[slice][local];
            (row.token == TokenMode::Malformed)
                .then(|| (rank, MALFORMED_TOKENS[row.extra as usize].to_owned()))
        })
        .collect();
    Ok(Generated {
        accounts: pop.accounts,
        tokens: pop.tokens,
        traffic: TrafficRows {
            requests,
            token_texts,
        },
        meta: opts.meta(),
    })
}

/// A row's place among the planned rows: its slice and its index there.
fn split_key(key: u64) -> (usize, usize) {
    ((key >> 32) as usize, (key & 0xFFFF_FFFF) as usize)
}

/// Plan stories slice by slice until the first `m` rows in nominal order are known; returns
/// the planned rows of every slice (their row references are local to the slice: a story
/// lives in one slice) and the places (see `split_key`) of the first `m`, in order.
fn plan(model: &Model<'_>, curve: &RateCurve, m: usize, seed: u64) -> (Vec<Vec<NomRow>>, Vec<u64>) {
    if m == 0 {
        return (Vec::new(), Vec::new());
    }
    let per_story = stories::rows_per_story();
    // Nominal time of a point of the request-count axis, ns after the start.
    let nominal_ns = |units: f64| (curve.cum_inv(units) * 1e9).round() as i64;
    let mut slices: Vec<Vec<NomRow>> = Vec::new();
    let mut target = m as f64 * 1.03 + SLICE_UNITS;
    let boundary = loop {
        let end = (target / SLICE_UNITS).ceil() as usize;
        let fresh: Vec<Vec<NomRow>> = (slices.len()..end)
            .into_par_iter()
            .map(|j| {
                // Story starts: a unit-rate Poisson process on the request-count axis, thinned
                // to one per `per_story` units, mapped to nominal time.
                let mut rng = Rng::stream(seed, DOMAIN_STORY_STARTS, j as u64);
                let (lo, hi) = (j as f64 * SLICE_UNITS, (j + 1) as f64 * SLICE_UNITS);
                let mut starts = Vec::with_capacity((SLICE_UNITS / per_story) as usize + 64);
                let mut u = lo + rng.exp1() * per_story;
                while u < hi {
                    starts.push(nominal_ns(u));
                    u += rng.exp1() * per_story;
                }
                model.slice(Rng::stream(seed, DOMAIN_STORIES, j as u64), &starts)
            })
            .collect();
        slices.extend(fresh);
        // Rows of later slices start at or after this boundary; once `m` rows lie before it,
        // the first `m` in nominal order are all planned.
        let boundary = nominal_ns(slices.len() as f64 * SLICE_UNITS);
        let before: usize = slices
            .par_iter()
            .map(|s| s.iter().filter(|r| r.t_ns < boundary).count())
            .sum();
        if before >= m {
            break boundary;
        }
        target += (m as f64 * 0.05).max(SLICE_UNITS);
    };
    assert!(
        slices.len() < 1 << 31 && slices.iter().all(|s| s.len() < 1 << 32),
        "too many planned rows"
    );
    // Sort keys: nominal time, then slice, then index in the slice (a story lays out its rows
    // in causal order, and a follow-up is always at least 1 ns after what it follows). Rows at
    // or past the boundary cannot be among the first `m`.
    let mut keys: Vec<u128> = slices
        .par_iter()
        .enumerate()
        .flat_map_iter(|(j, s)| {
            s.iter()
                .enumerate()
                .filter(|(_, r)| r.t_ns < boundary)
                .map(move |(i, r)| {
                    ((r.t_ns as u64 as u128) << 64) | ((j as u128) << 32) | i as u128
                })
        })
        .collect();
    keys.par_sort_unstable();
    let order: Vec<u64> = keys[..m].par_iter().map(|k| *k as u64).collect();
    (slices, order)
}

/// The request of a planned row at its final time and position; `rank_of` holds the final
/// positions of its slice's rows.
fn to_request(row: &NomRow, ts_ns: i64, rank_of: &[u32], pop: &Population) -> Request {
    let id_rank = rank_of[row.id_row as usize];
    debug_assert_ne!(id_rank, NONE, "a row's original is before the cut");
    let mut r = Request::new(row.kind, REQUEST_ID_BASE + u64::from(id_rank), ts_ns);
    r.token = match row.token {
        TokenMode::None => TokenField::Empty,
        TokenMode::Issued => TokenField::Dpan(pop.tokens[row.subject as usize].token),
        TokenMode::Unknown => TokenField::Dpan(Dpan::from_u64(row.extra).expect("16 digits")),
        TokenMode::Malformed => TokenField::from_text(MALFORMED_TOKENS[row.extra as usize]),
    };
    if row.token == TokenMode::None {
        r.account_id = Some(pop.accounts[row.subject as usize].account_id);
    }
    r.currency = row.currency;
    let decimals = row.currency.map_or(2, |c| c.decimals());
    r.amount = match row.amount {
        AmountMode::None => None,
        AmountMode::Minor => Some(Decimal::new(row.amount_minor, decimals)),
        AmountMode::ExtraDecimal => Some(Decimal::new(row.amount_minor * 10 + 5, decimals + 1)),
    };
    r.mcc = (row.mcc != 0).then_some(u64::from(row.mcc));
    r.reference = if row.raw_ref {
        Some(row.extra)
    } else if row.ref_row != NONE {
        let rank = rank_of[row.ref_row as usize];
        debug_assert_ne!(rank, NONE, "an authorization is before its follow-ups");
        Some(REQUEST_ID_BASE + u64::from(rank))
    } else {
        None
    };
    r.is_final = row.is_final && row.kind == Kind::Capture;
    r
}

/// Write a generated dataset into the folder `out` (created if missing): accounts.csv,
/// tokens.csv, and traffic.csv with traffic.params, or traffic.bin. A traffic file of the other
/// format left from an earlier run is removed, so the folder holds one dataset.
pub fn write(gen: &Generated, out: &Path, format: Format) -> Result<()> {
    fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    write_csv(&out.join(ACCOUNTS_FILE), |w| {
        csvout::write_accounts_csv(w, &gen.accounts)
    })?;
    write_csv(&out.join(TOKENS_FILE), |w| {
        csvout::write_tokens_csv(w, &gen.tokens)
    })?;
    let csv = out.join(TRAFFIC_FILE);
    let bin = out.join(binfmt::TRAFFIC_BIN_FILE);
    match format {
        Format::Csv => {
            write_csv(&csv, |w| csvout::write_traffic_csv(w, &gen.traffic))?;
            gen.meta.write_sidecar(out)?;
            remove_if_present(&bin)?;
        }
        Format::Bin => {
            binfmt::write_file(&bin, &gen.traffic, &gen.meta)
                .with_context(|| bin.display().to_string())?;
            remove_if_present(&csv)?;
            Meta::default().write_sidecar(out)?;
        }
    }
    Ok(())
}

/// Write one CSV file through a large buffer.
pub fn write_csv(
    path: &Path,
    body: impl FnOnce(&mut BufWriter<File>) -> std::io::Result<()>,
) -> Result<()> {
    let file = File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let mut w = BufWriter::with_capacity(1 << 20, file);
    body(&mut w)
        .and_then(|()| w.flush())
        .with_context(|| format!("cannot write {}", path.display()))
}

/// Remove a file if it exists.
pub fn remove_if_present(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("cannot remove {}", path.display())),
    }
}
