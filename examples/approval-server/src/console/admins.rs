//! Admins (admins only): every admin with their role, when and by whom created; a form
//! creating one; per admin a role change, a password reset and deletion, each naming the
//! version shown (a change made meanwhile is refused as stale). The signed-in admin's own row
//! has no role change and no deletion: one cannot lock oneself out from here.

use super::devices::segment;
use super::i18n::Lang;
use super::layout::{self, role_name, Section};
use super::time::utc;
use super::{failed, html_page, viewer};
use crate::admins::{Admin, Role};
use crate::api::AppState;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use maud::{html, Markup};

pub(super) fn routes() -> Router<AppState> {
    Router::new().route("/console/admins", get(page))
}

const ROLES: [Role; 3] = [Role::Viewer, Role::Approver, Role::Admin];

/// The page's texts, in one language (`{}` is where an admin's name goes).
#[derive(Debug)]
struct Texts {
    admins: &'static str,
    name: &'static str,
    name_hint: &'static str,
    role: &'static str,
    created: &'static str,
    created_by: &'static str,
    password: &'static str,
    new_admin: &'static str,
    initial_password: &'static str,
    create: &'static str,
    role_of: &'static str,
    change_role: &'static str,
    change_role_of: &'static str,
    new_password_for: &'static str,
    reset_password: &'static str,
    reset_password_of: &'static str,
    delete: &'static str,
    delete_admin: &'static str,
    you: &'static str,
    viewer: &'static str,
    approver: &'static str,
    admin: &'static str,
}

static ZH: Texts = Texts {
    admins: "管理员列表",
    name: "用户名",
    name_hint: "字母、数字及 . - _ @",
    role: "角色",
    created: "创建时间",
    created_by: "创建人",
    password: "密码",
    new_admin: "新建管理员",
    initial_password: "密码（至少 12 个字符）",
    create: "创建",
    role_of: "{} 的角色",
    change_role: "修改角色",
    change_role_of: "修改 {} 的角色",
    new_password_for: "{} 的新密码（至少 12 个字符）",
    reset_password: "重置密码",
    reset_password_of: "重置 {} 的密码",
    delete: "删除",
    delete_admin: "删除管理员 {}",
    you: "（您）",
    viewer: "只读",
    approver: "审批人",
    admin: "管理员",
};

static EN: Texts = Texts {
    admins: "Console admins",
    name: "Name",
    name_hint: "letters, digits, . - _ @",
    role: "Role",
    created: "Created",
    created_by: "by",
    password: "Password",
    new_admin: "New admin",
    initial_password: "Password (at least 12 characters)",
    create: "Create",
    role_of: "Role of {}",
    change_role: "Change role",
    change_role_of: "Change the role of {}",
    new_password_for: "New password for {} (at least 12 characters)",
    reset_password: "Reset password",
    reset_password_of: "Reset the password of {}",
    delete: "Delete",
    delete_admin: "Delete admin {}",
    you: "(you)",
    viewer: "Viewer",
    approver: "Approver",
    admin: "Admin",
};

fn texts(lang: Lang) -> &'static Texts {
    match lang {
        Lang::Zh => &ZH,
        Lang::En => &EN,
    }
}

fn role_label(t: &Texts, role: Role) -> &'static str {
    match role {
        Role::Viewer => t.viewer,
        Role::Approver => t.approver,
        Role::Admin => t.admin,
    }
}

fn role_options(t: &Texts, current: Option<Role>) -> Markup {
    html! {
        @for r in ROLES {
            option value=(role_name(r)) selected[current == Some(r)] { (role_label(t, r)) }
        }
    }
}

/// `GET /console/admins`.
async fn page(State(state): State<AppState>, headers: HeaderMap, uri: Uri) -> Response {
    let viewer = match viewer(&state, &headers, &uri, Role::Admin).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let admins = match state.admins.list().await {
        Ok(admins) => admins,
        Err(e) => return failed(&viewer, Section::Admins, &e),
    };
    let t = texts(viewer.lang);
    let me = viewer.identity.name.as_str();
    let content = html! {
        section.panel aria-labelledby="new-admin" {
            h2 #new-admin { (t.new_admin) }
            form.filters data-api="/api/console/admins" data-method="POST" {
                div.field {
                    label for="a-name" { (t.name) }
                    input #a-name name="name" required maxlength="64"
                        autocomplete="off" placeholder=(t.name_hint);
                }
                div.field {
                    label for="a-role" { (t.role) }
                    select #a-role name="role" { (role_options(t, Some(Role::Viewer))) }
                }
                div.field {
                    label for="a-password" { (t.initial_password) }
                    input #a-password name="password" type="password" required minlength="12"
                        autocomplete="new-password";
                }
                button type="submit" { (t.create) }
                output.message role="alert" {}
            }
        }
        section aria-labelledby="admins" {
            h2 #admins { (t.admins) }
            table.admins {
                thead { tr {
                    th scope="col" { (t.name) }
                    th scope="col" { (t.role) }
                    th scope="col" { (t.created) }
                    th scope="col" { (t.password) }
                    th scope="col" { span.visually-hidden { (t.delete) } }
                } }
                tbody {
                    @for a in &admins { (row(t, a, a.name == me)) }
                }
            }
        }
    };
    html_page(
        StatusCode::OK,
        layout::page(&viewer, Section::Admins, viewer.lang.t().admins, content),
    )
}

/// An admin's row with its forms (`own`: the signed-in admin's, without role change and
/// deletion).
fn row(t: &Texts, a: &Admin, own: bool) -> Markup {
    let name = a.name.as_str();
    let api = format!("/api/console/admins/{}", segment(name));
    html! {
        tr data-admin=(name) {
            th scope="row" { (name) @if own { " " span.note { (t.you) } } }
            td {
                @if own {
                    (role_label(t, a.role))
                } @else {
                    form.inline.role data-api=(api) data-method="PUT" {
                        select name="role" aria-label=(t.role_of.replace("{}", name)) {
                            (role_options(t, Some(a.role)))
                        }
                        input type="hidden" name="version" data-type="number" value=(a.version);
                        button.secondary type="submit" aria-label=(t.change_role_of.replace("{}", name)) { (t.change_role) }
                        output.message role="alert" {}
                    }
                }
            }
            td {
                span.nowrap { (utc(a.created_at_ms)) }
                div.note { (t.created_by) " " (a.created_by) }
            }
            td {
                form.inline.password data-api=(api) data-method="PUT" {
                    input name="password" type="password" required minlength="12" autocomplete="new-password"
                        aria-label=(t.new_password_for.replace("{}", name));
                    input type="hidden" name="version" data-type="number" value=(a.version);
                    button.secondary type="submit" aria-label=(t.reset_password_of.replace("{}", name)) { (t.reset_password) }
                    output.message role="alert" {}
                }
            }
            td {
                @if !own {
                    form.inline.delete data-api=(format!("{api}?version={}", a.version)) data-method="DELETE" {
                        button.danger type="submit" aria-label=(t.delete_admin.replace("{}", name)) { (t.delete) }
                        output.message role="alert" {}
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_role_has_a_label_and_the_current_is_selected() {
        let options = role_options(&EN, Some(Role::Approver)).into_string();
        assert_eq!(
            options,
            "<option value=\"viewer\">Viewer</option><option value=\"approver\" selected>Approver</option>\
             <option value=\"admin\">Admin</option>"
        );
        assert_eq!(role_label(&ZH, Role::Admin), "管理员");
    }
}
