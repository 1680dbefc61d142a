//! What the integration tests share: one app's credentials and event-subscription keys, the
//! crypto built from them, the clock and the recorded vectors. Each test crate declares
//! `pub mod support;` (public, so items one crate does not use are not dead code there).

#![expect(clippy::unwrap_used, reason = "a broken fixture should fail the test at once")]

#[cfg(all(feature = "mock", feature = "axum", feature = "stream"))]
pub mod receivers;

use dingtalk_sdk::crypto::EventCrypto;
use serde_json::Value;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The app's Client ID (AppKey), which is also the receiver id events are encrypted for.
pub const APP_KEY: &str = "dingq5z1ybtkwcvhx7ab";
/// The app's Client secret.
pub const APP_SECRET: &str = "s3cr3t";
/// The event subscription's signature token.
pub const TOKEN: &str = "sase1token2cb";
/// The event subscription's `aes_key` (43 characters).
pub const AES_KEY: &str = "kYd8sJ2pQ7wE4rT9uV1xZ3cB6nM0aL5gH8jK2fD4sAx";
/// A process code in DingTalk's shape.
pub const PROCESS_CODE: &str = "PROC-9F2C1A7E-3B4D-4E5F-8A6B-1C2D3E4F5A6B";
/// How long a test waits for something asynchronous before failing.
pub const WAIT: Duration = Duration::from_secs(10);

/// The app's event crypto.
pub fn crypto() -> EventCrypto {
    EventCrypto::new(TOKEN, AES_KEY, APP_KEY).unwrap()
}

/// Now, as a 13-digit millisecond timestamp.
pub fn now_ms() -> String {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis()
        .to_string()
}

/// A recorded vector file of `tests/vectors/`.
pub fn vectors(name: &str) -> Value {
    let path = format!("{}/tests/vectors/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}
