//! Which server this is: `GET /` at start, as every client of these servers
//! does. OpenSearch says `"distribution": "opensearch"` there; Elasticsearch
//! says nothing of the kind. Elasticsearch builds without the root endpoint
//! (the integ-test distribution) answer 405; the version is then read from
//! `GET /_nodes/_local`, which only Elasticsearch gets to ask.
//!
//! Until the server answers, nothing is installed and nothing is sent; a
//! refusal (credentials, privileges: both endpoints need `monitor`) is logged
//! with the server's words and retried, like any other start-up request.

use elasticsearch::http::Method;
use serde::Deserialize;

use super::{Flavour, FlavourError, FlavourSetting, Product, Stopped, Version};
use crate::shutdown::Shutdown;
use crate::sink::config::RetryConfig;
use crate::sink::protocol::policy::Action;
use crate::sink::protocol::retry::Backoff;
use crate::sink::transport::{EsClient, Reply, RequestFailure};

/// What one answer to `GET /` says.
#[derive(Debug, PartialEq, Eq)]
pub enum RootAnswer {
    Known(Flavour),
    /// An Elasticsearch without the root endpoint: ask `GET /_nodes/_local`.
    AskNodes,
    /// No answer that says what the server is (yet).
    Failed(RequestFailure),
}

#[derive(Deserialize)]
struct Root {
    version: RootVersion,
}

#[derive(Deserialize)]
struct RootVersion {
    number: String,
    #[serde(default)]
    distribution: Option<String>,
}

/// Reads the answer to `GET /`.
pub fn from_root(reply: Result<Reply, RequestFailure>) -> RootAnswer {
    let reply = match reply {
        Ok(r) => r,
        Err(e) => return RootAnswer::Failed(e),
    };
    let text = || String::from_utf8_lossy(&reply.body[..reply.body.len().min(512)]).into_owned();
    match reply.status {
        200 => match serde_json::from_slice::<Root>(&reply.body) {
            Ok(root) => match Version::parse(&root.version.number) {
                Some(version) => {
                    let product = match root.version.distribution.as_deref() {
                        Some("opensearch") => Product::OpenSearch,
                        _ => Product::Elasticsearch,
                    };
                    RootAnswer::Known(Flavour { product, version: Some(version) })
                }
                None => RootAnswer::Failed(RequestFailure::Malformed(format!(
                    "GET / names version {:?}, not a version",
                    root.version.number
                ))),
            },
            Err(e) => RootAnswer::Failed(RequestFailure::Malformed(format!("GET / is not a server's root: {e}"))),
        },
        405 => RootAnswer::AskNodes,
        status => RootAnswer::Failed(RequestFailure::Status { status, body: text() }),
    }
}

#[derive(Deserialize)]
struct Nodes {
    nodes: std::collections::BTreeMap<String, Node>,
}

#[derive(Deserialize)]
struct Node {
    version: String,
}

/// The lowest version among the nodes of `GET /_nodes/_local` (one node).
pub fn from_nodes(reply: Result<Reply, RequestFailure>) -> Result<Flavour, RequestFailure> {
    let reply = reply?;
    if reply.status != 200 {
        let body = String::from_utf8_lossy(&reply.body[..reply.body.len().min(512)]).into_owned();
        return Err(RequestFailure::Status { status: reply.status, body });
    }
    let nodes: Nodes = serde_json::from_slice(&reply.body)
        .map_err(|e| RequestFailure::Malformed(format!("GET /_nodes/_local is not a nodes answer: {e}")))?;
    let version = nodes.nodes.values().filter_map(|n| Version::parse(&n.version)).min();
    match version {
        Some(v) => Ok(Flavour { product: Product::Elasticsearch, version: Some(v) }),
        None => Err(RequestFailure::Malformed("GET /_nodes/_local names no node version".into())),
    }
}

/// The detected flavour against the pinned one.
pub fn check_pin(setting: FlavourSetting, found: Flavour, url: &str) -> Result<Flavour, FlavourError> {
    let pinned = match setting {
        FlavourSetting::Auto => return Ok(found),
        FlavourSetting::Elasticsearch => Product::Elasticsearch,
        FlavourSetting::Opensearch => Product::OpenSearch,
    };
    if pinned == found.product {
        Ok(found)
    } else {
        Err(FlavourError::Mismatch { pinned: setting, found: found.to_string(), url: url.to_string() })
    }
}

/// One round of asking: `GET /`, and `GET /_nodes/_local` if needed.
async fn ask(client: &EsClient) -> Result<Flavour, RequestFailure> {
    let (_, root) = client.get("/").await;
    match from_root(root) {
        RootAnswer::Known(flavour) => Ok(flavour),
        RootAnswer::AskNodes => {
            let (_, nodes) = client
                .send_with_query(
                    Method::Get,
                    "/_nodes/_local",
                    &[("filter_path", "nodes.*.version")],
                    None,
                    "application/json",
                )
                .await;
            from_nodes(nodes)
        }
        RootAnswer::Failed(e) => Err(e),
    }
}

/// One round of asking, for the log when nothing depends on the answer.
pub async fn until_known_once(client: &EsClient, setting: FlavourSetting) -> Result<Flavour, String> {
    let url = client.current_url().to_string();
    let found = ask(client).await.map_err(|e| e.to_string())?;
    check_pin(setting, found, &url).map_err(|e| e.to_string())
}

/// Asks until the server answers (backing off, failing over, logging each
/// failure with the server's own words), then checks the pin.
pub async fn until_known(
    client: &EsClient,
    setting: FlavourSetting,
    retry: &RetryConfig,
    shutdown: &Shutdown,
) -> Result<Flavour, Stopped> {
    let mut backoff = Backoff::new(retry);
    loop {
        let url = client.current_url().to_string();
        match ask(client).await {
            Ok(found) => return check_pin(setting, found, &url).map_err(Stopped::Fatal),
            Err(e) => {
                if matches!(e, RequestFailure::Status { status: 401, .. }) {
                    tracing::error!(url = %url, "the server refuses to say what it is (GET /; the credentials were \
                        not accepted: check elasticsearch.auth), will retry: {e}");
                } else if e.needs_an_operator() {
                    tracing::error!(url = %url, "the server refuses to say what it is (GET /; the credentials need \
                        the monitor cluster privilege, or pin elasticsearch.flavour), will retry: {e}");
                } else {
                    tracing::warn!(url = %url, "cannot ask the server what it is yet (GET /), will retry: {e}");
                }
                if e.action() == (Action::Retry { failover: true }) {
                    client.fail_over(client.current_index());
                }
            }
        }
        if !backoff.wait(shutdown).await {
            return Err(Stopped::Cancelled);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(status: u16, body: &str) -> Result<Reply, RequestFailure> {
        Ok(Reply { status, body: bytes::Bytes::copy_from_slice(body.as_bytes()) })
    }

    /// `GET /` of OpenSearch 2.19.6 (integ-test zip), literally.
    const OPENSEARCH_2: &str = r#"{
  "name" : "klg-9220",
  "cluster_name" : "opensearch",
  "cluster_uuid" : "hoE7j5UpQQmhAI6SAMn_GA",
  "version" : {
    "distribution" : "opensearch",
    "number" : "2.19.6",
    "build_type" : "zip",
    "build_hash" : "97d3c13bf22a4a72ac11dc503fe44c97662b9161",
    "build_date" : "2026-07-01T04:27:16.038403104Z",
    "build_snapshot" : false,
    "lucene_version" : "9.12.3",
    "minimum_wire_compatibility_version" : "7.10.0",
    "minimum_index_compatibility_version" : "7.0.0"
  },
  "tagline" : "The OpenSearch Project: https://opensearch.org/"
}"#;

    /// `GET /` of a full Elasticsearch 8.19 distribution.
    const ELASTICSEARCH_8: &str = r#"{"name":"es-1","cluster_name":"logs","cluster_uuid":"f0XhKb3vS6yqUC1zXoWm6w","version":{"number":"8.19.0","build_flavor":"default","build_type":"docker","build_hash":"0000000","build_date":"2025-07-01T00:00:00.000Z","build_snapshot":false,"lucene_version":"9.12.2","minimum_wire_compatibility_version":"7.17.0","minimum_index_compatibility_version":"7.0.0"},"tagline":"You Know, for Search"}"#;

    /// `GET /` and `GET /_nodes/_local?filter_path=nodes.*.version` of
    /// Elasticsearch 9.5.4's integ-test zip, literally.
    const NO_ROOT: &str =
        r#"{"error":"Incorrect HTTP method for uri [/] and method [GET], allowed: [DELETE]","status":405}"#;
    const NODES_9: &str = r#"{"nodes":{"SgU7QaYZTYOQ90gGVmt0LQ":{"version":"9.5.4"}}}"#;

    #[test]
    fn reads_each_server() {
        let v = |s| Version::parse(s);
        assert_eq!(
            from_root(reply(200, OPENSEARCH_2)),
            RootAnswer::Known(Flavour { product: Product::OpenSearch, version: v("2.19.6") })
        );
        assert_eq!(
            from_root(reply(200, ELASTICSEARCH_8)),
            RootAnswer::Known(Flavour { product: Product::Elasticsearch, version: v("8.19.0") })
        );
        assert_eq!(from_root(reply(405, NO_ROOT)), RootAnswer::AskNodes);
        assert_eq!(
            from_nodes(reply(200, NODES_9)),
            Ok(Flavour { product: Product::Elasticsearch, version: v("9.5.4") })
        );
    }

    #[test]
    fn refusals_keep_the_servers_words() {
        let refused = r#"{"error":{"root_cause":[{"type":"security_exception","reason":"action [cluster:monitor/main] is unauthorized for user [klg] with effective roles [klg_writer], this action is granted by the cluster privileges [monitor,manage,all]"}],"type":"security_exception","reason":"action [cluster:monitor/main] is unauthorized for user [klg] with effective roles [klg_writer], this action is granted by the cluster privileges [monitor,manage,all]"},"status":403}"#;
        match from_root(reply(403, refused)) {
            RootAnswer::Failed(e) => {
                assert!(e.needs_an_operator());
                assert!(e.to_string().starts_with("HTTP 403: {\"error\""), "{e}");
                assert!(e.to_string().contains("cluster:monitor/main"), "{e}");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            from_root(reply(200, "<html>proxy</html>")),
            RootAnswer::Failed(RequestFailure::Malformed(_))
        ));
    }

    #[test]
    fn a_pin_is_checked_against_the_server() {
        let os = Flavour { product: Product::OpenSearch, version: Version::parse("2.19.6") };
        assert_eq!(check_pin(FlavourSetting::Auto, os.clone(), "http://x:9200/"), Ok(os.clone()));
        assert_eq!(check_pin(FlavourSetting::Opensearch, os.clone(), "http://x:9200/"), Ok(os.clone()));
        let err = check_pin(FlavourSetting::Elasticsearch, os, "http://x:9200/").unwrap_err();
        assert_eq!(
            err.to_string(),
            "elasticsearch.flavour is Elasticsearch but the server at http://x:9200/ is OpenSearch 2.19.6"
        );
    }
}
