//! The mock enforces DingTalk's quotas over real HTTP on 127.0.0.1, on an injected clock: the
//! per-app, per-API QPS (403 `Forbidden.AccessDenied.QpsLimitForAppkeyAndApi`) and the monthly
//! quota (403 `Forbidden.AccessDenied.ApiCountLimitForOrg`, token calls exempt), refused calls
//! not executed but counted in the usage (`GET /__mock/usage`, `MockDingTalk::usage`), and our
//! own client seeing the refusals as DingTalk's.

#![cfg(feature = "mock")]
#![expect(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "tests fail loudly on unexpected values"
)]

pub mod support;

use dingtalk_sdk::client::DingTalkClient;
use dingtalk_sdk::mock::{
    ApiUsage, MockApp, MockConfig, MockDingTalk, MockFormField, MockProcess, MockQuotas,
    DINGTALK_REDELIVERY_MS,
};
use dingtalk_sdk::retry::RetryPolicy;
use dingtalk_sdk::token::Credentials;
use dingtalk_sdk::workflow::{FormComponentValue, StartProcessInstanceRequest};
use dingtalk_sdk::{ErrorKind, ProcessCode, UserId};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use support::{APP_KEY as APP, APP_SECRET as SECRET};

const CODE: &str = "PROC-UNINSTALL";
const CREATE: &str = "POST /v1.0/workflow/processInstances";
const GET: &str = "GET /v1.0/workflow/processInstances";
const TOKEN_API: &str = "POST /v1.0/oauth2/accessToken";
const QPS: &str = "Forbidden.AccessDenied.QpsLimitForAppkeyAndApi";
const MONTHLY: &str = "Forbidden.AccessDenied.ApiCountLimitForOrg";
/// 2026-12-15T10:00:00.000Z.
const DEC_15: i64 = 1_797_328_800_000;
/// 2026-12-31T23:59:59.000Z.
const DEC_31_LAST_SECOND: i64 = 1_798_761_599_000;

/// A manual clock: the mock reads it, the test moves it.
#[derive(Clone)]
struct Clock(Arc<AtomicI64>);

impl Clock {
    fn at(ms: i64) -> Self {
        Self(Arc::new(AtomicI64::new(ms)))
    }

    fn advance(&self, by: Duration) {
        self.0
            .fetch_add(i64::try_from(by.as_millis()).unwrap(), Ordering::SeqCst);
    }

    fn reader(&self) -> dingtalk_sdk::mock::MockClock {
        let now = Arc::clone(&self.0);
        Arc::new(move || now.load(Ordering::SeqCst))
    }
}

fn process() -> MockProcess {
    MockProcess::new(
        CODE,
        "App uninstall",
        vec![
            MockFormField::new("Device", "TextField", true),
            MockFormField::new("Reason", "TextareaField", true),
        ],
        vec!["approver1".into()],
    )
}

async fn mock(quotas: MockQuotas, clock: &Clock) -> MockDingTalk {
    MockDingTalk::builder()
        .app(MockApp::new(APP, SECRET))
        .app(MockApp::new("dingotherapp", "other-secret"))
        .process(process())
        .quotas(quotas)
        .clock(clock.reader())
        .start()
        .await
        .unwrap()
}

/// Raw HTTP, to see DingTalk's status and body as sent.
struct Raw {
    base: String,
    http: reqwest::Client,
}

impl Raw {
    fn new(mock: &MockDingTalk) -> Self {
        Self {
            base: mock.base_url(),
            http: reqwest::Client::new(),
        }
    }

    async fn token_call(&self, app: &str, secret: &str) -> (u16, Value) {
        let res = self
            .http
            .post(format!("{}/v1.0/oauth2/accessToken", self.base))
            .json(&json!({"appKey": app, "appSecret": secret}))
            .send()
            .await
            .unwrap();
        (res.status().as_u16(), res.json().await.unwrap())
    }

    async fn token(&self, app: &str, secret: &str) -> String {
        let (status, body) = self.token_call(app, secret).await;
        assert_eq!(status, 200, "{body}");
        body["accessToken"].as_str().unwrap().to_owned()
    }

    async fn create(&self, token: &str) -> (u16, Value) {
        let res = self
            .http
            .post(format!("{}/v1.0/workflow/processInstances", self.base))
            .header("x-acs-dingtalk-access-token", token)
            .json(&json!({"processCode": CODE, "originatorUserId": "alice", "deptId": -1,
                "formComponentValues": [{"name": "Device", "value": "LAPTOP-1"}, {"name": "Reason", "value": "reinstall"}]}))
            .send()
            .await
            .unwrap();
        (res.status().as_u16(), res.json().await.unwrap())
    }

    async fn get(&self, token: &str, id: &str) -> (u16, Value) {
        let res = self
            .http
            .get(format!(
                "{}/v1.0/workflow/processInstances?processInstanceId={id}",
                self.base
            ))
            .header("x-acs-dingtalk-access-token", token)
            .send()
            .await
            .unwrap();
        (res.status().as_u16(), res.json().await.unwrap())
    }

    async fn control(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(body) = body {
            req = req.json(&body);
        }
        let res = req.send().await.unwrap();
        assert_eq!(res.status(), 200);
        res.json().await.unwrap()
    }
}

/// A 403 with DingTalk's error body and the given code.
fn assert_refused(answer: &(u16, Value), code: &str) {
    let (status, body) = answer;
    assert_eq!(*status, 403, "{body}");
    assert_eq!(body["code"], code, "{body}");
    assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
    assert_eq!(
        body["requestid"].as_str().map(str::len),
        Some(32),
        "lower-case requestid: {body}"
    );
}

fn api_usage(mock: &MockDingTalk, app: &str, api: &str) -> ApiUsage {
    mock.usage().apps[app]
        .by_api
        .get(api)
        .copied()
        .unwrap_or_default()
}

#[tokio::test]
async fn qps_per_app_and_api_is_enforced_in_each_second_of_the_clock() {
    let clock = Clock::at(DEC_15);
    let quotas = MockQuotas {
        qps_per_app_and_api: Some(5),
        ..MockQuotas::default()
    };
    let mock = mock(quotas, &clock).await;
    assert_eq!(mock.quotas(), quotas);
    let raw = Raw::new(&mock);
    let token = raw.token(APP, SECRET).await;

    // 8 creates in one clock-second: 5 created, 3 refused with DingTalk's answer, not executed.
    let mut answers = Vec::new();
    for _ in 0..8 {
        answers.push(raw.create(&token).await);
    }
    let created: Vec<&Value> = answers
        .iter()
        .filter(|(status, _)| *status == 200)
        .map(|(_, body)| body)
        .collect();
    assert_eq!(created.len(), 5);
    for refused in answers.iter().filter(|(status, _)| *status != 200) {
        assert_refused(refused, QPS);
    }
    assert_eq!(mock.instance_ids().len(), 5, "a refused call creates nothing");
    let usage = api_usage(&mock, APP, CREATE);
    assert_eq!((usage.calls, usage.refused_qps, usage.refused_quota), (8, 3, 0));
    assert_eq!(
        mock.journal().iter().filter(|j| j.status == 403).count(),
        3,
        "the journal shows the refusals"
    );

    // Another API of the same app, and the same API of another app, have their own windows.
    let id = created[0]["instanceId"].as_str().unwrap();
    for _ in 0..5 {
        assert_eq!(raw.get(&token, id).await.0, 200);
    }
    assert_refused(&raw.get(&token, id).await, QPS);
    let other = raw.token("dingotherapp", "other-secret").await;
    assert_eq!(raw.create(&other).await.0, 200);

    // Within the same second (999 ms later) still refused; the next second allows again.
    clock.advance(Duration::from_millis(999));
    assert_refused(&raw.create(&token).await, QPS);
    clock.advance(Duration::from_millis(1));
    assert_eq!(raw.create(&token).await.0, 200);
    assert_eq!(raw.get(&token, id).await.0, 200);

    // The same counts over HTTP, in the documented shape.
    let usage = raw.control(reqwest::Method::GET, "/__mock/usage", None).await;
    let app = &usage["apps"][APP];
    assert_eq!(app["month"], "2026-12");
    assert_eq!(
        app["by_api"][CREATE],
        json!({"calls": 10, "refused_qps": 4, "refused_quota": 0})
    );
    assert_eq!(
        app["by_api"][GET],
        json!({"calls": 7, "refused_qps": 1, "refused_quota": 0}),
        "per API: the path without its query"
    );
    assert_eq!(app["by_api"][TOKEN_API]["calls"], 1);
    assert_eq!(app["calls"], 18);
    assert_eq!(usage["apps"]["dingotherapp"]["by_api"][CREATE]["calls"], 1);
    assert_eq!(
        serde_json::to_value(mock.usage()).unwrap(),
        usage,
        "MockDingTalk::usage() is what GET /__mock/usage answers"
    );
}

#[tokio::test]
async fn the_monthly_quota_follows_the_calendar_month_of_the_clock_and_exempts_tokens() {
    let clock = Clock::at(DEC_31_LAST_SECOND);
    let mock = mock(MockQuotas::default(), &clock).await;
    let raw = Raw::new(&mock);

    // Off by default; set over the control API.
    let off = raw.control(reqwest::Method::GET, "/__mock/quotas", None).await;
    assert_eq!(off, json!({"qps_per_app_and_api": null, "calls_per_month": null}));
    let set = raw
        .control(
            reqwest::Method::PUT,
            "/__mock/quotas",
            Some(json!({"calls_per_month": 10})),
        )
        .await;
    assert_eq!(set["calls_per_month"], 10);
    assert_eq!(mock.quotas().calls_per_month, Some(10));

    let token = raw.token(APP, SECRET).await;
    let (_, first) = raw.create(&token).await;
    let id = first["instanceId"].as_str().unwrap().to_owned();
    for i in 1..10 {
        // Token calls in between never count.
        raw.token(APP, SECRET).await;
        let status = if i % 2 == 0 {
            raw.create(&token).await.0
        } else {
            raw.get(&token, &id).await.0
        };
        assert_eq!(status, 200, "call {} of 10", i + 1);
    }
    // The 11th non-token call of the month is refused, whatever the API, and not executed.
    let before = mock.instance_ids().len();
    assert_refused(&raw.create(&token).await, MONTHLY);
    assert_refused(&raw.get(&token, &id).await, MONTHLY);
    assert_eq!(mock.instance_ids().len(), before);
    // Token calls stay exempt past the quota.
    assert_eq!(raw.token_call(APP, SECRET).await.0, 200);
    let december = mock.usage().apps[APP].clone();
    assert_eq!(december.month, "2026-12");
    assert_eq!(december.quota_used, 10);
    assert_eq!(december.by_api[CREATE].refused_quota, 1);
    assert_eq!(december.by_api[GET].refused_quota, 1);
    assert_eq!(december.by_api[TOKEN_API].calls, 11);
    assert_eq!(december.by_api[TOKEN_API].refused_quota, 0);

    // One second later it is January (UTC): allowed again, counted afresh.
    clock.advance(Duration::from_secs(1));
    assert_eq!(raw.create(&token).await.0, 200);
    let january = mock.usage().apps[APP].clone();
    assert_eq!(january.month, "2027-01");
    assert_eq!((january.calls, january.quota_used), (1, 1));

    // Thirty days without sleeping, a call a day: 9 more fit in January's quota, 21 do not.
    for _ in 0..30 {
        clock.advance(Duration::from_secs(86_400));
        let _ = raw.get(&token, &id).await;
    }
    let later = mock.usage().apps[APP].clone();
    assert_eq!(later.month, "2027-01", "30 days after Jan 1 is Jan 31");
    assert_eq!(later.quota_used, 10);
    assert_eq!(later.by_api[GET].refused_quota, 21);
}

#[tokio::test]
async fn the_monthly_quota_is_shared_by_the_apps_of_one_organisation() {
    let clock = Clock::at(DEC_15);
    let mock = MockDingTalk::builder()
        .app(MockApp::new(APP, SECRET).corp_id("dingcorpA"))
        .app(MockApp::new("dingsamecorp", "s2").corp_id("dingcorpA"))
        .app(MockApp::new("dingothercorp", "s3").corp_id("dingcorpB"))
        .process(process())
        .quotas(MockQuotas {
            calls_per_month: Some(3),
            ..MockQuotas::default()
        })
        .clock(clock.reader())
        .start()
        .await
        .unwrap();
    let raw = Raw::new(&mock);
    let (a, b, c) = (
        raw.token(APP, SECRET).await,
        raw.token("dingsamecorp", "s2").await,
        raw.token("dingothercorp", "s3").await,
    );
    for token in [&a, &b, &a] {
        assert_eq!(raw.create(token).await.0, 200);
    }
    assert_refused(&raw.create(&b).await, MONTHLY);
    assert_eq!(raw.create(&c).await.0, 200, "another organisation");
    let usage = mock.usage();
    assert_eq!(usage.apps[APP].corp_id, "dingcorpA");
    assert_eq!(
        (usage.apps[APP].quota_used, usage.apps["dingsamecorp"].quota_used),
        (2, 1)
    );
}

fn request() -> StartProcessInstanceRequest {
    StartProcessInstanceRequest::new(
        ProcessCode::new(CODE),
        UserId::new("alice"),
        vec![
            FormComponentValue::new("Device", "LAPTOP-1"),
            FormComponentValue::new("Reason", "reinstall"),
        ],
    )
    .dept_id(-1)
}

fn client(mock: &MockDingTalk, retry: RetryPolicy) -> DingTalkClient {
    DingTalkClient::builder(Credentials::new(APP, SECRET))
        .api_base(mock.base_url())
        .retry(retry)
        .build()
        .unwrap()
}

#[tokio::test]
async fn our_client_sees_the_qps_refusal_as_a_rate_limit_and_the_monthly_one_as_final() {
    let clock = Clock::at(DEC_15);
    let mock = mock(
        MockQuotas {
            qps_per_app_and_api: Some(2),
            ..MockQuotas::default()
        },
        &clock,
    )
    .await;
    let once = client(&mock, RetryPolicy::none());
    let wf = once.workflow();
    wf.start_instance(&request()).await.unwrap();
    wf.start_instance(&request()).await.unwrap();
    let err = wf.start_instance(&request()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Throttling, "{err}");
    assert!(err.is_retryable(), "{err}");
    assert_eq!((err.http_status(), err.code()), (Some(403), Some(QPS)), "{err}");
    assert!(err.request_id().is_some(), "{err}");
    assert_eq!(mock.instance_ids().len(), 2);

    // A client that retries within the same clock-second over-calls: the usage shows it.
    let retrying = client(
        &mock,
        RetryPolicy::new(
            3,
            Duration::from_millis(5),
            Duration::from_millis(20),
            Duration::from_millis(5),
        ),
    );
    let err = retrying.workflow().start_instance(&request()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Throttling, "{err}");
    let usage = api_usage(&mock, APP, CREATE);
    assert_eq!((usage.calls, usage.refused_qps), (6, 4), "three attempts refused");
    clock.advance(Duration::from_secs(1));
    retrying.workflow().start_instance(&request()).await.unwrap();

    // Over the monthly quota: a client error, not worth retrying this month.
    mock.set_quotas(MockQuotas {
        calls_per_month: Some(3),
        ..MockQuotas::default()
    });
    let err = retrying.workflow().start_instance(&request()).await.unwrap_err();
    assert_eq!(err.code(), Some(MONTHLY), "{err}");
    assert_eq!(err.http_status(), Some(403));
    assert_eq!(err.kind(), ErrorKind::Client, "{err}");
    assert!(!err.is_retryable());
    assert_eq!(api_usage(&mock, APP, CREATE).refused_quota, 1, "not retried");
}

#[test]
fn quotas_and_the_redelivery_schedule_are_read_from_mock_toml() {
    let config: MockConfig = toml::from_str(
        r#"
        [quotas]
        qps_per_app_and_api = 20
        calls_per_month = 5000

        [stream]
        redelivery_ms = [100, 200]
        "#,
    )
    .unwrap();
    assert_eq!(config.quotas.qps_per_app_and_api, Some(20));
    assert_eq!(config.quotas.calls_per_month, Some(5000));
    assert_eq!(
        config.stream.redelivery(),
        [Duration::from_millis(100), Duration::from_millis(200)]
    );
    let defaults: MockConfig = toml::from_str("").unwrap();
    assert_eq!(defaults.quotas, MockQuotas::default(), "off by default");
    assert_eq!(defaults.stream.redelivery_ms, DINGTALK_REDELIVERY_MS);

    // The README's mock.toml sets the same keys.
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let heredoc = readme
        .split_once("cat > mock.toml <<'TOML'\n")
        .unwrap()
        .1
        .split_once("TOML\n")
        .unwrap()
        .0;
    let config: MockConfig = toml::from_str(heredoc).unwrap();
    assert_eq!(config.quotas.qps_per_app_and_api, Some(20));
    assert_eq!(config.quotas.calls_per_month, Some(5000));
    assert_eq!(config.stream.redelivery_ms, DINGTALK_REDELIVERY_MS);
}
