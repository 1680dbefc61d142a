//! # dingtalk-sdk
//!
//! A DingTalk (钉钉) SDK for OA approval integrations. It knows nothing of SASE.
//!
//! - [`crypto`]: event-subscription crypto ([`EventCrypto`](crypto::EventCrypto)) — verify
//!   signatures in constant time, decrypt, encrypt and sign replies. Synchronous, no runtime.
//! - [`event`]: typed events (`check_url`, `bpms_instance_change`, `bpms_task_change`, the
//!   contact changes `user_*_org` and `org_dept_*`, unknown kept raw), normalising HTTP push
//!   (current and historical) and Stream shapes.
//! - [`callback`]: a framework-agnostic HTTP-push callback handler with a replay window and a
//!   body-size limit and its own error type ([`CallbackError`](callback::CallbackError)); the
//!   `axum` feature adds a ready router.
//! - [`stream`]: Stream-mode wire frames and (feature `stream`) the supervising client.
//! - `client`, `token`, `retry` (feature `client`, on by default): `DingTalkClient` with
//!   cached single-flight access tokens, typed errors, rate-limit backoff and no blind retry
//!   of creates.
//! - [`budget`]: the per-app call budget the client keeps (DingTalk's per-API QPS and an
//!   org's monthly quota), with foreground and background priorities and a usage report.
//! - [`workflow`]: the OA approval API's wire types and (feature `client`) calls.
//! - [`oauth`]: sign-in with DingTalk — the authorize URL, the redirect back, and (feature
//!   `client`) the user-token exchange and the signed-in user's profile.
//! - [`contacts`]: the directory (users, departments, parent chains, paged user lists) on the
//!   old API, wire types and (feature `client`) calls.
//! - `mock` (feature `mock`): a mock DingTalk for tests, on loopback.
//!
//! ```
//! use dingtalk_sdk::callback::CallbackHandler;
//! use dingtalk_sdk::crypto::EventCrypto;
//! use dingtalk_sdk::event::Event;
//!
//! let crypto = EventCrypto::new("sase1token2cb", "kYd8sJ2pQ7wE4rT9uV1xZ3cB6nM0aL5gH8jK2fD4sAx", "dingq5z1ybtkwcvhx7ab")?;
//! // What DingTalk would send when the Request URL is saved:
//! let pushed = crypto.encrypt_reply(r#"{"EventType":"check_url"}"#, "1741699800123", "nX6slGXV")?;
//! let query = format!("signature={}&timestamp={}&nonce={}", pushed.msg_signature, pushed.time_stamp, pushed.nonce);
//! let body = format!(r#"{{"encrypt":"{}"}}"#, pushed.encrypt);
//!
//! let handler = CallbackHandler::builder(crypto).replay_window(None).build();
//! let outcome = handler.handle_raw(&query, body.as_bytes())?;
//! assert!(matches!(outcome.event, Event::CheckUrl(_)));
//! // Answer DingTalk with `serde_json::to_string(&outcome.reply)`.
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![cfg_attr(docsrs, feature(doc_cfg))]

#[macro_use]
mod wire_enum;

pub mod budget;
pub mod callback;
#[cfg(feature = "client")]
#[cfg_attr(docsrs, doc(cfg(feature = "client")))]
pub mod client;
pub mod contacts;
pub mod crypto;
mod error;
pub mod event;
mod ids;
#[cfg(feature = "mock")]
#[cfg_attr(docsrs, doc(cfg(feature = "mock")))]
pub mod mock;
pub mod oauth;
#[cfg(feature = "client")]
#[cfg_attr(docsrs, doc(cfg(feature = "client")))]
pub mod retry;
pub mod stream;
#[cfg(feature = "client")]
#[cfg_attr(docsrs, doc(cfg(feature = "client")))]
pub mod token;
#[cfg(any(feature = "client", feature = "stream"))]
mod transport;
pub mod workflow;

pub use error::{Error, ErrorKind, Result};
pub use ids::{CorpId, DeptId, ProcessCode, ProcessInstanceId, UnionId, UserId};
