//! Where tiles are computed, as the frame loop sees it: an in-process worker
//! on one machine, or a pool of remote workers in a cluster. The frame loop
//! does not know which.

use dreamfarm_common::resample::Planar;
use dreamfarm_common::work::TileWork;

/// A tile computation that failed for good (retries are the executor's
/// business).
#[derive(Debug, thiserror::Error)]
#[error("tile {tile} of frame {frame}, octave {octave}: {reason}")]
pub struct TileError {
    /// Frame number.
    pub frame: u64,
    /// Octave.
    pub octave: u32,
    /// Tile index.
    pub tile: u32,
    /// What went wrong.
    pub reason: String,
}

/// Computes batches of tile work.
pub trait TileExecutor {
    /// Computes every unit of `work` and returns each tile's change over its
    /// output region, in the same order.
    fn run(&mut self, work: Vec<TileWork>) -> Result<Vec<Planar>, TileError>;
}

/// No dream: every tile comes back unchanged. A render through it is the
/// camera path alone (`dreamfarm render --dry-run`), in seconds.
#[derive(Debug, Default)]
pub struct Unchanged;

impl TileExecutor for Unchanged {
    fn run(&mut self, work: Vec<TileWork>) -> Result<Vec<Planar>, TileError> {
        Ok(work
            .iter()
            .map(|w| Planar::zeros(w.output.width, w.output.height))
            .collect())
    }
}
