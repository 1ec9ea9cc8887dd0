//! The replay writers' exact bytes: `outcomes.csv` and `balances.csv` are compared byte for byte
//! with a reference, so header, order, line ends and decimals are pinned here.

use std::fs;

use payauth_engine::{AccountState, AccountStatus, Code, Currency, Decision};
use payauth_harness::output::{self, BALANCES_FILE, OUTCOMES_FILE};
use rust_decimal::Decimal;

fn dec(s: &str) -> Decimal {
    Decimal::from_str_exact(s).unwrap()
}

fn account(
    id: u64,
    currency: Currency,
    balance: &str,
    held: &str,
    available: &str,
) -> AccountState {
    AccountState {
        account_id: id,
        currency,
        balance: dec(balance),
        held: dec(held),
        available: dec(available),
        status: AccountStatus::Active,
    }
}

fn decisions() -> Vec<Decision> {
    vec![
        Decision {
            request_id: 7,
            code: Code::Approved,
        },
        Decision {
            request_id: 18_446_744_073_709_551_615,
            code: Code::InvalidAmount,
        },
        Decision {
            request_id: 0,
            code: Code::Duplicate,
        },
    ]
}

/// Unsorted, mixed scales: the writer sorts by id and prints the currency's decimals.
fn accounts() -> Vec<AccountState> {
    vec![
        account(10, Currency::Usd, "12.3", "0", "12.3"),
        account(2, Currency::Jpy, "7", "2", "5"),
        account(9, Currency::Hkd, "-3.5", "0.000", "-3.50"),
        account(1, Currency::Cny, "100.00", "30.5", "69.50"),
    ]
}

#[test]
fn outcomes_bytes() {
    let mut out = Vec::new();
    output::write_outcomes(&mut out, &decisions()).unwrap();
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "seq,request_id,code\n0,7,00\n1,18446744073709551615,13\n2,0,94\n"
    );
}

#[test]
fn outcomes_of_no_requests_is_the_header() {
    let mut out = Vec::new();
    output::write_outcomes(&mut out, &[]).unwrap();
    assert_eq!(out, b"seq,request_id,code\n");
}

#[test]
fn balances_bytes() {
    let mut out = Vec::new();
    output::write_balances(&mut out, &accounts()).unwrap();
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "account_id,balance,held,available\n\
         1,100.00,30.50,69.50\n\
         2,7,2,5\n\
         9,-3.50,0.00,-3.50\n\
         10,12.30,0.00,12.30\n"
    );
}

#[test]
fn balances_refuse_an_amount_the_currency_cannot_hold() {
    let bad = [account(1, Currency::Cny, "1.001", "0", "1.001")];
    let err = output::write_balances(Vec::new(), &bad).unwrap_err();
    assert!(
        err.to_string().contains("account 1: balance 1.001"),
        "{err}"
    );
}

#[test]
fn balances_refuse_available_that_is_not_balance_minus_held() {
    let bad = [account(1, Currency::Cny, "10", "3", "8")];
    let err = output::write_balances(Vec::new(), &bad).unwrap_err();
    assert!(err.to_string().contains("is not balance"), "{err}");
}

#[test]
fn replay_files_land_in_a_new_folder_without_leftovers() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("a/b");
    output::write_replay_files(&out, &decisions(), &accounts()).unwrap();
    let mut names: Vec<String> = fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, [BALANCES_FILE, OUTCOMES_FILE]);
    assert!(fs::read_to_string(out.join(OUTCOMES_FILE))
        .unwrap()
        .ends_with("2,0,94\n"));
    assert!(fs::read_to_string(out.join(BALANCES_FILE))
        .unwrap()
        .ends_with("10,12.30,0.00,12.30\n"));
}

#[test]
fn a_failed_write_leaves_no_files() {
    let dir = tempfile::tempdir().unwrap();
    let bad = [account(1, Currency::Cny, "10", "3", "8")];
    assert!(output::write_replay_files(dir.path(), &decisions(), &bad).is_err());
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
}
