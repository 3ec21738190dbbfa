//! The admin listener (plain HTTP, no authentication — bind it to a pod IP or
//! localhost): `/healthz` (the process is alive), `/readyz` (it can take work;
//! each [`Readiness`] a source registered says so) and `/metrics` (Prometheus).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use serde::{Deserialize, Serialize};

/// Something that can be unable to take work for a while (the webhook's
/// spool when the disk is full). `/readyz` asks each one; the listener knows
/// nothing of what stands behind it.
pub trait Readiness: Send + Sync {
    /// Why it cannot take work now, or `None` when it can.
    fn unready(&self) -> Option<String>;
}

pub fn router(readiness: Vec<Arc<dyn Readiness>>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics))
        .with_state(Arc::new(readiness))
}

async fn ready(State(r): State<Arc<Vec<Arc<dyn Readiness>>>>) -> impl IntoResponse {
    match r.iter().find_map(|r| r.unready()) {
        Some(reason) => (StatusCode::SERVICE_UNAVAILABLE, format!("{reason}\n")),
        None => (StatusCode::OK, "ready\n".to_string()),
    }
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
