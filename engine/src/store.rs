//! One shard's tables: accounts and tokens (dense, indexed), holds (slab + hash index, with
//! per-account open-hold lists) and duplicate records, plus their time-based reclamation.
//!
//! Everything here is owned by exactly one shard thread; nothing is shared or locked.

use std::collections::VecDeque;

use rustc_hash::FxHashMap;

use crate::api::{
    AccountStatus, AmountKey, Code, Currency, Dpan, HoldStatus, Kind, Request, TokenField,
    TokenStatus,
};

/// "No index" in the intrusive lists.
pub(crate) const NIL: u32 = u32::MAX;

/// An account and its day counters. Money in minor units of `currency`.
#[derive(Clone, Debug)]
pub(crate) struct Account {
    pub id: u64,
    pub currency: Currency,
    pub balance_minor: i64,
    pub held_minor: i64,
    pub status: AccountStatus,
    /// `i64::MAX` when there is no limit.
    pub per_txn_limit_minor: i64,
    /// `i64::MAX` when there is no limit.
    pub daily_limit_minor: i64,
    /// `u64::MAX` when there is no limit.
    pub daily_count_limit: u64,
    /// China day the counters below belong to.
    pub day: i64,
    pub day_amount_minor: i64,
    pub day_count: u64,
    /// A lower bound of the earliest `expires_at_ns` among open holds (`i64::MAX`: none).
    pub next_expiry_ns: i64,
    /// Head of the doubly linked list of this account's open holds (slab indices).
    pub open_head: u32,
    /// Head of the singly linked list of this account's tokens (token indices).
    pub token_head: u32,
}

impl Account {
    /// `balance - held`; may be negative after a late capture.
    pub fn available_minor(&self) -> i64 {
        self.balance_minor.saturating_sub(self.held_minor)
    }

    /// Move the day counters to `day` (counters of a new day start at zero).
    pub fn roll_day(&mut self, day: i64) {
        if self.day != day {
            self.day = day;
            self.day_amount_minor = 0;
            self.day_count = 0;
        }
    }
}

/// A token owned by this shard (its account is in this shard).
#[derive(Clone, Debug)]
pub(crate) struct Token {
    pub dpan: Dpan,
    pub account: u32,
    pub status: TokenStatus,
    /// First instant at which the token is expired.
    pub expired_from_ns: i64,
    /// Next token of the same account.
    pub next_in_account: u32,
}

/// A hold: created by an approved authorize.
#[derive(Clone, Debug)]
pub(crate) struct Hold {
    pub account: u32,
    pub request_id: u64,
    pub authorized_minor: i64,
    pub captured_minor: i64,
    pub voided_minor: i64,
    pub refunded_minor: i64,
    pub expires_at_ns: i64,
    /// When it closed or expired (meaningless while open).
    pub ended_ns: i64,
    /// China day of the authorization.
    pub day: i64,
    pub status: HoldStatus,
    pub prev_open: u32,
    pub next_open: u32,
    /// Bumped each time the slot is freed, so stale reclamation entries are recognised.
    pub generation: u32,
}

impl Hold {
    /// `authorized - captured - voided`.
    pub fn remaining_minor(&self) -> i64 {
        self.authorized_minor - self.captured_minor - self.voided_minor
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
    kind: u8,
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
    /// The fingerprint of `req`, whose amount the router normalized into `amount`.
    pub fn of(req: &Request, amount: Option<AmountKey>) -> Fingerprint {
        let mut flags = 0;
        let mut bit = |present: bool, f: u8| {
            if present {
                flags |= f;
            }
        };
        let token = match req.token {
            TokenField::Empty => 0,
            TokenField::Dpan(d) => {
                bit(true, F_TOKEN_DPAN);
                d.get()
            }
            TokenField::Other(h) => {
                bit(true, F_TOKEN_OTHER);
                h
            }
        };
        bit(req.account_id.is_some(), F_ACCOUNT);
        bit(amount.is_some(), F_AMOUNT);
        bit(req.mcc.is_some(), F_MCC);
        bit(req.reference.is_some(), F_REF);
        bit(req.is_final, F_FINAL);
        let (mantissa, scale) = amount.map_or((0, 0), |a| a.parts());
        bit(mantissa < 0, F_AMOUNT_NEGATIVE);
        let magnitude = mantissa.unsigned_abs();
        Fingerprint {
            token,
            account_id: req.account_id.unwrap_or(0),
            mcc: req.mcc.unwrap_or(0),
            reference: req.reference.unwrap_or(0),
            amount_lo: magnitude as u64,
            // A Decimal mantissa is below 2^96 in magnitude, so this is exact.
            amount_hi: (magnitude >> 64) as u32,
            amount_scale: scale as u8,
            kind: req.kind as u8,
            currency: req.currency.map_or(0, |c| {
                1 + Currency::ALL.iter().position(|&x| x == c).unwrap_or(0) as u8
            }),
            flags,
        }
    }

    /// True when the request that left this was an `authorize`.
    pub fn is_authorize(&self) -> bool {
        self.kind == Kind::Authorize as u8
    }
}

/// The record a decided request leaves under (account, request_id).
#[derive(Clone, Copy, Debug)]
pub(crate) struct DupRecord {
    pub ts_ns: i64,
    pub code: Code,
    pub fingerprint: Fingerprint,
}

/// Key of holds and duplicate records: (account index, request id).
pub(crate) type Key = (u32, u64);

/// One shard's whole state.
pub(crate) struct Store {
    pub accounts: Vec<Account>,
    pub tokens: Vec<Token>,
    holds: Vec<Hold>,
    free_holds: Vec<u32>,
    hold_index: FxHashMap<Key, u32>,
    pub dups: FxHashMap<Key, DupRecord>,
    /// (referable-until, slot, generation) of holds that ended, in the order they ended.
    hold_reclaim: VecDeque<(i64, u32, u32)>,
    /// (window-end, account, request id) of duplicate records, in the order they were made.
    dup_reclaim: VecDeque<(i64, u32, u64)>,
    /// The latest `ts_ns` this shard has seen.
    pub watermark_ns: i64,
}

impl Store {
    pub fn new(accounts: Vec<Account>, tokens: Vec<Token>, holds_hint: usize) -> Store {
        Store {
            accounts,
            tokens,
            holds: Vec::with_capacity(holds_hint),
            free_holds: Vec::with_capacity(holds_hint / 4),
            hold_index: FxHashMap::with_capacity_and_hasher(holds_hint, Default::default()),
            dups: FxHashMap::with_capacity_and_hasher(holds_hint * 2, Default::default()),
            hold_reclaim: VecDeque::with_capacity(holds_hint),
            dup_reclaim: VecDeque::with_capacity(holds_hint * 2),
            watermark_ns: i64::MIN,
        }
    }

    /// Hint that `account` (and `token`, unless [`NIL`]) will be needed soon.
    #[inline]
    pub fn prefetch(&self, account: u32, token: u32) {
        if let Some(a) = self.accounts.get(account as usize) {
            crate::prefetch::prefetch_read(a);
        }
        if let Some(t) = self.tokens.get(token as usize) {
            crate::prefetch::prefetch_read(t);
        }
    }

    pub fn hold(&self, slot: u32) -> &Hold {
        &self.holds[slot as usize]
    }

    pub fn hold_mut(&mut self, slot: u32) -> &mut Hold {
        &mut self.holds[slot as usize]
    }

    /// The slot of the hold under `key`, whether or not it is still referable.
    pub fn find_hold(&self, key: Key) -> Option<u32> {
        self.hold_index.get(&key).copied()
    }

    /// Insert a new open hold (replacing a dead one under the same key) and link it into its
    /// account's open list.
    pub fn insert_open_hold(&mut self, hold: Hold) -> u32 {
        let key = (hold.account, hold.request_id);
        if let Some(old) = self.hold_index.remove(&key) {
            debug_assert_ne!(self.holds[old as usize].status, HoldStatus::Open);
            self.free_slot(old);
        }
        let account = hold.account;
        let expires_at_ns = hold.expires_at_ns;
        let slot = match self.free_holds.pop() {
            Some(s) => {
                let generation = self.holds[s as usize].generation;
                self.holds[s as usize] = Hold { generation, ..hold };
                s
            }
            None => {
                let s = u32::try_from(self.holds.len()).expect("more than 2^32 holds in a shard");
                self.holds.push(hold);
                s
            }
        };
        self.hold_index.insert(key, slot);
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
        let h = &mut self.holds[slot as usize];
        h.generation = h.generation.wrapping_add(1);
        self.free_holds.push(slot);
    }

    /// Take an open hold off its account's open list and end it (closed or expired) at
    /// `ended_ns`; it stays referable until `ended_ns + retention_ns`.
    pub fn end_hold(&mut self, slot: u32, status: HoldStatus, ended_ns: i64, retention_ns: i64) {
        debug_assert_ne!(status, HoldStatus::Open);
        let (account, prev, next, generation) = {
            let h = &mut self.holds[slot as usize];
            assert_eq!(h.status, HoldStatus::Open, "ending a hold that is not open");
            h.status = status;
            h.ended_ns = ended_ns;
            (h.account, h.prev_open, h.next_open, h.generation)
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
    }

    /// Expire every open hold of `account` with `expires_at_ns <= ts_ns` (DOMAIN.md Time).
    pub fn expire_account(&mut self, account: u32, ts_ns: i64, retention_ns: i64) {
        if ts_ns < self.accounts[account as usize].next_expiry_ns {
            return;
        }
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
                self.end_hold(slot, HoldStatus::Expired, expires_at, retention_ns);
            } else {
                next_expiry = next_expiry.min(expires_at);
            }
            slot = next;
        }
        self.accounts[account as usize].next_expiry_ns = next_expiry;
    }

    /// Remember `record` under `key`, replacing an older record whose window has passed.
    pub fn record(&mut self, key: Key, record: DupRecord, window_ns: i64) {
        self.dup_reclaim
            .push_back((record.ts_ns.saturating_add(window_ns), key.0, key.1));
        self.dups.insert(key, record);
    }

    /// Advance the watermark and drop holds and records that no request at or after it can
    /// see any more. Exact as long as `ts_ns` never goes below the watermark (traffic.csv's
    /// non-decreasing rule); see ARCHITECTURE.md.
    ///
    /// The queues are FIFO in the order entries were made, which is the order their
    /// deadlines fall in when time does not go back. When it does (an expiry noticed late, a
    /// host's out-of-order `ts_ns`), an entry waits behind a later one: it is dropped late,
    /// never early, and each drop re-checks the entry against the table.
    pub fn advance(&mut self, ts_ns: i64, window_ns: i64) {
        if ts_ns <= self.watermark_ns {
            return;
        }
        self.watermark_ns = ts_ns;
        while let Some(&(until, slot, generation)) = self.hold_reclaim.front() {
            if until > ts_ns {
                break;
            }
            self.hold_reclaim.pop_front();
            let h = &self.holds[slot as usize];
            if h.generation == generation && h.status != HoldStatus::Open {
                let key = (h.account, h.request_id);
                if self.hold_index.get(&key) == Some(&slot) {
                    self.hold_index.remove(&key);
                    self.free_slot(slot);
                }
            }
        }
        while let Some(&(until, account, request_id)) = self.dup_reclaim.front() {
            if until > ts_ns {
                break;
            }
            self.dup_reclaim.pop_front();
            let key = (account, request_id);
            if let Some(r) = self.dups.get(&key) {
                if r.ts_ns.saturating_add(window_ns) <= ts_ns {
                    self.dups.remove(&key);
                }
            }
        }
    }

    /// Holds in the table (for export), referable or not yet reclaimed.
    pub fn holds_iter(&self) -> impl Iterator<Item = &Hold> + '_ {
        self.hold_index
            .values()
            .map(move |&s| &self.holds[s as usize])
    }

    /// Holds the table currently tracks.
    pub fn hold_count(&self) -> usize {
        self.hold_index.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal::Decimal;

    fn fp(r: &Request) -> Fingerprint {
        Fingerprint::of(r, r.amount.map(AmountKey::from_decimal))
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
