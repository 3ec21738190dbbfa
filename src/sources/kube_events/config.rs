//! `sources.events`: where the Kubernetes Events source reads the API and how
//! it hands batches to the sink.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::setting::{key_error, ConfigError};
use crate::sources::kube_api::Connection;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsConfig {
    /// A kubeconfig file (its current context); null = the pod's service account (in-cluster).
    #[serde(default)]
    pub kubeconfig: Option<PathBuf>,
    /// The API server's URL, overriding the kubeconfig's or the in-cluster one.
    #[serde(default)]
    pub api_url: Option<String>,
    /// Events handed to the sink in one delivery at most.
    #[serde(default = "defaults::batch_max_documents")]
    pub batch_max_documents: usize,
    /// Deliveries in flight at once; the resume point still advances strictly in order.
    #[serde(default = "defaults::max_batches_in_flight")]
    pub max_batches_in_flight: usize,
    /// The resume point (resourceVersion) is written at most this often (always after delivery).
    #[serde(default = "defaults::checkpoint_interval", with = "humantime_serde")]
    pub checkpoint_interval: Duration,
    /// One watch request lasts this long, then resumes from its resourceVersion.
    #[serde(default = "defaults::watch_timeout", with = "humantime_serde")]
    pub watch_timeout: Duration,
    /// TCP/TLS connect timeout towards the API server.
    #[serde(default = "defaults::connect_timeout", with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Longest wait between two attempts after a failed list or watch (from 500 ms, doubling).
    #[serde(default = "defaults::retry_max_backoff", with = "humantime_serde")]
    pub retry_max_backoff: Duration,
}

impl Default for EventsConfig {
    fn default() -> Self {
        serde_json::from_str("{}").expect("defaults deserialize")
    }
}

impl EventsConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        const K: &str = "sources.events";
        self.connection().validate(K)?;
        if self.batch_max_documents == 0 {
            return Err(key_error(&format!("{K}.batch_max_documents"), "must be at least 1"));
        }
        if self.max_batches_in_flight == 0 {
            return Err(key_error(&format!("{K}.max_batches_in_flight"), "must be at least 1"));
        }
        Ok(())
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
    pub fn batch_max_documents() -> usize {
        500
    }
    pub fn max_batches_in_flight() -> usize {
        2
    }
    pub fn checkpoint_interval() -> Duration {
        Duration::from_secs(1)
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
    fn defaults_and_errors_name_the_key() {
        let c = EventsConfig::default();
        assert_eq!((c.batch_max_documents, c.max_batches_in_flight), (500, 2));
        assert_eq!(c.watch_timeout, Duration::from_secs(290));
        c.validate().unwrap();
        let c = EventsConfig { batch_max_documents: 0, ..EventsConfig::default() };
        assert!(c.validate().unwrap_err().to_string().contains("sources.events.batch_max_documents"));
        let c = EventsConfig { api_url: Some("not a url".into()), ..EventsConfig::default() };
        assert!(c.validate().unwrap_err().to_string().contains("sources.events.api_url"));
        let c = EventsConfig { kubeconfig: Some("/nonexistent/kubeconfig".into()), ..EventsConfig::default() };
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("sources.events.kubeconfig") && err.contains("/nonexistent/kubeconfig"), "{err}");
    }
}
