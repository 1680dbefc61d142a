//! Failed logins are limited per admin name: after [`FAILURES`] in a window of
//! [`WINDOW_MS`], the name is refused until the window ends, whatever the password, so a
//! password cannot be guessed at the rate the server can hash. Unknown names count the same
//! way as known ones (else the limit would tell which names exist). The failures are counted
//! in the store, so every replica sees the same count.

use sase_approval::clock::Clock;
use sase_approval::store::ApprovalStore;
use sase_approval::Error as StoreError;
use std::sync::Arc;

/// Failed logins a name may have in one window.
pub(crate) const FAILURES: u64 = 10;
/// The window: 15 minutes.
pub(crate) const WINDOW_MS: i64 = 15 * 60_000;

/// The failed logins of each name, in the store.
#[derive(Clone)]
pub(crate) struct LoginThrottle {
    store: Arc<dyn ApprovalStore>,
    clock: Arc<dyn Clock>,
}

impl LoginThrottle {
    pub(crate) fn new(store: Arc<dyn ApprovalStore>, clock: Arc<dyn Clock>) -> Self {
        Self { store, clock }
    }

    /// The counter of `name` in the current window, and the seconds until the window ends.
    fn window(&self, name: &str) -> (String, u64) {
        let now = self.clock.now_ms();
        let window = now.div_euclid(WINDOW_MS);
        let left_ms = (window + 1) * WINDOW_MS - now;
        (
            format!("login_failures/{window}/{name}"),
            u64::try_from((left_ms + 999) / 1_000).unwrap_or(1),
        )
    }

    /// `Ok` when `name` may try to log in now; else the seconds until it may.
    ///
    /// # Errors
    /// The store's.
    pub(crate) async fn admit(&self, name: &str) -> Result<Result<(), u64>, StoreError> {
        let (key, retry_after) = self.window(name);
        let failed = self.store.add_to_counter(&key, 0, None).await?.value;
        Ok(if failed >= FAILURES {
            Err(retry_after)
        } else {
            Ok(())
        })
    }

    /// Counts a failed login of `name`.
    ///
    /// # Errors
    /// The store's.
    pub(crate) async fn failed(&self, name: &str) -> Result<(), StoreError> {
        let (key, _) = self.window(name);
        self.store.add_to_counter(&key, 1, None).await.map(drop)
    }
}
