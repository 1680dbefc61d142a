//! The device routes: an admin makes enrollment codes and lists, tags and revokes devices;
//! an agent exchanges a code for its device token and the grant keys it pins.

use super::{body, engine_error, error, path, ApiError, AppState, JsonBody, PathParams};
use crate::admins::Identity;
use crate::devices::{Code, Device, EnrollError, Owner, CODE_TTL_MAX_SECS, CODE_TTL_SECS};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse as _, Response};
use axum::{Extension, Json};
use sase_policy::GrantVerifier;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

/// `POST /api/console/enrollment-codes`: whose device the code enrolls, and for how long it
/// may be used.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct CodeBody {
    #[serde(flatten)]
    owner: Owner,
    /// Seconds until the code expires (default 24 h, at most 7 days).
    #[serde(default)]
    ttl_secs: Option<u64>,
}

/// A new enrollment code: the code itself, shown this once.
#[derive(Serialize, ToSchema)]
pub(super) struct NewCode {
    #[serde(flatten)]
    about: Code,
    /// The code to type into the agent (a secret: stored only as a hash).
    code: String,
}

/// A device as the console shows it, with its version for changes.
#[derive(Serialize, ToSchema)]
pub(super) struct DeviceView {
    #[serde(flatten)]
    device: Device,
    /// The stored version, to name in a change.
    version: u64,
}

impl From<Device> for DeviceView {
    fn from(device: Device) -> Self {
        let version = device.version;
        Self { device, version }
    }
}

/// An enrolled device, with what its agent keeps.
#[derive(Serialize, ToSchema)]
pub(super) struct EnrolledDevice {
    #[serde(flatten)]
    device: DeviceView,
    /// The device's token for the agent API (a secret: stored only as a hash, shown once).
    device_token: String,
    /// The keys grants may be signed with, for the agent to pin (hex).
    grant_keys: Vec<String>,
}

/// A device just enrolled (with a code or by signing in), logged and audited: what its agent
/// keeps.
pub(super) async fn enrolled(state: &AppState, token: String, device: Device) -> EnrolledDevice {
    tracing::info!(device = %device.device_id, user = %device.owner.user_id, by = %device.enrolled_by, "device enrolled");
    state
        .audit
        .record(
            &format!("device:{}", device.device_id),
            "device.enroll",
            format!("device/{}", device.device_id),
            json!({"after": device_view(&device)}),
        )
        .await;
    EnrolledDevice {
        device: DeviceView::from(device),
        device_token: token,
        grant_keys: state.grant_keys.iter().map(GrantVerifier::to_hex).collect(),
    }
}

/// A name an admin or agent gives (a user, device, group, department or tag id): not empty,
/// at most 128 characters, no control characters.
pub(super) fn check_name(what: &str, value: &str) -> Result<(), Response> {
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

fn device_view(d: &Device) -> DeviceView {
    DeviceView::from(d.clone())
}

/// A single-use enrollment code for a user's next device, shown once.
#[utoipa::path(post, path = "/api/console/enrollment-codes", operation_id = "create_enrollment_code", tag = "devices",
    request_body = CodeBody,
    responses((status = 201, description = "The code, shown once", body = NewCode)))]
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
            // The code itself is a secret: its id only.
            state
                .audit
                .record(
                    &by.name,
                    "enrollment_code.create",
                    format!("enrollment_code/{}", code.id),
                    json!(code),
                )
                .await;
            (
                StatusCode::CREATED,
                Json(NewCode {
                    about: code,
                    code: value,
                }),
            )
                .into_response()
        }
        Err(e) => engine_error(&e),
    }
}

/// The enrollment codes not used yet, without the codes themselves.
#[utoipa::path(get, path = "/api/console/enrollment-codes", operation_id = "list_enrollment_codes", tag = "devices",
    responses((status = 200, description = "The codes not used yet", body = Vec<Code>)))]
pub(super) async fn list_codes(State(state): State<AppState>) -> Response {
    match state.devices.codes().await {
        Ok(codes) => Json(codes).into_response(),
        Err(e) => engine_error(&e),
    }
}

/// `POST /api/agent/enroll`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct EnrollBody {
    /// The enrollment code an admin made.
    code: String,
    /// This device's id (no control characters).
    #[schema(min_length = 1, max_length = 128)]
    device_id: String,
}

/// An agent exchanges an enrollment code for its device token and the keys grants are signed
/// with (to pin). No other authentication: the code is the credential, used once.
#[utoipa::path(post, path = "/api/agent/enroll", operation_id = "enroll_device", tag = "agent",
    request_body = EnrollBody,
    responses(
        (status = 201, description = "Enrolled", body = EnrolledDevice),
        (status = 401, description = "`enrollment_refused`: the code is unknown, used or expired", body = ApiError),
    ))]
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
            (StatusCode::CREATED, Json(enrolled(&state, token, device).await)).into_response()
        }
        Err(e @ (EnrollError::Unknown | EnrollError::Expired)) => {
            tracing::warn!(device = %b.device_id, reason = %e, "enrollment refused");
            error(StatusCode::UNAUTHORIZED, "enrollment_refused", e)
        }
        Err(EnrollError::Store(e)) => engine_error(&e),
    }
}

/// Every device (revoked ones too), with its version for updates.
#[utoipa::path(get, path = "/api/console/devices", operation_id = "list_devices", tag = "devices",
    responses((status = 200, description = "The devices", body = Vec<DeviceView>)))]
pub(super) async fn list_devices(State(state): State<AppState>) -> Response {
    match state.devices.list().await {
        Ok(devices) => Json(devices.into_iter().map(DeviceView::from).collect::<Vec<_>>()).into_response(),
        Err(e) => engine_error(&e),
    }
}

/// An enrolled device.
#[utoipa::path(get, path = "/api/console/devices/{id}", operation_id = "get_device", tag = "devices",
    params(("id" = String, Path, description = "The device's id")),
    responses(
        (status = 200, description = "The device", body = DeviceView),
        (status = 404, description = "`not_found`", body = ApiError),
    ))]
pub(super) async fn get_device(State(state): State<AppState>, id: PathParams<String>) -> Response {
    let id = match path(id) {
        Ok(id) => id,
        Err(r) => return r,
    };
    match state.devices.get(&id).await {
        Ok(Some(device)) => Json(DeviceView::from(device)).into_response(),
        Ok(None) => error(StatusCode::NOT_FOUND, "not_found", format!("no device `{id}`")),
        Err(e) => engine_error(&e),
    }
}

/// `PUT /api/console/devices/{id}/tags`: the tags, replacing those of `version`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct TagsBody {
    /// The device's tags from now on (policies can scope by tag), each 1 to 128 characters
    /// without control characters.
    tags: Vec<String>,
    /// The version replaced.
    version: u64,
}

/// Replaces a device's tags.
#[utoipa::path(put, path = "/api/console/devices/{id}/tags", operation_id = "set_device_tags", tag = "devices",
    params(("id" = String, Path, description = "The device's id")),
    request_body = TagsBody,
    responses(
        (status = 200, description = "The device", body = DeviceView),
        (status = 404, description = "`not_found`", body = ApiError),
        (status = 409, description = "`stale_version`", body = ApiError),
    ))]
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
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RevokeBody {
    /// The version revoked.
    version: u64,
}

/// Revokes a device: its token is refused at once, on every replica.
#[utoipa::path(post, path = "/api/console/devices/{id}/revoke", operation_id = "revoke_device", tag = "devices",
    params(("id" = String, Path, description = "The device's id")),
    request_body = RevokeBody,
    responses(
        (status = 200, description = "The device, revoked", body = DeviceView),
        (status = 404, description = "`not_found`", body = ApiError),
        (status = 409, description = "`stale_version`", body = ApiError),
    ))]
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
