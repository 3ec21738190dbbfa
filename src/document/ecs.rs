//! ECS building blocks every document shape shares (docs/fields.md): one
//! definition, so the sources cannot drift apart on them.

use serde::Serialize;

/// `{ "name": … }`: `host`, `kubernetes.node`, `orchestrator.cluster`, ….
#[derive(Serialize)]
pub struct Named<'a> {
    pub name: &'a str,
}

/// `orchestrator`: always Kubernetes, with the configured cluster name.
#[derive(Serialize)]
pub struct Orchestrator<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    cluster: Named<'a>,
}

impl<'a> Orchestrator<'a> {
    pub fn kubernetes(cluster: &'a str) -> Self {
        Orchestrator { kind: "kubernetes", cluster: Named { name: cluster } }
    }
}

/// `data_stream`: where Elastic's integrations would have put the document
/// (`logs-<dataset>-<namespace>`). The gateway writes to its own daily
/// indices; these fields, and the alias on those indices, let what is built
/// for the integration's data streams (detection rules, dashboards) find it.
#[derive(Serialize)]
pub struct DataStream<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    dataset: &'static str,
    namespace: &'a str,
}

impl<'a> DataStream<'a> {
    pub fn logs(dataset: &'static str, namespace: &'a str) -> Self {
        DataStream { kind: "logs", dataset, namespace }
    }

    pub fn dataset(&self) -> &'static str {
        self.dataset
    }

    pub fn namespace(&self) -> &'a str {
        self.namespace
    }

    /// The alias the integration's index pattern (`logs-<dataset>-*`) finds.
    pub fn alias(dataset: &str, namespace: &str) -> String {
        format!("logs-{dataset}-{namespace}")
    }
}

/// A `data_stream.namespace` from the configuration, checked as Elasticsearch
/// checks the namespace part of a data stream name: 1–100 bytes, lowercase,
/// none of `\ / * ? " < > | , # :`, no space and no `-` (it ends the alias
/// name `logs-<dataset>-<namespace>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Namespace(String);

impl Namespace {
    pub fn new(namespace: &str) -> Result<Self, String> {
        let bad = |why: &str| Err(format!("data stream namespace {namespace:?} {why}"));
        if namespace.is_empty() || namespace.len() > 100 {
            return bad("must be 1 to 100 bytes long");
        }
        if namespace.chars().any(|c| c.is_uppercase()) {
            return bad("must be lowercase");
        }
        if let Some(c) = namespace.chars().find(|c| "\\/*?\"<>|,#: -".contains(*c)) {
            return bad(&format!("must not contain {c:?}"));
        }
        Ok(Namespace(namespace.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for Namespace {
    /// `kube_log_gateway`, not Elastic Agent's `default`: an alias cannot
    /// have the name of a data stream, so the gateway's alias must never be
    /// the name of one Fleet creates (docs/decisions.md).
    fn default() -> Self {
        Namespace("kube_log_gateway".into())
    }
}

impl<'de> serde::Deserialize<'de> for Namespace {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Namespace::new(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_elasticsearch_takes_and_refuses() {
        for ok in ["default", "prod", "kube_log_gateway", "team.a", "x1"] {
            assert_eq!(Namespace::new(ok).unwrap().as_str(), ok);
        }
        for (bad, why) in [
            ("", "must be 1 to 100 bytes long"),
            ("Prod", "must be lowercase"),
            ("a-b", "must not contain '-'"),
            ("a b", "must not contain ' '"),
            ("a*", "must not contain '*'"),
        ] {
            assert_eq!(Namespace::new(bad).unwrap_err(), format!("data stream namespace {bad:?} {why}"));
        }
        assert!(Namespace::new(&"n".repeat(101)).is_err());
    }
}
