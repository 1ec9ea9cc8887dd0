//! The binary traffic format: exact round trips (property-tested over arbitrary requests,
//! extreme decimals and non-DPAN token texts, through real files in both directions), and the
//! refusal of corrupted, truncated and foreign files with an error that names the file, the
//! byte offset and what is wrong.

use std::fs;
use std::path::Path;

use payauth_engine::{Currency, Dpan, Kind, Request, TokenField};
use payauth_harness::binfmt::{self, BLOCK_RECORDS, RECORD_BYTES};
use payauth_harness::convert::{self, read_traffic_rows};
use payauth_harness::csvout;
use payauth_harness::dataset::{Dataset, DatasetErrorKind};
use payauth_harness::rows::{Meta, TrafficRows};
use payauth_harness::traffic::Format;
use proptest::prelude::*;
use rust_decimal::Decimal;

/// A dataset folder with empty accounts and tokens and the given traffic.csv bytes.
fn csv_dataset(dir: &Path, traffic: &[u8], meta: &Meta) {
    fs::create_dir_all(dir).unwrap();
    fs::write(dir.join("accounts.csv"), csvout::ACCOUNTS_HEADER).unwrap();
    fs::write(dir.join("tokens.csv"), csvout::TOKENS_HEADER).unwrap();
    fs::write(dir.join("traffic.csv"), traffic).unwrap();
    meta.write_sidecar(dir).unwrap();
}

/// Field-exact equality: `Decimal`'s `==` compares values (`12.340 == 12.34`), this also
/// compares scales and the sign of non-zero amounts.
fn assert_exact(a: &[Request], b: &[Request]) {
    assert_eq!(a, b);
    for (x, y) in a.iter().zip(b) {
        let parts = |d: Option<Decimal>| d.map(|d| (d.mantissa(), d.scale()));
        assert_eq!(parts(x.amount), parts(y.amount), "request {}", x.request_id);
    }
}

fn token_text() -> impl Strategy<Value = String> {
    "[a-z0-9,\"€中 \n\r-]{1,12}".prop_filter("storable as a non-DPAN token text", |t| {
        let space = |c: char| c.is_whitespace();
        !t.starts_with(space)
            && !t.ends_with(space)
            && matches!(TokenField::from_text(t), TokenField::Other(_))
    })
}

fn decimal() -> impl Strategy<Value = Decimal> {
    prop_oneof![
        // Anything a Decimal holds: 96-bit magnitudes, scales 0..=28, either sign.
        (
            any::<u32>(),
            any::<u32>(),
            any::<u32>(),
            any::<bool>(),
            0u32..=28
        )
            .prop_map(|(lo, mid, hi, neg, scale)| Decimal::from_parts(lo, mid, hi, neg, scale)),
        // Everyday amounts with their trailing zeros.
        (0i64..100_000_000, 0u32..=4).prop_map(|(m, s)| Decimal::new(m, s)),
    ]
}

/// Arbitrary traffic: requests in non-decreasing ts_ns, with the text of each non-DPAN token.
fn traffic() -> impl Strategy<Value = TrafficRows> {
    let token = prop_oneof![
        Just(None),
        (Dpan::MIN..=Dpan::MAX).prop_map(|v| Some(Ok(v))),
        token_text().prop_map(|t| Some(Err(t))),
    ];
    let row = (
        0u64..2_000_000_000,
        any::<u64>(),
        0usize..12,
        token,
        proptest::option::of(any::<u64>()),
        proptest::option::of(decimal()),
        proptest::option::of(0usize..4),
        proptest::option::of(any::<u64>()),
        proptest::option::of(any::<u64>()),
        any::<bool>(),
    );
    (0i64..(1 << 62), proptest::collection::vec(row, 0..40)).prop_map(|(start, rows)| {
        let mut ts = start;
        let mut out = TrafficRows::default();
        for (seq, (dt, id, kind, token, account, amount, currency, mcc, reference, fin)) in
            rows.into_iter().enumerate()
        {
            ts += dt as i64;
            let mut r = Request::new(Kind::ALL[kind], id, ts);
            r.token = match token {
                None => TokenField::Empty,
                Some(Ok(v)) => TokenField::Dpan(Dpan::from_u64(v).unwrap()),
                Some(Err(text)) => {
                    let t = TokenField::from_text(&text);
                    out.token_texts.push((seq, text));
                    t
                }
            };
            r.account_id = account;
            r.amount = amount;
            r.currency = currency.map(|c| Currency::ALL[c]);
            r.mcc = mcc;
            r.reference = reference;
            r.is_final = fin;
            out.requests.push(r);
        }
        out
    })
}

fn meta() -> impl Strategy<Value = Meta> {
    (
        proptest::option::of(any::<u64>()),
        proptest::collection::vec(("[a-z_.-]{1,8}", "[ -~€]{0,16}"), 0..4),
    )
        .prop_map(|(seed, kv)| {
            let mut m = Meta {
                seed,
                params: vec![],
            };
            for (k, v) in kv {
                if k != "seed" && m.get(&k).is_none() {
                    m.params.push((k, v));
                }
            }
            m
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    /// binary -> requests -> binary is the identity; binary -> CSV (a real file, read by the
    /// dataset reader) -> binary gives the same bytes; the CSV holds the same requests.
    #[test]
    fn binary_and_csv_round_trip_exactly(rows in traffic(), meta in meta()) {
        let bytes = binfmt::encode(&rows, &meta).unwrap();
        let (back, meta_back) = binfmt::decode(&bytes).unwrap();
        assert_exact(&back.requests, &rows.requests);
        prop_assert_eq!(&back.token_texts, &rows.token_texts);
        prop_assert_eq!(&meta_back, &meta);

        let tmp = tempfile::tempdir().unwrap();
        let mut csv = Vec::new();
        csvout::write_traffic_csv(&mut csv, &back).unwrap();
        let dir = tmp.path().join("csv");
        csv_dataset(&dir, &csv, &meta_back);
        let (from_csv, meta_csv, format) = read_traffic_rows(&dir).unwrap();
        prop_assert_eq!(format, Format::Csv);
        assert_exact(&from_csv.requests, &rows.requests);
        prop_assert!(binfmt::encode(&from_csv, &meta_csv).unwrap() == bytes);
        // The dataset reader sees the same requests in both forms.
        let bin_dir = tmp.path().join("bin");
        convert::convert(&dir, &bin_dir, None).unwrap();
        prop_assert!(fs::read(bin_dir.join("traffic.bin")).unwrap() == bytes);
        prop_assert_eq!(Dataset::load(&dir).unwrap(), Dataset::load(&bin_dir).unwrap());
    }
}

const CSV: &str = "\
ts_ns,request_id,kind,token,account_id,amount,currency,mcc,ref,final,extra
0001700000000000000000,007,authorize,4000000000000001,,12.340,CNY,05411,,,x
1700000000000000001,8,capture,\"not, a token\",,12.34,CNY,,7,,y
1700000000000000002,9,void,4000000000000001,,,,,7,0,z
1700000000000000003,10,credit,,1,-0.00,JPY,,,,
";

#[test]
fn csv_to_binary_to_csv_keeps_the_requests_in_canonical_text() {
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a");
    csv_dataset(&a, CSV.as_bytes(), &Meta::default());
    let b = tmp.path().join("b");
    let to_bin = convert::convert(&a, &b, None).unwrap();
    assert_eq!(to_bin.requests, 4);
    let c = tmp.path().join("c");
    convert::convert(&b, &c, None).unwrap();
    assert_eq!(Dataset::load(&a).unwrap(), Dataset::load(&c).unwrap());
    assert_eq!(
        fs::read_to_string(c.join("traffic.csv")).unwrap(),
        "\
ts_ns,request_id,kind,token,account_id,amount,currency,mcc,ref,final
1700000000000000000,7,authorize,4000000000000001,,12.340,CNY,5411,,
1700000000000000001,8,capture,\"not, a token\",,12.34,CNY,,7,0
1700000000000000002,9,void,4000000000000001,,,,,7,
1700000000000000003,10,credit,,1,0.00,JPY,,,
"
    );
    // And back again: the same binary bytes.
    let d = tmp.path().join("d");
    convert::convert(&c, &d, None).unwrap();
    assert_eq!(
        fs::read(b.join("traffic.bin")).unwrap(),
        fs::read(d.join("traffic.bin")).unwrap()
    );
    // In place: the folder ends up with one traffic file.
    convert::convert(&c, &c, Some(Format::Bin)).unwrap();
    assert!(c.join("traffic.bin").exists() && !c.join("traffic.csv").exists());
    assert_eq!(Dataset::load(&a).unwrap(), Dataset::load(&c).unwrap());
}

/// A binary dataset of `n` requests (several checksum blocks when `n` is large) and a token
/// text, in `dir`; returns the bytes of its traffic.bin.
fn binary_dataset(dir: &Path, n: usize) -> Vec<u8> {
    let mut rows = TrafficRows::default();
    for i in 0..n {
        let mut r = Request::new(
            Kind::Authorize,
            i as u64 + 1,
            1_700_000_000_000_000_000 + i as i64,
        )
        .with_amount(Decimal::new(1234, 2), Currency::Cny)
        .with_mcc(5411);
        if i == 3 {
            r.token = TokenField::from_text("bad-token");
            rows.token_texts.push((i, "bad-token".to_owned()));
        } else {
            r.token = TokenField::Dpan(Dpan::from_u64(4_000_000_000_000_001).unwrap());
        }
        rows.requests.push(r);
    }
    let meta = Meta {
        seed: Some(5),
        params: vec![("profile".into(), "steady".into())],
    };
    csv_dataset(dir, b"", &Meta::default());
    fs::remove_file(dir.join("traffic.csv")).unwrap();
    binfmt::write_file(&dir.join("traffic.bin"), &rows, &meta).unwrap();
    fs::read(dir.join("traffic.bin")).unwrap()
}

/// The message `Dataset::load` gives for a binary file with these bytes.
fn refusal(dir: &Path, bytes: &[u8]) -> String {
    fs::write(dir.join("traffic.bin"), bytes).unwrap();
    let e = Dataset::load(dir).expect_err("a damaged file must be refused");
    assert_eq!(e.kind(), DatasetErrorKind::Binary, "{e}");
    let msg = e.to_string();
    assert!(msg.contains("traffic.bin: "), "{msg}");
    msg
}

#[test]
fn flipped_bytes_are_refused_with_their_offset() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let n = BLOCK_RECORDS + 100; // two record blocks
    let good = binary_dataset(dir, n);
    assert_eq!(Dataset::load(dir).unwrap().traffic.len(), n);
    let header = 64 + "profile=steady\n".len().next_multiple_of(8);
    let records_end = header + n * RECORD_BYTES;
    let cases: [(usize, &str); 7] = [
        (0, "not a payauth binary traffic file"),
        (20, "header checksum mismatch"),
        (header + 5, "checksum mismatch in records 0..=16383"),
        (
            header + (BLOCK_RECORDS + 7) * RECORD_BYTES + 61,
            "checksum mismatch in records 16384..=16483",
        ),
        (records_end + 2, "checksum mismatch in the token texts"),
        (good.len() - 10, "checksum table mismatch"),
        (good.len() - 1, "end marker"),
    ];
    for (at, want) in cases {
        let mut bad = good.clone();
        bad[at] ^= 0x10;
        let msg = refusal(dir, &bad);
        assert!(msg.contains(want), "byte {at}: {msg}");
        assert!(msg.contains("offset "), "byte {at}: {msg}");
    }
    let block_lo = header + BLOCK_RECORDS * RECORD_BYTES;
    let mut bad = good.clone();
    bad[block_lo + 100] ^= 1;
    assert!(refusal(dir, &bad).contains(&format!("offset {block_lo}: ")));
}

#[test]
fn truncated_and_extended_files_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let good = binary_dataset(dir, 50);
    for len in [0, 3, 40, 64, 70, 200, good.len() - 9, good.len() - 1] {
        let msg = refusal(dir, &good[..len]);
        assert!(msg.contains("truncated"), "{len} bytes: {msg}");
    }
    let mut longer = good.clone();
    longer.extend_from_slice(b"more");
    assert!(refusal(dir, &longer).contains("trailing bytes"));
}

#[test]
fn bad_magic_version_and_non_canonical_records_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let good = binary_dataset(dir, 10);
    let mut bad = good.clone();
    bad[..8].copy_from_slice(b"ts_ns,re");
    assert!(refusal(dir, &bad).contains("not a payauth binary traffic file"));
    let mut bad = good.clone();
    bad[8] = 2;
    let msg = refusal(dir, &bad);
    assert!(msg.contains("format version 2 is not supported"), "{msg}");
    assert!(msg.contains("offset 8"), "{msg}");

    // A record with a bad kind and valid checksums (as a buggy writer would make it).
    let header = 64 + "profile=steady\n".len().next_multiple_of(8);
    let mut bad = good.clone();
    bad[header + 2 * RECORD_BYTES + 61] = 12;
    reseal(&mut bad, header, 10, 9);
    let msg = refusal(dir, &bad);
    assert!(
        msg.contains(&format!(
            "offset {}: record 2, field kind: 12 is not a request kind",
            header + 2 * RECORD_BYTES + 61
        )),
        "{msg}"
    );
    // ts_ns going down.
    let mut bad = good.clone();
    bad[header + 5 * RECORD_BYTES..header + 5 * RECORD_BYTES + 8]
        .copy_from_slice(&1i64.to_le_bytes());
    reseal(&mut bad, header, 10, 9);
    assert!(refusal(dir, &bad).contains("record 5, field ts_ns"));
}

/// Recompute the checksums of a file with one block of `n` records and `text` bytes of text.
fn reseal(b: &mut [u8], header: usize, n: usize, text: usize) {
    let records_end = header + n * RECORD_BYTES;
    let table = records_end + text;
    let crc = crc32c::crc32c(&b[header..records_end]);
    b[table..table + 4].copy_from_slice(&crc.to_le_bytes());
    let crc = crc32c::crc32c(&b[table..table + 8]);
    b[table + 8..table + 12].copy_from_slice(&crc.to_le_bytes());
}

#[test]
fn a_folder_with_both_traffic_files_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    binary_dataset(dir, 5);
    fs::write(dir.join("traffic.csv"), csvout::TRAFFIC_HEADER).unwrap();
    let e = Dataset::load(dir).unwrap_err();
    assert_eq!(e.kind(), DatasetErrorKind::Binary);
    assert!(e.to_string().contains("traffic.csv is there too"), "{e}");
    assert!(convert::convert(dir, &dir.join("x"), None).is_err());
}
