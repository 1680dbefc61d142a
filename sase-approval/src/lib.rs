//! # sase-approval
//!
//! The approval-workflow engine: it turns a SASE approval request into an external approval
//! instance (DingTalk or built-in), follows that instance through its state machine as events and
//! console actions arrive, and issues a signed grant from `sase-policy` on approval.
//!
//! This crate is at its foundation stage: only its error type exists so far.

mod error;

pub use error::Error;
