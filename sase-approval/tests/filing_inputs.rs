//! What a requester files reaches the approver as filed: CRLF normalised, control characters
//! and bidirectional overrides refused, the reason capped (configurable); and filing again
//! while a request is open answers that one, concurrent filings included.

#![expect(
    clippy::unwrap_used,
    clippy::panic,
    reason = "a test fails loudly on the first unexpected value"
)]

use sase_approval::backend::BuiltinBackend;
use sase_approval::engine::{Engine, Filing, SubmitRequest};
use sase_approval::store::MemoryStore;
use sase_approval::Error;
use sase_policy::ids::{DeviceId, UserId, WorkflowId};
use sase_policy::GrantSigner;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

mod support;

fn engine(max_reason_chars: Option<usize>) -> Engine {
    let mut builder = Engine::builder(Arc::new(MemoryStore::new()), GrantSigner::from_bytes(&[2; 32]))
        .workflow(support::builtin_workflow("wf"), Arc::new(BuiltinBackend));
    if let Some(max) = max_reason_chars {
        builder = builder.max_reason_chars(max);
    }
    builder.build().unwrap()
}

/// A filing from a device of its own (one open request per user, device and action).
fn filing(reason: &str) -> SubmitRequest {
    static DEVICES: AtomicU32 = AtomicU32::new(0);
    let device = DEVICES.fetch_add(1, Ordering::Relaxed);
    SubmitRequest::uninstall(
        WorkflowId::new("wf"),
        UserId::new("u"),
        DeviceId::new(format!("d{device}")),
        reason,
    )
}

async fn refused_field(engine: &Engine, submit: SubmitRequest) -> String {
    match engine.submit(submit).await {
        Err(Error::InvalidRequest { field, .. }) => field,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn reasons_are_capped_cleaned_and_free_of_control_characters() {
    let engine = engine(None);
    assert_eq!(
        refused_field(&engine, filing(&"x".repeat(60_000))).await,
        "reason",
        "60 KB"
    );
    engine.submit(filing(&"再".repeat(2_000))).await.unwrap();
    assert_eq!(
        refused_field(&engine, filing(&"再".repeat(2_001))).await,
        "reason"
    );
    for hostile in [
        "\u{1b}[31mred\u{1b}[0m",
        "nul\0",
        "admin\u{202E}txt.exe",
        "\u{2066}isolate",
    ] {
        assert_eq!(
            refused_field(&engine, filing(hostile)).await,
            "reason",
            "{hostile:?}"
        );
    }
    let filed = engine
        .submit(filing("line one\r\nline two\rthree\ttabbed"))
        .await
        .unwrap();
    assert_eq!(filed.fields["reason"], "line one\nline two\nthree\ttabbed");
    assert_eq!(
        refused_field(&engine, filing("ok").field("app_version", "5.2\u{7}")).await,
        "app_version"
    );

    let strict = self::engine(Some(10));
    assert_eq!(refused_field(&strict, filing("eleven chars")).await, "reason");
    strict.submit(filing("ten chars!")).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_filings_of_one_kind_make_one_request() {
    let db = support::TempDb::new("filings.sqlite");
    let engine = Arc::new(
        Engine::builder(Arc::new(db.open().await), GrantSigner::from_bytes(&[2; 32]))
            .workflow(support::builtin_workflow("wf"), Arc::new(BuiltinBackend))
            .build()
            .unwrap(),
    );
    let filing = || {
        SubmitRequest::uninstall(
            WorkflowId::new("wf"),
            UserId::new("u"),
            DeviceId::new("d"),
            "again",
        )
    };
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let (engine, submit) = (Arc::clone(&engine), filing());
            tokio::spawn(async move { engine.file(submit).await })
        })
        .collect();
    let mut created = Vec::new();
    let mut open = Vec::new();
    for task in tasks {
        match task.await.unwrap().unwrap() {
            Filing::Created(r) => created.push(r.id),
            Filing::AlreadyOpen(r) => open.push(r.id),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(created.len(), 1, "{created:?}");
    assert!(open.iter().all(|id| *id == created[0]), "{open:?}");
    let all = engine.list(&Default::default()).await.unwrap();
    assert_eq!(all.len(), 1);
}
