//! Events from external approval systems, in the engine's terms: which instance, what
//! changed, when and by whom, and a key that identifies the event across redeliveries.
//! Vendor adapters (DingTalk: [`crate::dingtalk`]) translate their events into these and hand
//! them to [`Engine::handle_external`](crate::engine::Engine::handle_external).

use crate::backend::ExternalStatus;
use sase_policy::ids::WorkflowId;

/// What an event says about its instance.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ExternalChange {
    /// The instance's decision changed.
    Status(ExternalStatus),
    /// Something worth recording happened that decides nothing (an approver's task moved).
    Note(String),
}

/// An event about an external instance.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ExternalEvent {
    /// The external instance it is about.
    pub instance: String,
    /// The same for every delivery of this event, different for any other event: events are
    /// applied once per key.
    pub key: String,
    /// When it happened on the external system's clock, Unix ms, if it says (then it orders
    /// the instance's events; otherwise the engine's clock stands in).
    pub at_ms: Option<i64>,
    /// Who caused it (a user id of the external system, or its name).
    pub actor: String,
    /// The external form the event names (DingTalk's `processCode`), when it names one: it
    /// must be the form the request's workflow maps its template to.
    pub form: Option<String>,
    /// What changed.
    pub change: ExternalChange,
}

impl ExternalEvent {
    /// An event about `instance`, identified by `key`, caused by `actor`, with no time of its
    /// own.
    ///
    /// ```
    /// use sase_approval::backend::ExternalStatus;
    /// use sase_approval::event::{ExternalChange, ExternalEvent};
    ///
    /// let event = ExternalEvent::new("pi-1", "ev-42", "approver1", ExternalChange::Status(ExternalStatus::Approved))
    ///     .at_ms(Some(1_741_700_000_000));
    /// assert_eq!(event.at_ms, Some(1_741_700_000_000));
    /// ```
    pub fn new(
        instance: impl Into<String>,
        key: impl Into<String>,
        actor: impl Into<String>,
        change: ExternalChange,
    ) -> Self {
        Self {
            instance: instance.into(),
            key: key.into(),
            at_ms: None,
            actor: actor.into(),
            form: None,
            change,
        }
    }

    /// With the external form it names.
    #[must_use]
    pub fn form(mut self, form: Option<String>) -> Self {
        self.form = form;
        self
    }

    /// With the time it happened, on the external system's clock.
    #[must_use]
    pub fn at_ms(mut self, at_ms: Option<i64>) -> Self {
        self.at_ms = at_ms;
        self
    }
}

/// Where an event came from: the external account whose credentials verified it (a DingTalk
/// app's event-subscription crypto, or its Stream connection), as the workflows configured on
/// that account. An event may decide only requests of those workflows: a genuine event of one
/// app cannot approve another app's request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventOrigin {
    name: String,
    workflows: Vec<WorkflowId>,
}

impl EventOrigin {
    /// Events verified by the account `name` (for logs, e.g. `DingTalk app dingxxxx`), which
    /// may affect requests of `workflows`.
    pub fn new(name: impl Into<String>, workflows: Vec<WorkflowId>) -> Self {
        Self {
            name: name.into(),
            workflows,
        }
    }

    /// The account, for logs.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The workflows its events may affect.
    pub fn workflows(&self) -> &[WorkflowId] {
        &self.workflows
    }

    /// Whether its events may affect requests of `workflow`.
    pub fn allows(&self, workflow: &WorkflowId) -> bool {
        self.workflows.contains(workflow)
    }
}
