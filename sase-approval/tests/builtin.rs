//! A built-in workflow: requests are decided in the console, and only by the workflow's named
//! approvers; any admin may revoke.

use sase_approval::backend::BuiltinBackend;
use sase_approval::definition::{new_callback_id, Workflow, WorkflowKind};
use sase_approval::engine::{Engine, SubmitRequest};
use sase_approval::state::RequestState;
use sase_approval::store::MemoryStore;
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
}
