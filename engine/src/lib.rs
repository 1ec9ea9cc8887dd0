//! payauth-engine: an embeddable, sharded, in-memory authorization engine for Apple Pay
//! in-store payments on Alipay balances.
//!
//! The engine is the issuer host of DOMAIN.md: it maps a token (DPAN) to an Alipay balance
//! account, decides authorizations, captures, reversals, refunds, top-ups and admin requests
//! with ISO 8583 response codes, and keeps holds until they are captured, voided or expire.
//!
//! Accounts are partitioned across shard threads; each shard alone owns its accounts,
//! tokens, holds and duplicate records, so nothing on the per-request path takes a lock.
//! Batches reach the shards through bounded queues. The engine never reads a clock: time
//! comes with each request (`ts_ns`), so the same input gives the same decisions and final
//! state for any shard count or batch size.
//!
//! # Example
//! ```
//! use payauth_engine::{
//!     AccountSpec, AccountStatus, Code, Config, Currency, Dpan, Engine, Kind, Request,
//!     TokenSpec, TokenStatus,
//! };
//! use rust_decimal::Decimal;
//!
//! let accounts = vec![AccountSpec {
//!     account_id: 1,
//!     currency: Currency::Cny,
//!     balance: Decimal::new(100_00, 2), // 100.00 CNY
//!     status: AccountStatus::Active,
//!     per_txn_limit: None,
//!     daily_limit: None,
//!     daily_count_limit: None,
//! }];
//! let token: Dpan = "6200000000000001".parse().unwrap();
//! let tokens = vec![TokenSpec {
//!     token,
//!     account_id: 1,
//!     status: TokenStatus::Active,
//!     expiry: "3012".parse().unwrap(),
//! }];
//! let engine = Engine::start(Config { shards: 2, ..Config::default() }, accounts, tokens)?;
//!
//! let t0 = 1_790_000_000_000_000_000; // ns since the epoch; time comes with the request
//! let batch = vec![
//!     Request::new(Kind::Authorize, 7, t0)
//!         .with_token(token)
//!         .with_amount(Decimal::new(30_00, 2), Currency::Cny)
//!         .with_mcc(5411),
//!     Request::new(Kind::Capture, 8, t0 + 1_000)
//!         .with_token(token)
//!         .with_ref(7)
//!         .with_amount(Decimal::new(25_50, 2), Currency::Cny)
//!         .with_final(true),
//!     Request::new(Kind::Authorize, 9, t0 + 2_000)
//!         .with_token(token)
//!         .with_amount(Decimal::new(500_00, 2), Currency::Cny),
//! ];
//! let decisions = engine.submit(&batch)?;
//! let codes: Vec<Code> = decisions.iter().map(|d| d.code).collect();
//! assert_eq!(codes, [Code::Approved, Code::Approved, Code::InsufficientFunds]);
//!
//! let state = engine.shutdown(t0 + 2_000)?;
//! assert_eq!(state.accounts[0].balance, Decimal::new(74_50, 2)); // 100.00 - 25.50
//! assert_eq!(state.accounts[0].held, Decimal::ZERO); // the final capture released the rest
//! # Ok::<(), payauth_engine::Error>(())
//! ```
//!
//! # The boundary
//! - [`Engine::start`] validates a [`Config`] and loads accounts and tokens.
//! - [`Engine::submit`] blocks for queue room and for the decisions;
//!   [`Engine::try_submit`] never blocks and hands a batch back in [`SubmitError::Full`];
//!   [`Engine::submit_async`] waits for room only and returns a [`Pending`].
//! - [`Engine::export`] and [`Engine::shutdown`] return the state ([`StateExport`]).
//! - Amounts cross the boundary as `rust_decimal::Decimal`; inside they are `i64` minor
//!   units with checked arithmetic.

pub mod api;
mod config;
mod engine;
mod error;
mod journal;
pub mod model;
mod prefetch;
mod router;
mod rules;
mod shard;
mod snapshot;
mod store;

pub use api::{
    AccountSpec, AccountState, AccountStatus, Code, Currency, Decision, Dpan, Expiry, HoldState,
    HoldStatus, Kind, Request, StateExport, TokenField, TokenSpec, TokenState, TokenStatus,
};
pub use config::Config;
pub use engine::{Engine, Pending};
pub use error::{Error, ErrorKind, SubmitError};
pub use router::shard_of;
