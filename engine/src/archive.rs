//! Reading a state directory in place, changing nothing: each shard's oldest kept snapshot
//! (its accounts and tokens) and every journal record after it (the request exactly as it
//! arrived, with the decision it got). A journal is recorded traffic; this is what turns it
//! back into a dataset.

use std::path::Path;

use crate::api::{from_minor, AccountSpec, Code, Request, TokenSpec};
use crate::error::Error;
use crate::journal::{Mode, ShardReport, ShardSink, Start, StateDir};
use crate::snapshot::ShardImage;

/// One journaled record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JournalRecord {
    /// Its number in the shard's journal.
    pub seq: u64,
    /// The request exactly as it arrived.
    pub request: Request,
    /// The decision it was answered with.
    pub code: Code,
}

/// One shard of an archive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArchivedShard {
    /// The shard.
    pub shard: usize,
    /// The oldest snapshot kept covers records `[0, snapshot_seq)`; `records` start there.
    pub snapshot_seq: u64,
    /// The shard's accounts as of that snapshot (balance and status; limits as loaded).
    pub accounts: Vec<AccountSpec>,
    /// The shard's tokens as of that snapshot.
    pub tokens: Vec<TokenSpec>,
    /// State the snapshot holds that account and token lists cannot carry: holds in the
    /// table, duplicate records, and accounts with day usage or money held. All zero for a
    /// snapshot taken at the first start (record 0), the only kind from which the records
    /// replay to the same decisions on a fresh engine.
    pub carried: Carried,
    /// Every record after the snapshot, in seq order.
    pub records: Vec<JournalRecord>,
    /// What reading the shard found (a torn tail is reported, not cut).
    pub report: ShardReport,
}

/// What a snapshot holds beyond accounts and tokens.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Carried {
    /// Holds in the table (open, or ended and still referable).
    pub holds: usize,
    /// Duplicate records still in their window.
    pub dup_records: usize,
    /// Accounts with money held or a day's usage counted.
    pub accounts_in_use: usize,
}

impl Carried {
    /// True when there is nothing: the snapshot is a plain list of accounts and tokens.
    pub fn is_nothing(&self) -> bool {
        *self == Carried::default()
    }
}

/// A state directory as read in place.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Archive {
    /// Shard count the state was created with.
    pub shards: usize,
    /// `Config::hold_ttl_ns` it was created with.
    pub hold_ttl_ns: i64,
    /// `Config::dup_window_ns` it was created with.
    pub dup_window_ns: i64,
    /// `Config::retention_ns` it was created with.
    pub retention_ns: i64,
    /// One per shard, by shard.
    pub shards_read: Vec<ArchivedShard>,
}

/// Read the state directory `dir` without changing it: for each shard, its oldest kept
/// snapshot and the journal after it, checked as recovery checks them (damage before the tail
/// is refused with shard, file and offset; a torn tail is reported in
/// [`ShardReport::bytes_cut`] and left in place). Shards are read in parallel.
pub fn read_archive(dir: &Path) -> Result<Archive, Error> {
    let state = StateDir::open_existing(dir).map_err(Error::from_recovery)?;
    let meta = state.meta();
    let mut sinks: Vec<Sink> = (0..meta.shards).map(|_| Sink::default()).collect();
    let report = state
        .recover_from(&mut sinks, Mode::ReadOnly, Start::Oldest)
        .map_err(Error::from_recovery)?;
    let mut shards_read = Vec::with_capacity(meta.shards);
    for (sink, report) in sinks.into_iter().zip(report.shards) {
        let (seq, image) = sink.snapshot.unwrap_or_default();
        shards_read.push(ArchivedShard {
            shard: report.shard,
            snapshot_seq: seq,
            carried: carried(&image),
            accounts: image.accounts.iter().map(account_spec).collect(),
            tokens: image
                .tokens
                .iter()
                .map(|t| TokenSpec {
                    token: t.dpan,
                    account_id: t.account_id,
                    status: t.status,
                    expiry: t.expiry,
                })
                .collect(),
            records: sink.records,
            report,
        });
    }
    Ok(Archive {
        shards: meta.shards,
        hold_ttl_ns: meta.hold_ttl_ns,
        dup_window_ns: meta.dup_window_ns,
        retention_ns: meta.retention_ns,
        shards_read,
    })
}

fn carried(image: &ShardImage) -> Carried {
    Carried {
        holds: image.holds.len(),
        dup_records: image.dups.len(),
        accounts_in_use: image
            .accounts
            .iter()
            .filter(|a| a.held_minor != 0 || a.day != i64::MIN)
            .count(),
    }
}

fn account_spec(a: &crate::snapshot::AccountImage) -> AccountSpec {
    let limit = |minor: i64| (minor != i64::MAX).then(|| from_minor(minor, a.currency));
    AccountSpec {
        account_id: a.id,
        currency: a.currency,
        balance: from_minor(a.balance_minor, a.currency),
        status: a.status,
        per_txn_limit: limit(a.per_txn_limit_minor),
        daily_limit: limit(a.daily_limit_minor),
        daily_count_limit: (a.daily_count_limit != u64::MAX).then_some(a.daily_count_limit),
    }
}

/// Collects one shard: the snapshot, then the records.
#[derive(Default)]
struct Sink {
    snapshot: Option<(u64, ShardImage)>,
    records: Vec<JournalRecord>,
}

impl ShardSink for Sink {
    fn restore(&mut self, seq: u64, image: ShardImage) -> Result<(), String> {
        self.snapshot = Some((seq, image));
        Ok(())
    }

    fn replay(&mut self, seq: u64, request: &Request, code: Code) -> Result<(), String> {
        self.records.push(JournalRecord {
            seq,
            request: *request,
            code,
        });
        Ok(())
    }
}
