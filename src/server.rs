//! The SASE approval server: policy checks for agents, approval requests through DingTalk
//! (HTTP push to a per-workflow Request URL, or Stream mode), a console API for admins, and
//! grants. `examples/approval-server` runs it; tests start it with [`start`].
//!
//! With no DingTalk credentials configured it starts the mock DingTalk in-process.

// Handlers return ready axum responses as their errors; their size does not matter here.
#[allow(clippy::result_large_err)]
mod api;
pub mod config;

use crate::approval::backend::DingTalkBackend;
use crate::approval::definition::{
    new_callback_id, Delivery, DingTalkSettings, Mapping, Workflow, WorkflowKind,
};
use crate::approval::engine::Engine;
use crate::approval::store::SqliteStore;
use crate::dingtalk::client::DingTalkClient;
use crate::dingtalk::event::Event;
use crate::dingtalk::mock::{MockApp, MockDingTalk, MockFormField, MockProcess};
use crate::dingtalk::stream::client::StreamClient;
use crate::dingtalk::token::Credentials;
use crate::dingtalk::ProcessCode;
use crate::policy::ids::WorkflowId;
use crate::policy::{Catalog, GrantSigner, PolicyDocument, PolicySet, WorkflowKind as PolicyWorkflowKind};
use config::{Config, DeviceConfig};
use rand::distributions::{Alphanumeric, DistString as _};
use std::sync::Arc;
use std::time::Duration;

use std::net::SocketAddr;

const WORKFLOW: &str = "wf-dingtalk";

fn random(n: usize) -> String {
    Alphanumeric.sample_string(&mut rand::thread_rng(), n)
}

/// The Request URL's unguessable id, kept beside the database so the URL configured in
/// DingTalk stays valid across restarts.
fn persisted_callback_id(database: &str) -> String {
    let path = format!("{database}.callback-id");
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

/// The demo policy: employees need approval (via DingTalk) to uninstall; `it-admin` is exempt.
fn demo_policies() -> Result<PolicyDocument, toml::de::Error> {
    toml::from_str(&format!(
        r#"
        [[policies]]
        id = "anti-uninstall-employees"
        name = "Employees need approval to uninstall"
        priority = 10
        switches = {{ anti_uninstall = true, auto_start = true }}
        scope = {{ groups = ["employees"] }}
        whitelist = ["it-admin"]
        approval = {{ allow_filing = true, workflow = "{WORKFLOW}" }}
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

/// A running server.
#[derive(Debug)]
pub struct Server {
    /// Where it listens.
    pub addr: SocketAddr,
    /// The Request URL DingTalk must push to.
    pub request_url: String,
    /// The console's bearer token.
    pub admin_token: String,
    /// The enrolled devices (tokens for the agent API).
    pub devices: Vec<DeviceConfig>,
    /// The in-process mock DingTalk, when no credentials were configured.
    pub mock: Option<MockDingTalk>,
    /// The engine (for inspection in tests and tools).
    pub engine: Arc<Engine>,
    stop: tokio::sync::oneshot::Sender<()>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
    background: Vec<tokio::task::JoinHandle<()>>,
}

impl Server {
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

/// Starts the server described by `config`.
///
/// # Errors
/// If the address cannot be bound, the database opened, or the configuration is invalid.
pub async fn start(config: Config) -> Result<Server, Box<dyn std::error::Error + Send + Sync>> {
    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    let local = listener.local_addr()?;
    let public_url = config
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{local}"));
    let callback_id = config
        .callback_id
        .clone()
        .unwrap_or_else(|| persisted_callback_id(&config.database));

    // DingTalk: real credentials, or the mock in-process.
    let (settings, mapping_fields, process_code, api_base, mock) = match &config.dingtalk {
        Some(dt) => (
            DingTalkSettings {
                client_id: dt.client_id.clone(),
                client_secret: dt.client_secret.clone(),
                token: dt.token.clone(),
                aes_key: dt.aes_key.clone(),
                receiver_id: dt.receiver_id.clone().unwrap_or_else(|| dt.client_id.clone()),
                delivery: config.delivery,
                dept_id: -1,
            },
            dt.fields.clone(),
            dt.process_code.clone(),
            dt.api_base.clone(),
            None,
        ),
        None => {
            let (client_id, secret, token, aes_key) =
                ("dingmocksase".to_owned(), random(24), random(16), random(43));
            let fields = [
                ("device", "设备名称"),
                ("reason", "卸载原因"),
                ("requester", "申请人"),
                ("app_version", "客户端版本"),
            ];
            let mock = MockDingTalk::builder()
                .app(MockApp::new(&client_id, &secret))
                .process(MockProcess::new(
                    "PROC-SASE-UNINSTALL",
                    "安全客户端卸载申请",
                    fields
                        .iter()
                        .map(|(_, label)| MockFormField::new(*label, "TextField", *label == "卸载原因"))
                        .collect(),
                    vec!["approver1".into()],
                ))
                .start()
                .await?;
            tracing::warn!(
                mock = %mock.base_url(),
                "NO DINGTALK CREDENTIALS CONFIGURED: using the built-in MOCK DingTalk. Approve requests with \
                 POST {}/__mock/instances/<instanceId>/approve",
                mock.base_url()
            );
            (
                DingTalkSettings {
                    client_id: client_id.clone(),
                    client_secret: secret,
                    token,
                    aes_key,
                    receiver_id: client_id,
                    delivery: config.delivery,
                    dept_id: -1,
                },
                fields
                    .iter()
                    .map(|(f, l)| ((*f).to_owned(), (*l).to_owned()))
                    .collect(),
                "PROC-SASE-UNINSTALL".to_owned(),
                None,
                Some(mock),
            )
        }
    };
    let api_base = api_base.or_else(|| mock.as_ref().map(MockDingTalk::base_url));
    let workflow = Workflow {
        id: WorkflowId::new(WORKFLOW),
        name: "DingTalk approval".into(),
        kind: WorkflowKind::DingTalk(settings.clone()),
        mappings: vec![Mapping {
            template: "app_uninstall".into(),
            process_code: ProcessCode::new(&process_code),
            fields: mapping_fields,
        }],
        callback_id,
    };
    let mut client = DingTalkClient::builder(Credentials::new(&settings.client_id, &settings.client_secret));
    if let Some(base) = &api_base {
        client = client.api_base(base);
    }
    let backend = Arc::new(DingTalkBackend::new(client.build()?, workflow.clone())?);
    let store = Arc::new(SqliteStore::open(&config.database).await?);
    let engine = Arc::new(
        Engine::builder(store, signer(&config.database))
            .workflow(workflow.clone(), backend)
            .grant_ttl(Duration::from_secs(config.grant_ttl_secs))
            .build()?,
    );
    let catalog = Catalog::new().workflow(WorkflowId::new(WORKFLOW), PolicyWorkflowKind::DingTalk);
    let policies = PolicySet::compile(
        match config.policies.clone() {
            Some(doc) => doc,
            None => demo_policies()?,
        }
        .policies,
        &catalog,
    )?;
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
    let app = api::router(state, &workflow)?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
                tracing::info!("shutting down");
            })
            .await
    });

    let request_url = format!("{public_url}{}", workflow.callback_path());
    if let Some(mock) = &mock {
        let app = MockApp::new(&settings.client_id, &settings.client_secret)
            .events(&settings.token, &settings.aes_key);
        let app = match settings.delivery {
            Delivery::Stream => app.stream(true),
            // The Request URL exists now: register it (DingTalk sends check_url, as when it is saved).
            _ => app.request_url(&request_url),
        };
        let check = mock.register_app(app).await;
        tracing::info!(
            ok = check.as_ref().is_none_or(|d| d.ok),
            "mock DingTalk app registered"
        );
    }
    let mut background = Vec::new();
    if settings.delivery == Delivery::Stream {
        // One Stream client per DingTalk app, feeding the engine exactly as the callback route.
        let mut stream = StreamClient::builder(&settings.client_id, &settings.client_secret);
        if let Some(base) = &api_base {
            stream = stream.api_base(base);
        }
        let (stream, feeder) = (stream.build(), Arc::clone(&engine));
        background.push(tokio::spawn(async move {
            stream
                .run(
                    move |event: Event| {
                        let engine = Arc::clone(&feeder);
                        async move { engine.handle_event(&event).await.map(|_| ()) }
                    },
                    std::future::pending(),
                )
                .await;
        }));
        tracing::info!("receiving DingTalk events over Stream mode");
    }
    let reconciler = Arc::clone(&engine);
    let every = Duration::from_secs(config.reconcile_every_secs.max(1));
    let reconcile = tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            match reconciler.reconcile(every).await {
                Ok(r) if r.changed + r.linked > 0 => tracing::info!(?r, "reconciled"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "reconciliation failed"),
            }
        }
    });

    background.push(reconcile);
    tracing::info!(%local, request_url, database = %config.database, "approval server listening");
    Ok(Server {
        addr: local,
        request_url,
        admin_token,
        devices,
        mock,
        engine,
        stop,
        server,
        background,
    })
}
