//! One conformance suite run against the in-memory and the SQLite store (a real file,
//! reopened to prove nothing is lost).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use sase_approval::state::{ApprovalRequest, Change, RequestId, RequestState, Source};
use sase_approval::store::{ApprovalStore, EventWrite, ListFilter, MemoryStore, SqliteStore};
use sase_approval::Error;
use sase_policy::ids::{DeviceId, UserId, WorkflowId};
use sase_policy::Action;
use std::sync::atomic::Ordering;
use std::sync::Arc;

fn request(id: &str, user: &str, created: i64) -> ApprovalRequest {
    let mut r = ApprovalRequest {
        id: RequestId(id.into()),
        template: "app_uninstall".into(),
        workflow: WorkflowId::new("wf"),
        requester: UserId::new(user),
        device: DeviceId::new("dev"),
        action: Action::Uninstall,
        fields: Arc::new([("reason".to_owned(), "重装系统".to_owned())].into()),
        state: RequestState::Submitted,
        state_at_ms: created,
        external_id: None,
        create_uncertain: false,
        created_at_ms: created,
        grant: None,
        version: 0,
        history: vec![],
    };
    r.record(RequestState::Submitted, created, user, Source::Agent, None);
    r
}

async fn conformance(store: Arc<dyn ApprovalStore>) {
    store.insert(&request("r1", "alice", 100)).await.unwrap();
    store.insert(&request("r2", "bob", 200)).await.unwrap();
    store.insert(&request("r3", "alice", 300)).await.unwrap();
    assert!(
        store.insert(&request("r1", "alice", 100)).await.is_err(),
        "ids are unique"
    );

    let mut r1 = store.get(&RequestId("r1".into())).await.unwrap().unwrap();
    assert_eq!(r1.version, 0);
    r1.external_id = Some("pi-1".into());
    r1.record(RequestState::Pending, 150, "system", Source::System, None);
    store.update(&r1).await.unwrap();
    let stored = store.find_by_external("pi-1").await.unwrap().unwrap();
    assert_eq!(
        (stored.state, stored.version, stored.history.len()),
        (RequestState::Pending, 1, 2)
    );
    // Linked at insertion, and not the first request: both indexes point at the right one.
    let mut r4 = request("r4", "carol", 400);
    r4.external_id = Some("pi-4".into());
    store.insert(&r4).await.unwrap();
    let found = store.find_by_external("pi-4").await.unwrap().unwrap();
    assert_eq!(found.id.0, "r4");
    assert!(store.find_by_external("pi-none").await.unwrap().is_none());
    assert!(matches!(
        store.update(&request("r9", "dave", 900)).await,
        Err(Error::NotFound { .. })
    ));
    // A writer holding version 0 loses.
    match store.update(&r1).await {
        Err(Error::Conflict {
            expected: 0,
            actual: 1,
            ..
        }) => {}
        other => panic!("{other:?}"),
    }

    let pending = store
        .list(&ListFilter::default().states(vec![RequestState::Pending]))
        .await
        .unwrap();
    assert_eq!(pending.len(), 1);
    let alice = store
        .list(&ListFilter::default().requester(UserId::new("alice")))
        .await
        .unwrap();
    assert_eq!(
        alice.iter().map(|r| r.id.0.as_str()).collect::<Vec<_>>(),
        ["r1", "r3"]
    );
    let mut page = ListFilter::default();
    page.offset = 1;
    page.limit = 1;
    assert_eq!(store.list(&page).await.unwrap()[0].id.0, "r2");

    assert!(store.record_event("ev-1", 1).await.unwrap());
    assert!(
        !store.record_event("ev-1", 2).await.unwrap(),
        "duplicates are detected"
    );
    store.forget_event("ev-1").await.unwrap();
    assert!(store.record_event("ev-1", 3).await.unwrap());
    // Retention: keys recorded before the cut are forgotten, later ones kept.
    assert!(store.record_event("ev-late", 1_000).await.unwrap());
    assert_eq!(store.prune_events(500).await.unwrap(), 1);
    assert!(store.record_event("ev-1", 4).await.unwrap(), "pruned: new again");
    assert!(!store.record_event("ev-late", 1_001).await.unwrap(), "kept");

    // An update and the event key that caused it: both or neither.
    let mut r3 = store.get(&RequestId("r3".into())).await.unwrap().unwrap();
    r3.record(RequestState::Pending, 310, "system", Source::System, None);
    let stale = r3.clone();
    assert!(store.update_with_event(&r3, "ev-r3", 5).await.unwrap());
    assert!(
        !store.record_event("ev-r3", 6).await.unwrap(),
        "the key was recorded"
    );
    let stored = store.get(&r3.id).await.unwrap().unwrap();
    assert_eq!((stored.version, stored.state), (1, RequestState::Pending));
    // The same key again: nothing is written.
    let mut again = stored.clone();
    again.record(RequestState::Revoked, 320, "system", Source::System, None);
    assert!(!store.update_with_event(&again, "ev-r3", 7).await.unwrap());
    assert_eq!(store.get(&r3.id).await.unwrap().unwrap().version, 1);
    // A lost race: neither the change nor the key.
    assert!(matches!(
        store.update_with_event(&stale, "ev-r3-late", 8).await,
        Err(Error::Conflict { .. })
    ));
    assert!(
        store.record_event("ev-r3-late", 9).await.unwrap(),
        "the key was not recorded"
    );

    // An event applied where the request is: decided from the stored copy, written with its key.
    let r4_id = RequestId("r4".into());
    let mut seen = Vec::new();
    let mut to_pending = |r: &ApprovalRequest| {
        seen.push((r.id.0.clone(), r.version));
        Ok(Some(
            Change::new(RequestState::Pending, 410, "dingtalk", Source::System).note(Some("seen".into())),
        ))
    };
    match store
        .apply_event("pi-4", "ev-r4", 11, &mut to_pending)
        .await
        .unwrap()
    {
        EventWrite::Changed(update) => {
            assert_eq!(
                (update.id.0.as_str(), update.state, update.version),
                ("r4", RequestState::Pending, 1)
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        store
            .apply_event("pi-4", "ev-r4", 12, &mut to_pending)
            .await
            .unwrap(),
        EventWrite::Duplicate
    );
    assert_eq!(seen[0], ("r4".to_owned(), 0), "decided on the stored request");
    let stored = store.get(&r4_id).await.unwrap().unwrap();
    assert_eq!(
        (stored.state, stored.version, stored.history.len()),
        (RequestState::Pending, 1, 2)
    );
    assert_eq!(stored.history[1].note.as_deref(), Some("seen"));
    // Nothing to change: the key alone.
    assert_eq!(
        store
            .apply_event("pi-4", "ev-r4-noop", 13, &mut |_| Ok(None))
            .await
            .unwrap(),
        EventWrite::Unchanged
    );
    assert!(
        !store.record_event("ev-r4-noop", 14).await.unwrap(),
        "the key was recorded"
    );
    // Deciding fails, or the instance is not ours: nothing written, the key not recorded.
    let refused = store
        .apply_event("pi-4", "ev-r4-bad", 15, &mut |_| {
            Err(Error::Store { reason: "no".into() })
        })
        .await;
    assert!(matches!(refused, Err(Error::Store { .. })), "{refused:?}");
    assert_eq!(
        store
            .apply_event("pi-none", "ev-none", 16, &mut |_| panic!("nothing to decide"))
            .await
            .unwrap(),
        EventWrite::Unknown
    );
    assert!(store.record_event("ev-r4-bad", 17).await.unwrap());
    assert!(store.record_event("ev-none", 18).await.unwrap());
    assert_eq!(store.get(&r4_id).await.unwrap().unwrap().version, 1);

    // Two concurrent updates of one request: exactly one wins, the other sees a conflict.
    let base = store.get(&RequestId("r2".into())).await.unwrap().unwrap();
    let (mut a, mut b) = (base.clone(), base.clone());
    Arc::make_mut(&mut a.fields).insert("app_version".into(), "1".into());
    Arc::make_mut(&mut b.fields).insert("app_version".into(), "2".into());
    let (sa, sb) = (Arc::clone(&store), Arc::clone(&store));
    let (ra, rb) = tokio::join!(
        tokio::spawn(async move { sa.update(&a).await }),
        tokio::spawn(async move { sb.update(&b).await })
    );
    let results = [ra.unwrap(), rb.unwrap()];
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1, "{results:?}");
    assert!(results.iter().any(|r| matches!(r, Err(Error::Conflict { .. }))));
    let after = store.get(&RequestId("r2".into())).await.unwrap().unwrap();
    assert_eq!(after.version, 1);
    assert!(
        ["1", "2"].contains(&after.fields["app_version"].as_str()),
        "the winner's write is whole"
    );
}

#[tokio::test]
async fn memory_store_conforms() {
    conformance(Arc::new(MemoryStore::new())).await;
}

#[tokio::test]
async fn sqlite_store_conforms_and_keeps_everything_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("approvals.sqlite");
    conformance(Arc::new(SqliteStore::open(&path).await.unwrap())).await;

    // Reopen the file: requests, versions, history and event keys are all there.
    let reopened = SqliteStore::open(&path).await.unwrap();
    let r1 = reopened.find_by_external("pi-1").await.unwrap().unwrap();
    assert_eq!(
        (r1.state, r1.version, r1.history.len()),
        (RequestState::Pending, 1, 2)
    );
    assert_eq!(r1.fields["reason"], "重装系统");
    assert_eq!(reopened.list(&ListFilter::default()).await.unwrap().len(), 4);
    assert!(
        !reopened.record_event("ev-1", 4).await.unwrap(),
        "event de-duplication survives a restart"
    );
}

/// The trait's default `apply_event` over a memory store, with a writer that gets in between
/// the first read and its write.
#[derive(Debug, Default)]
struct Racing {
    inner: MemoryStore,
    raced: std::sync::atomic::AtomicBool,
}

#[async_trait::async_trait]
impl ApprovalStore for Racing {
    async fn insert(&self, request: &ApprovalRequest) -> sase_approval::Result<()> {
        self.inner.insert(request).await
    }
    async fn get(&self, id: &RequestId) -> sase_approval::Result<Option<ApprovalRequest>> {
        self.inner.get(id).await
    }
    async fn find_by_external(&self, external_id: &str) -> sase_approval::Result<Option<ApprovalRequest>> {
        let read = self.inner.find_by_external(external_id).await?;
        if let Some(mut other) = read.clone().filter(|_| !self.raced.swap(true, Ordering::SeqCst)) {
            other.record(
                RequestState::Pending,
                5,
                "system",
                Source::System,
                Some("racer".into()),
            );
            self.inner.update(&other).await?;
        }
        Ok(read)
    }
    async fn update(&self, request: &ApprovalRequest) -> sase_approval::Result<()> {
        self.inner.update(request).await
    }
    async fn list(&self, filter: &ListFilter) -> sase_approval::Result<Vec<ApprovalRequest>> {
        self.inner.list(filter).await
    }
    async fn record_event(&self, key: &str, at_ms: i64) -> sase_approval::Result<bool> {
        self.inner.record_event(key, at_ms).await
    }
    async fn forget_event(&self, key: &str) -> sase_approval::Result<()> {
        self.inner.forget_event(key).await
    }
    async fn prune_events(&self, before_ms: i64) -> sase_approval::Result<u64> {
        self.inner.prune_events(before_ms).await
    }
}

#[tokio::test]
async fn the_default_apply_event_decides_again_after_losing_a_race() {
    let store = Racing::default();
    let mut r = request("r1", "alice", 1);
    r.external_id = Some("pi-1".into());
    store.insert(&r).await.unwrap();
    let mut versions = Vec::new();
    let mut decide = |r: &ApprovalRequest| {
        versions.push(r.version);
        Ok(Some(Change::new(
            RequestState::Approved,
            9,
            "boss",
            Source::System,
        )))
    };
    let write = store.apply_event("pi-1", "ev-1", 10, &mut decide).await.unwrap();
    assert_eq!(
        versions,
        [0, 1],
        "the stale decision was not written; the second saw the racer"
    );
    match write {
        EventWrite::Changed(update) => {
            assert_eq!((update.state, update.version), (RequestState::Approved, 2))
        }
        other => panic!("{other:?}"),
    }
    let stored = store.get(&RequestId("r1".into())).await.unwrap().unwrap();
    let notes: Vec<_> = stored.history.iter().map(|t| (t.to, t.note.as_deref())).collect();
    assert_eq!(
        notes,
        [
            (RequestState::Submitted, None),
            (RequestState::Pending, Some("racer")),
            (RequestState::Approved, None)
        ]
    );
    assert!(
        !store.record_event("ev-1", 11).await.unwrap(),
        "the key went in with the change"
    );
}
