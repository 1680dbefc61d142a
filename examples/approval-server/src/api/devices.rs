//! The device routes: an admin makes enrollment codes and lists, tags and revokes devices;
//! an agent exchanges a code for its device token and the grant keys it pins.

use super::{body, engine_error, error, path, with, AppState, JsonBody, PathParams};
use crate::admins::Identity;
use crate::devices::{Code, Device, EnrollError, Owner, CODE_TTL_MAX_SECS, CODE_TTL_SECS};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse as _, Response};
use axum::{Extension, Json};
use sase_policy::GrantVerifier;
use serde::Deserialize;
use serde_json::{json, Value};

/// `POST /api/console/enrollment-codes`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CodeBody {
    #[serde(flatten)]
    owner: Owner,
    #[serde(default)]
    ttl_secs: Option<u64>,
}

/// A name an admin or agent gives (a user, device, group, department or tag id): not empty,
/// at most 128 characters, no control characters.
fn check_name(what: &str, value: &str) -> Result<(), Response> {
    if value.is_empty() || value.chars().count() > 128 || value.chars().any(char::is_control) {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            format!("`{what}` must be 1 to 128 characters without control characters"),
        ));
    }
    Ok(())
}

fn check_owner(owner: &Owner) -> Result<(), Response> {
    check_name("user_id", &owner.user_id)?;
    for (what, values) in [
        ("groups", &owner.groups),
        ("departments", &owner.departments),
        ("tags", &owner.tags),
    ] {
        values.iter().try_for_each(|v| check_name(what, v))?;
    }
    Ok(())
}

/// Adds `key` to the object `view`.
fn code_view(code: &Code) -> Value {
    json!({"id": code.id, "user_id": code.owner.user_id, "groups": code.owner.groups,
           "departments": code.owner.departments, "tags": code.owner.tags,
           "created_at_ms": code.created_at_ms, "expires_at_ms": code.expires_at_ms})
}

fn device_view(d: &Device) -> Value {
    json!({"device_id": d.device_id, "user_id": d.owner.user_id, "groups": d.owner.groups,
           "departments": d.owner.departments, "tags": d.owner.tags, "enrolled_at_ms": d.enrolled_at_ms,
           "enrolled_by": d.enrolled_by, "revoked_at_ms": d.revoked_at_ms, "version": d.version})
}

/// A single-use enrollment code for a user's next device, shown once.
pub(super) async fn create_code(
    State(state): State<AppState>,
    Extension(by): Extension<Identity>,
    b: JsonBody<CodeBody>,
) -> Response {
    let b = match body(b) {
        Ok(b) => b,
        Err(r) => return r,
    };
    if let Err(r) = check_owner(&b.owner) {
        return r;
    }
    let ttl = b.ttl_secs.unwrap_or(CODE_TTL_SECS);
    if ttl == 0 || ttl > CODE_TTL_MAX_SECS {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            format!("`ttl_secs` must be 1 to {CODE_TTL_MAX_SECS}"),
        );
    }
    match state.devices.create_code(b.owner, ttl).await {
        Ok((value, code)) => {
            tracing::info!(code = %code.id, user = %code.owner.user_id, expires_at_ms = code.expires_at_ms, actor = %by.name, "enrollment code created");
            let mut view = code_view(&code);
            // The code itself is a secret: its id only.
            state
                .audit
                .record(
                    &by.name,
                    "enrollment_code.create",
                    format!("enrollment_code/{}", code.id),
                    view.clone(),
                )
                .await;
            with(&mut view, "code", Value::String(value));
            (StatusCode::CREATED, Json(view)).into_response()
        }
        Err(e) => engine_error(&e),
    }
}

/// The enrollment codes not used yet, without the codes themselves.
pub(super) async fn list_codes(State(state): State<AppState>) -> Response {
    match state.devices.codes().await {
        Ok(codes) => Json(codes.iter().map(code_view).collect::<Vec<_>>()).into_response(),
        Err(e) => engine_error(&e),
    }
}

/// `POST /api/agent/enroll`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct EnrollBody {
    code: String,
    device_id: String,
}

/// An agent exchanges an enrollment code for its device token and the keys grants are signed
/// with (to pin).
pub(super) async fn enroll(State(state): State<AppState>, b: JsonBody<EnrollBody>) -> Response {
    let b = match body(b) {
        Ok(b) => b,
        Err(r) => return r,
    };
    if let Err(r) = check_name("device_id", &b.device_id) {
        return r;
    }
    match state.devices.enroll(&b.code, &b.device_id).await {
        Ok((token, device)) => {
            tracing::info!(device = %device.device_id, user = %device.owner.user_id, code = %device.enrolled_by, "device enrolled");
            state
                .audit
                .record(
                    &format!("device:{}", device.device_id),
                    "device.enroll",
                    format!("device/{}", device.device_id),
                    json!({"after": device_view(&device)}),
                )
                .await;
            let keys: Vec<String> = state.grant_keys.iter().map(GrantVerifier::to_hex).collect();
            let mut view = device_view(&device);
            with(&mut view, "device_token", Value::String(token));
            with(&mut view, "grant_keys", json!(keys));
            (StatusCode::CREATED, Json(view)).into_response()
        }
        Err(e @ (EnrollError::Unknown | EnrollError::Expired)) => {
            tracing::warn!(device = %b.device_id, reason = %e, "enrollment refused");
            error(StatusCode::UNAUTHORIZED, "enrollment_refused", e)
        }
        Err(EnrollError::Store(e)) => engine_error(&e),
    }
}

/// Every device (revoked ones too), with its version for updates.
pub(super) async fn list_devices(State(state): State<AppState>) -> Response {
    match state.devices.list().await {
        Ok(devices) => Json(devices.iter().map(device_view).collect::<Vec<_>>()).into_response(),
        Err(e) => engine_error(&e),
    }
}

pub(super) async fn get_device(State(state): State<AppState>, id: PathParams<String>) -> Response {
    let id = match path(id) {
        Ok(id) => id,
        Err(r) => return r,
    };
    match state.devices.get(&id).await {
        Ok(Some(device)) => Json(device_view(&device)).into_response(),
        Ok(None) => error(StatusCode::NOT_FOUND, "not_found", format!("no device `{id}`")),
        Err(e) => engine_error(&e),
    }
}

/// `PUT /api/console/devices/{id}/tags`: the tags, replacing those of `version`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TagsBody {
    tags: Vec<String>,
    version: u64,
}

pub(super) async fn set_tags(
    State(state): State<AppState>,
    Extension(by): Extension<Identity>,
    id: PathParams<String>,
    b: JsonBody<TagsBody>,
) -> Response {
    let (id, b) = match (path(id), body(b)) {
        (Ok(id), Ok(b)) => (id, b),
        (Err(r), _) | (_, Err(r)) => return r,
    };
    if let Err(r) = b.tags.iter().try_for_each(|t| check_name("tags", t)) {
        return r;
    }
    let tags = b.tags;
    let before = state
        .devices
        .get(&id)
        .await
        .ok()
        .flatten()
        .map(|d| device_view(&d));
    match state
        .devices
        .update(&id, b.version, |device, _| device.owner.tags = tags)
        .await
    {
        Ok(device) => {
            tracing::info!(device = %id, tags = ?device.owner.tags, actor = %by.name, "device tagged");
            let after = device_view(&device);
            state
                .audit
                .record(
                    &by.name,
                    "device.tags",
                    format!("device/{id}"),
                    json!({"before": before, "after": after}),
                )
                .await;
            Json(after).into_response()
        }
        Err(e) => engine_error(&e),
    }
}

/// `POST /api/console/devices/{id}/revoke`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RevokeBody {
    version: u64,
}

/// Revokes a device: its token is refused at once, on every replica.
pub(super) async fn revoke(
    State(state): State<AppState>,
    Extension(by): Extension<Identity>,
    id: PathParams<String>,
    b: JsonBody<RevokeBody>,
) -> Response {
    let (id, b) = match (path(id), body(b)) {
        (Ok(id), Ok(b)) => (id, b),
        (Err(r), _) | (_, Err(r)) => return r,
    };
    match state.devices.revoke(&id, b.version).await {
        Ok(device) => {
            tracing::info!(device = %id, actor = %by.name, "device revoked");
            let after = device_view(&device);
            state
                .audit
                .record(
                    &by.name,
                    "device.revoke",
                    format!("device/{id}"),
                    json!({"after": after}),
                )
                .await;
            Json(after).into_response()
        }
        Err(e) => engine_error(&e),
    }
}
