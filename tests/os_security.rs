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

use std::path::Path;
use std::time::Instant;

use common::config::{EsAuth, Secret};
use common::es::Es;
use common::secured::{assert_delivered_once, refused_then_fixed, Access, SecureServer, SecuredGateway};
use serde_json::json;

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

/// A private OpenSearch with the security plugin on, the writer an internal user.
fn secure_os() -> SecureServer {
    SecureServer::start(
        &[("ES_SERVER", "os2"), ("ES_HEAP", "512m")],
        ROLES_YML,
        &format!("{WRITER}:{WRITER_PASSWORD}:{WRITER}"),
        ("admin", ADMIN_PASSWORD),
    )
}

/// Basic auth as the writer, its `password` in a file under `secrets`.
fn writer(secrets: &Path, password: &str) -> Access {
    let file = secrets.join(format!("es-password-{password}"));
    std::fs::write(&file, format!("{password}\n")).unwrap();
    Access::auth(EsAuth::Basic { username: WRITER.into(), password: Secret::File(file) })
}

/// The right password and CA: the 8 events arrive, once.
async fn delivers(os: &SecureServer, name: &str, access: Access) {
    let gw = SecuredGateway::new(name, os, access);
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
        .admin
        .as_user(WRITER, WRITER_PASSWORD)
        .json(reqwest::Method::GET, &format!("/{}/_count", gw.setup.audit_indices()), None)
        .await;
    assert_eq!(status, 403, "{name}: the writer's role must not read: {body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "starts its own secured OpenSearch (about a minute); scripts/test.sh runs it in the server-matrix step"]
async fn secured_opensearch_over_https_with_basic_auth_and_refusals_lose_nothing() {
    let t0 = Instant::now();
    let os = secure_os();
    eprintln!("secured OpenSearch up in {:?}", t0.elapsed());

    // The writer authenticates (internal user) with exactly its role.
    let (status, me) = os
        .admin
        .as_user(WRITER, WRITER_PASSWORD)
        .json(reqwest::Method::GET, "/_plugins/_security/authinfo", None)
        .await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["roles"], json!([WRITER]), "{me}");
    // A wrong password is no access.
    let (status, _) =
        Es::secured(&os.url(), &os.ca_file(), WRITER, "not-the-password").json(reqwest::Method::GET, "/", None).await;
    assert_eq!(status, 401);

    // Each case is independent (own gateway, own indices): run them side by side.
    let secrets = tempfile::tempdir().unwrap();
    let ca = os.ca_file();
    let good = || writer(secrets.path(), WRITER_PASSWORD).trusting(&ca);
    let basic = delivers(&os, "basic", good());
    let wrong_password = refused_then_fixed(
        &os,
        "wrongpw",
        writer(secrets.path(), "not-the-password").trusting(&ca),
        &["HTTP 401", "the credentials were not accepted"],
        good(),
    );
    // The gateway trusts only the system's CAs: rustls names the cause.
    let secured_url = format!("{}/", os.url());
    let noca_says = [
        "cannot ask the server what it is yet (GET /)",
        "transport error",
        "invalid peer certificate: UnknownIssuer",
        secured_url.as_str(),
    ];
    let untrusted_ca = refused_then_fixed(&os, "noca", writer(secrets.path(), WRITER_PASSWORD), &noca_says, good());
    tokio::join!(basic, wrong_password, untrusted_ca);
    eprintln!("all cases done in {:?}", t0.elapsed());
}
