//! The Stream-mode client: a supervisor that keeps one WebSocket to the DingTalk gateway alive
//! and hands every event to an async handler.
//!
//! - Opens a connection (`POST /v1.0/gateway/connections/open`) with a fresh single-use
//!   ticket each time, and connects to `<endpoint>?ticket=<url-encoded ticket>`.
//! - ACKs every `EVENT` with `{"status":"SUCCESS"}` when the handler succeeds and `LATER`
//!   when it fails, so DingTalk re-sends it (at-least-once; de-duplicate by `eventId`).
//! - Answers `ping` with its `opaque`; on `disconnect` opens the new connection *before* the
//!   old one closes and drains the old one; sends WebSocket pings and reconnects when nothing
//!   arrives for the idle timeout (a silently dead connection is the most reported failure of
//!   DingTalk SDKs); reconnects after any failure with jittered, capped exponential backoff.
//! - Everything runs inside the future returned by [`StreamClient::run`]: it stops when the
//!   shutdown future completes, and dropping or aborting it stops it too (no detached tasks).
//!
//! ```no_run
//! use dingtalk_sdk::stream::client::StreamClient;
//! use dingtalk_sdk::event::Event;
//!
//! # async fn run() -> dingtalk_sdk::Result<()> {
//! let client = StreamClient::builder("dingappkey", "app-secret").build()?;
//! // Any future: a ctrl-c signal, a cancellation token, a oneshot receiver…
//! let shutdown = tokio::time::sleep(std::time::Duration::from_secs(3600));
//! client
//!     .run(
//!         |event: Event| async move {
//!             println!("{}: {:?}", event.event_type(), event.meta().event_id);
//!             Ok::<(), std::convert::Infallible>(())
//!         },
//!         shutdown,
//!     )
//!     .await;
//! # Ok(()) }
//! ```

use super::frame::{
    AckFrame, DownstreamFrame, EventAckStatus, FrameType, OpenConnectionRequest, OpenConnectionResponse,
};
use crate::error::{Error, Result};
use crate::event::Event;
use crate::transport;
use futures_util::{SinkExt as _, StreamExt as _};
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::{sleep, sleep_until, Instant};
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tracing::Instrument as _;

pub use crate::transport::DEFAULT_API_BASE;

type Socket = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

/// The operation name of `connections/open` in [`Error`]s.
const OPEN_CONNECTION: &str = "OpenConnection";
/// Connect timeout of the built-in HTTP client.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a connection attempt or a live connection failed; logged, then the supervisor
/// reconnects after a backoff.
#[derive(Debug, thiserror::Error)]
enum StreamError {
    /// `connections/open` failed: an HTTP error status with DingTalk's code
    /// ([`Error::Api`]), a transport failure, or an answer that does not decode.
    #[error("connections/open failed: {0}")]
    Open(#[source] Error),
    /// The endpoint the gateway returned is not a URL.
    #[error("the gateway returned an endpoint that is not a URL ({endpoint:?}): {source}")]
    BadEndpoint {
        endpoint: String,
        #[source]
        source: url::ParseError,
    },
    /// The WebSocket handshake failed.
    #[error("WebSocket connect failed: {0}")]
    Connect(#[source] Box<tungstenite::Error>),
    /// The WebSocket handshake did not finish in time.
    #[error("WebSocket connect did not finish within {0:?}")]
    ConnectTimeout(Duration),
    /// Reading from or writing to the WebSocket failed.
    #[error("WebSocket {action} failed: {source}")]
    Socket {
        /// What was being done: `read`, `pong`, `ping`, `ack`.
        action: &'static str,
        #[source]
        source: Box<tungstenite::Error>,
    },
    /// Nothing (frame or pong) arrived for the idle timeout: the connection is presumed dead.
    #[error("no traffic for {0:?}")]
    Idle(Duration),
    /// An ACK frame did not serialize.
    #[error("ACK does not serialize: {0}")]
    Ack(#[source] serde_json::Error),
}

impl StreamError {
    fn socket(action: &'static str) -> impl FnOnce(tungstenite::Error) -> Self {
        move |source| StreamError::Socket {
            action,
            source: Box::new(source),
        }
    }
}

/// What the supervisor is doing, observable through [`StreamClient::state`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConnState {
    /// Not started yet.
    Idle,
    /// Opening a connection.
    Connecting,
    /// Connected to the gateway.
    Connected {
        /// How many connections have been established so far (1 for the first).
        generation: u64,
    },
    /// Waiting before the next attempt after a failure.
    Backoff {
        /// Consecutive failures so far.
        attempt: u32,
        /// How long this wait lasts.
        delay: Duration,
    },
    /// Stopped on request.
    Stopped,
}

/// Jittered, capped exponential backoff between reconnect attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Backoff {
    /// Delay after the first failure.
    pub initial: Duration,
    /// Upper bound of any delay.
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(30),
        }
    }
}

impl Backoff {
    /// A backoff from `initial` doubling up to `max`.
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self { initial, max }
    }

    /// The delay before attempt `attempt` (1-based): `initial · 2^(attempt-1)`, capped at `max`,
    /// then scaled by a random factor in [0.5, 1.0] so replicas do not reconnect in lockstep.
    pub fn delay(&self, attempt: u32) -> Duration {
        transport::backoff(self.initial, self.max, attempt, rand::random::<f64>())
    }
}

struct Config {
    request: OpenConnectionRequest,
    api_base: String,
    /// `<api_base>/v1.0/gateway/connections/open`.
    open_url: String,
    http: reqwest::Client,
    timeout: Duration,
    backoff: Backoff,
    keepalive: Duration,
    idle_timeout: Duration,
    drain_timeout: Duration,
}

/// A Stream-mode client for one DingTalk app.
pub struct StreamClient {
    config: Arc<Config>,
    state: watch::Sender<ConnState>,
}

impl fmt::Debug for StreamClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamClient")
            .field("request", &self.config.request)
            .field("api_base", &self.config.api_base)
            .field("state", &*self.state.borrow())
            .finish()
    }
}

/// Builder for [`StreamClient`].
pub struct StreamClientBuilder {
    request: OpenConnectionRequest,
    api_base: String,
    http: Option<reqwest::Client>,
    timeout: Duration,
    backoff: Backoff,
    keepalive: Duration,
    idle_timeout: Duration,
    drain_timeout: Duration,
}

impl fmt::Debug for StreamClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamClientBuilder")
            .field("request", &self.request)
            .field("api_base", &self.api_base)
            .finish_non_exhaustive()
    }
}

impl StreamClientBuilder {
    /// The API host that serves `connections/open` (default `https://api.dingtalk.com`);
    /// point it at a mock gateway in tests.
    pub fn api_base(mut self, base: impl Into<String>) -> Self {
        self.api_base = transport::trim_base(&base.into());
        self
    }

    /// Client identification sent as `ua`.
    pub fn user_agent(mut self, ua: impl Into<String>) -> Self {
        self.request.ua = ua.into();
        self
    }

    /// The local IP address(es) to report, comma-separated.
    pub fn local_ip(mut self, ip: impl Into<String>) -> Self {
        self.request.local_ip = Some(ip.into());
        self
    }

    /// A reqwest client to use for `connections/open` (proxies, TLS settings, pools). The
    /// [`timeout`](Self::timeout) still applies.
    pub fn http_client(mut self, http: reqwest::Client) -> Self {
        self.http = Some(http);
        self
    }

    /// Timeout of the `connections/open` request and of the WebSocket handshake. Default: 10 s.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Reconnect backoff. Default: 1 s doubling to 30 s, jittered.
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// How often to send a WebSocket ping. Default: 20 s.
    pub fn keepalive(mut self, every: Duration) -> Self {
        self.keepalive = every;
        self
    }

    /// Reconnect when nothing (frame or pong) arrived for this long. Default: 60 s.
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// After a `disconnect`, how long the old connection may keep delivering frames once the
    /// new one is up. Default: 10 s (the gateway closes about 10 s after `disconnect`).
    pub fn drain_timeout(mut self, timeout: Duration) -> Self {
        self.drain_timeout = timeout;
        self
    }

    /// Finishes the client.
    ///
    /// # Errors
    /// [`Error::Config`] for an API base that is not http(s) or a built-in HTTP client that
    /// cannot be built (e.g. no TLS backend available).
    pub fn build(self) -> Result<StreamClient> {
        transport::check_base(&self.api_base)?;
        let http = match self.http {
            Some(http) => http,
            None => transport::http_client(CONNECT_TIMEOUT, &self.request.ua)?,
        };
        Ok(StreamClient {
            config: Arc::new(Config {
                open_url: format!("{}/v1.0/gateway/connections/open", self.api_base),
                request: self.request,
                api_base: self.api_base,
                http,
                timeout: self.timeout,
                backoff: self.backoff,
                keepalive: self.keepalive,
                idle_timeout: self.idle_timeout,
                drain_timeout: self.drain_timeout,
            }),
            state: watch::channel(ConnState::Idle).0,
        })
    }
}

/// Why a connection ended.
enum Exit {
    Shutdown,
    /// The gateway closed the connection cleanly: reconnect at once.
    Closed,
    /// Something failed: reconnect after a backoff.
    Failed(StreamError),
}

impl StreamClient {
    /// Starts a builder for the app with this Client ID and secret, subscribed to all events.
    pub fn builder(client_id: impl Into<String>, client_secret: impl Into<String>) -> StreamClientBuilder {
        let mut request = OpenConnectionRequest::new(client_id, client_secret);
        request.ua = transport::USER_AGENT.to_owned();
        StreamClientBuilder {
            request,
            api_base: DEFAULT_API_BASE.to_owned(),
            http: None,
            timeout: Duration::from_secs(10),
            backoff: Backoff::default(),
            keepalive: Duration::from_secs(20),
            idle_timeout: Duration::from_secs(60),
            drain_timeout: Duration::from_secs(10),
        }
    }

    /// Watches the connection state.
    pub fn state(&self) -> watch::Receiver<ConnState> {
        self.state.subscribe()
    }

    /// Receives events until `shutdown` completes, reconnecting as needed.
    ///
    /// `handler` is called once per delivered event, in order. `Ok` ACKs the event `SUCCESS`;
    /// `Err` ACKs it `LATER` so DingTalk delivers it again. Events can also be delivered more
    /// than once by DingTalk itself: make the handler idempotent (e.g. by
    /// [`Event::idempotency_key`]).
    pub async fn run<H, Fut, E>(&self, handler: H, shutdown: impl Future<Output = ()>)
    where
        H: Fn(Event) -> Fut,
        Fut: Future<Output = Result<(), E>>,
        E: fmt::Display,
    {
        let span = tracing::info_span!("dingtalk_stream", client_id = %self.config.request.client_id);
        self.supervise(handler, shutdown).instrument(span).await;
    }

    async fn supervise<H, Fut, E>(&self, handler: H, shutdown: impl Future<Output = ()>)
    where
        H: Fn(Event) -> Fut,
        Fut: Future<Output = Result<(), E>>,
        E: fmt::Display,
    {
        tokio::pin!(shutdown);
        let mut failures: u32 = 0;
        let mut generation: u64 = 0;
        loop {
            self.state.send_replace(ConnState::Connecting);
            let connected = tokio::select! {
                () = &mut shutdown => break,
                connected = self.connect() => connected,
            };
            let exit = match connected {
                Ok(socket) => {
                    generation += 1;
                    self.state.send_replace(ConnState::Connected { generation });
                    self.serve(socket, &handler, &mut shutdown, &mut generation).await
                }
                Err(error) => Exit::Failed(error),
            };
            match exit {
                Exit::Shutdown => break,
                Exit::Closed => {
                    tracing::info!(
                        client_id = %self.config.request.client_id,
                        reason = "closed by the gateway",
                        attempt = 0,
                        delay_ms = 0,
                        "stream reconnecting"
                    );
                    failures = 0;
                }
                Exit::Failed(error) => {
                    failures = failures.saturating_add(1);
                    let delay = self.config.backoff.delay(failures);
                    tracing::warn!(
                        client_id = %self.config.request.client_id,
                        reason = "failed",
                        error = %error,
                        attempt = failures,
                        delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                        "stream reconnecting"
                    );
                    self.state.send_replace(ConnState::Backoff {
                        attempt: failures,
                        delay,
                    });
                    tokio::select! {
                        () = &mut shutdown => break,
                        () = sleep(delay) => {}
                    }
                }
            }
        }
        self.state.send_replace(ConnState::Stopped);
    }

    /// Opens a connection: a fresh ticket, then the WebSocket.
    async fn connect(&self) -> Result<Socket, StreamError> {
        let cfg = &self.config;
        let request = cfg
            .http
            .post(&cfg.open_url)
            .timeout(cfg.timeout)
            .json(&cfg.request);
        let body = transport::execute(OPEN_CONNECTION, request)
            .await
            .map_err(StreamError::Open)?;
        let open: OpenConnectionResponse =
            transport::decode(OPEN_CONNECTION, &body).map_err(StreamError::Open)?;
        let mut endpoint = url::Url::parse(&open.endpoint).map_err(|source| StreamError::BadEndpoint {
            endpoint: open.endpoint.clone(),
            source,
        })?;
        // Tickets may contain `+/=`: they must be URL-encoded (the Node and Go SDKs do not).
        endpoint.query_pairs_mut().append_pair("ticket", &open.ticket);
        let (socket, _) =
            tokio::time::timeout(cfg.timeout, tokio_tungstenite::connect_async(endpoint.as_str()))
                .await
                .map_err(|_| StreamError::ConnectTimeout(cfg.timeout))?
                .map_err(|e| StreamError::Connect(Box::new(e)))?;
        // The host only: the query carries the connection ticket.
        tracing::info!(
            client_id = %cfg.request.client_id,
            endpoint = endpoint.host_str().unwrap_or_default(),
            "stream connected"
        );
        Ok(socket)
    }

    /// Serves one connection (and, after a `disconnect`, drains its predecessor).
    async fn serve<H, Fut, E, S>(
        &self,
        mut primary: Socket,
        handler: &H,
        shutdown: &mut std::pin::Pin<&mut S>,
        generation: &mut u64,
    ) -> Exit
    where
        H: Fn(Event) -> Fut,
        Fut: Future<Output = Result<(), E>>,
        E: fmt::Display,
        S: Future<Output = ()>,
    {
        let cfg = &self.config;
        let mut draining: Option<(Socket, Instant)> = None;
        let mut keepalive = tokio::time::interval(cfg.keepalive);
        keepalive.tick().await;
        let mut last_seen = Instant::now();
        loop {
            let drain_deadline = draining.as_ref().map(|(_, at)| *at);
            tokio::select! {
                () = shutdown.as_mut() => {
                    let _ = primary.close(None).await;
                    if let Some((mut old, _)) = draining.take() {
                        let _ = old.close(None).await;
                    }
                    return Exit::Shutdown;
                }
                message = primary.next() => {
                    last_seen = Instant::now();
                    match message {
                        Some(Ok(Message::Text(text))) => {
                            match self.on_frame(&mut primary, text.as_str(), handler).await {
                                Ok(true) => {
                                    // `disconnect`: open the new connection before the old closes.
                                    tracing::info!(
                                        client_id = %cfg.request.client_id,
                                        reason = "the gateway asked (disconnect)",
                                        attempt = 0,
                                        delay_ms = 0,
                                        "stream reconnecting"
                                    );
                                    match self.connect().await {
                                        Ok(next) => {
                                            *generation += 1;
                                            self.state.send_replace(ConnState::Connected { generation: *generation });
                                            let old = std::mem::replace(&mut primary, next);
                                            draining = Some((old, Instant::now() + cfg.drain_timeout));
                                        }
                                        Err(error) => return Exit::Failed(error),
                                    }
                                }
                                Ok(false) => {}
                                Err(error) => return Exit::Failed(error),
                            }
                        }
                        Some(Ok(Message::Ping(payload))) => {
                            if let Err(e) = primary.send(Message::Pong(payload)).await {
                                return Exit::Failed(StreamError::socket("pong")(e));
                            }
                        }
                        Some(Ok(Message::Close(_))) | None => return Exit::Closed,
                        Some(Ok(_)) => {}
                        Some(Err(e)) => return Exit::Failed(StreamError::socket("read")(e)),
                    }
                }
                message = next_message(&mut draining) => {
                    match message {
                        Some(Ok(Message::Text(text))) => {
                            if let Some((old, _)) = draining.as_mut() {
                                if let Err(error) = self.on_frame(old, text.as_str(), handler).await {
                                    tracing::debug!(%error, "draining stream connection failed; dropping it");
                                    draining = None;
                                }
                            }
                        }
                        Some(Ok(_)) => {}
                        Some(Err(_)) | None => draining = None,
                    }
                }
                () = sleep_until_opt(drain_deadline) => {
                    if let Some((mut old, _)) = draining.take() {
                        let _ = old.close(None).await;
                    }
                }
                _ = keepalive.tick() => {
                    if last_seen.elapsed() > cfg.idle_timeout {
                        return Exit::Failed(StreamError::Idle(cfg.idle_timeout));
                    }
                    if let Err(e) = primary.send(Message::Ping(Vec::new().into())).await {
                        return Exit::Failed(StreamError::socket("ping")(e));
                    }
                }
            }
        }
    }

    /// Handles one text frame; `Ok(true)` means the gateway asked us to reconnect.
    async fn on_frame<H, Fut, E>(
        &self,
        socket: &mut Socket,
        text: &str,
        handler: &H,
    ) -> Result<bool, StreamError>
    where
        H: Fn(Event) -> Fut,
        Fut: Future<Output = Result<(), E>>,
        E: fmt::Display,
    {
        let frame: DownstreamFrame = match serde_json::from_str(text) {
            Ok(frame) => frame,
            Err(e) => {
                tracing::warn!(error = %e, "unparseable stream frame ignored");
                return Ok(false);
            }
        };
        let message_id = frame.headers.message_id.clone();
        let ack = match frame.frame_type {
            FrameType::System if frame.headers.topic == "ping" => AckFrame::pong(&frame),
            FrameType::System if frame.headers.topic == "disconnect" => return Ok(true),
            FrameType::System => return Ok(false),
            FrameType::Event => {
                let status = match frame.event() {
                    Ok(Some(event)) => {
                        let event_id = event.meta().event_id.clone();
                        match handler(event).await {
                            Ok(()) => EventAckStatus::Success,
                            Err(e) => {
                                tracing::warn!(error = %e, event_id = event_id.as_deref(), "stream event handler failed; asking for redelivery");
                                EventAckStatus::Later
                            }
                        }
                    }
                    Ok(None) => EventAckStatus::Success,
                    Err(e) => {
                        tracing::warn!(error = %e, %message_id, "malformed stream event; asking for redelivery");
                        EventAckStatus::Later
                    }
                };
                let message = if status == EventAckStatus::Success {
                    "OK"
                } else {
                    "retry later"
                };
                AckFrame::event(&message_id, status, message)
            }
            // Callbacks (bots, cards) are not subscribed to; say so, as the Go SDK does.
            FrameType::Callback | FrameType::Other => AckFrame::not_supported(&message_id),
        };
        let json = serde_json::to_string(&ack).map_err(StreamError::Ack)?;
        socket
            .send(Message::Text(json.into()))
            .await
            .map_err(StreamError::socket("ack"))?;
        Ok(false)
    }
}

async fn next_message(
    draining: &mut Option<(Socket, Instant)>,
) -> Option<Result<Message, tokio_tungstenite::tungstenite::Error>> {
    match draining {
        Some((socket, _)) => socket.next().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(at) => sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_and_caps() {
        let b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        for attempt in 1..=30 {
            let d = b.delay(attempt);
            let exp = Duration::from_millis(100)
                .saturating_mul(1 << (attempt - 1).min(16))
                .min(Duration::from_secs(1));
            assert!(d >= exp / 2 && d <= exp, "attempt {attempt}: {d:?} vs {exp:?}");
        }
    }
}
