//! A TCP proxy that can be switched on and off: a backend (Elasticsearch)
//! "unreachable", then back, without restarting the gateway that uses it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Forwards connections to `target` while open; while closed, closes every
/// connection at once (the client sees the connection closed). Starts closed.
pub struct GatedProxy {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    open: Arc<AtomicBool>,
    /// Bumped by [`GatedProxy::cut`]: every forwarded connection watching it ends.
    cuts: tokio::sync::watch::Sender<u64>,
    task: tokio::task::JoinHandle<()>,
}

impl GatedProxy {
    /// A closed proxy to `target` (`host:port`).
    pub async fn start(target: String) -> GatedProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let open = Arc::new(AtomicBool::new(false));
        let gate = open.clone();
        let (cuts, cut_seen) = tokio::sync::watch::channel(0u64);
        let task = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if !gate.load(Ordering::SeqCst) {
                    continue; // dropped: the client sees the connection closed
                }
                let target = target.clone();
                let mut cut = cut_seen.clone();
                cut.mark_unchanged();
                tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await {
                        tokio::select! {
                            _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                            _ = cut.changed() => {} // both sockets dropped: the client sees a reset or EOF
                        }
                    }
                });
            }
        });
        GatedProxy { url, open, cuts, task }
    }

    /// A closed proxy to an `http://host:port` URL.
    pub async fn to_url(url: &str) -> GatedProxy {
        GatedProxy::start(url.trim_start_matches("http://").trim_end_matches('/').to_string()).await
    }

    /// From now on, connections are forwarded.
    pub fn open(&self) {
        self.open.store(true, Ordering::SeqCst);
    }

    /// From now on, new connections are closed at once.
    pub fn close(&self) {
        self.open.store(false, Ordering::SeqCst);
    }

    /// [`GatedProxy::close`], and the connections already forwarded end too
    /// (a long-running watch or keep-alive connection breaks mid-stream).
    pub fn cut(&self) {
        self.close();
        self.cuts.send_modify(|n| *n += 1);
    }
}

impl Drop for GatedProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}
