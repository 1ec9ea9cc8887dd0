//! payauth-engine: an embeddable, sharded, in-memory authorization engine for Apple Pay
//! in-store payments on Alipay balances.

pub mod api;
mod config;
mod engine;
mod error;
pub mod model;

pub use api::{
    AccountSpec, AccountState, AccountStatus, Code, Currency, Decision, Dpan, Expiry, HoldState,
    HoldStatus, Kind, Request, StateExport, TokenField, TokenSpec, TokenState, TokenStatus,
};
pub use config::Config;
pub use engine::{Engine, Pending};
pub use error::{Error, ErrorKind, SubmitError};
