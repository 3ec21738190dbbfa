//! The server flavour: what differs between the servers that speak the bulk
//! API. The protocol is the same on all of them; what differs is small and
//! lives here:
//!
//! * [`detect`]: which server and version, from `GET /` at start (or
//!   pinned by `elasticsearch.flavour`);
//! * [`templates`]: the index templates, in the server's mapping dialect
//!   (`flattened` on Elasticsearch, `flat_object` on OpenSearch) and with the
//!   settings it has;
//! * [`lifecycle`]: the retention policy, as ILM (Elasticsearch) or ISM
//!   (OpenSearch);
//! * [`carry_over`]: the indices spooled documents name after the index
//!   pattern changed, created with their source's mappings;
//! * [`install`]: installing each template on its own, so that a template one
//!   source needs never holds back another source's documents.
//!
//! Whatever a flavour cannot do is a [`FlavourError`] at start that names the
//! setting, never a retry loop.

pub mod carry_over;
pub mod detect;
pub mod install;
pub mod lifecycle;
pub mod templates;

use serde::{Deserialize, Serialize};

/// `elasticsearch.flavour`: detect the server at start, or pin the product.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FlavourSetting {
    /// Ask the server (`GET /`; needs the `monitor` cluster privilege).
    #[default]
    Auto,
    Elasticsearch,
    Opensearch,
}

/// Which product a server is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Product {
    Elasticsearch,
    OpenSearch,
}

impl Product {
    pub fn as_str(self) -> &'static str {
        match self {
            Product::Elasticsearch => "Elasticsearch",
            Product::OpenSearch => "OpenSearch",
        }
    }
}

/// A server: product and version. The version is `None` when the flavour was
/// pinned and the server was not asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flavour {
    pub product: Product,
    pub version: Option<Version>,
}

/// `major.minor.patch` as the server reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl Version {
    /// `9.5.4`, `8.19.0-SNAPSHOT`, `3.0.0-beta1` → the three numbers.
    pub fn parse(raw: &str) -> Option<Version> {
        let mut parts = raw.split(['.', '-']).map(|p| p.parse::<u32>().ok());
        Some(Version { major: parts.next()??, minor: parts.next()??, patch: parts.next().flatten().unwrap_or(0) })
    }
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

impl std::fmt::Display for Flavour {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.version {
            Some(v) => write!(f, "{} {v}", self.product.as_str()),
            None => write!(f, "{} (version not asked: elasticsearch.flavour is pinned)", self.product.as_str()),
        }
    }
}

impl Flavour {
    /// A pinned flavour: the server is not asked, and its version is taken to
    /// be one this gateway is tested with.
    pub fn pinned(product: Product) -> Flavour {
        Flavour { product, version: None }
    }

    /// `index.mapping.total_fields.ignore_dynamic_beyond_limit`: Elasticsearch
    /// 8.13 and later. OpenSearch refuses every template that carries it
    /// (`unknown setting`).
    pub fn has_ignore_dynamic_beyond_limit(&self) -> bool {
        match (self.product, self.version) {
            (Product::OpenSearch, _) => false,
            (Product::Elasticsearch, None) => true,
            (Product::Elasticsearch, Some(v)) => (v.major, v.minor) >= (8, 13),
        }
    }

    /// Whether a `boolean` field takes `ignore_malformed` (Elasticsearch does;
    /// OpenSearch refuses the parameter).
    pub fn has_boolean_ignore_malformed(&self) -> bool {
        self.product == Product::Elasticsearch
    }

    /// The field type for an object with arbitrary keys kept as one field:
    /// `flattened` (Elasticsearch) or `flat_object` (OpenSearch, which takes no
    /// parameters for it).
    pub fn flattened_type(&self) -> &'static str {
        match self.product {
            Product::Elasticsearch => "flattened",
            Product::OpenSearch => "flat_object",
        }
    }
}

/// What a flavour cannot do, or a server that is not the one pinned: the
/// gateway stops at start with this, naming the setting.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FlavourError {
    #[error("elasticsearch.flavour is {pinned:?} but the server at {url} is {found}")]
    Mismatch { pinned: FlavourSetting, found: String, url: String },
    #[error("{setting}: {flavour} cannot do this: {why}")]
    Unsupported { setting: &'static str, flavour: String, why: String },
    #[error("{server} at {url} refused the index template {template} (elasticsearch.template, or the mapping of the indices {pattern}): {reason}")]
    TemplateRefused { server: String, url: String, template: String, pattern: String, reason: String },
    #[error("{server} at {url} refused the lifecycle policy {policy} (elasticsearch.lifecycle): {reason}")]
    LifecycleRefused { server: String, url: String, policy: String, reason: String },
}

/// Why a start-up step stopped before it was done.
#[derive(Debug)]
pub enum Stopped {
    /// What no retry can fix: the gateway stops.
    Fatal(FlavourError),
    /// The gateway is stopping anyway.
    Cancelled,
}

/// What a server's error body says, readably: each `type: reason` down the
/// `caused_by` chain (the root of a refused template is at the bottom), or the
/// body itself when it is not the server's JSON (a proxy's page).
pub fn reason_of(body: &str) -> String {
    let Ok(json) = serde_json::from_str::<serde_json::Value>(body) else { return body.to_string() };
    if let Some(text) = json["error"].as_str() {
        return text.to_string();
    }
    let mut parts: Vec<String> = Vec::new();
    let mut at = &json["error"];
    while at.is_object() {
        let kind = at["type"].as_str().unwrap_or_default();
        let reason = at["reason"].as_str().unwrap_or_default();
        let part = format!("{kind}: {reason}");
        if !parts.contains(&part) {
            parts.push(part);
        }
        at = &at["caused_by"];
    }
    if parts.is_empty() {
        body.to_string()
    } else {
        parts.join("; caused by ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// OpenSearch 2.19.6's answer to a template with a setting it lacks, and
    /// to `flat_object` with a parameter, literally.
    const UNKNOWN_SETTING: &str = r#"{"error":{"root_cause":[{"type":"invalid_index_template_exception","reason":"index_template [klgtest] invalid, cause [Validation Failed: 1: unknown setting [index.mapping.total_fields.ignore_dynamic_beyond_limit] please check that any required plugins are installed, or check the breaking changes documentation for removed settings;2: expected [index.mapping.total_fields.ignore_dynamic_beyond_limit] to be private but it was not;]"}],"type":"invalid_index_template_exception","reason":"index_template [klgtest] invalid, cause [Validation Failed: 1: unknown setting [index.mapping.total_fields.ignore_dynamic_beyond_limit] please check that any required plugins are installed, or check the breaking changes documentation for removed settings;2: expected [index.mapping.total_fields.ignore_dynamic_beyond_limit] to be private but it was not;]"},"status":400}"#;
    /// What a server without ILM (or ISM) answers for its API, literally.
    const NO_HANDLER: &str = r#"{"error":"no handler found for uri [/_ilm/policy/klgtest] and method [PUT]"}"#;
    const FLAT_OBJECT_PARAMETER: &str = r#"{"error":{"root_cause":[{"type":"illegal_argument_exception","reason":"composable template [klgtest] template after composition is invalid"}],"type":"illegal_argument_exception","reason":"composable template [klgtest] template after composition is invalid","caused_by":{"type":"illegal_argument_exception","reason":"invalid composite mappings for [klgtest]","caused_by":{"type":"mapper_parsing_exception","reason":"Failed to parse mapping [_doc]: Mapping definition for [l] has unsupported parameters:  [ignore_above : 1024]","caused_by":{"type":"mapper_parsing_exception","reason":"Mapping definition for [l] has unsupported parameters:  [ignore_above : 1024]"}}}},"status":400}"#;

    #[test]
    fn the_servers_reason_is_read_down_the_chain() {
        assert!(reason_of(UNKNOWN_SETTING)
            .starts_with("invalid_index_template_exception: index_template [klgtest] invalid, cause [Validation Failed: 1: unknown setting [index.mapping.total_fields.ignore_dynamic_beyond_limit]"));
        assert_eq!(reason_of(NO_HANDLER), "no handler found for uri [/_ilm/policy/klgtest] and method [PUT]");
        assert_eq!(
            reason_of(FLAT_OBJECT_PARAMETER),
            "illegal_argument_exception: composable template [klgtest] template after composition is invalid; \
             caused by illegal_argument_exception: invalid composite mappings for [klgtest]; caused by \
             mapper_parsing_exception: Failed to parse mapping [_doc]: Mapping definition for [l] has unsupported \
             parameters:  [ignore_above : 1024]; caused by mapper_parsing_exception: Mapping definition for [l] has \
             unsupported parameters:  [ignore_above : 1024]"
        );
        assert_eq!(reason_of("<html>403 Forbidden</html>"), "<html>403 Forbidden</html>");
    }

    #[test]
    fn versions_and_what_each_flavour_has() {
        assert_eq!(Version::parse("9.5.4"), Some(Version { major: 9, minor: 5, patch: 4 }));
        assert_eq!(Version::parse("3.0.0-beta1"), Some(Version { major: 3, minor: 0, patch: 0 }));
        assert_eq!(Version::parse("8.19.0-SNAPSHOT"), Some(Version { major: 8, minor: 19, patch: 0 }));
        assert_eq!(Version::parse("nine"), None);
        let es = |v| Flavour { product: Product::Elasticsearch, version: Version::parse(v) };
        let os = Flavour { product: Product::OpenSearch, version: Version::parse("2.19.6") };
        assert!(es("8.19.21").has_ignore_dynamic_beyond_limit());
        assert!(es("9.5.4").has_ignore_dynamic_beyond_limit());
        assert!(!es("8.12.2").has_ignore_dynamic_beyond_limit());
        assert!(!os.has_ignore_dynamic_beyond_limit());
        assert_eq!((es("9.5.4").flattened_type(), os.flattened_type()), ("flattened", "flat_object"));
        assert_eq!(os.to_string(), "OpenSearch 2.19.6");
    }
}
