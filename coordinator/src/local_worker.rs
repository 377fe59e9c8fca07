//! The embedded worker of a single-machine render: tiles computed in this
//! process, one after another, by the same code a cluster worker runs.

use dreamfarm_common::device::DeviceSpec;
use dreamfarm_common::model_catalog::ModelSpec;
use dreamfarm_common::params::{DreamSettings, ParamError};
use dreamfarm_common::resample::Planar;
use dreamfarm_common::work::TileWork;
use dreamfarm_worker::dream::{DreamError, Dreamer};
use dreamfarm_worker::models::{Model, ModelError, torch_device};
use dreamfarm_worker::weights::{WeightStore, WeightsError};

use crate::tile_executor::{TileError, TileExecutor};

/// Smallest side a TorchScript model is assumed to accept.
const TORCHSCRIPT_MIN_SIDE: u32 = 32;

/// Why the embedded worker could not start.
#[derive(Debug, thiserror::Error)]
pub enum LocalWorkerError {
    /// The job's model or layers are not valid.
    #[error(transparent)]
    Params(#[from] ParamError),
    /// The weights are missing or bad.
    #[error(transparent)]
    Weights(#[from] WeightsError),
    /// The model or device failed.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// The layers do not fit the model.
    #[error(transparent)]
    Dream(#[from] DreamError),
}

/// A [`Dreamer`] as a [`TileExecutor`].
pub struct LocalWorker {
    dreamer: Dreamer,
    min_side: usize,
}

impl LocalWorker {
    /// Loads the job's model (weights from the default store) on `device`.
    pub fn load(
        settings: &DreamSettings,
        seed: u64,
        device: DeviceSpec,
    ) -> Result<Self, LocalWorkerError> {
        let spec = settings.model_spec()?;
        let device = torch_device(device)?;
        let weights = WeightStore::new(WeightStore::default_dir())
            .resolve(&spec, settings.weights.as_deref())?;
        let model = Model::load(&spec, &weights, device)?;
        let min_side = match spec {
            ModelSpec::Builtin(m) => m.info().min_side,
            ModelSpec::TorchScript(_) => TORCHSCRIPT_MIN_SIDE,
        };
        tracing::info!(model = model.name(), ?device, "model loaded");
        Ok(Self {
            dreamer: Dreamer::new(model, settings, seed)?,
            min_side: min_side as usize,
        })
    }

    /// The smallest image side the model accepts.
    pub fn min_side(&self) -> usize {
        self.min_side
    }

    /// The dreamer behind it.
    pub fn dreamer(&self) -> &Dreamer {
        &self.dreamer
    }
}

impl TileExecutor for LocalWorker {
    fn run(&mut self, work: Vec<TileWork>) -> Result<Vec<Planar>, TileError> {
        work.iter()
            .map(|w| {
                self.dreamer.dream_tile(w).map_err(|e| TileError {
                    frame: w.frame,
                    octave: w.octave,
                    tile: w.tile,
                    reason: e.to_string(),
                })
            })
            .collect()
    }
}
