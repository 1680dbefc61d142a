//! The retry decision, as a pure function of the failure's kind, the attempt number and
//! whether the call is idempotent — unit-tested without a runtime.
//!
//! - Rate limits (403 `Forbidden.AccessDenied.Qps…`) are rejected before DingTalk acts, so
//!   every call may retry them, after the documented 1 s (plus jitter).
//! - Server errors and transport failures retry only idempotent calls (reads): a `500` or a
//!   timeout on `StartProcessInstance` may still have created the instance.
//! - Client and auth errors stop here (auth is refreshed-and-retried once by the client).

use crate::error::{Error, ErrorKind};
use crate::transport;
use std::time::Duration;

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Decision {
    /// Give up and return the error.
    Stop,
    /// Try again after this delay.
    Retry(Duration),
}

/// Retry budget and delays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetryPolicy {
    /// Total attempts, the first included (1 disables retries).
    pub max_attempts: u32,
    /// First backoff delay for server and transport errors; doubles per attempt.
    pub base_delay: Duration,
    /// Upper bound of any delay.
    pub max_delay: Duration,
    /// Delay after a rate limit (DingTalk documents "back off 1 s").
    pub throttle_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 4,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(5),
            throttle_delay: Duration::from_secs(1),
        }
    }
}

impl RetryPolicy {
    /// A policy with the given budget and delays.
    pub fn new(
        max_attempts: u32,
        base_delay: Duration,
        max_delay: Duration,
        throttle_delay: Duration,
    ) -> Self {
        Self {
            max_attempts,
            base_delay,
            max_delay,
            throttle_delay,
        }
    }

    /// No retries at all.
    pub fn none() -> Self {
        Self {
            max_attempts: 1,
            ..Self::default()
        }
    }

    /// Decides after attempt `attempt` (1-based) failed with `kind`. `jitter` in `[0, 1]`
    /// spreads concurrent callers (pass a random value; tests pass a fixed one).
    pub fn decide(&self, kind: ErrorKind, attempt: u32, idempotent: bool, jitter: f64) -> Decision {
        if attempt >= self.max_attempts {
            return Decision::Stop;
        }
        let jitter = jitter.clamp(0.0, 1.0);
        match kind {
            ErrorKind::Throttling => Decision::Retry(
                self.throttle_delay
                    .mul_f64(1.0 + jitter / 2.0)
                    .min(self.max_delay),
            ),
            ErrorKind::Server | ErrorKind::Transient if idempotent => Decision::Retry(transport::backoff(
                self.base_delay,
                self.max_delay,
                attempt,
                jitter,
            )),
            _ => Decision::Stop,
        }
    }

    /// The delay before retrying after `error` failed attempt `attempt`, with random jitter,
    /// or `None` to give up. A connection that never opened cannot have reached DingTalk, so it
    /// may be retried even for a call that is not idempotent.
    pub(crate) fn retry_delay(&self, error: &Error, attempt: u32, idempotent: bool) -> Option<Duration> {
        let safe = idempotent || matches!(error, Error::Transport { sent: false, .. });
        match self.decide(error.kind(), attempt, safe, rand::random::<f64>()) {
            Decision::Retry(delay) => Some(delay),
            Decision::Stop => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn decision_table() {
        let p = RetryPolicy::new(4, MS(100), MS(1000), MS(1000));
        // (kind, attempt, idempotent, jitter) -> decision
        let table = [
            (ErrorKind::Throttling, 1, false, 0.0, Decision::Retry(MS(1000))),
            (ErrorKind::Throttling, 3, true, 1.0, Decision::Retry(MS(1000))),
            (ErrorKind::Throttling, 4, true, 0.0, Decision::Stop),
            (ErrorKind::Server, 1, true, 1.0, Decision::Retry(MS(100))),
            (ErrorKind::Server, 2, true, 1.0, Decision::Retry(MS(200))),
            (ErrorKind::Server, 3, true, 0.0, Decision::Retry(MS(200))),
            (ErrorKind::Server, 1, false, 1.0, Decision::Stop),
            (ErrorKind::Transient, 1, true, 1.0, Decision::Retry(MS(100))),
            (ErrorKind::Transient, 1, false, 1.0, Decision::Stop),
            (ErrorKind::Client, 1, true, 0.5, Decision::Stop),
            (ErrorKind::Auth, 1, true, 0.5, Decision::Stop),
        ];
        for (kind, attempt, idempotent, jitter, expected) in table {
            assert_eq!(
                p.decide(kind, attempt, idempotent, jitter),
                expected,
                "{kind:?} #{attempt} idem={idempotent}"
            );
        }
    }

    #[test]
    fn delays_are_capped_and_none_never_retries() {
        let p = RetryPolicy::new(40, MS(100), MS(1000), MS(1000));
        assert_eq!(
            p.decide(ErrorKind::Server, 30, true, 1.0),
            Decision::Retry(MS(1000))
        );
        assert_eq!(
            RetryPolicy::none().decide(ErrorKind::Throttling, 1, true, 0.0),
            Decision::Stop
        );
    }
}
