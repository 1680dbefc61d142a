//! Enrollment by signing in with DingTalk, over real HTTP on 127.0.0.1 against the mock
//! DingTalk's sign-in page: the agent starts, the employee signs in, DingTalk sends the
//! browser back, the employee confirms the device by its name, the agent collects its device
//! token, and the device's policy follows the user's departments. Refused with a clear
//! message: a replayed redirect, a replayed code or confirmation, a device the employee did
//! not confirm, a sign-in of another organisation's account, a stale state.

#![expect(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "a test fails loudly on the first unexpected value"
)]

use dingtalk_sdk::mock::{MockSignIn, OTHER_CORP_ID};
use sase_approval::clock::ManualClock;
use sase_approval_server::Server;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use support::browser::Browser;
use support::{credentialed_config, mock, start_on_clock, with_directory, Agent, APP};

mod support;

use dingtalk_sdk::mock::DEFAULT_CORP_ID as CORP;

/// A browser that does not follow redirects (each hop is looked at).
fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// The agent's side: start, collect.
struct Enrolling {
    http: reqwest::Client,
    base: String,
}

impl Enrolling {
    /// Starts an attempt for `device`: (its secret, the sign-in URL, its state).
    async fn start(&self, device: &str) -> (String, reqwest::Url, String) {
        let (status, started) = support::json(
            self.http
                .post(format!("{}/api/agent/sign-in", self.base))
                .json(&json!({"device_id": device})),
        )
        .await;
        assert_eq!(status, 201, "{started}");
        let url = reqwest::Url::parse(started["sign_in_url"].as_str().unwrap()).unwrap();
        let state = url
            .query_pairs()
            .find(|(k, _)| k == "state")
            .unwrap()
            .1
            .into_owned();
        (started["attempt"].as_str().unwrap().to_owned(), url, state)
    }

    async fn collect(&self, attempt: &str) -> (u16, Value) {
        support::json(
            self.http
                .get(format!("{}/api/agent/sign-in/{attempt}", self.base)),
        )
        .await
    }
}

/// Opens `url` (our redirect page): its status and text.
async fn open(url: &str) -> (u16, String) {
    let page = browser().get(url).send().await.unwrap();
    (page.status().as_u16(), page.text().await.unwrap())
}

/// Answers the confirmation form on our page `page` (after the sign-in) with `decision`
/// (`enroll` or `cancel`), as the browser posts it: the answer's status and text.
async fn confirm(base: &str, page: &str, decision: &str) -> (u16, String) {
    let secret = page
        .split("name=\"confirm\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap();
    let answer = browser()
        .post(format!("{base}/dingtalk/sign-in"))
        .form(&[("confirm", secret), ("decision", decision)])
        .send()
        .await
        .unwrap();
    (answer.status().as_u16(), answer.text().await.unwrap())
}

/// The test configuration following the mock's directory, with sign-in
/// ([`with_directory`]), started on `clock`.
async fn server(
    mock: &dingtalk_sdk::mock::MockDingTalk,
    dir: &std::path::Path,
    clock: Arc<ManualClock>,
) -> (Server, String) {
    server_with(mock, dir, clock, 1000).await
}

/// [`server`] letting `max_waiting` sign-ins wait at once.
async fn server_with(
    mock: &dingtalk_sdk::mock::MockDingTalk,
    dir: &std::path::Path,
    clock: Arc<ManualClock>,
    max_waiting: usize,
) -> (Server, String) {
    let mut config = credentialed_config(mock, &dir.join("s.sqlite"));
    with_directory(&mut config, mock);
    if let Some(directory) = config.directory.as_mut() {
        directory.max_waiting_sign_ins = max_waiting;
    }
    let server: Server = start_on_clock(mock, config, clock).await;
    let base = format!("http://{}", server.addr);
    (server, base)
}

#[tokio::test]
async fn an_employee_enrolls_a_device_by_signing_in_with_dingtalk() {
    let mock = mock().await;
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::starting_now());
    let (server, base) = server(&mock, dir.path(), clock.clone()).await;
    let agent = Enrolling {
        http: reqwest::Client::new(),
        base: base.clone(),
    };

    // The agent starts; the sign-in URL is DingTalk's (here the mock's) for our app and corp.
    let (attempt, url, state) = agent.start("LAPTOP-NEW").await;
    let query: Vec<(String, String)> = url.query_pairs().into_owned().collect();
    for (key, value) in [
        ("client_id", APP.to_owned()),
        ("response_type", "code".to_owned()),
        ("scope", "openid corpid".to_owned()),
        ("redirect_uri", format!("{base}/dingtalk/sign-in")),
        ("corpId", CORP.to_owned()),
    ] {
        assert!(
            query.contains(&(key.to_owned(), value.clone())),
            "{key}={value}: {url}"
        );
    }
    assert_eq!(agent.collect(&attempt).await.0, 202, "waiting");

    // The employee opens it and signs in as alice: the mock's page, its form, the 303 back.
    let page = browser().get(url.clone()).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("id=\"user-alice\""));
    let consent = browser()
        .post(format!("{}/oauth2/auth/consent", mock.base_url()))
        .form(&[
            ("client_id", APP),
            ("redirect_uri", &format!("{base}/dingtalk/sign-in")),
            ("state", &state),
            ("user_id", "alice"),
            ("corp_id", CORP),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(consent.status(), 303);
    let back = consent.headers()["location"].to_str().unwrap().to_owned();
    assert!(back.starts_with(&format!("{base}/dingtalk/sign-in?")), "{back}");
    let (status, page) = open(&back).await;
    assert_eq!(status, 200, "{page}");
    assert!(
        page.contains("Signed in as Alice (alice). Enroll the device <strong>LAPTOP-NEW</strong> as yours?"),
        "{page}"
    );
    // Signed in is not enrolled: the employee confirms the device by its name first (else a
    // link sent to them would enroll the sender's device as theirs).
    assert_eq!(
        agent.collect(&attempt).await.0,
        202,
        "waiting for the confirmation"
    );
    let (status, text) = confirm(&base, &page, "enroll").await;
    assert_eq!(status, 200, "{text}");
    assert!(
        text.contains("The device LAPTOP-NEW is enrolled as Alice&#39;s (alice)")
            || text.contains("The device LAPTOP-NEW is enrolled as Alice's (alice)"),
        "{text}"
    );
    // The form once only.
    let (status, text) = confirm(&base, &page, "enroll").await;
    assert_eq!(status, 403, "{text}");
    assert!(text.contains("not valid or was used already"), "{text}");

    // The agent collects its token (once) and the grant keys.
    let (status, enrolled) = agent.collect(&attempt).await;
    assert_eq!(status, 201, "{enrolled}");
    assert_eq!(
        (
            &enrolled["device_id"],
            &enrolled["user_id"],
            &enrolled["enrolled_by"]
        ),
        (&json!("LAPTOP-NEW"), &json!("alice"), &json!("dingtalk_sign_in")),
        "{enrolled}"
    );
    assert!(!enrolled["grant_keys"].as_array().unwrap().is_empty());
    assert_eq!(agent.collect(&attempt).await.0, 404, "collected once");
    let token: &'static str = Box::leak(
        enrolled["device_token"]
            .as_str()
            .unwrap()
            .to_owned()
            .into_boxed_str(),
    );
    // Alice is in Platform, under Engineering: the policy on Engineering protects the device.
    let device = Agent::new(&server, token);
    assert_eq!(device.check().await["effect"], "require_approval");

    // The same redirect again (a replayed link): refused, nothing enrolled.
    let (status, text) = open(&back).await;
    assert_eq!(status, 403, "{text}");
    assert!(text.contains("not valid or was used already"), "{text}");

    // Alice's code again, with a fresh attempt's state: DingTalk refuses the used code.
    let (attempt, _, state) = agent.start("LAPTOP-REPLAY").await;
    let code = reqwest::Url::parse(&back)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "authCode")
        .unwrap()
        .1
        .into_owned();
    let (status, text) = open(&format!("{base}/dingtalk/sign-in?authCode={code}&state={state}")).await;
    assert_eq!(status, 403, "{text}");
    assert!(text.contains("DingTalk refused the sign-in code"), "{text}");
    let (status, refused) = agent.collect(&attempt).await;
    assert_eq!(
        (status, &refused["error"]),
        (403, &json!("sign_in_refused")),
        "{refused}"
    );

    // Bob signs in with a link someone else started, sees a device that is not his, and
    // cancels: nothing is enrolled, the waiting agent is told so.
    let (attempt, _, state) = agent.start("EVE-PC").await;
    let issued = mock
        .sign_in_code(MockSignIn::new(APP, "bob", format!("{base}/dingtalk/sign-in")).state(state))
        .unwrap();
    let (status, page) = open(&issued.location).await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("<strong>EVE-PC</strong>"), "{page}");
    let (status, text) = confirm(&base, &page, "cancel").await;
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("The device was not enrolled"), "{text}");
    let (status, refused) = agent.collect(&attempt).await;
    assert_eq!(
        (status, &refused["error"]),
        (403, &json!("sign_in_refused")),
        "{refused}"
    );
    assert_eq!(
        confirm(&base, &page, "enroll").await.0,
        403,
        "and cannot be confirmed after"
    );

    // A confirmation after the attempt's ten minutes: refused as expired.
    let (attempt, _, state) = agent.start("LAPTOP-SLOW").await;
    let issued = mock
        .sign_in_code(MockSignIn::new(APP, "bob", format!("{base}/dingtalk/sign-in")).state(state))
        .unwrap();
    let (_, page) = open(&issued.location).await;
    clock.advance(Duration::from_secs(11 * 60));
    let (status, text) = confirm(&base, &page, "enroll").await;
    assert_eq!(status, 403, "{text}");
    assert!(text.contains("expired"), "{text}");
    assert_eq!(agent.collect(&attempt).await.0, 403, "refused: expired");

    // Mallory, of another organisation, signs in: refused, saying so.
    let (attempt, _, state) = agent.start("LAPTOP-MALLORY").await;
    let issued = mock
        .sign_in_code(
            MockSignIn::new(APP, "mallory", format!("{base}/dingtalk/sign-in"))
                .state(state)
                .corp_id(OTHER_CORP_ID),
        )
        .unwrap();
    let (status, text) = open(&issued.location).await;
    assert_eq!(status, 403, "{text}");
    assert!(text.contains("another organisation"), "{text}");
    let (status, refused) = agent.collect(&attempt).await;
    assert_eq!(status, 403, "{refused}");
    assert!(
        refused["message"].as_str().unwrap().contains(OTHER_CORP_ID),
        "{refused}"
    );

    // A state older than the attempt's ten minutes: refused as expired.
    let (attempt, _, state) = agent.start("LAPTOP-LATE").await;
    clock.advance(Duration::from_secs(11 * 60));
    let issued = mock
        .sign_in_code(MockSignIn::new(APP, "bob", format!("{base}/dingtalk/sign-in")).state(state))
        .unwrap();
    let (status, text) = open(&issued.location).await;
    assert_eq!(status, 403, "{text}");
    assert!(text.contains("expired"), "{text}");
    assert_eq!(agent.collect(&attempt).await.0, 403);

    // The employee declines on DingTalk's page: the redirect has no code; the waiting agent
    // learns so at once, not when the attempt expires.
    let (attempt, _, state) = agent.start("LAPTOP-DECLINED").await;
    let (status, text) = open(&format!(
        "{base}/dingtalk/sign-in?error=access_denied&state={state}"
    ))
    .await;
    assert_eq!(status, 403, "{text}");
    assert!(text.contains("access_denied"), "{text}");
    let (status, refused) = agent.collect(&attempt).await;
    assert_eq!(
        (status, &refused["error"]),
        (403, &json!("sign_in_refused")),
        "{refused}"
    );

    // A state never issued: refused.
    let (status, text) = open(&format!("{base}/dingtalk/sign-in?authCode=x&state=forged")).await;
    assert_eq!(status, 403, "{text}");
    server.shutdown().await.unwrap();
}

/// The employee's side in a real browser: the mock's sign-in page, a click, and our page
/// saying who signed in; the agent then collects its token.
#[tokio::test]
async fn an_employee_signs_in_in_the_browser() {
    let Some(browser) = Browser::start("sign_in::an_employee_signs_in_in_the_browser").await else {
        return;
    };
    let mock = mock().await;
    let dir = tempfile::tempdir().unwrap();
    let (server, base) = server(&mock, dir.path(), Arc::new(ManualClock::starting_now())).await;
    let agent = Enrolling {
        http: reqwest::Client::new(),
        base: base.clone(),
    };
    let (attempt, url, _) = agent.start("LAPTOP-BROWSER").await;
    browser.goto(url.as_str()).await;
    browser.find("#user-alice").await.click().await.unwrap();
    browser.wait_for_path("/dingtalk/sign-in").await;
    browser.wait_for_text("main", "Signed in as Alice (alice)").await;
    browser.assert_no_errors("sign-in").await;
    browser.assert_labelled("sign-in").await;
    browser.shot("sign-in").await;
    assert_eq!(
        agent.collect(&attempt).await.0,
        202,
        "not before the confirmation"
    );
    browser.find("#enroll").await.click().await.unwrap();
    browser
        .wait_for_text("main", "The device LAPTOP-BROWSER is enrolled")
        .await;
    browser.assert_no_errors("sign-in confirmed").await;
    browser.shot("sign-in-enrolled").await;
    let (status, enrolled) = agent.collect(&attempt).await;
    assert_eq!(
        (status, &enrolled["user_id"]),
        (201, &json!("alice")),
        "{enrolled}"
    );
    browser.client.close().await.unwrap();
    server.shutdown().await.unwrap();
}

/// The demo (the mock DingTalk alone), as its banner says: the agent simulator enrolls a new
/// device by signing in on the mock's page, then files; approved on the mock, it may
/// uninstall.
#[cfg(feature = "demo")]
#[tokio::test]
async fn the_demo_enrolls_a_device_by_sign_in_with_the_agent_simulator() {
    use tokio::io::AsyncBufReadExt as _;
    let dir = tempfile::tempdir().unwrap();
    let mut config = sase_approval_server::Config::default();
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.database = dir.path().join("demo.sqlite").display().to_string();
    let server = sase_approval_server::start(config).await.unwrap();
    let mock = server.mock.clone().unwrap();
    let base = format!("http://{}", server.addr);
    let mut simulator = tokio::process::Command::new(env!("CARGO_BIN_EXE_agent-simulator"))
        .args(["--server", &base, "--sign-in", "--device", "LAPTOP-2"])
        .args([
            "--locale",
            "en-US",
            "--reason",
            "handing it back",
            "--wait-secs",
            "60",
        ])
        .arg("--used-grants")
        .arg(dir.path().join("used.json"))
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(simulator.stdout.take().unwrap()).lines();
    let mut said = String::new();
    let mut next_until = async |what: &str| {
        while !said.contains(what) {
            let line = lines.next_line().await.unwrap().expect("the simulator goes on");
            said.push_str(&line);
            said.push('\n');
        }
        said.clone()
    };
    let shown = next_until("Sign in with DingTalk to enroll this device: ").await;
    let url = shown
        .split("Sign in with DingTalk to enroll this device: ")
        .nth(1)
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .to_owned();
    let url = reqwest::Url::parse(&url).unwrap();
    let param = |key: &str| url.query_pairs().find(|(k, _)| k == key).unwrap().1.into_owned();
    // The employee signs in as alice on the mock's page.
    let page = browser().get(url.clone()).send().await.unwrap();
    assert!(page.text().await.unwrap().contains("id=\"user-alice\""));
    let consent = browser()
        .post(format!("{}/oauth2/auth/consent", mock.base_url()))
        .form(&[
            ("client_id", param("client_id").as_str()),
            ("redirect_uri", param("redirect_uri").as_str()),
            ("state", param("state").as_str()),
            ("user_id", "alice"),
            ("corp_id", CORP),
        ])
        .send()
        .await
        .unwrap();
    let back = consent.headers()["location"].to_str().unwrap().to_owned();
    let (status, page) = open(&back).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(confirm(&base, &page, "enroll").await.0, 200);

    let said = next_until("Filed request ").await;
    assert!(said.contains("Enrolled device LAPTOP-2 of user alice"), "{said}");
    let id = support::filed_request_id(&said);
    let (_, request) = support::json(
        reqwest::Client::new()
            .get(format!("{base}/api/console/requests/{id}"))
            .bearer_auth(&server.admin_token),
    )
    .await;
    mock.approve(request["external_id"].as_str().unwrap(), None, None)
        .unwrap();
    let said = next_until("uninstall may").await;
    assert!(said.contains("uninstall may proceed."), "{said}");
    assert!(simulator.wait().await.unwrap().success());
    server.shutdown().await.unwrap();
}

/// Anyone may start a sign-in, so how many wait at once is bounded: past the bound a start is
/// refused with 429 until some expire.
#[tokio::test]
async fn a_flood_of_sign_ins_is_bounded() {
    let mock = mock().await;
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::starting_now());
    let (server, base) = server_with(&mock, dir.path(), clock.clone(), 2).await;
    let agent = Enrolling {
        http: reqwest::Client::new(),
        base: base.clone(),
    };
    agent.start("LAPTOP-1").await;
    agent.start("LAPTOP-2").await;
    let (status, headers, body) = support::send(
        reqwest::Client::new()
            .post(format!("{base}/api/agent/sign-in"))
            .json(&json!({"device_id": "LAPTOP-3"})),
    )
    .await;
    assert_eq!(status, 429, "{}", String::from_utf8_lossy(&body));
    assert_eq!(headers["retry-after"], "60");
    clock.advance(Duration::from_secs(11 * 60));
    agent.start("LAPTOP-3").await;
    server.shutdown().await.unwrap();
}
