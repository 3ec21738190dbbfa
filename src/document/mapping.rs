//! The index mappings the sources register and the sink installs as index
//! templates. Each source owns the mapping of the fields it writes (beside its
//! document, e.g. `sources/journald/document.rs`); this module adds the fields
//! every document shares. The sink knows nothing of any source: it installs
//! whatever was registered.

use serde_json::{json, Value};

use super::index_pattern::IndexPattern;
use super::SourceKind;

/// One source's fields in the indices of one pattern.
#[derive(Debug, Clone)]
pub struct IndexMapping {
    pub pattern: IndexPattern,
    /// `properties`, including the [`common_properties`].
    pub properties: Value,
    /// `dynamic_templates` (a JSON array).
    pub dynamic_templates: Value,
    /// Aliases every index of the pattern gets from its template, e.g. the
    /// name Elastic's integrations search (`logs-kubernetes.audit_logs-…`).
    pub aliases: Vec<String>,
    /// The sources whose documents these fields describe (set by whoever
    /// registers the mapping): the sink finds by it the mapping for a
    /// spooled document whose index no current pattern covers.
    pub sources: Vec<SourceKind>,
}

impl IndexMapping {
    /// `specific` is merged over the fields every document has.
    pub fn new(pattern: IndexPattern, specific: Value, dynamic_templates: Value) -> Self {
        let mut properties = common_properties();
        merge(&mut properties, specific);
        IndexMapping { pattern, properties, dynamic_templates, aliases: Vec::new(), sources: Vec::new() }
    }

    /// The fields Elasticsearch counts against `index.mapping.total_fields.limit`
    /// for these properties: every object and leaf, and every multi-field.
    pub fn field_count(&self) -> usize {
        fn count(properties: &Value) -> usize {
            properties
                .as_object()
                .map_or(0, |fields| fields.values().map(|f| 1 + count(&f["properties"]) + count(&f["fields"])).sum())
        }
        count(&self.properties)
    }

    /// Two sources writing to one pattern share one template: `other`'s fields,
    /// dynamic templates and aliases are added to these.
    pub fn absorb(&mut self, other: IndexMapping) {
        merge(&mut self.properties, other.properties);
        for source in other.sources {
            if !self.sources.contains(&source) {
                self.sources.push(source);
            }
        }
        for alias in other.aliases {
            if !self.aliases.contains(&alias) {
                self.aliases.push(alias);
            }
        }
        if let (Some(mine), Value::Array(theirs)) = (self.dynamic_templates.as_array_mut(), other.dynamic_templates) {
            mine.extend(theirs);
        }
    }
}

/// Fields every document has (docs/fields.md, "every document").
pub fn common_properties() -> Value {
    json!({
        "@timestamp": { "type": "date_nanos" },
        "message": { "type": "text" },
        "event": { "properties": {
            "dataset": { "type": "keyword" },
            "kind": { "type": "keyword" },
            "id": { "type": "keyword" },
            "ingested": { "type": "date" },
            "action": { "type": "keyword" },
            "outcome": { "type": "keyword" },
            "original": { "type": "keyword", "index": false, "doc_values": false }
        }},
        "orchestrator": { "properties": {
            "type": { "type": "keyword" },
            "cluster": { "properties": { "name": { "type": "keyword" } } }
        }},
        "host": { "properties": { "name": { "type": "keyword" } } },
        "kubernetes": { "properties": { "node": { "properties": { "name": { "type": "keyword" } } } } },
        "log": { "properties": { "level": { "type": "keyword" } } },
        "kube_log_gateway": { "properties": { "flags": { "type": "keyword" } } }
    })
}

/// Recursively merges `extra` into `base` (objects merge, other values replace).
pub fn merge(base: &mut Value, extra: Value) {
    match (base, extra) {
        (Value::Object(b), Value::Object(e)) => {
            for (k, v) in e {
                match b.get_mut(&k) {
                    Some(existing) => merge(existing, v),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (b, e) => *b = e,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_is_deep() {
        let mut a = json!({"event": {"properties": {"a": 1}}});
        merge(&mut a, json!({"event": {"properties": {"b": 2}}}));
        assert_eq!(a, json!({"event": {"properties": {"a": 1, "b": 2}}}));
    }

    #[test]
    fn absorbing_keeps_both_fields_and_dynamic_templates() {
        let p = IndexPattern::parse("audit-%Y.%m.%d").unwrap();
        let mut a = IndexMapping::new(p.clone(), json!({"a": {"type": "keyword"}}), json!([{"x": {}}]));
        a.absorb(IndexMapping::new(p, json!({"b": {"type": "long"}}), json!([{"y": {}}])));
        assert_eq!(a.properties["a"]["type"], "keyword");
        assert_eq!(a.properties["b"]["type"], "long");
        assert_eq!(a.dynamic_templates.as_array().unwrap().len(), 2);
        assert_eq!(a.properties["@timestamp"]["type"], "date_nanos");
    }

    #[test]
    fn absorbing_keeps_every_alias_once() {
        let p = IndexPattern::parse("audit-%Y.%m.%d").unwrap();
        let mut a = IndexMapping::new(p.clone(), json!({}), json!([]));
        a.aliases.push("logs-a-default".into());
        let mut b = IndexMapping::new(p, json!({}), json!([]));
        b.aliases.extend(["logs-a-default".into(), "logs-b-default".into()]);
        a.absorb(b);
        assert_eq!(a.aliases, ["logs-a-default", "logs-b-default"]);
    }
}
