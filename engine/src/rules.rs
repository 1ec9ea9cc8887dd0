//! The DOMAIN.md decisions: one request against one shard's [`Store`], checks in their
//! order, effects applied only on `00`.

use crate::api::{china_day, AccountStatus, Code, HoldStatus, Kind, Request, TokenStatus};
use crate::keytable;
use crate::keytable::Probe;
use crate::store::{dup_ref, Account, DupRecord, Fingerprint, Hold, Store, NIL};

/// The time rules of a shard.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Times {
    pub hold_ttl_ns: i64,
    pub dup_window_ns: i64,
    pub retention_ns: i64,
}

/// A request already routed to its shard, in the form the shard decides it: its
/// fingerprint (every field but `request_id` and `ts_ns`, amount normalized), id, time, and
/// the account (and token) it resolved to. 72 bytes where the `Request` is 104, made once
/// by the router, off the shard thread.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Routed {
    pub fingerprint: Fingerprint,
    pub request_id: u64,
    pub ts_ns: i64,
    pub account: u32,
    /// Token index in the shard, or [`NIL`] for kinds addressed by account.
    pub token: u32,
}

impl Routed {
    /// `req`, resolved to these indices.
    #[inline]
    pub fn new(req: &Request, account: u32, token: u32) -> Routed {
        Routed {
            fingerprint: Fingerprint::of_request(req),
            request_id: req.request_id,
            ts_ns: req.ts_ns,
            account,
            token,
        }
    }

    #[inline]
    pub fn kind(&self) -> Kind {
        self.fingerprint.kind()
    }

    #[inline]
    pub fn reference(&self) -> Option<u64> {
        self.fingerprint.reference()
    }

    /// The `ref` of a kind that uses one (the hold it names), if given.
    #[inline]
    pub fn referred(&self) -> Option<u64> {
        self.reference().filter(|_| self.kind().uses_ref())
    }
}

/// What the decide loop works out about an op while it prefetches for it, so deciding it
/// does not work it out again: the hashes of its own key and of its `ref`'s, and where the
/// `ref`'s entry was a few requests before (checked again before use: the table may have
/// moved it since).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Hints {
    pub own_hash: u64,
    pub ref_hash: u64,
    /// [`NIL`]: not found, or not looked for.
    pub ref_found: u32,
    /// The slot of the hold the `ref` named then (a hint for prefetching only).
    pub ref_hold: u32,
}

impl Hints {
    /// A placeholder.
    pub const NONE: Hints = Hints {
        own_hash: 0,
        ref_hash: 0,
        ref_found: NIL,
        ref_hold: NIL,
    };

    /// The hashes of `op`'s keys, and no entry position.
    #[inline]
    pub fn of(op: &Routed) -> Hints {
        Hints {
            own_hash: keytable::hash((op.account, op.request_id)),
            ref_hash: op.referred().map_or(0, |r| keytable::hash((op.account, r))),
            ref_found: NIL,
            ref_hold: NIL,
        }
    }
}

/// Decide `op` and apply its effects. Never panics on any request; panics only on a broken
/// money invariant (a bug), which stops the shard loudly.
pub(crate) fn decide(store: &mut Store, times: &Times, op: &Routed) -> Code {
    decide_hinted(store, times, op, &Hints::of(op))
}

/// [`decide`] with `hints` (of this op, from [`Hints::of`] or the decide loop's stages).
#[inline]
pub(crate) fn decide_hinted(store: &mut Store, times: &Times, op: &Routed, hints: &Hints) -> Code {
    let ts = op.ts_ns;
    let kind = op.kind();
    store.advance(ts, times.dup_window_ns);
    store.expire_account(op.account, ts, times.retention_ns);

    // Resolution, second half: a deactivated token is unknown to authorizations and token
    // admin (captures, voids and refunds still resolve it). Not remembered.
    if op.token != NIL
        && store.card(op.account, op.token).status() == TokenStatus::Deactivated
        && matches!(
            kind,
            Kind::Authorize
                | Kind::Increment
                | Kind::TokenSuspend
                | Kind::TokenResume
                | Kind::TokenDeactivate
        )
    {
        return Code::InvalidCard;
    }

    // Duplicates: (account, request_id) inside the window of its record.
    let key = (op.account, op.request_id);
    let fingerprint = op.fingerprint;
    // One probe for the request's own key serves the duplicate check, an authorize's hold
    // check and both inserts: nothing below removes a key.
    let mut at = store.locate_hashed(key, hints.own_hash);
    if let Some(rec) = store.dup_at(at) {
        if rec.in_window_at(ts, times.dup_window_ns) {
            return if *store.fingerprint(&rec) == fingerprint {
                rec.code
            } else {
                Code::Duplicate
            };
        }
    }

    let code = match kind {
        Kind::Authorize => authorize(store, times, op, &mut at),
        Kind::Increment => increment(store, times, op, hints),
        Kind::Capture => capture(store, times, op, hints),
        Kind::Void => void(store, times, op, hints),
        Kind::Refund => refund(store, times, op, hints),
        Kind::Credit => credit(store, op),
        Kind::TokenSuspend | Kind::TokenResume | Kind::TokenDeactivate => token_admin(store, op),
        Kind::AccountFreeze | Kind::AccountUnfreeze | Kind::AccountClose => {
            account_admin(store, op)
        }
    };
    store.record_at(
        at,
        key,
        DupRecord {
            ts_ns: ts,
            code,
            fingerprint,
        },
        times.dup_window_ns,
    );
    code
}

/// The request amount in the account's minor units, if the amount is valid and the currency
/// is the account's (DOMAIN.md `13`).
#[inline]
fn amount_in(op: &Routed, acct: &Account) -> Option<i64> {
    let currency = acct.currency();
    if !op.fingerprint.currency_is(currency) {
        return None;
    }
    op.fingerprint.amount_minor(currency)
}

/// The hold `ref` names, if still referable; else the `12`/`25` answer.
fn referable_hold(store: &Store, times: &Times, op: &Routed, hints: &Hints) -> Result<u32, Code> {
    let ts = op.ts_ns;
    if let Some(r) = op.reference() {
        if let Some(e) = store.entry_hinted((op.account, r), hints.ref_hash, hints.ref_found) {
            let slot = e.hold;
            if slot != NIL && store.hold(slot).referable_at(ts, times.retention_ns) {
                return Ok(slot);
            }
            if let Some(rec) = dup_ref(e) {
                if rec.in_window_at(ts, times.dup_window_ns)
                    && rec.is_authorize
                    && rec.code != Code::Approved
                {
                    return Err(Code::InvalidTransaction);
                }
            }
        }
    }
    Err(Code::NoRecord)
}

/// Token status and expiry, then account status: the shared middle of authorize/increment.
fn card_and_account_ok(store: &Store, op: &Routed) -> Result<(), Code> {
    let card = store.card(op.account, op.token);
    if card.status() == TokenStatus::Suspended {
        return Err(Code::Restricted);
    }
    if op.ts_ns >= card.expired_from_ns() {
        return Err(Code::ExpiredCard);
    }
    match store.accounts[op.account as usize].status() {
        AccountStatus::Closed => Err(Code::NoAccount),
        AccountStatus::Frozen => Err(Code::Restricted),
        AccountStatus::Active => Ok(()),
    }
}

macro_rules! check {
    ($e:expr) => {
        if let Err(code) = $e {
            return code;
        }
    };
}

/// `at` locates the request's own key (and still does afterwards).
fn authorize(store: &mut Store, times: &Times, op: &Routed, at: &mut Probe) -> Code {
    let ts = op.ts_ns;
    // 94: the request id names a hold of this account that is still referable.
    if let Some(slot) = store.hold_at(*at) {
        if store.hold(slot).referable_at(ts, times.retention_ns) {
            return Code::Duplicate;
        }
    }
    let Some(amount) = amount_in(op, &store.accounts[op.account as usize]) else {
        return Code::InvalidAmount;
    };
    check!(card_and_account_ok(store, op));
    let day = china_day(ts);
    let limits = store.limits(op.account);
    let acct = &mut store.accounts[op.account as usize];
    if amount > limits.per_txn_minor {
        return Code::AmountLimit;
    }
    acct.roll_day(day);
    if acct.day_amount_minor.saturating_add(amount) > limits.daily_minor {
        return Code::AmountLimit;
    }
    if acct.day_count.saturating_add(1) > limits.daily_count {
        return Code::CountLimit;
    }
    if amount > acct.available_minor() {
        return Code::InsufficientFunds;
    }
    let Some(held) = acct.held_minor.checked_add(amount) else {
        return Code::InvalidAmount;
    };
    acct.held_minor = held;
    acct.day_amount_minor = acct.day_amount_minor.saturating_add(amount);
    acct.day_count = acct.day_count.saturating_add(1);
    store.insert_open_hold_at(
        at,
        (op.account, op.request_id),
        Hold::open(amount, ts.saturating_add(times.hold_ttl_ns), day),
    );
    Code::Approved
}

fn increment(store: &mut Store, times: &Times, op: &Routed, hints: &Hints) -> Code {
    let ts = op.ts_ns;
    let Some(amount) = amount_in(op, &store.accounts[op.account as usize]) else {
        return Code::InvalidAmount;
    };
    let slot = match referable_hold(store, times, op, hints) {
        Ok(s) => s,
        Err(c) => return c,
    };
    if store.hold(slot).status() != HoldStatus::Open {
        return Code::HoldNotOpen;
    }
    check!(card_and_account_ok(store, op));
    let authorized = store.hold(slot).authorized_minor;
    let limits = store.limits(op.account);
    let acct = &mut store.accounts[op.account as usize];
    if authorized.saturating_add(amount) > limits.per_txn_minor {
        return Code::AmountLimit;
    }
    acct.roll_day(china_day(ts));
    if acct.day_amount_minor.saturating_add(amount) > limits.daily_minor {
        return Code::AmountLimit;
    }
    if amount > acct.available_minor() {
        return Code::InsufficientFunds;
    }
    let (Some(held), Some(new_authorized), Some(day_amount)) = (
        acct.held_minor.checked_add(amount),
        authorized.checked_add(amount),
        acct.day_amount_minor.checked_add(amount),
    ) else {
        return Code::InvalidAmount;
    };
    acct.held_minor = held;
    acct.day_amount_minor = day_amount;
    let expires_at_ns = ts.saturating_add(times.hold_ttl_ns);
    acct.next_expiry_ns = acct.next_expiry_ns.min(expires_at_ns);
    let h = store.hold_mut(slot);
    h.authorized_minor = new_authorized;
    h.expires_at_ns = expires_at_ns;
    Code::Approved
}

fn capture(store: &mut Store, times: &Times, op: &Routed, hints: &Hints) -> Code {
    let ts = op.ts_ns;
    let Some(amount) = amount_in(op, &store.accounts[op.account as usize]) else {
        return Code::InvalidAmount;
    };
    let slot = match referable_hold(store, times, op, hints) {
        Ok(s) => s,
        Err(c) => return c,
    };
    let h = store.hold(slot);
    if h.status() == HoldStatus::Closed {
        return Code::HoldNotOpen;
    }
    let remaining = h.remaining_minor();
    if amount > remaining {
        return Code::InvalidAmount;
    }
    let status = h.status();
    let captured = h.captured_minor + amount; // <= authorized
    let acct = &mut store.accounts[op.account as usize];
    let Some(balance) = acct.balance_minor.checked_sub(amount) else {
        return Code::InvalidAmount;
    };
    acct.balance_minor = balance;
    store.hold_mut(slot).captured_minor = captured;
    if status == HoldStatus::Open {
        let left = remaining - amount;
        let release = if op.fingerprint.is_final() || left == 0 {
            left
        } else {
            0
        };
        let acct = &mut store.accounts[op.account as usize];
        acct.held_minor -= amount + release;
        assert!(acct.held_minor >= 0, "held went negative on capture");
        if op.fingerprint.is_final() || left == 0 {
            store.end_hold(op.account, slot, HoldStatus::Closed, ts, times.retention_ns);
        }
    }
    Code::Approved
}

fn void(store: &mut Store, times: &Times, op: &Routed, hints: &Hints) -> Code {
    let ts = op.ts_ns;
    let acct = &store.accounts[op.account as usize];
    if op
        .fingerprint
        .currency()
        .is_some_and(|c| c != acct.currency())
    {
        return Code::InvalidAmount;
    }
    let given = match op.fingerprint.amount() {
        None => None,
        Some(a) => match a.valid_minor(acct.currency()) {
            Some(m) => Some(m),
            None => return Code::InvalidAmount,
        },
    };
    let slot = match referable_hold(store, times, op, hints) {
        Ok(s) => s,
        Err(c) => return c,
    };
    let h = store.hold(slot);
    if h.status() != HoldStatus::Open {
        return Code::HoldNotOpen;
    }
    let remaining = h.remaining_minor();
    let amount = given.unwrap_or(remaining);
    if amount > remaining {
        return Code::InvalidAmount;
    }
    let hold_day = i64::from(h.day);
    let voided = h.voided_minor + amount;
    let day = china_day(ts);
    let acct = &mut store.accounts[op.account as usize];
    acct.held_minor -= amount;
    assert!(acct.held_minor >= 0, "held went negative on void");
    if day == hold_day {
        acct.roll_day(day);
        acct.day_amount_minor = acct.day_amount_minor.saturating_sub(amount);
    }
    store.hold_mut(slot).voided_minor = voided;
    if remaining == amount {
        store.end_hold(op.account, slot, HoldStatus::Closed, ts, times.retention_ns);
    }
    Code::Approved
}

fn refund(store: &mut Store, times: &Times, op: &Routed, hints: &Hints) -> Code {
    let Some(amount) = amount_in(op, &store.accounts[op.account as usize]) else {
        return Code::InvalidAmount;
    };
    let slot = match referable_hold(store, times, op, hints) {
        Ok(s) => s,
        Err(c) => return c,
    };
    let h = store.hold(slot);
    if amount > h.captured_minor - h.refunded_minor {
        return Code::InvalidAmount;
    }
    let refunded = h.refunded_minor + amount;
    let acct = &mut store.accounts[op.account as usize];
    let Some(balance) = acct.balance_minor.checked_add(amount) else {
        return Code::InvalidAmount;
    };
    acct.balance_minor = balance;
    store.hold_mut(slot).refunded_minor = refunded;
    Code::Approved
}

fn credit(store: &mut Store, op: &Routed) -> Code {
    let acct = &mut store.accounts[op.account as usize];
    let Some(amount) = amount_in(op, acct) else {
        return Code::InvalidAmount;
    };
    if acct.status() == AccountStatus::Closed {
        return Code::NoAccount;
    }
    let Some(balance) = acct.balance_minor.checked_add(amount) else {
        return Code::InvalidAmount;
    };
    acct.balance_minor = balance;
    Code::Approved
}

fn token_admin(store: &mut Store, op: &Routed) -> Code {
    if store.accounts[op.account as usize].status() == AccountStatus::Closed {
        return Code::InvalidTransaction;
    }
    let status = store.card(op.account, op.token).status();
    let (from_ok, to) = match op.kind() {
        Kind::TokenSuspend => (status == TokenStatus::Active, TokenStatus::Suspended),
        Kind::TokenResume => (status == TokenStatus::Suspended, TokenStatus::Active),
        // Deactivated tokens were answered 14 at resolution.
        _ => (true, TokenStatus::Deactivated),
    };
    if !from_ok {
        return Code::InvalidTransaction;
    }
    store.set_token_status(op.account, op.token, to);
    Code::Approved
}

fn account_admin(store: &mut Store, op: &Routed) -> Code {
    let acct = &mut store.accounts[op.account as usize];
    let (from_ok, to) = match op.kind() {
        Kind::AccountFreeze => (
            acct.status() == AccountStatus::Active,
            AccountStatus::Frozen,
        ),
        Kind::AccountUnfreeze => (
            acct.status() == AccountStatus::Frozen,
            AccountStatus::Active,
        ),
        _ => (
            acct.status() != AccountStatus::Closed,
            AccountStatus::Closed,
        ),
    };
    if !from_ok {
        return Code::InvalidTransaction;
    }
    acct.set_status(to);
    if to == AccountStatus::Closed {
        let mut t = acct.token_head();
        while t != NIL {
            store.set_token_status(op.account, t, TokenStatus::Deactivated);
            t = store.tokens[t as usize].next_in_account();
        }
    }
    Code::Approved
}
