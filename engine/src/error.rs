//! The engine's error type: an opaque `Error` with a `#[non_exhaustive]` kind, and the
//! submit error that hands a refused batch back.

use std::fmt;

use crate::api::Request;
use crate::journal::RecoveryError;

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
    /// The journal could not make a pass durable (a write or fdatasync failed), or the
    /// state directory could not be written: the decisions of that pass were not released,
    /// and the shard decides nothing more. Restart with [`crate::Engine::recover`].
    Journal,
    /// Recovery refused the state directory: damage before a journal's tail, a missing
    /// segment or snapshot, another shard count or other time rules, or a journaled
    /// decision that replays differently. [`Error::recovery`] has the shard, file and
    /// offset; nothing was guessed or skipped.
    Recovery,
    /// [`crate::Engine::recover`] found no state to recover (the directory is missing or
    /// empty): start the engine fresh with [`crate::Engine::start`] (or use
    /// [`crate::Engine::open`], which does either).
    NoState,
    /// [`crate::Engine::start`] was given a state directory that already holds an engine's
    /// state: recover it with [`crate::Engine::recover`] (or [`crate::Engine::open`]), or
    /// point the config at an empty directory.
    StateExists,
    /// Another engine (in this process or another) has the state directory open: one
    /// engine per state directory, or their journals would interleave. Answered after
    /// trying for about a quarter of a second (a child process being spawned holds the
    /// lock for a moment too).
    StateLocked,
}

/// An error the engine could not turn into a decision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    kind: ErrorKind,
    message: String,
    recovery: Option<Box<RecoveryError>>,
}

impl Error {
    pub(crate) fn new(kind: ErrorKind, message: impl Into<String>) -> Error {
        Error {
            kind,
            message: message.into(),
            recovery: None,
        }
    }

    /// An [`ErrorKind::Recovery`] error carrying the journal's detail.
    pub(crate) fn from_recovery(err: RecoveryError) -> Error {
        Error {
            kind: ErrorKind::Recovery,
            message: err.to_string(),
            recovery: Some(Box::new(err)),
        }
    }

    /// For [`ErrorKind::Recovery`]: what recovery refused, with the shard, file and byte
    /// offset where they are known.
    pub fn recovery(&self) -> Option<&RecoveryError> {
        self.recovery.as_deref()
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
            ErrorKind::Journal => "journal failed",
            ErrorKind::Recovery => "recovery refused",
            ErrorKind::NoState => "no state to recover",
            ErrorKind::StateExists => "state directory holds a state",
            ErrorKind::StateLocked => "state directory locked",
        };
        write!(f, "{what}: {}", self.message)
    }
}

// No `source()`: the message already holds the recovery detail, and a chain would print it
// twice.
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
