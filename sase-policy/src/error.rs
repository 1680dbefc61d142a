//! The crate's one error type.

use crate::validate::ValidationIssue;

/// Everything that can go wrong when loading policies or checking grants.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A policy set failed validation; every problem found is listed, each with its path.
    #[error("{} invalid polic{}: {}", issues.len(), if issues.len() == 1 { "y" } else { "ies" }, issues.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Validation {
        /// The problems, in document order.
        issues: Vec<ValidationIssue>,
    },
    /// A grant's signature does not verify with the server's public key.
    #[error("grant signature is invalid")]
    GrantBadSignature,
    /// A grant is past its expiry.
    #[error("grant expired at {expires_at} (now {now})")]
    GrantExpired {
        /// Expiry, Unix ms.
        expires_at: i64,
        /// The time it was checked, Unix ms.
        now: i64,
    },
    /// A grant's single-use id was already used.
    #[error("grant `{id}` was already used")]
    GrantUsed {
        /// The grant id.
        id: String,
    },
    /// A grant was issued for another user, device or action.
    #[error("grant is for another {field}")]
    GrantForeign {
        /// `user`, `device` or `action`.
        field: &'static str,
    },
    /// A key or an encoded grant is malformed.
    #[error("malformed key or grant: {reason}")]
    BadGrantEncoding {
        /// What is wrong.
        reason: String,
    },
}
