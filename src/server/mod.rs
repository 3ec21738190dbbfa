//! The HTTPS listener for the webhook and the plain-HTTP admin listener.
//!
//! The webhook's accept loop is written out (tokio-rustls + hyper-util) rather
//! than hidden in a helper crate because it has to carry the verified client
//! certificate of each connection into the request, for authentication and
//! per-client rate limits, and drain connections on shutdown.

pub mod admin;
pub mod peer;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::Request;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use crate::shutdown::Shutdown;
use peer::Peer;

/// How long a client gets to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `router` on `listener` until shutdown begins, then lets open
/// requests finish until the shutdown aborts.
pub async fn serve(
    name: &'static str,
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    router: Router,
    request_timeout: Duration,
    shutdown: Shutdown,
) {
    let acceptor = tls.map(TlsAcceptor::from);
    let graceful = GracefulShutdown::new();
    loop {
        let (stream, addr) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = shutdown.stopping() => break,
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let acceptor = acceptor.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            match acceptor {
                Some(acceptor) => {
                    let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => tls,
                        Ok(Err(e)) => {
                            crate::telemetry::metrics().tls_handshake_failures.inc();
                            tracing::info!(peer = %addr, "TLS handshake refused: {e}");
                            return;
                        }
                        Err(_) => {
                            crate::telemetry::metrics().tls_handshake_failures.inc();
                            tracing::info!(peer = %addr, "TLS handshake timed out");
                            return;
                        }
                    };
                    let certificate =
                        tls.get_ref().1.peer_certificates().and_then(|c| c.first()).map(peer::certificate_names);
                    serve_connection(tls, router, Peer { addr, certificate }, request_timeout, watcher).await;
                }
                None => {
                    serve_connection(stream, router, Peer { addr, certificate: None }, request_timeout, watcher).await
                }
            }
        });
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => tracing::info!("{name}: all connections closed"),
        _ = shutdown.aborted() => tracing::warn!("{name}: grace period over with connections still open"),
    }
}

/// Serves HTTP/1.1 or HTTP/2 on one connection, handing every request the
/// connection's [`Peer`].
async fn serve_connection<I>(io: I, router: Router, peer: Peer, request_timeout: Duration, watcher: Watcher)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let mut req = req.map(Body::new);
        req.extensions_mut().insert(peer.clone());
        let router = router.clone();
        async move {
            match tokio::time::timeout(request_timeout, router.oneshot(req)).await {
                Ok(resp) => resp,
                Err(_) => Ok(axum::response::IntoResponse::into_response((
                    axum::http::StatusCode::REQUEST_TIMEOUT,
                    axum::Json(serde_json::json!({ "error": "request not completed within server.request_timeout" })),
                ))),
            }
        }
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().header_read_timeout(request_timeout).timer(hyper_util::rt::TokioTimer::new());
    let conn = builder.serve_connection(TokioIo::new(io), service);
    let _ = watcher.watch(conn.into_owned()).await;
}
