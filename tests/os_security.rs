//! The gateway against an OpenSearch with its security plugin on, for real:
//! HTTPS with a private CA (`elasticsearch.tls.ca_file`) and basic auth as an
//! internal user (`elasticsearch.auth.username` / `password_file`) whose role
//! has only what the gateway needs ([`ROLES_YML`]).
//!
//! What is proven: the gateway detects OpenSearch through the plugin, installs
//! its templates and stores every audit event exactly once (counted as
//! `admin`); the writer's role cannot read. A wrong password and an untrusted
//! certificate lose nothing: the webhook still answers 200 (the batch is in the
//! spool), nothing reaches OpenSearch, the gateway logs why (the 401 and that
//! the credentials were not accepted; the TLS transport error), and once the
//! config is fixed and the gateway restarted every event arrives exactly once.
//!
//! One secured OpenSearch (`ES_SERVER=os2 ES_SECURE=1 scripts/elasticsearch.sh`:
//! 2.19.4 with the opensearch-security plugin from Maven Central, on a private
//! port, wiped at the end) serves every case; the cases run side by side.
//! Without Java, or without Maven Central to fetch the server and the plugin
//! once, the test fails with the script's reason; it never skips.
//!
//! `#[ignore]`d in the main test step of `scripts/test.sh`, which runs it in its
//! server-matrix step with `--ignored`.

mod common;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::certs::{make_certs, tls_client};
use common::config::{EsAuth, Secret};
use common::es::{Es, EsInstance};
use common::wait::poll;
use common::webhook::{post_json, WebhookSetup, EVENTLIST};
use serde_json::{json, Value};

const EVENTS: u64 = 8;
const ADMIN_PASSWORD: &str = "klg-admin-pw-secured";
const WRITER: &str = "klg_writer";
const WRITER_PASSWORD: &str = "klg-writer-secret-1";

/// The gateway's role: the fewest permissions it runs with (found by running
/// this test with less: each of these missing loses the write). Cluster:
/// `GET /` and `_nodes` (`cluster_monitor`), its index templates, `_bulk`.
/// Its indices: create them, and index documents (the shard-level bulk).
/// Dynamic mapping updates need no `indices:admin/mapping/put`. No read.
const ROLES_YML: &str = "\
klg_writer:
  cluster_permissions:
    - cluster_monitor
    - 'indices:admin/index_template/*'
    - 'indices:data/write/bulk'
  index_permissions:
    - index_patterns: ['*-audit-*', '*-deadletter-*']
      allowed_actions:
        - 'indices:admin/create'
        - 'indices:data/write/index'
        - 'indices:data/write/bulk*'
";

/// A private OpenSearch with the security plugin on. Drop wipes it.
struct SecureOs {
    // First: dropped (wiped) while its TLS and user files still exist.
    _instance: EsInstance,
    dir: tempfile::TempDir,
    /// As the `admin` superuser.
    os: Es,
}

impl SecureOs {
    fn start() -> SecureOs {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let certs = d.join("certs");
        make_certs(&certs);
        std::fs::write(d.join("roles.yml"), ROLES_YML).unwrap();
        std::fs::write(d.join("users"), format!("{WRITER}:{WRITER_PASSWORD}:{WRITER}\n")).unwrap();
        let env: Vec<(String, OsString)> = vec![
            ("ES_SERVER".into(), "os2".into()),
            ("ES_SECURE".into(), "1".into()),
            ("ES_HEAP".into(), "512m".into()),
            ("ES_TLS_DIR".into(), certs.clone().into_os_string()),
            ("ES_PASSWORD".into(), ADMIN_PASSWORD.into()),
            ("ES_ROLES_FILE".into(), d.join("roles.yml").into_os_string()),
            ("ES_USERS_FILE".into(), d.join("users").into_os_string()),
        ];
        // A leftover instance on its port (another CA, other users) is wiped first.
        // Fails (with the script's reason on stderr) without Java or Maven Central.
        let instance = EsInstance::start_with(env);
        let url = format!("https://127.0.0.1:{}", instance.port);
        let os = Es::secured(&url, &certs.join("ca.crt"), "admin", ADMIN_PASSWORD);
        SecureOs { _instance: instance, dir, os }
    }

    fn url(&self) -> String {
        self.os.url.clone()
    }

    fn ca_file(&self) -> PathBuf {
        self.dir.path().join("certs").join("ca.crt")
    }

    /// Documents per auditID in `index` (exact: one shard).
    async fn per_audit_id(&self, index: &str) -> BTreeMap<String, u64> {
        let buckets = self.os.terms(index, "kubernetes.audit.auditID", 1, 100).await;
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

/// How the gateway reaches OpenSearch: the writer's password (in a file), and
/// whether it trusts the private CA.
#[derive(Clone)]
struct Access {
    password: String,
    trust_ca: bool,
}

fn access(password: &str, trust_ca: bool) -> Access {
    Access { password: password.into(), trust_ca }
}

/// A webhook gateway whose `elasticsearch` section points at the secured OpenSearch.
struct SecuredGateway {
    setup: WebhookSetup,
}

impl SecuredGateway {
    fn new(name: &str, os: &SecureOs, access: Access) -> SecuredGateway {
        let mut setup = WebhookSetup::new(name);
        // A quick SIGTERM even while OpenSearch refuses everything: the spool keeps the rest.
        setup.config.shutdown_grace_period = Some("1s".into());
        setup.config.elasticsearch.urls = vec![os.url()];
        let mut gw = SecuredGateway { setup };
        gw.configure(os, access);
        gw
    }

    /// The password file and the CA, for the next start.
    fn configure(&mut self, os: &SecureOs, access: Access) {
        let password_file = self.setup.home.path().join("es-password");
        std::fs::write(&password_file, format!("{}\n", access.password)).unwrap();
        let es = &mut self.setup.config.elasticsearch;
        es.auth = Some(EsAuth::Basic { username: WRITER.into(), password: Secret::File(password_file) });
        es.ca_file = access.trust_ca.then(|| os.ca_file());
    }

    /// Posts the fixture EventList; the gateway must take it (200) whatever
    /// OpenSearch thinks of its credentials.
    async fn post_eventlist(&self) {
        let client = tls_client(&self.setup.certs(), true);
        let (status, _, body) = post_json(&client, &self.setup.url("/audit"), EVENTLIST.to_string()).await;
        assert_eq!(status, 200, "the webhook must spool and acknowledge: {body}\n{}", self.setup.log());
    }
}

/// The right password and CA: the 8 events arrive, once.
async fn delivers(os: &SecureOs, name: &str) {
    let gw = SecuredGateway::new(name, os, access(WRITER_PASSWORD, true));
    let _running = gw.setup.start();
    gw.post_eventlist().await;
    assert_delivered_once(os, &gw, name).await;
    let log = gw.setup.log();
    assert!(
        log.contains("server detected server=OpenSearch 2.19.4"),
        "{name}: the gateway must have detected OpenSearch:\n{log}"
    );
    // The writer cannot read what it wrote: its role has no read permission.
    let (status, body) = os
        .os
        .as_user(WRITER, WRITER_PASSWORD)
        .json(reqwest::Method::GET, &format!("/{}/_count", gw.setup.audit_indices()), None)
        .await;
    assert_eq!(status, 403, "{name}: the writer's role must not read: {body}");
}

async fn assert_delivered_once(os: &SecureOs, gw: &SecuredGateway, name: &str) {
    let index = gw.setup.audit_indices();
    let n = os.os.wait_for_count(&index, EVENTS, Duration::from_secs(60)).await;
    if n >= EVENTS {
        // Nothing more on its way: the spool has nothing left to deliver.
        gw.setup.wait_for_metric("klg_spool_entries", "", Duration::from_secs(60), |n| n == 0.0).await;
    }
    let n = os.os.count(&index).await;
    assert_eq!(n, EVENTS, "{name}: every event delivered, once: {}", gw.setup.log());
    assert_eq!(os.per_audit_id(&index).await, fixture_per_audit_id(), "{name}: each event once");
    assert_eq!(os.os.count(&gw.setup.dead_letter_indices()).await, 0, "{name}: nothing dead-lettered");
}

/// OpenSearch refuses the gateway (`bad`): the webhook still says 200,
/// nothing is indexed, the log has every string of `log_says`. Then the
/// config is fixed and the gateway restarted: the spooled events arrive,
/// exactly once.
async fn refused_then_fixed(os: &SecureOs, name: &str, bad: Access, log_says: &[&str]) {
    let mut gw = SecuredGateway::new(name, os, bad);
    let mut running = gw.setup.start();
    gw.post_eventlist().await;
    // Until the gateway has tried and logged why OpenSearch refused it (or a
    // minute has passed: then the assertions below say what is missing).
    let logged = || {
        let log = gw.setup.log();
        std::future::ready(log_says.iter().all(|s| log.contains(s)))
    };
    poll(Duration::from_secs(60), Duration::from_millis(100), logged, |done| *done).await;
    let index = gw.setup.audit_indices();
    assert_eq!(os.os.count(&index).await, 0, "{name}: nothing may be indexed while refused");
    let log = gw.setup.log();
    let first = log.lines().find(|l| l.contains("ERROR") || l.contains("WARN")).unwrap_or("(no warning or error)");
    eprintln!("{name}: refused as expected; the gateway logged: {first}");
    for s in log_says {
        assert!(log.contains(s), "{name}: the gateway log must say {s:?}:\n{log}");
    }
    running.terminate();

    gw.configure(os, access(WRITER_PASSWORD, true));
    let _running = gw.setup.start();
    assert_delivered_once(os, &gw, name).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "starts its own secured OpenSearch (about a minute); scripts/test.sh runs it in the server-matrix step"]
async fn secured_opensearch_over_https_with_basic_auth_and_refusals_lose_nothing() {
    let t0 = Instant::now();
    let os = SecureOs::start();
    eprintln!("secured OpenSearch up in {:?}", t0.elapsed());

    // The writer authenticates (internal user) with exactly its role.
    let (status, me) =
        os.os.as_user(WRITER, WRITER_PASSWORD).json(reqwest::Method::GET, "/_plugins/_security/authinfo", None).await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["roles"], json!([WRITER]), "{me}");
    // A wrong password is no access.
    let (status, _) =
        Es::secured(&os.url(), &os.ca_file(), WRITER, "not-the-password").json(reqwest::Method::GET, "/", None).await;
    assert_eq!(status, 401);

    // Each case is independent (own gateway, own indices): run them side by side.
    let basic = delivers(&os, "basic");
    let wrong_password = refused_then_fixed(
        &os,
        "wrongpw",
        access("not-the-password", true),
        &["HTTP 401", "the credentials were not accepted"],
    );
    // The gateway trusts only the system's CAs: rustls names the cause.
    let secured_url = format!("{}/", os.url());
    let noca_says = [
        "cannot ask the server what it is yet (GET /)",
        "transport error",
        "invalid peer certificate: UnknownIssuer",
        secured_url.as_str(),
    ];
    let untrusted_ca = refused_then_fixed(&os, "noca", access(WRITER_PASSWORD, false), &noca_says);
    tokio::join!(basic, wrong_password, untrusted_ca);
    eprintln!("all cases done in {:?}", t0.elapsed());
}
