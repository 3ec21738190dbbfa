//! The files the webhook's config names — its TLS certificate, key and client
//! CA, and the bearer tokens — loaded and checked once. `serve` uses what this
//! returns and `check-config` runs the very same function, so a config that
//! passes the check also starts.

use std::sync::Arc;

use super::auth::{Tokens, TokensError};
use super::config::ServerConfig;
use super::tls::{server_config, TlsError};
use crate::setting::{key_error, ConfigError};

/// What the webhook builds from its files at start-up: the TLS configuration
/// (certificate, key, client CA) and the bearer tokens. `serve` runs exactly
/// this, and so does `check-config`, so a config that passes the check also
/// starts. Errors name the key and the file.
pub struct WebhookFiles {
    pub tls: Option<Arc<rustls::ServerConfig>>,
    pub tokens: Option<Tokens>,
}

/// Loads and checks every file `server` names.
pub fn load(cfg: &ServerConfig) -> Result<WebhookFiles, ConfigError> {
    let tls = match cfg.tls.enabled {
        true => Some(Arc::new(server_config(cfg).map_err(|e| match e {
            TlsError::Pem { key, path, message } => key_error(key, format!("cannot read {path}: {message}")),
            TlsError::Empty { key, path, what } => key_error(key, format!("{path} contains no {what}")),
            TlsError::Config(message) => key_error("server.tls", message),
        })?)),
        false => None,
    };
    let tokens = match &cfg.bearer_tokens_file {
        Some(path) => Some(Tokens::load(path).map_err(|e| {
            let message = match e {
                TokensError::Read { path, source } => format!("cannot read {path}: {source}"),
                TokensError::Empty { path } => format!("{path} has no tokens (one per line; # starts a comment)"),
                TokensError::Invalid { path, line } => {
                    format!("{path} line {line}: a token must be one word of visible ASCII")
                }
            };
            key_error("server.bearer_tokens_file", message)
        })?),
        None => None,
    };
    Ok(WebhookFiles { tls, tokens })
}
