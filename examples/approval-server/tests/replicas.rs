//! Three replicas of the real `approval-server` binary on one PostgreSQL database, the mock
//! DingTalk in the test process: filings, DingTalk decisions and console actions spread over
//! the replicas while the one holding the reconciler lease is killed with `kill -9` and
//! restarted. Over HTTP push (DingTalk has one Request URL: a round-robin reverse proxy in
//! front of the replicas plays the load balancer) and over Stream (each replica opens its own
//! connection; the gateway gives each event to one of them and re-pushes what was not
//! acknowledged).
//!
//! Each test checks that every acknowledged request is in the database once, in the state
//! the test drove it to; that each has exactly one DingTalk instance; that no event was
//! applied twice; that the reconciler lease moved to a live replica within the lease and two
//! passes; and that an agent polling one replica saw the approval another replica applied.
//!
//! They need PostgreSQL (`SASE_TEST_POSTGRES`, default
//! `postgres://root@127.0.0.1:5432/postgres`): without one they print a `SKIPPED` line and
//! pass, unless `SASE_REQUIRE_POSTGRES=1`.

#![cfg(feature = "postgres")]
#![expect(
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test fails loudly on the first unexpected value"
)]

use dingtalk_sdk::mock::gateway::StreamEntryKind;
use dingtalk_sdk::mock::{Channel, MockApp, MockDingTalk, MockFaults};
use sase_policy::{GrantSigner, GrantVerifier, SignedGrant};
use serde_json::{json, Value};
use sqlx::{Connection as _, PgConnection};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::io::{BufRead as _, BufReader, Write as _};
use std::os::unix::process::ExitStatusExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use support::postgres::TempDb;
use support::{mock_builder, signed_by, ADMIN, AES_KEY, APP, CODE, SECRET, TOKEN, WORKFLOW};

mod support;

const REPLICAS: usize = 3;
/// Agents, one device and user each, so that no filing is another's "already open".
const AGENTS: usize = 30;
/// Agents filing before the restart; the others file once the killed replica is back.
const FIRST_WAVE: usize = 20;
/// The kill comes once this many filings were acknowledged: in the middle of the first wave.
const KILL_AFTER_ACKS: usize = 8;
/// Milliseconds between the first wave's filings, agent after agent.
const STAGGER_MS: u64 = 60;
/// `reconcile_every_secs` and `reconciler_lease_secs`.
const PASS: Duration = Duration::from_secs(1);
const LEASE: Duration = Duration::from_secs(3);
/// The first wave's first filings get DingTalk's 500 after their instance was created: the
/// reconciler (whichever replica holds its lease) must find those instances, not make more.
const AMBIGUOUS_CREATES: u32 = 3;
/// How long any one wait may take before the test fails.
const PATIENCE: Duration = Duration::from_secs(20);

/// The tests take turns: six servers at once would crowd two cores, and PostgreSQL's
/// connections (ten a replica).
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn now_ms() -> i64 {
    i64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis()).unwrap()
}

/// The reconciler lease in the database at `url`: its holder and until when (Unix ms), if
/// any replica took it.
async fn lease(url: &str) -> Option<(String, i64)> {
    let mut conn = PgConnection::connect(url).await.unwrap();
    let lease = sqlx::query_as("SELECT holder, until_ms FROM leases WHERE name = 'reconciler'")
        .fetch_optional(&mut conn)
        .await
        .unwrap();
    let _ = conn.close().await;
    lease
}

/// Polls the lease in the database at `url` until another holder than `old` holds it:
/// returns that holder, and how long after `since` it was seen.
async fn lease_moves(url: String, old: String, since: Instant) -> (String, Duration) {
    loop {
        if let Some((holder, until_ms)) = lease(&url).await {
            if holder != old && until_ms > now_ms() {
                return (holder, since.elapsed());
            }
        }
        assert!(
            since.elapsed() < PATIENCE,
            "the reconciler lease stayed with {old}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// The replicas: real processes, so that `kill -9` is real.

/// A replica's log lines (its stderr, one JSON object a line).
type Logs = Arc<Mutex<Vec<Value>>>;

/// The replicas' base URLs (`http://addr`), by slot: what agents and the proxy call. A
/// restarted replica listens on a new port.
type Backends = Arc<Mutex<Vec<String>>>;

/// One run of the binary.
struct Process {
    child: Child,
    base: String,
    logs: Logs,
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

impl Process {
    /// Starts the binary on `config` and waits for its banner.
    async fn start(config: &Path) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_approval-server"));
        command
            .arg("--config")
            .arg(config)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for var in [
            "NO_COLOR",
            "SASE_LISTEN",
            "SASE_DATABASE",
            "SASE_ADMIN_TOKEN",
            "SASE_GRANT_KEY_FILE",
            "SASE_GRANT_KEYS",
            "SASE_DELIVERY",
            "SASE_TLS_CERT_FILE",
            "SASE_TLS_KEY_FILE",
            "SASE_LOG_FORMAT",
        ] {
            command.env_remove(var);
        }
        command.env("RUST_LOG", "info");
        let mut child = command.spawn().unwrap();
        let (banner, address) = tokio::sync::oneshot::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            let mut banner = Some(banner);
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(base) = line.strip_prefix("SASE approval server on ") {
                    if let Some(tx) = banner.take() {
                        let _ = tx.send(base.trim().to_owned());
                    }
                }
            }
        });
        let logs = Logs::default();
        let stderr = child.stderr.take().unwrap();
        let sink = Arc::clone(&logs);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let value = serde_json::from_str(&line).unwrap_or(Value::String(line));
                sink.lock().unwrap().push(value);
            }
        });
        let mut process = Self {
            child,
            base: String::new(),
            logs,
        };
        match tokio::time::timeout(PATIENCE, address).await {
            Ok(Ok(base)) => process.base = base,
            _ => {
                let logs = process.logs.lock().unwrap().clone();
                panic!("no banner from the replica: {logs:#?}")
            }
        }
        process
    }

    fn pid(&self) -> String {
        self.child.id().to_string()
    }

    /// Sends `signal` (`-9`, `-STOP`) with `kill`.
    fn signal(&self, signal: &str) {
        let status = Command::new("kill").args([signal, &self.pid()]).status().unwrap();
        assert!(status.success(), "kill {signal} {}", self.pid());
    }
}

/// The three replicas on one configuration file, and every log line each run wrote.
struct Cluster {
    config: PathBuf,
    running: Vec<Option<Process>>,
    /// The logs of runs that were killed, by slot.
    past: Vec<Vec<Logs>>,
    backends: Backends,
}

impl Cluster {
    /// Starts the replicas at once (they race to migrate the schema and to pick the Request
    /// URL id).
    async fn start(config: &Path, backends: Backends) -> Self {
        let mut starting = tokio::task::JoinSet::new();
        for slot in 0..REPLICAS {
            let config = config.to_owned();
            starting.spawn(async move { (slot, Process::start(&config).await) });
        }
        let mut running: Vec<Option<Process>> = (0..REPLICAS).map(|_| None).collect();
        while let Some(started) = starting.join_next().await {
            let (slot, process) = started.unwrap();
            backends.lock().unwrap()[slot].clone_from(&process.base);
            running[slot] = Some(process);
        }
        Self {
            config: config.to_owned(),
            running,
            past: vec![Vec::new(); REPLICAS],
            backends,
        }
    }

    fn process(&self, slot: usize) -> &Process {
        self.running[slot].as_ref().unwrap()
    }

    /// `kill -9`: the process dies at once, mid-request, its sockets reset.
    fn kill9(&mut self, slot: usize) {
        let mut process = self.running[slot].take().unwrap();
        process.signal("-9");
        let status = process.child.wait().unwrap();
        assert_eq!(status.signal(), Some(9), "replica {slot} killed: {status}");
        self.past[slot].push(Arc::clone(&process.logs));
    }

    /// Starts a new run in `slot`, on a new port the proxy and agents then use.
    async fn restart(&mut self, slot: usize) {
        assert!(self.running[slot].is_none());
        let process = Process::start(&self.config).await;
        self.backends.lock().unwrap()[slot].clone_from(&process.base);
        self.running[slot] = Some(process);
    }

    /// Every log line of every run, with its slot.
    fn all_logs(&self) -> Vec<(usize, Value)> {
        let mut all = Vec::new();
        for slot in 0..REPLICAS {
            let runs = self.past[slot]
                .iter()
                .chain(self.running[slot].iter().map(|p| &p.logs));
            for logs in runs {
                all.extend(logs.lock().unwrap().iter().map(|l| (slot, l.clone())));
            }
        }
        all
    }

    /// The slot of the running replica whose reconciler calls itself `holder`.
    fn running_holder(&self, holder: &str) -> Option<usize> {
        (0..REPLICAS).find(|&slot| {
            self.running[slot].as_ref().is_some_and(|p| {
                p.logs.lock().unwrap().iter().any(|l| {
                    l["message"] == "reconciler lease taken" && l["replica"].as_str() == Some(holder)
                })
            })
        })
    }

    /// Waits until a running replica holds the reconciler lease, and says which (slot and
    /// holder name).
    async fn lease_holder(&self, db: &TempDb) -> (usize, String) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some((holder, until_ms)) = lease(&db.url).await {
                if until_ms > now_ms() {
                    if let Some(slot) = self.running_holder(&holder) {
                        return (slot, holder);
                    }
                }
            }
            assert!(
                Instant::now() < deadline,
                "no running replica took the reconciler lease (last: {:?})",
                lease(&db.url).await
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The running replica that took the lease as `holder`.
    fn heir(&self, holder: &str) -> usize {
        self.running_holder(holder)
            .unwrap_or_else(|| panic!("the lease holder {holder} is no running replica"))
    }

    /// Asserts every running replica serves the workflow on one Request URL path and signs
    /// with the shared key; returns the path.
    async fn same_everywhere(&self, http: &reqwest::Client, key: &GrantVerifier) -> String {
        let mut paths = BTreeSet::new();
        assert_eq!(self.running.iter().flatten().count(), REPLICAS);
        for process in self.running.iter().flatten() {
            let workflows = format!("{}/api/console/workflows", process.base);
            let (status, workflows) = support::json(http.get(workflows).bearer_auth(ADMIN)).await;
            assert_eq!(status, 200, "{workflows}");
            let path = workflows[0]["callback_path"].as_str().unwrap().to_owned();
            assert!(path.starts_with("/dingtalk/callback/"), "{workflows}");
            paths.insert(path);
            let keys = format!("{}/api/agent/grant-key", process.base);
            let (status, keys) = support::json(http.get(keys)).await;
            assert_eq!(status, 200, "{keys}");
            assert_eq!(keys["public_key"], key.to_hex(), "the shared grant key");
        }
        assert_eq!(paths.len(), 1, "one Request URL id on every replica: {paths:?}");
        paths.pop_first().unwrap()
    }
}

// ---------------------------------------------------------------------------------------------
// The set-up: the mock DingTalk, the grant key, the configuration.

#[derive(Clone, Copy, PartialEq, Eq)]
enum Push {
    Http,
    Stream,
}

/// The server tests' mock DingTalk ([`mock_builder`]), an instance terminable at once and an
/// event not acknowledged pushed again.
async fn mock(push: Push) -> MockDingTalk {
    let builder = match push {
        // The Request URL is saved once the replicas (and the proxy) are up.
        Push::Http => mock_builder(),
        // The app again, with its event subscription over Stream: it replaces the first.
        Push::Stream => mock_builder().app(MockApp::new(APP, SECRET).events(TOKEN, AES_KEY).stream(true)),
    };
    builder
        .terminate_grace(Duration::ZERO)
        // An event not acknowledged comes again 300 ms later, on a connection chosen anew.
        .redelivery(vec![Duration::from_millis(300); 10])
        .start()
        .await
        .unwrap()
}

fn token(agent: usize) -> String {
    format!("tok-{agent:02}")
}

/// The grant key file every replica reads (with a PostgreSQL database none makes its own),
/// and its public key; beside it, the secrets key file ([`secrets_key`]).
fn grant_key(dir: &Path) -> (PathBuf, GrantVerifier) {
    let seed: [u8; 32] = rand::random();
    let path = dir.join("grant-key");
    write_private(&path, &hex::encode(seed));
    write_private(&secrets_key(&path), &hex::encode(rand::random::<[u8; 32]>()));
    (path, GrantSigner::from_bytes(&seed).verifier())
}

/// The secrets key file beside the grant key file `grant_key`.
fn secrets_key(grant_key: &Path) -> PathBuf {
    grant_key.with_file_name("secrets-key")
}

fn write_private(path: &Path, line: &str) {
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .unwrap();
    writeln!(file, "{line}").unwrap();
}

fn config(db: &TempDb, key: &Path, mock: &MockDingTalk, push: Push) -> String {
    let delivery = match push {
        Push::Http => "http_push",
        Push::Stream => "stream",
    };
    let mut text = format!(
        r#"listen = "127.0.0.1:0"
database = "{db}"
admin_token = "{ADMIN}"
grant_key_file = "{key}"
secrets_key_file = "{secrets}"
reconcile_every_secs = {pass}
reconciler_lease_secs = {lease}
recheck_after_secs = [0]
filings_per_hour = 100
log_format = "json"

[[workflows]]
id = "{WORKFLOW}"
delivery = "{delivery}"
process_code = "{CODE}"
fields = {{ device = "设备名称", reason = "卸载原因" }}

[workflows.dingtalk]
client_id = "{APP}"
client_secret = "{SECRET}"
token = "{TOKEN}"
aes_key = "{AES_KEY}"
api_base = "{api}"

[[policies.policies]]
id = "employees"
name = "Employees"
priority = 10
switches = {{ anti_uninstall = true }}
scope = {{ groups = ["employees"] }}
approval = {{ allow_filing = true, workflow = "{WORKFLOW}" }}
[policies.policies.prompt.zh-CN]
title = "需要审批"
content = "内容"
primary_button = "提交审批"
secondary_button = "取消"
[policies.policies.prompt.en-US]
title = "Approval needed"
content = "content"
primary_button = "File for Approval"
secondary_button = "Cancel"
"#,
        db = db.url,
        key = key.display(),
        secrets = secrets_key(key).display(),
        pass = PASS.as_secs(),
        lease = LEASE.as_secs(),
        api = mock.base_url(),
    );
    for agent in 0..AGENTS {
        text.push_str(&format!(
            "\n[[devices]]\ntoken = \"{}\"\ndevice_id = \"dev-{agent:02}\"\nuser_id = \"user-{agent:02}\"\ngroups = [\"employees\"]\n",
            token(agent)
        ));
    }
    text
}

// ---------------------------------------------------------------------------------------------
// The reverse proxy in front of the replicas: DingTalk has one Request URL per workflow.

/// What the proxy did with one push.
#[derive(Debug, Clone)]
struct Forwarded {
    slot: usize,
    /// The replica's status, or why it could not answer.
    outcome: Result<u16, String>,
}

struct Proxy {
    backends: Backends,
    next: AtomicUsize,
    http: reqwest::Client,
    log: Mutex<Vec<Forwarded>>,
}

impl Proxy {
    /// Serves on an ephemeral port; returns its base URL.
    async fn start(backends: Backends) -> (Arc<Self>, String) {
        let proxy = Arc::new(Self {
            backends,
            next: AtomicUsize::new(0),
            http: reqwest::Client::builder()
                .connect_timeout(Duration::from_millis(300))
                .timeout(Duration::from_secs(1))
                .build()
                .unwrap(),
            log: Mutex::new(Vec::new()),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let app = axum::Router::new()
            .fallback(forward)
            .with_state(Arc::clone(&proxy));
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        (proxy, url)
    }
}

/// Forwards a request to the next replica, round robin, with its path, query, content type
/// and body; a replica that cannot answer (refused, reset, killed mid-request) is skipped for
/// the next, as a load balancer does. DingTalk's push is safe to repeat: events carry ids.
async fn forward(
    axum::extract::State(proxy): axum::extract::State<Arc<Proxy>>,
    request: axum::extract::Request,
) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, 1 << 20).await.unwrap();
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
    let content_type = parts.headers.get("content-type").cloned();
    let first = proxy.next.fetch_add(1, Ordering::Relaxed);
    for k in 0..REPLICAS {
        let slot = (first + k) % REPLICAS;
        let base = proxy.backends.lock().unwrap()[slot].clone();
        let mut forwarded = proxy
            .http
            .request(parts.method.clone(), format!("{base}{path}"))
            .body(body.clone());
        if let Some(content_type) = &content_type {
            forwarded = forwarded.header("content-type", content_type.clone());
        }
        let answered = match forwarded.send().await {
            Ok(response) => {
                let status = response.status();
                let content_type = response.headers().get("content-type").cloned();
                response.bytes().await.map(|bytes| (status, content_type, bytes))
            }
            Err(e) => Err(e),
        };
        match answered {
            Ok((status, content_type, bytes)) => {
                proxy.log.lock().unwrap().push(Forwarded {
                    slot,
                    outcome: Ok(status.as_u16()),
                });
                let mut response = (status, bytes).into_response();
                if let Some(content_type) = content_type {
                    response.headers_mut().insert("content-type", content_type);
                }
                return response;
            }
            Err(e) => proxy.log.lock().unwrap().push(Forwarded {
                slot,
                outcome: Err(e.to_string()),
            }),
        }
    }
    (axum::http::StatusCode::BAD_GATEWAY, "no replica answered").into_response()
}

// ---------------------------------------------------------------------------------------------
// The agents and the console.

/// What the test does with an agent's request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Plan {
    /// The approver agrees in DingTalk.
    Approve,
    /// The approver refuses in DingTalk.
    Refuse,
    /// An admin rejects it in the console of another replica than the one it was filed on.
    ConsoleReject,
    /// Approved in DingTalk, then revoked in the console of another replica.
    ApproveThenRevoke,
}

impl Plan {
    fn of(agent: usize) -> Self {
        match agent % 5 {
            0 | 1 => Self::Approve,
            2 => Self::Refuse,
            3 => Self::ConsoleReject,
            _ => Self::ApproveThenRevoke,
        }
    }

    fn final_state(self) -> &'static str {
        match self {
            Self::Approve => "approved",
            Self::Refuse | Self::ConsoleReject => "rejected",
            Self::ApproveThenRevoke => "revoked",
        }
    }
}

/// What happened to one agent's request, as the agent and the console saw it.
#[derive(Debug)]
struct Outcome {
    agent: usize,
    plan: Plan,
    id: String,
    /// The replica that acknowledged the filing, its status (201, or 200 for a request an
    /// earlier attempt had filed) and the state it reported.
    acked_on: usize,
    status: u16,
    reported: String,
    /// Filing attempts that got no answer (the replica was dead or hung).
    failed_attempts: usize,
    /// The state the console action answered, if there was one.
    console: Option<String>,
    /// The agent's last view of its request.
    seen: Value,
}

/// What the agents share.
struct Ctx {
    mock: Arc<MockDingTalk>,
    backends: Backends,
    http: reqwest::Client,
    acked: AtomicUsize,
    /// Set once the killed replica is back: the second wave files then.
    restarted: AtomicBool,
}

impl Ctx {
    fn new(mock: Arc<MockDingTalk>, backends: Backends) -> Arc<Self> {
        Arc::new(Self {
            mock,
            backends,
            // A hung replica (SIGSTOP) answers nothing: the agent moves on after this.
            http: reqwest::Client::builder()
                .connect_timeout(Duration::from_millis(500))
                .timeout(Duration::from_secs(2))
                .build()
                .unwrap(),
            acked: AtomicUsize::new(0),
            restarted: AtomicBool::new(false),
        })
    }

    /// One call to replica `slot`: its status and JSON body, or why it did not answer.
    async fn call(
        &self,
        slot: usize,
        method: reqwest::Method,
        path: &str,
        bearer: &str,
        body: Option<Value>,
    ) -> Result<(u16, Value), String> {
        let base = self.backends.lock().unwrap()[slot].clone();
        let mut request = self
            .http
            .request(method, format!("{base}{path}"))
            .bearer_auth(bearer);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.map_err(|e| e.to_string())?;
        let status = response.status().as_u16();
        let text = response.text().await.map_err(|e| e.to_string())?;
        Ok((status, serde_json::from_str(&text).unwrap_or(Value::String(text))))
    }

    /// Calls the replicas from `first` on, round robin (skipping `avoid`), until one answers
    /// below 500; fails the test after [`PATIENCE`]. Returns the slot, the answer and how
    /// many attempts got none.
    async fn call_any(
        &self,
        first: usize,
        avoid: Option<usize>,
        method: reqwest::Method,
        path: &str,
        bearer: &str,
        body: Option<Value>,
    ) -> (usize, u16, Value, usize) {
        let deadline = Instant::now() + PATIENCE;
        let mut failures = Vec::new();
        let mut slot = first % REPLICAS;
        loop {
            if Some(slot) != avoid {
                match self.call(slot, method.clone(), path, bearer, body.clone()).await {
                    Ok((status, body)) if status < 500 => return (slot, status, body, failures.len()),
                    Ok((status, body)) => failures.push(format!("replica {slot}: {status} {body}")),
                    Err(e) => failures.push(format!("replica {slot}: {e}")),
                }
                assert!(
                    Instant::now() < deadline,
                    "{method} {path}: no replica answered: {failures:#?}"
                );
                // Before the next replica: a pause, not a wait for a condition.
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            slot = (slot + 1) % REPLICAS;
        }
    }

    /// Polls `GET path` on the replicas from `first` on (skipping `avoid`) until `done`
    /// holds for the body; fails the test after [`PATIENCE`].
    async fn poll(
        &self,
        first: usize,
        avoid: Option<usize>,
        path: &str,
        bearer: &str,
        done: impl Fn(&Value) -> bool,
    ) -> (usize, Value) {
        let deadline = Instant::now() + PATIENCE;
        let mut slot = first;
        loop {
            let (at, status, body, _) = self
                .call_any(slot, avoid, reqwest::Method::GET, path, bearer, None)
                .await;
            if status == 200 && done(&body) {
                return (at, body);
            }
            assert!(Instant::now() < deadline, "GET {path}: still {status} {body}");
            slot = at;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Files agent `agent`'s request, from its replica on to the others while it cannot
    /// answer.
    async fn file(&self, agent: usize) -> (String, usize, u16, String, usize) {
        let (slot, status, body, failed) = self
            .call_any(
                agent % REPLICAS,
                None,
                reqwest::Method::POST,
                "/api/agent/requests",
                &token(agent),
                Some(json!({"reason": format!("replica test {agent}")})),
            )
            .await;
        assert!(
            status == 201 || status == 200,
            "agent {agent}: filing refused on replica {slot}: {status} {body}"
        );
        let id = body["id"].as_str().unwrap().to_owned();
        let state = body["state"].as_str().unwrap().to_owned();
        (id, slot, status, state, failed)
    }

    /// Waits until request `id` has its DingTalk instance, and returns it.
    async fn external_id(&self, id: &str, first: usize) -> String {
        let (_, request) = self
            .poll(first, None, &format!("/api/console/requests/{id}"), ADMIN, |r| {
                r["external_id"].is_string()
            })
            .await;
        request["external_id"].as_str().unwrap().to_owned()
    }

    /// A console action on another replica than `not_on`; the state it answered.
    async fn console(&self, id: &str, action: &str, not_on: usize) -> String {
        let path = format!("/api/console/requests/{id}/{action}");
        let deadline = Instant::now() + PATIENCE;
        loop {
            let (slot, status, body, _) = self
                .call_any(
                    not_on + 1,
                    Some(not_on),
                    reqwest::Method::POST,
                    &path,
                    ADMIN,
                    Some(json!({"remark": "replica test"})),
                )
                .await;
            assert_ne!(slot, not_on);
            match status {
                200 => return body["state"].as_str().unwrap().to_owned(),
                // DingTalk refused the write-back (an earlier attempt, on a replica killed
                // before it stored the outcome, wrote it): DingTalk's event settles it.
                502 => {}
                _ => panic!("{action} {id} on replica {slot}: {status} {body}"),
            }
            assert!(Instant::now() < deadline, "{action} {id}: still {body}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// One agent: files (first wave staggered, second wave after the restart), waits for its
/// DingTalk instance, has the test's plan carried out, and polls another replica than the
/// one that acknowledged its filing until the request is final.
async fn agent(ctx: Arc<Ctx>, agent: usize) -> Outcome {
    if agent < FIRST_WAVE {
        tokio::time::sleep(Duration::from_millis(STAGGER_MS * agent as u64)).await;
    } else {
        let deadline = Instant::now() + Duration::from_secs(25);
        while !ctx.restarted.load(Ordering::SeqCst) {
            assert!(Instant::now() < deadline, "agent {agent}: no restart");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let (id, acked_on, status, reported, failed_attempts) = ctx.file(agent).await;
    ctx.acked.fetch_add(1, Ordering::SeqCst);
    let external = ctx.external_id(&id, acked_on + 1).await;
    let plan = Plan::of(agent);
    let mut console = None;
    match plan {
        Plan::Approve => ctx.mock.approve(&external, None, Some("ok")).unwrap(),
        Plan::Refuse => ctx.mock.refuse(&external, None, Some("no")).unwrap(),
        Plan::ConsoleReject => console = Some(ctx.console(&id, "reject", acked_on).await),
        Plan::ApproveThenRevoke => {
            ctx.mock.approve(&external, None, Some("ok")).unwrap();
            ctx.poll(
                acked_on + 1,
                Some(acked_on),
                &format!("/api/agent/requests/{id}"),
                &token(agent),
                |r| r["state"] == "approved",
            )
            .await;
            console = Some(ctx.console(&id, "revoke", acked_on).await);
        }
    }
    let (_, seen) = ctx
        .poll(
            acked_on + 2,
            Some(acked_on),
            &format!("/api/agent/requests/{id}"),
            &token(agent),
            |r| r["state"] == plan.final_state(),
        )
        .await;
    Outcome {
        agent,
        plan,
        id,
        acked_on,
        status,
        reported,
        failed_attempts,
        console,
        seen,
    }
}

/// DingTalk delivers every event twice (over HTTP push the proxy sends the second to
/// another replica than the first; over Stream the gateway picks a connection for each), and
/// the first creates are ambiguous.
fn faults(mock: &MockDingTalk) {
    mock.set_faults(MockFaults {
        duplicate_events_next: 100_000,
        create_then_fail_next: AMBIGUOUS_CREATES,
        ..MockFaults::default()
    });
}

/// Starts every agent.
fn spawn_agents(ctx: &Arc<Ctx>) -> tokio::task::JoinSet<Outcome> {
    let mut agents = tokio::task::JoinSet::new();
    for n in 0..AGENTS {
        agents.spawn(agent(Arc::clone(ctx), n));
    }
    agents
}

async fn wait_acked(ctx: &Ctx, n: usize) {
    let deadline = Instant::now() + PATIENCE;
    while ctx.acked.load(Ordering::SeqCst) < n {
        assert!(Instant::now() < deadline, "fewer than {n} filings acknowledged");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn outcomes(agents: tokio::task::JoinSet<Outcome>) -> Vec<Outcome> {
    let mut outcomes: Vec<Outcome> = agents.join_all().await;
    outcomes.sort_by_key(|o| o.agent);
    outcomes
}

// ---------------------------------------------------------------------------------------------
// The checks.

/// Which replica moved request `id` to `state`: the one log line saying so, of every run of
/// every replica (an event applied, a reconciliation, a console action that changed it).
fn moved_by(logs: &[(usize, Value)], id: &str, state: &str) -> Vec<usize> {
    logs.iter()
        .filter(|(_, l)| l["request"] == id && l["to"] == state)
        .filter(|(_, l)| {
            l["message"] == "event applied"
                || l["message"] == "request reconciled"
                || (l["message"] == "console action" && l["changed"] == true)
        })
        .map(|(slot, _)| *slot)
        .collect()
}

/// An agent waiting on each replica for request `id` (device 0's) while DingTalk approves
/// it: every replica but the one that applied the approval (A) answers it to its waiting
/// agent (B), with the one grant A issued; used on the three replicas at once, the grant is
/// consumed once. Returns the id.
async fn approval_seen_on_every_replica(ctx: &Arc<Ctx>, cluster: &Cluster, key: &GrantVerifier) -> String {
    let (id, acked_on, status, _, _) = ctx.file(0).await;
    assert_eq!(status, 201, "device 0's earlier request is over: a new one");
    let external = ctx.external_id(&id, acked_on).await;
    let waiting = Arc::new(AtomicUsize::new(0));
    let mut pollers = tokio::task::JoinSet::new();
    for slot in 0..REPLICAS {
        let (ctx, id, waiting) = (Arc::clone(ctx), id.clone(), Arc::clone(&waiting));
        pollers.spawn(async move {
            let path = format!("/api/agent/requests/{id}");
            let deadline = Instant::now() + PATIENCE;
            let mut first = true;
            loop {
                let (status, body) = ctx
                    .call(slot, reqwest::Method::GET, &path, &token(0), None)
                    .await
                    .unwrap();
                assert_eq!(status, 200, "replica {slot}: {body}");
                if first {
                    assert_eq!(
                        body["state"], "pending",
                        "replica {slot}: waiting before the approval"
                    );
                    waiting.fetch_add(1, Ordering::SeqCst);
                    first = false;
                }
                if body["state"] == "approved" {
                    return (slot, body);
                }
                assert!(Instant::now() < deadline, "replica {slot}: still {body}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
    }
    let deadline = Instant::now() + PATIENCE;
    while waiting.load(Ordering::SeqCst) < REPLICAS {
        assert!(Instant::now() < deadline, "the agents are not waiting");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    ctx.mock.approve(&external, None, Some("ok")).unwrap();
    let seen: BTreeMap<usize, Value> = pollers.join_all().await.into_iter().collect();
    let appliers = moved_by(&cluster.all_logs(), &id, "approved");
    assert_eq!(
        appliers.len(),
        1,
        "one replica applied the approval: {appliers:?}"
    );
    let a = appliers[0];
    let grants: BTreeSet<String> = seen
        .values()
        .map(|body| body["grant"]["grant"]["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(grants.len(), 1, "one grant, on every replica: {seen:#?}");
    for (b, body) in seen.iter().filter(|(b, _)| **b != a) {
        let grant: SignedGrant = serde_json::from_value(body["grant"].clone()).unwrap();
        assert!(
            signed_by(&grant, key),
            "replica {b} answered the approval replica {a} applied, signed with the shared key"
        );
    }
    // The agent uses the grant on every replica at once: one of them consumes it.
    let grant = seen[&a]["grant"].clone();
    let mut consuming = tokio::task::JoinSet::new();
    for slot in 0..REPLICAS {
        let (ctx, grant) = (Arc::clone(ctx), grant.clone());
        consuming.spawn(async move {
            let body = Some(json!({ "grant": grant }));
            let path = "/api/agent/grants/consume";
            let (status, body) = ctx
                .call(slot, reqwest::Method::POST, path, &token(0), body)
                .await
                .unwrap();
            (status, body["error"].as_str().map(str::to_owned))
        });
    }
    let mut consumed = consuming.join_all().await;
    consumed.sort();
    assert_eq!(
        consumed,
        [
            (200, None),
            (409, Some("grant_used".to_owned())),
            (409, Some("grant_used".to_owned()))
        ],
        "a grant is consumed once, whichever replicas the agent asks"
    );
    id
}

/// What decided the requests, for the report: the source of each move to a final state,
/// and how many events a replica dropped as already applied.
#[derive(Debug, Default)]
struct Summary {
    decided_by: BTreeMap<String, usize>,
    duplicates: usize,
    found_after_ambiguous_create: usize,
}

/// The checks both tests make once every agent is done: `extra` are requests filed besides
/// the agents' (id, final state).
async fn check_requests(
    ctx: &Ctx,
    cluster: &Cluster,
    outcomes: &[Outcome],
    extra: &[(String, &str)],
    key: &GrantVerifier,
) -> Summary {
    let mut summary = Summary::default();
    let mut expected: BTreeMap<String, &str> = outcomes
        .iter()
        .map(|o| (o.id.clone(), o.plan.final_state()))
        .collect();
    expected.extend(extra.iter().map(|(id, state)| (id.clone(), *state)));
    assert_eq!(
        expected.len(),
        outcomes.len() + extra.len(),
        "one request per filing"
    );
    for o in outcomes {
        assert!(
            o.status == 201 || (o.status == 200 && o.failed_attempts > 0),
            "agent {}: a filing is new unless an earlier attempt filed it: {o:?}",
            o.agent
        );
        assert!(
            o.reported == "submitted" || o.reported == "pending",
            "agent {}: acknowledged as open: {o:?}",
            o.agent
        );
        assert_eq!(o.seen["state"], o.plan.final_state(), "{o:?}");
        if let Some(console) = &o.console {
            assert_eq!(console, o.plan.final_state(), "the console's answer: {o:?}");
        }
    }

    // Every replica lists exactly the acknowledged requests, each in the state the test
    // drove it to.
    let mut external_ids = BTreeSet::new();
    let mut keys: HashMap<String, String> = HashMap::new();
    for slot in 0..REPLICAS {
        let (status, list) = ctx
            .call(
                slot,
                reqwest::Method::GET,
                "/api/console/requests?limit=1000",
                ADMIN,
                None,
            )
            .await
            .unwrap();
        assert_eq!(status, 200, "{list}");
        let listed: BTreeMap<String, String> = list
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["id"].as_str().unwrap().to_owned(),
                    r["state"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        let wanted: BTreeMap<String, String> = expected
            .iter()
            .map(|(id, state)| (id.clone(), (*state).to_owned()))
            .collect();
        assert_eq!(listed, wanted, "replica {slot}: the requests and their states");
        for request in list.as_array().unwrap() {
            let id = request["id"].as_str().unwrap();
            let external = request["external_id"].as_str().unwrap();
            if slot == 0 {
                assert!(
                    external_ids.insert(external.to_owned()),
                    "instance {external} twice"
                );
            }
            match request["state"].as_str().unwrap() {
                "approved" => {
                    let grant: SignedGrant = serde_json::from_value(request["grant"].clone()).unwrap();
                    assert!(signed_by(&grant, key), "{id}: signed with the shared key");
                }
                _ => assert!(request["grant"].is_null(), "{id}: no grant: {request}"),
            }
            // Every event applied once: no event key twice in a history, nor in two.
            let mut mine = HashSet::new();
            for entry in request["history"].as_array().unwrap() {
                if slot == 0 && entry["from"] != entry["to"] && entry["to"] == expected[id] {
                    let source = entry["source"]["kind"].as_str().unwrap().to_owned();
                    *summary.decided_by.entry(source).or_default() += 1;
                }
                if slot == 0 && entry["note"] == "found the instance an uncertain create had made" {
                    summary.found_after_ambiguous_create += 1;
                }
                if entry["source"]["kind"] == "external" {
                    let event = entry["source"]["event"].as_str().unwrap().to_owned();
                    assert!(
                        mine.insert(event.clone()),
                        "{id}: event {event} applied twice: {request}"
                    );
                    if let Some(other) = keys.insert(event.clone(), id.to_owned()) {
                        assert_eq!(other, id, "event {event} applied to two requests");
                    }
                }
            }
        }
    }

    // One DingTalk instance per filing.
    let instances: BTreeSet<String> = ctx.mock.instance_ids().into_iter().collect();
    assert_eq!(
        instances.len(),
        expected.len(),
        "one DingTalk instance per filing ({} instances, {} requests)",
        instances.len(),
        expected.len()
    );
    assert_eq!(instances, external_ids, "each request holds its own instance");

    // Every change to a final state made once, on one replica (a run killed between its
    // commit and its log line leaves none), and no event applied by two replicas.
    let logs = cluster.all_logs();
    for (id, state) in &expected {
        let by = moved_by(&logs, id, state);
        assert!(
            by.len() <= 1,
            "{id} moved to {state} {} times, by replicas {by:?}",
            by.len()
        );
    }
    let mut applied = HashMap::new();
    for (slot, line) in logs.iter().filter(|(_, l)| l["message"] == "event applied") {
        let key = line["key"].as_str().unwrap().to_owned();
        if let Some(first) = applied.insert(key.clone(), *slot) {
            panic!("event {key} applied by replica {first} and again by replica {slot}");
        }
    }
    // Every event came twice: replicas did see the second and drop it.
    summary.duplicates = logs
        .iter()
        .filter(|(_, l)| l["message"] == "event ignored" && l["reason"] == "duplicate")
        .count();
    assert!(
        summary.duplicates >= expected.len(),
        "{} events dropped as duplicates, for {} requests",
        summary.duplicates,
        expected.len()
    );
    assert!(
        summary.found_after_ambiguous_create >= AMBIGUOUS_CREATES as usize,
        "the instances of the ambiguous creates were found, not made again: {summary:?}"
    );
    assert_eq!(
        summary.decided_by.values().sum::<usize>(),
        expected.len(),
        "{summary:?}"
    );
    summary
}

/// What the test saw, on standard error (`--nocapture`).
fn report(name: &str, outcomes: &[Outcome], summary: &Summary, phases: &[(&str, Duration)]) {
    let retried = outcomes.iter().filter(|o| o.failed_attempts > 0).count();
    let refiled = outcomes.iter().filter(|o| o.status == 200).count();
    let acked: Vec<usize> = (0..REPLICAS)
        .map(|slot| outcomes.iter().filter(|o| o.acked_on == slot).count())
        .collect();
    let phases: Vec<String> = phases
        .iter()
        .map(|(what, at)| format!("{what} {:.1} s", at.as_secs_f64()))
        .collect();
    eprintln!(
        "{name}: filings acknowledged by replica {acked:?}; {retried} filings retried on another replica, \
         {refiled} of them answered by the request an earlier attempt had filed; {summary:?}; {}",
        phases.join(", ")
    );
}

// ---------------------------------------------------------------------------------------------
// The tests.

/// HTTP push through a round-robin proxy; the lease holder is killed with `kill -9` in the
/// middle of the first wave, and restarted once another replica has taken the lease.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_over_http_push_survive_a_kill() {
    run_scenario(Push::Http).await;
}

/// Stream: each replica on its own connection. The lease holder hangs (SIGSTOP) while the
/// gateway still hands it events, then is killed with `kill -9`: what it never acknowledged
/// reaches another replica.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_over_stream_survive_a_kill() {
    run_scenario(Push::Stream).await;
}

/// How DingTalk reaches the replicas, once they are up.
enum Front {
    /// HTTP push: the round-robin proxy, and the Request URL path every replica serves.
    Proxy { proxy: Arc<Proxy>, callback: String },
    /// Stream: the replicas' connections (the gateway's numbers), each answering a ping.
    Stream { connections: BTreeSet<u64> },
}

/// Both tests: three replicas on one database (behind the proxy, or each on its own Stream
/// connection); the agents file while the reconciler lease holder is killed (over Stream,
/// first hung, then killed) and restarted; then the checks of both, and those of `push`.
async fn run_scenario(push: Push) {
    let _turn = SERIAL.lock().await;
    let Some(db) = TempDb::new().await else {
        return;
    };
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let (key_file, key) = grant_key(dir.path());
    let mock = Arc::new(mock(push).await);
    let gateway = mock.gateway();
    let backends: Backends = Arc::new(Mutex::new(vec![String::new(); REPLICAS]));
    let proxy = match push {
        Push::Http => Some(Proxy::start(Arc::clone(&backends)).await),
        Push::Stream => None,
    };
    let config = dir.path().join("server.toml");
    std::fs::write(&config, self::config(&db, &key_file, &mock, push)).unwrap();
    let mut cluster = Cluster::start(&config, Arc::clone(&backends)).await;
    let ctx = Ctx::new(Arc::clone(&mock), Arc::clone(&backends));
    let callback = cluster.same_everywhere(&ctx.http, &key).await;
    let front = match proxy {
        Some((proxy, proxy_url)) => {
            // What the admin saves in DingTalk: the load balancer's URL (check_url goes
            // through it).
            let saved = mock
                .register_app(
                    MockApp::new(APP, SECRET)
                        .events(TOKEN, AES_KEY)
                        .request_url(format!("{proxy_url}{callback}")),
                )
                .await
                .unwrap();
            assert!(saved.ok, "check_url through the proxy: {saved:?}");
            Front::Proxy { proxy, callback }
        }
        None => {
            assert!(
                gateway
                    .wait_for(PATIENCE, |g| g.connection_count() == REPLICAS)
                    .await,
                "one Stream connection per replica"
            );
            let connections = answering(&mock, REPLICAS).await;
            assert_eq!(connections.len(), REPLICAS, "{connections:?}");
            Front::Stream { connections }
        }
    };
    let (victim, holder) = cluster.lease_holder(&db).await;
    let up = started.elapsed();

    faults(&mock);
    let agents = spawn_agents(&ctx);
    wait_acked(&ctx, KILL_AFTER_ACKS).await;
    let watch = tokio::spawn(lease_moves(db.url.clone(), holder.clone(), Instant::now()));
    let (fate, survivors) = match &front {
        Front::Proxy { .. } => {
            cluster.kill9(victim);
            ("was killed", None)
        }
        Front::Stream { connections } => {
            let survivors = hang_then_kill(&mut cluster, &mock, victim, connections).await;
            ("hung", Some(survivors))
        }
    };
    let (heir, takeover) = watch.await.unwrap();
    let heir = cluster.heir(&heir);
    assert_ne!(heir, victim);
    assert!(
        takeover <= LEASE + 2 * PASS,
        "replica {heir} took the reconciler lease {takeover:?} after replica {victim}, its holder, {fate}"
    );
    cluster.restart(victim).await;
    match &front {
        // The restarted replica serves the same Request URL path: the proxy sends it pushes.
        Front::Proxy { callback, .. } => {
            assert_eq!(&cluster.same_everywhere(&ctx.http, &key).await, callback);
        }
        Front::Stream { .. } => assert!(
            gateway
                .wait_for(PATIENCE, |g| g.connection_count() == REPLICAS)
                .await,
            "the restarted replica connected"
        ),
    }
    ctx.restarted.store(true, Ordering::SeqCst);
    let outcomes = outcomes(agents).await;
    let burst = started.elapsed();

    let seen = approval_seen_on_every_replica(&ctx, &cluster, &key).await;
    let summary = check_requests(&ctx, &cluster, &outcomes, &[(seen, "approved")], &key).await;
    // Every replica appended to one audit chain through the burst and the kill: it is intact,
    // and holds the filings of the agents.
    let any = cluster.running.iter().flatten().next().unwrap().base.clone();
    let (status, verified) = support::json(
        ctx.http
            .get(format!("{any}/api/console/audit/verify"))
            .bearer_auth(ADMIN),
    )
    .await;
    assert_eq!((status, &verified["intact"]), (200, &json!(true)), "{verified}");
    assert!(
        verified["entries"].as_u64().unwrap() >= AGENTS as u64,
        "{verified}"
    );
    let name = match (&front, survivors) {
        (Front::Proxy { proxy, .. }, _) => {
            assert!(
                outcomes.iter().any(|o| o.acked_on != o.agent % REPLICAS),
                "some filings went to another replica than the agent's, the killed one: {outcomes:#?}"
            );
            check_pushes(&mock, proxy, victim);
            "http push"
        }
        (Front::Stream { .. }, Some((survivors, dead))) => {
            check_stream(&mock, &survivors, dead).await;
            "stream"
        }
        (Front::Stream { .. }, None) => unreachable!("over Stream the survivors are known"),
    };
    report(
        name,
        &outcomes,
        &summary,
        &[
            ("replicas up", up),
            ("lease moved", takeover),
            ("burst done", burst),
            ("total", started.elapsed()),
        ],
    );
    drop(cluster);
}

/// Over Stream: replica `victim` hangs (SIGSTOP), neither acknowledging events nor renewing
/// its lease, until the gateway has pushed to every one of the `connections` since; then it
/// is killed with `kill -9` and its connection closes. Returns the connections that still
/// answer, and the dead one.
async fn hang_then_kill(
    cluster: &mut Cluster,
    mock: &MockDingTalk,
    victim: usize,
    connections: &BTreeSet<u64>,
) -> (BTreeSet<u64>, u64) {
    let gateway = mock.gateway();
    let stopped_ms = now_ms();
    cluster.process(victim).signal("-STOP");
    // The gateway keeps handing the hung replica events (and re-pushing them on its
    // schedule, to any connection): wait until every connection had one since.
    let deadline = Instant::now() + PATIENCE;
    loop {
        let since: BTreeSet<u64> = mock
            .stream_journal()
            .iter()
            .filter(|e| e.at_ms >= stopped_ms)
            .filter(|e| matches!(e.kind, StreamEntryKind::Pushed | StreamEntryKind::Redelivered))
            .filter_map(|e| e.connection)
            .collect();
        if connections.is_subset(&since) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "pushed since the stop to {since:?} only"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cluster.kill9(victim);
    assert!(
        gateway
            .wait_for(PATIENCE, |g| g.connection_count() == REPLICAS - 1)
            .await,
        "the killed replica's connection closed"
    );
    let survivors = answering(mock, REPLICAS - 1).await;
    let dead: Vec<u64> = connections.difference(&survivors).copied().collect();
    assert_eq!(dead.len(), 1, "{connections:?} then {survivors:?}");
    (survivors, dead[0])
}

/// Over HTTP push: DingTalk never saw the dead replica: every push was answered `success`
/// (the proxy skipped it), and the pushes were spread over the replicas.
fn check_pushes(mock: &MockDingTalk, proxy: &Proxy, victim: usize) {
    let deliveries = mock.deliveries();
    let pushes: Vec<_> = deliveries.iter().filter(|d| d.channel == Channel::Http).collect();
    assert!(pushes.len() > AGENTS * 2, "{} pushes", pushes.len());
    let failed: Vec<_> = pushes.iter().filter(|d| !d.ok).collect();
    assert!(failed.is_empty(), "pushes DingTalk saw fail: {failed:#?}");
    let forwarded = proxy.log.lock().unwrap().clone();
    for slot in 0..REPLICAS {
        let answered = forwarded
            .iter()
            .filter(|f| f.slot == slot && f.outcome == Ok(200))
            .count();
        assert!(answered > 0, "replica {slot} answered no push: {forwarded:?}");
    }
    assert!(
        forwarded.iter().any(|f| f.slot == victim && f.outcome.is_err()),
        "the proxy met the killed replica"
    );
}

/// Over Stream: every event was consumed, none dropped; every one the `dead` connection was
/// given and did not acknowledge was consumed by another; the `survivors` consumed events.
async fn check_stream(mock: &MockDingTalk, survivors: &BTreeSet<u64>, dead: u64) {
    let gateway = mock.gateway();
    assert!(
        gateway.wait_for(PATIENCE, |g| g.pending_count() == 0).await,
        "{} events still pending",
        gateway.pending_count()
    );
    let journal = mock.stream_journal();
    let dropped: Vec<_> = journal
        .iter()
        .filter(|e| e.kind == StreamEntryKind::Dropped)
        .collect();
    assert!(dropped.is_empty(), "events dropped: {dropped:#?}");
    let consumed_by: HashMap<&str, u64> = journal
        .iter()
        .filter(|e| e.kind == StreamEntryKind::Consumed)
        .filter_map(|e| Some((e.message_id.as_str(), e.connection?)))
        .collect();
    let stranded: BTreeSet<&str> = journal
        .iter()
        .filter(|e| e.connection == Some(dead))
        .filter(|e| matches!(e.kind, StreamEntryKind::Pushed | StreamEntryKind::Redelivered))
        .map(|e| e.message_id.as_str())
        .filter(|m| consumed_by.get(m) != Some(&dead))
        .collect();
    assert!(
        !stranded.is_empty(),
        "the dead replica was given events it never acknowledged"
    );
    for message in &stranded {
        let by = consumed_by.get(message);
        assert!(
            by.is_some_and(|c| *c != dead),
            "event {message}, given to the dead replica, consumed by {by:?}"
        );
    }
    for connection in survivors {
        assert!(
            consumed_by.values().any(|c| c == connection),
            "surviving connection {connection} consumed no event"
        );
    }
    eprintln!(
        "stream: {} events the dead replica never acknowledged reached another replica",
        stranded.len()
    );
}

/// The Stream connections that answer a ping (by the gateway's connection numbers): waits
/// until `expected` have, or a few seconds.
async fn answering(mock: &MockDingTalk, expected: usize) -> BTreeSet<u64> {
    let gateway = mock.gateway();
    let pings: Vec<String> = gateway.ping().into_iter().map(|(message, _)| message).collect();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let answered: BTreeSet<u64> = gateway
            .replies()
            .iter()
            .filter(|r| pings.iter().any(|m| r.raw.contains(m.as_str())))
            .map(|r| r.connection)
            .collect();
        if answered.len() >= expected || Instant::now() > deadline {
            return answered;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The README's PostgreSQL configuration (its shared database and grant key file, with this
/// test's database and key put in their place) parses, is a shared database, and starts.
#[tokio::test]
async fn the_readme_postgresql_configuration_starts() {
    let Some(db) = TempDb::new().await else {
        return;
    };
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).unwrap();
    let (_, after) = readme
        .split_once("give each the same configuration with")
        .expect("the README shows the replicas' configuration");
    let (_, block) = after.split_once("```toml\n").unwrap();
    let (block, _) = block.split_once("```").unwrap();
    let shown = sase_approval_server::Config::from_toml(block, "README.md").unwrap();
    assert!(shown.shared_database(), "{}", shown.database);
    let shown_key = shown.grant_key_file.clone().expect("a shared grant key file");
    let shown_secrets = shown.secrets_key_file.clone().expect("a shared secrets key file");
    let dir = tempfile::tempdir().unwrap();
    let (key, verifier) = grant_key(dir.path());
    let block = block
        .replace(&shown.database, &db.url)
        .replace(&shown_key.display().to_string(), &key.display().to_string())
        .replace(
            &shown_secrets.display().to_string(),
            &secrets_key(&key).display().to_string(),
        );
    let mock = mock(Push::Http).await;
    let rest: Vec<String> = config(&db, &key, &mock, Push::Http)
        .lines()
        .filter(|l| {
            !["database", "grant_key_file", "secrets_key_file"]
                .iter()
                .any(|k| l.starts_with(k))
        })
        .map(str::to_owned)
        .collect();
    let config =
        sase_approval_server::Config::from_toml(&format!("{block}\n{}", rest.join("\n")), "README.md")
            .unwrap();
    let server = sase_approval_server::start(config).await.unwrap();
    assert_eq!(
        server.engine.verifier(),
        verifier,
        "the shared key, not a new one"
    );
    let health = reqwest::get(format!("http://{}/healthz", server.addr))
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    server.shutdown().await.unwrap();
}

/// The per-device filing limit holds across replicas: its count is the database's, not each
/// replica's (found by the replica tests: a device could file replicas × the limit an hour).
#[tokio::test]
async fn the_filing_limit_holds_across_replicas() {
    let Some(db) = TempDb::new().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (key, _) = grant_key(dir.path());
    let mock = mock(Push::Http).await;
    let text = config(&db, &key, &mock, Push::Http).replace("filings_per_hour = 100", "filings_per_hour = 1");
    let start = || async {
        sase_approval_server::start(sase_approval_server::Config::from_toml(&text, "test.toml").unwrap())
            .await
            .unwrap()
    };
    let (a, b) = (start().await, start().await);
    let http = reqwest::Client::new();
    let file = |server: &sase_approval_server::Server| {
        support::send(
            http.post(format!("http://{}/api/agent/requests", server.addr))
                .bearer_auth(token(0))
                .json(&json!({"reason": "reinstall"})),
        )
    };
    let (_, _, filed) = file(&a).await;
    let filed: Value = serde_json::from_slice(&filed).unwrap();
    let id = filed["id"].as_str().unwrap();
    // Decided (so filing again is a new request, not the open one), then filed again.
    let (rejected, _) = support::json(
        http.post(format!("http://{}/api/console/requests/{id}/reject", a.addr))
            .bearer_auth(ADMIN),
    )
    .await;
    assert_eq!(rejected, 200);
    for server in [&a, &b] {
        let (status, headers, _) = file(server).await;
        assert_eq!(status, 429, "on {}", server.addr);
        assert!(headers.contains_key("retry-after"));
    }
    assert_eq!(mock.instance_ids().len(), 1, "one filing reached DingTalk");
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
}

/// An app's monthly DingTalk calls are counted in the database: a replica that has made no
/// call still stops at the app's limit, and every replica reports the app's count (found by
/// the replica tests: each replica counted its own, so three replicas could spend three times
/// the month's quota).
#[tokio::test]
async fn the_dingtalk_call_budget_is_the_apps_across_replicas() {
    let Some(db) = TempDb::new().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (key, _) = grant_key(dir.path());
    let mock = mock(Push::Http).await;
    let text = config(&db, &key, &mock, Push::Http).replace(
        &format!("api_base = \"{}\"", mock.base_url()),
        &format!(
            "api_base = \"{}\"\ncalls_per_month = 3\nreconcile_share_percent = 0",
            mock.base_url()
        ),
    );
    assert!(text.contains("calls_per_month = 3"));
    let start = || async {
        sase_approval_server::start(sase_approval_server::Config::from_toml(&text, "test.toml").unwrap())
            .await
            .unwrap()
    };
    // Each start checks the form: two of the month's three calls.
    let (a, b) = (start().await, start().await);
    let http = reqwest::Client::new();
    let file = |server: &sase_approval_server::Server, agent: usize| {
        support::json(
            http.post(format!("http://{}/api/agent/requests", server.addr))
                .bearer_auth(token(agent))
                .json(&json!({"reason": "reinstall"})),
        )
    };
    assert_eq!(file(&a, 0).await.0, 201);
    let (_, refused) = file(&b, 1).await;
    assert_eq!(
        refused["state"], "failed",
        "not sent: the month's one call is spent: {refused}"
    );
    assert_eq!(mock.instance_ids().len(), 1, "one filing reached DingTalk");
    for server in [&a, &b] {
        let (_, apps) = support::json(
            http.get(format!("http://{}/api/console/dingtalk/usage", server.addr))
                .bearer_auth(ADMIN),
        )
        .await;
        let usage = &apps[0]["usage"];
        assert_eq!(
            (usage["calls"].as_u64(), usage["exhausted"].as_bool()),
            (Some(3), Some(true)),
            "on {}: {apps}",
            server.addr
        );
    }
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
}
