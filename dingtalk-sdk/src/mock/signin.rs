//! Sign-in as the mock serves it (`docs/dingtalk-directory.md` a): the authorize page
//! `GET /oauth2/auth` (a plain HTML page with a form per user), the consent that redirects
//! (303) to the app's `redirect_uri?authCode=…&state=…`, the code exchange
//! `POST /v1.0/oauth2/userAccessToken` (single-use codes, valid [`CODE_TTL_MS`] on the mock's
//! clock) and `GET /v1.0/contact/users/me` with the user's token.

use super::api_error;
use super::control::Refused;
use super::server::{Shared, TOKEN_HEADER};
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;

/// How long an `authCode` may be exchanged, on the mock's clock (unconfirmed for DingTalk).
pub const CODE_TTL_MS: i64 = 300_000;
/// The user token's lifetime (DOC-USERTOKEN: 7,200 s), on the mock's clock.
const USER_TOKEN_TTL_MS: i64 = 7_200_000;

/// An issued `authCode`.
#[derive(Debug, Clone)]
pub(crate) struct Grant {
    client_id: String,
    corp_id: String,
    user_id: String,
    expires_ms: i64,
    used: bool,
}

/// A user's session: a user access token or a refresh token.
#[derive(Debug, Clone)]
pub(crate) struct Session {
    pub(crate) client_id: String,
    corp_id: String,
    user_id: String,
    expires_ms: i64,
}

/// A sign-in to script without a browser (`POST /__mock/oauth/code`,
/// [`MockDingTalk::sign_in_code`](super::MockDingTalk::sign_in_code)).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct MockSignIn {
    /// The user who signs in.
    pub user_id: String,
    /// The user's organisation (default: the mock's).
    #[serde(default)]
    pub corp_id: Option<String>,
    /// The app; may be left out when one app is registered.
    #[serde(default)]
    pub client_id: Option<String>,
    /// Where the browser would be sent back.
    pub redirect_uri: String,
    /// The `state` to send back.
    #[serde(default)]
    pub state: Option<String>,
}

impl MockSignIn {
    /// `user_id` of the mock's organisation signs in to `client_id`, sent back to
    /// `redirect_uri`.
    pub fn new(
        client_id: impl Into<String>,
        user_id: impl Into<String>,
        redirect_uri: impl Into<String>,
    ) -> Self {
        Self {
            user_id: user_id.into(),
            corp_id: None,
            client_id: Some(client_id.into()),
            redirect_uri: redirect_uri.into(),
            state: None,
        }
    }

    /// The `state`.
    pub fn state(mut self, state: impl Into<String>) -> Self {
        self.state = Some(state.into());
        self
    }

    /// A user of another organisation.
    pub fn corp_id(mut self, corp_id: impl Into<String>) -> Self {
        self.corp_id = Some(corp_id.into());
        self
    }
}

/// The outcome of a scripted sign-in: the code and the URL the browser would be sent to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct MockSignInCode {
    /// The `authCode`.
    pub auth_code: String,
    /// `redirect_uri?authCode=…&state=…`.
    pub location: String,
}

fn invalid(message: impl Into<String>) -> Refused {
    ("invalidParameter".to_owned(), message.into())
}

/// Checks the app and its redirect URL.
fn check_app(shared: &Shared, client_id: &str, redirect_uri: &str) -> Result<(), Refused> {
    let store = shared.lock();
    let app = store
        .apps
        .get(client_id)
        .ok_or_else(|| invalid(format!("unknown client_id {client_id}")))?;
    let http = redirect_uri.starts_with("http://") || redirect_uri.starts_with("https://");
    let registered = app.redirect_uris.is_empty()
        || app
            .redirect_uris
            .iter()
            .any(|p| redirect_uri.starts_with(p.as_str()));
    if http && registered {
        Ok(())
    } else {
        Err(invalid(format!(
            "redirect_uri {redirect_uri} is not registered for {client_id}"
        )))
    }
}

/// Issues a code for a user of the directory; the URL the browser goes back to.
pub(crate) fn issue_code(shared: &Shared, sign_in: MockSignIn) -> Result<MockSignInCode, Refused> {
    let client_id = match sign_in.client_id {
        Some(id) => id,
        None => {
            let store = shared.lock();
            let mut apps = store.apps.keys();
            match (apps.next(), apps.next()) {
                (Some(only), None) => only.clone(),
                _ => {
                    return Err(invalid(
                        "clientId is required when not exactly one app is registered",
                    ))
                }
            }
        }
    };
    check_app(shared, &client_id, &sign_in.redirect_uri)?;
    let corp_id = sign_in
        .corp_id
        .unwrap_or_else(|| super::config::DEFAULT_CORP_ID.to_owned());
    let now = shared.now();
    let mut store = shared.lock();
    if store.directory.user(&corp_id, &sign_in.user_id).is_none() {
        return Err(invalid(format!("no user {} in {corp_id}", sign_in.user_id)));
    }
    let code = format!("{:032x}", rand::random::<u128>());
    store.auth_codes.insert(
        code.clone(),
        Grant {
            client_id,
            corp_id,
            user_id: sign_in.user_id,
            expires_ms: now.saturating_add(CODE_TTL_MS),
            used: false,
        },
    );
    let mut back = form_urlencoded::Serializer::new(String::new());
    back.append_pair("authCode", &code);
    if let Some(state) = &sign_in.state {
        back.append_pair("state", state);
    }
    let separator = if sign_in.redirect_uri.contains('?') {
        '&'
    } else {
        '?'
    };
    Ok(MockSignInCode {
        location: format!("{}{separator}{}", sign_in.redirect_uri, back.finish()),
        auth_code: code,
    })
}

pub(crate) fn router() -> Router<Arc<Shared>> {
    Router::new()
        .route("/oauth2/auth", get(authorize))
        .route("/oauth2/auth/consent", post(consent))
        .route("/v1.0/oauth2/userAccessToken", post(user_access_token))
        .route("/v1.0/contact/users/me", get(me))
}

/// Escapes text for HTML (text and attribute values).
fn escape(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '&' => "&amp;".to_owned(),
            '<' => "&lt;".to_owned(),
            '>' => "&gt;".to_owned(),
            '"' => "&quot;".to_owned(),
            '\'' => "&#39;".to_owned(),
            c => c.to_string(),
        })
        .collect()
}

fn error_page(message: &str) -> Response {
    let page = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><link rel=\"icon\" href=\"data:,\"><title>DingTalk sign-in (mock)</title></head>\
         <body><h1>Sign-in refused</h1><p id=\"error\">{}</p></body></html>",
        escape(message)
    );
    (StatusCode::BAD_REQUEST, Html(page)).into_response()
}

/// `GET /oauth2/auth`: checks the request as DingTalk would, then lists the directory's
/// users (of `corpId`/`exclusiveCorpId` when given), one form and button each.
async fn authorize(State(shared): State<Arc<Shared>>, Query(q): Query<HashMap<String, String>>) -> Response {
    let param = |k: &str| q.get(k).map(String::as_str).unwrap_or_default();
    let (client_id, redirect_uri, scope) = (param("client_id"), param("redirect_uri"), param("scope"));
    if param("response_type") != "code" {
        return error_page("response_type must be code");
    }
    if !matches!(scope, "openid" | "openid corpid") {
        return error_page("scope must be `openid` or `openid corpid`");
    }
    if let Err((_, message)) = check_app(&shared, client_id, redirect_uri) {
        return error_page(&message);
    }
    let only_corp = q.get("exclusiveCorpId").or_else(|| q.get("corpId"));
    let users: Vec<_> = shared
        .lock()
        .directory
        .users
        .iter()
        .filter(|u| only_corp.is_none_or(|corp| &u.corp_id == corp))
        .cloned()
        .collect();
    let hidden = |name: &str, value: &str| {
        format!(
            "<input type=\"hidden\" name=\"{name}\" value=\"{}\">",
            escape(value)
        )
    };
    let mut page = String::from(
        "<!doctype html><html><head><meta charset=\"utf-8\"><link rel=\"icon\" href=\"data:,\"><title>DingTalk sign-in (mock)</title></head><body>\
         <h1>Sign in with DingTalk (mock)</h1><ul>",
    );
    for user in users {
        page.push_str(&format!(
            "<li><form method=\"post\" action=\"/oauth2/auth/consent\">{}{}{}{}{}\
             <button type=\"submit\" id=\"user-{}\">Sign in as {} ({}, {})</button></form></li>",
            hidden("client_id", client_id),
            hidden("redirect_uri", redirect_uri),
            hidden("state", param("state")),
            hidden("user_id", &user.user_id),
            hidden("corp_id", &user.corp_id),
            escape(&user.user_id),
            escape(&user.name),
            escape(&user.user_id),
            escape(&user.corp_id),
        ));
    }
    page.push_str("</ul></body></html>");
    Html(page).into_response()
}

/// `POST /oauth2/auth/consent` (the page's form): 303 to the app with the code.
async fn consent(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let form: HashMap<String, String> = form_urlencoded::parse(&body).into_owned().collect();
    let field = |k: &str| form.get(k).cloned().unwrap_or_default();
    let sign_in = MockSignIn {
        user_id: field("user_id"),
        corp_id: Some(field("corp_id")),
        client_id: Some(field("client_id")),
        redirect_uri: field("redirect_uri"),
        state: form.get("state").filter(|s| !s.is_empty()).cloned(),
    };
    match issue_code(&shared, sign_in) {
        Ok(issued) => (StatusCode::SEE_OTHER, [(header::LOCATION, issued.location)]).into_response(),
        Err((_, message)) => error_page(&message),
    }
}

fn bad_code() -> Response {
    api_error(StatusCode::BAD_REQUEST, "invalidAuthCode", "不存在的临时授权码")
}

/// `POST /v1.0/oauth2/userAccessToken`.
async fn user_access_token(
    State(shared): State<Arc<Shared>>,
    body: Result<Json<Value>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Ok(Json(body)) = body else {
        return api_error(StatusCode::BAD_REQUEST, "invalidParameter", "malformed JSON body");
    };
    let text = |k: &str| body.get(k).and_then(Value::as_str).unwrap_or_default().to_owned();
    let (client_id, secret, grant_type) = (text("clientId"), text("clientSecret"), text("grantType"));
    let now = shared.now();
    let mut store = shared.lock();
    if store.apps.get(&client_id).map(|a| a.client_secret.as_str()) != Some(secret.as_str()) {
        return api_error(
            StatusCode::BAD_REQUEST,
            "invalidClientIdOrSecret",
            "无效的clientId或者clientSecret",
        );
    }
    let (corp_id, user_id) = match grant_type.as_str() {
        "authorization_code" => {
            let code = text("code");
            let Some(grant) = store.auth_codes.get_mut(&code) else {
                return bad_code();
            };
            if grant.used || grant.expires_ms <= now || grant.client_id != client_id {
                return bad_code();
            }
            grant.used = true;
            (grant.corp_id.clone(), grant.user_id.clone())
        }
        "refresh_token" => match store.refresh_tokens.get(&text("refreshToken")) {
            Some(s) if s.client_id == client_id => (s.corp_id.clone(), s.user_id.clone()),
            _ => {
                return api_error(
                    StatusCode::BAD_REQUEST,
                    "invalidRefreshToken",
                    "不合法的refresh_token",
                )
            }
        },
        _ => {
            return api_error(
                StatusCode::BAD_REQUEST,
                "invalidParameter",
                "grantType is not supported",
            )
        }
    };
    let session = Session {
        client_id,
        corp_id: corp_id.clone(),
        user_id,
        expires_ms: now.saturating_add(USER_TOKEN_TTL_MS),
    };
    let (access, refresh) = (
        format!("{:032x}", rand::random::<u128>()),
        format!("{:032x}", rand::random::<u128>()),
    );
    store.user_tokens.insert(access.clone(), session.clone());
    store.refresh_tokens.insert(refresh.clone(), session);
    Json(json!({"accessToken": access, "refreshToken": refresh, "expireIn": USER_TOKEN_TTL_MS / 1000, "corpId": corp_id}))
        .into_response()
}

/// `GET /v1.0/contact/users/me`, with a user token (an app token is refused).
async fn me(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let Some(token) = headers.get(TOKEN_HEADER).and_then(|v| v.to_str().ok()) else {
        return api_error(
            StatusCode::BAD_REQUEST,
            "AuthenticationFailed.MissingParameter",
            "缺少参数：x-acs-dingtalk-access-token",
        );
    };
    let now = shared.now();
    let store = shared.lock();
    let user = store
        .user_tokens
        .get(token)
        .filter(|s| s.expires_ms > now)
        .and_then(|s| store.directory.user(&s.corp_id, &s.user_id));
    match user {
        Some(user) => Json(user.profile_json()).into_response(),
        None => api_error(
            StatusCode::BAD_REQUEST,
            "InvalidAuthentication",
            "不合法的access_token",
        ),
    }
}

/// The app a user token belongs to (quota accounting).
pub(crate) fn token_app(store: &super::server::Store, token: &str) -> Option<String> {
    store.user_tokens.get(token).map(|s| s.client_id.clone())
}
