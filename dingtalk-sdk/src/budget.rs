//! A per-app call budget: DingTalk's per-API QPS limit and an org's monthly call quota, kept by
//! the client itself (feature `client`) so an app stays inside them instead of learning about
//! them from 403s.
//!
//! DingTalk limits each app to 20 calls a second per API (403
//! `Forbidden.AccessDenied.QpsLimitForAppkeyAndApi`; the documented fix is to back off 1 s),
//! and a standard organisation to 5,000–10,000 calls a month (the two versions of the
//! documentation disagree; token, auth and contacts APIs are exempt). Once that quota is spent
//! (403 `Forbidden.AccessDenied.ApiCountLimitForOrg`) every call fails until the month ends, so
//! the budget keeps a share of it for the calls that matter.
//!
//! [`DingTalkClient`](crate::client::DingTalkClient) keeps one budget per client, shared by all
//! its clones:
//!
//! - **QPS**, per API (one operation: method and path): a call goes only while fewer than
//!   [`qps_per_api`](CallBudget::qps_per_api) calls to that API went in the last second (a
//!   sliding one-second window, so no one-second window ever holds more). A foreground call
//!   waits for a slot. A [`Priority::Background`] call waits too, and moreover goes only when
//!   no foreground call is waiting for that API and the last second holds fewer than half the
//!   API's slots: background work never delays a foreground call by more than the slots it
//!   leaves free, and never overtakes one that is waiting.
//! - **Month**: calls are counted when they are sent (each attempt, retries included; token
//!   requests, sign-in and contacts calls are not counted: DingTalk exempts them from the
//!   org's quota, so they are paced by QPS only) per calendar month in UTC, on the clock given to
//!   [`budget_clock`](crate::client::DingTalkClientBuilder::budget_clock) (the system time by
//!   default). A foreground call is refused, without a network call, once
//!   [`calls_per_month`](CallBudget::calls_per_month) calls were made this month; a background
//!   call once [`background_share`](CallBudget::background_share) of that many were made (by
//!   anyone), so reconciliation can never starve filings and console write-backs. Refusals are
//!   [`Error::BudgetExhausted`](crate::Error::BudgetExhausted).
//! - **DingTalk's answers win**: a 403 `QpsLimitForAppkeyAndApi` (or `QpsLimitForApi`) pauses
//!   every call of the app, all APIs, for the retry policy's
//!   [`throttle_delay`](crate::retry::RetryPolicy::throttle_delay) (1 s, as DingTalk
//!   documents); a 403 `ApiCountLimitForOrg` marks the month spent, whatever the count says.
//! - **Shared**: by default a client counts its own calls. Processes that call DingTalk as one
//!   app (the replicas of a server) give their clients the same
//!   [`SharedCounters`] (a database table), and the month's limits
//!   hold for the app: each call is counted there, against the limit, before it is sent, and
//!   DingTalk's quota answer to one process stops the others.
//! - **Visible**: [`DingTalkClient::usage`](crate::client::DingTalkClient::usage) returns a
//!   [`BudgetUsage`] (serialisable, for a console API); a warning is logged once a month when
//!   80 % of the monthly budget is used, and an info line when a new month starts.
//!
//! ```
//! # #[cfg(feature = "client")] {
//! use dingtalk_sdk::budget::{CallBudget, Priority};
//! use dingtalk_sdk::client::DingTalkClient;
//! use dingtalk_sdk::token::Credentials;
//! use std::sync::Arc;
//!
//! let client = DingTalkClient::builder(Credentials::new("dingappkey", "app-secret"))
//!     // An org whose quota is 10,000 calls; reconciliation may use a fifth of it.
//!     .budget(CallBudget::default().calls_per_month(Some(10_000)).background_share(0.2))
//!     // 2026-12-15T10:00:00Z, for the example; the system time by default.
//!     .budget_clock(Arc::new(|| 1_797_328_800_000))
//!     .build()?;
//! // Filings and console write-backs use `client`; the reconciliation loop uses:
//! let reconciler = client.background();
//! assert_eq!(reconciler.priority(), Priority::Background);
//!
//! let usage = client.usage(); // shared by both
//! assert_eq!((usage.month.as_str(), usage.calls, usage.limit), ("2026-12", 0, Some(10_000)));
//! assert_eq!(usage.background_limit, Some(2_000));
//! println!("{}", serde_json::to_string(&usage)?);
//! # }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use serde::Serialize;
use std::fmt;
use std::sync::Arc;

/// The clock of the monthly count: milliseconds since the Unix epoch. Inject one to simulate
/// a month in tests; the default reads the system time.
pub type BudgetClock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// How many calls an app may make. The defaults are safe for a standard organisation.
///
/// ```
/// use dingtalk_sdk::budget::CallBudget;
///
/// let budget = CallBudget::default();
/// assert_eq!((budget.qps_per_api, budget.calls_per_month), (Some(20), Some(5_000)));
/// let paid_org = CallBudget::default().calls_per_month(None);
/// assert_eq!(paid_org.calls_per_month, None);
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct CallBudget {
    /// Calls per second to one API (default 20, DingTalk's per-app, per-API limit); `None`
    /// sends without pacing.
    pub qps_per_api: Option<u32>,
    /// Calls per calendar month (UTC) of all APIs but the token (default 5,000, the lower of
    /// the documented standard-org quotas); `None` counts without limit.
    pub calls_per_month: Option<u64>,
    /// The share of `calls_per_month` that background calls may use, counting every call of
    /// the month (default 0.5): once that many calls were made, only foreground calls go.
    pub background_share: f64,
}

impl Default for CallBudget {
    fn default() -> Self {
        Self {
            qps_per_api: Some(20),
            calls_per_month: Some(5_000),
            background_share: 0.5,
        }
    }
}

impl CallBudget {
    /// No QPS pacing and no monthly limit: calls are still counted (and DingTalk's throttling
    /// answers still pause the app). For tests, and for orgs whose quota is unlimited.
    pub fn unlimited() -> Self {
        Self {
            qps_per_api: None,
            calls_per_month: None,
            background_share: 1.0,
        }
    }

    /// Sets [`qps_per_api`](Self::qps_per_api).
    pub fn qps_per_api(mut self, qps: Option<u32>) -> Self {
        self.qps_per_api = qps;
        self
    }

    /// Sets [`calls_per_month`](Self::calls_per_month).
    pub fn calls_per_month(mut self, calls: Option<u64>) -> Self {
        self.calls_per_month = calls;
        self
    }

    /// Sets [`background_share`](Self::background_share), in `[0, 1]`.
    pub fn background_share(mut self, share: f64) -> Self {
        self.background_share = share;
        self
    }

    /// How many of a month's calls background calls may use: `background_share ·
    /// calls_per_month`, rounded down (`None` without a monthly limit).
    pub fn background_limit(&self) -> Option<u64> {
        self.calls_per_month
            .map(|limit| (limit as f64 * self.background_share.clamp(0.0, 1.0)).floor() as u64)
    }

    /// How many of an API's per-second slots background calls may fill: half, rounded up.
    #[cfg(feature = "client")]
    fn background_slots(qps: u32) -> usize {
        (qps as usize).div_ceil(2)
    }

    /// Checks the values: a QPS of 0 and a share outside `[0, 1]` are configuration errors.
    #[cfg(feature = "client")]
    pub(crate) fn validate(&self) -> Result<(), String> {
        if self.qps_per_api == Some(0) {
            return Err("budget: qps_per_api must be at least 1 (or None for no pacing)".to_owned());
        }
        if !(0.0..=1.0).contains(&self.background_share) {
            return Err(format!(
                "budget: background_share {} is not in [0, 1]",
                self.background_share
            ));
        }
        Ok(())
    }
}

/// Who a call is for: foreground calls (filings, console write-backs) come first; background
/// calls (reconciliation, polling) use what they leave. See the [module docs](self).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Priority {
    /// A call someone is waiting for (the default).
    #[default]
    Foreground,
    /// A call that can wait or be skipped (reconciliation).
    Background,
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Priority::Foreground => "foreground",
            Priority::Background => "background",
        })
    }
}

/// The app's calls this month, for a console API (`Serialize`) or a log line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[non_exhaustive]
pub struct BudgetUsage {
    /// The calendar month (UTC) counted, `YYYY-MM`.
    pub month: String,
    /// Calls sent this month (attempts, retries included; token requests excluded).
    pub calls: u64,
    /// Of which foreground.
    pub foreground: u64,
    /// Of which background.
    pub background: u64,
    /// Calls the budget refused this month, without sending them.
    pub refused: u64,
    /// DingTalk's throttling answers (403 `…QpsLimit…`) this month.
    pub throttled: u64,
    /// The monthly limit (`None`: unlimited).
    pub limit: Option<u64>,
    /// The calls background calls may use this month.
    pub background_limit: Option<u64>,
    /// No foreground call will be sent this month: the limit is reached, or DingTalk said
    /// the org's quota is spent.
    pub exhausted: bool,
}

/// Counters shared by every process that calls DingTalk as one app (the replicas of a server),
/// so that the monthly count is the app's, not one process's. Without them each client counts
/// only its own calls.
///
/// Keys are chosen by the budget: `dingtalk/{client_id}/{YYYY-MM}/calls` (every call, the
/// count both monthly limits apply to), `…/background` and `…/quota_spent` (DingTalk's
/// `ApiCountLimitForOrg` answers). A counter that does not exist is 0.
///
/// A call is counted in the shared counter before it is sent, atomically against the limit
/// (at most `limit` calls a month across every process). A failing counter is logged and the
/// client goes on with its own count rather than stop calling DingTalk.
///
/// ```
/// # #[cfg(feature = "client")] {
/// use async_trait::async_trait;
/// use dingtalk_sdk::budget::{CounterAdd, SharedCounters};
/// use std::collections::HashMap;
/// use std::sync::Mutex;
///
/// /// One process's counters, for the example; a server keeps them in its database.
/// #[derive(Debug, Default)]
/// struct InMemory(Mutex<HashMap<String, u64>>);
///
/// #[async_trait]
/// impl SharedCounters for InMemory {
///     async fn add(
///         &self,
///         key: &str,
///         delta: u64,
///         limit: Option<u64>,
///     ) -> Result<CounterAdd, Box<dyn std::error::Error + Send + Sync>> {
///         let mut counters = self.0.lock().map_err(|_| "poisoned")?;
///         let value = counters.entry(key.to_owned()).or_default();
///         let added = limit.is_none_or(|limit| *value + delta <= limit);
///         if added {
///             *value += delta;
///         }
///         Ok(CounterAdd { value: *value, added })
///     }
/// }
/// # }
/// ```
#[cfg(feature = "client")]
#[async_trait::async_trait]
pub trait SharedCounters: Send + Sync + fmt::Debug {
    /// Adds `delta` to counter `key` unless that would take it over `limit` (`None`: no
    /// limit), atomically among every process sharing the counters; answers the value after,
    /// and whether `delta` was added. A `delta` of 0 reads the counter.
    ///
    /// # Errors
    /// The counters cannot be reached; the budget logs it and counts locally.
    async fn add(
        &self,
        key: &str,
        delta: u64,
        limit: Option<u64>,
    ) -> std::result::Result<CounterAdd, Box<dyn std::error::Error + Send + Sync>>;
}

/// What [`SharedCounters::add`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CounterAdd {
    /// The counter's value after the call.
    pub value: u64,
    /// Whether the delta was added (`false`: it would have passed the limit).
    pub added: bool,
}

/// Whether an API's calls count toward the org's monthly quota. Every API is paced by QPS;
/// token, auth and contacts APIs are exempt from the month (PROTOCOL e.1).
#[cfg(feature = "client")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Metering {
    /// Paced and counted toward the month (the workflow API).
    Monthly,
    /// Paced only: the month neither counts nor refuses it (sign-in, contacts).
    QpsOnly,
}

/// A calendar month in UTC.
#[cfg(feature = "client")]
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Month {
    year: i64,
    month: u32,
}

#[cfg(feature = "client")]
impl Month {
    /// The UTC calendar month of a Unix time in milliseconds (proleptic Gregorian calendar;
    /// H. Hinnant's `civil_from_days`).
    pub(crate) fn of_unix_ms(ms: i64) -> Self {
        let z = ms.div_euclid(86_400_000) + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + i64::from(month <= 2);
        Self {
            year,
            month: u32::try_from(month).unwrap_or(1),
        }
    }
}

#[cfg(feature = "client")]
impl fmt::Display for Month {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

#[cfg(feature = "client")]
pub(crate) use engine::Budget;

#[cfg(feature = "client")]
mod engine {
    use super::{
        BudgetClock, BudgetUsage, CallBudget, CounterAdd, Metering, Month, Priority, SharedCounters,
    };
    use crate::error::{Error, ErrorKind, Result};
    use std::collections::{HashMap, VecDeque};
    use std::fmt;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
    use std::time::Duration;
    use tokio::time::Instant;

    /// DingTalk's answer when the org's monthly quota is spent.
    const MONTH_SPENT: &str = "Forbidden.AccessDenied.ApiCountLimitForOrg";
    const WINDOW: Duration = Duration::from_secs(1);
    /// How soon a background call looks again when it stood aside for a waiting foreground
    /// call although a slot was free (the foreground call is about to take it).
    const STAND_ASIDE: Duration = Duration::from_millis(10);

    /// One client's budget and its count, shared by the client's clones.
    pub(crate) struct Budget {
        config: CallBudget,
        client_id: String,
        clock: BudgetClock,
        state: Mutex<State>,
        /// The app's count shared with other processes, if any.
        counters: Option<Arc<dyn SharedCounters>>,
        /// The shared counters failed last time (logged once until they answer again).
        counters_failing: AtomicBool,
    }

    impl fmt::Debug for Budget {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("Budget")
                .field("config", &self.config)
                .field("counters", &self.counters)
                .finish_non_exhaustive()
        }
    }

    struct State {
        month: Month,
        calls: u64,
        foreground: u64,
        background: u64,
        refused: u64,
        throttled: u64,
        /// DingTalk answered `ApiCountLimitForOrg` this month.
        spent_by_dingtalk: bool,
        /// The 80 % warning was logged this month.
        warned: bool,
        /// Every call waits until then (after a throttling answer).
        paused_until: Option<Instant>,
        apis: HashMap<&'static str, Window>,
    }

    /// One API's last second.
    #[derive(Default)]
    struct Window {
        /// When the calls of the last second were let go, oldest first.
        sent: VecDeque<Instant>,
        /// Foreground calls waiting in [`Budget::acquire`] for this API.
        foreground_waiting: usize,
    }

    impl Window {
        fn prune(&mut self, now: Instant) {
            while self.sent.front().is_some_and(|t| *t + WINDOW <= now) {
                self.sent.pop_front();
            }
        }

        /// How long until fewer than `slots` calls are in the window (`None`: now).
        fn wait_for(&self, slots: usize, now: Instant) -> Option<Duration> {
            let len = self.sent.len();
            if len < slots {
                return None;
            }
            let oldest_blocking = self.sent.get(len - slots)?;
            Some((*oldest_blocking + WINDOW).saturating_duration_since(now))
        }
    }

    /// What a step of [`Budget::acquire`] decided.
    enum Step {
        Go,
        Wait(Duration),
        Refuse(Error),
    }

    /// What to log once the lock is released.
    #[derive(Default)]
    struct Notes {
        new_month: Option<(Month, Month, u64)>,
        warn_at: Option<(Month, u64, u64)>,
    }

    impl State {
        fn new(month: Month) -> Self {
            Self {
                month,
                calls: 0,
                foreground: 0,
                background: 0,
                refused: 0,
                throttled: 0,
                spent_by_dingtalk: false,
                warned: false,
                paused_until: None,
                apis: HashMap::new(),
            }
        }

        /// Starts counting `month` if the clock moved into it.
        fn roll(&mut self, month: Month, notes: &mut Notes) {
            if month != self.month {
                notes.new_month = Some((self.month, month, self.calls));
                let paused_until = self.paused_until.take();
                let apis = std::mem::take(&mut self.apis);
                *self = State {
                    paused_until,
                    apis,
                    ..State::new(month)
                };
            }
        }

        /// The refusal of a call now, if the month's budget does not allow it.
        fn refusal(&self, config: &CallBudget, operation: &'static str, priority: Priority) -> Option<Error> {
            let limit = match priority {
                Priority::Background => config.background_limit(),
                _ => config.calls_per_month,
            };
            let over = limit.is_some_and(|limit| self.calls >= limit);
            (self.spent_by_dingtalk || over).then(|| Error::BudgetExhausted {
                operation,
                month: self.month.to_string(),
                used: self.calls,
                limit,
                priority,
                reported_by_dingtalk: self.spent_by_dingtalk,
            })
        }

        fn step(
            &mut self,
            config: &CallBudget,
            operation: &'static str,
            priority: Priority,
            metering: Metering,
            now: Instant,
            notes: &mut Notes,
        ) -> Step {
            if metering == Metering::Monthly {
                if let Some(error) = self.refusal(config, operation, priority) {
                    self.refused += 1;
                    return Step::Refuse(error);
                }
            }
            match self.paused_until {
                Some(until) if until > now => return Step::Wait(until - now),
                Some(_) => self.paused_until = None,
                None => {}
            }
            if let Some(qps) = config.qps_per_api {
                let window = self.apis.entry(operation).or_default();
                window.prune(now);
                let wait = match priority {
                    Priority::Background if window.foreground_waiting > 0 => {
                        Some(window.wait_for(qps as usize, now).unwrap_or(STAND_ASIDE))
                    }
                    Priority::Background => window.wait_for(CallBudget::background_slots(qps), now),
                    _ => window.wait_for(qps as usize, now),
                };
                if let Some(wait) = wait {
                    return Step::Wait(wait.max(Duration::from_millis(1)));
                }
                window.sent.push_back(now);
            }
            if metering == Metering::Monthly {
                self.count(config, priority, notes);
            }
            Step::Go
        }

        fn count(&mut self, config: &CallBudget, priority: Priority, notes: &mut Notes) {
            self.calls += 1;
            match priority {
                Priority::Background => self.background += 1,
                _ => self.foreground += 1,
            }
            self.warn_if_near(config, notes);
        }

        /// Takes back a call [`count`](Self::count)ed but not sent.
        fn uncount(&mut self, priority: Priority) {
            self.calls = self.calls.saturating_sub(1);
            match priority {
                Priority::Background => self.background = self.background.saturating_sub(1),
                _ => self.foreground = self.foreground.saturating_sub(1),
            }
        }

        /// Takes in the shared counters' values (every process's calls, this one's included):
        /// counts only grow, so a value read before this process's latest call is ignored.
        fn merge(&mut self, config: &CallBudget, shared: Shared, notes: &mut Notes) {
            if let Some(calls) = shared.calls {
                self.calls = self.calls.max(calls);
            }
            if let Some(background) = shared.background {
                self.background = self.background.max(background);
            }
            self.foreground = self.calls.saturating_sub(self.background);
            if shared.quota_spent.is_some_and(|n| n > 0) {
                self.spent_by_dingtalk = true;
            }
            self.warn_if_near(config, notes);
        }

        fn warn_if_near(&mut self, config: &CallBudget, notes: &mut Notes) {
            if let Some(limit) = config.calls_per_month {
                if !self.warned && u128::from(self.calls) * 5 >= u128::from(limit) * 4 {
                    self.warned = true;
                    notes.warn_at = Some((self.month, self.calls, limit));
                }
            }
        }
    }

    /// Shared counter values read for one month (`None`: not read).
    #[derive(Default)]
    struct Shared {
        calls: Option<u64>,
        background: Option<u64>,
        quota_spent: Option<u64>,
    }

    /// Counts a foreground caller as waiting for an API while it lives, so background calls
    /// stand aside; dropped when the caller goes, is refused or gives up (is cancelled).
    struct Waiting<'a> {
        budget: &'a Budget,
        operation: &'static str,
    }

    impl<'a> Waiting<'a> {
        fn new(budget: &'a Budget, operation: &'static str) -> Self {
            budget
                .lock()
                .apis
                .entry(operation)
                .or_default()
                .foreground_waiting += 1;
            Self { budget, operation }
        }
    }

    impl Drop for Waiting<'_> {
        fn drop(&mut self) {
            if let Some(window) = self.budget.lock().apis.get_mut(self.operation) {
                window.foreground_waiting = window.foreground_waiting.saturating_sub(1);
            }
        }
    }

    impl Budget {
        pub(crate) fn new(
            config: CallBudget,
            client_id: &str,
            clock: BudgetClock,
            counters: Option<Arc<dyn SharedCounters>>,
        ) -> Self {
            let month = Month::of_unix_ms(clock());
            Self {
                config,
                client_id: client_id.to_owned(),
                clock,
                state: Mutex::new(State::new(month)),
                counters,
                counters_failing: AtomicBool::new(false),
            }
        }

        fn key(&self, month: Month, counter: &str) -> String {
            format!("dingtalk/{}/{month}/{counter}", self.client_id)
        }

        /// Adds to a shared counter; `None` when there are none or they failed (logged when
        /// they start failing and when they answer again).
        async fn add(
            &self,
            month: Month,
            counter: &str,
            delta: u64,
            limit: Option<u64>,
        ) -> Option<CounterAdd> {
            let counters = self.counters.as_ref()?;
            match counters.add(&self.key(month, counter), delta, limit).await {
                Ok(added) => {
                    if self.counters_failing.swap(false, Ordering::Relaxed) {
                        tracing::info!(client_id = %self.client_id, "the shared DingTalk call counters answer again");
                    }
                    Some(added)
                }
                Err(error) => {
                    if !self.counters_failing.swap(true, Ordering::Relaxed) {
                        tracing::warn!(
                            client_id = %self.client_id,
                            error = %error,
                            "the shared DingTalk call counters failed: counting this process's calls only"
                        );
                    }
                    None
                }
            }
        }

        /// Takes in shared values read for `month` (ignored once the month has moved on),
        /// first taking back a call of `taken_back` priority counted here and refused.
        fn merge(&self, month: Month, shared: Shared, taken_back: Option<Priority>) {
            let mut notes = Notes::default();
            {
                let mut state = self.lock();
                if state.month < month {
                    state.roll(month, &mut notes);
                }
                if state.month == month {
                    if let Some(priority) = taken_back {
                        state.uncount(priority);
                        state.refused += 1;
                    }
                    state.merge(&self.config, shared, &mut notes);
                }
            }
            self.log(notes);
        }

        /// Counts a call let go by [`acquire`](Self::acquire) in the shared counters, against
        /// the limit for `priority`: refused (and taken back here) when every process's calls
        /// together reached it, or another process heard that the org's quota is spent.
        async fn share(&self, month: Month, operation: &'static str, priority: Priority) -> Result<()> {
            let limit = match priority {
                Priority::Background => self.config.background_limit(),
                _ => self.config.calls_per_month,
            };
            if let Some(CounterAdd { value: 1.., .. }) = self.add(month, "quota_spent", 0, None).await {
                let shared = Shared {
                    calls: self.add(month, "calls", 0, None).await.map(|a| a.value),
                    background: None,
                    quota_spent: Some(1),
                };
                self.merge(month, shared, Some(priority));
                if let Some(error) = self.lock().refusal(&self.config, operation, priority) {
                    return Err(error);
                }
            }
            let Some(CounterAdd { value, added }) = self.add(month, "calls", 1, limit).await else {
                return Ok(());
            };
            if !added {
                let shared = Shared {
                    calls: Some(value),
                    ..Shared::default()
                };
                self.merge(month, shared, Some(priority));
                return Err(Error::BudgetExhausted {
                    operation,
                    month: month.to_string(),
                    used: value,
                    limit,
                    priority,
                    reported_by_dingtalk: false,
                });
            }
            let background = match priority {
                Priority::Background => self.add(month, "background", 1, None).await.map(|a| a.value),
                _ => None,
            };
            let shared = Shared {
                calls: Some(value),
                background,
                quota_spent: None,
            };
            self.merge(month, shared, None);
            Ok(())
        }

        /// Reads the shared counters into this process's view (nothing without them).
        pub(crate) async fn refresh(&self) {
            if self.counters.is_none() {
                return;
            }
            let month = self.month_now();
            let read = |counter| async move { self.add(month, counter, 0, None).await.map(|a| a.value) };
            let shared = Shared {
                calls: read("calls").await,
                background: read("background").await,
                quota_spent: read("quota_spent").await,
            };
            self.merge(month, shared, None);
        }

        pub(crate) fn config(&self) -> &CallBudget {
            &self.config
        }

        fn lock(&self) -> MutexGuard<'_, State> {
            self.state.lock().unwrap_or_else(PoisonError::into_inner)
        }

        fn month_now(&self) -> Month {
            Month::of_unix_ms((self.clock)())
        }

        fn log(&self, notes: Notes) {
            if let Some((from, to, calls)) = notes.new_month {
                tracing::info!(
                    client_id = %self.client_id,
                    from = %from,
                    month = %to,
                    calls_last_month = calls,
                    "new month: the DingTalk call budget starts again"
                );
            }
            if let Some((month, used, limit)) = notes.warn_at {
                tracing::warn!(
                    client_id = %self.client_id,
                    month = %month,
                    used,
                    limit,
                    "80 % of this month's DingTalk call budget is used"
                );
            }
        }

        /// Refuses a call at once, without waiting, if the month's budget does not allow it
        /// (before a token is fetched or anything is sent). Calls exempt from the month go.
        pub(crate) fn check(
            &self,
            operation: &'static str,
            priority: Priority,
            metering: Metering,
        ) -> Result<()> {
            if metering == Metering::QpsOnly {
                return Ok(());
            }
            let month = self.month_now();
            let mut notes = Notes::default();
            let refusal = {
                let mut state = self.lock();
                state.roll(month, &mut notes);
                let refusal = state.refusal(&self.config, operation, priority);
                if refusal.is_some() {
                    state.refused += 1;
                }
                refusal
            };
            self.log(notes);
            refusal.map_or(Ok(()), Err)
        }

        /// Waits until the app is not paused and `operation` has a slot for `priority`, then
        /// counts the call (unless exempt from the month), which the caller sends at once; or
        /// refuses it.
        pub(crate) async fn acquire(
            &self,
            operation: &'static str,
            priority: Priority,
            metering: Metering,
        ) -> Result<()> {
            let _waiting = (priority == Priority::Foreground).then(|| Waiting::new(self, operation));
            loop {
                let month = self.month_now();
                let mut notes = Notes::default();
                let step = {
                    let mut state = self.lock();
                    state.roll(month, &mut notes);
                    state.step(
                        &self.config,
                        operation,
                        priority,
                        metering,
                        Instant::now(),
                        &mut notes,
                    )
                };
                self.log(notes);
                match step {
                    Step::Go if metering == Metering::QpsOnly => return Ok(()),
                    Step::Go => return self.share(month, operation, priority).await,
                    Step::Refuse(error) => return Err(error),
                    Step::Wait(delay) => {
                        tracing::trace!(api = operation, %priority, ?delay, "waiting for the call budget");
                        tokio::time::sleep(delay).await;
                    }
                }
            }
        }

        /// Learns from DingTalk's answer: a throttling answer pauses every call of the app for
        /// `pause`; `ApiCountLimitForOrg` marks the month spent (for every process sharing
        /// the counters).
        pub(crate) async fn observe(&self, operation: &'static str, error: &Error, pause: Duration) {
            let Error::Api { code, .. } = error else {
                return;
            };
            let throttled = error.kind() == ErrorKind::Throttling;
            let spent = code == MONTH_SPENT;
            if !throttled && !spent {
                return;
            }
            let month = self.month_now();
            let mut notes = Notes::default();
            let used = {
                let mut state = self.lock();
                state.roll(month, &mut notes);
                if throttled {
                    state.throttled += 1;
                    let until = Instant::now() + pause;
                    state.paused_until = Some(state.paused_until.map_or(until, |t| t.max(until)));
                }
                if spent {
                    state.spent_by_dingtalk = true;
                }
                state.calls
            };
            self.log(notes);
            if throttled {
                tracing::warn!(
                    client_id = %self.client_id,
                    api = operation,
                    code = %code,
                    pause_ms = pause.as_millis() as u64,
                    "DingTalk throttled the app: every call waits"
                );
            } else {
                self.add(month, "quota_spent", 1, None).await;
                tracing::warn!(
                    client_id = %self.client_id,
                    api = operation,
                    month = %month,
                    used,
                    "DingTalk says the org's monthly call quota is spent: no call is sent until the month ends"
                );
            }
        }

        /// This month's count.
        pub(crate) fn usage(&self) -> BudgetUsage {
            let month = self.month_now();
            let mut notes = Notes::default();
            let usage = {
                let mut state = self.lock();
                state.roll(month, &mut notes);
                BudgetUsage {
                    month: state.month.to_string(),
                    calls: state.calls,
                    foreground: state.foreground,
                    background: state.background,
                    refused: state.refused,
                    throttled: state.throttled,
                    limit: self.config.calls_per_month,
                    background_limit: self.config.background_limit(),
                    exhausted: state.spent_by_dingtalk
                        || self.config.calls_per_month.is_some_and(|l| state.calls >= l),
                }
            };
            self.log(notes);
            usage
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        const DEC: Month = Month {
            year: 2026,
            month: 12,
        };

        fn budget(qps: u32, month: u64) -> CallBudget {
            CallBudget::default()
                .qps_per_api(Some(qps))
                .calls_per_month(Some(month))
        }

        fn go(step: Step) -> bool {
            matches!(step, Step::Go)
        }

        fn wait(step: Step) -> Option<Duration> {
            match step {
                Step::Wait(d) => Some(d),
                _ => None,
            }
        }

        #[test]
        fn a_window_lets_qps_calls_go_per_second_and_says_when_the_next_may() {
            let config = budget(3, 100);
            let mut state = State::new(DEC);
            let mut notes = Notes::default();
            let t0 = Instant::now();
            for _ in 0..3 {
                assert!(go(state.step(
                    &config,
                    "A",
                    Priority::Foreground,
                    Metering::Monthly,
                    t0,
                    &mut notes
                )));
            }
            let at = t0 + Duration::from_millis(400);
            assert_eq!(
                wait(state.step(
                    &config,
                    "A",
                    Priority::Foreground,
                    Metering::Monthly,
                    at,
                    &mut notes
                )),
                Some(Duration::from_millis(600))
            );
            // Another API has its own slots.
            assert!(go(state.step(
                &config,
                "B",
                Priority::Foreground,
                Metering::Monthly,
                at,
                &mut notes
            )));
            assert!(go(state.step(
                &config,
                "A",
                Priority::Foreground,
                Metering::Monthly,
                t0 + WINDOW,
                &mut notes
            )));
            assert_eq!(state.calls, 5);
        }

        #[test]
        fn background_uses_half_the_slots_and_stands_aside_for_waiting_foreground() {
            let config = budget(4, 100);
            let mut state = State::new(DEC);
            let mut notes = Notes::default();
            let t0 = Instant::now();
            for _ in 0..2 {
                assert!(go(state.step(
                    &config,
                    "A",
                    Priority::Background,
                    Metering::Monthly,
                    t0,
                    &mut notes
                )));
            }
            // Half of 4 slots are used: background waits, foreground goes.
            assert_eq!(
                wait(state.step(
                    &config,
                    "A",
                    Priority::Background,
                    Metering::Monthly,
                    t0,
                    &mut notes
                )),
                Some(WINDOW)
            );
            assert!(go(state.step(
                &config,
                "A",
                Priority::Foreground,
                Metering::Monthly,
                t0,
                &mut notes
            )));
            // A foreground caller waiting: background stands aside although a slot is free.
            let later = t0 + WINDOW;
            state.apis.entry("A").or_default().foreground_waiting = 1;
            assert_eq!(
                wait(state.step(
                    &config,
                    "A",
                    Priority::Background,
                    Metering::Monthly,
                    later,
                    &mut notes
                )),
                Some(STAND_ASIDE)
            );
            assert!(go(state.step(
                &config,
                "A",
                Priority::Foreground,
                Metering::Monthly,
                later,
                &mut notes
            )));
            state.apis.entry("A").or_default().foreground_waiting = 0;
            assert!(go(state.step(
                &config,
                "A",
                Priority::Background,
                Metering::Monthly,
                later,
                &mut notes
            )));
            assert_eq!((state.foreground, state.background), (2, 3));
        }

        #[test]
        fn the_month_refuses_background_at_its_share_and_foreground_at_the_limit() {
            let config = budget(100, 4).background_share(0.5);
            let mut state = State::new(DEC);
            let mut notes = Notes::default();
            let t0 = Instant::now();
            for _ in 0..2 {
                assert!(go(state.step(
                    &config,
                    "A",
                    Priority::Background,
                    Metering::Monthly,
                    t0,
                    &mut notes
                )));
            }
            let refused = state.step(
                &config,
                "A",
                Priority::Background,
                Metering::Monthly,
                t0,
                &mut notes,
            );
            assert!(matches!(
                refused,
                Step::Refuse(Error::BudgetExhausted {
                    used: 2,
                    limit: Some(2),
                    priority: Priority::Background,
                    reported_by_dingtalk: false,
                    ..
                })
            ));
            assert!(notes.warn_at.is_none());
            assert!(go(state.step(
                &config,
                "A",
                Priority::Foreground,
                Metering::Monthly,
                t0,
                &mut notes
            )));
            assert_eq!(notes.warn_at, None, "3 of 4 is 75 %");
            assert!(go(state.step(
                &config,
                "A",
                Priority::Foreground,
                Metering::Monthly,
                t0,
                &mut notes
            )));
            assert_eq!(notes.warn_at, Some((DEC, 4, 4)));
            assert!(matches!(
                state.step(
                    &config,
                    "A",
                    Priority::Foreground,
                    Metering::Monthly,
                    t0,
                    &mut notes
                ),
                Step::Refuse(_)
            ));
            assert_eq!(state.refused, 2);
            let jan = Month { year: 2027, month: 1 };
            state.roll(jan, &mut notes);
            assert_eq!(notes.new_month, Some((DEC, jan, 4)));
            assert_eq!((state.calls, state.refused, state.warned), (0, 0, false));
        }

        #[test]
        fn calls_exempt_from_the_month_are_paced_but_neither_counted_nor_refused() {
            let config = budget(2, 1);
            let mut state = State::new(DEC);
            let mut notes = Notes::default();
            let t0 = Instant::now();
            assert!(go(state.step(
                &config,
                "W",
                Priority::Foreground,
                Metering::Monthly,
                t0,
                &mut notes
            )));
            // The month is spent: a workflow call is refused, a contacts call goes...
            assert!(matches!(
                state.step(
                    &config,
                    "W",
                    Priority::Foreground,
                    Metering::Monthly,
                    t0,
                    &mut notes
                ),
                Step::Refuse(_)
            ));
            for _ in 0..2 {
                assert!(go(state.step(
                    &config,
                    "C",
                    Priority::Foreground,
                    Metering::QpsOnly,
                    t0,
                    &mut notes
                )));
            }
            // ...within its API's QPS, and without being counted.
            assert_eq!(
                wait(state.step(
                    &config,
                    "C",
                    Priority::Foreground,
                    Metering::QpsOnly,
                    t0,
                    &mut notes
                )),
                Some(WINDOW)
            );
            assert_eq!((state.calls, state.foreground, state.background), (1, 1, 0));
        }

        #[test]
        fn months_are_utc_calendar_months() {
            let cases = [
                (0, "1970-01"),
                (-1, "1969-12"),
                (951_782_400_000, "2000-02"),   // 2000-02-29T00:00:00Z
                (951_868_799_999, "2000-02"),   // 2000-02-29T23:59:59.999Z
                (951_868_800_000, "2000-03"),   // 2000-03-01T00:00:00Z
                (1_797_328_800_000, "2026-12"), // 2026-12-15T10:00:00Z
                (1_798_761_599_999, "2026-12"), // 2026-12-31T23:59:59.999Z
                (1_798_761_600_000, "2027-01"), // 2027-01-01T00:00:00Z
            ];
            for (ms, month) in cases {
                assert_eq!(Month::of_unix_ms(ms).to_string(), month, "{ms}");
            }
        }
    }
}

/// Now, in milliseconds since the Unix epoch: the default [`BudgetClock`].
#[cfg(feature = "client")]
pub(crate) fn system_clock() -> BudgetClock {
    Arc::new(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
    })
}
