//! Index templates, installed idempotently at start-up (PUT replaces a template
//! with the same name). The mappings come from the sources, registered as
//! [`IndexMapping`]s by the composition root; this module only adds the index
//! settings and installs them. Mappings are explicit and keep to core field
//! types; where user payloads live they are `enabled: false` or `dynamic: false`,
//! so a strange object can never cause a mapping explosion or a mapping conflict.

use elasticsearch::http::Method;
use serde_json::{json, Value};

use super::client::{EsClient, RequestFailure};
use super::config::{RetryConfig, TemplateSettings};
use super::policy::Action;
use super::report::Cancelled;
use super::retry::Backoff;
use crate::document::index_pattern::IndexPattern;
use crate::document::mapping::IndexMapping;
use crate::shutdown::Shutdown;

#[derive(Debug, Clone)]
pub struct Template {
    pub name: String,
    pub body: Value,
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

/// The template of one pattern. Its aliases (search-only: documents are
/// written to the concrete daily indices) are given to every index it creates.
pub fn template(mapping: IndexMapping, settings: &TemplateSettings) -> Template {
    let aliases: serde_json::Map<String, Value> = mapping.aliases.iter().map(|a| (a.clone(), json!({}))).collect();
    Template {
        name: template_name(&mapping.pattern),
        body: json!({
            "index_patterns": [mapping.pattern.wildcard()],
            "priority": 200,
            "_meta": { "managed_by": "kube-log-gateway" },
            "template": {
                "settings": {
                    "index": {
                        "number_of_shards": settings.number_of_shards,
                        "number_of_replicas": settings.number_of_replicas,
                        "refresh_interval": settings.refresh_interval,
                        "mapping": { "total_fields": total_fields(settings) }
                    }
                },
                "mappings": {
                    // Unknown fields stay in _source but are not indexed.
                    "dynamic": false,
                    "dynamic_templates": mapping.dynamic_templates,
                    "properties": mapping.properties
                },
                "aliases": aliases
            }
        }),
    }
}

/// `index.mapping.total_fields`. `ignore_dynamic_beyond_limit` only when on:
/// Elasticsearch before 8.13 refuses the setting, so `false` leaves it out and
/// such a cluster still takes the templates.
fn total_fields(settings: &TemplateSettings) -> Value {
    let mut total_fields = json!({ "limit": settings.total_fields_limit });
    if settings.ignore_dynamic_beyond_limit {
        total_fields["ignore_dynamic_beyond_limit"] = json!(true);
    }
    total_fields
}

/// One template per index pattern. Two sources may share a pattern: one
/// template then carries both mappings (a second PUT of the same name would
/// replace the first).
pub fn all(mappings: Vec<IndexMapping>, settings: &TemplateSettings) -> Vec<Template> {
    let mut merged: Vec<IndexMapping> = Vec::new();
    for m in mappings {
        match merged.iter_mut().find(|o| template_name(&o.pattern) == template_name(&m.pattern)) {
            Some(existing) => existing.absorb(m),
            None => merged.push(m),
        }
    }
    merged.into_iter().map(|m| template(m, settings)).collect()
}

/// PUTs each template once.
pub async fn install(client: &EsClient, templates: &[Template]) -> Result<(), RequestFailure> {
    for t in templates {
        let body = bytes::Bytes::from(serde_json::to_vec(&t.body).expect("a template serializes"));
        let path = format!("/_index_template/{}", t.name);
        let (_, reply) = client.send(Method::Put, &path, Some(body), "application/json").await;
        let reply = reply?;
        if reply.status != 200 {
            return Err(RequestFailure::Status {
                status: reply.status,
                body: String::from_utf8_lossy(&reply.body).chars().take(1000).collect(),
            });
        }
        tracing::info!(template = %t.name, "index template installed");
    }
    Ok(())
}

/// Installs the templates, retrying with backoff until Elasticsearch takes them.
/// A refusal that needs an operator (e.g. a user without
/// `manage_index_templates`) is logged as an error and retried too, since
/// writing without templates would create indices with the wrong mappings.
/// What each failure means is the [`policy`](super::policy)'s, as for bulk
/// requests; a template cannot be split, so a 413 is retried like a refusal.
pub async fn install_until_done(
    client: &EsClient,
    templates: &[Template],
    retry: &RetryConfig,
    shutdown: &Shutdown,
) -> Result<(), Cancelled> {
    let mut backoff = Backoff::new(retry);
    loop {
        let at = client.current_url().clone();
        let Err(e) = install(client, templates).await else { return Ok(()) };
        if e.needs_an_operator() {
            tracing::error!(url = %at, "Elasticsearch refused an index template (check the credentials' privileges): {e}")
        } else {
            tracing::warn!(url = %at, "cannot install index templates yet, will retry: {e}")
        }
        if e.action() == (Action::Retry { failover: true }) {
            client.fail_over(client.current_index());
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff.next_delay()) => {}
            _ = shutdown.aborted() => return Err(Cancelled),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mapping(pattern: &str, specific: Value) -> IndexMapping {
        IndexMapping::new(IndexPattern::parse(pattern).unwrap(), specific, json!([]))
    }

    #[test]
    fn names_and_patterns() {
        let t = template(mapping("audit-%Y.%m.%d", json!({})), &TemplateSettings::default());
        assert_eq!(t.name, "kube-log-gateway-audit");
        assert_eq!(t.body["index_patterns"], json!(["audit-*"]));
        assert_eq!(t.body["template"]["mappings"]["dynamic"], json!(false));
        assert_eq!(t.body["template"]["mappings"]["properties"]["@timestamp"]["type"], "date_nanos");
        assert_eq!(
            t.body["template"]["settings"]["index"]["mapping"]["total_fields"],
            json!({"limit": 2000, "ignore_dynamic_beyond_limit": true})
        );
        assert_eq!(t.body["template"]["aliases"], json!({}));
        let mut with_alias = mapping("audit-%Y.%m.%d", json!({}));
        with_alias.aliases.push("logs-kubernetes.audit_logs-default".into());
        let t = template(with_alias, &TemplateSettings::default());
        assert_eq!(t.body["template"]["aliases"], json!({"logs-kubernetes.audit_logs-default": {}}));
        let old_cluster = TemplateSettings { ignore_dynamic_beyond_limit: false, ..TemplateSettings::default() };
        let t = template(mapping("audit-%Y.%m.%d", json!({})), &old_cluster);
        assert_eq!(t.body["template"]["settings"]["index"]["mapping"]["total_fields"], json!({"limit": 2000}));
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
        );
        assert_eq!(all.len(), 3);
        let audit = all.iter().find(|t| t.name == "kube-log-gateway-audit").unwrap();
        let props = &audit.body["template"]["mappings"]["properties"];
        assert!(props["kubernetes"]["properties"]["audit"].is_object(), "audit mapping kept");
        assert!(props["systemd"].is_object() && props["journald"].is_object(), "journald mapping added: {props}");
        assert!(!audit.body["template"]["mappings"]["dynamic_templates"].as_array().unwrap().is_empty());
    }
}
