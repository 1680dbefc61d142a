//! # sase-policy
//!
//! The anti-uninstallation policy model and its evaluator. Pure: no I/O, no async, no clock,
//! no DingTalk, so it runs inside a synchronous endpoint agent as well as in the server.
//!
//! - [`model`]: the policy document (JSON or TOML): switches, scope (groups, departments,
//!   device tags), whitelist, approval configuration, bilingual prompt with locale fallback.
//! - [`validate`](mod@validate): path-qualified validation against a [`Catalog`] of workflows.
//! - [`PolicySet`]: compiled indexes; [`PolicySet::evaluate`] answers Allow, Deny or
//!   RequireApproval with the deciding policy, the localized prompt and the reason. The rule
//!   for users matched by several policies is documented on [`set`].
//! - [`grant`]: Ed25519-signed grants an agent verifies offline.
//!
//! ```
//! use sase_policy::{Action, Catalog, Context, Effect, PolicyDocument, PolicySet, Subject, WorkflowKind};
//! use sase_policy::ids::{DeviceId, GroupId, UserId, WorkflowId};
//!
//! let doc: PolicyDocument = toml::from_str(r#"
//!     [[policies]]
//!     id = "p-sales"
//!     name = "Sales laptops"
//!     priority = 10
//!     switches = { anti_uninstall = true }
//!     scope = { groups = ["sales"] }
//!     approval = { allow_filing = true, workflow = "wf-dingtalk" }
//!     [policies.prompt.zh-CN]
//!     title = "禁止卸载"
//!     content = "请提交审批"
//!     primary_button = "提交审批"
//!     secondary_button = "取消"
//!     [policies.prompt.en-US]
//!     title = "Uninstall blocked"
//!     content = "File a request"
//!     primary_button = "File for Approval"
//!     secondary_button = "Cancel"
//! "#)?;
//! let catalog = Catalog::new().workflow(WorkflowId::new("wf-dingtalk"), WorkflowKind::DingTalk);
//! let set = PolicySet::compile(doc.policies, &catalog)?;
//!
//! let (user, device) = (UserId::new("u-1"), DeviceId::new("d-1"));
//! let groups = [GroupId::new("sales")];
//! let subject = Subject { user: &user, groups: &groups, departments: &[], device: &device, tags: &[] };
//! let ctx = Context { now_ms: 1_700_000_000_000, locale: "en-US", grant: None };
//! let decision = set.evaluate(&subject, Action::Uninstall, &ctx);
//! assert!(matches!(decision.effect, Effect::RequireApproval { workflow } if workflow.as_str() == "wf-dingtalk"));
//! assert_eq!(decision.prompt.map(|p| p.primary_button.as_str()), Some("File for Approval"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod decision;
mod error;
pub mod grant;
pub mod ids;
pub mod model;
pub mod set;
pub mod validate;

pub use decision::{Action, Context, Decision, Effect, GrantRejection, PresentedGrant, Reason, Subject};
pub use error::Error;
pub use grant::{Grant, GrantSigner, GrantVerifier, SignedGrant, UsedGrants};
pub use model::{Policy, PolicyDocument, PromptText};
pub use set::PolicySet;
pub use validate::{issues, validate, Catalog, IssueKind, ValidationIssue, WorkflowKind};
