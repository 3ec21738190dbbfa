//! The contract every source implements.
//!
//! A source is two things:
//!
//! * a [`Registration`]: what is known without starting it — its label
//!   (metrics, dead letters, `Document::source`), the `elasticsearch.indices`
//!   key it writes to and that key's default, its index mappings (installed
//!   whether or not it runs here, so that one set of templates serves every
//!   role), and how its own `sources.<label>` section is parsed;
//! * a [`Source`]: a configured source, started once with its
//!   [`SourceContext`] (who this gateway is, where positions live, its index,
//!   the sink and the shutdown signal).
//!
//! Acknowledgement is the source's own business and one of two kinds: pushed
//! data is acknowledged once it is in the spool (the audit webhook), pulled
//! data moves a position saved only behind delivery (`super::pull`).
//!
//! Adding a source is a folder with its `REGISTRATION` and one line in
//! `super::REGISTRY`; nothing in the sink, the server or the configuration
//! loader names a source.

use std::sync::Arc;

use futures::future::BoxFuture;
use serde_json::Value;
use tokio::task::JoinHandle;

use super::SourceContext;
use crate::document::index_pattern::IndexPattern;
use crate::document::mapping::IndexMapping;
use crate::document::SourceKind;
use crate::server::admin::Readiness;
use crate::setting::ConfigError;

/// Why a source could not start (a missing directory, an unreadable position
/// file, a port in use); the message names the key or file at fault.
pub type SourceError = Box<dyn std::error::Error + Send + Sync>;

/// A configured source, ready to start.
pub trait Source: Send {
    /// Opens what it reads and starts reading. Fails before anything is read
    /// if it cannot; once it runs, it stops on `ctx.shutdown` after its last
    /// delivered position is saved (or its last accepted request is spooled).
    fn start(self: Box<Self>, ctx: SourceContext) -> BoxFuture<'static, Result<Running, SourceError>>;
}

/// A started source.
pub struct Running {
    /// Finishes once the source has stopped and saved what it must.
    pub task: JoinHandle<()>,
    /// Asked by `/readyz`, if the source can be unable to take work.
    pub readiness: Option<Arc<dyn Readiness>>,
}

impl Running {
    pub fn task(task: JoinHandle<()>) -> Self {
        Running { task, readiness: None }
    }
}

/// What the gateway knows of a source without starting it.
pub struct Registration {
    /// The source's label: `source="..."` in metrics, `dead_letter.source`,
    /// and the name of its `sources.<label>` section.
    pub kind: SourceKind,
    /// Its key under `elasticsearch.indices`.
    pub index_key: &'static str,
    /// That key's default.
    pub default_index: &'static str,
    /// The mappings of what it writes, for the indices of its pattern.
    pub mappings: fn(&MappingInputs) -> Vec<IndexMapping>,
    /// Its `sources.<label>` section; `None` for a source configured elsewhere
    /// (the audit webhook keeps its top-level `server` section).
    pub section: Option<Section>,
}

/// What a source's mappings depend on besides the source itself.
pub struct MappingInputs<'a> {
    /// The source's index pattern (`elasticsearch.indices.<key>`).
    pub pattern: &'a IndexPattern,
    /// `audit.data_stream_namespace`: the end of the Elastic-style aliases
    /// (`logs-kubernetes.audit_logs-<namespace>`) a mapping may declare.
    pub data_stream_namespace: &'a str,
}

impl<'a> MappingInputs<'a> {
    pub fn new(pattern: &'a IndexPattern, data_stream_namespace: &'a str) -> Self {
        MappingInputs { pattern, data_stream_namespace }
    }
}

/// How a source reads its own `sources.<label>` section.
pub struct Section {
    /// Parses and validates the section and returns it with every default
    /// filled in, as `check-config` prints it. Errors name the key.
    pub check: fn(&Value) -> Result<Value, ConfigError>,
    /// The configured source, from a section `check` accepted.
    pub build: fn(&Value) -> Result<Box<dyn Source>, ConfigError>,
}

impl Registration {
    pub fn label(&self) -> &'static str {
        self.kind.as_str()
    }
}
