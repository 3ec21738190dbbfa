//! One event → one document: the fields, names, times and objects.

use serde_json::json;

use super::super::document_objects::{nests_deeper_than, MAX_OBJECT_DEPTH};
use super::*;

fn normalizer() -> AuditNormalizer {
    test_normalizer()
}

/// Also checks that the hand-written body is serde's, for every event
/// these tests make.
fn normalize(json: &str) -> Result<(Document, Value), String> {
    let raw: &RawValue = serde_json::from_str(json).unwrap();
    let doc = normalizer().normalize(raw)?;
    let (hand, serde) = normalizer().both_bodies(raw).unwrap();
    assert_eq!(hand, serde);
    let v = serde_json::from_slice(&doc.body).unwrap();
    Ok((doc, v))
}

const DELETE: &str = r#"{"level":"Metadata","auditID":"7e0cbccf-8d8a-4f5f-9b66-2f3c1c1e6d2a","stage":"ResponseComplete","requestURI":"/apis/apps/v1/namespaces/shop/deployments/web","verb":"delete","user":{"username":"alice@example.com","uid":"u-1","groups":["devs","system:authenticated"],"extra":{"authentication.kubernetes.io/credential-id":["X509SHA256=ab"]}},"sourceIPs":["192.0.2.10","10.0.0.1"],"userAgent":"kubectl/v1.31.0 (linux/amd64)","objectRef":{"resource":"deployments","namespace":"shop","name":"web","apiGroup":"apps","apiVersion":"v1"},"responseStatus":{"metadata":{},"status":"Success","code":200},"requestReceivedTimestamp":"2026-11-09T06:14:42.535854Z","stageTimestamp":"2026-11-09T06:14:42.541203Z","annotations":{"authorization.k8s.io/decision":"allow","authorization.k8s.io/reason":"RBAC: allowed by ClusterRoleBinding \"devs\""}}"#;

#[test]
fn ecs_fields_and_original() {
    let (doc, v) = normalize(DELETE).unwrap();
    assert_eq!(doc.index, "audit-2026.11.09");
    assert_eq!(v["@timestamp"], "2026-11-09T06:14:42.541203Z");
    assert_eq!(v["data_stream"], json!({"type": "logs", "dataset": "kubernetes.audit_logs", "namespace": "default"}));
    assert_eq!(v["event"]["dataset"], "kubernetes.audit_logs");
    assert!(v["event"].get("ingested").is_none(), "the sink stamps event.ingested");
    assert_eq!(v["event"]["action"], "delete");
    assert_eq!(v["event"]["outcome"], "success");
    assert_eq!(v["event"]["id"], doc.id.as_str());
    assert_eq!(v["user"]["name"], "alice@example.com");
    assert_eq!(v["user"]["id"], "u-1");
    assert_eq!(v["source"]["ip"], json!(["192.0.2.10", "10.0.0.1"]));
    assert_eq!(v["client"]["ip"], "192.0.2.10");
    assert_eq!(v["related"], json!({"user": ["alice@example.com"], "ip": ["192.0.2.10", "10.0.0.1"]}));
    assert_eq!(
        v["orchestrator"],
        json!({"type": "kubernetes", "cluster": {"name": "prod"}, "namespace": "shop",
            "resource": {"type": "deployments", "name": "web"}, "api_version": "v1"})
    );
    assert_eq!(v["user_agent"]["original"], "kubectl/v1.31.0 (linux/amd64)");
    assert_eq!(v["url"]["original"], "/apis/apps/v1/namespaces/shop/deployments/web");
    assert_eq!(v["http"]["response"]["status_code"], 200);
    assert_eq!(v["orchestrator"]["cluster"]["name"], "prod");
    assert_eq!(v["host"]["name"], "gw-0");
    assert_eq!(v["kubernetes"]["node"]["name"], "node-1");
    let audit = &v["kubernetes"]["audit"];
    assert_eq!(audit["objectRef"]["resource"], "deployments");
    assert_eq!(audit["annotations"]["authorization_k8s_io/decision"], "allow");
    assert_eq!(audit["user"]["extra"]["authentication.kubernetes.io/credential-id"][0], "X509SHA256=ab");
    assert_eq!(audit["requestReceivedTimestamp"], "2026-11-09T06:14:42.535854Z");
}

#[test]
fn id_is_deterministic_and_depends_on_stage() {
    let (a, _) = normalize(DELETE).unwrap();
    let (b, _) = normalize(DELETE).unwrap();
    assert_eq!(a.id, b.id);
    let (c, _) = normalize(&DELETE.replace("ResponseComplete", "ResponseStarted")).unwrap();
    assert_ne!(a.id, c.id);
}

#[test]
fn forbidden_and_failed_authentication() {
    let forbid = DELETE.replace("\"allow\"", "\"forbid\"").replace("\"code\":200", "\"code\":403");
    assert_eq!(normalize(&forbid).unwrap().1["event"]["outcome"], "failure");
    let anon = r#"{"level":"Metadata","auditID":"x","stage":"ResponseStarted","requestURI":"/api","verb":"get","user":{},"sourceIPs":["203.0.113.5"],"responseStatus":{"metadata":{},"status":"Failure","message":"Unauthorized","reason":"Unauthorized","code":401},"requestReceivedTimestamp":"2026-11-09T06:00:00.000000Z","stageTimestamp":"2026-11-09T06:00:00.000100Z"}"#;
    let (_, v) = normalize(anon).unwrap();
    assert_eq!(v["event"]["outcome"], "failure");
    assert_eq!(v["http"]["response"]["status_code"], 401);
    assert!(v.get("user").is_none());
}

#[test]
fn secrets_are_redacted() {
    let update = r#"{"level":"RequestResponse","auditID":"s1","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/shop/secrets/db","verb":"update","user":{"username":"bob"},"objectRef":{"resource":"secrets","namespace":"shop","name":"db","apiVersion":"v1"},"responseStatus":{"metadata":{},"code":200},"requestObject":{"kind":"Secret","apiVersion":"v1","metadata":{"name":"db"},"data":{"password":"aHVudGVyMg=="}},"responseObject":{"kind":"Secret","apiVersion":"v1","metadata":{"name":"db","resourceVersion":"9"},"data":{"password":"aHVudGVyMg=="}},"stageTimestamp":"2026-11-09T06:14:42.541203Z"}"#;
    let (doc, v) = normalize(update).unwrap();
    let text = String::from_utf8(doc.body.to_vec()).unwrap();
    assert!(!text.contains("aHVudGVyMg=="), "{text}");
    assert_eq!(v["kubernetes"]["audit"]["requestObject"]["data"]["password"], "[REDACTED]");
    assert_eq!(v["kubernetes"]["audit"]["responseObject"]["metadata"]["resourceVersion"], "9");
}

#[test]
fn bad_times_are_refused_with_the_field_name() {
    let err = normalize(&DELETE.replace("2026-11-09T06:14:42.541203Z", "yesterday")).unwrap_err();
    assert!(err.starts_with("field `stageTimestamp` \"yesterday\" is not an RFC 3339 time"), "{err}");
}

fn flags(v: &Value) -> Vec<&str> {
    v["kube_log_gateway"]["flags"].as_array().map_or(vec![], |f| f.iter().map(|f| f.as_str().unwrap()).collect())
}

#[test]
fn unknown_fields_are_kept_raw_beside_the_known_ones() {
    let future = DELETE
        .replace(r#""level":"Metadata","#, r#""level":"Metadata","futureField":{"a":[1,2]},"kind":"Event","#)
        .replace(r#""resource":"deployments","#, r#""resource":"deployments","newRefField":"x","#)
        .replace(r#""uid":"u-1","#, r#""uid":"u-1","fingerprint":{"alg":"sha256"},"#)
        .replace(r#""status":"Success","#, r#""status":"Success","kind":"Status","#);
    let (doc, v) = normalize(&future).unwrap();
    let audit = &v["kubernetes"]["audit"];
    assert_eq!(audit["futureField"], json!({"a": [1, 2]}));
    assert_eq!(audit["objectRef"]["newRefField"], "x");
    assert_eq!(audit["objectRef"]["resource"], "deployments");
    assert_eq!(audit["user"]["fingerprint"]["alg"], "sha256");
    assert_eq!(audit["responseStatus"]["kind"], "Status");
    assert!(audit.get("kind").is_none(), "the event's own kind is not kept");
    assert!(flags(&v).is_empty());
    // The same `_id` as without them: unknown fields are not part of it.
    assert_eq!(doc.id, normalize(DELETE).unwrap().0.id);
    // Two fields of one name would make Elasticsearch refuse the document.
    let twice = DELETE.replace(r#""level":"Metadata","#, r#""x":1,"level":"Metadata","x":2,"#);
    assert_eq!(normalize(&twice).unwrap_err(), "duplicate field `x`");
    let twice = DELETE.replace(r#""level":"Metadata","#, r#""verb":"get","#);
    assert_eq!(normalize(&twice).unwrap_err(), "duplicate field `verb`");
}

#[test]
fn keys_elasticsearch_cannot_take_are_renamed_and_stay_distinct() {
    let odd = DELETE.replace(
        r#""annotations":{"#,
        r#""annotations":{"":"empty"," ":"blank","\u001f":"unit separator",".":"dot","..":"dots","_":"underscore","a.b":"dotted","a_b":"plain","#,
    )
    .replace(r#""extra":{"#, r#""extra":{"":["e"],".":["d"],"#)
    .replace(r#""level":"Metadata","#, r#""level":"Metadata","":1,"new.field":2,"#);
    let (_, v) = normalize(&odd).unwrap();
    let a = &v["kubernetes"]["audit"]["annotations"];
    assert_eq!(a["_empty_"], "empty");
    // Renamed in the order of the original keys: U+001F sorts before " ".
    assert_eq!(a["_blank_"], "unit separator");
    assert_eq!(a["_blank_~2"], "blank");
    assert_eq!(a["_"], "underscore");
    assert_eq!(a["_~2"], "dot");
    assert_eq!(a["__"], "dots");
    assert_eq!(a["a_b"], "plain");
    assert_eq!(a["a_b~2"], "dotted");
    assert_eq!(a["authorization_k8s_io/decision"], "allow");
    assert_eq!(a.as_object().unwrap().len(), 10);
    // `user.extra` is a flattened field: its keys stay as sent.
    let extra = &v["kubernetes"]["audit"]["user"]["extra"];
    assert_eq!(extra[""], json!(["e"]));
    assert_eq!(extra["."], json!(["d"]));
    assert_eq!(extra["authentication.kubernetes.io/credential-id"], json!(["X509SHA256=ab"]));
    assert_eq!(v["kubernetes"]["audit"]["_empty_"], 1);
    assert_eq!(v["kubernetes"]["audit"]["new_field"], 2);
    assert_eq!(v["event"]["outcome"], "success");
}

fn with_stage_time(t: &str) -> String {
    DELETE.replace("2026-11-09T06:14:42.541203Z", t)
}

#[test]
fn timestamps_elasticsearch_would_refuse_are_normalized() {
    for (sent, want) in [
        ("2026-11-09t06:14:42.541203Z", "2026-11-09T06:14:42.541203Z"),
        ("2026-11-09T06:14:42.541203z", "2026-11-09T06:14:42.541203Z"),
        ("2026-11-09 06:14:42.541203Z", "2026-11-09T06:14:42.541203Z"),
        ("2026-11-09T06:14:42.5412031234Z", "2026-11-09T06:14:42.541203123Z"),
        ("2016-12-31T23:59:60Z", "2016-12-31T23:59:59.999999999Z"),
        ("2016-12-31T23:59:60.5Z", "2016-12-31T23:59:59.999999999Z"),
    ] {
        let (doc, v) = normalize(&with_stage_time(sent)).unwrap();
        assert_eq!(v["@timestamp"], want, "{sent}");
        assert_eq!(v["kubernetes"]["audit"]["stageTimestamp"], want, "{sent}");
        assert_eq!(v["kube_log_gateway"]["original"]["stageTimestamp"], sent);
        assert_eq!(flags(&v), ["timestamp_normalized"], "{sent}");
        assert_eq!(doc.index, format!("audit-{}", want[..10].replace('-', ".")));
        // The `_id` comes from the string as sent.
        assert_ne!(doc.id, normalize(&with_stage_time(want)).unwrap().0.id);
        assert_eq!(doc.id, normalize(&with_stage_time(sent)).unwrap().0.id);
    }
    // What Elasticsearch reads as is stays as is, offsets included.
    for sent in ["2026-11-09T06:14:42Z", "2026-11-09T08:14:42.123456789+02:00", "1970-01-01T00:00:00Z"] {
        let (_, v) = normalize(&with_stage_time(sent)).unwrap();
        assert_eq!(v["@timestamp"], sent);
        assert!(v.get("kube_log_gateway").is_none(), "{sent}: {v}");
    }
}

#[test]
fn timestamps_outside_date_nanos_fall_back_to_the_events_own_receive_time_or_the_range_end() {
    // requestReceivedTimestamp of DELETE is usable: it stands in, and so decides the index.
    for sent in ["9999-12-31T23:59:59Z", "1969-12-31T23:59:59.999999Z", "2262-04-11T23:47:16.854775808Z"] {
        let (doc, v) = normalize(&with_stage_time(sent)).unwrap();
        assert_eq!(v["@timestamp"], "2026-11-09T06:14:42.535854Z", "{sent}");
        assert_eq!(flags(&v), ["timestamp_out_of_range"]);
        assert_eq!(v["kube_log_gateway"]["original"]["stageTimestamp"], sent);
        assert!(v["kubernetes"]["audit"].get("stageTimestamp").is_none());
        assert_eq!(doc.index, "audit-2026.11.09");
        // A resend, whenever it comes, has the same _id in the same index.
        let again = normalize(&with_stage_time(sent)).unwrap().0;
        assert_eq!((again.index, again.id), (doc.index.clone(), doc.id.clone()));
    }
    // Both out of range: the nearest end of what date_nanos holds.
    for (sent, want, index) in [
        ("9999-12-31T23:59:59Z", "2262-04-11T23:47:16.854775Z", "audit-2262.04.11"),
        ("0001-01-01T00:00:00Z", "1970-01-01T00:00:00.000000Z", "audit-1970.01.01"),
    ] {
        let both = with_stage_time(sent).replace("2026-11-09T06:14:42.535854Z", sent);
        let (doc, v) = normalize(&both).unwrap();
        assert_eq!(v["@timestamp"], want, "{sent}");
        assert_eq!(doc.index, index);
        assert_eq!(flags(&v), ["timestamp_out_of_range", "request_received_timestamp_out_of_range"]);
    }
    let received = DELETE.replace("2026-11-09T06:14:42.535854Z", "0001-01-01T00:00:00Z");
    let (_, v) = normalize(&received).unwrap();
    assert_eq!(v["@timestamp"], "2026-11-09T06:14:42.541203Z");
    assert_eq!(flags(&v), ["request_received_timestamp_out_of_range"]);
    assert!(v["kubernetes"]["audit"].get("requestReceivedTimestamp").is_none());
    assert_eq!(v["kube_log_gateway"]["original"]["requestReceivedTimestamp"], "0001-01-01T00:00:00Z");
    let received = DELETE.replace("2026-11-09T06:14:42.535854Z", "2026-11-09 06:14:42.535854z");
    let (_, v) = normalize(&received).unwrap();
    assert_eq!(flags(&v), ["request_received_timestamp_normalized"]);
    assert_eq!(v["kubernetes"]["audit"]["requestReceivedTimestamp"], "2026-11-09T06:14:42.535854Z");
}

#[test]
fn objects_too_deep_for_elasticsearch_are_kept_as_text() {
    let deep = |n: usize| format!("{}1{}", r#"{"a":"#.repeat(n), "}".repeat(n));
    // serde_json::Value cannot hold these (128 levels at most): read the text.
    let body = |json: &str| {
        let raw: &RawValue = serde_json::from_str(json).unwrap();
        let (hand, serde) = normalizer().both_bodies(raw).unwrap();
        assert!(hand == serde, "the hand-written body differs from serde's");
        String::from_utf8(normalizer().normalize(raw).unwrap().body.to_vec()).unwrap()
    };
    let ok = DELETE.replace(r#""level":"Metadata","#, &format!(r#""requestObject":{},"#, deep(MAX_OBJECT_DEPTH)));
    let text = body(&ok);
    assert!(text.contains(&format!(r#""requestObject":{}"#, deep(MAX_OBJECT_DEPTH))));
    assert!(!text.contains("kube_log_gateway"));
    let object = deep(100_000);
    let too_deep = DELETE
        .replace(r#""level":"Metadata","#, &format!(r#""requestObject":{object},"future":[{object}],"#))
        .replace(r#""name":"web","#, &format!(r#""name":"web","later":{object},"#));
    let text = body(&too_deep);
    let quoted = serde_json::to_string(&object).unwrap();
    assert!(text.contains(&format!(r#""original":{{"requestObject":{quoted}}}"#)));
    assert!(text.contains(&format!(r#""later":{quoted}"#)));
    assert!(text.contains(&format!(r#""future":{}"#, serde_json::to_string(&format!("[{object}]")).unwrap())));
    assert!(text.contains(r#""flags":["nested_too_deep","request_object_unindexed"]"#));
    assert!(!nests_deeper_than(&text, 20));
    assert!(nests_deeper_than(r#"[[[["]]]]]]]]]]]]]\"]"]]]]"#, 3));
    assert!(!nests_deeper_than(r#"[[["[[[[[[[[[[[\"[[["]]]"#, 3));
}

#[test]
fn a_secret_too_deep_to_redact_is_dropped_whole() {
    let nested = format!("{}\"c2VjcmV0\"{}", r#"{"x":"#.repeat(200), "}".repeat(200));
    let update = format!(
        r#"{{"level":"Request","auditID":"s2","stage":"ResponseComplete","objectRef":{{"resource":"secrets","name":"db"}},"requestObject":{{"kind":"Secret","data":{nested}}},"stageTimestamp":"2026-11-09T06:14:42.541203Z"}}"#
    );
    let (doc, v) = normalize(&update).unwrap();
    assert!(!std::str::from_utf8(&doc.body).unwrap().contains("c2VjcmV0"));
    assert!(v["kubernetes"]["audit"].get("requestObject").is_none());
    assert_eq!(v["kube_log_gateway"]["original"]["requestObject"], "[REDACTED]");
    assert_eq!(flags(&v), ["redacted_unparsable_object", "request_object_unindexed"]);
    let raw: &RawValue = serde_json::from_str(&update).unwrap();
    let dead = normalizer().rejected(raw, "test");
    assert!(!std::str::from_utf8(&dead.body).unwrap().contains("c2VjcmV0"));
}

#[test]
fn rejected_items_keep_the_original_without_secret_values() {
    let raw: &RawValue = serde_json::from_str(
        r#"{"stage":"ResponseComplete","objectRef":{"resource":"secrets"},"requestObject":{"data":{"k":"c2VjcmV0"}}}"#,
    )
    .unwrap();
    let doc = normalizer().rejected(raw, "missing field `auditID`");
    let v: Value = serde_json::from_slice(&doc.body).unwrap();
    assert!(doc.index.starts_with("deadletter-"));
    assert_eq!(v["error"]["type"], "invalid_audit_event");
    assert_eq!(v["error"]["message"], "missing field `auditID`");
    assert!(!v["event"]["original"].as_str().unwrap().contains("c2VjcmV0"));
}

#[test]
fn body_paths_rules_query_are_in_place_and_misfits_are_moved_aside() {
    let pod = r#"{"kind":"Pod","apiVersion":"v1","metadata":{"name":"p","annotations":{"a.b":"c"}},"spec":{"hostPID":true,"containers":[{"name":"c","image":"busybox","securityContext":{"privileged":true,"capabilities":{"add":["SYS_ADMIN"]}}}],"volumes":[{"name":"root","hostPath":{"path":"/"}}]}}"#;
    let create = DELETE.replace(r#""verb":"delete""#, r#""verb":"create""#).replace(
        r#""level":"Metadata","#,
        &format!(
            r#""level":"RequestResponse","requestObject":{pod},"responseObject":{{"kind":"Status","spec":"odd"}},"#
        ),
    );
    let (_, v) = normalize(&create).unwrap();
    let request = &v["kubernetes"]["audit"]["requestObject"];
    assert_eq!(request["spec"]["hostPID"], true);
    assert_eq!(request["spec"]["containers"][0]["securityContext"]["capabilities"]["add"], json!(["SYS_ADMIN"]));
    assert_eq!(request["spec"]["volumes"][0]["hostPath"]["path"], "/");
    assert!(v["kubernetes"]["audit"].get("responseObject").is_none());
    assert_eq!(v["kube_log_gateway"]["original"]["responseObject"], json!({"kind": "Status", "spec": "odd"}));
    assert_eq!(flags(&v), ["response_object_unindexed"]);
}

#[test]
fn impersonation_adds_the_impersonated_user_to_related_users() {
    let as_bob = DELETE.replace(r#""sourceIPs":"#, r#""impersonatedUser":{"username":"bob"},"sourceIPs":"#);
    let (_, v) = normalize(&as_bob).unwrap();
    assert_eq!(v["related"]["user"], json!(["alice@example.com", "bob"]));
    let no_ips =
        DELETE.replace(r#""sourceIPs":["192.0.2.10","10.0.0.1"],"#, r#""sourceIPs":["x","10.0.0.1","10.0.0.1"],"#);
    let (_, v) = normalize(&no_ips).unwrap();
    assert_eq!(v["source"]["ip"], json!(["10.0.0.1", "10.0.0.1"]));
    assert_eq!(v["related"]["ip"], json!(["10.0.0.1"]));
    assert_eq!(v["client"]["ip"], "10.0.0.1");
}
