//! The gateway on each server it supports. `scripts/test.sh` runs this file on
//! Elasticsearch 8.19 in its main step, and on Elasticsearch 9.x, OpenSearch
//! 2.x and OpenSearch 3.x in its server-matrix step, with `KLG_TEST_SERVER`
//! (`es8`, `es9`, `os2`, `os3`) naming the server at `KLG_TEST_ES_URL`.
//!
//! What is proven on each: the server is detected and logged; the templates
//! are taken in its dialect (`flattened` or `flat_object`); audit events are
//! stored exactly once, a resend is a duplicate; a pin that does not match the
//! server, and a lifecycle policy the server has no API for, stop the gateway
//! at start with an error that names the setting.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::certs::tls_client;
use common::es::{count, duplicated_ids, es_json, es_url, require_es, wait_for_count};
use common::unique;
use common::webhook::{post_json, WebhookSetup};
use kube_log_gateway::sample;
use serde_json::Value;

/// The server under test: its product as the gateway names it, and its major version.
fn server() -> (&'static str, &'static str) {
    match std::env::var("KLG_TEST_SERVER").as_deref() {
        Ok("es9") => ("Elasticsearch", "9."),
        Ok("os2") => ("OpenSearch", "2."),
        Ok("os3") => ("OpenSearch", "3."),
        Ok("es8") | Err(_) => ("Elasticsearch", "8."),
        Ok(other) => panic!("KLG_TEST_SERVER: es8, es9, os2 or os3, not {other:?}"),
    }
}

/// Starts the gateway of `setup` with extra `KLG__…` settings.
fn spawn_with_env(setup: &WebhookSetup, env: &[(&str, &str)]) -> std::process::Child {
    let config = setup.home.write_config(&setup.config);
    let log = std::fs::OpenOptions::new().create(true).append(true).open(setup.home.log_path()).unwrap();
    Command::new(env!("CARGO_BIN_EXE_kube-log-gateway"))
        .arg("serve")
        .arg("--config")
        .arg(config)
        .env("RUST_LOG", "info")
        .envs(env.iter().copied())
        .stdout(Stdio::from(log.try_clone().unwrap()))
        .stderr(Stdio::from(log))
        .spawn()
        .expect("start the gateway")
}

/// Runs the gateway of `setup` with extra `KLG__…` settings until it exits;
/// its exit status (panics if it is still running after `timeout`).
fn run_until_exit(setup: &WebhookSetup, env: &[(&str, &str)], timeout: Duration) -> std::process::ExitStatus {
    let mut child = spawn_with_env(setup, env);
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            panic!("the gateway still runs after {timeout:?}: {}", setup.log());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test]
async fn flavour_detected_and_its_templates_take_audit_events_exactly_once() {
    require_es().await;
    let (product, major) = server();
    let setup = WebhookSetup::new("flavour");
    let _gw = setup.start();
    let detected = format!("server detected server={product} {major}");
    // On a timeout the whole log is in the panic: what the gateway was told when it asked.
    setup
        .home
        .wait_for_log_line("saying the server was detected", Duration::from_secs(120), |l| l.contains(&detected))
        .await;
    let installed = |name: &str| format!("index template installed template={name} ");
    for template in ["kube-log-gateway-containers".to_string(), template_of(&setup)] {
        let line = installed(&template);
        setup.home.wait_for_log_line(&line, Duration::from_secs(120), |l| l.contains(&line)).await;
    }

    // Every template in the server's dialect.
    let (status, template) = es_json(reqwest::Method::GET, "/_index_template/kube-log-gateway-containers", None).await;
    assert_eq!(status, 200, "{template}");
    let mapping = template["index_templates"][0]["index_template"]["template"]["mappings"].to_string();
    let (ours, theirs) =
        if product == "OpenSearch" { ("flat_object", "flattened") } else { ("flattened", "flat_object") };
    assert!(mapping.contains(&format!(r#""type":"{ours}""#)), "{mapping}");
    assert!(!mapping.contains(theirs), "{mapping}");
    let (_, audit) = es_json(reqwest::Method::GET, &format!("/_index_template/{}", template_of(&setup)), None).await;
    let total_fields =
        &audit["index_templates"][0]["index_template"]["template"]["settings"]["index"]["mapping"]["total_fields"];
    match product {
        "OpenSearch" => assert_eq!(total_fields, &serde_json::json!({"limit": "2000"}), "{audit}"),
        _ => assert_eq!(total_fields["ignore_dynamic_beyond_limit"], "true", "{audit}"),
    }
    if product == "OpenSearch" {
        assert!(setup.log().contains("ignore_dynamic_beyond_limit is on but OpenSearch"), "said once at start");
    }

    // Five batches of 100 events, then the same five again: 500 stored, once each.
    let client = tls_client(&setup.certs(), true);
    let url = setup.url("/audit");
    for round in 0..2 {
        for i in 0..5 {
            let (status, _, body) =
                post_json(&client, &url, sample::event_list(&format!("flv-b{i}"), 100, 10, 512)).await;
            assert_eq!(status, 200, "round {round}, batch {i}: {body}");
        }
        setup.wait_spool_empty(Duration::from_secs(120)).await;
    }
    assert_eq!(wait_for_count(&setup.audit_indices(), 500, Duration::from_secs(60)).await, 500);
    assert_eq!(duplicated_ids(&setup.audit_indices()).await, Vec::<Value>::new());
    assert_eq!(count(&setup.dead_letter_indices()).await, 0);
    let duplicates = _gw.metric("klg_documents_total", r#"source="audit",outcome="duplicate""#).await;
    assert_eq!(duplicates, 500.0, "each resent event was a 409: {}", setup.log());
    setup.delete_indices().await;
}

/// The template name of the setup's own audit indices.
fn template_of(setup: &WebhookSetup) -> String {
    let stem = setup.home.index("audit");
    let stem = stem.split('%').next().unwrap().trim_end_matches(['-', '.', '_']);
    format!("kube-log-gateway-{stem}")
}

#[tokio::test]
async fn flavour_pinned_to_another_server_stops_the_gateway_at_start_naming_the_setting() {
    require_es().await;
    let (product, _) = server();
    let other = if product == "OpenSearch" { "elasticsearch" } else { "opensearch" };
    let setup = WebhookSetup::new("flavour-pin");
    let status = run_until_exit(&setup, &[("KLG__ELASTICSEARCH__FLAVOUR", other)], Duration::from_secs(60));
    assert!(!status.success(), "{}", setup.log());
    let log = setup.log();
    let pinned = if other == "opensearch" { "Opensearch" } else { "Elasticsearch" };
    let says = format!("elasticsearch.flavour is {pinned} but the server at {}/ is {product} ", es_url());
    assert!(log.contains(&says), "{says:?} not in: {log}");
    // Nothing was installed for its indices.
    let (status, _) = es_json(reqwest::Method::GET, &format!("/_index_template/{}", template_of(&setup)), None).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn flavour_lifecycle_is_installed_or_refused_at_start_naming_the_setting() {
    require_es().await;
    let (product, _) = server();
    let api = if product == "OpenSearch" { "/_plugins/_ism/policies" } else { "/_ilm/policy" };
    let (has_api, _) = es_json(reqwest::Method::GET, api, None).await;
    let setup = WebhookSetup::new("flavour-lifecycle");
    let policy = unique("policy");
    let env = [
        ("KLG__ELASTICSEARCH__LIFECYCLE__INSTALL", "true"),
        ("KLG__ELASTICSEARCH__LIFECYCLE__POLICY", policy.as_str()),
    ];
    if has_api == 200 {
        // A server with the API: the policy is installed, and named by the
        // templates of the setup's own indices only.
        let (containers, kubelet) = (setup.home.index("containers"), setup.home.index("kubelet"));
        let env = [
            env[0],
            env[1],
            ("KLG__ELASTICSEARCH__INDICES__CONTAINERS", containers.as_str()),
            ("KLG__ELASTICSEARCH__INDICES__KUBELET", kubelet.as_str()),
        ];
        let mut child = spawn_with_env(&setup, &env);
        setup
            .home
            .wait_for_log_line("lifecycle policy installed", Duration::from_secs(120), |l| {
                l.contains("lifecycle policy installed")
            })
            .await;
        let _ = child.kill();
        let _ = child.wait();
        let (status, body) = es_json(reqwest::Method::GET, &format!("{api}/{policy}"), None).await;
        assert_eq!(status, 200, "{body}");
        assert!(body.to_string().contains("90d"), "{body}");
        es_json(reqwest::Method::DELETE, &format!("{api}/{policy}"), None).await;
        return;
    }
    let status = run_until_exit(&setup, &env, Duration::from_secs(60));
    assert!(!status.success(), "{}", setup.log());
    let log = setup.log();
    let says = format!("elasticsearch.lifecycle.install: {product} ");
    assert!(log.contains(&says), "{says:?} not in: {log}");
    assert!(log.contains(&format!("no handler found for uri [{api}/{policy}] and method [PUT]")), "{log}");
}
