//! The searchable parts of `requestObject` and `responseObject`
//! (docs/fields.md, "Request and response bodies").
//!
//! Detection rules query a few paths inside the bodies (pod specs, RBAC rules,
//! Services, admission webhooks) under the names Elastic's Kubernetes
//! integration gives them, e.g. `kubernetes.audit.requestObject.spec.hostPID`.
//! Those paths, and only those, are mapped: each body object is
//! `dynamic: false`, so whatever else a body holds (a ConfigMap's data, a
//! custom resource of any shape) is kept in `_source` and never indexed, and
//! the number of fields is fixed.
//!
//! A mapped path can still conflict: a custom resource whose `spec` is a
//! string, or whose `spec.type` is an object, would make Elasticsearch refuse
//! the whole document. So before a body is written where these mappings apply,
//! [`fits`] walks the mapped paths of the body (skipping everything else
//! without building it) and checks that every value there is one
//! Elasticsearch takes under that mapping. A body that does not fit is written
//! whole under `kube_log_gateway.original` instead, unindexed, and flagged.
//!
//! One table per body, [`REQUEST_BODY`] and [`RESPONSE_BODY`], gives both the mapping and the check, so the two
//! cannot drift apart.

use std::fmt;

use serde::de::{DeserializeSeed, Error as _, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserializer;
use serde_json::{json, Map, Value};

/// What Elasticsearch is told a mapped path holds.
#[derive(Debug)]
pub enum Node {
    /// An object (or an array of objects) with these mapped members; any
    /// other member is kept unindexed.
    Object(&'static [(&'static str, Node)]),
    /// `keyword`: a string, number or boolean, or an array of them.
    Keyword,
    /// `boolean` with `ignore_malformed`: any scalar, or an array of them; a
    /// value that is not a boolean is kept unindexed.
    Boolean,
}

use Node::{Boolean, Keyword, Object};

const CONTAINERS: Node = Object(&[
    ("image", Keyword),
    (
        "securityContext",
        Object(&[
            ("privileged", Boolean),
            ("allowPrivilegeEscalation", Boolean),
            ("capabilities", Object(&[("add", Keyword)])),
        ]),
    ),
    ("volumeMounts", Object(&[("mountPath", Keyword)])),
]);

const HOST_PATH_VOLUMES: Node = Object(&[("hostPath", Object(&[("path", Keyword)]))]);

const RBAC_RULES: Node = Object(&[("verbs", Keyword), ("resources", Keyword), ("apiGroups", Keyword)]);

const ROLE_REF: Node = Object(&[("kind", Keyword), ("name", Keyword)]);

/// The mapped paths of `requestObject`: the union of what Elastic's
/// integration maps and what Elastic's prebuilt Kubernetes rules query.
pub const REQUEST_BODY: Node = Object(&[
    ("kind", Keyword),
    (
        "spec",
        Object(&[
            ("type", Keyword),
            ("hostPID", Boolean),
            ("hostNetwork", Boolean),
            ("hostIPC", Boolean),
            ("serviceAccountName", Keyword),
            // A path the prebuilt rules name (`spec.container.image`):
            // mapped so that their queries run, whatever they find.
            ("container", Object(&[("image", Keyword)])),
            ("containers", CONTAINERS),
            ("volumes", HOST_PATH_VOLUMES),
        ]),
    ),
    ("rules", RBAC_RULES),
    ("roleRef", ROLE_REF),
    ("subjects", Object(&[("kind", Keyword), ("name", Keyword), ("namespace", Keyword)])),
    (
        "webhooks",
        Object(&[(
            "clientConfig",
            Object(&[("url", Keyword), ("service", Object(&[("name", Keyword), ("namespace", Keyword)]))]),
        )]),
    ),
]);

/// The mapped paths of `responseObject`: what Elastic's integration maps
/// there and the rules query (RBAC rules; pod specs as created).
pub const RESPONSE_BODY: Node = Object(&[
    (
        "spec",
        Object(&[
            ("hostPID", Boolean),
            ("hostNetwork", Boolean),
            ("hostIPC", Boolean),
            ("restartPolicy", Keyword),
            ("containers", CONTAINERS),
            ("volumes", HOST_PATH_VOLUMES),
        ]),
    ),
    ("rules", RBAC_RULES),
    ("roleRef", ROLE_REF),
]);

/// The mapping of a body: `dynamic: false` objects with the typed leaves.
pub fn mapping(node: &Node) -> Value {
    match node {
        Object(members) => {
            let properties: Map<String, Value> = members.iter().map(|(k, n)| (k.to_string(), mapping(n))).collect();
            json!({ "type": "object", "dynamic": false, "properties": properties })
        }
        Keyword => json!({ "type": "keyword", "ignore_above": 1024 }),
        Boolean => json!({ "type": "boolean", "ignore_malformed": true }),
    }
}

/// Whether Elasticsearch takes `body` (valid JSON text) under [`mapping`] of
/// `node`: every value on a mapped path is of a kind that path accepts.
/// Everything else is skipped without being built.
pub fn fits(body: &str, node: &'static Node) -> bool {
    // Mapped paths are a few levels deep; what lies off them is skipped by
    // serde_json without recursion, however deep.
    let mut de = serde_json::Deserializer::from_str(body);
    Check { node, in_array: false }.deserialize(&mut de).is_ok()
}

/// Checks one value against `node`. Inside an array (`in_array`), an array is
/// refused: arrays of arrays are not worth the risk on a mapped path.
#[derive(Clone, Copy)]
struct Check {
    node: &'static Node,
    in_array: bool,
}

impl<'de> DeserializeSeed<'de> for Check {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Check {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self.node {
            Object(_) => f.write_str("an object, an array of objects or null"),
            Keyword | Boolean => f.write_str("a scalar, an array of scalars or null"),
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let Object(members) = self.node else { return Err(A::Error::custom("an object on a leaf path")) };
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            match members.iter().find(|(k, _)| *k == key) {
                Some((_, node)) => map.next_value_seed(Check { node, in_array: false })?,
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        if self.in_array {
            return Err(A::Error::custom("an array in an array"));
        }
        while seq.next_element_seed(Check { in_array: true, ..self })?.is_some() {}
        Ok(())
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<(), E> {
        self.scalar()
    }

    fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<(), E> {
        self.scalar()
    }

    fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<(), E> {
        self.scalar()
    }

    fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<(), E> {
        self.scalar()
    }

    fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<(), E> {
        self.scalar()
    }
}

impl Check {
    fn scalar<E: serde::de::Error>(self) -> Result<(), E> {
        match self.node {
            Object(_) => Err(E::custom("a scalar on an object path")),
            Keyword | Boolean => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_specs_and_rbac_objects_fit() {
        for body in [
            r#"{"kind":"Pod","metadata":{"name":"p"},"spec":{"hostPID":true,"hostNetwork":"yes","containers":[{"image":"busybox","securityContext":{"privileged":true,"capabilities":{"add":["SYS_ADMIN"]}}}],"volumes":[{"hostPath":{"path":"/"}},{"emptyDir":{}}]}}"#,
            r#"{"kind":"ClusterRole","rules":[{"verbs":["*"],"resources":["*"],"apiGroups":[""]}]}"#,
            r#"{"kind":"ClusterRoleBinding","roleRef":{"kind":"ClusterRole","name":"cluster-admin"},"subjects":[{"kind":"ServiceAccount","name":"x","namespace":"y"}]}"#,
            r#"{"kind":"ConfigMap","data":{"spec":"a string where a pod has an object","x":{"y":[[1]]}}}"#,
            r#"{"spec":null,"rules":null}"#,
            r#"{}"#,
            r#"{"spec":{"containers":[null,{"image":5,"name":true}]}}"#,
            // An object mapping takes an array of objects too.
            r#"[{"spec":{}}]"#,
        ] {
            assert!(fits(body, &REQUEST_BODY), "{body}");
        }
    }

    #[test]
    fn shapes_elasticsearch_would_refuse_do_not_fit() {
        for body in [
            r#"{"spec":"a string"}"#,
            r#"{"spec":{"type":{"not":"a keyword"}}}"#,
            r#"{"spec":{"hostPID":{"a":1}}}"#,
            r#"{"spec":{"containers":[[{"image":"x"}]]}}"#,
            r#"{"spec":{"containers":["x"]}}"#,
            r#"{"rules":[{"verbs":[["get"]]}]}"#,
            r#"{"roleRef":5}"#,
            r#""[REDACTED]""#,
            r#"{"kind":{"a":1}}"#,
        ] {
            assert!(!fits(body, &REQUEST_BODY), "{body}");
        }
    }

    #[test]
    fn depth_off_the_mapped_paths_is_skipped_whole() {
        let deep = |n: usize| format!("{}1{}", r#"{"a":"#.repeat(n), "}".repeat(n));
        assert!(fits(&format!(r#"{{"data":{}}}"#, deep(900)), &REQUEST_BODY));
        assert!(fits(&format!(r#"{{"spec":{{"containers":[{}]}}}}"#, deep(900)), &REQUEST_BODY));
    }

    #[test]
    fn the_mapping_has_every_path_typed_and_nothing_dynamic() {
        let m = mapping(&REQUEST_BODY);
        assert_eq!(m["dynamic"], json!(false));
        let spec = &m["properties"]["spec"];
        assert_eq!(spec["dynamic"], json!(false));
        assert_eq!(spec["properties"]["hostPID"]["type"], "boolean");
        assert_eq!(spec["properties"]["hostPID"]["ignore_malformed"], json!(true));
        let container = &spec["properties"]["containers"]["properties"];
        assert_eq!(container["securityContext"]["properties"]["capabilities"]["properties"]["add"]["type"], "keyword");
        assert_eq!(spec["properties"]["volumes"]["properties"]["hostPath"]["properties"]["path"]["type"], "keyword");
        assert_eq!(m["properties"]["rules"]["properties"]["verbs"]["type"], "keyword");
        assert_eq!(m["properties"]["roleRef"]["properties"]["name"]["type"], "keyword");
    }
}
