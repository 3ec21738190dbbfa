//! `sources.journald`: which journal directories to read, which entries to
//! keep, and where to start when there is no saved cursor.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::setting::{list, ConfigError};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JournaldConfig {
    /// Journal directories as mounted from the host; missing ones are skipped, at least one must exist.
    #[serde(default = "defaults::directories", deserialize_with = "list")]
    pub directories: Vec<PathBuf>,
    /// `_SYSTEMD_UNIT` values to ship (OR-ed with `identifiers`).
    #[serde(default = "defaults::units", deserialize_with = "list")]
    pub units: Vec<String>,
    /// `SYSLOG_IDENTIFIER` values to ship as well (OR-ed with `units`).
    #[serde(default, deserialize_with = "list")]
    pub identifiers: Vec<String>,
    /// Where to begin when no cursor is saved: `boot`, `head`, `tail` or `{since: 2h}`.
    #[serde(default)]
    pub start_at: StartAt,
    /// Entries handed to the sink in one delivery.
    #[serde(default = "defaults::batch_size")]
    pub batch_size: usize,
    /// Deliveries in flight at once; the cursor still advances strictly in order.
    #[serde(default = "defaults::max_in_flight_batches")]
    pub max_in_flight_batches: usize,
    /// The cursor file is rewritten at most this often (and always when idle and at shutdown).
    #[serde(default = "defaults::checkpoint_interval", with = "humantime_serde")]
    pub checkpoint_interval: Duration,
    /// The journal handle is reopened after this many entries read, which unmaps the
    /// journal-file windows libsystemd keeps mapped (file-backed RSS) while reading.
    #[serde(default = "defaults::reopen_every")]
    pub reopen_every: u64,
}

impl Default for JournaldConfig {
    fn default() -> Self {
        JournaldConfig {
            directories: defaults::directories(),
            units: defaults::units(),
            identifiers: Vec::new(),
            start_at: StartAt::default(),
            batch_size: defaults::batch_size(),
            max_in_flight_batches: defaults::max_in_flight_batches(),
            checkpoint_interval: defaults::checkpoint_interval(),
            reopen_every: defaults::reopen_every(),
        }
    }
}

/// Where reading begins when there is no saved cursor.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum StartAt {
    /// The oldest entry of the current boot (falls back to `head` if the journal has none).
    #[default]
    Boot,
    /// The oldest entry the journal still keeps.
    Head,
    /// Only entries written after the gateway started.
    Tail,
    /// Entries from this long ago onwards.
    Since(#[serde(with = "humantime_serde")] Duration),
}

/// The default of `sources.journald.reopen_every`: the handle is reopened (and
/// repositioned at the last cursor) after this many entries. libsystemd maps
/// journal files in 8 MiB windows and keeps up to 64 of them mapped, so a long
/// catch-up read would otherwise keep hundreds of MB of journal pages resident;
/// reopening unmaps them. Peak file-backed RSS of the node role: 143 MiB never,
/// 69 MiB at 100,000, 31 MiB at 25,000, 22 MiB at 5,000, with no measurable
/// change in CPU per entry (docs/benchmarks.md, "journald").
pub const DEFAULT_REOPEN_EVERY: u64 = 5_000;

mod defaults {
    use super::*;
    pub fn directories() -> Vec<PathBuf> {
        vec!["/var/log/journal".into(), "/run/log/journal".into()]
    }
    pub fn units() -> Vec<String> {
        vec!["kubelet.service".into()]
    }
    pub fn batch_size() -> usize {
        1000
    }
    pub fn max_in_flight_batches() -> usize {
        4
    }
    pub fn checkpoint_interval() -> Duration {
        Duration::from_secs(1)
    }
    pub fn reopen_every() -> u64 {
        DEFAULT_REOPEN_EVERY
    }
}

fn key_error(key: String, message: impl Into<String>) -> ConfigError {
    crate::setting::key_error(&key, message)
}

impl JournaldConfig {
    /// Checks serde cannot express; every error names its key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        const P: &str = "sources.journald";
        if self.directories.is_empty() {
            return Err(key_error(format!("{P}.directories"), "needs at least one directory"));
        }
        for (i, d) in self.directories.iter().enumerate() {
            if !d.is_absolute() {
                return Err(key_error(
                    format!("{P}.directories[{i}]"),
                    format!("{} must be an absolute path", d.display()),
                ));
            }
        }
        if self.units.is_empty() && self.identifiers.is_empty() {
            return Err(key_error(
                format!("{P}.units"),
                "needs at least one unit (or an entry in sources.journald.identifiers)",
            ));
        }
        for (name, list) in [("units", &self.units), ("identifiers", &self.identifiers)] {
            for (i, v) in list.iter().enumerate() {
                if v.is_empty() || v.contains(['\n', '\0']) {
                    return Err(key_error(format!("{P}.{name}[{i}]"), format!("{v:?} is empty or has a newline/NUL")));
                }
            }
        }
        if self.batch_size == 0 {
            return Err(key_error(format!("{P}.batch_size"), "must be at least 1"));
        }
        if self.max_in_flight_batches == 0 {
            return Err(key_error(format!("{P}.max_in_flight_batches"), "must be at least 1"));
        }
        if self.checkpoint_interval.is_zero() {
            return Err(key_error(format!("{P}.checkpoint_interval"), "must be greater than zero"));
        }
        if self.reopen_every == 0 {
            return Err(key_error(format!("{P}.reopen_every"), "must be at least 1 (entries)"));
        }
        if let StartAt::Since(d) = self.start_at {
            if d.is_zero() {
                return Err(key_error(format!("{P}.start_at.since"), "must be greater than zero (or use `tail`)"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> JournaldConfig {
        let v: serde_json::Value = serde_json::from_str(yaml).unwrap();
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn defaults_and_start_at_forms() {
        let c = parse("{}");
        assert_eq!(c.units, vec!["kubelet.service"]);
        assert_eq!(c.start_at, StartAt::Boot);
        assert_eq!(parse(r#"{"start_at":"head"}"#).start_at, StartAt::Head);
        assert_eq!(parse(r#"{"start_at":"tail"}"#).start_at, StartAt::Tail);
        assert_eq!(parse(r#"{"start_at":{"since":"2h"}}"#).start_at, StartAt::Since(Duration::from_secs(7200)));
        c.validate().unwrap();
    }

    #[test]
    fn errors_name_the_key() {
        let mut c = JournaldConfig { units: vec![String::new()], ..Default::default() };
        assert!(c.validate().unwrap_err().to_string().contains("sources.journald.units[0]"));
        c.units.clear();
        assert!(c.validate().unwrap_err().to_string().contains("sources.journald.units"));
        c.identifiers = vec!["kubelet".into()];
        c.validate().unwrap();
        c.directories = vec!["relative".into()];
        assert!(c.validate().unwrap_err().to_string().contains("sources.journald.directories[0]"));
        let c = JournaldConfig { reopen_every: 0, ..Default::default() };
        assert!(c.validate().unwrap_err().to_string().contains("sources.journald.reopen_every"));
        assert_eq!(parse(r#"{"reopen_every":5000}"#).reopen_every, 5000);
    }

    #[test]
    fn reopen_every_from_the_file_and_the_environment() {
        use std::io::Write;
        let mut f = tempfile::Builder::new().suffix(".yaml").tempfile().unwrap();
        f.write_all(b"sources:\n  journald:\n    reopen_every: 7000\n").unwrap();
        let load = |env: &[(&str, &str)]| {
            crate::config::Config::load_with_env(f.path(), env.iter().map(|(k, v)| (k.to_string(), v.to_string())))
        };
        let section = |cfg: crate::config::Config| cfg.sources.section::<JournaldConfig>("journald").unwrap().unwrap();
        assert_eq!(section(load(&[]).unwrap()).reopen_every, 7000);
        let cfg = load(&[("KLG__SOURCES__JOURNALD__REOPEN_EVERY", "5000")]).unwrap();
        assert_eq!(section(cfg).reopen_every, 5000);
        let err = load(&[("KLG__SOURCES__JOURNALD__REOPEN_EVERY", "0")]).unwrap_err().to_string();
        assert!(err.contains("sources.journald.reopen_every"), "{err}");
    }
}
