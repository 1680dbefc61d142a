//! The client against wiremock on 127.0.0.1: every request pinned (method, path, query,
//! headers, JSON body) to what the official OpenAPI client sends (`openapi-wire.json`), every
//! stub answer parsed into the typed responses, and token, retry and error behaviour.

#![expect(
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests fail loudly on unexpected values"
)]

pub mod support;

use dingtalk_sdk::budget::CallBudget;
use dingtalk_sdk::client::DingTalkClient;
use dingtalk_sdk::event::InstanceResult;
use dingtalk_sdk::retry::RetryPolicy;
use dingtalk_sdk::token::{AccessToken, CachedTokenProvider, Credentials, TokenProvider};
use dingtalk_sdk::workflow::{
    ActionType, AddCommentRequest, Approver, ExecuteTaskRequest, FormComponentValue, InstanceStatus,
    ListProcessInstanceIdsRequest, StartProcessInstanceRequest, TargetSelectActioner, TaskAction, TaskStatus,
    TerminateProcessInstanceRequest,
};
use dingtalk_sdk::{Error, ErrorKind, ProcessCode, ProcessInstanceId, UserId};
use futures_util::StreamExt as _;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use wiremock::matchers::{body_json, header, method, path, query_param};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

const TOKEN: &str = "6d1b0f6a1e6b3c9a8d2f4e5a7b9c0d1e";
const PI: &str = "Rz3l5WmWQy2Kq0e8oX1bYA01741699876";
use support::{APP_KEY, APP_SECRET, PROCESS_CODE as CODE};

fn wire() -> Vec<Value> {
    support::vectors("openapi-wire.json")["calls"]
        .as_array()
        .unwrap()
        .clone()
}

fn call(name: &str) -> Value {
    wire()
        .into_iter()
        .find(|c| c["call"] == name)
        .unwrap_or_else(|| panic!("no vector {name}"))
}

fn client(server: &MockServer) -> DingTalkClient {
    client_with(server, CallBudget::default())
}

fn client_with(server: &MockServer, budget: CallBudget) -> DingTalkClient {
    DingTalkClient::builder(Credentials::new(APP_KEY, APP_SECRET))
        .api_base(server.uri())
        .budget(budget)
        .retry(RetryPolicy::new(
            4,
            Duration::from_millis(5),
            Duration::from_millis(50),
            Duration::from_millis(20),
        ))
        .timeout(Duration::from_millis(500))
        .build()
        .unwrap()
}

/// Mounts the token endpoint exactly as the vector's request, expecting `times` fetches.
async fn mount_token(server: &MockServer, times: impl Into<wiremock::Times>) {
    let v = call("oauth2.GetAccessToken");
    Mock::given(method("POST"))
        .and(path("/v1.0/oauth2/accessToken"))
        .and(body_json(&v["request"]["body"]))
        .respond_with(ResponseTemplate::new(200).set_body_json(&v["stub_answer"]["body"]))
        .expect(times)
        .mount(server)
        .await;
}

/// Mounts the vector's call: the request must match method, path, query, the token and accept
/// headers, and (for bodies) the content type and the JSON body.
async fn mount_vector(server: &MockServer, name: &str) -> Value {
    let v = call(name);
    let req = &v["request"];
    let mut mock = Mock::given(method(req["method"].as_str().unwrap()))
        .and(path(req["path"].as_str().unwrap()))
        .and(header("x-acs-dingtalk-access-token", TOKEN))
        .and(header("accept", "application/json"));
    for (k, val) in req["query"].as_object().unwrap() {
        mock = mock.and(query_param(k.as_str(), val.as_str().unwrap()));
    }
    if !req["body"].is_null() {
        mock = mock
            .and(header("content-type", "application/json; charset=utf-8"))
            .and(body_json(&req["body"]));
    }
    mock.respond_with(
        ResponseTemplate::new(v["stub_answer"]["status"].as_u64().unwrap() as u16)
            .set_body_json(&v["stub_answer"]["body"]),
    )
    .expect(1)
    .mount(server)
    .await;
    v
}

#[tokio::test]
async fn every_workflow_call_matches_the_official_client_on_the_wire() {
    let server = MockServer::start().await;
    mount_token(&server, 1).await;
    let c = client(&server);
    let wf = c.workflow();
    let pi = ProcessInstanceId::new(PI);

    mount_vector(&server, "workflow.StartProcessInstance").await;
    let request = StartProcessInstanceRequest::new(
        ProcessCode::new(CODE),
        UserId::new("manager4321"),
        vec![
            FormComponentValue::new("设备名称", "LAPTOP-7F3K2"),
            FormComponentValue::new("卸载原因", "重装系统").component_type("TextareaField"),
            FormComponentValue::new(r#"["开始时间","结束时间"]"#, r#"["2025-03-11","2025-03-12"]"#)
                .component_type("DDDateRangeField"),
        ],
    )
    .dept_id(-1)
    .microapp_agent_id(41_605_932)
    .approvers(vec![Approver::new(
        ActionType::None,
        vec![UserId::new("approver0001")],
    )])
    .cc(vec![UserId::new("secops01")], "FINISH");
    assert_eq!(wf.start_instance(&request).await.unwrap().as_str(), PI);

    server.reset().await;
    mount_vector(
        &server,
        "workflow.StartProcessInstance(targetSelectActioners, no approvers)",
    )
    .await;
    let request = StartProcessInstanceRequest::new(
        ProcessCode::new(CODE),
        UserId::new("manager4321"),
        vec![FormComponentValue::new("设备名称", "LAPTOP-7F3K2")],
    )
    .dept_id(123_456)
    .target_select_actioners(vec![TargetSelectActioner::new(
        "manual_1918_5cd3_5e19_6a98",
        vec![UserId::new("approver0001")],
    )]);
    assert_eq!(wf.start_instance(&request).await.unwrap().as_str(), PI);

    mount_vector(&server, "workflow.GetProcessInstance").await;
    let instance = wf.get_instance(&pi).await.unwrap();
    assert_eq!(instance.status, InstanceStatus::Completed);
    assert_eq!(instance.result, Some(InstanceResult::Agree));
    assert!(instance.is_approved());
    assert_eq!(instance.originator_dept_id.as_deref(), Some("-1"));
    assert_eq!(instance.tasks[0].task_id, 87_412_365_091);
    assert_eq!(instance.tasks[0].status, TaskStatus::Completed);
    assert_eq!(
        instance.operation_records[1].kind.as_deref(),
        Some("EXECUTE_TASK_NORMAL")
    );
    assert_eq!(instance.create_time.as_deref(), Some("2025-03-11T13:31Z"));

    mount_vector(&server, "workflow.TerminateProcessInstance").await;
    let terminate = TerminateProcessInstanceRequest::new(pi.clone())
        .system(true)
        .operator(UserId::new("manager4321"))
        .remark("员工撤回卸载申请");
    assert!(wf.terminate(&terminate).await.unwrap().result);

    mount_vector(&server, "workflow.ExecuteProcessInstance").await;
    let execute = ExecuteTaskRequest::new(
        pi.clone(),
        87_412_365_091,
        UserId::new("approver0001"),
        TaskAction::Agree,
    )
    .remark("同意");
    assert!(wf.execute_task(&execute).await.unwrap().success);

    mount_vector(&server, "workflow.ListProcessInstanceIds").await;
    let list = ListProcessInstanceIdsRequest::new(ProcessCode::new(CODE), 1_741_651_200_000)
        .end_time(1_741_737_600_000)
        .statuses(vec![InstanceStatus::Running, InstanceStatus::Completed])
        .user_ids(vec![UserId::new("manager4321")]);
    let page = wf.list_instance_ids_page(&list).await.unwrap();
    assert_eq!(
        (page.list.len(), page.next_token),
        (1, Some(10)),
        "string nextToken read as a number"
    );

    mount_vector(&server, "workflow.AddProcessInstanceComment").await;
    assert!(
        wf.add_comment(&AddCommentRequest::new(
            pi.clone(),
            "终端已完成卸载",
            UserId::new("manager4321")
        ))
        .await
        .unwrap()
        .result
    );

    mount_vector(&server, "workflow.QuerySchemaByProcessCode").await;
    let schema = wf.form_schema(&ProcessCode::new(CODE)).await.unwrap();
    assert!(schema.field("卸载原因").unwrap().props.required);
    assert_eq!(schema.field("设备名称").unwrap().component_name, "TextField");
}

#[tokio::test]
async fn vector_errors_become_typed_errors() {
    for (name, kind, code) in [
        (
            "error: business error (HTTP 400 processInstanceNotExist)",
            ErrorKind::Client,
            "processInstanceNotExist",
        ),
        (
            "error: QPS limit (HTTP 403 Forbidden.AccessDenied.QpsLimitForAppkeyAndApi)",
            ErrorKind::Throttling,
            "Forbidden.AccessDenied.QpsLimitForAppkeyAndApi",
        ),
        (
            "error: invalid token (HTTP 400 InvalidAuthentication)",
            ErrorKind::Auth,
            "InvalidAuthentication",
        ),
    ] {
        let server = MockServer::start().await;
        mount_token(&server, 1..).await;
        let v = call(name);
        Mock::given(method(v["request"]["method"].as_str().unwrap()))
            .and(path(v["request"]["path"].as_str().unwrap()))
            .respond_with(
                ResponseTemplate::new(v["stub_answer"]["status"].as_u64().unwrap() as u16)
                    .set_body_json(&v["stub_answer"]["body"]),
            )
            .mount(&server)
            .await;
        let c = DingTalkClient::builder(Credentials::new(APP_KEY, APP_SECRET))
            .api_base(server.uri())
            .retry(RetryPolicy::none())
            .build()
            .unwrap();
        let pi = ProcessInstanceId::new(PI);
        let err = match v["request"]["path"].as_str().unwrap() {
            "/v1.0/workflow/processInstances/terminate" => c
                .workflow()
                .terminate(&TerminateProcessInstanceRequest::new(pi))
                .await
                .unwrap_err(),
            "/v1.0/workflow/processInstances/execute" => c
                .workflow()
                .execute_task(&ExecuteTaskRequest::new(
                    pi,
                    1,
                    UserId::new("u"),
                    TaskAction::Refuse,
                ))
                .await
                .unwrap_err(),
            _ => c.workflow().get_instance(&pi).await.unwrap_err(),
        };
        assert_eq!(err.kind(), kind, "{name}: {err}");
        assert_eq!(err.code(), Some(code));
        assert_eq!(err.request_id(), v["stub_answer"]["body"]["requestid"].as_str());
        assert_eq!(
            err.http_status(),
            v["stub_answer"]["status"].as_u64().map(|s| s as u16)
        );
        assert!(!err.to_string().contains(APP_SECRET));
    }
}

#[tokio::test]
async fn tokens_are_reused_and_100_concurrent_calls_fetch_exactly_one() {
    let server = MockServer::start().await;
    mount_token(&server, 1).await;
    Mock::given(method("GET"))
        .and(path("/v1.0/workflow/processInstances"))
        .and(header("x-acs-dingtalk-access-token", TOKEN))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"success": "true", "result": {"status": "RUNNING"}}))
                .set_delay(Duration::from_millis(20)),
        )
        .expect(101)
        .mount(&server)
        .await;
    // 100 calls at once to one API: five times DingTalk's 20 QPS, so without pacing here.
    let c = client_with(&server, CallBudget::unlimited());
    let calls = (0..100).map(|_| {
        let c = c.clone();
        tokio::spawn(async move { c.workflow().get_instance(&ProcessInstanceId::new(PI)).await })
    });
    for result in futures_util::future::join_all(calls).await {
        assert_eq!(result.unwrap().unwrap().status, InstanceStatus::Running);
    }
    c.workflow()
        .get_instance(&ProcessInstanceId::new(PI))
        .await
        .unwrap();
    // `expect(1)` on the token endpoint is verified when the server drops.
}

#[tokio::test]
async fn invalid_authentication_refreshes_the_token_and_retries_once() {
    let server = MockServer::start().await;
    // First fetch returns an old token, the second a fresh one.
    let fetches = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = std::sync::Arc::clone(&fetches);
    Mock::given(method("POST"))
        .and(path("/v1.0/oauth2/accessToken"))
        .respond_with(move |_: &Request| {
            let n = counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let token = if n == 0 { "stale-token" } else { TOKEN };
            ResponseTemplate::new(200).set_body_json(json!({"accessToken": token, "expireIn": 7200}))
        })
        .expect(2)
        .mount(&server)
        .await;
    let bad = call("error: invalid token (HTTP 400 InvalidAuthentication)");
    Mock::given(method("GET"))
        .and(header("x-acs-dingtalk-access-token", "stale-token"))
        .respond_with(ResponseTemplate::new(400).set_body_json(&bad["stub_answer"]["body"]))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(header("x-acs-dingtalk-access-token", TOKEN))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"success": "true", "result": {"status": "RUNNING"}})),
        )
        .expect(1)
        .mount(&server)
        .await;
    let c = client(&server);
    assert_eq!(
        c.workflow()
            .get_instance(&ProcessInstanceId::new(PI))
            .await
            .unwrap()
            .status,
        InstanceStatus::Running
    );
}

#[tokio::test]
async fn an_auth_error_after_a_refresh_is_returned_not_looped() {
    let server = MockServer::start().await;
    mount_token(&server, 2).await;
    Mock::given(method("GET"))
        .respond_with(
            ResponseTemplate::new(401).set_body_json(json!({"code": "Unauthorized", "message": "no"})),
        )
        .expect(2)
        .mount(&server)
        .await;
    let err = client(&server)
        .workflow()
        .get_instance(&ProcessInstanceId::new(PI))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Auth);
}

#[tokio::test]
async fn rate_limits_back_off_and_retry_even_writes() {
    let server = MockServer::start().await;
    mount_token(&server, 1).await;
    let qps = call("error: QPS limit (HTTP 403 Forbidden.AccessDenied.QpsLimitForAppkeyAndApi)");
    Mock::given(method("POST"))
        .and(path("/v1.0/workflow/processInstances/execute"))
        .respond_with(ResponseTemplate::new(403).set_body_json(&qps["stub_answer"]["body"]))
        .up_to_n_times(2)
        .expect(2)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1.0/workflow/processInstances/execute"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"result": true, "success": true})))
        .expect(1)
        .mount(&server)
        .await;
    let started = std::time::Instant::now();
    let request = ExecuteTaskRequest::new(ProcessInstanceId::new(PI), 1, UserId::new("u"), TaskAction::Agree);
    assert!(
        client(&server)
            .workflow()
            .execute_task(&request)
            .await
            .unwrap()
            .result
    );
    assert!(
        started.elapsed() >= Duration::from_millis(40),
        "two throttle delays of >= 20 ms"
    );
}

#[tokio::test]
async fn server_errors_retry_reads_but_a_create_becomes_outcome_unknown() {
    let server = MockServer::start().await;
    mount_token(&server, 1).await;
    Mock::given(method("GET"))
        .respond_with(
            ResponseTemplate::new(500).set_body_json(json!({"code": "systemError", "message": "系统错误"})),
        )
        .up_to_n_times(2)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"success": "true", "result": {"status": "RUNNING"}})),
        )
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1.0/workflow/processInstances"))
        .respond_with(
            ResponseTemplate::new(500).set_body_json(json!({"code": "systemError", "message": "系统错误"})),
        )
        .expect(1)
        .mount(&server)
        .await;
    let c = client(&server);
    assert_eq!(
        c.workflow()
            .get_instance(&ProcessInstanceId::new(PI))
            .await
            .unwrap()
            .status,
        InstanceStatus::Running
    );
    let request =
        StartProcessInstanceRequest::new(ProcessCode::new(CODE), UserId::new("u"), vec![]).dept_id(-1);
    let err = c.workflow().start_instance(&request).await.unwrap_err();
    // The 500 that left the outcome unknown is kept as the source, code and all.
    match &err {
        Error::OutcomeUnknown {
            operation: "StartProcessInstance",
            source,
        } => {
            assert_eq!(
                (source.http_status(), source.code()),
                (Some(500), Some("systemError"))
            );
        }
        other => panic!("{other:?}"),
    }
    let source = std::error::Error::source(&err).map(ToString::to_string);
    assert!(source.is_some_and(|s| s.contains("systemError")), "{err:?}");
    assert!(!err.is_retryable());
}

#[tokio::test]
async fn a_start_instance_timeout_is_outcome_unknown_and_not_resent() {
    let server = MockServer::start().await;
    mount_token(&server, 1).await;
    Mock::given(method("POST"))
        .and(path("/v1.0/workflow/processInstances"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"instanceId": PI}))
                .set_delay(Duration::from_secs(2)),
        )
        .expect(1)
        .mount(&server)
        .await;
    let request =
        StartProcessInstanceRequest::new(ProcessCode::new(CODE), UserId::new("u"), vec![]).dept_id(-1);
    let err = client(&server)
        .workflow()
        .start_instance(&request)
        .await
        .unwrap_err();
    match &err {
        Error::OutcomeUnknown { source, .. } => assert!(
            matches!(**source, Error::Transport { sent: true, .. }),
            "{source:?}"
        ),
        other => panic!("{other:?}"),
    }
}

/// A token endpoint that accepts connections and never answers; counts the connections.
async fn stalled_endpoint() -> (String, Arc<AtomicUsize>, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&accepted);
    let server = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            held.push(socket);
        }
    });
    (url, accepted, server)
}

fn is_token_timeout(result: &Result<AccessToken, Error>) -> bool {
    match result {
        Err(Error::Transport {
            operation: "GetAccessToken",
            sent: true,
            source,
        }) => source
            .downcast_ref::<reqwest::Error>()
            .is_some_and(reqwest::Error::is_timeout),
        _ => false,
    }
}

#[tokio::test]
async fn a_stalled_token_endpoint_times_out_without_holding_the_lock() {
    let (url, accepted, server) = stalled_endpoint().await;
    let provider = CachedTokenProvider::new(reqwest::Client::new(), &url, Credentials::new("k", "s"))
        .timeout(Duration::from_millis(200))
        .retry(RetryPolicy::new(
            2,
            Duration::from_millis(10),
            Duration::from_millis(10),
            Duration::from_millis(10),
        ));
    // Two callers: the second waits on the lock while the first fetches, then fetches itself.
    // Before the fix both hung forever; the outer timeout turns that into a failure.
    let (first, second) = tokio::time::timeout(Duration::from_secs(5), async {
        tokio::join!(provider.token(), provider.token())
    })
    .await
    .expect("token() must give up within its timeout");
    assert!(is_token_timeout(&first), "{first:?}");
    assert!(is_token_timeout(&second), "{second:?}");
    assert!(first.unwrap_err().is_retryable());
    // Each caller's fetch went through the retry policy: two attempts each.
    assert_eq!(accepted.load(Ordering::SeqCst), 4);

    // The client's own timeout and retry policy reach its built-in token provider.
    let client = DingTalkClient::builder(Credentials::new("k", "s"))
        .api_base(&url)
        .retry(RetryPolicy::none())
        .timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let err = tokio::time::timeout(
        Duration::from_secs(5),
        client.workflow().get_instance(&ProcessInstanceId::new(PI)),
    )
    .await
    .expect("a call must give up when the token endpoint stalls")
    .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Transport {
                operation: "GetAccessToken",
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(accepted.load(Ordering::SeqCst), 5);
    server.abort();
}

#[tokio::test]
async fn malformed_responses_are_decode_errors_naming_the_json_path() {
    let server = MockServer::start().await;
    mount_token(&server, 1).await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"success": "true", "result": {"status": "RUNNING", "tasks": [{"taskId": "not-a-number", "status": "RUNNING"}]}}),
        ))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_string("<html>gateway</html>"))
        .mount(&server)
        .await;
    let c = client(&server);
    match c
        .workflow()
        .get_instance(&ProcessInstanceId::new(PI))
        .await
        .unwrap_err()
    {
        Error::Decode { path, operation, .. } => {
            assert_eq!(operation, "GetProcessInstance");
            assert_eq!(path, "result.tasks[0].taskId");
        }
        other => panic!("{other:?}"),
    }
    let err = c
        .workflow()
        .add_comment(&AddCommentRequest::new(
            ProcessInstanceId::new(PI),
            "t",
            UserId::new("u"),
        ))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Decode { .. }), "{err:?}");
}

#[tokio::test]
async fn listing_streams_every_page_and_stops_on_a_repeated_token() {
    let server = MockServer::start().await;
    mount_token(&server, 1).await;
    for (token, ids, next) in [
        (0, vec!["a", "b"], Some("2")),
        (2, vec!["c", "d"], Some("4")),
        (4, vec!["e"], None),
    ] {
        let mut result = json!({"list": ids});
        if let Some(n) = next {
            result["nextToken"] = json!(n);
        }
        Mock::given(method("POST"))
            .and(path("/v1.0/workflow/processes/instanceIds/query"))
            .and(wiremock::matchers::body_partial_json(json!({"nextToken": token})))
            .respond_with(
                ResponseTemplate::new(200).set_body_json(json!({"success": true, "result": result})),
            )
            .expect(1)
            .mount(&server)
            .await;
    }
    let c = client(&server);
    let ids: Vec<String> = c
        .workflow()
        .list_instance_ids(ListProcessInstanceIdsRequest::new(ProcessCode::new(CODE), 0).max_results(2))
        .map(|r| r.unwrap().into_string())
        .collect()
        .await;
    assert_eq!(ids, ["a", "b", "c", "d", "e"]);

    // A server that keeps answering the same token does not loop forever.
    let looping = MockServer::start().await;
    mount_token(&looping, 1).await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"success": true, "result": {"list": ["x"], "nextToken": "7"}})),
        )
        .expect(2)
        .mount(&looping)
        .await;
    let c = client(&looping);
    let n = c
        .workflow()
        .list_instance_ids(ListProcessInstanceIdsRequest::new(ProcessCode::new(CODE), 0))
        .count()
        .await;
    assert_eq!(n, 2);
}

#[test]
fn credentials_and_tokens_are_redacted_in_debug() {
    let debug = format!("{:?}", Credentials::new("dingappkey", "super-secret-value"));
    assert!(debug.contains("dingappkey") && !debug.contains("super-secret-value"));
    let client = DingTalkClient::builder(Credentials::new("dingappkey", "super-secret-value"))
        .build()
        .unwrap();
    assert!(!format!("{client:?}").contains("super-secret-value"));
    assert!(DingTalkClient::builder(Credentials::new("a", "b"))
        .api_base("ftp://x")
        .build()
        .is_err());
}
