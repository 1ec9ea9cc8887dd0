//! One shard's tables: accounts and tokens (dense, indexed), holds (slab + hash index, with
//! per-account open-hold lists) and duplicate records, plus their time-based reclamation.
//!
//! Everything here is owned by exactly one shard thread; nothing is shared or locked.

use std::collections::VecDeque;

use rustc_hash::FxHashMap;

use crate::keytable::{Entry, KeyTable, Probe};

use crate::api::{
    AccountStatus, AmountKey, Code, Currency, Dpan, Expiry, HoldStatus, Kind, Request, TokenField,
    TokenStatus,
};
use crate::snapshot::{
    expiry_from_expired_from_ns, AccountImage, DupImage, DupReclaimImage, FingerprintImage,
    HoldImage, HoldReclaimImage, ShardImage, TokenImage,
};

/// "No index" in the intrusive lists.
pub(crate) const NIL: u32 = u32::MAX;

/// The index the next entry of a table now `len` long gets, unless it would reach [`NIL`].
pub(crate) fn next_index(len: usize) -> Option<u32> {
    u32::try_from(len).ok().filter(|&i| i != NIL)
}

/// An account and its day counters, in one cache line, with the state of its first token
/// (most accounts have one), so a card request reads no other line of the account's. Money
/// in minor units of its currency. Limits, which most accounts do not have, and the account
/// id, which only exports and snapshots read, live in the store's side tables.
#[derive(Clone, Copy, Debug)]
#[repr(align(64))]
pub(crate) struct Account {
    pub balance_minor: i64,
    pub held_minor: i64,
    pub day_amount_minor: i64,
    pub day_count: u64,
    /// A lower bound of the earliest `expires_at_ns` among open holds (`i64::MAX`: none).
    pub next_expiry_ns: i64,
    /// China day the counters above belong to (`i32::MIN`: none yet; the day of any `i64`
    /// instant is within about ±107,000).
    day: i32,
    /// Head of the doubly linked list of this account's open holds (slab indices).
    pub open_head: u32,
    /// Head of the singly linked list of this account's tokens (token indices).
    token_head: u32,
    /// The [`Card`] of the token at `token_head`, kept equal to the token's own by
    /// [`Store::set_token_status`] (the only way a token's status changes).
    head_card: Card,
    /// Status (bits 0-1), currency (bits 2-3, its index in `Currency::ALL`), and the index
    /// of its limits in the store's side table (bits 4-31; [`NO_LIMITS`]: none).
    meta: u32,
}

/// The limits index of an account without limits.
pub(crate) const NO_LIMITS: u32 = (1 << 28) - 1;

/// By the two status bits of `Account::meta` (code 3 is never stored; the fourth entry
/// spares the lookup its bounds check).
const STATUSES: [AccountStatus; 4] = [
    AccountStatus::Active,
    AccountStatus::Frozen,
    AccountStatus::Closed,
    AccountStatus::Closed,
];

/// An account's limits (DOMAIN.md), where it has any.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Limits {
    /// `i64::MAX` when there is no limit.
    pub per_txn_minor: i64,
    /// `i64::MAX` when there is no limit.
    pub daily_minor: i64,
    /// `u64::MAX` when there is no limit.
    pub daily_count: u64,
}

impl Limits {
    /// No limit at all.
    pub const NONE: Limits = Limits {
        per_txn_minor: i64::MAX,
        daily_minor: i64::MAX,
        daily_count: u64::MAX,
    };
}

impl Account {
    /// A fresh account (no holds, no tokens, no day yet) whose limits are at `limits` in
    /// its store's side table ([`NO_LIMITS`]: none).
    pub fn new(
        currency: Currency,
        balance_minor: i64,
        status: AccountStatus,
        limits: u32,
    ) -> Account {
        debug_assert!(limits <= NO_LIMITS);
        Account {
            balance_minor,
            held_minor: 0,
            day_amount_minor: 0,
            day_count: 0,
            next_expiry_ns: i64::MAX,
            day: i32::MIN,
            open_head: NIL,
            token_head: NIL,
            head_card: Card::NONE,
            meta: status_code(status) | (currency as u32) << 2 | limits << 4,
        }
    }

    pub fn currency(&self) -> Currency {
        // `Currency as u32` is its index in `Currency::ALL`.
        Currency::ALL[((self.meta >> 2) & 3) as usize]
    }

    pub fn status(&self) -> AccountStatus {
        STATUSES[(self.meta & 3) as usize]
    }

    pub fn set_status(&mut self, status: AccountStatus) {
        self.meta = (self.meta & !3) | status_code(status);
    }

    /// Index of the limits in the store's side table, or [`NO_LIMITS`].
    pub fn limits_index(&self) -> u32 {
        self.meta >> 4
    }

    /// The day of the counters, as a snapshot image has it (`i64::MIN`: none yet).
    pub fn day_image(&self) -> i64 {
        if self.day == i32::MIN {
            i64::MIN
        } else {
            i64::from(self.day)
        }
    }

    /// Restore the day of the counters from a snapshot image.
    pub fn set_day_image(&mut self, day: i64) -> Result<(), String> {
        self.day = if day == i64::MIN {
            i32::MIN
        } else {
            i32::try_from(day)
                .ok()
                .filter(|&d| d != i32::MIN)
                .ok_or_else(|| format!("day {day} is out of range"))?
        };
        Ok(())
    }

    /// The first of this account's tokens (the head of its list), or [`NIL`].
    pub fn token_head(&self) -> u32 {
        self.token_head
    }

    /// Link `token`, at index `index` of the store's token table, at the head of this
    /// account's token list.
    pub fn link_token(&mut self, index: u32, token: &mut Token) {
        token.next_in_account = self.token_head;
        self.token_head = index;
        self.head_card = token.card;
    }

    /// `balance - held`; may be negative after a late capture.
    pub fn available_minor(&self) -> i64 {
        self.balance_minor.saturating_sub(self.held_minor)
    }

    /// Move the day counters to `day` (counters of a new day start at zero).
    pub fn roll_day(&mut self, day: i64) {
        // The China day of any i64 instant fits i32 (and is never i32::MIN).
        let day = day as i32;
        if self.day != day {
            self.day = day;
            self.day_amount_minor = 0;
            self.day_count = 0;
        }
    }
}

fn status_code(status: AccountStatus) -> u32 {
    match status {
        AccountStatus::Active => 0,
        AccountStatus::Frozen => 1,
        AccountStatus::Closed => 2,
    }
}

/// Nanoseconds in an hour: token expiries are whole hours (midnight China time).
const NS_PER_HOUR: i64 = 3_600_000_000_000;

/// What deciding a card request needs of its token, in 32 bits: the status (bits 0-1) and
/// the first instant at which the token is expired, in hours since the epoch (bits 2-31; an
/// expiry is the start of a month, China time: a whole hour, and years 2000-2099 are below
/// 2^21 hours).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Card(u32);

/// By the two status bits of a [`Card`] (code 3 is never stored; the fourth entry spares
/// the lookup its bounds check).
const TOKEN_STATUSES: [TokenStatus; 4] = [
    TokenStatus::Active,
    TokenStatus::Suspended,
    TokenStatus::Deactivated,
    TokenStatus::Deactivated,
];

impl Card {
    /// The card of an account without tokens (never read: no request resolves to it).
    const NONE: Card = Card(0);

    pub fn new(status: TokenStatus, expiry: Expiry) -> Card {
        let ns = expiry.expired_from_ns();
        debug_assert_eq!(ns % NS_PER_HOUR, 0);
        let hours = u32::try_from(ns / NS_PER_HOUR)
            .ok()
            .filter(|&h| h < 1 << 30)
            .expect("an expiry in 2000-2099 is below 2^30 hours");
        Card(hours << 2).with_status(status)
    }

    #[inline]
    pub fn status(self) -> TokenStatus {
        TOKEN_STATUSES[(self.0 & 3) as usize]
    }

    #[inline]
    pub fn with_status(self, status: TokenStatus) -> Card {
        let code = match status {
            TokenStatus::Active => 0,
            TokenStatus::Suspended => 1,
            TokenStatus::Deactivated => 2,
        };
        Card(self.0 & !3 | code)
    }

    /// First instant at which the token is expired.
    #[inline]
    pub fn expired_from_ns(self) -> i64 {
        i64::from(self.0 >> 2) * NS_PER_HOUR
    }
}

/// A token owned by this shard (its account is in this shard). Which account is not kept:
/// the account's token list says it, and only exports and snapshots ask.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Token {
    pub dpan: Dpan,
    /// Next token of the same account.
    next_in_account: u32,
    card: Card,
}

impl Token {
    /// A token not yet linked to its account ([`Account::link_token`]).
    pub fn new(dpan: Dpan, status: TokenStatus, expiry: Expiry) -> Token {
        Token {
            dpan,
            next_in_account: NIL,
            card: Card::new(status, expiry),
        }
    }

    pub fn status(&self) -> TokenStatus {
        self.card.status()
    }

    /// First instant at which the token is expired.
    pub fn expired_from_ns(&self) -> i64 {
        self.card.expired_from_ns()
    }

    /// The next token of the same account, or [`NIL`].
    pub fn next_in_account(&self) -> u32 {
        self.next_in_account
    }
}

/// A hold: created by an approved authorize. One cache line: what deciding a completion
/// reads and writes. Its key (account, request id), read only when the hold ends or is
/// reclaimed and by exports, is in the store's side table at the same slot.
#[derive(Clone, Copy, Debug)]
#[repr(align(64))]
pub(crate) struct Hold {
    pub authorized_minor: i64,
    pub captured_minor: i64,
    pub voided_minor: i64,
    pub refunded_minor: i64,
    pub expires_at_ns: i64,
    /// When it closed or expired (meaningless while open).
    pub ended_ns: i64,
    /// China day of the authorization (the day of any `i64` instant fits `i32`).
    pub day: i32,
    pub prev_open: u32,
    pub next_open: u32,
    /// Status (bits 0-1) and the slot's generation (bits 2-31), bumped each time the slot
    /// is freed, so stale reclamation entries are recognised.
    state: u32,
}

/// By the two status bits of `Hold::state` (code 3 is never stored).
const HOLD_STATUSES: [HoldStatus; 4] = [
    HoldStatus::Open,
    HoldStatus::Closed,
    HoldStatus::Expired,
    HoldStatus::Expired,
];

impl Hold {
    /// A placeholder (free slab space).
    const VACANT: Hold = Hold {
        authorized_minor: 0,
        captured_minor: 0,
        voided_minor: 0,
        refunded_minor: 0,
        expires_at_ns: 0,
        ended_ns: 0,
        day: 0,
        prev_open: NIL,
        next_open: NIL,
        state: 1,
    };

    /// A new open hold, not yet linked.
    pub fn open(authorized_minor: i64, expires_at_ns: i64, day: i64) -> Hold {
        Hold {
            authorized_minor,
            captured_minor: 0,
            voided_minor: 0,
            refunded_minor: 0,
            expires_at_ns,
            ended_ns: 0,
            // The China day of any i64 instant is within about ±107,000.
            day: day as i32,
            prev_open: NIL,
            next_open: NIL,
            state: 0,
        }
    }

    #[inline]
    pub fn status(&self) -> HoldStatus {
        HOLD_STATUSES[(self.state & 3) as usize]
    }

    #[inline]
    pub fn set_status(&mut self, status: HoldStatus) {
        let code = match status {
            HoldStatus::Open => 0,
            HoldStatus::Closed => 1,
            HoldStatus::Expired => 2,
        };
        self.state = self.state & !3 | code;
    }

    /// The slot's generation (30 bits).
    pub fn generation(&self) -> u32 {
        self.state >> 2
    }

    fn bump_generation(&mut self) {
        self.state = self.state.wrapping_add(4);
    }

    /// `authorized - captured - voided`.
    pub fn remaining_minor(&self) -> i64 {
        self.authorized_minor - self.captured_minor - self.voided_minor
    }

    /// DOMAIN.md: a hold stays referable while open, or while `ts < ended + retention`.
    pub fn referable_at(&self, ts_ns: i64, retention_ns: i64) -> bool {
        self.state & 3 == 0 || ts_ns < self.ended_ns.saturating_add(retention_ns)
    }
}

/// Every field of a request but `ts_ns` and `request_id` (the latter is in the key): what
/// an exact repeat must match, packed into 48 bytes because every decided request leaves
/// one for the length of the duplicate window.
///
/// Absent fields are stored as 0 with their presence bit clear, so the derived equality is
/// exactly DOMAIN.md's comparison (empty equals empty; `final` empty is `0`; amounts are
/// normalized, so they compare as numbers).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Fingerprint {
    token: u64,
    account_id: u64,
    mcc: u64,
    reference: u64,
    /// Low 64 bits of the normalized amount's mantissa.
    amount_lo: u64,
    /// Bits 64..96 of the mantissa's magnitude (a Decimal mantissa has at most 96 bits;
    /// the sign is a flag).
    amount_hi: u32,
    amount_scale: u8,
    kind: Kind,
    /// 0 = empty, else 1 + index in [`Currency::ALL`].
    currency: u8,
    /// Presence bits and `final`; see the `F_*` constants.
    flags: u8,
}

const F_TOKEN_DPAN: u8 = 1;
const F_TOKEN_OTHER: u8 = 1 << 1;
const F_ACCOUNT: u8 = 1 << 2;
const F_AMOUNT: u8 = 1 << 3;
const F_MCC: u8 = 1 << 4;
const F_REF: u8 = 1 << 5;
const F_FINAL: u8 = 1 << 6;
const F_AMOUNT_NEGATIVE: u8 = 1 << 7;

impl Fingerprint {
    /// A placeholder (free slab space).
    const EMPTY: Fingerprint = Fingerprint {
        token: 0,
        account_id: 0,
        mcc: 0,
        reference: 0,
        amount_lo: 0,
        amount_hi: 0,
        amount_scale: 0,
        kind: Kind::Authorize,
        currency: 0,
        flags: 0,
    };

    /// The fingerprint of `req`, whose amount is normalized into `amount`: the plain
    /// reference that [`Fingerprint::of_request`] is tested against.
    #[cfg(test)]
    pub fn of(req: &Request, amount: Option<AmountKey>) -> Fingerprint {
        Fingerprint::from_fields(
            req.kind,
            req.token,
            req.account_id,
            amount.map(AmountKey::parts),
            req.currency,
            req.mcc,
            req.reference,
            req.is_final,
        )
    }

    /// The fingerprint of `req`, straight from its fields: exactly
    /// `Fingerprint::of(req, req.amount.map(AmountKey::from_decimal))`, without building the
    /// `i128` mantissa or the optional parts in between. The router makes one per request,
    /// so this is on the submitting thread's hot path.
    #[inline]
    pub fn of_request(req: &Request) -> Fingerprint {
        let bit = |present: bool, f: u8| u8::from(present) * f;
        let (token, token_flag) = match req.token {
            TokenField::Empty => (0, 0),
            TokenField::Dpan(d) => (d.get(), F_TOKEN_DPAN),
            TokenField::Other(h) => (h, F_TOKEN_OTHER),
        };
        let (amount_lo, amount_hi, amount_scale, negative) = match req.amount {
            Some(d) => normalized_parts(d),
            None => (0, 0, 0, false),
        };
        let flags = token_flag
            | bit(req.account_id.is_some(), F_ACCOUNT)
            | bit(req.amount.is_some(), F_AMOUNT)
            | bit(req.mcc.is_some(), F_MCC)
            | bit(req.reference.is_some(), F_REF)
            | bit(req.is_final, F_FINAL)
            | bit(negative, F_AMOUNT_NEGATIVE);
        Fingerprint {
            token,
            account_id: req.account_id.unwrap_or(0),
            mcc: req.mcc.unwrap_or(0),
            reference: req.reference.unwrap_or(0),
            amount_lo,
            amount_hi,
            amount_scale,
            kind: req.kind,
            currency: req.currency.map_or(0, |c| 1 + c as u8),
            flags,
        }
    }

    /// Pack the compared fields; `amount` is normalized `(mantissa, scale)` as in
    /// [`AmountKey::parts`].
    #[allow(clippy::too_many_arguments)] // one argument per compared field, named at each call
    #[inline]
    fn from_fields(
        kind: Kind,
        token: TokenField,
        account_id: Option<u64>,
        amount: Option<(i128, u32)>,
        currency: Option<Currency>,
        mcc: Option<u64>,
        reference: Option<u64>,
        is_final: bool,
    ) -> Fingerprint {
        // Branch-free: the router builds one of these per request.
        let bit = |present: bool, f: u8| u8::from(present) * f;
        let (token, token_flag) = match token {
            TokenField::Empty => (0, 0),
            TokenField::Dpan(d) => (d.get(), F_TOKEN_DPAN),
            TokenField::Other(h) => (h, F_TOKEN_OTHER),
        };
        let (mantissa, scale) = amount.unwrap_or((0, 0));
        let flags = token_flag
            | bit(account_id.is_some(), F_ACCOUNT)
            | bit(amount.is_some(), F_AMOUNT)
            | bit(mcc.is_some(), F_MCC)
            | bit(reference.is_some(), F_REF)
            | bit(is_final, F_FINAL)
            | bit(mantissa < 0, F_AMOUNT_NEGATIVE);
        let magnitude = mantissa.unsigned_abs();
        Fingerprint {
            token,
            account_id: account_id.unwrap_or(0),
            mcc: mcc.unwrap_or(0),
            reference: reference.unwrap_or(0),
            amount_lo: magnitude as u64,
            // A Decimal mantissa is below 2^96 in magnitude, so this is exact.
            amount_hi: (magnitude >> 64) as u32,
            amount_scale: scale as u8,
            kind,
            // `Currency as u8` is the currency's index in `Currency::ALL`.
            currency: currency.map_or(0, |c| 1 + c as u8),
            flags,
        }
    }

    /// True when the request that left this was an `authorize`.
    pub fn is_authorize(&self) -> bool {
        self.kind == Kind::Authorize
    }

    /// The request's kind.
    #[inline]
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The request's amount, normalized.
    #[inline]
    pub fn amount(&self) -> Option<AmountKey> {
        if self.flags & F_AMOUNT == 0 {
            return None;
        }
        // Below 2^96, so the cast to i128 is exact.
        let magnitude = (u128::from(self.amount_hi) << 64 | u128::from(self.amount_lo)) as i128;
        let mantissa = if self.flags & F_AMOUNT_NEGATIVE != 0 {
            -magnitude
        } else {
            magnitude
        };
        Some(AmountKey::from_normalized_parts(
            mantissa,
            u32::from(self.amount_scale),
        ))
    }

    /// The request's amount in minor units of `currency`, if it is a valid request amount
    /// there: exactly `self.amount()?.valid_minor(currency)`, without rebuilding the 96-bit
    /// mantissa (every amount a valid request carries fits the low 64 bits).
    #[inline]
    pub fn amount_minor(&self, currency: Currency) -> Option<i64> {
        const POW10: [u64; 3] = [1, 10, 100];
        let decimals = currency.decimals();
        let scale = u32::from(self.amount_scale);
        if self.flags & (F_AMOUNT | F_AMOUNT_NEGATIVE) != F_AMOUNT
            || self.amount_hi != 0
            || self.amount_lo == 0
            || scale > decimals
        {
            return None;
        }
        let max = currency.amount_minor_max() as u64;
        // A mantissa above the maximum stays above it once scaled (the factor is >= 1), and
        // one at or below it cannot overflow when multiplied by at most 100.
        if self.amount_lo > max {
            return None;
        }
        let minor = self.amount_lo * POW10[(decimals - scale) as usize];
        (minor <= max).then_some(minor as i64)
    }

    /// True when the request's currency is `currency` (false when it has none).
    #[inline]
    pub fn currency_is(&self, currency: Currency) -> bool {
        // Stored as 1 + the index in `Currency::ALL`, which is `Currency as u8`.
        self.currency == 1 + currency as u8
    }

    /// The request's currency.
    #[inline]
    pub fn currency(&self) -> Option<Currency> {
        match self.currency {
            0 => None,
            n => Some(Currency::ALL[usize::from(n - 1)]),
        }
    }

    /// The request's `ref`.
    #[inline]
    pub fn reference(&self) -> Option<u64> {
        (self.flags & F_REF != 0).then_some(self.reference)
    }

    /// The request's `final`.
    #[inline]
    pub fn is_final(&self) -> bool {
        self.flags & F_FINAL != 0
    }

    /// The fields unpacked, for a snapshot.
    pub fn to_image(self) -> FingerprintImage {
        let has = |f: u8| self.flags & f != 0;
        let token = if has(F_TOKEN_DPAN) {
            TokenField::Dpan(
                Dpan::from_u64(self.token).expect("the DPAN flag is only set from a valid DPAN"),
            )
        } else if has(F_TOKEN_OTHER) {
            TokenField::Other(self.token)
        } else {
            TokenField::Empty
        };
        let amount = has(F_AMOUNT).then(|| {
            // Below 2^96, so the cast to i128 is exact.
            let magnitude = (u128::from(self.amount_hi) << 64 | u128::from(self.amount_lo)) as i128;
            let mantissa = if has(F_AMOUNT_NEGATIVE) {
                -magnitude
            } else {
                magnitude
            };
            (mantissa, u32::from(self.amount_scale))
        });
        FingerprintImage {
            kind: self.kind,
            token,
            account_id: has(F_ACCOUNT).then_some(self.account_id),
            amount,
            currency: match self.currency {
                0 => None,
                n => Some(Currency::ALL[usize::from(n - 1)]),
            },
            mcc: has(F_MCC).then_some(self.mcc),
            reference: has(F_REF).then_some(self.reference),
            is_final: has(F_FINAL),
        }
    }

    /// Pack a snapshot's fingerprint; the exact inverse of [`Fingerprint::to_image`] for a
    /// normalized amount (which `ShardImage::check` demands).
    pub fn from_image(image: &FingerprintImage) -> Fingerprint {
        Fingerprint::from_fields(
            image.kind,
            image.token,
            image.account_id,
            image.amount,
            image.currency,
            image.mcc,
            image.reference,
            image.is_final,
        )
    }
}

/// A decimal's normalized magnitude (low 64 bits, bits 64..96), scale, and whether it is
/// below zero: what [`AmountKey::from_decimal`] gives, read from the decimal's bits. Zero
/// (of any sign and scale) is `(0, 0, 0, false)`.
#[inline]
fn normalized_parts(d: rust_decimal::Decimal) -> (u64, u32, u8, bool) {
    // `serialize` is the decimal's own representation: flags, then the 96-bit magnitude as
    // three little-endian words; the scale is bits 16..24 of the flags, the sign bit 31.
    let b = d.serialize();
    let word = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
    let (flags, lo, mid, hi) = (word(0), word(4), word(8), word(12));
    let mut scale = (flags >> 16) & 0xFF;
    let negative = flags & 0x8000_0000 != 0;
    if hi == 0 {
        // Most amounts: a 64-bit magnitude, where dividing by 10 is a multiply.
        let mut m = u64::from(mid) << 32 | u64::from(lo);
        if m == 0 {
            return (0, 0, 0, false);
        }
        while scale > 0 && m % 10 == 0 {
            m /= 10;
            scale -= 1;
        }
        return (m, 0, scale as u8, negative);
    }
    let mut m = u128::from(hi) << 64 | u128::from(mid) << 32 | u128::from(lo);
    while scale > 0 && m % 10 == 0 {
        m /= 10;
        scale -= 1;
    }
    // Below 2^96: the high part fits 32 bits.
    (m as u64, (m >> 64) as u32, scale as u8, negative)
}

// [`Fingerprint::amount_minor`] scales by at most 10^2.
const _: () = {
    let mut i = 0;
    while i < Currency::ALL.len() {
        assert!(Currency::ALL[i].decimals() <= 2);
        i += 1;
    }
};

/// The record a decided request leaves under (account, request_id).
#[derive(Clone, Copy, Debug)]
pub(crate) struct DupRecord {
    pub ts_ns: i64,
    pub code: Code,
    pub fingerprint: Fingerprint,
}

/// A duplicate record as the key table holds it: the fingerprint stays in its slab until an
/// exact-repeat check needs it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct DupRef {
    pub ts_ns: i64,
    pub code: Code,
    pub is_authorize: bool,
    fingerprint: u32,
}

impl DupRef {
    /// DOMAIN.md: a record answers repeats while `ts < record + window`.
    pub fn in_window_at(&self, ts_ns: i64, window_ns: i64) -> bool {
        ts_ns < self.ts_ns.saturating_add(window_ns)
    }
}

/// Key of holds and duplicate records: (account index, request id).
pub(crate) type Key = (u32, u64);

/// The duplicate record in `e`, whether or not it is still in its window.
pub(crate) fn dup_ref(e: &Entry) -> Option<DupRef> {
    e.has_dup().then_some(DupRef {
        ts_ns: e.dup_ts_ns,
        code: e.dup_code,
        is_authorize: e.flags & Entry::DUP_AUTHORIZE != 0,
        fingerprint: e.dup_fingerprint,
    })
}

/// The limits index of an account with `limits`: [`NO_LIMITS`], or a new entry of the side
/// table; `None` when the table is full.
pub(crate) fn add_limits(table: &mut Vec<Limits>, limits: Limits) -> Option<u32> {
    if limits == Limits::NONE {
        return Some(NO_LIMITS);
    }
    let index = u32::try_from(table.len()).ok().filter(|&i| i < NO_LIMITS)?;
    table.push(limits);
    Some(index)
}

/// Write every element of `v`'s spare capacity once and leave it empty: the pages are then
/// resident, and pushes up to the capacity never fault.
fn prefault<T: Copy>(v: &mut Vec<T>, fill: T) {
    debug_assert!(v.is_empty());
    v.resize(v.capacity(), fill);
    v.clear();
}

/// One shard's whole state.
///
/// `Clone` copies every table (all plain data, so it is close to a memcpy): that is how a
/// snapshot freezes the state on the shard thread and converts it elsewhere.
#[derive(Clone)]
pub(crate) struct Store {
    pub accounts: Vec<Account>,
    /// The id of each account, at its index.
    account_ids: Vec<u64>,
    /// Limits of the accounts that have any, at their `limits_index`.
    limits: Vec<Limits>,
    pub tokens: Vec<Token>,
    holds: Vec<Hold>,
    /// The key of the hold at each slot of `holds`.
    hold_keys: Vec<Key>,
    free_holds: Vec<u32>,
    /// Holds in the table (referable or not yet reclaimed).
    hold_count: usize,
    /// (account, request id) -> hold slot and duplicate record.
    keys: KeyTable,
    /// Fingerprints of the duplicate records, by the slot their entry names.
    fingerprints: Vec<Fingerprint>,
    free_fingerprints: Vec<u32>,
    /// (referable-until, slot, generation) of holds that ended, in the order they ended.
    hold_reclaim: VecDeque<(i64, u32, u32)>,
    /// (window-end, account, request id) of duplicate records, in the order they were made.
    dup_reclaim: VecDeque<(i64, u32, u64)>,
    /// The latest `ts_ns` this shard has seen.
    pub watermark_ns: i64,
    /// No front of the two queues above is due before this instant (a lower bound, so
    /// `advance` looks at the queues only when one may be): the earliest front at the last
    /// look, lowered by every push since. Derived state, not part of a snapshot.
    reclaim_from_ns: i64,
}

impl Store {
    /// A store of these accounts and tokens with its tables sized for `holds_hint` holds
    /// (and twice as many duplicate records) before any must grow. The memory is touched
    /// here, at start, so the first requests do not pay for the kernel zeroing its pages.
    pub fn new(
        accounts: Vec<Account>,
        account_ids: Vec<u64>,
        limits: Vec<Limits>,
        tokens: Vec<Token>,
        holds_hint: usize,
    ) -> Store {
        assert_eq!(accounts.len(), account_ids.len(), "an id for every account");
        let mut store = Store::unfaulted(accounts, account_ids, limits, tokens, holds_hint);
        prefault(&mut store.holds, Hold::VACANT);
        prefault(&mut store.hold_keys, (NIL, 0));
        prefault(&mut store.fingerprints, Fingerprint::EMPTY);
        store
            .hold_reclaim
            .resize(store.hold_reclaim.capacity(), (0, 0, 0));
        store.hold_reclaim.clear();
        store
            .dup_reclaim
            .resize(store.dup_reclaim.capacity(), (0, 0, 0));
        store.dup_reclaim.clear();
        store
    }

    fn unfaulted(
        accounts: Vec<Account>,
        account_ids: Vec<u64>,
        limits: Vec<Limits>,
        tokens: Vec<Token>,
        holds_hint: usize,
    ) -> Store {
        Store {
            accounts,
            account_ids,
            limits,
            tokens,
            holds: Vec::with_capacity(holds_hint),
            hold_keys: Vec::with_capacity(holds_hint),
            free_holds: Vec::with_capacity(holds_hint / 4),
            hold_count: 0,
            // Every hold has a record under its key, and about as many completions leave
            // records of their own.
            keys: KeyTable::with_capacity(holds_hint.saturating_mul(2)),
            fingerprints: Vec::with_capacity(holds_hint.saturating_mul(2)),
            free_fingerprints: Vec::new(),
            hold_reclaim: VecDeque::with_capacity(holds_hint),
            dup_reclaim: VecDeque::with_capacity(holds_hint.saturating_mul(2)),
            watermark_ns: i64::MIN,
            reclaim_from_ns: i64::MIN,
        }
    }

    /// The limits of account `account` ([`Limits::NONE`] for most).
    #[inline]
    pub fn limits(&self, account: u32) -> Limits {
        match self.accounts[account as usize].limits_index() {
            NO_LIMITS => Limits::NONE,
            i => self.limits[i as usize],
        }
    }

    /// The id of the account at `index`.
    pub fn account_id(&self, index: u32) -> u64 {
        self.account_ids[index as usize]
    }

    /// The account index of every token, at the token's index (from the accounts' token
    /// lists: a pass over both tables, for exports and snapshots).
    pub fn token_accounts(&self) -> Vec<u32> {
        let mut owner = vec![NIL; self.tokens.len()];
        for (a, acct) in self.accounts.iter().enumerate() {
            let mut t = acct.token_head;
            while t != NIL {
                owner[t as usize] = a as u32;
                t = self.tokens[t as usize].next_in_account;
            }
        }
        owner
    }

    /// The status and expiry of `token`, a token of `account`: from the account's own line
    /// when it is the account's first token.
    #[inline]
    pub fn card(&self, account: u32, token: u32) -> Card {
        let acct = &self.accounts[account as usize];
        if acct.token_head == token {
            acct.head_card
        } else {
            self.tokens[token as usize].card
        }
    }

    /// Set the status of `token`, a token of `account`.
    pub fn set_token_status(&mut self, account: u32, token: u32, status: TokenStatus) {
        let t = &mut self.tokens[token as usize];
        t.card = t.card.with_status(status);
        let acct = &mut self.accounts[account as usize];
        if acct.token_head == token {
            acct.head_card = t.card;
        }
    }

    /// Hint that `account` will be needed soon.
    #[inline]
    pub fn prefetch_account(&self, account: u32) {
        if let Some(a) = self.accounts.get(account as usize) {
            crate::prefetch::prefetch_read(a);
        }
    }

    /// Hint that what `account` keeps outside its line will be needed soon: `token`,
    /// unless it is [`NIL`] or the account's first token (whose state is in the account's
    /// line), and the account's limits, if it has any. Reads the account: call it once the
    /// account's line has been prefetched.
    #[inline]
    pub fn prefetch_account_rest(&self, account: u32, token: u32) {
        let Some(a) = self.accounts.get(account as usize) else {
            return;
        };
        if a.token_head != token {
            if let Some(t) = self.tokens.get(token as usize) {
                crate::prefetch::prefetch_value(t);
            }
        }
        if let Some(l) = self.limits.get(a.limits_index() as usize) {
            crate::prefetch::prefetch_value(l);
        }
    }

    pub fn hold(&self, slot: u32) -> &Hold {
        &self.holds[slot as usize]
    }

    pub fn hold_mut(&mut self, slot: u32) -> &mut Hold {
        &mut self.holds[slot as usize]
    }

    /// Hint that the entry of the key whose [`crate::keytable::hash`] is `hash` will be
    /// looked up soon.
    #[inline]
    pub fn prefetch_key_hashed(&self, hash: u64) {
        self.keys.prefetch_hashed(hash);
    }

    /// Hint only the home line of the key whose hash is `hash` (see
    /// [`Store::prefetch_key_overflow`]).
    #[inline]
    pub fn prefetch_key_home(&self, hash: u64) {
        self.keys.prefetch_home(hash);
    }

    /// Once the home line of `key` (hash `hash`) has come in, hint the next line if its
    /// probe runs on into it.
    #[inline]
    pub fn prefetch_key_overflow(&self, key: Key, hash: u64) {
        self.keys.prefetch_overflow(hash, key);
    }

    /// Hint that an approved authorize of `account` would link its hold in front of the
    /// account's open list, writing the current first hold. Reads the account: call it once
    /// the account's line has come in.
    #[inline]
    pub fn prefetch_link(&self, account: u32) {
        if let Some(a) = self.accounts.get(account as usize) {
            if let Some(h) = self.holds.get(a.open_head as usize) {
                crate::prefetch::prefetch_write(&h.prev_open);
            }
        }
    }

    /// Hint that the hold at `slot` may leave its account's open list, writing the holds
    /// before and after it. Reads the hold: call it once the hold's lines have come in.
    #[inline]
    pub fn prefetch_unlink(&self, slot: u32) {
        if let Some(h) = self.holds.get(slot as usize) {
            if let Some(prev) = self.holds.get(h.prev_open as usize) {
                crate::prefetch::prefetch_write(&prev.next_open);
            }
            if let Some(next) = self.holds.get(h.next_open as usize) {
                crate::prefetch::prefetch_write(&next.prev_open);
            }
        }
    }

    /// Look `key` (whose hash is `hash`) up and hint that the hold under it, if any, will be
    /// needed soon; call it once the key's entry has been prefetched. Returns where the
    /// entry was found, for [`Store::entry_hinted`] ([`NIL`]: not found), and the slot of
    /// its hold ([`NIL`]: none).
    #[inline]
    pub fn prefetch_hold_hashed(&self, key: Key, hash: u64) -> (u32, u32) {
        match self.keys.probe_hashed(hash, key) {
            Probe::Found(i) => {
                let slot = self.keys.at(i).hold;
                if let Some(h) = self.holds.get(slot as usize) {
                    crate::prefetch::prefetch_value(h);
                }
                // Table indices are below 2^31 (the table's capacity limit).
                (i as u32, slot)
            }
            Probe::Vacant(_) => (NIL, NIL),
        }
    }

    /// The entry of `key` (whose hash is `hash`): checked at `found`, where a recent lookup
    /// found it, before probing for it.
    #[inline]
    pub fn entry_hinted(&self, key: Key, hash: u64, found: u32) -> Option<&Entry> {
        if let Some(e) = self.keys.found_at(found as usize, key) {
            return Some(e);
        }
        match self.keys.probe_hashed(hash, key) {
            Probe::Found(i) => Some(self.keys.at(i)),
            Probe::Vacant(_) => None,
        }
    }

    /// [`Store::locate`] of `key`, whose hash is `hash`.
    #[inline]
    pub fn locate_hashed(&self, key: Key, hash: u64) -> Probe {
        self.keys.probe_hashed(hash, key)
    }

    /// Where the entry of `key` is, or would go: a handle for the `_at` methods, valid
    /// until the key table changes other than through them.
    #[inline]
    pub fn locate(&self, key: Key) -> Probe {
        self.keys.probe(key)
    }

    /// The slot of the hold at `at`, whether or not it is still referable.
    #[inline]
    pub fn hold_at(&self, at: Probe) -> Option<u32> {
        match at {
            Probe::Found(i) => Some(self.keys.at(i).hold).filter(|&h| h != NIL),
            Probe::Vacant(_) => None,
        }
    }

    /// The duplicate record at `at`, whether or not it is still in its window.
    #[inline]
    pub fn dup_at(&self, at: Probe) -> Option<DupRef> {
        match at {
            Probe::Found(i) => dup_ref(self.keys.at(i)),
            Probe::Vacant(_) => None,
        }
    }

    /// The slot of the hold under `key`, whether or not it is still referable.
    #[inline]
    pub fn find_hold(&self, key: Key) -> Option<u32> {
        self.keys.get(key).map(|e| e.hold).filter(|&h| h != NIL)
    }

    /// The fingerprint of a record.
    pub fn fingerprint(&self, dup: &DupRef) -> &Fingerprint {
        &self.fingerprints[dup.fingerprint as usize]
    }

    /// Insert `hold`, a new open hold under `key` (replacing a dead one under the same key),
    /// and link it into its account's open list. `at` locates the key, and locates it still
    /// afterwards.
    pub fn insert_open_hold_at(&mut self, at: &mut Probe, key: Key, hold: Hold) -> u32 {
        debug_assert_eq!(hold.status(), HoldStatus::Open);
        let account = key.0;
        let expires_at_ns = hold.expires_at_ns;
        let slot = match self.free_holds.pop() {
            Some(s) => {
                let generation = self.holds[s as usize].state & !3;
                self.holds[s as usize] = Hold {
                    state: generation | (hold.state & 3),
                    ..hold
                };
                self.hold_keys[s as usize] = key;
                s
            }
            None => {
                let s = next_index(self.holds.len()).expect("more than 2^32-1 holds in a shard");
                self.holds.push(hold);
                self.hold_keys.push(key);
                s
            }
        };
        let index = self.keys.claim(*at, key);
        *at = Probe::Found(index);
        let old = std::mem::replace(&mut self.keys.at_mut(index).hold, slot);
        if old != NIL {
            debug_assert_ne!(self.holds[old as usize].status(), HoldStatus::Open);
            self.free_slot(old);
        } else {
            self.hold_count += 1;
        }
        // Link at the head of the account's open list.
        let acct = &mut self.accounts[account as usize];
        let head = acct.open_head;
        acct.open_head = slot;
        acct.next_expiry_ns = acct.next_expiry_ns.min(expires_at_ns);
        {
            let h = &mut self.holds[slot as usize];
            h.prev_open = NIL;
            h.next_open = head;
        }
        if head != NIL {
            self.holds[head as usize].prev_open = slot;
        }
        slot
    }

    fn free_slot(&mut self, slot: u32) {
        self.holds[slot as usize].bump_generation();
        self.free_holds.push(slot);
    }

    /// Take an open hold off its account's open list and end it (closed or expired) at
    /// `ended_ns`; it stays referable until `ended_ns + retention_ns`.
    pub fn end_hold(
        &mut self,
        account: u32,
        slot: u32,
        status: HoldStatus,
        ended_ns: i64,
        retention_ns: i64,
    ) {
        // The caller knows the account: the side table's line is not read on this path.
        debug_assert_eq!(self.hold_keys[slot as usize].0, account);
        debug_assert_ne!(status, HoldStatus::Open);
        let (prev, next, generation) = {
            let h = &mut self.holds[slot as usize];
            assert_eq!(
                h.status(),
                HoldStatus::Open,
                "ending a hold that is not open"
            );
            h.set_status(status);
            h.ended_ns = ended_ns;
            (h.prev_open, h.next_open, h.generation())
        };
        if prev == NIL {
            self.accounts[account as usize].open_head = next;
        } else {
            self.holds[prev as usize].next_open = next;
        }
        if next != NIL {
            self.holds[next as usize].prev_open = prev;
        }
        let h = &mut self.holds[slot as usize];
        h.prev_open = NIL;
        h.next_open = NIL;
        self.hold_reclaim
            .push_back((ended_ns.saturating_add(retention_ns), slot, generation));
        self.reclaim_from_ns = self
            .reclaim_from_ns
            .min(ended_ns.saturating_add(retention_ns));
    }

    /// Expire every open hold of `account` with `expires_at_ns <= ts_ns` (DOMAIN.md Time).
    #[inline]
    pub fn expire_account(&mut self, account: u32, ts_ns: i64, retention_ns: i64) {
        if ts_ns >= self.accounts[account as usize].next_expiry_ns {
            self.expire_account_holds(account, ts_ns, retention_ns);
        }
    }

    #[inline(never)]
    fn expire_account_holds(&mut self, account: u32, ts_ns: i64, retention_ns: i64) {
        let mut next_expiry = i64::MAX;
        let mut slot = self.accounts[account as usize].open_head;
        while slot != NIL {
            let (next, expires_at, remaining) = {
                let h = &self.holds[slot as usize];
                (h.next_open, h.expires_at_ns, h.remaining_minor())
            };
            if expires_at <= ts_ns {
                let acct = &mut self.accounts[account as usize];
                acct.held_minor -= remaining;
                assert!(acct.held_minor >= 0, "held went negative on expiry");
                self.end_hold(account, slot, HoldStatus::Expired, expires_at, retention_ns);
            } else {
                next_expiry = next_expiry.min(expires_at);
            }
            slot = next;
        }
        self.accounts[account as usize].next_expiry_ns = next_expiry;
    }

    /// Remember `record` under `key`, replacing an older record whose window has passed.
    /// `at` locates `key`.
    #[inline]
    pub fn record_at(&mut self, at: Probe, key: Key, record: DupRecord, window_ns: i64) {
        self.dup_reclaim
            .push_back((record.ts_ns.saturating_add(window_ns), key.0, key.1));
        self.reclaim_from_ns = self
            .reclaim_from_ns
            .min(record.ts_ns.saturating_add(window_ns));
        self.put_record(at, key, record);
    }

    /// Put `record` under `key`, which `at` locates (its fingerprint in the slab); true when
    /// it replaced one.
    #[inline(always)]
    fn put_record(&mut self, at: Probe, key: Key, record: DupRecord) -> bool {
        let index = self.keys.claim(at, key);
        let e = self.keys.at_mut(index);
        let replaced = e.has_dup();
        // Written once: into the slot it reuses, or pushed.
        let fingerprint = match (replaced, self.free_fingerprints.last()) {
            (true, _) => {
                self.fingerprints[e.dup_fingerprint as usize] = record.fingerprint;
                e.dup_fingerprint
            }
            (false, Some(&f)) => {
                self.free_fingerprints.pop();
                self.fingerprints[f as usize] = record.fingerprint;
                f
            }
            (false, None) => {
                let f = next_index(self.fingerprints.len())
                    .expect("more than 2^32-1 duplicate records in a shard");
                self.fingerprints.push(record.fingerprint);
                f
            }
        };
        e.dup_ts_ns = record.ts_ns;
        e.dup_code = record.code;
        e.dup_fingerprint = fingerprint;
        e.flags = Entry::HAS_DUP
            | if record.fingerprint.is_authorize() {
                Entry::DUP_AUTHORIZE
            } else {
                0
            };
        replaced
    }

    /// Advance the watermark and drop holds and records that no request at or after it can
    /// see any more. Exact as long as `ts_ns` never goes below the watermark (traffic.csv's
    /// non-decreasing rule); see ARCHITECTURE.md.
    ///
    /// The queues are FIFO in the order entries were made, which is the order their
    /// deadlines fall in when time does not go back. When it does (an expiry noticed late, a
    /// host's out-of-order `ts_ns`), an entry waits behind a later one: it is dropped late,
    /// never early, and each drop re-checks the entry against the table.
    #[inline]
    pub fn advance(&mut self, ts_ns: i64, window_ns: i64) {
        if ts_ns <= self.watermark_ns {
            return;
        }
        self.watermark_ns = ts_ns;
        if ts_ns >= self.reclaim_from_ns {
            self.reclaim(ts_ns, window_ns);
        }
    }

    /// Drop what the queues' fronts say is dead at `ts_ns`, then note the earliest instant
    /// the fronts name.
    #[inline(never)]
    fn reclaim(&mut self, ts_ns: i64, window_ns: i64) {
        while let Some(&(until, slot, generation)) = self.hold_reclaim.front() {
            if until > ts_ns {
                break;
            }
            self.hold_reclaim.pop_front();
            if slot == NIL {
                // A stale entry restored from a snapshot: it only kept its place in line.
                continue;
            }
            let h = &self.holds[slot as usize];
            if h.generation() == generation && h.status() != HoldStatus::Open {
                let key = self.hold_keys[slot as usize];
                if let Probe::Found(at) = self.keys.probe(key) {
                    if self.keys.at_mut(at).hold == slot {
                        self.keys.at_mut(at).hold = NIL;
                        self.keys.remove_if_dead(at);
                        self.hold_count -= 1;
                        self.free_slot(slot);
                    }
                }
            }
        }
        while let Some(&(until, account, request_id)) = self.dup_reclaim.front() {
            if until > ts_ns {
                break;
            }
            self.dup_reclaim.pop_front();
            if let Probe::Found(at) = self.keys.probe((account, request_id)) {
                let e = self.keys.at_mut(at);
                if e.has_dup() && ts_ns >= e.dup_ts_ns.saturating_add(window_ns) {
                    e.flags = 0;
                    let fingerprint = e.dup_fingerprint;
                    self.free_fingerprints.push(fingerprint);
                    self.keys.remove_if_dead(at);
                }
            }
        }
        self.reclaim_from_ns = self
            .hold_reclaim
            .front()
            .map_or(i64::MAX, |e| e.0)
            .min(self.dup_reclaim.front().map_or(i64::MAX, |e| e.0));
    }

    /// Holds in the table (for export), referable or not yet reclaimed, with their keys.
    pub fn holds_iter(&self) -> impl Iterator<Item = (Key, &Hold)> + '_ {
        self.keys
            .iter()
            .filter(|e| e.hold != NIL)
            .map(move |e| ((e.account, e.request_id), &self.holds[e.hold as usize]))
    }

    /// Holds the table currently tracks.
    pub fn hold_count(&self) -> usize {
        self.hold_count
    }

    /// Duplicate records the table currently tracks, with their fingerprints.
    fn dups_iter(&self) -> impl Iterator<Item = (Key, DupRecord)> + '_ {
        self.keys.iter().filter(|e| e.has_dup()).map(move |e| {
            (
                (e.account, e.request_id),
                DupRecord {
                    ts_ns: e.dup_ts_ns,
                    code: e.dup_code,
                    fingerprint: self.fingerprints[e.dup_fingerprint as usize],
                },
            )
        })
    }

    /// The shard's logical state as a snapshot image: everything a restored store needs to
    /// behave exactly like this one, for any later input (see `crate::snapshot` for why the
    /// watermark, the reclamation queues and the open-list order are part of it).
    ///
    /// Runs on the shard thread, so it only copies (one pass over each table): open holds
    /// come first, account by account in open-list order, then the ended holds and the
    /// duplicate records in table order. [`ShardImage::canonical`] sorts those for
    /// comparisons; a snapshot file does not need it.
    pub fn to_image(&self) -> ShardImage {
        let account_id = |index: u32| self.account_ids[index as usize];
        let accounts = self
            .accounts
            .iter()
            .enumerate()
            .map(|(i, a)| {
                let limits = self.limits(i as u32);
                AccountImage {
                    id: account_id(i as u32),
                    currency: a.currency(),
                    balance_minor: a.balance_minor,
                    held_minor: a.held_minor,
                    status: a.status(),
                    per_txn_limit_minor: limits.per_txn_minor,
                    daily_limit_minor: limits.daily_minor,
                    daily_count_limit: limits.daily_count,
                    day: a.day_image(),
                    day_amount_minor: a.day_amount_minor,
                    day_count: a.day_count,
                }
            })
            .collect();
        let owners = self.token_accounts();
        let tokens = self
            .tokens
            .iter()
            .zip(&owners)
            .map(|(t, &owner)| TokenImage {
                dpan: t.dpan,
                account_id: account_id(owner),
                status: t.status(),
                expiry: expiry_from_expired_from_ns(t.expired_from_ns())
                    .expect("a token's expiry instant comes from an Expiry"),
            })
            .collect();
        let hold_image = |(account, request_id): Key, h: &Hold| HoldImage {
            account_id: account_id(account),
            request_id,
            authorized_minor: h.authorized_minor,
            captured_minor: h.captured_minor,
            voided_minor: h.voided_minor,
            refunded_minor: h.refunded_minor,
            expires_at_ns: h.expires_at_ns,
            ended_ns: h.ended_ns,
            day: i64::from(h.day),
            status: h.status(),
        };
        let mut holds = Vec::with_capacity(self.hold_count);
        for a in &self.accounts {
            let mut slot = a.open_head;
            while slot != NIL {
                let h = &self.holds[slot as usize];
                holds.push(hold_image(self.hold_keys[slot as usize], h));
                slot = h.next_open;
            }
        }
        holds.extend(
            self.holds_iter()
                .filter(|(_, h)| h.status() != HoldStatus::Open)
                .map(|(key, h)| hold_image(key, h)),
        );
        debug_assert_eq!(holds.len(), self.hold_count);
        let dups = self
            .dups_iter()
            .map(|((account, request_id), r)| DupImage {
                account_id: account_id(account),
                request_id,
                ts_ns: r.ts_ns,
                code: r.code,
                fingerprint: r.fingerprint.to_image(),
            })
            .collect();
        let hold_reclaim = self
            .hold_reclaim
            .iter()
            .map(|&(until_ns, slot, generation)| HoldReclaimImage {
                until_ns,
                hold: self
                    .live_reclaim_entry(slot, generation)
                    .map(|(account, request_id)| (account_id(account), request_id)),
            })
            .collect();
        let dup_reclaim = self
            .dup_reclaim
            .iter()
            .map(|&(until_ns, account, request_id)| DupReclaimImage {
                until_ns,
                account_id: account_id(account),
                request_id,
            })
            .collect();
        ShardImage {
            watermark_ns: self.watermark_ns,
            accounts,
            tokens,
            holds,
            dups,
            hold_reclaim,
            dup_reclaim,
        }
    }

    /// The ended hold a hold-queue entry will reclaim, or `None` when the entry is stale
    /// (exactly the test [`Store::advance`] makes when the entry reaches the front).
    fn live_reclaim_entry(&self, slot: u32, generation: u32) -> Option<Key> {
        let h = self.holds.get(slot as usize)?;
        let key = self.hold_keys[slot as usize];
        let live = slot != NIL
            && h.generation() == generation
            && h.status() != HoldStatus::Open
            && self.find_hold(key) == Some(slot);
        live.then_some(key)
    }

    /// Rebuild a store from an image that passed `ShardImage::check` (as every image
    /// `snapshot::read_snapshot` returns has): accounts and tokens at the image's indices,
    /// each account's token list as `router::Directory::build` links it, the hold slab with
    /// its index and the open lists in the image's order, `next_expiry_ns` (exact), the
    /// duplicate records, both reclamation queues entry for entry, and the watermark.
    ///
    /// The result decides every later request exactly as the store the image was taken
    /// from would (slab slots and generations differ, which nothing observes). Tables are
    /// pre-sized for `holds_hint` holds, or the image's size if larger.
    pub fn from_image(image: &ShardImage, holds_hint: usize) -> Result<Store, String> {
        let mut account_index: FxHashMap<u64, u32> =
            FxHashMap::with_capacity_and_hasher(image.accounts.len(), Default::default());
        let mut accounts = Vec::with_capacity(image.accounts.len());
        let mut account_ids = Vec::with_capacity(image.accounts.len());
        let mut limits = Vec::new();
        for a in &image.accounts {
            let index =
                next_index(accounts.len()).ok_or("more than 2^32-1 accounts in one shard")?;
            if account_index.insert(a.id, index).is_some() {
                return Err(format!("account {} appears twice", a.id));
            }
            let these = Limits {
                per_txn_minor: a.per_txn_limit_minor,
                daily_minor: a.daily_limit_minor,
                daily_count: a.daily_count_limit,
            };
            let limits_index = add_limits(&mut limits, these)
                .ok_or("more than 2^28-2 accounts with limits in one shard")?;
            let mut account = Account::new(a.currency, a.balance_minor, a.status, limits_index);
            account.held_minor = a.held_minor;
            account
                .set_day_image(a.day)
                .map_err(|e| format!("account {}: {e}", a.id))?;
            account.day_amount_minor = a.day_amount_minor;
            account.day_count = a.day_count;
            accounts.push(account);
            account_ids.push(a.id);
        }
        let index_of = |id: u64, what: &dyn Fn() -> String| {
            account_index
                .get(&id)
                .copied()
                .ok_or_else(|| format!("{}: account {id} is not in the image", what()))
        };
        let mut tokens = Vec::with_capacity(image.tokens.len());
        for t in &image.tokens {
            let index = next_index(tokens.len()).ok_or("more than 2^32-1 tokens in one shard")?;
            let account = index_of(t.account_id, &|| format!("token {}", t.dpan))?;
            // Linked at the head in index order, as the router links them at load.
            let mut token = Token::new(t.dpan, t.status, t.expiry);
            accounts[account as usize].link_token(index, &mut token);
            tokens.push(token);
        }
        let hint = holds_hint.max(image.holds.len());
        let mut store = Store::new(accounts, account_ids, limits, tokens, hint);
        // Open holds are appended at the tail of their account's list, so the list comes
        // back in image order.
        let mut tails = vec![NIL; store.accounts.len()];
        for h in &image.holds {
            let what = || format!("hold ({}, {})", h.account_id, h.request_id);
            let account = index_of(h.account_id, &what)?;
            let slot = u32::try_from(store.holds.len())
                .ok()
                .filter(|&s| s != NIL)
                .ok_or("more than 2^32-1 holds in one shard")?;
            let open = h.status == HoldStatus::Open;
            let prev_open = if open { tails[account as usize] } else { NIL };
            let day = i32::try_from(h.day).map_err(|_| format!("{}: day out of range", what()))?;
            let mut hold = Hold {
                captured_minor: h.captured_minor,
                voided_minor: h.voided_minor,
                refunded_minor: h.refunded_minor,
                ended_ns: h.ended_ns,
                day,
                prev_open,
                ..Hold::open(h.authorized_minor, h.expires_at_ns, 0)
            };
            hold.set_status(h.status);
            store.holds.push(hold);
            store.hold_keys.push((account, h.request_id));
            let at = store.keys.entry_mut((account, h.request_id));
            if std::mem::replace(&mut store.keys.at_mut(at).hold, slot) != NIL {
                return Err(format!("{} appears twice", what()));
            }
            store.hold_count += 1;
            if open {
                if prev_open == NIL {
                    store.accounts[account as usize].open_head = slot;
                } else {
                    store.holds[prev_open as usize].next_open = slot;
                }
                tails[account as usize] = slot;
                let acct = &mut store.accounts[account as usize];
                acct.next_expiry_ns = acct.next_expiry_ns.min(h.expires_at_ns);
            }
        }
        for d in &image.dups {
            let what = || format!("duplicate record ({}, {})", d.account_id, d.request_id);
            let account = index_of(d.account_id, &what)?;
            let record = DupRecord {
                ts_ns: d.ts_ns,
                code: d.code,
                fingerprint: Fingerprint::from_image(&d.fingerprint),
            };
            let key = (account, d.request_id);
            if store.put_record(store.locate(key), key, record) {
                return Err(format!("{} appears twice", what()));
            }
        }
        store.hold_reclaim.reserve(image.hold_reclaim.len());
        for e in &image.hold_reclaim {
            let slot = match e.hold {
                None => NIL,
                Some((account_id, request_id)) => {
                    let what = || format!("reclamation entry of hold ({account_id}, {request_id})");
                    let account = index_of(account_id, &what)?;
                    store
                        .find_hold((account, request_id))
                        .filter(|&s| store.hold(s).status() != HoldStatus::Open)
                        .ok_or_else(|| format!("{}: no such ended hold", what()))?
                }
            };
            store.hold_reclaim.push_back((e.until_ns, slot, 0));
        }
        store.dup_reclaim.reserve(image.dup_reclaim.len());
        for e in &image.dup_reclaim {
            let what = || {
                format!(
                    "reclamation entry of duplicate record ({}, {})",
                    e.account_id, e.request_id
                )
            };
            let account = index_of(e.account_id, &what)?;
            store
                .dup_reclaim
                .push_back((e.until_ns, account, e.request_id));
        }
        store.watermark_ns = image.watermark_ns;
        // Look at the restored queues at the next advance.
        store.reclaim_from_ns = i64::MIN;
        Ok(store)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal::Decimal;

    fn fp(r: &Request) -> Fingerprint {
        Fingerprint::of(r, r.amount.map(AmountKey::from_decimal))
    }

    /// The per-account, per-hold and per-record memory README states comes from these.
    #[test]
    fn hot_records_keep_their_size() {
        use std::mem::{align_of, size_of};
        assert_eq!(size_of::<Account>(), 64, "one cache line per account");
        assert_eq!(align_of::<Account>(), 64);
        assert_eq!(size_of::<Token>(), 16);
        assert_eq!(size_of::<Card>(), 4);
        assert_eq!(size_of::<Limits>(), 24);
        assert_eq!(size_of::<Hold>(), 64, "one cache line per hold");
        assert_eq!(align_of::<Hold>(), 64);
        assert_eq!(size_of::<Fingerprint>(), 48);
        assert_eq!(size_of::<crate::keytable::Entry>(), 32);
        assert_eq!(size_of::<crate::rules::Routed>(), 72);
        assert_eq!(size_of::<(i64, u32, u32)>(), 16, "hold reclamation entry");
        assert_eq!(size_of::<(i64, u32, u64)>(), 24, "record reclamation entry");
    }

    #[test]
    fn account_packs_status_currency_and_limits() {
        for status in STATUSES {
            for currency in Currency::ALL {
                for limits in [0, 7, NO_LIMITS] {
                    let mut a = Account::new(currency, -5, status, limits);
                    assert_eq!(
                        (a.status(), a.currency(), a.limits_index()),
                        (status, currency, limits)
                    );
                    a.set_status(AccountStatus::Closed);
                    assert_eq!(
                        (a.status(), a.currency(), a.limits_index()),
                        (AccountStatus::Closed, currency, limits)
                    );
                }
            }
        }
    }

    #[test]
    fn fingerprint_is_compact_and_compares_as_domain_says() {
        assert!(std::mem::size_of::<Fingerprint>() <= 48);
        let base = Request::new(Kind::Capture, 1, 0)
            .with_token(Dpan::from_u64(4_000_000_000_000_001).unwrap())
            .with_amount(Decimal::new(12340, 3), Currency::Cny)
            .with_ref(7);
        let same = Request {
            amount: Some(Decimal::new(1234, 2)),
            ts_ns: 99,
            ..base
        };
        assert_eq!(fp(&base), fp(&same), "12.340 == 12.34, ts ignored");
        let variants = [
            Request {
                account_id: Some(0),
                ..base
            },
            Request {
                mcc: Some(0),
                ..base
            },
            Request {
                reference: None,
                ..base
            },
            Request {
                is_final: true,
                ..base
            },
            Request {
                currency: None,
                ..base
            },
            Request {
                currency: Some(Currency::Usd),
                ..base
            },
            Request {
                amount: None,
                ..base
            },
            Request {
                amount: Some(-Decimal::new(1234, 2)),
                ..base
            },
            Request {
                amount: Some(Decimal::MAX),
                ..base
            },
            Request {
                amount: Some(Decimal::MIN),
                ..base
            },
            Request {
                token: TokenField::Empty,
                ..base
            },
            Request {
                token: TokenField::Other(4_000_000_000_000_001),
                ..base
            },
            Request {
                kind: Kind::Refund,
                ..base
            },
        ];
        for (i, v) in variants.iter().enumerate() {
            assert_ne!(fp(&base), fp(v), "variant {i} must differ");
            for (j, w) in variants.iter().enumerate() {
                assert_eq!(i == j, fp(v) == fp(w), "variants {i} and {j}");
            }
        }
    }
}

#[cfg(test)]
mod image_tests {
    //! Store <-> image: the round trip is exact, and a store restored from an image taken
    //! at any point decides the rest of the traffic exactly as the original does, ending in
    //! the same state, including reclamation state, even when time goes backwards.

    use super::*;
    use crate::api::{AccountSpec, Expiry, TokenSpec, NS_PER_DAY};
    use crate::router::{Directory, Resolved};
    use crate::rules::{decide, Routed, Times};
    use proptest::prelude::*;
    use rust_decimal::Decimal;

    /// 2026-11-10 12:00 UTC.
    const T0: i64 = 1_794_312_000_000_000_000;
    const TOKENS: [(u64, u64, TokenStatus); 6] = [
        (4_000_000_000_000_011, 1, TokenStatus::Active),
        (4_000_000_000_000_012, 1, TokenStatus::Suspended),
        (4_000_000_000_000_021, 2, TokenStatus::Active),
        (4_000_000_000_000_022, 2, TokenStatus::Active),
        (4_000_000_000_000_031, 3, TokenStatus::Active),
        (4_000_000_000_000_041, 4, TokenStatus::Active),
    ];

    fn currency_of(account_id: u64) -> Currency {
        if account_id == 2 {
            Currency::Jpy
        } else {
            Currency::Cny
        }
    }

    fn universe() -> (Vec<AccountSpec>, Vec<TokenSpec>) {
        let d = |s: &str| Decimal::from_str_exact(s).unwrap();
        let account = |id, balance: &str, status, daily: Option<&str>, count| AccountSpec {
            account_id: id,
            currency: currency_of(id),
            balance: d(balance),
            status,
            per_txn_limit: None,
            daily_limit: daily.map(d),
            daily_count_limit: count,
        };
        let accounts = vec![
            account(1, "1000.00", AccountStatus::Active, Some("600.00"), Some(5)),
            account(2, "50000", AccountStatus::Active, None, None),
            account(3, "100.00", AccountStatus::Frozen, None, None),
            account(4, "20.00", AccountStatus::Closed, None, None),
        ];
        let tokens = TOKENS
            .iter()
            .map(|&(dpan, account_id, status)| TokenSpec {
                token: Dpan::from_u64(dpan).unwrap(),
                account_id,
                status,
                expiry: Expiry::new(2030, 12).unwrap(),
            })
            .collect();
        (accounts, tokens)
    }

    fn kind() -> impl Strategy<Value = Kind> {
        prop_oneof![
            6 => Just(Kind::Authorize),
            2 => Just(Kind::Increment),
            4 => Just(Kind::Capture),
            3 => Just(Kind::Void),
            2 => Just(Kind::Refund),
            1 => Just(Kind::Credit),
            2 => prop::sample::select(Kind::ALL.to_vec()),
        ]
    }

    /// Steps in ns against a TTL of 100, a window of 30 and a retention of 0 or 50: most
    /// small, some past every period, some backwards, some a whole day (new day counters).
    fn step() -> impl Strategy<Value = i64> {
        prop_oneof![
            3 => Just(0i64),
            4 => 1i64..10,
            3 => 25i64..60,
            1 => Just(-80i64),
            1 => Just(NS_PER_DAY),
        ]
    }

    /// A request row: (step, kind, request id, token index, account id, amount, currency
    /// choice, ref, final).
    fn traffic() -> impl Strategy<Value = Vec<Request>> {
        let row = (
            step(),
            kind(),
            0u64..12,
            0usize..TOKENS.len(),
            1u64..=5,
            prop_oneof![1 => Just(None), 8 => (1i64..40_000).prop_map(Some), 1 => Just(Some(0))],
            0u8..20,
            prop_oneof![1 => Just(None), 6 => (0u64..12).prop_map(Some)],
            any::<bool>(),
        );
        prop::collection::vec(row, 1..120).prop_map(|rows| {
            let mut ts = T0;
            rows.into_iter()
                .map(
                    |(step, kind, id, t, account_id, minor, cur, reference, fin)| {
                        ts += step;
                        let (dpan, owner, _) = TOKENS[t];
                        let owner = if kind.addressed_by_token() {
                            owner
                        } else {
                            account_id
                        };
                        let c = currency_of(owner);
                        let mut r = Request::new(kind, id, ts)
                            .with_token(Dpan::from_u64(dpan).unwrap())
                            .with_account(account_id);
                        r.amount = minor.map(|m| Decimal::new(m, c.decimals()));
                        r.currency = match cur {
                            0 => None,
                            1 => Some(Currency::Usd),
                            _ => Some(c),
                        };
                        r.reference = reference;
                        r.is_final = fin;
                        r
                    },
                )
                .collect()
        })
    }

    fn build() -> (Directory, Store) {
        let (accounts, tokens) = universe();
        let (dir, mut stores) = Directory::build(1, &accounts, &tokens, 4).unwrap();
        (dir, stores.pop().unwrap())
    }

    fn routed(dir: &Directory, traffic: &[Request]) -> Vec<Routed> {
        traffic
            .iter()
            .filter_map(|r| match dir.resolve(r) {
                Resolved::Shard { account, token, .. } => Some(Routed::new(r, account, token)),
                Resolved::Answer(_) => None,
            })
            .collect()
    }

    fn run(store: &mut Store, times: &Times, ops: &[Routed]) -> Vec<Code> {
        ops.iter().map(|op| decide(store, times, op)).collect()
    }

    fn times(retention_ns: i64) -> Times {
        Times {
            hold_ttl_ns: 100,
            dup_window_ns: 30,
            retention_ns,
        }
    }

    /// Run `ops[..cut]`, round-trip the store through its image, run the rest; compare with
    /// an uninterrupted run. Returns the image taken at the cut.
    fn check(ops: &[Routed], cut: usize, times: &Times) -> Result<ShardImage, TestCaseError> {
        let (_, mut whole) = build();
        let want = run(&mut whole, times, ops);

        let (_, mut before) = build();
        let got_prefix = run(&mut before, times, &ops[..cut]);
        let image = before.to_image();
        prop_assert_eq!(image.check(), Ok(()));
        let mut after = Store::from_image(&image, 4).unwrap();
        prop_assert_eq!(
            after.to_image().canonical(),
            image.clone().canonical(),
            "image -> store -> image"
        );
        let got_suffix = run(&mut after, times, &ops[cut..]);
        let got: Vec<Code> = got_prefix.into_iter().chain(got_suffix).collect();
        prop_assert_eq!(&got, &want, "decisions after a restore at {}", cut);
        prop_assert_eq!(
            after.to_image().canonical(),
            whole.to_image().canonical(),
            "final state, reclamation queues included"
        );
        Ok(image)
    }

    proptest! {
        /// The shard's shortcut to minor units gives exactly what the normalized amount
        /// gives, for every currency, on amounts of every size, sign and number of decimals.
        #[test]
        fn amount_minor_is_valid_minor_of_the_normalized_amount(
            mantissa in prop_oneof![
                -1_000i64..1_000,
                0i64..=200_000_000_000,
                any::<i64>(),
            ].prop_map(i128::from),
            wide in prop_oneof![Just(0i128), Just(1i128 << 64), Just((1i128 << 95) - 1)],
            scale in 0u32..6,
            currency in prop::sample::select(Currency::ALL.to_vec()),
            present in any::<bool>(),
        ) {
            let m = if wide != 0 { wide.saturating_sub(mantissa.abs()) } else { mantissa };
            let amount = present.then(|| Decimal::from_i128_with_scale(m, scale));
            let req = Request {
                amount,
                currency: Some(currency),
                ..Request::new(Kind::Authorize, 1, 0)
            };
            let fp = Fingerprint::of(&req, amount.map(AmountKey::from_decimal));
            prop_assert_eq!(
                fp.amount_minor(currency),
                fp.amount().and_then(|a| a.valid_minor(currency))
            );
        }
    }

    proptest! {
        /// The router's direct packing of a request equals packing its normalized parts,
        /// for decimals of every size, sign and scale and every optional field present or
        /// not.
        #[test]
        fn of_request_is_of_the_normalized_amount(
            lo in prop_oneof![Just(0u32), 1u32..1_000, any::<u32>()],
            mid in prop_oneof![Just(0u32), any::<u32>()],
            hi in prop_oneof![Just(0u32), Just(0u32), any::<u32>()],
            negative in any::<bool>(),
            scale in 0u32..=28,
            trailing_zeros in 0u32..6,
            present in any::<[bool; 6]>(),
            token in prop_oneof![
                Just(TokenField::Empty),
                (1_000_000_000_000u64..10_000_000_000_000_000_000)
                    .prop_map(|t| TokenField::Dpan(Dpan::from_u64(t).unwrap())),
                any::<u64>().prop_map(TokenField::Other),
            ],
            kind in prop::sample::select(Kind::ALL.to_vec()),
            currency in prop::sample::select(Currency::ALL.to_vec()),
            ids in any::<[u64; 3]>(),
        ) {
            let mut amount = Decimal::from_parts(lo, mid, hi, negative, scale);
            // Trailing zeros the normalization must strip (when they still fit).
            for _ in 0..trailing_zeros {
                let Some(m) = amount.mantissa().checked_mul(10) else { break };
                if m.unsigned_abs() >= 1u128 << 96 || amount.scale() >= 28 {
                    break;
                }
                amount = Decimal::from_i128_with_scale(m, amount.scale() + 1);
            }
            let req = Request {
                token,
                account_id: present[0].then_some(ids[0]),
                amount: present[1].then_some(amount),
                currency: present[2].then_some(currency),
                mcc: present[3].then_some(ids[1]),
                reference: present[4].then_some(ids[2]),
                is_final: present[5],
                ..Request::new(kind, 7, 0)
            };
            prop_assert_eq!(
                Fingerprint::of_request(&req),
                Fingerprint::of(&req, req.amount.map(AmountKey::from_decimal))
            );
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        #[test]
        fn a_restored_store_decides_and_ends_exactly_like_the_original(
            traffic in traffic(),
            cut in any::<prop::sample::Index>(),
            retention_ns in prop_oneof![Just(0i64), Just(50i64)],
        ) {
            let (dir, _) = build();
            let ops = routed(&dir, &traffic);
            let cut = cut.index(ops.len() + 1);
            check(&ops, cut, &times(retention_ns))?;
        }
    }

    /// The property above is only as good as the states it reaches: demand images with live
    /// and stale hold-queue entries, ended holds of both kinds, open holds, and records.
    #[test]
    fn the_traffic_reaches_every_part_of_the_image() {
        use proptest::strategy::ValueTree;
        use proptest::test_runner::TestRunner;
        let mut runner = TestRunner::deterministic();
        let (mut stale, mut live, mut closed, mut expired, mut open, mut dups) =
            (false, false, false, false, false, false);
        for _ in 0..300 {
            let traffic = traffic().new_tree(&mut runner).unwrap().current();
            let (dir, _) = build();
            let ops = routed(&dir, &traffic);
            let image = check(&ops, ops.len(), &times(50)).unwrap();
            stale |= image.hold_reclaim.iter().any(|e| e.hold.is_none());
            live |= image.hold_reclaim.iter().any(|e| e.hold.is_some());
            closed |= image.holds.iter().any(|h| h.status == HoldStatus::Closed);
            expired |= image.holds.iter().any(|h| h.status == HoldStatus::Expired);
            open |= image.holds.iter().any(|h| h.status == HoldStatus::Open);
            dups |= !image.dups.is_empty() && !image.dup_reclaim.is_empty();
        }
        assert!(
            stale && live && closed && expired && open && dups,
            "stale {stale} live {live} closed {closed} expired {expired} open {open} dups {dups}"
        );
    }

    #[test]
    fn fingerprints_round_trip_through_their_image() {
        let amounts = [
            None,
            Some(Decimal::ZERO),
            Some(Decimal::new(12340, 3)),
            Some(-Decimal::new(5, 0)),
            Some(Decimal::MAX),
            Some(Decimal::MIN),
            Some(Decimal::from_parts(1, 0, 0, false, 28)),
        ];
        let tokens = [
            TokenField::Empty,
            TokenField::Dpan(Dpan::from_u64(Dpan::MAX).unwrap()),
            TokenField::Other(u64::MAX),
        ];
        for (i, c) in Currency::ALL.into_iter().enumerate() {
            assert_eq!(c as usize, i, "currency codes are ALL indices");
        }
        for kind in Kind::ALL {
            assert_eq!(Kind::ALL[kind as usize], kind, "kind codes are ALL indices");
            for (i, amount) in amounts.into_iter().enumerate() {
                let currency = [None, Some(Currency::Usd), Some(Currency::Jpy)][i % 3];
                let mut r = Request::new(kind, 1, 0).with_token(tokens[i % 3]);
                r.amount = amount;
                r.currency = currency;
                r.account_id = (i % 2 == 0).then_some(u64::MAX);
                r.mcc = (i % 3 == 0).then_some(0);
                r.reference = (i % 2 == 1).then_some(7);
                r.is_final = i % 2 == 0;
                let fp = Fingerprint::of(&r, r.amount.map(AmountKey::from_decimal));
                assert_eq!(Fingerprint::from_image(&fp.to_image()), fp, "{r:?}");
            }
        }
    }
}
