//! What an admin defines: workflow templates with their system fields, and approval
//! workflows (built-in, or DingTalk with credentials and template → process-code mappings).

use crate::error::{Error, Result};
use dingtalk_sdk::ProcessCode;
use sase_policy::ids::{UserId, WorkflowId};
use sase_policy::Action;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// The system fields of the built-in templates ("app uninstall" and "app logoff").
pub const APP_UNINSTALL_FIELDS: [&str; 5] = ["requester", "device", "reason", "app_version", "requested_at"];

/// A template: a kind of request and the system fields it carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Template {
    /// Template id, e.g. `app_uninstall`.
    pub id: String,
    /// Display name.
    pub name: String,
    /// The system fields a request of this template fills.
    pub fields: Vec<String>,
    /// The system fields every mapping of this template must map: without them the approver
    /// decides blind.
    #[serde(default)]
    pub required: Vec<String>,
}

impl Template {
    /// The built-in "app uninstall" template (the anti-uninstall switch).
    pub fn app_uninstall() -> Self {
        Self::built_in("app_uninstall", "App uninstall")
    }

    /// The built-in "app logoff" template (the anti-logoff switch): the same system fields,
    /// usually its own DingTalk form so approvers see which it is.
    pub fn app_logoff() -> Self {
        Self::built_in("app_logoff", "App logoff")
    }

    /// The id of the template a request for `action` files under: `app_` and the action's
    /// name.
    ///
    /// ```
    /// use sase_approval::definition::Template;
    /// use sase_policy::Action;
    ///
    /// assert_eq!(Template::id_for(Action::Logoff), "app_logoff");
    /// assert_eq!(Template::id_for(Action::Uninstall), Template::app_uninstall().id);
    /// ```
    pub fn id_for(action: Action) -> String {
        format!("app_{}", action.as_str())
    }

    /// Every built-in template, in the order a console offers them.
    pub fn all_built_in() -> Vec<Self> {
        vec![Self::app_uninstall(), Self::app_logoff()]
    }

    fn built_in(id: &str, name: &str) -> Self {
        Self {
            id: id.to_owned(),
            name: name.to_owned(),
            fields: APP_UNINSTALL_FIELDS.iter().map(|f| (*f).to_owned()).collect(),
            required: vec!["reason".to_owned()],
        }
    }
}

/// How DingTalk delivers events to us.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Delivery {
    /// HTTP push to our Request URL.
    HttpPush,
    /// Stream mode (a WebSocket we open).
    Stream,
}

/// DingTalk credentials and event subscription of one workflow. `Debug` redacts secrets.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DingTalkSettings {
    /// Client ID (AppKey).
    pub client_id: String,
    /// Client secret.
    pub client_secret: String,
    /// Event-subscription token.
    pub token: String,
    /// Event-subscription aes_key (43 characters).
    pub aes_key: String,
    /// Receiver id of events (the AppKey for console-configured subscriptions).
    pub receiver_id: String,
    /// HTTP push or Stream.
    pub delivery: Delivery,
    /// The originator's department when none is known (`-1` = root).
    #[serde(default = "root_dept")]
    pub dept_id: i64,
}

fn root_dept() -> i64 {
    -1
}

impl fmt::Debug for DingTalkSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DingTalkSettings")
            .field("client_id", &self.client_id)
            .field("client_secret", &"<redacted>")
            .field("token", &"<redacted>")
            .field("aes_key", &"<redacted>")
            .field("receiver_id", &self.receiver_id)
            .field("delivery", &self.delivery)
            .finish()
    }
}

/// Where a workflow's requests are approved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum WorkflowKind {
    /// In SASE's console, by these approvers.
    BuiltIn {
        /// Who may approve.
        approvers: Vec<UserId>,
    },
    /// In DingTalk.
    DingTalk(DingTalkSettings),
}

/// How one template maps onto one DingTalk form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Mapping {
    /// The template.
    pub template: String,
    /// The DingTalk form.
    pub process_code: ProcessCode,
    /// System field → form label.
    pub fields: BTreeMap<String, String>,
}

/// An approval workflow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Workflow {
    /// Id (what policies name).
    pub id: WorkflowId,
    /// Display name.
    pub name: String,
    /// Built-in or DingTalk.
    pub kind: WorkflowKind,
    /// Template → form mappings (DingTalk workflows).
    #[serde(default)]
    pub mappings: Vec<Mapping>,
    /// Unguessable id of this workflow's Request URL, `/dingtalk/callback/{callback_id}`.
    #[serde(default = "new_callback_id")]
    pub callback_id: String,
}

/// One thing wrong with a workflow, and the path of what to fix, e.g.
/// `workflows.wf.mappings[0].fields.reason`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Problem {
    /// Where: the workflow's field, as in the configuration.
    pub path: String,
    /// What is wrong.
    pub reason: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.reason)
    }
}

/// A fresh unguessable id (128 random bits, hex).
pub fn new_callback_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

impl Workflow {
    /// The Request URL path DingTalk must push this workflow's events to.
    pub fn callback_path(&self) -> String {
        format!("/dingtalk/callback/{}", self.callback_id)
    }

    /// The mapping for `template`.
    pub fn mapping(&self, template: &str) -> Option<&Mapping> {
        self.mappings.iter().find(|m| m.template == template)
    }

    /// The DingTalk settings, for DingTalk workflows.
    pub fn dingtalk(&self) -> Option<&DingTalkSettings> {
        match &self.kind {
            WorkflowKind::DingTalk(s) => Some(s),
            WorkflowKind::BuiltIn { .. } => None,
        }
    }

    /// Every problem of the mappings against the templates: unknown templates or system
    /// fields, templates mapped twice, required system fields left out, DingTalk workflows
    /// without a mapping. Empty when there is none.
    pub fn problems(&self, templates: &[Template]) -> Vec<Problem> {
        let mut problems = Vec::new();
        let mut bad = |path: String, reason: String| problems.push(Problem { path, reason });
        if self.dingtalk().is_some() && self.mappings.is_empty() {
            bad(
                format!("workflows.{}.mappings", self.id),
                "a DingTalk workflow needs a mapping".into(),
            );
        }
        for (i, m) in self.mappings.iter().enumerate() {
            let at = |f: &str| format!("workflows.{}.mappings[{i}].{f}", self.id);
            if self
                .mappings
                .iter()
                .take(i)
                .any(|other| other.template == m.template)
            {
                bad(
                    at("template"),
                    format!("template `{}` is mapped twice", m.template),
                );
            }
            let Some(template) = templates.iter().find(|t| t.id == m.template) else {
                bad(at("template"), format!("unknown template `{}`", m.template));
                continue;
            };
            for field in m.fields.keys() {
                if !template.fields.contains(field) {
                    bad(
                        at(&format!("fields.{field}")),
                        format!("`{field}` is not a system field of `{}`", template.id),
                    );
                }
            }
            for field in template.required.iter().filter(|f| !m.fields.contains_key(*f)) {
                bad(
                    at(&format!("fields.{field}")),
                    format!(
                        "`{field}` must be mapped to a form field: without it the approver decides blind"
                    ),
                );
            }
        }
        problems
    }

    /// Checks the mappings against the templates ([`problems`](Self::problems)).
    ///
    /// # Errors
    /// [`Error::Definition`] naming the first problem's field.
    pub fn validate(&self, templates: &[Template]) -> Result<()> {
        match self.problems(templates).into_iter().next() {
            Some(Problem { path, reason }) => Err(Error::Definition { path, reason }),
            None => Ok(()),
        }
    }
}
