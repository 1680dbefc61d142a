//! The console's style sheet, script and icon, embedded in the binary (no build step, no CDN) and
//! served with the page's security headers. Their paths carry the package version, so a new
//! release is fetched again while a page's assets are cached.

use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};

/// Where the style sheet is served.
pub(crate) const STYLE_PATH: &str = concat!("/console/assets/console-", env!("CARGO_PKG_VERSION"), ".css");
/// Where the script is served.
pub(crate) const SCRIPT_PATH: &str = concat!("/console/assets/console-", env!("CARGO_PKG_VERSION"), ".js");

/// Where the icon is served.
pub(crate) const ICON_PATH: &str = concat!("/console/assets/icon-", env!("CARGO_PKG_VERSION"), ".svg");

const STYLE: &str = include_str!("assets/console.css");
const ICON: &str = include_str!("assets/icon.svg");
const SCRIPT: &str = include_str!("assets/console.js");

/// `GET` [`STYLE_PATH`].
pub(crate) async fn style() -> Response {
    asset("text/css; charset=utf-8", STYLE)
}

/// `GET` [`SCRIPT_PATH`].
pub(crate) async fn script() -> Response {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

/// `GET` [`ICON_PATH`].
pub(crate) async fn icon() -> Response {
    asset("image/svg+xml", ICON)
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (CONTENT_TYPE, content_type),
            (CACHE_CONTROL, "public, max-age=86400, immutable"),
        ],
        body,
    )
        .into_response()
}
