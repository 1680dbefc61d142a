//! A built-in workflow: requests are decided in the console, and only by the workflow's named
//! approvers; any admin may revoke.

use sase_approval::backend::BuiltinBackend;
use sase_approval::definition::{new_callback_id, Workflow, WorkflowKind};
use sase_approval::engine::{Engine, SubmitRequest};
use sase_approval::state::RequestState;
use sase_approval::store::{ListFilter, MemoryStore};
use sase_approval::Error;
use sase_policy::ids::{DeviceId, UserId, WorkflowId};
use sase_policy::GrantSigner;
use std::sync::Arc;

#[tokio::test]
async fn only_a_named_approver_decides_a_built_in_request() {
    let workflow = Workflow {
        id: WorkflowId::new("wf-console"),
        name: "Decided in the console".into(),
        kind: WorkflowKind::BuiltIn {
            approvers: vec![UserId::new("security-lead")],
        },
        mappings: Vec::new(),
        callback_id: new_callback_id(),
    };
    let engine = Engine::builder(Arc::new(MemoryStore::new()), GrantSigner::from_bytes(&[9; 32]))
        .workflow(workflow, Arc::new(BuiltinBackend))
        .build()
        .unwrap();
    let file = |device: &str| {
        SubmitRequest::uninstall(
            WorkflowId::new("wf-console"),
            UserId::new("bob"),
            DeviceId::new(device),
            "a new laptop",
        )
    };
    let request = engine.submit(file("laptop-1")).await.unwrap();
    assert_eq!(request.state, RequestState::Pending);

    for refused in [
        engine.approve(&request.id, "intern", None).await.unwrap_err(),
        engine.reject(&request.id, "intern", None).await.unwrap_err(),
    ] {
        assert!(
            matches!(&refused, Error::NotAnApprover { actor, workflow, .. } if actor == "intern" && workflow == "wf-console"),
            "{refused}"
        );
    }
    assert_eq!(
        engine.get(&request.id).await.unwrap().state,
        RequestState::Pending
    );
    let approved = engine
        .approve(&request.id, "security-lead", Some("ok"))
        .await
        .unwrap();
    assert_eq!(approved.state, RequestState::Approved);
    assert!(approved.grant.is_some());

    let other = engine.submit(file("laptop-2")).await.unwrap();
    let revoked = engine.revoke(&other.id, "intern", None).await.unwrap();
    assert_eq!(revoked.state, RequestState::Revoked, "any admin may revoke");

    // The console's view: a page, newest first, and the total of every page.
    let laptop_2 = ListFilter::default()
        .device(DeviceId::new("laptop-2"))
        .newest_first()
        .page(0, 10);
    let listed = engine.list(&laptop_2).await.unwrap();
    assert_eq!(listed.iter().map(|r| &r.id).collect::<Vec<_>>(), [&other.id]);
    assert_eq!(engine.count(&laptop_2).await.unwrap(), 1);
    let first = ListFilter::default().newest_first().page(0, 1);
    assert_eq!(engine.list(&first).await.unwrap().len(), 1);
    assert_eq!(engine.count(&first).await.unwrap(), 2, "the page aside");
}

/// With the audit chain on, a request's life is in it under who acted: filed, approved with
/// its grant, revoked with that grant withdrawn; the chain verifies.
#[tokio::test]
async fn the_audit_chain_holds_the_grant_issued_and_withdrawn() {
    use sase_approval::audit::{AuditEntry, AuditFilter, ChainVerifier};
    use sase_approval::store::ApprovalStore;
    use std::sync::Mutex;
    let seen: Arc<Mutex<Vec<AuditEntry>>> = Arc::default();
    let sink = Arc::clone(&seen);
    let store = Arc::new(MemoryStore::new());
    let workflow = Workflow {
        id: WorkflowId::new("wf-console"),
        name: "Decided in the console".into(),
        kind: WorkflowKind::BuiltIn {
            approvers: vec![UserId::new("security-lead")],
        },
        mappings: Vec::new(),
        callback_id: new_callback_id(),
    };
    let engine = Engine::builder(store.clone(), GrantSigner::from_bytes(&[9; 32]))
        .workflow(workflow, Arc::new(BuiltinBackend))
        .audit(Arc::new(move |entry: &AuditEntry| {
            sink.lock().unwrap().push(entry.clone())
        }))
        .build()
        .unwrap();
    let request = engine
        .submit(SubmitRequest::uninstall(
            WorkflowId::new("wf-console"),
            UserId::new("bob"),
            DeviceId::new("laptop-1"),
            "a new laptop",
        ))
        .await
        .unwrap();
    let approved = engine.approve(&request.id, "security-lead", None).await.unwrap();
    let grant = approved.grant.unwrap().grant.id.to_string();
    engine
        .revoke(&request.id, "intern", Some("lost laptop"))
        .await
        .unwrap();

    let entries = store.list_audit(&AuditFilter::default()).await.unwrap();
    assert_eq!(entries, *seen.lock().unwrap(), "the sink saw each entry appended");
    let actions: Vec<(&str, &str)> = entries
        .iter()
        .map(|e| (e.record.actor.as_str(), e.record.action.as_str()))
        .collect();
    assert_eq!(
        actions,
        [
            ("bob", "request.filed"),
            ("system", "request.pending"),
            ("security-lead", "request.approved"),
            ("intern", "request.revoked"),
        ]
    );
    assert_eq!(entries[2].record.details["grant"], grant.as_str());
    assert_eq!(entries[3].record.details["grant_withdrawn"], grant.as_str());
    let mut verifier = ChainVerifier::new();
    for entry in &entries {
        verifier.push(entry).unwrap();
    }
    assert_eq!(verifier.finish(store.audit_head().await.unwrap()), Ok(4));
}
