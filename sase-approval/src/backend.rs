//! Where requests are decided: the [`ApprovalBackend`] trait, the built-in backend, and the
//! vendor-neutral failures and statuses backends report. Vendors plug in through adapters
//! (DingTalk: [`crate::dingtalk`], feature `dingtalk`); the engine never sees their types.

use crate::state::{ApprovalRequest, RequestState};
use async_trait::async_trait;
use std::collections::HashSet;
use std::fmt;

/// An external instance's decision, as the backend reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ExternalStatus {
    /// Awaiting a decision.
    Running,
    /// Approved.
    Approved,
    /// Rejected.
    Rejected,
    /// Revoked or deleted.
    Revoked,
    /// The external system says there is no such instance.
    Missing,
}

impl ExternalStatus {
    /// The request state this status puts a request in.
    pub fn request_state(self) -> RequestState {
        match self {
            ExternalStatus::Running => RequestState::Pending,
            ExternalStatus::Approved => RequestState::Approved,
            ExternalStatus::Rejected => RequestState::Rejected,
            ExternalStatus::Revoked => RequestState::Revoked,
            ExternalStatus::Missing => RequestState::Failed,
        }
    }
}

/// How a backend failure is handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FailureKind {
    /// The call may or may not have taken effect (a create timed out after sending): find out
    /// before doing it again.
    Ambiguous,
    /// It did not take effect and may succeed later (outage, throttling, 5xx).
    Transient,
    /// It did not take effect and will not by retrying (refused, misconfigured).
    Permanent,
}

impl fmt::Display for FailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FailureKind::Ambiguous => "outcome unknown",
            FailureKind::Transient => "temporary failure",
            FailureKind::Permanent => "failed",
        })
    }
}

/// A backend call failed: how to handle it, and the vendor's error as its source.
#[derive(Debug, thiserror::Error)]
#[error("{operation}: {kind}: {source}")]
pub struct BackendError {
    kind: FailureKind,
    operation: &'static str,
    #[source]
    source: Box<dyn std::error::Error + Send + Sync>,
}

impl BackendError {
    /// A failure of `operation` (e.g. `create`) of this kind, caused by `source`.
    pub fn new(
        kind: FailureKind,
        operation: &'static str,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Self {
            kind,
            operation,
            source: source.into(),
        }
    }

    /// How to handle it.
    pub fn kind(&self) -> FailureKind {
        self.kind
    }

    /// The operation that failed.
    pub fn operation(&self) -> &'static str {
        self.operation
    }

    /// Whether the same call may succeed later.
    pub fn is_retryable(&self) -> bool {
        self.kind == FailureKind::Transient
    }
}

/// Shorthand for a backend call's result.
pub type BackendResult<T> = std::result::Result<T, BackendError>;

/// An approval system the engine drives.
#[async_trait]
pub trait ApprovalBackend: Send + Sync + fmt::Debug {
    /// Creates the external instance for `request` and returns its id. A
    /// [`FailureKind::Ambiguous`] failure means it may exist: the engine then calls
    /// [`find_existing`](Self::find_existing) before creating again.
    async fn create(&self, request: &ApprovalRequest) -> BackendResult<String>;

    /// Instances that an earlier, uncertain create for `request` may have made, newest last.
    async fn find_existing(&self, request: &ApprovalRequest) -> BackendResult<Vec<String>>;

    /// The instance's current decision ([`ExternalStatus::Missing`] if there is no such
    /// instance).
    async fn status(&self, external_id: &str) -> BackendResult<ExternalStatus>;

    /// Of `requests` (pending, each linked to an instance), the instances still awaiting a
    /// decision, found with as few calls as the backend can: reconciliation then asks
    /// [`status`](Self::status) only about the others. `now_ms` bounds how far back a
    /// backend may search. The default asks `status` about each.
    async fn running_among(
        &self,
        requests: &[&ApprovalRequest],
        now_ms: i64,
    ) -> BackendResult<HashSet<String>> {
        let _ = now_ms;
        let mut running = HashSet::new();
        for request in requests {
            if let Some(external) = &request.external_id {
                if self.status(external).await? == ExternalStatus::Running {
                    running.insert(external.clone());
                }
            }
        }
        Ok(running)
    }

    /// Approves on behalf of the approver whose task is running.
    async fn approve(&self, external_id: &str, admin: &str, remark: Option<&str>) -> BackendResult<()>;

    /// Rejects on behalf of the approver whose task is running.
    async fn reject(&self, external_id: &str, admin: &str, remark: Option<&str>) -> BackendResult<()>;

    /// Revokes the instance.
    async fn revoke(&self, external_id: &str, admin: &str, remark: Option<&str>) -> BackendResult<()>;
}

/// Approval in SASE's own console: nothing external, decisions come from admins.
#[derive(Debug, Clone, Default)]
pub struct BuiltinBackend;

#[async_trait]
impl ApprovalBackend for BuiltinBackend {
    async fn create(&self, request: &ApprovalRequest) -> BackendResult<String> {
        Ok(format!("builtin-{}", request.id))
    }

    async fn find_existing(&self, _request: &ApprovalRequest) -> BackendResult<Vec<String>> {
        Ok(Vec::new())
    }

    async fn status(&self, _external_id: &str) -> BackendResult<ExternalStatus> {
        Ok(ExternalStatus::Running)
    }

    /// Nothing external decides: every instance awaits the console.
    async fn running_among(
        &self,
        requests: &[&ApprovalRequest],
        _now_ms: i64,
    ) -> BackendResult<HashSet<String>> {
        Ok(requests.iter().filter_map(|r| r.external_id.clone()).collect())
    }

    async fn approve(&self, _: &str, _: &str, _: Option<&str>) -> BackendResult<()> {
        Ok(())
    }

    async fn reject(&self, _: &str, _: &str, _: Option<&str>) -> BackendResult<()> {
        Ok(())
    }

    async fn revoke(&self, _: &str, _: &str, _: Option<&str>) -> BackendResult<()> {
        Ok(())
    }
}
