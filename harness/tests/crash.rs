//! `payauth replay --state --durability` killed with SIGKILL at random moments, then
//! `--resume`d: the finished outcomes.csv and balances.csv must equal an uninterrupted
//! in-memory run's, and every decision printed (streamed to outcomes.csv.part) before a kill
//! must be the one the finished run reports. Also the refusals a resume owes: damage in the
//! journal, a state from other traffic, and a state that exists when --resume is missing.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const SAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../data/sample");
const PART: &str = "outcomes.csv.part";

fn payauth() -> Command {
    Command::new(env!("CARGO_BIN_EXE_payauth"))
}

/// `payauth replay DATASET --out OUT [--state STATE]`.
fn replay_cmd(dataset: &Path, out: &Path, state: Option<&Path>) -> Command {
    let mut cmd = payauth();
    cmd.arg("replay").arg(dataset).arg("--out").arg(out);
    if let Some(state) = state {
        cmd.arg("--state").arg(state);
    }
    cmd
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("payauth runs")
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

fn failed(out: Output) -> String {
    assert!(
        !out.status.success(),
        "payauth should have refused: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// splitmix64: the test's own seeded randomness.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// The reference: the sample replayed in memory, uninterrupted.
fn reference(dir: &Path) -> (String, String) {
    let out = dir.join("reference");
    ok(run(&mut replay_cmd(Path::new(SAMPLE), &out, None)));
    (
        fs::read_to_string(out.join("outcomes.csv")).unwrap(),
        fs::read_to_string(out.join("balances.csv")).unwrap(),
    )
}

/// Complete lines of a streamed outcomes file (a kill may leave the last one torn).
fn printed_lines(text: &str) -> Vec<&str> {
    let complete = match text.rfind('\n') {
        Some(end) => &text[..=end],
        None => "",
    };
    complete.lines().collect()
}

fn line_count(path: &Path) -> usize {
    fs::read(path)
        .map(|b| b.iter().filter(|&&c| c == b'\n').count())
        .unwrap_or(0)
}

/// Start a durable replay of the sample and SIGKILL it once its streamed outcomes reach
/// `kill_at_lines` lines (or at once for 0); returns what it had printed, or `None` when it
/// finished before the kill.
fn replay_and_kill(
    args: &[&str],
    out: &Path,
    state: &Path,
    resume: bool,
    kill_at_lines: usize,
) -> Option<String> {
    let mut cmd = replay_cmd(Path::new(SAMPLE), out, Some(state));
    cmd.args(args).stdout(Stdio::null()).stderr(Stdio::piped());
    if resume {
        cmd.arg("--resume");
    }
    let mut child: Child = cmd.spawn().expect("payauth starts");
    let part = out.join(PART);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            use std::io::Read;
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            assert!(status.success(), "the replay failed before the kill: {err}");
            return None;
        }
        if kill_at_lines == 0 || line_count(&part) >= kill_at_lines {
            break;
        }
        assert!(Instant::now() < deadline, "the replay never got that far");
        std::thread::sleep(Duration::from_micros(500));
    }
    // std's kill is SIGKILL on Unix: no destructor, no flush, no shutdown.
    child.kill().unwrap();
    child.wait().unwrap();
    Some(fs::read_to_string(&part).unwrap_or_default())
}

fn resume(args: &[&str], out: &Path, state: &Path) -> String {
    ok(run(replay_cmd(Path::new(SAMPLE), out, Some(state))
        .arg("--resume")
        .args(args)))
}

#[test]
fn killed_replays_resume_to_the_uninterrupted_result() {
    let tmp = tempfile::tempdir().unwrap();
    let (outcomes, balances) = reference(tmp.path());
    let final_lines: Vec<&str> = outcomes.lines().collect();
    let rows = final_lines.len() - 1;
    let mut killed = 0;
    for seed in 1..=6u64 {
        let mut rng = Rng(seed);
        // Vary the shape too: decisions must not depend on it.
        let shards = ["1", "2", "3"][(seed % 3) as usize];
        let batch = ["16", "32", "64"][rng.below(3) as usize];
        let durability = if seed % 2 == 0 { "sync" } else { "async:2ms" };
        let args = [
            "--shards",
            shards,
            "--batch-max",
            batch,
            "--durability",
            durability,
        ];
        let out = tmp.path().join(format!("out-{seed}"));
        let state = tmp.path().join(format!("state-{seed}"));
        // Seed 1 dies at once (perhaps before the state directory is complete); the others
        // somewhere in the traffic, and every third is killed again while resuming.
        let first = if seed == 1 {
            0
        } else {
            1 + rng.below(rows as u64 - 1) as usize
        };
        let mut printed = Vec::new();
        printed.extend(replay_and_kill(&args, &out, &state, false, first));
        if seed % 3 == 0 {
            let second = first + rng.below((rows - first) as u64) as usize;
            printed.extend(replay_and_kill(&args, &out, &state, true, second));
        }
        // A kill that came after some decisions were printed and before the last one.
        killed += printed
            .iter()
            .filter(|t| (2..=rows).contains(&printed_lines(t).len()))
            .count();
        let summary = resume(&args, &out, &state);
        assert!(
            summary.contains("resumed") || summary.contains("journaled"),
            "{summary}"
        );
        let got_outcomes = fs::read_to_string(out.join("outcomes.csv")).unwrap();
        let got_balances = fs::read_to_string(out.join("balances.csv")).unwrap();
        assert!(
            got_outcomes == outcomes,
            "seed {seed} ({args:?}): outcomes differ from the uninterrupted run"
        );
        assert!(
            got_balances == balances,
            "seed {seed} ({args:?}): balances differ from the uninterrupted run"
        );
        assert!(
            !out.join(PART).exists(),
            "the finished run leaves no partial file"
        );
        for text in &printed {
            let lines = printed_lines(text);
            for (i, line) in lines.iter().enumerate() {
                assert_eq!(
                    *line, final_lines[i],
                    "seed {seed}: printed line {i} before the kill changed"
                );
            }
        }
    }
    assert!(
        killed >= 3,
        "too few runs were killed mid-way to prove much"
    );
}

#[test]
fn resuming_a_finished_state_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let (outcomes, balances) = reference(tmp.path());
    let out = tmp.path().join("out");
    let state = tmp.path().join("state");
    let args = ["--batch-max", "512"];
    let first = resume(&args, &out, &state);
    assert!(first.contains("journaled into"), "{first}");
    let again = resume(&args, &out, &state);
    // Everything the shards decided is durable; only the rows answered at resolution
    // (unknown token or account, never journaled) are asked again.
    let resolved_at_router = outcomes
        .lines()
        .filter(|l| l.ends_with(",14") || l.ends_with(",78"))
        .count();
    assert!(again.contains("resumed"), "{again}");
    let submitted: usize = again
        .split(" submitted now")
        .next()
        .and_then(|s| s.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no submitted count in {again}"));
    assert!(submitted <= resolved_at_router, "{again}");
    assert_eq!(
        fs::read_to_string(out.join("outcomes.csv")).unwrap(),
        outcomes
    );
    assert_eq!(
        fs::read_to_string(out.join("balances.csv")).unwrap(),
        balances
    );
    // Without --resume, an existing state is refused, not overwritten.
    let err = failed(run(&mut replay_cmd(Path::new(SAMPLE), &out, Some(&state))));
    assert!(err.contains("add --resume"), "{err}");
}

fn journal_segment(state: &Path, shard: usize) -> PathBuf {
    let dir = state.join(format!("shard-{shard}"));
    let mut logs: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    logs.sort();
    logs.into_iter().next().expect("a journal segment")
}

#[test]
fn damaged_or_foreign_states_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let args = ["--shards", "2", "--batch-max", "256"];
    let out = tmp.path().join("out");
    let state = tmp.path().join("state");
    resume(&args, &out, &state);

    // A flipped byte in the middle of shard 1's journal: refused, naming shard, file, offset.
    let segment = journal_segment(&state, 1);
    let mut bytes = fs::read(&segment).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    fs::write(&segment, &bytes).unwrap();
    let err = failed(run(replay_cmd(Path::new(SAMPLE), &out, Some(&state))
        .arg("--resume")
        .args(args)));
    let name = segment.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        err.contains("shard 1") && err.contains(&name) && err.contains("at byte"),
        "{err}"
    );

    // A state written from other traffic: the dataset stamp differs.
    let other = tmp.path().join("other");
    fs::create_dir_all(&other).unwrap();
    for f in ["accounts.csv", "tokens.csv"] {
        fs::copy(Path::new(SAMPLE).join(f), other.join(f)).unwrap();
    }
    let traffic = fs::read_to_string(Path::new(SAMPLE).join("traffic.csv")).unwrap();
    let cut: Vec<&str> = traffic.lines().take(5000).collect();
    fs::write(other.join("traffic.csv"), cut.join("\n") + "\n").unwrap();
    let state2 = tmp.path().join("state2");
    ok(run(replay_cmd(
        &other,
        &tmp.path().join("out2"),
        Some(&state2),
    )
    .args(args)));
    let err = failed(run(replay_cmd(Path::new(SAMPLE), &out, Some(&state2))
        .arg("--resume")
        .args(args)));
    assert!(err.contains("digest"), "{err}");
    // Even without the stamp, the journal itself shows the traffic differs... or it is the
    // prefix of this traffic, which resumes correctly: a 5000-row prefix is exactly that.
    fs::remove_file(state2.join("payauth-dataset.json")).unwrap();
    let summary = resume(&args, &tmp.path().join("out3"), &state2);
    assert!(summary.contains("submitted now"), "{summary}");
    let (outcomes, _) = reference(tmp.path());
    assert_eq!(
        fs::read_to_string(tmp.path().join("out3/outcomes.csv")).unwrap(),
        outcomes
    );
}

#[test]
fn durability_flags_are_checked() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let err = failed(run(
        replay_cmd(Path::new(SAMPLE), &out, None).args(["--durability", "sync"])
    ));
    assert!(err.contains("--state"), "{err}");
    let err = failed(run(replay_cmd(
        Path::new(SAMPLE),
        &out,
        Some(&tmp.path().join("s")),
    )
    .args(["--durability", "none"])));
    assert!(err.contains("journals nothing"), "{err}");
    let err = failed(run(replay_cmd(
        Path::new(SAMPLE),
        &out,
        Some(&tmp.path().join("s")),
    )
    .args(["--durability", "async:often"])));
    assert!(err.contains("async"), "{err}");
}
