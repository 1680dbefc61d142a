//! Stream-mode wire frames: what the gateway pushes and what a client answers.
//!
//! Every frame is one JSON text message. Downstream frames carry string `headers` and a
//! JSON-*string* `data`; upstream ACKs echo `messageId`. For `EVENT` frames the ACK's `data`
//! must hold `{"status":"SUCCESS"|"LATER"}` (the protocol, and the official Node and Go SDKs;
//! the Python SDK's re-serialised event data is wrong); `SYSTEM` `ping` is answered with its
//! `data` (the `opaque`) echoed.
//!
//! ```
//! use dingtalk_sdk::stream::frame::{AckFrame, DownstreamFrame, EventAckStatus};
//!
//! let frame: DownstreamFrame = serde_json::from_str(r#"{"specVersion":"1.0","type":"EVENT",
//!     "headers":{"messageId":"m1","topic":"*","contentType":"application/json","time":"1741703477147",
//!     "eventType":"bpms_instance_change","eventId":"e1"},"data":"{\"processInstanceId\":\"p\",\"type\":\"start\"}"}"#)?;
//! let event = frame.event()?.expect("an EVENT frame");
//! assert_eq!(event.event_type(), "bpms_instance_change");
//! let ack = AckFrame::event(&frame.headers.message_id, EventAckStatus::Success, "OK");
//! assert_eq!(serde_json::to_string(&ack)?,
//!     r#"{"code":200,"headers":{"contentType":"application/json","messageId":"m1"},"message":"OK","data":"{\"status\":\"SUCCESS\",\"message\":\"OK\"}"}"#);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use crate::error::{Error, Result};
use crate::event::{Event, StreamEventHeaders};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// `contentType` of every JSON frame.
pub const CONTENT_TYPE_JSON: &str = "application/json";

/// The kind of a downstream frame.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
#[non_exhaustive]
pub enum FrameType {
    /// Connection management: `ping`, `disconnect`.
    System,
    /// An event subscription push (topic `*`).
    Event,
    /// A callback (bot messages, cards, …) that expects a response.
    Callback,
    /// A type this SDK does not know yet.
    #[serde(other)]
    Other,
}

/// A frame pushed by the gateway.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct DownstreamFrame {
    /// Protocol version, `1.0`.
    #[serde(default)]
    pub spec_version: String,
    /// `SYSTEM`, `EVENT` or `CALLBACK`.
    #[serde(rename = "type")]
    pub frame_type: FrameType,
    /// Frame headers.
    pub headers: FrameHeaders,
    /// The payload: a JSON document serialised into a string.
    #[serde(default)]
    pub data: String,
}

/// Headers of a downstream frame. Values are strings on the wire; `time` is accepted as a
/// string or a number. Headers this SDK does not model are kept in `extensions`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct FrameHeaders {
    /// Unique id of the frame; ACKs echo it.
    #[serde(default)]
    pub message_id: String,
    /// `ping`, `disconnect`, `*` (events) or a callback topic.
    #[serde(default)]
    pub topic: String,
    /// `application/json`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// Send time, Unix ms, as sent (a string in practice).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<Value>,
    /// Everything else (`appId`, `connectionId`, `eventType`, `eventId`, …), kept as sent.
    #[serde(flatten)]
    pub extensions: Map<String, Value>,
}

impl FrameHeaders {
    /// Headers with the given message id and topic; set the rest as needed.
    pub fn new(message_id: impl Into<String>, topic: impl Into<String>) -> Self {
        Self {
            message_id: message_id.into(),
            topic: topic.into(),
            content_type: Some(CONTENT_TYPE_JSON.to_owned()),
            ..Self::default()
        }
    }
}

impl DownstreamFrame {
    /// The typed event of an `EVENT` frame (`None` for other frame types).
    ///
    /// # Errors
    /// [`Error::BadEvent`] if the event headers or a known event's `data` are malformed.
    pub fn event(&self) -> Result<Option<Event>> {
        if self.frame_type != FrameType::Event {
            return Ok(None);
        }
        let headers = StreamEventHeaders::deserialize(Value::Object(self.headers.extensions.clone()))
            .map_err(Error::bad_event)?;
        Event::from_stream(&headers, &self.data).map(Some)
    }

    /// Whether this is the `SYSTEM` frame with the given topic (`ping`, `disconnect`).
    pub fn is_system(&self, topic: &str) -> bool {
        self.frame_type == FrameType::System && self.headers.topic == topic
    }
}

/// What the client tells the gateway about an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
#[non_exhaustive]
pub enum EventAckStatus {
    /// Consumed; do not push again.
    Success,
    /// Consumption failed; push it again later.
    Later,
}

/// An upstream reply frame (ACK).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct AckFrame {
    /// 200 OK; 404 topic not supported; 500 internal error.
    pub code: u16,
    /// `contentType` and the echoed `messageId`.
    pub headers: AckHeaders,
    /// Free text, `OK` on success.
    pub message: String,
    /// JSON string: `{"status":…,"message":…}` for events, the ping data for pings.
    pub data: String,
}

/// Headers of an ACK frame.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct AckHeaders {
    /// `application/json`.
    pub content_type: String,
    /// The `messageId` of the frame being answered.
    pub message_id: String,
}

#[derive(Serialize, Deserialize)]
struct EventAckData<'a> {
    status: EventAckStatus,
    message: &'a str,
}

impl AckFrame {
    fn ok(message_id: &str, data: String) -> Self {
        Self {
            code: 200,
            headers: AckHeaders {
                content_type: CONTENT_TYPE_JSON.to_owned(),
                message_id: message_id.to_owned(),
            },
            message: "OK".to_owned(),
            data,
        }
    }

    /// The ACK of an `EVENT` frame: code 200 and `data` = `{"status":…,"message":…}`.
    pub fn event(message_id: &str, status: EventAckStatus, message: &str) -> Self {
        let data = serde_json::to_string(&EventAckData { status, message }).unwrap_or_default();
        Self::ok(message_id, data)
    }

    /// Code 404 for a topic this client does not handle (as the Go SDK answers).
    pub fn not_supported(message_id: &str) -> Self {
        let mut ack = Self::ok(message_id, "{}".to_owned());
        ack.code = 404;
        ack.message = "topic not supported".to_owned();
        ack
    }

    /// The answer to a `SYSTEM` `ping`: code 200 with the ping's `data` (the `opaque`) echoed.
    pub fn pong(ping: &DownstreamFrame) -> Self {
        Self::ok(&ping.headers.message_id, ping.data.clone())
    }

    /// The status of an event ACK, for a gateway (or mock) reading this frame.
    pub fn event_status(&self) -> Option<EventAckStatus> {
        serde_json::from_str::<EventAckData<'_>>(&self.data)
            .ok()
            .map(|d| d.status)
    }
}

/// One subscription of an open-connection request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Subscription {
    /// `EVENT`, `CALLBACK` or `SYSTEM`.
    #[serde(rename = "type")]
    pub kind: String,
    /// For `EVENT`, only `*` is supported; the concrete events are chosen in the console.
    pub topic: String,
}

impl Subscription {
    /// All events (`{"type":"EVENT","topic":"*"}`).
    pub fn all_events() -> Self {
        Self {
            kind: "EVENT".to_owned(),
            topic: "*".to_owned(),
        }
    }
}

/// Body of `POST /v1.0/gateway/connections/open`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct OpenConnectionRequest {
    /// The app's Client ID (AppKey).
    pub client_id: String,
    /// The app's Client Secret.
    pub client_secret: String,
    /// What to receive.
    pub subscriptions: Vec<Subscription>,
    /// Free-form client identification.
    #[serde(default)]
    pub ua: String,
    /// The client's local IP address(es), comma-separated; optional.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_ip: Option<String>,
}

impl std::fmt::Debug for OpenConnectionRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenConnectionRequest")
            .field("client_id", &self.client_id)
            .field("client_secret", &"<redacted>")
            .field("subscriptions", &self.subscriptions)
            .field("ua", &self.ua)
            .field("local_ip", &self.local_ip)
            .finish()
    }
}

impl OpenConnectionRequest {
    /// A request subscribing to all events.
    pub fn new(client_id: impl Into<String>, client_secret: impl Into<String>) -> Self {
        Self {
            client_id: client_id.into(),
            client_secret: client_secret.into(),
            subscriptions: vec![Subscription::all_events()],
            ua: String::new(),
            local_ip: None,
        }
    }
}

/// Response of `POST /v1.0/gateway/connections/open`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct OpenConnectionResponse {
    /// WebSocket endpoint, e.g. `wss://wss-open-connection.dingtalk.com:443/connect`.
    pub endpoint: String,
    /// Single-use ticket, valid 90 s; appended URL-encoded as `?ticket=`.
    pub ticket: String,
}

impl OpenConnectionResponse {
    /// A response with the given endpoint and ticket.
    pub fn new(endpoint: impl Into<String>, ticket: impl Into<String>) -> Self {
        Self {
            endpoint: endpoint.into(),
            ticket: ticket.into(),
        }
    }
}

impl std::fmt::Debug for OpenConnectionResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenConnectionResponse")
            .field("endpoint", &self.endpoint)
            .field("ticket", &"<redacted>")
            .finish()
    }
}
