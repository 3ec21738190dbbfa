//! A node's container log layout for the container tests: the kubelet's
//! symlinks in `containers/` pointing into `pods/`, and a gateway config that
//! tails them into this test's own indices.

use std::ops::Deref;
use std::path::PathBuf;

use super::config::{Admin, Containers, GatewayConfig};
use super::es::es_url;
use super::gateway::{Gateway, Home};

/// The container id in every test file name (64 hex digits, as the runtime writes it).
pub const CONTAINER_ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

/// A node's log layout in a temporary directory:
/// `containers/<pod>_<ns>_<container>-<id>.log` → `pods/<ns>_<pod>_<uid>/<container>/0.log`.
/// Change `config` before [`Node::start`] to run it differently.
pub struct Node {
    pub home: Home,
    pub config: GatewayConfig,
}

impl Deref for Node {
    type Target = Home;
    fn deref(&self) -> &Home {
        &self.home
    }
}

impl Node {
    pub fn new(name: &str) -> Node {
        let home = Home::new(name);
        let logs = home.path().join("containers");
        std::fs::create_dir_all(&logs).unwrap();
        let mut config = GatewayConfig::for_test(&home.data_dir(), &es_url())
            .index("containers", &home.index("containers"))
            .index("dead_letter", &home.index("deadletter"));
        config.node_name = Some("node-1".into());
        config.admin = Admin::Listen(home.admin.clone());
        config.containers = Some(Containers {
            paths: vec![format!("{}/*.log", logs.display())],
            poll_interval: "100ms".into(),
            rotated_grace: "1s".into(),
            ..Containers::default()
        });
        Node { home, config }
    }

    pub fn start(&self) -> Gateway {
        self.home.start(&self.config)
    }

    pub fn indices(&self) -> String {
        self.home.indices("containers")
    }

    pub fn checkpoints(&self) -> PathBuf {
        self.data_dir().join("containers/checkpoints.json")
    }

    /// Creates the pod directory and the kubelet-style symlink; returns the real file's path.
    pub fn container(&self, ns: &str, pod: &str, uid: &str, container: &str) -> PathBuf {
        let real_dir = self.path().join("pods").join(format!("{ns}_{pod}_{uid}")).join(container);
        std::fs::create_dir_all(&real_dir).unwrap();
        let real = real_dir.join("0.log");
        let link = self.path().join("containers").join(format!("{pod}_{ns}_{container}-{CONTAINER_ID}.log"));
        std::os::unix::fs::symlink(&real, link).unwrap();
        real
    }
}
