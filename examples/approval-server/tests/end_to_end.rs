//! The whole flow over real HTTP on 127.0.0.1: the approval server (SQLite file) and a mock
//! DingTalk that pushes encrypted events to the server's Request URL. Approved, rejected and
//! revoked requests; whitelisted, out-of-scope and filing-disabled users; expired and reused
//! grants; console approval written back to DingTalk; a server restart mid-request; a bounded
//! shutdown with Stream clients; and what a build without `demo` refuses.

#![expect(
    clippy::unwrap_used,
    reason = "the helpers outside #[test] functions fail the test on a broken set-up or response"
)]

use dingtalk_sdk::mock::MockDingTalk;
use sase_approval::clock::ManualClock;
use sase_approval_server::config::{ConfigError, WorkflowConfig};
use sase_approval_server::{self as server, Server};
use sase_policy::ids::{DeviceId, GrantId, UserId};
use sase_policy::{Action, Error as PolicyError, SignedGrant};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use support::{
    config, credentialed_config, json, mock, signed_by, start_on_clock, start_with, Agent, ADMIN, AES_KEY,
    APP, SECRET,
};

mod support;

async fn start(mock: &MockDingTalk, database: &std::path::Path) -> Server {
    start_with(mock, credentialed_config(mock, database)).await
}

/// A mock DingTalk and a server on a fresh database (kept while the directory lives).
async fn running() -> (tempfile::TempDir, MockDingTalk, Server) {
    let dir = tempfile::tempdir().unwrap();
    let mock = mock().await;
    let server = start(&mock, &dir.path().join("e2e.sqlite")).await;
    (dir, mock, server)
}

#[tokio::test]
async fn a_grant_is_consumed_once_online_and_revocation_reaches_it() {
    let (_dir, mock, server) = running().await;
    let alice = Agent::new(&server, "tok-alice");
    let grant = alice.approved_grant(&mock).await;
    let (status, body) = Agent::new(&server, "tok-contractor").consume(&grant).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (409, Some("grant_foreign")),
        "{body}"
    );
    let (status, body) = alice.consume(&grant).await;
    assert_eq!((status, body["consumed"].as_bool()), (200, Some(true)), "{body}");
    let (status, body) = alice.consume(&grant).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (409, Some("grant_used")),
        "{body}"
    );

    // Revoked after approval: the grant still verifies offline, but the online step refuses it.
    let revoked = alice.approved_grant(&mock).await;
    let id = revoked.grant.request_id.clone().unwrap();
    let (status, body) = alice
        .console(
            reqwest::Method::POST,
            &format!("/api/console/requests/{id}/revoke"),
        )
        .await;
    assert_eq!((status, body["state"].as_str()), (200, Some("revoked")), "{body}");
    let (status, body) = alice.consume(&revoked).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (409, Some("grant_revoked")),
        "{body}"
    );
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn the_console_records_the_authenticated_admin_not_a_name_in_the_body() {
    let (_dir, _mock, server) = running().await;
    let alice = Agent::new(&server, "tok-alice");
    let (_, filed) = alice.file("who decided?").await;
    let id = filed["id"].as_str().unwrap().to_owned();
    let path = format!("http://{}/api/console/requests/{id}/reject", server.addr);
    let http = reqwest::Client::new();
    let (spoofed, _) = json(
        http.post(&path)
            .bearer_auth(ADMIN)
            .json(&json!({"remark": "no", "admin": "ceo@corp (console: security-team)"})),
    )
    .await;
    assert_eq!(spoofed, 400, "a body cannot name the actor");
    let (malformed, _) = json(http.post(&path).bearer_auth(ADMIN).body("{oops")).await;
    assert_eq!(malformed, 400, "malformed is not 'no remark'");
    let (done, _) = json(http.post(&path).bearer_auth(ADMIN).json(&json!({"remark": "no"}))).await;
    assert_eq!(done, 200);
    let (_, request) = alice
        .console(reqwest::Method::GET, &format!("/api/console/requests/{id}"))
        .await;
    // DingTalk's own event for the write-back may land before or after the console's write:
    // either way the console's entry names the authenticated admin and the remark.
    let history = request["history"].as_array().unwrap();
    let by_console: Vec<_> = history
        .iter()
        .filter(|t| t["source"]["kind"] == "console")
        .map(|t| (t["actor"].as_str(), t["note"].as_str(), t["to"].as_str()))
        .collect();
    assert_eq!(
        by_console,
        [(Some("console-admin"), Some("no"), Some("rejected"))],
        "{request}"
    );
    assert!(!request.to_string().contains("ceo@corp"), "{request}");
    server.shutdown().await.unwrap();
}

/// Slow and idle clients are dropped: a flood of sockets sending half a request head fills
/// the connection cap, new clients are refused while it is full, and once the header timeout
/// passes the server answers a fresh client again; a trickled body is refused.
#[tokio::test]
async fn slow_clients_cannot_starve_the_server() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let dir = tempfile::tempdir().unwrap();
    let mock = mock().await;
    let mut config = credentialed_config(&mock, &dir.path().join("slow.sqlite"));
    config.max_connections = 8;
    config.header_read_timeout_secs = 1;
    config.body_timeout_secs = 1;
    let server = server::start(config).await.unwrap();
    let addr = server.addr;
    let health = || async move {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .unwrap();
        http.get(format!("http://{addr}/healthz"))
            .send()
            .await
            .map(|r| r.status().as_u16())
    };
    assert_eq!(health().await.unwrap(), 200);

    let mut slow = Vec::new();
    for _ in 0..20 {
        let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
        socket
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        slow.push(socket);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        health().await.is_err(),
        "the cap is full: a new client is refused, not queued"
    );

    // Within the header timeout (and a margin) the slow sockets are closed and a fresh client
    // is served again.
    let started = std::time::Instant::now();
    let mut served = false;
    while started.elapsed() < Duration::from_secs(5) {
        if health().await.ok() == Some(200) {
            served = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(served, "served again after the header timeout");
    for socket in &mut slow {
        let mut buf = [0u8; 256];
        let read = tokio::time::timeout(Duration::from_secs(3), socket.read(&mut buf)).await;
        assert!(matches!(read, Ok(Ok(_) | Err(_))), "the slow socket was closed");
    }

    // A body announced and then trickled: refused once the body timeout passes (the JSON
    // extractor reports it as a 400 saying so).
    let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
    socket
        .write_all(b"POST /api/agent/requests HTTP/1.1\r\nHost: x\r\nauthorization: Bearer tok-alice\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{\"rea")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), socket.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.starts_with("HTTP/1.1 4") && answer.contains("timeout"),
        "{answer}"
    );
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn filing_again_while_a_request_is_open_returns_it() {
    let (_dir, mock, server) = running().await;
    let alice = Agent::new(&server, "tok-alice");
    let before = mock.instance_ids().len();
    let (status, first) = alice.file("reinstall").await;
    assert_eq!(status, 201, "{first}");
    for _ in 0..20 {
        let (status, again) = alice.file("reinstall, really").await;
        assert_eq!((status, &again["id"]), (200, &first["id"]), "{again}");
    }
    assert_eq!(mock.instance_ids().len(), before + 1, "one DingTalk instance");
    // Once decided, a new filing is a new request.
    alice.refused(&mock, first["id"].as_str().unwrap()).await;
    let (status, next) = alice.file("reinstall, please").await;
    assert_eq!(status, 201, "{next}");
    assert_ne!(next["id"], first["id"]);
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_filings_make_one_request_and_one_instance() {
    let (_dir, mock, server) = running().await;
    let before = mock.instance_ids().len();
    let filings: Vec<_> = (0..8)
        .map(|n| {
            let alice = Agent::new(&server, "tok-alice");
            tokio::spawn(async move { alice.file(&format!("a double click, {n}")).await })
        })
        .collect();
    let mut answers = Vec::new();
    for filing in filings {
        answers.push(filing.await.unwrap());
    }
    let created: Vec<&Value> = answers
        .iter()
        .filter(|(s, _)| *s == 201)
        .map(|(_, b)| b)
        .collect();
    assert_eq!(created.len(), 1, "{answers:?}");
    for (status, body) in &answers {
        assert!(*status == 201 || *status == 200, "{status} {body}");
        assert_eq!(
            body["id"], created[0]["id"],
            "every filing answers the one request"
        );
    }
    assert_eq!(mock.instance_ids().len(), before + 1, "one DingTalk instance");
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn an_instance_flooded_with_comments_keeps_a_bounded_history() {
    let (_dir, mock, server) = running().await;
    let alice = Agent::new(&server, "tok-alice");
    let (status, filed) = alice.file("reinstall").await;
    assert_eq!(status, 201, "{filed}");
    let id = filed["id"].as_str().unwrap().to_owned();
    let external = alice.external_id(&id).await;
    let comments = 150;
    for n in 0..comments {
        mock.comment(&external, "approver1", &format!("comment {n}"))
            .unwrap();
    }
    mock.approve(&external, None, Some("ok")).unwrap();
    alice.poll(&id, "approved").await;
    // The last comments' events may still be on their way after the approval's.
    let path = format!("/api/console/requests/{id}");
    let mut request = Value::Null;
    for _ in 0..500 {
        request = alice.console(reqwest::Method::GET, &path).await.1;
        let audit = request["history"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["from"] == t["to"])
            .count();
        let dropped = request["history_dropped"].as_u64().unwrap_or(0);
        if audit as u64 - 1 + dropped >= comments {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let history = request["history"].as_array().unwrap();
    let audit = history.iter().filter(|t| t["from"] == t["to"]).count();
    assert_eq!(
        audit,
        1 + sase_approval::state::AUDIT_ENTRIES_KEPT,
        "the filing and the newest comments"
    );
    assert!(
        request["history_dropped"].as_u64().unwrap() >= comments - 100,
        "{}",
        request["history_dropped"]
    );
    let moves: Vec<&Value> = history
        .iter()
        .filter(|t| t["from"] != t["to"])
        .map(|t| &t["to"])
        .collect();
    assert_eq!(
        moves,
        [&json!("pending"), &json!("approved")],
        "state changes are all kept"
    );
    assert!(
        request.to_string().len() < 64 * 1024,
        "{} bytes",
        request.to_string().len()
    );
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_device_that_keeps_filing_is_rate_limited() {
    let dir = tempfile::tempdir().unwrap();
    let mock = mock().await;
    let mut config = credentialed_config(&mock, &dir.path().join("rate.sqlite"));
    config.filings_per_hour = 2;
    let server = start_with(&mock, config).await;
    let alice = Agent::new(&server, "tok-alice");
    for n in 0..2 {
        let (status, body) = alice.file("file, get refused, file again").await;
        assert_eq!(status, 201, "filing {n}: {body}");
        alice.refused(&mock, body["id"].as_str().unwrap()).await;
    }
    let before = mock.instance_ids().len();
    let (status, headers, body) = support::send(
        reqwest::Client::new()
            .post(format!("http://{}/api/agent/requests", server.addr))
            .bearer_auth("tok-alice")
            .json(&json!({"reason": "a third time"})),
    )
    .await;
    assert_eq!(status, 429);
    let retry_after: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((3_500..=3_600).contains(&retry_after), "{retry_after}");
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["error"], "rate_limited", "{body}");
    assert_eq!(mock.instance_ids().len(), before, "nothing reached DingTalk");
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn oversized_or_hostile_reasons_never_reach_dingtalk() {
    let (_dir, mock, server) = running().await;
    let alice = Agent::new(&server, "tok-alice");
    let before = mock.instance_ids().len();
    for reason in [
        "x".repeat(60_000),
        "\u{1b}[2J\u{1b}[31mrm -rf\u{1b}[0m".to_owned(),
        "invoice\u{202E}exe.pdf".to_owned(),
    ] {
        let (status, body) = alice.file(&reason).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("invalid_request")),
            "{body}"
        );
    }
    assert_eq!(mock.instance_ids().len(), before, "nothing reached DingTalk");
    let (status, body) = alice.file("two\r\nlines").await;
    assert_eq!(status, 201, "{body}");
    let id = body["id"].as_str().unwrap().to_owned();
    let external = alice.external_id(&id).await;
    let form = mock.instance(&external).unwrap()["formComponentValues"].clone();
    assert!(
        form.as_array()
            .unwrap()
            .iter()
            .any(|f| f["value"] == "two\nlines"),
        "{form}"
    );
    server.shutdown().await.unwrap();
}

/// The agent-side verifier over real HTTP against the server: pinned keys, its own user and
/// device, a persistent single-use record, and the online consume.
#[tokio::test]
async fn the_agent_verifier_refuses_forged_foreign_reused_and_revoked_grants() {
    use sase_agent::{AgentConfig, AgentError, AgentVerifier, Authorization, HttpConsume};
    let (dir, mock, server) = running().await;
    let alice = Agent::new(&server, "tok-alice");
    let pinned = alice.verifier().await; // as written at enrollment
    let base = format!("http://{}", server.addr);
    let record = dir.path().join("alice-used.json");
    // The blocking verifier runs off the runtime's threads, as an agent's would.
    let authorize = |config: AgentConfig, grant: SignedGrant, token: &'static str| {
        let base = base.clone();
        async move {
            tokio::task::spawn_blocking(move || {
                let consume = HttpConsume::new(&base, token).unwrap();
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_millis();
                AgentVerifier::new(config)?.authorize(
                    &grant,
                    Action::Uninstall,
                    i64::try_from(now).unwrap(),
                    &consume,
                )
            })
            .await
            .unwrap()
        }
    };
    let alice_config = || {
        AgentConfig::new(
            vec![pinned.clone()],
            UserId::new("alice"),
            DeviceId::new("dev-alice"),
            &record,
        )
    };

    let grant = alice.approved_grant(&mock).await;
    // A man-in-the-middle's own key and grant: refused, whatever key it serves.
    let forged = sase_policy::GrantSigner::from_bytes(&[66; 32]).sign(grant.grant.clone());
    assert!(matches!(
        authorize(alice_config(), forged, "tok-alice").await,
        Err(AgentError::BadSignature)
    ));
    // Alice's genuine grant on another device (its own configuration, its own token).
    let carl_config = AgentConfig::new(
        vec![pinned.clone()],
        UserId::new("carl"),
        DeviceId::new("dev-carl"),
        dir.path().join("carl-used.json"),
    );
    assert!(matches!(
        authorize(carl_config, grant.clone(), "tok-contractor").await,
        Err(AgentError::Foreign { .. })
    ));
    // Alice's device: authorized online, once, also after a restart (a new verifier).
    assert!(matches!(
        authorize(alice_config(), grant.clone(), "tok-alice").await,
        Ok(Authorization::Online)
    ));
    assert!(matches!(
        authorize(alice_config(), grant.clone(), "tok-alice").await,
        Err(AgentError::Used { .. })
    ));

    // Revoked after approval: the signature still verifies, the server refuses it.
    let revoked = alice.approved_grant(&mock).await;
    let id = revoked.grant.request_id.clone().unwrap();
    alice
        .console(
            reqwest::Method::POST,
            &format!("/api/console/requests/{id}/revoke"),
        )
        .await;
    let refused = authorize(alice_config(), revoked, "tok-alice").await;
    assert!(
        matches!(&refused, Err(AgentError::Refused { reason }) if reason == "grant_revoked"),
        "{refused:?}"
    );
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn the_grant_key_is_private_survives_restarts_rotates_and_is_never_silently_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("keys.sqlite");
    let key_file = dir.path().join("keys.sqlite.grant-key");
    let mock = mock().await;
    let server = start(&mock, &db).await;
    let alice = Agent::new(&server, "tok-alice");
    let old_grant = alice.approved_grant(&mock).await;
    let old_key = alice.verifier().await;
    assert!(signed_by(&old_grant, &old_key));
    server.shutdown().await.unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "created readable by its owner only");
    }

    // Rotation: a new key signs, the old one still verifies what it signed.
    let new_key = server::grant_keys::rotate(&key_file).unwrap();
    let server = start(&mock, &db).await;
    let alice = Agent::new(&server, "tok-alice");
    assert_eq!(alice.verifier().await, new_key);
    let published = alice.verifiers().await;
    assert_eq!(published, vec![new_key.clone(), old_key.clone()]);
    assert!(
        published.iter().any(|k| signed_by(&old_grant, k)),
        "the old grant still verifies"
    );
    let new_grant = alice.approved_grant(&mock).await;
    assert!(signed_by(&new_grant, &new_key), "signed by the new key");
    assert!(!signed_by(&new_grant, &old_key));
    server.shutdown().await.unwrap();

    // A truncated key file stops the start, naming the file, and is left as it was.
    std::fs::write(&key_file, "0123456789abcdef").unwrap();
    match server::start(credentialed_config(&mock, &db)).await {
        Err(e) => assert!(e.to_string().contains(&key_file.display().to_string()), "{e}"),
        Ok(_) => panic!("started with a corrupt grant key"),
    }
    assert_eq!(std::fs::read_to_string(&key_file).unwrap(), "0123456789abcdef");
}

#[tokio::test]
async fn approved_in_dingtalk_then_the_grant_is_single_use_and_expires() {
    let (_dir, mock, server) = running().await;
    let alice = Agent::new(&server, "tok-alice");
    let check = alice.check().await;
    assert_eq!(
        (check["effect"].as_str(), check["workflow"].as_str()),
        (Some("require_approval"), Some("wf-dingtalk"))
    );
    assert_eq!(check["prompt"]["primary_button"], "File for Approval");

    let (status, filed) = alice.file("reinstalling the OS").await;
    assert_eq!(status, 201, "{filed}");
    let id = filed["id"].as_str().unwrap().to_owned();
    let external = alice.external_id(&id).await;
    let form = &mock.instance(&external).unwrap()["formComponentValues"];
    assert!(form
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f["name"] == "卸载原因" && f["value"] == "reinstalling the OS"));

    mock.approve(&external, Some("approver1"), Some("ok")).unwrap();
    let approved = alice.poll(&id, "approved").await;
    let grant: SignedGrant = serde_json::from_value(approved["grant"].clone()).unwrap();
    let verifier = alice.verifier().await;
    let (user, dev) = (UserId::new("alice"), DeviceId::new("dev-alice"));
    let now = grant.grant.issued_at_ms;
    verifier
        .verify(&grant, &user, &dev, Action::Uninstall, now, &HashSet::new())
        .unwrap();
    // Single use: once consumed, the agent refuses it; and it expires.
    let used: HashSet<GrantId> = [grant.grant.id.clone()].into_iter().collect();
    assert!(matches!(
        verifier.verify(&grant, &user, &dev, Action::Uninstall, now, &used),
        Err(PolicyError::GrantUsed { .. })
    ));
    assert!(matches!(
        verifier.verify(
            &grant,
            &user,
            &dev,
            Action::Uninstall,
            grant.grant.expires_at_ms,
            &HashSet::new()
        ),
        Err(PolicyError::GrantExpired { .. })
    ));
    assert!(matches!(
        verifier.verify(
            &grant,
            &user,
            &DeviceId::new("another-laptop"),
            Action::Uninstall,
            now,
            &HashSet::new()
        ),
        Err(PolicyError::GrantForeign { .. })
    ));
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn rejected_and_revoked_in_dingtalk_allow_nothing() {
    let (_dir, mock, server) = running().await;
    let alice = Agent::new(&server, "tok-alice");
    let (_, a) = alice.file("first").await;
    let a = a["id"].as_str().unwrap().to_owned();
    assert!(alice.refused(&mock, &a).await["grant"].is_null());
    let (_, b) = alice.file("second").await;
    let b = b["id"].as_str().unwrap().to_owned();
    mock.terminate(&alice.external_id(&b).await, Some("withdrawn"))
        .unwrap();
    assert!(alice.poll(&b, "revoked").await["grant"].is_null());
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn whitelisted_out_of_scope_and_filing_disabled_users() {
    let (_dir, _mock, server) = running().await;
    let admin = Agent::new(&server, "tok-admin");
    let check = admin.check().await;
    assert_eq!(
        (check["effect"].as_str(), check["reason"].as_str()),
        (Some("allow"), Some("whitelisted"))
    );
    let contractor = Agent::new(&server, "tok-contractor");
    let check = contractor.check().await;
    assert_eq!(
        (check["effect"].as_str(), check["reason"].as_str()),
        (Some("allow"), Some("out_of_scope"))
    );
    let kiosk = Agent::new(&server, "tok-kiosk");
    let check = kiosk.check().await;
    assert_eq!(
        (check["effect"].as_str(), check["reason"].as_str()),
        (Some("deny"), Some("filing_disabled"))
    );
    assert_eq!(check["prompt"]["title"], "禁止卸载 (en)");
    let (status, body) = kiosk.file("please").await;
    assert_eq!(
        (status, body["error"].as_str()),
        (409, Some("filing_not_possible"))
    );
    // Bad input is a 4xx JSON error.
    let unknown = Agent::new(&server, "nope");
    let (status, body) = unknown
        .send(
            unknown
                .http
                .post(format!("{}/api/agent/requests", unknown.base))
                .json(&json!({"reason": "x"})),
        )
        .await;
    assert_eq!((status, body["error"].as_str()), (401, Some("unauthorized")));
    let alice = Agent::new(&server, "tok-alice");
    let (status, body) = alice
        .send(
            alice
                .http
                .post(format!("{}/api/agent/requests", alice.base))
                .body("{oops")
                .header("content-type", "application/json"),
        )
        .await;
    assert_eq!((status, body["error"].as_str()), (400, Some("bad_body")));
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn console_approval_is_written_back_to_dingtalk() {
    let (_dir, mock, server) = running().await;
    let alice = Agent::new(&server, "tok-alice");
    let (_, filed) = alice.file("console please").await;
    let id = filed["id"].as_str().unwrap().to_owned();
    let (status, body) = alice
        .console(
            reqwest::Method::POST,
            &format!("/api/console/requests/{id}/approve"),
        )
        .await;
    assert_eq!(
        (status, body["state"].as_str()),
        (200, Some("approved")),
        "{body}"
    );
    let instance = mock.instance(&alice.external_id(&id).await).unwrap();
    assert_eq!(
        (instance["status"].as_str(), instance["result"].as_str()),
        (Some("COMPLETED"), Some("agree"))
    );
    assert!(alice.poll(&id, "approved").await["grant"].is_object());
    // Approving a revoked request is refused with a typed 409.
    alice
        .console(
            reqwest::Method::POST,
            &format!("/api/console/requests/{id}/revoke"),
        )
        .await;
    let (status, body) = alice
        .console(
            reqwest::Method::POST,
            &format!("/api/console/requests/{id}/approve"),
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (409, Some("illegal_transition"))
    );
    let (status, list) = alice
        .console(reqwest::Method::GET, "/api/console/requests?state=revoked")
        .await;
    assert_eq!((status, list.as_array().map(Vec::len)), (200, Some(1)));
    let (status, workflows) = alice
        .console(reqwest::Method::GET, "/api/console/workflows")
        .await;
    assert_eq!(status, 200);
    assert!(server
        .request_url("wf-dingtalk")
        .unwrap()
        .ends_with(workflows[0]["callback_path"].as_str().unwrap()));
    assert!(
        !workflows.to_string().contains(SECRET) && !workflows.to_string().contains(AES_KEY),
        "secrets stay out"
    );
    let (status, policies) = alice.console(reqwest::Method::GET, "/api/console/policies").await;
    assert_eq!(
        (status, policies[0]["id"].as_str()),
        (200, Some("kiosks")),
        "precedence order"
    );
    let (status, _) = alice
        .send(alice.http.get(format!("{}/api/console/policies", alice.base)))
        .await;
    assert_eq!(status, 401, "a device token is not an admin token");
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_server_restart_in_the_middle_of_a_pending_request() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("restart.sqlite");
    let mock = mock().await;
    let server = start(&mock, &db).await;
    let alice = Agent::new(&server, "tok-alice");
    let (_, filed) = alice.file("restart").await;
    let id = filed["id"].as_str().unwrap().to_owned();
    let external = alice.external_id(&id).await;
    let request_url = server.request_url("wf-dingtalk").unwrap().to_owned();
    server.shutdown().await.unwrap();

    // The approver acts while the server is down; the push fails.
    mock.approve(&external, None, None).unwrap();
    assert!(
        mock.wait_for(Duration::from_secs(5), |m| m
            .deliveries()
            .iter()
            .any(|d| !d.ok && d.result.as_deref() == Some("agree")))
            .await
    );

    // Back up on the same file (and the same Request URL path): reconciliation recovers the
    // decision at the request's first look, 5 minutes after its filing.
    let clock = Arc::new(ManualClock::starting_now());
    let server = start_on_clock(&mock, credentialed_config(&mock, &db), clock.clone()).await;
    assert_eq!(
        server
            .request_url("wf-dingtalk")
            .unwrap()
            .split_once("/dingtalk/")
            .unwrap()
            .1,
        request_url.split_once("/dingtalk/").unwrap().1,
        "the Request URL path (persisted beside the database) survives the restart"
    );
    let alice = Agent::new(&server, "tok-alice");
    assert_eq!(
        alice.poll(&id, "pending").await["state"],
        "pending",
        "nothing lost across the restart"
    );
    clock.advance(Duration::from_secs(5 * 60));
    let report = server.engine.reconcile(Duration::ZERO).await.unwrap();
    assert_eq!(report.changed, 1);
    assert!(alice.poll(&id, "approved").await["grant"].is_object());
    server.shutdown().await.unwrap();
}

/// Workflows on the server's own in-process mock DingTalk.
#[cfg(feature = "demo")]
mod on_the_demo_mock {
    use super::*;
    use crate::support::{device, policies};
    use dingtalk_sdk::crypto::EventCrypto;
    use dingtalk_sdk::mock::Channel;
    use sase_approval::definition::Delivery;
    use sase_policy::ids::{GroupId, PolicyId, WorkflowId};
    use sase_policy::PolicyDocument;

    /// Two workflows on the server's own in-process mock (a demo build's) (no credentials): staff filed through one
    /// form and its Request URL, contractors through another form over Stream mode; each request
    /// is created on its own form and decided through its own delivery path.
    /// The test policies plus one sending the contractors group to workflow `wf-contractors`.
    #[expect(clippy::indexing_slicing, reason = "the test policies have a first")]
    fn two_workflow_policies() -> PolicyDocument {
        let mut doc = policies();
        let mut contractors = doc.policies[0].clone();
        contractors.id = PolicyId::new("contractors");
        contractors.scope.groups = vec![GroupId::new("contractors")];
        contractors.approval.workflow = Some(WorkflowId::new("wf-contractors"));
        doc.policies.push(contractors);
        doc
    }

    /// The attack from the integrity review: two workflows on two DingTalk apps; a request
    /// filed on app B's workflow; a push signed with app A's token and aes_key, to A's Request
    /// URL, saying B's instance was approved. It is answered as DingTalk expects (so it is
    /// not redelivered for ever) and changes nothing.
    #[tokio::test]
    async fn a_push_verified_by_one_app_cannot_approve_another_apps_request() {
        let dir = tempfile::tempdir().unwrap();
        let doc = two_workflow_policies();
        let mut config = config(&dir.path().join("origin.sqlite"));
        config.workflows = vec![
            WorkflowConfig::new("wf-dingtalk"),
            WorkflowConfig::new("wf-contractors"),
        ];
        config.policies = Some(doc);
        config.devices = vec![device("tok-contractor", "carl", "contractors")];
        let server = server::start(config).await.unwrap();
        let carl = Agent::new(&server, "tok-contractor");
        let (status, body) = carl.file("on app B").await;
        assert_eq!(status, 201, "{body}");
        let id = body["id"].as_str().unwrap().to_owned();
        let instance_b = carl.external_id(&id).await;

        // App A's event subscription, as its admin configured it.
        let app_a = server
            .engine
            .workflow(&sase_policy::ids::WorkflowId::new("wf-dingtalk"))
            .and_then(|w| w.dingtalk().cloned())
            .unwrap();
        let crypto = EventCrypto::new(&app_a.token, &app_a.aes_key, &app_a.receiver_id).unwrap();
        let event = json!({
            "EventType": "bpms_instance_change", "eventId": "forged-1",
            "processInstanceId": instance_b, "processCode": "PROC-WF-CONTRACTORS",
            "type": "finish", "result": "agree", "finishTime": 4_102_444_800_000_i64,
        });
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis()
            .to_string();
        let push = crypto
            .encrypt_reply(&event.to_string(), &now, "n0nce123")
            .unwrap();
        let answer = reqwest::Client::new()
            .post(format!(
                "{}?signature={}&timestamp={}&nonce={}",
                server.request_url("wf-dingtalk").unwrap(),
                push.msg_signature,
                push.time_stamp,
                push.nonce
            ))
            .json(&json!({"encrypt": push.encrypt}))
            .send()
            .await
            .unwrap();
        assert_eq!(
            answer.status(),
            200,
            "answered, so DingTalk does not redeliver it"
        );
        let reply: Value = answer.json().await.unwrap();
        assert!(
            reply["encrypt"].is_string(),
            "the encrypted success reply: {reply}"
        );

        let (_, request) = carl
            .console(reqwest::Method::GET, &format!("/api/console/requests/{id}"))
            .await;
        assert_eq!(request["state"], "pending", "{request}");
        assert!(request["grant"].is_null(), "{request}");
        server.shutdown().await.unwrap();
    }

    #[tokio::test]
    async fn several_workflows_each_with_its_own_form_and_delivery() {
        let dir = tempfile::tempdir().unwrap();
        let doc = two_workflow_policies();
        let mut config = config(&dir.path().join("two.sqlite"));
        config.workflows = vec![
            WorkflowConfig::new("wf-dingtalk"),
            WorkflowConfig::new("wf-contractors").delivery(Delivery::Stream),
        ];
        config.policies = Some(doc);
        config.devices = vec![
            device("tok-alice", "alice", "employees"),
            device("tok-contractor", "carl", "contractors"),
        ];
        let server = server::start(config).await.unwrap();
        let staff_url = server.request_url("wf-dingtalk").unwrap().to_owned();
        assert!(staff_url.starts_with(&format!("http://{}/dingtalk/callback/", server.addr)));
        assert_eq!(
            server.request_url("wf-contractors"),
            None,
            "Stream mode has no Request URL"
        );
        let mock = server.mock.as_ref().unwrap();

        let mut filed = Vec::new();
        for (token, code) in [
            ("tok-alice", "PROC-WF-DINGTALK"),
            ("tok-contractor", "PROC-WF-CONTRACTORS"),
        ] {
            let agent = Agent::new(&server, token);
            let (status, body) = agent.file("two forms").await;
            assert_eq!(status, 201, "{body}");
            let id = body["id"].as_str().unwrap().to_owned();
            let external = agent.external_id(&id).await;
            let created = mock
                .journal()
                .into_iter()
                .rev()
                .find(|e| e.method == "POST" && e.path == "/v1.0/workflow/processInstances")
                .unwrap();
            assert_eq!(
                created.body.unwrap()["processCode"],
                code,
                "created on its own form"
            );
            mock.approve(&external, None, None).unwrap();
            filed.push((agent, id, external));
        }
        for (agent, id, _) in &filed {
            assert!(agent.poll(id, "approved").await["grant"].is_object());
        }
        let deliveries = mock.deliveries();
        let channel = |external: &str| {
            deliveries
                .iter()
                .filter(|d| d.process_instance_id.as_deref() == Some(external) && d.ok)
                .map(|d| d.channel)
                .collect::<HashSet<_>>()
        };
        assert_eq!(channel(&filed[0].2), HashSet::from([Channel::Http]));
        assert_eq!(channel(&filed[1].2), HashSet::from([Channel::Stream]));

        let (_, workflows) = filed[0]
            .0
            .console(reqwest::Method::GET, "/api/console/workflows")
            .await;
        let paths: HashSet<_> = workflows
            .as_array()
            .unwrap()
            .iter()
            .map(|w| w["callback_path"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(paths.len(), 2, "one Request URL per workflow: {workflows}");
        server.shutdown().await.unwrap();
    }

    /// Shutdown signals the Stream client and the reconciler, which stop by themselves (an
    /// aborted or hung task would make `shutdown` fail), well within the bound.
    #[tokio::test]
    async fn a_server_with_a_stream_workflow_shuts_down_within_a_bound() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = config(&dir.path().join("stream.sqlite"));
        config.workflows = vec![WorkflowConfig::new("wf-dingtalk").delivery(Delivery::Stream)];
        let mut server = server::start(config).await.unwrap();
        // Kept past the server's shutdown, to see the connection closed.
        let mock = server.mock.take().unwrap();
        let gateway = mock.gateway();
        assert!(
            gateway
                .wait_for(Duration::from_secs(10), |g| g.connection_count() == 1)
                .await,
            "the Stream client connects"
        );
        let started = std::time::Instant::now();
        tokio::time::timeout(Duration::from_secs(5), server.shutdown())
            .await
            .expect("shutdown within 5 s")
            .expect("every task finished by itself");
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(
            gateway
                .wait_for(Duration::from_secs(5), |g| g.connection_count() == 0)
                .await,
            "the Stream connection is closed"
        );
    }
}

/// A workflow without credentials runs on the in-process mock in a demo build; any other
/// build refuses it before binding anything, naming its key.
#[tokio::test]
async fn a_workflow_without_credentials_needs_the_demo_build() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(&dir.path().join("refused.sqlite"));
    config.workflows = vec![WorkflowConfig::new("wf-dingtalk")];
    match server::start(config).await {
        Ok(server) if cfg!(feature = "demo") => server.shutdown().await.unwrap(),
        Err(server::Error::Config(ConfigError::Invalid { key, message, .. })) if !cfg!(feature = "demo") => {
            assert_eq!(key, "workflows[0].dingtalk");
            assert!(message.contains("no DingTalk credentials"), "{message}");
        }
        other => panic!("demo build: {}, got {other:?}", cfg!(feature = "demo")),
    }
}

/// With real DingTalk credentials nothing is made up, whatever the build: no demo device (an
/// agent is refused), no demo policy, no demo admin token; and a database that cannot be
/// opened is named.
#[tokio::test]
async fn real_credentials_get_no_demo_device_policy_or_token() {
    let dir = tempfile::tempdir().unwrap();
    let mock = mock().await;
    let mut config = credentialed_config(&mock, &dir.path().join("real.sqlite"));
    config.devices.clear();
    let server = start_with(&mock, config.clone()).await;
    assert!(server.devices.is_empty(), "{:?}", server.devices);
    let (refused, _) = json(
        reqwest::Client::new()
            .post(format!("http://{}/api/agent/uninstall-check", server.addr))
            .bearer_auth("any-token")
            .json(&json!({})),
    )
    .await;
    assert_eq!(refused, 401);
    server.shutdown().await.unwrap();

    let mut without_policies = config.clone();
    without_policies.policies = None;
    let mut without_token = config.clone();
    without_token.admin_token = None;
    for (key, without) in [("policies", without_policies), ("admin_token", without_token)] {
        match server::start(without).await {
            Err(server::Error::Config(ConfigError::Invalid { key: refused, .. })) => assert_eq!(refused, key),
            other => panic!("{key}: {other:?}"),
        }
    }
    let missing = dir.path().join("no-such-dir").join("approvals.sqlite");
    config.database = missing.display().to_string();
    let e = server::start(config).await.unwrap_err().to_string();
    assert!(e.contains(&missing.display().to_string()), "{e}");
}

/// Pending requests expire by default (7 days, `expire_after_secs`): the reconciler expires
/// an undecided request once the clock passes it and revokes its DingTalk instance.
#[tokio::test]
async fn an_undecided_request_expires_after_seven_days_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let mock = mock().await;
    let mut config = credentialed_config(&mock, &dir.path().join("expiry.sqlite"));
    assert_eq!(config.expire_after_secs, 7 * 24 * 3600, "the default");
    config.reconcile_every_secs = 1;
    let clock = Arc::new(ManualClock::new(1_800_000_000_000));
    let server = start_on_clock(&mock, config, clock.clone()).await;
    let alice = Agent::new(&server, "tok-alice");
    let (status, filed) = alice.file("reinstall").await;
    assert_eq!(status, 201, "{filed}");
    let id = filed["id"].as_str().unwrap().to_owned();
    alice.poll(&id, "pending").await;
    clock.advance(Duration::from_secs(7 * 24 * 3600 + 60));
    alice.poll(&id, "expired").await;
    let external = alice.external_id(&id).await;
    // Expired is recorded first, then the instance revoked: wait for the revocation.
    assert!(
        mock.wait_for(Duration::from_secs(5), |m| m
            .instance(&external)
            .is_some_and(|i| i["status"] == "TERMINATED"))
            .await,
        "the instance was revoked: {:?}",
        mock.instance(&external)
    );
    // The revocation's event, once answered, leaves the request expired.
    let terminated = |d: &dingtalk_sdk::mock::Delivery| {
        d.process_instance_id.as_deref() == Some(external.as_str())
            && d.change.as_deref() == Some("terminate")
            && d.ok
    };
    for _ in 0..500 {
        if mock.deliveries().iter().any(terminated) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        mock.deliveries().iter().any(terminated),
        "{:#?}",
        mock.deliveries()
    );
    assert_eq!(alice.poll(&id, "expired").await["state"], "expired");
    server.shutdown().await.unwrap();
}

/// Each DingTalk app's calls this month, against its configured budget, in the console.
#[tokio::test]
async fn the_console_shows_each_apps_dingtalk_calls_this_month() {
    let dir = tempfile::tempdir().unwrap();
    let mock = mock().await;
    let mut config = credentialed_config(&mock, &dir.path().join("usage.sqlite"));
    let app = config.workflows[0].dingtalk.as_mut().unwrap();
    app.calls_per_month = 1_000;
    app.reconcile_share_percent = 30;
    let server = start_with(&mock, config).await;
    let alice = Agent::new(&server, "tok-alice");
    let (status, _) = alice.file("reinstall").await;
    assert_eq!(status, 201);
    let (status, apps) = alice
        .console(reqwest::Method::GET, "/api/console/dingtalk/usage")
        .await;
    assert_eq!(status, 200, "{apps}");
    let usage = &apps[0]["usage"];
    assert_eq!(apps[0]["client_id"], APP, "{apps}");
    assert_eq!(apps[0]["qps_per_api"], 20);
    assert_eq!(
        (usage["limit"].as_u64(), usage["background_limit"].as_u64()),
        (Some(1_000), Some(300)),
        "{apps}"
    );
    assert_eq!(
        usage["calls"], 2,
        "the start's check of the form and the create; the token is not counted: {apps}"
    );
    assert_eq!(usage["foreground"], 2);
    let (status, _) = Agent::new(&server, "tok-alice")
        .send(reqwest::Client::new().get(format!("http://{}/api/console/dingtalk/usage", server.addr)))
        .await;
    assert_eq!(status, 401, "a device token is not the admin's");
    server.shutdown().await.unwrap();
}

/// A demo on the mock alone makes up a console login as it makes up the admin token: the
/// admin `demo` with a new password at each start (the old one refused after a restart); with
/// an admin token configured, nothing is made up.
#[cfg(feature = "demo")]
#[tokio::test]
async fn a_demo_on_the_mock_makes_up_a_console_login_at_each_start() {
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("demo.sqlite");
    let demo = || {
        let mut c = config(&database);
        c.admin_token = None;
        c.policies = None;
        c
    };
    let login = |base: String, name: String, password: String| async move {
        json(
            reqwest::Client::new()
                .post(format!("{base}/api/console/login"))
                .json(&json!({"name": name, "password": password})),
        )
        .await
        .0
    };
    let first = server::start(demo()).await.unwrap();
    let (name, old) = first.console_login.clone().unwrap();
    assert_eq!(name, "demo");
    assert_eq!(
        login(format!("http://{}", first.addr), name.clone(), old.clone()).await,
        200
    );
    assert!(
        !format!("{first:?}").contains(&old),
        "the password stays out of Debug"
    );
    first.shutdown().await.unwrap();

    let second = server::start(demo()).await.unwrap();
    let (_, new) = second.console_login.clone().unwrap();
    let base = format!("http://{}", second.addr);
    assert_ne!(new, old);
    assert_eq!(
        login(base.clone(), name.clone(), old).await,
        401,
        "the old password"
    );
    assert_eq!(login(base, name, new).await, 200);
    second.shutdown().await.unwrap();

    let configured = server::start(config(&dir.path().join("configured.sqlite")))
        .await
        .unwrap();
    assert!(configured.console_login.is_none(), "an admin token is configured");
    configured.shutdown().await.unwrap();
}
