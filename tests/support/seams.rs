//! How visible tile seams are in a tiled dream: edge energy and local
//! contrast of the dream's change along tile borders against inside tiles.
//! Shared by the seam test and the lease-size benchmark.

use std::path::Path;

use crate::{Rgb, dreamfarm, repo, run_ok};

/// Tile side of [`tiled_change`]'s dreams.
pub const SEAM_TILE: usize = 128;

/// Where the cells of a `len`-pixel axis split with `tile` (the grid's rule:
/// `ceil(len / tile)` nearly equal cells), inner boundaries only.
pub fn inner_boundaries(len: usize, tile: usize) -> Vec<usize> {
    let n = len.div_ceil(tile);
    (1..n).map(|i| i * len / n).collect()
}

/// Distance from `p` to the nearest of `borders`.
fn distance(p: usize, borders: &[usize]) -> usize {
    borders
        .iter()
        .map(|&b| p.abs_diff(b))
        .min()
        .unwrap_or(usize::MAX)
}

/// Seam measures of a dream's change `d` on a grid with `borders` (the same
/// along both axes) and cross-fade half-width `band`.
pub struct SeamMeasures {
    /// Mean |step| of the change across tile borders.
    pub edge_at_borders: f64,
    /// Mean |step| of the change between neighbouring pixels inside tiles.
    pub edge_inside: f64,
    /// Mean |change − its 5×5 mean| in the blend bands.
    pub contrast_in_bands: f64,
    /// The same inside tiles.
    pub contrast_inside: f64,
}

impl SeamMeasures {
    /// Measures the change `d` (see the type's docs for `borders` and
    /// `band`).
    pub fn of(d: &Rgb, borders: &[usize], band: usize) -> Self {
        let (w, h) = (d.width, d.height);
        // Far from every border and from the image edge.
        let inside =
            |p: usize, len: usize| distance(p, borders) > band + 3 && p >= 4 && p + 4 < len;
        let mut at = (0.0, 0usize);
        let mut inner = (0.0, 0usize);
        for y in 1..h {
            for x in 1..w {
                for c in 0..3 {
                    let dx = f64::from((d.at(x, y, c) - d.at(x - 1, y, c)).abs());
                    let dy = f64::from((d.at(x, y, c) - d.at(x, y - 1, c)).abs());
                    if borders.contains(&x) {
                        at = (at.0 + dx, at.1 + 1);
                    } else if inside(x, w) && inside(x - 1, w) {
                        inner = (inner.0 + dx, inner.1 + 1);
                    }
                    if borders.contains(&y) {
                        at = (at.0 + dy, at.1 + 1);
                    } else if inside(y, h) && inside(y - 1, h) {
                        inner = (inner.0 + dy, inner.1 + 1);
                    }
                }
            }
        }
        let mut in_bands = (0.0, 0usize);
        let mut in_tiles = (0.0, 0usize);
        for y in 2..h - 2 {
            for x in 2..w - 2 {
                let band_pixel = distance(x, borders) < band || distance(y, borders) < band;
                let tile_pixel = inside(x, w) && inside(y, h);
                if !(band_pixel || tile_pixel) {
                    continue;
                }
                for c in 0..3 {
                    let mut mean = 0.0;
                    for v in y - 2..=y + 2 {
                        for u in x - 2..=x + 2 {
                            mean += f64::from(d.at(u, v, c));
                        }
                    }
                    let dev = (f64::from(d.at(x, y, c)) - mean / 25.0).abs();
                    let acc = if band_pixel {
                        &mut in_bands
                    } else {
                        &mut in_tiles
                    };
                    *acc = (acc.0 + dev, acc.1 + 1);
                }
            }
        }
        let mean = |(s, n): (f64, usize)| s / n.max(1) as f64;
        Self {
            edge_at_borders: mean(at),
            edge_inside: mean(inner),
            contrast_in_bands: mean(in_bands),
            contrast_inside: mean(in_tiles),
        }
    }

    /// Edge energy across borders / inside tiles: 1 when there is no seam.
    pub fn edge_ratio(&self) -> f64 {
        self.edge_at_borders / self.edge_inside
    }

    /// Local contrast in blend bands / inside tiles: below 1 when the
    /// cross-fade washes detail out, above 1 when it double-exposes.
    pub fn contrast_ratio(&self) -> f64 {
        self.contrast_in_bands / self.contrast_inside
    }
}

/// Dreams the astronaut (512×512) once on [`SEAM_TILE`]-pixel tiles with
/// the given context margin and blend band, and `extra` flags; returns the
/// change.
pub fn tiled_change(dir: &Path, margin: u32, band: u32, extra: &[&str]) -> Rgb {
    let out = dir.join(format!("dream-{margin}-{band}-{}.png", extra.join("_")));
    let out_arg = out.to_str().expect("UTF-8 temp path");
    let margin = margin.to_string();
    let band = band.to_string();
    let tile = SEAM_TILE.to_string();
    let mut args = vec![
        "dream",
        "assets/astronaut.png",
        "-o",
        out_arg,
        "--octaves",
        "1",
        "--iterations",
        "8",
        "--step-size",
        "0.015",
        "--tile-size",
        &tile,
        "--tile-margin",
        &margin,
        "--blend-band",
        &band,
        "--jitter",
        "16",
    ];
    // DREAMFARM_TEST_DEVICE (default cpu) measures the seams on another
    // device: `bench/gpu.sh seams` runs this on a GPU.
    let device = std::env::var("DREAMFARM_TEST_DEVICE").unwrap_or_else(|_| "cpu".into());
    args.extend_from_slice(&["--device", &device]);
    args.extend_from_slice(extra);
    run_ok(dreamfarm(&args));
    Rgb::open(&out).minus(&Rgb::open(&repo().join("assets/astronaut.png")))
}
