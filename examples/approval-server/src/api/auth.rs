//! Who calls the console, and what they may do. An admin authenticates with a personal API
//! token (automation), or logs in with a name and password and is then known by a session
//! cookie (the web console), every state-changing request of a session carrying its CSRF
//! token; the configured admin token is the bootstrap identity `console-admin`, with the admin
//! role. Each console route needs a role ([`required_role`]): viewers read, approvers also
//! decide requests, admins also configure workflows, policies, devices and admins.

use super::{bearer, body, eq, error, ApiError, AppState, JsonBody};
use crate::admins::{AdminError, Identity, Role};
use axum::extract::{MatchedPath, Request, State};
use axum::http::header::{COOKIE, RETRY_AFTER, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse as _, Response};
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

/// The session cookie's name.
pub(crate) const SESSION_COOKIE: &str = "sase_session";
/// The header a session's state-changing request carries its CSRF token in.
pub(crate) const CSRF_HEADER: &str = "x-csrf-token";
/// The holder of the configured admin token.
pub(crate) const TOKEN_ADMIN: &str = "console-admin";

/// The role a console route needs, by method and route template.
pub(crate) fn required_role(method: &Method, route: &str) -> Role {
    let own = matches!(
        route,
        "/api/console/me" | "/api/console/logout" | "/api/console/me/tokens" | "/api/console/me/tokens/{id}"
    );
    let admins_only = matches!(
        route,
        "/api/console/export"
            | "/api/console/admins"
            | "/api/console/admins/{name}"
            | "/api/console/audit"
            | "/api/console/audit/export"
            | "/api/console/audit/verify"
    );
    if own {
        Role::Viewer
    } else if admins_only {
        Role::Admin
    } else if method.is_safe() {
        Role::Viewer
    } else if route == "/api/console/requests/{id}/{action}" {
        Role::Approver
    } else {
        Role::Admin
    }
}

pub(super) fn admin_error(e: &AdminError) -> Response {
    match e {
        AdminError::Store(e) => super::engine_error(e),
        AdminError::Invalid { .. } => error(StatusCode::BAD_REQUEST, "invalid_request", e),
    }
}

/// The console's gate, after routing: authenticates the caller, checks the CSRF token of a
/// session's state-changing request and the role the route needs, and hands the handler the
/// [`Identity`].
pub(super) async fn console(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned())
        .unwrap_or_default();
    let needed = required_role(request.method(), &route);
    let identity = match authenticate(&state, request.method(), request.headers()).await {
        Ok(identity) => identity,
        Err(refused) => return refused,
    };
    if !identity.role.allows(needed) {
        return error(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "`{}` is {}: {} {route} needs {}",
                identity.name,
                json!(identity.role),
                request.method(),
                json!(needed)
            ),
        );
    }
    request.extensions_mut().insert(identity);
    next.run(request).await
}

async fn authenticate(state: &AppState, method: &Method, headers: &HeaderMap) -> Result<Identity, Response> {
    let unauthorized = |message: &str| error(StatusCode::UNAUTHORIZED, "unauthorized", message);
    if let Some(token) = bearer(headers) {
        if eq(token, &state.admin_token) {
            return Ok(Identity {
                name: TOKEN_ADMIN.to_owned(),
                role: Role::Admin,
            });
        }
        return match state.admins.authenticate_token(token).await {
            Ok(Some(identity)) => Ok(identity),
            Ok(None) => Err(unauthorized("unknown or revoked token")),
            Err(e) => Err(admin_error(&e)),
        };
    }
    let Some(session) = cookie(headers, SESSION_COOKIE) else {
        return Err(unauthorized("log in, or send an admin API token"));
    };
    match state.admins.session(session).await {
        Ok(Some((identity, csrf))) => {
            let sent = headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok());
            if method.is_safe() || sent.is_some_and(|sent| eq(sent, &csrf)) {
                Ok(identity)
            } else {
                Err(error(
                    StatusCode::FORBIDDEN,
                    "csrf",
                    "a state-changing request of a session needs the session's CSRF token in X-CSRF-Token",
                ))
            }
        }
        Ok(None) => Err(unauthorized("the session ended: log in again")),
        Err(e) => Err(admin_error(&e)),
    }
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub(crate) fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find_map(|(k, v)| (k == name).then_some(v))
}

/// The session cookie: only for this site's requests, out of scripts' reach, and over TLS
/// only when the server speaks it.
fn session_cookie(value: &str, max_age_secs: i64, secure: bool) -> Option<HeaderValue> {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age_secs}{secure}"
    ))
    .ok()
}

/// `POST /api/console/login`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct LoginBody {
    name: String,
    #[schema(write_only)]
    password: String,
}

/// A session begun: its cookie is set (`sase_session`: HttpOnly, SameSite=Strict, Secure
/// over TLS).
#[derive(Serialize, ToSchema)]
pub(super) struct LoginAnswer {
    name: String,
    role: Role,
    /// Send it in `X-CSRF-Token` with every state-changing request of the session.
    csrf: String,
    /// When the session ends, Unix ms.
    expires_at_ms: i64,
}

/// Who is calling.
#[derive(Serialize, ToSchema)]
pub(super) struct Me {
    /// The admin's name (`console-admin`: the configured admin token).
    name: String,
    role: Role,
}

/// `POST /api/console/login`: a session cookie and its CSRF token for a name and password.
#[utoipa::path(post, path = "/api/console/login", operation_id = "login", tag = "admins",
    request_body = LoginBody,
    responses(
        (status = 200, description = "Logged in: the session cookie is set", body = LoginAnswer,
            headers(("set-cookie" = String, description = "`sase_session`"))),
        (status = 401, description = "`login_failed`: wrong name or password", body = ApiError),
        (status = 429, description = "`rate_limited`: too many failed logins for this name (`Retry-After`)", body = ApiError),
    ))]
pub(super) async fn login(State(state): State<AppState>, b: JsonBody<LoginBody>) -> Response {
    let b = match body(b) {
        Ok(b) => b,
        Err(r) => return r,
    };
    match state.logins.admit(&b.name).await {
        Ok(Ok(())) => {}
        Ok(Err(retry_after)) => {
            tracing::warn!(admin = %b.name, retry_after, "login refused: too many failures");
            let mut refused = error(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!("too many failed logins for this name: try again in {retry_after} s"),
            );
            if let Ok(value) = HeaderValue::from_str(&retry_after.to_string()) {
                refused.headers_mut().insert(RETRY_AFTER, value);
            }
            return refused;
        }
        Err(e) => return super::engine_error(&e),
    }
    match state.admins.login(&b.name, &b.password).await {
        Ok(Some(login)) => {
            tracing::info!(admin = %login.identity.name, "admin logged in");
            state
                .audit
                .record(
                    &login.identity.name,
                    "admin.login",
                    format!("admin/{}", login.identity.name),
                    json!({}),
                )
                .await;
            let max_age = (login.expires_at_ms - state.engine.clock().now_ms()) / 1000;
            let mut response = Json(LoginAnswer {
                name: login.identity.name,
                role: login.identity.role,
                csrf: login.csrf,
                expires_at_ms: login.expires_at_ms,
            })
            .into_response();
            if let Some(cookie) = session_cookie(&login.session, max_age, state.secure_cookies) {
                response.headers_mut().insert(SET_COOKIE, cookie);
            }
            response
        }
        Ok(None) => {
            tracing::warn!(admin = %b.name, "failed admin login");
            if let Err(e) = state.logins.failed(&b.name).await {
                return super::engine_error(&e);
            }
            // The name as typed (it may be no admin's), never the password.
            state
                .audit
                .record(
                    &b.name,
                    "admin.login_failed",
                    format!("admin/{}", b.name),
                    json!({}),
                )
                .await;
            error(StatusCode::UNAUTHORIZED, "login_failed", "wrong name or password")
        }
        Err(e) => admin_error(&e),
    }
}

/// `POST /api/console/logout`: ends the session (a token's caller has none to end).
#[utoipa::path(post, path = "/api/console/logout", operation_id = "logout", tag = "admins",
    responses((status = 204, description = "Logged out: the cookie is cleared")))]
pub(super) async fn logout(
    State(state): State<AppState>,
    Extension(me): Extension<Identity>,
    headers: HeaderMap,
) -> Response {
    if let Some(session) = cookie(&headers, SESSION_COOKIE) {
        if let Err(e) = state.admins.logout(session).await {
            return admin_error(&e);
        }
        state
            .audit
            .record(&me.name, "admin.logout", format!("admin/{}", me.name), json!({}))
            .await;
    }
    let mut response = StatusCode::NO_CONTENT.into_response();
    if let Some(cleared) = session_cookie("", 0, state.secure_cookies) {
        response.headers_mut().insert(SET_COOKIE, cleared);
    }
    response
}

/// `GET /api/console/me`: who is calling, with which role.
#[utoipa::path(get, path = "/api/console/me", operation_id = "me", tag = "admins",
    responses((status = 200, description = "The caller", body = Me)))]
pub(super) async fn me(Extension(identity): Extension<Identity>) -> Response {
    Json(Me {
        name: identity.name,
        role: identity.role,
    })
    .into_response()
}
