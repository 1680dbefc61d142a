//! The workflow routes: each workflow's Request URL, and the console's list, read, create or
//! replace (checked against DingTalk before it is saved) and delete, each change naming the
//! version it replaces. Secrets are write-only: never in an answer.

use super::{
    body, engine_error, error, invalid, path, version, ApiError, AppState, Invalid, JsonBody, PathParams,
    ProblemView, VersionParam,
};
use crate::admins::Identity;
use crate::config::WorkflowConfig;
use crate::workflows::{FormApp, WorkflowError, WorkflowView};
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
        WorkflowError::Call(_) => error(StatusCode::BAD_GATEWAY, "dingtalk_error", e),
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
            let version = view.version;
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

/// `POST /api/console/dingtalk/form`.
#[derive(serde::Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct FormBody {
    /// The form (`PROC-…`).
    process_code: String,
    /// A workflow whose app reads the form (its stored secret, when `dingtalk` leaves it out).
    #[serde(default)]
    workflow: Option<String>,
    /// The app to read it with (a workflow not saved yet).
    #[serde(default)]
    #[schema(value_type = Option<FormAppBody>)]
    dingtalk: Option<FormApp>,
}

/// The app a live form is read with.
#[derive(ToSchema)]
#[expect(
    dead_code,
    reason = "the OpenAPI description of FormApp, which the body parses"
)]
pub(super) struct FormAppBody {
    client_id: String,
    /// Write-only; left out: the stored one of `workflow`.
    #[schema(write_only)]
    client_secret: Option<String>,
    /// Where DingTalk's API is (unset: DingTalk itself).
    api_base: Option<String>,
}

/// A form as DingTalk has it: what the mapping's labels may name.
#[derive(serde::Serialize, ToSchema)]
pub(super) struct LiveForm {
    name: Option<String>,
    /// Its top-level components, in order.
    fields: Vec<LiveField>,
}

/// One component of a live form.
#[derive(serde::Serialize, ToSchema)]
pub(super) struct LiveField {
    /// What a mapping names (`formComponentValues[].name`).
    label: String,
    /// `TextField`, `TextareaField`, `DDSelectField`, …
    component: String,
    /// DingTalk refuses an instance without it.
    required: bool,
    /// It can hold a system field's text.
    holds_text: bool,
}

/// A DingTalk form's live fields, for mapping system fields to its labels (one DingTalk
/// call, counted against the app's month).
#[utoipa::path(post, path = "/api/console/dingtalk/form", operation_id = "live_form", tag = "workflows",
    request_body = FormBody,
    responses(
        (status = 200, description = "The form", body = LiveForm),
        (status = 502, description = "`dingtalk_error`: DingTalk refused (a wrong secret, an unknown form) or failed", body = ApiError),
    ))]
pub(super) async fn live_form(State(state): State<AppState>, b: JsonBody<FormBody>) -> Response {
    let b = match body(b) {
        Ok(b) => b,
        Err(r) => return r,
    };
    match state
        .workflows
        .live_form(&b.process_code, b.workflow.as_deref(), b.dingtalk)
        .await
    {
        Ok(form) => Json(LiveForm {
            name: form.name,
            fields: form
                .schema_content
                .items
                .into_iter()
                .map(|item| LiveField {
                    holds_text: sase_approval::dingtalk::holds_text(&item.component_name),
                    label: item.props.label,
                    component: item.component_name,
                    required: item.props.required,
                })
                .collect(),
        })
        .into_response(),
        Err(e) => workflow_error(&e),
    }
}
