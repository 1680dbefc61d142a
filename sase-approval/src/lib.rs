//! # sase-approval
//!
//! The approval-workflow engine. It turns a SASE approval request into an external approval
//! instance (DingTalk, or the built-in console workflow), follows the instance through its
//! state machine as DingTalk events, console actions and reconciliation arrive, and issues a
//! signed `sase-policy` grant on approval.
//!
//! - [`definition`]: templates with system fields, workflows, template → form mappings, and
//!   their validation (optionally against the live DingTalk form).
//! - [`state`]: the request record, its state machine (idempotent, time-ordered) and the
//!   [`Change`](state::Change)s the engine decides and stores apply.
//! - [`store`]: [`ApprovalStore`](store::ApprovalStore) with in-memory and SQLite stores
//!   (optimistic concurrency; an event's change written with its de-duplication key, in
//!   place in memory).
//! - [`backend`]: [`ApprovalBackend`](backend::ApprovalBackend) for DingTalk and built-in.
//! - [`engine`]: [`Engine`](engine::Engine): submit, handle_event, approve/reject/revoke,
//!   reconcile, subscribe.
//!
//! ```
//! use sase_approval::backend::BuiltinBackend;
//! use sase_approval::definition::{Workflow, WorkflowKind};
//! use sase_approval::engine::{Engine, SubmitRequest};
//! use sase_approval::state::RequestState;
//! use sase_approval::store::MemoryStore;
//! use sase_policy::ids::{DeviceId, UserId, WorkflowId};
//! use std::sync::Arc;
//!
//! # tokio_test_block_on(async {
//! let workflow = Workflow {
//!     id: WorkflowId::new("wf-console"),
//!     name: "Console approval".into(),
//!     kind: WorkflowKind::BuiltIn { approvers: vec![UserId::new("admin")] },
//!     mappings: vec![],
//!     callback_id: sase_approval::definition::new_callback_id(),
//! };
//! let engine = Engine::builder(Arc::new(MemoryStore::new()), sase_policy::GrantSigner::from_bytes(&[1; 32]))
//!     .workflow(workflow, Arc::new(BuiltinBackend))
//!     .build()?;
//! let request = engine
//!     .submit(SubmitRequest::uninstall(WorkflowId::new("wf-console"), UserId::new("alice"), DeviceId::new("laptop-1"), "reinstalling"))
//!     .await?;
//! assert_eq!(request.state, RequestState::Pending);
//! let approved = engine.approve(&request.id, "admin", Some("ok")).await?;
//! assert!(approved.grant.is_some());
//! # Ok::<(), sase_approval::Error>(()) }).unwrap();
//! # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
//! #     tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
//! # }
//! ```

pub mod backend;
pub mod definition;
pub mod engine;
mod error;
pub mod state;
pub mod store;

pub use error::{Error, Result};
