//! A source's own configuration section, `sources.<label>`: parsed by the
//! source from the raw value the configuration loader keeps, so that the loader
//! knows no source's keys. Errors name the full key (`sources.journald.units`).

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::setting::{key_error, ConfigError};

/// A section type: serde does the shape, [`SourceSection::validate`] the rest.
pub trait SourceSection: DeserializeOwned + Serialize {
    /// The checks serde cannot express; errors name their key.
    fn validate(&self) -> Result<(), ConfigError>;
}

/// `sources.<label>` parsed and validated.
pub fn parse<T: SourceSection>(label: &str, raw: &Value) -> Result<T, ConfigError> {
    let section: T = serde_path_to_error::deserialize(raw).map_err(|e| {
        let path = e.path().to_string();
        let key = if path == "." { format!("sources.{label}") } else { format!("sources.{label}.{path}") };
        key_error(&key, e.into_inner().to_string())
    })?;
    section.validate()?;
    Ok(section)
}

/// `sources.<label>` parsed, validated and written back with its defaults.
pub fn check<T: SourceSection>(label: &str, raw: &Value) -> Result<Value, ConfigError> {
    let section: T = parse(label, raw)?;
    serde_json::to_value(&section).map_err(|e| key_error(&format!("sources.{label}"), e.to_string()))
}
