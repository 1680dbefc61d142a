//! The online step: asking the server to consume a grant.

use sase_policy::SignedGrant;

/// What the server answered when asked to consume a grant.
///
/// ```
/// use sase_agent::ConsumeOutcome;
///
/// let outcome = ConsumeOutcome::Refused("grant_revoked".into());
/// assert!(outcome.is_grant_refusal());
/// assert!(!ConsumeOutcome::Refused("unauthorized".into()).is_grant_refusal());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConsumeOutcome {
    /// The server marked the grant used: it was issued, not revoked, not used, not expired.
    Consumed,
    /// The server refused, with its error code: `grant_revoked`, `grant_used`,
    /// `grant_expired`, `grant_foreign`, `grant_unknown` (the grant itself), `unauthorized`
    /// (the device token), or `http_<status>` for an answer outside the contract.
    Refused(String),
    /// No answer: a connection failure, a timeout, a 5xx, or an answer that cannot be
    /// understood. The agent may fall back to offline verification within its window.
    Unreachable(String),
}

impl ConsumeOutcome {
    /// Whether this is the server's refusal of the grant itself (a `grant_…` code), as
    /// opposed to a refusal of the device (`unauthorized`) or an unexpected answer. Such a
    /// grant is recorded as used, so that it cannot pass an offline fallback later.
    ///
    /// ```
    /// use sase_agent::ConsumeOutcome;
    ///
    /// assert!(ConsumeOutcome::Refused("grant_used".into()).is_grant_refusal());
    /// assert!(!ConsumeOutcome::Consumed.is_grant_refusal());
    /// ```
    pub fn is_grant_refusal(&self) -> bool {
        matches!(self, ConsumeOutcome::Refused(code) if code.starts_with("grant_"))
    }
}

/// Asks the server to consume a grant (mark it used), which is where revocation and
/// single use across devices are seen. `HttpConsume` (feature `http`)
/// calls the approval server's `POST /api/agent/grants/consume`; implement this trait to
/// use your own HTTP stack.
///
/// An implementation must not report [`ConsumeOutcome::Consumed`] unless the server said
/// so: anything it cannot understand is [`ConsumeOutcome::Unreachable`].
///
/// ```
/// use sase_agent::{Consume, ConsumeOutcome, SignedGrant};
///
/// /// A transport that is down: every grant goes through the offline window.
/// struct Offline;
///
/// impl Consume for Offline {
///     fn consume(&self, _grant: &SignedGrant) -> ConsumeOutcome {
///         ConsumeOutcome::Unreachable("no network".into())
///     }
/// }
/// ```
pub trait Consume {
    /// Asks the server to consume `grant`.
    fn consume(&self, grant: &SignedGrant) -> ConsumeOutcome;
}

impl<C: Consume + ?Sized> Consume for &C {
    fn consume(&self, grant: &SignedGrant) -> ConsumeOutcome {
        (**self).consume(grant)
    }
}
