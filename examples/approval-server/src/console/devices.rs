//! Terminal Management → Devices: the enrollment codes not used yet and a form making one (the
//! code shown once, in the form), and every device with its owner, tags and state; admins set
//! a device's tags and revoke it.

use super::i18n::Lang;
use super::layout::{self, Section};
use super::time::utc;
use super::{failed, html_page, viewer};
use crate::admins::Role;
use crate::api::AppState;
use crate::devices::{Device, CODE_TTL_MAX_SECS, CODE_TTL_SECS};
use crate::directory::Snapshot;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use maud::{html, Markup};
use std::fmt::Write as _;

pub(super) fn routes() -> Router<AppState> {
    Router::new().route("/console/devices", get(page))
}

/// The page's texts, in one language (`{}` is where a device's id goes).
#[derive(Debug)]
struct Texts {
    enrollment_codes: &'static str,
    new_code: &'static str,
    user_id: &'static str,
    groups_lines: &'static str,
    departments_lines: &'static str,
    tags_lines: &'static str,
    ttl: &'static str,
    create_code: &'static str,
    shown_once: &'static str,
    code_label: &'static str,
    unused_codes: &'static str,
    no_codes: &'static str,
    code_id: &'static str,
    expires: &'static str,
    expired: &'static str,
    devices: &'static str,
    no_devices: &'static str,
    device: &'static str,
    user: &'static str,
    groups: &'static str,
    departments: &'static str,
    tags: &'static str,
    enrolled_at: &'static str,
    enrolled_by: &'static str,
    state: &'static str,
    active: &'static str,
    revoked: &'static str,
    actions: &'static str,
    edit_tags: &'static str,
    tags_of: &'static str,
    save_tags: &'static str,
    save_tags_of: &'static str,
    revoke: &'static str,
    revoke_device: &'static str,
}

static ZH: Texts = Texts {
    enrollment_codes: "注册码",
    new_code: "新建注册码",
    user_id: "用户 ID",
    groups_lines: "用户组（每行一个）",
    departments_lines: "部门（每行一个）",
    tags_lines: "标签（每行一个）",
    ttl: "有效期（秒）",
    create_code: "生成注册码",
    shown_once: "注册码只显示这一次：请立即交给用户，在终端上输入。",
    code_label: "新注册码：",
    unused_codes: "未使用的注册码",
    no_codes: "没有未使用的注册码。",
    code_id: "注册码 ID",
    expires: "过期时间",
    expired: "已过期",
    devices: "已注册设备",
    no_devices: "没有已注册的设备。",
    device: "设备",
    user: "用户",
    groups: "用户组",
    departments: "部门",
    tags: "标签",
    enrolled_at: "注册时间",
    enrolled_by: "来源",
    state: "状态",
    active: "正常",
    revoked: "已吊销",
    actions: "操作",
    edit_tags: "编辑标签",
    tags_of: "{} 的标签（每行一个）",
    save_tags: "保存标签",
    save_tags_of: "保存 {} 的标签",
    revoke: "吊销",
    revoke_device: "吊销设备 {}",
};

static EN: Texts = Texts {
    enrollment_codes: "Enrollment codes",
    new_code: "New enrollment code",
    user_id: "User ID",
    groups_lines: "Groups (one per line)",
    departments_lines: "Departments (one per line)",
    tags_lines: "Tags (one per line)",
    ttl: "Valid for (seconds)",
    create_code: "Create code",
    shown_once: "The code is shown only this once: give it to the user now, to type into the agent.",
    code_label: "New code:",
    unused_codes: "Unused codes",
    no_codes: "No unused code.",
    code_id: "Code ID",
    expires: "Expires",
    expired: "expired",
    devices: "Enrolled devices",
    no_devices: "No device is enrolled.",
    device: "Device",
    user: "User",
    groups: "Groups",
    departments: "Departments",
    tags: "Tags",
    enrolled_at: "Enrolled",
    enrolled_by: "via",
    state: "State",
    active: "Active",
    revoked: "Revoked",
    actions: "Actions",
    edit_tags: "Edit tags",
    tags_of: "Tags of {} (one per line)",
    save_tags: "Save tags",
    save_tags_of: "Save the tags of {}",
    revoke: "Revoke",
    revoke_device: "Revoke device {}",
};

fn texts(lang: Lang) -> &'static Texts {
    match lang {
        Lang::Zh => &ZH,
        Lang::En => &EN,
    }
}

/// `value` as one segment of a URL's path: everything but unreserved characters
/// percent-encoded (a device id may hold `/`, `?` or spaces).
pub(super) fn segment(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// A time that wraps between its date and its time of day, nowhere else.
fn when(ms: i64) -> Markup {
    let shown = utc(ms);
    match shown.split_once(' ') {
        Some((day, time)) => html! { span.nowrap { (day) } " " span.nowrap { (time) } },
        None => html! { (shown) },
    }
}

/// Names as chips (`—` for none).
fn chips(values: &[String]) -> Markup {
    html! {
        @if values.is_empty() {
            span.note { "—" }
        } @else {
            ul.chips { @for v in values { li { (v) } } }
        }
    }
}

/// `GET /console/devices`.
async fn page(State(state): State<AppState>, headers: HeaderMap, uri: Uri) -> Response {
    let viewer = match viewer(&state, &headers, &uri, Role::Viewer).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let mut codes = match state.devices.codes().await {
        Ok(codes) => codes,
        Err(e) => return failed(&viewer, Section::Devices, &e),
    };
    codes.sort_by(|a, b| {
        a.created_at_ms
            .cmp(&b.created_at_ms)
            .then_with(|| a.id.cmp(&b.id))
    });
    let devices = match state.devices.list().await {
        Ok(devices) => devices,
        Err(e) => return failed(&viewer, Section::Devices, &e),
    };
    let now = state.audit.clock().now_ms();
    let admin = viewer.identity.role.allows(Role::Admin);
    let directory = state.directory.snapshot();
    let t = texts(viewer.lang);
    let content = html! {
        section.panel aria-labelledby="codes" {
            h2 #codes { (t.enrollment_codes) }
            @if admin {
                form.grid.three data-api="/api/console/enrollment-codes" data-method="POST" data-then="show"
                    data-show-field="code" aria-labelledby="new-code" {
                    h3 #new-code.wide { (t.new_code) }
                    div.field {
                        label for="c-user" { (t.user_id) }
                        input #c-user name="user_id" required autocomplete="off";
                    }
                    div.field.span2 {
                        label for="c-ttl" { (t.ttl) }
                        input #c-ttl name="ttl_secs" type="number" min="1" max=(CODE_TTL_MAX_SECS)
                            placeholder=(CODE_TTL_SECS) data-type="number";
                    }
                    div.field {
                        label for="c-groups" { (t.groups_lines) }
                        textarea #c-groups name="groups" data-type="lines" rows="2" {}
                    }
                    div.field {
                        label for="c-departments" { (t.departments_lines) }
                        textarea #c-departments name="departments" data-type="lines" rows="2" {}
                    }
                    div.field {
                        label for="c-tags" { (t.tags_lines) }
                        textarea #c-tags name="tags" data-type="lines" rows="2" {}
                    }
                    div.actions.wide {
                        button type="submit" { (t.create_code) }
                        span.note { (t.shown_once) }
                    }
                    output.shown.wide aria-live="polite" data-label=(t.code_label) {}
                    output.message.wide role="alert" {}
                }
            }
            h3 { (t.unused_codes) }
            @if codes.is_empty() {
                p.note { (t.no_codes) }
            } @else {
                table.codes {
                    thead { tr {
                        th scope="col" { (t.code_id) }
                        th scope="col" { (t.user) }
                        th scope="col" { (t.groups) }
                        th scope="col" { (t.departments) }
                        th scope="col" { (t.tags) }
                        th scope="col" { (t.expires) }
                    } }
                    tbody {
                        @for c in &codes {
                            tr {
                                td.mono.id { (c.id) }
                                td { (c.owner.user_id) }
                                td { (chips(&c.owner.groups)) }
                                td { (chips(&c.owner.departments)) }
                                td { (chips(&c.owner.tags)) }
                                td {
                                    (utc(c.expires_at_ms))
                                    @if c.expires_at_ms <= now { " " span.state.failed { (t.expired) } }
                                }
                            }
                        }
                    }
                }
            }
        }
        section.panel aria-labelledby="devices" {
            h2 #devices { (t.devices) }
            @if devices.is_empty() {
                p.note { (t.no_devices) }
            } @else {
                table.devices {
                    thead { tr {
                        th scope="col" { (t.device) }
                        th scope="col" { (t.user) }
                        th scope="col" { (t.groups) }
                        th scope="col" { (t.departments) }
                        th scope="col" { (t.tags) }
                        th scope="col" { (t.enrolled_at) }
                        th scope="col" { (t.state) }
                        @if admin { th scope="col" { (t.actions) } }
                    } }
                    tbody {
                        @for d in &devices { (row(t, d, admin, &directory)) }
                    }
                }
            }
        }
    };
    html_page(
        StatusCode::OK,
        layout::page(&viewer, Section::Devices, viewer.lang.t().devices, content),
    )
}

/// A device's row; with `admin`, its tags form and revoke button (unrevoked devices).
fn row(t: &Texts, d: &Device, admin: bool, directory: &Snapshot) -> Markup {
    let id = d.device_id.as_str();
    let api = format!("/api/console/devices/{}", segment(id));
    let editable = admin && d.revoked_at_ms.is_none();
    html! {
        tr data-device=(id) {
            th.mono.id scope="row" { (id) }
            td {
                @if let Some(name) = directory.name_of(&d.owner.user_id) {
                    (name) div.note.mono { (d.owner.user_id) }
                } @else { (d.owner.user_id) }
            }
            td { (chips(&d.owner.groups)) }
            td {
                // The directory's departments (with their names) for a user it knows.
                @match directory.departments_of(&d.owner.user_id) {
                    Some(ids) => (chips(&ids.iter().map(|id| directory.department_name(id).map_or_else(|| id.clone(), |n| format!("{n} ({id})"))).collect::<Vec<_>>())),
                    None => (chips(&d.owner.departments)),
                }
            }
            td.tags {
                (chips(&d.owner.tags))
                @if editable {
                    details.edit {
                        summary { (t.edit_tags) }
                        form.inline data-api=(format!("{api}/tags")) data-method="PUT" {
                            textarea name="tags" data-type="lines" rows="3"
                                aria-label=(t.tags_of.replace("{}", id)) {
                                (d.owner.tags.join("\n"))
                            }
                            input type="hidden" name="version" data-type="number" value=(d.version);
                            button type="submit" aria-label=(t.save_tags_of.replace("{}", id)) { (t.save_tags) }
                            output.message role="alert" {}
                        }
                    }
                }
            }
            td {
                (when(d.enrolled_at_ms))
                div.note { (t.enrolled_by) " " span.mono.id { (d.enrolled_by) } }
            }
            td {
                @if let Some(at) = d.revoked_at_ms {
                    span.state.revoked { (t.revoked) } div.note { (when(at)) }
                } @else {
                    span.state.approved { (t.active) }
                }
            }
            @if admin {
                td {
                    @if editable {
                        form.inline data-api=(format!("{api}/revoke")) data-method="POST" {
                            input type="hidden" name="version" data-type="number" value=(d.version);
                            button.danger type="submit" aria-label=(t.revoke_device.replace("{}", id)) { (t.revoke) }
                            output.message role="alert" {}
                        }
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
    fn ids_become_one_path_segment() {
        assert_eq!(segment("dev-alice_1.x~"), "dev-alice_1.x~");
        assert_eq!(segment("a/b c?d"), "a%2Fb%20c%3Fd");
        assert_eq!(segment("终端"), "%E7%BB%88%E7%AB%AF");
    }

    #[test]
    fn both_languages_name_every_text() {
        for t in [&ZH, &EN] {
            assert!(
                t.tags_of.contains("{}") && t.save_tags_of.contains("{}") && t.revoke_device.contains("{}")
            );
        }
    }
}
