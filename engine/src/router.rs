//! Account -> shard partitioning and the read-only directory that resolves a request's token
//! or account id to its shard without a lock; also builds each shard's tables at start.

use crate::api::{to_minor, AccountSpec, Code, Currency, Request, TokenField, TokenSpec};
use crate::error::{Error, ErrorKind};
use crate::store::{add_limits, Account, Limits, Store, Token, NIL};

/// Largest magnitude of a loaded balance or limit, in minor units. Keeps every sum the
/// engine forms far from `i64` overflow (2^62 minor units is 4.6e16 CNY).
const LOADED_MINOR_MAX: i64 = 1 << 62;

/// The shard that owns `account_id` among `shards`. A fixed mix of the id (SplitMix64's
/// finalizer), so consecutive ids spread evenly; hosts that outgrow one process partition
/// accounts across processes with the same function.
pub fn shard_of(account_id: u64, shards: usize) -> usize {
    let mut z = account_id.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    // Multiply-shift range reduction: uniform and cheaper than `%`.
    ((u128::from(z) * shards as u128) >> 64) as usize
}

/// Where a request goes.
pub(crate) enum Resolved {
    /// Answered without touching a shard (`14` unknown token, `78` unknown account).
    Answer(Code),
    /// Owned by `shard`, at these indices in its tables.
    Shard {
        shard: usize,
        account: u32,
        token: u32,
    },
}

/// Bits of an account or token index in a directory location.
const INDEX_BITS: u32 = 28;
const INDEX_MASK: u64 = (1 << INDEX_BITS) - 1;

/// The index the next account or token of a shard with `len` of them gets in the directory,
/// unless there are too many. The largest index leaves the low bits of a location not all
/// ones, so no location is [`DirMap`]'s empty marker.
fn dir_index(len: usize) -> Option<u32> {
    u32::try_from(len)
        .ok()
        .filter(|&i| u64::from(i) < INDEX_MASK)
}

/// Where a token or account lives, packed in 64 bits: shard (8 bits, shards are at most
/// 256), account index, token index (28 bits each).
fn location(shard: u32, account: u32, token: u32) -> u64 {
    debug_assert!(shard < 256 && u64::from(account) < INDEX_MASK && u64::from(token) < INDEX_MASK);
    u64::from(shard) << (2 * INDEX_BITS) | u64::from(account) << INDEX_BITS | u64::from(token)
}

fn unpack(location: u64) -> (usize, u32, u32) {
    (
        (location >> (2 * INDEX_BITS)) as usize,
        ((location >> INDEX_BITS) & INDEX_MASK) as u32,
        (location & INDEX_MASK) as u32,
    )
}

/// An immutable open-addressing map from a token or account id to its location: keys and
/// values inline in 16-byte slots, linear probing, at most 7/8 full, so a lookup is one
/// cache miss, which the router starts ([`Directory::prefetch`]) a few requests ahead.
struct DirMap {
    slots: Vec<(u64, u64)>,
    len: usize,
}

/// The value of an empty slot (no [`location`] has it).
const EMPTY: u64 = u64::MAX;

impl DirMap {
    /// A map for at most `keys` keys.
    fn with_capacity(keys: usize) -> DirMap {
        DirMap {
            slots: vec![(0, EMPTY); (keys.saturating_mul(8).div_ceil(7) + 1).max(16)],
            len: 0,
        }
    }

    #[inline]
    fn home(&self, key: u64) -> usize {
        // Fibonacci hashing, then multiply-shift onto the (not power-of-two) slot count.
        let h = key.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        ((u128::from(h) * self.slots.len() as u128) >> 64) as usize
    }

    #[inline]
    fn prefetch(&self, key: u64) {
        // The home slot's cache line and the next: at up to 7/8 full, a lookup often probes
        // past the slots of the home line.
        crate::prefetch::prefetch_probe(self.slots.as_ptr().wrapping_add(self.home(key)));
    }

    #[inline]
    fn get(&self, key: u64) -> Option<u64> {
        let mut i = self.home(key);
        loop {
            let (k, v) = self.slots[i];
            if v == EMPTY {
                return None;
            }
            if k == key {
                return Some(v);
            }
            i += 1;
            if i == self.slots.len() {
                i = 0;
            }
        }
    }

    /// Insert `key`; false (and no change) when it is already there.
    fn insert(&mut self, key: u64, value: u64) -> bool {
        debug_assert_ne!(value, EMPTY);
        assert!(
            (self.len + 1) * 8 <= self.slots.len() * 7,
            "a directory map sized for fewer keys"
        );
        let mut i = self.home(key);
        loop {
            let (k, v) = self.slots[i];
            if v == EMPTY {
                self.slots[i] = (key, value);
                self.len += 1;
                return true;
            }
            if k == key {
                return false;
            }
            i += 1;
            if i == self.slots.len() {
                i = 0;
            }
        }
    }
}

/// Immutable after start: shared by every submitting thread with no lock.
pub(crate) struct Directory {
    /// account id -> location (token index 0).
    accounts: DirMap,
    /// token -> location.
    tokens: DirMap,
}

impl Directory {
    /// Resolve a request (DOMAIN.md "Resolve first").
    #[inline]
    pub fn resolve(&self, req: &Request) -> Resolved {
        if req.kind.addressed_by_token() {
            let TokenField::Dpan(d) = req.token else {
                return Resolved::Answer(Code::InvalidCard);
            };
            match self.tokens.get(d.get()) {
                Some(at) => {
                    let (shard, account, token) = unpack(at);
                    Resolved::Shard {
                        shard,
                        account,
                        token,
                    }
                }
                None => Resolved::Answer(Code::InvalidCard),
            }
        } else {
            match req.account_id.and_then(|id| self.accounts.get(id)) {
                Some(at) => {
                    let (shard, account, _) = unpack(at);
                    Resolved::Shard {
                        shard,
                        account,
                        token: NIL,
                    }
                }
                None => Resolved::Answer(Code::NoAccount),
            }
        }
    }

    /// Hint that `req` will be resolved soon.
    #[inline]
    pub fn prefetch(&self, req: &Request) {
        if req.kind.addressed_by_token() {
            if let TokenField::Dpan(d) = req.token {
                self.tokens.prefetch(d.get());
            }
        } else if let Some(id) = req.account_id {
            self.accounts.prefetch(id);
        }
    }

    /// The directory of restored stores (`stores[k]` is shard `k`'s), as
    /// [`Directory::build`] made it at the first start: the same account and token indices.
    /// Refuses an account that `shard_of` places in another shard, and an account or token
    /// in two shards.
    pub fn from_stores(stores: &[Store]) -> Result<Directory, Error> {
        let mut dir = Directory {
            accounts: DirMap::with_capacity(stores.iter().map(|s| s.accounts.len()).sum()),
            tokens: DirMap::with_capacity(stores.iter().map(|s| s.tokens.len()).sum()),
        };
        for (k, store) in stores.iter().enumerate() {
            dir.add_store(k, stores.len(), store)
                .map_err(|m| Error::new(ErrorKind::Recovery, format!("shard {k}: {m}")))?;
        }
        Ok(dir)
    }

    /// A directory of shard `shard`'s store alone: resolves that shard's requests exactly
    /// as the whole directory does, and answers every other one at resolution.
    pub fn for_shard(shard: usize, store: &Store) -> Result<Directory, String> {
        let mut dir = Directory {
            accounts: DirMap::with_capacity(store.accounts.len()),
            tokens: DirMap::with_capacity(store.tokens.len()),
        };
        // The shard count is not checked here (recovery has checked it against state.meta).
        dir.add_store(shard, 0, store)?;
        Ok(dir)
    }

    /// Add `store` as shard `shard` of `shards` (0: do not check placement).
    fn add_store(&mut self, shard: usize, shards: usize, store: &Store) -> Result<(), String> {
        let shard_u32 = u32::try_from(shard)
            .ok()
            .filter(|&s| s < 256)
            .ok_or_else(|| "shard index over 255".to_string())?;
        for i in 0..store.accounts.len() {
            let id = store.account_id(i as u32);
            if shards != 0 && shard_of(id, shards) != shard {
                return Err(format!(
                    "account {id} belongs to shard {} of {shards}",
                    shard_of(id, shards)
                ));
            }
            let index = dir_index(i).ok_or("more accounts in a shard than the directory takes")?;
            if !self.accounts.insert(id, location(shard_u32, index, 0)) {
                return Err(format!("account {id} is in two shards"));
            }
        }
        let owners = store.token_accounts();
        for (i, (t, &account)) in store.tokens.iter().zip(&owners).enumerate() {
            let index = dir_index(i).ok_or("more tokens in a shard than the directory takes")?;
            if u64::from(account) >= INDEX_MASK {
                return Err(format!("token {} names account index {account}", t.dpan));
            }
            if !self
                .tokens
                .insert(t.dpan.get(), location(shard_u32, account, index))
            {
                return Err(format!("token {} is in two shards", t.dpan));
            }
        }
        Ok(())
    }

    /// The shard a request goes to, or `None` when it is answered at resolution.
    pub fn shard_for(&self, req: &Request) -> Option<usize> {
        match self.resolve(req) {
            Resolved::Shard { shard, .. } => Some(shard),
            Resolved::Answer(_) => None,
        }
    }

    /// Validate accounts and tokens and build the directory plus one store per shard.
    pub fn build(
        shards: usize,
        accounts: &[AccountSpec],
        tokens: &[TokenSpec],
        holds_hint: usize,
    ) -> Result<(Directory, Vec<Store>), Error> {
        // Exact capacities, so the tables are never copied while they grow, and take no
        // more memory than they need.
        let mut per_shard = vec![0usize; shards];
        for spec in accounts {
            per_shard[shard_of(spec.account_id, shards)] += 1;
        }
        let mut shard_accounts: Vec<Vec<Account>> =
            per_shard.iter().map(|&n| Vec::with_capacity(n)).collect();
        let mut shard_ids: Vec<Vec<u64>> =
            per_shard.iter().map(|&n| Vec::with_capacity(n)).collect();
        let mut shard_limits: Vec<Vec<Limits>> = (0..shards).map(|_| Vec::new()).collect();
        let mut sorted: Vec<&AccountSpec> = accounts.iter().collect();
        sorted.sort_unstable_by_key(|a| a.account_id);
        for w in sorted.windows(2) {
            if w[0].account_id == w[1].account_id {
                return Err(load(format!("account {} appears twice", w[0].account_id)));
            }
        }
        let mut dir = Directory {
            accounts: DirMap::with_capacity(accounts.len()),
            tokens: DirMap::with_capacity(tokens.len()),
        };
        for spec in sorted {
            let shard = shard_of(spec.account_id, shards);
            let list = &mut shard_accounts[shard];
            let idx = dir_index(list.len())
                .ok_or_else(|| load("more than 2^28-2 accounts in one shard".to_string()))?;
            list.push(account_from_spec(spec, &mut shard_limits[shard])?);
            shard_ids[shard].push(spec.account_id);
            dir.accounts
                .insert(spec.account_id, location(shard as u32, idx, 0));
        }
        let mut per_shard = vec![0usize; shards];
        for t in tokens {
            if let Some((shard, _, _)) = dir.accounts.get(t.account_id).map(unpack) {
                per_shard[shard] += 1;
            }
        }
        let mut shard_tokens: Vec<Vec<Token>> =
            per_shard.iter().map(|&n| Vec::with_capacity(n)).collect();
        let mut sorted: Vec<&TokenSpec> = tokens.iter().collect();
        sorted.sort_unstable_by_key(|t| t.token);
        for t in sorted {
            let Some((shard, account, _)) = dir.accounts.get(t.account_id).map(unpack) else {
                return Err(load(format!(
                    "token {} names account {}, which is not loaded",
                    t.token, t.account_id
                )));
            };
            let list = &mut shard_tokens[shard];
            let idx = dir_index(list.len())
                .ok_or_else(|| load("more than 2^28-2 tokens in one shard".to_string()))?;
            if !dir
                .tokens
                .insert(t.token.get(), location(shard as u32, account, idx))
            {
                return Err(load(format!("token {} appears twice", t.token)));
            }
            let mut token = Token::new(t.token, t.status, t.expiry);
            shard_accounts[shard][account as usize].link_token(idx, &mut token);
            list.push(token);
        }
        let per_shard_hint = holds_hint;
        let stores = shard_accounts
            .into_iter()
            .zip(shard_ids)
            .zip(shard_limits)
            .zip(shard_tokens)
            .map(|(((a, ids), l), t)| Store::new(a, ids, l, t, per_shard_hint))
            .collect();
        Ok((dir, stores))
    }
}

fn load(message: String) -> Error {
    Error::new(ErrorKind::Load, message)
}

fn minor_field(
    account_id: u64,
    field: &str,
    value: rust_decimal::Decimal,
    currency: Currency,
) -> Result<i64, Error> {
    match to_minor(value, currency) {
        Some(m) if (-LOADED_MINOR_MAX..=LOADED_MINOR_MAX).contains(&m) => Ok(m),
        Some(_) => Err(load(format!(
            "account {account_id}: {field} {value} is out of range"
        ))),
        None => Err(load(format!(
            "account {account_id}: {field} {value} has more decimals than {currency} allows ({})",
            currency.decimals()
        ))),
    }
}

fn limit_field(
    account_id: u64,
    field: &str,
    value: Option<rust_decimal::Decimal>,
    currency: Currency,
) -> Result<i64, Error> {
    match value {
        None => Ok(i64::MAX),
        Some(v) => {
            let m = minor_field(account_id, field, v, currency)?;
            if m < 0 {
                return Err(load(format!(
                    "account {account_id}: {field} {v} is negative"
                )));
            }
            Ok(m)
        }
    }
}

/// The account of `spec`, its limits (if any) added to its shard's side table `limits`.
fn account_from_spec(spec: &AccountSpec, limits: &mut Vec<Limits>) -> Result<Account, Error> {
    let c = spec.currency;
    let id = spec.account_id;
    let these = Limits {
        per_txn_minor: limit_field(id, "per_txn_limit", spec.per_txn_limit, c)?,
        daily_minor: limit_field(id, "daily_limit", spec.daily_limit, c)?,
        daily_count: spec.daily_count_limit.unwrap_or(u64::MAX),
    };
    let limits_index = add_limits(limits, these)
        .ok_or_else(|| load("more than 2^28-2 accounts with limits in one shard".to_string()))?;
    Ok(Account::new(
        c,
        minor_field(id, "balance", spec.balance, c)?,
        spec.status,
        limits_index,
    ))
}

#[cfg(test)]
mod tests {
    use super::shard_of;

    #[test]
    fn shard_of_spreads_consecutive_ids() {
        for shards in [1usize, 2, 3, 4, 7] {
            let mut counts = vec![0usize; shards];
            for id in 0..70_000u64 {
                let s = shard_of(id, shards);
                assert!(s < shards);
                counts[s] += 1;
            }
            let expected = 70_000 / shards;
            for c in counts {
                assert!(c.abs_diff(expected) < expected / 20, "{c} vs {expected}");
            }
        }
    }
}
