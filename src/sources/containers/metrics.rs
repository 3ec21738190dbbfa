//! The container source's own counters (`klg_containers_*`).

use std::sync::OnceLock;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;

#[derive(Default)]
pub struct Metrics {
    pub bytes_read: Counter,
    pub lines_read: Counter,
    pub messages: Counter,
    pub invalid_lines: Counter,
    pub partial_flushed: Counter,
    pub cut_messages: Counter,
    pub cut_bytes: Counter,
    pub rotations: Counter,
    pub truncations: Counter,
    pub files_open: Gauge,
    pub files_closed_unread: Counter,
    pub bytes_lost: Counter,
    pub files_lost: Counter,
    pub siblings_opened: Counter,
    pub file_errors: Counter,
    pub checkpoint_saves: Counter,
    pub checkpoint_errors: Counter,
}

static METRICS: OnceLock<Metrics> = OnceLock::new();

pub fn metrics() -> &'static Metrics {
    METRICS.get_or_init(|| {
        let m = Metrics::default();
        crate::telemetry::register(|r| {
            r.register("containers_bytes_read", "Bytes read from container log files", m.bytes_read.clone());
            r.register("containers_lines_read", "Physical lines read from container log files", m.lines_read.clone());
            r.register(
                "containers_messages",
                "Logical messages (after reassembly) turned into documents",
                m.messages.clone(),
            );
            r.register(
                "containers_invalid_lines",
                "Lines that could not be parsed (bad JSON, time or stream), kept raw and flagged invalid_line",
                m.invalid_lines.clone(),
            );
            r.register(
                "containers_partial_flushed",
                "Messages whose last piece never came (timeout, rotation, truncation), flagged partial",
                m.partial_flushed.clone(),
            );
            r.register(
                "containers_cut_messages",
                "Messages longer than max_message_bytes, flagged cut",
                m.cut_messages.clone(),
            );
            r.register("containers_cut_bytes", "Bytes dropped by the max_message_bytes cap", m.cut_bytes.clone());
            r.register("containers_rotations", "Files replaced under their path (rotation)", m.rotations.clone());
            r.register("containers_truncations", "Files truncated in place (copytruncate)", m.truncations.clone());
            r.register("containers_files_open", "Container log files held open", m.files_open.clone());
            r.register(
                "containers_files_closed_unread",
                "Rotated or deleted files closed by rotated_max_open before they were read to the end (data lost)",
                m.files_closed_unread.clone(),
            );
            r.register(
                "containers_bytes_lost",
                "Bytes of container logs that were never read: a rotated file closed or gone before its end",
                m.bytes_lost.clone(),
            );
            r.register(
                "containers_files_lost",
                "Files whose unread rest is lost (closed by rotated_max_open, deleted or compressed before read)",
                m.files_lost.clone(),
            );
            r.register(
                "containers_siblings_opened",
                "Rotated files found beside a live one (<name>.*) and read because no checkpoint had finished them",
                m.siblings_opened.clone(),
            );
            r.register(
                "containers_file_errors",
                "Paths that started failing to be listed or opened (permissions, symlink loops), once per failure",
                m.file_errors.clone(),
            );
            r.register("containers_checkpoint_saves", "Checkpoint files written", m.checkpoint_saves.clone());
            r.register(
                "containers_checkpoint_errors",
                "Checkpoint files that could not be written",
                m.checkpoint_errors.clone(),
            );
        });
        m
    })
}
