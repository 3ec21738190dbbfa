//! `audit.k8s.io/v1` events, parsed at the edge into typed values.
//!
//! Strings borrow from the request body where they can (`Cow`), and the embedded
//! request/response objects stay raw JSON (`RawValue`): they are stored, not
//! indexed, so there is no reason to build a tree for them — except for Secrets,
//! whose values are redacted.
//!
//! Fields this version does not know (a later kube-apiserver's additions) are
//! kept too, raw, in each object's [`Unknown`], and written back beside the
//! known ones: the typed parse never drops part of an event.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{Error as _, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::value::RawValue;

/// One audit event, with the field names kube-apiserver uses. Only `auditID`,
/// `stage` and `stageTimestamp` are required; the rest may be absent depending
/// on the level and stage. The event's own `kind` and `apiVersion` are dropped.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditEvent<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub level: Option<Cow<'a, str>>,
    #[serde(rename = "auditID")]
    pub audit_id: Cow<'a, str>,
    pub stage: Cow<'a, str>,
    #[serde(rename = "requestURI", skip_serializing_if = "Option::is_none")]
    pub request_uri: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verb: Option<Cow<'a, str>>,
    pub user: UserInfo<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub impersonated_user: Option<UserInfo<'a>>,
    #[serde(rename = "sourceIPs", skip_serializing_if = "Vec::is_empty")]
    pub source_ips: Vec<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object_ref: Option<ObjectRef<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_status: Option<ResponseStatus<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_object: Option<RawObject<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_object: Option<RawObject<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_received_timestamp: Option<Cow<'a, str>>,
    /// Required on input; `None` only after the normalizer dropped a time
    /// Elasticsearch cannot store (docs/fields.md, "Timestamps").
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stage_timestamp: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<Cow<'a, str>, Cow<'a, str>>,
    #[serde(flatten)]
    pub unknown: Unknown<'a>,
}

#[derive(Debug, Default, Serialize)]
pub struct UserInfo<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<Cow<'a, str>>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: BTreeMap<Cow<'a, str>, Vec<Cow<'a, str>>>,
    #[serde(flatten)]
    pub unknown: Unknown<'a>,
}

#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectRef<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_group: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_version: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource_version: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subresource: Option<Cow<'a, str>>,
    #[serde(flatten)]
    pub unknown: Unknown<'a>,
}

#[derive(Debug, Default, Serialize)]
pub struct ResponseStatus<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<RawObject<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<RawObject<'a>>,
    #[serde(flatten)]
    pub unknown: Unknown<'a>,
}

/// The fields of one object that this version does not know, in the order
/// sent, each kept as raw JSON. Serialized (flattened) after the known fields.
#[derive(Debug, Default)]
pub struct Unknown<'a>(pub Vec<(Cow<'a, str>, RawObject<'a>)>);

impl Serialize for Unknown<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (key, value) in &self.0 {
            map.serialize_entry(key, value)?;
        }
        map.end()
    }
}

/// A string that borrows from the body unless it had escapes. (serde's own
/// `Cow<str>` always allocates inside `Option`, `Vec` and maps.)
struct Str<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Str<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Str<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Str(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Str(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
                Ok(Str(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

/// A list of strings, each borrowing like [`Str`].
struct Strs<'a>(Vec<Cow<'a, str>>);

impl<'de: 'a, 'a> Deserialize<'de> for Strs<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Strs<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list of strings")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
                while let Some(Str(s)) = seq.next_element()? {
                    out.push(s);
                }
                Ok(Strs(out))
            }
        }
        d.deserialize_seq(V)
    }
}

/// A string-keyed map (annotations, `user.extra`) whose keys and values borrow
/// like [`Str`]. A repeated key keeps its last value, as serde's maps do.
struct Keyed<'a, V>(BTreeMap<Cow<'a, str>, V>);

/// A map value that borrows from the body.
trait Borrowing<'de>: Sized {
    fn next<A: MapAccess<'de>>(map: &mut A) -> Result<Self, A::Error>;
}

impl<'de> Borrowing<'de> for Cow<'de, str> {
    fn next<A: MapAccess<'de>>(map: &mut A) -> Result<Self, A::Error> {
        map.next_value::<Str<'de>>().map(|s| s.0)
    }
}

impl<'de> Borrowing<'de> for Vec<Cow<'de, str>> {
    fn next<A: MapAccess<'de>>(map: &mut A) -> Result<Self, A::Error> {
        map.next_value::<Strs<'de>>().map(|s| s.0)
    }
}

impl<'de, V: Borrowing<'de>> Deserialize<'de> for Keyed<'de, V> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Vis<V>(PhantomData<V>);
        impl<'de, V: Borrowing<'de>> Visitor<'de> for Vis<V> {
            type Value = Keyed<'de, V>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a map")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = BTreeMap::new();
                while let Some(Str(key)) = map.next_key()? {
                    out.insert(key, V::next(&mut map)?);
                }
                Ok(Keyed(out))
            }
        }
        d.deserialize_map(Vis(PhantomData))
    }
}

/// Reads an object's entries: `known` consumes the value of a field it knows
/// and returns true; every other entry is kept raw. A repeated field is an
/// error, as with serde's derived structs (a document with two `x` keys would
/// be refused by Elasticsearch anyway).
fn read_object<'de, A: MapAccess<'de>>(
    mut map: A,
    mut known: impl FnMut(&str, &mut A) -> Result<bool, A::Error>,
) -> Result<Unknown<'de>, A::Error> {
    let mut unknown = Vec::new();
    while let Some(Str(key)) = map.next_key()? {
        if known(&key, &mut map)? {
            continue;
        }
        if unknown.iter().any(|(k, _)| *k == key) {
            return Err(A::Error::custom(format_args!("duplicate field `{key}`")));
        }
        let value: &'de RawValue = map.next_value()?;
        unknown.push((key, RawObject::Borrowed(value)));
    }
    Ok(Unknown(unknown))
}

/// Reads a known field's value into its slot; refuses a second one.
fn set<'de, A: MapAccess<'de>, T: Deserialize<'de>>(
    slot: &mut Option<T>,
    name: &'static str,
    map: &mut A,
) -> Result<bool, A::Error> {
    if slot.is_some() {
        return Err(A::Error::duplicate_field(name));
    }
    *slot = Some(map.next_value()?);
    Ok(true)
}

/// A slot for an optional string field: absent, `null`, or a string.
type MaybeStr<'a> = Option<Option<Str<'a>>>;

fn string(v: MaybeStr<'_>) -> Option<Cow<'_, str>> {
    v.flatten().map(|s| s.0)
}

fn required<'a, E: serde::de::Error>(v: Option<Str<'a>>, name: &'static str) -> Result<Cow<'a, str>, E> {
    v.map(|s| s.0).ok_or_else(|| E::missing_field(name))
}

/// Implements `Deserialize` for one of the objects above through a visitor
/// whose `visit_map` is `$body` (given the map).
macro_rules! deserialize_object {
    ($ty:ident, $expecting:literal, |$map:ident| $body:block) => {
        impl<'de: 'a, 'a> Deserialize<'de> for $ty<'a> {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl<'de> Visitor<'de> for V {
                    type Value = $ty<'de>;
                    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                        f.write_str($expecting)
                    }
                    fn visit_map<A: MapAccess<'de>>(self, $map: A) -> Result<Self::Value, A::Error> $body
                }
                d.deserialize_map(V)
            }
        }
    };
}

deserialize_object!(AuditEvent, "an audit event object", |map| {
    let (mut level, mut request_uri, mut verb, mut user_agent): (MaybeStr, MaybeStr, MaybeStr, MaybeStr) =
        (None, None, None, None);
    let (mut audit_id, mut stage, mut stage_timestamp): (Option<Str>, Option<Str>, Option<Str>) = (None, None, None);
    let mut request_received_timestamp: MaybeStr = None;
    let mut user: Option<UserInfo> = None;
    let mut impersonated_user: Option<Option<UserInfo>> = None;
    let mut source_ips: Option<Strs> = None;
    let mut object_ref: Option<Option<ObjectRef>> = None;
    let mut response_status: Option<Option<ResponseStatus>> = None;
    let (mut request_object, mut response_object): (Option<Option<RawObject>>, Option<Option<RawObject>>) =
        (None, None);
    let mut annotations: Option<Keyed<Cow<str>>> = None;
    let (mut kind, mut api_version): (Option<IgnoredAny>, Option<IgnoredAny>) = (None, None);
    let unknown = read_object(map, |key, m| match key {
        "level" => set(&mut level, "level", m),
        "auditID" => set(&mut audit_id, "auditID", m),
        "stage" => set(&mut stage, "stage", m),
        "requestURI" => set(&mut request_uri, "requestURI", m),
        "verb" => set(&mut verb, "verb", m),
        "user" => set(&mut user, "user", m),
        "impersonatedUser" => set(&mut impersonated_user, "impersonatedUser", m),
        "sourceIPs" => set(&mut source_ips, "sourceIPs", m),
        "userAgent" => set(&mut user_agent, "userAgent", m),
        "objectRef" => set(&mut object_ref, "objectRef", m),
        "responseStatus" => set(&mut response_status, "responseStatus", m),
        "requestObject" => set(&mut request_object, "requestObject", m),
        "responseObject" => set(&mut response_object, "responseObject", m),
        "requestReceivedTimestamp" => set(&mut request_received_timestamp, "requestReceivedTimestamp", m),
        "stageTimestamp" => set(&mut stage_timestamp, "stageTimestamp", m),
        "annotations" => set(&mut annotations, "annotations", m),
        "kind" => set(&mut kind, "kind", m),
        "apiVersion" => set(&mut api_version, "apiVersion", m),
        _ => Ok(false),
    })?;
    Ok(AuditEvent {
        level: string(level),
        audit_id: required::<A::Error>(audit_id, "auditID")?,
        stage: required::<A::Error>(stage, "stage")?,
        request_uri: string(request_uri),
        verb: string(verb),
        user: user.unwrap_or_default(),
        impersonated_user: impersonated_user.flatten(),
        source_ips: source_ips.map(|s| s.0).unwrap_or_default(),
        user_agent: string(user_agent),
        object_ref: object_ref.flatten(),
        response_status: response_status.flatten(),
        request_object: request_object.flatten(),
        response_object: response_object.flatten(),
        request_received_timestamp: string(request_received_timestamp),
        stage_timestamp: Some(required::<A::Error>(stage_timestamp, "stageTimestamp")?),
        annotations: annotations.map(|a| a.0).unwrap_or_default(),
        unknown,
    })
});

deserialize_object!(UserInfo, "a user object", |map| {
    let (mut username, mut uid): (MaybeStr, MaybeStr) = (None, None);
    let mut groups: Option<Strs> = None;
    let mut extra: Option<Keyed<Vec<Cow<str>>>> = None;
    let unknown = read_object(map, |key, m| match key {
        "username" => set(&mut username, "username", m),
        "uid" => set(&mut uid, "uid", m),
        "groups" => set(&mut groups, "groups", m),
        "extra" => set(&mut extra, "extra", m),
        _ => Ok(false),
    })?;
    Ok(UserInfo {
        username: string(username),
        uid: string(uid),
        groups: groups.map(|g| g.0).unwrap_or_default(),
        extra: extra.map(|e| e.0).unwrap_or_default(),
        unknown,
    })
});

deserialize_object!(ObjectRef, "an objectRef object", |map| {
    let (mut resource, mut namespace, mut name, mut uid): (MaybeStr, MaybeStr, MaybeStr, MaybeStr) =
        (None, None, None, None);
    let (mut api_group, mut api_version, mut resource_version, mut subresource): (
        MaybeStr,
        MaybeStr,
        MaybeStr,
        MaybeStr,
    ) = (None, None, None, None);
    let unknown = read_object(map, |key, m| match key {
        "resource" => set(&mut resource, "resource", m),
        "namespace" => set(&mut namespace, "namespace", m),
        "name" => set(&mut name, "name", m),
        "uid" => set(&mut uid, "uid", m),
        "apiGroup" => set(&mut api_group, "apiGroup", m),
        "apiVersion" => set(&mut api_version, "apiVersion", m),
        "resourceVersion" => set(&mut resource_version, "resourceVersion", m),
        "subresource" => set(&mut subresource, "subresource", m),
        _ => Ok(false),
    })?;
    Ok(ObjectRef {
        resource: string(resource),
        namespace: string(namespace),
        name: string(name),
        uid: string(uid),
        api_group: string(api_group),
        api_version: string(api_version),
        resource_version: string(resource_version),
        subresource: string(subresource),
        unknown,
    })
});

deserialize_object!(ResponseStatus, "a responseStatus object", |map| {
    let mut code: Option<Option<i64>> = None;
    let (mut status, mut reason, mut message): (MaybeStr, MaybeStr, MaybeStr) = (None, None, None);
    let (mut metadata, mut details): (Option<Option<RawObject>>, Option<Option<RawObject>>) = (None, None);
    let unknown = read_object(map, |key, m| match key {
        "code" => set(&mut code, "code", m),
        "status" => set(&mut status, "status", m),
        "reason" => set(&mut reason, "reason", m),
        "message" => set(&mut message, "message", m),
        "metadata" => set(&mut metadata, "metadata", m),
        "details" => set(&mut details, "details", m),
        _ => Ok(false),
    })?;
    Ok(ResponseStatus {
        code: code.flatten(),
        status: string(status),
        reason: string(reason),
        message: string(message),
        metadata: metadata.flatten(),
        details: details.flatten(),
        unknown,
    })
});

/// An embedded Kubernetes object kept as raw JSON: borrowed from the request,
/// or owned after redaction.
#[derive(Debug)]
pub enum RawObject<'a> {
    Borrowed(&'a RawValue),
    Owned(Box<RawValue>),
}

impl RawObject<'_> {
    /// An owned object from JSON text the gateway wrote itself.
    pub fn owned(json: String) -> RawObject<'static> {
        RawObject::Owned(RawValue::from_string(json).expect("the gateway writes valid JSON"))
    }

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

/// Written verbatim by sonic-rs: a struct with sonic-rs's raw-value name is
/// its documented way to embed raw JSON. (serde_json would write it as an
/// object; nothing serializes events with serde_json.) Documents are written
/// by `document_writer`, which copies the text itself; this serde path is the
/// oracle its tests compare with.
impl Serialize for RawObject<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        const SONIC_RAW: &str = "$sonic_rs::LazyValue";
        let mut st = s.serialize_struct(SONIC_RAW, 1)?;
        st.serialize_field(SONIC_RAW, self.get())?;
        st.end()
    }
}

pub use super::event_list::{parse_event, parse_event_list, split_items, PayloadError};
