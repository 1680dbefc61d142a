//! `HttpConsume` against a tiny real HTTP server on 127.0.0.1 (a `TcpListener` thread answering
//! canned responses): the request it sends, and the contract's answers mapped to outcomes.

#![expect(
    clippy::unwrap_used,
    reason = "a test fails loudly on the first unexpected value"
)]

use sase_agent::{
    Action, AgentConfig, AgentError, AgentVerifier, Authorization, Consume as _, ConsumeOutcome, DeviceId,
    HttpConsume, SignedGrant, UserId,
};
use sase_policy::ids::GrantId;
use sase_policy::{Grant, GrantSigner};
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::thread::JoinHandle;
use std::time::Duration;

const NOW: i64 = 1_700_000_000_000;

fn signer() -> GrantSigner {
    GrantSigner::from_bytes(&[21; 32])
}

fn grant(id: &str) -> SignedGrant {
    signer().sign(Grant {
        id: GrantId::new(id),
        user: UserId::new("alice"),
        device: DeviceId::new("laptop-1"),
        action: Action::Uninstall,
        issued_at_ms: NOW,
        expires_at_ms: NOW + 900_000,
        request_id: None,
    })
}

/// One request as the server saw it.
#[derive(Debug)]
struct Seen {
    request_line: String,
    headers: Vec<(String, String)>,
    body: serde_json::Value,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn read_request(stream: &TcpStream) -> Seen {
    let mut reader = BufReader::new(stream);
    let mut request_line = String::new();
    reader.read_line(&mut request_line).unwrap();
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':').unwrap();
        headers.push((name.trim().to_owned(), value.trim().to_owned()));
    }
    let length: usize = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .map_or(0, |(_, v)| v.parse().unwrap());
    let mut body = vec![0; length];
    reader.read_exact(&mut body).unwrap();
    Seen {
        request_line: request_line.trim_end().to_owned(),
        headers,
        body: serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
    }
}

/// Answers one connection with `status` and `body`, and hands back what it was sent.
fn serve_once(status: &'static str, body: &'static str) -> (String, JoinHandle<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let handle = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let seen = read_request(&stream);
        write!(
            stream,
            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        stream.flush().unwrap();
        seen
    });
    (base, handle)
}

fn consume_against(status: &'static str, body: &'static str) -> (ConsumeOutcome, Seen) {
    let (base, server) = serve_once(status, body);
    let outcome = HttpConsume::new(&base, "device-token-123")
        .unwrap()
        .consume(&grant("g-1"));
    (outcome, server.join().unwrap())
}

#[test]
fn the_request_follows_the_contract() {
    let (outcome, seen) = consume_against("200 OK", r#"{"consumed": true, "grant_id": "g-1"}"#);
    assert_eq!(outcome, ConsumeOutcome::Consumed);
    assert_eq!(seen.request_line, "POST /api/agent/grants/consume HTTP/1.1");
    assert_eq!(seen.header("authorization"), Some("Bearer device-token-123"));
    assert!(seen
        .header("content-type")
        .is_some_and(|t| t.starts_with("application/json")));
    let sent: SignedGrant = serde_json::from_value(seen.body["grant"].clone()).unwrap();
    assert_eq!(
        sent,
        grant("g-1"),
        "the grant, as serde serializes it, under `grant`"
    );
}

#[test]
fn a_trailing_slash_in_the_base_url_is_fine() {
    let (base, server) = serve_once("200 OK", r#"{"consumed": true}"#);
    let outcome = HttpConsume::new(format!("{base}/"), "t")
        .unwrap()
        .consume(&grant("g-1"));
    assert_eq!(outcome, ConsumeOutcome::Consumed);
    assert_eq!(
        server.join().unwrap().request_line,
        "POST /api/agent/grants/consume HTTP/1.1"
    );
}

#[test]
fn refusals_carry_the_servers_code() {
    for code in [
        "grant_revoked",
        "grant_used",
        "grant_expired",
        "grant_foreign",
        "grant_unknown",
    ] {
        let body: &'static str =
            Box::leak(format!(r#"{{"error": "{code}", "message": "no"}}"#).into_boxed_str());
        let (outcome, _) = consume_against("409 Conflict", body);
        assert_eq!(outcome, ConsumeOutcome::Refused(code.into()));
    }
    let (outcome, _) = consume_against("410 Gone", r#"{"error": "grant_expired"}"#);
    assert_eq!(outcome, ConsumeOutcome::Refused("grant_expired".into()));
    let (outcome, _) = consume_against(
        "401 Unauthorized",
        r#"{"error": "unauthorized", "message": "bad token"}"#,
    );
    assert_eq!(outcome, ConsumeOutcome::Refused("unauthorized".into()));
    let (outcome, _) = consume_against("404 Not Found", "{}");
    assert_eq!(outcome, ConsumeOutcome::Refused("http_404".into()));
}

#[test]
fn server_errors_and_odd_answers_are_unreachable() {
    let (outcome, _) = consume_against("503 Service Unavailable", r#"{"error": "overloaded"}"#);
    assert_eq!(outcome, ConsumeOutcome::Unreachable("HTTP 503".into()));
    let (outcome, _) = consume_against("500 Internal Server Error", "oops");
    assert_eq!(outcome, ConsumeOutcome::Unreachable("HTTP 500".into()));
    // A 200 that does not say `consumed: true` for this grant is not a consumption.
    for body in [
        "not json",
        r#"{"consumed": false}"#,
        r#"{"consumed": true, "grant_id": "g-other"}"#,
    ] {
        let body: &'static str = Box::leak(body.to_owned().into_boxed_str());
        let (outcome, _) = consume_against("200 OK", body);
        assert!(
            matches!(outcome, ConsumeOutcome::Unreachable(_)),
            "{body}: {outcome:?}"
        );
    }
}

#[test]
fn a_closed_port_is_unreachable() {
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let outcome = HttpConsume::new(format!("http://127.0.0.1:{port}"), "t")
        .unwrap()
        .consume(&grant("g-1"));
    assert!(matches!(outcome, ConsumeOutcome::Unreachable(_)), "{outcome:?}");
}

#[test]
fn a_server_that_never_answers_times_out_as_unreachable() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
    let server = std::thread::spawn(move || {
        // Accept, read, and then say nothing until the test is over.
        let (stream, _) = listener.accept().unwrap();
        let _seen = read_request(&stream);
        let _ = stop_rx.recv();
    });
    let started = std::time::Instant::now();
    let outcome = HttpConsume::new(base, "t")
        .unwrap()
        .timeout(Duration::from_millis(300))
        .consume(&grant("g-1"));
    let took = started.elapsed();
    stop_tx.send(()).unwrap();
    server.join().unwrap();
    assert!(matches!(outcome, ConsumeOutcome::Unreachable(_)), "{outcome:?}");
    assert!(took < Duration::from_secs(3), "the timeout applies: {took:?}");
}

#[test]
fn debug_redacts_the_device_token() {
    let consume = HttpConsume::new("http://127.0.0.1:8080", "s3cret-device-token").unwrap();
    let debug = format!("{consume:?}");
    assert!(!debug.contains("s3cret"), "{debug}");
    assert!(debug.contains("redacted"), "{debug}");
    assert!(debug.contains("127.0.0.1:8080"), "{debug}");
}

#[test]
fn a_base_url_that_is_not_http_is_a_config_error() {
    for bad in ["127.0.0.1:8080", "ftp://host", "http://bad host/"] {
        assert!(
            matches!(HttpConsume::new(bad, "t"), Err(AgentError::Config { .. })),
            "{bad}"
        );
    }
}

#[test]
fn end_to_end_a_revoked_grant_over_http_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut agent = AgentVerifier::new(AgentConfig::new(
        vec![signer().verifier()],
        UserId::new("alice"),
        DeviceId::new("laptop-1"),
        dir.path().join("used.json"),
    ))
    .unwrap();
    let (base, server) = serve_once(
        "409 Conflict",
        r#"{"error": "grant_revoked", "message": "revoked"}"#,
    );
    let consume = HttpConsume::new(&base, "t").unwrap();
    assert_eq!(
        agent.authorize(&grant("g-1"), Action::Uninstall, NOW, &consume),
        Err(AgentError::Refused {
            reason: "grant_revoked".into()
        })
    );
    server.join().unwrap();

    let (base, server) = serve_once("200 OK", r#"{"consumed": true, "grant_id": "g-2"}"#);
    let consume = HttpConsume::new(&base, "t").unwrap();
    assert_eq!(
        agent.authorize(&grant("g-2"), Action::Uninstall, NOW, &consume),
        Ok(Authorization::Online)
    );
    server.join().unwrap();
}
