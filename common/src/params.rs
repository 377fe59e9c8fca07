//! Every parameter of a render job, as the CLI flags and the TOML job file
//! write them, with the checks that turn bad values into one clear error
//! before any work starts.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::color::ColorSpace;
use crate::model_catalog::{BuiltinModel, CatalogError, ModelSpec};
use crate::schedule::{Schedule, ScheduleError};
use crate::tiling::{TileGeometry, TileGrid};

/// Largest image side accepted (16K): beyond it a frame no longer fits a
/// machine's memory comfortably.
pub const MAX_SIDE: u32 = 16384;

/// A value out of range, named as the user wrote it.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ParamError {
    /// A number outside its allowed range.
    #[error("{name} = {value} is out of range: {expected}")]
    OutOfRange {
        /// Flag or job-file key.
        name: &'static str,
        /// The value given.
        value: String,
        /// What is allowed.
        expected: &'static str,
    },
    /// A layer entry that does not parse.
    #[error(
        "bad layer {0:?}: write NAME, NAME:WEIGHT or NAME:WEIGHT:CHANNELS with CHANNELS like 0-15+40 (see --help)"
    )]
    BadLayer(String),
    /// Unknown model or layer.
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// A schedule that does not parse, or a frame's value out of range.
    #[error(transparent)]
    Schedule(#[from] ScheduleError),
    /// A file's path that is not UTF-8: a job file is TOML, which holds
    /// only UTF-8, so the job could be neither recorded nor resumed.
    #[error(
        "the path {0:?} is not UTF-8 text, and a job file (TOML) can only name files in UTF-8. Fix: rename the file, or the folder it is in, to a UTF-8 name"
    )]
    NotText(PathBuf),
}

fn check<T: PartialOrd + fmt::Display>(
    name: &'static str,
    value: T,
    ok: bool,
    expected: &'static str,
) -> Result<(), ParamError> {
    if ok {
        Ok(())
    } else {
        Err(ParamError::OutOfRange {
            name,
            value: value.to_string(),
            expected,
        })
    }
}

/// One layer of the objective: its weight and, optionally, the channels
/// that count (all when empty).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LayerTerm {
    /// Layer name, e.g. `mixed3`.
    pub name: String,
    /// Weight of this layer's term in the objective; a schedule, so that
    /// layers can be switched or cross-faded at keyframes.
    #[serde(default = "one")]
    pub weight: Schedule,
    /// Channel indices to maximise; empty means every channel.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub channels: Vec<u32>,
}

fn one() -> Schedule {
    1.0.into()
}

impl FromStr for LayerTerm {
    type Err = ParamError;

    /// `NAME`, `NAME:WEIGHT` or `NAME:WEIGHT:CHANNELS`, CHANNELS being
    /// `+`-separated indices or ranges (`0-15+40`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || ParamError::BadLayer(s.to_string());
        let mut parts = s.split(':');
        let name = parts
            .next()
            .filter(|n| !n.is_empty())
            .ok_or_else(bad)?
            .to_string();
        let weight = match parts.next() {
            None | Some("") => 1.0,
            Some(w) => w.parse().map_err(|_| bad())?,
        }
        .into();
        let mut channels = Vec::new();
        if let Some(spec) = parts.next() {
            for item in spec.split('+') {
                let (a, b) = item.split_once('-').unwrap_or((item, item));
                let (a, b): (u32, u32) =
                    (a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?);
                if a > b {
                    return Err(bad());
                }
                channels.extend(a..=b);
            }
        }
        if parts.next().is_some() {
            return Err(bad());
        }
        Ok(Self {
            name,
            weight,
            channels,
        })
    }
}

/// What the dream maximises per layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reduction {
    /// Mean of squared activations (DeepDream's usual objective).
    #[default]
    MeanSquare,
    /// Plain mean of the activations.
    Mean,
}

impl FromStr for Reduction {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "mean-square" => Ok(Self::MeanSquare),
            "mean" => Ok(Self::Mean),
            _ => Err(format!("unknown objective {s:?}: use mean-square or mean")),
        }
    }
}

/// How a tile's pixels and its change travel between the coordinator and
/// the workers. A single-machine render rounds its tiles the same way, so
/// a cluster's frames stay identical to a single-machine render of the
/// same job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WirePrecision {
    /// 32-bit floats: exact.
    #[default]
    F32,
    /// 16-bit floats: half the bytes. A sample in `0..=1` moves by at most
    /// 2^-12, a sixteenth of an 8-bit level; the dream's fine texture then
    /// comes out different from an f32 render's, as it does for any tiny
    /// change of the input (measured in the README).
    F16,
}

impl FromStr for WirePrecision {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "f32" => Ok(Self::F32),
            "f16" => Ok(Self::F16),
            _ => Err(format!("unknown wire precision {s:?}: use f32 or f16")),
        }
    }
}

/// The number format the network runs in on a worker. The image, the
/// gradient step and the objective's reduction stay f32; only the
/// network's weights and activations are narrowed. A setting of the job,
/// so a single-machine render and a cluster compute the same frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NetworkPrecision {
    /// 32-bit floats, the reference.
    #[default]
    F32,
    /// bfloat16: f32's range with 8 bits of mantissa. Fast on GPUs with
    /// bf16 tensor cores; emulated, and slower, on CPUs without them.
    Bf16,
    /// IEEE half: 11 bits of mantissa, a narrow range. For GPUs without
    /// bf16.
    F16,
}

impl NetworkPrecision {
    /// The name used in flags and job files.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::F32 => "f32",
            Self::Bf16 => "bf16",
            Self::F16 => "f16",
        }
    }
}

impl FromStr for NetworkPrecision {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [Self::F32, Self::Bf16, Self::F16]
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| format!("unknown precision {s:?}: use f32, bf16 or f16"))
    }
}

/// How each frame is dreamed: model, objective, octaves, gradient steps and
/// tiling. The numbers a user may want to change over a render (layer
/// weights, steps, step size, jitter, guide strength) are [`Schedule`]s;
/// [`FrameObjective::at`](crate::objective::FrameObjective::at) evaluates
/// them for one frame.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DreamSettings {
    /// Built-in model name or TorchScript path.
    pub model: String,
    /// Weight file for a built-in model (googlenet needs one).
    pub weights: Option<PathBuf>,
    /// Layers of the objective (empty: the model's defaults).
    pub layers: Vec<LayerTerm>,
    /// Per-layer reduction.
    pub objective: Reduction,
    /// Number of octaves (1: a plain single-scale dream).
    pub octaves: u32,
    /// Size ratio between neighbouring octaves.
    pub octave_scale: f64,
    /// Every `layer_every` frames one layer of `layers` is picked at random
    /// (drawn from the job's seed) and only it is dreamed, as the seed
    /// program did; 0: every layer on every frame.
    pub layer_every: u32,
    /// Frames over which one pick cross-fades into the next (0: a hard
    /// switch); less than `layer_every`.
    pub layer_fade: u32,
    /// A guide image: the dream moves each position's features toward the
    /// guide's best-matching feature at the same layers (the original
    /// DeepDream notebook's guided dream).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub guide: Option<PathBuf>,
    /// How much of the objective is the guide's: 0 none, 1 all.
    pub guide_strength: Schedule,
    /// Gradient steps per octave (rounded to a whole number).
    pub iterations: Schedule,
    /// Step length in `0..=1` pixel units for a unit-std gradient.
    pub step_size: Schedule,
    /// Largest random shift, in pixels, before each step (rounded).
    pub jitter: Schedule,
    /// Dream every `cadence`-th frame only; the frames between follow the
    /// camera from the last dreamed frame and cross-fade into the next
    /// (Deforum's cadence). 1: dream every frame.
    pub cadence: u32,
    /// Blur the gradient with three Gaussians whose width grows over the
    /// steps (the seed program's smoothing).
    pub smoothing: bool,
    /// Side of a tile's core, in pixels; the grid depends only on this,
    /// `parallelism` and the image size.
    pub tile_size: u32,
    /// Tiles each octave should have at least, so that one job keeps that
    /// many workers busy: octaves with fewer tiles of `tile_size` get
    /// smaller tiles (not below [`MIN_PARALLEL_TILE`]). 0: `tile_size`
    /// alone. A setting of the job, never the live worker count, so the
    /// frames are the same however many workers compute them.
    pub parallelism: u32,
    /// Context computed around each tile's core, in pixels.
    pub tile_margin: u32,
    /// Width of the band over which neighbouring tiles are cross-faded.
    pub blend_band: u32,
    /// Gradient steps a worker runs per lease (0: all of an octave's).
    /// Each lease ends in a stitch (the next pass's tile waits for its
    /// neighbours' changes) and a round trip of every tile's pixels; 0 is
    /// the default because it measured best for throughput and for seams
    /// alike (`cargo bench -p dreamfarm-tests --bench lease_iterations`).
    pub iterations_per_lease: u32,
    /// Equal-sized neighbouring tiles of an octave dreamed as one batch
    /// through the network (one lease): bigger kernels for a big GPU. The
    /// batches are fixed by the grid, never by what a worker happens to
    /// hold, because a network's arithmetic differs in its last bits with
    /// the batch size: the frames depend on this setting, never on the pool.
    pub tile_batch: u32,
    /// Pixels on the wire in a cluster: f32 (exact, the default) or f16
    /// (half the bytes per tile).
    pub wire_precision: WirePrecision,
    /// The number format the network runs in (mixed precision).
    pub precision: NetworkPrecision,
}

impl Default for DreamSettings {
    fn default() -> Self {
        Self {
            model: BuiltinModel::InceptionV3.info().name.to_string(),
            weights: None,
            layers: Vec::new(),
            objective: Reduction::MeanSquare,
            layer_every: 0,
            layer_fade: 0,
            guide: None,
            guide_strength: 1.0.into(),
            octaves: 4,
            octave_scale: 1.4,
            iterations: 10.0.into(),
            step_size: 0.01.into(),
            jitter: 32.0.into(),
            cadence: 1,
            smoothing: false,
            tile_size: 1024,
            parallelism: 0,
            tile_margin: 64,
            blend_band: 32,
            iterations_per_lease: 0,
            tile_batch: 1,
            wire_precision: WirePrecision::F32,
            precision: NetworkPrecision::F32,
        }
    }
}

/// Smallest tile core `parallelism` shrinks tiles to: below it a tile's
/// margins would cost more than its core.
pub const MIN_PARALLEL_TILE: u32 = 128;

/// Largest `tile_batch`: past a few dozen tiles a batch only adds memory.
pub const MAX_TILE_BATCH: u32 = 64;

/// Largest `parallelism`: a 4K octave has 506 tiles of 128 pixels, and
/// leases beyond a few thousand per octave only add overhead.
pub const MAX_PARALLELISM: u32 = 4096;

impl DreamSettings {
    /// The tile side for a `width`×`height` octave: `tile_size`, or the
    /// largest smaller side that gives the octave `parallelism` tiles
    /// (as many as [`MIN_PARALLEL_TILE`] gives, if none does).
    pub fn tile_side(&self, width: usize, height: usize) -> usize {
        let largest = self.tile_size as usize;
        let wanted = self.parallelism as usize;
        let tiles = |side: usize| width.div_ceil(side) * height.div_ceil(side);
        if tiles(largest) >= wanted {
            return largest;
        }
        let smallest = (MIN_PARALLEL_TILE as usize).min(largest);
        (smallest..largest)
            .rev()
            .find(|&side| tiles(side) >= wanted)
            .unwrap_or(smallest)
    }

    /// The tile geometry on a `width`×`height` octave of a frame whose
    /// jitter is `jitter`.
    pub fn tile_geometry(&self, jitter: u32, width: usize, height: usize) -> TileGeometry {
        TileGeometry {
            tile_size: self.tile_side(width, height),
            margin: self.tile_margin as usize,
            band: self.blend_band as usize,
            jitter: jitter as usize,
            equal_cells: self.tile_batch > 1,
        }
    }

    /// The largest pass through the network a `width`×`height` frame
    /// makes, in pixels: `(tiles, height, width)` of its biggest batch of
    /// equal windows (each tile and its margin, without the jitter's
    /// padding, which the window never reaches), over every octave.
    pub fn largest_pass(&self, width: usize, height: usize) -> (usize, usize, usize) {
        let mut largest = (0, 0, 0);
        for (w, h) in self.octave_sizes(width, height, 1) {
            let grid = TileGrid::new(w, h, self.tile_geometry(0, w, h));
            for (first, &end) in grid
                .batches(self.tile_batch.max(1) as usize)
                .iter()
                .enumerate()
            {
                if end == 0 {
                    continue;
                }
                let window = grid.tile(first).input;
                let pass = (end - first, window.height, window.width);
                if pass.0 * pass.1 * pass.2 > largest.0 * largest.1 * largest.2 {
                    largest = pass;
                }
            }
        }
        largest
    }

    /// How an octave's `steps` are leased: steps per pass of tiles and the
    /// number of passes (none for no steps).
    pub fn passes(&self, steps: u32) -> (u32, u32) {
        let per_pass = match self.iterations_per_lease {
            0 => steps,
            k => k.min(steps),
        };
        let passes = if steps == 0 {
            0
        } else {
            steps.div_ceil(per_pass)
        };
        (per_pass, passes)
    }

    /// Sizes of the octaves of a `width`×`height` frame, smallest first,
    /// the last being the frame itself. Octaves smaller than `min_side` on
    /// either side are dropped: the network cannot see them. One
    /// definition for the frame loop and the benches that replay it.
    pub fn octave_sizes(
        &self,
        width: usize,
        height: usize,
        min_side: usize,
    ) -> Vec<(usize, usize)> {
        (0..self.octaves)
            .rev()
            .map(|o| {
                let f = self.octave_scale.powi(o as i32);
                (
                    ((width as f64) / f).round() as usize,
                    ((height as f64) / f).round() as usize,
                )
            })
            .filter(|&(w, h)| w.min(h) >= min_side || (w, h) == (width, height))
            .collect()
    }

    /// The model this job dreams with.
    pub fn model_spec(&self) -> Result<ModelSpec, ParamError> {
        Ok(self.model.parse()?)
    }

    /// The objective's layers: the configured ones, or the model's defaults
    /// (a TorchScript model's default is its first output).
    pub fn layer_terms(&self) -> Result<Vec<LayerTerm>, ParamError> {
        if !self.layers.is_empty() {
            return Ok(self.layers.clone());
        }
        let names: Vec<String> = match self.model_spec()? {
            ModelSpec::Builtin(m) => m
                .info()
                .default_layers
                .iter()
                .map(|l| l.to_string())
                .collect(),
            ModelSpec::TorchScript(_) => vec!["out0".to_string()],
        };
        Ok(names
            .into_iter()
            .map(|name| LayerTerm {
                name,
                weight: 1.0.into(),
                channels: Vec::new(),
            })
            .collect())
    }

    /// Checks every value of a job of `frames` frames (schedules on every
    /// frame); layer names and channel picks are checked here for built-in
    /// models (a TorchScript model's are known once it is loaded).
    pub fn validate(&self, frames: u32) -> Result<(), ParamError> {
        let spec = self.model_spec()?;
        if let ModelSpec::Builtin(m) = &spec
            && m.info().own_weights
            && self.weights.is_none()
        {
            return Err(CatalogError::NeedsWeights {
                model: m.info().name,
            }
            .into());
        }
        for term in self.layer_terms()? {
            if let ModelSpec::Builtin(m) = &spec {
                m.check_channels(m.layer_index(&term.name)?, &term.channels)?;
            }
            // NaN compares false, so it fails here too.
            term.weight.check_range(
                &format!("layer weight of {}", term.name),
                frames,
                |w| w.abs() <= 1000.0,
                "a finite number from -1000 to 1000",
            )?;
        }
        check(
            "layer-every",
            self.layer_every,
            self.layer_every <= 1_000_000,
            "0 (off) to 1000000 frames",
        )?;
        check(
            "layer-fade",
            self.layer_fade,
            self.layer_fade == 0 || self.layer_fade < self.layer_every,
            "fewer frames than layer-every (and layer-every set)",
        )?;
        self.guide_strength.check_range(
            "guide strength",
            frames,
            |v| (0.0..=1.0).contains(&v),
            "0 to 1",
        )?;
        check(
            "octaves",
            self.octaves,
            (1..=12).contains(&self.octaves),
            "1 to 12",
        )?;
        check(
            "octave-scale",
            self.octave_scale,
            (1.0..=4.0).contains(&self.octave_scale),
            "1.0 to 4.0",
        )?;
        self.iterations.check_range(
            "iterations",
            frames,
            |v| (0.5..10_000.5).contains(&v),
            "1 to 10000",
        )?;
        self.step_size.check_range(
            "step-size",
            frames,
            |v| v > 0.0 && v <= 1.0,
            "above 0, at most 1",
        )?;
        self.jitter
            .check_range("jitter", frames, |v| (0.0..512.5).contains(&v), "0 to 512")?;
        check(
            "cadence",
            self.cadence,
            (1..=16).contains(&self.cadence),
            "1 to 16",
        )?;
        check(
            "tile-size",
            self.tile_size,
            (64..=8192).contains(&self.tile_size),
            "64 to 8192",
        )?;
        check(
            "parallelism",
            self.parallelism,
            self.parallelism <= MAX_PARALLELISM,
            "0 to 4096",
        )?;
        check(
            "tile-batch",
            self.tile_batch,
            (1..=MAX_TILE_BATCH).contains(&self.tile_batch),
            "1 to 64",
        )?;
        check(
            "tile-margin",
            self.tile_margin,
            self.tile_margin <= 1024,
            "0 to 1024",
        )?;
        check(
            "blend-band",
            self.blend_band,
            self.blend_band <= self.tile_margin,
            "at most tile-margin",
        )?;
        Ok(())
    }
}

/// The camera move between frames of an infinite zoom. Each number is a
/// [`Schedule`]: a constant, or keyframes in Deforum's syntax.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ZoomSettings {
    /// Magnification per frame (1.02: 2% closer each frame; 1: none).
    pub zoom: Schedule,
    /// Rotation per frame in degrees, counter-clockwise.
    pub rotate: Schedule,
    /// Pan per frame in pixels `[right, down]`.
    pub pan: [Schedule; 2],
    /// Zoom centre as a fraction of the frame `[x, y]` (`[0.5, 0.5]`: the
    /// middle).
    pub center: [Schedule; 2],
}

impl Default for ZoomSettings {
    fn default() -> Self {
        Self {
            zoom: 1.02.into(),
            rotate: 0.0.into(),
            pan: [0.0.into(), 0.0.into()],
            center: [0.5.into(), 0.5.into()],
        }
    }
}

/// The camera move into one frame: [`ZoomSettings`] evaluated there.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CameraMove {
    /// Magnification.
    pub zoom: f64,
    /// Rotation in degrees, counter-clockwise.
    pub rotate: f64,
    /// Pan in pixels `[right, down]`.
    pub pan: [f64; 2],
    /// Zoom centre as a fraction of the frame `[x, y]`.
    pub center: [f64; 2],
}

impl ZoomSettings {
    /// The move into frame `frame` of a job of `frames` frames.
    pub fn at(&self, frame: u64, frames: u32) -> CameraMove {
        let v = |s: &Schedule| s.value_at(frame, frames);
        CameraMove {
            zoom: v(&self.zoom),
            rotate: v(&self.rotate),
            pan: [v(&self.pan[0]), v(&self.pan[1])],
            center: [v(&self.center[0]), v(&self.center[1])],
        }
    }

    /// Checks every frame's values of a job of `frames` frames.
    pub fn validate(&self, frames: u32) -> Result<(), ParamError> {
        self.zoom.check_range(
            "zoom",
            frames,
            |z| (0.5..=2.0).contains(&z),
            "0.5 to 2.0 per frame",
        )?;
        self.rotate.check_range(
            "rotate",
            frames,
            |r| r.abs() <= 45.0,
            "-45 to 45 degrees per frame",
        )?;
        for (s, name) in self.pan.iter().zip(["pan x", "pan y"]) {
            s.check_range(
                name,
                frames,
                |p| p.abs() <= f64::from(MAX_SIDE),
                "-16384 to 16384 pixels per frame",
            )?;
        }
        for (s, name) in self.center.iter().zip(["center x", "center y"]) {
            s.check_range(
                name,
                frames,
                |c| (0.0..=1.0).contains(&c),
                "a fraction between 0 and 1",
            )?;
        }
        Ok(())
    }
}

/// What keeps a long render's colours and sharpness: each frame's input
/// (the previous frame moved by the camera) is matched to frame 0's colour
/// distribution, then its contrast and sharpness adjusted, before it is
/// dreamed. Off by default, so that jobs written before it render (and
/// resume) as they did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ColorSettings {
    /// Colour space of the match (`lab`, `hsv`, `rgb`), or `off`.
    #[serde(
        serialize_with = "coherence_to_text",
        deserialize_with = "coherence_from_text"
    )]
    pub coherence: Option<ColorSpace>,
    /// The image whose colours every frame is matched to (default: frame
    /// 0 as written).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reference: Option<PathBuf>,
    /// How far each frame moves toward the reference: 0 not at all, 1 all
    /// the way.
    pub strength: Schedule,
    /// Contrast around the mean luminance: 1 unchanged, above 1 stronger.
    pub contrast: Schedule,
    /// Unsharp-mask amount: 0 none; 0.2 to 0.5 counters the softening of
    /// repeated resampling.
    pub sharpen: Schedule,
    /// Unsharp-mask radius (the blur's sigma) in pixels.
    pub sharpen_radius: f64,
}

/// The widest unsharp mask a job may ask for (its blur's standard
/// deviation, in pixels).
pub const MAX_SHARPEN_RADIUS: f64 = 32.0;

impl Default for ColorSettings {
    fn default() -> Self {
        Self {
            coherence: None,
            reference: None,
            strength: 1.0.into(),
            contrast: 1.0.into(),
            sharpen: 0.0.into(),
            sharpen_radius: 1.0,
        }
    }
}

/// `lab`, `hsv`, `rgb` or `off` (no colour coherence).
pub fn parse_coherence(s: &str) -> Result<Option<ColorSpace>, String> {
    match s {
        "off" => Ok(None),
        other => other
            .parse()
            .map(Some)
            .map_err(|e: String| format!("{e}, or off")),
    }
}

fn coherence_from_text<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<ColorSpace>, D::Error> {
    let text = String::deserialize(d)?;
    parse_coherence(&text).map_err(serde::de::Error::custom)
}

fn coherence_to_text<S: serde::Serializer>(
    space: &Option<ColorSpace>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match space {
        None => s.serialize_str("off"),
        Some(space) => space.serialize(s),
    }
}

impl ColorSettings {
    /// Whether nothing is set: frames are then exactly as before colour
    /// settings existed.
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }

    /// Checks every frame's values of a job of `frames` frames.
    pub fn validate(&self, frames: u32) -> Result<(), ParamError> {
        check(
            "color-reference",
            self.reference
                .as_ref()
                .map_or(String::new(), |p| p.display().to_string()),
            self.reference.is_none() || self.coherence.is_some(),
            "only with a colour coherence: add --color-coherence lab (or hsv, rgb)",
        )?;
        self.strength.check_range(
            "color strength",
            frames,
            |v| (0.0..=1.0).contains(&v),
            "0 to 1",
        )?;
        self.contrast
            .check_range("contrast", frames, |v| (0.0..=4.0).contains(&v), "0 to 4")?;
        self.sharpen
            .check_range("sharpen", frames, |v| (0.0..=4.0).contains(&v), "0 to 4")?;
        check(
            "sharpen-radius",
            self.sharpen_radius,
            self.sharpen_radius > 0.0 && self.sharpen_radius <= MAX_SHARPEN_RADIUS,
            "above 0, at most 32 pixels",
        )
    }
}

/// How frames become a video.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VideoSettings {
    /// Frames per second.
    pub fps: u32,
    /// x264 constant rate factor: 0 lossless … 51 worst; 18 looks lossless.
    pub crf: u32,
}

impl Default for VideoSettings {
    fn default() -> Self {
        Self { fps: 30, crf: 18 }
    }
}

impl VideoSettings {
    /// Checks the values.
    pub fn validate(&self) -> Result<(), ParamError> {
        check("fps", self.fps, (1..=240).contains(&self.fps), "1 to 240")?;
        check("crf", self.crf, self.crf <= 51, "0 to 51")?;
        Ok(())
    }
}

/// A whole render job: what the TOML job file holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobSpec {
    /// The starting image.
    pub input: PathBuf,
    /// Number of frames to render.
    pub frames: u32,
    /// Seed of every random choice.
    #[serde(default)]
    pub seed: u64,
    /// Resize the input to `[width, height]` first (default: its own size).
    #[serde(default)]
    pub size: Option<[u32; 2]>,
    /// The dream.
    #[serde(default)]
    pub dream: DreamSettings,
    /// The camera move between frames.
    #[serde(default)]
    pub zoom: ZoomSettings,
    /// Colour coherence, contrast and sharpening between frames (left out
    /// of a written job when unused, so older coordinators still read it).
    #[serde(default, skip_serializing_if = "ColorSettings::is_default")]
    pub color: ColorSettings,
    /// The video.
    #[serde(default)]
    pub video: VideoSettings,
}

impl JobSpec {
    /// A job of `frames` frames from `input` with every other setting at
    /// its default.
    pub fn new(input: PathBuf, frames: u32) -> Self {
        Self {
            input,
            frames,
            seed: 0,
            size: None,
            dream: DreamSettings::default(),
            zoom: ZoomSettings::default(),
            color: ColorSettings::default(),
            video: VideoSettings::default(),
        }
    }

    /// Makes the paths the job names relative to `dir`, the folder of the
    /// job file they were written in (as Cargo does): the input, the guide,
    /// the colour reference, a built-in model's weights and a TorchScript
    /// model. Absolute paths stay as they are.
    pub fn relative_to(&mut self, dir: &Path) {
        self.map_paths(|path| dir.join(path));
    }

    /// Replaces each path the job names (the input, the guide, the colour
    /// reference, a built-in model's weights and a TorchScript model) with
    /// `f` of it: one place that knows which settings are files.
    pub fn map_paths(&mut self, mut f: impl FnMut(&Path) -> PathBuf) {
        self.input = f(&self.input);
        for path in [
            &mut self.dream.guide,
            &mut self.dream.weights,
            &mut self.color.reference,
        ]
        .into_iter()
        .flatten()
        {
            *path = f(path);
        }
        if let Ok(ModelSpec::TorchScript(model)) = self.dream.model_spec() {
            self.dream.model = f(&model).display().to_string();
        }
    }

    /// The paths the job names, in [`JobSpec::map_paths`]'s order.
    pub fn paths(&self) -> Vec<PathBuf> {
        let mut paths = Vec::new();
        self.clone().map_paths(|path| {
            paths.push(path.to_path_buf());
            path.to_path_buf()
        });
        paths
    }

    /// Checks that a job file can name the job's files, whose paths a
    /// render or a submission records; a single still (`dreamfarm dream`)
    /// records nothing and takes any path.
    pub fn check_paths_are_text(&self) -> Result<(), ParamError> {
        match self
            .paths()
            .into_iter()
            .find(|path| path.to_str().is_none())
        {
            Some(path) => Err(ParamError::NotText(path)),
            None => Ok(()),
        }
    }

    /// Every schedule of the job, with the name errors give it.
    pub fn schedules(&self) -> Vec<(String, &Schedule)> {
        let (d, z, c) = (&self.dream, &self.zoom, &self.color);
        let mut all: Vec<(String, &Schedule)> = vec![
            ("iterations".into(), &d.iterations),
            ("step-size".into(), &d.step_size),
            ("jitter".into(), &d.jitter),
            ("guide strength".into(), &d.guide_strength),
            ("zoom".into(), &z.zoom),
            ("rotate".into(), &z.rotate),
            ("pan x".into(), &z.pan[0]),
            ("pan y".into(), &z.pan[1]),
            ("center x".into(), &z.center[0]),
            ("center y".into(), &z.center[1]),
            ("color strength".into(), &c.strength),
            ("contrast".into(), &c.contrast),
            ("sharpen".into(), &c.sharpen),
        ];
        all.extend(
            d.layers
                .iter()
                .map(|l| (format!("layer weight of {}", l.name), &l.weight)),
        );
        all
    }

    /// Checks everything that can be checked without reading the input.
    pub fn validate(&self) -> Result<(), ParamError> {
        check(
            "frames",
            self.frames,
            (1..=1_000_000).contains(&self.frames),
            "1 to 1000000",
        )?;
        if let Some([w, h]) = self.size {
            let ok = (1..=MAX_SIDE).contains(&w) && (1..=MAX_SIDE).contains(&h);
            check("size", format!("{w}x{h}"), ok, "each side 1 to 16384")?;
        }
        self.dream.validate(self.frames)?;
        self.zoom.validate(self.frames)?;
        self.color.validate(self.frames)?;
        self.video.validate()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn octaves_end_at_the_frame_and_skip_what_the_net_cannot_see() {
        let s = DreamSettings {
            octaves: 4,
            octave_scale: 2.0,
            ..Default::default()
        };
        assert_eq!(
            s.octave_sizes(800, 400, 75),
            vec![(200, 100), (400, 200), (800, 400)]
        );
        let s = DreamSettings {
            octaves: 1,
            ..Default::default()
        };
        assert_eq!(s.octave_sizes(64, 64, 75), vec![(64, 64)]);
    }

    /// A path a job file cannot hold is named, whichever setting holds it.
    #[test]
    fn a_path_that_is_not_text_is_named() {
        use std::os::unix::ffi::OsStrExt;
        let odd = PathBuf::from(std::ffi::OsStr::from_bytes(b"dir/a\xffb.png"));
        let mut spec = JobSpec::new("in.png".into(), 3);
        spec.dream.guide = Some("guide.png".into());
        assert_eq!(spec.check_paths_are_text(), Ok(()));
        spec.color.reference = Some(odd.clone());
        let refused = spec.check_paths_are_text().expect_err("not text");
        assert_eq!(refused, ParamError::NotText(odd));
        assert!(
            refused
                .to_string()
                .starts_with(r#"the path "dir/a\xFFb.png" is not UTF-8 text"#),
            "{refused}"
        );
    }

    /// A model whose weights cannot be fetched is refused without a weight
    /// file before any render, submission or worker gets to it.
    #[test]
    fn googlenet_needs_a_weight_file() {
        let mut spec = JobSpec::new("in.png".into(), 3);
        spec.dream.model = "googlenet".into();
        let refused = spec.validate().expect_err("googlenet without weights");
        assert!(
            refused
                .to_string()
                .starts_with("googlenet needs your own weights: pass --weights"),
            "{refused}"
        );
        spec.dream.weights = Some("mine.safetensors".into());
        assert_eq!(spec.validate(), Ok(()));
    }

    #[test]
    fn a_job_files_paths_are_relative_to_the_file() {
        let mut spec = JobSpec::new("in.png".into(), 3);
        spec.dream.guide = Some("guide.jpg".into());
        spec.dream.weights = Some("/abs/googlenet.safetensors".into());
        spec.color.reference = Some("pal/ette.png".into());
        spec.dream.model = "nets/mine.pt".into();
        spec.relative_to(Path::new("jobs"));
        assert_eq!(spec.input, Path::new("jobs/in.png"));
        assert_eq!(
            spec.dream.guide.as_deref(),
            Some(Path::new("jobs/guide.jpg"))
        );
        assert_eq!(
            spec.dream.weights.as_deref(),
            Some(Path::new("/abs/googlenet.safetensors")),
            "absolute paths stay"
        );
        assert_eq!(
            spec.color.reference.as_deref(),
            Some(Path::new("jobs/pal/ette.png"))
        );
        assert_eq!(spec.dream.model, "jobs/nets/mine.pt");
        let mut builtin = JobSpec::new("in.png".into(), 3);
        builtin.relative_to(Path::new("jobs"));
        assert_eq!(
            builtin.dream.model,
            DreamSettings::default().model,
            "a name stays"
        );
    }

    #[test]
    fn parallelism_shrinks_tiles_until_each_octave_has_enough() {
        let tiles = |s: &DreamSettings, w: usize, h: usize| {
            let side = s.tile_side(w, h);
            (side, w.div_ceil(side) * h.div_ceil(side))
        };
        let mut s = DreamSettings::default();
        assert_eq!(tiles(&s, 3840, 2160), (1024, 12), "0: tile_size alone");
        s.parallelism = 32;
        // The largest side giving 32 tiles: 8 × 4 (cells of 480 × 540).
        assert_eq!(tiles(&s, 3840, 2160), (548, 32));
        assert_eq!(tiles(&s, 1920, 1080), (274, 32));
        let one_more = |w: usize, h: usize, side: usize| w.div_ceil(side) * h.div_ceil(side);
        assert!(one_more(3840, 2160, 549) < 32 && one_more(1920, 1080, 275) < 32);
        // Never below the floor, however many tiles are asked for.
        assert_eq!(tiles(&s, 300, 200).0, MIN_PARALLEL_TILE as usize);
        // Never above tile_size: an octave with enough tiles keeps it.
        s.parallelism = 4;
        assert_eq!(tiles(&s, 3840, 2160), (1024, 12));
        s.tile_size = 100;
        s.parallelism = 64;
        assert_eq!(
            tiles(&s, 400, 400),
            (100, 16),
            "a smaller tile_size is the floor"
        );
        s.parallelism = MAX_PARALLELISM + 1;
        assert!(s.validate(1).is_err());
    }

    #[test]
    fn layer_terms_parse_weights_and_channel_ranges() {
        let t: LayerTerm = "mixed4:1.5:0-3+10".parse().expect("valid");
        assert_eq!(
            t,
            LayerTerm {
                name: "mixed4".into(),
                weight: 1.5.into(),
                channels: vec![0, 1, 2, 3, 10]
            }
        );
        assert_eq!(
            "mixed3".parse::<LayerTerm>().expect("valid").weight,
            1.0.into()
        );
        assert_eq!(
            "mixed3::7".parse::<LayerTerm>().expect("valid").channels,
            [7]
        );
        for bad in [
            "",
            ":2",
            "mixed3:x",
            "mixed3:1:5-2",
            "mixed3:1:a",
            "a:1:2:3",
        ] {
            assert!(bad.parse::<LayerTerm>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn defaults_validate_and_use_the_models_default_layers() {
        let d = DreamSettings::default();
        d.validate(1).expect("defaults are valid");
        let names: Vec<String> = d
            .layer_terms()
            .expect("terms")
            .into_iter()
            .map(|t| t.name)
            .collect();
        assert_eq!(names, ["mixed3", "mixed5"]);
    }

    #[test]
    fn bad_values_name_the_setting() {
        let d = DreamSettings {
            octaves: 0,
            ..Default::default()
        };
        assert!(
            d.validate(1)
                .unwrap_err()
                .to_string()
                .starts_with("octaves = 0 is out of range")
        );
        let d = DreamSettings {
            layers: vec!["mixed9".parse().expect("parses")],
            ..Default::default()
        };
        assert!(
            d.validate(1)
                .unwrap_err()
                .to_string()
                .contains("has no layer \"mixed9\"")
        );
        for bad in ["mixed3:nan", "mixed3:inf", "mixed3:-inf", "mixed3:1e9"] {
            let d = DreamSettings {
                layers: vec![bad.parse().expect("parses")],
                ..Default::default()
            };
            let e = d.validate(1).expect_err(bad).to_string();
            assert!(e.contains("layer weight of mixed3"), "{bad}: {e}");
        }
        let z = ZoomSettings {
            zoom: 0.0.into(),
            ..Default::default()
        };
        assert!(z.validate(10).is_err());
    }

    #[test]
    fn every_schedule_is_listed_by_name_and_max_f_is_found() {
        let mut spec = JobSpec::new("in.png".into(), 10);
        spec.dream.layers = vec!["mixed3".parse().expect("layer")];
        spec.dream.layers[0].weight = Schedule::parse("w", "0:(1 - t/max_f)").expect("schedule");
        let names: Vec<String> = spec.schedules().into_iter().map(|(n, _)| n).collect();
        assert_eq!(names.len(), 14, "{names:?}");
        let ramps: Vec<String> = spec
            .schedules()
            .into_iter()
            .filter(|(_, s)| s.uses_max_f())
            .map(|(n, _)| n)
            .collect();
        assert_eq!(ramps, ["layer weight of mixed3"]);
    }

    /// The largest pass is the frame's biggest tile with its margins: a
    /// 4K frame's inner tiles (960×720 cells, 64 pixels round them), a
    /// small frame whole, and a batch of equal tiles together.
    #[test]
    fn the_largest_pass_is_the_biggest_window_or_batch() {
        let d = DreamSettings::default();
        assert_eq!(d.largest_pass(3840, 2160), (1, 848, 1088));
        assert_eq!(d.largest_pass(512, 384), (1, 384, 512));
        let batched = DreamSettings {
            tile_batch: 4,
            tile_size: 256,
            ..Default::default()
        };
        // Rows of eight cells: the six inner ones batch as four and two.
        assert_eq!(batched.largest_pass(2048, 1024), (4, 384, 384));
    }
}
