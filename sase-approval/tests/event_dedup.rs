//! An event's key is recorded together with the change it causes: an event that changed
//! nothing is not remembered, and concurrent deliveries of one event apply it once.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use dingtalk_sdk::event::Event;
use sase_approval::backend::BuiltinBackend;
use sase_approval::definition::{new_callback_id, Workflow, WorkflowKind};
use sase_approval::engine::{Engine, EventOutcome, SubmitRequest};
use sase_approval::store::{ApprovalStore, MemoryStore, SqliteStore};
use sase_policy::ids::{DeviceId, UserId, WorkflowId};
use sase_policy::GrantSigner;
use std::sync::Arc;

fn engine(store: Arc<dyn ApprovalStore>) -> Arc<Engine> {
    let workflow = Workflow {
        id: WorkflowId::new("wf"),
        name: "console".into(),
        kind: WorkflowKind::BuiltIn { approvers: vec![] },
        mappings: vec![],
        callback_id: new_callback_id(),
    };
    Arc::new(
        Engine::builder(store, GrantSigner::from_bytes(&[7; 32]))
            .workflow(workflow, Arc::new(BuiltinBackend))
            .build()
            .unwrap(),
    )
}

fn task_event(id: &str, external: &str) -> Event {
    Event::from_json(&format!(
        r#"{{"EventType":"bpms_task_change","eventId":"{id}","processInstanceId":"{external}","taskId":7,"type":"start","staffId":"manager"}}"#
    ))
    .unwrap()
}

async fn dedup(store: Arc<dyn ApprovalStore>) {
    let engine = engine(Arc::clone(&store));
    let r = engine
        .submit(SubmitRequest::uninstall(
            WorkflowId::new("wf"),
            UserId::new("u"),
            DeviceId::new("d"),
            "why",
        ))
        .await
        .unwrap();
    let external = r.external_id.clone().unwrap();

    // Not ours (yet): ignored, and its key is not remembered.
    let early = task_event("ev-early", "pi-unknown");
    assert_eq!(engine.handle_event(&early).await.unwrap(), EventOutcome::Ignored);
    assert!(store.record_event(&early.idempotency_key(), 1).await.unwrap());

    // One event delivered eight times at once: applied once, the rest are duplicates.
    let event = task_event("ev-task", &external);
    let deliveries: Vec<_> = (0..8)
        .map(|_| {
            let (engine, event) = (Arc::clone(&engine), event.clone());
            tokio::spawn(async move { engine.handle_event(&event).await.unwrap() })
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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_store_records_an_event_with_its_change() {
    dedup(Arc::new(MemoryStore::new())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_store_records_an_event_with_its_change() {
    let dir = tempfile::tempdir().unwrap();
    dedup(Arc::new(
        SqliteStore::open(dir.path().join("dedup.sqlite")).await.unwrap(),
    ))
    .await;
}
