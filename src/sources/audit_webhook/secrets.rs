//! Redaction of Secret values in audit request/response objects.
//!
//! A Secret reaches an audit event in several shapes: the object itself (create,
//! update, get), a list of them, a merge or strategic-merge patch (`{"data":…}`),
//! a JSON patch (`[{"op":"replace","path":"/data/k","value":…}]`) and the
//! `kubectl.kubernetes.io/last-applied-configuration` annotation, which holds the
//! whole applied object as a string. Each is covered; keys stay visible so that
//! people can still see *which* keys changed.

use serde_json::Value;

pub const REDACTED: &str = "[REDACTED]";
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Redacts in place; returns whether anything changed.
pub fn redact(value: &mut Value) -> bool {
    let mut changed = false;
    match value {
        Value::Object(map) => {
            for key in ["data", "stringData"] {
                if let Some(v) = map.get_mut(key) {
                    changed |= redact_values(v);
                }
            }
            if let Some(Value::Object(meta)) = map.get_mut("metadata") {
                if let Some(Value::Object(annotations)) = meta.get_mut("annotations") {
                    if let Some(v) = annotations.get_mut(LAST_APPLIED) {
                        *v = Value::String(REDACTED.into());
                        changed = true;
                    }
                }
            }
            for (key, v) in map.iter_mut() {
                if key != "data" && key != "stringData" {
                    changed |= redact(v);
                }
            }
        }
        Value::Array(items) => {
            for item in items.iter_mut() {
                if let Value::Object(op) = item {
                    let sensitive = op.get("path").and_then(Value::as_str).is_some_and(|p| {
                        p.starts_with("/data")
                            || p.starts_with("/stringData")
                            || p.contains("last-applied-configuration")
                    });
                    if sensitive {
                        if let Some(v) = op.get_mut("value") {
                            redact_values(v);
                            changed = true;
                        }
                    }
                }
                changed |= redact(item);
            }
        }
        _ => {}
    }
    changed
}

/// Every leaf under `v` becomes "[REDACTED]"; object keys are kept.
fn redact_values(v: &mut Value) -> bool {
    match v {
        Value::Object(map) => {
            for leaf in map.values_mut() {
                redact_values(leaf);
            }
            true
        }
        Value::Null => false,
        other => {
            *other = Value::String(REDACTED.into());
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn object_list_patch_and_annotation() {
        let mut secret = json!({"kind":"Secret","data":{"password":"c2VjcmV0"},"stringData":{"token":"plain"},
            "metadata":{"name":"db","annotations":{"kubectl.kubernetes.io/last-applied-configuration":"{\"data\":{\"password\":\"c2VjcmV0\"}}","other":"kept"}}});
        assert!(redact(&mut secret));
        assert_eq!(secret["data"]["password"], REDACTED);
        assert_eq!(secret["stringData"]["token"], REDACTED);
        assert_eq!(secret["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"], REDACTED);
        assert_eq!(secret["metadata"]["annotations"]["other"], "kept");

        let mut list = json!({"kind":"SecretList","items":[{"data":{"a":"eA=="}},{"data":{"b":"eQ=="}}]});
        assert!(redact(&mut list));
        assert_eq!(list["items"][1]["data"]["b"], REDACTED);

        let mut patch = json!([{"op":"replace","path":"/data/a","value":"eA=="},{"op":"add","path":"/stringData","value":{"k":"v"}},{"op":"replace","path":"/metadata/labels/x","value":"kept"}]);
        assert!(redact(&mut patch));
        assert_eq!(patch[0]["value"], REDACTED);
        assert_eq!(patch[1]["value"]["k"], REDACTED);
        assert_eq!(patch[2]["value"], "kept");
    }

    #[test]
    fn nothing_to_redact() {
        let mut v = json!({"kind":"Secret","metadata":{"name":"x"},"type":"Opaque"});
        assert!(!redact(&mut v));
    }
}
