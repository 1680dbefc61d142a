//! # sase-agent
//!
//! What an endpoint agent must do with a grant the approval server signed, as a small
//! synchronous library integrators can use or copy:
//!
//! 1. **Verify with pinned keys.** The verifying key(s) come from the agent's own
//!    configuration (written at enrollment), never from the server at verification time: a
//!    man-in-the-middle who serves its own key and its own grant is refused.
//! 2. **Against the agent's own user and device** (and the action it is about to take), not
//!    the ones the grant names: another device's genuine grant is refused.
//! 3. **Not expired, not already used** on this device: the used record is a file that
//!    survives restarts.
//! 4. **Consume online** ([`Consume`], `HttpConsume` with the default feature `http`): the
//!    server sees revocation and single use across devices.
//! 5. **Offline fallback only within a short window** after issue (5 minutes by default)
//!    when the server cannot be reached; the caller should log that revocation could not be
//!    checked ([`Authorization::Offline`]).
//!
//! Everything is synchronous (no async runtime). Without the `http` feature the crate has no
//! HTTP client: implement [`Consume`] over your own.
//!
//! ```
//! use sase_agent::{
//!     Action, AgentConfig, AgentVerifier, Authorization, Consume, ConsumeOutcome, DeviceId,
//!     GrantVerifier, SignedGrant, UserId,
//! };
//! # use sase_policy::{Grant, GrantSigner, ids::GrantId};
//!
//! /// The online step; in production, `HttpConsume::new(server_url, device_token)?`.
//! struct ServerSaysYes;
//! impl Consume for ServerSaysYes {
//!     fn consume(&self, _grant: &SignedGrant) -> ConsumeOutcome {
//!         ConsumeOutcome::Consumed
//!     }
//! }
//!
//! # let signer = GrantSigner::from_bytes(&[7; 32]);
//! # let public_key_hex = signer.verifier().to_hex();
//! # let now_ms = 1_700_000_000_000;
//! # let grant = signer.sign(Grant {
//! #     id: GrantId::new("g-1"),
//! #     user: UserId::new("u-1"),
//! #     device: DeviceId::new("d-1"),
//! #     action: Action::Uninstall,
//! #     issued_at_ms: now_ms,
//! #     expires_at_ms: now_ms + 600_000,
//! #     request_id: None,
//! # });
//! # let dir = std::env::temp_dir().join(format!("sase-agent-doc-{}", std::process::id()));
//! # std::fs::create_dir_all(&dir)?;
//! # let used_file = dir.join("used-grants.json");
//! # let _ = std::fs::remove_file(&used_file);
//! // The key pinned at enrollment, and this agent's own identity.
//! let key = GrantVerifier::from_hex(&public_key_hex)?;
//! let config = AgentConfig::new(vec![key], UserId::new("u-1"), DeviceId::new("d-1"), &used_file);
//! let mut agent = AgentVerifier::new(config)?;
//!
//! let authorization = agent.authorize(&grant, Action::Uninstall, now_ms, &ServerSaysYes)?;
//! if let Authorization::Offline { unreachable } = &authorization {
//!     eprintln!("the server could not be reached ({unreachable}): revocation was not checked");
//! }
//! println!("uninstall may proceed");
//! // The same grant is refused the second time, also after a restart.
//! assert!(agent.authorize(&grant, Action::Uninstall, now_ms, &ServerSaysYes).is_err());
//! # std::fs::remove_dir_all(&dir)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![cfg_attr(docsrs, feature(doc_cfg))]

mod consume;
mod error;
#[cfg(feature = "http")]
mod http;
mod record;
mod verifier;

pub use consume::{Consume, ConsumeOutcome};
pub use error::AgentError;
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub use http::HttpConsume;
pub use verifier::{AgentConfig, AgentVerifier, Authorization, DEFAULT_OFFLINE_WINDOW};

// The grant types an agent handles, so one dependency is enough.
pub use sase_policy::ids::{DeviceId, GrantId, UserId};
pub use sase_policy::{Action, GrantVerifier, SignedGrant};
