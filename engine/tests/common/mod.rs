//! What the engine's integration tests share: the fixed universe of accounts and tokens,
//! the random traffic generator (lifecycles, id collisions, retransmissions), the model
//! run, and the state and invariant checks.

// Each test crate that includes this module uses a different part of it.
#![allow(dead_code)]

use std::collections::BTreeMap;

use payauth_engine::model::{Model, ModelConfig};
use payauth_engine::{
    AccountSpec, AccountStatus, Code, Currency, Decision, Dpan, Expiry, HoldStatus, Kind, Request,
    StateExport, TokenField, TokenSpec, TokenStatus,
};
use proptest::prelude::*;
use rust_decimal::Decimal;

pub const SEC: i64 = 1_000_000_000;
pub const HOUR: i64 = 3600 * SEC;
pub const DAY: i64 = 24 * HOUR;
/// 2026-11-10 15:59:59 UTC: one second before a China midnight.
pub const T0: i64 = 1_794_326_399 * SEC;

/// Small time steps and the edges that matter: China midnight, the duplicate window, the
/// hold TTL and the retention period.
pub const STEPS: [i64; 12] = [
    0,
    1,
    SEC,
    60 * SEC,
    HOUR,
    8 * HOUR,
    16 * HOUR,
    DAY - 1,
    DAY,
    7 * DAY,
    7 * DAY + 1,
    45 * DAY,
];

/// The fixed universe each case plays in: accounts in several currencies and states, tokens
/// in every status, some expiring during the run.
pub fn universe() -> (Vec<AccountSpec>, Vec<TokenSpec>) {
    let d = |s: &str| Decimal::from_str_exact(s).unwrap();
    let accounts = vec![
        AccountSpec {
            account_id: 1,
            currency: Currency::Cny,
            balance: d("500.00"),
            status: AccountStatus::Active,
            per_txn_limit: Some(d("300.00")),
            daily_limit: Some(d("600.00")),
            daily_count_limit: Some(4),
        },
        AccountSpec {
            account_id: 2,
            currency: Currency::Jpy,
            balance: d("8000"),
            status: AccountStatus::Active,
            per_txn_limit: None,
            daily_limit: Some(d("15000")),
            daily_count_limit: None,
        },
        AccountSpec {
            account_id: 3,
            currency: Currency::Usd,
            balance: d("-5.00"),
            status: AccountStatus::Frozen,
            per_txn_limit: None,
            daily_limit: None,
            daily_count_limit: Some(2),
        },
        AccountSpec {
            account_id: 4,
            currency: Currency::Hkd,
            balance: d("1000.00"),
            status: AccountStatus::Active,
            per_txn_limit: Some(d("0")),
            daily_limit: None,
            daily_count_limit: None,
        },
        AccountSpec {
            account_id: 5,
            currency: Currency::Cny,
            balance: d("50.00"),
            status: AccountStatus::Closed,
            per_txn_limit: None,
            daily_limit: None,
            daily_count_limit: None,
        },
        AccountSpec {
            account_id: 6,
            currency: Currency::Cny,
            balance: d("100000.00"),
            status: AccountStatus::Active,
            per_txn_limit: None,
            daily_limit: None,
            daily_count_limit: Some(1),
        },
    ];
    let tok = |n: u64, account_id: u64, status: TokenStatus, yymm: &str| TokenSpec {
        token: Dpan::from_u64(4_000_000_000_000_000 + n).unwrap(),
        account_id,
        status,
        expiry: yymm.parse::<Expiry>().unwrap(),
    };
    let tokens = vec![
        tok(11, 1, TokenStatus::Active, "3012"),
        tok(12, 1, TokenStatus::Suspended, "3012"),
        tok(13, 1, TokenStatus::Active, "2611"), // expires at the end of November 2026
        tok(21, 2, TokenStatus::Active, "3001"),
        tok(22, 2, TokenStatus::Deactivated, "3001"),
        tok(31, 3, TokenStatus::Active, "3001"),
        tok(41, 4, TokenStatus::Active, "3001"),
        tok(51, 5, TokenStatus::Active, "3001"),
        tok(61, 6, TokenStatus::Active, "3001"),
    ];
    (accounts, tokens)
}

/// The currency of each universe account, by id.
pub fn currency_of(account_id: u64) -> Currency {
    match account_id {
        2 => Currency::Jpy,
        3 => Currency::Usd,
        4 => Currency::Hkd,
        _ => Currency::Cny,
    }
}

pub fn token_choice() -> impl Strategy<Value = TokenField> {
    prop_oneof![
        12 => prop::sample::select(vec![11u64, 11, 11, 12, 13, 21, 21, 22, 31, 41, 51, 61, 61])
            .prop_map(|n| TokenField::Dpan(Dpan::from_u64(4_000_000_000_000_000 + n).unwrap())),
        1 => Just(TokenField::Empty),
        1 => Just(TokenField::Dpan(Dpan::from_u64(4_999_999_999_999_999).unwrap())),
        1 => Just(TokenField::from_text("abc")),
    ]
}

pub fn kind_choice() -> impl Strategy<Value = Kind> {
    prop_oneof![
        10 => Just(Kind::Authorize),
        3 => Just(Kind::Increment),
        6 => Just(Kind::Capture),
        4 => Just(Kind::Void),
        3 => Just(Kind::Refund),
        2 => Just(Kind::Credit),
        3 => prop::sample::select(Kind::ALL.to_vec()),
    ]
}

pub fn amount_choice() -> impl Strategy<Value = Option<Decimal>> {
    let fixed = [
        "0",
        "-5",
        "0.01",
        "1",
        "1.5",
        "12.34",
        "12.340",
        "12.345",
        "99.99",
        "100",
        "150.00",
        "250",
        "300.00",
        "300.01",
        "5000",
        "9999",
        "1000000000",
        "1000000000.01",
    ];
    prop_oneof![
        1 => Just(None),
        4 => prop::sample::select(fixed.to_vec()).prop_map(|s| Some(Decimal::from_str_exact(s).unwrap())),
        3 => (1i64..40_000).prop_map(|m| Some(Decimal::new(m, 2))),
    ]
}

/// `None` (empty), `Some(None)` (the account's own), or a given currency.
pub fn currency_choice() -> impl Strategy<Value = Option<Option<Currency>>> {
    prop_oneof![
        1 => Just(None),
        12 => Just(Some(None)),
        2 => prop::sample::select(Currency::ALL.to_vec()).prop_map(|c| Some(Some(c))),
    ]
}

/// One row: (time step index, request).
pub fn request() -> impl Strategy<Value = (usize, Request)> {
    (
        0usize..STEPS.len(),
        kind_choice(),
        0u64..40,
        token_choice(),
        prop_oneof![6 => (1u64..=6).prop_map(Some), 1 => Just(None), 1 => Just(Some(99u64))],
        amount_choice(),
        currency_choice(),
        prop_oneof![Just(None), Just(Some(5411u64)), Just(Some(5812u64))],
        prop_oneof![1 => Just(None), 6 => (0u64..40).prop_map(Some)],
        any::<bool>(),
    )
        .prop_map(
            |(step, kind, request_id, token, account_id, amount, currency, mcc, reference, fin)| {
                let mut r = Request::new(kind, request_id, 0);
                r.token = token;
                r.account_id = account_id;
                r.amount = amount;
                // Mostly the currency of the account the request addresses.
                let own = if kind.addressed_by_token() {
                    match token {
                        TokenField::Dpan(d) => (d.get() % 1_000_000) / 10,
                        _ => 1,
                    }
                } else {
                    account_id.unwrap_or(1)
                };
                r.currency = match currency {
                    None => None,
                    Some(None) => Some(currency_of(own)),
                    Some(c) => c,
                };
                r.mcc = mcc;
                r.reference = reference;
                r.is_final = fin;
                (step, r)
            },
        )
}

/// How a row is shaped after drawing: whether it is a well-formed request of an active
/// token, whether it follows up an earlier authorization, and which request id it takes.
#[derive(Clone, Copy, Debug)]
struct Shape {
    good: bool,
    follow_up: Option<prop::sample::Index>,
    /// 0 = fresh id; 1..=3 = from a small shared pool (collisions, duplicates).
    id_mode: u8,
    pool_id: u64,
    /// 0 = whole remaining-ish amount, 1 = half, 2 = a third, 3 = empty (void: all).
    part: u8,
    good_minor: i64,
}

fn shape() -> impl Strategy<Value = Shape> {
    (
        prop::bool::weighted(0.7),
        prop::option::weighted(0.85, any::<prop::sample::Index>()),
        0u8..8,
        0u64..40,
        0u8..4,
        1i64..30_000,
    )
        .prop_map(
            |(good, follow_up, id_mode, pool_id, part, good_minor)| Shape {
                good,
                follow_up,
                id_mode,
                pool_id,
                part,
                good_minor,
            },
        )
}

/// Good tokens for well-formed rows: active ones, weighted to the accounts with limits.
pub const GOOD_TOKENS: [u64; 8] = [11, 11, 13, 21, 21, 41, 61, 61];

/// A traffic script: rows with their time steps, shaped into lifecycles (completions that
/// follow their authorization with its token and currency), with id collisions and exact
/// retransmissions spliced in.
pub fn traffic() -> impl Strategy<Value = Vec<Request>> {
    (
        prop::collection::vec((request(), shape(), 0usize..GOOD_TOKENS.len()), 1..160),
        prop::collection::vec((any::<prop::sample::Index>(), 0usize..4), 0..30),
    )
        .prop_map(|(rows, repeats)| {
            let mut ts = T0;
            let mut out: Vec<Request> = Vec::with_capacity(rows.len() + repeats.len());
            let mut auths: Vec<usize> = Vec::new();
            for (i, ((step, mut r), sh, good_token)) in rows.into_iter().enumerate() {
                // Long jumps are rarer, so holds live long enough to be used.
                let step = if step >= 9 && r.request_id % 3 != 0 {
                    3
                } else {
                    step
                };
                ts += STEPS[step];
                r.ts_ns = ts;
                r.request_id = if sh.id_mode < 5 {
                    1000 + i as u64
                } else {
                    sh.pool_id
                };
                if sh.good && r.kind != Kind::Credit {
                    let n = GOOD_TOKENS[good_token];
                    r.token = TokenField::Dpan(Dpan::from_u64(4_000_000_000_000_000 + n).unwrap());
                    let c = currency_of(n / 10);
                    let minor = if c == Currency::Jpy {
                        sh.good_minor / 5
                    } else {
                        sh.good_minor
                    };
                    r.amount = Some(Decimal::new(minor.max(1), c.decimals()));
                    r.currency = Some(c);
                }
                if r.kind.uses_ref() && !auths.is_empty() {
                    if let Some(link) = sh.follow_up {
                        let a = out[auths[link.index(auths.len())]];
                        r.reference = Some(a.request_id);
                        r.token = a.token;
                        r.currency = a.currency;
                        r.amount = match (sh.part, a.amount) {
                            (3, _) if r.kind == Kind::Void => None,
                            (1, Some(x)) => Some((x / Decimal::TWO).trunc_with_scale(2)),
                            (2, Some(x)) => Some((x / Decimal::from(3)).trunc_with_scale(2)),
                            (_, x) => x,
                        };
                    }
                }
                if r.kind == Kind::Authorize {
                    auths.push(out.len());
                }
                out.push(r);
            }
            // Retransmit an earlier row, unchanged but for a later position (same ts as
            // the row it follows, so time stays non-decreasing).
            for (idx, back) in repeats {
                let i = idx.index(out.len());
                let src = out[i.saturating_sub(back)];
                let mut copy = src;
                copy.ts_ns = out[i].ts_ns;
                out.insert(i + 1, copy);
            }
            out
        })
}

/// The model's decisions for `traffic` and its state as of the last request.
pub fn run_model(
    accounts: &[AccountSpec],
    tokens: &[TokenSpec],
    traffic: &[Request],
) -> (Vec<Decision>, StateExport) {
    let as_of = traffic.last().map_or(i64::MIN, |r| r.ts_ns);
    run_model_as_of(accounts, tokens, traffic, as_of)
}

/// The model's decisions for `traffic` and its state as of `as_of_ns`.
pub fn run_model_as_of(
    accounts: &[AccountSpec],
    tokens: &[TokenSpec],
    traffic: &[Request],
    as_of_ns: i64,
) -> (Vec<Decision>, StateExport) {
    let mut model = Model::new(ModelConfig::default(), accounts, tokens).expect("model load");
    let decisions = traffic.iter().map(|r| model.apply(r)).collect();
    (decisions, model.export(as_of_ns))
}

/// Open holds and accounts must agree; closed/expired holds may be reported differently by
/// the model (which keeps every hold) and the engine (which reclaims them after retention).
pub fn assert_same_state(model: &StateExport, engine: &StateExport, label: &str) {
    assert_eq!(model.accounts, engine.accounts, "{label}: accounts differ");
    assert_eq!(model.tokens, engine.tokens, "{label}: tokens differ");
    let open = |s: &StateExport| {
        s.holds
            .iter()
            .filter(|h| h.status == HoldStatus::Open)
            .cloned()
            .collect::<Vec<_>>()
    };
    assert_eq!(open(model), open(engine), "{label}: open holds differ");
}

/// DOMAIN.md's invariants, checked on the engine's final state.
pub fn assert_invariants(
    accounts: &[AccountSpec],
    traffic: &[Request],
    decisions: &[Decision],
    state: &StateExport,
) {
    // held = sum of remaining amounts of open holds, never negative.
    let mut held: BTreeMap<u64, Decimal> = BTreeMap::new();
    for h in state.holds.iter().filter(|h| h.status == HoldStatus::Open) {
        *held.entry(h.account_id).or_default() += h.authorized - h.captured - h.voided;
    }
    // Conservation: balance = initial + credits + refunds - captures (approved only).
    let mut expected: BTreeMap<u64, Decimal> =
        accounts.iter().map(|a| (a.account_id, a.balance)).collect();
    let token_account = |t: TokenField| match t {
        TokenField::Dpan(d) => Some((d.get() % 1_000_000) / 10),
        _ => None,
    };
    // An exact retransmission answers `00` again but moves nothing: a `00` is a replay when
    // an earlier `00` under the same (account, request_id) opened a record whose window is
    // still running (no other record can be made inside that window).
    let window = ModelConfig::default().dup_window_ns;
    let mut approved_records: BTreeMap<(u64, u64), i64> = BTreeMap::new();
    for (r, d) in traffic.iter().zip(decisions) {
        if d.code != Code::Approved {
            continue;
        }
        let account = if r.kind.addressed_by_token() {
            token_account(r.token)
        } else {
            r.account_id
        }
        .expect("an approved request resolved to an account");
        let key = (account, r.request_id);
        if approved_records
            .get(&key)
            .is_some_and(|&t| r.ts_ns < t + window)
        {
            continue;
        }
        approved_records.insert(key, r.ts_ns);
        let amount = r.amount.unwrap_or_default();
        match r.kind {
            Kind::Credit => *expected.get_mut(&r.account_id.unwrap()).unwrap() += amount,
            Kind::Refund => *expected.get_mut(&account).unwrap() += amount,
            Kind::Capture => *expected.get_mut(&account).unwrap() -= amount,
            _ => {}
        }
    }
    for a in &state.accounts {
        let h = held.get(&a.account_id).copied().unwrap_or_default();
        assert_eq!(
            a.held, h,
            "account {}: held is not the sum of open holds",
            a.account_id
        );
        assert!(
            a.held >= Decimal::ZERO,
            "account {}: held negative",
            a.account_id
        );
        assert_eq!(
            a.available,
            a.balance - a.held,
            "account {}: available",
            a.account_id
        );
        assert_eq!(
            a.balance, expected[&a.account_id],
            "account {}: money not conserved",
            a.account_id
        );
    }
}
