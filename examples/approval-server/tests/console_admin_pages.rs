//! The console's Devices, Audit log and Admins pages in a real browser (headless Chromium
//! through ChromeDriver), against the server and the mock DingTalk over 127.0.0.1: an admin
//! makes an enrollment code (shown once), an agent enrolls with it, the admin tags and revokes
//! the device (its token is refused), reads the chain's status and the entries of what was
//! done, filtered, and creates, changes and deletes an approver; a viewer sees the devices
//! without their forms and neither the audit log nor the admins. Every page: no browser
//! errors, every control labelled, reachable by keyboard with a visible focus; a screenshot of
//! each under `target/console-screenshots/`.

#![expect(
    clippy::unwrap_used,
    clippy::panic,
    reason = "the helpers' failures are the test's: they fail loudly"
)]

use fantoccini::Locator;
use reqwest::Method;
use serde_json::{json, Value};
use std::time::Duration;
use support::browser::Browser;
use support::{credentialed_config, json, mock, start_with, ADMIN};

mod support;

const PASSWORD: &str = "correct horse battery staple";

/// Creates the admin `name` with `role` through the API (the configured admin token).
async fn create_admin(http: &reqwest::Client, base: &str, name: &str, role: &str) {
    let (status, body) = json(
        http.post(format!("{base}/api/console/admins"))
            .bearer_auth(ADMIN)
            .json(&json!({"name": name, "role": role, "password": PASSWORD})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
}

/// Logs `name` in through the login page.
async fn log_in(browser: &Browser, base: &str, name: &str) {
    browser.goto(&format!("{base}/console/login")).await;
    browser.fill("#name", name).await;
    browser.fill("#password", PASSWORD).await;
    browser.find("button[type=submit]").await.click().await.unwrap();
    browser.wait_for_path("/console/requests").await;
}

/// A console API call with the admin token.
async fn console(http: &reqwest::Client, base: &str, method: Method, path: &str) -> (u16, Value) {
    json(http.request(method, format!("{base}{path}")).bearer_auth(ADMIN)).await
}

/// The text of the element `css` finds now, if any (`None` while the script redraws the page
/// as well: the element found may be replaced before its text is read).
async fn text_now(browser: &Browser, css: &str) -> Option<String> {
    let element = browser.client.find(Locator::Css(css)).await.ok()?;
    element.text().await.ok()
}

/// Waits up to 15 s until the element `css` finds has some text; that text.
async fn wait_for_any_text(browser: &Browser, css: &str) -> String {
    for _ in 0..150 {
        if let Some(text) = text_now(browser, css).await.filter(|t| !t.trim().is_empty()) {
            return text;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("`{css}` stayed empty");
}

/// Waits up to 15 s until the element `css` finds no longer contains `text`.
async fn wait_without_text(browser: &Browser, css: &str, text: &str) {
    for _ in 0..150 {
        if text_now(browser, css).await.is_some_and(|t| !t.contains(text)) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("`{css}` still contains `{text}`");
}

/// Waits up to 10 s until the page's query contains `part`.
async fn wait_for_query(browser: &Browser, part: &str) {
    for _ in 0..100 {
        let url = browser.client.current_url().await.unwrap();
        if url.query().is_some_and(|q| q.contains(part)) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the query never had `{part}`");
}

/// The attribute `attr` of the element `css` finds now, if any.
async fn attr_now(browser: &Browser, css: &str, attr: &str) -> Option<String> {
    let element = browser.client.find(Locator::Css(css)).await.ok()?;
    element.attr(attr).await.ok().flatten()
}

/// Waits up to 10 s until the attribute `attr` of the element `css` finds is no longer `old`:
/// the page was drawn again after a change (its forms name the new version).
async fn wait_for_redraw(browser: &Browser, css: &str, attr: &str, old: &str) {
    for _ in 0..100 {
        if attr_now(browser, css, attr).await.is_some_and(|v| v != old) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("`{css}` kept {attr} = {old:?}");
}

/// How many elements `css` finds.
async fn count(browser: &Browser, css: &str) -> usize {
    browser.client.find_all(Locator::Css(css)).await.unwrap().len()
}

/// `POST /api/agent/uninstall-check` with a device token: the status.
async fn check_with(http: &reqwest::Client, base: &str, token: &str) -> u16 {
    let (status, _) = json(
        http.post(format!("{base}/api/agent/uninstall-check"))
            .bearer_auth(token)
            .json(&json!({"locale": "en-US"})),
    )
    .await;
    status
}

#[tokio::test]
async fn an_admin_enrolls_tags_and_revokes_a_device_audits_it_and_manages_admins_in_the_browser() {
    let Some(browser) = Browser::start(
        "console_admin_pages::an_admin_enrolls_tags_and_revokes_a_device_audits_it_and_manages_admins_in_the_browser",
    )
    .await
    else {
        return;
    };
    let mock = mock().await;
    let dir = tempfile::tempdir().unwrap();
    let server = start_with(
        &mock,
        credentialed_config(&mock, &dir.path().join("console.sqlite")),
    )
    .await;
    let base = format!("http://{}", server.addr);
    let http = reqwest::Client::new();
    create_admin(&http, &base, "ada", "admin").await;
    log_in(&browser, &base, "ada").await;

    // Devices: an enrollment code for bob, shown once in the form.
    browser.goto(&format!("{base}/console/devices")).await;
    browser.wait_for_text("h1", "Devices").await;
    browser.wait_for_text("table.devices", "dev-alice").await;
    browser.fill("#c-user", "bob").await;
    browser.fill("#c-groups", "employees").await;
    browser.fill("#c-tags", "laptop").await;
    browser
        .find("form[data-then=show] button[type=submit]")
        .await
        .click()
        .await
        .unwrap();
    let shown = wait_for_any_text(&browser, "output.shown").await;
    let code = shown.split_whitespace().last().unwrap().to_owned();
    assert!(
        code.len() == 32 && code.chars().all(|c| c.is_ascii_alphanumeric()),
        "the code: {shown:?}"
    );
    browser.assert_no_errors("devices, code shown").await;
    browser.shot("devices-code").await;

    // The agent enrolls with it; the page lists the device, and the code is used.
    let (status, enrolled) = json(
        http.post(format!("{base}/api/agent/enroll"))
            .json(&json!({"code": code, "device_id": "dev-bob"})),
    )
    .await;
    assert_eq!(status, 201, "{enrolled}");
    let token = enrolled["device_token"].as_str().unwrap().to_owned();
    assert_eq!(check_with(&http, &base, &token).await, 200);
    browser.goto(&format!("{base}/console/devices")).await;
    browser.wait_for_text("tr[data-device=dev-bob]", "bob").await;
    assert!(browser.text("tr[data-device=dev-bob]").await.contains("laptop"));
    browser.wait_for_text("main", "No unused code.").await;

    // Its tags, set in the browser.
    let row = "tr[data-device=dev-bob]";
    browser
        .find(&format!("{row} details.edit summary"))
        .await
        .click()
        .await
        .unwrap();
    browser
        .fill(&format!("{row} textarea[name=tags]"), "laptop\nfinance")
        .await;
    browser.shot("devices-tags").await;
    browser
        .find(&format!("{row} form[data-method=PUT] button"))
        .await
        .click()
        .await
        .unwrap();
    browser.wait_for_text(&format!("{row} td.tags"), "finance").await;
    let (_, device) = console(&http, &base, Method::GET, "/api/console/devices/dev-bob").await;
    assert_eq!(device["tags"], json!(["laptop", "finance"]), "{device}");

    // Revoked in the browser: the page says so, and the agent's token is refused.
    browser
        .find(&format!("{row} button.danger"))
        .await
        .click()
        .await
        .unwrap();
    browser.wait_for_text(row, "Revoked").await;
    assert_eq!(
        count(&browser, &format!("{row} form")).await,
        0,
        "nothing left to change"
    );
    assert_eq!(check_with(&http, &base, &token).await, 401);
    browser.page_checks("devices").await;

    // The audit log: the chain is intact, and what ada just did is there, filtered.
    browser.goto(&format!("{base}/console/audit")).await;
    browser.wait_for_text("h1", "Audit log").await;
    browser.wait_for_text("section.chain", "intact").await;
    browser.wait_for_text("table.audit", "device.revoke").await;
    browser.page_checks("audit-log").await;
    browser.fill("#f-actor", "ada").await;
    browser.fill("#f-action", "device.").await;
    browser
        .find("form.filters button[type=submit]")
        .await
        .click()
        .await
        .unwrap();
    wait_for_query(&browser, "action=device.").await;
    let table = browser.text("table.audit").await;
    assert!(
        table.contains("device.revoke") && table.contains("device.tags"),
        "{table}"
    );
    assert!(
        !table.contains("device.enroll"),
        "by the device, not ada: {table}"
    );
    assert!(
        !table.contains("enrollment_code.create"),
        "another action: {table}"
    );
    assert_eq!(
        browser
            .find("#f-action")
            .await
            .prop("value")
            .await
            .unwrap()
            .as_deref(),
        Some("device.")
    );
    browser.assert_no_errors("audit log, filtered").await;

    // Admins: an approver created, made a viewer, given a new password, deleted.
    browser.goto(&format!("{base}/console/admins")).await;
    browser.wait_for_text("h1", "Admins").await;
    assert_eq!(
        count(&browser, "tr[data-admin=ada] form.delete").await,
        0,
        "not oneself"
    );
    browser.fill("#a-name", "brook").await;
    browser
        .find("#a-role")
        .await
        .select_by_value("approver")
        .await
        .unwrap();
    browser.fill("#a-password", PASSWORD).await;
    browser
        .find("form[data-api='/api/console/admins'] button[type=submit]")
        .await
        .click()
        .await
        .unwrap();
    browser.wait_for_text("table.admins", "brook").await;
    let (_, brook) = console(&http, &base, Method::GET, "/api/console/admins/brook").await;
    assert_eq!(brook["role"], "approver", "{brook}");
    browser.page_checks("admins").await;

    let row = "tr[data-admin=brook]";
    let delete = format!("{row} form.delete");
    let version = attr_now(&browser, &delete, "data-api").await.unwrap();
    browser
        .find(&format!("{row} select[name=role]"))
        .await
        .select_by_value("viewer")
        .await
        .unwrap();
    browser
        .find(&format!("{row} form.role button"))
        .await
        .click()
        .await
        .unwrap();
    let mut role = Value::Null;
    for _ in 0..100 {
        role = console(&http, &base, Method::GET, "/api/console/admins/brook")
            .await
            .1["role"]
            .clone();
        if role == "viewer" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(role, "viewer");
    wait_for_redraw(&browser, &delete, "data-api", &version).await;
    let version = attr_now(&browser, &delete, "data-api").await.unwrap();

    // The page was drawn again: the password form names the new version.
    let new_password = "another horse battery staple";
    browser
        .fill(&format!("{row} input[name=password]"), new_password)
        .await;
    browser
        .find(&format!("{row} form.password button"))
        .await
        .click()
        .await
        .unwrap();
    let mut logged_in = 0;
    for _ in 0..100 {
        (logged_in, _) = json(
            http.post(format!("{base}/api/console/login"))
                .json(&json!({"name": "brook", "password": new_password})),
        )
        .await;
        if logged_in == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(logged_in, 200, "the new password works");
    wait_for_redraw(&browser, &delete, "data-api", &version).await;

    browser
        .find(&format!("{row} form.delete button"))
        .await
        .click()
        .await
        .unwrap();
    wait_without_text(&browser, "table.admins", "brook").await;
    let (status, _) = console(&http, &base, Method::GET, "/api/console/admins/brook").await;
    assert_eq!(status, 404);
    browser.assert_no_errors("admins, after the changes").await;

    // The audit log has those too, and is still intact.
    browser
        .goto(&format!("{base}/console/audit?actor=ada&action=admin."))
        .await;
    browser.wait_for_text("section.chain", "intact").await;
    let table = browser.text("table.audit").await;
    for action in ["admin.create", "admin.update", "admin.delete"] {
        assert!(table.contains(action), "{action}: {table}");
    }
    browser.client.close().await.unwrap();
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_viewer_sees_the_devices_without_their_forms_and_neither_the_audit_log_nor_the_admins() {
    let Some(browser) = Browser::start(
        "console_admin_pages::a_viewer_sees_the_devices_without_their_forms_and_neither_the_audit_log_nor_the_admins",
    )
    .await
    else {
        return;
    };
    let mock = mock().await;
    let dir = tempfile::tempdir().unwrap();
    let server = start_with(
        &mock,
        credentialed_config(&mock, &dir.path().join("console.sqlite")),
    )
    .await;
    let base = format!("http://{}", server.addr);
    let http = reqwest::Client::new();
    create_admin(&http, &base, "vera", "viewer").await;
    let (status, _) = json(
        http.post(format!("{base}/api/console/enrollment-codes"))
            .bearer_auth(ADMIN)
            .json(&json!({"user_id": "bob"})),
    )
    .await;
    assert_eq!(status, 201);
    log_in(&browser, &base, "vera").await;

    // The devices and the unused code, and no form to change them.
    browser.goto(&format!("{base}/console/devices")).await;
    browser.wait_for_text("table.devices", "dev-alice").await;
    browser.wait_for_text("table.codes", "bob").await;
    assert_eq!(count(&browser, "main form").await, 0, "no form for a viewer");
    assert_eq!(count(&browser, "main output.shown").await, 0);
    let nav = browser.text("nav.side").await;
    assert!(
        nav.contains("Devices") && !nav.contains("Admins") && !nav.contains("Audit log"),
        "{nav}"
    );
    browser.page_checks("devices-viewer").await;

    // The admins and the audit log: the page saying the role cannot see them.
    for page in ["admins", "audit"] {
        browser.goto(&format!("{base}/console/{page}")).await;
        browser
            .wait_for_text("h1", "Your role cannot see this page.")
            .await;
        assert_eq!(count(&browser, "main table").await, 0, "{page}: nothing of it");
        // The browser logs the page's own 403, and nothing else.
        let errors: Vec<Value> = browser
            .log()
            .await
            .into_iter()
            .filter(|m| m["level"] == "SEVERE")
            .filter(|m| {
                let message = m["message"].as_str().unwrap_or_default();
                !(m["source"] == "network"
                    && message.contains(&format!("/console/{page} "))
                    && message.contains("403"))
            })
            .collect();
        assert!(errors.is_empty(), "{page}: {errors:#?}");
    }
    // The devices in Chinese.
    browser.goto(&format!("{base}/console/devices")).await;
    browser.find("a.lang").await.click().await.unwrap();
    browser.wait_for_text("h1", "设备").await;
    browser.wait_for_text("table.devices", "正常").await;
    browser.wait_for_text("main", "未使用的注册码").await;
    browser.assert_no_errors("devices, in Chinese").await;
    browser.shot("devices-viewer-zh").await;
    browser.client.close().await.unwrap();
    server.shutdown().await.unwrap();
}
