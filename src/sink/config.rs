//! `elasticsearch`: where and how documents are written — URLs, credentials,
//! TLS, index names, template settings, batching, concurrency and retries —
//! with the checks serde cannot express. Errors name the key.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::flavour::FlavourSetting;
use super::protocol::data_stream::DataStreamConfig;
use crate::document::index_pattern::IndexPattern;
use crate::setting::{key_error, readable, ConfigError};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ElasticsearchConfig {
    /// Tried in order; on a connection error, timeout or 5xx the next one is used.
    #[serde(default = "defaults::es_urls", deserialize_with = "crate::setting::list")]
    pub urls: Vec<String>,
    #[serde(default)]
    pub auth: EsAuth,
    #[serde(default)]
    pub tls: EsTls,
    #[serde(default)]
    pub indices: Indices,
    /// Write each source to a data stream named by its `indices` entry instead
    /// of event-dated indices.
    #[serde(default)]
    pub data_stream: DataStreamConfig,
    /// `auto`: ask the server what it is (`GET /`) at start; `elasticsearch` or
    /// `opensearch`: the server must be that one.
    #[serde(default)]
    pub flavour: FlavourSetting,
    /// A retention policy (ILM or ISM), installed at start when asked.
    #[serde(default)]
    pub lifecycle: LifecycleConfig,
    /// Install index templates at start-up (idempotent).
    #[serde(default = "defaults::yes")]
    pub install_templates: bool,
    #[serde(default)]
    pub template: TemplateSettings,
    #[serde(default)]
    pub batch: BatchConfig,
    /// `adaptive`: the number of bulk requests in flight is found by an AIMD
    /// controller between 1 and `max_in_flight`; `fixed`: always `max_in_flight`.
    #[serde(default)]
    pub concurrency: ConcurrencyMode,
    /// Bulk requests in flight at once: the upper bound (`adaptive`) or the number (`fixed`).
    #[serde(default = "defaults::max_in_flight")]
    pub max_in_flight: usize,
    /// The AIMD controller's parameters (`concurrency: adaptive` only).
    #[serde(default)]
    pub adaptive: AdaptiveConfig,
    /// gzip bulk request bodies.
    #[serde(default = "defaults::yes")]
    pub compression: bool,
    /// One bulk request's timeout.
    #[serde(default = "defaults::es_timeout", with = "humantime_serde")]
    pub request_timeout: Duration,
    #[serde(default)]
    pub retry: RetryConfig,
    /// Global documents/s toward Elasticsearch; absent = unlimited.
    #[serde(default)]
    pub documents_per_second: Option<u32>,
    /// Bulk failures, dead letters and blocked indices are each logged at most once per this interval.
    #[serde(default = "defaults::log_interval", with = "humantime_serde")]
    pub dead_letter_log_interval: Duration,
    /// A document bigger than this in a bulk request is dead-lettered without
    /// being sent. The default is Elasticsearch's default `http.max_content_length`;
    /// a smaller indexing-pressure limit is learnt from its 429.
    #[serde(default = "defaults::max_document_bytes")]
    pub max_document_bytes: usize,
    /// The dead letter of a document refused for its size keeps this much of
    /// its original (the whole one goes to the dead-letter file).
    #[serde(default = "defaults::dead_letter_max_original_bytes")]
    pub dead_letter_max_original_bytes: usize,
}

impl Default for ElasticsearchConfig {
    fn default() -> Self {
        // serde's defaults are the single source of truth.
        serde_json::from_str("{}").expect("defaults deserialize")
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EsAuth {
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    /// File holding the password (takes precedence over `password`).
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// Base64 `id:key` as returned by the create-API-key API (`encoded`).
    #[serde(default)]
    pub api_key: Option<String>,
    #[serde(default)]
    pub api_key_file: Option<PathBuf>,
    #[serde(default)]
    pub bearer_token: Option<String>,
    #[serde(default)]
    pub bearer_token_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EsTls {
    /// PEM CA bundle that signs Elasticsearch's certificate.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Skip certificate verification entirely (never in production).
    #[serde(default)]
    pub insecure_skip_verify: bool,
}

/// `elasticsearch.indices`: the dead letters' pattern, and one pattern per
/// source under the key the source declares (`audit`, `kubelet`, ...). The
/// sink knows none of those keys: the configuration fills in each registered
/// source's default and refuses a key no source declares.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Indices {
    #[serde(default = "defaults::dead_letter_index")]
    pub dead_letter: String,
    #[serde(flatten)]
    pub sources: BTreeMap<String, String>,
}

impl Default for Indices {
    fn default() -> Self {
        Indices { dead_letter: defaults::dead_letter_index(), sources: BTreeMap::new() }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateSettings {
    #[serde(default = "defaults::shards")]
    pub number_of_shards: u32,
    #[serde(default = "defaults::replicas")]
    pub number_of_replicas: u32,
    #[serde(default = "defaults::refresh_interval")]
    pub refresh_interval: String,
    /// `index.mapping.total_fields.limit`: the mapped fields an index may have,
    /// the gateway's own plus the keys of open-ended maps (audit annotations).
    #[serde(default = "defaults::total_fields_limit")]
    pub total_fields_limit: u32,
    /// `index.mapping.total_fields.ignore_dynamic_beyond_limit`: past the limit, a
    /// new key is kept in `_source` (and named in `_ignored`) instead of the whole
    /// document being refused and dead-lettered.
    #[serde(default = "defaults::yes")]
    pub ignore_dynamic_beyond_limit: bool,
}

impl Default for TemplateSettings {
    fn default() -> Self {
        TemplateSettings {
            number_of_shards: defaults::shards(),
            number_of_replicas: defaults::replicas(),
            refresh_interval: defaults::refresh_interval(),
            total_fields_limit: defaults::total_fields_limit(),
            ignore_dynamic_beyond_limit: true,
        }
    }
}

/// The smallest `elasticsearch.template.total_fields_limit` accepted: the
/// gateway's own fields, all four mappings in one index (every pattern the same),
/// with room to spare (a test in serve.rs keeps it so).
pub const MIN_TOTAL_FIELDS_LIMIT: u32 = 1000;

/// `elasticsearch.lifecycle`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LifecycleConfig {
    /// Install the policy (ILM on Elasticsearch, ISM on OpenSearch) and attach
    /// it to the gateway's indices.
    #[serde(default)]
    pub install: bool,
    /// An index is deleted this long after it was created.
    #[serde(default = "defaults::delete_after", with = "humantime_serde")]
    pub delete_after: Duration,
    /// The policy's name.
    #[serde(default = "defaults::lifecycle_policy")]
    pub policy: String,
    /// Data streams only: the write index rolls over at this age ...
    #[serde(default = "defaults::rollover_max_age", with = "humantime_serde")]
    pub rollover_max_age: Duration,
    /// ... or at this primary shard size, whichever comes first (`50gb`).
    #[serde(default = "defaults::rollover_max_primary_shard_size")]
    pub rollover_max_primary_shard_size: String,
}

impl Default for LifecycleConfig {
    fn default() -> Self {
        LifecycleConfig {
            install: false,
            delete_after: defaults::delete_after(),
            policy: defaults::lifecycle_policy(),
            rollover_max_age: defaults::rollover_max_age(),
            rollover_max_primary_shard_size: defaults::rollover_max_primary_shard_size(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchConfig {
    #[serde(default = "defaults::batch_docs")]
    pub max_documents: usize,
    #[serde(default = "defaults::batch_bytes")]
    pub max_bytes: usize,
    /// How long a partial batch waits for more documents.
    #[serde(default = "defaults::linger", with = "humantime_serde")]
    pub linger: Duration,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig {
            max_documents: defaults::batch_docs(),
            max_bytes: defaults::batch_bytes(),
            linger: defaults::linger(),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConcurrencyMode {
    #[default]
    Adaptive,
    Fixed,
}

/// `elasticsearch.adaptive`: Vector's adaptive request concurrency parameters,
/// with its defaults.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdaptiveConfig {
    /// The limit at start-up, before any answer was seen.
    #[serde(default = "defaults::adaptive_initial")]
    pub initial: usize,
    /// On back-pressure the limit is multiplied by this (and drops by at least one).
    #[serde(default = "defaults::decrease_ratio")]
    pub decrease_ratio: f64,
    /// Weight of the latest window in the moving average of round trip times.
    #[serde(default = "defaults::ewma_alpha")]
    pub ewma_alpha: f64,
    /// A round trip above average + this × its deviation counts as back-pressure.
    #[serde(default = "defaults::rtt_deviation_scale")]
    pub rtt_deviation_scale: f64,
}

impl Default for AdaptiveConfig {
    fn default() -> Self {
        AdaptiveConfig {
            initial: defaults::adaptive_initial(),
            decrease_ratio: defaults::decrease_ratio(),
            ewma_alpha: defaults::ewma_alpha(),
            rtt_deviation_scale: defaults::rtt_deviation_scale(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    #[serde(default = "defaults::initial_backoff", with = "humantime_serde")]
    pub initial_backoff: Duration,
    #[serde(default = "defaults::max_backoff", with = "humantime_serde")]
    pub max_backoff: Duration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig { initial_backoff: defaults::initial_backoff(), max_backoff: defaults::max_backoff() }
    }
}

impl ElasticsearchConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.urls.is_empty() {
            return Err(key_error("elasticsearch.urls", "needs at least one URL"));
        }
        for (i, u) in self.urls.iter().enumerate() {
            let parsed = url::Url::parse(u)
                .map_err(|e| key_error(&format!("elasticsearch.urls[{i}]"), format!("{u:?} is not a URL: {e}")))?;
            if !matches!(parsed.scheme(), "http" | "https") {
                return Err(key_error(
                    &format!("elasticsearch.urls[{i}]"),
                    format!("{u:?} must be http:// or https://"),
                ));
            }
        }
        let patterns = self.indices.patterns()?;
        let entries = patterns.sources.iter().map(|(k, p)| (k.as_str(), p));
        self.data_stream.validate(entries.chain([("dead_letter", &patterns.dead_letter)]))?;
        let auth = &self.auth;
        if auth.username.is_some() != (auth.password.is_some() || auth.password_file.is_some()) {
            return Err(key_error("elasticsearch.auth", "username and password (or password_file) go together"));
        }
        let methods = [
            auth.username.is_some(),
            auth.api_key.is_some() || auth.api_key_file.is_some(),
            auth.bearer_token.is_some() || auth.bearer_token_file.is_some(),
        ];
        if methods.iter().filter(|m| **m).count() > 1 {
            return Err(key_error("elasticsearch.auth", "choose one of username/password, api_key or bearer_token"));
        }
        for (key, file) in [
            ("elasticsearch.auth.password_file", &auth.password_file),
            ("elasticsearch.auth.api_key_file", &auth.api_key_file),
            ("elasticsearch.auth.bearer_token_file", &auth.bearer_token_file),
            ("elasticsearch.tls.ca_file", &self.tls.ca_file),
        ] {
            if let Some(f) = file {
                readable(key, f)?;
            }
        }
        if self.template.total_fields_limit < MIN_TOTAL_FIELDS_LIMIT {
            return Err(key_error(
                "elasticsearch.template.total_fields_limit",
                format!(
                    "{} is too small: at least {MIN_TOTAL_FIELDS_LIMIT} (the gateway's own fields with room to spare)",
                    self.template.total_fields_limit
                ),
            ));
        }
        if self.batch.max_documents == 0 {
            return Err(key_error("elasticsearch.batch.max_documents", "must be at least 1"));
        }
        if self.batch.max_bytes < 1024 {
            return Err(key_error("elasticsearch.batch.max_bytes", "must be at least 1024"));
        }
        if self.max_document_bytes < 1024 {
            return Err(key_error("elasticsearch.max_document_bytes", "must be at least 1024"));
        }
        if self.dead_letter_max_original_bytes < 1024
            || self.dead_letter_max_original_bytes > self.max_document_bytes / 2
        {
            return Err(key_error(
                "elasticsearch.dead_letter_max_original_bytes",
                "must be at least 1024 and at most half of elasticsearch.max_document_bytes",
            ));
        }
        if self.max_in_flight == 0 {
            return Err(key_error("elasticsearch.max_in_flight", "must be at least 1"));
        }
        let adaptive = &self.adaptive;
        if adaptive.initial == 0 || adaptive.initial > self.max_in_flight {
            return Err(key_error(
                "elasticsearch.adaptive.initial",
                "must be at least 1 and at most elasticsearch.max_in_flight",
            ));
        }
        if !(adaptive.decrease_ratio > 0.0 && adaptive.decrease_ratio < 1.0) {
            return Err(key_error("elasticsearch.adaptive.decrease_ratio", "must be above 0 and below 1"));
        }
        if !(adaptive.ewma_alpha > 0.0 && adaptive.ewma_alpha <= 1.0) {
            return Err(key_error("elasticsearch.adaptive.ewma_alpha", "must be above 0 and at most 1"));
        }
        if !(adaptive.rtt_deviation_scale >= 0.0 && adaptive.rtt_deviation_scale.is_finite()) {
            return Err(key_error("elasticsearch.adaptive.rtt_deviation_scale", "must be a number, 0 or more"));
        }
        if self.retry.initial_backoff.is_zero() || self.retry.max_backoff < self.retry.initial_backoff {
            return Err(key_error("elasticsearch.retry", "need 0 < initial_backoff <= max_backoff"));
        }
        if self.lifecycle.delete_after < Duration::from_secs(3600) {
            return Err(key_error("elasticsearch.lifecycle.delete_after", "must be at least 1h"));
        }
        if self.lifecycle.rollover_max_age < Duration::from_secs(60) {
            return Err(key_error("elasticsearch.lifecycle.rollover_max_age", "must be at least 1m"));
        }
        let size = &self.lifecycle.rollover_max_primary_shard_size;
        let digits = size.trim_end_matches(|c: char| c.is_ascii_alphabetic());
        if digits.is_empty()
            || !digits.chars().all(|c| c.is_ascii_digit())
            || !["b", "kb", "mb", "gb", "tb", "pb"].contains(&&size[digits.len()..])
        {
            return Err(key_error(
                "elasticsearch.lifecycle.rollover_max_primary_shard_size",
                format!("{size:?} is not a byte size such as 50gb (units b, kb, mb, gb, tb, pb)"),
            ));
        }
        let policy = &self.lifecycle.policy;
        if policy.is_empty()
            || !policy.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_".contains(c))
        {
            return Err(key_error("elasticsearch.lifecycle.policy", "lower-case letters, digits, - and _ only"));
        }
        if self.documents_per_second == Some(0) {
            return Err(key_error("elasticsearch.documents_per_second", "must be at least 1 (omit it for no limit)"));
        }
        Ok(())
    }
}

/// The parsed `elasticsearch.indices`: one pattern per source key, and the dead letters'.
#[derive(Debug, Clone)]
pub struct IndexPatterns {
    pub sources: BTreeMap<String, IndexPattern>,
    pub dead_letter: IndexPattern,
}

impl Indices {
    /// Each pattern parsed; an error names its key.
    pub fn patterns(&self) -> Result<IndexPatterns, ConfigError> {
        let parse = |key: &str, value: &str| {
            IndexPattern::parse(value).map_err(|e| key_error(&format!("elasticsearch.indices.{key}"), e.to_string()))
        };
        let sources = self.sources.iter().map(|(k, v)| Ok((k.clone(), parse(k, v)?))).collect::<Result<_, _>>()?;
        Ok(IndexPatterns { sources, dead_letter: parse("dead_letter", &self.dead_letter)? })
    }
}

mod defaults {
    use super::*;
    pub fn yes() -> bool {
        true
    }
    pub fn es_urls() -> Vec<String> {
        vec!["http://127.0.0.1:9200".into()]
    }
    pub fn dead_letter_index() -> String {
        "deadletter-%Y.%m.%d".into()
    }
    pub fn shards() -> u32 {
        1
    }
    pub fn replicas() -> u32 {
        1
    }
    pub fn refresh_interval() -> String {
        "5s".into()
    }
    pub fn total_fields_limit() -> u32 {
        2000
    }
    pub fn batch_docs() -> usize {
        2000
    }
    pub fn batch_bytes() -> usize {
        5 * 1024 * 1024
    }
    pub fn linger() -> Duration {
        Duration::from_millis(200)
    }
    pub fn max_in_flight() -> usize {
        4
    }
    pub fn adaptive_initial() -> usize {
        1
    }
    pub fn decrease_ratio() -> f64 {
        0.9
    }
    pub fn ewma_alpha() -> f64 {
        0.4
    }
    pub fn rtt_deviation_scale() -> f64 {
        2.5
    }
    pub fn es_timeout() -> Duration {
        Duration::from_secs(60)
    }
    pub fn initial_backoff() -> Duration {
        Duration::from_millis(200)
    }
    pub fn delete_after() -> Duration {
        Duration::from_secs(90 * 86_400)
    }
    pub fn rollover_max_age() -> Duration {
        Duration::from_secs(86_400)
    }
    pub fn rollover_max_primary_shard_size() -> String {
        "50gb".into()
    }
    pub fn lifecycle_policy() -> String {
        "kube-log-gateway".into()
    }
    pub fn max_backoff() -> Duration {
        Duration::from_secs(30)
    }
    pub fn log_interval() -> Duration {
        Duration::from_secs(10)
    }
    /// Elasticsearch's default `http.max_content_length`: over it, a request is a 413.
    pub fn max_document_bytes() -> usize {
        100 * 1024 * 1024
    }
    pub fn dead_letter_max_original_bytes() -> usize {
        1024 * 1024
    }
}
