//! Server configuration: a TOML file, overridden by `SASE_*` environment variables and flags
//! ([`Args`]), with embedded defaults (SQLite file, one workflow on the in-process mock
//! DingTalk) that need nothing in a `demo` build.

use dingtalk_sdk::budget::CallBudget;
use dingtalk_sdk::crypto::EventCrypto;
use sase_approval::definition::Delivery;
use sase_approval::engine::{DEFAULT_EVENT_RETENTION, DEFAULT_MAX_REASON_CHARS};
use sase_approval::recheck::RecheckSchedule;
use sase_policy::PolicyDocument;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The configuration file cannot be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The configuration file is not valid TOML for [`Config`] (unknown keys included).
    #[error("{path}: at `{key}`: {source}{hint}")]
    Parse {
        /// The file.
        path: String,
        /// The key path where it failed, e.g. `policies.policies[0].whitlist`.
        key: String,
        /// Where and why (boxed: it is large, and errors travel by value).
        source: Box<toml::de::Error>,
        /// What was probably meant, for a known slip (empty otherwise).
        hint: String,
    },
    /// A value is invalid; `key` is its path, e.g. `workflows[1].process_code`, and `file`
    /// the configuration file it was read from (none for defaults, variables and flags).
    #[error("{}{key}: {message}", file.as_deref().map(|f| format!("{f}: ")).unwrap_or_default())]
    Invalid {
        /// The configuration file.
        file: Option<String>,
        /// Path of the key.
        key: String,
        /// What is wrong, with the value where it is not secret.
        message: String,
    },
}

/// Checks `workflows` as [`Config::validate_for`] does, each named by `name(i)` in errors
/// (`workflows[0]` in the file; the console names them otherwise).
///
/// # Errors
/// The first invalid value, with its key path.
pub(crate) fn validate_workflows(
    workflows: &[&WorkflowConfig],
    mode: Mode,
    name: impl Fn(usize) -> String,
) -> Result<(), ConfigError> {
    let mut ids = HashMap::new();
    let mut callback_ids = HashMap::new();
    let mut apps: HashMap<&str, (usize, &WorkflowConfig)> = HashMap::new();
    for (i, w) in workflows.iter().copied().enumerate() {
        let key = |k: &str| format!("{}.{k}", name(i));
        if w.id.is_empty()
            || !w
                .id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Err(invalid(
                key("id"),
                format!("`{}`: use letters, digits, '-', '_' or '.'", w.id),
            ));
        }
        if let Some(first) = ids.insert(w.id.as_str(), i) {
            return Err(invalid(key("id"), format!("`{}` is also {}", w.id, name(first))));
        }
        if let Some(cb) = &w.callback_id {
            if cb.len() < 16
                || !cb
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err(invalid(
                    key("callback_id"),
                    "use at least 16 letters, digits, '-' or '_' (it keeps the Request URL unguessable)",
                ));
            }
            if let Some(first) = callback_ids.insert(cb.as_str(), i) {
                return Err(invalid(key("callback_id"), format!("also {}'s", name(first))));
            }
        }
        if w.kind == WorkflowType::Builtin {
            if w.approvers.iter().all(|a| a.trim().is_empty()) {
                return Err(invalid(
                    key("approvers"),
                    "name who decides a built-in workflow's requests: at least one console identity",
                ));
            }
            let form = [
                ("dingtalk", w.dingtalk.is_some()),
                ("process_code", w.process_code.is_some()),
                ("fields", !w.fields.is_empty()),
                ("mappings", !w.mappings.is_empty()),
            ];
            if let Some((k, _)) = form.iter().find(|(_, set)| *set) {
                return Err(invalid(
                    key(k),
                    "a built-in workflow is decided in the console: it has no DingTalk app or form",
                ));
            }
            continue;
        }
        if !w.approvers.is_empty() {
            return Err(invalid(
                key("approvers"),
                "only a built-in workflow (type = \"builtin\") names approvers: a DingTalk form names its own",
            ));
        }
        for (j, m) in w.mappings.iter().enumerate() {
            let at = |k: &str| key(&format!("mappings[{j}].{k}"));
            if m.process_code.trim().is_empty() {
                return Err(invalid(
                    at("process_code"),
                    "the template's DingTalk form (`PROC-…`)",
                ));
            }
            if m.fields.is_empty() {
                return Err(invalid(
                    at("fields"),
                    "map system fields to the form's labels, e.g. reason = \"退出原因\"",
                ));
            }
        }
        let Some(app) = &w.dingtalk else {
            if mode == Mode::Production {
                return Err(invalid(format!("{}.dingtalk", name(i)), MISSING_CREDENTIALS));
            }
            continue;
        };
        if w.process_code.as_deref().is_none_or(str::is_empty) {
            return Err(invalid(key("process_code"), "required with DingTalk credentials"));
        }
        if w.fields.is_empty() {
            return Err(invalid(
                key("fields"),
                "map system fields to the form's labels, e.g. reason = \"卸载原因\"",
            ));
        }
        if app.reconcile_share_percent > 100 {
            return Err(invalid(
                key("dingtalk.reconcile_share_percent"),
                format!("{}: a percentage, 0 to 100", app.reconcile_share_percent),
            ));
        }
        let receiver = app.receiver_id.as_deref().unwrap_or(&app.client_id);
        if let Err(e) = EventCrypto::new(&app.token, &app.aes_key, receiver) {
            // The key itself is a secret: its length is all the message shows.
            return Err(invalid(
                key("dingtalk.aes_key"),
                format!(
                    "workflow `{}`: {e} (this one has {} characters)",
                    w.id,
                    app.aes_key.chars().count()
                ),
            ));
        }
        if let Some((j, other)) = apps.insert(app.client_id.as_str(), (i, w)) {
            let theirs = other.dingtalk.as_ref();
            if theirs != Some(app) || other.delivery != w.delivery {
                return Err(invalid(
                    key("dingtalk"),
                    format!(
                        "app {} is also {}'s with other settings: one app has one event subscription",
                        app.client_id,
                        name(j)
                    ),
                ));
            }
        }
    }
    Ok(())
}

pub(crate) fn invalid(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        file: None,
        key: key.into(),
        message: message.into(),
    }
}

impl ConfigError {
    /// Names `path` as the file an invalid value came from.
    fn in_file(self, path: &str) -> Self {
        match self {
            ConfigError::Invalid {
                file: None,
                key,
                message,
            } => ConfigError::Invalid {
                file: Some(path.to_owned()),
                key,
                message,
            },
            other => other,
        }
    }
}

/// What a parse error at `key` probably means, for a slip a new user makes: `[[policies]]`
/// (a list) where the table `policies` holds the list `policies`.
fn parse_hint(key: &str) -> String {
    if key == "policies" || key.starts_with("policies[") {
        "\nhint: policies go in `[[policies.policies]]` (the table `policies` holds the list `policies`), not `[[policies]]`"
            .to_owned()
    } else {
        String::new()
    }
}

/// Why a workflow without DingTalk credentials cannot run in this build.
const MISSING_CREDENTIALS: &str =
    "no DingTalk credentials: add the app's client_id, client_secret, token and aes_key \
     (only a build with the `demo` feature runs such a workflow on the mock DingTalk)";

/// `database` is a PostgreSQL URL and this build has no PostgreSQL driver.
#[cfg(not(feature = "postgres"))]
pub(crate) fn postgres_not_built() -> ConfigError {
    invalid(
        "database",
        "a PostgreSQL URL needs a build with the `postgres` feature (on by default)",
    )
}

/// `key` is unset, and only a demo build on the mock DingTalk makes one up.
pub(crate) fn required(key: &str) -> ConfigError {
    invalid(
        key,
        "required (only a build with the `demo` feature, with no DingTalk credentials configured, makes one up)",
    )
}

/// What a configuration may leave out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Mode {
    /// A workflow without credentials runs on the mock DingTalk in-process; a missing admin
    /// token, device or policy is made up (the `demo` feature).
    Demo,
    /// Every workflow has its DingTalk app; the admin token and the policies are configured.
    Production,
}

impl Mode {
    /// This build's: [`Demo`](Self::Demo) with the `demo` feature.
    pub const BUILT: Self = if cfg!(feature = "demo") {
        Self::Demo
    } else {
        Self::Production
    };
}

/// The `approval-server` command line. Each flag overrides its `SASE_*` environment variable,
/// which overrides the file.
#[derive(Debug, Clone, Default, clap::Parser)]
#[command(
    name = "approval-server",
    version,
    about = "The SASE approval server: policy checks for agents, DingTalk approval workflows, a console API and grants.",
    after_help = "Environment (overrides the file; the flags override it): SASE_LISTEN, SASE_DATABASE, \
                  SASE_ADMIN_TOKEN, SASE_METRICS_TOKEN (serve GET /metrics to its bearer), SASE_GRANT_KEY_FILE, SASE_GRANT_KEYS (the keys themselves, for replicas), SASE_SECRETS_KEY_FILE, SASE_SECRETS_KEY (the key of the workflows' stored secrets, for replicas), SASE_DELIVERY (http_push or stream: every workflow's), \
                  SASE_TLS_CERT_FILE and SASE_TLS_KEY_FILE (PEM: serve HTTPS), \
                  SASE_LOG_FORMAT (text or json). \
                  RUST_LOG sets the log filter (default info)."
)]
#[non_exhaustive]
pub struct Args {
    /// A TOML configuration file (keys as in the README); unset: the embedded defaults.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The address to listen on, e.g. 0.0.0.0:8080 [default: 127.0.0.1:8080].
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// The SQLite file [default: sase-approval.sqlite].
    #[arg(long, value_name = "PATH")]
    pub database: Option<String>,
    /// Put a new grant signing key first in the key file (the others keep verifying the
    /// grants they signed), print its public key, and exit.
    #[arg(long)]
    pub rotate_grant_key: bool,
    /// Create the first admin (role admin) with this name, its password read from
    /// `SASE_ADMIN_PASSWORD` or the first line of standard input, and exit; refused once any
    /// admin exists (create more in the console).
    #[arg(long, value_name = "NAME")]
    pub create_admin: Option<String>,
    /// Check the audit chain (every entry's hash and link, and the head), print the result and
    /// exit: 0 when intact, 1 naming the first broken entry.
    #[arg(long)]
    pub verify_audit: bool,
    /// How log lines are written [default: text].
    #[arg(long, value_name = "FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
}

/// A DingTalk app's credentials and event subscription; without them the workflow runs on the
/// mock DingTalk in-process (demo builds). `Debug` redacts secrets, and serializing leaves
/// them out (the export).
#[derive(Clone, Deserialize, Serialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct DingTalkConfig {
    /// Client ID (AppKey).
    pub client_id: String,
    /// Client secret (write-only; a console update may leave it out to keep the stored one).
    #[serde(skip_serializing_if = "write_only")]
    #[schema(write_only)]
    pub client_secret: String,
    /// Event-subscription token (write-only, like the secret).
    #[serde(skip_serializing_if = "write_only")]
    #[schema(write_only)]
    pub token: String,
    /// Event-subscription aes_key, 43 characters (write-only, like the secret).
    #[serde(skip_serializing_if = "write_only")]
    #[schema(write_only)]
    pub aes_key: String,
    /// Defaults to the Client ID (console-configured subscriptions).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub receiver_id: Option<String>,
    /// Base URL of the OpenAPI (tests point it at a mock).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_base: Option<String>,
    /// Calls a second to one API (DingTalk's limit for a standard org: 20, the default);
    /// 0 sends without pacing.
    #[serde(default = "default_qps")]
    pub qps_per_api: u32,
    /// Calls a calendar month (UTC), the token aside (a standard org's quota: 5,000, the
    /// default); 0 counts without a limit.
    #[serde(default = "default_calls_per_month")]
    pub calls_per_month: u64,
    /// The share of the month's calls, in percent, that reconciliation may use; filings and
    /// console write-backs may use the rest (default 50).
    #[serde(default = "default_reconcile_share")]
    pub reconcile_share_percent: u8,
}

/// A secret is never serialized (the export, the console's answers). Written as a skip-if
/// rather than a plain skip so that the OpenAPI schema still lists it, as optional: a console
/// update may leave it out.
fn write_only(_: &str) -> bool {
    true
}

fn default_qps() -> u32 {
    20
}

fn default_calls_per_month() -> u64 {
    5_000
}

fn default_reconcile_share() -> u8 {
    50
}

impl DingTalkConfig {
    /// An app's credentials and event subscription, with a standard org's call budget.
    pub fn new(
        client_id: impl Into<String>,
        client_secret: impl Into<String>,
        token: impl Into<String>,
        aes_key: impl Into<String>,
    ) -> Self {
        Self {
            client_id: client_id.into(),
            client_secret: client_secret.into(),
            token: token.into(),
            aes_key: aes_key.into(),
            receiver_id: None,
            api_base: None,
            qps_per_api: default_qps(),
            calls_per_month: default_calls_per_month(),
            reconcile_share_percent: default_reconcile_share(),
        }
    }

    /// The app's call budget.
    pub fn budget(&self) -> CallBudget {
        CallBudget::default()
            .qps_per_api((self.qps_per_api > 0).then_some(self.qps_per_api))
            .calls_per_month((self.calls_per_month > 0).then_some(self.calls_per_month))
            .background_share(f64::from(self.reconcile_share_percent.min(100)) / 100.0)
    }
}

impl std::fmt::Debug for DingTalkConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DingTalkConfig")
            .field("client_id", &self.client_id)
            .field("api_base", &self.api_base)
            .field("budget", &self.budget())
            .finish_non_exhaustive()
    }
}

/// One DingTalk approval workflow: the form it creates instances of, how its events arrive,
/// and the app it belongs to. Each HTTP-push workflow has its own Request URL.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct WorkflowConfig {
    /// What policies name in `approval.workflow` (letters, digits, `-`, `_`, `.`).
    pub id: String,
    /// Display name (defaults to the id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `dingtalk` (the default: decided in DingTalk, on the form `process_code`) or
    /// `builtin` (decided in the console by [`approvers`](Self::approvers)).
    #[serde(rename = "type", default)]
    pub kind: WorkflowType,
    /// Who decides a built-in workflow's requests: console identities.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub approvers: Vec<String>,
    /// `http_push` (a Request URL) or `stream` (a WebSocket we open; no public URL needed).
    #[serde(default = "http_push")]
    pub delivery: Delivery,
    /// The Request URL's id (`/dingtalk/callback/{id}`); persisted beside the database if unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback_id: Option<String>,
    /// The approval form (`PROC-…`); required with credentials, generated for the mock.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process_code: Option<String>,
    /// System field → form label, e.g. `reason = "卸载原因"`; required with credentials, the
    /// mock's form is built from them (or from a default uninstall form).
    #[serde(default)]
    pub fields: BTreeMap<String, String>,
    /// The forms of the other templates (`app_logoff`), each a DingTalk form of the same app.
    /// `process_code` and `fields` above are the `app_uninstall` form's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mappings: Vec<MappingConfig>,
    /// The DingTalk app; unset = the mock DingTalk in-process.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dingtalk: Option<DingTalkConfig>,
}

fn http_push() -> Delivery {
    Delivery::HttpPush
}

/// The DingTalk form one template's requests are filed on, and how its fields are filled.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct MappingConfig {
    /// The template: `app_logoff` (`app_uninstall` is the workflow's own `process_code`).
    pub template: String,
    /// The DingTalk form (`PROC-…`).
    pub process_code: String,
    /// System field → form label, e.g. `reason = "退出原因"`.
    pub fields: BTreeMap<String, String>,
}

impl MappingConfig {
    /// `template`'s requests on the form `process_code`, its fields mapped by `fields`.
    pub fn new(
        template: impl Into<String>,
        process_code: impl Into<String>,
        fields: impl IntoIterator<Item = (impl Into<String>, impl Into<String>)>,
    ) -> Self {
        Self {
            template: template.into(),
            process_code: process_code.into(),
            fields: fields.into_iter().map(|(k, v)| (k.into(), v.into())).collect(),
        }
    }
}

/// Where a workflow's requests are decided.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, utoipa::ToSchema)]
#[non_exhaustive]
pub enum WorkflowType {
    /// In DingTalk, by the approvers its form names.
    #[default]
    #[serde(rename = "dingtalk")]
    DingTalk,
    /// In the console, by the workflow's approvers.
    #[serde(rename = "builtin")]
    Builtin,
}

impl WorkflowConfig {
    /// A workflow on the mock DingTalk (add [`dingtalk`](Self::dingtalk) credentials for the
    /// real one).
    pub fn new(id: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            name: None,
            kind: WorkflowType::DingTalk,
            approvers: Vec::new(),
            delivery: Delivery::HttpPush,
            callback_id: None,
            process_code: None,
            fields: BTreeMap::new(),
            mappings: Vec::new(),
            dingtalk: None,
        }
    }

    /// Real DingTalk: the app, its form and the field mapping.
    #[must_use]
    pub fn dingtalk(
        mut self,
        app: DingTalkConfig,
        process_code: impl Into<String>,
        fields: impl IntoIterator<Item = (impl Into<String>, impl Into<String>)>,
    ) -> Self {
        self.dingtalk = Some(app);
        self.process_code = Some(process_code.into());
        self.fields = fields.into_iter().map(|(k, v)| (k.into(), v.into())).collect();
        self
    }

    /// Another form of the same app, for another template (`app_logoff`).
    #[must_use]
    pub fn mapping(mut self, mapping: MappingConfig) -> Self {
        self.mappings.push(mapping);
        self
    }

    /// Decided in the console by `approvers` (console identities), not in DingTalk.
    #[must_use]
    pub fn builtin(mut self, approvers: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.kind = WorkflowType::Builtin;
        self.approvers = approvers.into_iter().map(Into::into).collect();
        self
    }

    /// How events arrive.
    #[must_use]
    pub fn delivery(mut self, delivery: Delivery) -> Self {
        self.delivery = delivery;
        self
    }

    /// A fixed Request URL id.
    #[must_use]
    pub fn callback_id(mut self, id: impl Into<String>) -> Self {
        self.callback_id = Some(id.into());
        self
    }
}

/// An enrolled device: its bearer token and who uses it.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct DeviceConfig {
    /// Bearer token the agent presents.
    pub token: String,
    /// The device.
    pub device_id: String,
    /// Its user (a stable id).
    pub user_id: String,
    #[serde(default)]
    /// The user's groups.
    pub groups: Vec<String>,
    #[serde(default)]
    /// The user's departments.
    pub departments: Vec<String>,
    #[serde(default)]
    /// The device's tags (policies scope by them: `scope.device_tags`).
    pub tags: Vec<String>,
}

impl std::fmt::Debug for DeviceConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceConfig")
            .field("device_id", &self.device_id)
            .field("user_id", &self.user_id)
            .finish()
    }
}

/// The server's configuration. Unknown keys are refused, so a misspelt section never
/// silently falls back to the mock. `Debug` redacts the admin and metrics tokens.
#[derive(Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct Config {
    /// Listen address.
    pub listen: SocketAddr,
    /// Public base URL DingTalk reaches us at (for the Request URLs); defaults to
    /// `http://{listen}`, or `https://{listen}` with [`tls_cert_file`](Self::tls_cert_file).
    /// Behind a reverse proxy, its public `https://` URL.
    pub public_url: Option<String>,
    /// SQLite file.
    pub database: String,
    /// Console bearer token (required, or random in a demo build).
    pub admin_token: Option<String>,
    /// The bearer token of `GET /metrics` (the Prometheus scrape: requests by state, events,
    /// DingTalk calls, reconciliation, HTTP latency), at least 16 characters, not the admin's
    /// or a device's; also `SASE_METRICS_TOKEN`. Unset (the default), `/metrics` answers
    /// 404: metrics are opt-in.
    pub metrics_token: Option<String>,
    /// The approval workflows; by default one, `wf-dingtalk`, on the mock DingTalk (which
    /// only a demo build has).
    pub workflows: Vec<WorkflowConfig>,
    /// Enrolled devices (a demo device if empty, in a demo build).
    pub devices: Vec<DeviceConfig>,
    /// Policies (required, or a demo policy on the first workflow in a demo build).
    pub policies: Option<PolicyDocument>,
    /// Reconciliation period, seconds.
    pub reconcile_every_secs: u64,
    /// How often a replica looks for workflows and policies another replica changed, seconds
    /// (a change made on this one is in force here at once). Default 5.
    pub reload_every_secs: u64,
    /// Also log each audit entry as a line (target `sase_audit`), for a SIEM. Default off.
    pub audit_log_lines: bool,
    /// How often a DingTalk workflow that could not be checked against DingTalk (unreachable
    /// at start) is checked again, seconds. Default 300.
    pub workflow_check_every_secs: u64,
    /// How long a replica's reconciler lease lasts without renewal, seconds; another replica
    /// takes over this long (and a pass) after the holder dies. Default 0: three passes, at
    /// least 30 s.
    pub reconciler_lease_secs: u64,
    /// When reconciliation first looks at a pending request no event has settled, in
    /// seconds after its filing or its last event. Default: 300, 1800, 7200, 28800.
    pub recheck_after_secs: Vec<u64>,
    /// After those, one look every this many seconds. Default: 86400 (a day).
    pub recheck_every_secs: u64,
    /// Grant lifetime, seconds.
    pub grant_ttl_secs: u64,
    /// How long processed event ids are kept to drop redeliveries, seconds (pruned at
    /// reconciliation).
    pub event_retention_secs: u64,
    /// Pending requests with no decision after this many seconds expire (their DingTalk
    /// instance is revoked); 0 never expires them. Default: 7 days.
    pub expire_after_secs: u64,
    /// How many characters a filed reason may have. Default: 2,000.
    pub max_reason_chars: usize,
    /// New requests a device may file in any hour (filing while one is open is not counted).
    /// Default: 10.
    pub filings_per_hour: usize,
    /// Seconds a client has to send a request head (and to stay idle between requests).
    /// Default: 10.
    pub header_read_timeout_secs: u64,
    /// Seconds a client has to send a request body. Default: 30.
    pub body_timeout_secs: u64,
    /// Connections served at once; more are closed at once. Default: 1,024.
    pub max_connections: usize,
    /// The grant signing key file (see [`crate::grant_keys`]); default `<database>.grant-key`.
    /// Replicas must share one.
    pub grant_key_file: Option<PathBuf>,
    /// The grant signing keys themselves, from `SASE_GRANT_KEYS` (hex seeds, the signing one
    /// first; never from the file, never printed): what replicas share instead of a file.
    #[serde(skip)]
    pub grant_keys: Option<String>,
    /// The key the DingTalk secrets of workflows saved in the database are encrypted with (XChaCha20-Poly1305,
    /// each bound to its workflow and field); default `<database>.secrets-key`. Replicas must share one.
    pub secrets_key_file: Option<PathBuf>,
    /// That key itself, from `SASE_SECRETS_KEY` (64 hex characters; never from the file,
    /// never printed).
    #[serde(skip)]
    pub secrets_key: Option<String>,
    /// Serve HTTPS: the certificate chain, PEM (the server's certificate first, then its
    /// intermediates), e.g. `/etc/sase/tls/fullchain.pem`. Set with
    /// [`tls_key_file`](Self::tls_key_file) or not at all; unset, the server speaks plain
    /// HTTP (e.g. behind a reverse proxy that terminates TLS).
    pub tls_cert_file: Option<PathBuf>,
    /// The private key of [`tls_cert_file`](Self::tls_cert_file)'s certificate, PEM (PKCS#8,
    /// PKCS#1 or SEC1), e.g. `/etc/sase/tls/privkey.pem`.
    pub tls_key_file: Option<PathBuf>,
    /// How log lines are written: `text` (the default) or `json` (one object a line).
    pub log_format: LogFormat,
    /// The organisation's directory, read from this DingTalk app's contacts: users'
    /// departments scope policies, and a user who leaves loses their devices and requests.
    /// Unset: devices keep the departments they were enrolled with.
    pub directory: Option<DirectoryConfig>,
}

/// The DingTalk app whose contacts are the directory (`[directory]`). Its contact-change
/// events arrive through the event subscription of a workflow of the same app (HTTP push or
/// Stream); the whole directory is read again every
/// [`sync_every_secs`](Self::sync_every_secs), so a lost event is made up for. `Debug`
/// redacts the secret.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct DirectoryConfig {
    /// Client ID (AppKey); the app needs the contacts read permission.
    pub client_id: String,
    /// Client secret.
    pub client_secret: String,
    /// Where DingTalk's new API is (unset: DingTalk itself).
    #[serde(default)]
    pub api_base: Option<String>,
    /// Where DingTalk's old API (`oapi`, the contacts calls) is (unset: DingTalk itself).
    #[serde(default)]
    pub oapi_base: Option<String>,
    /// The organisation's corpId. Set, employees enroll their devices by signing in with
    /// DingTalk (only accounts of this organisation); the app must list
    /// `{public_url}/dingtalk/sign-in` as a redirect URL.
    #[serde(default)]
    pub corp_id: Option<String>,
    /// Where DingTalk's sign-in page is (unset: `https://login.dingtalk.com`).
    #[serde(default)]
    pub login_base: Option<String>,
    /// How many sign-ins may wait at once (anyone may start one; each waits 10 minutes).
    /// Default 1,000.
    #[serde(default = "thousand")]
    pub max_waiting_sign_ins: usize,
    /// How often the whole directory is read, seconds. Default 3,600.
    #[serde(default = "hourly")]
    pub sync_every_secs: u64,
}

fn hourly() -> u64 {
    3600
}

fn thousand() -> usize {
    1000
}

impl DirectoryConfig {
    /// The directory of the app `client_id`.
    pub fn new(client_id: impl Into<String>, client_secret: impl Into<String>) -> Self {
        Self {
            client_id: client_id.into(),
            client_secret: client_secret.into(),
            api_base: None,
            oapi_base: None,
            corp_id: None,
            login_base: None,
            max_waiting_sign_ins: thousand(),
            sync_every_secs: hourly(),
        }
    }
}

impl std::fmt::Debug for DirectoryConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirectoryConfig")
            .field("client_id", &self.client_id)
            .field("client_secret", &"<redacted>")
            .field("api_base", &self.api_base)
            .field("oapi_base", &self.oapi_base)
            .field("corp_id", &self.corp_id)
            .field("login_base", &self.login_base)
            .field("max_waiting_sign_ins", &self.max_waiting_sign_ins)
            .field("sync_every_secs", &self.sync_every_secs)
            .finish()
    }
}

/// How the server writes its log lines (`log_format`, `SASE_LOG_FORMAT`, `--log-format`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum LogFormat {
    /// Human-readable lines (colours only on a terminal).
    #[default]
    Text,
    /// One JSON object a line: `timestamp`, `level`, `message` and the event's other
    /// fields, `target`.
    Json,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("listen", &self.listen)
            .field("public_url", &self.public_url)
            .field("database", &self.database)
            .field("admin_token", &self.admin_token.as_ref().map(|_| "<redacted>"))
            .field(
                "metrics_token",
                &self.metrics_token.as_ref().map(|_| "<redacted>"),
            )
            .field("workflows", &self.workflows)
            .field("devices", &self.devices)
            .field("policies", &self.policies.as_ref().map(|p| p.policies.len()))
            .field("reconcile_every_secs", &self.reconcile_every_secs)
            .field("reload_every_secs", &self.reload_every_secs)
            .field("audit_log_lines", &self.audit_log_lines)
            .field("workflow_check_every_secs", &self.workflow_check_every_secs)
            .field("reconciler_lease_secs", &self.reconciler_lease_secs)
            .field("recheck_after_secs", &self.recheck_after_secs)
            .field("recheck_every_secs", &self.recheck_every_secs)
            .field("grant_ttl_secs", &self.grant_ttl_secs)
            .field("event_retention_secs", &self.event_retention_secs)
            .field("expire_after_secs", &self.expire_after_secs)
            .field("max_reason_chars", &self.max_reason_chars)
            .field("filings_per_hour", &self.filings_per_hour)
            .field("header_read_timeout_secs", &self.header_read_timeout_secs)
            .field("body_timeout_secs", &self.body_timeout_secs)
            .field("max_connections", &self.max_connections)
            .field("grant_key_file", &self.grant_key_file)
            .field("grant_keys", &self.grant_keys.as_ref().map(|_| "<redacted>"))
            .field("secrets_key_file", &self.secrets_key_file)
            .field("secrets_key", &self.secrets_key.as_ref().map(|_| "<redacted>"))
            .field("tls_cert_file", &self.tls_cert_file)
            .field("tls_key_file", &self.tls_key_file)
            .field("log_format", &self.log_format)
            .field("directory", &self.directory)
            .finish()
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            public_url: None,
            database: "sase-approval.sqlite".into(),
            admin_token: None,
            metrics_token: None,
            workflows: vec![WorkflowConfig::new("wf-dingtalk")],
            devices: Vec::new(),
            policies: None,
            reconcile_every_secs: 30,
            reload_every_secs: 5,
            audit_log_lines: false,
            workflow_check_every_secs: 300,
            reconciler_lease_secs: 0,
            recheck_after_secs: RecheckSchedule::default()
                .first
                .iter()
                .map(Duration::as_secs)
                .collect(),
            recheck_every_secs: RecheckSchedule::default().then_every.as_secs(),
            grant_ttl_secs: 3600,
            event_retention_secs: DEFAULT_EVENT_RETENTION.as_secs(),
            expire_after_secs: DEFAULT_EXPIRE_AFTER.as_secs(),
            max_reason_chars: DEFAULT_MAX_REASON_CHARS,
            filings_per_hour: 10,
            header_read_timeout_secs: 10,
            body_timeout_secs: 30,
            max_connections: 1024,
            grant_key_file: None,
            grant_keys: None,
            secrets_key_file: None,
            secrets_key: None,
            tls_cert_file: None,
            tls_key_file: None,
            log_format: LogFormat::Text,
            directory: None,
        }
    }
}

impl Config {
    /// Parses a configuration file's text (`file` names it in errors, with the key path).
    ///
    /// # Errors
    /// [`ConfigError::Parse`] for invalid TOML, a wrong type or an unknown key.
    pub fn from_toml(text: &str, file: &str) -> Result<Self, ConfigError> {
        serde_path_to_error::deserialize(toml::Deserializer::new(text)).map_err(|e| {
            let key = e.path().to_string();
            let source = e.into_inner();
            ConfigError::Parse {
                path: file.to_owned(),
                hint: parse_hint(&key),
                key,
                source: Box::new(source),
            }
        })
    }

    /// [`workflow_check_every_secs`](Self::workflow_check_every_secs) (at least 1 s).
    pub fn workflow_check_every(&self) -> Duration {
        Duration::from_secs(self.workflow_check_every_secs.max(1))
    }

    /// [`reload_every_secs`](Self::reload_every_secs) (at least 1 s).
    pub fn reload_every(&self) -> Duration {
        Duration::from_secs(self.reload_every_secs.max(1))
    }

    /// How often the whole directory is read from DingTalk.
    pub fn directory_sync_every(&self) -> Duration {
        Duration::from_secs(self.directory.as_ref().map_or(3600, |d| d.sync_every_secs))
    }

    /// How often the reconciler runs.
    pub fn reconcile_every(&self) -> Duration {
        Duration::from_secs(self.reconcile_every_secs.max(1))
    }

    /// How long the reconciler's lease lasts: `reconciler_lease_secs`, or three passes and at
    /// least 30 s, so a slow pass does not lose it.
    pub fn reconciler_lease(&self) -> Duration {
        if self.reconciler_lease_secs > 0 {
            Duration::from_secs(self.reconciler_lease_secs)
        } else {
            (self.reconcile_every() * 3).max(Duration::from_secs(30))
        }
    }

    /// When reconciliation looks at a pending request again.
    pub fn recheck_schedule(&self) -> RecheckSchedule {
        RecheckSchedule::new(
            self.recheck_after_secs
                .iter()
                .map(|s| Duration::from_secs(*s))
                .collect(),
            Duration::from_secs(self.recheck_every_secs),
        )
    }

    /// The connection limits the accept loop enforces.
    pub fn connection_limits(&self) -> crate::connections::Limits {
        crate::connections::Limits {
            header_read_timeout: Duration::from_secs(self.header_read_timeout_secs),
            body_timeout: Duration::from_secs(self.body_timeout_secs),
            max_connections: self.max_connections,
        }
    }

    /// The TLS certificate chain and key files (`tls_cert_file`, `tls_key_file`), when both
    /// are set: the server then serves HTTPS.
    pub fn tls_files(&self) -> Option<(&Path, &Path)> {
        Some((self.tls_cert_file.as_deref()?, self.tls_key_file.as_deref()?))
    }

    /// Whether the database is shared by replicas (a PostgreSQL URL) rather than a file of
    /// this server's own.
    pub fn shared_database(&self) -> bool {
        self.database.starts_with("postgres://") || self.database.starts_with("postgresql://")
    }

    /// The grant signing key file: `grant_key_file`, or `<database>.grant-key`.
    pub fn grant_key_path(&self) -> PathBuf {
        self.grant_key_file
            .clone()
            .unwrap_or_else(|| PathBuf::from(format!("{}.grant-key", self.database)))
    }

    /// The key file of the workflows' secrets: `secrets_key_file`, or `<database>.secrets-key`.
    pub fn secrets_key_path(&self) -> PathBuf {
        self.secrets_key_file
            .clone()
            .unwrap_or_else(|| PathBuf::from(format!("{}.secrets-key", self.database)))
    }

    /// Loads the configuration, each source overriding the one before: the file
    /// (`--config FILE`, or the embedded defaults), then the environment (`SASE_LISTEN`,
    /// `SASE_DATABASE`, `SASE_ADMIN_TOKEN`, `SASE_METRICS_TOKEN`, `SASE_GRANT_KEY_FILE`, `SASE_GRANT_KEYS`, `SASE_SECRETS_KEY_FILE`, `SASE_SECRETS_KEY`, `SASE_TLS_CERT_FILE`,
    /// `SASE_TLS_KEY_FILE`, `SASE_LOG_FORMAT`, and `SASE_DELIVERY` for every workflow's), then
    /// the flags (`--listen ADDR`, `--database PATH`, `--log-format FORMAT`); and validates the result for this
    /// build ([`validate`](Self::validate)). `env` looks a variable up
    /// (`|k| std::env::var(k).ok()`).
    ///
    /// # Errors
    /// An unreadable or invalid file, or an invalid value.
    pub fn load(args: &Args, env: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let config = Self::read(args, env)?;
        match &args.config {
            Some(path) => config
                .validate()
                .map_err(|e| e.in_file(&path.display().to_string()))?,
            None => config.validate()?,
        }
        Ok(config)
    }

    /// [`load`](Self::load) without the validation.
    fn read(args: &Args, env: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let mut config = match &args.config {
            Some(path) => {
                let path = path.display().to_string();
                let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
                    path: path.clone(),
                    source,
                })?;
                Self::from_toml(&text, &path)?
            }
            None => Self::default(),
        };
        if let Some(v) = env("SASE_LISTEN") {
            config.listen = v
                .parse()
                .map_err(|e| invalid("SASE_LISTEN", format!("{v}: {e}")))?;
        }
        if let Some(v) = env("SASE_DATABASE") {
            config.database = v;
        }
        if let Some(v) = env("SASE_GRANT_KEY_FILE") {
            config.grant_key_file = Some(v.into());
        }
        if let Some(v) = env("SASE_GRANT_KEYS") {
            config.grant_keys = Some(v);
        }
        if let Some(v) = env("SASE_SECRETS_KEY_FILE") {
            config.secrets_key_file = Some(v.into());
        }
        if let Some(v) = env("SASE_SECRETS_KEY") {
            config.secrets_key = Some(v);
        }
        if let Some(v) = env("SASE_ADMIN_TOKEN") {
            config.admin_token = Some(v);
        }
        if let Some(v) = env("SASE_METRICS_TOKEN") {
            config.metrics_token = Some(v);
        }
        if let Some(v) = env("SASE_TLS_CERT_FILE") {
            config.tls_cert_file = Some(v.into());
        }
        if let Some(v) = env("SASE_TLS_KEY_FILE") {
            config.tls_key_file = Some(v.into());
        }
        if let Some(v) = env("SASE_LOG_FORMAT") {
            config.log_format = match v.as_str() {
                "text" => LogFormat::Text,
                "json" => LogFormat::Json,
                other => return Err(invalid("SASE_LOG_FORMAT", format!("{other}: use text or json"))),
            };
        }
        if let Some(v) = env("SASE_DELIVERY") {
            let delivery = match v.as_str() {
                "stream" => Delivery::Stream,
                "http_push" => Delivery::HttpPush,
                other => {
                    return Err(invalid(
                        "SASE_DELIVERY",
                        format!("{other}: use http_push or stream"),
                    ))
                }
            };
            for w in &mut config.workflows {
                w.delivery = delivery;
            }
        }
        if let Some(listen) = args.listen {
            config.listen = listen;
        }
        if let Some(database) = &args.database {
            config.database.clone_from(database);
        }
        if let Some(format) = args.log_format {
            config.log_format = format;
        }
        Ok(config)
    }

    /// [`validate_for`](Self::validate_for) this build's [`Mode::BUILT`].
    ///
    /// # Errors
    /// The first invalid value, with its key path.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_for(Mode::BUILT)
    }

    /// Checks what the types cannot: unique, well-formed workflow ids and Request URL ids,
    /// a form and a mapping for each real DingTalk workflow, and one event subscription per
    /// DingTalk app (workflows of one app share its token, aes_key and delivery), both TLS
    /// files or neither; and, in [`Mode::Production`] or with any real DingTalk credentials
    /// ([`mock_only`](Self::mock_only) false), an admin token and policies (and, in
    /// production, credentials for every workflow).
    ///
    /// # Errors
    /// The first invalid value, with its key path.
    pub fn validate_for(&self, mode: Mode) -> Result<(), ConfigError> {
        let workflows: Vec<&WorkflowConfig> = self.workflows.iter().collect();
        validate_workflows(&workflows, mode, |i| format!("workflows[{i}]"))?;
        self.validate_tokens()?;
        if self.shared_database() && self.grant_key_file.is_none() && self.grant_keys.is_none() {
            return Err(invalid(
                "grant_key_file",
                "required with a shared database: replicas sign with one key, from one file every replica \
                 reads (or SASE_GRANT_KEYS)",
            ));
        }
        if self.shared_database() && self.secrets_key_file.is_none() && self.secrets_key.is_none() {
            return Err(invalid(
                "secrets_key_file",
                "required with a shared database: replicas open the workflows' secrets with one key, from one \
                 file every replica reads (or SASE_SECRETS_KEY)",
            ));
        }
        self.validate_tls()?;
        if let Some(d) = &self.directory {
            if d.client_id.trim().is_empty() || d.client_secret.is_empty() {
                return Err(invalid(
                    "directory",
                    "name the DingTalk app whose contacts are the directory: client_id and client_secret",
                ));
            }
            if d.sync_every_secs == 0 {
                return Err(invalid(
                    "directory.sync_every_secs",
                    "0: at least 1 (each read walks the whole organisation: an hour, the default, suits most)",
                ));
            }
        }
        if !self.recheck_after_secs.is_sorted() {
            return Err(invalid(
                "recheck_after_secs",
                format!(
                    "{:?}: list the looks in increasing order",
                    self.recheck_after_secs
                ),
            ));
        }
        for (key, value) in [
            ("recheck_every_secs", self.recheck_every_secs),
            ("header_read_timeout_secs", self.header_read_timeout_secs),
            ("body_timeout_secs", self.body_timeout_secs),
            (
                "max_connections",
                u64::try_from(self.max_connections).unwrap_or(u64::MAX),
            ),
        ] {
            if value == 0 {
                return Err(invalid(key, "0: must be at least 1"));
            }
        }
        if mode == Mode::Production || !self.mock_only() {
            if self.admin_token.is_none() {
                return Err(required("admin_token"));
            }
            if self.policies.is_none() {
                return Err(required("policies"));
            }
        }
        Ok(())
    }

    /// Whether no workflow has DingTalk credentials: only then does a demo build make up
    /// what is missing (an admin token, a device, a policy) and print tokens. With real
    /// credentials nothing is made up, whatever the build.
    pub fn mock_only(&self) -> bool {
        self.workflows
            .iter()
            .all(|w| w.kind == WorkflowType::DingTalk && w.dingtalk.is_none())
    }
}

impl Config {
    /// `tls_cert_file` and `tls_key_file` come together: one alone would silently serve plain
    /// HTTP where HTTPS was meant.
    fn validate_tls(&self) -> Result<(), ConfigError> {
        match (&self.tls_cert_file, &self.tls_key_file) {
            (Some(_), None) => Err(invalid(
                "tls_key_file",
                "required with tls_cert_file (the certificate's private key, PEM)",
            )),
            (None, Some(_)) => Err(invalid(
                "tls_cert_file",
                "required with tls_key_file (the certificate chain, PEM)",
            )),
            _ => Ok(()),
        }
    }

    /// The console's and the metrics' tokens are long enough not to be guessed; device tokens
    /// are set and tell devices (and the console, and the scraper) apart, since a token is all
    /// a request's caller shows.
    fn validate_tokens(&self) -> Result<(), ConfigError> {
        if let Some(admin) = &self.admin_token {
            if admin.chars().count() < MIN_ADMIN_TOKEN_CHARS {
                return Err(invalid(
                    "admin_token",
                    format!("use at least {MIN_ADMIN_TOKEN_CHARS} random characters (e.g. `openssl rand -hex 32`)"),
                ));
            }
        }
        if let Some(metrics) = &self.metrics_token {
            if metrics.chars().count() < MIN_METRICS_TOKEN_CHARS {
                return Err(invalid(
                    "metrics_token",
                    format!("use at least {MIN_METRICS_TOKEN_CHARS} random characters (e.g. `openssl rand -hex 16`)"),
                ));
            }
            if self.admin_token.as_deref() == Some(metrics.as_str()) {
                return Err(invalid(
                    "metrics_token",
                    "equals the admin token: the scraper must not hold the console's token",
                ));
            }
        }
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for (i, d) in self.devices.iter().enumerate() {
            let key = format!("devices[{i}].token");
            if d.token.trim().is_empty() {
                return Err(invalid(key, "a device needs a token"));
            }
            if self.admin_token.as_deref() == Some(d.token.as_str()) {
                return Err(invalid(
                    key,
                    "equals the admin token: a device must not hold the console's token",
                ));
            }
            if self.metrics_token.as_deref() == Some(d.token.as_str()) {
                return Err(invalid(
                    key,
                    "equals the metrics token: a device must not read the organisation's metrics",
                ));
            }
            if let Some(first) = seen.insert(d.token.as_str(), i) {
                return Err(invalid(
                    key,
                    format!("equals devices[{first}].token: each device needs its own"),
                ));
            }
        }
        Ok(())
    }
}

/// How long a request may wait for a decision by default.
pub const DEFAULT_EXPIRE_AFTER: Duration = Duration::from_secs(7 * 24 * 3600);

/// The shortest admin token accepted.
pub const MIN_ADMIN_TOKEN_CHARS: usize = 32;

/// The shortest metrics token accepted.
pub const MIN_METRICS_TOKEN_CHARS: usize = 16;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weak_or_shared_tokens_are_refused_at_start_up() {
        let device = |token: &str, id: &str| {
            format!("[[devices]]\ntoken = \"{token}\"\ndevice_id = \"{id}\"\nuser_id = \"u-{id}\"\n")
        };
        let admin = "admin_token = \"0123456789abcdef0123456789abcdef\"\n";
        assert_eq!(key(parse("admin_token = \"\"").unwrap_err()), "admin_token");
        assert_eq!(
            key(parse("admin_token = \"short-admin-token\"").unwrap_err()),
            "admin_token"
        );
        parse(admin).unwrap();
        assert_eq!(
            key(parse(&format!("{admin}{}", device("  ", "a"))).unwrap_err()),
            "devices[0].token"
        );
        assert_eq!(
            key(parse(&format!(
                "{admin}{}",
                device("0123456789abcdef0123456789abcdef", "a")
            ))
            .unwrap_err()),
            "devices[0].token",
            "the admin's token"
        );
        assert_eq!(
            key(parse(&format!(
                "{admin}{}{}",
                device("tok-a", "a"),
                device("tok-a", "b")
            ))
            .unwrap_err()),
            "devices[1].token",
            "another device's token"
        );
        parse(&format!(
            "{admin}{}{}",
            device("tok-a", "a"),
            device("tok-b", "b")
        ))
        .unwrap();
    }

    fn parse_for(text: &str, mode: Mode) -> Result<Config, ConfigError> {
        let config = Config::from_toml(text, "test.toml")?;
        config.validate_for(mode)?;
        Ok(config)
    }

    fn parse(text: &str) -> Result<Config, ConfigError> {
        parse_for(text, Mode::Demo)
    }

    fn key(e: ConfigError) -> String {
        match e {
            ConfigError::Invalid { key, .. } => key,
            other => panic!("expected Invalid, got {other}"),
        }
    }

    /// What real credentials need besides a workflow: an admin token and policies.
    const COMPLETE: &str =
        "admin_token = \"admin-0123456789abcdef0123456789abcdef\"\npolicies = { policies = [] }\n";

    const APP: &str = r#"client_id = "dingapp"
client_secret = "s"
token = "t"
aes_key = "kYd8sJ2pQ7wE4rT9uV1xZ3cB6nM0aL5gH8jK2fD4sAx""#;

    #[test]
    fn the_default_is_one_mock_workflow() {
        let config = parse("").unwrap();
        assert_eq!(config.workflows.len(), 1);
        assert_eq!(config.workflows[0].id, "wf-dingtalk");
        assert!(config.workflows[0].dingtalk.is_none());
    }

    #[test]
    fn several_workflows_parse() {
        let config = parse(&format!(
            r#"{COMPLETE}
            [[workflows]]
            id = "wf-a"
            process_code = "PROC-A"
            fields = {{ reason = "原因" }}
            dingtalk = {{ {} }}
            [[workflows]]
            id = "wf-b"
            delivery = "stream"
            "#,
            APP.replace('\n', ", ")
        ))
        .unwrap();
        assert_eq!(config.workflows.len(), 2);
        assert_eq!(config.workflows[1].delivery, Delivery::Stream);
        assert!(!format!("{config:?}").contains("kYd8"), "secrets redacted");
        let with_token = parse("admin_token = \"s3cret-admin-0123456789abcdef012345\"").unwrap();
        assert!(
            !format!("{with_token:?}").contains("s3cret"),
            "admin token redacted"
        );
    }

    #[test]
    fn unknown_keys_are_refused() {
        // A misspelt policy key must not silently leave alice unexempt.
        let e = parse(
            "[[policies.policies]]\nid = \"p\"\nname = \"p\"\nwhitlist = [\"alice\"]\napproval = { allow_filing = false }",
        )
        .unwrap_err();
        assert!(
            matches!(&e, ConfigError::Parse { key, .. } if key == "policies.policies[0].whitlist"),
            "{e}"
        );
        assert!(
            e.to_string()
                .starts_with("test.toml: at `policies.policies[0].whitlist`"),
            "{e}"
        );
        // The pre-workflows layout must not silently fall back to the mock.
        let e = parse(&format!("[dingtalk]\n{APP}\nprocess_code = \"PROC-A\"")).unwrap_err();
        assert!(matches!(e, ConfigError::Parse { .. }), "{e}");
        assert!(e.to_string().contains("dingtalk"), "{e}");
    }

    #[test]
    fn invalid_workflows_name_their_key() {
        let two = |a: &str, b: &str| format!("[[workflows]]\n{a}\n[[workflows]]\n{b}");
        assert_eq!(
            key(parse(&two("id = \"a\"", "id = \"a\"")).unwrap_err()),
            "workflows[1].id"
        );
        assert_eq!(
            key(parse("[[workflows]]\nid = \"a b\"").unwrap_err()),
            "workflows[0].id"
        );
        assert_eq!(
            key(parse("[[workflows]]\nid = \"a\"\ncallback_id = \"short\"").unwrap_err()),
            "workflows[0].callback_id"
        );
        assert_eq!(
            key(parse(&two(
                "id = \"a\"\ncallback_id = \"0123456789abcdef\"",
                "id = \"b\"\ncallback_id = \"0123456789abcdef\""
            ))
            .unwrap_err()),
            "workflows[1].callback_id"
        );
        let real = |id: &str, extra: &str| format!("id = \"{id}\"\n{extra}\n[workflows.dingtalk]\n{APP}");
        assert_eq!(
            key(parse(&format!(
                "[[workflows]]\n{}",
                real("a", "fields = { reason = \"r\" }")
            ))
            .unwrap_err()),
            "workflows[0].process_code"
        );
        assert_eq!(
            key(parse(&format!("[[workflows]]\n{}", real("a", "process_code = \"P\""))).unwrap_err()),
            "workflows[0].fields"
        );
        let ok = "process_code = \"P\"\nfields = { reason = \"r\" }";
        parse(&format!("{COMPLETE}{}", two(&real("a", ok), &real("b", ok)))).unwrap();
        // The forms of other templates: each needs its process code and fields.
        let logoff = |form: &str| {
            real(
                "a",
                &format!("{ok}\n[[workflows.mappings]]\ntemplate = \"app_logoff\"\n{form}"),
            )
        };
        assert_eq!(
            key(parse(&format!(
                "[[workflows]]\n{}",
                logoff("process_code = \" \"\nfields = { reason = \"r\" }")
            ))
            .unwrap_err()),
            "workflows[0].mappings[0].process_code"
        );
        assert_eq!(
            key(parse(&format!(
                "[[workflows]]\n{}",
                logoff("process_code = \"L\"\nfields = {}")
            ))
            .unwrap_err()),
            "workflows[0].mappings[0].fields"
        );
        let parsed = parse(&format!(
            "{COMPLETE}[[workflows]]\n{}",
            logoff("process_code = \"L\"\nfields = { reason = \"r\" }")
        ))
        .unwrap();
        assert_eq!(
            parsed.workflows[0].mappings,
            [MappingConfig::new("app_logoff", "L", [("reason", "r")])]
        );
        assert_eq!(
            key(parse(
                "[[workflows]]\nid = \"b\"\ntype = \"builtin\"\napprovers = [\"x\"]\n[[workflows.mappings]]\ntemplate = \"app_logoff\"\nprocess_code = \"L\"\nfields = { reason = \"r\" }"
            )
            .unwrap_err()),
            "workflows[0].mappings",
            "a built-in workflow has no form"
        );
        assert_eq!(
            key(parse(&two(
                &real("a", ok),
                &real("b", &format!("{ok}\ndelivery = \"stream\""))
            ))
            .unwrap_err()),
            "workflows[1].dingtalk"
        );
    }

    /// A configuration complete without demo defaults: one real workflow, an admin token and
    /// a policy.
    fn production(admin_token: bool, policies: bool) -> String {
        let mut text = String::new();
        if admin_token {
            text.push_str("admin_token = \"admin-0123456789abcdef0123456789abcdef\"\n");
        }
        text.push_str(&format!(
            "[[workflows]]\nid = \"wf\"\nprocess_code = \"P\"\nfields = {{ reason = \"r\" }}\n[workflows.dingtalk]\n{APP}\n"
        ));
        if policies {
            text.push_str(
                "[[policies.policies]]\nid = \"p\"\nname = \"p\"\nswitches = { anti_uninstall = true }\n\
                 scope = { groups = [\"employees\"] }\napproval = { allow_filing = true, workflow = \"wf\" }\n",
            );
        }
        text
    }

    #[test]
    fn a_built_in_workflow_needs_approvers_and_no_dingtalk_app() {
        let admin = "admin_token = \"admin-0123456789abcdef0123456789abcdef\"\n";
        let builtin = "[[workflows]]\nid = \"wf-desk\"\ntype = \"builtin\"\n";
        let policy = "[[policies.policies]]\nid = \"p\"\nname = \"p\"\nswitches = { anti_uninstall = true }\n\
                      scope = { groups = [\"employees\"] }\napproval = { allow_filing = true, workflow = \"wf-desk\" }\n";
        let config = parse_for(
            &format!("{admin}{builtin}approvers = [\"security-lead\"]\n{policy}"),
            Mode::Production,
        )
        .unwrap();
        assert_eq!(config.workflows[0].kind, WorkflowType::Builtin);
        assert!(!config.mock_only(), "a built-in workflow is no demo");
        for (extra, refused) in [
            ("", "workflows[0].approvers"),
            (
                "approvers = [\"a\"]\nprocess_code = \"P\"\n",
                "workflows[0].process_code",
            ),
        ] {
            let text = format!("{admin}{builtin}{extra}{policy}");
            assert_eq!(key(parse_for(&text, Mode::Production).unwrap_err()), refused);
        }
        let approvers_on_dingtalk = format!("{admin}[[workflows]]\nid = \"wf\"\napprovers = [\"a\"]\n");
        assert_eq!(
            key(parse(&approvers_on_dingtalk).unwrap_err()),
            "workflows[0].approvers"
        );
        let unknown = parse("[[workflows]]\nid = \"wf\"\ntype = \"manual\"\n").unwrap_err();
        assert!(unknown.to_string().contains("workflows[0].type"), "{unknown}");
    }

    #[test]
    fn production_refuses_what_only_a_demo_makes_up() {
        for mode in [Mode::Demo, Mode::Production] {
            let refused = |text: &str| parse_for(text, mode).err().map(key);
            let expected = |key: &str| (mode == Mode::Production).then(|| key.to_owned());
            assert_eq!(refused(""), expected("workflows[0].dingtalk"), "{mode:?}");
            assert_eq!(
                refused("[[workflows]]\nid = \"a\"\n[[workflows]]\nid = \"b\""),
                expected("workflows[0].dingtalk")
            );
            // With real credentials nothing is made up, in a demo build too.
            assert_eq!(refused(&production(false, true)).as_deref(), Some("admin_token"));
            assert_eq!(refused(&production(true, false)).as_deref(), Some("policies"));
            assert_eq!(refused(&production(true, true)), None);
        }
        let e = parse_for("", Mode::Production).unwrap_err().to_string();
        assert!(
            e.starts_with("workflows[0].dingtalk: no DingTalk credentials") && e.contains("`demo`"),
            "{e}"
        );
    }

    #[test]
    fn errors_name_the_file_the_key_and_the_value() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("server.toml");
        let write = |text: &str| std::fs::write(&file, text).unwrap();
        let load = || {
            Config::load(&args(&["--config", &file.display().to_string()]).unwrap(), |_| {
                None
            })
            .unwrap_err()
            .to_string()
        };
        let path = file.display().to_string();
        write("[[workflows]]\nid = \"wf one\"");
        assert_eq!(
            load(),
            format!("{path}: workflows[0].id: `wf one`: use letters, digits, '-', '_' or '.'")
        );
        // A bad aes_key names its workflow and the key path, never the key.
        let bad_key = "ThisKeyIsTooShortForDingTalk";
        write(&production(true, true).replace("kYd8sJ2pQ7wE4rT9uV1xZ3cB6nM0aL5gH8jK2fD4sAx", bad_key));
        let e = load();
        assert!(
            e.starts_with(&format!("{path}: workflows[0].dingtalk.aes_key: workflow `wf`: "))
                && e.contains("43 characters")
                && e.contains("has 28 characters")
                && !e.contains(bad_key),
            "{e}"
        );
        // `[[policies]]` for `[[policies.policies]]` says so.
        write("[[policies]]\nid = \"p\"\nname = \"p\"");
        let e = load();
        assert!(
            e.starts_with(&format!("{path}: at `policies"))
                && e.contains("hint: policies go in `[[policies.policies]]`"),
            "{e}"
        );
        write(&format!("max_connections = 0\n{}", production(true, true)));
        assert_eq!(load(), format!("{path}: max_connections: 0: must be at least 1"));
    }

    #[test]
    fn the_recheck_schedule_is_configurable_and_checked() {
        let config = parse("recheck_after_secs = [0, 60]\nrecheck_every_secs = 3600").unwrap();
        let schedule = config.recheck_schedule();
        assert_eq!(schedule.first, [Duration::ZERO, Duration::from_secs(60)]);
        assert_eq!(schedule.then_every, Duration::from_secs(3600));
        assert_eq!(Config::default().recheck_schedule(), RecheckSchedule::default());
        assert_eq!(
            key(parse("recheck_after_secs = [600, 60]").unwrap_err()),
            "recheck_after_secs"
        );
        assert_eq!(
            key(parse("recheck_every_secs = 0").unwrap_err()),
            "recheck_every_secs"
        );
    }

    #[test]
    fn each_app_has_a_call_budget() {
        let app = |extra: &str| {
            parse(&format!("{COMPLETE}[[workflows]]\nid = \"a\"\nprocess_code = \"P\"\nfields = {{ reason = \"r\" }}\n[workflows.dingtalk]\n{APP}\n{extra}"))
        };
        let budget = |extra: &str| {
            app(extra).unwrap().workflows[0]
                .dingtalk
                .as_ref()
                .unwrap()
                .budget()
        };
        assert_eq!(budget(""), CallBudget::default(), "a standard org's");
        let paid = budget("qps_per_api = 0\ncalls_per_month = 0\nreconcile_share_percent = 20");
        assert_eq!((paid.qps_per_api, paid.calls_per_month), (None, None));
        assert!((paid.background_share - 0.2).abs() < 1e-9);
        assert_eq!(
            key(app("reconcile_share_percent = 120").unwrap_err()),
            "workflows[0].dingtalk.reconcile_share_percent"
        );
    }

    #[test]
    fn a_shared_database_needs_a_shared_grant_key_and_secrets_key() {
        let shared = format!(
            "database = \"postgres://sase@db.internal/sase\"\n{}",
            production(true, true)
        );
        let config = Config::from_toml(&shared, "test.toml").unwrap();
        assert!(config.shared_database());
        assert_eq!(
            key(config.validate_for(Mode::Production).unwrap_err()),
            "grant_key_file"
        );
        let with_grant_key = format!("grant_key_file = \"/etc/sase/grant-key\"\n{shared}");
        assert_eq!(
            key(parse_for(&with_grant_key, Mode::Production).unwrap_err()),
            "secrets_key_file"
        );
        let with_files = format!("secrets_key_file = \"/etc/sase/secrets-key\"\n{with_grant_key}");
        parse_for(&with_files, Mode::Production).unwrap();
        let none = |_: &str| None;
        let env = |k: &str| match k {
            "SASE_GRANT_KEYS" => Some("0".repeat(64)),
            "SASE_SECRETS_KEY" => Some("1".repeat(64)),
            _ => None,
        };
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("server.toml");
        std::fs::write(&file, &shared).unwrap();
        let flags = args(&["--config", &file.display().to_string()]).unwrap();
        assert!(Config::load(&flags, none).is_err());
        let from_env = Config::load(&flags, env).unwrap();
        let debug = format!("{from_env:?}");
        assert!(
            !debug.contains("0000") && !debug.contains("1111"),
            "the keys are redacted: {debug}"
        );
        assert!(
            !Config::default().shared_database(),
            "a SQLite file is this server's own"
        );
    }

    #[test]
    fn the_metrics_token_is_optional_long_its_own_and_redacted() {
        let admin = "admin_token = \"admin-0123456789abcdef0123456789abcdef\"\n";
        assert_eq!(Config::default().metrics_token, None, "metrics are opt-in");
        assert_eq!(
            key(parse(&format!("{admin}metrics_token = \"short\"")).unwrap_err()),
            "metrics_token"
        );
        assert_eq!(
            key(parse(&format!(
                "{admin}metrics_token = \"admin-0123456789abcdef0123456789abcdef\""
            ))
            .unwrap_err()),
            "metrics_token",
            "not the admin's"
        );
        assert_eq!(
            key(parse(&format!(
                "{admin}metrics_token = \"metrics-0123456789\"\n[[devices]]\ntoken = \"metrics-0123456789\"\ndevice_id = \"d\"\nuser_id = \"u\"\n"
            ))
            .unwrap_err()),
            "devices[0].token",
            "not a device's"
        );
        let set = parse(&format!("{admin}metrics_token = \"metrics-0123456789\"")).unwrap();
        assert_eq!(set.metrics_token.as_deref(), Some("metrics-0123456789"));
        assert!(!format!("{set:?}").contains("metrics-0123456789"), "redacted");
        let env = |k: &str| (k == "SASE_METRICS_TOKEN").then(|| "from-the-environment".to_owned());
        let from_env = Config::read(&args(&[]).unwrap(), env).unwrap();
        assert_eq!(from_env.metrics_token.as_deref(), Some("from-the-environment"));
    }

    #[test]
    fn the_reconciler_lease_outlasts_its_passes() {
        assert_eq!(
            Config::default().reconciler_lease(),
            Duration::from_secs(90),
            "three 30 s passes"
        );
        let fast = parse("reconcile_every_secs = 1").unwrap();
        assert_eq!(fast.reconciler_lease(), Duration::from_secs(30), "at least 30 s");
        let set = parse("reconcile_every_secs = 1\nreconciler_lease_secs = 3").unwrap();
        assert_eq!(set.reconciler_lease(), Duration::from_secs(3));
    }

    #[test]
    fn this_build_validates_in_its_own_mode() {
        let default = Config::default().validate().err().map(key);
        if cfg!(feature = "demo") {
            assert_eq!(default, None, "the defaults run on the mock");
        } else {
            assert_eq!(default.as_deref(), Some("workflows[0].dingtalk"));
        }
    }

    fn args(flags: &[&str]) -> Result<Args, clap::Error> {
        use clap::Parser as _;
        Args::try_parse_from(std::iter::once("approval-server").chain(flags.iter().copied()))
    }

    #[test]
    fn the_command_line() {
        use clap::CommandFactory as _;
        for flags in [
            &["--listen"][..],
            &["--database"],
            &["--config"],
            &["--listen", "not-an-address"],
            &["--port", "80"],
            &["extra"],
        ] {
            assert!(args(flags).is_err(), "{flags:?} must be refused");
        }
        let help = Args::command().render_help().to_string();
        for mention in [
            "--config <FILE>",
            "--listen <ADDR>",
            "--database <PATH>",
            "SASE_LISTEN",
            "SASE_ADMIN_TOKEN",
            "SASE_METRICS_TOKEN",
            "SASE_TLS_CERT_FILE",
            "SASE_TLS_KEY_FILE",
            "SASE_LOG_FORMAT",
            "--log-format <FORMAT>",
        ] {
            assert!(help.contains(mention), "--help mentions {mention}: {help}");
        }
        let e = args(&["--help"]).unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::DisplayHelp);
        let parsed = args(&["--listen", "127.0.0.1:3000", "--database", "flag.sqlite"]).unwrap();
        assert_eq!(parsed.listen, Some("127.0.0.1:3000".parse().unwrap()));
    }

    #[test]
    fn flags_override_the_environment_which_overrides_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("server.toml");
        std::fs::write(
            &file,
            "listen = \"127.0.0.1:1000\"\ndatabase = \"file.sqlite\"\nadmin_token = \"file\"\n[[workflows]]\nid = \"a\"",
        )
        .unwrap();
        let file = file.display().to_string();
        let none = |_: &str| None;
        let env = |k: &str| match k {
            "SASE_LISTEN" => Some("127.0.0.1:2000".to_owned()),
            "SASE_ADMIN_TOKEN" => Some("env".to_owned()),
            "SASE_DELIVERY" => Some("stream".to_owned()),
            _ => None,
        };
        let from_file = Config::read(&args(&["--config", &file]).unwrap(), none).unwrap();
        assert_eq!(
            (
                from_file.listen.port(),
                from_file.database.as_str(),
                from_file.admin_token.as_deref()
            ),
            (1000, "file.sqlite", Some("file"))
        );
        assert_eq!(from_file.workflows[0].delivery, Delivery::HttpPush);
        let from_env = Config::read(&args(&["--config", &file]).unwrap(), env).unwrap();
        assert_eq!(
            (
                from_env.listen.port(),
                from_env.database.as_str(),
                from_env.admin_token.as_deref()
            ),
            (2000, "file.sqlite", Some("env"))
        );
        assert_eq!(from_env.workflows[0].delivery, Delivery::Stream);
        let flags = args(&[
            "--config",
            &file,
            "--listen",
            "127.0.0.1:3000",
            "--database",
            "flag.sqlite",
        ])
        .unwrap();
        let from_flags = Config::read(&flags, env).unwrap();
        assert_eq!(
            (from_flags.listen.port(), from_flags.database.as_str()),
            (3000, "flag.sqlite")
        );
        assert_eq!(
            key(Config::read(&args(&[]).unwrap(), |k: &str| (k == "SASE_LISTEN")
                .then(|| "nope".to_owned()))
            .unwrap_err()),
            "SASE_LISTEN"
        );
        let missing =
            Config::read(&args(&["--config", "/nonexistent/server.toml"]).unwrap(), none).unwrap_err();
        assert!(matches!(missing, ConfigError::Read { .. }), "{missing}");
    }
}
