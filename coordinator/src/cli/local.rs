//! The embedded worker of single-machine commands.

use dreamfarm_common::device::DeviceSpec;
use dreamfarm_common::model_catalog::ModelSpec;
use dreamfarm_common::params::DreamSettings;
use dreamfarm_coordinator::local_worker::LocalWorker;
use dreamfarm_worker::dream::Dreamer;
use dreamfarm_worker::models::{Model, torch_device};
use dreamfarm_worker::weights::WeightStore;

/// Smallest side a TorchScript model is assumed to accept.
const TORCHSCRIPT_MIN_SIDE: u32 = 32;

/// Loads the job's model on `device` and wraps it as a tile executor;
/// also returns the smallest image side the model accepts.
pub fn local_worker(
    settings: &DreamSettings,
    seed: u64,
    device: DeviceSpec,
) -> anyhow::Result<(LocalWorker, usize)> {
    let spec = settings.model_spec()?;
    let device = torch_device(device)?;
    let weights =
        WeightStore::new(WeightStore::default_dir()).resolve(&spec, settings.weights.as_deref())?;
    let model = Model::load(&spec, &weights, device)?;
    let min_side = match spec {
        ModelSpec::Builtin(m) => m.info().min_side,
        ModelSpec::TorchScript(_) => TORCHSCRIPT_MIN_SIDE,
    };
    tracing::info!(model = model.name(), ?device, "model loaded");
    Ok((
        LocalWorker::new(Dreamer::new(model, settings, seed)?),
        min_side as usize,
    ))
}
