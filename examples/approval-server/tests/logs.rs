//! The server's log lines, read from the real `approval-server` process with its output piped
//! (not a terminal), on its embedded demo defaults (the mock DingTalk in-process): one line
//! per lifecycle step with its fields, `--log-format json` writing only JSON objects, and the
//! text format with no colours and no Rust `Debug` of our types.

#![cfg(feature = "demo")]
#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test fails loudly on the first unexpected value"
)]

use serde_json::{json, Value};
use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};
use support::{ADMIN, AES_KEY, FILE_DEVICE, SECRET, TOKEN};

mod support;

const REASON: &str = "reinstalling the OS";

/// Lines the binary prints on stdout itself (not through the log): the address, the demo's
/// console login and tokens, and how to walk the flow.
const BANNER: [&str; 12] = [
    "SASE approval server on ",
    "Workflow ",
    "Web console:",
    "Admin token:",
    "Device token:",
    "Grant key:",
    "Walk the flow",
    "cargo run ",
    "or by hand:",
    "or enroll another device",
    "curl ",
    "(no device enrolled)",
];

fn is_banner(line: &str) -> bool {
    line.is_empty() || BANNER.iter().any(|p| line.starts_with(p))
}

/// A running `approval-server`, its stdout and stderr read line by line.
struct Process {
    child: Child,
    lines: mpsc::Receiver<String>,
    /// Log lines on stdout, or banner lines on stderr.
    misplaced: Arc<Mutex<Vec<String>>>,
    seen: Vec<String>,
    base: String,
    mock: String,
    admin: String,
    device: String,
    _dir: tempfile::TempDir,
}

impl Process {
    /// Starts the binary in a fresh directory on its demo defaults, plus `args` and `env`,
    /// and reads the demo's banner.
    fn start(args: &[&str], env: &[(&str, &str)], config: Option<&str>) -> Self {
        let mut process = Self::spawn(args, env, config);
        // The mock's approve line is the banner's last but one.
        process.wait_for("the banner", |l| {
            l.starts_with("curl ") && l.contains("/__mock/instances/<instanceId>/approve")
        });
        let after = |prefix: &str| {
            let line = process
                .seen
                .iter()
                .find_map(|l| l.strip_prefix(prefix))
                .unwrap_or_else(|| panic!("no `{prefix}` line in {:#?}", process.seen));
            line.split_whitespace().next().unwrap().to_owned()
        };
        let (base, admin, device) = (
            after("SASE approval server on "),
            after("Admin token:"),
            after("Device token:"),
        );
        let mock = process
            .seen
            .iter()
            .find_map(|l| l.strip_prefix("curl -s -X POST ")?.split_once("/__mock/"))
            .map(|(mock, _)| mock.to_owned())
            .unwrap();
        process.base = base;
        process.admin = admin;
        process.device = device;
        process.mock = mock;
        process
    }

    /// Starts the binary in a fresh directory, plus `args`, `env` and `config`.
    fn spawn(args: &[&str], env: &[(&str, &str)], config: Option<&str>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let database = dir.path().join("a.sqlite");
        let mut command = Command::new(env!("CARGO_BIN_EXE_approval-server"));
        command
            .current_dir(dir.path())
            .args([
                "--database",
                database.to_str().unwrap(),
                "--listen",
                "127.0.0.1:0",
            ])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(text) = config {
            let path = dir.path().join("server.toml");
            std::fs::write(&path, text).unwrap();
            command.arg("--config").arg(path);
        }
        // Whatever the developer's shell has: the default filter (info) and no overrides.
        for var in [
            "RUST_LOG",
            "NO_COLOR",
            "SASE_LISTEN",
            "SASE_DATABASE",
            "SASE_ADMIN_TOKEN",
            "SASE_GRANT_KEY_FILE",
            "SASE_DELIVERY",
            "SASE_TLS_CERT_FILE",
            "SASE_TLS_KEY_FILE",
            "SASE_LOG_FORMAT",
        ] {
            command.env_remove(var);
        }
        command.envs(env.iter().copied());
        let mut child = command.spawn().unwrap();
        let (tx, lines) = mpsc::channel();
        let misplaced = Arc::new(Mutex::new(Vec::new()));
        for (pipe, on_stdout) in [
            (
                Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
                true,
            ),
            (Box::new(child.stderr.take().unwrap()), false),
        ] {
            let (tx, misplaced) = (tx.clone(), Arc::clone(&misplaced));
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines() {
                    let Ok(line) = line else { break };
                    // The log is on stderr; stdout has only the banner.
                    if is_banner(&line) != on_stdout && !line.is_empty() {
                        misplaced.lock().unwrap().push(line.clone());
                    }
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        Self {
            child,
            lines,
            misplaced,
            seen: Vec::new(),
            base: String::new(),
            mock: String::new(),
            admin: String::new(),
            device: String::new(),
            _dir: dir,
        }
    }

    /// Reads lines until one matches `what`.
    fn wait_for(&mut self, what: &str, matches: impl Fn(&str) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let done = matches(&line);
                    self.seen.push(line);
                    if done {
                        return;
                    }
                }
                Err(e) => panic!("no {what} ({e}): {:#?}", self.seen),
            }
        }
    }

    /// Stops the server with SIGTERM and returns every line it wrote.
    fn stop(mut self) -> Vec<String> {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(20);
        let exit = loop {
            if let Some(exit) = self.child.try_wait().unwrap() {
                break exit;
            }
            if Instant::now() > deadline {
                self.child.kill().unwrap();
                panic!("the server did not stop on SIGTERM: {:#?}", self.seen);
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        // Both pipes are closed now: the readers end, and so does the channel.
        let mut seen = std::mem::take(&mut self.seen);
        seen.extend(self.lines.iter());
        assert!(exit.success(), "{exit}: {seen:#?}");
        let misplaced = self.misplaced.lock().unwrap();
        assert!(
            misplaced.is_empty(),
            "logs on stdout or banner on stderr: {misplaced:#?}"
        );
        seen
    }
}

impl Drop for Process {
    /// A failed test leaves no server behind.
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The walk's HTTP calls.
struct Client<'a> {
    http: reqwest::Client,
    server: &'a Process,
}

impl Client<'_> {
    fn request(
        &self,
        method: reqwest::Method,
        url: String,
        token: Option<&str>,
        body: Option<Value>,
    ) -> reqwest::RequestBuilder {
        let mut request = self.http.request(method, url);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        request
    }

    /// A call to the server, its answer checked against its OpenAPI document.
    async fn call(
        &self,
        method: reqwest::Method,
        url: String,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let (status, _, body) = support::send(self.request(method, url, token, body)).await;
        let text = String::from_utf8(body).unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    async fn agent(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let url = format!("{}{path}", self.server.base);
        self.call(method, url, Some(&self.server.device), body).await
    }

    async fn console(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let url = format!("{}{path}", self.server.base);
        self.call(method, url, Some(&self.server.admin), body).await
    }

    async fn mock(&self, method: reqwest::Method, path: &str, body: Value) -> u16 {
        let url = format!("{}{path}", self.server.mock);
        let request = self.request(method, url, None, Some(body));
        request.send().await.unwrap().status().as_u16()
    }

    /// Has the approver agree to `instance` on the mock.
    async fn approve(&self, instance: &str) {
        let status = self
            .mock(
                reqwest::Method::POST,
                &format!("/__mock/instances/{instance}/approve"),
                json!({}),
            )
            .await;
        assert_eq!(status, 200);
    }

    /// Files a request; its id and DingTalk instance id.
    async fn file(&self) -> (String, String) {
        let (status, filed) = self
            .agent(
                reqwest::Method::POST,
                "/api/agent/requests",
                Some(json!({"reason": REASON})),
            )
            .await;
        assert_eq!(status, 201, "{filed}");
        let id = filed["id"].as_str().unwrap().to_owned();
        let (status, request) = self
            .console(reqwest::Method::GET, &format!("/api/console/requests/{id}"), None)
            .await;
        assert_eq!(status, 200, "{request}");
        let instance = request["external_id"]
            .as_str()
            .expect("created in DingTalk")
            .to_owned();
        (id, instance)
    }

    /// Waits until the agent sees `id` approved; its grant.
    async fn approved(&self, id: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (_, request) = self
                .agent(reqwest::Method::GET, &format!("/api/agent/requests/{id}"), None)
                .await;
            if request["state"] == "approved" {
                return request["grant"].clone();
            }
            assert!(Instant::now() < deadline, "never approved: {request}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Consumes `grant` twice: used, then refused as used.
    async fn consume_twice(&self, grant: &Value) {
        let consume = || {
            self.agent(
                reqwest::Method::POST,
                "/api/agent/grants/consume",
                Some(json!({"grant": grant})),
            )
        };
        let (status, body) = consume().await;
        assert_eq!(status, 200, "{body}");
        let (status, body) = consume().await;
        assert_eq!(status, 409, "{body}");
        assert_eq!(body["error"], "grant_used");
    }
}

/// The JSON object logged with `message`, whose `request` field is `request`.
fn logged<'a>(lines: &'a [Value], message: &str, request: &str) -> &'a Value {
    lines
        .iter()
        .find(|l| l["message"] == message && l["request"] == request)
        .unwrap_or_else(|| panic!("no `{message}` line for {request} in {lines:#?}"))
}

#[tokio::test]
async fn json_lines_name_every_lifecycle_step() {
    let server = Process::start(&["--log-format", "json"], &[], None);
    let client = Client {
        http: reqwest::Client::new(),
        server: &server,
    };
    let (status, check) = client
        .agent(
            reqwest::Method::POST,
            "/api/agent/uninstall-check",
            Some(json!({"locale": "en-US"})),
        )
        .await;
    assert_eq!(status, 200, "{check}");

    // Approved by the DingTalk approver on the mock; the grant consumed, then refused.
    let (first, instance) = client.file().await;
    client.approve(&instance).await;
    let grant = client.approved(&first).await;
    let grant_id = grant["grant"]["id"].as_str().unwrap().to_owned();
    client.consume_twice(&grant).await;

    // Rejected in the console (a revoke would be refused by DingTalk within 15 s of filing).
    let (second, _) = client.file().await;
    let (status, rejected) = client
        .console(
            reqwest::Method::POST,
            &format!("/api/console/requests/{second}/reject"),
            Some(json!({"remark": "not now"})),
        )
        .await;
    assert_eq!(status, 200, "{rejected}");
    assert_eq!(rejected["state"], "rejected");

    let output = server.stop();
    // Every line is a JSON object, but the banner the binary prints itself.
    let mut lines = Vec::new();
    for line in output.iter().filter(|l| !is_banner(l)) {
        match serde_json::from_str::<Value>(line) {
            Ok(object @ Value::Object(_)) => lines.push(object),
            _ => panic!("not a JSON object: {line:?}"),
        }
    }
    for line in &lines {
        for key in ["timestamp", "level", "target", "message"] {
            assert!(line.get(key).is_some(), "no `{key}` in {line}");
        }
    }
    assert!(lines.iter().any(|l| l["message"] == "approval server listening"));
    assert!(
        lines.iter().all(|l| l["target"] != "sase_audit"),
        "audit entries are log lines only with audit_log_lines"
    );

    for request in [&first, &second] {
        let filed = logged(&lines, "request filed", request);
        assert_eq!(filed["level"], "INFO");
        assert_eq!(filed["workflow"], "wf-dingtalk");
        assert_eq!(filed["requester"], "alice");
        assert_eq!(filed["device"], "LAPTOP-DEMO");
        assert_eq!(filed["action"], "uninstall");
        assert_eq!(filed["reason_chars"], REASON.chars().count());
        let created = logged(&lines, "instance created", request);
        assert_eq!(created["state"], "pending");
        assert!(
            created["instance"].as_str().is_some_and(|i| !i.is_empty()),
            "{created}"
        );
    }
    assert_eq!(
        logged(&lines, "instance created", &first)["instance"],
        instance.as_str()
    );
    let applied = logged(&lines, "event applied", &first);
    assert_eq!(applied["from"], "pending");
    assert_eq!(applied["to"], "approved");
    assert_eq!(applied["instance"], instance.as_str());
    assert_eq!(applied["workflow"], "wf-dingtalk");
    assert!(
        applied["key"].as_str().is_some_and(|k| !k.is_empty()),
        "{applied}"
    );
    let issued = logged(&lines, "grant issued", &first);
    assert_eq!(issued["grant"], grant_id.as_str());
    assert_eq!(issued["source"], "external");
    assert_eq!(issued["expires_at_ms"], grant["grant"]["expires_at_ms"]);
    let consumed = logged(&lines, "grant consumed", &first);
    assert_eq!(consumed["grant"], grant_id.as_str());
    assert_eq!(consumed["device"], "LAPTOP-DEMO");
    let refused = logged(&lines, "grant refused", &first);
    assert_eq!(refused["reason"], "grant_used");
    assert_eq!(refused["grant"], grant_id.as_str());
    let console = logged(&lines, "console action", &second);
    assert_eq!(console["action"], "reject");
    assert_eq!(console["actor"], "console-admin");
    assert_eq!(console["remark"], true);
    assert_eq!(console["to"], "rejected");
    // One line per step: filed once, issued once, consumed once.
    for message in ["request filed", "grant issued", "grant consumed"] {
        let count = lines
            .iter()
            .filter(|l| l["message"] == message && l["request"] == first.as_str())
            .count();
        assert_eq!(count, 1, "{message}: {lines:#?}");
    }
    // Users' words stay out of the log: the reason and the remark.
    for line in &output {
        assert!(!line.contains(REASON) || is_banner(line), "{line}");
        assert!(!line.contains("not now"), "{line}");
    }
}

#[tokio::test]
async fn text_lines_have_no_colours_and_no_debug() {
    // Stream mode (the "stream connected" line), and a reconciler every second that approves
    // what the dropped events did not say.
    let server = Process::start(
        &[],
        &[("SASE_DELIVERY", "stream")],
        Some("reconcile_every_secs = 1\nrecheck_after_secs = [0]\n"),
    );
    let client = Client {
        http: reqwest::Client::new(),
        server: &server,
    };
    let (id, instance) = client.file().await;
    let status = client
        .mock(
            reqwest::Method::PUT,
            "/__mock/faults",
            json!({"drop_events_next": 10}),
        )
        .await;
    assert_eq!(status, 200);
    client.approve(&instance).await;
    let grant = client.approved(&id).await;
    client.consume_twice(&grant).await;
    let output = server.stop();

    let logs: Vec<&String> = output.iter().filter(|l| !is_banner(l)).collect();
    for line in &output {
        assert!(
            !line.contains("\x1b["),
            "an ANSI colour with the output piped: {line:?}"
        );
    }
    let line = |message: &str, with: &str| -> &String {
        logs.iter()
            .copied()
            .find(|l| l.contains(&format!(": {message}")) && l.contains(with))
            .unwrap_or_else(|| panic!("no `{message}` line with `{with}` in {logs:#?}"))
    };
    let connected = line("stream connected", "client_id=dingmock-wf-dingtalk");
    assert!(connected.contains("endpoint=\"127.0.0.1\""), "{connected}");
    let reconciled = line("request reconciled", &format!("request={id}"));
    assert!(
        reconciled.contains("from=\"pending\" to=\"approved\""),
        "{reconciled}"
    );
    let report = line("reconciled checked=", "changed=1");
    let refused = line("grant refused", &format!("request=\"{id}\""));
    assert!(refused.contains("reason=\"grant_used\""), "{refused}");
    for checked in [report, refused, reconciled] {
        for debug in ["Some(", "{ ", "ReconcileReport", "RequestId(", "Duration"] {
            assert!(!checked.contains(debug), "`{debug}` in {checked}");
        }
    }
    assert!(line("grant issued", &format!("request={id}")).contains("source=\"reconciliation\""));
}

#[test]
fn a_bad_log_format_is_refused_readably() {
    let run = |args: &[&str], env: Option<&str>| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_approval-server"));
        command
            .args(args)
            .env_remove("SASE_LOG_FORMAT")
            .env_remove("RUST_LOG");
        if let Some(format) = env {
            command.env("SASE_LOG_FORMAT", format);
        }
        command.output().unwrap()
    };
    let env = run(&[], Some("yaml"));
    assert_eq!(env.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&env.stderr).trim(),
        "SASE_LOG_FORMAT: yaml: use text or json"
    );
    let flag = run(&["--log-format", "yaml"], None);
    assert_eq!(flag.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&flag.stderr);
    assert!(
        stderr.contains("--log-format") && stderr.contains("json"),
        "{stderr}"
    );
}

/// With real DingTalk credentials the binary prints no token, configured or made up, and
/// enrolls no demo device.
#[test]
fn real_credentials_print_no_tokens() {
    let config = support::production_toml();
    let mut server = Process::spawn(&[], &[], Some(&config));
    server.wait_for("the address", |l| l.starts_with("SASE approval server on "));
    let output = server.stop();
    for line in &output {
        for secret in [
            ADMIN,
            FILE_DEVICE,
            SECRET.get(..8).unwrap(),
            TOKEN,
            AES_KEY.get(..8).unwrap(),
        ] {
            assert!(!line.contains(secret), "{secret} printed: {line}");
        }
        assert!(
            !line.starts_with("Admin token:") && !line.starts_with("Device token:"),
            "{line}"
        );
    }
    assert!(
        output.iter().any(|l| l.contains("Request URL http://")),
        "{output:#?}"
    );
}

/// A SIGTERM that arrives while the server is still starting (here: right after it made its
/// grant key, seconds before it listens) stops it gracefully once it is up, never by the
/// signal's default action. The handlers used to be installed after the banner, so a
/// supervisor stopping the server early killed it (seen in CI).
#[test]
fn a_sigterm_while_starting_is_a_graceful_stop() {
    let config = support::production_toml();
    let mut server = Process::spawn(&[], &[], Some(&config));
    server.wait_for("the grant key", |l| l.contains("created a grant signing key"));
    let output = server.stop();
    assert!(
        output.iter().any(|l| l.starts_with("SASE approval server on ")),
        "{output:#?}"
    );
}

/// With `audit_log_lines`, each audit entry is also a log line, with its hash, for a SIEM.
#[tokio::test]
async fn audit_entries_are_log_lines_when_asked() {
    let server = Process::start(&["--log-format", "json"], &[], Some("audit_log_lines = true\n"));
    let client = Client {
        http: reqwest::Client::new(),
        server: &server,
    };
    let (request, _) = client.file().await;
    let output = server.stop();
    let audit: Vec<Value> = output
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l["target"] == "sase_audit")
        .collect();
    let filed = audit
        .iter()
        .find(|l| l["action"] == "request.filed")
        .unwrap_or_else(|| panic!("no filing among {audit:#?}"));
    assert_eq!(filed["actor"], "alice");
    assert_eq!(filed["subject"], format!("request/{request}"));
    assert_eq!(filed["hash"].as_str().map(str::len), Some(64), "{filed}");
    assert!(filed["seq"].as_u64().is_some(), "{filed}");
}
