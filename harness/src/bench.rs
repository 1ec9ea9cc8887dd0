//! `payauth bench`: in one process and one run, generate an authorize-heavy workload in
//! memory, decide it with the engine (closed loop through its public batch API) and with the
//! lock-based [`crate::baseline`], and report both throughputs, their ratio, whether the two
//! agree, and the machine it ran on.
//!
//! The workload generator ([`Workload`]) and its Zipf sampler ([`Zipf`]) are public so the
//! criterion benches in `benches/` drive the engine with the same traffic.
//!
//! # The workload
//! `accounts` CNY accounts with one token each, chosen per request by a Zipf law of exponent
//! `zipf` over their index (`0` is uniform; index 0 is the hottest). Per request, by a
//! SplitMix64 stream from the seed: 0.5% retransmit one of the last 256 requests (same
//! `request_id` and fields, new `ts_ns`), 0.2% authorize with an unknown token (answered at
//! the router), 2% top up the chosen account, and the rest either complete the oldest hold the
//! generator opened on that account (probability 35%, or always when it has
//! [`PENDING_MAX`] of them: final capture in full 70%, final capture of part 12%, void of what
//! remains 10%, non-final capture of half 8%) or authorize 1.00 to 500.00 CNY (1% of those
//! holds are never completed and are left to expire). The hottest accounts are plain; among
//! the others some are frozen, have limits or small balances, and some tokens are suspended,
//! deactivated or expired, so most response codes appear. Time starts at 23:58:20 China
//! time and advances 0 to 200 µs per request (10,000 requests/s on average), so a run of more
//! than a million requests crosses midnight. `request_id`s are the request's position + 1,
//! except for retransmissions.

// Minor-unit literals are grouped as major_minor: `5_000_00` is 5,000.00 CNY.
#![allow(clippy::inconsistent_digit_grouping)]

use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use payauth_engine::api::NS_PER_SEC;
use payauth_engine::model::ModelConfig;
use payauth_engine::{
    AccountSpec, AccountStatus, Code, Config, Currency, Decision, Dpan, Engine, Kind, Pending,
    Request, StateExport, TokenSpec, TokenStatus,
};
use rust_decimal::Decimal;

use crate::baseline::{self, Baseline};
use crate::provenance::{BuildInfo, MachineInfo};

/// Most accounts a workload has (the Zipf table is 8 bytes per account).
pub const ACCOUNTS_MAX: usize = 10_000_000;
/// Most requests a workload has (a `Request` is about 100 bytes, and the baseline keeps a
/// duplicate record per request).
pub const REQUESTS_MAX: usize = 20_000_000;
/// Largest Zipf exponent accepted.
pub const ZIPF_MAX: f64 = 10.0;
/// Most requests per submitted batch.
pub const BATCH_MAX: usize = 1 << 20;
/// Most batches in flight.
pub const IN_FLIGHT_MAX: usize = 1024;
/// Most holds per account the generator keeps track of for later completion.
pub const PENDING_MAX: usize = 4;

/// The first account id (Alipay-like, 16 digits); account `i` is `ACCOUNT_ID_BASE + i`.
pub const ACCOUNT_ID_BASE: u64 = 2_088_100_000_000_001;
/// The token of account `i` is `DPAN_BASE + i` (16 digits).
pub const DPAN_BASE: u64 = 6_210_000_000_000_000;
/// Unknown tokens are drawn above this value, far from every account's token.
const UNKNOWN_DPAN_BASE: u64 = 6_290_000_000_000_000;
/// First `ts_ns` of a workload: 2026-03-25 23:58:20 China time (15:58:20 UTC).
pub const START_NS: i64 = 1_774_454_300 * NS_PER_SEC;
/// Mean gap between two requests' `ts_ns` (gaps are uniform in `0..2 * GAP_NS_MEAN`).
pub const GAP_NS_MEAN: i64 = 100_000;
/// Requests a retransmission picks from (the most recent ones).
const RECENT_LEN: usize = 256;

// ---------------------------------------------------------------------------------------------
// Randomness
// ---------------------------------------------------------------------------------------------

/// SplitMix64 (Steele, Lea, Flood 2014): a tiny, fast PRNG; every seed gives a full stream.
#[derive(Clone, Debug)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// The stream of `seed`.
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (multiply-shift; `n` must be positive).
    pub fn below(&mut self, n: u64) -> u64 {
        assert!(n > 0, "below(0)");
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform in `[0, 1)`, 53 bits.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

/// A Zipf law over `0..n`: index `k` has weight `1 / (k + 1)^s` (`s = 0` is uniform).
///
/// Sampling is a binary search in a precomputed cumulative table (8 bytes per index), so it
/// is deterministic for a given random stream and costs `log2(n)` probes.
#[derive(Clone, Debug)]
pub struct Zipf {
    n: usize,
    /// Cumulative weights, normalised so the last is 1; empty when uniform.
    cdf: Vec<f64>,
}

impl Zipf {
    /// The law over `0..n` with exponent `s`. Panics unless `n >= 1` and `s` is finite and
    /// not negative.
    pub fn new(n: usize, s: f64) -> Zipf {
        assert!(n >= 1, "Zipf over an empty range");
        assert!(
            s.is_finite() && s >= 0.0,
            "Zipf exponent {s} must be finite and >= 0"
        );
        if s == 0.0 {
            return Zipf { n, cdf: Vec::new() };
        }
        let mut cdf = Vec::with_capacity(n);
        let mut sum = 0.0f64;
        for k in 1..=n {
            sum += (k as f64).powf(-s);
            cdf.push(sum);
        }
        for c in &mut cdf {
            *c /= sum;
        }
        Zipf { n, cdf }
    }

    /// Number of indices.
    pub fn len(&self) -> usize {
        self.n
    }

    /// Always false: a law has at least one index.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Probability of index `k`.
    pub fn probability(&self, k: usize) -> f64 {
        if self.cdf.is_empty() {
            return 1.0 / self.n as f64;
        }
        self.cdf[k] - if k == 0 { 0.0 } else { self.cdf[k - 1] }
    }

    /// One index drawn from `rng`.
    pub fn sample(&self, rng: &mut SplitMix64) -> usize {
        if self.cdf.is_empty() {
            return rng.below(self.n as u64) as usize;
        }
        let u = rng.unit();
        // The first index whose cumulative weight exceeds u; rounding can leave the last
        // entry a hair below 1, hence the clamp.
        self.cdf.partition_point(|&c| c <= u).min(self.n - 1)
    }
}

// ---------------------------------------------------------------------------------------------
// The workload
// ---------------------------------------------------------------------------------------------

/// What to generate.
#[derive(Clone, Debug, PartialEq)]
pub struct WorkloadOptions {
    /// Accounts (one token each), 1..=[`ACCOUNTS_MAX`].
    pub accounts: usize,
    /// Requests, at most [`REQUESTS_MAX`].
    pub requests: usize,
    /// Zipf exponent of the account choice, 0 (uniform) ..= [`ZIPF_MAX`].
    pub zipf: f64,
    /// Seed of the PRNG; the same options give the same workload.
    pub seed: u64,
}

/// An authorize-heavy workload: accounts, tokens and requests (see the module docs).
#[derive(Clone, Debug)]
pub struct Workload {
    /// Accounts, by index (`account_id = ACCOUNT_ID_BASE + index`).
    pub accounts: Vec<AccountSpec>,
    /// One token per account, same order.
    pub tokens: Vec<TokenSpec>,
    /// The traffic, `ts_ns` non-decreasing.
    pub requests: Vec<Request>,
}

/// The token of account index `i`.
pub fn dpan(i: usize) -> Dpan {
    Dpan::from_u64(DPAN_BASE + i as u64).expect("16 digits")
}

/// Holds the generator opened on one account and may complete later, oldest first:
/// (`request_id`, amount in minor units still held).
#[derive(Clone, Copy, Default)]
struct PendingHolds {
    len: u8,
    ids: [u32; PENDING_MAX],
    amounts_minor: [u32; PENDING_MAX],
}

impl PendingHolds {
    fn push(&mut self, id: u64, amount_minor: i64) {
        let i = usize::from(self.len);
        debug_assert!(i < PENDING_MAX);
        self.ids[i] = u32::try_from(id).expect("request ids fit u32");
        self.amounts_minor[i] = u32::try_from(amount_minor).expect("amounts fit u32");
        self.len += 1;
    }

    fn pop_oldest(&mut self) -> (u64, i64) {
        let first = (u64::from(self.ids[0]), i64::from(self.amounts_minor[0]));
        let len = usize::from(self.len);
        self.ids.copy_within(1..len, 0);
        self.amounts_minor.copy_within(1..len, 0);
        self.len -= 1;
        first
    }
}

impl Workload {
    /// Check `opts` against the limits.
    pub fn validate(opts: &WorkloadOptions) -> Result<()> {
        ensure!(
            (1..=ACCOUNTS_MAX).contains(&opts.accounts),
            "--accounts {} is outside 1..={ACCOUNTS_MAX}",
            opts.accounts
        );
        ensure!(
            opts.requests <= REQUESTS_MAX,
            "--requests {} is above {REQUESTS_MAX}",
            opts.requests
        );
        ensure!(
            opts.zipf.is_finite() && (0.0..=ZIPF_MAX).contains(&opts.zipf),
            "--zipf {} is outside 0..={ZIPF_MAX}",
            opts.zipf
        );
        Ok(())
    }

    /// Generate the workload of `opts` (see the module docs). Panics when `opts` breaks a
    /// limit of [`Workload::validate`].
    pub fn generate(opts: &WorkloadOptions) -> Workload {
        Self::validate(opts).expect("workload options within limits");
        let n = opts.accounts;
        let mut rng = SplitMix64::new(opts.seed);
        // The hottest accounts stay plain so a seed cannot make most traffic decline.
        let special_from = (n / 10).min(1000);
        let cny = |minor: i64| Decimal::new(minor, 2);
        let mut accounts = Vec::with_capacity(n);
        let mut tokens = Vec::with_capacity(n);
        for i in 0..n {
            let special = i >= special_from;
            let roll = rng.below(1000);
            let status = if special && roll < 5 {
                AccountStatus::Frozen
            } else {
                AccountStatus::Active
            };
            let limit_roll = rng.below(100);
            let balance_minor = if special && (20..25).contains(&limit_roll) {
                10_00 + rng.below(490_00) as i64
            } else {
                5_000_00 + rng.below(195_000_00) as i64
            };
            accounts.push(AccountSpec {
                account_id: ACCOUNT_ID_BASE + i as u64,
                currency: Currency::Cny,
                balance: cny(balance_minor),
                status,
                per_txn_limit: (special && limit_roll < 10).then(|| cny(300_00)),
                daily_limit: (special && (10..15).contains(&limit_roll)).then(|| cny(1_000_00)),
                daily_count_limit: (special && (15..20).contains(&limit_roll)).then_some(3),
            });
            let token_roll = rng.below(1000);
            let (status, expiry) = match token_roll {
                r if special && r < 5 => (TokenStatus::Suspended, "2812"),
                r if special && r < 7 => (TokenStatus::Deactivated, "2812"),
                r if special && r < 12 => (TokenStatus::Active, "2501"),
                _ => (TokenStatus::Active, "2812"),
            };
            tokens.push(TokenSpec {
                token: dpan(i),
                account_id: ACCOUNT_ID_BASE + i as u64,
                status,
                expiry: expiry.parse().expect("valid expiry"),
            });
        }

        let zipf = Zipf::new(n, opts.zipf);
        let mut pending = vec![PendingHolds::default(); n];
        let mut requests: Vec<Request> = Vec::with_capacity(opts.requests);
        let mut ts = START_NS;
        const MCCS: [u64; 5] = [5411, 5812, 5999, 4111, 5541];
        for pos in 0..opts.requests {
            ts += rng.below(2 * GAP_NS_MEAN as u64) as i64;
            let id = pos as u64 + 1;
            let roll = rng.below(1000);
            if roll < 5 && pos > 0 {
                let back = 1 + rng.below(pos.min(RECENT_LEN) as u64) as usize;
                let mut again = requests[pos - back];
                again.ts_ns = ts;
                requests.push(again);
                continue;
            }
            if roll < 7 {
                let token = Dpan::from_u64(UNKNOWN_DPAN_BASE + rng.below(1 << 40)).expect("16");
                requests.push(
                    Request::new(Kind::Authorize, id, ts)
                        .with_token(token)
                        .with_amount(cny(10_00), Currency::Cny)
                        .with_mcc(5411),
                );
                continue;
            }
            let a = zipf.sample(&mut rng);
            if roll < 27 {
                let amount = cny(5_000_00 + 100 * rng.below(10_000) as i64);
                requests.push(
                    Request::new(Kind::Credit, id, ts)
                        .with_account(ACCOUNT_ID_BASE + a as u64)
                        .with_amount(amount, Currency::Cny),
                );
                continue;
            }
            let token = dpan(a);
            let holds = &mut pending[a];
            let complete =
                holds.len > 0 && (roll < 27 + 350 || usize::from(holds.len) == PENDING_MAX);
            if complete {
                let (reference, held) = holds.pop_oldest();
                let how = rng.below(100);
                let req = Request::new(Kind::Capture, id, ts)
                    .with_token(token)
                    .with_ref(reference);
                let req = match how {
                    0..=69 => req.with_amount(cny(held), Currency::Cny).with_final(true),
                    70..=81 => {
                        let part = (held * (50 + rng.below(50) as i64) / 100).max(1);
                        req.with_amount(cny(part), Currency::Cny).with_final(true)
                    }
                    82..=91 => Request {
                        kind: Kind::Void,
                        ..req
                    },
                    _ if held >= 2 => {
                        holds.push(reference, held - held / 2);
                        req.with_amount(cny(held / 2), Currency::Cny)
                    }
                    _ => req.with_amount(cny(held), Currency::Cny).with_final(true),
                };
                requests.push(req);
            } else {
                let amount_minor = 1_00 + rng.below(499_00) as i64;
                let mcc = MCCS[rng.below(MCCS.len() as u64) as usize];
                requests.push(
                    Request::new(Kind::Authorize, id, ts)
                        .with_token(token)
                        .with_amount(cny(amount_minor), Currency::Cny)
                        .with_mcc(mcc),
                );
                if rng.below(100) != 0 {
                    holds.push(id, amount_minor);
                }
            }
        }
        Workload {
            accounts,
            tokens,
            requests,
        }
    }

    /// The last request's `ts_ns` (or [`START_NS`] when there is none): the instant the final
    /// state is taken at.
    pub fn last_ts_ns(&self) -> i64 {
        self.requests.last().map_or(START_NS, |r| r.ts_ns)
    }

    /// Requests per kind, in [`Kind::ALL`] order.
    pub fn kind_counts(&self) -> Vec<(Kind, u64)> {
        let mut counts: Vec<(Kind, u64)> = Kind::ALL.iter().map(|&k| (k, 0)).collect();
        for r in &self.requests {
            counts[Kind::ALL
                .iter()
                .position(|&k| k == r.kind)
                .expect("every kind")]
            .1 += 1;
        }
        counts
    }
}

// ---------------------------------------------------------------------------------------------
// Memory
// ---------------------------------------------------------------------------------------------

/// Resident memory of this process, bytes (`VmRSS` of /proc/self/status), if known.
pub fn rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

// ---------------------------------------------------------------------------------------------
// The run
// ---------------------------------------------------------------------------------------------

/// How `payauth bench` runs.
#[derive(Clone, Debug, PartialEq)]
pub struct BenchOptions {
    /// Accounts.
    pub accounts: usize,
    /// Requests.
    pub requests: usize,
    /// Zipf exponent of the account choice (0 = uniform).
    pub zipf: f64,
    /// Engine shards, and baseline worker threads; `None`: one per core.
    pub shards: Option<usize>,
    /// Requests per submitted batch (engine) and per lock hold (baseline).
    pub batch: usize,
    /// Batches submitted to the engine and not yet decided, at most; `None`: `max(4, 2 *
    /// shards)`.
    pub in_flight: Option<usize>,
    /// Workload seed.
    pub seed: u64,
}

impl Default for BenchOptions {
    fn default() -> Self {
        BenchOptions {
            accounts: 1_000_000,
            requests: 5_000_000,
            zipf: 1.0,
            shards: None,
            batch: 4096,
            in_flight: None,
            seed: 1,
        }
    }
}

/// One side's measurement.
#[derive(Clone, Debug)]
pub struct Side {
    /// Decisions made.
    pub decisions: usize,
    /// Time to make them.
    pub elapsed: Duration,
    /// Memory taken by the loaded accounts and tokens (see [`Memory`]).
    pub load_bytes: Option<u64>,
    /// Memory the engine's hold and duplicate-record tables take at start, pre-sized for
    /// the run (`Config::holds_per_shard_hint`); `None` for the baseline, whose tables grow.
    pub tables_bytes: Option<u64>,
    /// Memory added during the run: holds, duplicate records, queues; not the decisions.
    pub run_bytes: Option<u64>,
    /// How the two figures above were taken.
    pub memory: Memory,
}

/// How a memory figure was taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Memory {
    /// Growth of the process's resident set (`VmRSS`) across the step, less the decision
    /// vector. Rough: it counts pages first touched, not bytes allocated.
    RssGrowth,
    /// The tables' size computed from their capacities
    /// ([`Baseline::heap_bytes_estimate`]): RSS growth would be hidden by memory the engine
    /// freed just before.
    TableEstimate,
}

impl Side {
    /// Decisions per second.
    pub fn decisions_per_sec(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.decisions as f64 / secs
        } else {
            0.0
        }
    }
}

/// Whether engine and baseline agree, and where first not.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Agreement {
    /// Identical decisions and identical final state.
    Identical {
        /// Decisions compared.
        decisions: usize,
        /// Accounts compared.
        accounts: usize,
        /// Referable holds compared.
        holds: usize,
        /// Tokens compared.
        tokens: usize,
    },
    /// The first difference, described.
    Differ(String),
}

/// What `payauth bench` measured; `Display` prints the report.
#[derive(Clone, Debug)]
pub struct BenchReport {
    /// The options, with defaults resolved.
    pub options: BenchOptions,
    /// Engine shards = baseline threads.
    pub shards: usize,
    /// Batches in flight (engine).
    pub in_flight: usize,
    /// `Config::holds_per_shard_hint` of the engine: its tables are sized for the run.
    pub holds_per_shard_hint: usize,
    /// Where it ran.
    pub machine: MachineInfo,
    /// What ran.
    pub build: BuildInfo,
    /// Time to generate the workload.
    pub generate_elapsed: Duration,
    /// Requests per kind.
    pub kinds: Vec<(Kind, u64)>,
    /// Decisions per code (engine's), every code, ascending.
    pub codes: Vec<(Code, u64)>,
    /// The engine, closed loop through `submit_async` / `Pending::wait`.
    pub engine: Side,
    /// The lock-based baseline.
    pub baseline: Side,
    /// Whether they agree.
    pub agreement: Agreement,
}

impl BenchReport {
    /// Engine decisions/s over baseline decisions/s.
    pub fn ratio(&self) -> f64 {
        let b = self.baseline.decisions_per_sec();
        if b > 0.0 {
            self.engine.decisions_per_sec() / b
        } else {
            0.0
        }
    }

    /// True when engine and baseline made identical decisions and reached identical states.
    pub fn agrees(&self) -> bool {
        matches!(self.agreement, Agreement::Identical { .. })
    }
}

fn per_sec(n: f64) -> String {
    if n >= 1e6 {
        format!("{:.2}M", n / 1e6)
    } else {
        format!("{:.0}k", n / 1e3)
    }
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

impl fmt::Display for BenchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let o = &self.options;
        let (m, b) = (&self.machine, &self.build);
        writeln!(
            f,
            "payauth bench: {} accounts, {} requests, zipf {}, seed {}; batch {}, {} shards = {} baseline threads, {} batches in flight; engine tables pre-sized for {} holds per shard",
            o.accounts, o.requests, o.zipf, o.seed, o.batch, self.shards, self.shards, self.in_flight, self.holds_per_shard_hint
        )?;
        writeln!(
            f,
            "machine: {} ({} cores), payauth {} git {}, {} build",
            m.cpu_model,
            m.cores,
            b.version,
            &b.git_revision[..b.git_revision.len().min(12)],
            b.profile
        )?;
        let total = o.requests.max(1) as f64;
        let share = |n: u64| 100.0 * n as f64 / total;
        let kinds: Vec<String> = self
            .kinds
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(k, n)| format!("{k} {:.1}%", share(*n)))
            .collect();
        writeln!(
            f,
            "workload: {} (generated in {:.2} s, not timed below)",
            kinds.join(", "),
            self.generate_elapsed.as_secs_f64()
        )?;
        let codes: Vec<String> = self
            .codes
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(c, n)| format!("{c} {:.2}%", share(*n)))
            .collect();
        writeln!(f, "codes: {}", codes.join(", "))?;
        for (name, side, how) in [
            ("engine  ", &self.engine, "closed loop, submit_async/wait"),
            (
                "baseline",
                &self.baseline,
                "std HashMaps behind one std Mutex, a batch per lock",
            ),
        ] {
            writeln!(
                f,
                "{name}: {} decisions in {:.3} s = {} decisions/s ({how})",
                side.decisions,
                side.elapsed.as_secs_f64(),
                per_sec(side.decisions_per_sec())
            )?;
        }
        writeln!(f, "ratio: engine / baseline = {:.2}x", self.ratio())?;
        writeln!(
            f,
            "memory: the workload's requests take {:.0} MiB ({} B each)",
            mib((o.requests * std::mem::size_of::<Request>()) as u64),
            std::mem::size_of::<Request>()
        )?;
        for (name, side) in [("engine", &self.engine), ("baseline", &self.baseline)] {
            let how = match side.memory {
                Memory::RssGrowth => "RSS growth",
                Memory::TableEstimate => "table estimate",
            };
            if let (Some(load), Some(run)) = (side.load_bytes, side.run_bytes) {
                let tables = side.tables_bytes.map_or(String::new(), |t| {
                    format!(
                        "; tables pre-sized for {} holds per shard +{:.0} MiB",
                        self.holds_per_shard_hint,
                        mib(t)
                    )
                });
                writeln!(
                    f,
                    "memory ({name}, {how}): accounts and tokens {:.0} MiB = {:.0} B/account{tables}; run +{:.0} MiB = {:.0} B/request",
                    mib(load),
                    load as f64 / o.accounts.max(1) as f64,
                    mib(run),
                    run as f64 / total
                )?;
            }
        }
        match &self.agreement {
            Agreement::Identical {
                decisions,
                accounts,
                holds,
                tokens,
            } => write!(
                f,
                "agreement: identical: {decisions} decisions; final state of {accounts} accounts, {holds} holds, {tokens} tokens"
            ),
            Agreement::Differ(what) => write!(f, "agreement: DIFFER: {what}"),
        }
    }
}

/// Generate the workload of `opts`, run it through the engine and through the baseline, and
/// compare. Disagreement is reported in [`BenchReport::agreement`], not as an error.
pub fn run(opts: &BenchOptions) -> Result<BenchReport> {
    let mut config = Config::default();
    if let Some(shards) = opts.shards {
        config.shards = shards;
    }
    config.validate().context("invalid --shards")?;
    let shards = config.shards;
    // Size each shard's tables for the run, as a host sizes them for its peak, so the timed
    // loop measures an engine serving at its memory limit rather than one growing its
    // tables: about 56% of the requests open a hold, and every decided request leaves a
    // duplicate record (the tables take twice the hint); the margin covers the uneven
    // split of the Zipf head between shards.
    config.holds_per_shard_hint = (opts.requests / shards * 2 / 3).clamp(1 << 16, 1 << 30);
    let holds_per_shard_hint = config.holds_per_shard_hint;
    let in_flight = opts.in_flight.unwrap_or((2 * shards).max(4));
    ensure!(
        (1..=BATCH_MAX).contains(&opts.batch),
        "--batch {} is outside 1..={BATCH_MAX}",
        opts.batch
    );
    ensure!(
        (1..=IN_FLIGHT_MAX).contains(&in_flight),
        "--in-flight {in_flight} is outside 1..={IN_FLIGHT_MAX}"
    );
    let wopts = WorkloadOptions {
        accounts: opts.accounts,
        requests: opts.requests,
        zipf: opts.zipf,
        seed: opts.seed,
    };
    Workload::validate(&wopts)?;
    let machine = MachineInfo::current();

    let start = Instant::now();
    let workload = Workload::generate(&wopts);
    let generate_elapsed = start.elapsed();
    let as_of_ns = workload.last_ts_ns();
    let model_config = ModelConfig {
        hold_ttl_ns: config.hold_ttl_ns,
        dup_window_ns: config.dup_window_ns,
        retention_ns: config.retention_ns,
    };

    // The engine first: start (untimed), closed loop (timed), final state (untimed). An
    // engine started without table room first, and dropped, tells the accounts' and
    // tokens' share of the memory from the pre-sized tables' (whether or not its pages go
    // back to the system when it is dropped, the second start's growth over the first's
    // is the tables).
    let (accounts, tokens) = (workload.accounts.clone(), workload.tokens.clone());
    let (probe_accounts, probe_tokens) = (workload.accounts.clone(), workload.tokens.clone());
    let probe_config = Config {
        holds_per_shard_hint: 0,
        ..config.clone()
    };
    let rss_before = rss_bytes();
    let probe = Engine::start(probe_config, probe_accounts, probe_tokens)
        .context("cannot start the engine")?;
    let rss_probe = rss_bytes();
    drop(probe);
    let engine = Engine::start(config, accounts, tokens).context("cannot start the engine")?;
    let rss_loaded = rss_bytes();
    let load_bytes = growth(rss_before, rss_probe);
    let start = Instant::now();
    let engine_decisions = closed_loop(&engine, &workload.requests, opts.batch, in_flight)?;
    let engine_elapsed = start.elapsed();
    let rss_run = rss_bytes();
    let engine_state = engine
        .shutdown(as_of_ns)
        .context("cannot shut the engine down")?;
    let decisions_bytes = (engine_decisions.capacity() * std::mem::size_of::<Decision>()) as u64;
    let engine_side = Side {
        decisions: engine_decisions.len(),
        elapsed: engine_elapsed,
        load_bytes,
        tables_bytes: growth(rss_before, rss_loaded)
            .map(|g| g.saturating_sub(load_bytes.unwrap_or(0))),
        run_bytes: growth(rss_loaded, rss_run).map(|g| g.saturating_sub(decisions_bytes)),
        memory: Memory::RssGrowth,
    };

    // Then the baseline, on the same requests.
    let state = Baseline::new(model_config, &workload.accounts, &workload.tokens)
        .map_err(anyhow::Error::msg)
        .context("cannot load the baseline")?;
    let baseline_loaded = state.heap_bytes_estimate();
    let locked = baseline::run_locked(state, &workload.requests, opts.batch, shards);
    let baseline_run = locked.baseline.heap_bytes_estimate();
    let baseline_state = locked.baseline.export(as_of_ns);
    let baseline_side = Side {
        decisions: locked.decisions.len(),
        elapsed: locked.elapsed,
        load_bytes: Some(baseline_loaded),
        tables_bytes: None,
        run_bytes: Some(baseline_run.saturating_sub(baseline_loaded)),
        memory: Memory::TableEstimate,
    };

    let agreement = compare(
        &workload.requests,
        &engine_decisions,
        &locked.decisions,
        &engine_state,
        &baseline_state,
    );
    let mut codes: Vec<(Code, u64)> = Code::ALL.iter().map(|&c| (c, 0)).collect();
    for d in &engine_decisions {
        codes[Code::ALL
            .iter()
            .position(|&c| c == d.code)
            .expect("every code")]
        .1 += 1;
    }
    Ok(BenchReport {
        options: BenchOptions {
            shards: Some(shards),
            in_flight: Some(in_flight),
            ..opts.clone()
        },
        shards,
        in_flight,
        holds_per_shard_hint,
        machine,
        build: BuildInfo::current(),
        generate_elapsed,
        kinds: workload.kind_counts(),
        codes,
        engine: engine_side,
        baseline: baseline_side,
        agreement,
    })
}

fn growth(before: Option<u64>, after: Option<u64>) -> Option<u64> {
    Some(after?.saturating_sub(before?))
}

/// Feed `requests` through `engine` in batches of `batch`, keeping up to `in_flight` of them
/// submitted and undecided (`submit_async`, oldest waited for first), and return the
/// decisions in request order.
pub fn closed_loop(
    engine: &Engine,
    requests: &[Request],
    batch: usize,
    in_flight: usize,
) -> Result<Vec<Decision>> {
    assert!(
        batch > 0 && in_flight > 0,
        "batch and in_flight must be positive"
    );
    let mut decisions = Vec::with_capacity(requests.len());
    let mut pending = VecDeque::with_capacity(in_flight);
    for chunk in requests.chunks(batch) {
        if pending.len() == in_flight {
            let p: Pending = pending.pop_front().expect("in_flight > 0");
            decisions.extend(p.wait().context("waiting for decisions")?);
        }
        pending.push_back(engine.submit_async(chunk));
    }
    while let Some(p) = pending.pop_front() {
        decisions.extend(p.wait().context("waiting for decisions")?);
    }
    if decisions.len() != requests.len() {
        bail!(
            "the engine answered {} decisions to {} requests",
            decisions.len(),
            requests.len()
        );
    }
    Ok(decisions)
}

/// Compare decisions one for one, then the final states; describe the first difference.
fn compare(
    requests: &[Request],
    engine: &[Decision],
    baseline: &[Decision],
    engine_state: &StateExport,
    baseline_state: &StateExport,
) -> Agreement {
    if engine.len() != baseline.len() {
        return Agreement::Differ(format!(
            "engine made {} decisions, baseline {}",
            engine.len(),
            baseline.len()
        ));
    }
    if let Some(i) = engine.iter().zip(baseline).position(|(e, b)| e != b) {
        let differing = engine.iter().zip(baseline).filter(|(e, b)| e != b).count();
        return Agreement::Differ(format!(
            "{differing} of {} decisions differ; the first is request #{i} ({:?}): engine {} (request_id {}), baseline {} (request_id {})",
            engine.len(),
            requests[i],
            engine[i].code,
            engine[i].request_id,
            baseline[i].code,
            baseline[i].request_id
        ));
    }
    fn first_diff<T: PartialEq + fmt::Debug>(what: &str, e: &[T], b: &[T]) -> Option<String> {
        if let Some((x, y)) = e.iter().zip(b).find(|(x, y)| x != y) {
            return Some(format!("final {what} differ: engine {x:?}, baseline {y:?}"));
        }
        (e.len() != b.len()).then(|| {
            format!(
                "final {what} differ: engine has {}, baseline {}",
                e.len(),
                b.len()
            )
        })
    }
    let (e, b) = (engine_state, baseline_state);
    if let Some(what) = first_diff("accounts", &e.accounts, &b.accounts)
        .or_else(|| first_diff("holds", &e.holds, &b.holds))
        .or_else(|| first_diff("tokens", &e.tokens, &b.tokens))
    {
        return Agreement::Differ(what);
    }
    Agreement::Identical {
        decisions: engine.len(),
        accounts: e.accounts.len(),
        holds: e.holds.len(),
        tokens: e.tokens.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zipf_is_deterministic_and_skewed() {
        let z = Zipf::new(1000, 1.0);
        let (mut a, mut b) = (SplitMix64::new(7), SplitMix64::new(7));
        let xs: Vec<usize> = (0..10_000).map(|_| z.sample(&mut a)).collect();
        let ys: Vec<usize> = (0..10_000).map(|_| z.sample(&mut b)).collect();
        assert_eq!(xs, ys);
        assert!(xs.iter().all(|&x| x < 1000));
        // P(0) = 1 / H(1000) ~ 13.4%; P(k) ~ P(0) / (k + 1).
        let zeros = xs.iter().filter(|&&x| x == 0).count();
        assert!((1_100..1_600).contains(&zeros), "{zeros}");
        assert!((z.probability(0) / z.probability(9) - 10.0).abs() < 1e-9);
        let u = Zipf::new(10, 0.0);
        assert!((u.probability(3) - 0.1).abs() < 1e-12);
        let mut r = SplitMix64::new(1);
        assert!((0..1000).all(|_| u.sample(&mut r) < 10));
    }

    #[test]
    fn workload_is_deterministic_and_ordered() {
        let opts = WorkloadOptions {
            accounts: 500,
            requests: 20_000,
            zipf: 1.0,
            seed: 3,
        };
        let w = Workload::generate(&opts);
        let again = Workload::generate(&opts);
        assert_eq!(w.requests, again.requests);
        assert_eq!(w.requests.len(), 20_000);
        assert!(w.requests.windows(2).all(|p| p[0].ts_ns <= p[1].ts_ns));
        let counts = w.kind_counts();
        let authorize = counts[0].1;
        assert!(authorize > 10_000, "authorize-heavy: {counts:?}");
        assert!(counts.iter().any(|&(k, n)| k == Kind::Void && n > 0));
    }

    #[test]
    fn engine_and_baseline_agree_on_a_small_run() {
        let report = run(&BenchOptions {
            accounts: 1_000,
            requests: 20_000,
            zipf: 1.0,
            shards: Some(2),
            batch: 256,
            in_flight: Some(3),
            seed: 5,
        })
        .unwrap();
        assert!(report.agrees(), "{report}");
        let text = report.to_string();
        assert!(
            text.contains("agreement: identical: 20000 decisions"),
            "{text}"
        );
        // Most response codes appear.
        let seen = report.codes.iter().filter(|(_, n)| *n > 0).count();
        assert!(seen >= 8, "{text}");
    }
}
