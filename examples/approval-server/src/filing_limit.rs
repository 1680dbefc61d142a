//! A per-device limit on new filings: at most `per_hour` in any sliding hour, so a device that
//! files, has its request decided and files again cannot fill the approvers' inbox. (Filing
//! while a request is open returns that request and is not counted.)
//!
//! The filings are counted in the store, not in this process: behind a load balancer every
//! replica sees the same count, and a restart does not reset it.

use sase_approval::engine::Engine;
use sase_approval::store::ListFilter;
use sase_policy::ids::{DeviceId, UserId};

const HOUR_MS: i64 = 3_600_000;

/// The per-device limit.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FilingLimit {
    per_hour: usize,
}

impl FilingLimit {
    pub(crate) fn new(per_hour: usize) -> Self {
        Self { per_hour }
    }

    /// Whether `device` (of `user`) may file now, or in how many seconds it may file again.
    ///
    /// # Errors
    /// The seconds to wait; or the store's error, as the engine's.
    pub(crate) async fn admit(
        self,
        engine: &Engine,
        user: &UserId,
        device: &DeviceId,
    ) -> Result<Result<(), u64>, sase_approval::Error> {
        let now_ms = engine.clock().now_ms();
        let mut filter = ListFilter::default().requester(user.clone());
        filter.created_from_ms = Some(now_ms - HOUR_MS + 1);
        let filed: Vec<i64> = engine
            .list(&filter)
            .await?
            .into_iter()
            .filter(|r| r.device == *device)
            .map(|r| r.created_at_ms)
            .collect();
        Ok(self.wait(&filed, now_ms))
    }

    /// Given the times of the device's filings in the last hour (oldest first), whether it
    /// may file at `now_ms`, or in how many seconds.
    fn wait(self, filed: &[i64], now_ms: i64) -> Result<(), u64> {
        if filed.len() < self.per_hour {
            return Ok(());
        }
        let oldest = filed.first().copied().unwrap_or(now_ms);
        let wait_ms = (oldest + HOUR_MS - now_ms).max(1_000);
        Err(u64::try_from(wait_ms / 1_000).unwrap_or(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sliding_hour() {
        let limit = FilingLimit::new(2);
        assert_eq!(limit.wait(&[], 0), Ok(()));
        assert_eq!(limit.wait(&[0], 1_000), Ok(()));
        assert_eq!(
            limit.wait(&[0, 1_000], 2_000),
            Err(3_598),
            "full: retry when the first leaves"
        );
        assert_eq!(
            limit.wait(&[1_000], HOUR_MS),
            Ok(()),
            "the first filing left the window"
        );
    }
}
