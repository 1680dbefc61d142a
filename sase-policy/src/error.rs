//! The crate's error type.

/// Everything that can go wrong when loading, validating or evaluating policies.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A policy document failed validation; `path` names the offending field.
    #[error("invalid policy at `{path}`: {reason}")]
    Invalid {
        /// Path of the offending field, e.g. `policies[2].scope`.
        path: String,
        /// What was wrong and how to fix it.
        reason: String,
    },
}
