//! Event delivery: what DingTalk does after every state change. Each event is encrypted with
//! the app's token and aes_key and POSTed to its Request URL (`signature`, 13-digit
//! `timestamp`, `nonce` in the query), and the encrypted `success` reply is checked; apps in
//! Stream mode get it through the gateway instead. Events go out in order, after the API call
//! that caused them has answered. The control API pushes chosen events ([`MockEvent`]) through
//! the same path.

use super::config::MockApp;
use super::now_ms;
use super::server::Shared;
use super::state::EventDraft;
use crate::crypto::{EncryptedMessage, EventCrypto};
use rand::distributions::{Alphanumeric, DistString as _};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::sync::Arc;
use tokio::sync::mpsc;

/// How an event was (or was not) delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Channel {
    /// Encrypted HTTP push to the Request URL.
    Http,
    /// Pushed through the Stream gateway (its ACKs are recorded by the gateway).
    Stream,
    /// Dropped by fault injection.
    Dropped,
}

/// One delivery attempt, for assertions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Delivery {
    /// `check_url`, `bpms_instance_change`, `bpms_task_change`.
    pub event_type: String,
    /// The event's `eventId` (empty for `check_url`).
    pub event_id: String,
    /// The instance concerned, if any.
    pub process_instance_id: Option<String>,
    /// The event's `type` (`start`, `finish`, …), if any.
    pub change: Option<String>,
    /// The event's `result` (`agree`, …), if any.
    pub result: Option<String>,
    /// How it went out.
    pub channel: Channel,
    /// HTTP status of the Request URL's answer.
    pub status: Option<u16>,
    /// Whether the receiver acknowledged it properly (HTTP: the encrypted `success` reply).
    pub ok: bool,
    /// What went wrong, if anything.
    pub error: Option<String>,
    /// The Stream frame's `messageId` (Stream deliveries only): the key of the gateway's
    /// journal and ACKs.
    pub message_id: Option<String>,
}

/// The channel to push an event over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Via {
    /// Encrypted HTTP push to the app's Request URL.
    HttpPush,
    /// An `EVENT` frame through the Stream gateway.
    Stream,
}

/// A chosen event to push (`POST /__mock/events`, [`MockDingTalk::push_event`](super::MockDingTalk::push_event)),
/// so a test can script an exact scenario: a duplicate, an event for an unknown instance, a
/// late `finish`…
///
/// ```json
/// {"app": "dingappkey", "eventType": "bpms_instance_change", "processInstanceId": "…",
///  "eventId": "ev-1", "fields": {"type": "finish", "result": "agree"}, "via": "stream"}
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct MockEvent {
    /// The Client ID of the app receiving it.
    pub app: String,
    /// `bpms_instance_change`, `bpms_task_change`, or any other event type.
    pub event_type: String,
    /// Sent as the `processInstanceId` field.
    #[serde(default)]
    pub process_instance_id: Option<String>,
    /// The `eventId`; a fresh one if `None`.
    #[serde(default)]
    pub event_id: Option<String>,
    /// The other business fields (`type`, `result`, `processCode`, `staffId`, `taskId`, …), as
    /// sent: flat in the HTTP-push body, in the Stream frame's `data`.
    #[serde(default)]
    pub fields: Map<String, Value>,
    /// The channel; `None`: the app's configured delivery (its Request URL and/or Stream).
    #[serde(default)]
    pub via: Option<Via>,
}

impl MockEvent {
    /// An event of this type for this app, with no fields yet.
    pub fn new(app: impl Into<String>, event_type: impl Into<String>) -> Self {
        Self {
            app: app.into(),
            event_type: event_type.into(),
            process_instance_id: None,
            event_id: None,
            fields: Map::new(),
            via: None,
        }
    }

    /// The instance concerned.
    pub fn process_instance_id(mut self, id: impl Into<String>) -> Self {
        self.process_instance_id = Some(id.into());
        self
    }

    /// A chosen `eventId` (e.g. the one of an earlier event, to script a duplicate).
    pub fn event_id(mut self, id: impl Into<String>) -> Self {
        self.event_id = Some(id.into());
        self
    }

    /// Adds a business field.
    pub fn field(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.fields.insert(key.into(), value.into());
        self
    }

    /// Pushes over this channel rather than the app's configured one.
    pub fn via(mut self, via: Via) -> Self {
        self.via = Some(via);
        self
    }

    pub(crate) fn into_draft(self) -> EventDraft {
        let mut fields = self.fields;
        if let Some(id) = self.process_instance_id {
            fields.insert("processInstanceId".into(), Value::String(id));
        }
        EventDraft {
            client_id: self.app,
            event_type: self.event_type,
            fields,
            event_id: self.event_id,
            via: self.via,
        }
    }
}

pub(crate) async fn worker(shared: Arc<Shared>, mut queue: mpsc::UnboundedReceiver<EventDraft>) {
    while let Some(draft) = queue.recv().await {
        let _ = deliver(&shared, draft).await;
    }
}

/// Delivers one event (faults applied) over the app's channels, or the draft's chosen one;
/// returns the delivery records, also kept in the store.
pub(crate) async fn deliver(shared: &Arc<Shared>, draft: EventDraft) -> Vec<Delivery> {
    let (app, drop_it, twice) = {
        let mut store = shared.lock();
        let drop_it = store.faults.drop_events_next > 0;
        store.faults.drop_events_next = store.faults.drop_events_next.saturating_sub(u32::from(drop_it));
        let twice = !drop_it && store.faults.duplicate_events_next > 0;
        store.faults.duplicate_events_next = store
            .faults
            .duplicate_events_next
            .saturating_sub(u32::from(twice));
        (store.apps.get(&draft.client_id).cloned(), drop_it, twice)
    };
    let Some(app) = app else { return Vec::new() };
    let event_id = draft
        .event_id
        .clone()
        .unwrap_or_else(|| format!("{:032x}", rand::random::<u128>()));
    let field = |k: &str| draft.fields.get(k).and_then(Value::as_str).map(str::to_owned);
    let record = |channel, status, ok, error, message_id| Delivery {
        event_type: draft.event_type.clone(),
        event_id: event_id.clone(),
        process_instance_id: field("processInstanceId"),
        change: field("type"),
        result: field("result"),
        channel,
        status,
        ok,
        error,
        message_id,
    };
    let mut records = Vec::new();
    if drop_it {
        let dropped = record(Channel::Dropped, None, false, None, None);
        shared.lock().deliveries.push(dropped.clone());
        records.push(dropped);
        return records;
    }
    let (http, stream) = match draft.via {
        Some(Via::HttpPush) => (true, false),
        Some(Via::Stream) => (false, true),
        None => (app.request_url.is_some(), app.stream),
    };
    // HTTP push: the flat current format with PascalCase metadata plus `eventId`.
    let mut flat = serde_json::Map::new();
    flat.insert("EventType".into(), json!(draft.event_type));
    flat.insert("EventTime".into(), json!(now_ms()));
    flat.insert("CorpId".into(), json!(app.corp_id));
    flat.insert(
        "BizId".into(),
        json!(event_id.chars().take(16).collect::<String>()),
    );
    flat.insert("eventId".into(), json!(event_id));
    flat.extend(draft.fields.clone());
    let plaintext = Value::Object(flat).to_string();
    let data = Value::Object(draft.fields.clone()).to_string();
    for _ in 0..(1 + u32::from(twice)) {
        if http {
            let outcome = http_push(shared, &app, &plaintext).await;
            records.push(record(Channel::Http, outcome.0, outcome.1, outcome.2, None));
        }
        if stream {
            let message_id = shared
                .gateway
                .push_event(&app.client_id, &draft.event_type, &event_id, &data);
            records.push(record(Channel::Stream, None, true, None, Some(message_id)));
        }
    }
    shared.lock().deliveries.extend(records.iter().cloned());
    records
}

/// Sends `check_url` to the app's Request URL, as DingTalk does when the URL is saved.
pub(crate) async fn check_url(shared: &Arc<Shared>, app: &MockApp) -> Delivery {
    let (status, ok, error) = http_push(shared, app, r#"{"EventType":"check_url"}"#).await;
    let delivery = Delivery {
        event_type: crate::event::CHECK_URL.to_owned(),
        event_id: String::new(),
        process_instance_id: None,
        change: None,
        result: None,
        channel: Channel::Http,
        status,
        ok,
        error,
        message_id: None,
    };
    shared.lock().deliveries.push(delivery.clone());
    delivery
}

/// Encrypts, signs and POSTs one event; checks the encrypted `success` reply.
async fn http_push(shared: &Shared, app: &MockApp, plaintext: &str) -> (Option<u16>, bool, Option<String>) {
    let (Some(url), Some(token), Some(aes_key)) = (&app.request_url, &app.token, &app.aes_key) else {
        return (
            None,
            false,
            Some("the app has no Request URL, token or aes_key".to_owned()),
        );
    };
    let crypto = match EventCrypto::new(token.as_str(), aes_key, app.effective_receiver_id()) {
        Ok(c) => c,
        Err(e) => return (None, false, Some(e.to_string())),
    };
    let timestamp = now_ms().to_string();
    let nonce = Alphanumeric.sample_string(&mut rand::thread_rng(), 8);
    let sealed = match crypto.encrypt_reply(plaintext, &timestamp, &nonce) {
        Ok(s) => s,
        Err(e) => return (None, false, Some(e.to_string())),
    };
    let sent = shared
        .http
        .post(url)
        .query(&[
            ("signature", &sealed.msg_signature),
            ("timestamp", &timestamp),
            ("nonce", &nonce),
        ])
        .json(&json!({ "encrypt": sealed.encrypt }))
        .send()
        .await;
    let response = match sent {
        Ok(r) => r,
        Err(e) => return (None, false, Some(format!("push failed: {e}"))),
    };
    let status = response.status().as_u16();
    let reply = match response.json::<EncryptedMessage>().await {
        Ok(reply) => reply,
        Err(e) => {
            return (
                Some(status),
                false,
                Some(format!("reply is not the encrypted JSON: {e}")),
            )
        }
    };
    match crypto.verify_and_decrypt(
        &reply.msg_signature,
        &reply.time_stamp,
        &reply.nonce,
        &reply.encrypt,
    ) {
        Ok(text) if text == "success" && status == 200 => (Some(status), true, None),
        Ok(text) => (
            Some(status),
            false,
            Some(format!("reply decrypts to {text:?}, not \"success\"")),
        ),
        Err(e) => (Some(status), false, Some(format!("reply does not verify: {e}"))),
    }
}
