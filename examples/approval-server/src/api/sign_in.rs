//! Enrollment by signing in with DingTalk (`crate::sign_in`): the agent starts an attempt
//! and collects its device token; DingTalk sends the browser back to the redirect page.

use super::devices::{check_name, enrolled, EnrolledDevice};
use super::{body, engine_error, error, path, ApiError, AppState, JsonBody, PathParams};
use crate::sign_in::{Collected, SignIn, SignInError};
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse as _, Response};
use axum::Json;
use maud::html;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `POST /api/agent/sign-in`.
#[derive(Deserialize, ToSchema)]
pub(super) struct StartBody {
    /// The device to enroll (1 to 128 characters, no control characters).
    #[schema(min_length = 1, max_length = 128)]
    device_id: String,
}

/// A sign-in attempt: what the agent keeps and shows.
#[derive(Serialize, ToSchema)]
pub(super) struct SignInStarted {
    /// The attempt's secret: collect the outcome with it (`GET /api/agent/sign-in/{attempt}`).
    attempt: String,
    /// DingTalk's sign-in page, to open in a browser or show as a QR code.
    sign_in_url: String,
    /// Until when the attempt waits, Unix ms.
    expires_at_ms: i64,
}

/// Not signed in yet.
#[derive(Serialize, ToSchema)]
pub(super) struct Waiting {
    /// Always `waiting`.
    status: &'static str,
}

fn configured(state: &AppState) -> Result<&SignIn, Response> {
    state.sign_in.as_ref().ok_or_else(|| {
        error(
            StatusCode::NOT_FOUND,
            "not_found",
            "sign-in with DingTalk is not configured (directory.corp_id)",
        )
    })
}

/// Starts enrolling this device by signing in with DingTalk: the sign-in URL to show, and the
/// attempt's secret to collect the device token with once the employee has signed in.
#[utoipa::path(post, path = "/api/agent/sign-in", operation_id = "start_sign_in", tag = "agent",
    request_body = StartBody,
    responses(
        (status = 201, description = "Started", body = SignInStarted),
        (status = 429, description = "`rate_limited`: too many sign-ins wait already (`Retry-After`)", body = ApiError),
    ))]
pub(super) async fn start(State(state): State<AppState>, b: JsonBody<StartBody>) -> Response {
    let b = match body(b) {
        Ok(b) => b,
        Err(r) => return r,
    };
    if let Err(r) = check_name("device_id", &b.device_id) {
        return r;
    }
    let sign_in = match configured(&state) {
        Ok(s) => s,
        Err(r) => return r,
    };
    match sign_in.start(&b.device_id).await {
        Ok(None) => {
            let mut busy = error(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "too many sign-ins are waiting; try again in a minute",
            );
            busy.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static("60"),
            );
            busy
        }
        Ok(Some(started)) => (
            StatusCode::CREATED,
            Json(SignInStarted {
                attempt: started.attempt,
                sign_in_url: started.url,
                expires_at_ms: started.expires_at_ms,
            }),
        )
            .into_response(),
        Err(e) => engine_error(&e),
    }
}

/// The attempt's outcome: still waiting (202), the device enrolled (201: its token, shown this
/// once, and the grant keys), or the sign-in refused (403, saying why).
#[utoipa::path(get, path = "/api/agent/sign-in/{attempt}", operation_id = "collect_sign_in", tag = "agent",
    params(("attempt" = String, Path, description = "The attempt's secret")),
    responses(
        (status = 201, description = "Enrolled", body = EnrolledDevice),
        (status = 202, description = "Not signed in, or the device not confirmed by the employee, yet: ask again", body = Waiting),
        (status = 403, description = "`sign_in_refused`: another organisation's account, a user not in the directory, a code DingTalk refused, the device not confirmed", body = ApiError),
        (status = 404, description = "No such attempt: unknown, expired or collected", body = ApiError),
    ))]
pub(super) async fn collect(State(state): State<AppState>, attempt: PathParams<String>) -> Response {
    let attempt = match path(attempt) {
        Ok(a) => a,
        Err(r) => return r,
    };
    let sign_in = match configured(&state) {
        Ok(s) => s,
        Err(r) => return r,
    };
    match sign_in.collect(&attempt).await {
        Ok(Collected::Waiting) => (StatusCode::ACCEPTED, Json(Waiting { status: "waiting" })).into_response(),
        Ok(Collected::Enrolled(token, device)) => {
            (StatusCode::CREATED, Json(enrolled(&state, token, device).await)).into_response()
        }
        Ok(Collected::Refused(reason)) => error(StatusCode::FORBIDDEN, "sign_in_refused", reason),
        Ok(Collected::Unknown) => error(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such sign-in attempt: unknown, expired or collected already",
        ),
        Err(e) => engine_error(&e),
    }
}

/// `GET /dingtalk/sign-in`: where DingTalk sends the browser back; a page saying who signed
/// in and asking them to confirm the device by its name (a form posted back here), or why
/// not.
pub(super) async fn redirected(State(state): State<AppState>, RawQuery(query): RawQuery) -> Response {
    let sign_in = match configured(&state) {
        Ok(s) => s,
        Err(r) => return r,
    };
    match sign_in.redirected(query.as_deref().unwrap_or_default()).await {
        Ok(to) => crate::console::notice_page(
            StatusCode::OK,
            "确认设备 · Confirm the device",
            html! {
                p.message {
                    "已登录：" (to.name) "（" (to.user_id) "）。将设备 " strong { (to.device_id) }
                    " 登记为你的设备？"
                }
                p.message {
                    "Signed in as " (to.name) " (" (to.user_id) "). Enroll the device "
                    strong { (to.device_id) } " as yours?"
                }
                p {
                    "只有当你刚在这台设备的 SASE 客户端上开始登录时才登记。"
                    " Enroll it only if you have just started this sign-in in the SASE App on that device."
                }
                form.actions method="post" action=(crate::sign_in::REDIRECT_PATH) {
                    input type="hidden" name="confirm" value=(to.confirm);
                    button #enroll type="submit" name="decision" value="enroll" { "登记此设备 · Enroll this device" }
                    button.secondary #cancel type="submit" name="decision" value="cancel" { "取消 · Cancel" }
                }
            },
        ),
        Err(e) => refused(e),
    }
}

/// `POST /dingtalk/sign-in`: the confirmation form (`confirm`, `decision` = `enroll` or
/// `cancel`); a page saying whether the device is enrolled.
pub(super) async fn confirmed(State(state): State<AppState>, form: Bytes) -> Response {
    let sign_in = match configured(&state) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let field = |name: &str| {
        form_urlencoded::parse(&form)
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.into_owned())
            .unwrap_or_default()
    };
    let enroll = match field("decision").as_str() {
        "enroll" => true,
        "cancel" => false,
        _ => {
            return crate::console::message_page(
                StatusCode::BAD_REQUEST,
                "登录被拒绝 · Sign-in refused",
                "the form's decision is neither enroll nor cancel",
            )
        }
    };
    match sign_in.confirmed(&field("confirm"), enroll).await {
        Ok(done) => crate::console::message_page(
            StatusCode::OK,
            "已登记 · Enrolled",
            &format!(
                "设备 {device} 已登记为 {name}（{user}）的设备。请返回 SASE 客户端。 The device {device} is enrolled as {name}'s ({user}): return to the SASE App.",
                device = done.device_id,
                name = done.name,
                user = done.user_id,
            ),
        ),
        Err(SignInError::NotConfirmed) => crate::console::message_page(
            StatusCode::OK,
            "未登记 · Not enrolled",
            "设备未登记。 The device was not enrolled.",
        ),
        Err(e) => refused(e),
    }
}

/// The page of a refused sign-in (or the store's error).
fn refused(e: SignInError) -> Response {
    match e {
        SignInError::Store(e) => engine_error(&e),
        e => crate::console::message_page(
            StatusCode::FORBIDDEN,
            "登录被拒绝 · Sign-in refused",
            &e.to_string(),
        ),
    }
}
