//! A crash never makes a second DingTalk instance: the intent to create is stored before the
//! create is sent, so a server that dies between DingTalk creating the instance and the store
//! recording its id finds that instance after the restart instead of creating another.
//!
//! The crash is a fault hook in the store: the write that would link the instance fails, as
//! if the process died at that instant; a new engine on the same SQLite file then reconciles.

#![expect(
    clippy::unwrap_used,
    reason = "a test fails loudly on the first unexpected value"
)]

use async_trait::async_trait;
use dingtalk_sdk::client::DingTalkClient;
use dingtalk_sdk::mock::{MockApp, MockDingTalk};
use dingtalk_sdk::token::Credentials;
use sase_approval::dingtalk::DingTalkBackend;
use sase_approval::engine::{Engine, SubmitRequest};
use sase_approval::state::{ApprovalRequest, RequestId, RequestState};
use sase_approval::store::{ApprovalStore, DecideChange, EventWrite, ListFilter, SqliteStore};
use sase_approval::Error;
use sase_policy::ids::{DeviceId, UserId, WorkflowId};
use sase_policy::GrantSigner;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

mod support;

/// A store that "crashes" on the write linking an external instance: it never happens.
#[derive(Debug)]
struct CrashBeforeLinking(SqliteStore);

#[async_trait]
impl ApprovalStore for CrashBeforeLinking {
    async fn insert(&self, request: &ApprovalRequest) -> sase_approval::Result<()> {
        self.0.insert(request).await
    }
    async fn get(&self, id: &RequestId) -> sase_approval::Result<Option<ApprovalRequest>> {
        self.0.get(id).await
    }
    async fn find_by_external(&self, external_id: &str) -> sase_approval::Result<Option<ApprovalRequest>> {
        self.0.find_by_external(external_id).await
    }
    async fn update(&self, request: &ApprovalRequest) -> sase_approval::Result<()> {
        if request.external_id.is_some() {
            return Err(Error::Store {
                reason: "the process died before storing the instance id".into(),
            });
        }
        self.0.update(request).await
    }
    async fn list(&self, filter: &ListFilter) -> sase_approval::Result<Vec<ApprovalRequest>> {
        self.0.list(filter).await
    }
    async fn count(&self, filter: &ListFilter) -> sase_approval::Result<u64> {
        self.0.count(filter).await
    }
    async fn apply_event(
        &self,
        external_id: &str,
        key: &str,
        at_ms: i64,
        decide: &mut DecideChange<'_>,
    ) -> sase_approval::Result<EventWrite> {
        self.0.apply_event(external_id, key, at_ms, decide).await
    }
    async fn prune_events(&self, before_ms: i64) -> sase_approval::Result<u64> {
        self.0.prune_events(before_ms).await
    }

    async fn shared_value(&self, key: &str, proposed: &str) -> sase_approval::Result<String> {
        self.0.shared_value(key, proposed).await
    }

    async fn add_to_counter(
        &self,
        key: &str,
        delta: u64,
        limit: Option<u64>,
    ) -> sase_approval::Result<sase_approval::store::Counted> {
        self.0.add_to_counter(key, delta, limit).await
    }

    async fn remove_counters(&self, from: &str, to: &str) -> sase_approval::Result<u64> {
        self.0.remove_counters(from, to).await
    }

    async fn document_version(&self, kind: &str, id: &str) -> sase_approval::Result<Option<u64>> {
        self.0.document_version(kind, id).await
    }

    async fn put_document(&self, document: &sase_approval::store::Document) -> sase_approval::Result<u64> {
        self.0.put_document(document).await
    }

    async fn get_document(
        &self,
        kind: &str,
        id: &str,
    ) -> sase_approval::Result<Option<sase_approval::store::Document>> {
        self.0.get_document(kind, id).await
    }

    async fn find_document(
        &self,
        kind: &str,
        lookup: &str,
    ) -> sase_approval::Result<Option<sase_approval::store::Document>> {
        self.0.find_document(kind, lookup).await
    }

    async fn list_documents(&self, kind: &str) -> sase_approval::Result<Vec<sase_approval::store::Document>> {
        self.0.list_documents(kind).await
    }

    async fn delete_document(&self, kind: &str, id: &str, version: u64) -> sase_approval::Result<()> {
        self.0.delete_document(kind, id, version).await
    }

    async fn find_open(
        &self,
        requester: &UserId,
        device: &DeviceId,
        action: sase_policy::Action,
    ) -> sase_approval::Result<Option<ApprovalRequest>> {
        self.0.find_open(requester, device, action).await
    }

    async fn try_lease(
        &self,
        name: &str,
        holder: &str,
        now_ms: i64,
        ttl_ms: i64,
    ) -> sase_approval::Result<bool> {
        self.0.try_lease(name, holder, now_ms, ttl_ms).await
    }

    async fn count_by_state(&self) -> sase_approval::Result<Vec<(RequestState, u64)>> {
        self.0.count_by_state().await
    }

    async fn append_audit(
        &self,
        record: &sase_approval::audit::AuditRecord,
    ) -> sase_approval::Result<sase_approval::audit::AuditEntry> {
        self.0.append_audit(record).await
    }

    async fn list_audit(
        &self,
        filter: &sase_approval::audit::AuditFilter,
    ) -> sase_approval::Result<Vec<sase_approval::audit::AuditEntry>> {
        self.0.list_audit(filter).await
    }

    async fn audit_head(&self) -> sase_approval::Result<Option<(u64, String)>> {
        self.0.audit_head().await
    }
}

fn engine(store: Arc<dyn ApprovalStore>, mock: &MockDingTalk) -> Engine {
    let client = DingTalkClient::builder(Credentials::new(support::APP, support::SECRET))
        .api_base(mock.base_url())
        .build()
        .unwrap();
    let wf = support::workflow();
    Engine::builder(store, GrantSigner::from_bytes(&[8; 32]))
        .workflow(wf.clone(), Arc::new(DingTalkBackend::new(client, wf).unwrap()))
        .build()
        .unwrap()
}

#[tokio::test]
async fn fifty_crashes_between_create_and_store_make_one_instance_per_filing() {
    const FILINGS: usize = 50;
    let mock = MockDingTalk::builder()
        .app(MockApp::new(support::APP, support::SECRET))
        .process(support::form())
        .start()
        .await
        .unwrap();
    let db = support::TempDb::new("crash.sqlite");
    let mut filed = Vec::new();
    for i in 0..FILINGS {
        // The process that crashes: DingTalk creates the instance, its id is never stored.
        let crashing = engine(Arc::new(CrashBeforeLinking(db.open().await)), &mock);
        let submit = SubmitRequest::uninstall(
            WorkflowId::new("wf-dingtalk"),
            UserId::new(format!("user-{i}")),
            DeviceId::new(format!("laptop-{i}")),
            format!("reinstall #{i}"),
        );
        assert!(crashing.submit(submit).await.is_err(), "filing {i} crashed");
        assert_eq!(mock.instance_ids().len(), i + 1, "DingTalk has the instance");
        drop(crashing);

        // The restarted process: reconciliation finds the instance instead of creating one.
        let restarted = engine(Arc::new(db.open().await), &mock);
        let report = restarted.reconcile(Duration::ZERO).await.unwrap();
        assert_eq!(report.linked, 1, "filing {i}");
        assert_eq!(mock.instance_ids().len(), i + 1, "filing {i}: no second instance");
        let request = restarted
            .list(&ListFilter::default().requester(UserId::new(format!("user-{i}"))))
            .await
            .unwrap()
            .pop()
            .unwrap();
        assert_eq!(request.state, RequestState::Pending);
        assert!(!request.create_uncertain);
        filed.push(request.external_id.unwrap());
    }
    // Once more, for good measure: nothing left to link, nothing created.
    let restarted = engine(Arc::new(db.open().await), &mock);
    assert_eq!(restarted.reconcile(Duration::ZERO).await.unwrap().linked, 0);
    let instances: HashSet<String> = mock.instance_ids().into_iter().collect();
    assert_eq!(instances.len(), FILINGS, "exactly one instance per filing");
    assert_eq!(
        filed.into_iter().collect::<HashSet<_>>(),
        instances,
        "each request has its own"
    );
}
