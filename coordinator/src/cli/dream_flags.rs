//! The flags that set a job's dream, shared by `render` and `dream`. Each is
//! optional: a flag given overrides the job file, which overrides the
//! default.

use std::path::PathBuf;

use clap::Args;
use dreamfarm_common::params::{DreamSettings, LayerTerm, Reduction, WirePrecision};

/// Dream settings from the command line.
#[derive(Debug, Args, Default)]
pub struct DreamFlags {
    /// Model: a built-in name (see `dreamfarm models`) or a TorchScript .pt
    /// file [default: inception-v3].
    #[arg(long)]
    model: Option<String>,
    /// Weights for a built-in model (required for googlenet).
    #[arg(long)]
    weights: Option<PathBuf>,
    /// Layers to maximise, comma-separated, each NAME, NAME:WEIGHT or
    /// NAME:WEIGHT:CHANNELS (CHANNELS like 0-15+40) [default: the model's,
    /// mixed3,mixed5 for inception-v3].
    #[arg(long, value_delimiter = ',')]
    layers: Vec<LayerTerm>,
    /// Per-layer objective: mean-square or mean [default: mean-square].
    #[arg(long)]
    objective: Option<Reduction>,
    /// Number of octaves; 1 is a plain single-scale dream [default: 4].
    #[arg(long)]
    octaves: Option<u32>,
    /// The seed program's recursion depth: octaves beyond the first
    /// (`--rec_num 3` = `--octaves 4`).
    #[arg(
        long = "rec_num",
        visible_alias = "rec-num",
        conflicts_with = "octaves"
    )]
    rec_num: Option<u32>,
    /// Size ratio between octaves [default: 1.4].
    #[arg(long)]
    octave_scale: Option<f64>,
    /// Gradient steps per octave [default: 10].
    #[arg(long, visible_alias = "iter_num", visible_alias = "iter-num")]
    iterations: Option<u32>,
    /// Step length in 0..1 pixel units for a unit-std gradient [default: 0.01].
    #[arg(long)]
    step_size: Option<f64>,
    /// Largest random shift in pixels before each step [default: 32].
    #[arg(long)]
    jitter: Option<u32>,
    /// Smooth the gradient with three growing Gaussians (the seed program's).
    #[arg(long)]
    smoothing: bool,
    /// Side of a tile's core in pixels [default: 1024].
    #[arg(long)]
    tile_size: Option<u32>,
    /// Context around each tile in pixels [default: 64].
    #[arg(long)]
    tile_margin: Option<u32>,
    /// Cross-fade band between tiles in pixels [default: 32].
    #[arg(long)]
    blend_band: Option<u32>,
    /// Gradient steps a cluster worker runs per lease; 0 runs all of an
    /// octave's steps in one lease [default: 0].
    #[arg(long)]
    iterations_per_lease: Option<u32>,
    /// Pixels on the wire in a cluster: f32 (exact) or f16 (half the
    /// bytes; the same rounding on one machine) [default: f32].
    #[arg(long)]
    wire_precision: Option<WirePrecision>,
}

/// Puts a flag's value, if given, into the setting.
pub fn set<T>(slot: &mut T, value: Option<T>) {
    if let Some(v) = value {
        *slot = v;
    }
}

impl DreamFlags {
    /// Applies the flags that were given to `s`.
    pub fn apply(self, s: &mut DreamSettings) {
        set(&mut s.model, self.model);
        if self.weights.is_some() {
            s.weights = self.weights;
        }
        if !self.layers.is_empty() {
            s.layers = self.layers;
        }
        set(&mut s.objective, self.objective);
        set(&mut s.octaves, self.octaves.or(self.rec_num.map(|r| r + 1)));
        set(&mut s.octave_scale, self.octave_scale);
        set(&mut s.iterations, self.iterations);
        set(&mut s.step_size, self.step_size);
        set(&mut s.jitter, self.jitter);
        s.smoothing |= self.smoothing;
        set(&mut s.tile_size, self.tile_size);
        set(&mut s.tile_margin, self.tile_margin);
        set(&mut s.blend_band, self.blend_band);
        set(&mut s.iterations_per_lease, self.iterations_per_lease);
        set(&mut s.wire_precision, self.wire_precision);
    }
}
