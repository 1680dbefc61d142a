//! The policy routes: an admin lists, reads, creates, replaces and deletes policies (each
//! change naming the version it replaces, validated before it is saved), and previews who
//! gains and who loses protection before saving.

use super::{
    body, engine_error, error, path, version, ApiError, AppState, Invalid, JsonBody, PathParams, ProblemView,
    VersionParam,
};
use crate::admins::Identity;
use crate::policies::{Change, PolicyError, Preview, Stored};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse as _, Response};
use axum::{Extension, Json};
use sase_policy::ids::PolicyId;
use sase_policy::{Policy, ValidationIssue};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::ToSchema;

/// A policy as the console shows it: its fields, its version and when it was last written.
#[derive(Serialize)]
pub(super) struct PolicyView {
    #[serde(flatten)]
    policy: Policy,
    #[serde(flatten)]
    stamp: Stamp,
}

/// What the store adds to a policy.
#[derive(Serialize, ToSchema)]
struct Stamp {
    /// The stored version, to name in a change.
    version: u64,
    /// Last written, Unix ms.
    updated_at_ms: i64,
}

// By hand: `Policy` refuses unknown fields (`additionalProperties: false`), so the `allOf` a
// derive makes of a flattened policy would refuse the stamp; the view is one object instead.
impl utoipa::PartialSchema for PolicyView {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        super::openapi::merged(
            <Policy as utoipa::PartialSchema>::schema(),
            <Stamp as utoipa::PartialSchema>::schema(),
            "A policy as the console shows it: its fields, its version and when it was last written.",
        )
    }
}

impl ToSchema for PolicyView {
    fn schemas(schemas: &mut Vec<(String, utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>)>) {
        <Policy as ToSchema>::schemas(schemas);
    }
}

fn view(stored: &Stored) -> PolicyView {
    PolicyView {
        policy: stored.policy.clone(),
        stamp: Stamp {
            version: stored.version,
            updated_at_ms: stored.updated_at_ms,
        },
    }
}

fn invalid(issues: &[ValidationIssue]) -> Response {
    let message = issues
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ");
    let problems = issues
        .iter()
        .map(|i| ProblemView {
            path: i.path.clone(),
            message: i.message.clone(),
        })
        .collect();
    super::invalid("invalid_policy", message, problems)
}

fn policy_error(e: &PolicyError) -> Response {
    match e {
        PolicyError::Invalid(issues) => invalid(issues),
        PolicyError::Store(e) => engine_error(e),
    }
}

/// `value` as a `T`, a mistake named by its path in the body (`policy.whitlist`).
fn parse<T: DeserializeOwned>(value: Value) -> Result<T, Response> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let at = e.path().to_string();
        error(
            StatusCode::BAD_REQUEST,
            "bad_body",
            format!("at `{at}`: {}", e.into_inner()),
        )
    })
}

/// Every policy, in precedence order (priority high to low, then id).
#[utoipa::path(get, path = "/api/console/policies", operation_id = "list_policies", tag = "policies",
    responses((status = 200, description = "The policies", body = Vec<PolicyView>)))]
pub(super) async fn list(State(state): State<AppState>) -> Response {
    match state.policies.list().await {
        Ok(mut stored) => {
            stored.sort_by(|a, b| {
                b.policy
                    .priority
                    .cmp(&a.policy.priority)
                    .then_with(|| a.policy.id.cmp(&b.policy.id))
            });
            Json(stored.iter().map(view).collect::<Vec<_>>()).into_response()
        }
        Err(e) => engine_error(&e),
    }
}

/// A policy.
#[utoipa::path(get, path = "/api/console/policies/{id}", operation_id = "get_policy", tag = "policies",
    params(("id" = String, Path, description = "The policy's id")),
    responses(
        (status = 200, description = "The policy", body = PolicyView),
        (status = 404, description = "`not_found`", body = ApiError),
    ))]
pub(super) async fn get(State(state): State<AppState>, id: PathParams<String>) -> Response {
    let id = match path(id) {
        Ok(id) => id,
        Err(r) => return r,
    };
    match state.policies.get(&id).await {
        Ok(Some(stored)) => Json(view(&stored)).into_response(),
        Ok(None) => error(StatusCode::NOT_FOUND, "not_found", format!("no policy `{id}`")),
        Err(e) => engine_error(&e),
    }
}

/// `PUT /api/console/policies/{id}`: the policy, replacing `version` (0: a new one).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct PutBody {
    /// The policy; its `id` is the URL's.
    policy: Policy,
    /// The version replaced: 0 creates.
    version: u64,
}

/// Creates or replaces a policy, validated before it is saved, in force at once on every
/// replica.
#[utoipa::path(put, path = "/api/console/policies/{id}", operation_id = "put_policy", tag = "policies",
    params(("id" = String, Path, description = "The policy's id")),
    request_body = PutBody,
    responses(
        (status = 201, description = "Created", body = PolicyView),
        (status = 200, description = "Replaced", body = PolicyView),
        (status = 409, description = "`stale_version`", body = ApiError),
        (status = 422, description = "`invalid_policy`: every problem with its path", body = Invalid),
    ))]
pub(super) async fn put(
    State(state): State<AppState>,
    Extension(by): Extension<Identity>,
    id: PathParams<String>,
    b: JsonBody<Value>,
) -> Response {
    let (id, b) = match (path(id), body(b).and_then(parse::<PutBody>)) {
        (Ok(id), Ok(b)) => (id, b),
        (Err(r), _) | (_, Err(r)) => return r,
    };
    if b.policy.id.as_str() != id {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            format!(
                "at `policy.id`: `{}` is not the policy of this URL, `{id}`",
                b.policy.id
            ),
        );
    }
    let before = state.policies.get(&id).await.ok().flatten().map(|s| view(&s));
    match state.policies.put(&b.policy, b.version).await {
        Ok(stored) => {
            tracing::info!(policy = %id, version = stored.version, actor = %by.name, "policy saved");
            let after = view(&stored);
            state
                .audit
                .record(
                    &by.name,
                    "policy.put",
                    format!("policy/{id}"),
                    json!({"before": before, "after": after}),
                )
                .await;
            let status = if b.version == 0 {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            (status, Json(view(&stored))).into_response()
        }
        // Creating one that exists: the version 0 is stale.
        Err(PolicyError::Store(sase_approval::Error::Conflict { actual, .. })) if b.version == 0 => error(
            StatusCode::CONFLICT,
            "stale_version",
            format!("policy `{id}` exists (version {actual}): name the version it replaces"),
        ),
        Err(e) => policy_error(&e),
    }
}

/// Deletes a policy.
#[utoipa::path(delete, path = "/api/console/policies/{id}", operation_id = "delete_policy", tag = "policies",
    params(
        ("id" = String, Path, description = "The policy's id"),
        ("version" = u64, Query, description = "The version deleted"),
    ),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "`bad_query`: no `version`", body = ApiError),
        (status = 404, description = "`not_found`", body = ApiError),
        (status = 409, description = "`stale_version`", body = ApiError),
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
    let before = state.policies.get(&id).await.ok().flatten().map(|s| view(&s));
    match state.policies.delete(&id, version).await {
        Ok(()) => {
            tracing::info!(policy = %id, actor = %by.name, "policy deleted");
            state
                .audit
                .record(
                    &by.name,
                    "policy.delete",
                    format!("policy/{id}"),
                    json!({"before": before}),
                )
                .await;
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => engine_error(&e),
    }
}

/// `POST /api/console/policies/preview`: `{"put": policy}` or `{"delete": id}`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub(super) enum PreviewBody {
    /// Creating or replacing this policy.
    Put(Policy),
    /// Deleting the policy with this id.
    Delete(PolicyId),
}

/// What a change would do: for every enrolled device whose decision on uninstalling changes,
/// the decision before and after. Nothing is saved.
#[utoipa::path(post, path = "/api/console/policies/preview", operation_id = "preview_policy_change", tag = "policies",
    request_body = PreviewBody,
    responses(
        (status = 200, description = "Who gains and who loses protection", body = Preview),
        (status = 422, description = "`invalid_policy`", body = Invalid),
    ))]
pub(super) async fn preview(State(state): State<AppState>, b: JsonBody<Value>) -> Response {
    let change = match body(b).and_then(parse::<PreviewBody>) {
        Ok(PreviewBody::Put(policy)) => Change::Put(policy),
        Ok(PreviewBody::Delete(id)) => Change::Delete(id),
        Err(r) => return r,
    };
    let devices = match state.devices.list().await {
        Ok(devices) => devices,
        Err(e) => return engine_error(&e),
    };
    match state
        .policies
        .preview(&change, &devices, &state.directory.snapshot())
    {
        Ok(preview) => Json(preview).into_response(),
        Err(e) => policy_error(&e),
    }
}
