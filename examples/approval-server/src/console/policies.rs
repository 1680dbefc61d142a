//! Terminal Management → Anti-uninstallation Policy: the policies in precedence order, and a
//! policy's editor (switches, scope, whitelist, approval, the prompt in both languages with a
//! live preview of the agent's dialog). The editor's script (`assets/policy.js`, this page's
//! only) builds the policy from the form, previews the change (who gains and who loses
//! protection) and saves or deletes it through the console API, which validates it.

use super::i18n::Lang;
use super::layout::{self, Section, Viewer};
use super::time::utc;
use super::{failed, html_page, not_found, viewer};
use crate::admins::Role;
use crate::api::AppState;
use crate::directory::Snapshot;
use crate::policies::Stored;
use axum::extract::{Path, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use maud::{html, Markup};
use sase_approval::definition::Workflow;
use sase_policy::ids::PolicyId;
use sase_policy::{Policy, PromptText};
use serde_json::json;
use std::collections::BTreeMap;

/// Where this page's script is served.
const SCRIPT_PATH: &str = concat!("/console/assets/policy-", env!("CARGO_PKG_VERSION"), ".js");
const SCRIPT: &str = include_str!("assets/policy.js");

/// The prompt's languages the editor has fields for (those the validator requires).
const LOCALES: [(&str, Lang); 2] = [("zh-CN", Lang::Zh), ("en-US", Lang::En)];

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/console/policies", get(list))
        .route("/console/policies/new", get(create))
        .route("/console/policies/{id}", get(edit))
        .route(SCRIPT_PATH, get(script))
}

/// `GET` [`SCRIPT_PATH`].
async fn script() -> Response {
    (
        [
            (CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (CACHE_CONTROL, "public, max-age=86400, immutable"),
        ],
        SCRIPT,
    )
        .into_response()
}

/// The page's texts, in one language.
#[derive(Debug)]
struct Texts {
    intro: &'static str,
    new_policy: &'static str,
    none: &'static str,
    back: &'static str,
    policy: &'static str,
    id: &'static str,
    id_note: &'static str,
    name: &'static str,
    enabled: &'static str,
    disabled: &'static str,
    priority: &'static str,
    priority_note: &'static str,
    switches: &'static str,
    anti_uninstall: &'static str,
    auto_start: &'static str,
    anti_logoff: &'static str,
    all_off: &'static str,
    scope: &'static str,
    scope_note: &'static str,
    groups: &'static str,
    departments: &'static str,
    device_tags: &'static str,
    whitelist: &'static str,
    whitelist_note: &'static str,
    approval: &'static str,
    allow_filing: &'static str,
    filing_allowed: &'static str,
    filing_denied: &'static str,
    workflow: &'static str,
    workflow_note: &'static str,
    choose: &'static str,
    built_in: &'static str,
    dingtalk: &'static str,
    approval_kind: &'static str,
    approval_kind_note: &'static str,
    not_in_force: &'static str,
    prompt: &'static str,
    prompt_note: &'static str,
    title: &'static str,
    content: &'static str,
    primary_button: &'static str,
    secondary_button: &'static str,
    live_preview: &'static str,
    dialog_preview: &'static str,
    preview_change: &'static str,
    save: &'static str,
    delete: &'static str,
    delete_note: &'static str,
    preview_delete: &'static str,
    confirm_delete: &'static str,
    change_preview: &'static str,
    version: &'static str,
    updated: &'static str,
    yes: &'static str,
    no: &'static str,
    // The script's texts (the change preview and errors).
    devices_looked_at: &'static str,
    gain_protection: &'static str,
    lose_protection: &'static str,
    no_change: &'static str,
    device: &'static str,
    user: &'static str,
    change: &'static str,
    before: &'static str,
    after: &'static str,
    gains: &'static str,
    loses: &'static str,
    changes: &'static str,
    if_saved: &'static str,
    if_deleted: &'static str,
    stale: &'static str,
    problems: &'static str,
    error: &'static str,
    effect_allow: &'static str,
    effect_require_approval: &'static str,
    effect_deny: &'static str,
    reason_out_of_scope: &'static str,
    reason_policy_disabled: &'static str,
    reason_switch_off: &'static str,
    reason_whitelisted: &'static str,
    reason_approval_required: &'static str,
    reason_filing_disabled: &'static str,
    reason_valid_grant: &'static str,
}

static ZH: Texts = Texts {
    intro: "按优先顺序列出：一个用户被多条策略命中时，优先级高的决定。",
    new_policy: "新建策略",
    none: "还没有策略。",
    back: "返回策略列表",
    policy: "策略",
    id: "策略 ID",
    id_note: "保存后不能修改。",
    name: "名称",
    enabled: "启用",
    disabled: "停用",
    priority: "优先级",
    priority_note: "数值越大越优先。",
    switches: "开关",
    anti_uninstall: "防卸载",
    auto_start: "开机自启动",
    anti_logoff: "防退出登录",
    all_off: "全部关闭",
    scope: "生效范围",
    scope_note: "用户属于下列任一用户组、部门或设备标签即生效；每行一个。",
    groups: "用户组",
    departments: "部门",
    device_tags: "设备标签",
    whitelist: "白名单",
    whitelist_note: "不受此策略约束的用户，每行一个稳定的用户 ID（接入通讯录后再显示姓名）。",
    approval: "审批配置",
    allow_filing: "允许员工提交卸载申请",
    filing_allowed: "可提交申请",
    filing_denied: "不可申请（直接禁止）",
    workflow: "审批流",
    workflow_note: "仅在允许提交申请时使用。",
    choose: "— 请选择 —",
    built_in: "内置",
    dingtalk: "钉钉",
    approval_kind: "审批方式",
    approval_kind_note: "钉钉审批：只列出关联钉钉的审批流；内置审批：只列出在控制台审批的审批流。",
    not_in_force: "未生效",
    prompt: "提示语",
    prompt_note: "终端弹窗显示的文字，中英文都需填写。",
    title: "标题",
    content: "内容",
    primary_button: "主按钮",
    secondary_button: "次按钮",
    live_preview: "实时预览",
    dialog_preview: "终端弹窗",
    preview_change: "预览变更",
    save: "保存",
    delete: "删除策略",
    delete_note: "删除前先预览：哪些设备将失去保护。",
    preview_delete: "预览删除",
    confirm_delete: "确认删除",
    change_preview: "变更预览",
    version: "版本",
    updated: "更新时间",
    yes: "是",
    no: "否",
    devices_looked_at: "检查的设备",
    gain_protection: "获得保护",
    lose_protection: "失去保护",
    no_change: "没有设备的卸载决定会改变。",
    device: "设备",
    user: "用户",
    change: "变化",
    before: "变更前",
    after: "变更后",
    gains: "获得保护",
    loses: "失去保护",
    changes: "决定变化",
    if_saved: "如果保存此策略：",
    if_deleted: "如果删除此策略：",
    stale: "表单在预览后有改动，请重新预览。",
    problems: "策略有以下问题：",
    error: "出错了",
    effect_allow: "允许卸载",
    effect_require_approval: "需审批",
    effect_deny: "禁止卸载",
    reason_out_of_scope: "不在任何策略范围内",
    reason_policy_disabled: "策略已停用",
    reason_switch_off: "开关关闭",
    reason_whitelisted: "在白名单中",
    reason_approval_required: "需要审批",
    reason_filing_disabled: "不可申请",
    reason_valid_grant: "有有效授权",
};

static EN: Texts = Texts {
    intro: "In precedence order: when several policies match a user, the higher priority decides.",
    new_policy: "New policy",
    none: "No policy yet.",
    back: "Back to the policies",
    policy: "Policy",
    id: "Policy id",
    id_note: "Cannot be changed once saved.",
    name: "Name",
    enabled: "Enabled",
    disabled: "Disabled",
    priority: "Priority",
    priority_note: "Higher wins.",
    switches: "Switches",
    anti_uninstall: "Anti-uninstall",
    auto_start: "Auto-start",
    anti_logoff: "Anti-logoff",
    all_off: "All off",
    scope: "Effective scope",
    scope_note: "Applies to a user in any of these groups, departments or device tags; one per line.",
    groups: "Groups",
    departments: "Departments",
    device_tags: "Device tags",
    whitelist: "Whitelist",
    whitelist_note:
        "Users this policy exempts: one stable user id per line (names show once the directory is connected).",
    approval: "Approval configuration",
    allow_filing: "Employees may file an uninstall request",
    filing_allowed: "Filing allowed",
    filing_denied: "No filing (denied)",
    workflow: "Workflow",
    workflow_note: "Used only when filing is allowed.",
    choose: "— choose —",
    built_in: "Built-in",
    dingtalk: "DingTalk",
    approval_kind: "Approved in",
    approval_kind_note: "DingTalk: only the workflows associated with DingTalk are offered; built-in: only those decided in this console.",
    not_in_force: "not in force",
    prompt: "Prompt",
    prompt_note: "What the agent's dialog says, in Chinese and in English.",
    title: "Title",
    content: "Content",
    primary_button: "Primary button",
    secondary_button: "Secondary button",
    live_preview: "Live preview",
    dialog_preview: "What the agent shows",
    preview_change: "Preview change",
    save: "Save",
    delete: "Delete policy",
    delete_note: "Preview first: which devices would lose protection.",
    preview_delete: "Preview deletion",
    confirm_delete: "Delete",
    change_preview: "Change preview",
    version: "Version",
    updated: "Updated",
    yes: "Yes",
    no: "No",
    devices_looked_at: "Devices looked at",
    gain_protection: "Gain protection",
    lose_protection: "Lose protection",
    no_change: "No device's decision on uninstalling changes.",
    device: "Device",
    user: "User",
    change: "Change",
    before: "Before",
    after: "After",
    gains: "Gains protection",
    loses: "Loses protection",
    changes: "Decision changes",
    if_saved: "If this policy is saved:",
    if_deleted: "If this policy is deleted:",
    stale: "The form changed since this preview: preview again.",
    problems: "The policy has these problems:",
    error: "Something went wrong",
    effect_allow: "Allowed",
    effect_require_approval: "Needs approval",
    effect_deny: "Denied",
    reason_out_of_scope: "out of every policy's scope",
    reason_policy_disabled: "policy disabled",
    reason_switch_off: "switch off",
    reason_whitelisted: "whitelisted",
    reason_approval_required: "approval required",
    reason_filing_disabled: "filing not allowed",
    reason_valid_grant: "valid grant",
};

fn texts(lang: Lang) -> &'static Texts {
    match lang {
        Lang::Zh => &ZH,
        Lang::En => &EN,
    }
}

/// The texts the script shows, as the form's `data-texts`.
fn script_texts(t: &Texts) -> String {
    json!({
        "devices": t.devices_looked_at,
        "gain": t.gain_protection,
        "lose": t.lose_protection,
        "none": t.no_change,
        "device": t.device,
        "user": t.user,
        "change": t.change,
        "before": t.before,
        "after": t.after,
        "policy": t.policy,
        "workflow": t.workflow,
        "if_saved": t.if_saved,
        "if_deleted": t.if_deleted,
        "stale": t.stale,
        "problems": t.problems,
        "error": t.error,
        "changes": {
            "gains_protection": t.gains,
            "loses_protection": t.loses,
            "changes": t.changes,
        },
        "effects": {
            "allow": t.effect_allow,
            "require_approval": t.effect_require_approval,
            "deny": t.effect_deny,
        },
        "reasons": {
            "out_of_scope": t.reason_out_of_scope,
            "policy_disabled": t.reason_policy_disabled,
            "switch_off": t.reason_switch_off,
            "whitelisted": t.reason_whitelisted,
            "approval_required": t.reason_approval_required,
            "filing_disabled": t.reason_filing_disabled,
            "valid_grant": t.reason_valid_grant,
        },
    })
    .to_string()
}

/// The policies in precedence order: priority high to low, then id (as the API lists them).
fn in_precedence_order(stored: &mut [Stored]) {
    stored.sort_by(|a, b| {
        b.policy
            .priority
            .cmp(&a.policy.priority)
            .then_with(|| a.policy.id.cmp(&b.policy.id))
    });
}

fn policy_href(id: &PolicyId) -> String {
    let segment = form_urlencoded::byte_serialize(id.as_str().as_bytes()).collect::<String>();
    format!("/console/policies/{}", segment.replace('+', "%20"))
}

/// A workflow's kind as the console names it.
fn kind(t: &Texts, w: &Workflow) -> &'static str {
    if w.dingtalk().is_some() {
        t.dingtalk
    } else {
        t.built_in
    }
}

/// The directory's names of the ids the policy lists (those it knows).
fn names<'a>(ids: impl Iterator<Item = (&'a str, Option<&'a str>)>) -> Markup {
    let known: Vec<(&str, &str)> = ids.filter_map(|(id, name)| Some((id, name?))).collect();
    html! {
        @if !known.is_empty() {
            ul.names.note { @for (id, name) in known { li { span.mono { (id) } " · " (name) } } }
        }
    }
}

/// A workflow's kind as the editor's "approved in" choice names it.
fn kind_value(w: &Workflow) -> &'static str {
    if w.dingtalk().is_some() {
        "dingtalk"
    } else {
        "builtin"
    }
}

/// How a policy's approval reads in the list: where requests go, or that there is no filing.
fn approval_summary(t: &Texts, p: &Policy, workflows: &[Workflow]) -> Markup {
    html! {
        @if p.approval.allow_filing {
            (t.filing_allowed)
            @if let Some(id) = &p.approval.workflow {
                @match workflows.iter().find(|w| w.id == *id) {
                    Some(w) => { div.note { (w.name) " · " (kind(t, w)) } }
                    None => { div.note { (id) " · " (t.not_in_force) } }
                }
            }
        } @else {
            (t.filing_denied)
        }
    }
}

fn switches_summary(t: &Texts, p: &Policy) -> Markup {
    let on: Vec<&str> = [
        (p.switches.anti_uninstall, t.anti_uninstall),
        (p.switches.auto_start, t.auto_start),
        (p.switches.anti_logoff, t.anti_logoff),
    ]
    .into_iter()
    .filter_map(|(on, name)| on.then_some(name))
    .collect();
    html! {
        @if on.is_empty() { span.note { (t.all_off) } }
        @for name in on { span.tag { (name) } " " }
    }
}

fn scope_summary(t: &Texts, p: &Policy) -> Markup {
    let listed = [
        (t.groups, lines(&p.scope.groups, ", ")),
        (t.departments, lines(&p.scope.departments, ", ")),
        (t.device_tags, lines(&p.scope.device_tags, ", ")),
    ];
    html! {
        @for (label, items) in listed {
            @if !items.is_empty() { div { span.note { (label) ": " } (items) } }
        }
    }
}

/// `GET /console/policies`.
async fn list(State(state): State<AppState>, headers: HeaderMap, uri: Uri) -> Response {
    let viewer = match viewer(&state, &headers, &uri, Role::Viewer).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let t = texts(viewer.lang);
    let mut stored = match state.policies.list().await {
        Ok(stored) => stored,
        Err(e) => return failed(&viewer, Section::Policy, &e),
    };
    in_precedence_order(&mut stored);
    let workflows = state.engine.workflows();
    let admin = viewer.identity.role.allows(Role::Admin);
    let content = html! {
        div.toolbar {
            p.note { (t.intro) }
            @if admin { a.button href="/console/policies/new" { (t.new_policy) } }
        }
        @if stored.is_empty() {
            p { (t.none) }
        } @else {
            table.policies {
                thead { tr {
                    th scope="col" { (t.name) }
                    th scope="col" { (t.enabled) }
                    th scope="col" { (t.priority) }
                    th scope="col" { (t.switches) }
                    th scope="col" { (t.scope) }
                    th scope="col" { (t.whitelist) }
                    th scope="col" { (t.approval) }
                } }
                tbody {
                    @for s in &stored {
                        @let p = &s.policy;
                        tr {
                            td {
                                a href=(policy_href(&p.id)) { (p.name) }
                                div.note.mono { (p.id) }
                            }
                            td {
                                @if p.enabled { span.state.approved { (t.enabled) } }
                                @else { span.state.revoked { (t.disabled) } }
                            }
                            td { (p.priority) }
                            td { (switches_summary(t, p)) }
                            td { (scope_summary(t, p)) }
                            td { (p.whitelist.len()) }
                            td { (approval_summary(t, p, &workflows)) }
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
            Section::Policy,
            viewer.lang.t().anti_uninstall_policy,
            content,
        ),
    )
}

/// `GET /console/policies/new`: the editor for a new policy (admins).
async fn create(State(state): State<AppState>, headers: HeaderMap, uri: Uri) -> Response {
    let viewer = match viewer(&state, &headers, &uri, Role::Admin).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let policy = Policy {
        id: PolicyId::new(""),
        name: String::new(),
        enabled: true,
        priority: 0,
        switches: sase_policy::model::Switches::default(),
        scope: sase_policy::model::Scope::default(),
        whitelist: Vec::new(),
        approval: sase_policy::model::ApprovalConfig::default(),
        prompt: BTreeMap::new(),
    };
    let t = texts(viewer.lang);
    let workflows = state.engine.workflows();
    html_page(
        StatusCode::OK,
        layout::page(
            &viewer,
            Section::Policy,
            t.new_policy,
            editor(&viewer, &policy, None, &workflows, &state.directory.snapshot()),
        ),
    )
}

/// `GET /console/policies/{id}`: the editor (admins), or the policy as it is (others).
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
    let stored = match state.policies.get(&id).await {
        Ok(Some(stored)) => stored,
        Ok(None) => return not_found(&viewer, Section::Policy),
        Err(e) => return failed(&viewer, Section::Policy, &e),
    };
    let workflows = state.engine.workflows();
    let content = if viewer.identity.role.allows(Role::Admin) {
        editor(
            &viewer,
            &stored.policy,
            Some(&stored),
            &workflows,
            &state.directory.snapshot(),
        )
    } else {
        read_only(&viewer, &stored, &workflows)
    };
    let title = if stored.policy.name.trim().is_empty() {
        stored.policy.id.to_string()
    } else {
        stored.policy.name.clone()
    };
    html_page(
        StatusCode::OK,
        layout::page(&viewer, Section::Policy, &title, content),
    )
}

/// `items` joined by `separator`.
fn lines<T: std::fmt::Display>(items: &[T], separator: &str) -> String {
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(separator)
}

/// The dialog the agent shows, as the prompt in `locale` has it (the script redraws it as the
/// admin types).
fn dialog(caption: &str, locale: &str, text: Option<&PromptText>) -> Markup {
    let text = text.cloned().unwrap_or_default();
    html! {
        figure.dialog-preview #(format!("preview-{locale}")) {
            figcaption { (caption) " · " (locale) }
            div.dialog lang=(locale) {
                p.dialog-title data-preview=(format!("{locale}.title")) { (text.title) }
                p.dialog-content data-preview=(format!("{locale}.content")) { (text.content) }
                div.dialog-buttons {
                    span.dialog-button.secondary data-preview=(format!("{locale}.secondary_button")) { (text.secondary_button) }
                    span.dialog-button.primary data-preview=(format!("{locale}.primary_button")) { (text.primary_button) }
                }
            }
        }
    }
}

fn locale_name(locale: &str, lang: Lang) -> String {
    format!("{} ({locale})", lang.name())
}

/// The editor: `stored` is the policy as saved (none: a new one).
fn editor(
    viewer: &Viewer,
    p: &Policy,
    stored: Option<&Stored>,
    workflows: &[Workflow],
    directory: &Snapshot,
) -> Markup {
    let t = texts(viewer.lang);
    let version = stored.map_or(0, |s| s.version);
    let is_new = stored.is_none();
    // Locales beyond the two edited here are kept as they are.
    let extra: BTreeMap<&String, &PromptText> = p
        .prompt
        .iter()
        .filter(|(l, _)| !LOCALES.iter().any(|(known, _)| known == l))
        .collect();
    let extra = serde_json::to_string(&extra).unwrap_or_else(|_| "{}".to_owned());
    let named = p.approval.workflow.as_ref();
    let missing = named.filter(|id| !workflows.iter().any(|w| w.id == **id));
    let named_builtin = named
        .and_then(|id| workflows.iter().find(|w| w.id == *id))
        .is_some_and(|w| kind_value(w) == "builtin");
    let checkbox = |id: &str, name: &str, checked: bool, label: &str| {
        html! {
            label.check for=(id) {
                input #(id) type="checkbox" name=(name) data-type="bool" checked[checked];
                " " (label)
            }
        }
    };
    html! {
        p { a href="/console/policies" { "← " (t.back) } }
        form #policy-form.policy-form
            data-id=[(!is_new).then(|| p.id.as_str())]
            data-version=(version)
            data-texts=(script_texts(t))
        {
            input type="hidden" name="extra-prompts" value=(extra);
            section.panel aria-labelledby="basics" {
                h2 #basics { (t.policy) }
                div.grid {
                    div.field {
                        label for="policy-id" { (t.id) }
                        @if is_new {
                            input #policy-id name="policy.id" required autocomplete="off" spellcheck="false";
                        } @else {
                            input #policy-id name="policy.id" value=(p.id) readonly aria-describedby="policy-id-note";
                            span.note #policy-id-note { (t.id_note) }
                        }
                    }
                    div.field {
                        label for="policy-name" { (t.name) }
                        input #policy-name name="policy.name" value=(p.name) required;
                    }
                    div.field.check-field {
                        (checkbox("policy-enabled", "policy.enabled", p.enabled, t.enabled))
                    }
                    div.field {
                        label for="policy-priority" { (t.priority) }
                        input #policy-priority name="policy.priority" type="number" step="1" value=(p.priority) data-type="number" aria-describedby="policy-priority-note";
                        span.note #policy-priority-note { (t.priority_note) }
                    }
                }
                fieldset.checks {
                    legend { (t.switches) }
                    (checkbox("switch-anti-uninstall", "policy.switches.anti_uninstall", p.switches.anti_uninstall, t.anti_uninstall))
                    (checkbox("switch-auto-start", "policy.switches.auto_start", p.switches.auto_start, t.auto_start))
                    (checkbox("switch-anti-logoff", "policy.switches.anti_logoff", p.switches.anti_logoff, t.anti_logoff))
                }
            }
            section.panel aria-labelledby="scope" {
                h2 #scope { (t.scope) }
                p.note #scope-note { (t.scope_note) }
                div.grid {
                    @for (id, name, label, value) in [
                        ("scope-groups", "policy.scope.groups", t.groups, lines(&p.scope.groups, "\n")),
                        ("scope-departments", "policy.scope.departments", t.departments, lines(&p.scope.departments, "\n")),
                        ("scope-device-tags", "policy.scope.device_tags", t.device_tags, lines(&p.scope.device_tags, "\n")),
                    ] {
                        div.field {
                            label for=(id) { (label) }
                            textarea #(id) name=(name) data-type="lines" aria-describedby="scope-note" spellcheck="false" { (value) }
                        }
                    }
                }
                (names(p.scope.departments.iter().map(|d| (d.as_str(), directory.department_name(d.as_str())))))
            }
            section.panel aria-labelledby="whitelist" {
                h2 #whitelist { (t.whitelist) }
                div.field {
                    label for="policy-whitelist" { (t.whitelist) }
                    textarea #policy-whitelist name="policy.whitelist" data-type="lines" aria-describedby="whitelist-note" spellcheck="false" { (lines(&p.whitelist, "\n")) }
                    span.note #whitelist-note { (t.whitelist_note) }
                }
                (names(p.whitelist.iter().map(|u| (u.as_str(), directory.name_of(u.as_str())))))
            }
            section.panel aria-labelledby="approval" {
                h2 #approval { (t.approval) }
                (checkbox("approval-filing", "policy.approval.allow_filing", p.approval.allow_filing, t.allow_filing))
                // First where requests are decided, then only the workflows of that kind
                // (policy.js hides the others).
                div.field {
                    label for="approval-kind" { (t.approval_kind) }
                    select #approval-kind aria-describedby="approval-kind-note" {
                        option value="dingtalk" selected[!named_builtin] { (t.dingtalk) }
                        option value="builtin" selected[named_builtin] { (t.built_in) }
                    }
                    span.note #approval-kind-note { (t.approval_kind_note) }
                }
                div.field {
                    label for="approval-workflow" { (t.workflow) }
                    select #approval-workflow name="policy.approval.workflow" aria-describedby="approval-workflow-note" {
                        option value="" { (t.choose) }
                        @for w in workflows {
                            option value=(w.id) selected[named == Some(&w.id)] data-kind=(kind_value(w)) {
                                (w.name)
                                @if w.name != w.id.as_str() { " (" (w.id) ")" }
                                " · " (kind(t, w))
                            }
                        }
                        @if let Some(id) = missing {
                            option value=(id) selected { (id) " · " (t.not_in_force) }
                        }
                    }
                    span.note #approval-workflow-note { (t.workflow_note) }
                }
            }
            section.panel aria-labelledby="prompt" {
                h2 #prompt { (t.prompt) }
                p.note { (t.prompt_note) }
                @for (locale, lang) in LOCALES {
                    @let text = p.prompt.get(locale);
                    div.prompt-locale {
                        fieldset {
                            legend { (locale_name(locale, lang)) }
                            @for (field, label) in [
                                ("title", t.title),
                                ("primary_button", t.primary_button),
                                ("secondary_button", t.secondary_button),
                            ] {
                                @let id = format!("prompt-{locale}-{field}");
                                @let value = text.map_or("", |x| match field {
                                    "title" => x.title.as_str(),
                                    "primary_button" => x.primary_button.as_str(),
                                    _ => x.secondary_button.as_str(),
                                });
                                div.field {
                                    label for=(id) { (label) }
                                    input #(id) name=(format!("policy.prompt.{locale}.{field}")) lang=(locale) value=(value) data-preview-source=(format!("{locale}.{field}"));
                                }
                                @if field == "title" {
                                    @let id = format!("prompt-{locale}-content");
                                    div.field {
                                        label for=(id) { (t.content) }
                                        textarea #(id) name=(format!("policy.prompt.{locale}.content")) lang=(locale) data-preview-source=(format!("{locale}.content")) {
                                            (text.map_or("", |x| x.content.as_str()))
                                        }
                                    }
                                }
                            }
                        }
                        (dialog(t.live_preview, locale, text))
                    }
                }
            }
            div.actions {
                button.secondary type="button" #preview-change { (t.preview_change) }
                button type="submit" #save { (t.save) }
            }
            div.message.policy-errors #policy-errors role="alert" {}
        }
        section.panel #change-preview aria-labelledby="change-preview-title" aria-live="polite" hidden {
            h2 #change-preview-title { (t.change_preview) }
            div #change-preview-body {}
            div.actions {
                button.danger type="button" #confirm-delete hidden { (t.confirm_delete) }
            }
        }
        @if let Some(stored) = stored {
            section.panel aria-labelledby="delete" {
                h2 #delete { (t.delete) }
                p.note { (t.delete_note) " " (t.version) " " (stored.version) " · " (t.updated) " " (utc(stored.updated_at_ms)) }
                button.danger type="button" #preview-delete { (t.preview_delete) }
            }
        }
        script src=(SCRIPT_PATH) defer {}
    }
}

/// A policy as it is, for those who may not change it.
fn read_only(viewer: &Viewer, s: &Stored, workflows: &[Workflow]) -> Markup {
    let t = texts(viewer.lang);
    let p = &s.policy;
    let yes_no = |b: bool| if b { t.yes } else { t.no };
    html! {
        p { a href="/console/policies" { "← " (t.back) } }
        section.panel aria-labelledby="basics" {
            h2 #basics { (t.policy) }
            dl.facts {
                dt { (t.id) } dd.mono { (p.id) }
                dt { (t.name) } dd { (p.name) }
                dt { (t.enabled) } dd { (yes_no(p.enabled)) }
                dt { (t.priority) } dd { (p.priority) }
                dt { (t.switches) } dd { (switches_summary(t, p)) }
                dt { (t.scope) } dd { (scope_summary(t, p)) }
                dt { (t.whitelist) }
                @if p.whitelist.is_empty() { dd { "—" } } @else { dd.mono { (lines(&p.whitelist, ", ")) } }
                dt { (t.approval) } dd { (approval_summary(t, p, workflows)) }
                dt { (t.version) } dd { (s.version) " · " (t.updated) " " (utc(s.updated_at_ms)) }
            }
        }
        section.panel aria-labelledby="prompt" {
            h2 #prompt { (t.prompt) }
            div.prompt-previews {
                @for (locale, _) in LOCALES {
                    (dialog(t.dialog_preview, locale, p.prompt.get(locale)))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_languages_have_every_text_and_the_script_gets_json() {
        for lang in [Lang::Zh, Lang::En] {
            let texts: serde_json::Value = serde_json::from_str(&script_texts(texts(lang))).unwrap();
            assert!(texts["effects"]["require_approval"].is_string());
            assert!(texts["reasons"]["whitelisted"].is_string());
        }
    }

    #[test]
    fn policy_links_escape_the_id() {
        assert_eq!(
            policy_href(&PolicyId::new("employees")),
            "/console/policies/employees"
        );
        assert_eq!(
            policy_href(&PolicyId::new("a b/c")),
            "/console/policies/a%20b%2Fc"
        );
    }
}
