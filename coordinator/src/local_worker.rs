//! The embedded worker of a single-machine render: tiles computed in this
//! process, one after another, by the same code a cluster worker runs.

use dreamfarm_common::params::DreamSettings;
use dreamfarm_common::resample::Planar;
use dreamfarm_common::work::TileWork;
use dreamfarm_proto::pb::PixelFormat;
use dreamfarm_proto::pixels;
use dreamfarm_worker::dream::{DreamError, Dreamer};
use dreamfarm_worker::weights::WeightStore;
use tch::Device;

use crate::tile_executor::{InOrder, TileError, TileExecutor, TileKey};

/// A [`Dreamer`] as a [`TileExecutor`].
pub struct LocalWorker {
    dreamer: Dreamer,
    min_side: usize,
    /// The job's wire format, whose rounding tiles get here too.
    wire: PixelFormat,
    /// Tiles submitted and not yet computed.
    queue: InOrder,
}

impl LocalWorker {
    /// Loads the job's model (weights from the default store) on `device`
    /// (see [`dreamfarm_worker::models::torch_device`]).
    pub fn load(settings: &DreamSettings, seed: u64, device: Device) -> Result<Self, DreamError> {
        let min_side = settings.model_spec()?.min_side();
        let dreamer = Dreamer::load(
            &settings.model,
            settings.weights.as_deref(),
            settings.precision,
            seed,
            device,
            &WeightStore::new(WeightStore::default_dir()),
        )?;
        Ok(Self {
            dreamer,
            min_side,
            wire: pixels::format_for(settings.wire_precision),
            queue: InOrder::default(),
        })
    }

    /// The smallest image side the model accepts.
    pub fn min_side(&self) -> usize {
        self.min_side
    }

    /// The dreamer behind it.
    pub fn dreamer(&mut self) -> &mut Dreamer {
        &mut self.dreamer
    }

    /// Dreams `work` now and returns its change.
    pub fn compute(&mut self, work: TileWork) -> Result<Planar, TileError> {
        dream_as_on_the_wire(&mut self.dreamer, self.wire, work)
    }
}

/// `dreamer`'s change of `work`, both rounded as a cluster's `wire` would
/// round them: what a cluster worker would receive and send back.
fn dream_as_on_the_wire(
    dreamer: &mut Dreamer,
    wire: PixelFormat,
    mut work: TileWork,
) -> Result<Planar, TileError> {
    pixels::round_as_on_the_wire(&mut work.pixels, wire);
    let mut change = dreamer.dream_tile(&work).map_err(|e| TileError {
        frame: work.frame,
        octave: work.octave,
        tile: work.tile,
        reason: e.to_string(),
    })?;
    pixels::round_as_on_the_wire(&mut change, wire);
    Ok(change)
}

impl TileExecutor for LocalWorker {
    fn submit(&mut self, work: Vec<TileWork>) -> Result<(), TileError> {
        self.queue.submit(work);
        Ok(())
    }

    fn next(&mut self) -> Result<(TileKey, Planar), TileError> {
        let (dreamer, wire) = (&mut self.dreamer, self.wire);
        self.queue
            .next(|work| dream_as_on_the_wire(dreamer, wire, work))
    }
}
