//! Policies as data, over real HTTP on 127.0.0.1 with the mock DingTalk: an admin previews a
//! change (who gains and who loses protection, device by device), saves it and it decides at
//! once, without a restart; stale versions are refused; a wrong policy is refused with every
//! problem and its path; a change made on one server is in force on another on the same
//! database within its poll; at restart the file's policies win and the API's stay.

#![expect(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "the helpers outside #[test] functions fail the test on a broken set-up or response"
)]

use sase_approval_server::{self as server, Server};
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use support::{credentialed_config, json, mock, start_with, ADMIN, WORKFLOW};

mod support;

/// Calls the server as an admin, or as the agent with a device token.
struct Client {
    http: reqwest::Client,
    base: String,
}

impl Client {
    fn new(server: &Server) -> Self {
        Self {
            http: reqwest::Client::new(),
            base: format!("http://{}", server.addr),
        }
    }

    async fn admin(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(ADMIN);
        if let Some(body) = body {
            req = req.json(&body);
        }
        json(req).await
    }

    /// The uninstall check for the device with `token`: (effect, deciding policy).
    async fn decision(&self, token: &str) -> (String, Value) {
        let (status, body) = json(
            self.http
                .post(format!("{}/api/agent/uninstall-check", self.base))
                .bearer_auth(token)
                .json(&json!({"locale": "en-US"})),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        (
            body["effect"].as_str().unwrap().to_owned(),
            body["policy"].clone(),
        )
    }

    async fn put(&self, policy: &Value, version: u64) -> (u16, Value) {
        let path = format!("/api/console/policies/{}", policy["id"].as_str().unwrap());
        self.admin(
            reqwest::Method::PUT,
            &path,
            Some(json!({"policy": policy, "version": version})),
        )
        .await
    }

    async fn ids(&self) -> Vec<String> {
        let (status, list) = self
            .admin(reqwest::Method::GET, "/api/console/policies", None)
            .await;
        assert_eq!(status, 200, "{list}");
        list.as_array()
            .unwrap()
            .iter()
            .map(|p| p["id"].as_str().unwrap().to_owned())
            .collect()
    }
}

/// A policy protecting the `contractors` group: they file on the test workflow.
fn contractors() -> Value {
    let prompt = |title: &str| json!({"title": title, "content": "c", "primary_button": "File", "secondary_button": "Cancel"});
    json!({
        "id": "contractors", "name": "Contractors", "priority": 5,
        "switches": {"anti_uninstall": true},
        "scope": {"groups": ["contractors"]},
        "approval": {"allow_filing": true, "workflow": WORKFLOW},
        "prompt": {"zh-CN": prompt("需要审批"), "en-US": prompt("Approval needed")},
    })
}

#[tokio::test]
async fn a_policy_saved_in_the_console_decides_at_once_after_a_preview_of_who_it_protects() {
    let mock = mock().await;
    let dir = tempfile::tempdir().unwrap();
    let server = start_with(&mock, credentialed_config(&mock, &dir.path().join("p.sqlite"))).await;
    let client = Client::new(&server);
    assert_eq!(
        client.ids().await,
        ["kiosks", "employees"],
        "the file's, by precedence"
    );
    assert_eq!(client.decision("tok-contractor").await.0, "allow");

    // The preview: carl's device, and only it, gains protection; nothing is saved.
    let (status, preview) = client
        .admin(
            reqwest::Method::POST,
            "/api/console/policies/preview",
            Some(json!({"put": contractors()})),
        )
        .await;
    assert_eq!(status, 200, "{preview}");
    assert_eq!(
        preview,
        json!({"devices": 4, "gains_protection": 1, "loses_protection": 0, "changes": [{
            "device_id": "dev-carl", "user_id": "carl", "user_name": null, "change": "gains_protection",
            "before": {"effect": "allow", "reason": "out_of_scope", "policy": null, "workflow": null},
            "after": {"effect": "require_approval", "reason": "approval_required",
                      "policy": "contractors", "workflow": WORKFLOW},
        }]})
    );
    assert_eq!(
        client.decision("tok-contractor").await.0,
        "allow",
        "a preview saves nothing"
    );

    let (status, saved) = client.put(&contractors(), 0).await;
    assert_eq!((status, &saved["version"]), (201, &json!(1)), "{saved}");
    assert_eq!(
        client.decision("tok-contractor").await,
        ("require_approval".to_owned(), json!("contractors")),
        "in force at once, no restart"
    );
    let (status, again) = client.put(&contractors(), 0).await;
    assert_eq!(
        (status, again["error"].as_str()),
        (409, Some("stale_version")),
        "{again}"
    );

    // Filing is no longer allowed: an update names the version it replaces.
    let mut stricter = contractors();
    stricter["approval"] = json!({"allow_filing": false});
    let (status, stale) = client.put(&stricter, 7).await;
    assert_eq!(
        (status, stale["error"].as_str()),
        (409, Some("stale_version")),
        "{stale}"
    );
    let (status, updated) = client.put(&stricter, 1).await;
    assert_eq!((status, &updated["version"]), (200, &json!(2)), "{updated}");
    assert_eq!(client.decision("tok-contractor").await.0, "deny");
    let (status, got) = client
        .admin(reqwest::Method::GET, "/api/console/policies/contractors", None)
        .await;
    assert_eq!(
        (status, &got["approval"]["allow_filing"]),
        (200, &json!(false)),
        "{got}"
    );

    // Deleting the employees' policy: alice loses protection; it-admin, whitelisted by it,
    // stays unprotected, now out of scope.
    let (_, preview) = client
        .admin(
            reqwest::Method::POST,
            "/api/console/policies/preview",
            Some(json!({"delete": "employees"})),
        )
        .await;
    let changed: Vec<(&str, &str)> = preview["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["device_id"].as_str().unwrap(), c["change"].as_str().unwrap()))
        .collect();
    assert_eq!(
        changed,
        [("dev-alice", "loses_protection"), ("dev-it-admin", "changes")],
        "{preview}"
    );
    let (status, _) = client
        .admin(
            reqwest::Method::DELETE,
            "/api/console/policies/employees?version=9",
            None,
        )
        .await;
    assert_eq!(status, 409, "a stale delete");
    let (status, _) = client
        .admin(reqwest::Method::DELETE, "/api/console/policies/employees", None)
        .await;
    assert_eq!(status, 400, "a delete names its version");
    let (status, _) = client
        .admin(
            reqwest::Method::DELETE,
            "/api/console/policies/employees?version=1",
            None,
        )
        .await;
    assert_eq!(status, 204);
    assert_eq!(client.decision("tok-alice").await.0, "allow");
    let (status, _) = client
        .admin(reqwest::Method::GET, "/api/console/policies/employees", None)
        .await;
    assert_eq!(status, 404);
    let (status, _) = client
        .admin(
            reqwest::Method::DELETE,
            "/api/console/policies/employees?version=1",
            None,
        )
        .await;
    assert_eq!(status, 404, "gone");
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_wrong_policy_is_refused_with_every_problem_and_its_path() {
    let mock = mock().await;
    let dir = tempfile::tempdir().unwrap();
    let server = start_with(&mock, credentialed_config(&mock, &dir.path().join("w.sqlite"))).await;
    let client = Client::new(&server);

    let mut wrong = contractors();
    wrong["approval"]["workflow"] = json!("wf-nonexistent");
    wrong["scope"] = json!({});
    wrong["prompt"].as_object_mut().unwrap().remove("en-US");
    let (status, refused) = client.put(&wrong, 0).await;
    assert_eq!(
        (status, refused["error"].as_str()),
        (422, Some("invalid_policy")),
        "{refused}"
    );
    let paths: Vec<&str> = refused["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        paths,
        ["policy.scope", "policy.approval.workflow", "policy.prompt.en-US"],
        "{refused}"
    );
    assert!(refused["message"]
        .as_str()
        .unwrap()
        .contains("unknown workflow `wf-nonexistent`"));
    let (status, previewed) = client
        .admin(
            reqwest::Method::POST,
            "/api/console/policies/preview",
            Some(json!({"put": wrong})),
        )
        .await;
    assert_eq!(
        (status, previewed["error"].as_str()),
        (422, Some("invalid_policy"))
    );

    // A misspelt key is named by its path, not dropped.
    let mut misspelt = contractors();
    misspelt["whitlist"] = json!(["carl"]);
    let (status, refused) = client.put(&misspelt, 0).await;
    assert_eq!(status, 400, "{refused}");
    assert!(
        refused["message"]
            .as_str()
            .unwrap()
            .starts_with("at `policy.whitlist`: unknown field"),
        "{refused}"
    );
    let (status, refused) = client
        .admin(
            reqwest::Method::PUT,
            "/api/console/policies/someone-else",
            Some(json!({"policy": contractors(), "version": 0})),
        )
        .await;
    assert_eq!(status, 400, "the body's id is the URL's: {refused}");
    assert_eq!(client.ids().await, ["kiosks", "employees"], "nothing saved");
    let (status, _) = json(
        reqwest::Client::new()
            .put(format!("{}/api/console/policies/contractors", client.base))
            .bearer_auth("tok-alice")
            .json(&json!({"policy": contractors(), "version": 0})),
    )
    .await;
    assert_eq!(status, 401, "a device token is not an admin token");
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_change_on_one_server_is_in_force_on_another_and_the_file_wins_at_restart() {
    let mock = mock().await;
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("shared.sqlite");
    let mut config = credentialed_config(&mock, &database);
    config.reload_every_secs = 1;
    let a = start_with(&mock, config.clone()).await;
    let b = server::start(config.clone()).await.unwrap();
    let (on_a, on_b) = (Client::new(&a), Client::new(&b));
    assert_eq!(on_b.decision("tok-contractor").await.0, "allow");
    let (status, _) = on_a.put(&contractors(), 0).await;
    assert_eq!(status, 201);
    // b sees the generation move at its next poll (a second), not at its next restart.
    let started = Instant::now();
    while on_b.decision("tok-contractor").await.0 != "require_approval" {
        assert!(started.elapsed() < Duration::from_secs(10), "b never reloaded");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // An admin loosens a policy the file declares.
    let (_, employees) = on_a
        .admin(reqwest::Method::GET, "/api/console/policies/employees", None)
        .await;
    let mut loosened = employees.clone();
    let version = loosened.as_object_mut().unwrap().remove("version").unwrap();
    loosened.as_object_mut().unwrap().remove("updated_at_ms");
    loosened["whitelist"] = json!(["it-admin", "alice"]);
    let (status, _) = on_a.put(&loosened, version.as_u64().unwrap()).await;
    assert_eq!(status, 200);
    assert_eq!(on_a.decision("tok-alice").await.0, "allow");
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();

    // At restart the file's `employees` wins; the API's `contractors` stays.
    let a = server::start(config).await.unwrap();
    let on_a = Client::new(&a);
    assert_eq!(on_a.decision("tok-alice").await.0, "require_approval");
    assert_eq!(on_a.decision("tok-contractor").await.0, "require_approval");
    assert_eq!(on_a.ids().await, ["kiosks", "employees", "contractors"]);
    a.shutdown().await.unwrap();
}
