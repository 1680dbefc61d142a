//! Our client against our mock DingTalk over real HTTP on 127.0.0.1: every workflow call, and
//! injected faults observed by the client (retry, backoff, typed errors, token refresh, an
//! ambiguous create reconciled by listing).

#![expect(clippy::unwrap_used, reason = "tests fail loudly on unexpected values")]

pub mod support;

use support::{APP_KEY, APP_SECRET};

use dingtalk_sdk::client::DingTalkClient;
use dingtalk_sdk::event::InstanceResult;
use dingtalk_sdk::mock::{MockApp, MockDingTalk, MockFaults, MockFormField, MockProcess};
use dingtalk_sdk::retry::RetryPolicy;
use dingtalk_sdk::token::Credentials;
use dingtalk_sdk::workflow::{
    AddCommentRequest, ExecuteTaskRequest, FormComponentValue, InstanceStatus, ListProcessInstanceIdsRequest,
    StartProcessInstanceRequest, TaskAction, TerminateProcessInstanceRequest,
};
use dingtalk_sdk::{Error, ErrorKind, ProcessCode, UserId};
use futures_util::TryStreamExt as _;
use std::time::Duration;

const CODE: &str = "PROC-UNINSTALL";

async fn setup() -> (MockDingTalk, DingTalkClient) {
    let mock = MockDingTalk::builder()
        .app(MockApp::new(APP_KEY, APP_SECRET))
        .process(MockProcess::new(
            CODE,
            "App uninstall",
            vec![
                MockFormField::new("Device", "TextField", true),
                MockFormField::new("Reason", "TextareaField", true),
            ],
            vec!["approver1".into(), "approver2".into()],
        ))
        .terminate_grace(Duration::ZERO)
        .start()
        .await
        .unwrap();
    let client = DingTalkClient::builder(Credentials::new(APP_KEY, APP_SECRET))
        .api_base(mock.base_url())
        .retry(RetryPolicy::new(
            4,
            Duration::from_millis(5),
            Duration::from_millis(50),
            Duration::from_millis(20),
        ))
        .build()
        .unwrap();
    (mock, client)
}

fn request(originator: &str) -> StartProcessInstanceRequest {
    StartProcessInstanceRequest::new(
        ProcessCode::new(CODE),
        UserId::new(originator),
        vec![
            FormComponentValue::new("Device", "LAPTOP-1"),
            FormComponentValue::new("Reason", "重装系统").component_type("TextareaField"),
        ],
    )
    .dept_id(-1)
}

#[tokio::test]
async fn every_workflow_call_works_against_the_mock() {
    let (mock, client) = setup().await;
    let wf = client.workflow();
    let schema = wf.form_schema(&ProcessCode::new(CODE)).await.unwrap();
    assert!(schema.field("Reason").unwrap().props.required);

    let id = wf.start_instance(&request("alice")).await.unwrap();
    let running = wf.get_instance(&id).await.unwrap();
    assert_eq!(running.status, InstanceStatus::Running);
    let approver = UserId::new("approver2");
    let task = running
        .running_task_of(&approver)
        .expect("OR node: both approvers have a running task");
    let execute = ExecuteTaskRequest::new(id.clone(), task.task_id, approver, TaskAction::Agree).remark("ok");
    assert!(wf.execute_task(&execute).await.unwrap().result);
    let done = wf.get_instance(&id).await.unwrap();
    assert!(done.is_approved());
    assert_eq!(done.result, Some(InstanceResult::Agree));

    let other = wf.start_instance(&request("bob")).await.unwrap();
    assert!(
        wf.add_comment(&AddCommentRequest::new(
            other.clone(),
            "please hurry",
            UserId::new("bob")
        ))
        .await
        .unwrap()
        .result
    );
    let terminate = TerminateProcessInstanceRequest::new(other.clone())
        .operator(UserId::new("bob"))
        .remark("not needed");
    assert!(wf.terminate(&terminate).await.unwrap().result);
    assert_eq!(
        wf.get_instance(&other).await.unwrap().status,
        InstanceStatus::Terminated
    );
    // Terminating a finished instance is a typed business error.
    let err = wf
        .terminate(&TerminateProcessInstanceRequest::new(id.clone()))
        .await
        .unwrap_err();
    assert_eq!(
        (err.kind(), err.code()),
        (ErrorKind::Client, Some("processInstanceFinished"))
    );

    for _ in 0..3 {
        wf.start_instance(&request("carol")).await.unwrap();
    }
    let all: Vec<_> = wf
        .list_instance_ids(ListProcessInstanceIdsRequest::new(ProcessCode::new(CODE), 0).max_results(2))
        .try_collect()
        .await
        .unwrap();
    assert_eq!(all.len(), 5);
    let carol: Vec<_> = wf
        .list_instance_ids(
            ListProcessInstanceIdsRequest::new(ProcessCode::new(CODE), 0)
                .user_ids(vec![UserId::new("carol")]),
        )
        .try_collect()
        .await
        .unwrap();
    assert_eq!(carol.len(), 3);

    // The mock validated every request body the client sent: none was rejected.
    assert!(
        mock.journal()
            .iter()
            .all(|j| j.status == 200 || j.path.ends_with("terminate")),
        "{:?}",
        mock.journal()
    );
}

#[tokio::test]
async fn injected_faults_are_retried_or_typed() {
    let (mock, client) = setup().await;
    let wf = client.workflow();
    let id = wf.start_instance(&request("alice")).await.unwrap();

    mock.set_faults(MockFaults {
        rate_limit_next: 2,
        ..MockFaults::default()
    });
    assert_eq!(
        wf.get_instance(&id).await.unwrap().status,
        InstanceStatus::Running
    );
    mock.set_faults(MockFaults {
        server_error_next: 1,
        ..MockFaults::default()
    });
    assert_eq!(
        wf.get_instance(&id).await.unwrap().status,
        InstanceStatus::Running
    );
    let statuses: Vec<u16> = mock
        .journal()
        .iter()
        .filter(|j| j.method == "GET")
        .map(|j| j.status)
        .collect();
    assert_eq!(statuses, [403, 403, 200, 500, 200]);

    // More rate limits than the retry budget: a typed throttling error.
    mock.set_faults(MockFaults {
        rate_limit_next: 10,
        ..MockFaults::default()
    });
    let err = wf.get_instance(&id).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Throttling);
    assert!(err.is_retryable());
    mock.set_faults(MockFaults::default());

    // Revoked tokens are refreshed transparently.
    mock.revoke_tokens();
    assert_eq!(
        wf.get_instance(&id).await.unwrap().status,
        InstanceStatus::Running
    );
    let token_fetches = mock
        .journal()
        .iter()
        .filter(|j| j.path == "/v1.0/oauth2/accessToken")
        .count();
    assert_eq!(token_fetches, 2);

    // An ambiguous create: the client does not resend; listing by originator finds it.
    mock.set_faults(MockFaults {
        create_then_fail_next: 1,
        ..MockFaults::default()
    });
    let err = wf.start_instance(&request("dave")).await.unwrap_err();
    assert!(matches!(err, Error::OutcomeUnknown { .. }), "{err:?}");
    let found: Vec<_> = wf
        .list_instance_ids(
            ListProcessInstanceIdsRequest::new(ProcessCode::new(CODE), 0).user_ids(vec![UserId::new("dave")]),
        )
        .try_collect()
        .await
        .unwrap();
    assert_eq!(found.len(), 1, "created exactly once");

    // Latency beyond the client's timeout: a transport error for reads.
    mock.set_faults(MockFaults {
        latency_ms: 400,
        ..MockFaults::default()
    });
    let impatient = DingTalkClient::builder(Credentials::new(APP_KEY, APP_SECRET))
        .api_base(mock.base_url())
        .timeout(Duration::from_millis(100))
        .retry(RetryPolicy::none())
        .build()
        .unwrap();
    mock.set_faults(MockFaults::default());
    impatient.workflow().get_instance(&id).await.unwrap();
    mock.set_faults(MockFaults {
        latency_ms: 400,
        ..MockFaults::default()
    });
    let err = impatient.workflow().get_instance(&id).await.unwrap_err();
    assert!(matches!(err, Error::Transport { .. }), "{err:?}");
}
