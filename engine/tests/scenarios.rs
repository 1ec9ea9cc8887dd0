//! Scenario tests as data: DOMAIN.md in executable form. Each test is one small script run by
//! the single [`check`] helper against the reference model and the sharded
//! engine (shards 1 / batch_max 1 and shards 3 / batch_max 4096), which must agree on every
//! code, every `expect` line and the whole exported state.
//!
//! # Script syntax
//!
//! One item per line; blank lines are skipped and `#` starts a comment that runs to the end
//! of the line (use it to name the DOMAIN.md rule a line pins).
//!
//! Header (before the first request):
//! ```text
//! config [ttl=<dur>] [window=<dur>] [retention=<dur>]      defaults 7d, 24h, 45d
//! account <id> <CUR> <balance> <active|frozen|closed> [per_txn=<amt>] [daily=<amt>] [count=<n>]
//! token <dpan> <account_id> <active|suspended|deactivated> <YYMM>
//! ```
//!
//! Requests, each with the code it must get:
//! ```text
//! t=<time> <kind> <request_id> [token=<text>] [acct=<id>] [amount=<dec>] [cur=<CUR>]
//!          [mcc=<n>] [ref=<id>] [final=<0|1|>] => <code>
//! ```
//! A field left out is empty; `token=` / `amount=` / `final=` with nothing after `=` are empty
//! too. `token=` takes any text: a DPAN, or text outside the DPAN grammar (which names no
//! token). Times must not go backwards.
//!
//! Expectations on the exported state, as of the last request's `ts` or `at=<time>`:
//! ```text
//! expect [at=<time>] account <id> [balance=<amt>] [held=<amt>] [available=<amt>] [status=<s>]
//! expect [at=<time>] hold <account_id> <request_id> [authorized=..] [captured=..] [voided=..]
//!                         [refunded=..] [status=<open|closed|expired>] [expires=<time>]
//! expect [at=<time>] no-hold <account_id> <request_id>       (not exported: not referable)
//! expect [at=<time>] token <dpan> <status>
//! ```
//! Amounts compare as numbers (`10` = `10.00`).
//!
//! `<time>` and `<dur>` are sums of terms like `7d`, `25h`, `30m`, `59s`, `5ms`, `3us`, `1ns`
//! joined by `+` or `-` (`t=7d-1ns`, `t=16h+30m`); a bare `0` is zero. Time 0 is
//! 2025-01-01 00:00 UTC, which is 08:00 China time: China-time days turn at `t=16h`, `40h`,
//! `64h`, ... and a token expiring `2501` is expired from `t=30d+16h` (2025-02-01 00:00 China).
//!
//! Besides the listed expectations, every export is checked for the invariants of DOMAIN.md
//! (`available = balance - held`, `held` = the open holds' remaining amounts, never negative,
//! rows sorted), and the final state (as of the last request) is exported too.

use std::str::FromStr;

use payauth_engine::api::{NS_PER_DAY, NS_PER_SEC};
use payauth_engine::model::{Model, ModelConfig};
use payauth_engine::{
    AccountSpec, AccountStatus, Code, Config, Decision, Dpan, Engine, Expiry, HoldStatus, Request,
    StateExport, TokenField, TokenSpec, TokenStatus,
};
use rust_decimal::Decimal;

/// (shards, batch_max) of the engine runs: one request per pass, and big batches over shards.
const ENGINE_CONFIGS: [(usize, usize); 2] = [(1, 1), (3, 4096)];

/// Script time 0: 2025-01-01 00:00:00 UTC (08:00 China time).
const BASE_NS: i64 = 1_735_689_600 * NS_PER_SEC;

// ---------------------------------------------------------------------------------------------
// The helper
// ---------------------------------------------------------------------------------------------

/// Parse `script`, run it through the model and the engine configs,
/// and panic with the failing script line when any code, expectation or invariant is off.
#[track_caller]
fn check(script: &str) {
    let script = match Script::parse(script) {
        Ok(s) => s,
        Err(e) => panic!("bad scenario script: {e}"),
    };
    let model = match Model::new(script.config, &script.accounts, &script.tokens) {
        Ok(m) => m,
        Err(e) => panic!("model refused the scenario's accounts/tokens: {e}"),
    };
    let model_snaps = match run(&script, ModelSubject(model)) {
        Ok(s) => s,
        Err(e) => panic!("scenario failed on the model\n{e}"),
    };
    for (shards, batch_max) in ENGINE_CONFIGS {
        let name = format!("engine(shards={shards}, batch_max={batch_max})");
        let config = Config {
            shards,
            batch_max,
            hold_ttl_ns: script.config.hold_ttl_ns,
            dup_window_ns: script.config.dup_window_ns,
            retention_ns: script.config.retention_ns,
            ..Config::default()
        };
        let engine = match Engine::start(config, script.accounts.clone(), script.tokens.clone()) {
            Ok(e) => e,
            Err(e) => panic!("{name} refused the scenario's accounts/tokens: {e}"),
        };
        let snaps = match run(&script, EngineSubject(engine)) {
            Ok(s) => s,
            Err(e) => panic!("scenario failed on {name}\n{e}"),
        };
        for (m, e) in model_snaps.iter().zip(&snaps) {
            if let Err(diff) = same_state(&m.export, &e.export) {
                panic!(
                    "{name} and the model disagree on the state at {}\n{diff}",
                    m.place
                );
            }
        }
    }
}

/// What a scenario runs against.
trait Subject {
    fn decide(&mut self, batch: Vec<Request>) -> Result<Vec<Decision>, String>;
    fn export(&mut self, as_of_ns: i64) -> Result<StateExport, String>;
    fn finish(self, as_of_ns: i64) -> Result<StateExport, String>;
}

struct ModelSubject(Model);

impl Subject for ModelSubject {
    fn decide(&mut self, batch: Vec<Request>) -> Result<Vec<Decision>, String> {
        Ok(batch.iter().map(|r| self.0.apply(r)).collect())
    }
    fn export(&mut self, as_of_ns: i64) -> Result<StateExport, String> {
        Ok(self.0.export(as_of_ns))
    }
    fn finish(self, as_of_ns: i64) -> Result<StateExport, String> {
        Ok(self.0.export(as_of_ns))
    }
}

struct EngineSubject(Engine);

impl Subject for EngineSubject {
    fn decide(&mut self, batch: Vec<Request>) -> Result<Vec<Decision>, String> {
        self.0
            .submit(&batch)
            .map_err(|e| format!("submit failed: {e}"))
    }
    fn export(&mut self, as_of_ns: i64) -> Result<StateExport, String> {
        self.0
            .export(as_of_ns)
            .map_err(|e| format!("export failed: {e}"))
    }
    fn finish(self, as_of_ns: i64) -> Result<StateExport, String> {
        self.0
            .shutdown(as_of_ns)
            .map_err(|e| format!("shutdown failed: {e}"))
    }
}

/// An export taken at an `expect` line (or at the end).
struct Snapshot {
    place: String,
    export: StateExport,
}

/// Run every step: requests between two `expect` lines go in as one batch.
fn run(script: &Script, mut subject: impl Subject) -> Result<Vec<Snapshot>, String> {
    let mut pending: Vec<&RequestStep> = Vec::new();
    let mut snaps = Vec::new();
    for step in &script.steps {
        match step {
            Step::Request(r) => pending.push(r),
            Step::Expect(e) => {
                flush(&mut subject, &mut pending)?;
                let export = subject.export(e.as_of_ns)?;
                let place = format!("line {}: `{}`", e.line, e.text);
                invariants(&export).map_err(|m| format!("{place}\n    invariant: {m}"))?;
                expectation(&e.what, &export).map_err(|m| format!("{place}\n    {m}"))?;
                snaps.push(Snapshot { place, export });
            }
        }
    }
    flush(&mut subject, &mut pending)?;
    let export = subject.finish(script.end_ns)?;
    let place = "the end (as of the last request)".to_string();
    invariants(&export).map_err(|m| format!("{place}\n    invariant: {m}"))?;
    snaps.push(Snapshot { place, export });
    Ok(snaps)
}

/// Submit the pending requests as one batch and compare every decision.
fn flush(subject: &mut impl Subject, pending: &mut Vec<&RequestStep>) -> Result<(), String> {
    if pending.is_empty() {
        return Ok(());
    }
    let batch: Vec<Request> = pending.iter().map(|r| r.request).collect();
    let decisions = subject.decide(batch)?;
    if decisions.len() != pending.len() {
        return Err(format!(
            "{} decisions for a batch of {}",
            decisions.len(),
            pending.len()
        ));
    }
    let mut wrong = Vec::new();
    for (step, d) in pending.iter().zip(&decisions) {
        if d.request_id != step.request.request_id || d.code != step.code {
            wrong.push(format!(
                "line {}: `{}`\n    expected {}, got {} (request_id {})",
                step.line, step.text, step.code, d.code, d.request_id
            ));
        }
    }
    pending.clear();
    if wrong.is_empty() {
        Ok(())
    } else {
        Err(wrong.join("\n"))
    }
}

/// DOMAIN.md "Invariants" and the export's sort orders.
fn invariants(export: &StateExport) -> Result<(), String> {
    let sorted = export
        .accounts
        .windows(2)
        .all(|w| w[0].account_id < w[1].account_id)
        && export
            .holds
            .windows(2)
            .all(|w| (w[0].account_id, w[0].request_id) < (w[1].account_id, w[1].request_id))
        && export.tokens.windows(2).all(|w| w[0].token < w[1].token);
    if !sorted {
        return Err("export rows are not sorted".into());
    }
    for a in &export.accounts {
        let open: Decimal = export
            .holds
            .iter()
            .filter(|h| h.account_id == a.account_id && h.status == HoldStatus::Open)
            .map(|h| h.authorized - h.captured - h.voided)
            .sum();
        if a.held != open || a.held.is_sign_negative() && !a.held.is_zero() {
            return Err(format!(
                "account {}: held {} but open holds remain {open}",
                a.account_id, a.held
            ));
        }
        if a.available != a.balance - a.held {
            return Err(format!(
                "account {}: available {} != balance {} - held {}",
                a.account_id, a.available, a.balance, a.held
            ));
        }
    }
    Ok(())
}

/// Compare one `expect` line with an export.
fn expectation(what: &Expect, export: &StateExport) -> Result<(), String> {
    fn field<T: PartialEq + std::fmt::Debug>(
        name: &str,
        want: &Option<T>,
        got: &T,
    ) -> Result<(), String> {
        match want {
            Some(w) if w != got => Err(format!("{name}: expected {w:?}, got {got:?}")),
            _ => Ok(()),
        }
    }
    match what {
        Expect::Account {
            account_id,
            balance,
            held,
            available,
            status,
        } => {
            let a = export
                .accounts
                .iter()
                .find(|a| a.account_id == *account_id)
                .ok_or_else(|| format!("account {account_id} is not in the export"))?;
            field("balance", balance, &a.balance)?;
            field("held", held, &a.held)?;
            field("available", available, &a.available)?;
            field("status", status, &a.status)
        }
        Expect::Hold {
            account_id,
            request_id,
            authorized,
            captured,
            voided,
            refunded,
            status,
            expires_at_ns,
        } => {
            let h = export
                .holds
                .iter()
                .find(|h| h.account_id == *account_id && h.request_id == *request_id)
                .ok_or_else(|| format!("hold ({account_id}, {request_id}) is not in the export"))?;
            field("authorized", authorized, &h.authorized)?;
            field("captured", captured, &h.captured)?;
            field("voided", voided, &h.voided)?;
            field("refunded", refunded, &h.refunded)?;
            field("status", status, &h.status)?;
            field("expires", expires_at_ns, &h.expires_at_ns)
        }
        Expect::NoHold {
            account_id,
            request_id,
        } => match export
            .holds
            .iter()
            .find(|h| h.account_id == *account_id && h.request_id == *request_id)
        {
            Some(h) => Err(format!("hold is still exported: {h:?}")),
            None => Ok(()),
        },
        Expect::Token { token, status } => {
            let t = export
                .tokens
                .iter()
                .find(|t| t.token == *token)
                .ok_or_else(|| format!("token {token} is not in the export"))?;
            field("status", &Some(*status), &t.status)
        }
    }
}

/// Whole-state comparison of two exports, naming the first differing row.
fn same_state(model: &StateExport, other: &StateExport) -> Result<(), String> {
    fn rows<T: PartialEq + std::fmt::Debug>(what: &str, m: &[T], o: &[T]) -> Result<(), String> {
        for i in 0..m.len().max(o.len()) {
            let (a, b) = (m.get(i), o.get(i));
            if a != b {
                return Err(format!("{what} row {i}:\n  model: {a:?}\n  other: {b:?}"));
            }
        }
        Ok(())
    }
    rows("accounts", &model.accounts, &other.accounts)?;
    rows("holds", &model.holds, &other.holds)?;
    rows("tokens", &model.tokens, &other.tokens)
}

// ---------------------------------------------------------------------------------------------
// The script language
// ---------------------------------------------------------------------------------------------

struct Script {
    config: ModelConfig,
    accounts: Vec<AccountSpec>,
    tokens: Vec<TokenSpec>,
    steps: Vec<Step>,
    /// `ts_ns` of the last request (DOMAIN.md: the final state is as of it).
    end_ns: i64,
}

enum Step {
    Request(RequestStep),
    Expect(ExpectStep),
}

struct RequestStep {
    line: usize,
    text: String,
    request: Request,
    code: Code,
}

struct ExpectStep {
    line: usize,
    text: String,
    as_of_ns: i64,
    what: Expect,
}

enum Expect {
    Account {
        account_id: u64,
        balance: Option<Decimal>,
        held: Option<Decimal>,
        available: Option<Decimal>,
        status: Option<AccountStatus>,
    },
    Hold {
        account_id: u64,
        request_id: u64,
        authorized: Option<Decimal>,
        captured: Option<Decimal>,
        voided: Option<Decimal>,
        refunded: Option<Decimal>,
        status: Option<HoldStatus>,
        expires_at_ns: Option<i64>,
    },
    NoHold {
        account_id: u64,
        request_id: u64,
    },
    Token {
        token: Dpan,
        status: TokenStatus,
    },
}

impl Script {
    fn parse(text: &str) -> Result<Script, String> {
        let mut script = Script {
            config: ModelConfig::default(),
            accounts: Vec::new(),
            tokens: Vec::new(),
            steps: Vec::new(),
            end_ns: BASE_NS,
        };
        // The latest instant the script has reached (a request's ts or an `expect at=`).
        let mut clock_ns = BASE_NS;
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let content = raw.split('#').next().unwrap_or("").trim();
            if content.is_empty() {
                continue;
            }
            let words: Vec<&str> = content.split_whitespace().collect();
            let fail = |m: String| format!("line {line}: `{content}`: {m}");
            let header = matches!(words[0], "config" | "account" | "token");
            if header && !script.steps.is_empty() {
                return Err(fail("header lines go before the first request".into()));
            }
            match words[0] {
                "config" => script.parse_config(&words[1..]).map_err(fail)?,
                "account" => script
                    .accounts
                    .push(parse_account(&words[1..]).map_err(fail)?),
                "token" => script.tokens.push(parse_token(&words[1..]).map_err(fail)?),
                "expect" => {
                    let (at, what) = parse_expect(&words[1..]).map_err(fail)?;
                    let as_of_ns = at.unwrap_or(script.end_ns);
                    if as_of_ns < clock_ns {
                        return Err(fail("time goes backwards".into()));
                    }
                    clock_ns = as_of_ns;
                    script.steps.push(Step::Expect(ExpectStep {
                        line,
                        text: content.to_string(),
                        as_of_ns,
                        what,
                    }));
                }
                w if w.starts_with("t=") => {
                    let (request, code) = parse_request(&words).map_err(fail)?;
                    if request.ts_ns < clock_ns {
                        return Err(fail("time goes backwards".into()));
                    }
                    clock_ns = request.ts_ns;
                    script.end_ns = request.ts_ns;
                    script.steps.push(Step::Request(RequestStep {
                        line,
                        text: content.to_string(),
                        request,
                        code,
                    }));
                }
                _ => return Err(fail("unknown line".into())),
            }
        }
        Ok(script)
    }

    fn parse_config(&mut self, words: &[&str]) -> Result<(), String> {
        for w in words {
            let (key, value) = split_kv(w)?;
            let ns = parse_offset(value)?;
            match key {
                "ttl" => self.config.hold_ttl_ns = ns,
                "window" => self.config.dup_window_ns = ns,
                "retention" => self.config.retention_ns = ns,
                _ => return Err(format!("unknown config key `{key}`")),
            }
        }
        Ok(())
    }
}

fn parse_account(words: &[&str]) -> Result<AccountSpec, String> {
    let [id, currency, balance, status, rest @ ..] = words else {
        return Err("expected: account <id> <CUR> <balance> <status> [limits]".into());
    };
    let mut spec = AccountSpec {
        account_id: parse_u64(id)?,
        currency: parse_word(currency)?,
        balance: parse_decimal(balance)?,
        status: parse_word(status)?,
        per_txn_limit: None,
        daily_limit: None,
        daily_count_limit: None,
    };
    for w in rest {
        match split_kv(w)? {
            ("per_txn", v) => spec.per_txn_limit = Some(parse_decimal(v)?),
            ("daily", v) => spec.daily_limit = Some(parse_decimal(v)?),
            ("count", v) => spec.daily_count_limit = Some(parse_u64(v)?),
            (k, _) => return Err(format!("unknown account key `{k}`")),
        }
    }
    Ok(spec)
}

fn parse_token(words: &[&str]) -> Result<TokenSpec, String> {
    let [token, account_id, status, expiry] = words else {
        return Err("expected: token <dpan> <account_id> <status> <YYMM>".into());
    };
    Ok(TokenSpec {
        token: parse_word(token)?,
        account_id: parse_u64(account_id)?,
        status: parse_word(status)?,
        expiry: parse_word::<Expiry>(expiry)?,
    })
}

fn parse_request(words: &[&str]) -> Result<(Request, Code), String> {
    let arrow = words
        .iter()
        .position(|w| *w == "=>")
        .ok_or("a request line ends with `=> <code>`")?;
    let [code] = &words[arrow + 1..] else {
        return Err("expected exactly one code after `=>`".into());
    };
    let code: Code = parse_word(code)?;
    let [time, kind, request_id, fields @ ..] = &words[..arrow] else {
        return Err("expected: t=<time> <kind> <request_id> [fields] => <code>".into());
    };
    let ts_ns = BASE_NS + parse_offset(time.strip_prefix("t=").unwrap_or(time))?;
    let mut req = Request::new(parse_word(kind)?, parse_u64(request_id)?, ts_ns);
    for w in fields {
        let (key, value) = split_kv(w)?;
        match key {
            "token" => req.token = TokenField::from_text(value),
            "acct" => req.account_id = Some(parse_u64(value)?),
            "amount" if value.is_empty() => req.amount = None,
            "amount" => req.amount = Some(parse_decimal(value)?),
            "cur" => req.currency = Some(parse_word(value)?),
            "mcc" => req.mcc = Some(parse_u64(value)?),
            "ref" => req.reference = Some(parse_u64(value)?),
            "final" => {
                req.is_final = match value {
                    "" | "0" => false,
                    "1" => true,
                    _ => return Err(format!("final must be empty, 0 or 1, not `{value}`")),
                }
            }
            _ => return Err(format!("unknown request field `{key}`")),
        }
    }
    Ok((req, code))
}

fn parse_expect(words: &[&str]) -> Result<(Option<i64>, Expect), String> {
    let (at, words) = match words.first().and_then(|w| w.strip_prefix("at=")) {
        Some(t) => (Some(BASE_NS + parse_offset(t)?), &words[1..]),
        None => (None, words),
    };
    let what = match words {
        ["account", id, rest @ ..] => {
            let (mut balance, mut held, mut available, mut status) = (None, None, None, None);
            for w in rest {
                match split_kv(w)? {
                    ("balance", v) => balance = Some(parse_decimal(v)?),
                    ("held", v) => held = Some(parse_decimal(v)?),
                    ("available", v) => available = Some(parse_decimal(v)?),
                    ("status", v) => status = Some(parse_word(v)?),
                    (k, _) => return Err(format!("unknown account expectation `{k}`")),
                }
            }
            Expect::Account {
                account_id: parse_u64(id)?,
                balance,
                held,
                available,
                status,
            }
        }
        ["hold", account_id, request_id, rest @ ..] => {
            let mut amounts: [Option<Decimal>; 4] = [None; 4];
            let (mut status, mut expires_at_ns) = (None, None);
            for w in rest {
                let (k, v) = split_kv(w)?;
                let slot = ["authorized", "captured", "voided", "refunded"]
                    .iter()
                    .position(|name| *name == k);
                match (k, slot) {
                    (_, Some(i)) => amounts[i] = Some(parse_decimal(v)?),
                    ("status", _) => status = Some(parse_hold_status(v)?),
                    ("expires", _) => expires_at_ns = Some(BASE_NS + parse_offset(v)?),
                    _ => return Err(format!("unknown hold expectation `{k}`")),
                }
            }
            let [authorized, captured, voided, refunded] = amounts;
            Expect::Hold {
                account_id: parse_u64(account_id)?,
                request_id: parse_u64(request_id)?,
                authorized,
                captured,
                voided,
                refunded,
                status,
                expires_at_ns,
            }
        }
        ["no-hold", account_id, request_id] => Expect::NoHold {
            account_id: parse_u64(account_id)?,
            request_id: parse_u64(request_id)?,
        },
        ["token", token, status] => Expect::Token {
            token: parse_word(token)?,
            status: parse_word(status)?,
        },
        _ => return Err("expected: expect [at=<time>] account|hold|no-hold|token ...".into()),
    };
    Ok((at, what))
}

/// `<time>` / `<dur>`: terms like `7d`, `25h`, `1ns` joined by `+` / `-`; bare `0` is zero.
fn parse_offset(text: &str) -> Result<i64, String> {
    let bad = || format!("bad time `{text}` (e.g. 0, 7d, 25h+1ns, 7d-1ns)");
    let mut total: i64 = 0;
    let mut sign = 1;
    let mut rest = text;
    loop {
        let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        if digits == 0 {
            return Err(bad());
        }
        let value: i64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest.len()
            - rest
                .trim_start_matches(|c: char| c.is_ascii_lowercase())
                .len();
        let unit_ns = match &rest[..unit_len] {
            "" if value == 0 => 0,
            "ns" => 1,
            "us" => 1_000,
            "ms" => 1_000_000,
            "s" => NS_PER_SEC,
            "m" => 60 * NS_PER_SEC,
            "h" => 3_600 * NS_PER_SEC,
            "d" => NS_PER_DAY,
            _ => return Err(bad()),
        };
        rest = &rest[unit_len..];
        total += sign * value * unit_ns;
        match rest.as_bytes().first() {
            None => return Ok(total),
            Some(b'+') => sign = 1,
            Some(b'-') => sign = -1,
            Some(_) => return Err(bad()),
        }
        rest = &rest[1..];
    }
}

fn split_kv(word: &str) -> Result<(&str, &str), String> {
    word.split_once('=')
        .ok_or_else(|| format!("expected key=value, got `{word}`"))
}

fn parse_u64(text: &str) -> Result<u64, String> {
    text.parse()
        .map_err(|_| format!("`{text}` is not an unsigned integer"))
}

fn parse_decimal(text: &str) -> Result<Decimal, String> {
    Decimal::from_str_exact(text).map_err(|_| format!("`{text}` is not a decimal"))
}

fn parse_word<T: FromStr>(text: &str) -> Result<T, String>
where
    T::Err: std::fmt::Display,
{
    text.parse().map_err(|e| format!("`{text}`: {e}"))
}

fn parse_hold_status(text: &str) -> Result<HoldStatus, String> {
    [HoldStatus::Open, HoldStatus::Closed, HoldStatus::Expired]
        .into_iter()
        .find(|s| s.as_str() == text)
        .ok_or_else(|| format!("`{text}` is not a hold status"))
}

/// The script helper checks itself: times, and that a broken expectation is reported with
/// its line.
#[test]
fn script_times_parse() {
    assert_eq!(parse_offset("0"), Ok(0));
    assert_eq!(parse_offset("7d-1ns"), Ok(7 * NS_PER_DAY - 1));
    assert_eq!(parse_offset("25h+1ns"), Ok(25 * 3_600 * NS_PER_SEC + 1));
    assert_eq!(parse_offset("1m+1s+1ms+1us"), Ok(61_001_001_000));
    assert!(parse_offset("7").is_err());
    assert!(parse_offset("7x").is_err());
    assert!(parse_offset("").is_err());
    // Time 0 is 08:00 China time: the China day turns at t=16h.
    let day = payauth_engine::api::china_day;
    assert_eq!(day(BASE_NS + 16 * 3_600 * NS_PER_SEC) - day(BASE_NS), 1);
    assert_eq!(day(BASE_NS + 16 * 3_600 * NS_PER_SEC - 1), day(BASE_NS));
    let jan: Expiry = "2501".parse().unwrap();
    assert_eq!(
        jan.expired_from_ns(),
        BASE_NS + 30 * NS_PER_DAY + 16 * 3_600 * NS_PER_SEC
    );
}

#[test]
#[should_panic(expected = "line 4")]
fn check_names_the_failing_line() {
    check(
        "
        account 1 CNY 100.00 active
        token 4111111111111 1 active 2912
        t=0 credit 1 acct=1 amount=1.00 cur=CNY => 13
        ",
    );
}

#[test]
#[should_panic(expected = "held: expected 5")]
fn check_reports_a_wrong_expectation() {
    check(
        "
        account 1 CNY 100.00 active
        token 4111111111111 1 active 2912
        t=0 authorize 1 token=4111111111111 amount=10.00 cur=CNY => 00
        expect account 1 held=5.00
        ",
    );
}

// =============================================================================================
// Scenarios
// =============================================================================================

// ---- Resolve first: 14 / 78 -----------------------------------------------------------------

#[test]
fn resolve_unknown_token_answers_14_for_every_token_kind() {
    check(
        "
        # DOMAIN Resolve first: a token that is unknown answers 14, before any other check.
        account 1 CNY 100.00 active
        token 4111111111111 1 active 2912
        t=0  authorize 1 token=4222222222222 amount=1.00 cur=CNY => 14
        t=0  authorize 2 token=4222222222222 amount=0 cur=CNY => 14      # 14 before 13
        t=1s increment 3 token=4222222222222 ref=1 amount=1.00 cur=CNY => 14
        t=2s capture 4 token=4222222222222 ref=1 amount=1.00 cur=CNY => 14
        t=3s void 5 token=4222222222222 ref=1 => 14
        t=4s refund 6 token=4222222222222 ref=1 amount=1.00 cur=CNY => 14
        t=5s token_suspend 7 token=4222222222222 => 14
        t=6s token_resume 8 token=4222222222222 => 14
        t=7s token_deactivate 9 token=4222222222222 => 14
        expect account 1 balance=100.00 held=0.00
        expect token 4111111111111 active
        ",
    );
}

#[test]
fn resolve_empty_or_malformed_token_answers_14() {
    check(
        "
        # DOMAIN Settled: an empty token answers 14; text outside the DPAN grammar names nothing.
        account 1 CNY 100.00 active
        token 4111111111111 1 active 2912
        t=0 authorize 1 amount=1.00 cur=CNY => 14                       # no token
        t=0 authorize 2 token= amount=1.00 cur=CNY => 14                # empty token
        t=0 authorize 3 acct=1 amount=1.00 cur=CNY => 14                # account_id does not address a card message
        t=0 authorize 4 token=411111111111 amount=1.00 cur=CNY => 14    # 12 digits
        t=0 authorize 5 token=04111111111111 amount=1.00 cur=CNY => 14  # leading 0
        t=0 capture 6 token=abc ref=1 amount=1.00 cur=CNY => 14
        t=0 token_suspend 7 => 14
        expect token 4111111111111 active
        ",
    );
}

#[test]
fn resolve_deactivated_token_blocks_authorize_increment_and_token_admin_only() {
    check(
        "
        # DOMAIN Resolve first: deactivated answers 14 for authorize, increment, token admin;
        # capture, void and refund still resolve it.
        account 1 CNY 100.00 active
        token 4111111111111 1 active 2912
        token 4111111111112 1 deactivated 2912
        t=0  authorize 1 token=4111111111111 amount=30.00 cur=CNY => 00
        t=1s authorize 2 token=4111111111112 amount=1.00 cur=CNY => 14
        t=2s increment 3 token=4111111111112 ref=1 amount=1.00 cur=CNY => 14
        t=3s token_suspend 4 token=4111111111112 => 14
        t=4s token_resume 5 token=4111111111112 => 14
        t=5s token_deactivate 6 token=4111111111112 => 14
        t=6s capture 7 token=4111111111112 ref=1 amount=10.00 cur=CNY => 00
        t=7s refund 8 token=4111111111112 ref=1 amount=4.00 cur=CNY => 00
        t=8s void 9 token=4111111111112 ref=1 amount=5.00 => 00
        expect account 1 balance=94.00 held=15.00 available=79.00
        expect hold 1 1 authorized=30.00 captured=10.00 voided=5.00 refunded=4.00 status=open
        expect token 4111111111112 deactivated
        ",
    );
}

#[test]
fn resolve_answers_are_not_remembered_for_duplicates() {
    check(
        "
        # DOMAIN Resolve first: 14/78 answers are not remembered, so the key stays free.
        account 1 CNY 100.00 active
        token 4111111111111 1 deactivated 2912
        token 4111111111112 1 active 2912
        t=0  authorize 1 token=4111111111111 amount=5.00 cur=CNY => 14
        t=1s authorize 1 token=4111111111112 amount=6.00 cur=CNY => 00   # not 94: no record
        t=2s token_suspend 2 token=4111111111111 => 14
        t=3s token_suspend 2 token=4111111111112 => 00
        t=4s credit 3 acct=7 amount=1.00 cur=CNY => 78
        t=5s credit 3 acct=1 amount=1.00 cur=CNY => 00
        expect account 1 balance=101.00 held=6.00
        expect token 4111111111112 suspended
        ",
    );
}

#[test]
fn resolve_unknown_or_empty_account_answers_78() {
    check(
        "
        # DOMAIN Resolve first / Settled: an unknown or empty account_id answers 78 for credit and
        # account admin, before any other check.
        account 1 CNY 100.00 active
        token 4111111111111 1 active 2912
        t=0 credit 1 acct=2 amount=1.00 cur=CNY => 78
        t=0 credit 2 amount=1.00 cur=CNY => 78
        t=0 credit 3 acct=2 amount=0 cur=CNY => 78                       # 78 before 13
        t=0 credit 4 token=4111111111111 amount=1.00 cur=CNY => 78       # a token does not address credit
        t=0 account_freeze 5 acct=2 => 78
        t=0 account_unfreeze 6 => 78
        t=0 account_close 7 acct=2 => 78
        t=0 account_close 8 token=4111111111111 => 78
        expect account 1 balance=100.00 status=active
        ",
    );
}

// ---- Duplicates -----------------------------------------------------------------------------

#[test]
fn dup_exact_repeat_replays_approval_and_changes_nothing() {
    check(
        "
        # DOMAIN Duplicates: an exact repeat inside the window answers as recorded, changes nothing.
        account 1 CNY 100.00 active
        token 4111111111111 1 active 2912
        t=0  credit 1 acct=1 amount=10.00 cur=CNY => 00
        t=1h credit 1 acct=1 amount=10.00 cur=CNY => 00
        t=2h authorize 2 token=4111111111111 amount=10.00 cur=CNY mcc=5411 => 00
        t=3h authorize 2 token=4111111111111 amount=10.00 cur=CNY mcc=5411 => 00
        expect account 1 balance=110.00 held=10.00
        expect hold 1 2 authorized=10.00 expires=7d+2h
        ",
    );
}

#[test]
fn dup_exact_repeat_replays_a_decline_even_when_it_would_now_pass() {
    check(
        "
        # DOMAIN Duplicates: the repeat answers exactly as the recorded one did.
        account 1 CNY 5.00 active
        token 4111111111111 1 active 2912
        t=0  authorize 1 token=4111111111111 amount=10.00 cur=CNY => 51
        t=1s credit 2 acct=1 amount=100.00 cur=CNY => 00
        t=2s authorize 1 token=4111111111111 amount=10.00 cur=CNY => 51
        t=3s authorize 3 token=4111111111111 amount=10.00 cur=CNY => 00
        expect account 1 balance=105.00 held=10.00
        expect no-hold 1 1
        ",
    );
}

#[test]
fn dup_changed_amount_answers_94_and_keeps_the_record() {
    check(
        "
        # DOMAIN Duplicates: a changed field answers 94, changes nothing, makes no record.
        account 1 CNY 100.00 active
        token 4111111111111 1 active 2912
        t=0  authorize 1 token=4111111111111 amount=10.00 cur=CNY => 00
        t=1s authorize 1 token=4111111111111 amount=11.00 cur=CNY => 94
        expect account 1 held=10.00
        expect hold 1 1 authorized=10.00
        t=2s authorize 1 token=4111111111111 amount=10.00 cur=CNY => 00   # still the first record
        t=3s authorize 1 token=4111111111111 amount=11.00 cur=CNY => 94
        expect account 1 held=10.00
        ",
    );
}

#[test]
fn dup_changed_unused_column_answers_94() {
    check(
        "
        # DOMAIN Settled: the comparison covers every column but ts_ns, even unused ones.
        account 1 CNY 100.00 active
        token 4111111111111 1 active 2912
        t=0   authorize 1 token=4111111111111 amount=10.00 cur=CNY mcc=5411 => 00
        t=1s  authorize 1 token=4111111111111 amount=10.00 cur=CNY mcc=5411 acct=1 => 94
        t=2s  authorize 1 token=4111111111111 amount=10.00 cur=CNY mcc=5411 ref=7 => 94
        t=3s  authorize 1 token=4111111111111 amount=10.00 cur=CNY mcc=5411 final=1 => 94
        t=4s  authorize 1 token=4111111111111 amount=10.00 cur=CNY mcc=5812 => 94
        t=5s  authorize 1 token=4111111111111 amount=10.00 cur=CNY => 94   # mcc now empty
        t=6s  credit 2 acct=1 amount=1.00 cur=CNY => 00
        t=7s  credit 2 acct=1 amount=1.00 cur=CNY token=4111111111111 => 94
        t=8s  credit 2 acct=1 amount=1.00 cur=CNY mcc=1 => 94
        t=9s  capture 3 token=4111111111111 ref=1 amount=1.00 cur=CNY => 00
        t=10s capture 3 token=4111111111111 ref=1 amount=1.00 cur=CNY mcc=5411 => 94
        t=11s capture 3 token=4111111111111 ref=1 amount=1.00 cur=CNY final=1 => 94
        t=12s capture 3 token=4111111111111 ref=2 amount=1.00 cur=CNY => 94
        t=13s void 4 token=4111111111111 ref=1 amount=1.00 => 00
        t=14s void 4 token=4111111111111 ref=1 amount=1.00 cur=CNY => 94      # currency now given
        t=15s void 4 token=4111111111111 ref=1 => 94                          # amount now empty
        t=16s token_suspend 5 token=4111111111111 => 00
        t=17s token_suspend 5 token=4111111111111 mcc=1 => 94
        expect account 1 balance=100.00 held=8.00
        expect hold 1 1 captured=1.00 voided=1.00 status=open
        ",
    );
}

#[test]
fn dup_amounts_compare_as_numbers() {
    check(
        "
        # DOMAIN Duplicates: amounts compare as numbers (12.340 is 12.34, 10 is 10.00).
        account 1 CNY 100.00 active
        token 4111111111111 1 active 2912
        t=0  credit 1 acct=1 amount=12.34 cur=CNY => 00
        t=1s credit 1 acct=1 amount=12.340 cur=CNY => 00
        t=2s credit 1 acct=1 amount=12.3400 cur=CNY => 00
        t=3s authorize 2 token=4111111111111 amount=10 cur=CNY => 00
        t=4s authorize 2 token=4111111111111 amount=10.00 cur=CNY => 00
        t=5s authorize 2 token=4111111111111 amount=10.001 cur=CNY => 94   # another number
        expect account 1 balance=112.34 held=10.00
        ",
    );
}

#[test]
fn dup_empty_final_equals_zero() {
    check(
        "
        # DOMAIN Settled: final empty equals 0 in the comparison.
        account 1 CNY 100.00 active
        token 4111111111111 1 active 2912
        t=0  authorize 1 token=4111111111111 amount=10.00 cur=CNY => 00
        t=1s capture 2 token=4111111111111 ref=1 amount=5.00 cur=CNY => 00
        t=2s capture 2 token=4111111111111 ref=1 amount=5.00 cur=CNY final=0 => 00
        t=3s capture 2 token=4111111111111 ref=1 amount=5.00 cur=CNY final= => 00
        t=4s capture 2 token=4111111111111 ref=1 amount=5.00 cur=CNY final=1 => 94
        expect account 1 balance=95.00 held=5.00
        expect hold 1 1 captured=5.00 status=open
        ",
    );
}

#[test]
fn dup_window_ends_exactly_at_record_plus_window() {
    check(
        "
        # DOMAIN Duplicates: repeats answer while ts < record + window; from record + window on the
        # key is new and its next request makes a new record.
        account 1 CNY 100.00 active
        token 4111111111111 1 active 2912
        t=0       credit 1 acct=1 amount=10.00 cur=CNY => 00
        t=24h-1ns credit 1 acct=1 amount=10.00 cur=CNY => 00   # replay
        expect account 1 balance=110.00
        t=24h     credit 1 acct=1 amount=10.00 cur=CNY => 00   # new record, applied
        expect account 1 balance=120.00
        t=48h-1ns credit 1 acct=1 amount=99.00 cur=CNY => 94   # window of the new record
        t=48h     credit 1 acct=1 amount=99.00 cur=CNY => 00
        expect account 1 balance=219.00
        ",
    );
}

#[test]
fn dup_repeats_neither_record_nor_extend_the_window() {
    check(
        "
        # DOMAIN Duplicates: neither kind of repeat makes a new record or extends the window.
        account 1 CNY 100.00 active
        token 4111111111111 1 active 2912
        t=0       credit 1 acct=1 amount=10.00 cur=CNY => 00
        t=23h     credit 1 acct=1 amount=10.00 cur=CNY => 00   # exact repeat
        t=23h+30m credit 1 acct=1 amount=99.00 cur=CNY => 94   # changed repeat
        t=24h     credit 1 acct=1 amount=99.00 cur=CNY => 00   # window ran from t=0 only
        t=24h+1s  credit 1 acct=1 amount=10.00 cur=CNY => 94   # the record is now the 99.00 one
        expect account 1 balance=209.00
        ",
    );
}

#[test]
fn dup_key_is_account_and_request_id() {
    check(
        "
        # DOMAIN Duplicates: the key is (account, request_id), whatever the kind.
        account 1 CNY 100.00 active
        account 2 CNY 100.00 active
        account 3 CNY 100.00 active
        token 4111111111111 1 active 2912
        token 4222222222222 2 active 2912
        t=0  authorize 1 token=4111111111111 amount=10.00 cur=CNY => 00
        t=1s authorize 1 token=4222222222222 amount=20.00 cur=CNY => 00   # other account: new key
        t=2s credit 1 acct=1 amount=5.00 cur=CNY => 94                     # same key, other kind
        t=3s credit 1 acct=2 amount=5.00 cur=CNY => 94
        t=4s credit 1 acct=3 amount=5.00 cur=CNY => 00
        t=5s capture 1 token=4111111111111 ref=1 amount=10.00 cur=CNY => 94  # its own ref's key
        expect account 1 balance=100.00 held=10.00
        expect account 2 balance=100.00 held=20.00
        expect account 3 balance=105.00
        t=24h capture 1 token=4111111111111 ref=1 amount=10.00 cur=CNY => 00 # window over: decided
        expect account 1 balance=90.00 held=0.00
        ",
    );
}

#[test]
fn dup_other_token_of_the_same_account_is_a_changed_field() {
    check(
        "
        # DOMAIN Duplicates: two tokens of one account share the key; the token field differs.
        account 1 CNY 100.00 active
        token 4111111111111 1 active 2912
        token 4111111111112 1 active 2912
        t=0  authorize 1 token=4111111111111 amount=10.00 cur=CNY => 00
        t=1s authorize 1 token=4111111111112 amount=10.00 cur=CNY => 94
        expect account 1 held=10.00
        ",
    );
}

#[test]
fn dup_admin_repeats_replay_instead_of_failing_the_transition() {
    check(
        "
        # DOMAIN Duplicates apply to admin kinds: a repeat replays 00 where a new request is 12.
        account 1 CNY 100.00 active
        token 4111111111111 1 active 2912
        t=0  token_suspend 1 token=4111111111111 => 00
        t=1s token_suspend 1 token=4111111111111 => 00
        t=2s token_suspend 2 token=4111111111111 => 12
        t=3s account_freeze 3 acct=1 => 00
        t=4s account_freeze 3 acct=1 => 00
        t=5s account_freeze 4 acct=1 => 12
        expect account 1 status=frozen
        expect token 4111111111111 suspended
        ",
    );
}

#[test]
fn dup_repeat_with_a_deactivated_token_answers_14() {
    check(
        "
        # DOMAIN Settled: resolution comes before the duplicate check: an exact repeat answers 14
        # once its token is deactivated; completions still resolve and replay.
        account 1 CNY 100.00 active
        token 4111111111111 1 active 2912
        t=0  authorize 1 token=4111111111111 amount=10.00 cur=CNY => 00
        t=1s capture 2 token=4111111111111 ref=1 amount=4.00 cur=CNY => 00
        t=2s token_deactivate 3 token=4111111111111 => 00
        t=3s authorize 1 token=4111111111111 amount=10.00 cur=CNY => 14
        t=4s token_deactivate 3 token=4111111111111 => 14
        t=5s capture 2 token=4111111111111 ref=1 amount=4.00 cur=CNY => 00   # replay
        expect account 1 balance=96.00 held=6.00
        expect token 4111111111111 deactivated
        ",
    );
}

#[test]
fn dup_repeat_after_account_close_still_replays_for_account_kinds() {
    check(
        "
        # DOMAIN Duplicates: account admin and credit keep their records across a close.
        account 1 CNY 100.00 active
        token 4111111111111 1 active 2912
        t=0  credit 1 acct=1 amount=1.00 cur=CNY => 00
        t=1s account_close 2 acct=1 => 00
        t=2s credit 1 acct=1 amount=1.00 cur=CNY => 00     # replay of the approval, no money
        t=3s credit 3 acct=1 amount=1.00 cur=CNY => 78
        t=4s account_close 2 acct=1 => 00                  # replay
        t=5s account_close 4 acct=1 => 12
        expect account 1 balance=101.00 status=closed
        ",
    );
}

// ---- Expiry ---------------------------------------------------------------------------------

#[test]
fn expiry_at_exactly_expires_at() {
    check(
        "
        # DOMAIN Time: before a request, open holds with expires_at <= ts expire.
        account 1 CNY 100.00 active
        token 4111111111111 1 active 2912
        t=0       authorize 1 token=4111111111111 amount=10.00 cur=CNY => 00
        t=0       authorize 2 token=4111111111111 amount=20.00 cur=CNY => 00
        t=7d-1ns  void 3 token=4111111111111 ref=1 amount=1.00 => 00          # still open
        expect account 1 held=29.00
        t=7d      void 4 token=4111111111111 ref=2 amount=1.00 => 22          # expires_at == ts
        expect account 1 balance=100.00 held=0.00 available=100.00
        expect hold 1 1 status=expired voided=1.00 expires=7d
        expect hold 1 2 status=expired voided=0.00 expires=7d
        ",
    );
}

#[test]
fn expiry_applies_to_the_final_state() {
    check(
        "
        # DOMAIN Time / Settled: the final state is as of the last ts_ns, and a hold expiring
        # exactly then is expired.
        account 1 CNY 100.00 active
        account 2 CNY 100.00 active
        token 4111111111111 1 active 2912
        t=0  authorize 1 token=4111111111111 amount=10.00 cur=CNY => 00
        t=1d authorize 2 token=4111111111111 amount=20.00 cur=CNY => 00
        t=7d credit 3 acct=2 amount=1.00 cur=CNY => 00     # another account's request
        expect account 1 held=20.00 available=80.00
        expect hold 1 1 status=expired
        expect hold 1 2 status=open expires=8d
        expect at=8d-1ns account 1 held=20.00
        expect at=8d account 1 held=0.00
        expect at=8d hold 1 2 status=expired
        ",
    );
}

#[test]
fn expiry_returns_the_remainder_to_available() {
    check(
        "
        # DOMAIN Time: the expired hold's remaining amount leaves held.
        account 1 CNY 50.00 active
        token 4111111111111 1 active 2912
        t=0      authorize 1 token=4111111111111 amount=50.00 cur=CNY => 00
        t=1d     capture 2 token=4111111111111 ref=1 amount=20.00 cur=CNY => 00
        t=6d     authorize 3 token=4111111111111 amount=1.00 cur=CNY => 51
        t=7d     authorize 4 token=4111111111111 amount=30.00 cur=CNY => 00
        expect account 1 balance=30.00 held=30.00 available=0.00
        expect hold 1 1 captured=20.00 status=expired
        ",
    );
}

// ---- Retention ------------------------------------------------------------------------------

#[test]
fn retention_closed_hold_referable_until_closing_ts_plus_retention() {
    check(
        "
        # DOMAIN Time: a closed hold stays referable while ts < ended + retention, ended being
        # the ts of the request that closed it.
        account 1 CNY 100.00 active
        token 4111111111111 1 active 2912
        t=0            authorize 1 token=4111111111111 amount=10.00 cur=CNY => 00
        t=1h           capture 2 token=4111111111111 ref=1 amount=10.00 cur=CNY => 00
        t=45d+1h-1ns   refund 3 token=4111111111111 ref=1 amount=1.00 cur=CNY => 00
        expect hold 1 1 captured=10.00 refunded=1.00 status=closed
        t=45d+1h       refund 4 token=4111111111111 ref=1 amount=1.00 cur=CNY => 25
        expect account 1 balance=91.00 held=0.00
        expect no-hold 1 1
        ",
    );
}

#[test]
fn retention_expired_hold_referable_until_expires_at_plus_retention() {
    check(
        "
        # DOMAIN Time: an expired hold ended at its expires_at.
        account 1 CNY 100.00 active
        token 4111111111111 1 active 2912
        t=0        authorize 1 token=4111111111111 amount=10.00 cur=CNY => 00
        t=52d-1ns  capture 2 token=4111111111111 ref=1 amount=4.00 cur=CNY => 00
        expect hold 1 1 captured=4.00 status=expired
        t=52d      capture 3 token=4111111111111 ref=1 amount=4.00 cur=CNY => 25
        expect account 1 balance=96.00 held=0.00
        expect no-hold 1 1
        ",
    );
}

#[test]
fn retention_is_configurable_and_independent_of_the_window() {
    check(
        "
        # DOMAIN Time: retention (configurable) decides referability; a ref whose record is an
        # approved authorize but whose hold is gone answers 25, not 12.
        config retention=1h
        account 1 CNY 100.00 active
        token 4111111111111 1 active 2912
        t=0       authorize 1 token=4111111111111 amount=10.00 cur=CNY => 00
        t=1s      void 2 token=4111111111111 ref=1 => 00
        t=1h+1s   capture 3 token=4111111111111 ref=1 amount=1.00 cur=CNY => 25
        t=1h+2s   authorize 1 token=4111111111111 amount=10.00 cur=CNY => 00   # replay, no hold
        t=1h+3s   authorize 1 token=4111111111111 amount=20.00 cur=CNY => 94
        expect account 1 held=0.00
        expect no-hold 1 1
        t=24h     authorize 1 token=4111111111111 amount=20.00 cur=CNY => 00   # new hold
        expect hold 1 1 authorized=20.00 status=open
        ",
    );
}

// ---- authorize ------------------------------------------------------------------------------

#[test]
fn authorize_approval_opens_a_hold() {
    check(
        "
        # DOMAIN authorize 00: held += amount; new open hold, expires_at = ts + ttl.
        account 1 CNY 100.00 active per_txn=50.00 daily=80.00 count=3
        token 4111111111111 1 active 2912
        t=1h authorize 10 token=4111111111111 amount=10.00 cur=CNY mcc=5411 => 00
        expect account 1 balance=100.00 held=10.00 available=90.00 status=active
        expect hold 1 10 authorized=10.00 captured=0 voided=0 refunded=0 status=open expires=7d+1h
        ",
    );
}

#[test]
fn authorize_94_when_request_id_names_a_referable_hold() {
    check(
        "
        # DOMAIN authorize 94 (first check): its request_id names a still-referable hold; that 94
        # makes a record of its own.
        account 1 CNY 100.00 active
        token 4111111111111 1 active 2912
        t=0       authorize 1 token=4111111111111 amount=10.00 cur=CNY => 00
        t=1d      authorize 1 token=4111111111111 amount=10.00 cur=CNY => 94   # window over, hold open
        t=1d+1s   authorize 1 token=4111111111111 amount=10.00 cur=CNY => 94   # replay of the 94
        t=1d+2s   authorize 1 token=4111111111111 amount=0 cur=CNY => 94       # changed field
        t=3d      authorize 1 token=4111111111111 amount=0 cur=CNY => 94       # 94 before 13
        expect account 1 held=10.00
        expect hold 1 1 authorized=10.00 expires=7d
        t=51d     authorize 1 token=4111111111111 amount=10.00 cur=CNY => 94   # expired, referable
        t=52d     authorize 1 token=4111111111111 amount=25.00 cur=CNY => 00   # retention over
        expect account 1 held=25.00
        expect hold 1 1 authorized=25.00 status=open expires=59d
        ",
    );
}

#[test]
fn authorize_13_for_every_bad_amount_or_currency() {
    check(
        "
        # DOMAIN authorize 13: amount missing or not positive, too many decimals, over
        # 1,000,000,000 units, or currency not the account's.
        account 1 CNY 2000000000.00 active
        token 4111111111111 1 active 2912
        t=0 authorize 1 token=4111111111111 cur=CNY => 13
        t=0 authorize 2 token=4111111111111 amount=0 cur=CNY => 13
        t=0 authorize 3 token=4111111111111 amount=0.00 cur=CNY => 13
        t=0 authorize 4 token=4111111111111 amount=-1.00 cur=CNY => 13
        t=0 authorize 5 token=4111111111111 amount=1.001 cur=CNY => 13
        t=0 authorize 6 token=4111111111111 amount=1000000000.01 cur=CNY => 13
        t=0 authorize 7 token=4111111111111 amount=1000000001 cur=CNY => 13
        t=0 authorize 8 token=4111111111111 amount=1.00 cur=HKD => 13
        t=0 authorize 9 token=4111111111111 amount=1.00 => 13
        t=0 authorize 10 token=4111111111111 amount=1000000000 cur=CNY => 00    # the maximum
        t=0 authorize 11 token=4111111111111 amount=0.010 cur=CNY => 00         # trailing zero
        expect account 1 held=1000000000.01
        ",
    );
}

#[test]
fn authorize_13_comes_before_token_status() {
    check(
        "
        # DOMAIN authorize order: 13 before 62 (token suspended).
        account 1 CNY 100.00 active
        token 4111111111111 1 suspended 2912
        t=0  authorize 1 token=4111111111111 amount=0 cur=CNY => 13
        t=1s authorize 2 token=4111111111111 amount=1.00 cur=USD => 13
        t=2s authorize 3 token=4111111111111 amount=1.00 cur=CNY => 62
        ",
    );
}

#[test]
fn authorize_62_token_suspended_comes_before_54_expired() {
    check(
        "
        # DOMAIN authorize order: 62 token suspended before 54 token expired before 78 closed.
        account 1 CNY 100.00 closed
        token 4111111111111 1 suspended 2412
        token 4111111111112 1 active 2412
        token 4111111111113 1 active 2912
        t=0  authorize 1 token=4111111111111 amount=1.00 cur=CNY => 62
        t=1s authorize 2 token=4111111111112 amount=1.00 cur=CNY => 54
        t=2s authorize 3 token=4111111111113 amount=1.00 cur=CNY => 78
        ",
    );
}

#[test]
fn authorize_54_from_midnight_china_after_the_expiry_month() {
    check(
        "
        # DOMAIN Data: a token is valid through the last day of its expiry month, China time.
        # 2501 runs through 2025-01-31 China = until 2025-01-31 16:00 UTC = t=30d+16h.
        account 1 CNY 100.00 active
        token 4111111111111 1 active 2501
        t=30d+16h-1ns authorize 1 token=4111111111111 amount=1.00 cur=CNY => 00
        t=30d+16h     authorize 2 token=4111111111111 amount=1.00 cur=CNY => 54
        t=30d+16h     capture 3 token=4111111111111 ref=1 amount=1.00 cur=CNY => 00  # capture ignores it
        expect account 1 balance=99.00 held=0.00
        ",
    );
}

#[test]
fn authorize_78_closed_comes_before_limits() {
    check(
        "
        # DOMAIN authorize order: 78 account closed before 61 (per_txn) and 51.
        account 1 CNY 1.00 closed per_txn=5.00
        token 4111111111111 1 active 2912
        t=0 authorize 1 token=4111111111111 amount=10.00 cur=CNY => 78
        ",
    );
}

#[test]
fn authorize_62_frozen_comes_before_limits() {
    check(
        "
        # DOMAIN authorize order: 62 account frozen before 61, 65 and 51; unfreezing lifts it.
        account 1 CNY 100.00 frozen per_txn=5.00 count=0
        token 4111111111111 1 active 2912
        t=0  authorize 1 token=4111111111111 amount=10.00 cur=CNY => 62
        t=1s authorize 2 token=4111111111111 amount=1.00 cur=CNY => 62
        t=2s account_unfreeze 3 acct=1 => 00
        t=3s authorize 4 token=4111111111111 amount=10.00 cur=CNY => 61
        t=4s authorize 5 token=4111111111111 amount=1.00 cur=CNY => 65
        ",
    );
}

#[test]
fn authorize_61_per_txn_is_strict() {
    check(
        "
        # DOMAIN authorize 61: amount over per_txn_limit; equal passes (Settled: limits strict).
        account 1 CNY 100.00 active per_txn=50.00
        token 4111111111111 1 active 2912
        t=0  authorize 1 token=4111111111111 amount=50.00 cur=CNY => 00
        t=1s authorize 2 token=4111111111111 amount=50.01 cur=CNY => 61
        expect account 1 held=50.00
        ",
    );
}

#[test]
fn authorize_61_per_txn_comes_before_65_and_51() {
    check(
        "
        # DOMAIN authorize order: 61 per_txn before 65 count and 51 funds.
        account 1 CNY 10.00 active per_txn=50.00 count=1
        token 4111111111111 1 active 2912
        t=0  authorize 1 token=4111111111111 amount=5.00 cur=CNY => 00
        t=1s authorize 2 token=4111111111111 amount=60.00 cur=CNY => 61
        t=2s authorize 3 token=4111111111111 amount=6.00 cur=CNY => 65
        ",
    );
}

#[test]
fn authorize_61_daily_is_strict() {
    check(
        "
        # DOMAIN authorize 61: day amount + amount over daily_limit; equal passes.
        account 1 CNY 100.00 active daily=80.00
        token 4111111111111 1 active 2912
        t=0  authorize 1 token=4111111111111 amount=50.00 cur=CNY => 00
        t=1s authorize 2 token=4111111111111 amount=30.01 cur=CNY => 61
        t=2s authorize 3 token=4111111111111 amount=30.00 cur=CNY => 00
        t=3s authorize 4 token=4111111111111 amount=0.01 cur=CNY => 61
        expect account 1 held=80.00
        ",
    );
}

#[test]
fn authorize_61_daily_comes_before_65_count() {
    check(
        "
        # DOMAIN authorize order: 61 daily before 65 count.
        account 1 CNY 100.00 active daily=80.00 count=2
        token 4111111111111 1 active 2912
        t=0  authorize 1 token=4111111111111 amount=40.00 cur=CNY => 00
        t=1s authorize 2 token=4111111111111 amount=40.00 cur=CNY => 00
        t=2s authorize 3 token=4111111111111 amount=1.00 cur=CNY => 61
        ",
    );
}

#[test]
fn authorize_65_count_is_strict_and_comes_before_51() {
    check(
        "
        # DOMAIN authorize 65: day count + 1 over daily_count_limit; before 51.
        account 1 CNY 100.00 active count=2
        token 4111111111111 1 active 2912
        t=0  authorize 1 token=4111111111111 amount=30.00 cur=CNY => 00
        t=1s authorize 2 token=4111111111111 amount=30.00 cur=CNY => 00   # count 2 == limit
        t=2s authorize 3 token=4111111111111 amount=1.00 cur=CNY => 65
        t=3s authorize 4 token=4111111111111 amount=99.00 cur=CNY => 65   # also over available
        expect account 1 held=60.00
        ",
    );
}

#[test]
fn authorize_51_over_available_is_strict() {
    check(
        "
        # DOMAIN authorize 51: amount over available (balance - held); equal passes.
        account 1 CNY 100.00 active
        token 4111111111111 1 active 2912
        t=0  authorize 1 token=4111111111111 amount=60.00 cur=CNY => 00
        t=1s authorize 2 token=4111111111111 amount=40.01 cur=CNY => 51
        t=2s authorize 3 token=4111111111111 amount=40.00 cur=CNY => 00
        t=3s authorize 4 token=4111111111111 amount=0.01 cur=CNY => 51
        expect account 1 balance=100.00 held=100.00 available=0.00
        ",
    );
}

#[test]
fn authorize_51_on_a_negative_balance() {
    check(
        "
        # DOMAIN Data: a balance may be negative (loaded so); available is then below zero.
        account 1 CNY -5.00 active
        token 4111111111111 1 active 2912
        t=0  authorize 1 token=4111111111111 amount=0.01 cur=CNY => 51
        t=1s credit 2 acct=1 amount=5.01 cur=CNY => 00
        t=2s authorize 3 token=4111111111111 amount=0.01 cur=CNY => 00
        expect account 1 balance=0.01 held=0.01 available=0.00
        ",
    );
}

#[test]
fn authorize_declines_do_not_count_in_day_counters() {
    check(
        "
        # DOMAIN: day counters count approved amounts and approved authorize requests only.
        account 1 CNY 30.00 active daily=50.00 count=2
        token 4111111111111 1 active 2912
        t=0  authorize 1 token=4111111111111 amount=60.00 cur=CNY => 61
        t=1s authorize 2 token=4111111111111 amount=40.00 cur=CNY => 51
        t=2s authorize 3 token=4111111111111 amount=20.00 cur=CNY => 00
        t=3s authorize 4 token=4111111111111 amount=10.00 cur=CNY => 00
        t=4s authorize 5 token=4111111111111 amount=1.00 cur=CNY => 65
        expect account 1 held=30.00
        ",
    );
}

#[test]
fn authorize_daily_amount_turns_at_china_midnight() {
    check(
        "
        # DOMAIN Time: a day is a China-time calendar day (UTC+8): it turns at 16:00 UTC.
        account 1 CNY 1000.00 active daily=50.00
        token 4111111111111 1 active 2912
        t=15h+59m authorize 1 token=4111111111111 amount=50.00 cur=CNY => 00   # 01-01 23:59 China
        t=16h-1ns authorize 2 token=4111111111111 amount=0.01 cur=CNY => 61
        t=16h     authorize 3 token=4111111111111 amount=50.00 cur=CNY => 00   # 01-02 00:00 China
        t=24h     authorize 4 token=4111111111111 amount=0.01 cur=CNY => 61    # UTC midnight: same day
        t=40h     authorize 5 token=4111111111111 amount=50.00 cur=CNY => 00
        expect account 1 held=150.00
        ",
    );
}

#[test]
fn authorize_daily_count_turns_at_china_midnight() {
    check(
        "
        # DOMAIN Time: the day count is per China-time day.
        account 1 CNY 1000.00 active count=1
        token 4111111111111 1 active 2912
        t=0       authorize 1 token=4111111111111 amount=1.00 cur=CNY => 00
        t=16h-1ns authorize 2 token=4111111111111 amount=1.00 cur=CNY => 65
        t=16h     authorize 3 token=4111111111111 amount=1.00 cur=CNY => 00
        t=24h     authorize 4 token=4111111111111 amount=1.00 cur=CNY => 65
        t=40h     authorize 5 token=4111111111111 amount=1.00 cur=CNY => 00
        ",
    );
}

#[test]
fn authorize_zero_limits_refuse_everything() {
    check(
        "
        # DOMAIN Data: limits are amounts / counts; zero is a valid limit that nothing passes.
        account 1 CNY 100.00 active per_txn=0
        account 2 CNY 100.00 active count=0
        account 3 CNY 100.00 active daily=0.00
        token 4111111111111 1 active 2912
        token 4222222222222 2 active 2912
        token 4333333333333 3 active 2912
        t=0 authorize 1 token=4111111111111 amount=0.01 cur=CNY => 61
        t=0 authorize 1 token=4222222222222 amount=0.01 cur=CNY => 65
        t=0 authorize 1 token=4333333333333 amount=0.01 cur=CNY => 61
        ",
    );
}

// ---- increment ------------------------------------------------------------------------------

#[test]
fn increment_grows_the_hold_and_restarts_its_ttl() {
    check(
        "
        # DOMAIN increment 00: authorized += amount, held += amount, expires_at = ts + ttl.
        account 1 CNY 100.00 active
        token 4111111111111 1 active 2912
        t=0       authorize 1 token=4111111111111 amount=10.00 cur=CNY => 00
        t=6d      increment 2 token=4111111111111 ref=1 amount=5.00 cur=CNY => 00
        expect account 1 held=15.00 available=85.00
        expect hold 1 1 authorized=15.00 status=open expires=13d
        t=7d      void 3 token=4111111111111 ref=1 amount=1.00 => 00    # would have expired at 7d
        t=13d-1ns capture 4 token=4111111111111 ref=1 amount=14.00 cur=CNY => 00
        expect account 1 balance=86.00 held=0.00
        expect hold 1 1 authorized=15.00 captured=14.00 voided=1.00 status=closed
        ",
    );
}

#[test]
fn increment_extended_hold_expires_at_the_new_time() {
    check(
        "
        # DOMAIN increment: the new expires_at = increment ts + ttl, with the usual edge.
        account 1 CNY 100.00 active
        token 4111111111111 1 active 2912
        t=0       authorize 1 token=4111111111111 amount=10.00 cur=CNY => 00
        t=1d      increment 2 token=4111111111111 ref=1 amount=5.00 cur=CNY => 00
        t=8d-1ns  increment 3 token=4111111111111 ref=1 amount=1.00 cur=CNY => 00  # open until 8d
        t=15d-2ns void 4 token=4111111111111 ref=1 amount=1.00 => 00
        expect account 1 held=15.00
        t=15d-1ns void 5 token=4111111111111 ref=1 amount=1.00 => 22                # expired now
        expect account 1 held=0.00
        expect hold 1 1 authorized=16.00 voided=1.00 status=expired expires=15d-1ns
        ",
    );
}

#[test]
fn increment_13_comes_before_12_25() {
    check(
        "
        # DOMAIN increment order: 13 (amount or currency) before the 12/25 ref check.
        account 1 CNY 100.00 active
        token 4111111111111 1 active 2912
        t=0  increment 1 token=4111111111111 ref=99 amount=0 cur=CNY => 13
        t=1s increment 2 token=4111111111111 ref=99 amount=1.00 cur=HKD => 13
        t=2s increment 3 token=4111111111111 ref=99 amount=1.00 => 13         # currency missing
        t=3s increment 4 token=4111111111111 ref=99 amount=1.001 cur=CNY => 13
        t=4s increment 5 token=4111111111111 ref=99 amount=1.00 cur=CNY => 25
        t=5s increment 6 token=4111111111111 amount=1.00 cur=CNY => 25        # empty ref
        ",
    );
}

#[test]
fn ref_names_a_hold_of_the_same_account_only() {
    check(
        "
        # DOMAIN Requests: ref is the request_id of the authorization, on the same account.
        account 1 CNY 100.00 active
        account 2 CNY 100.00 active
        token 4111111111111 1 active 2912
        token 4222222222222 2 active 2912
        t=0  authorize 1 token=4111111111111 amount=10.00 cur=CNY => 00
        t=1s increment 2 token=4222222222222 ref=1 amount=1.00 cur=CNY => 25
        t=2s capture 3 token=4222222222222 ref=1 amount=1.00 cur=CNY => 25
        t=3s void 4 token=4222222222222 ref=1 => 25
        t=4s refund 5 token=4222222222222 ref=1 amount=1.00 cur=CNY => 25
        expect account 1 held=10.00 balance=100.00
        expect account 2 held=0.00 balance=100.00
        ",
    );
}

#[test]
fn ref_to_a_declined_authorize_answers_12_while_its_record_lasts() {
    check(
        "
        # DOMAIN 12/25: no referable hold under ref: 12 when ref's duplicate record (inside its
        # window) is a declined authorize, else 25. Same rule for increment, capture, void, refund.
        account 1 CNY 5.00 active
        token 4111111111111 1 active 2912
        t=0       authorize 1 token=4111111111111 amount=10.00 cur=CNY => 51
        t=1h      increment 2 token=4111111111111 ref=1 amount=1.00 cur=CNY => 12
        t=1h      capture 3 token=4111111111111 ref=1 amount=1.00 cur=CNY => 12
        t=1h      void 4 token=4111111111111 ref=1 => 12
        t=1h      refund 5 token=4111111111111 ref=1 amount=1.00 cur=CNY => 12
        t=24h-1ns increment 6 token=4111111111111 ref=1 amount=1.00 cur=CNY => 12
        t=24h     increment 7 token=4111111111111 ref=1 amount=1.00 cur=CNY => 25
        t=24h     capture 8 token=4111111111111 ref=1 amount=1.00 cur=CNY => 25
        ",
    );
}

#[test]
fn ref_to_anything_but_a_declined_authorize_answers_25() {
    check(
        "
        # DOMAIN 12/25: a record of another kind gives 25; a 14 made no record, so 25.
        account 1 CNY 100.00 active
        token 4111111111111 1 active 2912
        token 4111111111112 1 suspended 2912
        t=0  credit 1 acct=1 amount=0 cur=CNY => 13
        t=1s capture 2 token=4111111111111 ref=1 amount=1.00 cur=CNY => 25   # declined credit
        t=2s credit 3 acct=1 amount=1.00 cur=CNY => 00
        t=3s refund 4 token=4111111111111 ref=3 amount=1.00 cur=CNY => 25    # approved credit
        t=4s authorize 5 token=4111111111112 amount=1.00 cur=CNY => 62
        t=5s void 6 token=4111111111111 ref=5 => 12                         # declined authorize
        t=6s authorize 7 token=4999999999999 amount=1.00 cur=CNY => 14
        t=7s void 8 token=4111111111111 ref=7 => 25                         # 14: no record
        t=8s authorize 9 token=4111111111111 amount=0 cur=CNY => 13
        t=9s increment 10 token=4111111111111 ref=9 amount=1.00 cur=CNY => 12 # 13 counts as declined
        ",
    );
}

#[test]
fn increment_22_when_the_hold_is_closed_or_expired() {
    check(
        "
        # DOMAIN increment 22: hold not open (closed or expired).
        account 1 CNY 100.00 active
        token 4111111111111 1 active 2912
        t=0  authorize 1 token=4111111111111 amount=10.00 cur=CNY => 00
        t=0  authorize 2 token=4111111111111 amount=10.00 cur=CNY => 00
        t=1s capture 3 token=4111111111111 ref=1 amount=4.00 cur=CNY final=1 => 00
        t=2s increment 4 token=4111111111111 ref=1 amount=1.00 cur=CNY => 22
        t=7d increment 5 token=4111111111111 ref=2 amount=1.00 cur=CNY => 22
        expect account 1 balance=96.00 held=0.00
        expect hold 1 2 authorized=10.00 status=expired
        ",
    );
}

#[test]
fn increment_22_comes_before_token_status() {
    check(
        "
        # DOMAIN increment order: 22 before 62 (token suspended).
        account 1 CNY 100.00 active
        token 4111111111111 1 active 2912
        token 4111111111112 1 suspended 2912
        t=0  authorize 1 token=4111111111111 amount=10.00 cur=CNY => 00
        t=1s void 2 token=4111111111111 ref=1 => 00
        t=2s increment 3 token=4111111111112 ref=1 amount=1.00 cur=CNY => 22
        t=3s authorize 4 token=4111111111111 amount=10.00 cur=CNY => 00
        t=4s increment 5 token=4111111111112 ref=4 amount=1.00 cur=CNY => 62
        expect account 1 held=10.00
        ",
    );
}

#[test]
fn increment_token_and_account_checks_in_order() {
    check(
        "
        # DOMAIN increment order: 62 token suspended · 54 token expired · 62 account frozen.
        account 1 CNY 100.00 active
        token 4111111111111 1 active 2501
        token 4111111111112 1 suspended 2501
        token 4111111111113 1 active 2912
        t=30d         authorize 1 token=4111111111111 amount=10.00 cur=CNY => 00
        t=30d+16h     increment 2 token=4111111111112 ref=1 amount=1.00 cur=CNY => 62  # suspended+expired
        t=30d+16h+1s  account_freeze 3 acct=1 => 00
        t=30d+16h+2s  increment 4 token=4111111111111 ref=1 amount=1.00 cur=CNY => 54  # expired+frozen
        t=30d+16h+3s  increment 5 token=4111111111113 ref=1 amount=1.00 cur=CNY => 62  # frozen
        t=30d+16h+4s  account_unfreeze 6 acct=1 => 00
        t=30d+16h+5s  increment 7 token=4111111111113 ref=1 amount=1.00 cur=CNY => 00
        expect hold 1 1 authorized=11.00 status=open
        ",
    );
}

#[test]
fn increment_on_a_closed_account_answers_14_because_close_deactivates_tokens() {
    check(
        "
        # DOMAIN Admin: account_close deactivates the account's tokens, so an increment there is
        # refused at resolution (14); increment's 78 needs a hold on an account closed at load,
        # which cannot exist.
        account 1 CNY 100.00 active
        token 4111111111111 1 active 2912
        t=0  authorize 1 token=4111111111111 amount=10.00 cur=CNY => 00
        t=1s account_close 2 acct=1 => 00
        t=2s increment 3 token=4111111111111 ref=1 amount=1.00 cur=CNY => 14
        expect account 1 held=10.00 status=closed
        ",
    );
}

#[test]
fn increment_61_per_txn_applies_to_the_new_authorized_amount() {
    check(
        "
        # DOMAIN increment 61: new authorized over per_txn_limit (strict), before 51.
        account 1 CNY 45.00 active per_txn=50.00
        token 4111111111111 1 active 2912
        t=0  authorize 1 token=4111111111111 amount=40.00 cur=CNY => 00
        t=1s increment 2 token=4111111111111 ref=1 amount=10.01 cur=CNY => 61   # also over available
        t=2s increment 3 token=4111111111111 ref=1 amount=5.00 cur=CNY => 00    # 45 <= 50, 5 == available
        t=3s increment 4 token=4111111111111 ref=1 amount=5.00 cur=CNY => 51    # 50 == limit, no funds
        t=4s credit 5 acct=1 amount=100.00 cur=CNY => 00
        t=5s increment 6 token=4111111111111 ref=1 amount=5.00 cur=CNY => 00    # 50 == limit
        t=6s increment 7 token=4111111111111 ref=1 amount=0.01 cur=CNY => 61
        expect hold 1 1 authorized=50.00
        ",
    );
}

#[test]
fn increment_61_daily_is_strict_and_comes_before_51() {
    check(
        "
        # DOMAIN increment 61: day amount + amount over daily_limit; before 51.
        account 1 CNY 42.00 active daily=45.00
        token 4111111111111 1 active 2912
        t=0  authorize 1 token=4111111111111 amount=40.00 cur=CNY => 00
        t=1s increment 2 token=4111111111111 ref=1 amount=6.00 cur=CNY => 61    # 46 > 45 (and > available)
        t=2s increment 3 token=4111111111111 ref=1 amount=5.00 cur=CNY => 51    # 45 == limit, 5 > 2
        t=3s increment 4 token=4111111111111 ref=1 amount=2.00 cur=CNY => 00    # 2 == available
        t=4s credit 5 acct=1 amount=100.00 cur=CNY => 00
        t=5s increment 6 token=4111111111111 ref=1 amount=3.01 cur=CNY => 61    # 45.01 > 45
        t=6s increment 7 token=4111111111111 ref=1 amount=3.00 cur=CNY => 00
        expect account 1 held=45.00 balance=142.00
        ",
    );
}

#[test]
fn increment_does_not_change_the_day_count() {
    check(
        "
        # DOMAIN increment 00: the day count does not change.
        account 1 CNY 100.00 active count=2
        token 4111111111111 1 active 2912
        t=0  authorize 1 token=4111111111111 amount=10.00 cur=CNY => 00
        t=1s increment 2 token=4111111111111 ref=1 amount=5.00 cur=CNY => 00
        t=2s increment 3 token=4111111111111 ref=1 amount=5.00 cur=CNY => 00
        t=3s authorize 4 token=4111111111111 amount=10.00 cur=CNY => 00
        t=4s authorize 5 token=4111111111111 amount=10.00 cur=CNY => 65
        expect account 1 held=30.00
        ",
    );
}

#[test]
fn increment_counts_against_the_day_it_happens_on() {
    check(
        "
        # DOMAIN Settled: an increment counts against the day it happens on.
        account 1 CNY 1000.00 active daily=50.00
        token 4111111111111 1 active 2912
        t=15h    authorize 1 token=4111111111111 amount=40.00 cur=CNY => 00    # China day 1
        t=15h+1s increment 2 token=4111111111111 ref=1 amount=10.00 cur=CNY => 00
        t=15h+2s increment 3 token=4111111111111 ref=1 amount=0.01 cur=CNY => 61
        t=16h    increment 4 token=4111111111111 ref=1 amount=30.00 cur=CNY => 00 # China day 2: 30
        t=16h+1s authorize 5 token=4111111111111 amount=20.01 cur=CNY => 61
        t=16h+2s authorize 6 token=4111111111111 amount=20.00 cur=CNY => 00
        expect account 1 held=100.00
        expect hold 1 1 authorized=80.00
        ",
    );
}

#[test]
fn increment_51_over_available_is_strict() {
    check(
        "
        # DOMAIN increment 51: amount over available; equal passes.
        account 1 CNY 50.00 active
        token 4111111111111 1 active 2912
        t=0  authorize 1 token=4111111111111 amount=40.00 cur=CNY => 00
        t=1s increment 2 token=4111111111111 ref=1 amount=10.01 cur=CNY => 51
        t=2s increment 3 token=4111111111111 ref=1 amount=10.00 cur=CNY => 00
        expect account 1 held=50.00 available=0.00
        expect hold 1 1 authorized=50.00
        ",
    );
}

// ---- capture --------------------------------------------------------------------------------

#[test]
fn capture_partial_then_closes_when_nothing_remains() {
    check(
        "
        # DOMAIN capture 00: balance -= amount, captured += amount, held -= amount; the hold
        # closes when nothing remains.
        account 1 CNY 100.00 active
        token 4111111111111 1 active 2912
        t=0  authorize 1 token=4111111111111 amount=30.00 cur=CNY => 00
        t=1h capture 2 token=4111111111111 ref=1 amount=10.00 cur=CNY => 00
        expect account 1 balance=90.00 held=20.00 available=70.00
        expect hold 1 1 captured=10.00 status=open
        t=2h capture 3 token=4111111111111 ref=1 amount=20.00 cur=CNY => 00
        expect account 1 balance=70.00 held=0.00
        expect hold 1 1 captured=30.00 status=closed
        t=3h capture 4 token=4111111111111 ref=1 amount=1.00 cur=CNY => 22
        ",
    );
}

#[test]
fn capture_final_releases_the_remainder_but_not_the_day_amount() {
    check(
        "
        # DOMAIN capture final / Settled: the remainder leaves held and the hold closes; the
        # released remainder does not change the day amount.
        account 1 CNY 100.00 active daily=80.00
        token 4111111111111 1 active 2912
        t=0  authorize 1 token=4111111111111 amount=50.00 cur=CNY => 00
        t=1h capture 2 token=4111111111111 ref=1 amount=20.00 cur=CNY final=1 => 00
        expect account 1 balance=80.00 held=0.00 available=80.00
        expect hold 1 1 authorized=50.00 captured=20.00 voided=0.00 status=closed
        t=2h authorize 3 token=4111111111111 amount=30.01 cur=CNY => 61   # day amount still 50
        t=2h authorize 4 token=4111111111111 amount=30.00 cur=CNY => 00
        ",
    );
}

#[test]
fn capture_13_comes_before_12_25() {
    check(
        "
        # DOMAIN capture order: 13 (amount or currency) · 12/25.
        account 1 CNY 100.00 active
        token 4111111111111 1 active 2912
        t=0  authorize 1 token=4111111111111 amount=10.00 cur=CNY => 00
        t=1s capture 2 token=4111111111111 ref=99 amount=0 cur=CNY => 13
        t=1s capture 3 token=4111111111111 ref=99 amount=1.00 => 13        # currency missing
        t=1s capture 4 token=4111111111111 ref=1 amount=1.00 cur=HKD => 13
        t=1s capture 5 token=4111111111111 ref=1 amount=1.001 cur=CNY => 13
        t=1s capture 6 token=4111111111111 ref=1 cur=CNY => 13             # amount missing
        t=1s capture 7 token=4111111111111 ref=99 amount=1.00 cur=CNY => 25
        t=1s capture 8 token=4111111111111 amount=1.00 cur=CNY => 25       # empty ref
        expect account 1 balance=100.00 held=10.00
        ",
    );
}

#[test]
fn capture_22_closed_comes_before_13_over_remaining() {
    check(
        "
        # DOMAIN capture order: 22 hold closed · 13 amount over remaining.
        account 1 CNY 100.00 active
        token 4111111111111 1 active 2912
        t=0  authorize 1 token=4111111111111 amount=10.00 cur=CNY => 00
        t=1s void 2 token=4111111111111 ref=1 => 00
        t=2s capture 3 token=4111111111111 ref=1 amount=1000.00 cur=CNY => 22
        t=3s capture 4 token=4111111111111 ref=1 amount=1.00 cur=CNY => 22
        expect account 1 balance=100.00 held=0.00
        ",
    );
}

#[test]
fn capture_13_over_authorized_minus_captured_minus_voided() {
    check(
        "
        # DOMAIN capture 13: amount over authorized - captured - voided (equal passes).
        account 1 CNY 100.00 active
        token 4111111111111 1 active 2912
        t=0  authorize 1 token=4111111111111 amount=10.00 cur=CNY => 00
        t=1s increment 2 token=4111111111111 ref=1 amount=5.00 cur=CNY => 00
        t=2s void 3 token=4111111111111 ref=1 amount=3.00 => 00
        t=3s capture 4 token=4111111111111 ref=1 amount=2.00 cur=CNY => 00
        t=4s capture 5 token=4111111111111 ref=1 amount=10.01 cur=CNY => 13
        t=5s capture 6 token=4111111111111 ref=1 amount=10.00 cur=CNY => 00
        expect account 1 balance=88.00 held=0.00
        expect hold 1 1 authorized=15.00 captured=12.00 voided=3.00 status=closed
        ",
    );
}

#[test]
fn capture_of_an_expired_hold_posts_late_and_caps_and_allows_refunds() {
    check(
        "
        # DOMAIN capture / Settled: an expired hold still captures: balance only, it stays
        # expired, captured grows (caps later captures, allows refunds).
        account 1 CNY 100.00 active
        token 4111111111111 1 active 2912
        t=0       authorize 1 token=4111111111111 amount=30.00 cur=CNY => 00
        t=1d      capture 2 token=4111111111111 ref=1 amount=10.00 cur=CNY => 00
        expect account 1 balance=90.00 held=20.00
        t=8d      capture 3 token=4111111111111 ref=1 amount=15.00 cur=CNY => 00
        expect account 1 balance=75.00 held=0.00 available=75.00
        expect hold 1 1 captured=25.00 status=expired
        t=8d+1s   capture 4 token=4111111111111 ref=1 amount=5.01 cur=CNY => 13
        t=8d+2s   capture 5 token=4111111111111 ref=1 amount=5.00 cur=CNY final=1 => 00
        expect hold 1 1 captured=30.00 status=expired
        t=8d+3s   capture 6 token=4111111111111 ref=1 amount=0.01 cur=CNY => 13
        t=9d      refund 7 token=4111111111111 ref=1 amount=30.00 cur=CNY => 00
        expect account 1 balance=100.00 held=0.00
        expect hold 1 1 captured=30.00 refunded=30.00 status=expired
        ",
    );
}

#[test]
fn capture_late_clearing_can_drive_available_below_zero() {
    check(
        "
        # DOMAIN Invariants: only capture of an expired hold can drive available below zero.
        account 1 CNY 100.00 active
        token 4111111111111 1 active 2912
        t=0     authorize 1 token=4111111111111 amount=80.00 cur=CNY => 00
        t=7d    authorize 2 token=4111111111111 amount=90.00 cur=CNY => 00   # hold 1 expired
        t=7d+1s capture 3 token=4111111111111 ref=1 amount=80.00 cur=CNY => 00
        expect account 1 balance=20.00 held=90.00 available=-70.00
        t=7d+2s authorize 4 token=4111111111111 amount=0.01 cur=CNY => 51
        t=7d+3s capture 5 token=4111111111111 ref=2 amount=90.00 cur=CNY => 00
        expect account 1 balance=-70.00 held=0.00 available=-70.00
        t=7d+4s refund 6 token=4111111111111 ref=1 amount=80.00 cur=CNY => 00
        expect account 1 balance=10.00
        ",
    );
}

#[test]
fn capture_ignores_token_and_account_status() {
    check(
        "
        # DOMAIN capture: token and account status do not block a capture.
        account 1 CNY 100.00 active
        token 4111111111111 1 active 2912
        t=0  authorize 1 token=4111111111111 amount=10.00 cur=CNY => 00
        t=0  authorize 2 token=4111111111111 amount=10.00 cur=CNY => 00
        t=0  authorize 3 token=4111111111111 amount=10.00 cur=CNY => 00
        t=1s token_suspend 4 token=4111111111111 => 00
        t=2s capture 5 token=4111111111111 ref=1 amount=10.00 cur=CNY => 00   # suspended token
        t=3s account_freeze 6 acct=1 => 00
        t=4s capture 7 token=4111111111111 ref=2 amount=10.00 cur=CNY => 00   # frozen account
        t=5s account_close 8 acct=1 => 00
        expect token 4111111111111 deactivated
        t=6s capture 9 token=4111111111111 ref=3 amount=10.00 cur=CNY => 00   # closed, deactivated
        expect account 1 balance=70.00 held=0.00 status=closed
        ",
    );
}

#[test]
fn capture_with_an_expired_token_still_posts() {
    check(
        "
        # DOMAIN capture: token status (expiry included) does not block a capture.
        account 1 CNY 100.00 active
        token 4111111111111 1 active 2412
        t=0 capture 1 token=4111111111111 ref=7 amount=1.00 cur=CNY => 25
        t=0 authorize 2 token=4111111111111 amount=1.00 cur=CNY => 54
        t=0 capture 3 token=4111111111111 ref=2 amount=1.00 cur=CNY => 12
        ",
    );
}

// ---- void -----------------------------------------------------------------------------------

#[test]
fn void_partial_then_closes_when_nothing_remains() {
    check(
        "
        # DOMAIN void 00: held -= amount, voided += amount; closes when nothing remains.
        account 1 CNY 100.00 active
        token 4111111111111 1 active 2912
        t=0  authorize 1 token=4111111111111 amount=30.00 cur=CNY => 00
        t=1h void 2 token=4111111111111 ref=1 amount=10.00 => 00
        expect account 1 balance=100.00 held=20.00
        expect hold 1 1 voided=10.00 status=open
        t=2h void 3 token=4111111111111 ref=1 amount=20.00 cur=CNY => 00
        expect account 1 balance=100.00 held=0.00
        expect hold 1 1 voided=30.00 status=closed
        t=3h void 4 token=4111111111111 ref=1 => 22
        ",
    );
}

#[test]
fn void_without_amount_releases_everything_that_remains() {
    check(
        "
        # DOMAIN void: amount empty = all remaining.
        account 1 CNY 100.00 active
        token 4111111111111 1 active 2912
        t=0  authorize 1 token=4111111111111 amount=30.00 cur=CNY => 00
        t=1s capture 2 token=4111111111111 ref=1 amount=10.00 cur=CNY => 00
        t=2s void 3 token=4111111111111 ref=1 amount=5.00 => 00
        t=3s void 4 token=4111111111111 ref=1 => 00
        expect account 1 balance=90.00 held=0.00
        expect hold 1 1 authorized=30.00 captured=10.00 voided=20.00 status=closed
        ",
    );
}

#[test]
fn void_13_for_bad_amount_or_foreign_currency_before_12_25() {
    check(
        "
        # DOMAIN void 13: amount given and invalid, or currency given and not the account's;
        # before 12/25. Currency may be left empty.
        account 1 CNY 100.00 active
        token 4111111111111 1 active 2912
        t=0  authorize 1 token=4111111111111 amount=10.00 cur=CNY => 00
        t=1s void 2 token=4111111111111 ref=1 amount=0 => 13
        t=1s void 3 token=4111111111111 ref=1 amount=-1 => 13
        t=1s void 4 token=4111111111111 ref=1 amount=1.001 => 13
        t=1s void 5 token=4111111111111 ref=1 cur=HKD => 13
        t=1s void 6 token=4111111111111 ref=1 amount=1.00 cur=USD => 13
        t=1s void 7 token=4111111111111 ref=99 amount=0 => 13
        t=1s void 8 token=4111111111111 ref=99 cur=JPY => 13
        t=1s void 9 token=4111111111111 ref=99 => 25
        t=1s void 10 token=4111111111111 => 25                              # empty ref
        t=1s void 11 token=4111111111111 ref=1 amount=1.00 => 00              # no currency
        t=1s void 12 token=4111111111111 ref=1 cur=CNY => 00                  # currency, all remaining
        expect account 1 held=0.00
        expect hold 1 1 voided=10.00 status=closed
        ",
    );
}

#[test]
fn void_22_when_the_hold_is_not_open() {
    check(
        "
        # DOMAIN void order: 22 hold not open (expired or closed) · 13 amount over remaining.
        account 1 CNY 100.00 active
        token 4111111111111 1 active 2912
        t=0  authorize 1 token=4111111111111 amount=10.00 cur=CNY => 00
        t=0  authorize 2 token=4111111111111 amount=10.00 cur=CNY => 00
        t=1s capture 3 token=4111111111111 ref=1 amount=10.00 cur=CNY => 00
        t=2s void 4 token=4111111111111 ref=1 => 22
        t=3s void 5 token=4111111111111 ref=1 amount=50.00 => 22
        t=7d void 6 token=4111111111111 ref=2 => 22
        t=7d void 7 token=4111111111111 ref=2 amount=50.00 => 22
        expect account 1 balance=90.00 held=0.00
        expect hold 1 2 voided=0.00 status=expired
        ",
    );
}

#[test]
fn void_13_over_what_remains() {
    check(
        "
        # DOMAIN void 13: amount over what remains (equal passes).
        account 1 CNY 100.00 active
        token 4111111111111 1 active 2912
        t=0  authorize 1 token=4111111111111 amount=10.00 cur=CNY => 00
        t=1s capture 2 token=4111111111111 ref=1 amount=4.00 cur=CNY => 00
        t=2s void 3 token=4111111111111 ref=1 amount=6.01 => 13
        t=3s void 4 token=4111111111111 ref=1 amount=6.00 => 00
        expect account 1 balance=96.00 held=0.00
        expect hold 1 1 captured=4.00 voided=6.00 status=closed
        ",
    );
}

#[test]
fn void_on_the_authorization_day_gives_the_day_amount_back() {
    check(
        "
        # DOMAIN void / Settled: same China day as the authorization: day amount -= amount.
        account 1 CNY 1000.00 active daily=50.00
        token 4111111111111 1 active 2912
        t=0  authorize 1 token=4111111111111 amount=40.00 cur=CNY => 00
        t=1h void 2 token=4111111111111 ref=1 amount=30.00 => 00            # day amount 10
        t=2h authorize 3 token=4111111111111 amount=40.01 cur=CNY => 61
        t=2h authorize 4 token=4111111111111 amount=40.00 cur=CNY => 00     # 10 + 40 == 50
        t=3h void 5 token=4111111111111 ref=1 => 00                         # the last 10 back
        t=4h authorize 6 token=4111111111111 amount=10.00 cur=CNY => 00
        expect account 1 held=50.00
        ",
    );
}

#[test]
fn void_on_a_later_day_does_not_give_the_day_amount_back() {
    check(
        "
        # DOMAIN void / Settled: only on the authorization's own China day.
        account 1 CNY 1000.00 active daily=50.00
        token 4111111111111 1 active 2912
        t=15h    authorize 1 token=4111111111111 amount=50.00 cur=CNY => 00   # China day 1
        t=16h    authorize 2 token=4111111111111 amount=40.00 cur=CNY => 00   # China day 2
        t=16h+1s void 3 token=4111111111111 ref=1 amount=50.00 => 00          # day 2 untouched
        t=16h+2s authorize 4 token=4111111111111 amount=10.01 cur=CNY => 61
        t=16h+3s authorize 5 token=4111111111111 amount=10.00 cur=CNY => 00
        expect account 1 held=50.00
        ",
    );
}

#[test]
fn void_compares_with_the_authorization_day_not_the_increment_day() {
    check(
        "
        # DOMAIN Settled: the same-day rule uses the authorization's day, even for the part an
        # increment added on a later day.
        account 1 CNY 1000.00 active daily=50.00
        token 4111111111111 1 active 2912
        t=15h    authorize 1 token=4111111111111 amount=30.00 cur=CNY => 00   # day 1: 30
        t=16h    increment 2 token=4111111111111 ref=1 amount=20.00 cur=CNY => 00  # day 2: 20
        t=16h+1s void 3 token=4111111111111 ref=1 amount=40.00 => 00          # day 2 still 20
        t=16h+2s authorize 4 token=4111111111111 amount=30.01 cur=CNY => 61
        t=16h+3s authorize 5 token=4111111111111 amount=30.00 cur=CNY => 00
        expect account 1 held=40.00
        ",
    );
}

// ---- refund ---------------------------------------------------------------------------------

#[test]
fn refund_gives_back_at_most_what_was_captured() {
    check(
        "
        # DOMAIN refund: 13 amount over captured - refunded · 00: balance += amount, refunded +=.
        account 1 CNY 100.00 active
        token 4111111111111 1 active 2912
        t=0  authorize 1 token=4111111111111 amount=30.00 cur=CNY => 00
        t=1h refund 2 token=4111111111111 ref=1 amount=0.01 cur=CNY => 13   # nothing captured
        t=2h capture 3 token=4111111111111 ref=1 amount=20.00 cur=CNY => 00
        t=3h refund 4 token=4111111111111 ref=1 amount=15.00 cur=CNY => 00
        t=4h refund 5 token=4111111111111 ref=1 amount=5.01 cur=CNY => 13
        t=5h refund 6 token=4111111111111 ref=1 amount=5.00 cur=CNY => 00
        t=6h refund 7 token=4111111111111 ref=1 amount=0.01 cur=CNY => 13
        expect account 1 balance=100.00 held=10.00
        expect hold 1 1 captured=20.00 refunded=20.00 status=open
        ",
    );
}

#[test]
fn refund_13_comes_before_12_25() {
    check(
        "
        # DOMAIN refund order: 13 (amount or currency) · 12/25 · 13 over captured - refunded.
        account 1 CNY 100.00 active
        token 4111111111111 1 active 2912
        t=0  authorize 1 token=4111111111111 amount=10.00 cur=CNY => 00
        t=1s refund 2 token=4111111111111 ref=99 amount=0 cur=CNY => 13
        t=1s refund 3 token=4111111111111 ref=99 amount=1.00 => 13
        t=1s refund 4 token=4111111111111 ref=99 amount=1.00 cur=HKD => 13
        t=1s refund 5 token=4111111111111 ref=99 amount=1.00 cur=CNY => 25
        t=1s refund 6 token=4111111111111 amount=1.00 cur=CNY => 25         # empty ref
        t=1s refund 7 token=4111111111111 ref=1 amount=1.00 cur=CNY => 13   # nothing captured
        ",
    );
}

#[test]
fn refund_works_on_closed_and_expired_holds_and_closed_accounts() {
    check(
        "
        # DOMAIN refund: no hold-state check; status never blocks refund.
        account 1 CNY 100.00 active
        token 4111111111111 1 active 2912
        t=0  authorize 1 token=4111111111111 amount=10.00 cur=CNY => 00
        t=0  authorize 2 token=4111111111111 amount=10.00 cur=CNY => 00
        t=1s capture 3 token=4111111111111 ref=1 amount=10.00 cur=CNY => 00    # closes
        t=2s capture 4 token=4111111111111 ref=2 amount=5.00 cur=CNY => 00
        t=3s account_close 5 acct=1 => 00
        t=7d refund 6 token=4111111111111 ref=1 amount=10.00 cur=CNY => 00
        t=7d refund 7 token=4111111111111 ref=2 amount=5.00 cur=CNY => 00    # expired now
        t=7d credit 8 acct=1 amount=1.00 cur=CNY => 78
        expect account 1 balance=100.00 held=0.00 status=closed
        expect hold 1 1 refunded=10.00 status=closed
        expect hold 1 2 refunded=5.00 status=expired
        ",
    );
}

// ---- credit ---------------------------------------------------------------------------------

#[test]
fn credit_by_account_status() {
    check(
        "
        # DOMAIN credit: 13 · 78 account closed · 00 balance += amount (frozen takes credits).
        account 1 CNY 100.00 active
        account 2 CNY 100.00 frozen
        account 3 CNY 100.00 closed
        t=0 credit 1 acct=1 amount=10.00 cur=CNY => 00
        t=0 credit 2 acct=2 amount=10.00 cur=CNY => 00
        t=0 credit 3 acct=3 amount=10.00 cur=CNY => 78
        t=0 credit 4 acct=3 amount=0 cur=CNY => 13          # 13 before 78
        t=0 credit 5 acct=3 amount=10.00 cur=HKD => 13
        expect account 1 balance=110.00
        expect account 2 balance=110.00 status=frozen
        expect account 3 balance=100.00 status=closed
        ",
    );
}

#[test]
fn credit_13_for_every_bad_amount_or_currency() {
    check(
        "
        # DOMAIN credit 13 (as authorize): missing, not positive, decimals, over 1e9, currency.
        account 1 CNY 100.00 active
        t=0 credit 1 acct=1 cur=CNY => 13
        t=0 credit 2 acct=1 amount=-5.00 cur=CNY => 13
        t=0 credit 3 acct=1 amount=0.001 cur=CNY => 13
        t=0 credit 4 acct=1 amount=1000000000.01 cur=CNY => 13
        t=0 credit 5 acct=1 amount=5.00 => 13
        t=0 credit 6 acct=1 amount=5.00 cur=JPY => 13
        t=0 credit 7 acct=1 amount=1000000000.00 cur=CNY => 00
        t=0 credit 8 acct=1 amount=0.010 cur=CNY => 00
        expect account 1 balance=1000000100.01
        ",
    );
}

// ---- admin ----------------------------------------------------------------------------------

#[test]
fn admin_token_lifecycle() {
    check(
        "
        # DOMAIN Admin: token_suspend of a token not active, token_resume of one not suspended: 12.
        account 1 CNY 100.00 active
        token 4111111111111 1 active 2912
        token 4111111111112 1 active 2912
        t=0  token_resume 1 token=4111111111111 => 12
        t=1s token_suspend 2 token=4111111111111 => 00
        t=2s token_suspend 3 token=4111111111111 => 12
        t=3s authorize 4 token=4111111111111 amount=1.00 cur=CNY => 62
        t=4s token_resume 5 token=4111111111111 => 00
        t=5s authorize 6 token=4111111111111 amount=1.00 cur=CNY => 00
        t=6s token_suspend 7 token=4111111111111 => 00
        t=7s token_deactivate 8 token=4111111111111 => 00        # from suspended
        t=8s token_deactivate 9 token=4111111111112 => 00        # from active
        t=9s token_resume 10 token=4111111111111 => 14           # deactivated is final
        expect token 4111111111111 deactivated
        expect token 4111111111112 deactivated
        expect account 1 status=active held=1.00
        ",
    );
}

#[test]
fn admin_account_lifecycle() {
    check(
        "
        # DOMAIN Admin: account_freeze of an account not active, account_unfreeze of one not
        # frozen, anything on a closed account: 12. Settled: closing a frozen account is allowed.
        account 1 CNY 100.00 active
        token 4111111111111 1 active 2912
        t=0  account_unfreeze 1 acct=1 => 12
        t=1s account_freeze 2 acct=1 => 00
        t=2s account_freeze 3 acct=1 => 12
        t=3s account_unfreeze 4 acct=1 => 00
        t=4s account_freeze 5 acct=1 => 00
        t=5s account_close 6 acct=1 => 00                       # from frozen
        t=6s account_freeze 7 acct=1 => 12
        t=7s account_unfreeze 8 acct=1 => 12
        t=8s account_close 9 acct=1 => 12
        expect account 1 status=closed
        expect token 4111111111111 deactivated
        ",
    );
}

#[test]
fn admin_account_close_deactivates_only_that_accounts_tokens() {
    check(
        "
        # DOMAIN Admin: account_close deactivates the account's tokens (whatever their status).
        account 1 CNY 100.00 active
        account 2 CNY 100.00 active
        token 4111111111111 1 active 2912
        token 4111111111112 1 suspended 2912
        token 4222222222222 2 active 2912
        t=0  account_close 1 acct=1 => 00
        t=1s authorize 2 token=4111111111111 amount=1.00 cur=CNY => 14
        t=2s token_resume 3 token=4111111111112 => 14
        t=3s authorize 4 token=4222222222222 amount=1.00 cur=CNY => 00
        expect token 4111111111111 deactivated
        expect token 4111111111112 deactivated
        expect token 4222222222222 active
        expect account 2 held=1.00 status=active
        ",
    );
}

#[test]
fn admin_closed_at_load_keeps_token_statuses_and_refuses_token_admin() {
    check(
        "
        # DOMAIN Admin / Settled: tokens of an account already closed in accounts.csv keep their
        # status; token admin on a closed account answers 12.
        account 1 CNY 100.00 closed
        token 4111111111111 1 active 2912
        token 4111111111112 1 suspended 2912
        t=0  token_suspend 1 token=4111111111111 => 12
        t=1s token_resume 2 token=4111111111112 => 12
        t=2s token_deactivate 3 token=4111111111111 => 12
        t=3s authorize 4 token=4111111111111 amount=1.00 cur=CNY => 78
        t=4s authorize 5 token=4111111111112 amount=1.00 cur=CNY => 62
        t=5s account_unfreeze 6 acct=1 => 12
        expect token 4111111111111 active
        expect token 4111111111112 suspended
        expect account 1 status=closed
        ",
    );
}

#[test]
fn admin_holds_survive_account_close() {
    check(
        "
        # DOMAIN Admin: account_close leaves the holds as they are: they still capture, void and
        # expire.
        account 1 CNY 100.00 active
        token 4111111111111 1 active 2912
        t=0  authorize 1 token=4111111111111 amount=10.00 cur=CNY => 00
        t=0  authorize 2 token=4111111111111 amount=10.00 cur=CNY => 00
        t=0  authorize 3 token=4111111111111 amount=10.00 cur=CNY => 00
        t=1h account_close 4 acct=1 => 00
        expect account 1 held=30.00 status=closed
        t=2h capture 5 token=4111111111111 ref=1 amount=10.00 cur=CNY => 00
        t=3h void 6 token=4111111111111 ref=2 amount=4.00 => 00
        expect account 1 balance=90.00 held=16.00
        t=7d void 7 token=4111111111111 ref=2 => 22
        expect account 1 balance=90.00 held=0.00 available=90.00
        expect hold 1 3 status=expired
        ",
    );
}

#[test]
fn admin_frozen_account_blocks_authorizations_only() {
    check(
        "
        # DOMAIN: a frozen account refuses authorize/increment (62); completions, credits and
        # token admin go through.
        account 1 CNY 100.00 active
        token 4111111111111 1 active 2912
        t=0  authorize 1 token=4111111111111 amount=30.00 cur=CNY => 00
        t=1s account_freeze 2 acct=1 => 00
        t=2s authorize 3 token=4111111111111 amount=1.00 cur=CNY => 62
        t=3s increment 4 token=4111111111111 ref=1 amount=1.00 cur=CNY => 62
        t=4s capture 5 token=4111111111111 ref=1 amount=10.00 cur=CNY => 00
        t=5s refund 6 token=4111111111111 ref=1 amount=5.00 cur=CNY => 00
        t=6s void 7 token=4111111111111 ref=1 amount=5.00 => 00
        t=7s credit 8 acct=1 amount=1.00 cur=CNY => 00
        t=8s token_suspend 9 token=4111111111111 => 00
        t=9s token_resume 10 token=4111111111111 => 00
        expect account 1 balance=96.00 held=15.00 status=frozen
        ",
    );
}

// ---- declines, currencies, conservation -----------------------------------------------------

#[test]
fn declines_change_nothing_but_the_duplicate_record() {
    check(
        "
        # DOMAIN: declines change nothing except the duplicate record; only 00 moves money.
        account 1 CNY 12.00 active per_txn=15.00
        token 4111111111111 1 active 2912
        t=0  authorize 1 token=4111111111111 amount=10.00 cur=CNY => 00
        t=1s authorize 2 token=4111111111111 amount=16.00 cur=CNY => 61
        t=2s increment 3 token=4111111111111 ref=1 amount=3.00 cur=CNY => 51
        t=3s capture 4 token=4111111111111 ref=1 amount=10.01 cur=CNY => 13
        t=4s void 5 token=4111111111111 ref=1 amount=10.01 => 13
        t=5s refund 6 token=4111111111111 ref=1 amount=0.01 cur=CNY => 13
        t=6s credit 7 acct=1 amount=1.001 cur=CNY => 13
        expect account 1 balance=12.00 held=10.00
        expect hold 1 1 authorized=10.00 captured=0.00 voided=0.00 refunded=0.00 status=open expires=7d
        expect no-hold 1 2
        ",
    );
}

#[test]
fn jpy_has_no_decimals() {
    check(
        "
        # DOMAIN Data: JPY has 0 decimals; trailing zeros do not count as decimals.
        account 1 JPY 10000 active per_txn=5000
        token 4111111111111 1 active 2912
        t=0  authorize 1 token=4111111111111 amount=5000 cur=JPY => 00
        t=1s authorize 2 token=4111111111111 amount=10.5 cur=JPY => 13
        t=2s authorize 3 token=4111111111111 amount=100.0 cur=JPY => 00
        t=3s authorize 4 token=4111111111111 amount=5001 cur=JPY => 61
        t=4s authorize 5 token=4111111111111 amount=100 cur=CNY => 13
        t=5s capture 6 token=4111111111111 ref=1 amount=4000 cur=JPY final=1 => 00
        t=6s void 7 token=4111111111111 ref=3 amount=0.5 => 13
        t=7s void 8 token=4111111111111 ref=3 amount=40 => 00
        t=8s credit 9 acct=1 amount=1 cur=JPY => 00
        t=9s credit 10 acct=1 amount=1000000001 cur=JPY => 13
        t=10s refund 11 token=4111111111111 ref=1 amount=1.00 cur=JPY => 00
        expect account 1 balance=6002 held=60 available=5942
        expect hold 1 1 authorized=5000 captured=4000 refunded=1 status=closed
        ",
    );
}

#[test]
fn hkd_and_usd_have_two_decimals() {
    check(
        "
        # DOMAIN Data: HKD and USD have 2 decimals; each account takes only its own currency.
        account 1 HKD 100.00 active
        account 2 USD 100.00 active
        token 4111111111111 1 active 2912
        token 4222222222222 2 active 2912
        t=0 authorize 1 token=4111111111111 amount=10.50 cur=HKD => 00
        t=0 authorize 2 token=4111111111111 amount=10.50 cur=USD => 13
        t=0 authorize 3 token=4222222222222 amount=0.999 cur=USD => 13
        t=0 authorize 4 token=4222222222222 amount=0.99 cur=USD => 00
        expect account 1 held=10.50
        expect account 2 held=0.99
        ",
    );
}

#[test]
fn decimal_amount_with_trailing_zeros_is_the_same_amount() {
    check(
        "
        # DOMAIN authorize 13: trailing zeros do not count (12.340 is 12.34).
        account 1 CNY 100.00 active
        token 4111111111111 1 active 2912
        t=0  authorize 1 token=4111111111111 amount=12.340 cur=CNY => 00
        t=1s capture 2 token=4111111111111 ref=1 amount=12.3400000 cur=CNY => 00
        t=2s refund 3 token=4111111111111 ref=1 amount=2.340 cur=CNY => 00
        expect account 1 balance=90.00 held=0.00
        expect hold 1 1 authorized=12.34 captured=12.34 refunded=2.34 status=closed
        ",
    );
}

#[test]
fn money_is_conserved_over_a_mixed_day() {
    check(
        "
        # DOMAIN Invariants: balance = initial + credits + refunds - captures (approved only).
        account 1 CNY 500.00 active
        account 2 CNY 0.00 active
        token 4111111111111 1 active 2912
        token 4222222222222 2 active 2912
        t=0   authorize 1 token=4111111111111 amount=120.00 cur=CNY => 00
        t=1m  authorize 2 token=4111111111111 amount=80.00 cur=CNY => 00
        t=2m  credit 3 acct=2 amount=50.00 cur=CNY => 00
        t=3m  authorize 4 token=4222222222222 amount=60.00 cur=CNY => 51
        t=4m  capture 5 token=4111111111111 ref=1 amount=100.00 cur=CNY final=1 => 00
        t=5m  capture 5 token=4111111111111 ref=1 amount=100.00 cur=CNY final=1 => 00  # replay
        t=6m  refund 6 token=4111111111111 ref=1 amount=30.00 cur=CNY => 00
        t=7m  void 7 token=4111111111111 ref=2 amount=30.00 => 00
        t=8m  capture 8 token=4111111111111 ref=2 amount=50.00 cur=CNY => 00
        t=9m  authorize 9 token=4222222222222 amount=50.00 cur=CNY => 00
        t=10m capture 10 token=4222222222222 ref=9 amount=20.00 cur=CNY => 00
        t=11m credit 3 acct=2 amount=50.00 cur=CNY => 00                               # replay
        expect account 1 balance=380.00 held=0.00   # 500 + 30 - 100 - 50
        expect account 2 balance=30.00 held=30.00   # 0 + 50 - 20
        expect at=7d+9m account 2 balance=30.00 held=0.00 available=30.00
        ",
    );
}

#[test]
fn large_ids_and_mcc_are_plain_numbers() {
    check(
        "
        # DOMAIN Files: ids and mcc are u64; a request_id of u64::MAX works like any other.
        account 18446744073709551615 CNY 100.00 active
        token 9999999999999999999 18446744073709551615 active 2912
        t=0  authorize 18446744073709551615 token=9999999999999999999 amount=1.00 cur=CNY mcc=18446744073709551615 => 00
        t=1s capture 0 token=9999999999999999999 ref=18446744073709551615 amount=1.00 cur=CNY => 00
        expect account 18446744073709551615 balance=99.00 held=0.00
        expect hold 18446744073709551615 18446744073709551615 captured=1.00 status=closed
        ",
    );
}

// ---- more orderings and settled details -----------------------------------------------------

#[test]
fn authorize_94_counts_as_a_declined_authorize_for_12() {
    check(
        "
        # DOMAIN Settled: an authorize answered 94 still makes its record and counts as a
        # declined authorize for the 12/25 rule (once the hold itself is no longer referable).
        account 1 CNY 100.00 active
        token 4111111111111 1 active 2912
        t=0       authorize 1 token=4111111111111 amount=10.00 cur=CNY => 00
        t=1h      void 2 token=4111111111111 ref=1 => 00                 # closed: ended = 1h
        t=45d     authorize 1 token=4111111111111 amount=10.00 cur=CNY => 94  # still referable
        t=45d+1h  refund 3 token=4111111111111 ref=1 amount=1.00 cur=CNY => 12  # hold gone, 94 record
        t=46d     refund 4 token=4111111111111 ref=1 amount=1.00 cur=CNY => 25  # record's window over
        expect no-hold 1 1
        ",
    );
}

#[test]
fn authorize_61_daily_comes_before_51() {
    check(
        "
        # DOMAIN authorize order: 61 daily before 51 funds.
        account 1 CNY 50.00 active daily=80.00
        token 4111111111111 1 active 2912
        t=0  authorize 1 token=4111111111111 amount=40.00 cur=CNY => 00
        t=1s authorize 2 token=4111111111111 amount=45.00 cur=CNY => 61
        t=2s authorize 3 token=4111111111111 amount=40.00 cur=CNY => 51
        expect account 1 held=40.00
        ",
    );
}

#[test]
fn increment_62_frozen_comes_before_limits_and_funds() {
    check(
        "
        # DOMAIN increment order: 62 account frozen before 61 per_txn, 61 daily and 51.
        account 1 CNY 20.00 active per_txn=15.00 daily=15.00
        token 4111111111111 1 active 2912
        t=0  authorize 1 token=4111111111111 amount=10.00 cur=CNY => 00
        t=1s account_freeze 2 acct=1 => 00
        t=2s increment 3 token=4111111111111 ref=1 amount=50.00 cur=CNY => 62
        t=3s account_unfreeze 4 acct=1 => 00
        t=4s increment 5 token=4111111111111 ref=1 amount=50.00 cur=CNY => 61
        expect hold 1 1 authorized=10.00
        ",
    );
}

#[test]
fn capture_at_exactly_expires_at_is_a_late_capture() {
    check(
        "
        # DOMAIN Time + capture: at ts == expires_at the hold has expired, so the capture comes
        # off balance only and held has already been released.
        account 1 CNY 100.00 active
        token 4111111111111 1 active 2912
        t=0       authorize 1 token=4111111111111 amount=30.00 cur=CNY => 00
        t=0       authorize 2 token=4111111111111 amount=30.00 cur=CNY => 00
        t=7d-1ns  capture 3 token=4111111111111 ref=1 amount=10.00 cur=CNY => 00
        expect account 1 balance=90.00 held=50.00
        expect hold 1 1 status=open
        t=7d      capture 4 token=4111111111111 ref=2 amount=10.00 cur=CNY => 00
        expect account 1 balance=80.00 held=0.00 available=80.00
        expect hold 1 1 captured=10.00 status=expired
        expect hold 1 2 captured=10.00 status=expired
        ",
    );
}

#[test]
fn config_ttl_and_window_are_honoured() {
    check(
        "
        # DOMAIN Time: hold TTL and duplicate window are configurable.
        config ttl=1h window=10m
        account 1 CNY 100.00 active
        token 4111111111111 1 active 2912
        t=0       authorize 1 token=4111111111111 amount=10.00 cur=CNY => 00
        t=10m-1ns authorize 1 token=4111111111111 amount=10.00 cur=CNY => 00   # replay
        t=10m     authorize 1 token=4111111111111 amount=10.00 cur=CNY => 94   # referable hold
        expect hold 1 1 expires=1h
        t=1h      increment 2 token=4111111111111 ref=1 amount=1.00 cur=CNY => 22
        expect account 1 held=0.00
        ",
    );
}

#[test]
fn dup_token_text_outside_the_grammar_still_compares() {
    check(
        "
        # DOMAIN Settled: every column takes part, so token text on a credit is compared too.
        account 1 CNY 100.00 active
        t=0  credit 1 acct=1 amount=1.00 cur=CNY token=abc => 00
        t=1s credit 1 acct=1 amount=1.00 cur=CNY token=abc => 00
        t=2s credit 1 acct=1 amount=1.00 cur=CNY token=abd => 94
        t=3s credit 1 acct=1 amount=1.00 cur=CNY => 94
        expect account 1 balance=101.00
        ",
    );
}

#[test]
fn dup_repeat_replays_even_after_the_state_moved_on() {
    check(
        "
        # DOMAIN Duplicates: the replay answers the recorded code whatever the state is now.
        account 1 CNY 100.00 active
        token 4111111111111 1 active 2912
        t=0  authorize 1 token=4111111111111 amount=10.00 cur=CNY => 00
        t=1s void 2 token=4111111111111 ref=1 amount=4.00 => 00
        t=2s capture 3 token=4111111111111 ref=1 amount=6.00 cur=CNY => 00     # closes
        t=3s void 2 token=4111111111111 ref=1 amount=4.00 => 00                 # not 22
        t=4s capture 3 token=4111111111111 ref=1 amount=6.00 cur=CNY => 00     # not 22
        t=5s token_suspend 4 token=4111111111111 => 00
        t=6s token_resume 5 token=4111111111111 => 00
        t=7s token_suspend 4 token=4111111111111 => 00                          # token active again
        expect account 1 balance=94.00 held=0.00
        expect hold 1 1 captured=6.00 voided=4.00 status=closed
        expect token 4111111111111 active
        ",
    );
}

#[test]
fn refund_12_25_comes_before_13_over_captured() {
    check(
        "
        # DOMAIN refund order: 12/25 before 13 amount over captured - refunded.
        account 1 CNY 5.00 active
        token 4111111111111 1 active 2912
        t=0  authorize 1 token=4111111111111 amount=10.00 cur=CNY => 51
        t=1s refund 2 token=4111111111111 ref=1 amount=1.00 cur=CNY => 12
        t=2s refund 3 token=4111111111111 ref=77 amount=1.00 cur=CNY => 25
        expect account 1 balance=5.00
        ",
    );
}
