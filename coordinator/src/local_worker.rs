//! The embedded worker of a single-machine render: tiles computed in this
//! process, one after another, by the same code a cluster worker runs.

use dreamfarm_common::resample::Planar;
use dreamfarm_common::work::TileWork;
use dreamfarm_worker::dream::Dreamer;

use crate::tile_executor::{TileError, TileExecutor};

/// A [`Dreamer`] as a [`TileExecutor`].
pub struct LocalWorker {
    dreamer: Dreamer,
}

impl LocalWorker {
    /// Computes tiles with `dreamer`.
    pub fn new(dreamer: Dreamer) -> Self {
        Self { dreamer }
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
