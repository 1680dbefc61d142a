//! The README's `server.toml` (the admin's steps for real DingTalk) parses, validates for a
//! production build and starts: its Request URL is served and its console lists the workflow.

#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails loudly on the first unexpected value"
)]

use sase_approval_server::config::{Config, Mode};
use serde_json::Value;

/// The `toml` block that follows "Write `server.toml`" in the README, un-indented.
fn readme_server_toml() -> String {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).unwrap();
    let (_, after) = readme
        .split_once("Write `server.toml`")
        .expect("the README shows server.toml");
    let (_, block) = after.split_once("```toml\n").expect("as a toml block");
    let (block, _) = block.split_once("```").expect("that ends");
    block
        .lines()
        .map(|line| line.strip_prefix("   ").unwrap_or(line))
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test]
async fn the_readme_server_toml_starts_a_server() {
    let mut config: Config = toml::from_str(&readme_server_toml()).unwrap();
    config.validate_for(Mode::Production).unwrap();
    assert_eq!(config.workflows.len(), 1);
    assert_eq!(config.devices.len(), 1);
    // Where this test may listen and write: the rest is as the README has it.
    let dir = tempfile::tempdir().unwrap();
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.database = dir.path().join("approvals.sqlite").display().to_string();
    let admin = config.admin_token.clone().unwrap();

    let server = sase_approval_server::start(config).await.unwrap();
    let url = server
        .request_url("wf-dingtalk")
        .expect("an HTTP-push workflow")
        .to_owned();
    let http = reqwest::Client::new();
    // An unsigned push is refused by the workflow's Request URL (it exists, and checks).
    let push = http.post(&url).body("{}").send().await.unwrap();
    assert_eq!(push.status(), 400, "{url}");
    let workflows: Value = http
        .get(format!("http://{}/api/console/workflows", server.addr))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(workflows[0]["id"], "wf-dingtalk", "{workflows}");
    assert_eq!(workflows[0]["client_id"], "dingq5z1ybtkwcvhx7ab");
    assert!(
        !workflows.to_string().contains("replace-with-the-app-secret"),
        "secrets stay out"
    );
    server.shutdown().await.unwrap();
}

/// Every configuration example in the README is one a test starts: this one (above), the
/// TLS and reverse-proxy ones (`tests/tls.rs`), the PostgreSQL one (`tests/replicas.rs`) and
/// the directory's (`tests/directory.rs`).
/// A new example fails here until it is.
#[test]
fn every_readme_configuration_example_is_started_by_a_test() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).unwrap();
    const STARTED: [&str; 5] = [
        "Write `server.toml`:",
        "organisation's app:",
        "To have the server terminate TLS itself, add to `server.toml`:",
        "Behind a reverse proxy, give `server.toml` the public URL:",
        "give each the same configuration with",
    ];
    let blocks: Vec<&str> = readme.split("```toml\n").skip(1).collect();
    let introduced_by: Vec<&str> = readme
        .split("```toml\n")
        .take(blocks.len())
        .map(|before| {
            let before = before.trim_end();
            before.lines().last().unwrap_or_default().trim()
        })
        .collect();
    for intro in &introduced_by {
        assert!(
            STARTED.iter().any(|marker| intro.ends_with(marker)),
            "a README toml block introduced by {intro:?} is not started by any test"
        );
    }
    assert_eq!(blocks.len(), STARTED.len(), "{introduced_by:?}");
    for block in blocks {
        let (block, _) = block.split_once("```").unwrap();
        let text: String = block
            .lines()
            .map(|line| line.strip_prefix("   ").unwrap_or(line))
            .collect::<Vec<_>>()
            .join("\n");
        Config::from_toml(&text, "README.md").unwrap();
    }
}
