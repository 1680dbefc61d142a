//! Workflows as data, over real HTTP on 127.0.0.1 with the mock DingTalk: an admin does every
//! step on a running server, with no restart (create a DingTalk workflow, read its Request
//! URL, save it in DingTalk, which sends `check_url`; set a policy on it; enroll a device;
//! the device files; the approver agrees); saving checks the workflow against DingTalk's live
//! form, answering every problem with its path; secrets are write-only (in no answer, no log
//! line, and sealed at rest); stale versions are refused; a change on one server is in force
//! on another on the same database within its poll; the export gives the configuration back.

#![expect(
    clippy::unwrap_used,
    reason = "a test fails loudly on the first unexpected value"
)]

use dingtalk_sdk::mock::{MockApp, MockDingTalk, MockFormField, MockProcess};
use sase_approval_server::{self as server, Config, Server};
use serde_json::{json, Value};
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::{credentialed_config, json, mock_builder, start_with, Agent, ADMIN};

mod support;

/// The second DingTalk app, whose workflow the admin creates through the console.
const APP2: &str = "dingsecondapp";
const SECRET2: &str = "second-app-secret-9f8e7d6c5b4a";
const TOKEN2: &str = "secondsignaturetoken";
const AES2: &str = "Zx8cV7bN6mQ5wE4rT3yU2iO1pA0sD9fG8hJ7kL6zXcV";
/// Its uninstall form.
const CODE2: &str = "PROC-SECOND";

/// The mock with the test app and a second app with its own form (`原因说明` required).
async fn mock2() -> MockDingTalk {
    mock_builder()
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
        .unwrap()
}

/// The second app's workflow as the console takes it.
fn second(mock: &MockDingTalk) -> Value {
    json!({
        "id": "wf-second", "name": "Uninstall (second app)", "delivery": "http_push",
        "process_code": CODE2,
        "fields": {"device": "设备", "reason": "原因说明"},
        "dingtalk": {
            "client_id": APP2, "client_secret": SECRET2, "token": TOKEN2, "aes_key": AES2,
            "api_base": mock.base_url(),
        },
    })
}

/// A policy sending the `contractors` group to `workflow`.
fn contractors(workflow: &str) -> Value {
    let prompt = |title: &str| json!({"title": title, "content": "c", "primary_button": "File", "secondary_button": "Cancel"});
    json!({
        "id": "contractors", "name": "Contractors", "priority": 5,
        "switches": {"anti_uninstall": true},
        "scope": {"groups": ["contractors"]},
        "approval": {"allow_filing": true, "workflow": workflow},
        "prompt": {"zh-CN": prompt("需要审批"), "en-US": prompt("Approval needed")},
    })
}

/// The console, with every answer kept to look for secrets in.
struct Console {
    http: reqwest::Client,
    base: String,
    answers: Mutex<Vec<String>>,
}

impl Console {
    fn new(server: &Server) -> Self {
        Self {
            http: reqwest::Client::new(),
            base: format!("http://{}", server.addr),
            answers: Mutex::default(),
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(ADMIN);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let (status, _, body) = support::send(req).await;
        let text = String::from_utf8(body).unwrap();
        self.answers.lock().unwrap().push(text.clone());
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    async fn put(&self, workflow: &Value, version: u64) -> (u16, Value) {
        let path = format!("/api/console/workflows/{}", workflow["id"].as_str().unwrap());
        self.call(
            reqwest::Method::PUT,
            &path,
            Some(json!({"workflow": workflow, "version": version})),
        )
        .await
    }

    /// An enrollment code for dora (a contractor), exchanged for `LAPTOP-DORA`'s token: her
    /// agent.
    async fn enroll_dora(&self, server: &Server) -> Agent {
        let (status, code) = self
            .call(
                reqwest::Method::POST,
                "/api/console/enrollment-codes",
                Some(json!({"user_id": "dora", "groups": ["contractors"]})),
            )
            .await;
        assert_eq!(status, 201, "{code}");
        let (status, enrolled) = json(
            self.http
                .post(format!("{}/api/agent/enroll", self.base))
                .json(&json!({"code": code.get("code"), "device_id": "LAPTOP-DORA"})),
        )
        .await;
        assert_eq!(status, 201, "{enrolled}");
        let token: &'static str = Box::leak(
            enrolled
                .get("device_token")
                .and_then(Value::as_str)
                .unwrap()
                .to_owned()
                .into_boxed_str(),
        );
        Agent::new(server, token)
    }

    fn answers(&self) -> String {
        self.answers.lock().unwrap().join("\n")
    }
}

/// Log lines captured by a subscriber on the test's thread (the runtime is current-thread,
/// so every task of the server logs there).
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// The paths of the problems a 422 answer lists.
fn problems(answer: &Value) -> Vec<String> {
    answer["problems"]
        .as_array()
        .unwrap_or(&Vec::new())
        .iter()
        .map(|p| p["path"].as_str().unwrap().to_owned())
        .collect()
}

/// Every secret of both apps.
const SECRETS: [&str; 6] = [
    support::SECRET,
    support::TOKEN,
    support::AES_KEY,
    SECRET2,
    TOKEN2,
    AES2,
];

#[tokio::test]
async fn an_admin_sets_up_a_workflow_a_policy_and_a_device_on_a_running_server() {
    let logs = Captured::default();
    let writer = logs.clone();
    let _logging = tracing::subscriber::set_default(
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish(),
    );
    let mock = mock2().await;
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("w.sqlite");
    let server = start_with(&mock, credentialed_config(&mock, &database)).await;
    let console = Console::new(&server);

    // 1. The workflow, checked against the second app's live form before it is saved.
    let (status, created) = console.put(&second(&mock), 0).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(
        (
            &created["version"],
            &created["verification"]["status"],
            &created["event_subscriptions"]
        ),
        (
            &json!(1),
            &json!("verified"),
            &json!(["/v1.0/event/bpms_instance_change/processCode/PROC-SECOND/type/*"])
        ),
        "{created}"
    );
    let request_url = created["request_url"].as_str().unwrap().to_owned();
    assert!(
        request_url.starts_with(&console.base) && request_url.contains("/dingtalk/callback/"),
        "{request_url}"
    );

    // 2. The admin saves the Request URL in DingTalk: check_url reaches the new workflow.
    let saved = mock
        .register_app(
            MockApp::new(APP2, SECRET2)
                .events(TOKEN2, AES2)
                .request_url(&request_url),
        )
        .await
        .unwrap();
    assert!(saved.ok, "check_url round trip: {saved:?}");

    // 3. A policy on it, 4. a device enrolled with a code.
    let (status, policy) = console
        .call(
            reqwest::Method::PUT,
            "/api/console/policies/contractors",
            Some(json!({"policy": contractors("wf-second"), "version": 0})),
        )
        .await;
    assert_eq!(status, 201, "{policy}");
    let dora = console.enroll_dora(&server).await;

    // 5. Dora files: the instance is on the second app's form, the reason in its field.
    assert_eq!(dora.check().await["effect"], "require_approval");
    let id = dora.filed("a new laptop").await;
    let instance = dora.external_id(&id).await;
    let shown = mock.instance(&instance).unwrap();
    assert_eq!(
        (&shown["title"], &shown["approverUserIds"]),
        (&json!("dora提交的客户端卸载"), &json!(["approver2"])),
        "the second app's form: {shown}"
    );
    assert!(
        shown.to_string().contains("原因说明") && shown.to_string().contains("a new laptop"),
        "{shown}"
    );

    // 6. The approver agrees: the event reaches the new Request URL and decides.
    mock.approve(&instance, None, None).unwrap();
    assert!(dora.poll(&id, "approved").await["grant"].is_object());

    // An update may leave the secrets out: the stored ones stay. A stale one is refused.
    let mut renamed = second(&mock);
    renamed["name"] = json!("Uninstall (renamed)");
    for secret in ["client_secret", "token", "aes_key"] {
        renamed["dingtalk"].as_object_mut().unwrap().remove(secret);
    }
    let (status, updated) = console.put(&renamed, 1).await;
    assert_eq!(
        (status, &updated["version"], &updated["request_url"]),
        (200, &json!(2), &json!(request_url)),
        "the Request URL stays: {updated}"
    );
    let (status, stale) = console.put(&renamed, 1).await;
    assert_eq!(
        (status, &stale["error"]),
        (409, &json!("stale_version")),
        "{stale}"
    );
    let (status, again) = console.put(&renamed, 0).await;
    assert_eq!(
        (status, &again["error"]),
        (409, &json!("stale_version")),
        "{again}"
    );
    let id2 = dora.filed("after the rename").await;
    assert_ne!(id2, id);

    // The export gives the configuration back, secrets left out; with them it starts.
    let (status, export) = console
        .call(reqwest::Method::GET, "/api/console/export", None)
        .await;
    assert_eq!(status, 200);
    let export = export.as_str().unwrap().to_owned();
    let mut exported: Config = toml_with_secrets(&export);
    let ids: Vec<&str> = exported.workflows.iter().map(|w| w.id.as_str()).collect();
    assert_eq!(ids, ["wf-dingtalk", "wf-second"], "{export}");
    let policies: Vec<String> = exported
        .policies
        .as_ref()
        .unwrap()
        .policies
        .iter()
        .map(|p| p.id.to_string())
        .collect();
    assert_eq!(policies, ["kiosks", "employees", "contractors"], "{export}");
    exported.admin_token = Some(ADMIN.into());
    exported.validate().unwrap();

    let (status, list) = console
        .call(reqwest::Method::GET, "/api/console/workflows", None)
        .await;
    assert_eq!((status, list.as_array().map(Vec::len)), (200, Some(2)), "{list}");

    // A workflow a policy names is not deleted.
    let (status, in_use) = console
        .call(
            reqwest::Method::DELETE,
            "/api/console/workflows/wf-second?version=2",
            None,
        )
        .await;
    assert_eq!(
        (status, &in_use["error"]),
        (409, &json!("workflow_in_use")),
        "{in_use}"
    );

    // Nor one with an open request; once it is decided, the workflow goes, and its Request
    // URL with it.
    let (status, _) = console
        .call(
            reqwest::Method::DELETE,
            "/api/console/policies/contractors?version=1",
            None,
        )
        .await;
    assert_eq!(status, 204);
    let (status, open) = console
        .call(
            reqwest::Method::DELETE,
            "/api/console/workflows/wf-second?version=2",
            None,
        )
        .await;
    assert_eq!(
        (status, &open["error"]),
        (409, &json!("workflow_in_use")),
        "{open}"
    );
    assert!(
        open["message"].as_str().unwrap().contains("1 request(s)"),
        "{open}"
    );
    mock.approve(&dora.external_id(&id2).await, None, None).unwrap();
    dora.poll(&id2, "approved").await;
    let (status, _) = console
        .call(
            reqwest::Method::DELETE,
            "/api/console/workflows/wf-second?version=2",
            None,
        )
        .await;
    assert_eq!(status, 204);
    let gone = console.http.post(&request_url).body("{}").send().await.unwrap();
    assert_eq!(gone.status(), 404, "its Request URL is gone");
    server.shutdown().await.unwrap();

    // Secrets: in no answer, no log line, and not in the database's file in the clear.
    let answers = console.answers();
    let logged = logs.text();
    assert!(
        logged.contains("workflow saved"),
        "the logs were captured: {logged}"
    );
    let mut stored = Vec::new();
    for file in ["w.sqlite", "w.sqlite-wal"] {
        if let Ok(bytes) = std::fs::read(dir.path().join(file)) {
            stored.extend(bytes);
        }
    }
    let stored = String::from_utf8_lossy(&stored);
    assert!(stored.contains("wf-second"), "the database holds the workflow");
    for secret in SECRETS {
        assert!(!answers.contains(secret), "{secret} in an answer");
        assert!(!export.contains(secret), "{secret} in the export");
        assert!(!logged.contains(secret), "{secret} in the logs");
        assert!(!stored.contains(secret), "{secret} stored in the clear");
    }
}

/// The export, with each workflow's secrets added as its comment asks, parsed as
/// `server.toml`.
fn toml_with_secrets(export: &str) -> Config {
    let mut text = String::new();
    let mut app = None;
    for line in export.lines() {
        text.push_str(line);
        text.push('\n');
        if line.starts_with("client_id = ") {
            app = Some(line.contains(APP2));
        }
        if line == "[workflows.dingtalk]" {
            app = None;
        }
        if let Some(second) = app.take() {
            let (secret, token, aes) = if second {
                (SECRET2, TOKEN2, AES2)
            } else {
                (support::SECRET, support::TOKEN, support::AES_KEY)
            };
            text.push_str(&format!(
                "client_secret = \"{secret}\"\ntoken = \"{token}\"\naes_key = \"{aes}\"\n"
            ));
        }
    }
    Config::from_toml(&text, "export.toml").unwrap()
}

#[tokio::test]
async fn saving_checks_the_workflow_against_dingtalks_live_form() {
    let mock = mock2().await;
    let dir = tempfile::tempdir().unwrap();
    let server = start_with(&mock, credentialed_config(&mock, &dir.path().join("c.sqlite"))).await;
    let console = Console::new(&server);

    // The three mistakes a new user made, each caught when saved, with its path.
    let mut wrong_secret = second(&mock);
    wrong_secret["dingtalk"]["client_secret"] = json!("a-mistyped-secret");
    let (status, answer) = console.put(&wrong_secret, 0).await;
    assert_eq!(status, 422, "{answer}");
    assert_eq!(problems(&answer), ["workflow.dingtalk.client_secret"], "{answer}");
    assert!(
        answer["message"]
            .as_str()
            .unwrap()
            .contains("invalidClientIdOrSecret"),
        "{answer}"
    );
    assert!(!answer.to_string().contains("a-mistyped-secret"), "{answer}");

    let mut misspelt = second(&mock);
    misspelt["fields"]["reason"] = json!("原因说朋");
    let (status, answer) = console.put(&misspelt, 0).await;
    assert_eq!(status, 422, "{answer}");
    assert_eq!(
        problems(&answer),
        ["workflow.fields.reason", "workflow.fields"],
        "the label, and the required field left unmapped: {answer}"
    );

    let mut no_reason = second(&mock);
    no_reason["fields"] = json!({"device": "设备"});
    let (status, answer) = console.put(&no_reason, 0).await;
    assert_eq!(status, 422, "{answer}");
    assert!(
        problems(&answer).contains(&"workflow.fields.reason".to_owned()),
        "{answer}"
    );

    // What the configuration's rules refuse, before DingTalk is asked.
    let mut short_key = second(&mock);
    short_key["dingtalk"]["aes_key"] = json!("tooshort");
    let (status, answer) = console.put(&short_key, 0).await;
    assert_eq!(
        (status, problems(&answer)),
        (422, vec!["workflow.dingtalk.aes_key".to_owned()]),
        "{answer}"
    );
    let mut no_app = second(&mock);
    no_app.as_object_mut().unwrap().remove("dingtalk");
    let (status, answer) = console.put(&no_app, 0).await;
    assert_eq!(
        (status, problems(&answer)),
        (422, vec!["workflow.dingtalk".to_owned()]),
        "{answer}"
    );
    let mut same_app_other_subscription = second(&mock);
    same_app_other_subscription["dingtalk"] = json!({
        "client_id": support::APP, "client_secret": support::SECRET, "token": "another-token",
        "aes_key": support::AES_KEY, "api_base": mock.base_url(),
    });
    let (status, answer) = console.put(&same_app_other_subscription, 0).await;
    assert_eq!(
        (status, problems(&answer)),
        (422, vec!["workflow.dingtalk".to_owned()]),
        "{answer}"
    );

    // A misspelt key is named; so is a URL that is not the workflow's.
    let mut misspelt_key = second(&mock);
    misspelt_key["dingtalk"]["clent_secret"] = json!("x");
    let (status, answer) = console.put(&misspelt_key, 0).await;
    assert_eq!((status, &answer["error"]), (400, &json!("bad_body")), "{answer}");
    assert!(
        answer["message"]
            .as_str()
            .unwrap()
            .contains("workflow.dingtalk.clent_secret"),
        "{answer}"
    );
    let (status, answer) = console
        .call(
            reqwest::Method::PUT,
            "/api/console/workflows/wf-other",
            Some(json!({"workflow": second(&mock), "version": 0})),
        )
        .await;
    assert_eq!((status, &answer["error"]), (400, &json!("bad_body")), "{answer}");

    // Nothing refused was saved.
    let (_, list) = console
        .call(reqwest::Method::GET, "/api/console/workflows", None)
        .await;
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");

    // DingTalk unreachable: saved, shown unverified.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let unreachable = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let mut offline = second(&mock);
    offline["dingtalk"]["api_base"] = json!(unreachable);
    let (status, answer) = console.put(&offline, 0).await;
    assert_eq!(
        (status, &answer["verification"]["status"]),
        (201, &json!("unverified")),
        "{answer}"
    );
    server.shutdown().await.unwrap();
}

/// A server on the test configuration and `database`, polling every second.
async fn replica(mock: &MockDingTalk, database: &std::path::Path) -> Server {
    let mut config = credentialed_config(mock, database);
    config.reload_every_secs = 1;
    server::start(config).await.unwrap()
}

/// Waits up to 5 s for `ready`.
async fn eventually<F: std::future::Future<Output = bool>>(mut ready: impl FnMut() -> F) -> Duration {
    let since = Instant::now();
    while !ready().await {
        assert!(since.elapsed() < Duration::from_secs(5), "not within 5 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    since.elapsed()
}

#[tokio::test]
async fn a_workflow_saved_on_one_server_is_served_by_another_within_its_poll() {
    let mock = mock2().await;
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("r.sqlite");
    let a = replica(&mock, &database).await;
    let b = replica(&mock, &database).await;
    let (on_a, on_b) = (Console::new(&a), Console::new(&b));
    let (status, created) = on_a.put(&second(&mock), 0).await;
    assert_eq!(status, 201, "{created}");
    let path = created["callback_path"].as_str().unwrap().to_owned();

    // B serves the Request URL: an unsigned push is refused by the workflow's route (400),
    // not an unknown path (404).
    let http = reqwest::Client::new();
    let took = eventually(|| {
        let url = format!("{}{path}", on_b.base);
        let http = http.clone();
        async move { http.post(url).body("{}").send().await.unwrap().status() == 400 }
    })
    .await;
    assert!(took < Duration::from_secs(3), "{took:?}");
    let (status, seen) = on_b
        .call(reqwest::Method::GET, "/api/console/workflows/wf-second", None)
        .await;
    assert_eq!((status, &seen["version"]), (200, &json!(1)), "{seen}");

    // A policy on B may name it; deleted on A, B stops serving it.
    let (status, _) = on_b
        .call(
            reqwest::Method::PUT,
            "/api/console/policies/contractors",
            Some(json!({"policy": contractors("wf-second"), "version": 0})),
        )
        .await;
    assert_eq!(status, 201);
    let (status, _) = on_b
        .call(
            reqwest::Method::DELETE,
            "/api/console/policies/contractors?version=1",
            None,
        )
        .await;
    assert_eq!(status, 204);
    let (status, _) = on_a
        .call(
            reqwest::Method::DELETE,
            "/api/console/workflows/wf-second?version=1",
            None,
        )
        .await;
    assert_eq!(status, 204);
    eventually(|| {
        let url = format!("{}{path}", on_b.base);
        let http = http.clone();
        async move { http.post(url).body("{}").send().await.unwrap().status() == 404 }
    })
    .await;
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
}

/// Two servers as replicas on one PostgreSQL database (the replicas' set-up: one grant key and
/// one secrets key, from the environment's variables): a workflow saved on one and a policy
/// saved on the other are in force on both within their poll.
#[cfg(feature = "postgres")]
#[tokio::test]
async fn on_postgresql_a_change_on_one_replica_is_in_force_on_the_other() {
    let Some(db) = support::postgres::TempDb::new().await else {
        return;
    };
    let mock = mock2().await;
    let dir = tempfile::tempdir().unwrap();
    let (grant_seed, secrets_key) = (
        hex::encode(rand::random::<[u8; 32]>()),
        hex::encode(rand::random::<[u8; 32]>()),
    );
    let start = || {
        let mut config = credentialed_config(&mock, &dir.path().join("unused.sqlite"));
        config.database.clone_from(&db.url);
        config.grant_keys = Some(grant_seed.clone());
        config.secrets_key = Some(secrets_key.clone());
        config.reload_every_secs = 1;
        server::start(config)
    };
    let a = start().await.unwrap();
    let b = start().await.unwrap();
    let (on_a, on_b) = (Console::new(&a), Console::new(&b));

    let (status, created) = on_a.put(&second(&mock), 0).await;
    assert_eq!(status, 201, "{created}");
    let path = created["callback_path"].as_str().unwrap().to_owned();
    let http = reqwest::Client::new();
    eventually(|| {
        let url = format!("{}{path}", on_b.base);
        let http = http.clone();
        async move { http.post(url).body("{}").send().await.unwrap().status() == 400 }
    })
    .await;

    // DingTalk pushes to B (the balancer may send a push to any replica).
    let saved = mock
        .register_app(
            MockApp::new(APP2, SECRET2)
                .events(TOKEN2, AES2)
                .request_url(format!("{}{path}", on_b.base)),
        )
        .await
        .unwrap();
    assert!(saved.ok, "check_url on B: {saved:?}");

    // The policy saved on B names the workflow saved on A, and decides on A.
    let (status, saved) = on_b
        .call(
            reqwest::Method::PUT,
            "/api/console/policies/contractors",
            Some(json!({"policy": contractors("wf-second"), "version": 0})),
        )
        .await;
    assert_eq!(status, 201, "{saved}");
    let carl = Agent::new(&a, "tok-contractor");
    eventually(|| async { carl.check().await["effect"] == "require_approval" }).await;
    let id = carl.filed("on replica A").await;
    mock.approve(&carl.external_id(&id).await, None, None).unwrap();
    // Applied on B, seen by the agent on A.
    carl.poll(&id, "approved").await;
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
}

/// A Stream-mode workflow saved on a running server opens its app's connection at once and
/// decides over it; deleted, the connection closes.
#[tokio::test]
async fn a_stream_workflow_saved_at_runtime_opens_and_closes_its_connection() {
    let mock = mock2().await;
    let dir = tempfile::tempdir().unwrap();
    let server = start_with(&mock, credentialed_config(&mock, &dir.path().join("s.sqlite"))).await;
    let console = Console::new(&server);
    assert_eq!(
        mock.gateway().connection_count(),
        0,
        "the file's workflow is HTTP push"
    );
    assert!(mock
        .register_app(MockApp::new(APP2, SECRET2).events(TOKEN2, AES2).stream(true))
        .await
        .is_none());

    let mut streamed = second(&mock);
    streamed["delivery"] = json!("stream");
    let (status, created) = console.put(&streamed, 0).await;
    assert_eq!(
        (status, &created["request_url"]),
        (201, &Value::Null),
        "{created}"
    );
    assert!(
        mock.gateway()
            .wait_for(Duration::from_secs(5), |g| g.connection_count() == 1)
            .await,
        "the app's Stream connection opened"
    );
    let (status, _) = console
        .call(
            reqwest::Method::PUT,
            "/api/console/policies/contractors",
            Some(json!({"policy": contractors("wf-second"), "version": 0})),
        )
        .await;
    assert_eq!(status, 201);
    let carl = Agent::new(&server, "tok-contractor");
    let id = carl.filed("over stream").await;
    mock.approve(&carl.external_id(&id).await, None, None).unwrap();
    carl.poll(&id, "approved").await;

    let (status, _) = console
        .call(
            reqwest::Method::DELETE,
            "/api/console/policies/contractors?version=1",
            None,
        )
        .await;
    assert_eq!(status, 204);
    let (status, _) = console
        .call(
            reqwest::Method::DELETE,
            "/api/console/workflows/wf-second?version=1",
            None,
        )
        .await;
    assert_eq!(status, 204);
    assert!(
        mock.gateway()
            .wait_for(Duration::from_secs(5), |g| g.connection_count() == 0)
            .await,
        "the connection closed with the app's last Stream workflow"
    );
    server.shutdown().await.unwrap();
}

/// Built-in workflows: decided in the console, only by their named approvers (the admin
/// token's holder is the console's one identity, `console-admin`, until named admins).
#[tokio::test]
async fn a_built_in_workflow_is_decided_in_the_console_by_its_approvers() {
    let mock = mock2().await;
    let dir = tempfile::tempdir().unwrap();
    let server = start_with(&mock, credentialed_config(&mock, &dir.path().join("b.sqlite"))).await;
    let console = Console::new(&server);
    for (workflow, path) in [
        (json!({"id": "wf-desk", "type": "builtin"}), "workflow.approvers"),
        (
            json!({"id": "wf-desk", "type": "builtin", "approvers": ["console-admin"], "process_code": "PROC-X"}),
            "workflow.process_code",
        ),
        (
            json!({"id": "wf-desk", "approvers": ["console-admin"], "process_code": CODE2,
                   "fields": {"reason": "原因说明"}, "dingtalk": second(&mock)["dingtalk"]}),
            "workflow.approvers",
        ),
    ] {
        let (status, answer) = console.put(&workflow, 0).await;
        assert_eq!(
            (status, problems(&answer)),
            (422, vec![path.to_owned()]),
            "{answer}"
        );
    }

    let desk = json!({"id": "wf-desk", "name": "IT desk", "type": "builtin", "approvers": ["console-admin"]});
    let (status, created) = console.put(&desk, 0).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(
        (
            &created["type"],
            &created["request_url"],
            &created["verification"]
        ),
        (&json!("builtin"), &Value::Null, &Value::Null),
        "{created}"
    );
    let lead = json!({"id": "wf-lead", "type": "builtin", "approvers": ["security-lead"]});
    assert_eq!(console.put(&lead, 0).await.0, 201);

    let (status, _) = console
        .call(
            reqwest::Method::PUT,
            "/api/console/policies/contractors",
            Some(json!({"policy": contractors("wf-desk"), "version": 0})),
        )
        .await;
    assert_eq!(status, 201);
    let carl = Agent::new(&server, "tok-contractor");
    let id = carl.filed("decided at the desk").await;
    let (status, approved) = console
        .call(
            reqwest::Method::POST,
            &format!("/api/console/requests/{id}/approve"),
            None,
        )
        .await;
    assert_eq!(
        (status, &approved["state"]),
        (200, &json!("approved")),
        "{approved}"
    );
    assert!(carl.poll(&id, "approved").await["grant"].is_object());

    // A workflow whose approvers do not include the console's identity: it may revoke only.
    let (status, _) = console
        .call(
            reqwest::Method::PUT,
            "/api/console/policies/contractors",
            Some(json!({"policy": contractors("wf-lead"), "version": 1})),
        )
        .await;
    assert_eq!(status, 200);
    let id = carl.filed("for the security lead").await;
    let (status, refused) = console
        .call(
            reqwest::Method::POST,
            &format!("/api/console/requests/{id}/approve"),
            None,
        )
        .await;
    assert_eq!(
        (status, &refused["error"]),
        (403, &json!("not_an_approver")),
        "{refused}"
    );
    let (status, revoked) = console
        .call(
            reqwest::Method::POST,
            &format!("/api/console/requests/{id}/revoke"),
            None,
        )
        .await;
    assert_eq!((status, &revoked["state"]), (200, &json!("revoked")), "{revoked}");
    assert_eq!(mock.instance_ids().len(), 0, "nothing reached DingTalk");
    server.shutdown().await.unwrap();
}

/// A workflow saved while DingTalk fails is saved unverified, and verified once DingTalk
/// answers again.
#[tokio::test]
async fn a_workflow_saved_while_dingtalk_fails_is_checked_again_until_verified() {
    let mock = mock2().await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = credentialed_config(&mock, &dir.path().join("u.sqlite"));
    config.workflow_check_every_secs = 1;
    let server = start_with(&mock, config).await;
    let console = Console::new(&server);
    mock.set_faults(dingtalk_sdk::mock::MockFaults {
        server_error_next: 1_000,
        ..Default::default()
    });
    let (status, saved) = console.put(&second(&mock), 0).await;
    assert_eq!(
        (status, &saved["verification"]["status"]),
        (201, &json!("unverified")),
        "{saved}"
    );
    mock.set_faults(dingtalk_sdk::mock::MockFaults::default());
    eventually(|| async {
        let (_, now) = console
            .call(reqwest::Method::GET, "/api/console/workflows/wf-second", None)
            .await;
        now["verification"]["status"] == "verified"
    })
    .await;
    server.shutdown().await.unwrap();
}

/// The console offers a form's live fields when an admin maps a workflow: read with the app
/// typed in (a workflow not saved yet) or with a saved workflow's stored secret; DingTalk's
/// refusals reach the admin as they are.
#[tokio::test]
async fn the_live_form_is_read_with_the_typed_or_the_stored_app() {
    let mock = mock2().await;
    let dir = tempfile::tempdir().unwrap();
    let server = start_with(&mock, credentialed_config(&mock, &dir.path().join("f.sqlite"))).await;
    let console = Console::new(&server);
    let form = |body: Value| console.call(reqwest::Method::POST, "/api/console/dingtalk/form", Some(body));

    // A new workflow: the app as typed.
    let (status, answer) = form(json!({"process_code": CODE2, "dingtalk": {
        "client_id": APP2, "client_secret": SECRET2, "api_base": mock.base_url()}}))
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer,
        json!({"name": "客户端卸载", "fields": [
            {"label": "设备", "component": "TextField", "required": false, "holds_text": true},
            {"label": "原因说明", "component": "TextareaField", "required": true, "holds_text": true},
        ]})
    );
    // A saved workflow's app, its secret left out (write-only): the stored one.
    let (status, answer) = form(json!({"process_code": support::CODE, "workflow": "wf-dingtalk",
        "dingtalk": {"client_id": support::APP, "api_base": mock.base_url()}}))
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["fields"][1]["label"], "卸载原因", "{answer}");
    let (status, answer) = form(json!({"process_code": support::CODE, "workflow": "wf-dingtalk"})).await;
    assert_eq!(
        (status, answer["name"].as_str()),
        (200, Some("卸载申请")),
        "{answer}"
    );

    // Refused: a wrong secret, an unknown form (DingTalk's words), no secret to use.
    let (status, answer) = form(json!({"process_code": CODE2, "dingtalk": {
        "client_id": APP2, "client_secret": "typo", "api_base": mock.base_url()}}))
    .await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (502, Some("dingtalk_error")),
        "{answer}"
    );
    assert!(
        answer["message"]
            .as_str()
            .unwrap()
            .contains("invalidClientIdOrSecret"),
        "{answer}"
    );
    let (status, answer) = form(json!({"process_code": "PROC-NOPE", "workflow": "wf-dingtalk"})).await;
    assert_eq!(status, 502, "{answer}");
    let (status, answer) = form(json!({"process_code": CODE2, "dingtalk": {"client_id": APP2}})).await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (400, Some("bad_body")),
        "{answer}"
    );
    assert!(
        answer["message"]
            .as_str()
            .unwrap()
            .contains("dingtalk.client_secret"),
        "{answer}"
    );
    let (status, answer) = form(json!({"process_code": CODE2, "workflow": "wf-nope"})).await;
    assert_eq!(status, 400, "{answer}");
    // Nothing to ask DingTalk about: refused before any call (schemathesis sent these).
    let before = mock.journal().len();
    for (body, at) in [
        (
            json!({"process_code": "", "workflow": "wf-dingtalk"}),
            "process_code",
        ),
        (
            json!({"process_code": CODE2, "dingtalk": {"client_id": "", "client_secret": "x"}}),
            "dingtalk.client_id",
        ),
    ] {
        let (status, answer) = form(body).await;
        assert_eq!(
            (status, answer["error"].as_str()),
            (400, Some("bad_body")),
            "{answer}"
        );
        assert!(answer["message"].as_str().unwrap().contains(at), "{answer}");
    }
    assert_eq!(mock.journal().len(), before, "no DingTalk call");
    server.shutdown().await.unwrap();
}

/// The second app's logoff form.
const CODE3: &str = "PROC-SECOND-LOGOFF";

/// A workflow maps a form per template: the `app_uninstall` form and, added, the
/// `app_logoff` form of the same app. Each form is checked against DingTalk with its own path;
/// a logoff request is created on the logoff form; a workflow without one refuses logoff
/// filings clearly instead of storing a request it can never create.
#[tokio::test]
async fn a_workflow_maps_a_second_form_for_logoff_requests() {
    let mock = mock2().await;
    mock.register_process(MockProcess::new(
        CODE3,
        "客户端退出登录",
        vec![
            MockFormField::new("设备", "TextField", false),
            MockFormField::new("退出原因", "TextareaField", true),
        ],
        vec!["approver3".into()],
    ));
    let dir = tempfile::tempdir().unwrap();
    let server = start_with(&mock, credentialed_config(&mock, &dir.path().join("l.sqlite"))).await;
    let console = Console::new(&server);
    let with_logoff = |fields: Value, template: &str| {
        let mut w = second(&mock);
        w["mappings"] = json!([{"template": template, "process_code": CODE3, "fields": fields}]);
        w
    };

    // Each form is checked on its own, its problems named by its place in `mappings`.
    let (status, answer) = console
        .put(&with_logoff(json!({"reason": "退出原由"}), "app_logoff"), 0)
        .await;
    assert_eq!(status, 422, "{answer}");
    assert_eq!(
        problems(&answer),
        [
            "workflow.mappings[0].fields.reason",
            "workflow.mappings[0].fields"
        ],
        "{answer}"
    );
    for (template, reason) in [
        ("app_uninstall", "mapped twice"),
        ("app_reboot", "unknown template"),
    ] {
        let (status, answer) = console
            .put(&with_logoff(json!({"reason": "退出原因"}), template), 0)
            .await;
        assert_eq!(
            (status, problems(&answer)),
            (422, vec!["workflow.mappings[0].template".to_owned()]),
            "{answer}"
        );
        assert!(answer.to_string().contains(reason), "{answer}");
    }
    let (status, created) = console
        .put(
            &with_logoff(json!({"reason": "退出原因", "device": "设备"}), "app_logoff"),
            0,
        )
        .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["verification"]["status"], "verified", "{created}");
    let templates: Vec<&Value> = created["mappings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| &m["template"])
        .collect();
    assert_eq!(templates, [&json!("app_uninstall"), &json!("app_logoff")]);
    assert_eq!(
        created["event_subscriptions"],
        json!([
            format!("/v1.0/event/bpms_instance_change/processCode/{CODE2}/type/*"),
            format!("/v1.0/event/bpms_instance_change/processCode/{CODE3}/type/*"),
        ]),
        "one subscription per form: {created}"
    );
    let request_url = created["request_url"].as_str().unwrap().to_owned();
    let app = MockApp::new(APP2, SECRET2)
        .events(TOKEN2, AES2)
        .request_url(&request_url);
    assert!(mock.register_app(app).await.unwrap().ok);

    // Logging off needs approval too, on this workflow.
    let mut policy = contractors("wf-second");
    policy["switches"]["anti_logoff"] = json!(true);
    let (status, answer) = console
        .call(
            reqwest::Method::PUT,
            "/api/console/policies/contractors",
            Some(json!({"policy": policy, "version": 0})),
        )
        .await;
    assert_eq!(status, 201, "{answer}");
    let dora = console.enroll_dora(&server).await;
    let (status, logoff) = dora
        .post(
            "/api/agent/requests",
            &json!({"reason": "handing the laptop back", "action": "logoff"}),
        )
        .await;
    assert_eq!(status, 201, "{logoff}");
    let logoff = logoff["id"].as_str().unwrap().to_owned();
    let instance = dora.external_id(&logoff).await;
    let shown = mock.instance(&instance).unwrap();
    assert_eq!(
        (&shown["title"], &shown["approverUserIds"]),
        (&json!("dora提交的客户端退出登录"), &json!(["approver3"])),
        "the logoff form: {shown}"
    );
    assert!(shown.to_string().contains("退出原因"), "{shown}");
    // An uninstall request is another action: its own request, on the uninstall form.
    let uninstall = dora.filed("and uninstall").await;
    assert_ne!(uninstall, logoff);
    let shown = mock.instance(&dora.external_id(&uninstall).await).unwrap();
    assert_eq!(shown["title"], "dora提交的客户端卸载", "{shown}");
    mock.approve(&instance, None, None).unwrap();
    let approved = dora.poll(&logoff, "approved").await;
    assert_eq!(approved["grant"]["grant"]["action"], "logoff", "{approved}");

    // The test configuration's workflow maps only the uninstall form: a logoff filing on it
    // is refused, and nothing is stored.
    let mut on_first = contractors("wf-dingtalk");
    on_first["id"] = json!("first");
    on_first["priority"] = json!(9);
    on_first["switches"]["anti_logoff"] = json!(true);
    let (status, answer) = console
        .call(
            reqwest::Method::PUT,
            "/api/console/policies/first",
            Some(json!({"policy": on_first, "version": 0})),
        )
        .await;
    assert_eq!(status, 201, "{answer}");
    let (_, before) = console
        .call(reqwest::Method::GET, "/api/console/requests", None)
        .await;
    let (status, refused) = dora
        .post(
            "/api/agent/requests",
            &json!({"reason": "again", "action": "logoff"}),
        )
        .await;
    assert_eq!(
        (status, &refused["error"]),
        (400, &json!("invalid_request")),
        "{refused}"
    );
    assert!(
        refused["message"]
            .as_str()
            .unwrap()
            .contains("maps no DingTalk form for template `app_logoff`"),
        "{refused}"
    );
    let (_, after) = console
        .call(reqwest::Method::GET, "/api/console/requests", None)
        .await;
    assert_eq!(before["total"], after["total"], "nothing stored: {after}");
    server.shutdown().await.unwrap();
}
