//! The rules' queries in query DSL (this Elasticsearch has no KQL, EQL or ES|QL),
//! the fields EQL and ES|QL rules name, and a kube-apiserver request helper.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::common::es::Es;
use super::common::kube_apiserver::KubeApiserver;

/// The rules' index pattern.
pub(crate) const RULES_PATTERN: &str = "logs-kubernetes.audit_logs-*";

/// Every field the EQL and ES|QL Kubernetes rules name (EQL and ES|QL fail on an
/// unmapped field; this Elasticsearch has neither module, so mapping is checked).
pub(crate) const EQL_ESQL_FIELDS: &[&str] = &[
    "data_stream.dataset",
    "data_stream.namespace",
    "event.action",
    "event.dataset",
    "event.original",
    "event.ingested",
    "kubernetes.audit.annotations.authorization_k8s_io/decision",
    "kubernetes.audit.impersonatedUser.username",
    "kubernetes.audit.level",
    "kubernetes.audit.objectRef.name",
    "kubernetes.audit.objectRef.namespace",
    "kubernetes.audit.objectRef.resource",
    "kubernetes.audit.objectRef.subresource",
    "kubernetes.audit.requestURI",
    "kubernetes.audit.responseObject.rules.resources",
    "kubernetes.audit.responseObject.rules.verbs",
    "kubernetes.audit.responseStatus.code",
    "kubernetes.audit.responseStatus.message",
    "kubernetes.audit.sourceIPs",
    "kubernetes.audit.stage",
    "kubernetes.audit.user.groups",
    "kubernetes.audit.user.username",
    "kubernetes.audit.userAgent",
    "kubernetes.audit.verb",
    "source.ip",
    "user.name",
    "user_agent.original",
];

/// A kube-apiserver request that must answer `want`.
pub(crate) async fn kube(
    api: &KubeApiserver,
    method: reqwest::Method,
    path: &str,
    token: Option<&str>,
    body: Option<(&str, Value)>,
    headers: &[(&str, &str)],
    want: u16,
) -> Value {
    let mut req = api.client().request(method.clone(), api.url(path)).header("user-agent", "curl/8.5.0");
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    if let Some((content_type, b)) = body {
        req = req.header("content-type", content_type).body(b.to_string());
    }
    let resp = req.send().await.unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_default();
    assert_eq!(status, want, "{method} {path}: {text}");
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

/// The documents of this cluster that a rule's query (`must`, in query DSL, as the
/// rule's KQL/EQL reads) finds through the rules' pattern, waiting for them.
pub(crate) async fn rule_hits(cluster: &str, rule: &str, must: Vec<Value>) -> Vec<Value> {
    let mut filter = vec![
        json!({"term": {"orchestrator.cluster.name": cluster}}),
        json!({"term": {"data_stream.dataset": "kubernetes.audit_logs"}}),
    ];
    filter.extend(must);
    let query = json!({"bool": {"filter": filter}});
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let hits = Es::test().search(RULES_PATTERN, query.clone()).await;
        if !hits.is_empty() {
            return hits;
        }
        assert!(Instant::now() < deadline, "rule {rule}: no document answers {query}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

pub(crate) fn term(field: &str, value: impl Into<Value>) -> Value {
    json!({"term": {field: value.into()}})
}

pub(crate) fn terms(field: &str, values: &[&str]) -> Value {
    json!({"terms": {field: values}})
}

pub(crate) fn allowed() -> Value {
    term("kubernetes.audit.annotations.authorization_k8s_io/decision", "allow")
}

/// A certificate signing request in PEM, for a client certificate.
pub(crate) fn csr_pem() -> String {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(rcgen::DnType::CommonName, "mallory");
    params.serialize_request(&key).unwrap().pem().unwrap()
}
