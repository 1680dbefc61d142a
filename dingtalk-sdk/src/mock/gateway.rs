//! A mock DingTalk Stream gateway on loopback: `POST /v1.0/gateway/connections/open` issues
//! single-use tickets, `GET /connect?ticket=…` upgrades to a WebSocket that pushes `EVENT` and
//! `SYSTEM` frames, records every frame clients send, and re-pushes events that were not
//! consumed on a redelivery schedule, then drops them.
//!
//! - Frames carry `headers.connectionId` (one per WebSocket connection) and, for events,
//!   `eventCorpId` = the app's corpId, as over HTTP push.
//! - ACK rule for `EVENT` frames: code 200 with `data.status` `SUCCESS` is consumed; code 200
//!   with `data.status` `LATER`, or any other code, asks for a re-push; code 200 *without* a
//!   status (the official Python SDK 0.24.3 echoes the event's data) is consumed too, as the
//!   deployed SDKs rely on it, and journalled as a warning, as is a status other than
//!   `SUCCESS`/`LATER`.
//! - Redelivery: an event not consumed is pushed again after each delay of the schedule
//!   (default DingTalk's reported 10 s, 30 s, 60 s, 120 s, PROTOCOL f.4); one last delay after
//!   the last re-push it is dropped. Every step is in [`MockGateway::journal`].
//!
//! ```no_run
//! use dingtalk_sdk::mock::gateway::MockGateway;
//!
//! # async fn run() -> std::io::Result<()> {
//! let gateway = MockGateway::start().await?;
//! gateway.register_app("dingappkey", "secret");
//! // Point a client at it: StreamClient::builder("dingappkey", "secret").api_base(gateway.base_url())
//! gateway.push_event("dingappkey", "bpms_instance_change", "event-1", r#"{"processInstanceId":"p","type":"start"}"#);
//! # Ok(()) }
//! ```

use super::config::{MockApp, DEFAULT_CORP_ID};
use super::{api_error, now_ms};
use crate::stream::frame::{
    AckFrame, DownstreamFrame, FrameHeaders, FrameType, OpenConnectionRequest, OpenConnectionResponse,
};
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::{SinkExt as _, StreamExt as _};
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Tickets are valid this long, as on the real gateway.
pub const TICKET_TTL: Duration = Duration::from_secs(90);

/// A frame a client sent, as the gateway received it.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct RecordedReply {
    /// Which WebSocket connection sent it (1-based, in connection order).
    pub connection: u64,
    /// The frame as sent.
    pub raw: String,
    /// The frame parsed as an ACK, if it is one.
    pub ack: Option<AckFrame>,
}

/// What happened to a Stream event, for [`StreamJournalEntry`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum StreamEntryKind {
    /// Pushed for the first time (to a connection, or kept until one connects).
    Pushed,
    /// Pushed again by the redelivery schedule.
    Redelivered,
    /// ACKed code 200 (`SUCCESS`, or no status): consumed, not pushed again.
    Consumed,
    /// ACKed `LATER` or with a non-200 code: pushed again on the schedule.
    Later,
    /// An ACK that does not follow the protocol (code 200 without `data.status`, an unknown
    /// status); see `detail`.
    Warning,
    /// Not consumed after the last re-push: given up.
    Dropped,
}

/// One step of a Stream event's life in the gateway: `GET /__mock/stream/journal`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct StreamJournalEntry {
    /// When, Unix ms (system clock).
    pub at_ms: i64,
    /// What happened.
    pub kind: StreamEntryKind,
    /// The frame's `messageId`.
    pub message_id: String,
    /// The event's `eventId`.
    pub event_id: String,
    /// The connection concerned (1-based, as in [`RecordedReply`]), if any.
    pub connection: Option<u64>,
    /// Details: the attempt number, the ACK's code and status, why it is a warning.
    pub detail: Option<String>,
}

#[derive(Debug, Clone)]
struct Pending {
    client_id: String,
    /// Headers and data; `connectionId` and `time` are set per push.
    frame: DownstreamFrame,
    deliveries: u32,
}

struct Connection {
    id: u64,
    /// The `connectionId` header of its frames.
    connection_id: String,
    client_id: String,
    tx: mpsc::UnboundedSender<Message>,
    silenced: Arc<AtomicBool>,
}

/// What the gateway knows of an app: its secret, to check `connections/open`, and its
/// organisation, sent as `eventCorpId`.
struct GatewayApp {
    secret: String,
    corp_id: String,
}

#[derive(Default)]
struct Inner {
    apps: HashMap<String, GatewayApp>,
    tickets: HashMap<String, (String, Instant)>,
    connections: Vec<Connection>,
    pending: HashMap<String, Pending>,
    /// `messageId` → `eventId` of every event pushed, to recognise event ACKs.
    events: HashMap<String, String>,
    journal: Vec<StreamJournalEntry>,
    replies: Vec<RecordedReply>,
    open_requests: Vec<Value>,
    connects: Vec<String>,
}

struct Shared {
    inner: Mutex<Inner>,
    ws_endpoint: String,
    redelivery: Mutex<Vec<Duration>>,
    disconnect_grace: Mutex<Duration>,
    next_id: AtomicU64,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panicking test thread must not wedge every other test using the gateway.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn next(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed) + 1
    }

    fn schedule(&self) -> Vec<Duration> {
        self.redelivery
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

impl Inner {
    fn note(
        &mut self,
        kind: StreamEntryKind,
        message_id: &str,
        connection: Option<u64>,
        detail: Option<String>,
    ) {
        let event_id = self.events.get(message_id).cloned().unwrap_or_default();
        self.journal.push(StreamJournalEntry {
            at_ms: now_ms(),
            kind,
            message_id: message_id.to_owned(),
            event_id,
            connection,
            detail,
        });
    }
}

/// A running mock gateway. Dropping it stops the server.
pub struct MockGateway {
    shared: Arc<Shared>,
    addr: SocketAddr,
    server: Option<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for MockGateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockGateway")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Drop for MockGateway {
    fn drop(&mut self) {
        if let Some(server) = &self.server {
            server.abort();
        }
    }
}

impl MockGateway {
    /// Starts a gateway on an ephemeral port of 127.0.0.1.
    ///
    /// # Errors
    /// If the port cannot be bound.
    pub async fn start() -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let mut gateway = Self::attached(listener.local_addr()?);
        let app = gateway.router();
        gateway.server = Some(tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        }));
        Ok(gateway)
    }

    /// A gateway whose routes another server (the mock DingTalk) serves at `addr`.
    pub(crate) fn attached(addr: SocketAddr) -> Self {
        let shared = Arc::new(Shared {
            inner: Mutex::new(Inner::default()),
            ws_endpoint: format!("ws://{addr}/connect"),
            redelivery: Mutex::new(
                super::config::DINGTALK_REDELIVERY_MS
                    .iter()
                    .copied()
                    .map(Duration::from_millis)
                    .collect(),
            ),
            disconnect_grace: Mutex::new(Duration::from_millis(500)),
            next_id: AtomicU64::new(0),
        });
        Self {
            shared,
            addr,
            server: None,
        }
    }

    /// The gateway's routes: `connections/open` and the WebSocket endpoint.
    pub(crate) fn router(&self) -> Router {
        Router::new()
            .route("/v1.0/gateway/connections/open", post(open_connection))
            .route("/connect", get(connect))
            .with_state(Arc::clone(&self.shared))
    }

    /// The base URL to give a client as its API base (`http://127.0.0.1:<port>`).
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Accepts connections for this app, whose events carry the mock's default corpId (as a
    /// [`MockApp`] does unless told otherwise).
    pub fn register_app(&self, client_id: &str, client_secret: &str) {
        self.register(client_id, client_secret, DEFAULT_CORP_ID);
    }

    /// Accepts connections for a registered app; its events carry the app's corpId, as they do
    /// over HTTP push.
    pub(crate) fn register_mock_app(&self, app: &MockApp) {
        self.register(&app.client_id, &app.client_secret, &app.corp_id);
    }

    fn register(&self, client_id: &str, client_secret: &str, corp_id: &str) {
        self.shared.lock().apps.insert(
            client_id.to_owned(),
            GatewayApp {
                secret: client_secret.to_owned(),
                corp_id: corp_id.to_owned(),
            },
        );
    }

    /// The redelivery schedule of events pushed from now on: the delays before each re-push
    /// of an event not consumed (not ACKed, or ACKed `LATER` or with a non-200 code); one last
    /// delay after the last re-push, the event is dropped. Empty: never re-pushed nor dropped.
    /// Default: DingTalk's reported 10 s, 30 s, 60 s, 120 s.
    pub fn set_redelivery_schedule(&self, schedule: Vec<Duration>) {
        *self
            .shared
            .redelivery
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = schedule;
    }

    /// Shorthand for a schedule of four re-pushes `delay` apart (as many as DingTalk's).
    pub fn set_redelivery_delay(&self, delay: Duration) {
        self.set_redelivery_schedule(vec![delay; super::config::DINGTALK_REDELIVERY_MS.len()]);
    }

    /// How long after `disconnect` the gateway closes the socket (≈10 s in production).
    /// Default: 500 ms.
    pub fn set_disconnect_grace(&self, grace: Duration) {
        *self
            .shared
            .disconnect_grace
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = grace;
    }

    /// Pushes an `EVENT` frame to one live connection of the app (or, if none, keeps it until
    /// one connects). It is pushed again on the redelivery schedule until a client consumes it
    /// (see the module doc for the ACK rule), then dropped. Returns its `messageId`.
    pub fn push_event(&self, client_id: &str, event_type: &str, event_id: &str, data: &str) -> String {
        let id = self.shared.next();
        let message_id = format!("msg_{id:06}");
        let now = now_ms().to_string();
        let corp_id = self
            .shared
            .lock()
            .apps
            .get(client_id)
            .map_or_else(|| DEFAULT_CORP_ID.to_owned(), |app| app.corp_id.clone());
        let mut headers = FrameHeaders::new(&message_id, "*");
        headers.time = Some(Value::String(now.clone()));
        for (key, value) in [
            ("appId", client_id),
            ("eventType", event_type),
            ("eventId", event_id),
            ("eventCorpId", corp_id.as_str()),
            ("eventBornTime", now.as_str()),
            ("eventUnifiedAppId", client_id),
        ] {
            headers
                .extensions
                .insert(key.to_owned(), Value::String(value.to_owned()));
        }
        let frame = DownstreamFrame {
            spec_version: "1.0".to_owned(),
            frame_type: FrameType::Event,
            headers,
            data: data.to_owned(),
        };
        {
            let mut inner = self.shared.lock();
            inner.events.insert(message_id.clone(), event_id.to_owned());
            inner.pending.insert(
                message_id.clone(),
                Pending {
                    client_id: client_id.to_owned(),
                    frame,
                    deliveries: 0,
                },
            );
        }
        deliver(&self.shared, &message_id);
        message_id
    }

    /// Sends a `SYSTEM` `ping` with a fresh `opaque` to every connection; returns the
    /// `(messageId, opaque)` pairs.
    pub fn ping(&self) -> Vec<(String, String)> {
        let inner = self.shared.lock();
        let mut sent = Vec::new();
        for conn in &inner.connections {
            let n = self.shared.next();
            let (message_id, opaque) = (format!("ping_{n:06}"), format!("opaque-{n}"));
            let frame = system_frame(&message_id, "ping", json!({ "opaque": opaque }));
            if conn.tx.send(Message::Text(frame.into())).is_ok() {
                sent.push((message_id, opaque));
            }
        }
        sent
    }

    /// Sends `SYSTEM` `disconnect` to every live connection and closes each one after the
    /// disconnect grace period, as the gateway does for load balancing.
    pub fn disconnect_all(&self) {
        let grace = *self
            .shared
            .disconnect_grace
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let inner = self.shared.lock();
        for conn in &inner.connections {
            let message_id = format!("disc_{:06}", self.shared.next());
            let frame = system_frame(
                &message_id,
                "disconnect",
                json!({ "reason": "connection is expired" }),
            );
            let _ = conn.tx.send(Message::Text(frame.into()));
            let tx = conn.tx.clone();
            tokio::spawn(async move {
                tokio::time::sleep(grace).await;
                let _ = tx.send(Message::Close(None));
            });
        }
    }

    /// Makes every current connection go silent: it stays open but neither reads nor writes
    /// (no pongs either), like a connection that died without a FIN.
    pub fn silence_connections(&self) {
        for conn in &self.shared.lock().connections {
            conn.silenced.store(true, Ordering::SeqCst);
        }
    }

    /// Number of open WebSocket connections.
    pub fn connection_count(&self) -> usize {
        self.shared.lock().connections.len()
    }

    /// Events pushed but neither consumed nor dropped yet.
    pub fn pending_count(&self) -> usize {
        self.shared.lock().pending.len()
    }

    /// What happened to each event, in order: pushes, re-pushes, ACKs (with warnings for ACKs
    /// that do not follow the protocol) and drops.
    pub fn journal(&self) -> Vec<StreamJournalEntry> {
        self.shared.lock().journal.clone()
    }

    /// How many times the event with this `messageId` was pushed (0 once consumed or dropped).
    pub fn deliveries(&self, message_id: &str) -> u32 {
        self.shared
            .lock()
            .pending
            .get(message_id)
            .map_or(0, |p| p.deliveries)
    }

    /// Every frame clients sent, in arrival order.
    pub fn replies(&self) -> Vec<RecordedReply> {
        self.shared.lock().replies.clone()
    }

    /// Every `connections/open` body received, in order.
    pub fn open_requests(&self) -> Vec<Value> {
        self.shared.lock().open_requests.clone()
    }

    /// The raw query (`ticket=…`) of every accepted WebSocket connection, in order.
    pub fn connects(&self) -> Vec<String> {
        self.shared.lock().connects.clone()
    }

    /// Polls `condition` every 10 ms until it holds or `timeout` passes; returns whether it held.
    pub async fn wait_for(&self, timeout: Duration, condition: impl Fn(&Self) -> bool) -> bool {
        super::poll_until(timeout, || condition(self)).await
    }
}

fn serialize(frame: &DownstreamFrame) -> String {
    serde_json::to_string(frame).unwrap_or_default()
}

fn system_frame(message_id: &str, topic: &str, data: Value) -> String {
    let mut headers = FrameHeaders::new(message_id, topic);
    headers.time = Some(Value::String(now_ms().to_string()));
    serialize(&DownstreamFrame {
        spec_version: "1.0".to_owned(),
        frame_type: FrameType::System,
        headers,
        data: data.to_string(),
    })
}

/// Pushes a pending event to a live connection of its app, chosen at random as the real
/// gateway load-balances, with that connection's `connectionId` and the current `time`, and
/// journals it as `kind`. Returns whether the event is still pending.
fn send_pending(shared: &Shared, message_id: &str, kind: StreamEntryKind, attempt: usize) -> bool {
    let mut inner = shared.lock();
    let Inner {
        pending, connections, ..
    } = &mut *inner;
    let Some(p) = pending.get_mut(message_id) else {
        return false;
    };
    let live: Vec<&Connection> = connections
        .iter()
        .filter(|c| c.client_id == p.client_id)
        .collect();
    let mut sent_on = None;
    if let Some(conn) = live.get(rand::random::<usize>() % live.len().max(1)) {
        let mut frame = p.frame.clone();
        frame.headers.time = Some(Value::String(now_ms().to_string()));
        frame.headers.extensions.insert(
            "connectionId".to_owned(),
            Value::String(conn.connection_id.clone()),
        );
        if conn.tx.send(Message::Text(serialize(&frame).into())).is_ok() {
            p.deliveries += 1;
            sent_on = Some(conn.id);
        }
    }
    let detail = match (attempt, sent_on) {
        (0, Some(_)) => None,
        (0, None) => Some("no live connection: kept until one connects".to_owned()),
        (n, Some(_)) => Some(format!("re-push {n}")),
        (n, None) => Some(format!("re-push {n}: no live connection")),
    };
    inner.note(kind, message_id, sent_on, detail);
    true
}

/// Sends the event now, then again after each delay of the schedule until it is consumed;
/// drops it one last delay after the last re-push.
fn deliver(shared: &Arc<Shared>, message_id: &str) {
    send_pending(shared, message_id, StreamEntryKind::Pushed, 0);
    let schedule = shared.schedule();
    let Some(last) = schedule.last().copied() else {
        return;
    };
    let (shared, message_id) = (Arc::clone(shared), message_id.to_owned());
    tokio::spawn(async move {
        for (n, delay) in schedule.iter().enumerate() {
            tokio::time::sleep(*delay).await;
            if !send_pending(&shared, &message_id, StreamEntryKind::Redelivered, n + 1) {
                return;
            }
        }
        tokio::time::sleep(last).await;
        let mut inner = shared.lock();
        if let Some(p) = inner.pending.remove(&message_id) {
            let detail = format!(
                "not consumed after {} re-pushes ({} sent in all)",
                schedule.len(),
                p.deliveries
            );
            inner.note(StreamEntryKind::Dropped, &message_id, None, Some(detail));
        }
    });
}

#[derive(serde::Deserialize)]
struct TicketQuery {
    ticket: Option<String>,
}

async fn open_connection(State(shared): State<Arc<Shared>>, Json(body): Json<Value>) -> Response {
    shared.lock().open_requests.push(body.clone());
    let request: OpenConnectionRequest = match serde_json::from_value(body) {
        Ok(r) => r,
        Err(e) => return api_error(StatusCode::BAD_REQUEST, "invalidParameter", &e.to_string()),
    };
    let mut inner = shared.lock();
    if inner.apps.get(&request.client_id).map(|app| &app.secret) != Some(&request.client_secret) {
        return api_error(
            StatusCode::BAD_REQUEST,
            "invalidClientIdOrSecret",
            "无效的clientId或者clientSecret",
        );
    }
    // Real tickets are UUIDs; the `+/=` tail checks that clients URL-encode them.
    let ticket = format!("{:032x}+/=", rand::random::<u128>());
    inner
        .tickets
        .insert(ticket.clone(), (request.client_id, Instant::now()));
    Json(OpenConnectionResponse::new(shared.ws_endpoint.clone(), ticket)).into_response()
}

async fn connect(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<TicketQuery>,
    axum::extract::RawQuery(raw): axum::extract::RawQuery,
    upgrade: WebSocketUpgrade,
) -> Response {
    let claimed = query.ticket.and_then(|t| shared.lock().tickets.remove(&t));
    let client_id = match claimed {
        Some((client_id, issued)) if issued.elapsed() <= TICKET_TTL => client_id,
        _ => {
            return api_error(
                StatusCode::UNAUTHORIZED,
                "invalidTicket",
                "ticket is unknown, used or expired",
            )
        }
    };
    shared.lock().connects.push(raw.unwrap_or_default());
    upgrade.on_upgrade(move |socket| serve(shared, client_id, socket))
}

async fn serve(shared: Arc<Shared>, client_id: String, socket: WebSocket) {
    let id = shared.next();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let silenced = Arc::new(AtomicBool::new(false));
    shared.lock().connections.push(Connection {
        id,
        connection_id: format!("{:016x}", rand::random::<u64>()),
        client_id: client_id.clone(),
        tx,
        silenced: Arc::clone(&silenced),
    });
    // Events that waited for a connection go out now rather than at their next timer.
    let waiting: Vec<String> = shared
        .lock()
        .pending
        .iter()
        .filter(|(_, p)| p.client_id == client_id && p.deliveries == 0)
        .map(|(id, _)| id.clone())
        .collect();
    for message_id in waiting {
        send_pending(&shared, &message_id, StreamEntryKind::Pushed, 0);
    }

    let (mut sink, mut stream) = socket.split();
    loop {
        if silenced.load(Ordering::SeqCst) {
            // Hold the socket open without reading or writing until the client gives up.
            tokio::time::sleep(Duration::from_millis(20)).await;
            if rx.is_closed() {
                break;
            }
            continue;
        }
        tokio::select! {
            outgoing = rx.recv() => match outgoing {
                Some(Message::Close(frame)) => {
                    let _ = sink.send(Message::Close(frame)).await;
                    break;
                }
                Some(message) => {
                    if sink.send(message).await.is_err() {
                        break;
                    }
                }
                None => break,
            },
            incoming = stream.next() => match incoming {
                Some(Ok(Message::Text(text))) => on_reply(&shared, id, text.as_str()),
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            },
        }
    }
    shared.lock().connections.retain(|c| c.id != id);
}

/// How the gateway reads an ACK of an `EVENT` frame.
#[derive(Debug, PartialEq, Eq)]
enum AckReading {
    /// Consumed; the warning, if the ACK does not follow the protocol.
    Consumed(Option<String>),
    /// Push it again on the schedule.
    Later(String),
}

/// The ACK rule: code 200 with `SUCCESS` or without a status (the official Python SDK's form)
/// is consumed; code 200 with `LATER`, or any other code, asks for a re-push.
fn read_event_ack(code: Option<i64>, data: Option<&str>) -> AckReading {
    let status = data
        .and_then(|d| serde_json::from_str::<Value>(d).ok())
        .and_then(|d| d.get("status").cloned());
    match (code, status) {
        (Some(200), Some(Value::String(s))) if s == "SUCCESS" => AckReading::Consumed(None),
        (Some(200), Some(Value::String(s))) if s == "LATER" => AckReading::Later("code 200, status LATER".to_owned()),
        (Some(200), None) => AckReading::Consumed(Some(
            "code 200 without data.status (the Python SDK's form): taken as consumed; the protocol wants \"status\":\"SUCCESS\"".to_owned(),
        )),
        (Some(200), Some(other)) => AckReading::Consumed(Some(format!(
            "code 200 with status {other}, neither SUCCESS nor LATER: taken as consumed"
        ))),
        (Some(code), _) => AckReading::Later(format!("code {code}")),
        (None, _) => AckReading::Later("no numeric code".to_owned()),
    }
}

fn on_reply(shared: &Arc<Shared>, connection: u64, raw: &str) {
    let ack: Option<AckFrame> = serde_json::from_str(raw).ok();
    // Read leniently: an ACK that `AckFrame` would refuse still counts.
    let value: Value = serde_json::from_str(raw).unwrap_or(Value::Null);
    let message_id = value
        .pointer("/headers/messageId")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let mut inner = shared.lock();
    if inner.events.contains_key(message_id) {
        let reading = read_event_ack(
            value.get("code").and_then(Value::as_i64),
            value.get("data").and_then(Value::as_str),
        );
        let pending = inner.pending.contains_key(message_id);
        match reading {
            AckReading::Consumed(warning) => {
                if let Some(warning) = warning {
                    inner.note(
                        StreamEntryKind::Warning,
                        message_id,
                        Some(connection),
                        Some(warning),
                    );
                }
                if inner.pending.remove(message_id).is_some() {
                    inner.note(StreamEntryKind::Consumed, message_id, Some(connection), None);
                }
            }
            AckReading::Later(detail) if pending => {
                inner.note(StreamEntryKind::Later, message_id, Some(connection), Some(detail));
            }
            AckReading::Later(_) => {}
        }
    }
    inner.replies.push(RecordedReply {
        connection,
        raw: raw.to_owned(),
        ack,
    });
}

#[cfg(test)]
mod tests {
    use super::{read_event_ack, AckReading};

    #[test]
    fn the_ack_rule() {
        let consumed = |r: &AckReading| matches!(r, AckReading::Consumed(_));
        let ack = |code, data| read_event_ack(Some(code), Some(data));
        assert_eq!(ack(200, r#"{"status":"SUCCESS"}"#), AckReading::Consumed(None));
        assert!(matches!(
            ack(200, r#"{"processInstanceId":"p"}"#),
            AckReading::Consumed(Some(_))
        ));
        assert!(matches!(ack(200, "not json"), AckReading::Consumed(Some(_))));
        assert!(matches!(ack(200, r#"{"status":"LATER"}"#), AckReading::Later(_)));
        assert!(!consumed(&ack(500, r#"{"status":"SUCCESS"}"#)));
        assert!(!consumed(&read_event_ack(None, None)));
    }
}
