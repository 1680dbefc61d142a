//! Stream frames from `vectors/stream-frames.json`: every recorded downstream frame parses, and
//! the frames we send match the protocol-conformant SDK (Node) field for field.

#![expect(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "tests fail loudly on unexpected values"
)]

pub mod support;

use dingtalk_sdk::event::Event;
use dingtalk_sdk::stream::frame::{AckFrame, DownstreamFrame, EventAckStatus, FrameType};
use serde_json::Value;

fn vectors() -> Value {
    support::vectors("stream-frames.json")
}

fn frame(v: &Value, name: &str) -> DownstreamFrame {
    let f = v["python_sdk"]["server_frames"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == name)
        .unwrap();
    serde_json::from_value(f["frame"].clone()).unwrap()
}

fn node_reply(v: &Value, after: &str) -> Value {
    let r = v["node_sdk"]["sdk_replies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["after"] == after)
        .unwrap();
    serde_json::from_str(r["raw"].as_str().unwrap()).unwrap()
}

/// Compares two ACK frames field for field; `data` is compared as parsed JSON.
fn assert_same_ack(ours: &AckFrame, theirs: &Value) {
    let ours = serde_json::to_value(ours).unwrap();
    assert_eq!(ours["code"], theirs["code"]);
    assert_eq!(ours["message"], theirs["message"]);
    assert_eq!(ours["headers"]["messageId"], theirs["headers"]["messageId"]);
    assert_eq!(ours["headers"]["contentType"], theirs["headers"]["contentType"]);
    let (a, b): (Value, Value) = (
        serde_json::from_str(ours["data"].as_str().unwrap()).unwrap(),
        serde_json::from_str(theirs["data"].as_str().unwrap()).unwrap(),
    );
    assert_eq!(a, b);
}

#[test]
fn every_recorded_frame_parses_and_round_trips() {
    let v = vectors();
    for f in v["python_sdk"]["server_frames"].as_array().unwrap() {
        let parsed: DownstreamFrame = serde_json::from_value(f["frame"].clone()).unwrap();
        assert_ne!(parsed.frame_type, FrameType::Other);
        assert_eq!(
            serde_json::to_value(&parsed).unwrap(),
            f["frame"],
            "{}",
            f["name"]
        );
    }
}

#[test]
fn event_acks_match_the_protocol_conformant_sdk() {
    let v = vectors();
    for (name, status, message) in [
        ("event_bpms_instance_change", EventAckStatus::Success, "OK"),
        ("event_bpms_task_change", EventAckStatus::Success, "OK"),
        (
            "event_handler_returns_later",
            EventAckStatus::Later,
            "retry later",
        ),
    ] {
        let f = frame(&v, name);
        let ack = AckFrame::event(&f.headers.message_id, status, message);
        assert_same_ack(&ack, &node_reply(&v, name));
        assert_eq!(ack.event_status(), Some(status));
    }
}

#[test]
fn ping_is_answered_with_the_opaque_echoed() {
    let v = vectors();
    let ping = frame(&v, "system_ping");
    assert!(ping.is_system("ping"));
    let pong = AckFrame::pong(&ping);
    assert_same_ack(&pong, &node_reply(&v, "system_ping"));
    // The Python SDK answers the same apart from JSON spacing.
    let py = v["python_sdk"]["sdk_replies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["after"] == "system_ping")
        .unwrap();
    assert_same_ack(&pong, &py["parsed"]);
}

#[test]
fn event_frames_yield_typed_events_and_others_none() {
    let v = vectors();
    let Some(Event::InstanceChange(e)) = frame(&v, "event_bpms_instance_change").event().unwrap() else {
        panic!()
    };
    assert!(e.is_approved());
    assert_eq!(e.meta.event_time, Some(1_741_703_477_120));
    assert!(matches!(
        frame(&v, "event_bpms_task_change").event().unwrap(),
        Some(Event::TaskChange(_))
    ));
    // A contact change, typed since the directory support (it was `Unknown` before).
    assert!(matches!(
        frame(&v, "event_handler_returns_later").event().unwrap(),
        Some(Event::UserChange(_))
    ));
    assert!(frame(&v, "system_ping").event().unwrap().is_none());
    let disconnect = frame(&v, "system_disconnect");
    assert!(disconnect.is_system("disconnect") && !disconnect.is_system("ping"));
}
