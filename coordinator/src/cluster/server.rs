//! The coordinator server: the worker and job services behind the token
//! check, the gRPC health service, a lease-expiry ticker, and plain HTTP
//! for Prometheus metrics, the Kubernetes probes and the web interface.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dreamfarm_proto::auth::{CheckToken, TokenError, check_token};
use dreamfarm_proto::open_files::{Accepting, HttpListener};
use dreamfarm_proto::pb::job_service_server::JobServiceServer;
use dreamfarm_proto::{
    CONNECTION_WINDOW_BYTES, FRAME_BYTES, KEEPALIVE_INTERVAL, KEEPALIVE_TIMEOUT, MAX_MESSAGE_BYTES,
    STREAM_WINDOW_BYTES,
};
use tokio::net::TcpListener;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Identity, Server, ServerTlsConfig};

use super::hub::Hub;
use super::job_service::JobApi;
use super::jobs::Jobs;
use super::scheduler::Timeouts;
use super::worker_routes::WorkerRoutes;
use super::worker_sessions::WorkerSessions;
use crate::store::{JobStore, SqliteStore, StoreError};
use crate::video::VideoEncoding;
use crate::web::{self, auth::Access, cluster_source::ClusterSource};

/// The job store's file in the data folder.
pub const STORE_FILE: &str = "jobs.sqlite";

/// The file a coordinator holds locked while it serves a data folder.
const LOCK_FILE: &str = "coordinator.lock";

/// How often leases and heartbeats are checked.
const EXPIRY_TICK: Duration = Duration::from_millis(250);

/// A PEM certificate chain and key for TLS.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// Certificate chain.
    pub cert: PathBuf,
    /// Private key.
    pub key: PathBuf,
}

/// Settings of a coordinator.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Folder of the jobs' inputs, frames and videos.
    pub data: PathBuf,
    /// Shared token every call must carry (`None`: no authentication).
    pub token: Option<String>,
    /// Serve TLS with this identity.
    pub tls: Option<TlsFiles>,
    /// Lease and heartbeat timeouts.
    pub timeouts: Timeouts,
    /// Bytes of memory the running jobs' frame buffers and video encoders
    /// may take.
    pub max_memory: u64,
    /// When each job's video is encoded.
    pub video: VideoEncoding,
}

/// Why the server stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A TLS file cannot be read or used.
    #[error("TLS: {0}")]
    Tls(String),
    /// The certificate is not one that clients accept as a server's.
    #[error("--tls-cert {path} {why}")]
    Certificate {
        /// The certificate file.
        path: PathBuf,
        /// What is wrong with it.
        why: dreamfarm_proto::tls::ServerCertError,
    },
    /// The token is one anyone could send, or no client could.
    #[error(transparent)]
    Token(#[from] TokenError),
    /// The data folder cannot be made or written.
    #[error(
        "cannot use the data folder {path}: {source}. Fix: give --data (DREAMFARM_DATA) a folder this process can create and write"
    )]
    Data {
        /// The folder.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Another coordinator serves the same data folder.
    #[error(
        "another coordinator is using the data folder {0} (it holds {LOCK_FILE}). Fix: stop it first, or give this one another --data"
    )]
    Busy(PathBuf),
    /// The job store cannot be used.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The gRPC server failed.
    #[error("gRPC server: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// The metrics server failed.
    #[error("metrics server: {0}")]
    Metrics(std::io::Error),
}

/// A coordinator whose data folder is open: its lock taken, its job store
/// read and its active jobs queued again, its TLS files read and checked.
/// Opening comes before listening, so a damaged store or a certificate
/// clients would refuse stops the coordinator before it takes any call.
pub struct Coordinator {
    config: ServerConfig,
    jobs: Arc<Jobs>,
    hub: Arc<Hub>,
    /// The TLS identity read from `config.tls`, checked.
    identity: Option<Identity>,
    /// Held locked while the coordinator serves.
    _lock: std::fs::File,
}

impl Coordinator {
    /// Opens `config.data` (see the type's docs).
    pub fn open(config: ServerConfig) -> Result<Self, ServeError> {
        config.token.as_deref().map(check_token).transpose()?;
        let identity = config.tls.as_ref().map(read_identity).transpose()?;
        let data_error = |source| ServeError::Data {
            path: config.data.clone(),
            source,
        };
        crate::folder::create(&config.data).map_err(data_error)?;
        let lock = std::fs::File::create(config.data.join(LOCK_FILE)).map_err(data_error)?;
        if lock.try_lock().is_err() {
            return Err(ServeError::Busy(config.data.clone()));
        }
        let store = Arc::new(SqliteStore::open(&config.data.join(STORE_FILE))?);
        let boot = store.next_boot()?;
        let hub = Hub::new(config.timeouts, boot, store);
        let jobs = Jobs::open(
            config.data.clone(),
            hub.clone(),
            config.max_memory,
            config.video,
        )?;
        Ok(Self {
            config,
            jobs,
            hub,
            identity,
            _lock: lock,
        })
    }

    /// Serves on `listener` (and metrics and the web interface on
    /// `metrics`, if given) until `shutdown` resolves. Jobs still running
    /// then resume at the next start.
    pub async fn serve(
        self,
        listener: TcpListener,
        metrics: Option<TcpListener>,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServeError> {
        let Self {
            config,
            jobs,
            hub,
            identity,
            ..
        } = self;
        let ticker_hub = hub.clone();
        let ticker = tokio::spawn(async move {
            let mut tick = tokio::time::interval(EXPIRY_TICK);
            loop {
                tick.tick().await;
                ticker_hub.update(|s| s.expire(Instant::now()));
            }
        });
        let metrics_task = metrics.map(|listener| {
            let (hub, jobs) = (hub.clone(), jobs.clone());
            let web = web::router(
                Arc::new(ClusterSource::new(jobs.clone())),
                Arc::new(Access::new(config.token.as_deref())),
            );
            let app = axum::Router::new()
                .route(
                    "/metrics",
                    axum::routing::get(move || async move {
                        let states: Vec<_> = jobs.all().iter().map(|j| j.state()).collect();
                        hub.metrics.render(&hub.read(|s| s.snapshot()), &states)
                    }),
                )
                // Probes that work whether or not the gRPC port speaks TLS
                // (Kubernetes' gRPC probe cannot): the store is open and
                // the services are up once this answers.
                .route("/healthz", axum::routing::get(|| async { "alive\n" }))
                .route("/readyz", axum::routing::get(|| async { "serving\n" }))
                // The web interface, behind the token (these three stay open).
                .merge(web);
            let listener = HttpListener::new(listener, "the coordinator's metrics and web port");
            tokio::spawn(async move { axum::serve(listener, app).await })
        });

        let (health, health_service) = tonic_health::server::health_reporter();
        health.set_serving::<WorkerRoutes>().await;
        health.set_serving::<JobServiceServer<JobApi>>().await;
        let check = CheckToken::new(config.token.as_deref());
        let workers = WorkerRoutes::new(WorkerSessions::new(hub.clone()));
        let clients = JobServiceServer::new(JobApi::new(jobs, hub.clone()))
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        let mut server = Server::builder()
            .http2_keepalive_interval(Some(KEEPALIVE_INTERVAL))
            .http2_keepalive_timeout(Some(KEEPALIVE_TIMEOUT))
            .initial_stream_window_size(STREAM_WINDOW_BYTES)
            .initial_connection_window_size(CONNECTION_WINDOW_BYTES)
            .max_frame_size(FRAME_BYTES);
        if let Some(identity) = identity {
            server = server
                .tls_config(ServerTlsConfig::new().identity(identity))
                .map_err(|e| ServeError::Tls(e.to_string()))?;
        }
        // Workers' sessions and watches stay open for as long as their
        // peers like: the shutdown ends them, or it would wait for ever.
        let stop_hub = hub.clone();
        let shutdown = async move {
            shutdown.await;
            tracing::info!("shutting down: ending workers' sessions, watches and fetches");
            stop_hub.stop();
        };
        let result = server
            .add_service(health_service)
            .add_service(InterceptedService::new(workers, check.clone()))
            .add_service(InterceptedService::new(clients, check))
            .serve_with_incoming_shutdown(
                Accepting::tcp(listener, "the coordinator's gRPC port"),
                shutdown,
            )
            .await;
        ticker.abort();
        if let Some(task) = metrics_task {
            task.abort();
        }
        Ok(result?)
    }
}

/// Reads the certificate and key of `tls`, checking that the certificate
/// is one clients accept as a server's.
fn read_identity(tls: &TlsFiles) -> Result<Identity, ServeError> {
    let read = |p: &PathBuf| {
        std::fs::read(p).map_err(|e| ServeError::Tls(format!("cannot read {}: {e}", p.display())))
    };
    let cert = read(&tls.cert)?;
    dreamfarm_proto::tls::check_server_certificate(&cert).map_err(|why| {
        ServeError::Certificate {
            path: tls.cert.clone(),
            why,
        }
    })?;
    Ok(Identity::from_pem(cert, read(&tls.key)?))
}
