//! Index templates, installed idempotently at start-up (PUT replaces a template
//! with the same name). Mappings are explicit and keep to core field types; where
//! user payloads live they are `enabled: false` or `dynamic: false`, so a strange
//! object can never cause a mapping explosion or a mapping conflict.
//!
//! Each normalizer owns the mapping of the fields it writes; this module adds the
//! fields every document shares and the settings.

use elasticsearch::http::Method;
use serde_json::{json, Value};

use super::client::EsClient;
use super::retry::{Backoff, RequestFailure};
use super::service::Cancelled;
use crate::config::{IndexPatterns, RetryConfig, TemplateSettings};
use crate::index_pattern::IndexPattern;
use crate::shutdown::Shutdown;

#[derive(Debug, Clone)]
pub struct Template {
    pub name: String,
    pub body: Value,
}

/// Fields every document has (DESIGN.md, "The document shape").
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

fn dead_letter_properties() -> Value {
    json!({
        "error": { "properties": {
            "type": { "type": "keyword" },
            "message": { "type": "text" }
        }},
        "dead_letter": { "properties": {
            "source": { "type": "keyword" },
            "index": { "type": "keyword" },
            "id": { "type": "keyword" },
            "status": { "type": "long" }
        }}
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

pub fn template(
    pattern: &IndexPattern,
    settings: &TemplateSettings,
    specific: Value,
    dynamic_templates: Value,
) -> Template {
    let mut properties = common_properties();
    merge(&mut properties, specific);
    Template {
        name: template_name(pattern),
        body: json!({
            "index_patterns": [pattern.wildcard()],
            "priority": 200,
            "_meta": { "managed_by": "kube-log-gateway" },
            "template": {
                "settings": {
                    "index": {
                        "number_of_shards": settings.number_of_shards,
                        "number_of_replicas": settings.number_of_replicas,
                        "refresh_interval": settings.refresh_interval,
                        "mapping": { "total_fields": { "limit": 2000 } }
                    }
                },
                "mappings": {
                    // Unknown fields stay in _source but are not indexed.
                    "dynamic": false,
                    "dynamic_templates": dynamic_templates,
                    "properties": properties
                }
            }
        }),
    }
}

/// Every template the gateway uses.
pub fn all(patterns: &IndexPatterns, settings: &TemplateSettings) -> Vec<Template> {
    let all = [
        template(
            &patterns.audit,
            settings,
            crate::normalize::audit::mapping_properties(),
            crate::normalize::audit::dynamic_templates(),
        ),
        template(&patterns.containers, settings, crate::normalize::container::mapping_properties(), json!([])),
        template(&patterns.dead_letter, settings, dead_letter_properties(), json!([])),
        template(&patterns.kubelet, settings, crate::normalize::journald::mapping_properties(), json!([])),
    ];
    // Two sources may share an index pattern: one template then carries both
    // mappings (a second PUT of the same name would replace the first).
    let mut out: Vec<Template> = Vec::new();
    for t in all {
        match out.iter_mut().find(|o| o.name == t.name) {
            Some(existing) => {
                let (mappings, extra) = (&mut existing.body["template"]["mappings"], &t.body["template"]["mappings"]);
                merge(&mut mappings["properties"], extra["properties"].clone());
                if let (Some(mine), Some(theirs)) =
                    (mappings["dynamic_templates"].as_array_mut(), extra["dynamic_templates"].as_array())
                {
                    mine.extend(theirs.iter().cloned());
                }
            }
            None => out.push(t),
        }
    }
    out
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
/// A 4xx is a configuration problem (e.g. a user without `manage_index_templates`):
/// it is logged as an error and retried too, since writing without templates
/// would create indices with the wrong mappings.
pub async fn install_until_done(
    client: &EsClient,
    templates: &[Template],
    retry: &RetryConfig,
    shutdown: &Shutdown,
) -> Result<(), Cancelled> {
    let mut backoff = Backoff::new(retry);
    loop {
        let at = client.current_url().clone();
        match install(client, templates).await {
            Ok(()) => return Ok(()),
            Err(e) => {
                match &e {
                    RequestFailure::Status { status, .. } if (400..500).contains(status) && *status != 429 => {
                        tracing::error!(url = %at, "Elasticsearch refused an index template (check the credentials' privileges): {e}")
                    }
                    _ => tracing::warn!(url = %at, "cannot install index templates yet, will retry: {e}"),
                }
                if matches!(e, RequestFailure::Transport(_) | RequestFailure::Status { status: 500..=599, .. }) {
                    let current = client.current_index();
                    client.fail_over(current);
                }
            }
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

    #[test]
    fn names_and_patterns() {
        let p = IndexPattern::parse("audit-%Y.%m.%d").unwrap();
        assert_eq!(template_name(&p), "kube-log-gateway-audit");
        let t = template(&p, &TemplateSettings::default(), json!({}), json!([]));
        assert_eq!(t.body["index_patterns"], json!(["audit-*"]));
        assert_eq!(t.body["template"]["mappings"]["dynamic"], json!(false));
        assert_eq!(t.body["template"]["mappings"]["properties"]["@timestamp"]["type"], "date_nanos");
    }

    #[test]
    fn sources_sharing_a_pattern_share_one_template_with_both_mappings() {
        let p = |s: &str| IndexPattern::parse(s).unwrap();
        let patterns = IndexPatterns {
            audit: p("audit-%Y.%m.%d"),
            kubelet: p("audit-%Y.%m.%d"),
            containers: p("containers-%Y.%m.%d"),
            dead_letter: p("deadletter-%Y.%m.%d"),
        };
        let all = all(&patterns, &TemplateSettings::default());
        assert_eq!(all.len(), 3);
        let audit = all.iter().find(|t| t.name == "kube-log-gateway-audit").unwrap();
        let props = &audit.body["template"]["mappings"]["properties"];
        assert!(props["kubernetes"]["properties"]["audit"].is_object(), "audit mapping kept");
        assert!(props["systemd"].is_object() && props["journald"].is_object(), "journald mapping added: {props}");
        assert!(!audit.body["template"]["mappings"]["dynamic_templates"].as_array().unwrap().is_empty());
    }

    #[test]
    fn merge_is_deep() {
        let mut a = json!({"event": {"properties": {"a": 1}}});
        merge(&mut a, json!({"event": {"properties": {"b": 2}}}));
        assert_eq!(a, json!({"event": {"properties": {"a": 1, "b": 2}}}));
    }
}
