//! The web console's Workflow Instance pages with 100,000 requests in the store (SQLite, the
//! embedded default): the list's first page, a deep page, a filtered page (device, state) and
//! a request's detail, each a full `GET` of the HTML page over HTTP on 127.0.0.1 with an
//! admin's session cookie, so the figure is the server's time plus a loopback round trip.
//!
//! The 100,000 requests (500 users with a device each, spread over 100 days, a fifth of them
//! approved, each user's last one pending) are written to the store before the server starts,
//! in the untimed set-up.
//!
//! Run: `cargo bench --bench console`

#![expect(
    clippy::unwrap_used,
    missing_docs,
    reason = "a benchmark's set-up fails loudly on the first unexpected value"
)]

use criterion::{criterion_group, criterion_main, Criterion};
use sase_approval_server::Config;
use sase_dingtalk::approval::state::ApprovalRequest;
use sase_dingtalk::approval::store::{ApprovalStore, SqliteStore};
use serde_json::json;
use std::time::Duration;

const REQUESTS: u64 = 100_000;
const ADMIN_TOKEN: &str = "bench-admin-token-0123456789abcdef";
const PASSWORD: &str = "correct horse battery staple";

/// Request `n`: user and device `n % 500`, created 86.4 s after request `n - 1`; decided
/// (every fifth approved, the rest rejected) but for each user's last, pending (the store
/// admits one open request per user, device and action).
fn request(n: u64) -> ApprovalRequest {
    let user = n % 500;
    let created = 1_790_000_000_000 + i64::try_from(n).unwrap() * 86_400;
    let state = if n > REQUESTS - 500 {
        "pending"
    } else if n % 5 == 0 {
        "approved"
    } else {
        "rejected"
    };
    serde_json::from_value(json!({
        "id": format!("req-bench-{n:08}"),
        "template": "app_uninstall",
        "workflow": "wf-builtin",
        "requester": format!("user-{user}"),
        "device": format!("dev-{user}"),
        "action": "uninstall",
        "fields": {"reason": format!("reinstalling, number {n}")},
        "state": state,
        "state_at_ms": 0,
        "external_id": null,
        "created_at_ms": created,
        "grant": null,
        "version": 0,
        "history": [
            {"from": "submitted", "to": "submitted", "at_ms": created, "actor": format!("user-{user}"), "source": {"kind": "agent"}},
            {"from": "submitted", "to": state, "at_ms": created + 1000, "actor": "ada", "source": {"kind": "console"}},
        ],
    }))
    .unwrap()
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("console-bench.sqlite");
    rt.block_on(async {
        let store = SqliteStore::open(&database).await.unwrap();
        for n in 1..=REQUESTS {
            store.insert(&request(n)).await.unwrap();
        }
    });
    let config = Config::from_toml(
        &format!(
            r#"
listen = "127.0.0.1:0"
database = "{}"
admin_token = "{ADMIN_TOKEN}"
[[workflows]]
id = "wf-builtin"
type = "builtin"
approvers = ["ada"]
[policies]
"#,
            database.display()
        ),
        "bench.toml",
    )
    .unwrap();
    let server = rt.block_on(sase_approval_server::start(config)).unwrap();
    let base = format!("http://{}", server.addr);
    let http = reqwest::Client::new();
    let cookie = rt.block_on(async {
        let created = http
            .post(format!("{base}/api/console/admins"))
            .bearer_auth(ADMIN_TOKEN)
            .json(&json!({"name": "ada", "role": "admin", "password": PASSWORD}))
            .send()
            .await
            .unwrap();
        assert_eq!(created.status(), 201);
        let login = http
            .post(format!("{base}/api/console/login"))
            .json(&json!({"name": "ada", "password": PASSWORD}))
            .send()
            .await
            .unwrap();
        let set = login.headers()["set-cookie"].to_str().unwrap().to_owned();
        set.split(';').next().unwrap().to_owned()
    });
    let mut group = c.benchmark_group("console_100k");
    group.measurement_time(Duration::from_secs(5));
    for (name, path) in [
        ("instance_list_first_page", "/console/requests".to_owned()),
        (
            "instance_list_page_1000",
            "/console/requests?page=1000".to_owned(),
        ),
        (
            "instance_list_by_device",
            "/console/requests?device=dev-7".to_owned(),
        ),
        (
            "instance_list_by_state",
            "/console/requests?state=approved".to_owned(),
        ),
        (
            "instance_detail",
            "/console/requests/req-bench-00054321".to_owned(),
        ),
    ] {
        let url = format!("{base}{path}");
        // Checked once: the page is what the benchmark claims it is.
        rt.block_on(async {
            let page = http.get(&url).header("cookie", &cookie).send().await.unwrap();
            assert_eq!(page.status(), 200, "{url}");
            let text = page.text().await.unwrap();
            assert!(text.contains("req-bench-"), "{url}: a page of requests");
        });
        group.bench_function(name, |b| {
            b.iter(|| {
                rt.block_on(async {
                    let page = http.get(&url).header("cookie", &cookie).send().await.unwrap();
                    assert_eq!(page.status(), 200);
                    page.bytes().await.unwrap()
                })
            })
        });
    }
    group.finish();
    rt.block_on(server.shutdown()).unwrap();
}

criterion_group!(benches, bench);
criterion_main!(benches);
