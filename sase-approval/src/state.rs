//! The request record and its state machine.
//!
//! ```text
//! Submitted ─▶ Pending ─▶ Approved ─▶ Revoked
//!     │           ├─────▶ Rejected
//!     │           ├─────▶ Revoked
//!     │           └─────▶ Expired
//!     └─▶ Failed (the external instance could not be created)
//! ```
//!
//! [`plan`] is pure: applying the state a request is already in is a no-op (idempotence),
//! an event older than the one that set the current state is ignored (ordering), and any
//! other move out of a terminal state is an [`Error::IllegalTransition`].

use crate::error::{Error, Result};
use sase_policy::ids::{DeviceId, UserId, WorkflowId};
use sase_policy::{Action, SignedGrant};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

/// An approval request's id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
// A one-field tuple struct: utoipa describes it as the `String` inside, as serde writes it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RequestId(pub String);

impl RequestId {
    /// A fresh random id.
    pub fn generate() -> Self {
        Self(format!("req-{:024x}", rand::random::<u128>() >> 32))
    }

    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where a request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum RequestState {
    /// Recorded; the external instance is being (or will be) created.
    Submitted,
    /// The external instance exists and awaits a decision.
    Pending,
    /// Approved: a grant was issued.
    Approved,
    /// Rejected.
    Rejected,
    /// Revoked (by the requester, an admin, or in DingTalk), possibly after approval.
    Revoked,
    /// No decision before the deadline.
    Expired,
    /// The external instance could not be created.
    Failed,
}

impl RequestState {
    /// Whether nothing (but a revoke, after approval) can follow.
    pub fn is_final(self) -> bool {
        !matches!(self, RequestState::Submitted | RequestState::Pending)
    }

    /// Its name in storage and APIs (`pending`, `approved`, …), as serde writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            RequestState::Submitted => "submitted",
            RequestState::Pending => "pending",
            RequestState::Approved => "approved",
            RequestState::Rejected => "rejected",
            RequestState::Revoked => "revoked",
            RequestState::Expired => "expired",
            RequestState::Failed => "failed",
        }
    }

    fn allows(self, to: RequestState) -> bool {
        use RequestState::*;
        matches!(
            (self, to),
            (
                Submitted,
                Pending | Approved | Rejected | Revoked | Expired | Failed
            ) | (Pending, Approved | Rejected | Revoked | Expired | Failed)
                | (Approved, Revoked)
        )
    }
}

/// What caused a transition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Source {
    /// The requester's agent.
    Agent,
    /// An event from the external approval system (stored before 0.2 as `ding_talk_event`).
    #[serde(alias = "ding_talk_event")]
    External {
        /// The event's idempotency key.
        event: String,
    },
    /// An admin in the console.
    Console,
    /// The reconciliation poll.
    Reconciliation,
    /// The engine itself (creation, expiry).
    System,
}

/// One entry of a request's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Transition {
    /// State before.
    pub from: RequestState,
    /// State after (equal to `from` for audit-only entries such as task events).
    pub to: RequestState,
    /// When it happened (the event's time), Unix ms.
    pub at_ms: i64,
    /// Who: a user id, an admin, `dingtalk`, `system`.
    pub actor: String,
    /// What caused it.
    pub source: Source,
    /// Free text (remark, failure reason).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// An approval request.
#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ApprovalRequest {
    /// Id.
    pub id: RequestId,
    /// Template.
    pub template: String,
    /// Workflow.
    pub workflow: WorkflowId,
    /// Who asks.
    pub requester: UserId,
    /// For which device.
    pub device: DeviceId,
    /// For which action.
    pub action: Action,
    /// System field values (`reason`, `app_version`, …). Shared, like the history entries,
    /// so copies of a request (every store read and write makes one) do not copy them.
    // The `Arc`s are serde's `rc` feature: the value inside, written as is (utoipa reads
    // `Arc` only with its `rc_schema` feature).
    #[cfg_attr(feature = "openapi", schema(value_type = BTreeMap<String, String>))]
    pub fields: Arc<BTreeMap<String, String>>,
    /// State.
    pub state: RequestState,
    /// Time (DingTalk's clock) of the event that set the current state, Unix ms; 0 when the
    /// state was set locally. Events older than this are stale.
    pub state_at_ms: i64,
    /// The external instance (DingTalk processInstanceId), once created.
    pub external_id: Option<String>,
    /// A create of the external instance may have been sent and its instance id is not stored:
    /// set before any create is sent, cleared once the id is stored (or the create failed for
    /// good). While it is set, the instance is looked for before creating again.
    #[serde(default)]
    pub create_uncertain: bool,
    /// Created, Unix ms.
    pub created_at_ms: i64,
    /// The grant, once approved.
    pub grant: Option<SignedGrant>,
    /// When the agent consumed the grant (used it to uninstall), Unix ms: a grant is consumed
    /// once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant_consumed_at_ms: Option<i64>,
    /// Optimistic-concurrency version, bumped by every update.
    pub version: u64,
    /// Every transition, in order: every change of state, and the newest
    /// [`AUDIT_ENTRIES_KEPT`] audit-only entries (task events, comments).
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<Transition>))]
    pub history: Vec<Arc<Transition>>,
    /// How many older audit-only entries were dropped from `history` to keep it bounded.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub history_dropped: u64,
}

/// How many audit-only entries (task events, comments: a transition to the state the request
/// is already in) a request keeps; older ones are dropped and counted in
/// [`ApprovalRequest::history_dropped`]. Changes of state are always kept. Bounds what an
/// instance flooded with comments costs to store and to answer (about 0.4 KiB an entry).
pub const AUDIT_ENTRIES_KEPT: usize = 100;

#[expect(
    clippy::trivially_copy_pass_by_ref,
    reason = "serde passes fields by reference"
)]
fn is_zero(n: &u64) -> bool {
    *n == 0
}

// Written out for `clone_from`, which `derive(Clone)` does not forward field by field: a
// store writing a request back over its stored copy then reuses that copy's buffers instead
// of allocating new ones. The struct literal and the destructuring keep both exhaustive when
// a field is added.
impl Clone for ApprovalRequest {
    fn clone(&self) -> Self {
        Self {
            id: self.id.clone(),
            template: self.template.clone(),
            workflow: self.workflow.clone(),
            requester: self.requester.clone(),
            device: self.device.clone(),
            action: self.action,
            fields: Arc::clone(&self.fields),
            state: self.state,
            state_at_ms: self.state_at_ms,
            external_id: self.external_id.clone(),
            create_uncertain: self.create_uncertain,
            created_at_ms: self.created_at_ms,
            grant: self.grant.clone(),
            grant_consumed_at_ms: self.grant_consumed_at_ms,
            version: self.version,
            history: self.history.clone(),
            history_dropped: self.history_dropped,
        }
    }

    fn clone_from(&mut self, source: &Self) {
        let Self {
            id,
            template,
            workflow,
            requester,
            device,
            action,
            fields,
            state,
            state_at_ms,
            external_id,
            create_uncertain,
            created_at_ms,
            grant,
            grant_consumed_at_ms,
            version,
            history,
            history_dropped,
        } = self;
        id.0.clone_from(&source.id.0);
        template.clone_from(&source.template);
        workflow.clone_from(&source.workflow);
        requester.clone_from(&source.requester);
        device.clone_from(&source.device);
        *action = source.action;
        fields.clone_from(&source.fields);
        *state = source.state;
        *state_at_ms = source.state_at_ms;
        external_id.clone_from(&source.external_id);
        *create_uncertain = source.create_uncertain;
        *created_at_ms = source.created_at_ms;
        grant.clone_from(&source.grant);
        *grant_consumed_at_ms = source.grant_consumed_at_ms;
        *version = source.version;
        history.clone_from(&source.history);
        *history_dropped = source.history_dropped;
    }
}

/// What applying a state would do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Plan {
    /// Move to the state.
    Apply,
    /// Already there: nothing to do.
    Unchanged,
    /// Older than what set the current state: ignore.
    Stale,
}

/// Decides whether `request` may move to `to` because of something that happened at `at_ms`.
///
/// # Errors
/// [`Error::IllegalTransition`] for a move the state machine forbids.
pub fn plan(request: &ApprovalRequest, to: RequestState, at_ms: i64) -> Result<Plan> {
    if request.state == to {
        return Ok(Plan::Unchanged);
    }
    if at_ms < request.state_at_ms {
        return Ok(Plan::Stale);
    }
    if request.state.allows(to) {
        Ok(Plan::Apply)
    } else if to == RequestState::Pending {
        // A late "started" report after a decision: the decision stands.
        Ok(Plan::Stale)
    } else {
        Err(Error::IllegalTransition {
            id: request.id.to_string(),
            from: request.state,
            to,
        })
    }
}

impl ApprovalRequest {
    /// The value of a system field (`requester`, `device`, `requested_at`, or one filed).
    pub fn system_value(&self, field: &str) -> Option<String> {
        match field {
            "requester" => Some(self.requester.to_string()),
            "device" => Some(self.device.to_string()),
            "requested_at" => Some(self.created_at_ms.to_string()),
            other => self.fields.get(other).cloned(),
        }
    }

    /// Moves to `to` and records it (call after [`plan`] said [`Plan::Apply`]).
    pub fn record(
        &mut self,
        to: RequestState,
        at_ms: i64,
        actor: &str,
        source: Source,
        note: Option<String>,
    ) {
        self.apply(Change::new(to, at_ms, actor, source).note(note));
    }

    /// Audit-only entries in the history (the first, the filing, aside).
    fn audit_entries(&self) -> usize {
        self.history.iter().skip(1).filter(|t| t.from == t.to).count()
    }

    /// Applies a [`Change`]: records its transition and sets its grant. Cannot fail, so a
    /// store may apply it to its stored copy in place.
    pub fn apply(&mut self, change: Change) {
        let Change {
            to,
            at_ms,
            actor,
            source,
            note,
            grant,
        } = change;
        // Only DingTalk events order later events: their times share DingTalk's clock, while
        // local moves (creation, console actions) would compare our clock with theirs.
        if to != self.state {
            self.state_at_ms = if matches!(source, Source::External { .. }) {
                at_ms
            } else {
                0
            };
        }
        let audit_only = to == self.state && !self.history.is_empty();
        if audit_only && self.audit_entries() >= AUDIT_ENTRIES_KEPT {
            // The oldest audit-only entry; the first entry records the filing.
            if let Some(oldest) = self
                .history
                .iter()
                .skip(1)
                .position(|t| t.from == t.to)
                .map(|i| i + 1)
            {
                self.history.remove(oldest);
                self.history_dropped += 1;
            }
        }
        self.history.push(Arc::new(Transition {
            from: self.state,
            to,
            at_ms,
            actor,
            source,
            note,
        }));
        self.state = to;
        if let Some(grant) = grant {
            self.grant = grant;
        }
    }
}

/// A change to a request, decided from a read of it and applied with
/// [`ApprovalRequest::apply`]: a transition (to the state the request is in, for an
/// audit-only entry) and, optionally, a new grant. Deciding may fail; applying cannot, which
/// is what lets [`ApprovalStore::apply_event`](crate::store::ApprovalStore::apply_event)
/// change a stored request in place.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Change {
    /// State after.
    pub to: RequestState,
    /// When it happened, Unix ms.
    pub at_ms: i64,
    /// Who.
    pub actor: String,
    /// What caused it.
    pub source: Source,
    /// Free text.
    pub note: Option<String>,
    /// The grant afterwards; `None` keeps the current one.
    pub grant: Option<Option<SignedGrant>>,
}

impl Change {
    /// A move to `to` (or an audit entry, if the request is already there), keeping the grant.
    pub fn new(to: RequestState, at_ms: i64, actor: impl Into<String>, source: Source) -> Self {
        Self {
            to,
            at_ms,
            actor: actor.into(),
            source,
            note: None,
            grant: None,
        }
    }

    /// With a note.
    pub fn note(mut self, note: Option<String>) -> Self {
        self.note = note;
        self
    }

    /// Setting the grant (`None` withdraws it).
    pub fn grant(mut self, grant: Option<SignedGrant>) -> Self {
        self.grant = Some(grant);
        self
    }
}

/// A change subscribers hear about.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RequestUpdate {
    /// The request.
    pub id: RequestId,
    /// Its new state.
    pub state: RequestState,
    /// Its new version.
    pub version: u64,
}

impl RequestUpdate {
    /// The update announcing `request` as it now is.
    pub fn of(request: &ApprovalRequest) -> Self {
        Self {
            id: request.id.clone(),
            state: request.state,
            version: request.version,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use RequestState::*;

    fn request(state: RequestState, at: i64) -> ApprovalRequest {
        ApprovalRequest {
            id: RequestId("r".into()),
            template: "t".into(),
            workflow: WorkflowId::new("w"),
            requester: UserId::new("u"),
            device: DeviceId::new("d"),
            action: Action::Uninstall,
            fields: Arc::default(),
            state,
            state_at_ms: at,
            external_id: None,
            create_uncertain: false,
            created_at_ms: 0,
            grant: None,
            grant_consumed_at_ms: None,
            version: 0,
            history: vec![],
            history_dropped: 0,
        }
    }

    #[test]
    fn transitions_follow_the_machine() {
        let ok = |from, to| plan(&request(from, 10), to, 20).unwrap();
        assert_eq!(ok(Submitted, Pending), Plan::Apply);
        assert_eq!(ok(Pending, Approved), Plan::Apply);
        assert_eq!(ok(Approved, Revoked), Plan::Apply);
        assert_eq!(ok(Approved, Approved), Plan::Unchanged);
        assert_eq!(
            ok(Approved, Pending),
            Plan::Stale,
            "a late start never undoes a decision"
        );
        for (from, to) in [
            (Revoked, Approved),
            (Rejected, Approved),
            (Approved, Rejected),
            (Expired, Approved),
            (Failed, Approved),
        ] {
            assert!(
                matches!(
                    plan(&request(from, 10), to, 20),
                    Err(Error::IllegalTransition { .. })
                ),
                "{from:?}->{to:?}"
            );
        }
    }

    #[test]
    fn clone_from_copies_every_field() {
        let mut source = request(Pending, 7);
        source.id = RequestId("other".into());
        source.template = "template-2".into();
        source.workflow = WorkflowId::new("w2");
        source.requester = UserId::new("u2");
        source.device = DeviceId::new("d2");
        Arc::make_mut(&mut source.fields).insert("reason".into(), "r".into());
        source.external_id = Some("pi-2".into());
        source.create_uncertain = true;
        source.created_at_ms = 5;
        source.version = 3;
        source.grant_consumed_at_ms = Some(8);
        source.history_dropped = 4;
        source.record(Approved, 9, "boss", Source::Console, Some("ok".into()));
        let mut target = request(Submitted, 0);
        target.record(Pending, 1, "system", Source::System, None);
        target.record(Revoked, 2, "system", Source::System, None);
        target.clone_from(&source);
        assert_eq!(target, source);
        assert_eq!(source.clone(), source);
    }

    #[test]
    fn audit_only_entries_are_capped_and_counted_while_state_changes_stay() {
        let mut r = request(Submitted, 0);
        r.record(Submitted, 1, "u", Source::Agent, None); // the filing
        let comment = |r: &mut ApprovalRequest, n: i64| {
            r.record(
                r.state,
                n,
                "approver",
                Source::System,
                Some(format!("comment {n}")),
            );
        };
        (0..60).for_each(|n| comment(&mut r, 10 + n));
        r.record(Pending, 100, "system", Source::System, None);
        (0..90).for_each(|n| comment(&mut r, 200 + n));
        r.record(Approved, 300, "dingtalk", Source::System, None);
        (0..10).for_each(|n| comment(&mut r, 400 + n));
        let audit = r.history.iter().filter(|t| t.from == t.to).count();
        assert_eq!(
            audit,
            1 + AUDIT_ENTRIES_KEPT,
            "the filing and the newest audit entries"
        );
        assert_eq!(r.history_dropped, 160 - AUDIT_ENTRIES_KEPT as u64);
        let moves: Vec<_> = r
            .history
            .iter()
            .filter(|t| t.from != t.to)
            .map(|t| t.to)
            .collect();
        assert_eq!(moves, [Pending, Approved], "state changes are never dropped");
        assert_eq!(r.history[0].at_ms, 1, "the filing stays first");
        assert_eq!(
            r.history.last().and_then(|t| t.note.as_deref()),
            Some("comment 409")
        );
        let oldest_kept = r.history.iter().skip(1).find(|t| t.from == t.to).map(|t| t.at_ms);
        assert_eq!(oldest_kept, Some(200 + 90 - (AUDIT_ENTRIES_KEPT as i64 - 10)));
        let json = serde_json::to_value(&r).unwrap_or_default();
        assert_eq!(json["history_dropped"], 60);
    }

    #[test]
    fn a_change_records_its_transition_and_sets_or_keeps_the_grant() {
        let grant = sase_policy::GrantSigner::from_bytes(&[1; 32]).sign(sase_policy::Grant {
            id: sase_policy::ids::GrantId::new("g"),
            user: UserId::new("u"),
            device: DeviceId::new("d"),
            action: Action::Uninstall,
            issued_at_ms: 1,
            expires_at_ms: 2,
            request_id: None,
        });
        let mut r = request(Pending, 0);
        let event = Source::External { event: "e".into() };
        r.apply(Change::new(Approved, 30, "boss", event.clone()).grant(Some(grant.clone())));
        r.apply(Change::new(Approved, 40, "boss", Source::Console).note(Some("audit".into())));
        assert_eq!(
            (r.state, r.state_at_ms),
            (Approved, 30),
            "an audit entry keeps the time"
        );
        assert_eq!(
            r.grant.as_ref(),
            Some(&grant),
            "kept when the change does not set it"
        );
        assert_eq!(r.history.len(), 2);
        let [first, second] = [&r.history[0], &r.history[1]];
        assert_eq!(
            (first.from, first.to, first.at_ms, &first.source),
            (Pending, Approved, 30, &event)
        );
        assert_eq!(
            (second.actor.as_str(), second.note.as_deref()),
            ("boss", Some("audit"))
        );
        r.apply(Change::new(Revoked, 50, "admin", Source::Console).grant(None));
        assert_eq!((r.state, r.state_at_ms, r.grant.as_ref()), (Revoked, 0, None));
    }

    #[test]
    fn state_names_are_what_serde_writes() {
        for state in [Submitted, Pending, Approved, Rejected, Revoked, Expired, Failed] {
            assert_eq!(
                serde_json::to_value(state).unwrap(),
                serde_json::Value::from(state.as_str())
            );
        }
    }

    #[test]
    fn history_written_before_the_rename_still_reads() {
        let old: Source = serde_json::from_str(r#"{"kind":"ding_talk_event","event":"ev-1"}"#).unwrap();
        assert_eq!(old, Source::External { event: "ev-1".into() });
        assert_eq!(
            serde_json::to_string(&old).unwrap(),
            r#"{"kind":"external","event":"ev-1"}"#
        );
    }

    #[test]
    fn older_events_are_stale() {
        assert_eq!(plan(&request(Approved, 100), Revoked, 50).unwrap(), Plan::Stale);
        assert_eq!(plan(&request(Pending, 100), Approved, 50).unwrap(), Plan::Stale);
        assert_eq!(
            plan(&request(Submitted, 0), Approved, 50).unwrap(),
            Plan::Apply,
            "set locally: unordered"
        );
    }
}
