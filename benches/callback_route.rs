//! The callback route's own CPU cost per request, without sockets: the axum router is called
//! directly (`tower::ServiceExt::oneshot`) with a pre-encrypted, unique `bpms_instance_change`
//! push for a pending request (query parse, signature check, decrypt, typed event,
//! `sase_approval::dingtalk::handle_event` on the in-memory store, encrypted `success` reply), beside a bare
//! "hello" route, and the same route with an event handler that does nothing (the SDK's
//! share). What `callback_load` measures over loopback minus the kernel and the HTTP/1 codec.
//!
//! Run: `cargo bench --bench callback_route`

#![expect(
    clippy::unwrap_used,
    missing_docs,
    reason = "a benchmark's set-up fails loudly on the first unexpected value"
)]

mod support;

use axum::body::Body;
use axum::http::Request;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use sase_dingtalk::approval::store::MemoryStore;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};
use tower::ServiceExt as _;

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let engine = support::engine(Arc::new(MemoryStore::new()));
    let external = rt.block_on(support::submit(&engine, 1)).external_id.unwrap();
    let crypto = support::crypto();
    let route = support::route(&engine);
    let app = axum::Router::new()
        .route("/cb", route)
        .route("/sdk", support::sdk_only_route())
        .route("/hello", axum::routing::post(|| async { "hello" }));
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis()
        .to_string();

    let mut g = c.benchmark_group("callback_route");
    g.bench_function("hello", |b| {
        b.iter_batched(
            || Request::post("/hello").body(Body::empty()).unwrap(),
            |req| {
                let res = rt.block_on(app.clone().oneshot(req)).unwrap();
                assert_eq!(res.status(), 200);
                rt.block_on(axum::body::to_bytes(res.into_body(), 1 << 16))
                    .unwrap()
            },
            BatchSize::SmallInput,
        )
    });
    let mut n = 0u64;
    for (name, path) in [("callback", "/cb"), ("callback_without_engine", "/sdk")] {
        g.bench_function(name, |b| {
            b.iter_batched(
                || {
                    n += 1;
                    let event = format!(
                        r#"{{"EventType":"bpms_instance_change","EventTime":{now},"CorpId":"dingcorp","eventId":"ev-{n}","processInstanceId":"{external}","processCode":"PROC-BENCH","type":"start","title":"张三提交的安全客户端卸载申请","staffId":"u1","createTime":{now}}}"#
                    );
                    let sealed = crypto.encrypt_reply(&event, &now, &format!("n{n}")).unwrap();
                    Request::post(format!(
                        "{path}?signature={}&timestamp={}&nonce={}",
                        sealed.msg_signature, sealed.time_stamp, sealed.nonce
                    ))
                    .header("content-type", "application/json")
                    .body(Body::from(format!(r#"{{"encrypt":"{}"}}"#, sealed.encrypt)))
                    .unwrap()
                },
                |req| {
                    let res = rt.block_on(app.clone().oneshot(req)).unwrap();
                    assert_eq!(res.status(), 200);
                    rt.block_on(axum::body::to_bytes(res.into_body(), 1 << 16)).unwrap()
                },
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
