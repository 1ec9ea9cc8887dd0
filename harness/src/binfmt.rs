//! The binary traffic format (`traffic.bin`): a versioned, checksummed file of fixed-size
//! little-endian records that loads 10M requests in about a second, plus its encoder and its
//! validating decoder.
//!
//! A binary dataset is a folder with `accounts.csv`, `tokens.csv` and `traffic.bin` in place of
//! `traffic.csv`; the accounts and tokens stay CSV (they are small, and people read them).
//!
//! # Layout (version 1; all integers little-endian)
//!
//! ```text
//! header   64 bytes fixed, then the parameters blob, zero-padded to a multiple of 8
//!   0  magic          8   b"PAYAUTHT"
//!   8  version        u16 1
//!  10  record_bytes   u16 64
//!  12  header_bytes   u32 64 + params_bytes rounded up to 8
//!  16  record_count   u64
//!  24  text_bytes     u64 size of the token-text section
//!  32  seed           u64 the generator's seed (valid when flags bit 0 is set)
//!  40  block_records  u32 records per checksummed block (16384)
//!  44  params_bytes   u32 `key=value\n` lines (UTF-8): the generator's parameters
//!  48  flags          u32 bit 0: seed present; other bits 0
//!  52  header_crc     u32 CRC-32C of the header_bytes, this field taken as 0
//!  56  reserved       8   zero
//! records  record_count x 64 bytes, in traffic order (ts_ns non-decreasing)
//!   0  ts_ns i64 | 8 request_id u64 | 16 token u64 | 24 account_id u64 | 32 ref u64
//!  40  mcc u64 | 48 amount magnitude, low 64 bits | 56 amount magnitude, high 32 bits
//!  60  amount scale u8 (0..=28) | 61 kind u8 (DOMAIN.md order, 0..=11)
//!  62  currency u8 (0 none, 1 CNY, 2 HKD, 3 JPY, 4 USD)
//!  63  flags u8: bits 0-1 token (0 empty, 1 DPAN: token = its value, 2 other text:
//!      token = offset u32 | length u32 << 32 into the text section); bit 2 account_id;
//!      bit 3 amount; bit 4 amount negative; bit 5 mcc; bit 6 ref; bit 7 final
//! text     text_bytes: the texts of tokens outside the DPAN grammar, in record order
//! checksums (ceil(record_count / block_records) + 1) x u32: CRC-32C of each block of
//!      records, then of the text section
//! trailer  8 bytes: CRC-32C of the checksum table (u32), then b"PEND"
//! ```
//!
//! Every encoding is canonical: an absent field is stored as zeros, a zero amount is never
//! negative, texts follow each other in record order with nothing between them. The decoder
//! refuses anything else, so a file that decodes is the only encoding of its content and a
//! binary -> CSV -> binary round trip gives the same bytes. Amounts are exact: a `Decimal`'s
//! 96-bit magnitude, sign and scale (`12.340` keeps its scale 3).
//!
//! The decoder reads the whole file, checks the header, the size, every checksum (block by
//! block, in parallel) and then decodes and validates the records in parallel; any problem is
//! a [`BinError`] naming the byte offset and what is wrong.

use std::fmt;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use payauth_engine::{Currency, Dpan, Kind, Request, TokenField};
use rayon::prelude::*;
use rust_decimal::Decimal;

use crate::rows::{Meta, TrafficRows, META_BYTES_MAX};

/// File name of binary traffic inside a dataset folder.
pub const TRAFFIC_BIN_FILE: &str = "traffic.bin";
/// The first 8 bytes of every binary traffic file.
pub const MAGIC: [u8; 8] = *b"PAYAUTHT";
/// The last 4 bytes of every binary traffic file.
pub const END_MAGIC: [u8; 4] = *b"PEND";
/// The format version this build writes and reads.
pub const VERSION: u16 = 1;
/// Size of one record.
pub const RECORD_BYTES: usize = 64;
/// Size of the fixed part of the header.
pub const FIXED_HEADER_BYTES: usize = 64;
/// Records per checksummed block (1 MiB of records).
pub const BLOCK_RECORDS: usize = 16_384;
/// Size of the trailer.
const TRAILER_BYTES: usize = 8;

const FLAG_SEED: u32 = 1;
const TOKEN_MASK: u8 = 0b11;
const TOKEN_EMPTY: u8 = 0;
const TOKEN_DPAN: u8 = 1;
const TOKEN_OTHER: u8 = 2;
const F_ACCOUNT: u8 = 1 << 2;
const F_AMOUNT: u8 = 1 << 3;
const F_NEGATIVE: u8 = 1 << 4;
const F_MCC: u8 = 1 << 5;
const F_REF: u8 = 1 << 6;
const F_FINAL: u8 = 1 << 7;

/// A binary traffic file refused, or not readable: where (byte offset) and what.
#[derive(Debug)]
pub struct BinError {
    offset: Option<u64>,
    detail: String,
    io: Option<std::io::Error>,
}

impl BinError {
    fn at(offset: u64, detail: impl Into<String>) -> BinError {
        BinError {
            offset: Some(offset),
            detail: detail.into(),
            io: None,
        }
    }

    fn whole(detail: impl Into<String>) -> BinError {
        BinError {
            offset: None,
            detail: detail.into(),
            io: None,
        }
    }

    /// The byte offset of the problem, where one applies.
    pub fn offset(&self) -> Option<u64> {
        self.offset
    }

    /// What is wrong, without the offset.
    pub fn detail(&self) -> &str {
        &self.detail
    }

    /// True when the file could not be read or written (rather than being malformed).
    pub fn is_io(&self) -> bool {
        self.io.is_some()
    }
}

impl fmt::Display for BinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.offset {
            Some(o) => write!(f, "offset {o}: {}", self.detail),
            None => f.write_str(&self.detail),
        }
    }
}

impl std::error::Error for BinError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.io
            .as_ref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

fn io_error(what: &str, e: std::io::Error) -> BinError {
    BinError {
        offset: None,
        detail: format!("cannot {what}: {e}"),
        io: Some(e),
    }
}

// ---------------------------------------------------------------------------------------------
// Layout arithmetic
// ---------------------------------------------------------------------------------------------

/// Where each section of a file lies, from the header's counts.
#[derive(Clone, Copy, Debug)]
struct Sections {
    records_at: usize,
    record_count: usize,
    text_at: usize,
    text_bytes: usize,
    blocks: usize,
    table_at: usize,
    trailer_at: usize,
    total: usize,
}

impl Sections {
    fn new(header_bytes: u64, record_count: u64, text_bytes: u64, block: u64) -> Option<Sections> {
        let records = record_count.checked_mul(RECORD_BYTES as u64)?;
        let blocks = record_count.div_ceil(block);
        let table = blocks.checked_add(1)?.checked_mul(4)?;
        let text_at = header_bytes.checked_add(records)?;
        let table_at = text_at.checked_add(text_bytes)?;
        let trailer_at = table_at.checked_add(table)?;
        let total = trailer_at.checked_add(TRAILER_BYTES as u64)?;
        let u = |v: u64| usize::try_from(v).ok();
        Some(Sections {
            records_at: u(header_bytes)?,
            record_count: u(record_count)?,
            text_at: u(text_at)?,
            text_bytes: u(text_bytes)?,
            blocks: u(blocks)?,
            table_at: u(table_at)?,
            trailer_at: u(trailer_at)?,
            total: u(total)?,
        })
    }
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes(b[at..at + 2].try_into().expect("2 bytes"))
}
fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}
fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// CRC-32C of the header with its checksum field taken as zero.
fn header_crc(header: &[u8]) -> u32 {
    let crc = crc32c::crc32c(&header[..52]);
    let crc = crc32c::crc32c_append(crc, &[0; 4]);
    crc32c::crc32c_append(crc, &header[56..])
}

fn currency_code(c: Option<Currency>) -> u8 {
    match c {
        None => 0,
        Some(Currency::Cny) => 1,
        Some(Currency::Hkd) => 2,
        Some(Currency::Jpy) => 3,
        Some(Currency::Usd) => 4,
    }
}

fn kind_code(k: Kind) -> u8 {
    Kind::ALL
        .iter()
        .position(|x| *x == k)
        .expect("every kind is in Kind::ALL") as u8
}

/// True for text a traffic.csv token field cannot hold: surrounding whitespace (Unicode
/// White_Space and U+001C..U+001F, as the CSV reader refuses).
fn has_surrounding_whitespace(text: &str) -> bool {
    let space = |c: char| c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c);
    text.starts_with(space) || text.ends_with(space)
}

/// Why a token text cannot be stored, if it cannot.
fn text_problem(text: &str) -> Option<&'static str> {
    if text.is_empty() {
        Some("an empty token text (an empty token is stored as token kind 0)")
    } else if !matches!(TokenField::from_text(text), TokenField::Other(_)) {
        Some("a token text in the DPAN grammar (a DPAN is stored as token kind 1)")
    } else if has_surrounding_whitespace(text) {
        Some("a token text with surrounding whitespace (a CSV reader refuses it)")
    } else {
        None
    }
}

// ---------------------------------------------------------------------------------------------
// Encoding
// ---------------------------------------------------------------------------------------------

/// Encode traffic and its metadata as a binary traffic file.
///
/// Refused (with the request's seq in the message): `ts_ns` going down, token texts that do
/// not match the requests ([`TrafficRows::check`]), a token text that no CSV could hold, more
/// than 4 GiB of token text, or metadata that would not read back ([`Meta::check`]).
pub fn encode(rows: &TrafficRows, meta: &Meta) -> Result<Vec<u8>, BinError> {
    rows.check()
        .map_err(|e| BinError::whole(format!("{e:#}")))?;
    meta.check()
        .map_err(|e| BinError::whole(format!("{e:#}")))?;
    let reqs = &rows.requests;
    if let Some(i) = reqs.iter().position(|r| r.ts_ns < 0) {
        return Err(BinError::whole(format!(
            "request {i}: ts_ns {} is negative (traffic.csv cannot hold it)",
            reqs[i].ts_ns
        )));
    }
    if let Some(i) = reqs.windows(2).position(|w| w[1].ts_ns < w[0].ts_ns) {
        return Err(BinError::whole(format!(
            "request {}: ts_ns {} is below the previous request's {}",
            i + 1,
            reqs[i + 1].ts_ns,
            reqs[i].ts_ns
        )));
    }
    // Token texts, laid end to end in record order.
    let mut text = Vec::new();
    let mut spans = Vec::with_capacity(rows.token_texts.len());
    for (seq, t) in &rows.token_texts {
        if let Some(p) = text_problem(t) {
            return Err(BinError::whole(format!(
                "request {seq}: cannot store {p}: {t:?}"
            )));
        }
        let offset = u32::try_from(text.len()).ok();
        let len = u32::try_from(t.len()).ok();
        let (Some(offset), Some(len)) = (offset, len) else {
            return Err(BinError::whole("more than 4 GiB of token text"));
        };
        spans.push(u64::from(offset) | (u64::from(len) << 32));
        text.extend_from_slice(t.as_bytes());
    }
    u32::try_from(text.len()).map_err(|_| BinError::whole("more than 4 GiB of token text"))?;

    let params = meta.params_text();
    let header_bytes = (FIXED_HEADER_BYTES + params.len()).next_multiple_of(8);
    let s = Sections::new(
        header_bytes as u64,
        reqs.len() as u64,
        text.len() as u64,
        BLOCK_RECORDS as u64,
    )
    .ok_or_else(|| BinError::whole("the traffic is too large for this machine's memory"))?;
    let mut out = vec![0u8; s.total];

    // Header.
    let h = &mut out[..header_bytes];
    h[0..8].copy_from_slice(&MAGIC);
    h[8..10].copy_from_slice(&VERSION.to_le_bytes());
    h[10..12].copy_from_slice(&(RECORD_BYTES as u16).to_le_bytes());
    h[12..16].copy_from_slice(&(header_bytes as u32).to_le_bytes());
    h[16..24].copy_from_slice(&(reqs.len() as u64).to_le_bytes());
    h[24..32].copy_from_slice(&(text.len() as u64).to_le_bytes());
    h[32..40].copy_from_slice(&meta.seed.unwrap_or(0).to_le_bytes());
    h[40..44].copy_from_slice(&(BLOCK_RECORDS as u32).to_le_bytes());
    h[44..48].copy_from_slice(&(params.len() as u32).to_le_bytes());
    let flags = if meta.seed.is_some() { FLAG_SEED } else { 0 };
    h[48..52].copy_from_slice(&flags.to_le_bytes());
    h[FIXED_HEADER_BYTES..FIXED_HEADER_BYTES + params.len()].copy_from_slice(params.as_bytes());
    let crc = header_crc(h);
    h[52..56].copy_from_slice(&crc.to_le_bytes());

    // Records, in parallel; the text spans of `Other` tokens come from `spans` by seq.
    let texts = &rows.token_texts;
    out[s.records_at..s.text_at]
        .par_chunks_mut(RECORD_BYTES * BLOCK_RECORDS)
        .enumerate()
        .for_each(|(b, block)| {
            let first = b * BLOCK_RECORDS;
            for (i, rec) in block.chunks_exact_mut(RECORD_BYTES).enumerate() {
                let seq = first + i;
                let span = || spans[texts.partition_point(|(s, _)| *s < seq)];
                encode_record(rec, &reqs[seq], span);
            }
        });
    out[s.text_at..s.table_at].copy_from_slice(&text);

    // Checksums.
    let crcs: Vec<u32> = out[s.records_at..s.text_at]
        .par_chunks(RECORD_BYTES * BLOCK_RECORDS)
        .map(crc32c::crc32c)
        .collect();
    let mut at = s.table_at;
    for crc in crcs
        .into_iter()
        .chain(std::iter::once(crc32c::crc32c(&text)))
    {
        out[at..at + 4].copy_from_slice(&crc.to_le_bytes());
        at += 4;
    }
    let table_crc = crc32c::crc32c(&out[s.table_at..s.trailer_at]);
    out[s.trailer_at..s.trailer_at + 4].copy_from_slice(&table_crc.to_le_bytes());
    out[s.trailer_at + 4..].copy_from_slice(&END_MAGIC);
    Ok(out)
}

fn encode_record(rec: &mut [u8], r: &Request, span: impl FnOnce() -> u64) {
    let mut flags = 0u8;
    let token = match r.token {
        TokenField::Empty => 0,
        TokenField::Dpan(d) => {
            flags |= TOKEN_DPAN;
            d.get()
        }
        TokenField::Other(_) => {
            flags |= TOKEN_OTHER;
            span()
        }
    };
    let opt = |v: Option<u64>, bit: u8, flags: &mut u8| {
        if v.is_some() {
            *flags |= bit;
        }
        v.unwrap_or(0)
    };
    let account = opt(r.account_id, F_ACCOUNT, &mut flags);
    let mcc = opt(r.mcc, F_MCC, &mut flags);
    let reference = opt(r.reference, F_REF, &mut flags);
    let (mut lo, mut hi, mut scale) = (0u64, 0u32, 0u8);
    if let Some(d) = r.amount {
        flags |= F_AMOUNT;
        let m = d.mantissa();
        if m < 0 {
            flags |= F_NEGATIVE;
        }
        let mag = m.unsigned_abs();
        lo = mag as u64;
        hi = (mag >> 64) as u32;
        scale = d.scale() as u8;
    }
    if r.is_final {
        flags |= F_FINAL;
    }
    rec[0..8].copy_from_slice(&r.ts_ns.to_le_bytes());
    rec[8..16].copy_from_slice(&r.request_id.to_le_bytes());
    rec[16..24].copy_from_slice(&token.to_le_bytes());
    rec[24..32].copy_from_slice(&account.to_le_bytes());
    rec[32..40].copy_from_slice(&reference.to_le_bytes());
    rec[40..48].copy_from_slice(&mcc.to_le_bytes());
    rec[48..56].copy_from_slice(&lo.to_le_bytes());
    rec[56..60].copy_from_slice(&hi.to_le_bytes());
    rec[60] = scale;
    rec[61] = kind_code(r.kind);
    rec[62] = currency_code(r.currency);
    rec[63] = flags;
}

/// Encode and write a binary traffic file: to a temporary name beside `path`, renamed into
/// place when complete.
pub fn write_file(path: &Path, rows: &TrafficRows, meta: &Meta) -> Result<(), BinError> {
    let bytes = encode(rows, meta)?;
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(".tmp");
    let tmp = path.with_file_name(tmp_name);
    let written = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&bytes)?;
        f.flush()?;
        std::fs::rename(&tmp, path)
    })();
    written.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io_error(&format!("write {}", path.display()), e)
    })
}

// ---------------------------------------------------------------------------------------------
// Decoding
// ---------------------------------------------------------------------------------------------

/// Read and decode a binary traffic file (see [`decode`]).
pub fn read_file(path: &Path) -> Result<(TrafficRows, Meta), BinError> {
    let bytes = read_all(path).map_err(|e| io_error("read", e))?;
    decode(&bytes)
}

/// The whole file in memory. On Unix, 8 MiB pieces are read in parallel at their offsets, so
/// the copies and the first touches of the buffer's pages are shared between the cores.
fn read_all(path: &Path) -> std::io::Result<Vec<u8>> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileExt;
        const PIECE_BYTES: usize = 8 << 20;
        let file = std::fs::File::open(path)?;
        let len = usize::try_from(file.metadata()?.len())
            .map_err(|_| std::io::Error::other("the file does not fit in memory"))?;
        let mut buf = vec![0u8; len];
        buf.par_chunks_mut(PIECE_BYTES)
            .enumerate()
            .try_for_each(|(i, piece)| file.read_exact_at(piece, (i * PIECE_BYTES) as u64))?;
        // A file that grew while it was read is caught by the size check of `decode`.
        Ok(buf)
    }
    #[cfg(not(unix))]
    {
        std::fs::read(path)
    }
}

/// Just the header of a file: its metadata and record count, after checking the header's own
/// checksum (not the records'). For summaries that do not need the records.
pub fn read_header(bytes: &[u8]) -> Result<(Meta, u64), BinError> {
    let (meta, s) = parse_header(bytes)?;
    Ok((meta, s.record_count as u64))
}

fn parse_header(b: &[u8]) -> Result<(Meta, Sections), BinError> {
    if b.len() < 8 && MAGIC.starts_with(b) {
        return Err(BinError::at(
            b.len() as u64,
            format!(
                "truncated: the file is {} bytes, shorter than the magic",
                b.len()
            ),
        ));
    }
    if b.len() < 8 || b[..8] != MAGIC {
        let shown = String::from_utf8_lossy(&b[..b.len().min(8)]).into_owned();
        return Err(BinError::at(
            0,
            format!(
                "not a payauth binary traffic file: magic {shown:?}, expected {:?}",
                String::from_utf8_lossy(&MAGIC)
            ),
        ));
    }
    if b.len() < FIXED_HEADER_BYTES {
        return Err(BinError::at(
            b.len() as u64,
            format!(
                "truncated: the file is {} bytes, shorter than the {FIXED_HEADER_BYTES}-byte header",
                b.len()
            ),
        ));
    }
    let version = u16_at(b, 8);
    if version != VERSION {
        return Err(BinError::at(
            8,
            format!(
                "format version {version} is not supported (this build reads version {VERSION})"
            ),
        ));
    }
    let record_bytes = u16_at(b, 10);
    if usize::from(record_bytes) != RECORD_BYTES {
        return Err(BinError::at(
            10,
            format!("record size {record_bytes} is not {RECORD_BYTES}"),
        ));
    }
    let header_bytes = u32_at(b, 12) as usize;
    let params_bytes = u32_at(b, 44) as usize;
    if params_bytes > META_BYTES_MAX
        || header_bytes != (FIXED_HEADER_BYTES + params_bytes).next_multiple_of(8)
    {
        return Err(BinError::at(
            12,
            format!(
                "header size {header_bytes} does not fit a parameters blob of {params_bytes} bytes \
                 (at most {META_BYTES_MAX})"
            ),
        ));
    }
    if b.len() < header_bytes {
        return Err(BinError::at(
            b.len() as u64,
            format!(
                "truncated: the file is {} bytes, shorter than its {header_bytes}-byte header",
                b.len()
            ),
        ));
    }
    let header = &b[..header_bytes];
    let stored = u32_at(header, 52);
    let computed = header_crc(header);
    if stored != computed {
        return Err(BinError::at(
            52,
            format!(
                "header checksum mismatch (stored {stored:#010x}, computed {computed:#010x}): \
                 the header (bytes 0..{header_bytes}) is corrupted"
            ),
        ));
    }
    let flags = u32_at(header, 48);
    if flags & !FLAG_SEED != 0 {
        return Err(BinError::at(48, format!("unknown header flags {flags:#x}")));
    }
    if header[56..64].iter().any(|&x| x != 0)
        || header[FIXED_HEADER_BYTES + params_bytes..]
            .iter()
            .any(|&x| x != 0)
    {
        return Err(BinError::at(56, "reserved or padding bytes are not zero"));
    }
    let block = u32_at(header, 40);
    if block as usize != BLOCK_RECORDS {
        return Err(BinError::at(
            40,
            format!("block size {block} records is not {BLOCK_RECORDS}"),
        ));
    }
    let params =
        std::str::from_utf8(&header[FIXED_HEADER_BYTES..FIXED_HEADER_BYTES + params_bytes])
            .map_err(|_| BinError::at(FIXED_HEADER_BYTES as u64, "the parameters are not UTF-8"))?;
    let mut meta = Meta::parse(params)
        .map_err(|e| BinError::at(FIXED_HEADER_BYTES as u64, format!("parameters: {e:#}")))?;
    if meta.seed.is_some() {
        return Err(BinError::at(
            FIXED_HEADER_BYTES as u64,
            "parameters: the seed belongs in the header's seed field",
        ));
    }
    let seed = u64_at(header, 32);
    if flags & FLAG_SEED != 0 {
        meta.seed = Some(seed);
    } else if seed != 0 {
        return Err(BinError::at(
            32,
            "a seed is stored but the seed flag is clear",
        ));
    }
    let record_count = u64_at(header, 16);
    let text_bytes = u64_at(header, 24);
    let s = Sections::new(
        header_bytes as u64,
        record_count,
        text_bytes,
        BLOCK_RECORDS as u64,
    )
    .ok_or_else(|| {
        BinError::at(
            16,
            format!("record count {record_count} and text size {text_bytes} are impossible"),
        )
    })?;
    Ok((meta, s))
}

/// Decode a whole binary traffic file held in memory.
///
/// Checked, in order: magic, version, header size and checksum, flags and padding, the file
/// size against the header's counts (truncated or with trailing bytes), the trailer, the
/// checksum table, every block's checksum, then every record: `ts_ns` not negative, kind,
/// currency, flags, token,
/// amount scale, canonical zeros, token texts (in order, UTF-8, not a DPAN, no surrounding
/// whitespace) and `ts_ns` never going down.
pub fn decode(b: &[u8]) -> Result<(TrafficRows, Meta), BinError> {
    let (meta, s) = parse_header(b)?;
    if b.len() != s.total {
        let what = if b.len() < s.total {
            "truncated"
        } else {
            "trailing bytes"
        };
        return Err(BinError::at(
            b.len().min(s.total) as u64,
            format!(
                "{what}: the file is {} bytes, its header describes {} ({} records, {} bytes of \
                 token text)",
                b.len(),
                s.total,
                s.record_count,
                s.text_bytes
            ),
        ));
    }
    if b[s.trailer_at + 4..] != END_MAGIC {
        return Err(BinError::at(
            (s.trailer_at + 4) as u64,
            "the end marker is missing: the file is corrupted or cut short",
        ));
    }
    let table = &b[s.table_at..s.trailer_at];
    let stored = u32_at(b, s.trailer_at);
    let computed = crc32c::crc32c(table);
    if stored != computed {
        return Err(BinError::at(
            s.table_at as u64,
            format!(
                "checksum table mismatch (stored {stored:#010x}, computed {computed:#010x}): bytes \
                 {}..{} are corrupted",
                s.table_at, s.trailer_at
            ),
        ));
    }
    let records = &b[s.records_at..s.text_at];
    let block_bytes = RECORD_BYTES * BLOCK_RECORDS;
    let bad_block = records
        .par_chunks(block_bytes)
        .enumerate()
        .map(|(i, block)| (i, crc32c::crc32c(block)))
        .find_first(|&(i, crc)| crc != u32_at(table, 4 * i));
    if let Some((i, computed)) = bad_block {
        let lo = s.records_at + i * block_bytes;
        let hi = (lo + block_bytes).min(s.text_at);
        let first = i * BLOCK_RECORDS;
        let last = (first + BLOCK_RECORDS).min(s.record_count) - 1;
        return Err(BinError::at(
            lo as u64,
            format!(
                "checksum mismatch in records {first}..={last} (bytes {lo}..{hi}; stored {:#010x}, \
                 computed {computed:#010x}): the file is corrupted",
                u32_at(table, 4 * i)
            ),
        ));
    }
    let text = &b[s.text_at..s.table_at];
    let text_crc = crc32c::crc32c(text);
    if text_crc != u32_at(table, 4 * s.blocks) {
        return Err(BinError::at(
            s.text_at as u64,
            format!(
                "checksum mismatch in the token texts (bytes {}..{}): the file is corrupted",
                s.text_at, s.table_at
            ),
        ));
    }

    let at = |seq: usize, field: usize| (s.records_at + seq * RECORD_BYTES + field) as u64;
    // An indexed collect writes each request straight into its slot (collecting a `Result`
    // would gather pieces and copy them); a bad record leaves a placeholder and a flag.
    let bad = AtomicBool::new(false);
    let requests: Vec<Request> = records
        .par_chunks_exact(RECORD_BYTES)
        .map(|rec| {
            decode_record(rec, text).unwrap_or_else(|_| {
                bad.store(true, Ordering::Relaxed);
                Request::new(Kind::Authorize, 0, 0)
            })
        })
        .collect();
    if bad.load(Ordering::Relaxed) {
        // Several records may be bad: report the first, whatever thread found which.
        let (seq, e) = records
            .chunks_exact(RECORD_BYTES)
            .enumerate()
            .find_map(|(seq, rec)| decode_record(rec, text).err().map(|e| (seq, e)))
            .expect("a record failed to decode");
        return Err(BinError::at(at(seq, e.0), format!("record {seq}, {}", e.1)));
    }
    if let Some(i) = requests
        .par_windows(2)
        .position_first(|w| w[1].ts_ns < w[0].ts_ns)
    {
        return Err(BinError::at(
            at(i + 1, 0),
            format!(
                "record {}, field ts_ns: {} is below the previous record's {}; records must be in \
                 non-decreasing ts_ns",
                i + 1,
                requests[i + 1].ts_ns,
                requests[i].ts_ns
            ),
        ));
    }
    // Token texts: in record order, end to end, covering the whole section.
    let mut token_texts = Vec::new();
    let mut cursor = 0u64;
    for (seq, rec) in records.chunks_exact(RECORD_BYTES).enumerate() {
        if rec[63] & TOKEN_MASK != TOKEN_OTHER {
            continue;
        }
        let span = u64_at(rec, 16);
        let (offset, len) = (span & 0xFFFF_FFFF, span >> 32);
        if offset != cursor {
            return Err(BinError::at(
                at(seq, 16),
                format!(
                    "record {seq}, field token: its text starts at {offset}, not where the \
                     previous text ended ({cursor})"
                ),
            ));
        }
        cursor += len;
        let t = std::str::from_utf8(&text[offset as usize..cursor as usize])
            .expect("decode_record checked the text");
        token_texts.push((seq, t.to_owned()));
    }
    if cursor != s.text_bytes as u64 {
        return Err(BinError::at(
            (s.text_at as u64) + cursor,
            format!(
                "{} bytes of token text belong to no record",
                s.text_bytes as u64 - cursor
            ),
        ));
    }
    Ok((
        TrafficRows {
            requests,
            token_texts,
        },
        meta,
    ))
}

/// Decode one record; an error is (byte offset within the record, "field F: what").
fn decode_record(rec: &[u8], text: &[u8]) -> Result<Request, (usize, String)> {
    let flags = rec[63];
    let kind_byte = rec[61];
    let kind = *Kind::ALL.get(usize::from(kind_byte)).ok_or((
        61,
        format!("field kind: {kind_byte} is not a request kind (0..=11)"),
    ))?;
    let currency = match rec[62] {
        0 => None,
        c @ 1..=4 => Some(Currency::ALL[usize::from(c) - 1]),
        c => return Err((62, format!("field currency: {c} is not a currency (0..=4)"))),
    };
    let ts_ns = u64_at(rec, 0) as i64;
    if ts_ns < 0 {
        return Err((0, format!("field ts_ns: {ts_ns} is negative")));
    }
    let mut r = Request::new(kind, u64_at(rec, 8), ts_ns);
    r.currency = currency;
    let token = u64_at(rec, 16);
    r.token = match flags & TOKEN_MASK {
        TOKEN_EMPTY if token == 0 => TokenField::Empty,
        TOKEN_EMPTY => return Err((16, "field token: not zero, but the token is empty".into())),
        TOKEN_DPAN => TokenField::Dpan(Dpan::from_u64(token).ok_or_else(|| {
            (
                16,
                format!("field token: {token} is not a DPAN (13 to 19 digits)"),
            )
        })?),
        TOKEN_OTHER => {
            let (offset, len) = ((token & 0xFFFF_FFFF) as usize, (token >> 32) as usize);
            let bytes = text.get(offset..offset + len).ok_or_else(|| {
                (
                    16,
                    format!(
                        "field token: text {offset}..{} lies outside the {}-byte text section",
                        offset + len,
                        text.len()
                    ),
                )
            })?;
            let t = std::str::from_utf8(bytes)
                .map_err(|_| (16, "field token: the text is not UTF-8".to_owned()))?;
            if let Some(p) = text_problem(t) {
                return Err((16, format!("field token: {p}: {t:?}")));
            }
            TokenField::from_text(t)
        }
        _ => return Err((63, "field flags: token kind 3 does not exist".into())),
    };
    let opt = |bit: u8, at: usize, name: &str| -> Result<Option<u64>, (usize, String)> {
        let v = u64_at(rec, at);
        if flags & bit != 0 {
            Ok(Some(v))
        } else if v != 0 {
            Err((
                at,
                format!("field {name}: not zero, but the field is absent"),
            ))
        } else {
            Ok(None)
        }
    };
    r.account_id = opt(F_ACCOUNT, 24, "account_id")?;
    r.reference = opt(F_REF, 32, "ref")?;
    r.mcc = opt(F_MCC, 40, "mcc")?;
    let (lo, hi, scale) = (u64_at(rec, 48), u32_at(rec, 56), rec[60]);
    let negative = flags & F_NEGATIVE != 0;
    if flags & F_AMOUNT != 0 {
        if scale > 28 {
            return Err((60, format!("field amount: scale {scale} is above 28")));
        }
        if negative && lo == 0 && hi == 0 {
            return Err((
                63,
                "field amount: a zero amount is stored as negative".into(),
            ));
        }
        r.amount = Some(Decimal::from_parts(
            lo as u32,
            (lo >> 32) as u32,
            hi,
            negative,
            u32::from(scale),
        ));
    } else if lo != 0 || hi != 0 || scale != 0 || negative {
        return Err((
            48,
            "field amount: not zero, but the amount is absent".into(),
        ));
    }
    r.is_final = flags & F_FINAL != 0;
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> TrafficRows {
        let d = |s: &str| Some(s.parse::<Decimal>().unwrap());
        let mut a = Request::new(Kind::Authorize, 7, 1_000)
            .with_token(Dpan::from_u64(6_258_000_000_000_001).unwrap());
        a.amount = d("12.340");
        a.currency = Some(Currency::Cny);
        a.mcc = Some(5411);
        let mut c = Request::new(Kind::Capture, 8, 1_000)
            .with_ref(7)
            .with_final(true);
        c.token = TokenField::from_text("not, a \"token\"");
        let credit = Request::new(Kind::Credit, 9, 2_000)
            .with_account(2_088_000_000_000_001)
            .with_amount("-0.01".parse().unwrap(), Currency::Jpy);
        TrafficRows {
            requests: vec![a, c, credit],
            token_texts: vec![(1, "not, a \"token\"".to_owned())],
        }
    }

    #[test]
    fn round_trip_keeps_every_field_and_the_meta() {
        let rows = sample();
        let meta = Meta {
            seed: Some(99),
            params: vec![("profile".into(), "steady".into())],
        };
        let bytes = encode(&rows, &meta).unwrap();
        let (back, m) = decode(&bytes).unwrap();
        assert_eq!(back, rows);
        assert_eq!(m, meta);
        assert_eq!(back.requests[0].amount.unwrap().scale(), 3);
        assert_eq!(encode(&back, &m).unwrap(), bytes);
    }

    #[test]
    fn empty_traffic_round_trips() {
        let bytes = encode(&TrafficRows::default(), &Meta::default()).unwrap();
        let (rows, meta) = decode(&bytes).unwrap();
        assert!(rows.requests.is_empty() && meta.is_empty());
    }

    #[test]
    fn encoder_refuses_what_csv_cannot_hold() {
        let mut rows = sample();
        rows.token_texts[0].1 = " x".into();
        rows.requests[1].token = TokenField::from_text(" x");
        assert!(encode(&rows, &Meta::default()).is_err());
        let mut rows = sample();
        rows.requests.swap(0, 2);
        assert!(encode(&rows, &Meta::default()).is_err());
    }
}
