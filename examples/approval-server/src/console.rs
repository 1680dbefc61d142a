//! The web console (the Approval Center): server-rendered HTML pages for named admins, signed
//! in with the console's session cookie. Pages read through the same engine and stores as the
//! console API; every change is sent by the page's script to the console API itself (with the
//! session's CSRF token), so roles, validation and the audit log are the API's. The style
//! sheet and the script are embedded; pages carry no inline script (a strict
//! Content-Security-Policy says so).

mod admins;
mod assets;
mod audit;
mod devices;
pub(crate) mod i18n;
mod layout;
mod policies;
mod requests;
mod time;
mod workflows;

use crate::admins::Role;
use crate::api::{AppState, SESSION_COOKIE};
use axum::extract::{Path, Query};
use axum::http::header::{CACHE_CONTROL, CONTENT_SECURITY_POLICY, LOCATION, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use i18n::{Lang, LANG_COOKIE};
use layout::Viewer;
use maud::{html, Markup};
use serde::Deserialize;

/// The console's routes (HTML, not part of the OpenAPI document of the JSON API).
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/console/requests") }))
        .route("/console", get(|| async { Redirect::to("/console/requests") }))
        .route("/console/", get(|| async { Redirect::to("/console/requests") }))
        .route("/console/login", get(login))
        .route("/console/lang/{lang}", get(choose_language))
        .route(assets::STYLE_PATH, get(assets::style))
        .route(assets::SCRIPT_PATH, get(assets::script))
        .route(assets::ICON_PATH, get(assets::icon))
        .route("/console/requests", get(requests::list))
        .route("/console/requests/{id}", get(requests::detail))
        .merge(workflows::routes())
        .merge(policies::routes())
        .merge(devices::routes())
        .merge(audit::routes())
        .merge(admins::routes())
}

/// What every console page answers with: no caching, no framing, scripts and styles from this
/// server only, no inline script.
fn html_page(status: StatusCode, markup: Markup) -> Response {
    let mut response = (status, markup).into_response();
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    headers.insert("referrer-policy", HeaderValue::from_static("same-origin"));
    response
}

/// A page outside the console (no sign-in), as the sign-in redirect shows.
pub(crate) fn notice_page(status: StatusCode, title: &str, content: Markup) -> Response {
    html_page(status, layout::notice(title, content))
}

/// A page with one message, outside the console (no sign-in): what the sign-in redirect shows.
pub(crate) fn message_page(status: StatusCode, title: &str, message: &str) -> Response {
    notice_page(status, title, html! { p.message { (message) } })
}

/// The signed-in admin looking at `uri`, or the answer to give instead: the login page for
/// no or an ended session, a page saying so for a role below `needed`.
async fn viewer(state: &AppState, headers: &HeaderMap, uri: &Uri, needed: Role) -> Result<Viewer, Response> {
    let lang = Lang::of(headers);
    let here = uri
        .path_and_query()
        .map_or_else(|| uri.path().to_owned(), ToString::to_string);
    let session = crate::api::cookie(headers, SESSION_COOKIE);
    let found = match session {
        Some(session) => state.admins.session(session).await.ok().flatten(),
        None => None,
    };
    let Some((identity, csrf)) = found else {
        let next = form_urlencoded::byte_serialize(here.as_bytes()).collect::<String>();
        return Err(Redirect::to(&format!("/console/login?next={next}")).into_response());
    };
    let viewer = Viewer {
        identity,
        csrf,
        lang,
        here,
    };
    if !viewer.identity.role.allows(needed) {
        let t = lang.t();
        return Err(html_page(
            StatusCode::FORBIDDEN,
            layout::page(&viewer, layout::Section::WorkflowInstance, t.forbidden, html! {}),
        ));
    }
    Ok(viewer)
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Next {
    next: Option<String>,
}

/// Only this console's own pages: never another site (an open redirect).
fn local(next: Option<String>) -> String {
    next.filter(|n| n.starts_with("/console/") && !n.starts_with("//") && !n.contains('\\'))
        .unwrap_or_else(|| "/console/requests".to_owned())
}

/// The login page: name and password, sent by the script to `POST /api/console/login`.
async fn login(headers: HeaderMap, uri: Uri, Query(q): Query<Next>) -> Response {
    let lang = Lang::of(&headers);
    let t = lang.t();
    let here = uri.path_and_query().map_or("/console/login", |p| p.as_str());
    html_page(
        StatusCode::OK,
        layout::bare(
            lang,
            t.log_in,
            here,
            html! {
                form.stack data-api="/api/console/login" data-method="POST" data-then=(local(q.next)) {
                    div.field {
                        label for="name" { (t.name) }
                        input #name name="name" autocomplete="username" required autofocus;
                    }
                    div.field {
                        label for="password" { (t.password) }
                        input #password name="password" type="password" autocomplete="current-password" required;
                    }
                    button type="submit" { (t.log_in) }
                    output.message role="alert" {}
                }
            },
        ),
    )
}

/// `GET /console/lang/{lang}?next=`: keeps the choice in a cookie and goes back.
async fn choose_language(Path(tag): Path<String>, Query(q): Query<Next>) -> Response {
    let next = local(q.next);
    let mut response = (StatusCode::SEE_OTHER, [(LOCATION, next)]).into_response();
    if let Some(lang) = Lang::parse(&tag) {
        let cookie = format!(
            "{LANG_COOKIE}={}; Path=/; SameSite=Strict; Max-Age=31536000",
            lang.tag()
        );
        if let Ok(value) = HeaderValue::from_str(&cookie) {
            response.headers_mut().insert(SET_COOKIE, value);
        }
    }
    response
}

/// A page saying what was not found, in the console's frame.
fn not_found(viewer: &Viewer, section: layout::Section) -> Response {
    let t = viewer.lang.t();
    html_page(
        StatusCode::NOT_FOUND,
        layout::page(viewer, section, t.not_found, html! {}),
    )
}

/// A page for a store failure: the message, in the frame.
fn failed(viewer: &Viewer, section: layout::Section, e: &dyn std::fmt::Display) -> Response {
    html_page(
        StatusCode::INTERNAL_SERVER_ERROR,
        layout::page(viewer, section, "500", html! { p { (e.to_string()) } }),
    )
}
