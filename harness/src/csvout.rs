//! Fast writers of a dataset's CSV files (accounts.csv, tokens.csv, traffic.csv) from engine
//! types, in DOMAIN.md's column order with LF line ends: the canonical text of a dataset.
//!
//! Canonical means: integers without leading zeros; an amount as its decimal's digits with
//! exactly the decimal's scale (`12.340` stays `12.340`, a negative zero becomes `0`); `final`
//! as `0`/`1` on captures and `1`/empty elsewhere; a token that is not a DPAN as its text,
//! quoted when it holds `,`, `"`, CR or LF. Rows are formatted by hand (`itoa`) in parallel
//! chunks and written in order, so the bytes do not depend on the thread count.

use std::io::{self, Write};

use payauth_engine::{AccountSpec, Kind, Request, TokenField, TokenSpec};
use rayon::prelude::*;
use rust_decimal::Decimal;

use crate::rows::TrafficRows;

/// The header row of accounts.csv.
pub const ACCOUNTS_HEADER: &str =
    "account_id,currency,balance,status,per_txn_limit,daily_limit,daily_count_limit\n";
/// The header row of tokens.csv.
pub const TOKENS_HEADER: &str = "token,account_id,status,expiry\n";
/// The header row of traffic.csv.
pub const TRAFFIC_HEADER: &str =
    "ts_ns,request_id,kind,token,account_id,amount,currency,mcc,ref,final\n";

/// Rows formatted per parallel task.
const CHUNK_ROWS: usize = 1 << 15;
/// Chunks formatted before they are written: bounds the memory held in formatted text.
const CHUNKS_IN_FLIGHT: usize = 16;

/// Append the decimal digits of `v`.
fn push_u64(buf: &mut Vec<u8>, v: u64) {
    buf.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
}

/// Append an amount: its digits with exactly its scale, `-` only when it is not zero.
pub fn push_decimal(buf: &mut Vec<u8>, d: &Decimal) {
    let m = d.mantissa();
    if m < 0 {
        buf.push(b'-');
    }
    let mut itoa_buf = itoa::Buffer::new();
    let digits = itoa_buf.format(m.unsigned_abs()).as_bytes();
    let scale = d.scale() as usize;
    if scale == 0 {
        buf.extend_from_slice(digits);
    } else if digits.len() > scale {
        let (int, frac) = digits.split_at(digits.len() - scale);
        buf.extend_from_slice(int);
        buf.push(b'.');
        buf.extend_from_slice(frac);
    } else {
        buf.extend_from_slice(b"0.");
        buf.resize(buf.len() + scale - digits.len(), b'0');
        buf.extend_from_slice(digits);
    }
}

/// Append a text field, quoted (RFC 4180) when it holds a separator, a quote or a line end.
fn push_text(buf: &mut Vec<u8>, text: &str) {
    if text
        .bytes()
        .any(|b| matches!(b, b',' | b'"' | b'\n' | b'\r'))
    {
        buf.push(b'"');
        for b in text.bytes() {
            if b == b'"' {
                buf.push(b'"');
            }
            buf.push(b);
        }
        buf.push(b'"');
    } else {
        buf.extend_from_slice(text.as_bytes());
    }
}

fn push_opt_u64(buf: &mut Vec<u8>, v: Option<u64>) {
    if let Some(v) = v {
        push_u64(buf, v);
    }
}

fn push_opt_decimal(buf: &mut Vec<u8>, d: &Option<Decimal>) {
    if let Some(d) = d {
        push_decimal(buf, d);
    }
}

/// One traffic.csv line. `other_text` is the token's text when it is `TokenField::Other`.
pub fn push_request(buf: &mut Vec<u8>, r: &Request, other_text: Option<&str>) {
    let mut ts = itoa::Buffer::new();
    buf.extend_from_slice(ts.format(r.ts_ns).as_bytes());
    buf.push(b',');
    push_u64(buf, r.request_id);
    buf.push(b',');
    buf.extend_from_slice(r.kind.as_str().as_bytes());
    buf.push(b',');
    match r.token {
        TokenField::Empty => {}
        TokenField::Dpan(d) => push_u64(buf, d.get()),
        TokenField::Other(_) => push_text(buf, other_text.unwrap_or_default()),
    }
    buf.push(b',');
    push_opt_u64(buf, r.account_id);
    buf.push(b',');
    push_opt_decimal(buf, &r.amount);
    buf.push(b',');
    if let Some(c) = r.currency {
        buf.extend_from_slice(c.as_str().as_bytes());
    }
    buf.push(b',');
    push_opt_u64(buf, r.mcc);
    buf.push(b',');
    push_opt_u64(buf, r.reference);
    buf.push(b',');
    match (r.kind, r.is_final) {
        (_, true) => buf.push(b'1'),
        (Kind::Capture, false) => buf.push(b'0'),
        (_, false) => {}
    }
    buf.push(b'\n');
}

/// Write traffic.csv: the header, then one line per request.
///
/// Panics if a request has a `TokenField::Other` token without its text in
/// `rows.token_texts` (see [`TrafficRows::check`]).
pub fn write_traffic_csv<W: Write>(w: &mut W, rows: &TrafficRows) -> io::Result<()> {
    w.write_all(TRAFFIC_HEADER.as_bytes())?;
    let reqs = &rows.requests;
    let texts = &rows.token_texts;
    let chunks = reqs.len().div_ceil(CHUNK_ROWS);
    let mut next = 0;
    while next < chunks {
        let end = (next + CHUNKS_IN_FLIGHT).min(chunks);
        let bufs: Vec<Vec<u8>> = (next..end)
            .into_par_iter()
            .map(|c| {
                let lo = c * CHUNK_ROWS;
                let hi = (lo + CHUNK_ROWS).min(reqs.len());
                let mut buf = Vec::with_capacity((hi - lo) * 96);
                let mut t = texts.partition_point(|(s, _)| *s < lo);
                for (seq, r) in reqs[lo..hi].iter().enumerate().map(|(i, r)| (lo + i, r)) {
                    let text = match r.token {
                        TokenField::Other(_) => {
                            let (s, text) = texts
                                .get(t)
                                .filter(|(s, _)| *s == seq)
                                .unwrap_or_else(|| panic!("request {seq}: no token text"));
                            debug_assert_eq!(*s, seq);
                            t += 1;
                            Some(text.as_str())
                        }
                        _ => None,
                    };
                    push_request(&mut buf, r, text);
                }
                buf
            })
            .collect();
        for b in &bufs {
            w.write_all(b)?;
        }
        next = end;
    }
    Ok(())
}

/// Write accounts.csv.
pub fn write_accounts_csv<W: Write>(w: &mut W, accounts: &[AccountSpec]) -> io::Result<()> {
    w.write_all(ACCOUNTS_HEADER.as_bytes())?;
    for part in accounts.chunks(CHUNK_ROWS * CHUNKS_IN_FLIGHT) {
        let bufs: Vec<Vec<u8>> = part
            .par_chunks(CHUNK_ROWS)
            .map(|chunk| {
                let mut buf = Vec::with_capacity(chunk.len() * 64);
                for a in chunk {
                    push_u64(&mut buf, a.account_id);
                    buf.push(b',');
                    buf.extend_from_slice(a.currency.as_str().as_bytes());
                    buf.push(b',');
                    push_decimal(&mut buf, &a.balance);
                    buf.push(b',');
                    buf.extend_from_slice(a.status.as_str().as_bytes());
                    buf.push(b',');
                    push_opt_decimal(&mut buf, &a.per_txn_limit);
                    buf.push(b',');
                    push_opt_decimal(&mut buf, &a.daily_limit);
                    buf.push(b',');
                    push_opt_u64(&mut buf, a.daily_count_limit);
                    buf.push(b'\n');
                }
                buf
            })
            .collect();
        for b in &bufs {
            w.write_all(b)?;
        }
    }
    Ok(())
}

/// Write tokens.csv.
pub fn write_tokens_csv<W: Write>(w: &mut W, tokens: &[TokenSpec]) -> io::Result<()> {
    w.write_all(TOKENS_HEADER.as_bytes())?;
    for part in tokens.chunks(CHUNK_ROWS * CHUNKS_IN_FLIGHT) {
        let bufs: Vec<Vec<u8>> = part
            .par_chunks(CHUNK_ROWS)
            .map(|chunk| {
                let mut buf = Vec::with_capacity(chunk.len() * 48);
                for t in chunk {
                    push_u64(&mut buf, t.token.get());
                    buf.push(b',');
                    push_u64(&mut buf, t.account_id);
                    buf.push(b',');
                    buf.extend_from_slice(t.status.as_str().as_bytes());
                    buf.push(b',');
                    let (yy, mm) = (t.expiry.year() % 100, t.expiry.month());
                    buf.extend_from_slice(&[
                        b'0' + (yy / 10) as u8,
                        b'0' + (yy % 10) as u8,
                        b'0' + mm / 10,
                        b'0' + mm % 10,
                        b'\n',
                    ]);
                }
                buf
            })
            .collect();
        for b in &bufs {
            w.write_all(b)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn dec(s: &str) -> String {
        let mut buf = Vec::new();
        push_decimal(&mut buf, &Decimal::from_str(s).unwrap());
        String::from_utf8(buf).unwrap()
    }

    #[test]
    fn decimals_keep_their_scale() {
        for s in [
            "0",
            "0.00",
            "12.34",
            "12.340",
            "-0.01",
            "0.05",
            "1000000000",
            "7.9228162514264337593543950335",
            "-79228162514264337593543950335",
        ] {
            assert_eq!(dec(s), s);
            assert_eq!(dec(s), Decimal::from_str(s).unwrap().to_string());
        }
        assert_eq!(dec("-0.00"), "0.00");
    }

    #[test]
    fn texts_are_quoted_when_needed() {
        let mut b = Vec::new();
        push_text(&mut b, "abc");
        push_text(&mut b, "a,b");
        push_text(&mut b, "say \"hi\"");
        push_text(&mut b, "x\ny");
        assert_eq!(
            String::from_utf8(b).unwrap(),
            "abc\"a,b\"\"say \"\"hi\"\"\"\"x\ny\""
        );
    }
}
