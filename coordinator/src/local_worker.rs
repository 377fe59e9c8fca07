//! The embedded worker of a single-machine render: tiles computed in this
//! process, one after another, by the same code a cluster worker runs.

use dreamfarm_common::device::DeviceSpec;
use dreamfarm_common::params::DreamSettings;
use dreamfarm_common::resample::Planar;
use dreamfarm_common::work::TileWork;
use dreamfarm_proto::pb::PixelFormat;
use dreamfarm_proto::pixels;
use dreamfarm_worker::dream::{DreamError, Dreamer};
use dreamfarm_worker::models::torch_device;
use dreamfarm_worker::weights::WeightStore;

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
    /// Loads the job's model (weights from the default store) on `device`.
    pub fn load(
        settings: &DreamSettings,
        seed: u64,
        device: DeviceSpec,
    ) -> Result<Self, DreamError> {
        let min_side = settings.model_spec()?.min_side();
        let dreamer = Dreamer::load(
            &settings.model,
            settings.weights.as_deref(),
            settings.precision,
            seed,
            torch_device(device)?,
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
}

impl TileExecutor for LocalWorker {
    fn submit(&mut self, work: Vec<TileWork>) -> Result<(), TileError> {
        self.queue.submit(work);
        Ok(())
    }

    fn next(&mut self) -> Result<(TileKey, Planar), TileError> {
        let (dreamer, wire) = (&mut self.dreamer, self.wire);
        self.queue.next(|mut w| {
            // What a cluster worker would receive and send back.
            pixels::round_as_on_the_wire(&mut w.pixels, wire);
            let mut change = dreamer.dream_tile(&w).map_err(|e| TileError {
                frame: w.frame,
                octave: w.octave,
                tile: w.tile,
                reason: e.to_string(),
            })?;
            pixels::round_as_on_the_wire(&mut change, wire);
            Ok(change)
        })
    }
}
