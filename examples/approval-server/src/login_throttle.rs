//! Failed logins are limited per admin name: after [`FAILURES`] in a window of
//! [`WINDOW_MS`], the name is refused until the window ends, whatever the password, so a
//! password cannot be guessed at the rate the server can hash. Unknown names count the same
//! way as known ones (else the limit would tell which names exist). The failures are counted
//! in the store, so every replica sees the same count; a window's counters are deleted once
//! it is over ([`LoginThrottle::prune`]), and checking a name writes nothing, so names tried
//! by anyone cannot grow the store beyond one window's failures.

use sase_approval::clock::Clock;
use sase_approval::store::ApprovalStore;
use sase_approval::Error as StoreError;
use std::sync::Arc;

/// Failed logins a name may have in one window.
pub(crate) const FAILURES: u64 = 10;
/// The window: 15 minutes.
pub(crate) const WINDOW_MS: i64 = 15 * 60_000;

/// Where the counters live: `login_failures/<window, 20 digits>/<name>`, so the counters of
/// the windows before one sort before it.
const PREFIX: &str = "login_failures/";

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
            format!("{}{name}", window_prefix(window)),
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

    /// Deletes the counters of the windows that are over; returns how many.
    ///
    /// # Errors
    /// The store's.
    pub(crate) async fn prune(&self) -> Result<u64, StoreError> {
        let window = self.clock.now_ms().div_euclid(WINDOW_MS);
        self.store.remove_counters(PREFIX, &window_prefix(window)).await
    }
}

/// The start of the keys of `window`'s counters.
fn window_prefix(window: i64) -> String {
    format!("{PREFIX}{window:020}/")
}

#[cfg(test)]
mod tests {
    use super::*;
    use sase_approval::clock::ManualClock;
    use sase_approval::store::MemoryStore;

    /// How many failed-login counters the store held: it removes them (the store has no
    /// other count of them).
    async fn removed(store: &MemoryStore) -> u64 {
        store.remove_counters(PREFIX, "login_failures0").await.unwrap()
    }

    #[tokio::test]
    async fn names_tried_leave_counters_only_for_the_window_they_failed_in() {
        let store = Arc::new(MemoryStore::new());
        let clock = ManualClock::new(1_700_000_000_000);
        let throttle = LoginThrottle::new(store.clone(), Arc::new(clock.clone()));

        // Checking a name writes nothing, whoever sends it.
        for i in 0..100 {
            assert_eq!(throttle.admit(&format!("sprayed-{i}")).await.unwrap(), Ok(()));
        }
        assert_eq!(removed(&store).await, 0, "checks stored nothing");

        for i in 0..FAILURES {
            throttle.failed("eve").await.unwrap();
            throttle.failed(&format!("sprayed-{i}")).await.unwrap();
        }
        assert!(throttle.admit("eve").await.unwrap().is_err(), "eve is limited");
        assert_eq!(throttle.prune().await.unwrap(), 0, "the window is not over");
        assert!(
            throttle.admit("eve").await.unwrap().is_err(),
            "and eve still limited"
        );

        clock.advance(std::time::Duration::from_millis(WINDOW_MS.unsigned_abs()));
        throttle.failed("eve").await.unwrap();
        assert_eq!(
            throttle.prune().await.unwrap(),
            1 + FAILURES,
            "the past window's counters are deleted"
        );
        assert_eq!(removed(&store).await, 1, "the current window's one is kept");
    }
}
