//! A gateway with the audit webhook over mTLS, and what kube-apiserver does
//! with it: POST batches, resend what did not get a 2xx.

use std::ops::Deref;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::Value;

use super::certs::make_certs;
use super::config::{Admin, GatewayConfig, Server, TlsFiles};
use super::es::es_url;
use super::free_port;
use super::gateway::{Gateway, Home};

/// What a kube-apiserver sends: an EventList of 8 events (one auditID at two stages).
/// An audit `EventList` of `items` (each an event as a `Value` or as its
/// JSON text), on one line.
pub fn event_list<T: std::fmt::Display>(items: impl IntoIterator<Item = T>) -> String {
    let items: Vec<String> = items.into_iter().map(|i| i.to_string()).collect();
    format!(r#"{{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{{}},"items":[{}]}}"#, items.join(","))
}

pub const EVENTLIST: &str = include_str!("../fixtures/audit-eventlist.json");

/// A webhook gateway set up for a test: certificates, config, data dir, ports.
/// Change `config` before [`WebhookSetup::start`] to run it differently.
pub struct WebhookSetup {
    pub home: Home,
    pub port: u16,
    pub config: GatewayConfig,
}

impl Deref for WebhookSetup {
    type Target = Home;
    fn deref(&self) -> &Home {
        &self.home
    }
}

impl WebhookSetup {
    /// Certificates and a config with mTLS and unique indices
    /// `<prefix>-audit-*` / `<prefix>-deadletter-*`, on the suite's Elasticsearch.
    pub fn new(name: &str) -> WebhookSetup {
        let home = Home::new(name);
        let port = free_port();
        make_certs(&home.path().join("certs"));
        let mut config = GatewayConfig::for_test(&home.data_dir(), &es_url())
            .index("audit", &home.index("audit"))
            .index("dead_letter", &home.index("deadletter"));
        config.server = Some(Server {
            listen: format!("127.0.0.1:{port}"),
            tls: Some(TlsFiles::in_dir(&home.path().join("certs"))),
            ..Server::default()
        });
        config.admin = Admin::Listen(home.admin.clone());
        WebhookSetup { home, port, config }
    }

    /// Writes the config and starts the gateway.
    pub fn start(&self) -> Gateway {
        self.home.start(&self.config)
    }

    pub fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{}", self.port, path)
    }

    pub fn certs(&self) -> PathBuf {
        self.home.path().join("certs")
    }

    pub fn audit_indices(&self) -> String {
        self.home.indices("audit")
    }

    pub fn dead_letter_indices(&self) -> String {
        self.home.indices("deadletter")
    }
}

/// POSTs `body` as JSON; returns status, headers and the parsed body.
pub async fn post_json(client: &reqwest::Client, url: &str, body: String) -> (u16, reqwest::header::HeaderMap, Value) {
    let resp = client.post(url).header("content-type", "application/json").body(body).send().await.expect("POST");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let bytes = resp.bytes().await.unwrap();
    (status, headers, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

/// Sends `batches` (bodies) with `concurrency` connections; returns, per batch,
/// the last HTTP status (0 = transport error). Stops early when `stop` is set.
pub async fn send_all(
    client: &reqwest::Client,
    url: &str,
    batches: Arc<Vec<String>>,
    concurrency: usize,
    acked: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
) -> Vec<u16> {
    let next = Arc::new(AtomicUsize::new(0));
    let statuses = Arc::new(Mutex::new(vec![0u16; batches.len()]));
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (client, url, batches, next, statuses, acked, stop) = (
            client.clone(),
            url.to_string(),
            batches.clone(),
            next.clone(),
            statuses.clone(),
            acked.clone(),
            stop.clone(),
        );
        tasks.push(tokio::spawn(async move {
            loop {
                if stop.load(Ordering::SeqCst) {
                    return;
                }
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= batches.len() {
                    return;
                }
                let status = match client
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(batches[i].clone())
                    .send()
                    .await
                {
                    Ok(r) => r.status().as_u16(),
                    Err(_) => 0,
                };
                if status == 200 {
                    acked.fetch_add(1, Ordering::SeqCst);
                }
                statuses.lock().unwrap()[i] = status;
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let out = statuses.lock().unwrap().clone();
    out
}
