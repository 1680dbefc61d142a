//! Set-up shared by the server's integration tests: a mock DingTalk with one app and the
//! uninstall form, the server configured with that app's credentials (its Request URL saved
//! on the mock), the test policies and devices, an agent's HTTP calls, and a production
//! `server.toml` with the same credentials for a DingTalk that nothing calls.

#![expect(
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "set-up fails loudly"
)]
#![allow(
    dead_code,
    reason = "each test file uses part of this; an expect would be unfulfilled in those using all"
)]

use dingtalk_sdk::mock::{MockApp, MockDingTalk, MockDingTalkBuilder, MockFormField, MockProcess};
use reqwest::Method;
use sase_approval::clock::{Clock, SystemClock};
use sase_approval_server::config::{Config, DeviceConfig, DingTalkConfig, DirectoryConfig, WorkflowConfig};
use sase_approval_server::{self as server, Server};
use sase_policy::{GrantVerifier, PolicyDocument, SignedGrant};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

pub(crate) mod browser;
pub(crate) mod openapi;
#[cfg(feature = "postgres")]
pub(crate) mod postgres;

/// The DingTalk app's Client ID.
pub(crate) const APP: &str = "dingtestapp";
/// The DingTalk app's Client secret.
pub(crate) const SECRET: &str = "app-secret-0123456789abcdef";
/// The app's event subscription: its signature token and `aes_key`.
pub(crate) const TOKEN: &str = "signaturetoken123";
pub(crate) const AES_KEY: &str = "kYd8sJ2pQ7wE4rT9uV1xZ3cB6nM0aL5gH8jK2fD4sAx";
/// The uninstall form's process code.
pub(crate) const CODE: &str = "PROC-TEST";
/// The server's admin token.
pub(crate) const ADMIN: &str = "admin-token-test-0123456789abcdef";
/// The workflow on the app, which the test policies send employees to.
pub(crate) const WORKFLOW: &str = "wf-dingtalk";
/// The device token [`production_toml`] enrolls.
pub(crate) const FILE_DEVICE: &str = "device-token-from-the-file-0123456789";

/// The test policies as TOML, each policy a `[[{table}]]`: employees file for approval on
/// [`WORKFLOW`] (but the whitelisted `it-admin`); kiosks may not file.
fn policies_toml(table: &str) -> String {
    let prompt = |title: &str| {
        format!(
            r#"
            [{table}.prompt.zh-CN]
            title = "{title}"
            content = "内容"
            primary_button = "提交审批"
            secondary_button = "取消"
            [{table}.prompt.en-US]
            title = "{title} (en)"
            content = "content"
            primary_button = "File for Approval"
            secondary_button = "Cancel""#
        )
    };
    format!(
        r#"
        [[{table}]]
        id = "employees"
        name = "Employees"
        priority = 10
        switches = {{ anti_uninstall = true }}
        scope = {{ groups = ["employees"] }}
        whitelist = ["it-admin"]
        approval = {{ allow_filing = true, workflow = "{WORKFLOW}" }}
        {}
        [[{table}]]
        id = "kiosks"
        name = "Kiosks"
        priority = 20
        switches = {{ anti_uninstall = true }}
        scope = {{ groups = ["kiosk"] }}
        approval = {{ allow_filing = false }}
        {}
        "#,
        prompt("需要审批"),
        prompt("禁止卸载")
    )
}

/// The test policies (see [`policies_toml`]).
pub(crate) fn policies() -> PolicyDocument {
    toml::from_str(&policies_toml("policies")).unwrap()
}

/// The device with `token`, `dev-{user}` of `user` in `group`.
pub(crate) fn device(token: &str, user: &str, group: &str) -> DeviceConfig {
    toml::from_str(&format!(
        r#"token = "{token}"
device_id = "dev-{user}"
user_id = "{user}"
groups = ["{group}"]"#
    ))
    .unwrap()
}

/// A mock DingTalk with the app and the uninstall form, to start; with DingTalk's own rule
/// that an instance cannot be terminated within 15 seconds of its creation.
pub(crate) fn mock_builder() -> MockDingTalkBuilder {
    MockDingTalk::builder()
        .app(MockApp::new(APP, SECRET))
        .process(mock_builder_form())
}

/// The test app's uninstall form.
pub(crate) fn mock_builder_form() -> MockProcess {
    MockProcess::new(
        CODE,
        "卸载申请",
        vec![
            MockFormField::new("设备名称", "TextField", true),
            MockFormField::new("卸载原因", "TextareaField", true),
        ],
        vec!["approver1".into()],
    )
}

/// The [`mock_builder`]'s mock started, an instance terminable at once.
pub(crate) async fn mock() -> MockDingTalk {
    mock_builder()
        .terminate_grace(Duration::ZERO)
        .start()
        .await
        .unwrap()
}

/// On an ephemeral port, with the test policies and admin token, on `database`.
pub(crate) fn config(database: &std::path::Path) -> Config {
    let mut config = Config::default();
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.database = database.display().to_string();
    config.admin_token = Some(ADMIN.into());
    config.policies = Some(policies());
    config
}

/// The test configuration with a workflow on the mock's app, as real DingTalk would be, and
/// alice, it-admin (employees), carl (contractors) and kiosk1 (kiosk) enrolled.
pub(crate) fn credentialed_config(mock: &MockDingTalk, database: &std::path::Path) -> Config {
    let app: DingTalkConfig = serde_json::from_value(json!({
        "client_id": APP, "client_secret": SECRET, "token": TOKEN, "aes_key": AES_KEY,
        "api_base": mock.base_url(),
    }))
    .unwrap();
    let workflow =
        WorkflowConfig::new(WORKFLOW).dingtalk(app, CODE, [("device", "设备名称"), ("reason", "卸载原因")]);
    let mut config = config(database);
    config.workflows = vec![workflow];
    config.devices = vec![
        device("tok-alice", "alice", "employees"),
        device("tok-admin", "it-admin", "employees"),
        device("tok-contractor", "carl", "contractors"),
        device("tok-kiosk", "kiosk1", "kiosk"),
    ];
    config
}

/// `config` (a [`credentialed_config`]) following the mock's directory through the test app
/// (sign-in too, for the mock's organisation), with a policy protecting Engineering
/// (department 2, with Platform, 4, under it).
pub(crate) fn with_directory(config: &mut Config, mock: &MockDingTalk) {
    let engineering: sase_policy::Policy = serde_json::from_value(json!({
        "id": "engineering", "name": "Engineering", "priority": 50,
        "switches": {"anti_uninstall": true},
        "scope": {"departments": ["2"]},
        "approval": {"allow_filing": true, "workflow": WORKFLOW},
        "prompt": {
            "zh-CN": {"title": "需要审批", "content": "c", "primary_button": "提交", "secondary_button": "取消"},
            "en-US": {"title": "Approval needed", "content": "c", "primary_button": "File", "secondary_button": "Cancel"},
        },
    }))
    .unwrap();
    config.policies.as_mut().unwrap().policies.push(engineering);
    let mut directory = DirectoryConfig::new(APP, SECRET);
    directory.api_base = Some(mock.base_url());
    directory.oapi_base = Some(mock.base_url());
    directory.login_base = Some(mock.base_url());
    directory.corp_id = Some(dingtalk_sdk::mock::DEFAULT_CORP_ID.into());
    config.directory = Some(directory);
}

/// Starts `config` (a [`credentialed_config`]) and saves its Request URL on the mock.
pub(crate) async fn start_with(mock: &MockDingTalk, config: Config) -> Server {
    start_on_clock(mock, config, Arc::new(SystemClock)).await
}

/// [`start_with`] on `clock`.
pub(crate) async fn start_on_clock(mock: &MockDingTalk, config: Config, clock: Arc<dyn Clock>) -> Server {
    let server = server::start_with_clock(config, clock).await.unwrap();
    #[cfg(feature = "demo")]
    assert!(server.mock.is_none(), "credentials given: no mock in-process");
    // What the admin does in the developer console: save the Request URL (check_url must pass).
    let app = MockApp::new(APP, SECRET)
        .events(TOKEN, AES_KEY)
        .request_url(server.request_url(WORKFLOW).unwrap());
    assert!(mock.register_app(app).await.unwrap().ok, "check_url round trip");
    server
}

/// Sends `req`: the status, and the body as JSON (`Null` if it is not JSON), the answer
/// checked against the server's OpenAPI document ([`send`]).
pub(crate) async fn json(req: reqwest::RequestBuilder) -> (u16, Value) {
    let (status, _, body) = send(req).await;
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

/// Sends `req`: the status, headers and body, once the answer is checked against the OpenAPI
/// document the server serves (panics naming what does not fit).
pub(crate) async fn send(req: reqwest::RequestBuilder) -> (u16, reqwest::header::HeaderMap, Vec<u8>) {
    let (client, request) = req.build_split();
    let request = request.unwrap();
    let (method, url) = (request.method().clone(), request.url().clone());
    let res = client.execute(request).await.unwrap();
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    let body = res.bytes().await.unwrap().to_vec();
    let content_type = headers
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    openapi::check(&method, &url, status, content_type, &body).await;
    (status, headers, body)
}

/// The request id in the agent simulator's "Filed request <id>; …" line within `said`.
pub(crate) fn filed_request_id(said: &str) -> String {
    said.split("Filed request ")
        .nth(1)
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned()
}

/// Whether `key` signed `grant` (its own user, device and action, when it was issued).
pub(crate) fn signed_by(grant: &SignedGrant, key: &GrantVerifier) -> bool {
    let g = &grant.grant;
    key.verify(
        grant,
        &g.user,
        &g.device,
        g.action,
        g.issued_at_ms,
        &HashSet::new(),
    )
    .is_ok()
}

/// A device's agent calling the server with its token (and the console with [`ADMIN`]).
pub(crate) struct Agent {
    pub(crate) http: reqwest::Client,
    pub(crate) base: String,
    pub(crate) token: &'static str,
}

impl Agent {
    pub(crate) fn new(server: &Server, token: &'static str) -> Self {
        Self {
            http: reqwest::Client::new(),
            base: format!("http://{}", server.addr),
            token,
        }
    }

    /// Sends `req` with the device's token.
    pub(crate) async fn send(&self, req: reqwest::RequestBuilder) -> (u16, Value) {
        json(req.bearer_auth(self.token)).await
    }

    /// `POST {path}` with the JSON `body`.
    pub(crate) async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        self.send(self.http.post(format!("{}{path}", self.base)).json(body))
            .await
    }

    pub(crate) async fn check(&self) -> Value {
        let (status, body) = self
            .post("/api/agent/uninstall-check", &json!({"locale": "en-US"}))
            .await;
        assert_eq!(status, 200, "{body}");
        body
    }

    pub(crate) async fn file(&self, reason: &str) -> (u16, Value) {
        self.post("/api/agent/requests", &json!({"reason": reason})).await
    }

    /// Files a request, which must be created; its id.
    pub(crate) async fn filed(&self, reason: &str) -> String {
        let (status, body) = self.file(reason).await;
        assert_eq!(status, 201, "{body}");
        body["id"].as_str().unwrap().to_owned()
    }

    /// Waits until the device sees request `id` in state `until`; the request.
    pub(crate) async fn poll(&self, id: &str, until: &str) -> Value {
        for _ in 0..500 {
            let (_, body) = self
                .send(self.http.get(format!("{}/api/agent/requests/{id}", self.base)))
                .await;
            if body["state"] == until {
                return body;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("request {id} never became {until}");
    }

    /// A console call with the admin token.
    pub(crate) async fn console(&self, method: reqwest::Method, path: &str) -> (u16, Value) {
        json(
            self.http
                .request(method, format!("{}{path}", self.base))
                .bearer_auth(ADMIN),
        )
        .await
    }

    /// Request `id`'s DingTalk instance.
    pub(crate) async fn external_id(&self, id: &str) -> String {
        let (_, r) = self
            .console(reqwest::Method::GET, &format!("/api/console/requests/{id}"))
            .await;
        r["external_id"].as_str().unwrap().to_owned()
    }

    /// `GET /api/agent/grant-key`.
    pub(crate) async fn grant_keys(&self) -> Value {
        let (status, body) = json(self.http.get(format!("{}/api/agent/grant-key", self.base))).await;
        assert_eq!(status, 200, "{body}");
        body
    }

    pub(crate) async fn verifier(&self) -> GrantVerifier {
        GrantVerifier::from_hex(self.grant_keys().await["public_key"].as_str().unwrap()).unwrap()
    }

    /// The online step before uninstalling.
    pub(crate) async fn consume(&self, grant: &SignedGrant) -> (u16, Value) {
        self.post("/api/agent/grants/consume", &json!({ "grant": grant }))
            .await
    }

    /// Every key the server says grants may be signed with.
    pub(crate) async fn verifiers(&self) -> Vec<GrantVerifier> {
        self.grant_keys().await["public_keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| GrantVerifier::from_hex(k.as_str().unwrap()).unwrap())
            .collect()
    }

    /// Has the approver refuse request `id` in DingTalk and waits until the server knows.
    pub(crate) async fn refused(&self, mock: &MockDingTalk, id: &str) -> Value {
        mock.refuse(&self.external_id(id).await, None, Some("no"))
            .unwrap();
        self.poll(id, "rejected").await
    }

    /// Files a request, has the approver agree in DingTalk, and returns the grant.
    pub(crate) async fn approved_grant(&self, mock: &MockDingTalk) -> SignedGrant {
        let id = self.filed("reinstall").await;
        mock.approve(&self.external_id(&id).await, None, None).unwrap();
        serde_json::from_value(self.poll(&id, "approved").await["grant"].clone()).unwrap()
    }
}

/// A production `server.toml` after any top-level keys a test puts before it: the admin
/// token [`ADMIN`], [`WORKFLOW`] with the app's credentials (its API base a closed port:
/// nothing calls DingTalk), the device [`FILE_DEVICE`] (alice, an employee) and the test
/// policies.
pub(crate) fn production_toml() -> String {
    format!(
        r#"
admin_token = "{ADMIN}"

[[workflows]]
id = "{WORKFLOW}"
process_code = "{CODE}"
fields = {{ reason = "卸载原因" }}
[workflows.dingtalk]
client_id = "{APP}"
client_secret = "{SECRET}"
token = "{TOKEN}"
aes_key = "{AES_KEY}"
api_base = "http://127.0.0.1:9"

[[devices]]
token = "{FILE_DEVICE}"
device_id = "dev-file"
user_id = "alice"
groups = ["employees"]
{}
"#,
        policies_toml("policies.policies")
    )
}

/// Every console route, with a request that the role it needs is let through (whatever the
/// handler then answers), and that role: the role × route matrix of tests/admins.rs, which
/// tests/openapi.rs holds to the document's console routes (a route added is in both).
pub(crate) fn console_routes(request: &str) -> Vec<(Method, String, Option<Value>, &'static str)> {
    let policy = json!({"policy": {"id": "x"}, "version": 0});
    vec![
        (Method::GET, "/api/console/me".into(), None, "viewer"),
        (Method::GET, "/api/console/workflows".into(), None, "viewer"),
        (
            Method::GET,
            format!("/api/console/workflows/{WORKFLOW}"),
            None,
            "viewer",
        ),
        (Method::GET, "/api/console/policies".into(), None, "viewer"),
        (
            Method::GET,
            "/api/console/policies/employees".into(),
            None,
            "viewer",
        ),
        (Method::GET, "/api/console/devices".into(), None, "viewer"),
        (Method::GET, "/api/console/directory".into(), None, "viewer"),
        (Method::POST, "/api/console/directory/sync".into(), None, "admin"),
        (
            Method::GET,
            "/api/console/devices/dev-alice".into(),
            None,
            "viewer",
        ),
        (
            Method::GET,
            "/api/console/enrollment-codes".into(),
            None,
            "viewer",
        ),
        (Method::GET, "/api/console/dingtalk/usage".into(), None, "viewer"),
        (
            Method::POST,
            "/api/console/dingtalk/form".into(),
            Some(json!({"process_code": "PROC-TEST", "workflow": "wf-dingtalk"})),
            "admin",
        ),
        (Method::GET, "/api/console/requests".into(), None, "viewer"),
        (
            Method::GET,
            format!("/api/console/requests/{request}"),
            None,
            "viewer",
        ),
        (Method::GET, "/api/console/me/tokens".into(), None, "viewer"),
        (
            Method::POST,
            "/api/console/me/tokens".into(),
            Some(json!({"label": "row"})),
            "viewer",
        ),
        (
            Method::DELETE,
            "/api/console/me/tokens/tok-none".into(),
            None,
            "viewer",
        ),
        (Method::POST, "/api/console/logout".into(), None, "viewer"),
        (Method::GET, "/api/console/audit".into(), None, "admin"),
        (Method::GET, "/api/console/audit/export".into(), None, "admin"),
        (Method::GET, "/api/console/audit/verify".into(), None, "admin"),
        (
            Method::POST,
            format!("/api/console/requests/{request}/reject"),
            Some(json!({"remark": "matrix"})),
            "approver",
        ),
        (
            Method::PUT,
            "/api/console/workflows/wf-x".into(),
            Some(json!({"version": 0})),
            "admin",
        ),
        (
            Method::DELETE,
            "/api/console/workflows/wf-x?version=1".into(),
            None,
            "admin",
        ),
        (
            Method::PUT,
            "/api/console/policies/x".into(),
            Some(policy),
            "admin",
        ),
        (
            Method::DELETE,
            "/api/console/policies/x?version=1".into(),
            None,
            "admin",
        ),
        (
            Method::POST,
            "/api/console/policies/preview".into(),
            Some(json!({"delete": "x"})),
            "admin",
        ),
        (
            Method::POST,
            "/api/console/enrollment-codes".into(),
            Some(json!({"user_id": "u"})),
            "admin",
        ),
        (
            Method::PUT,
            "/api/console/devices/NOPE/tags".into(),
            Some(json!({"tags": [], "version": 1})),
            "admin",
        ),
        (
            Method::POST,
            "/api/console/devices/NOPE/revoke".into(),
            Some(json!({"version": 1})),
            "admin",
        ),
        (Method::GET, "/api/console/export".into(), None, "admin"),
        (Method::GET, "/api/console/admins".into(), None, "admin"),
        (Method::GET, "/api/console/admins/ada".into(), None, "admin"),
        (
            Method::POST,
            "/api/console/admins".into(),
            Some(json!({"name": "x"})),
            "admin",
        ),
        (
            Method::PUT,
            "/api/console/admins/nobody".into(),
            Some(json!({"version": 1})),
            "admin",
        ),
        (
            Method::DELETE,
            "/api/console/admins/nobody?version=1".into(),
            None,
            "admin",
        ),
    ]
}
