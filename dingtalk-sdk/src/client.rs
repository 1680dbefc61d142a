//! [`DingTalkClient`]: the v1.0 OpenAPI client with token management, typed errors, rate-limit
//! backoff, refresh-and-retry-once on authentication errors, and no blind retry of calls that
//! create things, within a per-app call budget ([`CallBudget`]: QPS per API, calls per month,
//! a share for background work; see [`budget`]).
//!
//! ```no_run
//! use dingtalk_sdk::client::DingTalkClient;
//! use dingtalk_sdk::token::Credentials;
//! use dingtalk_sdk::ProcessInstanceId;
//!
//! # async fn run() -> dingtalk_sdk::Result<()> {
//! let client = DingTalkClient::builder(Credentials::new("dingappkey", "app-secret")).build()?;
//! let instance = client.workflow().get_instance(&ProcessInstanceId::new("pi-1")).await?;
//! println!("{:?} {:?}", instance.status, instance.result);
//! # Ok(()) }
//! ```

use crate::budget::{self, Budget, BudgetClock, BudgetUsage, CallBudget, Metering, Priority, SharedCounters};
use crate::contacts::Contacts;
use crate::error::{Error, ErrorKind, Result};
use crate::oauth::{OAuth, UserAccessToken};
use crate::retry::RetryPolicy;
use crate::token::{CachedTokenProvider, Credentials, TokenProvider};
use crate::transport;
use crate::workflow::Workflow;
use reqwest::header::{HeaderValue, CONTENT_TYPE};
use reqwest::Method;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;
use tracing::Instrument as _;

pub use crate::transport::{DEFAULT_API_BASE, DEFAULT_OAPI_BASE};
const TOKEN_HEADER: &str = "x-acs-dingtalk-access-token";

/// A DingTalk OpenAPI client. Cheap to clone; clones share the HTTP client, the token cache
/// and the call budget. Calls are [`Priority::Foreground`] unless made through
/// [`background`](Self::background).
#[derive(Clone)]
pub struct DingTalkClient {
    inner: Arc<Inner>,
    priority: Priority,
}

struct Inner {
    http: reqwest::Client,
    api_base: String,
    oapi_base: String,
    credentials: Credentials,
    tokens: Arc<dyn TokenProvider>,
    oapi_tokens: Arc<dyn TokenProvider>,
    retry: RetryPolicy,
    timeout: Duration,
    budget: Budget,
}

impl fmt::Debug for DingTalkClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DingTalkClient")
            .field("api_base", &self.inner.api_base)
            .field("oapi_base", &self.inner.oapi_base)
            .field("credentials", &self.inner.credentials)
            .field("tokens", &self.inner.tokens)
            .field("oapi_tokens", &self.inner.oapi_tokens)
            .field("retry", &self.inner.retry)
            .field("timeout", &self.inner.timeout)
            .field("budget", self.inner.budget.config())
            .field("priority", &self.priority)
            .finish()
    }
}

/// Builder for [`DingTalkClient`].
pub struct DingTalkClientBuilder {
    credentials: Credentials,
    api_base: String,
    oapi_base: String,
    http: Option<reqwest::Client>,
    tokens: Option<Arc<dyn TokenProvider>>,
    oapi_tokens: Option<Arc<dyn TokenProvider>>,
    retry: RetryPolicy,
    timeout: Duration,
    connect_timeout: Duration,
    user_agent: String,
    budget: CallBudget,
    budget_clock: Option<BudgetClock>,
    shared_counters: Option<Arc<dyn SharedCounters>>,
}

impl fmt::Debug for DingTalkClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DingTalkClientBuilder")
            .field("credentials", &self.credentials)
            .field("api_base", &self.api_base)
            .field("oapi_base", &self.oapi_base)
            .field("http", &self.http)
            .field("tokens", &self.tokens)
            .field("oapi_tokens", &self.oapi_tokens)
            .field("retry", &self.retry)
            .field("timeout", &self.timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("user_agent", &self.user_agent)
            .field("budget", &self.budget)
            .field("budget_clock", &self.budget_clock.as_ref().map(|_| "custom"))
            .field("shared_counters", &self.shared_counters)
            .finish()
    }
}

impl DingTalkClientBuilder {
    /// Base URL of the v1.0 API (default `https://api.dingtalk.com`); point it at a mock in tests.
    pub fn api_base(mut self, url: impl Into<String>) -> Self {
        self.api_base = transport::trim_base(&url.into());
        self
    }

    /// Base URL of the old API (default `https://oapi.dingtalk.com`), which serves the
    /// directory ([`contacts`](DingTalkClient::contacts)) and its token (`/gettoken`); point
    /// it at a mock in tests (the mock serves both APIs on one address).
    pub fn oapi_base(mut self, url: impl Into<String>) -> Self {
        self.oapi_base = transport::trim_base(&url.into());
        self
    }

    /// Use this reqwest client (proxies, TLS, pools). The per-request timeout still applies.
    pub fn http_client(mut self, http: reqwest::Client) -> Self {
        self.http = Some(http);
        self
    }

    /// Use this token provider (e.g. one backed by a cache shared by several replicas)
    /// instead of the in-memory one.
    pub fn token_provider(mut self, provider: Arc<dyn TokenProvider>) -> Self {
        self.tokens = Some(provider);
        self
    }

    /// Use this provider of the old API's token (the directory calls) instead of the
    /// in-memory one fetching `GET /gettoken`.
    pub fn oapi_token_provider(mut self, provider: Arc<dyn TokenProvider>) -> Self {
        self.oapi_tokens = Some(provider);
        self
    }

    /// Retry policy, of API calls and of the built-in token provider's requests. Default:
    /// 4 attempts, 200 ms doubling to 5 s, 1 s after rate limits. Its
    /// [`throttle_delay`](RetryPolicy::throttle_delay) is also how long a throttling answer
    /// pauses every call of the app.
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// Whole-request timeout, of API calls and of the built-in token provider's requests.
    /// Default: 10 s.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Connection timeout of the built-in HTTP client. Default: 5 s.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// `User-Agent` of the built-in HTTP client.
    pub fn user_agent(mut self, ua: impl Into<String>) -> Self {
        self.user_agent = ua.into();
        self
    }

    /// The app's call budget (default [`CallBudget::default`]: 20 calls a second per API,
    /// 5,000 a month, half of them for background calls). See [`budget`].
    pub fn budget(mut self, budget: CallBudget) -> Self {
        self.budget = budget;
        self
    }

    /// The clock the monthly count follows, in Unix milliseconds (default: the system time),
    /// so a test can move into the next month.
    pub fn budget_clock(mut self, clock: BudgetClock) -> Self {
        self.budget_clock = Some(clock);
        self
    }

    /// Counters the app's monthly count is kept in, shared with every other process calling
    /// DingTalk as this app (the replicas of a server), so the month's limits hold for the
    /// app rather than for each process. See [`SharedCounters`].
    pub fn shared_counters(mut self, counters: Arc<dyn SharedCounters>) -> Self {
        self.shared_counters = Some(counters);
        self
    }

    /// Builds the client.
    ///
    /// # Errors
    /// [`Error::Config`] for a base URL that is not http(s), an HTTP client that cannot be
    /// built, or a budget with a QPS of 0 or a background share outside `[0, 1]`.
    pub fn build(self) -> Result<DingTalkClient> {
        transport::check_base(&self.api_base)?;
        transport::check_base(&self.oapi_base)?;
        self.budget
            .validate()
            .map_err(|reason| Error::Config { reason })?;
        let budget = Budget::new(
            self.budget,
            self.credentials.client_id(),
            self.budget_clock.unwrap_or_else(budget::system_clock),
            self.shared_counters,
        );
        let http = match self.http {
            Some(http) => http,
            None => transport::http_client(self.connect_timeout, &self.user_agent)?,
        };
        let tokens = self.tokens.unwrap_or_else(|| {
            Arc::new(
                CachedTokenProvider::new(http.clone(), &self.api_base, self.credentials.clone())
                    .timeout(self.timeout)
                    .retry(self.retry),
            )
        });
        let oapi_tokens = self.oapi_tokens.unwrap_or_else(|| {
            Arc::new(
                CachedTokenProvider::oapi(http.clone(), &self.oapi_base, self.credentials.clone())
                    .timeout(self.timeout)
                    .retry(self.retry),
            )
        });
        Ok(DingTalkClient {
            inner: Arc::new(Inner {
                http,
                api_base: self.api_base,
                oapi_base: self.oapi_base,
                credentials: self.credentials,
                tokens,
                oapi_tokens,
                retry: self.retry,
                timeout: self.timeout,
                budget,
            }),
            priority: Priority::Foreground,
        })
    }
}

/// How to send one API call.
#[derive(Debug, Clone)]
pub(crate) struct Op {
    pub(crate) name: &'static str,
    pub(crate) method: Method,
    /// The v1.0 API or the old one.
    pub(crate) host: Host,
    pub(crate) path: &'static str,
    /// Safe to repeat: reads. Writes are retried only after rate limits, which DingTalk
    /// rejects before acting.
    pub(crate) idempotent: bool,
    /// Whether the call counts toward the org's monthly quota.
    pub(crate) metering: Metering,
}

/// Which API an [`Op`] calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Host {
    /// `api.dingtalk.com` (v1.0): errors as non-2xx statuses, the token in a header.
    Api,
    /// `oapi.dingtalk.com` (old API): errors as HTTP 200 with an `errcode`, the token in the
    /// `access_token` query parameter.
    Oapi,
}

/// Whose token a call carries.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Bearer<'a> {
    /// The app's token for the op's host; refreshed once after an authentication error.
    App,
    /// A signed-in user's token (v1.0 header); never refreshed here.
    User(&'a UserAccessToken),
    /// None: the call authenticates with its body (the user-token exchange).
    Nobody,
}

impl DingTalkClient {
    /// Starts a builder for the app with these credentials.
    pub fn builder(credentials: Credentials) -> DingTalkClientBuilder {
        DingTalkClientBuilder {
            credentials,
            api_base: DEFAULT_API_BASE.to_owned(),
            oapi_base: DEFAULT_OAPI_BASE.to_owned(),
            http: None,
            tokens: None,
            oapi_tokens: None,
            retry: RetryPolicy::default(),
            timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
            user_agent: transport::USER_AGENT.to_owned(),
            budget: CallBudget::default(),
            budget_clock: None,
            shared_counters: None,
        }
    }

    /// This client for background work (reconciliation, polling): the same HTTP client,
    /// token cache and budget, but its calls are [`Priority::Background`]: they stand aside
    /// for foreground calls and stop at the budget's background share of the month.
    pub fn background(&self) -> DingTalkClient {
        self.with_priority(Priority::Background)
    }

    /// This client with its calls at `priority` (sharing everything else).
    pub fn with_priority(&self, priority: Priority) -> DingTalkClient {
        DingTalkClient {
            inner: Arc::clone(&self.inner),
            priority,
        }
    }

    /// The priority of this client's calls.
    pub fn priority(&self) -> Priority {
        self.priority
    }

    /// The app's call budget.
    pub fn budget(&self) -> &CallBudget {
        self.inner.budget.config()
    }

    /// The app's calls this month (all clones together), e.g. for a console API. With
    /// [`shared_counters`](DingTalkClientBuilder::shared_counters), every process's calls as
    /// last seen by this one (when it last made a call or [`shared_usage`](Self::shared_usage)
    /// read them).
    pub fn usage(&self) -> BudgetUsage {
        self.inner.budget.usage()
    }

    /// [`usage`](Self::usage) after reading the shared counters (three reads), so the calls
    /// other processes made since this one's last call are in it. Without shared counters,
    /// the same as `usage`.
    pub async fn shared_usage(&self) -> BudgetUsage {
        self.inner.budget.refresh().await;
        self.inner.budget.usage()
    }

    /// The OA approval (workflow) API.
    pub fn workflow(&self) -> Workflow<'_> {
        Workflow::new(self)
    }

    /// Sign-in: the user-token exchange and the signed-in user's profile.
    pub fn oauth(&self) -> OAuth<'_> {
        OAuth::new(self)
    }

    /// The directory: users, departments and their parent chains (old API).
    pub fn contacts(&self) -> Contacts<'_> {
        Contacts::new(self)
    }

    /// The v1.0 API base URL in use.
    pub fn api_base(&self) -> &str {
        &self.inner.api_base
    }

    /// The old API base URL in use.
    pub fn oapi_base(&self) -> &str {
        &self.inner.oapi_base
    }

    /// The app's credentials (for the user-token exchange).
    pub(crate) fn credentials(&self) -> &Credentials {
        &self.inner.credentials
    }

    fn app_tokens(&self, host: Host) -> &Arc<dyn TokenProvider> {
        match host {
            Host::Api => &self.inner.tokens,
            Host::Oapi => &self.inner.oapi_tokens,
        }
    }

    /// Sends one call with the app's token. See [`send_as`](Self::send_as).
    pub(crate) async fn send<T: DeserializeOwned>(
        &self,
        op: Op,
        query: &[(&str, &str)],
        body: Option<&(impl Serialize + ?Sized)>,
    ) -> Result<T> {
        self.send_as(op, Bearer::App, query, body).await
    }

    /// Sends one call: within the budget (each attempt waits for the app's pause and a QPS
    /// slot, and is counted unless the API is exempt from the month;
    /// [`Error::BudgetExhausted`] once the month's budget is used), the bearer's token (v1.0
    /// header, or the old API's `access_token` query), JSON body, typed errors (the old API's
    /// `errcode` included), retries per the policy, one refresh-and-retry on an
    /// authentication error of the app's token, and [`Error::OutcomeUnknown`] for a
    /// non-idempotent call whose fate is unknown.
    pub(crate) async fn send_as<T: DeserializeOwned>(
        &self,
        op: Op,
        bearer: Bearer<'_>,
        query: &[(&str, &str)],
        body: Option<&(impl Serialize + ?Sized)>,
    ) -> Result<T> {
        let inner = &self.inner;
        let body = match body {
            Some(b) => Some(serde_json::to_vec(b).map_err(|e| Error::Config {
                reason: format!("{}: request does not serialize: {e}", op.name),
            })?),
            None => None,
        };
        let base = match op.host {
            Host::Api => &inner.api_base,
            Host::Oapi => &inner.oapi_base,
        };
        let url = format!("{base}{}", op.path);
        // Refused at once, before a token is fetched, when the month's budget is used.
        inner.budget.check(op.name, self.priority, op.metering)?;
        let mut refreshed = false;
        let mut attempt: u32 = 0;
        loop {
            attempt += 1;
            let app_token = match bearer {
                Bearer::App => Some(self.app_tokens(op.host).token().await?),
                Bearer::User(_) | Bearer::Nobody => None,
            };
            let secret = match (bearer, &app_token) {
                (Bearer::User(user), _) => Some(user.secret()),
                (_, Some(app)) => Some(app.secret()),
                _ => None,
            };
            inner.budget.acquire(op.name, self.priority, op.metering).await?;
            let mut request = inner
                .http
                .request(op.method.clone(), &url)
                .timeout(inner.timeout)
                .query(query);
            match (op.host, secret) {
                (Host::Api, Some(secret)) => {
                    let mut value = HeaderValue::from_str(secret).map_err(|_| Error::Config {
                        reason: "access token is not a valid header value".to_owned(),
                    })?;
                    value.set_sensitive(true);
                    request = request.header(TOKEN_HEADER, value);
                }
                (Host::Oapi, Some(secret)) => request = request.query(&[("access_token", secret)]),
                (_, None) => {}
            }
            if let Some(body) = &body {
                request = request
                    .header(CONTENT_TYPE, "application/json; charset=utf-8")
                    .body(body.clone());
            }
            let span = tracing::debug_span!("dingtalk_api", api = op.name, attempt);
            let answer = transport::execute(op.name, request)
                .instrument(span.clone())
                .await
                .and_then(|bytes| match op.host {
                    Host::Api => transport::decode(op.name, &bytes),
                    Host::Oapi => transport::decode_oapi(op.name, &bytes),
                });
            let error = match answer {
                Ok(value) => return Ok(value),
                Err(error) => error,
            };
            tracing::debug!(parent: &span, error = %error, kind = ?error.kind(), "DingTalk call failed");
            inner
                .budget
                .observe(op.name, &error, inner.retry.throttle_delay)
                .await;
            if let (ErrorKind::Auth, false, Some(token)) = (error.kind(), refreshed, &app_token) {
                refreshed = true;
                self.app_tokens(op.host).invalidate(token).await;
                continue;
            }
            let ambiguous = match &error {
                Error::Transport { sent, .. } => *sent,
                Error::Api { status, .. } => *status >= 500,
                _ => false,
            };
            if ambiguous && !op.idempotent {
                return Err(Error::OutcomeUnknown {
                    operation: op.name,
                    source: Box::new(error),
                });
            }
            match inner.retry.retry_delay(&error, attempt, op.idempotent) {
                Some(delay) => {
                    tracing::debug!(parent: &span, ?delay, "retrying DingTalk call");
                    tokio::time::sleep(delay).await;
                }
                None => return Err(error),
            }
        }
    }
}
