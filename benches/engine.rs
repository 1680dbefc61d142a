//! `sase_approval::dingtalk::handle_event` throughput: a DingTalk "finish / agree" event for a pending request
//! (dedup record, lookup by instance id, state change, Ed25519 grant, optimistic update), with
//! the in-memory and the SQLite store; and an approver's task event (recorded in the history,
//! no state change), the callback load benchmark's event.
//!
//! The PostgreSQL store is measured when `SASE_TEST_POSTGRES` (default
//! `postgres://root@127.0.0.1:5432/postgres`) is reachable: a database `sase_bench_<pid>` is
//! created for the run and dropped after it; otherwise a SKIPPED line says so.
//!
//! Run: `cargo bench --bench engine`

#![expect(
    clippy::unwrap_used,
    missing_docs,
    reason = "a benchmark's set-up fails loudly on the first unexpected value"
)]

mod support;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use sase_dingtalk::approval::dingtalk::{app_origin, handle_event};
use sase_dingtalk::approval::engine::{Engine, EventOutcome};
use sase_dingtalk::approval::store::{ApprovalStore, MemoryStore, PostgresStore, SqliteStore};
use sase_dingtalk::dingtalk::event::Event;
use std::sync::Arc;
use tokio::runtime::Runtime;

/// Measures `handle_event` on events about fresh pending requests (filed in the
/// untimed set-up): `event(n, external, created_at_ms)` builds the JSON.
fn measure(
    c: &mut Criterion,
    rt: &Runtime,
    name: &str,
    engine: &Engine,
    expected: EventOutcome,
    event: impl Fn(u64, &str, i64) -> String,
) {
    let mut n = 0u64;
    let origin = app_origin(engine, support::APP);
    c.bench_function(name, |b| {
        b.iter_batched(
            || {
                n += 1;
                let r = rt.block_on(support::submit(engine, n));
                Event::from_json(&event(n, r.external_id.as_deref().unwrap(), r.created_at_ms)).unwrap()
            },
            |event| {
                assert_eq!(
                    rt.block_on(handle_event(engine, &origin, &event)).unwrap(),
                    expected
                )
            },
            BatchSize::SmallInput,
        )
    });
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
    let mut stores = vec![
        ("memory", Arc::new(MemoryStore::new()) as Arc<dyn ApprovalStore>),
        ("sqlite", sqlite),
    ];
    let postgres = rt.block_on(support::postgres_database("handle_event on PostgreSQL"));
    if let Some((url, _)) = &postgres {
        stores.push((
            "postgres",
            Arc::new(rt.block_on(PostgresStore::connect(url)).unwrap()),
        ));
    }
    // Each store without, then with, the audit chain the approval server keeps (one more
    // transaction per applied event).
    for ((name, store), audited) in stores.iter().flat_map(|s| [(s, false), (s, true)]) {
        let engine = support::engine_with(Arc::clone(store), audited);
        let suffix = if audited { "_audited" } else { "" };
        measure(
            c,
            &rt,
            &format!("handle_event/finish_agree_{name}{suffix}"),
            &engine,
            EventOutcome::Applied,
            |n, external, created| {
                format!(
                    r#"{{"EventType":"bpms_instance_change","eventId":"ev-{name}{suffix}-{n}","processInstanceId":"{external}","type":"finish","result":"agree","finishTime":{}}}"#,
                    created + 1
                )
            },
        );
    }
    // The callback load benchmark's event: an approver's task recorded on its own pending
    // request (no state change, no grant), in memory.
    let engine = support::engine(Arc::new(MemoryStore::new()));
    measure(
        c,
        &rt,
        "handle_event/task_start_memory",
        &engine,
        EventOutcome::Recorded,
        |n, external, created| {
            format!(
                r#"{{"EventType":"bpms_task_change","eventId":"task-{n}","processInstanceId":"{external}","taskId":{n},"type":"start","staffId":"manager4321","createTime":{}}}"#,
                created + 1
            )
        },
    );
    let _ = std::fs::remove_dir_all(&dir);
    if let Some((_, drop_it)) = postgres {
        rt.block_on(drop_it);
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
