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
    /// Someone else updated the request (or document) first (optimistic concurrency).
    #[error("`{id}` changed concurrently (expected version {expected}, found {actual})")]
    Conflict {
        /// The request, or the document as `kind/id`.
        id: String,
        /// The version the writer read.
        expected: u64,
        /// The version now stored.
        actual: u64,
    },
    /// A request is already open (submitted or pending) for the same requester, device and
    /// action: stores refuse a second ([`ApprovalStore::insert`](crate::store::ApprovalStore::insert)),
    /// and [`Engine::submit`](crate::engine::Engine::submit) answers the open one instead.
    #[error("request `{open}` is already open for this requester, device and action")]
    AlreadyOpen {
        /// The open request.
        open: String,
    },
    /// A submitted request is missing or has unexpected fields.
    #[error("invalid request field `{field}`: {reason}")]
    InvalidRequest {
        /// The system field.
        field: String,
        /// What is wrong.
        reason: String,
    },
    /// A built-in workflow's request is decided only by one of its approvers.
    #[error("`{actor}` is not an approver of workflow `{workflow}` (request `{id}`)")]
    NotAnApprover {
        /// The request.
        id: String,
        /// Who tried to decide it.
        actor: String,
        /// Its workflow.
        workflow: String,
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
    /// A grant presented for consumption is refused.
    #[error("grant refused: {refusal}")]
    GrantRefused {
        /// Why.
        refusal: GrantRefusal,
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

/// Why [`Engine::consume_grant`](crate::engine::Engine::consume_grant) refused a grant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum GrantRefusal {
    /// Not a grant this server issued (or not the one its request holds now).
    Unknown,
    /// Its request was revoked (after approval: the grant died with it).
    Revoked,
    /// Consumed already.
    Used,
    /// Past its expiry.
    Expired,
    /// For another user or device than the one presenting it.
    Foreign,
}

impl GrantRefusal {
    /// A stable machine code: `grant_unknown`, `grant_revoked`, `grant_used`,
    /// `grant_expired`, `grant_foreign`.
    pub fn code(self) -> &'static str {
        match self {
            GrantRefusal::Unknown => "grant_unknown",
            GrantRefusal::Revoked => "grant_revoked",
            GrantRefusal::Used => "grant_used",
            GrantRefusal::Expired => "grant_expired",
            GrantRefusal::Foreign => "grant_foreign",
        }
    }
}

impl std::fmt::Display for GrantRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            GrantRefusal::Unknown => "not a grant this server holds",
            GrantRefusal::Revoked => "its request was revoked",
            GrantRefusal::Used => "already consumed",
            GrantRefusal::Expired => "expired",
            GrantRefusal::Foreign => "issued to another user or device",
        })
    }
}
