//! The server's metrics, served at `GET /metrics` in the OpenMetrics text format (which
//! Prometheus scrapes) by `prometheus-client`: one [`Registry`] per server, no global one.
//!
//! Every replica serves its own: requests by state (read from the shared store at each scrape,
//! so every replica reports the same), DingTalk events by outcome, each DingTalk app's calls
//! this month against its budget, its reconciliation passes and whether it holds the
//! reconciler's lease, and HTTP latency by route template (never the raw path: a Request URL
//! carries its workflow's unguessable callback id).

use crate::workflows::App;
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use dingtalk_sdk::event::Event;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};
use sase_approval::dingtalk::observed_event_handler;
use sase_approval::engine::{Engine, EventOutcome};
use sase_approval::state::RequestState;
use sase_approval::store::ApprovalStore;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

/// The `Content-Type` of what [`Metrics::encode`] writes (`prometheus_client`'s text encoder).
pub(crate) const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Every state, so that a state without requests is reported as 0 rather than left out.
const STATES: [RequestState; 7] = [
    RequestState::Submitted,
    RequestState::Pending,
    RequestState::Approved,
    RequestState::Rejected,
    RequestState::Revoked,
    RequestState::Expired,
    RequestState::Failed,
];

/// HTTP latency buckets, seconds: 1 ms to 10 s.
const LATENCY_BUCKETS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The route label of every Request URL: the callback id in the path is a secret.
pub(crate) const CALLBACK_ROUTE: &str = "/dingtalk/callback/{id}";

/// The methods labelled by name; any other is `other` (a client choosing methods must not
/// choose how many series there are).
const METHODS: [&str; 7] = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AppLabel {
    app: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReplicaLabel {
    replica: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    route: String,
    method: &'static str,
    status: u16,
}

type AppGauges = Family<AppLabel, Gauge>;

/// The registry and its metric families. Counters and the histogram are updated where things
/// happen; the request and DingTalk gauges are read at each scrape ([`encode`](Self::encode)).
#[derive(Debug)]
pub(crate) struct Metrics {
    registry: Registry,
    requests: Family<StateLabel, Gauge>,
    events: Family<OutcomeLabel, Counter>,
    dingtalk_calls: AppGauges,
    dingtalk_limit: AppGauges,
    dingtalk_remaining: AppGauges,
    dingtalk_throttled: AppGauges,
    dingtalk_refused: AppGauges,
    reconcile_passes: Counter,
    reconcile_failures: Counter,
    reconcile_changed: Counter,
    lease_held: Family<ReplicaLabel, Gauge>,
    http: Family<HttpLabels, Histogram, fn() -> Histogram>,
}

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

/// A count as a gauge value.
fn gauge_value(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl Metrics {
    /// Every family registered under the `sase_` prefix (counters get OpenMetrics' `_total`,
    /// the histogram its unit).
    pub(crate) fn new() -> Self {
        let metrics = Self {
            registry: Registry::default(),
            requests: Family::default(),
            events: Family::default(),
            dingtalk_calls: Family::default(),
            dingtalk_limit: Family::default(),
            dingtalk_remaining: Family::default(),
            dingtalk_throttled: Family::default(),
            dingtalk_refused: Family::default(),
            reconcile_passes: Counter::default(),
            reconcile_failures: Counter::default(),
            reconcile_changed: Counter::default(),
            lease_held: Family::default(),
            http: Family::new_with_constructor(latency_histogram as fn() -> Histogram),
        };
        let mut registry = Registry::with_prefix("sase");
        registry.register(
            "requests",
            "Approval requests by state, in the store every replica shares",
            metrics.requests.clone(),
        );
        registry.register(
            "events",
            "DingTalk events handled by this replica, by outcome (error: not recorded, DingTalk delivers it again)",
            metrics.events.clone(),
        );
        registry.register(
            "dingtalk_calls",
            "DingTalk API calls this month by this replica's client of the app",
            metrics.dingtalk_calls.clone(),
        );
        registry.register(
            "dingtalk_calls_limit",
            "The app's monthly call budget (absent when unlimited)",
            metrics.dingtalk_limit.clone(),
        );
        registry.register(
            "dingtalk_calls_remaining",
            "Calls left in the app's monthly budget (absent when unlimited)",
            metrics.dingtalk_remaining.clone(),
        );
        registry.register(
            "dingtalk_throttled",
            "DingTalk's throttling answers to the app this month",
            metrics.dingtalk_throttled.clone(),
        );
        registry.register(
            "dingtalk_refused",
            "Calls the app's budget refused this month, without sending them",
            metrics.dingtalk_refused.clone(),
        );
        registry.register(
            "reconcile_passes",
            "Reconciliation passes run by this replica (failed ones included)",
            metrics.reconcile_passes.clone(),
        );
        registry.register(
            "reconcile_failures",
            "Reconciliation passes of this replica that failed",
            metrics.reconcile_failures.clone(),
        );
        registry.register(
            "reconcile_changed",
            "Requests whose state this replica's reconciliation changed",
            metrics.reconcile_changed.clone(),
        );
        registry.register(
            "reconciler_lease_held",
            "1 while this replica holds the reconciler's lease (and reconciles), else 0",
            metrics.lease_held.clone(),
        );
        registry.register_with_unit(
            "http_request_duration",
            "HTTP requests by route template, method and status, until the response head",
            Unit::Seconds,
            metrics.http.clone(),
        );
        Self { registry, ..metrics }
    }

    /// Counts an event's outcome (`None`: handling failed).
    fn event(&self, outcome: Option<EventOutcome>) {
        let outcome = match outcome {
            Some(EventOutcome::Applied) => "applied",
            Some(EventOutcome::Recorded) => "recorded",
            Some(EventOutcome::Duplicate) => "duplicate",
            Some(EventOutcome::Stale) => "stale",
            Some(EventOutcome::Ignored) => "ignored",
            Some(EventOutcome::Refused) => "refused",
            Some(_) => "other",
            None => "error",
        };
        self.events.get_or_create(&OutcomeLabel { outcome }).inc();
    }

    /// Whether `replica` (the reconciler's lease holder name) holds the lease now.
    pub(crate) fn lease_held(&self, replica: &str, held: bool) {
        self.lease_held
            .get_or_create(&ReplicaLabel {
                replica: replica.to_owned(),
            })
            .set(i64::from(held));
    }

    /// Counts a reconciliation pass: the requests it changed, or `None` if it failed.
    pub(crate) fn reconciled(&self, changed: Option<usize>) {
        self.reconcile_passes.inc();
        match changed {
            Some(n) => {
                self.reconcile_changed
                    .inc_by(u64::try_from(n).unwrap_or(u64::MAX));
            }
            None => {
                self.reconcile_failures.inc();
            }
        }
    }

    /// Reads the requests by state from `store` and each app's usage, then writes every
    /// metric. When the store cannot be read, `sase_requests` is left out (rather than
    /// reporting stale counts) and the rest is served.
    ///
    /// # Errors
    /// Only if the text cannot be written (it is written to a `String`: never).
    pub(crate) async fn encode(
        &self,
        store: &dyn ApprovalStore,
        apps: &[App],
    ) -> Result<String, std::fmt::Error> {
        match store.count_by_state().await {
            Ok(counts) => {
                for state in STATES {
                    let n = counts.iter().find(|(s, _)| *s == state).map_or(0, |(_, n)| *n);
                    self.set_requests(state, n);
                }
                // A state this list does not know yet (a newer library) is reported too.
                for &(state, n) in counts.iter().filter(|(s, _)| !STATES.contains(s)) {
                    self.set_requests(state, n);
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "metrics: cannot count the requests by state");
                self.requests.clear();
            }
        }
        for app in apps {
            // Every replica's calls, read from the store.
            let usage = app.client.shared_usage().await;
            let label = AppLabel {
                app: app.client_id.clone(),
            };
            self.dingtalk_calls
                .get_or_create(&label)
                .set(gauge_value(usage.calls));
            self.dingtalk_throttled
                .get_or_create(&label)
                .set(gauge_value(usage.throttled));
            self.dingtalk_refused
                .get_or_create(&label)
                .set(gauge_value(usage.refused));
            match usage.limit {
                Some(limit) => {
                    self.dingtalk_limit.get_or_create(&label).set(gauge_value(limit));
                    self.dingtalk_remaining
                        .get_or_create(&label)
                        .set(gauge_value(limit.saturating_sub(usage.calls)));
                }
                None => {
                    self.dingtalk_limit.remove(&label);
                    self.dingtalk_remaining.remove(&label);
                }
            }
        }
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)?;
        Ok(text)
    }

    fn set_requests(&self, state: RequestState, n: u64) {
        self.requests
            .get_or_create(&StateLabel {
                state: state.as_str(),
            })
            .set(gauge_value(n));
    }
}

/// The route label of a request: its route's template, every Request URL as
/// [`CALLBACK_ROUTE`], `unmatched` when no route matched (the 404 fallback).
fn route_label(path: Option<&MatchedPath>) -> String {
    match path.map(MatchedPath::as_str) {
        Some(p) if p.starts_with("/dingtalk/callback/") => CALLBACK_ROUTE.to_owned(),
        Some(p) => p.to_owned(),
        None => "unmatched".to_owned(),
    }
}

fn method_label(method: &axum::http::Method) -> &'static str {
    METHODS
        .into_iter()
        .find(|m| *m == method.as_str())
        .unwrap_or("other")
}

/// Middleware timing each request until its response head, by route template, method and
/// status (added with `Router::layer`, where the matched route is known).
pub(crate) async fn track(State(metrics): State<Arc<Metrics>>, request: Request, next: Next) -> Response {
    let route = route_label(request.extensions().get::<MatchedPath>());
    let method = method_label(request.method());
    let started = Instant::now();
    let response = next.run(request).await;
    let labels = HttpLabels {
        route,
        method,
        status: response.status().as_u16(),
    };
    metrics
        .http
        .get_or_create(&labels)
        .observe(started.elapsed().as_secs_f64());
    response
}

/// [`sase_approval::dingtalk::event_handler`], counting each outcome: the handler of the
/// DingTalk app `client_id`'s Request URL and of its Stream client. An `Err` makes DingTalk
/// deliver the event again.
pub(crate) fn event_handler(
    metrics: &Arc<Metrics>,
    engine: &Arc<Engine>,
    client_id: &str,
) -> impl Fn(Event) -> Pin<Box<dyn Future<Output = sase_approval::Result<()>> + Send>>
       + Clone
       + Send
       + Sync
       + 'static {
    let metrics = Arc::clone(metrics);
    observed_event_handler(engine, client_id, move |outcome| {
        metrics.event(outcome.as_ref().ok().copied());
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_never_carry_a_callback_id_or_a_chosen_method() {
        assert_eq!(route_label(None), "unmatched");
        assert_eq!(
            method_label(&axum::http::Method::from_bytes(b"BREW").unwrap()),
            "other"
        );
        assert_eq!(method_label(&axum::http::Method::POST), "POST");
    }

    #[test]
    fn the_families_are_named_as_documented() {
        let metrics = Metrics::new();
        metrics.event(Some(EventOutcome::Applied));
        metrics.event(None);
        metrics.lease_held("replica-1", true);
        metrics.reconciled(Some(2));
        metrics.reconciled(None);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &metrics.registry).unwrap();
        for line in [
            "sase_events_total{outcome=\"applied\"} 1",
            "sase_events_total{outcome=\"error\"} 1",
            "sase_reconciler_lease_held{replica=\"replica-1\"} 1",
            "sase_reconcile_passes_total 2",
            "sase_reconcile_failures_total 1",
            "sase_reconcile_changed_total 2",
            "# EOF",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
        }
    }
}
