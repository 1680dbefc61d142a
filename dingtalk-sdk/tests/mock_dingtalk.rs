//! The mock DingTalk over real HTTP on 127.0.0.1: token endpoint, workflow endpoints with
//! validation, instance state, the control API, encrypted HTTP-push delivery verified by our
//! own callback route, Stream delivery to our Stream client, fault injection and the journal.

#![expect(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "tests fail loudly on unexpected values"
)]

pub mod support;

use dingtalk_sdk::event::{Event, InstanceChangeType, TaskChangeType};
use dingtalk_sdk::mock::{Channel, MockApp, MockDingTalk, MockFaults, MockFormField, MockProcess};
use serde_json::{json, Value};
use std::time::Duration;

use support::receivers::{receiver, stream_receiver, Events};
use support::{AES_KEY, APP_KEY as APP, APP_SECRET as SECRET, PROCESS_CODE as CODE, TOKEN, WAIT};

fn process() -> MockProcess {
    MockProcess::new(
        CODE,
        "安全客户端卸载申请",
        vec![
            MockFormField::new("设备名称", "TextField", true),
            MockFormField::new("卸载原因", "TextareaField", true),
            MockFormField::new(r#"["开始时间","结束时间"]"#, "DDDateRangeField", false),
        ],
        vec!["approver0001".into()],
    )
}

struct Env {
    mock: MockDingTalk,
    events: Events,
    http: reqwest::Client,
    token: String,
}

async fn env(grace: Duration) -> Env {
    let (url, events) = receiver().await;
    let mock = MockDingTalk::builder()
        .app(MockApp::new(APP, SECRET).events(TOKEN, AES_KEY).request_url(url))
        .process(process())
        .terminate_grace(grace)
        .start()
        .await
        .unwrap();
    let http = reqwest::Client::new();
    let token = http
        .post(format!("{}/v1.0/oauth2/accessToken", mock.base_url()))
        .json(&json!({"appKey": APP, "appSecret": SECRET}))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap()["accessToken"]
        .as_str()
        .unwrap()
        .to_owned();
    Env {
        mock,
        events,
        http,
        token,
    }
}

impl Env {
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.mock.base_url()))
            .header("x-acs-dingtalk-access-token", &self.token);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let res = req.send().await.unwrap();
        (res.status().as_u16(), res.json().await.unwrap_or(Value::Null))
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        self.call(reqwest::Method::GET, path, None).await
    }

    /// The official client's StartProcessInstance body from openapi-wire.json.
    async fn start_vector_instance(&self) -> String {
        let wire: Value = serde_json::from_str(
            &std::fs::read_to_string(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/vectors/openapi-wire.json"
            ))
            .unwrap(),
        )
        .unwrap();
        let body = wire["calls"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["call"] == "workflow.StartProcessInstance")
            .unwrap()["request"]["body"]
            .clone();
        let (status, answer) = self.post("/v1.0/workflow/processInstances", body).await;
        assert_eq!(status, 200, "{answer}");
        answer["instanceId"].as_str().unwrap().to_owned()
    }

    async fn instance(&self, id: &str) -> Value {
        let (status, body) = self
            .get(&format!("/v1.0/workflow/processInstances?processInstanceId={id}"))
            .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["success"], "true");
        body["result"].clone()
    }

    async fn wait_events(&self, n: usize) -> Vec<Event> {
        assert!(
            self.mock
                .wait_for(WAIT, |_| self.events.lock().unwrap().len() >= n)
                .await,
            "expected {n} events, got {:?}",
            self.events.lock().unwrap()
        );
        self.events.lock().unwrap().clone()
    }
}

#[tokio::test]
async fn token_endpoint_checks_credentials_and_reuses_valid_tokens() {
    let e = env(Duration::ZERO).await;
    let url = format!("{}/v1.0/oauth2/accessToken", e.mock.base_url());
    let bad = e
        .http
        .post(&url)
        .json(&json!({"appKey": APP, "appSecret": "nope"}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let body: Value = bad.json().await.unwrap();
    assert_eq!(body["code"], "invalidClientIdOrSecret");
    assert!(body["requestid"].is_string());
    let again: Value = e
        .http
        .post(&url)
        .json(&json!({"appKey": APP, "appSecret": SECRET}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(again["accessToken"], e.token.as_str());
    assert_eq!(again["expireIn"], 7200);
}

#[tokio::test]
async fn check_url_then_a_full_approval_reaches_the_request_url_encrypted() {
    let e = env(Duration::ZERO).await;
    let check = e.wait_events(1).await;
    assert!(
        matches!(check[0], Event::CheckUrl(_)),
        "check_url on registration"
    );
    let id = e.start_vector_instance().await;
    let running = e.instance(&id).await;
    assert_eq!(running["status"], "RUNNING");
    assert_eq!(running["originatorUserId"], "manager4321");
    assert_eq!(running["originatorDeptId"], "-1");
    let task = &running["tasks"][0];
    assert_eq!(
        (task["userId"].as_str(), task["status"].as_str()),
        (Some("approver0001"), Some("RUNNING"))
    );
    assert!(task["taskId"].as_i64().unwrap() > i64::from(u32::MAX));
    assert!(running["createTime"].as_str().unwrap().ends_with('Z'));

    // The approver agrees through the HTTP control API.
    let res = e
        .http
        .post(format!("{}/__mock/instances/{id}/approve", e.mock.base_url()))
        .json(&json!({"remark": "同意"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let events = e.wait_events(5).await;
    let kinds: Vec<String> = events[1..]
        .iter()
        .map(|ev| match ev {
            Event::InstanceChange(c) => format!("instance:{}", c.change.as_ref().unwrap()),
            Event::TaskChange(t) => format!("task:{}", t.change.as_ref().unwrap()),
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(
        kinds,
        ["instance:start", "task:start", "task:finish", "instance:finish"]
    );
    let Event::InstanceChange(done) = &events[4] else {
        panic!()
    };
    assert!(done.is_approved());
    assert_eq!(done.process_instance_id.as_ref().unwrap().as_str(), id);
    assert!(done.meta.event_id.is_some() && done.meta.corp_id.is_some());
    let completed = e.instance(&id).await;
    assert_eq!(
        (completed["status"].as_str(), completed["result"].as_str()),
        (Some("COMPLETED"), Some("agree"))
    );
    assert_eq!(completed["tasks"][0]["result"], "AGREE");
    assert_eq!(completed["operationRecords"][1]["type"], "EXECUTE_TASK_NORMAL");
    assert!(
        e.mock
            .deliveries()
            .iter()
            .all(|d| d.ok && d.channel == Channel::Http),
        "{:?}",
        e.mock.deliveries()
    );
}

#[tokio::test]
async fn execute_refuse_terminate_and_comment_follow_dingtalk_rules() {
    let e = env(Duration::from_secs(15)).await;
    let id = e.start_vector_instance().await;
    // Terminate within 15 s of creation is refused, as on DingTalk.
    let (status, body) = e
        .post(
            "/v1.0/workflow/processInstances/terminate",
            json!({"processInstanceId": id, "isSystem": true}),
        )
        .await;
    assert_eq!((status, body["code"].as_str()), (400, Some("terminateTooEarly")));
    let task_id = e.instance(&id).await["tasks"][0]["taskId"].as_i64().unwrap();
    let wrong =
        json!({"processInstanceId": id, "taskId": task_id, "actionerUserId": "someone", "result": "agree"});
    assert_eq!(
        e.post("/v1.0/workflow/processInstances/execute", wrong).await.0,
        400
    );
    let (status, body) = e
        .post(
            "/v1.0/workflow/processInstances/comments",
            json!({"processInstanceId": id, "text": "请补充", "commentUserId": "approver0001"}),
        )
        .await;
    assert_eq!((status, &body), (200, &json!({"result": true, "success": true})));
    let refuse = json!({"processInstanceId": id, "taskId": task_id, "actionerUserId": "approver0001", "result": "refuse", "remark": "不同意"});
    assert_eq!(
        e.post("/v1.0/workflow/processInstances/execute", refuse.clone())
            .await
            .0,
        200
    );
    let done = e.instance(&id).await;
    assert_eq!(
        (done["status"].as_str(), done["result"].as_str()),
        (Some("COMPLETED"), Some("refuse"))
    );
    // A finished instance can be neither executed nor terminated again.
    assert_eq!(
        e.post("/v1.0/workflow/processInstances/execute", refuse).await.0,
        400
    );
    assert!(e.mock.terminate(&id, None).is_err());
    let events = e.wait_events(6).await;
    assert!(events
        .iter()
        .any(|ev| matches!(ev, Event::TaskChange(t) if t.change == Some(TaskChangeType::Comment))));
    assert!(events
        .iter()
        .any(|ev| matches!(ev, Event::InstanceChange(c) if c.is_refused())));

    // The originator revokes another instance in the app: TERMINATED and a terminate event.
    let other = e.start_vector_instance().await;
    e.mock.terminate(&other, Some("不需要了")).unwrap();
    assert_eq!(e.instance(&other).await["status"], "TERMINATED");
    let events = e.wait_events(9).await;
    assert!(events.iter().any(|ev| matches!(ev, Event::InstanceChange(c)
        if c.change == Some(InstanceChangeType::Terminate) && c.result.is_none())));
}

#[tokio::test]
async fn start_instance_validates_like_dingtalk() {
    let e = env(Duration::ZERO).await;
    let base = json!({"processCode": CODE, "originatorUserId": "u1", "deptId": -1,
        "formComponentValues": [{"name": "设备名称", "value": "LAPTOP"}, {"name": "卸载原因", "value": "重装"}]});
    let (status, _) = e.post("/v1.0/workflow/processInstances", base.clone()).await;
    assert_eq!(status, 200, "default approvers from the process");
    let cases = [
        (json!({"name": "不存在", "value": "x"}), "illegalComponent"),
        (json!({"name": "设备名称", "value": 42}), "invalidParameter"),
    ];
    for (extra, code) in cases {
        let mut body = base.clone();
        body["formComponentValues"].as_array_mut().unwrap().push(extra);
        let (status, answer) = e.post("/v1.0/workflow/processInstances", body).await;
        assert_eq!((status, answer["code"].as_str()), (400, Some(code)), "{answer}");
    }
    let mut missing = base.clone();
    missing["formComponentValues"].as_array_mut().unwrap().pop();
    let (status, answer) = e.post("/v1.0/workflow/processInstances", missing).await;
    assert_eq!(status, 400);
    assert!(answer["message"].as_str().unwrap().contains("卸载原因"));
    let mut no_dept = base.clone();
    no_dept.as_object_mut().unwrap().remove("deptId");
    assert_eq!(e.post("/v1.0/workflow/processInstances", no_dept).await.0, 400);
    let mut unknown = base.clone();
    unknown["processCode"] = json!("PROC-NOPE");
    assert_eq!(
        e.post("/v1.0/workflow/processInstances", unknown).await.1["code"],
        "processCodeError"
    );

    // Authentication: no header, then a bad token.
    let res = e
        .http
        .post(format!("{}/v1.0/workflow/processInstances", e.mock.base_url()))
        .json(&base)
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.json::<Value>().await.unwrap()["code"],
        "AuthenticationFailed.MissingParameter"
    );
    e.mock.revoke_tokens();
    assert_eq!(
        e.post("/v1.0/workflow/processInstances", base).await.1["code"],
        "InvalidAuthentication"
    );
}

#[tokio::test]
async fn list_instance_ids_pages_with_a_numeric_request_token_and_string_response_token() {
    let e = env(Duration::ZERO).await;
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(e.start_vector_instance().await);
    }
    let mut seen = Vec::new();
    let mut next = 0i64;
    loop {
        let (status, body) = e
            .post(
                "/v1.0/workflow/processes/instanceIds/query",
                json!({"processCode": CODE, "startTime": 0, "nextToken": next, "maxResults": 2}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        seen.extend(
            body["result"]["list"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap().to_owned()),
        );
        match body["result"]["nextToken"].as_str() {
            Some(token) => next = token.parse().unwrap(),
            None => break,
        }
    }
    assert_eq!(seen, ids);
    for bad in [
        json!({"processCode": CODE, "startTime": 0, "nextToken": "0", "maxResults": 2}),
        json!({"processCode": CODE, "startTime": 0, "nextToken": 0, "maxResults": 21}),
    ] {
        assert_eq!(
            e.post("/v1.0/workflow/processes/instanceIds/query", bad).await.0,
            400
        );
    }
    let (status, schema) = e
        .get(&format!(
            "/v1.0/workflow/forms/schemas/processCodes?processCode={CODE}"
        ))
        .await;
    assert_eq!(status, 200);
    let items = schema["result"]["schemaContent"]["items"].as_array().unwrap();
    assert_eq!(items[1]["props"]["label"], "卸载原因");
    assert_eq!(items[1]["props"]["required"], true);
}

#[tokio::test]
async fn faults_are_injected_and_the_journal_records_requests() {
    let e = env(Duration::ZERO).await;
    let id = e.start_vector_instance().await;
    let path = format!("/v1.0/workflow/processInstances?processInstanceId={id}");
    e.mock.set_faults(MockFaults {
        rate_limit_next: 1,
        server_error_next: 1,
        ..MockFaults::default()
    });
    let (status, body) = e.get(&path).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("Forbidden.AccessDenied.QpsLimitForAppkeyAndApi"))
    );
    assert_eq!(e.get(&path).await.0, 500);
    assert_eq!(e.get(&path).await.0, 200);

    // An ambiguous create: 500, yet the instance exists (the caller must reconcile).
    let faults: MockFaults = serde_json::from_value(json!({"create_then_fail_next": 1})).unwrap();
    let res = e
        .http
        .put(format!("{}/__mock/faults", e.mock.base_url()))
        .json(&faults)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let before = e.mock.instance_ids().len();
    let wire: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/vectors/openapi-wire.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let body = wire["calls"][1]["request"]["body"].clone();
    assert_eq!(e.post("/v1.0/workflow/processInstances", body).await.0, 500);
    assert_eq!(e.mock.instance_ids().len(), before + 1);

    // Dropped and duplicated events.
    e.wait_events(5).await;
    let seen_before = e.events.lock().unwrap().len();
    e.mock.set_faults(MockFaults {
        drop_events_next: 2,
        ..MockFaults::default()
    });
    e.mock.approve(&id, None, None).unwrap();
    assert!(
        e.mock
            .wait_for(WAIT, |m| m
                .deliveries()
                .iter()
                .filter(|d| d.channel == Channel::Dropped)
                .count()
                == 2)
            .await
    );
    assert_eq!(
        e.events.lock().unwrap().len(),
        seen_before,
        "dropped events never arrive"
    );
    e.mock.set_faults(MockFaults {
        duplicate_events_next: 1,
        ..MockFaults::default()
    });
    e.mock.comment(&id, "approver0001", "dup").unwrap();
    let events = e.wait_events(seen_before + 2).await;
    let dup: Vec<&Event> = events
        .iter()
        .filter(|ev| matches!(ev, Event::TaskChange(t) if t.remark.as_deref() == Some("dup")))
        .collect();
    assert_eq!(dup.len(), 2);
    assert_eq!(
        dup[0].idempotency_key(),
        dup[1].idempotency_key(),
        "a duplicate keeps its eventId"
    );

    let journal = e.mock.journal();
    assert!(journal
        .iter()
        .any(|j| j.path == "/v1.0/oauth2/accessToken" && !j.token_present));
    assert!(journal.iter().any(|j| j.status == 403));
    let http_journal: Value = e
        .http
        .get(format!("{}/__mock/journal", e.mock.base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(http_journal.as_array().unwrap().len(), journal.len());
}

/// Starts an instance of `CODE` through the OpenAPI; returns its id.
async fn start_instance(mock: &MockDingTalk) -> String {
    let http = reqwest::Client::new();
    let token: Value = http
        .post(format!("{}/v1.0/oauth2/accessToken", mock.base_url()))
        .json(&json!({"appKey": APP, "appSecret": SECRET}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let started: Value = http
        .post(format!("{}/v1.0/workflow/processInstances", mock.base_url()))
        .header("x-acs-dingtalk-access-token", token["accessToken"].as_str().unwrap())
        .json(&json!({"processCode": CODE, "originatorUserId": "u1", "deptId": -1,
            "formComponentValues": [{"name": "设备名称", "value": "LAPTOP"}, {"name": "卸载原因", "value": "重装"}]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    started["instanceId"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn stream_apps_receive_events_through_the_gateway() {
    let mock = MockDingTalk::builder()
        .app(MockApp::new(APP, SECRET).events(TOKEN, AES_KEY).stream(true))
        .process(process())
        .start()
        .await
        .unwrap();
    let (seen, task) = stream_receiver(&mock).await;
    let id = start_instance(&mock).await;
    mock.approve(&id, Some("approver0001"), None).unwrap();
    assert!(
        mock.wait_for(WAIT, |_| seen
            .lock()
            .unwrap()
            .iter()
            .any(|e| matches!(e, Event::InstanceChange(c) if c.is_approved())))
            .await
    );
    assert!(
        mock.gateway().wait_for(WAIT, |g| g.pending_count() == 0).await,
        "every stream event ACKed"
    );
    assert!(mock.deliveries().iter().all(|d| d.channel == Channel::Stream));
    task.abort();
}

#[tokio::test]
async fn http_push_and_stream_carry_the_apps_corp_id() {
    const CORP: &str = "ding4242corp";
    let (url, pushed) = receiver().await;
    let mock = MockDingTalk::builder()
        .app(
            MockApp::new(APP, SECRET)
                .events(TOKEN, AES_KEY)
                .request_url(url)
                .stream(true)
                .corp_id(CORP),
        )
        .process(process())
        .start()
        .await
        .unwrap();
    let (streamed, task) = stream_receiver(&mock).await;
    let id = start_instance(&mock).await;
    let started = |events: &Events| {
        events
            .lock()
            .unwrap()
            .iter()
            .find(|e| matches!(e, Event::InstanceChange(c) if c.process_instance_id.as_ref().is_some_and(|p| *p == id.as_str())))
            .map(|e| e.meta().corp_id.clone())
    };
    assert!(
        mock.wait_for(WAIT, |_| started(&pushed).is_some()
            && started(&streamed).is_some())
            .await
    );
    let corp = Some(Some(dingtalk_sdk::CorpId::new(CORP)));
    assert_eq!(started(&pushed), corp, "HTTP push");
    assert_eq!(started(&streamed), corp, "Stream");
    task.abort();
}
