//! Synthetic datasets: accounts.csv, tokens.csv and traffic.csv that exercise every rule of
//! DOMAIN.md on a small scale, decided by a seed alone (same options, same bytes).
//!
//! The generator plans traffic as *scenarios*: a purchase and its completion, a split
//! shipment, a hotel stay with increments, a reversal, a hold left to expire and cleared late,
//! a burst against a count limit, requests across China midnight, token and account admin,
//! top-ups, and the malformed ones (unknown tokens and refs, bad amounts and currencies,
//! retransmissions and conflicting reuse of a `request_id`). Each scenario keeps its own holds
//! and amounts, so its lifecycle is coherent; the engine decides every code.
//!
//! A fixed script on ten designated accounts runs first and is built so that every response
//! code appears (when there are at least ten accounts and enough requests); the rest is random
//! traffic on the other accounts. Rows are planned with placeholder ids, sorted by `ts_ns`
//! (stably), cut to `requests`, and only then given `request_id`s, which therefore rise with
//! time. There is no clock and no `rand`: a SplitMix64 stream drives every choice.

// Minor-unit literals are grouped as major_minor: `50_000_00` is 50,000.00 CNY.
#![allow(clippy::inconsistent_digit_grouping)]

use std::collections::HashSet;
use std::fs;
use std::io::Write;
use std::path::Path;

use anyhow::{ensure, Context, Result};
use payauth_engine::api::{NS_PER_DAY, NS_PER_SEC};
use payauth_engine::{AccountStatus, Currency, Expiry, Kind, TokenStatus};

/// What to generate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GenOptions {
    /// Rows of accounts.csv (at least 1; the full coverage script wants at least 10).
    pub accounts: usize,
    /// Rows of traffic.csv.
    pub requests: usize,
    /// Seed of the PRNG; the same options give the same bytes.
    pub seed: u64,
}

impl Default for GenOptions {
    fn default() -> Self {
        GenOptions {
            accounts: 300,
            requests: 10_000,
            seed: 1,
        }
    }
}

/// The header of accounts.csv.
const ACCOUNTS_HEADER: &str =
    "account_id,currency,balance,status,per_txn_limit,daily_limit,daily_count_limit";
/// The header of tokens.csv.
const TOKENS_HEADER: &str = "token,account_id,status,expiry";
/// The header of traffic.csv.
const TRAFFIC_HEADER: &str = "ts_ns,request_id,kind,token,account_id,amount,currency,mcc,ref,final";

/// Write accounts.csv, tokens.csv and traffic.csv for `opts` into the folder `out`
/// (created if missing; existing files are replaced).
///
/// Fails when `accounts` is 0 or above 1,000,000, when `requests` is above 10,000,000, or when
/// a file cannot be written (the error names it).
pub fn generate(opts: &GenOptions, out: &Path) -> Result<()> {
    ensure!(
        opts.accounts >= 1,
        "generate: --accounts must be at least 1"
    );
    ensure!(
        opts.accounts <= ACCOUNTS_MAX,
        "generate: --accounts must be at most {ACCOUNTS_MAX}"
    );
    ensure!(
        opts.requests <= REQUESTS_MAX,
        "generate: --requests must be at most {REQUESTS_MAX}"
    );
    fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;

    let mut gen = Gen::new(opts);
    gen.script();
    gen.fill(opts.requests)?;
    let (rows, ids) = gen.finish(opts.requests);

    crate::traffic::write_csv(&out.join("accounts.csv"), |w| gen.write_accounts(w))?;
    crate::traffic::write_csv(&out.join("tokens.csv"), |w| gen.write_tokens(w))?;
    crate::traffic::write_csv(&out.join("traffic.csv"), |w| write_traffic(w, &rows, &ids))?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Constants: the calendar, the id spaces, the limits
// ---------------------------------------------------------------------------------------------

/// First instant of the traffic: 2026-03-25 00:00:00 UTC (08:00 China time).
const START_NS: i64 = 1_774_396_800 * NS_PER_SEC;
/// Length of the traffic period; nothing is written at or after `START_NS + SPAN_NS`.
const SPAN_NS: i64 = 10 * NS_PER_DAY;
const END_NS: i64 = START_NS + SPAN_NS;
/// The engine's default hold TTL (DOMAIN.md); late captures are planned past it.
const TTL_NS: i64 = 7 * NS_PER_DAY;
/// The engine's default duplicate window.
const DUP_WINDOW_NS: i64 = NS_PER_DAY;
const HOUR_NS: i64 = 3600 * NS_PER_SEC;
const MIN_NS: i64 = 60 * NS_PER_SEC;

/// Alipay-like 16-digit account ids: `2088100000000001`, ...
const ACCOUNT_ID_BASE: u64 = 2_088_100_000_000_001;
/// The first `request_id`; ids rise with `ts_ns`.
const REQUEST_ID_BASE: u64 = 100_000_001;
/// Refs that name nothing are drawn from here, far above any assigned id.
const UNKNOWN_REF_BASE: u64 = 900_000_000_000;
/// Accounts with fixed roles in the coverage script.
const DESIGNATED: usize = 10;
/// Largest `accounts`: ids, tokens and their set stay small in memory.
const ACCOUNTS_MAX: usize = 1_000_000;
/// Largest `requests`: every row is planned in memory (about 100 bytes, 150 while sorting)
/// before it is written, so this caps the generator near 1.5 GB.
const REQUESTS_MAX: usize = 10_000_000;

/// Merchant category codes: grocery, restaurants, fast food, fuel, transit, department
/// stores, pharmacy, misc retail, convenience.
const MCC_RETAIL: [u16; 9] = [5411, 5812, 5814, 5541, 4111, 5311, 5912, 5999, 5499];
/// Hotels and car rental: the merchants that send incremental authorizations.
const MCC_INCREMENTAL: [u16; 2] = [7011, 7512];

/// Amounts that parse but are never valid request amounts (`13`), whatever the currency.
const BAD_AMOUNTS: [&str; 7] = [
    "0",
    "0.00",
    "-5",
    "-0.01",
    "1.001",
    "1000000000.01",
    "99999999999",
];

/// Relative weight of purchases by China-time hour (00..23).
const HOUR_WEIGHT: [u64; 24] = [
    3, 2, 1, 1, 1, 1, 2, 5, 8, 8, 8, 10, 12, 10, 8, 8, 8, 9, 11, 12, 11, 9, 6, 4,
];

// ---------------------------------------------------------------------------------------------
// PRNG
// ---------------------------------------------------------------------------------------------

/// SplitMix64 (Steele, Lea, Flood 2014): tiny, fast, and every seed gives a full stream.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (multiply-shift; the bias is below 2^-32 for our `n`).
    fn below(&mut self, n: u64) -> u64 {
        assert!(n > 0, "below(0)");
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform in `lo..hi`; `lo` when the range is empty.
    fn range(&mut self, lo: i64, hi: i64) -> i64 {
        if hi <= lo {
            return lo;
        }
        lo + self.below((hi - lo) as u64) as i64
    }

    /// True with probability `p` percent.
    fn percent(&mut self, p: u64) -> bool {
        self.below(100) < p
    }

    fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len() as u64) as usize]
    }
}

// ---------------------------------------------------------------------------------------------
// The planned dataset
// ---------------------------------------------------------------------------------------------

struct Account {
    id: u64,
    currency: Currency,
    balance_minor: i64,
    status: AccountStatus,
    per_txn_minor: Option<i64>,
    daily_minor: Option<i64>,
    daily_count: Option<u64>,
    /// Indexes into `Gen::tokens`.
    tokens: Vec<usize>,
}

struct Token {
    value: u64,
    account: usize,
    status: TokenStatus,
    /// `YYMM`.
    expiry: u16,
}

/// An amount field as written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Amount {
    Empty,
    /// `minor` units with `decimals` decimals; `trailing_zero` writes one more `0` (`12.340`).
    Minor {
        minor: i64,
        decimals: u32,
        trailing_zero: bool,
    },
    /// Literal text, for amounts that parse but break a rule.
    Text(&'static str),
}

/// A `ref` field: nothing, another planned row's id, or a number that names nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ref {
    Empty,
    Slot(u32),
    Raw(u64),
}

/// One planned traffic row. `slot` stands for its `request_id` until the rows are sorted.
#[derive(Clone, Copy, Debug)]
struct Row {
    ts_ns: i64,
    slot: u32,
    kind: Kind,
    token: Option<u64>,
    account_id: Option<u64>,
    amount: Amount,
    currency: Option<Currency>,
    mcc: Option<u16>,
    reference: Ref,
    is_final: Option<bool>,
}

impl Row {
    fn new(ts_ns: i64, kind: Kind, slot: u32) -> Row {
        Row {
            ts_ns,
            slot,
            kind,
            token: None,
            account_id: None,
            amount: Amount::Empty,
            currency: None,
            mcc: None,
            reference: Ref::Empty,
            is_final: None,
        }
    }
    fn token(mut self, token: Option<u64>) -> Row {
        self.token = token;
        self
    }
    fn account(mut self, account_id: Option<u64>) -> Row {
        self.account_id = account_id;
        self
    }
    fn amount(mut self, amount: Amount, currency: Option<Currency>) -> Row {
        self.amount = amount;
        self.currency = currency;
        self
    }
    fn mcc(mut self, mcc: u16) -> Row {
        self.mcc = Some(mcc);
        self
    }
    fn reference(mut self, reference: Ref) -> Row {
        self.reference = reference;
        self
    }
    fn fin(mut self, is_final: Option<bool>) -> Row {
        self.is_final = is_final;
        self
    }
}

fn money(minor: i64, currency: Currency) -> Amount {
    Amount::Minor {
        minor,
        decimals: currency.decimals(),
        trailing_zero: false,
    }
}

/// Convert CNY cents to the minor units of `currency` at rough 2026 rates, at least 1.
fn from_cny_cents(cents: i64, currency: Currency) -> i64 {
    let minor = match currency {
        Currency::Cny => cents,
        Currency::Hkd => cents * 109 / 100,
        Currency::Usd => cents * 14 / 100,
        Currency::Jpy => cents * 21 / 100,
    };
    minor.max(1)
}

/// A currency other than `c`.
fn other_currency(c: Currency) -> Currency {
    match c {
        Currency::Usd => Currency::Cny,
        _ => Currency::Usd,
    }
}

/// The instant `day` days, `h:m` UTC after the start (China time is 8 hours ahead).
const fn at(day: i64, h: i64, m: i64) -> i64 {
    START_NS + day * NS_PER_DAY + h * HOUR_NS + m * MIN_NS
}

struct Gen {
    rng: Rng,
    accounts: Vec<Account>,
    tokens: Vec<Token>,
    token_values: HashSet<u64>,
    rows: Vec<Row>,
    next_slot: u32,
    /// Accounts the random traffic uses (all but the designated ones when there are enough).
    fill_lo: usize,
    /// Fill accounts with a daily amount or count limit, for bursts.
    limited: Vec<usize>,
}

impl Gen {
    fn new(opts: &GenOptions) -> Gen {
        let mut gen = Gen {
            // Mix the seed once so that seeds 0, 1, 2 start far apart.
            rng: Rng(opts.seed ^ 0xA076_1D64_78BD_642F),
            accounts: Vec::with_capacity(opts.accounts),
            tokens: Vec::new(),
            token_values: HashSet::new(),
            // The script and the last story run a little past `requests`.
            rows: Vec::with_capacity(opts.requests + 1024),
            next_slot: 0,
            fill_lo: 0,
            limited: Vec::new(),
        };
        let n = opts.accounts;
        let designated = n >= DESIGNATED;
        gen.fill_lo = if n >= 2 * DESIGNATED { DESIGNATED } else { 0 };
        for i in 0..n {
            let mut account = gen.random_account(i);
            let mut specs = gen.random_token_specs();
            if designated && i < DESIGNATED {
                designate(i, &mut account, &mut specs);
            }
            // One more account closed in accounts.csv, reached by random traffic.
            if n >= 2 * DESIGNATED && i == n - 1 {
                account.status = AccountStatus::Closed;
            }
            for (status, expiry) in specs {
                let value = gen.fresh_token_value();
                account.tokens.push(gen.tokens.len());
                gen.tokens.push(Token {
                    value,
                    account: i,
                    status,
                    expiry,
                });
            }
            if i >= gen.fill_lo && (account.daily_minor.is_some() || account.daily_count.is_some())
            {
                gen.limited.push(i);
            }
            gen.accounts.push(account);
        }
        gen
    }

    fn random_account(&mut self, i: usize) -> Account {
        let rng = &mut self.rng;
        let currency = match rng.below(100) {
            0..=81 => Currency::Cny,
            82..=89 => Currency::Hkd,
            90..=94 => Currency::Jpy,
            _ => Currency::Usd,
        };
        let balance_cents = match rng.below(100) {
            0..=7 => rng.range(0, 30_00),
            8..=9 => -rng.range(1, 50_00),
            10..=64 => rng.range(500_00, 5_000_00),
            65..=94 => rng.range(5_000_00, 50_000_00),
            _ => rng.range(50_000_00, 1_000_000_00),
        };
        let balance_minor = match balance_cents {
            0 => 0,
            c if c < 0 => -from_cny_cents(-c, currency),
            c => from_cny_cents(c, currency),
        };
        let status = if rng.percent(2) {
            AccountStatus::Frozen
        } else {
            AccountStatus::Active
        };
        let per_txn_minor = rng.percent(20).then(|| {
            let cny = rng.pick(&[200_00, 500_00, 1_000_00, 2_000_00, 5_000_00]);
            from_cny_cents(cny, currency)
        });
        let daily_minor = rng.percent(15).then(|| {
            let cny = rng.pick(&[300_00, 500_00, 1_000_00, 2_000_00, 5_000_00]);
            from_cny_cents(cny, currency)
        });
        let daily_count = rng.percent(12).then(|| 2 + rng.below(5));
        Account {
            id: ACCOUNT_ID_BASE + i as u64,
            currency,
            balance_minor,
            status,
            per_txn_minor,
            daily_minor,
            daily_count,
            tokens: Vec::new(),
        }
    }

    /// 1 to 3 tokens: a few suspended or deactivated, a few expired before the traffic
    /// starts, a few expiring during it (`2603`: from 2026-03-31 16:00 UTC).
    fn random_token_specs(&mut self) -> Vec<(TokenStatus, u16)> {
        let rng = &mut self.rng;
        let count = match rng.below(10) {
            0..=5 => 1,
            6..=8 => 2,
            _ => 3,
        };
        (0..count)
            .map(|_| {
                let status = match rng.below(100) {
                    0..=1 => TokenStatus::Suspended,
                    2..=3 => TokenStatus::Deactivated,
                    _ => TokenStatus::Active,
                };
                let expiry = match rng.below(100) {
                    0..=3 => 2603,
                    4..=5 => rng.pick(&[2512, 2601, 2602]),
                    6..=14 => 2604 + rng.below(9) as u16,
                    _ => (27 + rng.below(5) as u16) * 100 + 1 + rng.below(12) as u16,
                };
                (status, expiry)
            })
            .collect()
    }

    /// A 16-digit DPAN not used yet: Visa-, Mastercard- or UnionPay-like prefixes.
    fn fresh_token_value(&mut self) -> u64 {
        loop {
            let value = match self.rng.below(3) {
                0 => 4_000_000_000_000_000 + self.rng.below(1_000_000_000_000_000),
                1 => 5_100_000_000_000_000 + self.rng.below(500_000_000_000_000),
                _ => 6_200_000_000_000_000 + self.rng.below(100_000_000_000_000),
            };
            if self.token_values.insert(value) {
                return value;
            }
        }
    }

    /// A 16-digit number that is no token of the dataset.
    fn unknown_token_value(&mut self) -> u64 {
        loop {
            let value = 4_000_000_000_000_000 + self.rng.below(1_000_000_000_000_000);
            if !self.token_values.contains(&value) {
                return value;
            }
        }
    }

    fn slot(&mut self) -> u32 {
        let s = self.next_slot;
        self.next_slot += 1;
        s
    }

    /// Keep a planned row unless it falls after the traffic period; hand it back either way.
    fn push(&mut self, row: Row) -> Row {
        if row.ts_ns < END_NS {
            self.rows.push(row);
        }
        row
    }

    // -- helpers over accounts and tokens -------------------------------------------------

    /// The account playing designated role `role` (roles collapse when there are fewer).
    fn role(&self, role: usize) -> usize {
        role % self.accounts.len()
    }

    fn tok(&self, account: usize, k: usize) -> Option<u64> {
        let tokens = &self.accounts[account].tokens;
        Some(self.tokens[tokens[k % tokens.len()]].value)
    }

    fn cur(&self, account: usize) -> Currency {
        self.accounts[account].currency
    }

    fn acc_id(&self, account: usize) -> Option<u64> {
        Some(self.accounts[account].id)
    }

    /// `minor` units of the account's currency.
    fn amt(&self, account: usize, minor: i64) -> Amount {
        money(minor, self.cur(account))
    }

    /// Like `amt`, with the trailing zero now and then (`12.340` equals `12.34`).
    fn amt_varied(&mut self, account: usize, minor: i64) -> Amount {
        let mut a = self.amt(account, minor);
        if let Amount::Minor { trailing_zero, .. } = &mut a {
            *trailing_zero = self.rng.percent(4);
        }
        a
    }

    /// A purchase amount in the account's currency, in minor units.
    fn typical(&mut self, account: usize) -> i64 {
        let rng = &mut self.rng;
        let cents = match rng.below(100) {
            0..=69 => rng.range(1_00, 100_00),
            70..=94 => rng.range(100_00, 800_00),
            _ => rng.range(800_00, 3_000_00),
        };
        from_cny_cents(cents, self.cur(account))
    }

    /// Whether a purchase of `minor` at `ts` can pass as far as the files tell (token active
    /// and not expired, account active, amount within the opening balance and the
    /// per-transaction limit). Stories on unusable cards send fewer completions: the traffic
    /// stays mostly plausible while refs to declined authorizations still occur.
    fn usable(&self, account: usize, token: Option<u64>, ts: i64, minor: i64) -> bool {
        let a = &self.accounts[account];
        a.status == AccountStatus::Active
            && minor <= a.balance_minor
            && !matches!(a.per_txn_minor, Some(limit) if minor > limit)
            && a.tokens.iter().any(|&t| {
                let t = &self.tokens[t];
                let expiry = Expiry::new(2000 + t.expiry / 100, (t.expiry % 100) as u8);
                Some(t.value) == token
                    && t.status == TokenStatus::Active
                    && expiry.is_some_and(|e| ts < e.expired_from_ns())
            })
    }

    /// A purchase amount of the account, as a field.
    fn typical_amt(&mut self, account: usize) -> Amount {
        let minor = self.typical(account);
        self.amt(account, minor)
    }

    /// A random fill account and one of its tokens.
    fn pick_card(&mut self) -> (usize, Option<u64>) {
        let a = self.pick_account();
        (a, self.any_token(a))
    }

    /// One of the account's tokens, whatever its status.
    fn any_token(&mut self, account: usize) -> Option<u64> {
        let tokens = &self.accounts[account].tokens;
        let t = tokens[self.rng.below(tokens.len() as u64) as usize];
        Some(self.tokens[t].value)
    }

    fn pick_account(&mut self) -> usize {
        let lo = self.fill_lo;
        lo + self.rng.below((self.accounts.len() - lo) as u64) as usize
    }

    fn mcc(&mut self) -> u16 {
        self.rng.pick(&MCC_RETAIL)
    }

    /// A start time in `lo..hi`, shaped by the China-time hour of day.
    fn when(&mut self, lo: i64, hi: i64) -> i64 {
        let mut t = self.rng.range(lo, hi);
        for _ in 0..8 {
            let china_hour = ((t - START_NS) / HOUR_NS + 8).rem_euclid(24) as usize;
            if self.rng.below(12) < HOUR_WEIGHT[china_hour] {
                break;
            }
            t = self.rng.range(lo, hi);
        }
        t
    }

    /// Seconds to minutes later, with nanosecond jitter.
    fn soon(&mut self, t: i64) -> i64 {
        t + self.rng.range(NS_PER_SEC, 20 * MIN_NS)
    }

    // -- request shapes ---------------------------------------------------------------------

    fn authorize(
        &mut self,
        ts: i64,
        token: Option<u64>,
        amount: Amount,
        c: Option<Currency>,
    ) -> Row {
        let slot = self.slot();
        let mcc = self.mcc();
        self.push(
            Row::new(ts, Kind::Authorize, slot)
                .token(token)
                .amount(amount, c)
                .mcc(mcc),
        )
    }

    /// `increment`, `capture`, `void` or `refund` of the hold `of` (`capture` gets `final`).
    #[allow(clippy::too_many_arguments)]
    fn follow(
        &mut self,
        ts: i64,
        kind: Kind,
        token: Option<u64>,
        of: Ref,
        amount: Amount,
        c: Option<Currency>,
        is_final: Option<bool>,
    ) -> Row {
        let slot = self.slot();
        self.push(
            Row::new(ts, kind, slot)
                .token(token)
                .reference(of)
                .amount(amount, c)
                .fin(is_final),
        )
    }

    fn credit(
        &mut self,
        ts: i64,
        account_id: Option<u64>,
        amount: Amount,
        c: Option<Currency>,
    ) -> Row {
        let slot = self.slot();
        self.push(
            Row::new(ts, Kind::Credit, slot)
                .account(account_id)
                .amount(amount, c),
        )
    }

    fn admin_token(&mut self, ts: i64, kind: Kind, token: Option<u64>) -> Row {
        let slot = self.slot();
        self.push(Row::new(ts, kind, slot).token(token))
    }

    fn admin_account(&mut self, ts: i64, kind: Kind, account_id: Option<u64>) -> Row {
        let slot = self.slot();
        self.push(Row::new(ts, kind, slot).account(account_id))
    }

    /// The same row again at `ts` (an exact retransmission, same `request_id`).
    fn again(&mut self, row: Row, ts: i64) -> Row {
        self.push(Row { ts_ns: ts, ..row })
    }

    // ---------------------------------------------------------------------------------------
    // The coverage script: fixed stories on the designated accounts
    // ---------------------------------------------------------------------------------------

    /// Stories on the ten designated accounts; the comments give the codes DOMAIN.md
    /// implies when the roles are as `designate` sets them (10 or more accounts).
    fn script(&mut self) {
        let d0 = self.role(0);
        let (t0a, t0b, t0c) = (self.tok(d0, 0), self.tok(d0, 1), self.tok(d0, 2));
        let c0 = Some(self.cur(d0));
        use Kind::*;

        // Purchase, partial then final capture; capture and increment after close; refunds.
        let a = self.authorize(at(0, 1, 0), t0a, self.amt(d0, 100_00), c0); // 00
        let r = Ref::Slot(a.slot);
        self.follow(
            at(0, 1, 30),
            Capture,
            t0a,
            r,
            self.amt(d0, 60_00),
            c0,
            Some(false),
        ); // 00
        let forty = Amount::Minor {
            minor: 40_00,
            decimals: 2,
            trailing_zero: true,
        };
        self.follow(at(0, 2, 0), Capture, t0a, r, forty, c0, Some(true)); // 00, closes
        self.follow(
            at(0, 2, 10),
            Capture,
            t0a,
            r,
            self.amt(d0, 1_00),
            c0,
            Some(false),
        ); // 22
        self.follow(
            at(0, 2, 15),
            Increment,
            t0a,
            r,
            self.amt(d0, 5_00),
            c0,
            None,
        ); // 22
        self.follow(at(2, 10, 0), Refund, t0a, r, self.amt(d0, 30_00), c0, None); // 00
        self.follow(at(2, 10, 5), Refund, t0a, r, self.amt(d0, 100_00), c0, None); // 13
        self.follow(at(3, 4, 0), Refund, t0a, r, self.amt(d0, 70_00), c0, None); // 00

        // Retransmission, conflicting reuse, partial and full void, the id again after 24 h.
        let b = self.authorize(at(0, 3, 0), t0a, self.amt(d0, 200_00), c0); // 00
        self.again(b, b.ts_ns + 5 * NS_PER_SEC); // 00 (replayed)
        self.push(Row {
            ts_ns: b.ts_ns + 10 * NS_PER_SEC,
            amount: self.amt(d0, 201_00),
            ..b
        }); // 94
        let r = Ref::Slot(b.slot);
        self.follow(at(0, 3, 20), Void, t0a, r, self.amt(d0, 50_00), c0, None); // 00
        self.follow(at(0, 3, 25), Void, t0a, r, Amount::Empty, None, None); // 00, closes
        self.follow(
            at(0, 3, 30),
            Capture,
            t0a,
            r,
            self.amt(d0, 10_00),
            c0,
            Some(true),
        ); // 22
        self.again(b, b.ts_ns + DUP_WINDOW_NS + HOUR_NS); // 94: names a referable hold

        // Bad amounts and currencies; refs to a declined authorization.
        let z = self.authorize(at(0, 4, 0), t0a, Amount::Text("0"), c0); // 13
        let r = Ref::Slot(z.slot);
        self.follow(
            at(0, 4, 5),
            Capture,
            t0a,
            r,
            self.amt(d0, 10_00),
            c0,
            Some(false),
        ); // 12
        self.again(z, at(0, 4, 6)); // 13 (replayed)
        let mut ts = at(0, 4, 10);
        for text in BAD_AMOUNTS {
            self.authorize(ts, t0a, Amount::Text(text), c0); // 13
            ts += MIN_NS;
        }
        let wrong = Some(other_currency(self.cur(d0)));
        self.authorize(ts, t0a, self.amt(d0, 10_00), wrong); // 13
        self.authorize(ts + MIN_NS, t0a, self.amt(d0, 10_00), None); // 13
        self.authorize(ts + 2 * MIN_NS, t0a, Amount::Empty, c0); // 13
        self.authorize(ts + 3 * MIN_NS, t0a, Amount::Text("1000000000"), c0); // 51: the max

        // Refs that name nothing.
        let unknown = Ref::Raw(UNKNOWN_REF_BASE + 1);
        self.follow(
            at(0, 5, 0),
            Capture,
            t0a,
            unknown,
            self.amt(d0, 10_00),
            c0,
            Some(true),
        ); // 25
        self.follow(at(0, 5, 1), Void, t0a, unknown, Amount::Empty, None, None); // 25
        self.follow(
            at(0, 5, 2),
            Refund,
            t0a,
            unknown,
            self.amt(d0, 10_00),
            c0,
            None,
        ); // 25
        self.follow(
            at(0, 5, 3),
            Increment,
            t0a,
            Ref::Empty,
            self.amt(d0, 1_00),
            c0,
            None,
        ); // 25
        self.follow(
            at(0, 5, 4),
            Capture,
            t0a,
            Ref::Empty,
            self.amt(d0, 1_00),
            c0,
            None,
        ); // 25

        // A token that expires during the traffic (2603: from day 6 16:00 UTC).
        let e = self.authorize(at(0, 6, 0), t0b, self.amt(d0, 10_00), c0); // 00
        self.follow(
            at(0, 6, 30),
            Capture,
            t0b,
            Ref::Slot(e.slot),
            e.amount,
            c0,
            Some(true),
        );
        self.authorize(at(7, 2, 0), t0b, self.amt(d0, 10_00), c0); // 54

        // A suspended token: 62, resume, purchase, suspend twice, resume an active token.
        self.authorize(at(0, 7, 0), t0c, self.amt(d0, 20_00), c0); // 62
        self.admin_token(at(0, 7, 10), TokenResume, t0c); // 00
        let s = self.authorize(at(0, 7, 20), t0c, self.amt(d0, 20_00), c0); // 00
        self.admin_token(at(0, 7, 30), TokenSuspend, t0c); // 00
        self.admin_token(at(0, 7, 31), TokenSuspend, t0c); // 12
        self.admin_token(at(0, 7, 32), TokenResume, t0a); // 12
        self.follow(
            at(0, 8, 0),
            Capture,
            t0c,
            Ref::Slot(s.slot),
            s.amount,
            c0,
            Some(true),
        ); // 00

        // Late clearing: a hold left past the TTL, then increment (22), capture (00), void
        // (22), capture again (13: nothing remains), refund (00).
        let l = self.authorize(at(0, 11, 0), t0a, self.amt(d0, 300_00), c0); // 00
        let r = Ref::Slot(l.slot);
        let late = l.ts_ns + TTL_NS + HOUR_NS;
        self.follow(late, Increment, t0a, r, self.amt(d0, 10_00), c0, None); // 22
        self.follow(late + 5 * MIN_NS, Capture, t0a, r, l.amount, c0, Some(true)); // 00
        self.follow(late + 10 * MIN_NS, Void, t0a, r, Amount::Empty, None, None); // 22
        self.follow(
            late + HOUR_NS,
            Capture,
            t0a,
            r,
            self.amt(d0, 1_00),
            c0,
            Some(true),
        ); // 13
        self.follow(
            late + NS_PER_DAY,
            Refund,
            t0a,
            r,
            self.amt(d0, 50_00),
            c0,
            None,
        ); // 00

        // A hotel: increments over days (each renews the TTL), final capture; a conflicting
        // reuse of the capture's id.
        let slot = self.slot();
        let h = self.push(
            Row::new(at(1, 5, 0), Authorize, slot)
                .token(t0a)
                .amount(self.amt(d0, 800_00), c0)
                .mcc(7011),
        ); // 00
        let r = Ref::Slot(h.slot);
        self.follow(
            at(2, 5, 0),
            Increment,
            t0a,
            r,
            self.amt(d0, 200_00),
            c0,
            None,
        ); // 00
        self.follow(
            at(3, 5, 0),
            Increment,
            t0a,
            r,
            self.amt(d0, 100_00),
            c0,
            None,
        ); // 00
        let cap = self.follow(
            at(4, 5, 0),
            Capture,
            t0a,
            r,
            self.amt(d0, 1_100_00),
            c0,
            Some(true),
        );
        self.push(Row {
            ts_ns: at(4, 5, 1),
            amount: self.amt(d0, 1_000_00),
            ..cap
        }); // 94

        // Across China midnight (16:00 UTC): a void on another day than its authorization.
        let m = self.authorize(at(1, 15, 50), t0a, self.amt(d0, 50_00), c0); // 00
        let r = Ref::Slot(m.slot);
        self.follow(at(1, 16, 10), Void, t0a, r, self.amt(d0, 20_00), c0, None); // 00
        self.follow(
            at(2, 1, 0),
            Capture,
            t0a,
            r,
            self.amt(d0, 30_00),
            c0,
            Some(true),
        ); // 00

        // An empty `final` equals `0`: the repeat replays.
        let f = self.authorize(at(2, 6, 0), t0a, self.amt(d0, 20_00), c0); // 00
        let cap = self.follow(
            at(2, 7, 0),
            Capture,
            t0a,
            Ref::Slot(f.slot),
            f.amount,
            c0,
            None,
        ); // 00
        self.again(cap.fin(Some(false)), at(2, 7, 1)); // 00 (replayed)

        // A capture repeated after the duplicate window is new again: the hold is closed.
        let g = self.authorize(at(3, 8, 0), t0a, self.amt(d0, 40_00), c0); // 00
        let cap = self.follow(
            at(3, 9, 0),
            Capture,
            t0a,
            Ref::Slot(g.slot),
            g.amount,
            c0,
            Some(true),
        );
        self.again(cap, at(4, 10, 0)); // 22

        self.script_limits();
        self.script_status();
    }

    /// Funds, per-transaction, daily amount and daily count limits, China midnight.
    fn script_limits(&mut self) {
        use Kind::*;
        // Low balance: 51, then a top-up and the same purchase passes; refs to a decline.
        let d1 = self.role(1);
        let (t1, c1) = (self.tok(d1, 0), Some(self.cur(d1)));
        self.authorize(at(0, 2, 0), t1, self.amt(d1, 500_00), c1); // 51
        let x = self.authorize(at(0, 13, 0), t1, self.amt(d1, 900_00), c1); // 51
        let r = Ref::Slot(x.slot);
        self.follow(at(0, 13, 5), Increment, t1, r, self.amt(d1, 1_00), c1, None); // 12
        self.follow(at(0, 13, 6), Void, t1, r, Amount::Empty, None, None); // 12
        self.follow(at(0, 13, 7), Refund, t1, r, self.amt(d1, 1_00), c1, None); // 12
        self.credit(at(1, 2, 0), self.acc_id(d1), self.amt(d1, 1_000_00), c1); // 00
        self.credit(at(1, 2, 1), self.acc_id(d1), Amount::Text("0"), c1); // 13
        let wrong = Some(other_currency(self.cur(d1)));
        self.credit(at(1, 2, 2), self.acc_id(d1), self.amt(d1, 5_00), wrong); // 13
        let p = self.authorize(at(1, 2, 10), t1, self.amt(d1, 500_00), c1); // 00
        self.follow(
            at(1, 3, 0),
            Capture,
            t1,
            Ref::Slot(p.slot),
            p.amount,
            c1,
            Some(true),
        ); // 00

        // Daily count 3: three pass, the fourth and one at 23:59 China are 65, then midnight.
        let d2 = self.role(2);
        let (t2, c2) = (self.tok(d2, 0), Some(self.cur(d2)));
        for k in 0..4 {
            self.authorize(at(0, 2, 10 * k), t2, self.amt(d2, 10_00), c2); // 00 00 00 65
        }
        self.authorize(at(0, 15, 59), t2, self.amt(d2, 10_00), c2); // 65
        self.authorize(at(0, 16, 1), t2, self.amt(d2, 10_00), c2); // 00: a new China day

        // Per-transaction 300 and daily 500: 61, 00, 00 (equal passes), 61; increment over
        // the per-transaction limit 61; after midnight 00; a void on the next day.
        let d3 = self.role(3);
        let (t3, c3) = (self.tok(d3, 0), Some(self.cur(d3)));
        self.authorize(at(0, 3, 0), t3, self.amt(d3, 350_00), c3); // 61
        let p = self.authorize(at(0, 3, 5), t3, self.amt(d3, 250_00), c3); // 00
        let q = self.authorize(at(0, 3, 10), t3, self.amt(d3, 250_00), c3); // 00
        self.authorize(at(0, 3, 15), t3, self.amt(d3, 1_00), c3); // 61
        let r = Ref::Slot(p.slot);
        self.follow(
            at(0, 3, 20),
            Increment,
            t3,
            r,
            self.amt(d3, 60_00),
            c3,
            None,
        ); // 61
        self.authorize(at(0, 16, 5), t3, self.amt(d3, 200_00), c3); // 00
        self.follow(at(0, 16, 10), Void, t3, r, Amount::Empty, c3, None); // 00
        let r = Ref::Slot(q.slot);
        self.follow(at(1, 1, 0), Capture, t3, r, q.amount, c3, Some(true)); // 00

        // USD with per-transaction 1000.00: equal passes, a cent over is 61, one decimal is
        // fine, three are not.
        let d8 = self.role(8);
        let (t8, c8) = (self.tok(d8, 0), Some(self.cur(d8)));
        let u = self.authorize(at(0, 14, 0), t8, self.amt(d8, 1_000_00), c8); // 00
        self.follow(
            at(0, 15, 0),
            Capture,
            t8,
            Ref::Slot(u.slot),
            u.amount,
            c8,
            Some(true),
        ); // 00
        self.authorize(at(0, 14, 5), t8, self.amt(d8, 1_000_01), c8); // 61
        self.authorize(at(0, 14, 10), t8, Amount::Text("25.5"), c8); // 00
        self.authorize(at(0, 14, 15), t8, Amount::Text("25.505"), c8); // 13
    }

    /// Account and token status: frozen, closed in the file, closed during the traffic,
    /// expired tokens, deactivation, unknown tokens and accounts.
    fn script_status(&mut self) {
        use Kind::*;
        // Frozen in accounts.csv.
        let d4 = self.role(4);
        let (t4, c4, id4) = (self.tok(d4, 0), Some(self.cur(d4)), self.acc_id(d4));
        self.authorize(at(0, 5, 0), t4, self.amt(d4, 30_00), c4); // 62
        self.admin_account(at(0, 5, 10), AccountUnfreeze, id4); // 00
        let p = self.authorize(at(0, 5, 20), t4, self.amt(d4, 30_00), c4); // 00
        self.follow(
            at(0, 6, 0),
            Capture,
            t4,
            Ref::Slot(p.slot),
            p.amount,
            c4,
            Some(true),
        ); // 00
        self.admin_account(at(0, 6, 10), AccountFreeze, id4); // 00
        self.admin_account(at(0, 6, 11), AccountFreeze, id4); // 12
        self.authorize(at(0, 6, 20), t4, self.amt(d4, 30_00), c4); // 62
        self.credit(at(0, 6, 30), id4, self.amt(d4, 100_00), c4); // 00: frozen takes credit
        self.admin_account(at(1, 6, 0), AccountUnfreeze, id4); // 00

        // Closed in accounts.csv, with a token left active.
        let d5 = self.role(5);
        let (t5, c5, id5) = (self.tok(d5, 0), Some(self.cur(d5)), self.acc_id(d5));
        self.authorize(at(0, 6, 0), t5, self.amt(d5, 30_00), c5); // 78
        self.credit(at(0, 6, 5), id5, self.amt(d5, 30_00), c5); // 78
        self.admin_account(at(0, 6, 10), AccountFreeze, id5); // 12
        self.admin_account(at(0, 6, 11), AccountClose, id5); // 12
        self.admin_token(at(0, 6, 12), TokenSuspend, t5); // 12

        // Closed during the traffic: tokens deactivated, earlier holds still complete.
        let d6 = self.role(6);
        let (t6, u6, c6, id6) = (
            self.tok(d6, 0),
            self.tok(d6, 1),
            Some(self.cur(d6)),
            self.acc_id(d6),
        );
        let h = self.authorize(at(0, 8, 0), t6, self.amt(d6, 100_00), c6); // 00
        let k = self.authorize(at(0, 8, 30), u6, self.amt(d6, 20_00), c6); // 00
        self.admin_account(at(1, 9, 0), AccountClose, id6); // 00
        self.authorize(at(1, 9, 10), t6, self.amt(d6, 10_00), c6); // 14
        self.follow(
            at(1, 9, 20),
            Capture,
            t6,
            Ref::Slot(h.slot),
            h.amount,
            c6,
            Some(true),
        ); // 00
        self.follow(
            at(1, 9, 30),
            Void,
            u6,
            Ref::Slot(k.slot),
            Amount::Empty,
            None,
            None,
        ); // 00
        self.credit(at(1, 9, 40), id6, self.amt(d6, 10_00), c6); // 78
        self.admin_account(at(1, 9, 50), AccountUnfreeze, id6); // 12
        self.admin_token(at(1, 9, 55), TokenResume, t6); // 14

        // JPY: a token expired before the traffic (54); whole yen only; trailing zero.
        let d7 = self.role(7);
        let (t7, u7, c7) = (self.tok(d7, 0), self.tok(d7, 1), Some(self.cur(d7)));
        self.authorize(at(0, 9, 0), t7, self.amt(d7, 5_000), c7); // 54
        let j = self.authorize(at(0, 9, 5), u7, self.amt(d7, 5_000), c7); // 00
        self.authorize(at(0, 9, 10), u7, Amount::Text("12.5"), c7); // 13
        let whole = Amount::Minor {
            minor: 5_000,
            decimals: self.cur(d7).decimals(),
            trailing_zero: true,
        };
        self.follow(
            at(0, 10, 0),
            Capture,
            u7,
            Ref::Slot(j.slot),
            whole,
            c7,
            Some(true),
        ); // 00

        // Unknown tokens and accounts.
        let stranger = Some(self.unknown_token_value());
        let c = Some(Currency::Cny);
        self.authorize(at(0, 10, 0), stranger, money(10_00, Currency::Cny), c); // 14
        self.authorize(at(0, 10, 1), None, money(10_00, Currency::Cny), c); // 14
        self.authorize(at(0, 10, 2), Some(4111), money(10_00, Currency::Cny), c); // 14
        self.admin_token(at(0, 10, 3), TokenSuspend, stranger); // 14
        let nobody = Some(ACCOUNT_ID_BASE + self.accounts.len() as u64 + 1_000);
        self.credit(at(0, 10, 4), nobody, money(10_00, Currency::Cny), c); // 78
        self.admin_account(at(0, 10, 5), AccountFreeze, nobody); // 78
        self.credit(at(0, 10, 6), None, money(10_00, Currency::Cny), c); // 78

        // Token deactivation; account freeze and unfreeze around a credit.
        let d9 = self.role(9);
        let (t9, u9, c9, id9) = (
            self.tok(d9, 0),
            self.tok(d9, 1),
            Some(self.cur(d9)),
            self.acc_id(d9),
        );
        self.admin_token(at(0, 12, 0), TokenDeactivate, t9); // 00
        self.authorize(at(0, 12, 5), t9, self.amt(d9, 10_00), c9); // 14
        self.admin_token(at(0, 12, 6), TokenSuspend, t9); // 14
        let p = self.authorize(at(0, 12, 10), u9, self.amt(d9, 10_00), c9); // 00
        self.follow(
            at(0, 13, 0),
            Capture,
            u9,
            Ref::Slot(p.slot),
            p.amount,
            c9,
            Some(true),
        ); // 00
        self.admin_account(at(2, 3, 0), AccountFreeze, id9); // 00
        self.credit(at(2, 3, 30), id9, self.amt(d9, 50_00), c9); // 00
        self.admin_account(at(2, 5, 0), AccountUnfreeze, id9); // 00
        self.admin_account(at(2, 5, 1), AccountUnfreeze, id9); // 12
    }

    // ---------------------------------------------------------------------------------------
    // Random traffic
    // ---------------------------------------------------------------------------------------

    /// Add random scenarios until at least `requests` rows are planned.
    fn fill(&mut self, requests: usize) -> Result<()> {
        let mut idle = 0;
        while self.rows.len() < requests {
            let before = self.rows.len();
            match self.rng.below(1000) {
                0..=464 => self.shop(),
                465..=564 => self.split(),
                565..=614 => self.hotel(),
                615..=704 => self.reversal(),
                705..=734 => self.expire(),
                735..=754 => self.declined_ref(),
                755..=774 => self.unknown_ref(),
                775..=799 => self.unknown_token(),
                800..=834 => self.bad_amount(),
                835..=894 => self.top_up(),
                895..=919 => self.token_admin(),
                920..=934 => self.account_admin(),
                935..=974 => self.burst(),
                _ => self.midnight(),
            }
            if self.rows.len() > before {
                self.retransmit(before);
                idle = 0;
            } else {
                idle += 1;
                ensure!(idle < 10_000, "generate: random traffic makes no progress");
            }
        }
        Ok(())
    }

    /// Now and then repeat one row of the scenario just planned (rows `from..`): exactly,
    /// within or after the duplicate window, or with a changed field (a conflicting reuse).
    fn retransmit(&mut self, from: usize) {
        let roll = self.rng.below(1000);
        if roll >= 55 {
            return;
        }
        let i = from + self.rng.below((self.rows.len() - from) as u64) as usize;
        let row = self.rows[i];
        let t = row.ts_ns;
        match roll {
            0..=29 => {
                let ts = self.rng.range(t + NS_PER_SEC, t + 10 * MIN_NS);
                self.again(row, ts);
            }
            30..=39 => {
                let ts = self.rng.range(t + HOUR_NS, t + DUP_WINDOW_NS - HOUR_NS);
                self.again(row, ts);
            }
            40..=49 => {
                let ts = self.rng.range(t + NS_PER_SEC, t + HOUR_NS);
                let changed = match row.amount {
                    Amount::Minor {
                        minor, decimals, ..
                    } => Row {
                        amount: Amount::Minor {
                            minor: minor + 1,
                            decimals,
                            trailing_zero: false,
                        },
                        ..row
                    },
                    _ => Row {
                        mcc: Some(row.mcc.map_or(5999, |m| m + 1)),
                        ..row
                    },
                };
                self.again(changed, ts);
            }
            _ => {
                let ts = self
                    .rng
                    .range(t + DUP_WINDOW_NS + HOUR_NS, t + 2 * DUP_WINDOW_NS);
                self.again(row, ts);
            }
        }
    }

    /// A purchase; usually captured within hours (final or not: nothing remains either
    /// way); sometimes refunded days later, in full or in part.
    fn shop(&mut self) {
        let (a, tok) = self.pick_card();
        let c = Some(self.cur(a));
        let t0 = self.when(START_NS, END_NS);
        let minor = self.typical(a);
        let amount = self.amt_varied(a, minor);
        let auth = self.authorize(t0, tok, amount, c);
        let p = if self.usable(a, tok, t0, minor) {
            85
        } else {
            15
        };
        if !self.rng.percent(p) {
            return;
        }
        let tc = t0 + self.rng.range(MIN_NS, 6 * HOUR_NS);
        let fin = self.rng.pick(&[Some(true), Some(false), Some(true), None]);
        let amount = self.amt_varied(a, minor);
        self.follow(tc, Kind::Capture, tok, Ref::Slot(auth.slot), amount, c, fin);
        if self.rng.percent(12) {
            let tr = tc + self.rng.range(NS_PER_DAY, 3 * NS_PER_DAY);
            let back = if self.rng.percent(60) {
                minor
            } else {
                1 + self.rng.range(0, minor)
            };
            let amount = self.amt(a, back);
            self.follow(tr, Kind::Refund, tok, Ref::Slot(auth.slot), amount, c, None);
        }
    }

    /// A split shipment: a partial capture, then the rest, less than the rest with `final`,
    /// or a cent too much first; sometimes one more capture after the hold closed.
    fn split(&mut self) {
        let (a, tok) = self.pick_card();
        let c = Some(self.cur(a));
        let t0 = self.when(START_NS, END_NS);
        let minor = self.typical(a).max(10);
        let auth = self.authorize(t0, tok, self.amt(a, minor), c);
        let r = Ref::Slot(auth.slot);
        let first = minor * self.rng.range(30, 71) / 100;
        let mut t = t0 + self.rng.range(10 * MIN_NS, 12 * HOUR_NS);
        self.follow(t, Kind::Capture, tok, r, self.amt(a, first), c, Some(false));
        let rest = minor - first;
        t += self.rng.range(HOUR_NS, 2 * NS_PER_DAY);
        match self.rng.below(10) {
            0..=4 => {
                self.follow(t, Kind::Capture, tok, r, self.amt(a, rest), c, Some(true));
            }
            5..=7 => {
                let less = (rest / 2).max(1);
                self.follow(t, Kind::Capture, tok, r, self.amt(a, less), c, Some(true));
            }
            _ => {
                self.follow(
                    t,
                    Kind::Capture,
                    tok,
                    r,
                    self.amt(a, rest + 1),
                    c,
                    Some(false),
                );
                let t2 = self.soon(t);
                self.follow(t2, Kind::Capture, tok, r, self.amt(a, rest), c, Some(false));
                t = t2;
            }
        }
        if self.rng.percent(25) {
            let t3 = self.soon(t);
            self.follow(t3, Kind::Capture, tok, r, self.amt(a, 1), c, Some(true));
        }
    }

    /// A hotel or car rental: one or two increments, then the final capture of the total
    /// (sometimes less, with `final`).
    fn hotel(&mut self) {
        let (a, tok) = self.pick_card();
        let c = Some(self.cur(a));
        let t0 = self.when(START_NS, END_NS);
        let minor = self.typical(a).max(100);
        let slot = self.slot();
        let mcc = self.rng.pick(&MCC_INCREMENTAL);
        let amount = self.amt(a, minor);
        let auth = self.push(
            Row::new(t0, Kind::Authorize, slot)
                .token(tok)
                .amount(amount, c)
                .mcc(mcc),
        );
        let r = Ref::Slot(auth.slot);
        let mut total = minor;
        let mut t = t0;
        for _ in 0..1 + self.rng.below(2) {
            t += self.rng.range(6 * HOUR_NS, 2 * NS_PER_DAY);
            let more = (minor * self.rng.range(10, 51) / 100).max(1);
            total += more;
            self.follow(t, Kind::Increment, tok, r, self.amt(a, more), c, None);
        }
        t += self.rng.range(HOUR_NS, NS_PER_DAY);
        let taken = if self.rng.percent(85) {
            total
        } else {
            total * 9 / 10
        };
        self.follow(t, Kind::Capture, tok, r, self.amt(a, taken), c, Some(true));
    }

    /// A reversal: the whole hold (empty amount), a part then a capture of the rest, or
    /// too much (13) then the whole.
    fn reversal(&mut self) {
        let (a, tok) = self.pick_card();
        let cur = self.cur(a);
        let c = Some(cur);
        let t0 = self.when(START_NS, END_NS);
        let minor = self.typical(a).max(2);
        let auth = self.authorize(t0, tok, self.amt(a, minor), c);
        let r = Ref::Slot(auth.slot);
        let t1 = t0 + self.rng.range(MIN_NS, 3 * HOUR_NS);
        let vc = if self.rng.percent(50) { None } else { c };
        match self.rng.below(10) {
            0..=4 => {
                self.follow(t1, Kind::Void, tok, r, Amount::Empty, vc, None);
            }
            5..=7 => {
                let part = minor / 2;
                self.follow(t1, Kind::Void, tok, r, self.amt(a, part), vc, None);
                let t2 = t1 + self.rng.range(MIN_NS, 6 * HOUR_NS);
                let rest = self.amt(a, minor - part);
                self.follow(t2, Kind::Capture, tok, r, rest, c, Some(true));
            }
            _ => {
                self.follow(t1, Kind::Void, tok, r, self.amt(a, minor + 1), vc, None);
                let t2 = self.soon(t1);
                self.follow(t2, Kind::Void, tok, r, Amount::Empty, None, None);
            }
        }
    }

    /// A hold left open past the TTL; then a late capture, an increment, or nothing.
    fn expire(&mut self) {
        let (a, tok) = self.pick_card();
        let c = Some(self.cur(a));
        let t0 = self.when(START_NS, START_NS + SPAN_NS - TTL_NS - NS_PER_DAY / 2);
        let minor = self.typical(a).max(2);
        let auth = self.authorize(t0, tok, self.amt(a, minor), c);
        let r = Ref::Slot(auth.slot);
        let late = t0 + TTL_NS + self.rng.range(HOUR_NS, 2 * NS_PER_DAY);
        match self.rng.below(20) {
            0..=9 => {
                self.follow(
                    late,
                    Kind::Capture,
                    tok,
                    r,
                    self.amt(a, minor),
                    c,
                    Some(true),
                );
            }
            10..=12 => {
                let half = self.amt(a, minor / 2);
                self.follow(late, Kind::Capture, tok, r, half, c, Some(false));
            }
            13..=16 => {
                self.follow(late, Kind::Increment, tok, r, self.amt(a, 1), c, None);
            }
            _ => {}
        }
    }

    fn bad_amount_field(&mut self, a: usize) -> (Amount, Option<Currency>) {
        let cur = self.cur(a);
        match self.rng.below(10) {
            0..=5 => (Amount::Text(self.rng.pick(&BAD_AMOUNTS)), Some(cur)),
            6 => (Amount::Empty, Some(cur)),
            7 => (self.amt(a, 10_00), None),
            8 => (self.amt(a, 10_00), Some(other_currency(cur))),
            _ if cur.decimals() == 0 => (Amount::Text("10.5"), Some(cur)),
            _ => (Amount::Text("10.005"), Some(cur)),
        }
    }

    /// An authorization with a bad amount or currency (13), sometimes retried right.
    fn bad_amount(&mut self) {
        let (a, tok) = self.pick_card();
        let t0 = self.when(START_NS, END_NS);
        let (amount, c) = self.bad_amount_field(a);
        self.authorize(t0, tok, amount, c);
        if self.rng.percent(50) {
            let t1 = self.soon(t0);
            let minor = self.typical(a);
            let c = Some(self.cur(a));
            let retry = self.authorize(t1, tok, self.amt(a, minor), c);
            let t2 = t1 + self.rng.range(MIN_NS, HOUR_NS);
            let r = Ref::Slot(retry.slot);
            self.follow(t2, Kind::Capture, tok, r, self.amt(a, minor), c, Some(true));
        }
    }

    /// A completion or increment that refers to a declined authorization (12).
    fn declined_ref(&mut self) {
        let (a, tok) = self.pick_card();
        let c = Some(self.cur(a));
        let t0 = self.when(START_NS, END_NS);
        let (amount, bad_c) = self.bad_amount_field(a);
        let auth = self.authorize(t0, tok, amount, bad_c);
        let r = Ref::Slot(auth.slot);
        let t1 = t0 + self.rng.range(MIN_NS, 30 * MIN_NS);
        let kind = self
            .rng
            .pick(&[Kind::Capture, Kind::Void, Kind::Refund, Kind::Increment]);
        let fin = (kind == Kind::Capture).then_some(true);
        self.follow(t1, kind, tok, r, self.amt(a, 10_00), c, fin);
    }

    /// A completion or increment whose ref names nothing (25).
    fn unknown_ref(&mut self) {
        let (a, tok) = self.pick_card();
        let c = Some(self.cur(a));
        let t0 = self.when(START_NS, END_NS);
        let r = if self.rng.percent(20) {
            Ref::Empty
        } else {
            Ref::Raw(UNKNOWN_REF_BASE + self.rng.below(1_000_000_000))
        };
        let kind = self
            .rng
            .pick(&[Kind::Capture, Kind::Void, Kind::Refund, Kind::Increment]);
        let fin = (kind == Kind::Capture).then_some(true);
        let amount = self.typical_amt(a);
        self.follow(t0, kind, tok, r, amount, c, fin);
    }

    /// A card message with a token that names nothing (14): a stranger's DPAN, nothing, or
    /// digits too few to be a DPAN.
    fn unknown_token(&mut self) {
        let t0 = self.when(START_NS, END_NS);
        let tok = match self.rng.below(10) {
            0..=7 => Some(self.unknown_token_value()),
            8 => None,
            _ => Some(1 + self.rng.below(999_999)),
        };
        let cur = self.rng.pick(&Currency::ALL);
        let amount = money(from_cny_cents(self.rng.range(1_00, 500_00), cur), cur);
        if self.rng.percent(80) {
            self.authorize(t0, tok, amount, Some(cur));
        } else {
            let r = Ref::Raw(UNKNOWN_REF_BASE + self.rng.below(1_000_000_000));
            self.follow(t0, Kind::Capture, tok, r, amount, Some(cur), Some(true));
        }
    }

    /// A top-up (sometimes of an amount that is not one, or to a closed account).
    fn top_up(&mut self) {
        let a = self.pick_account();
        let c = Some(self.cur(a));
        let t0 = self.when(START_NS, END_NS);
        let amount = if self.rng.percent(5) {
            self.bad_amount_field(a).0
        } else {
            let cents = self.rng.range(50_00, 5_000_00);
            let minor = from_cny_cents(cents, self.cur(a));
            self.amt_varied(a, minor)
        };
        self.credit(t0, self.acc_id(a), amount, c);
    }

    /// Token lifecycle: suspend, an authorization while suspended (62), resume; a resume of
    /// an active token or a second suspend (12); a deactivation, then 14.
    fn token_admin(&mut self) {
        let (a, tok) = self.pick_card();
        let c = Some(self.cur(a));
        let t0 = self.when(START_NS, END_NS);
        match self.rng.below(10) {
            0..=5 => {
                self.admin_token(t0, Kind::TokenSuspend, tok);
                let t1 = t0 + self.rng.range(10 * MIN_NS, 3 * HOUR_NS);
                let amount = self.typical_amt(a);
                self.authorize(t1, tok, amount, c);
                let t2 = t1 + self.rng.range(HOUR_NS, 2 * NS_PER_DAY);
                self.admin_token(t2, Kind::TokenResume, tok);
                let t3 = self.soon(t2);
                let amount = self.typical_amt(a);
                self.authorize(t3, tok, amount, c);
            }
            6..=7 => {
                self.admin_token(t0, Kind::TokenResume, tok);
            }
            8 => {
                self.admin_token(t0, Kind::TokenSuspend, tok);
                let t1 = self.soon(t0);
                self.admin_token(t1, Kind::TokenSuspend, tok);
            }
            _ => {
                self.admin_token(t0, Kind::TokenDeactivate, tok);
                let t1 = t0 + self.rng.range(HOUR_NS, NS_PER_DAY);
                let amount = self.typical_amt(a);
                self.authorize(t1, tok, amount, c);
            }
        }
    }

    /// Account lifecycle: freeze, attempts while frozen, unfreeze; admin that is not
    /// allowed (12); rarely a close; admin on an account that does not exist (78).
    fn account_admin(&mut self) {
        let (a, tok) = self.pick_card();
        let c = Some(self.cur(a));
        let id = self.acc_id(a);
        let t0 = self.when(START_NS, END_NS);
        match self.rng.below(100) {
            0..=54 => {
                self.admin_account(t0, Kind::AccountFreeze, id);
                let t1 = t0 + self.rng.range(10 * MIN_NS, 3 * HOUR_NS);
                let amount = self.typical_amt(a);
                self.authorize(t1, tok, amount, c);
                let t2 = t1 + self.rng.range(HOUR_NS, 2 * NS_PER_DAY);
                self.admin_account(t2, Kind::AccountUnfreeze, id);
            }
            55..=74 => {
                self.admin_account(t0, Kind::AccountUnfreeze, id);
            }
            75..=89 => {
                self.admin_account(t0, Kind::AccountFreeze, id);
                let t1 = self.soon(t0);
                self.admin_account(t1, Kind::AccountFreeze, id);
                let t2 = t1 + self.rng.range(HOUR_NS, NS_PER_DAY);
                self.admin_account(t2, Kind::AccountUnfreeze, id);
            }
            90..=93 => {
                self.admin_account(t0, Kind::AccountClose, id);
                let t1 = t0 + self.rng.range(HOUR_NS, NS_PER_DAY);
                let amount = self.amt(a, 10_00);
                self.credit(t1, id, amount, c);
            }
            _ => {
                let nobody = ACCOUNT_ID_BASE + self.accounts.len() as u64 + self.rng.below(1_000);
                let kind = self.rng.pick(&[Kind::AccountFreeze, Kind::AccountUnfreeze]);
                self.admin_account(t0, kind, Some(nobody));
            }
        }
    }

    /// Several small purchases within two hours on an account with a daily limit, most
    /// captured: runs into 61 and 65.
    fn burst(&mut self) {
        let a = if !self.limited.is_empty() && self.rng.percent(80) {
            self.rng.pick(&self.limited)
        } else {
            self.pick_account()
        };
        let tok = self.any_token(a);
        let c = Some(self.cur(a));
        let mut t = self.when(START_NS, END_NS);
        let p = if self.usable(a, tok, t, 1) { 50 } else { 10 };
        for _ in 0..3 + self.rng.below(6) {
            let minor = (self.typical(a) / 2).max(1);
            let auth = self.authorize(t, tok, self.amt(a, minor), c);
            if self.rng.percent(p) {
                let tc = t + self.rng.range(MIN_NS, 4 * HOUR_NS);
                let r = Ref::Slot(auth.slot);
                self.follow(tc, Kind::Capture, tok, r, self.amt(a, minor), c, Some(true));
            }
            t += self.rng.range(MIN_NS, 20 * MIN_NS);
        }
    }

    /// Purchases from 23:30 to 00:30 China time (15:30 to 16:30 UTC), where the day
    /// counters turn; some voided after midnight (no give-back on the new day).
    fn midnight(&mut self) {
        let a = if !self.limited.is_empty() && self.rng.percent(70) {
            self.rng.pick(&self.limited)
        } else {
            self.pick_account()
        };
        let tok = self.any_token(a);
        let c = Some(self.cur(a));
        let day = self.rng.below(10) as i64;
        let n = 2 + self.rng.below(5) as usize;
        let mut times: Vec<i64> = (0..n)
            .map(|_| self.rng.range(at(day, 15, 30), at(day, 16, 30)))
            .collect();
        times.sort_unstable();
        for t in times {
            let minor = self.typical(a);
            let auth = self.authorize(t, tok, self.amt(a, minor), c);
            let r = Ref::Slot(auth.slot);
            let t1 = at(day, 16, 30) + self.rng.range(MIN_NS, HOUR_NS);
            match self.rng.below(10) {
                0..=5 => {
                    self.follow(t1, Kind::Capture, tok, r, self.amt(a, minor), c, Some(true));
                }
                6..=8 => {
                    self.follow(t1, Kind::Void, tok, r, Amount::Empty, None, None);
                }
                _ => {}
            }
        }
    }

    // ---------------------------------------------------------------------------------------
    // Output
    // ---------------------------------------------------------------------------------------

    /// Sort by `ts_ns` (stable: a story keeps its order on ties), keep the first `requests`
    /// rows, and give ids in order of first appearance, so ids rise with time. Returns the
    /// rows and the `request_id` of every slot they use (in place, to keep memory at one
    /// `Row` and one id per request).
    fn finish(&mut self, requests: usize) -> (Vec<Row>, Vec<u64>) {
        let mut rows = std::mem::take(&mut self.rows);
        rows.sort_by_key(|r| r.ts_ns);
        rows.truncate(requests);
        let mut ids = vec![0u64; self.next_slot as usize];
        let mut next = REQUEST_ID_BASE;
        for row in &rows {
            let slots = [Some(row.slot), ref_slot(row.reference)];
            for slot in slots.into_iter().flatten() {
                let id = &mut ids[slot as usize];
                if *id == 0 {
                    *id = next;
                    next += 1;
                }
            }
        }
        (rows, ids)
    }

    fn write_accounts(&self, w: &mut dyn Write) -> std::io::Result<()> {
        writeln!(w, "{ACCOUNTS_HEADER}")?;
        for a in &self.accounts {
            let d = a.currency.decimals();
            write!(w, "{},{},", a.id, a.currency.as_str())?;
            write_minor(w, a.balance_minor, d, false)?;
            write!(w, ",{},", a.status.as_str())?;
            if let Some(v) = a.per_txn_minor {
                write_minor(w, v, d, false)?;
            }
            w.write_all(b",")?;
            if let Some(v) = a.daily_minor {
                write_minor(w, v, d, false)?;
            }
            w.write_all(b",")?;
            if let Some(v) = a.daily_count {
                write!(w, "{v}")?;
            }
            w.write_all(b"\n")?;
        }
        Ok(())
    }

    fn write_tokens(&self, w: &mut dyn Write) -> std::io::Result<()> {
        writeln!(w, "{TOKENS_HEADER}")?;
        for t in &self.tokens {
            writeln!(
                w,
                "{},{},{},{:04}",
                t.value,
                self.accounts[t.account].id,
                t.status.as_str(),
                t.expiry
            )?;
        }
        Ok(())
    }
}

fn ref_slot(reference: Ref) -> Option<u32> {
    match reference {
        Ref::Slot(s) => Some(s),
        Ref::Empty | Ref::Raw(_) => None,
    }
}

/// traffic.csv from the sorted rows and the ids `Gen::finish` gave their slots.
fn write_traffic(w: &mut dyn Write, rows: &[Row], ids: &[u64]) -> std::io::Result<()> {
    writeln!(w, "{TRAFFIC_HEADER}")?;
    for row in rows {
        let id = ids[row.slot as usize];
        write!(w, "{},{},{},", row.ts_ns, id, row.kind.as_str())?;
        if let Some(t) = row.token {
            write!(w, "{t}")?;
        }
        w.write_all(b",")?;
        if let Some(a) = row.account_id {
            write!(w, "{a}")?;
        }
        w.write_all(b",")?;
        match row.amount {
            Amount::Empty => {}
            Amount::Minor {
                minor,
                decimals,
                trailing_zero,
            } => write_minor(w, minor, decimals, trailing_zero)?,
            Amount::Text(s) => w.write_all(s.as_bytes())?,
        }
        w.write_all(b",")?;
        if let Some(c) = row.currency {
            w.write_all(c.as_str().as_bytes())?;
        }
        w.write_all(b",")?;
        if let Some(m) = row.mcc {
            write!(w, "{m}")?;
        }
        w.write_all(b",")?;
        match row.reference {
            Ref::Empty => {}
            Ref::Slot(s) => write!(w, "{}", ids[s as usize])?,
            Ref::Raw(v) => write!(w, "{v}")?,
        }
        w.write_all(b",")?;
        match row.is_final {
            None => {}
            Some(false) => w.write_all(b"0")?,
            Some(true) => w.write_all(b"1")?,
        }
        w.write_all(b"\n")?;
    }
    Ok(())
}

/// `minor` as a decimal with `decimals` places (0 or 2); `trailing_zero` adds one more `0`
/// (`12.340`, or `5000.0` for 0 decimals), which names the same amount.
fn write_minor(
    w: &mut dyn Write,
    minor: i64,
    decimals: u32,
    trailing_zero: bool,
) -> std::io::Result<()> {
    let sign = if minor < 0 { "-" } else { "" };
    let abs = minor.unsigned_abs();
    let scale = 10u64.pow(decimals);
    if decimals == 0 {
        write!(w, "{sign}{abs}")?;
    } else {
        let width = decimals as usize;
        write!(w, "{sign}{}.{:0width$}", abs / scale, abs % scale)?;
    }
    if trailing_zero {
        w.write_all(if decimals == 0 { b".0" } else { b"0" })?;
    }
    Ok(())
}

/// Fixed roles of the first ten accounts (see `Gen::script`).
fn designate(role: usize, a: &mut Account, tokens: &mut Vec<(TokenStatus, u16)>) {
    use AccountStatus::{Active, Closed, Frozen};
    use TokenStatus::{Active as On, Suspended};
    let (currency, balance, status) = match role {
        0 => (Currency::Cny, 50_000_00, Active),
        1 => (Currency::Cny, 12_00, Active),
        2 | 3 => (Currency::Cny, 10_000_00, Active),
        4 => (Currency::Cny, 2_000_00, Frozen),
        5 => (Currency::Cny, 800_00, Closed),
        6 => (Currency::Hkd, 5_000_00, Active),
        7 => (Currency::Jpy, 100_000, Active),
        8 => (Currency::Usd, 2_000_00, Active),
        _ => (Currency::Cny, 3_000_00, Active),
    };
    a.currency = currency;
    a.balance_minor = balance;
    a.status = status;
    a.per_txn_minor = match role {
        3 => Some(300_00),
        8 => Some(1_000_00),
        _ => None,
    };
    a.daily_minor = (role == 3).then_some(500_00);
    a.daily_count = (role == 2).then_some(3);
    *tokens = match role {
        0 => vec![(On, 2812), (On, 2603), (Suspended, 2912)],
        7 => vec![(On, 2512), (On, 2801)],
        6 | 9 => vec![(On, 2810), (On, 2711)],
        _ => vec![(On, 2712)],
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> GenOptions {
        GenOptions {
            accounts: 60,
            requests: 3_000,
            seed: 7,
        }
    }

    fn read(dir: &Path, name: &str) -> String {
        fs::read_to_string(dir.join(name)).unwrap()
    }

    fn generated(opts: &GenOptions) -> (tempfile::TempDir, [String; 3]) {
        let dir = tempfile::tempdir().unwrap();
        generate(opts, dir.path()).unwrap();
        let files = ["accounts.csv", "tokens.csv", "traffic.csv"].map(|f| read(dir.path(), f));
        (dir, files)
    }

    #[test]
    fn same_seed_same_bytes_other_seed_other_bytes() {
        let (_a, first) = generated(&small());
        let (_b, again) = generated(&small());
        assert_eq!(first, again);
        let (_c, other) = generated(&GenOptions { seed: 8, ..small() });
        for (x, y) in first.iter().zip(&other) {
            assert_ne!(x, y);
        }
    }

    #[test]
    fn headers_columns_and_line_endings() {
        let (_d, [accounts, tokens, traffic]) = generated(&small());
        for (text, header, rows) in [
            (&accounts, ACCOUNTS_HEADER, 60),
            (&tokens, TOKENS_HEADER, 0),
            (&traffic, TRAFFIC_HEADER, 3_000),
        ] {
            assert!(!text.contains('\r'));
            assert!(text.ends_with('\n'));
            let mut lines = text.lines();
            assert_eq!(lines.next(), Some(header));
            let columns = header.split(',').count();
            let mut count = 0;
            for line in lines {
                assert_eq!(line.split(',').count(), columns, "{line}");
                assert!(!line.contains(' '), "{line}");
                count += 1;
            }
            if rows > 0 {
                assert_eq!(count, rows);
            }
        }
    }

    #[test]
    fn traffic_is_ordered_and_has_every_kind() {
        let (_d, [_, _, traffic]) = generated(&small());
        let mut last = i64::MIN;
        let mut kinds = HashSet::new();
        for line in traffic.lines().skip(1) {
            let f: Vec<&str> = line.split(',').collect();
            let ts: i64 = f[0].parse().unwrap();
            assert!(ts >= last, "ts_ns goes back: {line}");
            assert!((START_NS..END_NS).contains(&ts), "{line}");
            last = ts;
            kinds.insert(f[2].parse::<Kind>().unwrap());
            f[1].parse::<u64>().unwrap();
            for amount in [f[5]].into_iter().filter(|a| !a.is_empty()) {
                rust_decimal::Decimal::from_str_exact(amount).unwrap();
            }
            assert!(matches!(f[9], "" | "0" | "1"), "{line}");
        }
        for kind in Kind::ALL {
            assert!(kinds.contains(&kind), "no {kind}");
        }
    }

    #[test]
    fn accounts_and_tokens_load_as_specs() {
        let (_d, [accounts, tokens, _]) = generated(&GenOptions::default());
        let mut ids = HashSet::new();
        let mut currencies = HashSet::new();
        let mut closed = 0;
        for line in accounts.lines().skip(1) {
            let f: Vec<&str> = line.split(',').collect();
            assert!(ids.insert(f[0].parse::<u64>().unwrap()));
            let currency: Currency = f[1].parse().unwrap();
            currencies.insert(currency);
            let balance = rust_decimal::Decimal::from_str_exact(f[2]).unwrap();
            assert!(payauth_engine::api::to_minor(balance, currency).is_some());
            closed += usize::from(f[3].parse::<AccountStatus>().unwrap() == AccountStatus::Closed);
        }
        assert_eq!(currencies.len(), 4);
        assert!((1..=2).contains(&closed));
        let mut dpans = HashSet::new();
        for line in tokens.lines().skip(1) {
            let f: Vec<&str> = line.split(',').collect();
            assert_eq!(f[0].len(), 16);
            assert!(dpans.insert(f[0].parse::<payauth_engine::Dpan>().unwrap()));
            assert!(ids.contains(&f[1].parse::<u64>().unwrap()));
            f[2].parse::<TokenStatus>().unwrap();
            f[3].parse::<payauth_engine::Expiry>().unwrap();
        }
    }

    #[test]
    fn request_ids_repeat_only_on_purpose() {
        let (_d, [_, _, traffic]) = generated(&GenOptions::default());
        let mut seen = std::collections::HashMap::new();
        let mut repeats = 0;
        for line in traffic.lines().skip(1) {
            let f: Vec<&str> = line.split(',').collect();
            let id: u64 = f[1].parse().unwrap();
            if let Some(first) = seen.insert(id, f[2..].join(",")) {
                repeats += 1;
                // A repeat is of the same kind (a retransmission or a conflicting reuse).
                assert_eq!(first.split(',').next(), Some(f[2]));
            }
        }
        assert!(repeats > 10 && repeats < 1_000, "{repeats}");
    }

    #[test]
    fn tiny_options_work() {
        for (accounts, requests) in [(1, 0), (1, 50), (3, 400), (12, 100)] {
            let opts = GenOptions {
                accounts,
                requests,
                seed: 3,
            };
            let (_d, [_, _, traffic]) = generated(&opts);
            assert_eq!(traffic.lines().count(), requests + 1);
        }
        assert!(generate(
            &GenOptions {
                accounts: 0,
                ..small()
            },
            tempfile::tempdir().unwrap().path()
        )
        .is_err());
    }
}
