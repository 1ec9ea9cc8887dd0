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
//! # Durability
//! With [`Config::journal`] set, each shard appends every request it applies, with its
//! decision, to its own write-ahead journal, and releases the decisions of a pass only
//! after the pass is durable: one write and, under [`Durability::Sync`] (the default of
//! [`JournalConfig::new`]), one fdatasync per pass, done by the shard's flusher thread
//! while the shard decides the next pass (passes waiting for the flusher share one sync:
//! group commit). Snapshots of each shard
//! ([`Config::snapshot_every_records`]) bound the replay. The promise:
//! - **every decision a host has received survives a crash** (of the process; of the
//!   machine too under [`Durability::Sync`]; [`Durability::Async`] may lose up to its
//!   interval of them to a machine crash);
//! - **after [`Engine::recover`], retransmissions of requests applied before the crash
//!   answer exactly as before**: their duplicate records are part of the recovered state,
//!   so an exact repeat inside the duplicate window gets the recorded decision and changes
//!   nothing.
//!
//! A pass whose decisions were never released may be lost to a crash (its torn tail is cut
//! at recovery, and reported); a host re-sends what it has no answer for, which
//! [`Engine::shard_for`] and [`ShardReport::next_seq`] let it find. Damage anywhere but the
//! tail, a missing segment, another shard count or other time rules are refused with the
//! shard, file and offset ([`ErrorKind::Recovery`]), never skipped.
//!
//! ```
//! use payauth_engine::{
//!     AccountSpec, AccountStatus, Code, Config, Currency, Engine, JournalConfig, Kind,
//!     Request,
//! };
//! use rust_decimal::Decimal;
//!
//! let state = tempfile::tempdir()?;
//! let config = Config {
//!     shards: 2,
//!     journal: Some(JournalConfig::new(state.path())), // Durability::Sync
//!     ..Config::default()
//! };
//! let accounts = vec![AccountSpec {
//!     account_id: 1,
//!     currency: Currency::Cny,
//!     balance: Decimal::new(100_00, 2),
//!     status: AccountStatus::Active,
//!     per_txn_limit: None,
//!     daily_limit: None,
//!     daily_count_limit: None,
//! }];
//! let top_up = Request::new(Kind::Credit, 7, 1_790_000_000_000_000_000)
//!     .with_account(1)
//!     .with_amount(Decimal::new(5_00, 2), Currency::Cny);
//!
//! let engine = Engine::start(config.clone(), accounts, Vec::new())?; // a fresh directory
//! assert_eq!(engine.submit(&[top_up])?[0].code, Code::Approved); // durable once returned
//! drop(engine); // or a crash
//!
//! let (engine, report) = Engine::recover(config)?;
//! assert_eq!(report.records_replayed(), 1);
//! // The retransmission answers as before and does not credit twice.
//! assert_eq!(engine.submit(&[top_up])?[0].code, Code::Approved);
//! let state = engine.shutdown(1_790_000_000_000_000_000)?;
//! assert_eq!(state.accounts[0].balance, Decimal::new(105_00, 2));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # The boundary
//! - [`Engine::start`] validates a [`Config`] and loads accounts and tokens; with a journal
//!   it creates the state directory, [`Engine::recover`] rebuilds an engine from one, and
//!   [`Engine::open`] does whichever applies.
//! - [`Engine::submit`] blocks for queue room and for the decisions;
//!   [`Engine::try_submit`] never blocks and hands a batch back in [`SubmitError::Full`];
//!   [`Engine::submit_async`] waits for room only and returns a [`Pending`].
//! - [`Engine::export`] and [`Engine::shutdown`] return the state ([`StateExport`]).
//! - [`Pending::wait`] answers [`ErrorKind::Journal`] when a pass could not be made durable:
//!   its decisions are withheld and the shard stops deciding; restart with recovery.
//! - Amounts cross the boundary as `rust_decimal::Decimal`; inside they are `i64` minor
//!   units with checked arithmetic.

pub mod api;
mod archive;
mod config;
mod durable;
mod engine;
mod error;
mod journal;
mod keytable;
pub mod model;
mod prefetch;
mod reply;
mod router;
mod rules;
mod shard;
mod snapshot;
mod store;

pub use api::{
    AccountSpec, AccountState, AccountStatus, Code, Currency, Decision, Dpan, Expiry, HoldState,
    HoldStatus, Kind, Request, StateExport, TokenField, TokenSpec, TokenState, TokenStatus,
};
pub use archive::{read_archive, Archive, ArchivedShard, Carried, JournalRecord};
pub use config::Config;
pub use durable::ReplayedRecord;
pub use engine::{Engine, Pending};
pub use error::{Error, ErrorKind, SubmitError};
pub use journal::{
    Durability, JournalConfig, RecoveryError, RecoveryErrorKind, RecoveryReport, ShardReport,
    SEGMENT_BYTES_MAX, SEGMENT_BYTES_MIN,
};
pub use router::shard_of;
