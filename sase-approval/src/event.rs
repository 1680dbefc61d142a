//! Events from external approval systems, in the engine's terms: which instance, what
//! changed, when and by whom, and a key that identifies the event across redeliveries.
//! Vendor adapters (DingTalk: [`crate::dingtalk`]) translate their events into these and hand
//! them to [`Engine::handle_external`](crate::engine::Engine::handle_external).

use crate::backend::ExternalStatus;

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
            change,
        }
    }

    /// With the time it happened, on the external system's clock.
    #[must_use]
    pub fn at_ms(mut self, at_ms: Option<i64>) -> Self {
        self.at_ms = at_ms;
        self
    }
}
