//! `audit.k8s.io/v1` events, parsed at the edge into typed values.
//!
//! Strings borrow from the request body where they can (`Cow`), and the embedded
//! request/response objects stay raw JSON (`RawValue`): they are stored, not
//! indexed, so there is no reason to build a tree for them — except for Secrets,
//! whose values are redacted.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// One audit event, with the field names kube-apiserver uses. Only `auditID`,
/// `stage` and `stageTimestamp` are required; the rest may be absent depending
/// on the level and stage.
#[derive(Debug, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditEvent<'a> {
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub level: Option<Cow<'a, str>>,
    #[serde(borrow, rename = "auditID")]
    pub audit_id: Cow<'a, str>,
    #[serde(borrow)]
    pub stage: Cow<'a, str>,
    #[serde(borrow, default, rename = "requestURI", skip_serializing_if = "Option::is_none")]
    pub request_uri: Option<Cow<'a, str>>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub verb: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub user: UserInfo<'a>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub impersonated_user: Option<UserInfo<'a>>,
    #[serde(borrow, default, rename = "sourceIPs", skip_serializing_if = "Vec::is_empty")]
    pub source_ips: Vec<Cow<'a, str>>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<Cow<'a, str>>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub object_ref: Option<ObjectRef<'a>>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub response_status: Option<ResponseStatus<'a>>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub request_object: Option<RawObject<'a>>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub response_object: Option<RawObject<'a>>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub request_received_timestamp: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub stage_timestamp: Cow<'a, str>,
    #[serde(borrow, default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<Cow<'a, str>, Cow<'a, str>>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
pub struct UserInfo<'a> {
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub username: Option<Cow<'a, str>>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<Cow<'a, str>>,
    #[serde(borrow, default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<Cow<'a, str>>,
    #[serde(borrow, default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: BTreeMap<Cow<'a, str>, Vec<Cow<'a, str>>>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectRef<'a> {
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<Cow<'a, str>>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<Cow<'a, str>>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub name: Option<Cow<'a, str>>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<Cow<'a, str>>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub api_group: Option<Cow<'a, str>>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<Cow<'a, str>>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub resource_version: Option<Cow<'a, str>>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub subresource: Option<Cow<'a, str>>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
pub struct ResponseStatus<'a> {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<i64>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Cow<'a, str>>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<Cow<'a, str>>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub message: Option<Cow<'a, str>>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<RawObject<'a>>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub details: Option<RawObject<'a>>,
}

/// An embedded Kubernetes object kept as raw JSON: borrowed from the request,
/// or owned after redaction.
#[derive(Debug)]
pub enum RawObject<'a> {
    Borrowed(&'a RawValue),
    Owned(Box<RawValue>),
}

impl RawObject<'_> {
    pub fn get(&self) -> &str {
        match self {
            RawObject::Borrowed(r) => r.get(),
            RawObject::Owned(r) => r.get(),
        }
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for RawObject<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        <&'a RawValue>::deserialize(d).map(RawObject::Borrowed)
    }
}

/// Written verbatim by sonic-rs, which the normalizer serializes documents
/// with: a struct with sonic-rs's raw-value name is its documented way to embed
/// raw JSON. (serde_json would write it as an object; nothing serializes events
/// with serde_json.)
impl Serialize for RawObject<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        const SONIC_RAW: &str = "$sonic_rs::LazyValue";
        let mut st = s.serialize_struct(SONIC_RAW, 1)?;
        st.serialize_field(SONIC_RAW, self.get())?;
        st.end()
    }
}

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
        assert_eq!(e.object_ref.unwrap().resource.as_deref(), Some("pods"));
        assert_eq!(e.response_status.unwrap().code, Some(200));
        assert_eq!(e.annotations.len(), 2);
    }
}
