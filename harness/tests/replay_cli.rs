//! `payauth replay` end to end, through the binary: a tiny hand-written dataset whose
//! outcomes.csv and balances.csv were worked out by hand from DOMAIN.md, replayed under several
//! shard counts and batch sizes; plus the command line's refusals and `generate` -> load.

use std::fs;
use std::path::Path;
use std::process::{Command, Output};

use payauth_harness::dataset::Dataset;

const ACCOUNTS: &str = "\
account_id,currency,balance,status,per_txn_limit,daily_limit,daily_count_limit
10,USD,12.3,closed,,,
1,CNY,100.00,active,50.00,80,2
2,JPY,1000,active,,,
5,HKD,-3.5,active,,,
3,CNY,0,frozen,,,
";

const TOKENS: &str = "\
token,account_id,status,expiry
4000000000000001,1,active,3012
4000000000000002,2,active,3012
4000000000000003,3,active,3012
4000000000000009,1,active,2001
";

// T = 1_700_000_000 s = 2023-11-15 06:13:20 China time; rows 0..=28 one second apart, all on
// that China day; rows 29.. at T + 8 days. Token ...01 is account 1 (CNY, per_txn 50, daily
// 80, 2 a day), ...02 account 2 (JPY), ...03 account 3 (frozen), ...09 account 1, expired.
// The blank line after seq 10 takes no seq.
const TRAFFIC: &str = "\
ts_ns,request_id,kind,token,account_id,amount,currency,mcc,ref,final
1700000000000000000,1,authorize,4000000000000001,,30.00,CNY,5411,,
1700000001000000000,2,authorize,4000000000000001,,60.00,CNY,5411,,
1700000002000000000,3,authorize,4000000000000001,,12.345,CNY,5411,,
1700000003000000000,4,authorize,4000000000000001,,10.00,USD,5411,,
1700000004000000000,1,authorize,4000000000000001,,30.00,CNY,5411,,
1700000005000000000,1,authorize,4000000000000001,,31.00,CNY,5411,,
1700000006000000000,10,capture,4000000000000001,,20.00,CNY,,1,0
1700000007000000000,11,increment,4000000000000001,,5.00,CNY,,2,
1700000008000000000,12,increment,4000000000000001,,5.00,CNY,,99,
1700000009000000000,13,void,4000000000000001,,,,,1,
1700000010000000000,14,capture,4000000000000001,,5.00,CNY,,1,

1700000011000000000,15,refund,4000000000000001,,5.00,CNY,,1,
1700000012000000000,16,authorize,4000000000000009,,1.00,CNY,5411,,
1700000013000000000,17,authorize,4000000000000003,,1.00,CNY,5411,,
1700000014000000000,18,authorize,1234,,1.00,CNY,5411,,
1700000015000000000,19,credit,,3,5.00,CNY,,,
1700000016000000000,20,credit,,42,5.00,CNY,,,
1700000017000000000,21,authorize,4000000000000002,,1500,JPY,5411,,
1700000018000000000,22,authorize,4000000000000002,,700,JPY,5411,,
1700000019000000000,23,authorize,4000000000000001,,45.00,CNY,5411,,
1700000020000000000,24,authorize,4000000000000001,,1.00,CNY,5411,,
1700000021000000000,25,token_suspend,4000000000000001,,,,,,
1700000022000000000,26,authorize,4000000000000001,,1.00,CNY,5411,,
1700000023000000000,27,token_suspend,4000000000000001,,,,,,
1700000024000000000,28,account_close,,3,,,,,
1700000025000000000,29,credit,,3,1.00,CNY,,,
1700000026000000000,30,authorize,4000000000000003,,1.00,CNY,5411,,
1700000027000000000,31,void,4000000000000002,,200,JPY,,22,
1700000028000000000,32,capture,4000000000000002,,300,JPY,,22,1
1700691200000000000,33,capture,4000000000000001,,45.00,CNY,,23,0
1700691200000000000,34,authorize,4000000000000002,,100,JPY,5411,,
1700691200000000000,35,account_freeze,,5,,,,,
1700691200000000000,36,account_unfreeze,,5,,,,,
1700691200000000000,37,account_unfreeze,,5,,,,,
1700691200000000000,1,authorize,4000000000000001,,30.00,CNY,5411,,
1700691200000000000,38,credit,4000000000000001,1,0.01,CNY,,,
";

// Worked out by hand, row by row (seq: why):
//  0 00 hold 1: 30.00 held; day 30.00, 1 authorization
//  1 61 60.00 over per_txn_limit 50.00
//  2 13 three decimals in CNY
//  3 13 USD is not the account's currency
//  4 00 exact repeat of seq 0 inside the window: same answer, nothing changes
//  5 94 same key, another amount
//  6 00 capture 20.00 of hold 1: balance 80.00, held 10.00
//  7 12 ref 2 is a declined authorize (seq 1), still in its window
//  8 25 ref 99 names nothing
//  9 00 void of all that remains (10.00): hold 1 closes; same day, so day amount 20.00
// 10 22 hold 1 is closed
// 11 00 refund 5.00 of the 20.00 captured: balance 85.00
// 12 54 token ...09 expired in January 2020
// 13 62 account 3 is frozen
// 14 14 "1234" is no token
// 15 00 credit to a frozen account posts: account 3 balance 5.00
// 16 78 account 42 does not exist
// 17 51 1500 JPY over 1000 available
// 18 00 hold 22: 700 JPY held
// 19 00 45.00: day 20.00 + 45.00 = 65.00 <= 80, count 2 <= 2, available 85.00
// 20 65 a third authorization today
// 21 00 token ...01 suspended
// 22 62 token suspended
// 23 12 suspend of a token that is not active
// 24 00 closing a frozen account; its token ...03 is deactivated
// 25 78 credit to a closed account
// 26 14 token ...03 deactivated
// 27 00 void 200 of hold 22: held 500
// 28 00 final capture 300: balance 700, the remaining 200 released, held 0
// 29 00 hold 23 expired at seq 19 + 7 days; the late capture posts: balance 40.00
// 30 00 hold 34: 100 JPY held until + 7 days (open at the end)
// 31 00 account 5 frozen
// 32 00 account 5 unfrozen
// 33 12 unfreeze of an account that is not frozen
// 34 94 key (1, 1) is new again after 24 h, but hold 1 is still referable (45 days)
// 35 00 credit 0.01 (the token field is ignored): balance 40.01
const OUTCOMES: &str = "\
seq,request_id,code
0,1,00
1,2,61
2,3,13
3,4,13
4,1,00
5,1,94
6,10,00
7,11,12
8,12,25
9,13,00
10,14,22
11,15,00
12,16,54
13,17,62
14,18,14
15,19,00
16,20,78
17,21,51
18,22,00
19,23,00
20,24,65
21,25,00
22,26,62
23,27,12
24,28,00
25,29,78
26,30,14
27,31,00
28,32,00
29,33,00
30,34,00
31,35,00
32,36,00
33,37,12
34,1,94
35,38,00
";

// Account 1: 100.00 - 20.00 + 5.00 - 45.00 + 0.01; account 2: 1000 - 300, 100 held.
const BALANCES: &str = "\
account_id,balance,held,available
1,40.01,0.00,40.01
2,700,100,600
3,5.00,0.00,5.00
5,-3.50,0.00,-3.50
10,12.30,0.00,12.30
";

fn write_dataset(dir: &Path, traffic: &str) {
    fs::create_dir_all(dir).unwrap();
    fs::write(dir.join("accounts.csv"), ACCOUNTS).unwrap();
    fs::write(dir.join("tokens.csv"), TOKENS).unwrap();
    fs::write(dir.join("traffic.csv"), traffic).unwrap();
}

fn payauth(args: &[&str], dataset: &Path, out: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_payauth"))
        .arg("replay")
        .arg(dataset)
        .arg("--out")
        .arg(out)
        .args(args)
        .output()
        .expect("run payauth")
}

#[test]

fn hand_computed_outcomes_and_balances_under_every_config() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    write_dataset(&data, TRAFFIC);
    let configs: [&[&str]; 6] = [
        &[],
        &["--shards", "1", "--batch-max", "1"],
        &["--shards", "2", "--batch-max", "3"],
        &["--shards", "3", "--batch-max", "4096"],
        &["--shards", "7", "--batch-max", "2"],
        // Tables that must grow from nothing, and a queue that pushes back at once.
        &[
            "--shards",
            "2",
            "--batch-max",
            "1",
            "--queue-depth",
            "1",
            "--holds-hint",
            "0",
        ],
    ];
    for (i, args) in configs.iter().enumerate() {
        let out = tmp.path().join(format!("out{i}"));
        let run = payauth(args, &data, &out);
        let stdout = String::from_utf8_lossy(&run.stdout);
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert!(run.status.success(), "{args:?}: {stderr}");
        assert_eq!(
            fs::read_to_string(out.join("outcomes.csv")).unwrap(),
            OUTCOMES,
            "{args:?}"
        );
        assert_eq!(
            fs::read_to_string(out.join("balances.csv")).unwrap(),
            BALANCES,
            "{args:?}"
        );
        assert!(stdout.contains("replayed 36 requests"), "{stdout}");
        assert!(stdout.contains("decisions/s"), "{stdout}");
        assert!(stdout.contains("shards "), "{stdout}");
        assert!(stdout.contains("batch_max "), "{stdout}");
        assert!(stdout.contains("00=17"), "{stdout}");
        if let [_, shards, _, batch_max] = args {
            assert!(stdout.contains(&format!("shards {shards},")), "{stdout}");
            assert!(
                stdout.contains(&format!("batch_max {batch_max},")),
                "{stdout}"
            );
        }
    }
}

#[test]

fn crlf_bom_and_quotes_replay_the_same() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let traffic = format!("\u{feff}{}", TRAFFIC.replace('\n', "\r\n")).replace(
        ",authorize,4000000000000002,",
        ",\"authorize\",\"4000000000000002\",",
    );
    write_dataset(&data, &traffic);
    let out = tmp.path().join("out");
    let run = payauth(&["--shards", "2"], &data, &out);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert_eq!(
        fs::read_to_string(out.join("outcomes.csv")).unwrap(),
        OUTCOMES
    );
    assert_eq!(
        fs::read_to_string(out.join("balances.csv")).unwrap(),
        BALANCES
    );
}

#[test]

fn no_traffic_reports_the_loaded_balances() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    write_dataset(
        &data,
        "ts_ns,request_id,kind,token,account_id,amount,currency,mcc,ref,final\n",
    );
    let out = tmp.path().join("out");
    let run = payauth(&[], &data, &out);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert_eq!(
        fs::read_to_string(out.join("outcomes.csv")).unwrap(),
        "seq,request_id,code\n"
    );
    assert_eq!(
        fs::read_to_string(out.join("balances.csv")).unwrap(),
        "account_id,balance,held,available\n\
         1,100.00,0.00,100.00\n\
         2,1000,0,1000\n\
         3,0.00,0.00,0.00\n\
         5,-3.50,0.00,-3.50\n\
         10,12.30,0.00,12.30\n"
    );
}

#[test]
fn bad_config_is_a_one_line_error_and_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    write_dataset(&data, TRAFFIC);
    let out = tmp.path().join("out");
    let run = payauth(&["--shards", "0"], &data, &out);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success());
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert!(stderr.contains("shards"), "{stderr}");
    assert!(!out.exists());
    let run = payauth(&["--queue-depth", "0"], &data, &out);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success());
    assert!(stderr.contains("queue_depth"), "{stderr}");
    assert!(!out.exists());
}

#[test]
fn missing_dataset_folder_is_a_one_line_error() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let run = payauth(&[], &tmp.path().join("nowhere"), &out);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success());
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("accounts.csv: cannot open"), "{stderr}");
    assert!(!out.exists());
}

#[test]
fn generated_datasets_load() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("gen");
    let run = Command::new(env!("CARGO_BIN_EXE_payauth"))
        .args([
            "generate",
            "--accounts",
            "20",
            "--requests",
            "2000",
            "--seed",
            "7",
        ])
        .arg("--out")
        .arg(&data)
        .output()
        .expect("run payauth");
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(String::from_utf8_lossy(&run.stdout).contains("seed 7"));
    let ds = Dataset::load(&data).unwrap_or_else(|e| panic!("generated dataset refused: {e}"));
    assert_eq!(ds.accounts.len(), 20);
    assert_eq!(ds.traffic.len(), 2000);
}
