//! The audit log's routes (admin role): entries with filters and paging, their export as JSON
//! lines, and the chain's verification.

use super::{error, ApiError, AppState};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::StatusCode;
use axum::response::{IntoResponse as _, Response};
use axum::Json;
use sase_approval::audit::{AuditEntry, AuditFilter};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};

/// `?actor=&action=&subject=&from_ms=&to_ms=&after_seq=&limit=` (`action` matches a prefix:
/// `policy.` is every policy change; `limit` at most 1,000, 100 by default).
#[derive(Deserialize, Default, IntoParams)]
#[serde(default, deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct AuditQuery {
    /// Only entries by this actor (an admin, `device:…`, `dingtalk`, …).
    actor: Option<String>,
    /// Only actions starting with this (`policy.` is every policy change).
    action: Option<String>,
    /// Only entries about this (`request/req-…`, `workflow/…`).
    subject: Option<String>,
    /// Only entries at or after this, Unix ms.
    from_ms: Option<i64>,
    /// Only entries before this, Unix ms.
    to_ms: Option<i64>,
    /// Only entries after this sequence number (the next page).
    after_seq: u64,
    /// At most this many (1 to 1,000; 100 by default, 1,000 for the export).
    limit: Option<usize>,
}

/// The chain's verification.
#[derive(Serialize, ToSchema)]
pub(super) struct Verified {
    /// Whether every entry links to the one before and hashes to what it says.
    intact: bool,
    /// The entries checked (intact chains).
    #[serde(skip_serializing_if = "Option::is_none")]
    entries: Option<u64>,
    /// The first broken entry's sequence number.
    #[serde(skip_serializing_if = "Option::is_none")]
    broken_at: Option<u64>,
    /// How it breaks there.
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
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

/// The audit log's entries, oldest first, with filters and paging.
#[utoipa::path(get, path = "/api/console/audit", operation_id = "list_audit_entries", tag = "audit",
    params(AuditQuery),
    responses(
        (status = 200, description = "The entries", body = Vec<AuditEntry>),
        (status = 400, description = "`bad_query`", body = ApiError),
    ))]
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

/// The entries as JSON lines (one entry a line, as `GET /api/console/audit` gives them), a
/// page of at most 1,000 (`after_seq` for the next).
#[utoipa::path(get, path = "/api/console/audit/export", operation_id = "export_audit_entries", tag = "audit",
    params(AuditQuery),
    responses(
        (status = 200, description = "One entry a line", content_type = "application/x-ndjson", body = String),
        (status = 400, description = "`bad_query`", body = ApiError),
    ))]
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
#[utoipa::path(get, path = "/api/console/audit/verify", operation_id = "verify_audit_chain", tag = "audit",
    responses((status = 200, description = "Intact, or where it breaks", body = Verified)))]
pub(super) async fn verify(State(state): State<AppState>) -> Response {
    match crate::audit_log::verify_chain(state.audit.store().as_ref()).await {
        Ok(Ok(entries)) => Json(Verified {
            intact: true,
            entries: Some(entries),
            broken_at: None,
            reason: None,
        })
        .into_response(),
        Ok(Err(broken)) => Json(Verified {
            intact: false,
            entries: None,
            broken_at: Some(broken.seq),
            reason: Some(broken.reason),
        })
        .into_response(),
        Err(e) => super::engine_error(&e),
    }
}
