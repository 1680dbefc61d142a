//! The directory follows DingTalk, over real HTTP on 127.0.0.1 with the mock DingTalk's
//! directory: a user's departments (with those above them) scope policies, kept in step by
//! contact-change events pushed to the workflow's Request URL and by the scheduled read when
//! an event is lost; a user who leaves cannot uninstall: their devices are refused, their
//! open requests revoked in DingTalk, their approved grants revoked.

#![expect(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "a test fails loudly on the first unexpected value"
)]

use dingtalk_sdk::mock::{MockDepartment, MockDingTalk, MockFaults, MockUser, Notify};
use sase_approval_server::{Config, Server};
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use support::{credentialed_config, device, mock, start_with, with_directory, Agent, APP, SECRET};

mod support;

/// The mock's organisation (its default directory).
use dingtalk_sdk::mock::DEFAULT_CORP_ID as CORP;

/// The test configuration plus bob's two devices, following the mock's directory
/// ([`with_directory`]), read in full every `sync_every_secs`.
fn config(mock: &MockDingTalk, database: &std::path::Path, sync_every_secs: u64) -> Config {
    let mut config = credentialed_config(mock, database);
    let mut second = device("tok-bob2", "bob", "staff");
    second.device_id = "dev-bob-2".into();
    config.devices.extend([device("tok-bob", "bob", "staff"), second]);
    with_directory(&mut config, mock);
    if let Some(directory) = config.directory.as_mut() {
        directory.sync_every_secs = sync_every_secs;
    }
    config.reload_every_secs = 1;
    config
}

/// Waits up to 20 s for `agent`'s uninstall check to answer `effect`.
async fn effect_becomes(agent: &Agent, effect: &str) -> Duration {
    let started = Instant::now();
    loop {
        let (status, answer) = agent
            .post("/api/agent/uninstall-check", &json!({"locale": "en-US"}))
            .await;
        let now = if status == 200 {
            answer["effect"].as_str().unwrap_or_default().to_owned()
        } else {
            format!("HTTP {status}")
        };
        if now == effect {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "still {now}, not {effect}: {answer}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The directory's status (`GET /api/console/directory`).
async fn directory_status(agent: &Agent) -> Value {
    agent
        .console(reqwest::Method::GET, "/api/console/directory")
        .await
        .1
}

/// Waits until the first full read (slowed down by the mock) has listed the departments and
/// begun on their users, the root's first; it is still running then.
async fn first_read_lists_users(mock: &MockDingTalk, agent: &Agent) {
    let listed_root = |m: &MockDingTalk| {
        m.journal()
            .iter()
            .any(|e| e.path == "/topapi/v2/user/list" && e.body.as_ref().is_some_and(|b| b["dept_id"] == 1))
    };
    assert!(mock.wait_for(Duration::from_secs(20), listed_root).await);
    assert_eq!(
        directory_status(agent).await["synced_at_ms"],
        0,
        "the first read is still running"
    );
}

/// Waits up to 30 s for the first full read to end: the directory's status then.
async fn first_read_ended(agent: &Agent) -> Value {
    let started = Instant::now();
    loop {
        let status = directory_status(agent).await;
        if status["synced_at_ms"] != 0 {
            return status;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "the first read ends");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn request(agent: &Agent, id: &str) -> Value {
    agent
        .console(reqwest::Method::GET, &format!("/api/console/requests/{id}"))
        .await
        .1
}

/// The console's device list as a viewer sees it (a viewer `ada` is made on first use).
async fn devices_page(agent: &Agent) -> String {
    let password = "a long console password";
    let (status, made) = support::json(
        agent
            .http
            .post(format!("{}/api/console/admins", agent.base))
            .bearer_auth(support::ADMIN)
            .json(&json!({"name": "ada", "role": "viewer", "password": password})),
    )
    .await;
    assert!(
        status == 201 || made["error"] == "admin_exists" || status == 409,
        "{made}"
    );
    let (status, headers, _) = support::send(
        agent
            .http
            .post(format!("{}/api/console/login", agent.base))
            .json(&json!({"name": "ada", "password": password})),
    )
    .await;
    assert_eq!(status, 200);
    let cookie = headers["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    agent
        .http
        .get(format!("{}/console/devices", agent.base))
        .header("cookie", cookie)
        .header("accept-language", "en")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[tokio::test]
async fn departments_follow_dingtalks_events_and_a_lost_event_is_made_up_by_the_read() {
    let mock = mock().await;
    let dir = tempfile::tempdir().unwrap();
    // A read every 2 s: the lost event below is made up within seconds.
    let server: Server = start_with(&mock, config(&mock, &dir.path().join("d.sqlite"), 2)).await;
    let bob = Agent::new(&server, "tok-bob");

    // Bob is in Engineering: the policy on Engineering protects his device.
    effect_becomes(&bob, "require_approval").await;

    // He moves to Security: the event arrives, the policy no longer covers him.
    mock.move_user(CORP, "bob", &[3], Notify::Deliver).unwrap();
    effect_becomes(&bob, "allow").await;

    // He moves to Platform (under Engineering), but the event is lost: the scheduled read
    // makes it up, and a policy on a department covers its sub-departments.
    mock.move_user(CORP, "bob", &[4], Notify::Skip).unwrap();
    effect_becomes(&bob, "require_approval").await;

    // The policy-change preview names him, from the directory: deleting the policy on
    // Engineering would leave his devices unprotected.
    let (status, preview) = support::json(
        bob.http
            .post(format!("{}/api/console/policies/preview", bob.base))
            .bearer_auth(support::ADMIN)
            .json(&json!({"delete": "engineering"})),
    )
    .await;
    assert_eq!(status, 200, "{preview}");
    let named: Vec<&Value> = preview["changes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["user_id"] == "bob")
        .map(|c| &c["user_name"])
        .collect();
    assert_eq!(named, [&json!("Bob"), &json!("Bob")], "{preview}");

    // The console's device list names them with their departments, from the directory.
    let page = devices_page(&bob).await;
    for shown in ["Bob", "Platform (4)", "Engineering (2)", "Company (1)", "Alice"] {
        assert!(page.contains(shown), "{shown}: {page}");
    }

    // Alice leaves, and that event is lost too: the next read revokes her device.
    let alice = Agent::new(&server, "tok-alice");
    assert_eq!(alice.check().await["effect"], "require_approval");
    mock.remove_user(CORP, "alice", Notify::Skip).unwrap();
    effect_becomes(&alice, "HTTP 401").await;
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_user_who_leaves_cannot_uninstall() {
    let mock = mock().await;
    let dir = tempfile::tempdir().unwrap();
    // No scheduled read during the test: the leave event alone does it.
    let server: Server = start_with(&mock, config(&mock, &dir.path().join("l.sqlite"), 3600)).await;
    let (bob, bob2) = (Agent::new(&server, "tok-bob"), Agent::new(&server, "tok-bob2"));
    effect_becomes(&bob, "require_approval").await;

    // One device holds an approved grant, the other a pending request.
    let approved = bob.filed("handing it over").await;
    mock.approve(&bob.external_id(&approved).await, None, None)
        .unwrap();
    let grant: sase_policy::SignedGrant =
        serde_json::from_value(bob.poll(&approved, "approved").await["grant"].clone()).unwrap();
    let pending = bob2.filed("a second laptop").await;
    let instance = bob2.external_id(&pending).await;

    mock.remove_user(CORP, "bob", Notify::Deliver).unwrap();
    effect_becomes(&bob, "HTTP 401").await;
    effect_becomes(&bob2, "HTTP 401").await;
    let (status, _) = bob.consume(&grant).await;
    assert_eq!(status, 401, "the device is refused");
    for id in [&approved, &pending] {
        let r = request(&bob, id).await;
        assert_eq!(r["state"], "revoked", "{r}");
        let last = r["history"].as_array().unwrap().last().unwrap().clone();
        assert_eq!(last["actor"], "directory", "{r}");
    }
    assert_eq!(
        mock.instance(&instance).unwrap()["status"],
        "TERMINATED",
        "the pending request is revoked in DingTalk too"
    );
    server.shutdown().await.unwrap();
}

/// Contact-change events over Stream mode reach the directory as over HTTP push.
#[tokio::test]
async fn contact_events_arrive_over_stream_too() {
    let mock = dingtalk_sdk::mock::MockDingTalk::builder()
        .app(
            dingtalk_sdk::mock::MockApp::new(APP, SECRET)
                .events(support::TOKEN, support::AES_KEY)
                .stream(true),
        )
        .process(support::mock_builder_form())
        .start()
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(&mock, &dir.path().join("s.sqlite"), 3600);
    config.workflows[0].delivery = sase_approval::definition::Delivery::Stream;
    let server = sase_approval_server::start(config).await.unwrap();
    assert!(
        mock.gateway()
            .wait_for(Duration::from_secs(5), |g| g.connection_count() == 1)
            .await,
        "the app's Stream connection opened"
    );
    let bob = Agent::new(&server, "tok-bob");
    effect_becomes(&bob, "require_approval").await;
    mock.move_user(CORP, "bob", &[3], Notify::Deliver).unwrap();
    effect_becomes(&bob, "allow").await;
    server.shutdown().await.unwrap();
}

/// The README's `[directory]` example, as written, with DingTalk's addresses pointed at the
/// mock: it starts, reads the mock's directory, and offers sign-in.
#[tokio::test]
async fn the_readme_directory_example_starts() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).unwrap();
    let (_, after) = readme.split_once("organisation's app:\n\n```toml\n").unwrap();
    let (block, _) = after.split_once("```").unwrap();
    let from_readme = Config::from_toml(block, "README.md").unwrap().directory.unwrap();
    let mock = mock().await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(&mock, &dir.path().join("r.sqlite"), 3600);
    let mut directory = from_readme;
    // The README's app is the test app here, on the mock: the rest is as the README has it.
    directory.client_id = APP.into();
    directory.client_secret = SECRET.into();
    directory.corp_id = Some(CORP.into());
    directory.api_base = Some(mock.base_url());
    directory.oapi_base = Some(mock.base_url());
    directory.login_base = Some(mock.base_url());
    config.directory = Some(directory);
    let server: Server = start_with(&mock, config).await;
    let bob = Agent::new(&server, "tok-bob");
    effect_becomes(&bob, "require_approval").await;
    let (status, started) = bob
        .post("/api/agent/sign-in", &json!({"device_id": "LAPTOP-R"}))
        .await;
    assert_eq!(status, 201, "{started}");
    server.shutdown().await.unwrap();
}

/// A user who joins, and department changes, follow their events: a new department under
/// Engineering and a user joining it are in the policy's scope at once; a department renamed
/// is shown with its new name.
#[tokio::test]
async fn joins_and_department_changes_follow_their_events() {
    let mock = mock().await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(&mock, &dir.path().join("j.sqlite"), 3600);
    config.devices.push(device("tok-carol", "carol", "staff"));
    let server: Server = start_with(&mock, config).await;
    let carol = Agent::new(&server, "tok-carol");
    // Not in the directory: her device keeps the departments it was enrolled with (none).
    effect_becomes(&carol, "allow").await;

    // She joins a department created just now under Engineering; its own event comes after.
    mock.add_department(MockDepartment::new(5, "SRE", Some(2)), Notify::Skip)
        .unwrap();
    mock.add_user(MockUser::new("carol", "Carol", vec![5]), Notify::Deliver)
        .unwrap();
    effect_becomes(&carol, "require_approval").await;

    mock.rename_department(CORP, 2, "R&D", Notify::Deliver).unwrap();
    let started = Instant::now();
    loop {
        let page = devices_page(&carol).await;
        if page.contains("R&amp;D (2)") && page.contains("SRE (5)") && page.contains("Carol") {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "{page}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    server.shutdown().await.unwrap();
}

/// Regression: a full read that began before an event must not undo it. Carol joins the
/// root department just after the first read (slowed down) has listed its users: the read,
/// which did not see her, used to replace the directory, take her for a leaver and revoke her
/// device.
#[tokio::test]
async fn an_event_during_a_full_read_is_not_undone_by_it() {
    let mock = mock().await;
    mock.set_faults(MockFaults {
        latency_ms: 200,
        ..MockFaults::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(&mock, &dir.path().join("race.sqlite"), 3600);
    config.devices.push(device("tok-carol", "carol", "staff"));
    let server: Server = start_with(&mock, config).await;
    let carol = Agent::new(&server, "tok-carol");
    // The read lists the departments' users in order: the root's first, three more to go.
    first_read_lists_users(&mock, &carol).await;
    mock.add_user(MockUser::new("carol", "Carol", vec![1]), Notify::Deliver)
        .unwrap();
    let known = first_read_ended(&carol).await;
    assert_eq!(known["users"], 8, "the mock's seven, and carol: {known}");
    assert_eq!(
        carol.check().await["effect"],
        "allow",
        "her device still works (it is in no policy's scope)"
    );

    // A read now (an admin's "sync now") finds her in DingTalk too.
    mock.set_faults(MockFaults::default());
    let (code, read) = carol
        .console(reqwest::Method::POST, "/api/console/directory/sync")
        .await;
    assert_eq!((code, &read["users"]), (200, &json!(8)), "{read}");
    server.shutdown().await.unwrap();
}

/// A department removed while a full read runs: the read, which listed it before, neither
/// fails on it (its users' list answers "not found") nor brings it back.
#[tokio::test]
async fn a_department_removed_during_a_full_read_stays_removed() {
    let mock = mock().await;
    mock.add_department(MockDepartment::new(5, "Legal", Some(1)), Notify::Skip)
        .unwrap();
    mock.set_faults(MockFaults {
        latency_ms: 200,
        ..MockFaults::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let config = config(&mock, &dir.path().join("removed.sqlite"), 3600);
    let server: Server = start_with(&mock, config).await;
    let alice = Agent::new(&server, "tok-alice");
    // The read has listed the departments (Legal among them) and begun on their users.
    first_read_lists_users(&mock, &alice).await;
    mock.remove_department(CORP, 5, Notify::Deliver).unwrap();
    let known = first_read_ended(&alice).await;
    assert_eq!(known["departments"], 4, "the mock's four, not Legal: {known}");

    mock.set_faults(MockFaults::default());
    let (code, read) = alice
        .console(reqwest::Method::POST, "/api/console/directory/sync")
        .await;
    assert_eq!((code, &read["departments"]), (200, &json!(4)), "{read}");
    server.shutdown().await.unwrap();
}
