//! `Engine::handle_event` throughput: a DingTalk "finish / agree" event for a pending request
//! (dedup record, lookup by instance id, state change, Ed25519 grant, optimistic update), with
//! the in-memory and the SQLite store; and an approver's task event (recorded in the history,
//! no state change), the callback load benchmark's event.
//!
//! Run: `cargo bench --bench engine`

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use sase_dingtalk::approval::backend::BuiltinBackend;
use sase_dingtalk::approval::definition::{new_callback_id, Workflow, WorkflowKind};
use sase_dingtalk::approval::engine::{Engine, EventOutcome, SubmitRequest};
use sase_dingtalk::approval::store::{ApprovalStore, MemoryStore, SqliteStore};
use sase_dingtalk::dingtalk::event::Event;
use sase_dingtalk::policy::ids::{DeviceId, UserId, WorkflowId};
use sase_dingtalk::policy::GrantSigner;
use std::sync::Arc;

fn engine(store: Arc<dyn ApprovalStore>) -> Engine {
    let workflow = Workflow {
        id: WorkflowId::new("wf"),
        name: "console".into(),
        kind: WorkflowKind::BuiltIn {
            approvers: vec![UserId::new("admin")],
        },
        mappings: vec![],
        callback_id: new_callback_id(),
    };
    Engine::builder(store, GrantSigner::from_bytes(&[3; 32]))
        .workflow(workflow, Arc::new(BuiltinBackend))
        .build()
        .unwrap()
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = std::env::temp_dir().join(format!("sase-engine-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let sqlite: Arc<dyn ApprovalStore> =
        Arc::new(rt.block_on(SqliteStore::open(dir.join("bench.sqlite"))).unwrap());
    let mut g = c.benchmark_group("handle_event");
    for (name, store) in [
        ("memory", Arc::new(MemoryStore::new()) as Arc<dyn ApprovalStore>),
        ("sqlite", sqlite),
    ] {
        let engine = engine(store);
        let mut n = 0u64;
        g.bench_function(format!("finish_agree_{name}"), |b| {
            b.iter_batched(
                || {
                    n += 1;
                    let r = rt
                        .block_on(engine.submit(SubmitRequest::uninstall(
                            WorkflowId::new("wf"),
                            UserId::new(format!("user-{n}")),
                            DeviceId::new("laptop"),
                            "reinstall",
                        )))
                        .unwrap();
                    let external = r.external_id.unwrap();
                    Event::from_json(&format!(
                        r#"{{"EventType":"bpms_instance_change","eventId":"ev-{name}-{n}","processInstanceId":"{external}","type":"finish","result":"agree","finishTime":{}}}"#,
                        r.created_at_ms + 1
                    ))
                    .unwrap()
                },
                |event| assert_eq!(rt.block_on(engine.handle_event(&event)).unwrap(), EventOutcome::Applied),
                BatchSize::SmallInput,
            )
        });
    }
    // The callback load benchmark's event: an approver's task recorded on its own pending
    // request (no state change, no grant), in memory.
    let engine = engine(Arc::new(MemoryStore::new()));
    let mut n = 0u64;
    g.bench_function("task_start_memory", |b| {
        b.iter_batched(
            || {
                n += 1;
                let r = rt
                    .block_on(engine.submit(SubmitRequest::uninstall(
                        WorkflowId::new("wf"),
                        UserId::new(format!("user-{n}")),
                        DeviceId::new("laptop"),
                        "reinstall",
                    )))
                    .unwrap();
                let external = r.external_id.unwrap();
                Event::from_json(&format!(
                    r#"{{"EventType":"bpms_task_change","eventId":"task-{n}","processInstanceId":"{external}","taskId":{n},"type":"start","staffId":"manager4321","createTime":{}}}"#,
                    r.created_at_ms + 1
                ))
                .unwrap()
            },
            |event| assert_eq!(rt.block_on(engine.handle_event(&event)).unwrap(), EventOutcome::Recorded),
            BatchSize::SmallInput,
        )
    });
    g.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, bench);
criterion_main!(benches);
