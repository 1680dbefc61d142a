//! The SASE approval server: policy checks for agents, approval requests through DingTalk
//! (HTTP push to a per-workflow Request URL, or Stream mode), a console API for admins, and
//! grants. The `approval-server` binary runs it; tests start it with [`start`] on an
//! ephemeral port and stop it with [`Server::shutdown`].
//!
//! With the `demo` feature (on by default), a workflow without DingTalk credentials runs on
//! the mock DingTalk in-process, and a missing admin token, device or policy is made up.
//! Without it such a configuration is refused by [`Config::validate`].
//!
//! ```no_run
//! # async fn run() -> Result<(), sase_approval_server::Error> {
//! let mut config = sase_approval_server::Config::default();
//! config.listen = ([127, 0, 0, 1], 0).into();
//! let server = sase_approval_server::start(config).await?;
//! println!("listening on {}", server.addr);
//! server.shutdown().await
//! # }
//! ```

mod admins;
#[expect(
    clippy::result_large_err,
    reason = "handlers return ready axum responses as their errors; their size does not matter here"
)]
mod api;
mod audit_log;
pub mod config;
pub mod connections;
mod console;
#[cfg(feature = "demo")]
mod demo;
mod devices;
mod directory;
mod filing_limit;
pub mod grant_keys;
mod login_throttle;
mod metrics;
mod policies;
mod secrets;
mod sign_in;
mod workflow_checks;
mod workflows;

pub use secrets::SecretsError;
pub use workflow_checks::WorkflowProblems;
pub mod tls;

pub use config::Config;

use config::{ConfigError, DeviceConfig};
use dingtalk_sdk::client::DingTalkClient;
#[cfg(feature = "demo")]
use dingtalk_sdk::mock::MockDingTalk;
use dingtalk_sdk::token::Credentials;
use dingtalk_sdk::ProcessCode;
use sase_approval::clock::{Clock, SystemClock};
use sase_approval::definition::{new_callback_id, Delivery};
use sase_approval::engine::Engine;
use sase_approval::store::{ApprovalStore, SqliteStore};
use sase_policy::ids::WorkflowId;
use sase_policy::GrantSigner;
use secrets::SecretsKey;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How long [`Server::shutdown`] waits for in-flight requests and background tasks before it
/// aborts what is left.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Why the server could not start, or did not stop cleanly.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The grant signing key file cannot be read, parsed or created.
    #[error(transparent)]
    GrantKey(#[from] grant_keys::GrantKeyError),
    /// The key of the workflows' stored secrets cannot be read or created, or a stored
    /// secret does not open with it.
    #[error(transparent)]
    Secrets(#[from] secrets::SecretsError),
    /// The TLS certificate or key file cannot be used (it is named).
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    /// The listen address cannot be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The in-process mock DingTalk cannot start.
    #[cfg(feature = "demo")]
    #[error("the mock DingTalk cannot start: {0}")]
    Mock(std::io::Error),
    /// The demo policy does not parse (a bug).
    #[cfg(feature = "demo")]
    #[error("the demo policy: {0}")]
    DemoPolicy(toml::de::Error),
    /// The store, a workflow or the engine is invalid.
    #[error(transparent)]
    Engine(#[from] sase_approval::Error),
    /// A DingTalk client or event subscription is invalid.
    #[error(transparent)]
    DingTalk(#[from] dingtalk_sdk::Error),
    /// The policies are invalid (e.g. they name an unknown workflow).
    #[error("policies: {0}")]
    Policy(#[from] sase_policy::Error),
    /// Workflows are wrong (against their template, or as DingTalk says): every problem,
    /// each with its path.
    #[error(transparent)]
    Workflows(#[from] WorkflowProblems),
    /// The HTTP server failed.
    #[error("the HTTP server failed: {0}")]
    Serve(std::io::Error),
    /// The signal handlers cannot be installed.
    #[error("cannot listen for signals: {0}")]
    Signal(std::io::Error),
    /// A task panicked.
    #[error("a server task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// Shutting down took longer than [`SHUTDOWN_GRACE`]; what was left was aborted.
    #[error("shutdown took longer than {0:?}; the remaining tasks were aborted")]
    ShutdownTimeout(Duration),
}

/// A workflow as served.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Endpoint {
    /// The workflow.
    pub workflow: WorkflowId,
    /// Its DingTalk app.
    pub client_id: String,
    /// Its form.
    pub process_code: ProcessCode,
    /// How its events arrive.
    pub delivery: Delivery,
    /// The Request URL DingTalk must push to (HTTP push only).
    pub request_url: Option<String>,
}

/// A running server. `Debug` redacts the admin token.
pub struct Server {
    /// Where it listens.
    pub addr: SocketAddr,
    /// The workflows, with their Request URLs.
    pub endpoints: Vec<Endpoint>,
    /// The console's bearer token.
    pub admin_token: String,
    /// The enrolled devices (tokens for the agent API).
    pub devices: Vec<DeviceConfig>,
    /// The in-process mock DingTalk, when a workflow has no credentials.
    #[cfg(feature = "demo")]
    pub mock: Option<Arc<MockDingTalk>>,
    /// The demo's console login (name, password), made up at start when the admin token is.
    #[cfg(feature = "demo")]
    pub console_login: Option<(String, String)>,
    /// The engine (for inspection in tests and tools).
    pub engine: Arc<Engine>,
    /// `https` when the server terminates TLS itself, else `http`.
    scheme: &'static str,
    shutdown: CancellationToken,
    server: JoinHandle<std::io::Result<()>>,
    background: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("addr", &self.addr)
            .field("scheme", &self.scheme)
            .field("endpoints", &self.endpoints)
            .field("devices", &self.devices)
            .field("background_tasks", &self.background.len())
            .finish_non_exhaustive()
    }
}

impl Server {
    /// `https` when the server terminates TLS itself (`tls_cert_file`), else `http`.
    pub fn scheme(&self) -> &'static str {
        self.scheme
    }

    /// The Request URL of `workflow`, if it is served over HTTP push.
    pub fn request_url(&self, workflow: &str) -> Option<&str> {
        self.endpoints
            .iter()
            .find(|e| e.workflow.as_str() == workflow)
            .and_then(|e| e.request_url.as_deref())
    }

    /// Stops accepting requests and signals every background task (Stream clients, the
    /// reconciler) to stop, then waits up to [`SHUTDOWN_GRACE`] for in-flight requests and
    /// those tasks to finish.
    ///
    /// # Errors
    /// If the HTTP server or a task failed, or they did not finish in time (they are then
    /// aborted).
    pub async fn shutdown(mut self) -> Result<(), Error> {
        self.shutdown.cancel();
        let finished = tokio::time::timeout(SHUTDOWN_GRACE, async {
            for task in &mut self.background {
                task.await?;
            }
            (&mut self.server).await?.map_err(Error::Serve)
        })
        .await;
        match finished {
            Ok(result) => result,
            Err(_elapsed) => {
                self.server.abort();
                self.background.iter().for_each(JoinHandle::abort);
                Err(Error::ShutdownTimeout(SHUTDOWN_GRACE))
            }
        }
    }

    /// Runs until `signals` reports SIGINT or SIGTERM, then shuts down gracefully.
    ///
    /// # Errors
    /// As [`shutdown`](Self::shutdown).
    pub async fn run_until(self, mut signals: StopSignals) -> Result<(), Error> {
        signals.recv().await;
        self.shutdown().await
    }
}

/// The process's SIGINT and SIGTERM, caught from [`install`](Self::install) on.
///
/// Install them before the server says it is ready: a signal that arrives before its
/// handler exists takes the default action, which kills the process without a graceful
/// shutdown (a supervisor that stops the server right after its banner saw exactly that).
#[derive(Debug)]
pub struct StopSignals {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
}

impl StopSignals {
    /// Installs the handlers now. Needs a Tokio runtime.
    ///
    /// # Errors
    /// [`Error::Signal`] if a handler cannot be installed.
    pub fn install() -> Result<Self, Error> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Ok(Self {
                interrupt: signal(SignalKind::interrupt()).map_err(Error::Signal)?,
                terminate: signal(SignalKind::terminate()).map_err(Error::Signal)?,
            })
        }
        #[cfg(not(unix))]
        Ok(Self {})
    }

    /// Waits for the next SIGINT or SIGTERM (ctrl-c where there are no Unix signals).
    pub async fn recv(&mut self) {
        #[cfg(unix)]
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Starts the server described by `config`: validates it, resolves the workflows, opens the
/// store, builds the engine, compiles the policies, enrolls the devices, serves the routes,
/// and starts the Stream clients and the reconciler.
///
/// # Errors
/// If the configuration is invalid, the TLS certificate or key cannot be used, the address
/// cannot be bound or the database opened.
pub async fn start(config: Config) -> Result<Server, Error> {
    start_with_clock(config, Arc::new(SystemClock)).await
}

/// [`start`] with the engine on `clock` (policy decisions, filing limits, grants, expiry):
/// tests move a [`ManualClock`](sase_approval::clock::ManualClock) instead of waiting.
///
/// # Errors
/// As [`start`].
pub async fn start_with_clock(config: Config, clock: Arc<dyn Clock>) -> Result<Server, Error> {
    config.validate()?;
    let tls = config
        .tls_files()
        .map(|(cert, key)| tls::acceptor(cert, key))
        .transpose()?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| Error::Bind {
            addr: config.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| Error::Bind {
        addr: config.listen,
        source,
    })?;
    let store = open_store(&config).await?;
    let metrics = Arc::new(metrics::Metrics::new());
    let callback_ids = callback_ids(&config, store.as_ref()).await?;
    #[cfg(feature = "demo")]
    let mock = demo::start_mock(&config).await?;
    let keys = match &config.grant_keys {
        Some(seeds) => grant_keys::from_env(seeds)?,
        // Replicas never make a key of their own.
        None if config.shared_database() => grant_keys::load(&config.grant_key_path())?,
        None => grant_keys::load_or_create(&config.grant_key_path())?,
    };
    let secrets = match &config.secrets_key {
        Some(key) => SecretsKey::from_env(key)?,
        None if config.shared_database() => SecretsKey::load(&config.secrets_key_path())?,
        None => SecretsKey::load_or_create(&config.secrets_key_path())?,
    };
    let engine = build_engine(&config, Arc::clone(&store), keys.signer, Arc::clone(&clock))?;
    let public_url = config
        .public_url
        .clone()
        .unwrap_or_else(|| format!("{scheme}://{addr}"));
    let shutdown = CancellationToken::new();
    // Whatever started (Stream connections) stops if the start fails after it.
    let stop_on_failure = shutdown.clone().drop_guard();
    let registry = devices::Devices::new(Arc::clone(&store), Arc::clone(&clock));
    // The demo on the mock alone follows the mock's directory, and offers sign-in there.
    #[cfg(feature = "demo")]
    let demo_directory = match &mock {
        Some(mock) if config.mock_only() && config.directory.is_none() => Some(demo::directory(mock).await),
        _ => None,
    };
    #[cfg(not(feature = "demo"))]
    let demo_directory: Option<config::DirectoryConfig> = None;
    let directory_config = config.directory.as_ref().or(demo_directory.as_ref());
    let directory_app = directory_config.map(directory_client).transpose()?;
    let directory = directory::Directory::open(directory::Parts {
        app: directory_app.clone(),
        store: Arc::clone(&store),
        clock: Arc::clone(&clock),
        engine: Arc::clone(&engine),
        devices: registry.clone(),
    })
    .await?;
    let sign_in = match (directory_config, directory_app) {
        (Some(d), Some((client_id, client))) if d.corp_id.is_some() => {
            let sign_in = sign_in::SignIn::new(sign_in::Parts {
                client_id,
                client,
                corp_id: d.corp_id.clone().unwrap_or_default(),
                login_base: d.login_base.clone(),
                public_url: public_url.clone(),
                max_waiting: d.max_waiting_sign_ins,
                store: Arc::clone(&store),
                clock: Arc::clone(&clock),
                devices: registry.clone(),
                directory: directory.clone(),
            });
            tracing::info!(
                redirect_uri = sign_in.redirect_uri(),
                "enrollment by DingTalk sign-in: list this redirect URL in the app"
            );
            Some(sign_in)
        }
        _ => None,
    };
    let catalog = workflows::CatalogCell::default();
    let workflows = workflows::Workflows::new(workflows::Parts {
        store: Arc::clone(&store),
        clock: Arc::clone(&clock),
        secrets,
        engine: Arc::clone(&engine),
        metrics: Arc::clone(&metrics),
        catalog: Arc::clone(&catalog),
        public_url,
        #[cfg(feature = "demo")]
        mock: mock.clone(),
        directory: directory.clone(),
        shutdown: shutdown.clone(),
    });
    workflows.start(&config.workflows, &callback_ids).await?;
    let policies = policies::Policies::new(Arc::clone(&store), Arc::clone(&clock), catalog);
    seed_policies(&config, &policies).await?;
    let (admin_token, devices) = enroll(&config)?;
    registry.seed(&devices).await?;

    let admins = admins::Admins::new(Arc::clone(&store), Arc::clone(&clock));
    // A demo on the mock alone, whose admin token is made up, gets a console login made up too.
    #[cfg(feature = "demo")]
    let console_login = if config.mock_only() && config.admin_token.is_none() {
        let login = demo::console_login(&admins).await.map_err(|e| match e {
            admins::AdminError::Store(e) => Error::Engine(e),
            admins::AdminError::Invalid { field, message } => Error::Config(config::invalid(field, message)),
        })?;
        Some(login)
    } else {
        None
    };
    let logins = login_throttle::LoginThrottle::new(Arc::clone(&store), Arc::clone(&clock));
    let state = api::AppState::new(api::Parts {
        engine: Arc::clone(&engine),
        policies: policies.clone(),
        admin_token: admin_token.clone(),
        devices: registry,
        directory: directory.clone(),
        sign_in,
        grant_keys: keys.verifiers,
        filings_per_hour: config.filings_per_hour,
        workflows: workflows.clone(),
        admins: admins.clone(),
        audit: audit_log::AuditLog::new(Arc::clone(&store), Arc::clone(&clock), config.audit_log_lines),
        logins: logins.clone(),
    })
    .with_secure_cookies(scheme == "https")
    .with_metrics(Arc::clone(&metrics), store, config.metrics_token.clone());
    let server = serve(
        listener,
        api::router(state),
        config.connection_limits(),
        tls,
        shutdown.clone(),
    );
    let endpoints = workflows.endpoints();
    let background = vec![
        policies.follow(config.reload_every(), shutdown.clone()),
        directory.follow(
            config.reload_every(),
            config.directory_sync_every(),
            shutdown.clone(),
        ),
        workflows.follow(config.reload_every(), config.workflow_check_every()),
        start_reconciler(
            Arc::clone(&engine),
            workflows,
            Housekeeping { admins, logins },
            metrics,
            config.reconcile_every(),
            config.reconciler_lease(),
            shutdown.clone(),
        ),
    ];
    stop_on_failure.disarm();
    tracing::info!(%addr, scheme, database = %config.database, "approval server listening");
    Ok(Server {
        addr,
        endpoints,
        admin_token,
        devices,
        #[cfg(feature = "demo")]
        mock,
        #[cfg(feature = "demo")]
        console_login,
        engine,
        scheme,
        shutdown,
        server,
        background,
    })
}

/// Creates the first admin of the console (role admin) in `config`'s database: `true`, or
/// `false` when an admin exists already (more are created in the console).
///
/// # Errors
/// A name or password the console would refuse (named by `name` or `password`), or a store
/// error.
pub async fn create_first_admin(config: &Config, name: &str, password: &str) -> Result<bool, Error> {
    let store = open_store(config).await?;
    let admins = admins::Admins::new(store, Arc::new(SystemClock));
    admins.bootstrap(name, password).await.map_err(|e| match e {
        admins::AdminError::Store(e) => Error::Engine(e),
        admins::AdminError::Invalid { field, message } => Error::Config(config::invalid(field, message)),
    })
}

/// Checks the audit chain in `config`'s database from its first entry to its head: the
/// entries verified, or the first entry where it breaks (altered, removed or reordered).
///
/// # Errors
/// The database cannot be opened or read.
pub async fn verify_audit(config: &Config) -> Result<Result<u64, sase_approval::audit::ChainBreak>, Error> {
    let store = open_store(config).await?;
    Ok(audit_log::verify_chain(store.as_ref()).await?)
}

/// The client of the directory's DingTalk app.
fn directory_client(d: &config::DirectoryConfig) -> Result<(String, DingTalkClient), Error> {
    let mut client = DingTalkClient::builder(Credentials::new(&d.client_id, &d.client_secret));
    if let Some(base) = &d.api_base {
        client = client.api_base(base);
    }
    if let Some(base) = &d.oapi_base {
        client = client.oapi_base(base);
    }
    Ok((d.client_id.clone(), client.build()?))
}

/// The store `database` names: a PostgreSQL URL (shared by replicas), or a SQLite file.
async fn open_store(config: &Config) -> Result<Arc<dyn ApprovalStore>, Error> {
    if config.shared_database() {
        #[cfg(feature = "postgres")]
        return Ok(Arc::new(
            sase_approval::store::PostgresStore::connect(&config.database).await?,
        ));
        #[cfg(not(feature = "postgres"))]
        return Err(config::postgres_not_built().into());
    }
    Ok(Arc::new(SqliteStore::open(&config.database).await?))
}

/// Each workflow's Request URL id: configured (`callback_id`), or kept in the store, so the
/// URL configured in DingTalk stays valid across restarts and is the same on every replica
/// (the first to start picks it). A SQLite database from before keeps the id it had in the
/// file beside it (`<database>.<workflow>.callback-id`).
async fn callback_ids(config: &Config, store: &dyn ApprovalStore) -> Result<HashMap<String, String>, Error> {
    let mut ids = HashMap::new();
    for w in &config.workflows {
        let id = match &w.callback_id {
            Some(id) => id.clone(),
            None => {
                let earlier = (!config.shared_database())
                    .then(|| {
                        std::fs::read_to_string(format!("{}.{}.callback-id", config.database, w.id)).ok()
                    })
                    .flatten()
                    .map(|s| s.trim().to_owned())
                    .filter(|s| s.len() == 32);
                let proposed = earlier.unwrap_or_else(new_callback_id);
                store
                    .shared_value(&format!("callback_id/{}", w.id), &proposed)
                    .await?
            }
        };
        ids.insert(w.id.clone(), id);
    }
    Ok(ids)
}

/// The engine, without workflows yet ([`workflows::Workflows`] puts them in force).
fn build_engine(
    config: &Config,
    store: Arc<dyn ApprovalStore>,
    signer: GrantSigner,
    clock: Arc<dyn Clock>,
) -> Result<Arc<Engine>, Error> {
    let mut engine = Engine::builder(store, signer)
        .clock(clock)
        .recheck(config.recheck_schedule())
        .grant_ttl(Duration::from_secs(config.grant_ttl_secs))
        .event_retention(Duration::from_secs(config.event_retention_secs))
        .max_reason_chars(config.max_reason_chars)
        // Requests, their transitions and grants in the audit chain; with
        // `audit_log_lines`, each entry also as a log line for a SIEM.
        .audit(if config.audit_log_lines {
            Arc::new(audit_log::log_line)
        } else {
            Arc::new(|_: &sase_approval::audit::AuditEntry| {})
        });
    if config.expire_after_secs > 0 {
        engine = engine.expire_after(Duration::from_secs(config.expire_after_secs));
    }
    Ok(Arc::new(engine.build()?))
}

/// Writes the policies `server.toml` declares (checked against the workflows, problems named
/// by their path in the file) into the store, and loads every stored one. In a demo build on
/// the mock DingTalk only, a demo policy on the first workflow when the file declares none and
/// the store has none; validation has refused their absence otherwise.
async fn seed_policies(config: &Config, policies: &policies::Policies) -> Result<(), Error> {
    let (declared, fallback) = match &config.policies {
        Some(document) => (document.policies.clone(), Vec::new()),
        #[cfg(feature = "demo")]
        None => (
            Vec::new(),
            demo::policies(config.workflows.first().map_or("wf-dingtalk", |w| w.id.as_str()))?.policies,
        ),
        #[cfg(not(feature = "demo"))]
        None => return Err(config::required("policies").into()),
    };
    sase_policy::validate(&declared, &policies.catalog())?;
    policies.seed(&declared, fallback).await.map_err(|e| match e {
        policies::PolicyError::Invalid(issues) => Error::Policy(sase_policy::Error::Validation { issues }),
        policies::PolicyError::Store(e) => Error::Engine(e),
    })
}

/// The admin token and the enrolled devices (in a demo build on the mock DingTalk only, made
/// up when not configured; validation has refused a missing admin token otherwise).
fn enroll(config: &Config) -> Result<(String, Vec<DeviceConfig>), ConfigError> {
    let admin_token = match &config.admin_token {
        Some(token) => token.clone(),
        #[cfg(feature = "demo")]
        None => demo::random(32),
        #[cfg(not(feature = "demo"))]
        None => return Err(config::required("admin_token")),
    };
    #[cfg(feature = "demo")]
    if config.devices.is_empty() && config.mock_only() {
        return Ok((admin_token, vec![demo::device()]));
    }
    if config.devices.is_empty() {
        tracing::warn!("no devices are enrolled: every agent request will be refused (add [[devices]])");
    }
    Ok((admin_token, config.devices.clone()))
}

/// Serves `app` on `listener` (over TLS with `tls`) until `shutdown`, then lets in-flight
/// requests finish.
fn serve(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    limits: connections::Limits,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shutdown: CancellationToken,
) -> JoinHandle<std::io::Result<()>> {
    tokio::spawn(async move {
        connections::serve(listener, app, limits, tls, shutdown).await;
        Ok(())
    })
}

/// What the reconciliation lease holder also deletes on each pass.
struct Housekeeping {
    /// Its admin sessions that expired unseen.
    admins: admins::Admins,
    /// Its failed-login counts of windows that are over.
    logins: login_throttle::LoginThrottle,
}

impl Housekeeping {
    async fn run(&self) {
        match self.admins.prune_sessions().await {
            Ok(0) => {}
            Ok(pruned) => tracing::info!(pruned, "expired admin sessions deleted"),
            Err(e) => tracing::warn!(error = %e, "cannot delete expired admin sessions"),
        }
        match self.logins.prune().await {
            Ok(0) => {}
            Ok(pruned) => tracing::info!(pruned, "past windows' failed-login counts deleted"),
            Err(e) => tracing::warn!(error = %e, "cannot delete past failed-login counts"),
        }
    }
}

/// How often each DingTalk app's calls this month are logged (when they changed).
const USAGE_LOG_EVERY: Duration = Duration::from_secs(3600);

/// Reconciles every `every` (instances whose events never came) and deletes the admin
/// sessions that expired unseen and the failed-login counts of windows that are over (while
/// this replica holds the lease) until `shutdown`, and logs
/// each DingTalk app's calls this month once an hour when they changed. `metrics` counts the
/// passes and shows whether this replica holds the lease.
fn start_reconciler(
    engine: Arc<Engine>,
    workflows: workflows::Workflows,
    housekeeping: Housekeeping,
    metrics: Arc<metrics::Metrics>,
    every: Duration,
    lease: Duration,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    // This replica's name for the lease: replicas sharing a database reconcile one at a
    // time; when the holder dies, another takes over within `lease` and a pass.
    let holder = format!("replica-{:016x}", rand::random::<u64>());
    metrics.lease_held(&holder, false);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        let mut logged: HashMap<String, (tokio::time::Instant, u64)> = HashMap::new();
        let mut holding = false;
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                _ = tick.tick() => {}
            }
            match engine.hold_lease("reconciler", &holder, lease).await {
                Ok(held) if held != holding => {
                    holding = held;
                    tracing::info!(replica = %holder, lease_secs = lease.as_secs(),
                        "{}", if held { "reconciler lease taken" } else { "reconciler lease held by another replica" });
                }
                Ok(_) => {}
                Err(e) => {
                    holding = false;
                    tracing::warn!(replica = %holder, error = %e, "cannot take the reconciler lease");
                }
            }
            metrics.lease_held(&holder, holding);
            for app in &workflows.apps() {
                let last = logged.get(&app.client_id).copied();
                if last.is_some_and(|(at, _)| at.elapsed() < USAGE_LOG_EVERY) {
                    continue;
                }
                let usage = app.client.shared_usage().await;
                if last.is_none_or(|(_, calls)| calls != usage.calls) {
                    tracing::info!(
                        client_id = %app.client_id,
                        month = %usage.month,
                        calls = usage.calls,
                        limit = usage.limit,
                        background = usage.background,
                        refused = usage.refused,
                        throttled = usage.throttled,
                        "dingtalk usage"
                    );
                }
                logged.insert(app.client_id.clone(), (tokio::time::Instant::now(), usage.calls));
            }
            if !holding {
                continue;
            }
            housekeeping.run().await;
            // A pass in progress finishes: it records what it found before the server stops.
            let pass = engine.reconcile(every).await;
            metrics.reconciled(pass.as_ref().ok().map(|r| r.changed));
            match pass {
                Ok(r) if r.changed + r.linked > 0 => tracing::info!(
                    checked = r.checked,
                    not_due = r.not_due,
                    looked_up = r.looked_up,
                    changed = r.changed,
                    linked = r.linked,
                    pruned_events = r.pruned_events,
                    "reconciled"
                ),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "reconciliation failed"),
            }
        }
    })
}
