//! The directory's routes: how it stands (the app it follows, its last full read, its size),
//! and a full read now (after fixing the app's permissions, say).

use super::{error, ApiError, AppState};
use crate::admins::Identity;
use crate::directory::DirectoryError;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse as _, Response};
use axum::{Extension, Json};
use serde::Serialize;
use serde_json::json;
use utoipa::ToSchema;

/// The directory as last read.
#[derive(Serialize, ToSchema)]
pub(super) struct DirectoryStatus {
    /// The DingTalk app whose contacts are the directory; `null`: no directory (devices keep
    /// the departments they were enrolled with).
    client_id: Option<String>,
    /// When the last full read began, Unix ms (0: never).
    synced_at_ms: i64,
    /// Users known.
    users: usize,
    /// Departments known.
    departments: usize,
}

fn status(state: &AppState) -> DirectoryStatus {
    let snapshot = state.directory.snapshot();
    DirectoryStatus {
        client_id: state.directory.app().map(str::to_owned),
        synced_at_ms: snapshot.synced_at_ms,
        users: snapshot.users.len(),
        departments: snapshot.departments.len(),
    }
}

/// How the directory stands: the app it follows, its last full read and its size.
#[utoipa::path(get, path = "/api/console/directory", operation_id = "get_directory", tag = "directory",
    responses((status = 200, description = "The directory", body = DirectoryStatus)))]
pub(super) async fn get(State(state): State<AppState>) -> Response {
    Json(status(&state)).into_response()
}

/// Reads the whole directory from DingTalk now (users who left are offboarded), as the
/// schedule does.
#[utoipa::path(post, path = "/api/console/directory/sync", operation_id = "sync_directory", tag = "directory",
    responses(
        (status = 200, description = "Read", body = DirectoryStatus),
        (status = 404, description = "`not_found`: no directory is configured", body = ApiError),
        (status = 409, description = "`directory_implausible`: the read would remove most users; nothing applied", body = ApiError),
        (status = 502, description = "`dingtalk_error`: DingTalk refused or failed; nothing applied", body = ApiError),
    ))]
pub(super) async fn sync(State(state): State<AppState>, Extension(by): Extension<Identity>) -> Response {
    if state.directory.app().is_none() {
        return error(
            StatusCode::NOT_FOUND,
            "not_found",
            "no directory is configured ([directory])",
        );
    }
    match state.directory.sync().await {
        Ok(()) => {
            let done = status(&state);
            state
                .audit
                .record(
                    &by.name,
                    "directory.sync",
                    "directory".to_owned(),
                    json!({"users": done.users, "departments": done.departments}),
                )
                .await;
            Json(done).into_response()
        }
        Err(e @ DirectoryError::Implausible { .. }) => {
            error(StatusCode::CONFLICT, "directory_implausible", e)
        }
        Err(e @ DirectoryError::DingTalk(_)) => error(StatusCode::BAD_GATEWAY, "dingtalk_error", e),
        Err(DirectoryError::Store(e)) => super::engine_error(&e),
    }
}
