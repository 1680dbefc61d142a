//! Load benchmark of the HTTP-push callback endpoint on loopback, compared in the same run
//! with a bare axum "hello": 64 concurrent connections, requests/s and p99 latency.
//!
//! The callback path is the real one: axum route → signature check → decrypt → typed event →
//! `Engine::handle_event` (de-duplication record, lookup of the request by instance id, state
//! plan) → encrypted `success` reply. Events are pre-encrypted, unique (distinct event ids)
//! and address existing pending requests, so no work is skipped; the in-memory store is used
//! (the SQLite store is bounded by fsync, see `cargo bench --bench engine`).
//!
//! Run: `cargo bench --bench callback_load` (prints one line per endpoint).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

use sase_dingtalk::approval::backend::BuiltinBackend;
use sase_dingtalk::approval::definition::{new_callback_id, Workflow, WorkflowKind};
use sase_dingtalk::approval::engine::{Engine, SubmitRequest};
use sase_dingtalk::approval::store::MemoryStore;
use sase_dingtalk::dingtalk::callback::{axum::callback_route, CallbackHandler};
use sase_dingtalk::dingtalk::crypto::EventCrypto;
use sase_dingtalk::policy::ids::{DeviceId, UserId, WorkflowId};
use sase_dingtalk::policy::GrantSigner;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const CONNECTIONS: usize = 64;
const PER_CONNECTION: usize = 400;
const AES_KEY: &str = "kYd8sJ2pQ7wE4rT9uV1xZ3cB6nM0aL5gH8jK2fD4sAx";

async fn serve(app: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

/// Sends every request of `work` (one list per connection) and returns (requests/s, p50, p99).
async fn load(work: Vec<Vec<(String, String)>>) -> (f64, Duration, Duration) {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(CONNECTIONS)
        .build()
        .unwrap();
    let started = Instant::now();
    let tasks: Vec<_> = work
        .into_iter()
        .map(|requests| {
            let client = client.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(requests.len());
                for (url, body) in requests {
                    let t = Instant::now();
                    let res = client
                        .post(&url)
                        .header("content-type", "application/json")
                        .body(body)
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(res.status(), 200);
                    res.bytes().await.unwrap();
                    latencies.push(t.elapsed());
                }
                latencies
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let elapsed = started.elapsed();
    all.sort();
    let pct = |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)];
    (all.len() as f64 / elapsed.as_secs_f64(), pct(0.50), pct(0.99))
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        // The engine with one pending request per connection.
        let workflow = Workflow {
            id: WorkflowId::new("wf"),
            name: "bench".into(),
            kind: WorkflowKind::BuiltIn { approvers: vec![] },
            mappings: vec![],
            callback_id: new_callback_id(),
        };
        let engine = Arc::new(
            Engine::builder(Arc::new(MemoryStore::new()), GrantSigner::from_bytes(&[5; 32]))
                .workflow(workflow, Arc::new(BuiltinBackend))
                .build()
                .unwrap(),
        );
        let mut externals = Vec::new();
        for i in 0..CONNECTIONS {
            let r = engine
                .submit(SubmitRequest::uninstall(WorkflowId::new("wf"), UserId::new(format!("u{i}")), DeviceId::new("d"), "bench"))
                .await
                .unwrap();
            externals.push(r.external_id.unwrap());
        }
        let crypto = EventCrypto::new("benchtoken", AES_KEY, "dingbench").unwrap();
        let feeder = Arc::clone(&engine);
        let route = callback_route(CallbackHandler::builder(crypto.clone()).build(), move |event| {
            let engine = Arc::clone(&feeder);
            async move { engine.handle_event(&event).await.map(|_| ()).map_err(|e| e.to_string()) }
        });
        let callback_url = serve(axum::Router::new().route("/cb", route)).await;
        let hello_url = serve(axum::Router::new().route("/hello", axum::routing::post(|| async { "hello" }))).await;

        // Pre-encrypted, unique pushes (what DingTalk would send), and the same count for hello.
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis().to_string();
        let mut pushes = Vec::new();
        for (c, external) in externals.iter().enumerate() {
            let mut list = Vec::new();
            for n in 0..PER_CONNECTION {
                let event = format!(
                    r#"{{"EventType":"bpms_instance_change","EventTime":{now},"CorpId":"dingcorp","eventId":"ev-{c}-{n}","processInstanceId":"{external}","processCode":"PROC-BENCH","type":"start","title":"张三提交的安全客户端卸载申请","staffId":"u{c}","createTime":{now}}}"#
                );
                let sealed = crypto.encrypt_reply(&event, &now, &format!("n{c}x{n}")).unwrap();
                let url = format!("{callback_url}/cb?signature={}&timestamp={}&nonce={}", sealed.msg_signature, sealed.time_stamp, sealed.nonce);
                list.push((url, format!(r#"{{"encrypt":"{}"}}"#, sealed.encrypt)));
            }
            pushes.push(list);
        }
        let hellos: Vec<Vec<(String, String)>> =
            (0..CONNECTIONS).map(|_| (0..PER_CONNECTION).map(|_| (format!("{hello_url}/hello"), String::new())).collect()).collect();

        // Warm up both, then measure.
        load(hellos.iter().map(|l| l[..20].to_vec()).collect()).await;
        let (hello_rps, hello_p50, hello_p99) = load(hellos).await;
        let (cb_rps, cb_p50, cb_p99) = load(pushes).await;
        println!("callback_load/hello     {CONNECTIONS} conns: {hello_rps:>9.0} req/s  p50 {hello_p50:?}  p99 {hello_p99:?}");
        println!("callback_load/callback  {CONNECTIONS} conns: {cb_rps:>9.0} req/s  p50 {cb_p50:?}  p99 {cb_p99:?}");
        println!("callback_load/ratio     callback/hello = {:.2} (target >= 0.5), callback p99 {:?} (target <= 2 ms)", cb_rps / hello_rps, cb_p99);
    });
}
