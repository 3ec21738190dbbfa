//! The audit webhook as a source: its registration, and its start — the
//! spool and its drain to the sink, the HTTPS listener with its router, TLS
//! reloading and the rate limiter's pruning.
//!
//! Its acknowledgement is the spool: a request is answered 200 only once its
//! events are committed there, and an entry leaves the spool only once every
//! document in it is final (`crate::spool::drain`). Its settings are the
//! top-level `server`, `audit` and `spool` sections, so it has no
//! `sources.<label>` section.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use futures::future::BoxFuture;
use tokio::net::TcpListener;

use super::budget::Budget;
use super::config::{AuditConfig, ServerConfig};
use super::document::AuditNormalizer;
use super::handler::{self, Webhook};
use super::limits::ClientLimiter;
use super::{credentials, tls_reload};
use crate::document::SourceKind;
use crate::server::admin::Readiness;
use crate::server::{self, TlsConfigSource};
use crate::shutdown::Shutdown;
use crate::sources::{Registration, Running, SourceContext, SourceError};
use crate::spool::config::SpoolConfig;
use crate::spool::{drain, Spool};

/// The audit webhook in the registry: index key `audit`, configured by `server`.
pub static REGISTRATION: Registration = Registration {
    kind: SourceKind::Audit,
    index_key: "audit",
    default_index: "audit-%Y.%m.%d",
    mappings: |m| vec![super::document::mapping(m.pattern, m.data_stream_namespace)],
    section: None,
};

/// The configured webhook.
pub struct WebhookSource {
    pub server: ServerConfig,
    pub audit: AuditConfig,
    pub spool: SpoolConfig,
}

impl crate::sources::Source for WebhookSource {
    fn start(self: Box<Self>, ctx: SourceContext) -> BoxFuture<'static, Result<Running, SourceError>> {
        Box::pin(async move { self.run(ctx).await })
    }
}

/// `/readyz` asks the spool: not ready while it cannot write (a full disk:
/// the writer thread tries again every second) or is nearly full, so that a
/// Service sends new connections to a replica that can take them.
impl Readiness for Spool {
    fn unready(&self) -> Option<String> {
        if let Some(reason) = self.write_error() {
            return Some(format!("spool cannot take writes: {reason}"));
        }
        (self.used_bytes() >= self.max_bytes() / 100 * 95).then(|| "spool is nearly full".to_string())
    }
}

impl WebhookSource {
    async fn run(self, ctx: SourceContext) -> Result<Running, SourceError> {
        let settings = &self.server;
        let shutdown = ctx.shutdown.clone();
        let spool = Spool::open(&ctx.data_dir, self.spool.max_bytes)?;
        // What spooled documents carry besides their events: a change is logged
        // while entries made before it wait (they are delivered as made).
        let index = ctx.index.to_string();
        spool.made_under(&[
            ("cluster_name", ctx.identity.cluster.as_str()),
            ("elasticsearch.indices.audit", index.as_str()),
            ("elasticsearch.indices.dead_letter", ctx.dead_letter.to_string().as_str()),
            ("audit.data_stream_namespace", self.audit.data_stream_namespace.as_str()),
        ]);
        let drain = tokio::spawn(drain::run(
            spool.clone(),
            ctx.sink.clone(),
            drain::InFlight { entries: self.spool.max_in_flight_entries, bytes: self.spool.max_in_flight_bytes },
            shutdown.clone(),
        ));

        let files = credentials::load(settings)?;
        let limiter = settings
            .rate_limit
            .events_per_second
            .and_then(NonZeroU32::new)
            .map(|rate| ClientLimiter::new(rate, settings.rate_limit.burst.and_then(NonZeroU32::new)));
        let identity = &ctx.identity;
        let webhook = Arc::new(Webhook {
            normalizer: AuditNormalizer {
                cluster: identity.cluster.clone(),
                host: identity.host.clone(),
                node: identity.node.clone(),
                index: ctx.index.clone(),
                dead_letter: ctx.dead_letter.clone(),
                redact_secrets: self.audit.redact_secrets,
                data_stream_namespace: self.audit.data_stream_namespace.as_str().to_string(),
            },
            spool: spool.clone(),
            tokens: files.tokens,
            allow_unauthenticated: settings.allow_unauthenticated,
            limiter,
            max_body_bytes: settings.max_body_bytes,
            retry_after_seconds: settings.retry_after_seconds,
            budget: Budget::new(settings.memory_budget_bytes, settings.memory_budget_wait),
        });
        if webhook.limiter.is_some() {
            tokio::spawn(prune_limiter(webhook.clone(), shutdown.clone()));
        }
        let router = router(settings, webhook);
        // `files.tls` proved the files build; the reloader reads them again
        // and keeps them current from here on (certificate rotation).
        let tls: Option<Arc<dyn TlsConfigSource>> = match files.tls {
            Some(_) => Some(tls_reload::start(settings, shutdown.clone())?),
            None => None,
        };
        if tls.is_none() {
            tracing::warn!("server.tls.enabled is false: audit events travel in plain HTTP");
        }
        let listener = TcpListener::bind(settings.listen)
            .await
            .map_err(|e| format!("server.listen: cannot listen on {}: {e}", settings.listen))?;
        tracing::info!(
            "audit webhook listening on {}://{}{}",
            if tls.is_some() { "https" } else { "http" },
            listener.local_addr()?,
            settings.audit_path
        );
        let limits = server::Limits {
            request_timeout: settings.request_timeout,
            idle_timeout: settings.idle_timeout,
            max_connections: settings.max_connections,
            refusal_drain_bytes: settings.refusal_drain_bytes,
            refusal_drain_timeout: settings.refusal_drain_timeout,
            retry_after_seconds: settings.retry_after_seconds,
        };
        let listen = tokio::spawn(server::serve_with("webhook", listener, tls, router, limits, shutdown));
        let task = tokio::spawn(async move {
            let _ = drain.await;
            let _ = listen.await;
        });
        Ok(Running { task, readiness: Some(Arc::new(spool)) })
    }
}

/// The audit path (POST only), JSON errors for anything else, `Retry-After`
/// on transient refusals, and the response counter.
fn router(settings: &ServerConfig, webhook: Arc<Webhook>) -> Router {
    Router::new()
        .route(
            &settings.audit_path,
            post(handler::handle).fallback(|| async {
                (StatusCode::METHOD_NOT_ALLOWED, Json(serde_json::json!({ "error": "use POST" })))
            }),
        )
        .with_state(webhook)
        .fallback(|uri: axum::http::Uri| async move {
            (StatusCode::NOT_FOUND, Json(serde_json::json!({ "error": format!("no such path: {}", uri.path()) })))
        })
        .layer(axum::middleware::from_fn_with_state(settings.retry_after_seconds, handler::transient_retry_after))
        .layer(axum::middleware::from_fn(handler::count_responses))
}

/// Forgets idle clients' rate-limit buckets once a minute.
async fn prune_limiter(webhook: Arc<Webhook>, stop: Shutdown) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(60)) => {}
            _ = stop.stopping() => return,
        }
        if let Some(l) = &webhook.limiter {
            l.prune();
        }
    }
}
