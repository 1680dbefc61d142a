//! The approval server following a large DingTalk directory (the mock's, on 127.0.0.1): how
//! long a full read takes and how big the stored directory is, at 1,000 and 10,000 users
//! (printed, one run each: a read is paced by the SDK at the app's QPS, so it is a count of
//! calls over time, not a micro-benchmark); then, with 10,000 users, what every replica pays
//! on each reload tick while nothing changed (the stored directory's version read from
//! SQLite, beside the whole document) and an agent's uninstall check over HTTP, whose policy
//! subject comes from the directory.
//!
//! The users are spread over 100 departments under the mock's Engineering (2), whose policy
//! protects them; the mock's default small company stays.
//!
//! Run: `cargo bench --bench directory`

#![expect(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    missing_docs,
    reason = "a benchmark's set-up fails loudly on the first unexpected value"
)]

use criterion::{criterion_group, criterion_main, Criterion};
use dingtalk_sdk::mock::{MockApp, MockDepartment, MockDingTalk, MockUser, Notify};
use sase_approval_server::Config;
use sase_dingtalk::approval::store::{ApprovalStore, SqliteStore};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const APP: &str = "dingbenchdirectory";
const SECRET: &str = "bench-directory-secret-0123456789abcdef";
const ADMIN_TOKEN: &str = "bench-admin-token-0123456789abcdef";
const DEVICE_TOKEN: &str = "bench-device-token-0123456789abcdef";
const DEPARTMENTS: i64 = 100;

/// The mock with `users` more users in 100 departments (1000..1100, under Engineering).
fn mock(rt: &tokio::runtime::Runtime, users: usize) -> MockDingTalk {
    let mock = rt
        .block_on(MockDingTalk::builder().app(MockApp::new(APP, SECRET)).start())
        .unwrap();
    for d in 0..DEPARTMENTS {
        mock.add_department(
            MockDepartment::new(1000 + d, format!("Team {d}"), Some(2)),
            Notify::Skip,
        )
        .unwrap();
    }
    for u in 0..users {
        let dept = 1000 + i64::try_from(u).unwrap() % DEPARTMENTS;
        mock.add_user(
            MockUser::new(format!("emp{u:05}"), format!("员工 {u}"), vec![dept]),
            Notify::Skip,
        )
        .unwrap();
    }
    mock
}

/// The server on a SQLite file in `dir`, following `mock`'s directory, with a policy on
/// Engineering and one device of `emp00042`.
fn config(mock: &MockDingTalk, dir: &std::path::Path) -> Config {
    Config::from_toml(
        &format!(
            r#"
listen = "127.0.0.1:0"
database = "{database}"
admin_token = "{ADMIN_TOKEN}"

[[workflows]]
id = "wf-builtin"
type = "builtin"
approvers = ["ada"]

[[devices]]
token = "{DEVICE_TOKEN}"
device_id = "LAPTOP-42"
user_id = "emp00042"

[policies]
[[policies.policies]]
id = "engineering"
name = "Engineering"
priority = 50
switches = {{ anti_uninstall = true }}
scope = {{ departments = ["2"] }}
approval = {{ allow_filing = true, workflow = "wf-builtin" }}
[policies.policies.prompt.zh-CN]
title = "需要审批"
content = "c"
primary_button = "提交"
secondary_button = "取消"
[policies.policies.prompt.en-US]
title = "Approval needed"
content = "c"
primary_button = "File"
secondary_button = "Cancel"

[directory]
client_id = "{APP}"
client_secret = "{SECRET}"
api_base = "{base}"
oapi_base = "{base}"
"#,
            database = dir.join("directory-bench.sqlite").display(),
            base = mock.base_url(),
        ),
        "bench.toml",
    )
    .unwrap()
}

/// The stored directory's size in bytes.
async fn stored_size(store: &SqliteStore) -> usize {
    store
        .get_document("directory", "dingtalk")
        .await
        .unwrap()
        .unwrap()
        .body
        .len()
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let http = reqwest::Client::new();
    let mut kept = None;
    for users in [1_000, 10_000] {
        let mock = mock(&rt, users);
        let dir = tempfile::tempdir().unwrap();
        let server = rt
            .block_on(sase_approval_server::start(config(&mock, dir.path())))
            .unwrap();
        let base = format!("http://{}", server.addr);
        // The server read the directory as it started; this is a second, timed, full read.
        let (took, answer) = rt.block_on(async {
            let started = Instant::now();
            let answer: Value = http
                .post(format!("{base}/api/console/directory/sync"))
                .bearer_auth(ADMIN_TOKEN)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            (started.elapsed(), answer)
        });
        assert!(
            answer["users"].as_u64().unwrap() >= u64::try_from(users).unwrap(),
            "{answer}"
        );
        let store = rt
            .block_on(SqliteStore::open(dir.path().join("directory-bench.sqlite")))
            .unwrap();
        let size = rt.block_on(stored_size(&store));
        println!(
            "directory/full_read_{users}_users: {:.2} s for {} users in {} departments; stored directory {} KB",
            took.as_secs_f64(),
            answer["users"],
            answer["departments"],
            size / 1024
        );
        kept = Some((mock, dir, server, store, base));
    }
    let (_mock, _dir, server, store, base) = kept.unwrap();

    let mut group = c.benchmark_group("directory_10k");
    group.measurement_time(Duration::from_secs(5));
    // What a replica reads from the store on each reload tick while nothing changed: the
    // version (what the server asks), and the whole document (what it asked before).
    group.bench_function("reload_tick_version", |b| {
        b.iter(|| {
            rt.block_on(store.document_version("directory", "dingtalk"))
                .unwrap()
                .unwrap()
        })
    });
    group.bench_function("reload_tick_whole_document", |b| {
        b.iter(|| rt.block_on(stored_size(&store)))
    });
    let check = format!("{base}/api/agent/uninstall-check");
    let answer: Value = rt.block_on(async {
        http.post(&check)
            .bearer_auth(DEVICE_TOKEN)
            .json(&json!({}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    });
    // Checked once: the directory put emp00042 under Engineering, whose policy protects them.
    assert_eq!(answer["effect"], "require_approval", "{answer}");
    group.bench_function("agent_uninstall_check", |b| {
        b.iter(|| {
            rt.block_on(async {
                let answer = http
                    .post(&check)
                    .bearer_auth(DEVICE_TOKEN)
                    .json(&json!({}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(answer.status(), 200);
                answer.bytes().await.unwrap()
            })
        })
    });
    group.finish();
    rt.block_on(server.shutdown()).unwrap();
}

criterion_group!(benches, bench);
criterion_main!(benches);
