//! Dataset validation (DOMAIN.md "Files"): one test per malformed-file rule, each checking that
//! the message names the file, the line and the field and that `payauth replay` writes
//! nothing; and the accepted variations (BOM, CRLF, blank lines, column order, extra columns,
//! quoting, declines that are not file errors).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::str::FromStr;

use payauth_engine::{
    AccountSpec, AccountStatus, Currency, Dpan, Expiry, Kind, Request, TokenField, TokenSpec,
    TokenStatus,
};
use payauth_harness::dataset::{Dataset, DatasetErrorKind};
use rust_decimal::Decimal;

const ACCOUNTS: &str = "\
account_id,currency,balance,status,per_txn_limit,daily_limit,daily_count_limit
1,CNY,100.00,active,50.00,80,2
2,JPY,1000,frozen,,,
";

const TOKENS: &str = "\
token,account_id,status,expiry
4000000000000001,1,active,3012
4000000000000002,2,suspended,2901
";

const TRAFFIC: &str = "\
ts_ns,request_id,kind,token,account_id,amount,currency,mcc,ref,final
1700000000000000000,1,authorize,4000000000000001,,12.34,CNY,5411,,
1700000000000000001,2,credit,,2,5,JPY,,,
1700000000000000001,3,capture,4000000000000001,,12.34,CNY,,1,1
";

/// A dataset folder in a temporary directory: the valid files above, with overrides.
struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new(overrides: &[(&str, &str)]) -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        for (name, text) in [
            ("accounts.csv", ACCOUNTS),
            ("tokens.csv", TOKENS),
            ("traffic.csv", TRAFFIC),
        ] {
            let text = overrides
                .iter()
                .find(|(n, _)| *n == name)
                .map_or(text, |(_, t)| *t);
            fs::write(dir.path().join(name), text).expect("write fixture");
        }
        Fixture { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn load(&self) -> Dataset {
        Dataset::load(self.path()).unwrap_or_else(|e| panic!("should load: {e}"))
    }
}

/// Replace the lines of a valid file: `line` is 1-based.
fn with_line(text: &str, line: usize, new: &str) -> String {
    let mut lines: Vec<&str> = text.lines().collect();
    lines[line - 1] = new;
    lines.join("\n") + "\n"
}

/// Append a row to a valid file.
fn with_row(text: &str, row: &str) -> String {
    format!("{text}{row}\n")
}

/// The one check: `file` (overridden with `text`) is refused at `line`, naming `field`, with a
/// message containing `needle`, of `kind`; and the binary refuses it too, writing nothing.
fn check(file: &str, text: &str, line: u64, field: &str, needle: &str, kind: DatasetErrorKind) {
    let fx = Fixture::new(&[(file, text)]);
    let err = Dataset::load(fx.path()).expect_err("the dataset should be refused");
    let want = format!("{}:{line}: field {field}: ", fx.file(file).display());
    let msg = err.to_string();
    assert!(
        msg.starts_with(&want),
        "message {msg:?} should start with {want:?}"
    );
    assert!(
        msg.contains(needle),
        "message {msg:?} should contain {needle:?}"
    );
    assert_eq!(err.kind(), kind, "{msg}");
    assert_eq!(err.path(), fx.file(file));
    assert_eq!(err.line(), Some(line));
    assert_eq!(err.field(), Some(field));
    replay_refuses(&fx, &msg);
}

/// `payauth replay` exits non-zero with a one-line message containing `msg`, and creates no
/// output folder.
fn replay_refuses(fx: &Fixture, msg: &str) {
    let out = fx.path().join("out");
    let run = Command::new(env!("CARGO_BIN_EXE_payauth"))
        .arg("replay")
        .arg(fx.path())
        .arg("--out")
        .arg(&out)
        .arg("--shards")
        .arg("1")
        .env("RUST_BACKTRACE", "1")
        .output()
        .expect("run payauth");
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        !run.status.success(),
        "replay should fail; stderr: {stderr}"
    );
    assert!(
        stderr.contains(msg),
        "stderr {stderr:?} should contain {msg:?}"
    );
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr:?}");
    assert!(!stderr.contains("backtrace"), "{stderr}");
    assert!(run.stdout.is_empty(), "nothing on stdout");
    assert!(!out.exists(), "nothing may be written on a refused dataset");
}

use DatasetErrorKind as K;

// ----- columns and header -----

#[test]
fn missing_traffic_column() {
    let text = TRAFFIC.replace(",mcc,", ",mcc_code,");
    check(
        "traffic.csv",
        &text,
        1,
        "mcc",
        "column is missing",
        K::Header,
    );
}

#[test]
fn missing_accounts_column() {
    let text = with_line(
        ACCOUNTS,
        1,
        "account_id,currency,balance,status,per_txn_limit,daily_limit",
    );
    // Line 1 is checked first: the header lacks the column.
    check(
        "accounts.csv",
        &text,
        1,
        "daily_count_limit",
        "column is missing",
        K::Header,
    );
}

#[test]
fn missing_tokens_column() {
    check(
        "tokens.csv",
        "token,account_id,status\n4000000000000001,1,active\n",
        1,
        "expiry",
        "column is missing",
        K::Header,
    );
}

#[test]
fn column_named_twice() {
    let text = with_line(TOKENS, 1, "token,account_id,status,expiry,status");
    check("tokens.csv", &text, 1, "status", "twice", K::Header);
}

#[test]
fn header_with_surrounding_spaces() {
    let text = with_line(
        TRAFFIC,
        1,
        "ts_ns,request_id,kind,token,account_id, amount,currency,mcc,ref,final",
    );
    check("traffic.csv", &text, 1, "amount", "whitespace", K::Spaces);
}

#[test]
fn empty_file_has_no_header() {
    let fx = Fixture::new(&[("tokens.csv", "")]);
    let err = Dataset::load(fx.path()).expect_err("refused");
    let msg = err.to_string();
    let want = format!("{}:1: ", fx.file("tokens.csv").display());
    assert!(msg.starts_with(&want), "{msg}");
    assert!(msg.contains("header row is missing"), "{msg}");
    assert_eq!(err.kind(), K::Header);
    replay_refuses(&fx, &msg);
}

#[test]
fn missing_file_is_named() {
    let fx = Fixture::new(&[]);
    fs::remove_file(fx.file("traffic.csv")).unwrap();
    let err = Dataset::load(fx.path()).expect_err("refused");
    let msg = err.to_string();
    assert!(
        msg.starts_with(&format!(
            "{}: cannot open",
            fx.file("traffic.csv").display()
        )),
        "{msg}"
    );
    assert_eq!(err.kind(), K::Io);
    replay_refuses(&fx, &msg);
}

// ----- row shape -----

#[test]
fn row_with_too_few_fields() {
    let text = with_row(TRAFFIC, "1700000000000000002,4,void,4000000000000001,,,,,1");
    check(
        "traffic.csv",
        &text,
        5,
        "final",
        "the row has 9 fields, the header 10",
        K::Shape,
    );
}

#[test]
fn row_with_too_many_fields() {
    let text = with_row(TOKENS, "4000000000000003,1,active,3012,extra");
    check(
        "tokens.csv",
        &text,
        4,
        "#5",
        "the row has 5 fields, the header 4",
        K::Shape,
    );
}

#[test]
fn unterminated_quote() {
    let text = with_row(
        TRAFFIC,
        "1700000000000000002,4,void,\"4000000000000001,,,,,1,",
    );
    check("traffic.csv", &text, 5, "token", "not closed", K::Shape);
}

#[test]
fn text_after_closing_quote() {
    let text = with_row(ACCOUNTS, "3,\"CNY\"x,1.00,active,,,");
    check(
        "accounts.csv",
        &text,
        4,
        "currency",
        "after the closing quote",
        K::Shape,
    );
}

#[test]
fn token_text_that_is_not_utf8() {
    let fx = Fixture::new(&[]);
    let mut bytes = TRAFFIC.as_bytes().to_vec();
    bytes.extend_from_slice(b"1700000000000000002,4,authorize,40\xff0,,1.00,CNY,,,\n");
    fs::write(fx.file("traffic.csv"), bytes).unwrap();
    let err = Dataset::load(fx.path()).expect_err("refused");
    let msg = err.to_string();
    let want = format!("{}:5: field token: ", fx.file("traffic.csv").display());
    assert!(msg.starts_with(&want), "{msg}");
    assert!(msg.contains("not valid UTF-8"), "{msg}");
    replay_refuses(&fx, &msg);
}

// ----- numbers -----

#[test]
fn ts_ns_not_an_integer() {
    let text = with_line(TRAFFIC, 3, "12a,2,credit,,2,5,JPY,,,");
    check(
        "traffic.csv",
        &text,
        3,
        "ts_ns",
        "\"12a\" is not an unsigned integer",
        K::Integer,
    );
}

#[test]
fn ts_ns_does_not_fit_i64() {
    let text = with_row(TRAFFIC, "9223372036854775808,4,credit,,2,5,JPY,,,");
    check(
        "traffic.csv",
        &text,
        5,
        "ts_ns",
        "does not fit in i64",
        K::Integer,
    );
}

#[test]
fn ts_ns_is_unsigned() {
    let text = with_line(
        TRAFFIC,
        2,
        "-1,1,authorize,4000000000000001,,12.34,CNY,5411,,",
    );
    check(
        "traffic.csv",
        &text,
        2,
        "ts_ns",
        "not an unsigned integer",
        K::Integer,
    );
}

#[test]
fn ts_ns_required() {
    let text = with_line(
        TRAFFIC,
        2,
        ",1,authorize,4000000000000001,,12.34,CNY,5411,,",
    );
    check("traffic.csv", &text, 2, "ts_ns", "required", K::Integer);
}

#[test]
fn request_id_does_not_fit_u64() {
    let text = with_row(
        TRAFFIC,
        "1700000000000000002,18446744073709551616,credit,,2,5,JPY,,,",
    );
    check(
        "traffic.csv",
        &text,
        5,
        "request_id",
        "does not fit in u64",
        K::Integer,
    );
}

#[test]
fn request_id_with_a_sign() {
    let text = with_row(TRAFFIC, "1700000000000000002,+4,credit,,2,5,JPY,,,");
    check(
        "traffic.csv",
        &text,
        5,
        "request_id",
        "not an unsigned integer",
        K::Integer,
    );
}

#[test]
fn request_id_required() {
    let text = with_row(TRAFFIC, "1700000000000000002,,credit,,2,5,JPY,,,");
    check(
        "traffic.csv",
        &text,
        5,
        "request_id",
        "required",
        K::Integer,
    );
}

#[test]
fn traffic_account_id_not_an_integer() {
    let text = with_row(TRAFFIC, "1700000000000000002,4,credit,,2.0,5,JPY,,,");
    check(
        "traffic.csv",
        &text,
        5,
        "account_id",
        "not an unsigned integer",
        K::Integer,
    );
}

#[test]
fn mcc_not_an_integer() {
    let text = with_row(
        TRAFFIC,
        "1700000000000000002,4,authorize,4000000000000001,,1,CNY,-5411,,",
    );
    check(
        "traffic.csv",
        &text,
        5,
        "mcc",
        "not an unsigned integer",
        K::Integer,
    );
}

#[test]
fn ref_does_not_fit() {
    let text = with_row(
        TRAFFIC,
        "1700000000000000002,4,void,4000000000000001,,,,,99999999999999999999,",
    );
    check(
        "traffic.csv",
        &text,
        5,
        "ref",
        "does not fit in u64",
        K::Integer,
    );
}

#[test]
fn accounts_account_id_not_an_integer() {
    let text = with_row(ACCOUNTS, "x3,CNY,1.00,active,,,");
    check(
        "accounts.csv",
        &text,
        4,
        "account_id",
        "not an unsigned integer",
        K::Integer,
    );
}

#[test]
fn tokens_account_id_not_an_integer() {
    let text = with_row(TOKENS, "4000000000000003,0x1,active,3012");
    check(
        "tokens.csv",
        &text,
        4,
        "account_id",
        "not an unsigned integer",
        K::Integer,
    );
}

#[test]
fn count_limit_not_an_integer() {
    let text = with_row(ACCOUNTS, "3,CNY,1.00,active,,,2.5");
    check(
        "accounts.csv",
        &text,
        4,
        "daily_count_limit",
        "not an unsigned integer",
        K::Integer,
    );
}

#[test]
fn count_limit_does_not_fit() {
    let text = with_row(ACCOUNTS, "3,CNY,1.00,active,,,18446744073709551616");
    check(
        "accounts.csv",
        &text,
        4,
        "daily_count_limit",
        "does not fit in u64",
        K::Integer,
    );
}

// ----- amounts -----

#[test]
fn traffic_amount_grammar() {
    for bad in [
        "12.", ".5", "+5", "1e3", "1,000", "12.3.4", "--1", "1_000", "NaN",
    ] {
        let text = with_row(
            TRAFFIC,
            &format!("1700000000000000002,4,authorize,4000000000000001,,\"{bad}\",CNY,,,"),
        );
        check(
            "traffic.csv",
            &text,
            5,
            "amount",
            "is not an amount",
            K::Amount,
        );
    }
}

/// A well-formed traffic amount that no `Decimal` holds is not a file error: it "parses but
/// breaks a rule" (DOMAIN.md), so it loads as a stand-in no currency accepts (declined `13`),
/// equal numbers give equal stand-ins and different ones differ (duplicate comparison).
#[test]
fn traffic_amount_that_does_not_fit_a_decimal_loads_as_a_decline() {
    let huge = [
        "79228162514264337593543950336",
        "79228162514264337593543950336.000",
        "0079228162514264337593543950336",
        "79228162514264337593543950337",
        "0.00000000000000000000000000001",
        "-99999999999999999999999999999999999.5",
    ];
    let mut rows = String::from(TRAFFIC);
    for (i, amount) in huge.iter().enumerate() {
        rows.push_str(&format!(
            "1700000000000000002,{},authorize,4000000000000001,,{amount},CNY,,,\n",
            10 + i
        ));
    }
    let f = Fixture::new(&[("traffic.csv", &rows)]);
    let d = f.load();
    let amounts: Vec<Decimal> = d.traffic[3..].iter().map(|r| r.amount.unwrap()).collect();
    for a in &amounts {
        assert!(a.scale() > 2, "{a} would be a valid amount somewhere");
    }
    assert_eq!(amounts[0], amounts[1], "trailing zeros do not count");
    assert_eq!(amounts[0], amounts[2], "leading zeros do not count");
    assert_ne!(amounts[0], amounts[3]);
    assert_ne!(amounts[0], amounts[4]);
    assert!(amounts[5].is_sign_negative());
    // A number with leading zeros that does fit is that number, not a stand-in.
    let fits = with_row(
        TRAFFIC,
        "1700000000000000002,4,authorize,4000000000000001,,00000000000000000000000000000012.50,CNY,,,",
    );
    let f = Fixture::new(&[("traffic.csv", &fits)]);
    assert_eq!(f.load().traffic[3].amount, Some(Decimal::new(1250, 2)));
}

#[test]
fn balance_that_does_not_fit_a_decimal() {
    let text = with_row(ACCOUNTS, "3,CNY,79228162514264337593543950336,active,,,");
    check(
        "accounts.csv",
        &text,
        4,
        "balance",
        "does not fit in a decimal",
        K::Amount,
    );
}

#[test]
fn balance_grammar() {
    let text = with_row(ACCOUNTS, "3,CNY,1.,active,,,");
    check(
        "accounts.csv",
        &text,
        4,
        "balance",
        "is not an amount",
        K::Amount,
    );
}

#[test]
fn balance_required() {
    let text = with_row(ACCOUNTS, "3,CNY,,active,,,");
    check("accounts.csv", &text, 4, "balance", "required", K::Amount);
}

#[test]
fn balance_with_more_decimals_than_its_currency() {
    let text = with_row(ACCOUNTS, "3,CNY,1.001,active,,,");
    check(
        "accounts.csv",
        &text,
        4,
        "balance",
        "more decimals than CNY allows (2)",
        K::Decimals,
    );
    let text = with_row(ACCOUNTS, "3,JPY,5.5,active,,,");
    check(
        "accounts.csv",
        &text,
        4,
        "balance",
        "more decimals than JPY allows (0)",
        K::Decimals,
    );
}

#[test]
fn limit_with_more_decimals_than_its_currency() {
    let text = with_row(ACCOUNTS, "3,USD,1.00,active,,0.001,");
    check(
        "accounts.csv",
        &text,
        4,
        "daily_limit",
        "more decimals than USD",
        K::Decimals,
    );
}

#[test]
fn balance_that_does_not_fit_minor_units() {
    let text = with_row(ACCOUNTS, "3,CNY,92233720368547758.08,active,,,");
    check(
        "accounts.csv",
        &text,
        4,
        "balance",
        "does not fit in i64 minor units",
        K::Amount,
    );
}

#[test]
fn negative_per_txn_limit() {
    let text = with_row(ACCOUNTS, "3,CNY,1.00,active,-1.00,,");
    check(
        "accounts.csv",
        &text,
        4,
        "per_txn_limit",
        "negative",
        K::NegativeLimit,
    );
}

#[test]
fn negative_daily_limit() {
    let text = with_row(ACCOUNTS, "3,HKD,1.00,active,,-0.01,");
    check(
        "accounts.csv",
        &text,
        4,
        "daily_limit",
        "negative",
        K::NegativeLimit,
    );
}

// ----- words -----

#[test]
fn kind_not_listed() {
    let text = with_row(
        TRAFFIC,
        "1700000000000000002,4,Authorize,4000000000000001,,1,CNY,,,",
    );
    check(
        "traffic.csv",
        &text,
        5,
        "kind",
        "\"Authorize\" is not one of",
        K::Word,
    );
}

#[test]
fn kind_required() {
    let text = with_row(TRAFFIC, "1700000000000000002,4,,4000000000000001,,1,CNY,,,");
    check("traffic.csv", &text, 5, "kind", "required", K::Word);
}

#[test]
fn traffic_currency_not_listed() {
    let text = with_row(
        TRAFFIC,
        "1700000000000000002,4,authorize,4000000000000001,,1,RMB,,,",
    );
    check(
        "traffic.csv",
        &text,
        5,
        "currency",
        "\"RMB\" is not one of CNY, HKD, JPY, USD",
        K::Word,
    );
}

#[test]
fn accounts_currency_not_listed() {
    let text = with_row(ACCOUNTS, "3,cny,1.00,active,,,");
    check(
        "accounts.csv",
        &text,
        4,
        "currency",
        "\"cny\" is not one of",
        K::Word,
    );
    let text = with_row(ACCOUNTS, "3,,1.00,active,,,");
    check("accounts.csv", &text, 4, "currency", "required", K::Word);
}

#[test]
fn account_status_not_listed() {
    let text = with_row(ACCOUNTS, "3,CNY,1.00,suspended,,,");
    check(
        "accounts.csv",
        &text,
        4,
        "status",
        "\"suspended\" is not one of active, frozen, closed",
        K::Word,
    );
}

#[test]
fn token_status_not_listed() {
    let text = with_row(TOKENS, "4000000000000003,1,frozen,3012");
    check(
        "tokens.csv",
        &text,
        4,
        "status",
        "\"frozen\" is not one of active, suspended, deactivated",
        K::Word,
    );
}

#[test]
fn final_not_empty_0_or_1() {
    for bad in ["2", "true", "01", "yes"] {
        let text = with_row(
            TRAFFIC,
            &format!("1700000000000000002,4,capture,4000000000000001,,1,CNY,,1,{bad}"),
        );
        check(
            "traffic.csv",
            &text,
            5,
            "final",
            "is not empty, 0 or 1",
            K::Word,
        );
    }
}

#[test]
fn expiry_not_yymm() {
    for bad in ["2613", "2600", "261", "202612", "26-1"] {
        let text = with_row(TOKENS, &format!("4000000000000003,1,active,{bad}"));
        check(
            "tokens.csv",
            &text,
            4,
            "expiry",
            "is not an expiry (YYMM",
            K::Word,
        );
    }
}

// ----- whitespace -----

#[test]
fn traffic_field_with_surrounding_spaces() {
    let text = with_row(
        TRAFFIC,
        "1700000000000000002,4,authorize,4000000000000001,, 1.00,CNY,,,",
    );
    check(
        "traffic.csv",
        &text,
        5,
        "amount",
        "\" 1.00\" has surrounding whitespace",
        K::Spaces,
    );
    let text = with_row(
        TRAFFIC,
        "1700000000000000002,4,authorize,4000000000000001 ,,1.00,CNY,,,",
    );
    check("traffic.csv", &text, 5, "token", "whitespace", K::Spaces);
    let text = with_row(
        TRAFFIC,
        "1700000000000000002,4,authorize,4000000000000001,,1.00,CNY,,,\t",
    );
    check("traffic.csv", &text, 5, "final", "whitespace", K::Spaces);
    // Ideographic space (U+3000), a likely copy-paste from Chinese text.
    let text = with_row(
        TRAFFIC,
        "1700000000000000002,4,authorize,4000000000000001,,1.00,CNY\u{3000},,,",
    );
    check("traffic.csv", &text, 5, "currency", "whitespace", K::Spaces);
}

#[test]
fn quoted_field_with_spaces_inside_the_quotes() {
    let text = with_row(ACCOUNTS, "\"3 \",CNY,1.00,active,,,");
    check(
        "accounts.csv",
        &text,
        4,
        "account_id",
        "whitespace",
        K::Spaces,
    );
}

#[test]
fn tokens_field_with_surrounding_spaces() {
    let text = with_row(TOKENS, " 4000000000000003,1,active,3012");
    check("tokens.csv", &text, 4, "token", "whitespace", K::Spaces);
}

#[test]
fn accounts_field_with_surrounding_spaces() {
    let text = with_row(ACCOUNTS, "3,CNY,1.00,active ,,,");
    check("accounts.csv", &text, 4, "status", "whitespace", K::Spaces);
}

#[test]
fn whitespace_is_checked_before_any_field_is_parsed() {
    // account_id is also bad, but the whitespace check covers the whole row first.
    let text = with_row(ACCOUNTS, "x3,CNY,1.00,active ,,,");
    check("accounts.csv", &text, 4, "status", "whitespace", K::Spaces);
}

#[test]
fn line_of_spaces_is_not_blank() {
    let text = with_row(TRAFFIC, "   ");
    check(
        "traffic.csv",
        &text,
        5,
        "request_id",
        "the row has 1 fields, the header 10",
        K::Shape,
    );
}

// ----- order, references, duplicates -----

#[test]
fn ts_ns_below_the_previous_row() {
    let text = with_row(TRAFFIC, "1700000000000000000,4,credit,,2,5,JPY,,,");
    check(
        "traffic.csv",
        &text,
        5,
        "ts_ns",
        "1700000000000000000 is below the previous row's 1700000000000000001 (line 4)",
        K::Order,
    );
}

#[test]
fn token_grammar() {
    for bad in [
        "0400000000000001",
        "400000000000",
        "40000000000000000000",
        "400000000000000a",
        "-400000000000001",
    ] {
        let text = with_row(TOKENS, &format!("{bad},1,active,3012"));
        check(
            "tokens.csv",
            &text,
            4,
            "token",
            "is not a token (13 to 19 digits",
            K::Word,
        );
    }
}

#[test]
fn token_of_an_unknown_account() {
    let text = with_row(TOKENS, "4000000000000003,7,active,3012");
    check(
        "tokens.csv",
        &text,
        4,
        "account_id",
        "account 7 is not in accounts.csv",
        K::UnknownAccount,
    );
}

#[test]
fn account_id_twice() {
    let text = with_row(ACCOUNTS, "2,CNY,1.00,active,,,");
    check(
        "accounts.csv",
        &text,
        4,
        "account_id",
        "account 2 already appears on line 3",
        K::Duplicate,
    );
}

#[test]
fn token_twice() {
    let text = with_row(TOKENS, "\"4000000000000001\",2,active,3012");
    check(
        "tokens.csv",
        &text,
        4,
        "token",
        "token 4000000000000001 already appears on line 2",
        K::Duplicate,
    );
}

// ----- line numbers are real file lines -----

#[test]
fn lines_count_blank_lines_crlf_and_quoted_newlines() {
    // Line 2 is blank, line 3 CRLF, lines 4-5 one record with a quoted newline in an extra
    // column, line 6 blank (CRLF), line 7 the bad row.
    let text = "ts_ns,request_id,kind,token,account_id,amount,currency,mcc,ref,final,note\n\
                \n\
                1700000000000000000,1,credit,,2,5,JPY,,,,a\r\n\
                1700000000000000001,2,credit,,2,5,JPY,,,,\"two\nlines\"\n\
                \r\n\
                1700000000000000002,3,credit,,2,5,JPY,,,x,\n";
    check(
        "traffic.csv",
        text,
        7,
        "final",
        "\"x\" is not empty, 0 or 1",
        K::Word,
    );
}

#[test]
fn header_after_a_bom_is_line_1() {
    let text = format!("\u{feff}{}", TRAFFIC.replace(",ref,", ",reference,"));
    check(
        "traffic.csv",
        &text,
        1,
        "ref",
        "column is missing",
        K::Header,
    );
}

// ----- accepted variations -----

fn dec(s: &str) -> Decimal {
    Decimal::from_str_exact(s).unwrap()
}

fn dpan(s: &str) -> Dpan {
    Dpan::from_str(s).unwrap()
}

fn expected() -> Dataset {
    Dataset {
        accounts: vec![
            AccountSpec {
                account_id: 1,
                currency: Currency::Cny,
                balance: dec("100.00"),
                status: AccountStatus::Active,
                per_txn_limit: Some(dec("50.00")),
                daily_limit: Some(dec("80")),
                daily_count_limit: Some(2),
            },
            AccountSpec {
                account_id: 2,
                currency: Currency::Jpy,
                balance: dec("1000"),
                status: AccountStatus::Frozen,
                per_txn_limit: None,
                daily_limit: None,
                daily_count_limit: None,
            },
        ],
        tokens: vec![
            TokenSpec {
                token: dpan("4000000000000001"),
                account_id: 1,
                status: TokenStatus::Active,
                expiry: Expiry::new(2030, 12).unwrap(),
            },
            TokenSpec {
                token: dpan("4000000000000002"),
                account_id: 2,
                status: TokenStatus::Suspended,
                expiry: Expiry::new(2029, 1).unwrap(),
            },
        ],
        traffic: vec![
            Request::new(Kind::Authorize, 1, 1_700_000_000_000_000_000)
                .with_token(dpan("4000000000000001"))
                .with_amount(dec("12.34"), Currency::Cny)
                .with_mcc(5411),
            Request::new(Kind::Credit, 2, 1_700_000_000_000_000_001)
                .with_account(2)
                .with_amount(dec("5"), Currency::Jpy),
            Request::new(Kind::Capture, 3, 1_700_000_000_000_000_001)
                .with_token(dpan("4000000000000001"))
                .with_amount(dec("12.34"), Currency::Cny)
                .with_ref(1)
                .with_final(true),
        ],
    }
}

#[test]
fn valid_files_load_exactly() {
    let fx = Fixture::new(&[]);
    let ds = fx.load();
    assert_eq!(ds, expected());
    assert_eq!(ds.last_ts_ns(), 1_700_000_000_000_000_001);
}

#[test]
fn bom_is_ignored() {
    let fx = Fixture::new(&[
        ("accounts.csv", &format!("\u{feff}{ACCOUNTS}")),
        ("tokens.csv", &format!("\u{feff}{TOKENS}")),
        ("traffic.csv", &format!("\u{feff}{TRAFFIC}")),
    ]);
    assert_eq!(fx.load(), expected());
}

#[test]
fn crlf_is_accepted() {
    let crlf = |t: &str| t.replace('\n', "\r\n");
    let fx = Fixture::new(&[
        ("accounts.csv", &crlf(ACCOUNTS)),
        ("tokens.csv", &crlf(TOKENS)),
        ("traffic.csv", &crlf(TRAFFIC)),
    ]);
    assert_eq!(fx.load(), expected());
}

#[test]
fn last_line_without_newline_is_read() {
    let fx = Fixture::new(&[("traffic.csv", TRAFFIC.trim_end())]);
    assert_eq!(fx.load(), expected());
}

#[test]
fn blank_lines_are_skipped_and_take_no_seq() {
    let spaced = |t: &str| format!("\n{}\n\n", t.replace('\n', "\n\n"));
    let fx = Fixture::new(&[
        ("accounts.csv", &spaced(ACCOUNTS)),
        ("tokens.csv", &spaced(TOKENS).replace('\n', "\r\n")),
        ("traffic.csv", &spaced(TRAFFIC)),
    ]);
    let ds = fx.load();
    assert_eq!(ds, expected());
    assert_eq!(ds.traffic.len(), 3);
}

#[test]
fn columns_in_another_order_and_extra_columns() {
    let accounts = "\
note,daily_count_limit,status,balance,currency,account_id,daily_limit,per_txn_limit
 anything  goes here ,2,active,100.00,CNY,1,80,50.00
,,frozen,1000,JPY,2,,
";
    let tokens = "\
expiry,status,token,account_id,
3012,active,4000000000000001,1,x
2901,suspended,4000000000000002,2,
";
    let traffic = "\
final,ref,mcc,currency,amount,account_id,token,kind,request_id,ts_ns,extra
,,5411,CNY,12.34,,4000000000000001,authorize,1,1700000000000000000,\" \"
,,,JPY,5,2,,credit,2,1700000000000000001,
1,1,,CNY,12.34,,4000000000000001,capture,3,1700000000000000001,中
";
    let fx = Fixture::new(&[
        ("accounts.csv", accounts),
        ("tokens.csv", tokens),
        ("traffic.csv", traffic),
    ]);
    assert_eq!(fx.load(), expected());
}

#[test]
fn quoted_fields_are_fine() {
    let quoted = |t: &str| {
        t.lines()
            .map(|l| {
                l.split(',')
                    .map(|f| format!("\"{f}\""))
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .collect::<Vec<_>>()
            .join("\n")
            + "\n"
    };
    let fx = Fixture::new(&[
        ("accounts.csv", &quoted(ACCOUNTS)),
        ("tokens.csv", &quoted(TOKENS)),
        ("traffic.csv", &quoted(TRAFFIC)),
    ]);
    assert_eq!(fx.load(), expected());
}

#[test]
fn header_only_traffic_reports_as_of_i64_min() {
    let fx = Fixture::new(&[(
        "traffic.csv",
        "ts_ns,request_id,kind,token,account_id,amount,currency,mcc,ref,final\n",
    )]);
    let ds = fx.load();
    assert!(ds.traffic.is_empty());
    assert_eq!(ds.last_ts_ns(), i64::MIN);
}

#[test]
fn account_amount_edges_are_accepted() {
    let accounts = "\
account_id,currency,balance,status,per_txn_limit,daily_limit,daily_count_limit
1,CNY,-3.5,closed,0,-0.00,0
2,JPY,007,active,5.000,,18446744073709551615
3,USD,12.340,frozen,,,
4,CNY,-1.00000000000000000000000000000,active,,,
";
    let fx = Fixture::new(&[
        ("accounts.csv", accounts),
        ("traffic.csv", &TRAFFIC[..TRAFFIC.find('\n').unwrap() + 1]),
    ]);
    let ds = fx.load();
    assert_eq!(ds.accounts[0].balance, dec("-3.5"));
    assert_eq!(ds.accounts[0].per_txn_limit, Some(Decimal::ZERO));
    assert_eq!(ds.accounts[0].daily_limit, Some(Decimal::ZERO));
    assert_eq!(ds.accounts[0].daily_count_limit, Some(0));
    assert_eq!(ds.accounts[1].balance, dec("7"));
    assert_eq!(ds.accounts[1].per_txn_limit, Some(dec("5")));
    assert_eq!(ds.accounts[1].daily_count_limit, Some(u64::MAX));
    assert_eq!(ds.accounts[2].balance, dec("12.34"));
    assert_eq!(ds.accounts[3].balance, dec("-1"));
}

#[test]
fn traffic_that_parses_but_breaks_a_rule_is_a_decline_not_a_file_error() {
    let traffic = "\
ts_ns,request_id,kind,token,account_id,amount,currency,mcc,ref,final
0,1,authorize,4000000000000001,,0,CNY,,,
0,1,authorize,4000000000000001,,-1,,,,0
1,2,authorize,abc,,12.345,JPY,,,
1,3,capture,,99,1,USD,0,424242,
2,4,credit,4000000000000009,77,1,CNY,,,1
2,5,void,4000000000000001,,,,,,
9223372036854775807,18446744073709551615,account_close,\"not, a token\",,,,,,
9223372036854775807,6,credit,,1,1.00000000000000000000000000000,CNY,,,
";
    let fx = Fixture::new(&[("traffic.csv", traffic)]);
    let ds = fx.load();
    assert_eq!(ds.traffic.len(), 8);
    assert_eq!(ds.traffic[0].amount, Some(Decimal::ZERO));
    assert_eq!(ds.traffic[1].amount, Some(dec("-1")));
    assert_eq!(ds.traffic[1].currency, None);
    assert_eq!(ds.traffic[2].token, TokenField::from_text("abc"));
    assert_eq!(ds.traffic[2].amount, Some(dec("12.345")));
    assert_eq!(ds.traffic[3].token, TokenField::Empty);
    assert_eq!(ds.traffic[3].account_id, Some(99));
    assert_eq!(ds.traffic[3].mcc, Some(0));
    assert_eq!(ds.traffic[3].reference, Some(424_242));
    assert!(ds.traffic[4].is_final);
    assert!(!ds.traffic[5].is_final);
    assert_eq!(ds.traffic[5].amount, None);
    assert_eq!(ds.traffic[6].ts_ns, i64::MAX);
    assert_eq!(ds.traffic[6].request_id, u64::MAX);
    assert_eq!(ds.traffic[6].token, TokenField::from_text("not, a token"));
    // 29 decimals do not fit a Decimal, but trailing zeros do not count.
    assert_eq!(ds.traffic[7].amount, Some(dec("1")));
    assert_eq!(ds.last_ts_ns(), i64::MAX);
}
