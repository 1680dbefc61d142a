//! [`HttpConsume`]: the online step over HTTP, with a small blocking client.

use crate::consume::{Consume, ConsumeOutcome};
use crate::error::AgentError;
use sase_policy::SignedGrant;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::Duration;

/// The consume endpoint, under the server's base URL.
const CONSUME_PATH: &str = "/api/agent/grants/consume";

/// The largest answer read; the contract's answers are a few hundred bytes.
const MAX_ANSWER_BYTES: u64 = 64 * 1024;

/// Asks the approval server to consume grants: `POST {base}/api/agent/grants/consume` with
/// the device's bearer token and `{"grant": …}`, answered `200 {"consumed": true, …}`,
/// `409 {"error": "grant_revoked" | "grant_used" | …}` or `401 {"error": "unauthorized"}`.
///
/// 200 (with `consumed: true`) is [`ConsumeOutcome::Consumed`]; 409 or 410 is
/// [`ConsumeOutcome::Refused`] with the answer's `error` code; 401 is `Refused("unauthorized")`;
/// a connection failure, a timeout (5 s by default, for the whole exchange), 408, 429, a 5xx
/// or an answer that cannot be understood is [`ConsumeOutcome::Unreachable`]; any other
/// status is `Refused("http_<status>")`. Redirects are not followed. `Debug` never shows
/// the device token.
///
/// ```
/// use sase_agent::HttpConsume;
/// use std::time::Duration;
///
/// let server = HttpConsume::new("https://sase.example.com", "device-token")?.timeout(Duration::from_secs(3));
/// assert!(!format!("{server:?}").contains("device-token"));
/// # Ok::<(), sase_agent::AgentError>(())
/// ```
#[derive(Clone)]
pub struct HttpConsume {
    url: String,
    authorization: String,
    timeout: Duration,
    agent: ureq::Agent,
}

impl fmt::Debug for HttpConsume {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpConsume")
            .field("url", &self.url)
            .field("device_token", &"<redacted>")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

#[derive(Serialize)]
struct ConsumeBody<'a> {
    grant: &'a SignedGrant,
}

#[derive(Deserialize)]
struct Answer {
    #[serde(default)]
    consumed: bool,
    #[serde(default)]
    grant_id: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

impl HttpConsume {
    /// The default timeout for one consume call: 5 s.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

    /// A client for the server at `server_base_url` (e.g. `https://sase.example.com`),
    /// authenticating with the device's token.
    ///
    /// # Errors
    /// [`AgentError::Config`] when the URL is not an `http` or `https` URL.
    ///
    /// ```
    /// use sase_agent::HttpConsume;
    ///
    /// assert!(HttpConsume::new("https://sase.example.com/", "t").is_ok());
    /// assert!(HttpConsume::new("sase.example.com", "t").is_err());
    /// ```
    pub fn new(
        server_base_url: impl Into<String>,
        device_token: impl Into<String>,
    ) -> Result<Self, AgentError> {
        let base = server_base_url.into();
        let base = base.trim_end_matches('/');
        let url = format!("{base}{CONSUME_PATH}");
        let scheme_ok = base.starts_with("https://") || base.starts_with("http://");
        if !scheme_ok || url.parse::<ureq::http::Uri>().is_err() {
            return Err(AgentError::Config {
                reason: format!("the server URL `{base}` is not an http(s) URL"),
            });
        }
        Ok(Self {
            url,
            authorization: format!("Bearer {}", device_token.into()),
            timeout: Self::DEFAULT_TIMEOUT,
            agent: agent(Self::DEFAULT_TIMEOUT),
        })
    }

    /// Sets the timeout for one consume call (connection, request and answer together).
    ///
    /// ```
    /// use sase_agent::HttpConsume;
    /// use std::time::Duration;
    ///
    /// let server = HttpConsume::new("http://127.0.0.1:8080", "t")?.timeout(Duration::from_millis(500));
    /// # Ok::<(), sase_agent::AgentError>(())
    /// ```
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self.agent = agent(timeout);
        self
    }
}

fn agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::new_with_config(
        ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .http_status_as_error(false)
            .max_redirects(0)
            .build(),
    )
}

impl Consume for HttpConsume {
    fn consume(&self, grant: &SignedGrant) -> ConsumeOutcome {
        let sent = self
            .agent
            .post(&self.url)
            .header("authorization", &self.authorization)
            .send_json(ConsumeBody { grant });
        let mut response = match sent {
            Ok(response) => response,
            Err(e) => return ConsumeOutcome::Unreachable(e.to_string()),
        };
        let status = response.status().as_u16();
        let answer = response
            .body_mut()
            .with_config()
            .limit(MAX_ANSWER_BYTES)
            .read_json::<Answer>();
        outcome(status, answer.ok(), grant)
    }
}

/// The contract's mapping from an answer (status and, when it parsed, JSON body) to an
/// outcome.
fn outcome(status: u16, answer: Option<Answer>, grant: &SignedGrant) -> ConsumeOutcome {
    match status {
        200 => match answer {
            Some(a)
                if a.consumed
                    && a.grant_id
                        .as_deref()
                        .is_none_or(|id| id == grant.grant.id.as_str()) =>
            {
                ConsumeOutcome::Consumed
            }
            _ => ConsumeOutcome::Unreachable("HTTP 200 without a matching `consumed: true`".into()),
        },
        401 => ConsumeOutcome::Refused("unauthorized".into()),
        409 | 410 => ConsumeOutcome::Refused(
            answer
                .and_then(|a| a.error)
                .unwrap_or_else(|| "grant_refused".into()),
        ),
        408 | 429 | 500..=599 => ConsumeOutcome::Unreachable(format!("HTTP {status}")),
        _ => ConsumeOutcome::Refused(format!("http_{status}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sase_policy::ids::{DeviceId, GrantId, UserId};
    use sase_policy::{Action, Grant, GrantSigner};

    fn grant() -> SignedGrant {
        GrantSigner::from_bytes(&[3; 32]).sign(Grant {
            id: GrantId::new("g-1"),
            user: UserId::new("u"),
            device: DeviceId::new("d"),
            action: Action::Uninstall,
            issued_at_ms: 0,
            expires_at_ms: 1,
            request_id: None,
        })
    }

    fn answer(json: &str) -> Option<Answer> {
        serde_json::from_str(json).ok()
    }

    #[test]
    fn the_contract() {
        let g = grant();
        let cases: [(u16, Option<Answer>, ConsumeOutcome); 9] = [
            (
                200,
                answer(r#"{"consumed":true,"grant_id":"g-1"}"#),
                ConsumeOutcome::Consumed,
            ),
            (200, answer(r#"{"consumed":true}"#), ConsumeOutcome::Consumed),
            (
                200,
                answer(r#"{"consumed":true,"grant_id":"other"}"#),
                ConsumeOutcome::Unreachable("HTTP 200 without a matching `consumed: true`".into()),
            ),
            (
                200,
                None,
                ConsumeOutcome::Unreachable("HTTP 200 without a matching `consumed: true`".into()),
            ),
            (
                409,
                answer(r#"{"error":"grant_revoked","message":"m"}"#),
                ConsumeOutcome::Refused("grant_revoked".into()),
            ),
            (410, None, ConsumeOutcome::Refused("grant_refused".into())),
            (401, None, ConsumeOutcome::Refused("unauthorized".into())),
            (503, None, ConsumeOutcome::Unreachable("HTTP 503".into())),
            (404, None, ConsumeOutcome::Refused("http_404".into())),
        ];
        for (status, a, expected) in cases {
            assert_eq!(outcome(status, a, &g), expected, "HTTP {status}");
        }
    }
}
