//! The HTTPS listener for the webhook and the plain-HTTP admin listener.
//!
//! The webhook's accept loop is written out (tokio-rustls + hyper-util) rather
//! than hidden in a helper crate because it has to carry the verified client
//! certificate of each connection into the request, for authentication and
//! per-client rate limits, and because it bounds what a client can hold:
//!
//! - at most `max_connections` connections at once; more are closed at accept;
//! - a connection with no request in flight for `idle_timeout` is closed (this
//!   covers a client that finishes the TLS handshake and never sends a byte,
//!   which hyper's own timeouts do not);
//! - a request body the handler did not read (a refusal answered early) is
//!   read and discarded, up to `refusal_drain_bytes` / `refusal_drain_timeout`,
//!   so that the client reads our status instead of a connection reset.

pub mod admin;
pub mod peer;

use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{header, HeaderValue, Request};
use axum::Router;
use http_body_util::BodyExt;
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use crate::log_throttle::LogThrottle;
use crate::shutdown::Shutdown;
use peer::Peer;

/// How long a client gets to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// After an idle connection was asked to close (HTTP/2 GOAWAY), how long it may
/// take before it is dropped outright.
const IDLE_CLOSE_GRACE: Duration = Duration::from_secs(5);

/// How often the "too many connections" warning may be logged.
const REFUSED_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// What one listener allows a client.
#[derive(Debug, Clone)]
pub struct Limits {
    /// A request must be answered within this (408 otherwise), and an HTTP/1
    /// client must send its request headers within it.
    pub request_timeout: Duration,
    /// A connection with no request in flight for this long is closed.
    pub idle_timeout: Duration,
    /// Connections open at once (TLS handshakes included); more are closed at accept.
    pub max_connections: usize,
    /// At most this many bytes of an unread request body are discarded after an
    /// early answer; past that the connection is closed.
    pub refusal_drain_bytes: u64,
    /// ... and for at most this long.
    pub refusal_drain_timeout: Duration,
    /// `Retry-After` on the 408 for a request not answered in time.
    pub retry_after_seconds: u64,
}

impl Limits {
    /// The admin listener's limits: only `request_timeout` is its own.
    pub fn with_request_timeout(request_timeout: Duration) -> Limits {
        Limits {
            request_timeout,
            idle_timeout: Duration::from_secs(60),
            max_connections: 256,
            refusal_drain_bytes: 1024 * 1024,
            refusal_drain_timeout: Duration::from_secs(5),
            retry_after_seconds: 1,
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ListenerLabels {
    listener: &'static str,
}

struct ConnectionMetrics {
    refused: Family<ListenerLabels, Counter>,
    open: Family<ListenerLabels, Gauge>,
}

fn connection_metrics() -> &'static ConnectionMetrics {
    static METRICS: OnceLock<ConnectionMetrics> = OnceLock::new();
    METRICS.get_or_init(|| {
        let m = ConnectionMetrics { refused: Family::default(), open: Family::default() };
        crate::telemetry::register(|r| {
            r.register(
                "connections_refused",
                "Connections closed at accept because max_connections were open",
                m.refused.clone(),
            );
            r.register("connections_open", "Connections open (TLS handshakes included)", m.open.clone());
        });
        m
    })
}

/// Where a TLS listener gets the configuration for a connection. It is asked
/// once per accepted connection, so a configuration that is replaced (the
/// webhook's, when its certificate files rotate: see
/// `sources::audit_webhook::tls_reload`) reaches every new handshake, while a
/// connection already open keeps the one it was accepted with.
pub trait TlsConfigSource: Send + Sync {
    fn current(&self) -> Arc<rustls::ServerConfig>;
}

/// Serves `router` on `listener` with the admin listener's [`Limits`].
pub async fn serve(
    name: &'static str,
    listener: TcpListener,
    tls: Option<Arc<dyn TlsConfigSource>>,
    router: Router,
    request_timeout: Duration,
    shutdown: Shutdown,
) {
    serve_with(name, listener, tls, router, Limits::with_request_timeout(request_timeout), shutdown).await
}

/// Serves `router` on `listener` until shutdown begins, then lets open
/// requests finish until they are done or the shutdown aborts.
pub async fn serve_with(
    name: &'static str,
    listener: TcpListener,
    tls: Option<Arc<dyn TlsConfigSource>>,
    router: Router,
    limits: Limits,
    shutdown: Shutdown,
) {
    let limits = Arc::new(limits);
    let max = limits.max_connections.clamp(1, u32::MAX as usize);
    let slots = Arc::new(Semaphore::new(max));
    let labels = ListenerLabels { listener: name };
    let metrics = connection_metrics();
    let refused_log = LogThrottle::new(REFUSED_LOG_INTERVAL);
    // Exported as 0 from the start, not only after the first refusal.
    let _ = metrics.refused.get_or_create(&labels);
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
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            metrics.refused.get_or_create(&labels).inc();
            if let Some(suppressed) = refused_log.check() {
                tracing::warn!(
                    peer = %addr,
                    suppressed,
                    "{name}: {max} connections open (max_connections): closing new connections at accept"
                );
            }
            // A reset, not a FIN: kube-apiserver retries a connection reset,
            // but drops the batch on an EOF in the TLS handshake.
            let _ = stream.set_zero_linger();
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        // The configuration current at accept: this connection keeps it.
        let acceptor = tls.as_ref().map(|t| TlsAcceptor::from(t.current()));
        let limits = limits.clone();
        let shutdown = shutdown.clone();
        let open = metrics.open.get_or_create(&labels).clone();
        open.inc();
        tokio::spawn(async move {
            let _slot = slot;
            let _open = DecOnDrop(open);
            match acceptor {
                Some(acceptor) => {
                    let handshake = tokio::select! {
                        r = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)) => r,
                        _ = shutdown.stopping() => return,
                    };
                    let tls = match handshake {
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
                    serve_connection(tls, router, Peer { addr, certificate }, limits, shutdown).await;
                }
                None => serve_connection(stream, router, Peer { addr, certificate: None }, limits, shutdown).await,
            }
        });
    }
    drop(listener);
    // Every connection holds a slot until it ends: all slots back = all closed.
    // Biased: when the abort comes with every connection already closed (the
    // end of an orderly stop), that is what happened.
    tokio::select! {
        biased;
        _ = slots.acquire_many(max as u32) => tracing::info!("{name}: all connections closed"),
        _ = shutdown.aborted() => {
            let open = max - slots.available_permits();
            if shutdown.is_forced() {
                tracing::warn!("{name}: grace period over with {open} connections still open: closing them");
            } else {
                tracing::info!("{name}: stopped with {open} idle or unfinished connections: closing them");
            }
        }
    }
}

struct DecOnDrop(Gauge);

impl Drop for DecOnDrop {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Requests in flight on one connection, and since when none has been.
struct Activity {
    state: Mutex<(usize, Instant)>,
}

impl Activity {
    fn new() -> Arc<Activity> {
        Arc::new(Activity { state: Mutex::new((0, Instant::now())) })
    }

    fn begin(self: &Arc<Self>) -> InFlight {
        self.state.lock().expect("activity lock").0 += 1;
        InFlight(self.clone())
    }

    /// Resolves once no request has been in flight for `timeout`.
    async fn idle_for(&self, timeout: Duration) {
        loop {
            let (in_flight, since) = *self.state.lock().expect("activity lock");
            if in_flight > 0 {
                tokio::time::sleep(timeout).await;
                continue;
            }
            let deadline = since + timeout;
            if Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep_until(deadline.into()).await;
        }
    }
}

/// Set by a handler (found in the request's extensions) once the request's
/// effect can no longer be undone, e.g. its batch was handed to the spool: from
/// then on `request_timeout` no longer cuts it short with a 408 — the client
/// gets the real answer (200 once spooled, or the error), however long it
/// takes. A 408 would tell a client that resends on it a lie.
#[derive(Clone, Default)]
pub struct Committing(Arc<std::sync::atomic::AtomicBool>);

impl Committing {
    pub fn set(&self) {
        self.0.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    fn is_set(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// A response extension: the request's unread body may be read and dropped
/// after the answer up to this many bytes, instead of
/// `server.refusal_drain_bytes`. For a refusal whose client sends the whole
/// body before it reads the answer (the memory budget's 503): closing the
/// connection early would reset it before it reads why.
#[derive(Debug, Clone, Copy)]
pub struct DrainUpTo(pub u64);

/// One request in flight: from the moment hyper hands it over until its
/// answer is produced and whatever body it left unread has been drained.
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut state = self.0.state.lock().expect("activity lock");
        state.0 -= 1;
        state.1 = Instant::now();
    }
}

/// Serves HTTP/1.1 or HTTP/2 on one connection, handing every request the
/// connection's [`Peer`], until the client closes it, it has been idle for
/// `idle_timeout`, or shutdown.
async fn serve_connection<I>(io: I, router: Router, peer: Peer, limits: Arc<Limits>, shutdown: Shutdown)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let activity = Activity::new();
    let addr = peer.addr;
    let service = {
        let activity = activity.clone();
        let limits = limits.clone();
        hyper::service::service_fn(move |req: Request<Incoming>| {
            let in_flight = activity.begin();
            let unread = Arc::new(Mutex::new(None));
            let mut req = req.map(|incoming| Body::new(Tracked { inner: Some(incoming), unread: unread.clone() }));
            req.extensions_mut().insert(peer.clone());
            let committing = Committing::default();
            req.extensions_mut().insert(committing.clone());
            let router = router.clone();
            let limits = limits.clone();
            async move {
                let answer = router.oneshot(req);
                tokio::pin!(answer);
                let resp = match tokio::time::timeout(limits.request_timeout, &mut answer).await {
                    Ok(resp) => resp,
                    Err(_) if committing.is_set() => answer.await,
                    Err(_) => Ok(request_timeout(limits.retry_after_seconds)),
                };
                let rest = unread.lock().expect("unread body lock").take();
                let up_to = resp.as_ref().ok().and_then(|r| r.extensions().get::<DrainUpTo>()).map(|d| d.0);
                let drain_bytes = up_to.unwrap_or(0).max(limits.refusal_drain_bytes);
                match rest {
                    // The answer goes out now; the rest of the body is read
                    // meanwhile, so the client is not reset while still sending.
                    Some(rest) => {
                        tokio::spawn(drain(rest, drain_bytes, limits.refusal_drain_timeout, in_flight));
                    }
                    None => drop(in_flight),
                }
                resp
            }
        })
    };
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // hyper starts its header timer whenever it waits for a request's head,
    // also on an idle keep-alive connection between requests: tied to
    // `request_timeout` it closed idle HTTP/1.1 connections after 20 s, not
    // `idle_timeout`. Tied to `idle_timeout` it bounds a client that sends half
    // its headers as long as one that sends nothing, like HTTP/2.
    builder.http1().header_read_timeout(limits.idle_timeout).timer(TokioTimer::new());
    builder.http2().timer(TokioTimer::new());
    let conn = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    let mut closing: Option<Instant> = None;
    loop {
        let grace_over = async {
            match closing {
                Some(since) => tokio::time::sleep_until((since + IDLE_CLOSE_GRACE).into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = conn.as_mut() => return,
            _ = activity.idle_for(limits.idle_timeout), if closing.is_none() => {
                tracing::debug!(peer = %addr, idle = ?limits.idle_timeout, "closing an idle connection");
                conn.as_mut().graceful_shutdown();
                closing = Some(Instant::now());
            }
            _ = shutdown.stopping(), if closing.is_none() => {
                conn.as_mut().graceful_shutdown();
                closing = Some(Instant::now());
            }
            _ = grace_over, if !shutdown.is_stopping() => return,
            _ = shutdown.aborted() => return,
        }
    }
}

/// The 408 for a request not answered within `request_timeout`. It is
/// transient (a stalled client or a slow disk), so it carries `Retry-After`:
/// kube-apiserver drops a 408 without it at once.
fn request_timeout(retry_after_seconds: u64) -> axum::response::Response {
    let mut resp = axum::response::IntoResponse::into_response((
        axum::http::StatusCode::REQUEST_TIMEOUT,
        axum::Json(serde_json::json!({ "error": "request not completed within server.request_timeout" })),
    ));
    resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(retry_after_seconds));
    resp
}

/// Reads and discards a request body the handler left unread, within bounds.
async fn drain(mut body: Incoming, max_bytes: u64, max_time: Duration, in_flight: InFlight) {
    let finished = tokio::time::timeout(max_time, async {
        let mut seen = 0u64;
        while let Some(frame) = body.frame().await {
            let Ok(frame) = frame else { return true };
            seen += frame.data_ref().map_or(0, |d| d.len() as u64);
            if seen > max_bytes {
                return false;
            }
        }
        true
    })
    .await
    .unwrap_or(false);
    if !finished {
        tracing::debug!("unread request body over server.refusal_drain_bytes/timeout: closing the connection");
    }
    drop(body);
    drop(in_flight);
}

/// The request body as the router sees it. If the router drops it before the
/// end, what is left goes back to the connection (`unread`) to be drained.
struct Tracked {
    inner: Option<Incoming>,
    unread: Arc<Mutex<Option<Incoming>>>,
}

impl HttpBody for Tracked {
    type Data = bytes::Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let Some(inner) = self.inner.as_mut() else { return Poll::Ready(None) };
        let polled = Pin::new(inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None) | Poll::Ready(Some(Err(_)))) {
            // Finished (or broken): nothing left to drain.
            self.inner = None;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(HttpBody::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.as_ref().map_or_else(|| SizeHint::with_exact(0), HttpBody::size_hint)
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        if let Some(inner) = self.inner.take() {
            if !inner.is_end_stream() {
                *self.unread.lock().expect("unread body lock") = Some(inner);
            }
        }
    }
}
