//! The axum callback route over real HTTP on 127.0.0.1: a check_url round trip, an approval
//! event, and tampered or malformed pushes rejected with a 4xx JSON error and no panic.

#![expect(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "tests fail loudly on unexpected values"
)]

pub mod support;

use dingtalk_sdk::callback::{axum::callback_route, CallbackHandler};
use dingtalk_sdk::crypto::{EncryptedMessage, EventCrypto};
use dingtalk_sdk::event::Event;
use serde_json::Value;
use std::time::Duration;
use tokio::sync::mpsc;

use support::{crypto, now_ms, AES_KEY, TOKEN};

struct Server {
    url: String,
    events: mpsc::Receiver<Event>,
}

async fn start(handler: CallbackHandler, fail_sink: bool) -> Server {
    let (tx, events) = mpsc::channel(16);
    let route = callback_route(handler, move |event| {
        let tx = tx.clone();
        async move {
            if fail_sink {
                return Err("queue full".to_owned());
            }
            tx.send(event).await.map_err(|e| e.to_string())
        }
    });
    let app = axum::Router::new().route("/dingtalk/events", route);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/dingtalk/events", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Server { url, events }
}

/// What DingTalk sends: query `signature`, `timestamp`, `nonce`; body `{"encrypt": …}`.
async fn push(url: &str, sealed: &EncryptedMessage) -> reqwest::Response {
    reqwest::Client::new()
        .post(url)
        .query(&[
            ("signature", &sealed.msg_signature),
            ("timestamp", &sealed.time_stamp),
            ("nonce", &sealed.nonce),
        ])
        .json(&serde_json::json!({ "encrypt": sealed.encrypt }))
        .send()
        .await
        .unwrap()
}

fn vector(id: &str) -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/callback-crypto.json");
    let v: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    v["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == id)
        .unwrap()
        .clone()
}

#[tokio::test]
async fn check_url_round_trip_with_the_recorded_vector() {
    let case = vector("check_url_appkey");
    let mut server = start(
        CallbackHandler::builder(crypto()).replay_window(None).build(),
        false,
    )
    .await;
    let sealed = EncryptedMessage {
        msg_signature: case["msg_signature"].as_str().unwrap().into(),
        time_stamp: case["timestamp"].as_str().unwrap().into(),
        nonce: case["nonce"].as_str().unwrap().into(),
        encrypt: case["encrypt"].as_str().unwrap().into(),
    };
    let res = push(&server.url, &sealed).await;
    assert_eq!(res.status(), 200);
    let reply: EncryptedMessage = res.json().await.unwrap();
    // The reply echoes the request's timestamp and nonce and decrypts to `success`.
    assert_eq!(
        (reply.time_stamp.as_str(), reply.nonce.as_str()),
        (sealed.time_stamp.as_str(), sealed.nonce.as_str())
    );
    let text = crypto().verify_and_decrypt(
        &reply.msg_signature,
        &reply.time_stamp,
        &reply.nonce,
        &reply.encrypt,
    );
    assert_eq!(text.unwrap(), "success");
    assert!(matches!(server.events.recv().await, Some(Event::CheckUrl(_))));
}

#[tokio::test]
async fn an_approval_event_with_a_fresh_timestamp_reaches_the_sink() {
    let mut server = start(CallbackHandler::builder(crypto()).build(), false).await;
    let plaintext = vector("bpms_instance_finish_agree")["plaintext"]
        .as_str()
        .unwrap()
        .to_owned();
    let sealed = crypto().encrypt_reply(&plaintext, &now_ms(), "IwNJQp61").unwrap();
    let res = push(&server.url, &sealed).await;
    assert_eq!(res.status(), 200);
    let Some(Event::InstanceChange(change)) = server.events.recv().await else {
        panic!("no event")
    };
    assert!(change.is_approved());
    assert_eq!(
        change.meta.event_id.as_deref(),
        Some("5b0e3a5c0d9a4e57a1f4f0d2e7c6b911")
    );
}

#[tokio::test]
async fn tampered_stale_and_malformed_pushes_get_4xx_json_and_never_reach_the_sink() {
    let mut server = start(
        CallbackHandler::builder(crypto())
            .replay_window(Some(Duration::from_secs(60)))
            .max_body_bytes(4096)
            .build(),
        false,
    )
    .await;
    let good = crypto()
        .encrypt_reply(r#"{"EventType":"check_url"}"#, &now_ms(), "nonce123")
        .unwrap();

    let mut tampered = good.clone();
    tampered.encrypt.replace_range(
        0..1,
        if tampered.encrypt.starts_with('A') {
            "B"
        } else {
            "A"
        },
    );
    let mut stale = crypto()
        .encrypt_reply(r#"{"EventType":"check_url"}"#, "1741699800123", "n")
        .unwrap();
    stale.msg_signature = crypto().sign(&stale.time_stamp, &stale.nonce, &stale.encrypt);
    let mut seconds = good.clone();
    seconds.time_stamp = "17416998001".into();
    // Correctly signed, but encrypted for another app, not a ciphertext, or not an event.
    let other_receiver = EventCrypto::new(TOKEN, AES_KEY, "dingotherapp")
        .unwrap()
        .encrypt_reply(r#"{"EventType":"check_url"}"#, &now_ms(), "n")
        .unwrap();
    let mut garbage = good.clone();
    garbage.encrypt = "AAAA".into();
    garbage.msg_signature = crypto().sign(&garbage.time_stamp, &garbage.nonce, &garbage.encrypt);
    let not_json = crypto().encrypt_reply("not json", &now_ms(), "n").unwrap();

    for (sealed, status, code) in [
        (&tampered, 401, "bad_signature"),
        (&stale, 401, "stale_timestamp"),
        (&seconds, 400, "bad_timestamp"),
        (&other_receiver, 400, "receiver_id_mismatch"),
        (&garbage, 400, "bad_payload"),
        (&not_json, 400, "bad_event"),
    ] {
        let res = push(&server.url, sealed).await;
        assert_eq!(res.status(), status, "{code}");
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["error"], code);
        assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));
    }

    let client = reqwest::Client::new();
    let q = [
        ("signature", good.msg_signature.as_str()),
        ("timestamp", &good.time_stamp),
        ("nonce", &good.nonce),
    ];
    type Case<'a> = (&'a [(&'a str, &'a str)], Vec<u8>, u16, &'a str);
    let cases: [Case<'_>; 4] = [
        (
            &q[..2],
            format!(r#"{{"encrypt":"{}"}}"#, good.encrypt).into_bytes(),
            400,
            "missing_parameter",
        ),
        (&q, b"not json".to_vec(), 400, "bad_body"),
        (&q, br#"{"encrypt":42}"#.to_vec(), 400, "bad_body"),
        (&q, vec![b' '; 10_000], 413, "body_too_large"),
    ];
    for (query, body, status, code) in cases {
        let res = client
            .post(&server.url)
            .query(query)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), status, "{code}");
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["error"], code);
    }

    // The server is still healthy and nothing was delivered before this good push.
    assert_eq!(push(&server.url, &good).await.status(), 200);
    assert!(matches!(server.events.recv().await, Some(Event::CheckUrl(_))));
    assert!(server.events.try_recv().is_err());
}

#[tokio::test]
async fn a_failing_sink_answers_503_without_success() {
    let server = start(CallbackHandler::builder(crypto()).build(), true).await;
    let sealed = crypto()
        .encrypt_reply(r#"{"EventType":"check_url"}"#, &now_ms(), "n")
        .unwrap();
    let res = push(&server.url, &sealed).await;
    assert_eq!(res.status(), 503);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"], "handler_failed");
    assert!(body.get("encrypt").is_none());
}
