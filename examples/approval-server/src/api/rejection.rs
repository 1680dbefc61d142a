//! axum's own rejections as the API's JSON errors `{"error", "message"}`, with stable codes:
//! a body that is not JSON of the right shape (`bad_body`, 400), not sent as
//! `content-type: application/json` (`unsupported_media_type`, 415) or over
//! [`BODY_LIMIT_BYTES`] (`body_too_large`, 413); a path parameter that is not UTF-8 once
//! percent-decoded (`bad_path`, 400); no such route (`not_found`, 404) or method
//! (`method_not_allowed`, 405). The handlers authenticate first, then convert the rejection
//! here; the DingTalk Request URLs keep the SDK's own answers.

use super::error;
use axum::extract::path::ErrorKind;
use axum::extract::rejection::{BytesRejection, JsonRejection, PathRejection};
use axum::http::{Method, StatusCode, Uri};
use axum::response::Response;

/// The largest request body read, in bytes (64 KiB).
pub(super) const BODY_LIMIT_BYTES: usize = 64 * 1024;

fn body_too_large() -> Response {
    error(
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
        format!("the body is over {BODY_LIMIT_BYTES} bytes (64 KiB), the most this server reads"),
    )
}

/// A JSON body's rejection.
pub(super) fn json(rejection: JsonRejection) -> Response {
    match rejection {
        JsonRejection::MissingJsonContentType(_) => error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "the body must be JSON sent with `content-type: application/json`",
        ),
        JsonRejection::BytesRejection(r) => bytes(r),
        // Bad syntax (axum: 400) and the wrong shape (axum: 422) alike.
        other => error(StatusCode::BAD_REQUEST, "bad_body", other.body_text()),
    }
}

/// A raw body's rejection: over the cap, or not read to its end (a broken or slow client).
pub(super) fn bytes(rejection: BytesRejection) -> Response {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        body_too_large()
    } else {
        error(
            StatusCode::BAD_REQUEST,
            "bad_body",
            format!("the body could not be read: {}", rejection.body_text()),
        )
    }
}

/// A path parameter's rejection, naming the parameter when axum does.
pub(super) fn path(rejection: PathRejection) -> Response {
    let PathRejection::FailedToDeserializePathParams(failed) = rejection else {
        // No parameters for a route that declares them: a bug here, not bad input.
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            rejection.body_text(),
        );
    };
    let message = match failed.kind() {
        ErrorKind::InvalidUtf8InPathParam { key } => {
            format!("the path parameter `{key}` is not UTF-8 once percent-decoded")
        }
        ErrorKind::UnsupportedType { .. } => {
            return error(StatusCode::INTERNAL_SERVER_ERROR, "internal", failed.body_text())
        }
        kind => format!("bad path: {kind}"),
    };
    error(StatusCode::BAD_REQUEST, "bad_path", message)
}

/// The router's fallback: no route has this path.
pub(super) async fn not_found(method: Method, uri: Uri) -> Response {
    error(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no route for {method} {}", uri.path()),
    )
}

/// A route with this path exists, but not for this method (axum adds the `Allow` header).
pub(super) async fn method_not_allowed(method: Method, uri: Uri) -> Response {
    error(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{} does not answer {method}", uri.path()),
    )
}
