//! The engine against the mock DingTalk over real HTTP on 127.0.0.1: the mock pushes
//! encrypted events to our axum callback route, which feeds the engine. Approve, refuse and
//! terminate from DingTalk; approve, reject and revoke from the console (written back);
//! duplicate and out-of-order events; a lost event recovered by reconciliation; an outage and
//! an ambiguous create during submit; a restart on a real SQLite file.

#![expect(
    clippy::unwrap_used,
    clippy::panic,
    reason = "a test fails loudly on the first unexpected value"
)]

use dingtalk_sdk::budget::CallBudget;
use dingtalk_sdk::callback::{axum::callback_route, CallbackHandler};
use dingtalk_sdk::client::DingTalkClient;
use dingtalk_sdk::crypto::EventCrypto;
use dingtalk_sdk::event::Event;
use dingtalk_sdk::mock::{MockApp, MockDingTalk, MockFaults};
use dingtalk_sdk::retry::RetryPolicy;
use dingtalk_sdk::token::Credentials;
use dingtalk_sdk::ProcessCode;
use sase_approval::backend::FailureKind;
use sase_approval::clock::{Clock as _, ManualClock};
use sase_approval::definition::{Delivery, Workflow, WorkflowKind};
use sase_approval::dingtalk::{
    app_origin, event_handler, form_problems, handle_event, verify_workflow, DingTalkBackend, Verification,
};
use sase_approval::engine::{Engine, EventOutcome, SubmitRequest};
use sase_approval::state::{RequestId, RequestState};
use sase_approval::store::{ApprovalStore, EventWrite, MemoryStore};
use sase_approval::Error;
use sase_policy::ids::{DeviceId, UserId, WorkflowId};
use sase_policy::{Action, GrantSigner};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

mod support;

use support::{form, workflow, AES_KEY, APP, CODE, SECRET, TOKEN};

const WAIT: Duration = Duration::from_secs(10);

struct Env {
    mock: MockDingTalk,
    /// The engine's clock (reconciliation looks at a request on its schedule).
    clock: ManualClock,
    engine: Arc<Engine>,
    outcomes: Arc<Mutex<Vec<EventOutcome>>>,
}

/// Starts the callback route (feeding the engine) and the mock pushing to it. The simulated
/// month compresses a month of passes into seconds: no QPS pacing in real time, but the
/// default monthly budget, counted on the engine's clock.
async fn env(store: Arc<dyn ApprovalStore>) -> Env {
    env_with(store, CallBudget::default().qps_per_api(None)).await
}

/// [`env`] with the DingTalk app's call `budget`.
async fn env_with(store: Arc<dyn ApprovalStore>, budget: CallBudget) -> Env {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let request_url = format!("http://{}/dingtalk/callback", listener.local_addr().unwrap());
    // One clock for the engine and DingTalk: instance times and list windows agree.
    let clock = ManualClock::starting_now();
    let dingtalk_clock = clock.clone();
    let mock = MockDingTalk::builder()
        .clock(Arc::new(move || dingtalk_clock.now_ms()))
        .app(
            MockApp::new(APP, SECRET)
                .events(TOKEN, AES_KEY)
                .request_url(request_url),
        )
        .process(form())
        .terminate_grace(Duration::ZERO)
        .start()
        .await
        .unwrap();
    let budget_clock = clock.clone();
    let client = DingTalkClient::builder(Credentials::new(APP, SECRET))
        .api_base(mock.base_url())
        .retry(RetryPolicy::new(
            3,
            Duration::from_millis(5),
            Duration::from_millis(20),
            Duration::from_millis(10),
        ))
        .budget(budget)
        .budget_clock(Arc::new(move || budget_clock.now_ms()))
        .build()
        .unwrap();
    let wf = workflow();
    let backend = Arc::new(DingTalkBackend::new(client, wf.clone()).unwrap());
    let engine = Arc::new(
        Engine::builder(store, GrantSigner::from_bytes(&[9; 32]))
            .workflow(wf, backend)
            .clock(Arc::new(clock.clone()))
            .build()
            .unwrap(),
    );
    let outcomes: Arc<Mutex<Vec<EventOutcome>>> = Arc::default();
    let (e, o) = (Arc::clone(&engine), Arc::clone(&outcomes));
    let handler = CallbackHandler::builder(EventCrypto::new(TOKEN, AES_KEY, APP).unwrap()).build();
    let route = callback_route(handler, move |event: Event| {
        let (engine, outcomes) = (Arc::clone(&e), Arc::clone(&o));
        async move {
            let outcome = handle_event(&engine, &app_origin(&engine, APP), &event)
                .await
                .map_err(|e| e.to_string())?;
            outcomes.lock().unwrap().push(outcome);
            Ok::<(), String>(())
        }
    });
    tokio::spawn(async move {
        axum::serve(listener, axum::Router::new().route("/dingtalk/callback", route)).await
    });
    Env {
        mock,
        clock,
        engine,
        outcomes,
    }
}

/// A client of the test app on `mock` (its default budget).
fn client_of(mock: &MockDingTalk) -> DingTalkClient {
    DingTalkClient::builder(Credentials::new(APP, SECRET))
        .api_base(mock.base_url())
        .build()
        .unwrap()
}

/// An engine on a memory store with `wf` on DingTalk through `client`.
fn engine_on(client: DingTalkClient, wf: Workflow) -> Arc<Engine> {
    Arc::new(
        Engine::builder(Arc::new(MemoryStore::new()), GrantSigner::from_bytes(&[9; 32]))
            .workflow(wf.clone(), Arc::new(DingTalkBackend::new(client, wf).unwrap()))
            .build()
            .unwrap(),
    )
}

fn submit(user: &str) -> SubmitRequest {
    SubmitRequest::uninstall(
        WorkflowId::new("wf-dingtalk"),
        UserId::new(user),
        DeviceId::new("LAPTOP-7F3K2"),
        "重装系统",
    )
    .field("app_version", "5.2.1")
}

impl Env {
    async fn wait_state(&self, id: &RequestId, state: RequestState) {
        for _ in 0..500 {
            if self.engine.get(id).await.unwrap().state == state {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!(
            "request never reached {state:?}: {:?}",
            self.engine.get(id).await.unwrap()
        );
    }

    fn instance(&self, external: &str) -> serde_json::Value {
        self.mock.instance(external).unwrap()
    }
}

#[tokio::test]
async fn approved_in_dingtalk_issues_a_grant_the_agent_can_verify() {
    let e = env(Arc::new(MemoryStore::new())).await;
    let mut updates = e.engine.subscribe();
    let r = e.engine.submit(submit("alice")).await.unwrap();
    assert_eq!(r.state, RequestState::Pending);
    let external = r.external_id.clone().unwrap();
    // The form values came from the mapping.
    let form = &e.instance(&external)["formComponentValues"];
    assert!(form
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f["name"] == "卸载原因" && f["value"] == "重装系统"));
    assert!(form
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f["name"] == "申请人" && f["value"] == "alice"));

    e.mock
        .approve(&external, Some("approver1"), Some("同意"))
        .unwrap();
    e.wait_state(&r.id, RequestState::Approved).await;
    let approved = e.engine.get(&r.id).await.unwrap();
    let grant = approved.grant.clone().unwrap();
    let verified = e
        .engine
        .verifier()
        .verify(
            &grant,
            &UserId::new("alice"),
            &DeviceId::new("LAPTOP-7F3K2"),
            Action::Uninstall,
            grant.grant.issued_at_ms,
            &HashSet::new(),
        )
        .unwrap();
    assert_eq!(verified.request_id.as_deref(), Some(r.id.as_str()));
    let last = approved
        .history
        .iter()
        .rev()
        .find(|t| t.to == RequestState::Approved)
        .unwrap();
    assert_eq!(last.actor, "dingtalk");
    let decided_by = approved
        .history
        .iter()
        .find(|t| t.note.as_deref().is_some_and(|n| n.contains("finish AGREE")));
    assert_eq!(
        decided_by.map(|t| t.actor.as_str()),
        Some("approver1"),
        "the approver is on the audit trail"
    );
    assert!(matches!(
        last.source,
        sase_approval::state::Source::External { .. }
    ));
    // Subscribers heard every state change.
    let mut seen = Vec::new();
    while let Ok(u) = updates.try_recv() {
        seen.push(u.state);
    }
    assert!(
        seen.contains(&RequestState::Pending) && seen.contains(&RequestState::Approved),
        "{seen:?}"
    );
}

#[tokio::test]
async fn refused_and_terminated_in_dingtalk() {
    let e = env(Arc::new(MemoryStore::new())).await;
    let refused = e.engine.submit(submit("bob")).await.unwrap();
    e.mock
        .refuse(refused.external_id.as_deref().unwrap(), None, Some("不同意"))
        .unwrap();
    e.wait_state(&refused.id, RequestState::Rejected).await;
    let revoked = e.engine.submit(submit("carol")).await.unwrap();
    e.mock
        .terminate(revoked.external_id.as_deref().unwrap(), Some("不需要了"))
        .unwrap();
    e.wait_state(&revoked.id, RequestState::Revoked).await;
    assert!(e.engine.get(&revoked.id).await.unwrap().grant.is_none());
}

#[tokio::test]
async fn console_actions_are_written_back_to_dingtalk() {
    let e = env(Arc::new(MemoryStore::new())).await;
    let r = e.engine.submit(submit("dave")).await.unwrap();
    let external = r.external_id.clone().unwrap();
    let approved = e.engine.approve(&r.id, "admin1", Some("ok")).await.unwrap();
    assert_eq!(approved.state, RequestState::Approved);
    assert!(approved.grant.is_some());
    let instance = e.instance(&external);
    assert_eq!(
        (instance["status"].as_str(), instance["result"].as_str()),
        (Some("COMPLETED"), Some("agree"))
    );
    // DingTalk's own finish event then changes nothing.
    assert!(
        e.mock
            .wait_for(WAIT, |_| e
                .outcomes
                .lock()
                .unwrap()
                .contains(&EventOutcome::Recorded))
            .await
    );
    let after = e.engine.get(&r.id).await.unwrap();
    assert_eq!(after.state, RequestState::Approved, "{:#?}", after.history);

    // Revoked after approval: the grant dies with it; approving again is illegal.
    let revoked = e
        .engine
        .revoke(&r.id, "admin1", Some("device reassigned"))
        .await
        .unwrap();
    assert_eq!(
        (revoked.state, revoked.grant.is_none()),
        (RequestState::Revoked, true)
    );
    assert!(matches!(
        e.engine.approve(&r.id, "admin1", None).await,
        Err(Error::IllegalTransition { .. })
    ));

    let rejected = e.engine.submit(submit("erin")).await.unwrap();
    e.engine.reject(&rejected.id, "admin2", Some("no")).await.unwrap();
    assert_eq!(
        e.instance(rejected.external_id.as_deref().unwrap())["result"],
        "refuse"
    );
    let revoke_pending = e.engine.submit(submit("frank")).await.unwrap();
    e.engine.revoke(&revoke_pending.id, "admin2", None).await.unwrap();
    assert_eq!(
        e.instance(revoke_pending.external_id.as_deref().unwrap())["status"],
        "TERMINATED"
    );
}

#[tokio::test]
async fn when_dingtalk_refuses_a_console_action_nothing_changes() {
    let e = env(Arc::new(MemoryStore::new())).await;
    let r = e.engine.submit(submit("gina")).await.unwrap();
    // The approver already decided in DingTalk, but the event was lost: the console's
    // write-back fails and the store is left consistent (still pending until reconciled).
    e.mock.set_faults(MockFaults {
        drop_events_next: 10,
        ..MockFaults::default()
    });
    e.mock
        .approve(r.external_id.as_deref().unwrap(), None, None)
        .unwrap();
    let err = e.engine.reject(&r.id, "admin", None).await.unwrap_err();
    assert!(
        matches!(&err, Error::Backend(b) if b.kind() == FailureKind::Permanent && b.operation() == "reject"),
        "{err:?}"
    );
    assert_eq!(e.engine.get(&r.id).await.unwrap().state, RequestState::Pending);
    // Reconciliation then finds the truth, at its first look (5 minutes after the filing).
    e.clock.advance(Duration::from_secs(5 * 60));
    let report = e.engine.reconcile(Duration::ZERO).await.unwrap();
    assert_eq!(report.changed, 1);
    assert_eq!(e.engine.get(&r.id).await.unwrap().state, RequestState::Approved);
}

#[tokio::test]
async fn duplicate_and_out_of_order_events_end_in_the_in_order_state() {
    let e = env(Arc::new(MemoryStore::new())).await;
    let r = e.engine.submit(submit("hank")).await.unwrap();
    let external = r.external_id.clone().unwrap();
    e.mock.set_faults(MockFaults {
        duplicate_events_next: 10,
        ..MockFaults::default()
    });
    e.mock.approve(&external, None, None).unwrap();
    e.wait_state(&r.id, RequestState::Approved).await;
    assert!(
        e.mock
            .wait_for(WAIT, |_| e
                .outcomes
                .lock()
                .unwrap()
                .contains(&EventOutcome::Duplicate))
            .await
    );
    let approvals = e
        .engine
        .get(&r.id)
        .await
        .unwrap()
        .history
        .iter()
        .filter(|t| t.to == RequestState::Approved && t.from != t.to)
        .count();
    assert_eq!(approvals, 1, "one state change however often the event came");

    // An older "start" event arriving after the decision is stale.
    let late_start = Event::from_json(&format!(
        r#"{{"EventType":"bpms_instance_change","eventId":"late-start","processInstanceId":"{external}","type":"start","EventTime":1}}"#
    ))
    .unwrap();
    assert_eq!(
        handle_event(&e.engine, &app_origin(&e.engine, APP), &late_start)
            .await
            .unwrap(),
        EventOutcome::Stale
    );
    assert_eq!(
        handle_event(&e.engine, &app_origin(&e.engine, APP), &late_start)
            .await
            .unwrap(),
        EventOutcome::Duplicate
    );
    assert_eq!(e.engine.get(&r.id).await.unwrap().state, RequestState::Approved);
}

#[tokio::test]
async fn a_lost_event_is_recovered_by_reconciliation() {
    let e = env(Arc::new(MemoryStore::new())).await;
    let r = e.engine.submit(submit("ivan")).await.unwrap();
    e.mock.set_faults(MockFaults {
        drop_events_next: 10,
        ..MockFaults::default()
    });
    e.mock
        .approve(r.external_id.as_deref().unwrap(), None, None)
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        e.engine.get(&r.id).await.unwrap().state,
        RequestState::Pending,
        "the event was lost"
    );
    assert_eq!(
        e.engine
            .reconcile(Duration::from_secs(3600))
            .await
            .unwrap()
            .checked,
        0,
        "too young to poll"
    );
    let report = e.engine.reconcile(Duration::ZERO).await.unwrap();
    assert_eq!(
        (report.checked, report.not_due),
        (0, 1),
        "not due before its first look"
    );
    e.clock.advance(Duration::from_secs(5 * 60));
    let report = e.engine.reconcile(Duration::ZERO).await.unwrap();
    assert_eq!((report.checked, report.changed, report.looked_up), (1, 1, 1));
    let approved = e.engine.get(&r.id).await.unwrap();
    assert_eq!(approved.state, RequestState::Approved);
    assert!(approved.grant.is_some());
}

#[tokio::test]
async fn an_outage_during_submit_is_created_later_and_an_ambiguous_create_is_never_duplicated() {
    let e = env(Arc::new(MemoryStore::new())).await;
    // Rate limited beyond the client's budget: the request waits, nothing is lost.
    e.mock.set_faults(MockFaults {
        rate_limit_next: 50,
        ..MockFaults::default()
    });
    let waiting = e.engine.submit(submit("judy")).await.unwrap();
    assert_eq!(
        (waiting.state, waiting.external_id.as_ref()),
        (RequestState::Submitted, None)
    );
    e.mock.set_faults(MockFaults::default());
    let report = e.engine.reconcile(Duration::ZERO).await.unwrap();
    assert_eq!(report.linked, 1);
    assert_eq!(
        e.engine.get(&waiting.id).await.unwrap().state,
        RequestState::Pending
    );

    // DingTalk created the instance but answered 500: the engine finds it instead of
    // creating a second one.
    let before = e.mock.instance_ids().len();
    e.mock.set_faults(MockFaults {
        create_then_fail_next: 1,
        ..MockFaults::default()
    });
    let uncertain = e.engine.submit(submit("kate")).await.unwrap();
    assert!(uncertain.create_uncertain);
    assert_eq!(e.mock.instance_ids().len(), before + 1);
    e.engine.reconcile(Duration::ZERO).await.unwrap();
    let linked = e.engine.get(&uncertain.id).await.unwrap();
    assert_eq!(linked.state, RequestState::Pending);
    assert_eq!(e.mock.instance_ids().len(), before + 1, "no duplicate instance");
    assert_eq!(
        linked.external_id.as_deref(),
        e.mock.instance_ids().last().map(String::as_str)
    );
}

#[tokio::test]
async fn a_restart_in_the_middle_of_a_pending_request_loses_nothing() {
    let db = support::TempDb::new("engine.sqlite");
    let e = env(Arc::new(db.open().await)).await;
    let r = e.engine.submit(submit("liam")).await.unwrap();
    let external = r.external_id.clone().unwrap();
    drop(e);

    // A new process on the same file: the request is there and DingTalk's decision lands.
    let e = env(Arc::new(db.open().await)).await;
    let reloaded = e.engine.get(&r.id).await.unwrap();
    assert_eq!(
        (reloaded.state, reloaded.external_id.as_deref()),
        (RequestState::Pending, Some(external.as_str()))
    );
    let finish = Event::from_json(&format!(
        r#"{{"EventType":"bpms_instance_change","eventId":"restart-1","processInstanceId":"{external}","type":"finish","result":"agree","staffId":"approver1","finishTime":{}}}"#,
        r.created_at_ms + 1000
    ))
    .unwrap();
    assert_eq!(
        handle_event(&e.engine, &app_origin(&e.engine, APP), &finish)
            .await
            .unwrap(),
        EventOutcome::Applied
    );
    drop(e);
    let store = db.open().await;
    let stored = store.get(&r.id).await.unwrap().unwrap();
    assert_eq!(stored.state, RequestState::Approved);
    assert!(stored.grant.is_some());
    assert_eq!(
        store
            .apply_event(&external, "restart-1", 0, &mut |_| Ok(None))
            .await
            .unwrap(),
        EventWrite::Duplicate,
        "the processed event is remembered"
    );
}

#[tokio::test]
async fn mappings_are_checked_against_the_live_form_with_every_problem_and_its_path() {
    let e = env(Arc::new(MemoryStore::new())).await;
    let client = client_of(&e.mock);
    let form = client
        .workflow()
        .form_schema(&ProcessCode::new(CODE))
        .await
        .unwrap();
    let wf = workflow();
    assert_eq!(form_problems(&wf, 0, &wf.mappings[0], &form), []);
    assert_eq!(verify_workflow(&client, &wf).await, Verification::Verified);

    // A misspelt label and a required form field left unmapped: both, with their paths.
    let mut wrong = workflow();
    let fields = &mut wrong.mappings[0].fields;
    fields.insert("reason".into(), "卸载原由".into());
    fields.insert("app_version".into(), "版本号".into());
    let problems = form_problems(&wrong, 0, &wrong.mappings[0], &form);
    let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "workflows.wf-dingtalk.mappings[0].fields.app_version",
            "workflows.wf-dingtalk.mappings[0].fields.reason",
            "workflows.wf-dingtalk.mappings[0].fields",
        ],
        "{problems:#?}"
    );
    assert!(
        problems[1].reason.contains("no field labelled `卸载原由`"),
        "{}",
        problems[1]
    );
    assert!(
        problems[1].reason.contains("`卸载原因`"),
        "the form's labels are listed: {}",
        problems[1]
    );
    assert!(
        problems[2].reason.contains("required field `卸载原因`"),
        "{}",
        problems[2]
    );
    match verify_workflow(&client, &wrong).await {
        Verification::Invalid { problems: found } => assert_eq!(found, problems),
        other => panic!("{other:?}"),
    }

    // The template's own rules, without DingTalk: the reason must be mapped.
    let mut no_reason = workflow();
    no_reason.mappings[0].fields.remove("reason");
    let templates = [sase_approval::definition::Template::app_uninstall()];
    let problems = no_reason.problems(&templates);
    assert_eq!(problems.len(), 1, "{problems:#?}");
    assert_eq!(
        problems[0].path,
        "workflows.wf-dingtalk.mappings[0].fields.reason"
    );
    assert!(no_reason.validate(&templates).is_err());

    let mut unknown_field = workflow();
    unknown_field.mappings[0]
        .fields
        .insert("shoe_size".into(), "设备名称".into());
    let err = unknown_field.validate(&templates).unwrap_err();
    assert!(err.to_string().contains("shoe_size"), "{err}");
    let mut twice = workflow();
    twice.mappings.push(twice.mappings[0].clone());
    assert!(twice.validate(&templates).is_err());
}

#[tokio::test]
async fn a_workflow_dingtalk_refuses_names_what_to_fix_and_one_it_cannot_ask_about_is_unverified() {
    let e = env(Arc::new(MemoryStore::new())).await;
    let wf = workflow();
    let wrong_secret = DingTalkClient::builder(Credentials::new(APP, "not-the-secret"))
        .api_base(e.mock.base_url())
        .build()
        .unwrap();
    match verify_workflow(&wrong_secret, &wf).await {
        Verification::Invalid { problems } => {
            assert_eq!(problems.len(), 1, "{problems:#?}");
            assert_eq!(problems[0].path, "workflows.wf-dingtalk.dingtalk.client_secret");
            assert!(
                problems[0].reason.contains("invalidClientIdOrSecret"),
                "{}",
                problems[0]
            );
        }
        other => panic!("{other:?}"),
    }

    let mut unknown_form = workflow();
    unknown_form.mappings[0].process_code = ProcessCode::new("PROC-NOPE");
    match verify_workflow(&client_of(&e.mock), &unknown_form).await {
        Verification::Invalid { problems } => {
            assert_eq!(problems[0].path, "workflows.wf-dingtalk.mappings[0].process_code");
            assert!(problems[0].reason.contains("PROC-NOPE"), "{}", problems[0]);
        }
        other => panic!("{other:?}"),
    }

    // Nothing listens there.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let nowhere = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let unreachable = DingTalkClient::builder(Credentials::new(APP, SECRET))
        .api_base(nowhere)
        .retry(dingtalk_sdk::retry::RetryPolicy::none())
        .build()
        .unwrap();
    match verify_workflow(&unreachable, &wf).await {
        Verification::Unverified { reason } => assert!(reason.contains("could not be asked"), "{reason}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn undecided_requests_expire_and_their_instance_is_revoked() {
    let e = env(Arc::new(MemoryStore::new())).await;
    let client = client_of(&e.mock);
    let wf = workflow();
    let clock = ManualClock::starting_now();
    let expiring = Engine::builder(Arc::new(MemoryStore::new()), GrantSigner::from_bytes(&[9; 32]))
        .workflow(wf.clone(), Arc::new(DingTalkBackend::new(client, wf).unwrap()))
        .expire_after(Duration::from_secs(7 * 24 * 3600))
        .clock(Arc::new(clock.clone()))
        .build()
        .unwrap();
    let r = expiring.submit(submit("mona")).await.unwrap();
    clock.advance(Duration::from_secs(6 * 24 * 3600));
    expiring.reconcile(Duration::ZERO).await.unwrap();
    assert_eq!(
        expiring.get(&r.id).await.unwrap().state,
        RequestState::Pending,
        "not due yet"
    );
    clock.advance(Duration::from_secs(24 * 3600 + 1));
    expiring.reconcile(Duration::ZERO).await.unwrap();
    assert_eq!(expiring.get(&r.id).await.unwrap().state, RequestState::Expired);
    assert_eq!(
        e.instance(r.external_id.as_deref().unwrap())["status"],
        "TERMINATED"
    );
}

#[tokio::test]
async fn stream_delivery_feeds_the_engine_like_the_callback_route() {
    use dingtalk_sdk::stream::client::StreamClient;
    let mock = MockDingTalk::builder()
        .app(MockApp::new(APP, SECRET).events(TOKEN, AES_KEY).stream(true))
        .process(form())
        .start()
        .await
        .unwrap();
    let mut wf = workflow();
    if let WorkflowKind::DingTalk(settings) = &mut wf.kind {
        settings.delivery = Delivery::Stream;
    }
    let engine = engine_on(client_of(&mock), wf);
    let stream = StreamClient::builder(APP, SECRET)
        .api_base(mock.base_url())
        .build()
        .unwrap();
    let engine_for_stream = Arc::clone(&engine);
    let task = tokio::spawn(async move {
        stream
            .run(event_handler(&engine_for_stream, APP), std::future::pending())
            .await
    });
    assert!(mock.gateway().wait_for(WAIT, |g| g.connection_count() == 1).await);
    let r = engine.submit(submit("nina")).await.unwrap();
    mock.approve(r.external_id.as_deref().unwrap(), None, None)
        .unwrap();
    let mut approved = false;
    for _ in 0..500 {
        if engine.get(&r.id).await.unwrap().state == RequestState::Approved {
            approved = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(approved, "the Stream event moved the request");
    assert!(
        mock.gateway().wait_for(WAIT, |g| g.pending_count() == 0).await,
        "every event ACKed SUCCESS"
    );
    task.abort();
}

/// How many calls the mock saw to `path` (`method` and path, without the query).
fn calls(mock: &MockDingTalk, method: &str, path: &str) -> usize {
    mock.journal()
        .iter()
        .filter(|j| j.method == method && j.path == path)
        .count()
}

const GET_INSTANCE: &str = "/v1.0/workflow/processInstances";
const LIST_IDS: &str = "/v1.0/workflow/processes/instanceIds/query";

#[tokio::test]
async fn reconciliation_lists_running_instances_and_asks_only_about_the_others() {
    let e = env(Arc::new(MemoryStore::new())).await;
    // 25 requesters with pending requests; two decided in DingTalk with the events lost.
    let mut requests = Vec::new();
    for n in 0..25 {
        requests.push(e.engine.submit(submit(&format!("user{n:02}"))).await.unwrap());
    }
    e.mock.set_faults(MockFaults {
        drop_events_next: 100,
        ..MockFaults::default()
    });
    for decided in &requests[..2] {
        e.mock
            .approve(decided.external_id.as_deref().unwrap(), None, None)
            .unwrap();
    }
    let (gets, lists) = (
        calls(&e.mock, "GET", GET_INSTANCE),
        calls(&e.mock, "POST", LIST_IDS),
    );
    e.clock.advance(Duration::from_secs(5 * 60));
    let report = e.engine.reconcile(Duration::ZERO).await.unwrap();
    assert_eq!(
        (report.checked, report.changed, report.looked_up),
        (25, 2, 2),
        "{report:?}"
    );
    // One list per 10 requesters (each page holds their ≤ 20 running instances), and a GET
    // for each of the two that are no longer running: 5 calls instead of 25.
    assert_eq!(calls(&e.mock, "POST", LIST_IDS) - lists, 3);
    assert_eq!(calls(&e.mock, "GET", GET_INSTANCE) - gets, 2);
    for decided in &requests[..2] {
        assert_eq!(
            e.engine.get(&decided.id).await.unwrap().state,
            RequestState::Approved
        );
    }
    // The next pass, a minute later: nothing is due, nothing is called.
    let total = e.mock.journal().len();
    e.clock.advance(Duration::from_secs(60));
    let report = e.engine.reconcile(Duration::ZERO).await.unwrap();
    assert_eq!((report.checked, report.not_due), (0, 23));
    assert_eq!(e.mock.journal().len(), total, "no call");
    // At the 30-minute point the 23 are looked at again: 3 lists, no GET.
    e.clock.advance(Duration::from_secs(25 * 60));
    let report = e.engine.reconcile(Duration::ZERO).await.unwrap();
    assert_eq!((report.checked, report.looked_up), (23, 0));
    assert_eq!(e.mock.journal().len(), total + 3);
}

#[tokio::test]
async fn an_instance_dingtalk_does_not_know_ends_its_request_as_failed() {
    let store = Arc::new(MemoryStore::new());
    let e = env(store.clone()).await;
    let r = e.engine.submit(submit("mona")).await.unwrap();
    // As after the demo's mock restarted: the instance id means nothing to DingTalk.
    let mut gone = store.get(&r.id).await.unwrap().unwrap();
    gone.external_id = Some("1b04196e42356810000404MOCK".into());
    store.update(&gone).await.unwrap();
    e.clock.advance(Duration::from_secs(5 * 60));
    let report = e.engine.reconcile(Duration::ZERO).await.unwrap();
    assert_eq!((report.changed, report.looked_up), (1, 1), "{report:?}");
    let failed = e.engine.get(&r.id).await.unwrap();
    assert_eq!(failed.state, RequestState::Failed);
    let note = failed.history.last().unwrap().note.clone().unwrap_or_default();
    assert!(note.contains("does not exist"), "{note}");
    // Not polled for ever: it has ended.
    let total = e.mock.journal().len();
    e.clock.advance(Duration::from_secs(2 * 24 * 3600));
    let report = e.engine.reconcile(Duration::ZERO).await.unwrap();
    assert_eq!(report.checked, 0);
    assert_eq!(e.mock.journal().len(), total);
}

/// 200 requests over a simulated 30 days, decided within 5 days of filing, the events of
/// one decision in 20 lost: every request ends in DingTalk's state within a day of its
/// decision, and the month costs fewer calls than a standard org's monthly quota (5,000).
#[tokio::test]
async fn a_month_of_requests_with_lost_events_converges_within_the_monthly_quota() {
    const MINUTE: u64 = 60;
    const HOUR: u64 = 60 * MINUTE;
    const PASS: Duration = Duration::from_secs(10 * MINUTE);
    let e = env(Arc::new(MemoryStore::new())).await;
    let start = e.clock.now_ms();
    let at = |secs: u64| start + i64::try_from(secs * 1000).unwrap();
    // Filed one every 20 minutes; decided 1 to 120 hours later (a spread, not a pattern).
    let plan: Vec<(i64, i64, bool)> = (0..200u64)
        .map(|n| {
            let filed = at(n * 20 * MINUTE);
            let decided = filed + i64::try_from((1 + (n * 7919) % 120) * HOUR * 1000).unwrap();
            (filed, decided, n % 20 == 7)
        })
        .collect();
    let mut requests: Vec<Option<RequestId>> = vec![None; plan.len()];
    let mut decided_at: Vec<Option<i64>> = vec![None; plan.len()];
    let mut converged_after: Vec<Option<i64>> = vec![None; plan.len()];
    let month = 30 * 24 * 6; // passes of 10 minutes
    for _ in 0..month {
        let now = e.clock.now_ms();
        for (n, (filed, decided, lost)) in plan.iter().enumerate() {
            if requests[n].is_none() && *filed <= now {
                let r = e.engine.submit(submit(&format!("sim{n:03}"))).await.unwrap();
                requests[n] = Some(r.id);
            }
            let Some(id) = &requests[n] else { continue };
            if decided_at[n].is_none() && *decided <= now {
                let external = e.engine.get(id).await.unwrap().external_id.unwrap();
                if *lost {
                    e.mock.set_faults(MockFaults {
                        drop_events_next: 2,
                        ..MockFaults::default()
                    });
                }
                e.mock.approve(&external, None, None).unwrap();
                // The decision's events are delivered (or dropped) before the next step.
                let finished = |d: &dingtalk_sdk::mock::Delivery| {
                    d.process_instance_id.as_deref() == Some(external.as_str())
                        && d.change.as_deref() == Some("finish")
                };
                for _ in 0..1000 {
                    if e.mock.deliveries().iter().any(finished) {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }

                decided_at[n] = Some(now);
            }
            if let (Some(decided), None) = (decided_at[n], converged_after[n]) {
                if e.engine.get(id).await.unwrap().state == RequestState::Approved {
                    converged_after[n] = Some(now - decided);
                }
            }
        }
        e.engine.reconcile(Duration::ZERO).await.unwrap();
        e.clock.advance(PASS);
    }
    let lost = plan.iter().filter(|p| p.2).count();
    let dropped = e
        .mock
        .deliveries()
        .iter()
        .filter(|d| d.channel == dingtalk_sdk::mock::Channel::Dropped)
        .count();
    assert!(dropped >= lost, "{dropped} events dropped for {lost} decisions");
    let bound = i64::try_from(24 * HOUR * 1000 + 2 * PASS.as_secs() * 1000).unwrap();
    for (n, after) in converged_after.iter().enumerate() {
        let after = after.unwrap_or_else(|| panic!("request {n} never converged"));
        assert!(
            after <= bound,
            "request {n} converged {after} ms after its decision"
        );
    }
    let worst_lost = plan
        .iter()
        .zip(&converged_after)
        .filter(|(p, _)| p.2)
        .filter_map(|(_, c)| *c)
        .max()
        .unwrap();
    let journal = e.mock.journal();
    let count = |method: &str, path: &str| {
        journal
            .iter()
            .filter(|j| j.method == method && j.path == path)
            .count()
    };
    let quota_calls = journal
        .iter()
        .filter(|j| !j.path.contains("oauth2") && !j.path.contains("gettoken"))
        .count();
    println!(
        "30 days, 200 requests, {lost} decisions' events lost ({dropped} events): {quota_calls} quota calls \
         ({} creates, {} lists, {} gets); worst convergence after a lost event {} min",
        count("POST", GET_INSTANCE),
        count("POST", LIST_IDS),
        count("GET", GET_INSTANCE),
        worst_lost / 60_000
    );
    assert!(quota_calls <= 5_000, "{quota_calls} calls in a month");
}

#[tokio::test]
async fn reconciliation_stops_at_its_share_of_the_monthly_budget_and_filings_go_on() {
    // Ten calls a month, reconciliation allowed the first half.
    let budget = CallBudget::default().qps_per_api(None).calls_per_month(Some(10));
    let e = env_with(Arc::new(MemoryStore::new()), budget).await;
    for n in 0..4 {
        e.engine.submit(submit(&format!("quota{n}"))).await.unwrap();
    }
    e.clock.advance(Duration::from_secs(5 * 60));
    let report = e.engine.reconcile(Duration::ZERO).await.unwrap();
    assert_eq!((report.checked, report.looked_up), (4, 0));
    assert_eq!(
        calls(&e.mock, "POST", LIST_IDS),
        1,
        "4 creates and a list: half the month"
    );
    // At the next look reconciliation is out of its share: nothing is sent.
    let sent = e.mock.journal().len();
    e.clock.advance(Duration::from_secs(25 * 60));
    let report = e.engine.reconcile(Duration::ZERO).await.unwrap();
    assert_eq!(report.changed, 0);
    assert_eq!(e.mock.journal().len(), sent, "no call");
    // Filings still go, until the month is used up.
    let filed = e.engine.submit(submit("quota-late")).await.unwrap();
    assert_eq!(filed.state, RequestState::Pending);
    assert_eq!(e.mock.journal().len(), sent + 1);
}

/// A burst of 100 filings against DingTalk's 20 calls a second per app and API (the mock
/// enforcing it on real time): the client's budget paces the creates, so each request gets
/// exactly one instance and DingTalk throttles (nearly) none of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_burst_of_filings_stays_under_dingtalks_qps_limit() {
    let mock = MockDingTalk::builder()
        .app(MockApp::new(APP, SECRET))
        .process(form())
        .quotas(dingtalk_sdk::mock::MockQuotas {
            qps_per_app_and_api: Some(20),
            calls_per_month: None,
        })
        .start()
        .await
        .unwrap();
    let client = client_of(&mock);
    let engine = engine_on(client.clone(), workflow());
    let filings: Vec<_> = (0..100)
        .map(|n| {
            let engine = Arc::clone(&engine);
            tokio::spawn(async move { engine.submit(submit(&format!("burst{n:03}"))).await })
        })
        .collect();
    let mut instances = HashSet::new();
    for filing in filings {
        let request = filing.await.unwrap().unwrap();
        assert_eq!(request.state, RequestState::Pending, "{request:?}");
        assert!(
            instances.insert(request.external_id.unwrap()),
            "an instance per request"
        );
    }
    assert_eq!(mock.instance_ids().len(), 100, "exactly one instance per filing");
    let usage = mock.usage();
    let creates = &usage.apps[APP].by_api["POST /v1.0/workflow/processInstances"];
    println!(
        "100 filings: {} create calls, {} answered 403 (QPS)",
        creates.calls, creates.refused_qps
    );
    assert!(creates.refused_qps <= 2, "a 403 storm: {creates:?}");
    assert_eq!(client.usage().throttled, creates.refused_qps);
}

/// A DingTalk workflow files only under the templates it maps a form for: a logoff request
/// on a workflow with only the uninstall form is refused before anything is stored (it could
/// never be created in DingTalk); with a logoff form it is created on that form.
#[tokio::test]
async fn a_request_is_filed_only_under_a_template_the_workflow_maps() {
    let env = env(Arc::new(MemoryStore::new())).await;
    let logoff = |user: &str| {
        SubmitRequest::new(
            Action::Logoff,
            WorkflowId::new("wf-dingtalk"),
            UserId::new(user),
            DeviceId::new("LAPTOP-7F3K2"),
            "handing the laptop back",
        )
    };
    let refused = env.engine.file(logoff("alice")).await.unwrap_err();
    assert!(
        matches!(&refused, Error::InvalidRequest { field, reason }
            if field == "template" && reason.contains("maps no DingTalk form for template `app_logoff`")),
        "{refused:?}"
    );
    assert!(env.mock.instance_ids().is_empty(), "nothing created");
    assert_eq!(
        env.engine
            .open_request(
                &UserId::new("alice"),
                &DeviceId::new("LAPTOP-7F3K2"),
                Action::Logoff
            )
            .await
            .unwrap(),
        None,
        "nothing stored"
    );

    // The same app's logoff form, mapped: created there.
    let mut wf = workflow();
    let mut logoff_form = wf.mappings[0].clone();
    logoff_form.template = "app_logoff".into();
    wf.mappings.push(logoff_form);
    let engine = engine_on(client_of(&env.mock), wf);
    let request = engine.file(logoff("alice")).await.unwrap().into_request();
    assert_eq!(
        (request.template.as_str(), request.action),
        ("app_logoff", Action::Logoff)
    );
    let id = request.external_id.unwrap();
    assert_eq!(env.instance(&id)["status"], "RUNNING", "{}", env.instance(&id));
}
