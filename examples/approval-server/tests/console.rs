//! The web console in a real browser (headless Chromium through ChromeDriver), against the
//! server and the mock DingTalk over 127.0.0.1: the seed walked end to end (a DingTalk
//! workflow made from the live form, a policy previewed and saved, a device enrolled, the
//! agent simulator filing, the decision in DingTalk shown without a reload, a revocation from
//! the console refusing the agent's uninstall); Workflow Instance's filters and the language
//! switch; the workflow editor's live form and write-only secrets. Every page: no browser
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
use support::browser::{screenshots, Browser};
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
    browser.page_checks("login").await;
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
    browser.page_checks("workflow-instance").await;

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
    browser.page_checks("workflow-instance-detail").await;
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
    browser.page_checks("workflow-instance-revoked").await;
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
/// Its logoff form.
const CODE3: &str = "PROC-SECOND-LOGOFF";

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
        .process(MockProcess::new(
            CODE3,
            "客户端退出登录",
            vec![MockFormField::new("退出原因", "TextareaField", true)],
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
    browser.page_checks("workflow-management").await;

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
    browser.fill("#w-process-code-u", CODE2).await;
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
            "return Array.from(document.querySelectorAll('#form-labels-u option')).map(o => o.value);",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(
        offered,
        json!(["设备", "原因说明"]),
        "the live form's text fields"
    );
    browser.fill("#w-f-u-device", "设备").await;
    browser.fill("#w-f-u-reason", "原因说明").await;
    browser.page_checks("workflow-editor").await;
    // The page was loaded again by the keyboard check: the editor is filled anew.
    browser.fill("#w-id", "wf-second").await;
    browser.fill("#w-name", "Uninstall (second app)").await;
    browser.fill("#w-client-id", APP2).await;
    browser.fill("#w-client-secret", "a-mistyped-secret").await;
    browser.fill("#w-token", TOKEN2).await;
    browser.fill("#w-aes-key", AES2).await;
    browser.find("details summary").await.click().await.unwrap();
    browser.fill("#w-api-base", &mock.base_url()).await;
    browser.fill("#w-process-code-u", CODE2).await;
    browser.fill("#w-f-u-device", "设备").await;
    browser.fill("#w-f-u-reason", "原因说明").await;
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
    // "Add a form" twice, the first added removed again: the logoff form, mapped from its
    // live form, is the one that remains.
    click(&browser, "button[data-add-mapping]").await;
    click(&browser, "button[data-add-mapping]").await;
    assert_eq!(count(&browser, ".mappings section.mapping").await, 3);
    click(
        &browser,
        ".mappings section.mapping:nth-child(2) button[data-remove-mapping]",
    )
    .await;
    assert_eq!(count(&browser, ".mappings section.mapping").await, 2);
    let added = ".mappings section.mapping:last-child";
    browser
        .assert_labelled("workflow-editor-with-a-second-form")
        .await;
    assert_eq!(
        browser
            .find(&format!("{added} select"))
            .await
            .prop("value")
            .await
            .unwrap()
            .as_deref(),
        Some("app_logoff")
    );
    browser.fill(&format!("{added} [data-process-code]"), CODE3).await;
    click(&browser, &format!("{added} button[data-live-form]")).await;
    browser
        .wait_for_text(&format!("{added} output.live-form"), "客户端退出登录: 退出原因 *")
        .await;
    browser
        .fill(&format!("{added} input[name$='.fields.reason']"), "退出原因")
        .await;
    // The forms part, looked at: the page's own screenshot shows its top.
    let forms = browser.find(".mappings").await.screenshot().await.unwrap();
    std::fs::write(screenshots().join("workflow-editor-two-forms.png"), forms).unwrap();
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
        saved["mappings"][1],
        json!({"template": "app_logoff", "process_code": CODE3, "fields": {"reason": "退出原因"}}),
        "{saved}"
    );
    assert_eq!(saved["mappings"].as_array().map(Vec::len), Some(2), "{saved}");
    // Shown again in the editor.
    browser.goto(&format!("{base}/console/workflows/wf-second")).await;
    assert_eq!(
        browser
            .find(added)
            .await
            .find(fantoccini::Locator::Css("[data-process-code]"))
            .await
            .unwrap()
            .prop("value")
            .await
            .unwrap()
            .as_deref(),
        Some(CODE3)
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

/// Clicks the element `css` finds.
async fn click(browser: &Browser, css: &str) {
    browser.find(css).await.click().await.unwrap();
}

/// How many elements `css` finds.
async fn count(browser: &Browser, css: &str) -> usize {
    browser
        .client
        .find_all(fantoccini::Locator::Css(css))
        .await
        .unwrap()
        .len()
}

/// The seed's steps, as the issue lists them, in the browser but for what happens in DingTalk
/// (the mock) and on the laptop (the agent simulator).
#[tokio::test]
async fn the_seed_is_walked_end_to_end_in_the_browser() {
    use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _};
    let Some(browser) = Browser::start("console::the_seed_is_walked_end_to_end_in_the_browser").await else {
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
    let server = start_with(&mock, credentialed_config(&mock, &dir.path().join("seed.sqlite"))).await;
    let base = format!("http://{}", server.addr);
    let alice = Agent::new(&server, "tok-alice");

    // 1. Log in.
    log_in(&browser, &alice).await;

    // 2. A DingTalk workflow from the mock's form, verified when saved.
    browser.goto(&format!("{base}/console/workflows/new")).await;
    browser.fill("#w-id", "wf-hr").await;
    browser.fill("#w-name", "HR uninstall").await;
    browser.fill("#w-client-id", APP2).await;
    browser.fill("#w-client-secret", SECRET2).await;
    browser.fill("#w-token", TOKEN2).await;
    browser.fill("#w-aes-key", AES2).await;
    click(&browser, "details summary").await;
    browser.fill("#w-api-base", &mock.base_url()).await;
    browser.fill("#w-process-code-u", CODE2).await;
    click(&browser, "button[data-live-form]").await;
    browser.wait_for_text("output.live-form", "原因说明").await;
    browser.fill("#w-f-u-device", "设备").await;
    browser.fill("#w-f-u-reason", "原因说明").await;
    click(&browser, "form.editor button[type=submit]").await;
    browser.wait_for_path("/console/workflows").await;
    browser.wait_for_text("table", "HR uninstall").await;
    let (_, saved) = alice.console(Method::GET, "/api/console/workflows/wf-hr").await;
    assert_eq!(saved["verification"]["status"], "verified", "{saved}");

    // 3. DingTalk's developer console saves the Request URL: check_url reaches the server.
    let request_url = saved["request_url"].as_str().unwrap().to_owned();
    assert!(
        browser.text("table").await.contains(&request_url),
        "shown to copy"
    );
    let app = MockApp::new(APP2, SECRET2)
        .events(TOKEN2, AES2)
        .request_url(request_url);
    assert!(mock.register_app(app).await.unwrap().ok, "check_url round trip");

    // 4. A device enrolled: the code made in the console, shown once; the agent enrolls.
    browser.goto(&format!("{base}/console/devices")).await;
    browser.fill("#c-user", "hana").await;
    browser.fill("#c-groups", "hr").await;
    click(&browser, "form[data-then=show] button[type=submit]").await;
    browser.wait_for_text("output.shown", "").await;
    let mut code = String::new();
    for _ in 0..100 {
        code = browser
            .text("output.shown")
            .await
            .split_whitespace()
            .last()
            .unwrap_or_default()
            .to_owned();
        if !code.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, enrolled) = json(
        alice
            .http
            .post(format!("{base}/api/agent/enroll"))
            .json(&json!({"code": code, "device_id": "LAPTOP-HANA"})),
    )
    .await;
    assert_eq!(status, 201, "{enrolled}");

    // 5. The policy: HR's devices file for approval on wf-hr; the preview shows hana's device
    //    gaining protection before it is saved.
    browser.goto(&format!("{base}/console/policies/new")).await;
    browser.fill("#policy-id", "hr").await;
    browser.fill("#policy-name", "HR").await;
    browser.fill("#policy-priority", "30").await;
    click(&browser, "#switch-anti-uninstall").await;
    browser.fill("#scope-groups", "hr").await;
    click(&browser, "#approval-filing").await;
    click(&browser, "#approval-workflow option[value='wf-hr']").await;
    for (locale, title, content, primary, secondary) in [
        (
            "zh-CN",
            "卸载需要审批",
            "请填写卸载原因并提交审批。",
            "提交审批",
            "取消",
        ),
        (
            "en-US",
            "Uninstalling needs approval",
            "Give a reason and file for approval.",
            "File for Approval",
            "Cancel",
        ),
    ] {
        browser.fill(&format!("#prompt-{locale}-title"), title).await;
        browser.fill(&format!("#prompt-{locale}-content"), content).await;
        browser
            .fill(&format!("#prompt-{locale}-primary_button"), primary)
            .await;
        browser
            .fill(&format!("#prompt-{locale}-secondary_button"), secondary)
            .await;
    }
    click(&browser, "#preview-change").await;
    browser.wait_for_text("#change-preview", "LAPTOP-HANA").await;
    assert!(browser.text("#change-preview").await.contains("Gains protection"));
    click(&browser, "#save").await;
    browser.wait_for_path("/console/policies").await;

    // 6. The agent simulator (the laptop) files, and waits for the approver.
    let token = enrolled["device_token"].as_str().unwrap();
    let mut simulator = tokio::process::Command::new(env!("CARGO_BIN_EXE_agent-simulator"))
        .args([
            "--server",
            &base,
            "--token",
            token,
            "--user",
            "hana",
            "--device",
            "LAPTOP-HANA",
        ])
        .args([
            "--locale",
            "en-US",
            "--reason",
            "handing the laptop back",
            "--wait-secs",
            "60",
            "--confirm",
        ])
        .arg("--used-grants")
        .arg(dir.path().join("used.json"))
        .args(
            enrolled["grant_keys"]
                .as_array()
                .unwrap()
                .iter()
                .flat_map(|k| ["--grant-key", k.as_str().unwrap()]),
        )
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(simulator.stdout.take().unwrap()).lines();
    let mut said = String::new();
    while !said.contains("Filed request") {
        let line = lines.next_line().await.unwrap().expect("the simulator files");
        said.push_str(&line);
        said.push('\n');
    }
    assert!(
        said.contains("Uninstalling needs approval"),
        "the policy's prompt: {said}"
    );
    let id = support::filed_request_id(&said);

    // 7. The instance page; the approver agrees in DingTalk; the page shows it, no reload.
    browser.goto(&format!("{base}/console/requests/{id}")).await;
    browser.wait_for_text("#facts", "Pending").await;
    browser
        .client
        .execute("window.seedMarker = 'same page';", vec![])
        .await
        .unwrap();
    let instance = alice.external_id(&id).await;
    mock.approve(&instance, None, Some("fine")).unwrap();
    browser.wait_for_text("#facts", "Approved").await;
    let same = browser
        .client
        .execute("return window.seedMarker;", vec![])
        .await
        .unwrap();
    assert_eq!(same, json!("same page"), "shown without a reload");
    while !said.contains("Press Enter") {
        let line = lines
            .next_line()
            .await
            .unwrap()
            .expect("the simulator has its grant");
        said.push_str(&line);
        said.push('\n');
    }

    // 8. Revoked from the console; 9. the agent's uninstall is refused.
    browser.fill("#remark", "laptop stays with IT").await;
    click(&browser, "button[value=revoke]").await;
    browser.wait_for_text("#facts", "Revoked").await;
    let mut stdin = simulator.stdin.take().unwrap();
    stdin.write_all(b"\n").await.unwrap();
    drop(stdin);
    while let Some(line) = lines.next_line().await.unwrap() {
        said.push_str(&line);
        said.push('\n');
    }
    assert!(simulator.wait().await.unwrap().success(), "{said}");
    assert!(said.contains("the grant is refused"), "{said}");
    assert!(said.contains("revoked"), "{said}");
    assert!(!said.contains("uninstall may proceed"), "{said}");
    browser.assert_no_errors("the seed").await;
    browser.shot("seed-revoked").await;
    browser.client.close().await.unwrap();
    server.shutdown().await.unwrap();
}
