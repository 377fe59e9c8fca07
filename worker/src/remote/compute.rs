//! The compute threads: one per unit of announced concurrency, each taking
//! work off one queue, dreaming it with its own cached copy of the model:
//! a tile lease's result goes up the lease's session stream, a region's
//! tile back to the region's task.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::{Arc, Mutex, mpsc as std_mpsc};
use std::time::Instant;

use dreamfarm_common::model_catalog::ModelSpec;
use dreamfarm_common::params::NetworkPrecision;
use dreamfarm_common::resample::Planar;
use dreamfarm_common::work::TileWork;
use dreamfarm_proto::pb::worker_message::Body as Up;
use dreamfarm_proto::pb::{Chunk, HandBack, LeaseFailed, ResultStart};
use dreamfarm_proto::{WEIGHTS_MISFIT, pixels};
use tch::Device;
use tokio::sync::oneshot;

use super::bookkeeping::Shared;
use super::lease::{JobModel, Lease};
use super::uploaded_weights::UploadedWeights;
use super::{RemoteError, up};
use crate::dream::{DreamError, Dreamer};
use crate::models::ModelError;
use crate::weights::WeightStore;

/// Dreamers kept per compute thread (one per job's model and seed).
const DREAMERS_KEPT: usize = 4;

/// What a compute thread is given.
pub(super) enum Task {
    /// A tile lease, answered up its session.
    Lease(Lease),
    /// A tile of a region this worker computes.
    RegionTile(RegionTile),
}

/// A tile (or batch) of one of this worker's regions, to dream on a
/// device.
pub(super) struct RegionTile {
    /// What dreams it.
    pub(super) model: JobModel,
    /// The tile.
    pub(super) work: TileWork,
    /// Where its change goes.
    pub(super) reply: oneshot::Sender<Result<Planar, String>>,
}

/// Starts `concurrency` compute threads (at least one) on each of
/// `devices`, their weights from `store` (pinned) or `uploaded` (a job's
/// own); returns the one queue that feeds them all, so a free device takes
/// the next lease. They end when it is dropped.
pub(super) fn start_threads(
    concurrency: u32,
    devices: &[Device],
    store: &WeightStore,
    uploaded: &Arc<UploadedWeights>,
    shared: &Arc<Shared>,
) -> Result<std_mpsc::Sender<Task>, RemoteError> {
    let (queue_tx, queue_rx) = std_mpsc::channel::<Task>();
    let queue_rx = Arc::new(Mutex::new(queue_rx));
    for &device in devices {
        for i in 0..concurrency.max(1) {
            let (shared, queue_rx) = (shared.clone(), queue_rx.clone());
            let dreamers = DreamerCache::new(device, store.clone(), uploaded.clone());
            std::thread::Builder::new()
                .name(format!("compute {device:?} {i}"))
                .spawn(move || compute_loop(dreamers, &shared, &queue_rx))
                .map_err(|e| RemoteError::Start(format!("a compute thread: {e}")))?;
        }
    }
    Ok(queue_tx)
}

/// A compute thread: takes tasks off the queue and computes them.
fn compute_loop(
    mut dreamers: DreamerCache,
    shared: &Shared,
    queue: &Mutex<std_mpsc::Receiver<Task>>,
) {
    crate::cpu_threads::enter_compute_thread();
    loop {
        let next = queue.lock().unwrap_or_else(|e| e.into_inner()).recv();
        let Ok(task) = next else {
            return;
        };
        let started = Instant::now();
        match task {
            Task::Lease(lease) => compute_one(&mut dreamers, shared, &lease),
            Task::RegionTile(tile) => dream_region_tile(&mut dreamers, shared, tile),
        }
        shared.busy(started.elapsed());
    }
}

/// Dreams a region's tile and hands its change back (a region being
/// computed is finished while the worker drains: its neighbours wait for
/// its changes).
fn dream_region_tile(dreamers: &mut DreamerCache, shared: &Shared, tile: RegionTile) {
    // A region given up (revoked, its session lost) wants nothing more.
    if tile.reply.is_closed() {
        return;
    }
    let change = dreamers.dream(&tile.model, &tile.work);
    if change.is_ok() {
        shared.tiles_done(u64::from(tile.work.tiles));
    }
    let _ = tile.reply.send(change);
}

/// Computes one lease and answers it, unless it was revoked, belongs to a
/// lost session, or the worker is draining (then it is handed back).
fn compute_one(dreamers: &mut DreamerCache, shared: &Shared, lease: &Lease) {
    let settle = || shared.settle(lease.session);
    let answer = |body: Up| {
        settle();
        let _ = lease.up.blocking_send(up(body));
    };
    if shared.take_revoked(lease.id) || !shared.is_current(lease.session) {
        settle();
        return;
    }
    if shared.is_draining() {
        answer(Up::HandBack(HandBack {
            lease_ids: vec![lease.id],
        }));
        return;
    }
    let result = dreamers.dream(&lease.model, &lease.work);
    if shared.take_revoked(lease.id) {
        tracing::info!(
            lease = lease.id,
            "lease revoked while computing; result dropped"
        );
        settle();
        return;
    }
    match result.and_then(|change| send_result(shared, lease, change)) {
        Ok(()) => {
            shared.tiles_done(1);
            settle();
            tracing::debug!(lease = lease.id, "tile done");
        }
        Err(reason) => {
            tracing::warn!(lease = lease.id, "tile failed: {reason}");
            answer(Up::Failed(LeaseFailed {
                lease_id: lease.id,
                reason,
                exchange_failed: false,
            }));
        }
    }
}

/// What makes one dreamer: a job's model, the digest of its own weights
/// (if it uploaded any), its precision and the job's seed. The objective
/// is not part of it: it comes with each lease.
type DreamerKey = (String, Option<String>, NetworkPrecision, u64);

/// The dreamers one compute thread keeps, one per job's model and seed,
/// the oldest loaded dropped first.
struct DreamerCache {
    /// Where the models run.
    device: Device,
    /// Where the pinned weights come from.
    store: WeightStore,
    /// Where the weights jobs upload come from.
    uploaded: Arc<UploadedWeights>,
    /// Loaded dreamers, oldest first.
    kept: VecDeque<(DreamerKey, Dreamer)>,
}

impl DreamerCache {
    /// An empty cache for `device`, loading weights from `store`, or from
    /// `uploaded` for a job that sent its own.
    fn new(device: Device, store: WeightStore, uploaded: Arc<UploadedWeights>) -> Self {
        Self {
            device,
            store,
            uploaded,
            kept: VecDeque::new(),
        }
    }

    /// Dreams `work` with `model`'s dreamer, in a span naming the tile.
    fn dream(&mut self, model: &JobModel, work: &TileWork) -> Result<Planar, String> {
        let span = tracing::info_span!(
            "tile",
            frame = work.frame,
            octave = work.octave,
            tile = work.tile
        );
        let _span = span.enter();
        self.get(model)
            .and_then(|d| d.dream_tile(work).map_err(|e| e.to_string()))
    }

    /// The dreamer of a job's model, loaded on first use.
    fn get(&mut self, model: &JobModel) -> Result<&mut Dreamer, String> {
        let key = (
            model.model.clone(),
            model.weights_sha256.clone(),
            model.precision,
            model.seed,
        );
        let i = match self.kept.iter().position(|(k, _)| *k == key) {
            Some(i) => i,
            None => {
                let weights = match &model.weights_sha256 {
                    Some(sha256) => Some(self.uploaded.path(&model.job, sha256)?),
                    None => None,
                };
                let dreamer = load_dreamer(
                    &model.model,
                    weights.as_deref(),
                    model.precision,
                    model.seed,
                    self.device,
                    &self.store,
                )?;
                if self.kept.len() == DREAMERS_KEPT {
                    self.kept.pop_front();
                }
                self.kept.push_back((key, dreamer));
                self.kept.len() - 1
            }
        };
        Ok(&mut self.kept[i].1)
    }
}

/// Sends a lease's change: its head, then its pixels piece by piece as
/// they are encoded, none of another result's between them.
fn send_result(shared: &Shared, lease: &Lease, change: Planar) -> Result<(), String> {
    let pieces = pixels::encode(change, lease.format).map_err(|e| e.to_string())?;
    let _sending = shared.sending.blocking_lock();
    let head = ResultStart {
        lease_id: lease.id,
        attempt: lease.attempt,
        format: lease.format as i32,
        pixels_bytes: pieces.total_bytes(),
    };
    // A closed stream means the session ended: the coordinator requeues
    // the lease, so there is nothing to report here.
    let _ = lease.up.blocking_send(up(Up::ResultStart(head)));
    for data in pieces {
        let _ = lease.up.blocking_send(up(Up::ResultChunk(Chunk {
            lease_id: lease.id,
            data,
        })));
    }
    Ok(())
}

/// Loads the dreamer of a job's model (a built-in name from the wire,
/// checked first), with the `weights` the job uploaded, or the pinned ones.
fn load_dreamer(
    model: &str,
    weights: Option<&Path>,
    precision: NetworkPrecision,
    seed: u64,
    device: Device,
    store: &WeightStore,
) -> Result<Dreamer, String> {
    match model.parse::<ModelSpec>() {
        Err(e) => Err(format!("bad model from the coordinator: {e}")),
        Ok(ModelSpec::TorchScript(_)) => {
            Err("cluster workers dream with built-in models only".into())
        }
        Ok(ModelSpec::Builtin(_)) => Dreamer::load(model, weights, precision, seed, device, store)
            .map_err(|e| match e {
                DreamError::Model(ModelError::BadWeights { reason, .. }) if weights.is_some() => {
                    format!("{WEIGHTS_MISFIT} {model}: {reason}")
                }
                e => e.to_string(),
            }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Why loading `model` from the wire is refused.
    fn refusal(model: &str) -> String {
        let store = WeightStore::new("unused");
        load_dreamer(model, None, NetworkPrecision::F32, 0, Device::Cpu, &store)
            .err()
            .expect("refused")
    }

    #[test]
    fn an_unknown_model_is_refused_before_any_weights_load() {
        let e = refusal("alexnet");
        assert!(e.starts_with("bad model from the coordinator"), "{e}");
    }

    #[test]
    fn uploaded_weights_that_do_not_fit_the_model_say_so() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("w.safetensors");
        let w = tch::Tensor::zeros([3], (tch::Kind::Float, Device::Cpu));
        tch::Tensor::write_safetensors(&[("w", &w)], &path).expect("written");
        let store = WeightStore::new("unused");
        let e = load_dreamer(
            "googlenet",
            Some(&path),
            NetworkPrecision::F32,
            0,
            Device::Cpu,
            &store,
        )
        .err()
        .expect("refused");
        assert!(
            e.starts_with(&format!("{WEIGHTS_MISFIT} googlenet: parameter ")),
            "{e}"
        );
    }

    #[test]
    fn a_torchscript_model_from_the_wire_is_refused() {
        assert_eq!(
            refusal("/tmp/evil.pt"),
            "cluster workers dream with built-in models only"
        );
    }
}
