//! Host-side image resampling: the octave pyramid's resizes and the infinite
//! zoom's per-frame camera move, on planar f32 RGB images.
//!
//! Both use the Keys cubic kernel with `a = -0.5` (Catmull-Rom): sharp, with
//! little ringing, and exact at integer offsets, so an identity transform
//! hands back the very same samples.
//!
//! The hot loops are compiled twice (`#[multiversion]`): for baseline
//! x86-64, which every machine runs, and for AVX2, picked at run time where
//! the CPU has it (the tiling's blend and the frame loop's clamped sums
//! too). Never with FMA: a fused multiply-add rounds once where the
//! baseline rounds twice, and a frame must be the same bits on every
//! machine a job moves to; without it each lane does the baseline's
//! operations in the baseline's order.
//!
//! - `planar.rs`: the image itself (planar f32 RGB), its 8-bit form and
//!   the spent images a frame loop reuses.
//! - `resize.rs`: the resizes between octaves, whole or by bands of rows.
//! - `warp.rs`: the camera move between frames.

mod planar;
mod resize;
mod warp;

pub use planar::{Planar, SpareImages, add_clamped_row, all_finite};
pub use resize::{Resize, RowResize, resize, resize_with};
pub use warp::{Rgb8Rect, Warp, warp, warp_rgb8, warp_rgb8_rect};

/// Images the tests of every part build from.
#[cfg(test)]
mod test_images;
