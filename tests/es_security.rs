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

use std::path::Path;
use std::time::Instant;

use common::config::{EsAuth, Secret};
use common::secured::{
    assert_delivered_once, assert_stored_once, fixture_per_audit_id, per_audit_id_in, refused_then_fixed, Access,
    SecureServer, SecuredGateway, EVENTS,
};
use common::webhook::EVENTLIST;
use serde_json::json;

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

/// A private Elasticsearch with security on, the gateway's user `klg` in its file realm.
fn secure_es() -> SecureServer {
    SecureServer::start(&[], ROLES_YML, &format!("klg:{KLG_PASSWORD}:klg_writer"), ("elastic", ELASTIC_PASSWORD))
}

/// Basic auth as the gateway's user, with `password`.
fn klg(password: &str) -> Access {
    Access::auth(EsAuth::Basic { username: "klg".into(), password: Secret::Inline(password.into()) })
}

/// Good credentials: the 8 events arrive, once.
async fn delivers(es: &SecureServer, name: &str, access: Access) {
    let gw = SecuredGateway::new(name, es, Access { ca_file: Some(es.ca_file()), ..access });
    let _running = gw.setup.start();
    gw.post_eventlist().await;
    assert_delivered_once(es, &gw, name).await;
}

/// A new API key, made by `elastic`, with the gateway's role (ROLES_YML): (id, encoded).
async fn create_api_key(es: &SecureServer, name: &str) -> (String, String) {
    let (status, key) = es
        .admin
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
async fn api_key_invalidated_while_running(es: &SecureServer, secrets: &Path) {
    let name = "apikey";
    let (id, encoded) = create_api_key(es, "klg-first").await;
    let key_file = secrets.join("es-api-key");
    std::fs::write(&key_file, format!("{encoded}\n")).unwrap();
    let ca = es.ca_file();
    let mut gw = SecuredGateway::new(name, es, Access::auth(EsAuth::ApiKey(Secret::File(key_file))).trusting(&ca));
    let mut running = gw.setup.start();
    gw.post_eventlist().await;
    assert_delivered_once(es, &gw, name).await;
    let mut expected = fixture_per_audit_id();

    let (status, body) = es.admin.json(reqwest::Method::DELETE, "/_security/api_key", Some(json!({"ids": [id]}))).await;
    assert_eq!(status, 200, "invalidating the API key: {body}");
    assert_eq!(body["invalidated_api_keys"], json!([id]), "{body}");

    let second = second_eventlist();
    gw.post(second.clone()).await;
    // The reason names the credentials: which key, and why it no longer works.
    let invalidated = format!("api key [{id}] has been invalidated");
    let log_says = ["HTTP 401", "unable to authenticate with provided credentials", invalidated.as_str()];
    gw.wait_for_log(&log_says).await;
    let log = gw.setup.log();
    for s in log_says {
        assert!(log.contains(s), "{name}: the gateway log must say {s:?}:\n{log}");
    }
    let first = log.lines().find(|l| l.contains("401")).unwrap_or_default();
    eprintln!("{name}: refused after invalidation as expected; the gateway logged: {first}");
    let index = gw.setup.audit_indices();
    assert_eq!(es.admin.count(&index).await, EVENTS, "{name}: nothing more may be stored with an invalidated key");
    running.terminate();

    let (_, new_key) = create_api_key(es, "klg-second").await;
    gw.configure(Access::auth(EsAuth::ApiKey(Secret::Inline(new_key))).trusting(&ca));
    let _running = gw.setup.start();
    for (id, n) in per_audit_id_in(&second) {
        *expected.entry(id).or_insert(0) += n;
    }
    assert_stored_once(es, &gw, name, &expected).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn secured_elasticsearch_over_https_with_basic_bearer_and_api_key_and_refusals_lose_nothing() {
    let t0 = Instant::now();
    let es = secure_es();
    eprintln!("secured Elasticsearch up in {:?}", t0.elapsed());

    // The gateway's user authenticates (file realm) with the role above.
    let (status, me) =
        es.admin.as_user("klg", KLG_PASSWORD).json(reqwest::Method::GET, "/_security/_authenticate", None).await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["roles"], json!(["klg_writer"]));

    // A bearer token for that user (OAuth2 password grant; the token service).
    let (status, token) = es
        .admin
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
        Access::auth(EsAuth::Basic { username: "klg".into(), password: Secret::File(p) })
    };

    // Each case is independent (own gateway, own indices): run them side by side.
    let secrets = tempfile::tempdir().unwrap();
    let bearer_file = secrets.path().join("es-token");
    std::fs::write(&bearer_file, format!("{bearer}\n")).unwrap();
    let bogus_key_file = secrets.path().join("es-unknown-api-key");
    // Well-formed (base64 of id:secret) but unknown to the cluster.
    std::fs::write(&bogus_key_file, "a2xnLW5vLXN1Y2gta2V5Om5vdC1hLXNlY3JldA==\n").unwrap();

    let basic = delivers(&es, "basic", basic_file(secrets.path()));
    let bearer_case = delivers(&es, "bearer", Access::auth(EsAuth::BearerToken(Secret::File(bearer_file.clone()))));
    let api_key_case = api_key_invalidated_while_running(&es, secrets.path());
    // A key the cluster never issued; fixed with one it did.
    let (_, unknown_fix) = create_api_key(&es, "klg-unknown-fixed").await;
    let unknown_key_case = refused_then_fixed(
        &es,
        "unknownkey",
        Access::auth(EsAuth::ApiKey(Secret::File(bogus_key_file.clone()))).trusting(&ca),
        &["401", "unable to authenticate", "unable to find apikey with id klg-no-such-key"],
        Access::auth(EsAuth::ApiKey(Secret::Inline(unknown_fix))).trusting(&ca),
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
        Access { install_templates: Some(false), ..klg("not-the-password").trusting(&ca) },
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
