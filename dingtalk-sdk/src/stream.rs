//! Stream mode: DingTalk pushes events over a WebSocket the app opens, so a server behind NAT
//! needs no public Request URL.
//!
//! [`frame`] holds the wire frames (pure serde, no runtime).

pub mod frame;
