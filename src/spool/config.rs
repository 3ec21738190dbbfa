//! `spool`: how much the webhook may hold while Elasticsearch is behind.

use serde::{Deserialize, Serialize};

use crate::setting::{key_error, ConfigError};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpoolConfig {
    /// Upper bound of spooled bytes; past it the webhook answers 429.
    #[serde(default = "defaults::spool_max_bytes")]
    pub max_bytes: u64,
    /// Spool entries handed to the sink at once (each entry is one webhook request).
    #[serde(default = "defaults::spool_max_in_flight")]
    pub max_in_flight_entries: usize,
    /// ... and at most this many bytes of documents: entries in flight are held
    /// in memory until delivered, however long the server is away.
    #[serde(default = "defaults::spool_max_in_flight_bytes")]
    pub max_in_flight_bytes: u64,
}

impl Default for SpoolConfig {
    fn default() -> Self {
        SpoolConfig {
            max_bytes: defaults::spool_max_bytes(),
            max_in_flight_entries: defaults::spool_max_in_flight(),
            max_in_flight_bytes: defaults::spool_max_in_flight_bytes(),
        }
    }
}

impl SpoolConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.max_bytes < 1024 * 1024 {
            return Err(key_error("spool.max_bytes", "must be at least 1 MiB"));
        }
        if self.max_in_flight_entries == 0 {
            return Err(key_error("spool.max_in_flight_entries", "must be at least 1"));
        }
        if self.max_in_flight_bytes < 1024 * 1024 {
            return Err(key_error("spool.max_in_flight_bytes", "must be at least 1 MiB"));
        }
        Ok(())
    }
}

mod defaults {
    pub fn spool_max_bytes() -> u64 {
        1024 * 1024 * 1024
    }
    pub fn spool_max_in_flight() -> usize {
        64
    }
    pub fn spool_max_in_flight_bytes() -> u64 {
        64 * 1024 * 1024
    }
}
