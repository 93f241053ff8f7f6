//! The management API's accept loop: plain TCP or TLS, HTTP/1.1, with
//! deadlines so that a stalled client cannot hold a connection forever.
//!
//! - the TLS handshake must finish within [`HANDSHAKE_TIMEOUT`];
//! - request headers must arrive within [`HEADER_READ_TIMEOUT`] (hyper);
//! - each read of a request body may stall at most [`BODY_READ_TIMEOUT`]
//!   (tower-http), after which the request fails with 400;
//! - on shutdown, connections get [`DRAIN_TIMEOUT`] to finish.
//!
//! A plaintext request sent to a TLS port fails the handshake and the
//! connection is closed without an answer.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::Request;
use axum::response::Response;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tower::{Service, ServiceBuilder};
use tower_http::timeout::RequestBodyTimeoutLayer;

/// Deadline for a TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Deadline for a request's headers.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Deadline for each read of a request body.
pub const BODY_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long open connections may take to finish after shutdown.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `app` on `listener` until `shutdown` fires.
pub async fn serve<S>(
    listener: TcpListener,
    app: S,
    tls: Option<TlsAcceptor>,
    shutdown: CancellationToken,
) where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    let app = ServiceBuilder::new()
        .layer(RequestBodyTimeoutLayer::new(BODY_READ_TIMEOUT))
        .map_request(|request: hyper::Request<_>| request.map(axum::body::Body::new))
        .service(app);
    let graceful = GracefulShutdown::new();
    loop {
        let (socket, peer) = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: back off briefly.
                    tracing::warn!(%error, "management API: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let service = TowerToHyperService::new(app.clone());
        let watcher = graceful.watcher();
        let tls = tls.clone();
        tokio::spawn(async move {
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT);
            let result =
                match tls {
                    None => {
                        let connection = builder.serve_connection(TokioIo::new(socket), service);
                        watcher.watch(connection).await
                    }
                    Some(acceptor) => {
                        let stream =
                            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(socket))
                                .await
                            {
                                Ok(Ok(stream)) => stream,
                                Ok(Err(error)) => {
                                    tracing::debug!(%peer, %error, "TLS handshake failed");
                                    return;
                                }
                                Err(_) => {
                                    tracing::debug!(%peer, "TLS handshake timed out");
                                    return;
                                }
                            };
                        let connection = builder.serve_connection(TokioIo::new(stream), service);
                        watcher.watch(connection).await
                    }
                };
            if let Err(error) = result {
                tracing::debug!(%peer, %error, "management API connection ended");
            }
        });
    }
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("management API: connections still open after the drain timeout");
    }
}
