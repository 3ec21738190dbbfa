//! Kubernetes Events (`events.k8s.io/v1`): evictions, OOM kills, failed
//! scheduling, back-offs — what the kubelet and the controllers write to the
//! Events API rather than to their logs. Runs in the gateway role: one
//! cluster-wide watch; replicas may run it too, since the `_id`s are
//! deterministic (docs/events.md).
//!
//! * [`config`] — `sources.events`.
//! * [`watch`] — list, then watch; 410 Gone lists again.
//! * [`document`] — one Event revision → one document (and the events index mapping).
//! * [`position`] — the resourceVersion, saved only behind delivery.
//! * [`metrics`] — `klg_events_*`.
//!
//! The reader is a task of the one pull runner ([`super::pull::PullRunner`]).

pub mod config;
pub mod document;
pub mod metrics;
pub mod position;
pub mod watch;

use futures::future::BoxFuture;

use self::config::EventsConfig;
use self::document::EventNormalizer;
use self::position::ResourceVersion;
use super::pull::PullRunner;
use super::section::{self, SourceSection};
use super::{Registration, Running, Section, Source, SourceContext, SourceError};
use crate::ack::Saving;
use crate::setting::ConfigError;

/// The Events source in the registry: `sources.events`, index key `events`.
pub static REGISTRATION: Registration = Registration {
    kind: document::KIND,
    index_key: "events",
    default_index: "events-%Y.%m.%d",
    mappings: |m| vec![document::mapping(m.pattern)],
    section: Some(Section {
        check: |raw| section::check::<EventsConfig>("events", raw),
        build: |raw| Ok(Box::new(EventsSource(section::parse("events", raw)?))),
    }),
};

impl SourceSection for EventsConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        EventsConfig::validate(self)
    }
}

/// A configured Events source.
pub struct EventsSource(pub EventsConfig);

impl Source for EventsSource {
    fn start(self: Box<Self>, ctx: SourceContext) -> BoxFuture<'static, Result<Running, SourceError>> {
        Box::pin(async move {
            let cfg = self.0;
            let file = position::file(&ctx.data_dir);
            let saved = position::load(&file)?;
            tracing::info!(resume = saved.as_deref().unwrap_or("(none: listing first)"), file = %file.path().display(),
                "kubernetes events source started");
            let normalizer =
                EventNormalizer::new(ctx.identity.cluster.clone(), ctx.identity.host.clone(), ctx.index.clone());
            let runner = PullRunner {
                positions: ResourceVersion(saved.clone()),
                saving: Saving {
                    file,
                    interval: cfg.checkpoint_interval,
                    max_in_flight: cfg.max_batches_in_flight,
                    saves: metrics::metrics().resume_saves.clone(),
                    save_errors: metrics::metrics().resume_save_errors.clone(),
                },
                channel_batches: 2,
            };
            Ok(Running::task(runner.on_task(&ctx, |tx| watch::run(cfg, normalizer, saved, tx))))
        })
    }
}
