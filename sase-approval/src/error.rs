//! The crate's one error type.

use crate::backend::BackendError;
use crate::state::RequestState;

/// Everything that can go wrong in the approval engine.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A policy or grant problem.
    #[error(transparent)]
    Policy(#[from] sase_policy::Error),
    /// A workflow or template definition is invalid.
    #[error("invalid definition at `{path}`: {reason}")]
    Definition {
        /// Which field, e.g. `workflows.wf-1.mappings[0].fields.reason`.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// The request does not exist.
    #[error("approval request `{id}` not found")]
    NotFound {
        /// The id asked for.
        id: String,
    },
    /// The move is not allowed from the current state (e.g. approve after revoke).
    #[error("cannot move request `{id}` from {from:?} to {to:?}")]
    IllegalTransition {
        /// The request.
        id: String,
        /// Its state.
        from: RequestState,
        /// The state asked for.
        to: RequestState,
    },
    /// Someone else updated the request first (optimistic concurrency).
    #[error("request `{id}` changed concurrently (expected version {expected}, found {actual})")]
    Conflict {
        /// The request.
        id: String,
        /// The version the writer read.
        expected: u64,
        /// The version now stored.
        actual: u64,
    },
    /// A submitted request is missing or has unexpected fields.
    #[error("invalid request field `{field}`: {reason}")]
    InvalidRequest {
        /// The system field.
        field: String,
        /// What is wrong.
        reason: String,
    },
    /// The external approval system refused or could not do what was asked.
    #[error("approval backend: {0}")]
    Backend(#[from] BackendError),
    /// An event was verified by an account (a DingTalk app) or names a form that is not the
    /// request's workflow's. [`Engine::handle_external`](crate::engine::Engine::handle_external)
    /// reports it as [`EventOutcome::Refused`](crate::engine::EventOutcome::Refused) and
    /// changes nothing.
    #[error("event about instance `{instance}` from {origin} refused for request `{request}` of workflow `{workflow}`: {reason}")]
    ForeignEvent {
        /// The external instance.
        instance: String,
        /// Where the event came from.
        origin: String,
        /// The request linked to the instance.
        request: String,
        /// Its workflow.
        workflow: String,
        /// What did not match.
        reason: String,
    },
    /// The store failed.
    #[error("store error: {reason}")]
    Store {
        /// What failed.
        reason: String,
    },
}

impl Error {
    /// Whether retrying may succeed (store hiccups, conflicts, retryable DingTalk errors).
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Backend(e) => e.is_retryable(),
            Error::Conflict { .. } | Error::Store { .. } => true,
            _ => false,
        }
    }
}

/// Shorthand for `Result<T, sase_approval::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;
