//! `payauth journal-export`: a state directory's journal turned back into a dataset replays,
//! under any shard count, to the decisions the journal recorded and to the same balances; the
//! state is read in place (not a byte changes, even with a torn tail); states a dataset cannot
//! express are refused with the reason.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use payauth_engine::{Config, Engine, JournalConfig};
use payauth_harness::dataset::Dataset;

const SAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../data/sample");

fn payauth() -> Command {
    Command::new(env!("CARGO_BIN_EXE_payauth"))
}

fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "payauth failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn replay(dataset: &Path, out: &Path, extra: &[&str]) -> String {
    ok(payauth()
        .arg("replay")
        .arg(dataset)
        .arg("--out")
        .arg(out)
        .args(extra)
        .output()
        .unwrap())
}

fn export(state: &Path, out: &Path) -> Output {
    payauth()
        .arg("journal-export")
        .arg(state)
        .arg("--out")
        .arg(out)
        .output()
        .unwrap()
}

/// Every file under `dir` with its bytes.
fn snapshot_tree(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                files.insert(path.clone(), fs::read(&path).unwrap());
            }
        }
    }
    files
}

/// `(request_id, code)` of each row of an outcomes file.
fn id_and_code(outcomes: &str) -> Vec<(&str, &str)> {
    outcomes
        .lines()
        .skip(1)
        .map(|l| {
            let mut f = l.split(',').skip(1);
            (f.next().unwrap(), f.next().unwrap())
        })
        .collect()
}

fn read(path: PathBuf) -> String {
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn an_exported_journal_replays_to_the_journaled_decisions() {
    let tmp = tempfile::tempdir().unwrap();
    let (first, state, data) = (
        tmp.path().join("first"),
        tmp.path().join("state"),
        tmp.path().join("exported"),
    );
    replay(
        Path::new(SAMPLE),
        &first,
        &[
            "--state",
            state.to_str().unwrap(),
            "--shards",
            "2",
            "--batch-max",
            "100",
        ],
    );
    let before = snapshot_tree(&state);
    let summary = ok(export(&state, &data));
    assert!(summary.contains("exported"), "{summary}");
    assert_eq!(
        snapshot_tree(&state),
        before,
        "the export changed the state directory"
    );

    // Every journaled decision is in the first run's outcomes, in the same relative order;
    // what is missing is exactly the rows answered at resolution.
    let expected = read(data.join("expected-outcomes.csv"));
    let outcomes = read(first.join("outcomes.csv"));
    let journaled = id_and_code(&expected);
    let all = id_and_code(&outcomes);
    assert!(journaled.len() < all.len() && journaled.len() > all.len() / 2);
    let mut sorted_journaled = journaled.clone();
    let mut sorted_all = all.clone();
    sorted_journaled.sort();
    sorted_all.sort();
    let mut missing = sorted_all.clone();
    for j in &sorted_journaled {
        let at = missing
            .iter()
            .position(|a| a == j)
            .unwrap_or_else(|| panic!("journaled decision {j:?} is not in the first run"));
        missing.remove(at);
    }
    assert!(
        missing
            .iter()
            .all(|(_, code)| *code == "14" || *code == "78"),
        "only rows answered at resolution may be missing: {missing:?}"
    );

    // Replayed under other shard counts and batch sizes: the journaled decisions, and the
    // first run's balances (rows answered at resolution change nothing).
    for (shards, batch) in [("1", "1"), ("3", "4096")] {
        let out = tmp.path().join(format!("again-{shards}"));
        replay(&data, &out, &["--shards", shards, "--batch-max", batch]);
        assert_eq!(read(out.join("outcomes.csv")), expected, "shards {shards}");
        assert_eq!(
            read(out.join("balances.csv")),
            read(first.join("balances.csv")),
            "shards {shards}"
        );
    }
}

#[test]
fn a_killed_replay_exports_what_was_durable_and_a_torn_tail_stays_in_place() {
    let tmp = tempfile::tempdir().unwrap();
    let (out, state, data) = (
        tmp.path().join("out"),
        tmp.path().join("state"),
        tmp.path().join("exported"),
    );
    let mut child = payauth()
        .arg("replay")
        .arg(SAMPLE)
        .arg("--out")
        .arg(&out)
        .arg("--state")
        .arg(&state)
        .args(["--batch-max", "16", "--durability", "async:1ms"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let part = out.join("outcomes.csv.part");
    let started = std::time::Instant::now();
    while fs::read(&part).map_or(0, |b| b.len()) < 20_000 {
        if child.try_wait().unwrap().is_some() || started.elapsed() > Duration::from_secs(60) {
            break;
        }
        std::thread::sleep(Duration::from_micros(500));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    // What a machine crash could leave: half a frame at the end of shard 0's journal.
    let mut logs: Vec<PathBuf> = fs::read_dir(state.join("shard-0"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    logs.sort();
    if let Some(last) = logs.last() {
        let mut bytes = fs::read(last).unwrap();
        bytes.extend_from_slice(&[200, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7]);
        fs::write(last, bytes).unwrap();
    }
    let before = snapshot_tree(&state);
    let summary = ok(export(&state, &data));
    if !logs.is_empty() {
        assert!(summary.contains("torn tail of 11 bytes"), "{summary}");
    }
    assert_eq!(
        snapshot_tree(&state),
        before,
        "the export changed the state directory"
    );
    let again = tmp.path().join("again");
    replay(&data, &again, &["--shards", "1"]);
    assert_eq!(
        read(again.join("outcomes.csv")),
        read(data.join("expected-outcomes.csv"))
    );
}

#[test]
fn states_a_dataset_cannot_express_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    // A host that snapshots every 500 records: pruning drops snapshot 0, and the oldest kept
    // snapshot holds open holds and duplicate records.
    let state = tmp.path().join("host-state");
    let dataset = Dataset::load(Path::new(SAMPLE)).unwrap();
    let config = Config {
        shards: 2,
        journal: Some(JournalConfig::new(&state)),
        snapshot_every_records: 500,
        ..Config::default()
    };
    let as_of = dataset.last_ts_ns();
    let engine = Engine::start(config, dataset.accounts, dataset.tokens).unwrap();
    for chunk in dataset.traffic.chunks(250) {
        engine.submit(chunk).unwrap();
    }
    engine.shutdown(as_of).unwrap();
    let out = export(&state, &tmp.path().join("x"));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("oldest kept snapshot") && err.contains("record 0"),
        "{err}"
    );

    // Not a state directory at all.
    let empty = tmp.path().join("empty");
    fs::create_dir_all(&empty).unwrap();
    let out = export(&empty, &tmp.path().join("y"));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("state.meta"), "{err}");
}
