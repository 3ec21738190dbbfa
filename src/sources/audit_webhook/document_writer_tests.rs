//! The hand-written audit body is serde's, byte for byte, over every event
//! shape these tests make.

use serde_json::value::RawValue;
use serde_json::{json, Value};

use super::super::document::test_normalizer;
use super::super::event::split_items;

/// The hand-written body of `event`'s document is serde's, byte for byte.
#[track_caller]
fn same_body(event: &str) {
    let raw: &RawValue = serde_json::from_str(event).unwrap();
    let (hand, serde) = test_normalizer().both_bodies(raw).unwrap_or_else(|e| panic!("{e}: {event}"));
    assert!(hand == serde, "differs for {event}\nhand:  {hand}\nserde: {serde}");
}

/// Strings that need escaping, or a writer's care.
const ODD: &[&str] = &[
    "",
    "plain",
    "quote \" and backslash \\",
    "\\\\\"\"",
    "tab\tnewline\ncr\r nul\u{0} unit sep\u{1f} del\u{7f}",
    "ünïcödé ✓ 日本語 😀",
    "line sep \u{2028} para sep \u{2029}",
    "a.b.c",
    " ",
    "..",
    "</script>",
    "long string that crosses a SIMD block boundary with an escape here \" and there \\ ok",
];

#[test]
fn sample_event_lists_of_every_shape() {
    for (rr_every, object_bytes) in [(0, 0), (1, 0), (3, 256), (10, 1024), (2, 4096)] {
        let list = crate::sample::event_list("w", 40, rr_every, object_bytes);
        for raw in split_items(list.as_bytes()).unwrap() {
            same_body(raw.get());
        }
    }
}

#[test]
fn missing_and_null_optional_fields() {
    let base = json!({"auditID": "a", "stage": "ResponseComplete", "stageTimestamp": "2026-11-09T06:14:42.541203Z"});
    same_body(&base.to_string());
    let variants: Vec<(&str, Value)> = vec![
        ("user", json!({})),
        ("user", json!({"uid": "u"})),
        ("user", json!({"username": "n"})),
        ("user", json!({"groups": [], "extra": {}})),
        ("user", json!({"extra": {"k": []}})),
        ("user", json!({"username": null, "uid": null})),
        ("impersonatedUser", json!({})),
        ("impersonatedUser", json!(null)),
        ("impersonatedUser", json!({"username": "bob", "groups": ["g"], "extra": {"...": ["i"]}})),
        ("sourceIPs", json!([])),
        ("sourceIPs", json!(["2001:DB8::1", "10.0.0.1"])),
        ("sourceIPs", json!(["::ffff:10.0.0.1"])),
        ("sourceIPs", json!(["not an address"])),
        ("sourceIPs", json!(["0.0.0.0"])),
        ("sourceIPs", json!(["255.255.255.255"])),
        ("sourceIPs", json!(["192.168.10.100"])),
        ("sourceIPs", json!(["010.0.0.1"])),
        ("objectRef", json!({})),
        ("objectRef", json!(null)),
        ("objectRef", json!({"subresource": "status", "resourceVersion": "7", "uid": "x"})),
        ("responseStatus", json!({})),
        ("responseStatus", json!({"code": 0})),
        ("responseStatus", json!({"code": -1})),
        ("responseStatus", json!({"code": i64::MAX})),
        ("responseStatus", json!({"code": i64::MIN})),
        ("responseStatus", json!({"code": 404, "details": {"name": "x", "causes": [1, 2.5, null, true]}})),
        ("responseStatus", json!({"status": "Failure", "reason": "NotFound", "message": "m"})),
        ("requestObject", json!(null)),
        ("requestObject", json!([1, "two", {"three": 3}])),
        ("requestObject", json!("a string")),
        ("responseObject", json!(12.5e3)),
        ("requestReceivedTimestamp", json!(null)),
        ("annotations", json!({})),
        ("annotations", json!({"authorization.k8s.io/decision": "forbid"})),
        ("level", json!(null)),
        ("verb", json!(null)),
        ("userAgent", json!("ua")),
        ("requestURI", json!(null)),
    ];
    for (field, value) in variants {
        let mut event = base.clone();
        event[field] = value;
        same_body(&event.to_string());
    }
}

#[test]
fn strings_that_need_escaping_in_every_field() {
    for odd in ODD {
        let event = json!({
            "level": odd, "auditID": format!("a{odd}"), "stage": format!("s{odd}"), "requestURI": odd, "verb": odd,
            "user": {"username": odd, "uid": odd, "groups": [odd, odd], "extra": {*odd: [odd]}, *odd: odd},
            "impersonatedUser": {"username": odd, *odd: [odd]},
            "sourceIPs": [odd], "userAgent": odd,
            "objectRef": {"resource": odd, "namespace": odd, "name": odd, "uid": odd, "apiGroup": odd,
                "apiVersion": odd, "resourceVersion": odd, "subresource": odd, *odd: {"k": odd}},
            "responseStatus": {"code": 500, "status": odd, "reason": odd, "message": odd, *odd: odd},
            "requestObject": {"kind": odd}, "responseObject": [odd],
            "requestReceivedTimestamp": "2026-11-09T06:14:42.535854Z",
            "stageTimestamp": "2026-11-09T06:14:42.541203Z",
            "annotations": {*odd: odd, "authorization.k8s.io/reason": odd},
            "unknownAtTop": odd,
        });
        same_body(&event.to_string());
    }
    // Escapes as sent (`\u` forms) rather than as serde_json writes them.
    same_body(
        r#"{"auditID":"\u0041\"\/\u2028\ud83d\ude00","stage":"x","stageTimestamp":"2026-11-09T06:14:42Z","user":{"username":"\t\b\f"},"annotations":{"\u002e":"\u0000"}}"#,
    );
}

#[test]
fn flags_and_original_times() {
    let with = |stage: &str, received: &str| {
        json!({"auditID": "a", "stage": "s", "stageTimestamp": stage, "requestReceivedTimestamp": received,
            "objectRef": {"resource": "secrets"},
            "requestObject": {"kind": "Secret", "data": {"k": "djE="}}})
        .to_string()
    };
    let deep = format!("{}1{}", "[".repeat(1000), "]".repeat(1000));
    for (stage, received) in [
        ("2026-11-09T06:14:42Z", "2026-11-09T06:14:41Z"),
        ("2026-11-09t06:14:42z", "2026-11-09 06:14:41Z"),
        ("9999-12-31T23:59:59Z", "2026-11-09T06:14:41Z"),
        ("9999-12-31T23:59:59Z", "0001-01-01T00:00:00Z"),
        ("2016-12-31T23:59:60Z", "0001-01-01T00:00:00Z"),
    ] {
        same_body(&with(stage, received));
    }
    // Redacted whole, flattened to text: `kube_log_gateway.flags` with no `original`.
    let secret = format!(
        r#"{{"auditID":"s","stage":"s","stageTimestamp":"2026-11-09T06:14:42Z","objectRef":{{"resource":"secrets"}},"requestObject":{}{{"x":1}}{},"responseObject":{deep},"future":{deep}}}"#,
        r#"{"x":"#.repeat(200),
        "}".repeat(200)
    );
    same_body(&secret);
}

#[test]
fn hostile_test_inputs() {
    let event = |id: &str| {
        json!({"level": "Metadata", "auditID": id, "stage": "ResponseComplete",
            "requestURI": "/api/v1/namespaces/default/pods", "verb": "list",
            "user": {"username": "alice", "groups": ["devs"]}, "sourceIPs": ["10.0.0.1"],
            "objectRef": {"resource": "pods", "namespace": "default", "apiVersion": "v1"},
            "responseStatus": {"metadata": {}, "code": 200},
            "requestReceivedTimestamp": "2026-11-09T06:00:00.000001Z",
            "stageTimestamp": "2026-11-09T06:00:01.000002Z",
            "annotations": {"authorization.k8s.io/decision": "allow"}})
    };
    let mut future = event("future");
    future["futureField"] = json!({"a": [1, 2]});
    future["objectRef"]["newRefField"] = json!("x");
    future["user"]["newUserField"] = json!(true);
    let mut keys = event("keys");
    keys["annotations"] = json!({"": "empty", ".": "dot", "..": "dots", "_": "underscore", " ": "blank",
        "\u{1f}": "unit separator", "a.b": "dotted", "a_b": "plain", "authorization.k8s.io/decision": "allow"});
    keys["user"]["extra"] = json!({"": ["e"], ".": ["d"], "authentication.kubernetes.io/credential-id": ["X"]});
    keys["impersonatedUser"] = json!({"username": "bob", "extra": {"...": ["i"]}});
    keys[""] = json!(1);
    keys["new.field"] = json!(2);
    let mut long = event("long-uri");
    long["requestURI"] = json!("\u{20AC}".repeat(10_923));
    let mut many = event("many-keys");
    for i in 0..600 {
        many["annotations"][format!("webhook.example.com/key-{i:03}")] = json!(format!("v{i}"));
    }
    for e in [future, keys, long, many] {
        same_body(&e.to_string());
    }
}

/// Events put together from random parts: fields present or not, strings
/// from [`ODD`], unknown fields here and there.
#[test]
fn generated_events() {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move |n: usize| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x % n as u64) as usize
    };
    for _ in 0..2000 {
        let pick = |next: &mut dyn FnMut(usize) -> usize| ODD[next(ODD.len())];
        let mut e = json!({"auditID": format!("a{}", pick(&mut next)), "stage": format!("s{}", pick(&mut next)),
            "stageTimestamp": "2026-11-09T06:14:42.541203Z"});
        let object = |next: &mut dyn FnMut(usize) -> usize, keys: &[&str]| {
            let mut o = json!({});
            for k in keys {
                if next(2) == 0 {
                    o[*k] = json!(pick(next));
                }
            }
            if next(4) == 0 {
                o[pick(next)] = json!({"n": next(1000)});
            }
            o
        };
        for k in ["level", "requestURI", "verb", "userAgent", "requestReceivedTimestamp"] {
            if next(2) == 0 {
                e[k] = if k == "requestReceivedTimestamp" {
                    json!("2026-11-09T06:14:42Z")
                } else {
                    json!(pick(&mut next))
                };
            }
        }
        if next(3) > 0 {
            e["user"] = object(&mut next, &["username", "uid"]);
            if next(2) == 0 {
                e["user"]["groups"] = json!((0..next(3)).map(|_| pick(&mut next)).collect::<Vec<_>>());
            }
            if next(2) == 0 {
                e["user"]["extra"] = json!({pick(&mut next): [pick(&mut next)], pick(&mut next): []});
            }
        }
        if next(4) == 0 {
            e["impersonatedUser"] = object(&mut next, &["username", "uid"]);
        }
        if next(2) == 0 {
            let ip = ["10.1.2.3", "fe80::1", "x", ""][next(4)];
            e["sourceIPs"] = json!([ip]);
        }
        if next(2) == 0 {
            e["objectRef"] = object(
                &mut next,
                &["resource", "namespace", "name", "uid", "apiGroup", "apiVersion", "resourceVersion", "subresource"],
            );
        }
        if next(2) == 0 {
            e["responseStatus"] = object(&mut next, &["status", "reason", "message"]);
            if next(2) == 0 {
                e["responseStatus"]["code"] = json!(next(600));
            }
            if next(2) == 0 {
                e["responseStatus"]["metadata"] = json!({});
            }
        }
        if next(3) == 0 {
            e["requestObject"] = json!({"kind": "Pod", "spec": {"n": [1, 2, 3]}});
        }
        let decision = ["allow", "forbid"][next(2)];
        if next(2) == 0 {
            e["annotations"] = json!({pick(&mut next): pick(&mut next), "authorization.k8s.io/decision": decision});
        }
        if next(4) == 0 {
            e[pick(&mut next)] = json!([pick(&mut next)]);
        }
        same_body(&e.to_string());
    }
}
