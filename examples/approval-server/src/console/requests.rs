//! Approval Center → Workflow Instance: the requests, newest first, filtered and paged with a
//! total; a request's detail with its history as a timeline, its DingTalk instance and grant,
//! and the approver's decision. The detail follows the request: a decision made in DingTalk
//! shows without a reload.

use super::i18n::Texts;
use super::layout::{self, Section, Viewer};
use super::time::{day_start_ms, utc};
use super::{failed, html_page, not_found, viewer};
use crate::admins::Role;
use crate::api::AppState;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;
use maud::{html, Markup};
use sase_approval::state::{ApprovalRequest, RequestId, RequestState, Source};
use sase_approval::store::ListFilter;
use sase_policy::ids::{DeviceId, UserId, WorkflowId};
use serde::Deserialize;

/// Requests a page.
const PAGE_SIZE: usize = 50;

/// The list's filters, as the form sends them (an empty value is no filter).
#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct ListQuery {
    state: String,
    requester: String,
    device: String,
    workflow: String,
    from: String,
    to: String,
    page: Option<usize>,
}

const STATES: [RequestState; 6] = [
    RequestState::Submitted,
    RequestState::Pending,
    RequestState::Approved,
    RequestState::Rejected,
    RequestState::Revoked,
    RequestState::Failed,
];

pub(super) fn state_name(t: &Texts, state: RequestState) -> &'static str {
    match state {
        RequestState::Submitted => t.submitted,
        RequestState::Pending => t.pending,
        RequestState::Approved => t.approved,
        RequestState::Rejected => t.rejected,
        RequestState::Revoked => t.revoked,
        _ => t.failed,
    }
}

fn badge(t: &Texts, state: RequestState) -> Markup {
    html! { span class=(format!("state {}", state.as_str())) { (state_name(t, state)) } }
}

impl ListQuery {
    fn filter(&self) -> ListFilter {
        let mut filter = ListFilter::default();
        filter.states = STATES.into_iter().filter(|s| s.as_str() == self.state).collect();
        let given = |s: &str| Some(s.trim()).filter(|s| !s.is_empty()).map(str::to_owned);
        filter.requester = given(&self.requester).map(UserId::new);
        filter.device = given(&self.device).map(DeviceId::new);
        filter.workflow = given(&self.workflow).map(WorkflowId::new);
        filter.created_from_ms = day_start_ms(self.from.trim());
        // The day named is included: up to the start of the next.
        filter.created_to_ms = day_start_ms(self.to.trim()).map(|start| start + 86_400_000);
        filter.newest_first = true;
        filter
    }

    /// This query on another page.
    fn page_href(&self, page: usize) -> String {
        let mut query = form_urlencoded::Serializer::new(String::new());
        for (k, v) in [
            ("state", &self.state),
            ("requester", &self.requester),
            ("device", &self.device),
            ("workflow", &self.workflow),
            ("from", &self.from),
            ("to", &self.to),
        ] {
            if !v.is_empty() {
                query.append_pair(k, v);
            }
        }
        query.append_pair("page", &page.to_string());
        format!("/console/requests?{}", query.finish())
    }
}

/// `GET /console/requests`.
pub(super) async fn list(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> Response {
    let viewer = match viewer(&state, &headers, &uri, Role::Viewer).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    // A query that does not parse (a page number that is not one) is no filter.
    let q = q.map(|Query(q)| q).unwrap_or_default();
    let t = viewer.lang.t();
    let mut filter = q.filter();
    let total = match state.engine.count(&filter).await {
        Ok(total) => total,
        Err(e) => return failed(&viewer, Section::WorkflowInstance, &e),
    };
    let pages = usize::try_from(total)
        .unwrap_or(usize::MAX)
        .div_ceil(PAGE_SIZE)
        .max(1);
    let page = q.page.unwrap_or(1).clamp(1, pages);
    filter.offset = (page - 1) * PAGE_SIZE;
    filter.limit = PAGE_SIZE;
    let requests = match state.engine.list(&filter).await {
        Ok(requests) => requests,
        Err(e) => return failed(&viewer, Section::WorkflowInstance, &e),
    };
    let workflows = state.engine.workflows();
    let content = html! {
        section.panel aria-labelledby="filters" {
            h2 #filters { (t.filters) }
            form.filters method="get" action="/console/requests" {
                div.field {
                    label for="f-state" { (t.state) }
                    select #f-state name="state" {
                        option value="" { (t.any) }
                        @for s in STATES {
                            option value=(s.as_str()) selected[q.state == s.as_str()] { (state_name(t, s)) }
                        }
                    }
                }
                div.field {
                    label for="f-requester" { (t.requester) }
                    input #f-requester name="requester" value=(q.requester);
                }
                div.field {
                    label for="f-device" { (t.device) }
                    input #f-device name="device" value=(q.device);
                }
                div.field {
                    label for="f-workflow" { (t.workflow) }
                    select #f-workflow name="workflow" {
                        option value="" { (t.any) }
                        @for w in &workflows {
                            option value=(w.id) selected[q.workflow == w.id.as_str()] { (w.name) }
                        }
                    }
                }
                div.field {
                    label for="f-from" { (t.created_from) }
                    input #f-from name="from" type="date" value=(q.from);
                }
                div.field {
                    label for="f-to" { (t.created_to) }
                    input #f-to name="to" type="date" value=(q.to);
                }
                button type="submit" { (t.apply) }
                a href="/console/requests" { (t.clear) }
            }
        }
        (pager(t, &q, page, pages, total))
        @if requests.is_empty() {
            p { (t.none_found) }
        } @else {
            table {
                thead { tr {
                    th scope="col" { (t.request) }
                    th scope="col" { (t.state) }
                    th scope="col" { (t.requester) }
                    th scope="col" { (t.device) }
                    th scope="col" { (t.workflow) }
                    th scope="col" { (t.reason) }
                    th scope="col" { (t.created) }
                } }
                tbody {
                    @for r in &requests {
                        tr {
                            td { a.mono href=(format!("/console/requests/{}", r.id.as_str())) { (r.id.as_str()) } }
                            td { (badge(t, r.state)) }
                            td { (r.requester) }
                            td { (r.device) }
                            td { (r.workflow) }
                            td { (r.fields.get("reason").map_or("", String::as_str)) }
                            td { (utc(r.created_at_ms)) }
                        }
                    }
                }
            }
            (pager(t, &q, page, pages, total))
        }
    };
    html_page(
        StatusCode::OK,
        layout::page(&viewer, Section::WorkflowInstance, t.workflow_instance, content),
    )
}

fn pager(t: &Texts, q: &ListQuery, page: usize, pages: usize, total: u64) -> Markup {
    html! {
        nav.pager aria-label=(t.page) {
            span { (t.total) " " strong { (total) } }
            span { (t.page) " " (page) " / " (pages) }
            @if page > 1 { a href=(q.page_href(page - 1)) rel="prev" { (t.previous) } }
            @if page < pages { a href=(q.page_href(page + 1)) rel="next" { (t.next) } }
        }
    }
}

fn source_name(t: &Texts, source: &Source) -> &'static str {
    match source {
        Source::Agent => t.source_agent,
        Source::External { .. } => t.source_dingtalk,
        Source::Console => t.source_console,
        Source::Reconciliation => t.source_reconciliation,
        _ => t.source_system,
    }
}

/// `GET /console/requests/{id}`.
pub(super) async fn detail(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Path(id): Path<String>,
) -> Response {
    let viewer = match viewer(&state, &headers, &uri, Role::Viewer).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let request = match state.engine.get(&RequestId(id)).await {
        Ok(request) => request,
        Err(sase_approval::Error::NotFound { .. }) => return not_found(&viewer, Section::WorkflowInstance),
        Err(e) => return failed(&viewer, Section::WorkflowInstance, &e),
    };
    let t = viewer.lang.t();
    let follow = format!("/api/console/requests/{}", request.id.as_str());
    let title = format!("{} {}", t.request, request.id.as_str());
    html_page(
        StatusCode::OK,
        layout::following(
            &viewer,
            Section::WorkflowInstance,
            &title,
            Some((&follow, request.version)),
            detail_content(&viewer, &request),
        ),
    )
}

fn detail_content(viewer: &Viewer, r: &ApprovalRequest) -> Markup {
    let t = viewer.lang.t();
    let decidable = matches!(r.state, RequestState::Submitted | RequestState::Pending);
    let revocable = matches!(r.state, RequestState::Approved | RequestState::Pending);
    html! {
        section.panel aria-labelledby="facts" {
            h2 #facts { (badge(t, r.state)) }
            dl.facts {
                dt { (t.requester) } dd { (r.requester) }
                dt { (t.device) } dd { (r.device) }
                dt { (t.workflow) } dd { (r.workflow) }
                dt { (t.created) } dd { (utc(r.created_at_ms)) }
                dt { (t.dingtalk_instance) } dd.mono { (r.external_id.as_deref().unwrap_or("—")) }
                @if let Some(grant) = &r.grant {
                    dt { (t.grant) }
                    dd {
                        span.mono { (grant.grant.id) } " · "
                        @if let Some(at) = r.grant_consumed_at_ms { (t.grant_used) " " (utc(at)) } @else { (t.grant_unused) }
                    }
                }
            }
            h2 { (t.fields) }
            dl.facts {
                @for (k, v) in r.fields.iter() { dt { (k) } dd { (v) } }
            }
        }
        section.panel aria-labelledby="history" {
            h2 #history { (t.history) }
            ol.timeline {
                @for step in &r.history {
                    li {
                        strong { (state_name(t, step.to)) } " · " (utc(step.at_ms))
                        div.note { (t.by) " " (step.actor) " · " (t.source) " " (source_name(t, &step.source)) }
                        @if let Some(note) = &step.note { div { (note) } }
                    }
                }
            }
            @if r.history_dropped > 0 { p.note { (r.history_dropped) " " (t.older_entries_dropped) } }
            p.note { (t.live_note) }
        }
        @if viewer.identity.role.allows(Role::Approver) && (decidable || revocable) {
            section.panel aria-labelledby="decide" {
                h2 #decide { (t.decide) }
                form data-api=(format!("/api/console/requests/{}/{{action}}", r.id.as_str())) data-method="POST" {
                    div.field {
                        label for="remark" { (t.remark) }
                        textarea #remark name="remark" {}
                    }
                    div.actions {
                        @if decidable {
                            button type="submit" name="action" value="approve" data-skip { (t.approve) }
                            button.danger type="submit" name="action" value="reject" data-skip { (t.reject) }
                        }
                        @if revocable {
                            button.secondary type="submit" name="action" value="revoke" data-skip { (t.revoke) }
                        }
                    }
                    output.message role="alert" {}
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_become_the_store_filter_and_empty_values_are_none() {
        let q = ListQuery {
            state: "approved".into(),
            requester: " alice ".into(),
            device: String::new(),
            workflow: "wf".into(),
            from: "2026-12-01".into(),
            to: "2026-12-01".into(),
            page: Some(2),
        };
        let f = q.filter();
        assert_eq!(f.states, vec![RequestState::Approved]);
        assert_eq!(f.requester, Some(UserId::new("alice")));
        assert_eq!(f.device, None);
        assert_eq!(f.workflow, Some(WorkflowId::new("wf")));
        assert_eq!(
            f.created_to_ms.zip(f.created_from_ms).map(|(to, from)| to - from),
            Some(86_400_000)
        );
        assert!(f.newest_first);
        assert_eq!(
            q.page_href(3),
            "/console/requests?state=approved&requester=+alice+&workflow=wf&from=2026-12-01&to=2026-12-01&page=3"
        );
        assert!(ListQuery::default().filter().states.is_empty(), "any state");
    }
}
