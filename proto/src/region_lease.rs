//! A region lease on the wire: [`RegionLease`] to and from its head
//! (`RegionLeaseStart`, the 8-bit part following in pieces), every number
//! checked on arrival so that a worker never plans a frame from nonsense.

use std::sync::Arc;

use dreamfarm_common::area::Rgb8Area;
use dreamfarm_common::params::{DreamSettings, MAX_SIDE};
use dreamfarm_common::resample::Warp;
use dreamfarm_common::work::RegionLease;

use crate::{WireError, color_adjust, objective, pb, region_parts};

/// The message fields of `lease` that describe the region (the caller
/// fills in the lease's id, job, model, try, deadline and weights, and the
/// pieces of its part it sends with their bytes: `region_parts`).
pub fn to_wire(lease: &RegionLease) -> pb::RegionLeaseStart {
    let s = &lease.settings;
    let c = &lease.camera;
    pb::RegionLeaseStart {
        frame: lease.frame,
        region: lease.region,
        settings: Some(pb::RegionSettings {
            width: lease.size.0 as u32,
            height: lease.size.1 as u32,
            min_side: lease.min_side as u32,
            octaves: s.octaves,
            octave_scale: s.octave_scale,
            tile_size: s.tile_size,
            parallelism: s.parallelism,
            tile_margin: s.tile_margin,
            blend_band: s.blend_band,
            tile_batch: s.tile_batch,
            iterations_per_lease: s.iterations_per_lease,
            jitter: lease.jitter,
        }),
        camera: Some(pb::CameraMove {
            zoom: c.zoom,
            rotate_deg: c.rotate_deg,
            pan_x: c.pan.0,
            pan_y: c.pan.1,
            center_x: c.center.0,
            center_y: c.center.1,
        }),
        part: Some(region_parts::to_wire(&lease.part)),
        objective: Some(objective::to_wire(&lease.objective)),
        color: lease.color.as_deref().map(color_adjust::to_wire),
        ..Default::default()
    }
}

/// The lease of a head and its part's bytes, checked: a frame inside the
/// sides a job may have, settings a job may have, a finite camera move
/// with a positive zoom, a part inside the frame with its bytes, and a
/// region the plan has.
pub fn from_wire(start: pb::RegionLeaseStart, rgb: Vec<u8>) -> Result<RegionLease, WireError> {
    let bad = |what: String| WireError::Protocol(format!("region lease: {what}"));
    let s = start
        .settings
        .ok_or_else(|| bad("no region settings".into()))?;
    let (width, height) = (s.width, s.height);
    if !(1..=MAX_SIDE).contains(&width) || !(1..=MAX_SIDE).contains(&height) {
        return Err(bad(format!("a {width}x{height} frame")));
    }
    let settings = DreamSettings {
        octaves: s.octaves,
        octave_scale: s.octave_scale,
        tile_size: s.tile_size,
        parallelism: s.parallelism,
        tile_margin: s.tile_margin,
        blend_band: s.blend_band,
        tile_batch: s.tile_batch,
        iterations_per_lease: s.iterations_per_lease,
        ..Default::default()
    };
    settings
        .validate(1)
        .map_err(|e| bad(format!("settings: {e}")))?;
    let c = start.camera.ok_or_else(|| bad("no camera move".into()))?;
    let numbers = [
        c.zoom,
        c.rotate_deg,
        c.pan_x,
        c.pan_y,
        c.center_x,
        c.center_y,
    ];
    if !numbers.iter().all(|v| v.is_finite()) || c.zoom <= 0.0 {
        return Err(bad(format!("camera move {c:?}")));
    }
    let part = start.part.ok_or_else(|| bad("no part".into()))?;
    let inside = |at: u32, len: u32, side: u32| u64::from(at) + u64::from(len) <= u64::from(side);
    if !inside(part.x, part.width, width) || !inside(part.y, part.height, height) {
        return Err(bad(format!(
            "part {part:?} outside the {width}x{height} frame"
        )));
    }
    if rgb.len() as u64 != 3 * u64::from(part.width) * u64::from(part.height) {
        return Err(bad(format!(
            "{} bytes for a {}x{} part",
            rgb.len(),
            part.width,
            part.height
        )));
    }
    let objective =
        objective::from_wire(start.objective.ok_or_else(|| bad("no objective".into()))?)?;
    let color = start.color.map(color_adjust::from_wire).transpose()?;
    let lease = RegionLease {
        frame: start.frame,
        region: start.region,
        settings,
        size: (width as usize, height as usize),
        min_side: s.min_side as usize,
        jitter: s.jitter,
        objective: Arc::new(objective),
        camera: Warp {
            zoom: c.zoom,
            rotate_deg: c.rotate_deg,
            pan: (c.pan_x, c.pan_y),
            center: (c.center_x, c.center_y),
        },
        color: color.map(Arc::new),
        part: region_parts::from_wire(&part),
        pixels: Rgb8Area {
            area: region_parts::from_wire(&part),
            rgb: Arc::new(rgb),
        },
    };
    let regions = lease.plan().regions.len();
    if start.region as usize >= regions {
        return Err(bad(format!(
            "region {} of a frame of {regions}",
            start.region
        )));
    }
    Ok(lease)
}

#[cfg(test)]
mod tests {
    use dreamfarm_common::area::Area;
    use dreamfarm_common::objective::FrameObjective;

    use super::*;

    /// Region 5 of a 300x200 frame of tiles of 64, its part the frame's
    /// top-left 40x30.
    fn lease() -> RegionLease {
        let settings = DreamSettings {
            octaves: 2,
            tile_size: 64,
            ..Default::default()
        };
        let objective = FrameObjective::at(&settings, 3, 10, 0, None).expect("objective");
        let part = Area {
            columns: 0..40,
            rows: 0..30,
        };
        RegionLease {
            frame: 3,
            region: 5,
            settings,
            size: (300, 200),
            min_side: 32,
            jitter: 4,
            objective: Arc::new(objective),
            camera: Warp {
                zoom: 1.02,
                rotate_deg: 0.5,
                pan: (1.0, -2.0),
                center: (150.0, 100.0),
            },
            color: None,
            part: part.clone(),
            pixels: Rgb8Area {
                area: part,
                rgb: Arc::new((0..3 * 40 * 30).map(|i| i as u8).collect()),
            },
        }
    }

    #[test]
    fn a_region_lease_comes_back_as_it_went() {
        let mut lease = lease();
        let start = to_wire(&lease);
        assert_eq!(
            from_wire(start, lease.pixels.rgb.to_vec()).expect("valid"),
            lease
        );
        // With colour keeping (its own checks: `color_adjust`).
        let sharpen = dreamfarm_common::color::Sharpen {
            amount: 0.3,
            radius_px: 1.5,
        };
        lease.color = Some(Arc::new(dreamfarm_common::color::ColorAdjust {
            sharpen: Some(sharpen),
            ..Default::default()
        }));
        let start = to_wire(&lease);
        assert_eq!(
            from_wire(start, lease.pixels.rgb.to_vec()).expect("valid"),
            lease
        );
    }

    /// Breaks a lease's head or part.
    type Breaks = fn(&mut pb::RegionLeaseStart, &mut Vec<u8>);

    #[test]
    fn a_region_lease_that_makes_no_sense_is_refused() {
        let lease = lease();
        let cases: [(&str, Breaks); 7] = [
            ("a 0x200 frame", |s, _| {
                s.settings.as_mut().expect("settings").width = 0;
            }),
            ("settings:", |s, _| {
                s.settings.as_mut().expect("settings").octave_scale = f64::NAN;
            }),
            ("camera move", |s, _| {
                s.camera.as_mut().expect("camera").zoom = 0.0;
            }),
            ("camera move", |s, _| {
                s.camera.as_mut().expect("camera").pan_x = f64::INFINITY;
            }),
            ("outside the 300x200 frame", |s, _| {
                s.part.as_mut().expect("part").x = 270;
            }),
            ("bytes for a 40x30 part", |_, rgb| {
                rgb.pop();
            }),
            ("region 99 of a frame of", |s, _| s.region = 99),
        ];
        for (want, break_it) in cases {
            let (mut start, mut rgb) = (to_wire(&lease), lease.pixels.rgb.to_vec());
            break_it(&mut start, &mut rgb);
            let error = from_wire(start, rgb).expect_err(want).to_string();
            assert!(error.contains(want), "{error} (wanted {want})");
        }
    }
}
