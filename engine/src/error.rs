//! The engine's error type: an opaque `Error` with a `#[non_exhaustive]` kind, and the
//! submit error that hands a refused batch back.

use std::fmt;

use crate::api::Request;

/// What went wrong, broadly; match on it, read the message for the details.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A [`crate::Config`] field is out of range.
    Config,
    /// Accounts or tokens given to [`crate::Engine::start`] are inconsistent.
    Load,
    /// The engine is shut down.
    ShutDown,
    /// A shard thread died (a broken invariant); the engine must be restarted.
    ShardFailed,
}

/// An error the engine could not turn into a decision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    kind: ErrorKind,
    message: String,
}

impl Error {
    pub(crate) fn new(kind: ErrorKind, message: impl Into<String>) -> Error {
        Error {
            kind,
            message: message.into(),
        }
    }

    /// The broad kind.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The human-readable detail.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            ErrorKind::Config => "invalid config",
            ErrorKind::Load => "invalid accounts or tokens",
            ErrorKind::ShutDown => "engine shut down",
            ErrorKind::ShardFailed => "shard failed",
        };
        write!(f, "{what}: {}", self.message)
    }
}

impl std::error::Error for Error {}

/// Why a batch was not accepted; the batch comes back untouched, so nothing is lost.
#[derive(Debug, PartialEq, Eq)]
pub enum SubmitError {
    /// A shard queue the batch needs is full: try again later (back-pressure).
    Full(Vec<Request>),
    /// The engine is shutting down or has shut down.
    ShutDown(Vec<Request>),
}

impl SubmitError {
    /// The refused batch.
    pub fn into_batch(self) -> Vec<Request> {
        match self {
            SubmitError::Full(b) | SubmitError::ShutDown(b) => b,
        }
    }
}

impl fmt::Display for SubmitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SubmitError::Full(b) => write!(f, "engine full; batch of {} handed back", b.len()),
            SubmitError::ShutDown(b) => {
                write!(f, "engine shut down; batch of {} handed back", b.len())
            }
        }
    }
}

impl std::error::Error for SubmitError {}
