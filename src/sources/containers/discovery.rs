//! Which files to tail: the configured globs, minus compressed and temporary
//! files, minus what the namespace/pod/container filters exclude.
//!
//! The globs are re-listed every `poll_interval` (that listing also notices
//! rotation: a path that now resolves to another inode). inotify, through
//! `notify`, watches the globs' directories so that a new file is picked up at
//! once instead of at the next poll; if inotify is unavailable (watch limit,
//! a missing directory) the poll alone still finds everything. The tailer also
//! has the directories of the files it reads watched (`/var/log/pods/…/<container>`),
//! so that a rotation (a rename, a new file) wakes it at once: a file that lives
//! shorter than `poll_interval` is still opened, or found as a rotated sibling.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Mutex};
use std::time::Duration;

use glob::Pattern;

use super::config::ContainersConfig;
use super::file_id::FileKey;
use super::metadata::Metadata;

/// A file that a glob matched.
#[derive(Debug, Clone)]
pub struct Found {
    pub path: PathBuf,
    pub key: FileKey,
    pub len: u64,
}

/// Rotated-away copies (`.gz`, kubelet's `.tmp` while compressing) are never tailed.
pub fn skipped_name(path: &Path) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    name.ends_with(".gz") || name.ends_with(".tmp")
}

/// A listing: every regular file the patterns match now (symlinks followed),
/// and the paths that matched but could not be looked at (a symlink loop, a
/// directory without permission), with the reason.
#[derive(Debug, Default)]
pub struct Listing {
    pub found: Vec<Found>,
    pub errors: Vec<(PathBuf, std::io::Error)>,
}

/// Lists what the patterns match now. A dangling symlink (its container is
/// gone) is not an error: it is skipped.
pub fn list(patterns: &[String]) -> Listing {
    let mut out = Listing::default();
    for pattern in patterns {
        let Ok(paths) = glob::glob(pattern) else {
            continue;
        };
        for path in paths {
            let path = match path {
                Ok(p) => p,
                Err(e) => {
                    let p = e.path().to_path_buf();
                    out.errors.push((p, e.into()));
                    continue;
                }
            };
            if skipped_name(&path) {
                continue;
            }
            match std::fs::metadata(&path) {
                Ok(meta) if meta.is_file() => out.found.push(Found { key: FileKey::of(&meta), len: meta.len(), path }),
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => out.errors.push((path, e)),
            }
        }
    }
    out
}

/// include/exclude by namespace, pod and container name.
pub struct Filters {
    rules: [(Vec<Pattern>, Vec<Pattern>); 3],
}

impl Filters {
    pub fn new(cfg: &ContainersConfig) -> Filters {
        let compile = |list: &[String]| list.iter().filter_map(|p| Pattern::new(p).ok()).collect::<Vec<_>>();
        Filters {
            rules: [
                (compile(&cfg.include_namespaces), compile(&cfg.exclude_namespaces)),
                (compile(&cfg.include_pods), compile(&cfg.exclude_pods)),
                (compile(&cfg.include_containers), compile(&cfg.exclude_containers)),
            ],
        }
    }

    /// An include list needs a known, matching value; an exclude list drops a known, matching value.
    pub fn allows(&self, meta: &Metadata) -> bool {
        let values = [meta.namespace.as_deref(), meta.pod_name.as_deref(), meta.container_name.as_deref()];
        self.rules.iter().zip(values).all(|((include, exclude), value)| {
            let included = include.is_empty() || value.is_some_and(|v| include.iter().any(|p| p.matches(v)));
            let excluded = value.is_some_and(|v| exclude.iter().any(|p| p.matches(v)));
            included && !excluded
        })
    }
}

/// The directory part of a glob before its first wildcard: what inotify can watch.
fn static_dir(pattern: &str) -> PathBuf {
    let first_glob = pattern.find(['*', '?', '[']).unwrap_or(pattern.len());
    let head = &pattern[..first_glob];
    match head.rfind('/') {
        Some(0) => PathBuf::from("/"),
        Some(i) => PathBuf::from(&head[..i]),
        None => PathBuf::from("."),
    }
}

/// Wakes the tailer when a watched directory changes: a file created, removed
/// or renamed (writes to a file do not wake it: it reads on its own).
pub struct Wakeup {
    watcher: Mutex<Option<notify::RecommendedWatcher>>,
    /// The globs' directories: always watched.
    fixed: HashSet<PathBuf>,
    /// The directories of the files being read, watched on the tailer's request.
    extra: Mutex<HashSet<PathBuf>>,
    rx: mpsc::Receiver<()>,
}

/// Only a change of names matters: a new file, a rename (rotation), a removal.
fn names_changed(kind: &notify::EventKind) -> bool {
    use notify::event::{EventKind, ModifyKind};
    matches!(
        kind,
        EventKind::Create(_) | EventKind::Remove(_) | EventKind::Modify(ModifyKind::Name(_)) | EventKind::Any
    )
}

impl Wakeup {
    pub fn new(patterns: &[String], inotify: bool) -> Wakeup {
        let (tx, rx) = mpsc::channel();
        let off = |rx| Wakeup { watcher: Mutex::new(None), fixed: HashSet::new(), extra: Mutex::default(), rx };
        if !inotify {
            return off(rx);
        }
        use notify::Watcher;
        let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            if event.is_ok_and(|e| names_changed(&e.kind)) {
                let _ = tx.send(());
            }
        });
        let mut watcher = match watcher {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!("inotify unavailable, new container log files are found by polling only: {e}");
                return off(rx);
            }
        };
        let mut fixed = HashSet::new();
        for pattern in patterns {
            let dir = static_dir(pattern);
            match watcher.watch(&dir, notify::RecursiveMode::NonRecursive) {
                Ok(()) => {
                    fixed.insert(dir);
                }
                Err(e) => tracing::warn!(dir = %dir.display(), "cannot watch with inotify, polling only: {e}"),
            }
        }
        Wakeup { watcher: Mutex::new(Some(watcher)), fixed, extra: Mutex::default(), rx }
    }

    /// Watches exactly these directories (besides the globs' own): those of the
    /// files being read. A directory that cannot be watched (the inotify watch
    /// limit) is left to the poll, with a debug line.
    pub fn watch_dirs(&self, dirs: &HashSet<PathBuf>) {
        use notify::Watcher;
        let mut guard = self.watcher.lock().expect("watcher lock");
        let Some(watcher) = guard.as_mut() else { return };
        let mut extra = self.extra.lock().expect("watch list lock");
        for gone in extra.difference(dirs).cloned().collect::<Vec<_>>() {
            let _ = watcher.unwatch(&gone);
            extra.remove(&gone);
        }
        for dir in dirs {
            if self.fixed.contains(dir) || extra.contains(dir) {
                continue;
            }
            match watcher.watch(dir, notify::RecursiveMode::NonRecursive) {
                Ok(()) => {
                    extra.insert(dir.clone());
                }
                Err(e) => tracing::debug!(dir = %dir.display(), "cannot watch with inotify, polling only: {e}"),
            }
        }
    }

    /// Sleeps until a directory event or `timeout`; true if an event came.
    pub fn wait(&self, timeout: Duration) -> bool {
        let woke = self.rx.recv_timeout(timeout).is_ok();
        while self.rx.try_recv().is_ok() {}
        woke
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(ns: &str, pod: &str, c: &str) -> Metadata {
        Metadata {
            namespace: Some(ns.into()),
            pod_name: Some(pod.into()),
            container_name: Some(c.into()),
            ..Metadata::default()
        }
    }

    #[test]
    fn include_and_exclude() {
        let cfg = ContainersConfig {
            exclude_namespaces: vec!["kube-*".into()],
            exclude_pods: vec!["kube-log-gateway-*".into()],
            include_containers: vec!["app".into(), "side*".into()],
            ..ContainersConfig::default()
        };
        let f = Filters::new(&cfg);
        assert!(f.allows(&meta("shop", "web-1", "app")));
        assert!(f.allows(&meta("shop", "web-1", "sidecar")));
        assert!(!f.allows(&meta("shop", "web-1", "db")));
        assert!(!f.allows(&meta("kube-system", "web-1", "app")));
        assert!(!f.allows(&meta("logging", "kube-log-gateway-x2", "app")));
        assert!(!f.allows(&Metadata::default()), "an include list needs a known container name");
    }

    #[test]
    fn static_dirs_and_skips() {
        assert_eq!(static_dir("/var/log/containers/*.log"), PathBuf::from("/var/log/containers"));
        assert_eq!(static_dir("/var/log/pods/*/*/*.log"), PathBuf::from("/var/log/pods"));
        assert!(skipped_name(Path::new("/a/0.log.20240101.gz")));
        assert!(skipped_name(Path::new("/a/0.log.tmp")));
        assert!(!skipped_name(Path::new("/a/0.log")));
    }
}
