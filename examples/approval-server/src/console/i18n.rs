//! The console's two languages: the admin picks one (a cookie), else the browser's
//! `Accept-Language` decides, else Chinese.

use axum::http::header::ACCEPT_LANGUAGE;
use axum::http::HeaderMap;

/// The cookie that keeps the admin's choice.
pub(crate) const LANG_COOKIE: &str = "sase_lang";

/// A language of the console.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lang {
    /// 简体中文.
    Zh,
    /// English.
    En,
}

impl Lang {
    /// The BCP 47 tag (`zh-CN`, `en-US`): `<html lang>`, the cookie's value, the agent prompt's
    /// locale.
    pub(crate) fn tag(self) -> &'static str {
        match self {
            Lang::Zh => "zh-CN",
            Lang::En => "en-US",
        }
    }

    /// A tag as given (`zh-CN`, `zh`, `en-US`, `en`, any case).
    pub(crate) fn parse(tag: &str) -> Option<Self> {
        let primary = tag.split(['-', '_']).next()?.trim().to_ascii_lowercase();
        match primary.as_str() {
            "zh" => Some(Lang::Zh),
            "en" => Some(Lang::En),
            _ => None,
        }
    }

    /// The admin's choice, else the first of the browser's languages the console speaks, else
    /// Chinese.
    pub(crate) fn of(headers: &HeaderMap) -> Self {
        if let Some(chosen) = crate::api::cookie(headers, LANG_COOKIE).and_then(Self::parse) {
            return chosen;
        }
        headers
            .get(ACCEPT_LANGUAGE)
            .and_then(|v| v.to_str().ok())
            .into_iter()
            .flat_map(|v| v.split(','))
            .filter_map(|range| Self::parse(range.split(';').next().unwrap_or_default()))
            .next()
            .unwrap_or(Lang::Zh)
    }

    /// The other language, which the switch offers.
    pub(crate) fn other(self) -> Self {
        match self {
            Lang::Zh => Lang::En,
            Lang::En => Lang::Zh,
        }
    }

    /// Its own name, as the switch shows it.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Lang::Zh => "中文",
            Lang::En => "English",
        }
    }

    /// The console's texts in this language.
    pub(crate) fn t(self) -> &'static Texts {
        match self {
            Lang::Zh => &ZH,
            Lang::En => &EN,
        }
    }
}

/// Every text the console shows, in one language.
#[derive(Debug)]
pub(crate) struct Texts {
    pub(crate) console: &'static str,
    pub(crate) approval_center: &'static str,
    pub(crate) workflow_management: &'static str,
    pub(crate) workflow_instance: &'static str,
    pub(crate) terminal_management: &'static str,
    pub(crate) anti_uninstall_policy: &'static str,
    pub(crate) devices: &'static str,
    pub(crate) audit_log: &'static str,
    pub(crate) admins: &'static str,
    pub(crate) log_out: &'static str,
    pub(crate) skip_to_content: &'static str,
    pub(crate) language: &'static str,
    pub(crate) signed_in_as: &'static str,

    pub(crate) log_in: &'static str,
    pub(crate) name: &'static str,
    pub(crate) password: &'static str,

    pub(crate) filters: &'static str,
    pub(crate) state: &'static str,
    pub(crate) any: &'static str,
    pub(crate) requester: &'static str,
    pub(crate) device: &'static str,
    pub(crate) workflow: &'static str,
    pub(crate) created_from: &'static str,
    pub(crate) created_to: &'static str,
    pub(crate) apply: &'static str,
    pub(crate) clear: &'static str,
    pub(crate) total: &'static str,
    pub(crate) previous: &'static str,
    pub(crate) next: &'static str,
    pub(crate) page: &'static str,
    pub(crate) none_found: &'static str,
    pub(crate) request: &'static str,
    pub(crate) created: &'static str,
    pub(crate) reason: &'static str,
    pub(crate) fields: &'static str,
    pub(crate) history: &'static str,
    pub(crate) dingtalk_instance: &'static str,
    pub(crate) grant: &'static str,
    pub(crate) grant_used: &'static str,
    pub(crate) grant_unused: &'static str,
    pub(crate) decide: &'static str,
    pub(crate) remark: &'static str,
    pub(crate) approve: &'static str,
    pub(crate) reject: &'static str,
    pub(crate) revoke: &'static str,
    pub(crate) by: &'static str,
    pub(crate) source: &'static str,
    pub(crate) live_note: &'static str,
    pub(crate) not_found: &'static str,
    pub(crate) forbidden: &'static str,
    pub(crate) older_entries_dropped: &'static str,

    pub(crate) submitted: &'static str,
    pub(crate) pending: &'static str,
    pub(crate) approved: &'static str,
    pub(crate) rejected: &'static str,
    pub(crate) revoked: &'static str,
    pub(crate) failed: &'static str,

    pub(crate) source_agent: &'static str,
    pub(crate) source_dingtalk: &'static str,
    pub(crate) source_console: &'static str,
    pub(crate) source_reconciliation: &'static str,
    pub(crate) source_system: &'static str,
}

static ZH: Texts = Texts {
    console: "SASE 审批控制台",
    approval_center: "审批中心",
    workflow_management: "审批流管理",
    workflow_instance: "审批实例",
    terminal_management: "终端管理",
    anti_uninstall_policy: "防卸载策略",
    devices: "设备",
    audit_log: "审计日志",
    admins: "管理员",
    log_out: "退出登录",
    skip_to_content: "跳到正文",
    language: "语言",
    signed_in_as: "当前用户",

    log_in: "登录",
    name: "用户名",
    password: "密码",

    filters: "筛选",
    state: "状态",
    any: "全部",
    requester: "申请人",
    device: "设备",
    workflow: "审批流",
    created_from: "创建时间起",
    created_to: "创建时间止",
    apply: "筛选",
    clear: "清除",
    total: "共",
    previous: "上一页",
    next: "下一页",
    page: "页",
    none_found: "没有符合条件的申请。",
    request: "申请",
    created: "创建时间",
    reason: "原因",
    fields: "表单字段",
    history: "历程",
    dingtalk_instance: "钉钉审批实例",
    grant: "卸载授权",
    grant_used: "已使用",
    grant_unused: "未使用",
    decide: "审批",
    remark: "备注",
    approve: "同意",
    reject: "拒绝",
    revoke: "撤销",
    by: "操作人",
    source: "来源",
    live_note: "钉钉中的审批结果会自动显示在此页。",
    not_found: "未找到。",
    forbidden: "您的角色不能查看此页。",
    older_entries_dropped: "条较早的记录未显示",

    submitted: "已提交",
    pending: "审批中",
    approved: "已同意",
    rejected: "已拒绝",
    revoked: "已撤销",
    failed: "失败",

    source_agent: "终端",
    source_dingtalk: "钉钉",
    source_console: "控制台",
    source_reconciliation: "对账",
    source_system: "系统",
};

static EN: Texts = Texts {
    console: "SASE Approval Console",
    approval_center: "Approval Center",
    workflow_management: "Workflow Management",
    workflow_instance: "Workflow Instance",
    terminal_management: "Terminal Management",
    anti_uninstall_policy: "Anti-uninstallation Policy",
    devices: "Devices",
    audit_log: "Audit log",
    admins: "Admins",
    log_out: "Log out",
    skip_to_content: "Skip to content",
    language: "Language",
    signed_in_as: "Signed in as",

    log_in: "Log in",
    name: "Name",
    password: "Password",

    filters: "Filters",
    state: "State",
    any: "Any",
    requester: "Requester",
    device: "Device",
    workflow: "Workflow",
    created_from: "Created from",
    created_to: "Created to",
    apply: "Apply",
    clear: "Clear",
    total: "Total",
    previous: "Previous",
    next: "Next",
    page: "Page",
    none_found: "No request matches.",
    request: "Request",
    created: "Created",
    reason: "Reason",
    fields: "Form fields",
    history: "History",
    dingtalk_instance: "DingTalk instance",
    grant: "Uninstall grant",
    grant_used: "used",
    grant_unused: "not used",
    decide: "Decide",
    remark: "Remark",
    approve: "Approve",
    reject: "Reject",
    revoke: "Revoke",
    by: "By",
    source: "Source",
    live_note: "A decision made in DingTalk shows here by itself.",
    not_found: "Not found.",
    forbidden: "Your role cannot see this page.",
    older_entries_dropped: "older entries not shown",

    submitted: "Submitted",
    pending: "Pending",
    approved: "Approved",
    rejected: "Rejected",
    revoked: "Revoked",
    failed: "Failed",

    source_agent: "Agent",
    source_dingtalk: "DingTalk",
    source_console: "Console",
    source_reconciliation: "Reconciliation",
    source_system: "System",
};

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn the_choice_wins_then_the_browser_then_chinese() {
        assert_eq!(Lang::of(&headers(&[])), Lang::Zh);
        assert_eq!(
            Lang::of(&headers(&[("accept-language", "en-GB,en;q=0.9")])),
            Lang::En
        );
        assert_eq!(
            Lang::of(&headers(&[("accept-language", "fr-FR, zh-TW;q=0.8, en;q=0.5")])),
            Lang::Zh,
            "the first the console speaks"
        );
        assert_eq!(
            Lang::of(&headers(&[
                ("accept-language", "en-US"),
                ("cookie", "sase_session=x; sase_lang=zh-CN")
            ])),
            Lang::Zh
        );
        assert_eq!(Lang::of(&headers(&[("cookie", "sase_lang=klingon")])), Lang::Zh);
    }
}
