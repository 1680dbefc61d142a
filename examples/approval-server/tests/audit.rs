//! The audit log over real HTTP on 127.0.0.1 with the mock DingTalk: what admins and agents do
//! is recorded under who did it (configuration changes before and after, never a secret;
//! logins and failed logins; filings, transitions and grants), listed with filters, exported
//! as JSON lines and verified; an entry altered in the SQLite file is found by the API and by
//! `approval-server --verify-audit`, naming it.

use reqwest::Method;
use serde_json::{json, Value};
use sqlx::{Connection as _, Executor as _, SqliteConnection};
use support::{credentialed_config, json, mock, start_with, Agent, ADMIN, AES_KEY, SECRET, TOKEN};

mod support;

async fn call(
    http: &reqwest::Client,
    base: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = http.request(method, format!("{base}{path}")).bearer_auth(ADMIN);
    if let Some(body) = body {
        req = req.json(&body);
    }
    json(req).await
}

#[tokio::test]
async fn what_is_done_is_recorded_under_who_did_it_and_tampering_is_found() {
    let mock = mock().await;
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("audit.sqlite");
    // A production configuration: the command runs in builds without the demo too.
    let config = dir.path().join("server.toml");
    std::fs::write(&config, support::production_toml()).unwrap();
    let server = start_with(&mock, credentialed_config(&mock, &database)).await;
    let (http, base) = (reqwest::Client::new(), format!("http://{}", server.addr));

    // An admin is made, fails to log in once, logs in; a policy is changed.
    let password = "correct horse battery staple";
    let (status, _) = call(
        &http,
        &base,
        Method::POST,
        "/api/console/admins",
        Some(json!({"name": "ada", "role": "admin", "password": password})),
    )
    .await;
    assert_eq!(status, 201);
    for (pw, expected) in [("wrong password here", 401), (password, 200)] {
        let (status, _) = json(
            http.post(format!("{base}/api/console/login"))
                .json(&json!({"name": "ada", "password": pw})),
        )
        .await;
        assert_eq!(status, expected);
    }
    let (_, employees) = call(&http, &base, Method::GET, "/api/console/policies/employees", None).await;
    let mut policy = employees.clone();
    let version = policy["version"].clone();
    for generated in ["version", "updated_at_ms"] {
        policy.as_object_mut().unwrap().remove(generated);
    }
    policy["priority"] = json!(11);
    let (status, saved) = call(
        &http,
        &base,
        Method::PUT,
        "/api/console/policies/employees",
        Some(json!({"policy": policy, "version": version})),
    )
    .await;
    assert_eq!(status, 200, "{saved}");

    // Alice files, the approver agrees in DingTalk, alice consumes the grant, then tries again.
    let alice = Agent::new(&server, "tok-alice");
    let grant = alice.approved_grant(&mock).await;
    assert_eq!(alice.consume(&grant).await.0, 200);
    assert_eq!(alice.consume(&grant).await.0, 409);

    let (status, entries) = call(&http, &base, Method::GET, "/api/console/audit?limit=1000", None).await;
    assert_eq!(status, 200);
    let seen: Vec<(String, String)> = entries
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["actor"].as_str().unwrap().to_owned(),
                e["action"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    for expected in [
        ("console-admin", "admin.create"),
        ("ada", "admin.login_failed"),
        ("ada", "admin.login"),
        ("console-admin", "policy.put"),
        ("alice", "request.filed"),
        ("system", "request.pending"),
        ("approver1", "request.noted"),
        ("dingtalk", "request.approved"),
        ("alice", "grant.consumed"),
        ("alice", "grant.refused"),
    ] {
        assert!(
            seen.iter().any(|(a, b)| (a.as_str(), b.as_str()) == expected),
            "{expected:?} not in {seen:?}"
        );
    }
    let (_, changes) = call(
        &http,
        &base,
        Method::GET,
        "/api/console/audit?action=policy.",
        None,
    )
    .await;
    let change = &changes.as_array().unwrap()[0];
    assert_eq!(
        (
            &change["details"]["before"]["priority"],
            &change["details"]["after"]["priority"]
        ),
        (&json!(10), &json!(11)),
        "before and after: {change}"
    );
    let (_, by_ada) = call(&http, &base, Method::GET, "/api/console/audit?actor=ada", None).await;
    assert_eq!(by_ada.as_array().unwrap().len(), 2, "{by_ada}");

    let (_, _, export) = support::send(
        http.get(format!("{base}/api/console/audit/export"))
            .bearer_auth(ADMIN),
    )
    .await;
    let export = String::from_utf8(export).unwrap();
    assert_eq!(export.lines().count(), seen.len());
    for line in export.lines() {
        let entry: Value = serde_json::from_str(line).unwrap();
        assert!(entry["hash"].as_str().unwrap().len() == 64, "{line}");
    }
    for secret in [SECRET, TOKEN, AES_KEY, password] {
        assert!(!export.contains(secret), "a secret in the audit log");
    }
    let (_, verified) = call(&http, &base, Method::GET, "/api/console/audit/verify", None).await;
    assert_eq!(verified, json!({"intact": true, "entries": seen.len()}));
    server.shutdown().await.unwrap();

    // Someone with the database file rewrites who approved.
    let url = format!("sqlite://{}", database.display());
    let mut db = SqliteConnection::connect(&url).await.unwrap();
    db.execute("UPDATE audit SET actor = 'mallory' WHERE seq = 3")
        .await
        .unwrap();
    db.close().await.unwrap();
    let verify = std::process::Command::new(env!("CARGO_BIN_EXE_approval-server"))
        .args([
            "--config",
            &config.display().to_string(),
            "--database",
            &database.display().to_string(),
            "--verify-audit",
        ])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&verify.stdout);
    assert_eq!(verify.status.code(), Some(1), "{said}");
    assert!(said.contains("audit entry 3"), "{said}");
    let server = start_with(&mock, credentialed_config(&mock, &database)).await;
    let base = format!("http://{}", server.addr);
    let (_, verified) = call(&http, &base, Method::GET, "/api/console/audit/verify", None).await;
    assert_eq!(
        (&verified["intact"], &verified["broken_at"]),
        (&json!(false), &json!(3)),
        "{verified}"
    );
    server.shutdown().await.unwrap();
}
