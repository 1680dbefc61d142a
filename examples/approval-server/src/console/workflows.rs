//! Approval Center → Workflow Management: the workflows in force (type, DingTalk app, the
//! Request URL and event subscription to paste into DingTalk, each with a copy button, and the
//! last check against DingTalk with its problems), and the editor: name, type, the app's
//! credentials (write-only), the form and its `system field → form field` mapping, the form's
//! fields offered from the live DingTalk form.

use super::i18n::Lang;
use super::layout::{self, Section, Viewer};
use super::time::utc;
use super::{html_page, not_found, viewer};
use crate::admins::Role;
use crate::api::AppState;
use crate::config::{MappingConfig, WorkflowConfig, WorkflowType};
use crate::workflows::WorkflowView;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use maud::{html, Markup};
use sase_approval::definition::{Delivery, Template, APP_UNINSTALL_FIELDS};
use sase_approval::dingtalk::Verification;
use std::collections::BTreeMap;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/console/workflows", get(list))
        .route("/console/workflows/new", get(new))
        .route("/console/workflows/{id}", get(edit))
}

/// The page's words.
struct Texts {
    new_workflow: &'static str,
    id: &'static str,
    name: &'static str,
    kind: &'static str,
    builtin: &'static str,
    dingtalk: &'static str,
    app: &'static str,
    request_url: &'static str,
    event_subscription: &'static str,
    copy: &'static str,
    copied: &'static str,
    status: &'static str,
    verified: &'static str,
    unverified: &'static str,
    invalid: &'static str,
    checked: &'static str,
    stream_no_url: &'static str,
    none_yet: &'static str,
    approvers: &'static str,
    approvers_hint: &'static str,
    delivery: &'static str,
    http_push: &'static str,
    stream: &'static str,
    credentials: &'static str,
    credentials_hint: &'static str,
    client_id: &'static str,
    client_secret: &'static str,
    token: &'static str,
    aes_key: &'static str,
    unchanged: &'static str,
    advanced: &'static str,
    receiver_id: &'static str,
    api_base: &'static str,
    qps: &'static str,
    calls_per_month: &'static str,
    reconcile_share: &'static str,
    mapping: &'static str,
    mapping_hint: &'static str,
    template: &'static str,
    template_names: [(&'static str, &'static str); 2],
    add_form: &'static str,
    remove_form: &'static str,
    process_code: &'static str,
    load_fields: &'static str,
    system_field: &'static str,
    form_field: &'static str,
    save: &'static str,
    delete: &'static str,
    delete_hint: &'static str,
}

static ZH: Texts = Texts {
    new_workflow: "新建审批流",
    id: "标识",
    name: "名称",
    kind: "类型",
    builtin: "内置审批",
    dingtalk: "钉钉审批",
    app: "钉钉应用",
    request_url: "请求网址",
    event_subscription: "事件订阅",
    copy: "复制",
    copied: "已复制",
    status: "状态",
    verified: "已验证",
    unverified: "未验证",
    invalid: "有错误",
    checked: "检查时间",
    stream_no_url: "Stream 模式：无需请求网址",
    none_yet: "还没有审批流。",
    approvers: "审批人",
    approvers_hint: "控制台管理员的用户名，每行一个",
    delivery: "事件推送方式",
    http_push: "HTTP 推送",
    stream: "Stream 模式",
    credentials: "应用凭证",
    credentials_hint: "密钥只写不读：留空则保留已保存的值。",
    client_id: "Client ID (AppKey)",
    client_secret: "Client Secret",
    token: "签名 Token",
    aes_key: "加密 aes_key",
    unchanged: "（不变）",
    advanced: "高级",
    receiver_id: "接收方 ID",
    api_base: "开放平台地址",
    qps: "每个接口每秒调用数",
    calls_per_month: "每月调用数",
    reconcile_share: "对账可用比例 (%)",
    mapping: "表单映射",
    mapping_hint: "每个模板（申请类型）对应同一应用的一个钉钉表单：模板的系统字段 → 表单的字段。点击“读取表单字段”从钉钉读取该表单；“添加表单”为另一个模板映射表单。",
    template: "模板",
    template_names: [("app_uninstall", "应用卸载"), ("app_logoff", "退出登录")],
    add_form: "添加表单",
    remove_form: "移除此表单",
    process_code: "表单 Process Code",
    load_fields: "读取表单字段",
    system_field: "系统字段",
    form_field: "表单字段",
    save: "保存",
    delete: "删除",
    delete_hint: "有策略引用或有未结申请时不能删除。",
};

static EN: Texts = Texts {
    new_workflow: "New workflow",
    id: "Id",
    name: "Name",
    kind: "Type",
    builtin: "Built-in",
    dingtalk: "DingTalk",
    app: "DingTalk app",
    request_url: "Request URL",
    event_subscription: "Event subscription",
    copy: "Copy",
    copied: "Copied",
    status: "Status",
    verified: "Verified",
    unverified: "Unverified",
    invalid: "Invalid",
    checked: "Checked",
    stream_no_url: "Stream mode: no Request URL needed",
    none_yet: "No workflow yet.",
    approvers: "Approvers",
    approvers_hint: "Console admins' names, one a line",
    delivery: "Event delivery",
    http_push: "HTTP push",
    stream: "Stream mode",
    credentials: "App credentials",
    credentials_hint: "Secrets are write-only: leave one empty to keep the stored value.",
    client_id: "Client ID (AppKey)",
    client_secret: "Client secret",
    token: "Signature token",
    aes_key: "aes_key",
    unchanged: "(unchanged)",
    advanced: "Advanced",
    receiver_id: "Receiver id",
    api_base: "API base",
    qps: "Calls a second to one API",
    calls_per_month: "Calls a month",
    reconcile_share: "Reconciliation's share (%)",
    mapping: "Form mappings",
    mapping_hint: "Each template (kind of request) is filed on a DingTalk form of the same app: the template's system fields → the form's fields. \u{201c}Load form fields\u{201d} reads the form from DingTalk; \u{201c}Add a form\u{201d} maps a form for another template.",
    template: "Template",
    template_names: [("app_uninstall", "App uninstall"), ("app_logoff", "App logoff")],
    add_form: "Add a form",
    remove_form: "Remove this form",
    process_code: "Form process code",
    load_fields: "Load form fields",
    system_field: "System field",
    form_field: "Form field",
    save: "Save",
    delete: "Delete",
    delete_hint: "Refused while a policy names it or requests of it are open.",
};

fn texts(lang: Lang) -> &'static Texts {
    match lang {
        Lang::Zh => &ZH,
        Lang::En => &EN,
    }
}

fn status(w: &Texts, view: &WorkflowView) -> Markup {
    match &view.verification {
        None => html! { "—" },
        Some(checked) => html! {
            @match &checked.verification {
                Verification::Verified => { span.state.approved { (w.verified) } }
                Verification::Invalid { problems } => {
                    span.state.rejected { (w.invalid) }
                    ul.problems { @for p in problems { li { code { (p.path) } ": " (p.reason) } } }
                }
                Verification::Unverified { reason } => {
                    span.state.pending { (w.unverified) }
                    div.note { (reason) }
                }
                _ => { span.state { "?" } }
            }
            div.note { (w.checked) " " (utc(checked.checked_at_ms)) }
        },
    }
}

/// A value to paste into DingTalk, with its copy button.
fn copyable(w: &Texts, label: &str, value: &str) -> Markup {
    html! {
        span.copyable {
            code { (value) }
            " "
            button.secondary type="button" data-copy=(value) data-copied=(w.copied) aria-label=(format!("{} {label}", w.copy)) { (w.copy) }
            output.note aria-live="polite" {}
        }
    }
}

/// `GET /console/workflows`.
async fn list(State(state): State<AppState>, headers: HeaderMap, uri: Uri) -> Response {
    let viewer = match viewer(&state, &headers, &uri, Role::Viewer).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let (t, w) = (viewer.lang.t(), texts(viewer.lang));
    let mut views = state.workflows.views();
    views.sort_by(|a, b| a.id.cmp(&b.id));
    let content = html! {
        @if viewer.identity.role.allows(Role::Admin) {
            p { a.button href="/console/workflows/new" { (w.new_workflow) } }
        }
        @if views.is_empty() {
            p { (w.none_yet) }
        } @else {
            table {
                thead { tr {
                    th scope="col" { (w.name) }
                    th scope="col" { (w.kind) }
                    th scope="col" { (w.app) }
                    th scope="col" { (w.request_url) " / " (w.event_subscription) }
                    th scope="col" { (w.status) }
                } }
                tbody {
                    @for v in &views {
                        tr {
                            td {
                                a href=(format!("/console/workflows/{}", v.id)) { (v.name) }
                                div.note.mono { (v.id) }
                            }
                            td { @if v.kind == WorkflowType::Builtin { (w.builtin) } @else { (w.dingtalk) } }
                            td.mono { (v.client_id.as_deref().unwrap_or("—")) }
                            td {
                                @if let Some(url) = &v.request_url {
                                    div { (copyable(w, w.request_url, url)) }
                                } @else if v.delivery == Some(Delivery::Stream) {
                                    div.note { (w.stream_no_url) }
                                }
                                @for sub in &v.event_subscriptions {
                                    div { (copyable(w, w.event_subscription, sub)) }
                                }
                            }
                            td { (status(w, v)) }
                        }
                    }
                }
            }
        }
    };
    html_page(
        StatusCode::OK,
        layout::page(
            &viewer,
            Section::WorkflowManagement,
            t.workflow_management,
            content,
        ),
    )
}

/// `GET /console/workflows/new`.
async fn new(State(state): State<AppState>, headers: HeaderMap, uri: Uri) -> Response {
    let viewer = match viewer(&state, &headers, &uri, Role::Admin).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let w = texts(viewer.lang);
    html_page(
        StatusCode::OK,
        layout::page(
            &viewer,
            Section::WorkflowManagement,
            w.new_workflow,
            editor(&viewer, None),
        ),
    )
}

/// `GET /console/workflows/{id}`: the editor (admins), or the workflow's facts (others).
async fn edit(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Path(id): Path<String>,
) -> Response {
    let viewer = match viewer(&state, &headers, &uri, Role::Viewer).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let (Some(view), Some(config)) = (
        state.workflows.view_of(&id),
        state.workflows.configs().into_iter().find(|c| c.id == id),
    ) else {
        return not_found(&viewer, Section::WorkflowManagement);
    };
    let w = texts(viewer.lang);
    let content = html! {
        section.panel {
            dl.facts {
                dt { (w.status) } dd { (status(w, &view)) }
                @if let Some(url) = &view.request_url { dt { (w.request_url) } dd { (copyable(w, w.request_url, url)) } }
                @for sub in &view.event_subscriptions { dt { (w.event_subscription) } dd { (copyable(w, w.event_subscription, sub)) } }
            }
        }
        @if viewer.identity.role.allows(Role::Admin) {
            (editor(&viewer, Some((&view, &config))))
        }
    };
    html_page(
        StatusCode::OK,
        layout::page(&viewer, Section::WorkflowManagement, &view.name, content),
    )
}

/// The editor: a new workflow, or `existing` (its view and configuration; never a secret).
fn editor(viewer: &Viewer, existing: Option<(&WorkflowView, &WorkflowConfig)>) -> Markup {
    let w = texts(viewer.lang);
    let config = existing.map(|(_, c)| c);
    let app = config.and_then(|c| c.dingtalk.as_ref());
    let version = existing.map_or(0, |(v, _)| v.version);
    let builtin = config.is_some_and(|c| c.kind == WorkflowType::Builtin);
    let stream = config.is_some_and(|c| c.delivery == Delivery::Stream);
    let live = existing.map_or("", |(v, _)| v.id.as_str());
    let secret_placeholder = if app.is_some() { w.unchanged } else { "" };
    html! {
        form.stack.editor data-api="/api/console/workflows/{workflow.id}" data-method="PUT" data-then="/console/workflows" {
            input type="hidden" name="version" data-type="number" value=(version);
            @if let Some(c) = config {
                @if let Some(callback) = &c.callback_id { input type="hidden" name="workflow.callback_id" value=(callback); }
            }
            div.field {
                label for="w-id" { (w.id) }
                input #w-id name="workflow.id" required pattern="[A-Za-z0-9._\\-]+" value=[config.map(|c| c.id.as_str())] readonly[config.is_some()];
            }
            div.field {
                label for="w-name" { (w.name) }
                input #w-name name="workflow.name" value=[config.and_then(|c| c.name.as_deref())];
            }
            div.field {
                label for="w-type" { (w.kind) }
                select #w-type name="workflow.type" {
                    option value="dingtalk" selected[!builtin] { (w.dingtalk) }
                    option value="builtin" selected[builtin] { (w.builtin) }
                }
            }
            div.field data-when="workflow.type=builtin" {
                label for="w-approvers" { (w.approvers) }
                textarea #w-approvers name="workflow.approvers" data-type="lines" aria-describedby="w-approvers-hint" {
                    @for a in config.map(|c| c.approvers.as_slice()).unwrap_or_default() { (a) "\n" }
                }
                span.note #w-approvers-hint { (w.approvers_hint) }
            }
            fieldset data-when="workflow.type=dingtalk" {
                legend { (w.credentials) }
                p.note { (w.credentials_hint) }
                div.field {
                    label for="w-delivery" { (w.delivery) }
                    select #w-delivery name="workflow.delivery" {
                        option value="http_push" selected[!stream] { (w.http_push) }
                        option value="stream" selected[stream] { (w.stream) }
                    }
                }
                div.field {
                    label for="w-client-id" { (w.client_id) }
                    input #w-client-id name="workflow.dingtalk.client_id" required value=[app.map(|a| a.client_id.as_str())];
                }
                div.field {
                    label for="w-client-secret" { (w.client_secret) }
                    input #w-client-secret name="workflow.dingtalk.client_secret" type="password" autocomplete="off" placeholder=(secret_placeholder);
                }
                div.field {
                    label for="w-token" { (w.token) }
                    input #w-token name="workflow.dingtalk.token" type="password" autocomplete="off" placeholder=(secret_placeholder);
                }
                div.field {
                    label for="w-aes-key" { (w.aes_key) }
                    input #w-aes-key name="workflow.dingtalk.aes_key" type="password" autocomplete="off" minlength="43" maxlength="43" placeholder=(secret_placeholder);
                }
                details {
                    summary { (w.advanced) }
                    div.field {
                        label for="w-receiver" { (w.receiver_id) }
                        input #w-receiver name="workflow.dingtalk.receiver_id" value=[app.and_then(|a| a.receiver_id.as_deref())];
                    }
                    div.field {
                        label for="w-api-base" { (w.api_base) }
                        input #w-api-base name="workflow.dingtalk.api_base" value=[app.and_then(|a| a.api_base.as_deref())];
                    }
                    div.field {
                        label for="w-qps" { (w.qps) }
                        input #w-qps name="workflow.dingtalk.qps_per_api" type="number" min="0" data-type="number" value=[app.map(|a| a.qps_per_api)];
                    }
                    div.field {
                        label for="w-month" { (w.calls_per_month) }
                        input #w-month name="workflow.dingtalk.calls_per_month" type="number" min="0" data-type="number" value=[app.map(|a| a.calls_per_month)];
                    }
                    div.field {
                        label for="w-share" { (w.reconcile_share) }
                        input #w-share name="workflow.dingtalk.reconcile_share_percent" type="number" min="0" max="100" data-type="number" value=[app.map(|a| a.reconcile_share_percent)];
                    }
                }
            }
            fieldset data-when="workflow.type=dingtalk" {
                legend { (w.mapping) }
                p.note { (w.mapping_hint) }
                div.mappings {
                    (form_mapping(w, live, &FormRow::Uninstall {
                        process_code: config.and_then(|c| c.process_code.as_deref()).unwrap_or(""),
                        fields: config.map(|c| &c.fields),
                    }))
                    @for (i, m) in config.map(|c| c.mappings.as_slice()).unwrap_or_default().iter().enumerate() {
                        (form_mapping(w, live, &FormRow::Other { index: i.to_string(), mapping: Some(m) }))
                    }
                }
                // What "Add a form" copies, its index filled in (an inert <template>: no ids
                // in the page until added).
                template #mapping-row {
                    (form_mapping(w, live, &FormRow::Other { index: "__i__".into(), mapping: None }))
                }
                button.secondary type="button" data-add-mapping { (w.add_form) }
            }
            button type="submit" { (w.save) }
            output.message role="alert" {}
        }
        @if let Some((view, _)) = existing {
            form.stack data-api=(format!("/api/console/workflows/{}?version={}", view.id, view.version)) data-method="DELETE" data-then="/console/workflows" {
                p.note { (w.delete_hint) }
                button.danger type="submit" { (w.delete) }
                output.message role="alert" {}
            }
        }
    }
}

/// One form of the editor: the `app_uninstall` form (the workflow's own `process_code` and
/// `fields`) or another template's (`workflow.mappings[index]`; `__i__` in the row "Add a
/// form" copies).
enum FormRow<'a> {
    Uninstall {
        process_code: &'a str,
        fields: Option<&'a BTreeMap<String, String>>,
    },
    Other {
        index: String,
        mapping: Option<&'a MappingConfig>,
    },
}

/// A form's template, process code, "Load form fields" (for the saved workflow `live`, or the
/// credentials typed in) and its `system field → form field` rows, each input labelled.
fn form_mapping(w: &Texts, live: &str, row: &FormRow<'_>) -> Markup {
    let (prefix, slot, process_code, fields, template) = match row {
        FormRow::Uninstall { process_code, fields } => (
            "workflow".to_owned(),
            "u".to_owned(),
            *process_code,
            *fields,
            Template::app_uninstall().id,
        ),
        FormRow::Other { index, mapping } => (
            format!("workflow.mappings[{index}]"),
            index.clone(),
            mapping.map_or("", |m| m.process_code.as_str()),
            mapping.map(|m| &m.fields),
            mapping.map_or_else(|| Template::app_logoff().id, |m| m.template.clone()),
        ),
    };
    let name_of = |id: &str| {
        w.template_names
            .iter()
            .find(|(t, _)| *t == id)
            .map_or_else(|| id.to_owned(), |(_, n)| (*n).to_owned())
    };
    let labels = format!("form-labels-{slot}");
    // Every built-in template has the same system fields.
    html! {
        section.mapping {
            div.field {
                label for=(format!("w-template-{slot}")) { (w.template) }
                @if let FormRow::Uninstall { .. } = row {
                    input id=(format!("w-template-{slot}")) value=(name_of(&template)) readonly;
                } @else {
                    select id=(format!("w-template-{slot}")) name=(format!("{prefix}.template")) {
                        @for t in Template::all_built_in().into_iter().skip(1) {
                            option value=(t.id) selected[t.id == template] { (name_of(&t.id)) }
                        }
                    }
                }
            }
            div.field {
                label for=(format!("w-process-code-{slot}")) { (w.process_code) }
                input id=(format!("w-process-code-{slot}")) name=(format!("{prefix}.process_code")) required value=(process_code) data-process-code;
            }
            button.secondary type="button" data-live-form=(live) data-labels=(labels) { (w.load_fields) }
            output.note.live-form aria-live="polite" {}
            datalist id=(labels) {
                @for label in fields.map(|f| f.values().cloned().collect::<Vec<_>>()).unwrap_or_default() {
                    option value=(label) {}
                }
            }
            table {
                thead { tr { th scope="col" { (w.system_field) } th scope="col" { (w.form_field) } } }
                tbody {
                    @for f in APP_UNINSTALL_FIELDS {
                        tr {
                            td { label.mono for=(format!("w-f-{slot}-{f}")) { (f) } }
                            td { input id=(format!("w-f-{slot}-{f}")) name=(format!("{prefix}.fields.{f}")) list=(labels) value=(fields.and_then(|m| m.get(f)).map_or("", String::as_str)); }
                        }
                    }
                }
            }
            @if let FormRow::Other { .. } = row {
                button.secondary type="button" data-remove-mapping { (w.remove_form) }
            }
        }
    }
}
