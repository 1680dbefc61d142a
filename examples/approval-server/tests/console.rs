//! The web console in a real browser (headless Chromium through ChromeDriver), against the
//! server and the mock DingTalk over 127.0.0.1: an admin logs in, finds an employee's request
//! in Workflow Instance, sees the approver's decision in DingTalk arrive without reloading,
//! revokes it from the console, and the agent's uninstall is refused. Every page: no browser
//! errors, every control labelled, reachable by keyboard with a visible focus; a screenshot of
//! each under `target/console-screenshots/`.

#![expect(
    clippy::unwrap_used,
    reason = "a test fails loudly on the first unexpected value"
)]

use dingtalk_sdk::mock::{MockApp, MockFormField, MockProcess};
use reqwest::Method;
use serde_json::json;
use std::time::Duration;
use support::browser::Browser;
use support::{credentialed_config, json, mock, mock_builder, start_with, Agent, ADMIN};

mod support;

const PASSWORD: &str = "correct horse battery staple";

/// Creates the admin `ada` through the API, and logs the browser in as her.
async fn log_in(browser: &Browser, agent: &Agent) {
    let (status, body) = json(
        agent
            .http
            .post(format!("{}/api/console/admins", agent.base))
            .bearer_auth(ADMIN)
            .json(&json!({"name": "ada", "role": "admin", "password": PASSWORD})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    browser.goto(&format!("{}/console/login", agent.base)).await;
    browser.fill("#name", "ada").await;
    browser.fill("#password", PASSWORD).await;
    browser.find("button[type=submit]").await.click().await.unwrap();
    browser.wait_for_path("/console/requests").await;
}

/// The checks every page gets, and its screenshot.
async fn page_checks(browser: &Browser, name: &str) {
    browser.assert_no_errors(name).await;
    browser.assert_labelled(name).await;
    browser.shot(name).await;
    browser.assert_keyboard(name).await;
}

#[tokio::test]
async fn an_admin_follows_a_request_from_filing_to_revocation_in_the_browser() {
    let Some(browser) =
        Browser::start("console::an_admin_follows_a_request_from_filing_to_revocation_in_the_browser").await
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
    let alice = Agent::new(&server, "tok-alice");
    let (status, body) = json(
        alice
            .http
            .post(format!("{base}/api/console/admins"))
            .bearer_auth(ADMIN)
            .json(&json!({"name": "ada", "role": "admin", "password": PASSWORD})),
    )
    .await;
    assert_eq!(status, 201, "{body}");

    // Not signed in: the console sends the browser to the login, and back after it.
    browser.goto(&format!("{base}/console/requests")).await;
    browser.wait_for_path("/console/login").await;
    assert_eq!(
        browser.text("h1").await,
        "Log in",
        "the browser's language: English"
    );
    page_checks(&browser, "login").await;
    browser.fill("#name", "ada").await;
    browser.fill("#password", "a wrong password").await;
    browser.find("button[type=submit]").await.click().await.unwrap();
    browser
        .wait_for_text("output.message", "wrong name or password")
        .await;
    browser.fill("#password", PASSWORD).await;
    browser.find("button[type=submit]").await.click().await.unwrap();
    browser.wait_for_path("/console/requests").await;

    // An employee files; the list shows it, newest first, with the total.
    let id = alice.filed("reinstalling the OS").await;
    browser.goto(&format!("{base}/console/requests")).await;
    browser.wait_for_text("table", &id).await;
    browser.wait_for_text(".pager", "Total 1").await;
    assert!(browser.text("table").await.contains("reinstalling the OS"));
    page_checks(&browser, "workflow-instance").await;

    // Filtered by another device: none.
    browser
        .goto(&format!("{base}/console/requests?device=dev-nobody"))
        .await;
    browser.wait_for_text("main", "No request matches.").await;

    // The detail: pending in DingTalk; the approver agrees there, and the page shows it.
    browser.goto(&format!("{base}/console/requests/{id}")).await;
    browser.wait_for_text("#facts", "Pending").await;
    let instance = alice.external_id(&id).await;
    assert!(
        browser.text("main").await.contains(&instance),
        "the DingTalk instance id"
    );
    page_checks(&browser, "workflow-instance-detail").await;
    mock.approve(&instance, None, Some("ok")).unwrap();
    browser.wait_for_text("#facts", "Approved").await;
    browser.wait_for_text(".timeline", "DingTalk").await;
    let grant = alice.poll(&id, "approved").await["grant"].clone();

    // Revoked from the console, with a remark: the timeline names the admin; the agent's
    // grant is refused.
    browser.fill("#remark", "device reassigned").await;
    browser.find("button[value=revoke]").await.click().await.unwrap();
    browser.wait_for_text("#facts", "Revoked").await;
    browser.wait_for_text(".timeline", "device reassigned").await;
    assert!(browser.text(".timeline").await.contains("ada"));
    browser.assert_no_errors("after revoking").await;
    page_checks(&browser, "workflow-instance-revoked").await;
    let (status, refused) = alice
        .post("/api/agent/grants/consume", &json!({"grant": grant}))
        .await;
    assert_eq!(
        (status, refused["error"].as_str()),
        (409, Some("grant_revoked")),
        "{refused}"
    );

    // The language switch: the same page in Chinese, kept for the next page.
    browser.find("a.lang").await.click().await.unwrap();
    browser.wait_for_text("#facts", "已撤销").await;
    browser.goto(&format!("{base}/console/requests")).await;
    browser.wait_for_text("h1", "审批实例").await;

    // Logging out ends the session: the console asks for the login again.
    browser.find("[data-logout]").await.click().await.unwrap();
    browser.wait_for_path("/console/login").await;
    let (status, _) = alice.console(Method::GET, "/api/console/requests").await;
    assert_eq!(status, 200, "the admin token is not a session: unaffected");
    browser.goto(&format!("{base}/console/requests")).await;
    browser.wait_for_path("/console/login").await;
    browser.client.close().await.unwrap();
    server.shutdown().await.unwrap();
}

/// A second DingTalk app and its uninstall form, for a workflow made in the browser.
const APP2: &str = "dingsecondapp";
const SECRET2: &str = "second-app-secret-9f8e7d6c5b4a";
const TOKEN2: &str = "secondsignaturetoken";
const AES2: &str = "Zx8cV7bN6mQ5wE4rT3yU2iO1pA0sD9fG8hJ7kL6zXcV";
const CODE2: &str = "PROC-SECOND";

#[tokio::test]
async fn an_admin_creates_a_dingtalk_workflow_from_its_live_form_in_the_browser() {
    let Some(browser) =
        Browser::start("console::an_admin_creates_a_dingtalk_workflow_from_its_live_form_in_the_browser")
            .await
    else {
        return;
    };
    let mock = mock_builder()
        .app(MockApp::new(APP2, SECRET2))
        .process(MockProcess::new(
            CODE2,
            "客户端卸载",
            vec![
                MockFormField::new("设备", "TextField", false),
                MockFormField::new("原因说明", "TextareaField", true),
            ],
            vec!["approver2".into()],
        ))
        .terminate_grace(Duration::ZERO)
        .start()
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let server = start_with(&mock, credentialed_config(&mock, &dir.path().join("wf.sqlite"))).await;
    let base = format!("http://{}", server.addr);
    let alice = Agent::new(&server, "tok-alice");
    log_in(&browser, &alice).await;

    // The workflow of server.toml: verified against the mock, its Request URL to copy.
    browser.goto(&format!("{base}/console/workflows")).await;
    browser.wait_for_text("table", "Verified").await;
    let url = server.request_url("wf-dingtalk").unwrap().to_owned();
    assert!(browser.text("table").await.contains(&url), "the Request URL");
    browser.find("button[data-copy]").await.click().await.unwrap();
    page_checks(&browser, "workflow-management").await;

    // A new DingTalk workflow on the second app, its mapping chosen from the live form.
    browser.goto(&format!("{base}/console/workflows/new")).await;
    browser
        .find("#w-type")
        .await
        .select_by_value("builtin")
        .await
        .unwrap();
    assert!(
        !browser.find("#w-client-id").await.is_displayed().await.unwrap(),
        "built-in: no app"
    );
    browser
        .find("#w-type")
        .await
        .select_by_value("dingtalk")
        .await
        .unwrap();
    browser.fill("#w-id", "wf-second").await;
    browser.fill("#w-name", "Uninstall (second app)").await;
    browser.fill("#w-client-id", APP2).await;
    browser.fill("#w-client-secret", SECRET2).await;
    browser.fill("#w-token", TOKEN2).await;
    browser.fill("#w-aes-key", AES2).await;
    browser.find("details summary").await.click().await.unwrap();
    browser.fill("#w-api-base", &mock.base_url()).await;
    browser.fill("#w-process-code", CODE2).await;
    browser
        .find("button[data-live-form]")
        .await
        .click()
        .await
        .unwrap();
    browser
        .wait_for_text("output.live-form", "客户端卸载: 设备, 原因说明 *")
        .await;
    let offered = browser
        .client
        .execute(
            "return Array.from(document.querySelectorAll('#form-labels option')).map(o => o.value);",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(
        offered,
        json!(["设备", "原因说明"]),
        "the live form's text fields"
    );
    browser.fill("#w-f-device", "设备").await;
    browser.fill("#w-f-reason", "原因说明").await;
    page_checks(&browser, "workflow-editor").await;
    // The page was loaded again by the keyboard check: the editor is filled anew.
    browser.fill("#w-id", "wf-second").await;
    browser.fill("#w-name", "Uninstall (second app)").await;
    browser.fill("#w-client-id", APP2).await;
    browser.fill("#w-client-secret", "a-mistyped-secret").await;
    browser.fill("#w-token", TOKEN2).await;
    browser.fill("#w-aes-key", AES2).await;
    browser.find("details summary").await.click().await.unwrap();
    browser.fill("#w-api-base", &mock.base_url()).await;
    browser.fill("#w-process-code", CODE2).await;
    browser.fill("#w-f-device", "设备").await;
    browser.fill("#w-f-reason", "原因说明").await;
    // A mistyped secret: refused when saved, with DingTalk's reason.
    browser
        .find("form.editor button[type=submit]")
        .await
        .click()
        .await
        .unwrap();
    browser
        .wait_for_text("form.editor output.message", "invalidClientIdOrSecret")
        .await;
    browser.fill("#w-client-secret", SECRET2).await;
    browser
        .find("form.editor button[type=submit]")
        .await
        .click()
        .await
        .unwrap();
    browser.wait_for_path("/console/workflows").await;
    browser.wait_for_text("table", "Uninstall (second app)").await;
    let (status, saved) = alice
        .console(Method::GET, "/api/console/workflows/wf-second")
        .await;
    assert_eq!(status, 200, "{saved}");
    assert_eq!(saved["verification"]["status"], "verified", "{saved}");
    assert_eq!(
        saved["fields"],
        json!({"device": "设备", "reason": "原因说明"}),
        "{saved}"
    );
    let second_url = saved["request_url"].as_str().unwrap().to_owned();
    assert!(browser.text("table").await.contains(&second_url));

    // What the admin does next in DingTalk's developer console: the Request URL is checked.
    let app = MockApp::new(APP2, SECRET2)
        .events(TOKEN2, AES2)
        .request_url(second_url.clone());
    assert!(mock.register_app(app).await.unwrap().ok, "check_url round trip");

    // Editing keeps the secrets (write-only, left empty) and the Request URL.
    browser.goto(&format!("{base}/console/workflows/wf-second")).await;
    browser.fill("#w-name", "Uninstall, second app").await;
    browser
        .find("form.editor button[type=submit]")
        .await
        .click()
        .await
        .unwrap();
    browser.wait_for_path("/console/workflows").await;
    browser.wait_for_text("table", "Uninstall, second app").await;
    let (_, saved) = alice
        .console(Method::GET, "/api/console/workflows/wf-second")
        .await;
    assert_eq!(
        saved["verification"]["status"], "verified",
        "the stored secret kept: {saved}"
    );
    assert_eq!(
        saved["request_url"],
        json!(second_url),
        "the same Request URL: {saved}"
    );
    assert!(!browser.text("main").await.contains(SECRET2), "never shown");
    browser.assert_no_errors("after saving").await;
    browser.client.close().await.unwrap();
    server.shutdown().await.unwrap();
}
