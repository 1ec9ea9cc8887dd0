//! Dataset loading: reads a dataset folder's `accounts.csv`, `tokens.csv` and `traffic.csv`
//! into engine types, validating everything DOMAIN.md's "Files" section demands before any
//! request is applied. Every refusal is a [`DatasetError`] naming the file, the line and the
//! field.
//!
//! What is checked where:
//! - every file: header row present, every listed column present once (any order; extra
//!   columns ignored, including their values), every row as wide as the header, no used field
//!   with surrounding whitespace; a UTF-8 BOM is dropped, CRLF accepted, blank lines skipped
//!   (line numbers stay real file lines);
//! - `accounts.csv`: ids and counts u64, currency and status from the listed words, amounts in
//!   the amount grammar and exact in a `Decimal`, no more decimals than the currency, fitting
//!   `i64` minor units, limits not negative, no account twice;
//! - `tokens.csv`: tokens in the DPAN grammar, no token twice, every `account_id` in
//!   accounts.csv, status from the listed words, expiry `YYMM`;
//! - `traffic.csv`: `ts_ns` fits i64 and never goes down, ids and mcc u64, `kind` and a
//!   non-empty `currency` from the listed words, amounts as above (but their value is the
//!   engine's business: `0`, `-1` or `12.345` are declines, not file errors), `final` empty,
//!   `0` or `1`, `token` any UTF-8 text.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::fs::File;
use std::io::{self, BufReader};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use payauth_engine::api::{self, ParseWordError};
use payauth_engine::{
    AccountSpec, AccountStatus, Currency, Dpan, Expiry, Kind, Request, TokenField, TokenSpec,
    TokenStatus,
};
use rust_decimal::Decimal;

use crate::records::{ReadError, Record, RecordReader};

/// File name of the accounts table inside a dataset folder.
pub const ACCOUNTS_FILE: &str = "accounts.csv";
/// File name of the tokens table inside a dataset folder.
pub const TOKENS_FILE: &str = "tokens.csv";
/// File name of the traffic inside a dataset folder.
pub const TRAFFIC_FILE: &str = "traffic.csv";

/// The columns `accounts.csv` must have, in DOMAIN.md's order (files may order them freely).
pub const ACCOUNT_COLUMNS: [&str; 7] = [
    "account_id",
    "currency",
    "balance",
    "status",
    "per_txn_limit",
    "daily_limit",
    "daily_count_limit",
];
/// The columns `tokens.csv` must have.
pub const TOKEN_COLUMNS: [&str; 4] = ["token", "account_id", "status", "expiry"];
/// The columns `traffic.csv` must have.
pub const TRAFFIC_COLUMNS: [&str; 10] = [
    "ts_ns",
    "request_id",
    "kind",
    "token",
    "account_id",
    "amount",
    "currency",
    "mcc",
    "ref",
    "final",
];

/// Read buffer per file: large enough that a 10M-row traffic file streams in few syscalls.
const READ_BUFFER_BYTES: usize = 1 << 20;
/// Longest field text quoted back in an error message.
const SHOWN_CHARS_MAX: usize = 48;

/// A validated dataset, ready for [`payauth_engine::Engine::start`] and submission.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Dataset {
    /// Accounts, in file order.
    pub accounts: Vec<AccountSpec>,
    /// Tokens, in file order; each names an account of `accounts`.
    pub tokens: Vec<TokenSpec>,
    /// Requests, in file order (index = `seq`), `ts_ns` non-decreasing.
    pub traffic: Vec<Request>,
}

impl Dataset {
    /// Load and validate the three files of the dataset folder `dir`.
    ///
    /// The traffic is `traffic.csv`, or the binary `traffic.bin` (see [`crate::binfmt`]) when
    /// that is present instead; a folder with both is refused, since nothing says which one is
    /// meant. Nothing is returned unless all three files are valid.
    pub fn load(dir: &Path) -> Result<Dataset, DatasetError> {
        let accounts = read_accounts(&dir.join(ACCOUNTS_FILE))?;
        let tokens = read_tokens(&dir.join(TOKENS_FILE), &accounts)?;
        let bin = dir.join(crate::binfmt::TRAFFIC_BIN_FILE);
        let traffic = if bin.exists() {
            let refuse = |kind, detail: String| DatasetError {
                kind,
                path: bin.clone(),
                line: None,
                field: None,
                detail,
                source: None,
            };
            if dir.join(TRAFFIC_FILE).exists() {
                return Err(refuse(
                    DatasetErrorKind::Binary,
                    format!(
                        "{TRAFFIC_FILE} is there too; a dataset has one traffic file (remove one)"
                    ),
                ));
            }
            match crate::binfmt::read_file(&bin) {
                Ok((rows, _meta)) => rows.requests,
                Err(e) if e.is_io() => return Err(refuse(DatasetErrorKind::Io, e.to_string())),
                Err(e) => return Err(refuse(DatasetErrorKind::Binary, e.to_string())),
            }
        } else {
            read_traffic(&dir.join(TRAFFIC_FILE))?
        };
        Ok(Dataset {
            accounts,
            tokens,
            traffic,
        })
    }

    /// The instant the final state is reported at: the last traffic row's `ts_ns`, or
    /// `i64::MIN` when there is no traffic.
    pub fn last_ts_ns(&self) -> i64 {
        self.traffic.last().map_or(i64::MIN, |r| r.ts_ns)
    }
}

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

/// Broadly what is wrong with a dataset file; the message has the details.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DatasetErrorKind {
    /// The file could not be opened or read.
    Io,
    /// No header row, a column missing from it, or a column named twice.
    Header,
    /// A row is not shaped like the header (field count, quoting, UTF-8).
    Shape,
    /// A field has leading or trailing whitespace.
    Spaces,
    /// An integer that does not parse or does not fit.
    Integer,
    /// An amount that does not match the grammar or does not fit.
    Amount,
    /// A word (`kind`, `status`, `currency`, `final`, token, expiry) that is not allowed.
    Word,
    /// A traffic row's `ts_ns` is below the previous row's.
    Order,
    /// A token names an account that accounts.csv does not have.
    UnknownAccount,
    /// An `account_id` or token appears twice.
    Duplicate,
    /// A limit is negative.
    NegativeLimit,
    /// An accounts.csv amount has more decimals than its currency.
    Decimals,
    /// A binary traffic file (`traffic.bin`) that is corrupted, truncated, of another format
    /// version, or not canonical; the message gives the byte offset.
    Binary,
}

/// A dataset file refused: names the file, the 1-based line, and the field (column).
#[derive(Debug)]
pub struct DatasetError {
    kind: DatasetErrorKind,
    path: PathBuf,
    line: Option<u64>,
    field: Option<String>,
    detail: String,
    source: Option<io::Error>,
}

impl DatasetError {
    /// The broad kind.
    pub fn kind(&self) -> DatasetErrorKind {
        self.kind
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The 1-based line of the file, where one applies (not for I/O errors).
    pub fn line(&self) -> Option<u64> {
        self.line
    }

    /// The field (column name), where one applies.
    pub fn field(&self) -> Option<&str> {
        self.field.as_deref()
    }

    /// What is wrong, without the location.
    pub fn detail(&self) -> &str {
        &self.detail
    }
}

impl fmt::Display for DatasetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if let Some(field) = &self.field {
            write!(f, ": field {field}")?;
        }
        write!(f, ": {}", self.detail)
    }
}

impl std::error::Error for DatasetError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_ref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// The file being read, for error messages.
struct FileCtx<'a> {
    path: &'a Path,
}

impl FileCtx<'_> {
    fn error(
        &self,
        kind: DatasetErrorKind,
        line: Option<u64>,
        field: Option<&str>,
        detail: String,
    ) -> DatasetError {
        DatasetError {
            kind,
            path: self.path.to_path_buf(),
            line,
            field: field.map(str::to_owned),
            detail,
            source: None,
        }
    }

    fn io(&self, what: &str, e: io::Error) -> DatasetError {
        DatasetError {
            kind: DatasetErrorKind::Io,
            path: self.path.to_path_buf(),
            line: None,
            field: None,
            detail: format!("cannot {what}: {e}"),
            source: Some(e),
        }
    }

    fn open(&self) -> Result<RecordReader<BufReader<File>>, DatasetError> {
        let file = File::open(self.path).map_err(|e| self.io("open", e))?;
        Ok(RecordReader::new(BufReader::with_capacity(
            READ_BUFFER_BYTES,
            file,
        )))
    }

    /// Read the next record, turning reader errors into dataset errors.
    fn read(
        &self,
        rdr: &mut RecordReader<BufReader<File>>,
        rec: &mut Record,
        header: Option<&Header>,
    ) -> Result<bool, DatasetError> {
        let name = |i: usize| header.map(|h| h.name(i));
        match rdr.read(rec) {
            Ok(more) => Ok(more),
            Err(ReadError::Io(e)) => Err(self.io("read", e)),
            Err(ReadError::Unterminated { line, field }) => Err(self.error(
                DatasetErrorKind::Shape,
                Some(line),
                name(field).as_deref(),
                "quoted field is not closed before the end of the file".to_owned(),
            )),
            Err(ReadError::AfterQuote { line, field }) => Err(self.error(
                DatasetErrorKind::Shape,
                Some(line),
                name(field).as_deref(),
                "text after the closing quote of a quoted field".to_owned(),
            )),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Header and rows
// ---------------------------------------------------------------------------------------------

/// A column the loader uses: its name and where the header put it.
#[derive(Clone, Copy, Debug)]
struct Col {
    name: &'static str,
    idx: usize,
}

/// The header row of a file: every column's text, for messages.
struct Header {
    names: Vec<String>,
}

impl Header {
    /// The header text of column `i`, or a 1-based position when the header has no such
    /// column.
    fn name(&self, i: usize) -> String {
        match self.names.get(i) {
            Some(n) if !n.is_empty() => n.clone(),
            _ => format!("#{}", i + 1),
        }
    }

    fn width(&self) -> usize {
        self.names.len()
    }
}

/// Read the header row and find every column of `wanted`.
fn read_header<const N: usize>(
    f: &FileCtx<'_>,
    rdr: &mut RecordReader<BufReader<File>>,
    rec: &mut Record,
    wanted: &[&'static str; N],
) -> Result<(Header, [Col; N]), DatasetError> {
    if !f.read(rdr, rec, None)? {
        return Err(f.error(
            DatasetErrorKind::Header,
            Some(1),
            None,
            format!(
                "the header row is missing (the file is empty); expected columns {}",
                wanted.join(",")
            ),
        ));
    }
    let line = rec.line();
    let mut found: [Option<usize>; N] = [None; N];
    let mut names = Vec::with_capacity(rec.len());
    for i in 0..rec.len() {
        let raw = rec.get(i).unwrap_or_default();
        let text = String::from_utf8_lossy(raw);
        let trimmed = text.trim();
        if let Some(w) = wanted.iter().position(|w| *w == trimmed) {
            if trimmed != text {
                return Err(f.error(
                    DatasetErrorKind::Spaces,
                    Some(line),
                    Some(wanted[w]),
                    format!("header {} has surrounding whitespace", show(raw)),
                ));
            }
            if let Some(first) = found[w] {
                return Err(f.error(
                    DatasetErrorKind::Header,
                    Some(line),
                    Some(wanted[w]),
                    format!(
                        "column appears twice in the header (columns {} and {})",
                        first + 1,
                        i + 1
                    ),
                ));
            }
            found[w] = Some(i);
        }
        names.push(text.into_owned());
    }
    let mut cols = [Col { name: "", idx: 0 }; N];
    for (w, name) in wanted.iter().enumerate() {
        match found[w] {
            Some(idx) => cols[w] = Col { name, idx },
            None => {
                return Err(f.error(
                    DatasetErrorKind::Header,
                    Some(line),
                    Some(name),
                    "column is missing from the header".to_owned(),
                ))
            }
        }
    }
    Ok((Header { names }, cols))
}

/// Read the next data row; check it is exactly as wide as the header and that no used field
/// (`cols`, checked in DOMAIN.md's column order, before any field is parsed) has surrounding
/// whitespace.
fn read_row(
    f: &FileCtx<'_>,
    rdr: &mut RecordReader<BufReader<File>>,
    rec: &mut Record,
    header: &Header,
    cols: &[Col],
) -> Result<bool, DatasetError> {
    if !f.read(rdr, rec, Some(header))? {
        return Ok(false);
    }
    let (have, want) = (rec.len(), header.width());
    if have != want {
        // Name the first used column the row lacks, else the first column it lacks or has
        // too many.
        let field = cols
            .iter()
            .find(|c| c.idx >= have)
            .map_or_else(|| header.name(have.min(want)), |c| c.name.to_owned());
        return Err(f.error(
            DatasetErrorKind::Shape,
            Some(rec.line()),
            Some(&field),
            format!("the row has {have} fields, the header {want}"),
        ));
    }
    for col in cols {
        let raw = rec.get(col.idx).unwrap_or_default();
        if has_surrounding_whitespace(raw) {
            return Err(f.error(
                DatasetErrorKind::Spaces,
                Some(rec.line()),
                Some(col.name),
                format!("{} has surrounding whitespace", show(raw)),
            ));
        }
    }
    Ok(true)
}

/// One data row being validated.
struct Row<'a> {
    f: &'a FileCtx<'a>,
    rec: &'a Record,
}

impl<'a> Row<'a> {
    fn line(&self) -> u64 {
        self.rec.line()
    }

    fn error(&self, col: Col, kind: DatasetErrorKind, detail: String) -> DatasetError {
        self.f
            .error(kind, Some(self.rec.line()), Some(col.name), detail)
    }

    /// The field's bytes (`read_row` checked the width and the whitespace).
    fn raw(&self, col: Col) -> &'a [u8] {
        self.rec.get(col.idx).unwrap_or_default()
    }

    /// A required field: empty is an error of `kind` (what the field should have held).
    fn required(&self, col: Col, kind: DatasetErrorKind) -> Result<&'a [u8], DatasetError> {
        let raw = self.raw(col);
        if raw.is_empty() {
            return Err(self.error(col, kind, "empty, but the field is required".to_owned()));
        }
        Ok(raw)
    }

    /// The field as UTF-8 text.
    fn text(&self, col: Col, raw: &'a [u8]) -> Result<&'a str, DatasetError> {
        std::str::from_utf8(raw).map_err(|_| {
            self.error(
                col,
                DatasetErrorKind::Shape,
                format!("{} is not valid UTF-8", show(raw)),
            )
        })
    }

    fn u64_of(&self, col: Col, raw: &[u8]) -> Result<u64, DatasetError> {
        parse_u64(raw).map_err(|e| self.integer_error(col, raw, e, "u64"))
    }

    fn integer_error(&self, col: Col, raw: &[u8], e: IntError, ty: &str) -> DatasetError {
        let detail = match e {
            IntError::NotInteger => format!("{} is not an unsigned integer", show(raw)),
            IntError::TooBig => format!("{} does not fit in {ty}", show(raw)),
        };
        self.error(col, DatasetErrorKind::Integer, detail)
    }

    /// A required u64.
    fn u64(&self, col: Col) -> Result<u64, DatasetError> {
        let raw = self.required(col, DatasetErrorKind::Integer)?;
        self.u64_of(col, raw)
    }

    /// An optional u64: empty is `None`.
    fn opt_u64(&self, col: Col) -> Result<Option<u64>, DatasetError> {
        let raw = self.raw(col);
        if raw.is_empty() {
            return Ok(None);
        }
        self.u64_of(col, raw).map(Some)
    }

    /// A required `ts_ns`: unsigned digits that fit in i64.
    fn ts_ns(&self, col: Col) -> Result<i64, DatasetError> {
        let raw = self.required(col, DatasetErrorKind::Integer)?;
        let v = parse_u64(raw).map_err(|e| self.integer_error(col, raw, e, "i64"))?;
        i64::try_from(v).map_err(|_| self.integer_error(col, raw, IntError::TooBig, "i64"))
    }

    /// An optional amount: empty is `None`; otherwise the grammar and an exact `Decimal`.
    fn opt_amount(&self, col: Col) -> Result<Option<(Decimal, &'a [u8])>, DatasetError> {
        let raw = self.raw(col);
        if raw.is_empty() {
            return Ok(None);
        }
        if !is_amount_grammar(raw) {
            return Err(self.error(
                col,
                DatasetErrorKind::Amount,
                format!(
                    "{} is not an amount (digits, optionally a sign and decimals: -?[0-9]+(\\.[0-9]+)?)",
                    show(raw)
                ),
            ));
        }
        // The grammar is ASCII, so this cannot fail; `from_str_exact` never rounds.
        let text = std::str::from_utf8(raw).unwrap_or_default();
        let exact = Decimal::from_str_exact(text).or_else(|e| {
            // `1.00000000000000000000000000000` has 29 decimals, more than a Decimal holds,
            // but trailing (and leading) zeros do not count: the number itself fits.
            let short = strip_insignificant_zeros(text);
            if short.len() < text.len() {
                Decimal::from_str_exact(&short)
            } else {
                Err(e)
            }
        });
        exact.map(|d| Some((d, raw))).map_err(|_| {
            self.error(
                col,
                DatasetErrorKind::Amount,
                format!(
                    "{} does not fit in a decimal (at most 28 decimals and 96 bits; never \
                     rounded)",
                    show(raw)
                ),
            )
        })
    }

    /// A traffic amount. Unlike accounts.csv, a well-formed amount too large or too precise
    /// for a `Decimal` is not a file error: it "parses but breaks a rule" (DOMAIN.md), so it
    /// must reach the engine and be declined `13`. It becomes a stand-in with 28 decimals
    /// (more than any currency allows, so every kind declines it) whose digits are a 96-bit
    /// fingerprint of the number's canonical text: equal numbers (`…9.50`, `…9.5`) get equal
    /// stand-ins, so duplicate comparison still treats amounts as numbers.
    fn opt_traffic_amount(&self, col: Col) -> Result<Option<Decimal>, DatasetError> {
        match self.opt_amount(col) {
            Ok(a) => Ok(a.map(|(d, _)| d)),
            Err(e) if e.kind() == DatasetErrorKind::Amount && is_amount_grammar(self.raw(col)) => {
                let text = std::str::from_utf8(self.raw(col)).unwrap_or_default();
                Ok(Some(unrepresentable_amount(text)))
            }
            Err(e) => Err(e),
        }
    }

    /// A required amount.
    fn amount(&self, col: Col) -> Result<(Decimal, &'a [u8]), DatasetError> {
        self.required(col, DatasetErrorKind::Amount)?;
        Ok(self.opt_amount(col)?.expect("required field is not empty"))
    }

    /// A required word parsed by the engine's `FromStr`; `expected` says what is allowed
    /// ("one of CNY, HKD, JPY, USD").
    fn word<T>(&self, col: Col, expected: &str) -> Result<T, DatasetError>
    where
        T: FromStr<Err = ParseWordError>,
    {
        let raw = self.required(col, DatasetErrorKind::Word)?;
        self.word_of(col, raw, expected)
    }

    fn word_of<T>(&self, col: Col, raw: &[u8], expected: &str) -> Result<T, DatasetError>
    where
        T: FromStr<Err = ParseWordError>,
    {
        std::str::from_utf8(raw)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| {
                self.error(
                    col,
                    DatasetErrorKind::Word,
                    format!("{} is not {expected}", show(raw)),
                )
            })
    }
}

// ---------------------------------------------------------------------------------------------
// Field grammars
// ---------------------------------------------------------------------------------------------

/// Why an integer field was refused.
#[derive(Clone, Copy, Debug)]
enum IntError {
    /// Empty, a sign, or anything but ASCII digits.
    NotInteger,
    /// More than the type holds.
    TooBig,
}

/// Unsigned decimal digits (leading zeros allowed; no sign, no `_`) that fit in u64.
fn parse_u64(raw: &[u8]) -> Result<u64, IntError> {
    if raw.is_empty() {
        return Err(IntError::NotInteger);
    }
    let mut v: u64 = 0;
    let mut overflow = false;
    for &b in raw {
        if !b.is_ascii_digit() {
            return Err(IntError::NotInteger);
        }
        match v
            .checked_mul(10)
            .and_then(|x| x.checked_add(u64::from(b - b'0')))
        {
            Some(x) => v = x,
            None => overflow = true,
        }
    }
    if overflow {
        Err(IntError::TooBig)
    } else {
        Ok(v)
    }
}

/// `-?[0-9]+(\.[0-9]+)?`, exactly.
fn is_amount_grammar(raw: &[u8]) -> bool {
    let digits = raw.strip_prefix(b"-").unwrap_or(raw);
    let (int, frac) = match digits.iter().position(|&b| b == b'.') {
        Some(p) => (&digits[..p], Some(&digits[p + 1..])),
        None => (digits, None),
    };
    let all_digits = |s: &[u8]| !s.is_empty() && s.iter().all(u8::is_ascii_digit);
    all_digits(int) && frac.is_none_or(all_digits)
}

/// An amount in the grammar without the zeros that do not change its value: trailing zeros of
/// the fraction (and a fraction of only zeros).
/// The stand-in for a well-formed traffic amount that no `Decimal` holds exactly; see
/// `Row::opt_traffic_amount`.
fn unrepresentable_amount(text: &str) -> Decimal {
    use std::hash::Hasher;
    let (negative, body) = match text.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, text),
    };
    let (int, frac) = body.split_once('.').unwrap_or((body, ""));
    let int = int.trim_start_matches('0');
    let frac = frac.trim_end_matches('0');
    let mut words = [0u64; 2];
    for (salt, word) in words.iter_mut().enumerate() {
        // SipHash with fixed keys: the same text gives the same stand-in in every run.
        #[allow(deprecated)]
        let mut h = std::hash::SipHasher::new_with_keys(0x0070_6179_6175_7468, salt as u64);
        h.write(int.as_bytes());
        h.write_u8(b'.');
        h.write(frac.as_bytes());
        *word = h.finish();
    }
    let [a, b] = words;
    // An odd mantissa ends in a non-zero digit, so the scale stays 28 after normalizing.
    Decimal::from_parts(a as u32 | 1, (a >> 32) as u32, b as u32, negative, 28)
}

fn strip_insignificant_zeros(text: &str) -> String {
    let (sign, body) = match text.strip_prefix('-') {
        Some(b) => ("-", b),
        None => ("", text),
    };
    let (int, frac) = body.split_once('.').unwrap_or((body, ""));
    let int = int.trim_start_matches('0');
    let int = if int.is_empty() { "0" } else { int };
    let frac = frac.trim_end_matches('0');
    if frac.is_empty() {
        format!("{sign}{int}")
    } else {
        format!("{sign}{int}.{frac}")
    }
}

/// True when the field starts or ends with whitespace: Unicode White_Space (e.g. U+3000, the
/// ideographic space) plus the ASCII separators U+001C..U+001F, which Python's `str.strip()`
/// (the reference implementation's test) also strips.
fn has_surrounding_whitespace(raw: &[u8]) -> bool {
    let space = |c: char| c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c);
    let (Some(&first), Some(&last)) = (raw.first(), raw.last()) else {
        return false;
    };
    if first.is_ascii() && last.is_ascii() {
        return space(char::from(first)) || space(char::from(last));
    }
    let text = String::from_utf8_lossy(raw);
    text.starts_with(space) || text.ends_with(space)
}

/// A field's text for a message: quoted, escaped, and cut short if long.
fn show(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw);
    if text.chars().count() <= SHOWN_CHARS_MAX {
        format!("{text:?}")
    } else {
        let head: String = text.chars().take(SHOWN_CHARS_MAX).collect();
        format!("{head:?}... ({} bytes)", raw.len())
    }
}

const CURRENCY_WORDS: &str = "one of CNY, HKD, JPY, USD";
const ACCOUNT_STATUS_WORDS: &str = "one of active, frozen, closed";
const TOKEN_STATUS_WORDS: &str = "one of active, suspended, deactivated";
const KIND_WORDS: &str = "one of authorize, increment, capture, void, refund, credit, \
                          token_suspend, token_resume, token_deactivate, account_freeze, \
                          account_unfreeze, account_close";
const TOKEN_GRAMMAR: &str = "a token (13 to 19 digits, the first not 0)";
const EXPIRY_GRAMMAR: &str = "an expiry (YYMM: year 20YY, month 01 to 12)";

// ---------------------------------------------------------------------------------------------
// The three files
// ---------------------------------------------------------------------------------------------

/// Read and validate `accounts.csv`.
pub fn read_accounts(path: &Path) -> Result<Vec<AccountSpec>, DatasetError> {
    let f = FileCtx { path };
    let mut rdr = f.open()?;
    let mut rec = Record::default();
    let (header, cols) = read_header(&f, &mut rdr, &mut rec, &ACCOUNT_COLUMNS)?;
    let [c_id, c_currency, c_balance, c_status, c_per_txn, c_daily, c_daily_count] = cols;

    let mut first_line: HashMap<u64, u64> = HashMap::new();
    let mut accounts = Vec::new();
    while read_row(&f, &mut rdr, &mut rec, &header, &cols)? {
        let row = Row { f: &f, rec: &rec };
        let account_id = row.u64(c_id)?;
        match first_line.entry(account_id) {
            Entry::Occupied(e) => {
                return Err(row.error(
                    c_id,
                    DatasetErrorKind::Duplicate,
                    format!("account {account_id} already appears on line {}", e.get()),
                ))
            }
            Entry::Vacant(e) => {
                e.insert(row.line());
            }
        }
        let currency: Currency = row.word(c_currency, CURRENCY_WORDS)?;
        let (balance, raw) = row.amount(c_balance)?;
        check_account_amount(&row, c_balance, balance, raw, currency)?;
        let status: AccountStatus = row.word(c_status, ACCOUNT_STATUS_WORDS)?;
        let per_txn_limit = limit(&row, c_per_txn, currency)?;
        let daily_limit = limit(&row, c_daily, currency)?;
        let daily_count_limit = row.opt_u64(c_daily_count)?;
        accounts.push(AccountSpec {
            account_id,
            currency,
            balance,
            status,
            per_txn_limit,
            daily_limit,
            daily_count_limit,
        });
    }
    Ok(accounts)
}

/// An optional accounts.csv limit: not negative, and valid in the currency.
fn limit(row: &Row<'_>, col: Col, currency: Currency) -> Result<Option<Decimal>, DatasetError> {
    let Some((d, raw)) = row.opt_amount(col)? else {
        return Ok(None);
    };
    if d.is_sign_negative() && !d.is_zero() {
        return Err(row.error(
            col,
            DatasetErrorKind::NegativeLimit,
            format!("{} is negative; a limit must be 0 or more", show(raw)),
        ));
    }
    check_account_amount(row, col, d, raw, currency)?;
    Ok(Some(d))
}

/// An accounts.csv amount must have no more decimals than its currency (trailing zeros do not
/// count) and fit in i64 minor units.
fn check_account_amount(
    row: &Row<'_>,
    col: Col,
    d: Decimal,
    raw: &[u8],
    currency: Currency,
) -> Result<(), DatasetError> {
    if d.normalize().scale() > currency.decimals() {
        return Err(row.error(
            col,
            DatasetErrorKind::Decimals,
            format!(
                "{} has more decimals than {currency} allows ({})",
                show(raw),
                currency.decimals()
            ),
        ));
    }
    if api::to_minor(d, currency).is_none() {
        return Err(row.error(
            col,
            DatasetErrorKind::Amount,
            format!(
                "{} does not fit in i64 minor units of {currency}",
                show(raw)
            ),
        ));
    }
    Ok(())
}

/// Read and validate `tokens.csv`; every token must name one of `accounts`.
pub fn read_tokens(path: &Path, accounts: &[AccountSpec]) -> Result<Vec<TokenSpec>, DatasetError> {
    let f = FileCtx { path };
    let mut rdr = f.open()?;
    let mut rec = Record::default();
    let (header, cols) = read_header(&f, &mut rdr, &mut rec, &TOKEN_COLUMNS)?;
    let [c_token, c_account, c_status, c_expiry] = cols;

    let known: HashSet<u64> = accounts.iter().map(|a| a.account_id).collect();
    let mut first_line: HashMap<Dpan, u64> = HashMap::new();
    let mut tokens = Vec::new();
    while read_row(&f, &mut rdr, &mut rec, &header, &cols)? {
        let row = Row { f: &f, rec: &rec };
        let token: Dpan = row.word(c_token, TOKEN_GRAMMAR)?;
        match first_line.entry(token) {
            Entry::Occupied(e) => {
                return Err(row.error(
                    c_token,
                    DatasetErrorKind::Duplicate,
                    format!("token {token} already appears on line {}", e.get()),
                ))
            }
            Entry::Vacant(e) => {
                e.insert(row.line());
            }
        }
        let account_id = row.u64(c_account)?;
        if !known.contains(&account_id) {
            return Err(row.error(
                c_account,
                DatasetErrorKind::UnknownAccount,
                format!("account {account_id} is not in {ACCOUNTS_FILE}"),
            ));
        }
        let status: TokenStatus = row.word(c_status, TOKEN_STATUS_WORDS)?;
        let expiry: Expiry = row.word(c_expiry, EXPIRY_GRAMMAR)?;
        tokens.push(TokenSpec {
            token,
            account_id,
            status,
            expiry,
        });
    }
    Ok(tokens)
}

/// Read and validate `traffic.csv`.
pub fn read_traffic(path: &Path) -> Result<Vec<Request>, DatasetError> {
    let f = FileCtx { path };
    let mut rdr = f.open()?;
    let mut rec = Record::default();
    let (header, cols) = read_header(&f, &mut rdr, &mut rec, &TRAFFIC_COLUMNS)?;
    let [c_ts, c_id, c_kind, c_token, c_account, c_amount, c_currency, c_mcc, c_ref, c_final] =
        cols;

    // Reserve for rows of 40 bytes (shorter than almost any real row) so a large file never
    // regrows the Vec: regrowth copies it and faults in twice the pages, while capacity that
    // is reserved but never written costs no memory.
    let estimate = std::fs::metadata(path).map_or(0, |m| m.len() / 40);
    let mut traffic = Vec::with_capacity(usize::try_from(estimate).unwrap_or(0).min(1 << 27));
    let mut previous: Option<(i64, u64)> = None;
    while read_row(&f, &mut rdr, &mut rec, &header, &cols)? {
        let row = Row { f: &f, rec: &rec };
        let ts_ns = row.ts_ns(c_ts)?;
        if let Some((prev_ts, prev_line)) = previous {
            if ts_ns < prev_ts {
                return Err(row.error(
                    c_ts,
                    DatasetErrorKind::Order,
                    format!(
                        "{ts_ns} is below the previous row's {prev_ts} (line {prev_line}); rows must be in non-decreasing ts_ns"
                    ),
                ));
            }
        }
        previous = Some((ts_ns, row.line()));
        let request_id = row.u64(c_id)?;
        let kind: Kind = row.word(c_kind, KIND_WORDS)?;
        let raw_token = row.raw(c_token);
        let token = TokenField::from_text(row.text(c_token, raw_token)?);
        let account_id = row.opt_u64(c_account)?;
        let amount = row.opt_traffic_amount(c_amount)?;
        let raw_currency = row.raw(c_currency);
        let currency: Option<Currency> = if raw_currency.is_empty() {
            None
        } else {
            Some(row.word_of(c_currency, raw_currency, CURRENCY_WORDS)?)
        };
        let mcc = row.opt_u64(c_mcc)?;
        let reference = row.opt_u64(c_ref)?;
        let is_final = match row.raw(c_final) {
            b"" | b"0" => false,
            b"1" => true,
            raw => {
                return Err(row.error(
                    c_final,
                    DatasetErrorKind::Word,
                    format!("{} is not empty, 0 or 1", show(raw)),
                ))
            }
        };
        traffic.push(Request {
            request_id,
            ts_ns,
            kind,
            token,
            account_id,
            amount,
            currency,
            mcc,
            reference,
            is_final,
        });
    }
    Ok(traffic)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amount_grammar_is_exact() {
        for ok in ["0", "-0", "12", "12.34", "-3.50", "007.0"] {
            assert!(is_amount_grammar(ok.as_bytes()), "{ok}");
        }
        for bad in [
            "", "-", ".5", "5.", "+5", "1e3", "1_000", "1,5", "--1", "1.2.3", "١",
        ] {
            assert!(!is_amount_grammar(bad.as_bytes()), "{bad}");
        }
    }

    #[test]
    fn insignificant_zeros() {
        assert_eq!(strip_insignificant_zeros("12.340"), "12.34");
        assert_eq!(strip_insignificant_zeros("12.000"), "12");
        assert_eq!(strip_insignificant_zeros("-0.0"), "-0");
        assert_eq!(strip_insignificant_zeros("100"), "100");
        assert_eq!(strip_insignificant_zeros("100.01"), "100.01");
    }

    #[test]
    fn integers_are_unsigned_digits_that_fit() {
        assert!(matches!(parse_u64(b"0"), Ok(0)));
        assert!(matches!(parse_u64(b"007"), Ok(7)));
        assert!(matches!(parse_u64(b"18446744073709551615"), Ok(u64::MAX)));
        assert!(matches!(
            parse_u64(b"18446744073709551616"),
            Err(IntError::TooBig)
        ));
        for bad in ["", "+1", "-1", "1_0", "1.0", "0x10", "12a"] {
            assert!(
                matches!(parse_u64(bad.as_bytes()), Err(IntError::NotInteger)),
                "{bad}"
            );
        }
    }

    #[test]
    fn whitespace_includes_unicode_spaces() {
        assert!(has_surrounding_whitespace(b" 1"));
        assert!(has_surrounding_whitespace(b"1\t"));
        assert!(has_surrounding_whitespace("\u{3000}1".as_bytes()));
        assert!(has_surrounding_whitespace("1\u{a0}".as_bytes()));
        assert!(!has_surrounding_whitespace(b"1 2"));
        assert!(!has_surrounding_whitespace(b""));
        assert!(has_surrounding_whitespace(b"\x1f1"));
        assert!(!has_surrounding_whitespace("é".as_bytes()));
    }
}
