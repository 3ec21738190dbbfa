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
mod tests {
    use super::*;
    use std::io::Write;

    fn write(yaml: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::Builder::new().suffix(".yaml").tempfile().unwrap();
        f.write_all(yaml.as_bytes()).unwrap();
        f
    }

    fn load(yaml: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let f = write(yaml);
        Config::load_with_env(f.path(), env.iter().map(|(k, v)| (k.to_string(), v.to_string())))
    }

    /// Found by fuzz/fuzz_targets/config_load.rs: 400 bytes that took more than
    /// 2 GiB in the YAML loader before any key was checked.
    #[test]
    fn a_file_that_is_not_utf8_is_refused_before_its_aliases_are_expanded() {
        // The fuzzer's find: an alias bomb with invalid bytes in the middle went
        // around the alias check and took gigabytes.
        let bomb = include_bytes!("../fuzz/corpus/config_load/seed-alias-bomb-not-utf8.yaml");
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(bomb).unwrap();
        let err = Config::load_with_env(f.path(), []).unwrap_err().to_string();
        assert!(err.contains(&f.path().display().to_string()), "{err}");
        assert!(err.contains("not UTF-8 (an invalid byte at offset 295)"), "{err}");
    }

    #[test]
    fn yaml_alias_bomb_is_refused() {
        let mut yaml = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..8 {
            yaml += &format!("a{i}: &a{i} [{}]\n", vec![format!("*a{}", i - 1); 10].join(","));
        }
        assert!(yaml.len() < 400, "{}", yaml.len());
        let err = load(&yaml, &[]).unwrap_err().to_string();
        assert!(err.contains("more than 100000 nodes once its aliases are expanded"), "{err}");
        // A few aliases, as people use them, still load.
        let cfg = load("cluster_name: &c prod\nnode_name: *c\n", &[]).unwrap();
        assert_eq!(cfg.node_name.as_deref(), Some("prod"));
    }

    #[test]
    fn the_field_limit_is_set_from_the_environment_and_refused_when_too_small() {
        let cfg = load(
            "{}",
            &[
                ("KLG__ELASTICSEARCH__TEMPLATE__TOTAL_FIELDS_LIMIT", "5000"),
                ("KLG__ELASTICSEARCH__TEMPLATE__IGNORE_DYNAMIC_BEYOND_LIMIT", "false"),
            ],
        )
        .unwrap();
        assert_eq!(cfg.elasticsearch.template.total_fields_limit, 5000);
        assert!(!cfg.elasticsearch.template.ignore_dynamic_beyond_limit);
        let defaults = load("{}", &[]).unwrap().elasticsearch.template;
        assert_eq!((defaults.total_fields_limit, defaults.ignore_dynamic_beyond_limit), (2000, true));
        let err = load("elasticsearch:\n  template:\n    total_fields_limit: 100\n", &[]).unwrap_err().to_string();
        assert!(
            err.contains("elasticsearch.template.total_fields_limit")
                && err.contains("100 is too small: the gateway's own mappings need up to 500 fields"),
            "{err}"
        );
    }

    #[test]
    fn empty_file_gives_defaults() {
        let cfg = load("{}", &[]).unwrap();
        assert_eq!(cfg.cluster_name, "default");
        assert!(cfg.server.is_none());
        assert_eq!(cfg.elasticsearch.urls, vec!["http://127.0.0.1:9200"]);
        assert_eq!(cfg.elasticsearch.indices.sources["audit"], "audit-%Y.%m.%d");
        assert_eq!(cfg.spool.max_bytes, 1 << 30);
    }

    #[test]
    fn environment_overrides_nested_keys_and_lists() {
        let cfg = load(
            "cluster_name: a\n",
            &[
                ("KLG__CLUSTER_NAME", "prod"),
                ("KLG__ELASTICSEARCH__URLS", "http://es-0:9200,http://es-1:9200"),
                ("KLG__DATA_DIR", "/tmp/klg"),
                ("KLG__ELASTICSEARCH__MAX_IN_FLIGHT", "7"),
            ],
        )
        .unwrap();
        assert_eq!(cfg.cluster_name, "prod");
        assert_eq!(cfg.elasticsearch.urls, vec!["http://es-0:9200", "http://es-1:9200"]);
        assert_eq!(cfg.data_dir, PathBuf::from("/tmp/klg"));
        assert_eq!(cfg.elasticsearch.max_in_flight, 7);
    }

    #[test]
    fn unknown_key_is_named_with_its_path() {
        let err = load("elasticsearch:\n  urlz: [x]\n", &[]).unwrap_err().to_string();
        assert!(err.contains("elasticsearch"), "{err}");
        assert!(err.contains("urlz"), "{err}");
    }

    #[test]
    fn wrong_type_is_named() {
        let err = load("elasticsearch:\n  max_in_flight: lots\n", &[]).unwrap_err().to_string();
        assert!(err.contains("elasticsearch.max_in_flight"), "{err}");
    }

    #[test]
    fn semantic_errors_name_the_key() {
        let err = load("elasticsearch:\n  indices:\n    audit: Audit-%Y\n", &[]).unwrap_err().to_string();
        assert!(err.starts_with("config key `elasticsearch.indices.audit`"), "{err}");
        let err =
            load("server:\n  tls:\n    enabled: false\n  retry_after_seconds: 9\n  allow_unauthenticated: true\n", &[])
                .unwrap_err()
                .to_string();
        assert!(err.contains("server.retry_after_seconds"), "{err}");
        let err = load("server:\n  tls:\n    cert_file: /nonexistent.crt\n", &[]).unwrap_err().to_string();
        assert!(err.contains("server.tls.cert_file") && err.contains("/nonexistent.crt"), "{err}");
        let err = load("server:\n  tls:\n    enabled: false\n", &[]).unwrap_err().to_string();
        assert!(err.contains("no authentication"), "{err}");
    }

    #[test]
    fn concurrency_keys_from_the_file_and_the_environment_and_their_errors() {
        use crate::sink::elasticsearch::config::ConcurrencyMode;
        let cfg = load("", &[]).unwrap();
        assert_eq!(cfg.elasticsearch.concurrency, ConcurrencyMode::Adaptive);
        assert_eq!(cfg.elasticsearch.adaptive.initial, 1);
        let cfg = load(
            "elasticsearch:\n  concurrency: adaptive\n",
            &[
                ("KLG__ELASTICSEARCH__CONCURRENCY", "fixed"),
                ("KLG__ELASTICSEARCH__MAX_IN_FLIGHT", "12"),
                ("KLG__ELASTICSEARCH__ADAPTIVE__INITIAL", "3"),
                ("KLG__ELASTICSEARCH__ADAPTIVE__DECREASE_RATIO", "0.5"),
                ("KLG__ELASTICSEARCH__ADAPTIVE__EWMA_ALPHA", "1"),
                ("KLG__ELASTICSEARCH__ADAPTIVE__RTT_DEVIATION_SCALE", "0"),
            ],
        )
        .unwrap();
        let es = &cfg.elasticsearch;
        assert_eq!(es.concurrency, ConcurrencyMode::Fixed);
        assert_eq!(es.max_in_flight, 12);
        assert_eq!(
            (es.adaptive.initial, es.adaptive.decrease_ratio, es.adaptive.ewma_alpha, es.adaptive.rtt_deviation_scale),
            (3, 0.5, 1.0, 0.0)
        );
        for (yaml, key) in [
            ("concurrency: lots", "elasticsearch.concurrency"),
            ("adaptive:\n    initial: 5", "elasticsearch.adaptive.initial"),
            ("adaptive:\n    initial: 0", "elasticsearch.adaptive.initial"),
            ("adaptive:\n    decrease_ratio: 1.0", "elasticsearch.adaptive.decrease_ratio"),
            ("adaptive:\n    ewma_alpha: 0", "elasticsearch.adaptive.ewma_alpha"),
            ("adaptive:\n    rtt_deviation_scale: -1", "elasticsearch.adaptive.rtt_deviation_scale"),
        ] {
            let err = load(&format!("elasticsearch:\n  {yaml}\n"), &[]).unwrap_err().to_string();
            assert!(err.contains(key), "{yaml}: {err}");
        }
    }

    #[test]
    fn missing_file_is_named() {
        let err = Config::load_with_env(Path::new("/nonexistent/klg.yaml"), []).unwrap_err().to_string();
        assert!(err.contains("/nonexistent/klg.yaml"), "{err}");
    }

    #[test]
    fn containers_section_loads_from_yaml_and_the_environment() {
        use crate::sources::containers::config::ContainersConfig;
        use std::io::Write;
        let mut f = tempfile::Builder::new().suffix(".yaml").tempfile().unwrap();
        f.write_all(b"sources:\n  containers:\n    exclude_pods: [\"gw-*\"]\n    max_message_bytes: 2048\n").unwrap();
        let env = [
            ("KLG__SOURCES__CONTAINERS__EXCLUDE_NAMESPACES", "kube-system,logging"),
            ("KLG__SOURCES__CONTAINERS__POLL_INTERVAL", "1s"),
        ];
        let cfg = Config::load_with_env(f.path(), env.iter().map(|(k, v)| (k.to_string(), v.to_string()))).unwrap();
        let c: ContainersConfig = cfg.sources.section("containers").unwrap().unwrap();
        assert_eq!(c.exclude_pods, vec!["gw-*"]);
        assert_eq!(c.exclude_namespaces, vec!["kube-system", "logging"]);
        assert_eq!(c.poll_interval, std::time::Duration::from_secs(1));
        assert_eq!(c.max_message_bytes, 2048);
        assert_eq!(c.paths, vec!["/var/log/containers/*.log"]);

        let mut f = tempfile::Builder::new().suffix(".yaml").tempfile().unwrap();
        f.write_all(b"sources:\n  containers:\n    max_message_bytes: 10\n").unwrap();
        let err = Config::load_with_env(f.path(), []).unwrap_err().to_string();
        assert!(err.contains("sources.containers.max_message_bytes"), "{err}");
    }

    /// Every list-valued key of both shipped config files, set from the
    /// environment as one comma-separated value, arrives as that list.
    #[test]
    fn every_list_key_of_both_config_files_can_be_set_from_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let pem = dir.path().join("any.pem");
        std::fs::write(&pem, "readable").unwrap();
        let pem = pem.to_str().unwrap().to_string();
        // The shipped files point TLS at files that only exist in a cluster.
        let tls = [
            ("KLG__SERVER__TLS__CERT_FILE", pem.as_str()),
            ("KLG__SERVER__TLS__KEY_FILE", pem.as_str()),
            ("KLG__SERVER__TLS__CLIENT_CA_FILE", pem.as_str()),
        ];
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
        let mut walked = Vec::new();
        for file in ["gateway.yaml", "node.yaml"] {
            let path = root.join(file);
            let yaml: serde_json::Value = config::Config::builder()
                .add_source(config::File::from(path.as_path()).format(config::FileFormat::Yaml))
                .build()
                .unwrap()
                .try_deserialize()
                .unwrap();
            let mut lists = Vec::new();
            list_keys(&yaml, "", &mut lists);
            assert!(!lists.is_empty(), "{file} has list keys");
            for (key, items) in lists {
                // Twice the file's items (or two names for an empty list): unmistakably from the environment.
                let want: Vec<String> = if items.is_empty() {
                    vec!["name-1".into(), "name-2".into()]
                } else {
                    items.iter().chain(items.iter()).cloned().collect()
                };
                let var = format!("KLG__{}", key.replace('.', "__").to_uppercase());
                let mut env: Vec<(String, String)> = tls.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
                env.push((var.clone(), want.join(",")));
                let cfg = Config::load_with_env(&path, env).unwrap_or_else(|e| panic!("{file}: {var}: {e}"));
                let got = serde_json::to_value(&cfg).unwrap();
                let got = key.split('.').fold(&got, |v, k| &v[k]);
                assert_eq!(got, &serde_json::json!(want), "{file}: {var}");
                walked.push(key);
            }
        }
        for key in [
            "elasticsearch.urls",
            "server.tls.allowed_client_names",
            "sources.journald.directories",
            "sources.journald.units",
            "sources.journald.identifiers",
            "sources.containers.paths",
            "sources.containers.exclude_pods",
        ] {
            assert!(walked.iter().any(|k| k == key), "{key} was not walked: {walked:?}");
        }
    }

    /// (dotted key, string items) of every sequence in `v`.
    fn list_keys(v: &serde_json::Value, prefix: &str, out: &mut Vec<(String, Vec<String>)>) {
        match v {
            serde_json::Value::Object(map) => {
                for (k, v) in map {
                    let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                    list_keys(v, &key, out);
                }
            }
            serde_json::Value::Array(items) => out.push((
                prefix.to_string(),
                items.iter().map(|i| i.as_str().map(str::to_string).unwrap_or_else(|| i.to_string())).collect(),
            )),
            _ => {}
        }
    }

    #[test]
    fn a_journal_directory_from_the_environment() {
        let cfg =
            load("sources:\n  journald: {}\n", &[("KLG__SOURCES__JOURNALD__DIRECTORIES", "/var/log/journal")]).unwrap();
        let j: crate::sources::journald::config::JournaldConfig = cfg.sources.section("journald").unwrap().unwrap();
        assert_eq!(j.directories, vec![PathBuf::from("/var/log/journal")]);
    }
}
