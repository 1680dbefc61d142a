//! The mock's Stream gateway as DingTalk's, seen by a raw WebSocket client on 127.0.0.1: the
//! official Python SDK's ACK (code 200, the event's data echoed, no `status`) is consumed and
//! journalled as a warning; `LATER` and non-200 ACKs are re-pushed on the redelivery schedule;
//! an unacknowledged event is re-pushed per schedule then dropped; frames carry
//! `headers.connectionId` and the app's corpId. And `POST /__mock/events` pushes a chosen event
//! over HTTP push (to our callback route) or Stream.

#![cfg(all(feature = "mock", feature = "stream", feature = "axum"))]
#![expect(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "tests fail loudly on unexpected values"
)]

pub mod support;

use dingtalk_sdk::event::Event;
use dingtalk_sdk::mock::gateway::{StreamEntryKind, StreamJournalEntry};
use dingtalk_sdk::mock::{Channel, MockApp, MockDingTalk, MockEvent, Via};
use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

use support::receivers::receiver;
use support::{AES_KEY, APP_KEY as APP, APP_SECRET as SECRET, TOKEN, WAIT};

const CORP: &str = "ding9f50b15bd7a8c4e2aa16741";
/// A short schedule: re-push 200 ms after the first push, then 400 ms after that; dropped
/// 400 ms after the last re-push.
const SCHEDULE: [u64; 2] = [200, 400];

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn stream_mock() -> MockDingTalk {
    MockDingTalk::builder()
        .app(
            MockApp::new(APP, SECRET)
                .events(TOKEN, AES_KEY)
                .stream(true)
                .corp_id(CORP),
        )
        .redelivery(SCHEDULE.iter().map(|ms| Duration::from_millis(*ms)).collect())
        .start()
        .await
        .unwrap()
}

/// Opens a Stream connection the way the SDKs do: `connections/open`, then the WebSocket with
/// the URL-encoded ticket.
async fn connect(mock: &MockDingTalk) -> Ws {
    let open: Value = reqwest::Client::new()
        .post(format!("{}/v1.0/gateway/connections/open", mock.base_url()))
        .json(&json!({"clientId": APP, "clientSecret": SECRET,
            "subscriptions": [{"type": "EVENT", "topic": "*"}], "ua": "dingtalk-sdk-python/v0.24.3-union"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ticket: String =
        form_urlencoded::byte_serialize(open["ticket"].as_str().unwrap().as_bytes()).collect();
    let url = format!("{}?ticket={ticket}", open["endpoint"].as_str().unwrap());
    let before = mock.gateway().connection_count();
    let (ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    assert!(
        mock.gateway()
            .wait_for(WAIT, |g| g.connection_count() > before)
            .await
    );
    ws
}

/// The next `EVENT` frame within `within`, if any.
async fn next_event(ws: &mut Ws, within: Duration) -> Option<Value> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let message = tokio::time::timeout_at(deadline, ws.next()).await.ok()??.ok()?;
        if let Message::Text(text) = message {
            let frame: Value = serde_json::from_str(text.as_str()).unwrap();
            if frame["type"] == "EVENT" {
                return Some(frame);
            }
        }
    }
}

async fn send(ws: &mut Ws, ack: &Value) {
    ws.send(Message::Text(ack.to_string().into())).await.unwrap();
}

/// The ACK the official Python SDK 0.24.3 sent for a `bpms_instance_change` (recorded in
/// `stream-frames.json`), for this frame: code 200, `message` OK, `data` = the event's data
/// re-serialised, no `status`.
fn python_ack(frame: &Value) -> Value {
    let vectors = support::vectors("stream-frames.json");
    let recorded = vectors["python_sdk"]["sdk_replies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["after"] == "event_bpms_instance_change")
        .unwrap();
    let mut ack: Value = serde_json::from_str(recorded["raw"].as_str().unwrap()).unwrap();
    ack["headers"]["messageId"] = frame["headers"]["messageId"].clone();
    let data: Value = serde_json::from_str(frame["data"].as_str().unwrap()).unwrap();
    ack["data"] = Value::String(data.to_string());
    ack
}

/// A protocol ACK (as the Node and Go SDKs send it) with this code and status.
fn ack(frame: &Value, code: u16, status: &str) -> Value {
    json!({"code": code, "headers": {"contentType": "application/json", "messageId": frame["headers"]["messageId"]},
           "message": "OK", "data": json!({"status": status, "message": "m"}).to_string()})
}

fn entries(mock: &MockDingTalk, message_id: &str, kind: StreamEntryKind) -> Vec<StreamJournalEntry> {
    mock.stream_journal()
        .into_iter()
        .filter(|e| e.message_id == message_id && e.kind == kind)
        .collect()
}

fn instance_event(event_id: &str) -> MockEvent {
    MockEvent::new(APP, "bpms_instance_change")
        .process_instance_id("pi-1")
        .event_id(event_id)
        .field("type", "finish")
        .field("result", "agree")
        .via(Via::Stream)
}

#[tokio::test]
async fn a_python_sdk_ack_is_consumed_once_and_journalled_as_a_warning() {
    let mock = stream_mock().await;
    let mut ws = connect(&mock).await;
    let pushed = mock.push_event(instance_event("ev-py")).await.unwrap();
    let message_id = pushed[0].message_id.clone().unwrap();
    let frame = next_event(&mut ws, WAIT).await.unwrap();
    assert_eq!(frame["headers"]["messageId"], message_id.as_str());
    send(&mut ws, &python_ack(&frame)).await;

    // Past the first interval and the second: nothing pushed again.
    assert!(
        next_event(&mut ws, Duration::from_millis(700)).await.is_none(),
        "a code-200 ACK is consumed"
    );
    assert_eq!(mock.gateway().pending_count(), 0);
    let warnings = entries(&mock, &message_id, StreamEntryKind::Warning);
    assert_eq!(warnings.len(), 1, "{:?}", mock.stream_journal());
    assert_eq!(warnings[0].event_id, "ev-py");
    assert!(
        warnings[0]
            .detail
            .as_deref()
            .is_some_and(|d| d.contains("status")),
        "{warnings:?}"
    );
    assert_eq!(entries(&mock, &message_id, StreamEntryKind::Consumed).len(), 1);
    assert!(entries(&mock, &message_id, StreamEntryKind::Redelivered).is_empty());

    // A conforming ACK is consumed without a warning.
    let pushed = mock.push_event(instance_event("ev-node")).await.unwrap();
    let conforming = pushed[0].message_id.clone().unwrap();
    let frame = next_event(&mut ws, WAIT).await.unwrap();
    send(&mut ws, &ack(&frame, 200, "SUCCESS")).await;
    assert!(mock.wait_for(WAIT, |m| m.gateway().pending_count() == 0).await);
    assert!(entries(&mock, &conforming, StreamEntryKind::Warning).is_empty());

    // The journal over HTTP.
    let journal: Value = reqwest::get(format!("{}/__mock/stream/journal", mock.base_url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(journal.as_array().unwrap().iter().any(|e| e["kind"] == "warning"
        && e["message_id"] == message_id.as_str()
        && e["event_id"] == "ev-py"));
}

#[tokio::test]
async fn later_and_non_200_acks_are_pushed_again_on_the_schedule() {
    let mock = stream_mock().await;
    let mut ws = connect(&mock).await;
    mock.push_event(instance_event("ev-later")).await.unwrap();
    let first = next_event(&mut ws, WAIT).await.unwrap();
    let pushed_at = Instant::now();
    send(&mut ws, &ack(&first, 200, "LATER")).await;

    let second = next_event(&mut ws, Duration::from_secs(2)).await.unwrap();
    let after = pushed_at.elapsed();
    assert!(
        after >= Duration::from_millis(180) && after < Duration::from_millis(450),
        "first re-push ≈200 ms after the push, was {after:?}"
    );
    assert_eq!(second["headers"]["messageId"], first["headers"]["messageId"]);
    assert_eq!(second["headers"]["eventId"], "ev-later");
    assert_eq!(second["data"], first["data"]);
    // The Python SDK's answer to a failing handler: code 500, the data echoed.
    let mut failed = python_ack(&second);
    failed["code"] = json!(500);
    failed["message"] = json!("not handled here");
    let repushed_at = Instant::now();
    send(&mut ws, &failed).await;

    let third = next_event(&mut ws, Duration::from_secs(2)).await.unwrap();
    let after = repushed_at.elapsed();
    assert!(
        after >= Duration::from_millis(380) && after < Duration::from_millis(900),
        "second re-push ≈400 ms after the first, was {after:?}"
    );
    send(&mut ws, &ack(&third, 200, "SUCCESS")).await;
    assert!(mock.wait_for(WAIT, |m| m.gateway().pending_count() == 0).await);
    let message_id = first["headers"]["messageId"].as_str().unwrap();
    let later = entries(&mock, message_id, StreamEntryKind::Later);
    assert_eq!(later.len(), 2, "{:?}", mock.stream_journal());
    assert!(later[1].detail.as_deref().unwrap().contains("500"));
    assert_eq!(entries(&mock, message_id, StreamEntryKind::Redelivered).len(), 2);
    assert_eq!(entries(&mock, message_id, StreamEntryKind::Consumed).len(), 1);
    assert!(entries(&mock, message_id, StreamEntryKind::Dropped).is_empty());
}

#[tokio::test]
async fn an_unacknowledged_event_is_pushed_per_schedule_then_dropped() {
    let mock = stream_mock().await;
    let mut ws = connect(&mock).await;
    let pushed = mock.push_event(instance_event("ev-silent")).await.unwrap();
    let message_id = pushed[0].message_id.clone().unwrap();
    let start = Instant::now();
    let mut arrivals = Vec::new();
    // Pushes at 0, 200 and 600 ms; dropped at 1000 ms; nothing after.
    while let Some(frame) = next_event(&mut ws, Duration::from_millis(900)).await {
        assert_eq!(frame["headers"]["messageId"], message_id.as_str());
        arrivals.push(start.elapsed());
    }
    assert_eq!(arrivals.len(), 3, "the push and two re-pushes: {arrivals:?}");
    assert!(arrivals[1] >= Duration::from_millis(180), "{arrivals:?}");
    assert!(arrivals[2] >= Duration::from_millis(560), "{arrivals:?}");
    assert!(
        mock.wait_for(WAIT, |m| !entries(m, &message_id, StreamEntryKind::Dropped)
            .is_empty())
            .await,
        "{:?}",
        mock.stream_journal()
    );
    assert_eq!(mock.gateway().pending_count(), 0);
    assert_eq!(mock.gateway().deliveries(&message_id), 0);
    let dropped = &entries(&mock, &message_id, StreamEntryKind::Dropped)[0];
    assert_eq!(dropped.event_id, "ev-silent");
}

#[tokio::test]
async fn frames_carry_the_connection_id_and_the_apps_corp_id() {
    let mock = stream_mock().await;
    let mut first = connect(&mock).await;
    let mut frames = Vec::new();
    for id in ["ev-a", "ev-b"] {
        mock.push_event(instance_event(id)).await.unwrap();
        let frame = next_event(&mut first, WAIT).await.unwrap();
        send(&mut first, &ack(&frame, 200, "SUCCESS")).await;
        frames.push(frame);
    }
    let connection_id = frames[0]["headers"]["connectionId"].as_str().unwrap().to_owned();
    assert!(!connection_id.is_empty());
    assert_eq!(
        frames[1]["headers"]["connectionId"], connection_id,
        "one connection, one id"
    );
    for frame in &frames {
        assert_eq!(frame["headers"]["eventCorpId"], CORP, "the app's corpId");
        assert_eq!(frame["headers"]["appId"], APP);
        assert_eq!(frame["headers"]["eventType"], "bpms_instance_change");
    }

    // A second connection; the first closes, so the next event goes to the second.
    let mut second = connect(&mock).await;
    first.close(None).await.unwrap();
    assert!(mock.gateway().wait_for(WAIT, |g| g.connection_count() == 1).await);
    mock.push_event(instance_event("ev-c")).await.unwrap();
    let frame = next_event(&mut second, WAIT).await.unwrap();
    let other = frame["headers"]["connectionId"].as_str().unwrap();
    assert!(!other.is_empty());
    assert_ne!(other, connection_id, "another connection, another id");
    assert_eq!(frame["headers"]["eventCorpId"], CORP);
}

#[tokio::test]
async fn the_control_api_pushes_a_chosen_event_over_http_push_or_stream() {
    let (url, pushed) = receiver().await;
    let mock = MockDingTalk::builder()
        .app(
            MockApp::new(APP, SECRET)
                .events(TOKEN, AES_KEY)
                .request_url(url)
                .stream(true)
                .corp_id(CORP),
        )
        .start()
        .await
        .unwrap();
    let mut ws = connect(&mock).await;
    let http = reqwest::Client::new();
    let post = |body: Value| {
        let request = http
            .post(format!("{}/__mock/events", mock.base_url()))
            .json(&body);
        async move {
            let res = request.send().await.unwrap();
            (res.status().as_u16(), res.json::<Value>().await.unwrap())
        }
    };

    // Over HTTP push: encrypted to the Request URL, which our callback route decrypts.
    let (status, answer) = post(json!({"app": APP, "eventType": "bpms_instance_change",
        "processInstanceId": "pi-http", "eventId": "ev-http-1",
        "fields": {"type": "finish", "result": "agree", "processCode": "PROC-X", "staffId": "alice"},
        "via": "http_push"}))
    .await;
    assert_eq!(status, 200, "{answer}");
    let deliveries = answer["deliveries"].as_array().unwrap();
    assert_eq!(deliveries.len(), 1, "{answer}");
    assert_eq!(
        (
            &deliveries[0]["channel"],
            &deliveries[0]["ok"],
            &deliveries[0]["event_id"]
        ),
        (&json!("http"), &json!(true), &json!("ev-http-1")),
        "{answer}"
    );
    let received = || {
        pushed.lock().unwrap().iter().find_map(|e| match e {
            Event::InstanceChange(c) if c.meta.event_id.as_deref() == Some("ev-http-1") => Some(c.clone()),
            _ => None,
        })
    };
    assert!(mock.wait_for(WAIT, |_| received().is_some()).await);
    let got = received().unwrap();
    assert_eq!(got.process_instance_id.as_ref().unwrap().as_str(), "pi-http");
    assert!(got.is_approved());
    assert_eq!(got.meta.corp_id, Some(dingtalk_sdk::CorpId::new(CORP)));
    assert!(
        next_event(&mut ws, Duration::from_millis(100)).await.is_none(),
        "not over Stream"
    );

    // Over Stream: an EVENT frame to the connected client.
    let (status, answer) = post(json!({"app": APP, "eventType": "bpms_task_change",
        "processInstanceId": "pi-stream", "eventId": "ev-stream-1",
        "fields": {"type": "finish", "result": "refuse", "taskId": 87_412_365_091_i64, "staffId": "approver1"},
        "via": "stream"}))
    .await;
    assert_eq!(status, 200, "{answer}");
    let delivery = &answer["deliveries"][0];
    assert_eq!(delivery["channel"], "stream");
    let frame = next_event(&mut ws, WAIT).await.unwrap();
    assert_eq!(frame["headers"]["messageId"], delivery["message_id"]);
    assert_eq!(frame["headers"]["eventType"], "bpms_task_change");
    assert_eq!(frame["headers"]["eventId"], "ev-stream-1");
    let data: Value = serde_json::from_str(frame["data"].as_str().unwrap()).unwrap();
    assert_eq!(
        (&data["processInstanceId"], &data["taskId"], &data["result"]),
        (&json!("pi-stream"), &json!(87_412_365_091_i64), &json!("refuse"))
    );
    send(&mut ws, &ack(&frame, 200, "SUCCESS")).await;

    // Without `via`: the app's configured delivery, here both; the Rust method answers alike.
    let both = mock
        .push_event(MockEvent::new(APP, "bpms_instance_change").process_instance_id("pi-both"))
        .await
        .unwrap();
    let channels: Vec<Channel> = both.iter().map(|d| d.channel).collect();
    assert_eq!(channels, [Channel::Http, Channel::Stream]);
    assert_eq!(both[0].event_id, both[1].event_id, "one event, two channels");
    assert!(next_event(&mut ws, WAIT).await.is_some());

    // An unknown app is refused with DingTalk's error shape.
    let (status, answer) = post(json!({"app": "dingnope", "eventType": "bpms_instance_change"})).await;
    assert_eq!((status, answer["code"].as_str()), (400, Some("invalidParameter")));
    assert!(mock.deliveries().iter().any(|d| d.event_id == "ev-stream-1"));
}
