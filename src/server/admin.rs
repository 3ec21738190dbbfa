//! The admin listener (plain HTTP, no authentication — bind it to a pod IP or
//! localhost): `/healthz` (the process is alive), `/readyz` (it can take work;
//! for the webhook, the spool has room) and `/metrics` (Prometheus).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use serde::{Deserialize, Serialize};

use crate::spool::Spool;

#[derive(Clone, Default)]
pub struct Readiness {
    pub spool: Option<Spool>,
}

pub fn router(readiness: Readiness) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics))
        .with_state(Arc::new(readiness))
}

async fn ready(State(r): State<Arc<Readiness>>) -> impl IntoResponse {
    if let Some(spool) = &r.spool {
        // Not ready while the spool cannot write (a full disk: the writer
        // thread tries again every second) or is nearly full, so a Service
        // sends new connections to a replica that can take them.
        if let Some(reason) = spool.write_error() {
            return (StatusCode::SERVICE_UNAVAILABLE, format!("spool cannot take writes: {reason}\n"));
        }
        if spool.used_bytes() >= spool.max_bytes() / 100 * 95 {
            return (StatusCode::SERVICE_UNAVAILABLE, "spool is nearly full\n".to_string());
        }
    }
    (StatusCode::OK, "ready\n".to_string())
}

async fn metrics() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], crate::telemetry::encode())
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Plain-HTTP listener for /healthz, /readyz and /metrics; null disables it.
    #[serde(default = "defaults::admin_listen")]
    pub listen: Option<SocketAddr>,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig { listen: defaults::admin_listen() }
    }
}

mod defaults {
    use std::net::SocketAddr;
    pub fn admin_listen() -> Option<SocketAddr> {
        Some("0.0.0.0:9464".parse().unwrap())
    }
}
