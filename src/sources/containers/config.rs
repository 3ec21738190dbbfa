//! `sources.containers`: which container log files to tail and how.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::kubernetes::KubernetesConfig;
use crate::setting::{list, ConfigError};

fn key_error(key: String, message: impl Into<String>) -> ConfigError {
    crate::setting::key_error(&key, message)
}

/// Where to start in a file the gateway has never seen, on the very first start
/// (no checkpoint file yet). Files that appear later always start at the head.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StartAt {
    Beginning,
    End,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContainersConfig {
    /// Glob patterns of the files to tail (symlinks are followed).
    #[serde(default = "defaults::paths", deserialize_with = "list")]
    pub paths: Vec<String>,
    /// Only these namespaces (glob patterns); empty = all.
    #[serde(default, deserialize_with = "list")]
    pub include_namespaces: Vec<String>,
    /// Never these namespaces (glob patterns); wins over include.
    #[serde(default, deserialize_with = "list")]
    pub exclude_namespaces: Vec<String>,
    /// Only these pods (glob patterns on the pod name); empty = all.
    #[serde(default, deserialize_with = "list")]
    pub include_pods: Vec<String>,
    /// Never these pods (glob patterns on the pod name), e.g. the gateway's own.
    #[serde(default, deserialize_with = "list")]
    pub exclude_pods: Vec<String>,
    /// Only these containers (glob patterns on the container name); empty = all.
    #[serde(default, deserialize_with = "list")]
    pub include_containers: Vec<String>,
    /// Never these containers (glob patterns on the container name).
    #[serde(default, deserialize_with = "list")]
    pub exclude_containers: Vec<String>,
    /// Where to start in existing files when there is no checkpoint file at all.
    #[serde(default = "defaults::start_at")]
    pub start_at_first_run: StartAt,
    /// Watch the directories with inotify for new files; false = polling only.
    #[serde(default = "defaults::yes")]
    pub inotify: bool,
    /// How often files are re-listed and checked for growth, rotation and truncation.
    #[serde(default = "defaults::poll_interval", with = "humantime_serde")]
    pub poll_interval: Duration,
    /// One read() call's buffer; shared by all files.
    #[serde(default = "defaults::read_buffer_bytes")]
    pub read_buffer_bytes: usize,
    /// Longest logical message; the rest of a longer one is dropped and the message flagged `cut`.
    #[serde(default = "defaults::max_message_bytes")]
    pub max_message_bytes: usize,
    /// A partial line with no continuation for this long (file at EOF) is sent flagged `partial`.
    #[serde(default = "defaults::partial_timeout", with = "humantime_serde")]
    pub partial_flush_timeout: Duration,
    /// Bytes hashed (up to the first newline) to tell a file from another that reused its inode.
    #[serde(default = "defaults::fingerprint_bytes")]
    pub fingerprint_bytes: usize,
    /// A rotated or deleted file is closed this long after its last data was read.
    #[serde(default = "defaults::rotate_grace", with = "humantime_serde")]
    pub rotated_grace: Duration,
    /// Upper bound on keeping a rotated or deleted file open (its disk space is held meanwhile).
    #[serde(default = "defaults::rotated_max_open", with = "humantime_serde")]
    pub rotated_max_open: Duration,
    /// Documents per submission to the sink.
    #[serde(default = "defaults::batch_documents")]
    pub batch_max_documents: usize,
    /// Submissions to the sink in flight at once.
    #[serde(default = "defaults::max_in_flight")]
    pub max_batches_in_flight: usize,
    /// Checkpoints are written at most this often (always after delivery).
    #[serde(default = "defaults::checkpoint_interval", with = "humantime_serde")]
    pub checkpoint_interval: Duration,
    /// Labels, owners, image and pod IP from the API (off unless `enabled`).
    #[serde(default)]
    pub kubernetes: KubernetesConfig,
}

impl Default for ContainersConfig {
    fn default() -> Self {
        serde_json::from_str("{}").expect("defaults deserialize")
    }
}

impl ContainersConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        const K: &str = "sources.containers";
        if self.paths.is_empty() {
            return Err(key_error(format!("{K}.paths"), "must list at least one glob pattern"));
        }
        for (i, p) in self.paths.iter().enumerate() {
            if let Err(e) = glob::Pattern::new(p) {
                return Err(key_error(format!("{K}.paths[{i}]"), format!("{p:?} is not a glob pattern: {e}")));
            }
            if !p.starts_with('/') {
                return Err(key_error(format!("{K}.paths[{i}]"), format!("{p:?} must be an absolute path")));
            }
        }
        for (name, list) in [
            ("include_namespaces", &self.include_namespaces),
            ("exclude_namespaces", &self.exclude_namespaces),
            ("include_pods", &self.include_pods),
            ("exclude_pods", &self.exclude_pods),
            ("include_containers", &self.include_containers),
            ("exclude_containers", &self.exclude_containers),
        ] {
            for (i, p) in list.iter().enumerate() {
                if let Err(e) = glob::Pattern::new(p) {
                    return Err(key_error(format!("{K}.{name}[{i}]"), format!("{p:?} is not a glob pattern: {e}")));
                }
            }
        }
        let at_least = |key: &str, value: usize, min: usize| {
            if value < min {
                Err(key_error(format!("{K}.{key}"), format!("{value} is below the minimum {min}")))
            } else {
                Ok(())
            }
        };
        at_least("read_buffer_bytes", self.read_buffer_bytes, 4096)?;
        at_least("max_message_bytes", self.max_message_bytes, 1024)?;
        at_least("fingerprint_bytes", self.fingerprint_bytes, 16)?;
        at_least("batch_max_documents", self.batch_max_documents, 1)?;
        at_least("max_batches_in_flight", self.max_batches_in_flight, 1)?;
        if self.poll_interval.is_zero() {
            return Err(key_error(format!("{K}.poll_interval"), "must be above zero"));
        }
        if self.rotated_max_open < self.rotated_grace {
            return Err(key_error(format!("{K}.rotated_max_open"), "must be at least rotated_grace"));
        }
        self.kubernetes.validate()
    }
}

mod defaults {
    use super::*;
    pub fn paths() -> Vec<String> {
        vec!["/var/log/containers/*.log".into()]
    }
    pub fn start_at() -> StartAt {
        StartAt::Beginning
    }
    pub fn yes() -> bool {
        true
    }
    pub fn poll_interval() -> Duration {
        Duration::from_millis(250)
    }
    pub fn read_buffer_bytes() -> usize {
        256 * 1024
    }
    pub fn max_message_bytes() -> usize {
        1024 * 1024
    }
    pub fn partial_timeout() -> Duration {
        Duration::from_secs(5)
    }
    pub fn fingerprint_bytes() -> usize {
        256
    }
    pub fn rotate_grace() -> Duration {
        Duration::from_secs(5)
    }
    pub fn rotated_max_open() -> Duration {
        Duration::from_secs(300)
    }
    pub fn batch_documents() -> usize {
        2000
    }
    pub fn max_in_flight() -> usize {
        4
    }
    pub fn checkpoint_interval() -> Duration {
        Duration::from_secs(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate() {
        let c = ContainersConfig::default();
        assert_eq!(c.paths, vec!["/var/log/containers/*.log"]);
        assert_eq!(c.max_message_bytes, 1 << 20);
        c.validate().unwrap();
    }

    #[test]
    fn errors_name_the_key() {
        let c = ContainersConfig { exclude_pods: vec!["ok".into(), "[".into()], ..Default::default() };
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("sources.containers.exclude_pods[1]"), "{err}");
        let c = ContainersConfig { paths: vec!["relative/*.log".into()], ..Default::default() };
        assert!(c.validate().unwrap_err().to_string().contains("sources.containers.paths[0]"));
    }
}
