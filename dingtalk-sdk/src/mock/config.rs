//! What the mock DingTalk knows: registered apps, approval processes, injected faults, the
//! quotas it enforces and its Stream redelivery schedule. Serde-friendly, so the standalone
//! binary reads them from a JSON or TOML file.

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// A registered DingTalk app (internal app with an event subscription).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct MockApp {
    /// Client ID (AppKey).
    pub client_id: String,
    /// Client secret.
    pub client_secret: String,
    /// Event-subscription signature token; events are pushed only when set with `aes_key`.
    #[serde(default)]
    pub token: Option<String>,
    /// Event-subscription `aes_key` (43 characters).
    #[serde(default)]
    pub aes_key: Option<String>,
    /// Receiver id events are encrypted for; defaults to the Client ID (console setups).
    #[serde(default)]
    pub receiver_id: Option<String>,
    /// HTTP-push Request URL; `None` means no HTTP push.
    #[serde(default)]
    pub request_url: Option<String>,
    /// Deliver events over the Stream gateway instead of (or as well as) HTTP push.
    #[serde(default)]
    pub stream: bool,
    /// The organisation's corpId, sent in events; its directory is the one the app reads.
    #[serde(default = "default_corp_id")]
    pub corp_id: String,
    /// The redirect URLs sign-in may send users back to (prefixes, as DingTalk checks the
    /// registered domain); empty: any http(s) URL.
    #[serde(default)]
    pub redirect_uris: Vec<String>,
}

/// The corpId of apps (and directory entries) that do not set one: the mock's organisation.
pub const DEFAULT_CORP_ID: &str = "dingmockcorp0000000000";

fn default_corp_id() -> String {
    DEFAULT_CORP_ID.to_owned()
}

impl std::fmt::Debug for MockApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockApp")
            .field("client_id", &self.client_id)
            .field("client_secret", &"<redacted>")
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("aes_key", &self.aes_key.as_ref().map(|_| "<redacted>"))
            .field("receiver_id", &self.receiver_id)
            .field("request_url", &self.request_url)
            .field("stream", &self.stream)
            .field("corp_id", &self.corp_id)
            .field("redirect_uris", &self.redirect_uris)
            .finish()
    }
}

impl MockApp {
    /// An app with credentials only (no event subscription).
    pub fn new(client_id: impl Into<String>, client_secret: impl Into<String>) -> Self {
        Self {
            client_id: client_id.into(),
            client_secret: client_secret.into(),
            token: None,
            aes_key: None,
            receiver_id: None,
            request_url: None,
            stream: false,
            corp_id: default_corp_id(),
            redirect_uris: Vec::new(),
        }
    }

    /// Allows sign-in to send users back to URLs starting with `prefix` (once any is set,
    /// others are refused).
    pub fn redirect_uri(mut self, prefix: impl Into<String>) -> Self {
        self.redirect_uris.push(prefix.into());
        self
    }

    /// Subscribes to events with this token and aes_key (receiver id = Client ID).
    pub fn events(mut self, token: impl Into<String>, aes_key: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self.aes_key = Some(aes_key.into());
        self
    }

    /// Pushes events over HTTP to this Request URL.
    pub fn request_url(mut self, url: impl Into<String>) -> Self {
        self.request_url = Some(url.into());
        self
    }

    /// Pushes events over the Stream gateway.
    pub fn stream(mut self, on: bool) -> Self {
        self.stream = on;
        self
    }

    /// The organisation's corpId, sent in events over HTTP push and Stream alike.
    /// Default: `dingmockcorp0000000000`.
    pub fn corp_id(mut self, corp_id: impl Into<String>) -> Self {
        self.corp_id = corp_id.into();
        self
    }

    /// The receiver id events are encrypted for.
    pub fn effective_receiver_id(&self) -> &str {
        self.receiver_id.as_deref().unwrap_or(&self.client_id)
    }
}

/// One field of a registered form, as `QuerySchemaByProcessCode` describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct MockFormField {
    /// The label, which `formComponentValues[].name` must equal.
    pub label: String,
    /// `componentName`: `TextField`, `TextareaField`, `DDDateField`, …
    #[serde(default = "default_component")]
    pub component: String,
    /// Whether a value is required.
    #[serde(default)]
    pub required: bool,
}

fn default_component() -> String {
    "TextField".to_owned()
}

impl MockFormField {
    /// A field of the given label and component.
    pub fn new(label: impl Into<String>, component: impl Into<String>, required: bool) -> Self {
        Self {
            label: label.into(),
            component: component.into(),
            required,
        }
    }
}

/// A registered approval process (form).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct MockProcess {
    /// `PROC-…`.
    pub process_code: String,
    /// Form name.
    pub name: String,
    /// Form fields.
    pub form: Vec<MockFormField>,
    /// Approvers (in order, `OR`-signed: one decision completes the instance) used when a
    /// start request names none, as the console-defined flow would.
    #[serde(default)]
    pub approvers: Vec<String>,
}

impl MockProcess {
    /// A process with the given code, name, form and default approvers.
    pub fn new(
        process_code: impl Into<String>,
        name: impl Into<String>,
        form: Vec<MockFormField>,
        approvers: Vec<String>,
    ) -> Self {
        Self {
            process_code: process_code.into(),
            name: name.into(),
            form,
            approvers,
        }
    }
}

/// Faults to inject. Counters apply to the next N API calls or events, then run out.
/// Build it with struct-update syntax: `MockFaults { rate_limit_next: 2, ..MockFaults::default() }`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct MockFaults {
    /// Answer the next N workflow calls with 403 `Forbidden.AccessDenied.QpsLimitForAppkeyAndApi`.
    pub rate_limit_next: u32,
    /// Answer the next N workflow calls with 500 `systemError`.
    pub server_error_next: u32,
    /// Answer the next N start-instance calls with 500 *after* creating the instance (an
    /// ambiguous outcome the caller must reconcile).
    pub create_then_fail_next: u32,
    /// Delay every API answer by this many milliseconds.
    pub latency_ms: u64,
    /// Drop the next N events (recorded as dropped, never delivered).
    pub drop_events_next: u32,
    /// Deliver the next N events twice.
    pub duplicate_events_next: u32,
}

impl MockFaults {
    pub(crate) fn latency(&self) -> Duration {
        Duration::from_millis(self.latency_ms)
    }
}

/// DingTalk's call quotas (PROTOCOL e.1, DOC-THROTTLE), enforced by the mock when set. Both
/// are off by default. Build it with struct-update syntax:
/// `MockQuotas { qps_per_app_and_api: Some(20), ..MockQuotas::default() }`.
///
/// A refused call is answered HTTP 403 with DingTalk's body and is not executed; it is counted
/// in the usage ([`MockUsage`](super::MockUsage)) as refused. The windows follow the mock's
/// clock ([`MockDingTalkBuilder::clock`](super::MockDingTalkBuilder::clock)).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct MockQuotas {
    /// Calls per second per app (the Client ID of the access token, or the `appKey` of a token
    /// request) and per API (method and path, without the query): calls in the current
    /// one-second window of the clock beyond this are answered 403
    /// `Forbidden.AccessDenied.QpsLimitForAppkeyAndApi`. DingTalk's standard orgs: 20.
    /// `None`: no limit.
    pub qps_per_app_and_api: Option<u32>,
    /// Calls per calendar month (UTC, of the clock) per organisation (the apps sharing a
    /// corpId); calls beyond it are answered 403 `Forbidden.AccessDenied.ApiCountLimitForOrg`.
    /// Token requests (`/v1.0/oauth2/accessToken`, `/gettoken`) are exempt, as on DingTalk;
    /// refused calls do not count. DingTalk's standard orgs: 5000 or 10000 (the two versions
    /// of the document differ). `None`: no limit.
    pub calls_per_month: Option<u64>,
}

/// DingTalk's Stream redelivery schedule as reported (PROTOCOL f.4, unconfirmed): 10 s, 30 s,
/// 60 s, 120 s.
pub const DINGTALK_REDELIVERY_MS: [u64; 4] = [10_000, 30_000, 60_000, 120_000];

/// Stream-mode settings (`[stream]` in `mock.toml`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct MockStream {
    /// Milliseconds before each re-push of an event that was not consumed (not ACKed, or
    /// ACKed `LATER` or with a non-200 code): the first re-push comes `redelivery_ms[0]` after
    /// the first push, the next `redelivery_ms[1]` after that, and so on. An event still not
    /// consumed `redelivery_ms.last()` after its last re-push is dropped (and journalled as
    /// such). Empty: never re-pushed nor dropped. Default: DingTalk's reported
    /// `[10000, 30000, 60000, 120000]`.
    pub redelivery_ms: Vec<u64>,
}

impl Default for MockStream {
    fn default() -> Self {
        Self {
            redelivery_ms: DINGTALK_REDELIVERY_MS.to_vec(),
        }
    }
}

impl MockStream {
    /// The schedule as durations.
    pub fn redelivery(&self) -> Vec<Duration> {
        self.redelivery_ms
            .iter()
            .copied()
            .map(Duration::from_millis)
            .collect()
    }
}

/// A whole mock configuration, as the standalone binary reads it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct MockConfig {
    /// Registered apps.
    pub apps: Vec<MockApp>,
    /// Registered processes.
    pub processes: Vec<MockProcess>,
    /// Access-token lifetime in seconds (DingTalk: 7200).
    pub token_ttl_secs: Option<u64>,
    /// Seconds after creation during which terminate is refused (DingTalk: 15).
    pub terminate_grace_secs: Option<u64>,
    /// The quotas enforced (`[quotas]`); off by default.
    pub quotas: MockQuotas,
    /// Stream-mode settings (`[stream]`): the redelivery schedule.
    pub stream: MockStream,
    /// The directory (`[directory]`: departments and users of each corp); `None`:
    /// [`MockDirectory::default`](super::MockDirectory).
    pub directory: Option<super::MockDirectory>,
}
