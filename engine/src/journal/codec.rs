//! Fixed little-endian binary encodings shared by the journal and the snapshots: the enum
//! codes, exact decimals, and one journal record (a request with its decision code).
//!
//! Every decoder is strict: it accepts exactly the bytes its encoder writes (unused fields
//! zero, no unknown flag bits, valid enum codes), so `encode(decode(b)) == b` whenever
//! `decode(b)` succeeds, and damage that slips past a checksum is still refused.

use rust_decimal::Decimal;

use crate::api::{
    AccountStatus, Code, Currency, Dpan, HoldStatus, Kind, Request, TokenField, TokenStatus,
};

/// Why bytes did not decode; the caller adds the file and offset.
pub(crate) type DecodeError = String;

/// Little-endian cursor over a byte slice with a known length; every read is bounds-checked
/// by the caller having checked the slice length once.
pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader { bytes, at: 0 }
    }

    fn take<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        out.copy_from_slice(&self.bytes[self.at..self.at + N]);
        self.at += N;
        out
    }

    pub(crate) fn u8(&mut self) -> u8 {
        self.take::<1>()[0]
    }

    pub(crate) fn u16(&mut self) -> u16 {
        u16::from_le_bytes(self.take())
    }

    pub(crate) fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.take())
    }

    pub(crate) fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.take())
    }

    pub(crate) fn i64(&mut self) -> i64 {
        i64::from_le_bytes(self.take())
    }

    pub(crate) fn i128(&mut self) -> i128 {
        i128::from_le_bytes(self.take())
    }

    /// A 96-bit unsigned integer stored in 12 bytes.
    pub(crate) fn u96(&mut self) -> u128 {
        let mut b = [0u8; 16];
        b[..12].copy_from_slice(&self.take::<12>());
        u128::from_le_bytes(b)
    }
}

/// Little-endian appender onto a byte vector.
pub(crate) struct Writer<'a>(pub(crate) &'a mut Vec<u8>);

impl Writer<'_> {
    pub(crate) fn u8(&mut self, v: u8) {
        self.0.push(v);
    }

    pub(crate) fn u16(&mut self, v: u16) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }

    pub(crate) fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }

    pub(crate) fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }

    pub(crate) fn i64(&mut self, v: i64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }

    pub(crate) fn i128(&mut self, v: i128) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }

    /// The low 96 bits of `v` in 12 bytes (`v` must be below 2^96).
    #[cfg(test)]
    pub(crate) fn u96(&mut self, v: u128) {
        debug_assert!(v >> 96 == 0);
        self.0.extend_from_slice(&v.to_le_bytes()[..12]);
    }
}

// ---------------------------------------------------------------------------------------------
// Enum codes. Numbers are part of the file formats: never renumber, only append.
// ---------------------------------------------------------------------------------------------

/// `Kind` as its position in [`Kind::ALL`] (DOMAIN.md order): authorize 0 .. account_close 11.
pub(crate) fn kind_code(kind: Kind) -> u8 {
    match kind {
        Kind::Authorize => 0,
        Kind::Increment => 1,
        Kind::Capture => 2,
        Kind::Void => 3,
        Kind::Refund => 4,
        Kind::Credit => 5,
        Kind::TokenSuspend => 6,
        Kind::TokenResume => 7,
        Kind::TokenDeactivate => 8,
        Kind::AccountFreeze => 9,
        Kind::AccountUnfreeze => 10,
        Kind::AccountClose => 11,
    }
}

pub(crate) fn kind_from(v: u8) -> Result<Kind, DecodeError> {
    Kind::ALL
        .iter()
        .copied()
        .find(|&k| kind_code(k) == v)
        .ok_or_else(|| format!("kind code {v} is not a kind"))
}

/// `Code` as its two ISO 8583 digits read as a number (`00` -> 0, `94` -> 94).
pub(crate) fn code_code(code: Code) -> u8 {
    code as u8
}

pub(crate) fn code_from(v: u8) -> Result<Code, DecodeError> {
    Code::ALL
        .iter()
        .copied()
        .find(|&c| c as u8 == v)
        .ok_or_else(|| format!("decision code {v} is not an ISO 8583 code the engine answers"))
}

/// `Currency`: CNY 1, HKD 2, JPY 3, USD 4; 0 is "none" where the field is optional.
pub(crate) fn currency_code(currency: Currency) -> u8 {
    match currency {
        Currency::Cny => 1,
        Currency::Hkd => 2,
        Currency::Jpy => 3,
        Currency::Usd => 4,
    }
}

pub(crate) fn currency_opt_code(currency: Option<Currency>) -> u8 {
    currency.map_or(0, currency_code)
}

pub(crate) fn currency_opt_from(v: u8) -> Result<Option<Currency>, DecodeError> {
    if v == 0 {
        return Ok(None);
    }
    Currency::ALL
        .iter()
        .copied()
        .find(|&c| currency_code(c) == v)
        .map(Some)
        .ok_or_else(|| format!("currency code {v} is not a currency"))
}

pub(crate) fn currency_from(v: u8) -> Result<Currency, DecodeError> {
    currency_opt_from(v)?.ok_or_else(|| "currency code 0 where a currency is required".into())
}

/// `AccountStatus`: active 0, frozen 1, closed 2.
pub(crate) fn account_status_code(s: AccountStatus) -> u8 {
    match s {
        AccountStatus::Active => 0,
        AccountStatus::Frozen => 1,
        AccountStatus::Closed => 2,
    }
}

pub(crate) fn account_status_from(v: u8) -> Result<AccountStatus, DecodeError> {
    match v {
        0 => Ok(AccountStatus::Active),
        1 => Ok(AccountStatus::Frozen),
        2 => Ok(AccountStatus::Closed),
        _ => Err(format!("account status code {v} is not a status")),
    }
}

/// `TokenStatus`: active 0, suspended 1, deactivated 2.
pub(crate) fn token_status_code(s: TokenStatus) -> u8 {
    match s {
        TokenStatus::Active => 0,
        TokenStatus::Suspended => 1,
        TokenStatus::Deactivated => 2,
    }
}

pub(crate) fn token_status_from(v: u8) -> Result<TokenStatus, DecodeError> {
    match v {
        0 => Ok(TokenStatus::Active),
        1 => Ok(TokenStatus::Suspended),
        2 => Ok(TokenStatus::Deactivated),
        _ => Err(format!("token status code {v} is not a status")),
    }
}

/// `HoldStatus`: open 0, closed 1, expired 2.
pub(crate) fn hold_status_code(s: HoldStatus) -> u8 {
    match s {
        HoldStatus::Open => 0,
        HoldStatus::Closed => 1,
        HoldStatus::Expired => 2,
    }
}

pub(crate) fn hold_status_from(v: u8) -> Result<HoldStatus, DecodeError> {
    match v {
        0 => Ok(HoldStatus::Open),
        1 => Ok(HoldStatus::Closed),
        2 => Ok(HoldStatus::Expired),
        _ => Err(format!("hold status code {v} is not a status")),
    }
}

/// `TokenField` as (tag, value): empty (0, 0), DPAN (1, digits), other text (2, fingerprint).
pub(crate) fn token_field_parts(t: TokenField) -> (u8, u64) {
    match t {
        TokenField::Empty => (0, 0),
        TokenField::Dpan(d) => (1, d.get()),
        TokenField::Other(h) => (2, h),
    }
}

pub(crate) fn token_field_from(tag: u8, value: u64) -> Result<TokenField, DecodeError> {
    match tag {
        0 if value == 0 => Ok(TokenField::Empty),
        0 => Err("empty token field with a nonzero value".into()),
        1 => Dpan::from_u64(value)
            .map(TokenField::Dpan)
            .ok_or_else(|| format!("token value {value} is not a 13 to 19 digit DPAN")),
        2 => Ok(TokenField::Other(value)),
        _ => Err(format!("token field tag {tag} is not a tag")),
    }
}

/// A DPAN stored as its numeric value.
pub(crate) fn dpan_from(value: u64) -> Result<Dpan, DecodeError> {
    Dpan::from_u64(value).ok_or_else(|| format!("token value {value} is not a DPAN"))
}

/// An optional u64 as (present, value); absent is stored as 0.
pub(crate) fn opt_u64_from(
    present: bool,
    value: u64,
    what: &str,
) -> Result<Option<u64>, DecodeError> {
    match (present, value) {
        (true, v) => Ok(Some(v)),
        (false, 0) => Ok(None),
        (false, _) => Err(format!("absent {what} with a nonzero value")),
    }
}

// ---------------------------------------------------------------------------------------------
// Journal record: one request, every field exactly, plus its decision code.
// ---------------------------------------------------------------------------------------------

/// Bytes of one encoded record. Layout (little-endian):
///
/// | offset | size | field |
/// |---|---|---|
/// | 0 | 8 | `request_id` u64 |
/// | 8 | 8 | `ts_ns` i64 |
/// | 16 | 8 | token value u64 (DPAN digits, text fingerprint, or 0 when empty) |
/// | 24 | 8 | `account_id` u64 (0 when absent) |
/// | 32 | 8 | `mcc` u64 (0 when absent) |
/// | 40 | 8 | `ref` u64 (0 when absent) |
/// | 48 | 12 | amount magnitude, unsigned 96-bit (0 when absent) |
/// | 60 | 1 | amount scale 0..=28 (0 when absent) |
/// | 61 | 1 | kind (see [`kind_code`]) |
/// | 62 | 1 | token tag: 0 empty, 1 DPAN, 2 other text |
/// | 63 | 1 | currency: 0 none, 1 CNY, 2 HKD, 3 JPY, 4 USD |
/// | 64 | 1 | flags: bit 0 account_id present, 1 amount present, 2 amount negative, 3 mcc present, 4 ref present, 5 final; other bits 0 |
/// | 65 | 1 | decision code (the two ISO 8583 digits as a number) |
///
/// The amount keeps the request's `Decimal` exactly, scale included (`12.340` stays
/// `12.340`), so a retransmission compares against what was really sent.
pub(crate) const RECORD_BYTES: usize = 66;

const F_ACCOUNT: u8 = 1 << 0;
const F_AMOUNT: u8 = 1 << 1;
const F_NEGATIVE: u8 = 1 << 2;
const F_MCC: u8 = 1 << 3;
const F_REF: u8 = 1 << 4;
const F_FINAL: u8 = 1 << 5;
const F_ALL: u8 = F_ACCOUNT | F_AMOUNT | F_NEGATIVE | F_MCC | F_REF | F_FINAL;

/// A decimal as (negative, 96-bit magnitude, scale). `rust_decimal` has no negative zero,
/// so `negative` is only set on a nonzero magnitude.
#[cfg(test)]
pub(crate) fn decimal_parts(d: Decimal) -> (bool, u128, u8) {
    let negative = d.is_sign_negative() && !d.is_zero();
    let magnitude = d.mantissa().unsigned_abs();
    // A Decimal's scale is at most 28 by construction.
    (negative, magnitude, d.scale() as u8)
}

pub(crate) fn decimal_from(
    negative: bool,
    magnitude: u128,
    scale: u8,
) -> Result<Decimal, DecodeError> {
    if u32::from(scale) > Decimal::MAX_SCALE {
        return Err(format!("amount scale {scale} is over 28"));
    }
    if magnitude >> 96 != 0 {
        return Err("amount magnitude is over 96 bits".into());
    }
    if negative && magnitude == 0 {
        return Err("negative zero amount".into());
    }
    // Truncations are exact: the magnitude is below 2^96.
    let lo = magnitude as u32;
    let mid = (magnitude >> 32) as u32;
    let hi = (magnitude >> 64) as u32;
    Ok(Decimal::from_parts(lo, mid, hi, negative, u32::from(scale)))
}

/// Append one record's [`RECORD_BYTES`] bytes to `out`.
///
/// On the shard thread once per journaled request: the record is assembled in a fixed
/// array and appended with one copy (appending field by field checked the vector's room
/// for each of its 13 fields), and the amount's magnitude is copied out of the decimal's
/// own little-endian bytes instead of through a 128-bit mantissa.
#[inline]
pub(crate) fn encode_record(out: &mut Vec<u8>, req: &Request, code: Code) {
    let (token_tag, token_value) = token_field_parts(req.token);
    let mut flags = 0u8;
    if req.account_id.is_some() {
        flags |= F_ACCOUNT;
    }
    if req.mcc.is_some() {
        flags |= F_MCC;
    }
    if req.reference.is_some() {
        flags |= F_REF;
    }
    if req.is_final {
        flags |= F_FINAL;
    }
    let mut r = [0u8; RECORD_BYTES];
    r[0..8].copy_from_slice(&req.request_id.to_le_bytes());
    r[8..16].copy_from_slice(&req.ts_ns.to_le_bytes());
    r[16..24].copy_from_slice(&token_value.to_le_bytes());
    r[24..32].copy_from_slice(&req.account_id.unwrap_or(0).to_le_bytes());
    r[32..40].copy_from_slice(&req.mcc.unwrap_or(0).to_le_bytes());
    r[40..48].copy_from_slice(&req.reference.unwrap_or(0).to_le_bytes());
    if let Some(amount) = req.amount {
        // `serialize` is the decimal's flags word (scale in bits 16..24, sign in bit 31)
        // then its 96-bit magnitude, all little-endian: the magnitude is bytes 4..16.
        let raw = amount.serialize();
        r[48..60].copy_from_slice(&raw[4..16]);
        r[60] = raw[2];
        flags |= F_AMOUNT;
        // `rust_decimal` has no negative zero; the check keeps the encoding canonical anyway.
        if raw[3] & 0x80 != 0 && raw[4..16] != [0u8; 12] {
            flags |= F_NEGATIVE;
        }
    }
    r[61] = kind_code(req.kind);
    r[62] = token_tag;
    r[63] = currency_opt_code(req.currency);
    r[64] = flags;
    r[65] = code_code(code);
    out.extend_from_slice(&r);
}

/// Set the decision code of record `i` of records encoded back to back by
/// [`encode_record`] (the router encodes a request before the shard has decided it; the
/// code is the record's last byte).
#[inline]
pub(crate) fn set_record_code(records: &mut [u8], i: usize, code: Code) {
    records[i * RECORD_BYTES + RECORD_BYTES - 1] = code_code(code);
}

/// The field-by-field encoding `encode_record` replaced: the reference its tests compare
/// against, byte for byte.
#[cfg(test)]
pub(crate) fn encode_record_by_fields(out: &mut Vec<u8>, req: &Request, code: Code) {
    let (token_tag, token_value) = token_field_parts(req.token);
    let mut flags = 0u8;
    let mut set = |bit: u8, on: bool| {
        if on {
            flags |= bit;
        }
    };
    set(F_ACCOUNT, req.account_id.is_some());
    set(F_MCC, req.mcc.is_some());
    set(F_REF, req.reference.is_some());
    set(F_FINAL, req.is_final);
    let (negative, magnitude, scale) = req.amount.map_or((false, 0, 0), decimal_parts);
    set(F_AMOUNT, req.amount.is_some());
    set(F_NEGATIVE, negative);
    let mut w = Writer(out);
    w.u64(req.request_id);
    w.i64(req.ts_ns);
    w.u64(token_value);
    w.u64(req.account_id.unwrap_or(0));
    w.u64(req.mcc.unwrap_or(0));
    w.u64(req.reference.unwrap_or(0));
    w.u96(magnitude);
    w.u8(scale);
    w.u8(kind_code(req.kind));
    w.u8(token_tag);
    w.u8(currency_opt_code(req.currency));
    w.u8(flags);
    w.u8(code_code(code));
}

/// Decode one record from exactly [`RECORD_BYTES`] bytes.
pub(crate) fn decode_record(bytes: &[u8]) -> Result<(Request, Code), DecodeError> {
    assert_eq!(bytes.len(), RECORD_BYTES, "caller slices whole records");
    let mut r = Reader::new(bytes);
    let request_id = r.u64();
    let ts_ns = r.i64();
    let token_value = r.u64();
    let account_id = r.u64();
    let mcc = r.u64();
    let reference = r.u64();
    let magnitude = r.u96();
    let scale = r.u8();
    let kind = kind_from(r.u8())?;
    let token = token_field_from(r.u8(), token_value)?;
    let currency = currency_opt_from(r.u8())?;
    let flags = r.u8();
    let code = code_from(r.u8())?;
    if flags & !F_ALL != 0 {
        return Err(format!("record flags {flags:#04x} has unknown bits"));
    }
    let amount = if flags & F_AMOUNT != 0 {
        Some(decimal_from(flags & F_NEGATIVE != 0, magnitude, scale)?)
    } else if magnitude != 0 || scale != 0 || flags & F_NEGATIVE != 0 {
        return Err("absent amount with nonzero bytes".into());
    } else {
        None
    };
    let req = Request {
        request_id,
        ts_ns,
        kind,
        token,
        account_id: opt_u64_from(flags & F_ACCOUNT != 0, account_id, "account_id")?,
        amount,
        currency,
        mcc: opt_u64_from(flags & F_MCC != 0, mcc, "mcc")?,
        reference: opt_u64_from(flags & F_REF != 0, reference, "ref")?,
        is_final: flags & F_FINAL != 0,
    };
    Ok((req, code))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Any decimal `rust_decimal` can hold: every 96-bit magnitude, sign and scale 0..=28.
    pub(crate) fn any_decimal() -> impl Strategy<Value = Decimal> {
        prop_oneof![
            (
                any::<u32>(),
                any::<u32>(),
                any::<u32>(),
                any::<bool>(),
                0u32..=28
            )
                .prop_map(|(lo, mid, hi, neg, scale)| Decimal::from_parts(lo, mid, hi, neg, scale)),
            Just(Decimal::MAX),
            Just(Decimal::MIN),
            Just(Decimal::ZERO),
            Just(Decimal::from_parts(1, 0, 0, false, 28)),
            Just(Decimal::from_parts(0, 0, 0, true, 28)),
            (any::<i64>(), 0u32..=4).prop_map(|(m, s)| Decimal::new(m, s)),
        ]
    }

    pub(crate) fn any_kind() -> impl Strategy<Value = Kind> {
        proptest::sample::select(Kind::ALL.to_vec())
    }

    pub(crate) fn any_code() -> impl Strategy<Value = Code> {
        proptest::sample::select(Code::ALL.to_vec())
    }

    pub(crate) fn any_currency() -> impl Strategy<Value = Currency> {
        proptest::sample::select(Currency::ALL.to_vec())
    }

    pub(crate) fn any_token_field() -> impl Strategy<Value = TokenField> {
        prop_oneof![
            Just(TokenField::Empty),
            (Dpan::MIN..=Dpan::MAX).prop_map(|v| TokenField::Dpan(Dpan::from_u64(v).unwrap())),
            Just(TokenField::Dpan(Dpan::from_u64(Dpan::MAX).unwrap())),
            any::<u64>().prop_map(TokenField::Other),
            Just(TokenField::Other(0)),
            Just(TokenField::Other(u64::MAX)),
        ]
    }

    pub(crate) fn any_request() -> impl Strategy<Value = Request> {
        (
            (any::<u64>(), any::<i64>(), any_kind(), any_token_field()),
            (
                proptest::option::of(any::<u64>()),
                proptest::option::of(any_decimal()),
                proptest::option::of(any_currency()),
                proptest::option::of(any::<u64>()),
                proptest::option::of(any::<u64>()),
                any::<bool>(),
            ),
        )
            .prop_map(
                |(
                    (request_id, ts_ns, kind, token),
                    (account_id, amount, currency, mcc, reference, is_final),
                )| {
                    Request {
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
                    }
                },
            )
    }

    /// Equality that also compares each amount's exact representation (scale included),
    /// which `Decimal`'s `==` ignores (`12.340 == 12.34`).
    pub(crate) fn same_exactly(a: &Request, b: &Request) -> bool {
        a == b && a.amount.map(|d| d.serialize()) == b.amount.map(|d| d.serialize())
    }

    proptest! {
        #[test]
        fn record_encoding_matches_the_field_by_field_encoding(req in any_request(), code in any_code()) {
            let mut fast = vec![0xAA];
            encode_record(&mut fast, &req, code);
            let mut by_fields = vec![0xAA];
            encode_record_by_fields(&mut by_fields, &req, code);
            prop_assert_eq!(fast, by_fields);
        }

        #[test]
        fn record_round_trips_every_field_exactly(req in any_request(), code in any_code()) {
            let mut buf = Vec::new();
            encode_record(&mut buf, &req, code);
            prop_assert_eq!(buf.len(), RECORD_BYTES);
            let (back, back_code) = decode_record(&buf).unwrap();
            prop_assert!(same_exactly(&req, &back), "{:?} != {:?}", req, back);
            prop_assert_eq!(code, back_code);
            let mut again = Vec::new();
            encode_record(&mut again, &back, back_code);
            prop_assert_eq!(buf, again);
        }

        #[test]
        fn decoding_is_strict_about_canonical_bytes(req in any_request(), code in any_code(), at in 0..RECORD_BYTES, bit in 0u8..8) {
            // Any decodable record re-encodes to the same bytes: a single flipped bit either
            // fails to decode or decodes to a different request (never silently the same).
            let mut buf = Vec::new();
            encode_record(&mut buf, &req, code);
            buf[at] ^= 1 << bit;
            if let Ok((back, back_code)) = decode_record(&buf) {
                let mut again = Vec::new();
                encode_record(&mut again, &back, back_code);
                prop_assert_eq!(&buf, &again);
                prop_assert!(!(same_exactly(&back, &req) && back_code == code));
            }
        }
    }

    #[test]
    fn trailing_zeros_and_extremes_survive() {
        let twelve_340 = Decimal::from_str_exact("12.340").unwrap();
        for amount in [twelve_340, Decimal::MAX, Decimal::MIN, Decimal::new(-1, 28)] {
            let req = Request::new(Kind::Capture, u64::MAX, i64::MIN)
                .with_token(TokenField::Other(u64::MAX))
                .with_amount(amount, Currency::Jpy)
                .with_ref(0)
                .with_final(true);
            let mut buf = Vec::new();
            encode_record(&mut buf, &req, Code::Duplicate);
            let (back, code) = decode_record(&buf).unwrap();
            assert!(same_exactly(&req, &back));
            assert_eq!(back.amount.unwrap().to_string(), amount.to_string());
            assert_eq!(code, Code::Duplicate);
        }
    }

    #[test]
    fn enum_codes_are_stable() {
        // These numbers are on disk; this test fails if someone renumbers them.
        assert_eq!(
            Kind::ALL.map(kind_code),
            [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]
        );
        assert_eq!(
            Code::ALL.map(code_code),
            [0, 12, 13, 14, 22, 25, 51, 54, 61, 62, 65, 78, 94]
        );
        assert_eq!(Currency::ALL.map(currency_code), [1, 2, 3, 4]);
        for k in Kind::ALL {
            assert_eq!(kind_from(kind_code(k)), Ok(k));
        }
        for c in Code::ALL {
            assert_eq!(code_from(code_code(c)), Ok(c));
        }
        assert!(kind_from(12).is_err());
        assert!(code_from(1).is_err());
        assert!(currency_opt_from(5).is_err());
        assert_eq!(currency_opt_from(0), Ok(None));
    }
}
