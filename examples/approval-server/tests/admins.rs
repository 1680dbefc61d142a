//! Named admins with roles, over real HTTP on 127.0.0.1: every console route refuses the
//! unauthenticated and allows exactly the roles it should (viewer reads; approver also decides
//! requests; admin also configures); a session is a cookie whose state-changing requests need
//! its CSRF token, ends at logout, at its expiry (a moved clock) and when the password changes;
//! personal API tokens authenticate automation; every decision names the admin who made it.

#![expect(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "a test fails loudly on the first unexpected value"
)]

use reqwest::header::{COOKIE, SET_COOKIE};
use reqwest::Method;
use sase_approval::clock::ManualClock;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use support::{console_routes, credentialed_config, json, mock, start_on_clock, Agent, ADMIN};

mod support;

/// A caller of the console: the admin token, an admin's API token, or a session.
#[derive(Clone)]
enum Auth {
    None,
    Bearer(String),
    Session { cookie: String, csrf: Option<String> },
}

struct Console {
    http: reqwest::Client,
    base: String,
}

impl Console {
    async fn call(&self, auth: &Auth, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        match auth {
            Auth::None => {}
            Auth::Bearer(token) => req = req.bearer_auth(token),
            Auth::Session { cookie, csrf } => {
                req = req.header(COOKIE, cookie);
                if let Some(csrf) = csrf {
                    req = req.header("x-csrf-token", csrf);
                }
            }
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        json(req).await
    }

    /// Logs `name` in: the session (cookie and CSRF token) and the login's answer.
    async fn login(&self, name: &str, password: &str) -> (Auth, Value) {
        let (status, headers, body) = support::send(
            self.http
                .post(format!("{}/api/console/login", self.base))
                .json(&json!({"name": name, "password": password})),
        )
        .await;
        assert_eq!(status, 200, "{name} logs in");
        let set = headers[SET_COOKIE].to_str().unwrap().to_owned();
        for attribute in ["HttpOnly", "SameSite=Strict", "Path=/"] {
            assert!(set.contains(attribute), "{set}");
        }
        assert!(!set.contains("Secure"), "plain HTTP here: {set}");
        let cookie = set.split(';').next().unwrap().to_owned();
        let body: Value = serde_json::from_slice(&body).unwrap();
        let csrf = body["csrf"].as_str().unwrap().to_owned();
        (
            Auth::Session {
                cookie,
                csrf: Some(csrf),
            },
            body,
        )
    }
}

const PASSWORD: &str = "correct horse battery staple";

fn rank(role: &str) -> u8 {
    match role {
        "viewer" => 1,
        "approver" => 2,
        _ => 3,
    }
}

#[tokio::test]
async fn each_console_route_allows_exactly_its_roles() {
    let mock = mock().await;
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::starting_now());
    let server = start_on_clock(
        &mock,
        credentialed_config(&mock, &dir.path().join("a.sqlite")),
        clock.clone(),
    )
    .await;
    let console = Console {
        http: reqwest::Client::new(),
        base: format!("http://{}", server.addr),
    };
    let root = Auth::Bearer(ADMIN.into());
    let mut tokens = Vec::new();
    for (name, role) in [("vera", "viewer"), ("arno", "approver"), ("ada", "admin")] {
        let (status, created) = console
            .call(
                &root,
                Method::POST,
                "/api/console/admins",
                Some(json!({"name": name, "role": role, "password": PASSWORD})),
            )
            .await;
        assert_eq!(status, 201, "{created}");
        assert!(!created.to_string().contains(PASSWORD), "{created}");
        let (session, _) = console.login(name, PASSWORD).await;
        let (status, token) = console
            .call(
                &session,
                Method::POST,
                "/api/console/me/tokens",
                Some(json!({"label": "matrix"})),
            )
            .await;
        assert_eq!(status, 201, "{token}");
        let token = token["token"].as_str().unwrap().to_owned();
        assert!(token.starts_with("sase_"), "{token}");
        tokens.push((role, Auth::Bearer(token)));
    }

    // A request to decide (rejected by the approver's row; any state will do after that).
    let alice = Agent::new(&server, "tok-alice");
    let request = alice.filed("matrix").await;
    for (method, path, body, needed) in console_routes(&request) {
        let (status, answer) = console
            .call(&Auth::None, method.clone(), &path, body.clone())
            .await;
        assert_eq!(status, 401, "{method} {path} without credentials: {answer}");
        for (role, auth) in &tokens {
            let (status, answer) = console.call(auth, method.clone(), &path, body.clone()).await;
            if rank(role) >= rank(needed) {
                assert!(
                    status != 401 && status != 403,
                    "{role} may {method} {path}: {status} {answer}"
                );
            } else {
                assert_eq!(
                    (status, answer["error"].as_str()),
                    (403, Some("forbidden")),
                    "{role} may not {method} {path}: {answer}"
                );
            }
        }
    }
    let (_, rejected) = console
        .call(
            &root,
            Method::GET,
            &format!("/api/console/requests/{request}"),
            None,
        )
        .await;
    assert_eq!(rejected["state"], "rejected");
    let last = rejected["history"].as_array().unwrap().last().unwrap();
    assert_eq!(last["actor"], "arno", "the decision names its admin: {last}");
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn sessions_need_their_csrf_token_and_end_at_logout_expiry_or_a_new_password() {
    let mock = mock().await;
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::starting_now());
    let server = start_on_clock(
        &mock,
        credentialed_config(&mock, &dir.path().join("s.sqlite")),
        clock.clone(),
    )
    .await;
    let console = Console {
        http: reqwest::Client::new(),
        base: format!("http://{}", server.addr),
    };
    let root = Auth::Bearer(ADMIN.into());
    let (status, _) = console
        .call(
            &root,
            Method::POST,
            "/api/console/admins",
            Some(json!({"name": "ada", "role": "admin", "password": PASSWORD})),
        )
        .await;
    assert_eq!(status, 201);
    let (status, short) = console
        .call(
            &root,
            Method::POST,
            "/api/console/admins",
            Some(json!({"name": "bob", "role": "viewer", "password": "short"})),
        )
        .await;
    assert_eq!(status, 400, "{short}");

    // Wrong password and unknown name: one answer.
    for (name, password) in [("ada", "not the password at all"), ("nobody", PASSWORD)] {
        let (status, answer) = json(
            console
                .http
                .post(format!("{}/api/console/login", console.base))
                .json(&json!({"name": name, "password": password})),
        )
        .await;
        assert_eq!(
            (status, &answer["error"]),
            (401, &json!("login_failed")),
            "{answer}"
        );
    }

    let (session, me) = console.login("ada", PASSWORD).await;
    assert_eq!((&me["name"], &me["role"]), (&json!("ada"), &json!("admin")));
    let Auth::Session { cookie, csrf } = session.clone() else {
        unreachable!()
    };
    let without_csrf = Auth::Session {
        cookie: cookie.clone(),
        csrf: None,
    };
    let wrong_csrf = Auth::Session {
        cookie: cookie.clone(),
        csrf: Some("forged".into()),
    };
    let code = || Some(json!({"user_id": "u"}));
    assert_eq!(
        console
            .call(&without_csrf, Method::GET, "/api/console/me", None)
            .await
            .0,
        200,
        "reads need none"
    );
    for forged in [&without_csrf, &wrong_csrf] {
        let (status, answer) = console
            .call(forged, Method::POST, "/api/console/enrollment-codes", code())
            .await;
        assert_eq!((status, &answer["error"]), (403, &json!("csrf")), "{answer}");
    }
    assert_eq!(
        console
            .call(&session, Method::POST, "/api/console/enrollment-codes", code())
            .await
            .0,
        201
    );
    assert!(csrf.is_some());

    // Logout ends it.
    assert_eq!(
        console
            .call(&session, Method::POST, "/api/console/logout", None)
            .await
            .0,
        204
    );
    assert_eq!(
        console
            .call(&session, Method::GET, "/api/console/me", None)
            .await
            .0,
        401
    );

    // Expiry: eight hours.
    let (session, _) = console.login("ada", PASSWORD).await;
    clock.advance(Duration::from_secs(8 * 3600 - 60));
    assert_eq!(
        console
            .call(&session, Method::GET, "/api/console/me", None)
            .await
            .0,
        200
    );
    clock.advance(Duration::from_secs(120));
    assert_eq!(
        console
            .call(&session, Method::GET, "/api/console/me", None)
            .await
            .0,
        401,
        "expired"
    );

    // A new password ends the admin's sessions; the old one no longer logs in.
    let (session, _) = console.login("ada", PASSWORD).await;
    let (_, admins) = console
        .call(&root, Method::GET, "/api/console/admins", None)
        .await;
    let version = admins
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "ada")
        .unwrap()["version"]
        .clone();
    let new_password = "an entirely new passphrase";
    let (status, changed) = console
        .call(
            &root,
            Method::PUT,
            "/api/console/admins/ada",
            Some(json!({"password": new_password, "version": version})),
        )
        .await;
    assert_eq!(status, 200, "{changed}");
    assert_eq!(
        console
            .call(&session, Method::GET, "/api/console/me", None)
            .await
            .0,
        401
    );
    let (status, _) = json(
        console
            .http
            .post(format!("{}/api/console/login", console.base))
            .json(&json!({"name": "ada", "password": PASSWORD})),
    )
    .await;
    assert_eq!(status, 401);
    console.login("ada", new_password).await;

    // A revoked token is refused at once.
    let (session, _) = console.login("ada", new_password).await;
    let (_, token) = console
        .call(
            &session,
            Method::POST,
            "/api/console/me/tokens",
            Some(json!({"label": "ci"})),
        )
        .await;
    let bearer = Auth::Bearer(token["token"].as_str().unwrap().to_owned());
    assert_eq!(
        console
            .call(&bearer, Method::GET, "/api/console/me", None)
            .await
            .0,
        200
    );
    let (_, listed) = console
        .call(&session, Method::GET, "/api/console/me/tokens", None)
        .await;
    assert!(
        !listed.to_string().contains(token["token"].as_str().unwrap()),
        "{listed}"
    );
    let id = token["id"].as_str().unwrap();
    assert_eq!(
        console
            .call(
                &session,
                Method::DELETE,
                &format!("/api/console/me/tokens/{id}"),
                None
            )
            .await
            .0,
        204
    );
    assert_eq!(
        console
            .call(&bearer, Method::GET, "/api/console/me", None)
            .await
            .0,
        401
    );
    server.shutdown().await.unwrap();
}

/// The first admin comes from a one-time command (the real binary), then logs in to a
/// server on that database; a second run is refused.
#[tokio::test]
async fn the_first_admin_is_created_by_a_one_time_command() {
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("boot.sqlite");
    // A production configuration: the command runs in builds without the demo too.
    let config = dir.path().join("server.toml");
    std::fs::write(&config, support::production_toml()).unwrap();
    let run = |name: &str, stdin: &str| {
        use std::io::Write as _;
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_approval-server"))
            .args([
                "--config",
                &config.display().to_string(),
                "--database",
                &database.display().to_string(),
                "--create-admin",
                name,
            ])
            .env_remove("SASE_ADMIN_PASSWORD")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
        child.wait_with_output().unwrap()
    };
    let short = run("ada", "short\n");
    assert_eq!(short.status.code(), Some(1), "{short:?}");
    assert!(
        String::from_utf8_lossy(&short.stderr).contains("password"),
        "{short:?}"
    );
    let created = run("ada", &format!("{PASSWORD}\n"));
    assert!(created.status.success(), "{created:?}");
    assert!(String::from_utf8_lossy(&created.stdout).contains("Admin `ada` created"));
    let again = run("eve", &format!("{PASSWORD}\n"));
    assert_eq!(again.status.code(), Some(1), "only the first: {again:?}");

    let mock = mock().await;
    let server = support::start_with(&mock, credentialed_config(&mock, &database)).await;
    let console = Console {
        http: reqwest::Client::new(),
        base: format!("http://{}", server.addr),
    };
    let (session, me) = console.login("ada", PASSWORD).await;
    assert_eq!(me["role"], "admin");
    let (status, admins) = console
        .call(&session, Method::GET, "/api/console/admins", None)
        .await;
    assert_eq!(
        (status, admins.as_array().map(Vec::len)),
        (200, Some(1)),
        "{admins}"
    );
    server.shutdown().await.unwrap();
}

/// Ten failed logins for a name in fifteen minutes: that name is refused (429, Retry-After),
/// even with the right password, until the window ends; an unknown name counts the same;
/// other names log in meanwhile.
#[tokio::test]
async fn failed_logins_are_limited_per_name() {
    let mock = mock().await;
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(1_800_000_000_000));
    let server = start_on_clock(
        &mock,
        credentialed_config(&mock, &dir.path().join("t.sqlite")),
        clock.clone(),
    )
    .await;
    let console = Console {
        http: reqwest::Client::new(),
        base: format!("http://{}", server.addr),
    };
    for name in ["ada", "bob"] {
        let (status, _) = console
            .call(
                &Auth::Bearer(ADMIN.into()),
                Method::POST,
                "/api/console/admins",
                Some(json!({"name": name, "role": "viewer", "password": PASSWORD})),
            )
            .await;
        assert_eq!(status, 201);
    }
    let attempt = |name: &'static str, password: &'static str| {
        support::send(
            console
                .http
                .post(format!("{}/api/console/login", console.base))
                .json(&json!({"name": name, "password": password})),
        )
    };
    for name in ["ada", "nobody"] {
        for _ in 0..10 {
            assert_eq!(attempt(name, "a wrong password!").await.0, 401);
        }
        let (status, headers, _) = attempt(name, PASSWORD).await;
        assert_eq!(status, 429, "{name}");
        let retry: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
        assert!((1..=900).contains(&retry), "{retry}");
    }
    assert_eq!(attempt("bob", PASSWORD).await.0, 200, "another name");
    clock.advance(Duration::from_secs(15 * 60));
    assert_eq!(attempt("ada", PASSWORD).await.0, 200, "the next window");
    server.shutdown().await.unwrap();
}
