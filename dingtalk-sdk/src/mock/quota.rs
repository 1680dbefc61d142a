//! DingTalk's call quotas as the mock enforces them ([`MockQuotas`]), and the per-app, per-API
//! call counts it keeps ([`MockUsage`], `GET /__mock/usage`).
//!
//! - QPS: per app and per API (method and path without the query), calls in the current
//!   one-second window of the mock's clock (`clock_ms / 1000`); over the limit → 403
//!   `Forbidden.AccessDenied.QpsLimitForAppkeyAndApi`.
//! - Monthly: per organisation (apps sharing a corpId), calls in the current calendar month
//!   (UTC) of the clock, token, sign-in and contacts requests exempt; over the limit → 403
//!   `Forbidden.AccessDenied.ApiCountLimitForOrg`.
//! - The old API (`/gettoken`, `/topapi/…`) answers the same refusals its way: HTTP 200 with
//!   `errcode` 90018 (QPS) or 90020 (month).
//!
//! A refused call is not executed. Counts restart when the clock enters a new month.

use super::api_error;
use super::config::MockQuotas;
use super::server::Store;
use super::state::minute_utc;
use axum::http::StatusCode;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// DingTalk's code for a call over the per-app, per-API QPS limit.
pub(crate) const QPS_CODE: &str = "Forbidden.AccessDenied.QpsLimitForAppkeyAndApi";
/// DingTalk's code for a call over the organisation's monthly quota.
pub(crate) const MONTHLY_CODE: &str = "Forbidden.AccessDenied.ApiCountLimitForOrg";
/// The message the mock sends with [`QPS_CODE`] (DingTalk's live text is not recorded).
pub(crate) const QPS_MESSAGE: &str = "应用调用该接口的QPS超过限制";
/// The message the mock sends with [`MONTHLY_CODE`] (DingTalk's live text is not recorded).
const MONTHLY_MESSAGE: &str = "企业调用接口的次数已超过本月限额";

/// Calls per app and API, as `GET /__mock/usage` answers:
///
/// ```json
/// {"apps": {"dingappkey": {"corp_id": "dingmockcorp0000000000", "month": "2026-12",
///   "calls": 9, "quota_used": 7,
///   "by_api": {"POST /v1.0/workflow/processInstances": {"calls": 8, "refused_qps": 3, "refused_quota": 0},
///              "POST /v1.0/oauth2/accessToken": {"calls": 1, "refused_qps": 0, "refused_quota": 0}}}}}
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct MockUsage {
    /// By Client ID (AppKey).
    pub apps: BTreeMap<String, AppUsage>,
}

/// One app's calls in the current month of the mock's clock.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct AppUsage {
    /// The app's organisation; the monthly quota is shared by the apps of one corpId.
    pub corp_id: String,
    /// The calendar month (UTC) counted, `yyyy-MM`.
    pub month: String,
    /// Every call received this month, refused and exempt ones included.
    pub calls: u64,
    /// The calls counted against `calls_per_month`: executed, exempt ones (token, sign-in and
    /// contacts requests) excluded.
    pub quota_used: u64,
    /// By API, `"<METHOD> <path>"` (e.g. `POST /v1.0/workflow/processInstances`).
    pub by_api: BTreeMap<String, ApiUsage>,
}

/// One app's calls of one API in the current month.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ApiUsage {
    /// Every call received, refused ones included.
    pub calls: u64,
    /// Calls refused with `Forbidden.AccessDenied.QpsLimitForAppkeyAndApi`.
    pub refused_qps: u64,
    /// Calls refused with `Forbidden.AccessDenied.ApiCountLimitForOrg`.
    pub refused_quota: u64,
}

/// The quota state kept in the store.
#[derive(Debug, Default)]
pub(crate) struct QuotaState {
    pub(crate) limits: MockQuotas,
    pub(crate) usage: MockUsage,
    /// `(client id, api)` → (one-second window, calls executed in it).
    windows: BTreeMap<(String, String), (i64, u32)>,
}

/// Whether calls of this path are exempt from the monthly quota: token and sign-in
/// requests, and the contacts APIs (PROTOCOL e.1).
pub(crate) fn is_exempt(path: &str) -> bool {
    matches!(
        path,
        "/v1.0/oauth2/accessToken" | "/gettoken" | "/v1.0/oauth2/userAccessToken"
    ) || [
        "/v1.0/contact/",
        "/topapi/user/",
        "/topapi/v2/user/",
        "/topapi/v2/department/",
    ]
    .iter()
    .any(|prefix| path.starts_with(prefix))
}

/// Why a call was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Over the per-app, per-API QPS.
    Qps,
    /// Over the org's monthly quota.
    Month,
}

impl Refusal {
    /// DingTalk's answer: 403 with the v1.0 code, or the old API's HTTP 200 with its errcode.
    pub(crate) fn response(self, old_api: bool) -> Response {
        match (self, old_api) {
            (Refusal::Qps, false) => api_error(StatusCode::FORBIDDEN, QPS_CODE, QPS_MESSAGE),
            (Refusal::Month, false) => api_error(StatusCode::FORBIDDEN, MONTHLY_CODE, MONTHLY_MESSAGE),
            (Refusal::Qps, true) => super::oapi::oapi_error(90018, QPS_MESSAGE),
            (Refusal::Month, true) => super::oapi::oapi_error(90020, MONTHLY_MESSAGE),
        }
    }
}

/// `yyyy-MM` (UTC) of a Unix-ms time.
fn month_of(now_ms: i64) -> String {
    minute_utc(now_ms).chars().take(7).collect()
}

/// Counts a call of `api` by `client_id` at `now_ms` and applies the quotas: `Some` is why
/// it is refused instead of executed.
pub(crate) fn admit(
    store: &mut Store,
    client_id: &str,
    api: &str,
    exempt: bool,
    now_ms: i64,
) -> Option<Refusal> {
    let month = month_of(now_ms);
    let corp_id = store
        .apps
        .get(client_id)
        .map(|a| a.corp_id.clone())
        .unwrap_or_default();
    let quotas = &mut store.quotas;
    let limits = quotas.limits;
    // The organisation's use this month, before this call.
    let org_used: u64 = quotas
        .usage
        .apps
        .iter()
        .filter(|(id, u)| u.corp_id == corp_id && u.month == month && id.as_str() != client_id)
        .map(|(_, u)| u.quota_used)
        .sum();
    let app = quotas.usage.apps.entry(client_id.to_owned()).or_default();
    if app.month != month {
        *app = AppUsage {
            month: month.clone(),
            ..AppUsage::default()
        };
    }
    app.corp_id = corp_id;
    app.calls += 1;
    let org_used = org_used + app.quota_used;
    let per_api = app.by_api.entry(api.to_owned()).or_default();
    per_api.calls += 1;

    let second = now_ms.div_euclid(1000);
    let window = quotas
        .windows
        .entry((client_id.to_owned(), api.to_owned()))
        .or_insert((second, 0));
    if window.0 != second {
        *window = (second, 0);
    }
    if limits.qps_per_app_and_api.is_some_and(|qps| window.1 >= qps) {
        per_api.refused_qps += 1;
        return Some(Refusal::Qps);
    }
    if !exempt && limits.calls_per_month.is_some_and(|max| org_used >= max) {
        per_api.refused_quota += 1;
        return Some(Refusal::Month);
    }
    window.1 += 1;
    if !exempt {
        app.quota_used += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::month_of;

    #[test]
    fn months_are_utc_calendar_months() {
        assert_eq!(month_of(1_796_083_199_999), "2026-11");
        assert_eq!(month_of(1_796_083_200_000), "2026-12");
    }
}
