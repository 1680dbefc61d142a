//! The README's walk-through of the standalone mock: its `mock.toml` starts a mock, and the
//! calls its `curl` lines make (token, create an instance with the README's body, approve as
//! the approver) work against it.

#![expect(
    clippy::expect_used,
    reason = "a test fails loudly on the first unexpected value"
)]

use dingtalk_sdk::mock::{MockConfig, MockDingTalk};
use serde_json::{json, Value};

/// The README's text between `start` and the next `end` after it.
fn between<'a>(text: &'a str, start: &str, end: &str) -> &'a str {
    let (_, after) = text.split_once(start).expect("the README has the marker");
    after.split_once(end).expect("and its end").0
}

#[tokio::test]
async fn the_readme_mock_walk_through_works() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let config: MockConfig =
        toml::from_str(between(&readme, "cat > mock.toml <<'TOML'\n", "TOML\n")).unwrap();
    let mock = MockDingTalk::builder().config(config).start().await.unwrap();
    let base = mock.base_url();
    let http = reqwest::Client::new();

    let token: Value = http
        .post(format!("{base}/v1.0/oauth2/accessToken"))
        .json(&json!({"appKey": "dingappkey", "appSecret": "secret"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = token["accessToken"]
        .as_str()
        .expect("a token for the README's app");

    let create_body = between(&readme, "/v1.0/workflow/processInstances", "\n# →");
    let create_body = between(create_body, "-d '", "'");
    let created = http
        .post(format!("{base}/v1.0/workflow/processInstances"))
        .header("x-acs-dingtalk-access-token", token)
        .header("content-type", "application/json")
        .body(create_body.to_owned())
        .send()
        .await
        .unwrap();
    assert_eq!(
        created.status(),
        200,
        "the README's create body is valid for its form"
    );
    let created: Value = created.json().await.unwrap();
    let instance = created["instanceId"].as_str().unwrap();

    let approved = http
        .post(format!("{base}/__mock/instances/{instance}/approve"))
        .json(&json!({"remark": "ok"}))
        .send()
        .await
        .unwrap();
    assert!(approved.status().is_success());
    assert_eq!(mock.instance(instance).unwrap()["result"], "agree");
}
