//! The gateway against an Elasticsearch with security on, for real: HTTPS with a
//! private CA (`elasticsearch.tls.ca_file`), and each way of authenticating
//! (basic auth, bearer token, API key). Wrong credentials and an untrusted
//! certificate must lose nothing: the webhook still answers 200 (the batch is in
//! the spool), nothing reaches Elasticsearch, the gateway logs why, and once the
//! config is fixed and the gateway restarted every document arrives exactly once.
//!
//! One secured Elasticsearch (`ES_SECURE=1 scripts/elasticsearch.sh` on a private port,
//! wiped at the end) serves every case; the cases run side by side.
//!
//! What the integ-test-zip build allows: file-realm users and roles (created by
//! the script from ES_USERS_FILE / ES_ROLES_FILE), the `elastic` superuser from
//! the keystore, bearer tokens (trial licence), and API keys: the script's
//! secured mode adds a small analysis plugin (scripts/es-analysis-plugin) with
//! the analysis-common names the `.security` index needs, which this build lacks.
//! So the API key case runs in full: a key made by `elastic` with the gateway's
//! role (`elasticsearch.auth.api_key_file`) delivers every event once; the key
//! invalidated while the gateway runs loses nothing (webhook 200, nothing stored,
//! the 401 logged) until a restart with a new key (`api_key`) delivers the rest
//! once; and a key the cluster does not know loses nothing either.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::certs::{make_certs, tls_client};
use common::config::{EsAuth, Secret};
use common::es::{Es, EsInstance};
use common::wait::poll;
use common::webhook::{post_json, WebhookSetup, EVENTLIST};
use serde_json::{json, Value};

const EVENTS: u64 = 8;
const ELASTIC_PASSWORD: &str = "klg-elastic-pw-secured";
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
    // First: dropped (wiped) while its TLS and user files still exist.
    _instance: EsInstance,
    dir: tempfile::TempDir,
    /// As the `elastic` superuser.
    es: Es,
}

impl SecureEs {
    fn start() -> SecureEs {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let certs = d.join("certs");
        make_certs(&certs);
        std::fs::write(d.join("roles.yml"), ROLES_YML).unwrap();
        std::fs::write(d.join("users"), format!("klg:{KLG_PASSWORD}:klg_writer\n")).unwrap();
        let env = vec![
            ("ES_SECURE".to_string(), "1".into()),
            ("ES_TLS_DIR".to_string(), certs.clone().into_os_string()),
            ("ES_PASSWORD".to_string(), ELASTIC_PASSWORD.into()),
            ("ES_ROLES_FILE".to_string(), d.join("roles.yml").into_os_string()),
            ("ES_USERS_FILE".to_string(), d.join("users").into_os_string()),
        ];
        // A leftover instance on its port (another CA, another password) is wiped first.
        let instance = EsInstance::start_with(env);
        let url = format!("https://127.0.0.1:{}", instance.port);
        let es = Es::secured(&url, &certs.join("ca.crt"), "elastic", ELASTIC_PASSWORD);
        SecureEs { _instance: instance, dir, es }
    }

    fn url(&self) -> String {
        self.es.url.clone()
    }

    fn ca_file(&self) -> PathBuf {
        self.dir.path().join("certs").join("ca.crt")
    }

    /// Documents per auditID in `index` (exact: one shard).
    async fn per_audit_id(&self, index: &str) -> BTreeMap<String, u64> {
        let buckets = self.es.terms(index, "kubernetes.audit.auditID", 1, 100).await;
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

/// How the gateway reaches the secured Elasticsearch: credentials, the CA it
/// trusts, whether it installs templates.
#[derive(Clone, Default)]
struct EsAccess {
    auth: Option<EsAuth>,
    ca_file: Option<PathBuf>,
    install_templates: Option<bool>,
}

impl EsAccess {
    fn auth(auth: EsAuth) -> EsAccess {
        EsAccess { auth: Some(auth), ..EsAccess::default() }
    }

    fn trusting(self, ca: &Path) -> EsAccess {
        EsAccess { ca_file: Some(ca.to_path_buf()), ..self }
    }
}

/// Basic auth as the gateway's user, with `password`.
fn klg(password: &str) -> EsAccess {
    EsAccess::auth(EsAuth::Basic { username: "klg".into(), password: Secret::Inline(password.into()) })
}

/// A webhook gateway whose `elasticsearch` section points at the secured instance.
struct SecuredGateway {
    setup: WebhookSetup,
}

impl SecuredGateway {
    fn new(name: &str, es: &SecureEs, access: EsAccess) -> SecuredGateway {
        let mut setup = WebhookSetup::new(name);
        // A quick SIGTERM even while Elasticsearch refuses everything: the spool keeps the rest.
        setup.config.shutdown_grace_period = Some("1s".into());
        setup.config.elasticsearch.urls = vec![es.url()];
        let mut gw = SecuredGateway { setup };
        gw.configure(access);
        gw
    }

    /// Another auth/TLS setting, for the next start.
    fn configure(&mut self, access: EsAccess) {
        let es = &mut self.setup.config.elasticsearch;
        es.auth = access.auth;
        es.ca_file = access.ca_file;
        es.install_templates = access.install_templates;
    }

    /// Posts the fixture EventList; the gateway must take it (200) whatever
    /// Elasticsearch thinks of its credentials.
    async fn post_eventlist(&self) {
        let client = tls_client(&self.setup.certs(), true);
        let (status, _, body) = post_json(&client, &self.setup.url("/audit"), EVENTLIST.to_string()).await;
        assert_eq!(status, 200, "the webhook must spool and acknowledge: {body}\n{}", self.setup.log());
    }
}

/// Good credentials: the 8 events arrive, once.
async fn delivers(es: &SecureEs, name: &str, access: EsAccess) {
    let gw = SecuredGateway::new(name, es, EsAccess { ca_file: Some(es.ca_file()), ..access });
    let _running = gw.setup.start();
    gw.post_eventlist().await;
    assert_delivered_once(es, &gw, name).await;
}

async fn assert_delivered_once(es: &SecureEs, gw: &SecuredGateway, name: &str) {
    assert_stored_once(es, gw, name, &fixture_per_audit_id()).await;
}

/// Exactly `expected` (documents per auditID) in the gateway's audit indices, none dead-lettered.
async fn assert_stored_once(es: &SecureEs, gw: &SecuredGateway, name: &str, expected: &BTreeMap<String, u64>) {
    let total: u64 = expected.values().sum();
    let index = gw.setup.audit_indices();
    let n = es.es.wait_for_count(&index, total, Duration::from_secs(60)).await;
    if n >= total {
        // Nothing more on its way: the spool has nothing left to deliver.
        gw.setup.wait_for_metric("klg_spool_entries", "", Duration::from_secs(60), |n| n == 0.0).await;
    }
    let n = es.es.count(&index).await;
    assert_eq!(n, total, "{name}: every event delivered, once: {}", gw.setup.log());
    assert_eq!(&es.per_audit_id(&index).await, expected, "{name}: each event once");
    assert_eq!(es.es.count(&gw.setup.dead_letter_indices()).await, 0, "{name}: nothing dead-lettered");
}

/// Waits until the gateway's log has every string of `log_says` (or a minute
/// has passed: the caller's assertions then say what is missing).
async fn wait_for_log(gw: &SecuredGateway, log_says: &[&str]) {
    let logged = || {
        let log = gw.setup.log();
        std::future::ready(log_says.iter().all(|s| log.contains(s)))
    };
    poll(Duration::from_secs(60), Duration::from_millis(100), logged, |done| *done).await;
}

/// A new API key, made by `elastic`, with the gateway's role (ROLES_YML): (id, encoded).
async fn create_api_key(es: &SecureEs, name: &str) -> (String, String) {
    let (status, key) = es
        .es
        .json(
            reqwest::Method::POST,
            "/_security/api_key",
            Some(json!({"name": name, "role_descriptors": {"klg_writer": {
                "cluster": ["manage_index_templates", "monitor"],
                "indices": [{"names": ["*-audit-*", "*-deadletter-*"], "privileges": ["create_doc", "create_index", "write"]}]
            }}})),
        )
        .await;
    assert_eq!(status, 200, "creating API key {name}: {key}");
    (key["id"].as_str().unwrap().to_string(), key["encoded"].as_str().unwrap().to_string())
}

/// The fixture with other auditIDs: events the gateway has not seen yet.
fn second_eventlist() -> String {
    EVENTLIST.replace("\"11111111-", "\"22222222-")
}

/// An API key that works, then is invalidated while the gateway runs: the
/// next events are acknowledged and spooled, nothing is stored, the gateway
/// logs the 401; a restart with a new key delivers them, and everything is
/// stored exactly once.
async fn api_key_invalidated_while_running(es: &SecureEs, secrets: &Path) {
    let name = "apikey";
    let (id, encoded) = create_api_key(es, "klg-first").await;
    let key_file = secrets.join("es-api-key");
    std::fs::write(&key_file, format!("{encoded}\n")).unwrap();
    let ca = es.ca_file();
    let mut gw = SecuredGateway::new(name, es, EsAccess::auth(EsAuth::ApiKey(Secret::File(key_file))).trusting(&ca));
    let mut running = gw.setup.start();
    gw.post_eventlist().await;
    assert_delivered_once(es, &gw, name).await;
    let mut expected = fixture_per_audit_id();

    let (status, body) = es.es.json(reqwest::Method::DELETE, "/_security/api_key", Some(json!({"ids": [id]}))).await;
    assert_eq!(status, 200, "invalidating the API key: {body}");
    assert_eq!(body["invalidated_api_keys"], json!([id]), "{body}");

    let second = second_eventlist();
    let client = tls_client(&gw.setup.certs(), true);
    let (status, _, body) = post_json(&client, &gw.setup.url("/audit"), second.clone()).await;
    assert_eq!(status, 200, "{name}: the webhook must spool and acknowledge: {body}\n{}", gw.setup.log());
    // The reason names the credentials: which key, and why it no longer works.
    let invalidated = format!("api key [{id}] has been invalidated");
    let log_says = ["HTTP 401", "unable to authenticate with provided credentials", invalidated.as_str()];
    wait_for_log(&gw, &log_says).await;
    let log = gw.setup.log();
    for s in log_says {
        assert!(log.contains(s), "{name}: the gateway log must say {s:?}:\n{log}");
    }
    let first = log.lines().find(|l| l.contains("401")).unwrap_or_default();
    eprintln!("{name}: refused after invalidation as expected; the gateway logged: {first}");
    let index = gw.setup.audit_indices();
    assert_eq!(es.es.count(&index).await, EVENTS, "{name}: nothing more may be stored with an invalidated key");
    running.terminate();

    let (_, new_key) = create_api_key(es, "klg-second").await;
    gw.configure(EsAccess::auth(EsAuth::ApiKey(Secret::Inline(new_key))).trusting(&ca));
    let _running = gw.setup.start();
    let list: Value = serde_json::from_str(&second).unwrap();
    for e in list["items"].as_array().unwrap() {
        *expected.entry(e["auditID"].as_str().unwrap().to_string()).or_insert(0) += 1;
    }
    assert_stored_once(es, &gw, name, &expected).await;
}

/// Elasticsearch refuses the gateway (`bad`): the webhook still says 200,
/// nothing is indexed, the log has every string of `log_says`. Then the config
/// is fixed (`good`) and the gateway restarted: the spooled events arrive,
/// exactly once.
async fn refused_then_fixed(es: &SecureEs, name: &str, bad: EsAccess, log_says: &[&str], good: EsAccess) {
    let mut gw = SecuredGateway::new(name, es, bad);
    let mut running = gw.setup.start();
    gw.post_eventlist().await;
    // Until the gateway has tried and logged why Elasticsearch refused it.
    wait_for_log(&gw, log_says).await;
    let index = gw.setup.audit_indices();
    assert_eq!(es.es.count(&index).await, 0, "{name}: nothing may be indexed with bad credentials");
    let log = gw.setup.log();
    let first = log.lines().find(|l| l.contains("ERROR") || l.contains("WARN")).unwrap_or("(no warning or error)");
    eprintln!("{name}: refused as expected; the gateway logged: {first}");
    for s in log_says {
        assert!(log.contains(s), "{name}: the gateway log must say {s:?}:\n{log}");
    }
    running.terminate();

    gw.configure(good);
    let _running = gw.setup.start();
    assert_delivered_once(es, &gw, name).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn secured_elasticsearch_over_https_with_basic_bearer_and_api_key_and_refusals_lose_nothing() {
    let t0 = Instant::now();
    let es = SecureEs::start();
    eprintln!("secured Elasticsearch up in {:?}", t0.elapsed());

    // The gateway's user authenticates (file realm) with the role above.
    let (status, me) =
        es.es.as_user("klg", KLG_PASSWORD).json(reqwest::Method::GET, "/_security/_authenticate", None).await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["roles"], json!(["klg_writer"]));

    // A bearer token for that user (OAuth2 password grant; the token service).
    let (status, token) = es
        .es
        .json(
            reqwest::Method::POST,
            "/_security/oauth2/token",
            Some(json!({"grant_type": "password", "username": "klg", "password": KLG_PASSWORD})),
        )
        .await;
    assert_eq!(status, 200, "bearer token: {token}");
    let bearer = token["access_token"].as_str().unwrap().to_string();

    let ca = es.ca_file();
    let basic_file = |gw_dir: &Path| {
        let p = gw_dir.join("es-password");
        std::fs::write(&p, format!("{KLG_PASSWORD}\n")).unwrap();
        EsAccess::auth(EsAuth::Basic { username: "klg".into(), password: Secret::File(p) })
    };

    // Each case is independent (own gateway, own indices): run them side by side.
    let secrets = tempfile::tempdir().unwrap();
    let bearer_file = secrets.path().join("es-token");
    std::fs::write(&bearer_file, format!("{bearer}\n")).unwrap();
    let bogus_key_file = secrets.path().join("es-unknown-api-key");
    // Well-formed (base64 of id:secret) but unknown to the cluster.
    std::fs::write(&bogus_key_file, "a2xnLW5vLXN1Y2gta2V5Om5vdC1hLXNlY3JldA==\n").unwrap();

    let basic = delivers(&es, "basic", basic_file(secrets.path()));
    let bearer_case = delivers(&es, "bearer", EsAccess::auth(EsAuth::BearerToken(Secret::File(bearer_file.clone()))));
    let api_key_case = api_key_invalidated_while_running(&es, secrets.path());
    // A key the cluster never issued; fixed with one it did.
    let (_, unknown_fix) = create_api_key(&es, "klg-unknown-fixed").await;
    let unknown_key_case = refused_then_fixed(
        &es,
        "unknownkey",
        EsAccess::auth(EsAuth::ApiKey(Secret::File(bogus_key_file.clone()))).trusting(&ca),
        &["401", "unable to authenticate", "unable to find apikey with id klg-no-such-key"],
        EsAccess::auth(EsAuth::ApiKey(Secret::Inline(unknown_fix))).trusting(&ca),
    );
    let wrong_password = refused_then_fixed(
        &es,
        "wrongpw",
        klg("not-the-password").trusting(&ca),
        &["401", "unable to authenticate user [klg]"],
        klg(KLG_PASSWORD).trusting(&ca),
    );
    // The cause (rustls: invalid peer certificate, UnknownIssuer) is not in the log:
    // the client's error text stops at reqwest's "error sending request".
    let secured_url = format!("{}/", es.url());
    let noca_says = ["cannot ask the server what it is yet (GET /)", "transport error", secured_url.as_str()];
    let untrusted_ca = refused_then_fixed(&es, "noca", klg(KLG_PASSWORD), &noca_says, klg(KLG_PASSWORD).trusting(&ca));
    // Credentials that stop working after the templates are in (a rotated password):
    // the bulk requests themselves get the 401, and are retried, not dead-lettered.
    let wrong_password_at_bulk = refused_then_fixed(
        &es,
        "bulk401",
        EsAccess { install_templates: Some(false), ..klg("not-the-password").trusting(&ca) },
        &["bulk request failed, will retry: HTTP 401", "unable to authenticate user [klg]"],
        klg(KLG_PASSWORD).trusting(&ca),
    );
    tokio::join!(
        basic,
        bearer_case,
        api_key_case,
        unknown_key_case,
        wrong_password,
        wrong_password_at_bulk,
        untrusted_ca
    );
    eprintln!("all cases done in {:?}", t0.elapsed());
}
