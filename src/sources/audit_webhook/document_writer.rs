//! The audit document's body written by hand into the spool entry.
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
//! [`AuditDocument`] (`document_shape`) through `document::json::write` (the
//! tests in `document_writer_tests` compare both over every event shape the
//! tests know), which stays as the test oracle: users' documents,
//! docs/fields.md and the integration tests' comparisons depend on them. A
//! field added to the document or the event must be added here, in the order
//! of the struct; the oracle test fails until it is.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::net::IpAddr;

use super::document_shape::{AuditDocument, GatewayFields, DATASET};
use super::event::{AuditEvent, ObjectRef, RawObject, ResponseStatus, Unknown, UserInfo};
use crate::document::json::{write_str, Object};

/// Appends the JSON of `doc` to `out`.
pub(super) fn write_document(out: &mut Vec<u8>, doc: &AuditDocument<'_, '_>) {
    out.extend_from_slice(b"{\"@timestamp\":");
    write_str(out, doc.timestamp);
    // The dataset and `event.kind` are the same for every audit document.
    debug_assert_eq!((doc.data_stream.dataset(), doc.event.dataset, doc.event.kind), (DATASET, DATASET, "event"));
    out.extend_from_slice(b",\"data_stream\":{\"type\":\"logs\",\"dataset\":\"kubernetes.audit_logs\",\"namespace\":");
    write_str(out, doc.data_stream.namespace());
    out.extend_from_slice(b"},\"event\":{\"dataset\":\"kubernetes.audit_logs\",\"kind\":\"event\",\"id\":");
    let event = &doc.event;
    write_str(out, event.id);
    if let Some(action) = event.action {
        out.extend_from_slice(b",\"action\":");
        write_str(out, action);
    }
    out.extend_from_slice(b",\"outcome\":");
    write_str(out, event.outcome);
    out.extend_from_slice(b"},\"orchestrator\":{\"type\":\"kubernetes\",\"cluster\":{\"name\":");
    let orchestrator = &doc.orchestrator;
    write_str(out, orchestrator.cluster.name);
    out.push(b'}');
    if let Some(namespace) = orchestrator.namespace {
        out.extend_from_slice(b",\"namespace\":");
        write_str(out, namespace);
    }
    if let Some(resource) = &orchestrator.resource {
        out.extend_from_slice(b",\"resource\":");
        let mut o = Object::open(out);
        o.opt_str(b"\"type\":", resource.kind);
        o.opt_str(b"\"name\":", resource.name);
        o.close();
    }
    if let Some(api_version) = orchestrator.api_version {
        out.extend_from_slice(b",\"api_version\":");
        write_str(out, api_version);
    }
    out.extend_from_slice(b"},\"host\":{\"name\":");
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
        out.extend_from_slice(b",\"source\":{\"ip\":");
        write_ips(out, source.ip);
        out.push(b'}');
    }
    if let Some(client) = &doc.client {
        out.extend_from_slice(b",\"client\":{\"ip\":");
        write_ip(out, client.ip);
        out.push(b'}');
    }
    if let Some(related) = &doc.related {
        out.extend_from_slice(b",\"related\":");
        let mut o = Object::open(out);
        if !related.user.is_empty() {
            let out = o.key(b"\"user\":");
            out.push(b'[');
            for (i, user) in related.user.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_str(out, user);
            }
            out.push(b']');
        }
        if !related.ip.is_empty() {
            write_ips(o.key(b"\"ip\":"), related.ip);
        }
        o.close();
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

/// A JSON array of addresses.
fn write_ips(out: &mut Vec<u8>, ips: &[IpAddr]) {
    out.push(b'[');
    for (i, ip) in ips.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_ip(out, *ip);
    }
    out.push(b']');
}

/// An address as a JSON string. Its text never needs escaping. IPv4 (nearly
/// every event's) by hand: `write!` through `fmt` cost ≈ 1,000 instructions.
fn write_ip(out: &mut Vec<u8>, ip: IpAddr) {
    out.push(b'"');
    match ip {
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
    out.push(b'"');
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

/// `kube_log_gateway`: the flags, and the original values when there are any.
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
        opt_raw(&mut o, b"\"requestObject\":", original.request_object.as_ref());
        opt_raw(&mut o, b"\"responseObject\":", original.response_object.as_ref());
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
#[path = "document_writer_tests.rs"]
mod tests;
