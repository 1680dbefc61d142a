//! Devices as data, over real HTTP on 127.0.0.1 with the mock DingTalk: an admin makes a
//! single-use, expiring enrollment code for a user; the agent exchanges it for its device
//! token (stored hashed) and the grant keys it pins; devices are listed, tagged (policies
//! scoped by `device_tags` now match) and revoked, a revoked token refused at once, by
//! another server on the same database too; and the agent simulator enrolls with a code.

#![expect(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "the helpers outside #[test] functions fail the test on a broken set-up or response"
)]

use sase_approval::clock::ManualClock;
use sase_approval_server::{self as server, Server};
use sase_policy::PolicyDocument;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use support::{credentialed_config, json, mock, start_on_clock, start_with, ADMIN};

mod support;

/// Calls the server as an admin, an agent with `token`, or anyone (`None`).
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

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        json(req).await
    }

    async fn admin(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        self.call(method, path, Some(ADMIN), body).await
    }

    /// A new enrollment code for `owner` (its JSON); the answer.
    async fn code(&self, owner: Value) -> Value {
        let (status, code) = self
            .admin(
                reqwest::Method::POST,
                "/api/console/enrollment-codes",
                Some(owner),
            )
            .await;
        assert_eq!(status, 201, "{code}");
        code
    }

    async fn enroll(&self, code: &str, device: &str) -> (u16, Value) {
        let body = json!({"code": code, "device_id": device});
        self.call(reqwest::Method::POST, "/api/agent/enroll", None, Some(body))
            .await
    }

    /// The uninstall check's effect for the device with `token`, or the refusal's status.
    async fn effect(&self, token: &str) -> Result<String, u16> {
        let (status, body) = self
            .call(
                reqwest::Method::POST,
                "/api/agent/uninstall-check",
                Some(token),
                Some(json!({"locale": "en-US"})),
            )
            .await;
        match status {
            200 => Ok(body["effect"].as_str().unwrap().to_owned()),
            other => Err(other),
        }
    }

    /// The device `id` as the console lists it.
    async fn device(&self, id: &str) -> Value {
        let (status, devices) = self
            .admin(reqwest::Method::GET, "/api/console/devices", None)
            .await;
        assert_eq!(status, 200, "{devices}");
        devices
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["device_id"] == id)
            .cloned()
            .unwrap_or(Value::Null)
    }
}

#[tokio::test]
async fn a_device_enrolled_with_a_code_is_served_listed_and_refused_once_revoked() {
    let mock = mock().await;
    let dir = tempfile::tempdir().unwrap();
    let server = start_with(
        &mock,
        credentialed_config(&mock, &dir.path().join("devices.sqlite")),
    )
    .await;
    let client = Client::new(&server);

    let code = client
        .code(json!({"user_id": "dora", "groups": ["employees"]}))
        .await;
    let value = code["code"].as_str().unwrap();
    assert!(code["id"].as_str().unwrap().starts_with("enr-"), "{code}");
    let (_, codes) = client
        .admin(reqwest::Method::GET, "/api/console/enrollment-codes", None)
        .await;
    assert_eq!(codes.as_array().unwrap().len(), 1, "{codes}");
    assert!(
        !codes.to_string().contains(value),
        "the code is shown once: {codes}"
    );

    let (status, enrolled) = client.enroll(value, "LAPTOP-DORA").await;
    assert_eq!(status, 201, "{enrolled}");
    let token = enrolled["device_token"].as_str().unwrap().to_owned();
    assert_eq!(enrolled["user_id"], "dora");
    let (_, keys) = client
        .call(reqwest::Method::GET, "/api/agent/grant-key", None, None)
        .await;
    assert_eq!(enrolled["grant_keys"], keys["public_keys"], "the keys to pin");
    assert_eq!(client.effect(&token).await, Ok("require_approval".to_owned()));

    let (status, again) = client.enroll(value, "LAPTOP-MALLORY").await;
    assert_eq!(
        (status, again["error"].as_str()),
        (401, Some("enrollment_refused")),
        "single use: {again}"
    );
    let (_, codes) = client
        .admin(reqwest::Method::GET, "/api/console/enrollment-codes", None)
        .await;
    assert_eq!(codes, json!([]), "a used code is gone");

    let dora = client.device("LAPTOP-DORA").await;
    assert_eq!(
        (
            dora["user_id"].as_str(),
            dora["enrolled_by"].as_str(),
            dora["version"].as_u64()
        ),
        (Some("dora"), code["id"].as_str(), Some(1)),
        "{dora}"
    );
    assert_eq!(
        client.device("dev-alice").await["enrolled_by"],
        "config",
        "the file's devices are listed too"
    );
    let (_, listed) = client
        .admin(reqwest::Method::GET, "/api/console/devices", None)
        .await;
    assert!(
        !listed.to_string().contains(&token),
        "no token in the list: {listed}"
    );
    assert_eq!(client.device("LAPTOP-MALLORY").await, Value::Null);
    let (status, one) = client
        .admin(reqwest::Method::GET, "/api/console/devices/LAPTOP-DORA", None)
        .await;
    assert_eq!(
        (status, &one),
        (200, &client.device("LAPTOP-DORA").await),
        "{one}"
    );
    let (status, _) = client
        .admin(reqwest::Method::GET, "/api/console/devices/LAPTOP-MALLORY", None)
        .await;
    assert_eq!(status, 404);

    let revoke = |version: u64| {
        client.admin(
            reqwest::Method::POST,
            "/api/console/devices/LAPTOP-DORA/revoke",
            Some(json!({ "version": version })),
        )
    };
    let (status, stale) = revoke(7).await;
    assert_eq!(
        (status, stale["error"].as_str()),
        (409, Some("stale_version")),
        "{stale}"
    );
    let (status, revoked) = revoke(1).await;
    assert_eq!(status, 200, "{revoked}");
    assert!(revoked["revoked_at_ms"].as_i64().is_some(), "{revoked}");
    assert_eq!(client.effect(&token).await, Err(401), "refused at once");
    let (status, _) = client
        .admin(
            reqwest::Method::POST,
            "/api/console/devices/NOPE/revoke",
            Some(json!({"version": 1})),
        )
        .await;
    assert_eq!(status, 404);
    let (status, _) = client
        .call(
            reqwest::Method::POST,
            "/api/console/enrollment-codes",
            Some(&token),
            Some(json!({"user_id": "x"})),
        )
        .await;
    assert_eq!(status, 401, "a device token is not the admin's");
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn tags_scope_policies_and_a_stale_tagging_is_refused() {
    let mock = mock().await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = credentialed_config(&mock, &dir.path().join("tags.sqlite"));
    // Shared kiosks may not uninstall, whoever uses them.
    let mut policies = config.policies.take().unwrap();
    let kiosk: PolicyDocument = toml::from_str(
        r#"
        [[policies]]
        id = "shared-kiosks"
        name = "Shared kiosks"
        priority = 50
        switches = { anti_uninstall = true }
        scope = { device_tags = ["shared-kiosk"] }
        approval = { allow_filing = false }
        [policies.prompt.zh-CN]
        title = "禁止卸载"
        content = "内容"
        primary_button = "确定"
        secondary_button = "取消"
        [policies.prompt.en-US]
        title = "Not allowed"
        content = "content"
        primary_button = "OK"
        secondary_button = "Cancel"
        "#,
    )
    .unwrap();
    policies.policies.extend(kiosk.policies);
    config.policies = Some(policies);
    let server = start_with(&mock, config).await;
    let client = Client::new(&server);
    let code = client
        .code(json!({"user_id": "erin", "groups": ["employees"]}))
        .await;
    let (_, enrolled) = client.enroll(code["code"].as_str().unwrap(), "KIOSK-7").await;
    let token = enrolled["device_token"].as_str().unwrap();
    assert_eq!(client.effect(token).await, Ok("require_approval".to_owned()));

    let tag = |version: u64| {
        client.admin(
            reqwest::Method::PUT,
            "/api/console/devices/KIOSK-7/tags",
            Some(json!({"tags": ["shared-kiosk"], "version": version})),
        )
    };
    let (status, tagged) = tag(1).await;
    assert_eq!(status, 200, "{tagged}");
    assert_eq!(
        (tagged["tags"].clone(), tagged["version"].as_u64()),
        (json!(["shared-kiosk"]), Some(2))
    );
    assert_eq!(
        client.effect(token).await,
        Ok("deny".to_owned()),
        "the tag's policy decides"
    );
    let (status, stale) = tag(1).await;
    assert_eq!(
        (status, stale["error"].as_str()),
        (409, Some("stale_version")),
        "{stale}"
    );
    let (status, bad) = client
        .admin(
            reqwest::Method::PUT,
            "/api/console/devices/KIOSK-7/tags",
            Some(json!({"tags": [""], "version": 2})),
        )
        .await;
    assert_eq!(
        (status, bad["error"].as_str()),
        (400, Some("invalid_request")),
        "{bad}"
    );
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn an_expired_code_is_refused() {
    let mock = mock().await;
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::starting_now();
    let server = start_on_clock(
        &mock,
        credentialed_config(&mock, &dir.path().join("expiry.sqlite")),
        Arc::new(clock.clone()),
    )
    .await;
    let client = Client::new(&server);
    let code = client
        .code(json!({"user_id": "finn", "groups": ["employees"], "ttl_secs": 60}))
        .await;
    clock.advance(Duration::from_secs(61));
    let (status, refused) = client.enroll(code["code"].as_str().unwrap(), "LAPTOP-FINN").await;
    assert_eq!(status, 401, "{refused}");
    assert!(
        refused["message"].as_str().unwrap().contains("expired"),
        "{refused}"
    );
    let (status, _) = client
        .admin(
            reqwest::Method::POST,
            "/api/console/enrollment-codes",
            Some(json!({"user_id": "finn", "ttl_secs": 0})),
        )
        .await;
    assert_eq!(status, 400, "a code must last");
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_device_revoked_on_one_server_is_refused_by_another_on_the_same_database() {
    let mock = mock().await;
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("shared.sqlite");
    let a = start_with(&mock, credentialed_config(&mock, &database)).await;
    let b = server::start(credentialed_config(&mock, &database))
        .await
        .unwrap();
    let (on_a, on_b) = (Client::new(&a), Client::new(&b));
    let code = on_a
        .code(json!({"user_id": "gus", "groups": ["employees"]}))
        .await;
    let (_, enrolled) = on_b.enroll(code["code"].as_str().unwrap(), "LAPTOP-GUS").await;
    let token = enrolled["device_token"].as_str().unwrap();
    assert_eq!(
        on_a.effect(token).await,
        Ok("require_approval".to_owned()),
        "enrolled on b, served by a"
    );
    let (status, _) = on_a
        .admin(
            reqwest::Method::POST,
            "/api/console/devices/LAPTOP-GUS/revoke",
            Some(json!({"version": 1})),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(on_b.effect(token).await, Err(401), "b refuses it at once");
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
}

#[tokio::test]
async fn the_agent_simulator_enrolls_with_a_code_and_gets_its_uninstall_approved() {
    let mock = Arc::new(mock().await);
    let dir = tempfile::tempdir().unwrap();
    let server = start_with(&mock, credentialed_config(&mock, &dir.path().join("sim.sqlite"))).await;
    let client = Client::new(&server);
    let code = client
        .code(json!({"user_id": "hana", "groups": ["employees"]}))
        .await;
    // The approver agrees in DingTalk as soon as the instance exists.
    let approver = {
        let mock = Arc::clone(&mock);
        tokio::spawn(async move {
            assert!(
                mock.wait_for(Duration::from_secs(30), |m| !m.instance_ids().is_empty())
                    .await
            );
            let id = mock.instance_ids()[0].clone();
            mock.approve(&id, None, None).unwrap();
        })
    };
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_agent-simulator"))
        .args([
            "--server",
            &client.base,
            "--enroll-code",
            code["code"].as_str().unwrap(),
        ])
        .args([
            "--device",
            "LAPTOP-HANA",
            "--locale",
            "en-US",
            "--wait-secs",
            "30",
        ])
        .arg("--used-grants")
        .arg(dir.path().join("used.json"))
        .output()
        .await
        .unwrap();
    approver.await.unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("Enrolled device LAPTOP-HANA of user hana"),
        "{stdout}"
    );
    assert!(
        stdout.contains("consumed online; uninstall may proceed"),
        "{stdout}"
    );
    server.shutdown().await.unwrap();
}
