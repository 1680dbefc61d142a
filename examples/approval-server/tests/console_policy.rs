//! Terminal Management → Anti-uninstallation Policy in a real browser (headless Chromium
//! through ChromeDriver), against the server and the mock DingTalk over 127.0.0.1: an admin
//! sees the policies in precedence order, creates one for contractors (the dialog's live
//! preview following what is typed, the change's preview naming carl's device gaining
//! protection) and carl's agent is protected at once; takes it-admin off the employees'
//! whitelist after its preview; deletes the contractors' policy after its preview shows carl
//! losing protection. A viewer sees the policies without any form. Every page: no browser
//! errors, every control labelled, reachable by keyboard with a visible focus; screenshots
//! under `target/console-screenshots/`.

#![expect(
    clippy::unwrap_used,
    reason = "the helpers outside the #[test] function fail the test on a broken browser session"
)]

use fantoccini::Locator;
use serde_json::json;
use support::browser::Browser;
use support::{credentialed_config, json, mock, start_with, Agent, ADMIN};

mod support;

const PASSWORD: &str = "correct horse battery staple";

/// Logs `name` in through the login page, which then goes to `next`.
async fn log_in(browser: &Browser, base: &str, name: &str, next: &str) {
    browser.goto(&format!("{base}{next}")).await;
    browser.wait_for_path("/console/login").await;
    browser.fill("#name", name).await;
    browser.fill("#password", PASSWORD).await;
    browser.find("button[type=submit]").await.click().await.unwrap();
    browser.wait_for_path(next).await;
}

async fn click(browser: &Browser, css: &str) {
    browser.find(css).await.click().await.unwrap();
}

/// Whether the page has an element `css` finds (not waiting).
/// The workflows the policy editor offers (the ids of its visible choices).
async fn offered(browser: &Browser) -> Vec<String> {
    let ids = browser
        .client
        .execute(
            "return Array.from(document.querySelectorAll('#approval-workflow option'))
                 .filter(o => o.value !== '' && !o.hidden).map(o => o.value);",
            vec![],
        )
        .await
        .unwrap();
    serde_json::from_value(ids).unwrap()
}

async fn has(browser: &Browser, css: &str) -> bool {
    browser.client.find(Locator::Css(css)).await.is_ok()
}

#[tokio::test]
async fn an_admin_creates_edits_and_deletes_policies_after_previewing_each_change() {
    let Some(browser) = Browser::start(
        "console_policy::an_admin_creates_edits_and_deletes_policies_after_previewing_each_change",
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
    let carl = Agent::new(&server, "tok-contractor");
    let it_admin = Agent::new(&server, "tok-admin");
    for (name, role) in [("ada", "admin"), ("vera", "viewer")] {
        let (status, body) = json(
            carl.http
                .post(format!("{base}/api/console/admins"))
                .bearer_auth(ADMIN)
                .json(&json!({"name": name, "role": role, "password": PASSWORD})),
        )
        .await;
        assert_eq!(status, 201, "{body}");
    }
    // A built-in workflow beside server.toml's DingTalk one.
    let (status, body) = json(
        carl.http
            .put(format!("{base}/api/console/workflows/wf-desk"))
            .bearer_auth(ADMIN)
            .json(&json!({"version": 0, "workflow": {"id": "wf-desk", "type": "builtin", "approvers": ["ada"]}})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        carl.check().await["effect"],
        "allow",
        "no policy for contractors yet"
    );
    assert_eq!(it_admin.check().await["effect"], "allow", "whitelisted");

    // The list: both policies, in precedence order (kiosks 20 before employees 10).
    log_in(&browser, &base, "ada", "/console/policies").await;
    browser.wait_for_text("h1", "Anti-uninstallation Policy").await;
    let table = browser.text("table.policies").await;
    let (kiosks, employees) = (table.find("Kiosks"), table.find("Employees"));
    assert!(
        kiosks.is_some() && employees.is_some() && kiosks < employees,
        "{table}"
    );
    assert!(
        table.contains("wf-dingtalk"),
        "where employees' requests go: {table}"
    );
    browser.page_checks("policy-list").await;

    // A new policy for contractors, first with mistakes: the API's problems are listed with
    // their paths, and the fields they name are marked.
    click(&browser, "a[href='/console/policies/new']").await;
    browser.wait_for_path("/console/policies/new").await;
    browser.wait_for_text("h1", "New policy").await;
    browser.fill("#policy-id", "contractors").await;
    browser.fill("#policy-name", "Contractors").await;
    browser.fill("#policy-priority", "5").await;
    click(&browser, "#switch-anti-uninstall").await;
    assert!(
        !browser
            .find("#approval-workflow")
            .await
            .is_enabled()
            .await
            .unwrap(),
        "no workflow to choose while filing is not allowed"
    );
    click(&browser, "#approval-filing").await;
    click(&browser, "#preview-change").await;
    browser.wait_for_text("#policy-errors", "put.scope").await;
    let problems = browser.text("#policy-errors").await;
    assert!(problems.contains("put.approval.workflow"), "{problems}");
    assert!(problems.contains("put.prompt.zh-CN"), "{problems}");
    assert!(
        has(&browser, "#scope-groups[aria-invalid=true]").await,
        "the field named is marked"
    );
    // (the problems, on their own: a screenshot of the page would show its top)
    let problems = browser.find("#policy-errors").await;
    std::fs::write(
        support::browser::screenshots().join("policy-problems.png"),
        problems.screenshot().await.unwrap(),
    )
    .unwrap();

    // Put right; the dialog's live preview follows the typing. Approval in DingTalk (the
    // default) offers only DingTalk workflows; built-in only the console's.
    browser.fill("#scope-groups", "contractors").await;
    assert_eq!(offered(&browser).await, ["wf-dingtalk"]);
    browser
        .find("#approval-kind")
        .await
        .select_by_value("builtin")
        .await
        .unwrap();
    assert_eq!(offered(&browser).await, ["wf-desk"]);
    click(&browser, "#approval-workflow option[value='wf-desk']").await;
    browser
        .find("#approval-kind")
        .await
        .select_by_value("dingtalk")
        .await
        .unwrap();
    assert_eq!(offered(&browser).await, ["wf-dingtalk"]);
    assert_eq!(
        browser
            .find("#approval-workflow")
            .await
            .prop("value")
            .await
            .unwrap()
            .as_deref(),
        Some(""),
        "a built-in workflow chosen before is dropped"
    );
    click(&browser, "#approval-workflow option[value='wf-dingtalk']").await;
    for (locale, title, content, primary, secondary) in [
        (
            "zh-CN",
            "卸载需要审批",
            "外包人员卸载需经审批。",
            "提交审批",
            "取消",
        ),
        (
            "en-US",
            "Contractors need approval",
            "Uninstalling needs approval.",
            "File for Approval",
            "Cancel",
        ),
    ] {
        browser.fill(&format!("#prompt-{locale}-title"), title).await;
        browser.wait_for_text(&format!("#preview-{locale}"), title).await;
        browser.fill(&format!("#prompt-{locale}-content"), content).await;
        browser
            .fill(&format!("#prompt-{locale}-primary_button"), primary)
            .await;
        browser
            .fill(&format!("#prompt-{locale}-secondary_button"), secondary)
            .await;
        browser
            .wait_for_text(&format!("#preview-{locale}"), primary)
            .await;
    }

    // The change's preview: carl's device gains protection; nothing is saved yet.
    click(&browser, "#preview-change").await;
    browser.wait_for_text("#change-preview", "dev-carl").await;
    let preview = browser.text("#change-preview").await;
    assert!(preview.contains("Gains protection"), "{preview}");
    assert!(preview.contains("Needs approval"), "{preview}");
    assert!(!preview.contains("dev-alice"), "alice is unaffected: {preview}");
    assert_eq!(browser.text("#policy-errors").await, "", "the problems are gone");
    browser.assert_no_errors("policy-preview").await;
    // (the preview, on its own: a screenshot of the page may show its top)
    let shown = browser.find("#change-preview").await;
    std::fs::write(
        support::browser::screenshots().join("policy-preview.png"),
        shown.screenshot().await.unwrap(),
    )
    .unwrap();
    assert_eq!(carl.check().await["effect"], "allow", "a preview saves nothing");

    // Saved: the list shows it, and carl's agent is protected at once.
    click(&browser, "#save").await;
    browser.wait_for_path("/console/policies").await;
    browser.wait_for_text("table.policies", "Contractors").await;
    let decision = carl.check().await;
    assert_eq!(decision["effect"], "require_approval", "{decision}");

    // Employees: it-admin off the whitelist; the preview names its device, then it is saved.
    click(&browser, "a[href='/console/policies/employees']").await;
    browser.wait_for_path("/console/policies/employees").await;
    browser.wait_for_text("#policy-whitelist", "it-admin").await;
    browser.page_checks("policy-editor").await;
    // The prompt's fields and their live preview, on their own.
    let prompt = browser.find("section[aria-labelledby=prompt]").await;
    std::fs::write(
        support::browser::screenshots().join("policy-editor-prompt.png"),
        prompt.screenshot().await.unwrap(),
    )
    .unwrap();
    browser.find("#policy-whitelist").await.clear().await.unwrap();
    click(&browser, "#preview-change").await;
    browser.wait_for_text("#change-preview", "dev-it-admin").await;
    let preview = browser.text("#change-preview").await;
    assert!(preview.contains("Gains protection"), "{preview}");
    assert!(preview.contains("whitelisted"), "before: {preview}");
    click(&browser, "#save").await;
    browser.wait_for_path("/console/policies").await;
    browser.wait_for_text("table.policies", "Contractors").await;
    let decision = it_admin.check().await;
    assert_eq!(decision["effect"], "require_approval", "{decision}");
    let (_, employees) = carl
        .console(reqwest::Method::GET, "/api/console/policies/employees")
        .await;
    assert_eq!(employees["whitelist"], json!([]), "{employees}");
    assert_eq!(employees["version"], 2, "{employees}");

    // Contractors deleted, after the preview shows carl losing protection.
    click(&browser, "a[href='/console/policies/contractors']").await;
    browser.wait_for_path("/console/policies/contractors").await;
    assert!(
        !browser
            .find("#confirm-delete")
            .await
            .is_displayed()
            .await
            .unwrap(),
        "no deleting before the preview"
    );
    click(&browser, "#preview-delete").await;
    browser.wait_for_text("#change-preview", "dev-carl").await;
    browser.wait_for_text("#change-preview", "Loses protection").await;
    browser.assert_no_errors("policy-delete-preview").await;
    click(&browser, "#confirm-delete").await;
    browser.wait_for_path("/console/policies").await;
    browser.wait_for_text("table.policies", "Employees").await;
    assert!(!browser.text("table.policies").await.contains("Contractors"));
    assert_eq!(carl.check().await["effect"], "allow", "deleted");

    // A viewer sees the policies, and no form.
    click(&browser, "[data-logout]").await;
    browser.wait_for_path("/console/login").await;
    log_in(&browser, &base, "vera", "/console/policies").await;
    browser.wait_for_text("table.policies", "Employees").await;
    assert!(!has(&browser, "a[href='/console/policies/new']").await);
    assert!(!has(&browser, "form").await, "no form on the list");
    click(&browser, "a[href='/console/policies/employees']").await;
    browser.wait_for_path("/console/policies/employees").await;
    browser.wait_for_text("main", "wf-dingtalk").await;
    assert!(!has(&browser, "form").await, "no form on the policy");
    assert!(browser.text("#preview-en-US").await.contains("File for Approval"));
    browser.page_checks("policy-viewer").await;
    click(&browser, "a.lang").await;
    browser.wait_for_text("main", "生效范围").await;
    browser.wait_for_text("nav", "防卸载策略").await;
    browser.assert_no_errors("policy-viewer-zh").await;
    browser.shot("policy-viewer-zh").await;
    browser.goto(&format!("{base}/console/policies/new")).await;
    browser.wait_for_text("h1", "您的角色不能查看此页。").await;

    browser.client.close().await.unwrap();
    server.shutdown().await.unwrap();
}
