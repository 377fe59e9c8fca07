//! A frame dreamed by regions on the workers (docs/frame-loop-on-workers.md)
//! instead of tile by tile on the coordinator: from the last frame as
//! written, each region is sent the 8-bit part of it that it reads and
//! sends back the frame's 8-bit pixels over its cell, with the frame's
//! colour keeping as learned here from the whole moved frame. The same
//! bits as the frame loop, for every frame that follows the last one.

use std::sync::Arc;

use dreamfarm_common::area::{Area, Rgb8Area, copy_rgb8};
use dreamfarm_common::color::{ColorAdjust, ColorReference};
use dreamfarm_common::params::JobSpec;
use dreamfarm_common::region_plan::RegionPlan;
use dreamfarm_common::resample::{SpareImages, Warp, warp_rgb8};
use dreamfarm_common::work::{RegionLease, last_frame_area};

use crate::frame_loop::FramePlan;
use crate::tile_executor::TileError;

/// One region of a frame to compute.
#[derive(Debug, Clone)]
pub struct RegionTask {
    /// The lease its worker is given.
    pub lease: RegionLease,
    /// Width and height of its cell, which its result covers.
    pub cell: (usize, usize),
    /// Tiles it dreams: its own, every pass.
    pub tiles: u64,
    /// The other regions whose changes it reads, with the pixels it reads
    /// of each ([`RegionPlan::reads_from`]): what a worker holding both
    /// keeps off the network.
    pub reads_from: Vec<(usize, u64)>,
}

/// Where a frame's regions are computed.
pub trait RegionExecutor {
    /// Computes the regions `regions` of frame `frame`; returns each
    /// cell's 8-bit RGB, in region order, or none when the frame was given
    /// up by regions (their workers could not exchange changes) and must
    /// go by tiles.
    fn dream_regions(
        &mut self,
        frame: u64,
        regions: Vec<RegionTask>,
    ) -> Result<Option<Vec<Vec<u8>>>, TileError>;
}

/// Whether frame `n` of `spec` can be dreamed by regions: it follows the
/// last frame with no cross-fade between key frames, and it is dreamed at
/// all. (Colour keeping, which reads the whole moved frame, is learned by
/// the coordinator and sent with the leases: [`Move`].)
pub fn eligible(spec: &JobSpec, plan: &FramePlan) -> bool {
    spec.dream.cadence <= 1 && !plan.objective.layers.is_empty()
}

/// How the last frame becomes a frame's input.
#[derive(Debug, Clone)]
pub struct Move {
    /// The camera move.
    pub camera: Warp,
    /// The colour keeping learned from the whole moved frame, if the frame
    /// has any.
    pub color: Option<Arc<ColorAdjust>>,
}

impl Move {
    /// Frame `n`'s move from `previous`, the last frame as written (8-bit
    /// RGB, `width`×`height`), by `camera`: colour keeping is learned
    /// from the whole moved frame, which is made only when the keeping
    /// reads it (not when it only sharpens).
    pub fn learn(
        spec: &JobSpec,
        n: u64,
        reference: Option<&ColorReference>,
        (previous, (width, height)): (&[u8], (usize, usize)),
        camera: Warp,
        spare: &mut SpareImages,
    ) -> Self {
        let at = (n, spec.frames);
        let color = ColorAdjust::wanted(&spec.color, at, reference.is_some()).then(|| {
            let mut moved = None;
            let color = ColorAdjust::learn(&spec.color, at, reference, || {
                &*moved.insert(warp_rgb8(width, height, previous, &camera, spare))
            });
            if let Some(mut moved) = moved {
                spare.keep(&mut moved);
            }
            Arc::new(color)
        });
        Self { camera, color }
    }
}

/// Frame `plan.frame` of `spec`, `width`×`height`, dreamed by `regions`
/// from `previous`, the last frame as written (8-bit RGB, shared with the
/// leases), moved as
/// `moved` says: its 8-bit RGB, or none when the frame must go by tiles
/// instead ([`RegionExecutor::dream_regions`]).
pub fn dream(
    spec: &JobSpec,
    plan: &FramePlan,
    (width, height): (usize, usize),
    min_side: usize,
    previous: &Arc<Vec<u8>>,
    moved: &Move,
    regions: &mut dyn RegionExecutor,
) -> Result<Option<Vec<u8>>, TileError> {
    let sizes = spec.dream.octave_sizes(width, height, min_side);
    let steps = plan.objective.iterations;
    let regions_plan = RegionPlan::new(&spec.dream, plan.jitter, steps, &sizes);
    // Every region's lease shares the last frame; each worker's session
    // cuts from it the pieces of the parts that worker has not been sent.
    let pixels = Rgb8Area {
        area: Area {
            columns: 0..width,
            rows: 0..height,
        },
        rgb: previous.clone(),
    };
    let leases = regions_plan
        .regions
        .iter()
        .enumerate()
        .map(|(r, region)| {
            let part = last_frame_area(
                (width, height),
                &region.input,
                &moved.camera,
                moved.color.as_deref(),
            );
            let lease = RegionLease {
                frame: plan.frame,
                region: r as u32,
                settings: spec.dream.clone(),
                size: (width, height),
                min_side,
                jitter: plan.jitter,
                objective: plan.objective.clone(),
                camera: moved.camera,
                color: moved.color.clone(),
                part,
                pixels: pixels.clone(),
            };
            let own: usize = (0..sizes.len())
                .flat_map(|o| regions_plan.own_batches(r, o).map(move |t| (o, t)))
                .map(|(o, t)| regions_plan.batches[o][t] - t)
                .sum();
            RegionTask {
                lease,
                cell: (region.cell.columns.len(), region.cell.rows.len()),
                tiles: (own * regions_plan.passes) as u64,
                reads_from: regions_plan.reads_from(r),
            }
        })
        .collect();
    let Some(cells) = regions.dream_regions(plan.frame, leases)? else {
        return Ok(None);
    };
    let mut frame = vec![0u8; 3 * width * height];
    for (region, cell) in regions_plan.regions.iter().zip(&cells) {
        let cell_area = &region.cell;
        copy_rgb8((cell_area, cell), (&pixels.area, &mut frame), cell_area);
    }
    Ok(Some(frame))
}
