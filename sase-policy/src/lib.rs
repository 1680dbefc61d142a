//! # sase-policy
//!
//! The anti-uninstallation policy model and its evaluator. Pure: no I/O, no async, no DingTalk,
//! so it runs inside a synchronous endpoint agent as well as in the server.

mod error;

pub use error::Error;
