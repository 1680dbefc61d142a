//! The per-app call budget over real HTTP on 127.0.0.1: a wiremock DingTalk answers the token
//! endpoint and two workflow APIs and records when each workflow request arrived; the client's
//! month follows an injected clock. Limits refuse calls without sending them, background calls
//! stop at their share and stand aside, a new month starts afresh, DingTalk's throttling answer
//! pauses the whole app and its quota answer ends the month, QPS holds in every one-second
//! window, and the 80 % warning is logged once.

#![expect(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "tests fail loudly on unexpected values"
)]

use dingtalk_sdk::budget::{BudgetClock, CallBudget, CounterAdd, Priority, SharedCounters};
use dingtalk_sdk::client::DingTalkClient;
use dingtalk_sdk::retry::RetryPolicy;
use dingtalk_sdk::token::Credentials;
use dingtalk_sdk::workflow::ListProcessInstanceIdsRequest;
use dingtalk_sdk::{Error, ErrorKind, ProcessCode, ProcessInstanceId};
use serde_json::json;
use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use tracing_subscriber::layer::{Context, SubscriberExt as _};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const APP: &str = "dingbudgetapp";
const SECRET: &str = "s3cr3t";
const TOKEN_PATH: &str = "/v1.0/oauth2/accessToken";
/// GetProcessInstance.
const GET_PATH: &str = "/v1.0/workflow/processInstances";
/// ListProcessInstanceIds, another API.
const LIST_PATH: &str = "/v1.0/workflow/processes/instanceIds/query";
const QPS: &str = "Forbidden.AccessDenied.QpsLimitForAppkeyAndApi";
const MONTHLY: &str = "Forbidden.AccessDenied.ApiCountLimitForOrg";
/// 2026-12-31T23:59:59.000Z.
const DEC_31_LAST_SECOND: i64 = 1_798_761_599_000;
/// 2026-12-30T23:59:59.000Z.
const DEC_30: i64 = DEC_31_LAST_SECOND - 86_400_000;
/// 2027-01-01T00:00:00.000Z.
const JAN_1: i64 = DEC_31_LAST_SECOND + 1_000;

/// A manual clock for the client's month.
#[derive(Clone)]
struct Clock(Arc<AtomicI64>);

impl Clock {
    fn at(ms: i64) -> Self {
        Self(Arc::new(AtomicI64::new(ms)))
    }

    fn set(&self, ms: i64) {
        self.0.store(ms, Ordering::SeqCst);
    }

    fn advance(&self, by: Duration) {
        self.0
            .fetch_add(i64::try_from(by.as_millis()).unwrap(), Ordering::SeqCst);
    }

    fn reader(&self) -> BudgetClock {
        let now = Arc::clone(&self.0);
        Arc::new(move || now.load(Ordering::SeqCst))
    }
}

/// The workflow requests the server received: path and arrival time.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<(String, Instant)>>>);

impl Seen {
    fn count(&self) -> usize {
        self.0.lock().unwrap().len()
    }

    fn times(&self, of: &str) -> Vec<Instant> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|(p, _)| p == of)
            .map(|(_, t)| *t)
            .collect()
    }
}

/// Answers one API: queued answers first (to inject DingTalk's 403s), then `ok`.
struct Answer {
    ok: ResponseTemplate,
    seen: Seen,
    queued: Arc<Mutex<VecDeque<ResponseTemplate>>>,
}

impl Respond for Answer {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        self.seen
            .0
            .lock()
            .unwrap()
            .push((request.url.path().to_owned(), Instant::now()));
        let queued = self.queued.lock().unwrap().pop_front();
        queued.unwrap_or_else(|| self.ok.clone())
    }
}

struct DingTalk {
    server: MockServer,
    seen: Seen,
    /// Queued answers of GetProcessInstance.
    get_answers: Arc<Mutex<VecDeque<ResponseTemplate>>>,
}

impl DingTalk {
    async fn start() -> Self {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path(TOKEN_PATH))
            .respond_with(
                ResponseTemplate::new(200).set_body_json(json!({"accessToken": "tok-1", "expireIn": 7200})),
            )
            .mount(&server)
            .await;
        let seen = Seen::default();
        let get_answers = Arc::new(Mutex::new(VecDeque::new()));
        Mock::given(method("GET"))
            .and(path(GET_PATH))
            .respond_with(Answer {
                ok: ResponseTemplate::new(200)
                    .set_body_json(json!({"success": "true", "result": {"status": "RUNNING"}})),
                seen: seen.clone(),
                queued: Arc::clone(&get_answers),
            })
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .and(path(LIST_PATH))
            .respond_with(Answer {
                ok: ResponseTemplate::new(200)
                    .set_body_json(json!({"success": true, "result": {"list": []}})),
                seen: seen.clone(),
                queued: Arc::default(),
            })
            .mount(&server)
            .await;
        Self {
            server,
            seen,
            get_answers,
        }
    }

    /// The next GetProcessInstance is answered 403 with `code`.
    fn refuse_next_get(&self, code: &str) {
        self.get_answers.lock().unwrap().push_back(
            ResponseTemplate::new(403)
                .set_body_json(json!({"code": code, "message": "refused", "requestid": "R-1"})),
        );
    }

    async fn token_requests(&self) -> usize {
        self.server
            .received_requests()
            .await
            .unwrap()
            .iter()
            .filter(|r| r.url.path() == TOKEN_PATH)
            .count()
    }

    fn client(&self, budget: CallBudget, clock: &Clock) -> DingTalkClient {
        DingTalkClient::builder(Credentials::new(APP, SECRET))
            .api_base(self.server.uri())
            .retry(RetryPolicy::none())
            .budget(budget)
            .budget_clock(clock.reader())
            .build()
            .unwrap()
    }
}

async fn get(client: &DingTalkClient) -> dingtalk_sdk::Result<()> {
    client
        .workflow()
        .get_instance(&ProcessInstanceId::new("pi-1"))
        .await
        .map(drop)
}

async fn list(client: &DingTalkClient) -> dingtalk_sdk::Result<()> {
    client
        .workflow()
        .list_instance_ids_page(&ListProcessInstanceIdsRequest::new(ProcessCode::new("PROC-1"), 0))
        .await
        .map(drop)
}

/// Asserts `error` is the budget's refusal and returns (used, limit, priority, by DingTalk).
fn refusal(error: &Error) -> (u64, Option<u64>, Priority, bool) {
    assert_eq!(error.kind(), ErrorKind::QuotaExhausted, "{error}");
    assert!(!error.is_retryable(), "{error}");
    match error {
        Error::BudgetExhausted {
            operation,
            month,
            used,
            limit,
            priority,
            reported_by_dingtalk,
        } => {
            assert!(operation.ends_with("ProcessInstance") || operation.ends_with("Ids"));
            assert_eq!(month.len(), "2026-12".len(), "{month}");
            (*used, *limit, *priority, *reported_by_dingtalk)
        }
        other => panic!("not a budget refusal: {other:?}"),
    }
}

fn monthly(limit: u64) -> CallBudget {
    CallBudget::default().calls_per_month(Some(limit))
}

#[tokio::test]
async fn the_call_after_the_monthly_limit_is_refused_without_being_sent() {
    let dingtalk = DingTalk::start().await;
    let clock = Clock::at(DEC_30);
    let client = dingtalk.client(monthly(10), &clock);
    for _ in 0..10 {
        get(&client).await.unwrap();
    }
    let err = get(&client).await.unwrap_err();
    assert_eq!(refusal(&err), (10, Some(10), Priority::Foreground, false));
    assert_eq!(
        err.to_string(),
        "GetProcessInstance: not sent: 10 of the app's 10 DingTalk calls for 2026-12 are used (foreground)"
    );
    // Another API and a clone share the count.
    let err = list(&client.clone()).await.unwrap_err();
    assert_eq!(refusal(&err).0, 10);
    assert_eq!(
        dingtalk.seen.count(),
        10,
        "the refused calls never reached DingTalk"
    );
    assert_eq!(dingtalk.token_requests().await, 1, "not counted, fetched once");

    let usage = client.usage();
    assert_eq!(usage.month, "2026-12");
    assert_eq!(
        (usage.calls, usage.foreground, usage.background, usage.refused),
        (10, 10, 0, 2)
    );
    assert_eq!((usage.limit, usage.background_limit), (Some(10), Some(5)));
    assert!(usage.exhausted);
    assert_eq!(
        serde_json::to_value(&usage).unwrap(),
        json!({"month": "2026-12", "calls": 10, "foreground": 10, "background": 0, "refused": 2,
               "throttled": 0, "limit": 10, "background_limit": 5, "exhausted": true})
    );
    let debug = format!("{client:?}");
    assert!(debug.contains("calls_per_month: Some(10)"), "{debug}");
    assert!(!debug.contains(SECRET), "{debug}");
}

#[tokio::test]
async fn background_calls_stop_at_their_share_while_foreground_calls_still_go() {
    let dingtalk = DingTalk::start().await;
    let clock = Clock::at(DEC_30);
    let client = dingtalk.client(monthly(10).background_share(0.5), &clock);
    let reconciler = client.background();
    assert_eq!(
        (client.priority(), reconciler.priority()),
        (Priority::Foreground, Priority::Background)
    );
    for _ in 0..5 {
        list(&reconciler).await.unwrap();
    }
    let err = list(&reconciler).await.unwrap_err();
    assert_eq!(refusal(&err), (5, Some(5), Priority::Background, false));
    assert!(err.to_string().contains("foreground calls still go"), "{err}");

    for _ in 0..5 {
        get(&client).await.unwrap();
    }
    assert_eq!(
        refusal(&get(&client).await.unwrap_err()),
        (10, Some(10), Priority::Foreground, false)
    );
    assert_eq!(dingtalk.seen.count(), 10);
    let usage = client.usage();
    assert_eq!(
        (usage.calls, usage.foreground, usage.background, usage.refused),
        (10, 5, 5, 2)
    );
}

#[tokio::test]
async fn a_new_month_starts_afresh_and_is_logged() {
    let logs = Logs::capture();
    let dingtalk = DingTalk::start().await;
    let clock = Clock::at(DEC_31_LAST_SECOND);
    let client = dingtalk.client(monthly(3), &clock);
    for _ in 0..3 {
        get(&client).await.unwrap();
    }
    assert!(get(&client).await.is_err());
    assert!(list(&client.background()).await.is_err());

    clock.advance(Duration::from_secs(1)); // 2027-01-01T00:00:00Z
    list(&client.background()).await.unwrap(); // background may use 1 of 3
    get(&client).await.unwrap();
    let usage = client.usage();
    assert_eq!(usage.month, "2027-01");
    assert_eq!(
        (
            usage.calls,
            usage.foreground,
            usage.background,
            usage.refused,
            usage.exhausted
        ),
        (2, 1, 1, 0, false)
    );
    assert_eq!(dingtalk.seen.count(), 5);

    let new_month = logs.with_message("new month");
    assert_eq!(new_month.len(), 1, "{new_month:?}");
    let line = &new_month[0];
    assert_eq!(line["level"], "INFO");
    assert_eq!(
        (
            line["client_id"].as_str(),
            line["from"].as_str(),
            line["month"].as_str()
        ),
        (APP, "2026-12", "2027-01")
    );
    assert_eq!(line["calls_last_month"], "3");
}

#[tokio::test]
async fn a_throttling_answer_pauses_every_api_of_the_app_for_a_second() {
    let dingtalk = DingTalk::start().await;
    let clock = Clock::at(DEC_30);
    let client = dingtalk.client(CallBudget::default(), &clock);
    dingtalk.refuse_next_get(QPS);
    let err = get(&client).await.unwrap_err();
    assert_eq!((err.kind(), err.code()), (ErrorKind::Throttling, Some(QPS)));
    let answered = Instant::now();

    // Another API, and a background call, are held too.
    list(&client).await.unwrap();
    list(&client.background()).await.unwrap();
    let throttled = dingtalk.seen.times(GET_PATH)[0];
    let next = dingtalk.seen.times(LIST_PATH);
    assert_eq!(next.len(), 2);
    for arrived in next {
        assert!(
            arrived.duration_since(throttled) >= Duration::from_secs(1),
            "sent {:?} after the 403 arrived",
            arrived.duration_since(throttled)
        );
        assert!(arrived.duration_since(answered) >= Duration::from_millis(990));
    }
    assert!(answered.elapsed() < Duration::from_secs(3), "a short pause");
    let usage = client.usage();
    assert_eq!((usage.throttled, usage.calls, usage.refused), (1, 3, 0));
}

#[tokio::test]
async fn dingtalks_quota_answer_ends_the_month_whatever_the_count_says() {
    let dingtalk = DingTalk::start().await;
    let clock = Clock::at(DEC_30);
    let client = dingtalk.client(CallBudget::default(), &clock);
    get(&client).await.unwrap();
    dingtalk.refuse_next_get(MONTHLY);
    let err = get(&client).await.unwrap_err();
    assert_eq!((err.http_status(), err.code()), (Some(403), Some(MONTHLY)));
    assert!(!err.is_retryable());

    let started = Instant::now();
    let err = list(&client).await.unwrap_err();
    assert_eq!(refusal(&err), (2, Some(5_000), Priority::Foreground, true));
    assert!(err.to_string().contains("ApiCountLimitForOrg"), "{err}");
    assert!(get(&client.background()).await.is_err());
    assert!(started.elapsed() < Duration::from_millis(200), "fails fast");
    assert_eq!(dingtalk.seen.count(), 2, "nothing more reached DingTalk");
    let usage = client.usage();
    assert!(usage.exhausted);
    assert_eq!((usage.calls, usage.refused), (2, 2));

    // Unlimited budgets too: DingTalk's word is final for the month.
    let unlimited = dingtalk.client(CallBudget::unlimited(), &clock);
    dingtalk.refuse_next_get(MONTHLY);
    assert!(get(&unlimited).await.is_err());
    let err = get(&unlimited).await.unwrap_err();
    assert_eq!(refusal(&err), (1, None, Priority::Foreground, true));

    clock.set(JAN_1);
    get(&client).await.unwrap();
    assert!(!client.usage().exhausted, "a new month");
}

/// Asserts no one-second window holds more than `qps` of `times` (sorted). The limiter lets
/// calls go at most `qps` per second; their arrival at the server can shift by a few
/// milliseconds (connections opened for the first burst, scheduling), hence the 50 ms.
fn assert_at_most_per_second(times: &[Instant], qps: usize) {
    for pair in times.windows(qps + 1) {
        let spread = pair[qps].duration_since(pair[0]);
        assert!(
            spread >= Duration::from_millis(950),
            "{} calls within {spread:?}",
            qps + 1
        );
    }
}

#[tokio::test]
async fn concurrent_calls_to_one_api_keep_to_its_qps_and_all_succeed() {
    let dingtalk = DingTalk::start().await;
    let clock = Clock::at(DEC_30);
    let client = dingtalk.client(CallBudget::default().qps_per_api(Some(5)), &clock);
    let started = Instant::now();
    let calls = (0..12).map(|_| get(&client));
    for result in futures_util::future::join_all(calls).await {
        result.unwrap();
    }
    let elapsed = started.elapsed();
    let mut times = dingtalk.seen.times(GET_PATH);
    times.sort();
    assert_eq!(times.len(), 12);
    assert_at_most_per_second(&times, 5);
    // 5 at once, 5 a second later, 2 a second after that: waits are short.
    assert!(elapsed >= Duration::from_secs(2), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(4), "{elapsed:?}");
    // Another API was never held up by this one.
    let other = Instant::now();
    list(&client).await.unwrap();
    assert!(other.elapsed() < Duration::from_millis(500));
}

#[tokio::test]
async fn background_calls_take_at_most_half_the_slots_and_let_foreground_go_first() {
    let dingtalk = DingTalk::start().await;
    let clock = Clock::at(DEC_30);
    let client = dingtalk.client(CallBudget::default().qps_per_api(Some(4)), &clock);
    let reconciler = client.background();
    let started = Instant::now();
    // Six background calls first, then two foreground ones: the foreground ones go at once.
    let background = futures_util::future::join_all((0..6).map(|_| get(&reconciler)));
    let foreground = async {
        tokio::task::yield_now().await;
        let results = futures_util::future::join_all((0..2).map(|_| get(&client))).await;
        (results, started.elapsed())
    };
    let (background, (foreground, foreground_done)) = tokio::join!(background, foreground);
    for result in background.into_iter().chain(foreground) {
        result.unwrap();
    }
    assert!(
        foreground_done < Duration::from_millis(500),
        "{foreground_done:?}"
    );
    let mut times = dingtalk.seen.times(GET_PATH);
    times.sort();
    assert_eq!(times.len(), 8);
    // 2 background + 2 foreground in the first second, then 2 background a second.
    assert_at_most_per_second(&times, 4);
    assert!(started.elapsed() >= Duration::from_secs(2));
    let usage = client.usage();
    assert_eq!((usage.foreground, usage.background), (2, 6));
}

#[tokio::test]
async fn the_80_percent_warning_is_logged_once_a_month() {
    let logs = Logs::capture();
    let dingtalk = DingTalk::start().await;
    let clock = Clock::at(DEC_30);
    let client = dingtalk.client(monthly(10), &clock);
    for i in 1..=10 {
        get(&client).await.unwrap();
        assert_eq!(
            logs.with_message("80 %").len(),
            usize::from(i >= 8),
            "after {i} calls"
        );
    }
    assert!(get(&client).await.is_err());
    let warnings = logs.with_message("80 %");
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    let warning = &warnings[0];
    assert_eq!(warning["level"], "WARN");
    assert_eq!(
        (
            warning["client_id"].as_str(),
            warning["month"].as_str(),
            warning["used"].as_str(),
            warning["limit"].as_str()
        ),
        (APP, "2026-12", "8", "10")
    );

    // Next month, once more.
    clock.set(JAN_1);
    for _ in 0..8 {
        get(&client).await.unwrap();
    }
    let warnings = logs.with_message("80 %");
    assert_eq!(warnings.len(), 2);
    assert_eq!(warnings[1]["month"], "2027-01");
}

/// Counters shared by the "processes" of a test (what a server keeps in its database); they
/// can be made to fail.
#[derive(Debug, Default)]
struct Counters {
    values: Mutex<BTreeMap<String, u64>>,
    failing: AtomicBool,
}

#[async_trait::async_trait]
impl SharedCounters for Counters {
    async fn add(
        &self,
        key: &str,
        delta: u64,
        limit: Option<u64>,
    ) -> Result<CounterAdd, Box<dyn std::error::Error + Send + Sync>> {
        if self.failing.load(Ordering::SeqCst) {
            return Err("connection refused".into());
        }
        let mut values = self.values.lock().unwrap();
        let value = values.entry(key.to_owned()).or_default();
        let added = limit.is_none_or(|limit| *value + delta <= limit);
        if added {
            *value += delta;
        }
        Ok(CounterAdd { value: *value, added })
    }
}

impl DingTalk {
    /// A client of its own budget (another process) keeping its count in `counters`.
    fn process(&self, budget: CallBudget, clock: &Clock, counters: &Arc<Counters>) -> DingTalkClient {
        DingTalkClient::builder(Credentials::new(APP, SECRET))
            .api_base(self.server.uri())
            .retry(RetryPolicy::none())
            .budget(budget)
            .budget_clock(clock.reader())
            .shared_counters(Arc::clone(counters) as Arc<dyn SharedCounters>)
            .build()
            .unwrap()
    }
}

#[tokio::test]
async fn processes_sharing_counters_keep_one_monthly_limit_for_the_app() {
    let dingtalk = DingTalk::start().await;
    let clock = Clock::at(DEC_30);
    let counters = Arc::new(Counters::default());
    let a = dingtalk.process(monthly(10).background_share(0.5), &clock, &counters);
    let b = dingtalk.process(monthly(10).background_share(0.5), &clock, &counters);
    for _ in 0..4 {
        list(&a.background()).await.unwrap();
    }
    // b's background share is the app's: one more, then refused, though b made none.
    list(&b.background()).await.unwrap();
    let err = list(&b.background()).await.unwrap_err();
    assert_eq!(refusal(&err), (5, Some(5), Priority::Background, false));
    for _ in 0..2 {
        get(&a).await.unwrap();
        get(&b).await.unwrap();
    }
    get(&a).await.unwrap();
    // 11 calls would pass the month's 10: refused on either, and never sent.
    for process in [&a, &b] {
        let err = get(process).await.unwrap_err();
        assert_eq!(refusal(&err), (10, Some(10), Priority::Foreground, false));
    }
    assert_eq!(
        dingtalk.seen.count(),
        10,
        "the app's calls, all processes together"
    );

    let usage = b.usage();
    assert_eq!(
        (
            usage.calls,
            usage.foreground,
            usage.background,
            usage.refused,
            usage.exhausted
        ),
        (10, 5, 5, 2, true),
        "every process's calls as b last saw them; refusals are b's own"
    );
    let keys: Vec<String> = counters.values.lock().unwrap().keys().cloned().collect();
    assert_eq!(
        keys,
        [
            format!("dingtalk/{APP}/2026-12/background"),
            format!("dingtalk/{APP}/2026-12/calls"),
            format!("dingtalk/{APP}/2026-12/quota_spent"),
        ]
    );

    // A third process that has made no call reads the app's month.
    let c = dingtalk.process(monthly(10), &clock, &counters);
    assert_eq!(c.usage().calls, 0, "not read yet");
    let usage = c.shared_usage().await;
    assert_eq!((usage.calls, usage.background, usage.exhausted), (10, 5, true));

    // A new month for everyone.
    clock.set(JAN_1);
    get(&a).await.unwrap();
    assert_eq!(b.shared_usage().await.calls, 1);
}

#[tokio::test]
async fn dingtalks_quota_answer_to_one_process_stops_the_others() {
    let dingtalk = DingTalk::start().await;
    let clock = Clock::at(DEC_30);
    let counters = Arc::new(Counters::default());
    let a = dingtalk.process(CallBudget::default(), &clock, &counters);
    let b = dingtalk.process(CallBudget::default(), &clock, &counters);
    get(&b).await.unwrap();
    dingtalk.refuse_next_get(MONTHLY);
    assert!(get(&a).await.is_err());
    let err = list(&b).await.unwrap_err();
    assert_eq!(refusal(&err), (2, Some(5_000), Priority::Foreground, true));
    assert_eq!(dingtalk.seen.count(), 2, "b sent nothing more");
    assert!(b.usage().exhausted);
}

#[tokio::test]
async fn failing_counters_are_logged_once_and_the_process_counts_alone() {
    let logs = Logs::capture();
    let dingtalk = DingTalk::start().await;
    let clock = Clock::at(DEC_30);
    let counters = Arc::new(Counters::default());
    let a = dingtalk.process(monthly(3), &clock, &counters);
    get(&a).await.unwrap();
    counters.failing.store(true, Ordering::SeqCst);
    get(&a).await.unwrap();
    get(&a).await.unwrap();
    let err = get(&a).await.unwrap_err();
    assert_eq!(
        refusal(&err),
        (3, Some(3), Priority::Foreground, false),
        "its own count still holds"
    );
    let failed = logs.with_message("shared DingTalk call counters failed");
    assert_eq!(failed.len(), 1, "once, not per call: {failed:?}");
    assert_eq!(failed[0]["level"], "WARN");
    assert!(
        failed[0]["error"].contains("connection refused"),
        "{:?}",
        failed[0]
    );

    counters.failing.store(false, Ordering::SeqCst);
    assert_eq!(
        a.shared_usage().await.calls,
        3,
        "the shared count (1) never lowers the process's"
    );
    assert_eq!(logs.with_message("answer again").len(), 1);
}

#[test]
fn invalid_budgets_are_configuration_errors() {
    for budget in [
        CallBudget::default().qps_per_api(Some(0)),
        CallBudget::default().background_share(1.5),
        CallBudget::default().background_share(f64::NAN),
    ] {
        let err = DingTalkClient::builder(Credentials::new(APP, SECRET))
            .budget(budget)
            .build()
            .unwrap_err();
        assert!(matches!(err, Error::Config { .. }), "{err}");
        assert!(err.to_string().contains("budget"), "{err}");
    }
}

/// The log events emitted on this thread while the capture lives (the tests run on a
/// current-thread runtime, so the client's events are emitted here), each as its fields
/// (`message` included) plus `level`.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<BTreeMap<String, String>>>>);

impl Logs {
    fn capture() -> LogGuard {
        let logs = Logs::default();
        let guard = tracing::subscriber::set_default(tracing_subscriber::registry().with(logs.clone()));
        LogGuard { logs, _guard: guard }
    }
}

struct LogGuard {
    logs: Logs,
    _guard: tracing::subscriber::DefaultGuard,
}

impl LogGuard {
    fn with_message(&self, part: &str) -> Vec<BTreeMap<String, String>> {
        self.logs
            .0
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e.get("message").is_some_and(|m| m.contains(part)))
            .cloned()
            .collect()
    }
}

struct Fields(BTreeMap<String, String>);

impl tracing::field::Visit for Fields {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Logs {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        let mut fields = Fields(BTreeMap::new());
        fields
            .0
            .insert("level".to_owned(), event.metadata().level().to_string());
        event.record(&mut fields);
        self.0.lock().unwrap().push(fields.0);
    }
}
