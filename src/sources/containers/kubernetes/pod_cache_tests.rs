use super::*;

fn pod(uid: &str, labels: &[(&str, &str)], controller: Option<Controller>) -> PodInfo {
    PodInfo {
        namespace: "shop".into(),
        name: format!("web-{uid}"),
        uid: uid.into(),
        labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        annotations: Labels::new(),
        ip: Some("10.0.0.7".into()),
        controller,
        images: vec![("app".into(), "registry/app:1".into())],
        mirror_hash: None,
    }
}

#[test]
fn epoch_moves_only_on_changes_that_documents_show() {
    let c = PodCache::new(Duration::from_secs(60), &[]);
    let e0 = c.epoch();
    c.apply_pod(pod("u1", &[("app", "web")], None));
    let e1 = c.epoch();
    assert!(e1 > e0);
    c.apply_pod(pod("u1", &[("app", "web")], None));
    assert_eq!(c.epoch(), e1, "same pod again: nothing to rebuild");
    c.apply_pod(pod("u1", &[("app", "web"), ("tier", "front")], None));
    assert!(c.epoch() > e1);
    assert_eq!(c.lookup(Some("u1"), None, None).unwrap().pod.labels.len(), 2);
}

#[test]
fn owners_name_the_workload_once_known() {
    let c = PodCache::new(Duration::from_secs(60), &[]);
    c.apply_pod(pod("u1", &[], Some(Controller::ReplicaSet("web-5d9f".into()))));
    c.apply_pod(pod("u2", &[], Some(Controller::Job("nightly-29000".into()))));
    assert_eq!(c.lookup(Some("u1"), None, None).unwrap().deployment, None);
    c.apply_owner(OwnerMap::ReplicaSets, "shop", "web-5d9f", Some("web".into()));
    c.apply_owner(OwnerMap::Jobs, "shop", "nightly-29000", Some("nightly".into()));
    c.apply_namespace("shop", [("team".to_string(), "payments".to_string())].into());
    let m = c.lookup(Some("u1"), None, None).unwrap();
    assert_eq!(m.deployment.as_deref(), Some("web"));
    assert_eq!(m.namespace_labels.unwrap().get("team").map(String::as_str), Some("payments"));
    assert_eq!(c.lookup(Some("u2"), None, None).unwrap().cronjob.as_deref(), Some("nightly"));
}

#[test]
fn deleted_pods_stay_for_the_retention() {
    let c = PodCache::new(Duration::from_secs(60), &[]);
    let t0 = Instant::now();
    c.apply_pod(pod("u1", &[], None));
    c.delete_pod("u1", t0);
    assert_eq!(c.expire(t0 + Duration::from_secs(59)), 0);
    assert!(c.lookup(Some("u1"), None, None).is_some());
    assert!(c.lookup(None, Some("shop"), Some("web-u1")).is_some());
    assert_eq!(c.expire(t0 + Duration::from_secs(60)), 1);
    assert!(c.lookup(Some("u1"), None, None).is_none());
    assert!(c.lookup(None, Some("shop"), Some("web-u1")).is_none());
    assert_eq!(c.pods_cached(), 0);
}

#[test]
fn ready_only_once_every_watch_has_listed_once() {
    // A line read after the pods are listed but before the namespaces and
    // ReplicaSets would miss its namespace labels and its Deployment.
    let c = PodCache::new(Duration::from_secs(60), &[]);
    c.pods_relisted(&HashSet::new(), Instant::now());
    c.namespaces_relisted(&HashSet::new());
    c.owners_relisted(OwnerMap::ReplicaSets, &HashSet::new());
    assert!(!c.wait_ready(Duration::ZERO), "the Jobs are not listed yet");
    c.owners_relisted(OwnerMap::Jobs, &HashSet::new());
    assert!(c.wait_ready(Duration::ZERO));
    // Later relists change nothing.
    c.owners_relisted(OwnerMap::Jobs, &HashSet::new());
    assert!(c.wait_ready(Duration::ZERO));
}

#[test]
fn a_relist_marks_the_missing_pods_deleted() {
    let c = PodCache::new(Duration::from_secs(1), &[]);
    let t0 = Instant::now();
    c.apply_pod(pod("u1", &[], None));
    c.apply_pod(pod("u2", &[], None));
    c.pods_relisted(&["u2".to_string()].into(), t0);
    assert!(c.pods_synced());
    assert_eq!(c.expire(t0 + Duration::from_secs(1)), 1);
    assert!(c.lookup(Some("u2"), None, None).is_some());
}

#[test]
fn a_static_pod_is_found_by_its_config_hash() {
    let c = PodCache::new(Duration::from_secs(1), &[]);
    let mut p = pod("api-uid", &[], None);
    p.mirror_hash = Some("3f9a".into());
    c.apply_pod(p);
    assert_eq!(c.lookup(Some("3f9a"), None, None).unwrap().pod.uid, "api-uid");
}

#[test]
fn only_allow_listed_annotations_are_kept() {
    let c = PodCache::new(Duration::from_secs(1), &["example.com/*".to_string()]);
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "p", "namespace": "n", "uid": "u",
            "annotations": {"example.com/owner": "ops", "kubectl.kubernetes.io/last-applied-configuration": "{}"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "db", "uid": "s", "controller": true}]},
        "spec": {"containers": [{"name": "c", "image": "db:16"}], "initContainers": [{"name": "i", "image": "busybox"}]},
        "status": {"podIP": "10.1.2.3"}
    }))
    .unwrap();
    let info = PodInfo::from_pod(&pod, |k| c.keep_annotation(k)).unwrap();
    assert_eq!(info.annotations.keys().collect::<Vec<_>>(), ["example.com/owner"]);
    assert_eq!(info.controller, Some(Controller::StatefulSet("db".into())));
    assert_eq!(info.image("i"), Some("busybox"));
    assert_eq!(info.ip.as_deref(), Some("10.1.2.3"));
}
