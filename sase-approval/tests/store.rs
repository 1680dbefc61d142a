//! One conformance suite run against the in-memory, the SQLite store (a real file, reopened
//! to prove nothing is lost) and (feature `postgres`) the PostgreSQL store (a database made
//! for each test, on the server at `SASE_TEST_POSTGRES`; skipped, saying so, when there is
//! none, unless `SASE_REQUIRE_POSTGRES=1`), with replicas sharing it. The audit chain is
//! also tampered with in the SQL databases directly, and each tampering must be found at its
//! first broken entry.

#![expect(
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test fails loudly on the first unexpected value"
)]

use sase_approval::audit::{
    entry_hash, AuditEntry, AuditFilter, AuditRecord, ChainBreak, ChainVerifier, GENESIS,
};
use sase_approval::state::{ApprovalRequest, Change, RequestId, RequestState, Source};
use sase_approval::store::{ApprovalStore, Counted, Document, EventWrite, ListFilter, MemoryStore};
use sase_approval::Error;
use sase_policy::ids::{DeviceId, UserId, WorkflowId};
use sase_policy::Action;
use serde_json::json;
use std::sync::Arc;

mod support;

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
        grant_consumed_at_ms: None,
        version: 0,
        history: vec![],
        history_dropped: 0,
    };
    r.record(RequestState::Submitted, created, user, Source::Agent, None);
    r
}

/// Whether `key` was not recorded yet; records it, as an event that changes nothing about
/// instance `pi-1`.
async fn is_new(store: &dyn ApprovalStore, key: &str, at_ms: i64) -> bool {
    match store
        .apply_event("pi-1", key, at_ms, &mut |_| Ok(None))
        .await
        .unwrap()
    {
        EventWrite::Unchanged => true,
        EventWrite::Duplicate => false,
        other => panic!("{other:?}"),
    }
}

/// Values every server of the store agrees on, and a lease one holder has at a time.
async fn shared_values_and_leases(store: &dyn ApprovalStore) {
    assert_eq!(
        store.shared_value("callback_id/wf", "first").await.unwrap(),
        "first"
    );
    assert_eq!(
        store.shared_value("callback_id/wf", "second").await.unwrap(),
        "first",
        "the first writer wins"
    );
    assert_eq!(
        store.shared_value("callback_id/wf2", "other").await.unwrap(),
        "other"
    );
    // Replica a takes the lease; b cannot until it expires; a renews; then a stops renewing.
    assert!(store.try_lease("reconciler", "a", 1_000, 30_000).await.unwrap());
    assert!(!store.try_lease("reconciler", "b", 2_000, 30_000).await.unwrap());
    assert!(
        store.try_lease("reconciler", "a", 20_000, 30_000).await.unwrap(),
        "renewed"
    );
    assert!(
        !store.try_lease("reconciler", "b", 49_999, 30_000).await.unwrap(),
        "until a's renewal expires"
    );
    assert!(
        store.try_lease("reconciler", "b", 50_000, 30_000).await.unwrap(),
        "taken over"
    );
    assert!(
        !store.try_lease("reconciler", "a", 50_001, 30_000).await.unwrap(),
        "a lost it"
    );
    assert!(
        store.try_lease("other", "a", 50_001, 30_000).await.unwrap(),
        "leases are independent"
    );

    let add = |delta, limit| async move {
        let counted = store.add_to_counter("calls/2026-12", delta, limit).await.unwrap();
        (counted.value, counted.added)
    };
    assert_eq!(add(0, None).await, (0, true), "a missing counter reads 0");
    assert_eq!(add(1, Some(2)).await, (1, true));
    assert_eq!(add(1, Some(2)).await, (2, true));
    assert_eq!(add(1, Some(2)).await, (2, false), "at the limit: not added");
    assert_eq!(add(1, Some(3)).await, (3, true));
    assert_eq!(add(5, None).await, (8, true));
    assert_eq!(add(0, Some(9)).await, (8, true), "a read");
    assert_eq!(
        add(0, Some(7)).await,
        (8, false),
        "a read says the counter is past a limit"
    );
    assert_eq!(
        store.add_to_counter("calls/2027-01", 2, Some(1)).await.unwrap(),
        Counted {
            value: 0,
            added: false
        },
        "a new counter is not created past its limit"
    );
    assert_eq!(
        store
            .add_to_counter("calls/2027-01", 1, None)
            .await
            .unwrap()
            .value,
        1,
        "counters are independent"
    );

    // Reads write nothing: a missing counter read (with or without a limit) stays missing,
    // so counters keyed by what an unauthenticated caller sends cannot grow the store.
    for key in ["login/a", "login/b"] {
        assert_eq!(store.add_to_counter(key, 0, None).await.unwrap().value, 0);
        assert_eq!(store.add_to_counter(key, 0, Some(0)).await.unwrap().value, 0);
    }
    assert_eq!(
        store.remove_counters("login/", "login0").await.unwrap(),
        0,
        "reading counters created none"
    );
    // `W/02/x` sorts inside the range by a language's collation (PostgreSQL's en-US), not
    // bytewise.
    for key in ["w/01/x", "w/01/y", "w/02/x", "w/03/x", "w0", "v/01/x", "W/02/x"] {
        store.add_to_counter(key, 1, None).await.unwrap();
    }
    assert_eq!(
        store.remove_counters("w/", "w/03/").await.unwrap(),
        3,
        "the range's counters, its end excluded"
    );
    for (key, value) in [
        ("w/01/x", 0),
        ("w/02/x", 0),
        ("w/03/x", 1),
        ("w0", 1),
        ("v/01/x", 1),
        ("W/02/x", 1),
    ] {
        assert_eq!(
            store.add_to_counter(key, 0, None).await.unwrap().value,
            value,
            "{key}"
        );
    }
    assert_eq!(
        store
            .add_to_counter("calls/2026-12", 0, None)
            .await
            .unwrap()
            .value,
        8,
        "other counters are kept"
    );
}

/// The store's requests by state, sorted by state name.
async fn counts(store: &dyn ApprovalStore) -> Vec<(&'static str, u64)> {
    let mut counts: Vec<(&'static str, u64)> = store
        .count_by_state()
        .await
        .unwrap()
        .into_iter()
        .map(|(state, n)| (state.as_str(), n))
        .collect();
    counts.sort_unstable();
    counts
}

/// What `conformance` leaves: two submitted, two pending and one approved request.
const LEFT: [(&str, u64); 3] = [("approved", 1), ("pending", 2), ("submitted", 2)];

/// Versioned documents: created at version 1, each write names the version it replaces,
/// found by id and by lookup, listed by id within their kind, deleted at their version.
async fn documents(store: &dyn ApprovalStore) {
    let device = |version, token: &str| {
        Document::new("device", "dev-b", version, format!(r#"{{"token":"{token}"}}"#))
            .lookup(format!("hash-{token}"))
            .at(1_000)
    };
    assert_eq!(store.put_document(&device(0, "t1")).await.unwrap(), 1);
    let conflict = store.put_document(&device(0, "t1")).await.unwrap_err();
    assert!(
        matches!(&conflict, Error::Conflict { id, expected: 0, actual: 1 } if id == "device/dev-b"),
        "a second create: {conflict}"
    );
    assert_eq!(store.put_document(&device(1, "t2")).await.unwrap(), 2);
    assert!(
        matches!(
            store.put_document(&device(1, "t3")).await,
            Err(Error::Conflict { actual: 2, .. })
        ),
        "a stale update"
    );
    let stored = store.get_document("device", "dev-b").await.unwrap().unwrap();
    assert_eq!(
        (
            stored.version,
            stored.lookup.as_deref(),
            stored.body.as_str(),
            stored.updated_at_ms
        ),
        (2, Some("hash-t2"), r#"{"token":"t2"}"#, 1_000)
    );
    assert_eq!(
        (
            store.document_version("device", "dev-b").await.unwrap(),
            store.document_version("device", "dev-x").await.unwrap(),
            store.document_version("other", "dev-b").await.unwrap(),
        ),
        (Some(2), None, None),
        "the version alone"
    );
    assert_eq!(
        store.find_document("device", "hash-t2").await.unwrap(),
        Some(stored.clone())
    );
    assert_eq!(
        store.find_document("device", "hash-t1").await.unwrap(),
        None,
        "the old lookup is gone"
    );
    assert_eq!(
        store.find_document("code", "hash-t2").await.unwrap(),
        None,
        "lookups are per kind"
    );

    store
        .put_document(&Document::new("device", "dev-a", 0, "{}"))
        .await
        .unwrap();
    store
        .put_document(&Document::new("code", "c-1", 0, "{}").lookup("hash-t2"))
        .await
        .unwrap();
    let taken = store
        .put_document(&Document::new("device", "dev-c", 0, "{}").lookup("hash-t2"))
        .await
        .unwrap_err();
    assert!(matches!(taken, Error::Store { .. }), "{taken}");
    let ids: Vec<String> = store
        .list_documents("device")
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.id)
        .collect();
    assert_eq!(ids, ["dev-a", "dev-b"]);

    assert!(matches!(
        store.delete_document("device", "dev-b", 1).await,
        Err(Error::Conflict { actual: 2, .. })
    ));
    store.delete_document("device", "dev-b", 2).await.unwrap();
    assert_eq!(store.document_version("device", "dev-b").await.unwrap(), None);
    assert!(matches!(
        store.delete_document("device", "dev-b", 2).await,
        Err(Error::Conflict { actual: 0, .. })
    ));
    assert_eq!(store.find_document("device", "hash-t2").await.unwrap(), None);
    assert_eq!(store.list_documents("device").await.unwrap().len(), 1);
}

/// The store's audit chain checked as a reader would: the head read first, then the entries
/// in pages of `page` up to the head's seq (entries appended meanwhile are left for later).
async fn verify_chain(store: &dyn ApprovalStore, page: usize) -> Result<u64, ChainBreak> {
    let head = store.audit_head().await.unwrap();
    let until = head.as_ref().map_or(0, |(seq, _)| *seq);
    let mut verifier = ChainVerifier::new();
    let mut filter = AuditFilter::default().page(0, page);
    'pages: loop {
        let entries = store.list_audit(&filter).await.unwrap();
        let Some(last) = entries.last() else { break };
        filter.after_seq = last.seq;
        for entry in &entries {
            if entry.seq > until {
                break 'pages;
            }
            verifier.push(entry)?;
        }
    }
    verifier.finish(head)
}

/// The seqs of the entries `filter` lists.
async fn audit_seqs(store: &dyn ApprovalStore, filter: AuditFilter) -> Vec<u64> {
    store
        .list_audit(&filter)
        .await
        .unwrap()
        .iter()
        .map(|e| e.seq)
        .collect()
}

/// What [`audit_log`] appends: actors, actions and subjects for each filter to tell apart, and
/// details a store must give back exactly (key order, non-ASCII, a NUL, floats at their
/// extremes and 64 random ones: with serde_json's default float parser about a third of
/// random doubles read back one unit off, which would break the chain).
fn audit_records() -> Vec<AuditRecord> {
    let random: Vec<f64> = std::iter::repeat_with(|| f64::from_bits(rand::random::<u64>()))
        .filter(|f| f.is_finite())
        .take(64)
        .collect();
    vec![
        AuditRecord::new(
            1_000,
            "admin",
            "policy.put",
            "policy/employees",
            json!({"before": null, "after": {"rules": 3, "name": "员工"}}),
        ),
        AuditRecord::new(
            2_000,
            "alice",
            "request.filed",
            "request/r1",
            json!({"reason": "重装系统\0 \u{1F600} \"\\", "reason_chars": 4}),
        ),
        AuditRecord::new(
            3_000,
            "admin",
            "request.approved",
            "request/r1",
            json!({"grant": "g-1", "ratio": 0.1, "big": 7.784722406916115e85, "tiny": 5e-324,
                   "negative_zero": -0.0, "max": u64::MAX, "min": i64::MIN, "random": random}),
        ),
        AuditRecord::new(
            3_000,
            "bob",
            "admin.login_failed",
            "admin/bob",
            json!({"attempted": "bob\0"}),
        ),
        AuditRecord::new(
            4_000,
            "admin",
            "request.rejected",
            "request/r2",
            json!([1, {"b": 2, "a": 1}, []]),
        ),
        AuditRecord::new(5_000, "system", "requests.pruned", "request/r1", json!(null)),
        AuditRecord::new(6_000, "Admin", "policy_put", "policy/employees", json!("x")),
    ]
}

/// How many entries [`audit_log`] leaves: its records and ten concurrent appends.
const AUDITED: u64 = 17;

/// The audit chain: appended one entry after another, each linked to the one before; listed
/// with each filter and in pages; its head; the chain verified; a record no store can keep
/// refused alike; concurrent appends kept in one chain.
async fn audit_log(store: Arc<dyn ApprovalStore>) {
    assert_eq!(store.audit_head().await.unwrap(), None);
    assert!(store
        .list_audit(&AuditFilter::default())
        .await
        .unwrap()
        .is_empty());
    assert_eq!(verify_chain(&*store, 3).await, Ok(0), "an empty chain");

    let records = audit_records();
    let mut appended: Vec<AuditEntry> = Vec::new();
    for (i, record) in records.iter().enumerate() {
        let entry = store.append_audit(record).await.unwrap();
        let prev = appended.last().map_or(GENESIS, |e| e.hash.as_str());
        assert_eq!(entry.seq, i as u64 + 1);
        assert_eq!(entry.prev_hash, prev, "entry {}", entry.seq);
        assert_eq!(entry.hash, entry_hash(entry.seq, prev, record));
        assert_eq!(entry.record, *record);
        appended.push(entry);
    }
    let last = appended.last().unwrap();
    assert_eq!(
        store.audit_head().await.unwrap(),
        Some((last.seq, last.hash.clone()))
    );
    assert_eq!(
        store.list_audit(&AuditFilter::default()).await.unwrap(),
        appended,
        "stored exactly as appended (details included)"
    );

    let all = AuditFilter::default();
    assert_eq!(audit_seqs(&*store, all.clone().actor("admin")).await, [1, 3, 5]);
    assert_eq!(audit_seqs(&*store, all.clone().actor("Admin")).await, [7]);
    assert_eq!(
        audit_seqs(&*store, all.clone().action_prefix("request.")).await,
        [2, 3, 5]
    );
    assert_eq!(
        audit_seqs(&*store, all.clone().action_prefix("request")).await,
        [2, 3, 5, 6]
    );
    assert_eq!(
        audit_seqs(&*store, all.clone().action_prefix("policy_")).await,
        [7],
        "`_` is no wildcard"
    );
    assert_eq!(
        audit_seqs(&*store, all.clone().action_prefix("policy.")).await,
        [1]
    );
    assert_eq!(
        audit_seqs(&*store, all.clone().action_prefix("Request.")).await,
        [] as [u64; 0],
        "case-sensitive"
    );
    assert_eq!(
        audit_seqs(&*store, all.clone().action_prefix("%")).await,
        [] as [u64; 0],
        "`%` is no wildcard"
    );
    assert_eq!(
        audit_seqs(&*store, all.clone().action_prefix("")).await,
        [1, 2, 3, 4, 5, 6, 7]
    );
    assert_eq!(
        audit_seqs(&*store, all.clone().subject("request/r1")).await,
        [2, 3, 6]
    );
    assert_eq!(
        audit_seqs(&*store, all.clone().between(Some(3_000), Some(5_000))).await,
        [3, 4, 5]
    );
    assert_eq!(
        audit_seqs(&*store, all.clone().between(None, Some(3_000))).await,
        [1, 2],
        "the end is exclusive"
    );
    assert_eq!(
        audit_seqs(&*store, all.clone().between(Some(5_000), None)).await,
        [6, 7]
    );
    assert_eq!(
        audit_seqs(
            &*store,
            all.clone()
                .actor("admin")
                .action_prefix("request.")
                .subject("request/r2")
        )
        .await,
        [5],
        "filters combine"
    );
    // Pages: after the last seq of the page before, `limit` at a time; with a filter too.
    for (filter, expected) in [
        (all.clone(), vec![1, 2, 3, 4, 5, 6, 7]),
        (all.clone().actor("admin"), vec![1, 3, 5]),
        (all.clone().subject("request/r1"), vec![2, 3, 6]),
    ] {
        let mut page = filter.page(0, 2);
        let mut seen = Vec::new();
        loop {
            let seqs = audit_seqs(&*store, page.clone()).await;
            assert!(seqs.len() <= 2, "{seqs:?}");
            let Some(&last) = seqs.last() else { break };
            seen.extend(seqs);
            page.after_seq = last;
        }
        assert_eq!(seen, expected);
    }
    assert_eq!(audit_seqs(&*store, all.clone().page(5, 0)).await, [6, 7]);
    assert_eq!(audit_seqs(&*store, all.clone().page(2, 3)).await, [3, 4, 5]);
    assert_eq!(audit_seqs(&*store, all.clone().page(7, 0)).await, [] as [u64; 0]);
    assert_eq!(
        audit_seqs(&*store, all.clone().page(u64::MAX, 1)).await,
        [] as [u64; 0]
    );
    assert_eq!(verify_chain(&*store, 3).await, Ok(7));
    assert_eq!(verify_chain(&*store, 0).await, Ok(7), "in one page");

    // A NUL in actor, action or subject: refused by every store, nothing appended.
    for record in [
        AuditRecord::new(7_000, "bob\0", "admin.login_failed", "admin/bob", json!(null)),
        AuditRecord::new(7_000, "bob", "admin.login\0", "admin/bob", json!(null)),
        AuditRecord::new(7_000, "bob", "admin.login_failed", "admin/\0", json!(null)),
    ] {
        let refused = store.append_audit(&record).await;
        assert!(
            matches!(&refused, Err(Error::Store { reason }) if reason.contains("NUL")),
            "{refused:?}"
        );
    }
    assert_eq!(store.audit_head().await.unwrap().map(|h| h.0), Some(7));

    // Ten appends at once: one chain, seqs without a gap, each append given its own.
    let tasks: Vec<_> = (0..10)
        .map(|i| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                store
                    .append_audit(&AuditRecord::new(
                        8_000 + i,
                        "system",
                        "test.concurrent",
                        format!("n/{i}"),
                        json!({"i": i}),
                    ))
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut seqs = Vec::new();
    for task in tasks {
        seqs.push(task.await.unwrap().seq);
    }
    seqs.sort_unstable();
    assert_eq!(seqs, (8..=AUDITED).collect::<Vec<_>>());
    assert_eq!(verify_chain(&*store, 4).await, Ok(AUDITED));
}

async fn conformance(store: Arc<dyn ApprovalStore>) {
    audit_log(Arc::clone(&store)).await;
    assert_eq!(counts(&*store).await, [], "no request, no state counted");
    shared_values_and_leases(&*store).await;
    documents(&*store).await;
    store.insert(&request("r1", "alice", 100)).await.unwrap();
    store.insert(&request("r2", "bob", 200)).await.unwrap();
    let mut r3 = request("r3", "alice", 300);
    r3.device = DeviceId::new("dev-2"); // alice's other device: r1 is open on "dev"
    store.insert(&r3).await.unwrap();
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
    // An offset past the end is an empty page, however large (not the first page).
    page.offset = usize::MAX;
    assert!(store.list(&page).await.unwrap().is_empty());

    assert!(is_new(&*store, "ev-1", 1).await);
    assert!(!is_new(&*store, "ev-1", 2).await, "duplicates are detected");
    // Retention: keys recorded before the cut are forgotten, later ones kept.
    assert!(is_new(&*store, "ev-late", 1_000).await);
    assert_eq!(store.prune_events(500).await.unwrap(), 1);
    assert!(is_new(&*store, "ev-1", 4).await, "pruned: new again");
    assert!(!is_new(&*store, "ev-late", 1_001).await, "kept");
    assert_eq!(
        store.get(&RequestId("r1".into())).await.unwrap().unwrap().version,
        1,
        "events that change nothing leave the request alone"
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
    assert!(!is_new(&*store, "ev-r4-noop", 14).await, "the key was recorded");
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
    assert!(is_new(&*store, "ev-r4-bad", 17).await, "not recorded");
    assert!(is_new(&*store, "ev-none", 18).await, "not recorded");
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

    // Requests by state, for monitoring: each state once, ended requests counted too.
    let mut r5 = request("r5", "erin", 500);
    r5.record(RequestState::Approved, 510, "approver", Source::System, None);
    store.insert(&r5).await.unwrap();
    assert_eq!(counts(&*store).await, LEFT);
}

/// At most one open request per requester, device and action, decided by the store, and
/// among concurrent inserts too.
async fn one_open_request_per_kind(store: Arc<dyn ApprovalStore>) {
    store.insert(&request("o1", "olga", 100)).await.unwrap();
    match store.insert(&request("o2", "olga", 200)).await {
        Err(Error::AlreadyOpen { open }) => assert_eq!(open, "o1"),
        other => panic!("{other:?}"),
    }
    // Another device, another action, another user: each its own.
    let mut other_device = request("o3", "olga", 300);
    other_device.device = DeviceId::new("dev-2");
    let mut other_action = request("o4", "olga", 400);
    other_action.action = Action::Logoff;
    for r in [other_device, other_action, request("o5", "oscar", 500)] {
        store.insert(&r).await.unwrap();
    }
    // A pending request is open too; once it ends, the next filing is accepted.
    let mut o1 = store.get(&RequestId("o1".into())).await.unwrap().unwrap();
    o1.external_id = Some("pi-o1".into());
    o1.record(RequestState::Pending, 150, "system", Source::System, None);
    store.update(&o1).await.unwrap();
    assert!(matches!(
        store.insert(&request("o6", "olga", 600)).await,
        Err(Error::AlreadyOpen { .. })
    ));
    store
        .apply_event("pi-o1", "ev-o1", 700, &mut |_| {
            Ok(Some(Change::new(
                RequestState::Rejected,
                700,
                "dingtalk",
                Source::System,
            )))
        })
        .await
        .unwrap();
    store.insert(&request("o7", "olga", 800)).await.unwrap();
    // A request that ended in an update (not an event) frees its kind as well.
    let mut o7 = store.get(&RequestId("o7".into())).await.unwrap().unwrap();
    o7.record(RequestState::Failed, 850, "system", Source::System, None);
    store.update(&o7).await.unwrap();
    // Ten concurrent filings of one kind: one is stored, the others name it.
    let tasks: Vec<_> = (0..10)
        .map(|i| {
            let store = Arc::clone(&store);
            tokio::spawn(async move { store.insert(&request(&format!("c{i}"), "olga", 900 + i)).await })
        })
        .collect();
    let mut results = Vec::new();
    for task in tasks {
        results.push(task.await);
    }
    let stored: Vec<usize> = (0..10).filter(|&i| matches!(results[i], Ok(Ok(())))).collect();
    assert_eq!(stored.len(), 1, "{results:?}");
    let winner = format!("c{}", stored[0]);
    for r in &results {
        match r {
            Ok(Ok(())) => {}
            Ok(Err(Error::AlreadyOpen { open })) => assert_eq!(*open, winner),
            other => panic!("{other:?}"),
        }
    }
}

#[tokio::test]
async fn memory_store_conforms() {
    conformance(Arc::new(MemoryStore::new())).await;
    one_open_request_per_kind(Arc::new(MemoryStore::new())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_store_keeps_one_open_request_per_kind() {
    let db = support::TempDb::new("open.sqlite");
    one_open_request_per_kind(Arc::new(db.open().await)).await;
}

#[tokio::test]
async fn a_database_from_before_the_open_request_check_migrates_with_its_duplicates() {
    let db = support::TempDb::new("legacy.sqlite");
    let store = db.open().await;
    // As the last schema without the check would have stored them: two open requests of
    // one kind, and a third that ended.
    let raw = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.path.display()))
        .await
        .unwrap();
    for statement in [
        "DROP TABLE audit",
        "DROP TABLE audit_head",
        "DROP TABLE documents",
        "DROP TABLE counters",
        "DROP TABLE shared_values",
        "DROP TABLE leases",
        "DROP INDEX requests_by_time",
        "DROP INDEX requests_by_device",
        "DROP INDEX requests_by_workflow",
        "ALTER TABLE requests DROP COLUMN device",
        "DROP INDEX requests_open",
        "ALTER TABLE requests DROP COLUMN open_key",
        "DELETE FROM schema_version WHERE version >= 3",
    ] {
        sqlx::query(statement).execute(&raw).await.unwrap();
    }
    let mut ended = request("l0", "lena", 50);
    ended.record(RequestState::Failed, 60, "system", Source::System, None);
    for r in [ended, request("l1", "lena", 100), request("l2", "lena", 200)] {
        let body = serde_json::to_string(&r).unwrap();
        sqlx::query(
            "INSERT INTO requests (id, state, workflow, requester, created_at_ms, version, body)
             VALUES (?, ?, 'wf', 'lena', ?, 0, ?)",
        )
        .bind(r.id.as_str())
        .bind(r.state.as_str())
        .bind(r.created_at_ms)
        .bind(body)
        .execute(&raw)
        .await
        .unwrap();
    }
    raw.close().await;
    drop(store);
    let store = db.open().await;
    // The oldest open one holds the kind; the duplicate is kept, not lost.
    match store.insert(&request("l3", "lena", 300)).await {
        Err(Error::AlreadyOpen { open }) => assert_eq!(open, "l1"),
        other => panic!("{other:?}"),
    }
    assert_eq!(store.list(&ListFilter::default()).await.unwrap().len(), 3);
}

/// The ids of the requests of `all` that `filter` should list, in its order (its page
/// aside): worked out here, field by field, not by [`ListFilter::matches`].
fn expected(all: &[ApprovalRequest], filter: &ListFilter) -> Vec<String> {
    let mut kept: Vec<&ApprovalRequest> = all
        .iter()
        .filter(|r| filter.states.is_empty() || filter.states.contains(&r.state))
        .filter(|r| filter.requester.as_ref().is_none_or(|u| *u == r.requester))
        .filter(|r| filter.device.as_ref().is_none_or(|d| *d == r.device))
        .filter(|r| filter.workflow.as_ref().is_none_or(|w| *w == r.workflow))
        .filter(|r| filter.created_from_ms.is_none_or(|t| r.created_at_ms >= t))
        .filter(|r| filter.created_to_ms.is_none_or(|t| r.created_at_ms < t))
        .collect();
    kept.sort_by(|a, b| (a.created_at_ms, a.id.as_str()).cmp(&(b.created_at_ms, b.id.as_str())));
    if filter.newest_first {
        kept.reverse();
    }
    kept.iter().map(|r| r.id.0.clone()).collect()
}

fn ids(listed: &[ApprovalRequest]) -> Vec<&str> {
    listed.iter().map(|r| r.id.as_str()).collect()
}

/// The console's listing: 30 requests of three requesters, four devices and two workflows,
/// two created in each 10 ms (so that ids break ties), paged through newest first with the
/// total, filtered by state, requester, device, workflow and creation date, alone and
/// together. Returns what was stored.
async fn console_listing(store: &dyn ApprovalStore) -> Vec<ApprovalRequest> {
    let users = ["ann", "ben", "cat"];
    for i in 0..30_usize {
        let created = 1_000 + i64::try_from(i / 2).unwrap() * 10;
        let mut r = request(&format!("q{i:02}"), users[i % 3], created);
        r.device = DeviceId::new(format!("dev-{}", i % 4));
        r.workflow = WorkflowId::new(if i % 2 == 0 { "wf-a" } else { "wf-b" });
        // Open (submitted or pending) one in five, with a kind of its own; the rest ended.
        let state = match (i % 10, i % 3) {
            (0, _) => RequestState::Pending,
            (5, _) => RequestState::Submitted,
            (_, 0) => RequestState::Approved,
            (_, 1) => RequestState::Rejected,
            _ => RequestState::Expired,
        };
        if state != RequestState::Submitted {
            r.record(state, created + 1, "system", Source::System, None);
        }
        store.insert(&r).await.unwrap();
    }
    // The device stays what it was through an update and an event.
    let mut q05 = store.get(&RequestId("q05".into())).await.unwrap().unwrap();
    q05.external_id = Some("pi-q05".into());
    q05.record(RequestState::Pending, 1_030, "system", Source::System, None);
    store.update(&q05).await.unwrap();
    let approved = store
        .apply_event("pi-q05", "ev-q05", 1_031, &mut |_| {
            Ok(Some(Change::new(
                RequestState::Approved,
                1_031,
                "dingtalk",
                Source::System,
            )))
        })
        .await
        .unwrap();
    assert!(matches!(approved, EventWrite::Changed(_)), "{approved:?}");
    let all = store.list(&ListFilter::default()).await.unwrap();
    assert_eq!(all.len(), 30);

    // Newest first: by creation time, then id, both descending.
    let newest = store
        .list(&ListFilter::default().newest_first().page(0, 5))
        .await
        .unwrap();
    assert_eq!(ids(&newest), ["q29", "q28", "q27", "q26", "q25"]);
    assert_eq!(ids(&all[..3]), ["q00", "q01", "q02"], "oldest first otherwise");
    // A device's requests, the one updated and decided by an event among them.
    let dev_1 = store
        .list(
            &ListFilter::default()
                .device(DeviceId::new("dev-1"))
                .newest_first(),
        )
        .await
        .unwrap();
    assert_eq!(
        ids(&dev_1),
        ["q29", "q25", "q21", "q17", "q13", "q09", "q05", "q01"]
    );
    assert!(dev_1.iter().all(|r| r.device.as_str() == "dev-1"));
    // A workflow's, created in [1 040, 1 100).
    let wf_b = store
        .list(
            &ListFilter::default()
                .workflow(WorkflowId::new("wf-b"))
                .created_from_ms(1_040)
                .created_to_ms(1_100)
                .newest_first(),
        )
        .await
        .unwrap();
    assert_eq!(ids(&wf_b), ["q19", "q17", "q15", "q13", "q11", "q09"]);

    let filters = [
        ListFilter::default(),
        ListFilter::default().device(DeviceId::new("dev-1")),
        ListFilter::default().device(DeviceId::new("dev-none")),
        ListFilter::default().workflow(WorkflowId::new("wf-b")),
        ListFilter::default()
            .workflow(WorkflowId::new("wf-a"))
            .created_from_ms(1_040)
            .created_to_ms(1_100),
        ListFilter::default().created_from_ms(1_050),
        ListFilter::default().created_to_ms(1_050),
        ListFilter::default().created_from_ms(1_100).created_to_ms(1_100),
        ListFilter::default().states(vec![RequestState::Approved]),
        ListFilter::default().states(vec![RequestState::Submitted, RequestState::Pending]),
        ListFilter::default().requester(UserId::new("ann")),
        ListFilter::default()
            .requester(UserId::new("ann"))
            .device(DeviceId::new("dev-0")),
        ListFilter::default()
            .device(DeviceId::new("dev-3"))
            .states(vec![
                RequestState::Approved,
                RequestState::Rejected,
                RequestState::Expired,
            ])
            .created_from_ms(1_020),
    ];
    for filter in filters {
        for newest_first in [false, true] {
            let mut filter = filter.clone();
            filter.newest_first = newest_first;
            let want = expected(&all, &filter);
            let listed = store.list(&filter).await.unwrap();
            assert_eq!(ids(&listed), want, "{filter:?}");
            assert!(listed.iter().all(|r| filter.matches(r)), "{filter:?}");
            // The total: as many as listed without a limit, whatever the page.
            let total = u64::try_from(want.len()).unwrap();
            assert_eq!(store.count(&filter).await.unwrap(), total, "{filter:?}");
            assert_eq!(
                store.count(&filter.clone().page(2, 3)).await.unwrap(),
                total,
                "{filter:?}: the page aside"
            );
            // Pages of 4: disjoint, consecutive, together the whole listing.
            let mut paged: Vec<String> = Vec::new();
            for n in 0.. {
                let page = store.list(&filter.clone().page(n * 4, 4)).await.unwrap();
                assert!(page.len() <= 4, "{filter:?}");
                if page.is_empty() {
                    assert_eq!(n, want.len().div_ceil(4), "{filter:?}");
                    break;
                }
                for r in &page {
                    assert!(!paged.contains(&r.id.0), "{filter:?}: {} twice", r.id);
                }
                paged.extend(page.iter().map(|r| r.id.0.clone()));
            }
            assert_eq!(paged, want, "{filter:?}");
        }
    }
    all
}

#[tokio::test]
async fn memory_store_pages_for_the_console() {
    console_listing(&MemoryStore::new()).await;
}

#[tokio::test]
async fn sqlite_store_pages_for_the_console_and_across_a_restart() {
    let db = support::TempDb::new("console.sqlite");
    let stored = console_listing(&db.open().await).await;
    // Reopened (the migrations have nothing left to do): the same pages.
    let reopened = db.open().await;
    let dev_2 = ListFilter::default()
        .device(DeviceId::new("dev-2"))
        .newest_first();
    assert_eq!(
        ids(&reopened.list(&dev_2).await.unwrap()),
        expected(&stored, &dev_2)
    );
    assert_eq!(reopened.count(&dev_2).await.unwrap(), 7);
}

/// The device column came with schema version 8: a database from before it, with requests
/// in it, is migrated and the column filled in from each request's body.
#[tokio::test]
async fn a_sqlite_database_from_before_the_device_column_migrates_with_devices_filled_in() {
    let db = support::TempDb::new("before-device.sqlite");
    let store = db.open().await;
    let mut stored = Vec::new();
    for (i, device) in ["laptop-1", "laptop-2", "笔记本-3", "laptop-1"]
        .into_iter()
        .enumerate()
    {
        let mut r = request(
            &format!("m{i}"),
            &format!("user-{i}"),
            100 * i64::try_from(i).unwrap(),
        );
        r.device = DeviceId::new(device);
        // Text the JSON functions must read past.
        Arc::make_mut(&mut r.fields).insert("reason".into(), "a\0 \"\\u0000\" \u{1F600}".into());
        store.insert(&r).await.unwrap();
        stored.push(r);
    }
    drop(store);
    // Back to schema version 7, as that schema's store left it: no device column, no index
    // of it or of the time alone.
    let raw = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.path.display()))
        .await
        .unwrap();
    for statement in [
        "DROP INDEX requests_by_time",
        "DROP INDEX requests_by_device",
        "DROP INDEX requests_by_workflow",
        "ALTER TABLE requests DROP COLUMN device",
        "DELETE FROM schema_version WHERE version >= 8",
    ] {
        sqlx::query(statement).execute(&raw).await.unwrap();
    }
    raw.close().await;

    let store = db.open().await;
    let raw = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.path.display()))
        .await
        .unwrap();
    let version: i64 = sqlx::query_scalar("SELECT MAX(version) FROM schema_version")
        .fetch_one(&raw)
        .await
        .unwrap();
    assert_eq!(version, 8);
    let devices: Vec<(String, Option<String>)> =
        sqlx::query_as("SELECT id, device FROM requests ORDER BY id")
            .fetch_all(&raw)
            .await
            .unwrap();
    let want: Vec<(String, Option<String>)> = stored
        .iter()
        .map(|r| (r.id.0.clone(), Some(r.device.to_string())))
        .collect();
    assert_eq!(devices, want);
    let indexes: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'requests' ORDER BY name",
    )
    .fetch_all(&raw)
    .await
    .unwrap();
    for index in ["requests_by_device", "requests_by_time", "requests_by_workflow"] {
        assert!(indexes.iter().any(|i| i == index), "{index} in {indexes:?}");
    }
    raw.close().await;
    // Listed and counted by device; new requests get theirs as before.
    let laptop_1 = ListFilter::default()
        .device(DeviceId::new("laptop-1"))
        .newest_first();
    assert_eq!(ids(&store.list(&laptop_1).await.unwrap()), ["m3", "m0"]);
    assert_eq!(store.count(&laptop_1).await.unwrap(), 2);
    let mut m4 = request("m4", "user-4", 400);
    m4.device = DeviceId::new("laptop-1");
    store.insert(&m4).await.unwrap();
    assert_eq!(ids(&store.list(&laptop_1).await.unwrap()), ["m4", "m3", "m0"]);
    let other = ListFilter::default().device(DeviceId::new("笔记本-3"));
    assert_eq!(ids(&store.list(&other).await.unwrap()), ["m2"]);
}

#[tokio::test]
async fn sqlite_store_conforms_and_keeps_everything_across_a_restart() {
    let db = support::TempDb::new("approvals.sqlite");
    conformance(Arc::new(db.open().await)).await;

    // Reopen the file: requests, versions, history and event keys are all there.
    kept_everything(&db.open().await).await;
}

/// What [`conformance`] left in a store, read back through another connection (a restart,
/// or another replica): requests, versions, history, counts and event keys.
async fn kept_everything(reopened: &dyn ApprovalStore) {
    let r1 = reopened.find_by_external("pi-1").await.unwrap().unwrap();
    assert_eq!(
        (r1.state, r1.version, r1.history.len()),
        (RequestState::Pending, 1, 2)
    );
    assert_eq!(r1.fields["reason"], "重装系统");
    assert_eq!(reopened.list(&ListFilter::default()).await.unwrap().len(), 5);
    assert_eq!(counts(reopened).await, LEFT);
    assert!(
        !is_new(reopened, "ev-1", 4).await,
        "event de-duplication survives a restart"
    );
    assert_eq!(
        verify_chain(reopened, 5).await,
        Ok(AUDITED),
        "the audit chain survives a restart"
    );
}

#[tokio::test]
async fn a_stored_request_with_an_impossible_version_is_an_error_not_version_zero() {
    let db = support::TempDb::new("corrupt.sqlite");
    let store = db.open().await;
    store.insert(&request("r1", "alice", 100)).await.unwrap();
    let raw = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.path.display()))
        .await
        .unwrap();
    sqlx::query("UPDATE requests SET version = -1")
        .execute(&raw)
        .await
        .unwrap();
    let read = store.get(&RequestId("r1".into())).await;
    assert!(
        matches!(&read, Err(Error::Store { reason }) if reason.contains("negative version")),
        "{read:?}"
    );
}

#[tokio::test]
async fn a_database_that_cannot_be_opened_is_named_in_the_error() {
    let db = support::TempDb::new("no-such-dir/approvals.sqlite");
    let path = db.path.display().to_string();
    match sase_approval::store::SqliteStore::open(&db.path).await {
        Err(Error::Store { reason }) => assert!(reason.starts_with(&path), "{reason}"),
        other => panic!("{other:?}"),
    }
}

/// Ids sort bytewise (as Rust's `String`s do, whatever the database's collation), and text
/// round-trips exactly, a NUL and non-ASCII included.
async fn ids_sort_bytewise_and_text_round_trips(store: &dyn ApprovalStore) {
    for (i, id) in ["b", "B", "a", "_", "ä"].into_iter().enumerate() {
        let mut r = request(id, &format!("user-{i}"), 100);
        Arc::make_mut(&mut r.fields).insert("reason".into(), format!("{id}\0 \u{1F600} \"\\"));
        store.insert(&r).await.unwrap();
    }
    let listed = store.list(&ListFilter::default()).await.unwrap();
    assert_eq!(
        listed.iter().map(|r| r.id.0.as_str()).collect::<Vec<_>>(),
        ["B", "_", "a", "b", "ä"]
    );
    let stored = store.get(&RequestId("ä".into())).await.unwrap().unwrap();
    assert_eq!(stored.fields["reason"], "ä\0 \u{1F600} \"\\");
}

#[tokio::test]
async fn every_store_sorts_ids_bytewise_and_keeps_text_exactly() {
    ids_sort_bytewise_and_text_round_trips(&MemoryStore::new()).await;
    let db = support::TempDb::new("text.sqlite");
    ids_sort_bytewise_and_text_round_trips(&db.open().await).await;
    #[cfg(feature = "postgres")]
    if let Some(db) = support::postgres::TempPostgres::new().await {
        ids_sort_bytewise_and_text_round_trips(&db.open().await).await;
    }
}

/// Raw SQL on a store's database, behind its back: someone with write access to the database.
enum Raw {
    Sqlite(sqlx::SqlitePool),
    #[cfg(feature = "postgres")]
    Postgres(sqlx::PgPool),
}

impl Raw {
    async fn run(&self, sql: &str) {
        match self {
            Raw::Sqlite(pool) => {
                sqlx::query(sql).execute(pool).await.unwrap();
            }
            #[cfg(feature = "postgres")]
            Raw::Postgres(pool) => {
                sqlx::query(sql).execute(pool).await.unwrap();
            }
        }
    }

    async fn close(self) {
        match self {
            Raw::Sqlite(pool) => pool.close().await,
            #[cfg(feature = "postgres")]
            Raw::Postgres(pool) => pool.close().await,
        }
    }
}

/// Ways to tamper with a chain of six entries in the database.
#[derive(Debug, Clone, Copy)]
enum Tamper {
    /// Entry 3's actor edited.
    EditActor,
    /// Entry 3's details edited.
    EditDetails,
    /// Entry 3 deleted.
    DeleteMiddle,
    /// Entries 2 and 4 swapped: every column but seq.
    SwapContents,
    /// Entry 6, the last, deleted.
    DeleteLast,
    /// Entry 3's actor edited and its hash recomputed with `entry_hash`.
    EditAndRehash,
}

const TAMPERINGS: [Tamper; 6] = [
    Tamper::EditActor,
    Tamper::EditDetails,
    Tamper::DeleteMiddle,
    Tamper::SwapContents,
    Tamper::DeleteLast,
    Tamper::EditAndRehash,
];

/// Appends six entries to `store`.
async fn six_entries(store: &dyn ApprovalStore) {
    for i in 1..=6 {
        store
            .append_audit(&AuditRecord::new(
                i * 1_000,
                "admin",
                "request.approved",
                format!("request/r-{i}"),
                json!({"grant": format!("g-{i}"), "note": "ok"}),
            ))
            .await
            .unwrap();
    }
    assert_eq!(verify_chain(store, 4).await, Ok(6), "intact");
}

/// Six entries appended, then `tamper` done with raw SQL: the verifier names the first broken
/// entry, for the reason expected.
async fn tampering_is_found(store: &dyn ApprovalStore, raw: &Raw, tamper: Tamper) {
    six_entries(store).await;
    let (seq, reason) = match tamper {
        Tamper::EditActor => {
            raw.run("UPDATE audit SET actor = 'mallory' WHERE seq = 3").await;
            (3, "not the hash of its contents")
        }
        Tamper::EditDetails => {
            raw.run("UPDATE audit SET details = replace(details, 'g-3', 'g-9') WHERE seq = 3")
                .await;
            (3, "not the hash of its contents")
        }
        Tamper::DeleteMiddle => {
            raw.run("DELETE FROM audit WHERE seq = 3").await;
            (4, "where entry 3 should be")
        }
        Tamper::SwapContents => {
            // Swapping every other column of two rows is swapping their seqs.
            for sql in [
                "UPDATE audit SET seq = -2 WHERE seq = 2",
                "UPDATE audit SET seq = 2 WHERE seq = 4",
                "UPDATE audit SET seq = 4 WHERE seq = -2",
            ] {
                raw.run(sql).await;
            }
            (2, "prev_hash")
        }
        Tamper::DeleteLast => {
            raw.run("DELETE FROM audit WHERE seq = 6").await;
            (6, "the chain ends at entry 5")
        }
        Tamper::EditAndRehash => {
            let third = store
                .list_audit(&AuditFilter::default().page(2, 1))
                .await
                .unwrap()
                .remove(0);
            let mut forged = third.record.clone();
            forged.actor = "mallory".into();
            let hash = entry_hash(3, &third.prev_hash, &forged);
            raw.run(&format!(
                "UPDATE audit SET actor = 'mallory', hash = '{hash}' WHERE seq = 3"
            ))
            .await;
            let edited = store
                .list_audit(&AuditFilter::default().page(2, 1))
                .await
                .unwrap()
                .remove(0);
            assert_eq!(
                (edited.record.actor.as_str(), edited.hash.as_str()),
                ("mallory", hash.as_str()),
                "the forgery is in place"
            );
            (4, "prev_hash")
        }
    };
    let found = verify_chain(store, 4).await.unwrap_err();
    assert_eq!(found.seq, seq, "{tamper:?}: {found}");
    assert!(found.reason.contains(reason), "{tamper:?}: {found}");
}

/// What the store's head cannot catch: the tail removed AND the head moved back with it (the
/// hash has no key). A head kept elsewhere (written down earlier, or shipped to a log
/// collector with the entry) still does.
async fn a_rewritten_head_is_caught_by_a_copy_kept_elsewhere(store: &dyn ApprovalStore, raw: &Raw) {
    six_entries(store).await;
    let kept = store.audit_head().await.unwrap();
    raw.run("DELETE FROM audit WHERE seq = 6").await;
    raw.run("UPDATE audit_head SET seq = 5, hash = (SELECT hash FROM audit WHERE seq = 5) WHERE id = 1")
        .await;
    assert_eq!(
        verify_chain(store, 4).await,
        Ok(5),
        "consistent with the rewritten head"
    );
    let mut verifier = ChainVerifier::new();
    for entry in store.list_audit(&AuditFilter::default()).await.unwrap() {
        verifier.push(&entry).unwrap();
    }
    let found = verifier.finish(kept).unwrap_err();
    assert_eq!(found.seq, 6, "{found}");
}

#[tokio::test]
async fn sqlite_audit_tampering_is_found_at_the_first_broken_entry() {
    let open = |name: String| async move {
        let db = support::TempDb::new(&name);
        let store = db.open().await;
        let raw = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.path.display()))
            .await
            .unwrap();
        (db, store, Raw::Sqlite(raw))
    };
    for (i, tamper) in TAMPERINGS.into_iter().enumerate() {
        let (_db, store, raw) = open(format!("tamper-{i}.sqlite")).await;
        tampering_is_found(&store, &raw, tamper).await;
        raw.close().await;
    }
    let (_db, store, raw) = open("head.sqlite".into()).await;
    a_rewritten_head_is_caught_by_a_copy_kept_elsewhere(&store, &raw).await;
    raw.close().await;
}

/// Two stores on one SQLite file (two processes): their appends still make one chain, each
/// transaction taking the write lock before it reads the head.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_stores_sharing_a_file_append_to_one_audit_chain() {
    let db = support::TempDb::new("shared.sqlite");
    let stores = [Arc::new(db.open().await), Arc::new(db.open().await)];
    let tasks: Vec<_> = (0..40_i64)
        .map(|i| {
            let store = Arc::clone(&stores[usize::try_from(i % 2).unwrap()]);
            tokio::spawn(async move {
                store
                    .append_audit(&AuditRecord::new(
                        i,
                        "system",
                        "test.append",
                        format!("n/{i}"),
                        json!(i),
                    ))
                    .await
                    .unwrap()
                    .seq
            })
        })
        .collect();
    let mut seqs = Vec::new();
    for task in tasks {
        seqs.push(task.await.unwrap());
    }
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=40).collect::<Vec<_>>());
    assert_eq!(verify_chain(&*stores[1], 8).await, Ok(40));
}

#[cfg(feature = "postgres")]
mod postgres {
    use super::*;
    use sase_approval::store::PostgresStore;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn postgres_store_conforms_and_keeps_everything_across_a_reconnect() {
        let Some(db) = support::postgres::TempPostgres::new().await else {
            return;
        };
        conformance(Arc::new(db.open().await)).await;

        // Another connection (a restart, or another replica): everything is there.
        kept_everything(&db.open().await).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn postgres_store_keeps_one_open_request_per_kind() {
        let Some(db) = support::postgres::TempPostgres::new().await else {
            return;
        };
        one_open_request_per_kind(Arc::new(db.open().await)).await;
    }

    #[tokio::test]
    async fn postgres_store_pages_for_the_console_and_across_a_reconnect() {
        let Some(db) = support::postgres::TempPostgres::new().await else {
            return;
        };
        let stored = console_listing(&db.open().await).await;
        let reconnected = db.open().await;
        let dev_2 = ListFilter::default()
            .device(DeviceId::new("dev-2"))
            .newest_first();
        assert_eq!(
            ids(&reconnected.list(&dev_2).await.unwrap()),
            expected(&stored, &dev_2)
        );
        assert_eq!(reconnected.count(&dev_2).await.unwrap(), 7);
    }

    /// The device column came with schema version 6: a database from before it, with
    /// requests in it (one with `\u0000` in its body, which PostgreSQL's JSON functions
    /// refuse), is migrated and the column filled in from each request's body.
    #[tokio::test]
    async fn a_postgres_database_from_before_the_device_column_migrates_with_devices_filled_in() {
        let Some(db) = support::postgres::TempPostgres::new().await else {
            return;
        };
        let store = db.open().await;
        let mut stored = Vec::new();
        for (i, device) in ["laptop-1", "laptop-2", "笔记本-3", "laptop-1"]
            .into_iter()
            .enumerate()
        {
            let mut r = request(
                &format!("m{i}"),
                &format!("user-{i}"),
                100 * i64::try_from(i).unwrap(),
            );
            r.device = DeviceId::new(device);
            let reason = ["plain", "a\0b", "\"\\u0000\"", "\\\0 \u{1F600}"][i];
            Arc::make_mut(&mut r.fields).insert("reason".into(), reason.into());
            store.insert(&r).await.unwrap();
            stored.push(r);
        }
        let raw = sqlx::PgPool::connect(&db.url).await.unwrap();
        for statement in [
            "DROP INDEX requests_by_time",
            "DROP INDEX requests_by_device",
            "DROP INDEX requests_by_workflow",
            "ALTER TABLE requests DROP COLUMN device",
            "DELETE FROM schema_version WHERE version >= 6",
        ] {
            sqlx::query(statement).execute(&raw).await.unwrap();
        }

        let store = db.open().await;
        let versions: Vec<i64> = sqlx::query_scalar("SELECT version FROM schema_version ORDER BY version")
            .fetch_all(&raw)
            .await
            .unwrap();
        assert_eq!(versions, [1, 2, 3, 4, 5, 6]);
        let devices: Vec<(String, Option<String>)> =
            sqlx::query_as("SELECT id, device FROM requests ORDER BY id")
                .fetch_all(&raw)
                .await
                .unwrap();
        let want: Vec<(String, Option<String>)> = stored
            .iter()
            .map(|r| (r.id.0.clone(), Some(r.device.to_string())))
            .collect();
        assert_eq!(devices, want);
        raw.close().await;
        for r in &stored {
            let back = store.get(&r.id).await.unwrap().unwrap();
            assert_eq!(back.fields, r.fields, "the body is left as it was");
        }
        let laptop_1 = ListFilter::default()
            .device(DeviceId::new("laptop-1"))
            .newest_first();
        assert_eq!(ids(&store.list(&laptop_1).await.unwrap()), ["m3", "m0"]);
        assert_eq!(store.count(&laptop_1).await.unwrap(), 2);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn postgres_replicas_keep_one_open_request_per_kind_between_them() {
        let Some(db) = support::postgres::TempPostgres::new().await else {
            return;
        };
        let replicas = [Arc::new(db.open().await), Arc::new(db.open().await)];
        let tasks: Vec<_> = (0..10)
            .map(|i| {
                let store = Arc::clone(&replicas[i % 2]);
                tokio::spawn(async move { store.insert(&request(&format!("c{i}"), "olga", 900)).await })
            })
            .collect();
        let mut results = Vec::new();
        for task in tasks {
            results.push(task.await.unwrap());
        }
        assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1, "{results:?}");
        let winner = replicas[0]
            .list(&ListFilter::default())
            .await
            .unwrap()
            .pop()
            .unwrap();
        for r in results {
            match r {
                Ok(()) => {}
                Err(Error::AlreadyOpen { open }) => assert_eq!(open, winner.id.0),
                other => panic!("{other:?}"),
            }
        }
    }

    /// Replicas starting at once write the devices their configuration declares: each first
    /// write of one document, with one lookup value, is one creation and stale versions for
    /// the rest (found by the replica tests: the later writes tripped over the lookup's
    /// unique index first and failed as "another device has the same lookup value").
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn postgres_replicas_creating_one_document_at_once_make_it_once() {
        let Some(db) = support::postgres::TempPostgres::new().await else {
            return;
        };
        let replicas = [Arc::new(db.open().await), Arc::new(db.open().await)];
        for round in 0..20 {
            let id = format!("dev-{round}");
            let tasks: Vec<_> = (0..6)
                .map(|i| {
                    let store = Arc::clone(&replicas[i % 2]);
                    let document = Document::new("device", &id, 0, "{}").lookup(format!("hash-{round}"));
                    tokio::spawn(async move { store.put_document(&document).await })
                })
                .collect();
            let mut created = 0;
            for task in tasks {
                match task.await.unwrap() {
                    Ok(1) => created += 1,
                    Err(Error::Conflict {
                        expected: 0,
                        actual: 1,
                        ..
                    }) => {}
                    other => panic!("round {round}: {other:?}"),
                }
            }
            assert_eq!(created, 1, "round {round}");
        }
    }

    /// One event delivered to two replicas twenty times at once is applied once; twenty
    /// different events about one request, also spread over both, are all applied, each
    /// decided on the request as the one before left it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn postgres_replicas_apply_an_event_once_and_every_event_in_turn() {
        let Some(db) = support::postgres::TempPostgres::new().await else {
            return;
        };
        let replicas = [Arc::new(db.open().await), Arc::new(db.open().await)];
        let mut r = request("p1", "pia", 100);
        r.external_id = Some("pi-p1".into());
        replicas[0].insert(&r).await.unwrap();

        let decided = Arc::new(AtomicUsize::new(0));
        let deliver = |i: usize, key: String| {
            let store = Arc::clone(&replicas[i % 2]);
            let decided = Arc::clone(&decided);
            tokio::spawn(async move {
                store
                    .apply_event("pi-p1", &key, 1_000, &mut |r: &ApprovalRequest| {
                        decided.fetch_add(1, Ordering::SeqCst);
                        Ok(Some(
                            Change::new(RequestState::Pending, 1_000, "dingtalk", Source::System)
                                .note(Some(format!("{key} on version {}", r.version))),
                        ))
                    })
                    .await
                    .unwrap()
            })
        };

        let same: Vec<_> = (0..20).map(|i| deliver(i, "ev-same".into())).collect();
        let mut writes = Vec::new();
        for task in same {
            writes.push(task.await.unwrap());
        }
        let changed = writes
            .iter()
            .filter(|w| matches!(w, EventWrite::Changed(_)))
            .count();
        let duplicates = writes.iter().filter(|w| **w == EventWrite::Duplicate).count();
        assert_eq!((changed, duplicates), (1, 19), "{writes:?}");
        assert_eq!(decided.load(Ordering::SeqCst), 1, "decided once");

        let different: Vec<_> = (0..20).map(|i| deliver(i, format!("ev-{i}"))).collect();
        for task in different {
            assert!(matches!(task.await.unwrap(), EventWrite::Changed(_)));
        }
        let stored = replicas[1].get(&RequestId("p1".into())).await.unwrap().unwrap();
        assert_eq!(stored.version, 21);
        assert_eq!(stored.history.len(), 22);
        // Each decision saw the version the previous write left: none was lost.
        let mut seen: Vec<u64> = stored.history[2..]
            .iter()
            .map(|t| {
                t.note
                    .as_deref()
                    .unwrap()
                    .rsplit(' ')
                    .next()
                    .unwrap()
                    .parse()
                    .unwrap()
            })
            .collect();
        seen.sort_unstable();
        assert_eq!(seen, (1..=20).collect::<Vec<_>>());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn postgres_replicas_take_a_lease_one_at_a_time_and_agree_on_shared_values() {
        let Some(db) = support::postgres::TempPostgres::new().await else {
            return;
        };
        let replicas = [
            Arc::new(PostgresStore::connect(&db.url).await.unwrap()),
            Arc::new(PostgresStore::connect(&db.url).await.unwrap()),
        ];
        let tasks: Vec<_> = (0..20)
            .map(|i| {
                let store = Arc::clone(&replicas[i % 2]);
                tokio::spawn(async move {
                    let lease = store
                        .try_lease("reconciler", &format!("replica-{i}"), 1_000, 30_000)
                        .await
                        .unwrap();
                    let value = store
                        .shared_value("callback_id/wf", &format!("id-{i}"))
                        .await
                        .unwrap();
                    (lease, value)
                })
            })
            .collect();
        let mut held = 0;
        let mut values = std::collections::HashSet::new();
        for task in tasks {
            let (lease, value) = task.await.unwrap();
            held += usize::from(lease);
            values.insert(value);
        }
        assert_eq!(held, 1, "one holder");
        assert_eq!(values.len(), 1, "one value: {values:?}");

        // 40 calls counted at once against a limit of 25: exactly 25 go.
        let counts: Vec<_> = (0..40)
            .map(|i| {
                let store = Arc::clone(&replicas[i % 2]);
                tokio::spawn(async move { store.add_to_counter("calls", 1, Some(25)).await.unwrap() })
            })
            .collect();
        let mut added = Vec::new();
        for count in counts {
            let counted = count.await.unwrap();
            if counted.added {
                added.push(counted.value);
            }
        }
        added.sort_unstable();
        assert_eq!(added, (1..=25).collect::<Vec<_>>(), "each value once");
        assert_eq!(
            replicas[0].add_to_counter("calls", 0, None).await.unwrap().value,
            25
        );
    }

    #[tokio::test]
    async fn postgres_audit_tampering_is_found_at_the_first_broken_entry() {
        for tamper in TAMPERINGS {
            let Some(db) = support::postgres::TempPostgres::new().await else {
                return;
            };
            let store = db.open().await;
            let raw = Raw::Postgres(sqlx::PgPool::connect(&db.url).await.unwrap());
            tampering_is_found(&store, &raw, tamper).await;
            raw.close().await;
        }
        let Some(db) = support::postgres::TempPostgres::new().await else {
            return;
        };
        let store = db.open().await;
        let raw = Raw::Postgres(sqlx::PgPool::connect(&db.url).await.unwrap());
        a_rewritten_head_is_caught_by_a_copy_kept_elsewhere(&store, &raw).await;
        raw.close().await;
    }

    /// 40 appends at once, spread over two replicas (two pools on one database): one chain,
    /// seqs 1 to 40 without a gap or a repeat, each append given back the entry stored.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn postgres_replicas_append_to_one_audit_chain_one_at_a_time() {
        let Some(db) = support::postgres::TempPostgres::new().await else {
            return;
        };
        let replicas = [Arc::new(db.open().await), Arc::new(db.open().await)];
        let tasks: Vec<_> = (0..40_i64)
            .map(|i| {
                let store = Arc::clone(&replicas[usize::try_from(i % 2).unwrap()]);
                tokio::spawn(async move {
                    store
                        .append_audit(&AuditRecord::new(
                            1_000 + i,
                            format!("replica-{}", i % 2),
                            "test.append",
                            format!("n/{i}"),
                            json!({"i": i}),
                        ))
                        .await
                        .unwrap()
                })
            })
            .collect();
        let mut appended = Vec::new();
        for task in tasks {
            appended.push(task.await.unwrap());
        }
        appended.sort_unstable_by_key(|e| e.seq);
        assert_eq!(
            appended.iter().map(|e| e.seq).collect::<Vec<_>>(),
            (1..=40).collect::<Vec<_>>()
        );
        let stored = replicas[1].list_audit(&AuditFilter::default()).await.unwrap();
        assert_eq!(stored, appended, "each append returned the entry stored");
        let mut subjects: Vec<&str> = stored.iter().map(|e| e.record.subject.as_str()).collect();
        subjects.sort_unstable();
        subjects.dedup();
        assert_eq!(subjects.len(), 40, "each record once");
        assert_eq!(verify_chain(&*replicas[0], 7).await, Ok(40));
        assert_eq!(
            replicas[0].audit_head().await.unwrap(),
            Some((40, stored[39].hash.clone()))
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn postgres_replicas_starting_at_once_migrate_once() {
        let Some(db) = support::postgres::TempPostgres::new().await else {
            return;
        };
        let url = db.url.clone();
        let starts: Vec<_> = (0..6)
            .map(|_| {
                let url = url.clone();
                tokio::spawn(async move { PostgresStore::connect(&url).await })
            })
            .collect();
        let mut replicas = Vec::new();
        for start in starts {
            replicas.push(start.await.unwrap().unwrap());
        }
        let raw = sqlx::PgPool::connect(&url).await.unwrap();
        let versions: Vec<i64> = sqlx::query_scalar("SELECT version FROM schema_version ORDER BY version")
            .fetch_all(&raw)
            .await
            .unwrap();
        assert_eq!(versions, [1, 2, 3, 4, 5, 6], "each version applied once");
        replicas[5].insert(&request("m1", "mia", 1)).await.unwrap();
        assert!(replicas[0].get(&RequestId("m1".into())).await.unwrap().is_some());
        raw.close().await;
    }

    #[tokio::test]
    async fn a_postgres_request_with_an_impossible_version_is_an_error_not_version_zero() {
        let Some(db) = support::postgres::TempPostgres::new().await else {
            return;
        };
        let store = db.open().await;
        store.insert(&request("r1", "alice", 100)).await.unwrap();
        let raw = sqlx::PgPool::connect(&db.url).await.unwrap();
        sqlx::query("UPDATE requests SET version = -1")
            .execute(&raw)
            .await
            .unwrap();
        raw.close().await;
        let read = store.get(&RequestId("r1".into())).await;
        assert!(
            matches!(&read, Err(Error::Store { reason }) if reason.contains("negative version")),
            "{read:?}"
        );
    }

    /// Needs no server: nothing listens on port 1.
    #[tokio::test]
    async fn a_postgres_database_that_cannot_be_reached_is_named_without_its_password() {
        let url = "postgres://app:s3cret@127.0.0.1:1/approvals";
        match PostgresStore::connect(url).await {
            Err(Error::Store { reason }) => {
                assert!(
                    reason.starts_with("postgres://app:***@127.0.0.1:1/approvals: "),
                    "{reason}"
                );
                assert!(!reason.contains("s3cret"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        match PostgresStore::connect("postgres://app:s3cret@127.0.0.1:1/x?sslmode=bogus").await {
            Err(Error::Store { reason }) => assert!(!reason.contains("s3cret"), "{reason}"),
            other => panic!("{other:?}"),
        }
    }
}
