//! The workflow routes: each workflow's Request URL, and the console's list, read, create or
//! replace (checked against DingTalk before it is saved) and delete, each change naming the
//! version it replaces. Secrets are write-only: never in an answer.

use super::{
    body, engine_error, error, invalid, path, version, ApiError, AppState, Invalid, JsonBody, PathParams,
    ProblemView, VersionParam,
};
use crate::admins::Identity;
use crate::config::WorkflowConfig;
use crate::workflows::{WorkflowError, WorkflowView};
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse as _, Response};
use axum::{Extension, Json};
use serde_json::{json, Value};
use tower::ServiceExt as _;
use utoipa::ToSchema;

/// `/dingtalk/callback/{id}`: the Request URL of the workflow in force with that callback id,
/// verified with its app's crypto (the SDK's route); any other id is not found.
pub(super) async fn callback(
    State(state): State<AppState>,
    id: PathParams<String>,
    request: Request,
) -> Response {
    let id = match path(id) {
        Ok(id) => id,
        Err(r) => return r,
    };
    match state.workflows.callback(&id) {
        Some(route) => match route.oneshot(request).await {
            Ok(response) => response,
            Err(infallible) => match infallible {},
        },
        None => error(StatusCode::NOT_FOUND, "not_found", "no such Request URL"),
    }
}

fn workflow_error(e: &WorkflowError) -> Response {
    match e {
        WorkflowError::BadBody { .. } => error(StatusCode::BAD_REQUEST, "bad_body", e),
        WorkflowError::Invalid(problems) => invalid(
            "invalid_workflow",
            e.to_string(),
            problems
                .iter()
                .map(|p| ProblemView {
                    path: p.path.clone(),
                    message: p.reason.clone(),
                })
                .collect(),
        ),
        WorkflowError::InUse(_) => error(StatusCode::CONFLICT, "workflow_in_use", e),
        WorkflowError::Store(e) => engine_error(e),
        WorkflowError::Secrets(_) | WorkflowError::DingTalk(_) => {
            error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e)
        }
    }
}

/// Every workflow in force, by id: its Request URL and event-subscription address, its last
/// check against DingTalk, its version.
#[utoipa::path(get, path = "/api/console/workflows", operation_id = "list_workflows", tag = "workflows",
    responses((status = 200, description = "The workflows in force", body = Vec<WorkflowView>)))]
pub(super) async fn list(State(state): State<AppState>) -> Response {
    Json(state.workflows.views()).into_response()
}

/// A workflow in force.
#[utoipa::path(get, path = "/api/console/workflows/{id}", operation_id = "get_workflow", tag = "workflows",
    params(("id" = String, Path, description = "The workflow's id")),
    responses(
        (status = 200, description = "The workflow", body = WorkflowView),
        (status = 404, description = "`not_found`", body = ApiError),
    ))]
pub(super) async fn get(State(state): State<AppState>, id: PathParams<String>) -> Response {
    let id = match path(id) {
        Ok(id) => id,
        Err(r) => return r,
    };
    match state.workflows.view_of(&id) {
        Some(view) => Json(view).into_response(),
        None => error(StatusCode::NOT_FOUND, "not_found", format!("no workflow `{id}`")),
    }
}

/// `PUT /api/console/workflows/{id}`'s body. The handler reads it as JSON first (an update
/// may leave the secrets out, the stored ones kept), so this type describes it.
#[derive(ToSchema)]
#[expect(
    dead_code,
    reason = "the OpenAPI description of the body Workflows::put parses"
)]
pub(super) struct PutBody {
    /// The workflow, as in `server.toml`; its `id` is the URL's.
    workflow: WorkflowConfig,
    /// The version replaced: 0 creates.
    version: u64,
}

/// Creates or replaces a workflow, checked against DingTalk's live form before it is saved
/// (saved unverified, and checked again, when DingTalk cannot be asked), in force at once on
/// every replica.
#[utoipa::path(put, path = "/api/console/workflows/{id}", operation_id = "put_workflow", tag = "workflows",
    params(("id" = String, Path, description = "The workflow's id")),
    request_body = PutBody,
    responses(
        (status = 201, description = "Created", body = WorkflowView),
        (status = 200, description = "Replaced", body = WorkflowView),
        (status = 409, description = "`stale_version`", body = ApiError),
        (status = 422, description = "`invalid_workflow`: every problem with its path (DingTalk's refusals too)", body = Invalid),
    ))]
pub(super) async fn put(
    State(state): State<AppState>,
    Extension(by): Extension<Identity>,
    id: PathParams<String>,
    b: JsonBody<Value>,
) -> Response {
    let (id, b) = match (path(id), body(b)) {
        (Ok(id), Ok(b)) => (id, b),
        (Err(r), _) | (_, Err(r)) => return r,
    };
    // Which secrets were written, by name: never their values.
    let secrets_set: Vec<&str> = ["client_secret", "token", "aes_key"]
        .into_iter()
        .filter(|k| b.pointer(&format!("/workflow/dingtalk/{k}")).is_some())
        .collect();
    let before = state.workflows.view_of(&id);
    match state.workflows.put(&id, b).await {
        Ok((view, created)) => {
            let version = view.version();
            tracing::info!(workflow = %id, version, actor = %by.name, "workflow saved");
            state
                .audit
                .record(
                    &by.name,
                    "workflow.put",
                    format!("workflow/{id}"),
                    json!({"before": before, "after": view, "secrets_set": secrets_set}),
                )
                .await;
            let status = if created {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            (status, Json(view)).into_response()
        }
        Err(e) => {
            tracing::info!(workflow = %id, error = %e, "workflow not saved");
            workflow_error(&e)
        }
    }
}

/// Deletes a workflow no policy names and no open request uses.
#[utoipa::path(delete, path = "/api/console/workflows/{id}", operation_id = "delete_workflow", tag = "workflows",
    params(
        ("id" = String, Path, description = "The workflow's id"),
        ("version" = u64, Query, description = "The version deleted"),
    ),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "`bad_query`: no `version`", body = ApiError),
        (status = 404, description = "`not_found`", body = ApiError),
        (status = 409, description = "`stale_version`, or `workflow_in_use` (a policy names it, or requests are open)", body = ApiError),
    ))]
pub(super) async fn delete(
    State(state): State<AppState>,
    Extension(by): Extension<Identity>,
    id: PathParams<String>,
    q: VersionParam,
) -> Response {
    let id = match path(id) {
        Ok(id) => id,
        Err(r) => return r,
    };
    let version = match version(q) {
        Ok(version) => version,
        Err(r) => return r,
    };
    let naming = match state.policies.list().await {
        Ok(policies) => policies
            .into_iter()
            .filter(|s| {
                s.policy
                    .approval
                    .workflow
                    .as_ref()
                    .is_some_and(|w| w.as_str() == id)
            })
            .map(|s| s.policy.id.to_string())
            .collect::<Vec<_>>(),
        Err(e) => return engine_error(&e),
    };
    let before = state.workflows.view_of(&id);
    match state.workflows.delete(&id, version, &naming).await {
        Ok(()) => {
            tracing::info!(workflow = %id, actor = %by.name, "workflow deleted");
            state
                .audit
                .record(
                    &by.name,
                    "workflow.delete",
                    format!("workflow/{id}"),
                    json!({"before": before}),
                )
                .await;
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => workflow_error(&e),
    }
}
