//! The engine never panics and never breaks a money invariant on any request the API can
//! carry: arbitrary ids, extreme and backwards timestamps, extreme decimals, any field on any
//! kind. Also: back-pressure hands a batch back untouched, and a bad config is an error.

use payauth_engine::{
    AccountSpec, AccountStatus, Config, Currency, Dpan, Engine, ErrorKind, Expiry, HoldStatus,
    Kind, Request, SubmitError, TokenField, TokenSpec, TokenStatus,
};
use proptest::prelude::*;
use rust_decimal::Decimal;

fn universe() -> (Vec<AccountSpec>, Vec<TokenSpec>) {
    let accounts = (1..=3u64)
        .map(|id| AccountSpec {
            account_id: id,
            currency: [Currency::Cny, Currency::Jpy, Currency::Usd][id as usize - 1],
            balance: Decimal::new(1_000_000, 0),
            status: AccountStatus::Active,
            per_txn_limit: None,
            daily_limit: None,
            daily_count_limit: None,
        })
        .collect();
    let tokens = (1..=3u64)
        .map(|id| TokenSpec {
            token: Dpan::from_u64(5_000_000_000_000 + id).unwrap(),
            account_id: id,
            status: TokenStatus::Active,
            expiry: Expiry::new(2099, 12).unwrap(),
        })
        .collect();
    (accounts, tokens)
}

fn any_decimal() -> impl Strategy<Value = Decimal> {
    prop_oneof![
        (any::<i64>(), 0u32..=28).prop_map(|(m, s)| Decimal::new(m, s)),
        (
            any::<u32>(),
            any::<u32>(),
            any::<u32>(),
            any::<bool>(),
            0u32..=28
        )
            .prop_map(|(lo, mid, hi, neg, s)| Decimal::from_parts(lo, mid, hi, neg, s)),
        Just(Decimal::MAX),
        Just(Decimal::MIN),
        (1i64..500_000).prop_map(|m| Decimal::new(m, 2)),
    ]
}

fn any_request() -> impl Strategy<Value = Request> {
    (
        prop::sample::select(Kind::ALL.to_vec()),
        prop_oneof![0u64..8, any::<u64>()],
        prop_oneof![
            any::<i64>(),
            Just(i64::MAX),
            Just(i64::MIN),
            (1_700_000_000_000_000_000i64..1_800_000_000_000_000_000)
        ],
        prop_oneof![
            (1u64..=4)
                .prop_map(|i| TokenField::Dpan(Dpan::from_u64(5_000_000_000_000 + i).unwrap())),
            Just(TokenField::Empty),
            any::<u64>().prop_map(TokenField::Other),
        ],
        prop::option::of(prop_oneof![1u64..=4, any::<u64>()]),
        prop::option::of(any_decimal()),
        prop::option::of(prop::sample::select(Currency::ALL.to_vec())),
        prop::option::of(any::<u64>()),
        prop::option::of(prop_oneof![0u64..8, any::<u64>()]),
        any::<bool>(),
    )
        .prop_map(
            |(kind, request_id, ts_ns, token, account_id, amount, currency, mcc, reference, f)| {
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
                    is_final: f,
                }
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Arbitrary requests in arbitrary time order: every request gets a decision, the shards
    /// stay up, and `held` is still the sum of the open holds.
    #[test]
    fn arbitrary_requests_never_panic(batch in prop::collection::vec(any_request(), 0..200)) {
        let (accounts, tokens) = universe();
        let engine = Engine::start(
            Config { shards: 2, batch_max: 16, ..Config::default() },
            accounts,
            tokens,
        )
        .unwrap();
        let decisions = engine.submit(&batch).expect("no shard failed");
        prop_assert_eq!(decisions.len(), batch.len());
        for (d, r) in decisions.iter().zip(&batch) {
            prop_assert_eq!(d.request_id, r.request_id);
        }
        for as_of in [i64::MIN, 0, 1_750_000_000_000_000_000, i64::MAX] {
            let state = engine.export(as_of).expect("export");
            for a in &state.accounts {
                let open: Decimal = state
                    .holds
                    .iter()
                    .filter(|h| h.account_id == a.account_id && h.status == HoldStatus::Open)
                    .map(|h| h.authorized - h.captured - h.voided)
                    .sum();
                prop_assert_eq!(a.held, open);
                prop_assert!(a.held >= Decimal::ZERO);
            }
        }
        engine.shutdown(i64::MAX).expect("clean shutdown");
    }
}

#[test]
fn full_queue_hands_the_batch_back_untouched() {
    let (accounts, tokens) = universe();
    let engine = Engine::start(
        Config {
            shards: 1,
            queue_depth: 1,
            ..Config::default()
        },
        accounts,
        tokens,
    )
    .unwrap();
    let credit = |id: u64| {
        Request::new(Kind::Credit, id, 1_750_000_000_000_000_000)
            .with_account(1)
            .with_amount(Decimal::ONE, Currency::Cny)
    };
    // Keep submitting without waiting: with one queue slot, the engine must push back.
    let mut pending = Vec::new();
    let mut refused = None;
    for i in 0..10_000u64 {
        let batch: Vec<Request> = (0..64).map(|j| credit(i * 64 + j)).collect();
        match engine.try_submit(batch.clone()) {
            Ok(p) => pending.push(p),
            Err(SubmitError::Full(back)) => {
                assert_eq!(back, batch, "the refused batch comes back as it was");
                refused = Some(back.len());
                break;
            }
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert_eq!(refused, Some(64), "a one-slot queue never pushed back");
    let accepted = pending.len() as i64 * 64;
    for p in pending {
        assert!(p.wait().unwrap().iter().all(|d| d.code.is_approved()));
    }
    // Only the accepted batches moved money.
    let state = engine.shutdown(i64::MAX).unwrap();
    assert_eq!(
        state.accounts[0].balance,
        Decimal::new(1_000_000, 0) + Decimal::from(accepted)
    );
}

#[test]
fn bad_config_and_bad_load_are_errors_not_panics() {
    let (accounts, tokens) = universe();
    for bad in [
        Config {
            shards: 0,
            ..Config::default()
        },
        Config {
            batch_max: 0,
            ..Config::default()
        },
        Config {
            hold_ttl_ns: 0,
            ..Config::default()
        },
        Config {
            retention_ns: -1,
            ..Config::default()
        },
    ] {
        let e = Engine::start(bad.clone(), accounts.clone(), tokens.clone())
            .err()
            .unwrap_or_else(|| panic!("{bad:?} accepted"));
        assert_eq!(e.kind(), ErrorKind::Config, "{e}");
    }
    let mut twice = accounts.clone();
    twice.push(accounts[0].clone());
    let e = Engine::start(Config::default(), twice, tokens.clone())
        .err()
        .unwrap();
    assert_eq!(e.kind(), ErrorKind::Load);
    assert!(e.to_string().contains("appears twice"), "{e}");
    let mut orphan = tokens.clone();
    orphan[0].account_id = 99;
    let e = Engine::start(Config::default(), accounts.clone(), orphan)
        .err()
        .unwrap();
    assert!(e.to_string().contains("not loaded"), "{e}");
    let mut precise = accounts;
    precise[1].balance = Decimal::new(15, 1); // 1.5 JPY
    let e = Engine::start(Config::default(), precise, tokens)
        .err()
        .unwrap();
    assert!(e.to_string().contains("more decimals"), "{e}");
}
