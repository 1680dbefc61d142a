//! The frame every console page shares: the head (the embedded style sheet and script, the
//! session's CSRF token for the script), a skip link, the navigation as the SASE console names
//! it, who is signed in, the language switch and logging out.

use super::i18n::Lang;
use crate::admins::{Identity, Role};
use maud::{html, Markup, DOCTYPE};

/// The console's sections, for the navigation's current entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Section {
    WorkflowManagement,
    WorkflowInstance,
    Policy,
    Devices,
    Audit,
    Admins,
}

impl Section {
    fn href(self) -> &'static str {
        match self {
            Section::WorkflowManagement => "/console/workflows",
            Section::WorkflowInstance => "/console/requests",
            Section::Policy => "/console/policies",
            Section::Devices => "/console/devices",
            Section::Audit => "/console/audit",
            Section::Admins => "/console/admins",
        }
    }

    fn label(self, lang: Lang) -> &'static str {
        let t = lang.t();
        match self {
            Section::WorkflowManagement => t.workflow_management,
            Section::WorkflowInstance => t.workflow_instance,
            Section::Policy => t.anti_uninstall_policy,
            Section::Devices => t.devices,
            Section::Audit => t.audit_log,
            Section::Admins => t.admins,
        }
    }

    /// Only admins see the admins (and the audit log, as the API has it).
    fn visible_to(self, role: Role) -> bool {
        match self {
            Section::Admins | Section::Audit => role.allows(Role::Admin),
            _ => true,
        }
    }
}

/// Who is looking, in which language.
#[derive(Debug)]
pub(crate) struct Viewer {
    pub(crate) identity: Identity,
    /// The session's CSRF token, which the script sends with every change.
    pub(crate) csrf: String,
    pub(crate) lang: Lang,
    /// The path and query shown, for the language switch to come back to.
    pub(crate) here: String,
}

/// A page of the signed-in console.
pub(crate) fn page(viewer: &Viewer, current: Section, title: &str, content: Markup) -> Markup {
    following(viewer, current, title, None, content)
}

/// A page that refreshes itself when the console API's `url` answers another `version` than
/// the one shown (the script polls it).
pub(crate) fn following(
    viewer: &Viewer,
    current: Section,
    title: &str,
    follow: Option<(&str, u64)>,
    content: Markup,
) -> Markup {
    let (lang, t) = (viewer.lang, viewer.lang.t());
    let group = |label: &str, sections: &[Section]| {
        html! {
            li {
                span.group { (label) }
                ul {
                    @for s in sections.iter().filter(|s| s.visible_to(viewer.identity.role)) {
                        li { a href=(s.href()) aria-current=[(*s == current).then_some("page")] { (s.label(lang)) } }
                    }
                }
            }
        }
    };
    frame(
        lang,
        &format!("{title} · {}", t.console),
        Some(&viewer.csrf),
        html! {
            a.skip href="#main" { (t.skip_to_content) }
            header.top {
                span.brand { (t.console) }
                span.who { (t.signed_in_as) " " strong { (viewer.identity.name) } " (" (role_name(viewer.identity.role)) ")" }
                (language_switch(lang, &viewer.here))
                button.link type="button" data-logout { (t.log_out) }
            }
            div.body {
                nav.side aria-label=(t.console) {
                    ul {
                        (group(t.approval_center, &[Section::WorkflowManagement, Section::WorkflowInstance]))
                        (group(t.terminal_management, &[Section::Policy]))
                        @for s in [Section::Devices, Section::Audit, Section::Admins] {
                            @if s.visible_to(viewer.identity.role) {
                                li { a href=(s.href()) aria-current=[(s == current).then_some("page")] { (s.label(lang)) } }
                            }
                        }
                    }
                }
                main #main tabindex="-1" data-follow=[follow.map(|f| f.0)] data-version=[follow.map(|f| f.1)] {
                    h1 { (title) }
                    (content)
                }
            }
        },
    )
}

/// A page outside the session (the login).
pub(crate) fn bare(lang: Lang, title: &str, here: &str, content: Markup) -> Markup {
    let t = lang.t();
    frame(
        lang,
        &format!("{title} · {}", t.console),
        None,
        html! {
            header.top {
                span.brand { (t.console) }
                (language_switch(lang, here))
            }
            main #main.narrow {
                h1 { (title) }
                (content)
            }
        },
    )
}

/// A page for employees, not admins (where DingTalk's sign-in sends the browser back): the
/// product's name, no console navigation or language switch, the message in both languages.
pub(crate) fn notice(title: &str, content: Markup) -> Markup {
    frame(
        Lang::Zh,
        title,
        None,
        html! {
            header.top { span.brand { "SASE" } }
            main #main.narrow {
                h1 { (title) }
                (content)
            }
        },
    )
}

fn frame(lang: Lang, title: &str, csrf: Option<&str>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang=(lang.tag()) {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                @if let Some(csrf) = csrf { meta name="csrf-token" content=(csrf); }
                title { (title) }
                link rel="icon" href=(super::assets::ICON_PATH) type="image/svg+xml";
                link rel="stylesheet" href=(super::assets::STYLE_PATH);
                script src=(super::assets::SCRIPT_PATH) defer {}
            }
            body { (body) }
        }
    }
}

fn language_switch(lang: Lang, here: &str) -> Markup {
    let other = lang.other();
    let href = format!(
        "/console/lang/{}?next={}",
        other.tag(),
        form_urlencoded::byte_serialize(here.as_bytes()).collect::<String>()
    );
    html! {
        a.lang href=(href) hreflang=(other.tag()) lang=(other.tag()) aria-label=(format!("{}: {}", lang.t().language, other.name())) { (other.name()) }
    }
}

/// A role as the console names it.
pub(crate) fn role_name(role: Role) -> &'static str {
    match role {
        Role::Viewer => "viewer",
        Role::Approver => "approver",
        Role::Admin => "admin",
    }
}
