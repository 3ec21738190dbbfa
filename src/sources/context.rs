//! What a source is started with besides its own config section: who this
//! gateway is (the names every document carries), where it keeps its
//! positions, the index it writes to, the sink and the shutdown signal.
//! Sources never see the whole `Config`.

use std::path::PathBuf;

use crate::document::index_pattern::IndexPattern;
use crate::shutdown::Shutdown;
use crate::sink::Sink;

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

/// A source's context.
#[derive(Clone)]
pub struct SourceContext {
    pub identity: NodeIdentity,
    /// Positions (journal cursors, file checkpoints, resource versions) and
    /// the spool are kept under it.
    pub data_dir: PathBuf,
    /// Where the source's documents go (its `elasticsearch.indices` key).
    pub index: IndexPattern,
    /// Where refused documents go, for a source that dead-letters before the sink.
    pub dead_letter: IndexPattern,
    pub sink: Sink,
    pub shutdown: Shutdown,
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
