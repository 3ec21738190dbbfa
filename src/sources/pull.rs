//! The one runner of pull sources (journald, container files, Kubernetes
//! events): a reader produces batches of documents, each with the position
//! update it makes safe, into a small bounded channel;
//! [`crate::ack::deliver_in_order`] delivers them to the sink, several in
//! flight but completed in order, and saves the positions only behind
//! delivery.
//!
//! ```text
//!  reader (thread or task) ──bounded channel──► deliver_in_order ──► sink.deliver()
//!  blocks when the channel is full               completed in order
//!                                                → positions saved (atomic file)
//! ```
//!
//! When Elasticsearch is slow the channel fills and the reader stops reading:
//! the source (journal, files, the API server) is the buffer, not memory.

use std::future::Future;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::SourceContext;
use crate::ack::{self, Positions, Saving};
use crate::document::Document;

/// One batch: the documents and the position update they make safe.
pub type Batch<U> = ack::Batch<Vec<Document>, U>;

/// Where a reader hands its batches; a send fails once delivery has stopped.
pub type BatchSender<U> = mpsc::Sender<Batch<U>>;

/// The delivery half of a pull source.
pub struct PullRunner<P: Positions> {
    /// The positions as saved at start.
    pub positions: P,
    pub saving: Saving,
    /// Batches buffered between the reader and delivery. Small on purpose.
    pub channel_batches: usize,
}

impl<P> PullRunner<P>
where
    P: Positions + Send + 'static,
{
    /// Runs `read` on a thread of its own, for blocking reads (sd-journal,
    /// files). The task finishes after a shutdown, once the positions of the
    /// last delivered batch are saved and the reader thread has ended; the
    /// reader ends at its next send, which fails once delivery has stopped.
    pub fn on_thread<F>(self, name: &str, ctx: &SourceContext, read: F) -> std::io::Result<JoinHandle<()>>
    where
        F: FnOnce(BatchSender<P::Update>) + Send + 'static,
    {
        let (tx, rx) = mpsc::channel(self.channel_batches.max(1));
        let thread = std::thread::Builder::new().name(name.chars().take(15).collect()).spawn(move || read(tx))?;
        let delivery = self.deliver(rx, ctx);
        Ok(tokio::spawn(async move {
            delivery.await;
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }))
    }

    /// Runs `read` as a task, for async reads (a Kubernetes watch). The reader
    /// is cancelled once delivery has stopped: it owns no position, so
    /// nothing it had not handed over is lost.
    pub fn on_task<F, Fut>(self, ctx: &SourceContext, read: F) -> JoinHandle<()>
    where
        F: FnOnce(BatchSender<P::Update>) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let (tx, rx) = mpsc::channel(self.channel_batches.max(1));
        let reader = tokio::spawn(read(tx));
        let delivery = self.deliver(rx, ctx);
        tokio::spawn(async move {
            delivery.await;
            reader.abort();
            let _ = reader.await;
        })
    }

    fn deliver(self, rx: mpsc::Receiver<Batch<P::Update>>, ctx: &SourceContext) -> impl Future<Output = P> + Send {
        let (sink, shutdown) = (ctx.sink.clone(), ctx.shutdown.clone());
        async move {
            let deliver = |docs| {
                let sink = sink.clone();
                async move { sink.deliver(docs).await.map(|_| ()) }
            };
            ack::deliver_in_order(rx, deliver, self.positions, self.saving, shutdown).await
        }
    }
}
