//! Index templates, in the server's dialect. The mappings come from the
//! sources, registered as [`IndexMapping`]s by the composition root; this
//! module adds the index settings and translates what the server spells
//! differently ([`install`](super::install) puts them). Mappings are explicit
//! and keep to core field types; where user payloads live they are
//! `enabled: false` or `dynamic: false`, so a strange object can never cause a
//! mapping explosion or a mapping conflict.

use serde_json::{json, Value};

use super::Flavour;
use crate::document::index_pattern::IndexPattern;
use crate::document::mapping::IndexMapping;
use crate::document::SourceKind;
use crate::sink::config::TemplateSettings;

#[derive(Debug, Clone)]
pub struct Template {
    pub name: String,
    /// The indices it applies to (`audit-*`).
    pub wildcard: String,
    pub body: Value,
    /// The sources whose mapping it carries.
    pub sources: Vec<SourceKind>,
}

/// The template name for a pattern: `audit-%Y.%m.%d` → `kube-log-gateway-audit`.
pub fn template_name(pattern: &IndexPattern) -> String {
    let stem: String = pattern
        .wildcard()
        .trim_end_matches('*')
        .trim_end_matches(['-', '.', '_'])
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '-' })
        .collect();
    format!("kube-log-gateway-{stem}")
}

/// The template for one pattern, in `flavour`'s dialect; for a data stream
/// (`data_stream`) when the pattern names one.
pub fn template(
    mut mapping: IndexMapping,
    settings: &TemplateSettings,
    flavour: &Flavour,
    data_stream: bool,
) -> Template {
    translate(&mut mapping.properties, flavour);
    translate(&mut mapping.dynamic_templates, flavour);
    // Every index of the pattern gets the aliases the mapping declares; a data
    // stream none: on Elasticsearch they would be data stream aliases, which
    // cannot share a name with the same alias on the earlier daily indices
    // ("index, alias, and data stream names need to be unique"), and every
    // first write to the stream would fail.
    let aliases: serde_json::Map<String, Value> = match data_stream {
        true => serde_json::Map::new(),
        false => mapping.aliases.iter().map(|a| (a.clone(), json!({}))).collect(),
    };
    let mut t = Template {
        sources: mapping.sources.clone(),
        name: template_name(&mapping.pattern),
        wildcard: mapping.pattern.wildcard(),
        body: json!({
            "index_patterns": [mapping.pattern.wildcard()],
            "priority": priority(data_stream),
            "_meta": { "managed_by": "kube-log-gateway" },
            "template": {
                "settings": {
                    "index": {
                        "number_of_shards": settings.number_of_shards,
                        "number_of_replicas": settings.number_of_replicas,
                        "refresh_interval": settings.refresh_interval,
                        "mapping": { "total_fields": total_fields(settings, flavour) }
                    }
                },
                "aliases": aliases,
                "mappings": {
                    // Unknown fields stay in _source but are not indexed.
                    "dynamic": false,
                    "dynamic_templates": mapping.dynamic_templates,
                    "properties": mapping.properties
                }
            }
        }),
    };
    if data_stream {
        t.body["data_stream"] = json!({});
    }
    t
}

/// Daily indices: 200, as Fleet's integration templates, whose patterns they
/// never match. A data stream named into Elastic's scheme
/// (`logs-kubernetes.audit_logs-klg`) is matched by Fleet's
/// `logs-kubernetes.audit_logs-*` too, and two templates of one priority may
/// not overlap: 250 makes the gateway's, for its one name, the one that wins.
fn priority(data_stream: bool) -> u32 {
    if data_stream {
        250
    } else {
        200
    }
}

/// `index.mapping.total_fields`. `ignore_dynamic_beyond_limit` only when on
/// and the server has it: Elasticsearch before 8.13 and OpenSearch refuse the
/// setting (and with it the whole template).
fn total_fields(settings: &TemplateSettings, flavour: &Flavour) -> Value {
    let mut total_fields = json!({ "limit": settings.total_fields_limit });
    if settings.ignore_dynamic_beyond_limit && flavour.has_ignore_dynamic_beyond_limit() {
        total_fields["ignore_dynamic_beyond_limit"] = json!(true);
    }
    total_fields
}

/// One template per index pattern. Two sources may share a pattern: one
/// template then carries both mappings (a second PUT of the same name would
/// replace the first).
pub fn all(
    mappings: Vec<IndexMapping>,
    settings: &TemplateSettings,
    flavour: &Flavour,
    data_stream: bool,
) -> Vec<Template> {
    let mut merged: Vec<IndexMapping> = Vec::new();
    for m in mappings {
        match merged.iter_mut().find(|o| template_name(&o.pattern) == template_name(&m.pattern)) {
            Some(existing) => existing.absorb(m),
            None => merged.push(m),
        }
    }
    merged.into_iter().map(|m| template(m, settings, flavour, data_stream)).collect()
}

/// The index wildcards of the templates [`all`] makes of these mappings, one
/// each, before the server is known: a [`Gate`](crate::sink::protocol::gate::Gate)
/// is closed for each until its template is in.
pub fn wildcards(mappings: &[IndexMapping]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for w in mappings.iter().map(|m| m.pattern.wildcard()) {
        if !out.contains(&w) {
            out.push(w);
        }
    }
    out
}

/// The mapping dialect: every `{"type": "flattened", ...}` in a mapping
/// becomes the server's type for it. OpenSearch's `flat_object` takes no
/// parameters (`ignore_above` is refused: "unsupported parameters").
///
/// A `boolean` with `ignore_malformed` (a body path that is a boolean in the
/// resources rules read, and may be anything in a custom resource) becomes a
/// `keyword` where the server has no `ignore_malformed` for booleans
/// (OpenSearch refuses the whole template: "unknown parameter
/// [ignore_malformed] on mapper … of type [boolean]"). A keyword takes any
/// scalar without a conflict, and `field: true` still finds `true`.
fn translate(mapping: &mut Value, flavour: &Flavour) {
    let to = flavour.flattened_type();
    match mapping {
        Value::Object(fields) => {
            let kind = fields.get("type").and_then(Value::as_str);
            if kind == Some("flattened") && to != "flattened" {
                *mapping = json!({ "type": to });
                return;
            }
            if kind == Some("boolean")
                && fields.contains_key("ignore_malformed")
                && !flavour.has_boolean_ignore_malformed()
            {
                *mapping = json!({ "type": "keyword", "ignore_above": 64 });
                return;
            }
            fields.values_mut().for_each(|v| translate(v, flavour));
        }
        Value::Array(items) => items.iter_mut().for_each(|v| translate(v, flavour)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::sink::flavour::{Product, Version};

    fn mapping(pattern: &str, specific: Value) -> IndexMapping {
        IndexMapping::new(IndexPattern::parse(pattern).unwrap(), specific, json!([]))
    }

    fn es(version: &str) -> Flavour {
        Flavour { product: Product::Elasticsearch, version: Version::parse(version) }
    }

    fn opensearch() -> Flavour {
        Flavour { product: Product::OpenSearch, version: Version::parse("2.19.6") }
    }

    #[test]
    fn names_and_patterns() {
        let t = template(mapping("audit-%Y.%m.%d", json!({})), &TemplateSettings::default(), &es("8.19.21"), false);
        assert_eq!(t.name, "kube-log-gateway-audit");
        assert_eq!(t.wildcard, "audit-*");
        assert_eq!(t.body["index_patterns"], json!(["audit-*"]));
        assert_eq!(t.body["template"]["mappings"]["dynamic"], json!(false));
        assert_eq!(t.body["template"]["mappings"]["properties"]["@timestamp"]["type"], "date_nanos");
        assert_eq!(
            t.body["template"]["settings"]["index"]["mapping"]["total_fields"],
            json!({"limit": 2000, "ignore_dynamic_beyond_limit": true})
        );
        let old_cluster = TemplateSettings { ignore_dynamic_beyond_limit: false, ..TemplateSettings::default() };
        let t = template(mapping("audit-%Y.%m.%d", json!({})), &old_cluster, &es("8.19.21"), false);
        assert_eq!(t.body["template"]["settings"]["index"]["mapping"]["total_fields"], json!({"limit": 2000}));
        // Servers without the setting never see it, whatever the config says.
        for flavour in [es("8.12.2"), opensearch()] {
            let t = template(mapping("audit-%Y.%m.%d", json!({})), &TemplateSettings::default(), &flavour, false);
            assert_eq!(t.body["template"]["settings"]["index"]["mapping"]["total_fields"], json!({"limit": 2000}));
        }
    }

    #[test]
    fn flattened_is_flat_object_without_parameters_on_opensearch() {
        let labels = json!({"kubernetes": {"properties": {"pod": {"properties": {
            "labels": {"type": "flattened", "ignore_above": 1024}}}}}});
        let dynamic = json!([{"maps": {"match": "x.*", "mapping": {"type": "flattened", "ignore_above": 1024}}}]);
        let m = IndexMapping::new(IndexPattern::parse("containers-%Y.%m.%d").unwrap(), labels, dynamic);
        let t = template(m.clone(), &TemplateSettings::default(), &opensearch(), false);
        let mappings = &t.body["template"]["mappings"];
        assert_eq!(
            mappings["properties"]["kubernetes"]["properties"]["pod"]["properties"]["labels"],
            json!({"type": "flat_object"})
        );
        assert_eq!(mappings["dynamic_templates"][0]["maps"]["mapping"], json!({"type": "flat_object"}));
        let t = template(m, &TemplateSettings::default(), &es("9.5.4"), false);
        assert_eq!(
            t.body["template"]["mappings"]["properties"]["kubernetes"]["properties"]["pod"]["properties"]["labels"],
            json!({"type": "flattened", "ignore_above": 1024})
        );
    }

    #[test]
    fn a_lenient_boolean_is_a_keyword_where_booleans_cannot_ignore_malformed_values() {
        let lenient = json!({"spec": {"properties": {"hostPID": {"type": "boolean", "ignore_malformed": true}}}});
        let host_pid = |flavour: &Flavour| {
            let t = template(mapping("audit-%Y.%m.%d", lenient.clone()), &TemplateSettings::default(), flavour, false);
            t.body["template"]["mappings"]["properties"]["spec"]["properties"]["hostPID"].clone()
        };
        assert_eq!(host_pid(&opensearch()), json!({"type": "keyword", "ignore_above": 64}));
        assert_eq!(host_pid(&es("9.5.4")), json!({"type": "boolean", "ignore_malformed": true}));
        assert_eq!(host_pid(&es("8.19.21")), json!({"type": "boolean", "ignore_malformed": true}));
    }

    #[test]
    fn sources_sharing_a_pattern_share_one_template_with_both_mappings() {
        let mut audit = mapping("audit-%Y.%m.%d", json!({"kubernetes": {"properties": {"audit": {"type": "object"}}}}));
        audit.dynamic_templates = json!([{"labels": {}}]);
        let all = all(
            vec![
                audit,
                mapping("containers-%Y.%m.%d", json!({})),
                mapping("deadletter-%Y.%m.%d", json!({})),
                mapping("audit-%Y.%m.%d", json!({"systemd": {"properties": {}}, "journald": {"properties": {}}})),
            ],
            &TemplateSettings::default(),
            &es("8.19.21"),
            false,
        );
        assert_eq!(all.len(), 3);
        let audit = all.iter().find(|t| t.name == "kube-log-gateway-audit").unwrap();
        let props = &audit.body["template"]["mappings"]["properties"];
        assert!(props["kubernetes"]["properties"]["audit"].is_object(), "audit mapping kept");
        assert!(props["systemd"].is_object() && props["journald"].is_object(), "journald mapping added: {props}");
        assert!(!audit.body["template"]["mappings"]["dynamic_templates"].as_array().unwrap().is_empty());
    }

    #[test]
    fn a_data_stream_template_says_so_and_has_no_aliases() {
        let mut m = mapping("logs-kubernetes.audit_logs-default", json!({}));
        m.aliases = vec!["logs-kubernetes.audit_logs-klg".into()];
        let t = template(m.clone(), &TemplateSettings::default(), &es("8.19.21"), true);
        assert_eq!(t.body["data_stream"], json!({}));
        assert_eq!(t.body["priority"], 250, "above Fleet's logs-kubernetes.audit_logs-* (200)");
        assert_eq!(t.body["index_patterns"], json!(["logs-kubernetes.audit_logs-default"]));
        assert_eq!(t.body["template"]["aliases"], json!({}));
        let daily = template(m, &TemplateSettings::default(), &es("8.19.21"), false);
        assert!(daily.body.get("data_stream").is_none());
        assert_eq!(daily.body["priority"], 200);
        assert_eq!(daily.body["template"]["aliases"], json!({"logs-kubernetes.audit_logs-klg": {}}));
    }
}
