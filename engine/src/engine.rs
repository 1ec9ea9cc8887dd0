//! The `Engine` handle a host holds: start from a Config, submit batches, export, shut down.

use crate::api::{AccountSpec, Decision, Request, StateExport, TokenSpec};
use crate::config::Config;
use crate::error::{Error, SubmitError};

/// A running engine: shard threads owning partitions of the accounts.
pub struct Engine {
    _private: (),
}

/// Decisions of a submitted batch that may not be ready yet.
pub struct Pending {
    _private: (),
}

impl Pending {
    /// Wait for every decision, in the order of the submitted batch.
    pub fn wait(self) -> Result<Vec<Decision>, Error> {
        todo!()
    }
}

impl Engine {
    /// Validate `config`, load accounts and tokens, start the shard threads.
    pub fn start(
        config: Config,
        accounts: Vec<AccountSpec>,
        tokens: Vec<TokenSpec>,
    ) -> Result<Engine, Error> {
        let _ = (config, accounts, tokens);
        todo!()
    }

    /// Submit a batch without blocking; a full queue hands the batch back.
    pub fn try_submit(&self, batch: Vec<Request>) -> Result<Pending, SubmitError> {
        let _ = batch;
        todo!()
    }

    /// Submit a batch, waiting for queue room, and wait for its decisions.
    pub fn submit(&self, batch: Vec<Request>) -> Result<Vec<Decision>, Error> {
        let _ = batch;
        todo!()
    }

    /// The state after everything submitted before this call, as of `as_of_ns`.
    pub fn export(&self, as_of_ns: i64) -> Result<StateExport, Error> {
        let _ = as_of_ns;
        todo!()
    }

    /// Decide everything accepted, stop the shards, and return the final state.
    pub fn shutdown(self, as_of_ns: i64) -> Result<StateExport, Error> {
        let _ = as_of_ns;
        todo!()
    }
}
