//! The cache of what the API says about this node's pods: each pod's labels,
//! allow-listed annotations, IP, controlling owner and container images, the
//! labels of every namespace, and which Deployment owns each ReplicaSet and
//! which CronJob each Job. The watchers (`watch.rs`) fill it; the tailer
//! thread reads it, never waiting for the API.
//!
//! Change detection: an `epoch` counter moves whenever anything a document
//! could show changes. A file compares one number per line and looks its pod
//! up again only when it moved; then it rebuilds its fragment only if what it
//! found differs from what it had.
//!
//! Memory: per pod only what documents show (no spec, no status beyond the
//! IP, no managed fields); per ReplicaSet/Job two names; per namespace its labels.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

/// The kubelet's annotation on a static pod's mirror: the config hash that
/// names its `/var/log/pods/<ns>_<pod>_<hash>` directory (not the API uid).
const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";

pub type Labels = BTreeMap<String, String>;

/// The workload that controls a pod, from its controller ownerReference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Controller {
    ReplicaSet(String),
    Job(String),
    StatefulSet(String),
    DaemonSet(String),
}

/// What documents show of one pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodInfo {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub labels: Labels,
    /// Only the allow-listed ones.
    pub annotations: Labels,
    pub ip: Option<String>,
    pub controller: Option<Controller>,
    /// (container name, image) of every container, init and ephemeral ones included.
    pub images: Vec<(String, String)>,
    /// A static pod's config hash (its log directory's "uid").
    pub mirror_hash: Option<String>,
}

impl PodInfo {
    /// The pod as documents show it; `keep_annotation` is the allow-list.
    pub fn from_pod(pod: &Pod, keep_annotation: impl Fn(&str) -> bool) -> Option<PodInfo> {
        let meta = &pod.metadata;
        let annotations = meta.annotations.as_ref();
        let mut images = Vec::new();
        if let Some(spec) = &pod.spec {
            let named = |name: &String, image: &Option<String>| image.clone().map(|i| (name.clone(), i));
            images.extend(spec.containers.iter().filter_map(|c| named(&c.name, &c.image)));
            images.extend(spec.init_containers.iter().flatten().filter_map(|c| named(&c.name, &c.image)));
            images.extend(spec.ephemeral_containers.iter().flatten().filter_map(|c| named(&c.name, &c.image)));
        }
        Some(PodInfo {
            namespace: meta.namespace.clone()?,
            name: meta.name.clone()?,
            uid: meta.uid.clone()?,
            labels: meta.labels.clone().unwrap_or_default(),
            annotations: annotations
                .map(|a| a.iter().filter(|(k, _)| keep_annotation(k)).map(|(k, v)| (k.clone(), v.clone())).collect())
                .unwrap_or_default(),
            ip: pod.status.as_ref().and_then(|s| s.pod_ip.clone()).filter(|ip| !ip.is_empty()),
            controller: controller(meta),
            images,
            mirror_hash: annotations.and_then(|a| a.get(MIRROR_ANNOTATION)).cloned(),
        })
    }

    pub fn image(&self, container: &str) -> Option<&str> {
        self.images.iter().find(|(name, _)| name == container).map(|(_, image)| image.as_str())
    }
}

fn controller(meta: &ObjectMeta) -> Option<Controller> {
    let owner = controller_ref(meta)?;
    let name = owner.name.clone();
    match owner.kind.as_str() {
        "ReplicaSet" => Some(Controller::ReplicaSet(name)),
        "Job" => Some(Controller::Job(name)),
        "StatefulSet" => Some(Controller::StatefulSet(name)),
        "DaemonSet" => Some(Controller::DaemonSet(name)),
        _ => None,
    }
}

fn controller_ref(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references.as_ref()?.iter().find(|o| o.controller == Some(true))
}

/// The name of the controller of kind `kind` that owns an object (a
/// ReplicaSet's Deployment, a Job's CronJob), if any.
pub fn owner_named(meta: &ObjectMeta, kind: &str) -> Option<String> {
    controller_ref(meta).filter(|o| o.kind == kind).map(|o| o.name.clone())
}

/// A pod as one file's documents show it, with what its namespace and owners add.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodMetadata {
    pub pod: Arc<PodInfo>,
    pub namespace_labels: Option<Arc<Labels>>,
    pub deployment: Option<String>,
    pub cronjob: Option<String>,
}

/// ReplicaSets and Jobs, the two owner kinds whose own owner names the workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OwnerMap {
    /// ReplicaSet → Deployment.
    ReplicaSets,
    /// Job → CronJob.
    Jobs,
}

type NsName = (String, String);

struct PodEntry {
    info: Arc<PodInfo>,
    deleted_at: Option<Instant>,
}

#[derive(Default)]
struct State {
    pods: HashMap<String, PodEntry>,
    /// Static pods: config hash → API uid.
    mirrors: HashMap<String, String>,
    /// (namespace, name) → uid, for paths without a uid.
    names: HashMap<NsName, String>,
    namespaces: HashMap<String, Arc<Labels>>,
    /// ReplicaSet → its Deployment (None: known, not owned by one).
    replicasets: HashMap<NsName, Option<String>>,
    /// Job → its CronJob.
    jobs: HashMap<NsName, Option<String>>,
}

/// The shared cache. Cheap to read; written by the watchers.
pub struct PodCache {
    state: RwLock<State>,
    epoch: AtomicU64,
    retention: Duration,
    annotations: Vec<glob::Pattern>,
    /// Every watch's first list is in, or the cache gave up waiting for them.
    ready: (Mutex<bool>, Condvar),
    /// The watches whose first list is not in yet (a bit per [`Listed`]).
    unlisted: AtomicU8,
}

/// The four watches that fill the cache. A line read before all four have
/// listed once would get its pod but not its namespace's labels or its
/// Deployment, so reading at start waits for all of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listed {
    Pods = 1,
    Namespaces = 2,
    ReplicaSets = 4,
    Jobs = 8,
}

impl PodCache {
    /// `annotations`: glob patterns of the annotation keys to keep (already validated).
    pub fn new(retention: Duration, annotations: &[String]) -> PodCache {
        PodCache {
            state: RwLock::new(State::default()),
            epoch: AtomicU64::new(0),
            retention,
            annotations: annotations.iter().filter_map(|p| glob::Pattern::new(p).ok()).collect(),
            ready: (Mutex::new(false), Condvar::new()),
            unlisted: AtomicU8::new(
                Listed::Pods as u8 | Listed::Namespaces as u8 | Listed::ReplicaSets as u8 | Listed::Jobs as u8,
            ),
        }
    }

    /// Moves whenever something a document shows may have changed.
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    fn bump(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    pub fn keep_annotation(&self, key: &str) -> bool {
        self.annotations.iter().any(|p| p.matches(key))
    }

    /// Pods held, deleted ones in their retention included.
    pub fn pods_cached(&self) -> usize {
        self.read().pods.len()
    }

    /// Whether the pods' first list has completed (since start).
    pub fn pods_synced(&self) -> bool {
        self.unlisted.load(Ordering::Acquire) & Listed::Pods as u8 == 0
    }

    /// One watch's list completed; when it is the last of the four first
    /// lists, ends [`PodCache::wait_ready`].
    pub fn listed(&self, what: Listed) {
        let before = self.unlisted.fetch_and(!(what as u8), Ordering::AcqRel);
        if before != 0 && before & !(what as u8) == 0 {
            self.set_ready();
        }
    }

    /// Ends [`PodCache::wait_ready`]: the first lists are in, or will not come soon.
    pub fn set_ready(&self) {
        let (lock, cvar) = &self.ready;
        *lock.lock().unwrap_or_else(|e| e.into_inner()) = true;
        cvar.notify_all();
    }

    /// Blocks until every watch's first list is in (or [`PodCache::set_ready`]),
    /// at most `timeout`. True if ready.
    pub fn wait_ready(&self, timeout: Duration) -> bool {
        let (lock, cvar) = &self.ready;
        let guard = lock.lock().unwrap_or_else(|e| e.into_inner());
        let (guard, _) = cvar.wait_timeout_while(guard, timeout, |ready| !*ready).unwrap_or_else(|e| e.into_inner());
        *guard
    }

    /// A pod was added or changed.
    pub fn apply_pod(&self, info: PodInfo) {
        let mut st = self.write();
        if let Some(old) = st.pods.get_mut(&info.uid) {
            if *old.info == info && old.deleted_at.is_none() {
                return;
            }
            old.deleted_at = None;
            if *old.info == info {
                return;
            }
        }
        if let Some(hash) = &info.mirror_hash {
            st.mirrors.insert(hash.clone(), info.uid.clone());
        }
        st.names.insert((info.namespace.clone(), info.name.clone()), info.uid.clone());
        st.pods.insert(info.uid.clone(), PodEntry { info: Arc::new(info), deleted_at: None });
        drop(st);
        self.bump();
    }

    /// A pod was deleted: kept, as it was, for the retention.
    pub fn delete_pod(&self, uid: &str, now: Instant) {
        if let Some(entry) = self.write().pods.get_mut(uid) {
            entry.deleted_at.get_or_insert(now);
        }
    }

    /// A relist of the pods completed with `seen` (uids): every other pod was
    /// deleted meanwhile.
    pub fn pods_relisted(&self, seen: &HashSet<String>, now: Instant) {
        let mut st = self.write();
        for (uid, entry) in st.pods.iter_mut() {
            if !seen.contains(uid) {
                entry.deleted_at.get_or_insert(now);
            }
        }
        drop(st);
        self.bump();
        self.listed(Listed::Pods);
    }

    /// Forgets the pods deleted longer than the retention ago. Returns how many.
    pub fn expire(&self, now: Instant) -> usize {
        let mut st = self.write();
        let gone: Vec<String> = st
            .pods
            .iter()
            .filter(|(_, e)| e.deleted_at.is_some_and(|t| now.saturating_duration_since(t) >= self.retention))
            .map(|(uid, _)| uid.clone())
            .collect();
        for uid in &gone {
            if let Some(entry) = st.pods.remove(uid) {
                let info = &entry.info;
                if let Some(hash) = &info.mirror_hash {
                    if st.mirrors.get(hash) == Some(uid) {
                        st.mirrors.remove(hash);
                    }
                }
                let key = (info.namespace.clone(), info.name.clone());
                if st.names.get(&key) == Some(uid) {
                    st.names.remove(&key);
                }
            }
        }
        gone.len()
    }

    /// A namespace was added or its labels changed.
    pub fn apply_namespace(&self, name: &str, labels: Labels) {
        let mut st = self.write();
        if st.namespaces.get(name).is_some_and(|l| **l == labels) {
            return;
        }
        st.namespaces.insert(name.to_string(), Arc::new(labels));
        drop(st);
        self.bump();
    }

    /// A namespace was deleted. Its pods keep the labels they had until they go.
    pub fn delete_namespace(&self, name: &str) {
        self.write().namespaces.remove(name);
    }

    /// A relist of the namespaces completed with `seen`.
    pub fn namespaces_relisted(&self, seen: &HashSet<String>) {
        self.write().namespaces.retain(|name, _| seen.contains(name));
        self.bump();
        self.listed(Listed::Namespaces);
    }

    /// A ReplicaSet or Job was added or changed; `owner` is its Deployment or CronJob.
    pub fn apply_owner(&self, map: OwnerMap, namespace: &str, name: &str, owner: Option<String>) {
        let mut st = self.write();
        let m = match map {
            OwnerMap::ReplicaSets => &mut st.replicasets,
            OwnerMap::Jobs => &mut st.jobs,
        };
        let key = (namespace.to_string(), name.to_string());
        if m.get(&key) == Some(&owner) {
            return;
        }
        m.insert(key, owner);
        drop(st);
        self.bump();
    }

    /// A ReplicaSet or Job was deleted. Pods already resolved keep its owner's name.
    pub fn delete_owner(&self, map: OwnerMap, namespace: &str, name: &str) {
        let mut st = self.write();
        let key = (namespace.to_string(), name.to_string());
        match map {
            OwnerMap::ReplicaSets => st.replicasets.remove(&key),
            OwnerMap::Jobs => st.jobs.remove(&key),
        };
    }

    /// A relist of ReplicaSets or Jobs completed with `seen`.
    pub fn owners_relisted(&self, map: OwnerMap, seen: &HashSet<NsName>) {
        let mut st = self.write();
        match map {
            OwnerMap::ReplicaSets => st.replicasets.retain(|k, _| seen.contains(k)),
            OwnerMap::Jobs => st.jobs.retain(|k, _| seen.contains(k)),
        }
        drop(st);
        self.bump();
        self.listed(match map {
            OwnerMap::ReplicaSets => Listed::ReplicaSets,
            OwnerMap::Jobs => Listed::Jobs,
        });
    }

    /// The pod a log file belongs to: by the uid of its `/var/log/pods`
    /// directory (a static pod's config hash too), or by namespace and name
    /// when the path has no uid. None: unknown to the cache.
    pub fn lookup(&self, uid: Option<&str>, namespace: Option<&str>, name: Option<&str>) -> Option<PodMetadata> {
        let st = self.read();
        let entry = match uid {
            Some(uid) => st.pods.get(uid).or_else(|| st.mirrors.get(uid).and_then(|u| st.pods.get(u)))?,
            None => {
                let key = (namespace?.to_string(), name?.to_string());
                st.pods.get(st.names.get(&key)?)?
            }
        };
        let pod = entry.info.clone();
        let owned = |m: &HashMap<NsName, Option<String>>, n: &str| {
            m.get(&(pod.namespace.clone(), n.to_string())).cloned().flatten()
        };
        let (deployment, cronjob) = match &pod.controller {
            Some(Controller::ReplicaSet(rs)) => (owned(&st.replicasets, rs), None),
            Some(Controller::Job(job)) => (None, owned(&st.jobs, job)),
            _ => (None, None),
        };
        Some(PodMetadata { namespace_labels: st.namespaces.get(&pod.namespace).cloned(), pod, deployment, cronjob })
    }
}

#[cfg(test)]
#[path = "pod_cache_tests.rs"]
mod tests;
