//! `GET /api/console/export`: the configuration in force (the workflows and the policies, as
//! the console and `server.toml` have made them) as a `server.toml` fragment. Secrets are
//! write-only, so they are left out: the file says where to add them.

use super::{engine_error, error, AppState};
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::http::StatusCode;
use axum::response::{IntoResponse as _, Response};
use sase_policy::PolicyDocument;
use serde::Serialize;

/// What the export holds, in `server.toml`'s shape.
#[derive(Serialize)]
struct Export {
    workflows: Vec<crate::config::WorkflowConfig>,
    policies: PolicyDocument,
}

/// The workflows and policies in force as a `server.toml` fragment (secrets left out: the
/// file says where to add them).
#[utoipa::path(get, path = "/api/console/export", operation_id = "export_configuration", tag = "workflows",
    responses((status = 200, description = "TOML", content_type = "application/toml; charset=utf-8", body = String)))]
pub(super) async fn export(State(state): State<AppState>) -> Response {
    let mut policies = match state.policies.list().await {
        Ok(stored) => stored.into_iter().map(|s| s.policy).collect::<Vec<_>>(),
        Err(e) => return engine_error(&e),
    };
    policies.sort_by(|a, b| b.priority.cmp(&a.priority).then_with(|| a.id.cmp(&b.id)));
    let workflows = state.workflows.configs();
    let needing_secrets: Vec<String> = workflows
        .iter()
        .filter(|w| w.dingtalk.is_some())
        .map(|w| w.id.clone())
        .collect();
    let export = Export {
        workflows,
        policies: PolicyDocument { policies },
    };
    let body = match toml::to_string(&export) {
        Ok(body) => body,
        Err(e) => {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                format!("cannot write the configuration as TOML: {e}"),
            )
        }
    };
    let mut text = String::from(
        "# The workflows and policies in force, exported by the approval server.\n\
         # Secrets are write-only and not exported: to start from this file, add client_secret,\n\
         # token and aes_key to each [workflows.dingtalk]",
    );
    if needing_secrets.is_empty() {
        text.push_str(" (none here).\n");
    } else {
        text.push_str(&format!(" (workflows {}).\n", needing_secrets.join(", ")));
    }
    text.push_str(
        "# Devices are not exported: their tokens are stored as hashes; agents keep their own.\n\n",
    );
    text.push_str(&body);
    ([(CONTENT_TYPE, "application/toml; charset=utf-8")], text).into_response()
}
