//! `GET /metrics` over real HTTP on 127.0.0.1, with a mock DingTalk pushing encrypted events
//! to the server's Request URL: what a scrape shows after requests are filed and one is
//! approved (with its events delivered twice), that it shows no secret, that only the
//! metrics token reads it, that without one there is no such route, and that the replica
//! holding the reconciler's lease says so.

#![expect(
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "the helpers outside #[test] functions fail the test on a broken set-up or response"
)]

use dingtalk_sdk::mock::{MockApp, MockDingTalk, MockFaults, MockFormField, MockProcess};
use sase_approval_server::config::{Config, DeviceConfig, DingTalkConfig, WorkflowConfig};
use sase_approval_server::{self as server, Server};
use sase_policy::PolicyDocument;
use serde_json::{json, Value};
use std::time::Duration;

const APP: &str = "dingmetricsapp";
const SECRET: &str = "metrics-app-secret";
const TOKEN: &str = "subscriptiontk";
const AES_KEY: &str = "kYd8sJ2pQ7wE4rT9uV1xZ3cB6nM0aL5gH8jK2fD4sAx";
const CODE: &str = "PROC-METRICS";
const ADMIN: &str = "admin-token-metrics-0123456789abcdef";
const METRICS: &str = "scrape-token-0123456789";
const DEVICES: [(&str, &str); 2] = [("tok-alice-device", "alice"), ("tok-bob-device", "bob")];
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Employees file for approval on the DingTalk workflow.
fn policies() -> PolicyDocument {
    toml::from_str(
        r#"
        [[policies]]
        id = "employees"
        name = "Employees"
        priority = 10
        switches = { anti_uninstall = true }
        scope = { groups = ["employees"] }
        approval = { allow_filing = true, workflow = "wf-dingtalk" }
        [policies.prompt.zh-CN]
        title = "需要审批"
        content = "内容"
        primary_button = "提交审批"
        secondary_button = "取消"
        [policies.prompt.en-US]
        title = "Approval needed"
        content = "content"
        primary_button = "File for Approval"
        secondary_button = "Cancel"
        "#,
    )
    .unwrap()
}

async fn mock() -> MockDingTalk {
    MockDingTalk::builder()
        .app(MockApp::new(APP, SECRET))
        .process(MockProcess::new(
            CODE,
            "卸载申请",
            vec![
                MockFormField::new("设备名称", "TextField", true),
                MockFormField::new("卸载原因", "TextareaField", true),
            ],
            vec!["approver1".into()],
        ))
        .terminate_grace(Duration::ZERO)
        .start()
        .await
        .unwrap()
}

/// On an ephemeral port, a workflow on the mock's app (as real DingTalk would be), alice and
/// bob enrolled, reconciling every `reconcile_every_secs`.
fn config(mock: &MockDingTalk, database: &std::path::Path, reconcile_every_secs: u64) -> Config {
    let app: DingTalkConfig = serde_json::from_value(json!({
        "client_id": APP, "client_secret": SECRET, "token": TOKEN, "aes_key": AES_KEY,
        "api_base": mock.base_url(),
    }))
    .unwrap();
    let mut config = Config::default();
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.database = database.display().to_string();
    config.admin_token = Some(ADMIN.into());
    config.policies = Some(policies());
    config.reconcile_every_secs = reconcile_every_secs;
    config.workflows = vec![WorkflowConfig::new("wf-dingtalk").dingtalk(
        app,
        CODE,
        [("device", "设备名称"), ("reason", "卸载原因")],
    )];
    config.devices = DEVICES
        .iter()
        .map(|(token, user)| {
            toml::from_str::<DeviceConfig>(&format!(
                "token = \"{token}\"\ndevice_id = \"dev-{user}\"\nuser_id = \"{user}\"\ngroups = [\"employees\"]"
            ))
            .unwrap()
        })
        .collect();
    config
}

/// Starts `config` and saves its Request URL on the mock (check_url must pass).
async fn start(mock: &MockDingTalk, config: Config) -> Server {
    let server = server::start(config).await.unwrap();
    let app = MockApp::new(APP, SECRET)
        .events(TOKEN, AES_KEY)
        .request_url(server.request_url("wf-dingtalk").unwrap());
    assert!(mock.register_app(app).await.unwrap().ok, "check_url round trip");
    server
}

struct Client {
    http: reqwest::Client,
    base: String,
}

impl Client {
    fn new(server: &Server) -> Self {
        Self {
            http: reqwest::Client::new(),
            base: format!("http://{}", server.addr),
        }
    }

    async fn json(&self, req: reqwest::RequestBuilder) -> (u16, Value) {
        let res = req.send().await.unwrap();
        (res.status().as_u16(), res.json().await.unwrap_or(Value::Null))
    }

    /// Files a request as the device with `token`; its id.
    async fn file(&self, token: &str) -> String {
        let (status, body) = self
            .json(
                self.http
                    .post(format!("{}/api/agent/requests", self.base))
                    .bearer_auth(token)
                    .json(&json!({"reason": "reinstalling"})),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        body["id"].as_str().unwrap().to_owned()
    }

    async fn console(&self, path: &str) -> Value {
        let (status, body) = self
            .json(self.http.get(format!("{}{path}", self.base)).bearer_auth(ADMIN))
            .await;
        assert_eq!(status, 200, "{body}");
        body
    }

    /// Waits until the device with `token` sees request `id` in `state`.
    async fn poll(&self, token: &str, id: &str, state: &str) {
        for _ in 0..500 {
            let (_, body) = self
                .json(
                    self.http
                        .get(format!("{}/api/agent/requests/{id}", self.base))
                        .bearer_auth(token),
                )
                .await;
            if body["state"] == state {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("request {id} never became {state}");
    }

    /// `GET /metrics` with `token` (if any): status, content type and body.
    async fn get_metrics(&self, token: Option<&str>) -> (u16, String, String) {
        let mut req = self.http.get(format!("{}/metrics", self.base));
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        let content_type = res
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        (status, content_type, res.text().await.unwrap())
    }

    /// A successful scrape with the metrics token.
    async fn scrape(&self) -> Scrape {
        let (status, content_type, text) = self.get_metrics(Some(METRICS)).await;
        assert_eq!(status, 200, "{text}");
        assert_eq!(content_type, OPENMETRICS);
        assert!(text.ends_with("# EOF\n"), "{text}");
        Scrape(text)
    }
}

/// A scrape's text.
struct Scrape(String);

impl Scrape {
    /// The value of the sample named exactly `series` (name and labels), if there is one.
    fn value(&self, series: &str) -> Option<f64> {
        self.0.lines().find_map(|line| {
            let (name, value) = line.rsplit_once(' ')?;
            (name == series).then(|| value.parse().unwrap())
        })
    }

    /// [`value`](Self::value), which must be there.
    fn get(&self, series: &str) -> f64 {
        self.value(series)
            .unwrap_or_else(|| panic!("no sample {series} in\n{}", self.0))
    }
}

#[tokio::test]
async fn a_scrape_counts_requests_events_calls_and_latency_and_shows_no_secret() {
    let dir = tempfile::tempdir().unwrap();
    let mock = mock().await;
    let mut config = config(&mock, &dir.path().join("metrics.sqlite"), 3600);
    config.metrics_token = Some(METRICS.into());
    let server = start(&mock, config).await;
    let client = Client::new(&server);
    let request_url = server.request_url("wf-dingtalk").unwrap().to_owned();
    let callback_id = request_url.rsplit('/').next().unwrap().to_owned();
    assert!(callback_id.len() >= 16, "{request_url}");

    let (alice, bob) = (DEVICES[0].0, DEVICES[1].0);
    let approved = client.file(alice).await;
    let pending = client.file(bob).await;
    // The approver agrees in DingTalk, and DingTalk delivers each event twice.
    let instance = client.console(&format!("/api/console/requests/{approved}")).await["external_id"]
        .as_str()
        .unwrap()
        .to_owned();
    mock.set_faults(MockFaults {
        duplicate_events_next: 10,
        ..MockFaults::default()
    });
    mock.approve(&instance, None, None).unwrap();
    client.poll(alice, &approved, "approved").await;
    // No such route: timed as `unmatched`.
    let (status, _) = client
        .json(client.http.get(format!("{}/no/such/route", client.base)))
        .await;
    assert_eq!(status, 404);

    // The second deliveries may land after the request shows approved.
    let mut scrape = client.scrape().await;
    for _ in 0..200 {
        if scrape.value("sase_events_total{outcome=\"duplicate\"}").is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        scrape = client.scrape().await;
    }
    assert_eq!(scrape.get("sase_requests{state=\"approved\"}"), 1.0);
    assert_eq!(scrape.get("sase_requests{state=\"pending\"}"), 1.0);
    assert_eq!(
        scrape.get("sase_requests{state=\"rejected\"}"),
        0.0,
        "a state without requests is 0, not absent"
    );
    assert!(scrape.get("sase_events_total{outcome=\"applied\"}") >= 1.0);
    assert!(scrape.get("sase_events_total{outcome=\"duplicate\"}") >= 1.0);
    assert_eq!(scrape.value("sase_events_total{outcome=\"error\"}"), None);

    // DingTalk calls as the console counts them (read again if one was made in between).
    let app = format!("{{app=\"{APP}\"}}");
    let mut agreed = false;
    for _ in 0..5 {
        let before = client.console("/api/console/dingtalk/usage").await[0]["usage"]["calls"].clone();
        let scrape = client.scrape().await;
        let after = client.console("/api/console/dingtalk/usage").await[0]["usage"]["calls"].clone();
        if before != after {
            continue;
        }
        let calls = after.as_f64().unwrap();
        assert!(calls >= 2.0, "two instances created: {calls}");
        assert_eq!(scrape.get(&format!("sase_dingtalk_calls{app}")), calls);
        assert_eq!(scrape.get(&format!("sase_dingtalk_calls_limit{app}")), 5000.0);
        assert_eq!(
            scrape.get(&format!("sase_dingtalk_calls_remaining{app}")),
            5000.0 - calls
        );
        assert_eq!(scrape.get(&format!("sase_dingtalk_throttled{app}")), 0.0);
        assert_eq!(scrape.get(&format!("sase_dingtalk_refused{app}")), 0.0);
        agreed = true;
        break;
    }
    assert!(agreed, "the calls kept changing");

    // Latency by route template: the two filings, the polls of one request, the pushes to
    // the Request URL (labelled without its id) and the unknown path.
    assert_eq!(
        scrape.get(
            "sase_http_request_duration_seconds_bucket{le=\"+Inf\",route=\"/api/agent/requests\",method=\"POST\",status=\"201\"}"
        ),
        2.0
    );
    assert_eq!(
        scrape.get(
            "sase_http_request_duration_seconds_count{route=\"/api/agent/requests\",method=\"POST\",status=\"201\"}"
        ),
        2.0
    );
    assert!(
        scrape.get(
            "sase_http_request_duration_seconds_count{route=\"/api/agent/requests/{id}\",method=\"GET\",status=\"200\"}"
        ) >= 1.0
    );
    assert!(
        scrape.get(
            "sase_http_request_duration_seconds_count{route=\"/dingtalk/callback/{id}\",method=\"POST\",status=\"200\"}"
        ) >= 3.0,
        "check_url, and the approval's events twice"
    );
    assert_eq!(
        scrape.get(
            "sase_http_request_duration_seconds_count{route=\"unmatched\",method=\"GET\",status=\"404\"}"
        ),
        1.0
    );

    // Nothing secret, nor any request's or instance's id.
    let [alice_token, bob_token] = DEVICES.map(|(token, _)| token);
    for secret in [
        callback_id.as_str(),
        METRICS,
        ADMIN,
        alice_token,
        bob_token,
        SECRET,
        TOKEN,
        AES_KEY,
        approved.as_str(),
        pending.as_str(),
        instance.as_str(),
    ] {
        assert!(
            !scrape.0.lines().any(|line| line.contains(secret)),
            "{secret} in\n{}",
            scrape.0
        );
    }
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn only_the_metrics_token_reads_the_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let mock = mock().await;
    let mut config = config(&mock, &dir.path().join("metrics.sqlite"), 3600);
    config.metrics_token = Some(METRICS.into());
    let server = start(&mock, config).await;
    let client = Client::new(&server);
    for token in [
        None,
        Some(ADMIN),
        Some(DEVICES[0].0),
        Some("scrape-token-012345678"),
    ] {
        let (status, _, body) = client.get_metrics(token).await;
        let body: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            (status, body["error"].as_str()),
            (401, Some("unauthorized")),
            "{token:?}: {body}"
        );
    }
    client.scrape().await;
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn without_a_metrics_token_there_is_no_metrics_route() {
    let dir = tempfile::tempdir().unwrap();
    let mock = mock().await;
    let server = start(&mock, config(&mock, &dir.path().join("metrics.sqlite"), 3600)).await;
    let client = Client::new(&server);
    for token in [None, Some(ADMIN), Some(METRICS)] {
        let (status, _, body) = client.get_metrics(token).await;
        let body: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            (status, body["error"].as_str()),
            (404, Some("not_found")),
            "{token:?}: {body}"
        );
    }
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn the_replica_holding_the_reconciler_lease_shows_it() {
    let dir = tempfile::tempdir().unwrap();
    let mock = mock().await;
    let mut config = config(&mock, &dir.path().join("metrics.sqlite"), 1);
    config.metrics_token = Some(METRICS.into());
    let server = start(&mock, config).await;
    let client = Client::new(&server);
    let lease_line = |scrape: &Scrape| -> Option<String> {
        let mut lines = scrape
            .0
            .lines()
            .filter(|line| line.starts_with("sase_reconciler_lease_held{"));
        let line = lines.next()?.to_owned();
        assert_eq!(lines.next(), None, "one replica here: {}", scrape.0);
        Some(line)
    };
    let mut held = None;
    for _ in 0..100 {
        let scrape = client.scrape().await;
        if scrape.value("sase_reconcile_passes_total").unwrap_or(0.0) >= 1.0
            && lease_line(&scrape).is_some_and(|line| line.ends_with("} 1"))
        {
            held = Some(scrape);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let scrape = held.expect("the lease is held and a pass ran within 5 s");
    let line = lease_line(&scrape).unwrap();
    let replica = line
        .strip_prefix("sase_reconciler_lease_held{replica=\"replica-")
        .and_then(|rest| rest.strip_suffix("\"} 1"))
        .unwrap_or_else(|| panic!("{line}"));
    assert_eq!(replica.len(), 16, "{line}");
    assert!(replica.chars().all(|c| c.is_ascii_hexdigit()), "{line}");
    assert_eq!(scrape.get("sase_reconcile_failures_total"), 0.0);
    assert_eq!(
        scrape.get("sase_reconcile_changed_total"),
        0.0,
        "nothing to reconcile"
    );
    server.shutdown().await.unwrap();
}
