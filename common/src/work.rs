//! The unit of work a worker computes: gradient steps on one tile of one
//! octave of one frame, and what it returns.

use std::sync::Arc;

use crate::objective::FrameObjective;
use crate::params::MAX_TILE_BATCH;
use crate::resample::Planar;
use crate::tiling::Rect;

/// Gradient steps on one tile.
#[derive(Debug, Clone, PartialEq)]
pub struct TileWork {
    /// Frame number.
    pub frame: u64,
    /// Octave, 0 the smallest.
    pub octave: u32,
    /// Tile index in the octave's grid.
    pub tile: u32,
    /// What the frame's dream maximises (shared by its tiles).
    pub objective: Arc<FrameObjective>,
    /// Index of this lease's first step within the octave's steps.
    pub first_iteration: u32,
    /// Steps to run in this lease.
    pub iterations: u32,
    /// Largest window shift: `pixels` has this much room on each side.
    pub jitter: u32,
    /// The tile's core, context margin and jitter room; for a batch, each
    /// tile's in turn, stacked top to bottom.
    pub pixels: Planar,
    /// Where the returned change lies within a tile's pixels.
    pub output: Rect,
    /// Tiles in the batch (at least 1): consecutive in the grid from
    /// `tile`, equal in size, their changes returned stacked the same way.
    pub tiles: u32,
}

impl TileWork {
    /// Rows of one tile's pixels.
    pub fn tile_height(&self) -> usize {
        self.pixels.height / self.tiles.max(1) as usize
    }

    /// Width and height of the change that comes back: each tile's output
    /// region, stacked.
    pub fn change_size(&self) -> (usize, usize) {
        (
            self.output.width,
            self.output.height * self.tiles.max(1) as usize,
        )
    }

    /// Checks that the geometry is self-consistent, so that a worker never
    /// indexes outside the pixels it was given.
    pub fn check(&self) -> Result<(), String> {
        if !(1..=MAX_TILE_BATCH).contains(&self.tiles)
            || !self.pixels.height.is_multiple_of(self.tiles as usize)
        {
            return Err(format!(
                "{} tiles cannot be stacked in {} rows (1 to {MAX_TILE_BATCH} tiles of equal height)",
                self.tiles, self.pixels.height
            ));
        }
        let (w, h) = (self.pixels.width as i64, self.tile_height() as i64);
        let j = 2 * i64::from(self.jitter);
        let o = self.output;
        if self.pixels.data.len() != 3 * self.pixels.width * self.pixels.height {
            return Err(format!(
                "{} samples for {}x{} pixels",
                self.pixels.data.len(),
                self.pixels.width,
                self.pixels.height
            ));
        }
        if w <= j || h <= j {
            return Err(format!(
                "a {w}x{h} tile has no room for jitter {}",
                self.jitter
            ));
        }
        if o.x < 0
            || o.y < 0
            || o.x + o.width as i64 > w
            || o.y + o.height as i64 > h
            || o.width == 0
            || o.height == 0
        {
            return Err(format!("output {o:?} lies outside the {w}x{h} tile"));
        }
        Ok(())
    }
}
