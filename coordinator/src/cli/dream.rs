//! `dreamfarm dream`: one still image dreamed on this machine, through the
//! same frame loop and tiling as a render.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use dreamfarm_common::device::Devices;
use dreamfarm_common::params::JobSpec;
use dreamfarm_common::resample::SpareImages;
use dreamfarm_coordinator::frame_loop::{FramePlan, dream_frame};
use dreamfarm_coordinator::render::{check_min_side, load_guide, load_input};

use super::dream_flags::DreamFlags;
use super::memory_check::{MaxMemory, NETWORK_ON_CPU, network_bytes};
use dreamfarm_coordinator::cluster::memory_budget::still_bytes;
use dreamfarm_coordinator::local_pool::embedded;
use dreamfarm_worker::cpu_threads::ThreadsFlag;
use dreamfarm_worker::models::torch_devices;

/// Arguments of `dreamfarm dream`.
#[derive(Debug, Args)]
pub struct DreamArgs {
    /// Image to dream on (PNG or JPEG).
    input: PathBuf,
    /// Where to write the dreamed image: a .png or .jpg/.jpeg path.
    #[arg(short, long)]
    output: PathBuf,
    #[command(flatten)]
    dream: DreamFlags,
    /// Seed of every random choice.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// auto, cpu, cuda or cuda:N; several separated by commas
    /// (cuda:0,cuda:1), or all (every GPU), share the image's tiles.
    #[arg(long, default_value = "auto")]
    device: Devices,
    #[command(flatten)]
    max_memory: MaxMemory,
    #[command(flatten)]
    threads: ThreadsFlag,
}

/// Runs `dreamfarm dream`.
pub fn dream(args: DreamArgs) -> anyhow::Result<()> {
    let mut spec = JobSpec::new(args.input, 1);
    spec.seed = args.seed;
    args.dream.apply(&mut spec.dream)?;
    // Settings that only shape a video across frames do nothing to one
    // still; said rather than silently ignored.
    for (flag, set) in [
        ("--cadence", spec.dream.cadence != 1),
        ("--layer-fade", spec.dream.layer_fade != 0),
    ] {
        anyhow::ensure!(
            !set,
            "{flag} shapes a video across its frames and does nothing to one still image; drop it, or use `dreamfarm render`"
        );
    }
    spec.validate()?;
    let input = load_input(&spec)?;
    let (width, height) = (input.width as u32, input.height as u32);
    let devices = torch_devices(&args.device)?;
    args.max_memory.check(
        &format!("dreaming a {width}x{height} image"),
        &[
            ("its octaves", still_bytes(width, height)),
            (
                NETWORK_ON_CPU,
                network_bytes(&spec.dream, width, height, &devices)?,
            ),
        ],
        "dream a smaller copy of the image or pass a smaller --tile-size",
        "dream it on a machine with more memory",
    )?;
    // The output is opened before the model loads, so a mistyped path fails
    // at once instead of after minutes of dreaming.
    let (format, tmp) = open_output(&args.output)?;
    args.threads.apply();
    let mut workers = embedded(&spec.dream, spec.seed, &devices)?;
    let min_side = workers.min_side;
    check_min_side(&spec, &input, min_side)?;
    let started = std::time::Instant::now();
    let guide = load_guide(&spec)?;
    let plan = FramePlan::new(&spec, 0, &guide)?;
    let dreamed = dream_frame(
        &spec.dream,
        min_side,
        &plan,
        &input,
        workers.executor.as_mut(),
        &mut SpareImages::default(),
    )?;
    tracing::info!(seconds = started.elapsed().as_secs_f64(), "dreamed");
    let out = image::RgbImage::from_raw(input.width as u32, input.height as u32, dreamed.to_rgb8())
        .context("the dream changed the image size")?;
    out.save_with_format(tmp.path(), format)
        .context("encoding the image")?;
    tmp.persist(&args.output)
        .with_context(|| format!("cannot write {}", args.output.display()))?;
    println!("{}", args.output.display());
    Ok(())
}

/// The image format `output` asks for and a temporary file beside it, which
/// becomes `output` once the image is whole (never a half-written file).
fn open_output(output: &Path) -> anyhow::Result<(image::ImageFormat, tempfile::NamedTempFile)> {
    let format = match image::ImageFormat::from_path(output) {
        Ok(f @ (image::ImageFormat::Png | image::ImageFormat::Jpeg)) => f,
        _ => anyhow::bail!(
            "cannot write {}: give -o a path ending in .png, .jpg or .jpeg",
            output.display()
        ),
    };
    let dir = output
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = dreamfarm_coordinator::whole_file::temp_file_in(dir, ".tmp", ".part")
        .with_context(|| format!("cannot write into {}", dir.display()))?;
    Ok((format, tmp))
}
