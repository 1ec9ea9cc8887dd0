//! Traffic as rows in memory, with what a [`Request`] cannot say about itself: the text of each
//! token that is not a DPAN (a `Request` keeps only its fingerprint), and the metadata of a
//! generated dataset (its seed and generator parameters) kept beside the traffic in
//! `traffic.params` or in the binary file's header.

use std::fmt;
use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use anyhow::{bail, ensure, Context, Result};
use payauth_engine::{Request, TokenField};

use crate::records::{Record, RecordReader};

/// File name of the metadata sidecar of a CSV dataset: `key=value` lines, the seed first.
pub const PARAMS_FILE: &str = "traffic.params";

/// Longest metadata text accepted (header blob or sidecar), bytes.
pub const META_BYTES_MAX: usize = 64 * 1024;

/// Traffic rows in file order, with the text of every token outside the DPAN grammar.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrafficRows {
    /// The requests, in file order (index = `seq`).
    pub requests: Vec<Request>,
    /// `(seq, text)` of each request whose token is [`TokenField::Other`], ascending by seq;
    /// `TokenField::from_text(text)` is that request's token.
    pub token_texts: Vec<(usize, String)>,
}

impl TrafficRows {
    /// Check that `token_texts` names exactly the requests with an `Other` token, in order,
    /// each with a text that gives its fingerprint.
    pub fn check(&self) -> Result<()> {
        let mut texts = self.token_texts.iter().peekable();
        for (seq, r) in self.requests.iter().enumerate() {
            match r.token {
                TokenField::Other(_) => {
                    let Some((s, text)) = texts.next() else {
                        bail!("request {seq} has a non-DPAN token but no token text");
                    };
                    ensure!(
                        *s == seq,
                        "token texts out of step: request {seq} has a non-DPAN token, the next text is for {s}"
                    );
                    ensure!(
                        TokenField::from_text(text) == r.token,
                        "request {seq}: token text {text:?} does not give the request's token"
                    );
                }
                _ => {
                    if let Some((s, _)) = texts.peek() {
                        ensure!(
                            *s != seq,
                            "request {seq} has a token text but its token is not a non-DPAN text"
                        );
                    }
                }
            }
        }
        ensure!(
            texts.next().is_none(),
            "token texts name requests past the end or out of order"
        );
        Ok(())
    }
}

/// Where a dataset came from: a generator's seed and parameters, as ordered `key=value` pairs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Meta {
    /// The seed that makes the dataset again, if it was generated.
    pub seed: Option<u64>,
    /// Everything else the generator was told, in order (no `seed` key here).
    pub params: Vec<(String, String)>,
}

impl Meta {
    /// True when there is nothing to say.
    pub fn is_empty(&self) -> bool {
        self.seed.is_none() && self.params.is_empty()
    }

    /// The value of parameter `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The parameters as `key=value` lines, without the seed.
    pub fn params_text(&self) -> String {
        let mut s = String::new();
        for (k, v) in &self.params {
            s.push_str(k);
            s.push('=');
            s.push_str(v);
            s.push('\n');
        }
        s
    }

    /// The sidecar text: `seed=S` first (if any), then the parameters.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        if let Some(seed) = self.seed {
            s.push_str(&format!("seed={seed}\n"));
        }
        s + &self.params_text()
    }

    /// Parse `key=value` lines (LF-terminated, the last may lack it); a `seed` line sets the
    /// seed. Keys are `[A-Za-z0-9_.-]+`, each at most once; values are any text but CR/LF.
    pub fn parse(text: &str) -> Result<Meta> {
        ensure!(
            text.len() <= META_BYTES_MAX,
            "metadata is {} bytes, more than {META_BYTES_MAX}",
            text.len()
        );
        let mut meta = Meta::default();
        for (i, line) in text.split_terminator('\n').enumerate() {
            let n = i + 1;
            let Some((k, v)) = line.split_once('=') else {
                bail!("line {n}: {line:?} is not key=value");
            };
            ensure!(
                valid_key(k),
                "line {n}: {k:?} is not a key ([A-Za-z0-9_.-]+)"
            );
            ensure!(!v.contains('\r'), "line {n}: the value contains a CR");
            if k == "seed" {
                ensure!(meta.seed.is_none(), "line {n}: seed given twice");
                meta.seed = Some(
                    v.parse()
                        .with_context(|| format!("line {n}: seed {v:?} is not a u64"))?,
                );
            } else {
                ensure!(meta.get(k).is_none(), "line {n}: key {k} given twice");
                meta.params.push((k.to_owned(), v.to_owned()));
            }
        }
        Ok(meta)
    }

    /// Check that the metadata can be written and parsed back unchanged.
    pub fn check(&self) -> Result<()> {
        for (k, v) in &self.params {
            ensure!(
                valid_key(k) && k != "seed",
                "metadata key {k:?} is not [A-Za-z0-9_.-]+ (or is `seed`)"
            );
            ensure!(
                !v.contains(['\n', '\r']),
                "metadata value of {k} has a line break"
            );
        }
        let text = self.to_text();
        ensure!(
            text.len() <= META_BYTES_MAX,
            "metadata is {} bytes, more than {META_BYTES_MAX}",
            text.len()
        );
        Ok(())
    }

    /// Read the sidecar of a dataset folder; no sidecar is empty metadata.
    pub fn read_sidecar(dir: &Path) -> Result<Meta> {
        let path = dir.join(PARAMS_FILE);
        match std::fs::read(&path) {
            Ok(bytes) => {
                let text = String::from_utf8(bytes)
                    .map_err(|_| anyhow::anyhow!("{}: not UTF-8", path.display()))?;
                Meta::parse(&text).with_context(|| path.display().to_string())
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Meta::default()),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }

    /// Write the sidecar into a dataset folder, or remove a stale one when there is nothing
    /// to say.
    pub fn write_sidecar(&self, dir: &Path) -> Result<()> {
        let path = dir.join(PARAMS_FILE);
        if self.is_empty() {
            match std::fs::remove_file(&path) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(e).with_context(|| format!("cannot remove {}", path.display())),
            }
        } else {
            std::fs::write(&path, self.to_text())
                .with_context(|| format!("cannot write {}", path.display()))
        }
    }
}

impl fmt::Display for Meta {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        let mut sep = |f: &mut fmt::Formatter<'_>| {
            let s = if first { "" } else { " " };
            first = false;
            f.write_str(s)
        };
        if let Some(seed) = self.seed {
            sep(f)?;
            write!(f, "seed={seed}")?;
        }
        for (k, v) in &self.params {
            sep(f)?;
            write!(f, "{k}={v}")?;
        }
        Ok(())
    }
}

fn valid_key(k: &str) -> bool {
    !k.is_empty()
        && k.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// The text of every non-DPAN token of a traffic.csv, as `(seq, text)`: what a `Request`
/// keeps only as a fingerprint. The file is expected to be valid (load it first); this pass
/// reads just the `token` column.
pub fn token_texts_of_csv(path: &Path) -> Result<Vec<(usize, String)>> {
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut rdr = RecordReader::new(BufReader::with_capacity(1 << 20, file));
    let mut rec = Record::default();
    let bad = |what: &str| anyhow::anyhow!("{}: {what}", path.display());
    if !rdr.read(&mut rec).map_err(|_| bad("unreadable header"))? {
        bail!(bad("no header"));
    }
    let col = (0..rec.len())
        .find(|&i| rec.get(i) == Some(b"token"))
        .ok_or_else(|| bad("no token column"))?;
    let mut texts = Vec::new();
    let mut seq = 0usize;
    while rdr.read(&mut rec).map_err(|_| bad("unreadable row"))? {
        let raw = rec.get(col).unwrap_or_default();
        // Empty fields and DPANs (nearly every row) need no look at the text.
        if !raw.is_empty() && !is_dpan_shaped(raw) {
            let text = std::str::from_utf8(raw).map_err(|_| bad("token is not UTF-8"))?;
            if matches!(TokenField::from_text(text), TokenField::Other(_)) {
                texts.push((seq, text.to_owned()));
            }
        }
        seq += 1;
    }
    Ok(texts)
}

/// In the DPAN grammar: 13 to 19 ASCII digits, the first not 0.
fn is_dpan_shaped(raw: &[u8]) -> bool {
    (13..=19).contains(&raw.len()) && raw[0] != b'0' && raw.iter().all(u8::is_ascii_digit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_text_round_trips() {
        let m = Meta {
            seed: Some(42),
            params: vec![
                ("profile".into(), "steady".into()),
                ("rate_per_s".into(), "1000".into()),
                ("note".into(), "a=b c".into()),
            ],
        };
        assert_eq!(Meta::parse(&m.to_text()).unwrap(), m);
        assert_eq!(
            m.to_string(),
            "seed=42 profile=steady rate_per_s=1000 note=a=b c"
        );
        assert!(Meta::parse("x").is_err());
        assert!(Meta::parse("seed=x\n").is_err());
        assert!(Meta::parse("a b=1\n").is_err());
        assert!(Meta::parse("a=1\na=2\n").is_err());
        assert_eq!(Meta::parse("").unwrap(), Meta::default());
    }

    #[test]
    fn dpan_shape() {
        assert!(!is_dpan_shaped(b"123"));
        assert!(!is_dpan_shaped(b"0123456789012"));
        assert!(is_dpan_shaped(b"1234567890123"));
        assert!(!is_dpan_shaped(b"12345678901234567890"));
        assert!(!is_dpan_shaped(b"123456789012a"));
    }
}
