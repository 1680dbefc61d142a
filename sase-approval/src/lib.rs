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
//! - [`backend`]: [`ApprovalBackend`](backend::ApprovalBackend), the built-in backend, and
//!   the vendor-neutral failures ([`BackendError`](backend::BackendError)) backends report.
//! - [`event`]: [`ExternalEvent`](event::ExternalEvent), an external system's event in the
//!   engine's terms.
//! - [`engine`]: [`Engine`](engine::Engine): submit, handle_external, approve/reject/revoke,
//!   reconcile, subscribe.
//! - [`recheck`]: when reconciliation looks at a pending request again (a backoff from its
//!   last activity).
//! - [`audit`]: the hash-chained audit log's records and entries, and the check that a chain
//!   read back from a store is whole.
//! - [`clock`]: the [`Clock`](clock::Clock) the engine reads (manual in tests).
//! - `dingtalk` (feature `dingtalk`, on by default): the DingTalk adapter — the backend over
//!   the OA approval API, DingTalk events translated for the engine, the event handler for the
//!   SDK's HTTP-push route and Stream client, and the check of a mapping against the live
//!   form.
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

#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod audit;
pub mod backend;
pub mod clock;
pub mod definition;
#[cfg(feature = "dingtalk")]
#[cfg_attr(docsrs, doc(cfg(feature = "dingtalk")))]
pub mod dingtalk;
pub mod engine;
mod error;
pub mod event;
pub mod recheck;
pub mod state;
pub mod store;

pub use error::{Error, GrantRefusal, Result};
