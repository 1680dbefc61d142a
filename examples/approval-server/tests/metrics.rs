//! `GET /metrics` over real HTTP on 127.0.0.1, with a mock DingTalk pushing encrypted events
//! to the server's Request URL: what a scrape shows after requests are filed and one is
//! approved (with its events delivered twice), that it shows no secret, that only the
//! metrics token reads it, that without one there is no such route, and that the replica
//! holding the reconciler's lease says so.

#![expect(
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "the helpers outside #[test] functions fail the test on a broken set-up or response"
)]

use dingtalk_sdk::mock::{MockDingTalk, MockFaults};
use sase_approval_server::Server;
use serde_json::Value;
use std::time::Duration;
use support::{
    credentialed_config, device, json, mock, start_with, Agent, ADMIN, AES_KEY, APP, SECRET, TOKEN,
};

mod support;

const METRICS: &str = "scrape-token-0123456789";
const DEVICES: [(&str, &str); 2] = [("tok-alice-device", "alice"), ("tok-bob-device", "bob")];
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A mock DingTalk and a server on a fresh database (kept while the directory lives): the
/// test configuration on the mock's app with alice and bob enrolled, reconciling every
/// `reconcile_every_secs`, its metrics read with `metrics_token` (if any); a client for it.
async fn running(
    reconcile_every_secs: u64,
    metrics_token: Option<&str>,
) -> (tempfile::TempDir, MockDingTalk, Server, Client) {
    let dir = tempfile::tempdir().unwrap();
    let mock = mock().await;
    let mut config = credentialed_config(&mock, &dir.path().join("metrics.sqlite"));
    config.reconcile_every_secs = reconcile_every_secs;
    config.devices = DEVICES
        .iter()
        .map(|(token, user)| device(token, user, "employees"))
        .collect();
    config.metrics_token = metrics_token.map(Into::into);
    let server = start_with(&mock, config).await;
    let client = Client::new(&server);
    (dir, mock, server, client)
}

/// `GET /metrics` on one server.
struct Client {
    http: reqwest::Client,
    base: String,
}

impl Client {
    fn new(server: &Server) -> Self {
        Self {
            http: reqwest::Client::new(),
            base: format!("http://{}", server.addr),
        }
    }

    /// `GET /metrics` with `token` (if any): status, content type and body.
    async fn get_metrics(&self, token: Option<&str>) -> (u16, String, String) {
        let mut req = self.http.get(format!("{}/metrics", self.base));
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        let (status, headers, body) = support::send(req).await;
        let content_type = headers
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        (status, content_type, String::from_utf8(body).unwrap())
    }

    /// `GET /metrics` with `token` (if any), which must be refused with `status` and `code`.
    async fn refused(&self, token: Option<&str>, status: u16, code: &str) {
        let (got, _, body) = self.get_metrics(token).await;
        let body: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            (got, body["error"].as_str()),
            (status, Some(code)),
            "{token:?}: {body}"
        );
    }

    /// A successful scrape with the metrics token.
    async fn scrape(&self) -> Scrape {
        let (status, content_type, text) = self.get_metrics(Some(METRICS)).await;
        assert_eq!(status, 200, "{text}");
        assert_eq!(content_type, OPENMETRICS);
        assert!(text.ends_with("# EOF\n"), "{text}");
        Scrape(text)
    }
}

/// The DingTalk calls this month the console counts for the (one) app.
async fn dingtalk_calls(agent: &Agent) -> Value {
    let (status, body) = agent
        .console(reqwest::Method::GET, "/api/console/dingtalk/usage")
        .await;
    assert_eq!(status, 200, "{body}");
    body[0]["usage"]["calls"].clone()
}

/// A scrape's text.
struct Scrape(String);

impl Scrape {
    /// The value of the sample named exactly `series` (name and labels), if there is one.
    fn value(&self, series: &str) -> Option<f64> {
        self.0.lines().find_map(|line| {
            let (name, value) = line.rsplit_once(' ')?;
            (name == series).then(|| value.parse().unwrap())
        })
    }

    /// [`value`](Self::value), which must be there.
    fn get(&self, series: &str) -> f64 {
        self.value(series)
            .unwrap_or_else(|| panic!("no sample {series} in\n{}", self.0))
    }
}

#[tokio::test]
async fn a_scrape_counts_requests_events_calls_and_latency_and_shows_no_secret() {
    let (_dir, mock, server, client) = running(3600, Some(METRICS)).await;
    let request_url = server.request_url("wf-dingtalk").unwrap().to_owned();
    let callback_id = request_url.rsplit('/').next().unwrap().to_owned();
    assert!(callback_id.len() >= 16, "{request_url}");

    let (alice, bob) = (
        Agent::new(&server, DEVICES[0].0),
        Agent::new(&server, DEVICES[1].0),
    );
    let approved = alice.filed("reinstalling").await;
    let pending = bob.filed("reinstalling").await;
    // The approver agrees in DingTalk, and DingTalk delivers each event twice.
    let instance = alice.external_id(&approved).await;
    mock.set_faults(MockFaults {
        duplicate_events_next: 10,
        ..MockFaults::default()
    });
    mock.approve(&instance, None, None).unwrap();
    alice.poll(&approved, "approved").await;
    // No such route: timed as `unmatched`.
    let (status, _) = json(client.http.get(format!("{}/no/such/route", client.base))).await;
    assert_eq!(status, 404);

    // The second deliveries may land after the request shows approved, and an event is
    // counted when its handling ends, after the request it approved is stored (and seen).
    let mut scrape = client.scrape().await;
    for _ in 0..200 {
        if scrape.value("sase_events_total{outcome=\"duplicate\"}").is_some()
            && scrape.value("sase_events_total{outcome=\"applied\"}").is_some()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        scrape = client.scrape().await;
    }
    assert_eq!(scrape.get("sase_requests{state=\"approved\"}"), 1.0);
    assert_eq!(scrape.get("sase_requests{state=\"pending\"}"), 1.0);
    assert_eq!(
        scrape.get("sase_requests{state=\"rejected\"}"),
        0.0,
        "a state without requests is 0, not absent"
    );
    assert!(scrape.get("sase_events_total{outcome=\"applied\"}") >= 1.0);
    assert!(scrape.get("sase_events_total{outcome=\"duplicate\"}") >= 1.0);
    assert_eq!(scrape.value("sase_events_total{outcome=\"error\"}"), None);

    // DingTalk calls as the console counts them (read again if one was made in between).
    let app = format!("{{app=\"{APP}\"}}");
    let mut agreed = false;
    for _ in 0..5 {
        let before = dingtalk_calls(&alice).await;
        let scrape = client.scrape().await;
        let after = dingtalk_calls(&alice).await;
        if before != after {
            continue;
        }
        let calls = after.as_f64().unwrap();
        assert!(calls >= 2.0, "two instances created: {calls}");
        assert_eq!(scrape.get(&format!("sase_dingtalk_calls{app}")), calls);
        assert_eq!(scrape.get(&format!("sase_dingtalk_calls_limit{app}")), 5000.0);
        assert_eq!(
            scrape.get(&format!("sase_dingtalk_calls_remaining{app}")),
            5000.0 - calls
        );
        assert_eq!(scrape.get(&format!("sase_dingtalk_throttled{app}")), 0.0);
        assert_eq!(scrape.get(&format!("sase_dingtalk_refused{app}")), 0.0);
        agreed = true;
        break;
    }
    assert!(agreed, "the calls kept changing");

    // Latency by route template: the two filings, the polls of one request, the pushes to
    // the Request URL (labelled without its id) and the unknown path.
    assert_eq!(
        scrape.get(
            "sase_http_request_duration_seconds_bucket{le=\"+Inf\",route=\"/api/agent/requests\",method=\"POST\",status=\"201\"}"
        ),
        2.0
    );
    assert_eq!(
        scrape.get(
            "sase_http_request_duration_seconds_count{route=\"/api/agent/requests\",method=\"POST\",status=\"201\"}"
        ),
        2.0
    );
    assert!(
        scrape.get(
            "sase_http_request_duration_seconds_count{route=\"/api/agent/requests/{id}\",method=\"GET\",status=\"200\"}"
        ) >= 1.0
    );
    assert!(
        scrape.get(
            "sase_http_request_duration_seconds_count{route=\"/dingtalk/callback/{id}\",method=\"POST\",status=\"200\"}"
        ) >= 3.0,
        "check_url, and the approval's events twice"
    );
    assert_eq!(
        scrape.get(
            "sase_http_request_duration_seconds_count{route=\"unmatched\",method=\"GET\",status=\"404\"}"
        ),
        1.0
    );

    // Nothing secret, nor any request's or instance's id.
    let [alice_token, bob_token] = DEVICES.map(|(token, _)| token);
    for secret in [
        callback_id.as_str(),
        METRICS,
        ADMIN,
        alice_token,
        bob_token,
        SECRET,
        TOKEN,
        AES_KEY,
        approved.as_str(),
        pending.as_str(),
        instance.as_str(),
    ] {
        assert!(
            !scrape.0.lines().any(|line| line.contains(secret)),
            "{secret} in\n{}",
            scrape.0
        );
    }
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn only_the_metrics_token_reads_the_metrics() {
    let (_dir, _mock, server, client) = running(3600, Some(METRICS)).await;
    for token in [
        None,
        Some(ADMIN),
        Some(DEVICES[0].0),
        Some("scrape-token-012345678"),
    ] {
        client.refused(token, 401, "unauthorized").await;
    }
    client.scrape().await;
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn without_a_metrics_token_there_is_no_metrics_route() {
    let (_dir, _mock, server, client) = running(3600, None).await;
    for token in [None, Some(ADMIN), Some(METRICS)] {
        client.refused(token, 404, "not_found").await;
    }
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn the_replica_holding_the_reconciler_lease_shows_it() {
    let (_dir, _mock, server, client) = running(1, Some(METRICS)).await;
    let lease_line = |scrape: &Scrape| -> Option<String> {
        let mut lines = scrape
            .0
            .lines()
            .filter(|line| line.starts_with("sase_reconciler_lease_held{"));
        let line = lines.next()?.to_owned();
        assert_eq!(lines.next(), None, "one replica here: {}", scrape.0);
        Some(line)
    };
    let mut held = None;
    for _ in 0..100 {
        let scrape = client.scrape().await;
        if scrape.value("sase_reconcile_passes_total").unwrap_or(0.0) >= 1.0
            && lease_line(&scrape).is_some_and(|line| line.ends_with("} 1"))
        {
            held = Some(scrape);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let scrape = held.expect("the lease is held and a pass ran within 5 s");
    let line = lease_line(&scrape).unwrap();
    let replica = line
        .strip_prefix("sase_reconciler_lease_held{replica=\"replica-")
        .and_then(|rest| rest.strip_suffix("\"} 1"))
        .unwrap_or_else(|| panic!("{line}"));
    assert_eq!(replica.len(), 16, "{line}");
    assert!(replica.chars().all(|c| c.is_ascii_hexdigit()), "{line}");
    assert_eq!(scrape.get("sase_reconcile_failures_total"), 0.0);
    assert_eq!(
        scrape.get("sase_reconcile_changed_total"),
        0.0,
        "nothing to reconcile"
    );
    server.shutdown().await.unwrap();
}
