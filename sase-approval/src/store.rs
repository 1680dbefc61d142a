//! Where requests live: the [`ApprovalStore`] trait, an in-memory store and (feature
//! `sqlite`) a durable SQLite store. Updates use optimistic concurrency: each request has a
//! version, and an update against a stale version fails with [`Error::Conflict`](crate::Error::Conflict).

mod memory;
#[cfg(feature = "sqlite")]
mod sqlite;

pub use memory::MemoryStore;
#[cfg(feature = "sqlite")]
pub use sqlite::SqliteStore;

use crate::error::Result;
use crate::state::{ApprovalRequest, RequestId, RequestState};
use async_trait::async_trait;
use sase_policy::ids::{UserId, WorkflowId};

/// Which requests to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ListFilter {
    /// Only in these states (any, if empty).
    pub states: Vec<RequestState>,
    /// Only this requester.
    pub requester: Option<UserId>,
    /// Only this workflow.
    pub workflow: Option<WorkflowId>,
    /// Only created at or after, Unix ms.
    pub created_from_ms: Option<i64>,
    /// Only created before, Unix ms.
    pub created_to_ms: Option<i64>,
    /// Skip this many (oldest first).
    pub offset: usize,
    /// At most this many (all, if zero).
    pub limit: usize,
}

impl ListFilter {
    /// Whether `r` passes the filter (offset and limit aside).
    pub fn matches(&self, r: &ApprovalRequest) -> bool {
        (self.states.is_empty() || self.states.contains(&r.state))
            && self.requester.as_ref().is_none_or(|u| *u == r.requester)
            && self.workflow.as_ref().is_none_or(|w| *w == r.workflow)
            && self.created_from_ms.is_none_or(|t| r.created_at_ms >= t)
            && self.created_to_ms.is_none_or(|t| r.created_at_ms < t)
    }

    /// Only these states.
    pub fn states(mut self, states: Vec<RequestState>) -> Self {
        self.states = states;
        self
    }

    /// Only this requester.
    pub fn requester(mut self, user: UserId) -> Self {
        self.requester = Some(user);
        self
    }
}

/// Durable storage for requests and processed event keys.
#[async_trait]
pub trait ApprovalStore: Send + Sync + std::fmt::Debug {
    /// Stores a new request (version 0).
    async fn insert(&self, request: &ApprovalRequest) -> Result<()>;

    /// A request by id.
    async fn get(&self, id: &RequestId) -> Result<Option<ApprovalRequest>>;

    /// A request by its external (DingTalk) instance id.
    async fn find_by_external(&self, external_id: &str) -> Result<Option<ApprovalRequest>>;

    /// Replaces a request if its stored version is still `request.version`; the stored copy
    /// gets `version + 1`.
    ///
    /// # Errors
    /// [`Error::Conflict`](crate::Error::Conflict) if someone updated it first.
    async fn update(&self, request: &ApprovalRequest) -> Result<()>;

    /// Requests matching `filter`, oldest first.
    async fn list(&self, filter: &ListFilter) -> Result<Vec<ApprovalRequest>>;

    /// Records a processed event key; `false` if it was already recorded (a duplicate).
    async fn record_event(&self, key: &str, at_ms: i64) -> Result<bool>;

    /// Replaces a request as [`update`](Self::update) does and records the event key that
    /// caused it, both or neither: `Ok(false)`, writing nothing, if the key was already
    /// recorded. So a crash between the two can neither lose the change for good (the key
    /// recorded, the redelivery skipped) nor apply it twice.
    ///
    /// The default records the key, updates, and forgets the key if the update fails: atomic
    /// against errors but not against a crash in between. A durable store should override it
    /// with one transaction (one commit, too).
    ///
    /// # Errors
    /// As [`update`](Self::update); the key is then not recorded.
    async fn update_with_event(&self, request: &ApprovalRequest, key: &str, at_ms: i64) -> Result<bool> {
        if !self.record_event(key, at_ms).await? {
            return Ok(false);
        }
        match self.update(request).await {
            Ok(()) => Ok(true),
            Err(e) => {
                self.forget_event(key).await?;
                Err(e)
            }
        }
    }

    /// Forgets an event key (its processing failed and it must be processed again).
    async fn forget_event(&self, key: &str) -> Result<()>;

    /// Forgets event keys recorded before `before_ms`, bounding the de-duplication record;
    /// returns how many. A redelivery older than that is applied again, which the state
    /// machine makes harmless.
    async fn prune_events(&self, before_ms: i64) -> Result<u64>;
}
