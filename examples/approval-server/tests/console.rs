//! The web console in a real browser (headless Chromium through ChromeDriver), against the
//! server and the mock DingTalk over 127.0.0.1: an admin logs in, finds an employee's request
//! in Workflow Instance, sees the approver's decision in DingTalk arrive without reloading,
//! revokes it from the console, and the agent's uninstall is refused. Every page: no browser
//! errors, every control labelled, reachable by keyboard with a visible focus; a screenshot of
//! each under `target/console-screenshots/`.

use reqwest::Method;
use serde_json::json;
use support::browser::Browser;
use support::{credentialed_config, json, mock, start_with, Agent, ADMIN};

mod support;

const PASSWORD: &str = "correct horse battery staple";

/// The checks every page gets, and its screenshot.
async fn page_checks(browser: &Browser, name: &str) {
    browser.assert_no_errors(name).await;
    browser.assert_labelled(name).await;
    browser.assert_keyboard(name).await;
    browser.shot(name).await;
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
