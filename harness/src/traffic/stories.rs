//! The traffic model: what a customer's payment looks like from the issuer's side, as a
//! *story* of requests (an authorization and its completions, a top-up, an admin change, a
//! bad request), with the merchant-category amount table, the lifecycle probabilities and the
//! delay distributions. Stories start as a Poisson process in *nominal* time and are generated
//! slice by slice in parallel, one PRNG stream per slice.
//!
//! Rows refer to each other by index (a capture to its authorization, a retransmission to its
//! original); ids are given only once the rows are in their final order.

use payauth_engine::{Currency, Kind};

use super::population::{cny_to_minor, Population};
use super::sample::{Rng, Zipf};

/// One merchant category: its share of card stories and the log-normal amount of its
/// purchases in CNY (median, sigma: the standard deviation of the amount's logarithm).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Mcc {
    /// ISO 18245 merchant category code.
    pub code: u16,
    /// What it is.
    pub name: &'static str,
    /// Relative weight among card stories (the table sums to 100).
    pub weight: f64,
    /// Median purchase, CNY.
    pub median_cny: f64,
    /// Sigma of the log-normal.
    pub sigma: f64,
    /// The lifecycle its purchases follow.
    pub life: Life,
}

/// How a merchant category's authorizations are completed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Life {
    /// Shops: see [`RETAIL_LIFE`].
    Retail,
    /// Fuel: a pre-authorization, then one final capture of the amount actually pumped.
    Fuel,
    /// Hotels and car rental: increments during the stay, then a final capture.
    Stay,
}

/// The merchant categories of card stories, with their amount distributions.
pub const MCCS: [Mcc; 13] = [
    mcc(5411, "supermarkets", 22.0, 85.0, 0.9, Life::Retail),
    mcc(5499, "convenience stores", 16.0, 22.0, 0.7, Life::Retail),
    mcc(5812, "restaurants", 14.0, 110.0, 0.8, Life::Retail),
    mcc(5814, "fast food", 12.0, 32.0, 0.5, Life::Retail),
    mcc(4111, "local transit", 10.0, 4.0, 0.5, Life::Retail),
    mcc(5912, "pharmacies", 5.0, 65.0, 0.8, Life::Retail),
    mcc(5999, "miscellaneous retail", 6.0, 150.0, 1.1, Life::Retail),
    mcc(5311, "department stores", 5.0, 380.0, 1.0, Life::Retail),
    mcc(5732, "electronics", 3.0, 1_800.0, 0.9, Life::Retail),
    mcc(5944, "jewelry", 1.0, 4_200.0, 0.9, Life::Retail),
    mcc(5541, "fuel", 4.0, 300.0, 0.35, Life::Fuel),
    mcc(7011, "hotels", 1.5, 650.0, 0.6, Life::Stay),
    mcc(7512, "car rental", 0.5, 800.0, 0.5, Life::Stay),
];

const fn mcc(
    code: u16,
    name: &'static str,
    weight: f64,
    median: f64,
    sigma: f64,
    life: Life,
) -> Mcc {
    Mcc {
        code,
        name,
        weight,
        median_cny: median,
        sigma,
        life,
    }
}

/// Shares of story kinds: top-ups (credit by account), admin changes, bad requests; the rest
/// are card stories.
pub const CREDIT_SHARE: f64 = 0.07;
/// See [`CREDIT_SHARE`].
pub const ADMIN_SHARE: f64 = 0.002;
/// See [`CREDIT_SHARE`].
pub const BAD_SHARE: f64 = 0.006;
/// Top-up amount, CNY: log-normal (median, sigma).
pub const CREDIT_CNY: (f64, f64) = (1_000.0, 0.7);

/// How a retail authorization ends, with probabilities (they sum to 1).
pub const RETAIL_LIFE: [(Ending, f64); 6] = [
    (Ending::Capture, 0.86),
    (Ending::PartialCapture, 0.02),
    (Ending::Split, 0.03),
    (Ending::TimeoutVoid, 0.035),
    (Ending::MerchantVoid, 0.015),
    (Ending::Expire, 0.04),
];

/// The end of an authorization's life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ending {
    /// One final capture of the whole amount.
    Capture,
    /// One final capture of 50% to 100% of the amount (the rest is released).
    PartialCapture,
    /// 2 or 3 captures that add up to the amount (split shipment); the last is final.
    Split,
    /// A reversal of the whole amount seconds later: the terminal timed out.
    TimeoutVoid,
    /// A reversal of the whole amount minutes later: the purchase was cancelled.
    MerchantVoid,
    /// Nothing: the hold is left to expire.
    Expire,
}

/// Share of captured card stories refunded later, and the share of refunds that give back
/// everything (the others give back 10% to 90%).
pub const REFUND: (f64, f64) = (0.03, 0.6);
/// Hotel and car-rental stays: probability of a second increment (there is always one); an
/// increment adds 10% to 40% of the authorization; the final capture takes 90% to 100%.
pub const STAY_SECOND_INCREMENT: f64 = 0.4;
/// Share of requests retransmitted by the network: an exact copy, a network delay later.
pub const RETRANSMIT_SHARE: f64 = 0.005;

/// A delay: log-normal with this median (seconds) and sigma.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Delay {
    /// Median, seconds.
    pub median_s: f64,
    /// Sigma of the log-normal.
    pub sigma: f64,
}

/// Business delays (compressed in short datasets, see [`DelayScale`]).
pub const CAPTURE_DELAY: Delay = Delay {
    median_s: 20.0 * 60.0,
    sigma: 1.2,
};
/// Between the parts of a split capture.
pub const SPLIT_GAP: Delay = Delay {
    median_s: 6.0 * 3600.0,
    sigma: 1.0,
};
/// From a hotel or car-rental authorization to each increment.
pub const INCREMENT_DELAY: Delay = Delay {
    median_s: 12.0 * 3600.0,
    sigma: 0.8,
};
/// From the last increment to the final capture (check-out).
pub const CHECKOUT_DELAY: Delay = Delay {
    median_s: 24.0 * 3600.0,
    sigma: 0.5,
};
/// From an authorization to a cancellation by the merchant.
pub const MERCHANT_VOID_DELAY: Delay = Delay {
    median_s: 10.0 * 60.0,
    sigma: 1.0,
};
/// From a capture to its refund.
pub const REFUND_DELAY: Delay = Delay {
    median_s: 3.0 * 86_400.0,
    sigma: 0.8,
};
/// From a token suspension or an account freeze to its undoing.
pub const ADMIN_UNDO_DELAY: Delay = Delay {
    median_s: 2.0 * 3600.0,
    sigma: 1.0,
};
/// Network delays (never compressed): terminal time-out to reversal.
pub const TIMEOUT_VOID_DELAY: Delay = Delay {
    median_s: 5.0,
    sigma: 0.6,
};
/// Network delays (never compressed): a retransmission after its original.
pub const RETRANSMIT_DELAY: Delay = Delay {
    median_s: 0.3,
    sigma: 1.2,
};

/// Compression of business delays in datasets too short for them: each business delay's
/// median is capped at `span / SPAN_PER_MEDIAN` (its shape kept), so lifecycles finish inside
/// the file. A dataset spanning 50 times a delay's median sees it uncompressed.
pub const SPAN_PER_MEDIAN: f64 = 50.0;

/// How business delays are compressed for one dataset.
#[derive(Clone, Copy, Debug)]
pub struct DelayScale {
    /// The largest median any business delay keeps, seconds.
    pub median_cap_s: f64,
}

/// Bad requests, with their shares of bad stories.
pub const BAD_KINDS: [(Bad, f64); 6] = [
    (Bad::UnknownToken, 0.3),
    (Bad::MalformedToken, 0.1),
    (Bad::TooManyDecimals, 0.2),
    (Bad::ZeroAmount, 0.1),
    (Bad::ForeignCurrency, 0.1),
    (Bad::UnknownRef, 0.2),
];

/// A kind of bad request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bad {
    /// An authorization with a DPAN the issuer never issued (`14`).
    UnknownToken,
    /// An authorization whose token is not a DPAN at all (`14`).
    MalformedToken,
    /// An authorization with one decimal too many (`13`).
    TooManyDecimals,
    /// An authorization of zero (`13`).
    ZeroAmount,
    /// An authorization in another currency than the account's (`13`).
    ForeignCurrency,
    /// A capture whose ref names no authorization (`25`).
    UnknownRef,
}

/// Token texts of malformed tokens (none is a DPAN).
pub const MALFORMED_TOKENS: [&str; 4] = [
    "62580000",
    "6258-0000-0000-0000",
    "TOKEN",
    "06258000000000000",
];

/// Admin stories: token suspend then resume, account freeze then unfreeze, token deactivate.
pub const ADMIN_KINDS: [(Admin, f64); 3] = [
    (Admin::SuspendResume, 0.6),
    (Admin::FreezeUnfreeze, 0.3),
    (Admin::Deactivate, 0.1),
];

/// A kind of admin story.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admin {
    /// `token_suspend`, later `token_resume`.
    SuspendResume,
    /// `account_freeze`, later `account_unfreeze`.
    FreezeUnfreeze,
    /// `token_deactivate` of the account's last token.
    Deactivate,
}

/// No row: for `NomRow::ref_row`.
pub const NONE: u32 = u32::MAX;

/// What a row's token field holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenMode {
    /// No token (account kinds).
    None,
    /// Token `subject` of the population.
    Issued,
    /// A DPAN nobody issued: `extra`.
    Unknown,
    /// `MALFORMED_TOKENS[extra]`.
    Malformed,
}

/// What a row's amount field holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AmountMode {
    /// Empty.
    None,
    /// `amount_minor` minor units of the row's currency.
    Minor,
    /// `amount_minor * 10 + 5` with one decimal more than the currency has.
    ExtraDecimal,
}

/// One planned row, before it has a real time and ids.
#[derive(Clone, Copy, Debug)]
pub struct NomRow {
    /// Nominal time, ns after the start.
    pub t_ns: i64,
    /// An unknown DPAN, a malformed-token index, or a ref that names nothing.
    pub extra: u64,
    /// The amount in minor units (see `amount`).
    pub amount_minor: i64,
    /// The row whose position gives this row's `request_id`: itself, or the original of a
    /// retransmission.
    pub id_row: u32,
    /// The authorization this row refers to, or [`NONE`].
    pub ref_row: u32,
    /// The token index (token kinds) or account index (account kinds).
    pub subject: u32,
    /// Merchant category code, 0 for none.
    pub mcc: u16,
    /// The kind.
    pub kind: Kind,
    /// The currency field.
    pub currency: Option<Currency>,
    /// The token field.
    pub token: TokenMode,
    /// The amount field.
    pub amount: AmountMode,
    /// `final`.
    pub is_final: bool,
    /// The ref is `extra` (a number that names nothing) rather than `ref_row`.
    pub raw_ref: bool,
}

/// Everything a slice of stories needs to read.
pub struct Model<'a> {
    /// Accounts and tokens.
    pub pop: &'a Population,
    /// Account popularity.
    pub zipf: &'a Zipf,
    /// Business-delay compression.
    pub scale: DelayScale,
}

/// Rows of one slice of nominal time, with local row indexes.
struct Slice<'a> {
    m: &'a Model<'a>,
    rng: Rng,
    rows: Vec<NomRow>,
}

impl<'a> Model<'a> {
    /// The stories that start in `[lo_ns, hi_ns)` at the given start instants, as rows with
    /// indexes local to the returned vector.
    pub fn slice(&self, rng: Rng, starts_ns: &[i64]) -> Vec<NomRow> {
        let mut s = Slice {
            m: self,
            rng,
            rows: Vec::with_capacity(starts_ns.len() * 2 + 16),
        };
        for &t in starts_ns {
            s.story(t);
        }
        s.rows
    }
}

impl Slice<'_> {
    fn business(&mut self, d: Delay) -> i64 {
        let median = d.median_s.min(self.m.scale.median_cap_s);
        let s = self.rng.log_normal(median, d.sigma).min(100.0 * median);
        ((s * 1e9) as i64).max(1)
    }

    fn network(&mut self, d: Delay, lo_s: f64, hi_s: f64) -> i64 {
        let s = self.rng.log_normal(d.median_s, d.sigma).clamp(lo_s, hi_s);
        ((s * 1e9) as i64).max(1)
    }

    /// Append a row (and, now and then, its retransmission); returns its index.
    fn push(&mut self, mut row: NomRow) -> u32 {
        let i = self.rows.len() as u32;
        row.id_row = i;
        self.rows.push(row);
        if self.rng.chance(RETRANSMIT_SHARE) {
            let mut copy = row;
            copy.t_ns = row.t_ns + self.network(RETRANSMIT_DELAY, 0.001, 30.0);
            self.rows.push(copy);
        }
        i
    }

    /// A card row on token `token` of an account with `currency`.
    fn card(t_ns: i64, kind: Kind, token: u32, currency: Currency) -> NomRow {
        NomRow {
            t_ns,
            extra: 0,
            amount_minor: 0,
            id_row: NONE,
            ref_row: NONE,
            subject: token,
            mcc: 0,
            kind,
            currency: Some(currency),
            token: TokenMode::Issued,
            amount: AmountMode::None,
            is_final: false,
            raw_ref: false,
        }
    }

    fn with_amount(mut row: NomRow, minor: i64) -> NomRow {
        row.amount = AmountMode::Minor;
        row.amount_minor = minor;
        row
    }

    fn follow(t_ns: i64, kind: Kind, token: u32, currency: Currency, auth: u32) -> NomRow {
        let mut row = Self::card(t_ns, kind, token, currency);
        row.ref_row = auth;
        row
    }

    /// The paying account (Zipf) and the token it pays with: the first 75% of the time.
    fn payer(&mut self) -> (usize, u32, Currency) {
        let pop = self.m.pop;
        let rank = self.m.zipf.sample(&mut self.rng) - 1;
        let account = pop.account_of_rank(rank);
        let (lo, count) = pop.tokens_of(account);
        let token = if count == 1 || self.rng.chance(0.75) {
            lo
        } else {
            lo + 1 + self.rng.below(u64::from(count - 1)) as u32
        };
        (account, token, pop.accounts[account].currency)
    }

    fn story(&mut self, t0: i64) {
        let x = self.rng.unit();
        if x < CREDIT_SHARE {
            self.credit(t0);
        } else if x < CREDIT_SHARE + ADMIN_SHARE {
            self.admin(t0);
        } else if x < CREDIT_SHARE + ADMIN_SHARE + BAD_SHARE {
            self.bad(t0);
        } else {
            self.purchase(t0);
        }
    }

    fn credit(&mut self, t0: i64) {
        let (account, _, currency) = self.payer();
        let cny = self.rng.log_normal(CREDIT_CNY.0, CREDIT_CNY.1);
        let mut row = Self::card(t0, Kind::Credit, account as u32, currency);
        row.token = TokenMode::None;
        self.push(Self::with_amount(row, cny_to_minor(cny, currency)));
    }

    fn admin(&mut self, t0: i64) {
        // Admin changes land on ordinary accounts (uniform, not the hottest 1%): an issuer
        // does not freeze its busiest customers in a benchmark.
        let pop = self.m.pop;
        let n = pop.accounts.len() as u64;
        let hot = n / 100;
        let account = pop.account_of_rank(hot + self.rng.below(n - hot));
        let (lo, count) = pop.tokens_of(account);
        let currency = pop.accounts[account].currency;
        let weights = ADMIN_KINDS.map(|(_, w)| w);
        let account_row = |t, kind| {
            let mut row = Self::card(t, kind, account as u32, currency);
            row.token = TokenMode::None;
            row.currency = None;
            row
        };
        let token_row = |t, kind, token| {
            let mut row = Self::card(t, kind, token, currency);
            row.currency = None;
            row
        };
        match ADMIN_KINDS[self.rng.weighted(&weights)].0 {
            Admin::SuspendResume => {
                let token = lo + self.rng.below(u64::from(count)) as u32;
                self.push(token_row(t0, Kind::TokenSuspend, token));
                let t1 = t0 + self.business(ADMIN_UNDO_DELAY);
                self.push(token_row(t1, Kind::TokenResume, token));
            }
            Admin::FreezeUnfreeze => {
                self.push(account_row(t0, Kind::AccountFreeze));
                let t1 = t0 + self.business(ADMIN_UNDO_DELAY);
                self.push(account_row(t1, Kind::AccountUnfreeze));
            }
            Admin::Deactivate => {
                self.push(token_row(t0, Kind::TokenDeactivate, lo + count - 1));
            }
        }
    }

    fn bad(&mut self, t0: i64) {
        let (_, token, currency) = self.payer();
        let mcc = self.pick_mcc();
        let minor = cny_to_minor(self.rng.log_normal(mcc.median_cny, mcc.sigma), currency);
        let mut row = Self::with_amount(Self::card(t0, Kind::Authorize, token, currency), minor);
        row.mcc = mcc.code;
        let weights = BAD_KINDS.map(|(_, w)| w);
        match BAD_KINDS[self.rng.weighted(&weights)].0 {
            Bad::UnknownToken => {
                row.token = TokenMode::Unknown;
                row.extra = 4_000_000_000_000_000 + self.rng.below(1_000_000_000_000_000);
            }
            Bad::MalformedToken => {
                row.token = TokenMode::Malformed;
                row.extra = self.rng.below(MALFORMED_TOKENS.len() as u64);
            }
            Bad::TooManyDecimals => row.amount = AmountMode::ExtraDecimal,
            Bad::ZeroAmount => row.amount_minor = 0,
            Bad::ForeignCurrency => {
                row.currency = Some(match currency {
                    Currency::Usd => Currency::Cny,
                    _ => Currency::Usd,
                });
            }
            Bad::UnknownRef => {
                row.kind = Kind::Capture;
                row.mcc = 0;
                row.raw_ref = true;
                row.is_final = true;
                row.extra = 900_000_000_000_000 + self.rng.below(1_000_000_000_000);
            }
        }
        self.push(row);
    }

    fn pick_mcc(&mut self) -> Mcc {
        let weights = MCCS.map(|m| m.weight);
        MCCS[self.rng.weighted(&weights)]
    }

    fn purchase(&mut self, t0: i64) {
        let (_, token, currency) = self.payer();
        let mcc = self.pick_mcc();
        let cny = self
            .rng
            .log_normal(mcc.median_cny, mcc.sigma)
            .min(10_000_000.0);
        let amount = cny_to_minor(cny, currency);
        let mut auth = Self::with_amount(Self::card(t0, Kind::Authorize, token, currency), amount);
        auth.mcc = mcc.code;
        let a = self.push(auth);
        let capture = |t, minor, fin| {
            let mut row =
                Self::with_amount(Self::follow(t, Kind::Capture, token, currency, a), minor);
            row.is_final = fin;
            row
        };
        // (when the last capture happened, how much was captured)
        let captured: Option<(i64, i64)> = match mcc.life {
            Life::Fuel => {
                let t = t0 + self.business(CAPTURE_DELAY);
                let part = ((amount as f64 * self.rng.uniform(0.3, 1.0)).round() as i64).max(1);
                self.push(capture(t, part, true));
                Some((t, part))
            }
            Life::Stay => {
                let mut total = amount;
                let mut t = t0;
                let increments = 1 + usize::from(self.rng.chance(STAY_SECOND_INCREMENT));
                for _ in 0..increments {
                    t += self.business(INCREMENT_DELAY);
                    let add = ((amount as f64 * self.rng.uniform(0.1, 0.4)).round() as i64).max(1);
                    let inc = Self::with_amount(
                        Self::follow(t, Kind::Increment, token, currency, a),
                        add,
                    );
                    self.push(inc);
                    total += add;
                }
                t += self.business(CHECKOUT_DELAY);
                let take =
                    ((total as f64 * self.rng.uniform(0.9, 1.0)).round() as i64).clamp(1, total);
                self.push(capture(t, take, true));
                Some((t, take))
            }
            Life::Retail => {
                let weights = RETAIL_LIFE.map(|(_, w)| w);
                match RETAIL_LIFE[self.rng.weighted(&weights)].0 {
                    Ending::Capture => {
                        let t = t0 + self.business(CAPTURE_DELAY);
                        self.push(capture(t, amount, true));
                        Some((t, amount))
                    }
                    Ending::PartialCapture => {
                        let t = t0 + self.business(CAPTURE_DELAY);
                        let part =
                            ((amount as f64 * self.rng.uniform(0.5, 1.0)).round() as i64).max(1);
                        self.push(capture(t, part, true));
                        Some((t, part))
                    }
                    Ending::Split => {
                        let parts = (2 + self.rng.below(2) as i64).min(amount);
                        let mut t = t0 + self.business(CAPTURE_DELAY);
                        let mut left = amount;
                        for p in 0..parts {
                            let last = p == parts - 1;
                            let share = if last {
                                left
                            } else {
                                let max = left - (parts - 1 - p);
                                let even = left / (parts - p);
                                ((even as f64 * self.rng.uniform(0.6, 1.4)).round() as i64)
                                    .clamp(1, max)
                            };
                            self.push(capture(t, share, last));
                            left -= share;
                            if !last {
                                t += self.business(SPLIT_GAP);
                            }
                        }
                        Some((t, amount))
                    }
                    Ending::TimeoutVoid => {
                        let t = t0 + self.network(TIMEOUT_VOID_DELAY, 1.0, 60.0);
                        let mut void = Self::follow(t, Kind::Void, token, currency, a);
                        void.currency = None;
                        self.push(void);
                        None
                    }
                    Ending::MerchantVoid => {
                        let t = t0 + self.business(MERCHANT_VOID_DELAY);
                        let mut void = Self::follow(t, Kind::Void, token, currency, a);
                        void.currency = None;
                        self.push(void);
                        None
                    }
                    Ending::Expire => None,
                }
            }
        };
        if let Some((t, captured)) = captured {
            if mcc.life != Life::Fuel && self.rng.chance(REFUND.0) {
                let back = if self.rng.chance(REFUND.1) {
                    captured
                } else {
                    ((captured as f64 * self.rng.uniform(0.1, 0.9)).round() as i64)
                        .clamp(1, captured)
                };
                let t = t + self.business(REFUND_DELAY);
                self.push(Self::with_amount(
                    Self::follow(t, Kind::Refund, token, currency, a),
                    back,
                ));
            }
        }
    }
}

/// Expected requests of each kind per story (in `Kind::ALL` order), retransmissions included:
/// the mix the generator aims at once lifecycles are in full flow (the first and last
/// stretches of a file are short of completions).
pub fn expected_rows_per_story() -> [f64; 12] {
    let mut per = [0.0f64; 12];
    let idx = |k: Kind| Kind::ALL.iter().position(|x| *x == k).expect("kind");
    let card = 1.0 - CREDIT_SHARE - ADMIN_SHARE - BAD_SHARE;
    let total_w: f64 = MCCS.iter().map(|m| m.weight).sum();
    for m in &MCCS {
        let p = card * m.weight / total_w;
        per[idx(Kind::Authorize)] += p;
        let captured = match m.life {
            Life::Fuel => {
                per[idx(Kind::Capture)] += p;
                0.0
            }
            Life::Stay => {
                per[idx(Kind::Increment)] += p * (1.0 + STAY_SECOND_INCREMENT);
                per[idx(Kind::Capture)] += p;
                p
            }
            Life::Retail => {
                let mut captured = 0.0;
                for (ending, w) in RETAIL_LIFE {
                    let q = p * w;
                    match ending {
                        Ending::Capture | Ending::PartialCapture => {
                            per[idx(Kind::Capture)] += q;
                            captured += q;
                        }
                        Ending::Split => {
                            per[idx(Kind::Capture)] += q * 2.5;
                            captured += q;
                        }
                        Ending::TimeoutVoid | Ending::MerchantVoid => per[idx(Kind::Void)] += q,
                        Ending::Expire => {}
                    }
                }
                captured
            }
        };
        per[idx(Kind::Refund)] += captured * REFUND.0;
    }
    per[idx(Kind::Credit)] += CREDIT_SHARE;
    for (admin, w) in ADMIN_KINDS {
        let q = ADMIN_SHARE * w;
        match admin {
            Admin::SuspendResume => {
                per[idx(Kind::TokenSuspend)] += q;
                per[idx(Kind::TokenResume)] += q;
            }
            Admin::FreezeUnfreeze => {
                per[idx(Kind::AccountFreeze)] += q;
                per[idx(Kind::AccountUnfreeze)] += q;
            }
            Admin::Deactivate => per[idx(Kind::TokenDeactivate)] += q,
        }
    }
    for (bad, w) in BAD_KINDS {
        let k = if bad == Bad::UnknownRef {
            Kind::Capture
        } else {
            Kind::Authorize
        };
        per[idx(k)] += BAD_SHARE * w;
    }
    per.map(|x| x * (1.0 + RETRANSMIT_SHARE))
}

/// Expected requests per story, retransmissions included.
pub fn rows_per_story() -> f64 {
    expected_rows_per_story().iter().sum()
}

/// Expected share of each kind among requests (in `Kind::ALL` order).
pub fn expected_kind_shares() -> [f64; 12] {
    let total = rows_per_story();
    expected_rows_per_story().map(|x| x / total)
}

/// Rough expected card spend per request, CNY: the mean authorization (the log-normal mean
/// `median * exp(sigma^2 / 2)`) of card stories, per request. Sizes balances.
pub fn spend_per_request_cny() -> f64 {
    let card = 1.0 - CREDIT_SHARE - ADMIN_SHARE - BAD_SHARE;
    let total_w: f64 = MCCS.iter().map(|m| m.weight).sum();
    let mean: f64 = MCCS
        .iter()
        .map(|m| m.weight / total_w * m.median_cny * (m.sigma * m.sigma / 2.0).exp())
        .sum();
    card * mean / rows_per_story()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_are_normalized() {
        let w: f64 = MCCS.iter().map(|m| m.weight).sum();
        assert!((w - 100.0).abs() < 1e-9);
        let life: f64 = RETAIL_LIFE.iter().map(|(_, p)| p).sum();
        assert!((life - 1.0).abs() < 1e-12);
        let bad: f64 = BAD_KINDS.iter().map(|(_, p)| p).sum();
        assert!((bad - 1.0).abs() < 1e-12);
        let shares: f64 = expected_kind_shares().iter().sum();
        assert!((shares - 1.0).abs() < 1e-12);
        for t in MALFORMED_TOKENS {
            assert!(t.parse::<payauth_engine::Dpan>().is_err(), "{t}");
        }
    }
}
