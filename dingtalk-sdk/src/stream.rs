//! Stream mode: DingTalk pushes events over a WebSocket the app opens, so a server behind NAT
//! needs no public Request URL.
//!
//! - [`frame`]: the wire frames (pure serde, no runtime).
//! - `client` (feature `stream`): the supervising client that keeps a connection alive and
//!   hands events to an async handler.

#[cfg(feature = "stream")]
#[cfg_attr(docsrs, doc(cfg(feature = "stream")))]
pub mod client;
pub mod frame;
