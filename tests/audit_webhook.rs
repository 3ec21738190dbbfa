//! The audit webhook end to end, against the real Elasticsearch: what a
//! kube-apiserver sends arrives normalized and queryable the way people query
//! audit logs in Kibana, resends change nothing, and bad input is refused with a
//! clear error and writes nothing.

mod common;

use std::io::Write;
use std::time::Duration;

use common::certs::{make_certs, tls_client, tls_client_with};
use common::es::{count, es_json, http, require_es, search, wait_for_count};
use common::metrics::metric;
use common::webhook::{post_json, WebhookSetup, EVENTLIST};
use serde_json::{json, Value};

/// How long a test waits for the gateway to have counted what it answered.
const WAIT: Duration = Duration::from_secs(30);
const SECRET_VALUES: [&str; 4] = ["aHVudGVyMg==", "hunter2", "s3cr3t-plain-token", "czNjcjN0LXBsYWluLXRva2Vu"];

async fn query(setup: &WebhookSetup, q: Value) -> Vec<Value> {
    search(&setup.audit_indices(), q).await
}

fn ids(hits: &[Value]) -> Vec<&str> {
    hits.iter().map(|h| h["kubernetes"]["audit"]["auditID"].as_str().unwrap()).collect()
}

#[tokio::test]
async fn event_list_over_mtls_is_queryable_like_in_kibana_and_resends_change_nothing() {
    require_es().await;
    let setup = WebhookSetup::new("audit-e2e");
    let _gw = setup.start();
    let client = tls_client(&setup.certs(), true);

    // kube-apiserver appends ?timeout=…; the query string must not matter.
    let (status, _, body) = post_json(&client, &setup.url("/audit?timeout=30s"), EVENTLIST.to_string()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({"accepted": 8, "rejected": 0}));
    assert_eq!(wait_for_count(&setup.audit_indices(), 8, Duration::from_secs(30)).await, 8);

    // "Who deleted this deployment?"
    let hits = query(
        &setup,
        json!({"bool": {"filter": [
            {"term": {"kubernetes.audit.verb": "delete"}},
            {"term": {"kubernetes.audit.objectRef.resource": "deployments"}},
            {"term": {"kubernetes.audit.stage": "ResponseComplete"}}
        ]}}),
    )
    .await;
    assert_eq!(hits.len(), 1);
    let d = &hits[0];
    assert_eq!(d["user"]["name"], "alice@example.com");
    assert_eq!(d["user"]["id"], "0b1e2c44-alice");
    assert_eq!(d["source"]["ip"][0], "192.0.2.10");
    assert_eq!(d["client"]["ip"], "192.0.2.10");
    assert_eq!(d["event"]["action"], "delete");
    assert_eq!(d["event"]["outcome"], "success");
    assert_eq!(d["event"]["dataset"], "kubernetes.audit_logs");
    assert_eq!(d["data_stream"]["dataset"], "kubernetes.audit_logs");
    assert_eq!(d["@timestamp"], "2026-11-09T06:00:05.020000Z");
    assert_eq!(d["url"]["original"], "/apis/apps/v1/namespaces/shop/deployments/web");
    assert_eq!(d["http"]["response"]["status_code"], 200);
    assert_eq!(d["orchestrator"]["cluster"]["name"], "test");
    assert!(!d["kubernetes"]["node"]["name"].as_str().unwrap().is_empty());
    assert!(!d["host"]["name"].as_str().unwrap().is_empty());
    assert_eq!(d["kubernetes"]["audit"]["objectRef"]["name"], "web");
    assert_eq!(d["kubernetes"]["audit"]["annotations"]["authorization_k8s_io/decision"], "allow");
    assert_eq!(
        d["kubernetes"]["audit"]["user"]["extra"]["authentication.kubernetes.io/credential-id"],
        json!(["X509SHA256=3c1d"])
    );
    assert_eq!(d["kubernetes"]["audit"]["responseObject"]["details"]["name"], "web");
    // Both stages of the delete are kept, as separate documents.
    let both =
        query(&setup, json!({"term": {"kubernetes.audit.auditID": "11111111-0000-0000-0000-000000000005"}})).await;
    assert_eq!(both.len(), 2);

    // "Who exec'd into a pod?"
    let hits = query(
        &setup,
        json!({"bool": {"filter": [
            {"term": {"kubernetes.audit.objectRef.resource": "pods"}},
            {"term": {"kubernetes.audit.objectRef.subresource": "exec"}}
        ]}}),
    )
    .await;
    assert_eq!(ids(&hits), ["11111111-0000-0000-0000-000000000004"]);
    assert_eq!(hits[0]["http"]["response"]["status_code"], 101);
    assert_eq!(hits[0]["kubernetes"]["audit"]["objectRef"]["name"], "web-0");

    // Everything alice did.
    let hits = query(&setup, json!({"term": {"user.name": "alice@example.com"}})).await;
    assert_eq!(hits.len(), 4);

    // Failed authentication: 401, empty user, from outside.
    let hits = query(&setup, json!({"term": {"http.response.status_code": 401}})).await;
    assert_eq!(ids(&hits), ["11111111-0000-0000-0000-000000000003"]);
    assert!(hits[0].get("user").is_none());
    assert_eq!(hits[0]["event"]["outcome"], "failure");
    let hits = query(&setup, json!({"term": {"source.ip": "203.0.113.0/24"}})).await;
    assert_eq!(ids(&hits), ["11111111-0000-0000-0000-000000000003"]);

    // Forbidden, by the authorizer's decision.
    let hits = query(&setup, json!({"term": {"event.outcome": "failure"}})).await;
    assert_eq!(ids(&hits), ["11111111-0000-0000-0000-000000000003", "11111111-0000-0000-0000-000000000006"]);

    // A time range on @timestamp, at sub-second precision.
    let hits = query(
        &setup,
        json!({"range": {"@timestamp": {"gte": "2026-11-09T06:00:02Z", "lte": "2026-11-09T06:00:04.100000Z"}}}),
    )
    .await;
    assert_eq!(
        ids(&hits),
        [
            "11111111-0000-0000-0000-000000000002",
            "11111111-0000-0000-0000-000000000003",
            "11111111-0000-0000-0000-000000000004"
        ]
    );

    // No Secret value anywhere in any _source; the keys are still visible.
    let all = query(&setup, json!({"match_all": {}})).await;
    assert_eq!(all.len(), 8);
    let text = serde_json::to_string(&all).unwrap();
    for secret in SECRET_VALUES {
        assert!(!text.contains(secret), "secret value {secret} leaked into Elasticsearch");
    }
    let update =
        query(&setup, json!({"term": {"kubernetes.audit.auditID": "11111111-0000-0000-0000-000000000002"}})).await;
    assert_eq!(update[0]["kubernetes"]["audit"]["requestObject"]["data"]["password"], "[REDACTED]");
    assert_eq!(update[0]["kubernetes"]["audit"]["responseObject"]["metadata"]["resourceVersion"], "4242");

    // The index comes from the event's own date, not today's.
    let (_, indices) =
        es_json(reqwest::Method::GET, &format!("/_cat/indices/{}?format=json", setup.audit_indices()), None).await;
    let names: Vec<&str> = indices.as_array().unwrap().iter().map(|i| i["index"].as_str().unwrap()).collect();
    assert_eq!(names, [format!("{}-audit-2026.11.09", setup.prefix)]);

    // kube-apiserver resends a batch after a timeout: nothing changes.
    let (status, _, _) = post_json(&client, &setup.url("/audit"), EVENTLIST.to_string()).await;
    assert_eq!(status, 200);
    setup.wait_for_metric("klg_documents_total", "outcome=\"duplicate\"", Duration::from_secs(30), |n| n >= 8.0).await;
    assert_eq!(count(&setup.audit_indices()).await, 8);
    setup.delete_indices().await;
}

#[tokio::test]
async fn invalid_items_are_reported_dead_lettered_and_the_rest_written() {
    require_es().await;
    let setup = WebhookSetup::new("audit-items");
    let _gw = setup.start();
    let client = tls_client(&setup.certs(), true);
    let list: Value = serde_json::from_str(EVENTLIST).unwrap();
    let mut items = list["items"].as_array().unwrap()[..2].to_vec();
    let mut no_id = items[0].clone();
    no_id.as_object_mut().unwrap().remove("auditID");
    let mut no_stage = items[0].clone();
    no_stage.as_object_mut().unwrap().remove("stage");
    let mut no_time = items[0].clone();
    no_time["auditID"] = json!("bad-time");
    no_time.as_object_mut().unwrap().remove("stageTimestamp");
    items.extend([no_id, no_stage, no_time, json!("not an object")]);
    let body = json!({"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "items": items}).to_string();

    let (status, _, resp) = post_json(&client, &setup.url("/audit"), body).await;
    assert_eq!(status, 200, "{resp}");
    assert_eq!(resp["accepted"], 2);
    assert_eq!(resp["rejected"], 4);
    assert_eq!(
        resp["errors"],
        json!([
            {"item": 2, "reason": "missing field `auditID`"},
            {"item": 3, "auditID": "11111111-0000-0000-0000-000000000001", "reason": "missing field `stage`"},
            {"item": 4, "auditID": "bad-time", "reason": "missing field `stageTimestamp`"},
            {"item": 5, "reason": "an event must be a JSON object"}
        ])
    );
    assert_eq!(wait_for_count(&setup.audit_indices(), 2, Duration::from_secs(30)).await, 2);
    assert_eq!(wait_for_count(&setup.dead_letter_indices(), 4, Duration::from_secs(30)).await, 4);
    let dead = search(&setup.dead_letter_indices(), json!({"match_all": {}})).await;
    let reasons: Vec<&str> = dead.iter().map(|d| d["error"]["message"].as_str().unwrap()).collect();
    assert!(reasons.contains(&"missing field `stage`"), "{reasons:?}");
    assert!(dead.iter().all(|d| d["error"]["type"] == "invalid_audit_event" && d["dead_letter"]["source"] == "audit"));
    assert!(dead.iter().any(|d| d["event"]["original"] == "\"not an object\""));
    assert_eq!(metric(&setup.admin, "klg_audit_events_total", "result=\"rejected\"").await, 4.0);
    setup.delete_indices().await;
}

#[tokio::test]
async fn bad_requests_get_clear_errors_and_write_nothing() {
    require_es().await;
    let mut setup = WebhookSetup::new("audit-bad");
    setup.config.server_mut().max_body_bytes = Some(65536);
    let _gw = setup.start();
    let client = tls_client(&setup.certs(), true);
    let url = setup.url("/audit");

    // Malformed JSON: 400 naming line and column.
    let (status, _, body) =
        post_json(&client, &url, "{\"kind\":\"EventList\",\n\"items\":[{\"auditID\": }]}".into()).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "request body is not valid JSON: expected value at line 2, column 22");
    let (status, _, body) = post_json(&client, &url, "".into()).await;
    assert_eq!(
        (status, body["error"].as_str().unwrap()),
        (400, "request body must be an EventList, an Event or a JSON array of events; got an empty body")
    );

    // Wrong content type: 415.
    let resp = client.post(&url).header("content-type", "text/plain").body(EVENTLIST).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 415);
    let body: Value = resp.json_body().await;
    assert_eq!(body["error"], "Content-Type must be application/json, got \"text/plain\"");

    // Over max_body_bytes: 413, on the wire and after gzip inflation.
    let big = format!("[{}]", vec!["{}"; 40_000].join(","));
    let (status, _, body) = post_json(&client, &url, big.clone()).await;
    assert_eq!(status, 413);
    assert_eq!(body["error"], "Content-Length exceeds server.max_body_bytes (65536 bytes)");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(big.as_bytes()).unwrap();
    let bomb = gz.finish().unwrap();
    assert!(bomb.len() < 65536);
    let resp = client
        .post(&url)
        .header("content-type", "application/json")
        .header("content-encoding", "gzip")
        .body(bomb)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 413);
    let body: Value = resp.json_body().await;
    assert_eq!(body["error"], "the gzip body after inflation exceeds server.max_body_bytes (65536 bytes)");

    // Wrong method and unknown path.
    let resp = client.get(&url).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 405);
    assert_eq!(resp.json_body().await["error"], "use POST");
    let resp =
        client.post(setup.url("/nope")).header("content-type", "application/json").body("{}").send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 404);
    assert_eq!(resp.json_body().await["error"], "no such path: /nope");

    // Nothing of the above reached Elasticsearch, and every answer was counted.
    let answered = [(400, 2.0), (404, 1.0), (405, 1.0), (413, 2.0), (415, 1.0)];
    for (code, n) in answered {
        setup.wait_for_metric("klg_webhook_requests_total", &format!("code=\"{code}\""), WAIT, |v| v >= n).await;
    }
    assert_eq!(count(&format!("{}-*", setup.prefix)).await, 0);
    for (code, n) in answered {
        assert_eq!(
            metric(&setup.admin, "klg_webhook_requests_total", &format!("code=\"{code}\"")).await,
            n,
            "code {code}"
        );
    }

    // A valid gzip body is fine.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(EVENTLIST.as_bytes()).unwrap();
    let resp = client
        .post(&url)
        .header("content-type", "application/json; charset=utf-8")
        .header("content-encoding", "gzip")
        .body(gz.finish().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(wait_for_count(&setup.audit_indices(), 8, Duration::from_secs(30)).await, 8);
    setup.delete_indices().await;
}

#[tokio::test]
async fn without_a_valid_client_certificate_the_handshake_is_refused() {
    require_es().await;
    let setup = WebhookSetup::new("audit-mtls");
    let _gw = setup.start();
    let url = setup.url("/audit");

    let no_cert = tls_client(&setup.certs(), false);
    let err = no_cert.post(&url).header("content-type", "application/json").body(EVENTLIST).send().await;
    assert!(err.is_err(), "no client certificate must fail: {err:?}");

    let other = tempfile::tempdir().unwrap();
    make_certs(other.path());
    let foreign = tls_client_with(&setup.certs(), other.path());
    let err = foreign.post(&url).header("content-type", "application/json").body(EVENTLIST).send().await;
    assert!(err.is_err(), "a certificate from another CA must fail: {err:?}");

    // The right certificate works on the same server.
    let (status, _, _) = post_json(&tls_client(&setup.certs(), true), &url, EVENTLIST.to_string()).await;
    assert_eq!(status, 200);
    assert!(setup.log().contains("TLS handshake refused"), "{}", setup.log());
    assert_eq!(metric(&setup.admin, "klg_tls_handshake_failures_total", "").await, 2.0);
    setup.delete_indices().await;
}

#[tokio::test]
async fn bearer_tokens_are_checked() {
    require_es().await;
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, "# kube-apiserver\nright-token\n").unwrap();
    let mut setup = WebhookSetup::new("audit-token");
    setup.config.server_mut().bearer_tokens_file = Some(tokens);
    let _gw = setup.start();
    let client = tls_client(&setup.certs(), false);
    let url = setup.url("/audit");

    let resp = client
        .post(&url)
        .header("content-type", "application/json")
        .bearer_auth("wrong-token")
        .body(EVENTLIST)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    assert_eq!(resp.headers()["www-authenticate"], "Bearer");
    assert_eq!(resp.json_body().await["error"], "the bearer token is not valid");
    let resp = client.post(&url).header("content-type", "application/json").body(EVENTLIST).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    assert_eq!(
        resp.json_body().await["error"],
        "authentication required: a client certificate or an Authorization: Bearer token"
    );
    setup.wait_for_metric("klg_webhook_requests_total", "code=\"401\"", WAIT, |n| n >= 2.0).await;
    assert_eq!(count(&format!("{}-*", setup.prefix)).await, 0);

    let resp = client
        .post(&url)
        .header("content-type", "application/json")
        .bearer_auth("right-token")
        .body(EVENTLIST)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(wait_for_count(&setup.audit_indices(), 8, Duration::from_secs(30)).await, 8);
    setup.delete_indices().await;
}

trait JsonBody {
    async fn json_body(self) -> Value;
}

impl JsonBody for reqwest::Response {
    async fn json_body(self) -> Value {
        serde_json::from_slice(&self.bytes().await.unwrap()).unwrap_or(Value::Null)
    }
}

#[tokio::test]
async fn the_client_name_allow_list_refuses_other_certificates_from_the_same_ca() {
    require_es().await;
    let mut refused = WebhookSetup::new("audit-allow-no");
    refused.config.server_mut().allowed_client_names = vec!["someone-else".into()];
    let _gw = refused.start();
    let client = tls_client(&refused.certs(), true);
    let err =
        client.post(refused.url("/audit")).header("content-type", "application/json").body(EVENTLIST).send().await;
    assert!(err.is_err(), "kube-apiserver's certificate is valid but not allowed: {err:?}");
    assert!(refused.log().contains("not in server.tls.allowed_client_names"), "{}", refused.log());

    let mut allowed = WebhookSetup::new("audit-allow-yes");
    allowed.config.server_mut().allowed_client_names = vec!["someone-else".into(), "kube-apiserver".into()];
    let _gw2 = allowed.start();
    let (status, _, _) =
        post_json(&tls_client(&allowed.certs(), true), &allowed.url("/audit"), EVENTLIST.to_string()).await;
    assert_eq!(status, 200);
    assert_eq!(wait_for_count(&allowed.audit_indices(), 8, Duration::from_secs(30)).await, 8);
    allowed.delete_indices().await;
}

#[tokio::test]
async fn plain_http_only_when_tls_is_explicitly_disabled_and_with_a_warning() {
    require_es().await;
    let mut setup = WebhookSetup::new("audit-plain");
    // No TLS, no client CA, tokens not set either.
    setup.config.server_mut().tls = None;
    setup.config.server_mut().allow_unauthenticated = true;
    let _gw = setup.start();
    assert!(setup.log().contains("server.tls.enabled is false: audit events travel in plain HTTP"), "{}", setup.log());
    let (status, _, body) =
        post_json(&http(), &format!("http://127.0.0.1:{}/audit", setup.port), EVENTLIST.to_string()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(wait_for_count(&setup.audit_indices(), 8, Duration::from_secs(30)).await, 8);
    setup.delete_indices().await;
}
