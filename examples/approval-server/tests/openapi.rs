//! The OpenAPI document at `/api/openapi.json`, over real HTTP on 127.0.0.1: it is OpenAPI
//! 3.1; it lists every route the server answers (each documented operation is routed, not the
//! fallback's 404 or a 405) and only those; each console operation carries its security and
//! the role the role × route matrix says it needs; every schema compiles. Every answer the
//! other tests read is validated against it (tests/support/openapi.rs); here also the
//! unauthenticated answers of every route.

#![expect(
    clippy::unwrap_used,
    reason = "a test fails loudly on the first unexpected value"
)]

use reqwest::Method;
use serde_json::Value;
use std::collections::BTreeSet;
use support::openapi::Document;
use support::{console_routes, credentialed_config, json, mock, start_with, Agent, ADMIN};

mod support;

/// The routes outside the console: the agent API, enrollment, login, health, metrics and the
/// document itself.
const OTHER_ROUTES: [(&str, &str); 10] = [
    ("GET", "/api/openapi.json"),
    ("GET", "/healthz"),
    ("GET", "/metrics"),
    ("POST", "/api/agent/uninstall-check"),
    ("POST", "/api/agent/requests"),
    ("GET", "/api/agent/requests/{id}"),
    ("GET", "/api/agent/grant-key"),
    ("POST", "/api/agent/grants/consume"),
    ("POST", "/api/agent/enroll"),
    ("POST", "/api/console/login"),
];

/// Every (method, route) the document describes.
fn operations(document: &Value) -> BTreeSet<(String, String)> {
    let mut operations = BTreeSet::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            if ["get", "put", "post", "delete", "patch"].contains(&method.as_str()) {
                operations.insert((method.to_ascii_uppercase(), path.clone()));
            }
        }
    }
    operations
}

#[tokio::test]
async fn the_document_describes_every_route_of_the_router_and_only_those() {
    let mock = mock().await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = credentialed_config(&mock, &dir.path().join("openapi.sqlite"));
    config.metrics_token = Some("metrics-token-0123456789abcdef".into());
    let server = start_with(&mock, config).await;
    let agent = Agent::new(&server, "tok-alice");
    let (status, raw) = json(agent.http.get(format!("{}/api/openapi.json", agent.base))).await;
    assert_eq!(status, 200);
    assert!(
        raw["openapi"].as_str().unwrap().starts_with("3.1."),
        "{}",
        raw["openapi"]
    );
    let document = Document::new(raw.clone());
    // For CI's independent check against the OpenAPI 3.1 specification's own schema
    // (openapi-spec-validator, .ci/run): beside the test binaries, in the target directory.
    let exe = std::env::current_exe().unwrap();
    let target = exe.ancestors().nth(3).unwrap();
    std::fs::write(
        target.join("openapi.json"),
        serde_json::to_vec_pretty(&raw).unwrap(),
    )
    .unwrap();

    // The matrix's routes (by their templates) and the others: exactly the document's.
    let request = agent.filed("openapi").await;
    let mut expected: BTreeSet<(String, String)> = OTHER_ROUTES
        .iter()
        .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
        .collect();
    for (method, path, _, role) in console_routes(&request) {
        let path = path.split('?').next().unwrap();
        let template = document
            .template(path)
            .unwrap_or_else(|| panic!("{method} {path}: no route of the document"));
        let operation = &raw["paths"][&template][method.as_str().to_ascii_lowercase()];
        assert!(!operation.is_null(), "{method} {template} is not documented");
        let needs = format!("Needs the `{role}` role.");
        assert!(
            operation["description"].as_str().unwrap().ends_with(&needs),
            "{method} {template}: {} (the matrix: {role})",
            operation["description"]
        );
        let schemes: Vec<&str> = operation["security"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|s| s.as_object().unwrap().keys().map(String::as_str))
            .collect();
        assert_eq!(schemes, ["admin_token", "session"], "{method} {template}");
        expected.insert((method.to_string(), template));
    }
    let documented = operations(&raw);
    let mut ids = BTreeSet::new();
    for (method, template) in &documented {
        let id = raw["paths"][template][method.to_ascii_lowercase()]["operationId"]
            .as_str()
            .unwrap();
        assert!(ids.insert(id), "{method} {template}: operationId `{id}` is taken");
    }
    assert_eq!(
        documented.difference(&expected).collect::<Vec<_>>(),
        Vec::<&(String, String)>::new(),
        "documented, but neither in the role matrix nor among the other routes"
    );
    assert_eq!(
        expected.difference(&documented).collect::<Vec<_>>(),
        Vec::<&(String, String)>::new(),
        "routes the document leaves out"
    );
    assert!(
        raw["paths"].get("/dingtalk/callback/{id}").is_none(),
        "DingTalk's wire format is not ours to describe"
    );

    // Each documented operation is routed: called without credentials, it is answered by its
    // handler or the console's gate (checked against the document like every answer), never
    // by the router's fallback.
    for (method, template) in &documented {
        let path = template
            .replace("{id}", "x")
            .replace("{name}", "x")
            .replace("{action}", "approve");
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let (status, body) = json(
            agent
                .http
                .request(method.clone(), format!("{}{path}", agent.base)),
        )
        .await;
        let fallback = body["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("no route for"));
        assert!(!fallback && status != 405, "{method} {path}: {status} {body}");
    }
    // And what is not documented is not routed.
    let (status, body) = json(
        agent
            .http
            .get(format!("{}/api/console/nothing-here", agent.base))
            .bearer_auth(ADMIN),
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (404, Some("not_found")),
        "{body}"
    );
    server.shutdown().await.unwrap();
}

/// Without a metrics token there is no `/metrics` route, and the document says so.
#[tokio::test]
async fn a_route_the_server_does_not_have_is_not_in_its_document() {
    let mock = mock().await;
    let dir = tempfile::tempdir().unwrap();
    let server = start_with(
        &mock,
        credentialed_config(&mock, &dir.path().join("plain.sqlite")),
    )
    .await;
    let agent = Agent::new(&server, "tok-alice");
    let (_, raw) = json(agent.http.get(format!("{}/api/openapi.json", agent.base))).await;
    assert!(raw["paths"].get("/metrics").is_none(), "{}", raw["paths"]);
    let (status, _) = json(agent.http.get(format!("{}/metrics", agent.base))).await;
    assert_eq!(status, 404);
    server.shutdown().await.unwrap();
}

/// The checker itself: an answer with a property its schema does not name, a status its
/// operation does not list, or a wrong type is refused (so the validation of every other
/// test's answers can fail).
#[tokio::test]
async fn the_checker_refuses_answers_that_do_not_fit() {
    let mock = mock().await;
    let dir = tempfile::tempdir().unwrap();
    let server = start_with(
        &mock,
        credentialed_config(&mock, &dir.path().join("checker.sqlite")),
    )
    .await;
    let agent = Agent::new(&server, "tok-alice");
    let (_, raw) = json(agent.http.get(format!("{}/api/openapi.json", agent.base))).await;
    let document = Document::new(raw);
    let json_type = Some("application/json");
    let (status, keys) = json(agent.http.get(format!("{}/api/agent/grant-key", agent.base))).await;
    let fits = serde_json::to_vec(&keys).unwrap();
    document
        .check(&Method::GET, "/api/agent/grant-key", status, json_type, &fits)
        .unwrap();

    let mut extra = keys.clone();
    extra["surprise"] = Value::Bool(true);
    let refused = document
        .check(
            &Method::GET,
            "/api/agent/grant-key",
            200,
            json_type,
            &serde_json::to_vec(&extra).unwrap(),
        )
        .unwrap_err();
    assert!(refused.contains("surprise"), "{refused}");

    let mut wrong = keys.clone();
    wrong["public_keys"] = Value::String("not a list".into());
    assert!(document
        .check(
            &Method::GET,
            "/api/agent/grant-key",
            200,
            json_type,
            &serde_json::to_vec(&wrong).unwrap()
        )
        .is_err());
    assert!(document
        .check(&Method::GET, "/api/agent/grant-key", 418, json_type, &fits)
        .is_err());
    assert!(document
        .check(
            &Method::GET,
            "/api/agent/grant-key",
            200,
            Some("text/plain"),
            &fits
        )
        .is_err());

    // Nested objects are closed, and a flattened answer (a device: its stored fields, its
    // owner's, its version) is closed as a whole.
    let id = agent.filed("checker").await;
    let (status, request) = agent
        .console(Method::GET, &format!("/api/console/requests/{id}"))
        .await;
    assert_eq!(status, 200, "{request}");
    let mut grown = request.clone();
    grown["history"][0]["surprise"] = Value::Bool(true);
    assert!(document
        .check(
            &Method::GET,
            "/api/console/requests/x",
            200,
            json_type,
            &serde_json::to_vec(&grown).unwrap()
        )
        .is_err());
    let (status, device) = agent.console(Method::GET, "/api/console/devices/dev-alice").await;
    assert_eq!(status, 200, "{device}");
    let path = "/api/console/devices/dev-alice";
    document
        .check(
            &Method::GET,
            path,
            200,
            json_type,
            &serde_json::to_vec(&device).unwrap(),
        )
        .unwrap();
    let mut grown = device.clone();
    grown["surprise"] = Value::Bool(true);
    assert!(document
        .check(
            &Method::GET,
            path,
            200,
            json_type,
            &serde_json::to_vec(&grown).unwrap()
        )
        .is_err());
    let mut missing = device.clone();
    missing.as_object_mut().unwrap().remove("user_id");
    assert!(
        document
            .check(
                &Method::GET,
                path,
                200,
                json_type,
                &serde_json::to_vec(&missing).unwrap()
            )
            .is_err(),
        "a flattened part's required field"
    );
    server.shutdown().await.unwrap();
}
