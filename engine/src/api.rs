//! The host boundary: request, decision and state types, and the Decimal <-> minor-unit
//! conversions. This is the only module of the engine where `rust_decimal::Decimal` lives.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;

use rust_decimal::Decimal;

/// Nanoseconds in one second.
pub const NS_PER_SEC: i64 = 1_000_000_000;
/// China time is UTC+8, all year.
pub const CHINA_OFFSET_NS: i64 = 8 * 3600 * NS_PER_SEC;
/// Nanoseconds in one day.
pub const NS_PER_DAY: i64 = 86_400 * NS_PER_SEC;
/// The largest amount a request may carry, in major units (DOMAIN.md).
pub const AMOUNT_MAJOR_MAX: i64 = 1_000_000_000;

/// The kind of a request: the card messages of ISO 8583 plus top-up and admin.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// 0100 authorization: opens a hold.
    Authorize,
    /// 0100 incremental authorization: grows an open hold.
    Increment,
    /// 0220 completion: posts (part of) a hold.
    Capture,
    /// 0400 reversal: releases (part of) an open hold.
    Void,
    /// 0200 processing code 20: gives captured money back.
    Refund,
    /// Top-up of an account balance.
    Credit,
    /// Token lifecycle: active -> suspended.
    TokenSuspend,
    /// Token lifecycle: suspended -> active.
    TokenResume,
    /// Token lifecycle: -> deactivated (final).
    TokenDeactivate,
    /// Account admin: active -> frozen.
    AccountFreeze,
    /// Account admin: frozen -> active.
    AccountUnfreeze,
    /// Account admin: -> closed (final); deactivates the account's tokens.
    AccountClose,
}

impl Kind {
    /// Every kind, in the order DOMAIN.md lists them.
    pub const ALL: [Kind; 12] = [
        Kind::Authorize,
        Kind::Increment,
        Kind::Capture,
        Kind::Void,
        Kind::Refund,
        Kind::Credit,
        Kind::TokenSuspend,
        Kind::TokenResume,
        Kind::TokenDeactivate,
        Kind::AccountFreeze,
        Kind::AccountUnfreeze,
        Kind::AccountClose,
    ];

    /// The word used in traffic.csv.
    pub const fn as_str(self) -> &'static str {
        match self {
            Kind::Authorize => "authorize",
            Kind::Increment => "increment",
            Kind::Capture => "capture",
            Kind::Void => "void",
            Kind::Refund => "refund",
            Kind::Credit => "credit",
            Kind::TokenSuspend => "token_suspend",
            Kind::TokenResume => "token_resume",
            Kind::TokenDeactivate => "token_deactivate",
            Kind::AccountFreeze => "account_freeze",
            Kind::AccountUnfreeze => "account_unfreeze",
            Kind::AccountClose => "account_close",
        }
    }

    /// True for the kinds addressed by `token`; the others are addressed by `account_id`.
    pub const fn addressed_by_token(self) -> bool {
        !matches!(
            self,
            Kind::Credit | Kind::AccountFreeze | Kind::AccountUnfreeze | Kind::AccountClose
        )
    }

    /// True for the kinds that refer to a hold through `ref`.
    pub const fn uses_ref(self) -> bool {
        matches!(
            self,
            Kind::Increment | Kind::Capture | Kind::Void | Kind::Refund
        )
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Kind {
    type Err = ParseWordError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Kind::ALL
            .iter()
            .copied()
            .find(|k| k.as_str() == s)
            .ok_or(ParseWordError { expected: "kind" })
    }
}

/// A word that is not one of the listed ones (kind, status, currency).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParseWordError {
    /// What was being parsed.
    pub expected: &'static str,
}

impl fmt::Display for ParseWordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "not a valid {}", self.expected)
    }
}

impl std::error::Error for ParseWordError {}

/// An ISO 4217 currency the engine accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Currency {
    /// Chinese yuan, 2 decimals.
    Cny,
    /// Hong Kong dollar, 2 decimals.
    Hkd,
    /// Japanese yen, 0 decimals.
    Jpy,
    /// US dollar, 2 decimals.
    Usd,
}

impl Currency {
    /// Every accepted currency.
    pub const ALL: [Currency; 4] = [Currency::Cny, Currency::Hkd, Currency::Jpy, Currency::Usd];

    /// ISO 4217 alphabetic code.
    pub const fn as_str(self) -> &'static str {
        match self {
            Currency::Cny => "CNY",
            Currency::Hkd => "HKD",
            Currency::Jpy => "JPY",
            Currency::Usd => "USD",
        }
    }

    /// Number of decimals of the minor unit.
    pub const fn decimals(self) -> u32 {
        match self {
            Currency::Jpy => 0,
            _ => 2,
        }
    }

    /// The largest amount a request may carry, in minor units.
    pub const fn amount_minor_max(self) -> i64 {
        AMOUNT_MAJOR_MAX * 10i64.pow(self.decimals())
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Currency {
    type Err = ParseWordError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Currency::ALL
            .iter()
            .copied()
            .find(|c| c.as_str() == s)
            .ok_or(ParseWordError {
                expected: "currency",
            })
    }
}

/// Status of an account.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AccountStatus {
    /// Normal.
    Active,
    /// Refuses new authorizations (`62`); completions still post.
    Frozen,
    /// Final: refuses authorizations (`78`) and credits (`78`).
    Closed,
}

impl AccountStatus {
    /// The word used in accounts.csv.
    pub const fn as_str(self) -> &'static str {
        match self {
            AccountStatus::Active => "active",
            AccountStatus::Frozen => "frozen",
            AccountStatus::Closed => "closed",
        }
    }
}

impl FromStr for AccountStatus {
    type Err = ParseWordError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "active" => Ok(AccountStatus::Active),
            "frozen" => Ok(AccountStatus::Frozen),
            "closed" => Ok(AccountStatus::Closed),
            _ => Err(ParseWordError {
                expected: "account status",
            }),
        }
    }
}

/// Status of a token.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TokenStatus {
    /// Normal.
    Active,
    /// Refuses authorizations (`62`).
    Suspended,
    /// Final: unknown (`14`) to authorizations and token admin.
    Deactivated,
}

impl TokenStatus {
    /// The word used in tokens.csv.
    pub const fn as_str(self) -> &'static str {
        match self {
            TokenStatus::Active => "active",
            TokenStatus::Suspended => "suspended",
            TokenStatus::Deactivated => "deactivated",
        }
    }
}

impl FromStr for TokenStatus {
    type Err = ParseWordError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "active" => Ok(TokenStatus::Active),
            "suspended" => Ok(TokenStatus::Suspended),
            "deactivated" => Ok(TokenStatus::Deactivated),
            _ => Err(ParseWordError {
                expected: "token status",
            }),
        }
    }
}

/// A device PAN (token): 13 to 19 ASCII digits, first digit not 0.
///
/// Such a string is uniquely determined by its numeric value (no leading zeros, at most 19
/// digits, so it fits in a `u64`), so comparing values compares digit for digit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Dpan(u64);

impl Dpan {
    /// The smallest valid token value (13 digits).
    pub const MIN: u64 = 1_000_000_000_000;
    /// The largest valid token value (19 digits).
    pub const MAX: u64 = 9_999_999_999_999_999_999;

    /// The token with this numeric value, if it has 13 to 19 digits.
    pub const fn from_u64(value: u64) -> Option<Dpan> {
        if value >= Self::MIN && value <= Self::MAX {
            Some(Dpan(value))
        } else {
            None
        }
    }

    /// The numeric value of the digits.
    pub const fn get(self) -> u64 {
        self.0
    }
}

impl FromStr for Dpan {
    type Err = ParseWordError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = ParseWordError {
            expected: "token (13 to 19 digits, first not 0)",
        };
        let b = s.as_bytes();
        if !(13..=19).contains(&b.len()) || b[0] == b'0' || !b.iter().all(u8::is_ascii_digit) {
            return Err(bad);
        }
        // 19 digits always fit in u64 (max 9_999_999_999_999_999_999 < 2^64).
        s.parse::<u64>().map(Dpan).map_err(|_| bad)
    }
}

impl fmt::Display for Dpan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The `token` field of a request as it arrived.
///
/// A traffic row may carry anything in `token`: a valid DPAN, nothing, or text that is not a
/// DPAN (which names no token and answers `14` where the kind uses a token). The field still
/// takes part in the duplicate comparison for kinds that ignore it, so text that is not a DPAN
/// is kept as a 64-bit fingerprint of its bytes (see [`TokenField::from_text`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum TokenField {
    /// Empty field.
    #[default]
    Empty,
    /// A token in the DPAN grammar.
    Dpan(Dpan),
    /// Text outside the DPAN grammar, by fingerprint; it names no token.
    Other(u64),
}

impl TokenField {
    /// Classify a raw field: empty, a DPAN, or other text.
    pub fn from_text(text: &str) -> TokenField {
        if text.is_empty() {
            return TokenField::Empty;
        }
        match text.parse::<Dpan>() {
            Ok(d) => TokenField::Dpan(d),
            Err(_) => {
                // SipHash with the fixed keys of `DefaultHasher::new()`: stable across runs.
                #[allow(deprecated)]
                let mut h = std::hash::SipHasher::new();
                text.hash(&mut h);
                TokenField::Other(h.finish())
            }
        }
    }
}

impl From<Dpan> for TokenField {
    fn from(d: Dpan) -> Self {
        TokenField::Dpan(d)
    }
}

/// ISO 8583 field 39 response codes the engine answers with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Code {
    /// `00` approved.
    Approved = 0,
    /// `12` invalid transaction (state does not allow it; ref names a declined authorization).
    InvalidTransaction = 12,
    /// `13` invalid amount (or currency).
    InvalidAmount = 13,
    /// `14` invalid card number (unknown or deactivated token).
    InvalidCard = 14,
    /// `22` suspected malfunction (the hold is not open).
    HoldNotOpen = 22,
    /// `25` unable to locate record (ref names no hold).
    NoRecord = 25,
    /// `51` not sufficient funds.
    InsufficientFunds = 51,
    /// `54` expired card.
    ExpiredCard = 54,
    /// `61` exceeds amount limit.
    AmountLimit = 61,
    /// `62` restricted card (token suspended, account frozen).
    Restricted = 62,
    /// `65` exceeds frequency limit.
    CountLimit = 65,
    /// `78` no account / account closed.
    NoAccount = 78,
    /// `94` duplicate transmission.
    Duplicate = 94,
}

impl Code {
    /// Every code, ascending.
    pub const ALL: [Code; 13] = [
        Code::Approved,
        Code::InvalidTransaction,
        Code::InvalidAmount,
        Code::InvalidCard,
        Code::HoldNotOpen,
        Code::NoRecord,
        Code::InsufficientFunds,
        Code::ExpiredCard,
        Code::AmountLimit,
        Code::Restricted,
        Code::CountLimit,
        Code::NoAccount,
        Code::Duplicate,
    ];

    /// The two digits of field 39.
    pub const fn as_str(self) -> &'static str {
        match self {
            Code::Approved => "00",
            Code::InvalidTransaction => "12",
            Code::InvalidAmount => "13",
            Code::InvalidCard => "14",
            Code::HoldNotOpen => "22",
            Code::NoRecord => "25",
            Code::InsufficientFunds => "51",
            Code::ExpiredCard => "54",
            Code::AmountLimit => "61",
            Code::Restricted => "62",
            Code::CountLimit => "65",
            Code::NoAccount => "78",
            Code::Duplicate => "94",
        }
    }

    /// True only for `00`.
    pub const fn is_approved(self) -> bool {
        matches!(self, Code::Approved)
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Code {
    type Err = ParseWordError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Code::ALL
            .iter()
            .copied()
            .find(|c| c.as_str() == s)
            .ok_or(ParseWordError { expected: "code" })
    }
}

/// One request, as a host submits it. Fields a kind does not use may be left empty; they
/// still take part in the duplicate comparison (DOMAIN.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Request {
    /// Host-chosen id; with the account it keys duplicates and holds.
    pub request_id: u64,
    /// When the request happened, ns since the Unix epoch (UTC). The engine's only clock.
    pub ts_ns: i64,
    /// What is asked.
    pub kind: Kind,
    /// The DPAN for card messages and token admin.
    pub token: TokenField,
    /// The account for `credit` and account admin.
    pub account_id: Option<u64>,
    /// Amount in major units of the account currency (`12.34` CNY).
    pub amount: Option<Decimal>,
    /// Currency of `amount`.
    pub currency: Option<Currency>,
    /// Merchant category code.
    pub mcc: Option<u64>,
    /// `request_id` of the authorization a completion refers to.
    pub reference: Option<u64>,
    /// For `capture`: release what remains of the hold.
    pub is_final: bool,
}

impl Request {
    /// A request with every optional field empty.
    pub const fn new(kind: Kind, request_id: u64, ts_ns: i64) -> Request {
        Request {
            request_id,
            ts_ns,
            kind,
            token: TokenField::Empty,
            account_id: None,
            amount: None,
            currency: None,
            mcc: None,
            reference: None,
            is_final: false,
        }
    }

    /// Set `token`.
    pub fn with_token(mut self, token: impl Into<TokenField>) -> Request {
        self.token = token.into();
        self
    }

    /// Set `account_id`.
    pub fn with_account(mut self, account_id: u64) -> Request {
        self.account_id = Some(account_id);
        self
    }

    /// Set `amount` and `currency`.
    pub fn with_amount(mut self, amount: Decimal, currency: Currency) -> Request {
        self.amount = Some(amount);
        self.currency = Some(currency);
        self
    }

    /// Set `mcc`.
    pub fn with_mcc(mut self, mcc: u64) -> Request {
        self.mcc = Some(mcc);
        self
    }

    /// Set `ref`.
    pub fn with_ref(mut self, reference: u64) -> Request {
        self.reference = Some(reference);
        self
    }

    /// Set `final`.
    pub fn with_final(mut self, is_final: bool) -> Request {
        self.is_final = is_final;
        self
    }
}

/// The answer to one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Decision {
    /// The request's id, echoed.
    pub request_id: u64,
    /// ISO 8583 field 39.
    pub code: Code,
}

/// An account as loaded into the engine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccountSpec {
    /// Alipay balance account id.
    pub account_id: u64,
    /// The account's currency.
    pub currency: Currency,
    /// Ledger balance, major units; may be negative.
    pub balance: Decimal,
    /// Status at load.
    pub status: AccountStatus,
    /// Largest single authorization (and hold after increments).
    pub per_txn_limit: Option<Decimal>,
    /// Largest approved amount per China-time day.
    pub daily_limit: Option<Decimal>,
    /// Largest number of approved authorizations per China-time day.
    pub daily_count_limit: Option<u64>,
}

/// A token expiry month (`YYMM`, year 20YY), valid through the month's last day, China time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Expiry {
    year: u16,
    month: u8,
}

impl Expiry {
    /// Expiry for year 2000..=2099 and month 1..=12.
    pub fn new(year: u16, month: u8) -> Option<Expiry> {
        ((2000..=2099).contains(&year) && (1..=12).contains(&month))
            .then_some(Expiry { year, month })
    }

    /// The year, 2000..=2099.
    pub const fn year(self) -> u16 {
        self.year
    }

    /// The month, 1..=12.
    pub const fn month(self) -> u8 {
        self.month
    }

    /// The first instant (ns since the epoch) at which the token is expired: midnight China
    /// time at the start of the following month.
    pub fn expired_from_ns(self) -> i64 {
        let (y, m) = if self.month == 12 {
            (i64::from(self.year) + 1, 1)
        } else {
            (i64::from(self.year), i64::from(self.month) + 1)
        };
        days_from_civil(y, m, 1) * NS_PER_DAY - CHINA_OFFSET_NS
    }
}

impl FromStr for Expiry {
    type Err = ParseWordError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = ParseWordError {
            expected: "expiry (YYMM)",
        };
        let b = s.as_bytes();
        if b.len() != 4 || !b.iter().all(u8::is_ascii_digit) {
            return Err(bad);
        }
        let yy = u16::from(b[0] - b'0') * 10 + u16::from(b[1] - b'0');
        let mm = (b[2] - b'0') * 10 + (b[3] - b'0');
        Expiry::new(2000 + yy, mm).ok_or(bad)
    }
}

impl fmt::Display for Expiry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}{:02}", self.year % 100, self.month)
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The China-time calendar day of an instant, as days since 1970-01-01.
pub fn china_day(ts_ns: i64) -> i64 {
    // i64 ns covers ±292 years; adding 8 h cannot overflow for any ts a caller can hold
    // except within 8 h of i64::MAX, so saturate there.
    ts_ns.saturating_add(CHINA_OFFSET_NS).div_euclid(NS_PER_DAY)
}

/// A token as loaded into the engine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenSpec {
    /// The DPAN.
    pub token: Dpan,
    /// The account it pays from.
    pub account_id: u64,
    /// Status at load.
    pub status: TokenStatus,
    /// Expiry month.
    pub expiry: Expiry,
}

/// State of a hold, as exported.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HoldStatus {
    /// Counts in `held`.
    Open,
    /// Captured in full, finally captured, or voided in full.
    Closed,
    /// Ran past `expires_at` while open.
    Expired,
}

impl HoldStatus {
    /// Lower-case word.
    pub const fn as_str(self) -> &'static str {
        match self {
            HoldStatus::Open => "open",
            HoldStatus::Closed => "closed",
            HoldStatus::Expired => "expired",
        }
    }
}

/// One account's state, as exported.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccountState {
    /// The account.
    pub account_id: u64,
    /// Its currency.
    pub currency: Currency,
    /// Ledger balance.
    pub balance: Decimal,
    /// Sum of open holds' remaining amounts.
    pub held: Decimal,
    /// `balance - held`.
    pub available: Decimal,
    /// Status.
    pub status: AccountStatus,
}

/// One hold's state, as exported.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HoldState {
    /// The account holding.
    pub account_id: u64,
    /// The authorization's `request_id`.
    pub request_id: u64,
    /// Authorized so far (authorization plus increments).
    pub authorized: Decimal,
    /// Captured so far.
    pub captured: Decimal,
    /// Voided so far.
    pub voided: Decimal,
    /// Refunded so far.
    pub refunded: Decimal,
    /// When an open hold expires.
    pub expires_at_ns: i64,
    /// Open, closed or expired.
    pub status: HoldStatus,
}

/// One token's state, as exported.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenState {
    /// The DPAN.
    pub token: Dpan,
    /// The account.
    pub account_id: u64,
    /// Status.
    pub status: TokenStatus,
}

/// The engine's whole state at one instant, sorted by account id (then request id).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StateExport {
    /// Every account, by `account_id`.
    pub accounts: Vec<AccountState>,
    /// Every hold still referable, by (`account_id`, `request_id`).
    pub holds: Vec<HoldState>,
    /// Every token, by `token`.
    pub tokens: Vec<TokenState>,
}

// ---------------------------------------------------------------------------------------------
// Decimal <-> minor units
// ---------------------------------------------------------------------------------------------

/// An amount as a normalized exact number: `mantissa * 10^-scale`, trailing zeros stripped,
/// so equal numbers have equal keys (`12.340` and `12.34`). Used for the duplicate comparison
/// and converted to minor units once the account's currency is known.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct AmountKey {
    mantissa: i128,
    scale: u32,
}

impl AmountKey {
    /// Exact normalized form of a decimal: trailing zeros of the fraction stripped.
    pub fn from_decimal(d: Decimal) -> AmountKey {
        let mut scale = d.scale();
        let mantissa = d.mantissa();
        if mantissa == 0 {
            return AmountKey {
                mantissa: 0,
                scale: 0,
            };
        }
        // Most amounts fit in 64 bits, where the divisions are cheap.
        if let Ok(mut m) = i64::try_from(mantissa) {
            while scale > 0 && m % 10 == 0 {
                m /= 10;
                scale -= 1;
            }
            return AmountKey {
                mantissa: i128::from(m),
                scale,
            };
        }
        let mut m = mantissa;
        while scale > 0 && m % 10 == 0 {
            m /= 10;
            scale -= 1;
        }
        AmountKey { mantissa: m, scale }
    }

    /// The key of normalized `(mantissa, scale)` parts, as [`AmountKey::parts`] gives them.
    pub(crate) fn from_normalized_parts(mantissa: i128, scale: u32) -> AmountKey {
        AmountKey { mantissa, scale }
    }

    /// The normalized `(mantissa, scale)`.
    pub fn parts(self) -> (i128, u32) {
        (self.mantissa, self.scale)
    }

    /// The amount in minor units of a currency with `decimals` decimals, if it is a valid
    /// request amount there: positive, no more decimals than the currency has, and at most
    /// [`AMOUNT_MAJOR_MAX`] major units.
    pub fn valid_minor(self, currency: Currency) -> Option<i64> {
        let decimals = currency.decimals();
        if self.mantissa <= 0 || self.scale > decimals {
            return None;
        }
        // A currency has at most 2 decimals, so the factor is 1, 10 or 100; a mantissa
        // beyond i64, or a product that overflows, is far over the maximum anyway.
        let factor = 10i64.pow(decimals - self.scale);
        let minor = i64::try_from(self.mantissa).ok()?.checked_mul(factor)?;
        (minor <= currency.amount_minor_max()).then_some(minor)
    }
}

/// Minor units of `amount` in `currency`, exactly, if it has no more decimals than the
/// currency and fits in `i64` (balances and limits; may be negative).
pub fn to_minor(amount: Decimal, currency: Currency) -> Option<i64> {
    let n = amount.normalize();
    let decimals = currency.decimals();
    if n.scale() > decimals {
        return None;
    }
    let factor = 10i128.checked_pow(decimals - n.scale())?;
    i64::try_from(n.mantissa().checked_mul(factor)?).ok()
}

/// The decimal of `minor` units of `currency`, with exactly the currency's decimals (so it
/// prints as `12.30`, `0.00`, `-5.01`, or `7` for JPY).
pub fn from_minor(minor: i64, currency: Currency) -> Decimal {
    Decimal::new(minor, currency.decimals())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Decimal {
        Decimal::from_str_exact(s).unwrap()
    }

    #[test]
    fn amount_key_ignores_trailing_zeros_and_checks_decimals() {
        assert_eq!(
            AmountKey::from_decimal(d("12.340")),
            AmountKey::from_decimal(d("12.34"))
        );
        assert_ne!(
            AmountKey::from_decimal(d("12.341")),
            AmountKey::from_decimal(d("12.34"))
        );
        assert_eq!(
            AmountKey::from_decimal(d("-0.00")),
            AmountKey::from_decimal(d("0"))
        );
        assert_eq!(
            AmountKey::from_decimal(d("12.340")).valid_minor(Currency::Cny),
            Some(1234)
        );
        assert_eq!(
            AmountKey::from_decimal(d("12.341")).valid_minor(Currency::Cny),
            None
        );
        assert_eq!(
            AmountKey::from_decimal(d("12.0")).valid_minor(Currency::Jpy),
            Some(12)
        );
        assert_eq!(
            AmountKey::from_decimal(d("12.5")).valid_minor(Currency::Jpy),
            None
        );
        assert_eq!(
            AmountKey::from_decimal(d("0")).valid_minor(Currency::Cny),
            None
        );
        assert_eq!(
            AmountKey::from_decimal(d("-1")).valid_minor(Currency::Cny),
            None
        );
        assert_eq!(
            AmountKey::from_decimal(d("1000000000")).valid_minor(Currency::Cny),
            Some(100_000_000_000)
        );
        assert_eq!(
            AmountKey::from_decimal(d("1000000000.01")).valid_minor(Currency::Cny),
            None
        );
        assert_eq!(
            AmountKey::from_decimal(d("79228162514264337593543950335")).valid_minor(Currency::Jpy),
            None
        );
    }

    #[test]
    fn minor_round_trip_prints_currency_decimals() {
        assert_eq!(from_minor(1230, Currency::Cny).to_string(), "12.30");
        assert_eq!(from_minor(0, Currency::Usd).to_string(), "0.00");
        assert_eq!(from_minor(-501, Currency::Hkd).to_string(), "-5.01");
        assert_eq!(from_minor(7, Currency::Jpy).to_string(), "7");
        assert_eq!(to_minor(d("-5.010"), Currency::Hkd), Some(-501));
        assert_eq!(to_minor(d("5.001"), Currency::Hkd), None);
    }

    #[test]
    fn expiry_runs_through_the_last_day_china_time() {
        let e: Expiry = "2612".parse().unwrap();
        // 2027-01-01 00:00 China time = 2026-12-31 16:00 UTC = 1798732800 s.
        assert_eq!(e.expired_from_ns(), 1_798_732_800 * NS_PER_SEC);
        assert!("2613".parse::<Expiry>().is_err());
        assert!("2600".parse::<Expiry>().is_err());
        assert!("261".parse::<Expiry>().is_err());
        assert_eq!(e.to_string(), "2612");
    }

    #[test]
    fn china_day_turns_at_utc_16h() {
        let midnight_china = 1_798_732_800 * NS_PER_SEC; // 2027-01-01 00:00 +08
        assert_eq!(china_day(midnight_china) - china_day(midnight_china - 1), 1);
        assert_eq!(china_day(-1), china_day(0)); // 1970-01-01 08:00 China is day 0
    }

    #[test]
    fn dpan_grammar() {
        assert!("4111111111111".parse::<Dpan>().is_ok());
        assert!("9999999999999999999".parse::<Dpan>().is_ok());
        assert!("0111111111111".parse::<Dpan>().is_err());
        assert!("411111111111".parse::<Dpan>().is_err());
        assert!("41111111111111111111".parse::<Dpan>().is_err());
        assert!("411111111111a".parse::<Dpan>().is_err());
        assert!(matches!(TokenField::from_text("abc"), TokenField::Other(_)));
        assert_eq!(TokenField::from_text("abc"), TokenField::from_text("abc"));
        assert_ne!(TokenField::from_text("abc"), TokenField::from_text("abd"));
        assert_eq!(TokenField::from_text(""), TokenField::Empty);
    }
}
