//! Account -> shard partitioning and the read-only directory that resolves a request's token
//! or account id to its shard without a lock; also builds each shard's tables at start.

use rustc_hash::FxHashMap;

use crate::api::{to_minor, AccountSpec, Code, Currency, Request, TokenField, TokenSpec};
use crate::error::{Error, ErrorKind};
use crate::store::{next_index, Account, Store, Token, NIL};

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

/// Immutable after start: shared by every submitting thread with no lock.
pub(crate) struct Directory {
    accounts: FxHashMap<u64, (u32, u32)>,
    /// token -> (shard, token index, account index).
    tokens: FxHashMap<u64, (u32, u32, u32)>,
}

impl Directory {
    /// Resolve a request (DOMAIN.md "Resolve first").
    pub fn resolve(&self, req: &Request) -> Resolved {
        if req.kind.addressed_by_token() {
            let TokenField::Dpan(d) = req.token else {
                return Resolved::Answer(Code::InvalidCard);
            };
            match self.tokens.get(&d.get()) {
                Some(&(shard, token, account)) => Resolved::Shard {
                    shard: shard as usize,
                    account,
                    token,
                },
                None => Resolved::Answer(Code::InvalidCard),
            }
        } else {
            let found = req.account_id.and_then(|id| self.accounts.get(&id));
            match found {
                Some(&(shard, account)) => Resolved::Shard {
                    shard: shard as usize,
                    account,
                    token: NIL,
                },
                None => Resolved::Answer(Code::NoAccount),
            }
        }
    }

    /// The directory of restored stores (`stores[k]` is shard `k`'s), as
    /// [`Directory::build`] made it at the first start: the same account and token indices.
    /// Refuses an account that `shard_of` places in another shard, and an account or token
    /// in two shards.
    pub fn from_stores(stores: &[Store]) -> Result<Directory, Error> {
        let mut dir = Directory {
            accounts: FxHashMap::with_capacity_and_hasher(
                stores.iter().map(|s| s.accounts.len()).sum(),
                Default::default(),
            ),
            tokens: FxHashMap::with_capacity_and_hasher(
                stores.iter().map(|s| s.tokens.len()).sum(),
                Default::default(),
            ),
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
            accounts: FxHashMap::with_capacity_and_hasher(store.accounts.len(), Default::default()),
            tokens: FxHashMap::with_capacity_and_hasher(store.tokens.len(), Default::default()),
        };
        // The shard count is not checked here (recovery has checked it against state.meta).
        dir.add_store(shard, 0, store)?;
        Ok(dir)
    }

    /// Add `store` as shard `shard` of `shards` (0: do not check placement).
    fn add_store(&mut self, shard: usize, shards: usize, store: &Store) -> Result<(), String> {
        let shard_u32 = u32::try_from(shard).map_err(|_| "shard index over u32".to_string())?;
        for (i, a) in store.accounts.iter().enumerate() {
            if shards != 0 && shard_of(a.id, shards) != shard {
                return Err(format!(
                    "account {} belongs to shard {} of {shards}",
                    a.id,
                    shard_of(a.id, shards)
                ));
            }
            if self.accounts.insert(a.id, (shard_u32, i as u32)).is_some() {
                return Err(format!("account {} is in two shards", a.id));
            }
        }
        for (i, t) in store.tokens.iter().enumerate() {
            if self
                .tokens
                .insert(t.dpan.get(), (shard_u32, i as u32, t.account))
                .is_some()
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
        let mut shard_accounts: Vec<Vec<Account>> = (0..shards).map(|_| Vec::new()).collect();
        let mut sorted: Vec<&AccountSpec> = accounts.iter().collect();
        sorted.sort_unstable_by_key(|a| a.account_id);
        for w in sorted.windows(2) {
            if w[0].account_id == w[1].account_id {
                return Err(load(format!("account {} appears twice", w[0].account_id)));
            }
        }
        let mut dir = Directory {
            accounts: FxHashMap::with_capacity_and_hasher(accounts.len(), Default::default()),
            tokens: FxHashMap::with_capacity_and_hasher(tokens.len(), Default::default()),
        };
        for spec in sorted {
            let shard = shard_of(spec.account_id, shards);
            let list = &mut shard_accounts[shard];
            let idx = next_index(list.len())
                .ok_or_else(|| load("more than 2^32-1 accounts in one shard".to_string()))?;
            list.push(account_from_spec(spec)?);
            dir.accounts.insert(spec.account_id, (shard as u32, idx));
        }
        let mut shard_tokens: Vec<Vec<Token>> = (0..shards).map(|_| Vec::new()).collect();
        let mut sorted: Vec<&TokenSpec> = tokens.iter().collect();
        sorted.sort_unstable_by_key(|t| t.token);
        for t in sorted {
            let Some(&(shard, account)) = dir.accounts.get(&t.account_id) else {
                return Err(load(format!(
                    "token {} names account {}, which is not loaded",
                    t.token, t.account_id
                )));
            };
            let list = &mut shard_tokens[shard as usize];
            let idx = next_index(list.len())
                .ok_or_else(|| load("more than 2^32-1 tokens in one shard".to_string()))?;
            if dir
                .tokens
                .insert(t.token.get(), (shard, idx, account))
                .is_some()
            {
                return Err(load(format!("token {} appears twice", t.token)));
            }
            let acct = &mut shard_accounts[shard as usize][account as usize];
            list.push(Token {
                dpan: t.token,
                account,
                status: t.status,
                expired_from_ns: t.expiry.expired_from_ns(),
                next_in_account: acct.token_head,
            });
            acct.token_head = idx;
        }
        let per_shard_hint = holds_hint;
        let stores = shard_accounts
            .into_iter()
            .zip(shard_tokens)
            .map(|(a, t)| Store::new(a, t, per_shard_hint))
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

fn account_from_spec(spec: &AccountSpec) -> Result<Account, Error> {
    let c = spec.currency;
    Ok(Account {
        id: spec.account_id,
        currency: c,
        balance_minor: minor_field(spec.account_id, "balance", spec.balance, c)?,
        held_minor: 0,
        status: spec.status,
        per_txn_limit_minor: limit_field(spec.account_id, "per_txn_limit", spec.per_txn_limit, c)?,
        daily_limit_minor: limit_field(spec.account_id, "daily_limit", spec.daily_limit, c)?,
        daily_count_limit: spec.daily_count_limit.unwrap_or(u64::MAX),
        day: i64::MIN,
        day_amount_minor: 0,
        day_count: 0,
        next_expiry_ns: i64::MAX,
        open_head: NIL,
        token_head: NIL,
    })
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
