//! The plain lock-based baseline `payauth bench` measures the engine against: every rule of
//! DOMAIN.md written the way a first implementation would, std `HashMap`s behind one
//! `std::sync::Mutex`.
//!
//! What the baseline is, precisely, so that the ratio `payauth bench` prints means something:
//!
//! - **State** ([`Baseline`]): `HashMap<u64, Account>`, `HashMap<Dpan, Token>`,
//!   `HashMap<(account, request_id), Hold>` and `HashMap<(account, request_id), Record>` (the
//!   duplicate records), all with std's default SipHash hasher. The account and token maps are
//!   sized at load; holds and records grow as they need. Nothing is reclaimed: holds and
//!   records stay for the whole run, as in the reference model. Each account keeps a `Vec` of
//!   its open holds' request ids and of its tokens.
//! - **Expiry**: each account keeps a lower bound of its open holds' earliest `expires_at` and
//!   scans its open holds only when a request's `ts_ns` reaches it. (A scan of every hold of
//!   the account per request, as the reference model does to stay obviously right, is
//!   quadratic on the hot accounts of a Zipf workload and would make any ratio meaningless.)
//! - **Rules**: ported from `payauth_engine::model`, check for check in DOMAIN.md's order,
//!   including the model's "an effect that would overflow `i64` declines `13`". One
//!   difference: day counters are kept for the latest China day only (as the engine does),
//!   which is the same for traffic whose time does not go backwards per account (DOMAIN.md).
//! - **Concurrency** ([`run_locked`]): `threads` workers share one
//!   `Mutex<(Baseline, cursor over the batches)>`. A worker locks, takes the next batch in
//!   submission order, decides the whole batch, writes its decisions and unlocks. The cursor
//!   lives under the lock so batches are applied in submission order, which the engine
//!   guarantees per account; with the cursor outside the lock two workers could apply batches
//!   out of order and the decisions would depend on thread timing. Taking the lock once per
//!   batch rather than once per request is the baseline's most favourable setting.
//! - **Not in it**: batching by account, ownership per thread, open addressing, prefetching,
//!   pre-sized hold tables, time-based reclamation.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use payauth_engine::api::{china_day, from_minor, to_minor, AmountKey};
use payauth_engine::model::ModelConfig;
use payauth_engine::{
    AccountSpec, AccountState, AccountStatus, Code, Currency, Decision, Dpan, Expiry, HoldState,
    HoldStatus, Kind, Request, StateExport, TokenField, TokenSpec, TokenState, TokenStatus,
};

/// The whole state of every account, token, hold and duplicate record, in std `HashMap`s.
#[derive(Clone, Debug)]
pub struct Baseline {
    config: ModelConfig,
    accounts: HashMap<u64, Account>,
    tokens: HashMap<Dpan, Token>,
    /// Keyed by (account, the authorization's `request_id`).
    holds: HashMap<(u64, u64), Hold>,
    /// Keyed by (resolved account, `request_id`); the latest record of each key.
    records: HashMap<(u64, u64), Record>,
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
    /// China day the two counters below belong to (`i64::MIN`: none yet).
    day: i64,
    day_amount_minor: i64,
    day_count: u64,
    /// Request ids of the open holds.
    open_holds: Vec<u64>,
    /// At most the earliest `expires_at_ns` of the open holds (`i64::MAX`: none).
    next_expiry_ns: i64,
    /// The account's tokens (for `account_close`).
    tokens: Vec<Dpan>,
}

impl Account {
    /// Day amount and count of China day `day`.
    fn counters(&self, day: i64) -> (i64, u64) {
        if self.day == day {
            (self.day_amount_minor, self.day_count)
        } else {
            (0, 0)
        }
    }

    fn set_counters(&mut self, day: i64, amount_minor: i64, count: u64) {
        self.day = day;
        self.day_amount_minor = amount_minor;
        self.day_count = count;
    }

    /// `balance - held`, exact.
    fn available(&self) -> i128 {
        i128::from(self.balance_minor) - i128::from(self.held_minor)
    }

    fn forget_open(&mut self, request_id: u64) {
        if let Some(pos) = self.open_holds.iter().position(|&r| r == request_id) {
            self.open_holds.swap_remove(pos);
        }
    }
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
    /// China day of the authorization.
    day: i64,
    /// `ts_ns` of the request that closed it (meaningful when closed).
    closed_at_ns: i64,
}

impl Hold {
    fn remaining_minor(&self) -> i64 {
        self.authorized_minor - self.captured_minor - self.voided_minor
    }

    /// Referable while open, or while `ts < ended + retention` (ended: closing request's
    /// `ts_ns`, or `expires_at` if it expired). Expiry at `ts_ns` must already be applied.
    fn referable_at(&self, ts_ns: i64, retention_ns: i64) -> bool {
        let ended = match self.status {
            HoldStatus::Open => return true,
            HoldStatus::Closed => self.closed_at_ns,
            HoldStatus::Expired => self.expires_at_ns,
        };
        ts_ns < ended.saturating_add(retention_ns)
    }
}

/// Every field of a request but `ts_ns` and `request_id` (which is in the key): an exact
/// repeat matches all of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Fields {
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

#[derive(Clone, Copy, Debug)]
struct Record {
    ts_ns: i64,
    fields: Fields,
    code: Code,
}

/// Early return of a decline code.
type Check<T> = Result<T, Code>;

impl Baseline {
    /// Load accounts and tokens. `Err` names the first inconsistency (a duplicate account or
    /// token, a token of an unknown account, an amount that does not fit its currency, a
    /// negative limit).
    pub fn new(
        config: ModelConfig,
        accounts: &[AccountSpec],
        tokens: &[TokenSpec],
    ) -> Result<Baseline, String> {
        let mut state = Baseline {
            config,
            accounts: HashMap::with_capacity(accounts.len()),
            tokens: HashMap::with_capacity(tokens.len()),
            holds: HashMap::new(),
            records: HashMap::new(),
        };
        for spec in accounts {
            let (id, currency) = (spec.account_id, spec.currency);
            let balance_minor = to_minor(spec.balance, currency)
                .ok_or_else(|| format!("account {id}: balance does not fit {currency}"))?;
            let limit = |name: &str, value: Option<rust_decimal::Decimal>| {
                value
                    .map(|v| match to_minor(v, currency) {
                        Some(m) if m >= 0 => Ok(m),
                        _ => Err(format!("account {id}: bad {name} {v}")),
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
                day: i64::MIN,
                day_amount_minor: 0,
                day_count: 0,
                open_holds: Vec::new(),
                next_expiry_ns: i64::MAX,
                tokens: Vec::new(),
            };
            if state.accounts.insert(id, account).is_some() {
                return Err(format!("account {id} appears twice"));
            }
        }
        for spec in tokens {
            let account = state.accounts.get_mut(&spec.account_id).ok_or_else(|| {
                format!(
                    "token {} names unknown account {}",
                    spec.token, spec.account_id
                )
            })?;
            account.tokens.push(spec.token);
            let token = Token {
                account_id: spec.account_id,
                status: spec.status,
                expiry: spec.expiry,
            };
            if state.tokens.insert(spec.token, token).is_some() {
                return Err(format!("token {} appears twice", spec.token));
            }
        }
        Ok(state)
    }

    /// Decide one request and apply its effect (DOMAIN.md "Decisions").
    pub fn apply(&mut self, req: &Request) -> Decision {
        Decision {
            request_id: req.request_id,
            code: self.decide(req),
        }
    }

    /// State as of `as_of_ns` with the expiry rule applied (without changing anything), in
    /// the engine's export format: accounts by id, referable holds by (account, request id),
    /// tokens by token.
    pub fn export(&self, as_of_ns: i64) -> StateExport {
        let retention_ns = self.config.retention_ns;
        let mut accounts: Vec<AccountState> = self
            .accounts
            .iter()
            .map(|(&account_id, a)| {
                let expiring: i64 = a
                    .open_holds
                    .iter()
                    .map(|rid| &self.holds[&(account_id, *rid)])
                    .filter(|h| h.expires_at_ns <= as_of_ns)
                    .map(Hold::remaining_minor)
                    .sum();
                let held = a.held_minor - expiring;
                AccountState {
                    account_id,
                    currency: a.currency,
                    balance: from_minor(a.balance_minor, a.currency),
                    held: from_minor(held, a.currency),
                    available: from_minor(a.balance_minor - held, a.currency),
                    status: a.status,
                }
            })
            .collect();
        accounts.sort_unstable_by_key(|a| a.account_id);
        let mut holds: Vec<HoldState> = self
            .holds
            .iter()
            .filter_map(|(&(account_id, request_id), h)| {
                let mut h = h.clone();
                if h.status == HoldStatus::Open && h.expires_at_ns <= as_of_ns {
                    h.status = HoldStatus::Expired;
                }
                if !h.referable_at(as_of_ns, retention_ns) {
                    return None;
                }
                let c = self.accounts[&account_id].currency;
                Some(HoldState {
                    account_id,
                    request_id,
                    authorized: from_minor(h.authorized_minor, c),
                    captured: from_minor(h.captured_minor, c),
                    voided: from_minor(h.voided_minor, c),
                    refunded: from_minor(h.refunded_minor, c),
                    expires_at_ns: h.expires_at_ns,
                    status: h.status,
                })
            })
            .collect();
        holds.sort_unstable_by_key(|h| (h.account_id, h.request_id));
        let mut tokens: Vec<TokenState> = self
            .tokens
            .iter()
            .map(|(&token, t)| TokenState {
                token,
                account_id: t.account_id,
                status: t.status,
            })
            .collect();
        tokens.sort_unstable_by_key(|t| t.token);
        StateExport {
            accounts,
            holds,
            tokens,
        }
    }

    /// An estimate of the heap the tables take: each map's buckets (`capacity * 8 / 7` slots
    /// of key, value and one control byte, as hashbrown lays them out) plus the accounts'
    /// `Vec`s. Allocator overhead is not counted.
    pub fn heap_bytes_estimate(&self) -> u64 {
        fn map<K, V>(m: &HashMap<K, V>) -> u64 {
            let slot = std::mem::size_of::<(K, V)>() + 1;
            (m.capacity() as u64 * 8 / 7) * slot as u64
        }
        let vecs: usize = self
            .accounts
            .values()
            .map(|a| {
                a.open_holds.capacity() * std::mem::size_of::<u64>()
                    + a.tokens.capacity() * std::mem::size_of::<Dpan>()
            })
            .sum();
        map(&self.accounts)
            + map(&self.tokens)
            + map(&self.holds)
            + map(&self.records)
            + vecs as u64
    }

    // -----------------------------------------------------------------------------------------
    // Resolution, expiry, duplicates
    // -----------------------------------------------------------------------------------------

    fn decide(&mut self, req: &Request) -> Code {
        let (account_id, token) = match self.resolve(req) {
            Ok(resolved) => resolved,
            Err(code) => return code,
        };
        self.expire_holds(account_id, req.ts_ns);
        let key = (account_id, req.request_id);
        let fields = Fields::of(req);
        if let Some(record) = self.records.get(&key) {
            if self.in_window(record, req.ts_ns) {
                return if record.fields == fields {
                    record.code
                } else {
                    Code::Duplicate
                };
            }
        }
        let code = match self.decide_kind(account_id, token, req) {
            Ok(()) => Code::Approved,
            Err(code) => code,
        };
        self.records.insert(
            key,
            Record {
                ts_ns: req.ts_ns,
                fields,
                code,
            },
        );
        code
    }

    /// `14` for an unknown or empty token (and a deactivated one, except for completions),
    /// `78` for an unknown or empty account id.
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

    /// Open holds with `expires_at <= ts` expire; their remaining amounts leave `held`.
    fn expire_holds(&mut self, account_id: u64, ts_ns: i64) {
        let account = self.accounts.get_mut(&account_id).expect("resolved");
        if ts_ns < account.next_expiry_ns {
            return;
        }
        let holds = &mut self.holds;
        let held = &mut account.held_minor;
        let mut next = i64::MAX;
        account.open_holds.retain(|rid| {
            let hold = holds.get_mut(&(account_id, *rid)).expect("open hold");
            if hold.expires_at_ns <= ts_ns {
                *held -= hold.remaining_minor();
                hold.status = HoldStatus::Expired;
                false
            } else {
                next = next.min(hold.expires_at_ns);
                true
            }
        });
        account.next_expiry_ns = next;
    }

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

    /// `13`: amount missing, not positive, too precise or too large; currency not the
    /// account's.
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

    /// The referable hold under `ref`, else `12` when `ref`'s record (inside its window) is a
    /// declined `authorize`, else `25`.
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

    /// `62` token suspended · `54` token expired · `78` account closed · `62` frozen.
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

    /// `61`: day amount + amount over `daily_limit`.
    fn daily_limit_ok(account: &Account, day_amount_minor: i64, amount_minor: i64) -> Check<()> {
        if let Some(limit) = account.daily_limit_minor {
            if i128::from(day_amount_minor) + i128::from(amount_minor) > i128::from(limit) {
                return Err(Code::AmountLimit);
            }
        }
        Ok(())
    }

    /// `51`: amount over `available`.
    fn funds_ok(account: &Account, amount_minor: i64) -> Check<()> {
        if i128::from(amount_minor) > account.available() {
            return Err(Code::InsufficientFunds);
        }
        Ok(())
    }

    // -----------------------------------------------------------------------------------------
    // Kinds
    // -----------------------------------------------------------------------------------------

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
        let (day_amount, day_count) = account.counters(day);
        Self::daily_limit_ok(account, day_amount, amount)?;
        if let Some(limit) = account.daily_count_limit {
            if u128::from(day_count) + 1 > u128::from(limit) {
                return Err(Code::CountLimit);
            }
        }
        Self::funds_ok(account, amount)?;

        let overflow = Code::InvalidAmount;
        let held = account.held_minor.checked_add(amount).ok_or(overflow)?;
        let expires_at_ns = ts.checked_add(self.config.hold_ttl_ns).ok_or(overflow)?;
        let day_amount = day_amount.checked_add(amount).ok_or(overflow)?;
        let day_count = day_count.checked_add(1).ok_or(overflow)?;

        let account = self.accounts.get_mut(&account_id).expect("resolved");
        account.held_minor = held;
        account.set_counters(day, day_amount, day_count);
        account.open_holds.push(req.request_id);
        account.next_expiry_ns = account.next_expiry_ns.min(expires_at_ns);
        // Replaces a hold under the same key only when that one is no longer referable (so
        // no longer open, and not in the open list).
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
                closed_at_ns: 0,
            },
        );
        Ok(())
    }

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
        let (day_amount, day_count) = account.counters(day);
        Self::daily_limit_ok(account, day_amount, amount)?;
        Self::funds_ok(account, amount)?;

        let overflow = Code::InvalidAmount;
        let authorized = hold.authorized_minor.checked_add(amount).ok_or(overflow)?;
        let held = account.held_minor.checked_add(amount).ok_or(overflow)?;
        let expires_at_ns = ts.checked_add(self.config.hold_ttl_ns).ok_or(overflow)?;
        let day_amount = day_amount.checked_add(amount).ok_or(overflow)?;

        let account = self.accounts.get_mut(&account_id).expect("resolved");
        account.held_minor = held;
        account.set_counters(day, day_amount, day_count);
        // A later expiry keeps `next_expiry_ns` a lower bound.
        let hold = self.holds.get_mut(&key).expect("found above");
        hold.authorized_minor = authorized;
        hold.expires_at_ns = expires_at_ns;
        Ok(())
    }

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
        let captured = hold.captured_minor + amount;
        let open = hold.status == HoldStatus::Open;
        let closes = open && (req.is_final || remaining == amount);
        let held = if !open {
            account.held_minor
        } else if closes {
            account.held_minor - remaining
        } else {
            account.held_minor - amount
        };
        balance.checked_sub(held).ok_or(overflow)?;

        let account = self.accounts.get_mut(&account_id).expect("resolved");
        account.balance_minor = balance;
        account.held_minor = held;
        if closes {
            account.forget_open(key.1);
        }
        let hold = self.holds.get_mut(&key).expect("found above");
        hold.captured_minor = captured;
        if closes {
            hold.status = HoldStatus::Closed;
            hold.closed_at_ns = req.ts_ns;
        }
        Ok(())
    }

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
        let (day_amount, day_count) = account.counters(day);
        let day_amount = if same_day {
            day_amount.checked_sub(amount).ok_or(Code::InvalidAmount)?
        } else {
            day_amount
        };

        let account = self.accounts.get_mut(&account_id).expect("resolved");
        account.held_minor -= amount;
        if same_day {
            account.set_counters(day, day_amount, day_count);
        }
        let hold = self.holds.get_mut(&key).expect("found above");
        hold.voided_minor += amount;
        if hold.remaining_minor() == 0 {
            hold.status = HoldStatus::Closed;
            hold.closed_at_ns = req.ts_ns;
            account.forget_open(key.1);
        }
        Ok(())
    }

    fn refund(&mut self, account_id: u64, req: &Request) -> Check<()> {
        let amount = self.amount_minor(account_id, req)?;
        let key = self.referable_hold(account_id, req)?;
        let hold = &self.holds[&key];
        if amount > hold.captured_minor - hold.refunded_minor {
            return Err(Code::InvalidAmount);
        }
        let account = self.accounts.get_mut(&account_id).expect("resolved");
        account.balance_minor = account
            .balance_minor
            .checked_add(amount)
            .ok_or(Code::InvalidAmount)?;
        self.holds
            .get_mut(&key)
            .expect("found above")
            .refunded_minor += amount;
        Ok(())
    }

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
            for dpan in &account.tokens {
                self.tokens.get_mut(dpan).expect("own token").status = TokenStatus::Deactivated;
            }
        }
        Ok(())
    }
}

/// What [`run_locked`] did.
#[derive(Debug)]
pub struct LockedRun {
    /// One decision per request, in request order.
    pub decisions: Vec<Decision>,
    /// From the first batch taken to the last decision written (thread start included).
    pub elapsed: Duration,
    /// The state after the run.
    pub baseline: Baseline,
}

/// Decide `requests` with `threads` workers sharing one `Mutex<Baseline>`, in batches of
/// `batch_len`: a worker locks, takes the next batch (in order), decides all of it, unlocks.
///
/// Panics when `batch_len` or `threads` is 0.
pub fn run_locked(
    baseline: Baseline,
    requests: &[Request],
    batch_len: usize,
    threads: usize,
) -> LockedRun {
    assert!(
        batch_len > 0 && threads > 0,
        "batch_len and threads must be positive"
    );
    let blank = Decision {
        request_id: 0,
        code: Code::Approved,
    };
    let mut decisions = vec![blank; requests.len()];
    let elapsed;
    let baseline = {
        /// The lock covers the state and the cursor over the batches together.
        struct Shared<I> {
            baseline: Baseline,
            batches: I,
        }
        let batches = requests
            .chunks(batch_len)
            .zip(decisions.chunks_mut(batch_len));
        let shared = Mutex::new(Shared { baseline, batches });
        let start = Instant::now();
        std::thread::scope(|s| {
            for _ in 0..threads {
                s.spawn(|| loop {
                    let mut guard = shared.lock().expect("a baseline worker panicked");
                    let shared = &mut *guard;
                    let Some((batch, out)) = shared.batches.next() else {
                        break;
                    };
                    for (req, d) in batch.iter().zip(out) {
                        *d = shared.baseline.apply(req);
                    }
                });
            }
        });
        elapsed = start.elapsed();
        shared
            .into_inner()
            .expect("a baseline worker panicked")
            .baseline
    };
    LockedRun {
        decisions,
        elapsed,
        baseline,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::Dataset;
    use crate::generate::{generate, GenOptions};
    use payauth_engine::model::Model;

    /// The baseline against the reference model on the coverage datasets of `generate`
    /// (every kind, every code, expiry, late captures, retransmissions): identical decisions
    /// and identical final state, whatever the batch size and worker count.
    #[test]
    fn agrees_with_the_model_on_coverage_datasets() {
        for seed in [1, 2, 3] {
            let dir = tempfile::tempdir().unwrap();
            let opts = GenOptions {
                accounts: 60,
                requests: 4_000,
                seed,
            };
            generate(&opts, dir.path()).unwrap();
            let data = Dataset::load(dir.path()).unwrap();
            let config = ModelConfig::default();
            let mut model = Model::new(config, &data.accounts, &data.tokens).unwrap();
            let expected: Vec<Decision> = data.traffic.iter().map(|r| model.apply(r)).collect();
            let as_of = data.last_ts_ns();
            for (batch_len, threads) in [(1, 1), (7, 2), (4096, 3)] {
                let baseline = Baseline::new(config, &data.accounts, &data.tokens).unwrap();
                let run = run_locked(baseline, &data.traffic, batch_len, threads);
                assert_eq!(run.decisions, expected, "seed {seed}, batch {batch_len}");
                assert_eq!(
                    run.baseline.export(as_of),
                    model.export(as_of),
                    "seed {seed}"
                );
            }
        }
    }

    #[test]
    fn refuses_inconsistent_input() {
        let dir = tempfile::tempdir().unwrap();
        let opts = GenOptions {
            accounts: 3,
            requests: 10,
            seed: 1,
        };
        generate(&opts, dir.path()).unwrap();
        let data = Dataset::load(dir.path()).unwrap();
        let mut twice = data.accounts.clone();
        twice.push(data.accounts[0].clone());
        assert!(Baseline::new(ModelConfig::default(), &twice, &data.tokens).is_err());
        assert!(Baseline::new(ModelConfig::default(), &data.accounts[1..], &data.tokens).is_err());
    }
}
