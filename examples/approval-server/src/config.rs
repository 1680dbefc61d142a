//! Server configuration: a TOML file, overridden by `SASE_*` environment variables and flags,
//! with embedded defaults that need nothing (SQLite file, one workflow on the in-process mock
//! DingTalk).

use sase_approval::definition::Delivery;
use sase_approval::engine::DEFAULT_EVENT_RETENTION;
use sase_policy::PolicyDocument;
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The command line is not understood.
    #[error("{0}; usage: approval-server [--config FILE] [--listen ADDR] [--database PATH]")]
    Usage(String),
    /// The configuration file cannot be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The configuration file is not valid TOML for [`Config`] (unknown keys included).
    #[error("{path}: {source}")]
    Parse {
        /// The file.
        path: String,
        /// Where and why.
        source: toml::de::Error,
    },
    /// A value is invalid; `key` is its path, e.g. `workflows[1].process_code`.
    #[error("{key}: {message}")]
    Invalid {
        /// Path of the key.
        key: String,
        /// What is wrong.
        message: String,
    },
}

fn invalid(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        message: message.into(),
    }
}

/// A DingTalk app's credentials and event subscription; without them the workflow runs on the
/// mock DingTalk in-process. `Debug` redacts secrets.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
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
    /// Base URL of the OpenAPI (tests point it at a mock).
    pub api_base: Option<String>,
}

impl std::fmt::Debug for DingTalkConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DingTalkConfig")
            .field("client_id", &self.client_id)
            .field("api_base", &self.api_base)
            .finish_non_exhaustive()
    }
}

/// One DingTalk approval workflow: the form it creates instances of, how its events arrive,
/// and the app it belongs to. Each HTTP-push workflow has its own Request URL.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct WorkflowConfig {
    /// What policies name in `approval.workflow` (letters, digits, `-`, `_`, `.`).
    pub id: String,
    /// Display name (defaults to the id).
    #[serde(default)]
    pub name: Option<String>,
    /// `http_push` (a Request URL) or `stream` (a WebSocket we open; no public URL needed).
    #[serde(default = "http_push")]
    pub delivery: Delivery,
    /// The Request URL's id (`/dingtalk/callback/{id}`); persisted beside the database if unset.
    #[serde(default)]
    pub callback_id: Option<String>,
    /// The approval form (`PROC-…`); required with credentials, generated for the mock.
    #[serde(default)]
    pub process_code: Option<String>,
    /// System field → form label, e.g. `reason = "卸载原因"`; required with credentials, the
    /// mock's form is built from them (or from a default uninstall form).
    #[serde(default)]
    pub fields: BTreeMap<String, String>,
    /// The DingTalk app; unset = the mock DingTalk in-process.
    #[serde(default)]
    pub dingtalk: Option<DingTalkConfig>,
}

fn http_push() -> Delivery {
    Delivery::HttpPush
}

impl WorkflowConfig {
    /// A workflow on the mock DingTalk (add [`dingtalk`](Self::dingtalk) credentials for the
    /// real one).
    pub fn new(id: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            name: None,
            delivery: Delivery::HttpPush,
            callback_id: None,
            process_code: None,
            fields: BTreeMap::new(),
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

/// The server's configuration. Unknown keys are refused, so a misspelt section never
/// silently falls back to the mock. `Debug` redacts the admin token.
#[derive(Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Listen address.
    pub listen: SocketAddr,
    /// Public base URL DingTalk reaches us at (for the Request URLs); defaults to `http://{listen}`.
    pub public_url: Option<String>,
    /// SQLite file.
    pub database: String,
    /// Console bearer token (random if unset).
    pub admin_token: Option<String>,
    /// The approval workflows; by default one, `wf-dingtalk`, on the mock DingTalk.
    pub workflows: Vec<WorkflowConfig>,
    /// Enrolled devices (a demo device if empty).
    pub devices: Vec<DeviceConfig>,
    /// Policies (a demo policy, on the first workflow, if unset).
    pub policies: Option<PolicyDocument>,
    /// Reconciliation period, seconds.
    pub reconcile_every_secs: u64,
    /// Grant lifetime, seconds.
    pub grant_ttl_secs: u64,
    /// How long processed event ids are kept to drop redeliveries, seconds (pruned at
    /// reconciliation).
    pub event_retention_secs: u64,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("listen", &self.listen)
            .field("public_url", &self.public_url)
            .field("database", &self.database)
            .field("admin_token", &self.admin_token.as_ref().map(|_| "<redacted>"))
            .field("workflows", &self.workflows)
            .field("devices", &self.devices)
            .field("policies", &self.policies.as_ref().map(|p| p.policies.len()))
            .field("reconcile_every_secs", &self.reconcile_every_secs)
            .field("grant_ttl_secs", &self.grant_ttl_secs)
            .field("event_retention_secs", &self.event_retention_secs)
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
            workflows: vec![WorkflowConfig::new("wf-dingtalk")],
            devices: Vec::new(),
            policies: None,
            reconcile_every_secs: 30,
            grant_ttl_secs: 3600,
            event_retention_secs: DEFAULT_EVENT_RETENTION.as_secs(),
        }
    }
}

impl Config {
    /// Loads from `--config FILE`, then `SASE_LISTEN`, `SASE_DATABASE`, `SASE_ADMIN_TOKEN`,
    /// `SASE_DELIVERY` (every workflow's), then `--listen ADDR`, `--database PATH`; and
    /// validates the result.
    ///
    /// # Errors
    /// An unknown argument, an unreadable or invalid file, or an invalid value.
    pub fn load() -> Result<Self, ConfigError> {
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
            return Err(ConfigError::Usage(format!("unknown argument {unknown}")));
        }
        let mut config = match flag("--config") {
            Some(path) => {
                let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
                    path: path.clone(),
                    source,
                })?;
                toml::from_str(&text).map_err(|source| ConfigError::Parse { path, source })?
            }
            None => Config::default(),
        };
        let env = |k: &str| std::env::var(k).ok();
        if let Some(v) = flag("--listen").or_else(|| env("SASE_LISTEN")) {
            config.listen = v.parse().map_err(|e| invalid("listen", format!("{v}: {e}")))?;
        }
        if let Some(v) = flag("--database").or_else(|| env("SASE_DATABASE")) {
            config.database = v;
        }
        if let Some(v) = env("SASE_ADMIN_TOKEN") {
            config.admin_token = Some(v);
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
        config.validate()?;
        Ok(config)
    }

    /// Checks what the types cannot: unique, well-formed workflow ids and Request URL ids,
    /// a form and a mapping for each real DingTalk workflow, and one event subscription per
    /// DingTalk app (workflows of one app share its token, aes_key and delivery).
    ///
    /// # Errors
    /// The first invalid value, with its key path.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut ids = HashMap::new();
        let mut callback_ids = HashMap::new();
        let mut apps: HashMap<&str, (usize, &WorkflowConfig)> = HashMap::new();
        for (i, w) in self.workflows.iter().enumerate() {
            let key = |k: &str| format!("workflows[{i}].{k}");
            if w.id.is_empty()
                || !w
                    .id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            {
                return Err(invalid(key("id"), "use letters, digits, '-', '_' or '.'"));
            }
            if let Some(first) = ids.insert(w.id.as_str(), i) {
                return Err(invalid(
                    key("id"),
                    format!("`{}` is also workflows[{first}]", w.id),
                ));
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
                    return Err(invalid(key("callback_id"), format!("also workflows[{first}]'s")));
                }
            }
            let Some(app) = &w.dingtalk else { continue };
            if w.process_code.as_deref().is_none_or(str::is_empty) {
                return Err(invalid(key("process_code"), "required with DingTalk credentials"));
            }
            if w.fields.is_empty() {
                return Err(invalid(
                    key("fields"),
                    "map system fields to the form's labels, e.g. reason = \"卸载原因\"",
                ));
            }
            if let Some((j, other)) = apps.insert(app.client_id.as_str(), (i, w)) {
                let theirs = other.dingtalk.as_ref();
                if theirs != Some(app) || other.delivery != w.delivery {
                    return Err(invalid(
                        key("dingtalk"),
                        format!(
                            "app {} is also workflows[{j}]'s with other settings: one app has one event subscription",
                            app.client_id
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|source| ConfigError::Parse {
            path: "test".into(),
            source,
        })?;
        config.validate()?;
        Ok(config)
    }

    fn key(e: ConfigError) -> String {
        match e {
            ConfigError::Invalid { key, .. } => key,
            other => panic!("expected Invalid, got {other}"),
        }
    }

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
            r#"
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
        let with_token = parse("admin_token = \"s3cret-admin\"").unwrap();
        assert!(
            !format!("{with_token:?}").contains("s3cret"),
            "admin token redacted"
        );
    }

    #[test]
    fn unknown_keys_are_refused() {
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
        parse(&two(&real("a", ok), &real("b", ok))).unwrap();
        assert_eq!(
            key(parse(&two(
                &real("a", ok),
                &real("b", &format!("{ok}\ndelivery = \"stream\""))
            ))
            .unwrap_err()),
            "workflows[1].dingtalk"
        );
    }
}
