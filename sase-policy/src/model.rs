//! The policy document: what an admin configures, serde-friendly (JSON and TOML).

use crate::ids::{DeptId, DeviceTag, GroupId, PolicyId, UserId, WorkflowId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A set of policies as stored or edited.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PolicyDocument {
    /// The policies.
    #[serde(default)]
    pub policies: Vec<Policy>,
}

/// One anti-uninstallation policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
// A misspelt key (`whitlist`) must not silently leave a rule out.
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Unique id.
    pub id: PolicyId,
    /// Display name.
    pub name: String,
    /// A disabled policy never decides anything.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Higher wins when several policies match a user.
    #[serde(default)]
    pub priority: i32,
    /// What the policy enforces.
    #[serde(default)]
    pub switches: Switches,
    /// Whom it applies to.
    #[serde(default)]
    pub scope: Scope,
    /// Users exempt from it (stable ids, not names).
    #[serde(default)]
    pub whitelist: Vec<UserId>,
    /// Whether employees may file for approval, and where.
    #[serde(default)]
    pub approval: ApprovalConfig,
    /// What the agent shows, per locale (`zh-CN`, `en-US`, …).
    #[serde(default)]
    pub prompt: BTreeMap<String, PromptText>,
}

fn yes() -> bool {
    true
}

/// The policy's switches.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
#[serde(default)]
pub struct Switches {
    /// Uninstalling the SASE App needs approval (or is denied).
    pub anti_uninstall: bool,
    /// The agent starts with the system (a setting the agent reads).
    pub auto_start: bool,
    /// Logging off the SASE App needs approval (or is denied).
    pub anti_logoff: bool,
}

/// Whom a policy applies to: a user matches if any of their groups, departments or device
/// tags is listed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
#[serde(default)]
pub struct Scope {
    /// User groups.
    pub groups: Vec<GroupId>,
    /// Departments.
    pub departments: Vec<DeptId>,
    /// Device tags.
    pub device_tags: Vec<DeviceTag>,
}

impl Scope {
    /// Whether nothing is listed.
    pub fn is_empty(&self) -> bool {
        self.groups.is_empty() && self.departments.is_empty() && self.device_tags.is_empty()
    }
}

/// Whether employees may file for approval, and through which workflow.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
#[serde(default)]
pub struct ApprovalConfig {
    /// Employees may file a request; otherwise the action is simply denied.
    pub allow_filing: bool,
    /// The approval workflow requests go to.
    pub workflow: Option<WorkflowId>,
}

/// The prompt in one language.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PromptText {
    /// Dialog title.
    pub title: String,
    /// Dialog text.
    pub content: String,
    /// Primary button, e.g. "File for Approval".
    pub primary_button: String,
    /// Secondary button, e.g. "Cancel".
    pub secondary_button: String,
}

/// Picks the prompt for `locale`: the exact locale, then another of the same language
/// (`zh-TW` → `zh-CN`), then `en-US`, then `zh-CN`, then any.
pub fn localized<'a>(prompt: &'a BTreeMap<String, PromptText>, locale: &str) -> Option<&'a PromptText> {
    if let Some(text) = prompt.get(locale) {
        return Some(text);
    }
    let language = locale.split(['-', '_']).next().unwrap_or(locale);
    prompt
        .iter()
        .find(|(l, _)| {
            l.split(['-', '_'])
                .next()
                .is_some_and(|lang| lang.eq_ignore_ascii_case(language))
        })
        .map(|(_, t)| t)
        .or_else(|| prompt.get("en-US"))
        .or_else(|| prompt.get("zh-CN"))
        .or_else(|| prompt.values().next())
}
