//! The [`Sink`]: sources hand it documents and get back a [`DeliveryReport`]
//! once every one of them is delivered or dead-lettered — never before.
//!
//! Starting it wires the three parts: the [`transport`](super::transport)
//! client; the [`flavour`](super::flavour) steps (ask the server what it is,
//! install the lifecycle policy and the index templates in its dialect); and
//! the [`protocol`](super::protocol)'s batcher and workers. The batcher runs
//! from the start: a submission waits at the [`Gate`] only until the template
//! of its own indices is in.

use std::num::NonZeroU32;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::config::ElasticsearchConfig;
use super::flavour::carry_over::{self, Installed};
use super::flavour::{detect, install, lifecycle, templates, Flavour, FlavourError, Stopped};
use super::protocol::batcher::{batcher, Submission};
use super::protocol::concurrency::Concurrency;
use super::protocol::data_stream::Streams;
use super::protocol::dead_letter::DeadLetters;
use super::protocol::gate::Gate;
use super::protocol::rate_limit::DocLimiter;
use super::protocol::worker::Inner;
use super::report::{Cancelled, DeliveryReport};
use super::transport::{ClientError, EsClient};
use crate::document::mapping::IndexMapping;
use crate::document::Document;
use crate::log_throttle::LogThrottle;
use crate::shutdown::Shutdown;

/// Why the sink stopped the gateway at start: what the server cannot do as
/// configured, or a server other than the one pinned. It names the setting.
pub type StartError = FlavourError;

/// A cheap handle; clone it into every source.
#[derive(Clone)]
pub struct Sink {
    tx: mpsc::Sender<Submission>,
    concurrency: Arc<Concurrency>,
    failure: Arc<OnceLock<StartError>>,
}

impl Sink {
    /// Starts the sink's tasks. The server is asked what it is, then the
    /// lifecycle policy (when asked for) and the index templates are installed
    /// in its dialect; a submission waits until the templates of its indices
    /// are in, so no index is ever created with dynamic mappings.
    ///
    /// `mappings` are what the sources registered; the dead-letter file lives
    /// in `data_dir`. When the server cannot take the configuration, the sink
    /// aborts `shutdown` and keeps the reason for [`Sink::start_failure`].
    pub fn start(
        es: &ElasticsearchConfig,
        data_dir: &Path,
        mappings: Vec<IndexMapping>,
        shutdown: Shutdown,
    ) -> Result<(Sink, JoinHandle<()>), ClientError> {
        let client = Arc::new(EsClient::new(es)?);
        let dead_letter_pattern = es.indices.patterns().expect("validated with the config").dead_letter;
        let inner = Arc::new(Inner {
            client: client.clone(),
            dead_letters: DeadLetters::new(dead_letter_pattern, data_dir),
            limiter: es.documents_per_second.and_then(NonZeroU32::new).map(DocLimiter::new),
            streams: es.data_stream.enabled.then(|| Streams::new(client.clone(), es.data_stream.resend_check_margin)),
            retry: es.retry.clone(),
            shutdown: shutdown.clone(),
            error_log: LogThrottle::new(es.dead_letter_log_interval),
            dead_letter_log: LogThrottle::new(es.dead_letter_log_interval),
            blocked_log: LogThrottle::new(es.dead_letter_log_interval),
            item_retry_log: LogThrottle::new(es.dead_letter_log_interval),
            max_document_bytes: es.max_document_bytes,
            dead_letter_max_original_bytes: es.dead_letter_max_original_bytes,
        });
        let (tx, rx) = mpsc::channel(64);
        let concurrency = Concurrency::new(es);
        let gate = Arc::new(match es.install_templates {
            true => Gate::closed(templates::wildcards(&mappings)),
            false => Gate::open(),
        });
        let (carry_tx, carry_rx) = mpsc::unbounded_channel();
        let batching = tokio::spawn(batcher(inner, rx, es.batch.clone(), concurrency.clone(), gate.clone(), carry_tx));
        let es = es.clone();
        let failure = Arc::new(OnceLock::new());
        let failed = failure.clone();
        let handle = tokio::spawn(async move {
            // Raced with the abort as a whole: a request that is never answered
            // must not hold the shutdown past its grace period.
            let prepared = tokio::select! {
                r = prepare(&client, &es, mappings, &gate, &shutdown) => r,
                _ = shutdown.aborted() => Err(Stopped::Cancelled),
            };
            let carrying = match prepared {
                Err(Stopped::Fatal(e)) => {
                    tracing::error!("the gateway cannot run against this server as configured: {e}");
                    let _ = failed.set(e);
                    shutdown.abort();
                    None
                }
                Err(Stopped::Cancelled) | Ok(None) => None,
                Ok(Some(installed)) => {
                    Some(tokio::spawn(carry_over::serve(client, installed, carry_rx, gate, es.retry.clone(), shutdown)))
                }
            };
            let _ = batching.await;
            if let Some(carrying) = carrying {
                carrying.abort();
            }
        });
        Ok((Sink { tx, concurrency, failure }, handle))
    }

    /// Delivers `docs`; resolves when each one is delivered (created or already
    /// present) or dead-lettered. Waits — possibly for a long time — while
    /// the server is unavailable.
    pub async fn deliver(&self, docs: Vec<Document>) -> Result<DeliveryReport, Cancelled> {
        let (done, rx) = oneshot::channel();
        self.tx.send(Submission { docs, done }).await.map_err(|_| Cancelled)?;
        rx.await.map_err(|_| Cancelled)
    }

    /// Why the sink stopped the gateway at start, once it has: read it after
    /// the shutdown, to exit with it.
    pub fn start_failure(&self) -> Arc<OnceLock<StartError>> {
        self.failure.clone()
    }

    /// How many bulk workers may be busy at once right now
    /// (`klg_elasticsearch_concurrency_limit`).
    pub fn concurrency_limit(&self) -> usize {
        self.concurrency.limit()
    }
}

/// The flavour's start-up steps: detect, lifecycle, templates (each template
/// opening the gate for its indices as it is installed). The templates as
/// installed, when the gateway installs them.
async fn prepare(
    client: &EsClient,
    es: &ElasticsearchConfig,
    mappings: Vec<IndexMapping>,
    gate: &Gate,
    shutdown: &Shutdown,
) -> Result<Option<Installed>, Stopped> {
    if !es.install_templates && !es.lifecycle.install {
        // Nothing depends on the answer: ask once, for the log only.
        match detect::until_known_once(client, es.flavour).await {
            Ok(flavour) => tracing::info!(server = %flavour, url = %client.current_url(), "server detected"),
            Err(e) => tracing::info!(url = %client.current_url(), "server not detected (nothing to install): {e}"),
        }
        return Ok(None);
    }
    let flavour = detect::until_known(client, es.flavour, &es.retry, shutdown).await?;
    tracing::info!(server = %flavour, url = %client.current_url(), setting = ?es.flavour, "server detected");
    warn_unavailable(&flavour, es);
    if es.data_stream.enabled {
        for (m, alias) in mappings.iter().flat_map(|m| m.aliases.iter().map(move |a| (m, a))) {
            tracing::warn!(alias = %alias, stream = %m.pattern, "elasticsearch.data_stream.enabled: the data stream \
                {} does not get the alias {alias} its daily indices carry (on Elasticsearch it would clash with \
                that alias on earlier indices); name the stream so that what reads the alias's pattern finds it, \
                as logs-kubernetes.audit_logs-klg does for Elastic's detection rules", m.pattern);
        }
    }
    let mut templates = templates::all(mappings, &es.template, &flavour, es.data_stream.enabled);
    let wildcards: Vec<String> = templates.iter().map(|t| t.wildcard.clone()).collect();
    if es.lifecycle.install {
        let rollover = es.data_stream.enabled;
        lifecycle::until_installed(client, &flavour, &es.lifecycle, &wildcards, rollover, &es.retry, shutdown).await?;
        lifecycle::attach(&mut templates, &flavour, &es.lifecycle);
    }
    if !es.install_templates {
        return Ok(None);
    }
    install::until_installed(client, &flavour, &templates, gate, &es.retry, shutdown).await?;
    let dead_letter_wildcard = es.indices.patterns().expect("validated with the config").dead_letter.wildcard();
    Ok(Some(Installed { flavour, templates, dead_letter_wildcard }))
}

/// A default the server does not have is left out, once said.
fn warn_unavailable(flavour: &Flavour, es: &ElasticsearchConfig) {
    if es.install_templates && es.template.ignore_dynamic_beyond_limit && !flavour.has_ignore_dynamic_beyond_limit() {
        tracing::warn!(server = %flavour, "elasticsearch.template.ignore_dynamic_beyond_limit is on but {flavour} has \
            no such setting: left out of the templates, so past total_fields_limit a document with new keys is \
            dead-lettered (set it to false to silence this)");
    }
}
