//! The crate's error type.

/// Everything that can go wrong in the approval engine.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A DingTalk call or callback failed.
    #[error(transparent)]
    DingTalk(#[from] dingtalk_sdk::Error),
    /// A policy could not be loaded or evaluated.
    #[error(transparent)]
    Policy(#[from] sase_policy::Error),
}
