//! The flags that set a job's dream, shared by `render` and `dream`. Each is
//! optional: a flag given overrides the job file, which overrides the
//! default.

use std::path::PathBuf;

use clap::Args;
use dreamfarm_common::params::{
    DreamSettings, LayerTerm, NetworkPrecision, Reduction, WirePrecision,
};
use dreamfarm_common::schedule::Schedule;

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
    /// NAME:WEIGHT:CHANNELS (CHANNELS like 0-15+40; `dreamfarm layers
    /// MODEL` lists each layer's channels) [default: the model's,
    /// mixed3,mixed5 for inception-v3].
    #[arg(long, value_delimiter = ',')]
    layers: Vec<LayerTerm>,
    /// A layer's weight as a schedule, NAME=SCHEDULE (repeatable): switch
    /// or cross-fade layers at keyframes, e.g. "mixed3=0:(1), 60:(0)".
    #[arg(long = "layer-weight", value_parser = parse_layer_weight)]
    layer_weights: Vec<(String, Schedule)>,
    /// Dream one layer of --layers, picked at random from the seed, every
    /// N frames (the seed program's mode) [default: 0, off].
    #[arg(long)]
    layer_every: Option<u32>,
    /// Frames over which one --layer-every pick cross-fades into the next
    /// [default: 0, a hard switch].
    #[arg(long)]
    layer_fade: Option<u32>,
    /// Guide image: the dream grows the features it shares with it (the
    /// original notebook's guided dream).
    #[arg(long)]
    guide: Option<PathBuf>,
    /// Share of the guide in the objective, 0 to 1: a number or a schedule
    /// [default: 1].
    #[arg(long)]
    guide_strength: Option<Schedule>,
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
    /// Gradient steps per octave: a number or a schedule [default: 10].
    #[arg(long, visible_alias = "iter_num", visible_alias = "iter-num")]
    iterations: Option<Schedule>,
    /// Step length in 0..1 pixel units for a unit-std gradient: a number or
    /// a schedule [default: 0.01].
    #[arg(long)]
    step_size: Option<Schedule>,
    /// Largest random shift in pixels before each step: a number or a
    /// schedule [default: 32].
    #[arg(long)]
    jitter: Option<Schedule>,
    /// Dream every K-th frame; the frames between follow the camera and
    /// cross-fade into the next dreamed one (Deforum's cadence) [default: 1].
    #[arg(long)]
    cadence: Option<u32>,
    /// Smooth the gradient with three growing Gaussians (the seed program's).
    #[arg(long)]
    smoothing: bool,
    /// Side of a tile's core in pixels [default: 1024].
    #[arg(long)]
    tile_size: Option<u32>,
    /// Tiles each octave should have at least, so one job keeps that many
    /// cluster workers busy: octaves with fewer tiles get smaller tiles
    /// (down to 128 pixels); the frames depend on it, not on the pool
    /// [default: 0, --tile-size alone].
    #[arg(long)]
    parallelism: Option<u32>,
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
    /// Equal-sized neighbouring tiles dreamed as one batch (one lease):
    /// bigger kernels for a big GPU; the frames depend on it, not on the
    /// pool [default: 1].
    #[arg(long)]
    tile_batch: Option<u32>,
    /// Pixels on the wire in a cluster: f32 (exact) or f16 (half the
    /// bytes; the same rounding on one machine) [default: f32].
    #[arg(long)]
    wire_precision: Option<WirePrecision>,
    /// The number format the network runs in: f32, or bf16/f16 mixed
    /// precision (weights and activations narrowed; image, step and loss
    /// f32). Meant for GPUs; emulated and slower on most CPUs
    /// [default: f32].
    #[arg(long)]
    precision: Option<NetworkPrecision>,
}

/// Puts a flag's value, if given, into the setting.
pub fn set<T>(slot: &mut T, value: Option<T>) {
    if let Some(v) = value {
        *slot = v;
    }
}

/// `NAME=SCHEDULE`.
fn parse_layer_weight(s: &str) -> Result<(String, Schedule), String> {
    let (name, schedule) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?}: write NAME=SCHEDULE, e.g. \"mixed3=0:(1), 60:(0)\""))?;
    let schedule =
        Schedule::parse(&format!("weight of {name}"), schedule).map_err(|e| e.to_string())?;
    Ok((name.to_string(), schedule))
}

impl DreamFlags {
    /// Applies the flags that were given to `s`; a --layer-weight must name
    /// one of the layers.
    pub fn apply(self, s: &mut DreamSettings) -> anyhow::Result<()> {
        set(&mut s.model, self.model);
        if self.weights.is_some() {
            s.weights = self.weights;
        }
        if !self.layers.is_empty() {
            s.layers = self.layers;
        }
        if !self.layer_weights.is_empty() {
            let mut terms = s.layer_terms()?;
            for (name, weight) in self.layer_weights {
                let known = terms.iter().map(|t| t.name.clone()).collect::<Vec<_>>();
                let term = terms.iter_mut().find(|t| t.name == name).ok_or_else(|| {
                    anyhow::anyhow!(
                        "--layer-weight names {name:?}, which is not one of the layers ({}); add it to --layers",
                        known.join(", ")
                    )
                })?;
                term.weight = weight;
            }
            s.layers = terms;
        }
        set(&mut s.layer_every, self.layer_every);
        set(&mut s.layer_fade, self.layer_fade);
        if self.guide.is_some() {
            s.guide = self.guide;
        }
        set(&mut s.guide_strength, self.guide_strength);
        set(&mut s.cadence, self.cadence);
        set(&mut s.objective, self.objective);
        set(&mut s.octaves, self.octaves.or(self.rec_num.map(|r| r + 1)));
        set(&mut s.octave_scale, self.octave_scale);
        set(&mut s.iterations, self.iterations);
        set(&mut s.step_size, self.step_size);
        set(&mut s.jitter, self.jitter);
        s.smoothing |= self.smoothing;
        set(&mut s.tile_size, self.tile_size);
        set(&mut s.parallelism, self.parallelism);
        set(&mut s.tile_margin, self.tile_margin);
        set(&mut s.blend_band, self.blend_band);
        set(&mut s.iterations_per_lease, self.iterations_per_lease);
        set(&mut s.tile_batch, self.tile_batch);
        set(&mut s.wire_precision, self.wire_precision);
        set(&mut s.precision, self.precision);
        Ok(())
    }
}
