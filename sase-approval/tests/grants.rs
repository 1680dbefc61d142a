//! Revocation reaches grants: a console action is never a silent no-op, and a grant is
//! consumed once, online, where revocation, expiry, reuse and the wrong device are refused.

#![expect(
    clippy::unwrap_used,
    clippy::panic,
    reason = "a test fails loudly on the first unexpected value"
)]

use sase_approval::backend::{BuiltinBackend, ExternalStatus};
use sase_approval::clock::ManualClock;
use sase_approval::engine::{Engine, EventOutcome, SubmitRequest};
use sase_approval::event::{EventOrigin, ExternalChange, ExternalEvent};
use sase_approval::state::{ApprovalRequest, RequestState};
use sase_approval::store::MemoryStore;
use sase_approval::{Error, GrantRefusal};
use sase_policy::ids::{DeviceId, UserId, WorkflowId};
use sase_policy::{GrantSigner, SignedGrant};
use std::sync::Arc;
use std::time::Duration;

mod support;

fn engine(clock: &ManualClock) -> Engine {
    Engine::builder(Arc::new(MemoryStore::new()), GrantSigner::from_bytes(&[4; 32]))
        .workflow(support::builtin_workflow("wf"), Arc::new(BuiltinBackend))
        .grant_ttl(Duration::from_secs(600))
        .clock(Arc::new(clock.clone()))
        .build()
        .unwrap()
}

async fn approved(engine: &Engine) -> (ApprovalRequest, SignedGrant) {
    let submit = SubmitRequest::uninstall(WorkflowId::new("wf"), UserId::new("u"), DeviceId::new("d"), "why");
    let r = engine.submit(submit).await.unwrap();
    let r = engine.approve(&r.id, "admin", None).await.unwrap();
    let grant = r.grant.clone().unwrap();
    (r, grant)
}

fn refusal(result: sase_approval::Result<ApprovalRequest>) -> GrantRefusal {
    match result {
        Err(Error::GrantRefused { refusal }) => refusal,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn a_console_revoke_after_an_event_from_an_ahead_clock_applies() {
    let clock = ManualClock::starting_now();
    let engine = engine(&clock);
    let submit = SubmitRequest::uninstall(WorkflowId::new("wf"), UserId::new("u"), DeviceId::new("d"), "why");
    let r = engine.submit(submit).await.unwrap();
    // The approving event carries DingTalk's time, an hour ahead of this server's clock.
    let approve = ExternalEvent::new(
        r.external_id.clone().unwrap(),
        "ev-1",
        "approver",
        ExternalChange::Status(ExternalStatus::Approved),
    )
    .at_ms(Some(clock_now(&clock) + 3_600_000));
    let origin = EventOrigin::new("test", vec![WorkflowId::new("wf")]);
    assert_eq!(
        engine.handle_external(&origin, &approve).await.unwrap(),
        EventOutcome::Applied
    );

    let revoked = engine
        .revoke(&r.id, "admin", Some("changed my mind"))
        .await
        .unwrap();
    assert_eq!(
        (revoked.state, revoked.grant.as_ref()),
        (RequestState::Revoked, None)
    );
    assert_eq!(engine.get(&r.id).await.unwrap().state, RequestState::Revoked);
}

fn clock_now(clock: &ManualClock) -> i64 {
    sase_approval::clock::Clock::now_ms(clock)
}

#[tokio::test]
async fn a_grant_is_consumed_once_by_its_own_device() {
    let clock = ManualClock::starting_now();
    let engine = engine(&clock);
    let (r, grant) = approved(&engine).await;
    let (user, device) = (UserId::new("u"), DeviceId::new("d"));
    assert_eq!(
        refusal(
            engine
                .consume_grant(&grant, &user, &DeviceId::new("another"))
                .await
        ),
        GrantRefusal::Foreign
    );
    let consumed = engine.consume_grant(&grant, &user, &device).await.unwrap();
    assert!(consumed.grant_consumed_at_ms.is_some());
    assert!(consumed
        .history
        .last()
        .unwrap()
        .note
        .as_deref()
        .unwrap()
        .contains("consumed"));
    assert_eq!(
        refusal(engine.consume_grant(&grant, &user, &device).await),
        GrantRefusal::Used
    );
    assert_eq!(engine.get(&r.id).await.unwrap().state, RequestState::Approved);
}

#[tokio::test]
async fn a_revoked_expired_or_forged_grant_is_refused() {
    let clock = ManualClock::starting_now();
    let engine = engine(&clock);
    let (user, device) = (UserId::new("u"), DeviceId::new("d"));

    let (revoked, grant) = approved(&engine).await;
    engine.revoke(&revoked.id, "admin", None).await.unwrap();
    assert_eq!(
        refusal(engine.consume_grant(&grant, &user, &device).await),
        GrantRefusal::Revoked
    );

    let (_, grant) = approved(&engine).await;
    clock.advance(Duration::from_secs(601));
    assert_eq!(
        refusal(engine.consume_grant(&grant, &user, &device).await),
        GrantRefusal::Expired
    );

    let (_, genuine) = approved(&engine).await;
    let forged = GrantSigner::from_bytes(&[6; 32]).sign(genuine.grant.clone());
    assert_eq!(
        refusal(engine.consume_grant(&forged, &user, &device).await),
        GrantRefusal::Unknown
    );
    let mut elsewhere = genuine.clone();
    elsewhere.grant.request_id = Some("req-none".into());
    assert_eq!(
        refusal(engine.consume_grant(&elsewhere, &user, &device).await),
        GrantRefusal::Unknown
    );
}
