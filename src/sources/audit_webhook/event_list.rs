//! Webhook request bodies → events: an `EventList` (batch mode), a single
//! `Event` (blocking modes) or a JSON array, split and parsed into
//! [`AuditEvent`]s, with an error that says what is wrong and where.

use std::borrow::Cow;
use std::fmt;

use serde::de::{SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;

use super::event::AuditEvent;

/// Why a request body could not be split into events.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PayloadError {
    #[error("request body is not valid JSON: {message} at line {line}, column {column}")]
    Json { message: String, line: usize, column: usize },
    #[error("request body must be an EventList, an Event or a JSON array of events; got {0}")]
    Shape(&'static str),
    #[error("EventList has no `items` array")]
    NoItems,
}

impl PayloadError {
    fn json(e: serde_json::Error) -> Self {
        let message = e.to_string();
        // serde_json appends " at line L column C"; we report them as fields.
        let message = match message.rfind(" at line ") {
            Some(i) => message[..i].to_string(),
            None => message,
        };
        PayloadError::Json { message, line: e.line(), column: e.column() }
    }
}

/// Splits a webhook body into its events, each still raw: an `EventList`
/// (batch mode), a single `Event` (blocking modes) or a JSON array of events.
/// The whole body is validated as JSON here, so a malformed body is refused
/// before anything is written.
pub fn split_items(body: &[u8]) -> Result<Vec<&RawValue>, PayloadError> {
    let first = body.iter().find(|b| !b.is_ascii_whitespace()).copied();
    match first {
        Some(b'[') => serde_json::from_slice::<Vec<&RawValue>>(body).map_err(PayloadError::json),
        Some(b'{') => {
            #[derive(Deserialize)]
            struct Probe<'a> {
                #[serde(default, borrow)]
                kind: Option<Cow<'a, str>>,
                #[serde(default, borrow)]
                items: Option<Vec<&'a RawValue>>,
            }
            let probe: Probe = serde_json::from_slice(body).map_err(PayloadError::json)?;
            match (probe.kind.as_deref(), probe.items) {
                (_, Some(items)) => Ok(items),
                (Some("EventList"), None) => Err(PayloadError::NoItems),
                (_, None) => Ok(vec![serde_json::from_slice::<&RawValue>(body).map_err(PayloadError::json)?]),
            }
        }
        None => Err(PayloadError::Shape("an empty body")),
        Some(_) => {
            // Let serde_json say where and what: a bare string, number, or garbage.
            match serde_json::from_slice::<&RawValue>(body) {
                Err(e) => Err(PayloadError::json(e)),
                Ok(_) => Err(PayloadError::Shape("a JSON scalar")),
            }
        }
    }
}

/// The events of an `EventList` body parsed in one pass — the body validated
/// and every event read into its typed form while the bytes are read once —
/// or `None` when anything about it is not the usual case: not an `EventList`
/// with `items`, an item that is not a valid event, malformed JSON. The caller
/// then takes the two-pass path ([`split_items`], then [`parse_event`] per
/// item), which words every error and keeps every refused item as before; this
/// only saves the second scan of every byte when there is nothing to refuse.
///
/// It accepts exactly what the two-pass path accepts without a refusal: the
/// same envelope (`kind`, with the same type; duplicates of either field are
/// an error in both), the same event parser, the same checks after it. Items
/// nest two levels deeper here than when parsed alone, so serde_json's depth
/// limit can only send more bodies to the two-pass path, never fewer.
pub fn parse_event_list(body: &[u8]) -> Option<Vec<AuditEvent<'_>>> {
    #[derive(Deserialize)]
    struct List<'a> {
        #[serde(default, borrow)]
        #[allow(dead_code)] // read for the same checks as `split_items`
        kind: Option<Cow<'a, str>>,
        #[serde(borrow)]
        items: Events<'a>,
    }
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return None;
    }
    // One UTF-8 check of the whole body is cheaper than serde_json's check of
    // every borrowed string (`from_slice`); invalid UTF-8 goes the two-pass
    // way, which says where it is.
    let text = std::str::from_utf8(body).ok()?;
    ITEMS_CAPACITY.set(BATCH_EVENTS.min(body.len() / MIN_EVENT_BYTES));
    let list: List = serde_json::from_str(text).ok()?;
    let events = list.items.0;
    events.iter().all(|e| !e.audit_id.is_empty() && !e.stage.is_empty()).then_some(events)
}

/// `items` read into a `Vec` sized for a full kube-apiserver batch
/// (`--audit-webhook-batch-max-size`, 400 by default) from the start: serde's
/// own `Vec` grows by doubling, moving every event read so far each time.
struct Events<'a>(Vec<AuditEvent<'a>>);

/// kube-apiserver's default `--audit-webhook-batch-max-size`.
const BATCH_EVENTS: usize = 400;

/// Fewer bytes than any real audit event: a small body does not get room for
/// 400 events (≈ 1 KB each) it cannot hold. Too small a guess only costs a
/// reallocation.
const MIN_EVENT_BYTES: usize = 256;

thread_local! {
    /// The capacity [`Events`] starts with, set by [`parse_event_list`] from
    /// the body's length just before it parses (serde gives a visitor no way
    /// to be handed it; the parse runs on this thread, start to end).
    static ITEMS_CAPACITY: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

impl<'de: 'a, 'a> Deserialize<'de> for Events<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Events<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an array of audit events")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut events = Vec::with_capacity(ITEMS_CAPACITY.get());
                while let Some(event) = seq.next_element()? {
                    events.push(event);
                }
                Ok(Events(events))
            }
        }
        d.deserialize_seq(V)
    }
}

/// Parses one event. The error names the missing or malformed field.
pub fn parse_event(raw: &RawValue) -> Result<AuditEvent<'_>, String> {
    let text = raw.get();
    if !text.starts_with('{') {
        return Err("an event must be a JSON object".into());
    }
    let event: AuditEvent = serde_json::from_str(text).map_err(|e| {
        let m = e.to_string();
        match m.rfind(" at line ") {
            Some(i) => m[..i].to_string(),
            None => m,
        }
    })?;
    if event.audit_id.is_empty() {
        return Err("field `auditID` is empty".into());
    }
    if event.stage.is_empty() {
        return Err("field `stage` is empty".into());
    }
    Ok(event)
}

#[cfg(test)]
mod tests {
    use super::*;

    const EVENT: &str = r#"{"level":"Metadata","auditID":"a1","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/default/pods?limit=500","verb":"list","user":{"username":"admin","groups":["system:masters","system:authenticated"]},"sourceIPs":["10.0.0.1"],"userAgent":"kubectl/v1.31.0","objectRef":{"resource":"pods","namespace":"default","apiVersion":"v1"},"responseStatus":{"metadata":{},"code":200},"requestReceivedTimestamp":"2026-11-09T06:14:42.535854Z","stageTimestamp":"2026-11-09T06:14:42.541203Z","annotations":{"authorization.k8s.io/decision":"allow","authorization.k8s.io/reason":""}}"#;

    #[test]
    fn event_list_single_event_and_array() {
        let list = format!(
            r#"{{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{{}},"items":[{EVENT},{EVENT}]}}"#
        );
        assert_eq!(split_items(list.as_bytes()).unwrap().len(), 2);
        let single = EVENT.replace("{\"level\"", "{\"kind\":\"Event\",\"apiVersion\":\"audit.k8s.io/v1\",\"level\"");
        let items = split_items(single.as_bytes()).unwrap();
        assert_eq!(items.len(), 1);
        assert_eq!(parse_event(items[0]).unwrap().audit_id, "a1");
        let array = format!("[{EVENT}]");
        assert_eq!(split_items(array.as_bytes()).unwrap().len(), 1);
    }

    #[test]
    fn malformed_json_names_line_and_column() {
        let err = split_items(b"{\"kind\":\"EventList\",\n\"items\":[{\"auditID\": }]}").unwrap_err();
        match err {
            PayloadError::Json { line, column, message } => {
                assert_eq!(line, 2);
                assert_eq!(column, 22);
                assert_eq!(message, "expected value");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(split_items(b"  ").unwrap_err(), PayloadError::Shape("an empty body"));
        assert_eq!(split_items(b"42").unwrap_err(), PayloadError::Shape("a JSON scalar"));
        assert_eq!(split_items(br#"{"kind":"EventList"}"#).unwrap_err(), PayloadError::NoItems);
    }

    #[test]
    fn invalid_utf8_names_line_and_column() {
        let mut body = format!("{{\"kind\":\"EventList\",\n\"items\":[{EVENT}]}}").into_bytes();
        // The bad byte is the `d` of "admin", on line 2.
        let bad = body.windows(5).position(|w| w == b"admin").unwrap() + 1;
        body[bad] = 0xff;
        let newline = body.iter().position(|&b| b == b'\n').unwrap();
        match split_items(&body).unwrap_err() {
            PayloadError::Json { line, column, message } => {
                assert_eq!(message, "invalid unicode code point");
                assert_eq!(line, 2);
                assert_eq!(column, bad - newline);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn missing_required_fields_are_named() {
        for (field, json) in [
            ("auditID", r#"{"stage":"ResponseComplete","stageTimestamp":"2026-01-01T00:00:00Z"}"#),
            ("stage", r#"{"auditID":"x","stageTimestamp":"2026-01-01T00:00:00Z"}"#),
            ("stageTimestamp", r#"{"auditID":"x","stage":"ResponseComplete"}"#),
        ] {
            let raw: &RawValue = serde_json::from_str(json).unwrap();
            let err = parse_event(raw).unwrap_err();
            assert_eq!(err, format!("missing field `{field}`"));
        }
        let raw: &RawValue = serde_json::from_str("[1]").unwrap();
        assert_eq!(parse_event(raw).unwrap_err(), "an event must be a JSON object");
    }

    #[test]
    fn fields_borrow_from_the_body() {
        let raw: &RawValue = serde_json::from_str(EVENT).unwrap();
        let e = parse_event(raw).unwrap();
        assert!(matches!(e.audit_id, Cow::Borrowed(_)));
        assert!(matches!(e.verb, Some(Cow::Borrowed(_))));
        assert!(matches!(e.user.groups[0], Cow::Borrowed(_)));
        assert!(e.annotations.keys().all(|k| matches!(k, Cow::Borrowed(_))));
        assert_eq!(e.object_ref.unwrap().resource.as_deref(), Some("pods"));
        assert_eq!(e.response_status.unwrap().code, Some(200));
        assert_eq!(e.annotations.len(), 2);
    }

    #[test]
    fn one_pass_reads_what_two_passes_read_or_leaves_it_to_them() {
        let list = crate::sample::event_list("t", 20, 3, 256);
        let events = parse_event_list(list.as_bytes()).expect("a plain EventList takes the one pass");
        let items = split_items(list.as_bytes()).unwrap();
        assert_eq!(events.len(), items.len());
        for (event, raw) in events.iter().zip(&items) {
            assert_eq!(format!("{event:?}"), format!("{:?}", parse_event(raw).unwrap()));
        }
        assert!(matches!(events[0].audit_id, Cow::Borrowed(_)));
        // Everything else goes the two-pass way, which words errors and keeps
        // refused items.
        let wrap = |items: &str| format!(r#"{{"kind":"EventList","items":[{items}]}}"#);
        for body in [
            EVENT.to_string(),
            format!("[{EVENT}]"),
            r#"{"kind":"EventList"}"#.to_string(),
            r#"{"kind":"EventList","items":null}"#.to_string(),
            format!(r#"{{"kind":"EventList","kind":"EventList","items":[{EVENT}]}}"#),
            format!(r#"{{"kind":7,"items":[{EVENT}]}}"#),
            wrap(&format!("{EVENT},[1]")),
            wrap(&format!(r#"{EVENT},{{"auditID":"x","stage":"ResponseComplete"}}"#)),
            wrap(&EVENT.replace(r#""auditID":"a1""#, r#""auditID":"""#)),
            wrap(&EVENT.replace(r#""stage":"ResponseComplete""#, r#""stage":"""#)),
            wrap(EVENT) + "x",
        ] {
            assert!(parse_event_list(body.as_bytes()).is_none(), "{body}");
        }
        let mut bad_utf8 = wrap(EVENT).into_bytes();
        let at = bad_utf8.windows(5).position(|w| w == b"admin").unwrap() + 1;
        bad_utf8[at] = 0xff;
        assert!(parse_event_list(&bad_utf8).is_none());
        assert_eq!(parse_event_list(wrap(&format!("{EVENT},{EVENT}")).as_bytes()).unwrap().len(), 2);
    }
}
