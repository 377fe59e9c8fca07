//! Where tiles are computed, as the frame loop sees it: an in-process worker
//! on one machine, or a pool of remote workers in a cluster. The frame loop
//! does not know which.

use std::collections::VecDeque;

use dreamfarm_common::resample::Planar;
use dreamfarm_common::work::TileWork;

use crate::region_frames::RegionExecutor;

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

/// Which tile of a frame a change is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TileKey {
    /// Octave.
    pub octave: u32,
    /// The pass's first step within the octave's steps.
    pub first_iteration: u32,
    /// Tile index in the octave's grid.
    pub tile: u32,
}

impl TileKey {
    /// The key of `work`.
    pub fn of(work: &TileWork) -> Self {
        Self {
            octave: work.octave,
            first_iteration: work.first_iteration,
            tile: work.tile,
        }
    }
}

/// Computes tiles. The frame loop hands tiles in as their pixels become
/// known and takes changes back as they finish, so no worker waits for a
/// whole octave to end before the next one's tiles exist.
pub trait TileExecutor {
    /// Starts computing `work`.
    fn submit(&mut self, work: Vec<TileWork>) -> Result<(), TileError>;

    /// Waits for a submitted tile to finish and returns its change over its
    /// output region. Called only while a submitted tile has not been
    /// returned; tiles may come back in any order.
    fn next(&mut self) -> Result<(TileKey, Planar), TileError>;

    /// Whether every change [`next`](Self::next) returns is known to be
    /// finite already, so the frame loop need not read it all again to
    /// check: a change from the wire was checked piece by piece as it was
    /// decoded, while in cache.
    fn changes_are_finite(&self) -> bool {
        false
    }

    /// Where this executor computes a frame's regions, when it can now
    /// (workers that serve changes: docs/frame-loop-on-workers.md); none
    /// sends every frame through tiles.
    fn regions(&mut self) -> Option<&mut dyn RegionExecutor> {
        None
    }
}

/// The submitted tiles of an executor that computes one at a time, in the
/// order they came.
#[derive(Debug, Default)]
pub struct InOrder(VecDeque<TileWork>);

impl InOrder {
    /// Queues `work`.
    pub fn submit(&mut self, work: Vec<TileWork>) {
        self.0.extend(work);
    }

    /// Computes the oldest queued tile with `compute`.
    pub fn next(
        &mut self,
        compute: impl FnOnce(TileWork) -> Result<Planar, TileError>,
    ) -> Result<(TileKey, Planar), TileError> {
        let work = self.0.pop_front().ok_or_else(|| TileError {
            frame: 0,
            octave: 0,
            tile: 0,
            reason: "no tile was outstanding (a frame loop bug)".into(),
        })?;
        let key = TileKey::of(&work);
        Ok((key, compute(work)?))
    }
}

/// No dream: every tile comes back unchanged. A render through it is the
/// camera path alone (`dreamfarm render --dry-run`), in seconds.
#[derive(Debug, Default)]
pub struct Unchanged(InOrder);

impl TileExecutor for Unchanged {
    fn submit(&mut self, work: Vec<TileWork>) -> Result<(), TileError> {
        self.0.submit(work);
        Ok(())
    }

    fn next(&mut self) -> Result<(TileKey, Planar), TileError> {
        self.0.next(|w| {
            let (width, height) = w.change_size();
            Ok(Planar::zeros(width, height))
        })
    }
}
