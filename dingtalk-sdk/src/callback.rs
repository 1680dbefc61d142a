//! A framework-agnostic HTTP-push callback handler.
//!
//! DingTalk POSTs `{"encrypt":"…"}` to the Request URL with `signature`, `timestamp` and `nonce`
//! in the query (some setups spell them `msg_signature` and `timeStamp`), and expects, within
//! 1,500 ms, HTTP 200 with the encrypted literal `success`:
//! `{"msg_signature":…,"timeStamp":…,"nonce":…,"encrypt":…}`.
//!
//! [`CallbackHandler::handle_raw`] takes the raw query and body (and
//! [`CallbackHandler::handle`] a parsed [`CallbackQuery`]) and returns the typed [`Event`] plus
//! that reply. It rejects, with a typed [`Error`], oversized bodies, malformed or stale
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
use crate::error::{Error, Result};
use crate::event::Event;
use serde::Deserialize;
use std::borrow::Cow;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

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
    /// [`Error::MissingParameter`] naming the first absent parameter.
    pub fn parse(query: &str) -> Result<Self> {
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
fn query_values(query: &str) -> Result<[Cow<'_, str>; 3]> {
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
    let missing = |name| Error::MissingParameter { name };
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
    /// [`Error::StaleTimestamp`]; `None` disables the check. Default: 5 minutes.
    pub fn replay_window(mut self, window: Option<Duration>) -> Self {
        self.handler.replay_window = window;
        self
    }

    /// Bodies longer than `limit` bytes are rejected with [`Error::BodyTooLarge`].
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
    pub fn handle(&self, query: &CallbackQuery, body: &[u8]) -> Result<CallbackOutcome> {
        self.handle_at(query, body, SystemTime::now())
    }

    /// Handles one push as a web framework hands it over: the raw (percent-encoded) query
    /// string, as [`CallbackQuery::parse`] reads it, and the body; against the system clock.
    /// Query values are not copied.
    ///
    /// # Errors
    /// [`Error::MissingParameter`], then as [`handle_at`](Self::handle_at).
    pub fn handle_raw(&self, query: &str, body: &[u8]) -> Result<CallbackOutcome> {
        let [signature, timestamp, nonce] = query_values(query)?;
        self.handle_parts(&signature, &timestamp, &nonce, body, SystemTime::now())
    }

    /// Handles one push as of `now`: size limit, timestamp window, body shape, signature
    /// (constant time), decryption and event parsing, in that order.
    ///
    /// # Errors
    /// [`Error::BodyTooLarge`], [`Error::BadTimestamp`], [`Error::StaleTimestamp`],
    /// [`Error::BadBody`], [`Error::BadSignature`], any decryption error of
    /// [`EventCrypto::verify_and_decrypt`], or [`Error::BadEvent`].
    pub fn handle_at(&self, query: &CallbackQuery, body: &[u8], now: SystemTime) -> Result<CallbackOutcome> {
        self.handle_parts(&query.signature, &query.timestamp, &query.nonce, body, now)
    }

    fn handle_parts(
        &self,
        signature: &str,
        timestamp: &str,
        nonce: &str,
        body: &[u8],
        now: SystemTime,
    ) -> Result<CallbackOutcome> {
        if body.len() > self.max_body_bytes {
            return Err(Error::BodyTooLarge {
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
                return Err(Error::StaleTimestamp { skew_ms, window_ms });
            }
        }
        let body: Body<'_> = serde_json::from_slice(body).map_err(|e| Error::BadBody {
            reason: e.to_string(),
        })?;
        let plaintext = self
            .crypto
            .verify_and_decrypt(signature, timestamp, nonce, &body.encrypt)?;
        let event = Event::from_json(&plaintext)?;
        let reply = self.crypto.success_reply(timestamp, nonce);
        Ok(CallbackOutcome { event, reply })
    }
}

/// Reads a push timestamp: 10 digits are seconds, 13 digits milliseconds.
fn timestamp_millis(value: &str) -> Result<u64> {
    let bad = || Error::BadTimestamp {
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

/// The HTTP status a framework should answer for a rejected push, and a stable
/// machine-readable code for the JSON error body.
pub fn rejection(err: &Error) -> (u16, &'static str) {
    match err {
        Error::BodyTooLarge { .. } => (413, "body_too_large"),
        Error::BadSignature => (401, "bad_signature"),
        Error::StaleTimestamp { .. } => (401, "stale_timestamp"),
        Error::BadTimestamp { .. } => (400, "bad_timestamp"),
        Error::MissingParameter { .. } => (400, "missing_parameter"),
        Error::BadBody { .. } => (400, "bad_body"),
        Error::ReceiverIdMismatch { .. } => (400, "receiver_id_mismatch"),
        Error::BadEvent { .. } => (400, "bad_event"),
        _ => (400, "bad_payload"),
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
                matches!(timestamp_millis(bad), Err(Error::BadTimestamp { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn raw_query_is_handled_like_a_parsed_one() -> Result<()> {
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
            Err(Error::MissingParameter { name: "nonce" })
        ));
        assert!(matches!(
            handler.handle_raw(&raw.replace("nonce=n%2F1%2B", "nonce=n1"), body.as_bytes()),
            Err(Error::BadSignature)
        ));
        Ok(())
    }

    #[test]
    fn query_aliases_and_percent_decoding() -> Result<()> {
        let q = CallbackQuery::parse("?msg_signature=ab%2Fc&timeStamp=1741699800&nonce=n+1&x=y")?;
        assert_eq!(q, CallbackQuery::new("ab/c", "1741699800", "n 1"));
        // The canonical spelling wins over the alias, whatever the order.
        let q = CallbackQuery::parse("msg_signature=alias&signature=canon&timestamp=1&timeStamp=2&nonce=n")?;
        assert_eq!((q.signature.as_str(), q.timestamp.as_str()), ("canon", "1"));
        assert!(matches!(
            CallbackQuery::parse("signature=a&nonce=b"),
            Err(Error::MissingParameter { name: "timestamp" })
        ));
        Ok(())
    }
}
