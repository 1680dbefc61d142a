//! The audit log (admins): whether the hash chain is intact, read from its first entry to its
//! head at every visit; its entries oldest first, filtered by actor, action prefix, subject and
//! day, a page of 50 with a link to the next (the store lists by sequence number, ascending).

use super::i18n::Lang;
use super::layout::{self, Section};
use super::time::{day_start_ms, utc};
use super::{failed, html_page, viewer};
use crate::admins::Role;
use crate::api::AppState;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use maud::{html, Markup};
use sase_approval::audit::AuditFilter;
use serde::Deserialize;

/// Entries a page.
const PAGE_SIZE: usize = 50;

pub(super) fn routes() -> Router<AppState> {
    Router::new().route("/console/audit", get(page))
}

/// The page's texts, in one language (`{}` is where a number or reason goes).
#[derive(Debug)]
struct Texts {
    chain: &'static str,
    intact: &'static str,
    broken: &'static str,
    unverified: &'static str,
    actor: &'static str,
    action: &'static str,
    action_hint: &'static str,
    action_col: &'static str,
    subject: &'static str,
    from: &'static str,
    to: &'static str,
    entries: &'static str,
    seq: &'static str,
    time: &'static str,
    details: &'static str,
    none_found: &'static str,
    first_page: &'static str,
    next_page: &'static str,
    after: &'static str,
}

static ZH: Texts = Texts {
    chain: "哈希链校验",
    intact: "审计链完整：已校验 {} 条记录。",
    broken: "审计链在第 {} 条记录处断裂：{}",
    unverified: "无法校验审计链：{}",
    actor: "操作人",
    action: "操作（前缀）",
    action_hint: "例如 device.",
    action_col: "操作",
    subject: "对象",
    from: "起始日期",
    to: "截止日期",
    entries: "记录",
    seq: "序号",
    time: "时间",
    details: "详情",
    none_found: "没有符合条件的记录。",
    first_page: "第一页",
    next_page: "下一页",
    after: "序号 {} 之后的记录",
};

static EN: Texts = Texts {
    chain: "Hash chain",
    intact: "The chain is intact: {} entries verified.",
    broken: "The chain is broken at entry {}: {}",
    unverified: "The chain could not be verified: {}",
    actor: "Actor",
    action: "Action (prefix)",
    action_hint: "e.g. device.",
    action_col: "Action",
    subject: "Subject",
    from: "From",
    to: "To",
    entries: "Entries",
    seq: "Seq",
    time: "Time",
    details: "Details",
    none_found: "No entry matches.",
    first_page: "First page",
    next_page: "Next page",
    after: "Entries after #{}",
};

fn texts(lang: Lang) -> &'static Texts {
    match lang {
        Lang::Zh => &ZH,
        Lang::En => &EN,
    }
}

/// The filters, as the form sends them (an empty value is no filter), and the page: the
/// entries after sequence number `after`.
#[derive(Deserialize, Default)]
#[serde(default)]
struct AuditQuery {
    actor: String,
    action: String,
    subject: String,
    from: String,
    to: String,
    after: u64,
}

impl AuditQuery {
    /// The store's filter: one entry more than a page, to know whether there is a next.
    fn filter(&self) -> AuditFilter {
        let given = |s: &str| Some(s.trim()).filter(|s| !s.is_empty()).map(str::to_owned);
        let mut filter = AuditFilter::default();
        filter.actor = given(&self.actor);
        filter.action_prefix = given(&self.action);
        filter.subject = given(&self.subject);
        filter.from_ms = day_start_ms(self.from.trim());
        // The day named is included: up to the start of the next.
        filter.to_ms = day_start_ms(self.to.trim()).map(|start| start + 86_400_000);
        filter.after_seq = self.after;
        filter.limit = PAGE_SIZE + 1;
        filter
    }

    /// These filters, from after `after`.
    fn href(&self, after: u64) -> String {
        let mut query = form_urlencoded::Serializer::new(String::new());
        for (k, v) in [
            ("actor", &self.actor),
            ("action", &self.action),
            ("subject", &self.subject),
            ("from", &self.from),
            ("to", &self.to),
        ] {
            if !v.is_empty() {
                query.append_pair(k, v);
            }
        }
        if after > 0 {
            query.append_pair("after", &after.to_string());
        }
        let query = query.finish();
        if query.is_empty() {
            "/console/audit".to_owned()
        } else {
            format!("/console/audit?{query}")
        }
    }
}

/// `GET /console/audit`.
async fn page(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    q: Result<Query<AuditQuery>, QueryRejection>,
) -> Response {
    let viewer = match viewer(&state, &headers, &uri, Role::Admin).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    // A query that does not parse (`after` that is not a number) is no filter.
    let q = q.map(|Query(q)| q).unwrap_or_default();
    let t = texts(viewer.lang);
    let frame = viewer.lang.t();
    let store = state.audit.store();
    let verified = crate::audit_log::verify_chain(store.as_ref()).await;
    let mut entries = match store.list_audit(&q.filter()).await {
        Ok(entries) => entries,
        Err(e) => return failed(&viewer, Section::Audit, &e),
    };
    let more = entries.len() > PAGE_SIZE;
    entries.truncate(PAGE_SIZE);
    let chain = match verified {
        Ok(Ok(n)) => html! {
            section.chain.intact role="status" aria-labelledby="chain" {
                h2 #chain { (t.chain) }
                p { strong { (t.intact.replace("{}", &n.to_string())) } }
            }
        },
        Ok(Err(broken)) => html! {
            section.chain.broken role="alert" aria-labelledby="chain" {
                h2 #chain { (t.chain) }
                p { strong { (t.broken.replacen("{}", &broken.seq.to_string(), 1).replacen("{}", &broken.reason, 1)) } }
            }
        },
        Err(e) => html! {
            section.chain.broken role="alert" aria-labelledby="chain" {
                h2 #chain { (t.chain) }
                p { strong { (t.unverified.replace("{}", &e.to_string())) } }
            }
        },
    };
    let content = html! {
        (chain)
        section.panel aria-labelledby="filters" {
            h2 #filters { (frame.filters) }
            form.filters method="get" action="/console/audit" {
                div.field {
                    label for="f-actor" { (t.actor) }
                    input #f-actor name="actor" value=(q.actor);
                }
                div.field {
                    label for="f-action" { (t.action) }
                    input #f-action name="action" value=(q.action) placeholder=(t.action_hint);
                }
                div.field {
                    label for="f-subject" { (t.subject) }
                    input #f-subject name="subject" value=(q.subject);
                }
                div.field {
                    label for="f-from" { (t.from) }
                    input #f-from name="from" type="date" value=(q.from);
                }
                div.field {
                    label for="f-to" { (t.to) }
                    input #f-to name="to" type="date" value=(q.to);
                }
                button type="submit" { (frame.apply) }
                a href="/console/audit" { (frame.clear) }
            }
        }
        section aria-labelledby="entries" {
            h2 #entries {
                (t.entries)
                @if q.after > 0 { " · " span.note { (t.after.replace("{}", &q.after.to_string())) } }
            }
            @if entries.is_empty() {
                p { (t.none_found) }
            } @else {
                table.audit {
                    thead { tr {
                        th scope="col" { (t.seq) }
                        th scope="col" { (t.time) }
                        th scope="col" { (t.actor) }
                        th scope="col" { (t.action_col) }
                        th scope="col" { (t.subject) }
                        th scope="col" { (t.details) }
                    } }
                    tbody {
                        @for e in &entries {
                            tr {
                                td.mono { (e.seq) }
                                td.nowrap { (utc(e.record.at_ms)) }
                                td.id { (e.record.actor) }
                                td.mono { (e.record.action) }
                                td.mono { (e.record.subject) }
                                td.details { code { (e.record.details.to_string()) } }
                            }
                        }
                    }
                }
            }
            (pager(t, &q, more, entries.last().map(|e| e.seq)))
        }
    };
    html_page(
        StatusCode::OK,
        layout::page(&viewer, Section::Audit, frame.audit_log, content),
    )
}

fn pager(t: &Texts, q: &AuditQuery, more: bool, last: Option<u64>) -> Markup {
    html! {
        @if q.after > 0 || more {
            nav.pager aria-label=(t.entries) {
                @if q.after > 0 { a href=(q.href(0)) { (t.first_page) } }
                @if let Some(last) = last.filter(|_| more) {
                    a href=(q.href(last)) rel="next" { (t.next_page) }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_become_the_store_filter_and_pages_follow_the_sequence() {
        let q = AuditQuery {
            actor: " ada ".into(),
            action: "device.".into(),
            subject: String::new(),
            from: "2026-12-01".into(),
            to: "2026-12-01".into(),
            after: 50,
        };
        let f = q.filter();
        assert_eq!(f.actor.as_deref(), Some("ada"));
        assert_eq!(f.action_prefix.as_deref(), Some("device."));
        assert_eq!(f.subject, None);
        assert_eq!(
            f.to_ms.zip(f.from_ms).map(|(to, from)| to - from),
            Some(86_400_000)
        );
        assert_eq!((f.after_seq, f.limit), (50, PAGE_SIZE + 1));
        assert_eq!(
            q.href(100),
            "/console/audit?actor=+ada+&action=device.&from=2026-12-01&to=2026-12-01&after=100"
        );
        assert_eq!(AuditQuery::default().href(0), "/console/audit");
        assert_eq!(AuditQuery::default().filter().from_ms, None);
    }
}
