//! The transport: the pinned `elasticsearch` client, used only to send a
//! request and read its answer. One `Transport` per configured URL, and
//! failover between them: the client has neither retries nor failover, so a
//! bulk request that fails on one node is sent to the next on its next attempt.
//! It judges nothing: what an answer means is the
//! [`policy`](super::protocol::policy)'s call, and what a server is, the
//! [`flavour`](super::flavour)'s.
//!
//! A server's `Warning` headers (deprecations: what a newer server says to this
//! 8.x client) are logged once each, so they reach the operator before they
//! become errors.

use std::collections::HashSet;
use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use elasticsearch::auth::Credentials;
use elasticsearch::cert::{Certificate, CertificateValidation};
use elasticsearch::http::headers::{HeaderMap, HeaderValue, CONTENT_ENCODING, CONTENT_TYPE};
use elasticsearch::http::transport::{SingleNodeConnectionPool, Transport, TransportBuilder};
use elasticsearch::http::Method;
use flate2::write::GzEncoder;
use flate2::Compression;
use url::Url;

use super::config::ElasticsearchConfig;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("elasticsearch.urls: {url:?}: {message}")]
    Url { url: String, message: String },
    #[error("{key}: cannot read {path}: {source}")]
    File { key: &'static str, path: String, source: std::io::Error },
    #[error("elasticsearch.tls.ca_file: {0}")]
    Ca(String),
    #[error("elasticsearch: cannot build the HTTP client: {0}")]
    Build(String),
}

/// A response we read in full: status and body.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub body: Bytes,
}

/// How a whole request failed. What to do about it is the
/// [`policy`](super::protocol::policy)'s call, not the client's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestFailure {
    /// Connection refused/reset, DNS, TLS, timeout: nothing was read.
    Transport(String),
    /// The node answered with this status for the whole request.
    Status { status: u16, body: String },
    /// 200 but not a bulk response we can read.
    Malformed(String),
}

impl std::fmt::Display for RequestFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RequestFailure::Transport(e) => write!(f, "transport error: {e}"),
            RequestFailure::Status { status, body } => write!(f, "HTTP {status}: {body}"),
            RequestFailure::Malformed(e) => write!(f, "{e}"),
        }
    }
}

pub struct EsClient {
    nodes: Vec<(Url, Transport)>,
    current: AtomicUsize,
    compression: bool,
    timeout: Duration,
    /// `Warning` header texts already logged.
    warned: Mutex<HashSet<String>>,
}

impl EsClient {
    pub fn new(cfg: &ElasticsearchConfig) -> Result<Self, ClientError> {
        let credentials = credentials(cfg)?;
        // `Certificate` is not Clone: keep the PEM and build one per transport.
        let ca_pem = match &cfg.tls.ca_file {
            Some(ca) if !cfg.tls.insecure_skip_verify => Some(std::fs::read(ca).map_err(|source| {
                ClientError::File { key: "elasticsearch.tls.ca_file", path: ca.display().to_string(), source }
            })?),
            _ => None,
        };
        let mut nodes = Vec::new();
        for raw in &cfg.urls {
            let url = Url::parse(raw).map_err(|e| ClientError::Url { url: raw.clone(), message: e.to_string() })?;
            let mut builder = TransportBuilder::new(SingleNodeConnectionPool::new(url.clone()))
                .timeout(cfg.request_timeout)
                .disable_proxy()
                .enable_meta_header(false);
            if let Some(c) = &credentials {
                builder = builder.auth(c.clone());
            }
            if cfg.tls.insecure_skip_verify {
                builder = builder.cert_validation(CertificateValidation::None);
            } else if let Some(pem) = &ca_pem {
                let cert = Certificate::from_pem(pem).map_err(|e| ClientError::Ca(e.to_string()))?;
                builder = builder.cert_validation(CertificateValidation::Full(cert));
            }
            let transport = builder.build().map_err(|e| ClientError::Build(e.to_string()))?;
            nodes.push((url, transport));
        }
        Ok(EsClient {
            nodes,
            current: AtomicUsize::new(0),
            compression: cfg.compression,
            timeout: cfg.request_timeout,
            warned: Mutex::default(),
        })
    }

    /// The URL the next request goes to.
    pub fn current_url(&self) -> &Url {
        &self.nodes[self.current.load(Ordering::Relaxed) % self.nodes.len()].0
    }

    /// The position of the node the next request goes to, for [`EsClient::fail_over`].
    pub fn current_index(&self) -> usize {
        self.current.load(Ordering::Relaxed)
    }

    /// Moves on to the next URL, after a failure on `url`. Several workers may
    /// fail on the same node at once: only the first one moves the pointer.
    pub fn fail_over(&self, from: usize) {
        let _ = self.current.compare_exchange(from, from.wrapping_add(1), Ordering::Relaxed, Ordering::Relaxed);
    }

    /// Sends a request to the current node. Any HTTP status is a `Reply`; only
    /// transport failures are errors. The returned index identifies the node for
    /// [`EsClient::fail_over`].
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
        content_type: &'static str,
    ) -> (usize, Result<Reply, RequestFailure>) {
        self.send_with_query(method, path, &[], body, content_type).await
    }

    /// [`EsClient::send`] with query-string parameters.
    pub async fn send_with_query(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<Bytes>,
        content_type: &'static str,
    ) -> (usize, Result<Reply, RequestFailure>) {
        let at = self.current.load(Ordering::Relaxed);
        let (_, transport) = &self.nodes[at % self.nodes.len()];
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        let body = match body {
            Some(b) if self.compression && b.len() > 1024 => {
                headers.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
                Some(gzip(&b))
            }
            other => other,
        };
        let result = match transport
            .send(method, path, headers, (!query.is_empty()).then_some(query), body, Some(self.timeout))
            .await
        {
            Ok(resp) => {
                let status = resp.status_code().as_u16();
                self.log_warnings(path, resp.warning_headers());
                match resp.bytes().await {
                    Ok(body) => Ok(Reply { status, body }),
                    Err(e) => Err(RequestFailure::Transport(format!("reading the response: {e}"))),
                }
            }
            Err(e) => Err(RequestFailure::Transport(error_chain(&e))),
        };
        (at, result)
    }

    /// `GET path`, for the flavour's questions (`GET /`).
    pub async fn get(&self, path: &str) -> (usize, Result<Reply, RequestFailure>) {
        self.send(Method::Get, path, None, "application/json").await
    }

    /// Logs each distinct `Warning` header once (a bulk request would repeat
    /// it on every attempt).
    fn log_warnings<'a>(&self, path: &str, warnings: impl Iterator<Item = &'a str>) {
        for w in warnings {
            let first = self.warned.lock().expect("warned poisoned").insert(w.to_string());
            if first {
                tracing::warn!(url = %self.current_url(), path, "the server warns (logged once): {w}");
            }
        }
    }

    /// `POST /_bulk` with an NDJSON body. The response keeps only what
    /// [`bulk_response`](super::bulk_response) reads: per item its index, status
    /// and error, and a whole-request error as it is. Unfiltered, each created
    /// item also carries `_id`, `_version`, `result`, `_shards`, `_seq_no` and
    /// `_primary_term`: three times the bytes, which Elasticsearch writes
    /// and the gateway parses for nothing.
    pub async fn bulk(&self, body: Bytes) -> (usize, Result<Reply, RequestFailure>) {
        self.send_with_query(
            Method::Post,
            "/_bulk",
            &[("filter_path", BULK_FILTER_PATH)],
            Some(body),
            "application/x-ndjson",
        )
        .await
    }
}

/// What a bulk response is filtered to (see [`EsClient::bulk`]).
pub const BULK_FILTER_PATH: &str = "items.*._index,items.*.status,items.*.error,error,status";

/// gzip at a fast level: bulk bodies are repetitive JSON and compress ~10×, and
/// level 1 costs a fraction of the default level's CPU.
pub fn gzip(body: &[u8]) -> Bytes {
    let mut enc = GzEncoder::new(Vec::with_capacity(body.len() / 6), Compression::fast());
    enc.write_all(body).expect("writing to a Vec cannot fail");
    Bytes::from(enc.finish().expect("writing to a Vec cannot fail"))
}

/// The error and its causes: the top-level message of a failed request says
/// only "error sending request"; the reason (certificate, refused, DNS) is below.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cause = c.source();
    }
    out
}

fn read_secret(key: &'static str, path: &std::path::Path) -> Result<String, ClientError> {
    std::fs::read_to_string(path).map(|s| s.trim().to_string()).map_err(|source| ClientError::File {
        key,
        path: path.display().to_string(),
        source,
    })
}

fn credentials(cfg: &ElasticsearchConfig) -> Result<Option<Credentials>, ClientError> {
    let a = &cfg.auth;
    if let Some(user) = &a.username {
        let password = match &a.password_file {
            Some(p) => read_secret("elasticsearch.auth.password_file", p)?,
            None => a.password.clone().unwrap_or_default(),
        };
        return Ok(Some(Credentials::Basic(user.clone(), password)));
    }
    if let Some(p) = &a.api_key_file {
        return Ok(Some(Credentials::EncodedApiKey(read_secret("elasticsearch.auth.api_key_file", p)?)));
    }
    if let Some(k) = &a.api_key {
        return Ok(Some(Credentials::EncodedApiKey(k.clone())));
    }
    if let Some(p) = &a.bearer_token_file {
        return Ok(Some(Credentials::Bearer(read_secret("elasticsearch.auth.bearer_token_file", p)?)));
    }
    if let Some(t) = &a.bearer_token {
        return Ok(Some(Credentials::Bearer(t.clone())));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gzip_round_trips() {
        use std::io::Read;
        let data = b"{\"create\":{}}\n".repeat(100);
        let gz = gzip(&data);
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&gz[..]).read_to_end(&mut out).unwrap();
        assert_eq!(out, data);
        assert!(gz.len() < data.len() / 5);
    }
}
