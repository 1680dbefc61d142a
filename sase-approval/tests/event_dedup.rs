//! Event de-duplication: an event's key is recorded together with the change it causes (an
//! event that changed nothing is not remembered, and concurrent deliveries of one event apply
//! it once), and the record is bounded: reconciliation prunes event keys older than the
//! engine's retention, and a redelivery after that is applied again harmlessly.

#![expect(
    clippy::unwrap_used,
    reason = "a test fails loudly on the first unexpected value"
)]

use dingtalk_sdk::event::Event;
use sase_approval::backend::BuiltinBackend;
use sase_approval::clock::ManualClock;
use sase_approval::engine::{Engine, EventOutcome, SubmitRequest};
use sase_approval::event::EventOrigin;
use sase_approval::state::{ApprovalRequest, RequestState};
use sase_approval::store::{ApprovalStore, EventWrite, MemoryStore};
use sase_policy::ids::{DeviceId, UserId, WorkflowId};
use sase_policy::GrantSigner;
use std::sync::Arc;
use std::time::Duration;

mod support;

/// The events of these tests decide requests of the workflow `wf`.
async fn handle_event(engine: &Engine, event: &Event) -> sase_approval::Result<EventOutcome> {
    let origin = EventOrigin::new("test app", vec![WorkflowId::new("wf")]);
    sase_approval::dingtalk::handle_event(engine, &origin, event).await
}

fn engine(store: Arc<dyn ApprovalStore>, retention: Option<Duration>, clock: &ManualClock) -> Arc<Engine> {
    let workflow = support::builtin_workflow("wf");
    let mut builder = Engine::builder(store, GrantSigner::from_bytes(&[7; 32]))
        .workflow(workflow, Arc::new(BuiltinBackend))
        .clock(Arc::new(clock.clone()));
    if let Some(retention) = retention {
        builder = builder.event_retention(retention);
    }
    Arc::new(builder.build().unwrap())
}

/// A pending request on the workflow `wf`.
async fn submit(engine: &Engine) -> ApprovalRequest {
    engine
        .submit(SubmitRequest::uninstall(
            WorkflowId::new("wf"),
            UserId::new("u"),
            DeviceId::new("d"),
            "why",
        ))
        .await
        .unwrap()
}

fn task_event(id: &str, external: &str) -> Event {
    Event::from_json(&format!(
        r#"{{"EventType":"bpms_task_change","eventId":"{id}","processInstanceId":"{external}","taskId":7,"type":"start","staffId":"manager"}}"#
    ))
    .unwrap()
}

async fn dedup(store: Arc<dyn ApprovalStore>) {
    let engine = engine(Arc::clone(&store), None, &ManualClock::starting_now());
    let r = submit(&engine).await;
    let external = r.external_id.clone().unwrap();

    // Not ours (yet): ignored, and its key is not remembered.
    let early = task_event("ev-early", "pi-unknown");
    assert_eq!(
        handle_event(&engine, &early).await.unwrap(),
        EventOutcome::Ignored
    );
    assert_eq!(
        store
            .apply_event(&external, &early.idempotency_key(), 1, &mut |_| Ok(None))
            .await
            .unwrap(),
        EventWrite::Unchanged,
        "the key was not recorded"
    );

    // One event delivered eight times at once: applied once, the rest are duplicates.
    let event = task_event("ev-task", &external);
    let deliveries: Vec<_> = (0..8)
        .map(|_| {
            let (engine, event) = (Arc::clone(&engine), event.clone());
            tokio::spawn(async move { handle_event(&engine, &event).await.unwrap() })
        })
        .collect();
    let mut outcomes = Vec::new();
    for delivery in deliveries {
        outcomes.push(delivery.await.unwrap());
    }
    assert_eq!(
        outcomes.iter().filter(|o| **o == EventOutcome::Recorded).count(),
        1,
        "{outcomes:?}"
    );
    assert_eq!(
        outcomes.iter().filter(|o| **o == EventOutcome::Duplicate).count(),
        7,
        "{outcomes:?}"
    );
    let after = engine.get(&r.id).await.unwrap();
    let tasks = after
        .history
        .iter()
        .filter(|t| t.note.as_deref().is_some_and(|n| n.starts_with("task 7")))
        .count();
    assert_eq!(tasks, 1, "{:?}", after.history);
}

async fn pruning(store: Arc<dyn ApprovalStore>) {
    let clock = ManualClock::starting_now();
    let keep = engine(Arc::clone(&store), None, &clock);
    let r = submit(&keep).await;
    let external = r.external_id.clone().unwrap();
    let approve = Event::from_json(&format!(
        r#"{{"EventType":"bpms_instance_change","eventId":"ev-agree","processInstanceId":"{external}","type":"finish","result":"agree","finishTime":{}}}"#,
        r.created_at_ms + 1
    ))
    .unwrap();
    assert_eq!(
        handle_event(&keep, &approve).await.unwrap(),
        EventOutcome::Applied
    );

    // Within the default retention the key is kept: a redelivery is a duplicate.
    assert_eq!(keep.reconcile(Duration::ZERO).await.unwrap().pruned_events, 0);
    assert_eq!(
        handle_event(&keep, &approve).await.unwrap(),
        EventOutcome::Duplicate
    );

    // Past the retention it is pruned; the redelivery is then seen again and changes nothing.
    let prune = engine(Arc::clone(&store), Some(Duration::from_secs(60)), &clock);
    assert_eq!(
        prune.reconcile(Duration::ZERO).await.unwrap().pruned_events,
        0,
        "not old enough yet"
    );
    clock.advance(Duration::from_secs(61));
    assert_eq!(prune.reconcile(Duration::ZERO).await.unwrap().pruned_events, 1);
    assert_eq!(
        handle_event(&prune, &approve).await.unwrap(),
        EventOutcome::Recorded
    );
    let after = prune.get(&r.id).await.unwrap();
    assert_eq!(after.state, RequestState::Approved);
    assert_eq!(
        after
            .history
            .iter()
            .filter(|t| t.to == RequestState::Approved && t.from != t.to)
            .count(),
        1,
        "one approval however late the redelivery"
    );
}

#[tokio::test]
async fn memory_store_prunes_old_event_keys() {
    pruning(Arc::new(MemoryStore::new())).await;
}

#[tokio::test]
async fn sqlite_store_prunes_old_event_keys() {
    let db = support::TempDb::new("retention.sqlite");
    pruning(Arc::new(db.open().await)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_store_records_an_event_with_its_change() {
    dedup(Arc::new(MemoryStore::new())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_store_records_an_event_with_its_change() {
    let db = support::TempDb::new("dedup.sqlite");
    dedup(Arc::new(db.open().await)).await;
}

#[cfg(feature = "postgres")]
#[tokio::test]
async fn postgres_store_prunes_old_event_keys() {
    let Some(db) = support::postgres::TempPostgres::new().await else {
        return;
    };
    pruning(Arc::new(db.open().await)).await;
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_store_records_an_event_with_its_change() {
    let Some(db) = support::postgres::TempPostgres::new().await else {
        return;
    };
    dedup(Arc::new(db.open().await)).await;
}
