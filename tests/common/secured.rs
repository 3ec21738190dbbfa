//! A private server with security on (`ES_SECURE=1 scripts/elasticsearch.sh`,
//! Elasticsearch or OpenSearch) and webhook gateways pointed at it with some
//! credentials: what `tests/es_security.rs` and `tests/os_security.rs` share.
//! Each case posts the fixture EventList and counts what is stored, per auditID.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use super::certs::{make_certs, tls_client};
use super::config::EsAuth;
use super::es::{Es, EsInstance};
use super::wait::poll;
use super::webhook::{post_json, WebhookSetup, EVENTLIST};

/// The events in the fixture EventList.
pub const EVENTS: u64 = 8;

/// A private secured server. Drop wipes it.
pub struct SecureServer {
    // First: dropped (wiped) while its TLS and user files still exist.
    _instance: EsInstance,
    dir: tempfile::TempDir,
    /// As the superuser.
    pub admin: Es,
}

impl SecureServer {
    /// Starts one with a fresh CA, the file-realm or internal `roles_yml` and
    /// one `users` line (`name:password:role`), the superuser `admin` =
    /// (user, password), and `env` on top (`ES_SERVER`, ...). A leftover
    /// instance on its port is wiped first; without Java or Maven Central the
    /// script's reason fails the test.
    pub fn start(env: &[(&str, &str)], roles_yml: &str, users: &str, admin: (&str, &str)) -> SecureServer {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let certs = d.join("certs");
        make_certs(&certs);
        std::fs::write(d.join("roles.yml"), roles_yml).unwrap();
        std::fs::write(d.join("users"), format!("{users}\n")).unwrap();
        let mut vars: Vec<(String, OsString)> = env.iter().map(|(k, v)| (k.to_string(), v.into())).collect();
        vars.extend([
            ("ES_SECURE".to_string(), "1".into()),
            ("ES_TLS_DIR".to_string(), certs.clone().into_os_string()),
            ("ES_PASSWORD".to_string(), admin.1.into()),
            ("ES_ROLES_FILE".to_string(), d.join("roles.yml").into_os_string()),
            ("ES_USERS_FILE".to_string(), d.join("users").into_os_string()),
        ]);
        let instance = EsInstance::start_with(vars);
        let url = format!("https://127.0.0.1:{}", instance.port);
        let admin = Es::secured(&url, &certs.join("ca.crt"), admin.0, admin.1);
        SecureServer { _instance: instance, dir, admin }
    }

    pub fn url(&self) -> String {
        self.admin.url.clone()
    }

    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("certs").join("ca.crt")
    }

    /// Documents per auditID in `index` (exact: one shard).
    pub async fn per_audit_id(&self, index: &str) -> BTreeMap<String, u64> {
        let buckets = self.admin.terms(index, "kubernetes.audit.auditID", 1, 100).await;
        buckets.iter().map(|b| (b["key"].as_str().unwrap().to_string(), b["doc_count"].as_u64().unwrap())).collect()
    }
}

/// Events per auditID in an EventList.
pub fn per_audit_id_in(list: &str) -> BTreeMap<String, u64> {
    let list: Value = serde_json::from_str(list).unwrap();
    let mut m = BTreeMap::new();
    for e in list["items"].as_array().unwrap() {
        *m.entry(e["auditID"].as_str().unwrap().to_string()).or_insert(0) += 1;
    }
    m
}

/// Events per auditID in the fixture (one auditID appears at two stages).
pub fn fixture_per_audit_id() -> BTreeMap<String, u64> {
    per_audit_id_in(EVENTLIST)
}

/// How a gateway reaches the secured server: credentials, the CA it trusts,
/// whether it installs templates.
#[derive(Clone, Default)]
pub struct Access {
    pub auth: Option<EsAuth>,
    pub ca_file: Option<PathBuf>,
    pub install_templates: Option<bool>,
}

impl Access {
    pub fn auth(auth: EsAuth) -> Access {
        Access { auth: Some(auth), ..Access::default() }
    }

    pub fn trusting(self, ca: &Path) -> Access {
        Access { ca_file: Some(ca.to_path_buf()), ..self }
    }
}

/// A webhook gateway whose `elasticsearch` section points at the secured server.
pub struct SecuredGateway {
    pub setup: WebhookSetup,
}

impl SecuredGateway {
    pub fn new(name: &str, server: &SecureServer, access: Access) -> SecuredGateway {
        let mut setup = WebhookSetup::new(name);
        // A quick SIGTERM even while the server refuses everything: the spool keeps the rest.
        setup.config.shutdown_grace_period = Some("1s".into());
        setup.config.elasticsearch.urls = vec![server.url()];
        let mut gw = SecuredGateway { setup };
        gw.configure(access);
        gw
    }

    /// Another auth/TLS setting, for the next start.
    pub fn configure(&mut self, access: Access) {
        let es = &mut self.setup.config.elasticsearch;
        es.auth = access.auth;
        es.ca_file = access.ca_file;
        es.install_templates = access.install_templates;
    }

    /// Posts `list`; the gateway must take it (200) whatever the server thinks
    /// of its credentials.
    pub async fn post(&self, list: String) {
        let client = tls_client(&self.setup.certs(), true);
        let (status, _, body) = post_json(&client, &self.setup.url("/audit"), list).await;
        assert_eq!(status, 200, "the webhook must spool and acknowledge: {body}\n{}", self.setup.log());
    }

    /// Posts the fixture EventList (see [`SecuredGateway::post`]).
    pub async fn post_eventlist(&self) {
        self.post(EVENTLIST.to_string()).await
    }

    /// Waits until the log has every string of `log_says` (or a minute has
    /// passed: the caller's assertions then say what is missing).
    pub async fn wait_for_log(&self, log_says: &[&str]) {
        let logged = || {
            let log = self.setup.log();
            std::future::ready(log_says.iter().all(|s| log.contains(s)))
        };
        poll(Duration::from_secs(60), Duration::from_millis(100), logged, |done| *done).await;
    }
}

/// The fixture's events, each once, in the gateway's audit indices.
pub async fn assert_delivered_once(server: &SecureServer, gw: &SecuredGateway, name: &str) {
    assert_stored_once(server, gw, name, &fixture_per_audit_id()).await;
}

/// Exactly `expected` (documents per auditID) in the gateway's audit indices, none dead-lettered.
pub async fn assert_stored_once(
    server: &SecureServer,
    gw: &SecuredGateway,
    name: &str,
    expected: &BTreeMap<String, u64>,
) {
    let total: u64 = expected.values().sum();
    let index = gw.setup.audit_indices();
    let n = server.admin.wait_for_count(&index, total, Duration::from_secs(60)).await;
    if n >= total {
        // Nothing more on its way: the spool has nothing left to deliver.
        gw.setup.wait_for_metric("klg_spool_entries", "", Duration::from_secs(60), |n| n == 0.0).await;
    }
    let n = server.admin.count(&index).await;
    assert_eq!(n, total, "{name}: every event delivered, once: {}", gw.setup.log());
    assert_eq!(&server.per_audit_id(&index).await, expected, "{name}: each event once");
    assert_eq!(server.admin.count(&gw.setup.dead_letter_indices()).await, 0, "{name}: nothing dead-lettered");
}

/// The server refuses the gateway (`bad`): the webhook still says 200,
/// nothing is indexed, the log has every string of `log_says`. Then the config
/// is fixed (`good`) and the gateway restarted: the spooled events arrive,
/// exactly once.
pub async fn refused_then_fixed(server: &SecureServer, name: &str, bad: Access, log_says: &[&str], good: Access) {
    let mut gw = SecuredGateway::new(name, server, bad);
    let mut running = gw.setup.start();
    gw.post_eventlist().await;
    // Until the gateway has tried and logged why the server refused it.
    gw.wait_for_log(log_says).await;
    let index = gw.setup.audit_indices();
    assert_eq!(server.admin.count(&index).await, 0, "{name}: nothing may be indexed while refused");
    let log = gw.setup.log();
    let first = log.lines().find(|l| l.contains("ERROR") || l.contains("WARN")).unwrap_or("(no warning or error)");
    eprintln!("{name}: refused as expected; the gateway logged: {first}");
    for s in log_says {
        assert!(log.contains(s), "{name}: the gateway log must say {s:?}:\n{log}");
    }
    running.terminate();

    gw.configure(good);
    let _running = gw.setup.start();
    assert_delivered_once(server, &gw, name).await;
}
