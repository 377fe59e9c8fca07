//! Region leases (docs/frame-loop-on-workers.md): the regions this worker
//! is leased, computed with its device threads beside the change service
//! it serves its neighbours, and the holders of each frame's regions as
//! the coordinator tells them.
//!
//! A region is a task on the runtime: its own tiles go to the compute
//! threads' queue like any lease's, its neighbours' changes are fetched
//! from their workers, and its cell goes up the session whole.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, mpsc as std_mpsc};
use std::time::Duration;

use dreamfarm_common::work::TileWork;
use dreamfarm_proto::auth::AttachToken;
use dreamfarm_proto::pb::worker_message::Body as Up;
use dreamfarm_proto::pb::{LeaseFailed, RegionLeaseStart, WorkerMessage};
use dreamfarm_proto::region_side::{RegionSide, send_cell};
use dreamfarm_proto::region_worker::{Holders, RegionError, RegionWork, host_work, run_region};
use dreamfarm_proto::{Bytes, WireError, region_lease};
use tokio::sync::{mpsc, oneshot};
use tokio::task::AbortHandle;

use super::bookkeeping::Shared;
use super::change_service::ChangeService;
use super::compute::{RegionTile, Task};
use super::lease::JobModel;
use super::{RemoteConfig, RemoteError, up};

/// This worker's side of the frames dreamed by regions.
pub(super) struct Regions {
    /// The changes it serves, the holders it is told, its neighbours.
    side: RegionSide,
    /// The regions being computed, by lease id.
    running: Mutex<HashMap<u64, AbortHandle>>,
}

/// What computing a region needs from the session that leased it.
pub(super) struct RegionContext {
    /// The session's number.
    pub(super) session: u64,
    /// How long a fetch that failed waits for its holder to move, by the
    /// session's heartbeat ([`dreamfarm_proto::region_worker::move_wait`]).
    pub(super) move_wait: Duration,
    /// Its stream up to the coordinator.
    pub(super) up: mpsc::Sender<WorkerMessage>,
    /// The compute threads' queue.
    pub(super) queue: std_mpsc::Sender<Task>,
    /// What the session and the compute threads share.
    pub(super) shared: Arc<Shared>,
}

/// Locks `m`, whatever a panicking holder left (each map entry is whole).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Regions {
    /// Serves this worker's changes on `listen` as `config` says (see
    /// [`ChangeService::serve`]), ready to take region leases whose
    /// fetches carry the cluster's `token`.
    pub(super) async fn serve(
        listen: SocketAddr,
        config: &RemoteConfig,
        token: AttachToken,
    ) -> Result<Self, RemoteError> {
        let service = ChangeService::serve(listen, config).await?;
        Ok(Self {
            side: RegionSide::new(service.address, service.changes, service.channels, token),
            running: Mutex::default(),
        })
    }

    /// What it keeps and answers for its regions.
    pub(super) fn side(&self) -> &RegionSide {
        &self.side
    }

    /// Takes back a region being computed; whether it was one.
    pub(super) fn revoke(&self, lease: u64) -> bool {
        match lock(&self.running).remove(&lease) {
            Some(task) => {
                task.abort();
                true
            }
            None => false,
        }
    }

    /// Gives up the regions being computed (their session is gone: the
    /// coordinator leases them again).
    pub(super) fn abandon_all(&self) {
        for (_, task) in lock(&self.running).drain() {
            task.abort();
        }
    }

    /// Starts computing a fully received region lease; a refusal names
    /// the lease, for the coordinator.
    pub(super) fn start(
        self: &Arc<Self>,
        start: RegionLeaseStart,
        rgb: Vec<u8>,
        cx: RegionContext,
    ) -> Result<(), (u64, WireError)> {
        let (id, attempt) = (start.lease_id, start.attempt);
        let fail = |e: WireError| (id, e);
        let model = JobModel::from_wire(
            start.job_id.clone(),
            start.model.clone(),
            start.weights_sha256.clone(),
            &start.precision,
            start.seed,
        )
        .map_err(fail)?;
        let lease = region_lease::from_wire(start, rgb).map_err(fail)?;
        let (frame, region) = (lease.frame, lease.region);
        let holders = self
            .side
            .holders(&model.job, frame)
            .moved_within(cx.move_wait);
        let regions = self.clone();
        let mut running = lock(&self.running);
        let task = tokio::spawn(async move {
            let outcome = regions.compute(lease, model, holders, &cx.queue).await;
            // Revoked meanwhile: the coordinator wants nothing back.
            if lock(&regions.running).remove(&id).is_none() {
                return;
            }
            cx.shared.region_answered(outcome.is_ok());
            let sent = match outcome {
                Ok(rgb) => {
                    tracing::info!(lease = id, frame, region, "region done");
                    let _sending = cx.shared.sending.lock().await;
                    send_cell(&cx.up, id, attempt, Bytes::from(rgb)).await
                }
                Err(Failure { reason, exchange }) => {
                    tracing::warn!(lease = id, "region failed: {reason}");
                    let failed = LeaseFailed {
                        lease_id: id,
                        reason,
                        exchange_failed: exchange,
                    };
                    cx.up.send(up(Up::Failed(failed))).await.is_ok()
                }
            };
            if !sent {
                tracing::debug!(
                    lease = id,
                    "the session ended before the region's answer went up"
                );
            }
            cx.shared.settle(cx.session);
        });
        running.insert(id, task.abort_handle());
        Ok(())
    }

    /// Computes a region: its input warped from the last frame's part,
    /// its own tiles dreamed on the devices and kept for its neighbours,
    /// theirs fetched. Returns its cell's 8-bit RGB.
    async fn compute(
        &self,
        lease: dreamfarm_common::work::RegionLease,
        model: JobModel,
        holders: Holders,
        queue: &std_mpsc::Sender<Task>,
    ) -> Result<Vec<u8>, Failure> {
        let (plan, input) = host_work(|| {
            let plan = lease.plan();
            let input = lease.input(&plan);
            (plan, input)
        });
        let input = input.ok_or("the lease's part does not hold what its region reads")?;
        let work = RegionWork {
            plan: &plan,
            region: lease.region as usize,
            job: model.job.clone(),
            frame: lease.frame,
            objective: lease.objective.clone(),
            input,
        };
        let dream = |work: TileWork| {
            let (reply, change) = oneshot::channel();
            let task = Task::RegionTile(RegionTile {
                model: model.clone(),
                work,
                reply,
            });
            let queued = queue.send(task);
            async move {
                queued.map_err(|_| "the compute threads stopped".to_string())?;
                change
                    .await
                    .map_err(|_| "the compute threads stopped".to_string())?
            }
        };
        let cell = run_region(work, self.side.changes(), &holders, dream).await?;
        Ok(host_work(|| cell.to_rgb8()))
    }
}

/// Why a region was not computed, as the coordinator is told.
struct Failure {
    /// What went wrong.
    reason: String,
    /// A neighbour's change could not be fetched
    /// ([`RegionError::is_exchange`]).
    exchange: bool,
}

impl From<&str> for Failure {
    fn from(reason: &str) -> Self {
        Self {
            reason: reason.to_string(),
            exchange: false,
        }
    }
}

impl From<RegionError> for Failure {
    fn from(e: RegionError) -> Self {
        Self {
            exchange: e.is_exchange(),
            reason: e.to_string(),
        }
    }
}
