//! Audit events that used to be lost between the webhook and Elasticsearch, and
//! hostile bodies, sent to the running gateway: what the client reads, what
//! lands in Elasticsearch (exact values), and that the gateway stays up.
//!
//! * fields a later kube-apiserver adds are kept (`_source`), not indexed;
//! * annotation / `extra` keys Elasticsearch cannot take are renamed;
//! * timestamps `date_nanos` cannot take are normalized or replaced;
//! * a keyword too long for Lucene is stored, not indexed;
//! * annotation keys past the index's field limit are stored, not indexed;
//! * deep nesting, invalid UTF-8, a 50 MB string, 100,000 items in one list.

mod common;

use std::time::{Duration, Instant};

use common::certs::tls_client;
use common::es::{
    count, delete_indices, duplicated_ids, es_json, es_json_ready, http, refresh, require_es, search, wait_for_count,
};
use common::metrics::metric;
use common::webhook::{event_list, post_json, WebhookSetup};
use serde_json::{json, Value};

/// The 50 MB document and the 100,000-event list, one at a time: together they took
/// the test Elasticsearch (512 MiB heap) past its heap once (OutOfMemoryError, exit),
/// and every later test binary failed for want of it.
static HEAVY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A short Metadata-level ResponseComplete event.
fn event(id: &str, stage_timestamp: &str) -> Value {
    json!({
        "level": "Metadata",
        "auditID": id,
        "stage": "ResponseComplete",
        "requestURI": "/api/v1/namespaces/default/pods",
        "verb": "list",
        "user": {"username": "alice", "groups": ["devs"]},
        "sourceIPs": ["10.0.0.1"],
        "objectRef": {"resource": "pods", "namespace": "default", "apiVersion": "v1"},
        "responseStatus": {"metadata": {}, "code": 200},
        "requestReceivedTimestamp": "2026-11-09T06:00:00.000001Z",
        "stageTimestamp": stage_timestamp,
        "annotations": {"authorization.k8s.io/decision": "allow"}
    })
}

/// Every hit of `query` with its `_index`, keyed by auditID.
async fn by_audit_id(index: &str, query: Value) -> std::collections::BTreeMap<String, (String, Value)> {
    refresh(index).await;
    let body = json!({"query": query, "size": 1000});
    let (status, v) = es_json_ready(reqwest::Method::POST, &format!("/{index}/_search"), Some(body)).await;
    assert_eq!(status, 200, "{v}");
    v["hits"]["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            let id = h["_source"]["kubernetes"]["audit"]["auditID"].as_str().unwrap().to_string();
            (id, (h["_index"].as_str().unwrap().to_string(), h["_source"].clone()))
        })
        .collect()
}

async fn assert_healthy(setup: &WebhookSetup) {
    let resp = http().get(format!("http://{}/healthz", setup.admin)).send().await.expect("gateway answers /healthz");
    assert_eq!(resp.status().as_u16(), 200, "{}", setup.log());
}

fn flags(doc: &Value) -> Vec<&str> {
    doc["kube_log_gateway"]["flags"].as_array().map_or(vec![], |f| f.iter().map(|f| f.as_str().unwrap()).collect())
}

#[tokio::test]
async fn future_fields_odd_keys_and_odd_times_land_in_the_audit_index() {
    require_es().await;
    let setup = WebhookSetup::new("hostile-fields");
    let gw = setup.start();
    let client = tls_client(&setup.certs(), true);
    const T: &str = "2026-11-09T06:00:01.000002Z";

    // 1. Fields this version does not know.
    let mut future = event("future", T);
    future["futureField"] = json!({"a": [1, 2]});
    future["objectRef"]["newRefField"] = json!("x");
    future["user"]["newUserField"] = json!(true);
    // 2. Keys Elasticsearch refuses as field names.
    let mut keys = event("keys", T);
    keys["annotations"] = json!({"": "empty", ".": "dot", "..": "dots", "_": "underscore", " ": "blank",
        "authorization.k8s.io/decision": "allow"});
    keys["user"]["extra"] = json!({"": ["e"], ".": ["d"], "authentication.kubernetes.io/credential-id": ["X"]});
    keys["impersonatedUser"] = json!({"username": "bob", "extra": {"...": ["i"]}});
    // 3. Times date_nanos cannot take: normalized where RFC 3339 allows it.
    let mut items = vec![future, keys];
    let normalized = [
        ("lower-t", "2026-11-09t06:00:02.5Z", "2026-11-09T06:00:02.500Z"),
        ("lower-z", "2026-11-09T06:00:03.000004z", "2026-11-09T06:00:03.000004Z"),
        ("space", "2026-11-09 06:00:04Z", "2026-11-09T06:00:04Z"),
        ("leap", "2016-12-31T23:59:60Z", "2016-12-31T23:59:59.999999999Z"),
    ];
    for (id, sent, _) in normalized {
        items.push(event(id, sent));
    }
    // … and replaced by the event's own receive time where they are out of range.
    let out_of_range = [("year-9999", "9999-12-31T23:59:59Z"), ("before-1970", "1969-07-20T20:17:40Z")];
    for (id, sent) in out_of_range {
        items.push(event(id, sent));
    }
    let mut received = event("received-out-of-range", T);
    received["requestReceivedTimestamp"] = json!("0001-01-01T00:00:00Z");
    items.push(received);
    // 4. A requestURI of 10,923 three-byte characters: 32,769 bytes, past Lucene's
    // 32,766-byte limit for one term; were it indexed as a keyword, Elasticsearch would
    // refuse the whole document ("immense term"). `ignore_above` counts UTF-16 units,
    // and no unit takes more than 3 bytes of UTF-8, so the mapping's 8,192 caps a
    // term at 24,576 bytes; a limit above 10,922 would fail here.
    let long_uri = "\u{20AC}".repeat(10_923);
    let mut long = event("long-uri", T);
    long["requestURI"] = json!(long_uri);
    items.push(long);
    let n = items.len() as u64;

    let (status, _, body) = post_json(&client, &setup.url("/audit"), event_list(items)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({"accepted": n, "rejected": 0}));
    assert_eq!(wait_for_count(&setup.audit_indices(), n, Duration::from_secs(60)).await, n, "{}", setup.log());
    setup.wait_spool_empty(Duration::from_secs(30)).await;
    assert_eq!(count(&setup.audit_indices()).await, n);
    assert_eq!(count(&setup.dead_letter_indices()).await, 0, "nothing dead-lettered");
    assert_healthy(&setup).await;
    let docs = by_audit_id(&setup.audit_indices(), json!({"match_all": {}})).await;
    let day = |d: &str| format!("{}-audit-{}", setup.prefix, d);

    // 1. Carried into _source …
    let (index, d) = &docs["future"];
    assert_eq!(index, &day("2026.11.09"));
    assert_eq!(d["kubernetes"]["audit"]["futureField"], json!({"a": [1, 2]}));
    assert_eq!(d["kubernetes"]["audit"]["objectRef"]["newRefField"], "x");
    assert_eq!(d["kubernetes"]["audit"]["objectRef"]["resource"], "pods");
    assert_eq!(d["kubernetes"]["audit"]["user"]["newUserField"], true);
    assert_eq!(d["@timestamp"], T);
    assert!(d.get("kube_log_gateway").is_none());
    // … and not indexed: the mapping did not grow.
    let (_, mapping) = es_json(reqwest::Method::GET, &format!("/{index}/_mapping"), None).await;
    let audit = &mapping[index.as_str()]["mappings"]["properties"]["kubernetes"]["properties"]["audit"];
    assert!(audit["properties"]["objectRef"]["properties"]["resource"].is_object(), "{audit}");
    assert!(audit["properties"].get("futureField").is_none(), "{audit}");
    assert!(audit["properties"]["objectRef"]["properties"].get("newRefField").is_none(), "{audit}");
    assert!(by_audit_id(&setup.audit_indices(), json!({"exists": {"field": "kubernetes.audit.futureField"}}))
        .await
        .is_empty());

    // 2. Renamed keys, distinct, searchable where annotations are.
    let (_, d) = &docs["keys"];
    let audit = &d["kubernetes"]["audit"];
    assert_eq!(
        audit["annotations"],
        json!({"_empty_": "empty", "_blank_": "blank", "_": "underscore", "_~2": "dot", "__": "dots",
            "authorization_k8s_io/decision": "allow"})
    );
    assert_eq!(
        audit["user"]["extra"],
        json!({"": ["e"], ".": ["d"], "authentication.kubernetes.io/credential-id": ["X"]})
    );
    assert_eq!(audit["impersonatedUser"]["extra"], json!({"...": ["i"]}));
    assert!(flags(d).is_empty());
    let hits = by_audit_id(&setup.audit_indices(), json!({"term": {"kubernetes.audit.annotations._~2": "dot"}})).await;
    assert_eq!(hits.keys().collect::<Vec<_>>(), ["keys"]);

    // 3. Normalized times: @timestamp and stageTimestamp rewritten, the original kept.
    for (id, sent, want) in normalized {
        let (index, d) = &docs[id];
        assert_eq!(d["@timestamp"], want, "{id}");
        assert_eq!(d["kubernetes"]["audit"]["stageTimestamp"], want, "{id}");
        assert_eq!(d["kube_log_gateway"]["original"]["stageTimestamp"], sent, "{id}");
        assert_eq!(flags(d), ["timestamp_normalized"], "{id}");
        assert_eq!(index, &day(&want[..10].replace('-', ".")), "{id}");
    }
    // Out of range: @timestamp is the event's requestReceivedTimestamp, and the index is
    // that day's — never the arrival time, so that a resend on another day is a 409.
    for (id, sent) in out_of_range {
        let (index, d) = &docs[id];
        assert_eq!(d["@timestamp"], "2026-11-09T06:00:00.000001Z", "{id}");
        assert_eq!(flags(d), ["timestamp_out_of_range"], "{id}");
        assert_eq!(d["kube_log_gateway"]["original"]["stageTimestamp"], sent, "{id}");
        assert!(d["kubernetes"]["audit"].get("stageTimestamp").is_none(), "{id}");
        assert_eq!(index, &day("2026.11.09"), "{id}");
    }
    // 4. Stored whole, just not indexed as a keyword.
    let (_, d) = &docs["long-uri"];
    assert_eq!(d["kubernetes"]["audit"]["requestURI"], long_uri.as_str());
    assert_eq!(d["url"]["original"], long_uri.as_str());
    assert!(flags(d).is_empty());

    let (_, d) = &docs["received-out-of-range"];
    assert_eq!(d["@timestamp"], T);
    assert_eq!(flags(d), ["request_received_timestamp_out_of_range"]);
    assert_eq!(d["kube_log_gateway"]["original"]["requestReceivedTimestamp"], "0001-01-01T00:00:00Z");
    assert!(d["kubernetes"]["audit"].get("requestReceivedTimestamp").is_none());
    // The flag and the original are searchable.
    let hits =
        by_audit_id(&setup.audit_indices(), json!({"term": {"kube_log_gateway.flags": "timestamp_out_of_range"}}))
            .await;
    assert_eq!(hits.keys().collect::<Vec<_>>(), ["before-1970", "year-9999"]);
    let hits = by_audit_id(
        &setup.audit_indices(),
        json!({"term": {"kube_log_gateway.original.stageTimestamp": "9999-12-31T23:59:59Z"}}),
    )
    .await;
    assert_eq!(hits.keys().collect::<Vec<_>>(), ["year-9999"]);

    // A resend: the same `_id`s (from the strings as sent), nothing new.
    let again: Vec<Value> = normalized.iter().map(|(id, sent, _)| event(id, sent)).collect();
    let (status, _, _) = post_json(&client, &setup.url("/audit"), event_list(again)).await;
    assert_eq!(status, 200);
    let deadline = Instant::now() + Duration::from_secs(30);
    while metric(&setup.admin, "klg_documents_total", "outcome=\"duplicate\"").await < 4.0 {
        assert!(Instant::now() < deadline, "resend not processed: {}", setup.log());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(count(&setup.audit_indices()).await, n);
    drop(gw);
    delete_indices(&format!("{}-*", setup.prefix)).await;
}

/// An admission webhook may add audit annotations under keys of its own choosing:
/// each key is a field, and past the index's field limit Elasticsearch would refuse
/// the whole document. Past the limit, a new key is kept in `_source`, not indexed.
#[tokio::test]
async fn annotation_keys_past_the_field_limit_are_kept_not_refused() {
    require_es().await;
    let mut setup = WebhookSetup::new("hostile-fieldlimit");
    setup.config.elasticsearch.total_fields_limit = Some(1000);
    let gw = setup.start();
    let client = tls_client(&setup.certs(), true);
    const T: &str = "2026-11-09T06:00:01Z";

    // 1,100 keys of one webhook in one event: past 1,000 fields with the mapping's own.
    let mut many = event("many-keys", T);
    for i in 0..1100 {
        many["annotations"][format!("webhook.example.com/key-{i:03}")] = json!(format!("v{i}"));
    }
    // A later event with a key nobody has seen: past the limit too.
    let mut later = event("later", T);
    later["annotations"]["webhook.example.com/late"] = json!("late");
    let (status, _, body) = post_json(&client, &setup.url("/audit"), event_list(vec![many, later])).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({"accepted": 2, "rejected": 0}));
    assert_eq!(wait_for_count(&setup.audit_indices(), 2, Duration::from_secs(60)).await, 2, "{}", setup.log());
    setup.wait_spool_empty(Duration::from_secs(30)).await;
    assert_eq!(count(&setup.dead_letter_indices()).await, 0, "nothing dead-lettered: {}", setup.log());

    // Every key kept in _source …
    let docs = by_audit_id(&setup.audit_indices(), json!({"match_all": {}})).await;
    let annotations = docs["many-keys"].1["kubernetes"]["audit"]["annotations"].as_object().unwrap().clone();
    assert_eq!(annotations.len(), 1101);
    assert_eq!(annotations["webhook_example_com/key-1099"], "v1099");
    assert_eq!(docs["later"].1["kubernetes"]["audit"]["annotations"]["webhook_example_com/late"], "late");
    // … the first keys searchable, as is the decision on both …
    let hits = by_audit_id(
        &setup.audit_indices(),
        json!({"term": {"kubernetes.audit.annotations.authorization_k8s_io/decision": "allow"}}),
    )
    .await;
    assert_eq!(hits.keys().collect::<Vec<_>>(), ["later", "many-keys"]);
    let hits = by_audit_id(
        &setup.audit_indices(),
        json!({"term": {"kubernetes.audit.annotations.webhook_example_com/key-000": "v0"}}),
    )
    .await;
    assert_eq!(hits.keys().collect::<Vec<_>>(), ["many-keys"]);
    // … and the ones past the limit named in `_ignored`, which docs/fields.md aggregates.
    let hits = by_audit_id(
        &setup.audit_indices(),
        json!({"term": {"_ignored": "kubernetes.audit.annotations.webhook_example_com/late"}}),
    )
    .await;
    assert_eq!(hits.keys().collect::<Vec<_>>(), ["later"]);
    let query = json!({"size": 0, "query": {"exists": {"field": "_ignored"}},
        "aggs": {"fields": {"terms": {"field": "_ignored", "size": 2000}}}});
    let (status, v) = es_json(reqwest::Method::POST, &format!("/{}/_search", setup.audit_indices()), Some(query)).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["hits"]["total"]["value"], 2, "{v}");
    let ignored: Vec<&str> =
        v["aggregations"]["fields"]["buckets"].as_array().unwrap().iter().map(|b| b["key"].as_str().unwrap()).collect();
    assert!(ignored.contains(&"kubernetes.audit.annotations.webhook_example_com/key-999"), "{ignored:?}");
    assert!(!ignored.contains(&"kubernetes.audit.annotations.webhook_example_com/key-000"), "{ignored:?}");
    drop(gw);
    delete_indices(&format!("{}-*", setup.prefix)).await;
}

#[tokio::test]
async fn hostile_bodies_get_clear_answers_and_the_gateway_stays_up() {
    require_es().await;
    let _heavy = HEAVY.lock().await;
    // Room for the 50 MB item, and time for it in a debug build on a busy machine.
    let mut setup = WebhookSetup::new("hostile-bodies");
    setup.config.server_mut().max_body_bytes = Some(64 * 1024 * 1024);
    setup.config.server_mut().request_timeout = Some("180s".into());
    let _gw = setup.start();
    let client = tls_client(&setup.certs(), true);
    let url = setup.url("/audit");
    const T: &str = "2026-11-09T06:00:00Z";

    // 100,000 `[` and nothing else: not JSON, said where.
    let (status, _, body) = post_json(&client, &url, "[".repeat(100_000)).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "request body is not valid JSON: EOF while parsing a list at line 1, column 100000");
    assert_healthy(&setup).await;

    // Balanced, they are a list of one item that is not an event.
    let nested = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let (status, _, body) = post_json(&client, &url, nested.clone()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({"accepted": 0, "rejected": 1, "errors": [{"item": 0, "reason": "an event must be a JSON object"}]})
    );
    assert_healthy(&setup).await;
    assert_eq!(wait_for_count(&setup.dead_letter_indices(), 1, Duration::from_secs(30)).await, 1);
    let dead = search(&setup.dead_letter_indices(), json!({"match_all": {}})).await;
    assert_eq!(dead[0]["event"]["original"].as_str().unwrap(), &nested[1..nested.len() - 1]);

    // Invalid UTF-8: 400 naming line and column.
    let mut bad = event_list(vec![event("utf8", T)]).into_bytes();
    let at = bad.windows(5).position(|w| w == b"alice").unwrap() + 2;
    bad[at] = 0xC3; // a lead byte followed by ASCII
    let resp = client.post(&url).header("content-type", "application/json").body(bad).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    let body: Value = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
    assert_eq!(
        body["error"],
        format!("request body is not valid JSON: invalid unicode code point at line 1, column {}", at + 1)
    );
    assert_healthy(&setup).await;

    // 100,000 nested objects inside requestObject: stored whole, as its JSON
    // text, beside the searchable body paths (where text cannot go).
    let deep = format!("{}{}{}", r#"{"a":"#.repeat(100_000), "1", "}".repeat(100_000));
    let mut e = event("deep", T);
    e["level"] = json!("Request");
    let text = event_list(vec![e]).replacen(
        r#""level":"Request""#,
        &format!(r#""level":"Request","requestObject":{deep}"#),
        1,
    );
    let (status, _, body) = post_json(&client, &url, text).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({"accepted": 1, "rejected": 0}));
    assert_healthy(&setup).await;

    // A 50 MB string (a ConfigMap value): accepted and stored.
    let big = "x".repeat(50 * 1024 * 1024);
    let mut e = event("big", T);
    e["level"] = json!("Request");
    e["requestObject"] = json!({"kind": "ConfigMap", "data": {"big": big}});
    let started = Instant::now();
    let (status, _, body) = post_json(&client, &url, event_list(vec![e])).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({"accepted": 1, "rejected": 0}));
    eprintln!("50 MB item answered in {:?}", started.elapsed());
    assert_healthy(&setup).await;

    assert_eq!(wait_for_count(&setup.audit_indices(), 2, Duration::from_secs(120)).await, 2, "{}", setup.log());
    let docs = by_audit_id(&setup.audit_indices(), json!({"term": {"kubernetes.audit.auditID": "deep"}})).await;
    let (_, d) = &docs["deep"];
    assert_eq!(d["kube_log_gateway"]["original"]["requestObject"].as_str().unwrap(), deep);
    assert_eq!(flags(d), ["nested_too_deep", "request_object_unindexed"]);
    let (status, got) = es_json(
        reqwest::Method::POST,
        &format!("/{}/_search", setup.audit_indices()),
        Some(json!({"query": {"term": {"kubernetes.audit.auditID": "big"}},
            "_source": ["kubernetes.audit.requestObject.data.big"]})),
    )
    .await;
    assert_eq!(status, 200);
    let stored = got["hits"]["hits"][0]["_source"]["kubernetes"]["audit"]["requestObject"]["data"]["big"].as_str();
    assert_eq!(stored.map(str::len), Some(big.len()));
    assert!(stored.unwrap().bytes().all(|b| b == b'x'));
    // Nothing but the one non-event went to the dead-letter index.
    assert_eq!(count(&setup.dead_letter_indices()).await, 1);
    assert_healthy(&setup).await;
    delete_indices(&format!("{}-*", setup.prefix)).await;
}

#[tokio::test]
async fn one_hundred_thousand_items_in_one_list_land_exactly_once() {
    require_es().await;
    let _heavy = HEAVY.lock().await;
    // This is about "all, exactly once", not speed: a debug build on a busy
    // machine can take longer than the 20 s default to normalize and spool them.
    let mut setup = WebhookSetup::new("hostile-many");
    setup.config.server_mut().request_timeout = Some("180s".into());
    let _gw = setup.start();
    let client = tls_client(&setup.certs(), true);
    const N: u64 = 100_000;
    let items: Vec<String> = (0..N)
        .map(|i| {
            format!(
                r#"{{"level":"Metadata","auditID":"m-{i}","stage":"ResponseComplete","verb":"get","stageTimestamp":"2026-11-09T06:00:00.{:06}Z"}}"#,
                i
            )
        })
        .collect();
    let body = format!(r#"{{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[{}]}}"#, items.join(","));
    assert!(body.len() < 32 * 1024 * 1024, "within the default max_body_bytes: {}", body.len());

    let started = Instant::now();
    let (status, _, resp) = post_json(&client, &setup.url("/audit"), body).await;
    eprintln!("100,000 items answered in {:?}", started.elapsed());
    assert_eq!(status, 200, "{resp}");
    assert_eq!(resp, json!({"accepted": N, "rejected": 0}));
    assert_healthy(&setup).await;
    assert_eq!(wait_for_count(&setup.audit_indices(), N, Duration::from_secs(300)).await, N, "{}", setup.log());
    setup.wait_spool_empty(Duration::from_secs(60)).await;
    assert_eq!(count(&setup.audit_indices()).await, N);
    assert!(duplicated_ids(&setup.audit_indices()).await.is_empty());
    assert_eq!(count(&setup.dead_letter_indices()).await, 0);
    eprintln!("100,000 documents in Elasticsearch after {:?}", started.elapsed());
    assert_healthy(&setup).await;
    delete_indices(&format!("{}-*", setup.prefix)).await;
}
