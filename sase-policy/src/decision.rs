//! What is evaluated and what comes out.

use crate::grant::{GrantVerifier, SignedGrant, UsedGrants};
use crate::ids::{DeptId, DeviceId, DeviceTag, GroupId, PolicyId, UserId, WorkflowId};
use crate::model::PromptText;
use serde::{Deserialize, Serialize};

/// An action the agent asks about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Action {
    /// Uninstall the SASE App (the anti-uninstall switch).
    Uninstall,
    /// Log off the SASE App (the anti-logoff switch).
    Logoff,
}

impl Action {
    /// The stable name used in signed grants.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Uninstall => "uninstall",
            Action::Logoff => "logoff",
        }
    }
}

/// Who asks, from which device.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    /// The user.
    pub user: &'a UserId,
    /// The user's groups.
    pub groups: &'a [GroupId],
    /// The user's departments.
    pub departments: &'a [DeptId],
    /// The device.
    pub device: &'a DeviceId,
    /// The device's tags.
    pub tags: &'a [DeviceTag],
}

/// A grant presented with the request, and what is needed to check it offline.
#[derive(Clone, Copy)]
pub struct PresentedGrant<'a> {
    /// The signed grant.
    pub grant: &'a SignedGrant,
    /// The server's public key.
    pub verifier: &'a GrantVerifier,
    /// Grant ids already used.
    pub used: &'a dyn UsedGrants,
}

impl std::fmt::Debug for PresentedGrant<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PresentedGrant")
            .field("grant", self.grant)
            .field("verifier", self.verifier)
            .finish_non_exhaustive()
    }
}

/// When and how the question is asked.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// Now, Unix ms (passed in: evaluation reads no clock).
    pub now_ms: i64,
    /// The user's locale, e.g. `zh-CN`.
    pub locale: &'a str,
    /// A grant the agent holds, if any.
    pub grant: Option<PresentedGrant<'a>>,
}

/// What the agent must do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Effect<'a> {
    /// Go ahead.
    Allow,
    /// Refuse; the user may not file for approval.
    Deny,
    /// Show the prompt; the user may file for approval through this workflow.
    RequireApproval {
        /// Where requests go.
        workflow: &'a WorkflowId,
    },
}

impl Effect<'_> {
    /// Deny > RequireApproval > Allow: breaks ties between equally prioritised policies.
    pub(crate) fn restrictiveness(&self) -> u8 {
        match self {
            Effect::Allow => 0,
            Effect::RequireApproval { .. } => 1,
            Effect::Deny => 2,
        }
    }
}

/// Why the decision came out as it did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Reason {
    /// No enabled policy's scope includes the user.
    OutOfScope,
    /// Only disabled policies include the user.
    PolicyDisabled,
    /// The deciding policy's switch for this action is off.
    SwitchOff,
    /// The user is on the whitelist of a policy that includes them.
    Whitelisted,
    /// The switch is on and employees may file for approval.
    ApprovalRequired,
    /// The switch is on and employees may not file.
    FilingDisabled,
    /// A valid grant for this user, device and action was presented.
    ValidGrant,
}

/// Why a presented grant was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum GrantRejection {
    /// The signature does not verify.
    BadSignature,
    /// Past its expiry.
    Expired,
    /// Its single-use id was already used.
    Used,
    /// Issued for another user, device or action.
    Foreign,
}

/// The answer, explained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision<'a> {
    /// What to do.
    pub effect: Effect<'a>,
    /// The primary reason.
    pub reason: Reason,
    /// The policy that decided, if any.
    pub policy: Option<&'a PolicyId>,
    /// The prompt to show, in the requested locale (with fallback), when not allowed.
    pub prompt: Option<&'a PromptText>,
    /// Why a presented grant was rejected, if one was.
    pub grant_rejected: Option<GrantRejection>,
    /// Whether the agent should start with the system (the deciding policy's auto-start switch).
    pub auto_start: bool,
}
