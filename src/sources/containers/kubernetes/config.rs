//! `sources.containers.kubernetes`: where the pod metadata cache reads the API
//! and what it keeps.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::setting::{key_error, list, ConfigError};
use crate::sources::kube_api::Connection;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KubernetesConfig {
    /// Enrich container documents from the API (labels, owners, image, pod IP).
    #[serde(default)]
    pub enabled: bool,
    /// A kubeconfig file (its current context); null = the pod's service account (in-cluster).
    #[serde(default)]
    pub kubeconfig: Option<PathBuf>,
    /// The API server's URL, overriding the kubeconfig's or the in-cluster one.
    #[serde(default)]
    pub api_url: Option<String>,
    /// Whose pods to watch (`spec.nodeName`); null = the gateway's `node_name`.
    #[serde(default)]
    pub node_name: Option<String>,
    /// A deleted pod stays in the cache this long, so its last lines are still enriched.
    #[serde(default = "defaults::deleted_pod_retention", with = "humantime_serde")]
    pub deleted_pod_retention: Duration,
    /// Annotation keys (glob patterns) copied to `kubernetes.annotations`; empty = none.
    #[serde(default, deserialize_with = "list")]
    pub annotations: Vec<String>,
    /// At start, reading files waits at most this long for the first list of pods.
    #[serde(default = "defaults::initial_sync_timeout", with = "humantime_serde")]
    pub initial_sync_timeout: Duration,
    /// One watch request lasts this long before it is renewed from where it stood.
    #[serde(default = "defaults::watch_timeout", with = "humantime_serde")]
    pub watch_timeout: Duration,
    /// TCP/TLS connect timeout towards the API server.
    #[serde(default = "defaults::connect_timeout", with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Longest wait between two attempts after a failed list or watch.
    #[serde(default = "defaults::retry_max_backoff", with = "humantime_serde")]
    pub retry_max_backoff: Duration,
}

impl Default for KubernetesConfig {
    fn default() -> Self {
        serde_json::from_str("{}").expect("defaults deserialize")
    }
}

impl KubernetesConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        const K: &str = "sources.containers.kubernetes";
        for (i, p) in self.annotations.iter().enumerate() {
            if let Err(e) = glob::Pattern::new(p) {
                return Err(key_error(&format!("{K}.annotations[{i}]"), format!("{p:?} is not a glob pattern: {e}")));
            }
        }
        // The kubeconfig is read only when the API is.
        let connection = self.connection();
        Connection { kubeconfig: connection.kubeconfig.filter(|_| self.enabled), ..connection }.validate(K)
    }

    /// The connection keys, as every source that reads the API takes them.
    pub fn connection(&self) -> Connection<'_> {
        Connection {
            kubeconfig: self.kubeconfig.as_deref(),
            api_url: self.api_url.as_deref(),
            connect_timeout: self.connect_timeout,
            watch_timeout: self.watch_timeout,
            retry_max_backoff: self.retry_max_backoff,
        }
    }
}

mod defaults {
    use std::time::Duration;

    pub fn deleted_pod_retention() -> Duration {
        Duration::from_secs(300)
    }
    pub fn initial_sync_timeout() -> Duration {
        Duration::from_secs(10)
    }
    pub fn watch_timeout() -> Duration {
        Duration::from_secs(290)
    }
    pub fn connect_timeout() -> Duration {
        Duration::from_secs(10)
    }
    pub fn retry_max_backoff() -> Duration {
        Duration::from_secs(30)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_off_and_valid() {
        let c = KubernetesConfig::default();
        assert!(!c.enabled);
        assert!(c.annotations.is_empty());
        assert_eq!(c.deleted_pod_retention, Duration::from_secs(300));
        c.validate().unwrap();
    }

    #[test]
    fn errors_name_the_key() {
        let c = KubernetesConfig { annotations: vec!["[".into()], ..Default::default() };
        assert!(c.validate().unwrap_err().to_string().contains("kubernetes.annotations[0]"));
        let c = KubernetesConfig { api_url: Some("not a url".into()), ..Default::default() };
        assert!(c.validate().unwrap_err().to_string().contains("kubernetes.api_url"));
    }
}
