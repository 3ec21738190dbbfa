//! Kubernetes metadata from a container log's path.
//!
//! The kubelet names the symlink `/var/log/containers/<pod>_<namespace>_<container>-<64-hex id>.log`
//! and points it at `/var/log/pods/<namespace>_<pod>_<uid>/<container>/<restart>.log`.
//! Pod and namespace names cannot contain `_`, so `_` splits them safely. The
//! kubelet cuts the symlink name at 255 bytes, which truncates the container id
//! (or even the container name) at the right end; the symlink target is then the
//! reliable source, and the only source of the pod uid.

use std::path::Path;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Metadata {
    pub namespace: Option<String>,
    pub pod_name: Option<String>,
    pub pod_uid: Option<String>,
    pub container_name: Option<String>,
    pub container_id: Option<String>,
    /// The file name was cut at 255 bytes, so the container id is incomplete.
    pub name_truncated: bool,
}

impl Metadata {
    /// `path` is the path that matched the configured glob (usually the
    /// symlink); `target` the file it resolves to, if different.
    pub fn from_paths(path: &Path, target: Option<&Path>) -> Metadata {
        let mut meta = path.file_name().and_then(|n| n.to_str()).map(parse_file_name).unwrap_or_default();
        if let Some(pods) = target.and_then(parse_pods_path) {
            // The target cannot be truncated: it wins.
            if let (Some(name), true) = (&pods.container_name, meta.name_truncated) {
                // The file name was `<pod>_<ns>_<container>-<cut id>`: with the true
                // container name known, the rest is the id's head.
                if let Some(file) = path.file_name().and_then(|n| n.to_str()) {
                    let stem = file.strip_suffix(".log").unwrap_or(file);
                    let prefix = format!(
                        "{}_{}_{}-",
                        pods.pod_name.as_deref().unwrap_or(""),
                        pods.namespace.as_deref().unwrap_or(""),
                        name
                    );
                    meta.container_id = stem.strip_prefix(&prefix).filter(|s| !s.is_empty()).map(str::to_string);
                }
            }
            meta.namespace = pods.namespace;
            meta.pod_name = pods.pod_name;
            meta.pod_uid = pods.pod_uid;
            meta.container_name = pods.container_name;
        }
        meta
    }
}

fn is_hex64(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// `<pod>_<namespace>_<container>-<64-hex id>.log`, read from the right.
pub fn parse_file_name(name: &str) -> Metadata {
    let stem = name.strip_suffix(".log").unwrap_or(name);
    let mut meta = Metadata::default();
    let (head, id) = match stem.rsplit_once('-') {
        Some((head, id)) if is_hex64(id) => (head, Some(id)),
        _ => (stem, None),
    };
    // head = <pod>_<namespace>_<container> (when id is whole) or a truncated name.
    let mut parts = head.splitn(3, '_');
    let (pod, ns, rest) = (parts.next(), parts.next(), parts.next());
    let (Some(pod), Some(ns), Some(rest)) = (pod, ns, rest) else {
        return meta;
    };
    meta.pod_name = Some(pod.to_string());
    meta.namespace = Some(ns.to_string());
    match id {
        Some(id) => {
            meta.container_name = Some(rest.to_string());
            meta.container_id = Some(id.to_string());
        }
        None => {
            // Cut at 255 bytes: `<container>-<head of id>` or a cut container name.
            // Container names are DNS labels (may contain `-`), ids are hex: the
            // last `-` before an all-hex tail is the likeliest split.
            meta.name_truncated = name.len() >= 250 || !name.ends_with(".log");
            match rest.rsplit_once('-') {
                Some((c, id)) if !id.is_empty() && id.bytes().all(|b| b.is_ascii_hexdigit()) => {
                    meta.container_name = Some(c.to_string());
                    meta.container_id = Some(id.to_string());
                }
                _ => meta.container_name = Some(rest.to_string()),
            }
        }
    }
    meta
}

struct PodsPath {
    namespace: Option<String>,
    pod_name: Option<String>,
    pod_uid: Option<String>,
    container_name: Option<String>,
}

/// `.../pods/<namespace>_<pod>_<uid>/<container>/<n>.log`.
fn parse_pods_path(target: &Path) -> Option<PodsPath> {
    let mut comps = target.components().rev();
    let _file = comps.next()?;
    let container = comps.next()?.as_os_str().to_str()?;
    let pod_dir = comps.next()?.as_os_str().to_str()?;
    let mut parts = pod_dir.splitn(3, '_');
    let (ns, pod, uid) = (parts.next()?, parts.next()?, parts.next()?);
    if ns.is_empty() || pod.is_empty() || uid.is_empty() || container.is_empty() {
        return None;
    }
    Some(PodsPath {
        namespace: Some(ns.into()),
        pod_name: Some(pod.into()),
        pod_uid: Some(uid.into()),
        container_name: Some(container.into()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn whole_name() {
        let m = parse_file_name(&format!("web-7d4b9c-xk2lp_shop_nginx-proxy-{ID}.log"));
        assert_eq!(m.pod_name.as_deref(), Some("web-7d4b9c-xk2lp"));
        assert_eq!(m.namespace.as_deref(), Some("shop"));
        assert_eq!(m.container_name.as_deref(), Some("nginx-proxy"));
        assert_eq!(m.container_id.as_deref(), Some(ID));
        assert!(!m.name_truncated);
    }

    #[test]
    fn truncated_name_uses_the_target() {
        let pod = "p".repeat(200);
        let full = format!("{pod}_kube-system_app-{ID}");
        let cut = format!("{}.log", &full[..251]);
        assert_eq!(cut.len(), 255);
        let target = format!("/var/log/pods/kube-system_{pod}_1b2c-uid/app/0.log");
        let m = Metadata::from_paths(Path::new(&format!("/var/log/containers/{cut}")), Some(Path::new(&target)));
        assert_eq!(m.pod_name.as_deref(), Some(pod.as_str()));
        assert_eq!(m.namespace.as_deref(), Some("kube-system"));
        assert_eq!(m.container_name.as_deref(), Some("app"));
        assert_eq!(m.pod_uid.as_deref(), Some("1b2c-uid"));
        assert!(m.name_truncated);
        let id = m.container_id.unwrap();
        assert!(ID.starts_with(&id) && id.len() < 64, "{id}");
    }

    #[test]
    fn target_gives_the_uid() {
        let m = Metadata::from_paths(
            Path::new(&format!("/var/log/containers/web_shop_nginx-{ID}.log")),
            Some(Path::new("/var/log/pods/shop_web_5f1e-77/nginx/3.log")),
        );
        assert_eq!(m.pod_uid.as_deref(), Some("5f1e-77"));
        assert_eq!(m.container_id.as_deref(), Some(ID));
        assert_eq!(m.container_name.as_deref(), Some("nginx"));
    }

    #[test]
    fn unrelated_names_give_nothing() {
        assert_eq!(parse_file_name("syslog.log"), Metadata::default());
    }
}
