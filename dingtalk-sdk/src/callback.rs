//! A framework-agnostic HTTP-push callback handler.
//!
//! DingTalk POSTs `{"encrypt":"…"}` to the Request URL with `signature`, `timestamp` and `nonce`
//! in the query (some setups spell them `msg_signature` and `timeStamp`), and expects, within
//! 1,500 ms, HTTP 200 with the encrypted literal `success`:
//! `{"msg_signature":…,"timeStamp":…,"nonce":…,"encrypt":…}`.
//!
//! [`CallbackHandler::handle_raw`] takes the raw query and body (and
//! [`CallbackHandler::handle`] a parsed [`CallbackQuery`]) and returns the typed [`Event`] plus
//! that reply. It rejects, with a typed [`CallbackError`], oversized bodies, malformed or stale
//! timestamps (10-digit seconds and 13-digit milliseconds are both accepted), bad signatures
//! and malformed payloads. Any web framework can call it; the `axum` feature adds
//! [`axum::callback_route`].
//!
//! Do the real work *after* replying (or enqueue it): DingTalk treats a slow answer as a failed
//! push and documents no retry.

#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
pub mod axum;

use crate::crypto::{EncryptedMessage, EventCrypto};
use crate::error::Error;
use crate::event::Event;
use serde::Deserialize;
use std::borrow::Cow;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Why an HTTP push was rejected. [`status`](Self::status) is the HTTP status to answer and
/// [`code`](Self::code) a stable machine-readable code for the error body; neither the
/// message nor the source includes secrets.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CallbackError {
    /// A required query parameter is absent (`missing_parameter`, 400).
    #[error("missing query parameter `{name}`")]
    MissingParameter {
        /// The parameter's canonical name (`signature`, `timestamp` or `nonce`).
        name: &'static str,
    },
    /// The `timestamp` is neither 10-digit seconds nor 13-digit milliseconds
    /// (`bad_timestamp`, 400).
    #[error("timestamp `{value}` is neither 10-digit seconds nor 13-digit milliseconds")]
    BadTimestamp {
        /// The value received (it is not secret), truncated to 32 characters.
        value: String,
    },
    /// The `timestamp` lies outside the replay window (`stale_timestamp`, 401).
    #[error("timestamp is {skew_ms} ms away from now, outside the {window_ms} ms replay window")]
    StaleTimestamp {
        /// Absolute distance between the timestamp and now.
        skew_ms: u64,
        /// The configured window.
        window_ms: u64,
    },
    /// The body exceeds the size limit (`body_too_large`, 413).
    #[error("body of {len} bytes exceeds the {limit}-byte limit")]
    BodyTooLarge {
        /// The body length (at least `limit + 1` when the body was cut off while reading).
        len: usize,
        /// The configured limit.
        limit: usize,
    },
    /// The body is not `{"encrypt": "<base64>"}` (`bad_body`, 400).
    #[error("malformed callback body: {reason}")]
    BadBody {
        /// The parser's explanation.
        reason: String,
    },
    /// The signature does not match: not signed with the configured token
    /// (`bad_signature`, 401).
    #[error("signature mismatch: the request was not signed with the configured token")]
    BadSignature,
    /// The payload is correctly signed but does not decrypt: wrong `aes_key` or receiver id,
    /// or a malformed ciphertext (`receiver_id_mismatch` or `bad_payload`, 400).
    #[error("payload does not decrypt: {0}")]
    Decrypt(#[source] Error),
    /// The decrypted event is not the JSON DingTalk sends (`bad_event`, 400).
    #[error("decrypted event: {0}")]
    BadEvent(#[source] Error),
}

impl CallbackError {
    /// The HTTP status to answer.
    pub fn status(&self) -> u16 {
        match self {
            CallbackError::BodyTooLarge { .. } => 413,
            CallbackError::BadSignature | CallbackError::StaleTimestamp { .. } => 401,
            CallbackError::MissingParameter { .. }
            | CallbackError::BadTimestamp { .. }
            | CallbackError::BadBody { .. }
            | CallbackError::Decrypt(_)
            | CallbackError::BadEvent(_) => 400,
        }
    }

    /// A stable machine-readable code for the JSON error body.
    pub fn code(&self) -> &'static str {
        match self {
            CallbackError::MissingParameter { .. } => "missing_parameter",
            CallbackError::BadTimestamp { .. } => "bad_timestamp",
            CallbackError::StaleTimestamp { .. } => "stale_timestamp",
            CallbackError::BodyTooLarge { .. } => "body_too_large",
            CallbackError::BadBody { .. } => "bad_body",
            CallbackError::BadSignature => "bad_signature",
            CallbackError::Decrypt(Error::ReceiverIdMismatch { .. }) => "receiver_id_mismatch",
            CallbackError::Decrypt(_) => "bad_payload",
            CallbackError::BadEvent(_) => "bad_event",
        }
    }

    /// Sorts an error of [`EventCrypto::verify_and_decrypt`]: a signature mismatch is the
    /// sender's fault (401), anything after it a payload problem.
    fn from_crypto(error: Error) -> Self {
        match error {
            Error::BadSignature => CallbackError::BadSignature,
            other => CallbackError::Decrypt(other),
        }
    }
}

/// Default replay window: a push whose timestamp is further than this from now is rejected.
pub const DEFAULT_REPLAY_WINDOW: Duration = Duration::from_secs(300);
/// Default body-size limit. Real events are 0.5–4 KB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 64 * 1024;

/// The signed query parameters of a push.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CallbackQuery {
    /// `signature` (alias `msg_signature`).
    pub signature: String,
    /// `timestamp` (alias `timeStamp`): opaque to the signature; seconds or milliseconds.
    pub timestamp: String,
    /// `nonce`.
    pub nonce: String,
}

impl CallbackQuery {
    /// Builds a query from its three values.
    pub fn new(signature: impl Into<String>, timestamp: impl Into<String>, nonce: impl Into<String>) -> Self {
        Self {
            signature: signature.into(),
            timestamp: timestamp.into(),
            nonce: nonce.into(),
        }
    }

    /// Parses a raw (percent-encoded) query string such as
    /// `signature=…&timestamp=…&nonce=…`, accepting the `msg_signature` and `timeStamp`
    /// aliases. Unrelated parameters are ignored.
    ///
    /// # Errors
    /// [`CallbackError::MissingParameter`] naming the first absent parameter.
    pub fn parse(query: &str) -> Result<Self, CallbackError> {
        let [signature, timestamp, nonce] = query_values(query)?.map(Cow::into_owned);
        Ok(Self {
            signature,
            timestamp,
            nonce,
        })
    }
}

/// `[signature, timestamp, nonce]` of a raw query (see [`CallbackQuery::parse`]), borrowed
/// from it unless percent-decoding changed them.
fn query_values(query: &str) -> Result<[Cow<'_, str>; 3], CallbackError> {
    let (mut signature, mut timestamp, mut nonce) = (None, None, None);
    for (key, value) in form_urlencoded::parse(query.trim_start_matches('?').as_bytes()) {
        match key.as_ref() {
            "signature" => signature = Some(value),
            "msg_signature" => {
                signature.get_or_insert(value);
            }
            "timestamp" => timestamp = Some(value),
            "timeStamp" => {
                timestamp.get_or_insert(value);
            }
            "nonce" => nonce = Some(value),
            _ => {}
        }
    }
    let missing = |name| CallbackError::MissingParameter { name };
    Ok([
        signature.ok_or_else(|| missing("signature"))?,
        timestamp.ok_or_else(|| missing("timestamp"))?,
        nonce.ok_or_else(|| missing("nonce"))?,
    ])
}

/// A verified, decrypted push and the reply to send back.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct CallbackOutcome {
    /// The typed event.
    pub event: Event,
    /// The encrypted `success` reply, signed over the request's timestamp and nonce. Serialize
    /// it as the HTTP 200 JSON body.
    pub reply: EncryptedMessage,
}

/// Verifies and decrypts HTTP-push callbacks for one event subscription.
#[derive(Debug, Clone)]
pub struct CallbackHandler {
    crypto: EventCrypto,
    replay_window: Option<Duration>,
    max_body_bytes: usize,
}

/// Builder for [`CallbackHandler`].
#[derive(Debug, Clone)]
pub struct CallbackHandlerBuilder {
    handler: CallbackHandler,
}

impl CallbackHandlerBuilder {
    /// Pushes whose `timestamp` is further than `window` from now are rejected with
    /// [`CallbackError::StaleTimestamp`]; `None` disables the check. Default: 5 minutes.
    pub fn replay_window(mut self, window: Option<Duration>) -> Self {
        self.handler.replay_window = window;
        self
    }

    /// Bodies longer than `limit` bytes are rejected with [`CallbackError::BodyTooLarge`].
    /// Default: 64 KiB.
    pub fn max_body_bytes(mut self, limit: usize) -> Self {
        self.handler.max_body_bytes = limit;
        self
    }

    /// Finishes the handler.
    pub fn build(self) -> CallbackHandler {
        self.handler
    }
}

#[derive(Deserialize)]
struct Body<'a> {
    #[serde(borrow)]
    encrypt: Cow<'a, str>,
}

impl CallbackHandler {
    /// Starts a builder around the subscription's crypto.
    pub fn builder(crypto: EventCrypto) -> CallbackHandlerBuilder {
        CallbackHandlerBuilder {
            handler: CallbackHandler {
                crypto,
                replay_window: Some(DEFAULT_REPLAY_WINDOW),
                max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            },
        }
    }

    /// The subscription's crypto.
    pub fn crypto(&self) -> &EventCrypto {
        &self.crypto
    }

    /// The configured body-size limit.
    pub fn max_body_bytes(&self) -> usize {
        self.max_body_bytes
    }

    /// Handles one push against the system clock.
    ///
    /// # Errors
    /// See [`handle_at`](Self::handle_at).
    pub fn handle(&self, query: &CallbackQuery, body: &[u8]) -> Result<CallbackOutcome, CallbackError> {
        self.handle_at(query, body, SystemTime::now())
    }

    /// Handles one push as a web framework hands it over: the raw (percent-encoded) query
    /// string, as [`CallbackQuery::parse`] reads it, and the body; against the system clock.
    /// Query values are not copied.
    ///
    /// # Errors
    /// [`CallbackError::MissingParameter`], then as [`handle_at`](Self::handle_at).
    pub fn handle_raw(&self, query: &str, body: &[u8]) -> Result<CallbackOutcome, CallbackError> {
        let [signature, timestamp, nonce] = query_values(query)?;
        self.handle_parts(&signature, &timestamp, &nonce, body, SystemTime::now())
    }

    /// Handles one push as of `now`: size limit, timestamp window, body shape, signature
    /// (constant time), decryption and event parsing, in that order.
    ///
    /// # Errors
    /// [`CallbackError::BodyTooLarge`], [`CallbackError::BadTimestamp`],
    /// [`CallbackError::StaleTimestamp`], [`CallbackError::BadBody`],
    /// [`CallbackError::BadSignature`], [`CallbackError::Decrypt`] (any later error of
    /// [`EventCrypto::verify_and_decrypt`]), or [`CallbackError::BadEvent`].
    pub fn handle_at(
        &self,
        query: &CallbackQuery,
        body: &[u8],
        now: SystemTime,
    ) -> Result<CallbackOutcome, CallbackError> {
        self.handle_parts(&query.signature, &query.timestamp, &query.nonce, body, now)
    }

    fn handle_parts(
        &self,
        signature: &str,
        timestamp: &str,
        nonce: &str,
        body: &[u8],
        now: SystemTime,
    ) -> Result<CallbackOutcome, CallbackError> {
        if body.len() > self.max_body_bytes {
            return Err(CallbackError::BodyTooLarge {
                len: body.len(),
                limit: self.max_body_bytes,
            });
        }
        let sent_ms = timestamp_millis(timestamp)?;
        if let Some(window) = self.replay_window {
            let now_ms = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis());
            let skew_ms = u64::try_from(now_ms.abs_diff(u128::from(sent_ms))).unwrap_or(u64::MAX);
            let window_ms = u64::try_from(window.as_millis()).unwrap_or(u64::MAX);
            if skew_ms > window_ms {
                return Err(CallbackError::StaleTimestamp { skew_ms, window_ms });
            }
        }
        let body: Body<'_> = serde_json::from_slice(body).map_err(|e| CallbackError::BadBody {
            reason: e.to_string(),
        })?;
        let plaintext = self
            .crypto
            .verify_and_decrypt(signature, timestamp, nonce, &body.encrypt)
            .map_err(CallbackError::from_crypto)?;
        let event = Event::from_json(&plaintext).map_err(CallbackError::BadEvent)?;
        let reply = self.crypto.success_reply(timestamp, nonce);
        Ok(CallbackOutcome { event, reply })
    }
}

/// Reads a push timestamp: 10 digits are seconds, 13 digits milliseconds.
fn timestamp_millis(value: &str) -> Result<u64, CallbackError> {
    let bad = || CallbackError::BadTimestamp {
        value: value.chars().take(32).collect(),
    };
    if !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let n: u64 = value.parse().map_err(|_| bad())?;
    match value.len() {
        10 => Ok(n * 1000),
        13 => Ok(n),
        _ => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_in_seconds_and_millis() {
        assert_eq!(timestamp_millis("1741699800").ok(), Some(1_741_699_800_000));
        assert_eq!(timestamp_millis("1741699800123").ok(), Some(1_741_699_800_123));
        for bad in [
            "",
            "17416998001",
            "-741699800",
            "17416998001234",
            "1741699800.1",
            "+741699800",
        ] {
            assert!(
                matches!(timestamp_millis(bad), Err(CallbackError::BadTimestamp { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn raw_query_is_handled_like_a_parsed_one() -> Result<(), Box<dyn std::error::Error>> {
        let crypto = EventCrypto::new("token", "kYd8sJ2pQ7wE4rT9uV1xZ3cB6nM0aL5gH8jK2fD4sAx", "dingapp")?;
        let handler = CallbackHandler::builder(crypto.clone())
            .replay_window(None)
            .build();
        let event = r#"{"EventType":"bpms_instance_change","processInstanceId":"pi-1","type":"start"}"#;
        // A nonce that needs percent-encoding, and the `msg_signature` / `timeStamp` spelling.
        let sealed = crypto.encrypt_reply(event, "1741699800", "n/1+")?;
        let body = format!(r#"{{"encrypt":"{}"}}"#, sealed.encrypt);
        let raw = format!(
            "msg_signature={}&timeStamp=1741699800&nonce=n%2F1%2B",
            sealed.msg_signature
        );
        let from_raw = handler.handle_raw(&raw, body.as_bytes())?;
        let parsed = handler.handle(&CallbackQuery::parse(&raw)?, body.as_bytes())?;
        assert_eq!(format!("{:?}", from_raw.event), format!("{:?}", parsed.event));
        assert_eq!(from_raw.reply.nonce, "n/1+");
        assert!(matches!(
            handler.handle_raw("signature=a&timestamp=1741699800", body.as_bytes()),
            Err(CallbackError::MissingParameter { name: "nonce" })
        ));
        assert!(matches!(
            handler.handle_raw(&raw.replace("nonce=n%2F1%2B", "nonce=n1"), body.as_bytes()),
            Err(CallbackError::BadSignature)
        ));
        Ok(())
    }

    #[test]
    fn query_aliases_and_percent_decoding() -> Result<(), CallbackError> {
        let q = CallbackQuery::parse("?msg_signature=ab%2Fc&timeStamp=1741699800&nonce=n+1&x=y")?;
        assert_eq!(q, CallbackQuery::new("ab/c", "1741699800", "n 1"));
        // The canonical spelling wins over the alias, whatever the order.
        let q = CallbackQuery::parse("msg_signature=alias&signature=canon&timestamp=1&timeStamp=2&nonce=n")?;
        assert_eq!((q.signature.as_str(), q.timestamp.as_str()), ("canon", "1"));
        assert!(matches!(
            CallbackQuery::parse("signature=a&nonce=b"),
            Err(CallbackError::MissingParameter { name: "timestamp" })
        ));
        Ok(())
    }
}
