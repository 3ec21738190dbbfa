//! What Elastic Security needs of the gateway's audit documents, against the real
//! Elasticsearch: the documents are reached through the rules' pattern
//! `logs-kubernetes.audit_logs-*`, and `event.ingested` is the time a document
//! reached Elasticsearch, also for documents held in the spool through an outage
//! (the rules look back a few minutes on `event.ingested`).

mod common;

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use common::*;
use kube_log_gateway::sample;
use serde_json::{json, Value};

const BATCH: usize = 20;

/// Documents of `index` whose auditID starts with `prefix`, and of those the
/// ones with `event.ingested` before `before` (exact counts).
async fn ingested_before(es: &Es, index: &str, prefix: &str, before: DateTime<Utc>) -> (u64, u64) {
    let count = |query: Value| {
        let es = es.clone();
        let index = index.to_string();
        async move {
            let (status, v) =
                es.json(reqwest::Method::POST, &format!("/{index}/_count"), Some(json!({"query": query}))).await;
            assert_eq!(status, 200, "{v}");
            v["count"].as_u64().unwrap()
        }
    };
    let prefixed = json!({"prefix": {"kubernetes.audit.auditID": prefix}});
    let all = count(prefixed.clone()).await;
    let early = count(json!({"bool": {"filter": [prefixed,
        {"range": {"event.ingested": {"lt": before.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)}}}]}}))
    .await;
    (all, early)
}

#[tokio::test]
async fn after_two_minutes_without_elasticsearch_every_held_document_is_stamped_when_it_landed() {
    require_es().await;
    let es = EsInstance::start();
    let mut setup = WebhookSetup::new("ingested");
    setup.config.elasticsearch.urls = vec![es.url()];
    let _gw = setup.start();
    let client = tls_client(&setup.certs(), true);
    let url = setup.url("/audit");
    let index = setup.audit_indices();
    let private = Es::at(&es.url());
    let mut sent = 0usize;
    let post = |prefix: String| {
        let body = sample::event_list(&prefix, BATCH, 10, 512);
        let (client, url) = (client.clone(), url.clone());
        async move {
            let (status, _, body) = post_json(&client, &url, body).await;
            assert_eq!(status, 200, "{prefix}: {body}");
        }
    };

    // Up: landed and stamped before the outage.
    for b in 0..5 {
        post(format!("before-b{b}")).await;
        sent += BATCH;
    }
    assert_eq!(wait_for_count_at(&es.url(), &index, sent as u64, Duration::from_secs(120)).await, sent as u64);
    es.stop();
    let stopped = Utc::now();

    // Down for at least two minutes, under load: 80 events/s go to the spool.
    let down = Instant::now();
    let mut b = 0;
    while down.elapsed() < Duration::from_secs(125) {
        post(format!("during-b{b}")).await;
        sent += BATCH;
        b += 1;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let during = (b * BATCH) as u64;
    let back = Utc::now();
    es.resume();

    // Back: everything arrives, once, stamped after Elasticsearch came back.
    let want = sent as u64;
    let got = wait_for_count_at(&es.url(), &index, want, Duration::from_secs(300)).await;
    assert_eq!(got, want, "every acknowledged event present: {}", setup.log());
    setup.wait_spool_empty(Duration::from_secs(60)).await;
    assert_eq!(private.count(&index).await, want, "nothing arrived twice");
    let twice = private.terms(&index, "kubernetes.audit.auditID", 2, 10).await;
    assert!(twice.is_empty(), "auditIDs stored twice: {twice:?}");

    let (n, early) = ingested_before(&private, &index, "during-", back).await;
    assert_eq!((n, early), (during, 0), "every held document stamped after {back}");
    let (n, early) = ingested_before(&private, &index, "before-", stopped).await;
    assert_eq!((n, early), (5 * BATCH as u64, 5 * BATCH as u64), "documents sent before the outage keep their time");

    // The rules' pattern reaches them, with the integration's dataset.
    let alias = "logs-kubernetes.audit_logs-kube_log_gateway";
    let (status, v) = private.json(reqwest::Method::GET, &format!("/{index}/_alias/{alias}"), None).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(private.count("logs-kubernetes.audit_logs-*").await, want);
    let (status, v) = private
        .json(
            reqwest::Method::POST,
            "/logs-kubernetes.audit_logs-*/_count",
            Some(json!({"query": {"bool": {"filter": [
                {"term": {"data_stream.dataset": "kubernetes.audit_logs"}},
                {"term": {"event.dataset": "kubernetes.audit_logs"}},
                {"range": {"event.ingested": {"gte": "now-15m"}}}]}}})),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["count"].as_u64().unwrap(), want);
    eprintln!("{during} events held through {:?} without Elasticsearch", back - stopped);
}

/// The rules' index pattern.
const RULES_PATTERN: &str = "logs-kubernetes.audit_logs-*";

/// Every field the EQL and ES|QL Kubernetes rules name (EQL and ES|QL fail on an
/// unmapped field; this Elasticsearch has neither module, so mapping is checked).
const EQL_ESQL_FIELDS: &[&str] = &[
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
async fn kube(
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
async fn rule_hits(cluster: &str, rule: &str, must: Vec<Value>) -> Vec<Value> {
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

fn term(field: &str, value: impl Into<Value>) -> Value {
    json!({"term": {field: value.into()}})
}

fn terms(field: &str, values: &[&str]) -> Value {
    json!({"terms": {field: values}})
}

fn allowed() -> Value {
    term("kubernetes.audit.annotations.authorization_k8s_io/decision", "allow")
}

/// A certificate signing request in PEM, for a client certificate.
fn csr_pem() -> String {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(rcgen::DnType::CommonName, "mallory");
    params.serialize_request(&key).unwrap().pem().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_activity_elastic_security_rules_watch_for_is_found_through_their_pattern() {
    use reqwest::Method;
    if !binaries_built_or_skip() {
        return;
    }
    require_es().await;
    let cluster = format!("elastic-rules-{}", std::process::id());
    let mut setup = kube_webhook_setup("elastic-rules");
    setup.config.cluster_name = Some(cluster.clone());
    let _gw = setup.start();
    // Anonymous requests on (the script turns them off), for the anonymous-access rules.
    let api = KubeApiserver::start_with_args(Some(Webhook::of(&setup)), &["--anonymous-auth=true"]);
    let admin = api.var("KUBE_ADMIN_TOKEN").to_string();
    let a = Some(admin.as_str());
    let j = "application/json";
    let ns = "klg-sec";
    kube(
        &api,
        Method::POST,
        "/api/v1/namespaces",
        a,
        Some((j, json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}))),
        &[],
        201,
    )
    .await;
    kube(
        &api,
        Method::POST,
        &format!("/api/v1/namespaces/{ns}/serviceaccounts"),
        a,
        Some((j, json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "klg-sa"}}))),
        &[],
        201,
    )
    .await;

    // Pods: privileged, host namespaces, a hostPath of /, an added capability.
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "escape"},
        "spec": {"serviceAccountName": "klg-sa", "hostPID": true, "hostNetwork": true, "hostIPC": true,
            "containers": [{"name": "c", "image": "busybox:1.36",
                "securityContext": {"privileged": true, "capabilities": {"add": ["SYS_ADMIN"]}},
                "volumeMounts": [{"name": "root", "mountPath": "/host"}]}],
            "volumes": [{"name": "root", "hostPath": {"path": "/"}}]}});
    let created = kube(&api, Method::POST, &format!("/api/v1/namespaces/{ns}/pods"), a, Some((j, pod)), &[], 201).await;
    let pod_uid = created["metadata"]["uid"].as_str().unwrap().to_string();
    // An ephemeral container, and an exec (refused by kube-apiserver after
    // authorization: the pod has no node; audited all the same).
    let debug = json!({"spec": {"ephemeralContainers": [{"name": "debugger", "image": "busybox:1.36", "targetContainerName": "c"}]}});
    kube(
        &api,
        Method::PATCH,
        &format!("/api/v1/namespaces/{ns}/pods/escape/ephemeralcontainers"),
        a,
        Some(("application/strategic-merge-patch+json", debug)),
        &[],
        200,
    )
    .await;
    let exec = format!("/api/v1/namespaces/{ns}/pods/escape/exec?command=id&container=c&stdout=true");
    let exec_status = api.client().post(api.url(&exec)).bearer_auth(&admin).send().await.unwrap().status();
    assert!(exec_status.is_client_error(), "{exec_status}");

    // RBAC: cluster-admin to a user, a Role with wildcards (then patched), a
    // RoleBinding to the service account.
    let crb = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": "mallory-admin"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "mallory"}]});
    kube(&api, Method::POST, "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", a, Some((j, crb)), &[], 201)
        .await;
    let role = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "everything"},
        "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list"]}]});
    kube(
        &api,
        Method::POST,
        &format!("/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/roles"),
        a,
        Some((j, role)),
        &[],
        201,
    )
    .await;
    let wildcard = json!([{"op": "replace", "path": "/rules", "value": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]}]);
    kube(
        &api,
        Method::PATCH,
        &format!("/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/roles/everything"),
        a,
        Some(("application/json-patch+json", wildcard)),
        &[],
        200,
    )
    .await;
    let rb = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "sa-everything"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "everything"},
        "subjects": [{"kind": "ServiceAccount", "name": "klg-sa", "namespace": ns}]});
    kube(
        &api,
        Method::POST,
        &format!("/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings"),
        a,
        Some((j, rb)),
        &[],
        201,
    )
    .await;

    // A NodePort Service.
    let svc = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "exposed"},
        "spec": {"type": "NodePort", "selector": {"app": "x"}, "ports": [{"port": 80}]}});
    kube(&api, Method::POST, &format!("/api/v1/namespaces/{ns}/services"), a, Some((j, svc)), &[], 201).await;

    // Access: a TokenRequest bound to the pod, Secrets read with that token,
    // anonymous access (granted), impersonation, a CSR.
    let tr = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
        "spec": {"boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": "escape", "uid": pod_uid}}});
    let token = kube(
        &api,
        Method::POST,
        &format!("/api/v1/namespaces/{ns}/serviceaccounts/klg-sa/token"),
        a,
        Some((j, tr)),
        &[],
        201,
    )
    .await;
    let sa_token = token["status"]["token"].as_str().unwrap().to_string();
    let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db"}, "stringData": {"password": "hunter2-elastic"}});
    kube(&api, Method::POST, &format!("/api/v1/namespaces/{ns}/secrets"), a, Some((j, secret)), &[], 201).await;
    kube(&api, Method::GET, &format!("/api/v1/namespaces/{ns}/secrets/db"), Some(&sa_token), None, &[], 200).await;
    // `view` gets its rules from kube-controller-manager's aggregation, which does
    // not run here: a role of its own.
    let lister = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "pod-lister"},
        "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]}]});
    kube(&api, Method::POST, "/apis/rbac.authorization.k8s.io/v1/clusterroles", a, Some((j, lister)), &[], 201).await;
    let anon = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": "anonymous-pods"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "pod-lister"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "system:anonymous"}]});
    kube(&api, Method::POST, "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", a, Some((j, anon)), &[], 201)
        .await;
    let anonymous_list = || kube(&api, Method::GET, "/api/v1/namespaces/klg-sec/pods", None, None, &[], 200);
    // RBAC takes a moment to see the new binding.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status = api
            .client()
            .get(api.url("/api/v1/namespaces/klg-sec/pods"))
            .header("user-agent", "curl/8.5.0")
            .send()
            .await
            .unwrap()
            .status();
        if status == 200 || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    anonymous_list().await;
    kube(
        &api,
        Method::GET,
        "/api/v1/namespaces/klg-sec/pods",
        a,
        None,
        &[("Impersonate-User", "cluster-admin"), ("Impersonate-Group", "system:masters")],
        200,
    )
    .await;
    let csr = json!({"apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest", "metadata": {"name": "mallory"},
        "spec": {"request": base64::Engine::encode(&base64::engine::general_purpose::STANDARD, csr_pem()),
            "signerName": "kubernetes.io/kube-apiserver-client", "usages": ["client auth"]}});
    kube(&api, Method::POST, "/apis/certificates.k8s.io/v1/certificatesigningrequests", a, Some((j, csr)), &[], 201)
        .await;

    // Cluster changes: an admission webhook, an Event deleted.
    let webhook = json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration", "metadata": {"name": "shadow"},
        "webhooks": [{"name": "shadow.example.com", "clientConfig": {"url": "https://127.0.0.1:9/validate"},
            "rules": [{"apiGroups": ["example.com"], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["widgets"]}],
            "failurePolicy": "Ignore", "sideEffects": "None", "admissionReviewVersions": ["v1"]}]});
    kube(
        &api,
        Method::POST,
        "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations",
        a,
        Some((j, webhook)),
        &[],
        201,
    )
    .await;
    let event = json!({"apiVersion": "v1", "kind": "Event", "metadata": {"name": "evidence"},
        "involvedObject": {"kind": "Pod", "name": "escape", "namespace": ns}, "reason": "Pwned", "message": "x", "type": "Warning"});
    kube(&api, Method::POST, &format!("/api/v1/namespaces/{ns}/events"), a, Some((j, event)), &[], 201).await;
    kube(&api, Method::DELETE, &format!("/api/v1/namespaces/{ns}/events/evidence"), a, None, &[], 200).await;

    // The rules' queries, as query DSL, through their pattern.
    let pods_created = || {
        vec![allowed(), term("kubernetes.audit.objectRef.resource", "pods"), term("kubernetes.audit.verb", "create")]
    };
    let mut q = pods_created();
    q.push(term("kubernetes.audit.requestObject.spec.containers.securityContext.privileged", true));
    let hits = rule_hits(&cluster, "privileged pod created", q).await;
    let d = &hits[0];
    assert_eq!(d["kubernetes"]["audit"]["requestObject"]["spec"]["containers"][0]["image"], "busybox:1.36");
    assert_eq!(d["orchestrator"]["namespace"], ns);
    assert_eq!(d["orchestrator"]["resource"], json!({"type": "pods", "name": "escape"}));
    assert_eq!(d["event"]["dataset"], "kubernetes.audit_logs");
    for field in ["hostPID", "hostNetwork", "hostIPC"] {
        let mut q = pods_created();
        q.push(term(&format!("kubernetes.audit.requestObject.spec.{field}"), true));
        rule_hits(&cluster, field, q).await;
    }
    let mut q = pods_created();
    q.push(terms("kubernetes.audit.requestObject.spec.volumes.hostPath.path", &["/", "/proc", "/var/run/docker.sock"]));
    q.push(json!({"wildcard": {"kubernetes.audit.requestObject.spec.containers.image": "busybox*"}}));
    rule_hits(&cluster, "sensitive hostPath volume", q).await;
    let mut q = pods_created();
    q.push(terms(
        "kubernetes.audit.requestObject.spec.containers.securityContext.capabilities.add",
        &["BPF", "SYS_ADMIN", "SYS_PTRACE"],
    ));
    rule_hits(&cluster, "excessive capabilities", q).await;
    rule_hits(
        &cluster,
        "ephemeral container",
        vec![
            allowed(),
            term("kubernetes.audit.objectRef.resource", "pods"),
            term("kubernetes.audit.objectRef.subresource", "ephemeralcontainers"),
            terms("kubernetes.audit.verb", &["update", "patch"]),
        ],
    )
    .await;
    let hits = rule_hits(
        &cluster,
        "user exec to pod (EQL)",
        vec![
            allowed(),
            terms("kubernetes.audit.verb", &["get", "create"]),
            term("kubernetes.audit.objectRef.subresource", "exec"),
            terms("kubernetes.audit.stage", &["ResponseComplete", "ResponseStarted"]),
            term("kubernetes.audit.level", "Request"),
        ],
    )
    .await;
    assert_eq!(hits[0]["user"]["name"], "klg-admin");
    rule_hits(
        &cluster,
        "cluster-admin binding",
        vec![
            allowed(),
            terms("kubernetes.audit.objectRef.resource", &["clusterrolebindings", "rolebindings"]),
            term("kubernetes.audit.verb", "create"),
            term("kubernetes.audit.requestObject.roleRef.name", "cluster-admin"),
            term("kubernetes.audit.level", "RequestResponse"),
            term("kubernetes.audit.stage", "ResponseComplete"),
        ],
    )
    .await;
    rule_hits(
        &cluster,
        "role patched to wildcards (ES|QL)",
        vec![
            allowed(),
            terms("kubernetes.audit.objectRef.resource", &["roles", "clusterroles"]),
            terms("kubernetes.audit.verb", &["update", "patch"]),
            term("kubernetes.audit.level", "RequestResponse"),
            term("kubernetes.audit.stage", "ResponseComplete"),
            term("kubernetes.audit.responseObject.rules.verbs", "*"),
            term("kubernetes.audit.responseObject.rules.resources", "*"),
            json!({"exists": {"field": "kubernetes.audit.sourceIPs"}}),
        ],
    )
    .await;
    let hits = rule_hits(
        &cluster,
        "binding to a service account",
        vec![
            allowed(),
            term("kubernetes.audit.objectRef.resource", "rolebindings"),
            term("kubernetes.audit.verb", "create"),
            term("kubernetes.audit.requestObject.subjects.kind", "ServiceAccount"),
            term("orchestrator.namespace", ns),
        ],
    )
    .await;
    assert_eq!(hits[0]["kubernetes"]["audit"]["requestObject"]["roleRef"]["name"], "everything");
    rule_hits(
        &cluster,
        "NodePort service",
        vec![
            allowed(),
            term("kubernetes.audit.objectRef.resource", "services"),
            terms("kubernetes.audit.verb", &["create", "update", "patch"]),
            term("kubernetes.audit.requestObject.spec.type", "NodePort"),
        ],
    )
    .await;
    rule_hits(
        &cluster,
        "TokenRequest",
        vec![
            term("kubernetes.audit.verb", "create"),
            term("kubernetes.audit.objectRef.resource", "serviceaccounts"),
            term("kubernetes.audit.objectRef.subresource", "token"),
            term("user.name", "klg-admin"),
        ],
    )
    .await;
    // The rule also excludes 127.0.0.1 (kube-apiserver's own traffic); here every
    // client is on 127.0.0.1, so that part is checked as a value instead.
    let hits = rule_hits(
        &cluster,
        "secret read by a pod's service account",
        vec![
            terms("event.action", &["get", "list"]),
            term("kubernetes.audit.objectRef.resource", "secrets"),
            json!({"wildcard": {"user.name": "system:serviceaccount:*"}}),
            // KQL's `pod-name: esc*`, as Kibana sends it (a prefix query: the keys
            // of a flattened field take prefixes, not inner wildcards).
            json!({"query_string": {"fields": ["kubernetes.audit.user.extra.authentication.kubernetes.io/pod-name"], "query": "esc*"}}),
        ],
    )
    .await;
    let d = &hits[0];
    assert_eq!(d["user"]["name"], format!("system:serviceaccount:{ns}:klg-sa"));
    assert_eq!(d["source"]["ip"], json!(["127.0.0.1"]));
    assert_eq!(d["client"]["ip"], "127.0.0.1");
    assert_eq!(d["related"]["ip"], json!(["127.0.0.1"]));
    assert_eq!(d["kubernetes"]["audit"]["user"]["extra"]["authentication.kubernetes.io/pod-name"], json!(["escape"]));
    let hits = rule_hits(
        &cluster,
        "anonymous request authorized",
        vec![
            allowed(),
            term("kubernetes.audit.user.username", "system:anonymous"),
            json!({"exists": {"field": "user_agent.original"}}),
        ],
    )
    .await;
    assert_eq!(hits[0]["related"]["user"], json!(["system:anonymous"]));
    let hits = rule_hits(
        &cluster,
        "impersonating a privileged identity",
        vec![
            allowed(),
            term("kubernetes.audit.impersonatedUser.username", "cluster-admin"),
            term("kubernetes.audit.verb", "list"),
        ],
    )
    .await;
    assert_eq!(hits[0]["related"]["user"], json!(["klg-admin", "cluster-admin"]));
    rule_hits(
        &cluster,
        "CSR created",
        vec![
            allowed(),
            term("kubernetes.audit.objectRef.resource", "certificatesigningrequests"),
            terms("kubernetes.audit.verb", &["create", "update", "patch"]),
            term("user.name", "klg-admin"),
        ],
    )
    .await;
    let hits = rule_hits(
        &cluster,
        "admission webhook changed",
        vec![
            allowed(),
            terms(
                "kubernetes.audit.objectRef.resource",
                &["mutatingwebhookconfigurations", "validatingwebhookconfigurations"],
            ),
            terms("kubernetes.audit.verb", &["create", "update", "patch", "delete"]),
        ],
    )
    .await;
    assert_eq!(
        hits[0]["kubernetes"]["audit"]["requestObject"]["webhooks"][0]["clientConfig"]["url"],
        "https://127.0.0.1:9/validate"
    );
    rule_hits(
        &cluster,
        "events deleted (EQL)",
        vec![
            term("kubernetes.audit.verb", "delete"),
            term("kubernetes.audit.objectRef.resource", "events"),
            term("kubernetes.audit.stage", "ResponseComplete"),
        ],
    )
    .await;

    // Every field the EQL and ES|QL rules name is mapped where they look.
    let (status, caps) = Es::test()
        .json(Method::GET, &format!("/{RULES_PATTERN}/_field_caps?fields={}", EQL_ESQL_FIELDS.join(",")), None)
        .await;
    assert_eq!(status, 200, "{caps}");
    for field in EQL_ESQL_FIELDS {
        let types = caps["fields"][field].as_object().unwrap_or_else(|| panic!("{field} is not mapped: {caps}"));
        assert!(!types.contains_key("unmapped"), "{field}: {types:?}");
    }
    // Secret values never stored.
    let (status, v) = Es::test()
        .json(
            Method::POST,
            &format!("/{}/_count", setup.audit_indices()),
            Some(json!({"query": {"query_string": {"query": "\"hunter2-elastic\""}}})),
        )
        .await;
    assert_eq!((status, v["count"].as_u64()), (200, Some(0)), "{v}");
    drop(api);
    setup.delete_indices().await;
}
