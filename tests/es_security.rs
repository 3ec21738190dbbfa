//! The gateway against an Elasticsearch with security on, for real: HTTPS with a
//! private CA (`elasticsearch.tls.ca_file`), and each way of authenticating
//! (basic auth, bearer token, API key). Wrong credentials and an untrusted
//! certificate must lose nothing: the webhook still answers 200 (the batch is in
//! the spool), nothing reaches Elasticsearch, the gateway logs why, and once the
//! config is fixed and the gateway restarted every document arrives exactly once.
//!
//! One secured Elasticsearch (`ES_SECURE=1 scripts/elasticsearch.sh`, port 9280,
//! wiped at the end) serves every case; the cases run side by side.
//!
//! What the integ-test-zip build allows: file-realm users and roles (created by
//! the script from ES_USERS_FILE / ES_ROLES_FILE), the `elastic` superuser from
//! the keystore, and bearer tokens (trial licence). It cannot create the
//! `.security` index (no `pattern_capture` filter without analysis-common), so
//! the security API cannot create users, roles or API keys. The API key case
//! therefore runs in full only where Elasticsearch can create one; here it
//! proves that a key the cluster does not know loses nothing and is reported.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

const EVENTLIST: &str = include_str!("fixtures/audit-eventlist.json");
const EVENTS: u64 = 8;
const PORT: u16 = 9280;
const ELASTIC_PASSWORD: &str = "klg-elastic-pw-9280";
const KLG_PASSWORD: &str = "klg-writer-secret-1";

/// The gateway's privileges: what a production role needs, nothing more.
const ROLES_YML: &str = "\
klg_writer:
  cluster: [manage_index_templates, monitor]
  indices:
    - names: ['*-audit-*', '*-deadletter-*']
      privileges: [create_doc, create_index, write]
";

/// A private Elasticsearch with security on. Drop wipes it.
struct SecureEs {
    dir: tempfile::TempDir,
    client: reqwest::Client,
}

impl SecureEs {
    fn script(&self, action: &str) -> bool {
        let d = self.dir.path();
        Command::new("bash")
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/elasticsearch.sh"))
            .arg(action)
            .env("ES_PORT", PORT.to_string())
            .env("ES_HEAP", "384m")
            .env("ES_SECURE", "1")
            .env("ES_TLS_DIR", d.join("certs"))
            .env("ES_PASSWORD", ELASTIC_PASSWORD)
            .env("ES_ROLES_FILE", d.join("roles.yml"))
            .env("ES_USERS_FILE", d.join("users"))
            .stdout(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    }

    fn start() -> SecureEs {
        let dir = tempfile::tempdir().unwrap();
        let certs = dir.path().join("certs");
        make_certs(&certs);
        std::fs::write(dir.path().join("roles.yml"), ROLES_YML).unwrap();
        std::fs::write(dir.path().join("users"), format!("klg:{KLG_PASSWORD}:klg_writer\n")).unwrap();
        let ca = reqwest::Certificate::from_pem(&std::fs::read(certs.join("ca.crt")).unwrap()).unwrap();
        let client = reqwest::Client::builder()
            .use_rustls_tls()
            .add_root_certificate(ca)
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        let es = SecureEs { dir, client };
        // A leftover instance on this port (another CA, another password) must not be reused.
        es.script("wipe");
        assert!(es.script("start"), "could not start the secured Elasticsearch on port {PORT}");
        es
    }

    fn url(&self) -> String {
        format!("https://127.0.0.1:{PORT}")
    }

    fn ca_file(&self) -> PathBuf {
        self.dir.path().join("certs").join("ca.crt")
    }

    /// A request as `user`; status and parsed body.
    async fn json_as(
        &self,
        user: &str,
        password: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self.client.request(method, format!("{}{path}", self.url())).basic_auth(user, Some(password));
        if let Some(b) = body {
            req = req.header("content-type", "application/json").body(b.to_string());
        }
        let resp = req.send().await.expect("request to the secured Elasticsearch");
        let status = resp.status().as_u16();
        (status, serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap_or(Value::Null))
    }

    async fn json(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        self.json_as("elastic", ELASTIC_PASSWORD, method, path, body).await
    }

    async fn count(&self, index: &str) -> u64 {
        let opts = "ignore_unavailable=true&allow_no_indices=true";
        // A just-created index answers 503 (no shard available) for a moment.
        let mut tries = 0;
        loop {
            self.json(reqwest::Method::POST, &format!("/{index}/_refresh?{opts}"), None).await;
            let (status, v) = self.json(reqwest::Method::GET, &format!("/{index}/_count?{opts}"), None).await;
            if status == 200 {
                return v["count"].as_u64().unwrap();
            }
            tries += 1;
            assert!(status == 503 && tries < 50, "count {index}: {status} {v}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Polls until `want` documents are in `index`, then waits until nothing more
    /// arrives for 2 s; returns the final count.
    async fn wait_settled(&self, index: &str, want: u64, timeout: Duration) -> u64 {
        let start = Instant::now();
        let mut n = self.count(index).await;
        while n < want && start.elapsed() < timeout {
            tokio::time::sleep(Duration::from_millis(300)).await;
            n = self.count(index).await;
        }
        let mut since = Instant::now();
        while since.elapsed() < Duration::from_secs(2) {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let m = self.count(index).await;
            if m != n {
                n = m;
                since = Instant::now();
            }
        }
        n
    }

    /// Documents per auditID in `index` (exact: one shard).
    async fn per_audit_id(&self, index: &str) -> BTreeMap<String, u64> {
        let body = json!({"size": 0, "aggs": {"ids": {"terms": {"field": "kubernetes.audit.auditID", "size": 100}}}});
        let (status, v) = self.json(reqwest::Method::POST, &format!("/{index}/_search"), Some(body)).await;
        assert_eq!(status, 200, "{v}");
        let buckets = v["aggregations"]["ids"]["buckets"].as_array().unwrap();
        buckets.iter().map(|b| (b["key"].as_str().unwrap().to_string(), b["doc_count"].as_u64().unwrap())).collect()
    }
}

/// Events per auditID in the fixture (one auditID appears at two stages).
fn fixture_per_audit_id() -> BTreeMap<String, u64> {
    let list: Value = serde_json::from_str(EVENTLIST).unwrap();
    let mut m = BTreeMap::new();
    for e in list["items"].as_array().unwrap() {
        *m.entry(e["auditID"].as_str().unwrap().to_string()).or_insert(0) += 1;
    }
    m
}

impl Drop for SecureEs {
    fn drop(&mut self) {
        self.script("wipe");
    }
}

/// A gateway whose `elasticsearch` section points at the secured instance,
/// with `es_yaml` (lines indented by two spaces: `auth:`, `tls:`) added to it.
struct SecuredGateway {
    setup: WebhookSetup,
    base: String,
}

impl SecuredGateway {
    fn new(name: &str, es: &SecureEs, es_yaml: &str) -> SecuredGateway {
        // A quick SIGTERM even while Elasticsearch refuses everything: the spool keeps the rest.
        let setup = WebhookSetup::new(name, "", "shutdown:\n  grace_period: 1s\n");
        let base = std::fs::read_to_string(&setup.config).unwrap();
        let from = format!("  urls: [\"{}\"]\n", es_url());
        assert!(base.contains(&from), "WebhookSetup's config changed shape: {base}");
        let base = base.replace(&from, &format!("  urls: [\"{}\"]\n@ES@", es.url()));
        let gw = SecuredGateway { setup, base };
        gw.configure(es_yaml);
        gw
    }

    /// Rewrites the config file with another auth/TLS block.
    fn configure(&self, es_yaml: &str) {
        std::fs::write(&self.setup.config, self.base.replace("@ES@", es_yaml)).unwrap();
    }

    /// Posts the fixture EventList; the gateway must take it (200) whatever
    /// Elasticsearch thinks of its credentials.
    async fn post_eventlist(&self) {
        let client = tls_client(&self.setup.certs(), true);
        let (status, _, body) = post_json(&client, &self.setup.url("/audit"), EVENTLIST.to_string()).await;
        assert_eq!(status, 200, "the webhook must spool and acknowledge: {body}\n{}", self.setup.log());
    }
}

fn tls_yaml(ca: &Path) -> String {
    format!("  tls:\n    ca_file: {}\n", ca.display())
}

/// Good credentials: the 8 events arrive, once.
async fn delivers(es: &SecureEs, name: &str, auth_yaml: String) {
    let gw = SecuredGateway::new(name, es, &(auth_yaml + &tls_yaml(&es.ca_file())));
    let _running = gw.setup.start();
    gw.post_eventlist().await;
    assert_delivered_once(es, &gw, name).await;
}

async fn assert_delivered_once(es: &SecureEs, gw: &SecuredGateway, name: &str) {
    let index = gw.setup.audit_indices();
    let n = es.wait_settled(&index, EVENTS, Duration::from_secs(60)).await;
    assert_eq!(n, EVENTS, "{name}: every event delivered, once: {}", gw.setup.log());
    assert_eq!(es.per_audit_id(&index).await, fixture_per_audit_id(), "{name}: each event once");
    assert_eq!(es.count(&gw.setup.dead_letter_indices()).await, 0, "{name}: nothing dead-lettered");
}

/// Elasticsearch refuses the gateway (`bad_yaml`): the webhook still says 200,
/// nothing is indexed, the log has every string of `log_says`. Then the config
/// is fixed (`good_yaml`) and the gateway restarted: the spooled events arrive,
/// exactly once.
async fn refused_then_fixed(es: &SecureEs, name: &str, bad_yaml: String, log_says: &[&str], good_yaml: String) {
    let gw = SecuredGateway::new(name, es, &bad_yaml);
    let mut running = gw.setup.start();
    gw.post_eventlist().await;
    // Long enough for several attempts (backoff 50 ms .. 1 s) and a refresh.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let index = gw.setup.audit_indices();
    assert_eq!(es.count(&index).await, 0, "{name}: nothing may be indexed with bad credentials");
    let log = gw.setup.log();
    let first = log.lines().find(|l| l.contains("ERROR") || l.contains("WARN")).unwrap_or("(no warning or error)");
    eprintln!("{name}: refused as expected; the gateway logged: {first}");
    for s in log_says {
        assert!(log.contains(s), "{name}: the gateway log must say {s:?}:\n{log}");
    }
    running.terminate();

    gw.configure(&good_yaml);
    let _running = gw.setup.start();
    assert_delivered_once(es, &gw, name).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn secured_elasticsearch_over_https_with_basic_bearer_and_api_key_and_refusals_lose_nothing() {
    let t0 = Instant::now();
    let es = SecureEs::start();
    eprintln!("secured Elasticsearch up in {:?}", t0.elapsed());

    // The gateway's user authenticates (file realm) with the role above.
    let (status, me) = es.json_as("klg", KLG_PASSWORD, reqwest::Method::GET, "/_security/_authenticate", None).await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["roles"], json!(["klg_writer"]));

    // A bearer token for that user (OAuth2 password grant; the token service).
    let (status, token) = es
        .json(
            reqwest::Method::POST,
            "/_security/oauth2/token",
            Some(json!({"grant_type": "password", "username": "klg", "password": KLG_PASSWORD})),
        )
        .await;
    assert_eq!(status, 200, "bearer token: {token}");
    let bearer = token["access_token"].as_str().unwrap().to_string();

    // An API key. The integ-test-zip cannot create the `.security` index that keys live
    // in; anything else going wrong here is a real failure.
    let (status, key) = es
        .json(
            reqwest::Method::POST,
            "/_security/api_key",
            Some(json!({"name": "klg", "role_descriptors": {"klg": {
                "cluster": ["manage_index_templates", "monitor"],
                "indices": [{"names": ["*-audit-*", "*-deadletter-*"], "privileges": ["create_doc", "create_index", "write"]}]
            }}})),
        )
        .await;
    let api_key = match status {
        200 => Some(key["encoded"].as_str().unwrap().to_string()),
        _ => {
            assert!(
                key.to_string().contains("pattern_capture"),
                "creating an API key failed unexpectedly ({status}): {key}"
            );
            eprintln!(
                "NOTE: this Elasticsearch build cannot store API keys (no analysis-common module, so no .security \
                 index): the API key is tested as a refused credential only"
            );
            None
        }
    };

    let ca = es.ca_file();
    let basic_file = |gw_dir: &Path| {
        let p = gw_dir.join("es-password");
        std::fs::write(&p, format!("{KLG_PASSWORD}\n")).unwrap();
        format!("  auth:\n    username: klg\n    password_file: {}\n", p.display())
    };

    // Each case is independent (own gateway, own indices): run them side by side.
    let secrets = tempfile::tempdir().unwrap();
    let bearer_file = secrets.path().join("es-token");
    std::fs::write(&bearer_file, format!("{bearer}\n")).unwrap();
    let bogus_key_file = secrets.path().join("es-api-key");
    // Well-formed (base64 of id:secret) but unknown to the cluster.
    std::fs::write(&bogus_key_file, "a2xnLW5vLXN1Y2gta2V5Om5vdC1hLXNlY3JldA==\n").unwrap();

    let basic = delivers(&es, "basic", basic_file(secrets.path()));
    let bearer_case = delivers(&es, "bearer", format!("  auth:\n    bearer_token_file: {}\n", bearer_file.display()));
    let api_key_case = async {
        match &api_key {
            Some(k) => delivers(&es, "apikey", format!("  auth:\n    api_key: \"{k}\"\n")).await,
            None => {
                refused_then_fixed(
                    &es,
                    "apikey",
                    format!("  auth:\n    api_key_file: {}\n", bogus_key_file.display()) + &tls_yaml(&ca),
                    &["401", "unable to authenticate"],
                    format!("  auth:\n    bearer_token: \"{bearer}\"\n") + &tls_yaml(&ca),
                )
                .await
            }
        }
    };
    let wrong_password = refused_then_fixed(
        &es,
        "wrongpw",
        "  auth:\n    username: klg\n    password: not-the-password\n".to_string() + &tls_yaml(&ca),
        &["401", "unable to authenticate user [klg]"],
        format!("  auth:\n    username: klg\n    password: \"{KLG_PASSWORD}\"\n") + &tls_yaml(&ca),
    );
    let untrusted_ca = refused_then_fixed(
        &es,
        "noca",
        format!("  auth:\n    username: klg\n    password: \"{KLG_PASSWORD}\"\n"),
        // The cause (rustls: invalid peer certificate, UnknownIssuer) is not in the log:
        // the client's error text stops at reqwest's "error sending request".
        &["cannot install index templates yet", "transport error", "https://127.0.0.1:9280/"],
        format!("  auth:\n    username: klg\n    password: \"{KLG_PASSWORD}\"\n") + &tls_yaml(&ca),
    );
    // Credentials that stop working after the templates are in (a rotated password):
    // the bulk requests themselves get the 401, and are retried, not dead-lettered.
    let wrong_password_at_bulk = refused_then_fixed(
        &es,
        "bulk401",
        "  install_templates: false\n  auth:\n    username: klg\n    password: not-the-password\n".to_string()
            + &tls_yaml(&ca),
        &["bulk request failed, will retry: HTTP 401", "unable to authenticate user [klg]"],
        format!("  auth:\n    username: klg\n    password: \"{KLG_PASSWORD}\"\n") + &tls_yaml(&ca),
    );
    tokio::join!(basic, bearer_case, api_key_case, wrong_password, wrong_password_at_bulk, untrusted_ca);
    eprintln!("all cases done in {:?}", t0.elapsed());
}
