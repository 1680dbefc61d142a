//! # sase-dingtalk
//!
//! Facade over the SASE × DingTalk approval crate family:
//!
//! - [`dingtalk`] (`dingtalk-sdk`): talks to DingTalk — event crypto, typed events, HTTP-push
//!   callback handling. Knows nothing of SASE.
//! - [`policy`] (`sase-policy`): pure anti-uninstallation policy evaluation.
//! - [`approval`] (`sase-approval`): the approval engine composing the two.
//!
//! The approval server built on them is its own package, `sase-approval-server`
//! (`examples/approval-server`).
//!
//! ```
//! use sase_dingtalk::dingtalk::crypto::EventCrypto;
//!
//! let crypto = EventCrypto::new("token123", "kYd8sJ2pQ7wE4rT9uV1xZ3cB6nM0aL5gH8jK2fD4sAx", "dingappkey")?;
//! let reply = crypto.encrypt_reply("success", "1741703477235", "q9W8e7R6")?;
//! assert_eq!(reply.time_stamp, "1741703477235");
//! # Ok::<(), sase_dingtalk::dingtalk::Error>(())
//! ```

pub use dingtalk_sdk as dingtalk;
pub use sase_approval as approval;
pub use sase_policy as policy;

// The README's Rust snippets are compiled as doctests, so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
