//! The de-duplication record is bounded: reconciliation prunes event keys older than the
//! engine's retention, and a redelivery after that is applied again harmlessly.

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
use sase_approval::state::RequestState;
use sase_approval::store::{ApprovalStore, MemoryStore, SqliteStore};
use sase_policy::ids::{DeviceId, UserId, WorkflowId};
use sase_policy::GrantSigner;
use std::sync::Arc;
use std::time::Duration;

fn engine(store: Arc<dyn ApprovalStore>, retention: Option<Duration>) -> Engine {
    let workflow = Workflow {
        id: WorkflowId::new("wf"),
        name: "console".into(),
        kind: WorkflowKind::BuiltIn { approvers: vec![] },
        mappings: vec![],
        callback_id: new_callback_id(),
    };
    let mut builder = Engine::builder(store, GrantSigner::from_bytes(&[7; 32]))
        .workflow(workflow, Arc::new(BuiltinBackend));
    if let Some(retention) = retention {
        builder = builder.event_retention(retention);
    }
    builder.build().unwrap()
}

async fn pruning(store: Arc<dyn ApprovalStore>) {
    let keep = engine(Arc::clone(&store), None);
    let r = keep
        .submit(SubmitRequest::uninstall(
            WorkflowId::new("wf"),
            UserId::new("u"),
            DeviceId::new("d"),
            "why",
        ))
        .await
        .unwrap();
    let external = r.external_id.clone().unwrap();
    let approve = Event::from_json(&format!(
        r#"{{"EventType":"bpms_instance_change","eventId":"ev-agree","processInstanceId":"{external}","type":"finish","result":"agree","finishTime":{}}}"#,
        r.created_at_ms + 1
    ))
    .unwrap();
    assert_eq!(keep.handle_event(&approve).await.unwrap(), EventOutcome::Applied);

    // Within the default retention the key is kept: a redelivery is a duplicate.
    assert_eq!(keep.reconcile(Duration::ZERO).await.unwrap().pruned_events, 0);
    assert_eq!(
        keep.handle_event(&approve).await.unwrap(),
        EventOutcome::Duplicate
    );

    // Past a (zero) retention it is pruned; the redelivery is then seen again and changes nothing.
    let prune = engine(Arc::clone(&store), Some(Duration::ZERO));
    tokio::time::sleep(Duration::from_millis(2)).await;
    assert_eq!(prune.reconcile(Duration::ZERO).await.unwrap().pruned_events, 1);
    assert_eq!(
        prune.handle_event(&approve).await.unwrap(),
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
    let dir = tempfile::tempdir().unwrap();
    pruning(Arc::new(
        SqliteStore::open(dir.path().join("retention.sqlite"))
            .await
            .unwrap(),
    ))
    .await;
}
