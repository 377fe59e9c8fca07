//! `dreamfarm dream`: one still image dreamed over octaves, in this process.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Args;
use dreamfarm_common::device::DeviceSpec;
use dreamfarm_common::model_catalog::ModelSpec;
use dreamfarm_worker::dream::{Ascent, Objective, Octaves, dream_octaves};
use dreamfarm_worker::image_tensor::{from_rgb8, to_rgb8};
use dreamfarm_worker::models::{Model, torch_device};
use dreamfarm_worker::weights::WeightStore;

/// Arguments of `dreamfarm dream`.
#[derive(Debug, Args)]
pub struct DreamArgs {
    /// Image to dream on (PNG or JPEG).
    input: PathBuf,
    /// Where to write the dreamed PNG.
    #[arg(short, long)]
    output: PathBuf,
    /// Model: a built-in name (`dreamfarm models`) or a TorchScript .pt file.
    #[arg(long, default_value = "inception-v3")]
    model: ModelSpec,
    /// Weights for a built-in model (required for googlenet).
    #[arg(long)]
    weights: Option<PathBuf>,
    /// Layers to maximise, comma-separated, each optionally `name:weight`
    /// (default: the model's default layers).
    #[arg(long, value_delimiter = ',')]
    layers: Vec<String>,
    /// Maximise the plain mean of the activations instead of mean(a²).
    #[arg(long)]
    plain_mean: bool,
    /// Number of octaves (1: single scale).
    #[arg(long, default_value_t = 4)]
    octaves: u32,
    /// Size ratio between octaves.
    #[arg(long, default_value_t = 1.4)]
    octave_scale: f64,
    /// Gradient steps per octave.
    #[arg(long, default_value_t = 10)]
    iterations: u32,
    /// Step length in 0..1 pixel units for a unit-std gradient.
    #[arg(long, default_value_t = 0.01)]
    step_size: f64,
    /// Largest random roll in pixels before each step.
    #[arg(long, default_value_t = 32)]
    jitter: u32,
    /// Seed of every random choice.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    device: DeviceSpec,
}

/// Parses `name` or `name:weight` into a layer index and weight.
fn parse_layer(model: &Model, spec: &str) -> anyhow::Result<(usize, f64)> {
    let (name, weight) = match spec.rsplit_once(':') {
        Some((n, w)) => (
            n,
            w.parse()
                .with_context(|| format!("layer weight in {spec:?} is not a number"))?,
        ),
        None => (spec, 1.0),
    };
    Ok((model.layer_index(name)?, weight))
}

/// Runs `dreamfarm dream`.
pub fn dream(args: DreamArgs) -> anyhow::Result<()> {
    if args.octaves == 0 || args.octave_scale < 1.0 {
        bail!("--octaves must be at least 1 and --octave-scale at least 1.0");
    }
    let photo = image::open(&args.input)
        .with_context(|| {
            format!(
                "cannot read image {}: give a PNG or JPEG file",
                args.input.display()
            )
        })?
        .to_rgb8();
    let device = torch_device(args.device)?;
    let weights = WeightStore::new(WeightStore::default_dir())
        .resolve(&args.model, args.weights.as_deref())?;
    let model = Model::load(&args.model, &weights, device)?;
    let layers = if args.layers.is_empty() {
        match &args.model {
            ModelSpec::Builtin(m) => m
                .info()
                .default_layers
                .iter()
                .map(|l| l.to_string())
                .collect(),
            ModelSpec::TorchScript(_) => model.layers().to_vec(),
        }
    } else {
        args.layers.clone()
    };
    let objective = Objective {
        layers: layers
            .iter()
            .map(|l| parse_layer(&model, l))
            .collect::<anyhow::Result<_>>()?,
        squared: !args.plain_mean,
    };
    let ascent = Ascent {
        iterations: args.iterations,
        step_size: args.step_size,
        jitter: args.jitter,
    };
    let octaves = Octaves {
        count: args.octaves,
        scale: args.octave_scale,
    };
    let (w, h) = photo.dimensions();
    let image = from_rgb8(photo.as_raw(), w, h, device);
    let started = std::time::Instant::now();
    let dreamed = dream_octaves(&model, &objective, &image, octaves, ascent, args.seed)?;
    tracing::info!(seconds = started.elapsed().as_secs_f64(), "dreamed");
    let out = image::RgbImage::from_raw(w, h, to_rgb8(&dreamed))
        .context("dream changed the image size")?;
    let dir = args
        .output
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    let tmp = tempfile::Builder::new()
        .suffix(".png")
        .tempfile_in(dir)
        .with_context(|| format!("cannot write into {}", dir.display()))?;
    out.save(tmp.path()).context("encoding the PNG")?;
    tmp.persist(&args.output)
        .with_context(|| format!("cannot write {}", args.output.display()))?;
    println!("{}", args.output.display());
    Ok(())
}
