//! Checking a DingTalk workflow against DingTalk itself: the app's credentials (a token) and
//! each mapping against its live form (`QuerySchemaByProcessCode`), so that a wrong secret, a
//! misspelt label or an unmapped required field is found when the workflow is saved or the
//! server starts, not at the first employee's request.

use crate::definition::{Mapping, Problem, Workflow};
use dingtalk_sdk::client::DingTalkClient;
use dingtalk_sdk::workflow::FormSchema;
use serde::Serialize;

/// The form components a mapped system field (text) can be written to.
const TEXT_LIKE: [&str; 5] = [
    "TextField",
    "TextareaField",
    "DDSelectField",
    "NumberField",
    "TextNote",
];

/// Whether a form component of this kind (`componentName`) can hold a mapped system field's
/// text value.
pub fn holds_text(component_name: &str) -> bool {
    TEXT_LIKE.contains(&component_name)
}

/// What checking a workflow against DingTalk found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "status", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Verification {
    /// DingTalk accepted the credentials and every mapping matches its live form.
    Verified,
    /// DingTalk answered, and the workflow is wrong: every problem found.
    Invalid {
        /// The problems, in the order of the mappings.
        problems: Vec<Problem>,
    },
    /// DingTalk could not be asked (unreachable, failing, throttled, or the month's call
    /// budget used): the workflow is neither known good nor bad, and is checked again later.
    Unverified {
        /// Why not.
        reason: String,
    },
}

/// The problems of `workflow`'s `index`-th mapping against its live `form`: every mapped
/// label must exist as a component that holds text, and every required form field must be
/// mapped. Empty when it fits.
pub fn form_problems(
    workflow: &Workflow,
    index: usize,
    mapping: &Mapping,
    form: &FormSchema,
) -> Vec<Problem> {
    let at = |f: &str| format!("workflows.{}.mappings[{index}].{f}", workflow.id);
    let mut problems = Vec::new();
    for (field, label) in &mapping.fields {
        let reason = match form.field(label) {
            None => format!(
                "the form `{}` has no field labelled `{label}` (its fields: {})",
                mapping.process_code,
                labels(form)
            ),
            Some(item) if !holds_text(&item.component_name) => format!(
                "form field `{label}` is a {}, which cannot hold a text value",
                item.component_name
            ),
            Some(_) => continue,
        };
        problems.push(Problem {
            path: at(&format!("fields.{field}")),
            reason,
        });
    }
    for item in form.schema_content.items.iter().filter(|i| i.props.required) {
        if !mapping.fields.values().any(|label| *label == item.props.label) {
            problems.push(Problem {
                path: at("fields"),
                reason: format!(
                    "the form's required field `{}` is not mapped: DingTalk refuses an instance without it",
                    item.props.label
                ),
            });
        }
    }
    problems
}

/// The form's labels, quoted, for a message.
fn labels(form: &FormSchema) -> String {
    let labels: Vec<String> = form
        .schema_content
        .items
        .iter()
        .map(|i| format!("`{}`", i.props.label))
        .collect();
    if labels.is_empty() {
        "none".to_owned()
    } else {
        labels.join(", ")
    }
}

/// Checks `workflow` (a DingTalk one) against DingTalk with `client`, the app's client: a
/// token, then each mapping's form. A call DingTalk refuses for good names what to fix (the
/// credentials, or the mapping's process code); one that may succeed later leaves the
/// workflow [`Unverified`](Verification::Unverified). Costs one call per mapping (and a
/// token, if none is cached).
pub async fn verify_workflow(client: &DingTalkClient, workflow: &Workflow) -> Verification {
    let mut problems = Vec::new();
    for (index, mapping) in workflow.mappings.iter().enumerate() {
        match client.workflow().form_schema(&mapping.process_code).await {
            Ok(form) => problems.extend(form_problems(workflow, index, mapping, &form)),
            Err(e) if e.is_retryable() || e.kind() == dingtalk_sdk::ErrorKind::QuotaExhausted => {
                return Verification::Unverified {
                    reason: format!("DingTalk could not be asked: {e}"),
                }
            }
            Err(e) if is_credentials(&e) => {
                // Every other call would fail the same way.
                return Verification::Invalid {
                    problems: vec![Problem {
                        path: format!("workflows.{}.dingtalk.client_secret", workflow.id),
                        reason: format!("DingTalk refused the app's credentials: {e}"),
                    }],
                };
            }
            Err(e) => problems.push(Problem {
                path: format!("workflows.{}.mappings[{index}].process_code", workflow.id),
                reason: format!(
                    "DingTalk has no form `{}` this app may use: {e}",
                    mapping.process_code
                ),
            }),
        }
    }
    if problems.is_empty() {
        Verification::Verified
    } else {
        Verification::Invalid { problems }
    }
}

/// Whether DingTalk refused the app itself (the token request, or a token it will not take).
fn is_credentials(e: &dingtalk_sdk::Error) -> bool {
    matches!(
        e,
        dingtalk_sdk::Error::Api {
            operation: "GetAccessToken",
            ..
        }
    ) || e.kind() == dingtalk_sdk::ErrorKind::Auth
}
