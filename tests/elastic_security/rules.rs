//! The activity each family of Elastic Security's prebuilt Kubernetes rules watches
//! for, played against a real kube-apiserver whose audit webhook points at the
//! gateway; the documents must answer the rules' queries through their pattern
//! `logs-kubernetes.audit_logs-*`, with the rules' field names and values.

use std::time::{Duration, Instant};

use serde_json::json;

use super::common::es::{require_es, Es};
use super::common::kube_apiserver::{binaries_built_or_skip, kube_webhook_setup, KubeApiserver, Webhook};
use super::queries::*;

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
