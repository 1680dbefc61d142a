//! An event decides only requests of the app and workflow that sent it: the DingTalk app whose
//! crypto verified it (its origin) must be the app of the request's workflow, and the form it
//! names must be the one that workflow maps. Anything else is refused, changes nothing and is
//! not remembered (so it cannot shadow the genuine event with the same key).

#![expect(
    clippy::unwrap_used,
    reason = "a test fails loudly on the first unexpected value"
)]

use dingtalk_sdk::event::Event;
use dingtalk_sdk::ProcessCode;
use sase_approval::backend::BuiltinBackend;
use sase_approval::definition::{
    new_callback_id, Delivery, DingTalkSettings, Mapping, Workflow, WorkflowKind,
};
use sase_approval::dingtalk::{app_origin, handle_event};
use sase_approval::engine::{Engine, EventOutcome, SubmitRequest};
use sase_approval::state::{ApprovalRequest, RequestState};
use sase_approval::store::MemoryStore;
use sase_policy::ids::{DeviceId, UserId, WorkflowId};
use sase_policy::GrantSigner;
use std::sync::Arc;

/// A DingTalk workflow `id` on app `app`, mapping uninstalls to form `form`. Its instances are
/// made by the built-in backend: what is tested is where events may land, not DingTalk's API.
fn workflow(id: &str, app: &str, form: &str) -> Workflow {
    Workflow {
        id: WorkflowId::new(id),
        name: id.into(),
        kind: WorkflowKind::DingTalk(DingTalkSettings {
            client_id: app.into(),
            client_secret: "secret".into(),
            token: "token".into(),
            aes_key: "kYd8sJ2pQ7wE4rT9uV1xZ3cB6nM0aL5gH8jK2fD4sAx".into(),
            receiver_id: app.into(),
            delivery: Delivery::HttpPush,
            dept_id: -1,
        }),
        mappings: vec![Mapping {
            template: "app_uninstall".into(),
            process_code: ProcessCode::new(form),
            fields: [("reason".to_owned(), "原因".to_owned())].into(),
        }],
        callback_id: new_callback_id(),
    }
}

/// Apps A (workflows `wf-a`, `wf-a2`, one form each) and B (`wf-b`).
fn engine() -> Engine {
    let mut builder = Engine::builder(Arc::new(MemoryStore::new()), GrantSigner::from_bytes(&[3; 32]));
    for w in [
        workflow("wf-a", "dingappa", "PROC-A"),
        workflow("wf-a2", "dingappa", "PROC-A2"),
        workflow("wf-b", "dingappb", "PROC-B"),
    ] {
        builder = builder.workflow(w, Arc::new(BuiltinBackend));
    }
    builder.build().unwrap()
}

async fn file(engine: &Engine, workflow: &str) -> ApprovalRequest {
    let submit = SubmitRequest::uninstall(
        WorkflowId::new(workflow),
        UserId::new("bob"),
        // One open request per user, device and action: a device per workflow here.
        DeviceId::new(format!("laptop-{workflow}")),
        "reinstall",
    );
    engine.submit(submit).await.unwrap()
}

/// DingTalk's finish/agree for `instance`, naming `form` (or no form, as historical shapes).
fn approval(event_id: &str, instance: &str, form: Option<&str>) -> Event {
    let form = form
        .map(|f| format!(r#","processCode":"{f}""#))
        .unwrap_or_default();
    Event::from_json(&format!(
        r#"{{"EventType":"bpms_instance_change","eventId":"{event_id}","processInstanceId":"{instance}","type":"finish","result":"agree","finishTime":1{form}}}"#
    ))
    .unwrap()
}

#[tokio::test]
async fn another_apps_genuine_event_cannot_approve_a_request() {
    let engine = engine();
    let b = file(&engine, "wf-b").await;
    let instance = b.external_id.clone().unwrap();
    let (app_a, app_b) = (app_origin(&engine, "dingappa"), app_origin(&engine, "dingappb"));

    // Verified by app A (its crypto, its Request URL), about B's instance, even naming B's form.
    let forged = approval("ev-1", &instance, Some("PROC-B"));
    assert_eq!(
        handle_event(&engine, &app_a, &forged).await.unwrap(),
        EventOutcome::Refused
    );
    let after = engine.get(&b.id).await.unwrap();
    assert_eq!((after.state, after.grant.as_ref()), (RequestState::Pending, None));

    // The genuine event with the same key is not shadowed by the refused one.
    assert_eq!(
        handle_event(&engine, &app_b, &forged).await.unwrap(),
        EventOutcome::Applied
    );
    assert!(engine.get(&b.id).await.unwrap().grant.is_some());
}

#[tokio::test]
async fn an_event_naming_another_form_of_the_same_app_is_refused() {
    let engine = engine();
    let a2 = file(&engine, "wf-a2").await;
    let instance = a2.external_id.clone().unwrap();
    let app_a = app_origin(&engine, "dingappa");
    let wrong_form = approval("ev-2", &instance, Some("PROC-A"));
    assert_eq!(
        handle_event(&engine, &app_a, &wrong_form).await.unwrap(),
        EventOutcome::Refused
    );
    assert_eq!(engine.get(&a2.id).await.unwrap().state, RequestState::Pending);
}

#[tokio::test]
async fn workflows_sharing_an_app_keep_working() {
    let engine = engine();
    let (a, a2) = (file(&engine, "wf-a").await, file(&engine, "wf-a2").await);
    let app_a = app_origin(&engine, "dingappa");
    assert_eq!(app_a.workflows().len(), 2);
    let event = approval("ev-3", a2.external_id.as_deref().unwrap(), Some("PROC-A2"));
    assert_eq!(
        handle_event(&engine, &app_a, &event).await.unwrap(),
        EventOutcome::Applied
    );
    // A historical shape without `processCode`: the app check stands alone.
    let event = approval("ev-4", a.external_id.as_deref().unwrap(), None);
    assert_eq!(
        handle_event(&engine, &app_a, &event).await.unwrap(),
        EventOutcome::Applied
    );
    assert_eq!(engine.get(&a.id).await.unwrap().state, RequestState::Approved);
}

/// Workflows replaced at runtime: a workflow moved to another app is decided by that app's
/// events from then on, not by its old app's; a removed workflow takes no filings; an invalid
/// set is refused whole.
#[tokio::test]
async fn workflows_replaced_at_runtime_move_where_events_may_land() {
    use sase_approval::dingtalk::event_handler;
    let engine = Arc::new(engine());
    let a = file(&engine, "wf-a").await;
    let instance = a.external_id.clone().unwrap();
    // Handlers are made once (a Request URL, a Stream connection) and outlive the change.
    let (on_a, on_c) = (
        event_handler(&engine, "dingappa"),
        event_handler(&engine, "dingappc"),
    );

    let mut invalid = workflow("wf-x", "dingappc", "PROC-X");
    invalid.mappings[0]
        .fields
        .insert("not_a_field".into(), "X".into());
    assert!(engine
        .set_workflows([(invalid, Arc::new(BuiltinBackend) as _)])
        .is_err());
    assert!(
        engine.workflow(&WorkflowId::new("wf-a")).is_some(),
        "nothing replaced"
    );

    engine
        .set_workflows([
            (
                workflow("wf-a", "dingappc", "PROC-A"),
                Arc::new(BuiltinBackend) as _,
            ),
            (
                workflow("wf-b", "dingappb", "PROC-B"),
                Arc::new(BuiltinBackend) as _,
            ),
        ])
        .unwrap();
    on_a(approval("ev-5", &instance, Some("PROC-A"))).await.unwrap();
    assert_eq!(
        engine.get(&a.id).await.unwrap().state,
        RequestState::Pending,
        "app A no longer decides wf-a"
    );
    on_c(approval("ev-5", &instance, Some("PROC-A"))).await.unwrap();
    assert_eq!(engine.get(&a.id).await.unwrap().state, RequestState::Approved);

    let refused = engine
        .submit(SubmitRequest::uninstall(
            WorkflowId::new("wf-a2"),
            UserId::new("bob"),
            DeviceId::new("laptop-9"),
            "reinstall",
        ))
        .await;
    assert!(refused.is_err(), "wf-a2 was removed");
    assert_eq!(engine.workflows().len(), 2);
}
