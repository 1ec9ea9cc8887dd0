//! Per-shard snapshots: [`ShardImage`], the logical state of one shard as plain data (what
//! the `Store` must be rebuilt from), and its versioned, checksummed file
//! `shard-{k}/snapshot-{seq:020}.snap`, written to a temporary, fsynced and renamed.
//!
//! A snapshot with seq `s` holds the shard's state after its journal records `[0, s)`, so
//! recovery restores the newest snapshot and replays the journal from record `s` on.
//!
//! # File layout (little-endian)
//! An 88-byte header, the entries (accounts, tokens, holds, duplicate records, then the two
//! reclamation queues, each entry a fixed size), then a 4-byte trailer: the crc32c of all
//! the entry bytes.
//!
//! | offset | size | header field |
//! |---|---|---|
//! | 0 | 8 | magic `PAYAUTHS` |
//! | 8 | 2 | format version, 1 |
//! | 10 | 2 | zero |
//! | 12 | 4 | shard |
//! | 16 | 8 | seq: journal records covered |
//! | 24 | 8 | watermark: the latest `ts_ns` the shard had seen (i64) |
//! | 32 | 8 | account count |
//! | 40 | 8 | token count |
//! | 48 | 8 | hold count |
//! | 56 | 8 | duplicate record count |
//! | 64 | 8 | hold reclamation queue length |
//! | 72 | 8 | duplicate record reclamation queue length |
//! | 80 | 4 | zero |
//! | 84 | 4 | crc32c of bytes 0..84 |
//!
//! Entries (enum codes as in the journal's codec):
//! - account, 74 bytes: id u64, balance i64, held i64, per_txn_limit i64, daily_limit i64,
//!   daily_count_limit u64, day i64, day_amount i64, day_count u64, currency u8, status u8.
//! - token, 20 bytes: dpan u64, account_id u64, expiry year u16, expiry month u8, status u8.
//! - hold, 73 bytes: account_id u64, request_id u64, authorized i64, captured i64, voided
//!   i64, refunded i64, expires_at_ns i64, ended_ns i64, day i64, status u8.
//! - duplicate record, 78 bytes: account_id u64, request_id u64, ts_ns i64, token value u64,
//!   fingerprint account_id u64, mcc u64, ref u64, amount mantissa i128, amount scale u8,
//!   code u8, kind u8, token tag u8, currency u8 (0 none), flags u8 (bit 0 account_id
//!   present, 1 amount present, 2 mcc present, 3 ref present, 4 final). Absent values are 0.
//! - hold reclamation entry, 25 bytes, in queue order: until_ns i64, account_id u64,
//!   request_id u64, live u8 (1: the entry will reclaim that ended hold of the image; 0: a
//!   stale entry whose hold is already gone, kept because it still holds its place in the
//!   queue; its ids are 0).
//! - duplicate record reclamation entry, 24 bytes, in queue order: until_ns i64,
//!   account_id u64, request_id u64.
//!
//! # Why the watermark and the queues are in the image
//! Reclamation never changes a decision while `ts_ns` does not go backwards, so for such
//! traffic the store could rebuild its queues from the holds and records alone. A host may
//! submit time going backwards, though, and then *when* an entry is reclaimed is visible.
//! Recovery replays the journal after a snapshot and refuses on any decision that comes out
//! different, so a restored shard must behave exactly like the one that wrote the snapshot,
//! for every input: the image keeps the watermark, both FIFO queues verbatim (stale entries
//! included) and each account's open holds in its list order (that order decides the order
//! holds expire in, hence their place in the queue).
//!
//! # A damaged newest snapshot is refused, not skipped
//! Snapshots are renamed into place only after an fsync, so a crash never leaves a partial
//! one under its final name (a leftover `.tmp` is ignored and removed). A newest snapshot
//! that fails its checks was therefore damaged at rest, the same class of fault as damage in
//! the middle of a journal, and recovery refuses it with the file and offset instead of
//! silently falling back. The fallback stays possible by hand: pruning (with
//! `keep_snapshots = 2`) keeps the previous snapshot and the whole journal since it, so
//! moving the damaged file out of the directory and restarting recovers from the previous
//! snapshot plus a longer replay. The refusal message says so.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use crate::api::{
    AccountStatus, Code, Currency, Dpan, Expiry, HoldStatus, Kind, TokenField, TokenStatus,
    CHINA_OFFSET_NS, NS_PER_DAY,
};
use crate::journal::encoding::{
    account_status_code, account_status_from, code_code, code_from, currency_code, currency_from,
    currency_opt_code, currency_opt_from, dpan_from, hold_status_code, hold_status_from, kind_code,
    kind_from, opt_u64_from, token_field_from, token_field_parts, token_status_code,
    token_status_from, Reader, Writer,
};
use crate::journal::{
    shard_dir, snapshot_name, sync_dir, tmp_path, RecoveryError, RecoveryErrorKind,
};

/// One account, its money in minor units of its currency.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct AccountImage {
    pub id: u64,
    pub currency: Currency,
    pub balance_minor: i64,
    pub held_minor: i64,
    pub status: AccountStatus,
    /// `i64::MAX`: no limit (as in the store).
    pub per_txn_limit_minor: i64,
    /// `i64::MAX`: no limit.
    pub daily_limit_minor: i64,
    /// `u64::MAX`: no limit.
    pub daily_count_limit: u64,
    /// China day the day counters belong to (`i64::MIN`: none yet).
    pub day: i64,
    pub day_amount_minor: i64,
    pub day_count: u64,
}

/// One token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct TokenImage {
    pub dpan: Dpan,
    pub account_id: u64,
    pub status: TokenStatus,
    /// The store keeps `expired_from_ns`; convert with [`Expiry::expired_from_ns`] and
    /// [`expiry_from_expired_from_ns`].
    pub expiry: Expiry,
}

/// One hold still in the table (open, or ended and not yet reclaimed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct HoldImage {
    pub account_id: u64,
    pub request_id: u64,
    pub authorized_minor: i64,
    pub captured_minor: i64,
    pub voided_minor: i64,
    pub refunded_minor: i64,
    pub expires_at_ns: i64,
    /// When it closed or expired (0 while open, as the store leaves it).
    pub ended_ns: i64,
    /// China day of the authorization.
    pub day: i64,
    pub status: HoldStatus,
}

/// What an exact repeat must match: every request field but `ts_ns` and `request_id`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FingerprintImage {
    pub kind: Kind,
    pub token: TokenField,
    pub account_id: Option<u64>,
    /// The amount normalized (trailing zeros stripped): `(mantissa, scale)` as in
    /// `api::AmountKey`.
    pub amount: Option<(i128, u32)>,
    pub currency: Option<Currency>,
    pub mcc: Option<u64>,
    pub reference: Option<u64>,
    pub is_final: bool,
}

/// One duplicate record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct DupImage {
    pub account_id: u64,
    pub request_id: u64,
    pub ts_ns: i64,
    pub code: Code,
    pub fingerprint: FingerprintImage,
}

/// One entry of the hold reclamation queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct HoldReclaimImage {
    /// When the hold stops being referable (`ended_ns + retention_ns`).
    pub until_ns: i64,
    /// `(account_id, request_id)` of the ended hold of the image this entry reclaims, or
    /// `None` for a stale entry (its hold was replaced or reclaimed already).
    pub hold: Option<(u64, u64)>,
}

/// One entry of the duplicate record reclamation queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct DupReclaimImage {
    /// When the record's window ends.
    pub until_ns: i64,
    pub account_id: u64,
    pub request_id: u64,
}

/// One shard's logical state, keyed by account ids (not store indices), so it does not
/// depend on how the store lays its tables out.
///
/// Order: `accounts` and `tokens` in store index order (restoring them in this order gives
/// the same indices); `holds` with each account's open holds in its open-list order (head
/// first; `Store::to_image` writes every open hold first, then the ended ones by key); the
/// queues in queue order (front first); `dups` in any order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ShardImage {
    /// The latest `ts_ns` the shard had seen (`i64::MIN`: none yet).
    pub watermark_ns: i64,
    pub accounts: Vec<AccountImage>,
    pub tokens: Vec<TokenImage>,
    pub holds: Vec<HoldImage>,
    pub dups: Vec<DupImage>,
    pub hold_reclaim: Vec<HoldReclaimImage>,
    pub dup_reclaim: Vec<DupReclaimImage>,
}

impl Default for ShardImage {
    /// No entries, and no time seen yet.
    fn default() -> Self {
        ShardImage {
            watermark_ns: i64::MIN,
            accounts: Vec::new(),
            tokens: Vec::new(),
            holds: Vec::new(),
            dups: Vec::new(),
            hold_reclaim: Vec::new(),
            dup_reclaim: Vec::new(),
        }
    }
}

const MAGIC: [u8; 8] = *b"PAYAUTHS";
const VERSION: u16 = 1;
const HEADER_BYTES: u64 = 88;
const TRAILER_BYTES: u64 = 4;
const ACCOUNT_BYTES: usize = 74;
const TOKEN_BYTES: usize = 20;
const HOLD_BYTES: usize = 73;
const DUP_BYTES: usize = 78;
const HOLD_RECLAIM_BYTES: usize = 25;
const DUP_RECLAIM_BYTES: usize = 24;
/// The largest entry: the size of the read buffer.
const ENTRY_BYTES_MAX: usize = DUP_BYTES;

const D_ACCOUNT: u8 = 1 << 0;
const D_AMOUNT: u8 = 1 << 1;
const D_MCC: u8 = 1 << 2;
const D_REF: u8 = 1 << 3;
const D_FINAL: u8 = 1 << 4;
const D_ALL: u8 = D_ACCOUNT | D_AMOUNT | D_MCC | D_REF | D_FINAL;

impl ShardImage {
    /// Check the invariants a restored store relies on: unique ids and keys, every token,
    /// hold and record on an account of the image, hold amounts consistent
    /// (`captured + voided <= authorized`, `refunded <= captured`, none negative), each
    /// account's `held` equal to the remaining amounts of its open holds, amounts normalized.
    pub(crate) fn check(&self) -> Result<(), String> {
        let mut held: HashMap<u64, i128> = HashMap::with_capacity(self.accounts.len());
        for a in &self.accounts {
            if held.insert(a.id, 0).is_some() {
                return Err(format!("account {} appears twice", a.id));
            }
            if a.held_minor < 0 || a.per_txn_limit_minor < 0 || a.daily_limit_minor < 0 {
                return Err(format!("account {}: negative held or limit", a.id));
            }
        }
        let mut dpans = HashSet::with_capacity(self.tokens.len());
        for t in &self.tokens {
            if !dpans.insert(t.dpan) {
                return Err(format!("token {} appears twice", t.dpan));
            }
            if !held.contains_key(&t.account_id) {
                return Err(format!(
                    "token {} names account {}, not in the image",
                    t.dpan, t.account_id
                ));
            }
        }
        let mut keys = HashSet::with_capacity(self.holds.len());
        for h in &self.holds {
            let what = format!("hold ({}, {})", h.account_id, h.request_id);
            if !keys.insert((h.account_id, h.request_id)) {
                return Err(format!("{what} appears twice"));
            }
            let Some(sum) = held.get_mut(&h.account_id) else {
                return Err(format!("{what}: account not in the image"));
            };
            let amounts = [
                h.authorized_minor,
                h.captured_minor,
                h.voided_minor,
                h.refunded_minor,
            ];
            if amounts.iter().any(|&m| m < 0)
                || i128::from(h.captured_minor) + i128::from(h.voided_minor)
                    > i128::from(h.authorized_minor)
                || h.refunded_minor > h.captured_minor
            {
                return Err(format!("{what}: inconsistent amounts {amounts:?}"));
            }
            if h.status == HoldStatus::Open {
                *sum += i128::from(h.authorized_minor - h.captured_minor - h.voided_minor);
            }
        }
        for a in &self.accounts {
            if held[&a.id] != i128::from(a.held_minor) {
                return Err(format!(
                    "account {}: held {} but its open holds keep {}",
                    a.id, a.held_minor, held[&a.id]
                ));
            }
        }
        let mut keys = HashSet::with_capacity(self.dups.len());
        for d in &self.dups {
            if !keys.insert((d.account_id, d.request_id)) {
                return Err(format!(
                    "duplicate record ({}, {}) appears twice",
                    d.account_id, d.request_id
                ));
            }
            if !held.contains_key(&d.account_id) {
                return Err(format!(
                    "duplicate record ({}, {}): account not in the image",
                    d.account_id, d.request_id
                ));
            }
            if let Some((m, s)) = d.fingerprint.amount {
                if !amount_normalized(m, s) {
                    return Err(format!(
                        "duplicate record ({}, {}): amount ({m}, {s}) is not normalized",
                        d.account_id, d.request_id
                    ));
                }
            }
        }
        // Each ended hold has exactly one live entry in the hold queue (the one its ending
        // pushed), and a live entry names an ended hold.
        let mut ended: HashMap<(u64, u64), bool> = self
            .holds
            .iter()
            .filter(|h| h.status != HoldStatus::Open)
            .map(|h| ((h.account_id, h.request_id), false))
            .collect();
        for e in &self.hold_reclaim {
            let Some(key) = e.hold else { continue };
            match ended.get_mut(&key) {
                Some(seen @ false) => *seen = true,
                Some(true) => {
                    return Err(format!(
                        "hold ({}, {}) has two live reclamation entries",
                        key.0, key.1
                    ))
                }
                None => {
                    return Err(format!(
                        "a reclamation entry names hold ({}, {}), which is not an ended hold \
                         of the image",
                        key.0, key.1
                    ))
                }
            }
        }
        if let Some((key, _)) = ended.iter().find(|(_, seen)| !**seen) {
            return Err(format!(
                "ended hold ({}, {}) has no reclamation entry",
                key.0, key.1
            ));
        }
        for e in &self.dup_reclaim {
            if !held.contains_key(&e.account_id) {
                return Err(format!(
                    "a reclamation entry names duplicate record ({}, {}): account not in \
                     the image",
                    e.account_id, e.request_id
                ));
            }
        }
        Ok(())
    }
}

impl ShardImage {
    /// The image with the entries whose order means nothing sorted: ended holds by key
    /// after every open hold (open holds keep their order, which is each account's list
    /// order), duplicate records by key. Equal canonical images are stores that decide
    /// every later request alike; tests compare them.
    #[cfg(test)]
    pub(crate) fn canonical(mut self) -> ShardImage {
        // Stable, so open holds stay in list order.
        self.holds.sort_by_key(|h| match h.status {
            HoldStatus::Open => (false, 0, 0),
            _ => (true, h.account_id, h.request_id),
        });
        self.dups
            .sort_unstable_by_key(|d| (d.account_id, d.request_id));
        self
    }
}

/// True when `mantissa * 10^-scale` is in `AmountKey`'s normalized form: a `Decimal`'s range
/// and scale, no trailing zero, and zero only as `(0, 0)`.
fn amount_normalized(mantissa: i128, scale: u32) -> bool {
    scale <= 28
        && mantissa.unsigned_abs() >> 96 == 0
        && if mantissa == 0 {
            scale == 0
        } else {
            scale == 0 || mantissa % 10 != 0
        }
}

/// The expiry month whose [`Expiry::expired_from_ns`] is `ns` (the store keeps only that
/// instant); `None` when `ns` is not such an instant.
pub(crate) fn expiry_from_expired_from_ns(ns: i64) -> Option<Expiry> {
    let local = ns.checked_add(CHINA_OFFSET_NS)?;
    if local.rem_euclid(NS_PER_DAY) != 0 {
        return None;
    }
    let (y, m, d) = civil_from_days(local.div_euclid(NS_PER_DAY));
    if d != 1 {
        return None;
    }
    let (y, m) = if m == 1 { (y - 1, 12) } else { (y, m - 1) };
    let e = Expiry::new(u16::try_from(y).ok()?, u8::try_from(m).ok()?)?;
    (e.expired_from_ns() == ns).then_some(e)
}

/// Proleptic Gregorian (year, month, day) of days since 1970-01-01 (Howard Hinnant).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

// ---------------------------------------------------------------------------------------------
// Encoding
// ---------------------------------------------------------------------------------------------

fn encode_account(out: &mut Vec<u8>, a: &AccountImage) {
    let mut w = Writer(out);
    w.u64(a.id);
    w.i64(a.balance_minor);
    w.i64(a.held_minor);
    w.i64(a.per_txn_limit_minor);
    w.i64(a.daily_limit_minor);
    w.u64(a.daily_count_limit);
    w.i64(a.day);
    w.i64(a.day_amount_minor);
    w.u64(a.day_count);
    w.u8(currency_code(a.currency));
    w.u8(account_status_code(a.status));
}

fn decode_account(b: &[u8]) -> Result<AccountImage, String> {
    let mut r = Reader::new(b);
    Ok(AccountImage {
        id: r.u64(),
        balance_minor: r.i64(),
        held_minor: r.i64(),
        per_txn_limit_minor: r.i64(),
        daily_limit_minor: r.i64(),
        daily_count_limit: r.u64(),
        day: r.i64(),
        day_amount_minor: r.i64(),
        day_count: r.u64(),
        currency: currency_from(r.u8())?,
        status: account_status_from(r.u8())?,
    })
}

fn encode_token(out: &mut Vec<u8>, t: &TokenImage) {
    let mut w = Writer(out);
    w.u64(t.dpan.get());
    w.u64(t.account_id);
    w.u16(t.expiry.year());
    w.u8(t.expiry.month());
    w.u8(token_status_code(t.status));
}

fn decode_token(b: &[u8]) -> Result<TokenImage, String> {
    let mut r = Reader::new(b);
    let dpan = dpan_from(r.u64())?;
    let account_id = r.u64();
    let (year, month) = (r.u16(), r.u8());
    let expiry = Expiry::new(year, month).ok_or(format!("expiry {year}-{month} is not a month"))?;
    Ok(TokenImage {
        dpan,
        account_id,
        expiry,
        status: token_status_from(r.u8())?,
    })
}

fn encode_hold(out: &mut Vec<u8>, h: &HoldImage) {
    let mut w = Writer(out);
    w.u64(h.account_id);
    w.u64(h.request_id);
    w.i64(h.authorized_minor);
    w.i64(h.captured_minor);
    w.i64(h.voided_minor);
    w.i64(h.refunded_minor);
    w.i64(h.expires_at_ns);
    w.i64(h.ended_ns);
    w.i64(h.day);
    w.u8(hold_status_code(h.status));
}

fn decode_hold(b: &[u8]) -> Result<HoldImage, String> {
    let mut r = Reader::new(b);
    Ok(HoldImage {
        account_id: r.u64(),
        request_id: r.u64(),
        authorized_minor: r.i64(),
        captured_minor: r.i64(),
        voided_minor: r.i64(),
        refunded_minor: r.i64(),
        expires_at_ns: r.i64(),
        ended_ns: r.i64(),
        day: r.i64(),
        status: hold_status_from(r.u8())?,
    })
}

fn encode_dup(out: &mut Vec<u8>, d: &DupImage) {
    let fp = &d.fingerprint;
    let (tag, token_value) = token_field_parts(fp.token);
    let (mantissa, scale) = fp.amount.unwrap_or((0, 0));
    let mut flags = 0;
    for (bit, on) in [
        (D_ACCOUNT, fp.account_id.is_some()),
        (D_AMOUNT, fp.amount.is_some()),
        (D_MCC, fp.mcc.is_some()),
        (D_REF, fp.reference.is_some()),
        (D_FINAL, fp.is_final),
    ] {
        if on {
            flags |= bit;
        }
    }
    let mut w = Writer(out);
    w.u64(d.account_id);
    w.u64(d.request_id);
    w.i64(d.ts_ns);
    w.u64(token_value);
    w.u64(fp.account_id.unwrap_or(0));
    w.u64(fp.mcc.unwrap_or(0));
    w.u64(fp.reference.unwrap_or(0));
    w.i128(mantissa);
    // A normalized scale is at most 28 (checked by `ShardImage::check` before writing).
    w.u8(u8::try_from(scale).unwrap_or(u8::MAX));
    w.u8(code_code(d.code));
    w.u8(kind_code(fp.kind));
    w.u8(tag);
    w.u8(currency_opt_code(fp.currency));
    w.u8(flags);
}

fn decode_dup(b: &[u8]) -> Result<DupImage, String> {
    let mut r = Reader::new(b);
    let account_id = r.u64();
    let request_id = r.u64();
    let ts_ns = r.i64();
    let token_value = r.u64();
    let fp_account = r.u64();
    let mcc = r.u64();
    let reference = r.u64();
    let mantissa = r.i128();
    let scale = u32::from(r.u8());
    let code = code_from(r.u8())?;
    let kind = kind_from(r.u8())?;
    let token = token_field_from(r.u8(), token_value)?;
    let currency = currency_opt_from(r.u8())?;
    let flags = r.u8();
    if flags & !D_ALL != 0 {
        return Err(format!(
            "duplicate record flags {flags:#04x} has unknown bits"
        ));
    }
    let amount = if flags & D_AMOUNT != 0 {
        if !amount_normalized(mantissa, scale) {
            return Err(format!("amount ({mantissa}, {scale}) is not normalized"));
        }
        Some((mantissa, scale))
    } else if mantissa != 0 || scale != 0 {
        return Err("absent amount with nonzero bytes".into());
    } else {
        None
    };
    Ok(DupImage {
        account_id,
        request_id,
        ts_ns,
        code,
        fingerprint: FingerprintImage {
            kind,
            token,
            account_id: opt_u64_from(flags & D_ACCOUNT != 0, fp_account, "account_id")?,
            amount,
            currency,
            mcc: opt_u64_from(flags & D_MCC != 0, mcc, "mcc")?,
            reference: opt_u64_from(flags & D_REF != 0, reference, "ref")?,
            is_final: flags & D_FINAL != 0,
        },
    })
}

fn encode_hold_reclaim(out: &mut Vec<u8>, e: &HoldReclaimImage) {
    let mut w = Writer(out);
    w.i64(e.until_ns);
    let (account_id, request_id) = e.hold.unwrap_or((0, 0));
    w.u64(account_id);
    w.u64(request_id);
    w.u8(u8::from(e.hold.is_some()));
}

fn decode_hold_reclaim(b: &[u8]) -> Result<HoldReclaimImage, String> {
    let mut r = Reader::new(b);
    let until_ns = r.i64();
    let key = (r.u64(), r.u64());
    let hold = match r.u8() {
        1 => Some(key),
        0 if key == (0, 0) => None,
        0 => return Err("a stale entry with nonzero ids".into()),
        v => return Err(format!("live flag {v} is not 0 or 1")),
    };
    Ok(HoldReclaimImage { until_ns, hold })
}

fn encode_dup_reclaim(out: &mut Vec<u8>, e: &DupReclaimImage) {
    let mut w = Writer(out);
    w.i64(e.until_ns);
    w.u64(e.account_id);
    w.u64(e.request_id);
}

fn decode_dup_reclaim(b: &[u8]) -> DupReclaimImage {
    let mut r = Reader::new(b);
    DupReclaimImage {
        until_ns: r.i64(),
        account_id: r.u64(),
        request_id: r.u64(),
    }
}

fn header(shard: u32, seq: u64, image: &ShardImage) -> [u8; HEADER_BYTES as usize] {
    let mut v = Vec::with_capacity(HEADER_BYTES as usize);
    v.extend_from_slice(&MAGIC);
    let mut w = Writer(&mut v);
    w.u16(VERSION);
    w.u16(0);
    w.u32(shard);
    w.u64(seq);
    w.i64(image.watermark_ns);
    for n in [
        image.accounts.len(),
        image.tokens.len(),
        image.holds.len(),
        image.dups.len(),
        image.hold_reclaim.len(),
        image.dup_reclaim.len(),
    ] {
        w.u64(n as u64);
    }
    w.u32(0);
    let crc = crc32c::crc32c(&v);
    Writer(&mut v).u32(crc);
    v.try_into().expect("88 bytes")
}

/// Write the whole snapshot file to `out` (header, entries, trailer); entries are streamed
/// through one small reusable buffer.
fn write_image<W: Write>(out: &mut W, shard: u32, seq: u64, image: &ShardImage) -> io::Result<()> {
    out.write_all(&header(shard, seq, image))?;
    let mut crc = 0u32;
    let mut buf = Vec::with_capacity(DUP_BYTES);
    let mut put = |buf: &mut Vec<u8>, out: &mut W| -> io::Result<()> {
        crc = crc32c::crc32c_append(crc, buf);
        out.write_all(buf)?;
        buf.clear();
        Ok(())
    };
    for a in &image.accounts {
        encode_account(&mut buf, a);
        put(&mut buf, out)?;
    }
    for t in &image.tokens {
        encode_token(&mut buf, t);
        put(&mut buf, out)?;
    }
    for h in &image.holds {
        encode_hold(&mut buf, h);
        put(&mut buf, out)?;
    }
    for d in &image.dups {
        encode_dup(&mut buf, d);
        put(&mut buf, out)?;
    }
    for e in &image.hold_reclaim {
        encode_hold_reclaim(&mut buf, e);
        put(&mut buf, out)?;
    }
    for e in &image.dup_reclaim {
        encode_dup_reclaim(&mut buf, e);
        put(&mut buf, out)?;
    }
    out.write_all(&crc.to_le_bytes())
}

/// Why a snapshot did not read: I/O, or damage at a byte offset.
enum ReadError {
    Io(io::Error),
    Corrupt(u64, String),
}

impl From<io::Error> for ReadError {
    fn from(e: io::Error) -> Self {
        ReadError::Io(e)
    }
}

/// Read a whole snapshot of `len` bytes from `input`; returns (shard, seq, image). Checks
/// structure and checksums only (not [`ShardImage::check`]).
fn read_image<R: Read>(input: &mut R, len: u64) -> Result<(u32, u64, ShardImage), ReadError> {
    let corrupt = |at: u64, m: String| ReadError::Corrupt(at, m);
    if len < HEADER_BYTES + TRAILER_BYTES {
        return Err(corrupt(
            0,
            format!("{len} bytes is shorter than a snapshot's header"),
        ));
    }
    let mut h = [0u8; HEADER_BYTES as usize];
    input.read_exact(&mut h)?;
    if h[..8] != MAGIC {
        return Err(corrupt(0, "not a payauth snapshot (bad magic)".into()));
    }
    let stored = u32::from_le_bytes(h[84..88].try_into().expect("4 bytes"));
    let actual = crc32c::crc32c(&h[..84]);
    if stored != actual {
        return Err(corrupt(
            84,
            format!("snapshot header checksum mismatch (stored {stored:#010x}, computed {actual:#010x})"),
        ));
    }
    let mut r = Reader::new(&h[8..84]);
    let version = r.u16();
    let zero = r.u16();
    let shard = r.u32();
    let seq = r.u64();
    let watermark_ns = r.i64();
    let counts = [r.u64(), r.u64(), r.u64(), r.u64(), r.u64(), r.u64()];
    let zero2 = r.u32();
    if version != VERSION || zero != 0 || zero2 != 0 {
        return Err(corrupt(
            8,
            format!("snapshot format version {version}; this build reads {VERSION}"),
        ));
    }
    let sizes = [
        ACCOUNT_BYTES,
        TOKEN_BYTES,
        HOLD_BYTES,
        DUP_BYTES,
        HOLD_RECLAIM_BYTES,
        DUP_RECLAIM_BYTES,
    ];
    let body = counts.iter().zip(sizes).try_fold(0u64, |acc, (&n, size)| {
        n.checked_mul(size as u64)?.checked_add(acc)
    });
    let expected = body.and_then(|b| b.checked_add(HEADER_BYTES + TRAILER_BYTES));
    if expected != Some(len) {
        return Err(corrupt(
            len.min(expected.unwrap_or(u64::MAX)),
            format!("the header's counts {counts:?} need {expected:?} bytes; the file has {len}"),
        ));
    }
    let mut crc = 0u32;
    let mut offset = HEADER_BYTES;
    let mut entry = [0u8; ENTRY_BYTES_MAX];
    let mut next = |input: &mut R,
                    size: usize,
                    offset: &mut u64|
     -> Result<(u64, [u8; ENTRY_BYTES_MAX]), ReadError> {
        input.read_exact(&mut entry[..size])?;
        crc = crc32c::crc32c_append(crc, &entry[..size]);
        let at = *offset;
        *offset += size as u64;
        Ok((at, entry))
    };
    // The counts are bounded by the file's length (checked above).
    let mut image = ShardImage {
        watermark_ns,
        accounts: Vec::with_capacity(counts[0] as usize),
        tokens: Vec::with_capacity(counts[1] as usize),
        holds: Vec::with_capacity(counts[2] as usize),
        dups: Vec::with_capacity(counts[3] as usize),
        hold_reclaim: Vec::with_capacity(counts[4] as usize),
        dup_reclaim: Vec::with_capacity(counts[5] as usize),
    };
    for _ in 0..counts[0] {
        let (at, b) = next(input, ACCOUNT_BYTES, &mut offset)?;
        image.accounts.push(
            decode_account(&b[..ACCOUNT_BYTES])
                .map_err(|m| corrupt(at, format!("account: {m}")))?,
        );
    }
    for _ in 0..counts[1] {
        let (at, b) = next(input, TOKEN_BYTES, &mut offset)?;
        image
            .tokens
            .push(decode_token(&b[..TOKEN_BYTES]).map_err(|m| corrupt(at, format!("token: {m}")))?);
    }
    for _ in 0..counts[2] {
        let (at, b) = next(input, HOLD_BYTES, &mut offset)?;
        image
            .holds
            .push(decode_hold(&b[..HOLD_BYTES]).map_err(|m| corrupt(at, format!("hold: {m}")))?);
    }
    for _ in 0..counts[3] {
        let (at, b) = next(input, DUP_BYTES, &mut offset)?;
        image.dups.push(
            decode_dup(&b[..DUP_BYTES])
                .map_err(|m| corrupt(at, format!("duplicate record: {m}")))?,
        );
    }
    for _ in 0..counts[4] {
        let (at, b) = next(input, HOLD_RECLAIM_BYTES, &mut offset)?;
        image.hold_reclaim.push(
            decode_hold_reclaim(&b[..HOLD_RECLAIM_BYTES])
                .map_err(|m| corrupt(at, format!("hold reclamation entry: {m}")))?,
        );
    }
    for _ in 0..counts[5] {
        let (_, b) = next(input, DUP_RECLAIM_BYTES, &mut offset)?;
        image
            .dup_reclaim
            .push(decode_dup_reclaim(&b[..DUP_RECLAIM_BYTES]));
    }
    let mut trailer = [0u8; 4];
    input.read_exact(&mut trailer)?;
    let stored = u32::from_le_bytes(trailer);
    if stored != crc {
        return Err(corrupt(
            offset,
            format!(
                "snapshot body checksum mismatch (stored {stored:#010x}, computed {crc:#010x})"
            ),
        ));
    }
    Ok((shard, seq, image))
}

/// Write `image`, the state of `shard` after its journal records `[0, seq)`, as
/// `root/shard-{k}/snapshot-{seq:020}.snap`: checked with [`ShardImage::check`], written to
/// a temporary, fsynced, renamed, and the directory fsynced. Returns the file's path.
///
/// Runs on any thread: the shard freezes its store between passes (a clone, right after a
/// commit, with `seq = writer.next_seq()`) and keeps deciding while a background thread
/// builds the image from the copy, writes it here, then calls `journal::prune_shard(root,
/// shard, 2)` (see `durable::ShardJournal::after_commit`).
pub(crate) fn write_snapshot(
    root: &Path,
    shard: usize,
    seq: u64,
    image: &ShardImage,
) -> io::Result<PathBuf> {
    image.check().map_err(|m| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("inconsistent shard image: {m}"),
        )
    })?;
    let shard_u32 = u32::try_from(shard)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "shard over u32"))?;
    let dir = shard_dir(root, shard);
    fs::create_dir_all(&dir)?;
    let path = dir.join(snapshot_name(seq));
    let tmp = tmp_path(&path);
    let file = File::create(&tmp)?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    write_image(&mut out, shard_u32, seq, image)?;
    let mut file = out.into_inner().map_err(|e| e.into_error())?;
    file.flush()?;
    file.sync_all()?;
    drop(file);
    fs::rename(&tmp, &path)?;
    sync_dir(&dir)?;
    Ok(path)
}

/// Read and check the snapshot at `path`, which must belong to `shard`; returns (seq,
/// image). Any damage is an error naming the file and the byte offset.
pub(crate) fn read_snapshot(path: &Path, shard: usize) -> Result<(u64, ShardImage), RecoveryError> {
    let io = |e: io::Error| RecoveryError::io(path, &e);
    let file = File::open(path).map_err(io)?;
    let len = file.metadata().map_err(io)?.len();
    let mut input = BufReader::with_capacity(1 << 20, file);
    let corrupt = |at: u64, m: String| {
        RecoveryError::new(RecoveryErrorKind::Corrupt, m)
            .at_path(path)
            .at_offset(at)
    };
    let (file_shard, seq, image) = match read_image(&mut input, len) {
        Ok(x) => x,
        Err(ReadError::Io(e)) => return Err(io(e)),
        Err(ReadError::Corrupt(at, m)) => return Err(corrupt(at, m)),
    };
    if file_shard as usize != shard {
        return Err(corrupt(
            12,
            format!("snapshot belongs to shard {file_shard}"),
        ));
    }
    image
        .check()
        .map_err(|m| corrupt(HEADER_BYTES, format!("snapshot is inconsistent: {m}")))?;
    Ok((seq, image))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::journal::encoding::tests::{any_code, any_currency, any_kind, any_token_field};
    use proptest::prelude::*;

    fn any_hold_status() -> impl Strategy<Value = HoldStatus> {
        prop_oneof![
            Just(HoldStatus::Open),
            Just(HoldStatus::Closed),
            Just(HoldStatus::Expired)
        ]
    }

    fn any_account() -> impl Strategy<Value = AccountImage> {
        (
            (
                any::<u64>(),
                any_currency(),
                any::<i64>(),
                any::<i64>(),
                0u8..3,
            ),
            (
                any::<i64>(),
                any::<i64>(),
                any::<u64>(),
                any::<i64>(),
                any::<i64>(),
                any::<u64>(),
            ),
        )
            .prop_map(
                |((id, currency, balance_minor, held_minor, s), (p, d, c, day, da, dc))| {
                    AccountImage {
                        id,
                        currency,
                        balance_minor,
                        held_minor,
                        status: account_status_from(s).unwrap(),
                        per_txn_limit_minor: p,
                        daily_limit_minor: d,
                        daily_count_limit: c,
                        day,
                        day_amount_minor: da,
                        day_count: dc,
                    }
                },
            )
    }

    fn any_token() -> impl Strategy<Value = TokenImage> {
        (
            Dpan::MIN..=Dpan::MAX,
            any::<u64>(),
            0u8..3,
            2000u16..=2099,
            1u8..=12,
        )
            .prop_map(|(d, account_id, s, y, m)| TokenImage {
                dpan: Dpan::from_u64(d).unwrap(),
                account_id,
                status: token_status_from(s).unwrap(),
                expiry: Expiry::new(y, m).unwrap(),
            })
    }

    fn any_hold() -> impl Strategy<Value = HoldImage> {
        (
            (
                any::<u64>(),
                any::<u64>(),
                any::<i64>(),
                any::<i64>(),
                any::<i64>(),
            ),
            (
                any::<i64>(),
                any::<i64>(),
                any::<i64>(),
                any::<i64>(),
                any_hold_status(),
            ),
        )
            .prop_map(
                |((account_id, request_id, a, c, v), (r, e, ended, day, status))| HoldImage {
                    account_id,
                    request_id,
                    authorized_minor: a,
                    captured_minor: c,
                    voided_minor: v,
                    refunded_minor: r,
                    expires_at_ns: e,
                    ended_ns: ended,
                    day,
                    status,
                },
            )
    }

    /// A normalized amount, as `AmountKey::from_decimal` makes it.
    fn any_amount_key() -> impl Strategy<Value = (i128, u32)> {
        crate::journal::encoding::tests::any_decimal().prop_map(|d| {
            let n = d.normalize();
            (n.mantissa(), n.scale())
        })
    }

    fn any_dup() -> impl Strategy<Value = DupImage> {
        (
            (
                any::<u64>(),
                any::<u64>(),
                any::<i64>(),
                any_code(),
                any_kind(),
                any_token_field(),
            ),
            (
                proptest::option::of(any::<u64>()),
                proptest::option::of(any_amount_key()),
                proptest::option::of(any_currency()),
                proptest::option::of(any::<u64>()),
                proptest::option::of(any::<u64>()),
                any::<bool>(),
            ),
        )
            .prop_map(
                |(
                    (account_id, request_id, ts_ns, code, kind, token),
                    (fa, amount, currency, mcc, reference, is_final),
                )| DupImage {
                    account_id,
                    request_id,
                    ts_ns,
                    code,
                    fingerprint: FingerprintImage {
                        kind,
                        token,
                        account_id: fa,
                        amount,
                        currency,
                        mcc,
                        reference,
                        is_final,
                    },
                },
            )
    }

    fn any_hold_reclaim() -> impl Strategy<Value = HoldReclaimImage> {
        (
            any::<i64>(),
            proptest::option::of((any::<u64>(), any::<u64>())),
        )
            .prop_map(|(until_ns, hold)| HoldReclaimImage { until_ns, hold })
    }

    fn any_dup_reclaim() -> impl Strategy<Value = DupReclaimImage> {
        (any::<i64>(), any::<u64>(), any::<u64>()).prop_map(|(until_ns, account_id, request_id)| {
            DupReclaimImage {
                until_ns,
                account_id,
                request_id,
            }
        })
    }

    pub(crate) fn any_image() -> impl Strategy<Value = ShardImage> {
        (
            any::<i64>(),
            proptest::collection::vec(any_account(), 0..6),
            proptest::collection::vec(any_token(), 0..6),
            proptest::collection::vec(any_hold(), 0..6),
            proptest::collection::vec(any_dup(), 0..6),
            proptest::collection::vec(any_hold_reclaim(), 0..6),
            proptest::collection::vec(any_dup_reclaim(), 0..6),
        )
            .prop_map(
                |(watermark_ns, accounts, tokens, holds, dups, hold_reclaim, dup_reclaim)| {
                    ShardImage {
                        watermark_ns,
                        accounts,
                        tokens,
                        holds,
                        dups,
                        hold_reclaim,
                        dup_reclaim,
                    }
                },
            )
    }

    fn encode(shard: u32, seq: u64, image: &ShardImage) -> Vec<u8> {
        let mut v = Vec::new();
        write_image(&mut v, shard, seq, image).unwrap();
        v
    }

    fn decode(bytes: &[u8]) -> Result<(u32, u64, ShardImage), (u64, String)> {
        read_image(&mut &bytes[..], bytes.len() as u64).map_err(|e| match e {
            ReadError::Io(e) => (u64::MAX, e.to_string()),
            ReadError::Corrupt(at, m) => (at, m),
        })
    }

    proptest! {
        #[test]
        fn image_round_trips(image in any_image(), shard in any::<u32>(), seq in any::<u64>()) {
            let bytes = encode(shard, seq, &image);
            let (s, q, back) = decode(&bytes).unwrap();
            prop_assert_eq!((s, q), (shard, seq));
            prop_assert_eq!(&back, &image);
            prop_assert_eq!(encode(shard, seq, &back), bytes);
        }

        #[test]
        fn any_flipped_bit_is_caught(image in any_image(), at in any::<prop::sample::Index>(), bit in 0u8..8) {
            let mut bytes = encode(3, 77, &image);
            let i = at.index(bytes.len());
            bytes[i] ^= 1 << bit;
            prop_assert!(decode(&bytes).is_err());
        }

        #[test]
        fn truncation_is_caught(image in any_image(), at in any::<prop::sample::Index>()) {
            let bytes = encode(3, 77, &image);
            let keep = at.index(bytes.len());
            prop_assert!(decode(&bytes[..keep]).is_err());
        }
    }

    /// A small consistent image: two accounts, their tokens, holds and records.
    pub(crate) fn sample_image() -> ShardImage {
        let account = |id: u64, held_minor: i64| AccountImage {
            id,
            currency: Currency::Cny,
            balance_minor: 10000,
            held_minor,
            status: AccountStatus::Active,
            per_txn_limit_minor: i64::MAX,
            daily_limit_minor: 5000,
            daily_count_limit: u64::MAX,
            day: 20_000,
            day_amount_minor: 3000,
            day_count: 2,
        };
        let hold = |account_id, request_id, authorized_minor, captured_minor, status| HoldImage {
            account_id,
            request_id,
            authorized_minor,
            captured_minor,
            voided_minor: 0,
            refunded_minor: 0,
            expires_at_ns: 9,
            ended_ns: 0,
            day: 20_000,
            status,
        };
        ShardImage {
            watermark_ns: 7,
            accounts: vec![account(1, 2500), account(2, 0)],
            tokens: vec![TokenImage {
                dpan: "6200000000000001".parse().unwrap(),
                account_id: 1,
                status: TokenStatus::Active,
                expiry: "3012".parse().unwrap(),
            }],
            holds: vec![
                hold(1, 10, 2000, 500, HoldStatus::Open),
                hold(1, 11, 1000, 0, HoldStatus::Open),
                hold(2, 12, 1000, 1000, HoldStatus::Closed),
            ],
            dups: vec![DupImage {
                account_id: 1,
                request_id: 10,
                ts_ns: 5,
                code: Code::Approved,
                fingerprint: FingerprintImage {
                    kind: Kind::Authorize,
                    token: TokenField::Dpan("6200000000000001".parse().unwrap()),
                    account_id: None,
                    amount: Some((2, 1)),
                    currency: Some(Currency::Cny),
                    mcc: Some(5411),
                    reference: None,
                    is_final: false,
                },
            }],
            hold_reclaim: vec![
                HoldReclaimImage {
                    until_ns: 3,
                    hold: None,
                },
                HoldReclaimImage {
                    until_ns: 6,
                    hold: Some((2, 12)),
                },
            ],
            dup_reclaim: vec![
                DupReclaimImage {
                    until_ns: 4,
                    account_id: 2,
                    request_id: 99,
                },
                DupReclaimImage {
                    until_ns: 8,
                    account_id: 1,
                    request_id: 10,
                },
            ],
        }
    }

    #[test]
    fn check_accepts_a_consistent_image_and_names_what_is_wrong() {
        let good = sample_image();
        assert_eq!(good.check(), Ok(()));
        type Damage = fn(&mut ShardImage);
        let cases: [(&str, Damage); 10] = [
            ("no reclamation entry", |i| i.hold_reclaim.clear()),
            ("two live reclamation entries", |i| {
                i.hold_reclaim[0].hold = Some((2, 12))
            }),
            ("not an ended hold", |i| {
                i.hold_reclaim[0].hold = Some((1, 10))
            }),
            ("account not in the image", |i| {
                i.dup_reclaim[0].account_id = 3
            }),
            ("held", |i| i.accounts[0].held_minor += 1),
            ("appears twice", |i| i.accounts[1].id = 1),
            ("not in the image", |i| i.tokens[0].account_id = 3),
            ("inconsistent amounts", |i| i.holds[2].captured_minor = 1100),
            ("not normalized", |i| {
                i.dups[0].fingerprint.amount = Some((20, 2))
            }),
            ("appears twice", |i| i.holds[1].request_id = 10),
        ];
        for (want, damage) in cases {
            let mut image = good.clone();
            damage(&mut image);
            let err = image.check().unwrap_err();
            assert!(err.contains(want), "{err} should mention {want}");
        }
    }

    #[test]
    fn snapshot_file_round_trip_and_refusals() {
        let root = tempfile::tempdir().unwrap();
        let image = sample_image();
        let path = write_snapshot(root.path(), 1, 42, &image).unwrap();
        assert_eq!(path, root.path().join("shard-1").join(snapshot_name(42)));
        assert!(!tmp_path(&path).exists());
        let (seq, back) = read_snapshot(&path, 1).unwrap();
        assert_eq!((seq, &back), (42, &image));

        let err = read_snapshot(&path, 0).unwrap_err();
        assert_eq!(err.offset(), Some(12), "{err}");

        let mut bytes = fs::read(&path).unwrap();
        let at = HEADER_BYTES as usize + ACCOUNT_BYTES + 3; // inside the second account
        bytes[at] ^= 0x40;
        fs::write(&path, &bytes).unwrap();
        let err = read_snapshot(&path, 1).unwrap_err();
        assert_eq!(err.kind(), RecoveryErrorKind::Corrupt);
        assert_eq!(err.path(), Some(path.as_path()));
        assert!(err.message().contains("checksum"), "{err}");

        let mut inconsistent = image.clone();
        inconsistent.accounts[0].held_minor = 0;
        let e = write_snapshot(root.path(), 1, 43, &inconsistent).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    fn expiry_comes_back_from_the_stores_instant() {
        for year in 2000..=2099u16 {
            for month in 1..=12u8 {
                let e = Expiry::new(year, month).unwrap();
                assert_eq!(expiry_from_expired_from_ns(e.expired_from_ns()), Some(e));
            }
        }
        let e = Expiry::new(2030, 12).unwrap();
        assert_eq!(expiry_from_expired_from_ns(e.expired_from_ns() + 1), None);
        assert_eq!(expiry_from_expired_from_ns(0), None);
        assert_eq!(expiry_from_expired_from_ns(i64::MAX), None);
    }
}
