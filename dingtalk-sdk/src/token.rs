//! Access tokens for the v1.0 API and for the old API (`oapi.dingtalk.com`, the directory
//! calls): fetched with the app's credentials, each from its own endpoint (whether one works
//! for the other is not confirmed), cached until shortly before they expire, refreshed by one
//! request however many callers need one at once, and dropped when DingTalk says they are
//! invalid.
//!
//! [`TokenProvider`] is the seam for deployments with several replicas: implement it over a
//! shared cache (Redis, a database) so the replicas do not each fetch their own token.

use crate::error::Result;
use crate::retry::RetryPolicy;
use crate::transport;
use async_trait::async_trait;
use serde::Deserialize;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// An app's credentials. `Debug` never shows the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    client_id: String,
    client_secret: String,
}

impl Credentials {
    /// Client ID (AppKey) and client secret (AppSecret) from the developer console.
    pub fn new(client_id: impl Into<String>, client_secret: impl Into<String>) -> Self {
        Self {
            client_id: client_id.into(),
            client_secret: client_secret.into(),
        }
    }

    /// The Client ID.
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    pub(crate) fn client_secret(&self) -> &str {
        &self.client_secret
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("client_id", &self.client_id)
            .field("client_secret", &"<redacted>")
            .finish()
    }
}

/// An access token and when to stop using it. `Debug` never shows the token.
#[derive(Clone, PartialEq, Eq)]
pub struct AccessToken {
    value: Arc<str>,
    refresh_at: Instant,
}

impl AccessToken {
    /// A token to use until `refresh_at`.
    pub fn new(value: impl Into<Arc<str>>, refresh_at: Instant) -> Self {
        Self {
            value: value.into(),
            refresh_at,
        }
    }

    /// The token, for the `x-acs-dingtalk-access-token` header.
    pub fn secret(&self) -> &str {
        &self.value
    }

    /// Whether it should be refreshed now.
    pub fn is_stale(&self) -> bool {
        Instant::now() >= self.refresh_at
    }
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessToken")
            .field("value", &"<redacted>")
            .field("refresh_at", &self.refresh_at)
            .finish()
    }
}

/// Supplies access tokens to the client.
#[async_trait]
pub trait TokenProvider: Send + Sync + fmt::Debug {
    /// A valid token, from the cache or freshly fetched.
    async fn token(&self) -> Result<AccessToken>;

    /// DingTalk rejected `token`: forget it (if it is still the cached one), so the next call
    /// to [`token`](Self::token) fetches a new one.
    async fn invalidate(&self, token: &AccessToken);
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TokenResponse {
    access_token: String,
    expire_in: u64,
}

/// The old API's token answer (`GET /gettoken`, PROTOCOL c.2).
#[derive(Deserialize)]
struct OapiTokenResponse {
    access_token: String,
    expires_in: u64,
}

/// Where a [`CachedTokenProvider`] fetches its token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    /// `POST /v1.0/oauth2/accessToken` with `{appKey, appSecret}`.
    V1,
    /// `GET /gettoken?appkey=&appsecret=` (old API, HTTP 200 with an `errcode`).
    Oapi,
}

/// The default provider: `POST /v1.0/oauth2/accessToken` ([`new`](Self::new)) or the old
/// API's `GET /gettoken` ([`oapi`](Self::oapi)), cached in memory.
///
/// Concurrent callers wait on one lock while the first fetches, so any number of them cause
/// exactly one token request. The token is refreshed 5 minutes before `expireIn` (as the
/// official Stream SDK does; half the lifetime for very short ones).
pub struct CachedTokenProvider {
    http: reqwest::Client,
    endpoint: Endpoint,
    url: String,
    credentials: Credentials,
    timeout: Duration,
    retry: RetryPolicy,
    cached: tokio::sync::Mutex<Option<AccessToken>>,
}

impl fmt::Debug for CachedTokenProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CachedTokenProvider")
            .field("endpoint", &self.endpoint)
            .field("url", &self.url)
            .field("credentials", &self.credentials)
            .field("timeout", &self.timeout)
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

impl CachedTokenProvider {
    /// A provider fetching from `api_base` (e.g. `https://api.dingtalk.com`), with a 10 s
    /// timeout per attempt and the default [`RetryPolicy`].
    pub fn new(http: reqwest::Client, api_base: &str, credentials: Credentials) -> Self {
        Self::at(
            http,
            Endpoint::V1,
            format!("{}/v1.0/oauth2/accessToken", transport::trim_base(api_base)),
            credentials,
        )
    }

    /// A provider of the old API's token, fetching `GET /gettoken` from `oapi_base` (e.g.
    /// `https://oapi.dingtalk.com`), with a 10 s timeout per attempt and the default
    /// [`RetryPolicy`]. The directory calls ([`contacts`](crate::contacts)) use it.
    pub fn oapi(http: reqwest::Client, oapi_base: &str, credentials: Credentials) -> Self {
        Self::at(
            http,
            Endpoint::Oapi,
            format!("{}/gettoken", transport::trim_base(oapi_base)),
            credentials,
        )
    }

    fn at(http: reqwest::Client, endpoint: Endpoint, url: String, credentials: Credentials) -> Self {
        Self {
            http,
            endpoint,
            url,
            credentials,
            timeout: Duration::from_secs(10),
            retry: RetryPolicy::default(),
            cached: tokio::sync::Mutex::new(None),
        }
    }

    /// Timeout of each token request. Callers wait on the one in flight, so this bounds how
    /// long a stalled token endpoint can hold all of them.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Retry policy of the token request (it is idempotent: server errors and timeouts are
    /// retried too).
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// Fetches a token, retrying per the policy.
    async fn fetch(&self) -> Result<AccessToken> {
        let mut attempt: u32 = 0;
        loop {
            attempt += 1;
            let error = match self.fetch_once().await {
                Ok(token) => return Ok(token),
                Err(error) => error,
            };
            match self.retry.retry_delay(&error, attempt, true) {
                Some(delay) => {
                    tracing::debug!(error = %error, attempt, ?delay, "retrying the access-token request");
                    tokio::time::sleep(delay).await;
                }
                None => return Err(error),
            }
        }
    }

    async fn fetch_once(&self) -> Result<AccessToken> {
        let (access_token, expire_in) = match self.endpoint {
            Endpoint::V1 => {
                const OPERATION: &str = "GetAccessToken";
                let body = serde_json::json!({
                    "appKey": self.credentials.client_id(),
                    "appSecret": self.credentials.client_secret(),
                });
                let request = self.http.post(&self.url).timeout(self.timeout).json(&body);
                let bytes = transport::execute(OPERATION, request).await?;
                let parsed: TokenResponse = transport::decode(OPERATION, &bytes)?;
                (parsed.access_token, parsed.expire_in)
            }
            Endpoint::Oapi => {
                const OPERATION: &str = "GetOapiAccessToken";
                let query = [
                    ("appkey", self.credentials.client_id()),
                    ("appsecret", self.credentials.client_secret()),
                ];
                let request = self.http.get(&self.url).timeout(self.timeout).query(&query);
                let bytes = transport::execute(OPERATION, request).await?;
                let parsed: OapiTokenResponse = transport::decode_oapi(OPERATION, &bytes)?;
                (parsed.access_token, parsed.expires_in)
            }
        };
        let lifetime = Duration::from_secs(expire_in);
        let margin = Duration::from_secs(300).min(lifetime / 2);
        tracing::debug!(expire_in, endpoint = ?self.endpoint, "fetched a DingTalk access token");
        Ok(AccessToken::new(access_token, Instant::now() + lifetime - margin))
    }
}

#[async_trait]
impl TokenProvider for CachedTokenProvider {
    async fn token(&self) -> Result<AccessToken> {
        let mut cached = self.cached.lock().await;
        if let Some(token) = cached.as_ref().filter(|t| !t.is_stale()) {
            return Ok(token.clone());
        }
        let fresh = self.fetch().await?;
        *cached = Some(fresh.clone());
        Ok(fresh)
    }

    async fn invalidate(&self, token: &AccessToken) {
        let mut cached = self.cached.lock().await;
        if cached.as_ref().is_some_and(|c| c.value == token.value) {
            *cached = None;
        }
    }
}
