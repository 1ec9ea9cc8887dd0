//! Replay output files: `outcomes.csv` (one decision per traffic row) and `balances.csv` (the
//! final account state), byte-exact as DOMAIN.md specifies them: header row, LF line ends,
//! amounts with exactly the currency's decimals.

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use payauth_engine::api;
use payauth_engine::{AccountState, Decision};

/// File name of the decisions written by a replay.
pub const OUTCOMES_FILE: &str = "outcomes.csv";
/// File name of the final balances written by a replay.
pub const BALANCES_FILE: &str = "balances.csv";

/// Write buffer per output file.
const WRITE_BUFFER_BYTES: usize = 1 << 20;

/// Write `seq,request_id,code` rows: `seq` is the index in `decisions` (the traffic row).
pub fn write_outcomes<W: Write>(out: W, decisions: &[Decision]) -> io::Result<()> {
    let mut out = BufWriter::with_capacity(WRITE_BUFFER_BYTES, out);
    out.write_all(OUTCOMES_HEADER)?;
    // Format by hand into one reused line: 10M rows through `write!` cost a second.
    let mut line = Vec::with_capacity(64);
    for (seq, d) in decisions.iter().enumerate() {
        line.clear();
        push_outcome(&mut line, seq as u64, d);
        out.write_all(&line)?;
    }
    out.flush()
}

/// The header row of `outcomes.csv`.
pub const OUTCOMES_HEADER: &[u8] = b"seq,request_id,code\n";

/// Append one `seq,request_id,code` row (with its LF) to `line`.
pub fn push_outcome(line: &mut Vec<u8>, seq: u64, d: &Decision) {
    let mut digits = [0u8; 20];
    line.extend_from_slice(format_u64(seq, &mut digits));
    line.push(b',');
    line.extend_from_slice(format_u64(d.request_id, &mut digits));
    line.push(b',');
    line.extend_from_slice(d.code.as_str().as_bytes());
    line.push(b'\n');
}

/// Write `account_id,balance,held,available` rows, sorted by `account_id`, each amount with
/// exactly its currency's decimals (`12.30`, `0.00`, `-3.50`, JPY `7`).
///
/// Fails, writing nothing useful, if an amount has more decimals than its currency or
/// `available` is not `balance - held`: the state did not come from a sound engine.
pub fn write_balances<W: Write>(out: W, accounts: &[AccountState]) -> Result<()> {
    let mut sorted: Vec<&AccountState> = accounts.iter().collect();
    sorted.sort_by_key(|a| a.account_id);
    let mut out = BufWriter::with_capacity(WRITE_BUFFER_BYTES, out);
    out.write_all(b"account_id,balance,held,available\n")?;
    for a in sorted {
        let minor = |what: &str, d| {
            api::to_minor(d, a.currency).with_context(|| {
                format!(
                    "account {}: {what} {d} is not a whole number of {} minor units",
                    a.account_id, a.currency
                )
            })
        };
        let balance = minor("balance", a.balance)?;
        let held = minor("held", a.held)?;
        let available = minor("available", a.available)?;
        if balance.checked_sub(held) != Some(available) {
            bail!(
                "account {}: available {} is not balance {} - held {}",
                a.account_id,
                a.available,
                a.balance,
                a.held
            );
        }
        writeln!(
            out,
            "{},{},{},{}",
            a.account_id,
            api::from_minor(balance, a.currency),
            api::from_minor(held, a.currency),
            api::from_minor(available, a.currency)
        )?;
    }
    out.flush()?;
    Ok(())
}

/// Write both files into `dir` (created if missing). Each file is written under a temporary
/// name and renamed into place only when both are complete, so a failure leaves no partial
/// output behind.
pub fn write_replay_files(
    dir: &Path,
    decisions: &[Decision],
    accounts: &[AccountState],
) -> Result<()> {
    fs::create_dir_all(dir)
        .with_context(|| format!("cannot create output folder {}", dir.display()))?;
    let outcomes = dir.join(OUTCOMES_FILE);
    let balances = dir.join(BALANCES_FILE);
    let outcomes_tmp = tmp_path(&outcomes);
    let balances_tmp = tmp_path(&balances);
    let written = (|| -> Result<()> {
        let file = File::create(&outcomes_tmp)
            .with_context(|| format!("cannot create {}", outcomes_tmp.display()))?;
        write_outcomes(file, decisions)
            .with_context(|| format!("cannot write {}", outcomes_tmp.display()))?;
        let file = File::create(&balances_tmp)
            .with_context(|| format!("cannot create {}", balances_tmp.display()))?;
        write_balances(file, accounts)
            .with_context(|| format!("cannot write {}", balances_tmp.display()))?;
        fs::rename(&outcomes_tmp, &outcomes)
            .with_context(|| format!("cannot rename to {}", outcomes.display()))?;
        fs::rename(&balances_tmp, &balances)
            .with_context(|| format!("cannot rename to {}", balances.display()))?;
        Ok(())
    })();
    if written.is_err() {
        // Best effort: the error being reported is the one that matters.
        let _ = fs::remove_file(&outcomes_tmp);
        let _ = fs::remove_file(&balances_tmp);
    }
    written
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}

/// Decimal digits of `v`, written into the end of `buf`.
fn format_u64(mut v: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            return &buf[i..];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_u64_matches_display() {
        let mut buf = [0u8; 20];
        for v in [0, 7, 10, 12_345, u64::MAX] {
            assert_eq!(format_u64(v, &mut buf), v.to_string().as_bytes());
        }
    }
}
