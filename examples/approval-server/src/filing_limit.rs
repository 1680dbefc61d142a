//! A per-device limit on new filings: at most `per_hour` in any sliding hour, so a device that
//! files, has its request decided and files again cannot fill the approvers' inbox. (Filing
//! while a request is open returns that request and is not counted.)

use sase_policy::ids::DeviceId;
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

const HOUR_MS: i64 = 3_600_000;

/// The filings each device made in the last hour.
#[derive(Debug)]
pub(crate) struct FilingLimit {
    per_hour: usize,
    recent: Mutex<HashMap<DeviceId, VecDeque<i64>>>,
}

impl FilingLimit {
    pub(crate) fn new(per_hour: usize) -> Self {
        Self {
            per_hour,
            recent: Mutex::default(),
        }
    }

    /// Counts a filing by `device` at `now_ms`, or says in how many seconds it may file again.
    pub(crate) fn admit(&self, device: &DeviceId, now_ms: i64) -> Result<(), u64> {
        let mut recent = self
            .recent
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let times = recent.entry(device.clone()).or_default();
        while times.front().is_some_and(|&t| t <= now_ms - HOUR_MS) {
            times.pop_front();
        }
        if times.len() >= self.per_hour {
            let oldest = times.front().copied().unwrap_or(now_ms);
            let wait_ms = (oldest + HOUR_MS - now_ms).max(1_000);
            return Err(u64::try_from(wait_ms / 1_000).unwrap_or(1));
        }
        times.push_back(now_ms);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sliding_hour_per_device() {
        let limit = FilingLimit::new(2);
        let (a, b) = (DeviceId::new("a"), DeviceId::new("b"));
        assert_eq!(limit.admit(&a, 0), Ok(()));
        assert_eq!(limit.admit(&a, 1_000), Ok(()));
        assert_eq!(
            limit.admit(&a, 2_000),
            Err(3_598),
            "full: retry when the first leaves"
        );
        assert_eq!(limit.admit(&b, 2_000), Ok(()), "another device is not held back");
        assert_eq!(
            limit.admit(&a, HOUR_MS),
            Ok(()),
            "the first filing left the window"
        );
        assert!(limit.admit(&a, HOUR_MS + 1).is_err());
    }
}
