//! `payauth journal-export`: turn a state directory's journal back into a dataset (accounts
//! and tokens as of the oldest snapshot kept, traffic with the original timestamps) plus the
//! decisions the journal recorded, so traffic a host captured replays in the lab to the same
//! decisions.

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use payauth_engine::{read_archive, AccountSpec, Decision, TokenField, TokenSpec};

use crate::csvout;
use crate::output;
use crate::rows::TrafficRows;
use crate::traffic::write_csv;

/// The decisions the journal recorded, in the exported traffic's order, in the format of
/// `outcomes.csv`: replaying the exported dataset must write the same file.
pub const EXPECTED_OUTCOMES_FILE: &str = "expected-outcomes.csv";

/// What an export wrote.
#[derive(Clone, Debug)]
pub struct ExportSummary {
    /// The state directory read.
    pub state_dir: PathBuf,
    /// The dataset folder written.
    pub out_dir: PathBuf,
    /// Accounts and tokens written.
    pub accounts: usize,
    /// Tokens written.
    pub tokens: usize,
    /// Traffic rows written (= journal records).
    pub requests: usize,
    /// Shard count of the state.
    pub shards: usize,
    /// Torn-tail bytes seen (left in place; those batches were never answered).
    pub torn_bytes: u64,
    /// Requests whose non-DPAN token text was replaced by a stand-in (the journal keeps
    /// only a fingerprint of such text).
    pub token_stand_ins: usize,
    /// Time rules of the state: `(hold_ttl_ns, dup_window_ns, retention_ns)`.
    pub times: (i64, i64, i64),
}

impl fmt::Display for ExportSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "exported {} journal records of {} shard(s) from {} into {}: {} accounts, {} tokens",
            self.requests,
            self.shards,
            self.state_dir.display(),
            self.out_dir.display(),
            self.accounts,
            self.tokens
        )?;
        if self.torn_bytes > 0 {
            writeln!(
                f,
                "a torn tail of {} bytes was left out (never answered) and left in place",
                self.torn_bytes
            )?;
        }
        if self.token_stand_ins > 0 {
            writeln!(
                f,
                "{} non-DPAN token texts were replaced by stand-ins (fp + fingerprint): equal \
                 texts stay equal, so decisions do not change",
                self.token_stand_ins
            )?;
        }
        let (ttl, window, retention) = self.times;
        writeln!(
            f,
            "requests answered at resolution (unknown token or account: 14/78) are never \
             journaled and are not in the dataset"
        )?;
        write!(
            f,
            "replay it with --ttl-ns {ttl} --window-ns {window} --retention-ns {retention}; its \
             outcomes.csv must equal {}",
            self.out_dir.join(EXPECTED_OUTCOMES_FILE).display()
        )
    }
}

/// Read `state_dir` in place and write a dataset into `out_dir` (created if missing):
/// accounts.csv and tokens.csv from each shard's oldest kept snapshot, traffic.csv from the
/// journal records after it merged across shards by `ts_ns` (each shard's own order kept),
/// and expected-outcomes.csv with the journaled decisions.
///
/// Refused when a shard's oldest kept snapshot holds state a dataset cannot express (holds,
/// duplicate records, day usage: a snapshot taken after the first start whose journal before
/// it was pruned), or when a shard's records go back in time (a dataset's rows never do):
/// either way the export would not replay to the same decisions.
pub fn export(state_dir: &Path, out_dir: &Path) -> Result<ExportSummary> {
    let archive = read_archive(state_dir)
        .with_context(|| format!("cannot read the state in {}", state_dir.display()))?;
    let mut accounts: Vec<AccountSpec> = Vec::new();
    let mut tokens: Vec<TokenSpec> = Vec::new();
    let mut rows = Vec::new();
    let mut torn_bytes = 0;
    for shard in &archive.shards_read {
        if !shard.carried.is_nothing() {
            let c = shard.carried;
            bail!(
                "shard {}'s oldest kept snapshot (at record {}) holds {} holds, {} duplicate \
                 records and {} accounts with money held or day usage, which a dataset cannot \
                 express: its traffic would not replay to the same decisions. Export needs the \
                 state's first snapshot (record 0): keep it (Config::snapshot_every_records = 0, \
                 as `payauth replay --state` does, or copy it aside before it is pruned)",
                shard.shard,
                shard.snapshot_seq,
                c.holds,
                c.dup_records,
                c.accounts_in_use
            );
        }
        if let Some(w) = shard
            .records
            .windows(2)
            .find(|w| w[1].request.ts_ns < w[0].request.ts_ns)
        {
            bail!(
                "shard {}'s record {} (ts_ns {}) is earlier than record {} (ts_ns {}): a \
                 dataset's rows never go back in time, so this journal cannot become one",
                shard.shard,
                w[1].seq,
                w[1].request.ts_ns,
                w[0].seq,
                w[0].request.ts_ns
            );
        }
        torn_bytes += shard.report.bytes_cut;
        accounts.extend(shard.accounts.iter().cloned());
        tokens.extend(shard.tokens.iter().cloned());
        rows.extend(
            shard
                .records
                .iter()
                .map(|r| (r.request.ts_ns, shard.shard, r.seq, r.request, r.code)),
        );
    }
    // Each shard's records are in ts order, so this keeps each shard's own order; across
    // shards any interleaving decides the same (shards share no state).
    rows.sort_unstable_by_key(|&(ts, shard, seq, _, _)| (ts, shard, seq));
    accounts.sort_by_key(|a| a.account_id);
    tokens.sort_by_key(|t| (t.account_id, t.token));

    let mut traffic = TrafficRows {
        requests: Vec::with_capacity(rows.len()),
        token_texts: Vec::new(),
    };
    let mut expected = Vec::with_capacity(rows.len());
    for (seq, (_, _, _, mut request, code)) in rows.into_iter().enumerate() {
        if let TokenField::Other(fingerprint) = request.token {
            // Only the fingerprint survives; a stand-in text keeps equal tokens equal.
            let text = format!("fp{fingerprint:016x}");
            request.token = TokenField::from_text(&text);
            traffic.token_texts.push((seq, text));
        }
        expected.push(Decision {
            request_id: request.request_id,
            code,
        });
        traffic.requests.push(request);
    }
    traffic.check()?;

    fs::create_dir_all(out_dir).with_context(|| format!("cannot create {}", out_dir.display()))?;
    write_csv(&out_dir.join("accounts.csv"), |w| {
        csvout::write_accounts_csv(w, &accounts)
    })?;
    write_csv(&out_dir.join("tokens.csv"), |w| {
        csvout::write_tokens_csv(w, &tokens)
    })?;
    write_csv(&out_dir.join("traffic.csv"), |w| {
        csvout::write_traffic_csv(w, &traffic)
    })?;
    write_csv(&out_dir.join(EXPECTED_OUTCOMES_FILE), |w| {
        output::write_outcomes(w, &expected)
    })?;
    Ok(ExportSummary {
        state_dir: state_dir.to_path_buf(),
        out_dir: out_dir.to_path_buf(),
        accounts: accounts.len(),
        tokens: tokens.len(),
        requests: traffic.requests.len(),
        shards: archive.shards,
        torn_bytes,
        token_stand_ins: traffic.token_texts.len(),
        times: (
            archive.hold_ttl_ns,
            archive.dup_window_ns,
            archive.retention_ns,
        ),
    })
}
