//! The running mock: shared state, the request journal, fault injection, quotas, the clock and
//! the Rust control API ([`MockDingTalk`]).

use super::api_error;
use super::config::{MockApp, MockConfig, MockFaults, MockProcess, MockQuotas};
use super::control;
use super::delivery::{self, Delivery, MockEvent};
use super::directory::{Change, MockDepartment, MockDirectory, MockUser};
use super::gateway::{MockGateway, StreamJournalEntry};
use super::quota::{self, MockUsage, QuotaState};
use super::signin::{self, Grant, MockSignIn, MockSignInCode, Session};
use super::state::{EventDraft, Instance, Refusal};
use axum::body::{to_bytes, Body};
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::Response;
use serde::Serialize;
use serde_json::Value;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Header carrying the v1.0 access token.
pub(crate) const TOKEN_HEADER: &str = "x-acs-dingtalk-access-token";

/// One API request the mock received, for assertions.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct JournalEntry {
    /// HTTP method.
    pub method: String,
    /// Path, e.g. `/v1.0/workflow/processInstances`.
    pub path: String,
    /// Raw query string, if any.
    pub query: Option<String>,
    /// Whether an access token was sent, in the `x-acs-dingtalk-access-token` header or the
    /// old API's `access_token` query (its value is not recorded: `query` shows
    /// `access_token=<redacted>`, and `appsecret` likewise).
    pub token_present: bool,
    /// The JSON body, if any.
    pub body: Option<Value>,
    /// The status the mock answered.
    pub status: u16,
}

#[derive(Default)]
pub(crate) struct Store {
    pub(crate) apps: HashMap<String, MockApp>,
    pub(crate) processes: HashMap<String, MockProcess>,
    pub(crate) tokens: HashMap<String, (String, Instant)>,
    pub(crate) instances: HashMap<String, Instance>,
    pub(crate) order: Vec<String>,
    pub(crate) faults: MockFaults,
    pub(crate) journal: Vec<JournalEntry>,
    pub(crate) deliveries: Vec<Delivery>,
    pub(crate) counter: u64,
    pub(crate) quotas: QuotaState,
    pub(crate) directory: MockDirectory,
    /// Issued `authCode`s (kept once used, so a replay is refused like an unknown one).
    pub(crate) auth_codes: HashMap<String, Grant>,
    pub(crate) user_tokens: HashMap<String, Session>,
    pub(crate) refresh_tokens: HashMap<String, Session>,
    /// The old API's tokens (`/gettoken`), apart from the v1.0 ones.
    pub(crate) oapi_tokens: HashMap<String, (String, Instant)>,
}

impl Store {
    /// Forgets every access token: v1.0, old API and users'.
    pub(crate) fn revoke_tokens(&mut self) {
        self.tokens.clear();
        self.oapi_tokens.clear();
        self.user_tokens.clear();
    }

    pub(crate) fn next(&mut self) -> u64 {
        self.counter += 1;
        self.counter
    }
}

/// The mock's clock: Unix milliseconds.
pub type MockClock = Arc<dyn Fn() -> i64 + Send + Sync>;

pub(crate) struct Shared {
    store: Mutex<Store>,
    clock: MockClock,
    pub(crate) token_ttl: Duration,
    pub(crate) terminate_grace_ms: i64,
    pub(crate) events: mpsc::UnboundedSender<EventDraft>,
    pub(crate) gateway: MockGateway,
    pub(crate) http: reqwest::Client,
}

impl Shared {
    pub(crate) fn lock(&self) -> MutexGuard<'_, Store> {
        self.store
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Now, by the mock's clock (Unix ms): instance times and the quota windows.
    pub(crate) fn now(&self) -> i64 {
        (self.clock)()
    }

    /// Queues events for in-order delivery, after the API call that caused them has answered.
    pub(crate) fn emit(&self, events: Vec<EventDraft>) {
        for event in events {
            let _ = self.events.send(event);
        }
    }
}

/// Whether a directory change is announced to the apps (the contact-change event), or made
/// silently, as when DingTalk's event is lost and only a scheduled sync would notice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[non_exhaustive]
pub enum Notify {
    /// Deliver the event, like every other event (HTTP push and/or Stream).
    #[default]
    Deliver,
    /// Change the directory without delivering anything.
    Skip,
}

impl From<Refusal> for Response {
    fn from(r: Refusal) -> Self {
        api_error(StatusCode::BAD_REQUEST, r.code, &r.message)
    }
}

/// A mock DingTalk on loopback: OpenAPI endpoints (token and workflow), a control API that
/// acts as approvers would, encrypted event delivery by HTTP push and Stream, fault injection
/// and a request journal. Dropping it stops the server.
///
/// ```no_run
/// use dingtalk_sdk::mock::{MockApp, MockDingTalk, MockFormField, MockProcess};
///
/// # async fn run() -> std::io::Result<()> {
/// let mock = MockDingTalk::builder()
///     .app(MockApp::new("dingappkey", "secret").events("token123", "kYd8sJ2pQ7wE4rT9uV1xZ3cB6nM0aL5gH8jK2fD4sAx")
///         .request_url("http://127.0.0.1:8080/dingtalk/events"))
///     .process(MockProcess::new("PROC-UNINSTALL", "App uninstall",
///         vec![MockFormField::new("Reason", "TextareaField", true)], vec!["approver1".into()]))
///     .start()
///     .await?;
/// println!("point the client's api base at {}", mock.base_url());
/// # Ok(()) }
/// ```
pub struct MockDingTalk {
    shared: Arc<Shared>,
    addr: SocketAddr,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for MockDingTalk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockDingTalk")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Drop for MockDingTalk {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Builder for [`MockDingTalk`].
#[derive(Default)]
pub struct MockDingTalkBuilder {
    config: MockConfig,
    addr: Option<SocketAddr>,
    clock: Option<MockClock>,
}

impl std::fmt::Debug for MockDingTalkBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockDingTalkBuilder")
            .field("config", &self.config)
            .field("addr", &self.addr)
            .field("clock", &self.clock.as_ref().map(|_| "<custom>"))
            .finish()
    }
}

impl MockDingTalkBuilder {
    /// Registers an app.
    pub fn app(mut self, app: MockApp) -> Self {
        self.config.apps.push(app);
        self
    }

    /// Registers a process (form).
    pub fn process(mut self, process: MockProcess) -> Self {
        self.config.processes.push(process);
        self
    }

    /// The directory: departments and users of each organisation, for sign-in and the
    /// contacts endpoints. Default: [`MockDirectory::default`].
    pub fn directory(mut self, directory: MockDirectory) -> Self {
        self.config.directory = Some(directory);
        self
    }

    /// Takes apps, processes and settings from a configuration (e.g. a file).
    pub fn config(mut self, config: MockConfig) -> Self {
        self.config = config;
        self
    }

    /// Access-token lifetime. Default: 7200 s, as DingTalk.
    pub fn token_ttl(mut self, ttl: Duration) -> Self {
        self.config.token_ttl_secs = Some(ttl.as_secs());
        self
    }

    /// How long after creation terminate is refused. Default: 15 s, as DingTalk.
    pub fn terminate_grace(mut self, grace: Duration) -> Self {
        self.config.terminate_grace_secs = Some(grace.as_secs());
        self
    }

    /// Enforces DingTalk's quotas (QPS per app and API, calls per month). Default: none.
    pub fn quotas(mut self, quotas: MockQuotas) -> Self {
        self.config.quotas = quotas;
        self
    }

    /// The Stream redelivery schedule: the delays before each re-push of an event that was
    /// not consumed; one last delay after the last re-push, the event is dropped. Default:
    /// DingTalk's reported 10 s, 30 s, 60 s, 120 s.
    pub fn redelivery(mut self, schedule: Vec<Duration>) -> Self {
        self.config.stream.redelivery_ms = schedule
            .iter()
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .collect();
        self
    }

    /// The mock's clock, in Unix milliseconds. The quota windows follow it (the QPS second,
    /// the calendar month), and so do instance times, so a test can move through a month
    /// without sleeping. Token lifetimes, event push timestamps and Stream timers keep real
    /// time. Default: the system clock.
    pub fn clock(mut self, clock: MockClock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Listen on this address instead of an ephemeral port of 127.0.0.1.
    pub fn bind(mut self, addr: SocketAddr) -> Self {
        self.addr = Some(addr);
        self
    }

    /// Starts the server. Apps with a Request URL get a `check_url` event first.
    ///
    /// # Errors
    /// If the address cannot be bound, or the directory is inconsistent (a department whose
    /// parent does not exist, a user in no or an unknown department, duplicates).
    pub async fn start(self) -> std::io::Result<MockDingTalk> {
        let directory = self.config.directory.clone().unwrap_or_default();
        directory.validate().map_err(|(_, message)| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("directory: {message}"))
        })?;
        let addr = self.addr.unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)));
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let gateway = MockGateway::attached(addr);
        gateway.set_redelivery_schedule(self.config.stream.redelivery());
        let (events, queue) = mpsc::unbounded_channel();
        let mut store = Store::default();
        for app in &self.config.apps {
            gateway.register_mock_app(app);
            store.apps.insert(app.client_id.clone(), app.clone());
        }
        for process in &self.config.processes {
            store
                .processes
                .insert(process.process_code.clone(), process.clone());
        }
        store.quotas.limits = self.config.quotas;
        store.directory = directory;
        let shared = Arc::new(Shared {
            store: Mutex::new(store),
            clock: self.clock.unwrap_or_else(|| Arc::new(super::now_ms)),
            token_ttl: Duration::from_secs(self.config.token_ttl_secs.unwrap_or(7200)),
            terminate_grace_ms: i64::try_from(self.config.terminate_grace_secs.unwrap_or(15))
                .unwrap_or(15)
                .saturating_mul(1000),
            events,
            gateway,
            http: reqwest::Client::builder()
                .timeout(Duration::from_millis(1500))
                .build()
                .unwrap_or_default(),
        });
        let app = super::api::router()
            .merge(signin::router())
            .merge(super::oapi::router())
            .layer(middleware::from_fn_with_state(
                Arc::clone(&shared),
                journal_and_faults,
            ))
            .merge(super::control::router())
            .with_state(Arc::clone(&shared))
            .merge(shared.gateway.router());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        let worker = tokio::spawn(delivery::worker(Arc::clone(&shared), queue));
        for app in &self.config.apps {
            if app.request_url.is_some() {
                delivery::check_url(&shared, app).await;
            }
        }
        Ok(MockDingTalk {
            shared,
            addr,
            tasks: vec![server, worker],
        })
    }
}

/// The app a call is made for: the Client ID of its (valid) access token (the app's, a
/// signed-in user's, or the old API's), or of a token request for a registered app (`appKey`,
/// `clientId` in the body; `appkey` in the query of `/gettoken`).
fn caller(
    store: &Store,
    path: &str,
    query: &HashMap<String, String>,
    headers: &axum::http::HeaderMap,
    body: Option<&Value>,
) -> Option<String> {
    let registered = |key: &str| store.apps.contains_key(key).then(|| key.to_owned());
    match path {
        "/v1.0/oauth2/accessToken" => return registered(body?.get("appKey")?.as_str()?),
        "/v1.0/oauth2/userAccessToken" => return registered(body?.get("clientId")?.as_str()?),
        "/gettoken" => return registered(query.get("appkey")?),
        _ => {}
    }
    if let Some(token) = query.get("access_token") {
        return super::oapi::token_app(store, token);
    }
    let token = headers.get(TOKEN_HEADER)?.to_str().ok()?;
    store
        .tokens
        .get(token)
        .filter(|(_, expires)| Instant::now() < *expires)
        .map(|(client_id, _)| client_id.clone())
        .or_else(|| signin::token_app(store, token))
}

/// The query with secrets (`access_token`, `appsecret`) replaced by `<redacted>`.
fn redact_query(query: &str) -> String {
    query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((key @ ("access_token" | "appsecret"), _)) => format!("{key}=<redacted>"),
            _ => pair.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// Records every OpenAPI request in the journal and applies the injected latency, the quotas
/// and the injected faults.
async fn journal_and_faults(State(shared): State<Arc<Shared>>, request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    let Ok(bytes) = to_bytes(body, 1 << 20).await else {
        return api_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalidParameter",
            "body too large",
        );
    };
    let path = parts.uri.path().to_owned();
    let query: HashMap<String, String> =
        form_urlencoded::parse(parts.uri.query().unwrap_or_default().as_bytes())
            .into_owned()
            .collect();
    let mut entry = JournalEntry {
        method: parts.method.to_string(),
        path: path.clone(),
        query: parts.uri.query().map(redact_query),
        token_present: parts.headers.contains_key(TOKEN_HEADER) || query.contains_key("access_token"),
        body: serde_json::from_slice(&bytes).ok(),
        status: 0,
    };
    let latency = shared.lock().faults.latency();
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let now = shared.now();
    let refused = {
        let mut store = shared.lock();
        match caller(&store, &path, &query, &parts.headers, entry.body.as_ref()) {
            Some(client_id) => {
                let api = format!("{} {path}", parts.method);
                quota::admit(&mut store, &client_id, &api, quota::is_exempt(&path), now)
                    .map(|refusal| refusal.response(path == "/gettoken" || path.starts_with("/topapi/")))
            }
            None => None,
        }
    };
    let injected = if refused.is_some() {
        refused
    } else if path.starts_with("/v1.0/workflow/") {
        let mut store = shared.lock();
        if store.faults.rate_limit_next > 0 {
            store.faults.rate_limit_next -= 1;
            Some(api_error(
                StatusCode::FORBIDDEN,
                quota::QPS_CODE,
                quota::QPS_MESSAGE,
            ))
        } else if store.faults.server_error_next > 0 {
            store.faults.server_error_next -= 1;
            Some(api_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "systemError",
                "系统错误",
            ))
        } else {
            None
        }
    } else {
        None
    };
    let response = match injected {
        Some(response) => response,
        None => next.run(Request::from_parts(parts, Body::from(bytes))).await,
    };
    entry.status = response.status().as_u16();
    shared.lock().journal.push(entry);
    response
}

impl MockDingTalk {
    /// Starts a builder.
    pub fn builder() -> MockDingTalkBuilder {
        MockDingTalkBuilder::default()
    }

    /// The base URL for both `api.dingtalk.com` and the Stream gateway (`http://127.0.0.1:<port>`).
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The Stream gateway served on the same address.
    pub fn gateway(&self) -> &MockGateway {
        &self.shared.gateway
    }

    /// Registers (or replaces) an app; if it has a Request URL, DingTalk's `check_url` is sent
    /// to it first and the outcome returned.
    pub async fn register_app(&self, app: MockApp) -> Option<Delivery> {
        control::register_app(&self.shared, app).await
    }

    /// Registers (or replaces) a process.
    pub fn register_process(&self, process: MockProcess) {
        self.shared
            .lock()
            .processes
            .insert(process.process_code.clone(), process);
    }

    /// Changes the injected faults.
    pub fn set_faults(&self, faults: MockFaults) {
        self.shared.lock().faults = faults;
    }

    /// Changes the enforced quotas (the counts so far are kept).
    pub fn set_quotas(&self, quotas: MockQuotas) {
        self.shared.lock().quotas.limits = quotas;
    }

    /// The enforced quotas.
    pub fn quotas(&self) -> MockQuotas {
        self.shared.lock().quotas.limits
    }

    /// Calls per app and API in the current month of the mock's clock, with the refused ones:
    /// how a test sees that a client over-calls.
    pub fn usage(&self) -> MockUsage {
        self.shared.lock().quotas.usage.clone()
    }

    /// Pushes a chosen event to an app, over HTTP push or Stream, through the same code paths
    /// (encryption, frames, faults) as the events of real state changes; returns the delivery
    /// outcome.
    ///
    /// # Errors
    /// `invalidParameter` for an unknown app, or an app without event delivery when
    /// [`MockEvent::via`] is not set.
    pub async fn push_event(&self, event: MockEvent) -> Result<Vec<Delivery>, (String, String)> {
        control::push_event(&self.shared, event).await
    }

    /// What the Stream gateway did with each event: pushes, re-pushes, ACKs (consumed, `LATER`,
    /// warnings for ACKs that do not follow the protocol) and drops.
    pub fn stream_journal(&self) -> Vec<StreamJournalEntry> {
        self.shared.gateway.journal()
    }

    /// Revokes every access token issued so far: the apps' (callers get
    /// `InvalidAuthentication`, or `88`/`40014` on the old API) and the signed-in users'.
    pub fn revoke_tokens(&self) {
        self.shared.lock().revoke_tokens();
    }

    /// Every OpenAPI request received, in order.
    pub fn journal(&self) -> Vec<JournalEntry> {
        self.shared.lock().journal.clone()
    }

    /// Every event delivery attempt (and dropped event), in order.
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.shared.lock().deliveries.clone()
    }

    /// Ids of all instances, in creation order.
    pub fn instance_ids(&self) -> Vec<String> {
        self.shared.lock().order.clone()
    }

    /// An instance as `GetProcessInstance` would return it (`result` object).
    pub fn instance(&self, id: &str) -> Option<Value> {
        self.shared.lock().instances.get(id).map(Instance::to_json)
    }

    /// Acts as an approver: agrees on the running task of `approver` (or the first running
    /// task). Pushes the resulting events.
    ///
    /// # Errors
    /// DingTalk's `(code, message)` when the instance or task does not allow it.
    pub fn approve(
        &self,
        instance_id: &str,
        approver: Option<&str>,
        remark: Option<&str>,
    ) -> Result<(), (String, String)> {
        control::decide(&self.shared, instance_id, approver, true, remark)
    }

    /// Acts as an approver: refuses. See [`approve`](Self::approve).
    ///
    /// # Errors
    /// DingTalk's `(code, message)` when the instance or task does not allow it.
    pub fn refuse(
        &self,
        instance_id: &str,
        approver: Option<&str>,
        remark: Option<&str>,
    ) -> Result<(), (String, String)> {
        control::decide(&self.shared, instance_id, approver, false, remark)
    }

    /// The originator revokes the instance in DingTalk (no 15-second rule for the app UI).
    ///
    /// # Errors
    /// DingTalk's `(code, message)` when the instance is not running.
    pub fn terminate(&self, instance_id: &str, remark: Option<&str>) -> Result<(), (String, String)> {
        control::terminate(&self.shared, instance_id, remark)
    }

    /// Adds a comment as `user`.
    ///
    /// # Errors
    /// `processInstanceNotExist` for an unknown instance.
    pub fn comment(&self, instance_id: &str, user: &str, text: &str) -> Result<(), (String, String)> {
        control::comment(&self.shared, instance_id, user, text)
    }

    /// The directory as it is now.
    pub fn directory(&self) -> MockDirectory {
        self.shared.lock().directory.clone()
    }

    /// A user joins (`user_add_org` to the apps of the user's corp, unless `notify` is
    /// [`Notify::Skip`]).
    ///
    /// # Errors
    /// `invalidParameter` when the user exists or a department does not.
    pub fn add_user(&self, user: MockUser, notify: Notify) -> Result<(), (String, String)> {
        control::change_directory(&self.shared, Change::AddUser(user), notify)
    }

    /// A user of `corp_id` moves to these departments (`user_modify_org`).
    ///
    /// # Errors
    /// `invalidParameter` for an unknown user or department.
    pub fn move_user(
        &self,
        corp_id: &str,
        user_id: &str,
        dept_ids: &[i64],
        notify: Notify,
    ) -> Result<(), (String, String)> {
        let change = Change::MoveUser {
            corp_id: corp_id.to_owned(),
            user_id: user_id.to_owned(),
            dept_ids: dept_ids.to_vec(),
        };
        control::change_directory(&self.shared, change, notify)
    }

    /// A user of `corp_id` leaves (`user_leave_org`); reading them answers `60121` from now.
    ///
    /// # Errors
    /// `invalidParameter` for an unknown user.
    pub fn remove_user(&self, corp_id: &str, user_id: &str, notify: Notify) -> Result<(), (String, String)> {
        let change = Change::RemoveUser {
            corp_id: corp_id.to_owned(),
            user_id: user_id.to_owned(),
        };
        control::change_directory(&self.shared, change, notify)
    }

    /// A department is created (`org_dept_create`).
    ///
    /// # Errors
    /// `invalidParameter` when it exists or its parent does not.
    pub fn add_department(&self, department: MockDepartment, notify: Notify) -> Result<(), (String, String)> {
        control::change_directory(&self.shared, Change::AddDepartment(department), notify)
    }

    /// A department of `corp_id` is renamed (`org_dept_modify`).
    ///
    /// # Errors
    /// `invalidParameter` for an unknown department.
    pub fn rename_department(
        &self,
        corp_id: &str,
        id: i64,
        name: &str,
        notify: Notify,
    ) -> Result<(), (String, String)> {
        let change = Change::RenameDepartment {
            corp_id: corp_id.to_owned(),
            id,
            name: name.to_owned(),
        };
        control::change_directory(&self.shared, change, notify)
    }

    /// An empty department of `corp_id` is removed (`org_dept_remove`).
    ///
    /// # Errors
    /// `invalidParameter` for an unknown, root or non-empty department.
    pub fn remove_department(&self, corp_id: &str, id: i64, notify: Notify) -> Result<(), (String, String)> {
        let change = Change::RemoveDepartment {
            corp_id: corp_id.to_owned(),
            id,
        };
        control::change_directory(&self.shared, change, notify)
    }

    /// Signs a user in without a browser: the `authCode` the sign-in page would issue and the
    /// URL it would redirect to.
    ///
    /// # Errors
    /// `invalidParameter` for an unknown app or user, or a redirect URL the app does not allow.
    pub fn sign_in_code(&self, sign_in: MockSignIn) -> Result<MockSignInCode, (String, String)> {
        signin::issue_code(&self.shared, sign_in)
    }

    /// Waits until `condition` holds (polling every 10 ms) or `timeout` passes.
    pub async fn wait_for(&self, timeout: Duration, condition: impl Fn(&Self) -> bool) -> bool {
        super::poll_until(timeout, || condition(self)).await
    }
}
