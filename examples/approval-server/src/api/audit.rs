//! The audit log's routes (admin role): entries with filters and paging, their export as JSON
//! lines, and the chain's verification.

use super::{error, AppState};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::StatusCode;
use axum::response::{IntoResponse as _, Response};
use axum::Json;
use sase_approval::audit::AuditFilter;
use serde::Deserialize;
use serde_json::json;

/// `?actor=&action=&subject=&from_ms=&to_ms=&after_seq=&limit=` (`action` matches a prefix:
/// `policy.` is every policy change; `limit` at most 1,000, 100 by default).
#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub(super) struct AuditQuery {
    actor: Option<String>,
    action: Option<String>,
    subject: Option<String>,
    from_ms: Option<i64>,
    to_ms: Option<i64>,
    after_seq: u64,
    limit: Option<usize>,
}

impl AuditQuery {
    fn filter(self, default_limit: usize) -> AuditFilter {
        let mut filter = AuditFilter::default();
        filter.actor = self.actor;
        filter.action_prefix = self.action;
        filter.subject = self.subject;
        filter.from_ms = self.from_ms;
        filter.to_ms = self.to_ms;
        filter.after_seq = self.after_seq;
        filter.limit = self.limit.unwrap_or(default_limit).clamp(1, 1_000);
        filter
    }
}

fn query(q: Result<Query<AuditQuery>, QueryRejection>) -> Result<AuditQuery, axum::response::Response> {
    q.map(|Query(q)| q)
        .map_err(|e| error(StatusCode::BAD_REQUEST, "bad_query", e.body_text()))
}

pub(super) async fn list(
    State(state): State<AppState>,
    q: Result<Query<AuditQuery>, QueryRejection>,
) -> Response {
    let q = match query(q) {
        Ok(q) => q,
        Err(r) => return r,
    };
    match state.audit.store().list_audit(&q.filter(100)).await {
        Ok(entries) => Json(entries).into_response(),
        Err(e) => super::engine_error(&e),
    }
}

/// The entries as JSON lines, a page of at most 1,000 (`after_seq` for the next).
pub(super) async fn export(
    State(state): State<AppState>,
    q: Result<Query<AuditQuery>, QueryRejection>,
) -> Response {
    let q = match query(q) {
        Ok(q) => q,
        Err(r) => return r,
    };
    match state.audit.store().list_audit(&q.filter(1_000)).await {
        Ok(entries) => {
            let mut text = String::new();
            for entry in &entries {
                text.push_str(&json!(entry).to_string());
                text.push('\n');
            }
            ([(CONTENT_TYPE, "application/x-ndjson")], text).into_response()
        }
        Err(e) => super::engine_error(&e),
    }
}

/// Reads the whole chain, page by page, and says whether it is intact, or the first entry
/// where it breaks.
pub(super) async fn verify(State(state): State<AppState>) -> Response {
    match crate::audit_log::verify_chain(state.audit.store().as_ref()).await {
        Ok(Ok(entries)) => Json(json!({"intact": true, "entries": entries})).into_response(),
        Ok(Err(broken)) => Json(json!({
            "intact": false, "broken_at": broken.seq, "reason": broken.reason,
        }))
        .into_response(),
        Err(e) => super::engine_error(&e),
    }
}
