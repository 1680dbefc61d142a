//! Server configuration: a TOML file, overridden by `SASE_*` environment variables and flags,
//! with embedded defaults that need nothing (SQLite file, in-process mock DingTalk).

use crate::approval::definition::Delivery;
use crate::policy::PolicyDocument;
use serde::Deserialize;
use std::net::SocketAddr;

/// Real DingTalk credentials; without them the server starts the mock DingTalk in-process.
#[derive(Clone, Deserialize)]
pub struct DingTalkConfig {
    /// Client ID (AppKey).
    pub client_id: String,
    /// Client secret.
    pub client_secret: String,
    /// Event-subscription token.
    pub token: String,
    /// Event-subscription aes_key (43 characters).
    pub aes_key: String,
    /// Defaults to the Client ID (console-configured subscriptions).
    pub receiver_id: Option<String>,
    /// The approval form (`PROC-…`).
    pub process_code: String,
    /// System field → form label, e.g. `reason = "卸载原因"`.
    pub fields: std::collections::BTreeMap<String, String>,
    /// Base URL of the OpenAPI (tests point it at a mock).
    pub api_base: Option<String>,
}

impl std::fmt::Debug for DingTalkConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DingTalkConfig")
            .field("client_id", &self.client_id)
            .field("process_code", &self.process_code)
            .finish_non_exhaustive()
    }
}

/// An enrolled device: its bearer token and who uses it.
#[derive(Clone, Deserialize)]
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
}

impl std::fmt::Debug for DeviceConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceConfig")
            .field("device_id", &self.device_id)
            .field("user_id", &self.user_id)
            .finish()
    }
}

/// The server's configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct Config {
    /// Listen address.
    pub listen: SocketAddr,
    /// Public base URL DingTalk reaches us at (for the Request URL); defaults to `http://{listen}`.
    pub public_url: Option<String>,
    /// SQLite file.
    pub database: String,
    /// The Request URL's id (`/dingtalk/callback/{id}`); persisted beside the database if unset.
    pub callback_id: Option<String>,
    /// Console bearer token (random if unset).
    pub admin_token: Option<String>,
    /// Real DingTalk; unset = the mock in-process.
    pub dingtalk: Option<DingTalkConfig>,
    /// Enrolled devices (a demo device if empty).
    pub devices: Vec<DeviceConfig>,
    /// Policies (a demo policy if unset).
    pub policies: Option<PolicyDocument>,
    /// Reconciliation period, seconds.
    pub reconcile_every_secs: u64,
    /// Grant lifetime, seconds.
    pub grant_ttl_secs: u64,
    /// `http_push` (a Request URL) or `stream` (a WebSocket we open; no public URL needed).
    pub delivery: Delivery,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            public_url: None,
            database: "sase-approval.sqlite".into(),
            callback_id: None,
            admin_token: None,
            dingtalk: None,
            devices: Vec::new(),
            policies: None,
            reconcile_every_secs: 30,
            grant_ttl_secs: 3600,
            delivery: Delivery::HttpPush,
        }
    }
}

impl Config {
    /// Loads from `--config FILE`, then `SASE_LISTEN`, `SASE_DATABASE`, `SASE_ADMIN_TOKEN`, then
    /// `--listen ADDR`, `--database PATH`.
    pub fn load() -> Result<Self, String> {
        let args: Vec<String> = std::env::args().skip(1).collect();
        let flag = |name: &str| {
            args.iter()
                .position(|a| a == name)
                .and_then(|i| args.get(i + 1))
                .cloned()
        };
        if let Some(unknown) = args
            .iter()
            .step_by(2)
            .find(|a| !["--config", "--listen", "--database"].contains(&a.as_str()))
        {
            return Err(format!("unknown argument {unknown}; usage: approval-server [--config FILE] [--listen ADDR] [--database PATH]"));
        }
        let mut config = match flag("--config") {
            Some(path) => {
                let text = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
                toml::from_str(&text).map_err(|e| format!("{path}: {e}"))?
            }
            None => Config::default(),
        };
        let env = |k: &str| std::env::var(k).ok();
        if let Some(v) = flag("--listen").or_else(|| env("SASE_LISTEN")) {
            config.listen = v.parse().map_err(|e| format!("listen address {v}: {e}"))?;
        }
        if let Some(v) = flag("--database").or_else(|| env("SASE_DATABASE")) {
            config.database = v;
        }
        if let Some(v) = env("SASE_ADMIN_TOKEN") {
            config.admin_token = Some(v);
        }
        if let Some(v) = env("SASE_DELIVERY") {
            config.delivery = match v.as_str() {
                "stream" => Delivery::Stream,
                "http_push" => Delivery::HttpPush,
                other => return Err(format!("SASE_DELIVERY={other}: use http_push or stream")),
            };
        }
        Ok(config)
    }
}
