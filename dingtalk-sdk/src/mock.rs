//! Test utilities: a mock DingTalk that behaves like the real one closely enough that code
//! passing against it works in production. Loopback only.
//!
//! - [`gateway`]: the Stream-mode gateway (connections/open, WebSocket frames, ACK records,
//!   redelivery of events not ACKed `SUCCESS`).

pub mod gateway;
