//! Each DingTalk workflow is checked against DingTalk (the mock, over real HTTP on 127.0.0.1)
//! when the server starts: the three mistakes a new user made (a wrong client secret, a
//! misspelt form label, a mapping without the reason) stop the start with every problem and
//! its path, instead of failing the first employee's filing; a workflow DingTalk cannot be
//! asked about starts unverified, is shown so in the console, and is verified once DingTalk
//! answers.

#![expect(
    clippy::unwrap_used,
    reason = "the helpers outside #[test] functions fail the test on a broken set-up or response"
)]

use dingtalk_sdk::mock::{MockApp, MockFaults};
use sase_approval_server::config::{DingTalkConfig, WorkflowConfig};
use sase_approval_server::Error;
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use support::{
    credentialed_config, mock_builder, start_with, Agent, AES_KEY, APP, CODE, SECRET, TOKEN, WORKFLOW,
};

mod support;

/// Another app of the org, whose secret the admin mistyped.
const OTHER_APP: &str = "dingotherapp";

fn app(client_id: &str, secret: &str, api_base: &str) -> DingTalkConfig {
    serde_json::from_value(json!({
        "client_id": client_id, "client_secret": secret, "token": TOKEN, "aes_key": AES_KEY,
        "api_base": api_base,
    }))
    .unwrap()
}

#[tokio::test]
async fn a_wrong_secret_a_misspelt_label_and_an_unmapped_reason_stop_the_start_with_every_problem() {
    let mock = mock_builder()
        .app(MockApp::new(OTHER_APP, "the-real-secret"))
        .start()
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut config = credentialed_config(&mock, &dir.path().join("checks.sqlite"));
    let api = mock.base_url();
    config.workflows.extend([
        WorkflowConfig::new("wf-secret").dingtalk(
            app(OTHER_APP, "a-mistyped-secret", &api),
            CODE,
            [("device", "设备名称"), ("reason", "卸载原因")],
        ),
        WorkflowConfig::new("wf-label").dingtalk(
            app(APP, SECRET, &api),
            CODE,
            [("device", "设备名称"), ("reason", "卸载原由")],
        ),
        WorkflowConfig::new("wf-reason").dingtalk(app(APP, SECRET, &api), CODE, [("device", "设备名称")]),
    ]);
    let err = match sase_approval_server::start(config).await {
        Ok(_) => panic!("started with three broken workflows"),
        Err(err) => err,
    };
    let Error::Workflows(problems) = &err else {
        panic!("not the workflows' problems: {err}");
    };
    let found: Vec<(&str, &str)> = problems
        .problems
        .iter()
        .map(|p| (p.path.as_str(), p.reason.as_str()))
        .collect();
    let paths: Vec<&str> = found.iter().map(|(path, _)| *path).collect();
    assert_eq!(
        paths,
        [
            "workflows.wf-secret.dingtalk.client_secret",
            "workflows.wf-label.fields.reason",
            "workflows.wf-label.fields",
            "workflows.wf-reason.fields.reason",
        ],
        "{err}"
    );
    assert!(found[0].1.contains("invalidClientIdOrSecret"), "{}", found[0].1);
    assert!(
        found[1].1.contains("no field labelled `卸载原由`"),
        "{}",
        found[1].1
    );
    assert!(found[2].1.contains("required field `卸载原因`"), "{}", found[2].1);
    assert!(found[3].1.contains("`reason` must be mapped"), "{}", found[3].1);
    let message = err.to_string();
    assert!(
        message.starts_with("4 problem(s) with the workflows:"),
        "{message}"
    );
    for path in paths {
        assert!(message.contains(path), "{message}");
    }
    assert!(
        !message.contains("a-mistyped-secret"),
        "no secret in the message: {message}"
    );
    assert!(
        mock.instance_ids().is_empty(),
        "nothing was filed: the start stopped"
    );
}

#[tokio::test]
async fn a_workflow_dingtalk_cannot_be_asked_about_starts_unverified_and_is_verified_once_it_answers() {
    let mock = mock_builder().start().await.unwrap();
    // DingTalk fails every workflow call (the SDK's retries included) while the server starts.
    mock.set_faults(MockFaults {
        server_error_next: 1_000,
        ..MockFaults::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let mut config = credentialed_config(&mock, &dir.path().join("unverified.sqlite"));
    config.workflow_check_every_secs = 1;
    let server = start_with(&mock, config).await;
    let admin = Agent::new(&server, support::ADMIN);
    let verification = || async {
        let (status, workflows) = admin
            .console(reqwest::Method::GET, "/api/console/workflows")
            .await;
        assert_eq!(status, 200, "{workflows}");
        let workflow = workflows
            .as_array()
            .unwrap()
            .iter()
            .find(|w| w["id"] == WORKFLOW)
            .unwrap()
            .clone();
        assert!(!workflow.to_string().contains(SECRET), "{workflow}");
        workflow["verification"].clone()
    };
    let unverified = verification().await;
    assert_eq!(unverified["status"], "unverified", "{unverified}");
    assert!(
        unverified["reason"]
            .as_str()
            .unwrap()
            .contains("could not be asked"),
        "{unverified}"
    );
    assert!(unverified["checked_at_ms"].as_i64().unwrap() > 0);

    mock.set_faults(MockFaults::default());
    let since = Instant::now();
    let verified: Value = loop {
        let now = verification().await;
        if now["status"] == "verified" || since.elapsed() > Duration::from_secs(15) {
            break now;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        verified["status"], "verified",
        "re-checked within 15 s: {verified}"
    );
    server.shutdown().await.unwrap();
}
