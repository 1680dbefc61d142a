//! The HTTP accept loop, hardened against slow and idle clients: every connection must send a
//! complete request head within [`Limits::header_read_timeout`] (which also ends idle
//! keep-alive connections), a request body within [`Limits::body_timeout`], and at most
//! [`Limits::max_connections`] are served at once — past the cap a new connection is closed
//! at once, so a flood of slow sockets cannot keep `/healthz` and the Request URLs from
//! answering for longer than the header timeout. `axum::serve` sets no timer, so none of
//! these applied before.
//!
//! With TLS ([`crate::tls`]), each connection first completes its handshake within the same
//! header-read timeout (a client that never sends its ClientHello is dropped), holding its
//! slot under the cap meanwhile; a failed handshake drops only that connection.

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// Connection limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// Time for a request head, counted from when the server waits for it (so also the idle
    /// time allowed on a kept-alive connection).
    pub header_read_timeout: Duration,
    /// Time for a request body once its head has arrived.
    pub body_timeout: Duration,
    /// Connections served at once.
    pub max_connections: usize,
}

/// Serves `app` on `listener` until `shutdown`, then lets in-flight requests finish; serves it
/// over TLS with `tls`.
pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    limits: Limits,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shutdown: CancellationToken,
) {
    let app = app.layer(tower_http::timeout::RequestBodyTimeoutLayer::new(
        limits.body_timeout,
    ));
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true);
    loop {
        let stream = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors, or a connection reset before accept: keep
                    // serving the others, after a breath so a persistent error cannot spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            tracing::warn!(
                max = limits.max_connections,
                "connection cap reached; closing a new connection"
            );
            drop(stream);
            continue;
        };
        let service = TowerToHyperService::new(app.clone());
        let Some(tls) = &tls else {
            let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
            tokio::spawn(async move {
                if let Err(e) = connection.await {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                drop(slot);
            });
            continue;
        };
        // Watched from now on, so a shutdown waits for the handshake (bounded by its timeout)
        // and then for the request it may carry.
        let watcher = graceful.watcher();
        let handshake = tokio::time::timeout(limits.header_read_timeout, tls.accept(stream));
        let http = http.clone();
        tokio::spawn(async move {
            let stream = match handshake.await {
                Ok(Ok(stream)) => stream,
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "TLS handshake failed; connection dropped");
                    return;
                }
                Err(_elapsed) => {
                    tracing::debug!("no TLS handshake within the header-read timeout; connection dropped");
                    return;
                }
            };
            let connection = watcher.watch(http.serve_connection(TokioIo::new(stream), service));
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
            drop(slot);
        });
    }
    drop(listener);
    tracing::info!("shutting down");
    graceful.shutdown().await;
}
