//! `kube-log-gateway serve`: starts everything the configuration enables and
//! runs until SIGTERM. This is the composition root, where the flow of
//! docs/architecture.md is assembled: a list of sources and one sink, with
//! the index mappings every registered source declares handed to the sink.

use std::time::Duration;

use anyhow::{bail, Context};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::document::dead_letter;
use crate::document::mapping::IndexMapping;
use crate::server;
use crate::server::admin;
use crate::shutdown::Shutdown;
use crate::sink::elasticsearch::client::ClientError;
use crate::sink::elasticsearch::config::IndexPatterns;
use crate::sink::Sink;
use crate::sources::audit_webhook::source::{WebhookSource, REGISTRATION as WEBHOOK};
use crate::sources::{MappingInputs, Registration, Source, REGISTRY};

pub async fn run(cfg: Config) -> anyhow::Result<()> {
    let sources = configured_sources(&cfg)?;
    if sources.is_empty() {
        bail!("nothing to run: the config enables neither `server` (audit webhook) nor any of `sources`");
    }
    std::fs::create_dir_all(&cfg.data_dir)
        .with_context(|| format!("data_dir: cannot create {}", cfg.data_dir.display()))?;
    let shutdown = Shutdown::new();
    shutdown.on_signals(cfg.shutdown.grace_period);

    let (sink, sink_task) = start_sink(&cfg, shutdown.clone())?;
    let mut tasks = Vec::new();
    let mut readiness = Vec::new();
    for (reg, source) in sources {
        let ctx = cfg.source_context(reg, sink.clone(), shutdown.clone());
        let running = source.start(ctx).await.map_err(|e| anyhow::anyhow!("{e}"))?;
        tasks.push(running.task);
        readiness.extend(running.readiness);
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
    let start_failure = sink.start_failure();
    drop(sink);
    for task in tasks {
        let _ = task.await;
    }
    let _ = sink_task.await;
    if let Some((stop, handle)) = admin_task {
        stop.abort();
        let _ = handle.await;
    }
    if let Some(e) = start_failure.get() {
        // The server cannot take the configuration: the error names the setting.
        return Err(e.clone().into());
    }
    tracing::info!("stopped");
    Ok(())
}

/// The sources this configuration turns on: the webhook when `server` is
/// present, then each `sources.<label>` section, built by its own source.
fn configured_sources(cfg: &Config) -> anyhow::Result<Vec<(&'static Registration, Box<dyn Source>)>> {
    let mut sources: Vec<(&'static Registration, Box<dyn Source>)> = Vec::new();
    if let Some(server) = &cfg.server {
        let webhook = WebhookSource { server: server.clone(), audit: cfg.audit.clone(), spool: cfg.spool.clone() };
        sources.push((&WEBHOOK, Box::new(webhook)));
    }
    for (reg, raw) in cfg.sources.enabled() {
        let section = reg.section.as_ref().expect("a section present belongs to a source that has one");
        sources.push((reg, (section.build)(raw)?));
    }
    Ok(sources)
}

/// Starts the sink with every registered mapping ([`mappings`]).
pub fn start_sink(cfg: &Config, shutdown: Shutdown) -> Result<(Sink, JoinHandle<()>), ClientError> {
    Sink::start(
        &cfg.elasticsearch,
        &cfg.data_dir,
        mappings(&cfg.index_patterns(), cfg.audit.data_stream_namespace.as_str()),
        shutdown,
    )
}

/// The index mapping registry: every registered source's mappings, and the
/// dead letters'. All are installed whichever sources run here, so that one
/// set of templates serves every role.
fn mappings(p: &IndexPatterns, data_stream_namespace: &str) -> Vec<IndexMapping> {
    let mut all: Vec<IndexMapping> = REGISTRY
        .iter()
        .flat_map(|reg| {
            let mut mappings = (reg.mappings)(&MappingInputs::new(&p.sources[reg.index_key], data_stream_namespace));
            mappings.iter_mut().for_each(|m| m.sources = vec![reg.kind]);
            mappings
        })
        .collect();
    all.push(dead_letter::mapping(&p.dead_letter));
    all
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::elasticsearch::config::MIN_TOTAL_FIELDS_LIMIT;

    #[test]
    fn every_mapping_fits_the_smallest_total_fields_limit_even_all_in_one_index() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.yaml");
        std::fs::write(&file, "{}").unwrap();
        let cfg = Config::load_with_env(&file, []).unwrap();
        let all = mappings(&cfg.index_patterns(), cfg.audit.data_stream_namespace.as_str());
        assert_eq!(all.len(), REGISTRY.len() + 1, "one per source and the dead letters'");
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
