//! The crate's one error type.

use sase_policy::ids::GrantId;
use std::path::PathBuf;
use std::time::Duration;

/// Why a grant does not authorize the action, or why the verifier cannot be used.
///
/// Every variant refuses: the action may not proceed.
///
/// ```
/// use sase_agent::AgentError;
///
/// let e = AgentError::Refused { reason: "grant_revoked".into() };
/// assert_eq!(e.to_string(), "the server refused the grant: grant_revoked");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AgentError {
    /// The verifier's configuration is unusable (no pinned key, a bad server URL).
    #[error("bad agent configuration: {reason}")]
    Config {
        /// What is wrong.
        reason: String,
    },
    /// No pinned key verifies the grant's signature (it was signed by another key, or
    /// altered).
    #[error("the grant's signature does not verify with any pinned key")]
    BadSignature,
    /// The grant was issued for another user, device or action than this agent's.
    #[error("the grant is for another {field}")]
    Foreign {
        /// `user`, `device` or `action`.
        field: &'static str,
    },
    /// The grant is past its expiry.
    #[error("the grant expired at {expires_at_ms} (now {now_ms})")]
    Expired {
        /// Expiry, Unix ms.
        expires_at_ms: i64,
        /// When it was checked, Unix ms.
        now_ms: i64,
    },
    /// This agent already used (or the server already refused) this grant.
    #[error("grant `{id}` was already used")]
    Used {
        /// The grant id.
        id: GrantId,
    },
    /// The server refused to consume the grant: `grant_revoked`, `grant_used`,
    /// `grant_expired`, `grant_foreign`, `grant_unknown`, `unauthorized` (the device token),
    /// or `http_<status>` for an unexpected answer.
    #[error("the server refused the grant: {reason}")]
    Refused {
        /// The server's error code.
        reason: String,
    },
    /// The server could not be reached and the grant is older than the offline window, so
    /// its revocation cannot be ruled out.
    #[error(
        "the server is unreachable ({unreachable}) and the grant was issued {age_ms} ms ago, \
         more than the offline window of {} ms",
        window.as_millis()
    )]
    OfflineTooOld {
        /// Why the server could not be reached.
        unreachable: String,
        /// The grant's age, ms.
        age_ms: i64,
        /// The offline window.
        window: Duration,
    },
    /// The used-grant record file cannot be read, parsed or written. A corrupt record is
    /// never emptied silently: that would let used grants be used again.
    #[error("used-grant record {}: {reason}", path.display())]
    Record {
        /// The record file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
}
