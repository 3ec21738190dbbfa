//! User configuration: a YAML file layered with `KLG__…` environment overrides.
//!
//! This module only composes the sections and loads the file. Each section is
//! defined, defaulted and validated beside the code it configures
//! (`sources/*/config.rs`, `spool/config.rs`, `sink/config.rs`,
//! `server/admin.rs`, `telemetry.rs`, `shutdown.rs`), and each part of the
//! gateway receives only its own section. Parsing happens once, at the edge;
//! every error names the key (`server.tls.cert_file`) or file at fault.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::server::admin::AdminConfig;
use crate::setting::key_error;
pub use crate::setting::ConfigError;
use crate::shutdown::Shutdown;
use crate::shutdown::ShutdownConfig;
use crate::sink::elasticsearch::config::{ElasticsearchConfig, IndexPatterns};
use crate::sink::Sink;
use crate::sources::audit_webhook::config::{AuditConfig, ServerConfig};
use crate::sources::section::SourceSection;
use crate::sources::{self, NodeIdentity, Registration, SourceContext};
use crate::spool::config::SpoolConfig;
use crate::telemetry::LogConfig;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Written to `orchestrator.cluster.name` and mixed into audit `_id`s.
    #[serde(default = "default_cluster_name")]
    pub cluster_name: String,
    /// Spool, journald cursor and container checkpoints live here.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// `kubernetes.node.name`; defaults to `$NODE_NAME`, then the host name.
    #[serde(default)]
    pub node_name: Option<String>,
    /// The audit webhook. Absent: no webhook (node role).
    #[serde(default)]
    pub server: Option<ServerConfig>,
    #[serde(default)]
    pub admin: AdminConfig,
    #[serde(default)]
    pub sources: SourcesConfig,
    #[serde(default)]
    pub audit: AuditConfig,
    #[serde(default)]
    pub spool: SpoolConfig,
    #[serde(default)]
    pub elasticsearch: ElasticsearchConfig,
    #[serde(default)]
    pub log: LogConfig,
    #[serde(default)]
    pub shutdown: ShutdownConfig,
}

/// `sources`: one section per pull source, each turning it on when present
/// (absent or null: off). The sections are kept as they were written and each
/// is parsed by its own source ([`crate::sources::Section`]), so this loader
/// names no source; after loading, each holds its defaults too.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SourcesConfig(pub BTreeMap<String, serde_json::Value>);

impl SourcesConfig {
    /// The section of source `label` as type `T`, if present.
    pub fn section<T: SourceSection>(&self, label: &str) -> Option<Result<T, ConfigError>> {
        self.0.get(label).map(|raw| crate::sources::section::parse(label, raw))
    }

    /// Every section present and its source.
    pub fn enabled(&self) -> impl Iterator<Item = (&'static Registration, &serde_json::Value)> + '_ {
        self.0.iter().filter_map(|(label, raw)| Some((sources::registration(label)?, raw)))
    }
}

fn default_cluster_name() -> String {
    "default".into()
}

fn default_data_dir() -> PathBuf {
    "/var/lib/kube-log-gateway".into()
}

impl Config {
    /// Loads `path` (YAML), applies `KLG__…` overrides, and validates.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Self::load_with_env(path, std::env::vars())
    }

    /// Like [`Config::load`], with the environment given. List-valued keys take
    /// one comma-separated value (`crate::setting::list`), so no key needs to be
    /// named here.
    pub fn load_with_env(path: &Path, vars: impl IntoIterator<Item = (String, String)>) -> Result<Config, ConfigError> {
        // Unreadable: the `config` crate below says so, naming the file. Not
        // UTF-8: refused here, because that crate would read it lossily and
        // expand its aliases unchecked (found with fuzz/fuzz_targets/config_load.rs).
        if let Ok(bytes) = std::fs::read(path) {
            let text = std::str::from_utf8(&bytes).map_err(|e| ConfigError::Read {
                path: path.to_path_buf(),
                source: config::ConfigError::Message(format!(
                    "not UTF-8 (an invalid byte at offset {})",
                    e.valid_up_to()
                )),
            })?;
            check_yaml_aliases(text)?;
        }
        let env: config::Map<String, String> = vars.into_iter().filter(|(k, _)| k.starts_with("KLG__")).collect();
        let env_source = config::Environment::with_prefix("KLG")
            .prefix_separator("__")
            .separator("__")
            .try_parsing(true)
            .source(Some(env));
        let raw = config::Config::builder()
            .add_source(config::File::from(path).format(config::FileFormat::Yaml).required(true))
            .add_source(env_source)
            .build()
            .map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
        let cfg: Config = serde_path_to_error::deserialize(raw).map_err(|e| {
            let key = e.path().to_string();
            let message = e.into_inner().to_string();
            key_error(if key == "." { "(top level)" } else { &key }, message)
        })?;
        let mut cfg = cfg;
        cfg.settle()?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// The checks serde cannot express, section by section. Each names its key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.cluster_name.trim().is_empty() {
            return Err(key_error("cluster_name", "must not be empty"));
        }
        if let Some(server) = &self.server {
            server.validate()?;
        }
        self.elasticsearch.validate()?;
        self.spool.validate()?;
        self.log.validate()?;
        Ok(())
    }

    /// Completes what the sources declare: each source's index key gets its
    /// default, a key no source declares is refused, and each `sources.<label>`
    /// section is parsed and validated by its source and kept with its
    /// defaults (what `check-config` prints).
    pub fn settle(&mut self) -> Result<(), ConfigError> {
        let indices = &mut self.elasticsearch.indices.sources;
        for reg in sources::REGISTRY {
            indices.entry(reg.index_key.to_string()).or_insert_with(|| reg.default_index.to_string());
        }
        if let Some(unknown) = indices.keys().find(|k| !sources::REGISTRY.iter().any(|r| r.index_key == k.as_str())) {
            let known: Vec<&str> = sources::REGISTRY.iter().map(|r| r.index_key).chain(["dead_letter"]).collect();
            return Err(key_error(
                &format!("elasticsearch.indices.{unknown}"),
                format!("no source writes to it (known: {})", known.join(", ")),
            ));
        }
        self.sources.0.retain(|_, raw| !raw.is_null());
        for (label, raw) in self.sources.0.iter_mut() {
            let section = sources::registration(label).and_then(|r| r.section.as_ref()).ok_or_else(|| {
                let known: Vec<&str> =
                    sources::REGISTRY.iter().filter(|r| r.section.is_some()).map(|r| r.label()).collect();
                key_error(&format!("sources.{label}"), format!("no such source (known: {})", known.join(", ")))
            })?;
            *raw = (section.check)(raw)?;
        }
        Ok(())
    }

    /// Who this gateway is, as every document says it.
    pub fn identity(&self) -> NodeIdentity {
        NodeIdentity::new(self.cluster_name.clone(), self.node_name.clone())
    }

    /// What source `reg` is started with besides its own section.
    pub fn source_context(&self, reg: &Registration, sink: Sink, shutdown: Shutdown) -> SourceContext {
        let patterns = self.index_patterns();
        SourceContext {
            identity: self.identity(),
            data_dir: self.data_dir.clone(),
            index: patterns.sources[reg.index_key].clone(),
            dead_letter: patterns.dead_letter,
            sink,
            shutdown,
        }
    }

    pub fn index_patterns(&self) -> IndexPatterns {
        self.elasticsearch.indices.patterns().expect("validated when the config was loaded")
    }
}

/// Nodes a config may have once YAML aliases are expanded; real configs have a few hundred.
const MAX_EXPANDED_YAML_NODES: u64 = 100_000;

/// The YAML loader copies an anchored node at every alias, so a 400-byte file of
/// nested aliases ("billion laughs") expands to gigabytes before any key is
/// read (found with fuzz/fuzz_targets/config_load.rs). Counts the nodes the
/// expansion would have, from the parser's events, and refuses past the limit.
/// Syntax errors are left for the real load to report.
fn check_yaml_aliases(text: &str) -> Result<(), ConfigError> {
    use std::collections::HashMap;
    use yaml_rust2::parser::{Event, Parser};

    #[derive(Default)]
    struct Count {
        /// (anchor id, nodes so far) of each open sequence or mapping.
        open: Vec<(usize, u64)>,
        /// Expanded nodes of each anchored node.
        anchors: HashMap<usize, u64>,
        total: u64,
    }
    impl Count {
        /// A node of `nodes` expanded nodes, inside whatever is open.
        fn node(&mut self, nodes: u64) {
            self.total = self.total.saturating_add(nodes);
            if let Some((_, n)) = self.open.last_mut() {
                *n = n.saturating_add(nodes);
            }
        }
        fn on_event(&mut self, ev: Event) {
            match ev {
                Event::SequenceStart(anchor, _) | Event::MappingStart(anchor, _) => {
                    self.total = self.total.saturating_add(1);
                    self.open.push((anchor, 1));
                }
                Event::SequenceEnd | Event::MappingEnd => {
                    let (anchor, n) = self.open.pop().unwrap_or_default();
                    if anchor > 0 {
                        self.anchors.insert(anchor, n);
                    }
                    // Already in the total, node by node: only the parent's count grows.
                    if let Some((_, parent)) = self.open.last_mut() {
                        *parent = parent.saturating_add(n);
                    }
                }
                Event::Scalar(_, _, anchor, _) => {
                    if anchor > 0 {
                        self.anchors.insert(anchor, 1);
                    }
                    self.node(1);
                }
                Event::Alias(anchor) => self.node(self.anchors.get(&anchor).copied().unwrap_or(1)),
                _ => {}
            }
        }
    }

    let mut count = Count::default();
    let mut parser = Parser::new_from_str(text);
    // Stop at the limit, not at the end of a file that only repeats itself.
    while count.total <= MAX_EXPANDED_YAML_NODES {
        match parser.next_token() {
            Ok((Event::StreamEnd, _)) | Err(_) => break,
            Ok((ev, _)) => count.on_event(ev),
        }
    }
    if count.total > MAX_EXPANDED_YAML_NODES {
        return Err(key_error(
            "(top level)",
            format!("the YAML has more than {MAX_EXPANDED_YAML_NODES} nodes once its aliases are expanded"),
        ));
    }
    Ok(())
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
