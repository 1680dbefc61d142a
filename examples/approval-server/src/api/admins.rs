//! The admins (admin role: list, create, change role or password, delete, each versioned) and
//! each admin's own personal API tokens (created, shown once, listed, revoked).

use super::auth::admin_error;
use super::{body, error, path, version, ApiError, AppState, JsonBody, PathParams, VersionParam};
use crate::admins::{Admin, ApiToken, Identity, Role};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse as _, Response};
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

/// An admin as the console shows it: with its version, never a password hash.
#[derive(Serialize, ToSchema)]
pub(super) struct AdminView {
    #[serde(flatten)]
    admin: Admin,
    /// The stored version, to name in a change.
    version: u64,
}

fn view(admin: &Admin) -> AdminView {
    AdminView {
        admin: admin.clone(),
        version: admin.version,
    }
}

/// The console's admins.
#[utoipa::path(get, path = "/api/console/admins", operation_id = "list_admins", tag = "admins",
    responses((status = 200, description = "The admins", body = Vec<AdminView>)))]
pub(super) async fn list(State(state): State<AppState>) -> Response {
    match state.admins.list().await {
        Ok(admins) => Json(admins.iter().map(view).collect::<Vec<_>>()).into_response(),
        Err(e) => admin_error(&e),
    }
}

/// An admin.
#[utoipa::path(get, path = "/api/console/admins/{name}", operation_id = "get_admin", tag = "admins",
    params(("name" = String, Path, description = "The admin's name")),
    responses(
        (status = 200, description = "The admin", body = AdminView),
        (status = 404, description = "`not_found`", body = ApiError),
    ))]
pub(super) async fn get(State(state): State<AppState>, name: PathParams<String>) -> Response {
    let name = match path(name) {
        Ok(name) => name,
        Err(r) => return r,
    };
    match state.admins.get(&name).await {
        Ok(Some(admin)) => Json(view(&admin)).into_response(),
        Ok(None) => error(StatusCode::NOT_FOUND, "not_found", format!("no admin `{name}`")),
        Err(e) => admin_error(&e),
    }
}

/// `POST /api/console/admins`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct CreateBody {
    /// The login name: ASCII letters, digits, `.`, `-`, `_` and `@`.
    #[schema(min_length = 1, max_length = 64, pattern = "^[A-Za-z0-9._@-]+$")]
    name: String,
    role: Role,
    /// 12 to 1,024 characters (stored as an Argon2id hash).
    #[schema(write_only, min_length = 12, max_length = 1024)]
    password: String,
}

/// Creates an admin.
#[utoipa::path(post, path = "/api/console/admins", operation_id = "create_admin", tag = "admins",
    request_body = CreateBody,
    responses(
        (status = 201, description = "Created", body = AdminView),
        (status = 409, description = "`stale_version`: an admin of that name exists", body = ApiError),
    ))]
pub(super) async fn create(
    State(state): State<AppState>,
    Extension(by): Extension<Identity>,
    b: JsonBody<CreateBody>,
) -> Response {
    let b = match body(b) {
        Ok(b) => b,
        Err(r) => return r,
    };
    match state.admins.create(&b.name, b.role, &b.password, &by.name).await {
        Ok(admin) => {
            tracing::info!(admin = %admin.name, role = %json!(admin.role), actor = %by.name, "admin created");
            let after = view(&admin);
            state
                .audit
                .record(
                    &by.name,
                    "admin.create",
                    format!("admin/{}", admin.name),
                    json!({"after": after}),
                )
                .await;
            (StatusCode::CREATED, Json(after)).into_response()
        }
        Err(crate::admins::AdminError::Store(sase_approval::Error::Conflict { .. })) => error(
            StatusCode::CONFLICT,
            "stale_version",
            format!("admin `{}` exists", b.name),
        ),
        Err(e) => admin_error(&e),
    }
}

/// `PUT /api/console/admins/{name}`: a new role, a new password, or both.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct UpdateBody {
    /// The new role (applies at once).
    #[serde(default)]
    role: Option<Role>,
    /// The new password, 12 to 1,024 characters (ends the admin's sessions).
    #[serde(default)]
    #[schema(write_only, min_length = 12, max_length = 1024)]
    password: Option<String>,
    /// The version replaced.
    version: u64,
}

/// Changes an admin's role or password.
#[utoipa::path(put, path = "/api/console/admins/{name}", operation_id = "update_admin", tag = "admins",
    params(("name" = String, Path, description = "The admin's name")),
    request_body = UpdateBody,
    responses(
        (status = 200, description = "The admin", body = AdminView),
        (status = 404, description = "`not_found`", body = ApiError),
        (status = 409, description = "`stale_version`", body = ApiError),
    ))]
pub(super) async fn update(
    State(state): State<AppState>,
    Extension(by): Extension<Identity>,
    name: PathParams<String>,
    b: JsonBody<UpdateBody>,
) -> Response {
    let (name, b) = match (path(name), body(b)) {
        (Ok(name), Ok(b)) => (name, b),
        (Err(r), _) | (_, Err(r)) => return r,
    };
    let before = state.admins.get(&name).await.ok().flatten().map(|a| view(&a));
    match state
        .admins
        .update(&name, b.version, b.role, b.password.as_deref())
        .await
    {
        Ok(admin) => {
            tracing::info!(admin = %name, role = %json!(admin.role), password_changed = b.password.is_some(),
                actor = %by.name, "admin changed");
            let after = view(&admin);
            state
                .audit
                .record(
                    &by.name,
                    "admin.update",
                    format!("admin/{name}"),
                    json!({"before": before, "after": after, "password_changed": b.password.is_some()}),
                )
                .await;
            Json(after).into_response()
        }
        Err(e) => admin_error(&e),
    }
}

/// Deletes an admin (their sessions and tokens end with them).
#[utoipa::path(delete, path = "/api/console/admins/{name}", operation_id = "delete_admin", tag = "admins",
    params(
        ("name" = String, Path, description = "The admin's name"),
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
    name: PathParams<String>,
    q: VersionParam,
) -> Response {
    let name = match path(name) {
        Ok(name) => name,
        Err(r) => return r,
    };
    let version = match version(q) {
        Ok(version) => version,
        Err(r) => return r,
    };
    let before = state.admins.get(&name).await.ok().flatten().map(|a| view(&a));
    match state.admins.delete(&name, version).await {
        Ok(()) => {
            tracing::info!(admin = %name, actor = %by.name, "admin deleted");
            state
                .audit
                .record(
                    &by.name,
                    "admin.delete",
                    format!("admin/{name}"),
                    json!({"before": before}),
                )
                .await;
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => admin_error(&e),
    }
}

/// The caller's own personal API tokens (never the tokens themselves).
#[utoipa::path(get, path = "/api/console/me/tokens", operation_id = "list_own_tokens", tag = "admins",
    responses((status = 200, description = "The caller's tokens", body = Vec<ApiToken>)))]
pub(super) async fn own_tokens(
    State(state): State<AppState>,
    Extension(me): Extension<Identity>,
) -> Response {
    match state.admins.tokens(Some(&me.name)).await {
        Ok(tokens) => Json(tokens).into_response(),
        Err(e) => admin_error(&e),
    }
}

/// `POST /api/console/me/tokens`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct TokenBody {
    /// What the token is for.
    label: String,
}

/// A new personal API token, shown this once.
#[derive(Serialize, ToSchema)]
pub(super) struct NewToken {
    /// The token (`sase_…`), for `Authorization: Bearer` (stored only as a hash).
    token: String,
    #[serde(flatten)]
    about: ApiToken,
}

/// A personal API token for the caller, shown once.
#[utoipa::path(post, path = "/api/console/me/tokens", operation_id = "create_own_token", tag = "admins",
    request_body = TokenBody,
    responses(
        (status = 201, description = "The token, shown once", body = NewToken),
        (status = 409, description = "`not_an_admin_account`: the configured admin token's holder has no account", body = ApiError),
    ))]
pub(super) async fn create_token(
    State(state): State<AppState>,
    Extension(me): Extension<Identity>,
    b: JsonBody<TokenBody>,
) -> Response {
    let b = match body(b) {
        Ok(b) => b,
        Err(r) => return r,
    };
    if me.name == super::auth::TOKEN_ADMIN {
        return error(
            StatusCode::CONFLICT,
            "not_an_admin_account",
            "the admin token's holder has no account: create an admin and log in as it",
        );
    }
    match state.admins.create_token(&me.name, &b.label).await {
        Ok((token, about)) => {
            tracing::info!(admin = %me.name, token = %about.id, "API token created");
            state
                .audit
                .record(
                    &me.name,
                    "api_token.create",
                    format!("api_token/{}", about.id),
                    json!({"label": about.label}),
                )
                .await;
            (StatusCode::CREATED, Json(NewToken { token, about })).into_response()
        }
        Err(e) => admin_error(&e),
    }
}

/// Revokes one of the caller's own tokens.
#[utoipa::path(delete, path = "/api/console/me/tokens/{id}", operation_id = "revoke_own_token", tag = "admins",
    params(("id" = String, Path, description = "The token's id")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 404, description = "`not_found`: no such token of the caller's", body = ApiError),
    ))]
pub(super) async fn revoke_token(
    State(state): State<AppState>,
    Extension(me): Extension<Identity>,
    id: PathParams<String>,
) -> Response {
    let id = match path(id) {
        Ok(id) => id,
        Err(r) => return r,
    };
    let own = match state.admins.tokens(Some(&me.name)).await {
        Ok(tokens) => tokens.iter().any(|t| t.id == id),
        Err(e) => return admin_error(&e),
    };
    if !own {
        return error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no token `{id}` of yours"),
        );
    }
    match state.admins.revoke_token(&id).await {
        Ok(_) => {
            tracing::info!(admin = %me.name, token = %id, "API token revoked");
            state
                .audit
                .record(&me.name, "api_token.revoke", format!("api_token/{id}"), json!({}))
                .await;
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => admin_error(&e),
    }
}
