//! The worker's HTTP probes for Kubernetes: `/healthz` answers while the
//! process serves requests (liveness: a worker waiting for a coordinator
//! that is down is alive, and restarting it would not help), `/readyz`
//! answers 200 only while a session with the coordinator is up and the
//! worker is not shutting down (readiness: "connected to the
//! coordinator").

use std::net::SocketAddr;
use std::sync::Arc;

use axum::http::StatusCode;
use axum::routing::get;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::RemoteError;
use super::bookkeeping::Shared;

/// Binds `addr` and serves the probes until the task is aborted.
pub(super) async fn serve(
    addr: SocketAddr,
    shared: Arc<Shared>,
) -> Result<JoinHandle<()>, RemoteError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| RemoteError::Health { addr, source })?;
    let app = axum::Router::new()
        .route("/healthz", get(|| async { "alive\n" }))
        .route("/readyz", get(move || async move { readiness(&shared) }));
    tracing::info!(%addr, "health probes on /healthz and /readyz");
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
