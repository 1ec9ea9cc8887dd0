//! The generated issuer's customers: accounts (currency, balance, status, limits) and their
//! 1 to 3 tokens, with a Zipf popularity rank per account that the traffic uses to pick who
//! pays. Made chunk by chunk in parallel, one PRNG stream per chunk of accounts.

use payauth_engine::api::{CHINA_OFFSET_NS, NS_PER_DAY};
use payauth_engine::{AccountSpec, AccountStatus, Currency, Dpan, Expiry, TokenSpec, TokenStatus};
use rayon::prelude::*;
use rust_decimal::Decimal;

use super::sample::Rng;

/// Accounts per parallel chunk (one PRNG stream each).
const CHUNK: usize = 4096;
/// PRNG domains.
const DOMAIN_ACCOUNTS: u64 = 0x0061_6363_6f75_6e74; // "account"
const DOMAIN_TOKENS: u64 = 0x0074_6f6b_656e; // "token"

/// Alipay-like 16-digit account ids: `2088` and 12 scrambled digits.
const ACCOUNT_ID_BASE: u64 = 2_088_000_000_000_000;
/// UnionPay-like 16-digit DPANs: `6258` and 12 scrambled digits. Unknown tokens in the traffic
/// start with `4`, so they never collide.
const TOKEN_BASE: u64 = 6_258_000_000_000_000;
/// Size of the scrambled part of ids and tokens.
const SCRAMBLE_SPACE: u64 = 1_000_000_000_000;

/// Share of account currencies: CNY, HKD, USD, JPY.
pub const CURRENCY_SHARES: [(Currency, f64); 4] = [
    (Currency::Cny, 0.95),
    (Currency::Hkd, 0.025),
    (Currency::Usd, 0.015),
    (Currency::Jpy, 0.01),
];
/// Balance of an ordinary account, CNY: log-normal (median, sigma).
pub const BALANCE_CNY: (f64, f64) = (3_000.0, 1.2);
/// Share of accounts that are nearly empty (log-normal median 40 CNY, sigma 1), so `51`
/// happens; never the hottest 1% of accounts.
pub const LOW_BALANCE: (f64, f64, f64) = (0.03, 40.0, 1.0);
/// Share of frozen and of closed accounts (never the hottest 1%).
pub const FROZEN_SHARE: f64 = 0.004;
/// See [`FROZEN_SHARE`].
pub const CLOSED_SHARE: f64 = 0.002;
/// Share of accounts with a per-transaction limit, and its values (CNY).
pub const PER_TXN_LIMIT: (f64, [f64; 4]) = (0.25, [2_000.0, 5_000.0, 10_000.0, 20_000.0]);
/// Share of accounts with a daily amount limit, and its values (CNY); only where the
/// account's expected daily spend is below a fifth of the limit.
pub const DAILY_LIMIT: (f64, [f64; 4]) = (0.15, [5_000.0, 10_000.0, 20_000.0, 50_000.0]);
/// Share of accounts with a daily count limit, and its values; only where the account's
/// expected authorizations per day are below a fifth of the limit.
pub const DAILY_COUNT_LIMIT: (f64, [u64; 3]) = (0.05, [20, 30, 50]);
/// Tokens per account: 1, 2 or 3 with these probabilities.
pub const TOKENS_PER_ACCOUNT: [f64; 3] = [0.6, 0.3, 0.1];
/// Share of suspended and deactivated tokens (an account's first token is always active in
/// the hottest 1%).
pub const SUSPENDED_SHARE: f64 = 0.007;
/// See [`SUSPENDED_SHARE`].
pub const DEACTIVATED_SHARE: f64 = 0.008;
/// Share of tokens that expired the month before the traffic starts (`54`); the others
/// expire 12 to 60 months after it.
pub const EXPIRED_SHARE: f64 = 0.007;

/// What the population needs to know about the traffic to come.
#[derive(Clone, Copy, Debug)]
pub struct Demand {
    /// Requests in the traffic.
    pub requests: f64,
    /// Length of the traffic, seconds.
    pub span_s: f64,
    /// Expected card spend per request, CNY (captures less refunds, before top-ups).
    pub spend_per_request_cny: f64,
    /// Share of requests that are authorizations.
    pub authorize_share: f64,
}

/// Accounts and tokens, and the map between popularity rank and account.
pub struct Population {
    /// Accounts, in file order (index = account index).
    pub accounts: Vec<AccountSpec>,
    /// Tokens, in file order: account `i`'s tokens are `token_start[i]..token_start[i + 1]`.
    pub tokens: Vec<TokenSpec>,
    /// Where each account's tokens start in `tokens` (one more entry than accounts).
    pub token_start: Vec<u32>,
    /// Rank (0 = hottest) -> account index is `(rank * stride + shift) mod n`.
    stride: u64,
    /// The inverse of `stride` mod n.
    stride_inv: u64,
    /// See `stride`: where the hottest account lies, from the seed.
    shift: u64,
}

impl Population {
    /// The account index of popularity rank `rank0` (0-based).
    pub fn account_of_rank(&self, rank0: u64) -> usize {
        let n = self.accounts.len() as u64;
        ((u128::from(rank0) * u128::from(self.stride) + u128::from(self.shift)) % u128::from(n))
            as usize
    }

    /// The popularity rank (0-based) of account `index`.
    pub fn rank_of_account(&self, index: usize) -> u64 {
        rank_of(
            index,
            self.accounts.len() as u64,
            self.stride_inv,
            self.shift,
        )
    }

    /// The first token index of account `index` and how many it has (1 to 3).
    pub fn tokens_of(&self, index: usize) -> (u32, u32) {
        let lo = self.token_start[index];
        (lo, self.token_start[index + 1] - lo)
    }

    /// Make `n` accounts (at least 1) and their tokens for traffic starting at `start_ns`.
    pub fn generate(n: usize, zipf_s: f64, demand: &Demand, start_ns: i64, seed: u64) -> Self {
        assert!(n >= 1, "at least one account");
        let nn = n as u64;
        let stride = coprime_stride(nn);
        let stride_inv = mod_inverse(stride, nn);
        let shift = Rng::stream(seed, DOMAIN_ACCOUNTS, u64::MAX).below(nn);
        // The normalizer of Zipf's law, summed in fixed chunks so the result does not depend
        // on the thread count.
        let harmonic: f64 = (0..n.div_ceil(CHUNK))
            .into_par_iter()
            .map(|c| {
                let hi = ((c + 1) * CHUNK).min(n);
                (c * CHUNK..hi)
                    .map(|r| ((r + 1) as f64).powf(-zipf_s))
                    .sum::<f64>()
            })
            .collect::<Vec<f64>>()
            .iter()
            .sum();
        let hot_ranks = nn / 100;
        let per_day = (NS_PER_DAY as f64 / 1e9 / demand.span_s).min(1.0);

        let (accounts, token_counts): (Vec<AccountSpec>, Vec<u8>) = (0..n.div_ceil(CHUNK))
            .into_par_iter()
            .flat_map_iter(|c| {
                let mut rng = Rng::stream(seed, DOMAIN_ACCOUNTS, c as u64);
                let hi = ((c + 1) * CHUNK).min(n);
                (c * CHUNK..hi)
                    .map(|i| {
                        let rank0 = rank_of(i, nn, stride_inv, shift);
                        let share = ((rank0 + 1) as f64).powf(-zipf_s) / harmonic;
                        let hot = rank0 < hot_ranks;
                        account(&mut rng, i, share, hot, demand, per_day)
                    })
                    .collect::<Vec<_>>()
            })
            .unzip();

        let mut token_start = Vec::with_capacity(n + 1);
        let mut next = 0u32;
        for &c in &token_counts {
            token_start.push(next);
            next += u32::from(c);
        }
        token_start.push(next);

        let (year, month) = china_year_month(start_ns);
        let tokens: Vec<TokenSpec> = (0..n.div_ceil(CHUNK))
            .into_par_iter()
            .flat_map_iter(|c| {
                let mut rng = Rng::stream(seed, DOMAIN_TOKENS, c as u64);
                let hi = ((c + 1) * CHUNK).min(n);
                let accounts = &accounts;
                let token_start = &token_start;
                (c * CHUNK..hi)
                    .flat_map(move |i| {
                        let rank0 = rank_of(i, nn, stride_inv, shift);
                        let lo = token_start[i];
                        let hi = token_start[i + 1];
                        (lo..hi)
                            .map(|t| {
                                let keep_active = t == lo && rank0 < hot_ranks;
                                token(
                                    &mut rng,
                                    t,
                                    accounts[i].account_id,
                                    keep_active,
                                    year,
                                    month,
                                )
                            })
                            .collect::<Vec<_>>()
                    })
                    .collect::<Vec<_>>()
            })
            .collect();

        Population {
            accounts,
            tokens,
            token_start,
            stride,
            stride_inv,
            shift,
        }
    }
}

/// The popularity rank of account `index` of `n`: `(index - shift) * stride_inv mod n`.
fn rank_of(index: usize, n: u64, stride_inv: u64, shift: u64) -> u64 {
    let back = (index as u64 + n - shift % n) % n;
    ((u128::from(back) * u128::from(stride_inv)) % u128::from(n)) as u64
}

/// One account. `share` is its share of the traffic (Zipf), `hot` marks the top 1% (always
/// active, never nearly empty).
fn account(
    rng: &mut Rng,
    i: usize,
    share: f64,
    hot: bool,
    demand: &Demand,
    per_day: f64,
) -> (AccountSpec, u8) {
    let weights: Vec<f64> = CURRENCY_SHARES.iter().map(|(_, w)| *w).collect();
    let currency = CURRENCY_SHARES[rng.weighted(&weights)].0;
    // Its expected spend over the traffic: the balance covers 0.6 to 1.6 times that on top of
    // an ordinary balance, so heavy users are rich and rarely run dry (top-ups help too).
    let spend_cny = share * demand.requests * demand.spend_per_request_cny;
    let low = !hot && rng.chance(LOW_BALANCE.0);
    let base = if low {
        rng.log_normal(LOW_BALANCE.1, LOW_BALANCE.2)
    } else {
        rng.log_normal(BALANCE_CNY.0, BALANCE_CNY.1)
    };
    let cover = rng.uniform(0.6, 1.6);
    let balance_cny = if low { base } else { base + spend_cny * cover };
    let status = if hot {
        AccountStatus::Active
    } else {
        let x = rng.unit();
        if x < FROZEN_SHARE {
            AccountStatus::Frozen
        } else if x < FROZEN_SHARE + CLOSED_SHARE {
            AccountStatus::Closed
        } else {
            AccountStatus::Active
        }
    };
    let daily_spend_cny = spend_cny * per_day;
    let daily_auths = share * demand.requests * demand.authorize_share * per_day;
    let per_txn = rng
        .chance(PER_TXN_LIMIT.0)
        .then(|| PER_TXN_LIMIT.1[rng.below(4) as usize]);
    let daily = rng
        .chance(DAILY_LIMIT.0)
        .then(|| DAILY_LIMIT.1[rng.below(4) as usize])
        .filter(|l| daily_spend_cny < l / 5.0);
    let count = rng
        .chance(DAILY_COUNT_LIMIT.0)
        .then(|| DAILY_COUNT_LIMIT.1[rng.below(3) as usize])
        .filter(|&l| daily_auths < l as f64 / 5.0);
    let tokens = 1 + rng.weighted(&TOKENS_PER_ACCOUNT) as u8;
    let money = |cny: f64| Decimal::new(cny_to_minor(cny, currency), currency.decimals());
    (
        AccountSpec {
            account_id: ACCOUNT_ID_BASE + scramble(i as u64),
            currency,
            balance: money(balance_cny),
            status,
            per_txn_limit: per_txn.map(money),
            daily_limit: daily.map(money),
            daily_count_limit: count,
        },
        tokens,
    )
}

/// One token (global index `t`) of `account_id`.
fn token(
    rng: &mut Rng,
    t: u32,
    account_id: u64,
    keep_active: bool,
    year: u16,
    month: u8,
) -> TokenSpec {
    let x = rng.unit();
    let status = if keep_active {
        TokenStatus::Active
    } else if x < SUSPENDED_SHARE {
        TokenStatus::Suspended
    } else if x < SUSPENDED_SHARE + DEACTIVATED_SHARE {
        TokenStatus::Deactivated
    } else {
        TokenStatus::Active
    };
    let months_ahead: i32 = if !keep_active && rng.chance(EXPIRED_SHARE) {
        -1
    } else {
        12 + rng.below(49) as i32
    };
    let m0 = i32::from(year) * 12 + i32::from(month) - 1 + months_ahead;
    let expiry = Expiry::new((m0 / 12) as u16, (m0 % 12 + 1) as u8).expect("start is 2001..2090");
    TokenSpec {
        token: Dpan::from_u64(TOKEN_BASE + scramble(u64::from(t))).expect("16 digits"),
        account_id,
        status,
        expiry,
    }
}

/// A bijection of `0..10^12` (multiplication by a unit mod 10^12 plus an offset), so ids and
/// tokens look random and never collide.
fn scramble(i: u64) -> u64 {
    const A: u128 = 482_711_977_713; // odd, not a multiple of 5: a unit mod 10^12
    ((u128::from(i) * A + 104_729) % u128::from(SCRAMBLE_SPACE)) as u64
}

/// Minor units of a CNY amount in `currency` at rough rates (1 CNY = 1.09 HKD = 0.14 USD =
/// 21 JPY), rounded, at least 1.
pub fn cny_to_minor(cny: f64, currency: Currency) -> i64 {
    let per_cny = match currency {
        Currency::Cny => 100.0,
        Currency::Hkd => 109.0,
        Currency::Usd => 14.0,
        Currency::Jpy => 21.0,
    };
    ((cny * per_cny).round() as i64).max(1)
}

/// A stride coprime with `n` near `n / golden ratio`, so consecutive ranks land far apart.
fn coprime_stride(n: u64) -> u64 {
    if n == 1 {
        return 0;
    }
    let mut a = ((n as f64) * 0.618_033_988_75).round().max(1.0) as u64;
    while gcd(a, n) != 1 {
        a += 1;
    }
    a
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// The inverse of `a` mod `n` (`a` coprime with `n`), by the extended Euclidean algorithm.
fn mod_inverse(a: u64, n: u64) -> u64 {
    if n == 1 {
        return 0;
    }
    let (mut t, mut new_t) = (0i128, 1i128);
    let (mut r, mut new_r) = (i128::from(n), i128::from(a));
    while new_r != 0 {
        let q = r / new_r;
        (t, new_t) = (new_t, t - q * new_t);
        (r, new_r) = (new_r, r - q * new_r);
    }
    debug_assert_eq!(r, 1, "not coprime");
    t.rem_euclid(i128::from(n)) as u64
}

/// The China-time calendar (year, month) of an instant.
pub fn china_year_month(ts_ns: i64) -> (u16, u8) {
    let days = (ts_ns + CHINA_OFFSET_NS).div_euclid(NS_PER_DAY);
    let (y, m, _) = civil_from_days(days);
    (y as u16, m as u8)
}

/// The proleptic Gregorian (year, month, day) of a day count since 1970-01-01 (Howard
/// Hinnant's algorithm).
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rank_map_is_a_bijection() {
        for n in [1u64, 2, 10, 97, 100, 1000, 4096] {
            let s = coprime_stride(n);
            let inv = mod_inverse(s, n);
            let mut seen = vec![false; n as usize];
            for r in 0..n {
                let i = ((u128::from(r) * u128::from(s)) % u128::from(n)) as u64;
                assert!(!seen[i as usize]);
                seen[i as usize] = true;
                assert_eq!(
                    (u128::from(i) * u128::from(inv)) % u128::from(n),
                    u128::from(r)
                );
            }
        }
    }

    #[test]
    fn ranks_and_accounts_map_both_ways() {
        let demand = Demand {
            requests: 1000.0,
            span_s: 100.0,
            spend_per_request_cny: 100.0,
            authorize_share: 0.5,
        };
        for n in [1, 7, 1000] {
            let pop = Population::generate(n, 1.0, &demand, 1_774_396_800_000_000_000, 3);
            let mut seen = vec![false; n];
            for rank in 0..n as u64 {
                let i = pop.account_of_rank(rank);
                assert!(!seen[i]);
                seen[i] = true;
                assert_eq!(pop.rank_of_account(i), rank);
            }
            assert_eq!(pop.token_start.len(), n + 1);
            assert_eq!(pop.tokens.len(), pop.token_start[n] as usize);
        }
    }

    #[test]
    fn scramble_is_injective_on_a_prefix() {
        let mut v: Vec<u64> = (0..100_000).map(scramble).collect();
        v.sort_unstable();
        v.dedup();
        assert_eq!(v.len(), 100_000);
        assert!(v.iter().all(|&x| x < SCRAMBLE_SPACE));
    }

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_537), (2026, 3, 25));
        // 2025-11-10 16:00 UTC is 2025-11-11 in China.
        assert_eq!(china_year_month(1_762_790_400 * 1_000_000_000), (2025, 11));
    }
}
