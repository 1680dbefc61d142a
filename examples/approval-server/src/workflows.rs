//! The approval workflows, kept in the store every replica shares as versioned documents, their
//! DingTalk secrets sealed with the secrets key ([`crate::secrets`]): those `server.toml`
//! declares are written at start (the file wins for the ids it declares), and admins create,
//! replace and delete others through the console API, each DingTalk workflow checked against
//! DingTalk before it is saved. Every write moves a generation counter in the store; each
//! replica then rebuilds what it serves from the stored workflows: the engine's workflows, the
//! Request URLs, the Stream connections, the DingTalk apps and the catalog policies name.

use crate::config::{self, ConfigError, DingTalkConfig, MappingConfig, Mode, WorkflowConfig, WorkflowType};
use crate::directory::Directory;
use crate::metrics::Metrics;
use crate::secrets::{SecretsError, SecretsKey};
use crate::workflow_checks::{self, Checked, WorkflowChecks, WorkflowProblems};
use crate::Endpoint;
use axum::routing::MethodRouter;
use dingtalk_sdk::budget::{BudgetClock, CallBudget};
use dingtalk_sdk::callback::{axum::callback_route, CallbackHandler};
use dingtalk_sdk::client::DingTalkClient;
use dingtalk_sdk::crypto::EventCrypto;
use dingtalk_sdk::event::Event;
#[cfg(feature = "demo")]
use dingtalk_sdk::mock::{MockApp, MockDingTalk};
use dingtalk_sdk::stream::client::StreamClient;
use dingtalk_sdk::token::Credentials;
use dingtalk_sdk::ProcessCode;
use sase_approval::backend::BuiltinBackend;
use sase_approval::clock::Clock;
use sase_approval::definition::{
    new_callback_id, Delivery, DingTalkSettings, Mapping, Problem, Template, Workflow, WorkflowKind,
};
use sase_approval::dingtalk::{verify_workflow, DingTalkBackend, StoreCounters, Verification};
use sase_approval::engine::Engine;
use sase_approval::store::{ApprovalStore, Document};
use sase_approval::Error as StoreError;
use sase_policy::ids::{UserId, WorkflowId};
use sase_policy::{Catalog, WorkflowKind as PolicyWorkflowKind};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const KIND: &str = "workflow";
/// Moved by every write of a workflow: a replica whose workflows are older rebuilds them.
const GENERATION: &str = "generation/workflow";
/// A DingTalk app's secrets: write-only, sealed at rest.
const SECRETS: [&str; 3] = ["client_secret", "token", "aes_key"];

/// The workflows policies may name, as the workflows in force have it.
pub(crate) type CatalogCell = Arc<RwLock<Arc<Catalog>>>;

/// A DingTalk app the server calls, with its call budget.
#[derive(Clone)]
pub(crate) struct App {
    pub(crate) client_id: String,
    pub(crate) client: DingTalkClient,
}

/// Why a workflow was not saved or deleted.
#[derive(Debug, thiserror::Error)]
pub(crate) enum WorkflowError {
    /// The body is not a workflow: where and why.
    #[error("at `{at}`: {message}")]
    BadBody { at: String, message: String },
    /// The workflow is wrong (as the configuration rules or DingTalk say): every problem
    /// found, each with its path in the request body.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<Problem>),
    /// Policies still name it, or requests of it are open: it cannot be deleted.
    #[error("{0}")]
    InUse(String),
    /// A stored secret does not open (the secrets key changed?).
    #[error(transparent)]
    Secrets(#[from] SecretsError),
    /// The store failed, or the version is stale ([`StoreError::Conflict`]).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A DingTalk client cannot be built from the configuration.
    #[error(transparent)]
    DingTalk(#[from] dingtalk_sdk::Error),
    /// DingTalk refused or failed a call made for the console (a live form).
    #[error("DingTalk: {0}")]
    Call(dingtalk_sdk::Error),
}

/// The app a live form is read with: its Client ID, and its secret unless the workflow named
/// with it has it stored.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FormApp {
    pub(crate) client_id: String,
    #[serde(default)]
    pub(crate) client_secret: Option<String>,
    #[serde(default)]
    pub(crate) api_base: Option<String>,
}

/// A stored workflow: its configuration with the app's secrets sealed.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Stored {
    id: String,
    name: Option<String>,
    #[serde(rename = "type", default)]
    kind: WorkflowType,
    #[serde(default)]
    approvers: Vec<String>,
    delivery: Delivery,
    callback_id: String,
    process_code: Option<String>,
    fields: BTreeMap<String, String>,
    /// Absent before workflows had forms for more than one template.
    #[serde(default)]
    mappings: Vec<MappingConfig>,
    dingtalk: Option<StoredApp>,
}

/// A DingTalk app as stored: `client_secret`, `token` and `aes_key` sealed.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredApp {
    client_id: String,
    client_secret: String,
    token: String,
    aes_key: String,
    receiver_id: Option<String>,
    api_base: Option<String>,
    qps_per_api: u32,
    calls_per_month: u64,
    reconcile_share_percent: u8,
}

/// Where a sealed secret belongs: a value sealed for one field of one workflow opens nowhere
/// else.
fn context(workflow: &str, field: &str) -> String {
    format!("workflow/{workflow}/{field}")
}

fn seal(key: &SecretsKey, w: &WorkflowConfig, callback_id: &str) -> Result<Stored, SecretsError> {
    Ok(Stored {
        id: w.id.clone(),
        name: w.name.clone(),
        kind: w.kind,
        approvers: w.approvers.clone(),
        delivery: w.delivery,
        callback_id: callback_id.to_owned(),
        process_code: w.process_code.clone(),
        fields: w.fields.clone(),
        mappings: w.mappings.clone(),
        dingtalk: w
            .dingtalk
            .as_ref()
            .map(|app| -> Result<StoredApp, SecretsError> {
                Ok(StoredApp {
                    client_id: app.client_id.clone(),
                    client_secret: key.seal(&app.client_secret, &context(&w.id, "client_secret"))?,
                    token: key.seal(&app.token, &context(&w.id, "token"))?,
                    aes_key: key.seal(&app.aes_key, &context(&w.id, "aes_key"))?,
                    receiver_id: app.receiver_id.clone(),
                    api_base: app.api_base.clone(),
                    qps_per_api: app.qps_per_api,
                    calls_per_month: app.calls_per_month,
                    reconcile_share_percent: app.reconcile_share_percent,
                })
            })
            .transpose()?,
    })
}

fn open(key: &SecretsKey, document: &Document) -> Result<WorkflowConfig, WorkflowError> {
    let stored: Stored = serde_json::from_str(&document.body).map_err(|e| StoreError::Store {
        reason: format!("stored workflow `{}` does not decode: {e}", document.id),
    })?;
    let dingtalk = match stored.dingtalk {
        Some(app) => {
            let mut config = DingTalkConfig::new(
                app.client_id,
                key.open(&app.client_secret, &context(&stored.id, "client_secret"))?,
                key.open(&app.token, &context(&stored.id, "token"))?,
                key.open(&app.aes_key, &context(&stored.id, "aes_key"))?,
            );
            config.receiver_id = app.receiver_id;
            config.api_base = app.api_base;
            config.qps_per_api = app.qps_per_api;
            config.calls_per_month = app.calls_per_month;
            config.reconcile_share_percent = app.reconcile_share_percent;
            Some(config)
        }
        None => None,
    };
    let mut config = WorkflowConfig::new(stored.id);
    config.name = stored.name;
    config.kind = stored.kind;
    config.approvers = stored.approvers;
    config.delivery = stored.delivery;
    config.callback_id = Some(stored.callback_id);
    config.process_code = stored.process_code;
    config.fields = stored.fields;
    config.mappings = stored.mappings;
    config.dingtalk = dingtalk;
    Ok(config)
}

/// A workflow in force: its configuration (secrets opened, `callback_id` set), the
/// definition the engine runs, and its app's client.
struct Served {
    config: WorkflowConfig,
    version: u64,
    updated_at_ms: i64,
    workflow: Workflow,
    api_base: Option<String>,
    client: Option<DingTalkClient>,
    /// The mock app (demo: a workflow without credentials), registered once its Request URL
    /// exists.
    #[cfg(feature = "demo")]
    mock_app: Option<MockApp>,
}

/// A workflow as the console shows it: what an admin pastes into DingTalk (the Request URL,
/// the event-subscription address) and its last check; the secrets only by name.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct WorkflowView {
    /// What policies name.
    #[schema(value_type = String)]
    pub(crate) id: WorkflowId,
    pub(crate) name: String,
    /// `dingtalk` or `builtin`.
    #[serde(rename = "type")]
    pub(crate) kind: WorkflowType,
    /// Who decides a built-in workflow's requests (console identities).
    pub(crate) approvers: Vec<String>,
    /// How DingTalk delivers its events (DingTalk workflows).
    pub(crate) delivery: Option<Delivery>,
    /// The DingTalk app's Client ID.
    pub(crate) client_id: Option<String>,
    /// Whom DingTalk's encrypted events are addressed to (the Client ID by default).
    pub(crate) receiver_id: Option<String>,
    /// The `app_uninstall` form (`PROC-…`); empty for a built-in workflow.
    pub(crate) process_code: String,
    /// System field → form label, of the `app_uninstall` form.
    pub(crate) fields: BTreeMap<String, String>,
    /// Every template → form mapping, the `app_uninstall` form's first.
    pub(crate) mappings: Vec<Mapping>,
    /// The Request URL's path (HTTP push).
    pub(crate) callback_path: Option<String>,
    /// The Request URL to paste into DingTalk's developer console (HTTP push, once the
    /// server's public URL is known).
    pub(crate) request_url: Option<String>,
    /// The event subscriptions to add in DingTalk's developer console, one per form.
    pub(crate) event_subscriptions: Vec<String>,
    /// The secrets set (write-only: by name, never their values).
    pub(crate) secrets: Vec<&'static str>,
    /// The app's DingTalk call budget.
    pub(crate) budget: Option<BudgetView>,
    /// Where DingTalk's API is (unset: DingTalk itself).
    pub(crate) api_base: Option<String>,
    /// The last check against DingTalk (DingTalk workflows).
    pub(crate) verification: Option<Checked>,
    /// The stored version, to name in a change.
    pub(crate) version: u64,
    /// Last written, Unix ms.
    pub(crate) updated_at_ms: i64,
}

/// A DingTalk app's call budget, as configured.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct BudgetView {
    /// The most calls a second to one API.
    qps_per_api: u32,
    /// The month's calls (the edition's quota).
    calls_per_month: u64,
    /// The share of the month's calls reconciliation may spend, in percent.
    reconcile_share_percent: u8,
}

/// A running Stream connection of one app.
struct StreamTask {
    /// What it was opened with: another secret or base opens another connection.
    key: (String, Option<String>),
    stop: CancellationToken,
    task: JoinHandle<()>,
}

/// What this replica serves now.
#[derive(Default)]
struct Current {
    generation: u64,
    /// By id.
    served: BTreeMap<String, Arc<Served>>,
    /// Each HTTP-push workflow's Request URL route, by its callback id.
    callbacks: HashMap<String, MethodRouter>,
    apps: Vec<App>,
}

impl Current {
    /// The DingTalk clients in use, by app, to keep across a rebuild.
    fn clients(&self) -> Vec<(AppKey, DingTalkClient)> {
        self.served
            .values()
            .filter_map(|s| Some((app_key(s), s.client.clone()?)))
            .collect()
    }
}

/// The workflows in the store, and what this replica serves of them.
#[derive(Clone)]
pub(crate) struct Workflows(Arc<Inner>);

struct Inner {
    store: Arc<dyn ApprovalStore>,
    clock: Arc<dyn Clock>,
    secrets: SecretsKey,
    engine: Arc<Engine>,
    metrics: Arc<Metrics>,
    checks: WorkflowChecks,
    catalog: CatalogCell,
    /// Where DingTalk reaches this server (the balancer's, with replicas).
    public_url: String,
    #[cfg(feature = "demo")]
    mock: Option<Arc<MockDingTalk>>,
    directory: Directory,
    current: RwLock<Arc<Current>>,
    /// The Stream connections; held while the workflows are rebuilt, so rebuilds take turns.
    streams: tokio::sync::Mutex<HashMap<String, StreamTask>>,
    shutdown: CancellationToken,
}

/// How [`Workflows`] is put together.
pub(crate) struct Parts {
    pub(crate) store: Arc<dyn ApprovalStore>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) secrets: SecretsKey,
    pub(crate) engine: Arc<Engine>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) catalog: CatalogCell,
    pub(crate) public_url: String,
    #[cfg(feature = "demo")]
    pub(crate) mock: Option<Arc<MockDingTalk>>,
    /// Takes the contact-change events of its app.
    pub(crate) directory: Directory,
    pub(crate) shutdown: CancellationToken,
}

/// A library path (`workflows.wf.fields.reason`, as [`workflow_checks`] names it) under
/// `at` (`workflow`, in an API body).
fn under(problem: Problem, id: &str, at: &str) -> Problem {
    Problem {
        path: problem.path.replacen(&format!("workflows.{id}"), at, 1),
        ..problem
    }
}

fn config_problem(e: ConfigError) -> Problem {
    match e {
        ConfigError::Invalid { key, message, .. } => Problem {
            path: key,
            reason: message,
        },
        other => Problem {
            path: String::new(),
            reason: other.to_string(),
        },
    }
}

impl Workflows {
    pub(crate) fn new(parts: Parts) -> Self {
        Self(Arc::new(Inner {
            store: parts.store,
            clock: parts.clock,
            secrets: parts.secrets,
            engine: parts.engine,
            metrics: parts.metrics,
            checks: WorkflowChecks::default(),
            catalog: parts.catalog,
            public_url: parts.public_url,
            #[cfg(feature = "demo")]
            mock: parts.mock,
            directory: parts.directory,
            current: RwLock::new(Arc::new(Current::default())),
            streams: tokio::sync::Mutex::new(HashMap::new()),
            shutdown: parts.shutdown,
        }))
    }

    fn current(&self) -> Arc<Current> {
        Arc::clone(&self.0.current.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// The handler of the app `client_id`'s events (its Request URL's and its Stream
    /// client's): contact changes to the directory when it follows this app, the rest to the
    /// engine, counted. An `Err` makes DingTalk deliver the event again.
    fn event_handler(
        &self,
        client_id: &str,
    ) -> impl Fn(Event) -> Pin<Box<dyn Future<Output = sase_approval::Result<()>> + Send>>
           + Clone
           + Send
           + Sync
           + 'static {
        let approvals = crate::metrics::event_handler(&self.0.metrics, &self.0.engine, client_id);
        let directory = (self.0.directory.app() == Some(client_id)).then(|| self.0.directory.clone());
        move |event: Event| match (&directory, &event) {
            (Some(directory), Event::UserChange(_) | Event::DeptChange(_)) => {
                let directory = directory.clone();
                Box::pin(async move {
                    directory
                        .on_event(&event)
                        .await
                        .map(|_| ())
                        .map_err(|e| StoreError::Store {
                            reason: e.to_string(),
                        })
                })
            }
            _ => approvals(event),
        }
    }

    /// Writes the workflows `server.toml` declares over stored ones of the same id (the file
    /// wins; those made through the API are kept), each with its Request URL id from
    /// `callback_ids`; then serves every stored workflow, each DingTalk one checked against
    /// DingTalk first.
    ///
    /// # Errors
    /// A stored workflow that is wrong, or that DingTalk says is wrong (every problem); a
    /// stored secret that does not open; a store error.
    pub(crate) async fn start(
        &self,
        declared: &[WorkflowConfig],
        callback_ids: &HashMap<String, String>,
    ) -> Result<(), crate::Error> {
        let stored = self.0.store.list_documents(KIND).await?;
        let mut wrote = false;
        for w in declared {
            let callback_id = callback_ids.get(&w.id).cloned().unwrap_or_else(new_callback_id);
            let mut wanted = w.clone();
            wanted.callback_id = Some(callback_id.clone());
            let same = stored.iter().find(|d| d.id == w.id);
            if let Some(document) = same {
                if open(&self.0.secrets, document).map_err(store_error)? == wanted {
                    continue;
                }
            }
            let body =
                serde_json::to_string(&seal(&self.0.secrets, w, &callback_id)?).map_err(encode_error)?;
            let version = same.map_or(0, |d| d.version);
            let document = Document::new(KIND, &w.id, version, body).at(self.0.clock.now_ms());
            // Another replica seeding at once writes the same; the file's copy wins either way.
            match self.0.store.put_document(&document).await {
                Ok(_) | Err(StoreError::Conflict { .. }) => wrote = true,
                Err(e) => return Err(e.into()),
            }
        }
        if wrote {
            self.0.store.add_to_counter(GENERATION, 1, None).await?;
        }
        let declared_ids: Vec<&str> = declared.iter().map(|w| w.id.as_str()).collect();
        let mut problems = self.rebuild(true, &declared_ids).await.map_err(store_error)?;
        // In the file's order, each workflow's as they were found.
        problems.sort_by_key(|p| {
            declared_ids
                .iter()
                .position(|id| p.path.starts_with(&format!("workflows.{id}.")))
        });
        if problems.is_empty() {
            Ok(())
        } else {
            Err(WorkflowProblems { problems }.into())
        }
    }

    /// Rebuilds what this replica serves from the stored workflows if their generation moved
    /// since the last rebuild (at start, always). Workflows whose version did not change keep
    /// their client (its token and call budget); new or changed DingTalk ones are checked
    /// against DingTalk. A problem with a workflow `server.toml` declares (`declared`, at
    /// start) is returned, and stops the start; one with another stored workflow is logged
    /// (and shown in the console), so that an admin can still fix it through the API: one
    /// that DingTalk finds wrong is served still (its pending requests need their Request
    /// URL), one that breaks the configuration's rules is not.
    async fn rebuild(&self, at_start: bool, declared: &[&str]) -> Result<Vec<Problem>, WorkflowError> {
        let mut streams = self.0.streams.lock().await;
        let generation = self.0.store.add_to_counter(GENERATION, 0, None).await?.value;
        let before = self.current();
        if !at_start && generation == before.generation {
            return Ok(Vec::new());
        }
        let mut documents = self.0.store.list_documents(KIND).await?;
        // The file's first: another stored workflow conflicting with them is the one left out.
        documents.sort_by_key(|d| !declared.contains(&d.id.as_str()));
        let mut served: BTreeMap<String, Arc<Served>> = BTreeMap::new();
        let mut changed = Vec::new();
        let mut problems = Vec::new();
        let mut report = |problem: Problem, id: &str| {
            if declared.contains(&id) {
                problems.push(problem);
            } else {
                tracing::error!(workflow = %id, path = %problem.path, problem = %problem.reason,
                    "stored workflow invalid");
            }
        };
        let mut clients = before.clients();
        let mut accepted: Vec<WorkflowConfig> = Vec::new();
        for document in &documents {
            let config = open(&self.0.secrets, document)?;
            let trial: Vec<&WorkflowConfig> = accepted.iter().chain([&config]).collect();
            let last = trial.len() - 1;
            if let Err(e) = config::validate_workflows(&trial, Mode::BUILT, |i| {
                let id = trial.get(i).map_or("", |w| w.id.as_str());
                if i == last && declared.contains(&id) {
                    format!("workflows.{id}")
                } else {
                    format!("stored workflow `{id}`")
                }
            }) {
                report(config_problem(e), &document.id);
                continue;
            }
            accepted.push(config.clone());
            if let Some(known) = before
                .served
                .get(&document.id)
                .filter(|s| s.version == document.version)
            {
                served.insert(document.id.clone(), Arc::clone(known));
                continue;
            }
            let Some(resolved) = self.resolve(config, document, &mut clients, at_start)? else {
                continue;
            };
            let own = resolved.workflow.problems(&Template::all_built_in());
            if !own.is_empty() {
                for problem in own {
                    report(workflow_checks::config_path(problem), &document.id);
                }
                continue;
            }
            changed.push(document.id.clone());
            served.insert(document.id.clone(), Arc::new(resolved));
        }
        for id in &changed {
            let Some(s) = served.get(id) else { continue };
            let Some(client) = &s.client else { continue };
            if self
                .0
                .checks
                .get(&s.workflow.id)
                .is_some_and(|c| c.version == s.version)
            {
                continue;
            }
            #[cfg(feature = "demo")]
            if let (Some(mock), Some(app)) = (&self.0.mock, &s.mock_app) {
                mock.register_app(app.clone()).await;
            }
            let client = if at_start {
                client.clone()
            } else {
                client.background()
            };
            let verification = verify_workflow(&client, &s.workflow).await;
            if declared.contains(&id.as_str()) || !matches!(verification, Verification::Invalid { .. }) {
                workflow_checks::log(&s.workflow, &verification);
            }
            if let Verification::Invalid { problems: found } = &verification {
                for problem in found {
                    report(workflow_checks::config_path(problem.clone()), id);
                }
            }
            self.0
                .checks
                .set(&s.workflow.id, self.checked(verification, s.version));
        }
        if !problems.is_empty() {
            return Ok(problems);
        }
        self.serve(generation, served, &mut streams)?;
        #[cfg(feature = "demo")]
        self.register_mock_apps(&changed).await;
        Ok(problems)
    }

    fn checked(&self, verification: Verification, version: u64) -> Checked {
        Checked {
            verification,
            checked_at_ms: self.0.clock.now_ms(),
            version,
        }
    }

    /// `config` resolved: on real DingTalk with its app's client (one client per app and
    /// secret, kept across rebuilds), or, at start in a demo build, on the mock DingTalk.
    /// `None`: a workflow without credentials that cannot be served here.
    fn resolve(
        &self,
        config: WorkflowConfig,
        document: &Document,
        clients: &mut Vec<(AppKey, DingTalkClient)>,
        at_start: bool,
    ) -> Result<Option<Served>, WorkflowError> {
        let callback_id = config.callback_id.clone().unwrap_or_else(new_callback_id);
        if config.kind == WorkflowType::Builtin {
            let workflow = Workflow {
                id: WorkflowId::new(&config.id),
                name: config.name.clone().unwrap_or_else(|| config.id.clone()),
                kind: WorkflowKind::BuiltIn {
                    approvers: config.approvers.iter().map(UserId::new).collect(),
                },
                mappings: Vec::new(),
                callback_id,
            };
            return self
                .served(config, document, workflow, None, CallBudget::default(), clients)
                .map(Some);
        }
        let (workflow, api_base, budget) = match &config.dingtalk {
            Some(app) => {
                let settings = DingTalkSettings {
                    client_id: app.client_id.clone(),
                    client_secret: app.client_secret.clone(),
                    token: app.token.clone(),
                    aes_key: app.aes_key.clone(),
                    receiver_id: app.receiver_id.clone().unwrap_or_else(|| app.client_id.clone()),
                    delivery: config.delivery,
                    dept_id: -1,
                };
                let workflow = definition(
                    &config,
                    callback_id,
                    settings,
                    config.process_code.clone().unwrap_or_default(),
                    config.fields.clone(),
                );
                (workflow, app.api_base.clone(), app.budget())
            }
            None => {
                // Only a demo build has the mock to run it on, made at start.
                #[cfg(feature = "demo")]
                if let Some(mock) = self.0.mock.as_ref().filter(|_| at_start) {
                    let on_mock = crate::demo::on_mock(mock, &config, callback_id);
                    let mut served = self.served(
                        config,
                        document,
                        on_mock.workflow,
                        Some(mock.base_url()),
                        CallBudget::default(),
                        clients,
                    )?;
                    served.mock_app = Some(on_mock.app);
                    return Ok(Some(served));
                }
                #[cfg(not(feature = "demo"))]
                let _ = at_start;
                tracing::warn!(
                    workflow = %config.id,
                    "a workflow without DingTalk credentials is served only on the demo's mock DingTalk, \
                     from server.toml at start: not served"
                );
                return Ok(None);
            }
        };
        self.served(config, document, workflow, api_base, budget, clients)
            .map(Some)
    }

    fn served(
        &self,
        config: WorkflowConfig,
        document: &Document,
        workflow: Workflow,
        api_base: Option<String>,
        budget: CallBudget,
        clients: &mut Vec<(AppKey, DingTalkClient)>,
    ) -> Result<Served, WorkflowError> {
        let client = match workflow.dingtalk() {
            Some(settings) => {
                let key = (
                    settings.client_id.clone(),
                    settings.client_secret.clone(),
                    api_base.clone(),
                );
                match clients.iter().find(|(k, _)| *k == key) {
                    Some((_, client)) => Some(client.clone()),
                    None => {
                        let client = self.client(settings, api_base.as_deref(), budget)?;
                        clients.push((key, client.clone()));
                        Some(client)
                    }
                }
            }
            None => None,
        };
        Ok(Served {
            config,
            version: document.version,
            updated_at_ms: document.updated_at_ms,
            workflow,
            api_base,
            client,
            #[cfg(feature = "demo")]
            mock_app: None,
        })
    }

    /// A client of the app `settings` names; its month's calls are counted in the store
    /// every replica shares.
    fn client(
        &self,
        settings: &DingTalkSettings,
        api_base: Option<&str>,
        budget: CallBudget,
    ) -> Result<DingTalkClient, WorkflowError> {
        let clock = Arc::clone(&self.0.clock);
        let budget_clock: BudgetClock = Arc::new(move || clock.now_ms());
        let mut builder =
            DingTalkClient::builder(Credentials::new(&settings.client_id, &settings.client_secret))
                .budget(budget)
                .budget_clock(budget_clock)
                .shared_counters(Arc::new(StoreCounters::new(Arc::clone(&self.0.store))));
        if let Some(base) = api_base {
            builder = builder.api_base(base);
        }
        Ok(builder.build()?)
    }

    /// Puts `served` in force: the engine's workflows, the Request URLs, the apps, the
    /// catalog, and the Stream connections (one per app; those of apps no longer streaming,
    /// or opened with another secret, are closed).
    fn serve(
        &self,
        generation: u64,
        served: BTreeMap<String, Arc<Served>>,
        streams: &mut HashMap<String, StreamTask>,
    ) -> Result<(), WorkflowError> {
        let mut backends = Vec::with_capacity(served.len());
        let mut callbacks = HashMap::new();
        let mut apps: Vec<App> = Vec::new();
        let mut catalog = Catalog::new();
        let mut streaming: HashMap<String, (String, Option<String>)> = HashMap::new();
        for s in served.values() {
            if let WorkflowKind::BuiltIn { .. } = s.workflow.kind {
                backends.push((s.workflow.clone(), Arc::new(BuiltinBackend) as _));
                catalog = catalog.workflow(s.workflow.id.clone(), PolicyWorkflowKind::BuiltIn);
                continue;
            }
            let (Some(settings), Some(client)) = (s.workflow.dingtalk(), &s.client) else {
                continue;
            };
            backends.push((
                s.workflow.clone(),
                Arc::new(DingTalkBackend::new(client.clone(), s.workflow.clone())?) as _,
            ));
            catalog = catalog.workflow(s.workflow.id.clone(), PolicyWorkflowKind::DingTalk);
            if !apps.iter().any(|a| a.client_id == settings.client_id) {
                apps.push(App {
                    client_id: settings.client_id.clone(),
                    client: client.clone(),
                });
            }
            match settings.delivery {
                Delivery::HttpPush => {
                    let crypto = EventCrypto::new(&settings.token, &settings.aes_key, &settings.receiver_id)
                        .map_err(WorkflowError::DingTalk)?;
                    let route = callback_route(
                        CallbackHandler::builder(crypto).build(),
                        // Events verified by this app's crypto decide only its workflows' requests.
                        self.event_handler(&settings.client_id),
                    );
                    callbacks.insert(s.workflow.callback_id.clone(), route);
                }
                _ => {
                    streaming
                        .entry(settings.client_id.clone())
                        .or_insert_with(|| (settings.client_secret.clone(), s.api_base.clone()));
                }
            }
        }
        self.0.engine.set_workflows(backends)?;
        *self.0.catalog.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(catalog);
        streams.retain(|app, task| {
            let keep = streaming.get(app) == Some(&task.key);
            if !keep {
                task.stop.cancel();
                tracing::info!(client_id = %app, "stream closed: the app's workflows changed");
            }
            keep
        });
        for (app, key) in streaming {
            if streams.contains_key(&app) {
                continue;
            }
            let mut stream = StreamClient::builder(&app, &key.0);
            if let Some(base) = &key.1 {
                stream = stream.api_base(base);
            }
            let stream = stream.build()?;
            let on_event = self.event_handler(&app);
            let stop = self.0.shutdown.child_token();
            let until = stop.clone();
            let task = tokio::spawn(async move { stream.run(on_event, until.cancelled_owned()).await });
            streams.insert(app, StreamTask { key, stop, task });
        }
        let count = served.len();
        *self.0.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(Current {
            generation,
            served,
            callbacks,
            apps,
        });
        tracing::info!(workflows = count, generation, "workflows in force");
        Ok(())
    }

    /// Registers each new mock workflow's app with its Request URL, now that it is served
    /// (the mock sends `check_url`, as DingTalk does when the URL is saved), or for Stream.
    #[cfg(feature = "demo")]
    async fn register_mock_apps(&self, changed: &[String]) {
        let Some(mock) = &self.0.mock else { return };
        let current = self.current();
        for s in changed.iter().filter_map(|id| current.served.get(id)) {
            let Some(app) = &s.mock_app else { continue };
            let app = match self.request_url(&s.workflow) {
                Some(url) => app.clone().request_url(url),
                None => app.clone().stream(true),
            };
            let check = mock.register_app(app).await;
            tracing::info!(
                workflow = %s.workflow.id,
                ok = check.as_ref().is_none_or(|d| d.ok),
                "mock DingTalk app registered"
            );
        }
    }

    fn request_url(&self, workflow: &Workflow) -> Option<String> {
        let settings = workflow.dingtalk()?;
        (settings.delivery == Delivery::HttpPush)
            .then(|| format!("{}{}", self.0.public_url, workflow.callback_path()))
    }

    /// The Request URL route of `callback_id`, if a workflow in force has it.
    pub(crate) fn callback(&self, callback_id: &str) -> Option<MethodRouter> {
        self.current().callbacks.get(callback_id).cloned()
    }

    /// The DingTalk apps of the workflows in force.
    pub(crate) fn apps(&self) -> Vec<App> {
        self.current().apps.clone()
    }

    /// The DingTalk workflows in force with their clients, for checks again.
    pub(crate) fn with_clients(&self) -> Vec<(Workflow, DingTalkClient, u64)> {
        self.current()
            .served
            .values()
            .filter_map(|s| Some((s.workflow.clone(), s.client.clone()?, s.version)))
            .collect()
    }

    /// Each workflow in force: its app, form, delivery and Request URL.
    pub(crate) fn endpoints(&self) -> Vec<Endpoint> {
        self.current()
            .served
            .values()
            .filter_map(|s| {
                let settings = s.workflow.dingtalk()?;
                let request_url = self.request_url(&s.workflow);
                let process_code = s
                    .workflow
                    .mappings
                    .first()
                    .map_or_else(|| ProcessCode::new(""), |m| m.process_code.clone());
                tracing::info!(
                    workflow = %s.workflow.id,
                    client_id = %settings.client_id,
                    %process_code,
                    request_url = request_url.as_deref().unwrap_or("(stream mode)"),
                    "workflow ready"
                );
                Some(Endpoint {
                    workflow: s.workflow.id.clone(),
                    client_id: settings.client_id.clone(),
                    process_code,
                    delivery: settings.delivery,
                    request_url,
                })
            })
            .collect()
    }

    /// The workflows in force, as the console shows them (secrets never).
    pub(crate) fn views(&self) -> Vec<WorkflowView> {
        self.current().served.values().map(|s| self.view(s)).collect()
    }

    /// The workflow `id` in force, as the console shows it.
    pub(crate) fn view_of(&self, id: &str) -> Option<WorkflowView> {
        self.current().served.get(id).map(|s| self.view(s))
    }

    /// A workflow as the console shows it: what an admin pastes into DingTalk (the Request
    /// URL, the event-subscription address) and its last check; the secrets only as set.
    fn view(&self, s: &Served) -> WorkflowView {
        let w = &s.workflow;
        let settings = w.dingtalk();
        let process_code = s.config.process_code.clone().unwrap_or_default();
        WorkflowView {
            id: w.id.clone(),
            name: w.name.clone(),
            kind: s.config.kind,
            approvers: s.config.approvers.clone(),
            delivery: settings.map(|s| s.delivery),
            client_id: settings.map(|s| s.client_id.clone()),
            receiver_id: settings.map(|s| s.receiver_id.clone()),
            event_subscriptions: if settings.is_some() {
                w.mappings
                    .iter()
                    .map(|m| {
                        format!(
                            "/v1.0/event/bpms_instance_change/processCode/{}/type/*",
                            m.process_code
                        )
                    })
                    .collect()
            } else {
                Vec::new()
            },
            process_code,
            fields: s.config.fields.clone(),
            mappings: w.mappings.clone(),
            callback_path: settings.map(|_| w.callback_path()),
            request_url: self.request_url(w),
            secrets: if settings.is_some() {
                SECRETS.to_vec()
            } else {
                Vec::new()
            },
            budget: s.config.dingtalk.as_ref().map(|a| BudgetView {
                qps_per_api: a.qps_per_api,
                calls_per_month: a.calls_per_month,
                reconcile_share_percent: a.reconcile_share_percent,
            }),
            api_base: s.api_base.clone(),
            verification: self.0.checks.get(&w.id),
            version: s.version,
            updated_at_ms: s.updated_at_ms,
        }
    }

    /// Saves the workflow in `body` (`{"workflow": {…}, "version": n}`, 0 for a new one)
    /// as `id` once it is valid and DingTalk does not refuse it (a workflow DingTalk cannot be
    /// asked about is saved unverified), and serves it here at once and on every replica
    /// within their poll. An update may leave out the app's secrets: the stored ones stay.
    ///
    /// # Errors
    /// [`WorkflowError::BadBody`], [`WorkflowError::Invalid`] with every problem, a stale
    /// `version` ([`StoreError::Conflict`]).
    pub(crate) async fn put(&self, id: &str, body: Value) -> Result<(WorkflowView, bool), WorkflowError> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Put {
            workflow: Value,
            version: u64,
        }
        let Put {
            workflow: mut value,
            version,
        } = parse(body, "")?;
        let stored = self.0.store.get_document(KIND, id).await?;
        let actual = stored.as_ref().map_or(0, |d| d.version);
        if actual != version {
            return Err(StoreError::Conflict {
                id: format!("workflow `{id}`"),
                expected: version,
                actual,
            }
            .into());
        }
        let before = stored.as_ref().map(|d| open(&self.0.secrets, d)).transpose()?;
        keep_secrets(&mut value, before.as_ref());
        let mut config: WorkflowConfig = parse(value, "workflow.")?;
        if config.id != id {
            return Err(WorkflowError::BadBody {
                at: "workflow.id".into(),
                message: format!("`{}` is not the workflow of this URL, `{id}`", config.id),
            });
        }
        if config.kind == WorkflowType::DingTalk && config.dingtalk.is_none() {
            return Err(WorkflowError::Invalid(vec![Problem {
                path: "workflow.dingtalk".into(),
                reason: "required: the app's client_id, client_secret, token and aes_key (a workflow \
                         without credentials runs only on the demo's mock DingTalk, from server.toml)"
                    .into(),
            }]));
        }
        let callback_id = config
            .callback_id
            .clone()
            .or_else(|| before.as_ref().and_then(|b| b.callback_id.clone()))
            .unwrap_or_else(new_callback_id);
        config.callback_id = Some(callback_id.clone());
        let current = self.current();
        let others: Vec<&WorkflowConfig> = current
            .served
            .values()
            .filter(|s| s.config.id != id)
            .map(|s| &s.config)
            .collect();
        // The new one last: a conflict is named on it.
        let all: Vec<&WorkflowConfig> = others.iter().copied().chain([&config]).collect();
        let last = all.len() - 1;
        config::validate_workflows(&all, Mode::BUILT, |i| {
            if i == last {
                "workflow".to_owned()
            } else {
                format!("workflow `{}`", all.get(i).map_or("", |w| w.id.as_str()))
            }
        })
        .map_err(|e| WorkflowError::Invalid(vec![config_problem(e)]))?;

        // Checked against DingTalk before it is saved.
        let document = Document::new(KIND, id, version, String::new());
        let mut clients = current.clients();
        let Some(candidate) = self.resolve(config.clone(), &document, &mut clients, false)? else {
            return Err(WorkflowError::Invalid(Vec::new()));
        };
        let own = candidate.workflow.problems(&Template::all_built_in());
        if !own.is_empty() {
            return Err(WorkflowError::Invalid(
                own.into_iter()
                    .map(|p| under(workflow_checks::config_path(p), id, "workflow"))
                    .collect(),
            ));
        }
        // A built-in workflow has nothing to check against.
        let verification = match &candidate.client {
            Some(client) => Some(verify_workflow(client, &candidate.workflow).await),
            None => None,
        };
        if let Some(verification) = &verification {
            workflow_checks::log(&candidate.workflow, verification);
        }
        if let Some(Verification::Invalid { problems }) = &verification {
            return Err(WorkflowError::Invalid(
                problems
                    .iter()
                    .cloned()
                    .map(|p| under(workflow_checks::config_path(p), id, "workflow"))
                    .collect(),
            ));
        }
        let body =
            serde_json::to_string(&seal(&self.0.secrets, &config, &callback_id)?).map_err(encode_error)?;
        let saved = self
            .0
            .store
            .put_document(&Document::new(KIND, id, version, body).at(self.0.clock.now_ms()))
            .await?;
        if let Some(verification) = verification {
            self.0
                .checks
                .set(&candidate.workflow.id, self.checked(verification, saved));
        }
        self.changed().await?;
        let view = self.view_of(id).ok_or_else(|| StoreError::Store {
            reason: format!("workflow `{id}` was saved but is not in force"),
        })?;
        Ok((view, version == 0))
    }

    /// The live form `process_code` as DingTalk has it, read with `app` (its secret, when left
    /// out, the stored one of `workflow`, which must be of the same app) or else with the app of
    /// `workflow`, a DingTalk workflow in force. The call counts against the app's month.
    ///
    /// # Errors
    /// [`WorkflowError::BadBody`] naming what is missing; [`WorkflowError::Call`] when
    /// DingTalk refuses (a wrong secret, an unknown form) or fails.
    pub(crate) async fn live_form(
        &self,
        process_code: &str,
        workflow: Option<&str>,
        app: Option<FormApp>,
    ) -> Result<dingtalk_sdk::workflow::FormSchema, WorkflowError> {
        let bad = |at: &str, message: String| WorkflowError::BadBody {
            at: at.to_owned(),
            message,
        };
        if process_code.trim().is_empty() {
            return Err(bad(
                "process_code",
                "required: the form's process code (`PROC-…`)".into(),
            ));
        }
        if app.as_ref().is_some_and(|a| a.client_id.trim().is_empty()) {
            return Err(bad("dingtalk.client_id", "required: the app's Client ID".into()));
        }
        let client = match app {
            None => {
                let id =
                    workflow.ok_or_else(|| bad("dingtalk", "name the app, or a workflow of it".into()))?;
                let served = self.current().served.get(id).cloned();
                let served = served.ok_or_else(|| bad("workflow", format!("no workflow `{id}`")))?;
                served
                    .client
                    .clone()
                    .ok_or_else(|| bad("workflow", format!("`{id}` is not a DingTalk workflow")))?
            }
            Some(app) => {
                let secret = match (app.client_secret, workflow) {
                    (Some(secret), _) => secret,
                    (None, Some(id)) => {
                        let stored = self.0.store.get_document(KIND, id).await?;
                        let config = stored.as_ref().map(|d| open(&self.0.secrets, d)).transpose()?;
                        config
                            .and_then(|c| c.dingtalk)
                            .filter(|d| d.client_id == app.client_id)
                            .map(|d| d.client_secret)
                            .ok_or_else(|| {
                                bad(
                                    "dingtalk.client_secret",
                                    format!("required: workflow `{id}` has no stored secret of this app"),
                                )
                            })?
                    }
                    (None, None) => return Err(bad("dingtalk.client_secret", "required".into())),
                };
                let clock = Arc::clone(&self.0.clock);
                let budget_clock: BudgetClock = Arc::new(move || clock.now_ms());
                let mut builder = DingTalkClient::builder(Credentials::new(&app.client_id, &secret))
                    .budget_clock(budget_clock)
                    .shared_counters(Arc::new(StoreCounters::new(Arc::clone(&self.0.store))));
                if let Some(base) = &app.api_base {
                    builder = builder.api_base(base);
                }
                builder.build()?
            }
        };
        client
            .workflow()
            .form_schema(&ProcessCode::new(process_code))
            .await
            .map_err(WorkflowError::Call)
    }

    /// Deletes workflow `id` at `version`, unless a policy names it (`names`: the ids of the
    /// policies that do) or requests of it are open.
    ///
    /// # Errors
    /// [`WorkflowError::InUse`], a stale `version` ([`StoreError::Conflict`]; `actual` 0:
    /// there is none).
    pub(crate) async fn delete(&self, id: &str, version: u64, names: &[String]) -> Result<(), WorkflowError> {
        if !names.is_empty() {
            return Err(WorkflowError::InUse(format!(
                "policies {} name workflow `{id}`: change them first",
                names.join(", ")
            )));
        }
        let mut open = sase_approval::store::ListFilter::default().states(vec![
            sase_approval::state::RequestState::Submitted,
            sase_approval::state::RequestState::Pending,
        ]);
        open.workflow = Some(WorkflowId::new(id));
        let open = self.0.store.list(&open).await?.len();
        if open > 0 {
            return Err(WorkflowError::InUse(format!(
                "{open} request(s) of workflow `{id}` are open: decide or revoke them first"
            )));
        }
        self.0.store.delete_document(KIND, id, version).await?;
        self.changed().await
    }

    async fn changed(&self) -> Result<(), WorkflowError> {
        self.0.store.add_to_counter(GENERATION, 1, None).await?;
        self.rebuild(false, &[]).await.map(drop)
    }

    /// Rebuilds every `every` when another replica changed the workflows, and checks the
    /// unverified ones again every `recheck`; at `shutdown` closes the Stream connections and
    /// waits for them.
    pub(crate) fn follow(&self, every: Duration, recheck: Duration) -> JoinHandle<()> {
        let workflows = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let rechecks = workflow_checks::recheck_unverified(
                workflows.0.checks.clone(),
                {
                    let workflows = workflows.clone();
                    move || workflows.with_clients()
                },
                Arc::clone(&workflows.0.clock),
                recheck,
                workflows.0.shutdown.clone(),
            );
            loop {
                tokio::select! {
                    () = workflows.0.shutdown.cancelled() => break,
                    _ = tick.tick() => {}
                }
                if let Err(e) = workflows.rebuild(false, &[]).await {
                    tracing::warn!(error = %e, "cannot reload the workflows");
                }
            }
            let tasks: Vec<JoinHandle<()>> = workflows
                .0
                .streams
                .lock()
                .await
                .drain()
                .map(|(_, t)| {
                    t.stop.cancel();
                    t.task
                })
                .collect();
            for task in tasks.into_iter().chain([rechecks]) {
                if let Err(e) = task.await {
                    tracing::warn!(error = %e, "a workflow task failed");
                }
            }
        })
    }

    /// The configuration of every workflow in force, its secrets left out, for the export.
    pub(crate) fn configs(&self) -> Vec<WorkflowConfig> {
        self.current().served.values().map(|s| s.config.clone()).collect()
    }
}

/// An app's client is shared by the workflows of one app, secret and API base.
type AppKey = (String, String, Option<String>);

fn app_key(s: &Served) -> AppKey {
    let settings = s.workflow.dingtalk();
    (
        settings.map(|s| s.client_id.clone()).unwrap_or_default(),
        settings.map(|s| s.client_secret.clone()).unwrap_or_default(),
        s.api_base.clone(),
    )
}

/// An update without the app's secrets keeps the stored ones, if it names the same app.
fn keep_secrets(value: &mut Value, before: Option<&WorkflowConfig>) {
    let (Some(app), Some(stored)) = (
        value.get_mut("dingtalk").and_then(Value::as_object_mut),
        before.and_then(|b| b.dingtalk.as_ref()),
    ) else {
        return;
    };
    if app.get("client_id").and_then(Value::as_str) != Some(stored.client_id.as_str()) {
        return;
    }
    for (field, secret) in SECRETS
        .iter()
        .zip([&stored.client_secret, &stored.token, &stored.aes_key])
    {
        app.entry(*field).or_insert_with(|| json!(secret));
    }
}

/// `value` as a `T`, a mistake named by its path in the body under `at`.
fn parse<T: serde::de::DeserializeOwned>(value: Value, at: &str) -> Result<T, WorkflowError> {
    serde_path_to_error::deserialize(value).map_err(|e| WorkflowError::BadBody {
        at: format!("{at}{}", e.path()),
        message: e.into_inner().to_string(),
    })
}

fn encode_error(e: serde_json::Error) -> StoreError {
    StoreError::Store {
        reason: format!("cannot encode a workflow: {e}"),
    }
}

fn store_error(e: WorkflowError) -> crate::Error {
    match e {
        WorkflowError::Store(e) => crate::Error::Engine(e),
        WorkflowError::DingTalk(e) => crate::Error::DingTalk(e),
        other => crate::Error::Engine(StoreError::Store {
            reason: other.to_string(),
        }),
    }
}

/// What a workflow's configuration says besides its DingTalk app: its id, name and Request
/// URL id, and its forms: the `app_uninstall` one (`process_code`, `fields`) first, then
/// those of its other templates.
pub(crate) fn definition(
    w: &WorkflowConfig,
    callback_id: String,
    settings: DingTalkSettings,
    process_code: String,
    fields: BTreeMap<String, String>,
) -> Workflow {
    let uninstall = Mapping {
        template: Template::app_uninstall().id,
        process_code: ProcessCode::new(process_code),
        fields,
    };
    Workflow {
        id: WorkflowId::new(&w.id),
        name: w.name.clone().unwrap_or_else(|| w.id.clone()),
        kind: WorkflowKind::DingTalk(settings),
        mappings: std::iter::once(uninstall)
            .chain(w.mappings.iter().map(|m| Mapping {
                template: m.template.clone(),
                process_code: ProcessCode::new(&m.process_code),
                fields: m.fields.clone(),
            }))
            .collect(),
        callback_id,
    }
}
