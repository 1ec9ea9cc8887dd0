//! Plain reference model of DOMAIN.md: one thread, `BTreeMap`s, nothing purged, every rule
//! written out in the order DOMAIN.md lists it. It is the oracle the sharded engine is tested
//! against, so it trades all speed for being obviously right.
//!
//! Reading guide: [`Model::apply`] is resolution, expiry, the duplicate check, then one
//! function per kind whose body is DOMAIN.md's check list, top to bottom. Every check runs
//! before any state is touched, so a decline changes nothing but the duplicate record.
//!
//! Nothing is ever deleted: holds and duplicate records stay in their maps for the model's
//! whole life, and "referable" and "inside the window" are computed from their timestamps at
//! the moment of each request. A hold is only ever replaced when an approved `authorize`
//! reuses its key after the old hold stopped being referable.
//!
//! Overflow: money is `i64` minor units with checked arithmetic. An approved effect that
//! would overflow (a balance, `held`, a hold's totals, a day amount, `available`, or
//! `ts + ttl`) is declined with `13` instead (not in DOMAIN.md; only reachable with balances
//! near ±9.2e16 major units or timestamps near the end of `i64`).

use std::collections::BTreeMap;

use crate::api::{
    china_day, from_minor, to_minor, AccountSpec, AccountState, AccountStatus, AmountKey, Code,
    Currency, Decision, Dpan, Expiry, HoldState, HoldStatus, Kind, Request, StateExport,
    TokenField, TokenSpec, TokenState, TokenStatus, NS_PER_DAY,
};

/// The three durations the rules depend on (DOMAIN.md "Time"; defaults 7 d, 24 h, 45 d).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ModelConfig {
    /// Life of a hold from its authorization or last increment.
    pub hold_ttl_ns: i64,
    /// A duplicate record answers repeats while `ts < record + dup_window_ns`.
    pub dup_window_ns: i64,
    /// A closed or expired hold stays referable while `ts < ended + retention_ns`.
    pub retention_ns: i64,
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig {
            hold_ttl_ns: 7 * NS_PER_DAY,
            dup_window_ns: NS_PER_DAY,
            retention_ns: 45 * NS_PER_DAY,
        }
    }
}

/// The reference model: the whole state of every account, token, hold and duplicate record.
#[derive(Clone, Debug)]
pub struct Model {
    config: ModelConfig,
    accounts: BTreeMap<u64, Account>,
    tokens: BTreeMap<Dpan, Token>,
    /// Keyed by (account, the authorization's `request_id`).
    holds: BTreeMap<(u64, u64), Hold>,
    /// Keyed by (resolved account, `request_id`); the latest record of each key.
    records: BTreeMap<(u64, u64), Record>,
}

#[derive(Clone, Debug)]
struct Account {
    currency: Currency,
    balance_minor: i64,
    held_minor: i64,
    status: AccountStatus,
    per_txn_limit_minor: Option<i64>,
    daily_limit_minor: Option<i64>,
    daily_count_limit: Option<u64>,
    /// Day counters by China-time day (days since 1970-01-01, see `api::china_day`).
    days: BTreeMap<i64, Day>,
}

impl Account {
    fn day(&self, day: i64) -> Day {
        self.days.get(&day).copied().unwrap_or_default()
    }

    /// `available = balance - held`, exact (i128 cannot overflow).
    fn available(&self) -> i128 {
        i128::from(self.balance_minor) - i128::from(self.held_minor)
    }
}

/// What one China-time day has approved so far.
#[derive(Clone, Copy, Debug, Default)]
struct Day {
    /// Approved `authorize` and `increment` amounts, less same-day voids.
    amount_minor: i64,
    /// Approved `authorize` requests.
    count: u64,
}

#[derive(Clone, Debug)]
struct Token {
    account_id: u64,
    status: TokenStatus,
    expiry: Expiry,
}

#[derive(Clone, Debug)]
struct Hold {
    authorized_minor: i64,
    captured_minor: i64,
    voided_minor: i64,
    refunded_minor: i64,
    expires_at_ns: i64,
    status: HoldStatus,
    /// China-time day of the authorization (for the same-day void rule).
    day: i64,
    /// `ts_ns` of the request that closed it (only when `status == Closed`).
    closed_at_ns: Option<i64>,
}

impl Hold {
    /// `authorized - captured - voided` (DOMAIN.md "Time").
    fn remaining_minor(&self) -> i64 {
        self.authorized_minor - self.captured_minor - self.voided_minor
    }

    /// When the hold ended: the closing request's `ts_ns`, or `expires_at` if it expired;
    /// `None` while open.
    fn ended_ns(&self) -> Option<i64> {
        match self.status {
            HoldStatus::Open => None,
            HoldStatus::Closed => Some(
                self.closed_at_ns
                    .expect("a closed hold knows when it closed"),
            ),
            HoldStatus::Expired => Some(self.expires_at_ns),
        }
    }

    /// DOMAIN.md "Time": referable while open, or while `ts < ended + retention`.
    /// Expiry at `ts_ns` must already have been applied.
    fn referable_at(&self, ts_ns: i64, retention_ns: i64) -> bool {
        match self.ended_ns() {
            None => true,
            Some(ended) => ts_ns < ended.saturating_add(retention_ns),
        }
    }
}

/// Every field of a request but `ts_ns`, with amounts as exact normalized numbers: two
/// requests are an exact repeat when these are equal (DOMAIN.md "Duplicates"; `final` is a
/// `bool`, so an empty `final` already is `0`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Fields {
    request_id: u64,
    kind: Kind,
    token: TokenField,
    account_id: Option<u64>,
    amount: Option<AmountKey>,
    currency: Option<Currency>,
    mcc: Option<u64>,
    reference: Option<u64>,
    is_final: bool,
}

impl Fields {
    fn of(req: &Request) -> Fields {
        Fields {
            request_id: req.request_id,
            kind: req.kind,
            token: req.token,
            account_id: req.account_id,
            amount: req.amount.map(AmountKey::from_decimal),
            currency: req.currency,
            mcc: req.mcc,
            reference: req.reference,
            is_final: req.is_final,
        }
    }
}

/// A duplicate record: the request decided under a key, when, and its answer.
#[derive(Clone, Copy, Debug)]
struct Record {
    ts_ns: i64,
    fields: Fields,
    code: Code,
}

/// Early return of a decline code from a check.
type Check<T> = Result<T, Code>;

impl Model {
    /// Load accounts and tokens. `Err` names the first inconsistency: a duplicate account id
    /// or token, a token of an unknown account, a balance or limit with more decimals than
    /// the currency (or outside `i64` minor units), or a negative limit.
    pub fn new(
        config: ModelConfig,
        accounts: &[AccountSpec],
        tokens: &[TokenSpec],
    ) -> Result<Model, String> {
        let mut model = Model {
            config,
            accounts: BTreeMap::new(),
            tokens: BTreeMap::new(),
            holds: BTreeMap::new(),
            records: BTreeMap::new(),
        };
        for spec in accounts {
            let id = spec.account_id;
            let currency = spec.currency;
            let balance_minor = to_minor(spec.balance, currency).ok_or_else(|| {
                format!(
                    "account {id}: balance {} does not fit {currency}",
                    spec.balance
                )
            })?;
            let limit = |name: &str, value: Option<rust_decimal::Decimal>| {
                value
                    .map(|v| match to_minor(v, currency) {
                        Some(m) if m >= 0 => Ok(m),
                        Some(_) => Err(format!("account {id}: {name} {v} is negative")),
                        None => Err(format!("account {id}: {name} {v} does not fit {currency}")),
                    })
                    .transpose()
            };
            let account = Account {
                currency,
                balance_minor,
                held_minor: 0,
                status: spec.status,
                per_txn_limit_minor: limit("per_txn_limit", spec.per_txn_limit)?,
                daily_limit_minor: limit("daily_limit", spec.daily_limit)?,
                daily_count_limit: spec.daily_count_limit,
                days: BTreeMap::new(),
            };
            if model.accounts.insert(id, account).is_some() {
                return Err(format!("account {id} appears twice"));
            }
        }
        for spec in tokens {
            if !model.accounts.contains_key(&spec.account_id) {
                return Err(format!(
                    "token {} names unknown account {}",
                    spec.token, spec.account_id
                ));
            }
            // DOMAIN.md "Admin": tokens of an account closed at load keep their status.
            let token = Token {
                account_id: spec.account_id,
                status: spec.status,
                expiry: spec.expiry,
            };
            if model.tokens.insert(spec.token, token).is_some() {
                return Err(format!("token {} appears twice", spec.token));
            }
        }
        Ok(model)
    }

    /// Decide one request and apply its effect (DOMAIN.md "Decisions").
    ///
    /// Requests are expected in non-decreasing `ts_ns` per account (DOMAIN.md "Time"). If a
    /// caller goes back in time the answer is still deterministic: expiry never reopens a
    /// hold, and windows, retention, day counters and token expiry use the request's `ts_ns`.
    pub fn apply(&mut self, req: &Request) -> Decision {
        let (code, account_id) = self.decide(req);
        if let Some(id) = account_id {
            self.assert_invariants(id);
        }
        Decision {
            request_id: req.request_id,
            code,
        }
    }

    /// State as of `as_of_ns`, with the expiry rule applied to every account (holds open with
    /// `expires_at <= as_of_ns` count as expired). Does not mutate the model.
    ///
    /// Holds: exactly those still referable at `as_of_ns` (open, or closed/expired with
    /// `as_of_ns < ended + retention`), as `StateExport` documents; older holds are kept by
    /// the model but not exported. Accounts by id, holds by (account, request id), tokens by
    /// token.
    pub fn export(&self, as_of_ns: i64) -> StateExport {
        let mut at = self.clone();
        let ids: Vec<u64> = at.accounts.keys().copied().collect();
        for id in ids {
            at.expire_holds(id, as_of_ns);
        }
        let accounts = at
            .accounts
            .iter()
            .map(|(&account_id, a)| {
                let available = i64::try_from(a.available())
                    .expect("available fits i64: effects that break this are declined");
                AccountState {
                    account_id,
                    currency: a.currency,
                    balance: from_minor(a.balance_minor, a.currency),
                    held: from_minor(a.held_minor, a.currency),
                    available: from_minor(available, a.currency),
                    status: a.status,
                }
            })
            .collect();
        let holds = at
            .holds
            .iter()
            .filter(|(_, h)| h.referable_at(as_of_ns, at.config.retention_ns))
            .map(|(&(account_id, request_id), h)| {
                let c = at.accounts[&account_id].currency;
                HoldState {
                    account_id,
                    request_id,
                    authorized: from_minor(h.authorized_minor, c),
                    captured: from_minor(h.captured_minor, c),
                    voided: from_minor(h.voided_minor, c),
                    refunded: from_minor(h.refunded_minor, c),
                    expires_at_ns: h.expires_at_ns,
                    status: h.status,
                }
            })
            .collect();
        let tokens = at
            .tokens
            .iter()
            .map(|(&token, t)| TokenState {
                token,
                account_id: t.account_id,
                status: t.status,
            })
            .collect();
        StateExport {
            accounts,
            holds,
            tokens,
        }
    }

    // -----------------------------------------------------------------------------------------
    // Resolution, expiry, duplicates
    // -----------------------------------------------------------------------------------------

    /// The code, and the account the request resolved to (`None` for a 14/78 resolution).
    fn decide(&mut self, req: &Request) -> (Code, Option<u64>) {
        // DOMAIN.md "Resolve first": 14 / 78, not remembered for duplicates.
        let (account_id, token) = match self.resolve(req) {
            Ok(resolved) => resolved,
            Err(code) => return (code, None),
        };
        // DOMAIN.md "Time": before a request is applied to an account, its open holds with
        // `expires_at <= ts` expire. Expiry depends only on `ts`, so doing it here (also for
        // repeats, which change nothing themselves) is the same as doing it lazily.
        self.expire_holds(account_id, req.ts_ns);

        // DOMAIN.md "Duplicates": key (account, request_id); inside the record's window an
        // exact repeat replays the recorded code and anything else is 94; neither makes a
        // record nor extends the window.
        let key = (account_id, req.request_id);
        let fields = Fields::of(req);
        if let Some(record) = self.records.get(&key) {
            if self.in_window(record, req.ts_ns) {
                let code = if record.fields == fields {
                    record.code
                } else {
                    Code::Duplicate
                };
                return (code, Some(account_id));
            }
        }

        let code = match self.decide_kind(account_id, token, req) {
            Ok(()) => Code::Approved,
            Err(code) => code,
        };
        // The request decided under the key makes (or, after the window, replaces) its record.
        self.records.insert(
            key,
            Record {
                ts_ns: req.ts_ns,
                fields,
                code,
            },
        );
        (code, Some(account_id))
    }

    /// DOMAIN.md "Resolve first": unknown or empty `token` → 14; a deactivated token → 14 for
    /// `authorize`, `increment` and token admin (capture, void, refund still resolve it);
    /// unknown or empty `account_id` → 78 for `credit` and account admin.
    fn resolve(&self, req: &Request) -> Check<(u64, Option<Dpan>)> {
        if req.kind.addressed_by_token() {
            let TokenField::Dpan(dpan) = req.token else {
                return Err(Code::InvalidCard);
            };
            let token = self.tokens.get(&dpan).ok_or(Code::InvalidCard)?;
            let completion = matches!(req.kind, Kind::Capture | Kind::Void | Kind::Refund);
            if token.status == TokenStatus::Deactivated && !completion {
                return Err(Code::InvalidCard);
            }
            Ok((token.account_id, Some(dpan)))
        } else {
            let id = req.account_id.ok_or(Code::NoAccount)?;
            if !self.accounts.contains_key(&id) {
                return Err(Code::NoAccount);
            }
            Ok((id, None))
        }
    }

    /// DOMAIN.md "Time": every open hold of the account with `expires_at <= ts` expires; its
    /// remaining amount leaves `held`.
    fn expire_holds(&mut self, account_id: u64, ts_ns: i64) {
        let account = self
            .accounts
            .get_mut(&account_id)
            .expect("resolved account exists");
        for (_, hold) in self
            .holds
            .range_mut((account_id, 0)..=(account_id, u64::MAX))
        {
            if hold.status == HoldStatus::Open && hold.expires_at_ns <= ts_ns {
                account.held_minor -= hold.remaining_minor();
                hold.status = HoldStatus::Expired;
            }
        }
    }

    /// DOMAIN.md "Duplicates": a record answers while `ts < record + window`.
    fn in_window(&self, record: &Record, ts_ns: i64) -> bool {
        ts_ns < record.ts_ns.saturating_add(self.config.dup_window_ns)
    }

    fn decide_kind(&mut self, account_id: u64, token: Option<Dpan>, req: &Request) -> Check<()> {
        match req.kind {
            Kind::Authorize => self.authorize(account_id, token.expect("card message"), req),
            Kind::Increment => self.increment(account_id, token.expect("card message"), req),
            Kind::Capture => self.capture(account_id, req),
            Kind::Void => self.void(account_id, req),
            Kind::Refund => self.refund(account_id, req),
            Kind::Credit => self.credit(account_id, req),
            Kind::TokenSuspend | Kind::TokenResume | Kind::TokenDeactivate => {
                self.token_admin(account_id, token.expect("token admin"), req.kind)
            }
            Kind::AccountFreeze | Kind::AccountUnfreeze | Kind::AccountClose => {
                self.account_admin(account_id, req.kind)
            }
        }
    }

    // -----------------------------------------------------------------------------------------
    // Shared checks
    // -----------------------------------------------------------------------------------------

    /// DOMAIN.md `13`: amount missing or not positive, more decimals than the currency has
    /// (trailing zeros do not count), over 1,000,000,000 units, or currency not the
    /// account's (a missing currency is not the account's).
    fn amount_minor(&self, account_id: u64, req: &Request) -> Check<i64> {
        let currency = self.accounts[&account_id].currency;
        if req.currency != Some(currency) {
            return Err(Code::InvalidAmount);
        }
        let amount = req.amount.ok_or(Code::InvalidAmount)?;
        AmountKey::from_decimal(amount)
            .valid_minor(currency)
            .ok_or(Code::InvalidAmount)
    }

    /// DOMAIN.md `12`/`25`: the referable hold under `ref`, or, when there is none, `12` if
    /// `ref`'s duplicate record is still inside its window and is a declined `authorize`
    /// (an authorize answered `94` included), else `25`. An empty `ref` names no hold.
    fn referable_hold(&self, account_id: u64, req: &Request) -> Check<(u64, u64)> {
        let Some(reference) = req.reference else {
            return Err(Code::NoRecord);
        };
        let key = (account_id, reference);
        if let Some(hold) = self.holds.get(&key) {
            if hold.referable_at(req.ts_ns, self.config.retention_ns) {
                return Ok(key);
            }
        }
        match self.records.get(&key) {
            Some(record)
                if self.in_window(record, req.ts_ns)
                    && record.fields.kind == Kind::Authorize
                    && record.code != Code::Approved =>
            {
                Err(Code::InvalidTransaction)
            }
            _ => Err(Code::NoRecord),
        }
    }

    /// DOMAIN.md: `62` token suspended · `54` token expired (from midnight China time at the
    /// start of the month after `expiry`) · `78` account closed · `62` account frozen.
    fn card_and_account_usable(&self, account_id: u64, token: Dpan, ts_ns: i64) -> Check<()> {
        let t = &self.tokens[&token];
        if t.status == TokenStatus::Suspended {
            return Err(Code::Restricted);
        }
        if ts_ns >= t.expiry.expired_from_ns() {
            return Err(Code::ExpiredCard);
        }
        match self.accounts[&account_id].status {
            AccountStatus::Closed => Err(Code::NoAccount),
            AccountStatus::Frozen => Err(Code::Restricted),
            AccountStatus::Active => Ok(()),
        }
    }

    /// DOMAIN.md `61`: day amount + amount over `daily_limit` (strict: equal passes).
    fn daily_limit_ok(account: &Account, day: i64, amount_minor: i64) -> Check<()> {
        if let Some(limit) = account.daily_limit_minor {
            let used = i128::from(account.day(day).amount_minor);
            if used + i128::from(amount_minor) > i128::from(limit) {
                return Err(Code::AmountLimit);
            }
        }
        Ok(())
    }

    /// DOMAIN.md `51`: amount over `available` (strict: equal passes).
    fn funds_ok(account: &Account, amount_minor: i64) -> Check<()> {
        if i128::from(amount_minor) > account.available() {
            return Err(Code::InsufficientFunds);
        }
        Ok(())
    }

    // -----------------------------------------------------------------------------------------
    // Kinds
    // -----------------------------------------------------------------------------------------

    /// DOMAIN.md `authorize`: `94` request_id names a referable hold · `13` · `62` token
    /// suspended · `54` · `78` · `62` frozen · `61` per_txn · `61` daily · `65` count · `51` ·
    /// `00`: `held += amount`, new open hold expiring at `ts + ttl`, day amount += amount,
    /// day count += 1.
    fn authorize(&mut self, account_id: u64, token: Dpan, req: &Request) -> Check<()> {
        let ts = req.ts_ns;
        let key = (account_id, req.request_id);
        if let Some(hold) = self.holds.get(&key) {
            if hold.referable_at(ts, self.config.retention_ns) {
                return Err(Code::Duplicate);
            }
        }
        let amount = self.amount_minor(account_id, req)?;
        self.card_and_account_usable(account_id, token, ts)?;
        let account = &self.accounts[&account_id];
        if let Some(limit) = account.per_txn_limit_minor {
            if amount > limit {
                return Err(Code::AmountLimit);
            }
        }
        let day = china_day(ts);
        Self::daily_limit_ok(account, day, amount)?;
        if let Some(limit) = account.daily_count_limit {
            if u128::from(account.day(day).count) + 1 > u128::from(limit) {
                return Err(Code::CountLimit);
            }
        }
        Self::funds_ok(account, amount)?;

        // Effects, computed in full before anything is written.
        let overflow = Code::InvalidAmount;
        let held = account.held_minor.checked_add(amount).ok_or(overflow)?;
        let expires_at_ns = ts.checked_add(self.config.hold_ttl_ns).ok_or(overflow)?;
        let mut counters = account.day(day);
        counters.amount_minor = counters.amount_minor.checked_add(amount).ok_or(overflow)?;
        counters.count = counters.count.checked_add(1).ok_or(overflow)?;

        let account = self.accounts.get_mut(&account_id).expect("resolved");
        account.held_minor = held;
        account.days.insert(day, counters);
        // Replaces a hold under the same key only when that one is no longer referable.
        self.holds.insert(
            key,
            Hold {
                authorized_minor: amount,
                captured_minor: 0,
                voided_minor: 0,
                refunded_minor: 0,
                expires_at_ns,
                status: HoldStatus::Open,
                day,
                closed_at_ns: None,
            },
        );
        Ok(())
    }

    /// DOMAIN.md `increment`: `13` · `12`/`25` · `22` hold not open · `62` · `54` · `78` ·
    /// `62` · `61` new authorized over per_txn · `61` daily · `51` · `00`: `authorized +=`,
    /// `held +=`, `expires_at = ts + ttl`, day amount (of the increment's own day) += amount;
    /// the day count does not change.
    fn increment(&mut self, account_id: u64, token: Dpan, req: &Request) -> Check<()> {
        let ts = req.ts_ns;
        let amount = self.amount_minor(account_id, req)?;
        let key = self.referable_hold(account_id, req)?;
        let hold = &self.holds[&key];
        if hold.status != HoldStatus::Open {
            return Err(Code::HoldNotOpen);
        }
        self.card_and_account_usable(account_id, token, ts)?;
        let account = &self.accounts[&account_id];
        let new_authorized = i128::from(hold.authorized_minor) + i128::from(amount);
        if let Some(limit) = account.per_txn_limit_minor {
            if new_authorized > i128::from(limit) {
                return Err(Code::AmountLimit);
            }
        }
        let day = china_day(ts);
        Self::daily_limit_ok(account, day, amount)?;
        Self::funds_ok(account, amount)?;

        let overflow = Code::InvalidAmount;
        let authorized = hold.authorized_minor.checked_add(amount).ok_or(overflow)?;
        let held = account.held_minor.checked_add(amount).ok_or(overflow)?;
        let expires_at_ns = ts.checked_add(self.config.hold_ttl_ns).ok_or(overflow)?;
        let mut counters = account.day(day);
        counters.amount_minor = counters.amount_minor.checked_add(amount).ok_or(overflow)?;

        let account = self.accounts.get_mut(&account_id).expect("resolved");
        account.held_minor = held;
        account.days.insert(day, counters);
        let hold = self.holds.get_mut(&key).expect("found above");
        hold.authorized_minor = authorized;
        hold.expires_at_ns = expires_at_ns;
        Ok(())
    }

    /// DOMAIN.md `capture`: `13` · `12`/`25` · `22` hold closed · `13` amount over
    /// `authorized - captured - voided` · `00`: `balance -= amount`, `captured += amount`; on
    /// an open hold `held -= amount`, and if `final` or nothing remains the remainder leaves
    /// `held` and the hold closes (the day amount is untouched). An expired hold still
    /// captures: balance only, and it stays expired. Token and account status do not matter.
    fn capture(&mut self, account_id: u64, req: &Request) -> Check<()> {
        let amount = self.amount_minor(account_id, req)?;
        let key = self.referable_hold(account_id, req)?;
        let hold = &self.holds[&key];
        if hold.status == HoldStatus::Closed {
            return Err(Code::HoldNotOpen);
        }
        let remaining = hold.remaining_minor();
        if amount > remaining {
            return Err(Code::InvalidAmount);
        }

        let overflow = Code::InvalidAmount;
        let account = &self.accounts[&account_id];
        let balance = account.balance_minor.checked_sub(amount).ok_or(overflow)?;
        let captured = hold.captured_minor + amount; // <= authorized, cannot overflow
        let open = hold.status == HoldStatus::Open;
        let closes = open && (req.is_final || remaining == amount);
        let held = if !open {
            account.held_minor
        } else if closes {
            account.held_minor - remaining
        } else {
            account.held_minor - amount
        };
        // Late clearing of an expired hold lowers `available`; keep it inside i64.
        balance.checked_sub(held).ok_or(overflow)?;

        let account = self.accounts.get_mut(&account_id).expect("resolved");
        account.balance_minor = balance;
        account.held_minor = held;
        let hold = self.holds.get_mut(&key).expect("found above");
        hold.captured_minor = captured;
        if closes {
            hold.status = HoldStatus::Closed;
            hold.closed_at_ns = Some(req.ts_ns);
        }
        Ok(())
    }

    /// DOMAIN.md `void`: `13` amount given and invalid, or currency given and not the
    /// account's · `12`/`25` · `22` hold not open · `13` amount over what remains · `00`:
    /// `held -= amount` (empty amount = all remaining), `voided += amount`, closes when
    /// nothing remains; on the authorization's own China day the day amount gives it back.
    fn void(&mut self, account_id: u64, req: &Request) -> Check<()> {
        let currency = self.accounts[&account_id].currency;
        if req.currency.is_some_and(|c| c != currency) {
            return Err(Code::InvalidAmount);
        }
        let given = match req.amount {
            None => None,
            Some(a) => Some(
                AmountKey::from_decimal(a)
                    .valid_minor(currency)
                    .ok_or(Code::InvalidAmount)?,
            ),
        };
        let key = self.referable_hold(account_id, req)?;
        let hold = &self.holds[&key];
        if hold.status != HoldStatus::Open {
            return Err(Code::HoldNotOpen);
        }
        let remaining = hold.remaining_minor();
        let amount = given.unwrap_or(remaining);
        if amount > remaining {
            return Err(Code::InvalidAmount);
        }

        let day = china_day(req.ts_ns);
        let same_day = day == hold.day;
        let account = &self.accounts[&account_id];
        let mut counters = account.day(day);
        if same_day {
            counters.amount_minor = counters
                .amount_minor
                .checked_sub(amount)
                .ok_or(Code::InvalidAmount)?;
        }

        let account = self.accounts.get_mut(&account_id).expect("resolved");
        account.held_minor -= amount;
        if same_day {
            account.days.insert(day, counters);
        }
        let hold = self.holds.get_mut(&key).expect("found above");
        hold.voided_minor += amount;
        if hold.remaining_minor() == 0 {
            hold.status = HoldStatus::Closed;
            hold.closed_at_ns = Some(req.ts_ns);
        }
        Ok(())
    }

    /// DOMAIN.md `refund`: `13` · `12`/`25` · `13` amount over `captured - refunded` · `00`:
    /// `balance += amount`, `refunded += amount` (whatever the hold's state).
    fn refund(&mut self, account_id: u64, req: &Request) -> Check<()> {
        let amount = self.amount_minor(account_id, req)?;
        let key = self.referable_hold(account_id, req)?;
        let hold = &self.holds[&key];
        if amount > hold.captured_minor - hold.refunded_minor {
            return Err(Code::InvalidAmount);
        }
        let balance = self.accounts[&account_id]
            .balance_minor
            .checked_add(amount)
            .ok_or(Code::InvalidAmount)?;
        self.accounts
            .get_mut(&account_id)
            .expect("resolved")
            .balance_minor = balance;
        self.holds
            .get_mut(&key)
            .expect("found above")
            .refunded_minor += amount;
        Ok(())
    }

    /// DOMAIN.md `credit`: `13` · `78` account closed · `00`: `balance += amount` (a frozen
    /// account takes credits).
    fn credit(&mut self, account_id: u64, req: &Request) -> Check<()> {
        let amount = self.amount_minor(account_id, req)?;
        let account = self.accounts.get_mut(&account_id).expect("resolved");
        if account.status == AccountStatus::Closed {
            return Err(Code::NoAccount);
        }
        account.balance_minor = account
            .balance_minor
            .checked_add(amount)
            .ok_or(Code::InvalidAmount)?;
        Ok(())
    }

    /// DOMAIN.md "Admin" for tokens: `12` on a closed account, `token_suspend` of a token not
    /// active, `token_resume` of one not suspended; else `00`. (A deactivated token never
    /// gets here: it resolved to `14`.)
    fn token_admin(&mut self, account_id: u64, token: Dpan, kind: Kind) -> Check<()> {
        if self.accounts[&account_id].status == AccountStatus::Closed {
            return Err(Code::InvalidTransaction);
        }
        let t = self.tokens.get_mut(&token).expect("resolved");
        t.status = match (kind, t.status) {
            (Kind::TokenSuspend, TokenStatus::Active) => TokenStatus::Suspended,
            (Kind::TokenResume, TokenStatus::Suspended) => TokenStatus::Active,
            (Kind::TokenDeactivate, _) => TokenStatus::Deactivated,
            _ => return Err(Code::InvalidTransaction),
        };
        Ok(())
    }

    /// DOMAIN.md "Admin" for accounts: `12` for anything on a closed account,
    /// `account_freeze` of an account not active, `account_unfreeze` of one not frozen; else
    /// `00`. `account_close` (from active or frozen) deactivates every token of the account
    /// and leaves its holds as they are.
    fn account_admin(&mut self, account_id: u64, kind: Kind) -> Check<()> {
        let account = self.accounts.get_mut(&account_id).expect("resolved");
        account.status = match (kind, account.status) {
            (_, AccountStatus::Closed) => return Err(Code::InvalidTransaction),
            (Kind::AccountFreeze, AccountStatus::Active) => AccountStatus::Frozen,
            (Kind::AccountUnfreeze, AccountStatus::Frozen) => AccountStatus::Active,
            (Kind::AccountClose, _) => AccountStatus::Closed,
            _ => return Err(Code::InvalidTransaction),
        };
        if kind == Kind::AccountClose {
            for t in self.tokens.values_mut() {
                if t.account_id == account_id {
                    t.status = TokenStatus::Deactivated;
                }
            }
        }
        Ok(())
    }

    /// DOMAIN.md "Invariants", for the account a request touched: `held` is the sum of the
    /// open holds' remaining amounts and is never negative; an open hold has something
    /// remaining. A break is a model bug: panic.
    fn assert_invariants(&self, id: u64) {
        let account = &self.accounts[&id];
        let mut open_sum: i128 = 0;
        for (_, hold) in self.holds.range((id, 0)..=(id, u64::MAX)) {
            let parts = [
                hold.captured_minor,
                hold.voided_minor,
                hold.refunded_minor,
                hold.remaining_minor(),
            ];
            assert!(parts.iter().all(|&p| p >= 0), "hold {hold:?} of {id}");
            assert!(hold.refunded_minor <= hold.captured_minor, "hold {hold:?}");
            if hold.status == HoldStatus::Open {
                assert!(hold.remaining_minor() > 0, "open hold {hold:?} of {id}");
                open_sum += i128::from(hold.remaining_minor());
            }
        }
        assert!(account.held_minor >= 0, "account {id} held < 0");
        assert_eq!(
            i128::from(account.held_minor),
            open_sum,
            "account {id}: held is not the sum of open holds"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal::Decimal;

    fn d(s: &str) -> Decimal {
        Decimal::from_str_exact(s).unwrap()
    }

    fn account(id: u64, balance: &str) -> AccountSpec {
        AccountSpec {
            account_id: id,
            currency: Currency::Cny,
            balance: d(balance),
            status: AccountStatus::Active,
            per_txn_limit: None,
            daily_limit: None,
            daily_count_limit: None,
        }
    }

    fn token(dpan: u64, account_id: u64) -> TokenSpec {
        TokenSpec {
            token: Dpan::from_u64(dpan).unwrap(),
            account_id,
            status: TokenStatus::Active,
            expiry: Expiry::new(2029, 12).unwrap(),
        }
    }

    fn load(accounts: &[AccountSpec], tokens: &[TokenSpec]) -> Result<Model, String> {
        Model::new(ModelConfig::default(), accounts, tokens)
    }

    #[test]
    fn load_refuses_inconsistent_data() {
        let a = account(1, "10.00");
        assert!(load(std::slice::from_ref(&a), &[token(4_111_111_111_111, 1)]).is_ok());
        assert!(load(&[a.clone(), a.clone()], &[])
            .unwrap_err()
            .contains("twice"));
        let t = token(4_111_111_111_111, 1);
        assert!(load(std::slice::from_ref(&a), &[t.clone(), t])
            .unwrap_err()
            .contains("twice"));
        assert!(
            load(std::slice::from_ref(&a), &[token(4_111_111_111_111, 2)])
                .unwrap_err()
                .contains("unknown account")
        );
        assert!(load(&[account(1, "10.001")], &[]).is_err());
        let mut jpy = account(1, "10.5");
        jpy.currency = Currency::Jpy;
        assert!(load(&[jpy], &[]).is_err());
        let mut neg = a.clone();
        neg.daily_limit = Some(d("-1"));
        assert!(load(&[neg], &[]).unwrap_err().contains("negative"));
        let mut frac = a.clone();
        frac.per_txn_limit = Some(d("1.005"));
        assert!(load(&[frac], &[]).is_err());
        // A negative balance and a zero limit are fine.
        let mut ok = account(1, "-5.00");
        ok.per_txn_limit = Some(d("0"));
        assert!(load(&[ok], &[]).is_ok());
    }

    /// Model choice (not in DOMAIN.md): an approved effect that would overflow `i64` minor
    /// units is declined with `13` and changes nothing. (i64::MAX minor units of CNY is
    /// 92233720368547758.07.)
    #[test]
    fn effects_that_would_overflow_answer_13() {
        let mut m = load(
            &[account(1, "92233720368547748.07")],
            &[token(4_111_111_111_111, 1)],
        )
        .unwrap();
        let t = Dpan::from_u64(4_111_111_111_111).unwrap();
        let cny = |amount: &str| d(amount);
        let run = |m: &mut Model, r: Request| m.apply(&r).code;
        let credit = |id, amount| {
            Request::new(Kind::Credit, id, 0)
                .with_account(1)
                .with_amount(cny(amount), Currency::Cny)
        };
        let auth = Request::new(Kind::Authorize, 1, 0)
            .with_token(t)
            .with_amount(cny("10"), Currency::Cny);
        let capture = Request::new(Kind::Capture, 2, 0)
            .with_token(t)
            .with_ref(1)
            .with_amount(cny("10"), Currency::Cny);
        assert_eq!(run(&mut m, auth), Code::Approved);
        assert_eq!(run(&mut m, capture), Code::Approved);
        assert_eq!(run(&mut m, credit(3, "20")), Code::Approved); // now i64::MAX
        assert_eq!(run(&mut m, credit(4, "0.01")), Code::InvalidAmount);
        let refund = Request::new(Kind::Refund, 5, 0)
            .with_token(t)
            .with_ref(1)
            .with_amount(cny("0.01"), Currency::Cny);
        assert_eq!(run(&mut m, refund), Code::InvalidAmount);
        let state = m.export(0);
        assert_eq!(
            state.accounts[0].balance.to_string(),
            "92233720368547758.07"
        );
        assert_eq!(state.holds[0].refunded, cny("0"));
    }

    #[test]
    fn export_is_sorted_and_does_not_mutate() {
        let accounts = [account(2, "1.00"), account(1, "100.00")];
        let tokens = [token(4_222_222_222_222, 2), token(4_111_111_111_111, 1)];
        let mut m = load(&accounts, &tokens).unwrap();
        let t1 = Dpan::from_u64(4_111_111_111_111).unwrap();
        let auth = Request::new(Kind::Authorize, 7, 0)
            .with_token(t1)
            .with_amount(d("10"), Currency::Cny);
        assert_eq!(m.apply(&auth).code, Code::Approved);
        let ttl = ModelConfig::default().hold_ttl_ns;
        let later = m.export(ttl);
        assert_eq!(later.accounts[0].account_id, 1);
        assert_eq!(later.accounts[0].held, d("0"));
        assert_eq!(later.holds[0].status, HoldStatus::Expired);
        assert_eq!(later.tokens[0].token, t1);
        // The model itself still has the hold open before its expiry.
        let now = m.export(ttl - 1);
        assert_eq!(now.accounts[0].held.to_string(), "10.00");
        assert_eq!(now.accounts[0].available.to_string(), "90.00");
        assert_eq!(now.holds[0].status, HoldStatus::Open);
    }
}
