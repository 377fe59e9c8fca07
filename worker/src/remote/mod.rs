//! A cluster worker: dials the coordinator, holds one session stream, and
//! computes the tiles it is leased on its own threads (one per unit of
//! announced concurrency, each with its own copy of the model), sending
//! results back up the stream.
//!
//! Nothing from the wire is trusted: every lease's sizes, rectangles and
//! settings are checked before any pixel is touched. On shutdown (SIGTERM)
//! the worker finishes the tiles it is computing, hands back those it has
//! not started, and leaves; if the coordinator goes away it reconnects.
//!
//! - `session`: one connection (handshake, leases in, heartbeats out).
//! - `lease`: a lease from the wire, checked and decoded.
//! - `compute`: the compute threads and their cached models.
//! - `uploaded_weights`: the weights files jobs upload, fetched and kept.
//! - `drain`: leaving gracefully on shutdown.
//! - `bookkeeping`: what the session and the compute threads share.
//! - `health`: the HTTP probes (alive; connected to the coordinator).
//! - `metrics`: the worker's Prometheus metrics, served beside them.
//! - `regions`: region leases (docs/frame-loop-on-workers.md).
//! - `change_service`: the changes neighbours fetch from this worker, plain
//!   or TLS, and the channels it fetches theirs through.

mod bookkeeping;
mod change_service;
mod compute;
mod drain;
mod health;
mod lease;
mod metrics;
mod regions;
mod session;
mod uploaded_weights;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use dreamfarm_common::device::Devices;
use dreamfarm_proto::auth::AttachToken;
use dreamfarm_proto::listen::ListenError;
use dreamfarm_proto::{COORDINATOR_STOPPING, MAX_CONCURRENCY, up};

use crate::cpu_threads::ThreadsFlag;
use crate::models::{device_names, torch_devices};
use crate::weights::WeightStore;
use bookkeeping::Shared;
use regions::Regions;
use session::{Hands, SessionEnd, SessionError, one_session};
use uploaded_weights::UploadedWeights;

/// How a worker connects and what it offers.
#[derive(Debug, Clone)]
pub struct RemoteConfig {
    /// The coordinator's URL (`http://host:7070` or `https://…`).
    pub coordinator: String,
    /// The cluster's shared token.
    pub token: Option<String>,
    /// CA certificate (PEM) to trust for `https://`.
    pub tls_ca: Option<PathBuf>,
    /// Tiles computed at once on each device.
    pub concurrency: u32,
    /// Torch devices: several share the worker's leases.
    pub device: Devices,
    /// Name shown in the coordinator's logs.
    pub name: String,
    /// The weight store (pinned weights, fetched into it if missing).
    pub models: PathBuf,
    /// Where the weights files jobs upload are kept.
    pub weights_cache: PathBuf,
    /// Longest wait, on shutdown, for the leases in hand to finish.
    pub drain_timeout: Duration,
    /// Where to serve the health probes (none: no probe endpoint).
    pub health_listen: Option<SocketAddr>,
    /// Where to serve this worker's changes to its neighbours (none: it
    /// takes no region leases, only tiles).
    pub change_listen: Option<SocketAddr>,
    /// Where neighbours reach the change service (none: the address it
    /// listens on).
    pub change_address: Option<ChangeAddress>,
    /// The change service's certificate and key (none: it serves in
    /// clear).
    pub change_tls: Option<ChangeTls>,
    /// The name the workers' change certificates carry.
    pub change_tls_name: String,
    /// The CPU threads it computes with.
    pub threads: ThreadsFlag,
}

/// The files a worker's change service serves TLS with.
#[derive(Debug, Clone)]
pub struct ChangeTls {
    /// Its certificate (PEM; the chain may follow it).
    pub cert: PathBuf,
    /// Its private key (PEM).
    pub key: PathBuf,
}

/// Where other workers reach a worker's change service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeAddress {
    /// A host name or IP address (an IPv6 one in brackets).
    pub host: String,
    /// The port, if not the one the service listens on.
    pub port: Option<u16>,
}

impl ChangeAddress {
    /// The address to dial, `listening` being the port the service
    /// listens on.
    pub fn dial(&self, listening: u16) -> String {
        format!("{}:{}", self.host, self.port.unwrap_or(listening))
    }
}

/// What a worker tells the coordinator it offers, over all its devices.
struct Offer {
    /// Tiles it computes at once.
    concurrency: u32,
    /// Its devices as a user writes them (`cuda:0,cuda:1`).
    devices: String,
}

/// Why the worker stopped.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    /// The device cannot be used.
    #[error(transparent)]
    Device(#[from] crate::models::ModelError),
    /// The token is not usable.
    #[error("{0}")]
    Token(String),
    /// A thread or the async runtime could not be started.
    #[error("cannot start the worker: {0}")]
    Start(String),
    /// The coordinator refused the worker for good (wrong token, protocol).
    #[error("the coordinator refused this worker: {0}")]
    Refused(String),
    /// The URL or TLS settings are wrong.
    #[error(transparent)]
    Connect(dreamfarm_proto::connect::ConnectError),
    /// The model folder cannot be used.
    #[error(transparent)]
    Models(#[from] crate::weights::WeightsError),
    /// The folder of uploaded weights cannot be made.
    #[error(
        "cannot use the weights cache {path}: {source}. Fix: point --weights-cache (or DREAMFARM_WEIGHTS_CACHE) at a folder this process can create and write"
    )]
    WeightsCache {
        /// The folder.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The worker would offer more tiles at once than a coordinator takes.
    #[error(
        "--concurrency {concurrency} on {devices} devices offers {} tiles at once, more than a coordinator takes ({MAX_CONCURRENCY}). Fix: pass --concurrency {} or less",
        u64::from(*concurrency) * *devices as u64,
        MAX_CONCURRENCY as usize / devices
    )]
    TooManyTiles {
        /// Tiles per device.
        concurrency: u32,
        /// Devices.
        devices: usize,
    },
    /// The change service or the probes cannot listen.
    #[error(transparent)]
    Listen(#[from] ListenError),
    /// The change service listens on every interface and no address says
    /// where neighbours reach it.
    #[error(
        "--change-listen {0} names no address other workers can dial. Fix: pass --change-address with this worker's address (in Kubernetes, the pod's IP: status.podIP through the downward API)"
    )]
    NoChangeAddress(SocketAddr),
    /// Changes would cross the network in clear beside a TLS coordinator.
    #[error(
        "--change-listen serves changes without TLS, and the coordinator uses TLS: the cluster token and the frames' pixels would cross the network in clear between workers. Fix: give the change service a certificate with --change-tls-cert and --change-tls-key (deploy/TLS.md), or drop --change-listen (this worker then takes tiles through the coordinator)"
    )]
    ChangeWithoutTls,
    /// The change service's certificate or key cannot be used.
    #[error("{flag} {path} {why}")]
    ChangeTlsFile {
        /// `--change-tls-cert` or `--change-tls-key`.
        flag: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong with it, and what to do.
        why: String,
    },
}

/// The tiles a worker of `concurrency` tiles on each of `devices` devices
/// offers at once, if a coordinator takes that many: checked before any
/// model loads, so the mistake costs no start-up.
fn offered_tiles(concurrency: u32, devices: usize) -> Result<u32, RemoteError> {
    let tiles = u64::from(concurrency.max(1)) * devices as u64;
    match u32::try_from(tiles) {
        Ok(tiles) if tiles <= MAX_CONCURRENCY => Ok(tiles),
        _ => Err(RemoteError::TooManyTiles {
            concurrency,
            devices,
        }),
    }
}

/// Runs the worker until `shutdown` resolves; returns the tiles computed.
/// A lost coordinator is redialled at once, one that cannot be reached
/// with a growing pause (250 ms doubling to 5 s).
pub async fn run(
    config: RemoteConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<u64, RemoteError> {
    if config.change_listen.is_some()
        && config.change_tls.is_none()
        && config.coordinator.starts_with("https://")
    {
        return Err(RemoteError::ChangeWithoutTls);
    }
    let token = AttachToken::new(config.token.as_deref())
        .map_err(|e| RemoteError::Token(e.message().into()))?;
    let devices = torch_devices(&config.device)?;
    // Before the compute threads start, which take its count.
    let cpu = config.threads.apply();
    let offer = Offer {
        concurrency: offered_tiles(config.concurrency, devices.len())?,
        devices: device_names(&devices),
    };
    let shared = Arc::new(Shared::default());
    let store = WeightStore::new(&config.models);
    store.open_folder()?;
    let uploaded =
        UploadedWeights::open(&config, token.clone(), tokio::runtime::Handle::current())?;
    let queue = compute::start_threads(
        config.concurrency,
        &devices,
        &store,
        &Arc::new(uploaded),
        &shared,
    )?;
    let regions = match config.change_listen {
        Some(listen) => Some(Arc::new(
            Regions::serve(listen, &config, token.clone()).await?,
        )),
        None => None,
    };
    let hands = Hands {
        shared: &shared,
        queue: &queue,
        regions: regions.as_ref(),
    };
    let probes = match config.health_listen {
        Some(addr) => {
            let metrics = metrics::WorkerMetrics {
                shared: shared.clone(),
                threads: offer.concurrency as usize,
                cpu_threads: cpu.torch,
                changes: regions.as_ref().map(|r| r.side().changes().clone()),
            };
            Some(health::serve(addr, metrics).await?)
        }
        None => None,
    };
    tokio::pin!(shutdown);
    let mut backoff = Duration::from_millis(250);
    loop {
        let session = shared.begin_session();
        let end = one_session(&config, &offer, &token, &hands, session, &mut shutdown).await;
        shared.set_connected(false);
        if let (Some(regions), Ok(SessionEnd::Lost(_))) = (&regions, &end) {
            // The coordinator leases them again, to whoever it has.
            regions.abandon_all();
        }
        match end {
            Ok(SessionEnd::Shutdown) => break,
            Ok(SessionEnd::Lost(why)) => {
                if why == COORDINATOR_STOPPING {
                    tracing::info!("the coordinator is restarting; reconnecting");
                } else {
                    tracing::warn!("lost the coordinator ({why}); reconnecting");
                }
                backoff = Duration::from_millis(250);
            }
            Err(SessionError::Fatal(e)) => return Err(e),
            Err(SessionError::Retry(why)) => {
                tracing::warn!("{why}; retrying in {backoff:?}");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = &mut shutdown => break,
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
    if let Some(probes) = probes {
        probes.abort();
    }
    let done = shared.tiles_computed();
    tracing::info!(tiles = done, "worker stopped");
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_worker_offers_no_more_tiles_than_a_coordinator_takes() {
        assert_eq!(offered_tiles(4, 8).ok(), Some(32));
        assert_eq!(offered_tiles(32, 8).ok(), Some(256));
        let e = offered_tiles(64, 8).expect_err("512 tiles").to_string();
        assert_eq!(
            e,
            "--concurrency 64 on 8 devices offers 512 tiles at once, more than a coordinator takes (256). Fix: pass --concurrency 32 or less"
        );
    }
}
