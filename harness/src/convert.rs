//! `payauth convert`: a dataset's traffic between CSV (`traffic.csv`, with its metadata in
//! `traffic.params`) and binary (`traffic.bin`, metadata in the header), both ways, exactly.
//!
//! The whole source dataset is validated first. accounts.csv and tokens.csv are copied byte
//! for byte. The traffic is written canonically (see [`crate::csvout`] and [`crate::binfmt`]),
//! so binary -> CSV -> binary gives the same bytes, and CSV -> binary -> CSV gives the same
//! requests (the same [`crate::dataset::Dataset`]) in canonical text: `012` becomes `12`, an
//! empty `final` of a capture becomes `0`, columns come in DOMAIN.md's order, extra columns
//! are dropped.

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::binfmt::{self, TRAFFIC_BIN_FILE};
use crate::csvout;
use crate::dataset::{self, ACCOUNTS_FILE, TOKENS_FILE, TRAFFIC_FILE};
use crate::rows::{self, Meta, TrafficRows, PARAMS_FILE};
use crate::traffic::{remove_if_present, write_csv, Format};

/// What a conversion did.
#[derive(Clone, Debug)]
pub struct ConvertSummary {
    /// The traffic file read.
    pub from: PathBuf,
    /// The traffic file written.
    pub to: PathBuf,
    /// Requests converted.
    pub requests: usize,
    /// The metadata carried over.
    pub meta: Meta,
    /// Reading and validating the source.
    pub read_elapsed: Duration,
    /// Writing the destination.
    pub write_elapsed: Duration,
}

impl fmt::Display for ConvertSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "converted {} requests: {} -> {} (read {:.3} s, write {:.3} s)",
            self.requests,
            self.from.display(),
            self.to.display(),
            self.read_elapsed.as_secs_f64(),
            self.write_elapsed.as_secs_f64()
        )?;
        if !self.meta.is_empty() {
            write!(f, "\nmetadata: {}", self.meta)?;
        }
        Ok(())
    }
}

/// The format of a dataset folder's traffic: `traffic.bin` or `traffic.csv`; refused when it
/// has both or neither.
pub fn traffic_format(dir: &Path) -> Result<Format> {
    let bin = dir.join(TRAFFIC_BIN_FILE).exists();
    let csv = dir.join(TRAFFIC_FILE).exists();
    match (csv, bin) {
        (true, false) => Ok(Format::Csv),
        (false, true) => Ok(Format::Bin),
        (true, true) => bail!(
            "{} holds both {TRAFFIC_FILE} and {TRAFFIC_BIN_FILE}; a dataset has one traffic file",
            dir.display()
        ),
        (false, false) => bail!(
            "{} holds neither {TRAFFIC_FILE} nor {TRAFFIC_BIN_FILE}",
            dir.display()
        ),
    }
}

/// Read a dataset's traffic with everything a faithful copy needs (token texts, metadata),
/// after validating its accounts and tokens.
pub fn read_traffic_rows(dir: &Path) -> Result<(TrafficRows, Meta, Format)> {
    let accounts = dataset::read_accounts(&dir.join(ACCOUNTS_FILE))?;
    dataset::read_tokens(&dir.join(TOKENS_FILE), &accounts)?;
    read_traffic_only(dir)
}

/// Read a dataset's traffic (validated) with its token texts and metadata, without looking at
/// accounts.csv and tokens.csv.
pub fn read_traffic_only(dir: &Path) -> Result<(TrafficRows, Meta, Format)> {
    let format = traffic_format(dir)?;
    match format {
        Format::Csv => {
            let path = dir.join(TRAFFIC_FILE);
            let requests = dataset::read_traffic(&path)?;
            let token_texts = rows::token_texts_of_csv(&path)?;
            let meta = Meta::read_sidecar(dir)?;
            let rows = TrafficRows {
                requests,
                token_texts,
            };
            rows.check()
                .with_context(|| format!("{}: token texts", path.display()))?;
            Ok((rows, meta, format))
        }
        Format::Bin => {
            let path = dir.join(TRAFFIC_BIN_FILE);
            let (rows, meta) =
                binfmt::read_file(&path).with_context(|| path.display().to_string())?;
            Ok((rows, meta, format))
        }
    }
}

/// Convert the dataset `src` into the folder `dst` (created if missing; it may be `src`
/// itself), with its traffic in format `to` (default: the other one).
///
/// In `dst`, the traffic file of the other format and a stale `traffic.params` are removed
/// once the new traffic is written, so the folder holds exactly one dataset.
pub fn convert(src: &Path, dst: &Path, to: Option<Format>) -> Result<ConvertSummary> {
    let read_start = Instant::now();
    let (rows, meta, from_format) = read_traffic_rows(src)?;
    let read_elapsed = read_start.elapsed();
    let to = to.unwrap_or(match from_format {
        Format::Csv => Format::Bin,
        Format::Bin => Format::Csv,
    });
    let write_start = Instant::now();
    fs::create_dir_all(dst).with_context(|| format!("cannot create {}", dst.display()))?;
    let same_dir = fs::canonicalize(src)? == fs::canonicalize(dst)?;
    if !same_dir {
        for name in [ACCOUNTS_FILE, TOKENS_FILE] {
            fs::copy(src.join(name), dst.join(name)).with_context(|| {
                format!(
                    "cannot copy {} to {}",
                    src.join(name).display(),
                    dst.display()
                )
            })?;
        }
    }
    let file_of = |f: Format| match f {
        Format::Csv => TRAFFIC_FILE,
        Format::Bin => TRAFFIC_BIN_FILE,
    };
    let target = dst.join(file_of(to));
    match to {
        Format::Csv => {
            let tmp = dst.join(format!("{TRAFFIC_FILE}.tmp"));
            write_csv(&tmp, |w| csvout::write_traffic_csv(w, &rows))?;
            fs::rename(&tmp, &target)
                .with_context(|| format!("cannot rename to {}", target.display()))?;
            meta.write_sidecar(dst)?;
            remove_if_present(&dst.join(TRAFFIC_BIN_FILE))?;
        }
        Format::Bin => {
            binfmt::write_file(&target, &rows, &meta)
                .with_context(|| target.display().to_string())?;
            remove_if_present(&dst.join(TRAFFIC_FILE))?;
            remove_if_present(&dst.join(PARAMS_FILE))?;
        }
    }
    Ok(ConvertSummary {
        from: src.join(file_of(from_format)),
        to: target,
        requests: rows.requests.len(),
        meta,
        read_elapsed,
        write_elapsed: write_start.elapsed(),
    })
}
