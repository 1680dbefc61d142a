//! The anti-uninstallation policies, kept in the store every replica shares as versioned
//! documents: those `server.toml` declares are written at start (the file wins for the ids it
//! declares), and admins create, replace and delete policies through the console API. A change
//! is validated against the workflows before it is saved (every problem with its path), then
//! compiled; each write moves a generation counter in the store, and every replica reloads when
//! it sees the counter move ([`Policies::follow`]).

use crate::devices::{Device, Enrolled};
use crate::directory::Snapshot;
use crate::workflows::CatalogCell;
use sase_approval::clock::Clock;
use sase_approval::store::{ApprovalStore, Document};
use sase_approval::Error as StoreError;
use sase_policy::ids::{PolicyId, WorkflowId};
use sase_policy::{Action, Catalog, Context, Effect, Policy, PolicySet, ValidationIssue};
use serde::Serialize;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

const POLICY: &str = "policy";
/// Moved by every write of a policy: a replica whose set is older reloads.
const GENERATION: &str = "generation/policy";

/// A policy as stored, with its version.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Stored {
    pub(crate) policy: Policy,
    pub(crate) version: u64,
    pub(crate) updated_at_ms: i64,
}

/// Why a policy was not saved.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PolicyError {
    /// The policy is wrong: every problem, each with its path in the request body.
    #[error("{} problem(s): {}", .0.len(), .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<ValidationIssue>),
    /// The store failed, or the version is stale ([`StoreError::Conflict`]).
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The compiled set in force on this replica, and the generation it was loaded at.
struct Loaded {
    set: Arc<PolicySet>,
    generation: u64,
}

/// The policies in the store, and the set compiled from them.
#[derive(Clone)]
pub(crate) struct Policies {
    store: Arc<dyn ApprovalStore>,
    clock: Arc<dyn Clock>,
    /// The workflows policies may name, as the workflows in force have it.
    catalog: CatalogCell,
    loaded: Arc<RwLock<Loaded>>,
}

fn decode(document: &Document) -> Result<Stored, StoreError> {
    let policy = serde_json::from_str(&document.body).map_err(|e| StoreError::Store {
        reason: format!("stored policy `{}` does not decode: {e}", document.id),
    })?;
    Ok(Stored {
        policy,
        version: document.version,
        updated_at_ms: document.updated_at_ms,
    })
}

fn encode(policy: &Policy) -> Result<String, StoreError> {
    serde_json::to_string(policy).map_err(|e| StoreError::Store {
        reason: format!("cannot encode policy `{}`: {e}", policy.id),
    })
}

/// `policy` checked on its own against `catalog`, its problems' paths under `at` (the
/// validator's `policies[0]` is the one policy).
pub(crate) fn check(policy: &Policy, catalog: &Catalog, at: &str) -> Vec<ValidationIssue> {
    sase_policy::issues(std::slice::from_ref(policy), catalog)
        .into_iter()
        .map(|issue| ValidationIssue {
            path: issue.path.replacen("policies[0]", at, 1),
            ..issue
        })
        .collect()
}

impl Policies {
    /// The policies of `store`, checked against `catalog`; nothing is loaded until
    /// [`seed`](Self::seed).
    pub(crate) fn new(store: Arc<dyn ApprovalStore>, clock: Arc<dyn Clock>, catalog: CatalogCell) -> Self {
        Self {
            store,
            clock,
            catalog,
            loaded: Arc::new(RwLock::new(Loaded {
                set: Arc::new(PolicySet::default()),
                generation: 0,
            })),
        }
    }

    /// Writes the policies `server.toml` declares over stored ones of the same id (the file
    /// wins; those made through the API are kept), or, when it declares none and the store
    /// has none, `fallback` (the demo's); then loads them all.
    ///
    /// # Errors
    /// A stored policy no longer valid (e.g. its workflow left the configuration), named with
    /// every problem: declare it in `server.toml` to replace it, or fix the workflow.
    pub(crate) async fn seed(&self, declared: &[Policy], fallback: Vec<Policy>) -> Result<(), PolicyError> {
        let stored = self.store.list_documents(POLICY).await?;
        let fallback = if declared.is_empty() && stored.is_empty() {
            fallback
        } else {
            Vec::new()
        };
        let mut wrote = false;
        for policy in declared.iter().chain(&fallback) {
            let body = encode(policy)?;
            let same = stored.iter().find(|d| d.id == policy.id.as_str());
            if same.is_some_and(|d| decode(d).is_ok_and(|s| s.policy == *policy)) {
                continue;
            }
            // Another replica seeding at once writes the same; the file's copy wins either way.
            let version = same.map_or(0, |d| d.version);
            let document = Document::new(POLICY, policy.id.as_str(), version, body).at(self.clock.now_ms());
            match self.store.put_document(&document).await {
                Ok(_) | Err(StoreError::Conflict { .. }) => wrote = true,
                Err(e) => return Err(e.into()),
            }
        }
        if wrote {
            self.store.add_to_counter(GENERATION, 1, None).await?;
        }
        let issues: Vec<ValidationIssue> = self
            .list()
            .await?
            .iter()
            .flat_map(|s| {
                check(
                    &s.policy,
                    &self.catalog(),
                    &format!("stored policy `{}`", s.policy.id),
                )
            })
            .collect();
        if !issues.is_empty() {
            return Err(PolicyError::Invalid(issues));
        }
        self.reload().await?;
        Ok(())
    }

    /// The set in force on this replica.
    pub(crate) fn current(&self) -> Arc<PolicySet> {
        Arc::clone(&self.loaded.read().unwrap_or_else(PoisonError::into_inner).set)
    }

    /// The workflows policies may name.
    pub(crate) fn catalog(&self) -> Arc<Catalog> {
        Arc::clone(&self.catalog.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Every stored policy, by id.
    pub(crate) async fn list(&self) -> Result<Vec<Stored>, StoreError> {
        self.store
            .list_documents(POLICY)
            .await?
            .iter()
            .map(decode)
            .collect()
    }

    /// The stored policy `id`.
    pub(crate) async fn get(&self, id: &str) -> Result<Option<Stored>, StoreError> {
        self.store
            .get_document(POLICY, id)
            .await?
            .as_ref()
            .map(decode)
            .transpose()
    }

    /// Saves `policy` over `version` (0: a new one) once it is valid (problems' paths under
    /// `policy`), and puts it in force here at once and on every replica within their poll.
    ///
    /// # Errors
    /// [`PolicyError::Invalid`], or a stale `version` ([`StoreError::Conflict`]; `actual` 0:
    /// there is none).
    pub(crate) async fn put(&self, policy: &Policy, version: u64) -> Result<Stored, PolicyError> {
        let issues = check(policy, &self.catalog(), "policy");
        if !issues.is_empty() {
            return Err(PolicyError::Invalid(issues));
        }
        let now = self.clock.now_ms();
        let document = Document::new(POLICY, policy.id.as_str(), version, encode(policy)?).at(now);
        let version = self.store.put_document(&document).await?;
        self.changed().await?;
        Ok(Stored {
            policy: policy.clone(),
            version,
            updated_at_ms: now,
        })
    }

    /// Deletes policy `id` at `version`; it stops deciding here at once and on every replica
    /// within their poll.
    ///
    /// # Errors
    /// A stale `version` ([`StoreError::Conflict`]; `actual` 0: there is none).
    pub(crate) async fn delete(&self, id: &str, version: u64) -> Result<(), StoreError> {
        self.store.delete_document(POLICY, id, version).await?;
        self.changed().await
    }

    async fn changed(&self) -> Result<(), StoreError> {
        self.store.add_to_counter(GENERATION, 1, None).await?;
        self.reload().await
    }

    /// Loads the stored policies if the generation moved since the last load. The generation
    /// is read before the policies, so a write between the two is loaded again next time.
    async fn reload(&self) -> Result<(), StoreError> {
        let generation = self.store.add_to_counter(GENERATION, 0, None).await?.value;
        let seen = self
            .loaded
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .generation;
        if generation == seen && seen != 0 {
            return Ok(());
        }
        let policies: Vec<Policy> = self.list().await?.into_iter().map(|s| s.policy).collect();
        // Each was valid when saved; one that no longer is (its workflow gone) still decides,
        // since dropping it would silently lift its protection.
        for policy in &policies {
            for issue in check(policy, &self.catalog(), &format!("stored policy `{}`", policy.id)) {
                tracing::warn!(problem = %issue, "a stored policy is no longer valid");
            }
        }
        let count = policies.len();
        let set = Arc::new(PolicySet::compile_unvalidated(policies));
        let mut loaded = self.loaded.write().unwrap_or_else(PoisonError::into_inner);
        // Two reloads at once: the later generation stays.
        if generation >= loaded.generation {
            *loaded = Loaded { set, generation };
            tracing::info!(policies = count, generation, "policies loaded");
        }
        Ok(())
    }

    /// Reloads every `every` when another replica changed the policies, until `shutdown`.
    pub(crate) fn follow(&self, every: Duration, shutdown: CancellationToken) -> tokio::task::JoinHandle<()> {
        let policies = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    _ = tick.tick() => {}
                }
                if let Err(e) = policies.reload().await {
                    tracing::warn!(error = %e, "cannot reload the policies");
                }
            }
        })
    }

    /// What saving `change` would do to each of `devices`: the decision on uninstalling
    /// before and after, for every device where it differs.
    ///
    /// # Errors
    /// [`PolicyError::Invalid`] when the changed policy is not valid.
    pub(crate) fn preview(
        &self,
        change: &Change,
        devices: &[Device],
        directory: &Snapshot,
    ) -> Result<Preview, PolicyError> {
        let before = self.current();
        let mut policies: Vec<Policy> = before.policies().to_vec();
        match change {
            Change::Put(policy) => {
                let issues = check(policy, &self.catalog(), "put");
                if !issues.is_empty() {
                    return Err(PolicyError::Invalid(issues));
                }
                policies.retain(|p| p.id != policy.id);
                policies.push(policy.clone());
            }
            Change::Delete(id) => policies.retain(|p| p.id != *id),
        }
        let after = PolicySet::compile_unvalidated(policies);
        let now_ms = self.clock.now_ms();
        let mut preview = Preview {
            devices: 0,
            gains_protection: 0,
            loses_protection: 0,
            changes: Vec::new(),
        };
        for device in devices.iter().filter(|d| d.revoked_at_ms.is_none()) {
            preview.devices += 1;
            let subject = Enrolled::new(device, directory);
            let (was, will) = (
                Outcome::of(&before, &subject, now_ms),
                Outcome::of(&after, &subject, now_ms),
            );
            if was == will {
                continue;
            }
            let change = match (was.protected(), will.protected()) {
                (false, true) => {
                    preview.gains_protection += 1;
                    Protection::Gains
                }
                (true, false) => {
                    preview.loses_protection += 1;
                    Protection::Loses
                }
                _ => Protection::Changes,
            };
            preview.changes.push(DeviceChange {
                device_id: device.device_id.clone(),
                user_id: device.owner.user_id.clone(),
                user_name: directory.name_of(&device.owner.user_id).map(str::to_owned),
                change,
                before: was,
                after: will,
            });
        }
        Ok(preview)
    }
}

/// A change to preview.
pub(crate) enum Change {
    /// Create or replace this policy.
    Put(Policy),
    /// Delete the policy with this id.
    Delete(PolicyId),
}

/// Who gains and who loses protection.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Preview {
    /// Devices looked at (the enrolled, unrevoked ones).
    pub(crate) devices: usize,
    pub(crate) gains_protection: usize,
    pub(crate) loses_protection: usize,
    /// Each device whose decision changes.
    pub(crate) changes: Vec<DeviceChange>,
}

/// One device's decision before and after.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct DeviceChange {
    pub(crate) device_id: String,
    pub(crate) user_id: String,
    /// The user's name, from the directory.
    pub(crate) user_name: Option<String>,
    pub(crate) change: Protection,
    pub(crate) before: Outcome,
    pub(crate) after: Outcome,
}

/// How a device's protection changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Protection {
    /// Uninstalling was allowed and will not be.
    #[serde(rename = "gains_protection")]
    Gains,
    /// Uninstalling was not allowed and will be.
    #[serde(rename = "loses_protection")]
    Loses,
    /// As protected as before, but another effect, reason, policy or workflow.
    Changes,
}

/// A decision on uninstalling, as the preview compares it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub(crate) struct Outcome {
    pub(crate) effect: EffectName,
    pub(crate) reason: sase_policy::Reason,
    /// The deciding policy.
    pub(crate) policy: Option<String>,
    /// Where requests would go.
    pub(crate) workflow: Option<String>,
}

impl Outcome {
    fn of(set: &PolicySet, subject: &Enrolled, now_ms: i64) -> Self {
        let d = set.evaluate(
            &subject.subject(),
            Action::Uninstall,
            &Context {
                now_ms,
                locale: "en-US",
                grant: None,
            },
        );
        let (effect, workflow) = effect_name(&d.effect);
        Self {
            effect,
            reason: d.reason,
            policy: d.policy.map(ToString::to_string),
            workflow: workflow.map(ToString::to_string),
        }
    }

    /// Uninstalling is not simply allowed.
    fn protected(&self) -> bool {
        self.effect != EffectName::Allow
    }
}

/// What the policy says of an action, as the API names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum EffectName {
    /// Go ahead.
    Allow,
    /// File a request for approval first.
    RequireApproval,
    /// Not allowed, and no request can be filed.
    Deny,
}

/// An effect as the API names it, with the workflow requests go to. An effect this server
/// does not know yet is `deny`: nothing is allowed.
pub(crate) fn effect_name<'a>(effect: &Effect<'a>) -> (EffectName, Option<&'a WorkflowId>) {
    match effect {
        Effect::Allow => (EffectName::Allow, None),
        Effect::RequireApproval { workflow } => (EffectName::RequireApproval, Some(workflow)),
        _ => (EffectName::Deny, None),
    }
}
