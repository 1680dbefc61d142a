//! Set-up shared by the benchmarks: an engine with a built-in workflow `wf`, requests filed
//! on it, and the callback route feeding it.

#![allow(
    dead_code,
    reason = "each benchmark uses part of this; an expect would be unfulfilled in those using all"
)]
#![expect(clippy::unwrap_used, reason = "set-up fails loudly")]

use sase_dingtalk::approval::backend::BuiltinBackend;
use sase_dingtalk::approval::definition::{
    new_callback_id, Delivery, DingTalkSettings, Mapping, Workflow, WorkflowKind,
};
use sase_dingtalk::approval::engine::{Engine, SubmitRequest};
use sase_dingtalk::approval::state::ApprovalRequest;
use sase_dingtalk::approval::store::ApprovalStore;
use sase_dingtalk::dingtalk::callback::{axum::callback_route, CallbackHandler};
use sase_dingtalk::dingtalk::crypto::EventCrypto;
use sase_dingtalk::dingtalk::ProcessCode;
use sase_dingtalk::policy::ids::{DeviceId, UserId, WorkflowId};
use sase_dingtalk::policy::GrantSigner;
use std::sync::Arc;

/// The event subscription the benchmarks' pushes are sealed with.
pub(crate) fn crypto() -> EventCrypto {
    EventCrypto::new("benchtoken", "kYd8sJ2pQ7wE4rT9uV1xZ3cB6nM0aL5gH8jK2fD4sAx", APP).unwrap()
}

/// The DingTalk app the benchmarks' events come from.
pub(crate) const APP: &str = "dingbench";

/// An engine on `store` with the workflow `wf`: DingTalk app [`APP`], form `PROC-BENCH`, its
/// instances made by the built-in backend (no DingTalk API called), so events go through the
/// same origin checks as in production.
pub(crate) fn engine(store: Arc<dyn ApprovalStore>) -> Arc<Engine> {
    engine_with(store, false)
}

/// [`engine`], keeping the audit chain (as the approval server does) when `audited`.
pub(crate) fn engine_with(store: Arc<dyn ApprovalStore>, audited: bool) -> Arc<Engine> {
    let workflow = Workflow {
        id: WorkflowId::new("wf"),
        name: "bench".into(),
        kind: WorkflowKind::DingTalk(DingTalkSettings {
            client_id: APP.into(),
            client_secret: "secret".into(),
            token: "benchtoken".into(),
            aes_key: "kYd8sJ2pQ7wE4rT9uV1xZ3cB6nM0aL5gH8jK2fD4sAx".into(),
            receiver_id: APP.into(),
            delivery: Delivery::HttpPush,
            dept_id: -1,
        }),
        mappings: vec![Mapping {
            template: "app_uninstall".into(),
            process_code: ProcessCode::new("PROC-BENCH"),
            fields: [("reason".to_owned(), "原因".to_owned())].into(),
        }],
        callback_id: new_callback_id(),
    };
    let mut builder = Engine::builder(store, GrantSigner::from_bytes(&[5; 32]))
        .workflow(workflow, Arc::new(BuiltinBackend));
    if audited {
        builder = builder.audit(Arc::new(|_| {}));
    }
    Arc::new(builder.build().unwrap())
}

/// Files request number `n` (user `user-{n}`); it is pending with an external id.
pub(crate) async fn submit(engine: &Engine, n: u64) -> ApprovalRequest {
    engine
        .submit(SubmitRequest::uninstall(
            WorkflowId::new("wf"),
            UserId::new(format!("user-{n}")),
            DeviceId::new("laptop"),
            "reinstall",
        ))
        .await
        .unwrap()
}

/// The HTTP-push callback route verifying with [`crypto`] and feeding `engine`.
pub(crate) fn route(engine: &Arc<Engine>) -> axum::routing::MethodRouter {
    callback_route(
        CallbackHandler::builder(crypto()).build(),
        sase_dingtalk::approval::dingtalk::event_handler(engine, APP),
    )
}

/// The same route with an event handler that does nothing: the SDK's share of [`route`].
pub(crate) fn sdk_only_route() -> axum::routing::MethodRouter {
    callback_route(CallbackHandler::builder(crypto()).build(), |_event| async {
        Ok::<(), String>(())
    })
}

/// A fresh PostgreSQL database (`sase_bench_<pid>_<n>`) on the server `SASE_TEST_POSTGRES`
/// names (default `postgres://root@127.0.0.1:5432/postgres`), and the future that drops it;
/// `None`, with a SKIPPED line naming `what` on stderr, when the server is not reachable.
pub(crate) async fn postgres_database(
    what: &str,
) -> Option<(
    String,
    std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>,
)> {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let admin_url = std::env::var("SASE_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://root@127.0.0.1:5432/postgres".to_owned());
    let admin = match sqlx::PgPool::connect(&admin_url).await {
        Ok(pool) => pool,
        Err(e) => {
            eprintln!("SKIPPED: {what}: PostgreSQL is not reachable at {admin_url} ({e})");
            return None;
        }
    };
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let name = format!("sase_bench_{}_{n}", std::process::id());
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&admin)
        .await
        .unwrap();
    let (base, _) = admin_url.rsplit_once('/').unwrap();
    let url = format!("{base}/{name}");
    let drop_it = async move {
        let _ = sqlx::query(&format!("DROP DATABASE {name} WITH (FORCE)"))
            .execute(&admin)
            .await;
        admin.close().await;
    };
    Some((url, Box::pin(drop_it)))
}
