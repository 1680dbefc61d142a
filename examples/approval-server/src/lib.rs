//! The SASE approval server: policy checks for agents, approval requests through DingTalk
//! (HTTP push to a per-workflow Request URL, or Stream mode), a console API for admins, and
//! grants. `examples/approval-server` runs it; tests start it with [`start`].
//!
//! With no DingTalk credentials configured it starts the mock DingTalk in-process.

// Handlers return ready axum responses as their errors; their size does not matter here.
#[allow(clippy::result_large_err)]
mod api;
pub mod config;

use config::{Config, DeviceConfig, WorkflowConfig};
use dingtalk_sdk::client::DingTalkClient;
use dingtalk_sdk::mock::{MockApp, MockDingTalk, MockFormField, MockProcess};
use dingtalk_sdk::stream::client::StreamClient;
use dingtalk_sdk::token::Credentials;
use dingtalk_sdk::ProcessCode;
use rand::distributions::{Alphanumeric, DistString as _};
use sase_approval::backend::DingTalkBackend;
use sase_approval::definition::{
    new_callback_id, Delivery, DingTalkSettings, Mapping, Workflow, WorkflowKind,
};
use sase_approval::engine::Engine;
use sase_approval::store::SqliteStore;
use sase_policy::ids::WorkflowId;
use sase_policy::{Catalog, GrantSigner, PolicyDocument, PolicySet, WorkflowKind as PolicyWorkflowKind};
use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// The mock's uninstall form when a mock workflow maps no fields: system field → label.
const MOCK_FIELDS: [(&str, &str); 4] = [
    ("device", "设备名称"),
    ("reason", "卸载原因"),
    ("requester", "申请人"),
    ("app_version", "客户端版本"),
];

fn random(n: usize) -> String {
    Alphanumeric.sample_string(&mut rand::thread_rng(), n)
}

/// A workflow's Request URL id, kept beside the database so the URL configured in DingTalk
/// stays valid across restarts. Workflow ids are validated to be file-name safe.
fn persisted_callback_id(database: &str, workflow: &str) -> String {
    let path = format!("{database}.{workflow}.callback-id");
    if let Some(id) = std::fs::read_to_string(&path)
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| s.len() == 32)
    {
        return id;
    }
    let id = new_callback_id();
    if let Err(e) = std::fs::write(&path, &id) {
        tracing::warn!(%path, error = %e, "cannot persist the callback id; the Request URL will change on restart");
    }
    id
}

/// The grant signing key, kept beside the database so grants survive restarts.
fn signer(database: &str) -> GrantSigner {
    let path = format!("{database}.grant-key");
    let seed = std::fs::read_to_string(&path)
        .ok()
        .and_then(|text| {
            let mut seed = [0u8; 32];
            hex::decode_to_slice(text.trim(), &mut seed).ok().map(|()| seed)
        })
        .unwrap_or_else(|| {
            let seed: [u8; 32] = rand::random();
            if let Err(e) = std::fs::write(&path, hex::encode(seed)) {
                tracing::warn!(%path, error = %e, "cannot persist the grant key; grants will not survive a restart");
            }
            seed
        });
    GrantSigner::from_bytes(&seed)
}

/// The demo policy: employees need approval (via `workflow`) to uninstall; `it-admin` is exempt.
fn demo_policies(workflow: &str) -> Result<PolicyDocument, toml::de::Error> {
    toml::from_str(&format!(
        r#"
        [[policies]]
        id = "anti-uninstall-employees"
        name = "Employees need approval to uninstall"
        priority = 10
        switches = {{ anti_uninstall = true, auto_start = true }}
        scope = {{ groups = ["employees"] }}
        whitelist = ["it-admin"]
        approval = {{ allow_filing = true, workflow = "{workflow}" }}
        [policies.prompt.zh-CN]
        title = "禁止卸载安全客户端"
        content = "卸载需要审批。请填写原因并提交审批。"
        primary_button = "提交审批"
        secondary_button = "取消"
        [policies.prompt.en-US]
        title = "Uninstalling the SASE App needs approval"
        content = "Give a reason and file a request; you can uninstall once it is approved."
        primary_button = "File for Approval"
        secondary_button = "Cancel"
        "#
    ))
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

/// A running server.
#[derive(Debug)]
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
    pub mock: Option<MockDingTalk>,
    /// The engine (for inspection in tests and tools).
    pub engine: Arc<Engine>,
    stop: tokio::sync::oneshot::Sender<()>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
    background: Vec<tokio::task::JoinHandle<()>>,
}

impl Server {
    /// The Request URL of `workflow`, if it is served over HTTP push.
    pub fn request_url(&self, workflow: &str) -> Option<&str> {
        self.endpoints
            .iter()
            .find(|e| e.workflow.as_str() == workflow)
            .and_then(|e| e.request_url.as_deref())
    }

    /// Stops accepting requests, lets in-flight ones finish, and stops background work.
    ///
    /// # Errors
    /// If the server task failed.
    pub async fn shutdown(self) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let _ = self.stop.send(());
        for task in &self.background {
            task.abort();
        }
        self.server.await??;
        Ok(())
    }

    /// Runs until the process gets ctrl-c (SIGINT) or SIGTERM, then shuts down gracefully.
    ///
    /// # Errors
    /// If the server task failed.
    pub async fn run_until_signal(self) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        #[cfg(unix)]
        {
            let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
        self.shutdown().await
    }
}

/// One configured workflow, resolved: real DingTalk, or an app and form on the mock.
struct Resolved {
    workflow: Workflow,
    api_base: Option<String>,
    /// The mock app to register once the Request URL exists.
    mock_app: Option<MockApp>,
}

/// Resolves `w`, creating its app's form on `mock` when it has no credentials (`start`
/// starts the mock whenever a workflow has none).
fn resolve(
    w: &WorkflowConfig,
    database: &str,
    mock: Option<&MockDingTalk>,
) -> Result<Resolved, config::ConfigError> {
    let callback_id = w
        .callback_id
        .clone()
        .unwrap_or_else(|| persisted_callback_id(database, &w.id));
    let name = w.name.clone().unwrap_or_else(|| w.id.clone());
    let workflow =
        |settings: DingTalkSettings, process_code: String, fields: BTreeMap<String, String>| Workflow {
            id: WorkflowId::new(&w.id),
            name: name.clone(),
            kind: WorkflowKind::DingTalk(settings),
            mappings: vec![Mapping {
                template: "app_uninstall".into(),
                process_code: ProcessCode::new(process_code),
                fields,
            }],
            callback_id: callback_id.clone(),
        };
    if let Some(dt) = &w.dingtalk {
        let settings = DingTalkSettings {
            client_id: dt.client_id.clone(),
            client_secret: dt.client_secret.clone(),
            token: dt.token.clone(),
            aes_key: dt.aes_key.clone(),
            receiver_id: dt.receiver_id.clone().unwrap_or_else(|| dt.client_id.clone()),
            delivery: w.delivery,
            dept_id: -1,
        };
        return Ok(Resolved {
            workflow: workflow(
                settings,
                w.process_code.clone().unwrap_or_default(),
                w.fields.clone(),
            ),
            api_base: dt.api_base.clone(),
            mock_app: None,
        });
    }
    let mock = mock.ok_or_else(|| config::ConfigError::Invalid {
        key: format!("workflows.{}.dingtalk", w.id),
        message: "no credentials and no mock DingTalk".into(),
    })?;
    let (client_id, secret, token, aes_key) =
        (format!("dingmock-{}", w.id), random(24), random(16), random(43));
    let process_code = w
        .process_code
        .clone()
        .unwrap_or_else(|| format!("PROC-{}", w.id.to_uppercase()));
    let fields: BTreeMap<String, String> = if w.fields.is_empty() {
        MOCK_FIELDS
            .iter()
            .map(|(f, l)| ((*f).to_owned(), (*l).to_owned()))
            .collect()
    } else {
        w.fields.clone()
    };
    mock.register_process(MockProcess::new(
        &process_code,
        &name,
        fields
            .iter()
            .map(|(field, label)| MockFormField::new(label, "TextField", field == "reason"))
            .collect(),
        vec!["approver1".into()],
    ));
    let app = MockApp::new(&client_id, &secret).events(&token, &aes_key);
    let settings = DingTalkSettings {
        client_id: client_id.clone(),
        client_secret: secret,
        token,
        aes_key,
        receiver_id: client_id,
        delivery: w.delivery,
        dept_id: -1,
    };
    Ok(Resolved {
        workflow: workflow(settings, process_code, fields),
        api_base: Some(mock.base_url()),
        mock_app: Some(app),
    })
}

/// Starts the server described by `config`.
///
/// # Errors
/// If the configuration is invalid, the address cannot be bound or the database opened.
pub async fn start(config: Config) -> Result<Server, Box<dyn std::error::Error + Send + Sync>> {
    config.validate()?;
    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    let local = listener.local_addr()?;
    let public_url = config
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{local}"));

    // Workflows without credentials run on the mock DingTalk, in-process.
    let mock = if config.workflows.iter().any(|w| w.dingtalk.is_none()) {
        let mock = MockDingTalk::builder().start().await?;
        tracing::warn!(
            mock = %mock.base_url(),
            "NO DINGTALK CREDENTIALS CONFIGURED for {}: using the built-in MOCK DingTalk. Approve requests with \
             POST {}/__mock/instances/<instanceId>/approve",
            config
                .workflows
                .iter()
                .filter(|w| w.dingtalk.is_none())
                .map(|w| w.id.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            mock.base_url()
        );
        Some(mock)
    } else {
        None
    };
    let resolved = config
        .workflows
        .iter()
        .map(|w| resolve(w, &config.database, mock.as_ref()))
        .collect::<Result<Vec<_>, _>>()?;

    let store = Arc::new(SqliteStore::open(&config.database).await?);
    let mut engine = Engine::builder(store, signer(&config.database))
        .grant_ttl(Duration::from_secs(config.grant_ttl_secs))
        .event_retention(Duration::from_secs(config.event_retention_secs));
    let mut catalog = Catalog::new();
    // Workflows of one app share a client, hence its token.
    let mut clients: HashMap<(String, Option<String>), DingTalkClient> = HashMap::new();
    for r in &resolved {
        let Some(settings) = r.workflow.dingtalk() else {
            continue;
        };
        let key = (settings.client_id.clone(), r.api_base.clone());
        let client = match clients.entry(key) {
            Entry::Occupied(known) => known.get().clone(),
            Entry::Vacant(new) => {
                let mut builder =
                    DingTalkClient::builder(Credentials::new(&settings.client_id, &settings.client_secret));
                if let Some(base) = &r.api_base {
                    builder = builder.api_base(base);
                }
                new.insert(builder.build()?).clone()
            }
        };
        let backend = Arc::new(DingTalkBackend::new(client, r.workflow.clone())?);
        engine = engine.workflow(r.workflow.clone(), backend);
        catalog = catalog.workflow(r.workflow.id.clone(), PolicyWorkflowKind::DingTalk);
    }
    let engine = Arc::new(engine.build()?);
    let policies = match config.policies.clone() {
        Some(doc) => doc,
        None => demo_policies(config.workflows.first().map_or("wf-dingtalk", |w| w.id.as_str()))?,
    };
    let policies = PolicySet::compile(policies.policies, &catalog)?;
    let admin_token = config.admin_token.clone().unwrap_or_else(|| random(32));
    let devices = if config.devices.is_empty() {
        vec![DeviceConfig {
            token: random(32),
            device_id: "LAPTOP-DEMO".into(),
            user_id: "alice".into(),
            groups: vec!["employees".into()],
            departments: vec![],
        }]
    } else {
        config.devices.clone()
    };

    let state = api::AppState::new(
        Arc::clone(&engine),
        policies,
        admin_token.clone(),
        devices.clone(),
    );
    let app = api::router(state)?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
                tracing::info!("shutting down");
            })
            .await
    });

    let mut endpoints = Vec::new();
    let mut background = Vec::new();
    let mut streaming: Vec<&str> = Vec::new();
    for r in &resolved {
        let Some(settings) = r.workflow.dingtalk() else {
            continue;
        };
        let request_url = (settings.delivery == Delivery::HttpPush)
            .then(|| format!("{public_url}{}", r.workflow.callback_path()));
        let process_code = r
            .workflow
            .mappings
            .first()
            .map_or_else(|| ProcessCode::new(""), |m| m.process_code.clone());
        if let (Some(mock), Some(app)) = (&mock, &r.mock_app) {
            // The Request URL exists now: register it (DingTalk sends check_url, as when it is saved).
            let app = match &request_url {
                Some(url) => app.clone().request_url(url),
                None => app.clone().stream(true),
            };
            let check = mock.register_app(app).await;
            tracing::info!(
                workflow = %r.workflow.id,
                ok = check.as_ref().is_none_or(|d| d.ok),
                "mock DingTalk app registered"
            );
        }
        if settings.delivery == Delivery::Stream && !streaming.contains(&settings.client_id.as_str()) {
            // One Stream connection per DingTalk app, feeding the engine exactly as the
            // callback route does.
            streaming.push(&settings.client_id);
            let mut stream = StreamClient::builder(&settings.client_id, &settings.client_secret);
            if let Some(base) = &r.api_base {
                stream = stream.api_base(base);
            }
            let (stream, on_event) = (stream.build(), engine.event_handler());
            background.push(tokio::spawn(async move {
                stream.run(on_event, std::future::pending()).await;
            }));
        }
        tracing::info!(
            workflow = %r.workflow.id,
            client_id = %settings.client_id,
            %process_code,
            request_url = request_url.as_deref().unwrap_or("(stream mode)"),
            "workflow ready"
        );
        endpoints.push(Endpoint {
            workflow: r.workflow.id.clone(),
            client_id: settings.client_id.clone(),
            process_code,
            delivery: settings.delivery,
            request_url,
        });
    }
    let reconciler = Arc::clone(&engine);
    let every = Duration::from_secs(config.reconcile_every_secs.max(1));
    background.push(tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            match reconciler.reconcile(every).await {
                Ok(r) if r.changed + r.linked > 0 => tracing::info!(?r, "reconciled"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "reconciliation failed"),
            }
        }
    }));
    tracing::info!(%local, database = %config.database, "approval server listening");
    Ok(Server {
        addr: local,
        endpoints,
        admin_token,
        devices,
        mock,
        engine,
        stop,
        server,
        background,
    })
}
