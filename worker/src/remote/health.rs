//! The worker's HTTP probes for Kubernetes: `/healthz` answers while the
//! process serves requests (liveness: a worker waiting for a coordinator
//! that is down is alive, and restarting it would not help), `/readyz`
//! answers 200 only while a session with the coordinator is up and the
//! worker is not shutting down (readiness: "connected to the
//! coordinator"). `/metrics` serves the worker's Prometheus metrics
//! (see [`WorkerMetrics`]) on the same port.

use std::net::SocketAddr;

use axum::http::StatusCode;
use axum::routing::get;
use dreamfarm_proto::listen;
use dreamfarm_proto::open_files::HttpListener;
use tokio::task::JoinHandle;

use super::RemoteError;
use super::bookkeeping::Shared;
use super::metrics::WorkerMetrics;

/// Binds `addr` and serves the probes and `metrics` until the task is
/// aborted.
pub(super) async fn serve(
    addr: SocketAddr,
    metrics: WorkerMetrics,
) -> Result<JoinHandle<()>, RemoteError> {
    let (listener, bound) = listen::bind(addr, "the probes and metrics", "--health-listen")?;
    let shared = metrics.shared.clone();
    let app = axum::Router::new()
        .route("/healthz", get(|| async { "alive\n" }))
        .route("/readyz", get(move || async move { readiness(&shared) }))
        .route("/metrics", get(move || async move { metrics.render() }));
    tracing::info!("probes (/healthz, /readyz) and /metrics on http://{bound}");
    let listener = HttpListener::new(listener, "the worker's health and metrics port");
    Ok(tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::warn!("health endpoint stopped: {e}");
        }
    }))
}

/// 200 while connected and not draining, 503 with the reason otherwise.
fn readiness(shared: &Shared) -> (StatusCode, &'static str) {
    if shared.is_draining() {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n")
    } else if shared.is_connected() {
        (StatusCode::OK, "connected to the coordinator\n")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not connected to the coordinator\n",
        )
    }
}
