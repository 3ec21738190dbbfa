//! `kube-log-gateway serve`: starts everything the configuration enables and
//! runs until SIGTERM. This is the composition root, where the flow of
//! docs/architecture.md is assembled: sources → spool → sink, with the index
//! mappings the sources register handed to the sink.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::document::dead_letter;
use crate::document::ecs::Namespace;
use crate::document::mapping::IndexMapping;
use crate::server;
use crate::server::admin::{self, Readiness};
use crate::shutdown::Shutdown;
use crate::sink::elasticsearch::client::ClientError;
use crate::sink::elasticsearch::config::IndexPatterns;
use crate::sink::Sink;
use crate::sources::audit_webhook::document::AuditNormalizer;
use crate::sources::audit_webhook::handler::{self, Webhook};
use crate::sources::audit_webhook::limits::ClientLimiter;
use crate::sources::audit_webhook::tls_reload;
use crate::sources::{containers, journald};
use crate::spool::{drain, Spool};

pub async fn run(cfg: Config) -> anyhow::Result<()> {
    let sources_enabled = cfg.server.is_some() || sources_configured(&cfg);
    if !sources_enabled {
        bail!("nothing to run: the config enables neither `server` (audit webhook) nor any of `sources`");
    }
    std::fs::create_dir_all(&cfg.data_dir)
        .with_context(|| format!("data_dir: cannot create {}", cfg.data_dir.display()))?;
    let shutdown = Shutdown::new();
    shutdown.on_signals(cfg.shutdown.grace_period);

    let patterns = cfg.index_patterns();
    let identity = cfg.identity();
    let (sink, sink_task) = start_sink(&cfg, shutdown.clone())?;
    let mut tasks = Vec::new();
    let mut readiness = Readiness::default();

    if let Some(settings) = &cfg.server {
        let spool = Spool::open(&cfg.data_dir, cfg.spool.max_bytes)?;
        readiness.spool = Some(spool.clone());
        tasks.push(tokio::spawn(drain::run(
            spool.clone(),
            sink.clone(),
            cfg.spool.max_in_flight_entries,
            shutdown.clone(),
        )));

        let files = crate::sources::audit_webhook::credentials::load(settings)?;
        let limiter = settings
            .rate_limit
            .events_per_second
            .and_then(std::num::NonZeroU32::new)
            .map(|rate| ClientLimiter::new(rate, settings.rate_limit.burst.and_then(std::num::NonZeroU32::new)));
        let webhook = Arc::new(Webhook {
            normalizer: AuditNormalizer {
                cluster: identity.cluster.clone(),
                host: identity.host.clone(),
                node: identity.node.clone(),
                index: patterns.audit.clone(),
                dead_letter: patterns.dead_letter.clone(),
                redact_secrets: cfg.audit.redact_secrets,
                data_stream_namespace: cfg.audit.data_stream_namespace.as_str().to_string(),
            },
            spool,
            tokens: files.tokens,
            allow_unauthenticated: settings.allow_unauthenticated,
            limiter,
            max_body_bytes: settings.max_body_bytes,
            retry_after_seconds: settings.retry_after_seconds,
        });
        if webhook.limiter.is_some() {
            let w = webhook.clone();
            let stop = shutdown.clone();
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(60)) => {}
                        _ = stop.stopping() => return,
                    }
                    if let Some(l) = &w.limiter {
                        l.prune();
                    }
                }
            });
        }
        let router = Router::new()
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
            .layer(axum::middleware::from_fn(handler::count_responses));
        // `files.tls` proved the files build; the reloader reads them again
        // and keeps them current from here on (certificate rotation).
        let tls: Option<Arc<dyn server::TlsConfigSource>> = match files.tls {
            Some(_) => Some(tls_reload::start(settings, shutdown.clone()).map_err(|e| anyhow::anyhow!("{e}"))?),
            None => None,
        };
        if tls.is_none() {
            tracing::warn!("server.tls.enabled is false: audit events travel in plain HTTP");
        }
        let listener = TcpListener::bind(settings.listen)
            .await
            .with_context(|| format!("server.listen: cannot listen on {}", settings.listen))?;
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
        tasks.push(tokio::spawn(server::serve_with("webhook", listener, tls, router, limits, shutdown.clone())));
    }

    if let Some(journald) = &cfg.sources.journald {
        tasks.push(journald::spawn(journald, &cfg.source_context(&patterns.kubelet), sink.clone(), shutdown.clone())?);
    }
    if let Some(containers) = &cfg.sources.containers {
        let ctx = cfg.source_context(&patterns.containers);
        tasks.push(containers::spawn(containers, &ctx, sink.clone(), shutdown.clone())?);
    }

    let admin_task = match cfg.admin.listen {
        Some(addr) => {
            let listener =
                TcpListener::bind(addr).await.with_context(|| format!("admin.listen: cannot listen on {addr}"))?;
            tracing::info!("admin listening on http://{}/ (healthz, readyz, metrics)", listener.local_addr()?);
            // The admin listener outlives `stopping` so that metrics stay visible
            // while the gateway drains; it is stopped at the very end.
            let admin_stop = Shutdown::new();
            let handle = tokio::spawn(server::serve(
                "admin",
                listener,
                None,
                admin::router(readiness),
                Duration::from_secs(10),
                admin_stop.clone(),
            ));
            Some((admin_stop, handle))
        }
        None => None,
    };

    // Only the sources hold the sink from here on: when they have all stopped,
    // the sink's batcher sees its channel close and finishes.
    drop(sink);
    for task in tasks {
        let _ = task.await;
    }
    let _ = sink_task.await;
    if let Some((stop, handle)) = admin_task {
        stop.abort();
        let _ = handle.await;
    }
    tracing::info!("stopped");
    Ok(())
}

/// Starts the sink with every registered mapping ([`mappings`]).
pub fn start_sink(cfg: &Config, shutdown: Shutdown) -> Result<(Sink, JoinHandle<()>), ClientError> {
    Sink::start(
        &cfg.elasticsearch,
        &cfg.data_dir,
        mappings(&cfg.index_patterns(), &cfg.audit.data_stream_namespace),
        shutdown,
    )
}

/// The index mapping registry: every source's mapping, and the dead letters'.
/// All are installed whichever sources run here, so that one set of templates
/// serves every role.
fn mappings(p: &IndexPatterns, audit_namespace: &Namespace) -> Vec<IndexMapping> {
    vec![
        crate::sources::audit_webhook::document::mapping(&p.audit, audit_namespace.as_str()),
        containers::document::mapping(&p.containers),
        dead_letter::mapping(&p.dead_letter),
        journald::document::mapping(&p.kubelet),
    ]
}

fn sources_configured(cfg: &Config) -> bool {
    cfg.sources.journald.is_some() || cfg.sources.containers.is_some()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::elasticsearch::config::MIN_TOTAL_FIELDS_LIMIT;

    #[test]
    fn every_mapping_fits_the_smallest_total_fields_limit_even_all_in_one_index() {
        let p = crate::sink::elasticsearch::config::Indices::default().patterns().unwrap();
        let all = mappings(&p, &Namespace::default());
        let mut one = all[0].clone();
        for m in &all[1..] {
            one.absorb(m.clone());
        }
        let largest = all.iter().map(IndexMapping::field_count).max().unwrap();
        assert!(largest > 50, "the count sees the fields ({largest})");
        assert!(
            one.field_count() * 2 <= MIN_TOTAL_FIELDS_LIMIT as usize,
            "{} fields in one index leave too little room under {MIN_TOTAL_FIELDS_LIMIT}",
            one.field_count()
        );
    }
}
