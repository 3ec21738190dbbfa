//! The audit document's shape, and its body written by hand into the spool entry.
//!
//! serde's derive turns every struct with a `#[serde(flatten)]` field
//! (`AuditEvent`, `UserInfo`, `ObjectRef`, `ResponseStatus`: their unknown
//! fields) into a map, and a map's keys go through the string escaper one by
//! one, for every document. Here the constant keys are byte literals, with
//! their quotes, colon and comma; only values (and the keys of annotations,
//! `user.extra` and unknown fields) go through [`write_str`], sonic-rs's SIMD
//! escaper, and raw JSON (embedded objects, unknown fields) is copied as is.
//!
//! The bytes are exactly those of the serde serialization of
//! [`AuditDocument`] through `document::json::write` (the unit tests below
//! compare both over every event shape the tests know), which stays as the
//! test oracle: users' documents, docs/fields.md and the integration tests'
//! comparisons depend on them. A field added to the document or the event
//! must be added here, in the order of the struct; the oracle test fails
//! until it is.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::io::Write as _;
use std::net::IpAddr;

use serde::Serialize;

use super::event::{AuditEvent, ObjectRef, RawObject, ResponseStatus, Unknown, UserInfo};
use crate::document::ecs::{Named, Orchestrator};
use crate::document::json::{write_str, Object};

/// The document of one event, as references into the event and the
/// normalizer. [`write_document`] writes it; the serde derive is the
/// oracle its tests compare with (and the shape docs/fields.md describes).
#[derive(Serialize)]
pub(super) struct AuditDocument<'e, 'a> {
    #[serde(rename = "@timestamp")]
    pub(super) timestamp: &'e str,
    pub(super) event: EventFields<'e>,
    /// `orchestrator`: Kubernetes, this cluster.
    #[serde(rename = "orchestrator", serialize_with = "orchestrator")]
    pub(super) cluster: &'e str,
    pub(super) host: Named<'e>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) user: Option<UserFields<'e>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) source: Option<SourceFields>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) user_agent: Option<Original<'e>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) url: Option<Original<'e>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) http: Option<Http>,
    pub(super) kubernetes: Kubernetes<'e, 'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) kube_log_gateway: Option<GatewayFields<'e, 'a>>,
}

fn orchestrator<S: serde::Serializer>(cluster: &&str, s: S) -> Result<S::Ok, S::Error> {
    Orchestrator::kubernetes(cluster).serialize(s)
}

#[derive(Serialize)]
pub(super) struct EventFields<'e> {
    pub(super) dataset: &'static str,
    pub(super) kind: &'static str,
    pub(super) id: &'e str,
    pub(super) ingested: &'e str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) action: Option<&'e str>,
    pub(super) outcome: &'static str,
}

#[derive(Serialize)]
pub(super) struct UserFields<'e> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) name: Option<&'e str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) id: Option<&'e str>,
}

#[derive(Serialize)]
pub(super) struct SourceFields {
    pub(super) ip: IpAddr,
}

#[derive(Serialize)]
pub(super) struct Original<'e> {
    pub(super) original: &'e str,
}

#[derive(Serialize)]
pub(super) struct Http {
    pub(super) response: HttpResponse,
}

#[derive(Serialize)]
pub(super) struct HttpResponse {
    pub(super) status_code: i64,
}

#[derive(Serialize)]
pub(super) struct Kubernetes<'e, 'a> {
    pub(super) node: Named<'e>,
    pub(super) audit: &'e AuditEvent<'a>,
}

/// The original timestamps the gateway had to rewrite or drop.
#[derive(Default, Serialize)]
pub(super) struct OriginalTimes<'a> {
    #[serde(rename = "stageTimestamp", skip_serializing_if = "Option::is_none")]
    pub(super) stage_timestamp: Option<Cow<'a, str>>,
    #[serde(rename = "requestReceivedTimestamp", skip_serializing_if = "Option::is_none")]
    pub(super) request_received_timestamp: Option<Cow<'a, str>>,
}

#[derive(Serialize)]
pub(super) struct GatewayFields<'e, 'a> {
    pub(super) flags: &'e [&'static str],
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) original: Option<&'e OriginalTimes<'a>>,
}

/// Appends the JSON of `doc` to `out`.
pub(super) fn write_document(out: &mut Vec<u8>, doc: &AuditDocument<'_, '_>) {
    out.extend_from_slice(b"{\"@timestamp\":");
    write_str(out, doc.timestamp);
    let event = &doc.event;
    // `dataset` and `kind` are the same for every audit document.
    debug_assert_eq!((event.dataset, event.kind), ("kubernetes.audit", "event"));
    out.extend_from_slice(b",\"event\":{\"dataset\":\"kubernetes.audit\",\"kind\":\"event\",\"id\":");
    write_str(out, event.id);
    out.extend_from_slice(b",\"ingested\":");
    write_str(out, event.ingested);
    if let Some(action) = event.action {
        out.extend_from_slice(b",\"action\":");
        write_str(out, action);
    }
    out.extend_from_slice(b",\"outcome\":");
    write_str(out, event.outcome);
    out.extend_from_slice(b"},\"orchestrator\":{\"type\":\"kubernetes\",\"cluster\":{\"name\":");
    write_str(out, doc.cluster);
    out.extend_from_slice(b"}},\"host\":{\"name\":");
    write_str(out, doc.host.name);
    out.push(b'}');
    if let Some(user) = &doc.user {
        out.extend_from_slice(b",\"user\":");
        let mut o = Object::open(out);
        o.opt_str(b"\"name\":", user.name);
        o.opt_str(b"\"id\":", user.id);
        o.close();
    }
    if let Some(source) = &doc.source {
        out.extend_from_slice(b",\"source\":{\"ip\":\"");
        // An address's text never needs escaping. IPv4 (nearly every
        // event's) by hand: `write!` through `fmt` cost ≈ 1,000 instructions.
        match source.ip {
            IpAddr::V4(v4) => {
                for (i, octet) in v4.octets().into_iter().enumerate() {
                    if i > 0 {
                        out.push(b'.');
                    }
                    out.extend_from_slice(itoa::Buffer::new().format(octet).as_bytes());
                }
            }
            IpAddr::V6(v6) => write!(out, "{v6}").expect("a Vec takes every write"),
        }
        out.extend_from_slice(b"\"}");
    }
    if let Some(agent) = &doc.user_agent {
        out.extend_from_slice(b",\"user_agent\":{\"original\":");
        write_str(out, agent.original);
        out.push(b'}');
    }
    if let Some(url) = &doc.url {
        out.extend_from_slice(b",\"url\":{\"original\":");
        write_str(out, url.original);
        out.push(b'}');
    }
    if let Some(http) = &doc.http {
        out.extend_from_slice(b",\"http\":{\"response\":{\"status_code\":");
        write_int(out, http.response.status_code);
        out.extend_from_slice(b"}}");
    }
    out.extend_from_slice(b",\"kubernetes\":{\"node\":{\"name\":");
    write_str(out, doc.kubernetes.node.name);
    out.extend_from_slice(b"},\"audit\":");
    write_event(out, doc.kubernetes.audit);
    out.push(b'}');
    if let Some(gateway) = &doc.kube_log_gateway {
        out.extend_from_slice(b",\"kube_log_gateway\":");
        write_gateway(out, gateway);
    }
    out.push(b'}');
}

/// `kubernetes.audit`: the event with its own field names.
fn write_event(out: &mut Vec<u8>, e: &AuditEvent<'_>) {
    let mut o = Object::open(out);
    o.opt_str(b"\"level\":", e.level.as_deref());
    o.str(b"\"auditID\":", &e.audit_id);
    o.str(b"\"stage\":", &e.stage);
    o.opt_str(b"\"requestURI\":", e.request_uri.as_deref());
    o.opt_str(b"\"verb\":", e.verb.as_deref());
    write_user(o.key(b"\"user\":"), &e.user);
    if let Some(user) = &e.impersonated_user {
        write_user(o.key(b"\"impersonatedUser\":"), user);
    }
    if !e.source_ips.is_empty() {
        write_strs(o.key(b"\"sourceIPs\":"), &e.source_ips);
    }
    o.opt_str(b"\"userAgent\":", e.user_agent.as_deref());
    if let Some(r) = &e.object_ref {
        write_object_ref(o.key(b"\"objectRef\":"), r);
    }
    if let Some(s) = &e.response_status {
        write_response_status(o.key(b"\"responseStatus\":"), s);
    }
    opt_raw(&mut o, b"\"requestObject\":", e.request_object.as_ref());
    opt_raw(&mut o, b"\"responseObject\":", e.response_object.as_ref());
    o.opt_str(b"\"requestReceivedTimestamp\":", e.request_received_timestamp.as_deref());
    o.opt_str(b"\"stageTimestamp\":", e.stage_timestamp.as_deref());
    if !e.annotations.is_empty() {
        let mut a = Object::open(o.key(b"\"annotations\":"));
        for (k, v) in &e.annotations {
            write_str(a.str_key(k), v);
        }
        a.close();
    }
    unknown(&mut o, &e.unknown);
    o.close();
}

fn write_user(out: &mut Vec<u8>, u: &UserInfo<'_>) {
    let mut o = Object::open(out);
    o.opt_str(b"\"username\":", u.username.as_deref());
    o.opt_str(b"\"uid\":", u.uid.as_deref());
    if !u.groups.is_empty() {
        write_strs(o.key(b"\"groups\":"), &u.groups);
    }
    if !u.extra.is_empty() {
        write_extra(o.key(b"\"extra\":"), &u.extra);
    }
    unknown(&mut o, &u.unknown);
    o.close();
}

fn write_extra(out: &mut Vec<u8>, extra: &BTreeMap<std::borrow::Cow<'_, str>, Vec<std::borrow::Cow<'_, str>>>) {
    let mut o = Object::open(out);
    for (k, v) in extra {
        write_strs(o.str_key(k), v);
    }
    o.close();
}

fn write_object_ref(out: &mut Vec<u8>, r: &ObjectRef<'_>) {
    let mut o = Object::open(out);
    o.opt_str(b"\"resource\":", r.resource.as_deref());
    o.opt_str(b"\"namespace\":", r.namespace.as_deref());
    o.opt_str(b"\"name\":", r.name.as_deref());
    o.opt_str(b"\"uid\":", r.uid.as_deref());
    o.opt_str(b"\"apiGroup\":", r.api_group.as_deref());
    o.opt_str(b"\"apiVersion\":", r.api_version.as_deref());
    o.opt_str(b"\"resourceVersion\":", r.resource_version.as_deref());
    o.opt_str(b"\"subresource\":", r.subresource.as_deref());
    unknown(&mut o, &r.unknown);
    o.close();
}

fn write_response_status(out: &mut Vec<u8>, s: &ResponseStatus<'_>) {
    let mut o = Object::open(out);
    if let Some(code) = s.code {
        write_int(o.key(b"\"code\":"), code);
    }
    o.opt_str(b"\"status\":", s.status.as_deref());
    o.opt_str(b"\"reason\":", s.reason.as_deref());
    o.opt_str(b"\"message\":", s.message.as_deref());
    opt_raw(&mut o, b"\"metadata\":", s.metadata.as_ref());
    opt_raw(&mut o, b"\"details\":", s.details.as_ref());
    unknown(&mut o, &s.unknown);
    o.close();
}

/// `kube_log_gateway`: the flags, and the original times when there are any.
fn write_gateway(out: &mut Vec<u8>, g: &GatewayFields<'_, '_>) {
    out.extend_from_slice(b"{\"flags\":[");
    for (i, flag) in g.flags.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_str(out, flag);
    }
    out.push(b']');
    if let Some(original) = g.original {
        out.extend_from_slice(b",\"original\":");
        let mut o = Object::open(out);
        o.opt_str(b"\"stageTimestamp\":", original.stage_timestamp.as_deref());
        o.opt_str(b"\"requestReceivedTimestamp\":", original.request_received_timestamp.as_deref());
        o.close();
    }
    out.push(b'}');
}

fn write_strs(out: &mut Vec<u8>, list: &[std::borrow::Cow<'_, str>]) {
    out.push(b'[');
    for (i, s) in list.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_str(out, s);
    }
    out.push(b']');
}

fn write_int(out: &mut Vec<u8>, n: i64) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// A raw JSON member (an embedded object), left out when there is none.
fn opt_raw(o: &mut Object<'_>, key: &[u8], value: Option<&RawObject<'_>>) {
    if let Some(value) = value {
        o.key(key).extend_from_slice(value.get().as_bytes());
    }
}

/// The fields this version does not know, after the known ones.
fn unknown(o: &mut Object<'_>, unknown: &Unknown<'_>) {
    for (k, v) in &unknown.0 {
        o.str_key(k).extend_from_slice(v.get().as_bytes());
    }
}

#[cfg(test)]
mod tests {
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
        let base =
            json!({"auditID": "a", "stage": "ResponseComplete", "stageTimestamp": "2026-11-09T06:14:42.541203Z"});
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
                    &[
                        "resource",
                        "namespace",
                        "name",
                        "uid",
                        "apiGroup",
                        "apiVersion",
                        "resourceVersion",
                        "subresource",
                    ],
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
}
