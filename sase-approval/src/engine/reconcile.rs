//! Reconciliation: the safety net for what events did not say, spending as few external calls
//! as it can (they come out of the DingTalk app's monthly quota).

use super::{log_grant_issued_to, Attempt, Engine, ReconcileReport};
use crate::backend::{ApprovalBackend, ExternalStatus};
use crate::clock::millis;
use crate::error::Result;
use crate::state::{ApprovalRequest, RequestId, RequestState, Source};
use crate::store::ListFilter;
use sase_policy::ids::WorkflowId;
use std::collections::{HashMap, HashSet};
use std::time::Duration;

/// What reconciliation knows of a pending request besides the store, on the engine's clock
/// (events carry DingTalk's).
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Recheck {
    /// When an event about it was last recorded.
    active_ms: Option<i64>,
    /// When reconciliation last looked at it.
    checked_ms: Option<i64>,
}

/// What reconciliation remembers between passes.
#[derive(Debug, Default)]
pub(super) struct Memory {
    requests: HashMap<RequestId, Recheck>,
    /// The last listing failure of each workflow: logged once as a warning while it lasts
    /// (an exhausted monthly budget would otherwise warn every pass).
    failing: HashMap<WorkflowId, String>,
}

impl Engine {
    /// An event about `id` was recorded: its next look follows the schedule from now.
    pub(super) fn note_activity(&self, id: &RequestId) {
        let now = self.clock.now_ms();
        self.memory().requests.entry(id.clone()).or_default().active_ms = Some(now);
    }

    fn memory(&self) -> std::sync::MutexGuard<'_, Memory> {
        self.rechecks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Catches up on what events did not tell us (HTTP push has no documented retry, and
    /// every call counts against the app's monthly quota). For open requests filed more than
    /// `older_than` ago: creates missing external instances, expires overdue requests (and
    /// revokes their instances), and looks at pending ones on the
    /// [`RecheckSchedule`](crate::recheck::RecheckSchedule) — per workflow, one
    /// [`running_among`](ApprovalBackend::running_among) for the due ones, then a
    /// [`status`](ApprovalBackend::status) only for those no longer running; an instance the
    /// backend says does not exist ends its request as failed. Then prunes processed event
    /// keys older than the event retention.
    ///
    /// # Errors
    /// Store errors; backend errors are logged and retried at a later pass.
    pub async fn reconcile(&self, older_than: Duration) -> Result<ReconcileReport> {
        let now = self.clock.now_ms();
        let mut filter = ListFilter::default().states(vec![RequestState::Submitted, RequestState::Pending]);
        // Filed at least `older_than` ago (the bound is exclusive).
        filter.created_to_ms = Some(now.saturating_sub(millis(older_than)).saturating_add(1));
        let open = self.store.list(&filter).await?;
        let mut report = ReconcileReport::default();
        let mut due: HashMap<&WorkflowId, Vec<&ApprovalRequest>> = HashMap::new();
        {
            let mut memory = self.memory();
            let rechecks = &mut memory.requests;
            let open_ids: HashSet<&RequestId> = open.iter().map(|r| &r.id).collect();
            rechecks.retain(|id, _| open_ids.contains(id));
            for request in &open {
                let linked = request.external_id.is_some();
                if linked && !self.is_overdue(request, now) {
                    let known = rechecks.get(&request.id).copied().unwrap_or_default();
                    let since = known
                        .active_ms
                        .map_or(request.created_at_ms, |t| t.max(request.created_at_ms));
                    if !self.recheck.is_due(since, known.checked_ms, now) {
                        report.not_due += 1;
                        continue;
                    }
                }
                due.entry(&request.workflow).or_default().push(request);
            }
        }
        for (workflow, requests) in due {
            let Ok(backend) = self.backend(workflow) else {
                continue;
            };
            self.reconcile_workflow(&requests, backend.as_ref(), now, &mut report)
                .await;
        }
        report.pruned_events = self
            .store
            .prune_events(now.saturating_sub(millis(self.event_retention)))
            .await?;
        Ok(report)
    }

    /// Takes or renews the store's lease `name` for `holder` until `ttl` from now (the
    /// engine's clock): whether `holder` holds it. Replicas sharing a store reconcile only
    /// while they hold the lease `reconciler`, so one at a time does; when the holder dies,
    /// another takes over once the lease has expired.
    ///
    /// # Errors
    /// Store errors.
    pub async fn hold_lease(&self, name: &str, holder: &str, ttl: Duration) -> Result<bool> {
        self.store
            .try_lease(name, holder, self.clock.now_ms(), millis(ttl))
            .await
    }

    fn is_overdue(&self, request: &ApprovalRequest, now: i64) -> bool {
        self.expire_after
            .is_some_and(|limit| now - request.created_at_ms > millis(limit))
    }

    /// One workflow's due requests: creates, expiries, then the pending ones in one batch.
    async fn reconcile_workflow(
        &self,
        requests: &[&ApprovalRequest],
        backend: &dyn ApprovalBackend,
        now: i64,
        report: &mut ReconcileReport,
    ) {
        let mut pending = Vec::new();
        for &request in requests {
            report.checked += 1;
            let outcome = if request.external_id.is_none() {
                self.create_external(&request.id, backend, Attempt::Again)
                    .await
                    .map(|after| {
                        report.linked += usize::from(after.external_id.is_some());
                        after.state != request.state
                    })
            } else if self.is_overdue(request, now) {
                self.expire(request, backend, now).await
            } else {
                pending.push(request);
                continue;
            };
            match outcome {
                Ok(changed) => report.changed += usize::from(changed),
                Err(e) => {
                    tracing::warn!(request = %request.id, error = %e, "reconciliation failed; will retry");
                }
            }
        }
        let Some(workflow) = pending.first().map(|r| &r.workflow) else {
            return;
        };
        let running = match backend.running_among(&pending, now).await {
            Ok(running) => {
                if self.memory().failing.remove(workflow).is_some() {
                    tracing::info!(workflow = %workflow, "reconciliation lists instances again");
                }
                running
            }
            Err(e) => {
                let error = e.to_string();
                let again = self.memory().failing.insert(workflow.clone(), error.clone()) == Some(error);
                if again {
                    tracing::debug!(workflow = %workflow, requests = pending.len(), error = %e, "reconciliation still cannot list instances");
                } else {
                    tracing::warn!(workflow = %workflow, requests = pending.len(), error = %e, "reconciliation could not list instances; will retry");
                }
                return;
            }
        };
        for request in pending {
            let external = request.external_id.as_deref().unwrap_or_default();
            let outcome = if running.contains(external) {
                Ok(false)
            } else {
                report.looked_up += 1;
                self.look_up(request, external, backend, now).await
            };
            match outcome {
                Ok(changed) => {
                    report.changed += usize::from(changed);
                    self.memory()
                        .requests
                        .entry(request.id.clone())
                        .or_default()
                        .checked_ms = Some(now);
                }
                Err(e) => {
                    tracing::warn!(request = %request.id, error = %e, "reconciliation failed; will retry");
                }
            }
        }
    }

    /// Expires `request` and revokes its instance. Expired is recorded first: the
    /// revocation's own event then finds the request decided (and changes nothing) instead of
    /// racing it to "revoked".
    async fn expire(
        &self,
        request: &ApprovalRequest,
        backend: &dyn ApprovalBackend,
        now: i64,
    ) -> Result<bool> {
        let mut moved = false;
        let after = self
            .mutate(&request.id, |r| {
                moved = self.apply(r, RequestState::Expired, now, "system", Source::System, None)?;
                Ok(moved)
            })
            .await?;
        if moved {
            let external = after.external_id.as_deref().unwrap_or_default();
            tracing::info!(
                request = %after.id,
                workflow = %after.workflow,
                instance = %external,
                from = request.state.as_str(),
                after_secs = self.expire_after.map_or(0, |d| d.as_secs()),
                "request expired"
            );
            if let Err(e) = backend.revoke(external, "system", Some("expired")).await {
                tracing::warn!(request = %request.id, instance = %external, error = %e, "could not revoke the expired instance");
            }
        }
        Ok(after.state != request.state)
    }

    /// Asks the backend what became of an instance that is no longer running, and records it.
    async fn look_up(
        &self,
        request: &ApprovalRequest,
        external: &str,
        backend: &dyn ApprovalBackend,
        now: i64,
    ) -> Result<bool> {
        let status = backend.status(external).await?;
        let note = (status == ExternalStatus::Missing)
            .then(|| format!("the external instance {external} does not exist"));
        let mut moved = false;
        let after = self
            .mutate(&request.id, |r| {
                moved = self.apply(
                    r,
                    status.request_state(),
                    now,
                    "reconciliation",
                    Source::Reconciliation,
                    note.clone(),
                )?;
                Ok(moved)
            })
            .await?;
        if moved {
            // What the events did not say (a lost push): the same step as "event applied".
            tracing::info!(
                request = %after.id,
                workflow = %after.workflow,
                instance = %external,
                from = request.state.as_str(),
                to = after.state.as_str(),
                "request reconciled"
            );
            log_grant_issued_to(&after, "reconciliation");
        }
        Ok(after.state != request.state)
    }
}
