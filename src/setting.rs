//! The vocabulary every config section shares: an error that names the key at
//! fault, and list values that can come from one comma-separated environment
//! variable. Each section (`sources/*/config.rs`, `spool/config.rs`,
//! `sink/config.rs`, …) validates itself with these; `config.rs`
//! only composes the sections and loads the file.

use std::fmt;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: config::ConfigError },
    #[error("config key `{key}`: {message}")]
    Key { key: String, message: String },
}

/// An error about one key, e.g. `server.tls.cert_file`.
pub fn key_error(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Key { key: key.to_string(), message: message.into() }
}

/// The file named by `key` can be opened for reading.
pub fn readable(key: &str, path: &Path) -> Result<(), ConfigError> {
    std::fs::File::open(path).map(|_| ()).map_err(|e| key_error(key, format!("cannot read {}: {e}", path.display())))
}

/// `#[serde(deserialize_with = "list")]` for every list-valued key: a YAML
/// sequence, or one string of comma-separated items, which is what an
/// environment variable gives (`KLG__SOURCES__JOURNALD__DIRECTORIES=/a,/b`).
/// Items are trimmed; empty items are skipped, so an empty string is an empty list.
pub fn list<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    struct ListVisitor<T>(PhantomData<T>);

    impl<'de, T: Deserialize<'de>> ListVisitor<T> {
        fn from_text<E: de::Error>(text: &str) -> Result<Vec<T>, E> {
            text.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|item| T::deserialize(de::value::StringDeserializer::<E>::new(item.to_string())))
                .collect()
        }
    }

    impl<'de, T: Deserialize<'de>> Visitor<'de> for ListVisitor<T> {
        type Value = Vec<T>;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a list, or a comma-separated string")
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
            let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0));
            while let Some(item) = seq.next_element()? {
                out.push(item);
            }
            Ok(out)
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<Vec<T>, E> {
            Self::from_text(v)
        }

        // The environment layer guesses types: `KLG__…=8080` arrives as a number.
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Vec<T>, E> {
            Self::from_text(&v.to_string())
        }

        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Vec<T>, E> {
            Self::from_text(&v.to_string())
        }

        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Vec<T>, E> {
            Self::from_text(&v.to_string())
        }

        fn visit_bool<E: de::Error>(self, v: bool) -> Result<Vec<T>, E> {
            Self::from_text(&v.to_string())
        }

        fn visit_unit<E: de::Error>(self) -> Result<Vec<T>, E> {
            Ok(Vec::new())
        }
    }

    deserializer.deserialize_any(ListVisitor(PhantomData))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct S {
        #[serde(deserialize_with = "list")]
        v: Vec<PathBuf>,
    }

    #[test]
    fn a_list_from_a_sequence_or_a_comma_separated_string() {
        let s: S = serde_json::from_str(r#"{"v": ["/a", "/b"]}"#).unwrap();
        assert_eq!(s.v, [PathBuf::from("/a"), PathBuf::from("/b")]);
        let s: S = serde_json::from_str(r#"{"v": " /a, /b ,"}"#).unwrap();
        assert_eq!(s.v, [PathBuf::from("/a"), PathBuf::from("/b")]);
        let s: S = serde_json::from_str(r#"{"v": ""}"#).unwrap();
        assert!(s.v.is_empty());
    }
}
