//! Test utilities: a mock DingTalk that behaves like the real one closely enough that code
//! passing against it works in production. Loopback only.
//!
//! - [`MockDingTalk`]: the OpenAPI token and workflow endpoints with real paths, JSON shapes,
//!   validation against registered forms and error bodies; instances with real state
//!   (RUNNING → COMPLETED agree/refuse, TERMINATED), tasks and operation records; encrypted
//!   event delivery by HTTP push (checking the encrypted `success` reply) and by Stream (with
//!   DingTalk's redelivery schedule); DingTalk's quotas (QPS per app and API, calls per month)
//!   on an injectable clock, with per-app, per-API usage counts; fault injection; a request
//!   journal.
//! - Sign-in and the directory (`docs/dingtalk-directory.md`): a sign-in page at
//!   `/oauth2/auth` (point the login base there), single-use codes, user tokens and
//!   `users/me`; the old API's `/gettoken` and directory calls over a configurable
//!   [`MockDirectory`] of several organisations; directory changes that push contact-change
//!   events.
//! - [`control`]: the control API, under `/__mock/`, to act as approvers and administrators
//!   would, push chosen events, change the directory, sign users in, set quotas and read the
//!   usage.
//! - [`gateway`]: the Stream gateway, also usable on its own.
//!
//! The standalone binary `dingtalk-mock` serves the same for test authors in any language.

#[expect(
    clippy::result_large_err,
    reason = "handlers return ready axum responses as their errors; their size does not matter in a mock"
)]
mod api;
mod config;
pub mod control;
mod delivery;
mod directory;
pub mod gateway;
#[expect(
    clippy::result_large_err,
    reason = "handlers return ready axum responses as their errors; their size does not matter in a mock"
)]
mod oapi;
mod quota;
mod server;
mod signin;
mod state;

pub use config::{
    MockApp, MockConfig, MockFaults, MockFormField, MockProcess, MockQuotas, MockStream, DEFAULT_CORP_ID,
    DINGTALK_REDELIVERY_MS,
};
pub use delivery::{Channel, Delivery, MockEvent, Via};
pub use directory::{MockDepartment, MockDirectory, MockUser, OTHER_CORP_ID};
pub use quota::{ApiUsage, AppUsage, MockUsage};
pub use server::{JournalEntry, MockClock, MockDingTalk, MockDingTalkBuilder, Notify};
pub use signin::{MockSignIn, MockSignInCode, CODE_TTL_MS};

/// Milliseconds since the Unix epoch by the system clock: the default of the mock's clock
/// ([`MockDingTalkBuilder::clock`]), and the time of event pushes and Stream frame headers.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// A DingTalk error answer: `{"code", "message", "requestid"}` with its status. Every error
/// the mock sends (OpenAPI, Stream gateway, control API) has this shape.
pub(crate) fn api_error(
    status: axum::http::StatusCode,
    code: &str,
    message: &str,
) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    let requestid = format!("{:032X}", rand::random::<u128>());
    (
        status,
        axum::Json(serde_json::json!({ "code": code, "message": message, "requestid": requestid })),
    )
        .into_response()
}

/// Polls `condition` every 10 ms until it holds or `timeout` passes; returns whether it held.
pub(crate) async fn poll_until(timeout: std::time::Duration, condition: impl Fn() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    while tokio::time::Instant::now() < deadline {
        if condition() {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    condition()
}
