//! The embedded objects of an event (request and response bodies, unknown
//! fields): Secret values redacted, objects too deep for Elasticsearch kept
//! as text, and bodies the body mapping cannot take moved aside unindexed.

use serde_json::Value;

use super::document_bodies::{self, REQUEST_BODY, RESPONSE_BODY};
use super::document_shape::OriginalValues;
use super::event::{AuditEvent, RawObject};
use super::secrets;

pub(super) fn looks_like_secret(text: &str) -> bool {
    text.contains("\"secrets\"") || text.contains("\"Secret\"") || text.contains("\"SecretList\"")
}

/// Redacts Secret values in the embedded objects. An object that has to be
/// redacted but cannot be parsed (serde_json stops at 128 levels) is replaced
/// whole by `"[REDACTED]"`; returns whether that happened.
pub(super) fn redact_event(event: &mut AuditEvent<'_>) -> bool {
    let is_secret_resource = event
        .object_ref
        .as_ref()
        .is_some_and(|r| r.resource.as_deref() == Some("secrets") && r.api_group.as_deref().unwrap_or("").is_empty());
    let mut unparsable = false;
    for object in [&mut event.request_object, &mut event.response_object].into_iter().flatten() {
        if !is_secret_resource && !looks_like_secret(object.get()) {
            continue;
        }
        match serde_json::from_str::<Value>(object.get()) {
            Ok(mut v) => {
                if secrets::redact(&mut v) {
                    *object = RawObject::owned(v.to_string());
                }
            }
            Err(_) => {
                *object = RawObject::owned(format!("\"{}\"", secrets::REDACTED));
                unparsable = true;
            }
        }
    }
    unparsable
}

/// Elasticsearch refuses a document nested deeper than 1000 levels; the event
/// itself takes up to 4 (`kubernetes.audit.objectRef.<field>`).
pub const MAX_OBJECT_DEPTH: usize = 990;

/// Replaces every raw value (embedded objects, unknown fields) nested deeper
/// than [`MAX_OBJECT_DEPTH`] by its JSON text as a string: stored whole, never
/// parsed by Elasticsearch. Returns whether any was.
pub(super) fn flatten_deep_objects(event: &mut AuditEvent<'_>) -> bool {
    let mut changed = false;
    let mut fix = |object: &mut RawObject<'_>| {
        if nests_deeper_than(object.get(), MAX_OBJECT_DEPTH) {
            let text = serde_json::to_string(object.get()).expect("a string serializes");
            *object = RawObject::owned(text);
            changed = true;
        }
    };
    for object in [&mut event.request_object, &mut event.response_object].into_iter().flatten() {
        fix(object);
    }
    if let Some(status) = &mut event.response_status {
        for object in [&mut status.metadata, &mut status.details].into_iter().flatten() {
            fix(object);
        }
        status.unknown.0.iter_mut().for_each(|(_, v)| fix(v));
    }
    let users = std::iter::once(&mut event.user).chain(event.impersonated_user.as_mut());
    for unknown in users.map(|u| &mut u.unknown).chain(event.object_ref.as_mut().map(|r| &mut r.unknown)) {
        unknown.0.iter_mut().for_each(|(_, v)| fix(v));
    }
    event.unknown.0.iter_mut().for_each(|(_, v)| fix(v));
    changed
}

/// Whether valid JSON `text` nests arrays/objects more than `limit` deep.
pub(super) fn nests_deeper_than(text: &str, limit: usize) -> bool {
    // Every level takes an opening and a closing bracket.
    if text.len() < 2 * (limit + 1) {
        return false;
    }
    let bytes = text.as_bytes();
    let (mut depth, mut i) = (0usize, 0);
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                // Skip the string: to the next unescaped quote.
                i += 1;
                while let Some(j) = memchr::memchr2(b'"', b'\\', &bytes[i..]) {
                    i += j;
                    if bytes[i] == b'\\' {
                        i += 2;
                    } else {
                        break;
                    }
                }
            }
            b'{' | b'[' => {
                depth += 1;
                if depth > limit {
                    return true;
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    false
}

/// Moves a body the body mapping cannot take (docs/fields.md, "Request and
/// response bodies") to `kube_log_gateway.original`, unindexed, whole: a body
/// made text above, a redacted placeholder, or an object with a value on a
/// mapped path that Elasticsearch would refuse there. Returns the flags.
pub(super) fn move_unfit_bodies<'a>(
    event: &mut AuditEvent<'a>,
    original: &mut OriginalValues<'a>,
) -> Vec<&'static str> {
    let mut flags = Vec::new();
    if event.request_object.as_ref().is_some_and(|o| !document_bodies::fits(o.get(), &REQUEST_BODY)) {
        original.request_object = event.request_object.take();
        flags.push("request_object_unindexed");
    }
    if event.response_object.as_ref().is_some_and(|o| !document_bodies::fits(o.get(), &RESPONSE_BODY)) {
        original.response_object = event.response_object.take();
        flags.push("response_object_unindexed");
    }
    flags
}
