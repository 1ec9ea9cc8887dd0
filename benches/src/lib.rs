//! Shared fixtures for the criterion benches: synthetic accounts, tokens and traffic.

use payauth_engine::{
    AccountSpec, AccountStatus, Currency, Dpan, Kind, Request, TokenSpec, TokenStatus,
};
use rust_decimal::Decimal;

/// `n` active CNY accounts with large balances and one active token each.
pub fn accounts_and_tokens(n: usize) -> (Vec<AccountSpec>, Vec<TokenSpec>) {
    let accounts = (0..n as u64)
        .map(|id| AccountSpec {
            account_id: id,
            currency: Currency::Cny,
            balance: Decimal::new(1_000_000_000, 2),
            status: AccountStatus::Active,
            per_txn_limit: None,
            daily_limit: None,
            daily_count_limit: None,
        })
        .collect();
    let tokens = (0..n as u64)
        .map(|id| TokenSpec {
            token: Dpan::from_u64(6_200_000_000_000_000 + id).expect("16 digits"),
            account_id: id,
            status: TokenStatus::Active,
            expiry: "3912".parse().expect("valid expiry"),
        })
        .collect();
    (accounts, tokens)
}

/// `len` requests starting at request id `first_id`: authorizations, each followed by the
/// final capture of the one before, spread over the tokens by a multiplicative hash.
pub fn auth_capture_traffic(tokens: &[TokenSpec], first_id: u64, len: usize) -> Vec<Request> {
    let t0 = 1_790_000_000_000_000_000i64;
    (0..len as u64)
        .map(|i| {
            let id = first_id + i;
            let pair = id / 2;
            let tok = tokens
                [(pair.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40) as usize % tokens.len()]
            .token;
            let ts = t0 + id as i64 * 1_000;
            let amount = Decimal::new(100 + (pair % 5000) as i64, 2);
            if id % 2 == 0 {
                Request::new(Kind::Authorize, id, ts)
                    .with_token(tok)
                    .with_amount(amount, Currency::Cny)
                    .with_mcc(5411)
            } else {
                Request::new(Kind::Capture, id, ts)
                    .with_token(tok)
                    .with_ref(id - 1)
                    .with_amount(amount, Currency::Cny)
                    .with_final(true)
            }
        })
        .collect()
}
