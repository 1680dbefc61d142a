//! A ready-made axum route for HTTP-push callbacks.
//!
//! ```no_run
//! use dingtalk_sdk::callback::{axum::callback_route, CallbackHandler};
//! use dingtalk_sdk::crypto::EventCrypto;
//! use dingtalk_sdk::event::Event;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let crypto = EventCrypto::new("token", "kYd8sJ2pQ7wE4rT9uV1xZ3cB6nM0aL5gH8jK2fD4sAx", "dingappkey")?;
//! let (tx, mut rx) = tokio::sync::mpsc::channel::<Event>(1024);
//! let route = callback_route(CallbackHandler::builder(crypto).build(), move |event| {
//!     let tx = tx.clone();
//!     // Enqueue and return at once: the reply must reach DingTalk within 1,500 ms.
//!     async move { tx.try_send(event).map_err(|e| e.to_string()) }
//! });
//! let app = axum::Router::new().route("/dingtalk/events", route);
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! tokio::spawn(async move { while let Some(event) = rx.recv().await { println!("{event:?}") } });
//! axum::serve(listener, app).await?;
//! # Ok(()) }
//! ```

use super::{CallbackError, CallbackHandler};
use crate::event::Event;
use axum::body::{to_bytes, Body};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{post, MethodRouter};
use axum::Json;
use std::fmt::Display;
use std::future::Future;
use std::sync::Arc;

/// A `POST` route that verifies and decrypts each push, hands the typed [`Event`] to
/// `on_event`, and answers with the encrypted `success` reply.
///
/// - A rejected push gets a 4xx JSON body `{"error": <code>, "message": <text>}` with the
///   [`CallbackError`]'s [`status`](CallbackError::status) and [`code`](CallbackError::code)
///   (413 for an oversized body, 401 for a bad signature or stale timestamp, 400 otherwise)
///   and never reaches `on_event`.
/// - If `on_event` fails, the answer is 503 without `success`, so DingTalk records the push as
///   failed (it can be listed through the failed-push API) instead of as delivered.
pub fn callback_route<F, Fut, E>(handler: CallbackHandler, on_event: F) -> MethodRouter
where
    F: Fn(Event) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
    E: Display + 'static,
{
    let handler = Arc::new(handler);
    // The URI, not `RawQuery`: its query is borrowed where `RawQuery` copies it.
    post(move |uri: Uri, body: Body| {
        let handler = Arc::clone(&handler);
        let on_event = on_event.clone();
        async move {
            let limit = handler.max_body_bytes();
            let Ok(body) = to_bytes(body, limit).await else {
                return error_response(&CallbackError::BodyTooLarge {
                    len: limit + 1,
                    limit,
                });
            };
            let outcome = handler.handle_raw(uri.query().unwrap_or_default(), &body);
            match outcome {
                Ok(outcome) => match on_event(outcome.event).await {
                    Ok(()) => Json(outcome.reply).into_response(),
                    Err(err) => {
                        tracing::warn!(error = %err, "callback event handler failed; answering 503");
                        (
                            StatusCode::SERVICE_UNAVAILABLE,
                            Json(serde_json::json!({"error": "handler_failed", "message": err.to_string()})),
                        )
                            .into_response()
                    }
                },
                Err(err) => error_response(&err),
            }
        }
    })
}

fn error_response(err: &CallbackError) -> Response {
    let code = err.code();
    tracing::warn!(error = %err, code, "rejected DingTalk callback");
    let status = StatusCode::from_u16(err.status()).unwrap_or(StatusCode::BAD_REQUEST);
    (
        status,
        Json(serde_json::json!({"error": code, "message": err.to_string()})),
    )
        .into_response()
}
