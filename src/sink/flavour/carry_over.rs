//! Carrying an index over from an earlier configuration.
//!
//! A spooled document keeps the index it was made for: the index is part of
//! what makes a resend a 409, so moving the document elsewhere could store it
//! twice. After `elasticsearch.indices` changes, documents spooled before the
//! change still name indices of the old pattern, which no template installed
//! now covers; an index created by their first bulk request would get
//! dynamic mappings (`date` instead of `date_nanos`, text instead of keyword)
//! for good.
//!
//! So such an index is created here first, with the settings, mappings and
//! aliases of the template of the document's source in the current
//! configuration (a dead letter gets the dead letters'), and only then does
//! the [`Gate`] let its documents through. An index that already exists is
//! left as it is. No template is left behind: the index is all that needs it.

use elasticsearch::http::Method;
use serde_json::json;
use tokio::sync::mpsc;

use super::templates::Template;
use super::Flavour;
use crate::shutdown::Shutdown;
use crate::sink::config::RetryConfig;
use crate::sink::protocol::gate::{Carry, Gate};
use crate::sink::protocol::retry::Backoff;
use crate::sink::transport::{EsClient, RequestFailure};

/// What carrying an index over needs: the templates as installed (lifecycle
/// attached) and the dead letters' wildcard, to tell theirs apart.
pub struct Installed {
    pub flavour: Flavour,
    pub templates: Vec<Template>,
    pub dead_letter_wildcard: String,
}

impl Installed {
    /// The template whose mappings a carried-over index gets.
    pub fn template_for(&self, carry: &Carry) -> Option<&Template> {
        match carry.dead_letter {
            true => self.templates.iter().find(|t| t.wildcard == self.dead_letter_wildcard),
            false => self.templates.iter().find(|t| t.sources.contains(&carry.source)),
        }
    }
}

/// The body of `PUT /<index>`: what the template would have given it.
pub fn index_body(template: &Template) -> serde_json::Value {
    let t = &template.body["template"];
    json!({ "settings": t["settings"], "mappings": t["mappings"], "aliases": t["aliases"] })
}

/// How one `PUT /<index>` ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Created {
    Created,
    /// It was there already (made before the change, by its old template).
    Existed,
    /// The server will never create it as asked (its words): the documents go
    /// on, and whatever they meet there is the bulk outcome's to handle.
    Refused(String),
}

/// Reads the answer to `PUT /<index>`; `Err` is worth another attempt.
pub fn created(reply: Result<crate::sink::transport::Reply, RequestFailure>) -> Result<Created, RequestFailure> {
    let reply = reply?;
    let body = String::from_utf8_lossy(&reply.body).into_owned();
    match reply.status {
        200 => Ok(Created::Created),
        400 if body.contains("resource_already_exists_exception") => Ok(Created::Existed),
        400 => Ok(Created::Refused(super::reason_of(&body))),
        status => Err(RequestFailure::Status { status, body: body.chars().take(2000).collect() }),
    }
}

/// Carries over each index the batcher asks for, until the batcher is gone.
pub async fn serve(
    client: std::sync::Arc<EsClient>,
    installed: Installed,
    mut asked: mpsc::UnboundedReceiver<Carry>,
    gate: std::sync::Arc<Gate>,
    retry: RetryConfig,
    shutdown: Shutdown,
) {
    while let Some(carry) = asked.recv().await {
        let Some(template) = installed.template_for(&carry) else {
            tracing::error!(index = %carry.index, source = %carry.source, "spooled documents name index {} outside \
                every current index pattern, and no source of this gateway maps {} documents: they are sent \
                as they are", carry.index, carry.source);
            gate.mark_ready(&carry.index);
            continue;
        };
        let body = bytes::Bytes::from(serde_json::to_vec(&index_body(template)).expect("an index body serializes"));
        let mut backoff = Backoff::new(&retry);
        let outcome = loop {
            let path = format!("/{}", carry.index);
            let (_, reply) = client.send(Method::Put, &path, Some(body.clone()), "application/json").await;
            match created(reply) {
                Ok(outcome) => break outcome,
                Err(e) => tracing::warn!(index = %carry.index, "cannot create index {} for spooled documents yet, \
                    will retry: {e}", carry.index),
            }
            if !backoff.wait(&shutdown).await {
                return;
            }
        };
        let (index, source, name) = (&carry.index, carry.source, &template.name);
        match outcome {
            Created::Created => tracing::warn!(
                index = %index, source = %source, template = %name,
                "spooled {source} documents name index {index}, which no current index pattern covers (they \
                were made before elasticsearch.indices changed): created it with the mappings and settings of \
                {name} on {}; they are delivered there, exactly once, and new documents go to the current pattern",
                installed.flavour
            ),
            Created::Existed => tracing::warn!(
                index = %index, source = %source,
                "spooled {source} documents name index {index}, which no current index pattern covers (they \
                were made before elasticsearch.indices changed): it exists, and they are delivered there, \
                exactly once; new documents go to the current pattern"
            ),
            Created::Refused(reason) => tracing::error!(
                index = %index, source = %source,
                "spooled {source} documents name index {index}, which no current index pattern covers, and \
                {} refused to create it with the mappings of {name}: they are sent as they are: {reason}",
                installed.flavour
            ),
        }
        gate.mark_ready(index);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::document::SourceKind;
    use crate::sink::transport::Reply;

    fn reply(status: u16, body: &str) -> Result<Reply, RequestFailure> {
        Ok(Reply { status, body: bytes::Bytes::copy_from_slice(body.as_bytes()) })
    }

    fn template(name: &str, wildcard: &str, sources: Vec<SourceKind>) -> Template {
        Template {
            name: name.into(),
            wildcard: wildcard.into(),
            sources,
            body: json!({
                "index_patterns": [wildcard],
                "priority": 200,
                "template": {
                    "settings": {"index": {"refresh_interval": "1s"}},
                    "aliases": {"logs-kubernetes.audit_logs-default": {}},
                    "mappings": {"dynamic": false, "properties": {"@timestamp": {"type": "date_nanos"}}}
                }
            }),
        }
    }

    #[test]
    fn the_index_gets_its_sources_template_or_the_dead_letters() {
        let installed = Installed {
            flavour: Flavour { product: super::super::Product::Elasticsearch, version: None },
            templates: vec![
                template("kube-log-gateway-klg-audit", "klg-audit-*", vec![SourceKind::Audit]),
                template("kube-log-gateway-deadletter", "deadletter-*", vec![]),
            ],
            dead_letter_wildcard: "deadletter-*".into(),
        };
        let carry = |dead_letter| Carry { source: SourceKind::Audit, index: "audit-2026.01.01".into(), dead_letter };
        assert_eq!(installed.template_for(&carry(false)).unwrap().name, "kube-log-gateway-klg-audit");
        assert_eq!(installed.template_for(&carry(true)).unwrap().name, "kube-log-gateway-deadletter");
        let other = Carry { source: SourceKind::Journald, index: "kubelet-1".into(), dead_letter: false };
        assert!(installed.template_for(&other).is_none());
        let body = index_body(&installed.templates[0]);
        assert_eq!(body["mappings"]["properties"]["@timestamp"]["type"], "date_nanos");
        assert_eq!(body["aliases"], json!({"logs-kubernetes.audit_logs-default": {}}));
        assert_eq!(body["settings"]["index"]["refresh_interval"], "1s");
        assert!(body.get("index_patterns").is_none() && body.get("priority").is_none());
    }

    /// The answers of Elasticsearch 8.19 to `PUT /<index>`, literally.
    #[test]
    fn created_existed_refused_or_retried() {
        let ok = r#"{"acknowledged":true,"shards_acknowledged":true,"index":"audit-2026.01.01"}"#;
        assert_eq!(created(reply(200, ok)).unwrap(), Created::Created);
        let exists = r#"{"error":{"root_cause":[{"type":"resource_already_exists_exception","reason":"index [audit-2026.01.01/3cV2] already exists","index_uuid":"3cV2","index":"audit-2026.01.01"}],"type":"resource_already_exists_exception","reason":"index [audit-2026.01.01/3cV2] already exists","index_uuid":"3cV2","index":"audit-2026.01.01"},"status":400}"#;
        assert_eq!(created(reply(400, exists)).unwrap(), Created::Existed);
        let bad = r#"{"error":{"root_cause":[{"type":"invalid_index_name_exception","reason":"Invalid index name [Audit], must be lowercase","index_uuid":"_na_","index":"Audit"}],"type":"invalid_index_name_exception","reason":"Invalid index name [Audit], must be lowercase","index_uuid":"_na_","index":"Audit"},"status":400}"#;
        assert!(matches!(created(reply(400, bad)).unwrap(), Created::Refused(r) if r.contains("must be lowercase")));
        assert!(created(reply(503, "{}")).is_err(), "a busy server is asked again");
    }
}
