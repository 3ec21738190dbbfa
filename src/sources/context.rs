//! What a source needs besides its own config section: who this gateway is
//! (the names every document carries), where it keeps its positions, and the
//! index it writes to. Sources never see the whole `Config`.

use std::path::PathBuf;

use crate::document::index_pattern::IndexPattern;

/// The names every document carries: `orchestrator.cluster.name`,
/// `host.name` and `kubernetes.node.name`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeIdentity {
    pub cluster: String,
    pub host: String,
    pub node: String,
}

impl NodeIdentity {
    /// `node_name` from the config wins, then `$NODE_NAME`, then the host name.
    pub fn new(cluster: String, node_name: Option<String>) -> Self {
        let host = host_name();
        let node = node_name
            .or_else(|| std::env::var("NODE_NAME").ok().filter(|s| !s.is_empty()))
            .unwrap_or_else(|| host.clone());
        NodeIdentity { cluster, host, node }
    }
}

/// A pull source's context.
#[derive(Debug, Clone)]
pub struct SourceContext {
    pub identity: NodeIdentity,
    /// Positions (journal cursors, file checkpoints) are saved under it.
    pub data_dir: PathBuf,
    /// Where the source's documents go.
    pub index: IndexPattern,
}

/// This machine's host name (`/proc/sys/kernel/hostname`, then `$HOSTNAME`).
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown".into())
}
