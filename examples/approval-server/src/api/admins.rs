//! The admins (admin role: list, create, change role or password, delete, each versioned) and
//! each admin's own personal API tokens (created, shown once, listed, revoked).

use super::auth::admin_error;
use super::{body, error, path, version, with, AppState, JsonBody, PathParams, VersionParam};
use crate::admins::{Admin, Identity, Role};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse as _, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{json, Value};

/// An admin as the console shows it: with its version, never a password hash.
fn view(admin: &Admin) -> Value {
    let mut view = json!(admin);
    with(&mut view, "version", json!(admin.version));
    view
}

pub(super) async fn list(State(state): State<AppState>) -> Response {
    match state.admins.list().await {
        Ok(admins) => Json(admins.iter().map(view).collect::<Vec<_>>()).into_response(),
        Err(e) => admin_error(&e),
    }
}

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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CreateBody {
    name: String,
    role: Role,
    password: String,
}

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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct UpdateBody {
    #[serde(default)]
    role: Option<Role>,
    #[serde(default)]
    password: Option<String>,
    version: u64,
}

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

pub(super) async fn own_tokens(
    State(state): State<AppState>,
    Extension(me): Extension<Identity>,
) -> Response {
    match state.admins.tokens(Some(&me.name)).await {
        Ok(tokens) => Json(tokens).into_response(),
        Err(e) => admin_error(&e),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TokenBody {
    label: String,
}

/// A personal API token for the caller, shown once.
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
            (
                StatusCode::CREATED,
                Json(json!({"token": token, "id": about.id, "label": about.label, "created_at_ms": about.created_at_ms})),
            )
                .into_response()
        }
        Err(e) => admin_error(&e),
    }
}

/// Revokes one of the caller's own tokens.
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
